//! The HTTP API without a network (tower `oneshot`), on knowledge bases and models the test
//! builds itself: validation, keys and scopes, SSE, the generator queue, uploads, feedback.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;
use xiaoguan_assist::classify::{self, TrainConfig};
use xiaoguan_assist::dispatch::DispatchRules;
use xiaoguan_assist::qa::facts::FactIndex;
use xiaoguan_assist::qa::{AssistConfig, Assistant};
use xiaoguan_assist::ticket::{TicketAssist, TicketClassifiers};
use xiaoguan_kb::definition::KbDefinition;
use xiaoguan_kb::{IngestOptions, KnowledgeBase};
use xiaoguan_models::{fixtures, BertEmbedder, Embedder, Generator, QwenGenerator};
use xiaoguan_server::auth::{hash_key, KeyEntry, Keys, Role};
use xiaoguan_server::config::ServerConfig;
use xiaoguan_server::state::{AppState, Ready};

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

// Fields drop in order: the state (and its stores, which flush on drop) before the folder.
/// A ticket store in the test's temp dir.
fn history(path: &Path) -> Arc<xiaoguan_assist::history::TicketHistory> {
    let store = Arc::new(xiaoguan_tickets::sqlite::SqliteStore::open(path).unwrap());
    Arc::new(xiaoguan_assist::history::TicketHistory::new(store, "test-salt"))
}

struct Env {
    state: Arc<AppState>,
    tmp: tempfile::TempDir,
}

fn kb(tmp: &Path, id: &str, docs: &[(&str, &str)], embedder: &Arc<dyn Embedder>) -> Arc<KnowledgeBase> {
    let dir = tmp.join("defs").join(id);
    for (name, text) in docs {
        write(&dir.join("docs").join(name), text);
    }
    write(
        &dir.join("kb.toml"),
        &format!("id = \"{id}\"\ntitle = \"{id}\"\ndomain = \"测试\"\ndescription = \"测试\"\nembedder = \"tiny\"\n[[sources]]\nbase = \"kb\"\ninclude = [\"docs/*\"]\ndoc_type = \"guide\"\n"),
    );
    let def = KbDefinition::load(&dir.join("kb.toml")).unwrap();
    let kb = Arc::new(KnowledgeBase::open(&def, &tmp.join("kbs"), embedder.clone()).unwrap());
    kb.ingest(&IngestOptions { data_root: tmp.to_path_buf(), progress: false, batch_docs: 8, max_batches: None, uploads_dir: Some(tmp.join("uploads").join(id)) }).unwrap();
    kb
}

fn setup(keys: Keys, queue: usize, with_generator: bool) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = tmp.path().join("embedder");
    let facts = fixtures::tiny_embedder_dir(&model_dir).unwrap();
    let embedder: Arc<dyn Embedder> = Arc::new(BertEmbedder::load(&model_dir, "tiny", &facts).unwrap());
    let a = kb(tmp.path(), "kb-a", &[("社保卡.md", "# 社保卡补办指南\n\n一、办理地点\n\n社保卡丢失后，携带身份证到社保卡服务网点挂失补领，补卡工本费由个人承担。\n")], &embedder);
    let b = kb(tmp.path(), "kb-b", &[("秘密.md", "# 乙库内部资料\n\n一、说明\n\n这是乙知识库独有的内容，只有乙库的密钥能看到。\n")], &embedder);
    let generator: Option<Arc<dyn Generator>> = if with_generator {
        let gdir = tmp.path().join("generator");
        let gf = fixtures::tiny_generator_dir(&gdir).unwrap();
        Some(Arc::new(QwenGenerator::load(&gdir, "tiny-gen", &gf).unwrap()))
    } else {
        None
    };
    // The tiny embedder's similarities mean nothing: open the gate so answers come back.
    let config = AssistConfig { evidence_min_similarity: -1.0, evidence_min_coverage: 0.0, max_new_tokens: 8, ..Default::default() };
    let assistant = Arc::new(Assistant::new(vec![a, b], generator, FactIndex::default(), config).unwrap());
    let examples: Vec<classify::Example> = (0..40)
        .map(|i| classify::Example {
            id: format!("e{i}"),
            text: if i % 2 == 0 { format!("社保卡补办问题{i}") } else { format!("道路积水严重{i}") },
            label: if i % 2 == 0 { "人社局".into() } else { "城管委".into() },
        })
        .collect();
    let cfg = TrainConfig { ngram: classify::features::NgramConfig { buckets: 4096, ..Default::default() }, ..Default::default() };
    let (model, _) = classify::train(&examples, 0, "t", None, None, &cfg).unwrap();
    let rules = DispatchRules::parse("[[rules]]\nid = \"gas\"\ndepartments = [\"城管委\"]\nany = [\"燃气\"]\nreason = \"燃气安全\"\n").unwrap();
    let tickets = Arc::new(TicketAssist {
        classifiers: TicketClassifiers { department: Some(model), ..Default::default() },
        rules,
        embedder: None,
        assistant: Some(assistant.clone()),
        rule_bonus: 0.5,
    });
    let mut config = ServerConfig::default();
    config.limits.generator_queue = queue;
    config.limits.max_upload_bytes = 4096;
    let state = xiaoguan_server::state(config, keys, history(&tmp.path().join("tickets.db"))).unwrap();
    let ready = Ready { assistant, tickets, kb_defs: Vec::new(), uploads_root: tmp.path().join("uploads"), data_root: tmp.path().to_path_buf() };
    assert!(state.ready.set(ready).is_ok());
    Env { state, tmp }
}

async fn call(env: &Env, method: &str, uri: &str, key: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    let (status, bytes, _) = call_raw(env, method, uri, key, body.map(|b| b.to_string().into_bytes()), "application/json").await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned())))
}

