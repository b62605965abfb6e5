//! Kernel results against a straightforward f64 reference, on random shapes, for every ISA path
//! this CPU has and for the forced scalar path.
//!
//! Tolerances:
//! * Against dequantized weights × dequantized activations the kernel's only error is f32
//!   rounding: each 32-block integer dot is exact in i32, then `dot · (d_w·d_a)` is rounded and
//!   summed over nb blocks in f32. With S = Σ|w·a| that is ≤ (nb + 2)·ε·S (ε = 2⁻²³); we allow
//!   4× that.
//! * Against the unquantized activations (the number a caller wants), activation rounding adds
//!   at most d_a/2 per value: Σ_blocks d_a(b)/2 · Σ_{k∈b} |w_k|, a hard bound we check (plus the
//!   f32 term).

use xiaoguan_kernels::{dequantize_row, matmul_quantized, matmul_quantized_isa, GgmlFormat, Isa, PackedMatrix, QuantizedRows};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f() * scale).collect()
    }
    /// Values with a few outliers per row, as LLM activations have.
    fn acts(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|i| if i % 97 == 3 { self.f() * 20.0 } else { self.f() }).collect()
    }
}

const SHAPES: &[(usize, usize, usize)] = &[
    // (m, n, k): tails of MR (4/8) and NR (8/16), 1 row and many rows, k from one block up.
    (1, 1, 32),
    (1, 13, 64),
    (1, 896, 896),
    (2, 7, 32),
    (3, 8, 96),
    (4, 16, 128),
    (5, 17, 160),
    (7, 33, 224),
    (8, 15, 256),
    (9, 31, 64),
    (13, 40, 288),
    (37, 70, 320),
    (64, 129, 512),
    (100, 200, 896),
    // k chunking: > 48 blocks (16-row packing) and > 96 blocks (8-row packing).
    (6, 20, 1600),
    (3, 9, 3104),
    // Row blocking: rows of k = 4864 take 6,080 bytes, so > 172 rows span two L2 row blocks.
    (181, 24, 4864),
];

fn check(isa_pack: Isa, isa_run: Isa, m: usize, n: usize, k: usize, seed: u64) {
    let mut rng = Rng(seed | 1);
    let w = rng.vec(n * k, 0.05);
    let x = rng.acts(m * k);
    let packed = PackedMatrix::from_f32(n, k, &w, isa_pack).unwrap();
    let qa = QuantizedRows::quantize(&x, m, k);
    let mut out = vec![f32::NAN; m * n];
    if isa_run == isa_pack {
        matmul_quantized(&packed, &qa, &mut out);
    } else {
        matmul_quantized_isa(&packed, &qa, &mut out, isa_run);
    }
    let wd = packed.dequantize();
    let xd = qa.dequantize();
    let nb = k / 32;
    let eps = f32::EPSILON as f64;
    for r in 0..m {
        for c in 0..n {
            let (mut refq, mut reff, mut s, mut abound) = (0f64, 0f64, 0f64, 0f64);
            for b in 0..nb {
                let mut wabs = 0f64;
                for kk in b * 32..(b + 1) * 32 {
                    let (wv, av, xv) = (wd[c * k + kk] as f64, xd[r * k + kk] as f64, x[r * k + kk] as f64);
                    refq += wv * av;
                    reff += wv * xv;
                    s += (wv * av).abs();
                    wabs += wv.abs();
                }
                abound += qa.scale(r, b) as f64 / 2.0 * wabs;
            }
            let got = out[r * n + c] as f64;
            let tol = 4.0 * (nb as f64 + 2.0) * eps * s + 1e-30;
            assert!(
                (got - refq).abs() <= tol,
                "{isa_pack}->{isa_run} m={m} n={n} k={k} [{r},{c}]: got {got}, dequantized reference {refq}, tol {tol}"
            );
            assert!(
                (got - reff).abs() <= abound * (1.0 + 1e-6) + tol,
                "{isa_pack}->{isa_run} m={m} n={n} k={k} [{r},{c}]: got {got}, f32-activation reference {reff}, bound {abound}"
            );
        }
    }
}

