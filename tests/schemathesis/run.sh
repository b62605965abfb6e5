#!/usr/bin/env bash
# Property-based API test: schemathesis (installed with pip into
# ~/.cache/xiaoguan/schemathesis-venv when missing) runs every check (`--checks all`) with a
# fixed seed and bounded examples against the running service's /openapi.json, and fails on
# any failure: a 5xx, a status or content type the document does not declare, a body that does
# not match its schema, invalid data accepted or valid data refused.
# The service is the real binary on a random 127.0.0.1 port, open mode (no keys), no generator,
# serving the project's `guides` KB built here with the pulled embedder (scripts/test.sh pulls it).
set -euo pipefail
source "$(dirname "$0")/../../scripts/env.sh"
cd "$REPO_ROOT"
X="$CARGO_TARGET_DIR/debug/xiaoguan"
VENV="${XIAOGUAN_HOME:-$HOME/.cache/xiaoguan}/schemathesis-venv"
ST_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-20}"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "schemathesis FAILED: $*" >&2; [ -f "$WORK/server.log" ] && tail -20 "$WORK/server.log" >&2; exit 1; }

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$ST_VERSION"; then
    python3 -m venv "$VENV" || fail "python3 -m venv (install python3-venv)"
    "$VENV/bin/pip" install -q "schemathesis==$ST_VERSION" || fail "pip install schemathesis==$ST_VERSION"
fi

# A private home: the pulled models are shared (read-only), the KB is built fresh.
HOME_ST="$WORK/home"
mkdir -p "$HOME_ST"
ln -s "$XIAOGUAN_HOME/models" "$HOME_ST/models"
export XIAOGUAN_HOME="$HOME_ST"
"$X" kb ingest guides --quiet >/dev/null || fail "ingest guides"
cat > "$WORK/assist.toml" <<EOT
kbs = ["guides"]
rules = "$REPO_ROOT/rules/dispatch.toml"
EOT
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
# Small body limits keep generated uploads cheap; waiting uploads answer 202 after 5 s.
cat > "$WORK/server.toml" <<EOT
bind = "127.0.0.1:$PORT"
assist = "assist.toml"
generator = false
[limits]
upload_wait_secs = 5
request_timeout_secs = 30
EOT
"$X" serve --server-config "$WORK/server.toml" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 240); do
    curl -sf "$BASE/readyz" >/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited during startup"
    sleep 0.5
done
curl -sf "$BASE/readyz" | grep -q '"ready"' || fail "not ready"

started=$(date +%s)
set +e
"$VENV/bin/schemathesis" --config-file tests/schemathesis/schemathesis.toml run "$BASE/openapi.json" \
    --checks all --seed 1 --max-examples "$EXAMPLES" --workers 1 \
    --generation-database none --request-timeout 60 --no-color \
    --report junit --report-dir "$WORK/report" >"$WORK/st.log" 2>&1
rc=$?
set -e
cat "$WORK/st.log"
echo "schemathesis: exit $rc in $(( $(date +%s) - started )) s"
[ "$rc" = 0 ] || fail "schemathesis found failures (above)"
# SIGTERM: the service exits within its bound (10 s), 0 or 3 (an upload's ingest was cancelled).
t0=$(date +%s%N)
kill -TERM "$SERVER_PID"
set +e; wait "$SERVER_PID"; code=$?; set -e
SERVER_PID=""
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "serve exited $code ${ms} ms after SIGTERM"
{ [ "$code" = 0 ] || [ "$code" = 3 ]; } || fail "serve exited $code after SIGTERM"
[ "$ms" -lt 11000 ] || fail "serve took ${ms} ms to exit after SIGTERM"
echo "schemathesis OK"
