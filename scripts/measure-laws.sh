#!/usr/bin/env bash
# Figures of the whole-corpus `laws` KB (issue: knowledge bases): build or resume it, then its size,
# LawBench 1-1 article recall with and without the title/article lookup, search latency apart from
# the query embedding, and peak memory while serving searches. Takes hours the first time on
# 2 cores (embedding-bound); an interrupted run resumes where it stopped.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"
cargo build --release -p xiaoguan-cli
X="$CARGO_TARGET_DIR/release/xiaoguan"
DATA="${XIAOGUAN_DATA_ROOT:-$REPO_ROOT/../shared/data}"
OUT="${1:-runs/laws}"
mkdir -p "$OUT"
"$X" kb ingest laws 2>&1 | tee "$OUT/ingest.txt"
"$X" kb stats laws | tee "$OUT/stats.json"
/usr/bin/time -v "$X" kb recall laws "$DATA/lawbench/zero_shot_1-1.json" --out "$OUT/recall-rows.jsonl" 2> "$OUT/recall.time" | tee "$OUT/recall.json"
grep -E "Maximum resident" "$OUT/recall.time"
"$X" kb recall laws "$DATA/lawbench/zero_shot_1-1.json" --no-article-lookup | tee "$OUT/recall-no-lookup.json"
"$X" eval run evals/lawbench-laws.yaml --out "$OUT/eval"
