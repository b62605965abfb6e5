//! Readers and search on the real data in ../shared/data (skipped when it is absent, e.g. on a
//! machine without the data folder), with the tiny embedder so it runs in seconds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use xiaoguan_kb::definition::{Format, KbDefinition, SourceSpec};
use xiaoguan_kb::readers::read_file;
use xiaoguan_kb::{IngestOptions, KnowledgeBase, SearchOptions};
use xiaoguan_models::{fixtures, BertEmbedder, Embedder};

fn data_root() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if root.is_dir() {
        Some(root)
    } else {
        eprintln!("skipped: no data root at {}", root.display());
        None
    }
}

fn spec(format: Format) -> SourceSpec {
    SourceSpec {
        base: Default::default(),
        include: vec![],
        exclude: vec![],
        title_any: vec![],
        title_none: vec![],
        format,
        doc_type: "policy".into(),
        region: None,
        issuer: None,
        records: None,
    }
}

#[test]
fn reads_the_tangshan_pdf_and_xlsx() {
    let Some(root) = data_root() else { return };
    let dir = root.join("tangshan_construction_approval");
    let pdf = std::fs::read_dir(dir.join("pdf")).unwrap().flatten().map(|e| e.path()).find(|p| p.to_string_lossy().contains("16号")).unwrap();
    let docs = read_file(&pdf, "x.pdf", &spec(Format::Auto)).unwrap();
    let text: String = docs[0].doc.blocks.iter().map(|b| b.text.as_str()).collect();
    assert!(text.contains("施工") && text.chars().count() > 1000, "{}", text.chars().take(200).collect::<String>());
    assert_eq!(docs[0].meta["doc_no"], "唐港城办发〔2019〕16号");

    let xlsx = dir.join("事项材料清单0510.xlsx");
    let rows = read_file(&xlsx, "items.xlsx", &spec(Format::Auto)).unwrap();
    assert!(rows.len() > 50, "{}", rows.len());
    let first = &rows[0].doc.blocks[0].text;
    assert!(first.contains('：'), "header names are kept with values: {first}");
}

/// A KB over the real data with the tiny embedder, from a kb.toml written by the test.
fn tiny_kb(tmp: &Path, kb_toml: &str) -> KnowledgeBase {
    let kb_dir = tmp.join("def");
    std::fs::create_dir_all(&kb_dir).unwrap();
    std::fs::write(kb_dir.join("kb.toml"), kb_toml).unwrap();
    let def = KbDefinition::load(&kb_dir.join("kb.toml")).unwrap();
    let model = tmp.join("model");
    let facts = fixtures::tiny_embedder_dir(&model).unwrap();
    let e: Arc<dyn Embedder> = Arc::new(BertEmbedder::load(&model, "tiny", &facts).unwrap());
    KnowledgeBase::open(&def, &tmp.join("kbs"), e).unwrap()
}

#[test]
fn statute_articles_and_approval_items_from_real_data() {
    let Some(root) = data_root() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let kb = tiny_kb(
        tmp.path(),
        r#"
id = "real"
title = "real"
domain = "d"
description = "d"
embedder = "tiny"
[[sources]]
include = ["lawrefbook_laws/社会法/*.md"]
title_any = ["社会保险法"]
doc_type = "law"
[[sources]]
include = ["tangshan_construction_approval/approval_items_materials.jsonl"]
doc_type = "approval-item"
[sources.records]
id = "seq"
title = "{item}"
text = [{ field = "item", label = "事项名称" }, { field = "department", label = "受理部门" }, { field = "promised_working_days", label = "承诺办理时限（工作日）" }, { field = "materials", label = "申请材料" }]
keep = ["department", "promised_working_days"]
"#,
    );
    let r = kb.ingest(&IngestOptions { data_root: root, progress: false, batch_docs: 64, max_batches: None, uploads_dir: None }).unwrap();
    assert_eq!(r.skipped.len(), 0, "{:?}", r.skipped);
    assert!(r.documents >= 61, "{r:?}");
    let hits = kb.search("社会法社会保险法第十六条的内容是什么？", &SearchOptions::default()).unwrap();
    assert_eq!(hits[0].article.as_deref(), Some("第十六条"));
    assert!(hits[0].text.contains("累计缴费满十五年"), "{}", hits[0].text);
    assert!(hits[0].heading_path.starts_with("中华人民共和国社会保险法 > 第二章 基本养老保险"), "{}", hits[0].heading_path);
    let item = kb
        .search("建筑工程施工许可证核发", &SearchOptions { filter: xiaoguan_store::Filter::eq("doc_type", "approval-item"), limit: 60, ..Default::default() })
        .unwrap()
        .into_iter()
        .find(|h| h.title == "建筑工程施工许可证核发")
        .expect("the approval item is indexed");
    assert!(item.text.contains("受理部门：") && item.text.contains("申请材料："), "{}", item.text);
    assert!(item.payload["promised_working_days"].is_number());
}

/// Two versions of 公司法 in the corpus: the newest answers by default, a date filter gives the
/// text in force by that day.
#[test]
fn a_date_filter_picks_the_version_issued_by_that_day() {
    let Some(root) = data_root() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let kb = tiny_kb(
        tmp.path(),
        "id = \"company\"\ntitle = \"t\"\ndomain = \"d\"\ndescription = \"d\"\nembedder = \"tiny\"\n[[sources]]\ninclude = [\"lawrefbook_laws/民法商法/公司法(*.md\"]\ndoc_type = \"law\"\n",
    );
    let r = kb.ingest(&IngestOptions { data_root: root, progress: false, batch_docs: 8, max_batches: None, uploads_dir: None }).unwrap();
    assert_eq!(r.documents, 2, "{r:?}");
    let newest = kb.search("公司法第一条的内容是什么", &SearchOptions::default()).unwrap();
    assert_eq!((newest[0].via, newest[0].payload["date"].as_str()), ("article", Some("2023-12-29")));
    let by_2020 = SearchOptions {
        filter: xiaoguan_store::Filter { all: vec![xiaoguan_store::Condition::DateRange { field: "date".into(), gte: None, lte: Some("2020-01-01".into()) }] },
        ..Default::default()
    };
    let hits = kb.search("公司法第一条的内容是什么", &by_2020).unwrap();
    assert_eq!((hits[0].article.as_deref(), hits[0].payload["date"].as_str()), (Some("第一条"), Some("2018-10-26")));
    assert!(hits.iter().all(|h| h.payload["date"] == "2018-10-26"), "no later version passes the filter");
}
