#!/usr/bin/env python3
"""Runs the real Python libraries (transformers, FlagEmbedding, sentence-transformers) on CPU in float32
(or FlagEmbedding alone in float16, --dtype f16) and writes a reference suite for embcheck.

    .venv-ref/bin/python scripts/generate_fixtures.py \\
        --model fixtures/models/tiny-bert-mean --texts fixtures/texts/core.jsonl \\
        --out fixtures/suites/tiny-bert-mean [--max-length N] [--name NAME] \\
        [--pipelines raw-cls normalized-cls sentence-transformers m3-sparse m3-colbert] [--batch-size 8] \\
        [--dtype f32|f16] [--instruction TEXT] [--prompt TEXT | --prompt-name NAME] [--layers [N|full] [--layers-full]]

Runs under either stack (scripts/setup-reference-env.sh: transformers 4 with FlagEmbedding, every pipeline;
scripts/setup-reference5-env.sh: transformers 5 / sentence-transformers 6, where FlagEmbedding does not import and
its pipelines are skipped with one line). The versions used are recorded in the metadata key "libraries", which
embcheck check follows.

Writes, into the suite directory (each file atomically: temp file, then rename):
  texts.jsonl              the input texts (ids added as t0000, t0001, ... where absent; text unchanged)
  suite.toml               name, model (relative to the suite dir for a local model), max_length, dtype,
                           instruction / prompt / prompt_name (only when given), pipelines
  reference.safetensors    per pipeline P: the outputs (see below) and P.input_ids / P.input_offsets, the
                           unpadded token ids the library fed to the model (special tokens included, after
                           truncation), plus metadata (versions, sha256 of the inputs, the exact calls)

Tensors:
  raw-cls, normalized-cls, sentence-transformers   f32 [n_texts, dim], rows in input order
  m3-sparse f32 [nnz], m3-sparse.token_ids i64 [nnz] (ascending within a text), m3-sparse.offsets i64 [n+1]
  m3-colbert f32 [rows, dim], m3-colbert.offsets i64 [n+1]
  P.input_ids i64 [total tokens], P.input_offsets i64 [n+1]            for every pipeline P

Pipelines:
  raw-cls                 transformers AutoModel/AutoTokenizer, last_hidden_state[:, 0], not normalized
  normalized-cls          FlagEmbedding (use_fp16=False, devices="cpu"): BGEM3FlagModel dense_vecs when the
                          model dir has sparse_linear.pt and colbert_linear.pt, else FlagModel(pooling cls,
                          normalize_embeddings=True)
  m3-sparse, m3-colbert   BGEM3FlagModel lexical_weights / colbert_vecs from the same encode() call
  sentence-transformers   SentenceTransformer(dir, device="cpu").encode(), normalize_embeddings=False

--dtype f16 (default f32): FlagEmbedding the way it runs by default on a GPU, use_fp16=True: the model (and the
M3 heads) loaded and run in torch.float16, here on CPU. Only normalized-cls, m3-sparse and m3-colbert. FlagEmbedding
1.4.2 casts the model back to float32 when the device is "cpu" (encode_single_device: `if device == "cpu":
self.model.float()`); keep_fp16_on_cpu() turns that one call into a no-op, and forward hooks assert that every
module ran with float16 parameters and produced float16 hidden states. Outputs are stored as f32 (dense vectors
and lexical weights come back float16 and convert exactly; colbert vectors come back float32, as on a GPU, because
FlagEmbedding multiplies the float16 head output by a float mask); metadata dtype "float16", suite.toml
dtype = "f16". The cross-checks still recompute by hand with the float32 transformers model, so for f16 they
report the half-precision error.

Query texts (none of these by default; then every pipeline encodes the texts as they are):
  --instruction TEXT      FlagEmbedding's query instruction: the FlagEmbedding pipelines (normalized-cls, m3-sparse,
                          m3-colbert) are built with query_instruction_for_retrieval=TEXT (query_instruction_format
                          left at its default "{}{}": TEXT + text, no separator) and computed with encode_queries()
                          instead of encode(); encode_queries() prefixes every text before tokenizing and truncates
                          the prefixed text to max_length (given explicitly as N here; left out, it would be
                          query_max_length, which the script also sets to N; FlagEmbedding's default is 512).
                          raw-cls (transformers AutoModel has no instruction) and sentence-transformers are unaffected.
  --prompt TEXT           sentence-transformers encode(..., prompt=TEXT): the text becomes TEXT + text (then
  --prompt-name NAME      stripped up to sentence-transformers 5.3); or encode(..., prompt_name=NAME), the prompt from the model's
                          config_sentence_transformers.json. If the Pooling module has include_prompt=false, the
                          first prompt_length tokens (len(tokenize([prompt])) minus a trailing special token, so
                          [CLS] included) are masked out of the pooling. Only the sentence-transformers pipeline.
  The recorded P.input_ids are those of the prefixed texts, as the library tokenized them.
"""
from __future__ import annotations

import os

# CPU only, whatever the machine has; deterministic, quiet.
os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse
import contextlib
import datetime
import hashlib
import importlib.metadata
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

SCRIPT = Path(__file__).resolve()
ALL_PIPELINES = ["raw-cls", "normalized-cls", "sentence-transformers", "m3-sparse", "m3-colbert", "raw-last",
                 "normalized-last"]
DENSE = ["raw-cls", "normalized-cls", "sentence-transformers", "raw-last", "normalized-last"]
# Decoder embedders: last-token pipelines instead of the CLS ones.
DECODERS = ["llama", "mistral", "qwen2", "qwen3"]
INSTRUCTED = ["normalized-cls", "m3-sparse", "m3-colbert", "normalized-last"]  # the pipelines --instruction applies to
FLAG_PIPELINES = ["normalized-cls", "m3-sparse", "m3-colbert"]
HALF_PIPELINES = FLAG_PIPELINES + ["raw-last", "normalized-last"]  # the only ones --dtype f16 runs
FORMAT = "embcheck-reference/1"
# The config.json model_types whose encoder embcheck computes (src/model/config.rs IMPLEMENTED; a unit test there
# keeps the two lists equal). Other models get model-free checks only: a system's vectors against the references,
# diff, gate with a candidate system; no proven diagnosis, no `embcheck check` of its own pipeline.
EMBCHECK_IMPLEMENTS = ["bert", "xlm-roberta", "roberta", "camembert", "mpnet", "distilbert", "modernbert", "llama", "mistral", "qwen2", "qwen3", "gemma3_text"]


