//! Knowledge bases: list and inspect (within the key's scope); admins upload documents (ingested
//! incrementally), delete uploaded documents, and reindex.
//!
//! An upload is read as the ingest will read it, within the KB's reader limits, before it is
//! stored: a file over a limit is refused (413, the limit named), an unreadable one too (400).
//! The file then joins the KB's bounded ingest queue ([`crate::jobs`]): a full queue is 429 with
//! Retry-After, and the request waits for its ingest at most `upload_wait_secs` before it answers
//! 202 with an `upload_id` to poll at `GET /v1/kbs/{id}/uploads/{upload_id}`.

use super::Caller;
use crate::auth::{Action, Principal};
use crate::error::{ApiError, ErrorBody, Path, Query};
use crate::jobs::{self, Enqueue, Job, JobKind, JobState, JobStatus};
use crate::state::{AppState, Ready};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use xiaoguan_kb::ingest::{check_upload, list_quarantine, over_limit};
use xiaoguan_kb::KnowledgeBase;

fn kb_of(ready: &Ready, id: &str) -> Result<Arc<KnowledgeBase>, ApiError> {
    ready.assistant.kbs().iter().find(|k| k.def.id == id).cloned().ok_or_else(|| ApiError::not_found(format!("unknown knowledge base '{id}'")))
}

fn summary(kb: &KnowledgeBase) -> serde_json::Value {
    let s = kb.state();
    json!({"id": kb.def.id, "title": kb.def.title, "domain": kb.def.domain, "description": kb.def.description,
           "embedder": kb.def.embedder, "version": s.version, "updated_at": s.updated_at,
           "documents": s.documents.len(), "chunks": s.total_chunks(), "backend": kb.backend_description()})
}

/// On a shared store, pick up commits another replica made (a blocking check, throttled).
async fn refreshed(kbs: Vec<Arc<KnowledgeBase>>) -> Result<Vec<Arc<KnowledgeBase>>, ApiError> {
    super::blocking(move || {
        for kb in &kbs {
            kb.refresh()?;
        }
        Ok(kbs)
    })
    .await
}

fn scope(who: &Principal, id: &str) -> Result<(), ApiError> {
    if who.sees(id) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("key '{}' has no access to knowledge base '{id}'", who.key_id)))
    }
}

#[utoipa::path(get, path = "/v1/kbs", responses(
    (status = 200, description = "Knowledge bases in the key's scope"),
    (status = 401, description = "No or unknown key", body = ErrorBody),
    (status = 403, description = "The key's role may not read KBs", body = ErrorBody),
    (status = 503, description = "Still loading", body = ErrorBody)))]
pub async fn list(State(st): State<Arc<AppState>>, Caller(who): Caller) -> Result<Response, ApiError> {
    who.require(Action::ReadKbs)?;
    let ready = st.ready()?;
    let seen: Vec<Arc<KnowledgeBase>> = ready.assistant.kbs().iter().filter(|k| who.sees(&k.def.id)).cloned().collect();
    let kbs: Vec<_> = refreshed(seen).await?.iter().map(|k| summary(k)).collect();
    Ok(axum::Json(json!({"kbs": kbs})).into_response())
}

#[utoipa::path(get, path = "/v1/kbs/{id}", params(("id" = String, Path)), responses(
    (status = 200, description = "Stats, documents, quarantined files (over a reader limit, with the reason) and the ingest queue"),
    (status = 400, description = "Bad path", body = ErrorBody),
    (status = 401, description = "No or unknown key", body = ErrorBody),
    (status = 403, description = "Outside the key's scope", body = ErrorBody),
    (status = 404, description = "Unknown", body = ErrorBody),
    (status = 503, description = "Still loading", body = ErrorBody)))]
pub async fn get_one(State(st): State<Arc<AppState>>, Caller(who): Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    who.require(Action::ReadKbs)?;
    scope(&who, &id)?;
    let kb = kb_of(st.ready()?, &id)?;
    let kb = refreshed(vec![kb]).await?.pop().expect("one KB");
    let mut v = summary(&kb);
    let docs: Vec<_> = kb.state().documents.iter().map(|(k, d)| json!({"doc_id": k, "title": d.title, "chunks": d.chunks})).collect();
    v["document_list"] = json!(docs);
    v["quarantine"] = json!(list_quarantine(&kb.dir)
        .iter()
        .map(|q| json!({"doc_id": q.key, "reason": q.reason, "limit": q.limit, "bytes": q.bytes, "at": q.at}))
        .collect::<Vec<_>>());
    v["ingest_queue"] = json!({"queued": st.jobs.queued(&id), "capacity": st.limits.upload_queue});
    Ok(axum::Json(v).into_response())
}

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    /// The file's name (a plain name with one of the supported extensions).
    pub filename: Option<String>,
}

