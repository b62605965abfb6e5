//! Conversations live in the ticket store, not in a process: two service states (two replicas,
//! each with its own store handle, as two `xiaoguan serve` processes would have) on one SQLite
//! file continue each other's conversations, and a key sees only its own. The models and KB are
//! built once and shared by both states; that is all they share besides the database file.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;
use xiaoguan_assist::dispatch::DispatchRules;
use xiaoguan_assist::history::TicketHistory;
use xiaoguan_assist::qa::facts::FactIndex;
use xiaoguan_assist::qa::{AssistConfig, Assistant};
use xiaoguan_assist::ticket::{TicketAssist, TicketClassifiers};
use xiaoguan_kb::definition::KbDefinition;
use xiaoguan_kb::{IngestOptions, KnowledgeBase};
use xiaoguan_models::{fixtures, BertEmbedder, Embedder};
use xiaoguan_server::auth::{hash_key, KeyEntry, Keys, Role};
use xiaoguan_server::config::ServerConfig;
use xiaoguan_server::state::{AppState, Ready};
use xiaoguan_tickets::sqlite::SqliteStore;
use xiaoguan_tickets::{ConversationTurn, TicketStore};

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// The assistant over one small KB, built once per test.
struct Models {
    assistant: Arc<Assistant>,
    tickets: Arc<TicketAssist>,
}

fn models(tmp: &Path) -> Models {
    let model_dir = tmp.join("embedder");
    let facts = fixtures::tiny_embedder_dir(&model_dir).unwrap();
    let embedder: Arc<dyn Embedder> = Arc::new(BertEmbedder::load(&model_dir, "tiny", &facts).unwrap());
    let dir = tmp.join("defs").join("kb-a");
    write(&dir.join("docs").join("社保卡.md"), "# 社保卡补办指南\n\n一、办理地点\n\n社保卡丢失后，携带身份证到社保卡服务网点挂失补领，补卡工本费由个人承担。\n");
    write(
        &dir.join("kb.toml"),
        "id = \"kb-a\"\ntitle = \"kb-a\"\ndomain = \"测试\"\ndescription = \"测试\"\nembedder = \"tiny\"\n[[sources]]\nbase = \"kb\"\ninclude = [\"docs/*\"]\ndoc_type = \"guide\"\n",
    );
    let def = KbDefinition::load(&dir.join("kb.toml")).unwrap();
    let kb = Arc::new(KnowledgeBase::open(&def, &tmp.join("kbs"), embedder).unwrap());
    kb.ingest(&IngestOptions { data_root: tmp.to_path_buf(), progress: false, batch_docs: 8, max_batches: None, uploads_dir: None }).unwrap();
    // The tiny embedder's similarities mean nothing: open the gate so answers come back.
    let config = AssistConfig { evidence_min_similarity: -1.0, evidence_min_coverage: 0.0, max_new_tokens: 8, ..Default::default() };
    let assistant = Arc::new(Assistant::new(vec![kb], None, FactIndex::default(), config).unwrap());
    let tickets = Arc::new(TicketAssist {
        classifiers: TicketClassifiers::default(),
        rules: DispatchRules::parse("").unwrap(),
        embedder: None,
        assistant: Some(assistant.clone()),
        rule_bonus: 0.5,
    });
    Models { assistant, tickets }
}

fn keys() -> Keys {
    let k = |id: &str| KeyEntry { id: id.into(), sha256: hash_key(id), role: Role::Agent, kbs: vec!["*".into()] };
    Keys::from_entries(vec![k("agent-a"), k("agent-b")])
}

/// One replica: its own state and its own handle on the store at `db`.
fn replica(m: &Models, tmp: &Path, store: Arc<dyn TicketStore>, config: ServerConfig) -> Arc<AppState> {
    let history = Arc::new(TicketHistory::new(store, "test-salt"));
    let state = xiaoguan_server::state(config, keys(), history).unwrap();
    let ready = Ready { assistant: m.assistant.clone(), tickets: m.tickets.clone(), kb_defs: Vec::new(), uploads_root: tmp.join("uploads"), data_root: tmp.to_path_buf() };
    assert!(state.ready.set(ready).is_ok());
    state
}

fn sqlite(db: &Path) -> Arc<dyn TicketStore> {
    Arc::new(SqliteStore::open(db).unwrap())
}

