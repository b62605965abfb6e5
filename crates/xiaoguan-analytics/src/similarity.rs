//! Similarity of two tickets' matters: the cosine of their embeddings when every ticket has
//! one, else a no-model fallback, TF-IDF over character bigrams of title + text.
//!
//! The fallback: term = character bigram inside a run of Han/ASCII word characters (the text
//! is cut at `text_chars`); the title's bigrams count `title_weight` times; tf is sublinear
//! (1 + ln tf); idf = ln((1 + N) / (1 + df)) + 1 (smoothed, so a term of a tiny corpus still
//! counts); each vector keeps its `keep_terms` heaviest terms and is L2-normalized.

use crate::text;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A sparse vector: (term, weight), sorted by term, L2-normalized.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseVec(pub Vec<(u32, f32)>);

impl SparseVec {
    pub fn dot(&self, other: &SparseVec) -> f32 {
        let (a, b) = (&self.0, &other.0);
        let (mut i, mut j, mut s) = (0, 0, 0.0f32);
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j].0) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    s += a[i].1 * b[j].1;
                    i += 1;
                    j += 1;
                }
            }
        }
        s
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TfIdfConfig {
    /// Characters of the text (after the title) that count.
    pub text_chars: usize,
    /// How many times a title bigram counts.
    pub title_weight: f32,
    /// Terms kept per vector (the heaviest).
    pub keep_terms: usize,
}

impl Default for TfIdfConfig {
    fn default() -> Self {
        Self { text_chars: 300, title_weight: 2.0, keep_terms: 96 }
    }
}

/// A fitted vocabulary with document frequencies. Fit it once on a corpus (for example the
/// store's recent tickets) and reuse it for one new ticket at assist time.
#[derive(Debug, Clone, Default)]
pub struct TfIdf {
    pub config: TfIdfConfig,
    vocab: HashMap<u64, u32>,
    df: Vec<u32>,
    docs: u32,
}

impl TfIdf {
    pub fn new(config: TfIdfConfig) -> Self {
        Self { config, ..Default::default() }
    }

    /// Count every document's distinct bigrams. `docs` yields (title, text) pairs.
    pub fn fit<'a>(config: TfIdfConfig, docs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut me = Self::new(config);
        let mut seen: Vec<u32> = Vec::new();
        for (title, body) in docs {
            seen.clear();
            me.terms(title, body, |id, _| seen.push(id), true);
            seen.sort_unstable();
            seen.dedup();
            for &id in &seen {
                me.df[id as usize] += 1;
            }
            me.docs += 1;
        }
        me
    }

    pub fn docs(&self) -> u32 {
        self.docs
    }

    fn terms(&mut self, title: &str, body: &str, mut f: impl FnMut(u32, f32), grow: bool) {
        let tw = self.config.title_weight;
        let mut push = |key: u64, w: f32, me: &mut Self| {
            let id = match me.vocab.get(&key) {
                Some(&id) => id,
                None if grow => {
                    let id = me.df.len() as u32;
                    me.vocab.insert(key, id);
                    me.df.push(0);
                    id
                }
                None => return,
            };
            f(id, w);
        };
        let mut keys = Vec::new();
        text::bigrams(title, usize::MAX, |k| keys.push(k));
        for k in keys.drain(..) {
            push(k, tw, self);
        }
        text::bigrams(body, self.config.text_chars, |k| keys.push(k));
        for k in keys {
            push(k, 1.0, self);
        }
    }

    pub fn idf(&self, df: u32) -> f32 {
        ((1.0 + self.docs as f32) / (1.0 + df as f32)).ln() + 1.0
    }

    /// The vector of one document. Bigrams the vocabulary has not seen are added with df 0
    /// only when `grow` (a fitted model used read-only passes false and ignores them — they
    /// would be rare, so they would weigh much; a small corpus would rather grow).
    pub fn vectorize(&mut self, title: &str, body: &str, grow: bool) -> SparseVec {
        let mut tf: HashMap<u32, f32> = HashMap::new();
        self.terms(title, body, |id, w| *tf.entry(id).or_insert(0.0) += w, grow);
        let mut v: Vec<(u32, f32)> = tf.into_iter().map(|(id, t)| (id, (1.0 + t.ln()) * self.idf(self.df[id as usize]))).collect();
        // Heaviest first, ties by term so the result never depends on hash order.
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(self.config.keep_terms);
        let norm = v.iter().map(|x| x.1 * x.1).sum::<f32>().sqrt();
        if norm > 0.0 {
            for x in &mut v {
                x.1 /= norm;
            }
        }
        v.sort_by_key(|x| x.0);
        SparseVec(v)
    }

    /// The bigram text of a term id (for naming and debugging).
    pub fn term_text(&self, id: u32) -> Option<String> {
        self.vocab.iter().find(|(_, &v)| v == id).map(|(k, _)| text::bigram_str(*k))
    }

    /// Document frequency of a bigram given as text.
    pub fn df_of(&self, bigram: &str) -> u32 {
        let c: Vec<char> = bigram.chars().collect();
        if c.len() != 2 {
            return 0;
        }
        self.vocab.get(&text::bigram_key(c[0], c[1])).map(|&id| self.df[id as usize]).unwrap_or(0)
    }
}

