//! `POST /v1/ask` (native, `?stream=true` for SSE) and `POST /v1/chat/completions`
//! (OpenAI-compatible, SSE when `stream: true`). Citations, the handoff flag and the rest of the
//! answer travel in the `xiaoguan` extension field, on every chunk and in full on the last one.

use super::Caller;
use crate::auth::Action;
use crate::error::{ApiError, ErrorBody, Json, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use utoipa::ToSchema;
use xiaoguan_assist::qa::rewrite::{Role, Turn};
use xiaoguan_assist::qa::{Answer, AnswerMode, AskRequest, HANDOFF_TEXT};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AskBody {
    /// At most `max_question_chars` characters (2,000 by default), not only spaces.
    #[schema(min_length = 1, max_length = 2000, pattern = r"\S")]
    pub question: String,
    /// Answer from these knowledge bases only (within the key's scope).
    #[serde(default)]
    pub kbs: Option<Vec<String>>,
    /// Remember the conversation under this id; follow-ups are rewritten with it.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    pub conversation_id: Option<String>,
    /// auto | extractive | generate
    #[serde(default)]
    #[schema(pattern = "^(auto|extractive|generate)$")]
    pub mode: Option<String>,
    /// Take every region's local texts as applicable (by default another region's local rule is
    /// only listed as a reference, 外地规定，仅供参考).
    #[serde(default)]
    pub any_region: bool,
}

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    #[serde(default)]
    pub stream: bool,
}

fn parse_mode(m: Option<&str>) -> Result<AnswerMode, ApiError> {
    match m.unwrap_or("auto") {
        "auto" => Ok(AnswerMode::Auto),
        "extractive" => Ok(AnswerMode::Extractive),
        "generate" => Ok(AnswerMode::Generate),
        other => Err(ApiError::bad_request(format!("mode must be auto, extractive or generate, not '{other}'"))),
    }
}

/// Sets the cancel flag when dropped: a client that goes away stops its generation.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Piece {
    Text(String),
    Done(Box<Answer>),
    Failed(ApiError),
}

fn audit(key_id: &str, a: &Answer) {
    let citations: Vec<&str> = a.citations.iter().map(|c| c.chunk_id.as_str()).collect();
    tracing::info!(
        target: "audit",
        key_id,
        answered_by = ?a.answered_by,
        handoff = a.handoff,
        kb_versions = ?a.kb_versions,
        embedder = %a.models.embedder,
        generator = ?a.models.generator,
        citations = ?citations,
        total_ms = a.timings.total_ms,
        "answer"
    );
    metrics::counter!("xiaoguan_answers_total", "answered_by" => format!("{:?}", a.answered_by).to_lowercase()).increment(1);
    if a.handoff {
        metrics::counter!("xiaoguan_handoffs_total").increment(1);
    }
    metrics::histogram!("xiaoguan_retrieval_seconds").record(a.timings.retrieve_ms / 1000.0);
    if a.timings.generate_ms > 0.0 {
        metrics::histogram!("xiaoguan_generation_seconds").record(a.timings.generate_ms / 1000.0);
    }
}

/// Validate, take the right slots, and run the assistant on a blocking thread; pieces of text
/// and then the final answer arrive on the returned channel.
async fn start(st: &Arc<AppState>, key_id: String, mut req: AskRequest) -> Result<(mpsc::Receiver<Piece>, CancelOnDrop), ApiError> {
    let ready = st.ready()?;
    let q = req.question.trim();
    if q.is_empty() {
        return Err(ApiError::bad_request("the question is empty"));
    }
    if q.chars().count() > st.limits.max_question_chars {
        return Err(ApiError::bad_request(format!("the question is longer than {} characters", st.limits.max_question_chars)));
    }
    let assistant = ready.assistant.clone();
    let needs_generator = assistant.will_generate(req.mode);
    let gen_permit = if needs_generator { Some(st.generator_slot().await?) } else { None };
    let cpu_permit = st.cpu_slot().await?;
    let cancel = Arc::new(AtomicBool::new(false));
    req.cancel = Some(cancel.clone());
    let (tx, rx) = mpsc::channel::<Piece>(64);
    let timeout = std::time::Duration::from_secs(st.limits.request_timeout_secs);
    let deadline_cancel = cancel.clone();
    let deadline = tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        deadline_cancel.store(true, Ordering::SeqCst);
    });
    tokio::task::spawn_blocking(move || {
        let permits = (gen_permit, cpu_permit);
        // Stop the request's timer when the answer is done (else it sleeps out the full timeout).
        let deadline = AbortOnDrop(deadline);
        let text_tx = tx.clone();
        let result = assistant.ask(&req, &mut |t| text_tx.blocking_send(Piece::Text(t.to_string())).is_ok());
        // Let go of the slots and the assistant before the caller hears the answer: a caller
        // that then shuts down must not find this thread holding the last reference to the
        // knowledge bases (their stores would be closed here, after the caller moved on).
        drop((permits, deadline, assistant));
        let _ = match result {
            Ok(a) => {
                audit(&key_id, &a);
                tx.blocking_send(Piece::Done(Box::new(a)))
            }
            Err(e) => tx.blocking_send(Piece::Failed(e.into())),
        };
    });
    Ok((rx, CancelOnDrop(cancel)))
}

