//! One suite, two backends: every case runs on the embedded store and on a real Qdrant server
//! (`shared/bin/qdrant`, started on 127.0.0.1 with random ports and stopped by PID). Then what
//! only the server has: state documents, leases, losing and regaining the server, and the same
//! ranking on both backends for the same points.

use serde_json::{json, Map, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;
use xiaoguan_store::process::QdrantProcess;
use xiaoguan_store::{
    CollectionConfig, Condition, EdgeStore, Filter, HybridQuery, LeaseStatus, QdrantServer, QdrantSettings, StoreError, StorePoint, VectorStore,
};

fn config() -> CollectionConfig {
    CollectionConfig { dimension: 4, keyword_fields: vec!["doc_id".into(), "doc_type".into(), "kb".into()], integer_fields: vec!["article_no".into()], datetime_fields: vec!["date".into()] }
}

fn point(id: u64, dense: [f32; 4], text: &str, doc: &str, doc_type: &str, article: u64) -> StorePoint {
    let payload: Map<String, Value> =
        json!({"kb": "t", "doc_id": doc, "doc_type": doc_type, "article_no": article, "text": text}).as_object().unwrap().clone();
    StorePoint { id, dense: dense.to_vec(), bm25_text: text.into(), payload }
}

fn fill(s: &dyn VectorStore) {
    s.upsert(vec![
        point(1, [1.0, 0.0, 0.0, 0.0], "参加基本养老保险的个人按月领取基本养老金", "a", "law", 16),
        point(2, [0.0, 1.0, 0.0, 0.0], "建筑工程开工前建设单位应当申请领取施工许可证", "b", "law", 7),
        point(3, [0.0, 0.0, 1.0, 0.0], "社会保障卡挂失补领流程", "c", "faq", 0),
        point(4, [0.7, 0.7, 0.0, 0.0], "失业保险金的领取期限", "a", "law", 46),
    ])
    .unwrap();
}

/// Scores agree rank by rank, and ids wherever a score is not tied with a neighbour: RRF gives equal scores to
/// a point ranked r by one leg and another ranked r by the other, and each backend orders such ties its own way.
fn assert_same_ranking(a: &[xiaoguan_store::Hit], b: &[xiaoguan_store::Hit], what: &str) {
    let scores = |v: &[xiaoguan_store::Hit]| v.iter().map(|h| (h.id, h.score)).collect::<Vec<_>>();
    assert_eq!(a.len(), b.len(), "{what}: {:?} vs {:?}", scores(a), scores(b));
    for i in 0..a.len() {
        assert!((a[i].score - b[i].score).abs() < 1e-5, "{what}, rank {i}: {:?} vs {:?}", scores(a), scores(b));
        let tied = (i > 0 && (a[i - 1].score - a[i].score).abs() < 1e-6) || a.get(i + 1).is_some_and(|n| (n.score - a[i].score).abs() < 1e-6);
        if !tied {
            assert_eq!(a[i].id, b[i].id, "{what}, rank {i}: {:?} vs {:?}", scores(a), scores(b));
        }
    }
}

fn ids(hits: &[xiaoguan_store::Hit]) -> Vec<u64> {
    hits.iter().map(|h| h.id).collect()
}

/// A fresh, empty store for one case.
type Make<'a> = &'a dyn Fn(&str) -> Box<dyn VectorStore>;

fn hybrid_search_and_filters(make: Make) {
    let s = make("hybrid");
    fill(s.as_ref());
    assert_eq!(s.search(&HybridQuery::new(vec![], "施工许可证", 2)).unwrap()[0].id, 2, "BM25 alone (jieba segmentation)");
    assert_eq!(s.search(&HybridQuery::new(vec![0.0, 0.0, 1.0, 0.0], "", 1)).unwrap()[0].id, 3, "dense alone");
    let hits = s.search(&HybridQuery::new(vec![1.0, 0.0, 0.0, 0.0], "养老金", 3)).unwrap();
    assert_eq!(hits[0].id, 1);
    assert_eq!(hits[0].payload["doc_id"], "a");
    assert!((hits[0].dense_similarity.unwrap() - 1.0).abs() < 1e-4, "cosine similarity comes with each hit");
    let mut q = HybridQuery::new(vec![1.0, 0.0, 0.0, 0.0], "保险", 10);
    q.filter = Filter::eq("doc_type", "law").and(Condition::Range { field: "article_no".into(), gte: Some(10.0), lte: None });
    let got = ids(&s.search(&q).unwrap());
    assert!(got.contains(&1) && got.contains(&4) && !got.contains(&2) && !got.contains(&3), "{got:?}");
    q.filter = Filter { all: vec![Condition::In { field: "doc_id".into(), values: vec!["b".into(), "c".into()] }] };
    assert!(ids(&s.search(&q).unwrap()).iter().all(|i| *i == 2 || *i == 3));
    q.filter = Filter::eq("article_no", 46);
    assert_eq!(ids(&s.search(&q).unwrap()), vec![4], "integer match");
    assert_eq!(s.count(&Filter { all: vec![Condition::Ne { field: "doc_id".into(), value: "a".into() }] }).unwrap(), 2);
    // Weights: with BM25 switched off the dense leg alone decides.
    let mut q = HybridQuery::new(vec![0.0, 0.0, 1.0, 0.0], "施工许可证", 1);
    q.bm25_weight = 0.0;
    assert_eq!(s.search(&q).unwrap()[0].id, 3);
}

fn date_ranges(make: Make) {
    let s = make("dates");
    let dated = |id: u64, date: &str| {
        let mut p = point(id, [1.0, 0.0, 0.0, 0.0], "失业保险金的领取期限", "a", "law", 46);
        p.payload.insert("date".into(), date.into());
        p
    };
    s.upsert(vec![dated(1, "1999-01-22"), dated(2, "2010-10-28"), dated(3, "2018-12-29")]).unwrap();
    let found = |gte: Option<&str>, lte: Option<&str>| {
        let mut q = HybridQuery::new(vec![1.0, 0.0, 0.0, 0.0], "失业保险金", 10);
        q.filter = Filter { all: vec![Condition::DateRange { field: "date".into(), gte: gte.map(Into::into), lte: lte.map(Into::into) }] };
        let mut v = ids(&s.search(&q).unwrap());
        v.sort();
        v
    };
    assert_eq!(found(None, Some("2015-06-30")), vec![1, 2]);
    assert_eq!(found(Some("2010-10-28"), None), vec![2, 3]);
    assert_eq!(found(Some("2000-01-01"), Some("2012-12-31")), vec![2]);
    let mut q = HybridQuery::new(vec![], "失业", 3);
    q.filter = Filter { all: vec![Condition::DateRange { field: "date".into(), gte: None, lte: Some("去年".into()) }] };
    assert!(matches!(s.search(&q), Err(StoreError::InvalidRequest(m)) if m.contains("去年")));
}

fn dense_vectors_in_order(make: Make) {
    let s = make("vectors");
    fill(s.as_ref());
    let v = s.dense_vectors(&[4, 99, 2, 4]).unwrap();
    assert_eq!(v.len(), 4);
    assert_eq!(v[3], v[0]);
    let four = v[0].as_ref().expect("stored");
    assert!((four[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-4, "cosine vectors are stored normalized: {four:?}");
    assert!(v[1].is_none());
    assert_eq!(v[2].as_deref(), Some(&[0.0, 1.0, 0.0, 0.0][..]));
}

fn delete_scroll_count(make: Make) {
    let s = make("delete");
    fill(s.as_ref());
    assert_eq!(s.count(&Filter::none()).unwrap(), 4);
    s.delete(&Filter::eq("doc_id", "a")).unwrap();
    assert_eq!(s.count(&Filter::none()).unwrap(), 2);
    let (page, next) = s.scroll(&Filter::none(), None, 1).unwrap();
    assert_eq!(page.len(), 1);
    let (rest, after) = s.scroll(&Filter::none(), next, 10).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(after, None);
    assert_ne!(page[0].id, rest[0].id);
    assert!(matches!(s.delete(&Filter::none()), Err(StoreError::InvalidRequest(_))), "an empty filter would delete everything");
    // Same id = replace.
    s.upsert(vec![point(2, [0.0, 1.0, 0.0, 0.0], "新的文本", "b", "law", 8)]).unwrap();
    assert_eq!(s.count(&Filter::none()).unwrap(), 2);
    assert_eq!(s.count(&Filter::eq("article_no", 8)).unwrap(), 1);
}

fn export_import_round_trip(make: Make) {
    let a = make("export_a");
    fill(a.as_ref());
    let mut all = Vec::new();
    let mut offset = None;
    loop {
        let (page, next) = a.export(offset, 3).unwrap();
        all.extend(page);
        match next {
            Some(n) => offset = Some(n),
            None => break,
        }
    }
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|p| p.dense.len() == 4 && !p.sparse_indices.is_empty() && p.sparse_indices.len() == p.sparse_values.len()));
    let b = make("export_b");
    b.import(all.clone()).unwrap();
    for (dense, text) in [(vec![], "施工许可证"), (vec![1.0, 0.2, 0.1, 0.0], "养老金"), (vec![0.0, 0.8, 0.6, 0.0], "保险")] {
        let q = HybridQuery::new(dense, text, 4);
        assert_same_ranking(&a.search(&q).unwrap(), &b.search(&q).unwrap(), &format!("an imported copy, '{text}'"));
    }
    let mut bad = all[0].clone();
    bad.dense = vec![1.0];
    assert!(matches!(b.import(vec![bad]), Err(StoreError::InvalidRequest(_))));
}

fn bad_requests(make: Make) {
    let s = make("bad");
    fill(s.as_ref());
    let err = s.upsert(vec![StorePoint { id: 5, dense: vec![1.0], bm25_text: String::new(), payload: Map::new() }]).unwrap_err();
    assert!(matches!(err, StoreError::InvalidRequest(_)), "{err}");
    let err = s.search(&HybridQuery::new(vec![1.0, 2.0], "x", 1)).unwrap_err();
    assert!(matches!(err, StoreError::InvalidRequest(_)), "{err}");
    let mut q = HybridQuery::new(vec![], "保险", 1);
    q.filter = Filter::eq("doc_id", json!([1, 2]));
    assert!(matches!(s.search(&q), Err(StoreError::InvalidRequest(_))));
    assert!(s.search(&HybridQuery::new(vec![], "   ", 5)).unwrap().is_empty());
}

fn snapshot_is_written(make: Make) {
    let s = make("snapshot");
    fill(s.as_ref());
    let dest = tempfile::tempdir().unwrap();
    let to = dest.path().join("snap");
    s.snapshot(&to).unwrap();
    let bytes: u64 = std::fs::read_dir(&to).unwrap().flatten().map(|e| e.metadata().map(|m| m.len()).unwrap_or(0)).sum();
    assert!(bytes > 1000, "the snapshot folder holds the data ({bytes} bytes)");
}

const CASES: &[(&str, fn(Make))] = &[
    ("hybrid_search_and_filters", hybrid_search_and_filters),
    ("date_ranges", date_ranges),
    ("dense_vectors_in_order", dense_vectors_in_order),
    ("delete_scroll_count", delete_scroll_count),
    ("export_import_round_trip", export_import_round_trip),
    ("bad_requests", bad_requests),
    ("snapshot_is_written", snapshot_is_written),
];

/// Every case; all failures are reported together.
fn run_all(backend: &str, make: Make) {
    let failed: Vec<String> = CASES
        .iter()
        .filter_map(|(name, case)| catch_unwind(AssertUnwindSafe(|| case(make))).err().map(|_| format!("{backend}: {name}")))
        .collect();
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}

#[test]
fn embedded_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let make = |name: &str| -> Box<dyn VectorStore> { Box::new(EdgeStore::open(&dir.path().join(name), &config()).unwrap()) };
    run_all("embedded", &make);
}

