//! Dongguan's own knowledge, from the project's rules and the city's documents in the data folder:
//! every 一件事 of the 2025 分工表 answered exactly (a table test over the file), and
//! Dongguan-style tickets dispatched to Dongguan units as the rules say, 直派镇街 included.

use serde_json::Value;
use std::path::{Path, PathBuf};
use xiaoguan_assist::dispatch::DispatchRules;
use xiaoguan_assist::qa::facts::{render, FactIndex, FactMatch};
use xiaoguan_assist::setup::local_bundles;
use xiaoguan_assist::ticket::{TicketAssist, TicketClassifiers, TicketInput};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data_root() -> PathBuf {
    let root = std::env::var_os("XIAOGUAN_DATA_ROOT").map(PathBuf::from).unwrap_or_else(|| repo().join("../shared/data"));
    assert!(root.join("dongguan_yiwangtongban").is_dir(), "the data folder must be beside the checkout: {}", root.display());
    root
}

fn rules() -> DispatchRules {
    DispatchRules::load(&repo().join("rules/dispatch.toml")).unwrap()
}

fn facts(rules: &DispatchRules) -> FactIndex {
    FactIndex { bundles: local_bundles(rules), ..Default::default() }
}

#[test]
fn every_bundle_and_item_of_the_2025_division_table_is_answered_exactly() {
    let rules = rules();
    let idx = facts(&rules);
    let path = data_root().join("dongguan_yiwangtongban/one_thing_2025_batch1_dongguan.json");
    let table: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(table.len(), 12);
    let mut items = 0;
    for row in &table {
        let name = row["name"].as_str().unwrap();
        let q = format!("在东莞办理“{name}”要办哪些事，找哪个部门？");
        let Some(m @ FactMatch::Bundle { .. }) = idx.lookup(&q, None, 0.6, 0.88) else { panic!("{q}: no bundle") };
        let FactMatch::Bundle { bundle, .. } = &m else { unreachable!() };
        assert_eq!(bundle.name, name, "{q}");
        let text = render(&m);
        match row["dongguan_lead_unit"].as_str() {
            Some(lead) => assert!(text.contains(&format!("在东莞由{lead}牵头")), "{name}: {text}"),
            None => {
                let note = row["dongguan_note"].as_str().unwrap();
                assert!(text.contains(note), "{name}: the document's own sentence: {text}");
            }
        }
        assert!(text.contains("东府办函〔2025〕361号 附件2"), "{name}: cited to 附件2: {text}");
        // Every item, in the document's order, with its Dongguan unit (or its national body).
        let mut at = 0;
        for it in row["items"].as_array().unwrap() {
            let item = it["item"].as_str().unwrap();
            let who = it["dongguan_unit"].as_str().or(it["national_body"].as_str()).unwrap();
            let line = format!("{item} —— {who}");
            let pos = text[at..].find(&line).unwrap_or_else(|| panic!("{name}: '{line}' missing or out of order in\n{text}"));
            at += pos + line.len();
            if it["dongguan_lead"].as_bool() == Some(true) {
                assert!(text[at..].starts_with("（牵头）"), "{name}: {item} is the lead: {text}");
            }
            items += 1;
        }
    }
    assert_eq!(items, 66, "12 bundles, 66 items");
}

