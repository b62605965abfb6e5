//! Training: load labelled rows, hold out a deterministic 20 %, train the n-gram baseline and the
//! full model side by side, fit temperature, kNN weight and abstain threshold on the held-out rows,
//! then retrain on every row with those settings.

use super::features::{NgramConfig, Sparse, TfidfFeaturizer};
use super::knn::{KnnMemory, MemoryItem};
use super::linear::{softmax, LinearModel, Row, TrainParams};
use super::{ClassifierMeta, ClassifierModel, PrecisionPoint};
use crate::error::{AssistError, Result};
use crate::metrics::{classification_report, expected_calibration_error, top_k_accuracy, ClassificationReport};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct Example {
    pub id: String,
    pub text: String,
    pub label: String,
}

/// Rows of a JSONL file (or a JSON array). Several text fields are joined with "。"; rows whose
/// label is missing, null or empty — or that `label_map` drops — are skipped and counted.
pub fn load_examples(
    path: &Path,
    text_fields: &[String],
    label_field: &str,
    id_field: Option<&str>,
    label_map: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<Example>, usize, String)> {
    let (rows, sha) = read_rows(path)?;
    let mut examples = Vec::new();
    let mut skipped = 0;
    for (line, row) in rows {
        let Some(obj) = row.as_object() else {
            return Err(AssistError::InvalidInput(format!("{}:{line}: expected a JSON object", path.display())));
        };
        let text = text_fields
            .iter()
            .filter_map(|f| obj.get(f).and_then(Value::as_str))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("。");
        if text.is_empty() && text_fields.iter().all(|f| !obj.contains_key(f)) {
            return Err(AssistError::InvalidInput(format!("{}:{line}: none of the text fields {text_fields:?} is present", path.display())));
        }
        let label = obj.get(label_field).and_then(|v| match v {
            Value::String(s) => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        let Some(label) = label.filter(|l| !l.is_empty()).and_then(|l| label_map(&l)) else {
            skipped += 1;
            continue;
        };
        if text.is_empty() {
            skipped += 1;
            continue;
        }
        let id = id_field
            .and_then(|f| obj.get(f))
            .map(|v| v.as_str().map(String::from).unwrap_or_else(|| v.to_string()))
            .unwrap_or_else(|| format!("line-{line}"));
        examples.push(Example { id, text, label });
    }
    Ok((examples, skipped, sha))
}

/// The objects of a JSONL file or a JSON array, each with its line (JSONL) or position (array),
/// and the file's sha256. Bad JSON is the caller's error, named by file and line.
pub fn read_rows(path: &Path) -> Result<(Vec<(usize, Value)>, String)> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AssistError::InvalidInput(format!("{}: no such file", path.display())),
        _ => AssistError::io("read", path, e),
    })?;
    let sha = hex::encode(Sha256::digest(&bytes));
    let rows: Vec<(usize, Value)> = if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        let v: Vec<Value> = serde_json::from_slice(&bytes).map_err(|e| AssistError::InvalidInput(format!("{}:{}: {e}", path.display(), e.line())))?;
        v.into_iter().enumerate().map(|(i, v)| (i + 1, v)).collect()
    } else {
        let mut out = Vec::new();
        for (i, line) in bytes.lines().enumerate() {
            let line = line.map_err(|e| AssistError::InvalidInput(format!("{}:{}: {e}", path.display(), i + 1)))?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&line).map_err(|e| AssistError::InvalidInput(format!("{}:{}: {e}", path.display(), i + 1)))?;
            out.push((i + 1, v));
        }
        out
    };
    Ok((rows, sha))
}

