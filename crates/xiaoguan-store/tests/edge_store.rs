//! What only the embedded store has: indexes added on reopen, a snapshot that reopens as a
//! store, one opener per folder, serialized flushes, closing without its folder. The cases
//! every backend shares are in conformance.rs.

use serde_json::{json, Map, Value};
use xiaoguan_store::{Condition, EdgeStore, EdgeStoreConfig, Filter, HybridQuery, StoreError, StorePoint, VectorStore};

fn config() -> EdgeStoreConfig {
    EdgeStoreConfig { dimension: 4, keyword_fields: vec!["doc_id".into(), "doc_type".into()], integer_fields: vec!["article_no".into()], datetime_fields: vec!["date".into()] }
}

fn point(id: u64, dense: [f32; 4], text: &str, doc: &str, doc_type: &str, article: u64) -> StorePoint {
    let payload: Map<String, Value> =
        json!({"doc_id": doc, "doc_type": doc_type, "article_no": article, "text": text}).as_object().unwrap().clone();
    StorePoint { id, dense: dense.to_vec(), bm25_text: text.into(), payload }
}

fn filled(dir: &std::path::Path) -> EdgeStore {
    let s = EdgeStore::open(dir, &config()).unwrap();
    s.upsert(vec![
        point(1, [1.0, 0.0, 0.0, 0.0], "参加基本养老保险的个人按月领取基本养老金", "a", "law", 16),
        point(2, [0.0, 1.0, 0.0, 0.0], "建筑工程开工前建设单位应当申请领取施工许可证", "b", "law", 7),
        point(3, [0.0, 0.0, 1.0, 0.0], "社会保障卡挂失补领流程", "c", "faq", 0),
        point(4, [0.7, 0.7, 0.0, 0.0], "失业保险金的领取期限", "a", "law", 46),
    ])
    .unwrap();
    s
}

#[test]
fn date_ranges_pick_versions_and_bad_dates_are_the_callers_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    // A store created before `date` had an index gets it when reopened.
    let old = EdgeStoreConfig { datetime_fields: vec![], ..config() };
    let s = EdgeStore::open(&path, &old).unwrap();
    let dated = |id: u64, date: &str| {
        let mut p = point(id, [1.0, 0.0, 0.0, 0.0], "失业保险金的领取期限", "a", "law", 46);
        p.payload.insert("date".into(), date.into());
        p
    };
    s.upsert(vec![dated(1, "1999-01-22"), dated(2, "2010-10-28"), dated(3, "2018-12-29")]).unwrap();
    drop(s);
    let s = EdgeStore::open(&path, &config()).unwrap();
    assert!(s.indexed_fields().contains(&"date".to_string()), "{:?}", s.indexed_fields());
    let ids = |gte: Option<&str>, lte: Option<&str>| {
        let mut q = HybridQuery::new(vec![1.0, 0.0, 0.0, 0.0], "失业保险金", 10);
        q.filter = Filter { all: vec![Condition::DateRange { field: "date".into(), gte: gte.map(Into::into), lte: lte.map(Into::into) }] };
        let mut v: Vec<u64> = s.search(&q).unwrap().iter().map(|h| h.id).collect();
        v.sort();
        v
    };
    assert_eq!(ids(None, Some("2015-06-30")), vec![1, 2]);
    assert_eq!(ids(Some("2010-10-28"), None), vec![2, 3]);
    assert_eq!(ids(Some("2000-01-01"), Some("2012-12-31")), vec![2]);
    let mut q = HybridQuery::new(vec![], "失业", 3);
    q.filter = Filter { all: vec![Condition::DateRange { field: "date".into(), gte: None, lte: Some("去年".into()) }] };
    assert!(matches!(s.search(&q), Err(StoreError::InvalidRequest(m)) if m.contains("去年")));
}