#[test]
fn every_available_path_matches_the_reference() {
    let avail = Isa::available();
    eprintln!("{}", xiaoguan_kernels::isa_report());
    assert!(avail.contains(&Isa::Scalar));
    for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
        for &isa in &avail {
            check(isa, isa, m, n, k, 0x9E37_79B9 + i as u64 * 31 + isa as u64);
        }
    }
}

#[test]
fn forced_scalar_runs_every_packing() {
    for (i, &(m, n, k)) in SHAPES.iter().enumerate().filter(|(_, s)| s.0 * s.1 * s.2 < 20_000_000) {
        for &isa in &Isa::available() {
            check(isa, Isa::Scalar, m, n, k, 0x1234_5678 + i as u64);
        }
    }
}

#[test]
fn all_paths_agree_closely() {
    // Same data, every path: identical integer dots, so results differ only by f32 summation.
    let (m, n, k) = (11, 45, 640);
    let mut rng = Rng(77);
    let w = rng.vec(n * k, 0.05);
    let x = rng.acts(m * k);
    let qa = QuantizedRows::quantize(&x, m, k);
    let mut base: Option<Vec<f32>> = None;
    for &isa in &Isa::available() {
        let p = PackedMatrix::from_f32(n, k, &w, isa).unwrap();
        let mut out = vec![0f32; m * n];
        matmul_quantized(&p, &qa, &mut out);
        match &base {
            None => base = Some(out),
            Some(b) => {
                for (i, (a, b)) in out.iter().zip(b).enumerate() {
                    assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{isa} [{i}]: {a} vs scalar {b}");
                }
            }
        }
    }
}

#[test]
fn unsupported_path_is_refused_and_names_parse() {
    for isa in xiaoguan_kernels::ALL_ISAS {
        assert_eq!(Isa::parse(isa.name()), Some(isa));
        if !isa.is_supported() {
            assert!(PackedMatrix::from_f32(1, 32, &[0.0; 32], isa).is_err());
        }
    }
    assert!(Isa::best() <= Isa::detected());
    assert!(PackedMatrix::from_f32(1, 33, &[0.0; 33], Isa::Scalar).is_err());
    assert!(PackedMatrix::from_f32(2, 32, &[0.0; 32], Isa::Scalar).is_err());
}

fn f16b(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_bits().to_le_bytes()
}

#[test]
fn q8_0_and_q4_0_repack_exactly() {
    let (n, k) = (19, 128);
    let mut rng = Rng(5);
    let mut q8 = Vec::new();
    let mut q4 = Vec::new();
    for _ in 0..n * k / 32 {
        q8.extend(f16b(rng.f().abs() * 0.01 + 1e-4));
        q8.extend((0..32).map(|_| (rng.next() % 255) as u8 ^ 0x80));
        q4.extend(f16b(rng.f().abs() * 0.02 + 1e-4));
        q4.extend((0..16).map(|_| rng.next() as u8));
    }
    for (fmt, data) in [(GgmlFormat::Q8_0, &q8), (GgmlFormat::Q4_0, &q4)] {
        let rb = fmt.row_bytes(k);
        let mut want = vec![0f32; n * k];
        for r in 0..n {
            dequantize_row(fmt, &data[r * rb..(r + 1) * rb], &mut want[r * k..(r + 1) * k]);
        }
        for &isa in &Isa::available() {
            let p = PackedMatrix::from_ggml(fmt, n, k, data, isa).unwrap();
            assert_eq!(p.dequantize(), want, "{fmt:?} packed for {isa}");
        }
    }
}

