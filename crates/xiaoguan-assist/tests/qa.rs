//! The answering pipeline on knowledge bases the test builds (tiny embedder): canonical answers
//! verbatim and deterministic, structured facts from approval-item records, the evidence gate's
//! handoff with related sources, extractive answers with citations, generator fallback.

use std::path::Path;
use std::sync::Arc;
use xiaoguan_assist::qa::facts::FactIndex;
use xiaoguan_assist::qa::rewrite::{Role, Turn};
use xiaoguan_assist::qa::{AnswerMode, AnsweredBy, AskRequest, AssistConfig, Assistant, Routing};
use xiaoguan_kb::definition::KbDefinition;
use xiaoguan_kb::{IngestOptions, KnowledgeBase};
use xiaoguan_models::{fixtures, BertEmbedder, Embedder, Generator, QwenGenerator};

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

struct Env {
    kbs: Vec<Arc<KnowledgeBase>>,
    gen: Arc<dyn Generator>,
    _tmp: tempfile::TempDir,
}

fn setup() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("data/faq.jsonl"), "{\"id\":\"q1\",\"question\":\"社保卡丢了怎么补办？\",\"answer\":\"携带身份证到社保卡服务网点挂失补领。\",\"department\":\"人社局\"}\n{\"id\":\"q2\",\"question\":\"异地就医怎么备案？\",\"answer\":\"通过国家医保服务平台APP办理备案。\",\"department\":\"医保局\"}\n");
    write(&root.join("data/items.jsonl"), "{\"seq\":1,\"item\":\"建筑工程施工许可证核发\",\"department\":\"某市住房和城乡建设局\",\"promised_working_days\":3.0,\"materials\":[\"施工合同\",\"监理合同\",\"施工合同\"]}\n");
    write(&root.join("data/bundles.json"), r#"[{"name": "新生儿出生一件事", "lead": "卫生健康委", "departments": ["公安局"], "items": ["出生医学证明", "户口登记"], "any": ["新生儿"], "source": "国发〔2024〕3号", "national_lead": "国家卫生健康委"}]"#);
    write(&root.join("data/guide.md"), "# 失业保险金领取指南\n\n一、领取期限\n\n累计缴费满一年不足五年的，领取失业保险金的期限最长为十二个月。累计缴费满十年以上的，最长为二十四个月。\n\n二、办理地点\n\n到参保地的社会保险经办机构办理失业登记。\n");
    let defs = [
        ("faq", "[[sources]]\ninclude = [\"faq.jsonl\"]\ndoc_type = \"faq\"\n[sources.records]\nid = \"id\"\ntitle = \"{question}\"\ntext = [{ field = \"question\", label = \"问\" }, { field = \"answer\", label = \"答\" }]\nkeep = [\"question\", \"answer\", \"department\"]\n"),
        ("filing", "[[sources]]\ninclude = [\"items.jsonl\"]\ndoc_type = \"approval-item\"\nregion = \"某市\"\n[sources.records]\nid = \"seq\"\ntitle = \"{item}\"\ntext = [{ field = \"item\", label = \"事项\" }, { field = \"materials\", label = \"材料\" }]\nkeep = [\"department\", \"promised_working_days\", \"materials\", \"item\"]\n"),
        ("guides", "[[sources]]\ninclude = [\"guide.md\"]\ndoc_type = \"guide\"\n[[sources]]\ninclude = [\"bundles.json\"]\ndoc_type = \"bundle\"\n[sources.records]\nid = \"name\"\ntitle = \"{name}\"\ntext = [{ field = \"name\", label = \"事项\" }, { field = \"items\", label = \"联办事项\" }]\ndoc_no = \"source\"\nkeep = [\"name\", \"lead\"]\n"),
    ];
    let model_dir = root.join("embedder");
    let facts = fixtures::tiny_embedder_dir(&model_dir).unwrap();
    let embedder: Arc<dyn Embedder> = Arc::new(BertEmbedder::load(&model_dir, "tiny", &facts).unwrap());
    let mut kbs = Vec::new();
    for (id, sources) in defs {
        let dir = root.join("defs").join(id);
        write(&dir.join("kb.toml"), &format!("id = \"{id}\"\ntitle = \"{id}\"\ndomain = \"t\"\ndescription = \"t\"\nembedder = \"tiny\"\n[chunking]\nmax_chars = 600\nmin_chars = 1\noverlap_chars = 50\n{sources}"));
        let def = KbDefinition::load(&dir.join("kb.toml")).unwrap();
        let kb = Arc::new(KnowledgeBase::open(&def, &root.join("kbs"), embedder.clone()).unwrap());
        kb.ingest(&IngestOptions { data_root: root.join("data"), progress: false, batch_docs: 8, max_batches: None, uploads_dir: None }).unwrap();
        kbs.push(kb);
    }
    let gdir = root.join("generator");
    let gf = fixtures::tiny_generator_dir(&gdir).unwrap();
    let gen: Arc<dyn Generator> = Arc::new(QwenGenerator::load(&gdir, "tiny-gen", &gf).unwrap());
    Env { kbs, gen, _tmp: tmp }
}

