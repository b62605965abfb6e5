//! Knowledge bases on a real Qdrant server (`shared/bin/qdrant`, on 127.0.0.1 with random
//! ports, stopped by PID): ingest in one process and search from another, a second ingest
//! refused by the lease, ingests killed (-9) and resumed, the server killed mid-ingest and
//! restarted, `kb migrate` there and back, two `serve` replicas that see a re-ingest without a
//! restart and answer 503 + Retry-After while the server is away, and an unreachable server.

mod support;

use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;
use xiaoguan_kb::{StoreBackend, StoreSettings};
use xiaoguan_store::process::QdrantProcess;
use xiaoguan_store::Filter;

/// `[store]` pointing at the server: short leases and polls so the tests wait little.
fn store_settings(q: &QdrantProcess) -> String {
    format!(
        "[store]\nbackend = \"qdrant\"\nurl = \"{}\"\nrest_url = \"{}\"\nlease_secs = 3\nstate_poll_ms = 200\ntimeout_secs = 5\nconnect_timeout_secs = 1\n",
        q.grpc_url(),
        q.rest_url()
    )
}

fn backend(root: &Path) -> StoreBackend {
    StoreSettings::from_file(&root.join("assist.toml")).unwrap().connect().unwrap()
}

fn run(root: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = cmd(root, args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn search_json(root: &Path, extra: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["kb", "search", "t", "社保卡丢了怎么补办", "-k", "8", "--json"];
    args.extend_from_slice(extra);
    let (code, out, err) = run(root, &args);
    assert_eq!(code, Some(0), "kb search failed: {err}");
    let hits: Vec<Value> = serde_json::from_str(&out).unwrap();
    hits.iter().map(|h| (h["chunk_id"].as_str().unwrap().to_string(), format!("{:.5}", h["score"].as_f64().unwrap()))).collect()
}

fn start_qdrant(root: &Path) -> QdrantProcess {
    QdrantProcess::start(&root.join("qdrant")).unwrap_or_else(|e| panic!("starting Qdrant: {e}"))
}

#[test]
fn ingest_in_one_process_search_from_another_and_the_lease_refuses_a_second_ingest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let q = start_qdrant(root);
    setup(root, 12, 12, &store_settings(&q));
    let (code, out, err) = run(root, &["kb", "ingest", "t", "--quiet"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("t: version 1, 12 documents"), "{out}");
    // Nothing of the KB is on this machine but its folder for uploads and quarantine.
    assert!(!root.join("home/kbs/t/state.json").exists() && !root.join("home/kbs/t/store").exists());
    let hits = search_json(root, &[]);
    assert_eq!(hits.len(), 8);
    let (code, out, _) = run(root, &["kb", "stats", "t"]);
    assert_eq!(code, Some(0));
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["chunks"], 12 * 12);
    assert_eq!(stats["points"], 12 * 12);
    assert!(stats["backend"].as_str().unwrap().starts_with(&format!("qdrant {}", q.grpc_url())), "{stats}");

    // While this process holds the lease, an ingest from another process is refused.
    let kb = open_kb(root, &backend(root));
    let lease = kb.backend().lease("t").unwrap().expect("a server KB has a lease");
    write_docs(root, 12, 12, 1);
    let (code, _, err) = run(root, &["kb", "ingest", "t", "--quiet"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("being changed by another process"), "{err}");
    drop(lease);
    let (code, out, err) = run(root, &["kb", "ingest", "t", "--quiet"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("version 2") && out.contains("12 changed"), "{out}");
    // The first process sees the second one's commit on its next search.
    std::thread::sleep(Duration::from_millis(250));
    kb.search("社保卡", &Default::default()).unwrap();
    assert_eq!(kb.version(), 2);
    assert_eq!(check_consistent(&kb, 1), (12, 12 * 12, 12));
}

#[test]
fn killed_ingests_and_a_killed_server_lose_nothing_and_duplicate_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut q = start_qdrant(root);
    let docs = 60;
    setup(root, docs, 12, &store_settings(&q));
    let b = backend(root);
    let ingest = |root: &Path| cmd(root, &["kb", "ingest", "t", "--batch-docs", "3", "--quiet"]);
    let out = ingest(root).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Kills land after the ingest has committed `n` documents of its round, whatever the
    // machine's speed (a fixed delay missed on a quick run): the KB watches the server's state.
    let watcher = open_kb(root, &b);
    let committed_at = |round: usize| {
        watcher.refresh().unwrap();
        watcher.state().documents.values().filter(|d| d.title.ends_with(&format!("-r{round}"))).count()
    };
    let wait_for = |child: &mut std::process::Child, round: usize, n: usize| {
        while child.try_wait().unwrap().is_none() && committed_at(round) < n {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // kill -9 of the ingest at a few points; the lease it held expires (3 s) and the next resumes.
    let mut interrupted = 0;
    for (round, n) in [(1usize, docs / 6), (2, docs / 3), (3, docs / 2)] {
        write_docs(root, docs, 12, round);
        let mut child = ingest(root).spawn().unwrap();
        wait_for(&mut child, round, n);
        let _ = child.kill();
        child.wait().unwrap();
        let kb = open_kb(root, &b);
        let (_, _, current) = check_consistent(&kb, round);
        if current < docs {
            interrupted += 1;
        }
        // Searches answer from committed points only.
        let state = kb.state();
        if !state.documents.is_empty() {
            let hits = kb.search("社保卡丢了怎么补办", &Default::default()).unwrap();
            assert!(hits.iter().all(|h| state.documents.get(&h.doc_id).is_some_and(|d| Some(d.hash.as_str()) == h.payload["doc_hash"].as_str())));
        }
        std::thread::sleep(Duration::from_millis(3200));
    }
    assert!(interrupted >= 2, "only {interrupted} of 3 kills landed mid-ingest");

    // The server killed mid-ingest: the ingest fails with a clear error, the server comes back
    // with everything it acknowledged, and the next ingest (after the lease expires) completes.
    write_docs(root, docs, 12, 9);
    let mut child = ingest(root).spawn().unwrap();
    wait_for(&mut child, 9, docs / 3);
    q.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the ingest went on without its server");
    assert!(err.contains("unavailable") || err.contains(&q.grpc_url()), "{err}");
    q.restart().unwrap();
    let kb = open_kb(root, &backend(root));
    let (committed, _, _) = check_consistent(&kb, 9);
    assert!(committed > 0);
    drop(kb);
    std::thread::sleep(Duration::from_secs(4));
    let out = ingest(root).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let kb = open_kb(root, &backend(root));
    assert_eq!(check_consistent(&kb, 9), (docs, docs * 12, docs), "stale or duplicate points left behind");
    assert!(kb.state().pending.is_empty());
}

/// Every point of a KB's store: id → (dense, sparse sorted by term, payload with numbers as f64).
fn points_of(kb: &xiaoguan_kb::KnowledgeBase) -> std::collections::BTreeMap<u64, (Vec<f32>, Vec<(u32, f32)>, Value)> {
    fn numbers_as_f64(v: Value) -> Value {
        match v {
            Value::Number(n) => serde_json::json!(n.as_f64()),
            Value::Array(a) => Value::Array(a.into_iter().map(numbers_as_f64).collect()),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, numbers_as_f64(v))).collect()),
            v => v,
        }
    }
    let mut out = std::collections::BTreeMap::new();
    let mut offset = None;
    loop {
        let (page, next) = kb.store().export(offset, 64).unwrap();
        for p in page {
            let mut sparse: Vec<(u32, f32)> = p.sparse_indices.into_iter().zip(p.sparse_values).collect();
            sparse.sort_by_key(|(i, _)| *i);
            out.insert(p.id, (p.dense, sparse, numbers_as_f64(Value::Object(p.payload))));
        }
        match next {
            Some(n) => offset = Some(n),
            None => return out,
        }
    }
}

fn assert_same_points(a: &std::collections::BTreeMap<u64, (Vec<f32>, Vec<(u32, f32)>, Value)>, b: &std::collections::BTreeMap<u64, (Vec<f32>, Vec<(u32, f32)>, Value)>, what: &str) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{what}: the point ids differ");
    for (id, (dense, sparse, payload)) in a {
        let (d2, s2, p2) = &b[id];
        assert!(dense.len() == d2.len() && dense.iter().zip(d2).all(|(x, y)| (x - y).abs() < 1e-5), "{what}: point {id}'s dense vector differs");
        assert_eq!(sparse, s2, "{what}: point {id}'s BM25 vector differs");
        assert_eq!(payload, p2, "{what}: point {id}'s payload differs");
    }
}

