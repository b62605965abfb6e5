//! `xiaoguan bench tickets`: the ticket store at scale — assisting and storing tickets (the
//! classifier heads, dispatch rules, 弱信号, the repeat lookup and the committed insert, no
//! suggested reply), then analytics over a large store (scan + hot issues, repeats, trends,
//! 每周一题), with time and peak memory.

use super::ask::SettingsArgs;
use clap::Args;
use std::sync::Arc;
use std::time::Instant;
use xiaoguan_assist::history::{RecordMeta, TicketHistory};
use xiaoguan_assist::setup;
use xiaoguan_assist::ticket::TicketInput;
use xiaoguan_models::registry::ModelRegistry;
use xiaoguan_tickets::TicketStore;

#[derive(Args, Debug)]
pub struct TicketsBench {
    /// Tickets to assist and store (real messages from the data root, cycled).
    #[arg(long, default_value_t = 10_000)]
    pub assist: usize,
    /// Tickets in the store the analytics run over (synthetic Dongguan tickets, bulk-inserted).
    #[arg(long, default_value_t = 100_000)]
    pub analytics: usize,
    /// The store (default: a fresh SQLite file in a temp dir).
    #[arg(long)]
    pub database: Option<String>,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn messages(data_root: &std::path::Path) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for f in ["tipdm2020_smartgov_messages/messages_with_official_replies.jsonl", "tipdm2020_smartgov_messages/hot_messages.jsonl"] {
        let path = data_root.join(f);
        let map = xiaoguan_analytics::load::FieldMap::default();
        let rows = xiaoguan_analytics::load::load_jsonl(&path, &map).map_err(|e| anyhow::anyhow!("{e}"))?;
        out.extend(rows.into_iter().map(|t| (t.title, t.text, t.reporter.unwrap_or_default())));
    }
    Ok(out)
}

pub fn run(reg: &ModelRegistry, b: &TicketsBench) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let open = |name: &str| -> anyhow::Result<Arc<dyn TicketStore>> {
        let url = b.database.clone().unwrap_or_else(|| dir.path().join(name).display().to_string());
        Ok(xiaoguan_tickets::open(&url)?)
    };
    let mut report = serde_json::Map::new();
    if b.assist > 0 {
        let (settings, paths) = b.settings.load(reg)?;
        let assist = setup::ticket_assist(reg, &paths, &settings, None)?;
        let store = open("assist.db")?;
        let history = TicketHistory::new(store.clone(), "bench-salt");
        let msgs = messages(&b.settings.paths.data_root())?;
        anyhow::ensure!(!msgs.is_empty(), "no messages under the data root");
        let mut lat = Vec::with_capacity(b.assist);
        let mut repeats = 0;
        let started = Instant::now();
        for i in 0..b.assist {
            let (title, text, user) = &msgs[i % msgs.len()];
            let t = Instant::now();
            let input = TicketInput { text: text.chars().take(xiaoguan_assist::ticket::MAX_TICKET_CHARS).collect(), title: Some(title.clone()), ..Default::default() };
            let mut r = assist.assist(&input)?;
            let meta = RecordMeta { key_id: "bench".into(), reporter: Some(user.clone()), received_at_ms: Some(1_700_000_000_000 + i as i64 * 60_000) };
            history.record(&assist, &input, &mut r, &meta)?;
            repeats += r.repeats.as_ref().is_some_and(|x| x.count > 0) as usize;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let secs = started.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        println!(
            "assist + store: {} tickets in {:.1}s = {:.1} tickets/s; p50 {:.1} ms, p99 {:.1} ms; {} flagged as repeats; store {} ({})",
            b.assist,
            secs,
            b.assist as f64 / secs,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            repeats,
            store.backend(),
            store.location()
        );
        report.insert("assist".into(), serde_json::json!({"tickets": b.assist, "seconds": secs, "per_second": b.assist as f64 / secs, "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99), "repeats": repeats, "backend": store.backend()}));
    }
    if b.analytics > 0 {
        let store = open("analytics.db")?;
        let synthetic = xiaoguan_analytics::synth::tickets(b.analytics, 7);
        let t = Instant::now();
        for chunk in synthetic.chunks(5000) {
            let batch: Vec<xiaoguan_tickets::NewTicket> = chunk
                .iter()
                .map(|s| xiaoguan_tickets::NewTicket {
                    key_id: "bench".into(),
                    received_at_ms: s.time_ms,
                    title: Some(s.title.clone()),
                    text: s.text.clone(),
                    reporter: s.reporter.clone(),
                    town: s.town.clone(),
                    domain: s.domain.clone(),
                    suggested_unit: s.unit.clone(),
                    ..Default::default()
                })
                .collect();
            store.insert_many(&batch)?;
        }
        let fill = t.elapsed().as_secs_f64();
        drop(synthetic);
        let t = Instant::now();
        let mut tickets = Vec::new();
        store.scan(&mut |r| {
            tickets.push(xiaoguan_assist::history::analytics_ticket(&r));
            Ok(())
        })?;
        let scan = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let a = xiaoguan_analytics::Analysis::run(&tickets, &xiaoguan_analytics::Config::default(), "bench");
        let analyse = t.elapsed().as_secs_f64();
        let rss = super::bench::peak_rss_mb();
        println!(
            "analytics: {} stored tickets (bulk insert {:.1}s); scan {:.1}s, analysis {:.1}s ({} hot issues, {} repeat links, {} weeks); peak RSS {:.0} MB",
            tickets.len(),
            fill,
            scan,
            analyse,
            a.hot.groups.len(),
            a.repeats.links.len(),
            a.trends.weekly.len(),
            rss
        );
        report.insert("analytics".into(), serde_json::json!({"tickets": tickets.len(), "insert_seconds": fill, "scan_seconds": scan, "analysis_seconds": analyse, "hot_issues": a.hot.groups.len(), "peak_rss_mb": rss}));
    }
    println!("{}", serde_json::Value::Object(report));
    Ok(())
}