struct Server {
    process: QdrantProcess,
    conn: Arc<QdrantServer>,
    _dir: tempfile::TempDir,
}

fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let process = QdrantProcess::start(dir.path()).unwrap_or_else(|e| panic!("starting the Qdrant server: {e}"));
    let mut settings = QdrantSettings::new(process.grpc_url());
    settings.rest_url = Some(process.rest_url());
    settings.timeout = Duration::from_secs(5);
    settings.connect_timeout = Duration::from_secs(1);
    let conn = QdrantServer::connect(settings).unwrap();
    Server { process, conn, _dir: dir }
}

#[test]
fn qdrant_server_conforms() {
    let s = server();
    let make = |name: &str| -> Box<dyn VectorStore> { Box::new(s.conn.open_collection(name, &config()).unwrap()) };
    run_all("qdrant", &make);
    // Reopening finds the collection and its indexes as they were.
    let again = s.conn.open_collection("hybrid", &config()).unwrap();
    assert_eq!(again.count(&Filter::none()).unwrap(), 4);
    assert!(again.describe().contains("collection xiaoguan_hybrid"), "{}", again.describe());
}

#[test]
fn the_same_points_rank_the_same_on_both_backends() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeStore::open(&dir.path().join("e"), &config()).unwrap();
    let remote = s.conn.open_collection("parity", &config()).unwrap();
    // More points than the candidates, so BM25's IDF and the fusion matter.
    let texts = ["养老保险", "医疗保险报销", "失业保险金领取", "施工许可证申请", "营业执照办理", "社保卡挂失", "公积金提取", "工伤认定", "生育津贴", "个体工商户转型"];
    // Tie-free on purpose: each point has its own length in tokens (so its own BM25 score) and a pseudo-random
    // direction, because two backends may order equal scores differently.
    let mut seed = 12345u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) as f32) / (u32::MAX >> 1) as f32
    };
    let points: Vec<StorePoint> = (0..60u64)
        .map(|i| {
            let filler = "窗口".repeat(i as usize);
            let t = format!("{}{}{filler}", texts[(i % 10) as usize], texts[((i * 7 + 3) % 10) as usize]);
            let d = [next() + 0.05, next(), next(), next()];
            point(i + 1, d, &t, &format!("d{}", i % 9), if i % 2 == 0 { "law" } else { "faq" }, i)
        })
        .collect();
    edge.upsert(points.clone()).unwrap();
    remote.upsert(points).unwrap();
    for (dense, text) in [(vec![1.0, 0.0, 0.5, 1.0], "失业保险金"), (vec![], "营业执照"), (vec![0.2, 2.0, 0.0, 1.0], ""), (vec![3.0, 1.0, 1.0, 1.0], "社保卡挂失补办")] {
        let mut q = HybridQuery::new(dense, text, 8);
        q.candidates = 20;
        assert_same_ranking(&edge.search(&q).unwrap(), &remote.search(&q).unwrap(), &format!("'{text}' on both backends"));
    }
}

