//! Run outputs: results.jsonl, summary.json, report.md and a self-contained report.html with
//! inline SVG charts (metric bars with intervals, confusion heat map, latency histogram).

use crate::run::ItemResult;
use crate::RunSummary;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub fn write_all(dir: &Path, summary: &RunSummary, results: &[ItemResult]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut lines = String::new();
    for r in results {
        lines.push_str(&serde_json::to_string(r).unwrap_or_default());
        lines.push('\n');
    }
    std::fs::write(dir.join("results.jsonl"), lines)?;
    std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(summary).unwrap_or_default())?;
    std::fs::write(dir.join("report.md"), markdown(summary))?;
    std::fs::write(dir.join("report.html"), html(summary, results))?;
    Ok(())
}

pub fn markdown(s: &RunSummary) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {} — {}\n", s.suite, if s.passed { "passed" } else { "FAILED" });
    let _ = writeln!(md, "{}\n", s.description);
    let _ = writeln!(md, "| metric | value | 95% CI |\n| --- | ---: | --- |");
    for (name, m) in &s.metrics {
        let ci = m.ci95.map(|(a, b)| format!("[{a:.3}, {b:.3}]")).unwrap_or_default();
        let _ = writeln!(md, "| {name} | {:.4} | {ci} |", m.value);
    }
    let _ = writeln!(md, "\n| latency | value |\n| --- | ---: |");
    for (k, v) in &s.latency {
        let _ = writeln!(md, "| {k} | {v:.2} |");
    }
    if let Some(c) = &s.calibration {
        md.push_str(&calibration_markdown(c));
    }
    if !s.failed_thresholds.is_empty() {
        let _ = writeln!(md, "\nThresholds not met:\n");
        for f in &s.failed_thresholds {
            let _ = writeln!(md, "- {f}");
        }
    }
    let _ = writeln!(md, "\n{} items in {:.1} s. Suite sha256 {}, commit {}, seed {}.", s.items, s.seconds, &s.suite_sha256[..12.min(s.suite_sha256.len())], s.git_commit, s.seed);
    for d in &s.datasets {
        let _ = writeln!(md, "- dataset `{}`: {} of {} rows, sha256 {}", d.path, d.items, d.rows, &d.sha256[..12]);
    }
    md
}

fn calibration_markdown(c: &crate::calibration::Calibration) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "\nCalibration over {} rows (ECE {:.3}): reliability diagram\n\n| confidence | rows | mean confidence | accuracy |\n| --- | ---: | ---: | ---: |", c.rows, c.ece);
    for b in c.bins.iter().filter(|b| b.n > 0) {
        let _ = writeln!(md, "| {:.1}–{:.1} | {} | {:.3} | {:.3} |", b.lo, b.hi, b.n, b.mean_confidence, b.accuracy);
    }
    let _ = writeln!(md, "\nPrecision/coverage (answer only at or above the threshold):\n\n| threshold | coverage | precision |\n| ---: | ---: | ---: |");
    for p in &c.curve {
        let _ = writeln!(md, "| {:.3} | {:.3} | {:.3} |", p.threshold, p.coverage, p.precision);
    }
    match &c.at_target_precision {
        Some(p) => {
            let _ = writeln!(
                md,
                "\nAt precision ≥ {:.2}: confidence ≥ {:.3} covers {:.1} % of rows (precision {:.3}); the other {:.1} % need review.",
                crate::calibration::TARGET_PRECISION,
                p.threshold,
                p.coverage * 100.0,
                p.precision,
                (1.0 - p.coverage) * 100.0
            );
        }
        None => {
            let _ = writeln!(md, "\nNo threshold reaches precision {:.2}: every row needs review.", crate::calibration::TARGET_PRECISION);
        }
    }
    md
}

