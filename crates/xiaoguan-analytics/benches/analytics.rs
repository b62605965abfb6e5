//! Analytics over 100k synthetic tickets: corpus preparation (places + TF-IDF), hot-issue
//! grouping, repeats, trends. `cargo bench -p xiaoguan-analytics`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use xiaoguan_analytics::{hot, repeats, synth, trends, Config, Corpus};

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("ANALYTICS_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let tickets = synth::tickets(n, 42);
    let cfg = Config::default();
    let mut g = c.benchmark_group(format!("analytics_{n}"));
    g.sample_size(10);
    g.bench_function("corpus_build", |b| b.iter(|| black_box(Corpus::build(&tickets, &cfg).len())));
    let corpus = Corpus::build(&tickets, &cfg);
    g.bench_function("hot_issues", |b| b.iter(|| black_box(hot::hot_issues(&corpus, &cfg).groups.len())));
    g.bench_function("repeats", |b| b.iter(|| black_box(repeats::repeats(&corpus, &cfg).links.len())));
    g.bench_function("trends", |b| b.iter(|| black_box(trends::trends(&tickets, Some(&corpus.places), &cfg).weekly.len())));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
