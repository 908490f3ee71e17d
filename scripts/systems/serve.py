#!/usr/bin/env python3
"""A small embedding server for embcheck's tests, built on the real libraries, with switchable faults.

text-embeddings-inference (TEI) itself does not install here (it ships as a container and a Rust binary, not
as a package on any registry this machine can reach), so embcheck's TEI client is tested against this server:
a STAND-IN that follows TEI's published OpenAPI document (docs/openapi.json of
huggingface/text-embeddings-inference, API version 1.9.3) and its router code for status codes and error
bodies. It is not TEI: the vectors come from sentence-transformers or FlagEmbedding, not from TEI's candle
backend, and the differences listed under "Stand-in" below are deliberate.

Served on 127.0.0.1 only (ThreadingHTTPServer; one model call at a time):
  OpenAI API  POST /v1/embeddings and POST /embeddings
              {"input": str | [str], "model": any, "encoding_format": "float" | "base64"}
              -> {"object": "list", "data": [{"object": "embedding", "embedding": [...] | "<base64>",
                  "index": i}, ...], "model": ..., "usage": {"prompt_tokens": n, "total_tokens": n}}
              GET /v1/models and GET /models list the one served model.
              `data` is deliberately SHUFFLED (never in input order when there are 2+ inputs): a client must
              order by `index`. base64 is the little-endian float32 bytes, as TEI and OpenAI send them.
  TEI native  POST /embed         {"inputs": str | [str], "normalize": bool, "truncate": bool,
                                   "truncation_direction": "Right", "prompt_name": str} -> [[f32, ...], ...]
              POST /embed_sparse  {"inputs": ..., "truncate": ..., "prompt_name": ...}
                                  -> [[{"index": token_id, "value": weight}, ...], ...] (index ascending)
                                  (BGE-M3 lexical weights from FlagEmbedding's BGEM3FlagModel; 424 for a
                                  model without sparse_linear.pt, as TEI answers for a non-SPLADE model)
              POST /tokenize      {"inputs": str | [str], "add_special_tokens": true, "prompt_name": ...}
                                  -> [[{"id", "text", "special", "start", "stop"}, ...], ...]
                                  (not truncated, as TEI; start/stop are byte offsets; null for special tokens)
              GET  /info          model_id, model_sha (null), model_dtype, model_type {"embedding":
                                  {"pooling": ...}}, max_input_length, max_client_batch_size, auto_truncate, ...
              GET  /health        200
  Errors      TEI routes: {"error": msg, "error_type": "Validation" | "Empty" | "Overloaded" | "Backend" |
              "Unhealthy"}; OpenAI routes: {"message": msg, "code": status, "type": error_type}. As in TEI
              1.9.3: an empty batch is 400 (Empty); more than --max-client-batch-size inputs, and (with
              truncation off) a text over the max length, are 422 (Validation; TEI's OpenAPI document and
              TEI before 2024 say 413: --validation-status 413 gives that). One bad input fails the request.

The computation (--pipeline):
  sentence-transformers (default)  SentenceTransformer(dir, device="cpu", float32), max_seq_length = N,
      encode(texts, normalize_embeddings=False): Transformer (strip, do_lower_case, truncate at N) -> Pooling
      -> Dense -> Normalize as modules.json says. This is embcheck's `sentence-transformers` reference call.
  normalized-cls  FlagEmbedding BGEM3FlagModel (model dir with sparse_linear.pt + colbert_linear.pt) or
      FlagModel(pooling_method="cls"), normalize_embeddings=True, use_fp16=False, devices="cpu",
      encode(texts, max_length=N): the `normalized-cls` reference call (no strip, no lowercasing).
  N is --max-length, else what scripts/generate_fixtures.py would choose for the model
  (sentence_bert_config.json max_seq_length, tokenizer model_max_length, max_position_embeddings).
  Pass --max-length to match a suite made with one (tiny-xlmr-m3: 128).

Faults (none given = --faithful; each one is refused where it would change nothing, so that a test that
expects a failure cannot pass by accident):
  --no-normalize       sentence-transformers: drop the Normalize module; normalized-cls: normalize_embeddings=False
  --normalize          sentence-transformers on a model without Normalize: L2-normalize the output
  --pooling MODE       cls | mean | max (sentence-transformers: a new Pooling module in place of the model's;
                       normalized-cls: the library's pooling_method, cls | mean)
  --max-length N       truncate at N tokens (shorter than the suite's: a truncation fault)
  --strip              normalized-cls: str.strip() every text (FlagEmbedding does not)
  --no-strip           sentence-transformers: tokenize the text as given (sentence-transformers 5.1 strips)
  --lowercase          str.lower() every text before the library sees it
  --prefix TEXT        prepend TEXT to every text (a wrapper's hidden instruction)
Transport faults:
  --fail-text-containing S   answer 500 to any request with an input containing S (other requests succeed,
                             so a client that retries one text at a time gets all the others)
  --status-on-first N        answer N (429 or 503; with Retry-After: 0) to the first embedding request, once
  --require-header NAME=VALUE  answer 401 to any request without that header (repeatable; values never logged)

Stand-in, not TEI:
  - /embed normalizes as TEI does: "normalize" absent or true L2-normalizes the configured pipeline's vectors
    (whatever the model's modules.json says), false returns them without the pipeline's own normalization;
    the OpenAI routes return the configured pipeline's vectors;
  - "truncate" absent means auto_truncate (true unless --no-auto-truncate), as TEI 1.9;
  - "dimensions" is not supported (422); token-id inputs are not supported (422);
  - text is preprocessed as the chosen Python library does, not as TEI does (TEI does not strip).

Without HTTP (--stdio): the same pipeline and faults as a program for `embcheck check --against cmd:...`:
  reads {"id", "text"} JSON Lines on stdin, writes {"id", "embedding": [...]} (--stdio-output sparse:
  {"id", "sparse": {"token_id": weight}}; --token-ids adds "token_ids", the ids the model received) per text,
  flushed per batch; --fail-text-containing S answers {"id", "error": ...} for those texts only.

Start: prints "LISTENING <port>" on stdout once the model is loaded and the socket is listening (--port 0,
the default, picks a free port); logs one line per request on stderr.

    .venv-ref/bin/python scripts/systems/serve.py --model fixtures/external/all-MiniLM-L6-v2
    .venv-ref/bin/python scripts/systems/serve.py --model fixtures/models/tiny-xlmr-m3 --pipeline normalized-cls \\
        --max-length 128 --no-normalize --port 8080
"""
from __future__ import annotations

