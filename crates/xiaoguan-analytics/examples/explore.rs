//! Print the hot groups and repeat links of a JSONL file, for reading them by eye:
//! `cargo run -p xiaoguan-analytics --example explore -- FILE [top] [seed]`.
use xiaoguan_analytics::{hot, load, repeats, Config, Corpus};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = &args[1];
    let top: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(15);
    let ts = load::load_jsonl(path.as_ref(), &load::FieldMap::default()).unwrap();
    let mut cfg = Config::default();
    let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<f32>().ok());
    if let Some(v) = env("EDGE") { cfg.tfidf_thresholds.group_edge = v; }
    if let Some(v) = env("MERGE") { cfg.tfidf_thresholds.group_merge = v; }
    if let Some(v) = env("BONUS") { cfg.tfidf_thresholds.fine_place_bonus = v; }
    if let Some(v) = env("WINDOW") { cfg.window_days = v as f64; }
    let t0 = std::time::Instant::now();
    let c = Corpus::build(&ts, &cfg);
    let h = hot::hot_issues(&c, &cfg);
    eprintln!("{} tickets, {} groups, {} grouped, {} pairs, {} links, {:?}", ts.len(), h.groups.len(), h.grouped_tickets, h.candidate_pairs, h.links, t0.elapsed());
    let sizes: Vec<usize> = h.groups.iter().take(10).map(|g| g.tickets).collect();
    let biggest = |kw: &str| h.groups.iter().filter(|g| g.members.iter().filter(|m| ts.iter().any(|t| t.id == m.id && (t.title.contains(kw) || t.text.contains(kw)))).count() * 2 > g.tickets).map(|g| g.tickets).max().unwrap_or(0);
    eprintln!("top10 sizes {:?}; 伊景园 {} 丽发新城 {} 58车贷 {} 魅力之城 {}", sizes, biggest("伊景园"), biggest("丽发新城"), biggest("58车贷"), biggest("魅力之城"));
    if let Ok(kw) = std::env::var("KW") { debug_kw(&ts, &c, &kw); }
    if std::env::var("QUIET").is_ok() { return; }
    for g in h.groups.iter().take(top) {
        println!("#{} {} n={} r={} likes={} score={} coh={}", g.rank, g.name, g.tickets, g.reporters, g.likes, g.score, g.coherence);
        for m in g.members.iter().take(8) {
            println!("    {} {} {}", m.time, m.id, m.title);
        }
    }
    let with_place = c.places.iter().filter(|p| p.fine_key().is_some()).count();
    let with_coarse = c.places.iter().filter(|p| p.coarse_key().is_some()).count();
    eprintln!("fine place {with_place}/{} coarse {with_coarse}", ts.len());
    let r = repeats::repeats(&c, &cfg);
    eprintln!("repeat links {} by kind {:?} after close {} chains {}", r.links.len(), r.by_kind, r.after_close, r.chains.len());
}

#[allow(dead_code)]
pub fn debug_kw(ts: &[xiaoguan_analytics::Ticket], c: &Corpus, kw: &str) {
    let idx: Vec<usize> = (0..ts.len()).filter(|&i| ts[i].title.contains(kw)).collect();
    for &i in &idx {
        eprintln!("{} {} fine={:?} mk={:?} {:?}", ts[i].id, ts[i].title, c.fine_keys[i].iter().map(|&k| &c.key_names[k as usize]).collect::<Vec<_>>(), c.matter_keys[i].iter().map(|&k| &c.key_names[k as usize]).collect::<Vec<_>>(), c.places[i].district);
    }
    for a in 0..idx.len().min(6) {
        let row: Vec<String> = idx.iter().take(12).map(|&j| format!("{:.2}", c.sim(idx[a], j))).collect();
        eprintln!("{}", row.join(" "));
    }
}
