//! Repeats and duplicates (重复件): the same reporter or the same matter coming back,
//! especially after the earlier ticket was closed.
//!
//! A later ticket B repeats an earlier ticket A (at most `repeat_window_days` before it, places
//! compatible) when:
//! - `Duplicate`: similarity ≥ `duplicate` (near-identical text, whoever wrote it);
//! - `SameReporter`: same reporter, similarity ≥ `repeat_same_reporter`, and they name a
//!   common fine place or neither names one;
//! - `SameMatter`: different reporters, a common fine place, similarity ≥ `repeat_same_matter`.
//!
//! `after_close` marks a repeat that came after A was closed (A's close time before B, or A
//! closed with no close time known): the matter was answered and came back.

use crate::similarity::TfIdf;
use crate::time::{format_date, format_time, DAY_MS};
use crate::{Config, Corpus, Ticket};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepeatKind {
    Duplicate,
    SameReporter,
    SameMatter,
}

impl RepeatKind {
    pub fn label(self) -> &'static str {
        match self {
            RepeatKind::Duplicate => "重复件",
            RepeatKind::SameReporter => "同一诉求人再次反映",
            RepeatKind::SameMatter => "同一地点同类诉求",
        }
    }
}

/// An earlier ticket that is the same matter as a new one.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SameMatter {
    /// Index into the `earlier` slice given.
    pub index: usize,
    pub id: String,
    pub kind: RepeatKind,
    pub similarity: f32,
    pub same_reporter: bool,
    /// The earlier one had been closed before the new one came in.
    pub after_close: bool,
    pub days_between: f64,
}

/// The rule: Some(kind) when `later` repeats `earlier` (indexes into the corpus).
pub fn judge(c: &Corpus, cfg: &Config, earlier: usize, later: usize) -> Option<(RepeatKind, f32)> {
    if !c.place_compatible(earlier, later) {
        return None;
    }
    let th = c.thresholds(cfg);
    let s = c.sim(earlier, later);
    let (a, b) = (&c.tickets[earlier], &c.tickets[later]);
    if s >= th.duplicate {
        return Some((RepeatKind::Duplicate, s));
    }
    let fine = c.shares_fine(earlier, later);
    let same_reporter = matches!((a.reporter.as_deref(), b.reporter.as_deref()), (Some(x), Some(y)) if !x.is_empty() && x == y);
    if same_reporter {
        let neither = c.fine_keys[earlier].is_empty() && c.fine_keys[later].is_empty();
        if (fine || neither) && s >= th.repeat_same_reporter {
            return Some((RepeatKind::SameReporter, s));
        }
        return None;
    }
    if fine && s >= th.repeat_same_matter {
        return Some((RepeatKind::SameMatter, s));
    }
    None
}

fn after_close(earlier: &Ticket, later: &Ticket) -> bool {
    earlier.closed && earlier.closed_at_ms.is_none_or(|c| c <= later.time_ms)
}

