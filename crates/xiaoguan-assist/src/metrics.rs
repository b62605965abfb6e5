//! Classification metrics: accuracy, macro-F1, per-class precision/recall, top-k, confusion.

use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassStats {
    pub support: usize,
    pub predicted: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassificationReport {
    pub items: usize,
    pub accuracy: f64,
    /// Mean F1 over the classes that occur in the gold labels.
    pub macro_f1: f64,
    pub per_class: BTreeMap<String, ClassStats>,
    /// confusion[gold][predicted] = count.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Score predictions against gold labels. `None` predictions (abstained) count as wrong.
pub fn classification_report(gold: &[String], predicted: &[Option<String>]) -> ClassificationReport {
    assert_eq!(gold.len(), predicted.len(), "gold and predicted lengths differ");
    let mut support: BTreeMap<&str, usize> = BTreeMap::new();
    let mut pred_count: BTreeMap<&str, usize> = BTreeMap::new();
    let mut correct: BTreeMap<&str, usize> = BTreeMap::new();
    let mut confusion: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut right = 0;
    for (g, p) in gold.iter().zip(predicted) {
        *support.entry(g).or_default() += 1;
        let p_label = p.as_deref().unwrap_or("(abstain)");
        *confusion.entry(g.clone()).or_default().entry(p_label.to_string()).or_default() += 1;
        if let Some(p) = p {
            *pred_count.entry(p).or_default() += 1;
            if p == g {
                right += 1;
                *correct.entry(g).or_default() += 1;
            }
        }
    }
    let mut per_class = BTreeMap::new();
    let mut f1_sum = 0.0;
    for (&label, &n) in &support {
        let c = correct.get(label).copied().unwrap_or(0);
        let np = pred_count.get(label).copied().unwrap_or(0);
        let precision = ratio(c, np);
        let recall = ratio(c, n);
        let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
        f1_sum += f1;
        per_class.insert(label.to_string(), ClassStats { support: n, predicted: np, precision, recall, f1 });
    }
    ClassificationReport {
        items: gold.len(),
        accuracy: ratio(right, gold.len()),
        macro_f1: if support.is_empty() { 0.0 } else { f1_sum / support.len() as f64 },
        per_class,
        confusion,
    }
}

/// Fraction of items whose gold label is among the first `k` of the ranking.
pub fn top_k_accuracy(gold: &[String], ranked: &[Vec<String>], k: usize) -> f64 {
    let hits = gold.iter().zip(ranked).filter(|(g, r)| r.iter().take(k).any(|l| l == *g)).count();
    ratio(hits, gold.len())
}

/// Expected calibration error over 10 equal-width confidence bins.
pub fn expected_calibration_error(confidence: &[f64], correct: &[bool]) -> f64 {
    let n = confidence.len();
    if n == 0 {
        return 0.0;
    }
    let mut bins = [(0.0f64, 0usize, 0usize); 10];
    for (&c, &ok) in confidence.iter().zip(correct) {
        let b = ((c * 10.0) as usize).min(9);
        bins[b].0 += c;
        bins[b].1 += 1;
        bins[b].2 += ok as usize;
    }
    bins.iter()
        .filter(|b| b.1 > 0)
        .map(|(sum, count, ok)| (*count as f64 / n as f64) * ((sum / *count as f64) - (*ok as f64 / *count as f64)).abs())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn hand_computed_macro_f1() {
        // gold a a b b c; predicted a b b b (abstain)
        let gold = s(&["a", "a", "b", "b", "c"]);
        let pred = vec![Some("a".into()), Some("b".into()), Some("b".into()), Some("b".into()), None];
        let r = classification_report(&gold, &pred);
        assert!((r.accuracy - 0.6).abs() < 1e-12);
        // a: p=1 r=.5 f1=2/3; b: p=2/3 r=1 f1=.8; c: 0 → macro = (0.6667+0.8+0)/3
        assert!((r.macro_f1 - (2.0 / 3.0 + 0.8) / 3.0).abs() < 1e-9);
        assert_eq!(r.confusion["c"]["(abstain)"], 1);
        assert_eq!(r.per_class["b"].predicted, 3);
    }

    #[test]
    fn single_class_and_empty() {
        let r = classification_report(&s(&["x", "x"]), &[Some("x".into()), Some("x".into())]);
        assert_eq!(r.accuracy, 1.0);
        assert_eq!(r.macro_f1, 1.0);
        let e = classification_report(&[], &[]);
        assert_eq!(e.accuracy, 0.0);
        assert_eq!(e.macro_f1, 0.0);
    }

    #[test]
    fn top_k_and_calibration() {
        let gold = s(&["a", "b"]);
        let ranked = vec![s(&["b", "a"]), s(&["c", "d", "b"])];
        assert_eq!(top_k_accuracy(&gold, &ranked, 1), 0.0);
        assert_eq!(top_k_accuracy(&gold, &ranked, 2), 0.5);
        assert_eq!(top_k_accuracy(&gold, &ranked, 3), 1.0);
        // Perfectly calibrated: 0.75 confidence, 3 of 4 right.
        let ece = expected_calibration_error(&[0.75; 4], &[true, true, true, false]);
        assert!(ece.abs() < 1e-12);
    }
}