# ---------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------
def load_texts(paths: list[Path]) -> list[dict]:
    rows: list[dict] = []
    for path in paths:
        data = path.read_bytes().decode("utf-8")  # strict: invalid UTF-8 is an error
        # Split on "\n" only: str.splitlines() would also split on U+2028, U+0085, ... inside texts.
        for lineno, line in enumerate(data.split("\n"), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{lineno}: not JSON: {e}")
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise SystemExit(f'{path}:{lineno}: each line must be a JSON object with a string "text"')
            if "id" in obj and not isinstance(obj["id"], str):
                raise SystemExit(f'{path}:{lineno}: "id" must be a string')
            rows.append(obj)
    if not rows:
        raise SystemExit("no texts")
    for i, r in enumerate(rows):
        if "id" not in r:
            r["id"] = f"t{i:04d}"
    ids = [r["id"] for r in rows]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise SystemExit(f"duplicate text ids: {dup}")
    return [{"id": r["id"], "text": r["text"], **{k: v for k, v in r.items() if k not in ("id", "text")}} for r in rows]


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def default_max_length(model_dir: Path | None) -> tuple[int, str]:
    if model_dir is None:
        raise SystemExit("--max-length is required for a model that is not a local directory")
    sbc = read_json(model_dir / "sentence_bert_config.json")
    if sbc and sbc.get("max_seq_length"):
        return int(sbc["max_seq_length"]), "sentence_bert_config.json max_seq_length"
    tc = read_json(model_dir / "tokenizer_config.json")
    if tc and tc.get("model_max_length") and int(tc["model_max_length"]) < 1_000_000:
        return int(tc["model_max_length"]), "tokenizer_config.json model_max_length"
    cfg = read_json(model_dir / "config.json") or {}
    if "max_position_embeddings" in cfg:
        n = int(cfg["max_position_embeddings"])
        if cfg.get("model_type") in ("xlm-roberta", "roberta", "camembert"):
            return n - 2, "config.json max_position_embeddings - 2 (pad offset)"
        return n, "config.json max_position_embeddings"
    raise SystemExit("cannot determine a default max length; pass --max-length")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_file_hashes(model_dir: Path) -> dict[str, str]:
    names = [
        "model.safetensors", "pytorch_model.bin", "tokenizer.json", "config.json", "tokenizer_config.json",
        "special_tokens_map.json", "modules.json", "sentence_bert_config.json",
        "config_sentence_transformers.json", "vocab.txt", "sentencepiece.bpe.model",
    ]
    files = [model_dir / n for n in names if (model_dir / n).is_file()]
    files += sorted(model_dir.glob("*.pt"))
    files += sorted(model_dir.glob("model-*.safetensors")) + sorted(model_dir.glob("pytorch_model-*.bin"))
    for sub in sorted(p for p in model_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        # 1_Pooling/config.json, 2_Dense/{config.json, model.safetensors, pytorch_model.bin}, ...
        for n in ["config.json", "model.safetensors", "pytorch_model.bin"]:
            if (sub / n).is_file():
                files.append(sub / n)
    return {str(p.relative_to(model_dir)): sha256(p) for p in files}


def flag_embedding_version() -> str | None:
    """FlagEmbedding's version if it is installed and imports, else None. FlagEmbedding 1.4.2 does not import under
    transformers 5 (it needs transformers.modeling_attn_mask_utils, which transformers 5 removed): on that stack
    the FlagEmbedding pipelines are skipped."""
    try:
        version = importlib.metadata.version("FlagEmbedding")
    except importlib.metadata.PackageNotFoundError:
        return None
    try:
        import FlagEmbedding  # noqa: F401
    except Exception:  # noqa: BLE001  any import failure means the library cannot be run here
        return None
    return version


def library_versions() -> dict[str, str]:
    import sentence_transformers
    import tokenizers
    import transformers

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence-transformers": sentence_transformers.__version__,
        **({"FlagEmbedding": v} if (v := flag_embedding_version()) else {}),
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
        "safetensors": importlib.metadata.version("safetensors"),
    }


# ---------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------
def chunks(seq: list, n: int):
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def pack(seqs: list) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-text sequences; offsets[i]..offsets[i+1] is text i."""
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    if not seqs or offsets[-1] == 0:
        return np.zeros((0,), dtype=np.int64), offsets
    # Empty sequences are left out: np.asarray([]) is 1-D, which np.concatenate refuses beside 2-D rows (a text
    # whose M3 sparse output is empty, e.g. one that is only whitespace, gives [] next to [(id, weight), ...]).
    return np.concatenate([np.asarray(s) for s in seqs if len(s)]), offsets


class Capture:
    """Records the input_ids / attention_mask that each library actually fed to the underlying transformers model,
    batch by batch. It wraps the model object's own `forward` (an instance attribute; the class is untouched)
    rather than registering a forward hook: sentence-transformers 6 calls `model.forward(**features)` directly,
    which bypasses nn.Module hooks, while transformers and FlagEmbedding call `model(...)`, which also ends in
    `self.forward`. functools.wraps keeps the signature that the libraries inspect."""

    def __init__(self, module: torch.nn.Module):
        import functools

        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.module = module
        inner = module.forward
        self.had_own = "forward" in module.__dict__

        @functools.wraps(inner)
        def forward(*args, **kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            mask = kwargs.get("attention_mask")
            if mask is None and len(args) > 1:
                mask = args[1]
            self.batches.append((ids.detach().clone(), mask.detach().clone()))
            return inner(*args, **kwargs)

        self.previous = inner
        module.forward = forward

    def rows(self, skip: int = 0) -> list[list[int]]:
        """Unpadded ids of every captured row (right padding, or left padding for a tokenizer whose padding_side
        is left, checked: the real tokens are contiguous)."""
        out = []
        for ids, mask in self.batches[skip:]:
            for r in range(ids.shape[0]):
                m = mask[r].tolist()
                n = int(sum(m))
                if m == [1] * n + [0] * (len(m) - n):
                    out.append(ids[r, :n].tolist())
                else:
                    assert m == [0] * (len(m) - n) + [1] * n, "attention mask is neither right- nor left-padded"
                    out.append(ids[r, len(m) - n:].tolist())
        return out

    def remove(self):
        if self.had_own:
            self.module.forward = self.previous
        else:
            del self.module.forward  # back to the class's forward


def check_same_ids(what: str, fed: list[list[int]], ours: list[list[int]], order: np.ndarray) -> None:
    """fed: rows in the order the library ran them; order[k] = input index of row k."""
    assert len(fed) == len(ours), f"{what}: {len(fed)} rows fed to the model, {len(ours)} texts"
    for k, i in enumerate(order):
        if fed[k] != ours[int(i)]:
            raise AssertionError(
                f"{what}: text {int(i)}: ids fed to the model ({len(fed[k])}) differ from the tokenizer call "
                f"({len(ours[int(i)])})"
            )


def assert_dtype(what: str, module: torch.nn.Module, dtype: torch.dtype = torch.float32) -> None:
    dts = {p.dtype for p in module.parameters()}
    assert dts == {dtype}, f"{what}: parameters are {dts}, expected {str(dtype).removeprefix('torch.')} only"


def keep_fp16_on_cpu(emb) -> str:
    """FlagEmbedding 1.4.2 loads the model in torch.float16 for use_fp16=True (AutoModel.from_pretrained(...,
    dtype=torch.float16); the M3 colbert/sparse heads are nn.Linear(..., dtype=torch.float16)), but its
    encode_single_device() then does `if device == "cpu": self.model.float()` (inference/embedder/encoder_only/
    m3.py and base.py), so on CPU it silently runs in float32. On a GPU that branch is not taken: the model stays in
    float16 and is only moved with .to(device). Shadow `.float` on this one model object with a no-op (an instance
    attribute; the class and every other module are untouched) so that encode() runs the GPU code path, on CPU."""
    model = emb.model
    model.float = lambda: model  # nn.Module.float() returns self; this one leaves the dtype alone
    return f"emb.model.float = lambda: emb.model  (no-op: keeps FlagEmbedding's `if device == 'cpu': self.model.float()` from casting the {type(model).__name__} back to float32)"


class HalfCheck:
    """Forward hooks on every module that owns parameters (embeddings, linears, layer norms, the M3 heads) and on
    the transformers model: assert that each forward ran with float16 parameters and returned float16 hidden
    states, i.e. that the library really computed in half precision."""

    def __init__(self, root: torch.nn.Module, inner: torch.nn.Module):
        self.inner, self.inner_calls, self.module_calls = inner, 0, 0
        self.handles = [
            m.register_forward_hook(self.hook)
            for m in root.modules()
            if m is inner or any(True for _ in m.parameters(recurse=False))
        ]

    def hook(self, module, args, out):
        name = type(module).__name__
        dts = {p.dtype for p in module.parameters(recurse=module is self.inner)}
        assert dts == {torch.float16}, f"{name}: forward with parameters in {dts}, expected float16 only"
        h = out.last_hidden_state if module is self.inner else out[0] if isinstance(out, tuple) else out
        assert h.dtype == torch.float16, f"{name}: forward returned {h.dtype}, expected float16"
        if module is self.inner:
            self.inner_calls += 1
        else:
            self.module_calls += 1

    def remove(self):
        for h in self.handles:
            h.remove()


# ---------------------------------------------------------------------------------------------------------
# Pipelines
# ---------------------------------------------------------------------------------------------------------
@torch.no_grad()
def run_raw_cls(model: str, texts: list[str], n: int, bs: int) -> dict:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    mdl = AutoModel.from_pretrained(model, dtype=torch.float32).eval()
    assert_dtype("raw-cls", mdl)
    assert tok.padding_side == "right"
    vecs, ids = [], []
    for batch in chunks(texts, bs):
        enc = tok(batch, padding=True, truncation=True, max_length=n, return_tensors="pt")
        out = mdl(**enc)[0][:, 0]
        vecs.append(out.numpy())
        for r in range(len(batch)):
            m = enc["attention_mask"][r].tolist()
            k = int(sum(m))
            assert m == [1] * k + [0] * (len(m) - k)
            ids.append(enc["input_ids"][r, :k].tolist())
    call = (
        f"transformers.AutoModel.from_pretrained(model, dtype=torch.float32).eval(); "
        f"AutoTokenizer.from_pretrained(model)(batch, padding=True, truncation=True, max_length={n}, "
        f"return_tensors='pt'); model(**inputs)[0][:, 0] under torch.no_grad(), batches of {bs} in input order"
    )
    return {"vecs": np.concatenate(vecs).astype(np.float32), "ids": ids, "call": call, "model": mdl, "tok": tok}


def last_token_rows(h: torch.Tensor, mask: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, list[list[int]]]:
    """Each row's hidden state at its last real token and its real ids, for either padding side."""
    vecs, rows = [], []
    for r in range(h.shape[0]):
        real = mask[r].nonzero().flatten()
        assert (real == torch.arange(int(real[0]), int(real[-1]) + 1)).all(), "real tokens are not contiguous"
        vecs.append(h[r, int(real[-1])])
        rows.append(ids[r, real].tolist())
    return torch.stack(vecs), rows


@torch.no_grad()
def run_raw_last(model: str, texts: list[str], n: int, bs: int, dtype: torch.dtype = torch.float32) -> dict:
    """transformers AutoModel on a decoder: the last real token's hidden state, the tokenizer's own padding side
    (with --dtype f16 the model loaded and run in torch.float16, on CPU)."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    mdl = AutoModel.from_pretrained(model, dtype=dtype).eval()
    assert_dtype("raw-last", mdl, dtype)
    vecs, ids = [], []
    for batch in chunks(texts, bs):
        enc = tok(batch, padding=True, truncation=True, max_length=n, return_tensors="pt")
        v, rows = last_token_rows(mdl(**enc)[0], enc["attention_mask"], enc["input_ids"])
        assert v.dtype == dtype
        vecs.append(v.float().numpy())
        ids += rows
    call = (
        f"transformers.AutoModel.from_pretrained(model, dtype={dtype}).eval(); "
        f"AutoTokenizer.from_pretrained(model) (padding_side {tok.padding_side!r})(batch, padding=True, truncation=True, "
        f"max_length={n}, return_tensors='pt'); model(**inputs)[0] at each row's last attention_mask position, "
        f"batches of {bs} in input order"
    )
    return {"vecs": np.concatenate(vecs).astype(np.float32), "ids": ids, "call": call, "model": mdl, "tok": tok}


@torch.no_grad()
def run_normalized_last(model: str, texts: list[str], n: int, bs: int, instruction: str | None,
                        dtype: torch.dtype = torch.float32) -> dict:
    """The decoder model cards' recipe (Qwen3-Embedding, e5-mistral-7b-instruct): the tokenizer with
    padding_side='left', the instruction prefixed, last_token_pool (left padding: [:, -1]), F.normalize. EOS: when
    the tokenizer's own encodings end with eos_token_id (Qwen3-Embedding) the plain call; otherwise e5-mistral's
    card: truncate to max_length - 1 without padding, append eos_token_id to every text, then tokenizer.pad."""
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model, padding_side="left")
    mdl = AutoModel.from_pretrained(model, dtype=dtype).eval()
    assert_dtype("normalized-last", mdl, dtype)
    fed = [(instruction or "") + t for t in texts]
    by_hand = tok("a")["input_ids"][-1] != tok.eos_token_id
    vecs, ids = [], []
    for batch in chunks(fed, bs):
        if by_hand:
            enc = tok(batch, max_length=n - 1, return_attention_mask=False, padding=False, truncation=True)
            enc["input_ids"] = [x + [tok.eos_token_id] for x in enc["input_ids"]]
            enc = tok.pad(enc, padding=True, return_attention_mask=True, return_tensors="pt")
        else:
            enc = tok(batch, padding=True, truncation=True, max_length=n, return_tensors="pt")
        h = mdl(**enc)[0]
        mask = enc["attention_mask"]
        # last_token_pool, as on the cards
        if mask[:, -1].sum() == mask.shape[0]:
            pooled = h[:, -1]
        else:
            pooled = h[torch.arange(h.shape[0]), mask.sum(dim=1) - 1]
        assert pooled.dtype == dtype
        vecs.append(F.normalize(pooled, p=2, dim=1).float().numpy())
        ids += last_token_rows(h, mask, enc["input_ids"])[1]
    eos = ("tokenizer(batch, max_length=%d, padding=False, truncation=True); input_ids + [eos_token_id]; "
           "tokenizer.pad(..., padding=True)" % (n - 1)) if by_hand else (
           "tokenizer(batch, padding=True, truncation=True, max_length=%d) (its post-processor appends EOS)" % n)
    call = (
        f"AutoTokenizer.from_pretrained(model, padding_side='left'); {eos}; AutoModel(dtype={dtype})(**inputs)"
        f"[0]; last_token_pool; F.normalize(p=2, dim=1); texts = {instruction or ''!r} + text; batches of {bs}"
    )
    return {"vecs": np.concatenate(vecs).astype(np.float32), "ids": ids, "call": call, "texts": fed}


@torch.no_grad()
def run_flag(model: str, texts: list[str], n: int, bs: int, m3: bool, want_sparse: bool, want_colbert: bool,
             fp16: bool = False, instruction: str | None = None) -> dict:
    from FlagEmbedding import BGEM3FlagModel, FlagModel

    dtype = torch.float16 if fp16 else torch.float32
    common = dict(
        normalize_embeddings=True, use_fp16=fp16, devices="cpu", batch_size=bs,
        query_max_length=n, passage_max_length=n,
    )
    # With an instruction: query_instruction_for_retrieval (query_instruction_format stays at its default "{}{}")
    # and encode_queries(), which prefixes each text (AbsEmbedder.encode: get_detailed_instruct(format,
    # instruction, text) = "{}{}".format(instruction, text)) and then tokenizes with truncation=True,
    # max_length=max_length (explicit here; when omitted, encode_queries() falls back to query_max_length).
    q = instruction is not None
    if q:
        common["query_instruction_for_retrieval"] = instruction
    ctor_q = f", query_instruction_for_retrieval={instruction!r}" if q else ""
    method = "encode_queries" if q else "encode"
    if m3:
        emb = BGEM3FlagModel(model, **common)
        inner = emb.model.model  # EncoderOnlyEmbedderM3ModelForInference.model: the transformers model
        patch = keep_fp16_on_cpu(emb) if fp16 else None
        half = HalfCheck(emb.model, inner) if fp16 else None
        cap = Capture(inner)
        out = getattr(emb, method)(
            texts, batch_size=bs, max_length=n,
            return_dense=True, return_sparse=want_sparse, return_colbert_vecs=want_colbert,
        )
        assert_dtype("BGEM3FlagModel", emb.model, dtype)
        dense = out["dense_vecs"]
        ctor = f"FlagEmbedding.BGEM3FlagModel(model, normalize_embeddings=True, use_fp16={fp16}, devices='cpu', batch_size={bs}, query_max_length={n}, passage_max_length={n}{ctor_q})"
        ctor += f"; {patch}; emb" if fp16 else ""
        enc = f".{method}(texts, batch_size={bs}, max_length={n}, return_dense=True, return_sparse={want_sparse}, return_colbert_vecs={want_colbert})"
        calls = {"normalized-cls": ctor + enc + "['dense_vecs']"}
        if want_sparse:
            calls["m3-sparse"] = ctor + enc + "['lexical_weights'] (dict token id -> weight per text; ids sorted ascending)"
        if want_colbert:
            calls["m3-colbert"] = ctor + enc + "['colbert_vecs'] (one [n_tokens - 1, dim] array per text)"
    else:
        emb = FlagModel(model, pooling_method="cls", **common)
        inner = emb.model
        patch = keep_fp16_on_cpu(emb) if fp16 else None
        half = HalfCheck(emb.model, inner) if fp16 else None
        cap = Capture(inner)
        dense = getattr(emb, method)(texts, batch_size=bs, max_length=n, convert_to_numpy=True)
        assert_dtype("FlagModel", emb.model, dtype)
        out = {}
        ctor = f"FlagEmbedding.FlagModel(model, pooling_method='cls', normalize_embeddings=True, use_fp16={fp16}, devices='cpu', batch_size={bs}, query_max_length={n}, passage_max_length={n}{ctor_q})"
        ctor += f"; {patch}; emb" if fp16 else ""
        calls = {"normalized-cls": ctor + f".{method}(texts, batch_size={bs}, max_length={n}, convert_to_numpy=True)"}
    cap.remove()

    # The texts the model saw: with an instruction, prefixed by the library's own helper, as encode() does.
    if q:
        assert emb.query_instruction_for_retrieval == instruction and emb.query_instruction_format == "{}{}"
        assert emb.query_max_length == n, f"query_max_length {emb.query_max_length} != {n}"
        fed = [emb.get_detailed_instruct(emb.query_instruction_format, instruction, t) for t in texts]
        assert fed == [instruction + t for t in texts], "query_instruction_format '{}{}' is not a plain prefix"
        calls = {p: c + f" (each text prefixed: {instruction!r} + text, then truncated to {n} tokens)"
                 for p, c in calls.items()}
    else:
        fed = texts
    # The ids, from the library's own tokenizer called exactly as its encode() calls it.
    ids: list[list[int]] = []
    for batch in chunks(fed, bs):
        ids.extend(emb.tokenizer(batch, truncation=True, max_length=n)["input_ids"])
    # encode() runs the first (longest) batch once more to probe the batch size, then every batch in
    # descending-length order (np.argsort of -len): check what was fed against our ids.
    order = np.argsort([-len(x) for x in ids])
    n_batches = (len(texts) + bs - 1) // bs
    assert len(cap.batches) == n_batches + 1, f"expected {n_batches + 1} forward calls, saw {len(cap.batches)}"
    check_same_ids("FlagEmbedding", cap.rows(skip=1), ids, order)
    if fp16:
        half.remove()
        assert half.inner_calls == len(cap.batches), f"float16 hooks saw {half.inner_calls} of {len(cap.batches)} forwards"
        # What encode() returned, as returned (on a GPU the same: FlagEmbedding multiplies the float16 colbert_linear
        # output by attention_mask.float(), so its colbert vectors come out float32); stored as float32.
        returned = {"normalized-cls": np.asarray(dense).dtype}
        if m3 and want_sparse:
            returned["m3-sparse"] = next((np.asarray(v).dtype for lw in out["lexical_weights"] for v in lw.values()), None)
        if m3 and want_colbert:
            returned["m3-colbert"] = np.asarray(out["colbert_vecs"][0]).dtype
        calls = {p: c + f" (returns {returned[p]}; stored as float32)" for p, c in calls.items()}

    res = {"dense": np.asarray(dense, dtype=np.float32), "ids": ids, "calls": calls, "tokenizer": emb.tokenizer,
           "texts": fed}
    if q:
        # For the report only: the same model object without the instruction (plain encode()).
        if m3:
            plain = emb.encode(texts, batch_size=bs, max_length=n, return_dense=True, return_sparse=False,
                               return_colbert_vecs=False)["dense_vecs"]
        else:
            plain = emb.encode(texts, batch_size=bs, max_length=n, convert_to_numpy=True)
        res["plain_dense"] = np.asarray(plain, dtype=np.float32)
    if fp16:
        res["float16 forward hooks"] = {"model forwards": half.inner_calls, "module forwards": half.module_calls}
    if m3 and want_sparse:
        res["sparse"] = [
            sorted(((int(k), float(v)) for k, v in lw.items()), key=lambda kv: kv[0]) for lw in out["lexical_weights"]
        ]
        res["sparse_raw"] = out["lexical_weights"]
    if m3 and want_colbert:
        res["colbert"] = [np.asarray(c, dtype=np.float32) for c in out["colbert_vecs"]]
    del emb
    return res


def st_version() -> tuple[int, int]:
    import sentence_transformers

    major, minor = sentence_transformers.__version__.split(".")[:2]
    return int(major), int(minor)


def st_major() -> int:
    return st_version()[0]


def st_strips_texts() -> bool:
    """sentence-transformers up to 5.3 calls str.strip() on every text in Transformer.tokenize; from 5.4 it does not
    (6.2's Transformer.preprocess hands the texts to the tokenizer as they are)."""
    return st_version() < (5, 4)


def st_tokenize(st, texts: list[str]) -> dict:
    """The model inputs sentence-transformers makes of `texts` (5.x: tokenize(); 6.x: preprocess(), which also returns
    bookkeeping keys such as "modality" that the transformers model does not take)."""
    enc = st.preprocess(texts) if hasattr(st, "preprocess") else st.tokenize(texts)
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


@torch.no_grad()
def st_effective_prompt(st, prompt: str | None, prompt_name: str | None) -> str | None:
    """The prompt SentenceTransformer.encode() applies (5.1.2): prompt, else prompts[prompt_name], else
    prompts[default_prompt_name]; an empty one is no prompt."""
    if prompt is None:
        if prompt_name is not None:
            if prompt_name not in st.prompts:
                raise SystemExit(f"--prompt-name {prompt_name!r}: the model's prompts are {st.prompts!r}")
            prompt = st.prompts[prompt_name]
        elif st.default_prompt_name is not None:
            prompt = st.prompts.get(st.default_prompt_name)
    return prompt if prompt else None


@torch.no_grad()
def run_st(model: str, texts: list[str], n: int, bs: int, prompt: str | None = None,
           prompt_name: str | None = None) -> dict:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model, device="cpu", model_kwargs={"dtype": torch.float32})
    st.max_seq_length = n
    assert_dtype("SentenceTransformer", st)
    kw = {"prompt": prompt} if prompt is not None else {"prompt_name": prompt_name} if prompt_name is not None else {}
    eff = st_effective_prompt(st, prompt, prompt_name)
    if kw and not eff:
        raise SystemExit(f"{kw}: resolves to an empty prompt, which encode() ignores")
    cap = Capture(st[0].auto_model)
    vecs = st.encode(
        texts, batch_size=bs, convert_to_numpy=True, normalize_embeddings=False, show_progress_bar=False, **kw
    )
    cap.remove()
    # encode() prepends the prompt to every text (Transformer.tokenize then strips it, as any text).
    fed = [eff + t for t in texts] if eff else texts
    ids = [st_tokenize(st, [t])["input_ids"][0].tolist() for t in fed]
    # encode() sorts by character length (np.argsort of -len(text)), batches, then restores input order.
    order = np.argsort([-len(t) for t in fed])
    check_same_ids("sentence-transformers", cap.rows(), ids, order)
    modules = [type(m).__name__ for m in st]
    extra = "".join(f", {k}={v!r}" for k, v in kw.items())
    call = (
        f"sentence_transformers.SentenceTransformer(model, device='cpu', model_kwargs={{'dtype': torch.float32}}) "
        f"[{' -> '.join(modules)}]; max_seq_length = {n}; .encode(texts, batch_size={bs}, convert_to_numpy=True, "
        f"normalize_embeddings=False{extra})"
    )
    res = {"vecs": np.asarray(vecs, dtype=np.float32), "ids": ids, "call": call, "st": st, "texts": fed,
           "prompt": eff, "prompt_length": None, "include_prompt": None}
    if eff:
        # SentenceTransformer._get_prompt_length: len(tokenize([prompt])["input_ids"]) minus 1 when the last id is
        # a special token ([SEP], </s>); passed to Pooling as features["prompt_length"], which with
        # include_prompt=False sets attention_mask[:, :prompt_length] = 0 (CLS pooling takes token 0 regardless).
        # 5.x: SentenceTransformer._get_prompt_length; 6.x: the Transformer module's (same rule).
        pl = st._get_prompt_length(eff) if hasattr(st, "_get_prompt_length") else st[0]._get_prompt_length(eff)
        pools = [m for m in st if type(m).__name__ == "Pooling"]
        inc = all(m.include_prompt for m in pools)
        res.update(prompt_length=pl, include_prompt=inc)
        call += (f" (each text prefixed: {eff!r} + text, then {'stripped and ' if st_strips_texts() else ''}truncated to {n} tokens; prompt_length "
                 f"{pl}, Pooling include_prompt={inc}" + (f": the first {pl} tokens are masked out of the pooling)"
                                                          if not inc else ")"))
        res["call"] = call
        res["plain_vecs"] = np.asarray(st.encode(texts, batch_size=bs, convert_to_numpy=True,
                                                 normalize_embeddings=False, show_progress_bar=False,
                                                 prompt=""), dtype=np.float32)
    return res


# ---------------------------------------------------------------------------------------------------------
# Cross-checks between the libraries (reported, not enforced beyond gross errors)
# ---------------------------------------------------------------------------------------------------------
def cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(1) / np.maximum(np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1), 1e-30)