#[test]
fn delete_scroll_count_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let s = filled(&dir.path().join("s"));
    assert_eq!(s.count(&Filter::none()).unwrap(), 4);
    s.delete(&Filter::eq("doc_id", "a")).unwrap();
    assert_eq!(s.count(&Filter::none()).unwrap(), 2);
    let (page, next) = s.scroll(&Filter::none(), None, 1).unwrap();
    assert_eq!(page.len(), 1);
    let (rest, _) = s.scroll(&Filter::none(), next, 10).unwrap();
    assert_eq!(rest.len(), 1);
    // An empty filter would delete everything: refused.
    assert!(matches!(s.delete(&Filter::none()), Err(StoreError::InvalidRequest(_))));

    let snap = dir.path().join("snap");
    s.snapshot(&snap).unwrap();
    s.upsert(vec![point(9, [0.0, 0.0, 0.0, 1.0], "后来写入", "z", "law", 1)]).unwrap();
    drop(s);
    let restored = EdgeStore::open(&snap, &config()).unwrap();
    assert_eq!(restored.count(&Filter::none()).unwrap(), 2, "the snapshot holds the state at snapshot time");
    let hits = restored.search(&HybridQuery::new(vec![], "施工许可证", 1)).unwrap();
    assert_eq!(hits[0].id, 2);
}

#[test]
fn bad_requests_are_the_callers_error_and_a_second_opener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = filled(dir.path());
    let err = s.upsert(vec![StorePoint { id: 5, dense: vec![1.0], bm25_text: String::new(), payload: Map::new() }]).unwrap_err();
    assert!(matches!(err, StoreError::InvalidRequest(_)), "{err}");
    let err = s.search(&HybridQuery::new(vec![1.0, 2.0], "x", 1)).unwrap_err();
    assert!(matches!(err, StoreError::InvalidRequest(_)), "{err}");
    let mut q = HybridQuery::new(vec![], "保险", 1);
    q.filter = Filter::eq("doc_id", json!([1, 2]));
    assert!(matches!(s.search(&q), Err(StoreError::InvalidRequest(_))));
    assert!(s.search(&HybridQuery::new(vec![], "   ", 5)).unwrap().is_empty());
    let second = EdgeStore::open(dir.path(), &config());
    assert!(matches!(second, Err(StoreError::Locked { .. })), "{:?}", second.err());
}

#[test]
fn concurrent_writers_and_flushes_do_not_collide() {
    // qdrant-edge's flush panics when an update holds its WAL: the store serializes writes.
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(EdgeStore::open(dir.path(), &config()).unwrap());
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..40u64 {
                    let id = w * 1000 + i;
                    s.upsert(vec![point(id, [1.0, w as f32, i as f32, 0.0], "失业保险金的领取期限", "d", "law", i)]).unwrap();
                    s.flush().unwrap();
                    s.search(&HybridQuery::new(vec![1.0, 0.0, 0.0, 0.0], "失业保险", 3)).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a writer panicked");
    }
    assert_eq!(s.count(&Filter::eq("doc_id", "d")).unwrap(), 160);
}

#[test]
fn a_store_whose_folder_is_gone_closes_without_a_panic() {
    // A store outliving its folder (a temporary folder removed first, `kb remove` from another
    // process) must close quietly: qdrant-edge's own drop would panic on the failed flush.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let s = filled(&path);
    std::fs::remove_dir_all(&path).unwrap();
    assert!(std::thread::spawn(move || drop(s)).join().is_ok(), "dropping the store panicked");
    // A flush that fails is an error, not a panic.
    let s = filled(&dir.path().join("t"));
    std::fs::remove_dir_all(dir.path().join("t")).unwrap();
    let flushed = std::thread::spawn(move || s.flush().is_ok()).join();
    assert!(flushed.is_ok(), "flush panicked instead of returning an error");
}

#[test]
fn a_store_in_use_is_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let s = filled(&path);
    let err = EdgeStore::remove(&path).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert_eq!(s.count(&Filter::none()).unwrap(), 4, "the open store is untouched");
    drop(s);
    EdgeStore::remove(&path).unwrap();
    assert!(!path.exists());
    EdgeStore::remove(&path).unwrap(); // nothing left to remove is not an error
}
