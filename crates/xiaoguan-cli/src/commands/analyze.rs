//! `xiaoguan analyze hot|repeats|trends|weekly|report`: ticket analytics (智能数据分析) over a
//! JSONL file: hot issues, repeats and duplicates, trends and dispatch quality, 每周一题.
//!
//! The tickets come from `--jsonl` today; [`analyze_tickets`] is the seam for other sources
//! (a `--store` reading the ticket store hands its tickets to it the same way).

use anyhow::Context;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use xiaoguan_analytics::report::{self, Section};
use xiaoguan_analytics::{load, Analysis, Config, Ticket};
use xiaoguan_models::registry::ModelRegistry;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum What {
    /// Hot issues: the same matter in the same place within a time window, ranked.
    Hot,
    /// Repeats and duplicates, and the chains a supervisor reads.
    Repeats,
    /// Counts by week, domain, unit and town with the change; unit load; dispatch quality.
    Trends,
    /// 每周一题 candidates: groups that keep coming back across weeks.
    Weekly,
    /// All of the above.
    Report,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Md,
    Html,
    Json,
}

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    pub what: What,
    /// Tickets as JSON lines (defaults fit the tipdm 2020 智慧政务 files).
    #[arg(long)]
    pub jsonl: PathBuf,
    /// Field mapping overrides, e.g. `--field reporter=phone_hash --field text=content`.
    #[arg(long = "field")]
    pub fields: Vec<String>,
    /// Embedder for the matter similarity: a model id (e5-small) or `none` (TF-IDF over
    /// character bigrams). Default: e5-small when it is pulled, else none.
    #[arg(long)]
    pub embed: Option<String>,
    /// Days within which two tickets can be the same hot issue.
    #[arg(long)]
    pub window_days: Option<f64>,
    /// Days repeats look back.
    #[arg(long)]
    pub repeat_window_days: Option<f64>,
    /// Rows listed per table.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// 每周一题: distinct ISO weeks a group must be seen in.
    #[arg(long, default_value_t = 3)]
    pub min_weeks: usize,
    /// Trends: compare the last N ISO weeks with the N before.
    #[arg(long, default_value_t = 1)]
    pub period_weeks: u32,
    /// Override the link threshold of hot-issue grouping (for the similarity in use).
    #[arg(long)]
    pub group_edge: Option<f32>,
    /// Override the centroid merge threshold of hot-issue grouping.
    #[arg(long)]
    pub group_merge: Option<f32>,
    /// Write `<what>.<format>` into this folder instead of printing.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Md)]
    pub format: Format,
}

const DEFAULT_EMBEDDER: &str = "e5-small";