async fn call_raw(env: &Env, method: &str, uri: &str, key: Option<&str>, body: Option<Vec<u8>>, ctype: &str) -> (StatusCode, Vec<u8>, axum::http::HeaderMap) {
    let mut req = Request::builder().method(method).uri(uri).header("content-type", ctype);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let req = req.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
    let resp = xiaoguan_server::routes::router(env.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, bytes, headers)
}

fn keys() -> Keys {
    let k = |id: &str, role: Role, kbs: &[&str]| KeyEntry { id: id.into(), sha256: hash_key(id), role, kbs: kbs.iter().map(|s| s.to_string()).collect() };
    Keys::from_entries(vec![
        k("admin-key", Role::Admin, &["*"]),
        k("agent-a", Role::Agent, &["kb-a"]),
        k("integrator", Role::Integrator, &["*"]),
        k("stale", Role::Agent, &["kb-gone"]),
        k("agent-b", Role::Agent, &["*"]),
        k("supervisor", Role::Supervisor, &["*"]),
        k("reviewer", Role::Reviewer, &["*"]),
    ])
}

#[tokio::test]
async fn health_openapi_and_metrics() {
    let env = setup(Keys::default(), 4, false);
    assert_eq!(call(&env, "GET", "/healthz", None, None).await.0, StatusCode::OK);
    let (s, ready) = call(&env, "GET", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ready["kbs"].as_array().unwrap().len(), 2);
    let (_, doc) = call(&env, "GET", "/openapi.json", None, None).await;
    assert!(doc["paths"]["/v1/chat/completions"].is_object());
    assert!(doc["paths"]["/v1/tickets/assist"].is_object());
    let (s, _, _) = call_raw(&env, "GET", "/", None, None, "text/html").await;
    assert_eq!(s, StatusCode::OK);
    call(&env, "POST", "/v1/ask", None, Some(json!({"question": "社保卡怎么补办", "mode": "extractive"}))).await;
    let (_, m, _) = call_raw(&env, "GET", "/metrics", None, None, "text/plain").await;
    let m = String::from_utf8(m).unwrap();
    assert!(m.contains("xiaoguan_http_requests_total") && m.contains("/v1/ask"), "{m}");
    let (s, e) = call(&env, "GET", "/nope", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(e["error"]["type"], "not_found");
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx() {
    let env = setup(Keys::default(), 4, false);
    let cases = [
        (json!({"question": ""}), StatusCode::BAD_REQUEST),
        (json!({"question": 5}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"question": "x".repeat(3000)}), StatusCode::BAD_REQUEST),
        (json!({"question": "社保卡", "mode": "creative"}), StatusCode::BAD_REQUEST),
        (json!({"question": "社保卡", "kbs": ["no-such-kb"]}), StatusCode::NOT_FOUND),
        (json!({"question": "社保卡", "surprise": 1}), StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (body, want) in cases {
        let (s, e) = call(&env, "POST", "/v1/ask", None, Some(body.clone())).await;
        assert_eq!(s, want, "{body} → {e}");
        assert!(e["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    }
    let (s, _, _) = call_raw(&env, "POST", "/v1/ask", None, Some(b"{not json".to_vec()), "application/json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = call_raw(&env, "POST", "/v1/ask", None, Some(vec![0x7b, 0x22, 0xff, 0xfe]), "application/json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "non-UTF-8 bytes");
    let (s, _, _) = call_raw(&env, "POST", "/v1/ask", None, Some(b"question=x".to_vec()), "text/plain").await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, _) = call(&env, "POST", "/v1/chat/completions", None, Some(json!({"messages": []}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(&env, "POST", "/v1/chat/completions", None, Some(json!({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(&env, "POST", "/v1/tickets/assist", None, Some(json!({"text": "   "}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(&env, "POST", "/v1/classify", None, Some(json!({"text": "x", "classifier": "nope"}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(&env, "POST", "/v1/feedback", None, Some(json!({"target": "reply", "verdict": "edit", "input": "a", "suggestion": "b"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "edit without the edited text");
}

#[tokio::test]
async fn keys_roles_and_kb_scopes() {
    let env = setup(keys(), 4, false);
    let (s, e) = call(&env, "POST", "/v1/ask", None, Some(json!({"question": "社保卡"}))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{e}");
    assert_eq!(call(&env, "POST", "/v1/ask", Some("wrong"), Some(json!({"question": "社保卡"}))).await.0, StatusCode::UNAUTHORIZED);
    // An integrator answers but may not run ticket assist or admin routes.
    assert_eq!(call(&env, "POST", "/v1/tickets/assist", Some("integrator"), Some(json!({"text": "燃气"}))).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&env, "POST", "/v1/kbs/kb-a/reindex", Some("agent-a"), None).await.0, StatusCode::FORBIDDEN);
    // A key for KB A never sees KB B: not in lists, stats, search, or citations.
    let (_, list) = call(&env, "GET", "/v1/kbs", Some("agent-a"), None).await;
    let ids: Vec<&str> = list["kbs"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["kb-a"]);
    assert_eq!(call(&env, "GET", "/v1/kbs/kb-b", Some("agent-a"), None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&env, "POST", "/v1/search", Some("agent-a"), Some(json!({"kb": "kb-b", "query": "乙库"}))).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&env, "POST", "/v1/ask", Some("agent-a"), Some(json!({"question": "乙库", "kbs": ["kb-b"]}))).await.0, StatusCode::FORBIDDEN);
    for q in ["乙知识库独有的内容是什么", "社保卡怎么补办"] {
        let (s, a) = call(&env, "POST", "/v1/ask", Some("agent-a"), Some(json!({"question": q, "mode": "extractive"}))).await;
        assert_eq!(s, StatusCode::OK);
        for c in a["citations"].as_array().unwrap().iter().chain(a["related"].as_array().unwrap()) {
            assert_eq!(c["kb"], "kb-a", "{a}");
        }
        assert!(!a["kb_versions"].as_object().unwrap().contains_key("kb-b"));
    }
    let (_, t) = call(&env, "POST", "/v1/tickets/assist", Some("agent-a"), Some(json!({"text": "乙知识库独有的内容"}))).await;
    for c in t["suggested_reply"]["citations"].as_array().unwrap() {
        assert_eq!(c["kb"], "kb-a");
    }
    // The admin sees both.
    let (_, list) = call(&env, "GET", "/v1/kbs", Some("admin-key"), None).await;
    assert_eq!(list["kbs"].as_array().unwrap().len(), 2);
    // A key whose KBs are not served sees nothing — never "everything".
    assert_eq!(call(&env, "POST", "/v1/ask", Some("stale"), Some(json!({"question": "社保卡"}))).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&env, "POST", "/v1/tickets/assist", Some("stale"), Some(json!({"text": "社保卡"}))).await.0, StatusCode::FORBIDDEN);
    // Conversations belong to their key: another key with the same id starts fresh.
    let q = |question: &str| json!({"question": question, "conversation_id": "shared-id", "mode": "extractive"});
    call(&env, "POST", "/v1/ask", Some("agent-a"), Some(q("社保卡补办需要哪些材料"))).await;
    let (_, a) = call(&env, "POST", "/v1/ask", Some("admin-key"), Some(q("那在哪里办？"))).await;
    assert!(a["rewritten_question"].is_null(), "another key's history leaked: {a}");
}

#[tokio::test]
async fn chat_completions_plain_and_streamed() {
    let env = setup(Keys::default(), 4, false);
    let (s, c) = call(&env, "POST", "/v1/chat/completions", None, Some(json!({"model": "kb-a", "messages": [{"role": "system", "content": "你好"}, {"role": "user", "content": "社保卡丢了怎么补办"}]}))).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["object"], "chat.completion");
    assert!(c["choices"][0]["message"]["content"].as_str().unwrap().contains("补领"), "{c}");
    assert!(c["xiaoguan"]["citations"].as_array().is_some());
    assert_eq!(c["xiaoguan"]["handoff"], false);
    let body = json!({"model": "auto", "stream": true, "messages": [{"role": "user", "content": [{"type": "text", "text": "社保卡丢了怎么补办"}]}]});
    let (s, bytes, headers) = call_raw(&env, "POST", "/v1/chat/completions", None, Some(body.to_string().into_bytes()), "application/json").await;
    assert_eq!(s, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = String::from_utf8(bytes).unwrap();
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert!(content.contains("补领"));
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(last["xiaoguan"]["citations"].as_array().is_some_and(|c| !c.is_empty()), "{last}");
    // Native streaming: delta events, then the answer event.
    let (s, bytes, _) = call_raw(&env, "POST", "/v1/ask?stream=true", None, Some(json!({"question": "社保卡丢了怎么补办", "mode": "extractive"}).to_string().into_bytes()), "application/json").await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("event: delta") && text.contains("event: answer"), "{text}");
}

#[tokio::test]
async fn conversations_rewrite_follow_ups() {
    let env = setup(Keys::default(), 4, false);
    let q = |question: &str| json!({"question": question, "conversation_id": "c1", "mode": "extractive"});
    call(&env, "POST", "/v1/ask", None, Some(q("社保卡补办需要哪些材料"))).await;
    let (_, a) = call(&env, "POST", "/v1/ask", None, Some(q("那在哪里办？"))).await;
    assert!(a["rewritten_question"].as_str().is_some_and(|r| r.contains("社保卡")), "{a}");
}

#[tokio::test]
async fn a_full_generator_queue_sheds_load_with_429() {
    let env = setup(Keys::default(), 1, true);
    // Hold the generator, as a long generation would.
    let held = env.state.generator.clone().acquire_owned().await.unwrap();
    let st = env.state.clone();
    let first = tokio::spawn(async move {
        let req = Request::builder()
            .method("POST")
            .uri("/v1/ask")
            .header("content-type", "application/json")
            .body(Body::from(json!({"question": "社保卡怎么补办", "mode": "generate"}).to_string()))
            .unwrap();
        xiaoguan_server::routes::router(st).oneshot(req).await.unwrap().status()
    });
    // Wait until the first request is queued.
    for _ in 0..400 {
        if env.state.waiting.load(std::sync::atomic::Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (s, bytes, headers) = call_raw(&env, "POST", "/v1/ask", None, Some(json!({"question": "社保卡", "mode": "generate"}).to_string().into_bytes()), "application/json").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{}", String::from_utf8_lossy(&bytes));
    assert!(headers.contains_key("retry-after"));
    // Extractive answers do not wait for the generator.
    assert_eq!(call(&env, "POST", "/v1/ask", None, Some(json!({"question": "社保卡", "mode": "extractive"}))).await.0, StatusCode::OK);
    drop(held);
    assert_eq!(first.await.unwrap(), StatusCode::OK, "the queued request runs once the generator is free");
}

#[tokio::test]
async fn uploads_are_ingested_and_deletable_feedback_is_durable() {
    let env = setup(keys(), 4, false);
    let admin = Some("admin-key");
    let doc = "# 灵活就业参保须知\n\n一、缴费方式\n\n灵活就业人员可以按月或按季度缴纳基本养老保险费，独特标记词：青鸟计划。\n";
    let (s, bytes, _) = call_raw(&env, "POST", "/v1/kbs/kb-a/documents?filename=%E9%A1%BB%E7%9F%A5.md", admin, Some(doc.as_bytes().to_vec()), "application/octet-stream").await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&bytes));
    // The passages one search gathers are bounded (the schema's maximum, enforced).
    for limit in [0u64, 201, 1_000_000_000] {
        let (s, body) = call(&env, "POST", "/v1/search", admin, Some(json!({"kb": "kb-a", "query": "青鸟计划", "limit": limit}))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "limit {limit}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("limit must be 1 to 200"), "{body}");
    }
    let (_, found) = call(&env, "POST", "/v1/search", admin, Some(json!({"kb": "kb-a", "query": "青鸟计划", "limit": 3}))).await;
    assert!(found["hits"].as_array().unwrap().iter().any(|h| h["text"].as_str().unwrap().contains("青鸟计划")), "{found}");
    // Range filters: numbers or dates; a malformed one is the caller's error.
    let (s, found) = call(&env, "POST", "/v1/search", admin, Some(json!({"kb": "kb-a", "query": "青鸟计划", "filters": {"ordinal": {"gte": 0, "lte": 5}}}))).await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert!(!found["hits"].as_array().unwrap().is_empty());
    let (s, found) = call(&env, "POST", "/v1/search", admin, Some(json!({"kb": "kb-a", "query": "青鸟计划", "filters": {"ordinal": {"gte": 1000}}}))).await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert!(found["hits"].as_array().unwrap().is_empty(), "the range applies: {found}");
    // Uploads carry no date: a date range leaves them out, and is accepted.
    let (s, found) = call(&env, "POST", "/v1/search", admin, Some(json!({"kb": "kb-a", "query": "青鸟计划", "filters": {"date": {"lte": "2030-01-01"}}}))).await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert!(!found["hits"].as_array().unwrap().iter().any(|h| h["text"].as_str().unwrap().contains("青鸟计划")), "{found}");
    for bad in [json!({"date": {"lte": "上个月"}}), json!({"ordinal": {"gte": "abc"}}), json!({"ordinal": {"from": 1}}), json!({"doc_type": ["law"]})] {
        let (s, r) = call(&env, "POST", "/v1/search", admin, Some(json!({"kb": "kb-a", "query": "青鸟计划", "filters": bad}))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
        assert!(r["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
    }
    for (dw, bw) in [(0.0, 0.0), (-1.0, 1.0), (1.0, 1000.0)] {
        let (s, r) = call(&env, "POST", "/v1/search", admin, Some(json!({"kb": "kb-a", "query": "青鸟计划", "dense_weight": dw, "bm25_weight": bw}))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{dw} {bw}: {r}");
    }
    let (s, bm25_only) = call(&env, "POST", "/v1/search", admin, Some(json!({"kb": "kb-a", "query": "青鸟计划", "dense_weight": 0.0}))).await;
    assert_eq!(s, StatusCode::OK, "{bm25_only}");
    assert!(bm25_only["hits"][0]["text"].as_str().unwrap().contains("青鸟计划"), "{bm25_only}");
    let (_, info) = call(&env, "GET", "/v1/kbs/kb-a", admin, None).await;
    assert!(info["document_list"].as_array().unwrap().iter().any(|d| d["doc_id"] == "uploads/须知.md"), "{info}");
    // Bad names and types, oversized and unreadable files are refused; nothing is kept.
    assert_eq!(call_raw(&env, "POST", "/v1/kbs/kb-a/documents?filename=..%2Fx.md", admin, Some(b"x".to_vec()), "application/octet-stream").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call_raw(&env, "POST", "/v1/kbs/kb-a/documents?filename=x.exe", admin, Some(b"x".to_vec()), "application/octet-stream").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call_raw(&env, "POST", "/v1/kbs/kb-a/documents?filename=big.md", admin, Some(vec![b'a'; 10_000]), "application/octet-stream").await.0, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, _, _) = call_raw(&env, "POST", "/v1/kbs/kb-a/documents?filename=bad.txt", admin, Some(vec![0xC9, 0xE7, 0xff, 0xfe]), "application/octet-stream").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(!env.tmp.path().join("uploads/kb-a/bad.txt").exists());
    // An unreadable replacement of an upload is refused: the old file and its chunks stay.
    let (s, _, _) = call_raw(&env, "POST", "/v1/kbs/kb-a/documents?filename=%E9%A1%BB%E7%9F%A5.md", admin, Some(vec![0xC9, 0xE7, 0xff, 0xfe]), "application/octet-stream").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(std::fs::read_to_string(env.tmp.path().join("uploads/kb-a/须知.md")).unwrap(), doc);
    // The passages one search gathers are bounded (the schema's maximum, enforced).
    for limit in [0u64, 201, 1_000_000_000] {
        let (s, body) = call(&env, "POST", "/v1/search", admin, Some(json!({"kb": "kb-a", "query": "青鸟计划", "limit": limit}))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "limit {limit}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("limit must be 1 to 200"), "{body}");
    }
    let (_, found) = call(&env, "POST", "/v1/search", admin, Some(json!({"kb": "kb-a", "query": "青鸟计划", "limit": 3}))).await;
    assert!(found["hits"].as_array().unwrap().iter().any(|h| h["text"].as_str().unwrap().contains("青鸟计划")), "{found}");
    assert!(std::fs::read_dir(env.tmp.path().join("uploads/kb-a")).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')), "no temporary files left");
    assert_eq!(call(&env, "POST", "/v1/kbs/kb-x/reindex", admin, None).await.0, StatusCode::NOT_FOUND);
    let (s, r) = call(&env, "DELETE", "/v1/kbs/kb-a/documents/%E9%A1%BB%E7%9F%A5.md", admin, None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // The passages one search gathers are bounded (the schema's maximum, enforced).
    for limit in [0u64, 201, 1_000_000_000] {
        let (s, body) = call(&env, "POST", "/v1/search", admin, Some(json!({"kb": "kb-a", "query": "青鸟计划", "limit": limit}))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "limit {limit}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("limit must be 1 to 200"), "{body}");
    }
    let (_, found) = call(&env, "POST", "/v1/search", admin, Some(json!({"kb": "kb-a", "query": "青鸟计划", "limit": 3}))).await;
    assert!(!found["hits"].as_array().unwrap().iter().any(|h| h["text"].as_str().unwrap().contains("青鸟计划")));
    assert_eq!(call(&env, "DELETE", "/v1/kbs/kb-a/documents/%E7%A4%BE%E4%BF%9D%E5%8D%A1.md", admin, None).await.0, StatusCode::NOT_FOUND, "corpus documents are not uploads");
    let fb = json!({"target": "reply", "verdict": "edit", "input": "电话13812345678", "suggestion": "原", "edited": "改"});
    let (s, r) = call(&env, "POST", "/v1/feedback", Some("agent-a"), Some(fb)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let stored = env.state.history.store.feedback().unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].key_id == "agent-a" && stored[0].id == r["id"].as_str().unwrap() && !stored[0].input.contains("13812345678"), "{stored:?}");
}

#[tokio::test]
async fn ticket_assist_and_classify() {
    let env = setup(Keys::default(), 4, false);
    let (s, t) = call(&env, "POST", "/v1/tickets/assist", None, Some(json!({"text": "我叫王小明，电话13812345678，楼道燃气泄漏，请尽快处理"}))).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert!(!t.to_string().contains("13812345678"), "no personal data in the response");
    assert_eq!(t["signals"]["escalate"], true);
    assert_eq!(t["departments"][0]["department"], "城管委");
    let (s, p) = call(&env, "POST", "/v1/classify", None, Some(json!({"text": "社保卡补办问题", "classifier": "classifier"}))).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["ranked"][0]["label"], "人社局");
}

#[tokio::test]
async fn assisted_tickets_are_stored_decided_reviewed_and_scoped_by_role() {
    let env = setup(keys(), 4, false);
    let text = "我叫王小明，电话13812345678，楼道燃气泄漏，物业一直不处理，请尽快安排";
    let body = json!({"text": text, "reporter": "13812345678", "received_at_ms": 1_700_000_000_000i64});
    let (s, first) = call(&env, "POST", "/v1/tickets/assist", Some("agent-a"), Some(body.clone())).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let id = first["ticket_id"].as_i64().expect("stored with an id");
    assert_eq!(first["repeats"]["count"], 0, "{first}");
    // The same reporter about the same matter a day later: flagged as a repeat of the first.
    let later = json!({"text": text, "reporter": "138 1234 5678", "received_at_ms": 1_700_086_400_000i64});
    let (_, second) = call(&env, "POST", "/v1/tickets/assist", Some("agent-a"), Some(later)).await;
    assert_eq!(second["repeats"]["count"], 1, "{second}");
    assert_eq!(second["repeats"]["earlier"][0]["id"], id);
    assert!(second["repeats"]["message"].as_str().unwrap().contains("此前已有 1 件同类诉求"));
    // A time outside 2000–2100 is the caller's error, not an overflow.
    let (s, e) = call(&env, "POST", "/v1/tickets/assist", Some("agent-a"), Some(json!({"text": "路灯不亮", "received_at_ms": -9_223_372_036_854_775_807i64}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, e) = call(&env, "POST", "/v1/feedback", Some("agent-a"), Some(json!({"target": "reply", "verdict": "accept", "input": "x", "suggestion": "y", "ticket_id": -5.0}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a whole number written as a float is read, then refused as an id: {e}");
    // Not kept when asked not to.
    let (_, unstored) = call(&env, "POST", "/v1/tickets/assist", Some("agent-a"), Some(json!({"text": "路灯不亮", "store": false}))).await;
    assert!(unstored.get("ticket_id").is_none(), "{unstored}");

    // Stored masked, with predictions and models; the reporter only as a hash.
    let stored = env.state.history.store.get(id).unwrap().unwrap();
    assert!(!stored.ticket.text.contains("13812345678") && !stored.ticket.text.contains("王小明"), "{}", stored.ticket.text);
    assert!(stored.ticket.reporter.as_deref().is_some_and(|r| r.starts_with("r-") && !r.contains("138")));
    assert_eq!(stored.ticket.suggested_unit.as_deref(), Some("城管委"));
    assert!(stored.ticket.predictions["departments"].is_array() && stored.ticket.kb_versions.is_object());

    // Agents see their own tickets only; supervisors all.
    let (s, mine) = call(&env, "GET", "/v1/tickets?limit=10", Some("agent-a"), None).await;
    assert_eq!(s, StatusCode::OK, "{mine}");
    assert_eq!(mine["tickets"].as_array().unwrap().len(), 2);
    assert!(mine["tickets"][0].get("embedding").is_none());
    let (_, theirs) = call(&env, "GET", "/v1/tickets", Some("agent-b"), None).await;
    assert_eq!(theirs["tickets"].as_array().unwrap().len(), 0);
    assert_eq!(call(&env, "GET", &format!("/v1/tickets/{id}"), Some("agent-b"), None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&env, "GET", "/v1/tickets?key=agent-a", Some("agent-b"), None).await.0, StatusCode::FORBIDDEN);
    let (_, all) = call(&env, "GET", "/v1/tickets?key=agent-a&limit=1", Some("supervisor"), None).await;
    assert_eq!(all["tickets"].as_array().unwrap().len(), 1);
    let next = all["next_before_id"].as_i64().unwrap();
    let (_, page2) = call(&env, "GET", &format!("/v1/tickets?before_id={next}"), Some("supervisor"), None).await;
    assert_eq!(page2["tickets"][0]["id"], id);
    assert_eq!(call(&env, "GET", "/v1/tickets?limit=0", Some("supervisor"), None).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(&env, "GET", "/v1/tickets/999999", Some("supervisor"), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&env, "GET", "/v1/tickets/abc", Some("supervisor"), None).await.0, StatusCode::BAD_REQUEST);

    // The agent sends it elsewhere: the decision is kept and the ticket enters the review queue.
    let d = json!({"verdict": "edited", "unit": "市住房城乡建设局", "reply": "已转住建部门，联系电话13812345678", "closed": true});
    let (s, decided) = call(&env, "POST", &format!("/v1/tickets/{id}/decision"), Some("agent-a"), Some(d.clone())).await;
    assert_eq!(s, StatusCode::OK, "{decided}");
    assert_eq!(decided["unit_changed"], true);
    assert!(!decided.to_string().contains("13812345678"), "the reply is masked when stored");
    assert_eq!(call(&env, "POST", &format!("/v1/tickets/{id}/decision"), Some("agent-b"), Some(d)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&env, "POST", &format!("/v1/tickets/{id}/decision"), Some("agent-a"), Some(json!({"verdict": "maybe"}))).await.0, StatusCode::BAD_REQUEST);

    assert_eq!(call(&env, "GET", "/v1/review/queue", Some("agent-a"), None).await.0, StatusCode::FORBIDDEN);
    let (s, q) = call(&env, "GET", "/v1/review/queue", Some("reviewer"), None).await;
    assert_eq!(s, StatusCode::OK, "{q}");
    assert!(q["tickets"].as_array().unwrap().iter().any(|t| t["id"] == id), "{q}");
    assert_eq!(call(&env, "POST", &format!("/v1/review/{id}"), Some("reviewer"), Some(json!({"note": "ok"}))).await.0, StatusCode::BAD_REQUEST);
    let (s, r) = call(&env, "POST", &format!("/v1/review/{id}"), Some("reviewer"), Some(json!({"domain": "住房保障", "unit": "市住房城乡建设局"}))).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (_, q) = call(&env, "GET", "/v1/review/queue", Some("reviewer"), None).await;
    assert!(!q["tickets"].as_array().unwrap().iter().any(|t| t["id"] == id), "reviewed tickets leave the queue");
    let (s, bytes, h) = call_raw(&env, "GET", "/v1/review/labelled", Some("reviewer"), None, "application/json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "application/x-ndjson");
    let rows: Vec<Value> = String::from_utf8(bytes).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["unit"], "市住房城乡建设局");

    // Deleting is for supervisors; the ticket and its feedback go.
    let fb = json!({"target": "dispatch", "verdict": "reject", "input": "x", "suggestion": "城管委", "ticket_id": id});
    assert_eq!(call(&env, "POST", "/v1/feedback", Some("agent-a"), Some(fb)).await.0, StatusCode::OK);
    assert_eq!(call(&env, "DELETE", &format!("/v1/tickets/{id}"), Some("agent-a"), None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&env, "DELETE", &format!("/v1/tickets/{id}"), Some("supervisor"), None).await.0, StatusCode::OK);
    assert_eq!(call(&env, "DELETE", &format!("/v1/tickets/{id}"), Some("supervisor"), None).await.0, StatusCode::NOT_FOUND);
    assert!(env.state.history.store.get(id).unwrap().is_none());
    assert!(env.state.history.store.feedback().unwrap().iter().all(|f| f.ticket_id != Some(id)));
}

#[tokio::test]
async fn supervisors_get_hot_issues_repeats_and_trends_over_the_store() {
    let env = setup(keys(), 4, false);
    let store = env.state.history.store.clone();
    let day = 86_400_000i64;
    let t0 = 1_700_000_000_000i64;
    // Five residents of one estate about the same construction noise within a week, and
    // unrelated tickets elsewhere.
    for i in 0..5 {
        let t = xiaoguan_tickets::NewTicket {
            key_id: "agent-a".into(),
            received_at_ms: t0 + i * day,
            title: Some("南城街道鸿福花园工地夜间施工噪音扰民".into()),
            text: format!("南城街道鸿福花园旁边的工地每晚施工到凌晨，噪音太大，第{i}次反映，请管一管"),
            reporter: Some(format!("r-{i}")),
            town: Some("南城街道".into()),
            suggested_unit: Some("南城街道综合行政执法办".into()),
            ..Default::default()
        };
        store.insert(&t).unwrap();
    }
    for (i, (title, town)) in [("虎门镇路灯不亮", "虎门镇"), ("长安镇社保卡补办", "长安镇"), ("塘厦镇公交站台破损", "塘厦镇")].iter().enumerate() {
        let t = xiaoguan_tickets::NewTicket { key_id: "agent-a".into(), received_at_ms: t0 + i as i64 * day, title: Some(title.to_string()), text: title.to_string(), town: Some(town.to_string()), ..Default::default() };
        store.insert(&t).unwrap();
    }
    assert_eq!(call(&env, "GET", "/v1/analytics/hot", Some("agent-a"), None).await.0, StatusCode::FORBIDDEN, "analytics are for supervisors");
    assert_eq!(call(&env, "GET", "/v1/analytics/nope", Some("supervisor"), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&env, "GET", "/v1/analytics/hot?format=pdf", Some("supervisor"), None).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(&env, "GET", "/v1/analytics/hot?top=0", Some("supervisor"), None).await.0, StatusCode::BAD_REQUEST);
    let (s, hot) = call(&env, "GET", "/v1/analytics/hot", Some("supervisor"), None).await;
    assert_eq!(s, StatusCode::OK, "{hot}");
    assert_eq!(hot["tickets"], 8);
    let top = &hot["hot"]["groups"][0];
    assert_eq!(top["tickets"], 5, "{hot}");
    assert_eq!(top["reporters"], 5);
    assert!(top["name"].as_str().unwrap().contains("鸿福花园"), "{top}");
    let (s, trends) = call(&env, "GET", "/v1/analytics/trends", Some("supervisor"), None).await;
    assert_eq!(s, StatusCode::OK, "{trends}");
    let (s, bytes, h) = call_raw(&env, "GET", "/v1/analytics/report?format=html", Some("supervisor"), None, "application/json").await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = String::from_utf8(bytes).unwrap();
    assert!(html.contains("<svg") && html.contains("鸿福花园"), "a report with charts");
    let (_, later) = call(&env, "GET", &format!("/v1/analytics/hot?since_ms={}", t0 + 10 * day), Some("supervisor"), None).await;
    assert_eq!(later["tickets"], 0, "the time filter applies");
}

/// A .docx whose document.xml inflates to `inflated` bytes of one repeated paragraph.
fn docx_bomb(inflated: usize) -> Vec<u8> {
    use std::io::Write;
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        z.start_file("[Content_Types].xml", o).unwrap();
        z.write_all(br#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>"#).unwrap();
        z.start_file("word/document.xml", o).unwrap();
        z.write_all(br#"<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>"#).unwrap();
        let chunk = vec![b'a'; 64 * 1024];
        let mut left = inflated;
        while left > 0 {
            let n = left.min(chunk.len());
            z.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
        z.write_all(b"</w:t></w:r></w:p></w:body></w:document>").unwrap();
        z.finish().unwrap();
    }
    buf.into_inner()
}

fn upload_uri(kb: &str, name: &str) -> String {
    let enc: String = name.bytes().map(|b| if b.is_ascii_alphanumeric() || b"._-".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
    format!("/v1/kbs/{kb}/documents?filename={enc}")
}

#[tokio::test]
async fn a_bomb_upload_is_refused_with_its_limit_and_the_next_upload_is_indexed_at_once() {
    let env = setup(keys(), 4, false);
    let admin = Some("admin-key");
    let bomb = docx_bomb(3 * 1024 * 1024);
    assert!(bomb.len() < 4096, "the bomb fits the upload limit: {} bytes", bomb.len());
    let t = std::time::Instant::now();
    let (s, body, _) = call_raw(&env, "POST", &upload_uri("kb-a", "bomb.docx"), admin, Some(bomb), "application/octet-stream").await;
    let refuse_ms = t.elapsed().as_secs_f64() * 1e3;
    let e: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    assert_eq!(e["error"]["type"], "over_limit", "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("bomb.docx: ") && msg.contains("(limit max_"), "{msg}");
    assert!(refuse_ms < 5000.0, "refused in {refuse_ms:.0} ms");
    // Nothing of it was stored.
    assert!(!env.tmp.path().join("uploads/kb-a/bomb.docx").exists());
    assert_eq!(std::fs::read_dir(env.tmp.path().join("uploads/.incoming")).unwrap().count(), 0);
    // The next good upload is indexed at once.
    let t = std::time::Instant::now();
    let (s, r) = {
        let (s, b, _) = call_raw(&env, "POST", &upload_uri("kb-a", "good.md"), admin, Some("# 好文件\n\n一、说明\n\n独特标记词：白鹭计划。\n".into()), "application/octet-stream").await;
        (s, serde_json::from_slice::<Value>(&b).unwrap())
    };
    let index_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["state"], "indexed", "{r}");
    assert!(index_ms < 5000.0, "indexed in {index_ms:.0} ms");
    eprintln!("bomb refused in {refuse_ms:.0} ms; next upload indexed in {index_ms:.0} ms");
    // Its status stays pollable.
    let (s, st) = call(&env, "GET", &format!("/v1/kbs/kb-a/uploads/{}", r["upload_id"].as_str().unwrap()), admin, None).await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert_eq!(st["state"], "indexed");
    assert_eq!(st["doc_id"], "uploads/good.md");
    assert_eq!(call(&env, "GET", "/v1/kbs/kb-a/uploads/up-nope", admin, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&env, "GET", &format!("/v1/kbs/kb-b/uploads/{}", r["upload_id"].as_str().unwrap()), admin, None).await.0, StatusCode::NOT_FOUND, "another KB's id");
    assert_eq!(call(&env, "GET", &format!("/v1/kbs/kb-a/uploads/{}", r["upload_id"].as_str().unwrap()), Some("agent-a"), None).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_bomb_found_by_an_ingest_is_quarantined_listed_and_not_read_again_until_replaced() {
    let env = setup(keys(), 4, false);
    let admin = Some("admin-key");
    // As a file left in the uploads folder by an older version would be.
    let dir = env.tmp.path().join("uploads/kb-a");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bomb.docx"), docx_bomb(8 * 1024 * 1024)).unwrap();
    let (s, r) = call(&env, "POST", "/v1/kbs/kb-a/reindex", admin, None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["ingest"]["quarantined"][0]["doc_id"], "uploads/bomb.docx", "{r}");
    assert!(!dir.join("bomb.docx").exists(), "moved out of the uploads folder");
    let (_, info) = call(&env, "GET", "/v1/kbs/kb-a", admin, None).await;
    let q = info["quarantine"].as_array().unwrap();
    assert_eq!(q.len(), 1, "{info}");
    assert_eq!(q[0]["doc_id"], "uploads/bomb.docx");
    assert!(q[0]["limit"].as_str().unwrap().starts_with("max_"), "{info}");
    assert!(q[0]["reason"].as_str().unwrap().contains("(limit "), "{info}");
    let kb_dir = env.tmp.path().join("kbs/kb-a/quarantine");
    assert!(std::fs::read_dir(&kb_dir).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".reason.json")));
    // The next ingest does not read it again (and does not lose anything).
    let (s, r) = call(&env, "POST", "/v1/kbs/kb-a/reindex", admin, None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r["ingest"]["quarantined"].as_array().unwrap().is_empty(), "{r}");
    assert!(r["ingest"]["skipped"].as_array().unwrap().iter().any(|s| s["reason"].as_str().unwrap().starts_with("quarantined: ")), "{r}");
    // Replaced by a good upload with that name: released and indexed.
    let (s, b, _) = call_raw(&env, "POST", &upload_uri("kb-a", "bomb.docx"), admin, Some(docx_bomb(100)), "application/octet-stream").await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let (_, info) = call(&env, "GET", "/v1/kbs/kb-a", admin, None).await;
    assert!(info["quarantine"].as_array().unwrap().is_empty(), "{info}");
    assert!(info["document_list"].as_array().unwrap().iter().any(|d| d["doc_id"] == "uploads/bomb.docx"), "{info}");
}

#[tokio::test]
async fn a_full_ingest_queue_is_429_with_retry_after_and_statuses_are_pollable() {
    let env = setup(keys(), 4, false);
    // The same KBs behind a state with a queue of one and no waiting: every accepted upload
    // answers 202 at once.
    let mut config = ServerConfig::default();
    config.limits.upload_queue = 1;
    config.limits.upload_wait_secs = 0;
    config.limits.max_upload_bytes = 4096;
    let state = xiaoguan_server::state(config, keys(), history(&env.tmp.path().join("tickets2.db"))).unwrap();
    let ready = env.state.ready.get().unwrap();
    let ready = Ready { assistant: ready.assistant.clone(), tickets: ready.tickets.clone(), kb_defs: Vec::new(), uploads_root: ready.uploads_root.clone(), data_root: ready.data_root.clone() };
    assert!(state.ready.set(ready).is_ok());
    let env = Env { state, tmp: env.tmp };
    let admin = Some("admin-key");
    let hold = env.state.ingest_hold.lock().await;
    let up = |n: usize| format!("# 文件{n}\n\n一、说明\n\n排队测试{n}。\n").into_bytes();
    let (s, b, _) = call_raw(&env, "POST", &upload_uri("kb-a", "q1.md"), admin, Some(up(1)), "application/octet-stream").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&b));
    let first: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(first["state"], "queued");
    // The worker takes the first job and waits at the hold; the second fills the queue.
    for _ in 0..200 {
        if env.state.jobs.queued("kb-a") == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (s, b, _) = call_raw(&env, "POST", &upload_uri("kb-a", "q2.md"), admin, Some(up(2)), "application/octet-stream").await;
    assert_eq!(s, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&b));
    let second: Value = serde_json::from_slice(&b).unwrap();
    let t = std::time::Instant::now();
    let (s, b, h) = call_raw(&env, "POST", &upload_uri("kb-a", "q3.md"), admin, Some(up(3)), "application/octet-stream").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{}", String::from_utf8_lossy(&b));
    assert!(t.elapsed() < std::time::Duration::from_secs(1), "refused at once");
    assert!(h.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()).is_some_and(|v| v > 0), "{h:?}");
    let e: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(e["error"]["type"], "overloaded");
    assert!(!env.tmp.path().join("uploads/kb-a/q3.md").exists(), "a refused upload is not stored");
    // Deletes and reindexes wait in the same queue.
    assert_eq!(call(&env, "POST", "/v1/kbs/kb-a/reindex", admin, None).await.0, StatusCode::TOO_MANY_REQUESTS);
    let (_, info) = call(&env, "GET", "/v1/kbs/kb-a", admin, None).await;
    assert_eq!(info["ingest_queue"]["queued"], 1, "{info}");
    let url = |v: &Value| v["status_url"].as_str().unwrap().to_string();
    let (s, st) = call(&env, "GET", &url(&second), admin, None).await;
    assert_eq!((s, st["state"].as_str().unwrap()), (StatusCode::OK, "queued"), "{st}");
    drop(hold);
    for v in [&first, &second] {
        let mut last = Value::Null;
        for _ in 0..500 {
            last = call(&env, "GET", &url(v), admin, None).await.1;
            if last["state"] == "indexed" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(last["state"], "indexed", "{last}");
        assert!(last["ingest"]["total_chunks"].as_u64().unwrap() > 0, "{last}");
        assert!(last["seconds"].as_f64().is_some(), "{last}");
    }
    let (_, found) = call(&env, "POST", "/v1/search", admin, Some(json!({"kb": "kb-a", "query": "排队测试2", "limit": 5}))).await;
    assert!(found["hits"].as_array().unwrap().iter().any(|h| h["text"].as_str().unwrap().contains("排队测试2")), "{found}");
}

#[tokio::test]
async fn every_route_declares_its_error_statuses() {
    let env = setup(Keys::default(), 4, false);
    let (_, doc) = call(&env, "GET", "/openapi.json", None, None).await;
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object(), "{}", doc["components"]);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let codes: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
            if path.starts_with("/v1/") {
                for need in ["401", "403", "503"] {
                    assert!(codes.iter().any(|c| c.as_str() == need), "{method} {path} lacks {need}: {codes:?}");
                }
            }
            if method == "post" && path != "/v1/kbs/{id}/documents" && path != "/v1/kbs/{id}/reindex" {
                for need in ["400", "413", "415"] {
                    assert!(codes.iter().any(|c| c.as_str() == need), "{method} {path} lacks {need}: {codes:?}");
                }
            }
        }
    }
}
