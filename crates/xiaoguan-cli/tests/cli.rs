//! The binary's behaviour on bad input: a clear message and exit code 2, never a panic.

use std::process::Command;

fn xiaoguan(home: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xiaoguan"))
        .args(args)
        .env("XIAOGUAN_HOME", home)
        .env_remove("XIAOGUAN_MODELS_DIR")
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn models_list_shows_every_manifest_and_state() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, _) = xiaoguan(home.path(), &["models", "list"]);
    assert_eq!(code, 0);
    for id in ["e5-small", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "m3e-small"] {
        assert!(out.contains(id), "{out}");
    }
    assert!(out.contains("not pulled"));
    let (code, out, _) = xiaoguan(home.path(), &["models", "list", "--json"]);
    assert_eq!(code, 0);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 4);
}

#[test]
fn user_errors_exit_2_with_a_message() {
    let home = tempfile::tempdir().unwrap();
    let (code, _, err) = xiaoguan(home.path(), &["embed", "--model", "nope", "x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown model 'nope'"), "{err}");

    let (code, _, err) = xiaoguan(home.path(), &["embed", "社保", "  "]);
    assert_eq!(code, 2);
    assert!(err.contains("text 2 is empty"), "{err}");

    let (code, _, err) = xiaoguan(home.path(), &["generate", "你好"]);
    assert_eq!(code, 2);
    assert!(err.contains("models pull qwen2.5-coder-0.5b"), "{err}");

    let (code, _, err) = xiaoguan(home.path(), &["models", "pull", "m3e-small"]);
    assert_eq!(code, 2);
    assert!(err.contains("--accept-license"), "{err}");
}

#[test]
fn a_broken_manifest_is_named_with_its_problem() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.toml"), "id = \"x\"\nkind = \"embed\"\nbogus = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xiaoguan"))
        .args(["models", "list"])
        .env("XIAOGUAN_HOME", home.path())
        .env("XIAOGUAN_MODELS_DIR", dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("broken.toml"), "{err}");
}