/// At assist time: which of `earlier` (the caller's candidates, e.g. the store's tickets of
/// the same place or reporter) are the same matter as `new`. Best first. With embeddings on
/// every ticket their cosine decides; else TF-IDF, fitted on `fitted` when given (fit it once
/// on recent tickets: a handful of candidates is a poor corpus), else on new + earlier.
pub fn find_same_matter(new: &Ticket, earlier: &[Ticket], cfg: &Config, fitted: Option<&TfIdf>) -> Vec<SameMatter> {
    if earlier.is_empty() {
        return Vec::new();
    }
    let mut all: Vec<Ticket> = earlier.to_vec();
    all.push(new.clone());
    let c = Corpus::build_with(&all, cfg, fitted);
    let n = earlier.len();
    let mut out: Vec<SameMatter> = (0..n)
        .filter_map(|i| {
            let (kind, s) = judge(&c, cfg, i, n)?;
            let same_reporter = matches!((earlier[i].reporter.as_deref(), new.reporter.as_deref()), (Some(x), Some(y)) if !x.is_empty() && x == y);
            Some(SameMatter {
                index: i,
                id: earlier[i].id.clone(),
                kind,
                similarity: s,
                same_reporter,
                after_close: after_close(&earlier[i], new),
                days_between: ((new.time_ms - earlier[i].time_ms) as f64 / DAY_MS as f64 * 10.0).round() / 10.0,
            })
        })
        .collect();
    out.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then(a.index.cmp(&b.index)));
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct RepeatLink {
    pub earlier: String,
    pub later: String,
    pub kind: RepeatKind,
    pub similarity: f32,
    pub after_close: bool,
    pub days: f64,
    #[serde(skip)]
    pub earlier_index: usize,
    #[serde(skip)]
    pub later_index: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainTicket {
    pub id: String,
    pub time: String,
    pub title: String,
    pub reporter: Option<String>,
    pub closed: bool,
}

/// Tickets linked by repeats, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct RepeatChain {
    pub rank: usize,
    pub place: Option<String>,
    pub matter: String,
    pub tickets: Vec<ChainTicket>,
    pub reporters: usize,
    pub kinds: BTreeMap<RepeatKind, usize>,
    /// Links where the earlier one was closed before the later came in.
    pub after_close: usize,
    pub first: String,
    pub last: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepeatReport {
    pub tickets: usize,
    pub links: Vec<RepeatLink>,
    pub by_kind: BTreeMap<RepeatKind, usize>,
    pub after_close: usize,
    /// Tickets that repeat an earlier one.
    pub repeating_tickets: usize,
    pub chains: Vec<RepeatChain>,
}

/// Every repeat link (each later ticket keeps its best earlier match per kind), and the chains.
pub fn repeat_links(c: &Corpus, cfg: &Config) -> Vec<RepeatLink> {
    let window = (cfg.repeat_window_days * DAY_MS as f64) as i64;
    let mut seen: HashSet<(u32, u32)> = HashSet::new();
    let mut best: HashMap<(usize, RepeatKind), (f32, usize)> = HashMap::new();
    c.candidate_pairs(window, cfg.max_neighbors, true, |i, j| {
        if !seen.insert((i as u32, j as u32)) {
            return;
        }
        if let Some((kind, s)) = judge(c, cfg, i, j) {
            let e = best.entry((j, kind)).or_insert((s, i));
            if s > e.0 || (s == e.0 && i < e.1) {
                *e = (s, i);
            }
        }
    });
    let ts = c.tickets;
    let mut links: Vec<RepeatLink> = best
        .into_iter()
        .map(|((j, kind), (s, i))| RepeatLink {
            earlier: ts[i].id.clone(),
            later: ts[j].id.clone(),
            kind,
            similarity: (s * 1000.0).round() / 1000.0,
            after_close: after_close(&ts[i], &ts[j]),
            days: ((ts[j].time_ms - ts[i].time_ms) as f64 / DAY_MS as f64 * 10.0).round() / 10.0,
            earlier_index: i,
            later_index: j,
        })
        .collect();
    links.sort_by_key(|l| (ts[l.later_index].time_ms, l.later_index, l.kind, l.earlier_index));
    links
}

pub fn repeats(c: &Corpus, cfg: &Config) -> RepeatReport {
    let links = repeat_links(c, cfg);
    let n = c.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for l in &links {
        let (a, b) = (find(&mut parent, l.earlier_index), find(&mut parent, l.later_index));
        if a != b {
            parent[a.max(b)] = a.min(b);
        }
    }
    let mut comps: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for l in &links {
        for i in [l.earlier_index, l.later_index] {
            let r = find(&mut parent, i);
            comps.entry(r).or_default().push(i);
        }
    }
    let mut link_of: BTreeMap<usize, Vec<&RepeatLink>> = BTreeMap::new();
    for l in &links {
        let r = find(&mut parent, l.later_index);
        link_of.entry(r).or_default().push(l);
    }
    let ts = c.tickets;
    let mut chains: Vec<RepeatChain> = comps
        .into_iter()
        .map(|(root, mut members)| {
            members.sort_by_key(|&i| (ts[i].time_ms, i));
            members.dedup();
            let ls = &link_of[&root];
            let mut kinds = BTreeMap::new();
            for l in ls {
                *kinds.entry(l.kind).or_insert(0) += 1;
            }
            let reporters = {
                let mut r = HashSet::new();
                let mut anon = 0;
                for &i in &members {
                    match ts[i].reporter.as_deref().filter(|x| !x.is_empty()) {
                        Some(x) => {
                            r.insert(x);
                        }
                        None => anon += 1,
                    }
                }
                r.len() + anon
            };
            RepeatChain {
                rank: 0,
                place: crate::hot::group_place(c, &members),
                matter: crate::hot::group_matter(c, &members),
                first: format_date(ts[members[0]].time_ms),
                last: format_date(ts[*members.last().unwrap()].time_ms),
                tickets: members
                    .iter()
                    .map(|&i| ChainTicket { id: ts[i].id.clone(), time: format_time(ts[i].time_ms), title: ts[i].title.clone(), reporter: ts[i].reporter.clone(), closed: ts[i].closed })
                    .collect(),
                reporters,
                kinds,
                after_close: ls.iter().filter(|l| l.after_close).count(),
            }
        })
        .collect();
    chains.sort_by(|a, b| b.after_close.cmp(&a.after_close).then(b.tickets.len().cmp(&a.tickets.len())).then(a.first.cmp(&b.first)).then(a.tickets[0].id.cmp(&b.tickets[0].id)));
    for (i, ch) in chains.iter_mut().enumerate() {
        ch.rank = i + 1;
    }
    let mut by_kind = BTreeMap::new();
    for l in &links {
        *by_kind.entry(l.kind).or_insert(0) += 1;
    }
    let repeating: HashSet<usize> = links.iter().map(|l| l.later_index).collect();
    RepeatReport { tickets: n, after_close: links.iter().filter(|l| l.after_close).count(), by_kind, repeating_tickets: repeating.len(), links, chains }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_time;

    fn t(id: &str, time: &str, user: &str, title: &str, text: &str) -> Ticket {
        Ticket { id: id.into(), time_ms: parse_time(time).unwrap(), title: title.into(), text: text.into(), reporter: Some(user.into()), ..Default::default() }
    }

    fn earlier() -> Vec<Ticket> {
        let mut closed = t("e1", "2019-05-01 09:00:00", "u1", "A5区魅力之城小区油烟扰民", "A5区劳动东路魅力之城小区临街门面长期油烟直排，熏得没法开窗");
        closed.closed = true;
        closed.closed_at_ms = parse_time("2019-05-10 09:00:00");
        vec![
            closed,
            t("e2", "2019-05-03 09:00:00", "u2", "魅力之城小区临街门面餐馆油烟扰民", "魅力之城小区楼下几家餐馆油烟直排，熏得没法开窗"),
            t("e3", "2019-05-04 09:00:00", "u3", "A5区魅力之城小区停车收费太贵", "魅力之城小区物业停车费涨价"),
            t("e4", "2019-05-05 09:00:00", "u4", "A3区某小区油烟扰民", "A3区临街门面长期油烟直排"),
        ]
    }

    /// A TF-IDF fitted on a few thousand tickets, as the store side would (a handful of
    /// candidates alone is too small a corpus for idf).
    fn fitted() -> TfIdf {
        let bg = crate::synth::tickets(3000, 11);
        let e = earlier();
        TfIdf::fit(Default::default(), bg.iter().chain(&e).map(|t| (t.title.as_str(), t.text.as_str())))
    }

    #[test]
    fn assist_time_same_matter() {
        let new = t("n", "2019-06-01 09:00:00", "u1", "A5区魅力之城小区临街门面油烟扰民", "魅力之城小区楼下餐馆油烟直排，投诉过还是没有解决");
        let cfg = Config::default();
        let f = fitted();
        let m = find_same_matter(&new, &earlier(), &cfg, Some(&f));
        let ids: Vec<&str> = m.iter().map(|x| x.id.as_str()).collect();
        assert!(ids.contains(&"e1") && ids.contains(&"e2"), "{m:?}");
        assert!(!ids.contains(&"e3") && !ids.contains(&"e4"), "{m:?}");
        let e1 = m.iter().find(|x| x.id == "e1").unwrap();
        assert!(e1.same_reporter && e1.after_close);
        assert_eq!(e1.kind, RepeatKind::SameReporter);
        assert_eq!(m.iter().find(|x| x.id == "e2").unwrap().kind, RepeatKind::SameMatter);
        assert!(find_same_matter(&new, &[], &cfg, None).is_empty());
        // Fitted on the candidates alone it still finds the same reporter's repeat.
        assert!(find_same_matter(&new, &earlier(), &cfg, None).iter().any(|x| x.id == "e1"));
    }

    #[test]
    fn duplicates_and_chains() {
        let mut ts = earlier();
        ts.push(t("d1", "2019-05-20 09:00:00", "u9", "A5区魅力之城小区油烟扰民", "A5区劳动东路魅力之城小区临街门面长期油烟直排，熏得没法开窗"));
        let cfg = Config::default();
        let f = fitted();
        let c = Corpus::build_with(&ts, &cfg, Some(&f));
        let r = repeats(&c, &cfg);
        assert!(r.links.iter().any(|l| l.later == "d1" && l.earlier == "e1" && l.kind == RepeatKind::Duplicate && l.after_close), "{:?}", r.links);
        assert!(r.links.iter().all(|l| l.later != "e3" && l.later != "e4" && l.earlier != "e3"), "{:?}", r.links);
        assert_eq!(r.chains.len(), 1);
        assert_eq!(r.chains[0].tickets.len(), 3);
        assert!(r.chains[0].after_close >= 1);
    }
}
