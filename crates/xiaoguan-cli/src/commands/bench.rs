//! `xiaoguan bench embed|generate`: throughput, latency and memory on this machine, printed as
//! text and as one JSON line (for scripts that compare against other engines).

use clap::{Args, Subcommand};
use std::time::Instant;
use xiaoguan_models::registry::ModelRegistry;
use xiaoguan_models::{Decoding, GenerateParams, TextKind};

/// Chinese government-service sentences of mixed length (the default benchmark texts).
pub const SAMPLE_TEXTS: &[&str] = &[
    "社保卡丢了怎么补办？",
    "社会保障卡挂失补领流程：持身份证到任一社保卡服务网点办理，也可通过穗好办APP在线申请。",
    "建筑工程施工许可证核发条件：已经办理该建筑工程用地批准手续，依法应当办理建设工程规划许可证的，已经取得建设工程规划许可证。",
    "灵活就业人员可以按月、按季或者按年缴纳基本养老保险费，缴费基数在全省统一的上下限之间自行选择。",
    "失业保险金的标准，不得低于城市居民最低生活保障标准。",
    "职工应当参加工伤保险，由用人单位缴纳工伤保险费，职工不缴纳工伤保险费。",
    "办理企业投资项目备案需要提交哪些材料？",
    "用人单位应当自用工之日起三十日内为其职工向社会保险经办机构申请办理社会保险登记。",
    "生育津贴按照职工所在用人单位上年度职工月平均工资计发，直接发放给个人。",
    "异地就医备案可以通过国家医保服务平台APP办理，备案后在就医地直接结算。",
    "创业担保贷款个人最高额度为30万元，贷款期限最长不超过3年，财政按规定给予贴息。",
    "小区物业乱收费，向哪个部门投诉？",
    "我家楼下的下水道堵了好几天了，污水溢到路面，麻烦尽快派人处理。",
    "一次性创业补贴申领对象包括在本市初次创办小微企业或从事个体经营、且自工商登记注册之日起正常运营6个月以上的人员。",
    "医疗保障基金使用监督管理条例规定，定点医药机构应当建立医疗保障基金使用内部管理制度。",
    "新车上牌一件事包括车辆购置税申报、机动车交通事故责任强制保险投保和机动车注册登记。",
];

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Embedding throughput (texts/s, tokens/s) and single-text latency.
    Embed(EmbedBench),
    /// Prefill and decode speed, time to first token.
    Generate(GenerateBench),
    /// Print the built-in benchmark texts, one per line (so other engines get the same input).
    Texts,
    /// Hybrid search latency, upsert rate, memory and disk of the embedded store at scale
    /// (random unit vectors, BM25 over real statute sentences when the data root is there).
    Store(StoreBench),
    /// Load test a running service (closed loop): throughput, latency percentiles, 429s, server memory.
    Http(super::load::HttpBench),
    /// The ticket store: assist + store throughput, analytics over a large store (time, memory).
    Tickets(super::bench_tickets::TicketsBench),
}

#[derive(Args, Debug)]
pub struct StoreBench {
    #[arg(long, default_value_t = 100_000)]
    pub points: usize,
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    #[arg(long, default_value_t = 500)]
    pub queries: usize,
    /// Statute markdown files whose sentences feed BM25 (default: the data root's lawrefbook_laws).
    #[arg(long, env = "XIAOGUAN_DATA_ROOT")]
    pub data_root: Option<std::path::PathBuf>,
    /// Also measure a Qdrant server in the same run: this one (gRPC address, `http://host:6334`)…
    #[arg(long)]
    pub qdrant_url: Option<String>,
    /// …or a throwaway server started from `shared/bin/qdrant` (XIAOGUAN_QDRANT_BIN) on loopback.
    #[arg(long, conflicts_with = "qdrant_url")]
    pub qdrant: bool,
}

#[derive(Args, Debug)]
pub struct EmbedBench {
    #[arg(long, default_value = "e5-small")]
    pub model: String,
    /// One text per line (default: built-in Chinese sentences).
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
    /// Times the text set is embedded.
    #[arg(long, default_value_t = 8)]
    pub rounds: usize,
}

