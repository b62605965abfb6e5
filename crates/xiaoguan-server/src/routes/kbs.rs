//! Knowledge bases: list and inspect (within the key's scope); admins upload documents (ingested
//! incrementally), delete uploaded documents, and reindex.

use super::Caller;
use crate::auth::Action;
use crate::error::ApiError;
use crate::state::{AppState, Ready};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use xiaoguan_kb::{IngestOptions, KnowledgeBase};

fn kb_of(ready: &Ready, id: &str) -> Result<Arc<KnowledgeBase>, ApiError> {
    ready.assistant.kbs().iter().find(|k| k.def.id == id).cloned().ok_or_else(|| ApiError::not_found(format!("unknown knowledge base '{id}'")))
}

fn summary(kb: &KnowledgeBase) -> serde_json::Value {
    let s = kb.state();
    json!({"id": kb.def.id, "title": kb.def.title, "domain": kb.def.domain, "description": kb.def.description,
           "embedder": kb.def.embedder, "version": s.version, "updated_at": s.updated_at,
           "documents": s.documents.len(), "chunks": s.total_chunks()})
}

#[utoipa::path(get, path = "/v1/kbs", responses((status = 200, description = "Knowledge bases in the key's scope")))]
pub async fn list(State(st): State<Arc<AppState>>, Caller(who): Caller) -> Result<Response, ApiError> {
    who.require(Action::ReadKbs)?;
    let ready = st.ready()?;
    let kbs: Vec<_> = ready.assistant.kbs().iter().filter(|k| who.sees(&k.def.id)).map(|k| summary(k)).collect();
    Ok(axum::Json(json!({"kbs": kbs})).into_response())
}

#[utoipa::path(get, path = "/v1/kbs/{id}", params(("id" = String, Path)), responses((status = 200, description = "Stats and documents"), (status = 403, description = "Outside the key's scope"), (status = 404, description = "Unknown")))]
pub async fn get_one(State(st): State<Arc<AppState>>, Caller(who): Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    who.require(Action::ReadKbs)?;
    if !who.sees(&id) {
        return Err(ApiError::forbidden(format!("key '{}' has no access to knowledge base '{id}'", who.key_id)));
    }
    let kb = kb_of(st.ready()?, &id)?;
    let mut v = summary(&kb);
    let docs: Vec<_> = kb.state().documents.iter().map(|(k, d)| json!({"doc_id": k, "title": d.title, "chunks": d.chunks})).collect();
    v["document_list"] = json!(docs);
    Ok(axum::Json(v).into_response())
}

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    pub filename: Option<String>,
}

const UPLOAD_TYPES: &[&str] = &["md", "txt", "html", "htm", "pdf", "docx", "json", "jsonl", "csv", "xlsx"];

fn check_name(name: &str) -> Result<(), ApiError> {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    if name.is_empty() || name.len() > 200 || name.starts_with('.') || name.contains(['/', '\\', '\0']) || name.contains("..") {
        return Err(ApiError::bad_request("filename must be a plain file name (no folders)"));
    }
    if !UPLOAD_TYPES.contains(&ext.as_str()) {
        return Err(ApiError::bad_request(format!("unsupported file type '.{ext}' (supported: {})", UPLOAD_TYPES.join(", "))));
    }
    Ok(())
}

async fn ingest(st: &Arc<AppState>, kb: Arc<KnowledgeBase>) -> Result<xiaoguan_kb::IngestReport, ApiError> {
    let ready = st.ready()?;
    let lock = st.ingest_lock(&kb.def.id);
    let _guard = lock.lock().await;
    let opts = IngestOptions {
        data_root: ready.data_root.clone(),
        progress: false,
        batch_docs: 16,
        max_batches: None,
        uploads_dir: Some(ready.uploads_root.join(&kb.def.id)),
    };
    tokio::task::spawn_blocking(move || kb.ingest(&opts))
        .await
        .map_err(|e| ApiError::internal(format!("ingest worker failed: {e}")))?
        .map_err(ApiError::from)
}

fn report(r: &xiaoguan_kb::IngestReport) -> serde_json::Value {
    json!({"version": r.version, "documents": r.documents, "added": r.added, "changed": r.changed, "removed": r.removed,
           "unchanged": r.unchanged, "chunks_embedded": r.chunks_embedded, "chunks_reused": r.chunks_reused, "total_chunks": r.total_chunks,
           "skipped": r.skipped.iter().map(|s| json!({"path": s.path, "reason": s.reason})).collect::<Vec<_>>(), "seconds": r.seconds})
}