fn kb_cmd(home: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let kb_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../knowledge-bases");
    let out = Command::new(env!("CARGO_BIN_EXE_xiaoguan"))
        .arg("kb")
        .args(args)
        .env("XIAOGUAN_HOME", home)
        .env("XIAOGUAN_KB_DIR", kb_dir)
        .env_remove("XIAOGUAN_MODELS_DIR")
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn kb_list_shows_the_shipped_definitions() {
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = kb_cmd(home.path(), &["list"]);
    assert_eq!(code, 0, "{err}");
    for id in ["social-insurance", "enterprise-policy", "project-filing", "laws", "gov-faq", "guides"] {
        assert!(out.contains(id), "{out}");
    }
}

#[test]
fn kb_user_errors_exit_2() {
    let home = tempfile::tempdir().unwrap();
    let (code, _, err) = kb_cmd(home.path(), &["ingest", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown knowledge base 'nope'") && err.contains("social-insurance"), "{err}");
    let (code, _, err) = kb_cmd(home.path(), &["ingest", "guides"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("models pull e5-small"), "{err}");
    let bad = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(bad.path().join("x")).unwrap();
    std::fs::write(bad.path().join("x/kb.toml"), "id = \"x\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xiaoguan"))
        .args(["kb", "list", "--kb-dir"])
        .arg(bad.path())
        .env("XIAOGUAN_HOME", home.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("x/kb.toml"), "{err}");
}

/// Runs in the repository root (where assist.toml, rules/ and evals/ are).
fn in_repo(home: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xiaoguan"))
        .args(args)
        .current_dir(repo)
        .env("XIAOGUAN_HOME", home)
        .env_remove("XIAOGUAN_MODELS_DIR")
        .env_remove("XIAOGUAN_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Without a terminal (a CI log, nohup) `classify train` still says what it is doing.
#[test]
fn classify_train_reports_progress_off_a_terminal() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("rows.jsonl");
    let mut rows = String::new();
    for i in 0..60 {
        let (text, label) = if i % 2 == 0 { (format!("路灯坏了第{i}盏不亮"), "市政") } else { (format!("社保卡丢了第{i}次补办"), "社保") };
        rows.push_str(&format!("{{\"text\": \"{text}\", \"label\": \"{label}\"}}\n"));
    }
    std::fs::write(&data, rows).unwrap();
    let out = home.path().join("head");
    let (code, stdout, err) = in_repo(home.path(), &["classify", "train", "--data", data.to_str().unwrap(), "--no-embed", "--out", out.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("custom: 60 rows; embedding, then training") && err.contains("; training"), "{err}");
    assert!(stdout.contains("saved to"), "{stdout}");
}

#[test]
fn answering_commands_report_bad_input_with_exit_2() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("bad.jsonl");
    std::fs::write(&data, "{\"text\": \"a\", \"label\": \"x\"}\n{oops}\n").unwrap();
    let (code, _, err) = in_repo(home.path(), &["classify", "train", "--data", data.to_str().unwrap(), "--no-embed"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.jsonl:2"), "the file and line are named: {err}");
    let (code, _, err) = in_repo(home.path(), &["classify", "train", "no-such-head"], None);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = in_repo(home.path(), &["classify", "predict", "domain", "路灯坏了"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("classify train"), "{err}");
    let (code, _, err) = in_repo(home.path(), &["ask", "--config", "no-such.toml", "你好"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no-such.toml"), "{err}");
    let (code, _, err) = in_repo(home.path(), &["ask", "--mode", "extractive", "失业保险金怎么领"], None);
    assert_eq!(code, 2, "nothing ingested in this home: {err}");
    assert!(err.contains("kb ingest"), "{err}");
    let (code, _, err) = in_repo(home.path(), &["ticket", "-"], Some("{\"text\": 5}"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("stdin:1"), "{err}");
    let (code, _, err) = in_repo(home.path(), &["eval", "run", "no-such-suite.yaml"], None);
    assert_eq!(code, 2, "{err}");
    let bad_suite = home.path().join("s.yaml");
    std::fs::write(&bad_suite, "name: s\ntask: guessing\ndatasets: []\nfields: {input: [q]}\n").unwrap();
    let (code, _, err) = in_repo(home.path(), &["eval", "run", bad_suite.to_str().unwrap()], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("s.yaml") && err.contains("line 2"), "{err}");
}

#[test]
fn ticket_assist_works_without_models_or_kbs() {
    // No classifiers trained and no KB ingested in this home: masking, summary, signals and the
    // rules still work, and the missing parts say so.
    let home = tempfile::tempdir().unwrap();
    let (code, out, err) = in_repo(home.path(), &["ticket", "--json", "-"], Some("我叫王小明，电话13812345678，小区燃气泄漏，闻到很重的煤气味"));
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(!out.contains("13812345678"));
    assert_eq!(r["signals"]["escalate"], true);
    assert!(r["request_type"].is_null() && r["needs_review"] == true);
    assert_eq!(r["departments"][0]["department"], "市城市管理综合执法局", "the shipped rules dispatch gas leaks to the Dongguan unit: {out}");
    assert!(r["departments"][0]["reasons"][0].as_str().unwrap().contains("urban-management"));
    let (code, out, err) = in_repo(home.path(), &["ticket", "--json", "-"], Some("我是东城区居民，楼下餐馆油烟和噪音扰民到深夜"));
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["departments"][0]["department"], "市城市管理综合执法局", "{out}");
    assert!(r["direct_dispatch"].is_null(), "东城区 is no Dongguan town: {out}");
    assert!(r["masked_text"].as_str().unwrap().contains("东城区"), "a place is not a name: {out}");
    let (code, _, _) = in_repo(home.path(), &["keys", "new", "--id", "a", "--role", "agent"], None);
    assert_eq!(code, 0);
}

/// A private home sharing the pulled models (read-only), or None when e5 is not pulled (an error
/// under XIAOGUAN_REQUIRE_MODELS=1, which the test command sets).
fn home_with_models() -> Option<tempfile::TempDir> {
    let shared = std::env::var_os("XIAOGUAN_HOME").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/xiaoguan")
    });
    if !shared.join("models/e5-small").is_dir() {
        assert_ne!(std::env::var("XIAOGUAN_REQUIRE_MODELS").as_deref(), Ok("1"), "e5-small is not pulled");
        eprintln!("skipped: e5-small is not pulled");
        return None;
    }
    let home = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(shared.join("models"), home.path().join("models")).unwrap();
    Some(home)
}

#[test]
fn kb_ingest_stats_search_filters_and_reuse_with_the_real_embedder() {
    let Some(home) = home_with_models() else { return };
    let (code, out, err) = kb_cmd(home.path(), &["ingest", "one-thing", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("23 chunks embedded, 0 reused"), "{out}");
    let (code, out, err) = kb_cmd(home.path(), &["stats", "one-thing"]);
    assert_eq!(code, 0, "{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["points_by_doc_type"]["bundle"], 23, "{stats}");

    let (code, out, err) = kb_cmd(home.path(), &["search", "one-thing", "个体户想转成公司怎么办", "-k", "1", "--json"]);
    assert_eq!(code, 0, "{err}");
    let hits: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(hits[0]["title"], "个体工商户转型为企业", "{hits}");
    let (code, out, err) = kb_cmd(home.path(), &["search", "one-thing", "退休", "--filter", "doc_no=国发〔2024〕3号", "--bm25-weight", "2", "--json"]);
    assert_eq!(code, 0, "{err}");
    let hits: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(hits.as_array().unwrap().iter().all(|h| h["doc_no"] == "国发〔2024〕3号"), "{hits}");
    for bad in [["--filter", "date<=明年"], ["--filter", "doc_type"], ["--dense-weight", "-1"]] {
        let (code, _, err) = kb_cmd(home.path(), &["search", "one-thing", "退休", bad[0], bad[1]]);
        assert_eq!(code, 2, "{bad:?}: {err}");
    }

    // A second KB over the same file takes the stored vectors instead of embedding again.
    let defs = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../knowledge-bases/one-thing");
    for id in ["one-thing", "one-thing-copy"] {
        std::fs::create_dir_all(defs.path().join(id)).unwrap();
        std::fs::copy(src.join("bundles.json"), defs.path().join(id).join("bundles.json")).unwrap();
        let toml = std::fs::read_to_string(src.join("kb.toml")).unwrap().replace("id = \"one-thing\"", &format!("id = \"{id}\""));
        std::fs::write(defs.path().join(id).join("kb.toml"), toml).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_xiaoguan"))
        .args(["kb", "ingest", "one-thing-copy", "--quiet", "--kb-dir"])
        .arg(defs.path())
        .env("XIAOGUAN_HOME", home.path())
        .env("XIAOGUAN_DATA_ROOT", std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
        .env_remove("XIAOGUAN_MODELS_DIR")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The definitions differ only in id: same document keys and hashes, so every chunk is reused.
    assert!(text.contains("0 chunks embedded, 23 reused"), "{text}");
}
