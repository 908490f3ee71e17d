#!/usr/bin/env python3
"""A system under test for `embcheck check SUITE --against cmd:...`: what a transformers `AutoModel` user does.

The seed scenario of embcheck: a developer embeds with BAAI/bge-m3 through plain transformers,

    tokenizer = AutoTokenizer.from_pretrained(dir)
    model = AutoModel.from_pretrained(dir)
    inputs = tokenizer(batch, padding=True, truncation=True, max_length=N, return_tensors="pt")
    vectors = model(**inputs)[0][:, 0]          # the CLS hidden state, NOT L2-normalized

while FlagEmbedding's BGEM3FlagModel (the `normalized-cls` reference) returns that vector L2-normalized.
Checked against a bge-m3-layout suite's `normalized-cls`, this script must be diagnosed `normalization`;
with `--normalize` (torch.nn.functional.normalize(v, dim=-1), what the model card's users add) it must pass.

Protocol (JSON Lines, UTF-8):
  stdin   {"id": ..., "text": ...}                                  one text per line
  stdout  {"id": ..., "embedding": [f32, ...], "token_ids": [...]}  one line per text, in input order,
          flushed after every batch; token_ids are the ids the model received (special tokens included,
          after truncation, padding removed).
  stderr  progress and errors.
A batch is run when --batch-size texts are waiting, or when stdin has nothing more to give at the moment,
so a caller that waits for answers before sending more (or before closing stdin) is never left hanging.
A line that is not a JSON object with a string "text" is an error: the script says which line on stderr
and exits with status 2.

    .venv-ref/bin/python scripts/systems/automodel_cls.py --model fixtures/models/tiny-xlmr-m3 --max-length 128
    echo '{"id": "a", "text": "hello"}' | .venv-ref/bin/python scripts/systems/automodel_cls.py \\
        --model fixtures/models/tiny-xlmr-m3 --max-length 128 --normalize
"""
from __future__ import annotations

import argparse
import json
import os
import select
import sys
from pathlib import Path


def default_max_length(model_dir: Path) -> int:
    """The limit an AutoModel user gets by copying the tokenizer's own: tokenizer_config.json model_max_length,
    else config.json max_position_embeddings (minus XLM-R's 2 pad-offset positions). Pass --max-length to match
    a suite made with another one (tiny-xlmr-m3: 128)."""
    def read(name):
        p = model_dir / name
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}

    n = read("tokenizer_config.json").get("model_max_length")
    if n and int(n) < 1_000_000:
        return int(n)
    cfg = read("config.json")
    n = int(cfg["max_position_embeddings"])
    return n - 2 if cfg.get("model_type") in ("xlm-roberta", "roberta", "camembert") else n


class Lines:
    """Lines from a file descriptor, with a way to ask whether another one is available right now."""

    def __init__(self, fd: int):
        self.fd, self.buf, self.eof = fd, b"", False

    def _fill(self, block: bool) -> None:
        if self.eof:
            return
        if not block and not select.select([self.fd], [], [], 0)[0]:
            return
        chunk = os.read(self.fd, 1 << 16)
        if chunk:
            self.buf += chunk
        else:
            self.eof = True

    def next(self, block: bool) -> bytes | None:
        """The next complete line (without its newline); None when none is available (block=False) or at EOF.
        At EOF an unterminated last line is still returned."""
        while b"\n" not in self.buf:
            before = (len(self.buf), self.eof)
            self._fill(block)
            if self.eof or (not block and (len(self.buf), self.eof) == before):
                break
        if b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            return line
        if self.eof and self.buf:
            line, self.buf = self.buf, b""
            return line
        return None


def answer_lines(name: str, batch_size: int, run, full_batches: bool = False) -> int:
    """The `cmd:` loop: reads {"id", "text"} JSON Lines on stdin and calls run(batch) (a list of (id, text)),
    which writes and flushes one answer per text, for every batch_size texts waiting, or sooner when stdin has
    nothing more at the moment; with full_batches, only at batch_size texts or at the end of stdin (the batches
    are then the input's consecutive chunks whatever the pipe's timing, but a caller that waits for answers
    before sending more must send whole batches). A line that is not a JSON object with a string "text": the
    line on stderr, status 2. Returns the exit status."""
    lines = Lines(sys.stdin.fileno())
    lineno = 0
    done = 0
    batch: list[tuple[object, str]] = []
    while True:
        # Block for the first line of a batch (for every line with full_batches); take further lines only while
        # they are already there.
        line = lines.next(block=full_batches or not batch)
        if line is None:
            if batch:
                run(batch)
                done += len(batch)
                batch = []
                continue
            break
        lineno += 1
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            print(f"{name}: stdin line {lineno}: not JSON: {e}", file=sys.stderr)
            return 2
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            print(f"{name}: stdin line {lineno}: expected an object with a string \"text\"", file=sys.stderr)
            return 2
        batch.append((obj.get("id", lineno - 1), obj["text"]))
        if len(batch) >= batch_size:
            run(batch)
            done += len(batch)
            batch = []
    print(f"{name}: {done} texts embedded", file=sys.stderr, flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model directory (transformers layout)")
    ap.add_argument("--max-length", type=int, help="tokenizer max_length (default: the tokenizer's model_max_length)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--normalize", action="store_true", help="L2-normalize with torch.nn.functional.normalize")
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import AutoModel, AutoTokenizer

    model_dir = Path(args.model)
    n = args.max_length or default_max_length(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    print(f"automodel_cls: transformers {transformers.__version__}, torch {torch.__version__}, model {model_dir}, "
          f"max_length {n}, batch {args.batch_size}, normalize {args.normalize}", file=sys.stderr, flush=True)

    out = sys.stdout

    def run(batch: list[tuple[object, str]]) -> None:
        texts = [t for _, t in batch]
        inputs = tokenizer(texts, padding=True, truncation=True, max_length=n, return_tensors="pt")
        with torch.no_grad():
            vectors = model(**inputs)[0][:, 0]
            if args.normalize:
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
        for (id_, _), vec, ids, mask in zip(batch, vectors, inputs["input_ids"], inputs["attention_mask"]):
            row = {"id": id_, "embedding": vec.tolist(), "token_ids": ids[mask.bool()].tolist()}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.flush()

    return answer_lines("automodel_cls", args.batch_size, run)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # without the interpreter's teardown of torch: seconds, past embcheck's grace period
