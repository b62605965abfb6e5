//! Health, readiness, metrics, the OpenAPI document and the agent console page.

use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use utoipa::OpenApi;

#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "The process is up")))]
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "Models loaded and knowledge bases open"), (status = 503, description = "Still loading, or failed to start")))]
pub async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    match st.ready.get() {
        Some(r) => {
            let kbs: Vec<_> = r.assistant.kbs().iter().map(|k| json!({"id": k.def.id, "version": k.version(), "backend": k.backend_description()})).collect();
            axum::Json(json!({
                "status": "ready", "kbs": kbs,
                "embedder": r.assistant.embedder().model_id(),
                "generator": r.assistant.generator().map(|g| g.model_id().to_string()),
                "ticket_store": {"backend": st.history.store.backend(), "location": st.history.store.location(), "storing": st.config.database.store_tickets},
            }))
            .into_response()
        }
        None => {
            let why = st.startup_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": if why.is_some() { "failed" } else { "loading" }, "error": why}))).into_response()
        }
    }
}

pub async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render()).into_response()
}

pub async fn openapi() -> Response {
    axum::Json(crate::ApiDoc::openapi()).into_response()
}

pub async fn console() -> Html<&'static str> {
    Html(include_str!("../../static/console.html"))
}
