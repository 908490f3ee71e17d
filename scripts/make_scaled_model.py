"""Makes a variant of a bundled model with other weight scales, to test that embcheck's f32 tolerances hold on
models unlike the bundled ones (they were once calibrated on those alone, and a sparse head with small outputs
then failed f32 noise).

    .venv-ref/bin/python scripts/make_scaled_model.py --model fixtures/models/tiny-xlmr-m3 --out /tmp/scaled \
        [--hidden-scale 8] [--sparse-weight-scale 0.05] [--sparse-bias 0.6] [--seed 1]

- --hidden-scale k multiplies the last layer's output LayerNorm (weight and bias) by k: hidden states k times
  larger (real XLM-R hidden states are larger than MiniLM's, whose raw CLS norm is about 7).
- --sparse-weight-scale / --sparse-bias rewrite BGE-M3's sparse head (sparse_linear.pt): new weights
  ~ N(0, scale²) and that bias, so the relu outputs are small sums of large terms (bias 0.6 against dot products
  of the same size gives weights of 1e-4 to 1e-1).
- Other files are copied unchanged. Weights are re-saved with safetensors (and the heads with torch.save, as
  bge-m3 ships them). Deterministic for a seed.
"""
import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--hidden-scale", type=float, default=1.0)
    ap.add_argument("--sparse-weight-scale", type=float, default=None)
    ap.add_argument("--sparse-bias", type=float, default=None)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    src, out = Path(a.model), Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out)
    cfg = json.loads((src / "config.json").read_text())
    last = cfg["num_hidden_layers"] - 1
    weights = load_file(str(src / "model.safetensors"))
    scaled = []
    for name in list(weights):
        if name.endswith(f"encoder.layer.{last}.output.LayerNorm.weight") or name.endswith(f"encoder.layer.{last}.output.LayerNorm.bias"):
            weights[name] = weights[name] * a.hidden_scale
            scaled.append(name)
    assert len(scaled) == 2 or a.hidden_scale == 1.0, f"final LayerNorm not found: {scaled}"
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    if a.sparse_weight_scale is not None or a.sparse_bias is not None:
        state = torch.load(src / "sparse_linear.pt", map_location="cpu")
        gen = torch.Generator().manual_seed(a.seed)
        if a.sparse_weight_scale is not None:
            state["weight"] = a.sparse_weight_scale * torch.randn(state["weight"].shape, generator=gen)
        if a.sparse_bias is not None:
            state["bias"] = torch.full_like(state["bias"], a.sparse_bias)
        torch.save(state, out / "sparse_linear.pt")
    print(f"wrote {out}: hidden x{a.hidden_scale}, sparse weight scale {a.sparse_weight_scale}, bias {a.sparse_bias}")


if __name__ == "__main__":
    main()
