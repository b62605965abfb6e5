//! Structured facts (the start of a 政务知识图谱): approval items with their accepting department,
//! promised working days and materials (records in any KB with doc_type "approval-item"), and the
//! 一件事 bundles of the dispatch rules. Questions about these fields are answered exactly from
//! the record, citing it — never paraphrased by the generator. A bundle is found by the words
//! that name it or by meaning (the question's embedding against each bundle's name and items).

use crate::dispatch::Bundle;
use crate::lexical::{bigrams, containment, content};
use serde::Serialize;
use serde_json::Value;
use xiaoguan_kb::KnowledgeBase;
use xiaoguan_store::Filter;

#[derive(Debug, Clone, Serialize)]
pub struct ApprovalItem {
    pub kb: String,
    pub doc_id: String,
    pub chunk_id: String,
    pub item: String,
    pub department: String,
    pub promised_working_days: Option<f64>,
    pub materials: Vec<String>,
    pub region: Option<String>,
}

/// What a facts question asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FactField {
    Materials,
    Department,
    TimeLimit,
    BundleItems,
}

const INTENTS: &[(FactField, &[&str])] = &[
    (FactField::Materials, &["哪些材料", "什么材料", "材料清单", "申请材料", "要带什么", "带什么", "提交什么", "准备什么", "需要材料", "要什么材料", "所需材料"]),
    (FactField::Department, &["哪个部门", "什么部门", "哪个单位", "哪个机关", "哪里受理", "在哪办", "在哪里办", "去哪办", "去哪里办", "谁受理", "谁负责", "受理部门", "由谁", "找谁"]),
    (FactField::TimeLimit, &["几个工作日", "多少个工作日", "几天", "多少天", "多长时间", "多久", "时限", "办结"]),
    (FactField::BundleItems, &["包括哪些", "包含哪些", "有哪些事项", "哪些事项", "涉及哪些", "怎么办理一件事"]),
];

/// Words of a question about doing a bundle of things: which steps, which units, how.
/// Kept narrow: "怎么办" or "哪个部门" alone ask about one service, not a bundle.
const BUNDLE_CUES: &[&str] = &[
    "一件事", "哪些事", "哪些手续", "什么手续", "办哪些", "要办什么", "办什么手续", "流程", "怎么上", "找哪个部门", "哪些部门", "包括哪些", "包含哪些",
    "哪些事项", "涉及哪些",
];

/// The fields a question asks about (several may be asked at once).
pub fn intents(question: &str) -> Vec<FactField> {
    INTENTS.iter().filter(|(_, words)| words.iter().any(|w| question.contains(w))).map(|(f, _)| *f).collect()
}

/// The question with its field words removed: what it is about.
fn topic(question: &str) -> String {
    let mut t = question.to_string();
    for (_, words) in INTENTS {
        for w in *words {
            t = t.replace(w, " ");
        }
    }
    for w in GENERIC {
        t = t.replace(w, " ");
    }
    content(&t).into_iter().collect()
}

/// Words every item or question has: they say nothing about which item.
const GENERIC: &[&str] = &["一件事", "审批", "办理", "申请", "核发", "手续", "受理", "承诺", "部门", "时限", "需要", "材料", "要"];

fn piece_bigrams(text: &str) -> std::collections::HashSet<(char, char)> {
    let mut out = std::collections::HashSet::new();
    for piece in text.split(|c: char| !c.is_alphanumeric()).filter(|p| !p.is_empty()) {
        out.extend(bigrams(&piece.chars().collect::<Vec<_>>()));
    }
    out
}

fn topic_score(question_topic: &str, name: &str) -> f32 {
    let mut name_t = name.to_string();
    for w in GENERIC {
        name_t = name_t.replace(w, " ");
    }
    let (qb, nb) = (piece_bigrams(question_topic), piece_bigrams(&name_t));
    if qb.is_empty() || nb.is_empty() {
        return 0.0;
    }
    // The question names the item (most of the question's topic is in the name) and says
    // enough of the name to pick it out.
    let covered = containment(&qb, &nb);
    let named = containment(&nb, &qb);
    0.7 * covered + 0.3 * named
}

#[derive(Debug, Clone, Default)]
pub struct FactIndex {
    pub items: Vec<ApprovalItem>,
    pub bundles: Vec<Bundle>,
    /// Each bundle's name and items embedded as a passage (same order as `bundles`), when an
    /// embedder was given: bundles are then found by meaning too.
    pub bundle_vectors: Vec<Vec<f32>>,
    /// Where each bundle is indexed (by name) when a served KB (`one-thing`) holds it: answers
    /// cite that chunk.
    pub bundle_chunks: std::collections::HashMap<String, IndexedChunk>,
}