#[derive(Args, Debug)]
pub struct GenerateBench {
    #[arg(long, default_value = "qwen2.5-coder-0.5b")]
    pub model: String,
    /// Approximate prompt length in tokens.
    #[arg(long, default_value_t = 1000)]
    pub prompt_tokens: usize,
    /// Tokens to decode (stop tokens are ignored so every run decodes this many).
    #[arg(long, default_value_t = 64)]
    pub new_tokens: usize,
}

pub fn run(reg: &ModelRegistry, cmd: &BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Embed(b) => embed(reg, b),
        BenchCmd::Generate(b) => generate(reg, b),
        BenchCmd::Store(b) => store(reg, b),
        BenchCmd::Http(b) => super::load::run(b),
        BenchCmd::Tickets(b) => super::bench_tickets::run(reg, b),
        BenchCmd::Texts => {
            for t in SAMPLE_TEXTS {
                println!("{t}");
            }
            Ok(())
        }
    }
}

fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

/// Peak resident memory of this process (VmHWM), in MB.
pub fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

/// Resident memory of this process now (VmRSS), in MB.
pub fn rss_mb() -> f64 {
    status_mb("VmRSS:")
}

fn status_mb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).map(String::from))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn avx() -> bool {
    xiaoguan_models::embed::kernels_use_avx()
}