/// Q4_K / Q6_K / F16 requantized to Q8_0: within half a Q8 step (amax/127/2 per block) of the
/// source values, plus the f16 rounding of the scale (q is rounded against the f32 scale, as
/// ggml and candle do).
#[test]
fn k_quants_requantize_within_half_a_step() {
    let (n, k) = (9, 512);
    let mut rng = Rng(99);
    let mut q4k = Vec::new();
    let mut q6k = Vec::new();
    for _ in 0..n * k / 256 {
        q4k.extend(f16b(0.002));
        q4k.extend(f16b(0.001));
        q4k.extend((0..140).map(|_| rng.next() as u8));
        q6k.extend((0..192).map(|_| rng.next() as u8));
        q6k.extend((0..16).map(|_| (rng.next() % 64) as u8));
        q6k.extend(f16b(0.0007));
    }
    let f16s: Vec<u8> = (0..n * k).flat_map(|_| f16b(rng.f())).collect();
    for (fmt, data) in [(GgmlFormat::Q4K, &q4k), (GgmlFormat::Q6K, &q6k), (GgmlFormat::F16, &f16s)] {
        let rb = fmt.row_bytes(k);
        let mut src = vec![0f32; n * k];
        for r in 0..n {
            dequantize_row(fmt, &data[r * rb..(r + 1) * rb], &mut src[r * k..(r + 1) * k]);
        }
        let p = PackedMatrix::from_ggml(fmt, n, k, data, Isa::best()).unwrap();
        let got = p.dequantize();
        for (bi, (g, s)) in got.chunks(32).zip(src.chunks(32)).enumerate() {
            let amax = s.iter().fold(0f32, |m, v| m.max(v.abs()));
            let step = amax / 127.0;
            for (a, b) in g.iter().zip(s) {
                // Half a step, plus |q| ≤ 127 times the f16 rounding of d (≤ d·2⁻¹¹), as in ggml.
                assert!((a - b).abs() <= step * (0.5 + 127.0 / 2048.0) * 1.001 + 1e-7, "{fmt:?} block {bi}: {a} vs {b} (step {step})");
            }
        }
    }
}

/// The block decoders agree with candle's (the library that writes and reads our GGUFs).
#[test]
fn decoders_match_candle() {
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    let (n, k) = (6, 512);
    let mut rng = Rng(2024);
    let w = rng.vec(n * k, 0.1);
    let t = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
    for (dt, fmt) in [
        (GgmlDType::Q8_0, GgmlFormat::Q8_0),
        (GgmlDType::Q4_0, GgmlFormat::Q4_0),
        (GgmlDType::Q4K, GgmlFormat::Q4K),
        (GgmlDType::Q6K, GgmlFormat::Q6K),
        (GgmlDType::F16, GgmlFormat::F16),
    ] {
        let q = QTensor::quantize(&t, dt).unwrap();
        let bytes = q.data().unwrap();
        assert_eq!(bytes.len(), n * fmt.row_bytes(k), "{fmt:?} block size");
        let want: Vec<f32> = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let mut got = vec![0f32; n * k];
        for r in 0..n {
            let rb = fmt.row_bytes(k);
            dequantize_row(fmt, &bytes[r * rb..(r + 1) * rb], &mut got[r * k..(r + 1) * k]);
        }
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{fmt:?} [{i}]: ours {a}, candle {b}");
        }
    }
}

/// Activation quantization is candle's Q8_0: d = amax/127 (through f16), q = round(x/d) with
/// halves away from zero.
#[test]
fn activations_quantize_like_candle() {
    let mut rng = Rng(31);
    let mut x = rng.acts(64 * 32);
    x[40] = 0.0;
    for v in &mut x[64..96] {
        *v = 0.0; // an all-zero block: d = 0
    }
    // Exact halves after scaling: amax 127 gives d = 1, so x = k + 0.5 must round away.
    for (i, v) in x[..32].iter_mut().enumerate() {
        *v = if i == 0 { 127.0 } else { (i as f32 - 16.0) + 0.5 };
    }
    let qa = QuantizedRows::quantize(&x, 64, 32);
    let got = qa.dequantize();
    for (bi, (g, xb)) in got.chunks(32).zip(x.chunks(32)).enumerate() {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let dh = half::f16::from_f32(d).to_f32();
        for (a, v) in g.iter().zip(xb) {
            assert_eq!(*a, dh * (v * id).round() as i8 as f32, "block {bi}: {v}");
        }
    }
}
