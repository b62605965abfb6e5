use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::cell::RefCell;
use std::collections::HashMap;
use xiaoguan_kb::definition::{self, KbDefinition};
use xiaoguan_kb::{IngestOptions, KnowledgeBase, SearchOptions, StoreBackend, StoreSettings, VectorSource};
use xiaoguan_models::registry::ModelRegistry;
use xiaoguan_store::Filter;

#[derive(Args, Debug, Clone)]
pub struct KbPaths {
    /// Folder of knowledge-base definitions (`<id>/kb.toml`).
    #[arg(long, env = "XIAOGUAN_KB_DIR", default_value = "knowledge-bases", global = true)]
    pub kb_dir: PathBuf,
    /// Root of the source data (default: ../shared/data beside the checkout).
    #[arg(long, env = "XIAOGUAN_DATA_ROOT", global = true)]
    pub data_root: Option<PathBuf>,
    /// Keep every knowledge base on this Qdrant server (gRPC address, `http://host:6334`)
    /// instead of what `[store]` of the settings says.
    #[arg(long, env = "XIAOGUAN_QDRANT_URL", global = true)]
    pub qdrant_url: Option<String>,
}

impl KbPaths {
    /// The store backend: `[store]` of the settings, or the server `--qdrant-url` names.
    /// Connecting checks the server answers: an unreachable one fails here, with its address.
    pub fn backend(&self, store: &StoreSettings) -> anyhow::Result<StoreBackend> {
        Ok(store.clone().with_url_override(self.qdrant_url.clone()).connect()?)
    }

    pub fn data_root(&self) -> PathBuf {
        if let Some(d) = &self.data_root {
            return d.clone();
        }
        let checkout = std::fs::canonicalize(&self.kb_dir).ok().and_then(|p| p.parent().map(Path::to_path_buf));
        checkout.map(|c| c.join("../shared/data")).unwrap_or_else(|| PathBuf::from("../shared/data"))
    }
}

#[derive(Subcommand, Debug)]
pub enum KbCmd {
    /// Every defined knowledge base with its version, documents and chunks.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Build or update knowledge bases incrementally (only new and changed documents are embedded).
    Ingest {
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long, default_value_t = 32)]
        batch_docs: usize,
        #[arg(long, short)]
        quiet: bool,
        /// Embed every document even when another ingested KB already holds its vectors (for
        /// measuring embedding throughput).
        #[arg(long)]
        no_reuse: bool,
    },
    /// Hybrid search (dense + BM25) with citations.
    Search {
        id: String,
        query: String,
        #[arg(long, short = 'k', default_value_t = 5)]
        limit: usize,
        /// Payload filter (repeatable): FIELD=VALUE, FIELD>=VALUE or FIELD<=VALUE, e.g.
        /// --filter doc_type=law --filter article_no=16 --filter date<=2015-06-30
        #[arg(long = "filter")]
        filters: Vec<String>,
        #[command(flatten)]
        fusion: Fusion,
        #[arg(long)]
        json: bool,
    },
    /// Retrieval check on a question/answer file (JSON array or JSONL): recall@1, recall@k and MRR,
    /// a hit being a chunk whose text matches the expected answer (e.g. LawBench 1-1 article recall).
    Recall {
        id: String,
        file: PathBuf,
        #[arg(long, default_value = "question")]
        question_field: String,
        #[arg(long, default_value = "answer")]
        answer_field: String,
        /// Removed from the start of each expected answer.
        #[arg(long, default_value = "答案:")]
        strip_prefix: String,
        #[arg(long, short = 'k', default_value_t = 5)]
        k: usize,
        /// Write one line per question here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Plain hybrid search only (no title + article-number lookup).
        #[arg(long)]
        no_article_lookup: bool,
        #[command(flatten)]
        fusion: Fusion,
    },
    /// Version, documents, chunks, disk use, and which backend holds it.
    Stats { id: String },
    /// Copy a knowledge base between the embedded store and a Qdrant server, points with their
    /// vectors (nothing is embedded again): `--to URL` (embedded → server) or `--from URL`
    /// (server → embedded).
    Migrate {
        id: String,
        /// The server to copy the embedded KB to (gRPC address, `http://host:6334`).
        #[arg(long, conflicts_with = "from", required_unless_present = "from")]
        to: Option<String>,
        /// The server to copy the KB from, into the embedded store.
        #[arg(long)]
        from: Option<String>,
        /// Overwrite what the target already holds of this KB.
        #[arg(long)]
        replace: bool,
        #[arg(long, short)]
        quiet: bool,
    },
    /// Delete a knowledge base's index and state (the definition stays).
    Remove { id: String },
}

