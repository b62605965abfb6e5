//! Ticket assist, classification, hybrid search and feedback.

use super::{blocking, Caller};
use crate::auth::Action;
use crate::error::{ApiError, ErrorBody, Json};
use crate::feedback::FeedbackRequest;
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::ToSchema;
use xiaoguan_assist::classify::embedding_text;
use xiaoguan_assist::history::RecordMeta;
use xiaoguan_assist::ticket::{TicketInput, MAX_TICKET_CHARS};
use xiaoguan_kb::SearchOptions;
use xiaoguan_models::TextKind;
use xiaoguan_store::{Condition, Filter};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketBody {
    /// At most 5,000 characters, not only spaces.
    #[schema(min_length = 1, max_length = 5000, pattern = r"\S")]
    pub text: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Draft the reply with the generator (slow on CPU; queued).
    #[serde(default)]
    pub generate: bool,
    /// The reporter's phone number or account: only a salted hash is kept, to find their
    /// earlier tickets (repeats).
    #[serde(default)]
    #[schema(max_length = 64)]
    pub reporter: Option<String>,
    /// When the ticket came in (unix ms, 2000-01-01 to 2100-01-01; default now).
    #[serde(default, deserialize_with = "crate::error::opt_whole")]
    #[schema(minimum = 946_684_800_000i64, maximum = 4_102_444_800_000i64)]
    pub received_at_ms: Option<i64>,
    /// Keep it in the ticket store (default true; false: assist only, nothing kept).
    #[serde(default)]
    pub store: Option<bool>,
}

#[utoipa::path(post, path = "/v1/tickets/assist", request_body = TicketBody,
    responses((status = 200, description = "Masked text, summary, request type, domain, category, departments with reasons, 弱信号 flags, suggested reply, similar tickets, review flags; ticket_id and repeats (此前已有 N 件同类诉求) when stored"),
               (status = 400, description = "Malformed JSON or bad input", body = ErrorBody),
               (status = 401, description = "No or unknown key", body = ErrorBody),
               (status = 403, description = "Outside the key's role or scope", body = ErrorBody),
               (status = 404, description = "Unknown knowledge base, classifier or model", body = ErrorBody),
               (status = 413, description = "Body over max_body_bytes", body = ErrorBody),
               (status = 415, description = "Not application/json", body = ErrorBody),
               (status = 422, description = "JSON of the wrong shape (missing or unknown fields, wrong types)", body = ErrorBody),
               (status = 429, description = "Generator queue full (Retry-After)", body = ErrorBody),
               (status = 500, description = "Failed on the service's side", body = ErrorBody),
               (status = 503, description = "Still loading, or shutting down", body = ErrorBody)))]
pub async fn assist(State(st): State<Arc<AppState>>, Caller(who): Caller, Json(body): Json<TicketBody>) -> Result<Response, ApiError> {
    who.require(Action::Tickets)?;
    let ready = st.ready()?;
    if body.text.trim().is_empty() {
        return Err(ApiError::bad_request("the ticket text is empty"));
    }
    if body.text.chars().count() > MAX_TICKET_CHARS {
        return Err(ApiError::bad_request(format!("the ticket is longer than {MAX_TICKET_CHARS} characters")));
    }
    let served: Vec<String> = ready.assistant.kbs().iter().map(|k| k.def.id.clone()).collect();
    let kbs = who.scope(None, &served)?;
    let gen = if body.generate && ready.assistant.generator().is_some() { Some(st.generator_slot().await?) } else { None };
    let cpu = st.cpu_slot().await?;
    if body.reporter.as_ref().is_some_and(|r| r.chars().count() > 64) {
        return Err(ApiError::bad_request("reporter is longer than 64 characters"));
    }
    if body.received_at_ms.is_some_and(|t| !(946_684_800_000..=4_102_444_800_000).contains(&t)) {
        return Err(ApiError::bad_request("received_at_ms must be a time between 2000-01-01 and 2100-01-01 (unix ms)"));
    }
    let tickets = ready.tickets.clone();
    let store = st.config.database.store_tickets && body.store != Some(false);
    let history = st.history.clone();
    let meta = RecordMeta { key_id: who.key_id.clone(), reporter: body.reporter, received_at_ms: body.received_at_ms };
    let input = TicketInput { text: body.text, title: body.title, fields: body.fields, generate: body.generate, kbs, exclude_id: None };
    let r = blocking(move || {
        let _permits = (gen, cpu);
        let mut r = tickets.assist(&input).map_err(ApiError::from)?;
        if store {
            history.record(&tickets, &input, &mut r, &meta).map_err(ApiError::from)?;
        }
        Ok(r)
    })
    .await?;
    if r.repeats.as_ref().is_some_and(|x| x.count > 0) {
        metrics::counter!("xiaoguan_ticket_repeats_total").increment(1);
    }
    metrics::counter!("xiaoguan_tickets_total", "escalate" => r.signals.escalate.to_string()).increment(1);
    Ok(axum::Json(r).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyBody {
    /// At most 5,000 characters, not only spaces.
    #[schema(min_length = 1, max_length = 5000, pattern = r"\S")]
    pub text: String,
    /// request-type | domain | category-l1 | department (the names in assist.toml)
    pub classifier: String,
}

#[utoipa::path(post, path = "/v1/classify", request_body = ClassifyBody,
    responses((status = 200, description = "label (null when abstaining), confidence, ranked labels, similar examples"),
               (status = 400, description = "Malformed JSON or bad input", body = ErrorBody),
               (status = 401, description = "No or unknown key", body = ErrorBody),
               (status = 403, description = "Outside the key's role or scope", body = ErrorBody),
               (status = 404, description = "Unknown knowledge base, classifier or model", body = ErrorBody),
               (status = 413, description = "Body over max_body_bytes", body = ErrorBody),
               (status = 415, description = "Not application/json", body = ErrorBody),
               (status = 422, description = "JSON of the wrong shape (missing or unknown fields, wrong types)", body = ErrorBody),
               (status = 500, description = "Failed on the service's side", body = ErrorBody),
               (status = 503, description = "Still loading, or shutting down", body = ErrorBody)))]