#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub name: String,
    pub ngram: NgramConfig,
    pub params: TrainParams,
    /// Percent of rows held out for the report and for calibration.
    pub holdout_percent: u64,
    pub knn_k: usize,
    pub knn_tau: f32,
    /// The abstain threshold keeps precision on the answered rows at or above this.
    pub target_precision: f32,
    /// Retrain the shipped model on every row. Off by default so the held-out rows stay unseen
    /// and evaluation suites can measure on them (`split: holdout`).
    pub final_on_all_rows: bool,
    /// Hold out exactly these ids instead of the hashed `holdout_percent` (experiments that fix
    /// their own evaluation rows, e.g. the labelling-loop simulation).
    pub held_out: Option<std::collections::HashSet<String>>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            name: "classifier".into(),
            ngram: NgramConfig::default(),
            params: TrainParams::default(),
            holdout_percent: 20,
            knn_k: 10,
            knn_tau: 0.02,
            target_precision: 0.9,
            final_on_all_rows: false,
            held_out: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitScores {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub top3_accuracy: f64,
    pub ece: f64,
    pub report: ClassificationReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub name: String,
    pub rows: usize,
    pub skipped_rows: usize,
    pub classes: usize,
    pub train_rows: usize,
    pub holdout_rows: usize,
    /// Character 1–3-gram TF-IDF + logistic regression: the floor to beat.
    pub baseline: SplitScores,
    /// n-grams + embedding in one head, blended with the kNN memory.
    pub model: SplitScores,
    pub knn_weight: f32,
    pub temperature: f32,
    pub abstain_threshold: f32,
    pub abstain_rate: f64,
    pub accuracy_when_answered: f64,
    pub seconds: f64,
}

/// Whether a row (by id) is in the held-out split: a stable hash, so any tool can tell.
pub fn is_holdout(id: &str, percent: u64) -> bool {
    super::features::fnv1a(id.bytes()) % 100 < percent
}

fn scores(labels: &[String], gold: &[usize], probs: &[Vec<f32>]) -> SplitScores {
    let name = |i: usize| labels[i].clone();
    let gold_s: Vec<String> = gold.iter().map(|&g| name(g)).collect();
    let ranked: Vec<Vec<String>> = probs
        .iter()
        .map(|p| {
            let mut idx: Vec<usize> = (0..p.len()).collect();
            idx.sort_by(|a, b| p[*b].total_cmp(&p[*a]));
            idx.into_iter().map(name).collect()
        })
        .collect();
    let pred: Vec<Option<String>> = ranked.iter().map(|r| r.first().cloned()).collect();
    let conf: Vec<f64> = probs.iter().map(|p| p.iter().copied().fold(0.0f32, f32::max) as f64).collect();
    let correct: Vec<bool> = pred.iter().zip(&gold_s).map(|(p, g)| p.as_ref() == Some(g)).collect();
    let report = classification_report(&gold_s, &pred);
    SplitScores {
        accuracy: report.accuracy,
        macro_f1: report.macro_f1,
        top3_accuracy: top_k_accuracy(&gold_s, &ranked, 3),
        ece: expected_calibration_error(&conf, &correct),
        report,
    }
}

/// Precisions at which a head records the confidence that reaches them, for callers that need a
/// stricter review point than the head's own abstain threshold (ticket-level review).
pub const REVIEW_PRECISIONS: [f32; 6] = [0.8, 0.85, 0.9, 0.95, 0.97, 0.99];

/// The lowest confidence at which the rows at or above it (sorted by confidence, highest first)
/// reach `target` precision, and the share of rows it keeps; 0 when every row together does, 1
/// (keep none) when no prefix does.
pub fn threshold_for_precision(by_conf: &[(f32, bool)], target: f32) -> PrecisionPoint {
    let mut threshold = 1.0f32;
    let mut right = 0usize;
    for (i, &(c, ok)) in by_conf.iter().enumerate() {
        right += ok as usize;
        // A threshold keeps every row of a confidence or none: cut only after the last of a tie.
        let tie_ends = by_conf.get(i + 1).is_none_or(|next| next.0 < c);
        if tie_ends && right as f32 / (i + 1) as f32 >= target {
            threshold = c;
        }
    }
    if !by_conf.is_empty() && by_conf.iter().filter(|x| x.1).count() as f32 / by_conf.len() as f32 >= target {
        threshold = 0.0;
    }
    let kept = by_conf.iter().filter(|(c, _)| *c >= threshold).count();
    let coverage = if by_conf.is_empty() { 0.0 } else { kept as f32 / by_conf.len() as f32 };
    PrecisionPoint { precision: target, threshold, coverage }
}

fn argmax(p: &[f32]) -> usize {
    p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|x| x.0).unwrap_or(0)
}