async fn collect(mut rx: mpsc::Receiver<Piece>) -> Result<Answer, ApiError> {
    while let Some(p) = rx.recv().await {
        match p {
            Piece::Text(_) => {}
            Piece::Done(a) => return Ok(*a),
            Piece::Failed(e) => return Err(e),
        }
    }
    Err(ApiError::internal("the answer was lost"))
}

#[utoipa::path(post, path = "/v1/ask", request_body = AskBody,
    params(("stream" = Option<bool>, Query, description = "Stream as server-sent events: `delta` events, then one `answer` event")),
    responses((status = 200, description = "The answer: text, citations, answered_by, handoff, confidence, timings, KB versions, model ids"),
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
pub async fn ask(State(st): State<Arc<AppState>>, Caller(who): Caller, Query(q): Query<StreamQuery>, Json(body): Json<AskBody>) -> Result<Response, ApiError> {
    who.require(Action::Answer)?;
    let ready = st.ready()?;
    let served: Vec<String> = ready.assistant.kbs().iter().map(|k| k.def.id.clone()).collect();
    let kbs = who.scope(body.kbs.as_deref(), &served)?;
    if let Some(c) = &body.conversation_id {
        if c.is_empty() || c.len() > 128 {
            return Err(ApiError::bad_request("conversation_id must be 1..=128 characters"));
        }
    }
    // Conversations live in the ticket store under (key id, conversation id): any replica can
    // continue one, and another key's id finds nothing.
    let conversation = body.conversation_id.clone();
    let history = st.conversation(&who.key_id, conversation.as_deref()).await?;
    let req = AskRequest {
        question: body.question.clone(),
        history,
        kbs,
        mode: parse_mode(body.mode.as_deref())?,
        any_region: body.any_region,
        ..Default::default()
    };
    let (rx, guard) = start(&st, who.key_id.clone(), req).await?;
    if !q.stream {
        let a = collect(rx).await?;
        drop(guard);
        st.remember(&who.key_id, conversation.as_deref(), &body.question, &a.text).await;
        return Ok(axum::Json(a).into_response());
    }
    let (owner, question) = (who.key_id.clone(), body.question.clone());
    let st2 = st.clone();
    let stream = ReceiverStream::new(rx).then(move |p| {
        let _keep = &guard;
        let (st, owner, conv, question) = (st2.clone(), owner.clone(), conversation.clone(), question.clone());
        async move {
            let ev = match p {
                Piece::Text(t) => Event::default().event("delta").data(json!({"text": t}).to_string()),
                Piece::Done(a) => {
                    // Saved before the answer event goes out: a client that follows up as soon
                    // as it has the answer finds the turn on whichever replica it reaches.
                    st.remember(&owner, conv.as_deref(), &question, &a.text).await;
                    Event::default().event("answer").data(serde_json::to_string(&*a).unwrap_or_default())
                }
                Piece::Failed(e) => Event::default().event("error").data(json!({"error": {"type": e.kind, "message": e.message}}).to_string()),
            };
            Ok::<Event, Infallible>(ev)
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatMessageBody {
    /// user | assistant | system | developer | tool
    #[schema(pattern = "^(user|assistant|system|developer|tool)$")]
    pub role: String,
    /// A string, or an array of `{type: "text", text}` parts.
    #[schema(value_type = Object)]
    pub content: Value,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatRequest {
    /// "auto" (every KB in the key's scope) or a knowledge-base id.
    #[serde(default)]
    pub model: Option<String>,
    /// 1 to `max_messages` (40 by default); the last one a non-empty user message.
    #[schema(min_items = 1, max_items = 40)]
    pub messages: Vec<ChatMessageBody>,
    #[serde(default)]
    pub stream: bool,
    /// Cap on generated tokens.
    #[serde(default, deserialize_with = "crate::error::opt_count")]
    pub max_tokens: Option<usize>,
    /// Ignored: decoding is deterministic (same question, same KB version → same answer).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Extension: auto | extractive | generate (OpenAI clients pass it with `extra_body`).
    #[serde(default)]
    #[schema(pattern = "^(auto|extractive|generate)$")]
    pub mode: Option<String>,
}

fn content_text(v: &Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => Ok(parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")),
        Value::Null => Ok(String::new()),
        _ => Err(ApiError::bad_request("message content must be a string or an array of text parts")),
    }
}

fn extension(a: &Answer) -> Value {
    json!({
        "handoff": a.handoff, "answered_by": a.answered_by, "confidence": a.confidence, "citations": a.citations,
        "related": a.related, "kb_versions": a.kb_versions, "models": a.models, "rewritten_question": a.rewritten_question,
        "evidence": a.evidence, "timings": a.timings,
    })
}

#[utoipa::path(post, path = "/v1/chat/completions", request_body = ChatRequest,
    responses((status = 200, description = "An OpenAI chat.completion (or a stream of chat.completion.chunk) with the `xiaoguan` extension field: handoff, citations, answered_by, confidence, KB versions, models"),
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
pub async fn chat(State(st): State<Arc<AppState>>, Caller(who): Caller, Json(body): Json<ChatRequest>) -> Result<Response, ApiError> {
    who.require(Action::Answer)?;
    let ready = st.ready()?;
    if body.messages.is_empty() {
        return Err(ApiError::bad_request("messages is empty"));
    }
    if body.messages.len() > st.limits.max_messages {
        return Err(ApiError::bad_request(format!("at most {} messages per request", st.limits.max_messages)));
    }
    let mut turns = Vec::new();
    for m in &body.messages {
        let text = content_text(&m.content)?;
        match m.role.as_str() {
            "user" => turns.push(Turn { role: Role::User, content: text }),
            "assistant" => turns.push(Turn { role: Role::Assistant, content: text }),
            "system" | "developer" | "tool" => {}
            other => return Err(ApiError::bad_request(format!("unknown message role '{other}'"))),
        }
    }
    let question = match turns.pop() {
        Some(t) if t.role == Role::User && !t.content.trim().is_empty() => t.content,
        _ => return Err(ApiError::bad_request("the last message must be a non-empty user message")),
    };
    let served: Vec<String> = ready.assistant.kbs().iter().map(|k| k.def.id.clone()).collect();
    let model = body.model.clone().unwrap_or_else(|| "auto".into());
    let requested = match model.as_str() {
        "auto" | "xiaoguan" => None,
        kb if served.iter().any(|s| s == kb) => Some(vec![kb.to_string()]),
        other => return Err(ApiError::not_found(format!("model '{other}' does not exist: use \"auto\" or one of {}", served.join(", ")))),
    };
    let kbs = who.scope(requested.as_deref(), &served)?;
    let req = AskRequest { question, history: turns, kbs, mode: parse_mode(body.mode.as_deref())?, max_new_tokens: body.max_tokens, ..Default::default() };
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let id = format!("chatcmpl-{created}{:x}", std::process::id());
    let (rx, guard) = start(&st, who.key_id.clone(), req).await?;
    if !body.stream {
        let a = collect(rx).await?;
        drop(guard);
        let completion = a.text.chars().count();
        return Ok(axum::Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": a.text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": body.messages.len(), "completion_tokens": completion, "total_tokens": body.messages.len() + completion},
            "xiaoguan": extension(&a),
        }))
        .into_response());
    }
    let first = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]});
    let (id2, model2) = (id.clone(), model.clone());
    let body_stream = ReceiverStream::new(rx).map(move |p| {
        let _keep = &guard;
        let chunk = match p {
            Piece::Text(t) => json!({"id": id2, "object": "chat.completion.chunk", "created": created, "model": model2,
                "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": null}],
                "xiaoguan": {"handoff": t.starts_with(HANDOFF_TEXT)}}),
            Piece::Done(a) => json!({"id": id2, "object": "chat.completion.chunk", "created": created, "model": model2,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "xiaoguan": extension(&a)}),
            Piece::Failed(e) => json!({"error": {"type": e.kind, "message": e.message}}),
        };
        Ok::<Event, Infallible>(Event::default().data(chunk.to_string()))
    });
    let stream = tokio_stream::once(Ok::<Event, Infallible>(Event::default().data(first.to_string())))
        .chain(body_stream)
        .chain(tokio_stream::once(Ok(Event::default().data("[DONE]"))));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}