pub fn kbs_root(reg: &ModelRegistry) -> PathBuf {
    reg.store().home().join("kbs")
}

/// Files uploaded to a KB through the service; every ingest includes them.
pub fn uploads_dir(reg: &ModelRegistry, id: &str) -> PathBuf {
    reg.store().home().join("uploads").join(id)
}

pub fn open(reg: &ModelRegistry, backend: &StoreBackend, def: &KbDefinition) -> anyhow::Result<KnowledgeBase> {
    let embedder = reg.embedder(&def.embedder)?;
    Ok(KnowledgeBase::open_in(def, &kbs_root(reg), embedder, backend)?)
}

/// Weights of the dense and BM25 legs in the reciprocal-rank fusion (0 switches a leg off).
#[derive(Args, Debug, Clone)]
pub struct Fusion {
    /// Weight of the dense (e5) leg.
    #[arg(long, default_value_t = 1.0)]
    dense_weight: f32,
    /// Weight of the BM25 leg.
    #[arg(long, default_value_t = 1.0)]
    bm25_weight: f32,
}

/// The other ingested KBs with the same embedder, as sources of stored vectors. Their committed
/// states are read up front (no lock); a KB is opened only when it holds a version the ingest
/// needs, so unrelated KBs stay free for a running service. One held by another process is left
/// out with a note.
struct Donors<'a> {
    reg: &'a ModelRegistry,
    backend: &'a StoreBackend,
    candidates: Vec<(KbDefinition, xiaoguan_kb::KbState)>,
    opened: RefCell<HashMap<String, Option<KnowledgeBase>>>,
}

impl<'a> Donors<'a> {
    fn new(reg: &'a ModelRegistry, backend: &'a StoreBackend, defs: &[KbDefinition], target: &KbDefinition) -> Self {
        let candidates = defs
            .iter()
            .filter(|d| d.id != target.id && d.embedder == target.embedder)
            .filter_map(|d| backend.load_state(&kbs_root(reg), &d.id).ok().flatten().map(|st| (d.clone(), st)))
            .collect();
        Self { reg, backend, candidates, opened: RefCell::new(HashMap::new()) }
    }
}

impl VectorSource for Donors<'_> {
    fn chunk_vectors(&self, key: &str, hash: &str, chunks: usize, embedder: &str) -> Option<Vec<Vec<f32>>> {
        for (def, state) in &self.candidates {
            if !state.documents.get(key).is_some_and(|d| d.hash == hash && d.chunks == chunks) {
                continue;
            }
            let mut opened = self.opened.borrow_mut();
            let kb = opened.entry(def.id.clone()).or_insert_with(|| match open(self.reg, self.backend, def) {
                Ok(kb) => Some(kb),
                Err(e) => {
                    eprintln!("note: not reusing vectors from '{}': {e:#}", def.id);
                    None
                }
            });
            if let Some(v) = kb.as_ref().and_then(|kb| kb.chunk_vectors(key, hash, chunks, embedder)) {
                return Some(v);
            }
        }
        None
    }
}

pub fn parse_filters(items: &[String]) -> anyhow::Result<Filter> {
    let mut f = Filter::none();
    for item in items {
        f = f.and(xiaoguan_kb::filters::parse_filter(item)?);
    }
    Ok(f)
}

