//! 智能数据分析 over the ticket store, for supervisors: hot issues, repeats, trends and
//! dispatch quality, 每周一题 candidates — as JSON, Markdown or HTML with charts.

use super::Caller;
use crate::auth::Action;
use crate::error::{ApiError, ErrorBody, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;
use xiaoguan_analytics::report::Section;
use xiaoguan_analytics::{Analysis, Config};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsQuery {
    /// Tickets received at or after (unix ms).
    pub since_ms: Option<i64>,
    /// Tickets received before (unix ms).
    pub until_ms: Option<i64>,
    /// json (default) | markdown | html
    #[param(pattern = "^(json|markdown|html)$")]
    pub format: Option<String>,
    /// Hot issues listed (1..=100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub top: Option<usize>,
    /// Days two tickets may be apart and still be one hot issue (1..=365, default 30).
    #[param(minimum = 1, maximum = 365)]
    pub window_days: Option<u32>,
}

fn section(name: &str) -> Result<Vec<Section>, ApiError> {
    Ok(match name {
        "hot" => vec![Section::Hot],
        "repeats" => vec![Section::Repeats],
        "trends" => vec![Section::Trends],
        "weekly" => vec![Section::Weekly],
        "report" => xiaoguan_analytics::report::ALL.to_vec(),
        other => return Err(ApiError::not_found(format!("no analytics section '{other}': hot, repeats, trends, weekly or report"))),
    })
}

#[utoipa::path(get, path = "/v1/analytics/{section}", params(("section" = String, Path, description = "hot | repeats | trends | weekly | report"), AnalyticsQuery),
    responses((status = 200, description = "The section over the stored tickets: JSON, Markdown, or HTML with SVG charts"),
               (status = 400, description = "Bad query", body = ErrorBody),
               (status = 401, description = "No or unknown key", body = ErrorBody),
               (status = 403, description = "Not a supervisor", body = ErrorBody),
               (status = 404, description = "No such section", body = ErrorBody),
               (status = 500, description = "Failed on the service's side", body = ErrorBody),
               (status = 503, description = "Shutting down", body = ErrorBody)))]
pub async fn analytics(State(st): State<Arc<AppState>>, Caller(who): Caller, Path(name): Path<String>, Query(q): Query<AnalyticsQuery>) -> Result<Response, ApiError> {
    who.require(Action::Analytics)?;
    let sections = section(&name)?;
    let format = q.format.clone().unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "markdown" | "html") {
        return Err(ApiError::bad_request(format!("format must be json, markdown or html, got '{format}'")));
    }
    let mut cfg = Config::default();
    match q.top {
        Some(n @ 1..=100) => cfg.top = n,
        Some(n) => return Err(ApiError::bad_request(format!("top must be 1..=100, got {n}"))),
        None => {}
    }
    match q.window_days {
        Some(d @ 1..=365) => cfg.window_days = d as f64,
        Some(d) => return Err(ApiError::bad_request(format!("window_days must be 1..=365, got {d}"))),
        None => {}
    }
    let (since, until) = (q.since_ms, q.until_ms);
    let store = st.history.store.clone();
    let cpu = st.cpu_slot().await?;
    let a = tokio::task::spawn_blocking(move || -> Result<Analysis, ApiError> {
        let _permit = cpu;
        let mut tickets = Vec::new();
        store.scan(&mut |t| {
            let at = t.ticket.received_at_ms;
            if since.is_none_or(|s| at >= s) && until.is_none_or(|u| at < u) {
                tickets.push(xiaoguan_assist::history::analytics_ticket(&t));
            }
            Ok(())
        })?;
        Ok(Analysis::run(&tickets, &cfg, &format!("ticket store ({})", store.backend())))
    })
    .await
    .map_err(|e| ApiError::internal(format!("worker failed: {e}")))??;
    Ok(match format.as_str() {
        "markdown" => ([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], xiaoguan_analytics::report::markdown_sections(&a, &sections)).into_response(),
        "html" => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], xiaoguan_analytics::report::html_sections(&a, &sections)).into_response(),
        _ => {
            let v = match name.as_str() {
                "hot" => serde_json::to_value(&a.hot),
                "repeats" => serde_json::to_value(&a.repeats),
                "trends" => serde_json::to_value(&a.trends),
                "weekly" => serde_json::to_value(&a.weekly),
                _ => serde_json::to_value(&a),
            }
            .map_err(|e| ApiError::internal(e.to_string()))?;
            axum::Json(serde_json::json!({"tickets": a.tickets, "similarity": a.similarity, name.as_str(): v})).into_response()
        }
    })
}
