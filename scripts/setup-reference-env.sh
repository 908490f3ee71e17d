#!/usr/bin/env bash
# Installs the Python reference stack for transformers 4 (scripts/requirements-reference.txt: every pipeline,
# FlagEmbedding included) into .venv-ref. The transformers 5 stack: scripts/setup-reference5-env.sh.
# Needed to (re)generate references, and by scripts/check-systems.sh (part of the test command), which runs
# real systems under test on these libraries; the Rust tests read the committed references. ~7.5 GB on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${EMBCHECK_REF_VENV:-.venv-ref}
bash scripts/install-python-stack.sh "$venv" scripts/requirements-reference.txt
"$venv/bin/python" - <<'PY'
import torch, transformers, sentence_transformers, FlagEmbedding  # noqa: F401  fail here, not later
print("reference stack:", "torch", torch.__version__, "transformers", transformers.__version__,
      "sentence-transformers", sentence_transformers.__version__)
PY