/// The reliability diagram (accuracy per confidence bin against the diagonal) and the
/// precision/coverage curve, side by side.
fn reliability(c: &crate::calibration::Calibration) -> String {
    let mut svg = String::from("<svg width='560' height='250' xmlns='http://www.w3.org/2000/svg' font-size='11'>");
    // Left: 200×200 reliability, bars = accuracy per bin, line = perfect calibration.
    let _ = write!(svg, "<rect x='30' y='10' width='200' height='200' fill='none' stroke='#888'/><line x1='30' y1='210' x2='230' y2='10' stroke='#bbb' stroke-dasharray='4'/>");
    for b in c.bins.iter().filter(|b| b.n > 0) {
        let h = b.accuracy * 200.0;
        let _ = write!(svg, "<rect x='{:.1}' y='{:.1}' width='18' height='{h:.1}' fill='#3b7dd8'><title>{:.1}–{:.1}: {} rows, accuracy {:.3}</title></rect>", 31.0 + b.lo * 200.0, 210.0 - h, b.lo, b.hi, b.n, b.accuracy);
    }
    let _ = write!(svg, "<text x='30' y='228'>confidence → (ECE {:.3})</text><text x='0' y='110'>acc.</text>", c.ece);
    // Right: precision against coverage.
    let _ = write!(svg, "<rect x='330' y='10' width='200' height='200' fill='none' stroke='#888'/>");
    let points: Vec<String> = c.curve.iter().map(|p| format!("{:.1},{:.1}", 330.0 + p.coverage * 200.0, 210.0 - p.precision * 200.0)).collect();
    let _ = write!(svg, "<polyline points='{}' fill='none' stroke='#6aa84f' stroke-width='2'/>", points.join(" "));
    let target = 210.0 - crate::calibration::TARGET_PRECISION * 200.0;
    let _ = write!(svg, "<line x1='330' x2='530' y1='{target:.1}' y2='{target:.1}' stroke='#c00' stroke-dasharray='3'/><text x='330' y='228'>coverage → (precision ↑; red: {:.2})</text>", crate::calibration::TARGET_PRECISION);
    let note = match &c.at_target_precision {
        Some(p) => format!("At precision ≥ {:.2}: confidence ≥ {:.3} covers {:.1} % of rows; {:.1} % need review.", crate::calibration::TARGET_PRECISION, p.threshold, p.coverage * 100.0, (1.0 - p.coverage) * 100.0),
        None => format!("No threshold reaches precision {:.2}.", crate::calibration::TARGET_PRECISION),
    };
    format!("<h2>Calibration</h2>{svg}</svg><p>{}</p>", esc(&note))
}

fn bars(metrics: &BTreeMap<String, crate::run::Metric>) -> String {
    let rows: Vec<(&String, &crate::run::Metric)> = metrics.iter().filter(|(_, m)| (0.0..=1.0).contains(&m.value)).collect();
    let h = 24 * rows.len() + 10;
    let mut svg = format!("<svg width='560' height='{h}' xmlns='http://www.w3.org/2000/svg' font-size='12'>");
    for (i, (name, m)) in rows.iter().enumerate() {
        let y = 5 + i * 24;
        let w = (m.value * 360.0).round();
        let _ = write!(svg, "<text x='0' y='{}'>{}</text><rect x='150' y='{y}' width='{w}' height='16' fill='#3b7dd8'/>", y + 12, esc(name));
        if let Some((lo, hi)) = m.ci95 {
            let _ = write!(svg, "<line x1='{}' x2='{}' y1='{}' y2='{}' stroke='#222' stroke-width='2'/>", 150.0 + lo * 360.0, 150.0 + hi * 360.0, y + 8, y + 8);
        }
        let _ = write!(svg, "<text x='{}' y='{}'>{:.3}</text>", 515, y + 12, m.value);
    }
    svg + "</svg>"
}

fn histogram(latencies: &[f64]) -> String {
    if latencies.is_empty() {
        return String::new();
    }
    let max = latencies.iter().copied().fold(0.0f64, f64::max).max(1e-9);
    let mut bins = [0usize; 20];
    for &l in latencies {
        bins[((l / max * 20.0) as usize).min(19)] += 1;
    }
    let top = *bins.iter().max().unwrap_or(&1) as f64;
    let mut svg = String::from("<svg width='560' height='170' xmlns='http://www.w3.org/2000/svg' font-size='11'>");
    for (i, &b) in bins.iter().enumerate() {
        let h = (b as f64 / top * 130.0).round();
        let _ = write!(svg, "<rect x='{}' y='{}' width='24' height='{h}' fill='#6aa84f'/>", 20 + i * 26, 140.0 - h);
    }
    let _ = write!(svg, "<text x='20' y='160'>0 ms</text><text x='470' y='160'>{max:.0} ms</text></svg>");
    svg
}

