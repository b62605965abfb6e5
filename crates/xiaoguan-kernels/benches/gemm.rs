//! GOPS of the int8 kernels at Qwen2.5-0.5B's MLP shapes, per ISA path, against the machine's
//! int8 peak computed from its clock and ISA.
//!
//! `cargo bench -p xiaoguan-kernels` (criterion; `-- --quick` for a short run).
//! `XIAOGUAN_BENCH_ISA=avx2,avx512vnni` limits the paths, `XIAOGUAN_BENCH_CASES=prefill,down`
//! the shapes (substrings of their names), `RAYON_NUM_THREADS` the threads.
//! One op = one multiply or one add (a MAC is 2 ops): GOPS = 2·m·n·k / time.
//!
//! Peak per core per cycle (int8 MACs), from the instruction's width × issue rate:
//! * avx2: `vpmaddubsw` ymm does 32 u8×s8 products and issues on 2 ports → 64 MAC/cycle. The
//!   sign trick also needs `vpsignb` + `vpmaddwd` + `vpaddd` on the same vector ports, so the
//!   AVX2 kernel cannot get much beyond half of that.
//! * avxvnni: `vpdpbusd` ymm, 32 MACs (multiply and accumulate in one), 2 ports → 64 MAC/cycle.
//! * avx512vnni: `vpdpbusd` zmm, 64 MACs, 2 ports on Xeons with two 512-bit FMA units (this is
//!   a Sapphire/Emerald Rapids-class Xeon) → 128 MAC/cycle.
//! * scalar: 1 MAC/cycle, nominal (the compiler vectorizes parts of it; the ratio says little).
//! Peak GOPS = 2 · MAC/cycle · MHz/1000 · cores, with MHz from /proc/cpuinfo (the nominal clock
//! a VM reports; turbo, if any, would raise the true peak) and cores = rayon's threads.

use criterion::{BenchmarkId, Criterion, Throughput};
use std::time::{Duration, Instant};
use xiaoguan_kernels::{isa_report, matmul_quantized, Isa, PackedMatrix, QuantizedRows};

fn mhz() -> f64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

fn macs_per_cycle(isa: Isa) -> f64 {
    match isa {
        Isa::Scalar => 1.0,
        Isa::Avx2 => 64.0,
        Isa::AvxVnni => 64.0,
        Isa::Avx512Vnni => 128.0,
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

struct Case {
    name: &'static str,
    m: usize,
    n: usize,
    k: usize,
}

const CASES: &[Case] = &[
    Case { name: "prefill gate/up 1024x896*896x4864", m: 1024, n: 4864, k: 896 },
    Case { name: "prefill down 1024x4864*4864x896", m: 1024, n: 896, k: 4864 },
    Case { name: "prefill q/o 1024x896*896x896", m: 1024, n: 896, k: 896 },
    Case { name: "decode gate/up 1x896*896x4864", m: 1, n: 4864, k: 896 },
    Case { name: "decode down 1x4864*4864x896", m: 1, n: 896, k: 4864 },
];

fn data(n: usize, k: usize, m: usize) -> (Vec<f32>, Vec<f32>) {
    let mut s = 0x2545F4914F6CDD1Du64;
    let mut f = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let w = (0..n * k).map(|_| f() * 0.05).collect();
    let x = (0..m * k).map(|_| f()).collect();
    (w, x)
}

fn isas() -> Vec<Isa> {
    let avail = Isa::available();
    match std::env::var("XIAOGUAN_BENCH_ISA") {
        Ok(v) => v.split(',').filter_map(Isa::parse).filter(|i| avail.contains(i)).collect(),
        Err(_) => avail,
    }
}

fn main() {
    let threads = rayon::current_num_threads();
    let mhz = mhz();
    println!("{}  threads={threads}  cpu MHz={mhz}  loadavg={}", isa_report(), load_average());
    let mut c = Criterion::default().configure_from_args().sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    let mut summary = Vec::new();
    let only = std::env::var("XIAOGUAN_BENCH_CASES").unwrap_or_default();
    for case in CASES.iter().filter(|c| only.is_empty() || only.split(',').any(|o| c.name.contains(o))) {
        let (w, x) = data(case.n, case.k, case.m);
        let mut g = c.benchmark_group(case.name);
        let ops = 2 * case.m * case.n * case.k;
        g.throughput(Throughput::Elements(ops as u64));
        for isa in isas() {
            // The scalar path at prefill shapes takes seconds per call: decode shapes only.
            if isa == Isa::Scalar && case.m > 1 {
                continue;
            }
            let p = PackedMatrix::from_f32(case.n, case.k, &w, isa).unwrap();
            let mut out = vec![0f32; case.m * case.n];
            // Quantizing the activations is part of every matmul: measured inside.
            g.bench_function(BenchmarkId::from_parameter(isa.name()), |b| {
                b.iter(|| {
                    let qa = QuantizedRows::quantize(&x, case.m, case.k);
                    matmul_quantized(&p, &qa, &mut out);
                })
            });
            // Own median for the table (criterion's report is above).
            let reps = if case.m > 1 { 15 } else { 300 };
            let mut ts: Vec<f64> = (0..reps)
                .map(|_| {
                    let t = Instant::now();
                    let qa = QuantizedRows::quantize(&x, case.m, case.k);
                    matmul_quantized(&p, &qa, &mut out);
                    t.elapsed().as_secs_f64()
                })
                .collect();
            ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let t = ts[ts.len() / 2];
            let best = ts[0];
            let gops = ops as f64 / t / 1e9;
            let gops_best = ops as f64 / best / 1e9;
            let peak = 2.0 * macs_per_cycle(isa) * mhz / 1000.0 * threads as f64;
            let wbytes = p.bytes() as f64;
            summary.push(format!(
                "{:<36} {:<11} {:>9.3} ms {:>8.1} GOPS (best {:>7.1}) peak {:>7.1}  {:>5.1}% (best {:>5.1}%)  weights {:>6.1} GB/s",
                case.name,
                isa.name(),
                t * 1e3,
                gops,
                gops_best,
                peak,
                100.0 * gops / peak,
                100.0 * gops_best / peak,
                wbytes / t / 1e9
            ));
        }
        g.finish();
    }
    // Activation quantization alone (part of every call above).
    for (m, k) in [(1024usize, 896usize), (1024, 4864)] {
        let (_, x) = data(1, k, m);
        let t = Instant::now();
        let reps = 10;
        for _ in 0..reps {
            std::hint::black_box(QuantizedRows::quantize(&x, m, k));
        }
        let dt = t.elapsed().as_secs_f64() / reps as f64;
        summary.push(format!("quantize activations {m}x{k}: {:.3} ms ({:.2} ns/value)", dt * 1e3, dt * 1e9 / (m * k) as f64));
    }
    c.final_summary();
    println!("\nmedian (and best) per call, activation quantization included, {threads} threads, loadavg {}:", load_average());
    for l in summary {
        println!("{l}");
    }
}
