//! Multinomial logistic regression over sparse n-gram features plus an optional dense embedding,
//! trained with AdaGrad. Hand-written because the n-gram part is sparse (hundreds of active
//! features out of 2^18), which dense tensor libraries would turn into 26 × 262k multiplies per row.

use super::features::Sparse;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainParams {
    pub epochs: usize,
    pub learning_rate: f32,
    /// Scale of the dense embedding next to the unit-length n-gram vector.
    pub dense_scale: f32,
    /// Class weights n_total / (k · n_class) raised to this power (0 = none, 1 = fully balanced).
    pub balance: f32,
    pub seed: u64,
}

impl Default for TrainParams {
    fn default() -> Self {
        Self { epochs: 6, learning_rate: 0.3, dense_scale: 1.0, balance: 0.5, seed: 7 }
    }
}

/// Weights are feature-major (`w[feature * classes + class]`) so a sparse row touches contiguous memory.
#[derive(Debug, Clone, Default)]
pub struct LinearModel {
    pub classes: usize,
    pub sparse_dim: usize,
    pub dense_dim: usize,
    pub dense_scale: f32,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

/// One training or prediction row.
pub struct Row<'a> {
    pub sparse: &'a Sparse,
    pub dense: Option<&'a [f32]>,
}

impl LinearModel {
    pub fn logits(&self, row: &Row) -> Vec<f32> {
        let k = self.classes;
        let mut z = self.bias.clone();
        for &(f, x) in row.sparse {
            let w = &self.weights[f as usize * k..(f as usize + 1) * k];
            for c in 0..k {
                z[c] += x * w[c];
            }
        }
        if let Some(d) = row.dense.filter(|_| self.dense_dim > 0) {
            for (i, &x) in d.iter().enumerate().take(self.dense_dim) {
                let x = x * self.dense_scale;
                let w = &self.weights[(self.sparse_dim + i) * k..(self.sparse_dim + i + 1) * k];
                for c in 0..k {
                    z[c] += x * w[c];
                }
            }
        }
        z
    }

    pub fn train(rows: &[Row], labels: &[usize], classes: usize, sparse_dim: usize, dense_dim: usize, p: &TrainParams) -> Self {
        let k = classes;
        let dim = sparse_dim + dense_dim;
        let mut m = LinearModel { classes: k, sparse_dim, dense_dim, dense_scale: p.dense_scale, weights: vec![0.0; dim * k], bias: vec![0.0; k] };
        let mut g2 = vec![1e-6f32; dim * k];
        let mut b2 = vec![1e-6f32; k];
        let mut counts = vec![0usize; k];
        for &l in labels {
            counts[l] += 1;
        }
        let n = labels.len().max(1) as f32;
        let class_weight: Vec<f32> =
            counts.iter().map(|&c| if c == 0 { 0.0 } else { (n / (k as f32 * c as f32)).powf(p.balance) }).collect();
        let mut order: Vec<usize> = (0..rows.len()).collect();
        let mut state = p.seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        for _ in 0..p.epochs {
            // Fisher–Yates with a small LCG: the same seed gives the same model.
            for i in (1..order.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (state >> 33) as usize % (i + 1));
            }
            for &i in &order {
                let row = &rows[i];
                let probs = softmax(&m.logits(row), 1.0);
                let cw = class_weight[labels[i]];
                let grad: Vec<f32> = probs.iter().enumerate().map(|(c, &pc)| cw * (pc - (c == labels[i]) as u8 as f32)).collect();
                let mut update = |f: usize, x: f32, m: &mut LinearModel| {
                    for c in 0..k {
                        let g = x * grad[c];
                        let j = f * k + c;
                        g2[j] += g * g;
                        m.weights[j] -= p.learning_rate * g / g2[j].sqrt();
                    }
                };
                for &(f, x) in row.sparse {
                    update(f as usize, x, &mut m);
                }
                if let Some(d) = row.dense.filter(|_| dense_dim > 0) {
                    for (j, &x) in d.iter().enumerate().take(dense_dim) {
                        update(sparse_dim + j, x * p.dense_scale, &mut m);
                    }
                }
                for c in 0..k {
                    b2[c] += grad[c] * grad[c];
                    m.bias[c] -= p.learning_rate * grad[c] / b2[c].sqrt();
                }
            }
        }
        m
    }
}

/// Softmax with a temperature (T > 1 flattens, T < 1 sharpens).
pub fn softmax(z: &[f32], temperature: f32) -> Vec<f32> {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = z.iter().map(|&x| ((x - max) / temperature).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_problem_deterministically() {
        let a: Sparse = vec![(0, 1.0)];
        let b: Sparse = vec![(1, 1.0)];
        let rows: Vec<Row> = (0..20).map(|i| Row { sparse: if i % 2 == 0 { &a } else { &b }, dense: None }).collect();
        let labels: Vec<usize> = (0..20).map(|i| i % 2).collect();
        let m = LinearModel::train(&rows, &labels, 2, 4, 0, &TrainParams::default());
        let pa = softmax(&m.logits(&Row { sparse: &a, dense: None }), 1.0);
        assert!(pa[0] > 0.9, "{pa:?}");
        let again = LinearModel::train(&rows, &labels, 2, 4, 0, &TrainParams::default());
        assert_eq!(m.weights, again.weights);
    }

    #[test]
    fn temperature_flattens() {
        let p1 = softmax(&[2.0, 0.0], 1.0);
        let p2 = softmax(&[2.0, 0.0], 2.0);
        assert!(p2[0] < p1[0] && p2[0] > 0.5);
    }
}
