//! The project's own knowledge-base definitions (`knowledge-bases/`): every kb.toml loads, and the
//! KBs written by the project (`guides`, `one-thing`) build without the data folder, with the
//! tiny embedder so this runs in seconds.

use std::path::Path;
use std::sync::Arc;
use xiaoguan_kb::definition::{find, load_all};
use xiaoguan_kb::{IngestOptions, KnowledgeBase, SearchOptions};
use xiaoguan_models::{fixtures, BertEmbedder, Embedder};
use xiaoguan_store::Filter;

fn open(id: &str, tmp: &Path) -> KnowledgeBase {
    let defs = load_all(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../knowledge-bases")).unwrap();
    let mut def = find(&defs, id).unwrap().clone();
    def.embedder = "tiny".into();
    let model = tmp.join("model");
    let facts = fixtures::tiny_embedder_dir(&model).unwrap();
    let e: Arc<dyn Embedder> = Arc::new(BertEmbedder::load(&model, "tiny", &facts).unwrap());
    KnowledgeBase::open(&def, &tmp.join("kbs"), e).unwrap()
}

fn ingest(kb: &KnowledgeBase, tmp: &Path) -> xiaoguan_kb::IngestReport {
    // A data root that does not hold the corpus: these KBs must not need it.
    let opts = IngestOptions { data_root: tmp.join("no-data"), progress: false, batch_docs: 8, max_batches: None, uploads_dir: None };
    kb.ingest(&opts).unwrap()
}

#[test]
fn every_definition_loads() {
    let defs = load_all(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../knowledge-bases")).unwrap();
    let ids: Vec<&str> = defs.iter().map(|d| d.id.as_str()).collect();
    for want in ["social-insurance", "enterprise-policy", "project-filing", "laws", "gov-faq", "one-thing", "guides"] {
        assert!(ids.contains(&want), "{want} missing from {ids:?}");
    }
}

#[test]
fn one_thing_bundles_are_structured_records() {
    let tmp = tempfile::tempdir().unwrap();
    let kb = open("one-thing", tmp.path());
    let r = ingest(&kb, tmp.path());
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    assert!(r.documents >= 12 && r.total_chunks == r.documents, "one chunk per bundle: {r:?}");

    let hits = kb.search("个体户转企业怎么办", &SearchOptions::default()).unwrap();
    let top = &hits[0];
    assert_eq!(top.title, "个体工商户转型为企业一件事", "{hits:?}");
    assert_eq!(top.payload["lead"], "市场监管局");
    assert_eq!(top.payload["doc_no"], "国市监注发〔2025〕58号");
    assert!(top.text.contains("本地牵头部门：市场监管局") && top.text.contains("国家牵头部门：市场监管总局"), "{}", top.text);

    let birth = kb
        .search("新生儿出生一件事", &SearchOptions { filter: Filter::eq("doc_type", "bundle"), ..Default::default() })
        .unwrap()
        .into_iter()
        .find(|h| h.title == "新生儿出生一件事")
        .expect("indexed");
    assert!(birth.payload["items"].as_array().is_some_and(|a| a.len() >= 3), "{:?}", birth.payload);
    assert!(birth.text.contains("出生医学证明"), "{}", birth.text);

    // Re-ingesting unchanged data touches nothing.
    let again = ingest(&kb, tmp.path());
    assert_eq!((again.added, again.changed, again.chunks_embedded), (0, 0, 0), "{again:?}");
}

#[test]
fn guides_build_without_the_data_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let kb = open("guides", tmp.path());
    let r = ingest(&kb, tmp.path());
    assert!(r.skipped.is_empty() && r.documents >= 4, "{r:?}");
    let hits = kb.search("失业保险金怎么领", &SearchOptions::default()).unwrap();
    assert!(hits.iter().take(3).any(|h| h.title.contains("失业")), "{hits:?}");
}
