pub mod bench;
pub mod infer;
pub mod kb;
pub mod models;

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
    match &cli.command {
        Command::Models(cmd) => models::run(&reg, cmd),
        Command::Embed(args) => infer::embed(&reg, args),
        Command::Generate(args) => infer::generate(&reg, args),
        Command::Bench(cmd) => bench::run(&reg, cmd),
        Command::Kb { paths, cmd } => kb::run(&reg, paths, cmd),
    }
}
