#!/usr/bin/env python3
"""Measures what an embedding server computes, against the real library run here (a check by hand, not a test).

Sends texts to a server (OpenAI API or TEI's /embed), computes the same texts with the Python library as
scripts/systems/serve.py does (faithfully, and with each fault serve.py knows: other normalization, pooling,
max length, strip, lowercase), and prints for every text the cosine and max abs difference to the faithful
vectors and which computation the server's vector equals best. Used to measure Infinity and serve.py itself.

    .venv-ref/bin/python scripts/systems/probe.py --url http://127.0.0.1:PORT/embeddings \\
        --model fixtures/external/all-MiniLM-L6-v2 --texts fixtures/texts/minilm.jsonl
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve  # noqa: E402  the same pipelines the stand-in serves


def fetch(url: str, api: str, texts: list[str], b64: bool, batch: int = 32) -> np.ndarray:
    rows = []
    for i in range(0, len(texts), batch):
        chunk = texts[i:i + batch]
        if api == "openai":
            body = {"input": chunk, "model": "probe"} | ({"encoding_format": "base64"} if b64 else {})
        else:
            body = {"inputs": chunk}
        req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as r:
            out = json.load(r)
        if api == "openai":
            data = sorted(out["data"], key=lambda d: d["index"])
            assert [d["index"] for d in data] == list(range(len(chunk))), "indices are not 0..n-1"
            for d in data:
                e = d["embedding"]
                rows.append(np.frombuffer(base64.b64decode(e), "<f4") if isinstance(e, str) else np.array(e, np.float32))
        else:
            rows.extend(np.array(v, np.float32) for v in out)
    return np.stack(rows)


def pipeline(model: str, kind: str, n: int | None, **faults) -> serve.Pipeline:
    ns = argparse.Namespace(model=model, pipeline=kind, max_length=n, prefix=None, lowercase=False, strip=False,
                            no_strip=False, normalize=False, no_normalize=False, pooling=None)
    for k, v in faults.items():
        setattr(ns, k, v)
    return serve.Pipeline(ns)


def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="the endpoint itself: .../embeddings, .../v1/embeddings or .../embed")
    ap.add_argument("--api", choices=["openai", "tei"], help="default: tei when the URL ends in /embed")
    ap.add_argument("--base64", action="store_true", help="OpenAI: ask for encoding_format base64")
    ap.add_argument("--model", required=True)
    ap.add_argument("--pipeline", choices=[serve.ST, serve.FLAG], default=serve.ST)
    ap.add_argument("--max-length", type=int, help="the faithful max length (default: the model's)")
    ap.add_argument("--texts", action="append", required=True, help="JSONL {id, text} (repeatable)")
    ap.add_argument("--try-prefix", action="append", default=[], help="also try this prefix (repeatable)")
    ap.add_argument("--json", help="also write the per-text figures here")
    args = ap.parse_args()
    api = args.api or ("tei" if args.url.rstrip("/").endswith("/embed") else "openai")

    items = [json.loads(l) for f in args.texts for l in Path(f).read_text(encoding="utf-8").splitlines() if l.strip()]
    ids = [it.get("id", f"t{i:04d}") for i, it in enumerate(items)]
    texts = [it["text"] for it in items]
    got = fetch(args.url, api, texts, args.base64)

    faithful = pipeline(args.model, args.pipeline, args.max_length)
    n = faithful.n
    alts: dict[str, np.ndarray] = {"faithful": faithful.embed(faithful.prepare(texts), None)}
    counts = [faithful.token_count(t) for t in texts]
    tried = [("no-normalize", {"no_normalize": True}), ("normalize", {"normalize": True}),
             ("pooling cls", {"pooling": "cls"}), ("pooling mean", {"pooling": "mean"}), ("pooling max", {"pooling": "max"}),
             ("no-strip", {"no_strip": True}), ("strip", {"strip": True}), ("lowercase", {"lowercase": True})]
    tried += [(f"prefix {p!r}", {"prefix": p}) for p in args.try_prefix]
    limit = serve.position_limit(Path(args.model))
    lengths = sorted({32, 64, 128, 256, 512, serve.default_max_length(Path(args.model)), limit})
    tried += [(f"max-length {m}", {"max_length": m}) for m in lengths if m != n and m <= limit]
    for name, faults in tried:
        try:
            p = pipeline(args.model, args.pipeline, faults.pop("max_length", args.max_length), **faults)
        except serve.Refused:
            continue  # that fault is no fault for this model
        alts[name] = p.embed(p.prepare(texts), None)  # prepare(): the text faults, as serve.py applies them
    ref = alts["faithful"]
    c = cos(got, ref)
    print(f"server {args.url} ({api}); faithful = {faithful.call}")
    print(f"{'id':34} {'tokens':>6} {'cos vs faithful':>16} {'max abs':>9} {'|v|':>7}  equals best")
    rows = []
    for i, id_ in enumerate(ids):
        diffs = {k: float(np.abs(got[i] - v[i]).max()) if v.shape == got.shape else float("inf") for k, v in alts.items()}
        best = min(diffs, key=diffs.get)
        ties = [k for k, d in diffs.items() if d == diffs[best]]
        rows.append({"id": id_, "tokens": counts[i], "cos": float(c[i]), "max_abs": diffs["faithful"],
                     "norm": float(np.linalg.norm(got[i])), "best": ties, "best_max_abs": diffs[best]})
        print(f"{str(id_)[:34]:34} {counts[i]:6d} {c[i]:16.9f} {diffs['faithful']:9.2e} {np.linalg.norm(got[i]):7.4f}  "
              f"{' = '.join(ties)} ({diffs[best]:.1e})")
    print(f"min cos vs faithful {c.min():.9f}; max abs {max(r['max_abs'] for r in rows):.3g}; "
          f"norms {min(r['norm'] for r in rows):.6f}..{max(r['norm'] for r in rows):.6f}; {len(rows)} texts, max length {n}")
    for k, v in alts.items():
        if k != "faithful":
            print(f"  alternative {k:16} vs faithful: min cos {cos(v, ref).min():.9f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
