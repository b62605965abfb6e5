#!/usr/bin/env bash
# End-to-end test of the whole service: the real binary on 127.0.0.1 with the real embedder, a
# knowledge base and a classifier built here, driven over HTTP (curl, incl. SSE), by the
# unmodified `openai` Python client, and through the agent console in headless Chromium.
# Needs: the binary built, the default models pulled (scripts/test.sh does both).
set -euo pipefail
source "$(dirname "$0")/../../scripts/env.sh"
cd "$REPO_ROOT"
X="$CARGO_TARGET_DIR/debug/xiaoguan"
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "e2e FAILED: $*" >&2; [ -f "$WORK/server.log" ] && tail -20 "$WORK/server.log" >&2; exit 1; }

# A private home: the pulled models are shared (read-only), KBs/classifiers/feedback are fresh.
export XIAOGUAN_HOME_SHARED="$XIAOGUAN_HOME"
HOME_E2E="$WORK/home"
mkdir -p "$HOME_E2E"
ln -s "$XIAOGUAN_HOME_SHARED/models" "$HOME_E2E/models"
export XIAOGUAN_HOME="$HOME_E2E"

"$X" kb ingest guides --quiet >/dev/null || fail "ingest guides"
python3 - "$WORK/dept.jsonl" <<'PY'
import json, sys
rows = []
for i in range(30):
    rows.append({"id": f"s{i}", "text": f"失业保险金怎么领取，第{i}次咨询社保待遇", "dept": "人力资源社会保障局"})
    rows.append({"id": f"g{i}", "text": f"小区燃气管道老化漏气，第{i}次反映安全问题", "dept": "城市管理委"})
with open(sys.argv[1], "w") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
PY
"$X" classify train --data "$WORK/dept.jsonl" --text-field text --label-field dept --id-field id --name department --json >/dev/null || fail "classify train"
cat > "$WORK/assist.toml" <<EOT
kbs = ["guides"]
rules = "$REPO_ROOT/rules/dispatch.toml"
[classifiers]
department = "department"
EOT
AGENT_KEY="xg-e2e-agent-key"
INTEGRATOR_KEY="xg-e2e-integrator-key"
SUPERVISOR_KEY="xg-e2e-supervisor-key"
REVIEWER_KEY="xg-e2e-reviewer-key"
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
cat > "$WORK/keys.toml" <<EOT
[[keys]]
id = "agent"
sha256 = "$(sha "$AGENT_KEY")"
role = "agent"
kbs = ["guides"]
[[keys]]
id = "integrator"
sha256 = "$(sha "$INTEGRATOR_KEY")"
role = "integrator"
kbs = ["guides"]
[[keys]]
id = "supervisor"
sha256 = "$(sha "$SUPERVISOR_KEY")"
role = "supervisor"
kbs = ["guides"]
[[keys]]
id = "reviewer"
sha256 = "$(sha "$REVIEWER_KEY")"
role = "reviewer"
EOT
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
"$X" serve --bind "127.0.0.1:$PORT" --keys "$WORK/keys.toml" --config "$WORK/assist.toml" --no-generator >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 120); do
    curl -sf "$BASE/readyz" >/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited during startup"
    sleep 0.5
done
curl -sf "$BASE/readyz" | grep -q '"ready"' || fail "not ready"
AUTH=(-H "Authorization: Bearer $AGENT_KEY" -H "Content-Type: application/json")

# Plain HTTP: an answer with citations; 401 and 403; SSE to the end.
curl -sf "${AUTH[@]}" -d '{"question":"失业保险金最长能领多久？","mode":"extractive"}' "$BASE/v1/ask" >"$WORK/ask.json" || fail "ask"
python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); assert not a["handoff"] and a["citations"], a' "$WORK/ask.json" || fail "ask had no citations"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Content-Type: application/json" -d '{"question":"x"}' "$BASE/v1/ask"); [ "$code" = 401 ] || fail "no key gave $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $INTEGRATOR_KEY" -H "Content-Type: application/json" -d '{"text":"x"}' "$BASE/v1/tickets/assist"); [ "$code" = 403 ] || fail "integrator ticket gave $code"
code=$(curl -s -o /dev/null -w '%{http_code}' "${AUTH[@]}" -d '{not json' "$BASE/v1/ask"); [ "$code" = 400 ] || fail "bad JSON gave $code"
curl -sfN "${AUTH[@]}" -d '{"model":"auto","stream":true,"messages":[{"role":"user","content":"工伤认定申请的时限是多久？"}]}' "$BASE/v1/chat/completions" >"$WORK/sse.txt" || fail "sse"
tail -n 3 "$WORK/sse.txt" | grep -q 'data: \[DONE\]' || fail "the stream did not end with [DONE]"
grep -q '"finish_reason":"stop"' "$WORK/sse.txt" || fail "no final chunk"
grep -q '"citations"' "$WORK/sse.txt" || fail "no citations in the stream"

