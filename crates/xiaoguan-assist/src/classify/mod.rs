//! Text classifiers for tickets and questions: hashed character n-gram TF-IDF plus the sentence
//! embedding into one logistic-regression head, blended with a kNN memory of labelled examples,
//! with a calibrated temperature and an abstain threshold. Saved as a folder of plain files.

pub mod features;
pub mod knn;
pub mod linear;
pub mod reviewed;
pub mod spec;
pub mod train;

use crate::error::{AssistError, Result};
use features::{NgramConfig, TfidfFeaturizer};
use knn::{KnnMemory, MemoryItem, Neighbour};
use linear::{softmax, LinearModel, Row};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::Path;

pub use train::{is_holdout, load_examples, train, Example, TrainConfig, TrainReport};

/// Characters of a text given to the embedder (the head of a ticket carries its topic).
pub const EMBED_CHARS: usize = 256;

/// The text the embedder sees for classification.
pub fn embedding_text(text: &str) -> String {
    features::prepare(text, EMBED_CHARS).into_iter().collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierMeta {
    pub name: String,
    pub labels: Vec<String>,
    pub ngram: NgramConfig,
    pub embedder: Option<String>,
    pub dense_dim: usize,
    pub dense_scale: f32,
    pub knn_k: usize,
    pub knn_tau: f32,
    /// Weight of the kNN vote in the blend (the rest is the linear head).
    pub knn_weight: f32,
    /// Softmax temperature of the linear head, fitted on the held-out split.
    pub temperature: f32,
    /// Below this confidence the classifier abstains (recommends human review).
    pub abstain_threshold: f32,
    /// The confidence that reaches each of `train::REVIEW_PRECISIONS` on the held-out rows
    /// (empty for heads trained before it was recorded).
    #[serde(default)]
    pub precision_thresholds: Vec<PrecisionPoint>,
    pub trained_rows: usize,
    pub data_sha256: String,
    pub report: serde_json::Value,
}

/// A point of a head's held-out precision/coverage curve.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct PrecisionPoint {
    pub precision: f32,
    /// Predictions at or above this confidence reach `precision`.
    pub threshold: f32,
    /// The share of held-out rows at or above it.
    pub coverage: f32,
}

#[derive(Debug)]
pub struct ClassifierModel {
    pub meta: ClassifierMeta,
    pub featurizer: TfidfFeaturizer,
    pub linear: LinearModel,
    pub memory: KnnMemory,
}

#[derive(Debug, Clone, Serialize)]
pub struct LabelScore {
    pub label: String,
    pub confidence: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// The best label, or None when the classifier abstains.
    pub label: Option<String>,
    pub confidence: f32,
    pub abstained: bool,
    pub ranked: Vec<LabelScore>,
    pub neighbours: Vec<Neighbour>,
}

impl ClassifierModel {
    /// The confidence at which this head's held-out predictions reach `precision`: the recorded
    /// point for that precision, else the nearest recorded one above it, else (a head without
    /// the curve, or a precision above every point) 1.0 — nothing passes unreviewed.
    pub fn threshold_for(&self, precision: f32) -> f32 {
        self.meta
            .precision_thresholds
            .iter()
            .filter(|p| p.precision + 1e-6 >= precision)
            .min_by(|a, b| a.precision.total_cmp(&b.precision))
            .map_or(1.0, |p| p.threshold)
    }

    pub fn needs_embedding(&self) -> bool {
        self.meta.dense_dim > 0
    }

    /// The label distribution; `skip_id` leaves one memory item out (for scoring its own row).
    pub fn distribution(&self, text: &str, embedding: Option<&[f32]>, skip_id: Option<&str>) -> (Vec<f32>, Vec<(usize, f32)>) {
        let sparse = self.featurizer.transform(text);
        let k = self.meta.labels.len();
        let lin = softmax(&self.linear.logits(&Row { sparse: &sparse, dense: embedding }), self.meta.temperature);
        let (neighbours, p) = match embedding {
            Some(e) if self.memory.dim > 0 => {
                let n = self.memory.nearest(e, self.meta.knn_k, skip_id);
                let vote = self.memory.vote(&n, k, self.meta.knn_tau);
                let w = self.meta.knn_weight;
                (n, lin.iter().zip(&vote).map(|(a, b)| (1.0 - w) * a + w * b).collect())
            }
            _ => (Vec::new(), lin),
        };
        (p, neighbours)
    }

