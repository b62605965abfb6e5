//! Metrics of the harness: text overlap (character F1, ROUGE-L), ranking (hit@k, MRR, nDCG),
//! binary decisions (precision/recall/F1), latency percentiles, and bootstrap intervals.

use serde::Serialize;

fn chars(s: &str) -> Vec<char> {
    xiaoguan_text::normalize(s).chars().filter(|c| c.is_alphanumeric()).collect()
}

/// Character-level F1 (bag of characters), the usual Chinese QA overlap measure.
pub fn char_f1(prediction: &str, reference: &str) -> f64 {
    let (p, r) = (chars(prediction), chars(reference));
    if p.is_empty() || r.is_empty() {
        return 0.0;
    }
    let mut counts = std::collections::HashMap::new();
    for c in &r {
        *counts.entry(*c).or_insert(0i64) += 1;
    }
    let mut common = 0;
    for c in &p {
        if let Some(n) = counts.get_mut(c) {
            if *n > 0 {
                *n -= 1;
                common += 1;
            }
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / p.len() as f64;
    let recall = common as f64 / r.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// ROUGE-L F1 over characters (longest common subsequence).
pub fn rouge_l(prediction: &str, reference: &str) -> f64 {
    let (p, r) = (chars(prediction), chars(reference));
    if p.is_empty() || r.is_empty() {
        return 0.0;
    }
    // Long texts are capped: the head carries the answer, and LCS is quadratic.
    let p = &p[..p.len().min(1500)];
    let r = &r[..r.len().min(1500)];
    let mut prev = vec![0u32; r.len() + 1];
    let mut cur = vec![0u32; r.len() + 1];
    for a in p {
        for (j, b) in r.iter().enumerate() {
            cur[j + 1] = if a == b { prev[j] + 1 } else { cur[j].max(prev[j + 1]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let lcs = prev[r.len()] as f64;
    if lcs == 0.0 {
        return 0.0;
    }
    let precision = lcs / p.len() as f64;
    let recall = lcs / r.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// nDCG@k for one relevant item at 1-based `rank` (None = not retrieved).
pub fn ndcg_single(rank: Option<usize>, k: usize) -> f64 {
    match rank {
        Some(r) if r <= k => 1.0 / ((r + 1) as f64).log2(),
        _ => 0.0,
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BinaryScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
}

/// Precision/recall/F1 of the positive class from (predicted, actual) pairs.
pub fn binary(pairs: &[(bool, bool)]) -> BinaryScores {
    let tp = pairs.iter().filter(|(p, a)| *p && *a).count();
    let fp = pairs.iter().filter(|(p, a)| *p && !*a).count();
    let fn_ = pairs.iter().filter(|(p, a)| !*p && *a).count();
    let precision = if tp + fp == 0 { 0.0 } else { tp as f64 / (tp + fp) as f64 };
    let recall = if tp + fn_ == 0 { 0.0 } else { tp as f64 / (tp + fn_) as f64 };
    let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
    BinaryScores { precision, recall, f1, tp, fp, fn_ }
}

/// The q-th percentile (0–100) by nearest rank.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// A small deterministic generator for resampling (reruns give the same intervals).
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// 95 % percentile-bootstrap interval of `metric` over resamples of item indices `0..n`.
pub fn bootstrap(n: usize, resamples: usize, seed: u64, metric: &dyn Fn(&[usize]) -> f64) -> (f64, f64) {
    if n == 0 || resamples == 0 {
        return (0.0, 0.0);
    }
    let mut rng = SplitMix::new(seed);
    let mut values: Vec<f64> = (0..resamples)
        .map(|_| {
            let idx: Vec<usize> = (0..n).map(|_| rng.below(n)).collect();
            metric(&idx)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((q * resamples as f64) as usize).min(resamples - 1)];
    (at(0.025), at(0.975))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_measures_by_hand() {
        assert_eq!(char_f1("二十四个月", "二十四个月"), 1.0);
        // p = 北京市 (3), r = 北京 (2): common 2 → P 2/3, R 1 → F1 0.8
        assert!((char_f1("北京市", "北京") - 0.8).abs() < 1e-12);
        // LCS of abcde / ace = 3 → P 3/5, R 1 → 0.75
        assert!((rouge_l("abcde", "ace") - 0.75).abs() < 1e-12);
        assert_eq!(rouge_l("", "ace"), 0.0);
        assert_eq!(char_f1("甲", ""), 0.0);
    }

    #[test]
    fn ranking_binary_and_percentiles() {
        assert_eq!(ndcg_single(Some(1), 10), 1.0);
        assert!((ndcg_single(Some(3), 10) - 0.5).abs() < 1e-12);
        assert_eq!(ndcg_single(Some(11), 10), 0.0);
        assert_eq!(ndcg_single(None, 10), 0.0);
        let b = binary(&[(true, true), (true, false), (false, true), (false, false)]);
        assert_eq!((b.tp, b.fp, b.fn_), (1, 1, 1));
        assert!((b.f1 - 0.5).abs() < 1e-12);
        let none = binary(&[(false, false)]);
        assert_eq!((none.precision, none.recall, none.f1), (0.0, 0.0, 0.0));
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 3.0);
        assert_eq!(percentile(&v, 100.0), 5.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn bootstrap_is_deterministic_and_brackets_the_mean() {
        let scores: Vec<f64> = (0..200).map(|i| (i % 4 == 0) as u8 as f64).collect();
        let mean = |idx: &[usize]| idx.iter().map(|&i| scores[i]).sum::<f64>() / idx.len() as f64;
        let a = bootstrap(scores.len(), 500, 1, &mean);
        let b = bootstrap(scores.len(), 500, 1, &mean);
        assert_eq!(a, b);
        assert!(a.0 < 0.25 && 0.25 < a.1, "{a:?}");
        let constant = bootstrap(10, 100, 1, &|_| 1.0);
        assert_eq!(constant, (1.0, 1.0));
    }
}