const UPLOAD_TYPES: &[&str] = &["md", "txt", "html", "htm", "pdf", "docx", "json", "jsonl", "csv", "xlsx"];

fn check_name(name: &str) -> Result<(), ApiError> {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    if name.is_empty() || name.len() > 200 || name.starts_with('.') || name.contains(['/', '\\', '\0']) || name.contains("..") || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("filename must be a plain file name (no folders)"));
    }
    if !UPLOAD_TYPES.contains(&ext.as_str()) {
        return Err(ApiError::bad_request(format!("unsupported file type '.{ext}' (supported: {})", UPLOAD_TYPES.join(", "))));
    }
    Ok(())
}

/// Seconds a caller refused for a full queue should wait: about one ingest round.
const RETRY_AFTER_SECS: u64 = 10;

/// Queue the job, wait for it at most `upload_wait_secs`, and answer with its outcome or 202.
async fn submit(st: &Arc<AppState>, kb: Arc<KnowledgeBase>, job: Job, status: JobStatus, ok: impl FnOnce(&JobStatus) -> serde_json::Value) -> Result<Response, ApiError> {
    let id = job.id.clone();
    let kb_id = kb.def.id.clone();
    st.jobs.insert(status, st.limits.max_upload_statuses);
    match jobs::enqueue(st, kb, job) {
        Enqueue::Accepted => {}
        Enqueue::Full => {
            metrics::counter!("xiaoguan_ingest_shed_total").increment(1);
            st.jobs.update(&id, |s| {
                s.state = JobState::Refused;
                s.reason = Some("the ingest queue was full".into());
            });
            return Err(ApiError::queue_full(&kb_id, RETRY_AFTER_SECS));
        }
        Enqueue::Closed => {
            st.jobs.update(&id, |s| {
                s.state = JobState::Refused;
                s.reason = Some("the service is shutting down".into());
            });
            return Err(ApiError::unavailable("the service is shutting down"));
        }
    }
    let s = st.jobs.wait(&id, Duration::from_secs(st.limits.upload_wait_secs)).await.ok_or_else(|| ApiError::internal("the job's status was forgotten"))?;
    match s.state {
        JobState::Indexed => {
            let mut v = ok(&s);
            v["upload_id"] = json!(s.upload_id);
            v["state"] = json!(s.state);
            v["ingest"] = s.ingest.clone().unwrap_or_default();
            Ok(axum::Json(v).into_response())
        }
        JobState::Refused => {
            let reason = s.reason.unwrap_or_default();
            Err(if s.limit.is_some() { ApiError::over_limit(reason) } else { ApiError::bad_request(reason) })
        }
        JobState::Failed => Err(ApiError::internal(s.reason.unwrap_or_default())),
        JobState::Cancelled => Err(ApiError::unavailable(s.reason.unwrap_or_default())),
        JobState::Queued | JobState::Ingesting => {
            let url = format!("/v1/kbs/{kb_id}/uploads/{id}");
            let body = json!({"kb": kb_id, "upload_id": id, "state": s.state, "status_url": url, "doc_id": s.doc_id,
                              "message": format!("accepted; still {} after {} s: poll the status", if s.state == JobState::Queued { "queued" } else { "ingesting" }, st.limits.upload_wait_secs)});
            Ok((StatusCode::ACCEPTED, [(axum::http::header::LOCATION, url)], axum::Json(body)).into_response())
        }
    }
}

