//! Running a suite: every item through the system under test, per-item scores, and the suite's
//! metrics with bootstrap intervals and latency percentiles.

use crate::metrics::{binary, bootstrap, char_f1, ndcg_single, percentile, rouge_l};
use crate::suite::{Item, Suite, Task};
use crate::system::SystemUnderTest;
use crate::EvalError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Instant;
use xiaoguan_assist::metrics::classification_report;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemResult {
    pub id: String,
    pub input: String,
    pub expected: Option<String>,
    pub output: Value,
    /// Per-item scores; `correct` (0–1) is what `compare` flips on.
    pub scores: BTreeMap<String, f64>,
    pub latency_ms: f64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metric {
    pub value: f64,
    /// 95 % bootstrap interval.
    pub ci95: Option<(f64, f64)>,
}

/// Relevance of a retrieved chunk: its document is the expected one, or its text holds the
/// start of the expected answer.
fn relevant(hit: &crate::system::Retrieved, item: &Item) -> bool {
    if let Some(doc) = &item.expected_doc {
        if &hit.doc_id == doc {
            return true;
        }
    }
    let Some(expected) = &item.expected else { return false };
    let norm = |s: &str| -> String { xiaoguan_text::normalize(s).chars().filter(|c| c.is_alphanumeric()).collect() };
    let exp = norm(expected);
    // The article text without its "第N条" head: 30 characters identify it.
    let exp = exp.trim_start_matches(|c: char| c == '第' || "一二三四五六七八九十百零〇0123456789条".contains(c));
    let probe: String = exp.chars().take(30).collect();
    !probe.is_empty() && norm(&hit.text).contains(&probe)
}

/// The 1 / 0.5 / 0 score of an answer, as government Q&A indexes score: correct (ROUGE-L ≥ 0.5
/// or char-F1 ≥ 0.7, with the expected citation when one is known), related but imprecise
/// (ROUGE-L ≥ 0.2 or char-F1 ≥ 0.4), or no/wrong answer (including a handoff).
pub fn qa_score(rl: f64, cf1: f64, handoff: bool, citation_ok: Option<bool>) -> f64 {
    if handoff {
        return 0.0;
    }
    if (rl >= 0.5 || cf1 >= 0.7) && citation_ok != Some(false) {
        1.0
    } else if rl >= 0.2 || cf1 >= 0.4 {
        0.5
    } else {
        0.0
    }
}

pub fn run_items(suite: &Suite, items: &[Item], sut: &dyn SystemUnderTest, progress: &mut dyn FnMut()) -> Vec<ItemResult> {
    let k = suite.system.k.unwrap_or(10);
    items
        .iter()
        .map(|item| {
            // Gold labels in the system's spelling, so accuracy, macro-F1 and the confusion matrix agree.
            let expected = match suite.task {
                Task::Classification | Task::Routing => item.expected.as_deref().map(|e| sut.canonical_label(e)),
                _ => item.expected.clone(),
            };
            let t = Instant::now();
            let out: Result<(Value, BTreeMap<String, f64>), EvalError> = (|| {
                let mut s = BTreeMap::new();
                let v = match suite.task {
                    Task::Retrieval => {
                        let hits = sut.search(&item.input, k)?;
                        let rank = hits.iter().position(|h| relevant(h, item)).map(|r| r + 1);
                        for kk in [1, 5, 10] {
                            s.insert(format!("hit@{kk}"), rank.is_some_and(|r| r <= kk) as u8 as f64);
                        }
                        s.insert("mrr".into(), rank.map(|r| 1.0 / r as f64).unwrap_or(0.0));
                        s.insert("ndcg@10".into(), ndcg_single(rank, 10));
                        s.insert("correct".into(), (rank == Some(1)) as u8 as f64);
                        json!({"rank": rank, "top": hits.iter().take(3).map(|h| &h.chunk_id).collect::<Vec<_>>()})
                    }
                    Task::Classification | Task::Routing => {
                        let c = if suite.task == Task::Routing && suite.system.router.is_some() {
                            crate::system::ClassOutput { ranked: sut.route(&item.input)?, abstained: false, confidence: 0.0 }
                        } else {
                            sut.classify(&item.input, &item.id)?
                        };
                        let exp = expected.clone().unwrap_or_default();
                        s.insert("correct".into(), (c.ranked.first() == Some(&exp)) as u8 as f64);
                        s.insert("top3".into(), c.ranked.iter().take(3).any(|l| *l == exp) as u8 as f64);
                        s.insert("abstained".into(), c.abstained as u8 as f64);
                        if c.confidence > 0.0 {
                            s.insert("confidence".into(), c.confidence as f64);
                        }
                        json!({"predicted": c.ranked.first(), "ranked": c.ranked.iter().take(5).collect::<Vec<_>>(), "confidence": c.confidence, "abstained": c.abstained})
                    }
                    Task::Qa | Task::Refusal => {
                        let exclude = if suite.system.exclude_own_doc { item.expected_doc.as_deref() } else { None };
                        let a = sut.ask(&item.input, exclude)?;
                        if suite.task == Task::Refusal {
                            let want_handoff = item.expected.as_deref() == Some("handoff");
                            s.insert("handoff".into(), a.handoff as u8 as f64);
                            s.insert("should_handoff".into(), want_handoff as u8 as f64);
                            s.insert("correct".into(), (a.handoff == want_handoff) as u8 as f64);
                            // Jurisdiction: an answered in-scope question citing another region's local rule.
                            if !want_handoff && !a.handoff {
                                s.insert("foreign_citation_rate".into(), (!a.foreign_citations.is_empty()) as u8 as f64);
                            }
                        } else {
                            let reference = item.expected.clone().unwrap_or_default();
                            let (rl, cf) = if a.handoff { (0.0, 0.0) } else { (rouge_l(&a.text, &reference), char_f1(&a.text, &reference)) };
                            let cite_ok = item.expected_doc.as_ref().map(|d| a.cited_docs.first() == Some(d));
                            s.insert("rouge_l".into(), rl);
                            s.insert("char_f1".into(), cf);
                            s.insert("answered".into(), (!a.handoff) as u8 as f64);
                            s.insert("canonical".into(), (a.answered_by == "canonical") as u8 as f64);
                            if let Some(ok) = cite_ok {
                                s.insert("citation_hit@1".into(), ok as u8 as f64);
                                if !a.cited_docs.is_empty() {
                                    let right = a.cited_docs.iter().filter(|d| Some(*d) == item.expected_doc.as_ref()).count();
                                    s.insert("citation_precision".into(), right as f64 / a.cited_docs.len() as f64);
                                }
                            }
                            let score = qa_score(rl, cf, a.handoff, cite_ok);
                            s.insert("score".into(), score);
                            s.insert("correct".into(), (score == 1.0) as u8 as f64);
                        }
                        serde_json::to_value(&a).unwrap_or(Value::Null)
                    }
                    Task::Signals => {
                        let raised = sut.signals(&item.input, &item.id)?;
                        let gold: Vec<&str> = item.expected.as_deref().unwrap_or_default().split(',').map(str::trim).filter(|k| !k.is_empty()).collect();
                        for kind in SIGNAL_KINDS {
                            s.insert(format!("gold:{kind}"), gold.contains(&kind) as u8 as f64);
                            s.insert(format!("pred:{kind}"), raised.iter().any(|r| r == kind) as u8 as f64);
                        }
                        s.insert("gold:escalate".into(), (!gold.is_empty()) as u8 as f64);
                        s.insert("pred:escalate".into(), (!raised.is_empty()) as u8 as f64);
                        let same = gold.len() == raised.len() && gold.iter().all(|g| raised.iter().any(|r| r == g));
                        s.insert("correct".into(), same as u8 as f64);
                        json!({"raised": raised, "expected": gold})
                    }
                    Task::Ticket => {
                        let v = sut.ticket(&item.input, &item.id)?;
                        let reply = v.pointer("/suggested_reply/text").and_then(Value::as_str).unwrap_or_default();
                        let handoff = v.pointer("/suggested_reply/handoff").and_then(Value::as_bool).unwrap_or(true);
                        let needs_review = v.get("needs_review").and_then(Value::as_bool).unwrap_or(true);
                        if let (Some(pointer), Some(gold)) = (&suite.fields.expected_output, &item.expected) {
                            // Department names in the system's spelling (the home city's unit).
                            let gold = if pointer.starts_with("/departments") { sut.canonical_label(gold) } else { gold.clone() };
                            let right = v.pointer(pointer).and_then(Value::as_str) == Some(gold.as_str());
                            s.insert("decision_correct".into(), right as u8 as f64);
                            if !needs_review {
                                s.insert("passed_correct".into(), right as u8 as f64);
                            }
                        } else if let Some(reference) = &item.expected {
                            let (rl, cf) = if handoff { (0.0, 0.0) } else { (rouge_l(reply, reference), char_f1(reply, reference)) };
                            s.insert("reply_rouge_l".into(), rl);
                            s.insert("reply_char_f1".into(), cf);
                        }
                        if suite.fields.expected_output.is_none() {
                            s.insert("reply_answered".into(), (!handoff) as u8 as f64);
                        }
                        s.insert("escalated".into(), v.pointer("/signals/escalate").and_then(Value::as_bool).unwrap_or(false) as u8 as f64);
                        s.insert("needs_review".into(), needs_review as u8 as f64);
                        // Masking must leave no mobile number in what the agent sees.
                        let masked = v.get("masked_text").and_then(Value::as_str).unwrap_or_default();
                        let leak = has_mobile_number(masked);
                        s.insert("pii_leak".into(), leak as u8 as f64);
                        s.insert("correct".into(), (!leak) as u8 as f64);
                        v
                    }
                };
                Ok((v, s))
            })();
            let latency_ms = t.elapsed().as_secs_f64() * 1000.0;
            progress();
            match out {
                Ok((output, scores)) => ItemResult { id: item.id.clone(), input: item.input.clone(), expected, output, scores, latency_ms, error: None },
                Err(e) => ItemResult {
                    id: item.id.clone(),
                    input: item.input.clone(),
                    expected,
                    output: Value::Null,
                    scores: failed_scores(suite.task, item),
                    latency_ms,
                    error: Some(e.to_string()),
                },
            }
        })
        .collect()
}

/// Whether `text` shows a mainland mobile number: 11 digits starting with 1 that are not part of a
/// longer digit run (an order or account number is not a phone number).
fn has_mobile_number(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i - start == 11 && b[start] == b'1' {
                return true;
            }
        } else {
            i += 1;
        }
    }
    false
}

