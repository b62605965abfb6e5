//! Compute-only int8 matrix kernels for local inference (no candle, no model types).
//!
//! * `PackedMatrix`: weights (`n` outputs × `k` inputs, ggml orientation) repacked once into
//!   row-interleaved Q8_0 blocks for the chosen `Isa` (Q8_0 / Q4_0 exactly, Q4_K / Q6_K / F16 /
//!   F32 requantized to Q8_0).
//! * `QuantizedRows`: activations quantized once per matmul (Q8 per 32 values).
//! * `matmul*`: `out[m × n] = x[m × k] · Wᵀ`. A tiled GEMM (`MR` rows × `nr` columns per
//!   micro-kernel, so each weight block is loaded once for `MR` rows) with row and column
//!   blocking for the caches; one row (decode) runs the same kernel at `MR = 1`, a GEMV bound by
//!   weight bandwidth. Work is split over output columns on rayon's global pool (one pool,
//!   sized to the cores; shared with candle, which uses the same pool).
//!
//! ```
//! use xiaoguan_kernels::{Isa, PackedMatrix, matmul};
//! let (n, k, m) = (3, 64, 2);
//! let w: Vec<f32> = (0..n * k).map(|i| (i % 7) as f32 - 3.0).collect();
//! let x: Vec<f32> = (0..m * k).map(|i| (i % 5) as f32 * 0.25).collect();
//! let packed = PackedMatrix::from_f32(n, k, &w, Isa::best()).unwrap();
//! let mut y = vec![0f32; m * n];
//! matmul(&packed, &x, m, &mut y);
//! ```

mod isa;
mod kernels;
mod pack;
mod quant;

pub use isa::{isa_report, Isa, ALL_ISAS};
pub use pack::{dequantize_row, GgmlFormat, PackError, PackedMatrix};
pub use quant::QuantizedRows;

use rayon::prelude::*;

/// Values per quantization block.
pub const QK: usize = 32;

/// `out[m × n] = x[m × k] · Wᵀ` on the path `w` was packed for.
pub fn matmul(w: &PackedMatrix, x: &[f32], m: usize, out: &mut [f32]) {
    let a = QuantizedRows::quantize(x, m, w.k);
    matmul_quantized(w, &a, out);
}

/// As `matmul`, with activations already quantized (share them between matrices that read the
/// same input).
pub fn matmul_quantized(w: &PackedMatrix, a: &QuantizedRows, out: &mut [f32]) {
    matmul_quantized_isa(w, a, out, w.isa);
}

