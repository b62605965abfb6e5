pub mod analyze;
pub mod ask;
pub mod bench;
pub mod bench_tickets;
pub mod classify;
pub mod eval;
pub mod infer;
pub mod kb;
pub mod labelling;
pub mod load;
pub mod models;
pub mod serve;
pub mod tickets;

use crate::{Cli, Command};
use xiaoguan_models::registry::ModelRegistry;
use xiaoguan_models::{manifest, ModelStore};

pub fn registry(cli: &Cli) -> anyhow::Result<ModelRegistry> {
    let store = ModelStore::new(cli.home.clone().unwrap_or_else(ModelStore::default_home));
    let manifests = manifest::load_all(cli.models_dir.as_deref())?;
    Ok(ModelRegistry::new(store, manifests))
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let reg = registry(&cli)?;
    if let Command::Serve(args) = &cli.command {
        return serve::serve(reg, args);
    }
    match &cli.command {
        Command::Serve(_) => unreachable!("handled above"),
        Command::Feedback(cmd) => serve::feedback(&reg, cmd),
        Command::Tickets(args) => tickets::run(&reg, args),
        Command::Analyze(args) => analyze::run(&reg, args),
        Command::Keys(cmd) => serve::keys(cmd),
        Command::Models(cmd) => models::run(&reg, cmd),
        Command::Embed(args) => infer::embed(&reg, args),
        Command::Generate(args) => infer::generate(&reg, args),
        Command::Bench(cmd) => bench::run(&reg, cmd),
        Command::Kb { paths, config, cmd } => kb::run(&reg, paths, config, cmd),
        Command::Classify(cmd) => classify::run(&reg, cmd),
        Command::Ask(args) => ask::ask(&reg, args),
        Command::Eval(cmd) => eval::run(&reg, cmd),
        Command::Ticket(args) => ask::ticket(&reg, args),
    }
}

/// Bytes of all files below `p` (a knowledge base's or a benchmark's folder).
pub fn disk_usage(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => disk_usage(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