/// Scores of an item the system failed on: every metric's key at its worst, so errors count
/// against the system instead of dropping out of the averages.
fn failed_scores(task: Task, item: &Item) -> BTreeMap<String, f64> {
    let zeros: &[&str] = match task {
        Task::Retrieval => &["hit@1", "hit@5", "hit@10", "mrr", "ndcg@10"],
        Task::Classification | Task::Routing => &["top3", "abstained"],
        Task::Qa => &["rouge_l", "char_f1", "answered", "canonical", "score"],
        Task::Refusal | Task::Signals => &[],
        Task::Ticket => &["reply_rouge_l", "reply_char_f1", "reply_answered", "escalated", "pii_leak"],
    };
    let mut s: BTreeMap<String, f64> = zeros.iter().map(|k| (k.to_string(), 0.0)).collect();
    s.insert("correct".into(), 0.0);
    if task == Task::Refusal {
        // A failure is neither a handoff nor an answer: wrong whichever was expected.
        let want = item.expected.as_deref() == Some("handoff");
        s.insert("should_handoff".into(), want as u8 as f64);
        s.insert("handoff".into(), (!want) as u8 as f64);
    }
    if task == Task::Ticket {
        s.insert("needs_review".into(), 1.0);
    }
    s
}

fn mean_of(results: &[ItemResult], idx: &[usize], key: &str) -> f64 {
    let vals: Vec<f64> = idx.iter().filter_map(|&i| results[i].scores.get(key).copied()).collect();
    if vals.is_empty() {
        0.0
    } else {
        vals.iter().sum::<f64>() / vals.len() as f64
    }
}

