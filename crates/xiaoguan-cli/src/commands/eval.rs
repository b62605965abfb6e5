//! `xiaoguan eval run|compare`: the evaluation harness from the command line.

use super::ask::SettingsArgs;
use clap::Subcommand;
use std::path::PathBuf;
use std::sync::Arc;
use xiaoguan_assist::classify::ClassifierModel;
use xiaoguan_assist::qa::AnswerMode;
use xiaoguan_assist::setup;
use xiaoguan_eval::suite::{Suite, SystemKind, Task};
use xiaoguan_eval::system::{Http, Pipeline, SystemUnderTest};
use xiaoguan_eval::{EvalError, RunOptions};
use xiaoguan_models::registry::ModelRegistry;

#[derive(Subcommand, Debug)]
pub enum EvalCmd {
    /// Run suites (`evals/*.yaml`); exits with status 3 when a threshold is not met.
    Run {
        #[arg(required = true)]
        suites: Vec<PathBuf>,
        /// Output folder (one subfolder per suite); default runs/<timestamp>.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run only the first N items of each suite (smoke runs).
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value_t = 1000)]
        resamples: usize,
        /// Point HTTP suites (and pipeline suites, turned into native ones) at this base URL.
        #[arg(long)]
        url: Option<String>,
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Metric deltas (paired bootstrap 95% intervals) and flipped items between two runs of one suite.
    Compare {
        run_a: PathBuf,
        run_b: PathBuf,
        #[arg(long, default_value_t = 1000)]
        resamples: usize,
        #[arg(long)]
        json: bool,
    },
}

fn pipeline(reg: &ModelRegistry, settings: &SettingsArgs, suite: &Suite) -> anyhow::Result<Pipeline> {
    let (mut s, paths) = settings.load(reg)?;
    let sys = &suite.system;
    let router = match sys.router.as_deref() {
        None => None,
        Some("search-all") => Some(xiaoguan_assist::qa::Routing::SearchAll),
        Some("description") => Some(xiaoguan_assist::qa::Routing::Description),
        Some(other) => return Err(EvalError::Input(format!("suite '{}': unknown router '{other}' (search-all | description)", suite.name)).into()),
    };
    let needs_kbs = matches!(suite.task, Task::Qa | Task::Refusal | Task::Retrieval) || (suite.task == Task::Ticket && !sys.without_reply) || router.is_some();
    let mode = match sys.mode.as_deref() {
        None | Some("extractive") => AnswerMode::Extractive,
        Some("generate") => AnswerMode::Generate,
        Some("auto") => AnswerMode::Auto,
        Some(other) => return Err(EvalError::Input(format!("suite '{}': unknown mode '{other}'", suite.name)).into()),
    };
    let assistant = if needs_kbs {
        if !sys.kbs.is_empty() {
            s.kbs = sys.kbs.clone();
        }
        let generates = mode == AnswerMode::Generate || (mode == AnswerMode::Auto && s.answer.auto_generates);
        let (a, missing) = setup::assistant(reg, &paths, &s, None, generates)?;
        if !missing.is_empty() {
            return Err(EvalError::Input(format!("suite '{}' needs knowledge bases that are not ingested: {}", suite.name, missing.join(", "))).into());
        }
        Some(Arc::new(a))
    } else {
        None
    };
    let classifier = match &sys.classifier {
        Some(name) => Some(ClassifierModel::load(&paths.classifiers_root.join(name))?),
        None => None,
    };
    let embedder = match classifier.as_ref().and_then(|c| c.meta.embedder.clone()) {
        Some(id) => Some(reg.embedder(&id)?),
        None => None,
    };
    let rules = if s.rules.is_some() { Some(setup::load_rules(&s)?) } else { None };
    let tickets = if suite.task == Task::Ticket { Some(setup::ticket_assist(reg, &paths, &s, assistant.clone())?) } else { None };
    // Model identity: the manifest hash each prepared folder was built from (its weights' sha256 are in the manifest).
    let model_hashes: serde_json::Map<String, serde_json::Value> = reg
        .manifests()
        .iter()
        .filter_map(|m| reg.store().read_marker(&m.id).map(|mk| (m.id.clone(), serde_json::Value::from(mk.manifest_sha256))))
        .collect();
    let describe = serde_json::json!({
        "kind": "pipeline",
        "model_manifest_sha256": model_hashes,
        "kbs": assistant.as_ref().map(|a| a.kbs().iter().map(|k| serde_json::json!({"id": k.def.id, "version": k.version()})).collect::<Vec<_>>()),
        "embedder": assistant.as_ref().map(|a| a.embedder().model_id().to_string()).or_else(|| embedder.as_ref().map(|e| e.model_id().to_string())),
        "generator": assistant.as_ref().and_then(|a| a.generator().map(|g| g.model_id().to_string())),
        "classifier": classifier.as_ref().map(|c| serde_json::json!({"name": c.meta.name, "data_sha256": c.meta.data_sha256, "trained_rows": c.meta.trained_rows})),
        "dispatch_rules": rules.as_ref().filter(|_| sys.dispatch).map(|r| serde_json::json!({"version": r.version, "rule_bonus": s.dispatch.rule_bonus})),
        "mode": format!("{mode:?}").to_lowercase(),
        "router": sys.router,
        "answer_config": s.answer,
    });
    Ok(Pipeline { assistant, tickets, classifier, rules, dispatch: sys.dispatch, rule_bonus: s.dispatch.rule_bonus, embedder, mode, kbs: Vec::new(), router, any_region: sys.any_region, describe })
}

