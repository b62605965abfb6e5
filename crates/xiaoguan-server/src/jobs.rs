//! Ingest jobs: uploads, deletes and reindexes of a knowledge base go through one bounded queue
//! per KB, served by one worker that runs the waiting jobs together as one ingest. A request
//! waits for its job at most `upload_wait_secs`, then answers 202 with the job's id; the status
//! (queued → ingesting → indexed / refused / failed / cancelled, with the reason) is kept for
//! polling. A full queue is 429 with Retry-After, at once: no request waits on another
//! document's ingest for longer than its own timeout.

use crate::state::AppState;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use xiaoguan_kb::ingest::{over_limit, release_quarantine, IngestControl};
use xiaoguan_kb::{IngestOptions, IngestReport, KnowledgeBase};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Ingesting,
    Indexed,
    Refused,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Ingesting)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub upload_id: String,
    pub kb: String,
    /// upload | remove | reindex
    pub action: &'static str,
    pub filename: Option<String>,
    pub doc_id: Option<String>,
    pub state: JobState,
    /// Why it was refused, failed or cancelled.
    pub reason: Option<String>,
    /// The limit a refused file is over ("max_unzipped_bytes").
    pub limit: Option<String>,
    pub ingest: Option<Value>,
    pub accepted_at: String,
    pub finished_at: Option<String>,
    /// Seconds from acceptance to the final state.
    pub seconds: Option<f64>,
    #[serde(skip)]
    pub started: Option<Instant>,
}

#[derive(Debug)]
pub enum JobKind {
    /// Install `staged` as `uploads/<kb>/<name>`.
    Upload { name: String, staged: PathBuf },
    Remove { name: String },
    Reindex,
}

#[derive(Debug)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
}

impl Job {
    fn name(&self) -> Option<&str> {
        match &self.kind {
            JobKind::Upload { name, .. } | JobKind::Remove { name } => Some(name),
            JobKind::Reindex => None,
        }
    }
}

/// Statuses by id (bounded, oldest forgotten first) and a wake-up for requests waiting on them.
#[derive(Default)]
pub struct Jobs {
    statuses: Mutex<(HashMap<String, JobStatus>, VecDeque<String>)>,
    changed: Notify,
    queues: Mutex<HashMap<String, mpsc::Sender<Job>>>,
    seq: std::sync::atomic::AtomicU64,
    /// Ingests running now (the shutdown waits for them to reach a batch boundary).
    pub running: std::sync::atomic::AtomicUsize,
    pub idle: Notify,
}

pub enum Enqueue {
    Accepted,
    Full,
    Closed,
}

impl Jobs {
    pub fn new_id(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        // Time, counter and pid hashed: unique and not guessable from the previous one.
        let d = <sha2::Sha256 as sha2::Digest>::digest(format!("{nanos}:{n}:{}", std::process::id()).as_bytes());
        format!("up-{}", hex::encode(&d[..8]))
    }

    pub fn get(&self, id: &str) -> Option<JobStatus> {
        self.statuses.lock().unwrap_or_else(|p| p.into_inner()).0.get(id).cloned()
    }

    pub fn insert(&self, st: JobStatus, max: usize) {
        let mut g = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *g;
        order.push_back(st.upload_id.clone());
        map.insert(st.upload_id.clone(), st);
        while order.len() > max.max(1) {
            // Forget the oldest finished one (a job in flight is kept).
            let Some(pos) = order.iter().position(|id| map.get(id).is_none_or(|s| s.state.is_final())) else { break };
            if let Some(id) = order.remove(pos) {
                map.remove(&id);
            }
        }
        drop(g);
        self.changed.notify_waiters();
    }

    pub fn update(&self, id: &str, f: impl FnOnce(&mut JobStatus)) {
        if let Some(s) = self.statuses.lock().unwrap_or_else(|p| p.into_inner()).0.get_mut(id) {
            f(s);
            if s.state.is_final() && s.finished_at.is_none() {
                s.finished_at = Some(xiaoguan_kb::state::now_rfc3339());
                s.seconds = s.started.map(|t| t.elapsed().as_secs_f64());
            }
        }
        self.changed.notify_waiters();
    }

