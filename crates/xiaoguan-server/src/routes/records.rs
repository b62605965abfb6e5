//! Stored tickets: an agent's own list, a supervisor's view of all, the agent's decision,
//! deletion; the reviewers' queue (智能数据标注) and the labelled export.

use super::{blocking, Caller};
use crate::auth::{Action, Principal};
use crate::error::{ApiError, ErrorBody, Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use xiaoguan_tickets::{Decision, Review, TicketId, TicketQuery, TicketRecord, Verdict};

/// A stored ticket as the API shows it (without its embedding).
pub fn view(t: &TicketRecord) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("embedding");
        o.insert("closed".into(), t.closed().into());
        o.insert("unit_changed".into(), t.unit_changed().into());
    }
    v
}

/// An agent reads their own tickets; supervisors (and admins) any.
fn may_read(who: &Principal, t: &TicketRecord) -> Result<(), ApiError> {
    if who.role.may(Action::AllTickets) || t.ticket.key_id == who.key_id {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("ticket {} was assisted by another agent; key '{}' sees only its own", t.id, who.key_id)))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// At most this many (1..=200, default 50), newest first.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// Page backwards: only tickets with smaller ids.
    pub before_id: Option<TicketId>,
    /// Received at or after (unix ms).
    pub since_ms: Option<i64>,
    /// Received before (unix ms).
    pub until_ms: Option<i64>,
    /// Another agent's key id (supervisors only).
    pub key: Option<String>,
}

fn limit(l: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match l.unwrap_or(default) {
        n @ 1..=200 => Ok(n),
        n => Err(ApiError::bad_request(format!("limit must be 1..=200, got {n}"))),
    }
}

#[utoipa::path(get, path = "/v1/tickets", params(ListQuery),
    responses((status = 200, description = "Stored tickets, newest first: {tickets, next_before_id}"),
               (status = 400, description = "Bad query", body = ErrorBody),
               (status = 401, description = "No or unknown key", body = ErrorBody),
               (status = 403, description = "Outside the key's role", body = ErrorBody),
               (status = 500, description = "Failed on the service's side", body = ErrorBody),
               (status = 503, description = "Shutting down", body = ErrorBody)))]
pub async fn list(State(st): State<Arc<AppState>>, Caller(who): Caller, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    who.require(Action::Tickets)?;
    let all = who.role.may(Action::AllTickets);
    if q.key.is_some() && !all {
        return Err(ApiError::forbidden(format!("key '{}' may list only its own tickets", who.key_id)));
    }
    let query = TicketQuery {
        key_id: if all { q.key } else { Some(who.key_id.clone()) },
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        before_id: q.before_id,
        limit: limit(q.limit, 50)?,
    };
    let store = st.history.store.clone();
    let wanted = query.limit;
    let rows = blocking(move || Ok(store.list(&query)?)).await?;
    let next = (rows.len() == wanted).then(|| rows.last().map(|t| t.id)).flatten();
    Ok(axum::Json(json!({"tickets": rows.iter().map(view).collect::<Vec<_>>(), "next_before_id": next})).into_response())
}

#[utoipa::path(get, path = "/v1/tickets/{id}", params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, description = "The stored ticket with its predictions, decision and review"),
               (status = 400, description = "Bad id", body = ErrorBody),
               (status = 401, description = "No or unknown key", body = ErrorBody),
               (status = 403, description = "Another agent's ticket", body = ErrorBody),
               (status = 404, description = "No such ticket", body = ErrorBody),
               (status = 500, description = "Failed on the service's side", body = ErrorBody),
               (status = 503, description = "Shutting down", body = ErrorBody)))]
pub async fn get_one(State(st): State<Arc<AppState>>, Caller(who): Caller, Path(id): Path<TicketId>) -> Result<Response, ApiError> {
    who.require(Action::Tickets)?;
    let t = fetch(&st, id).await?;
    may_read(&who, &t)?;
    Ok(axum::Json(view(&t)).into_response())
}

/// Apply an update (false: no such ticket, 404) and return the ticket as it is now.
async fn update_then_get(
    store: Arc<dyn xiaoguan_tickets::TicketStore>,
    id: TicketId,
    update: impl FnOnce(&dyn xiaoguan_tickets::TicketStore) -> xiaoguan_tickets::Result<bool> + Send + 'static,
) -> Result<TicketRecord, ApiError> {
    blocking(move || {
        let gone = || ApiError::not_found(format!("no ticket {id}"));
        if !update(store.as_ref())? {
            return Err(gone());
        }
        store.get(id)?.ok_or_else(gone)
    })
    .await
}

