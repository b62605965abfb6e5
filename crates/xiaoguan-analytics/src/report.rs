//! Reports: Markdown, and HTML with inline SVG charts drawn with plotters' SVG backend
//! (weekly ticket counts; top units, or top towns when no unit is known). The output depends
//! only on the analysis: same input, same bytes.

use crate::hot::HotIssue;
use crate::repeats::RepeatKind;
use crate::similarity::SimilarityKind;
use crate::trends::{DimCount, Trends};
use crate::Analysis;
use plotters::prelude::*;
use std::fmt::Write;

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn sim_label(k: SimilarityKind) -> &'static str {
    match k {
        SimilarityKind::Embedding => "embedding cosine",
        SimilarityKind::TfIdf => "TF-IDF over character bigrams (no model)",
    }
}

fn pct(p: Option<f64>) -> String {
    match p {
        Some(p) if p > 0.0 => format!("+{p:.1}%"),
        Some(p) => format!("{p:.1}%"),
        None => "—".into(),
    }
}

fn top_n(a: &Analysis) -> usize {
    a.config.top.max(1)
}

pub fn hot_markdown(a: &Analysis, out: &mut String) {
    let h = &a.hot;
    let _ = writeln!(out, "## 热点问题 (hot issues)\n");
    let _ = writeln!(
        out,
        "{} tickets, {} in {} groups of ≥ {}; window {} days; {} candidate pairs, {} links.\n",
        h.tickets,
        h.grouped_tickets,
        h.groups.len(),
        a.config.min_group,
        a.config.window_days,
        h.candidate_pairs,
        h.links
    );
    let _ = writeln!(out, "Hot score = R + 0.3·(N − R) + ln(1 + likes) + 0.5·ln(1 + span days); N tickets, R distinct reporters.\n");
    let _ = writeln!(out, "| # | 热点问题 | tickets | reporters | likes | span | score |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for g in h.groups.iter().take(top_n(a)) {
        let _ = writeln!(out, "| {} | {} | {} | {} | {} | {} – {} | {:.2} |", g.rank, md_cell(&g.name), g.tickets, g.reporters, g.likes, g.first, g.last, g.score);
    }
    let _ = writeln!(out);
    for g in h.groups.iter().take(top_n(a).min(10)) {
        issue_markdown(g, out);
    }
}

fn issue_markdown(g: &HotIssue, out: &mut String) {
    let _ = writeln!(out, "### {}. {}\n", g.rank, g.name);
    let _ = writeln!(out, "{} tickets from {} reporters, {} likes, {} – {}, coherence {:.2}.\n", g.tickets, g.reporters, g.likes, g.first, g.last, g.coherence);
    for m in g.members.iter().take(15) {
        let _ = writeln!(out, "- {} `{}` {}", m.time, m.id, md_cell(&m.title));
    }
    if g.members.len() > 15 {
        let _ = writeln!(out, "- … and {} more", g.members.len() - 15);
    }
    let _ = writeln!(out);
}

pub fn weekly_markdown(a: &Analysis, out: &mut String) {
    let _ = writeln!(out, "## 每周一题 candidates\n");
    let _ = writeln!(out, "Groups seen in at least {} distinct ISO weeks: {}.\n", a.config.weekly_min_weeks, a.weekly.len());
    if a.weekly.is_empty() {
        return;
    }
    let _ = writeln!(out, "| # | matter | weeks | tickets | reporters | first – last | hot rank |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for w in a.weekly.iter().take(top_n(a)) {
        let _ = writeln!(out, "| {} | {} | {} | {} | {} | {} – {} | {} |", w.rank, md_cell(&w.name), w.weeks, w.tickets, w.reporters, w.first, w.last, w.hot_rank);
    }
    let _ = writeln!(out);
}