fn embed(reg: &ModelRegistry, b: &EmbedBench) -> anyhow::Result<()> {
    let texts: Vec<String> = match &b.file {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(String::from)
            .collect(),
        None => SAMPLE_TEXTS.iter().map(|s| s.to_string()).collect(),
    };
    anyhow::ensure!(!texts.is_empty(), "no texts to embed");
    // Which encoder runs: the int8 kernels (with the ISA they chose) or candle's f32 BERT.
    let engine = xiaoguan_models::bert::engine_name(xiaoguan_models::qwen2::MatmulBackend::from_env());
    let load = Instant::now();
    let e = reg.embedder(&b.model)?;
    let load_ms = load.elapsed().as_secs_f64() * 1e3;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tokens: usize = refs.iter().map(|t| e.count_tokens(t, TextKind::Passage)).sum::<Result<usize, _>>()?;
    e.embed(&refs, TextKind::Passage)?; // warm-up
    let start = Instant::now();
    for _ in 0..b.rounds {
        e.embed(&refs, TextKind::Passage)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let n = (texts.len() * b.rounds) as f64;
    // Single-query latency (the search path).
    let mut lat = Vec::new();
    for t in refs.iter().take(8) {
        let s = Instant::now();
        e.embed(&[t], TextKind::Query)?;
        lat.push(s.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    let report = serde_json::json!({
        "bench": "embed", "engine": engine, "model": b.model, "threads": threads(), "avx": avx(),
        "texts": texts.len(), "rounds": b.rounds, "tokens_per_round": tokens,
        "texts_per_sec": n / secs, "tokens_per_sec": (tokens * b.rounds) as f64 / secs,
        "query_latency_ms_p50": lat[lat.len() / 2], "load_ms": load_ms, "peak_rss_mb": peak_rss_mb(), "rss_mb": rss_mb(),
    });
    println!(
        "embed {} ({engine}): {:.1} texts/s, {:.0} tokens/s ({} texts × {} rounds, {} threads, AVX {}), query latency p50 {:.1} ms, load {:.0} ms, RSS {:.0} MB (peak {:.0} MB, loading included)",
        b.model, report["texts_per_sec"].as_f64().unwrap_or(0.0), report["tokens_per_sec"].as_f64().unwrap_or(0.0),
        texts.len(), b.rounds, threads(), avx(), lat[lat.len() / 2], load_ms, rss_mb(), peak_rss_mb()
    );
    println!("{report}");
    Ok(())
}

fn generate(reg: &ModelRegistry, b: &GenerateBench) -> anyhow::Result<()> {
    let load = Instant::now();
    let g = reg.generator(&b.model)?;
    let load_ms = load.elapsed().as_secs_f64() * 1e3;
    // A long Chinese prompt of about the requested length.
    let mut body = String::new();
    let mut i = 0;
    while g.count_tokens(&body)? < b.prompt_tokens.saturating_sub(40) {
        body.push_str(SAMPLE_TEXTS[i % SAMPLE_TEXTS.len()]);
        body.push('\n');
        i += 1;
    }
    let messages = vec![
        xiaoguan_models::ChatMessage::new(xiaoguan_models::Role::System, "你是政务服务助手。"),
        xiaoguan_models::ChatMessage::new(xiaoguan_models::Role::User, format!("{body}\n请总结以上内容。")),
    ];
    let params = GenerateParams {
        max_new_tokens: b.new_tokens,
        decoding: Decoding::Greedy,
        ignore_stop: true,
        ..Default::default()
    };
    let r = g.generate(&messages, &params, &mut |_| true)?;
    let s = r.stats;
    // The backend the generator loaded with (the int8 kernels unless XIAOGUAN_MATMUL=candle).
    let engine = match xiaoguan_models::qwen2::MatmulBackend::from_env() {
        backend @ xiaoguan_models::qwen2::MatmulBackend::Int8 => xiaoguan_models::bert::engine_name(backend),
        xiaoguan_models::qwen2::MatmulBackend::Candle => "xiaoguan-candle-qmatmul".to_string(),
    };
    let report = serde_json::json!({
        "bench": "generate", "engine": engine, "model": b.model, "threads": threads(), "avx": avx(),
        "prompt_tokens": s.prompt_tokens, "generated_tokens": s.generated_tokens,
        "prefill_tokens_per_sec": s.prefill_tokens_per_sec(), "time_to_first_token_ms": s.time_to_first_token_ms,
        "decode_tokens_per_sec": s.decode_tokens_per_sec(), "load_ms": load_ms, "peak_rss_mb": peak_rss_mb(),
    });
    println!(
        "generate {}: prompt {} tokens, prefill {:.1} tok/s, first token {:.0} ms, decode {:.1} tok/s over {} tokens ({} threads, AVX {}), load {:.0} ms, peak RSS {:.0} MB",
        b.model, s.prompt_tokens, s.prefill_tokens_per_sec(), s.time_to_first_token_ms, s.decode_tokens_per_sec(),
        s.generated_tokens, threads(), avx(), load_ms, peak_rss_mb()
    );
    println!("{report}");
    Ok(())
}

fn store(reg: &ModelRegistry, b: &StoreBench) -> anyhow::Result<()> {
    use xiaoguan_store::{EdgeStore, QdrantServer, QdrantSettings};
    // Sentences of real statutes give BM25 a realistic vocabulary.
    let root = b.data_root.clone().unwrap_or_else(|| std::path::PathBuf::from("../shared/data"));
    let mut sentences: Vec<String> = Vec::new();
    for entry in walkdir_md(&root.join("lawrefbook_laws")).into_iter().take(400) {
        if let Ok(t) = std::fs::read_to_string(&entry) {
            sentences.extend(t.lines().filter(|l| l.starts_with('第') && l.chars().count() > 20).map(String::from));
        }
    }
    if sentences.is_empty() {
        sentences = SAMPLE_TEXTS.iter().map(|s| s.to_string()).collect();
    }
    let dir = tempdir_in(reg.store().home())?;
    let cfg = xiaoguan_kb::kb::store_config(b.dim);
    let mut reports = Vec::new();
    {
        let store = EdgeStore::open(&dir.join("store"), &cfg)?;
        reports.push(store_round("embedded", &store, b, &sentences, Some(&dir))?);
    }
    // The same points and queries (same seed) on a server, in the same run.
    let mut process = None;
    let url = match (&b.qdrant_url, b.qdrant) {
        (Some(u), _) => Some(u.clone()),
        (None, true) => {
            let p = xiaoguan_store::process::QdrantProcess::start(&dir.join("qdrant")).map_err(|e| anyhow::anyhow!("starting Qdrant: {e}"))?;
            let u = p.grpc_url();
            process = Some(p);
            Some(u)
        }
        _ => None,
    };
    if let Some(url) = url {
        let mut settings = QdrantSettings::new(url);
        settings.collection_prefix = format!("xiaoguan_bench_{}_", std::process::id());
        settings.timeout = std::time::Duration::from_secs(120);
        let server = QdrantServer::connect(settings)?;
        let store = server.open_collection("store", &cfg)?;
        let server_pid = process.as_ref().and_then(|p| p.pid());
        let mut r = store_round("qdrant-server", &store, b, &sentences, None)?;
        if let Some(pid) = server_pid {
            r["server_rss_mb"] = serde_json::json!(super::load::rss_mb(pid));
            r["server_disk_mb"] = serde_json::json!(super::disk_usage(&dir.join("qdrant")) as f64 / 1e6);
        }
        server.drop_collection("store")?;
        reports.push(r);
    }
    drop(process);
    println!("{}", serde_json::json!({"bench": "store", "points": b.points, "dim": b.dim, "threads": threads(), "backends": reports}));
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Load `b.points` points into `store`, then time `b.queries` hybrid searches with and without
/// a filter. The random stream is seeded the same for every backend.
fn store_round(name: &str, store: &dyn xiaoguan_store::VectorStore, b: &StoreBench, sentences: &[String], disk: Option<&std::path::Path>) -> anyhow::Result<serde_json::Value> {
    use xiaoguan_store::{Condition, Filter, HybridQuery, StorePoint};
    let mut rng = xiaoguan_models::fixtures::Rng::new(42);
    let unit = |rng: &mut xiaoguan_models::fixtures::Rng| {
        let v = rng.vec(b.dim, 1.0);
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    let started = Instant::now();
    let mut batch = Vec::new();
    for i in 0..b.points {
        let text = sentences[i % sentences.len()].clone();
        let mut payload = serde_json::Map::new();
        payload.insert("doc_id".into(), format!("doc{}", i / 50).into());
        payload.insert("doc_type".into(), (if i % 5 == 0 { "policy" } else { "law" }).into());
        payload.insert("article_no".into(), ((i % 50) as u64 + 1).into());
        payload.insert("text".into(), text.clone().into());
        batch.push(StorePoint { id: i as u64, dense: unit(&mut rng), bm25_text: text, payload });
        if batch.len() == 1000 {
            store.upsert(std::mem::take(&mut batch))?;
        }
    }
    store.upsert(batch)?;
    store.flush()?;
    let upsert_secs = started.elapsed().as_secs_f64();
    let opt = Instant::now();
    store.optimize()?;
    let optimize_secs = opt.elapsed().as_secs_f64();
    let mut lat_hybrid = Vec::new();
    let mut lat_filtered = Vec::new();
    for q in 0..b.queries {
        let text = sentences[(q * 7919) % sentences.len()].chars().take(20).collect::<String>();
        let mut hq = HybridQuery::new(unit(&mut rng), text, 10);
        let s = Instant::now();
        store.search(&hq)?;
        lat_hybrid.push(s.elapsed().as_secs_f64() * 1e3);
        hq.filter = Filter::eq("doc_type", "law").and(Condition::Range { field: "article_no".into(), gte: Some(1.0), lte: Some(20.0) });
        let s = Instant::now();
        store.search(&hq)?;
        lat_filtered.push(s.elapsed().as_secs_f64() * 1e3);
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    let report = serde_json::json!({
        "backend": name, "store": store.describe(),
        "upserts_per_sec": b.points as f64 / upsert_secs, "optimize_secs": optimize_secs,
        "hybrid_p50_ms": pct(&mut lat_hybrid, 0.5), "hybrid_p99_ms": pct(&mut lat_hybrid, 0.99),
        "filtered_hybrid_p50_ms": pct(&mut lat_filtered, 0.5), "filtered_hybrid_p99_ms": pct(&mut lat_filtered, 0.99),
        "disk_mb": disk.map(|d| super::disk_usage(d) as f64 / 1e6), "peak_rss_mb": peak_rss_mb(),
    });
    println!(
        "store {name}: {} points × {}-d: {:.0} upserts/s, optimize {:.1}s; hybrid p50 {:.2} ms p99 {:.2} ms; with filter p50 {:.2} ms p99 {:.2} ms",
        b.points, b.dim, report["upserts_per_sec"].as_f64().unwrap_or(0.0), optimize_secs,
        report["hybrid_p50_ms"].as_f64().unwrap_or(0.0), report["hybrid_p99_ms"].as_f64().unwrap_or(0.0),
        report["filtered_hybrid_p50_ms"].as_f64().unwrap_or(0.0), report["filtered_hybrid_p99_ms"].as_f64().unwrap_or(0.0),
    );
    Ok(report)
}

fn walkdir_md(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn tempdir_in(home: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let dir = home.join(format!("bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}