import argparse
import base64
import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch

ST, FLAG = "sentence-transformers", "normalized-cls"
API_VERSION = "1.9.3"  # the TEI OpenAPI document this stand-in follows


def default_max_length(model_dir: Path) -> int:
    """The max length scripts/generate_fixtures.py gives a suite made without --max-length."""
    def read(name):
        p = model_dir / name
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}

    n = (read("sentence_bert_config.json") or {}).get("max_seq_length")
    if n:
        return int(n)
    n = read("tokenizer_config.json").get("model_max_length")
    if n and int(n) < 1_000_000:
        return int(n)
    cfg = read("config.json")
    n = int(cfg["max_position_embeddings"])
    return n - 2 if cfg.get("model_type") in ("xlm-roberta", "roberta", "camembert") else n


def position_limit(model_dir: Path) -> int:
    """The most tokens the model's position table holds (XLM-R-style models lose 2 to the pad offset)."""
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    n = int(cfg.get("max_position_embeddings", 1 << 30))
    return n - 2 if cfg.get("model_type") in ("xlm-roberta", "roberta", "camembert") else n


class Refused(SystemExit):
    """A fault that would change nothing for this model and pipeline."""


class RequestError(Exception):
    """An error answered to the client: HTTP status, TEI error_type, message."""

    def __init__(self, status: int, error_type: str, message: str):
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


