#!/usr/bin/env python3
"""A system under test for `embcheck check SUITE --against cmd:...`: a decoder embedding model (Qwen3-Embedding,
e5-mistral-7b-instruct) run as its model card says, on the real transformers library, with switchable faults.

This is the real library, not a stand-in: transformers `AutoTokenizer` and `AutoModel` (float32, CPU) compute
every vector; the script only writes out the card's recipe, which is what embcheck's `normalized-last` pipeline
and scripts/generate_fixtures.py's reference for it compute:

    tokenizer = AutoTokenizer.from_pretrained(dir, padding_side="left")
    model = AutoModel.from_pretrained(dir, dtype=torch.float32)
    texts = [instruction + text for text in batch]           # --instruction; no separator added
    # EOS: a tokenizer whose encodings end with eos_token_id (Qwen3-Embedding) is called as it is,
    #   tokenizer(texts, padding=True, truncation=True, max_length=N, return_tensors="pt");
    # otherwise (e5-mistral's card) EOS is appended by hand after a cut at N - 1:
    #   ids = tokenizer(texts, max_length=N - 1, return_attention_mask=False, padding=False, truncation=True)
    #   ids["input_ids"] = [x + [tokenizer.eos_token_id] for x in ids["input_ids"]]
    #   inputs = tokenizer.pad(ids, padding=True, return_attention_mask=True, return_tensors="pt")
    vectors = F.normalize(last_token_pool(model(**inputs).last_hidden_state, inputs["attention_mask"]), p=2, dim=1)

`last_token_pool` is the card's function (with left padding, position -1; otherwise each row's last real token).
Whether the tokenizer ends texts with EOS is read as the reference generator reads it:
tokenizer("a")["input_ids"][-1] == eos_token_id.

--raw: embcheck's `raw-last` instead, what a plain transformers user gets: the tokenizer as it comes (its own
padding side), tokenizer(texts, padding=True, truncation=True, max_length=N), no EOS by hand, the last real
token's hidden state, not normalized (the raw-last reference has no instruction: give none to match it).

Faults (none given = faithful; each is refused, exit 2 with a message, where it would change nothing, so that a
case that expects a failure cannot pass by accident):
  --right-padding-last-position  padding_side="right" and the vector read at last_hidden_state[:, -1] (the
                                 classic bug: a pooling that assumes left padding); every text shorter than the
                                 longest of its batch is read at a pad position (refused for --batch-size 1)
  --no-eos                       the EOS the recipe appends by hand is not appended (the cut stays at N - 1;
                                 refused for a tokenizer that appends EOS itself, and with --raw)
  --extra-eos                    EOS appended by hand (after a cut at N - 1) although the tokenizer already
                                 appends it: every text ends with two (refused for a tokenizer that does not)
  --no-instruction               the instruction is not prefixed (refused without --instruction)
  --f16                          the model loaded in torch.float16 and run in it on the CPU; pooling and
                                 normalization in float16 as the card's code does, the output cast to float32

Protocol (JSON Lines, UTF-8), as scripts/systems/automodel_cls.py:
  stdin   {"id": ..., "text": ...}                                  one text per line
  stdout  {"id": ..., "embedding": [f32, ...], "token_ids": [...]}  one line per text, in input order,
          flushed after every batch; token_ids are the ids the model received (special tokens included, after
          truncation, padding removed).
  stderr  the versions and settings, progress and errors.
Batches are the input's consecutive chunks of --batch-size texts (default 8), the last one at the end of stdin,
whatever the pipe's timing: the batch a text shares sets its padding, which moves float16 results by ~1e-3 (and
decides, with --right-padding-last-position, which texts are read at a pad). A caller that waits for answers
before sending more must send whole batches or close stdin. A line that is not a JSON object with a string "text" is an error: the line
is named on stderr and the script exits with status 2.

    .venv-ref/bin/python scripts/systems/last_token.py --model fixtures/models/tiny-qwen3 --max-length 512 \\
        --instruction $'Instruct: Given a web search query, retrieve relevant passages that answer the query\\nQuery:'
    embcheck check fixtures/suites/tiny-mistral --pipeline normalized-last \\
        --against 'cmd:.venv-ref/bin/python scripts/systems/last_token.py --model fixtures/models/tiny-mistral --max-length 512 --no-eos'
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from automodel_cls import answer_lines  # noqa: E402  (the cmd: loop, shared)


def refuse(message: str) -> int:
    print(f"last_token: refused: {message}", file=sys.stderr)
    return 2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model directory (transformers layout)")
    ap.add_argument("--max-length", type=int, required=True, help="token limit, EOS included (the suite's max_length)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--instruction", metavar="TEXT", help="prefixed to every text as given (no separator added)")
    ap.add_argument("--raw", action="store_true", help="raw-last: the tokenizer as it comes, no EOS by hand, not normalized")
    ap.add_argument("--right-padding-last-position", action="store_true")
    ap.add_argument("--no-eos", action="store_true")
    ap.add_argument("--extra-eos", action="store_true")
    ap.add_argument("--no-instruction", action="store_true")
    ap.add_argument("--f16", action="store_true")
    args = ap.parse_args()
    if args.max_length < 2 or args.batch_size < 1:
        return refuse("--max-length must be at least 2 and --batch-size at least 1")

    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import AutoModel, AutoTokenizer

    model_dir = str(Path(args.model))
    n = args.max_length
    # The side the recipe pads on (raw-last: the tokenizer's own), then the fault's.
    tokenizer = AutoTokenizer.from_pretrained(model_dir) if args.raw else AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    appends_eos = tokenizer("a")["input_ids"][-1] == tokenizer.eos_token_id
    eos_by_hand = not appends_eos and not args.raw
    if args.right_padding_last_position:
        if args.batch_size == 1:
            return refuse("--right-padding-last-position with --batch-size 1: a batch of one is never padded")
        tokenizer.padding_side = "right"
    if args.no_eos:
        if args.raw:
            return refuse("--no-eos with --raw: raw-last appends no EOS by hand")
        if appends_eos:
            return refuse(f"--no-eos: this tokenizer appends EOS ({tokenizer.eos_token!r}) itself, the recipe adds none by hand")
        eos_by_hand = False
    if args.extra_eos:
        if not appends_eos:
            return refuse(f"--extra-eos: this tokenizer does not append EOS ({tokenizer.eos_token!r}) itself")
        eos_by_hand = True
    if args.no_instruction and args.instruction is None:
        return refuse("--no-instruction without --instruction: there is no instruction to drop")
    prefix = "" if args.no_instruction or args.instruction is None else args.instruction
    # Cut at N - 1 wherever EOS goes on by hand (the card's e5-mistral code), also where --no-eos leaves it off.
    cut_for_eos = eos_by_hand or args.no_eos

    dtype = torch.float16 if args.f16 else torch.float32
    model = AutoModel.from_pretrained(model_dir, dtype=dtype).eval()
    assert next(model.parameters()).dtype == dtype
    faults = [f for f in ("right_padding_last_position", "no_eos", "extra_eos", "no_instruction", "f16") if getattr(args, f)]
    print(f"last_token: transformers {transformers.__version__}, torch {torch.__version__}, model {model_dir}, "
          f"{'raw-last' if args.raw else 'normalized-last'}, max_length {n}, batch {args.batch_size}, padding "
          f"{tokenizer.padding_side}, EOS {'by hand' if eos_by_hand else 'none by hand'} (tokenizer appends it: "
          f"{appends_eos}), instruction {prefix!r}, dtype {dtype}, faults {faults or 'none'}", file=sys.stderr, flush=True)

    def last_token_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The model cards' function."""
        left_padding = mask[:, -1].sum() == mask.shape[0]
        if left_padding:
            return h[:, -1]
        lengths = mask.sum(dim=1) - 1
        return h[torch.arange(h.shape[0], device=h.device), lengths]

    out = sys.stdout

    def run(batch: list[tuple[object, str]]) -> None:
        texts = [prefix + t for _, t in batch]
        if cut_for_eos:
            enc = tokenizer(texts, max_length=n - 1, return_attention_mask=False, padding=False, truncation=True)
            if eos_by_hand:
                enc["input_ids"] = [x + [tokenizer.eos_token_id] for x in enc["input_ids"]]
            enc = tokenizer.pad(enc, padding=True, return_attention_mask=True, return_tensors="pt")
        else:
            enc = tokenizer(texts, padding=True, truncation=True, max_length=n, return_tensors="pt")
        with torch.no_grad():
            h = model(**enc).last_hidden_state
            mask = enc["attention_mask"]
            pooled = h[:, -1] if args.right_padding_last_position else last_token_pool(h, mask)
            vectors = pooled if args.raw else F.normalize(pooled, p=2, dim=1)
            vectors = vectors.float()
        for (id_, _), vec, ids, m in zip(batch, vectors, enc["input_ids"], mask):
            row = {"id": id_, "embedding": vec.tolist(), "token_ids": ids[m.bool()].tolist()}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.flush()

    # Whole batches: which texts share a batch sets the padding, which moves f16 results by ~1e-3.
    return answer_lines("last_token", args.batch_size, run, full_batches=True)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # without the interpreter's teardown of torch: seconds, past embcheck's grace period