pub fn run(reg: &ModelRegistry, args: &AnalyzeArgs) -> anyhow::Result<()> {
    let map = load::FieldMap::default().with_overrides(&args.fields).map_err(|e| anyhow::anyhow!(xiaoguan_assist::AssistError::InvalidInput(e)))?;
    let tickets = load::load_jsonl(&args.jsonl, &map).map_err(|e| {
        let user = matches!(e, xiaoguan_analytics::Error::Input { .. }) || matches!(&e, xiaoguan_analytics::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
        if user {
            anyhow::anyhow!(xiaoguan_assist::AssistError::InvalidInput(e.to_string()))
        } else {
            anyhow::anyhow!(e)
        }
    })?;
    analyze_tickets(reg, tickets, args, &args.jsonl.display().to_string())
}

/// Which embedder to use: the one asked for, else e5-small when it is pulled, else none.
fn embedder_choice(reg: &ModelRegistry, asked: Option<&str>) -> Option<String> {
    match asked {
        Some("none") | Some("") => None,
        Some(id) => Some(id.to_string()),
        None => {
            if reg.store().ready_dir(DEFAULT_EMBEDDER).is_ok() {
                Some(DEFAULT_EMBEDDER.to_string())
            } else {
                eprintln!("note: {DEFAULT_EMBEDDER} is not pulled (xiaoguan models pull {DEFAULT_EMBEDDER}); using TF-IDF over character bigrams (--embed none)");
                None
            }
        }
    }
}

/// Analyse tickets from any source (the JSONL loader, or the ticket store) and write the
/// report `args` asks for.
pub fn analyze_tickets(reg: &ModelRegistry, mut tickets: Vec<Ticket>, args: &AnalyzeArgs, source: &str) -> anyhow::Result<()> {
    if let Some(id) = embedder_choice(reg, args.embed.as_deref()) {
        let embedder = reg.embedder(&id)?;
        let texts: Vec<String> = tickets.iter().map(|t| format!("{}。{}", t.title, t.text)).collect();
        let vecs = super::classify::embed_texts(reg, embedder.as_ref(), &texts, false)?;
        for (t, v) in tickets.iter_mut().zip(vecs) {
            t.embedding = Some(v);
        }
    } else {
        for t in &mut tickets {
            t.embedding = None;
        }
    }
    let mut cfg = Config { top: args.top.max(1), weekly_min_weeks: args.min_weeks.max(1), period_weeks: args.period_weeks.max(1), ..Config::default() };
    if let Some(w) = args.window_days {
        anyhow::ensure!(w > 0.0, xiaoguan_assist::AssistError::InvalidInput("--window-days must be above 0".into()));
        cfg.window_days = w;
    }
    if let Some(w) = args.repeat_window_days {
        anyhow::ensure!(w > 0.0, xiaoguan_assist::AssistError::InvalidInput("--repeat-window-days must be above 0".into()));
        cfg.repeat_window_days = w;
    }
    for th in [&mut cfg.tfidf_thresholds, &mut cfg.embedding_thresholds] {
        if let Some(v) = args.group_edge {
            th.group_edge = v;
        }
        if let Some(v) = args.group_merge {
            th.group_merge = v;
        }
    }
    let started = std::time::Instant::now();
    let a = Analysis::run(&tickets, &cfg, source);
    let secs = started.elapsed().as_secs_f64();
    let sections: Vec<Section> = match args.what {
        What::Hot => vec![Section::Hot],
        What::Repeats => vec![Section::Repeats],
        What::Trends => vec![Section::Trends],
        What::Weekly => vec![Section::Weekly],
        What::Report => report::ALL.to_vec(),
    };
    let body = match args.format {
        Format::Md => report::markdown_sections(&a, &sections),
        Format::Html => report::html_sections(&a, &sections),
        Format::Json => json(&a, args.what, cfg.top)?,
    };
    let name = match args.what {
        What::Hot => "hot",
        What::Repeats => "repeats",
        What::Trends => "trends",
        What::Weekly => "weekly",
        What::Report => "report",
    };
    match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let ext = match args.format {
                Format::Md => "md",
                Format::Html => "html",
                Format::Json => "json",
            };
            let path = dir.join(format!("{name}.{ext}"));
            std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "{} tickets ({:?} similarity): {} hot-issue groups, {} repeat links, {} 每周一题 candidates in {secs:.2}s; wrote {}",
                a.tickets,
                a.similarity,
                a.hot.groups.len(),
                a.repeats.links.len(),
                a.weekly.len(),
                path.display()
            );
        }
        None => print!("{body}"),
    }
    Ok(())
}

fn json(a: &Analysis, what: What, top: usize) -> anyhow::Result<String> {
    let mut hot = a.hot.clone();
    hot.groups.truncate(top);
    let v = match what {
        What::Hot => serde_json::json!({"source": a.source, "similarity": a.similarity, "hot": hot}),
        What::Repeats => serde_json::json!({"source": a.source, "similarity": a.similarity, "repeats": a.repeats}),
        What::Trends => serde_json::json!({"source": a.source, "trends": a.trends}),
        What::Weekly => serde_json::json!({"source": a.source, "similarity": a.similarity, "weekly": a.weekly}),
        What::Report => serde_json::to_value(a)?,
    };
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}