    /// The job's status once final, or its current status when `wait` runs out.
    pub async fn wait(&self, id: &str, wait: Duration) -> Option<JobStatus> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let st = self.get(id)?;
            if st.state.is_final() {
                return Some(st);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.get(id);
            }
        }
    }

    /// Jobs waiting in the KB's queue (not counting the one running).
    pub fn queued(&self, kb: &str) -> usize {
        self.queues.lock().unwrap_or_else(|p| p.into_inner()).get(kb).map(|tx| tx.max_capacity() - tx.capacity()).unwrap_or(0)
    }

    /// Jobs cancelled by a shutdown: stopped at a batch boundary, dropped from a queue, or still
    /// unfinished.
    pub fn cancelled_count(&self) -> usize {
        let g = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        g.0.values().filter(|s| matches!(s.state, JobState::Cancelled | JobState::Queued | JobState::Ingesting)).count()
    }

    /// Whether the KB's queue has room now (checked before the work of reading an upload).
    pub fn has_room(&self, kb: &str) -> bool {
        self.queues.lock().unwrap_or_else(|p| p.into_inner()).get(kb).is_none_or(|tx| tx.capacity() > 0)
    }
}

/// New status for an accepted job.
pub fn accepted(id: &str, kb: &str, action: &'static str, filename: Option<&str>) -> JobStatus {
    JobStatus {
        upload_id: id.to_string(),
        kb: kb.to_string(),
        action,
        filename: filename.map(String::from),
        doc_id: filename.map(|n| format!("uploads/{n}")),
        state: JobState::Queued,
        reason: None,
        limit: None,
        ingest: None,
        accepted_at: xiaoguan_kb::state::now_rfc3339(),
        finished_at: None,
        seconds: None,
        started: Some(Instant::now()),
    }
}

/// Queue a job for the KB (its worker is started on first use).
pub fn enqueue(st: &Arc<AppState>, kb: Arc<KnowledgeBase>, job: Job) -> Enqueue {
    if st.shutting_down.load(Ordering::SeqCst) {
        return Enqueue::Closed;
    }
    let tx = {
        let mut queues = st.jobs.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues
            .entry(kb.def.id.clone())
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(st.limits.upload_queue.max(1));
                tokio::spawn(worker(st.clone(), kb.clone(), rx));
                tx
            })
            .clone()
    };
    match tx.try_send(job) {
        Ok(()) => Enqueue::Accepted,
        Err(mpsc::error::TrySendError::Full(job)) => {
            discard(&job);
            Enqueue::Full
        }
        Err(mpsc::error::TrySendError::Closed(job)) => {
            discard(&job);
            Enqueue::Closed
        }
    }
}

fn discard(job: &Job) {
    if let JobKind::Upload { staged, .. } = &job.kind {
        let _ = std::fs::remove_file(staged);
    }
}

/// One KB's worker: takes every job waiting (up to one per file name), installs their files and
/// runs one ingest for all of them.
async fn worker(st: Arc<AppState>, kb: Arc<KnowledgeBase>, mut rx: mpsc::Receiver<Job>) {
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(j) => j,
            None => match rx.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        // Held back while someone holds the gate (jobs that arrive meanwhile join this round).
        drop(st.ingest_hold.lock().await);
        let mut batch = vec![first];
        let mut names: HashSet<String> = batch.iter().filter_map(|j| j.name().map(String::from)).collect();
        while let Ok(j) = rx.try_recv() {
            // A second job on the same file waits for the next round.
            if let Some(n) = j.name() {
                if !names.insert(n.to_string()) {
                    carry = Some(j);
                    break;
                }
            }
            batch.push(j);
        }
        if st.shutting_down.load(Ordering::SeqCst) {
            for j in &batch {
                discard(j);
                st.jobs.update(&j.id, |s| {
                    s.state = JobState::Cancelled;
                    s.reason = Some("the service shut down before this job started; nothing was changed".into());
                });
            }
            continue;
        }
        for j in &batch {
            st.jobs.update(&j.id, |s| s.state = JobState::Ingesting);
        }
        st.jobs.running.fetch_add(1, Ordering::SeqCst);
        let st2 = st.clone();
        let kb2 = kb.clone();
        let outcome = tokio::task::spawn_blocking(move || run_batch(&st2, &kb2, batch)).await;
        if st.jobs.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            st.jobs.idle.notify_waiters();
        }
        let outcomes = match outcome {
            Ok(o) => o,
            Err(e) => {
                tracing::error!("ingest worker of {} failed: {e}", kb.def.id);
                continue;
            }
        };
        for (id, f) in outcomes {
            st.jobs.update(&id, f);
        }
    }
}

type Outcome = (String, Box<dyn FnOnce(&mut JobStatus) + Send>);