async fn ask(st: &Arc<AppState>, key: &str, body: Value, stream: bool) -> (StatusCode, String) {
    let uri = if stream { "/v1/ask?stream=true" } else { "/v1/ask" };
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = xiaoguan_server::routes::router(st.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn ask_json(st: &Arc<AppState>, key: &str, question: &str, conversation: &str) -> Value {
    let (s, body) = ask(st, key, json!({"question": question, "conversation_id": conversation, "mode": "extractive"}), false).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn questions(turns: &[ConversationTurn]) -> Vec<&str> {
    turns.iter().filter(|t| t.role == "user").map(|t| t.content.as_str()).collect()
}

#[tokio::test]
async fn two_replicas_on_one_store_continue_a_conversation_per_key() {
    let tmp = tempfile::tempdir().unwrap();
    let m = models(tmp.path());
    let db = tmp.path().join("tickets").join("tickets.db");
    let (a, b) = (replica(&m, tmp.path(), sqlite(&db), ServerConfig::default()), replica(&m, tmp.path(), sqlite(&db), ServerConfig::default()));
    // The test's own view of the database (a third handle).
    let store = sqlite(&db);

    let first = ask_json(&a, "agent-a", "社保卡补办需要哪些材料", "c1").await;
    assert!(first["rewritten_question"].is_null(), "a first question is not rewritten: {first}");
    let saved = store.conversation("agent-a", "c1").unwrap();
    assert_eq!(saved.len(), 2, "the question and its answer are in the store once A answered: {saved:?}");
    assert_eq!((saved[0].role.as_str(), saved[1].role.as_str()), ("user", "assistant"));
    assert_eq!(saved[1].content, first["text"].as_str().unwrap());

    // Replica B has never seen c1 in memory: it reads A's turns from the store.
    let follow = ask_json(&b, "agent-a", "那在哪里办？", "c1").await;
    assert!(follow["rewritten_question"].as_str().is_some_and(|r| r.contains("社保卡")), "B continued A's conversation: {follow}");

    // Another key with the same conversation id sees nothing of it, on either replica.
    for st in [&a, &b] {
        let other = ask_json(st, "agent-b", "那在哪里办？", "c1").await;
        assert!(!other["rewritten_question"].as_str().is_some_and(|r| r.contains("社保卡")), "agent-a's history leaked to agent-b: {other}");
    }
    assert_eq!(questions(&store.conversation("agent-a", "c1").unwrap()), ["社保卡补办需要哪些材料", "那在哪里办？"]);
    assert_eq!(questions(&store.conversation("agent-b", "c1").unwrap()), ["那在哪里办？", "那在哪里办？"]);

    // Streaming saves too, before its answer event: back on A, the stream's turn is stored.
    let (s, text) = ask(&a, "agent-a", json!({"question": "那要带什么？", "conversation_id": "c1", "mode": "extractive"}), true).await;
    assert_eq!(s, StatusCode::OK);
    assert!(text.contains("event: answer"), "{text}");
    assert_eq!(questions(&store.conversation("agent-a", "c1").unwrap()), ["社保卡补办需要哪些材料", "那在哪里办？", "那要带什么？"]);

    // Without a conversation id nothing is stored.
    let (s, _) = ask(&b, "agent-a", json!({"question": "社保卡", "mode": "extractive"}), false).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(store.trim_conversations(2).unwrap(), 0, "only the two conversations with ids exist");
}

#[tokio::test]
async fn max_messages_and_max_conversations_bound_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let m = models(tmp.path());
    let db = tmp.path().join("tickets.db");
    let store = sqlite(&db);
    // Five older conversations another replica left behind.
    for i in 0..5 {
        store.append_conversation("agent-a", &format!("old{i}"), &[ConversationTurn::new("user", "社保卡")], 40, 1_000 + i).unwrap();
    }
    let mut config = ServerConfig::default();
    config.limits.max_messages = 4;
    config.limits.max_conversations = 3;
    let a = replica(&m, tmp.path(), sqlite(&db), config);
    // The first append of a process trims: the new conversation and the two newest old ones stay.
    for q in ["社保卡补办需要哪些材料", "那在哪里办？", "那要带什么？"] {
        ask_json(&a, "agent-a", q, "new").await;
    }
    assert_eq!(questions(&store.conversation("agent-a", "new").unwrap()), ["那在哪里办？", "那要带什么？"], "the newest max_messages (4) turns are kept");
    assert_eq!(store.conversation("agent-a", "new").unwrap().len(), 4);
    let alive: Vec<bool> = (0..5).map(|i| !store.conversation("agent-a", &format!("old{i}")).unwrap().is_empty()).collect();
    assert_eq!(alive, [false, false, false, true, true]);
}

#[tokio::test]
async fn a_store_that_cannot_read_conversations_is_a_clear_500() {
    let tmp = tempfile::tempdir().unwrap();
    let m = models(tmp.path());
    // A store left at schema 2 has no conversation tables: every conversation read fails in
    // the database, as it would with the database gone.
    let old: Arc<dyn TicketStore> = Arc::new(SqliteStore::open_at_version(&tmp.path().join("old.db"), 2).unwrap());
    let a = replica(&m, tmp.path(), old, ServerConfig::default());
    let (s, body) = ask(&a, "agent-a", json!({"question": "社保卡补办需要哪些材料", "conversation_id": "c1", "mode": "extractive"}), false).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["error"]["type"], "internal_error", "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("conversation 'c1'") && msg.contains("ticket store"), "{msg}");
    // The service is still up, and answers without a conversation.
    let (s, body) = ask(&a, "agent-a", json!({"question": "社保卡补办需要哪些材料", "mode": "extractive"}), false).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // A conversation id the store refuses is the caller's fault: 400.
    let b = replica(&m, tmp.path(), sqlite(&tmp.path().join("new.db")), ServerConfig::default());
    let (s, body) = ask(&b, "agent-a", json!({"question": "社保卡", "conversation_id": "c\u{0}1", "mode": "extractive"}), false).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
}
