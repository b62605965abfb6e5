use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use xiaoguan_kb::definition::{self, KbDefinition};
use xiaoguan_kb::{IngestOptions, KnowledgeBase, SearchOptions};
use xiaoguan_models::registry::ModelRegistry;
use xiaoguan_store::{Condition, Filter};

#[derive(Args, Debug, Clone)]
pub struct KbPaths {
    /// Folder of knowledge-base definitions (`<id>/kb.toml`).
    #[arg(long, env = "XIAOGUAN_KB_DIR", default_value = "knowledge-bases", global = true)]
    pub kb_dir: PathBuf,
    /// Root of the source data (default: ../shared/data beside the checkout).
    #[arg(long, env = "XIAOGUAN_DATA_ROOT", global = true)]
    pub data_root: Option<PathBuf>,
}

impl KbPaths {
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
    },
    /// Hybrid search (dense + BM25) with citations.
    Search {
        id: String,
        query: String,
        #[arg(long, short = 'k', default_value_t = 5)]
        limit: usize,
        /// Payload filter FIELD=VALUE (repeatable), e.g. --filter doc_type=law --filter article_no=16
        #[arg(long = "filter")]
        filters: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Version, documents, chunks, disk use.
    Stats { id: String },
    /// Delete a knowledge base's index and state (the definition stays).
    Remove { id: String },
}

pub fn kbs_root(reg: &ModelRegistry) -> PathBuf {
    reg.store().home().join("kbs")
}

pub fn open(reg: &ModelRegistry, def: &KbDefinition) -> anyhow::Result<KnowledgeBase> {
    let embedder = reg.embedder(&def.embedder)?;
    Ok(KnowledgeBase::open(def, &kbs_root(reg), embedder)?)
}

pub fn parse_filters(items: &[String]) -> anyhow::Result<Filter> {
    let mut f = Filter::none();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!(xiaoguan_kb::KbError::InvalidQuery(format!("filter '{item}' is not FIELD=VALUE"))))?;
        let value = v.parse::<i64>().map(serde_json::Value::from).unwrap_or_else(|_| serde_json::Value::from(v));
        f = f.and(Condition::Eq { field: k.trim().to_string(), value });
    }
    Ok(f)
}

fn dir_size(p: &Path) -> u64 {
    walk_size(p)
}

fn walk_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

pub fn run(reg: &ModelRegistry, paths: &KbPaths, cmd: &KbCmd) -> anyhow::Result<()> {
    let defs = definition::load_all(&paths.kb_dir)?;
    match cmd {
        KbCmd::List { json } => {
            let mut rows = Vec::new();
            for d in &defs {
                let state_path = kbs_root(reg).join(&d.id).join("state.json");
                let state = xiaoguan_kb::KbState::load(&state_path).ok().flatten();
                rows.push(serde_json::json!({
                    "id": d.id, "title": d.title, "domain": d.domain, "embedder": d.embedder,
                    "version": state.as_ref().map(|s| s.version), "documents": state.as_ref().map(|s| s.documents.len()),
                    "chunks": state.as_ref().map(|s| s.total_chunks()), "updated_at": state.as_ref().map(|s| s.updated_at.clone()),
                    "description": d.description,
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
        KbCmd::Ingest { ids, batch_docs, quiet } => {
            for id in ids {
                let def = definition::find(&defs, id)?;
                let kb = open(reg, def)?;
                let opts = IngestOptions { data_root: paths.data_root(), progress: !quiet, batch_docs: *batch_docs, max_batches: None };
                let r = kb.ingest(&opts)?;
                println!(
                    "{id}: version {}, {} documents ({} added, {} changed, {} unchanged, {} removed), {} chunks embedded, {} chunks in total, {} files skipped, {:.1}s ({:.1} docs/s, {:.1} chunks/s)",
                    r.version, r.documents, r.added, r.changed, r.unchanged, r.removed, r.chunks_embedded, r.total_chunks,
                    r.skipped.len(), r.seconds, (r.added + r.changed) as f64 / r.seconds.max(1e-9), r.chunks_embedded as f64 / r.seconds.max(1e-9)
                );
                for s in &r.skipped {
                    eprintln!("  skipped {}: {}", s.path, s.reason);
                }
            }
            Ok(())
        }
        KbCmd::Search { id, query, limit, filters, json } => {
            let def = definition::find(&defs, id)?;
            let kb = open(reg, def)?;
            let opts = SearchOptions { limit: *limit, filter: parse_filters(filters)?, ..Default::default() };
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
        KbCmd::Stats { id } => {
            let def = definition::find(&defs, id)?;
            let kb = open(reg, def)?;
            let s = kb.state();
            let points = kb.store().count(&Filter::none())?;
            let mut by_type = std::collections::BTreeMap::new();
            for t in ["law", "policy", "faq", "approval-item", "guide"] {
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
                    "points_by_doc_type": by_type, "pending": s.pending, "disk_bytes": dir_size(&kb.dir),
                }))?
            );
            Ok(())
        }
        KbCmd::Remove { id } => {
            let def = definition::find(&defs, id)?;
            let dir = kbs_root(reg).join(&def.id);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| anyhow::anyhow!("removing {}: {e}", dir.display()))?;
                println!("{id}: removed {}", dir.display());
            } else {
                println!("{id}: nothing to remove");
            }
            Ok(())
        }
    }
}
