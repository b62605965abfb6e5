#!/usr/bin/env bash
# The main job on the embedded default: build, pull the default models, build the knowledge
# bases (incrementally: later runs only embed what changed), train the ticket classifiers, answer a
# question with citations, and start the service.
set -euo pipefail
source "$(dirname "$0")/env.sh"
ensure_system_packages
cd "$REPO_ROOT"
cargo build --release -p xiaoguan-cli
XG="$CARGO_TARGET_DIR/release/xiaoguan"
"$XG" models pull
"$XG" models list
KBS=(guides)
# The real-data knowledge bases need ../shared/data beside the checkout (or XIAOGUAN_DATA_ROOT):
# Dongguan's own documents (the 2025 一件事 分工表, the 一网通办2.0 work plan) are read from there too.
if [ -d "${XIAOGUAN_DATA_ROOT:-$REPO_ROOT/../shared/data}" ]; then
    KBS+=(one-thing dongguan-policy social-insurance project-filing enterprise-policy gov-faq)
fi
"$XG" kb ingest "${KBS[@]}"
"$XG" kb list
# The ticket classifiers are trained from the dev data (reruns reuse the cached embeddings).
if [ -d "${XIAOGUAN_DATA_ROOT:-$REPO_ROOT/../shared/data}" ]; then
    "$XG" classify train
fi
QUESTION="${1:-失业保险金最长能领多久？}"
# One grounded answer from the command line (extractive: fast, cited, nothing invented)…
"$XG" ask --mode extractive "$QUESTION"
# …then the service: 小莞 chat (OpenAI-compatible), ticket assist, the agent console at /.
# Open mode on loopback; give --keys FILE (see `xiaoguan keys new`) for roles and KB scopes.
echo "serving on http://${XIAOGUAN_BIND:-127.0.0.1:8080}/ (console), /v1/chat/completions, /v1/tickets/assist, /openapi.json" >&2
exec "$XG" serve --bind "${XIAOGUAN_BIND:-127.0.0.1:8080}"
