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
//!
//! Cancellation ([`IngestControl::cancel`]) stops at the next batch boundary, or between embedding
//! groups inside a batch, abandoning that batch before anything of it is written: the KB stays at
//! its last commit and the next ingest resumes.
//!
//! Quarantine: a file found over a reader limit (`(limit NAME = VALUE)` in its reason) is set
//! aside in `<kb>/quarantine/`: a `<slug>.reason.json` with the reason and the file's size and
//! modification time, and for an upload the file itself, moved there. It is not read again until
//! it is replaced (another size or modification time, or a new upload with that name); the
//! documents it held before stay indexed, like those of a file that cannot be read.

use crate::definition::{Base, KbDefinition, SourceSpec};
use crate::kb::KnowledgeBase;
use crate::readers::{read_file_with, SourceDoc};
use crate::state::{now_rfc3339, DocState};
use crate::{KbError, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use xiaoguan_models::TextKind;
use xiaoguan_store::{Condition, Filter, StorePoint};
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
    /// Stopped by [`IngestControl::cancel`] (at a batch boundary: the KB is at its last commit).
    pub cancelled: bool,
    /// Files set aside by this ingest for being over a reader limit (see [`QuarantineEntry`]).
    pub quarantined: Vec<QuarantineEntry>,
}

/// What an ingest can be told from outside while it runs.
#[derive(Debug, Clone, Default)]
pub struct IngestControl {
    /// Set (by a signal handler, a service shutting down) to stop at the next batch boundary.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl IngestControl {
    pub fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst))
    }
}

/// A file set aside for being over a reader limit: `<kb>/quarantine/<slug>.reason.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QuarantineEntry {
    /// The document key of the file (`uploads/<name>` for an upload).
    pub key: String,
    /// Where the file was found.
    pub path: String,
    /// The file itself, moved into the quarantine folder (uploads only: source files stay where they are).
    pub stored: Option<String>,
    pub reason: String,
    /// The limit it is over ("max_unzipped_bytes").
    pub limit: Option<String>,
    pub bytes: u64,
    /// Modification time (ns since the epoch): with `bytes`, how a replaced file is told apart.
    pub modified_ns: u64,
    pub at: String,
}

/// The limit a reader's refusal names: "… (limit max_unzipped_bytes = 67108864)" → max_unzipped_bytes.
pub fn over_limit(reason: &str) -> Option<String> {
    let at = reason.rfind("(limit ")?;
    let rest = &reason[at + "(limit ".len()..];
    let name = rest.split(" = ").next()?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then(|| name.to_string())
}

/// The quarantine folder of a knowledge base's folder.
pub fn quarantine_dir(kb_dir: &Path) -> PathBuf {
    kb_dir.join("quarantine")
}

fn slug(key: &str) -> String {
    let h = hex::encode(&Sha256::digest(key.as_bytes())[..4]);
    let name: String = key.rsplit('/').next().unwrap_or(key).chars().map(|c| if c.is_alphanumeric() || ".-_".contains(c) { c } else { '_' }).collect();
    format!("{h}-{}", name.trim_start_matches('.'))
}

fn fingerprint(path: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    let ns = m.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos() as u64;
    Some((m.len(), ns))
}

