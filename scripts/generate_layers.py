#!/usr/bin/env python3
"""Records a suite's per-layer hidden states from the real transformers model, for `embcheck bisect`.

    .venv-ref/bin/python scripts/generate_layers.py --suite fixtures/suites/tiny-bert-mean [--texts N] [--full]

(also run by `generate_fixtures.py --layers [N] [--layers-full]` after it writes a suite). For the first N texts of
the suite's texts.jsonl (default: all of them), each tokenized as transformers' AutoTokenizer does
(`tokenizer(text, truncation=True, max_length=<the suite's max length>)`, the raw-cls pipeline's tokens) and run
alone through AutoModel in float32 on the CPU, forward hooks record the hidden states after each stage:

  embeddings             the embedding layer's output (after its LayerNorm)
  layers.{i}.attention   layer i's attention block, after its add & norm      (--full only)
  layers.{i}.mlp         layer i's feed-forward block, after its add & norm: the layer's output
  final_norm             a pre-LN family's final norm (ModernBERT; there the stages above are the residual stream
                         after each block, before any norm)

Hooks sit on the modules that end each stage (the names differ by family: see stage_hooks). The last stage is
checked against AutoModel's last_hidden_state (the hooks saw the real computation).

Writes <suite>/layers.safetensors (atomically), all f32 except the indices:
  <stage>        f32 [T, H]   the real tokens of every recorded text, text after text (no padding)
  input_ids      i64 [T]      the token ids
  offsets        i64 [n+1]    text k's rows are offsets[k]..offsets[k+1]
  text_index     i64 [n]      which line of texts.jsonl each recorded text is
metadata: format embcheck-layers/1, stages (JSON list, in order), libraries, model_files (sha256), texts_sha256,
max_length, tokenization, dtype float32, created. Size: 4·H bytes per token per stage.
"""
from __future__ import annotations

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import argparse
import datetime
import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate_fixtures as gf  # noqa: E402  the same provenance helpers as the references

FORMAT = "embcheck-layers/1"
DECODERS = ["llama", "mistral", "qwen2", "qwen3"]

# model_type -> the module that ends each stage and how its hidden states are read: "out" its output, "out0" the
# first element of its output tuple, "in" its first input (a pre-hook). {i} is the layer.
POST_LN = {
    "bert": ("embeddings.LayerNorm", "encoder.layer.{i}.attention.output.LayerNorm", "encoder.layer.{i}.output.LayerNorm"),
    "mpnet": ("embeddings.LayerNorm", "encoder.layer.{i}.attention.LayerNorm", "encoder.layer.{i}.output.LayerNorm"),
    "distilbert": ("embeddings.LayerNorm", "transformer.layer.{i}.sa_layer_norm", "transformer.layer.{i}.output_layer_norm"),
}
for alias in ("roberta", "xlm-roberta", "camembert"):
    POST_LN[alias] = POST_LN["bert"]


def stage_hooks(model_type: str, layers: int, full: bool) -> list[tuple[str, str, str]]:
    """(stage, module, how) in forward order."""
    if model_type in POST_LN:
        emb, attn, out = POST_LN[model_type]
        stages = [("embeddings", emb, "out")]
        for i in range(layers):
            if full:
                stages.append((f"layers.{i}.attention", attn.format(i=i), "out"))
            stages.append((f"layers.{i}.mlp", out.format(i=i), "out"))
        return stages
    # Pre-norm families: the residual stream after the attention block is the input of the norm that opens the
    # MLP block; after the MLP block, the layer's output; then the final norm.
    pre_norm = {
        "modernbert": ("embeddings", "mlp_norm", "final_norm"),
        # The embeddings are embed_tokens' output (Gemma 3: scaled by √hidden); Gemma 3 normalizes the attention's
        # output itself, so its MLP block opens with pre_feedforward_layernorm.
        "gemma3_text": ("embed_tokens", "pre_feedforward_layernorm", "norm"),
        **{t: ("embed_tokens", "post_attention_layernorm", "norm") for t in DECODERS},
    }
    if model_type in pre_norm:
        embeddings, mlp_in, final = pre_norm[model_type]
        stages = [("embeddings", embeddings, "out")]
        for i in range(layers):
            if full:
                stages.append((f"layers.{i}.attention", f"layers.{i}.{mlp_in}", "in"))
            stages.append((f"layers.{i}.mlp", f"layers.{i}", "out0"))
        return stages + [("final_norm", final, "out")]
    raise SystemExit(f"model_type {model_type!r}: no stage hooks known (known: {sorted(POST_LN) + ['modernbert', 'gemma3_text'] + DECODERS})")