#[test]
fn bundles_are_found_by_how_citizens_say_it() {
    let rules = rules();
    let idx = facts(&rules);
    for (q, want) in [
        ("在东莞办个体户转企业找哪个部门、要办哪些事", "个体工商户转型为企业"),
        ("个体户转成公司", "个体工商户转型为企业"),
        ("老人去世了要办哪些手续", "个人身后"),
        ("买了新车怎么上牌", "新车上牌"),
        ("结婚后落户要办哪些手续", "结婚落户"),
        ("新生儿出生一件事包括哪些事项", "新生儿出生一件事"),
    ] {
        match idx.lookup(q, None, 0.6, 0.88) {
            Some(FactMatch::Bundle { bundle, .. }) => assert_eq!(bundle.name, want, "{q}"),
            other => panic!("{q}: {other:?}"),
        }
    }
    let exact = match idx.lookup("在东莞办个体户转企业找哪个部门、要办哪些事", None, 0.6, 0.88) {
        Some(m) => render(&m),
        None => unreachable!(),
    };
    assert!(exact.starts_with("“个体工商户转型为企业”（“高效办成一件事”2025年度第一批重点事项）在东莞由市市场监管局牵头"), "{exact}");
    assert!(exact.contains("1. 清税信息核验 —— 市税务局\n2. 个体工商户转型为企业变更登记 —— 市市场监管局（牵头）"), "{exact}");
    // A question about one service is not a bundle question.
    for q in ["失业保险金怎么领", "社保卡丢了怎么办", "养老保险交满多少年才能领", "申请领取施工许可证应当具备哪些条件"] {
        assert!(idx.lookup(q, None, 0.6, 0.88).is_none(), "{q}");
    }
    // The 2024 bundles name Dongguan units too.
    let birth = idx.bundles.iter().find(|b| b.name == "新生儿出生一件事").unwrap();
    assert_eq!(birth.lead, "市卫健局");
}

fn assist() -> TicketAssist {
    TicketAssist { classifiers: TicketClassifiers::default(), rules: rules(), embedder: None, assistant: None, rule_bonus: 0.15 }
}

#[test]
fn dongguan_tickets_are_dispatched_as_the_rules_say() {
    let ta = assist();
    let run = |text: &str| ta.assist(&TicketInput { text: text.into(), ..Default::default() }).unwrap();

    // Noise in a named town: the city unit ranks first and the town's office gets it directly.
    let r = run("虎门镇金洲社区一家KTV每晚噪音扰民到凌晨，多次反映没人管");
    assert_eq!(r.departments[0].department, "市城市管理综合执法局", "{:?}", r.departments);
    let d = r.direct_dispatch.as_ref().expect("a town is named");
    assert_eq!(d.unit.as_deref(), Some("虎门镇综合行政执法办"));
    assert!(d.reason.contains("town-nuisance") && !d.needs_review, "{d:?}");

    // A gas smell: urgent, the city's gas authority, no town office.
    let r = run("我家楼道里煤气味很重，是不是燃气管道漏了？");
    assert!(r.signals.escalate, "{:?}", r.signals);
    assert_eq!(r.departments[0].department, "市城市管理综合执法局");
    assert!(r.direct_dispatch.is_none());

    // Wage arrears in a town: 人社, and the town's 人社分局 directly.
    let r = run("长安镇一家电子厂拖欠我们三个月工资，老板跑了");
    assert_eq!(r.departments[0].department, "市人力资源社会保障局", "{:?}", r.departments);
    assert_eq!(r.direct_dispatch.as_ref().and_then(|d| d.unit.as_deref()), Some("市人力资源社会保障局长安分局"));

    // A 一件事 question: the bundle with every item's Dongguan unit.
    let r = run("我想把个体户转成公司，要跑哪些部门？");
    let b = r.bundle.as_ref().expect("the bundle");
    assert_eq!(b.name, "个体工商户转型为企业");
    assert_eq!(b.lead, "市市场监管局");
    assert_eq!(b.item_units.len(), 6);
    assert_eq!(r.departments[0].department, "市市场监管局");

    // Two towns: a person decides.
    let r = run("常平镇和桥头镇交界的路边有人占道经营");
    let d = r.direct_dispatch.as_ref().unwrap();
    assert!(d.needs_review && d.unit.is_none() && r.dispatch_needs_review, "{d:?}");

    // Every ranked unit is Dongguan's (mapped) for these tickets.
    for text in ["松山湖园区的企业研发费用加计扣除怎么申请", "公积金贷款买房需要什么条件"] {
        let r = run(text);
        assert!(r.departments.iter().all(|d| d.mapped), "{text}: {:?}", r.departments);
    }
}