pub fn cosine_dense(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut d, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        d += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        d / (na.sqrt() * nb.sqrt())
    }
}

pub fn l2_normalized(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n == 0.0 {
        v.to_vec()
    } else {
        v.iter().map(|x| x / n).collect()
    }
}

/// Which similarity a run used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimilarityKind {
    /// Cosine of the given embeddings.
    Embedding,
    /// TF-IDF over character bigrams (no model).
    TfIdf,
}

/// A running sum of member vectors (a cluster's centroid, unnormalized) and its squared norm.
#[derive(Debug, Clone)]
pub enum Centroid {
    Dense { sum: Vec<f32>, norm2: f32 },
    Sparse { sum: HashMap<u32, f32>, norm2: f32 },
}

impl Centroid {
    pub fn dense(v: &[f32]) -> Centroid {
        Centroid::Dense { sum: v.to_vec(), norm2: v.iter().map(|x| x * x).sum() }
    }

    pub fn sparse(v: &SparseVec) -> Centroid {
        Centroid::Sparse { sum: v.0.iter().copied().collect(), norm2: v.0.iter().map(|x| x.1 * x.1).sum() }
    }

    fn dot(&self, other: &Centroid) -> f32 {
        match (self, other) {
            (Centroid::Dense { sum: a, .. }, Centroid::Dense { sum: b, .. }) => a.iter().zip(b).map(|(x, y)| x * y).sum(),
            (Centroid::Sparse { sum: a, .. }, Centroid::Sparse { sum: b, .. }) => {
                let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
                small.iter().map(|(k, x)| large.get(k).map_or(0.0, |y| x * y)).sum()
            }
            _ => 0.0,
        }
    }

    fn norm2(&self) -> f32 {
        match self {
            Centroid::Dense { norm2, .. } | Centroid::Sparse { norm2, .. } => *norm2,
        }
    }

    pub fn cosine(&self, other: &Centroid) -> f32 {
        let d = self.norm2().sqrt() * other.norm2().sqrt();
        if d == 0.0 {
            0.0
        } else {
            self.dot(other) / d
        }
    }

    /// Absorb `other` (its sum is added to this one).
    pub fn absorb(&mut self, other: Centroid) {
        let cross = self.dot(&other);
        let add = other.norm2();
        match (self, other) {
            (Centroid::Dense { sum: a, norm2 }, Centroid::Dense { sum: b, .. }) => {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                *norm2 += add + 2.0 * cross;
            }
            (Centroid::Sparse { sum: a, norm2 }, Centroid::Sparse { sum: b, .. }) => {
                for (k, y) in b {
                    *a.entry(k).or_insert(0.0) += y;
                }
                *norm2 += add + 2.0 * cross;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(docs: &[(&str, &str)]) -> TfIdf {
        TfIdf::fit(TfIdfConfig::default(), docs.iter().copied())
    }

    #[test]
    fn same_matter_scores_above_a_different_one() {
        let docs = [
            ("小区旁搅拌站噪音扰民", "搅拌站日夜施工，噪音很大，灰尘满天"),
            ("投诉搅拌站噪音", "附近新建搅拌站，噪音扰民，粉尘污染"),
            ("小学学位不足", "孩子上学难，学位不够，请教育局解决"),
            ("物业乱收停车费", "物业强制收取停车费"),
        ];
        let mut t = fit(&docs);
        let v: Vec<SparseVec> = docs.iter().map(|(a, b)| t.vectorize(a, b, false)).collect();
        let s01 = v[0].dot(&v[1]);
        let s02 = v[0].dot(&v[2]);
        assert!(s01 > 0.3, "{s01}");
        assert!(s02 < 0.1, "{s02}");
        assert!((v[0].dot(&v[0]) - 1.0).abs() < 1e-4);
    }

    #[test]
    fn centroid_norm_tracks_the_sum() {
        let mut c = Centroid::dense(&[1.0, 0.0]);
        c.absorb(Centroid::dense(&[0.0, 1.0]));
        assert!((c.cosine(&Centroid::dense(&[1.0, 1.0])) - 1.0).abs() < 1e-5);
        assert!((c.norm2() - 2.0).abs() < 1e-5);
        let mut c = Centroid::sparse(&SparseVec(vec![(1, 1.0)]));
        c.absorb(Centroid::sparse(&SparseVec(vec![(2, 1.0)])));
        assert!((c.cosine(&Centroid::sparse(&SparseVec(vec![(1, 0.6), (2, 0.8)]))) - (1.4 / 2f32.sqrt())).abs() < 1e-5);
    }

    #[test]
    fn dense_cosine() {
        assert!((cosine_dense(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
        assert_eq!(cosine_dense(&[1.0], &[1.0, 2.0]), 0.0);
    }
}
