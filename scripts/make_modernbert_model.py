"""Makes a random-weight ModernBERT of any configuration with transformers' own classes, for what the bundled
tiny models do not cover: configurations embcheck has never seen (other window, layer count, thetas, biases,
activation, a `model.` prefix), checked against references made by the Python libraries at test time
(scripts/check-systems.sh), and ModernBERT-base's shape for the speed comparison (scripts/bench_vs_pytorch.py).

    .venv-ref/bin/python scripts/make_modernbert_model.py --out /tmp/mb [--hidden 768 --layers 22 --heads 12
        --intermediate 1152 --local-attention 128 --global-every 3 --global-theta 160000 --local-theta 10000]
        [--biases] [--act gelu] [--masked-lm] [--pooling mean|cls] [--max-seq-length 512] [--seed 1]

The tokenizer files are tiny-modernbert's (byte-level BPE, [CLS] $A [SEP]); sentence-transformers files are
written for the pooling given, with Normalize. Deterministic for a seed.
"""
import argparse
import json
import shutil
from pathlib import Path

import torch
from transformers import ModernBertConfig, ModernBertForMaskedLM, ModernBertModel

TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = Path(__file__).resolve().parent.parent
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer-from", default=str(here / "fixtures" / "models" / "tiny-modernbert"))
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=22)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--intermediate", type=int, default=1152)
    ap.add_argument("--local-attention", type=int, default=128)
    ap.add_argument("--global-every", type=int, default=3)
    ap.add_argument("--global-theta", type=float, default=160000.0)
    ap.add_argument("--local-theta", type=float, default=10000.0)
    ap.add_argument("--biases", action="store_true", help="norm_bias, attention_bias and mlp_bias true")
    ap.add_argument("--act", default="gelu", help="hidden_activation")
    ap.add_argument("--masked-lm", action="store_true", help="save ModernBertForMaskedLM (weights under model.)")
    ap.add_argument("--pooling", choices=["mean", "cls"], default="mean")
    ap.add_argument("--max-seq-length", type=int, default=512)
    ap.add_argument("--std", type=float, default=0.2, help="weight std (0.02 is ModernBERT's own init)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    src, out = Path(a.tokenizer_from), Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for f in TOKENIZER_FILES:
        shutil.copy(src / f, out / f)
    tok = json.loads((src / "tokenizer.json").read_text())
    added = {t["content"]: t["id"] for t in tok["added_tokens"]}
    vocab = max(list(tok["model"]["vocab"].values()) + list(added.values())) + 1
    torch.manual_seed(a.seed)
    cfg = ModernBertConfig(
        vocab_size=vocab, hidden_size=a.hidden, num_hidden_layers=a.layers, num_attention_heads=a.heads,
        intermediate_size=a.intermediate, hidden_activation=a.act, max_position_embeddings=8192,
        initializer_range=a.std, norm_eps=1e-5, norm_bias=a.biases, attention_bias=a.biases, mlp_bias=a.biases,
        global_rope_theta=a.global_theta, local_rope_theta=a.local_theta, local_attention=a.local_attention,
        global_attn_every_n_layers=a.global_every, pad_token_id=added["[PAD]"], cls_token_id=added["[CLS]"],
        sep_token_id=added["[SEP]"], bos_token_id=added["[CLS]"], eos_token_id=added["[SEP]"],
    )
    model = (ModernBertForMaskedLM if a.masked_lm else ModernBertModel)(cfg)
    gen = torch.Generator().manual_seed(a.seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_(a.std * torch.randn(p.shape, generator=gen))
            elif name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    model.eval().save_pretrained(out, safe_serialization=True)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (out / "modules.json").write_text(json.dumps(modules, indent=2))
    (out / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": a.hidden, "pooling_mode_cls_token": a.pooling == "cls",
               "pooling_mode_mean_tokens": a.pooling == "mean", "pooling_mode_max_tokens": False,
               "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
               "pooling_mode_lasttoken": False, "include_prompt": True}
    (out / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": a.max_seq_length, "do_lower_case": False}))
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out}: {type(model).__name__}, {n / 1e6:.1f}M parameters, hidden {a.hidden}, {a.layers} layers, "
          f"window {a.local_attention} (global every {a.global_every}), thetas {a.global_theta}/{a.local_theta}, "
          f"biases {a.biases}, {a.act}, {a.pooling} pooling")


if __name__ == "__main__":
    main()