/// Every quarantined file of the knowledge base in `kb_dir`, by key.
pub fn list_quarantine(kb_dir: &Path) -> Vec<QuarantineEntry> {
    let mut out: Vec<QuarantineEntry> = std::fs::read_dir(quarantine_dir(kb_dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".reason.json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// Forget a quarantined file (it was replaced or deleted): its reason file and moved copy go.
/// True when there was one.
pub fn release_quarantine(kb_dir: &Path, key: &str) -> bool {
    let dir = quarantine_dir(kb_dir);
    let s = slug(key);
    let had = std::fs::remove_file(dir.join(format!("{s}.reason.json"))).is_ok();
    let _ = std::fs::remove_file(dir.join(&s));
    had
}

/// The reason file first (fsync'd), then the move: a crash in between leaves an entry whose
/// file is still in place with the same fingerprint, which the next ingest skips and moves.
fn quarantine_file(kb_dir: &Path, path: &Path, key: &str, reason: &str, upload: bool) -> std::io::Result<QuarantineEntry> {
    let dir = quarantine_dir(kb_dir);
    std::fs::create_dir_all(&dir)?;
    let s = slug(key);
    let (bytes, modified_ns) = fingerprint(path).unwrap_or((0, 0));
    let entry = QuarantineEntry {
        key: key.to_string(),
        path: path.display().to_string(),
        stored: upload.then(|| dir.join(&s).display().to_string()),
        reason: reason.to_string(),
        limit: over_limit(reason),
        bytes,
        modified_ns,
        at: now_rfc3339(),
    };
    write_entry(&dir, &s, &entry)?;
    if upload {
        move_file(path, &dir.join(&s))?;
    }
    Ok(entry)
}

fn write_entry(dir: &Path, slug: &str, entry: &QuarantineEntry) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!(".{slug}.reason.json.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(entry).expect("entry serializes"))?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(format!("{slug}.reason.json")))
}

fn move_file(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        // Another file system: copy, then remove.
        Err(_) => std::fs::copy(from, to).and_then(|_| std::fs::remove_file(from)),
    }
}

/// Quarantine bookkeeping of one collection pass.
struct QuarantinePass<'a> {
    kb_dir: &'a Path,
    entries: HashMap<String, QuarantineEntry>,
    seen: HashSet<String>,
    newly: Vec<QuarantineEntry>,
}

impl<'a> QuarantinePass<'a> {
    fn new(kb_dir: &'a Path) -> Self {
        let entries = list_quarantine(kb_dir).into_iter().map(|e| (e.key.clone(), e)).collect();
        Self { kb_dir, entries, seen: HashSet::new(), newly: Vec::new() }
    }

    /// Before reading `path`: Some(skip) when it is the quarantined file itself (not replaced).
    fn before_read(&mut self, path: &Path, key: &str, upload: bool) -> Option<Skipped> {
        self.seen.insert(key.to_string());
        let e = self.entries.get(key)?;
        if fingerprint(path) == Some((e.bytes, e.modified_ns)) {
            if upload {
                // A crash between the reason file and the move: finish the move.
                let _ = move_file(path, &quarantine_dir(self.kb_dir).join(slug(key)));
            }
            return Some(Skipped { path: path.display().to_string(), reason: format!("quarantined: {}", e.reason), key: key.to_string() });
        }
        // Replaced: read it again.
        release_quarantine(self.kb_dir, key);
        self.entries.remove(key);
        None
    }

    /// After a read failed: quarantine it when the reason is a limit.
    fn after_error(&mut self, path: &Path, key: &str, reason: &str, upload: bool) {
        if over_limit(reason).is_none() {
            return;
        }
        match quarantine_file(self.kb_dir, path, key, reason, upload) {
            Ok(e) => {
                tracing::warn!("{}: over a limit, quarantined: {reason}", path.display());
                self.entries.insert(key.to_string(), e.clone());
                self.newly.push(e);
            }
            Err(e) => tracing::warn!("{}: could not be quarantined: {e}", path.display()),
        }
    }

    /// Entries whose file was not listed: a moved upload keeps its documents (skipped); a
    /// source file that is gone is forgotten.
    fn finish(self, skipped: &mut Vec<Skipped>) -> Vec<QuarantineEntry> {
        for (key, e) in &self.entries {
            if self.seen.contains(key) {
                continue;
            }
            if e.stored.is_some() {
                skipped.push(Skipped { path: e.path.clone(), reason: format!("quarantined: {}", e.reason), key: key.clone() });
            } else {
                release_quarantine(self.kb_dir, key);
            }
        }
        self.newly
    }
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
    let mut q = None;
    collect(def, data_root, uploads, &mut q, &IngestControl::default()).map(|(d, s, _)| (d, s))
}

/// [`collect_documents`] with the quarantine (when `q` is set) and cancellation (third value).
fn collect(def: &KbDefinition, data_root: &Path, uploads: Option<&Path>, q: &mut Option<QuarantinePass>, control: &IngestControl) -> Result<(Vec<SourceDoc>, Vec<Skipped>, bool)> {
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
            if control.cancelled() {
                return Ok((docs, skipped, true));
            }
            // Files whose name already fails the title rules are not read at all (records files
            // are, since each record has its own title).
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let records = matches!(spec.format, crate::definition::Format::Records | crate::definition::Format::Table)
                || spec.records.is_some();
            if !records && !keep_title(spec, &stem) {
                continue;
            }
            if let Some(skip) = q.as_mut().and_then(|q| q.before_read(&path, &key, false)) {
                skipped.push(skip);
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
                Err(e) => {
                    if let Some(q) = q.as_mut() {
                        q.after_error(&path, &key, &e.reason, false);
                    }
                    skipped.push(Skipped { path: e.path, reason: e.reason, key })
                }
            }
        }
    }
    if let Some(dir) = uploads.filter(|d| d.is_dir()) {
        let spec = upload_spec(def);
        let mut unlisted = Vec::new();
        for (path, key) in source_files(&spec, dir, &mut unlisted)? {
            if control.cancelled() {
                return Ok((docs, skipped, true));
            }
            let key = format!("uploads/{key}");
            if let Some(skip) = q.as_mut().and_then(|q| q.before_read(&path, &key, true)) {
                skipped.push(skip);
                continue;
            }
            match read_file_with(&path, &key, &spec, &def.limits) {
                Ok(found) => {
                    for d in found {
                        if keys.insert(d.key.clone()) {
                            docs.push(d);
                        }
                    }
                }
                Err(e) => {
                    if let Some(q) = q.as_mut() {
                        q.after_error(&path, &key, &e.reason, true);
                    }
                    skipped.push(Skipped { path: e.path, reason: e.reason, key })
                }
            }
        }
        skipped.extend(unlisted.into_iter().map(|s| Skipped { key: format!("uploads/{}", s.key), ..s }));
    }
    Ok((docs, skipped, false))
}

