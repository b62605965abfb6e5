//! The router: routes, the caller extractor (keys and scopes), request ids, metrics, limits.

pub mod analytics;
pub mod answer;
pub mod kbs;
pub mod ops;
pub mod records;
pub mod tickets;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use std::sync::Arc;
use std::time::Instant;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Run blocking work (models, the stores) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

/// The authenticated caller of a request.
pub struct Caller(pub Principal);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        if state.keys.is_empty() {
            return Ok(Caller(Principal::open()));
        }
        let auth = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        state.keys.authenticate(auth).map(Caller)
    }
}

/// Request counts and latencies by route and status.
async fn record(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("xiaoguan_http_requests_total", &labels).increment(1);
    metrics::histogram!("xiaoguan_http_request_seconds", &labels).record(started.elapsed().as_secs_f64());
    resp
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

pub fn router(state: Arc<AppState>) -> Router {
    let limits = state.limits.clone();
    let uploads = Router::new()
        .route("/v1/kbs/{id}/documents", post(kbs::upload))
        .layer(DefaultBodyLimit::max(limits.max_upload_bytes));
    let api = Router::new()
        .route("/v1/ask", post(answer::ask))
        .route("/v1/chat/completions", post(answer::chat))
        .route("/v1/tickets/assist", post(tickets::assist))
        .route("/v1/classify", post(tickets::classify))
        .route("/v1/search", post(tickets::search))
        .route("/v1/feedback", post(tickets::feedback))
        .route("/v1/tickets", get(records::list))
        .route("/v1/tickets/{id}", get(records::get_one).delete(records::remove))
        .route("/v1/tickets/{id}/decision", post(records::decide))
        .route("/v1/review/queue", get(records::queue))
        .route("/v1/review/labelled", get(records::labelled))
        .route("/v1/review/{id}", post(records::review))
        .route("/v1/analytics/{section}", get(analytics::analytics))
        .route("/v1/kbs", get(kbs::list))
        .route("/v1/kbs/{id}", get(kbs::get_one))
        .route("/v1/kbs/{id}/documents/{doc}", delete(kbs::remove))
        .route("/v1/kbs/{id}/reindex", post(kbs::reindex))
        .route("/v1/kbs/{id}/uploads/{upload_id}", get(kbs::upload_status))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .merge(uploads);
    Router::new()
        .merge(api)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/", get(ops::console))
        .route("/console", get(ops::console))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(record))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // Method, path and request id only: bodies may hold personal data.
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}