pub fn repeats_markdown(a: &Analysis, out: &mut String) {
    let r = &a.repeats;
    let _ = writeln!(out, "## 重复件 (repeats and duplicates)\n");
    let kinds: Vec<String> = r.by_kind.iter().map(|(k, n)| format!("{} {n}", k.label())).collect();
    let _ = writeln!(
        out,
        "{} repeat links ({}); {} tickets repeat an earlier one; {} came after the earlier one was closed; {} chains. Look-back {} days.\n",
        r.links.len(),
        if kinds.is_empty() { "none".into() } else { kinds.join(", ") },
        r.repeating_tickets,
        r.after_close,
        r.chains.len(),
        a.config.repeat_window_days
    );
    for ch in r.chains.iter().take(top_n(a)) {
        let kinds: Vec<String> = ch.kinds.iter().map(|(k, n)| format!("{} {n}", k.label())).collect();
        let _ = writeln!(
            out,
            "### {}. {} / {}\n\n{} tickets, {} reporters, {} – {}; {}; after close: {}.\n",
            ch.rank,
            ch.place.as_deref().unwrap_or("（未注明地点）"),
            ch.matter,
            ch.tickets.len(),
            ch.reporters,
            ch.first,
            ch.last,
            kinds.join(", "),
            ch.after_close
        );
        for t in ch.tickets.iter().take(12) {
            let _ = writeln!(out, "- {} `{}` {}{}", t.time, t.id, md_cell(&t.title), if t.closed { " (closed)" } else { "" });
        }
        if ch.tickets.len() > 12 {
            let _ = writeln!(out, "- … and {} more", ch.tickets.len() - 12);
        }
        let _ = writeln!(out);
    }
}

fn dim_table(title: &str, v: &[DimCount], t: &Trends, n: usize, out: &mut String) {
    if v.is_empty() {
        return;
    }
    let _ = writeln!(out, "### {title}\n");
    let _ = writeln!(out, "| {title} | total | {} | {} | change |", t.current_period, t.previous_period);
    let _ = writeln!(out, "|---|---|---|---|---|");
    for d in v.iter().take(n) {
        let _ = writeln!(out, "| {} | {} | {} | {} | {:+} ({}) |", md_cell(&d.key), d.total, d.current, d.previous, d.change, pct(d.change_pct));
    }
    let _ = writeln!(out);
}

pub fn trends_markdown(a: &Analysis, out: &mut String) {
    let t = &a.trends;
    let _ = writeln!(out, "## 趋势 (trends)\n");
    let change = if t.previous > 0 { pct(Some(((t.current as f64 - t.previous as f64) / t.previous as f64 * 1000.0).round() / 10.0)) } else { "—".into() };
    let _ = writeln!(out, "{} tickets over {} ISO weeks. {}: {} tickets, {}: {} ({change}).\n", t.tickets, t.weekly.len(), t.current_period, t.current, t.previous_period, t.previous);
    let _ = writeln!(out, "| week | starts | tickets |");
    let _ = writeln!(out, "|---|---|---|");
    for w in t.weekly.iter().rev().take(12).collect::<Vec<_>>().into_iter().rev() {
        let _ = writeln!(out, "| {} | {} | {} |", w.week, w.start, w.count);
    }
    let _ = writeln!(out);
    let n = top_n(a);
    dim_table("domain", &t.by_domain, t, n, out);
    dim_table("unit", &t.by_unit, t, n, out);
    dim_table("town", &t.by_town, t, n, out);
    if !t.units.is_empty() {
        let _ = writeln!(out, "### unit load and dispatch quality\n");
        let d = &t.dispatch;
        let _ = writeln!(
            out,
            "{} tickets had a suggested unit; agents changed {} ({}).\n",
            d.with_suggestion,
            d.changed,
            d.change_rate.map_or("—".into(), |r| format!("{:.1}%", r * 100.0))
        );
        let _ = writeln!(out, "| unit | tickets | share | suggested | changed away | change rate | closed |");
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for u in t.units.iter().take(n) {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1}% | {} | {} | {} | {:.1}% |",
                md_cell(&u.unit),
                u.tickets,
                u.share * 100.0,
                u.suggested,
                u.changed_away,
                u.change_rate.map_or("—".into(), |r| format!("{:.1}%", r * 100.0)),
                u.closed_rate * 100.0
            );
        }
        let _ = writeln!(out);
        if !d.top_corrections.is_empty() {
            let _ = writeln!(out, "| suggested | dispatched to | times |\n|---|---|---|");
            for (s, c, k) in &d.top_corrections {
                let _ = writeln!(out, "| {} | {} | {k} |", md_cell(s), md_cell(c));
            }
            let _ = writeln!(out);
        }
    }
}