@torch.no_grad()
def independent_st(st, raw_model, texts: list[str], prompt: str | None = None) -> np.ndarray | None:
    """Recompute the sentence-transformers pipeline by hand from its modules' configs (one text at a time,
    no padding), with the raw-cls transformers model. texts are the prompted texts; with a prompt and
    include_prompt false, the prompt's tokens (counted by hand: the stripped prompt's ids without the trailing
    special token) are left out of mean / max / mean_sqrt_len pooling. The modules after the Pooling are applied
    in modules.json order: Dense (act(W v + b), its weights and activation from the module; tanh or identity
    only) and Normalize."""
    pool = st[1] if len(st) > 1 else None
    if pool is None or type(pool).__name__ != "Pooling":
        return None
    cfg = pool.get_config_dict()
    # sentence-transformers 6 keeps one `pooling_mode` (a name or a tuple of names, in concatenation order);
    # 5.x keeps one boolean per mode. Both are mapped to the 5.x names.
    names = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens",
             "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
             "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}
    if "pooling_mode" in cfg:
        pm = cfg["pooling_mode"]
        active = [names[m] for m in ((pm,) if isinstance(pm, str) else pm)]
    else:
        active = [k for k in names.values() if cfg.get(k)]
    if "pooling_mode_weightedmean_tokens" in active or "pooling_mode_lasttoken" in active:
        return None
    modes = [k for k in ["pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_tokens",
                         "pooling_mode_mean_sqrt_len_tokens"] if k in active]
    if any(type(m).__name__ not in ("Transformer", "Pooling", "Dense", "Normalize") for m in st):
        return None
    acts = {"torch.nn.modules.activation.Tanh": torch.tanh, "torch.nn.modules.linear.Identity": lambda x: x}
    post = []  # the modules after the Pooling, in order, as by-hand functions of the pooled vector
    for m in list(st)[2:]:
        if type(m).__name__ == "Dense":
            act = acts.get(m.get_config_dict()["activation_function"])
            if act is None:
                return None
            w, b = m.linear.weight, m.linear.bias
            post.append(lambda v, w=w, b=b, act=act: act(w @ v + b) if b is not None else act(w @ v))
        else:
            post.append(lambda v: torch.nn.functional.normalize(v, dim=0))
    skip = 0
    if prompt and not cfg.get("include_prompt", True):
        tok = st.tokenizer
        p = prompt.strip() if st_strips_texts() else prompt
        p = p.lower() if st[0].do_lower_case else p
        p_ids = tok(p, truncation=True, max_length=st.max_seq_length)["input_ids"]
        skip = len(p_ids) - (1 if p_ids[-1] in (tok.sep_token_id, tok.eos_token_id) else 0)
    out = []
    # sentence-transformers 6 Pooling takes "cls" as the first position the (prompt-masked) attention mask keeps
    # (attention_mask.argmax); 5.x takes position 0.
    cls_at = skip if st_major() >= 6 else 0
    for t in texts:
        enc = st_tokenize(st, [t])
        h = raw_model(**enc)[0][0]
        k = h[skip:]  # the non-prompt tokens (all of them without a masked prompt)
        parts = []
        for m in modes:
            if m == "pooling_mode_cls_token":
                parts.append(h[cls_at])
            elif m == "pooling_mode_max_tokens":
                parts.append(k.max(0).values)
            elif m == "pooling_mode_mean_tokens":
                parts.append(k.mean(0))
            else:
                parts.append(k.sum(0) / np.sqrt(k.shape[0]))
        v = torch.cat(parts)
        for f in post:
            v = f(v)
        out.append(v.numpy())
    return np.stack(out).astype(np.float32), skip