class Pipeline:
    """The served computation: a real library call, with the chosen faults applied to its inputs or modules."""

    def __init__(self, args):
        self.dir = Path(args.model)
        self.kind = args.pipeline
        self.n = args.max_length or default_max_length(self.dir)
        self.prefix, self.lowercase = args.prefix, args.lowercase
        self.strip, self.force_normalize, self.pooling = args.strip, args.normalize, args.pooling
        if self.n > position_limit(self.dir):
            raise Refused(f"--max-length {self.n}: the model has only {position_limit(self.dir)} positions")
        self.m3 = (self.dir / "sparse_linear.pt").is_file() and (self.dir / "colbert_linear.pt").is_file()
        self.faults: list[str] = []
        self._m3_model = None
        if self.kind == ST:
            self._load_st(args)
        else:
            self._load_flag(args)
        # The max length is not listed as a fault: whether N is one depends on the suite it is checked against.
        if self.prefix:
            self.faults.append(f"prefix {self.prefix!r}")
        if self.lowercase:
            self.faults.append("lowercase")

    # ----- sentence-transformers -----
    def _load_st(self, args):
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.models import Normalize, Pooling, Transformer

        st = SentenceTransformer(str(self.dir), device="cpu", model_kwargs={"dtype": torch.float32})
        st.max_seq_length = self.n
        names = [type(m).__name__ for m in st]
        self.normalizes = any(isinstance(m, Normalize) for m in st)
        if args.no_normalize:
            if not self.normalizes:
                raise Refused("--no-normalize: the model has no Normalize module; it would change nothing")
            for i in reversed([i for i, m in enumerate(st) if isinstance(m, Normalize)]):
                del st[i]
            self.normalizes = False
            self.faults.append("no Normalize module")
        if args.normalize:
            if self.normalizes:
                raise Refused("--normalize: the model already ends with Normalize; it would change nothing")
            self.faults.append("L2-normalized (the model has no Normalize module)")
        if args.pooling:
            idx = [i for i, m in enumerate(st) if isinstance(m, Pooling)]
            if not idx:
                raise Refused("--pooling: the model has no Pooling module")
            old = st[idx[0]]
            if old.get_pooling_mode_str() == args.pooling:
                raise Refused(f"--pooling {args.pooling}: the model already pools that way")
            st[idx[0]] = Pooling(old.word_embedding_dimension, pooling_mode=args.pooling,
                                 include_prompt=old.include_prompt)
            self.faults.append(f"pooling {args.pooling} instead of {old.get_pooling_mode_str()}")
        first = st[0]
        assert isinstance(first, Transformer)
        if args.strip:
            raise Refused("--strip: sentence-transformers 5.1 strips every text already; it would change nothing")
        self.unstripped = bool(args.no_strip)
        if args.no_strip:
            first.tokenize = _unstripped_tokenize(first)
            self.faults.append("text not stripped")
        if args.lowercase and first.do_lower_case:
            raise Refused("--lowercase: the model lowercases already (do_lower_case); it would change nothing")
        self._refuse_invisible(first.tokenizer, args)
        self.st = st
        self.tokenizer = first.tokenizer
        self.do_lower_case = bool(first.do_lower_case)
        self.pooling_name = next(m.get_pooling_mode_str() for m in st if isinstance(m, Pooling))
        self.call = (f"SentenceTransformer({self.dir}, device='cpu', float32) [{' -> '.join(type(m).__name__ for m in st)}] "
                     f"(modules.json: {' -> '.join(names)}); max_seq_length = {self.n}; encode(texts, normalize_embeddings={bool(args.normalize)})")
        if self.st.max_seq_length != self.n:
            raise SystemExit(f"max_seq_length {self.st.max_seq_length} != {self.n}")

    # ----- FlagEmbedding -----
    def _load_flag(self, args):
        from FlagEmbedding import BGEM3FlagModel, FlagModel

        pooling = args.pooling or "cls"
        if pooling not in ("cls", "mean"):
            raise Refused(f"--pooling {pooling}: FlagEmbedding pools cls or mean only")
        if args.pooling == "cls":
            raise Refused("--pooling cls: normalized-cls pools cls already; it would change nothing")
        if args.normalize:
            raise Refused("--normalize: normalized-cls normalizes already; it would change nothing")
        if args.no_strip:
            raise Refused("--no-strip: FlagEmbedding does not strip text; it would change nothing")
        common = dict(normalize_embeddings=not args.no_normalize, use_fp16=False, devices="cpu",
                      pooling_method=pooling, query_max_length=self.n, passage_max_length=self.n)
        if self.m3:
            self.flag = BGEM3FlagModel(str(self.dir), **common)
            self._m3_model = self.flag
        else:
            self.flag = FlagModel(str(self.dir), **common)
        self.normalizes = not args.no_normalize
        if args.no_normalize:
            self.faults.append("normalize_embeddings=False")
        if args.pooling:
            self.faults.append(f"pooling {pooling} instead of cls")
        if args.strip:
            self.faults.append("text stripped")
        self.tokenizer = self.flag.tokenizer
        self._refuse_invisible(self.tokenizer, args)
        self.do_lower_case = False
        self.pooling_name = pooling
        self.call = (f"FlagEmbedding.{type(self.flag).__name__}({self.dir}, {', '.join(f'{k}={v!r}' for k, v in common.items())})"
                     f".encode(texts, max_length={self.n})")

    @staticmethod
    def _refuse_invisible(tokenizer, args):
        """A text fault the tokenizer undoes (a BERT uncased tokenizer lowercases and drops edge whitespace)
        would change no vector: refuse it rather than serve a "fault" that no check can see."""
        def same(a, b):
            return tokenizer(a)["input_ids"] == tokenizer(b)["input_ids"]
        if (args.strip or args.no_strip) and same("  Edge whitespace \n", "Edge whitespace"):
            raise Refused("--strip/--no-strip: this model's tokenizer ignores leading/trailing whitespace; "
                          "it would change nothing")
        if args.lowercase and same("Hello World ABC", "hello world abc"):
            raise Refused("--lowercase: this model's tokenizer lowercases already; it would change nothing")

    # ----- shared -----
    def prepare(self, texts: list[str], prompt: str | None = None) -> list[str]:
        """What the server does to each text before the library sees it (the faults), then a TEI prompt."""
        out = []
        for t in texts:
            if self.prefix:
                t = self.prefix + t
            if self.kind == FLAG and self.strip:
                t = t.strip()
            if self.lowercase:
                t = t.lower()
            if prompt:
                t = prompt + t
            out.append(t)
        return out

    def library_text(self, t: str) -> str:
        """The text as the library's tokenizer call receives it (sentence-transformers strips, may lowercase)."""
        if self.kind == ST:
            if not self.unstripped:
                t = t.strip()
            if self.do_lower_case:
                t = t.lower()
        return t

    def token_count(self, t: str) -> int:
        return len(self.tokenizer(self.library_text(t), truncation=False)["input_ids"])

    @torch.no_grad()
    def embed(self, texts: list[str], normalize: bool | None) -> np.ndarray:
        """One float32 row per text. normalize None: as configured; True: L2-normalized; False: the
        pipeline's output without its own normalization."""
        if self.kind == ST:
            st = self.st
            if normalize is False and self.normalizes:
                from sentence_transformers import SentenceTransformer
                from sentence_transformers.models import Normalize
                st = SentenceTransformer(modules=[m for m in self.st if not isinstance(m, Normalize)], device="cpu")
            vecs = st.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False,
                             normalize_embeddings=bool(self.force_normalize))
        else:
            owner = self.flag.model if self.m3 else self.flag
            keep = owner.normalize_embeddings
            if normalize is False:
                owner.normalize_embeddings = False
            try:
                out = self.flag.encode(texts, batch_size=32, max_length=self.n)
            finally:
                owner.normalize_embeddings = keep
            vecs = out["dense_vecs"] if self.m3 else out
        vecs = np.asarray(vecs, dtype=np.float32).reshape(len(texts), -1)
        if normalize is True and not (self.normalizes or self.force_normalize):
            vecs = torch.nn.functional.normalize(torch.from_numpy(vecs), dim=-1).numpy()
        return vecs

    @torch.no_grad()
    def sparse(self, texts: list[str]) -> list[list[dict]]:
        if not self.m3:
            raise RequestError(424, "Backend", "this model has no sparse head (sparse_linear.pt): no sparse embeddings")
        if self._m3_model is None:
            from FlagEmbedding import BGEM3FlagModel
            self._m3_model = BGEM3FlagModel(str(self.dir), normalize_embeddings=True, use_fp16=False, devices="cpu",
                                            query_max_length=self.n, passage_max_length=self.n)
        out = self._m3_model.encode(texts, batch_size=32, max_length=self.n, return_dense=False, return_sparse=True)
        return [[{"index": int(k), "value": float(v)} for k, v in sorted(w.items(), key=lambda kv: int(kv[0]))]
                for w in out["lexical_weights"]]

    def tokenize(self, texts: list[str], add_special_tokens: bool) -> list[list[dict]]:
        rows = []
        for t in texts:
            lt = self.library_text(t)
            enc = self.tokenizer(lt, add_special_tokens=add_special_tokens, truncation=False,
                                 return_offsets_mapping=True, return_special_tokens_mask=True)
            toks = self.tokenizer.convert_ids_to_tokens(enc["input_ids"])
            row = []
            for tid, tok, (s, e), special in zip(enc["input_ids"], toks, enc["offset_mapping"], enc["special_tokens_mask"]):
                if special:
                    row.append({"id": tid, "text": tok, "special": True, "start": None, "stop": None})
                else:
                    bs, be = len(lt[:s].encode("utf-8")), len(lt[:e].encode("utf-8"))
                    row.append({"id": tid, "text": lt[s:e], "special": False, "start": bs, "stop": be})
            rows.append(row)
        return rows

    def prompts(self) -> dict:
        p = self.dir / "config_sentence_transformers.json"
        return (json.loads(p.read_text(encoding="utf-8")).get("prompts") or {}) if p.is_file() else {}


