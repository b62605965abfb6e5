//! Character 1–3-gram TF-IDF features, hashed into a fixed number of buckets (no vocabulary to
//! store; Chinese needs no word segmentation for this). Sublinear tf, smoothed idf, L2 norm.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A sparse feature vector: (bucket, value) sorted by bucket.
pub type Sparse = Vec<(u32, f32)>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NgramConfig {
    pub buckets: u32,
    pub min_n: usize,
    pub max_n: usize,
    /// Only the first `max_chars` characters count (long tickets repeat themselves).
    pub max_chars: usize,
}

impl Default for NgramConfig {
    fn default() -> Self {
        Self { buckets: 1 << 18, min_n: 1, max_n: 3, max_chars: 600 }
    }
}

/// Text as the featurizer sees it: normalized, masks (`***`) and whitespace removed, ASCII lower-cased.
pub fn prepare(text: &str, max_chars: usize) -> Vec<char> {
    xiaoguan_text::normalize(text)
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '*')
        .map(|c| c.to_ascii_lowercase())
        .take(max_chars)
        .collect()
}

/// FNV-1a: stable across platforms and Rust versions, so saved models and splits keep their meaning.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn hash_ngram(chars: &[char]) -> u64 {
    fnv1a(chars.iter().flat_map(|c| (*c as u32).to_le_bytes())) ^ chars.len() as u64
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TfidfFeaturizer {
    pub config: NgramConfig,
    #[serde(skip)]
    pub idf: Vec<f32>,
}

impl TfidfFeaturizer {
    fn counts(&self, text: &str) -> HashMap<u32, f32> {
        let chars = prepare(text, self.config.max_chars);
        let mut counts: HashMap<u32, f32> = HashMap::new();
        for n in self.config.min_n..=self.config.max_n {
            for w in chars.windows(n) {
                *counts.entry((hash_ngram(w) % self.config.buckets as u64) as u32).or_default() += 1.0;
            }
        }
        counts
    }

    /// Learn idf from a corpus.
    pub fn fit<'a>(config: NgramConfig, texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut f = Self { idf: Vec::new(), config };
        let mut df = vec![0u32; f.config.buckets as usize];
        let mut n = 0usize;
        for t in texts {
            n += 1;
            for b in f.counts(t).keys() {
                df[*b as usize] += 1;
            }
        }
        f.idf = df.iter().map(|&d| ((1.0 + n as f32) / (1.0 + d as f32)).ln() + 1.0).collect();
        f
    }

    pub fn transform(&self, text: &str) -> Sparse {
        let mut v: Sparse = self
            .counts(text)
            .into_iter()
            .map(|(b, tf)| (b, (1.0 + tf.ln()) * self.idf.get(b as usize).copied().unwrap_or(1.0)))
            .collect();
        // Sorted before summing: hash-map order would change the norm's last bits run to run.
        v.sort_by_key(|(b, _)| *b);
        let norm = v.iter().map(|(_, x)| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            for (_, x) in &mut v {
                *x /= norm;
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_unit_length_and_stable() {
        let f = TfidfFeaturizer::fit(NgramConfig { buckets: 1024, ..Default::default() }, ["养老保险怎么交", "公积金提取"]);
        let v = f.transform("养老保险　怎么交１次");
        let norm: f32 = v.iter().map(|(_, x)| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(v, f.transform("养老保险怎么交1次"), "normalization makes full-width and spacing irrelevant");
        assert!(f.transform("").is_empty());
    }
}
