//! Incremental ingestion: read every source, hash each document, and re-embed only the new and
//! changed ones; delete the points of removed documents.
//!
//! Crash safety: a batch of documents is first marked pending in the state, its new points are
//! upserted and flushed, then the state commits the new hashes, and only then are the old points
//! deleted. Search shows only points whose hash the committed state holds, so a killed ingest
//! leaves the knowledge base answering from its last complete state; the next ingest cleans up
//! the pending documents and resumes (point ids are deterministic, so nothing is duplicated).
//! Deletes are flushed before the pending marks are cleared: an unflushed delete can be lost
//! to a kill (found by the kill test).

use crate::definition::{Base, KbDefinition, SourceSpec};
use crate::kb::KnowledgeBase;
use crate::readers::{read_file_with, SourceDoc};
use crate::state::{now_rfc3339, DocState};
use crate::{KbError, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;
use xiaoguan_models::TextKind;
use xiaoguan_store::{Condition, Filter, StorePoint, VectorStore};
use xiaoguan_text::{chunk_document, Chunk};

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub data_root: PathBuf,
    pub progress: bool,
    /// Documents committed together.
    pub batch_docs: usize,
    /// Stop after this many batches (tests use it to simulate an interrupted ingest).
    pub max_batches: Option<usize>,
    /// Files uploaded to this knowledge base (through the service): ingested with the sources,
    /// keyed `uploads/<name>`; removing a file removes its document.
    pub uploads_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct IngestReport {
    pub kb: String,
    pub version: u64,
    pub documents: usize,
    pub added: usize,
    pub changed: usize,
    pub unchanged: usize,
    pub removed: usize,
    pub chunks_embedded: usize,
    /// Chunks whose vectors were taken from another KB holding the same document version.
    pub chunks_reused: usize,
    pub total_chunks: usize,
    pub skipped: Vec<Skipped>,
    pub seconds: f64,
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
    /// The key of the file (or folder) that could not be read: the documents it held stay
    /// indexed as they were, rather than being taken for removed.
    #[serde(skip)]
    pub key: String,
}

impl Skipped {
    /// Whether the document `key` came from this file (records add `#id`) or folder.
    fn covers(&self, key: &str) -> bool {
        key.strip_prefix(self.key.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with(['#', '/']))
    }
}

fn glob_set(patterns: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| KbError::InvalidQuery(format!("bad glob {p}: {e}")))?);
    }
    b.build().map_err(|e| KbError::InvalidQuery(e.to_string()))
}

/// The folder to walk for a pattern: its leading components without wildcards.
fn literal_prefix(pattern: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for part in pattern.split('/') {
        if part.contains(['*', '?', '[', '{']) {
            break;
        }
        out.push(part);
    }
    out
}