fn confusion(results: &[ItemResult]) -> String {
    let mut m: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for r in results {
        let (Some(g), Some(p)) = (r.expected.clone(), r.output.get("predicted").and_then(Value::as_str)) else { continue };
        *m.entry(g).or_default().entry(p.to_string()).or_default() += 1;
    }
    if m.is_empty() {
        return String::new();
    }
    let mut labels: Vec<String> = m.keys().cloned().collect();
    for row in m.values() {
        for p in row.keys() {
            if !labels.contains(p) {
                labels.push(p.clone());
            }
        }
    }
    labels.truncate(30);
    let mut t = String::from("<table class='cm'><tr><th>gold \\ predicted</th>");
    for l in &labels {
        let _ = write!(t, "<th>{}</th>", esc(l));
    }
    t.push_str("</tr>");
    for g in labels.iter().filter(|l| m.contains_key(*l)) {
        let row = &m[g];
        let total: usize = row.values().sum();
        let _ = write!(t, "<tr><th>{}</th>", esc(g));
        for p in &labels {
            let n = row.get(p).copied().unwrap_or(0);
            let a = if total == 0 { 0.0 } else { n as f64 / total as f64 };
            let _ = write!(t, "<td style='background:rgba(59,125,216,{a:.2})'>{}</td>", if n > 0 { n.to_string() } else { String::new() });
        }
        t.push_str("</tr>");
    }
    t + "</table>"
}

pub fn html(s: &RunSummary, results: &[ItemResult]) -> String {
    let lat: Vec<f64> = results.iter().map(|r| r.latency_ms).collect();
    let mut failures = String::new();
    for r in results.iter().filter(|r| r.scores.get("correct") == Some(&0.0)).take(30) {
        let _ = write!(
            failures,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.id),
            esc(&r.input.chars().take(80).collect::<String>()),
            esc(&r.expected.clone().unwrap_or_default().chars().take(60).collect::<String>()),
            esc(&r.output.get("predicted").or_else(|| r.output.get("text")).map(|v| v.to_string()).unwrap_or_default().chars().take(80).collect::<String>())
        );
    }
    format!(
        "<!doctype html><html lang='zh'><meta charset='utf-8'><title>{name}</title>\
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;font-size:12px}}.cm td{{text-align:center}}</style>\
<h1>{name} <small>{status}</small></h1><p>{desc}</p><h2>Metrics (bars with 95% bootstrap intervals)</h2>{bars}\
<h2>Latency</h2><p>p50 {p50:.1} ms · p95 {p95:.1} ms · p99 {p99:.1} ms · {ips:.2} items/s</p>{hist}\
{calibration}<h2>Confusion matrix</h2>{cm}<h2>Wrong items (first 30)</h2><table><tr><th>id</th><th>input</th><th>expected</th><th>output</th></tr>{failures}</table>\
<h2>Reproducibility</h2><pre>{repro}</pre></html>",
        name = esc(&s.suite),
        status = if s.passed { "passed" } else { "FAILED" },
        desc = esc(&s.description),
        bars = bars(&s.metrics),
        p50 = s.latency.get("p50_ms").unwrap_or(&0.0),
        p95 = s.latency.get("p95_ms").unwrap_or(&0.0),
        p99 = s.latency.get("p99_ms").unwrap_or(&0.0),
        ips = s.latency.get("items_per_s").unwrap_or(&0.0),
        hist = histogram(&lat),
        cm = confusion(results),
        calibration = s.calibration.as_ref().map(reliability).unwrap_or_default(),
        failures = failures,
        repro = esc(&serde_json::to_string_pretty(&serde_json::json!({
            "suite_sha256": s.suite_sha256, "datasets": s.datasets, "git_commit": s.git_commit, "system": s.system,
            "machine": s.machine, "seed": s.seed, "started_at": s.started_at
        })).unwrap_or_default()),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_calibration_section_states_the_review_share() {
        let c = crate::calibration::calibrate(&[(0.9, true), (0.8, true), (0.3, false), (0.2, true)]).unwrap();
        let md = super::calibration_markdown(&c);
        assert!(md.contains("| 0.9–1.0 | 1 |") && md.contains("confidence ≥ 0.800 covers 50.0 % of rows") && md.contains("50.0 % need review"), "{md}");
        let html = super::reliability(&c);
        assert!(html.contains("<polyline") && html.contains("need review"), "{html}");
    }
}
