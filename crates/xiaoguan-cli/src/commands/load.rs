//! `xiaoguan bench http`: a closed-loop load generator against a running service — N clients
//! each sending the next request as soon as the last returns — reporting throughput, latency
//! percentiles of successful requests, status counts (429 = shed), and the server's memory.

use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xiaoguan_eval::metrics::percentile;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Route {
    Search,
    Tickets,
    Chat,
    Ask,
}

#[derive(Args, Debug)]
pub struct HttpBench {
    /// Base URL of the service; repeat it to spread the clients over several replicas
    /// (client i talks to URL i mod n).
    #[arg(long = "url", default_value = "http://127.0.0.1:8080")]
    pub urls: Vec<String>,
    #[arg(long, value_enum)]
    pub route: Route,
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    #[arg(long, env = "XIAOGUAN_API_KEY")]
    pub key: Option<String>,
    /// The server's PID: its resident memory is sampled during the run.
    #[arg(long)]
    pub pid: Option<u32>,
    #[arg(long)]
    pub json: bool,
}

const QUESTIONS: &[&str] = &[
    "失业保险金最长能领多久？",
    "灵活就业人员怎么参加养老保险？",
    "异地就医备案怎么办理？",
    "工伤认定申请的时限是多久？",
    "办理施工许可需要哪些材料？",
    "如何变更住房公积金委托收款信息？",
    "生育津贴怎么发放？",
    "创业担保贷款的申请条件是什么？",
];

const TICKETS: &[&str] = &[
    "小区门口的路灯坏了三个月，晚上很黑，老人经常摔倒，多次找物业没有结果，希望尽快维修。",
    "公司拖欠我们二十多名工人三个月工资，老板联系不上，请求相关部门帮助讨薪。",
    "我是灵活就业人员，想咨询一下怎么在广州缴纳养老保险，需要带什么材料？",
    "楼下餐馆油烟很大，每天晚上排风扇噪音扰民，投诉过几次都没有改善。",
    "建议在地铁站出口增设共享单车停放点，现在单车乱停挡住了人行道。",
];

fn body(route: Route, i: usize) -> (String, Value) {
    match route {
        Route::Search => ("/v1/search".into(), json!({"kb": "social-insurance", "query": QUESTIONS[i % QUESTIONS.len()], "limit": 5})),
        Route::Tickets => ("/v1/tickets/assist".into(), json!({"text": TICKETS[i % TICKETS.len()]})),
        Route::Ask => ("/v1/ask".into(), json!({"question": QUESTIONS[i % QUESTIONS.len()], "mode": "extractive"})),
        Route::Chat => ("/v1/chat/completions".into(), json!({"model": "auto", "mode": "generate", "max_tokens": 48, "messages": [{"role": "user", "content": QUESTIONS[i % QUESTIONS.len()]}]})),
    }
}

pub fn rss_mb(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn run(b: &HttpBench) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let results: Arc<Mutex<Vec<(u16, f64)>>> = Arc::default();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(300))).build().into();
    let started = Instant::now();
    let mut handles = Vec::new();
    for c in 0..b.concurrency.max(1) {
        let (stop, results, agent, url, key, route) = (stop.clone(), results.clone(), agent.clone(), b.urls[c % b.urls.len()].trim_end_matches('/').to_string(), b.key.clone(), b.route);
        handles.push(std::thread::spawn(move || {
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let (path, payload) = body(route, i);
                // Clients step through the request list from different offsets.
                i += 7;
                let t = Instant::now();
                let mut req = agent.post(&format!("{url}{path}"));
                if let Some(k) = &key {
                    req = req.header("Authorization", &format!("Bearer {k}"));
                }
                let status = match req.send_json(&payload) {
                    Ok(mut r) => {
                        let s = r.status().as_u16();
                        let _ = r.body_mut().read_to_vec();
                        s
                    }
                    Err(_) => 0,
                };
                results.lock().unwrap_or_else(|p| p.into_inner()).push((status, t.elapsed().as_secs_f64() * 1000.0));
            }
        }));
    }
    let mut peak_rss: f64 = 0.0;
    let deadline = started + Duration::from_secs(b.seconds);
    while Instant::now() < deadline {
        if let Some(r) = b.pid.and_then(rss_mb) {
            peak_rss = peak_rss.max(r);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let all = results.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for (s, _) in &all {
        *statuses.entry(if *s == 0 { "error".into() } else { s.to_string() }).or_default() += 1;
    }
    let ok: Vec<f64> = all.iter().filter(|(s, _)| *s == 200).map(|(_, l)| *l).collect();
    let summary = json!({
        "route": format!("{:?}", b.route).to_lowercase(), "concurrency": b.concurrency, "seconds": elapsed,
        "requests": all.len(), "ok_per_s": ok.len() as f64 / elapsed, "statuses": statuses,
        "p50_ms": percentile(&ok, 50.0), "p95_ms": percentile(&ok, 95.0), "p99_ms": percentile(&ok, 99.0),
        "server_peak_rss_mb": b.pid.map(|_| peak_rss),
    });
    if b.json {
        println!("{summary}");
    } else {
        println!(
            "{:<8} c={:<3} {:>5} req in {:.0}s: {:.2} ok/s, p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, statuses {:?}{}",
            summary["route"].as_str().unwrap_or(""), b.concurrency, all.len(), elapsed, summary["ok_per_s"].as_f64().unwrap_or(0.0),
            summary["p50_ms"].as_f64().unwrap_or(0.0), summary["p95_ms"].as_f64().unwrap_or(0.0), summary["p99_ms"].as_f64().unwrap_or(0.0),
            statuses, b.pid.map(|_| format!(", server peak RSS {peak_rss:.0} MB")).unwrap_or_default()
        );
    }
    Ok(())
}