@torch.no_grad()
def independent_m3(model_dir: Path, raw_model, tok, texts: list[str], n: int):
    """Recompute sparse weights and colbert vectors from the raw transformers model and the .pt heads, one
    text at a time without padding."""
    hidden = raw_model.config.hidden_size
    sp = torch.nn.Linear(hidden, 1)
    sp.load_state_dict(torch.load(model_dir / "sparse_linear.pt", map_location="cpu", weights_only=True))
    cb = torch.nn.Linear(hidden, hidden)
    cb.load_state_dict(torch.load(model_dir / "colbert_linear.pt", map_location="cpu", weights_only=True))
    drop = {tok.cls_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id}
    sparse, colbert = [], []
    for t in texts:
        enc = tok([t], truncation=True, max_length=n, return_tensors="pt")
        h = raw_model(**enc)[0][0]
        w = torch.relu(sp(h))[:, 0]
        best: dict[int, float] = {}
        for i, x in zip(enc["input_ids"][0].tolist(), w.tolist()):
            if i not in drop and x > 0 and x > best.get(i, 0.0):
                best[i] = x
        sparse.append(sorted(best.items()))
        colbert.append(torch.nn.functional.normalize(cb(h[1:]), dim=-1).numpy())
    return sparse, colbert


# embcheck's NOISE_FLOOR_ULPS (src/pipeline/mod.rs): f32 epsilons of the largest possible term sum.
NOISE_FLOOR_ULPS = 32