struct Fitted {
    featurizer: TfidfFeaturizer,
    linear: LinearModel,
    memory: KnnMemory,
}

fn fit(
    examples: &[&Example],
    label_ids: &[usize],
    embeddings: Option<&[&[f32]]>,
    classes: usize,
    cfg: &TrainConfig,
) -> (Fitted, Vec<Sparse>) {
    let featurizer = TfidfFeaturizer::fit(cfg.ngram.clone(), examples.iter().map(|e| e.text.as_str()));
    let sparse: Vec<Sparse> = examples.iter().map(|e| featurizer.transform(&e.text)).collect();
    let dense_dim = embeddings.and_then(|e| e.first()).map(|v| v.len()).unwrap_or(0);
    let rows: Vec<Row> = sparse.iter().enumerate().map(|(i, s)| Row { sparse: s, dense: embeddings.map(|e| e[i]) }).collect();
    let linear = LinearModel::train(&rows, label_ids, classes, cfg.ngram.buckets as usize, dense_dim, &cfg.params);
    let mut memory = KnnMemory::default();
    if let Some(embs) = embeddings {
        for (i, e) in examples.iter().enumerate() {
            let snippet: String = xiaoguan_text::mask_pii(&e.text).text.chars().take(80).collect();
            memory.push(embs[i], MemoryItem { id: e.id.clone(), label: label_ids[i], snippet });
        }
    }
    (Fitted { featurizer, linear, memory }, sparse)
}

