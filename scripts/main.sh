#!/usr/bin/env bash
# The main job on the embedded default: build, pull the default models, build the knowledge
# bases (incrementally: later runs only embed what changed), and answer a question with citations.
set -euo pipefail
source "$(dirname "$0")/env.sh"
ensure_system_packages
cd "$REPO_ROOT"
cargo build --release -p xiaoguan-cli
XG="$CARGO_TARGET_DIR/release/xiaoguan"
"$XG" models pull
"$XG" models list
KBS=(guides)
# The real-data knowledge bases need ../shared/data beside the checkout (or XIAOGUAN_DATA_ROOT).
if [ -d "${XIAOGUAN_DATA_ROOT:-$REPO_ROOT/../shared/data}" ]; then
    KBS+=(social-insurance project-filing enterprise-policy gov-faq)
fi
"$XG" kb ingest "${KBS[@]}"
"$XG" kb list
QUESTION="${1:-失业保险金最长能领多久？}"
# Until grounded answering lands, the answer is the cited passages themselves: the 0.5B generator
# alone answers this question wrongly (see README), and a wrong confident answer is the worst outcome.
for kb in "${KBS[@]:0:2}"; do "$XG" kb search "$kb" "$QUESTION" -k 3; done
