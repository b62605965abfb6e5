//! `xiaoguan tickets …`: the ticket store from the command line — what is stored, one ticket,
//! deletion and retention, the labelled export, the review queue, importing an old feedback log.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use xiaoguan_models::registry::ModelRegistry;
use xiaoguan_server::config::{DatabaseConfig, ServerConfig};
use xiaoguan_tickets::{Review, TicketQuery, TicketStore};

#[derive(Args, Debug)]
pub struct TicketsArgs {
    /// The store: a SQLite file or postgres://… (default: the service's, <home>/tickets/tickets.db).
    #[arg(long, env = "XIAOGUAN_DATABASE_URL", global = true)]
    pub database: Option<String>,
    /// Service configuration whose `[database]` to use.
    #[arg(long = "server-config", env = "XIAOGUAN_SERVER_CONFIG", global = true)]
    pub server_config: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: TicketsCmd,
}

#[derive(Subcommand, Debug)]
pub enum TicketsCmd {
    /// Backend, schema version, counts.
    Stats,
    /// Stored tickets, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only this agent key's tickets.
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One ticket with its predictions, decision and review (JSON).
    Show { id: i64 },
    /// Delete one ticket and its feedback.
    Delete { id: i64 },
    /// Retention: delete tickets received more than N days ago.
    Purge {
        #[arg(long)]
        older_than_days: u32,
    },
    /// Reviewed tickets as labelled JSONL (the training rows), or the feedback with --feedback.
    Export {
        #[arg(long)]
        feedback: bool,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Import an earlier version's feedback JSONL log (ids already stored are skipped).
    ImportFeedback { file: PathBuf },
    /// Import historical tickets from JSONL (e.g. a city's past 12345 tickets), so repeats and
    /// analytics see them: masked, reporters hashed, places read from the text.
    Import {
        file: PathBuf,
        /// Field mapping overrides, KEY=FIELD (defaults: id, time, title, text, user, likes,
        /// reply, reply_time, domain, category, unit…).
        #[arg(long = "field")]
        fields: Vec<String>,
        /// Embed each ticket (title + text) with this embedder so repeats use meaning ("none": no vectors).
        #[arg(long, default_value = "e5-small")]
        embed: String,
        /// The key id the imported tickets are filed under.
        #[arg(long, default_value = "import")]
        key_id: String,
    },
    /// The review queue: unsure or corrected tickets, oldest first.
    Queue {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Confirm or fix a ticket's labels (it leaves the queue and becomes a training row).
    Review {
        id: i64,
        #[arg(long)]
        request_type: Option<String>,
        #[arg(long)]
        domain: Option<String>,
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        unit: Option<String>,
        #[arg(long)]
        note: Option<String>,
        #[arg(long, default_value = "cli")]
        reviewer: String,
    },
}

fn database_config(args: &TicketsArgs) -> anyhow::Result<DatabaseConfig> {
    let mut c = match &args.server_config {
        Some(p) => ServerConfig::load(p).map_err(|e| anyhow::anyhow!(xiaoguan_assist::AssistError::InvalidInput(e)))?.database,
        None => DatabaseConfig::default(),
    };
    if let Some(u) = &args.database {
        c.url = Some(u.clone());
    }
    Ok(c)
}

/// The store the service uses (or the one named).
pub fn open_store(reg: &ModelRegistry, database: Option<&str>) -> anyhow::Result<Arc<dyn TicketStore>> {
    let c = DatabaseConfig { url: database.map(String::from), ..Default::default() };
    let url = xiaoguan_server::database::url(&c, reg.store().home())?;
    xiaoguan_tickets::open(&url).map_err(|e| anyhow::anyhow!("ticket store {}: {e}", xiaoguan_tickets::redact_url(&url)))
}

pub fn run(reg: &ModelRegistry, args: &TicketsArgs) -> anyhow::Result<()> {
    let c = database_config(args)?;
    let url = xiaoguan_server::database::url(&c, reg.store().home())?;
    let store = xiaoguan_tickets::open(&url).map_err(|e| anyhow::anyhow!("ticket store {}: {e}", xiaoguan_tickets::redact_url(&url)))?;
    let not_found = |id: i64| anyhow::anyhow!(xiaoguan_assist::AssistError::NotFound(format!("no ticket {id} in {}", store.location())));
    match &args.cmd {
        TicketsCmd::Stats => {
            let queue = store.review_queue(100_000)?.len();
            let reviewed = store.reviewed()?.len();
            let feedback = store.feedback()?.len();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "backend": store.backend(), "location": store.location(), "schema_version": store.schema_version()?,
                    "tickets": store.count()?, "review_queue": queue, "reviewed": reviewed, "feedback": feedback,
                }))?
            );
        }
        TicketsCmd::List { limit, key, json } => {
            let rows = store.list(&TicketQuery { key_id: key.clone(), limit: *limit, ..Default::default() })?;
            for t in &rows {
                if *json {
                    println!("{}", xiaoguan_server::routes::records::view(t));
                } else {
                    let snippet: String = t.ticket.text.chars().take(40).collect();
                    println!(
                        "{:>7}  {}  {:<10} {:<16} {}",
                        t.id,
                        t.ticket.key_id,
                        t.ticket.domain.as_deref().unwrap_or("-"),
                        t.effective_unit().unwrap_or("-"),
                        snippet
                    );
                }
            }
        }
        TicketsCmd::Show { id } => {
            let t = store.get(*id)?.ok_or_else(|| not_found(*id))?;
            println!("{}", serde_json::to_string_pretty(&xiaoguan_server::routes::records::view(&t))?);
        }
        TicketsCmd::Delete { id } => {
            if !store.delete(*id)? {
                return Err(not_found(*id));
            }
            eprintln!("ticket {id} deleted");
        }
        TicketsCmd::Purge { older_than_days } => {
            let n = xiaoguan_server::database::purge(store.as_ref(), *older_than_days)?;
            eprintln!("{n} ticket(s) older than {older_than_days} days deleted");
        }
        TicketsCmd::Export { feedback, out } => {
            let mut w: Box<dyn Write> = match out {
                Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?)),
                None => Box::new(std::io::stdout().lock()),
            };
            let n = if *feedback {
                xiaoguan_server::feedback::export(store.as_ref(), &mut w)?
            } else {
                let rows = xiaoguan_server::routes::records::labelled_rows(&store.reviewed()?);
                for r in &rows {
                    writeln!(w, "{r}")?;
                }
                rows.len()
            };
            w.flush()?;
            eprintln!("{n} row(s) exported");
        }
        TicketsCmd::ImportFeedback { file } => {
            let (r, bad) = xiaoguan_tickets::import::import_feedback_log(store.as_ref(), file)?;
            if !bad.is_empty() {
                eprintln!("{}: lines {bad:?} do not parse and were skipped", file.display());
            }
            eprintln!("{} imported, {} already in the store, {} skipped", r.imported, r.already, r.skipped);
        }
        TicketsCmd::Import { file, fields, embed, key_id } => {
            let map = xiaoguan_analytics::load::FieldMap::default().with_overrides(fields).map_err(|e| anyhow::anyhow!(xiaoguan_assist::AssistError::InvalidInput(e)))?;
            let rows = xiaoguan_analytics::load::load_jsonl(file, &map).map_err(|e| anyhow::anyhow!(xiaoguan_assist::AssistError::InvalidInput(e.to_string())))?;
            let salt = xiaoguan_server::database::reporter_salt(&c, reg.store().home())?;
            let embeddings = if embed == "none" {
                None
            } else {
                let e = reg.embedder(embed)?;
                let texts: Vec<String> = rows.iter().map(|t| if t.title.is_empty() { t.text.clone() } else { format!("{}。{}", t.title, t.text) }).collect();
                let masked: Vec<String> = texts.iter().map(|t| xiaoguan_text::mask_pii(t).text).collect();
                Some(super::classify::embed_texts(reg, e.as_ref(), &masked, false)?)
            };
            let started = std::time::Instant::now();
            let mut stored = 0;
            for (chunk_no, chunk) in rows.chunks(1000).enumerate() {
                let batch: Vec<xiaoguan_tickets::NewTicket> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, t)| imported(t, key_id, &salt, embeddings.as_ref().map(|e| e[chunk_no * 1000 + i].clone())))
                    .collect();
                let ids = store.insert_many(&batch)?;
                for (t, id) in chunk.iter().zip(&ids) {
                    if t.closed {
                        let d = xiaoguan_tickets::Decision {
                            key_id: key_id.clone(),
                            at_ms: t.closed_at_ms.unwrap_or(t.time_ms),
                            verdict: xiaoguan_tickets::Verdict::Accepted,
                            unit: t.unit.clone(),
                            request_type: None,
                            domain: None,
                            category: None,
                            reply: None,
                            final_unit: t.unit.clone(),
                            closed: true,
                        };
                        store.decide(*id, &d)?;
                    }
                }
                stored += ids.len();
            }
            eprintln!("{stored} ticket(s) imported from {} into {} in {:.1}s", file.display(), store.location(), started.elapsed().as_secs_f64());
        }
        TicketsCmd::Queue { limit } => {
            for t in store.review_queue(*limit)? {
                println!("{}", xiaoguan_server::routes::records::view(&t));
            }
        }
        TicketsCmd::Review { id, request_type, domain, category, unit, note, reviewer } => {
            if request_type.is_none() && domain.is_none() && category.is_none() && unit.is_none() {
                return Err(xiaoguan_assist::AssistError::InvalidInput("a review confirms at least one of --request-type, --domain, --category, --unit".into()).into());
            }
            let r = Review {
                reviewer: reviewer.clone(),
                at_ms: xiaoguan_tickets::now_ms(),
                request_type: request_type.clone(),
                domain: domain.clone(),
                category: category.clone(),
                unit: unit.clone(),
                note: note.clone(),
            };
            if !store.review(*id, &r)? {
                return Err(not_found(*id));
            }
            eprintln!("ticket {id} reviewed");
        }
    }
    Ok(())
}

/// A historical ticket as stored: masked (by the store), the reporter hashed, the place read
/// from its title and text.
fn imported(t: &xiaoguan_analytics::Ticket, key_id: &str, salt: &str, embedding: Option<Vec<f32>>) -> xiaoguan_tickets::NewTicket {
    let place = xiaoguan_analytics::ticket_place(t);
    xiaoguan_tickets::NewTicket {
        key_id: key_id.to_string(),
        received_at_ms: t.time_ms,
        title: (!t.title.is_empty()).then(|| t.title.clone()),
        text: t.text.clone(),
        reporter: t.reporter.as_deref().and_then(|r| xiaoguan_tickets::reporter_key(r, salt)),
        place: place.label(),
        town: t.town.clone().or_else(|| place.coarse_key().map(String::from)),
        domain: t.domain.clone(),
        category: t.category.clone(),
        suggested_unit: t.suggested_unit.clone().or_else(|| t.unit.clone()),
        predictions: serde_json::json!({"imported_id": t.id, "likes": t.likes}),
        kb_versions: serde_json::json!({}),
        models: serde_json::json!({}),
        embedding,
        ..Default::default()
    }
}