/// A chunk of a served knowledge base, for citing.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IndexedChunk {
    pub kb: String,
    pub doc_id: String,
    pub chunk_id: String,
    pub doc_no: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub enum FactMatch {
    Item { item: ApprovalItem, fields: Vec<FactField>, score: f32 },
    Bundle { bundle: Bundle, fields: Vec<FactField>, score: f32 },
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl FactIndex {
    /// Collect the approval-item records of these KBs.
    pub fn build(kbs: &[std::sync::Arc<KnowledgeBase>], bundles: Vec<Bundle>) -> crate::Result<Self> {
        let mut items: Vec<ApprovalItem> = Vec::new();
        for kb in kbs {
            let filter = Filter::eq("doc_type", "approval-item");
            let mut offset = None;
            loop {
                let (page, next) = kb.store().scroll(&filter, offset, 256).map_err(xiaoguan_kb::KbError::from)?;
                for h in page {
                    let p = &h.payload;
                    let s = |k: &str| p.get(k).and_then(as_string);
                    let (Some(item), Some(doc_id)) = (s("item"), s("doc_id")) else { continue };
                    if items.iter().any(|i| i.doc_id == doc_id && i.kb == kb.def.id) {
                        continue;
                    }
                    let materials = match p.get("materials") {
                        Some(Value::Array(a)) => a.iter().filter_map(as_string).collect(),
                        Some(Value::String(s)) => s.split(['；', ';', '\n']).map(str::trim).filter(|x| !x.is_empty()).map(String::from).collect(),
                        _ => Vec::new(),
                    };
                    let mut materials_dedup: Vec<String> = Vec::new();
                    for m in materials {
                        if !materials_dedup.contains(&m) {
                            materials_dedup.push(m);
                        }
                    }
                    items.push(ApprovalItem {
                        kb: kb.def.id.clone(),
                        chunk_id: s("chunk_id").unwrap_or_default(),
                        doc_id,
                        item,
                        department: s("department").unwrap_or_default(),
                        promised_working_days: p.get("promised_working_days").and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))),
                        materials: materials_dedup,
                        region: s("region"),
                    });
                }
                match next {
                    Some(n) => offset = Some(n),
                    None => break,
                }
            }
        }
        items.sort_by(|a, b| a.doc_id.cmp(&b.doc_id));
        let mut bundle_chunks = std::collections::HashMap::new();
        for kb in kbs {
            let committed = kb.state().documents;
            let mut offset = None;
            loop {
                let (page, next) = kb.store().scroll(&Filter::eq("doc_type", "bundle"), offset, 256).map_err(xiaoguan_kb::KbError::from)?;
                for h in page {
                    let s = |k: &str| h.payload.get(k).and_then(as_string);
                    let (Some(name), Some(doc_id), Some(chunk_id)) = (s("name"), s("doc_id"), s("chunk_id")) else { continue };
                    // Points of an interrupted ingest are not cited.
                    if committed.get(&doc_id).map(|d| Some(&d.hash)) != Some(s("doc_hash").as_ref()) {
                        continue;
                    }
                    bundle_chunks.entry(name).or_insert(IndexedChunk { kb: kb.def.id.clone(), doc_id, chunk_id, doc_no: s("doc_no") });
                }
                match next {
                    Some(n) => offset = Some(n),
                    None => break,
                }
            }
        }
        Ok(Self { items, bundles, bundle_vectors: Vec::new(), bundle_chunks })
    }

    /// Embed every bundle's name and items, so `lookup` finds bundles by meaning.
    pub fn embed_bundles(&mut self, embedder: &dyn xiaoguan_models::Embedder) -> crate::Result<()> {
        let texts: Vec<String> = self.bundles.iter().map(|b| format!("{}：{}", b.name, b.items.join("、"))).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        self.bundle_vectors = if refs.is_empty() { Vec::new() } else { embedder.embed(&refs, xiaoguan_models::TextKind::Passage)? };
        Ok(())
    }

    /// The bundle a question is about: by its words (a listed phrase, or most of its name), or by
    /// meaning (the closest bundle clearly ahead of the next one), given a bundle cue.
    fn bundle_for(&self, question: &str, embedding: Option<&[f32]>, min_score: f32, min_similarity: f32) -> Option<(&Bundle, f32, String)> {
        let cue = BUNDLE_CUES.iter().any(|c| question.contains(c));
        let t = topic(question);
        let by_words = self
            .bundles
            .iter()
            .map(|b| {
                let hits: Vec<&String> = b.any.iter().filter(|w| question.contains(w.as_str())).collect();
                let longest = hits.iter().map(|w| w.chars().count()).max().unwrap_or(0);
                {
                    // One listed phrase names the bundle; more phrases or the name's words add to it.
                    let words = if hits.is_empty() { 0.0 } else { 0.6 + 0.1 * (hits.len() - 1) as f32 };
                    (b, words + topic_score(&t, &b.name), longest)
                }
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((b, score, longest)) = by_words {
            // A question that is little more than a bundle's phrase ("个体户转成公司") asks about it too.
            let names_it = longest >= 4 && longest * 10 >= question.chars().count() * 6;
            if score >= min_score && (cue || names_it) {
                return Some((b, score.min(1.0), "words".into()));
            }
        }
        let e = embedding.filter(|_| cue && self.bundle_vectors.len() == self.bundles.len())?;
        let mut sims: Vec<(usize, f32)> = self.bundle_vectors.iter().map(|v| xiaoguan_models::cosine(e, v)).enumerate().collect();
        sims.sort_by(|a, b| b.1.total_cmp(&a.1));
        let (best, sim) = *sims.first()?;
        let margin = sim - sims.get(1).map_or(0.0, |s| s.1);
        (sim >= min_similarity && margin >= 0.01).then(|| (&self.bundles[best], sim, format!("meaning {sim:.3} (next {:.3})", sim - margin)))
    }

    /// The record a field question is about, when the question names one clearly. `embedding` is
    /// the question's (query) embedding, for finding bundles by meaning.
    pub fn lookup(&self, question: &str, embedding: Option<&[f32]>, min_score: f32, bundle_min_similarity: f32) -> Option<FactMatch> {
        if let Some((b, score, _)) = self.bundle_for(question, embedding, min_score, bundle_min_similarity) {
            return Some(FactMatch::Bundle { bundle: b.clone(), fields: vec![FactField::BundleItems], score });
        }
        let fields = intents(question);
        if fields.is_empty() {
            return None;
        }
        let t = topic(question);
        let item_fields: Vec<FactField> = fields.into_iter().filter(|f| *f != FactField::BundleItems).collect();
        if item_fields.is_empty() {
            return None;
        }
        let mut scored: Vec<(&ApprovalItem, f32)> = self.items.iter().map(|i| (i, topic_score(&t, &i.item))).collect();
        // Best score first; among equals the shorter (more general) item name.
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.item.chars().count().cmp(&b.0.item.chars().count())));
        let (item, score) = scored.first().copied()?;
        (score >= min_score).then(|| FactMatch::Item { item: item.clone(), fields: item_fields, score })
    }
}

