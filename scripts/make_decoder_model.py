"""Makes a random-weight decoder embedder (Llama, Mistral, Qwen2, Qwen3) of any configuration with transformers'
own classes, for configurations the bundled tiny decoders do not cover, checked against references made by the
Python libraries at test time (scripts/check-systems.sh).

    .venv-ref/bin/python scripts/make_decoder_model.py --out /tmp/dec --kind qwen2 [--hidden 48 --layers 3
        --heads 6 --kv-heads 3 --head-dim N --intermediate 40 --theta 10000 --window N --max-window-layers N
        --attention-bias --mlp-bias --act silu --causal-lm --pooling lasttoken|mean --seed 1 --std 0.15
        --tokenizer-from fixtures/models/tiny-qwen3 --tokenizer-class Qwen2Tokenizer --post-processor keep|none|byte-level
        --tokenizer-config KEY=JSON ... --added-token JSON ...]

--window sets sliding_window (Qwen2 / Qwen3: with use_sliding_window true, windowed from layer
--max-window-layers on). --causal-lm saves the *ForCausalLM class (weights under model.). The tokenizer files
are copied from --tokenizer-from (tiny-qwen3: EOS appended by the tokenizer, left padding; tiny-mistral: <s>
only, right padding); matrices are drawn with standard deviation --std (0.15 makes the differences between
implementations visible in tiny models; 0.02 is transformers' own initialisation); sentence-transformers files are written for the pooling given (Normalize after
lasttoken). Deterministic for a seed.

The copied tokenizer can be changed, for the tokenizer classes transformers 5 rebuilds: --tokenizer-class sets
tokenizer_config.json's tokenizer_class; --post-processor replaces tokenizer.json's (none: null; byte-level:
Qwen2's `ByteLevel`, no EOS); --tokenizer-config sets a tokenizer_config.json key to a JSON value
(add_prefix_space=true, unk_token=null); --added-token appends an added token (a JSON AddedToken, e.g.
'{"content": "<think>", "special": false, "normalized": false}') to both files with the next id.
"""
import argparse
import json
import shutil
from pathlib import Path

import torch
import transformers

TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
CLASSES = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = Path(__file__).resolve().parent.parent
    ap.add_argument("--out", required=True)
    ap.add_argument("--kind", choices=sorted(CLASSES), required=True)
    ap.add_argument("--tokenizer-from", default=str(here / "fixtures" / "models" / "tiny-qwen3"))
    ap.add_argument("--tokenizer-class", default=None)
    ap.add_argument("--post-processor", choices=["keep", "none", "byte-level"], default="keep")
    ap.add_argument("--tokenizer-config", action="append", default=[], metavar="KEY=JSON")
    ap.add_argument("--added-token", action="append", default=[], metavar="JSON")
    ap.add_argument("--hidden", type=int, default=48)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=3)
    ap.add_argument("--head-dim", type=int, default=None)
    ap.add_argument("--intermediate", type=int, default=40)
    ap.add_argument("--theta", type=float, default=10000.0)
    ap.add_argument("--window", type=int, default=None)
    ap.add_argument("--max-window-layers", type=int, default=0)
    ap.add_argument("--attention-bias", action="store_true")
    ap.add_argument("--mlp-bias", action="store_true")
    ap.add_argument("--act", default="silu")
    ap.add_argument("--causal-lm", action="store_true")
    ap.add_argument("--pooling", choices=["lasttoken", "mean"], default="lasttoken")
    ap.add_argument("--max-seq-length", type=int, default=512)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--std", type=float, default=0.15)
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    src = Path(args.tokenizer_from)
    for f in TOKENIZER_FILES:
        shutil.copy(src / f, out / f)
    tok = json.loads((src / "tokenizer.json").read_text())
    tcfg = json.loads((src / "tokenizer_config.json").read_text())
    if args.tokenizer_class:
        tcfg["tokenizer_class"] = args.tokenizer_class
    if args.post_processor == "none":
        tok["post_processor"] = None
    elif args.post_processor == "byte-level":
        tok["post_processor"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    for kv in args.tokenizer_config:
        key, value = kv.split("=", 1)
        tcfg[key] = json.loads(value)
    for spec in args.added_token:
        t = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": False, **json.loads(spec)}
        t["id"] = len(tok["model"]["vocab"]) + len(tok["added_tokens"])
        tok["added_tokens"].append(t)
        tcfg.setdefault("added_tokens_decoder", {})[str(t["id"])] = {k: v for k, v in t.items() if k != "id"}
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    (out / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=2, ensure_ascii=False) + "\n")
    vocab = len(tok["model"]["vocab"]) + len(tok["added_tokens"])
    ids = {t["content"]: t["id"] for t in tok["added_tokens"]}
    name = CLASSES[args.kind]
    kw = dict(vocab_size=vocab, hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
              num_key_value_heads=args.kv_heads, intermediate_size=args.intermediate, hidden_act=args.act,
              max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=args.theta, tie_word_embeddings=False,
              pad_token_id=ids[tcfg["pad_token"]], eos_token_id=ids[tcfg["eos_token"]])
    if args.head_dim is not None:
        kw["head_dim"] = args.head_dim
    if args.kind == "mistral":
        kw["sliding_window"] = args.window
    elif args.kind in ("qwen2", "qwen3"):
        kw.update(use_sliding_window=args.window is not None, sliding_window=args.window or 4096,
                  max_window_layers=args.max_window_layers)
    if args.kind in ("llama", "qwen3"):
        kw["attention_bias"] = args.attention_bias
    if args.kind == "llama":
        kw["mlp_bias"] = args.mlp_bias
    cfg = getattr(transformers, f"{name}Config")(**kw)
    torch.manual_seed(args.seed)
    cls = getattr(transformers, f"{name}ForCausalLM" if args.causal_lm else f"{name}Model")
    model = cls(cfg)
    gen = torch.Generator().manual_seed(args.seed + 1)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, args.std)
            elif pname.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif pname.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    model.eval().save_pretrained(out, safe_serialization=True)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if args.pooling == "lasttoken":
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (out / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": args.hidden, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": args.pooling == "mean", "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": args.pooling == "lasttoken", "include_prompt": True}, indent=2) + "\n")
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": args.max_seq_length, "do_lower_case": False}) + "\n")
    print(f"{name}: {kw}")


if __name__ == "__main__":
    main()