/// Files of a source: (absolute path, key relative to the base), sorted; folders that could not
/// be listed go to `unlisted`.
pub fn source_files(spec: &SourceSpec, base: &Path, unlisted: &mut Vec<Skipped>) -> Result<Vec<(PathBuf, String)>> {
    let include = glob_set(&spec.include)?;
    let exclude = glob_set(&spec.exclude)?;
    let mut out = Vec::new();
    let mut roots: Vec<PathBuf> = spec.include.iter().map(|p| literal_prefix(p)).collect();
    roots.sort();
    roots.dedup();
    let mut seen = HashSet::new();
    for root in roots {
        let start = base.join(&root);
        if start.is_file() {
            if seen.insert(start.clone()) {
                out.push((start.clone(), root.to_string_lossy().into_owned()));
            }
            continue;
        }
        for entry in walkdir::WalkDir::new(&start).follow_links(true) {
            let entry = match entry {
                Ok(e) => e,
                // A folder missing altogether holds nothing; one that cannot be read is reported.
                Err(e) if e.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) => continue,
                Err(e) => {
                    let at = e.path().unwrap_or(&start).to_path_buf();
                    let key = at.strip_prefix(base).unwrap_or(&at).to_string_lossy().into_owned();
                    unlisted.push(Skipped { path: at.display().to_string(), reason: format!("cannot be listed: {e}"), key });
                    continue;
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(base).unwrap_or(entry.path()).to_string_lossy().into_owned();
            if include.is_match(&rel) && !exclude.is_match(&rel) && seen.insert(entry.path().to_path_buf()) {
                out.push((entry.path().to_path_buf(), rel));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn keep_title(spec: &SourceSpec, title: &str) -> bool {
    (spec.title_any.is_empty() || spec.title_any.iter().any(|t| title.contains(t.as_str())))
        && !spec.title_none.iter().any(|t| title.contains(t.as_str()))
}

/// Read every source of the definition: documents plus the files that were skipped and why.
pub fn collect_documents(def: &KbDefinition, data_root: &Path, uploads: Option<&Path>) -> Result<(Vec<SourceDoc>, Vec<Skipped>)> {
    let mut docs = Vec::new();
    let mut skipped = Vec::new();
    let mut keys = HashSet::new();
    for spec in &def.sources {
        let base = match spec.base {
            Base::Data => {
                if !data_root.is_dir() {
                    return Err(KbError::NoDataRoot(data_root.display().to_string()));
                }
                data_root.to_path_buf()
            }
            Base::Kb => def.dir.clone(),
        };
        for (path, key) in source_files(spec, &base, &mut skipped)? {
            // Files whose name already fails the title rules are not read at all (records files
            // are, since each record has its own title).
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let records = matches!(spec.format, crate::definition::Format::Records | crate::definition::Format::Table)
                || spec.records.is_some();
            if !records && !keep_title(spec, &stem) {
                continue;
            }
            match read_file_with(&path, &key, spec, &def.limits) {
                Ok(found) => {
                    for d in found {
                        if keep_title(spec, &d.doc.title) && keys.insert(d.key.clone()) {
                            docs.push(d);
                        }
                    }
                }
                Err(e) => skipped.push(Skipped { path: e.path, reason: e.reason, key }),
            }
        }
    }
    if let Some(dir) = uploads.filter(|d| d.is_dir()) {
        let spec = SourceSpec {
            base: Base::Kb,
            include: vec!["*".into()],
            // Dot files are the upload route's own (a file being written, a replaced version).
            exclude: vec![".*".into()],
            title_any: Vec::new(),
            title_none: Vec::new(),
            format: crate::definition::Format::Auto,
            doc_type: "upload".into(),
            region: def.metadata.region.clone(),
            issuer: None,
            records: None,
        };
        let mut unlisted = Vec::new();
        for (path, key) in source_files(&spec, dir, &mut unlisted)? {
            let key = format!("uploads/{key}");
            match read_file_with(&path, &key, &spec, &def.limits) {
                Ok(found) => {
                    for d in found {
                        if keys.insert(d.key.clone()) {
                            docs.push(d);
                        }
                    }
                }
                Err(e) => skipped.push(Skipped { path: e.path, reason: e.reason, key }),
            }
        }
        skipped.extend(unlisted.into_iter().map(|s| Skipped { key: format!("uploads/{}", s.key), ..s }));
    }
    Ok((docs, skipped))
}

/// Where an ingest may find the stored vectors of a document version instead of embedding it.
pub trait VectorSource {
    /// The vectors of the document's chunks, in order, when this source holds exactly that
    /// version (`hash`, `chunks`) embedded by `embedder`. A source is only a shortcut: any
    /// failure is None, and the document is embedded as usual.
    fn chunk_vectors(&self, key: &str, hash: &str, chunks: usize, embedder: &str) -> Option<Vec<Vec<f32>>>;
}

impl VectorSource for KnowledgeBase {
    fn chunk_vectors(&self, key: &str, hash: &str, chunks: usize, embedder: &str) -> Option<Vec<Vec<f32>>> {
        self.stored_chunk_vectors(key, hash, chunks, embedder)
            .inspect_err(|e| tracing::warn!("reusing vectors of {key} from {}: {e}", self.def.id))
            .ok()
            .flatten()
    }
}

/// Content hash of a document as the knowledge base indexes it (text, metadata, chunking, embedder).
fn doc_hash(d: &SourceDoc, def: &KbDefinition) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&d.doc).expect("document serializes"));
    h.update(serde_json::to_vec(&d.meta).expect("meta serializes"));
    h.update(serde_json::to_vec(&def.chunking).expect("config serializes"));
    h.update(def.embedder.as_bytes());
    hex::encode(&h.finalize()[..16])
}

pub(crate) fn point_id(kb: &str, key: &str, hash: &str, ordinal: usize) -> u64 {
    let d = Sha256::digest(format!("{kb}\u{0}{key}\u{0}{hash}\u{0}{ordinal}").as_bytes());
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes")) >> 1
}

/// A chunk as the store keeps it: the document's metadata plus the chunk's place and text.
fn store_point(def: &KbDefinition, d: &SourceDoc, hash: &str, c: &Chunk, dense: Vec<f32>, bm25_text: String) -> StorePoint {
    let mut payload: Map<String, Value> = d.meta.clone();
    payload.insert("kb".into(), def.id.clone().into());
    payload.insert("doc_id".into(), d.key.clone().into());
    payload.insert("doc_hash".into(), hash.into());
    payload.insert("chunk_id".into(), format!("{}#{}", d.key, c.ordinal).into());
    payload.insert("title".into(), d.doc.title.clone().into());
    payload.insert("heading_path".into(), c.display_path(&d.doc.title).into());
    payload.insert("ordinal".into(), (c.ordinal as u64).into());
    payload.insert("text".into(), c.text.clone().into());
    if let Some(a) = &c.article {
        payload.insert("article".into(), a.clone().into());
    }
    if let Some(n) = c.article_no {
        payload.insert("article_no".into(), (n as u64).into());
    }
    for (k, v) in [("region", &def.metadata.region), ("issuer", &def.metadata.issuer)] {
        if let (false, Some(v)) = (payload.contains_key(k), v) {
            payload.insert(k.into(), v.clone().into());
        }
    }
    // BM25 matches folded text (queries are folded the same way); the payload keeps the original.
    let bm25_text = xiaoguan_text::to_simplified(&bm25_text).into_owned();
    StorePoint { id: point_id(&def.id, &d.key, hash, c.ordinal), dense, bm25_text, payload }
}

impl KnowledgeBase {
    pub fn ingest(&self, opts: &IngestOptions) -> Result<IngestReport> {
        self.ingest_reusing(opts, &[])
    }

    /// Ingest, taking the vectors of a document from `donors` (other KBs, same embedder) when one
    /// of them holds the same version of it: KBs that share documents embed them once.
    pub fn ingest_reusing(&self, opts: &IngestOptions, donors: &[&dyn VectorSource]) -> Result<IngestReport> {
        let started = Instant::now();
        let def = &self.def;
        let (docs, skipped) = collect_documents(def, &opts.data_root, opts.uploads_dir.as_deref())?;
        let state_path = self.dir.join("state.json");
        let mut state = self.state();
        state.embedder = self.embedder.model_id().to_string();

        // Clean up after an ingest that was killed: drop points of pending documents that the
        // committed state does not reference.
        for key in std::mem::take(&mut state.pending) {
            let mut f = Filter::eq("doc_id", key.clone());
            if let Some(d) = state.documents.get(&key) {
                f = f.and(Condition::Ne { field: "doc_hash".into(), value: d.hash.clone().into() });
            }
            self.store.delete(&f)?;
        }
        // Deletes are durable only once flushed; the pending marks they clear are overwritten
        // by the next commit.
        self.store.flush()?;

        let mut report = IngestReport { kb: def.id.clone(), documents: docs.len(), skipped, ..Default::default() };
        let all_keys: HashSet<String> = docs.iter().map(|d| d.key.clone()).collect();
        // (document, hash, chunks): each changed document is chunked once.
        let mut work: Vec<(SourceDoc, String, Vec<Chunk>)> = Vec::new();
        for d in docs {
            let hash = doc_hash(&d, def);
            match state.documents.get(&d.key) {
                Some(old) if old.hash == hash => {
                    report.unchanged += 1;
                    continue;
                }
                Some(_) => report.changed += 1,
                None => report.added += 1,
            }
            let chunks = chunk_document(&d.doc, &def.chunking);
            work.push((d, hash, chunks));
        }
        // A document whose file could not be read this time is not removed: one bad line in a
        // records file must not delete the file's other records from the index.
        let removed: Vec<String> = state
            .documents
            .keys()
            .filter(|k| !all_keys.contains(k.as_str()) && !report.skipped.iter().any(|s| s.covers(k)))
            .cloned()
            .collect();
        let new_version = state.version + 1;
        let total_chunks: usize = work.iter().map(|(_, _, c)| c.len()).sum();
        let bar = if opts.progress { indicatif::ProgressBar::new(total_chunks as u64) } else { indicatif::ProgressBar::hidden() };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} chunks {per_sec} {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_message(format!("ingest {}", def.id));

        let mut stopped = false;
        for (batches, batch) in work.chunks(opts.batch_docs.max(1)).enumerate() {
            if opts.max_batches.is_some_and(|m| batches >= m) {
                stopped = true;
                break;
            }
            state.pending = batch.iter().map(|(d, _, _)| d.key.clone()).collect();
            self.commit(&state, &state_path)?;
            let mut points = Vec::new();
            let mut doc_states = Vec::new();
            for (d, hash, chunks) in batch {
                let texts: Vec<String> = chunks.iter().map(|c| c.index_text(&d.doc.title)).collect();
                if let Some(vectors) = self.reusable_vectors(donors, &d.key, hash, chunks.len()) {
                    for ((c, text), dense) in chunks.iter().zip(&texts).zip(vectors) {
                        points.push(store_point(def, d, hash, c, dense, text.clone()));
                    }
                    bar.inc(chunks.len() as u64);
                    report.chunks_reused += chunks.len();
                    doc_states.push((d.key.clone(), DocState { title: d.doc.title.clone(), hash: hash.clone(), chunks: chunks.len() }));
                    continue;
                }
                for (group_no, group) in texts.chunks(64).enumerate() {
                    let refs: Vec<&str> = group.iter().map(String::as_str).collect();
                    let vecs = self.embedder.embed(&refs, TextKind::Passage)?;
                    for (j, dense) in vecs.into_iter().enumerate() {
                        let i = group_no * 64 + j;
                        points.push(store_point(def, d, hash, &chunks[i], dense, texts[i].clone()));
                    }
                    bar.inc(group.len() as u64);
                }
                report.chunks_embedded += chunks.len();
                doc_states.push((d.key.clone(), DocState { title: d.doc.title.clone(), hash: hash.clone(), chunks: chunks.len() }));
            }
            for group in points.chunks(256) {
                self.store.upsert(group.to_vec())?;
            }
            self.store.flush()?;
            for (key, ds) in &doc_states {
                state.documents.insert(key.clone(), ds.clone());
            }
            state.version = new_version;
            state.updated_at = now_rfc3339();
            // The batch stays pending until its old points are gone: a crash in between is
            // cleaned up by the next ingest.
            self.commit(&state, &state_path)?;
            for key in &state.pending {
                let hash = &state.documents[key].hash;
                self.store.delete(&Filter::eq("doc_id", key.clone()).and(Condition::Ne { field: "doc_hash".into(), value: hash.clone().into() }))?;
            }
            self.store.flush()?;
            state.pending.clear();
            self.commit(&state, &state_path)?;
            if opts.progress && bar.is_hidden() {
                // No terminal (a log file, CI): one line per committed batch instead of the bar.
                let done = bar.position();
                let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
                let eta = (total_chunks as u64).saturating_sub(done) as f64 / rate.max(1e-9);
                eprintln!("ingest {}: {done}/{total_chunks} chunks committed, {rate:.1} chunks/s, about {:.0} min left", def.id, eta / 60.0);
            }
        }
        bar.finish_and_clear();

        if !stopped && !removed.is_empty() {
            state.pending = removed.clone();
            self.commit(&state, &state_path)?;
            for key in &removed {
                state.documents.remove(key);
            }
            state.version = new_version;
            state.updated_at = now_rfc3339();
            self.commit(&state, &state_path)?;
            for key in &state.pending {
                self.store.delete(&Filter::eq("doc_id", key.clone()))?;
            }
            self.store.flush()?;
            state.pending.clear();
            self.commit(&state, &state_path)?;
            report.removed = removed.len();
        }
        if !stopped && (report.chunks_embedded + report.chunks_reused > 0 || report.removed > 0) {
            self.store.optimize()?;
        }
        report.version = state.version;
        report.total_chunks = state.total_chunks();
        report.seconds = started.elapsed().as_secs_f64();
        report.complete = !stopped;
        Ok(report)
    }

    fn reusable_vectors(&self, donors: &[&dyn VectorSource], key: &str, hash: &str, chunks: usize) -> Option<Vec<Vec<f32>>> {
        let embedder = self.embedder.model_id();
        donors.iter().find_map(|d| d.chunk_vectors(key, hash, chunks, embedder)).filter(|v| v.iter().all(|x| x.len() == self.embedder.dimension()))
    }

    fn commit(&self, state: &crate::state::KbState, path: &Path) -> Result<()> {
        state.save(path).map_err(|e| KbError::io("writing", path, e))?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = state.clone();
        Ok(())
    }
}