    pub fn predict(&self, text: &str, embedding: Option<&[f32]>) -> Prediction {
        let (p, neighbours) = self.distribution(text, embedding, None);
        self.to_prediction(&p, &neighbours)
    }

    pub fn to_prediction(&self, p: &[f32], neighbours: &[(usize, f32)]) -> Prediction {
        let mut ranked: Vec<LabelScore> =
            p.iter().enumerate().map(|(i, &c)| LabelScore { label: self.meta.labels[i].clone(), confidence: c }).collect();
        ranked.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        let confidence = ranked.first().map(|r| r.confidence).unwrap_or(0.0);
        let abstained = confidence < self.meta.abstain_threshold;
        Prediction {
            label: (!abstained).then(|| ranked[0].label.clone()),
            confidence,
            abstained,
            ranked,
            neighbours: neighbours
                .iter()
                .take(5)
                .map(|&(i, s)| {
                    let item = &self.memory.items[i];
                    Neighbour { id: item.id.clone(), label: self.meta.labels[item.label].clone(), similarity: s, snippet: item.snippet.clone() }
                })
                .collect(),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| AssistError::io("create", dir, e))?;
        let write = |name: &str, bytes: &[u8]| -> Result<()> {
            let path = dir.join(name);
            let tmp = dir.join(format!(".{name}.tmp"));
            let mut f = std::fs::File::create(&tmp).map_err(|e| AssistError::io("create", &tmp, e))?;
            f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| AssistError::io("write", &tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| AssistError::io("rename", &path, e))
        };
        let floats = |parts: &[&[f32]]| -> Vec<u8> { parts.iter().flat_map(|p| p.iter().flat_map(|x| x.to_le_bytes())).collect() };
        write("weights.bin", &floats(&[&self.featurizer.idf, &self.linear.weights, &self.linear.bias]))?;
        write("memory.bin", &floats(&[&self.memory.vectors]))?;
        let mut items = Vec::new();
        for it in &self.memory.items {
            serde_json::to_writer(&mut items, it).map_err(|e| AssistError::Internal(e.to_string()))?;
            items.push(b'\n');
        }
        write("memory.jsonl", &items)?;
        // The description goes last: a folder with classifier.json is complete.
        let meta = serde_json::to_vec_pretty(&self.meta).map_err(|e| AssistError::Internal(e.to_string()))?;
        write("classifier.json", &meta)
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let meta_path = dir.join("classifier.json");
        let meta_bytes = std::fs::read(&meta_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => AssistError::NotFound(format!(
                "no classifier at {} (train one with `xiaoguan classify train`)",
                dir.display()
            )),
            _ => AssistError::io("read", &meta_path, e),
        })?;
        let meta: ClassifierMeta =
            serde_json::from_slice(&meta_bytes).map_err(|e| AssistError::Internal(format!("{}: {e}", meta_path.display())))?;
        let read_floats = |name: &str| -> Result<Vec<f32>> {
            let p = dir.join(name);
            let b = std::fs::read(&p).map_err(|e| AssistError::io("read", &p, e))?;
            Ok(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        };
        let k = meta.labels.len();
        let buckets = meta.ngram.buckets as usize;
        let w = read_floats("weights.bin")?;
        let expected = buckets + (buckets + meta.dense_dim) * k + k;
        if w.len() != expected {
            return Err(AssistError::Internal(format!("{}: weights.bin has {} values, expected {expected}", dir.display(), w.len())));
        }
        let featurizer = TfidfFeaturizer { config: meta.ngram.clone(), idf: w[..buckets].to_vec() };
        let linear = LinearModel {
            classes: k,
            sparse_dim: buckets,
            dense_dim: meta.dense_dim,
            dense_scale: meta.dense_scale,
            weights: w[buckets..w.len() - k].to_vec(),
            bias: w[w.len() - k..].to_vec(),
        };
        let vectors = read_floats("memory.bin")?;
        let items_path = dir.join("memory.jsonl");
        let f = std::fs::File::open(&items_path).map_err(|e| AssistError::io("open", &items_path, e))?;
        let mut items = Vec::new();
        for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| AssistError::io("read", &items_path, e))?;
            let item: MemoryItem = serde_json::from_str(&line)
                .map_err(|e| AssistError::Internal(format!("{}:{}: {e}", items_path.display(), n + 1)))?;
            items.push(item);
        }
        let dim = if items.is_empty() { 0 } else { vectors.len() / items.len() };
        Ok(Self { meta, featurizer, linear, memory: KnnMemory { dim, vectors, items } })
    }
}
