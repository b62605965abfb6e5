//! Ingestion and search end to end on documents written by the test, with a tiny embedder.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use xiaoguan_kb::definition::KbDefinition;
use xiaoguan_kb::{IngestOptions, KnowledgeBase, SearchOptions};
use xiaoguan_models::{fixtures, BertEmbedder, Embedder};
use xiaoguan_store::Filter;

const LAW: &str = "# 中华人民共和国社会保险法\n\n2010年10月28日通过\n\n<!-- INFO END -->\n\n## 第一章 总则\n\n第一条 为了规范社会保险关系，制定本法。\n\n## 第二章 基本养老保险\n\n第十六条 参加基本养老保险的个人，达到法定退休年龄时累计缴费满十五年的，按月领取基本养老金。\n\n第十七条 参加基本养老保险的个人，因病或者非因工死亡的，其遗属可以领取丧葬补助金和抚恤金。\n";

fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn docx(path: &Path, paragraphs: &[&str]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    z.start_file("word/document.xml", zip::write::SimpleFileOptions::default()).unwrap();
    let body: String = paragraphs.iter().map(|p| format!("<w:p><w:r><w:t>{p}</w:t></w:r></w:p>")).collect();
    write!(z, r#"<?xml version="1.0"?><w:document xmlns:w="x"><w:body>{body}</w:body></w:document>"#).unwrap();
    z.finish().unwrap();
}

struct Env {
    _tmp: tempfile::TempDir,
    data: std::path::PathBuf,
    kbs: std::path::PathBuf,
    def: KbDefinition,
    embedder: Arc<dyn Embedder>,
}

fn setup() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write(&data.join("laws/社会法/社会保险法(2018-12-29).md"), LAW.as_bytes());
    write(&data.join("laws/社会法/工伤保险条例(2010-12-20).md"), "# 工伤保险条例\n<!-- INFO END -->\n第十七条 职工发生事故伤害，所在单位应当自事故伤害发生之日起30日内提出工伤认定申请。\n".as_bytes());
    write(&data.join("laws/案例/某案例.md"), LAW.as_bytes()); // excluded by the definition
    write(&data.join("policy/生育津贴通知.txt"), "关于生育津贴直接发放给个人的通知\n穗医保发〔2025〕3号\n一、发放对象\n参加职工生育保险的女职工。\n二、办理方式\n由用人单位申报，医保部门核定后直接发放到个人社保卡账户。".as_bytes());
    write(&data.join("faq/qa.jsonl"), "{\"id\": \"q1\", \"question\": \"社保卡丢了怎么补办？\", \"answer\": \"携带身份证到社保卡服务网点挂失补领。\", \"department\": \"人社局\"}\n{\"id\": \"q2\", \"question\": \"异地就医怎么备案？\", \"answer\": \"通过国家医保服务平台APP办理备案。\", \"department\": \"医保局\"}\n".as_bytes());
    write(&data.join("tables/网点.csv"), "网点,地址,电话\n天河社保服务中心,天河路1号,020-12345\n越秀社保服务中心,越秀路2号,020-54321\n".as_bytes());
    write(&data.join("pages/通知.html"), "<html><head><title>t</title><script>var x=1;</script></head><body><nav>首页 导航</nav><div>长期护理保险试行办法</div><p>第一条 为建立长期护理保险制度，制定本办法。</p></body></html>".as_bytes());
    docx(&data.join("docs/指南.docx"), &["养老金申领指南", "一、申领条件", "达到法定退休年龄且累计缴费满十五年。"]);
    write(&data.join("broken/bad.jsonl"), b"{not json}\n");
    write(&data.join("broken/latin1.txt"), &[0xC9, 0xE7, 0xB1, 0xA3, 0xff]);
    let kb_dir = tmp.path().join("kbdefs/test-kb");
    write(
        &kb_dir.join("kb.toml"),
        r#"
id = "test-kb"
title = "测试"
domain = "社会保险"
description = "测试用知识库"
embedder = "tiny"
[[sources]]
include = ["laws/**/*.md"]
exclude = ["laws/案例/**"]
doc_type = "law"
[[sources]]
include = ["policy/*.txt", "pages/*.html", "docs/*.docx", "broken/*.txt"]
doc_type = "policy"
region = "广州"
[[sources]]
include = ["faq/*.jsonl", "broken/*.jsonl"]
doc_type = "faq"
[sources.records]
id = "id"
title = "{question}"
text = [{ field = "question", label = "问" }, { field = "answer", label = "答" }]
keep = ["department"]
[[sources]]
include = ["tables/*.csv"]
doc_type = "table"
"#
        .as_bytes(),
    );
    let def = KbDefinition::load(&kb_dir.join("kb.toml")).unwrap();
    let model_dir = tmp.path().join("model");
    let facts = fixtures::tiny_embedder_dir(&model_dir).unwrap();
    let embedder: Arc<dyn Embedder> = Arc::new(BertEmbedder::load(&model_dir, "tiny", &facts).unwrap());
    let kbs = tmp.path().join("kbs");
    Env { data, kbs, def, embedder, _tmp: tmp }
}

