//! A kNN memory of labelled examples (embedding, label, id, masked snippet): votes for a label and
//! shows the agent the similar past tickets behind a decision.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryItem {
    pub id: String,
    pub label: usize,
    pub snippet: String,
}

#[derive(Debug, Clone, Default)]
pub struct KnnMemory {
    pub dim: usize,
    /// Row-major, unit-length embeddings.
    pub vectors: Vec<f32>,
    pub items: Vec<MemoryItem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Neighbour {
    pub id: String,
    pub label: String,
    pub similarity: f32,
    pub snippet: String,
}

impl KnnMemory {
    pub fn push(&mut self, v: &[f32], item: MemoryItem) {
        if self.dim == 0 {
            self.dim = v.len();
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        self.vectors.extend(v.iter().map(|x| x / norm));
        self.items.push(item);
    }

    /// The `k` most similar items, best first.
    pub fn nearest(&self, q: &[f32], k: usize, skip_id: Option<&str>) -> Vec<(usize, f32)> {
        if self.dim == 0 || q.len() != self.dim {
            return Vec::new();
        }
        let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        let mut scored: Vec<(usize, f32)> = self
            .vectors
            .chunks_exact(self.dim)
            .enumerate()
            .filter(|(i, _)| skip_id.is_none_or(|s| self.items[*i].id != s))
            .map(|(i, v)| (i, v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>() / norm))
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Vec::new();
        }
        scored.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
        scored.truncate(k);
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored
    }

    /// A label distribution from the neighbours' similarity-weighted votes (softmax with `tau`).
    pub fn vote(&self, neighbours: &[(usize, f32)], classes: usize, tau: f32) -> Vec<f32> {
        let mut p = vec![0.0f32; classes];
        if neighbours.is_empty() {
            return vec![1.0 / classes as f32; classes];
        }
        let top = neighbours[0].1;
        for &(i, s) in neighbours {
            p[self.items[i].label] += ((s - top) / tau).exp();
        }
        let sum: f32 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= sum);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_and_vote() {
        let mut m = KnnMemory::default();
        m.push(&[1.0, 0.0], MemoryItem { id: "a".into(), label: 0, snippet: String::new() });
        m.push(&[0.9, 0.1], MemoryItem { id: "b".into(), label: 0, snippet: String::new() });
        m.push(&[0.0, 1.0], MemoryItem { id: "c".into(), label: 1, snippet: String::new() });
        let n = m.nearest(&[1.0, 0.05], 2, None);
        assert_eq!(n.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0, 1]);
        let p = m.vote(&n, 2, 0.05);
        assert!((p[0] - 1.0).abs() < 1e-6);
        let skipped = m.nearest(&[1.0, 0.0], 1, Some("a"));
        assert_eq!(skipped[0].0, 1);
        assert!(m.nearest(&[1.0], 1, None).is_empty(), "wrong dimension gives nothing");
    }
}
