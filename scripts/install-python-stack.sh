#!/usr/bin/env bash
# install-python-stack.sh VENV REQUIREMENTS: makes VENV (if absent) and installs REQUIREMENTS into it, using as
# little disk as pip allows, because CI machines may have little free: no pip cache (the wheels are not kept
# next to what they unpack to), and torch with its CUDA libraries (~3 GB of wheels, ~6 GB unpacked) installed
# one wheel at a time, so the download peak is one wheel rather than all of them. Used by
# setup-reference-env.sh and setup-reference5-env.sh.
set -euo pipefail
venv=$1 reqs=$2
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# The unpacked stack is ~7.5 GB and the largest wheel ~1 GB: say so before pip fails halfway.
need_kb=$((9 * 1024 * 1024))
mkdir -p "$(dirname "$venv")"
avail_kb=$(df -Pk "$(dirname "$venv")" | awk 'NR == 2 {print $4}')
if [ ! -x "$venv/bin/python" ] && [ "${avail_kb:-0}" -lt "$need_kb" ]; then
  echo "error: the Python reference stack needs ~9 GB free on $(df -P "$(dirname "$venv")" | awk 'NR == 2 {print $6}'); $((avail_kb / 1024)) MB are" >&2
  exit 1
fi

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py=$venv/bin/python
"$py" -m pip install -q --upgrade pip

plan=$(mktemp)
trap 'rm -f "$plan"' EXIT
# pip reads PyPI's metadata files for the plan, without downloading the wheels.
"$py" -m pip install -q --dry-run --ignore-installed --report "$plan" -r "$reqs"
"$py" - "$plan" <<'PY' | while read -r req; do "$py" -m pip install -q --no-deps "$req"; done
import json, sys
for item in json.load(open(sys.argv[1]))["install"]:
    meta = item["metadata"]
    if meta["name"].lower().startswith(("nvidia-", "torch", "triton", "cuda-")):
        print(f'{meta["name"]}=={meta["version"]}')
PY
"$py" -m pip install -q -r "$reqs"
