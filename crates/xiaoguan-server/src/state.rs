//! Shared state: the assistant and ticket assist (built once at startup), keys, limits, the
//! generator queue, conversations, the ticket store, Prometheus handle.

use crate::auth::Keys;
use crate::config::{Limits, ServerConfig};
use crate::error::ApiError;
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use xiaoguan_assist::qa::rewrite::Turn;
use xiaoguan_assist::history::TicketHistory;
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
    pub conversations: Mutex<Conversations>,
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

#[derive(Default)]
pub struct Conversations {
    turns: HashMap<String, Vec<Turn>>,
    order: VecDeque<String>,
}

impl Conversations {
    pub fn get(&self, id: &str) -> Vec<Turn> {
        self.turns.get(id).cloned().unwrap_or_default()
    }
    pub fn push(&mut self, id: &str, turns: &[Turn], max_turns: usize, max_conversations: usize) {
        if !self.turns.contains_key(id) {
            self.order.push_back(id.to_string());
            while self.order.len() > max_conversations {
                if let Some(old) = self.order.pop_front() {
                    self.turns.remove(&old);
                }
            }
        }
        let v = self.turns.entry(id.to_string()).or_default();
        v.extend_from_slice(turns);
        let extra = v.len().saturating_sub(max_turns);
        v.drain(..extra);
    }
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

    pub async fn cpu_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.cpu.clone().acquire_owned().await.map_err(|_| ApiError::unavailable("shutting down"))
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
