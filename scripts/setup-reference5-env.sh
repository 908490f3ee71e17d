#!/usr/bin/env bash
# Installs the current Python stack (scripts/requirements-reference5.txt: transformers 5, sentence-transformers 6,
# no FlagEmbedding) into .venv-ref5. Only needed to (re)generate the *-tf5 references; the tests use the committed ones.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${EMBCHECK_REF5_VENV:-.venv-ref5}
bash scripts/install-python-stack.sh "$venv" scripts/requirements-reference5.txt
"$venv/bin/python" - <<'PY'
import torch, transformers, sentence_transformers  # noqa: F401  fail here, not later
assert transformers.__version__.startswith("5."), transformers.__version__
print("reference stack (transformers 5):", "torch", torch.__version__, "transformers", transformers.__version__,
      "sentence-transformers", sentence_transformers.__version__)
PY