/// How files uploaded to a knowledge base are read (any supported format, `doc_type = "upload"`).
pub fn upload_spec(def: &KbDefinition) -> SourceSpec {
    SourceSpec {
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
    }
}

/// Read one upload as an ingest would, within the definition's limits (the service checks a
/// file this way before it stores it). `name` is the upload's file name.
pub fn check_upload(def: &KbDefinition, path: &Path, name: &str) -> std::result::Result<usize, crate::readers::ReadError> {
    read_file_with(path, &format!("uploads/{name}"), &upload_spec(def), &def.limits).map(|d| d.len())
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
        self.ingest_controlled(opts, donors, &IngestControl::default())
    }

    /// [`ingest_reusing`](Self::ingest_reusing) that stops when `control.cancel` is set: at the
    /// next batch boundary, or between embedding groups (the batch is then abandoned before
    /// anything of it is written). The report says `cancelled`; the KB is at its last commit.
    pub fn ingest_controlled(&self, opts: &IngestOptions, donors: &[&dyn VectorSource], control: &IngestControl) -> Result<IngestReport> {
        let started = Instant::now();
        let def = &self.def;
        // On a shared backend: this process alone changes the KB until the lease is dropped,
        // starting from the state as last committed by anyone.
        let lease = self.backend.lease(&def.id)?;
        if lease.is_some() {
            self.reload_if_moved()?;
        }
        let mut q = Some(QuarantinePass::new(&self.dir));
        let (docs, mut skipped, cancelled) = collect(def, &opts.data_root, opts.uploads_dir.as_deref(), &mut q, control)?;
        let quarantined = q.take().map(|q| q.finish(&mut skipped)).unwrap_or_default();
        if cancelled {
            let s = self.state();
            return Ok(IngestReport {
                kb: def.id.clone(),
                version: s.version,
                total_chunks: s.total_chunks(),
                skipped,
                quarantined,
                seconds: started.elapsed().as_secs_f64(),
                complete: false,
                cancelled: true,
                ..Default::default()
            });
        }
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

        let mut report = IngestReport { kb: def.id.clone(), documents: docs.len(), skipped, quarantined, ..Default::default() };
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
        let bar = xiaoguan_models::progress::bar(total_chunks as u64, "{msg} [{bar:30}] {pos}/{len} chunks {per_sec} {eta}", opts.progress);
        bar.set_message(format!("ingest {}", def.id));

        let mut stopped = false;
        'batches: for (batches, batch) in work.chunks(opts.batch_docs.max(1)).enumerate() {
            if opts.max_batches.is_some_and(|m| batches >= m) {
                stopped = true;
                break;
            }
            if control.cancelled() {
                stopped = true;
                report.cancelled = true;
                break;
            }
            state.pending = batch.iter().map(|(d, _, _)| d.key.clone()).collect();
            self.commit(&mut state, lease.as_ref())?;
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
                    if control.cancelled() {
                        // Nothing of this batch is written yet: it is dropped, not committed.
                        state.pending.clear();
                        self.commit(&mut state, lease.as_ref())?;
                        stopped = true;
                        report.cancelled = true;
                        break 'batches;
                    }
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
            self.commit(&mut state, lease.as_ref())?;
            for key in &state.pending {
                let hash = &state.documents[key].hash;
                self.store.delete(&Filter::eq("doc_id", key.clone()).and(Condition::Ne { field: "doc_hash".into(), value: hash.clone().into() }))?;
            }
            self.store.flush()?;
            state.pending.clear();
            self.commit(&mut state, lease.as_ref())?;
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
            self.commit(&mut state, lease.as_ref())?;
            for key in &removed {
                state.documents.remove(key);
            }
            state.version = new_version;
            state.updated_at = now_rfc3339();
            self.commit(&mut state, lease.as_ref())?;
            for key in &state.pending {
                self.store.delete(&Filter::eq("doc_id", key.clone()))?;
            }
            self.store.flush()?;
            state.pending.clear();
            self.commit(&mut state, lease.as_ref())?;
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

    /// Write the state as the new committed one (its revision moves on). Refused once the
    /// lease is lost: another process may be changing the KB by now.
    fn commit(&self, state: &mut crate::state::KbState, lease: Option<&crate::backend::IngestLease>) -> Result<()> {
        if lease.is_some_and(|l| l.lost()) {
            return Err(KbError::Busy(format!("the ingest lease of '{}' was lost; nothing more is committed (run the ingest again)", self.def.id)));
        }
        state.revision += 1;
        self.keeper.save(state)?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = state.clone();
        Ok(())
    }
}