/// The 弱信号 kinds scored by the signals task (as the detector names them).
const SIGNAL_KINDS: [&str; 6] = ["life_danger", "self_harm", "mass_incident", "safety_hazard", "threat", "sensitive"];
const SIGNAL_METRICS: [&str; 14] = [
    "escalate_precision", "escalate_recall", "life_danger_precision", "life_danger_recall", "self_harm_precision", "self_harm_recall",
    "mass_incident_precision", "mass_incident_recall", "safety_hazard_precision", "safety_hazard_recall", "threat_precision", "threat_recall",
    "sensitive_precision", "sensitive_recall",
];

/// A metric computed on a subset of items (for bootstrap resamples and paired comparison).
pub fn metric_on(task: Task, name: &str, results: &[ItemResult], idx: &[usize]) -> f64 {
    match (task, name) {
        (Task::Classification | Task::Routing, "accuracy") => mean_of(results, idx, "correct"),
        (Task::Classification | Task::Routing, "top3_accuracy") => mean_of(results, idx, "top3"),
        (Task::Classification | Task::Routing, "abstain_rate") => mean_of(results, idx, "abstained"),
        (Task::Classification | Task::Routing, "accuracy_answered") => {
            let answered: Vec<usize> = idx.iter().copied().filter(|&i| results[i].scores.get("abstained") == Some(&0.0)).collect();
            mean_of(results, &answered, "correct")
        }
        (Task::Classification | Task::Routing, "macro_f1") => {
            let gold: Vec<String> = idx.iter().map(|&i| results[i].expected.clone().unwrap_or_default()).collect();
            let pred: Vec<Option<String>> = idx.iter().map(|&i| results[i].output.get("predicted").and_then(Value::as_str).map(String::from)).collect();
            classification_report(&gold, &pred).macro_f1
        }
        (Task::Refusal, m) => {
            let pairs: Vec<(bool, bool)> = idx
                .iter()
                .map(|&i| (results[i].scores.get("handoff") == Some(&1.0), results[i].scores.get("should_handoff") == Some(&1.0)))
                .collect();
            let b = binary(&pairs);
            match m {
                "handoff_precision" => b.precision,
                "handoff_recall" => b.recall,
                "handoff_f1" => b.f1,
                "accuracy" => mean_of(results, idx, "correct"),
                "foreign_citation_rate" => mean_of(results, idx, "foreign_citation_rate"),
                _ => f64::NAN,
            }
        }
        (Task::Signals, m) => {
            // "{kind}_precision" / "{kind}_recall" over the items' gold and raised kinds.
            let Some((kind, which)) = m.rsplit_once('_') else { return f64::NAN };
            let pairs: Vec<(bool, bool)> = idx
                .iter()
                .map(|&i| (results[i].scores.get(&format!("pred:{kind}")) == Some(&1.0), results[i].scores.get(&format!("gold:{kind}")) == Some(&1.0)))
                .collect();
            let b = binary(&pairs);
            match which {
                "precision" => b.precision,
                "recall" => b.recall,
                _ => mean_of(results, idx, "correct"),
            }
        }
        (Task::Qa, "answered_rate") => mean_of(results, idx, "answered"),
        (Task::Qa, "canonical_rate") => mean_of(results, idx, "canonical"),
        (Task::Qa, "mean_score") => mean_of(results, idx, "score"),
        (Task::Ticket, "pii_leak_rate") => mean_of(results, idx, "pii_leak"),
        (Task::Ticket, "decision_accuracy") => mean_of(results, idx, "decision_correct"),
        // Of the tickets that pass without review, the share whose decision is right.
        (Task::Ticket, "precision_passed") => mean_of(results, idx, "passed_correct"),
        (_, key) => mean_of(results, idx, key),
    }
}

