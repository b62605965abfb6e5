//! SIGTERM and SIGINT: `kb ingest` stops at a batch boundary and exits non-zero with a message;
//! `serve` stops accepting, cancels a running ingest and exits within its bound with a code
//! that says so; the next ingest resumes and leaves the KB consistent. Over-limit files are
//! quarantined by `kb ingest` and listed by `kb stats`.

mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{cmd, free_port, http};
use xiaoguan_kb::definition::KbDefinition;
use xiaoguan_kb::KnowledgeBase;

fn write_docs(root: &Path, docs: usize, round: usize) {
    support::write_docs(root, docs, 40, round);
}

fn setup(root: &Path, docs: usize, limits: &str) {
    support::setup(root, docs, 40, "");
    if !limits.is_empty() {
        let def = root.join("kbs/t/kb.toml");
        let mut text = std::fs::read_to_string(&def).unwrap();
        text.push_str(limits);
        std::fs::write(def, text).unwrap();
    }
}

fn ingest(root: &Path) -> Command {
    cmd(root, &["kb", "ingest", "t", "--batch-docs", "4", "--quiet"])
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success());
}

/// Every committed document has exactly its chunks; returns (documents, points, documents at `round`).
fn check_consistent(root: &Path, round: usize) -> (usize, usize, usize) {
    let def = KbDefinition::load(&root.join("kbs/t/kb.toml")).unwrap();
    let kb = KnowledgeBase::open(&def, &root.join("home/kbs"), support::embedder(root)).unwrap();
    let state = kb.state();
    assert!(state.pending.is_empty() || !state.documents.is_empty() || state.version == 0);
    support::check_consistent(&kb, round)
}

/// Wait for the child, at most `limit`; (exit code, seconds, stderr).
fn wait_bounded(mut child: std::process::Child, limit: Duration) -> (Option<i32>, f64, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                e.read_to_string(&mut err).unwrap();
            }
            return (status.code(), started.elapsed().as_secs_f64(), err);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.wait();
            if let Some(mut e) = child.stderr.take() {
                e.read_to_string(&mut err).unwrap();
            }
            panic!("still running {:.1} s after the signal; stderr:\n{err}", started.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kb_ingest_stops_at_a_batch_boundary_on_sigterm_and_sigint_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let docs = 300;
    setup(root, docs, "");
    for (round, sig, code) in [(1, "-TERM", 143), (2, "-INT", 130)] {
        write_docs(root, docs, round);
        let child = ingest(root).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(700));
        signal(child.id(), sig);
        let (status, secs, err) = wait_bounded(child, Duration::from_secs(10));
        eprintln!("{sig}: exit {status:?} {secs:.2} s after the signal");
        if status == Some(0) {
            // The ingest finished before the signal: nothing to check this round.
            continue;
        }
        assert_eq!(status, Some(code), "{err}");
        assert!(err.contains("stopped by") && err.contains("batch boundary") && err.contains("to resume"), "{err}");
        assert!(secs < 5.0, "took {secs} s");
        let (_, _, current) = check_consistent(root, round);
        assert!(current < docs, "the ingest was not interrupted");
    }
    let out = ingest(root).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (committed, points, current) = check_consistent(root, 2);
    assert_eq!((committed, current), (docs, docs));
    assert_eq!(points, docs * 40, "duplicates or stale points left behind");
}

