//! The project's own knowledge-base definitions (`knowledge-bases/`): every kb.toml loads, the KB
//! written by the project (`guides`) builds without the data folder, and the Dongguan KBs
//! (`one-thing`, `dongguan-policy`) build from the city's documents in the data folder — with the
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
    for want in ["social-insurance", "enterprise-policy", "project-filing", "laws", "gov-faq", "one-thing", "guides", "dongguan-policy"] {
        assert!(ids.contains(&want), "{want} missing from {ids:?}");
    }
}

/// The real data folder beside the checkout (CI has it): the 2025 batch and the work plan are
/// the city's documents, read from there, never copied into the repository.
fn data_root() -> std::path::PathBuf {
    let root = std::env::var_os("XIAOGUAN_DATA_ROOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    assert!(root.join("dongguan_yiwangtongban").is_dir(), "the data folder must be beside the checkout: {}", root.display());
    root
}

#[test]
fn one_thing_bundles_are_structured_records() {
    let tmp = tempfile::tempdir().unwrap();
    let kb = open("one-thing", tmp.path());
    let opts = IngestOptions { data_root: data_root(), progress: false, batch_docs: 8, max_batches: None, uploads_dir: None };
    let r = kb.ingest(&opts).unwrap();
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
    assert_eq!((r.documents, r.total_chunks), (23, 23), "one chunk per bundle, 11 of 2024 and 12 of 2025: {r:?}");

    let hits = kb.search("个体工商户转型为企业", &SearchOptions { filter: Filter::eq("region", "东莞"), ..Default::default() }).unwrap();
    let top = hits.iter().find(|h| h.title == "个体工商户转型为企业").expect("the 2025 bundle is indexed");
    assert_eq!(top.payload["dongguan_lead_unit"], "市市场监管局");
    assert_eq!(top.payload["doc_no"], "东府办函〔2025〕361号", "{:?}", top.payload);
    assert!(top.text.contains("东莞牵头部门：市市场监管局"), "{}", top.text);
    assert!(top.text.contains("清税信息核验（税务部门 → 市税务局）"), "{}", top.text);
    assert!(top.text.contains("个体工商户转型为企业变更登记（市场监管部门★ → 市市场监管局★）"), "{}", top.text);
    let qfii = kb.search("合格境外投资者资格审批与开户", &SearchOptions::default()).unwrap();
    let q = qfii.iter().find(|h| h.title == "合格境外投资者资格审批与开户").unwrap();
    assert!(q.text.contains("说明：此“一件事”由国家部委统筹建设") && q.text.contains("→ 国家部委统筹建设）"), "{}", q.text);

    let birth = kb
        .search("新生儿出生一件事", &SearchOptions { filter: Filter::eq("doc_type", "bundle"), ..Default::default() })
        .unwrap()
        .into_iter()
        .find(|h| h.title == "新生儿出生一件事")
        .expect("indexed");
    assert!(birth.payload["items"].as_array().is_some_and(|a| a.len() >= 3), "{:?}", birth.payload);
    assert!(birth.text.contains("出生医学证明"), "{}", birth.text);

    // Re-ingesting unchanged data touches nothing.
    let again = kb.ingest(&opts).unwrap();
    assert_eq!((again.added, again.changed, again.chunks_embedded), (0, 0, 0), "{again:?}");
}

/// 东府办函〔2025〕361号: the plan by its 一、/(一) structure, 附件1 one chunk per task with its
/// units, 附件2 one chunk per 一件事.
#[test]
fn dongguan_policy_is_chunked_by_its_structure_and_attachment_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let kb = open("dongguan-policy", tmp.path());
    let opts = IngestOptions { data_root: data_root(), progress: false, batch_docs: 8, max_batches: None, uploads_dir: None };
    let r = kb.ingest(&opts).unwrap();
    assert!(r.skipped.is_empty() && r.documents == 1, "{r:?}");
    let all = kb.store().scroll(&Filter::none(), None, 1000).unwrap().0;
    let paths: Vec<String> = all.iter().filter_map(|h| h.payload.get("heading_path").and_then(|v| v.as_str()).map(String::from)).collect();
    let tasks = paths.iter().filter(|p| p.contains("附件1") && p.contains(" > ")).count();
    let bundles = paths.iter().filter(|p| p.contains("附件2") && p.contains(" > ")).count();
    assert!(tasks >= 33, "33 task rows of 附件1, got {tasks}: {paths:?}");
    assert!(bundles >= 12, "12 一件事 of 附件2, got {bundles}: {paths:?}");
    let text_of = |needle: &str| all.iter().find(|h| h.payload.get("text").and_then(|v| v.as_str()).is_some_and(|t| t.contains(needle))).map(|h| h.payload["text"].as_str().unwrap().to_string());
    let qgj = text_of("升级智能客服“小莞”").expect("the 企莞家 paragraph");
    assert!(qgj.contains("〔市政务和数据局、市工业和信息化局牵头"), "the paragraph keeps its 牵头部门: {qgj}");
    let row = all
        .iter()
        .map(|h| h.payload["text"].as_str().unwrap_or_default())
        .find(|t| t.contains("序号：27"))
        .expect("task 27");
    assert!(row.contains("解决率不低于92%") && row.contains("完成时限：2025年12月") && row.contains("责任部门：市政务和数据局牵头"), "{row}");
    assert!(all.iter().all(|h| h.payload["doc_no"] == "东府办函〔2025〕361号"), "every chunk carries the 文号");
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