/// The metrics each task reports.
pub fn metric_names(task: Task, results: &[ItemResult]) -> Vec<String> {
    let fixed: &[&str] = match task {
        Task::Retrieval => &["hit@1", "hit@5", "hit@10", "mrr", "ndcg@10"],
        Task::Classification | Task::Routing => &["accuracy", "macro_f1", "top3_accuracy", "abstain_rate", "accuracy_answered"],
        Task::Qa => &["mean_score", "rouge_l", "char_f1", "answered_rate", "canonical_rate", "citation_hit@1", "citation_precision"],
        Task::Refusal => &["handoff_precision", "handoff_recall", "handoff_f1", "accuracy", "foreign_citation_rate"],
        Task::Ticket => &["reply_rouge_l", "reply_char_f1", "reply_answered", "escalated", "needs_review", "pii_leak_rate", "decision_accuracy", "precision_passed"],
        Task::Signals => &SIGNAL_METRICS,
    };
    fixed
        .iter()
        .filter(|m| {
            // Only metrics the items carry (e.g. citation metrics need an expected document).
            let key = match **m {
                "accuracy" | "macro_f1" | "top3_accuracy" | "abstain_rate" | "accuracy_answered" | "handoff_precision" | "handoff_recall" | "handoff_f1" | "mean_score" | "answered_rate" | "canonical_rate" | "pii_leak_rate" => None,
                "decision_accuracy" => Some("decision_correct"),
                "precision_passed" => Some("passed_correct"),
                m if m.ends_with("_precision") || m.ends_with("_recall") => None,
                other => Some(other),
            };
            key.is_none_or(|k| results.iter().any(|r| r.scores.contains_key(k)))
        })
        .map(|m| m.to_string())
        .collect()
}

