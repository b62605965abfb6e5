//! `eval compare RUN_A RUN_B`: metric deltas with paired bootstrap intervals and the items whose
//! correctness flipped.

use crate::metrics::SplitMix;
use crate::run::{metric_on, ItemResult};
use crate::{load_run, EvalError};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct Delta {
    pub metric: String,
    pub a: f64,
    pub b: f64,
    pub delta: f64,
    pub ci95: (f64, f64),
}

#[derive(Debug, Clone, Serialize)]
pub struct Flip {
    pub id: String,
    pub input: String,
    /// "fixed" (wrong in A, right in B) or "broken".
    pub change: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub suite: String,
    pub paired_items: usize,
    pub deltas: Vec<Delta>,
    pub flips: Vec<Flip>,
}

pub fn compare(run_a: &Path, run_b: &Path, resamples: usize, seed: u64) -> Result<Comparison, EvalError> {
    let (sa, ra) = load_run(run_a)?;
    let (sb, rb) = load_run(run_b)?;
    if sa.suite != sb.suite {
        return Err(EvalError::Input(format!("runs are of different suites ('{}' and '{}')", sa.suite, sb.suite)));
    }
    let by_id: HashMap<&str, &ItemResult> = rb.iter().map(|r| (r.id.as_str(), r)).collect();
    let pairs: Vec<(&ItemResult, &ItemResult)> = ra.iter().filter_map(|a| by_id.get(a.id.as_str()).map(|b| (a, *b))).collect();
    let a_items: Vec<ItemResult> = pairs.iter().map(|p| p.0.clone()).collect();
    let b_items: Vec<ItemResult> = pairs.iter().map(|p| p.1.clone()).collect();
    let all: Vec<usize> = (0..pairs.len()).collect();
    let mut deltas = Vec::new();
    for name in sa.metrics.keys().filter(|m| sb.metrics.contains_key(*m)) {
        let a = metric_on(sa.task, name, &a_items, &all);
        let b = metric_on(sa.task, name, &b_items, &all);
        // Paired resampling: the same items on both sides.
        let mut rng = SplitMix::new(seed);
        let mut ds: Vec<f64> = (0..resamples)
            .map(|_| {
                let idx: Vec<usize> = (0..all.len()).map(|_| rng.below(all.len().max(1))).collect();
                metric_on(sa.task, name, &b_items, &idx) - metric_on(sa.task, name, &a_items, &idx)
            })
            .collect();
        ds.sort_by(f64::total_cmp);
        let ci = if ds.is_empty() || all.is_empty() { (0.0, 0.0) } else { (ds[(resamples as f64 * 0.025) as usize], ds[((resamples as f64 * 0.975) as usize).min(resamples - 1)]) };
        deltas.push(Delta { metric: name.clone(), a, b, delta: b - a, ci95: ci });
    }
    let flips = pairs
        .iter()
        .filter_map(|(a, b)| {
            let (ca, cb) = (a.scores.get("correct").copied().unwrap_or(0.0), b.scores.get("correct").copied().unwrap_or(0.0));
            (ca != cb).then(|| Flip { id: a.id.clone(), input: a.input.chars().take(80).collect(), change: if cb > ca { "fixed" } else { "broken" } })
        })
        .collect();
    Ok(Comparison { suite: sa.suite, paired_items: pairs.len(), deltas, flips })
}