fn opts(env: &Env) -> IngestOptions {
    IngestOptions { data_root: env.data.clone(), progress: false, batch_docs: 2, max_batches: None, uploads_dir: None }
}

#[test]
fn ingest_reads_every_format_and_reports_skipped_files() {
    let env = setup();
    let kb = KnowledgeBase::open(&env.def, &env.kbs, env.embedder.clone()).unwrap();
    let r = kb.ingest(&opts(&env)).unwrap();
    // 2 laws + txt + html + docx + 2 faq records + 2 csv rows
    assert_eq!(r.documents, 9, "{r:?}");
    assert_eq!(r.added, 9);
    assert_eq!(r.version, 1);
    assert!(r.complete);
    let skipped: Vec<&str> = r.skipped.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(r.skipped.iter().any(|s| s.path.ends_with("bad.jsonl") && s.reason.contains("line 1")));
    assert!(r.skipped.iter().any(|s| s.path.ends_with("latin1.txt") && s.reason.contains("UTF-8")));
    assert_eq!(kb.store().count(&Filter::none()).unwrap(), r.total_chunks);

    let state = kb.state();
    let law = &state.documents["laws/社会法/社会保险法(2018-12-29).md"];
    assert_eq!(law.title, "中华人民共和国社会保险法");
    assert_eq!(law.chunks, 3);

    // Metadata travels with each chunk: 文号, region, heading path, article, kept fields.
    let all = kb.store().scroll(&Filter::none(), None, 100).unwrap().0;
    let policy = all.iter().find(|h| h.payload["doc_id"] == "policy/生育津贴通知.txt").unwrap();
    assert_eq!(policy.payload["doc_no"], "穗医保发〔2025〕3号");
    assert_eq!(policy.payload["region"], "广州");
    let art = all.iter().find(|h| h.payload.get("article_no").and_then(|v| v.as_u64()) == Some(16)).unwrap();
    assert_eq!(art.payload["heading_path"], "中华人民共和国社会保险法 > 第二章 基本养老保险 > 第十六条");
    assert_eq!(art.payload["date"], "2018-12-29");
    let faq = all.iter().find(|h| h.payload["doc_id"] == "faq/qa.jsonl#q1").unwrap();
    assert_eq!(faq.payload["department"], "人社局");
    assert!(faq.payload["text"].as_str().unwrap().starts_with("问：社保卡丢了怎么补办？\n答："));
    let html = all.iter().find(|h| h.payload["doc_id"] == "pages/通知.html").unwrap();
    assert!(!html.payload["text"].as_str().unwrap().contains("var x"), "scripts are stripped");
    assert!(!html.payload["text"].as_str().unwrap().contains("导航"), "navigation is stripped");
    let row = all.iter().find(|h| h.payload["doc_id"] == "tables/网点.csv#1").unwrap();
    assert!(row.payload["text"].as_str().unwrap().contains("地址：天河路1号"));
    let docx = all.iter().find(|h| h.payload["doc_id"] == "docs/指南.docx").unwrap();
    assert!(docx.payload["heading_path"].as_str().unwrap().contains("一、申领条件"));
}