pub fn summarize(task: Task, results: &[ItemResult], seed: u64, resamples: usize) -> (BTreeMap<String, Metric>, BTreeMap<String, f64>) {
    let all: Vec<usize> = (0..results.len()).collect();
    let mut metrics = BTreeMap::new();
    for name in metric_names(task, results) {
        let value = metric_on(task, &name, results, &all);
        let ci = bootstrap(results.len(), resamples, seed, &|idx| metric_on(task, &name, results, idx));
        metrics.insert(name, Metric { value, ci95: Some(ci) });
    }
    let lat: Vec<f64> = results.iter().map(|r| r.latency_ms).collect();
    let total_s: f64 = lat.iter().sum::<f64>() / 1000.0;
    let latency = BTreeMap::from([
        ("p50_ms".to_string(), percentile(&lat, 50.0)),
        ("p95_ms".to_string(), percentile(&lat, 95.0)),
        ("p99_ms".to_string(), percentile(&lat, 99.0)),
        ("items_per_s".to_string(), if total_s > 0.0 { results.len() as f64 / total_s } else { 0.0 }),
        ("errors".to_string(), results.iter().filter(|r| r.error.is_some()).count() as f64),
    ]);
    (metrics, latency)
}

/// A classifier's confidence against its correctness, over the items that carry one (a router
/// ranks without a confidence: none).
pub fn calibration(task: Task, results: &[ItemResult]) -> Option<crate::calibration::Calibration> {
    if !matches!(task, Task::Classification | Task::Routing) {
        return None;
    }
    let pairs: Vec<(f64, bool)> = results.iter().filter_map(|r| Some((*r.scores.get("confidence")?, r.scores.get("correct") == Some(&1.0)))).collect();
    crate::calibration::calibrate(&pairs)
}

