//! Hot issues, repeats and trends on the real tipdm 2020 智慧政务 hot-messages file (4,326
//! citizen messages with likes). Skipped, saying why, when the data folder is absent.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use xiaoguan_analytics::{hot, load, place, repeats, trends, Config, Corpus, RepeatKind};

fn data_root() -> PathBuf {
    std::env::var_os("XIAOGUAN_DATA_ROOT").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
}

fn hot_messages() -> Option<Vec<xiaoguan_analytics::Ticket>> {
    let p = data_root().join("tipdm2020_smartgov_messages/hot_messages.jsonl");
    if !p.exists() {
        eprintln!("skipped: {} is absent (set XIAOGUAN_DATA_ROOT to the data folder)", p.display());
        return None;
    }
    Some(load::load_jsonl(&p, &load::FieldMap::default()).expect("hot_messages.jsonl loads"))
}

fn share(members: &[usize], ts: &[xiaoguan_analytics::Ticket], words: &[&str]) -> f64 {
    let n = members.iter().filter(|&&i| words.iter().any(|w| ts[i].title.contains(w) || ts[i].text.contains(w))).count();
    n as f64 / members.len() as f64
}

#[test]
fn hot_issues_on_the_tipdm_hot_messages() {
    let Some(ts) = hot_messages() else { return };
    assert_eq!(ts.len(), 4326);
    let cfg = Config::default();
    let c = Corpus::build(&ts, &cfg);
    let h = hot::hot_issues(&c, &cfg);
    let top = &h.groups[0];
    assert!(top.tickets >= 5, "top group has {} tickets", top.tickets);
    // No blob: the biggest real matter in the file has about 55 messages.
    assert!(h.groups.iter().all(|g| g.tickets <= 120), "a group of {}", h.groups.iter().map(|g| g.tickets).max().unwrap());
    assert!(h.groups.len() >= 100, "{} groups", h.groups.len());
    for g in &h.groups {
        assert!(!g.name.trim().is_empty() && !g.matter.trim().is_empty(), "{g:?}");
        // Within place: never two districts or two towns in one group.
        let districts: HashSet<&str> = g.indexes.iter().filter_map(|&i| c.places[i].district.as_deref()).collect();
        let towns: HashSet<&str> = g.indexes.iter().filter_map(|&i| c.places[i].town.as_deref()).collect();
        assert!(districts.len() <= 1 && towns.len() <= 1, "{}: {districts:?} {towns:?}", g.name);
        // Ranked by the documented score.
        assert!((g.score - hot::hot_score(g.tickets, g.reporters, g.likes, g.span_days)).abs() < 0.06, "{g:?}");
    }
    assert!(h.groups.windows(2).all(|w| w[0].score >= w[1].score));
    // The two big matters of the file are found, whole and pure.
    let find = |words: &[&str]| h.groups.iter().max_by_key(|g| (share(&g.indexes, &ts, words) * g.tickets as f64) as usize).unwrap();
    let mixing = find(&["搅拌"]);
    assert!(mixing.tickets >= 25 && share(&mixing.indexes, &ts, &["搅拌"]) >= 0.9, "{} {}", mixing.name, mixing.tickets);
    assert!(mixing.name.contains("丽发新城"), "{}", mixing.name);
    let parking = find(&["车位"]);
    assert!(parking.tickets >= 25 && share(&parking.indexes, &ts, &["伊景园", "滨河苑", "广铁"]) >= 0.9, "{} {}", parking.name, parking.tickets);
    assert!(h.groups[..2].iter().any(|g| g.rank == mixing.rank) && h.groups[..2].iter().any(|g| g.rank == parking.rank));
    let weekly = hot::weekly_candidates(&h, 3);
    assert!(!weekly.is_empty() && weekly.iter().all(|w| w.weeks >= 3));
}

#[test]
fn places_on_real_rows() {
    let Some(ts) = hot_messages() else { return };
    let with = |f: &dyn Fn(&place::Place) -> bool| ts.iter().filter(|t| f(&place::extract(&t.title, &t.text))).count() as f64 / ts.len() as f64;
    // Most messages name a district or town and a fine place.
    assert!(with(&|p| p.coarse_key().is_some()) > 0.55);
    assert!(with(&|p| p.fine_key().is_some()) > 0.65);
    let by_id = |id: &str| ts.iter().find(|t| t.id == id).unwrap();
    let p = {
        let t = by_id("188006");
        place::extract(&t.title, &t.text)
    };
    assert_eq!((p.district.as_deref(), p.fine_key()), (Some("A3区"), Some("米兰春天")));
    let t = by_id("188031");
    let p = place::extract(&t.title, &t.text);
    assert_eq!((p.district.as_deref(), p.town.as_deref(), p.fine_key()), (Some("A7县"), Some("春华镇"), Some("金鼎村")));
}

#[test]
fn repeats_and_trends_on_real_rows() {
    let Some(ts) = hot_messages() else { return };
    let cfg = Config::default();
    let c = Corpus::build(&ts, &cfg);
    let r = repeats::repeats(&c, &cfg);
    // The file holds re-posted messages (same title and text, another account id).
    let dup = r.links.iter().filter(|l| l.kind == RepeatKind::Duplicate).count();
    assert!(dup >= 50, "{dup} duplicates");
    assert!(r.links.iter().any(|l| l.kind == RepeatKind::Duplicate && ((l.earlier == "284147" && l.later == "360107") || (l.earlier == "360107" && l.later == "284147"))));
    for l in r.links.iter().filter(|l| l.kind == RepeatKind::SameReporter) {
        assert_eq!(ts[l.earlier_index].reporter, ts[l.later_index].reporter);
    }
    let t = trends::trends(&ts, Some(&c.places), &cfg);
    assert_eq!(t.weekly.iter().map(|w| w.count).sum::<usize>(), ts.len());
    assert!(t.by_town.iter().any(|d| d.key == "A7县"));
    // The assist-time call finds the earlier copies of a re-posted message.
    let new = ts.iter().find(|t| t.id == "360107").unwrap();
    let earlier: Vec<_> = ts.iter().filter(|t| t.time_ms <= new.time_ms && t.id != new.id && t.title.contains("魅力之城")).cloned().collect();
    let m = xiaoguan_analytics::find_same_matter(new, &earlier, &cfg, Some(&c.tfidf));
    assert!(m.iter().any(|x| x.id == "284147" && x.kind == RepeatKind::Duplicate), "{m:?}");
}
