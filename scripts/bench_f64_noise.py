#!/usr/bin/env python3
"""Measures the f32 noise the `f32 noise` rule rests on: transformers' XLM-R in float32 against the same model
in float64, relative L2 of the L2-normalized CLS vector (bge-m3's dense output), by width and length, on
random models made by scripts/make_wide_model.py (2 layers; widths 384/768/1024 with 6/12/16 heads and FFN
4x) and texts cut at 512/2048/8192 tokens. Prints a table; with --save DIR also writes each model and the
token ids, so that embcheck's own f32 and f64 can be measured on the same inputs.

    .venv-ref/bin/python scripts/bench_f64_noise.py [--widths 384 768 1024] [--lengths 512 2048 8192] \
        [--layers 2] [--seed 5] [--texts 2] [--save /tmp/f64-noise]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_wide_model import TOKENIZER_FILES, TOKENIZER_FROM, make_model, make_texts  # noqa: E402


def cls(model, ids: list[int], dtype) -> np.ndarray:
    with torch.no_grad():
        m = model.to(dtype)
        h = m(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))[0][0, 0]
    v = h.double().numpy()
    return v / np.linalg.norm(v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", type=int, nargs="+", default=[384, 768, 1024])
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 8192])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--texts", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--init-range", type=float, default=0.2)
    ap.add_argument("--save", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(TOKENIZER_FROM))
    texts = make_texts(a.seed, a.texts, max(a.lengths))
    print(f"torch {torch.__version__}, {a.threads} threads, {a.layers} layers, init range {a.init_range}, seed {a.seed}, {a.texts} texts")
    print("| width | heads | FFN | tokens | torch f32 vs f64 (rel L2 of normalized CLS, per text) | f64 s/text |")
    print("|--:|--:|--:|--:|---|--:|")
    results = []
    for width in a.widths:
        heads = width // 64
        model = make_model(a.seed, a.layers, width, heads, 4 * width, a.init_range)
        if a.save:
            d = a.save / f"w{width}"
            model.save_pretrained(d, safe_serialization=True)
            for f in TOKENIZER_FILES:
                (d / f).write_bytes((TOKENIZER_FROM / f).read_bytes())
        for n in a.lengths:
            dists, secs = [], 0.0
            for t in texts:
                ids = tok(t["text"], truncation=True, max_length=n)["input_ids"]
                v32 = cls(model, ids, torch.float32)
                t0 = time.perf_counter()
                v64 = cls(model, ids, torch.float64)
                secs += time.perf_counter() - t0
                model.to(torch.float32)
                dists.append(float(np.linalg.norm(v32 - v64)))
                results.append({"width": width, "tokens": len(ids), "id": t["id"], "f32_vs_f64": dists[-1],
                                "f32": v32.tolist(), "f64": v64.tolist()})
            print(f"| {width} | {heads} | {4 * width} | {n} | {', '.join(f'{d:.2e}' for d in dists)} | {secs / len(texts):.1f} |",
                  flush=True)
    if a.save:
        (a.save / "texts.jsonl").write_text("".join(json.dumps(t) + "\n" for t in texts))
        (a.save / "torch.json").write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