#[test]
fn article_questions_hit_the_exact_article_and_filters_apply() {
    let env = setup();
    let kb = KnowledgeBase::open(&env.def, &env.kbs, env.embedder.clone()).unwrap();
    kb.ingest(&opts(&env)).unwrap();
    let hits = kb.search("社会法社会保险法第十六条的内容是什么？", &SearchOptions::default()).unwrap();
    assert_eq!(hits[0].article.as_deref(), Some("第十六条"));
    assert_eq!(hits[0].via, "article");
    assert!(hits[0].text.contains("十五年"));
    let hits = kb.search("工伤保险条例第十七条", &SearchOptions::default()).unwrap();
    assert_eq!(hits[0].title, "工伤保险条例");
    let faq_only = SearchOptions { filter: Filter::eq("doc_type", "faq"), article_lookup: false, ..Default::default() };
    let hits = kb.search("社保卡", &faq_only).unwrap();
    assert!(!hits.is_empty() && hits.iter().all(|h| h.payload["doc_type"] == "faq"));
    // Fusion weights: BM25 alone finds the exact term; a switched-off pair or a negative weight is refused.
    let bm25_only = SearchOptions { dense_weight: 0.0, article_lookup: false, ..Default::default() };
    let hits = kb.search("工伤认定申请", &bm25_only).unwrap();
    assert_eq!(hits[0].title, "工伤保险条例", "{hits:?}");
    // Traditional characters and full-width digits are folded before matching; the text shown is the source's.
    let hits = kb.search("社會保險法第１６條", &SearchOptions::default()).unwrap();
    assert_eq!((hits[0].article.as_deref(), hits[0].via), (Some("第十六条"), "article"), "{hits:?}");
    assert!(hits[0].text.contains("养老金"));
    let hits = kb.search("工傷認定申請", &bm25_only).unwrap();
    assert_eq!(hits[0].title, "工伤保险条例", "{hits:?}");
    for (d, b) in [(0.0, 0.0), (-1.0, 1.0), (f32::NAN, 1.0)] {
        let e = kb.search("工伤", &SearchOptions { dense_weight: d, bm25_weight: b, ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("fusion weights"), "{e}");
    }
    assert!(kb.search("  ", &SearchOptions::default()).is_err());
    assert!(kb.search("x", &SearchOptions { limit: 0, ..Default::default() }).is_err());
}

#[test]
fn reingest_touches_only_changed_and_removed_documents() {
    let env = setup();
    let kb = KnowledgeBase::open(&env.def, &env.kbs, env.embedder.clone()).unwrap();
    let first = kb.ingest(&opts(&env)).unwrap();
    let again = kb.ingest(&opts(&env)).unwrap();
    assert_eq!((again.unchanged, again.chunks_embedded, again.version), (9, 0, 1));

    std::fs::write(env.data.join("policy/生育津贴通知.txt"), "关于生育津贴直接发放给个人的通知\n二、办理方式\n改为线上申报。").unwrap();
    std::fs::remove_file(env.data.join("laws/社会法/工伤保险条例(2010-12-20).md")).unwrap();
    let r = kb.ingest(&opts(&env)).unwrap();
    assert_eq!((r.changed, r.removed, r.unchanged, r.version), (1, 1, 7, 2), "{r:?}");
    // No stale points: the store holds exactly the committed chunks.
    assert_eq!(kb.store().count(&Filter::none()).unwrap(), r.total_chunks);
    assert!(r.total_chunks < first.total_chunks);
    let hits = kb.search("工伤认定申请", &SearchOptions { limit: 10, ..Default::default() }).unwrap();
    assert!(hits.iter().all(|h| h.title != "工伤保险条例"));
    // Reopening reads the committed state back.
    drop(kb);
    let kb = KnowledgeBase::open(&env.def, &env.kbs, env.embedder.clone()).unwrap();
    assert_eq!(kb.state().version, 2);
    assert_eq!(kb.state().documents.len(), 8);
}

#[test]
fn a_stopped_ingest_keeps_answering_from_the_last_commit_and_resumes() {
    let env = setup();
    let kb = KnowledgeBase::open(&env.def, &env.kbs, env.embedder.clone()).unwrap();
    let partial = kb.ingest(&IngestOptions { max_batches: Some(2), ..opts(&env) }).unwrap();
    assert!(!partial.complete);
    assert_eq!(kb.state().documents.len(), 4);
    assert!(kb.search("社会保险", &SearchOptions::default()).is_ok());
    let rest = kb.ingest(&opts(&env)).unwrap();
    assert_eq!((rest.added, rest.unchanged), (5, 4));
    assert_eq!(kb.store().count(&Filter::none()).unwrap(), rest.total_chunks);
}

#[test]
fn a_missing_data_root_is_the_callers_error() {
    let env = setup();
    let kb = KnowledgeBase::open(&env.def, &env.kbs, env.embedder.clone()).unwrap();
    let err = kb.ingest(&IngestOptions { data_root: "/nonexistent/data".into(), ..opts(&env) }).unwrap_err();
    assert!(err.is_user_error() && err.to_string().contains("/nonexistent/data"), "{err}");
    let err = kb.search("社保", &SearchOptions::default()).unwrap_err();
    assert!(err.to_string().contains("not been ingested"), "{err}");
}

#[test]
fn a_kb_sharing_documents_reuses_their_vectors() {
    let env = setup();
    let donor = Arc::new(KnowledgeBase::open(&env.def, &env.kbs, env.embedder.clone()).unwrap());
    donor.ingest(&opts(&env)).unwrap();
    // A second KB over the laws only (same metadata, chunking and embedder → same document hashes),
    // one of them edited after the donor was built.
    let mut laws = env.def.clone();
    laws.id = "laws-only".into();
    laws.sources.truncate(1);
    std::fs::write(env.data.join("laws/社会法/工伤保险条例(2010-12-20).md"), "# 工伤保险条例\n<!-- INFO END -->\n第十七条 改过的条文。\n").unwrap();
    let kb = KnowledgeBase::open(&laws, &env.kbs, env.embedder.clone()).unwrap();
    let r = kb.ingest_reusing(&opts(&env), &[donor.as_ref()]).unwrap();
    assert_eq!((r.documents, r.chunks_reused, r.chunks_embedded), (2, 3, 1), "the edited law is embedded, the other reused: {r:?}");
    assert_eq!(kb.store().count(&Filter::none()).unwrap(), 4);

    // The reused vectors are the ones embedding would give: the same search results as a KB built alone.
    let mut alone_def = laws.clone();
    alone_def.id = "laws-alone".into();
    let alone = KnowledgeBase::open(&alone_def, &env.kbs, env.embedder.clone()).unwrap();
    assert_eq!(alone.ingest(&opts(&env)).unwrap().chunks_reused, 0);
    let key = "laws/社会法/社会保险法(2018-12-29).md";
    let (a, b) = (kb.state().documents[key].clone(), alone.state().documents[key].clone());
    assert_eq!(a.hash, b.hash);
    let reused = kb.stored_chunk_vectors(key, &a.hash, a.chunks, "tiny").unwrap().unwrap();
    let fresh = alone.stored_chunk_vectors(key, &b.hash, b.chunks, "tiny").unwrap().unwrap();
    for (x, y) in reused.iter().zip(&fresh) {
        assert!(x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-5));
    }
    // A donor whose state lists a document its store no longer holds is not used: the document is embedded.
    donor.store().delete(&Filter::eq("doc_id", key)).unwrap();
    let mut third = laws.clone();
    third.id = "laws-third".into();
    let kb3 = KnowledgeBase::open(&third, &env.kbs, env.embedder.clone()).unwrap();
    let r3 = kb3.ingest_reusing(&opts(&env), &[donor.as_ref()]).unwrap();
    assert_eq!((r3.chunks_reused, r3.chunks_embedded), (0, 4), "{r3:?}");
    // Another embedder or version is never taken.
    assert!(donor.stored_chunk_vectors(key, &a.hash, a.chunks, "other-model").unwrap().is_none());
    assert!(donor.stored_chunk_vectors(key, "0000", a.chunks, "tiny").unwrap().is_none());
}