def _unstripped_tokenize(module):
    """sentence-transformers 5.1.2 Transformer.tokenize for plain strings, without its `str(s).strip()`."""
    def tokenize(texts, padding=True, **_kwargs):
        texts = [str(t) for t in texts]
        if module.do_lower_case:
            texts = [t.lower() for t in texts]
        return dict(module.tokenizer(texts, padding=padding, truncation="longest_first", return_tensors="pt",
                                     max_length=module.max_seq_length))
    return tokenize


class State:
    def __init__(self, args, pipe: Pipeline):
        self.args, self.pipe = args, pipe
        self.lock = threading.Lock()  # the request counter and the one-time status
        self.model_lock = threading.Lock()
        self.first_status_pending = args.status_on_first is not None
        self.requests = 0
        self.served_name = args.served_model_name or pipe.dir.name
        self.required = []
        for spec in args.require_header:
            name, sep, value = spec.partition("=")
            if not sep or not name:
                raise SystemExit(f"--require-header {name or spec!r}: expected NAME=VALUE")
            self.required.append((name, value))


def make_handler(state: State):
    args, pipe = state.args, state.pipe

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "embcheck-tei-stand-in"

        def log_message(self, fmt, *a):  # one line per request from _send; nothing from the base class
            pass

        def _send(self, status: int, body, extra_headers=(), n_inputs=None, message=None):
            data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if not isinstance(body, bytes) else "text/plain")
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra_headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            n = "" if n_inputs is None else f" inputs={n_inputs}"
            why = f": {message}" if message else ""
            print(f"serve: {self.command} {self.path} -> {status}{n}{why}", file=sys.stderr, flush=True)

        def _error(self, openai: bool, status: int, error_type: str, message: str, extra=(), n_inputs=None):
            body = ({"message": message, "code": status, "type": error_type} if openai
                    else {"error": message, "error_type": error_type})
            self._send(status, body, extra, n_inputs, message)

        def _authorized(self, openai: bool) -> bool:
            for name, value in state.required:
                if self.headers.get(name) != value:
                    self._error(openai, 401, "Unauthorized", f"missing or wrong {name} header")
                    return False
            return True

        def do_GET(self):
            path = self.path.split("?")[0]
            if not self._authorized(False):
                return
            if path == "/health":
                self._send(200, b"")
            elif path in ("/v1/models", "/models"):  # OpenAI: the served model, for clients that ask first
                self._send(200, {"object": "list", "data": [
                    {"id": state.served_name, "object": "model", "created": 0, "owned_by": "embcheck-stand-in"}]})
            elif path == "/info":
                self._send(200, {
                    "model_id": state.served_name, "model_sha": None, "model_dtype": "float32",
                    "model_type": {"embedding": {"pooling": pipe.pooling_name}},
                    "served_model_name": state.served_name,
                    "max_concurrent_requests": 512, "max_input_length": pipe.n, "max_batch_tokens": 16384,
                    "max_batch_requests": None, "max_client_batch_size": args.max_client_batch_size,
                    "auto_truncate": not args.no_auto_truncate, "tokenization_workers": 1,
                    "version": f"{API_VERSION}-embcheck-stand-in", "sha": None, "docker_label": None,
                    "stand_in": {"pipeline": pipe.kind, "call": pipe.call, "faults": pipe.faults},
                })
            else:
                self._error(False, 404, "NotFound", f"no route GET {path}")

        def do_POST(self):
            path = self.path.split("?")[0]
            openai = path in ("/v1/embeddings", "/embeddings")
            if path not in ("/v1/embeddings", "/embeddings", "/embed", "/embed_sparse", "/tokenize"):
                self._error(False, 404, "NotFound", f"no route POST {path}")
                return
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not self._authorized(openai):
                return
            try:
                req = json.loads(raw.decode("utf-8"))
                if not isinstance(req, dict):
                    raise ValueError("the body is not a JSON object")
            except (UnicodeDecodeError, ValueError) as e:
                self._error(openai, 422, "Validation", f"invalid JSON body: {e}")
                return
            key = "input" if openai else "inputs"
            inputs = req.get(key)
            single = isinstance(inputs, str)
            texts = [inputs] if single else inputs
            n = len(texts) if isinstance(texts, list) else None
            try:
                if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                    raise RequestError(422, "Validation", f"`{key}` must be a string or a list of strings "
                                                          "(token-id inputs are not supported by this stand-in)")
                if not texts:
                    raise RequestError(400, "Empty", f"`{key}` cannot be empty")
                if len(texts) > args.max_client_batch_size:
                    raise RequestError(args.validation_status, "Validation",
                                       f"batch size {len(texts)} > maximum allowed batch size {args.max_client_batch_size}")
                if path != "/tokenize":
                    with state.lock:
                        state.requests += 1
                        first = state.first_status_pending
                        state.first_status_pending = False
                    if first:
                        st = args.status_on_first
                        et = "Overloaded" if st == 429 else "Unhealthy"
                        self._error(openai, st, et, "Model is overloaded" if st == 429 else "unhealthy",
                                    [("Retry-After", "0")], n)
                        return
                    if args.fail_text_containing is not None and any(args.fail_text_containing in t for t in texts):
                        raise RequestError(500, "Backend", "Inference failed: this server is set to fail on a text "
                                                           f"containing {args.fail_text_containing!r}")
                # One request at a time in the libraries: a fast tokenizer shared between threads raises
                # "Already borrowed", and torch runs its own threads anyway.
                with state.model_lock:
                    body = self._answer(path, openai, req, texts)
            except RequestError as e:
                self._error(openai, e.status, e.error_type, e.message, n_inputs=n)
                return
            except Exception as e:  # a library error is the server's fault: 500, and the server keeps running
                self._error(openai, 500, "Backend", f"{type(e).__name__}: {e}", n_inputs=n)
                return
            self._send(200, body, n_inputs=n)

        def _answer(self, path, openai, req, texts):
            prompt = None
            if req.get("prompt_name") is not None:
                prompts = pipe.prompts()
                if req["prompt_name"] not in prompts:
                    raise RequestError(422, "Validation", f"prompt_name {req['prompt_name']!r} is not one of the "
                                                          f"model's prompts {sorted(prompts)}")
                prompt = prompts[req["prompt_name"]]
            if req.get("dimensions") is not None:
                raise RequestError(422, "Validation", "`dimensions` is not supported by this stand-in")
            prepared = pipe.prepare(texts, prompt)
            if path == "/tokenize":
                return pipe.tokenize(prepared, bool(req.get("add_special_tokens", True)))
            truncate = (not args.no_auto_truncate) if openai or req.get("truncate") is None else bool(req["truncate"])
            if (req.get("truncation_direction") or "Right").lower() != "right":
                raise RequestError(422, "Validation", "only truncation_direction Right is supported by this stand-in")
            if not truncate:
                for t in prepared:
                    c = pipe.token_count(t)
                    if c > pipe.n:
                        raise RequestError(args.validation_status, "Validation",
                                           f"`inputs` must have less than {pipe.n} tokens. Given: {c}")
            if path == "/embed_sparse":
                return pipe.sparse(prepared)
            # TEI's /embed normalizes unless the request says "normalize": false, whatever the model's modules.
            normalize = None if openai else bool(req.get("normalize", True))
            vecs = pipe.embed(prepared, normalize)
            if not openai:
                return vecs.tolist()
            b64 = req.get("encoding_format", "float") == "base64"
            data = [{"object": "embedding", "index": i,
                     "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") if b64 else v.tolist()}
                    for i, v in enumerate(vecs)]
            if len(data) > 1:  # never in input order: a client that ignores `index` must fail
                order = list(range(len(data)))
                random.Random(state.requests).shuffle(order)
                if order == sorted(order):
                    order.reverse()
                data = [data[i] for i in order]
            ntok = sum(min(pipe.token_count(t), pipe.n) for t in prepared)
            return {"object": "list", "data": data, "model": state.served_name,
                    "usage": {"prompt_tokens": ntok, "total_tokens": ntok}}

    return Handler


