//! Trends: ticket counts by ISO week, and by domain, unit and town with the change of the last
//! period (the last `period_weeks` ISO weeks with data) against the period before; per-unit
//! load, and dispatch quality (how often agents changed the suggested unit).

use crate::place::Place;
use crate::time::{format_date, iso_week, iso_week_num, week_start, DAY_MS};
use crate::{Config, Ticket};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WeekCount {
    pub week: String,
    /// The Monday it starts on.
    pub start: String,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DimCount {
    pub key: String,
    pub total: usize,
    pub current: usize,
    pub previous: usize,
    pub change: i64,
    /// None when the previous period had none.
    pub change_pct: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UnitLoad {
    pub unit: String,
    pub tickets: usize,
    pub share: f64,
    pub current: usize,
    pub previous: usize,
    /// Tickets assist suggested for this unit.
    pub suggested: usize,
    /// Of those, how many the agent sent elsewhere.
    pub changed_away: usize,
    pub change_rate: Option<f64>,
    pub closed: usize,
    pub closed_rate: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DispatchQuality {
    /// Tickets with a suggested unit.
    pub with_suggestion: usize,
    /// Of those, dispatched elsewhere by the agent.
    pub changed: usize,
    pub change_rate: Option<f64>,
    /// The most frequent (suggested → chosen) corrections.
    pub top_corrections: Vec<(String, String, usize)>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Trends {
    pub tickets: usize,
    /// "2019-W51..2019-W52" style labels of the two periods compared.
    pub current_period: String,
    pub previous_period: String,
    pub current: usize,
    pub previous: usize,
    pub weekly: Vec<WeekCount>,
    pub by_domain: Vec<DimCount>,
    pub by_unit: Vec<DimCount>,
    pub by_town: Vec<DimCount>,
    pub units: Vec<UnitLoad>,
    pub dispatch: DispatchQuality,
}

fn pct(cur: usize, prev: usize) -> Option<f64> {
    (prev > 0).then(|| ((cur as f64 - prev as f64) / prev as f64 * 1000.0).round() / 10.0)
}

/// `places`: the tickets' places (from a [`crate::Corpus`]) for the town dimension when a
/// ticket has no town of its own; None extracts them.
pub fn trends(tickets: &[Ticket], places: Option<&[Place]>, cfg: &Config) -> Trends {
    let owned: Vec<Place>;
    let places = match places {
        Some(p) => p,
        None => {
            owned = tickets.iter().map(crate::ticket_place).collect();
            &owned
        }
    };
    // Weekly series with the empty weeks in between.
    let mut weeks: BTreeMap<u32, (String, i64, usize)> = BTreeMap::new();
    for t in tickets {
        let e = weeks.entry(iso_week_num(t.time_ms)).or_insert_with(|| (iso_week(t.time_ms), week_start(t.time_ms), 0));
        e.2 += 1;
    }
    let mut weekly = Vec::new();
    if let (Some(first), Some(last)) = (weeks.values().next().map(|x| x.1), weeks.values().last().map(|x| x.1)) {
        let mut m = first;
        while m <= last {
            let n = weeks.get(&iso_week_num(m)).map_or(0, |x| x.2);
            weekly.push(WeekCount { week: iso_week(m), start: format_date(m), count: n });
            m += 7 * DAY_MS;
        }
    }
    let p = cfg.period_weeks.max(1) as usize;
    let cur_weeks: BTreeSet<String> = weekly.iter().rev().take(p).map(|w| w.week.clone()).collect();
    let prev_weeks: BTreeSet<String> = weekly.iter().rev().skip(p).take(p).map(|w| w.week.clone()).collect();
    let label = |s: &BTreeSet<String>| match (s.iter().next(), s.iter().last()) {
        (Some(a), Some(b)) if a != b => format!("{a}..{b}"),
        (Some(a), _) => a.clone(),
        _ => String::new(),
    };
    let period: Vec<u8> = tickets
        .iter()
        .map(|t| {
            let w = iso_week(t.time_ms);
            if cur_weeks.contains(&w) {
                2
            } else if prev_weeks.contains(&w) {
                1
            } else {
                0
            }
        })
        .collect();
    let dim = |key: &dyn Fn(usize) -> Option<String>| -> Vec<DimCount> {
        let mut m: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
        for i in 0..tickets.len() {
            if let Some(k) = key(i).filter(|k| !k.is_empty()) {
                let e = m.entry(k).or_default();
                e.0 += 1;
                match period[i] {
                    2 => e.1 += 1,
                    1 => e.2 += 1,
                    _ => {}
                }
            }
        }
        let mut v: Vec<DimCount> = m
            .into_iter()
            .map(|(key, (total, current, previous))| DimCount { key, total, current, previous, change: current as i64 - previous as i64, change_pct: pct(current, previous) })
            .collect();
        v.sort_by(|a, b| b.total.cmp(&a.total).then(a.key.cmp(&b.key)));
        v
    };
    let by_domain = dim(&|i| tickets[i].domain.clone());
    let by_unit = dim(&|i| tickets[i].unit.clone());
    let by_town = dim(&|i| tickets[i].town.clone().or_else(|| places[i].coarse_key().map(str::to_string)));
    let total = tickets.len();
    let mut units: BTreeMap<&str, UnitLoad> = BTreeMap::new();
    let blank = |u: &str| UnitLoad { unit: u.to_string(), tickets: 0, share: 0.0, current: 0, previous: 0, suggested: 0, changed_away: 0, change_rate: None, closed: 0, closed_rate: 0.0 };
    let mut corrections: BTreeMap<(String, String), usize> = BTreeMap::new();
    let (mut with_s, mut changed) = (0, 0);
    for (i, t) in tickets.iter().enumerate() {
        if let Some(u) = t.unit.as_deref().filter(|u| !u.is_empty()) {
            let e = units.entry(u).or_insert_with(|| blank(u));
            e.tickets += 1;
            e.closed += t.closed as usize;
            match period[i] {
                2 => e.current += 1,
                1 => e.previous += 1,
                _ => {}
            }
        }
        if let Some(s) = t.suggested_unit.as_deref().filter(|u| !u.is_empty()) {
            with_s += 1;
            let e = units.entry(s).or_insert_with(|| blank(s));
            e.suggested += 1;
            if t.unit_changed {
                changed += 1;
                e.changed_away += 1;
                *corrections.entry((s.to_string(), t.unit.clone().unwrap_or_default())).or_insert(0) += 1;
            }
        }
    }
    let mut units: Vec<UnitLoad> = units
        .into_values()
        .map(|mut u| {
            u.share = if total > 0 { (u.tickets as f64 / total as f64 * 10000.0).round() / 10000.0 } else { 0.0 };
            u.change_rate = (u.suggested > 0).then(|| (u.changed_away as f64 / u.suggested as f64 * 1000.0).round() / 1000.0);
            u.closed_rate = if u.tickets > 0 { (u.closed as f64 / u.tickets as f64 * 1000.0).round() / 1000.0 } else { 0.0 };
            u
        })
        .collect();
    units.sort_by(|a, b| b.tickets.cmp(&a.tickets).then(b.suggested.cmp(&a.suggested)).then(a.unit.cmp(&b.unit)));
    let mut top_corrections: Vec<(String, String, usize)> = corrections.into_iter().map(|((a, b), n)| (a, b, n)).collect();
    top_corrections.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    top_corrections.truncate(10);
    Trends {
        tickets: total,
        current_period: label(&cur_weeks),
        previous_period: label(&prev_weeks),
        current: period.iter().filter(|&&p| p == 2).count(),
        previous: period.iter().filter(|&&p| p == 1).count(),
        weekly,
        by_domain,
        by_unit,
        by_town,
        units,
        dispatch: DispatchQuality { with_suggestion: with_s, changed, change_rate: (with_s > 0).then(|| (changed as f64 / with_s as f64 * 1000.0).round() / 1000.0), top_corrections },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_time;

    fn t(time: &str, domain: &str, unit: &str, suggested: &str, town: &str) -> Ticket {
        Ticket {
            id: time.into(),
            time_ms: parse_time(time).unwrap(),
            title: "x".into(),
            domain: Some(domain.into()),
            unit: Some(unit.into()),
            suggested_unit: Some(suggested.into()),
            unit_changed: unit != suggested,
            town: Some(town.into()),
            closed: unit == "市住建局",
            ..Default::default()
        }
    }

    #[test]
    fn weekly_counts_and_period_change() {
        let ts = vec![
            t("2019-03-04 09:00:00", "城乡建设", "市住建局", "市住建局", "南城街道"),
            t("2019-03-05 09:00:00", "城乡建设", "市住建局", "市城管局", "南城街道"),
            // An empty week between.
            t("2019-03-18 09:00:00", "环境保护", "市生态环境局", "市生态环境局", "东城街道"),
            t("2019-03-19 09:00:00", "城乡建设", "市住建局", "市住建局", "南城街道"),
            t("2019-03-20 09:00:00", "城乡建设", "市城管局", "市住建局", "南城街道"),
        ];
        let tr = trends(&ts, None, &Config::default());
        let w: Vec<(String, usize)> = tr.weekly.iter().map(|w| (w.week.clone(), w.count)).collect();
        assert_eq!(w, vec![("2019-W10".into(), 2), ("2019-W11".into(), 0), ("2019-W12".into(), 3)]);
        assert_eq!(tr.current_period, "2019-W12");
        assert_eq!(tr.previous_period, "2019-W11");
        let d = &tr.by_domain[0];
        assert_eq!((d.key.as_str(), d.total, d.current, d.previous, d.change_pct), ("城乡建设", 4, 2, 0, None));
        let zj = tr.units.iter().find(|u| u.unit == "市住建局").unwrap();
        assert_eq!((zj.tickets, zj.suggested, zj.changed_away, zj.closed), (3, 3, 1, 3));
        assert_eq!(tr.dispatch.with_suggestion, 5);
        assert_eq!(tr.dispatch.changed, 2);
        assert_eq!(tr.dispatch.change_rate, Some(0.4));
        assert_eq!(tr.by_town[0].key, "南城街道");
        let two = trends(&ts, None, &Config { period_weeks: 2, ..Default::default() });
        assert_eq!(two.current_period, "2019-W11..2019-W12");
        assert_eq!(two.previous, 2);
    }
}
