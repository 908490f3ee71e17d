#!/usr/bin/env bash
# Checks real systems under test with `embcheck check --against` and asserts each verdict and diagnosis:
#   - the seed scenario: a transformers AutoModel user's raw CLS (scripts/systems/automodel_cls.py) against a
#     bge-m3-layout suite's normalized-cls -> exit 1, normalization; with --normalize -> exit 0; the same on a
#     DeBERTa-v2 suite, a model type embcheck does not implement (model-free diagnosis);
#   - an embedding server on the real libraries (scripts/systems/serve.py; OpenAI and TEI's APIs), faithful
#     and with one fault each -> the right diagnosis; a 500 for one text; 429 retried; nothing listening -> 2;
#   - a decoder embedder run as its model card says on the real transformers (scripts/systems/last_token.py:
#     Qwen3-Embedding's recipe with the instruction, e5-mistral's with EOS by hand, raw-last), faithful -> exit 0;
#     instruction dropped -> preprocessing, EOS dropped or doubled -> tokenization, f16 -> precision, right
#     padding read at [:, -1] -> padding, each keyword on every failing text (the count of failing texts printed);
#     the same on a Mistral configuration no bundled model has, references made now;
#   - models with weight scales unlike the bundled ones (scripts/make_scaled_model.py), references made by
#     the Python libraries now -> every f32 pipeline passes; the same computed in f16 fails; a ModernBERT of a
#     configuration no bundled model has (scripts/make_modernbert_model.py) -> every f32 pipeline passes; so do
#     three decoders of configurations no bundled one has (scripts/make_decoder_model.py: Qwen2, Qwen3, Llama).
# Needs the reference stack (.venv-ref, made here if absent) and a release build. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-ref/bin/python ] || bash scripts/setup-reference-env.sh
PY=$PWD/.venv-ref/bin/python
cargo build --release --quiet
E=$PWD/target/release/embcheck
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
failures=0
ran=0

