//! Activations quantized once per matmul (shared by every matrix that reads the same input,
//! e.g. Q/K/V or gate/up).
//!
//! Row-major, `k/32` blocks of 40 bytes per row:
//! `[d: f32][bias: i32 = −128·Σq][q: 32 × i8]`. `d` is amax/127 rounded through f16 and
//! `q = round(x/d)`, exactly candle's/ggml's Q8_0 of the activations, so the integer block dots
//! match candle's; `bias` corrects the +128 of u8-biased weights on VNNI paths.

use crate::QK;
use half::f16;
use rayon::prelude::*;

pub(crate) const ABLK: usize = 40;

#[derive(Debug, Clone)]
pub struct QuantizedRows {
    pub(crate) m: usize,
    pub(crate) k: usize,
    pub(crate) data: Vec<u8>,
}

fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(ABLK)) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (o, v) in ob[8..].iter_mut().zip(xb) {
            let q = (v * id).round() as i8;
            sum += q as i32;
            *o = q as u8;
        }
        let d = f16::from_f32(d).to_f32();
        ob[0..4].copy_from_slice(&d.to_le_bytes());
        ob[4..8].copy_from_slice(&(-128 * sum).to_le_bytes());
    }
}

impl QuantizedRows {
    /// Quantize `m` rows of `k` (row-major f32). Rows are split over the thread pool when many.
    pub fn quantize(x: &[f32], m: usize, k: usize) -> Self {
        assert!(k % QK == 0 && k > 0, "k = {k} must be a positive multiple of 32");
        assert_eq!(x.len(), m * k, "x must hold m*k values");
        let rb = k / QK * ABLK;
        let mut data = vec![0u8; m * rb];
        if m >= 16 {
            data.par_chunks_mut(rb).zip(x.par_chunks(k)).with_min_len(4).for_each(|(o, xr)| quantize_row(xr, o));
        } else {
            for (o, xr) in data.chunks_mut(rb).zip(x.chunks(k)) {
                quantize_row(xr, o);
            }
        }
        QuantizedRows { m, k, data }
    }

    pub fn m(&self) -> usize {
        self.m
    }
    pub fn k(&self) -> usize {
        self.k
    }

    pub(crate) fn row_bytes(&self) -> usize {
        self.k / QK * ABLK
    }

    /// The activations the kernels multiply, as f32 (`m` × `k`): for references and checks.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.m * self.k);
        for b in self.data.chunks_exact(ABLK) {
            let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            out.extend(b[8..].iter().map(|&q| d * (q as i8) as f32));
        }
        out
    }

    /// Per-(row, block) scale d: the activation rounding error is at most d/2 per value.
    pub fn scale(&self, row: usize, block: usize) -> f32 {
        let o = row * self.row_bytes() + block * ABLK;
        let b = &self.data[o..o + 4];
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}
