"""Makes a random-weight Gemma 3 text model (`Gemma3TextModel`, or `Gemma3ForCausalLM` with the weights under
`model.`) of any configuration with transformers 5's own classes, for what the bundled tiny-embeddinggemma does
not cover: configurations embcheck has never seen (other sizes, heads, windows, layer patterns, thetas,
softcapping, causal or bidirectional), checked against references made by the Python libraries at test time
(scripts/check-systems.sh). Needs transformers 5 (`use_bidirectional_attention`).

    .venv-ref5/bin/python scripts/make_gemma3_model.py --out /tmp/g [--hidden 48 --layers 5 --heads 6
        --kv-heads 2 --head-dim 12 --query-pre-attn-scalar 12 --intermediate 40 --sliding-window 6
        --pattern 3 --global-theta 1e6 --local-theta 1e4] [--softcap 20] [--causal] [--causal-lm]
        [--max-positions 8192] [--max-seq-length 2048] [--seed 1]

The tokenizer is tiny-embeddinggemma's (byte-level BPE, <bos> prepended); the sentence-transformers files are
EmbeddingGemma's chain at this size (mean pooling, Dense hidden -> 2·hidden -> 24 without bias, Normalize,
its prompts). Layer kinds come from `sliding_window_pattern` (every Nth layer global), as configs saved by
transformers 4 say it. Deterministic for a seed.
"""
import argparse
import json
import math
import sys
from pathlib import Path

import torch
import transformers
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, Gemma3TextModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_tiny_models import EMBEDDINGGEMMA_PROMPTS, PreTrainedTokenizerFast, gemma_bpe, st_config, write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--hidden", type=int, default=48)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=12)
    ap.add_argument("--query-pre-attn-scalar", type=int, default=12)
    ap.add_argument("--intermediate", type=int, default=40)
    ap.add_argument("--sliding-window", type=int, default=6)
    ap.add_argument("--pattern", type=int, default=3, help="sliding_window_pattern: every Nth layer is global")
    ap.add_argument("--global-theta", type=float, default=1_000_000.0)
    ap.add_argument("--local-theta", type=float, default=10_000.0)
    ap.add_argument("--softcap", type=float, default=None, help="attn_logit_softcapping")
    ap.add_argument("--causal", action="store_true", help="use_bidirectional_attention false (a Gemma 3 decoder)")
    ap.add_argument("--causal-lm", action="store_true", help="save Gemma3ForCausalLM (weights under model.)")
    ap.add_argument("--tf4-keys", action="store_true",
                    help="config.json as transformers 4 saved it: no layer_types (sliding_window_pattern says them), "
                         "rope_theta and rope_local_base_freq instead of rope_parameters")
    ap.add_argument("--max-positions", type=int, default=2048)
    ap.add_argument("--max-seq-length", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if int(transformers.__version__.split(".")[0]) < 5:
        raise SystemExit("needs transformers 5 (use_bidirectional_attention): run with .venv-ref5/bin/python")
    d = Path(a.out)
    tok = gemma_bpe(merges_wanted=700)
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                            unk_token="<unk>", model_max_length=a.max_positions, padding_side="right",
                            model_input_names=["input_ids", "attention_mask"]).save_pretrained(d)
    cfg = Gemma3TextConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=a.hidden, intermediate_size=a.intermediate,
        num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, head_dim=a.head_dim,
        query_pre_attn_scalar=a.query_pre_attn_scalar, hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=a.max_positions, sliding_window=a.sliding_window, sliding_window_pattern=a.pattern,
        attn_logit_softcapping=a.softcap, use_bidirectional_attention=not a.causal,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": a.global_theta},
                         "sliding_attention": {"rope_type": "default", "rope_theta": a.local_theta}},
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    torch.manual_seed(a.seed)
    model = (Gemma3ForCausalLM if a.causal_lm else Gemma3TextModel)(cfg)
    gen = torch.Generator().manual_seed(a.seed + 1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2 if "embed" not in n else 1.0 / math.sqrt(a.hidden), generator=gen)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    model.eval().save_pretrained(d, safe_serialization=True)
    if a.tf4_keys:
        c = json.loads((d / "config.json").read_text())
        for k in ["layer_types", "rope_parameters", "_sliding_window_pattern"]:
            c.pop(k, None)
        c.update(sliding_window_pattern=a.pattern, rope_theta=a.global_theta, rope_local_base_freq=a.local_theta)
        write_json(d / "config.json", c)
        reread = Gemma3TextConfig.from_pretrained(d)
        assert reread.layer_types == cfg.layer_types and reread.rope_parameters == cfg.rope_parameters, reread
    from sentence_transformers.sentence_transformer.modules import Dense

    write_json(d / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 4, "name": "4", "path": "4_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    write_json(d / "1_Pooling" / "config.json", {"word_embedding_dimension": a.hidden, "pooling_mode_mean_tokens": True,
                                                 "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False,
                                                 "include_prompt": True})
    for folder, (i, o) in [("2_Dense", (a.hidden, 2 * a.hidden)), ("3_Dense", (2 * a.hidden, 24))]:
        dense = Dense(i, o, bias=False, activation_function=torch.nn.Identity())
        with torch.no_grad():
            dense.linear.weight.normal_(0.0, 1.0 / math.sqrt(i), generator=gen)
        (d / folder).mkdir(parents=True, exist_ok=True)
        dense.save(str(d / folder))
    write_json(d / "sentence_bert_config.json", {"max_seq_length": a.max_seq_length, "do_lower_case": False})
    write_json(d / "config_sentence_transformers.json", st_config(EMBEDDINGGEMMA_PROMPTS))
    print(f"wrote {d}: {cfg.layer_types}, window {a.sliding_window}, causal {a.causal}, softcap {a.softcap}")


if __name__ == "__main__":
    main()