#[utoipa::path(post, path = "/v1/kbs/{id}/documents", params(("id" = String, Path), ("filename" = String, Query, description = "The file's name: a plain name ending in .md, .txt, .html, .htm, .pdf, .docx, .json, .jsonl, .csv or .xlsx",
        pattern = r"^(?!.*\.\.)[^./\\\x00-\x1f\x7f-\x9f][^/\\\x00-\x1f\x7f-\x9f]{0,40}\.(md|txt|html|htm|pdf|docx|json|jsonl|csv|xlsx)$")),
    request_body(content = Vec<u8>, description = "The file's bytes", content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Stored and ingested incrementally (`upload_id`, `state` = indexed, the ingest report)"),
        (status = 202, description = "Accepted and queued or ingesting: poll `status_url`"),
        (status = 400, description = "Bad or missing name, unsupported type, empty or unreadable file", body = ErrorBody),
        (status = 401, description = "No or unknown key", body = ErrorBody),
        (status = 403, description = "Not an admin key, or outside its scope", body = ErrorBody),
        (status = 404, description = "Unknown knowledge base", body = ErrorBody),
        (status = 413, description = "Over max_upload_bytes, or over a reader limit (named in the message: unzipped bytes, compression ratio, pages, rows, …); nothing is stored", body = ErrorBody),
        (status = 429, description = "The KB's ingest queue is full, or uploads in flight are at max_uploads_in_flight_bytes (Retry-After)", body = ErrorBody),
        (status = 500, description = "The ingest failed", body = ErrorBody),
        (status = 503, description = "Still loading, or shutting down", body = ErrorBody)))]
pub async fn upload(State(st): State<Arc<AppState>>, Caller(who): Caller, Path(id): Path<String>, Query(q): Query<UploadQuery>, headers: axum::http::HeaderMap, body: axum::body::Body) -> Result<Response, ApiError> {
    who.require(Action::ManageKbs)?;
    scope(&who, &id)?;
    let ready = st.ready()?;
    let kb = kb_of(ready, &id)?;
    let name = q.filename.ok_or_else(|| ApiError::bad_request("give the file name: ?filename=NAME.md"))?;
    check_name(&name)?;
    if st.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::unavailable("the service is shutting down"));
    }
    // Before reading it: a full queue is refused at once.
    if !st.jobs.has_room(&id) {
        metrics::counter!("xiaoguan_ingest_shed_total").increment(1);
        return Err(ApiError::queue_full(&id, RETRY_AFTER_SECS));
    }
    // Room in the in-flight budget before a byte of the body is read; held until it is staged.
    let max = st.limits.max_upload_bytes;
    let declared = headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let too_large = || ApiError::new(axum::http::StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("{name}: the upload is over max_upload_bytes ({max} bytes)"));
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let room = st.upload_room(declared.unwrap_or(max))?;
    let body = axum::body::to_bytes(body, max).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            too_large()
        } else {
            ApiError::bad_request(format!("{name}: reading the upload failed: {e}"))
        }
    })?;
    if body.is_empty() {
        return Err(ApiError::bad_request(format!("{name}: the file is empty")));
    }
    // Staged outside every KB's uploads folder (the same file system: installing it is a rename).
    let upload_id = st.jobs.new_id();
    let incoming = ready.uploads_root.join(".incoming");
    std::fs::create_dir_all(&incoming).map_err(|e| ApiError::internal(format!("{}: {e}", incoming.display())))?;
    let staged = incoming.join(format!("{upload_id}-{name}"));
    std::fs::write(&staged, &body).map_err(|e| ApiError::internal(format!("{}: {e}", staged.display())))?;
    drop(body);
    drop(room);
    // Read as the ingest will, within the KB's limits, before anything is stored.
    let checked = {
        let _cpu = st.cpu_slot().await?;
        let (def, path, n) = (kb.def.clone(), staged.clone(), name.clone());
        tokio::task::spawn_blocking(move || check_upload(&def, &path, &n)).await.map_err(|e| ApiError::internal(format!("reading the upload failed: {e}")))?
    };
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&staged);
        let msg = format!("{name}: {}", e.reason);
        metrics::counter!("xiaoguan_upload_refused_total").increment(1);
        tracing::warn!(kb = %id, "upload refused: {msg}");
        return Err(if over_limit(&e.reason).is_some() { ApiError::over_limit(msg) } else { ApiError::bad_request(msg) });
    }
    let status = jobs::accepted(&upload_id, &id, "upload", Some(&name));
    let job = Job { id: upload_id, kind: JobKind::Upload { name: name.clone(), staged } };
    let kb_id = id.clone();
    submit(&st, kb, job, status, move |_| json!({"kb": kb_id, "doc_id": format!("uploads/{name}")})).await
}

#[utoipa::path(get, path = "/v1/kbs/{id}/uploads/{upload_id}", params(("id" = String, Path), ("upload_id" = String, Path)),
    responses(
        (status = 200, description = "The job's status: state queued | ingesting | indexed | refused | failed | cancelled, with the reason and the ingest report"),
        (status = 400, description = "Bad path", body = ErrorBody),
        (status = 401, description = "No or unknown key", body = ErrorBody),
        (status = 403, description = "Not an admin key, or outside its scope", body = ErrorBody),
        (status = 404, description = "Unknown (or forgotten) upload", body = ErrorBody),
        (status = 503, description = "Still loading", body = ErrorBody)))]
