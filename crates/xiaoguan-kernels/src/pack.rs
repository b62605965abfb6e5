//! Weights repacked once, at load, into row-interleaved Q8_0 blocks.
//!
//! A weight matrix W is `n` output rows × `k` inputs (ggml / `Linear` orientation: y = x·Wᵀ).
//! Rows are grouped by `nr` (8, or 16 for AVX-512). For group g and 32-wide block b the packed
//! block holds 8 "steps" of 4 consecutive k; within a step the `nr` rows follow each other,
//! 4 bytes each:
//!
//! ```text
//! qs[((g*nb + b)*8 + t)*nr*4 + j*4 + l] = q(row g*nr + j, k = 32*b + 4*t + l)     (+128 if biased)
//! scales[(g*nb + b)*nr + j]            = f16 scale of (row g*nr + j, block b)
//! ```
//!
//! so one 256-bit (512-bit) load gives 4 k of 8 (16) rows, and `vpdpbusd` against an activation
//! dword broadcast adds 4 products into each row's lane: no horizontal sums in the inner loop.
//! Rows past `n` are zero with scale 0. Q4_0 repacks exactly (its values −8..7 keep their scale);
//! Q4_K, Q6_K, F16 and F32 are dequantized and requantized to Q8_0 (amax/127 per 32 values, as
//! ggml does), an error of at most half a Q8 step per weight.

use crate::isa::Isa;
use crate::QK;
use half::f16;
use rayon::prelude::*;

/// Source encodings `PackedMatrix::from_ggml` understands (ggml block layouts, little endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlFormat {
    F32,
    F16,
    /// 34 bytes / 32: f16 d, 32 × i8.
    Q8_0,
    /// 18 bytes / 32: f16 d, 16 bytes of nibbles (low = j, high = j + 16), value (q − 8)·d.
    Q4_0,
    /// 144 bytes / 256: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles.
    Q4K,
    /// 210 bytes / 256: 128 ql, 64 qh, 16 i8 scales, f16 d.
    Q6K,
}

impl GgmlFormat {
    /// (values per block, bytes per block)
    pub fn block(self) -> (usize, usize) {
        match self {
            GgmlFormat::F32 => (1, 4),
            GgmlFormat::F16 => (1, 2),
            GgmlFormat::Q8_0 => (32, 34),
            GgmlFormat::Q4_0 => (32, 18),
            GgmlFormat::Q4K => (256, 144),
            GgmlFormat::Q6K => (256, 210),
        }
    }

    pub fn row_bytes(self, k: usize) -> usize {
        let (v, b) = self.block();
        k / v * b
    }
}

#[derive(Debug, Clone)]
pub struct PackedMatrix {
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) nb: usize,
    pub(crate) nr: usize,
    pub(crate) isa: Isa,
    pub(crate) biased: bool,
    pub(crate) qs: Vec<u8>,
    pub(crate) scales: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackError(pub String);

impl std::fmt::Display for PackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for PackError {}

fn rd_f16(b: &[u8]) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
}

/// Q8_0 of 32 values the way ggml/candle do it: d = amax/127 stored as f16, q = round(x/d).
pub(crate) fn quantize_block_q8(x: &[f32], q: &mut [i8; 32]) -> u16 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (o, v) in q.iter_mut().zip(x) {
        *o = (v * id).round() as i8;
    }
    f16::from_f32(d).to_bits()
}

fn get_scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Dequantize one row of a k-quant or float format into `y` (len k).
pub fn dequantize_row(format: GgmlFormat, src: &[u8], y: &mut [f32]) {
    match format {
        GgmlFormat::F32 => {
            for (o, c) in y.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlFormat::F16 => {
            for (o, c) in y.iter_mut().zip(src.chunks_exact(2)) {
                *o = rd_f16(c);
            }
        }
        GgmlFormat::Q8_0 => {
            for (yb, b) in y.chunks_exact_mut(32).zip(src.chunks_exact(34)) {
                let d = rd_f16(b);
                for (o, &q) in yb.iter_mut().zip(&b[2..]) {
                    *o = d * (q as i8) as f32;
                }
            }
        }
        GgmlFormat::Q4_0 => {
            for (yb, b) in y.chunks_exact_mut(32).zip(src.chunks_exact(18)) {
                let d = rd_f16(b);
                for j in 0..16 {
                    yb[j] = d * ((b[2 + j] & 0xF) as i32 - 8) as f32;
                    yb[j + 16] = d * ((b[2 + j] >> 4) as i32 - 8) as f32;
                }
            }
        }
        GgmlFormat::Q4K => {
            for (yb, b) in y.chunks_exact_mut(256).zip(src.chunks_exact(144)) {
                let d = rd_f16(&b[0..2]);
                let dmin = rd_f16(&b[2..4]);
                let scales = &b[4..16];
                let qs = &b[16..144];
                for (i, j) in (0..256).step_by(64).enumerate() {
                    let q = &qs[i * 32..i * 32 + 32];
                    let (sc1, m1) = get_scale_min_k4(2 * i, scales);
                    let (sc2, m2) = get_scale_min_k4(2 * i + 1, scales);
                    let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
                    let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
                    for l in 0..32 {
                        yb[j + l] = d1 * (q[l] & 0xF) as f32 - m1;
                        yb[j + 32 + l] = d2 * (q[l] >> 4) as f32 - m2;
                    }
                }
            }
        }
        GgmlFormat::Q6K => {
            for (yb, b) in y.chunks_exact_mut(256).zip(src.chunks_exact(210)) {
                let d = rd_f16(&b[208..210]);
                for half in 0..2 {
                    let ql = &b[half * 64..half * 64 + 64];
                    let qh = &b[128 + half * 32..128 + half * 32 + 32];
                    let sc = &b[192 + half * 8..192 + half * 8 + 8];
                    let y = &mut yb[half * 128..half * 128 + 128];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                        y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                        y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                        y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                    }
                }
            }
        }
    }
}