#[test]
fn state_documents_and_leases_live_on_the_server() {
    let s = server();
    assert_eq!(s.conn.read_state("kb/x").unwrap(), None);
    s.conn.write_state("kb/x", 3, r#"{"version":1}"#).unwrap();
    assert_eq!(s.conn.read_state("kb/x").unwrap(), Some((3, r#"{"version":1}"#.to_string())));
    assert_eq!(s.conn.state_revision("kb/x").unwrap(), Some(3));
    // A second connection (another replica) sees it.
    let other = QdrantServer::connect(QdrantSettings::new(s.process.grpc_url())).unwrap();
    assert_eq!(other.state_revision("kb/x").unwrap(), Some(3));
    s.conn.delete_state("kb/x").unwrap();
    assert_eq!(other.read_state("kb/x").unwrap(), None);

    let ttl = Duration::from_millis(1500);
    assert!(matches!(s.conn.lease("ingest/x", "me", ttl).unwrap(), LeaseStatus::Acquired { .. }));
    assert!(matches!(s.conn.lease("ingest/x", "me", ttl).unwrap(), LeaseStatus::Acquired { .. }), "renewal by the holder");
    match other.lease("ingest/x", "you", ttl).unwrap() {
        LeaseStatus::HeldBy { holder, .. } => assert_eq!(holder, "me"),
        got => panic!("a held lease was taken: {got:?}"),
    }
    assert!(matches!(other.lease("ingest/y", "you", ttl).unwrap(), LeaseStatus::Acquired { .. }), "another KB's lease is separate");
    other.release("ingest/x", "you").unwrap();
    assert!(matches!(other.lease("ingest/x", "you", ttl).unwrap(), LeaseStatus::HeldBy { .. }), "only the holder releases");
    s.conn.release("ingest/x", "me").unwrap();
    assert!(matches!(other.lease("ingest/x", "you", ttl).unwrap(), LeaseStatus::Acquired { .. }), "released → free");
    // An expired lease (its holder died) is free again.
    std::thread::sleep(ttl + Duration::from_millis(200));
    assert!(matches!(s.conn.lease("ingest/x", "me", ttl).unwrap(), LeaseStatus::Acquired { .. }), "expired → free");
}

#[test]
fn a_lost_server_is_unavailable_and_comes_back_by_itself() {
    let mut s = server();
    let store = s.conn.open_collection("lost", &config()).unwrap();
    fill(&store);
    s.process.kill();
    let started = std::time::Instant::now();
    let err = store.search(&HybridQuery::new(vec![], "施工许可证", 2)).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(8), "bounded by the timeouts: {:?}", started.elapsed());
    s.process.restart().unwrap();
    // The same connection reconnects; nothing written before the kill is lost.
    let mut back = None;
    for _ in 0..50 {
        match store.count(&Filter::none()) {
            Ok(n) => {
                back = Some(n);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    assert_eq!(back, Some(4));
    assert_eq!(store.search(&HybridQuery::new(vec![], "施工许可证", 1)).unwrap()[0].id, 2);
}

#[test]
fn an_unreachable_server_is_a_clear_error_at_connect() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut settings = QdrantSettings::new(format!("http://127.0.0.1:{port}"));
    settings.connect_timeout = Duration::from_secs(1);
    settings.timeout = Duration::from_secs(2);
    let err = QdrantServer::connect(settings).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}
