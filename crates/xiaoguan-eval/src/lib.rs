//! The evaluation layer of xiaoguan (揭榜挂帅 测评): suites in `evals/*.yaml`, run against the
//! in-process pipeline or an HTTP system, scored per item, summarized with bootstrap intervals,
//! written as JSONL + JSON + Markdown + HTML, and compared run against run. Knows nothing of the
//! server's internals: HTTP systems are reached as any client would.

pub mod calibration;
pub mod compare;
pub mod metrics;
pub mod report;
pub mod run;
pub mod suite;
pub mod system;

use run::{ItemResult, Metric};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use suite::{LoadedDataset, Suite, Task};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A bad suite, dataset or run folder (the user's to fix).
    #[error("{0}")]
    Input(String),
    /// The system under test failed.
    #[error("system under test: {0}")]
    System(String),
    #[error("{0}")]
    Io(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub suite: String,
    pub description: String,
    pub task: Task,
    pub items: usize,
    pub metrics: BTreeMap<String, Metric>,
    pub latency: BTreeMap<String, f64>,
    pub thresholds: BTreeMap<String, f64>,
    pub failed_thresholds: Vec<String>,
    pub passed: bool,
    pub suite_sha256: String,
    pub datasets: Vec<LoadedDataset>,
    pub system: Value,
    pub git_commit: String,
    pub machine: Value,
    pub seed: u64,
    pub started_at: String,
    pub seconds: f64,
    /// Classification: the reliability diagram and precision/coverage curve of the confidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<calibration::Calibration>,
}

/// Cores and the CPU flags that decide kernel speed.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(str::trim).unwrap_or("").to_string();
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().filter(|f| ["avx", "avx2", "fma", "f16c", "avx512f", "avx_vnni"].contains(f)).collect())
        .unwrap_or_default();
    serde_json::json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": model, "flags": flags, "os": std::env::consts::OS, "arch": std::env::consts::ARCH,
    })
}

pub fn git_commit(dir: &Path) -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

pub struct RunOptions<'a> {
    pub data_root: &'a Path,
    pub out_dir: &'a Path,
    pub repo_dir: &'a Path,
    pub holdout_percent: u64,
    pub resamples: usize,
    pub limit: Option<usize>,
    pub progress: bool,
}

/// Run one suite end to end and write its outputs.
pub fn run_suite(suite: &Suite, suite_sha: &str, sut: &dyn system::SystemUnderTest, opts: &RunOptions) -> Result<RunSummary, EvalError> {
    let started = std::time::Instant::now();
    let started_at = xiaoguan_kb::state::now_rfc3339();
    let (mut items, datasets) = suite::load_items(suite, opts.data_root, opts.repo_dir, opts.holdout_percent)?;
    if let Some(l) = opts.limit {
        items.truncate(l);
    }
    if items.is_empty() {
        return Err(EvalError::Input(format!("suite '{}' selected no items from its datasets", suite.name)));
    }
    let bar = xiaoguan_models::progress::bar(items.len() as u64, "{msg} [{bar:30}] {pos}/{len} {per_sec} {eta}", opts.progress);
    bar.set_message(suite.name.clone());
    let results = run::run_items(suite, &items, sut, &mut || bar.inc(1));
    bar.finish_and_clear();
    let (metrics, latency) = run::summarize(suite.task, &results, suite.seed, opts.resamples);
    let failed = run::check_thresholds(&suite.thresholds, &metrics, &latency);
    let summary = RunSummary {
        suite: suite.name.clone(),
        description: suite.description.clone(),
        task: suite.task,
        items: results.len(),
        metrics,
        latency,
        thresholds: suite.thresholds.clone(),
        passed: failed.is_empty(),
        failed_thresholds: failed,
        suite_sha256: suite_sha.to_string(),
        datasets,
        system: sut.describe(),
        git_commit: git_commit(opts.repo_dir),
        machine: machine(),
        seed: suite.seed,
        started_at,
        seconds: started.elapsed().as_secs_f64(),
        calibration: run::calibration(suite.task, &results),
    };
    report::write_all(opts.out_dir, &summary, &results).map_err(|e| EvalError::Io(format!("{}: {e}", opts.out_dir.display())))?;
    Ok(summary)
}

/// Read a run folder back (summary.json + results.jsonl).
pub fn load_run(dir: &Path) -> Result<(RunSummary, Vec<ItemResult>), EvalError> {
    let sp = dir.join("summary.json");
    let s: RunSummary = serde_json::from_slice(&std::fs::read(&sp).map_err(|e| EvalError::Input(format!("{}: {e}", sp.display())))?)
        .map_err(|e| EvalError::Input(format!("{}: {e}", sp.display())))?;
    let rp = dir.join("results.jsonl");
    let f = std::fs::File::open(&rp).map_err(|e| EvalError::Input(format!("{}: {e}", rp.display())))?;
    let mut results = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| EvalError::Input(format!("{}:{}: {e}", rp.display(), i + 1)))?;
        results.push(serde_json::from_str(&line).map_err(|e| EvalError::Input(format!("{}:{}: {e}", rp.display(), i + 1)))?);
    }
    Ok((s, results))
}