/// Train a classifier. `embeddings[i]` belongs to `examples[i]` (None: n-grams only).
pub fn train(
    examples: &[Example],
    skipped_rows: usize,
    data_sha256: &str,
    embeddings: Option<&[Vec<f32>]>,
    embedder: Option<&str>,
    cfg: &TrainConfig,
) -> Result<(ClassifierModel, TrainReport)> {
    let started = std::time::Instant::now();
    let mut labels: Vec<String> = examples.iter().map(|e| e.label.clone()).collect();
    labels.sort();
    labels.dedup();
    if labels.len() < 2 {
        return Err(AssistError::InvalidInput(format!("need at least two labels to train, found {}", labels.len())));
    }
    let index: BTreeMap<&str, usize> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
    let label_of = |e: &Example| index[e.label.as_str()];
    let (test_idx, train_idx): (Vec<usize>, Vec<usize>) = (0..examples.len()).partition(|&i| match &cfg.held_out {
        Some(ids) => ids.contains(&examples[i].id),
        None => is_holdout(&examples[i].id, cfg.holdout_percent),
    });
    if test_idx.is_empty() || train_idx.is_empty() {
        return Err(AssistError::InvalidInput(format!("{} rows are too few to hold out a split", examples.len())));
    }
    let k = labels.len();
    let pick = |idx: &[usize]| -> Vec<&Example> { idx.iter().map(|&i| &examples[i]).collect() };
    let embs = |idx: &[usize]| -> Option<Vec<&[f32]>> { embeddings.map(|e| idx.iter().map(|&i| e[i].as_slice()).collect()) };
    let train_ex = pick(&train_idx);
    let train_labels: Vec<usize> = train_ex.iter().map(|e| label_of(e)).collect();
    let test_ex = pick(&test_idx);
    let gold: Vec<usize> = test_ex.iter().map(|e| label_of(e)).collect();

    // The floor: n-grams only.
    let (base, _) = fit(&train_ex, &train_labels, None, k, cfg);
    let base_probs: Vec<Vec<f32>> = test_ex
        .iter()
        .map(|e| softmax(&base.linear.logits(&Row { sparse: &base.featurizer.transform(&e.text), dense: None }), 1.0))
        .collect();
    let baseline = scores(&labels, &gold, &base_probs);

    // The model: n-grams + embedding, then kNN blend.
    let train_embs = embs(&train_idx);
    let test_embs = embs(&test_idx);
    let (full, _) = fit(&train_ex, &train_labels, train_embs.as_deref(), k, cfg);
    let logits: Vec<Vec<f32>> = test_ex
        .iter()
        .enumerate()
        .map(|(i, e)| full.linear.logits(&Row { sparse: &full.featurizer.transform(&e.text), dense: test_embs.as_ref().map(|t| t[i]) }))
        .collect();
    // Temperature: the grid value with the lowest held-out negative log-likelihood.
    let nll = |t: f32| -> f32 { logits.iter().zip(&gold).map(|(z, &g)| -softmax(z, t)[g].max(1e-9).ln()).sum() };
    let temperature = [0.25f32, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0].into_iter().min_by(|a, b| nll(*a).total_cmp(&nll(*b))).unwrap_or(1.0);
    let votes: Vec<Vec<f32>> = match &test_embs {
        Some(te) => te.iter().map(|e| full.memory.vote(&full.memory.nearest(e, cfg.knn_k, None), k, cfg.knn_tau)).collect(),
        None => Vec::new(),
    };
    let blend = |w: f32| -> Vec<Vec<f32>> {
        logits
            .iter()
            .enumerate()
            .map(|(i, z)| {
                let lin = softmax(z, temperature);
                match votes.get(i) {
                    Some(v) => lin.iter().zip(v).map(|(a, b)| (1.0 - w) * a + w * b).collect(),
                    None => lin,
                }
            })
            .collect()
    };
    let weights: &[f32] = if votes.is_empty() { &[0.0] } else { &[0.0, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9] };
    let acc = |p: &[Vec<f32>]| p.iter().zip(&gold).filter(|(p, g)| argmax(p) == **g).count();
    let knn_weight = weights.iter().copied().max_by_key(|w| (acc(&blend(*w)), (-(w * 100.0)) as i64)).unwrap_or(0.0);
    let probs = blend(knn_weight);
    let model_scores = scores(&labels, &gold, &probs);

    // Abstain threshold: the lowest confidence at which the answered rows reach the target precision.
    let mut by_conf: Vec<(f32, bool)> = probs.iter().zip(&gold).map(|(p, &g)| (p[argmax(p)], argmax(p) == g)).collect();
    by_conf.sort_by(|a, b| b.0.total_cmp(&a.0));
    let abstain_threshold = threshold_for_precision(&by_conf, cfg.target_precision).threshold;
    let precision_thresholds: Vec<PrecisionPoint> = REVIEW_PRECISIONS.iter().map(|&p| threshold_for_precision(&by_conf, p)).collect();
    let answered: Vec<&(f32, bool)> = by_conf.iter().filter(|(c, _)| *c >= abstain_threshold).collect();
    let abstain_rate = 1.0 - answered.len() as f64 / by_conf.len() as f64;
    let accuracy_when_answered = if answered.is_empty() { 0.0 } else { answered.iter().filter(|x| x.1).count() as f64 / answered.len() as f64 };

    // Optionally the shipped model learns from every row with the settings chosen above.
    let (final_fit, trained_rows) = if cfg.final_on_all_rows {
        let all: Vec<&Example> = examples.iter().collect();
        let all_labels: Vec<usize> = all.iter().map(|e| label_of(e)).collect();
        let all_embs: Option<Vec<&[f32]>> = embeddings.map(|e| e.iter().map(Vec::as_slice).collect());
        (fit(&all, &all_labels, all_embs.as_deref(), k, cfg).0, examples.len())
    } else {
        (full, train_idx.len())
    };
    let report = TrainReport {
        name: cfg.name.clone(),
        rows: examples.len(),
        skipped_rows,
        classes: k,
        train_rows: train_idx.len(),
        holdout_rows: test_idx.len(),
        baseline,
        model: model_scores,
        knn_weight,
        temperature,
        abstain_threshold,
        abstain_rate,
        accuracy_when_answered,
        seconds: started.elapsed().as_secs_f64(),
    };
    let meta = ClassifierMeta {
        name: cfg.name.clone(),
        labels,
        ngram: cfg.ngram.clone(),
        embedder: embedder.filter(|_| embeddings.is_some()).map(String::from),
        dense_dim: final_fit.linear.dense_dim,
        dense_scale: cfg.params.dense_scale,
        knn_k: cfg.knn_k,
        knn_tau: cfg.knn_tau,
        knn_weight,
        temperature,
        abstain_threshold,
        precision_thresholds,
        trained_rows,
        data_sha256: data_sha256.to_string(),
        report: serde_json::to_value(&report).unwrap_or(Value::Null),
    };
    let model = ClassifierModel { meta, featurizer: final_fit.featurizer, linear: final_fit.linear, memory: final_fit.memory };
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Vec<Example> {
        let topics = [("社保", ["养老保险缴费", "社保卡补办", "失业保险金申领", "医保报销比例"]), ("交通", ["公交线路调整", "地铁站出口", "道路拥堵严重", "停车收费太贵"])];
        let mut out = Vec::new();
        for (label, phrases) in topics {
            for (i, p) in phrases.iter().enumerate() {
                for j in 0..10 {
                    out.push(Example { id: format!("{label}-{i}-{j}"), text: format!("请问{p}的问题{j}"), label: label.into() });
                }
            }
        }
        out
    }

    #[test]
    fn trains_saves_loads_and_predicts_the_same() {
        let ex = toy();
        let cfg = TrainConfig { ngram: NgramConfig { buckets: 4096, ..Default::default() }, ..Default::default() };
        let embs: Vec<Vec<f32>> = ex.iter().map(|e| if e.label == "社保" { vec![1.0, 0.1] } else { vec![0.1, 1.0] }).collect();
        let (model, report) = train(&ex, 0, "sha", Some(&embs), Some("toy"), &cfg).unwrap();
        assert_eq!(report.classes, 2);
        assert!(report.model.accuracy > 0.95, "{}", report.model.accuracy);
        let p = model.predict("社保卡怎么补办", Some(&[1.0, 0.0]));
        assert_eq!(p.label.as_deref(), Some("社保"));
        let dir = tempfile::tempdir().unwrap();
        model.save(dir.path()).unwrap();
        let loaded = ClassifierModel::load(dir.path()).unwrap();
        let q = loaded.predict("社保卡怎么补办", Some(&[1.0, 0.0]));
        assert_eq!(q.confidence, p.confidence);
        assert_eq!(q.neighbours.len(), p.neighbours.len());
    }

    #[test]
    fn thresholds_reach_their_precision_on_the_rows_they_keep() {
        // Confidence-sorted: right, right, wrong, right, wrong, wrong.
        let rows = [(0.95, true), (0.9, true), (0.8, false), (0.7, true), (0.6, false), (0.5, false)];
        let p = threshold_for_precision(&rows, 0.75);
        assert_eq!((p.threshold, p.coverage), (0.7, 4.0 / 6.0), "3 of the top 4 are right");
        let p = threshold_for_precision(&rows, 0.99);
        assert_eq!(p.threshold, 0.9, "the top two are all right");
        let p = threshold_for_precision(&rows, 0.5);
        assert_eq!((p.threshold, p.coverage), (0.0, 1.0), "half of all rows are right: keep every row");
        // Tied confidences are kept or dropped together: the first of two 0.6 rows is right, the
        // second wrong, so 0.6 cannot reach 0.85 (4 of 5) although the prefix of 4 rows would.
        let tied = [(0.95, true), (0.9, true), (0.7, true), (0.6, true), (0.6, false)];
        assert_eq!(threshold_for_precision(&tied, 0.85).threshold, 0.7);
        let none = threshold_for_precision(&[(0.9, false)], 0.9);
        assert_eq!((none.threshold, none.coverage), (1.0, 0.0));
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("d.jsonl");
        std::fs::write(&f, "{\"text\":\"a\",\"label\":\"x\"}\n{oops\n").unwrap();
        let err = load_examples(&f, &["text".into()], "label", None, &|l| Some(l.to_string())).unwrap_err();
        assert!(err.to_string().contains("d.jsonl:2"), "{err}");
        assert!(err.is_user_error());
        std::fs::write(&f, "{\"text\":\"a\",\"label\":null}\n{\"text\":\"b\",\"label\":\"y\"}\n").unwrap();
        let (ex, skipped, _) = load_examples(&f, &["text".into()], "label", None, &|l| Some(l.to_string())).unwrap();
        assert_eq!((ex.len(), skipped), (1, 1));
        let err = train(&ex, 0, "", None, None, &TrainConfig::default()).unwrap_err();
        assert!(err.to_string().contains("two labels"));
    }
}