async fn fetch(st: &Arc<AppState>, id: TicketId) -> Result<TicketRecord, ApiError> {
    let store = st.history.store.clone();
    blocking(move || store.get(id)?.ok_or_else(|| ApiError::not_found(format!("no ticket {id}")))).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// accepted | edited | rejected
    #[schema(pattern = "^(accepted|edited|rejected)$")]
    pub verdict: String,
    /// The unit the agent dispatched to, when not the suggested one.
    #[schema(max_length = 200)]
    pub unit: Option<String>,
    #[schema(max_length = 100)]
    pub request_type: Option<String>,
    #[schema(max_length = 100)]
    pub domain: Option<String>,
    #[schema(max_length = 100)]
    pub category: Option<String>,
    /// The reply as sent (masked when stored).
    #[schema(max_length = 20000)]
    pub reply: Option<String>,
    /// The unit that finally handled it (办结单位).
    #[schema(max_length = 200)]
    pub final_unit: Option<String>,
    /// The ticket is closed (办结).
    #[serde(default)]
    pub closed: bool,
}

fn bounded(name: &str, v: &Option<String>, max: usize) -> Result<(), ApiError> {
    match v {
        Some(s) if s.chars().count() > max => Err(ApiError::bad_request(format!("{name} is longer than {max} characters"))),
        Some(s) if s.trim().is_empty() => Err(ApiError::bad_request(format!("{name} is empty (leave it out instead)"))),
        Some(s) if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => Err(ApiError::bad_request(format!("{name} holds control characters"))),
        _ => Ok(()),
    }
}

#[utoipa::path(post, path = "/v1/tickets/{id}/decision", params(("id" = i64, Path, minimum = 1)), request_body = DecisionBody,
    responses((status = 200, description = "Stored; the ticket as it is now"),
               (status = 400, description = "Bad input", body = ErrorBody),
               (status = 401, description = "No or unknown key", body = ErrorBody),
               (status = 403, description = "Another agent's ticket", body = ErrorBody),
               (status = 404, description = "No such ticket", body = ErrorBody),
               (status = 413, description = "Body over max_body_bytes", body = ErrorBody),
               (status = 415, description = "Not application/json", body = ErrorBody),
               (status = 422, description = "JSON of the wrong shape", body = ErrorBody),
               (status = 500, description = "Failed on the service's side", body = ErrorBody),
               (status = 503, description = "Shutting down", body = ErrorBody)))]
pub async fn decide(State(st): State<Arc<AppState>>, Caller(who): Caller, Path(id): Path<TicketId>, Json(body): Json<DecisionBody>) -> Result<Response, ApiError> {
    who.require(Action::Tickets)?;
    let verdict = Verdict::parse(&body.verdict).ok_or_else(|| ApiError::bad_request(format!("verdict must be accepted, edited or rejected, got '{}'", body.verdict)))?;
    for (n, v, m) in [("unit", &body.unit, 200), ("request_type", &body.request_type, 100), ("domain", &body.domain, 100), ("category", &body.category, 100), ("reply", &body.reply, 20_000), ("final_unit", &body.final_unit, 200)] {
        bounded(n, v, m)?;
    }
    let t = fetch(&st, id).await?;
    may_read(&who, &t)?;
    let d = Decision {
        key_id: who.key_id.clone(),
        at_ms: xiaoguan_tickets::now_ms(),
        verdict,
        unit: body.unit,
        request_type: body.request_type,
        domain: body.domain,
        category: body.category,
        reply: body.reply,
        final_unit: body.final_unit,
        closed: body.closed,
    };
    let store = st.history.store.clone();
    let t = update_then_get(store, id, move |s| s.decide(id, &d)).await?;
    metrics::counter!("xiaoguan_ticket_decisions_total", "verdict" => verdict.as_str(), "unit_changed" => t.unit_changed().to_string()).increment(1);
    Ok(axum::Json(view(&t)).into_response())
}

#[utoipa::path(delete, path = "/v1/tickets/{id}", params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, description = "Deleted, with its feedback"),
               (status = 400, description = "Bad id", body = ErrorBody),
               (status = 401, description = "No or unknown key", body = ErrorBody),
               (status = 403, description = "Outside the key's role", body = ErrorBody),
               (status = 404, description = "No such ticket", body = ErrorBody),
               (status = 500, description = "Failed on the service's side", body = ErrorBody),
               (status = 503, description = "Shutting down", body = ErrorBody)))]
pub async fn remove(State(st): State<Arc<AppState>>, Caller(who): Caller, Path(id): Path<TicketId>) -> Result<Response, ApiError> {
    who.require(Action::DeleteTickets)?;
    let store = st.history.store.clone();
    if !blocking(move || Ok(store.delete(id)?)).await? {
        return Err(ApiError::not_found(format!("no ticket {id}")));
    }
    Ok(axum::Json(json!({"id": id, "deleted": true})).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    /// At most this many (1..=200, default 20), oldest first.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/review/queue", params(QueueQuery),
    responses((status = 200, description = "Tickets to review: the classifiers were unsure or an agent corrected them; {tickets, pending}"),
               (status = 400, description = "Bad query", body = ErrorBody),
               (status = 401, description = "No or unknown key", body = ErrorBody),
               (status = 403, description = "Not a reviewer", body = ErrorBody),
               (status = 500, description = "Failed on the service's side", body = ErrorBody),
               (status = 503, description = "Shutting down", body = ErrorBody)))]