impl PackedMatrix {
    /// Output rows (columns of the result).
    pub fn n(&self) -> usize {
        self.n
    }
    /// Inputs (the reduced dimension).
    pub fn k(&self) -> usize {
        self.k
    }
    /// The path this matrix was packed for (its layout); `matmul` runs it.
    pub fn isa(&self) -> Isa {
        self.isa
    }
    /// Bytes held (quants + scales).
    pub fn bytes(&self) -> usize {
        self.qs.len() + self.scales.len() * 2
    }

    /// Pack from a ggml-layout buffer (`n` rows of `k`, row-major) for `isa`
    /// (`Isa::best()` normally; a path the CPU lacks is refused).
    pub fn from_ggml(format: GgmlFormat, n: usize, k: usize, data: &[u8], isa: Isa) -> Result<Self, PackError> {
        if !isa.is_supported() {
            return Err(PackError(format!("the {isa} path is not available on this CPU")));
        }
        let (vals, _) = format.block();
        if k == 0 || n == 0 || k % QK != 0 || k % vals != 0 {
            return Err(PackError(format!("{n}x{k}: k must be a positive multiple of 32 and of the {format:?} block ({vals})")));
        }
        let rb = format.row_bytes(k);
        if data.len() != n * rb {
            return Err(PackError(format!("{format:?} {n}x{k} needs {} bytes, got {}", n * rb, data.len())));
        }
        let nb = k / QK;
        let nr = isa.nr();
        let biased = isa.biased();
        let groups = n.div_ceil(nr);
        let gq = nb * nr * QK;
        let mut qs = vec![if biased { 0x80u8 } else { 0 }; groups * gq];
        let mut scales = vec![0u16; groups * nb * nr];
        qs.par_chunks_mut(gq).zip(scales.par_chunks_mut(nb * nr)).enumerate().for_each(|(g, (gqs, gsc))| {
            let mut row_f = vec![0f32; k];
            for j in 0..nr {
                let r = g * nr + j;
                if r >= n {
                    break;
                }
                let src = &data[r * rb..(r + 1) * rb];
                let mut put = |b: usize, d: u16, q: &[i8]| {
                    gsc[b * nr + j] = d;
                    for t in 0..8 {
                        for l in 0..4 {
                            let v = q[4 * t + l];
                            gqs[(b * 8 + t) * nr * 4 + j * 4 + l] = if biased { (v as i32 + 128) as u8 } else { v as u8 };
                        }
                    }
                };
                match format {
                    GgmlFormat::Q8_0 => {
                        for b in 0..nb {
                            let blk = &src[b * 34..b * 34 + 34];
                            let q: Vec<i8> = blk[2..].iter().map(|&x| x as i8).collect();
                            put(b, u16::from_le_bytes([blk[0], blk[1]]), &q);
                        }
                    }
                    GgmlFormat::Q4_0 => {
                        for b in 0..nb {
                            let blk = &src[b * 18..b * 18 + 18];
                            let mut q = [0i8; 32];
                            for i in 0..16 {
                                q[i] = (blk[2 + i] & 0xF) as i8 - 8;
                                q[i + 16] = (blk[2 + i] >> 4) as i8 - 8;
                            }
                            put(b, u16::from_le_bytes([blk[0], blk[1]]), &q);
                        }
                    }
                    _ => {
                        dequantize_row(format, src, &mut row_f);
                        let mut q = [0i8; 32];
                        for b in 0..nb {
                            let d = quantize_block_q8(&row_f[b * QK..(b + 1) * QK], &mut q);
                            put(b, d, &q);
                        }
                    }
                }
            }
        });
        Ok(PackedMatrix { n, k, nb, nr, isa, biased, qs, scales })
    }

    /// Quantize an f32 matrix (`n` rows of `k`) to Q8_0 and pack it.
    pub fn from_f32(n: usize, k: usize, w: &[f32], isa: Isa) -> Result<Self, PackError> {
        let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::from_ggml(GgmlFormat::F32, n, k, &bytes, isa)
    }

    /// The weights this matrix computes with, as f32 (`n` × `k`): for references and checks.
    pub fn dequantize(&self) -> Vec<f32> {
        let (n, k, nb, nr) = (self.n, self.k, self.nb, self.nr);
        let mut out = vec![0f32; n * k];
        for r in 0..n {
            let (g, j) = (r / nr, r % nr);
            for b in 0..nb {
                let d = f16::from_bits(self.scales[(g * nb + b) * nr + j]).to_f32();
                for t in 0..8 {
                    for l in 0..4 {
                        let raw = self.qs[((g * nb + b) * 8 + t) * nr * 4 + j * 4 + l];
                        let q = if self.biased { raw as i32 - 128 } else { raw as i8 as i32 };
                        out[r * k + b * QK + 4 * t + l] = d * q as f32;
                    }
                }
            }
        }
        out
    }
}