/// The tiny embedder's similarities are noise, so the similarity parts of the gate are opened;
/// the lexical parts (bigram Dice, coverage) still decide.
fn open_gate() -> AssistConfig {
    AssistConfig { faq_kbs: vec!["faq".into()], canonical_min_similarity: -1.0, evidence_min_similarity: -1.0, ..Default::default() }
}

fn ask(a: &Assistant, q: &str, mode: AnswerMode) -> xiaoguan_assist::qa::Answer {
    a.ask(&AskRequest { question: q.into(), mode, ..Default::default() }, &mut |_| true).unwrap()
}

#[test]
fn canonical_answers_are_verbatim_and_deterministic() {
    let env = setup();
    let facts = FactIndex::build(&env.kbs, Vec::new()).unwrap();
    let a = Assistant::new(env.kbs.clone(), None, facts, open_gate()).unwrap();
    let first = ask(&a, "请问社保卡丢了怎么补办", AnswerMode::Auto);
    assert_eq!(first.answered_by, AnsweredBy::Canonical, "{first:?}");
    assert_eq!(first.text, "携带身份证到社保卡服务网点挂失补领。 [1]");
    assert_eq!(first.citations[0].kb, "faq");
    assert!(!first.handoff);
    let again = ask(&a, "请问社保卡丢了怎么补办", AnswerMode::Extractive);
    assert_eq!(first.text.as_bytes(), again.text.as_bytes(), "same question, same bytes, any mode");
}

#[test]
fn structured_facts_come_from_the_record() {
    let env = setup();
    let facts = FactIndex::build(&env.kbs, Vec::new()).unwrap();
    assert_eq!(facts.items.len(), 1);
    assert_eq!(facts.items[0].materials, vec!["施工合同", "监理合同"], "duplicates in the record are listed once");
    let a = Assistant::new(env.kbs.clone(), None, facts, open_gate()).unwrap();
    let ans = ask(&a, "办理施工许可需要哪些材料？", AnswerMode::Auto);
    assert_eq!(ans.answered_by, AnsweredBy::Facts);
    assert!(ans.text.contains("1. 施工合同") && ans.text.contains("2. 监理合同"), "{}", ans.text);
    assert_eq!(ans.citations[0].kb, "filing");
    // A follow-up keeps the topic of the conversation.
    let history = vec![Turn { role: Role::User, content: "办理施工许可需要哪些材料？".into() }, Turn { role: Role::Assistant, content: ans.text.clone() }];
    let follow = a.ask(&AskRequest { question: "那哪个部门受理？".into(), history, ..Default::default() }, &mut |_| true).unwrap();
    assert_eq!(follow.answered_by, AnsweredBy::Facts);
    assert!(follow.text.contains("某市住房和城乡建设局"), "{}", follow.text);
    // Scoped away from the KB holding the record, facts do not answer.
    let scoped = a.ask(&AskRequest { question: "办理施工许可需要哪些材料？".into(), kbs: Some(vec!["guides".into()]), ..Default::default() }, &mut |_| true).unwrap();
    assert_ne!(scoped.answered_by, AnsweredBy::Facts);
}

#[test]
fn bundle_answers_cite_the_indexed_record() {
    let env = setup();
    let bundles = xiaoguan_assist::dispatch::load_bundles(&env._tmp.path().join("data/bundles.json")).unwrap();
    let facts = FactIndex::build(&env.kbs, bundles.clone()).unwrap();
    let a = Assistant::new(env.kbs.clone(), None, facts, open_gate()).unwrap();
    let ans = ask(&a, "新生儿出生一件事包括哪些事项？", AnswerMode::Auto);
    assert_eq!(ans.answered_by, AnsweredBy::Facts);
    assert!(ans.text.contains("出生医学证明、户口登记") && ans.text.contains("本地牵头部门：卫生健康委"), "{}", ans.text);
    let c = &ans.citations[0];
    assert_eq!((c.kb.as_str(), c.doc_no.as_deref()), ("guides", Some("国发〔2024〕3号")));
    assert!(c.chunk_id.starts_with("bundles.json#新生儿出生一件事"), "{c:?}");
    // Scoped away from the KB indexing it, the answer does not cite that KB.
    let scoped = a.ask(&AskRequest { question: "新生儿出生一件事包括哪些事项？".into(), kbs: Some(vec!["faq".into()]), ..Default::default() }, &mut |_| true).unwrap();
    assert_eq!((scoped.answered_by, scoped.citations[0].kb.as_str()), (AnsweredBy::Facts, "dispatch-rules"));
    // Without a KB indexing it, the answer cites the bundles data itself.
    let bare = Assistant::new(env.kbs.clone(), None, FactIndex { bundles, ..Default::default() }, open_gate()).unwrap();
    let ans = ask(&bare, "新生儿出生一件事包括哪些事项？", AnswerMode::Auto);
    assert_eq!(ans.citations[0].kb, "dispatch-rules");
}