pub async fn queue(State(st): State<Arc<AppState>>, Caller(who): Caller, Query(q): Query<QueueQuery>) -> Result<Response, ApiError> {
    who.require(Action::Review)?;
    let n = limit(q.limit, 20)?;
    let store = st.history.store.clone();
    let rows = blocking(move || Ok(store.review_queue(n)?)).await?;
    Ok(axum::Json(json!({"tickets": rows.iter().map(view).collect::<Vec<_>>()})).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    /// The confirmed (or fixed) labels; at least one.
    #[schema(max_length = 100)]
    pub request_type: Option<String>,
    #[schema(max_length = 100)]
    pub domain: Option<String>,
    #[schema(max_length = 100)]
    pub category: Option<String>,
    #[schema(max_length = 200)]
    pub unit: Option<String>,
    #[schema(max_length = 2000)]
    pub note: Option<String>,
}

#[utoipa::path(post, path = "/v1/review/{id}", params(("id" = i64, Path, minimum = 1)), request_body = ReviewBody,
    responses((status = 200, description = "Confirmed: the ticket leaves the queue and becomes a training row"),
               (status = 400, description = "Bad input", body = ErrorBody),
               (status = 401, description = "No or unknown key", body = ErrorBody),
               (status = 403, description = "Not a reviewer", body = ErrorBody),
               (status = 404, description = "No such ticket", body = ErrorBody),
               (status = 413, description = "Body over max_body_bytes", body = ErrorBody),
               (status = 415, description = "Not application/json", body = ErrorBody),
               (status = 422, description = "JSON of the wrong shape", body = ErrorBody),
               (status = 500, description = "Failed on the service's side", body = ErrorBody),
               (status = 503, description = "Shutting down", body = ErrorBody)))]
pub async fn review(State(st): State<Arc<AppState>>, Caller(who): Caller, Path(id): Path<TicketId>, Json(body): Json<ReviewBody>) -> Result<Response, ApiError> {
    who.require(Action::Review)?;
    for (n, v, m) in [("request_type", &body.request_type, 100), ("domain", &body.domain, 100), ("category", &body.category, 100), ("unit", &body.unit, 200), ("note", &body.note, 2000)] {
        bounded(n, v, m)?;
    }
    if body.request_type.is_none() && body.domain.is_none() && body.category.is_none() && body.unit.is_none() {
        return Err(ApiError::bad_request("a review confirms at least one of request_type, domain, category, unit"));
    }
    let r = Review { reviewer: who.key_id.clone(), at_ms: xiaoguan_tickets::now_ms(), request_type: body.request_type, domain: body.domain, category: body.category, unit: body.unit, note: body.note };
    let store = st.history.store.clone();
    let t = update_then_get(store, id, move |s| s.review(id, &r)).await?;
    metrics::counter!("xiaoguan_reviews_total").increment(1);
    Ok(axum::Json(view(&t)).into_response())
}

/// Reviewed tickets as training rows: {id, text, title, request_type, domain, category, unit}.
pub fn labelled_rows(rows: &[TicketRecord]) -> Vec<Value> {
    rows.iter()
        .filter_map(|t| {
            let r = t.review.as_ref()?;
            Some(json!({
                "id": format!("ticket-{}", t.id), "title": t.ticket.title, "text": t.ticket.text,
                "request_type": r.request_type, "domain": r.domain, "category": r.category, "unit": r.unit,
                "reviewer": r.reviewer, "reviewed_at_ms": r.at_ms,
            }))
        })
        .collect()
}

#[utoipa::path(get, path = "/v1/review/labelled",
    responses((status = 200, description = "Reviewed tickets as labelled JSONL (application/x-ndjson), the training rows `classify train` adds"),
               (status = 401, description = "No or unknown key", body = ErrorBody),
               (status = 403, description = "Not a reviewer", body = ErrorBody),
               (status = 500, description = "Failed on the service's side", body = ErrorBody),
               (status = 503, description = "Shutting down", body = ErrorBody)))]
pub async fn labelled(State(st): State<Arc<AppState>>, Caller(who): Caller) -> Result<Response, ApiError> {
    who.require(Action::Review)?;
    let store = st.history.store.clone();
    let rows = blocking(move || Ok(store.reviewed()?)).await?;
    let mut body = String::new();
    for r in labelled_rows(&rows) {
        body.push_str(&r.to_string());
        body.push('\n');
    }
    Ok(([(axum::http::header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}
