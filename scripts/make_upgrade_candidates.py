#!/usr/bin/env python3
"""Makes the upgrade candidates of the README's walkthrough ("Gate a model upgrade"): another model's vectors for
a suite's texts, computed by the real sentence-transformers, as `.npy` files `embcheck gate --candidate` reads
(rows in the suite's text order):

- `<name>.npy`: the model as it ships (its own max_seq_length);
- `<name>-cut6.npy`: the same model with max_seq_length = 6 (every text cut at 6 tokens, [CLS]/[SEP] included);
- `<name>-broken-<lang>.npy`: the model's vectors, except that every text whose retrieval-set `lang` is
  <lang> (queries and passages) gets a seeded random unit vector instead (numpy default_rng(20 + i) for
  the text at suite position i): a model that has lost one language.

    .venv-ref/bin/python scripts/make_upgrade_candidates.py fixtures/suites/all-minilm-l6-v2-retrieval \\
        fixtures/external/all-mpnet-base-v2 fixtures/candidates/all-minilm-l6-v2-retrieval --break en --break de

Writes `provenance.json` beside them: libraries' versions, the sha256 of the model's files, of the suite's
texts, of this script and of every file written.
"""
import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def read_jsonl(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text(encoding="utf-8").split("\n") if line.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", type=Path)
    ap.add_argument("model", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--break", dest="broken", action="append", default=[], metavar="LANG")
    ap.add_argument("--batch-size", type=int, default=16)
    a = ap.parse_args()

    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    texts = read_jsonl(a.suite / "texts.jsonl")
    suite_toml = (a.suite / "suite.toml").read_text(encoding="utf-8")
    retrieval = None
    for line in suite_toml.splitlines():
        if line.startswith("retrieval"):
            retrieval = (a.suite / line.split("=", 1)[1].strip().strip('"')).resolve()
    lang = {}
    if retrieval:
        for f in ("queries.jsonl", "corpus.jsonl"):
            for r in read_jsonl(retrieval / f):
                if "lang" in r:
                    lang[r.get("id", r.get("_id"))] = r["lang"]
    strings = [t["text"] for t in texts]
    a.out.mkdir(parents=True, exist_ok=True)
    name = a.model.name.lower()
    model = SentenceTransformer(str(a.model), device="cpu", model_kwargs={"dtype": torch.float32})
    written = {}

    def encode(max_len: int | None) -> np.ndarray:
        if max_len is not None:
            model.max_seq_length = max_len
        return model.encode(strings, batch_size=a.batch_size, convert_to_numpy=True).astype(np.float32)

    def save(fname: str, v: np.ndarray, how: str):
        p = a.out / fname
        np.save(p, v)
        written[fname] = {"sha256": sha(p), "how": how}
        print(p, v.shape)

    shipped = model.max_seq_length
    full = encode(None)
    save(f"{name}.npy", full, f"SentenceTransformer(model).encode(texts, batch_size={a.batch_size}), max_seq_length {shipped}")
    for lg in a.broken:
        v = full.copy()
        hit = [i for i, t in enumerate(texts) if lang.get(t["id"]) == lg]
        if not hit:
            sys.exit(f"no text has lang {lg!r}")
        for i in hit:
            r = np.random.default_rng(20 + i).normal(size=v.shape[1])
            v[i] = (r / np.linalg.norm(r)).astype(np.float32)
        save(f"{name}-broken-{lg}.npy", v, f"{name}.npy with the {len(hit)} texts of lang {lg!r} replaced by "
             "seeded random unit vectors (numpy default_rng(20 + suite position))")
    cut = encode(6)
    save(f"{name}-cut6.npy", cut, f"SentenceTransformer(model) with max_seq_length = 6, .encode(texts, batch_size={a.batch_size})")
    model.max_seq_length = shipped

    prov = {
        "script": {"path": "scripts/make_upgrade_candidates.py", "sha256": sha(Path(__file__))},
        "suite": {"dir": str(a.suite), "texts.jsonl": sha(a.suite / "texts.jsonl")},
        "model": {"dir": str(a.model), "files": {p.relative_to(a.model).as_posix(): sha(p) for p in sorted(a.model.rglob("*"))
                                                   if p.is_file() and p.suffix in (".safetensors", ".json", ".txt")}},
        "libraries": {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
                      "sentence-transformers": sentence_transformers.__version__, "numpy": np.__version__},
        "files": written,
    }
    (a.out / "provenance.json").write_text(json.dumps(prov, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
