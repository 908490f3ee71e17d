#!/usr/bin/env python3
"""Makes a random XLM-RoBERTa of BAAI/bge-m3's width (hidden 1024, 16 heads, FFN 4096, 8194 positions) with
few layers and tiny-xlmr-m3's small vocabulary, and a few texts of 8192+ tokens: the wide-and-long case where
f32 noise exceeds the dense default tolerance. Its weights (~140 MB) are never committed: scripts/test.sh
makes them at test time, deterministically, and checks their sha256 against fixtures/wide/MANIFEST.

    .venv-ref/bin/python scripts/make_wide_model.py --out fixtures/wide/models/wide-xlmr [--seed 22] \
        [--layers 2] [--texts 3] [--texts-out fixtures/wide/texts-8192.jsonl] [--perturb 1e-4 --perturb-out DIR]

- Real transformers classes (XLMRobertaConfig / XLMRobertaModel), torch.manual_seed(seed); weights of std
  --init-range (0.2, as the tiny models), biases and LayerNorm parameters randomized as make_tiny_models.py
  does (so a dropped bias shows).
- The tokenizer files are tiny-xlmr-m3's (Unigram, 1500 pieces).
- Texts: lines of make_tiny_models.CORPUS shuffled with random.Random(seed), joined until a text has more
  than 8192 tokens (the pipeline cuts it at 8192, as bge-m3's max length does).
- --perturb EPS also writes a copy whose first layer's attention output weight is multiplied by (1 + EPS):
  a real change of the model, to check that it is not passed as noise.
"""
import argparse
import json
import random
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from transformers import XLMRobertaConfig, XLMRobertaModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_tiny_models import CORPUS, randomize_biases_and_norms  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER_FROM = ROOT / "fixtures" / "models" / "tiny-xlmr-m3"
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def make_model(seed: int, layers: int, hidden: int, heads: int, ffn: int, init_range: float = 0.2) -> XLMRobertaModel:
    torch.manual_seed(seed)
    vocab = json.loads((TOKENIZER_FROM / "config.json").read_text())["vocab_size"]
    cfg = XLMRobertaConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=ffn, hidden_act="gelu", max_position_embeddings=8194, type_vocab_size=1,
        initializer_range=init_range, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        position_embedding_type="absolute",
    )
    model = XLMRobertaModel(cfg, add_pooling_layer=False)
    randomize_biases_and_norms(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


def make_texts(seed: int, count: int, tokens: int) -> list[dict]:
    tok = Tokenizer.from_file(str(TOKENIZER_FROM / "tokenizer.json"))
    tok.no_truncation()
    lines = [l for l in CORPUS.splitlines() if l.strip()]
    rng = random.Random(seed)
    out = []
    for k in range(count):
        words: list[str] = []
        while True:
            words.append(rng.choice(lines))
            # Cheap most of the time: only count once the text is surely near the length.
            if len(words) % 20 == 0 and len(tok.encode(" ".join(words)).ids) > tokens + 16:
                break
        out.append({"id": f"long-{tokens}-{seed}-{k}", "text": " ".join(words)})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--ffn", type=int, default=4096)
    ap.add_argument("--init-range", type=float, default=0.2,
                    help="weight std (default 0.2, as make_tiny_models.py: larger activations, more f32 noise "
                         "than a trained model shows)")
    ap.add_argument("--texts", type=int, default=3, help="how many long texts (0: none)")
    ap.add_argument("--tokens", type=int, default=8192, help="the texts are longer than this many tokens")
    ap.add_argument("--texts-out", type=Path, default=None)
    ap.add_argument("--perturb", type=float, default=None)
    ap.add_argument("--perturb-out", type=Path, default=None)
    a = ap.parse_args()
    if a.out.exists():
        shutil.rmtree(a.out)
    a.out.mkdir(parents=True)
    model = make_model(a.seed, a.layers, a.hidden, a.heads, a.ffn, a.init_range)
    model.save_pretrained(a.out, safe_serialization=True)
    for f in TOKENIZER_FILES:
        shutil.copy(TOKENIZER_FROM / f, a.out / f)
    print(f"wrote {a.out}: XLM-R hidden {a.hidden}, {a.heads} heads, FFN {a.ffn}, {a.layers} layers, seed {a.seed}")
    if a.texts:
        texts_out = a.texts_out or a.out.parent / f"texts-{a.tokens}-{a.seed}.jsonl"
        texts_out.parent.mkdir(parents=True, exist_ok=True)
        rows = make_texts(a.seed, a.texts, a.tokens)
        texts_out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"wrote {texts_out}: {len(rows)} texts of more than {a.tokens} tokens")
    if a.perturb is not None:
        dst = a.perturb_out or a.out.parent / f"{a.out.name}-perturbed"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(a.out, dst)
        w = load_file(str(dst / "model.safetensors"))
        name = "encoder.layer.0.attention.output.dense.weight"
        w[name] = w[name] * (1.0 + a.perturb)
        save_file(w, str(dst / "model.safetensors"), metadata={"format": "pt"})
        print(f"wrote {dst}: {name} multiplied by 1 + {a.perturb:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
