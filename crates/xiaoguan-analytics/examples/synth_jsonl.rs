//! Write N synthetic Dongguan-style tickets as JSONL (for timing the CLI on a large file):
//! `cargo run -p xiaoguan-analytics --example synth_jsonl -- 100000 /tmp/synth100k.jsonl`.
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let n: usize = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let out = a.get(2).cloned().unwrap_or_else(|| "/tmp/synth.jsonl".into());
    let ts = xiaoguan_analytics::synth::tickets(n, 42);
    std::fs::write(&out, xiaoguan_analytics::synth::to_jsonl(&ts)).unwrap();
    eprintln!("wrote {n} tickets to {out}");
}