fn timestamp_dir() -> PathBuf {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    PathBuf::from("runs").join(secs.to_string())
}

pub fn run(reg: &ModelRegistry, cmd: &EvalCmd) -> anyhow::Result<()> {
    match cmd {
        EvalCmd::Run { suites, out, limit, resamples, url, quiet, settings } => {
            let out = out.clone().unwrap_or_else(timestamp_dir);
            let data_root = settings.paths.data_root();
            let repo = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            let mut failed = Vec::new();
            for path in suites {
                let (mut suite, sha) = Suite::load(path)?;
                if let Some(u) = url {
                    suite.system.url = Some(u.clone());
                    if matches!(suite.system.kind, SystemKind::Pipeline) {
                        suite.system.kind = SystemKind::Native;
                    }
                }
                let sut: Box<dyn SystemUnderTest> = match suite.system.kind {
                    SystemKind::Pipeline => Box::new(pipeline(reg, settings, &suite)?),
                    _ => Box::new(Http::new(suite.system.clone())?),
                };
                let dir = out.join(&suite.name);
                let opts = RunOptions { data_root: &data_root, out_dir: &dir, repo_dir: &repo, holdout_percent: 20, resamples: *resamples, limit: *limit, progress: !quiet };
                let s = xiaoguan_eval::run_suite(&suite, &sha, sut.as_ref(), &opts)?;
                let headline: Vec<String> = s
                    .metrics
                    .iter()
                    .map(|(k, m)| match m.ci95 {
                        Some((a, b)) => format!("{k} {:.3} [{a:.3}, {b:.3}]", m.value),
                        None => format!("{k} {:.3}", m.value),
                    })
                    .collect();
                println!(
                    "{} ({} items, {:.1}s, p50 {:.1} ms, p95 {:.1} ms): {}{}",
                    s.suite,
                    s.items,
                    s.seconds,
                    s.latency["p50_ms"],
                    s.latency["p95_ms"],
                    headline.join(", "),
                    if s.passed { String::new() } else { format!("\n  FAILED: {}", s.failed_thresholds.join("; ")) }
                );
                println!("  report: {}", dir.join("report.html").display());
                if !s.passed {
                    failed.push(s.suite.clone());
                }
            }
            if !failed.is_empty() {
                eprintln!("thresholds not met in: {}", failed.join(", "));
                std::process::exit(3);
            }
            Ok(())
        }
        EvalCmd::Compare { run_a, run_b, resamples, json } => {
            let c = xiaoguan_eval::compare::compare(run_a, run_b, *resamples, 7)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&c)?);
                return Ok(());
            }
            println!("{}: {} paired items", c.suite, c.paired_items);
            for d in &c.deltas {
                println!("  {:<20} {:.4} → {:.4}  Δ {:+.4} [{:+.4}, {:+.4}]", d.metric, d.a, d.b, d.delta, d.ci95.0, d.ci95.1);
            }
            let fixed = c.flips.iter().filter(|f| f.change == "fixed").count();
            println!("  flipped: {} fixed, {} broken", fixed, c.flips.len() - fixed);
            for f in c.flips.iter().take(20) {
                println!("    {} {} {}", f.change, f.id, f.input);
            }
            Ok(())
        }
    }
}