# expect NAME CODE KEYWORD SUITE PIPELINE SOURCE [extra check args]: KEYWORD "-" when passing.
expect() {
  local name=$1 code=$2 keyword=$3 suite=$4 pipeline=$5 source=$6; shift 6
  local rep=$tmp/rep-$ran got=0
  ran=$((ran + 1))
  "$E" check "$suite" --against "$source" --pipeline "$pipeline" --report-dir "$rep" "$@" >"$rep.log" 2>&1 || got=$?
  local seen="- ?"
  if [ -f "$rep/$(basename "$suite")/diff.csv" ]; then
    seen=$("$PY" - "$rep/$(basename "$suite")/diff.csv" <<'PYEOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
failing = [r for r in rows if r["pass"] != "true"]
kw = sorted({r["diagnosis"] for r in failing})
print((",".join(kw) if kw else "-") + f" {len(failing)}/{len(rows)}")
PYEOF
)
  fi
  local count=${seen#* }
  seen=${seen%% *}
  if [ "$got" = "$code" ] && [ "$seen" = "$keyword" ]; then
    printf 'ok    %-44s exit %s  %s (%s failing)\n' "$name" "$got" "$seen" "$count"
  else
    printf 'FAIL  %-44s exit %s (expected %s)  %s (expected %s; %s failing)\n' "$name" "$got" "$code" "$seen" "$keyword" "$count"
    sed 's/^/      /' "$rep.log" | head -12
    failures=$((failures + 1))
  fi
}

# passes NAME SUITE REPORT_DIR LOG: `embcheck check SUITE` (embcheck's own pipelines) must exit 0.
passes() {
  local got=0
  "$E" check "$2" --report-dir "$3" >"$4" 2>&1 || got=$?
  ran=$((ran + 1))
  if [ "$got" = 0 ]; then
    printf 'ok    %-44s exit 0\n' "$1"
  else
    printf 'FAIL  %-44s exit %s (expected 0)\n' "$1" "$got"; grep -E "FAIL|^    " "$4" | head; failures=$((failures + 1))
  fi
}

# serve ARGS...: starts serve.py, sets URL.
serve() {
  "$PY" scripts/systems/serve.py --port 0 "$@" >"$tmp/serve.out" 2>"$tmp/serve.err" &
  pids+=($!)
  for _ in $(seq 1 120); do
    if grep -q LISTENING "$tmp/serve.out" 2>/dev/null; then
      URL="http://127.0.0.1:$(awk '/LISTENING/ {print $2}' "$tmp/serve.out")"
      return 0
    fi
    sleep 0.5
  done
  echo "serve.py did not start: $(cat "$tmp/serve.err")" >&2
  exit 1
}
stop() { kill "${pids[-1]}" 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true; }

echo "== the seed scenario (cmd:)"
XLMR=fixtures/suites/tiny-xlmr-m3
AUTO="cmd:$PY scripts/systems/automodel_cls.py --model fixtures/models/tiny-xlmr-m3 --max-length 128"
expect "AutoModel raw CLS vs normalized-cls" 1 normalization $XLMR normalized-cls "$AUTO"
expect "AutoModel + F.normalize vs normalized-cls" 0 - $XLMR normalized-cls "$AUTO --normalize"

echo "== a model type embcheck does not implement (DeBERTa-v2): model-free checks, never exit 2 for the type"
DEB=fixtures/suites/tiny-deberta-v2
AUTO_DEB="cmd:$PY scripts/systems/automodel_cls.py --model fixtures/models/tiny-deberta-v2 --max-length 128"
expect "DeBERTa-v2 AutoModel raw CLS vs normalized-cls" 1 normalization $DEB normalized-cls "$AUTO_DEB"
expect "DeBERTa-v2 AutoModel + F.normalize" 0 - $DEB normalized-cls "$AUTO_DEB --normalize"

echo "== an embedding server on the real libraries (HTTP)"
BERT=fixtures/suites/tiny-bert-mean
M=fixtures/models/tiny-bert-mean
serve --model $M --max-length 64
expect "faithful, OpenAI API" 0 - $BERT sentence-transformers "$URL" --api openai
expect "faithful, TEI API (detected)" 0 - $BERT sentence-transformers "$URL"
stop
# A cut at 16 tokens: diagnosis tries the reference's max length and the usual limits (8–8192, 384, 768).
for fault in "--no-normalize:normalization" "--pooling cls:pooling" "--max-length 16:truncation"; do
  serve --model $M --max-length 64 ${fault%%:*}
  expect "server ${fault%%:*}" 1 "${fault##*:}" $BERT sentence-transformers "$URL" --api openai
  stop
done
serve --model fixtures/models/tiny-xlmr-m3 --max-length 128 --no-strip
expect "server --no-strip (XLM-R)" 1 preprocessing $XLMR sentence-transformers "$URL" --api openai
stop
serve --model $M --max-length 64 --fail-text-containing "quick brown fox"
expect "server answers 500 for one text" 1 rejected $BERT sentence-transformers "$URL" --api openai
stop
serve --model $M --max-length 64 --status-on-first 429
expect "server answers 429 once (retried)" 0 - $BERT sentence-transformers "$URL" --api tei
stop
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
expect "nothing listening" 2 - $BERT sentence-transformers "http://127.0.0.1:$port"

echo "== a decoder embedder run as its model card says, on the real transformers (cmd:), faithful and with faults"
# scripts/systems/last_token.py: left padding, the card's last_token_pool, F.normalize; the instruction prefixed
# as the suite records it; EOS by hand for a tokenizer that does not append it (tiny-mistral), none for one that
# does (tiny-qwen3). Every failing text must carry the one keyword; the diagnosis budget lets it recompute all.
LT="$PY scripts/systems/last_token.py --max-length 512"
instruction() { "$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["instruction"], end="")' "$1/suite.toml"; }
QQ=fixtures/suites/tiny-qwen3-query; Q=fixtures/suites/tiny-qwen3; MI=fixtures/suites/tiny-mistral
# Inside the cmd: string the instruction is single-quoted for sh -c (it holds a newline and no quote).
QLT="cmd:$LT --model fixtures/models/tiny-qwen3 --instruction '$(instruction $QQ)'"
MLT="cmd:$LT --model fixtures/models/tiny-mistral"
B=(--diagnosis-budget 300)
expect "Qwen3 card recipe with the instruction" 0 - $QQ normalized-last "$QLT" "${B[@]}"
expect "Qwen3 card, instruction dropped" 1 preprocessing $QQ normalized-last "$QLT --no-instruction" "${B[@]}"
expect "Qwen3 card, right padding read at [:, -1]" 1 padding $QQ normalized-last "$QLT --right-padding-last-position" "${B[@]}"
expect "Qwen3 card, model in f16" 1 precision $QQ normalized-last "$QLT --f16" "${B[@]}"
expect "Qwen3 card, EOS appended again by hand" 1 tokenization $Q normalized-last "cmd:$LT --model fixtures/models/tiny-qwen3 --extra-eos" "${B[@]}"
expect "e5-mistral card recipe (EOS by hand)" 0 - $MI normalized-last "$MLT" "${B[@]}"
expect "e5-mistral card, EOS not appended" 1 tokenization $MI normalized-last "$MLT --no-eos" "${B[@]}"
expect "e5-mistral card, right padding read at [:, -1]" 1 padding $MI normalized-last "$MLT --right-padding-last-position" "${B[@]}"
expect "AutoModel last real token (raw-last)" 0 - $MI raw-last "$MLT --raw" "${B[@]}"
expect "AutoModel raw-last, right padding at [:, -1]" 1 padding $MI raw-last "$MLT --raw --right-padding-last-position" "${B[@]}"
expect "AutoModel raw-last, model in f16" 1 precision $MI raw-last "$MLT --raw --f16" "${B[@]}"

if [ "${EMBCHECK_SYSTEMS_QUICK:-}" != 1 ]; then
echo "== models with other weight scales (references made now by the Python libraries)"
# 60 texts: within the 64 failing texts per pipeline that diagnosis recomputes with the model.
cat fixtures/texts/core.jsonl fixtures/texts/unseen.jsonl | head -n 60 > "$tmp/texts.jsonl"
for cfg in "big 16 1.0 0.0" "small-sparse 1 0.05 0.6" "tiny-hidden 0.25 0.5 -0.3"; do
  set -- $cfg
  "$PY" scripts/make_scaled_model.py --model fixtures/models/tiny-xlmr-m3 --out "$tmp/model-$1" --hidden-scale "$2" \
    --sparse-weight-scale "$3" --sparse-bias "$4" --seed 7 >/dev/null
  "$PY" scripts/generate_fixtures.py --model "$tmp/model-$1" --texts "$tmp/texts.jsonl" --out "$tmp/suite-$1" \
    --max-length 512 >"$tmp/gen-$1.log" 2>&1 || { cat "$tmp/gen-$1.log"; exit 1; }
  passes "scaled model $1, every pipeline in f32" "$tmp/suite-$1" "$tmp/rep-scaled-$1" "$tmp/scaled-$1.log"
  # The diagnosis is what is checked here: a budget that lets it finish (the default is a fraction of the
  # check's own compute).
  expect "scaled model $1, m3-sparse computed in f16" 1 precision "$tmp/suite-$1" m3-sparse \
    "cmd:$E embed --model $tmp/model-$1 --pipeline m3-sparse --max-length 512 --dtype f16 --input - --output -" \
    --diagnosis-budget 300
done

echo "== a ModernBERT configuration no bundled model has (references made now by the Python libraries)"
# ModernBertForMaskedLM (weights under model.), hidden 48 in 6 heads, 5 layers, global every 4th, local_attention 7
# (3 keys each side), other RoPE thetas, every bias, gelu_pytorch_tanh; CLS pooling, max_seq_length 300.
"$PY" scripts/make_modernbert_model.py --out "$tmp/model-mb" --hidden 48 --layers 5 --heads 6 --intermediate 40 \
  --local-attention 7 --global-every 4 --global-theta 20000 --local-theta 3000 --biases --act gelu_pytorch_tanh \
  --masked-lm --pooling cls --max-seq-length 300 --seed 5 >/dev/null
"$PY" scripts/generate_fixtures.py --model "$tmp/model-mb" --texts fixtures/texts/unseen.jsonl --texts fixtures/texts/edge.jsonl \
  --out "$tmp/suite-mb" >"$tmp/gen-mb.log" 2>&1 || { cat "$tmp/gen-mb.log"; exit 1; }
passes "unseen ModernBERT, every pipeline in f32" "$tmp/suite-mb" "$tmp/rep-mb" "$tmp/mb.log"
fi

echo "== decoder configurations no bundled model has (references made now by the Python libraries)"
# Qwen2ForCausalLM (weights under model.): hidden 48, 6 query heads on 3, a 5-token window from layer 1 on
# (use_sliding_window, max_window_layers 1), theta 20000, tiny-qwen3's tokenizer (EOS appended, left padding).
# Qwen3Model: hidden 40, head_dim 16 (query width 64), 4 heads on 1, windows of 6 from layer 2, attention_bias,
# theta 50000, mean pooling, tiny-mistral's tokenizer (<s> only: EOS by hand). LlamaForCausalLM: hidden 36 in 3
# heads on 1, gelu, every bias, theta 1000.
for spec in "q2|--kind qwen2 --hidden 48 --layers 3 --heads 6 --kv-heads 3 --intermediate 40 --theta 20000 --window 5 --max-window-layers 1 --causal-lm --seed 7" \
            "q3|--kind qwen3 --hidden 40 --layers 4 --heads 4 --kv-heads 1 --head-dim 16 --intermediate 56 --theta 50000 --window 6 --max-window-layers 2 --attention-bias --pooling mean --tokenizer-from fixtures/models/tiny-mistral --seed 8" \
            "ll|--kind llama --hidden 36 --layers 2 --heads 3 --kv-heads 1 --intermediate 30 --theta 1000 --act gelu --attention-bias --mlp-bias --causal-lm --seed 9"; do
  tag=${spec%%|*}
  # shellcheck disable=SC2086
  "$PY" scripts/make_decoder_model.py --out "$tmp/model-$tag" ${spec#*|} >/dev/null
  "$PY" scripts/generate_fixtures.py --model "$tmp/model-$tag" --texts fixtures/texts/unseen.jsonl --texts fixtures/texts/edge.jsonl \
    --out "$tmp/suite-$tag" >"$tmp/gen-$tag.log" 2>&1 || { cat "$tmp/gen-$tag.log"; exit 1; }
  passes "unseen decoder $tag, every pipeline in f32" "$tmp/suite-$tag" "$tmp/rep-$tag" "$tmp/$tag.log"
done
# The card's recipe through last_token.py on a decoder no bundled one is: a Mistral with 5 query heads on 1 of
# width 12 (hidden 40), theta 30000, tiny-mistral's tokenizer (EOS by hand), an instruction of its own.
"$PY" scripts/make_decoder_model.py --out "$tmp/model-mq" --kind mistral --hidden 40 --layers 3 --heads 5 --kv-heads 1 \
  --head-dim 12 --intermediate 52 --theta 30000 --tokenizer-from fixtures/models/tiny-mistral --seed 11 >/dev/null
"$PY" scripts/generate_fixtures.py --model "$tmp/model-mq" --texts fixtures/texts/unseen.jsonl --texts fixtures/texts/edge.jsonl \
  --out "$tmp/suite-mq" --pipelines normalized-last --instruction $'Instruct: Given a claim, find documents that refute the claim\nQuery: ' \
  >"$tmp/gen-mq.log" 2>&1 || { cat "$tmp/gen-mq.log"; exit 1; }
ULT="cmd:$LT --model $tmp/model-mq --instruction '$(instruction "$tmp/suite-mq")'"
expect "unseen Mistral, card recipe" 0 - "$tmp/suite-mq" normalized-last "$ULT" "${B[@]}"
expect "unseen Mistral, instruction dropped" 1 preprocessing "$tmp/suite-mq" normalized-last "$ULT --no-instruction" "${B[@]}"
# mask-glued ends with a literal "</s>", which the tokenizer reads as EOS: without the EOS by hand its ids are
# those of a cut at one token less (the text's own "</s>" closing it), and truncation is proven on that text.
expect "unseen Mistral, EOS not appended" 1 tokenization,truncation "$tmp/suite-mq" normalized-last "$ULT --no-eos" "${B[@]}"
expect "unseen Mistral, model in f16" 1 precision "$tmp/suite-mq" normalized-last "$ULT --f16" "${B[@]}"
expect "unseen Mistral, right padding read at [:, -1]" 1 padding "$tmp/suite-mq" normalized-last "$ULT --right-padding-last-position" "${B[@]}"
# Special tokens as transformers 4 names them: tokenizer_config.json (eos <|im_end|>, as Qwen's chat configs) over
# a special_tokens_map.json naming <|endoftext|>, which transformers reads only without added_tokens_decoder; the
# card's recipe (normalized-last) then appends <|im_end|> by hand after the tokenizer's <|endoftext|>.
"$PY" scripts/make_decoder_model.py --out "$tmp/model-q-eos" --kind qwen3 --hidden 32 --layers 2 --heads 4 --kv-heads 2 \
  --intermediate 40 --tokenizer-config 'eos_token="<|im_end|>"' --seed 12 >/dev/null
"$PY" scripts/generate_fixtures.py --model "$tmp/model-q-eos" --texts fixtures/texts/unseen.jsonl --texts fixtures/texts/edge.jsonl \
  --out "$tmp/suite-q-eos" >"$tmp/gen-q-eos.log" 2>&1 || { cat "$tmp/gen-q-eos.log"; exit 1; }
passes "EOS named by tokenizer_config.json" "$tmp/suite-q-eos" "$tmp/rep-q-eos" "$tmp/q-eos.log"

echo "== decoders and Qwen2Tokenizer configurations under transformers 5 (references made now by transformers 5)"
PY5=$PWD/.venv-ref5/bin/python
if [ -x "$PY5" ]; then
  # The unseen decoders above, their references made by transformers 5 / sentence-transformers 6: q2 is a qwen2
  # model, which transformers 5 always tokenizes with its rebuilt Qwen2Tokenizer.
  for tag in q2 q3 ll; do
    "$PY5" scripts/generate_fixtures.py --model "$tmp/model-$tag" --texts fixtures/texts/unseen.jsonl --texts fixtures/texts/edge.jsonl \
      --out "$tmp/suite5-$tag" >"$tmp/gen5-$tag.log" 2>&1 || { cat "$tmp/gen5-$tag.log"; exit 1; }
    passes "unseen decoder $tag under transformers 5" "$tmp/suite5-$tag" "$tmp/rep5-$tag" "$tmp/5-$tag.log"
  done
  # Qwen3 models whose tokenizer_config.json names Qwen2Tokenizer (transformers 5 rebuilds it in code from the
  # file's vocabulary and merges), with tiny-qwen3's tokenizer files changed the ways real ones differ: the
  # post-processor (EOS appended as Qwen3-Embedding's; ByteLevel with add_eos_token, which transformers 5 drops;
  # none), add_prefix_space and split_special_tokens, Qwen's own config keys and added tokens (<think>, not
  # special; a normalized one with lstrip). Texts: core, unseen, edge and texts with special and added tokens
  # written in them (every check compares the token ids too); a tokenizer that adds nothing gets no empty text.
  "$PY5" - "$tmp" <<'PYEOF'
import json, sys
from pathlib import Path
tmp = Path(sys.argv[1])
rows = [json.loads(l) for f in ["core", "unseen", "edge"] for l in Path(f"fixtures/texts/{f}.jsonl").read_text().splitlines() if l.strip()]
written = ["<|endoftext|>", "a<|im_start|>b<|im_end|>", "text <|endoftext|> more", "x <think> y", "<think>reason</think>",
           "  Café  Cafe\u0301 Café", "DON'T STOP, I'LL GO; we'Re", "12345 + 67.89", "line1\r\nline2\n\n\nline3"]
rows += [{"id": f"written-{i}", "text": t} for i, t in enumerate(written)]
(tmp / "qtexts.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
(tmp / "qtexts-nonempty.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows if r["text"]))
PYEOF
  for spec in "eos|qtexts|" \
              "bytelevel-addeos|qtexts-nonempty|--post-processor byte-level --tokenizer-config add_eos_token=true" \
              "nopp|qtexts-nonempty|--post-processor none" \
              "prefix-split|qtexts|--tokenizer-config add_prefix_space=true --tokenizer-config split_special_tokens=true" \
              "qwen-config|qtexts|--tokenizer-config unk_token=null --tokenizer-config eos_token=\"<|im_end|>\" --tokenizer-config additional_special_tokens=[\"<|im_start|>\",\"<|im_end|>\"] --added-token {\"content\":\"<think>\",\"normalized\":false} --added-token {\"content\":\"Café\",\"lstrip\":true}"; do
    IFS='|' read -r tag texts flags <<<"$spec"
    set -f  # the flags hold JSON: split on spaces, never globbed
    # shellcheck disable=SC2086
    "$PY5" scripts/make_decoder_model.py --out "$tmp/model-qt-$tag" --kind qwen3 --hidden 32 --layers 2 --heads 4 --kv-heads 2 \
      --intermediate 40 --tokenizer-class Qwen2Tokenizer $flags --seed 11 >/dev/null 2>&1
    set +f
    "$PY5" scripts/generate_fixtures.py --model "$tmp/model-qt-$tag" --texts "$tmp/$texts.jsonl" --out "$tmp/suite-qt-$tag" \
      --max-length 512 >"$tmp/gen-qt-$tag.log" 2>&1 || { cat "$tmp/gen-qt-$tag.log"; exit 1; }
    passes "Qwen2Tokenizer ($tag) under transformers 5" "$tmp/suite-qt-$tag" "$tmp/rep-qt-$tag" "$tmp/qt-$tag.log"
  done
else
  echo "skipped: no .venv-ref5 (bash scripts/setup-reference5-env.sh); the unseen decoders and Qwen2Tokenizer configurations under transformers 5"
fi

echo "== Gemma 3 configurations no bundled model has (references made now by transformers 5)"
if [ -x "$PY5" ]; then
  # Bidirectional (EmbeddingGemma-like) and causal; hidden 48 in 6 query heads over 2 key heads of 12, 5 layers
  # with every 3rd global (sliding_window_pattern, the transformers 4 keys), window 6, attn_logit_softcapping set
  # (transformers' Gemma 3 ignores it), Gemma3ForCausalLM weights under model.
  for kind in bidirectional causal; do
    extra=(); [ "$kind" = causal ] && extra=(--causal)
    "$PY5" scripts/make_gemma3_model.py --out "$tmp/model-g-$kind" --softcap 3.0 --causal-lm --tf4-keys --seed 7 \
      "${extra[@]}" >/dev/null 2>&1
    "$PY5" scripts/generate_fixtures.py --model "$tmp/model-g-$kind" --texts fixtures/texts/unseen.jsonl \
      --texts fixtures/texts/edge.jsonl --out "$tmp/suite-g-$kind" >"$tmp/gen-g-$kind.log" 2>&1 || { cat "$tmp/gen-g-$kind.log"; exit 1; }
    passes "unseen Gemma 3 ($kind), every pipeline in f32" "$tmp/suite-g-$kind" "$tmp/rep-g-$kind" "$tmp/g-$kind.log"
  done
else
  echo "skipped: no .venv-ref5 (bash scripts/setup-reference5-env.sh); transformers 4.56 cannot run EmbeddingGemma"
fi

echo
echo "systems: $((ran - failures)) passed, $failures failed"
[ "$failures" = 0 ]