pub async fn upload_status(State(st): State<Arc<AppState>>, Caller(who): Caller, Path((id, upload_id)): Path<(String, String)>) -> Result<Response, ApiError> {
    who.require(Action::ManageKbs)?;
    scope(&who, &id)?;
    st.ready()?;
    match st.jobs.get(&upload_id).filter(|s| s.kb == id) {
        Some(s) => Ok(axum::Json(s).into_response()),
        None => Err(ApiError::not_found(format!("no upload '{upload_id}' in '{id}' (statuses are kept for the last {} jobs, until a restart)", st.limits.max_upload_statuses))),
    }
}

#[utoipa::path(delete, path = "/v1/kbs/{id}/documents/{doc}", params(("id" = String, Path), ("doc" = String, Path, description = "The uploaded file name")),
    responses(
        (status = 200, description = "Removed from the KB"),
        (status = 202, description = "Accepted and queued or ingesting: poll `status_url`"),
        (status = 400, description = "Bad path", body = ErrorBody),
        (status = 401, description = "No or unknown key", body = ErrorBody),
        (status = 403, description = "Not an admin key, or outside its scope", body = ErrorBody),
        (status = 404, description = "No such uploaded (or quarantined) document", body = ErrorBody),
        (status = 429, description = "The KB's ingest queue is full (Retry-After)", body = ErrorBody),
        (status = 500, description = "The ingest failed", body = ErrorBody),
        (status = 503, description = "Still loading, or shutting down", body = ErrorBody)))]
pub async fn remove(State(st): State<Arc<AppState>>, Caller(who): Caller, Path((id, doc)): Path<(String, String)>) -> Result<Response, ApiError> {
    who.require(Action::ManageKbs)?;
    scope(&who, &id)?;
    let ready = st.ready()?;
    let kb = kb_of(ready, &id)?;
    let name = doc.strip_prefix("uploads/").unwrap_or(&doc).to_string();
    check_name(&name).map_err(|_| ApiError::not_found(format!("'{doc}' is not an uploaded document (only uploads can be deleted here)")))?;
    let path = ready.uploads_root.join(&id).join(&name);
    let key = format!("uploads/{name}");
    let quarantined = list_quarantine(&kb.dir).iter().any(|q| q.key == key);
    if !path.is_file() && !quarantined {
        return Err(ApiError::not_found(format!("no uploaded document '{name}' in '{id}'")));
    }
    let upload_id = st.jobs.new_id();
    let status = jobs::accepted(&upload_id, &id, "remove", Some(&name));
    let job = Job { id: upload_id, kind: JobKind::Remove { name: name.clone() } };
    let kb_id = id.clone();
    submit(&st, kb, job, status, move |_| json!({"kb": kb_id, "removed": key})).await
}

#[utoipa::path(post, path = "/v1/kbs/{id}/reindex", params(("id" = String, Path)), responses(
    (status = 200, description = "Incremental re-ingest of the KB's sources and uploads"),
    (status = 202, description = "Accepted and queued or ingesting: poll `status_url`"),
    (status = 400, description = "Bad path", body = ErrorBody),
    (status = 401, description = "No or unknown key", body = ErrorBody),
    (status = 403, description = "Not an admin key, or outside its scope", body = ErrorBody),
    (status = 404, description = "Unknown knowledge base", body = ErrorBody),
    (status = 429, description = "The KB's ingest queue is full (Retry-After)", body = ErrorBody),
    (status = 500, description = "The ingest failed", body = ErrorBody),
    (status = 503, description = "Still loading, or shutting down", body = ErrorBody)))]
pub async fn reindex(State(st): State<Arc<AppState>>, Caller(who): Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    who.require(Action::ManageKbs)?;
    scope(&who, &id)?;
    let kb = kb_of(st.ready()?, &id)?;
    let upload_id = st.jobs.new_id();
    let status = jobs::accepted(&upload_id, &id, "reindex", None);
    let job = Job { id: upload_id, kind: JobKind::Reindex };
    let kb_id = id.clone();
    submit(&st, kb, job, status, move |_| json!({"kb": kb_id})).await
}
