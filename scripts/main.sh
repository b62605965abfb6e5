#!/usr/bin/env bash
# The main job on the embedded default: build, pull the default models, and answer a question.
set -euo pipefail
source "$(dirname "$0")/env.sh"
ensure_system_packages
cd "$REPO_ROOT"
cargo build --release -p xiaoguan-cli
XG="$CARGO_TARGET_DIR/release/xiaoguan"
"$XG" models pull
"$XG" models list
"$XG" embed --query "社保卡丢了怎么补办" "社会保障卡挂失补领流程" "建筑工程施工许可证核发条件"
"$XG" generate --stats "${1:-社保卡丢了怎么补办？请用中文简要回答。}"
