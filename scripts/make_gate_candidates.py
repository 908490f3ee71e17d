#!/usr/bin/env python3
"""Makes the candidates the gate's default limits were calibrated on (README, "Gate a model upgrade"): copies of a
model directory with every f32 weight rounded to float16 and back (`f16`), and with seeded Gaussian noise of
s x the tensor's own standard deviation added to every 2-D weight matrix (`noise<s>`).

    .venv-ref/bin/python scripts/make_gate_candidates.py fixtures/external/all-MiniLM-L6-v2 /tmp/cands
    for c in /tmp/cands/*; do embcheck gate --baseline fixtures/suites/all-minilm-l6-v2-retrieval \\
        --candidate "$c" --report-dir "/tmp/gate-$(basename "$c")"; done

Needs numpy and safetensors (both in .venv-ref). tests/gate_cli.rs makes the same kinds of candidate in Rust.
"""
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

SCALES = [0.02, 0.05, 0.1, 0.2, 0.5]


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    weights = load_file(src / "model.safetensors")

    def make(name, f):
        d = out / name
        if d.exists():
            shutil.rmtree(d)
        shutil.copytree(src, d)
        save_file({k: f(v) for k, v in weights.items()}, d / "model.safetensors", metadata={"format": "pt"})
        print(d)

    make("f16", lambda v: v.astype(np.float16).astype(v.dtype) if v.dtype == np.float32 else v)
    for s in SCALES:
        rng = np.random.default_rng(1234)  # the same noise for every run; tensors in file order
        make(f"noise{s}", lambda v, s=s: (v + rng.normal(0, s * v.std(), v.shape).astype(v.dtype))
             if v.ndim == 2 and v.dtype == np.float32 else v)
    return 0


if __name__ == "__main__":
    sys.exit(main())
