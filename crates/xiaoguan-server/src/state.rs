//! Shared state: the assistant and ticket assist (built once at startup), keys, limits, the
//! generator queue, the ticket store (which also keeps the conversations, so any replica can
//! continue one), Prometheus handle.

use crate::auth::Keys;
use crate::config::{Limits, ServerConfig};
use crate::error::ApiError;
use metrics_exporter_prometheus::PrometheusHandle;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use xiaoguan_assist::history::TicketHistory;
use xiaoguan_assist::qa::rewrite::{Role, Turn};
use xiaoguan_tickets::{ConversationTurn, StoreError};
use xiaoguan_assist::qa::Assistant;
use xiaoguan_assist::ticket::TicketAssist;
use xiaoguan_kb::definition::KbDefinition;

/// What is loaded after startup (models, KBs): requests before it get 503.
pub struct Ready {
    pub assistant: Arc<Assistant>,
    pub tickets: Arc<TicketAssist>,
    pub kb_defs: Vec<KbDefinition>,
    /// Where uploads for each KB live and how to re-ingest.
    pub uploads_root: PathBuf,
    pub data_root: PathBuf,
}

pub struct AppState {
    pub ready: OnceLock<Ready>,
    pub startup_error: Mutex<Option<String>>,
    pub keys: Keys,
    pub limits: Limits,
    pub config: ServerConfig,
    /// The ticket store (tickets, decisions, reviews, feedback) and the repeat lookups over it.
    pub history: Arc<TicketHistory>,
    pub metrics: PrometheusHandle,
    /// One generation at a time (2 cores); `waiting` bounds the queue in front of it.
    pub generator: Arc<Semaphore>,
    pub waiting: AtomicUsize,
    /// Retrieval, classification and ticket assist share the CPU workers.
    pub cpu: Arc<Semaphore>,
    /// Conversation appends by this process: every `TRIM_EVERY`th one also trims the store to
    /// `limits.max_conversations`.
    pub conversation_appends: AtomicUsize,
    /// The budget of upload bytes held at once, in KiB permits (`limits.max_uploads_in_flight_bytes`).
    pub uploads_in_flight: Arc<Semaphore>,
    /// Upload / delete / reindex jobs: one bounded queue and worker per KB, pollable statuses.
    pub jobs: crate::jobs::Jobs,
    /// Set by SIGTERM/SIGINT: new jobs are refused (503).
    pub shutting_down: AtomicBool,
    /// Shared by every running ingest: set at shutdown, they stop at the next batch boundary.
    pub cancel_ingests: Arc<AtomicBool>,
    /// Ingest workers take it before each ingest: holding it holds them back (tests fill a
    /// queue deterministically this way; an operator could pause ingests with it).
    pub ingest_hold: tokio::sync::Mutex<()>,
}

/// How often (in appends, per process) the store is trimmed to `max_conversations`: a DELETE
/// over the conversations table is too much for every answer, and the limit is a ceiling on
/// storage, not an exact count (several replicas each trim on their own schedule).
pub const TRIM_EVERY: usize = 100;

/// Retry-After of an upload refused for the in-flight budget: uploads are quick to stage.
const RETRY_UPLOAD_SECS: u64 = 2;

fn to_stored(t: &Turn) -> ConversationTurn {
    let role = match t.role {
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    ConversationTurn::new(role, t.content.clone())
}

/// The store only holds what `to_stored` wrote; a role it does not know (a newer binary's, a
/// hand edit) is skipped rather than guessed.
fn from_stored(t: ConversationTurn) -> Option<Turn> {
    let role = match t.role.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        other => {
            tracing::warn!("conversation turn with unknown role '{other}' skipped");
            return None;
        }
    };
    Some(Turn { role, content: t.content })
}

impl AppState {
    pub fn ready(&self) -> Result<&Ready, ApiError> {
        self.ready.get().ok_or_else(|| {
            let why = self.startup_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
            ApiError::unavailable(why.map(|w| format!("the service failed to start: {w}")).unwrap_or_else(|| "the service is still loading models and knowledge bases".into()))
        })
    }