# The evaluation harness against the running service (its native API), as against any HTTP system.
printf '%s\n' '{"id":"1","q":"失业保险金最长能领多久？"}' '{"id":"2","q":"离婚后孩子抚养权归谁？"}' >"$WORK/e2e-suite.jsonl"
cat > "$WORK/e2e-suite.yaml" <<EOT
name: e2e-http
task: refusal
datasets:
  - {path: $WORK/e2e-suite.jsonl, expected: answer}
fields: {id: id, input: [q]}
system: {kind: native, api_key_env: E2E_KEY, mode: extractive}
EOT
E2E_KEY="$AGENT_KEY" "$X" eval run "$WORK/e2e-suite.yaml" --url "$BASE" --out "$WORK/eval" --resamples 50 -q >/dev/null || fail "eval over HTTP"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["items"]==2 and s["latency"]["errors"]==0, s' "$WORK/eval/e2e-http/summary.json" || fail "eval over HTTP had errors"

# The unmodified OpenAI client library.
VENV="$XIAOGUAN_HOME_SHARED/e2e-venv"
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
"$VENV/bin/python" -c 'import openai' 2>/dev/null || "$VENV/bin/python" -m pip install -q 'openai>=1.40,<3' || fail "pip install openai"
"$VENV/bin/python" "$REPO_ROOT/tests/e2e/openai_client.py" "$BASE/v1" "$AGENT_KEY" || fail "openai client"

# The agent console in headless Chromium.
NODE_DIR="$XIAOGUAN_HOME_SHARED/e2e-node"
if [ ! -d "$NODE_DIR/node_modules/playwright-core" ]; then
    mkdir -p "$NODE_DIR" && (cd "$NODE_DIR" && npm init -y >/dev/null && npm install --silent playwright-core@1 >/dev/null) || fail "npm install playwright-core"
fi
command -v chromium >/dev/null || fail "chromium is not installed (scripts/env.sh installs it)"
NODE_DIR="$NODE_DIR" node "$REPO_ROOT/tests/e2e/console.mjs" "$BASE" "$AGENT_KEY" "$WORK/console.png" "$SUPERVISOR_KEY" "$REVIEWER_KEY" || fail "console"
python3 - "$WORK/console.png" <<'PY' || fail "screenshot check"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h = struct.unpack(">II", data[16:24])
assert w >= 1000 and h >= 600, (w, h)
assert len(data) > 30_000, f"suspiciously small screenshot ({len(data)} bytes): blank page?"
print(f"screenshot {w}x{h}, {len(data)} bytes")
PY
[ -n "${E2E_SCREENSHOT:-}" ] && cp "$WORK/console.png" "$E2E_SCREENSHOT"
"$X" feedback export --out "$WORK/fb.jsonl" 2>/dev/null || fail "feedback export"
grep -q '"label":"accepted"' "$WORK/fb.jsonl" || fail "the console's accept did not reach the ticket store"
# The stored tickets: the console's correction was reviewed and is a training row now.
"$X" tickets export --out "$WORK/labelled.jsonl" 2>/dev/null || fail "tickets export"
grep -q '市住房和城乡建设局' "$WORK/labelled.jsonl" || fail "the reviewed ticket is not in the labelled export"
"$X" tickets stats >"$WORK/stats.json" || fail "tickets stats"
grep -q '"backend": "sqlite"' "$WORK/stats.json" || fail "tickets stats names no backend"

# Graceful shutdown: SIGTERM drains and exits 0.
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || fail "the server did not exit cleanly on SIGTERM"
SERVER_PID=""
grep -q "drained" "$WORK/server.log" || fail "no drain message"
echo "e2e: ok (HTTP, SSE, OpenAI client, console in Chromium, graceful shutdown)"
