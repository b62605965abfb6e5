//! Answers for the home region (广东省/东莞市) on a KB the test builds (tiny embedder): another
//! province's local regulation is never cited as the rule, only listed as 外地规定，仅供参考; a
//! request may widen the scope; an answer resting on another city's FAQ says whose practice it is.

use std::path::Path;
use std::sync::Arc;
use xiaoguan_assist::jurisdiction::{HomeRegion, Scope};
use xiaoguan_assist::qa::facts::FactIndex;
use xiaoguan_assist::qa::{AnswerMode, AnsweredBy, AskRequest, AssistConfig, Assistant};
use xiaoguan_kb::definition::KbDefinition;
use xiaoguan_kb::{IngestOptions, KnowledgeBase};
use xiaoguan_models::{fixtures, BertEmbedder, Embedder};

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

const ZHEJIANG: &str = "# 浙江省职工基本养老保险条例\n\n2009年 通过\n\n<!-- INFO END -->\n\n第十条 职工中断缴纳基本养老保险费的，中断缴费期间不计算缴费年限，中断缴费前后的缴费年限合并计算，不影响退休待遇的领取。\n";
const NATIONAL: &str = "# 中华人民共和国社会保险法\n\n2010年 通过\n\n<!-- INFO END -->\n\n第十六条 参加基本养老保险的个人，达到法定退休年龄时累计缴费满十五年的，按月领取基本养老金。中断缴费的，缴费年限累计计算。\n";
const GUANGDONG: &str = "# 广东省失业保险条例\n\n2022年 通过\n\n<!-- INFO END -->\n\n第二十条 失业人员领取失业保险金期间，中断缴费的，按规定办理。\n";

struct Env {
    kbs: Vec<Arc<KnowledgeBase>>,
    _tmp: tempfile::TempDir,
}

fn setup() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("data/lawrefbook_laws/DLC/浙江地方法规/地方性法规/浙江/浙江省职工基本养老保险条例(2009-01-01).md"), ZHEJIANG);
    write(&root.join("data/lawrefbook_laws/社会法/社会保险法(2018-12-29).md"), NATIONAL);
    write(&root.join("data/lawrefbook_laws/DLC/广东地方法规/地方性法规/广东/广东省失业保险条例(2022-06-01).md"), GUANGDONG);
    write(&root.join("data/faq.jsonl"), "{\"id\":\"q1\",\"question\":\"社保断缴三个月对退休有影响吗？\",\"answer\":\"断缴期间不计缴费年限，补缴后累计计算。\",\"department\":\"人社局\"}\n");
    let defs = [
        ("laws", "[[sources]]\ninclude = [\"lawrefbook_laws/**/*.md\"]\ndoc_type = \"law\"\n"),
        ("faq", "[[sources]]\ninclude = [\"faq.jsonl\"]\ndoc_type = \"faq\"\nregion = \"北京\"\n[sources.records]\nid = \"id\"\ntitle = \"{question}\"\ntext = [{ field = \"question\", label = \"问\" }, { field = \"answer\", label = \"答\" }]\nkeep = [\"question\", \"answer\", \"department\"]\n"),
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
    Env { kbs, _tmp: tmp }
}

/// The tiny embedder's similarities are noise: the similarity parts of the gate are opened.
fn config(home: Option<HomeRegion>) -> AssistConfig {
    AssistConfig { faq_kbs: vec!["faq".into()], canonical_min_similarity: -1.0, evidence_min_similarity: -1.0, home, ..Default::default() }
}

fn assistant(env: &Env, kbs: &[&str], home: Option<HomeRegion>) -> Assistant {
    let kbs: Vec<Arc<KnowledgeBase>> = env.kbs.iter().filter(|k| kbs.contains(&k.def.id.as_str())).cloned().collect();
    let facts = FactIndex::build(&kbs, Vec::new()).unwrap();
    Assistant::new(kbs, None, facts, config(home)).unwrap()
}

fn ask(a: &Assistant, q: &str, any_region: bool) -> xiaoguan_assist::qa::Answer {
    a.ask(&AskRequest { question: q.into(), mode: AnswerMode::Extractive, any_region, ..Default::default() }, &mut |_| true).unwrap()
}

const QUESTION: &str = "职工中断缴纳基本养老保险费，中断缴费期间计算缴费年限吗，影响退休待遇领取吗";

#[test]
fn another_provinces_regulation_is_a_reference_not_the_rule() {
    let env = setup();
    // Without a home region the closest text wins, whoever issued it.
    let open = assistant(&env, &["laws"], None);
    let a = ask(&open, QUESTION, false);
    assert!(a.citations.iter().any(|c| c.title.starts_with("浙江省")), "the baseline cites the closest text: {a:?}");

    let a = assistant(&env, &["laws"], Some(HomeRegion::new("广东省", "东莞市")));
    let answer = ask(&a, QUESTION, false);
    assert!(!answer.handoff, "{answer:?}");
    assert!(!answer.citations.is_empty());
    for c in &answer.citations {
        assert!(!c.title.starts_with("浙江省"), "cites another province's rule: {c:?}");
        assert!(c.jurisdiction.as_ref().is_some_and(Scope::applies), "{c:?}");
    }
    let reference = answer.related.iter().find(|c| c.title.starts_with("浙江省")).expect("the local rule stays visible as a reference");
    assert_eq!(reference.note.as_deref(), Some("外地规定（浙江省），仅供参考"));
    assert_eq!(reference.jurisdiction, Some(Scope::Foreign("浙江省".into())));
    assert!(answer.notes.iter().any(|n| n.contains("set aside")), "{:?}", answer.notes);

    // A request may widen the scope explicitly; citations still say where their rule holds.
    let wide = ask(&a, QUESTION, true);
    let zj = wide.citations.iter().find(|c| c.title.starts_with("浙江省")).expect("widened: the closest text may be cited");
    assert_eq!(zj.note.as_deref(), Some("外地规定（浙江省），仅供参考"));
}

#[test]
fn a_kb_may_be_widened() {
    let env = setup();
    let home = HomeRegion { widen_kbs: vec!["laws".into()], ..HomeRegion::new("广东省", "东莞市") };
    let a = assistant(&env, &["laws"], Some(home));
    let answer = ask(&a, QUESTION, false);
    assert!(answer.citations.iter().any(|c| c.title.starts_with("浙江省")), "{answer:?}");
}

#[test]
fn an_answer_from_another_citys_faq_says_whose_practice_it_is() {
    let env = setup();
    let a = assistant(&env, &["faq"], Some(HomeRegion::new("广东省", "东莞市")));
    let answer = ask(&a, "社保断缴三个月对退休有影响吗", false);
    assert_eq!(answer.answered_by, AnsweredBy::Canonical, "{answer:?}");
    assert!(answer.text.starts_with("断缴期间不计缴费年限"), "{}", answer.text);
    assert!(answer.text.contains("来自北京市") && answer.text.contains("仅供参考"), "{}", answer.text);
    // Without a home region the vetted answer is given as it is.
    let plain = ask(&assistant(&env, &["faq"], None), "社保断缴三个月对退休有影响吗", false);
    assert_eq!(plain.text, "断缴期间不计缴费年限，补缴后累计计算。 [1]");
}
