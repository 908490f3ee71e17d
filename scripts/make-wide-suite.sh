#!/usr/bin/env bash
# Makes the wide-and-long suite at test time (its weights, ~140 MB, are never committed): a random XLM-R of
# BAAI/bge-m3's width (hidden 1024, 16 heads, FFN 4096, 2 layers, tiny-xlmr-m3's vocabulary), a copy with one
# weight matrix changed by 1e-4, one text of more than 8192 tokens, and their reference made by
# scripts/generate_fixtures.py with the Python libraries (FlagEmbedding's normalized CLS, max length 8192),
# under fixtures/wide/ (git-ignored but for MANIFEST). The weights are regenerated bit for bit: their sha256
# must equal fixtures/wide/MANIFEST, or this fails. Idempotent: an existing complete suite is kept.
#
#   bash scripts/make-wide-suite.sh           # needs .venv-ref (made here if absent)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-ref/bin/python ] || bash scripts/setup-reference-env.sh
PY=$PWD/.venv-ref/bin/python
W=fixtures/wide
SUITE=$W/suites/wide-xlmr-8192
if [ -s "$SUITE/reference.safetensors" ] && (cd $W && sha256sum --quiet -c MANIFEST); then
  echo "make-wide-suite: $SUITE is complete"
  exit 0
fi
"$PY" scripts/make_wide_model.py --out $W/models/wide-xlmr --seed 22 --layers 2 --texts 1 \
  --texts-out $W/texts-8192.jsonl --perturb 1e-4 --perturb-out $W/models/wide-xlmr-perturbed
(cd $W && sha256sum -c MANIFEST) || { echo "make-wide-suite: the regenerated weights differ from fixtures/wide/MANIFEST" >&2; exit 1; }
"$PY" scripts/generate_fixtures.py --model $W/models/wide-xlmr --texts $W/texts-8192.jsonl --out $SUITE \
  --max-length 8192 --pipelines normalized-cls --batch-size 1 --threads 2 --f64-sample 1 \
  --note "wide and long: a random XLM-R of bge-m3's width at 8192 tokens, made by scripts/make-wide-suite.sh"