pub fn run(reg: &ModelRegistry, paths: &KbPaths, settings_file: &Path, cmd: &KbCmd) -> anyhow::Result<()> {
    let defs = definition::load_all(&paths.kb_dir)?;
    let store = StoreSettings::from_file(settings_file)?;
    if let KbCmd::Migrate { id, to, from, replace, quiet } = cmd {
        return migrate(reg, paths, &store, &defs, id, to.as_deref().or(from.as_deref()).unwrap_or_default(), to.is_some(), *replace, !quiet);
    }
    let backend = paths.backend(&store)?;
    match cmd {
        KbCmd::Migrate { .. } => unreachable!("handled above"),
        KbCmd::List { json } => {
            let mut rows = Vec::new();
            for d in &defs {
                let state = backend.load_state(&kbs_root(reg), &d.id)?;
                rows.push(serde_json::json!({
                    "id": d.id, "title": d.title, "domain": d.domain, "embedder": d.embedder,
                    "version": state.as_ref().map(|s| s.version), "documents": state.as_ref().map(|s| s.documents.len()),
                    "chunks": state.as_ref().map(|s| s.total_chunks()), "updated_at": state.as_ref().map(|s| s.updated_at.clone()),
                    "description": d.description, "backend": backend.describe(),
                }));
            }
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:<18} {:<14} {:>8} {:>10} {:>8}", "ID", "TITLE", "VERSION", "DOCUMENTS", "CHUNKS");
                for r in &rows {
                    let n = |k: &str| r[k].as_u64().map(|v| v.to_string()).unwrap_or_else(|| "-".into());
                    println!("{:<18} {:<14} {:>8} {:>10} {:>8}", r["id"].as_str().unwrap_or(""), r["title"].as_str().unwrap_or(""), n("version"), n("documents"), n("chunks"));
                }
            }
            Ok(())
        }
        KbCmd::Ingest { ids, batch_docs, quiet, no_reuse } => {
            // SIGINT/SIGTERM: the ingest stops at the next batch boundary (a second one: at once).
            let interrupt = xiaoguan_server::Interrupt::watch();
            let control = xiaoguan_kb::ingest::IngestControl { cancel: Some(interrupt.flag.clone()) };
            for id in ids {
                let def = definition::find(&defs, id)?;
                let kb = open(reg, &backend, def)?;
                let donors = Donors::new(reg, &backend, &defs, def);
                let sources: Vec<&dyn VectorSource> = if *no_reuse { Vec::new() } else { vec![&donors] };
                let opts = IngestOptions { data_root: paths.data_root(), progress: !quiet, batch_docs: *batch_docs, max_batches: None, uploads_dir: Some(uploads_dir(reg, id)) };
                let r = kb.ingest_controlled(&opts, &sources, &control)?;
                drop(donors);
                for q in &r.quarantined {
                    eprintln!("  quarantined {}: {} (moved aside; not read again until replaced)", q.path, q.reason);
                }
                if r.cancelled {
                    eprintln!(
                        "error: ingest of '{id}' stopped by {} at a batch boundary: version {}, {} chunks embedded before it stopped; the knowledge base is at its last commit — run `xiaoguan kb ingest {id}` again to resume",
                        interrupt.signal().unwrap_or("a signal"), r.version, r.chunks_embedded
                    );
                    drop(kb);
                    std::process::exit(interrupt.exit_code());
                }
                let secs = r.seconds.max(1e-9);
                println!(
                    "{id}: version {}, {} documents ({} added, {} changed, {} unchanged, {} removed), {} chunks embedded, {} reused from other KBs, {} chunks in total, {} files skipped, {:.1}s ({:.1} docs/s, {:.1} chunks/s, {:.1} embedded/s)",
                    r.version, r.documents, r.added, r.changed, r.unchanged, r.removed, r.chunks_embedded, r.chunks_reused, r.total_chunks,
                    r.skipped.len(), r.seconds, (r.added + r.changed) as f64 / secs, (r.chunks_embedded + r.chunks_reused) as f64 / secs, r.chunks_embedded as f64 / secs
                );
                for s in r.skipped.iter().filter(|s| !r.quarantined.iter().any(|q| q.path == s.path)) {
                    eprintln!("  skipped {}: {}", s.path, s.reason);
                }
            }
            Ok(())
        }
        KbCmd::Search { id, query, limit, filters, fusion, json } => {
            let def = definition::find(&defs, id)?;
            let kb = open(reg, &backend, def)?;
            let opts = SearchOptions { limit: *limit, filter: parse_filters(filters)?, dense_weight: fusion.dense_weight, bm25_weight: fusion.bm25_weight, ..Default::default() };
            let started = std::time::Instant::now();
            let hits = kb.search(query, &opts)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&hits)?);
                return Ok(());
            }
            for (i, h) in hits.iter().enumerate() {
                let no = h.doc_no.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
                println!("[{}] {:.4} {}{} [{}]", i + 1, h.score, h.heading_path, no, h.via);
                let snippet: String = h.text.chars().take(160).collect();
                println!("    {}", snippet.replace('\n', " "));
            }
            eprintln!("{} hits in {:.0} ms", hits.len(), started.elapsed().as_secs_f64() * 1e3);
            Ok(())
        }
        KbCmd::Recall { id, file, question_field, answer_field, strip_prefix, k, out, no_article_lookup, fusion } => {
            let def = definition::find(&defs, id)?;
            let kb = open(reg, &backend, def)?;
            let rows = read_rows(file)?;
            let mut lines = Vec::new();
            let (mut at1, mut atk, mut rr) = (0usize, 0usize, 0f64);
            // Query embedding and search (hybrid + article lookup) are timed apart.
            let (mut embed_ms, mut search_ms) = (Vec::new(), Vec::new());
            for (i, row) in rows.iter().enumerate() {
                let q = row.get(question_field).and_then(|v| v.as_str()).ok_or_else(|| {
                    anyhow::anyhow!(xiaoguan_kb::KbError::InvalidQuery(format!("{}: row {} has no string field '{question_field}'", file.display(), i + 1)))
                })?;
                let a = row.get(answer_field).and_then(|v| v.as_str()).unwrap_or_default();
                let expected = a.strip_prefix(strip_prefix.as_str()).unwrap_or(a);
                let started = std::time::Instant::now();
                let dense = kb.embed_query(q)?;
                embed_ms.push(started.elapsed().as_secs_f64() * 1e3);
                let started = std::time::Instant::now();
                let hits = kb.search_embedded(q, &dense, &SearchOptions { limit: *k, article_lookup: !no_article_lookup, dense_weight: fusion.dense_weight, bm25_weight: fusion.bm25_weight, ..Default::default() })?;
                search_ms.push(started.elapsed().as_secs_f64() * 1e3);
                let rank = hits.iter().position(|h| text_matches(&h.text, expected));
                if rank == Some(0) {
                    at1 += 1;
                }
                if let Some(r) = rank {
                    atk += 1;
                    rr += 1.0 / (r as f64 + 1.0);
                }
                lines.push(serde_json::json!({"question": q, "rank": rank.map(|r| r + 1), "top": hits.first().map(|h| h.heading_path.clone())}));
            }
            let n = rows.len().max(1) as f64;
            let pct = |v: &[f64], p: f64| xiaoguan_eval::metrics::percentile(v, p);
            println!(
                "{}",
                serde_json::json!({"kb": id, "chunks": kb.state().total_chunks(), "questions": rows.len(), "recall@1": at1 as f64 / n, format!("recall@{k}"): atk as f64 / n,
                    "mrr": rr / n, "search_ms_p50": pct(&search_ms, 50.0), "search_ms_p99": pct(&search_ms, 99.0),
                    "query_embedding_ms_p50": pct(&embed_ms, 50.0)})
            );
            if let Some(path) = out {
                let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
                std::fs::write(path, text).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            }
            Ok(())
        }
        KbCmd::Stats { id } => {
            let def = definition::find(&defs, id)?;
            let kb = open(reg, &backend, def)?;
            let s = kb.state();
            let points = kb.store().count(&Filter::none())?;
            let mut by_type = std::collections::BTreeMap::new();
            // The definition's document types, and files uploaded through the service.
            let mut types: Vec<&str> = def.sources.iter().map(|s| s.doc_type.as_str()).collect();
            types.push("upload");
            types.sort_unstable();
            types.dedup();
            for t in types {
                let n = kb.store().count(&Filter::eq("doc_type", t))?;
                if n > 0 {
                    by_type.insert(t, n);
                }
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "id": def.id, "version": s.version, "updated_at": s.updated_at, "embedder": s.embedder,
                    "documents": s.documents.len(), "chunks": s.total_chunks(), "points": points,
                    "points_by_doc_type": by_type, "pending": s.pending, "disk_bytes": super::disk_usage(&kb.dir),
                    "backend": kb.backend_description(), "revision": s.revision,
                    "quarantine": xiaoguan_kb::ingest::list_quarantine(&kb.dir),
                }))?
            );
            Ok(())
        }
        KbCmd::Remove { id } => {
            let def = definition::find(&defs, id)?;
            if backend.remove(&kbs_root(reg), &def.id)? {
                println!("{id}: removed from {}", backend.describe());
            } else {
                println!("{id}: nothing to remove");
            }
            Ok(())
        }
    }
}