def suite_settings(suite: Path) -> tuple[Path, int, list[dict]]:
    cfg = tomllib.loads((suite / "suite.toml").read_text(encoding="utf-8"))
    model_dir = (suite / cfg["model"]).resolve()
    max_length = cfg.get("max_length") or gf.default_max_length(model_dir)[0]
    texts = [json.loads(line) for line in (suite / "texts.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    return model_dir, int(max_length), texts


def record(suite: Path, n: int | None, full: bool, threads: int = 1) -> Path:
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(threads)
    model_dir, max_length, texts = suite_settings(suite)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    model_type = config.get("model_type", "")
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir), torch_dtype=torch.float32).eval()
    layers = int(config.get("num_hidden_layers", config.get("n_layers", 0)))
    stages = stage_hooks(model_type, layers, full)
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    handles = []

    def keep(name: str, t: torch.Tensor) -> None:
        seen[name] = t.detach().to(torch.float32).clone()

    for name, module_name, how in stages:
        if module_name not in modules:
            raise SystemExit(f"{model_dir}: no module {module_name} for stage {name}")
        m = modules[module_name]
        if how == "in":
            handles.append(m.register_forward_pre_hook(lambda _m, a, name=name: keep(name, a[0])))
        elif how == "out0":
            handles.append(m.register_forward_hook(lambda _m, _a, o, name=name: keep(name, o[0] if isinstance(o, tuple) else o)))
        else:
            handles.append(m.register_forward_hook(lambda _m, _a, o, name=name: keep(name, o)))
    chosen = list(range(len(texts) if n is None else min(n, len(texts))))
    rows: dict[str, list[np.ndarray]] = {name: [] for name, _, _ in stages}
    ids_all, offsets = [], [0]
    with torch.inference_mode():
        for k in chosen:
            enc = tok(texts[k]["text"], truncation=True, max_length=max_length, return_tensors="pt")
            seen.clear()
            last = model(**enc).last_hidden_state
            if not torch.equal(seen[stages[-1][0]], last):
                raise SystemExit(f"text {k}: the last hook's states are not last_hidden_state")
            for name, _, _ in stages:
                rows[name].append(seen[name][0].numpy())
            ids_all.extend(enc["input_ids"][0].tolist())
            offsets.append(len(ids_all))
    for h in handles:
        h.remove()
    tensors = {name: np.ascontiguousarray(np.concatenate(rows[name]), dtype=np.float32) for name, _, _ in stages}
    tensors["input_ids"] = np.asarray(ids_all, dtype=np.int64)
    tensors["offsets"] = np.asarray(offsets, dtype=np.int64)
    tensors["text_index"] = np.asarray(chosen, dtype=np.int64)
    metadata = {
        "format": FORMAT,
        "stages": json.dumps([name for name, _, _ in stages]),
        "hooks": json.dumps({name: f"{module} ({how})" for name, module, how in stages}),
        "libraries": json.dumps(gf.library_versions()),
        "model_files": json.dumps(gf.model_file_hashes(model_dir)),
        "texts_sha256": gf.sha256(suite / "texts.jsonl"),
        "max_length": str(max_length),
        "tokenization": f"AutoTokenizer: tokenizer(text, truncation=True, max_length={max_length}), one text per forward",
        "dtype": "float32",
        "script": Path(__file__).name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    out_path = suite / "layers.safetensors"
    gf.atomic_save_safetensors(out_path, tensors, metadata)
    size = out_path.stat().st_size
    print(f"wrote {out_path}: {len(chosen)} texts, {len(ids_all)} tokens, {len(stages)} stages, {size / 1e6:.2f} MB", file=sys.stderr)
    return out_path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", required=True, type=Path, help="suite directory (suite.toml, texts.jsonl)")
    ap.add_argument("--texts", type=int, default=None, metavar="N", help="the first N texts (default: all)")
    ap.add_argument("--full", action="store_true", help="also each layer's attention block")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    record(a.suite, a.texts, a.full, a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