/// Which sections a report has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Hot,
    Repeats,
    Trends,
    Weekly,
}

pub const ALL: &[Section] = &[Section::Hot, Section::Weekly, Section::Repeats, Section::Trends];

fn header(a: &Analysis, out: &mut String) {
    let _ = writeln!(out, "# 智能数据分析 — {}\n", a.source);
    let _ = writeln!(out, "{} tickets; similarity: {}.\n", a.tickets, sim_label(a.similarity));
}

pub fn markdown_sections(a: &Analysis, sections: &[Section]) -> String {
    let mut out = String::new();
    header(a, &mut out);
    for s in sections {
        match s {
            Section::Hot => hot_markdown(a, &mut out),
            Section::Repeats => repeats_markdown(a, &mut out),
            Section::Trends => trends_markdown(a, &mut out),
            Section::Weekly => weekly_markdown(a, &mut out),
        }
    }
    out
}

pub fn markdown(a: &Analysis) -> String {
    markdown_sections(a, ALL)
}

/// Weekly ticket counts as bars with a line over them.
pub fn weekly_chart_svg(t: &Trends) -> String {
    let mut buf = String::new();
    let n = t.weekly.len();
    if n == 0 {
        return buf;
    }
    let max = t.weekly.iter().map(|w| w.count).max().unwrap_or(1).max(1);
    {
        let root = SVGBackend::with_string(&mut buf, (860, 300)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let labels: Vec<String> = t.weekly.iter().map(|w| w.week.clone()).collect();
        let chart = ChartBuilder::on(&root)
            .margin(12)
            .caption("tickets per ISO week", ("sans-serif", 16))
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..n as f64, 0f64..(max as f64 * 1.1));
        if let Ok(mut chart) = chart {
            let _ = chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n.min(12))
                .x_label_formatter(&|x| labels.get(*x as usize).cloned().unwrap_or_default())
                .y_desc("tickets")
                .draw();
            let _ = chart.draw_series(t.weekly.iter().enumerate().map(|(i, w)| Rectangle::new([(i as f64 + 0.1, 0.0), (i as f64 + 0.9, w.count as f64)], RGBColor(158, 202, 225).filled())));
            let _ = chart.draw_series(LineSeries::new(t.weekly.iter().enumerate().map(|(i, w)| (i as f64 + 0.5, w.count as f64)), RGBColor(33, 113, 181).stroke_width(2)));
        }
        let _ = root.present();
    }
    buf
}

/// Horizontal bars: (label, value), largest first.
pub fn bar_chart_svg(title: &str, rows: &[(String, usize)]) -> String {
    let mut buf = String::new();
    if rows.is_empty() {
        return buf;
    }
    let row_h = 24i32;
    let (w, h) = (860u32, (rows.len() as i32 * row_h + 50) as u32);
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1) as f64;
    {
        let root = SVGBackend::with_string(&mut buf, (w, h)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let _ = root.draw(&Text::new(title.to_string(), (12, 8), ("sans-serif", 16).into_font()));
        let left = 260i32;
        let width = (w as i32 - left - 70) as f64;
        for (i, (label, v)) in rows.iter().enumerate() {
            let y = 36 + i as i32 * row_h;
            let bw = ((*v as f64 / max) * width).round() as i32;
            let short: String = label.chars().take(18).collect();
            let _ = root.draw(&Text::new(short, (12, y + 4), ("sans-serif", 13).into_font()));
            let _ = root.draw(&Rectangle::new([(left, y), (left + bw.max(1), y + row_h - 6)], RGBColor(65, 171, 93).filled()));
            let _ = root.draw(&Text::new(v.to_string(), (left + bw + 6, y + 4), ("sans-serif", 13).into_font()));
        }
        let _ = root.present();
    }
    buf
}

