//! Micro-kernels: one tile = `MR` activation rows × one packed group of `nr` output columns,
//! over all of k. Each 32-byte (64-byte) weight load is used for all `MR` rows; per 32-block the
//! integer dot stays exact in i32 and is scaled once (d_w·d_a) into an f32 accumulator.
//!
//! Layouts: see `pack.rs` (weights) and `quant.rs` (activations, 40-byte blocks).

use crate::quant::ABLK;
use half::f16;

/// Any layout (nr, biased), any row count: the reference path and the forced fallback.
///
/// # Safety
/// Pointers must cover `mr` activation rows of `nb` blocks (stride `lda` bytes), the group's
/// `nb` blocks of weights/scales, and `mr` output rows of `ncols` (stride `ldo`).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile_scalar(
    mr: usize,
    nr: usize,
    biased: bool,
    wq: *const u8,
    ws: *const u16,
    nb: usize,
    a: *const u8,
    lda: usize,
    out: *mut f32,
    ldo: usize,
    ncols: usize,
    accumulate: bool,
) {
    unsafe {
        for r in 0..mr {
            for j in 0..ncols {
                let mut acc = if accumulate { *out.add(r * ldo + j) } else { 0f32 };
                for b in 0..nb {
                    let ab = std::slice::from_raw_parts(a.add(r * lda + b * ABLK), ABLK);
                    let da = f32::from_le_bytes([ab[0], ab[1], ab[2], ab[3]]);
                    let dw = f16::from_bits(*ws.add(b * nr + j)).to_f32();
                    let mut dot = 0i32;
                    for t in 0..8 {
                        let wp = wq.add((b * 8 + t) * nr * 4 + j * 4);
                        for l in 0..4 {
                            let raw = *wp.add(l);
                            let w = if biased { raw as i32 - 128 } else { raw as i8 as i32 };
                            dot += w * (ab[8 + 4 * t + l] as i8) as i32;
                        }
                    }
                    acc = (dot as f32).mul_add(dw * da, acc);
                }
                *out.add(r * ldo + j) = acc;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::ABLK;
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn rd_i32(p: *const u8) -> i32 {
        unsafe { (p as *const i32).read_unaligned() }
    }
    #[inline(always)]
    unsafe fn rd_f32(p: *const u8) -> f32 {
        unsafe { (p as *const f32).read_unaligned() }
    }

    #[inline(always)]
    unsafe fn load8<const MR: usize>(facc: &mut [__m256; MR], out: *const f32, ldo: usize, ncols: usize) {
        unsafe {
            for r in 0..MR {
                if ncols == 8 {
                    facc[r] = _mm256_loadu_ps(out.add(r * ldo));
                } else {
                    let mut tmp = [0f32; 8];
                    std::ptr::copy_nonoverlapping(out.add(r * ldo), tmp.as_mut_ptr(), ncols);
                    facc[r] = _mm256_loadu_ps(tmp.as_ptr());
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn store8<const MR: usize>(facc: &[__m256; MR], out: *mut f32, ldo: usize, ncols: usize) {
        unsafe {
            for r in 0..MR {
                if ncols == 8 {
                    _mm256_storeu_ps(out.add(r * ldo), facc[r]);
                } else {
                    let mut tmp = [0f32; 8];
                    _mm256_storeu_ps(tmp.as_mut_ptr(), facc[r]);
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), out.add(r * ldo), ncols);
                }
            }
        }
    }

    /// AVX2: s8 weights, |w| · sign(a, w) through `vpmaddubsw` (no saturation: 2·127·128 <
    /// 32767), pairs summed by `vpmaddwd` with ones.
    ///
    /// # Safety
    /// As `tile_scalar`, with nr = 8 and unbiased weights; the CPU must have AVX2+FMA+F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn tile_avx2<const MR: usize>(
        wq: *const u8,
        ws: *const u16,
        nb: usize,
        a: *const u8,
        lda: usize,
        out: *mut f32,
        ldo: usize,
        ncols: usize,
        accumulate: bool,
    ) {
        unsafe {
            let ones = _mm256_set1_epi16(1);
            let mut facc = [_mm256_setzero_ps(); MR];
            if accumulate {
                load8(&mut facc, out, ldo, ncols);
            }
            for b in 0..nb {
                let wb = wq.add(b * 256);
                let sc = _mm256_cvtph_ps(_mm_loadu_si128(ws.add(b * 8) as *const __m128i));
                let mut iacc = [_mm256_setzero_si256(); MR];
                for t in 0..8 {
                    let wv = _mm256_loadu_si256(wb.add(t * 32) as *const __m256i);
                    let wabs = _mm256_abs_epi8(wv);
                    for r in 0..MR {
                        let av = _mm256_set1_epi32(rd_i32(a.add(r * lda + b * ABLK + 8 + 4 * t)));
                        let sa = _mm256_sign_epi8(av, wv);
                        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, sa), ones);
                        iacc[r] = _mm256_add_epi32(iacc[r], p);
                    }
                }
                for r in 0..MR {
                    let d = _mm256_set1_ps(rd_f32(a.add(r * lda + b * ABLK)));
                    facc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[r]), _mm256_mul_ps(sc, d), facc[r]);
                }
            }
            store8(&facc, out, ldo, ncols);
        }
    }

    /// AVX-VNNI (256-bit `vpdpbusd`): u8 = w + 128 weights × s8 activations, each row's i32
    /// accumulator starting at −128·Σa (the activation block's stored bias).
    ///
    /// # Safety
    /// As `tile_scalar`, with nr = 8 and biased weights; the CPU must have AVX-VNNI.
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn tile_avxvnni<const MR: usize>(
        wq: *const u8,
        ws: *const u16,
        nb: usize,
        a: *const u8,
        lda: usize,
        out: *mut f32,
        ldo: usize,
        ncols: usize,
        accumulate: bool,
    ) {
        unsafe {
            let mut facc = [_mm256_setzero_ps(); MR];
            if accumulate {
                load8(&mut facc, out, ldo, ncols);
            }
            for b in 0..nb {
                let wb = wq.add(b * 256);
                let sc = _mm256_cvtph_ps(_mm_loadu_si128(ws.add(b * 8) as *const __m128i));
                let mut iacc = [_mm256_setzero_si256(); MR];
                for r in 0..MR {
                    iacc[r] = _mm256_set1_epi32(rd_i32(a.add(r * lda + b * ABLK + 4)));
                }
                for t in 0..8 {
                    let wv = _mm256_loadu_si256(wb.add(t * 32) as *const __m256i);
                    for r in 0..MR {
                        let av = _mm256_set1_epi32(rd_i32(a.add(r * lda + b * ABLK + 8 + 4 * t)));
                        iacc[r] = _mm256_dpbusd_avx_epi32(iacc[r], wv, av);
                    }
                }
                for r in 0..MR {
                    let d = _mm256_set1_ps(rd_f32(a.add(r * lda + b * ABLK)));
                    facc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[r]), _mm256_mul_ps(sc, d), facc[r]);
                }
            }
            store8(&facc, out, ldo, ncols);
        }
    }

    /// AVX-512 VNNI (512-bit `vpdpbusd`), 16 interleaved rows, biased weights.
    ///
    /// # Safety
    /// As `tile_scalar`, with nr = 16 and biased weights; the CPU must have AVX-512 F/BW/VL/VNNI.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn tile_avx512vnni<const MR: usize>(
        wq: *const u8,
        ws: *const u16,
        nb: usize,
        a: *const u8,
        lda: usize,
        out: *mut f32,
        ldo: usize,
        ncols: usize,
        accumulate: bool,
    ) {
        unsafe {
            let mask: __mmask16 = if ncols >= 16 { 0xFFFF } else { ((1u32 << ncols) - 1) as u16 };
            let mut facc = [_mm512_setzero_ps(); MR];
            if accumulate {
                for r in 0..MR {
                    facc[r] = _mm512_maskz_loadu_ps(mask, out.add(r * ldo));
                }
            }
            for b in 0..nb {
                let wb = wq.add(b * 512);
                let sc = _mm512_cvtph_ps(_mm256_loadu_si256(ws.add(b * 16) as *const __m256i));
                let mut iacc = [_mm512_setzero_si512(); MR];
                for r in 0..MR {
                    iacc[r] = _mm512_set1_epi32(rd_i32(a.add(r * lda + b * ABLK + 4)));
                }
                for t in 0..8 {
                    let wv = _mm512_loadu_si512(wb.add(t * 64) as *const __m512i);
                    for r in 0..MR {
                        let av = _mm512_set1_epi32(rd_i32(a.add(r * lda + b * ABLK + 8 + 4 * t)));
                        iacc[r] = _mm512_dpbusd_epi32(iacc[r], wv, av);
                    }
                }
                for r in 0..MR {
                    let d = _mm512_set1_ps(rd_f32(a.add(r * lda + b * ABLK)));
                    facc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[r]), _mm512_mul_ps(sc, d), facc[r]);
                }
            }
            for r in 0..MR {
                _mm512_mask_storeu_ps(out.add(r * ldo), mask, facc[r]);
            }
        }
    }
}