    /// The generator's permit: at once when it is free, after waiting when fewer than
    /// `generator_queue` requests are already waiting, else 429.
    pub async fn generator_slot(self: &Arc<Self>) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(p) = self.generator.clone().try_acquire_owned() {
            return Ok(p);
        }
        let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
        // Dropped on every exit, including a client that goes away while waiting.
        let _waiting = Waiting(&self.waiting);
        if queued >= self.limits.generator_queue {
            metrics::counter!("xiaoguan_shed_total").increment(1);
            return Err(ApiError::busy(5));
        }
        metrics::gauge!("xiaoguan_generator_queue_depth").set((queued + 1) as f64);
        self.generator.clone().acquire_owned().await.map_err(|_| ApiError::unavailable("shutting down"))
    }

    /// Reserve room for an upload body of `bytes` (rounded up to KiB) at once, or 429: uploads are
    /// refused rather than queued, since a queued upload would already hold its connection's data.
    pub fn upload_room(&self, bytes: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        self.uploads_in_flight.clone().try_acquire_many_owned(kib).map_err(|_| {
            metrics::counter!("xiaoguan_upload_shed_total").increment(1);
            let budget = self.limits.max_uploads_in_flight_bytes;
            ApiError::busy_with(RETRY_UPLOAD_SECS, format!("uploads in flight are at their memory budget ({} of {} KiB taken; this one needs {kib} KiB); retry later",
                (budget / 1024).saturating_sub(self.uploads_in_flight.available_permits()), budget / 1024))
        })
    }

    pub async fn cpu_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.cpu.clone().acquire_owned().await.map_err(|_| ApiError::unavailable("shutting down"))
    }

    /// The earlier turns of `owner`'s conversation `id` (none without an id, or for an id this
    /// owner never used). A store that cannot be read is the service's fault: 500, naming it.
    pub async fn conversation(&self, owner: &str, id: Option<&str>) -> Result<Vec<Turn>, ApiError> {
        let Some(id) = id else { return Ok(Vec::new()) };
        let (store, owner, id) = (self.history.store.clone(), owner.to_string(), id.to_string());
        let stored = crate::routes::blocking(move || {
            store.conversation(&owner, &id).map_err(|e| match e {
                StoreError::InvalidInput(m) => ApiError::bad_request(format!("conversation_id: {m}")),
                StoreError::Database(m) => {
                    let location = store.location();
                    tracing::error!(error = %m, store = %location, "cannot read a conversation from the ticket store");
                    ApiError::internal(format!("cannot read conversation '{id}' from the ticket store (the service's fault; retry later): {m}"))
                }
            })
        })
        .await?;
        Ok(stored.into_iter().filter_map(from_stored).collect())
    }

    /// Append a question and its answer to `owner`'s conversation `id` (nothing without an id),
    /// keeping the newest `max_messages` turns. Returns when the append is committed, so the
    /// caller's next request sees it on any replica. A failure is logged and counted, not
    /// returned: the answer is already made, and losing it for its bookkeeping helps no one.
    pub async fn remember(&self, owner: &str, id: Option<&str>, question: &str, answer: &str) {
        let Some(id) = id else { return };
        if self.limits.max_messages == 0 {
            return; // configured to keep no turns at all
        }
        let turns = [Turn { role: Role::User, content: question.to_string() }, Turn { role: Role::Assistant, content: answer.to_string() }];
        // A limit of one turn keeps the answer only (the store refuses more turns than it keeps).
        let skip = turns.len().saturating_sub(self.limits.max_messages);
        let turns: Vec<ConversationTurn> = turns[skip..].iter().map(to_stored).collect();
        let trim_to = (self.conversation_appends.fetch_add(1, Ordering::Relaxed) % TRIM_EVERY == 0).then_some(self.limits.max_conversations);
        let (store, owner, id, max_turns) = (self.history.store.clone(), owner.to_string(), id.to_string(), self.limits.max_messages);
        let done = crate::routes::blocking(move || {
            let now = xiaoguan_tickets::now_ms();
            store.append_conversation(&owner, &id, &turns, max_turns, now).map_err(|e| ApiError::internal(format!("cannot save conversation '{id}': {e}")))?;
            if let Some(keep) = trim_to {
                // The append stands even when the trim fails: the next trim tries again.
                match store.trim_conversations(keep) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("conversations: forgot the {n} least recently used (max_conversations = {keep})"),
                    Err(e) => tracing::error!("conversations: trimming to {keep} failed: {e}"),
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = done {
            metrics::counter!("xiaoguan_conversation_save_failures_total").increment(1);
            tracing::error!("{}", e.message);
        }
    }
}

/// Counts a request waiting for the generator for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let left = self.0.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        metrics::gauge!("xiaoguan_generator_queue_depth").set(left as f64);
    }
}