#[test]
fn a_file_that_turns_unreadable_keeps_its_documents() {
    // One bad line in a records file must not delete the file's records from the index.
    let env = setup();
    let kb = KnowledgeBase::open(&env.def, &env.kbs, env.embedder.clone()).unwrap();
    let first = kb.ingest(&opts(&env)).unwrap();
    let qa = env.data.join("faq/qa.jsonl");
    let good = std::fs::read_to_string(&qa).unwrap();
    std::fs::write(&qa, format!("{good}{{broken\n")).unwrap();
    let r = kb.ingest(&opts(&env)).unwrap();
    assert!(r.skipped.iter().any(|s| s.path.ends_with("qa.jsonl") && s.reason.contains("line 3")), "{r:?}");
    assert_eq!(r.removed, 0, "{r:?}");
    assert_eq!(kb.state().documents.len(), 9);
    assert!(kb.state().documents.contains_key("faq/qa.jsonl#q1"));
    assert_eq!(kb.store().count(&Filter::eq("doc_id", "faq/qa.jsonl#q2")).unwrap(), 1);
    assert_eq!(kb.store().count(&Filter::none()).unwrap(), first.total_chunks);
    // Fixed and with one record fewer: now that record is removed.
    std::fs::write(&qa, good.lines().next().unwrap()).unwrap();
    let r = kb.ingest(&opts(&env)).unwrap();
    assert_eq!((r.removed, kb.state().documents.len()), (1, 8), "{r:?}");
    assert_eq!(kb.store().count(&Filter::eq("doc_id", "faq/qa.jsonl#q2")).unwrap(), 0);
}
