#!/usr/bin/env bash
# The scale-out figures of the README, in one run on this machine (release build):
#   1. hybrid search over 100k points, embedded store vs a Qdrant server (`bench store --qdrant`);
#   2. ingest of `social-insurance` (every chunk embedded) into the embedded store and into the server;
#   3. /v1/search throughput of one service on the embedded KB, one replica on the server, two replicas.
# The server is ../shared/bin/qdrant (or XIAOGUAN_QDRANT_BIN) on 127.0.0.1 with random ports and a
# temp folder, stopped by PID at the end. Models come from the usual cache (`xiaoguan pull` first);
# KBs are built in a temp home so nothing of yours is touched. Output: JSON lines on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release -p xiaoguan-cli >&2
BIN="$CARGO_TARGET_DIR/release/xiaoguan"
QDRANT="${XIAOGUAN_QDRANT_BIN:-$(cd .. && pwd)/shared/bin/qdrant}"
[ -x "$QDRANT" ] || { echo "the Qdrant server binary is missing: expected $QDRANT (or set XIAOGUAN_QDRANT_BIN)" >&2; exit 1; }
SECONDS_PER_RUN="${SECONDS_PER_RUN:-30}"
POINTS="${POINTS:-100000}"

WORK="$(mktemp -d "$XIAOGUAN_HOME/scale-out-XXXXXX")"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url, seconds
    local deadline=$((SECONDS + $2))
    until curl -fsS -o /dev/null "$1" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || { echo "$1 did not answer within $2 s" >&2; exit 1; }
        sleep 0.2
    done
}

echo "== 1. store: $POINTS points, embedded vs server" >&2
"$BIN" bench store --points "$POINTS" --qdrant --data-root ../shared/data | tail -1

# A home of our own: the models of the usual cache, no KBs.
export XIAOGUAN_HOME="$WORK/home"
mkdir -p "$XIAOGUAN_HOME"
for d in models classifiers; do
    [ -e "$HOME/.cache/xiaoguan/$d" ] && ln -s "$HOME/.cache/xiaoguan/$d" "$XIAOGUAN_HOME/$d"
done
HTTP_PORT=$(free_port); GRPC_PORT=$(free_port)
mkdir -p "$WORK/qdrant/storage"
(cd "$WORK/qdrant" && QDRANT__SERVICE__HOST=127.0.0.1 QDRANT__SERVICE__HTTP_PORT=$HTTP_PORT QDRANT__SERVICE__GRPC_PORT=$GRPC_PORT \
    QDRANT__STORAGE__STORAGE_PATH="$WORK/qdrant/storage" QDRANT__STORAGE__SNAPSHOTS_PATH="$WORK/qdrant/snapshots" \
    QDRANT__TELEMETRY_DISABLED=true QDRANT__LOG_LEVEL=WARN exec "$QDRANT" >"$WORK/qdrant/log" 2>&1) &
PIDS+=($!)
wait_http "http://127.0.0.1:$HTTP_PORT/readyz" 60
URL="http://127.0.0.1:$GRPC_PORT"

echo "== 2. ingest social-insurance: embedded, then the server" >&2
ingest() { # env assignments
    local line
    line=$(env "$@" "$BIN" kb ingest social-insurance --no-reuse --quiet | tail -1)
    python3 -c 'import json,sys; print(json.dumps({"ingest": sys.argv[1], "env": sys.argv[2]}, ensure_ascii=False))' "$line" "$*"
}
ingest XIAOGUAN_QDRANT_URL=
ingest XIAOGUAN_QDRANT_URL="$URL"

echo "== 3. /v1/search: one embedded service, one and two replicas on the server" >&2
serve() { # env assignments; sets SERVE_PORT and SERVE_PID
    SERVE_PORT=$(free_port)
    env "$@" "$BIN" serve --bind "127.0.0.1:$SERVE_PORT" --no-generator >"$WORK/serve-$SERVE_PORT.log" 2>&1 &
    SERVE_PID=$!
    PIDS+=("$SERVE_PID")
}
load() { # label, urls...
    local label=$1; shift
    local args=()
    for u in "$@"; do args+=(--url "$u"); done
    echo "{\"run\": \"$label\", \"result\": $("$BIN" bench http --route search --concurrency 4 --seconds "$SECONDS_PER_RUN" --json "${args[@]}")}"
}
serve XIAOGUAN_QDRANT_URL=
wait_http "http://127.0.0.1:$SERVE_PORT/readyz" 120
load "one service, embedded" "http://127.0.0.1:$SERVE_PORT"
kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true
serve XIAOGUAN_QDRANT_URL="$URL"; P1=$SERVE_PORT
serve XIAOGUAN_QDRANT_URL="$URL"; P2=$SERVE_PORT
wait_http "http://127.0.0.1:$P1/readyz" 120
wait_http "http://127.0.0.1:$P2/readyz" 120
load "one replica on the server" "http://127.0.0.1:$P1"
load "two replicas on the server" "http://127.0.0.1:$P1" "http://127.0.0.1:$P2"