#[utoipa::path(post, path = "/v1/kbs/{id}/documents", params(("id" = String, Path), ("filename" = String, Query)),
    request_body(content = Vec<u8>, description = "The file's bytes", content_type = "application/octet-stream"),
    responses((status = 200, description = "Stored and ingested incrementally"), (status = 400, description = "Bad name, type or unreadable file"), (status = 413, description = "Too large")))]
pub async fn upload(State(st): State<Arc<AppState>>, Caller(who): Caller, Path(id): Path<String>, Query(q): Query<UploadQuery>, body: Bytes) -> Result<Response, ApiError> {
    who.require(Action::ManageKbs)?;
    if !who.sees(&id) {
        return Err(ApiError::forbidden(format!("key '{}' has no access to knowledge base '{id}'", who.key_id)));
    }
    let kb = kb_of(st.ready()?, &id)?;
    let name = q.filename.ok_or_else(|| ApiError::bad_request("give the file name: ?filename=NAME.md"))?;
    check_name(&name)?;
    if body.is_empty() {
        return Err(ApiError::bad_request("the file is empty"));
    }
    let dir = st.ready()?.uploads_root.join(&id);
    std::fs::create_dir_all(&dir).map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.part"));
    // A replaced upload is kept aside until the new one has been read.
    let previous = dir.join(format!(".{name}.previous"));
    let replacing = path.is_file();
    let stored = std::fs::write(&tmp, &body)
        .and_then(|_| if replacing { std::fs::copy(&path, &previous).map(|_| ()) } else { Ok(()) })
        .and_then(|_| std::fs::rename(&tmp, &path));
    stored.map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    let r = ingest(&st, kb).await;
    let unreadable = r.as_ref().ok().and_then(|r| r.skipped.iter().find(|s| std::path::Path::new(&s.path) == path));
    if let Some(s) = unreadable {
        // An unreadable upload is not kept: the file and the KB stay as they were.
        let reason = s.reason.clone();
        let _ = if replacing { std::fs::rename(&previous, &path) } else { std::fs::remove_file(&path) };
        return Err(ApiError::bad_request(format!("{name}: {reason}")));
    }
    let _ = std::fs::remove_file(&previous);
    let r = r?;
    Ok(axum::Json(json!({"kb": id, "doc_id": format!("uploads/{name}"), "ingest": report(&r)})).into_response())
}

#[utoipa::path(delete, path = "/v1/kbs/{id}/documents/{doc}", params(("id" = String, Path), ("doc" = String, Path, description = "The uploaded file name")),
    responses((status = 200, description = "Removed from the KB"), (status = 404, description = "No such uploaded document")))]
pub async fn remove(State(st): State<Arc<AppState>>, Caller(who): Caller, Path((id, doc)): Path<(String, String)>) -> Result<Response, ApiError> {
    who.require(Action::ManageKbs)?;
    if !who.sees(&id) {
        return Err(ApiError::forbidden(format!("key '{}' has no access to knowledge base '{id}'", who.key_id)));
    }
    let kb = kb_of(st.ready()?, &id)?;
    let name = doc.strip_prefix("uploads/").unwrap_or(&doc).to_string();
    check_name(&name).map_err(|_| ApiError::not_found(format!("'{doc}' is not an uploaded document (only uploads can be deleted here)")))?;
    let path = st.ready()?.uploads_root.join(&id).join(&name);
    if !path.is_file() {
        return Err(ApiError::not_found(format!("no uploaded document '{name}' in '{id}'")));
    }
    std::fs::remove_file(&path).map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    let r = ingest(&st, kb).await?;
    Ok(axum::Json(json!({"kb": id, "removed": format!("uploads/{name}"), "ingest": report(&r)})).into_response())
}

#[utoipa::path(post, path = "/v1/kbs/{id}/reindex", params(("id" = String, Path)), responses((status = 200, description = "Incremental re-ingest of the KB's sources and uploads")))]
pub async fn reindex(State(st): State<Arc<AppState>>, Caller(who): Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    who.require(Action::ManageKbs)?;
    if !who.sees(&id) {
        return Err(ApiError::forbidden(format!("key '{}' has no access to knowledge base '{id}'", who.key_id)));
    }
    let kb = kb_of(st.ready()?, &id)?;
    let r = ingest(&st, kb).await?;
    Ok(axum::Json(json!({"kb": id, "ingest": report(&r)})).into_response())
}
