//! `xiaoguan`: the command-line entry point. Every flag can also be set from the environment.

mod commands;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "xiaoguan", version, about = "Grounded answers from official documents: models, knowledge bases, answering, service")]
pub struct Cli {
    /// Cache folder for downloads and prepared models.
    #[arg(long, env = "XIAOGUAN_HOME", global = true)]
    pub home: Option<PathBuf>,
    /// Extra model manifests (`*.toml`), overriding the built-in ones with the same id.
    #[arg(long, env = "XIAOGUAN_MODELS_DIR", global = true)]
    pub models_dir: Option<PathBuf>,
    /// CPU threads for inference (0 = all cores).
    #[arg(long, env = "XIAOGUAN_THREADS", default_value_t = 0, global = true)]
    pub threads: usize,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Pull, list and inspect models.
    #[command(subcommand)]
    Models(commands::models::ModelsCmd),
    /// Embed texts and print vectors or pairwise cosine similarities.
    Embed(commands::infer::EmbedArgs),
    /// Generate a reply to a prompt with a local generator (streams to stdout).
    Generate(commands::infer::GenerateArgs),
    /// Knowledge bases: list, ingest, search, stats, remove.
    Kb {
        #[command(flatten)]
        paths: commands::kb::KbPaths,
        /// Settings file whose `[store]` says where knowledge bases are kept.
        #[arg(long, env = "XIAOGUAN_CONFIG", default_value = "assist.toml")]
        config: PathBuf,
        #[command(subcommand)]
        cmd: commands::kb::KbCmd,
    },
    /// Run the HTTP service (小莞 chat, ticket assist, admin, console page at /).
    Serve(commands::serve::ServeArgs),
    /// Agent feedback: export it (from the ticket store) as labelled JSONL.
    #[command(subcommand)]
    Feedback(commands::serve::FeedbackCmd),
    /// The ticket store: stats, list, show, delete, retention, labelled export, review queue.
    Tickets(commands::tickets::TicketsArgs),
    /// Ticket analytics (智能数据分析) over a JSONL file: hot issues, repeats, trends, 每周一题.
    Analyze(commands::analyze::AnalyzeArgs),
    /// API keys: make a new one.
    #[command(subcommand)]
    Keys(commands::serve::KeysCmd),
    /// Ask a question (several = a conversation): canonical answer, facts, grounded generation or extractive, or handoff.
    Ask(commands::ask::AskArgs),
    /// Ticket assist for hotline agents: masking, summary, type, domain, dispatch, 弱信号, suggested reply.
    Ticket(commands::ask::TicketArgs),
    /// Evaluation suites: run (reports with intervals, threshold gate) and compare runs.
    #[command(subcommand)]
    Eval(commands::eval::EvalCmd),
    /// Train and run the ticket classifiers (request type, domain, category, department).
    #[command(subcommand)]
    Classify(commands::classify::ClassifyCmd),
    /// Measure embedding and generation speed on this machine.
    #[command(subcommand)]
    Bench(commands::bench::BenchCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("XIAOGUAN_LOG").unwrap_or_else(|_| "warn,qdrant_edge=error".into()))
        .with_writer(std::io::stderr)
        .init();
    xiaoguan_models::registry::set_threads(cli.threads);
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // 2 = the user's input was wrong; 1 = something failed on our side or the environment's.
            let user = e.downcast_ref::<xiaoguan_models::ModelError>().is_some_and(|m| m.is_user_error())
                || e.downcast_ref::<xiaoguan_kb::KbError>().is_some_and(|k| k.is_user_error())
                || e.downcast_ref::<xiaoguan_tickets::StoreError>().is_some_and(|s| matches!(s, xiaoguan_tickets::StoreError::InvalidInput(_)))
                || e.downcast_ref::<xiaoguan_kb::definition::DefinitionError>().is_some()
                || e.downcast_ref::<xiaoguan_assist::AssistError>().is_some_and(|a| a.is_user_error())
                || e.downcast_ref::<xiaoguan_eval::EvalError>().is_some_and(|e| matches!(e, xiaoguan_eval::EvalError::Input(_)));
            ExitCode::from(if user { 2 } else { 1 })
        }
    }
}