/// The exact answer text for a match, from the record's fields only. Cites source [1].
pub fn render(m: &FactMatch) -> String {
    match m {
        FactMatch::Item { item, fields, .. } => {
            let mut parts = Vec::new();
            for f in fields {
                match f {
                    FactField::Department => parts.push(format!("受理部门：{}。", item.department)),
                    FactField::TimeLimit => match item.promised_working_days {
                        Some(d) => parts.push(format!("承诺办理时限：{} 个工作日。", trim_float(d))),
                        None => parts.push("事项清单未载明承诺办理时限。".into()),
                    },
                    FactField::Materials => {
                        let list: Vec<String> = item.materials.iter().enumerate().map(|(i, m)| format!("{}. {m}", i + 1)).collect();
                        parts.push(format!("需提交的材料（共 {} 项）：\n{}", item.materials.len(), list.join("\n")));
                    }
                    FactField::BundleItems => {}
                }
            }
            let region = item.region.as_deref().map(|r| format!("（{r}事项清单）")).unwrap_or_default();
            format!("“{}”{region}\n{} [1]", item.item, parts.join("\n"))
        }
        FactMatch::Bundle { bundle, .. } if !bundle.item_units.is_empty() => render_division(bundle),
        FactMatch::Bundle { bundle, .. } => {
            let mut who = vec![format!("本地牵头部门：{}", bundle.lead)];
            if !bundle.departments.is_empty() {
                who.push(format!("协同部门：{}", bundle.departments.join("、")));
            }
            if !bundle.national_lead.is_empty() {
                who.push(format!("国家层面牵头：{}", bundle.national_lead));
            }
            let origin = [("出处", &bundle.batch), ("依据文件", &bundle.source)]
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| format!("{k}：{v}"))
                .collect::<Vec<_>>()
                .join("；");
            let origin = if origin.is_empty() { origin } else { format!("{origin}。") };
            format!("“{}”包括以下事项：{}。{}。{origin} [1]", bundle.name, bundle.items.join("、"), who.join("；"))
        }
    }
}