fn html_table(out: &mut String, head: &[&str], rows: Vec<Vec<String>>) {
    out.push_str("<table><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", html_escape(h));
    }
    out.push_str("</tr></thead><tbody>\n");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", html_escape(&c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

pub fn html_sections(a: &Analysis, sections: &[Section]) -> String {
    let mut o = String::new();
    let title = format!("智能数据分析 — {}", a.source);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:14px}}th{{background:#f3f3f3}}details{{margin:.3em 0}}</style></head><body>\n",
        html_escape(&title)
    );
    let _ = writeln!(o, "<h1>{}</h1>\n<p>{} tickets; similarity: {}.</p>", html_escape(&title), a.tickets, sim_label(a.similarity));
    let n = top_n(a);
    for s in sections {
        match s {
            Section::Hot => {
                let h = &a.hot;
                let _ = writeln!(o, "<h2>热点问题 (hot issues)</h2>\n<p>{} tickets, {} in {} groups; window {} days. Hot score = R + 0.3·(N − R) + ln(1 + likes) + 0.5·ln(1 + span days).</p>", h.tickets, h.grouped_tickets, h.groups.len(), a.config.window_days);
                html_table(
                    &mut o,
                    &["#", "热点问题", "tickets", "reporters", "likes", "span", "score"],
                    h.groups.iter().take(n).map(|g| vec![g.rank.to_string(), g.name.clone(), g.tickets.to_string(), g.reporters.to_string(), g.likes.to_string(), format!("{} – {}", g.first, g.last), format!("{:.2}", g.score)]).collect(),
                );
                for g in h.groups.iter().take(n.min(10)) {
                    let _ = writeln!(o, "<details><summary>{}. {} ({} tickets)</summary><ul>", g.rank, html_escape(&g.name), g.tickets);
                    for m in &g.members {
                        let _ = writeln!(o, "<li>{} <code>{}</code> {}</li>", html_escape(&m.time), html_escape(&m.id), html_escape(&m.title));
                    }
                    o.push_str("</ul></details>\n");
                }
            }
            Section::Weekly => {
                let _ = writeln!(o, "<h2>每周一题 candidates</h2>\n<p>Groups seen in at least {} distinct ISO weeks: {}.</p>", a.config.weekly_min_weeks, a.weekly.len());
                html_table(
                    &mut o,
                    &["#", "matter", "weeks", "tickets", "reporters", "first – last", "hot rank"],
                    a.weekly.iter().take(n).map(|w| vec![w.rank.to_string(), w.name.clone(), w.weeks.to_string(), w.tickets.to_string(), w.reporters.to_string(), format!("{} – {}", w.first, w.last), w.hot_rank.to_string()]).collect(),
                );
            }
            Section::Repeats => {
                let r = &a.repeats;
                let kinds: Vec<String> = r.by_kind.iter().map(|(k, n): (&RepeatKind, &usize)| format!("{} {n}", k.label())).collect();
                let _ = writeln!(o, "<h2>重复件 (repeats and duplicates)</h2>\n<p>{} links ({}); {} tickets repeat an earlier one; {} after close; {} chains.</p>", r.links.len(), html_escape(&kinds.join(", ")), r.repeating_tickets, r.after_close, r.chains.len());
                for ch in r.chains.iter().take(n) {
                    let _ = writeln!(o, "<details><summary>{}. {} / {} — {} tickets, {} reporters, after close {}</summary><ul>", ch.rank, html_escape(ch.place.as_deref().unwrap_or("（未注明地点）")), html_escape(&ch.matter), ch.tickets.len(), ch.reporters, ch.after_close);
                    for t in &ch.tickets {
                        let _ = writeln!(o, "<li>{} <code>{}</code> {}{}</li>", html_escape(&t.time), html_escape(&t.id), html_escape(&t.title), if t.closed { " (closed)" } else { "" });
                    }
                    o.push_str("</ul></details>\n");
                }
            }
            Section::Trends => {
                let t = &a.trends;
                let _ = writeln!(o, "<h2>趋势 (trends)</h2>\n<p>{}: {} tickets; {}: {}.</p>", html_escape(&t.current_period), t.current, html_escape(&t.previous_period), t.previous);
                o.push_str(&weekly_chart_svg(t));
                o.push('\n');
                let (title, rows): (&str, Vec<(String, usize)>) = if !t.units.is_empty() {
                    ("top units", t.units.iter().take(15).map(|u| (u.unit.clone(), u.tickets)).collect())
                } else {
                    ("top towns / districts", t.by_town.iter().take(15).map(|d| (d.key.clone(), d.total)).collect())
                };
                o.push_str(&bar_chart_svg(title, &rows));
                o.push('\n');
                for (name, v) in [("domain", &t.by_domain), ("unit", &t.by_unit), ("town", &t.by_town)] {
                    if v.is_empty() {
                        continue;
                    }
                    let _ = writeln!(o, "<h3>{name}</h3>");
                    html_table(
                        &mut o,
                        &[name, "total", &t.current_period, &t.previous_period, "change"],
                        v.iter().take(n).map(|d| vec![d.key.clone(), d.total.to_string(), d.current.to_string(), d.previous.to_string(), format!("{:+} ({})", d.change, pct(d.change_pct))]).collect(),
                    );
                }
                if !t.units.is_empty() {
                    let d = &t.dispatch;
                    let _ = writeln!(o, "<h3>unit load and dispatch quality</h3><p>{} with a suggested unit; agents changed {} ({}).</p>", d.with_suggestion, d.changed, d.change_rate.map_or("—".into(), |r| format!("{:.1}%", r * 100.0)));
                    html_table(
                        &mut o,
                        &["unit", "tickets", "share", "suggested", "changed away", "change rate", "closed"],
                        t.units
                            .iter()
                            .take(n)
                            .map(|u| vec![u.unit.clone(), u.tickets.to_string(), format!("{:.1}%", u.share * 100.0), u.suggested.to_string(), u.changed_away.to_string(), u.change_rate.map_or("—".into(), |r| format!("{:.1}%", r * 100.0)), format!("{:.1}%", u.closed_rate * 100.0)])
                            .collect(),
                    );
                }
            }
        }
    }
    o.push_str("</body></html>\n");
    o
}

