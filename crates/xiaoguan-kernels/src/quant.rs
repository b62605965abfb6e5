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

/// `f32::round` (half away from zero, as candle's Q8_0) written so that it vectorizes:
/// `round` itself is a libm call per value on x86-64-v3.
#[inline(always)]
fn round_away(v: f32) -> f32 {
    let t = v.trunc();
    if (v - t).abs() >= 0.5 {
        t + 1f32.copysign(v)
    } else {
        t
    }
}

fn quantize_row(x: &[f32], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::Avx2.is_supported() {
        // SAFETY: AVX2/FMA/F16C checked; slices hold whole blocks.
        unsafe { quantize_row_avx2(x, out) };
        return;
    }
    quantize_row_scalar(x, out);
}

/// 32 values per block in four 8-wide vectors; same arithmetic as the scalar path (d = amax/127,
/// id = 1/d, q = round-half-away(x·id)).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_row_avx2(x: &[f32], out: &mut [u8]) {
    use std::arch::x86_64::*;
    let nb = x.len() / QK;
    assert!(out.len() >= nb * ABLK);
    unsafe {
        let sign = _mm256_set1_ps(-0.0);
        let half = _mm256_set1_ps(0.5);
        let one = _mm256_set1_ps(1.0);
        for b in 0..nb {
            let xp = x.as_ptr().add(b * QK);
            let v = [_mm256_loadu_ps(xp), _mm256_loadu_ps(xp.add(8)), _mm256_loadu_ps(xp.add(16)), _mm256_loadu_ps(xp.add(24))];
            let mut m = _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1]));
            m = _mm256_max_ps(m, _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
            let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            let m1 = _mm_max_ss(m2, _mm_movehdup_ps(m2));
            let amax = _mm_cvtss_f32(m1);
            let d = amax / 127.0;
            let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
            let mut qi = [_mm256_setzero_si256(); 4];
            for i in 0..4 {
                let y = _mm256_mul_ps(v[i], id);
                let t = _mm256_round_ps(y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
                let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(y, t));
                let away = _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ), _mm256_or_ps(one, _mm256_and_ps(sign, y)));
                qi[i] = _mm256_cvttps_epi32(_mm256_add_ps(t, away));
            }
            let s = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
            let s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            let s2 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0b01_00_11_10));
            let s1 = _mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0b10_11_00_01));
            let sum = _mm_cvtsi128_si32(s1);
            // i32 -> i16 -> i8 packs work per 128-bit lane; the permute restores the order.
            let p16a = _mm256_packs_epi32(qi[0], qi[1]);
            let p16b = _mm256_packs_epi32(qi[2], qi[3]);
            let p8 = _mm256_packs_epi16(p16a, p16b);
            let q = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            let op = out.as_mut_ptr().add(b * ABLK);
            let dh = f16::from_f32(d).to_f32();
            (op as *mut f32).write_unaligned(dh);
            (op.add(4) as *mut i32).write_unaligned(-128 * sum);
            _mm256_storeu_si256(op.add(8) as *mut __m256i, q);
        }
    }
}

fn quantize_row_scalar(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(ABLK)) {
        let xb: &[f32; QK] = xb.try_into().expect("32 values");
        let mut amax = 0f32;
        for v in xb {
            amax = amax.max(v.abs());
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut q = [0i8; QK];
        for (o, v) in q.iter_mut().zip(xb) {
            *o = round_away(v * id) as i8;
        }
        let sum: i32 = q.iter().map(|&v| v as i32).sum();
        for (o, &v) in ob[8..].iter_mut().zip(&q) {
            *o = v as u8;
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