/// Thresholds not met: "name: value < min" lines. A `max_` prefix bounds from above.
pub fn check_thresholds(thresholds: &BTreeMap<String, f64>, metrics: &BTreeMap<String, Metric>, latency: &BTreeMap<String, f64>) -> Vec<String> {
    let mut failed = Vec::new();
    for (name, &bound) in thresholds {
        let (key, upper) = match name.strip_prefix("max_") {
            Some(k) => (k, true),
            None => (name.as_str(), false),
        };
        let value = metrics.get(key).map(|m| m.value).or_else(|| latency.get(key).copied());
        match value {
            None => failed.push(format!("{name}: the run has no metric '{key}'")),
            Some(v) if upper && v > bound => failed.push(format!("{key}: {v:.4} > {bound}")),
            Some(v) if !upper && v < bound => failed.push(format!("{key}: {v:.4} < {bound}")),
            _ => {}
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tickets whose 诉求类型 is the text's first word; texts starting with "?" are held for review.
    struct FakeTickets;

    impl SystemUnderTest for FakeTickets {
        fn describe(&self) -> Value {
            json!({})
        }
        fn ask(&self, _: &str, _: Option<&str>) -> Result<crate::system::AskOutput, EvalError> {
            Err(EvalError::Input("no".into()))
        }
        fn classify(&self, _: &str, _: &str) -> Result<crate::system::ClassOutput, EvalError> {
            Err(EvalError::Input("no".into()))
        }
        fn search(&self, _: &str, _: usize) -> Result<Vec<crate::system::Retrieved>, EvalError> {
            Err(EvalError::Input("no".into()))
        }
        fn ticket(&self, text: &str, _: &str) -> Result<Value, EvalError> {
            let label = text.trim_start_matches('?').split(' ').next().unwrap_or_default();
            Ok(json!({"needs_review": text.starts_with('?'), "request_type": {"ranked": [{"label": label}]}, "masked_text": text}))
        }
    }

    #[test]
    fn a_mobile_number_is_eleven_digits_on_their_own() {
        assert!(has_mobile_number("电话13812345678请回电"));
        assert!(has_mobile_number("13812345678"));
        assert!(!has_mobile_number("订单号D22050910000331519A6"), "a longer digit run is an order number");
        assert!(!has_mobile_number("电话138****5678"));
        assert!(!has_mobile_number("编号1381234567"), "ten digits");
    }

    #[test]
    fn ticket_suites_measure_the_precision_of_tickets_that_pass_review() {
        let suite: crate::suite::Suite = serde_yaml::from_str(
            "name: t\ntask: ticket\ndatasets: [{path: x.jsonl}]\nfields: {id: id, input: [text], expected: request_type, expected_output: /request_type/ranked/0/label}\n",
        )
        .unwrap();
        let item = |id: &str, input: &str, gold: &str| crate::suite::Item { id: id.into(), input: input.into(), expected: Some(gold.into()), expected_doc: None, dataset: 0 };
        // Passed: 咨询 right, 投诉 wrong, 建言 right; held: one right, one wrong.
        let items = [item("1", "咨询 a", "咨询"), item("2", "投诉 b", "咨询"), item("3", "建言 c", "建言"), item("4", "?咨询 d", "咨询"), item("5", "?建言 e", "咨询")];
        let results = run_items(&suite, &items, &FakeTickets, &mut || {});
        let (m, _) = summarize(Task::Ticket, &results, 1, 50);
        assert!((m["needs_review"].value - 0.4).abs() < 1e-9);
        assert!((m["decision_accuracy"].value - 0.6).abs() < 1e-9);
        assert!((m["precision_passed"].value - 2.0 / 3.0).abs() < 1e-9, "{}", m["precision_passed"].value);
        assert!(!m.contains_key("reply_rouge_l") && !m.contains_key("reply_answered"), "a decision suite does not score replies");
    }

    fn item(expected: &str, predicted: &str, abstained: bool) -> ItemResult {
        ItemResult {
            id: String::new(),
            input: String::new(),
            expected: Some(expected.into()),
            output: json!({"predicted": predicted}),
            scores: BTreeMap::from([("correct".into(), (expected == predicted) as u8 as f64), ("abstained".into(), abstained as u8 as f64), ("top3".into(), 1.0)]),
            latency_ms: 10.0,
            error: None,
        }
    }

    #[test]
    fn classification_metrics_and_thresholds() {
        let r = vec![item("a", "a", false), item("a", "b", true), item("b", "b", false), item("b", "b", false)];
        let (m, lat) = summarize(Task::Classification, &r, 1, 200);
        assert_eq!(m["accuracy"].value, 0.75);
        assert_eq!(m["abstain_rate"].value, 0.25);
        assert_eq!(m["accuracy_answered"].value, 1.0);
        // a: P 1 R .5 F1 2/3; b: P 2/3 R 1 F1 .8
        assert!((m["macro_f1"].value - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-9);
        assert_eq!(lat["p50_ms"], 10.0);
        let th = BTreeMap::from([("accuracy".to_string(), 0.8), ("max_p95_ms".to_string(), 5.0), ("top3_accuracy".to_string(), 1.0)]);
        let failed = check_thresholds(&th, &m, &lat);
        assert_eq!(failed.len(), 2, "{failed:?}");
    }

    #[test]
    fn qa_scoring_rules() {
        assert_eq!(qa_score(0.6, 0.0, false, None), 1.0);
        assert_eq!(qa_score(0.6, 0.9, false, Some(false)), 0.5, "right text, wrong citation");
        assert_eq!(qa_score(0.3, 0.0, false, None), 0.5);
        assert_eq!(qa_score(0.1, 0.1, false, None), 0.0);
        assert_eq!(qa_score(0.9, 0.9, true, None), 0.0, "a handoff scores 0");
    }

    #[test]
    fn refusal_metrics() {
        let mk = |h: bool, s: bool| ItemResult {
            id: String::new(),
            input: String::new(),
            expected: None,
            output: Value::Null,
            scores: BTreeMap::from([("handoff".into(), h as u8 as f64), ("should_handoff".into(), s as u8 as f64), ("correct".into(), (h == s) as u8 as f64)]),
            latency_ms: 1.0,
            error: None,
        };
        let r = vec![mk(true, true), mk(true, false), mk(false, true), mk(false, false)];
        let (m, _) = summarize(Task::Refusal, &r, 1, 50);
        assert_eq!(m["handoff_precision"].value, 0.5);
        assert_eq!(m["handoff_recall"].value, 0.5);
        assert_eq!(m["accuracy"].value, 0.5);
    }

    #[test]
    fn calibration_pairs_confidence_with_correctness_and_skips_rows_without_one() {
        let mut r = vec![item("a", "a", false), item("a", "b", false), item("b", "b", false), item("b", "b", false)];
        for (x, c) in r.iter_mut().zip([0.9, 0.8, 0.6, 0.0]) {
            if c > 0.0 {
                x.scores.insert("confidence".into(), c);
            }
        }
        let c = calibration(Task::Classification, &r).unwrap();
        assert_eq!(c.rows, 3, "the row without a confidence is left out");
        let top = c.at_target_precision.unwrap();
        assert_eq!((top.threshold, top.coverage, top.precision), (0.9, 1.0 / 3.0, 1.0));
        assert!(calibration(Task::Refusal, &r).is_none());
        assert!(calibration(Task::Routing, &r[3..]).is_none(), "a router gives no confidence");
    }
}