@torch.no_grad()
def sparse_noise_floor(model_arg: str, model_dir: Path) -> float:
    """The f32 noise floor per m3-sparse weight that embcheck's check applies: NOISE_FLOOR_ULPS f32 epsilons of
    the largest possible term sum of relu(sparse_linear(h)) = ||w|| * |h| + |b|, |h| bounded by the final
    LayerNorm (max|gamma| * sqrt(hidden) + ||beta||). Recorded in the metadata so that a check without the
    model at hand gives the verdict it gives with it."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_arg, torch_dtype=torch.float32)
    norm = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)][-1]
    beta = norm.bias.double().norm().item() if norm.bias is not None else 0.0
    bound = norm.weight.double().abs().max().item() * float(model.config.hidden_size) ** 0.5 + beta
    head = torch.load(model_dir / "sparse_linear.pt", map_location="cpu", weights_only=True)
    w, b = head["weight"].double().norm().item(), head["bias"].double().abs().max().item()
    return NOISE_FLOOR_ULPS * float(np.finfo(np.float32).eps) * (w * bound + b)


# ---------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------
# The pipelines whose float64 value f64_noise records: the hidden state read (CLS: row 0; the last token: row
# -1, each text run alone, unpadded) and whether it is L2-normalized.
F64_POOLS = {"raw-cls": (0, False), "normalized-cls": (0, True), "raw-last": (-1, False), "normalized-last": (-1, True)}


def _rms_llama_f64(self, hidden_states):
    """LlamaRMSNorm.forward (and its copies Mistral-, Qwen2-, Qwen3RMSNorm) without its `.to(torch.float32)`."""
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def _rms_gemma3_f64(self, x):
    """Gemma3RMSNorm.forward without its `.float()` casts."""
    return self._norm(x) * (1.0 + self.weight)


# RMSNorms that compute in float32 inside a float64 model, and the same forward without that cast.
F64_RMSNORMS = {"LlamaRMSNorm": _rms_llama_f64, "MistralRMSNorm": _rms_llama_f64, "Qwen2RMSNorm": _rms_llama_f64,
                "Qwen3RMSNorm": _rms_llama_f64, "Gemma3RMSNorm": _rms_gemma3_f64}


@contextlib.contextmanager
def rmsnorm_in_float64(model: torch.nn.Module):
    """Within the block, the model's RMSNorm classes compute in float64: transformers' LlamaRMSNorm and its copies
    (`hidden_states.to(torch.float32)`) and Gemma3RMSNorm (`.float()`) normalize in float32 even in a float64
    model, which leaves ~1e-7 of float32 rounding in its "float64" value (measured: 1e-7-3.6e-7 on the tiny
    decoders, 7.8e-7 on a random 28-layer Qwen3 of width 256 with weights of std 0.2, where float32 is 3.7e-6
    from float64) - too near the 1e-6 agreement embcheck's f32-noise proof demands. Only that cast is removed;
    every other module is transformers' own. Any other RMSNorm class is refused rather than guessed."""
    classes = {type(m) for m in model.modules() if type(m).__name__.endswith("RMSNorm")}
    unknown = sorted(c.__name__ for c in classes if c.__name__ not in F64_RMSNORMS)
    assert not unknown, f"f64 noise: no float64 forward known for {unknown}"
    saved = {c: c.forward for c in classes}
    try:
        for c in classes:
            c.forward = F64_RMSNORMS[c.__name__]
        yield
    finally:
        for c, f in saved.items():
            c.forward = f


@torch.no_grad()
def st_f64(model_arg: str, st_args: dict, tensors: dict, ids_by: dict, rows: list[dict], sample: int) -> dict:
    """f64_noise's entry for the sentence-transformers pipeline: SentenceTransformer loaded in float64 (the
    transformer with model_kwargs dtype, then .double() for the modules it loads in float32: Dense), encode() of
    each sampled text alone with the reference's prompt, RMSNorms kept in float64 as in f64_noise."""
    from sentence_transformers import SentenceTransformer

    texts, n, prompt, prompt_name = st_args["texts"], st_args["n"], st_args["prompt"], st_args["prompt_name"]
    st = SentenceTransformer(model_arg, device="cpu", model_kwargs={"dtype": torch.float64}).double()
    st.max_seq_length = n
    assert_dtype("SentenceTransformer f64", st, torch.float64)
    kw = {"prompt": prompt} if prompt is not None else {"prompt_name": prompt_name} if prompt_name is not None else {}
    eff = st_effective_prompt(st, prompt, prompt_name)
    patched = sorted({type(m).__name__ for m in st.modules() if type(m).__name__.endswith("RMSNorm")})
    ids = ids_by["sentence-transformers"]
    entries = []
    for i in sorted(range(len(ids)), key=lambda k: -len(ids[k]))[:sample]:
        assert st_tokenize(st, [(eff or "") + texts[i]])["input_ids"][0].tolist() == ids[i], f"f64 noise: the ids of {rows[i]['id']}"
        enc = lambda: st.encode([texts[i]], batch_size=1, convert_to_tensor=True, normalize_embeddings=False,
                                show_progress_bar=False, **kw)[0]
        as_is = enc()
        with rmsnorm_in_float64(st):
            exact = enc()
        assert exact.dtype == torch.float64, f"f64 noise: sentence-transformers returned {exact.dtype}"
        exact, as_is = exact.numpy(), as_is.numpy()
        entries.append(f64_entry(rows[i]["id"], len(ids[i]), tensors["sentence-transformers"][i], exact, as_is, patched))
    extra = "".join(f", {k}={v!r}" for k, v in kw.items())
    call = ("sentence_transformers.SentenceTransformer(model, device='cpu', model_kwargs={'dtype': torch.float64})"
            f".double(); max_seq_length = {n}"
            + (f"; {', '.join(patched)}.forward computing in float64 (transformers' casts to float32 removed; "
               "torch_float64_rel_l2: the model as it is, from that value)" if patched else "")
            + f"; .encode([text], batch_size=1, normalize_embeddings=False{extra}) per text alone"
            "; rel_l2 = ||reference - f64|| / ||f64||; f64 = that value")
    return {"sample": entries, "call": call}


def f64_entry(text_id: str, tokens: int, reference, exact, as_is, patched: list) -> dict:
    """One sampled text: the reference's distance to the float64 value, that value, and (where RMSNorms were
    kept in float64) how far the model as it is lies from it."""
    entry = {"id": text_id, "tokens": tokens,
             "rel_l2": float(np.linalg.norm(reference.astype(np.float64) - exact) / np.linalg.norm(exact)),
             "f64": [float(x) for x in exact]}
    if patched:
        entry["torch_float64_rel_l2"] = float(np.linalg.norm(as_is - exact) / np.linalg.norm(exact))
    return entry


@torch.no_grad()
def f64_noise(model_arg: str, tensors: dict, ids_by: dict, rows: list[dict], pipelines: list[str], sample: int,
              st_args: dict | None = None) -> dict:
    """The reference's own f32 noise: for the `sample` longest texts (the most noise), the same pipeline computed
    by transformers in float64 (AutoModel loaded with dtype=torch.float64, the text alone, the reference's own
    token ids; RMSNorms kept in float64, see rmsnorm_in_float64) and the distance (relative L2) of the reference
    vector to it. embcheck's `check` reads them when it proves a small failure to be noise by recomputing in f64:
    the distance as the scale of f32 noise, the float64 value to check that its own f64 value is the Python
    library's. `torch_float64_rel_l2`: how far transformers' float64 model as it is (RMSNorms in float32) is
    from that value."""
    from transformers import AutoModel

    covered = [p for p in F64_POOLS if p in pipelines]
    with_st = st_args is not None and "sentence-transformers" in pipelines
    if not (covered or with_st) or sample <= 0:
        return {}
    mdl = AutoModel.from_pretrained(model_arg, dtype=torch.float64).eval()
    assert_dtype("f64 noise", mdl, torch.float64)

    def hidden_state(ids: list[int], at: int) -> np.ndarray:
        x = torch.tensor([ids])
        h = mdl(input_ids=x, attention_mask=torch.ones_like(x))[0]
        assert h.dtype == torch.float64, f"f64 noise: the model returned {h.dtype}"
        return h[0, at].numpy()

    patched = sorted({type(m).__name__ for m in mdl.modules() if type(m).__name__.endswith("RMSNorm")})
    hidden: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    out = {}
    for p in covered:
        at, normalized = F64_POOLS[p]
        ids = ids_by[p]
        entries = []
        for i in sorted(range(len(ids)), key=lambda k: -len(ids[k]))[:sample]:
            key = (tuple(ids[i]), at)
            if key not in hidden:
                as_is = hidden_state(ids[i], at)
                with rmsnorm_in_float64(mdl):
                    hidden[key] = (hidden_state(ids[i], at), as_is)
            exact, as_is = (v / np.linalg.norm(v) if normalized else v for v in hidden[key])
            entries.append(f64_entry(rows[i]["id"], len(ids[i]), tensors[p][i], exact, as_is, patched))
        out[p] = {"sample": entries,
                  "call": "transformers.AutoModel.from_pretrained(model, dtype=torch.float64).eval()"
                          + (f" with {', '.join(patched)}.forward computing in float64 (transformers' casts to "
                             "float32 removed; torch_float64_rel_l2: the model as it is, from that value)"
                             if patched else "")
                          + f"; model(input_ids=ids, attention_mask=ones)[0][0, {at}] per text alone"
                          + (", L2-normalized" if normalized else "")
                          + "; rel_l2 = ||reference - f64|| / ||f64||; f64 = that value"}
        worst = max(entries, key=lambda e: e["rel_l2"])
        print(f"  {p}: the reference's own f32 noise (vs float64) on the {len(entries)} longest texts: max "
              f"{worst['rel_l2']:.3e} ({worst['id']}, {worst['tokens']} tokens)")
        if patched:
            print(f"  {p}: transformers' float64 model as it is ({', '.join(patched)} in float32) from float64: max "
                  f"{max(e['torch_float64_rel_l2'] for e in entries):.3e}")
    del mdl
    if with_st:
        out["sentence-transformers"] = st_f64(model_arg, st_args, tensors, ids_by, rows, sample)
        worst = max(out["sentence-transformers"]["sample"], key=lambda e: e["rel_l2"])
        print(f"  sentence-transformers: the reference's own f32 noise (vs float64) on the {sample} longest texts: max "
              f"{worst['rel_l2']:.3e} ({worst['id']}, {worst['tokens']} tokens)")
    return out


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def jsonl_line(obj: dict) -> str:
    """One JSON line, UTF-8 as is, except the characters that some line splitters treat as line breaks
    (U+0085, U+2028, U+2029: Python's str.splitlines), which are escaped; the decoded text is unchanged."""
    s = json.dumps(obj, ensure_ascii=False)
    return s.replace("\u0085", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.chmod(tmp, _umask_mode())
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _umask_mode())
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def toml_str(s: str) -> str:
    # A JSON string is a TOML basic string, except that TOML also forbids a raw DEL (U+007F), which JSON leaves
    # as is; JSON escapes the other control characters, '"' and '\\' (lone surrogates cannot occur in argv text).
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007F")