#[test]
fn an_over_limit_file_is_quarantined_listed_and_not_read_again_until_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    setup(root, 3, "[limits]\nmax_chars = 5000\n");
    let big = format!("# 超长条例\n<!-- INFO END -->\n{}", "第一条 很长的内容。\n".repeat(1000));
    std::fs::write(root.join("data/laws/超长条例.md"), &big).unwrap();
    let out = ingest(root).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("quarantined") && err.contains("max_chars"), "{err}");
    let stats = cmd(root, &["kb", "stats", "t"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let q = v["quarantine"].as_array().unwrap();
    assert_eq!(q.len(), 1, "{v}");
    assert_eq!(q[0]["key"], "laws/超长条例.md");
    assert_eq!(q[0]["limit"], "max_chars");
    assert_eq!(v["documents"], 3);
    // A source file stays where it is; the next ingest does not read it again.
    assert!(root.join("data/laws/超长条例.md").exists());
    let out = ingest(root).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("quarantined:"), "{err}");
    // Replaced (a new size): read again, indexed, released.
    std::fs::write(root.join("data/laws/超长条例.md"), "# 超长条例\n<!-- INFO END -->\n第一条 现在很短。\n").unwrap();
    let out = ingest(root).output().unwrap();
    assert!(out.status.success());
    let stats = cmd(root, &["kb", "stats", "t"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(v["quarantine"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["documents"], 4);
}

/// Start a served reindex of `t` and return once its status says it is ingesting.
fn reindex_until_ingesting(port: u16) {
    let (s, _, body) = http(port, "POST", "/v1/kbs/t/reindex", b"").unwrap();
    assert_eq!(s, 202, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let status_url = v["status_url"].as_str().unwrap().to_string();
    let started = Instant::now();
    loop {
        let (_, _, body) = http(port, "GET", &status_url, b"").unwrap();
        if body.contains("\"ingesting\"") {
            return;
        }
        assert!(!body.contains("\"indexed\""), "the reindex finished before the signal: {body}");
        assert!(started.elapsed() < Duration::from_secs(30), "{body}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_exits_within_its_bound_on_sigterm_during_an_ingest_and_the_kb_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let docs = 150;
    setup(root, docs, "");
    let out = ingest(root).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Every document changes: the reindex has to embed them all.
    write_docs(root, docs, 1);
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let assist = root.join("assist.toml");
    let child = cmd(root, &["serve", "--bind", &bind, "--config", assist.to_str().unwrap(), "--no-generator", "--upload-wait-secs", "0", "--shutdown-secs", "10"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if http(port, "GET", "/readyz", b"").is_some_and(|(s, _, _)| s == 200) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the service did not get ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Wait until it is ingesting, then SIGTERM.
    reindex_until_ingesting(port);
    std::thread::sleep(Duration::from_millis(300));
    signal(child.id(), "-TERM");
    let (code, secs, err) = wait_bounded(child, Duration::from_secs(12));
    eprintln!("serve: exit {code:?} {secs:.2} s after SIGTERM");
    assert_eq!(code, Some(3), "{err}");
    assert!(secs < 10.5, "{secs} s");
    assert!(err.contains("cancelled"), "{err}");
    let (committed, _, current) = check_consistent(root, 1);
    assert_eq!(committed, docs);
    assert!(current < docs, "the ingest was cancelled before the end");
    let out = ingest(root).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (committed, points, current) = check_consistent(root, 1);
    assert_eq!((committed, current, points), (docs, docs, docs * 40));
}

/// The case: SIGTERM while `serve` re-ingests the whole real `laws` corpus (3,400+
/// statutes from ../shared/data, read as `knowledge-bases/laws` reads them; the tiny embedder
/// keeps it quick). The service exits within its bound, the KB holds only whole documents, and
/// the next `kb ingest` resumes from what was committed instead of starting over.
#[test]
fn serve_exits_within_its_bound_on_sigterm_during_an_ingest_of_the_whole_laws_corpus_and_the_kb_resumes() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    assert!(data.join("lawrefbook_laws").is_dir(), "the real data is missing: {}", data.display());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // The service needs an ingested KB to start: one small statute first, then the corpus.
    setup(root, 1, "");
    let out = ingest(root).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let laws = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../knowledge-bases/laws/kb.toml")).unwrap();
    let sources = &laws[laws.find("[[sources]]").unwrap()..];
    std::fs::write(root.join("kbs/t/kb.toml"), format!("id = \"t\"\ntitle = \"t\"\ndomain = \"d\"\ndescription = \"d\"\nembedder = \"tiny-e5\"\n{sources}")).unwrap();
    for dir in ["lawrefbook_laws", "china_law_db_supplement"] {
        std::os::unix::fs::symlink(data.join(dir), root.join("data").join(dir)).unwrap();
    }
    let port = free_port();
    let assist = root.join("assist.toml");
    let log = root.join("serve.log");
    let mut child = cmd(root, &["serve", "--bind", &format!("127.0.0.1:{port}"), "--config", assist.to_str().unwrap(), "--no-generator", "--upload-wait-secs", "0"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !http(port, "GET", "/readyz", b"").is_some_and(|(s, _, _)| s == 200) {
        let exited = child.try_wait().unwrap();
        assert!(exited.is_none() && started.elapsed() < Duration::from_secs(60), "not ready ({exited:?}): {}", std::fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
    reindex_until_ingesting(port);
    // Long enough for some batches to commit (the tiny embedder does a few statutes a second).
    std::thread::sleep(Duration::from_secs(8));
    signal(child.id(), "-TERM");
    let (code, secs, _) = wait_bounded(child, Duration::from_secs(12));
    let err = std::fs::read_to_string(&log).unwrap();
    eprintln!("serve, whole laws corpus: exit {code:?} {secs:.2} s after SIGTERM");
    assert_eq!(code, Some(3), "{err}");
    assert!(secs < 10.5, "{secs} s");
    let kb = support::open_kb(root, &xiaoguan_kb::StoreBackend::Embedded);
    let (first, points, _) = support::check_consistent(&kb, 0);
    drop(kb);
    eprintln!("committed before the signal: {first} statutes, {points} points");
    assert!(first > 1 && first < 3000, "{first} statutes committed (the one of the first ingest included)");
    // The next ingest resumes: it is stopped too (SIGINT), and has only added to what was there.
    let mut next = cmd(root, &["kb", "ingest", "t", "--quiet"]).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    signal(next.id(), "-INT");
    let _ = next.stdout.take();
    let (code, _, err) = wait_bounded(next, Duration::from_secs(12));
    assert_eq!(code, Some(130), "{err}");
    let kb = support::open_kb(root, &xiaoguan_kb::StoreBackend::Embedded);
    let (second, _, _) = support::check_consistent(&kb, 0);
    eprintln!("after the resumed ingest was interrupted: {second} statutes");
    assert!(second > first, "the resumed ingest committed nothing new ({first} → {second}): {err}");
}