/// A bundle of the city's 分工表: each item with its unit, the lead, or what the document says
/// instead of a local lead.
fn render_division(b: &Bundle) -> String {
    let batch = if b.batch.is_empty() { String::new() } else { format!("（{}）", b.batch) };
    let mut out = format!("“{}”{batch}", b.name);
    match (&b.note, b.lead.is_empty()) {
        (Some(note), true) => out.push_str(&format!("：{note}，东莞未列落实部门。\n具体事项及责任部门：")),
        _ => {
            let national = if b.national_lead.is_empty() { String::new() } else { format!("（国家层面建议牵头：{}）", b.national_lead) };
            out.push_str(&format!("在东莞由{}牵头{national}。\n具体事项及东莞落实部门：", b.lead));
        }
    }
    for (i, u) in b.item_units.iter().enumerate() {
        let who = match &u.unit {
            Some(unit) => format!("{unit}{}", if u.lead { "（牵头）" } else { "" }),
            None => format!("{}{}", u.national_body.as_deref().unwrap_or("国家有关部门"), if u.national_lead { "（牵头）" } else { "" }),
        };
        out.push_str(&format!("\n{}. {} —— {who}", i + 1, u.item));
    }
    if !b.source.is_empty() {
        out.push_str(&format!("\n依据：{}。", b.source));
    }
    out.push_str(" [1]");
    out
}

fn trim_float(d: f64) -> String {
    if d.fract() == 0.0 {
        format!("{}", d as i64)
    } else {
        format!("{d}")
    }
}

/// Stage 1's answer: the rendered fields of a matched record and its one citation, when the
/// record is in a served KB (a bundle always is: it cites its `one-thing` chunk where that KB is
/// served, else the bundles data). `served` are the ids of the request's KBs.
pub fn answer(m: &FactMatch, index: &FactIndex, served: &[&str]) -> Option<(String, super::Citation, f32)> {
    let (cite, score) = match m {
        FactMatch::Item { item, score, .. } => {
            if !served.contains(&item.kb.as_str()) {
                return None;
            }
            let text = format!("受理部门：{}；承诺时限：{:?} 个工作日；材料 {} 项", item.department, item.promised_working_days, item.materials.len());
            (fact_citation(&item.kb, &item.item, None, &item.doc_id, &item.chunk_id, *score, text), *score)
        }
        FactMatch::Bundle { bundle, score, .. } => {
            let indexed = index.bundle_chunks.get(&bundle.name).filter(|c| served.contains(&c.kb.as_str()));
            let fallback_id = format!("bundle:{}", bundle.name);
            let doc_no = indexed.and_then(|c| c.doc_no.clone()).or_else(|| (!bundle.source.is_empty()).then(|| bundle.source.clone()));
            let text = format!("本地牵头部门：{}；事项：{}", bundle.lead, bundle.items.join("、"));
            let kb = indexed.map_or("dispatch-rules", |c| c.kb.as_str());
            let (doc_id, chunk_id) = indexed.map_or((fallback_id.as_str(), fallback_id.as_str()), |c| (c.doc_id.as_str(), c.chunk_id.as_str()));
            (fact_citation(kb, &bundle.name, doc_no, doc_id, chunk_id, *score, text), *score)
        }
    };
    Some((render(m), cite, score))
}