/// As `matmul_quantized` with the kernel path forced: `Isa::Scalar` runs on any packing;
/// any other path must be the one `w` was packed for.
pub fn matmul_quantized_isa(w: &PackedMatrix, a: &QuantizedRows, out: &mut [f32], isa: Isa) {
    assert_eq!(a.k, w.k, "activations have k = {}, weights k = {}", a.k, w.k);
    assert_eq!(out.len(), a.m * w.n, "out must hold m*n values");
    assert!(isa == Isa::Scalar || isa == w.isa, "a matrix packed for {} cannot run the {isa} path", w.isa);
    let m = a.m;
    if m == 0 {
        return;
    }
    let groups = w.n.div_ceil(w.nr);
    let threads = rayon::current_num_threads();
    let macs = m * w.n * w.k;
    let tasks = if threads <= 1 || macs < (1 << 18) { 1 } else { (threads * 4).min(groups) };
    let ptr = OutPtr(out.as_mut_ptr());
    if tasks == 1 {
        // SAFETY: `out` holds m*n values, the range covers every group once.
        unsafe { run_groups(isa, w, a, 0, groups, ptr) };
    } else {
        (0..tasks).into_par_iter().for_each(|t| {
            let (g0, g1) = (groups * t / tasks, groups * (t + 1) / tasks);
            // SAFETY: tasks write disjoint column ranges of `out`.
            unsafe { run_groups(isa, w, a, g0, g1, ptr) };
        });
    }
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// Rows per micro-kernel for each path (registers: MR i32 + MR f32 accumulators + operands).
fn mr_of(isa: Isa) -> usize {
    match isa {
        Isa::Scalar => 4,
        Isa::Avx2 | Isa::AvxVnni => 4,
        Isa::Avx512Vnni => 8,
    }
}

/// Column groups `[g0, g1)` for all rows. Loops, outermost first: blocks of rows whose
/// activations fit in L2; chunks of groups; chunks of k whose weights (per group) stay in L1
/// (partial sums accumulate in `out`); row tiles of `MR`; groups of the chunk.
unsafe fn run_groups(isa: Isa, w: &PackedMatrix, a: &QuantizedRows, g0: usize, g1: usize, out: OutPtr) {
    let (n, nb, nr) = (w.n, w.nb, w.nr);
    let lda = a.row_bytes();
    let mr = mr_of(isa);
    let gbytes = nb * nr * QK;
    // k chunks of at most 24 KiB of one group's weights, balanced.
    let kb_max = (24 * 1024 / (nr * QK)).max(1);
    let kchunks = nb.div_ceil(kb_max);
    let kb = nb.div_ceil(kchunks);
    let gchunk = (32 * 1024 / (kb * nr * QK)).max(1);
    let rowblk = ((1usize << 20) / lda).max(mr) / mr * mr;
    let m = a.m;
    let mut r0 = 0;
    while r0 < m {
        let r1 = (r0 + rowblk).min(m);
        let mut c0 = g0;
        while c0 < g1 {
            let c1 = (c0 + gchunk).min(g1);
            let mut b0 = 0;
            while b0 < nb {
                let b1 = (b0 + kb).min(nb);
                let mut r = r0;
                while r < r1 {
                    let rows = mr.min(r1 - r);
                    for g in c0..c1 {
                        let ncols = nr.min(n - g * nr);
                        unsafe {
                            let wq = w.qs.as_ptr().add(g * gbytes + b0 * nr * QK);
                            let ws = w.scales.as_ptr().add((g * nb + b0) * nr);
                            let ap = a.data.as_ptr().add(r * lda + b0 * quant::ABLK);
                            let op = out.0.add(r * n + g * nr);
                            tile(isa, rows, w, wq, ws, ap, lda, op, n, ncols, b1 - b0, b0 > 0);
                        }
                    }
                    r += rows;
                }
                b0 = b1;
            }
            c0 = c1;
        }
        r0 = r1;
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile(
    isa: Isa,
    rows: usize,
    w: &PackedMatrix,
    wq: *const u8,
    ws: *const u16,
    ap: *const u8,
    lda: usize,
    op: *mut f32,
    ldo: usize,
    ncols: usize,
    nb: usize,
    acc: bool,
) {
    unsafe {
        match isa {
            Isa::Scalar => kernels::tile_scalar(rows, w.nr, w.biased, wq, ws, nb, ap, lda, op, ldo, ncols, acc),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                use kernels::x86::tile_avx2 as k;
                match rows {
                    4 => k::<4>(wq, ws, nb, ap, lda, op, ldo, ncols, acc),
                    3 => k::<3>(wq, ws, nb, ap, lda, op, ldo, ncols, acc),
                    2 => k::<2>(wq, ws, nb, ap, lda, op, ldo, ncols, acc),
                    _ => k::<1>(wq, ws, nb, ap, lda, op, ldo, ncols, acc),
                }
            }
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => {
                use kernels::x86::tile_avxvnni as k;
                match rows {
                    4 => k::<4>(wq, ws, nb, ap, lda, op, ldo, ncols, acc),
                    3 => k::<3>(wq, ws, nb, ap, lda, op, ldo, ncols, acc),
                    2 => k::<2>(wq, ws, nb, ap, lda, op, ldo, ncols, acc),
                    _ => k::<1>(wq, ws, nb, ap, lda, op, ldo, ncols, acc),
                }
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                use kernels::x86::tile_avx512vnni as k;
                match rows {
                    8 => k::<8>(wq, ws, nb, ap, lda, op, ldo, ncols, acc),
                    7 => k::<7>(wq, ws, nb, ap, lda, op, ldo, ncols, acc),
                    6 => k::<6>(wq, ws, nb, ap, lda, op, ldo, ncols, acc),
                    5 => k::<5>(wq, ws, nb, ap, lda, op, ldo, ncols, acc),
                    4 => k::<4>(wq, ws, nb, ap, lda, op, ldo, ncols, acc),
                    3 => k::<3>(wq, ws, nb, ap, lda, op, ldo, ncols, acc),
                    2 => k::<2>(wq, ws, nb, ap, lda, op, ldo, ncols, acc),
                    _ => k::<1>(wq, ws, nb, ap, lda, op, ldo, ncols, acc),
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("only the scalar path exists off x86-64"),
        }
    }
}