fn run_batch(st: &Arc<AppState>, kb: &Arc<KnowledgeBase>, batch: Vec<Job>) -> Vec<Outcome> {
    let Ok(ready) = st.ready() else { return Vec::new() };
    let dir = ready.uploads_root.join(&kb.def.id);
    let mut out: Vec<Outcome> = Vec::new();
    // (job id, name, whether it replaced a file)
    let mut installed: Vec<(String, String, bool)> = Vec::new();
    let mut others: Vec<String> = Vec::new();
    for job in batch {
        match job.kind {
            JobKind::Upload { name, staged } => {
                let path = dir.join(&name);
                let previous = dir.join(format!(".{name}.previous"));
                let replacing = path.is_file();
                let r = std::fs::create_dir_all(&dir)
                    .and_then(|_| if replacing { std::fs::copy(&path, &previous).map(|_| ()) } else { Ok(()) })
                    .and_then(|_| std::fs::rename(&staged, &path));
                match r {
                    Ok(()) => {
                        // A new upload with this name replaces a quarantined one.
                        release_quarantine(&kb.dir, &format!("uploads/{name}"));
                        installed.push((job.id, name, replacing));
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&staged);
                        let msg = format!("{}: {e}", path.display());
                        out.push((job.id, Box::new(move |s: &mut JobStatus| fail(s, msg))));
                    }
                }
            }
            JobKind::Remove { name } => {
                let path = dir.join(&name);
                let _ = std::fs::remove_file(&path);
                release_quarantine(&kb.dir, &format!("uploads/{name}"));
                others.push(job.id);
            }
            JobKind::Reindex => others.push(job.id),
        }
    }
    let opts = IngestOptions { data_root: ready.data_root.clone(), progress: false, batch_docs: 16, max_batches: None, uploads_dir: Some(dir.clone()) };
    let control = IngestControl { cancel: Some(st.cancel_ingests.clone()) };
    let r = kb.ingest_controlled(&opts, &[], &control);
    let restore = |name: &str, replacing: bool| {
        let path = dir.join(name);
        let previous = dir.join(format!(".{name}.previous"));
        let _ = if replacing { std::fs::rename(&previous, &path) } else { std::fs::remove_file(&path) };
    };
    match r {
        Err(e) => {
            tracing::error!("ingest of {} failed: {e}", kb.def.id);
            for (id, name, replacing) in installed {
                restore(&name, replacing);
                let msg = e.to_string();
                out.push((id, Box::new(move |s: &mut JobStatus| fail(s, msg))));
            }
            for id in others {
                let msg = e.to_string();
                out.push((id, Box::new(move |s: &mut JobStatus| fail(s, msg))));
            }
        }
        Ok(r) => {
            let report = report_json(&r);
            for (id, name, replacing) in installed {
                let path = dir.join(&name);
                let key = format!("uploads/{name}");
                let refused = r.skipped.iter().find(|s| std::path::Path::new(&s.path) == path || s.key == key).map(|s| s.reason.clone());
                let report = report.clone();
                if let Some(reason) = refused {
                    // An unreadable (or over-limit) upload is not kept: the file and the KB stay as they were.
                    restore(&name, replacing);
                    let limit = over_limit(&reason);
                    let reason = format!("{name}: {reason}");
                    out.push((id, Box::new(move |s: &mut JobStatus| {
                        s.state = JobState::Refused;
                        s.reason = Some(reason);
                        s.limit = limit;
                        s.ingest = Some(report);
                    })));
                    continue;
                }
                let _ = std::fs::remove_file(dir.join(format!(".{name}.previous")));
                let cancelled = r.cancelled;
                out.push((id, Box::new(move |s: &mut JobStatus| {
                    if cancelled {
                        s.state = JobState::Cancelled;
                        s.reason = Some("the service is shutting down: the ingest stopped at a batch boundary; the file is stored and the next ingest indexes it".into());
                    } else {
                        s.state = JobState::Indexed;
                    }
                    s.ingest = Some(report);
                })));
            }
            for id in others {
                let report = report.clone();
                let cancelled = r.cancelled;
                out.push((id, Box::new(move |s: &mut JobStatus| {
                    if cancelled {
                        s.state = JobState::Cancelled;
                        s.reason = Some("the service is shutting down: the ingest stopped at a batch boundary; the next ingest resumes".into());
                    } else {
                        s.state = JobState::Indexed;
                    }
                    s.ingest = Some(report);
                })));
            }
        }
    }
    out
}

fn fail(s: &mut JobStatus, msg: String) {
    s.state = JobState::Failed;
    s.reason = Some(msg);
}

pub fn report_json(r: &IngestReport) -> Value {
    json!({"version": r.version, "documents": r.documents, "added": r.added, "changed": r.changed, "removed": r.removed,
           "unchanged": r.unchanged, "chunks_embedded": r.chunks_embedded, "chunks_reused": r.chunks_reused, "total_chunks": r.total_chunks,
           "skipped": r.skipped.iter().map(|s| json!({"path": s.path, "reason": s.reason})).collect::<Vec<_>>(),
           "quarantined": r.quarantined.iter().map(|q| json!({"doc_id": q.key, "reason": q.reason, "limit": q.limit})).collect::<Vec<_>>(),
           "complete": r.complete, "cancelled": r.cancelled, "seconds": r.seconds})
}
