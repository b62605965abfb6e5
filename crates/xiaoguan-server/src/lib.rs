//! The server layer of xiaoguan: the HTTP service the 小莞 assistant and the hotline console talk
//! to. axum routes over the assist layer, API keys with roles and per-KB scopes, limits and a
//! bounded generator queue, Prometheus metrics, an fsync'd feedback log, the console page.

pub mod auth;
pub mod config;
pub mod error;
pub mod feedback;
pub mod routes;
pub mod state;

use auth::Keys;
use config::ServerConfig;
use feedback::FeedbackLog;
use metrics_exporter_prometheus::PrometheusBuilder;
use state::{AppState, Ready};
use std::net::SocketAddr;
use std::path::Path;
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
        routes::kbs::upload, routes::kbs::remove, routes::kbs::reindex, routes::ops::healthz, routes::ops::readyz,
    ),
    components(schemas(
        routes::answer::AskBody, routes::answer::ChatRequest, routes::answer::ChatMessageBody, routes::tickets::TicketBody,
        routes::tickets::ClassifyBody, routes::tickets::SearchBody, feedback::FeedbackRequest,
    ))
)]
pub struct ApiDoc;

/// Build the shared state; `Ready` is filled in later by `build`.
pub fn state(config: ServerConfig, keys: Keys, feedback_path: &Path) -> anyhow::Result<Arc<AppState>> {
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
    let feedback = FeedbackLog::open(feedback_path).map_err(|e| anyhow::anyhow!("feedback log {}: {e}", feedback_path.display()))?;
    Ok(Arc::new(AppState {
        ready: OnceLock::new(),
        startup_error: Mutex::new(None),
        keys,
        limits: config.limits.clone(),
        generator: Arc::new(Semaphore::new(1)),
        cpu: Arc::new(Semaphore::new(config.limits.cpu_workers.max(1))),
        config,
        feedback,
        metrics: handle,
        waiting: AtomicUsize::new(0),
        conversations: Mutex::new(Default::default()),
        ingest_locks: Mutex::new(Default::default()),
    }))
}

/// Serve until SIGINT/SIGTERM, then drain in-flight requests. `build` loads models and KBs on a
/// blocking thread while the port already answers /healthz (and 503 elsewhere).
pub async fn serve(st: Arc<AppState>, build: impl FnOnce() -> anyhow::Result<Ready> + Send + 'static) -> anyhow::Result<()> {
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
    axum::serve(listener, routes::router(st)).with_graceful_shutdown(shutdown_signal()).await?;
    tracing::warn!("stopped: in-flight requests drained");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
