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