pub async fn classify(State(st): State<Arc<AppState>>, Caller(who): Caller, Json(body): Json<ClassifyBody>) -> Result<Response, ApiError> {
    who.require(Action::Classify)?;
    let ready = st.ready()?;
    if body.text.trim().is_empty() {
        return Err(ApiError::bad_request("the text is empty"));
    }
    if body.text.chars().count() > MAX_TICKET_CHARS {
        return Err(ApiError::bad_request(format!("the text is longer than {MAX_TICKET_CHARS} characters")));
    }
    let tickets = ready.tickets.clone();
    let cpu = st.cpu_slot().await?;
    let p = blocking(move || {
        let _permit = cpu;
        let c = &tickets.classifiers;
        let model = [&c.request_type, &c.domain, &c.category_l1, &c.department]
            .into_iter()
            .flatten()
            .find(|m| m.meta.name == body.classifier)
            .ok_or_else(|| ApiError::not_found(format!("no classifier '{}' is loaded", body.classifier)))?;
        let emb = match (&tickets.embedder, model.needs_embedding()) {
            (Some(e), true) => Some(e.embed(&[&embedding_text(&body.text)], TextKind::Query).map_err(|e| ApiError::internal(e.to_string()))?.remove(0)),
            _ => None,
        };
        Ok(model.predict(&body.text, emb.as_deref()))
    })
    .await?;
    Ok(axum::Json(p).into_response())
}

/// Hits one search may ask for (the schema's maximum of `limit`).
const MAX_SEARCH_HITS: usize = 200;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    pub kb: String,
    /// At most `max_question_chars` characters (2,000 by default), not only spaces.
    #[schema(min_length = 1, max_length = 2000, pattern = r"\S")]
    pub query: String,
    #[serde(default, deserialize_with = "crate::error::opt_count")]
    #[schema(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// Payload filters (all must match): FIELD → VALUE for an exact match, e.g. {"doc_type": "law",
    /// "article_no": 16}, or FIELD → {"gte": …, "lte": …} for a range of numbers or dates, e.g.
    /// {"date": {"lte": "2015-06-30"}} for the versions issued by that day.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub filters: BTreeMap<String, Value>,
    /// Weights of the dense and BM25 legs in the rank fusion (default 1 and 1; 0 switches a leg off).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub dense_weight: Option<f32>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub bm25_weight: Option<f32>,
}

fn filter_condition(field: String, v: Value) -> Result<Condition, ApiError> {
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(Condition::Eq { field, value: v }),
        Value::Object(range) if range.keys().all(|k| k == "gte" || k == "lte") => {
            Ok(xiaoguan_kb::filters::range_condition(&field, range.get("gte"), range.get("lte"))?)
        }
        _ => Err(ApiError::bad_request(format!("filter '{field}' must be a string, number, boolean or {{\"gte\": …, \"lte\": …}}"))),
    }
}

