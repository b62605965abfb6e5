//! What the CLI's process tests share: a tiny embedder and a test KB `t` in a temp root, the
//! `xiaoguan` binary pointed at it, a bare HTTP client, and the consistency check of a KB.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use xiaoguan_kb::definition::KbDefinition;
use xiaoguan_kb::{KnowledgeBase, StoreBackend};
use xiaoguan_models::{fixtures, BertEmbedder, Embedder};
use xiaoguan_store::{Condition, Filter};

pub const MANIFEST: &str = r#"
id = "tiny-e5"
kind = "embed"
description = "tiny test embedder"
[license]
name = "test"
terms = "test"
[assemble]
format = "e5-packed"
member = "x"
[embed]
dimension = 64
max_tokens = 32
query_prefix = "query: "
passage_prefix = "passage: "
pooling = "mean"
normalize = true
[[packages]]
name = "x"
version = "1"
file = "x.whl"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
bytes = 1
"#;

/// `docs` laws of `articles` articles each; `round` is written into every title and article.
pub fn write_docs(root: &Path, docs: usize, articles: usize, round: usize) {
    std::fs::create_dir_all(root.join("data/laws")).unwrap();
    for d in 0..docs {
        let mut text = format!("# 测试条例{d}-r{round}\n<!-- INFO END -->\n## 第一章 总则\n");
        for a in 1..=articles {
            text.push_str(&format!("第{}条 社保卡丢了怎么补办。建筑工程施工许可证。条例{d}第{a}条（第{round}版）。\n", xiaoguan_text::numerals::to_chinese(a as u32)));
        }
        std::fs::write(root.join(format!("data/laws/测试条例{d}.md")), text).unwrap();
    }
}

/// The tiny model, its manifest, KB `t` over `data/laws/*.md`, and `assist.toml` with `settings`
/// appended (e.g. a `[store]` table).
pub fn setup(root: &Path, docs: usize, articles: usize, settings: &str) {
    let model = root.join("home/models/tiny-e5");
    fixtures::tiny_embedder_dir(&model).unwrap();
    std::fs::write(model.join("xiaoguan-model.json"), r#"{"id":"tiny-e5","manifest_sha256":"x","files":[]}"#).unwrap();
    std::fs::create_dir_all(root.join("manifests")).unwrap();
    std::fs::write(root.join("manifests/tiny-e5.toml"), MANIFEST).unwrap();
    std::fs::create_dir_all(root.join("kbs/t")).unwrap();
    std::fs::write(
        root.join("kbs/t/kb.toml"),
        "id = \"t\"\ntitle = \"t\"\ndomain = \"d\"\ndescription = \"d\"\nembedder = \"tiny-e5\"\n[[sources]]\ninclude = [\"laws/*.md\"]\ndoc_type = \"law\"\n",
    )
    .unwrap();
    std::fs::write(root.join("assist.toml"), format!("kbs = [\"t\"]\n{settings}")).unwrap();
    write_docs(root, docs, articles, 0);
}

/// `xiaoguan ARGS` on the temp root (settings `root/assist.toml`), output piped.
pub fn cmd(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xiaoguan"));
    c.args(args)
        .current_dir(root)
        .env("XIAOGUAN_HOME", root.join("home"))
        .env("XIAOGUAN_MODELS_DIR", root.join("manifests"))
        .env("XIAOGUAN_KB_DIR", root.join("kbs"))
        .env("XIAOGUAN_DATA_ROOT", root.join("data"))
        .env("XIAOGUAN_CONFIG", root.join("assist.toml"))
        .env("XIAOGUAN_THREADS", "1")
        .env_remove("XIAOGUAN_QDRANT_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

pub fn embedder(root: &Path) -> Arc<dyn Embedder> {
    let facts = fixtures::tiny_embed_facts();
    Arc::new(BertEmbedder::load(&root.join("home/models/tiny-e5"), "tiny-e5", &facts).unwrap())
}

pub fn open_kb(root: &Path, backend: &StoreBackend) -> KnowledgeBase {
    let def = KbDefinition::load(&root.join("kbs/t/kb.toml")).unwrap();
    KnowledgeBase::open_in(&def, &root.join("home/kbs"), embedder(root), backend).unwrap()
}

/// Every committed document has exactly its chunks and nothing is pending; returns
/// (documents, points, documents at `round`).
pub fn check_consistent(kb: &KnowledgeBase, round: usize) -> (usize, usize, usize) {
    let state = kb.state();
    for (key, doc) in &state.documents {
        let f = Filter::eq("doc_id", key.clone()).and(Condition::Eq { field: "doc_hash".into(), value: doc.hash.clone().into() });
        assert_eq!(kb.store().count(&f).unwrap(), doc.chunks, "committed document {key} is incomplete");
    }
    let current = state.documents.values().filter(|d| d.title.ends_with(&format!("-r{round}"))).count();
    (state.documents.len(), kb.store().count(&Filter::none()).unwrap(), current)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A bare HTTP/1.1 request: (status, head, body).
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, String, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).ok()?;
    s.write_all(body).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Some((status, head.to_string(), body.to_string()))
}

/// Wait until `GET /readyz` answers 200 (panics after `limit`).
pub fn wait_ready(port: u16, limit: Duration) {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if matches!(http(port, "GET", "/readyz", b""), Some((200, _, _))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the service on port {port} was not ready within {limit:?}");
}