pub fn html(a: &Analysis) -> String {
    html_sections(a, ALL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{synth, Config};

    #[test]
    fn reports_are_deterministic_and_carry_charts() {
        let ts = synth::tickets(600, 7);
        let cfg = Config::default();
        let a = Analysis::run(&ts, &cfg, "synthetic");
        let b = Analysis::run(&ts, &cfg, "synthetic");
        let (h1, h2) = (html(&a), html(&b));
        assert_eq!(h1, h2);
        assert_eq!(markdown(&a), markdown(&b));
        assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
        assert_eq!(h1.matches("<svg").count(), 2, "two inline charts");
        assert!(h1.contains("tickets per ISO week") && h1.contains("top units"));
        let md = markdown(&a);
        assert!(md.contains("## 热点问题") && md.contains("## 趋势") && md.contains("## 重复件") && md.contains("## 每周一题"));
        assert!(md.contains("| 1 |"), "{md}");
    }

    #[test]
    fn html_escapes_ticket_text() {
        let mut ts = synth::tickets(50, 1);
        ts[0].title = "<script>alert(1)</script>".into();
        ts[1].title = ts[0].title.clone();
        let a = Analysis::run(&ts, &Config::default(), "x<y");
        let h = html(&a);
        assert!(!h.contains("<script>"));
        assert!(h.contains("x&lt;y"));
    }
}