/// `kb migrate`: the KB opened on both backends, then copied (see `xiaoguan_kb::migrate`).
#[allow(clippy::too_many_arguments)]
fn migrate(reg: &ModelRegistry, paths: &KbPaths, store: &StoreSettings, defs: &[KbDefinition], id: &str, url: &str, to_server: bool, replace: bool, progress: bool) -> anyhow::Result<()> {
    let def = definition::find(defs, id)?;
    let server = store.clone().with_url_override(Some(url.to_string()));
    let server = paths.backend(&server)?;
    let embedded = StoreBackend::Embedded;
    let (src_backend, dst_backend) = if to_server { (&embedded, &server) } else { (&server, &embedded) };
    if src_backend.load_state(&kbs_root(reg), id)?.is_none() {
        anyhow::bail!(xiaoguan_kb::KbError::NotIngested(format!("{id} (in {})", src_backend.describe())));
    }
    let src = open(reg, src_backend, def)?;
    let dst = open(reg, dst_backend, def)?;
    let r = xiaoguan_kb::migrate::copy(&src, &dst, replace, progress)?;
    println!(
        "{id}: version {} ({} documents, {} points with their vectors) copied from {} to {} in {:.1}s",
        r.version, r.documents, r.points, r.from, r.to, r.seconds
    );
    Ok(())
}