def run_stdio(args, pipe: Pipeline) -> int:
    """The --stdio protocol: JSON Lines in, one answer line per text out, batch by batch."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from automodel_cls import Lines  # the same batching reader as the AutoModel seed scenario

    out = sys.stdout

    def run(batch):
        keep = [k for k, (_, t) in enumerate(batch)
                if args.fail_text_containing is None or args.fail_text_containing not in t]
        prepared = pipe.prepare([batch[k][1] for k in keep])
        rows = {}
        if keep and args.stdio_output == "sparse":
            for k, w in zip(keep, pipe.sparse(prepared)):
                rows[k] = {"id": batch[k][0], "sparse": {str(x["index"]): x["value"] for x in w}}
        elif keep:
            for k, v in zip(keep, pipe.embed(prepared, None)):
                rows[k] = {"id": batch[k][0], "embedding": v.tolist()}
        if args.token_ids:
            for k, t in zip(keep, prepared):
                rows[k]["token_ids"] = pipe.tokenizer(pipe.library_text(t), truncation=True,
                                                      max_length=pipe.n)["input_ids"]
        for k, (i, _) in enumerate(batch):
            row = rows.get(k) or {"id": i, "error": "this program is set to fail on a text containing "
                                                    f"{args.fail_text_containing!r}"}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.flush()

    lines, batch, lineno = Lines(sys.stdin.fileno()), [], 0
    while True:
        line = lines.next(block=not batch)
        if line is None:
            if batch:
                run(batch)
                batch = []
                continue
            return 0
        lineno += 1
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise ValueError('expected an object with a string "text"')
        except (UnicodeDecodeError, ValueError) as e:
            print(f"serve --stdio: stdin line {lineno}: {e}", file=sys.stderr)
            return 2
        batch.append((obj.get("id", lineno - 1), obj["text"]))
        if len(batch) >= 32:
            run(batch)
            batch = []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model directory")
    ap.add_argument("--pipeline", choices=[ST, FLAG], default=ST)
    ap.add_argument("--port", type=int, default=0, help="0 (default): pick a free port")
    ap.add_argument("--served-model-name", help="the model name in /info and OpenAI answers (default: the dir name)")
    ap.add_argument("--max-client-batch-size", type=int, default=32, help="TEI's default: 32")
    ap.add_argument("--no-auto-truncate", action="store_true",
                    help="a text over the max length is an error unless the request says truncate: true")
    ap.add_argument("--validation-status", type=int, choices=[413, 422], default=422)
    ap.add_argument("--stdio", action="store_true", help="JSON Lines on stdin/stdout instead of HTTP (for cmd:)")
    ap.add_argument("--stdio-output", choices=["dense", "sparse"], default="dense")
    ap.add_argument("--token-ids", action="store_true", help="--stdio: add the ids the model received")
    ap.add_argument("--faithful", action="store_true", help="no fault (the default; refuses any fault flag)")
    f = ap.add_argument_group("faults")
    f.add_argument("--no-normalize", action="store_true")
    f.add_argument("--normalize", action="store_true")
    f.add_argument("--pooling", choices=["cls", "mean", "max"])
    f.add_argument("--max-length", type=int)
    f.add_argument("--strip", action="store_true")
    f.add_argument("--no-strip", action="store_true")
    f.add_argument("--lowercase", action="store_true")
    f.add_argument("--prefix")
    t = ap.add_argument_group("transport faults")
    t.add_argument("--fail-text-containing")
    t.add_argument("--status-on-first", type=int, choices=[429, 503])
    t.add_argument("--require-header", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args()

    if args.normalize and args.no_normalize:
        ap.error("--normalize and --no-normalize exclude each other")
    if args.strip and args.no_strip:
        ap.error("--strip and --no-strip exclude each other")
    if args.max_length is not None and args.max_length < 2:
        ap.error("--max-length must be at least 2")

    if args.stdio and (args.status_on_first or args.require_header):
        ap.error("--status-on-first and --require-header are HTTP faults; not with --stdio")
    t0 = time.time()
    # Bound before loading: the port is ours while the model loads.
    server = None if args.stdio else ThreadingHTTPServer(("127.0.0.1", args.port), None)
    try:
        pipe = Pipeline(args)
    except Refused as e:
        print(f"serve: refused: {e}", file=sys.stderr)
        return 2
    if args.faithful and pipe.faults:
        print(f"serve: --faithful with faults: {pipe.faults}", file=sys.stderr)
        return 2
    if args.stdio:
        print(f"serve --stdio: {pipe.kind}: {pipe.call}; faults: {', '.join(pipe.faults) or 'none (faithful)'}",
              file=sys.stderr, flush=True)
        return run_stdio(args, pipe)
    state = State(args, pipe)
    server.RequestHandlerClass = make_handler(state)
    import sentence_transformers
    import transformers
    print(f"serve: {pipe.kind}: {pipe.call}", file=sys.stderr)
    print(f"serve: faults: {', '.join(pipe.faults) or 'none (faithful)'}; torch {torch.__version__}, transformers "
          f"{transformers.__version__}, sentence-transformers {sentence_transformers.__version__}; "
          f"ready in {time.time() - t0:.1f}s", file=sys.stderr, flush=True)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
