#!/usr/bin/env bash
# The whole test suite: unit tests on tiny models the tests build themselves, then the
# real-model tests (the default models are pulled first).
set -euo pipefail
source "$(dirname "$0")/env.sh"
ensure_system_packages
cd "$REPO_ROOT"
cargo build -p xiaoguan-cli
"$CARGO_TARGET_DIR/debug/xiaoguan" models pull --quiet
export XIAOGUAN_REQUIRE_MODELS=1   # real-model tests fail (not skip) when the models are missing
LOG="$(mktemp)"
set +e
cargo test --workspace 2>&1 | tee "$LOG"
STATUS=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (cargo prints one per test binary, the last often "0 passed").
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$LOG"
rm -f "$LOG"
exit "$STATUS"