fn read_rows(path: &Path) -> anyhow::Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let bad = |msg: String| anyhow::anyhow!(xiaoguan_kb::KbError::InvalidQuery(format!("{}: {msg}", path.display())));
    if text.trim_start().starts_with('[') {
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("line {}: {e}", e.line())))?;
        v.as_array()
            .ok_or_else(|| bad("not an array".into()))?
            .iter()
            .enumerate()
            .map(|(i, r)| r.as_object().cloned().ok_or_else(|| bad(format!("record {} is not an object", i + 1))))
            .collect()
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| match serde_json::from_str::<serde_json::Value>(l) {
                Ok(serde_json::Value::Object(m)) => Ok(m),
                Ok(_) => Err(bad(format!("line {}: not an object", i + 1))),
                Err(e) => Err(bad(format!("line {}: {e}", i + 1))),
            })
            .collect()
    }
}

/// Letters and digits only: punctuation and spacing differ between sources of the same text.
fn squeeze(s: &str) -> Vec<char> {
    s.chars().filter(|c| c.is_alphanumeric()).collect()
}

/// A retrieved chunk matches the expected text when one contains the other (after squeezing)
/// or their character bigrams overlap by at least 60% (Dice).
pub fn text_matches(chunk: &str, expected: &str) -> bool {
    let (a, b) = (squeeze(chunk), squeeze(expected));
    if a.len() < 4 || b.len() < 4 {
        return !a.is_empty() && a == b;
    }
    let (sa, sb): (String, String) = (a.iter().collect(), b.iter().collect());
    // Containment counts when the shorter text is a substantial part of the longer one
    // (a split article's part), not a short phrase that happens to occur in it.
    let (short, long) = if a.len() <= b.len() { (a.len(), b.len()) } else { (b.len(), a.len()) };
    if (sa.contains(&sb) || sb.contains(&sa)) && short * 10 >= long * 3 {
        return true;
    }
    let grams = |v: &[char]| v.windows(2).map(|w| (w[0], w[1])).collect::<std::collections::HashSet<_>>();
    let (ga, gb) = (grams(&a), grams(&b));
    let inter = ga.intersection(&gb).count() as f64;
    2.0 * inter / (ga.len() + gb.len()) as f64 >= 0.6
}

#[cfg(test)]
mod tests {
    use super::text_matches;

    #[test]
    fn answer_matching() {
        assert!(text_matches("第十六条 参加基本养老保险的个人，按月领取基本养老金。", "参加基本养老保险的个人,按月领取基本养老金"));
        assert!(text_matches("按月领取基本养老金。", "参加基本养老保险的个人，按月领取基本养老金。"));
        assert!(!text_matches("建筑工程开工前建设单位应当申请领取施工许可证", "参加基本养老保险的个人按月领取基本养老金"));
        assert!(!text_matches("", "x"));
    }
}