def retrieval_key(retrieval: Path | None, out_dir: Path) -> dict[str, str]:
    # The gate finds the retrieval set relative to the suite directory.
    if retrieval is None:
        return {}
    return {"retrieval": os.path.relpath(retrieval.resolve(), out_dir.resolve())}


def suite_toml(name: str, model: str, n: int, pipelines: list[str], notes: list[str], n_texts: int,
               dtype: str = "f32", query: dict[str, str] | None = None) -> str:
    lines = [
        "# embcheck reference suite: generated by scripts/generate_fixtures.py; do not edit by hand, regenerate.",
        f"# texts.jsonl holds the {n_texts} input texts; reference.safetensors the Python libraries' outputs.",
    ]
    lines += [f"# {note}" for note in notes]
    lines += [
        f"name = {toml_str(name)}",
        f"model = {toml_str(model)}",
        f"max_length = {n}",
        f"dtype = {toml_str(dtype)}",
    ]
    lines += [f"{k} = {toml_str(v)}" for k, v in (query or {}).items()]  # instruction / prompt / prompt_name
    lines += [
        "pipelines = [" + ", ".join(toml_str(p) for p in pipelines) + "]",
        "",
        "# Tolerances are optional: a [tolerance.<pipeline>] table overrides the harness defaults for that",
        "# pipeline, e.g.",
        "# [tolerance.normalized-cls]",
        "# min_cosine = 0.99999",
        "# max_rel_l2 = 1e-5",
        "# max_abs = 1e-5",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="local model directory (or a hub id already in the local cache)")
    ap.add_argument("--texts", required=True, action="append", type=Path,
                    help="JSONL file of {\"id\"?, \"text\"}; repeat to concatenate several files")
    ap.add_argument("--out", required=True, type=Path, help="suite directory to write")
    ap.add_argument("--max-length", type=int, default=None,
                    help="token limit for every pipeline (default: sentence_bert_config.json max_seq_length, else "
                         "tokenizer_config.json model_max_length, else max_position_embeddings (-2 for XLM-R))")
    ap.add_argument("--name", default=None, help="suite name (default: the --out folder name)")
    ap.add_argument("--pipelines", nargs="+", default=None,
                    help=f"subset of {ALL_PIPELINES} (space or comma separated; default: all that apply)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--f64-sample", type=int, default=4, metavar="N",
                    help="record the reference's own f32-vs-float64 distance on the N longest texts (raw-cls, "
                         "normalized-cls, raw-last, normalized-last; f32 references only; 0: none)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1, reproducible)")
    ap.add_argument("--note", action="append", default=[], help="comment line for suite.toml (repeatable)")
    ap.add_argument("--pending", action="store_true",
                    help="write only reference.safetensors.new into an existing suite (same texts), for review with "
                         "embcheck accept / reject; the current reference stays what check compares against")
    ap.add_argument("--retrieval", type=Path, default=None, metavar="DIR",
                    help="a retrieval set (queries.jsonl, corpus.jsonl, qrels.tsv) for embcheck gate: written to "
                         "suite.toml as retrieval = DIR relative to the suite; pass its queries and corpus as --texts")
    ap.add_argument("--dtype", choices=["f32", "f16"], default="f32",
                    help="f32 (default): every library in float32. f16: FlagEmbedding with use_fp16=True, the model "
                         f"run in torch.float16 on CPU as on a GPU; only {FLAG_PIPELINES}")
    ap.add_argument("--instruction", default=None, metavar="TEXT",
                    help="FlagEmbedding query instruction: the FlagEmbedding pipelines use "
                         "query_instruction_for_retrieval=TEXT and encode_queries() (TEXT + text, no separator); "
                         "raw-cls and sentence-transformers are unaffected")
    pg = ap.add_mutually_exclusive_group()
    pg.add_argument("--prompt", default=None, metavar="TEXT",
                    help="sentence-transformers encode(..., prompt=TEXT); only the sentence-transformers pipeline")
    pg.add_argument("--prompt-name", default=None, metavar="NAME",
                    help="sentence-transformers encode(..., prompt_name=NAME) (a key of the model's "
                         "config_sentence_transformers.json prompts); only the sentence-transformers pipeline")
    ap.add_argument("--layers", nargs="?", const="all", default=None, metavar="N|full",
                    help="also record per-layer hidden states (layers.safetensors, for embcheck bisect) of the first N "
                         "texts (default: all; 'full': all, with each layer's attention block); see scripts/generate_layers.py")
    ap.add_argument("--layers-full", action="store_true",
                    help="with --layers: each layer's attention block too, not only the layer outputs")
    args = ap.parse_args()
    if args.layers not in (None, "all", "full") and not args.layers.isdigit():
        raise SystemExit(f"--layers {args.layers!r}: expected a number of texts or 'full'")
    for flag_name, v in [("--instruction", args.instruction), ("--prompt", args.prompt),
                         ("--prompt-name", args.prompt_name)]:
        if v is not None and v == "":
            raise SystemExit(f"{flag_name}: empty (the libraries treat an empty one as none); leave the flag out")

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    import transformers

    transformers.logging.set_verbosity_error()

    local = Path(args.model).is_dir()
    model_dir = Path(args.model).resolve() if local else None
    model_arg = str(model_dir) if local else args.model
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    name = args.name or out_dir.resolve().name

    cfg_json = read_json(model_dir / "config.json") if local and (model_dir / "config.json").is_file() else {}
    if cfg_json.get("use_bidirectional_attention") and int(transformers.__version__.split(".")[0]) < 5:
        raise SystemExit(f"{args.model}: use_bidirectional_attention (EmbeddingGemma) needs transformers 5; transformers "
                         f"{transformers.__version__} would run it causally: use .venv-ref5/bin/python")
    has_heads = local and (model_dir / "sparse_linear.pt").is_file() and (model_dir / "colbert_linear.pt").is_file()
    has_st = local and ((model_dir / "modules.json").is_file() or (model_dir / "sentence_bert_config.json").is_file())
    decoder = local and read_json(model_dir / "config.json").get("model_type") in DECODERS
    if args.pipelines is None and decoder:
        pipelines = ["raw-last", "normalized-last"] + (["sentence-transformers"] if has_st else [])
    elif args.pipelines is None:
        pipelines = ["raw-cls", "normalized-cls"]
        pipelines += ["sentence-transformers"] if has_st or not local else []
        pipelines += ["m3-sparse", "m3-colbert"] if has_heads else []
    else:
        req = [p for arg in args.pipelines for p in arg.split(",") if p]
        bad = [p for p in req if p not in ALL_PIPELINES]
        if bad:
            raise SystemExit(f"unknown pipelines {bad}; known: {ALL_PIPELINES}")
        pipelines = [p for p in ALL_PIPELINES if p in req]
    flag_version = flag_embedding_version()
    if flag_version is None:
        import transformers as _tf

        skipped = [p for p in pipelines if p in FLAG_PIPELINES]
        if skipped:
            print(f"skipping {skipped}: FlagEmbedding is not importable here (transformers {_tf.__version__}; "
                  f"FlagEmbedding 1.4.2 needs transformers 4); making {[p for p in pipelines if p not in FLAG_PIPELINES]}")
        pipelines = [p for p in pipelines if p not in FLAG_PIPELINES]
        if not pipelines:
            raise SystemExit("nothing to generate: every requested pipeline needs FlagEmbedding, which is not importable")
    fp16 = args.dtype == "f16"
    if fp16:
        bad = [p for p in pipelines if p not in HALF_PIPELINES]
        if bad and args.pipelines is not None:
            raise SystemExit(f"--dtype f16 runs only {HALF_PIPELINES} (FlagEmbedding's use_fp16=True; the decoder "
                             f"pipelines' model in torch.float16); {bad} exist only in float32: drop them or generate "
                             f"them in a separate f32 suite")
        pipelines = [p for p in pipelines if p in HALF_PIPELINES]
    if ("m3-sparse" in pipelines or "m3-colbert" in pipelines) and not has_heads:
        raise SystemExit("m3-sparse / m3-colbert need sparse_linear.pt and colbert_linear.pt in the model directory")
    instruction = args.instruction
    st_prompt, st_prompt_name = args.prompt, args.prompt_name
    if instruction is not None and not any(p in pipelines for p in INSTRUCTED):
        raise SystemExit(f"--instruction applies only to the pipelines {INSTRUCTED}; none is selected")
    if (st_prompt is not None or st_prompt_name is not None) and "sentence-transformers" not in pipelines:
        raise SystemExit("--prompt / --prompt-name apply only to the sentence-transformers pipeline, which is not selected")
    query: dict[str, str] = {}  # the suite.toml keys the Rust side reads
    if instruction is not None:
        query["instruction"] = instruction
    if st_prompt is not None:
        query["prompt"] = st_prompt
    if st_prompt_name is not None:
        query["prompt_name"] = st_prompt_name

    if args.max_length is not None:
        n, n_src = args.max_length, "--max-length"
    else:
        n, n_src = default_max_length(model_dir)
    bs = args.batch_size

    rows = load_texts(args.texts)
    texts = [r["text"] for r in rows]
    print(f"{name}: model {args.model}, {len(texts)} texts, max_length {n} ({n_src}), batch {bs}, "
          f"pipelines {pipelines}, torch threads {torch.get_num_threads()}" + (", FlagEmbedding in float16" if fp16 else "")
          + "".join(f", {k} {v!r}" for k, v in query.items()))
    if bs >= len(texts):
        print(f"  note: batch size {bs} >= {len(texts)} texts: padding inside batches is barely exercised")

    tensors: dict[str, np.ndarray] = {}
    calls: dict[str, str] = {}
    checks: dict[str, object] = {}
    ids_by: dict[str, list[list[int]]] = {}

    raw = None
    if "raw-cls" in pipelines or has_heads or (("sentence-transformers" in pipelines or fp16) and not decoder):
        raw = run_raw_cls(model_arg, texts, n, bs)  # also used for the cross-checks (float32, also for --dtype f16)
    if raw is not None and local and (model_dir / "tokenizer.json").is_file():
        # How far the library's tokenizer is from tokenizer.json loaded as it is (what a Rust service using the
        # `tokenizers` crate gets): transformers 5 rebuilds some tokenizer classes from the vocabulary.
        from tokenizers import Tokenizer

        as_is = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        as_is.no_padding()
        as_is.enable_truncation(n)
        differ = [rows[i]["id"] for i, t in enumerate(texts) if as_is.encode(t).ids != raw["ids"][i]]
        checks["transformers tokenizer vs tokenizer.json as is: texts with different token ids"] = differ
        checks["transformers tokenizer class"] = type(raw["tok"]).__name__
        print(f"  info: {type(raw['tok']).__name__} vs tokenizer.json as is (tokenizers {__import__('tokenizers').__version__}):"
              f" token ids differ for {len(differ)} of {len(texts)} texts {differ[:8]}{' ...' if len(differ) > 8 else ''}")
    if "raw-cls" in pipelines:
        tensors["raw-cls"] = raw["vecs"]
        ids_by["raw-cls"] = raw["ids"]
        calls["raw-cls"] = raw["call"]
        if instruction is not None:
            calls["raw-cls"] += (" (texts without the instruction: transformers.AutoModel has no query instruction; "
                                 "--instruction applies to the FlagEmbedding pipelines only)")

    flag = None
    if any(p in pipelines for p in ["normalized-cls", "m3-sparse", "m3-colbert"]):
        flag = run_flag(model_arg, texts, n, bs, m3=has_heads,
                        want_sparse="m3-sparse" in pipelines, want_colbert="m3-colbert" in pipelines, fp16=fp16,
                        instruction=instruction)
        if fp16:
            checks["float16 forward hooks"] = flag["float16 forward hooks"]
            checks["cross-checks below: by hand with"] = "the float32 transformers model and heads (half-precision error)"
            print(f"  float16: hooks saw {flag['float16 forward hooks']} forwards, all with float16 parameters and "
                  f"float16 outputs")
        for p in ["normalized-cls", "m3-sparse", "m3-colbert"]:
            if p in pipelines:
                ids_by[p] = flag["ids"]
                calls[p] = flag["calls"][p]
        if "normalized-cls" in pipelines:
            tensors["normalized-cls"] = flag["dense"]
        if "m3-sparse" in pipelines:
            tensors["m3-sparse"] = np.asarray([w for s in flag["sparse"] for _, w in s], dtype=np.float32)
            tensors["m3-sparse.token_ids"] = np.asarray([i for s in flag["sparse"] for i, _ in s], dtype=np.int64)
            tensors["m3-sparse.offsets"] = pack([s for s in flag["sparse"]])[1]
        if "m3-colbert" in pipelines:
            tensors["m3-colbert"] = np.concatenate(flag["colbert"]).astype(np.float32)
            tensors["m3-colbert.offsets"] = pack(flag["colbert"])[1]

    last = None
    if "raw-last" in pipelines:
        last = run_raw_last(model_arg, texts, n, bs, torch.float16 if fp16 else torch.float32)
        tensors["raw-last"], ids_by["raw-last"], calls["raw-last"] = last["vecs"], last["ids"], last["call"]
    if "normalized-last" in pipelines:
        nl = run_normalized_last(model_arg, texts, n, bs, instruction, torch.float16 if fp16 else torch.float32)
        tensors["normalized-last"], ids_by["normalized-last"], calls["normalized-last"] = nl["vecs"], nl["ids"], nl["call"]
        if last is not None and instruction is None:
            # The card's recipe on the same texts: the raw last token normalized, where the ids agree.
            same = [i for i in range(len(texts)) if nl["ids"][i] == last["ids"][i]]
            if same:
                r = last["vecs"][same].astype(np.float64)
                d = float(np.abs(r / np.linalg.norm(r, axis=1, keepdims=True) - nl["vecs"][same]).max())
                checks["normalized-last vs raw-last/|raw-last| (left vs the tokenizer's padding), same ids: max abs"] = d
                print(f"  cross-check normalized-last vs raw-last/|raw-last| on {len(same)} texts with the same ids: max abs {d:.3e}")
                assert d <= (2e-3 if fp16 else 1e-4), d

    st = None
    if "sentence-transformers" in pipelines:
        st = run_st(model_arg, texts, n, bs, prompt=st_prompt, prompt_name=st_prompt_name)
        tensors["sentence-transformers"] = st["vecs"]
        ids_by["sentence-transformers"] = st["ids"]
        calls["sentence-transformers"] = st["call"]
        if instruction is not None and not st["prompt"]:
            calls["sentence-transformers"] += " (no prompt: --instruction is FlagEmbedding's only)"

    for p in pipelines:
        ids, offsets = pack(ids_by[p])
        tensors[f"{p}.input_ids"] = ids.astype(np.int64)
        tensors[f"{p}.input_offsets"] = offsets
        assert (np.diff(offsets) <= n).all(), f"{p}: a text has more than {n} tokens"

    # ----------------------------------------------------------------------------------------------------
    # Sanity checks (fail) and cross-checks (report)
    # ----------------------------------------------------------------------------------------------------
    for k, v in tensors.items():
        if v.dtype.kind == "f":
            assert np.isfinite(v).all(), f"{k}: NaN or Inf"
    for p in DENSE:
        if p in tensors:
            assert tensors[p].shape[0] == len(texts), p
    norm_tol = 2e-3 if fp16 else 1e-5  # float16 vectors normalized in float16: each element rounded by <= 2^-11
    if "normalized-cls" in tensors:
        norms = np.linalg.norm(tensors["normalized-cls"].astype(np.float64), axis=1)
        assert np.abs(norms - 1).max() <= norm_tol, f"normalized-cls norms off by {np.abs(norms - 1).max()}"
        checks["normalized-cls max |norm - 1|"] = float(np.abs(norms - 1).max())
    if "m3-colbert" in tensors:
        c = tensors["m3-colbert"]
        cn = np.linalg.norm(c.astype(np.float64), axis=1)
        assert np.abs(cn - 1).max() <= norm_tol
        counts = np.diff(tensors["m3-colbert.offsets"])
        assert (counts == np.diff(tensors["m3-colbert.input_offsets"]) - 1).all(), "colbert rows != tokens - 1"
    if "m3-sparse" in tensors:
        assert (tensors["m3-sparse"] > 0).all()
        tok = flag["tokenizer"]
        special = {tok.cls_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id}
        assert not set(tensors["m3-sparse.token_ids"].tolist()) & special
        offs = tensors["m3-sparse.offsets"]
        for i in range(len(texts)):
            seg = tensors["m3-sparse.token_ids"][offs[i] : offs[i + 1]]
            assert (np.diff(seg) > 0).all(), "sparse token ids not strictly ascending"
        n_tok = np.diff(tensors["m3-sparse.input_offsets"]) - 2
        checks["m3-sparse nnz"] = int(offs[-1])
        print(f"  m3-sparse: {offs[-1]} weights for {int(n_tok.sum())} non-special token positions")

    # Libraries against each other. With an instruction, FlagEmbedding is compared with transformers run on the
    # instructed texts (the raw-cls pipeline itself stays on the plain texts).
    xraw, xtag = raw, ""
    if raw is not None and flag is not None and instruction is not None:
        xraw, xtag = run_raw_cls(model_arg, flag["texts"], n, bs), " (transformers on instruction + text)"
    if raw is not None and flag is not None:
        r = xraw["vecs"].astype(np.float64)
        rn = r / np.linalg.norm(r, axis=1, keepdims=True)
        d = np.abs(rn - flag["dense"]).max()
        cmin = cos_rows(xraw["vecs"], flag["dense"]).min()
        same_ids = xraw["ids"] == flag["ids"]
        checks[f"normalized-cls vs raw-cls/|raw-cls|{xtag}: max abs"] = float(d)
        checks[f"normalized-cls vs raw-cls/|raw-cls|{xtag}: 1 - min cos"] = float(1 - cmin)
        checks[f"normalized-cls vs raw-cls{xtag}: same token ids"] = same_ids
        print(f"  cross-check normalized-cls vs raw-cls/|raw-cls|{xtag}: max abs {d:.3e}, 1 - min cos {1 - cmin:.3e}, "
              f"same ids: {same_ids}")
        if d > (1e-2 if fp16 else 1e-4):
            print(f"  WARNING: FlagEmbedding and transformers disagree by more than {'1e-2' if fp16 else '1e-4'}")
    if has_heads and flag is not None and raw is not None and ("sparse" in flag or "colbert" in flag):
        sp, cb = independent_m3(model_dir, xraw["model"], xraw["tok"], flag["texts"], n)
        if "sparse" in flag:
            mism, dmax = 0, 0.0
            for a, b in zip(flag["sparse"], sp):
                da, db = dict(a), dict(b)
                mism += len(set(da) ^ set(db))
                dmax = max([dmax] + [abs(da[k] - db[k]) for k in set(da) & set(db)])
            checks["m3-sparse vs by-hand: max abs"] = dmax
            checks["m3-sparse vs by-hand: id set differences"] = mism
            print(f"  cross-check m3-sparse vs by hand (relu(sparse_linear(h)), max per id): max abs {dmax:.3e}, "
                  f"id set differences {mism}")
        if "colbert" in flag:
            dmax = max(float(np.abs(a - b).max()) if a.size else 0.0 for a, b in zip(flag["colbert"], cb))
            checks["m3-colbert vs by-hand: max abs"] = dmax
            print(f"  cross-check m3-colbert vs by hand (normalize(colbert_linear(h[1:]))): max abs {dmax:.3e}")
    if st is not None and raw is not None:
        ind = independent_st(st["st"], raw["model"], st["texts"], st["prompt"])
        if ind is not None:
            ind, skip = ind
            d = float(np.abs(ind - st["vecs"]).max())
            if skip:
                what = f"by hand, pooling over the non-prompt tokens (the first {skip} masked)"
                assert skip == st["prompt_length"], f"prompt length by hand {skip}, library {st['prompt_length']}"
                assert d <= 1e-4, f"sentence-transformers vs {what}: max abs {d:.3e}"
            else:
                what = "by-hand"
            checks[f"sentence-transformers vs {what}: max abs"] = d
            print(f"  cross-check sentence-transformers vs {what} from its module configs: max abs {d:.3e}")
        if flag is not None:
            if st["vecs"].shape[1] == flag["dense"].shape[1]:
                cos_info = f"cos(st, normalized-cls) min {cos_rows(st['vecs'], flag['dense']).min():.4f}"
            else:  # e.g. a post-pooling Dense module
                cos_info = f"no cosine: dims {st['vecs'].shape[1]} (st) and {flag['dense'].shape[1]} (normalized-cls)"
            diff_ids = [rows[i]["id"] for i in range(len(texts)) if st["ids"][i] != flag["ids"][i]]
            checks["sentence-transformers vs FlagEmbedding: texts with different token ids"] = diff_ids
            print(f"  info: sentence-transformers vs FlagEmbedding token ids differ for {len(diff_ids)} texts "
                  f"{diff_ids[:8]}{' ...' if len(diff_ids) > 8 else ''}; {cos_info}")

    # The instruction / prompt must have changed the vectors (else the suite tests nothing new).
    if flag is not None and "plain_dense" in flag:
        c = cos_rows(flag["dense"], flag["plain_dense"])
        checks["normalized-cls with vs without the instruction: min cos"] = float(c.min())
        print(f"  instruction: normalized-cls vs the same model's plain encode(): min cos {c.min():.4f}, "
              f"max cos {c.max():.4f}")
        assert c.min() < 0.9999, "the instruction did not change the normalized-cls vectors"
    if flag is not None and instruction is not None:
        full = [len(flag["tokenizer"](t)["input_ids"]) for t in flag["texts"]]
        cut = [rows[i]["id"] for i in range(len(texts)) if full[i] > n]
        assert all(len(flag["ids"][i]) == min(full[i], n) for i in range(len(texts))), "not truncated to max_length"
        checks["FlagEmbedding: instructed texts truncated to max_length"] = cut
        print(f"  instruction: {len(cut)} of {len(texts)} instructed texts are longer than {n} tokens and were "
              f"truncated to {n} {cut[:8]}")
    if st is not None and "plain_vecs" in st:
        c = cos_rows(st["vecs"], st["plain_vecs"])
        checks["sentence-transformers with vs without the prompt: min cos"] = float(c.min())
        print(f"  prompt {st['prompt']!r}: sentence-transformers vs encode(prompt=''): min cos {c.min():.4f}, "
              f"max cos {c.max():.4f}; prompt_length {st['prompt_length']}, include_prompt {st['include_prompt']}")
        assert c.min() < 0.9999, "the prompt did not change the sentence-transformers vectors"
        # Is the prompt's own tokenization a prefix of every prompted text's? (Pooling masks by position.)
        p_ids = st_tokenize(st["st"], [st["prompt"]])["input_ids"][0].tolist()[: st["prompt_length"]]
        not_prefix = [rows[i]["id"] for i in range(len(texts)) if st["ids"][i][: len(p_ids)] != p_ids]
        checks["sentence-transformers: texts whose first prompt_length ids are not the prompt's"] = not_prefix
        print(f"  prompt ids {p_ids} are the first ids of all but {len(not_prefix)} texts {not_prefix[:8]}")

    # ----------------------------------------------------------------------------------------------------
    # Write
    # ----------------------------------------------------------------------------------------------------
    if local:
        rel = os.path.relpath(model_dir, out_dir.resolve())
        suite_model = Path(rel).as_posix()
    else:
        suite_model = args.model
    texts_bytes = "".join(jsonl_line(r) for r in rows).encode("utf-8")

    hashes = model_file_hashes(model_dir) if local else {}
    for p in args.texts:
        key = p.name if p.name not in hashes else str(p)
        hashes[key] = sha256(p)
    hashes["texts.jsonl"] = hashlib.sha256(texts_bytes).hexdigest()
    hashes[SCRIPT.name] = sha256(SCRIPT)

    metadata = {
        "format": FORMAT,
        "model": args.model,
        "max_length": str(n),
        "max_length_source": n_src,
        "dtype": "float16" if fp16 else "float32",
        "device": "cpu",
        "pipelines": json.dumps(pipelines),
        "n_texts": str(len(texts)),
        "batch_size": str(bs),
        "torch_num_threads": str(torch.get_num_threads()),
        "libraries": json.dumps(library_versions()),
        "sha256": json.dumps(hashes),
        "calls": json.dumps(calls),
        "checks": json.dumps(checks),
        "generated_at": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
    }
    if not fp16:
        st_args = {"texts": texts, "n": n, "prompt": st_prompt, "prompt_name": st_prompt_name}
        noise = f64_noise(model_arg, tensors, ids_by, rows, pipelines, args.f64_sample, st_args)
        if noise:
            metadata["f64_noise"] = json.dumps(noise)
    if "m3-sparse" in pipelines:
        floor = sparse_noise_floor(model_arg, model_dir)
        metadata["noise_floor"] = json.dumps({"m3-sparse": floor})
        print(f"  m3-sparse noise floor per weight: {floor:.3e}")
    # Query texts: only when given (the metadata of a plain suite is unchanged).
    if instruction is not None:
        metadata["instruction"] = instruction
        metadata["instruction_format"] = "{}{}"
        metadata["instruction_pipelines"] = json.dumps([p for p in pipelines if p in INSTRUCTED])
    if st is not None and st["prompt"]:
        if st_prompt is not None:
            metadata["prompt"] = st_prompt
        if st_prompt_name is not None:
            metadata["prompt_name"] = st_prompt_name
        metadata["prompt_text"] = st["prompt"]
        metadata["prompt_length"] = str(st["prompt_length"])
        metadata["include_prompt"] = json.dumps(st["include_prompt"])
        metadata["prompt_pipelines"] = json.dumps(["sentence-transformers"])
    notes = list(args.note)
    if args.pending:
        # A reference for review (`embcheck accept` / `reject`): the suite's texts must be the same, and
        # nothing but reference.safetensors.new is written, so `check` keeps comparing with the current one.
        current = (out_dir / "texts.jsonl").read_bytes() if (out_dir / "texts.jsonl").is_file() else None
        if current != texts_bytes:
            sys.exit(f"--pending: {out_dir}/texts.jsonl is missing or differs from --texts; a pending reference is for the same texts")
        atomic_save_safetensors(out_dir / "reference.safetensors.new", tensors, metadata)
        print(f"  wrote {out_dir}/reference.safetensors.new: review it with embcheck check, then embcheck accept or reject")
        return 0
    atomic_write_bytes(out_dir / "texts.jsonl", texts_bytes)
    atomic_write_bytes(out_dir / "suite.toml",
                       suite_toml(name, suite_model, n, pipelines, notes, len(texts), args.dtype,
                                  {**query, **retrieval_key(args.retrieval, out_dir)}).encode("utf-8"))
    atomic_save_safetensors(out_dir / "reference.safetensors", tensors, metadata)
    import tomllib

    parsed = tomllib.loads((out_dir / "suite.toml").read_text(encoding="utf-8"))
    assert all(parsed.get(k) == v for k, v in query.items()), "suite.toml does not round-trip the query keys"

    size = (out_dir / "reference.safetensors").stat().st_size
    print(f"  wrote {out_dir}/{{texts.jsonl, suite.toml, reference.safetensors}} ({size / 1024:.1f} KiB)")
    for k in sorted(tensors):
        print(f"    {k:40s} {str(tensors[k].dtype):8s} {list(tensors[k].shape)}")
    print("  " + embcheck_computes(model_arg))
    if args.layers is not None:
        import generate_layers

        count = None if args.layers in ("all", "full") else int(args.layers)
        generate_layers.record(out_dir, count, args.layers_full or args.layers == "full", args.threads)
    return 0


def embcheck_computes(model_arg: str) -> str:
    """One line: whether embcheck computes this model itself, from config.json's model_type."""
    import transformers

    model_type = transformers.AutoConfig.from_pretrained(model_arg).model_type
    if model_type in EMBCHECK_IMPLEMENTS:
        return f"embcheck computes this model itself (model_type {model_type!r}): check, embed, gate and proven diagnoses"
    return (f"embcheck does not implement model_type {model_type!r}: systems are checked against this suite "
            "model-free (check --against, gate --candidate with a system, diff; model-free diagnoses only)")


if __name__ == "__main__":
    sys.exit(main())
