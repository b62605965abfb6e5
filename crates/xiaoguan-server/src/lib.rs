//! The server layer of xiaoguan: the HTTP service the 小莞 assistant and the hotline console talk
//! to. axum routes over the assist layer, API keys with roles and per-KB scopes, limits and a
//! bounded generator queue, Prometheus metrics, the ticket store (tickets, decisions, reviews,
//! feedback, analytics), the console page.

pub mod auth;
pub mod config;
pub mod database;
pub mod error;
pub mod feedback;
pub mod jobs;
pub mod routes;
pub mod state;

use auth::Keys;
use config::ServerConfig;
use metrics_exporter_prometheus::PrometheusBuilder;
use state::{AppState, Ready};
use std::net::SocketAddr;
use xiaoguan_assist::history::TicketHistory;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Semaphore;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "xiaoguan", description = "Grounded answers from official documents: 小莞 chat (OpenAI-compatible), ticket assist for 12345 agents, classification, search, knowledge-base admin. Errors are {\"error\": {\"type\", \"message\"}}. Send `Authorization: Bearer <key>`."),
    paths(
        routes::answer::ask, routes::answer::chat, routes::tickets::assist, routes::tickets::classify,
        routes::tickets::search, routes::tickets::feedback, routes::kbs::list, routes::kbs::get_one,
        routes::kbs::upload, routes::kbs::upload_status, routes::kbs::remove, routes::kbs::reindex, routes::ops::healthz, routes::ops::readyz,
        routes::records::list, routes::records::get_one, routes::records::decide, routes::records::remove,
        routes::records::queue, routes::records::review, routes::records::labelled, routes::analytics::analytics,
    ),
    components(schemas(
        routes::answer::AskBody, routes::answer::ChatRequest, routes::answer::ChatMessageBody, routes::tickets::TicketBody,
        routes::tickets::ClassifyBody, routes::tickets::SearchBody, feedback::FeedbackRequest, error::ErrorBody, error::ErrorDetail,
        routes::records::DecisionBody, routes::records::ReviewBody,
    ))
)]
pub struct ApiDoc;

/// Build the shared state; `Ready` is filled in later by `build`.
pub fn state(config: ServerConfig, keys: Keys, history: Arc<TicketHistory>) -> anyhow::Result<Arc<AppState>> {
    // The recorder is process-wide: installed once, reused by later states (tests build several).
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    let handle = HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone();
    let l = &config.limits;
    if l.max_uploads_in_flight_bytes < l.max_upload_bytes {
        anyhow::bail!("limits: max_uploads_in_flight_bytes ({}) is below max_upload_bytes ({}): the largest upload allowed could never be taken", l.max_uploads_in_flight_bytes, l.max_upload_bytes);
    }
    Ok(Arc::new(AppState {
        ready: OnceLock::new(),
        startup_error: Mutex::new(None),
        keys,
        limits: config.limits.clone(),
        generator: Arc::new(Semaphore::new(1)),
        cpu: Arc::new(Semaphore::new(config.limits.cpu_workers.max(1))),
        uploads_in_flight: Arc::new(Semaphore::new((config.limits.max_uploads_in_flight_bytes / 1024).clamp(1, Semaphore::MAX_PERMITS))),
        config,
        history,
        metrics: handle,
        waiting: AtomicUsize::new(0),
        conversation_appends: AtomicUsize::new(0),
        jobs: Default::default(),
        shutting_down: Default::default(),
        cancel_ingests: Default::default(),
        ingest_hold: Default::default(),
    }))
}

/// How a shutdown went: what it cancelled, whether the deadline cut anything off.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ShutdownReport {
    /// Ingest jobs (uploads, deletes, reindexes) stopped at a batch boundary or dropped from the queue.
    pub cancelled_jobs: usize,
    /// The deadline passed with requests still in flight or an ingest still running.
    pub forced: bool,
    /// From the signal to the end of the drain.
    pub seconds: f64,
}

impl ShutdownReport {
    /// 0: nothing was cancelled; 3: ingest jobs were cancelled (each KB is at its last commit and
    /// the next ingest resumes); 4: the deadline cut off requests or an ingest.
    pub fn exit_code(&self) -> i32 {
        if self.forced {
            4
        } else if self.cancelled_jobs > 0 {
            3
        } else {
            0
        }
    }
}

/// Serve until SIGINT/SIGTERM, then shut down within `shutdown_secs`: stop accepting, refuse new
/// jobs, cancel running ingests at their next batch boundary, drain in-flight answers. `build`
/// loads models and KBs on a blocking thread while the port already answers /healthz (and 503
/// elsewhere). The caller should exit the process after this returns: blocking threads (a
/// model load, an ingest past the deadline) are not waited for.
pub async fn serve(st: Arc<AppState>, build: impl FnOnce() -> anyhow::Result<Ready> + Send + 'static) -> anyhow::Result<ShutdownReport> {
    serve_until(st, build, shutdown_signal()).await
}