#[test]
fn extractive_answers_cite_and_the_gate_hands_off() {
    let env = setup();
    let a = Assistant::new(env.kbs.clone(), None, FactIndex::default(), open_gate()).unwrap();
    let ans = ask(&a, "失业保险金的领取期限最长多久", AnswerMode::Extractive);
    assert_eq!(ans.answered_by, AnsweredBy::Extractive, "{ans:?}");
    assert!(ans.text.contains("二十四个月"), "{}", ans.text);
    assert!(ans.citations.iter().all(|c| ans.text.contains(&format!("[{}]", c.index))));
    assert!(ans.evidence.is_some());
    // Nothing in the knowledge bases covers this question: a handoff with the closest sources.
    let off = ask(&a, "离婚后孩子的抚养权归谁", AnswerMode::Extractive);
    assert!(off.handoff && off.answered_by == AnsweredBy::Handoff, "{off:?}");
    assert!(off.citations.is_empty() && !off.related.is_empty());
    assert!(off.notes.iter().any(|n| n.contains("evidence gate")));
    // A gate that demands more than any passage offers hands off too.
    let strict = Assistant::new(env.kbs.clone(), None, FactIndex::default(), AssistConfig { evidence_min_similarity: 1.01, ..open_gate() }).unwrap();
    assert!(ask(&strict, "失业保险金的领取期限最长多久", AnswerMode::Extractive).handoff);
}

#[test]
fn unverifiable_generation_falls_back_to_extractive() {
    let env = setup();
    let a = Assistant::new(env.kbs.clone(), Some(env.gen.clone()), FactIndex::default(), AssistConfig { max_new_tokens: 12, ..open_gate() }).unwrap();
    let mut streamed = String::new();
    let ans = a.ask(&AskRequest { question: "失业保险金的领取期限最长多久".into(), mode: AnswerMode::Generate, ..Default::default() }, &mut |t| {
        streamed.push_str(t);
        true
    }).unwrap();
    // The tiny generator writes noise: nothing it says is supported, so the answer is extractive.
    assert_eq!(ans.answered_by, AnsweredBy::Extractive, "{ans:?}");
    assert_eq!(ans.models.generator.as_deref(), Some("tiny-gen"));
    assert!(ans.verification.is_some());
    assert!(streamed.contains("二十四个月"));
    let no_gen = Assistant::new(env.kbs.clone(), None, FactIndex::default(), open_gate()).unwrap();
    let ans = ask(&no_gen, "失业保险金的领取期限最长多久", AnswerMode::Generate);
    assert!(ans.notes.iter().any(|n| n.contains("no generator")));
    let err = no_gen.ask(&AskRequest { question: "  ".into(), ..Default::default() }, &mut |_| true).unwrap_err();
    assert!(err.is_user_error());
    let err = no_gen.ask(&AskRequest { question: "x".into(), kbs: Some(vec!["nope".into()]), ..Default::default() }, &mut |_| true).unwrap_err();
    assert!(err.is_user_error());
}

#[test]
fn both_routing_strategies_rank_every_kb_and_answer() {
    let env = setup();
    let a = Assistant::new(env.kbs.clone(), None, FactIndex::default(), open_gate()).unwrap();
    for strategy in [Routing::SearchAll, Routing::Description] {
        let ranked = a.route("失业保险金的领取期限最长多久", strategy).unwrap();
        assert_eq!(ranked.len(), 3, "{strategy:?}");
        assert!(ranked.windows(2).all(|w| w[0].1 >= w[1].1), "best first: {ranked:?}");
    }
    let narrow = Assistant::new(env.kbs.clone(), None, FactIndex::default(), AssistConfig { routing: Routing::Description, ..open_gate() }).unwrap();
    let ans = ask(&narrow, "失业保险金的领取期限最长多久", AnswerMode::Extractive);
    assert!(ans.routes.len() <= 3 && !ans.routes.is_empty());
}