fn fact_citation(kb: &str, title: &str, doc_no: Option<String>, doc_id: &str, chunk_id: &str, score: f32, text: String) -> super::Citation {
    super::Citation {
        index: 1,
        kb: kb.into(),
        title: title.into(),
        doc_no,
        heading_path: title.into(),
        article: None,
        doc_id: doc_id.into(),
        chunk_id: chunk_id.into(),
        score,
        similarity: None,
        text,
        jurisdiction: None,
        note: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, dept: &str, days: f64, materials: &[&str]) -> ApprovalItem {
        ApprovalItem {
            kb: "k".into(),
            doc_id: name.into(),
            chunk_id: format!("{name}#0"),
            item: name.into(),
            department: dept.into(),
            promised_working_days: Some(days),
            materials: materials.iter().map(|s| s.to_string()).collect(),
            region: Some("唐山".into()),
        }
    }

    fn index() -> FactIndex {
        FactIndex {
            items: vec![
                item("建筑工程施工许可证核发", "唐山市住房和城乡建设局", 3.0, &["施工合同", "监理合同"]),
                item("建筑工程施工许可证核发（市政）", "唐山市行政审批局", 3.0, &["a"]),
                item("建设工程消防验收", "唐山市应急管理局", 10.0, &["消防验收申请表"]),
                item("企业投资项目备案", "唐山市行政审批局", 1.0, &["备案信息"]),
            ],
            bundles: vec![Bundle {
                name: "新生儿出生一件事".into(),
                lead: "卫生健康委".into(),
                departments: vec!["公安局".into()],
                items: vec!["出生医学证明".into(), "户口登记".into()],
                any: vec!["新生儿".into(), "出生".into()],
                source: "国发〔2024〕3号".into(),
                national_lead: "国家卫生健康委".into(),
                batch: String::new(),
                item_units: Vec::new(),
                note: None,
            }],
            bundle_vectors: Vec::new(),
            bundle_chunks: Default::default(),
        }
    }

    #[test]
    fn answers_fields_exactly_from_the_record() {
        let idx = index();
        let m = idx.lookup("办理施工许可需要哪些材料？", None, 0.5, 0.9).expect("match");
        let text = render(&m);
        assert!(text.contains("建筑工程施工许可证核发") && text.contains("1. 施工合同") && text.contains("共 2 项"), "{text}");
        let m = idx.lookup("消防验收哪个部门受理，承诺几个工作日？", None, 0.5, 0.9).expect("match");
        let text = render(&m);
        assert!(text.contains("唐山市应急管理局") && text.contains("10 个工作日"), "{text}");
        let m = idx.lookup("新生儿出生一件事包括哪些事项", None, 0.5, 0.9).expect("bundle");
        let text = render(&m);
        assert!(text.contains("出生医学证明、户口登记") && text.contains("国家层面牵头：国家卫生健康委") && text.contains("依据文件：国发〔2024〕3号"), "{text}");
    }

    #[test]
    fn does_not_fire_without_a_field_question_or_a_named_item() {
        let idx = index();
        assert!(idx.lookup("施工许可是什么", None, 0.5, 0.9).is_none(), "no field asked");
        assert!(idx.lookup("养老保险需要哪些材料", None, 0.5, 0.9).is_none(), "no such item");
    }

    #[test]
    fn the_answer_cites_the_record_only_when_its_kb_is_served() {
        let mut idx = index();
        let m = idx.lookup("消防验收哪个部门受理，承诺几个工作日？", None, 0.5, 0.9).expect("match");
        assert!(answer(&m, &idx, &["other"]).is_none(), "an item of a KB outside the request");
        let (text, cite, score) = answer(&m, &idx, &["k"]).unwrap();
        assert_eq!(text, render(&m));
        assert_eq!((cite.index, cite.kb.as_str(), cite.chunk_id.as_str()), (1, "k", "建设工程消防验收#0"));
        assert!(cite.text.contains("唐山市应急管理局") && cite.text.contains("材料 1 项") && score > 0.5, "{}", cite.text);
        // A bundle: its indexed chunk when that KB is served, else the bundles data.
        let m = idx.lookup("新生儿出生一件事包括哪些事项", None, 0.5, 0.9).expect("bundle");
        let (_, cite, _) = answer(&m, &idx, &["k"]).unwrap();
        assert_eq!((cite.kb.as_str(), cite.chunk_id.as_str(), cite.doc_no.as_deref()), ("dispatch-rules", "bundle:新生儿出生一件事", Some("国发〔2024〕3号")));
        idx.bundle_chunks.insert("新生儿出生一件事".into(), IndexedChunk { kb: "one-thing".into(), doc_id: "d".into(), chunk_id: "d#3".into(), doc_no: None });
        let (_, cite, _) = answer(&m, &idx, &["one-thing"]).unwrap();
        assert_eq!((cite.kb.as_str(), cite.chunk_id.as_str()), ("one-thing", "d#3"));
    }
}