#[utoipa::path(post, path = "/v1/search", request_body = SearchBody,
    responses((status = 200, description = "Hybrid (dense + BM25) hits with citations"),
               (status = 400, description = "Malformed JSON or bad input", body = ErrorBody),
               (status = 401, description = "No or unknown key", body = ErrorBody),
               (status = 403, description = "Outside the key's role or scope", body = ErrorBody),
               (status = 404, description = "Unknown knowledge base, classifier or model", body = ErrorBody),
               (status = 413, description = "Body over max_body_bytes", body = ErrorBody),
               (status = 415, description = "Not application/json", body = ErrorBody),
               (status = 422, description = "JSON of the wrong shape (missing or unknown fields, wrong types)", body = ErrorBody),
               (status = 500, description = "Failed on the service's side", body = ErrorBody),
               (status = 503, description = "Still loading, or shutting down", body = ErrorBody)))]
pub async fn search(State(st): State<Arc<AppState>>, Caller(who): Caller, Json(body): Json<SearchBody>) -> Result<Response, ApiError> {
    who.require(Action::Search)?;
    let ready = st.ready()?;
    if !who.sees(&body.kb) {
        return Err(ApiError::forbidden(format!("key '{}' has no access to knowledge base '{}'", who.key_id, body.kb)));
    }
    let kb = ready.assistant.kbs().iter().find(|k| k.def.id == body.kb).cloned().ok_or_else(|| ApiError::not_found(format!("unknown knowledge base '{}'", body.kb)))?;
    if body.query.chars().count() > st.limits.max_question_chars {
        return Err(ApiError::bad_request(format!("the query is longer than {} characters", st.limits.max_question_chars)));
    }
    // A ceiling on the passages one request can make the store gather and the service serialize.
    if let Some(n) = body.limit.filter(|n| !(1..=MAX_SEARCH_HITS).contains(n)) {
        return Err(ApiError::bad_request(format!("limit must be 1 to {MAX_SEARCH_HITS}, got {n}")));
    }
    let mut filter = Filter::none();
    for (k, v) in body.filters {
        filter = filter.and(filter_condition(k, v)?);
    }
    let opts = SearchOptions {
        limit: body.limit.unwrap_or(5),
        filter,
        dense_weight: body.dense_weight.unwrap_or(1.0),
        bm25_weight: body.bm25_weight.unwrap_or(1.0),
        ..Default::default()
    };
    let cpu = st.cpu_slot().await?;
    let hits = blocking(move || {
        let _permit = cpu;
        kb.search(&body.query, &opts).map_err(ApiError::from)
    })
    .await?;
    Ok(axum::Json(json!({"kb": body.kb, "hits": hits})).into_response())
}

#[utoipa::path(post, path = "/v1/feedback", request_body = FeedbackRequest,
    responses((status = 200, description = "Committed to the ticket store, with its id"),
               (status = 400, description = "Malformed JSON or bad input", body = ErrorBody),
               (status = 401, description = "No or unknown key", body = ErrorBody),
               (status = 403, description = "Outside the key's role or scope", body = ErrorBody),
               (status = 404, description = "Unknown knowledge base, classifier or model", body = ErrorBody),
               (status = 413, description = "Body over max_body_bytes", body = ErrorBody),
               (status = 415, description = "Not application/json", body = ErrorBody),
               (status = 422, description = "JSON of the wrong shape (missing or unknown fields, wrong types)", body = ErrorBody),
               (status = 500, description = "Failed on the service's side", body = ErrorBody),
               (status = 503, description = "Still loading, or shutting down", body = ErrorBody)))]
pub async fn feedback(State(st): State<Arc<AppState>>, Caller(who): Caller, Json(body): Json<FeedbackRequest>) -> Result<Response, ApiError> {
    who.require(Action::Feedback)?;
    if body.target.trim().is_empty() || body.target.len() > 64 || body.target.chars().any(char::is_control) {
        return Err(ApiError::bad_request("target must be 1..=64 characters, none of them control characters"));
    }
    if body.input.chars().count() > MAX_TICKET_CHARS || body.suggestion.chars().count() > 20_000 || body.edited.as_ref().is_some_and(|e| e.chars().count() > 20_000) {
        return Err(ApiError::bad_request("feedback text is too long"));
    }
    if body.verdict == crate::feedback::Verdict::Edit && body.edited.as_deref().is_none_or(|e| e.trim().is_empty()) {
        return Err(ApiError::bad_request("an `edit` verdict needs the edited text"));
    }
    if body.ticket_id.is_some_and(|id| id < 1) {
        return Err(ApiError::bad_request("ticket_id must be a stored ticket's id (1 or more)"));
    }
    let store = st.history.store.clone();
    let rec = crate::feedback::entry(&who.key_id, body);
    let rec = blocking(move || {
        store.add_feedback(&rec)?;
        Ok(rec)
    })
    .await?;
    metrics::counter!("xiaoguan_feedback_total").increment(1);
    Ok(axum::Json(json!({"id": rec.id, "stored": true})).into_response())
}