/// Scores in rank order: the test documents are near-duplicates, so equal scores tie and two
/// backends may order tied chunks differently (tie-free ranking parity is the store's
/// conformance test); the points themselves are compared one by one.
fn scores(hits: &[(String, String)]) -> Vec<&str> {
    hits.iter().map(|(_, s)| s.as_str()).collect()
}

#[test]
fn kb_migrate_copies_the_vectors_there_and_back_and_ranks_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let q = start_qdrant(root);
    setup(root, 10, 8, "");
    let (code, _, err) = run(root, &["kb", "ingest", "t", "--quiet"]);
    assert_eq!(code, Some(0), "{err}");
    let embedded_hits = search_json(root, &[]);
    let embedded_points = points_of(&open_kb(root, &backend(root)));
    assert_eq!(embedded_points.len(), 80);
    let url = q.grpc_url();
    let (code, out, err) = run(root, &["kb", "migrate", "t", "--to", &url, "--quiet"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("80 points"), "{out}");
    let server = StoreSettings::default().with_url_override(Some(url.clone())).connect().unwrap();
    assert_same_points(&embedded_points, &points_of(&open_kb(root, &server)), "copied to the server");
    assert_eq!(scores(&search_json(root, &["--qdrant-url", &url])), scores(&embedded_hits), "the server ranks the copy as the embedded store did");
    // A second copy onto a KB that already has points needs --replace.
    let (code, _, err) = run(root, &["kb", "migrate", "t", "--to", &url]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--replace"), "{err}");
    // And back: the embedded KB removed, then copied from the server.
    let (code, _, err) = run(root, &["kb", "remove", "t"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(root, &["kb", "migrate", "t", "--from", &url, "--quiet"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("80 points"), "{out}");
    assert_same_points(&embedded_points, &points_of(&open_kb(root, &backend(root))), "copied back");
    assert_eq!(scores(&search_json(root, &[])), scores(&embedded_hits));
    let (_, out, _) = run(root, &["kb", "stats", "t"]);
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert!(stats["backend"].as_str().unwrap().starts_with("embedded"), "{stats}");
    assert_eq!(stats["points"], 80);
}

#[test]
fn an_unreachable_server_is_a_clear_error_and_a_non_zero_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let port = free_port();
    setup(root, 2, 2, &format!("[store]\nbackend = \"qdrant\"\nurl = \"http://127.0.0.1:{port}\"\nconnect_timeout_secs = 1\ntimeout_secs = 2\n"));
    for args in [&["kb", "list"][..], &["serve", "--bind", &format!("127.0.0.1:{}", free_port()), "--no-generator"][..]] {
        let started = Instant::now();
        let (code, _, err) = run(root, args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains("unavailable"), "{args:?}: {err}");
        assert!(started.elapsed() < Duration::from_secs(20), "{args:?} took {:?}", started.elapsed());
    }
}

struct Replica {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Replica {
    /// Wait for `/readyz`; on failure, the replica's own log says why.
    fn wait_ready(&mut self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if matches!(http(self.port, "GET", "/readyz", b""), Some((200, _, _))) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the replica on {} exited ({status}): {}", self.port, std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the replica on {} was not ready within 60 s: {}", self.port, std::fs::read_to_string(&self.log).unwrap_or_default());
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replica(root: &Path) -> Replica {
    let port = free_port();
    let log = root.join(format!("replica-{port}.log"));
    let mut c = cmd(root, &["serve", "--bind", &format!("127.0.0.1:{port}"), "--no-generator"]);
    c.stdout(std::process::Stdio::null()).stderr(std::fs::File::create(&log).unwrap());
    Replica { child: c.spawn().unwrap(), port, log }
}

fn search_http(port: u16) -> (u16, String, Value) {
    let (status, head, body) = http(port, "POST", "/v1/search", r#"{"kb": "t", "query": "社保卡丢了怎么补办", "limit": 6}"#.as_bytes()).expect("the service answers");
    (status, head, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn two_replicas_answer_alike_see_a_reingest_and_ride_out_a_lost_server() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut q = start_qdrant(root);
    setup(root, 8, 6, &store_settings(&q));
    let (code, _, err) = run(root, &["kb", "ingest", "t", "--quiet"]);
    assert_eq!(code, Some(0), "{err}");
    let (mut a, mut b) = (replica(root), replica(root));
    a.wait_ready();
    b.wait_ready();
    let (sa, _, ha) = search_http(a.port);
    let (sb, _, hb) = search_http(b.port);
    assert_eq!((sa, sb), (200, 200));
    assert_eq!(ha["hits"], hb["hits"], "two replicas on one server answer identically");
    let (_, _, ready) = http(a.port, "GET", "/readyz", b"").unwrap();
    assert!(ready.contains("qdrant http://127.0.0.1"), "{ready}");

    // Re-ingested from another process: both replicas answer from the new version, no restart.
    write_docs(root, 8, 6, 1);
    let (code, _, err) = run(root, &["kb", "ingest", "t", "--quiet"]);
    assert_eq!(code, Some(0), "{err}");
    std::thread::sleep(Duration::from_millis(400));
    for port in [a.port, b.port] {
        let (status, _, hits) = search_http(port);
        assert_eq!(status, 200);
        let texts: Vec<&str> = hits["hits"].as_array().unwrap().iter().map(|h| h["text"].as_str().unwrap_or("")).collect();
        assert!(texts.iter().all(|t| t.contains("第1版")), "replica on {port} still answers from the old version: {texts:?}");
        let (_, _, kbs) = http(port, "GET", "/v1/kbs", b"").unwrap();
        assert!(kbs.contains("\"version\":2"), "{kbs}");
    }

    // The server lost: 503 with Retry-After, the replicas stay up, and recover by themselves.
    q.kill();
    let (status, head, body) = search_http(a.port);
    assert_eq!(status, 503, "{body}");
    assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}");
    assert!(matches!(http(a.port, "GET", "/healthz", b""), Some((200, _, _))), "the replica stays up");
    q.restart().unwrap();
    let started = Instant::now();
    loop {
        let (status, _, hits) = search_http(a.port);
        if status == 200 {
            assert_eq!(hits["hits"].as_array().map(Vec::len), Some(6));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no recovery after the server came back: {status}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let kb = open_kb(root, &backend(root));
    assert_eq!(kb.store().count(&Filter::none()).unwrap(), 8 * 6);
}
