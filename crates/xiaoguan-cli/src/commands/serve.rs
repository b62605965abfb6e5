//! `xiaoguan serve`, `xiaoguan feedback export` and `xiaoguan keys new`.

use super::ask::SettingsArgs;
use super::kb::kbs_root;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use xiaoguan_assist::setup;
use xiaoguan_kb::definition;
use xiaoguan_models::registry::ModelRegistry;
use xiaoguan_server::auth::{hash_key, Keys};
use xiaoguan_server::config::ServerConfig;
use xiaoguan_server::state::Ready;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Service configuration (TOML); flags and environment override it.
    #[arg(long = "server-config", env = "XIAOGUAN_SERVER_CONFIG")]
    pub server_config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "XIAOGUAN_BIND")]
    pub bind: Option<String>,
    /// API keys file (`[[keys]]` with id, sha256, role, kbs).
    #[arg(long, env = "XIAOGUAN_KEYS")]
    pub keys: Option<PathBuf>,
    /// Extractive answers only (no generator loaded).
    #[arg(long)]
    pub no_generator: bool,
    /// Generator queue length before 429.
    #[arg(long, env = "XIAOGUAN_QUEUE")]
    pub queue: Option<usize>,
    /// Seconds from SIGTERM/SIGINT to exit, whatever is still running (default 10).
    #[arg(long, env = "XIAOGUAN_SHUTDOWN_SECS")]
    pub shutdown_secs: Option<u64>,
    /// Uploads (deletes, reindexes) that may wait per knowledge base before 429 (default 8).
    #[arg(long, env = "XIAOGUAN_UPLOAD_QUEUE")]
    pub upload_queue: Option<usize>,
    /// Seconds an upload request waits for its ingest before answering 202 with a status to poll (default 30).
    #[arg(long, env = "XIAOGUAN_UPLOAD_WAIT_SECS")]
    pub upload_wait_secs: Option<u64>,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

#[derive(Subcommand, Debug)]
pub enum FeedbackCmd {
    /// Write the feedback in the ticket store as labelled JSONL (stdout or --out).
    Export {
        /// The store (default: the service's, <home>/tickets/tickets.db).
        #[arg(long, env = "XIAOGUAN_DATABASE_URL")]
        database: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Make a new random API key: prints the key once and the `[[keys]]` entry (hash only) to add to the keys file.
    New {
        #[arg(long)]
        id: String,
        #[arg(long, value_parser = ["agent", "integrator", "evaluator", "supervisor", "reviewer", "admin"])]
        role: String,
        /// Knowledge bases the key may see (repeatable; default all).
        #[arg(long = "kb")]
        kbs: Vec<String>,
    },
}

fn feedback_path(reg: &ModelRegistry, config: &ServerConfig) -> PathBuf {
    config.feedback_log.clone().unwrap_or_else(|| reg.store().home().join("feedback").join("feedback.jsonl"))
}

pub fn serve(reg: ModelRegistry, args: &ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.server_config {
        Some(p) => ServerConfig::load(p).map_err(|e| anyhow::anyhow!(xiaoguan_assist::AssistError::InvalidInput(e)))?,
        None => ServerConfig { assist: args.settings.config.clone(), ..Default::default() },
    };
    if let Some(b) = &args.bind {
        config.bind = b.clone();
    }
    if let Some(k) = &args.keys {
        config.keys_file = Some(k.clone());
    }
    if let Some(q) = args.queue {
        config.limits.generator_queue = q;
    }
    if args.no_generator {
        config.generator = false;
    }
    if let Some(s) = args.shutdown_secs {
        config.shutdown_secs = s;
    }
    if let Some(q) = args.upload_queue {
        config.limits.upload_queue = q;
    }
    if let Some(w) = args.upload_wait_secs {
        config.limits.upload_wait_secs = w;
    }
    let keys = match &config.keys_file {
        Some(p) => Keys::load(p).map_err(|e| anyhow::anyhow!(xiaoguan_assist::AssistError::InvalidInput(e)))?,
        None => Keys::default(),
    };
    let settings = setup::Settings::load(&config.assist)?;
    // Before the port opens: an unreachable Qdrant server is a clear error and a non-zero exit.
    let store = args.settings.paths.backend(&settings.store)?;
    let paths = setup::Paths {
        kb_dir: args.settings.paths.kb_dir.clone(),
        kbs_root: kbs_root(&reg),
        classifiers_root: super::classify::classifiers_root(&reg),
        store,
    };
    let data_root = args.settings.paths.data_root();
    let uploads_root = reg.store().home().join("uploads");
    let with_generator = config.generator;
    let history = xiaoguan_server::database::open(&config.database, reg.store().home(), &feedback_path(&reg, &config))?;
    let st = xiaoguan_server::state(config.clone(), keys, history)?;
    let build = move || -> anyhow::Result<Ready> {
        let (assistant, missing) = setup::assistant(&reg, &paths, &settings, None, with_generator)?;
        for m in missing {
            tracing::warn!("knowledge base '{m}' is not ingested and is not served (`xiaoguan kb ingest {m}`)");
        }
        let assistant = Arc::new(assistant);
        let tickets = Arc::new(setup::ticket_assist(&reg, &paths, &settings, Some(assistant.clone()))?);
        let kb_defs = definition::load_all(&paths.kb_dir)?;
        Ok(Ready { assistant, tickets, kb_defs, uploads_root, data_root })
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let report = rt.block_on(xiaoguan_server::serve(st, build))?;
    // Dropping the runtime would wait for every blocking thread (a model still loading, an
    // ingest cut off at the deadline: the 38 s after "drained"); they are left to the exit.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    let code = report.exit_code();
    if code != 0 {
        eprintln!(
            "xiaoguan serve: {} ingest job(s) cancelled{}; every knowledge base is at its last commit and the next ingest resumes (exit {code})",
            report.cancelled_jobs,
            if report.forced { ", cut off at the shutdown deadline" } else { "" }
        );
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code)
}

pub fn feedback(reg: &ModelRegistry, cmd: &FeedbackCmd) -> anyhow::Result<()> {
    match cmd {
        FeedbackCmd::Export { database, out } => {
            let store = super::tickets::open_store(reg, database.as_deref())?;
            let n = match out {
                Some(p) => {
                    let mut f = std::io::BufWriter::new(std::fs::File::create(p)?);
                    let n = xiaoguan_server::feedback::export(store.as_ref(), &mut f)?;
                    std::io::Write::flush(&mut f)?;
                    n
                }
                None => xiaoguan_server::feedback::export(store.as_ref(), &mut std::io::stdout().lock())?,
            };
            eprintln!("{n} feedback records exported from {}", store.location());
            Ok(())
        }
    }
}

pub fn keys(cmd: &KeysCmd) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::New { id, role, kbs } => {
            let mut bytes = [0u8; 24];
            std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
            let key = format!("xg-{}", hex::encode(bytes));
            let kbs = if kbs.is_empty() { vec!["*".to_string()] } else { kbs.clone() };
            eprintln!("API key for '{id}' (shown once, store it safely):\n{key}\n\nAdd to the keys file:");
            println!("[[keys]]\nid = {id:?}\nsha256 = {:?}\nrole = {role:?}\nkbs = {kbs:?}", hash_key(&key));
            Ok(())
        }
    }
}