/// [`serve`] until `signal` completes (tests pass their own).
pub async fn serve_until(
    st: Arc<AppState>,
    build: impl FnOnce() -> anyhow::Result<Ready> + Send + 'static,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ShutdownReport> {
    use std::future::IntoFuture;
    let addr: SocketAddr = st.config.bind.parse().map_err(|e| anyhow::anyhow!("bind address '{}': {e}", st.config.bind))?;
    if st.keys.is_empty() && !addr.ip().is_loopback() {
        anyhow::bail!("no API keys are configured (keys_file): refusing to serve on {addr}, a non-loopback address");
    }
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("bind {addr}: {e}"))?;
    tracing::warn!("listening on http://{}", listener.local_addr()?);
    if st.keys.is_empty() {
        tracing::warn!("no API keys configured: open mode (loopback only)");
    }
    let loader = st.clone();
    tokio::task::spawn_blocking(move || match build() {
        Ok(r) => {
            let _ = loader.ready.set(r);
            tracing::warn!("ready");
        }
        Err(e) => {
            tracing::error!("startup failed: {e:#}");
            *loader.startup_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{e:#}"));
        }
    });
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<std::time::Instant>();
    let st2 = st.clone();
    let graceful = async move {
        signal.await;
        let at = std::time::Instant::now();
        begin_shutdown(&st2);
        let _ = signalled_tx.send(at);
    };
    let mut server = std::pin::pin!(axum::serve(listener, routes::router(st.clone())).with_graceful_shutdown(graceful).into_future());
    let mut signalled_rx = signalled_rx;
    // The server may finish draining (nothing in flight) before the signal's time is read.
    let (at, served) = tokio::select! {
        biased;
        at = &mut signalled_rx => (at.ok(), false),
        r = &mut server => {
            r?;
            (signalled_rx.try_recv().ok(), true)
        }
    };
    let Some(at) = at else { return Ok(ShutdownReport::default()) };
    let grace = std::time::Duration::from_secs(st.config.shutdown_secs);
    let deadline = tokio::time::Instant::from_std(at + grace);
    let mut forced = false;
    if !served {
        match tokio::time::timeout_at(deadline, &mut server).await {
            Ok(r) => r?,
            Err(_) => {
                tracing::warn!("shutdown: requests still in flight after {} s; cut off", grace.as_secs());
                forced = true;
            }
        }
    }
    // Ingests stop at their next batch boundary.
    loop {
        let idle = st.jobs.idle.notified();
        tokio::pin!(idle);
        idle.as_mut().enable();
        if st.jobs.running.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            break;
        }
        if tokio::time::timeout_at(deadline, idle).await.is_err() {
            tracing::warn!("shutdown: an ingest did not reach a batch boundary within {} s; cut off (the KB stays at its last commit)", grace.as_secs());
            forced = true;
            break;
        }
    }
    let report = ShutdownReport { cancelled_jobs: st.jobs.cancelled_count(), forced, seconds: at.elapsed().as_secs_f64() };
    tracing::warn!(
        "stopped {:.1} s after the signal: {} ingest job(s) cancelled{}",
        report.seconds,
        report.cancelled_jobs,
        if forced { ", cut off at the deadline" } else { ", in-flight requests drained" }
    );
    Ok(report)
}

/// Stop taking jobs and tell running ingests to stop at their next batch boundary.
pub fn begin_shutdown(st: &AppState) {
    tracing::warn!("shutting down: no new requests or jobs; ingests stop at the next batch boundary");
    st.shutting_down.store(true, std::sync::atomic::Ordering::SeqCst);
    st.cancel_ingests.store(true, std::sync::atomic::Ordering::SeqCst);
}

async fn shutdown_signal() {
    signal_name().await;
}

/// Waits for SIGINT or SIGTERM and says which.
async fn signal_name() -> &'static str {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => "SIGINT",
        _ = term => "SIGTERM",
    }
}

/// For a long command (`kb ingest`): the first SIGINT/SIGTERM sets `flag` (the ingest stops at
/// its next batch boundary), a second one exits at once (130).
pub struct Interrupt {
    pub flag: Arc<std::sync::atomic::AtomicBool>,
    signal: Arc<Mutex<Option<&'static str>>>,
}

impl Interrupt {
    /// Start watching (a thread with its own small runtime).
    pub fn watch() -> Self {
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let signal = Arc::new(Mutex::new(None));
        let (f, s) = (flag.clone(), signal.clone());
        let started = std::thread::Builder::new().name("signals".into()).spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                let name = signal_name().await;
                *s.lock().unwrap_or_else(|p| p.into_inner()) = Some(name);
                f.store(true, std::sync::atomic::Ordering::SeqCst);
                eprintln!("{name}: stopping at the next batch boundary (send it again to stop at once)");
                signal_name().await;
                eprintln!("stopped at once; the knowledge base stays at its last commit");
                std::process::exit(130);
            });
        });
        if let Err(e) = started {
            tracing::warn!("signals are not watched: {e}");
        }
        Interrupt { flag, signal }
    }

    /// The signal received, if any.
    pub fn signal(&self) -> Option<&'static str> {
        *self.signal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The conventional exit status for it (130 for SIGINT, 143 for SIGTERM).
    pub fn exit_code(&self) -> i32 {
        match self.signal() {
            Some("SIGTERM") => 143,
            _ => 130,
        }
    }
}
