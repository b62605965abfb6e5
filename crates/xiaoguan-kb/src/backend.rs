//! Where knowledge bases keep their points and their committed state: embedded (a qdrant-edge
//! folder and `state.json` beside it, one process at a time) or a Qdrant server (a collection
//! per KB, the state in the server's state collection, an ingest lease with expiry), chosen by
//! `[store]` in the settings.
//!
//! With a server, several processes share a KB: a replica checks the committed revision at most
//! every `state_poll_ms` and reloads the state when another process committed; an ingest holds
//! the KB's lease for as long as it runs (renewed in the background), and a second one is
//! refused until it is released or expires.

use crate::state::KbState;
use crate::{KbError, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use xiaoguan_store::{CollectionConfig, EdgeStore, LeaseStatus, QdrantServer, QdrantSettings, VectorStore, WriteOrdering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    #[default]
    Embedded,
    Qdrant,
}

/// `[store]` of the settings file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    pub backend: BackendKind,
    /// The server's gRPC address (`http://host:6334`).
    pub url: Option<String>,
    /// The environment variable holding the server's API key (never the key itself).
    pub api_key_env: String,
    /// Collections are `<prefix><kb id>`: several deployments can share one cluster.
    pub collection_prefix: String,
    pub shard_number: u32,
    pub replication_factor: u32,
    pub write_consistency_factor: u32,
    pub write_ordering: WriteOrdering,
    pub timeout_secs: u64,
    pub connect_timeout_secs: u64,
    /// The server's REST address, for snapshot downloads (default: port 6333 beside gRPC 6334).
    pub rest_url: Option<String>,
    /// How often a replica checks whether another process committed a KB.
    pub state_poll_ms: u64,
    /// How long an ingest's lease lasts without renewal (a killed ingest frees the KB after it).
    pub lease_secs: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            backend: BackendKind::Embedded,
            url: None,
            api_key_env: "XIAOGUAN_QDRANT_API_KEY".into(),
            collection_prefix: "xiaoguan_".into(),
            shard_number: 1,
            replication_factor: 1,
            write_consistency_factor: 1,
            write_ordering: WriteOrdering::Weak,
            timeout_secs: 10,
            connect_timeout_secs: 3,
            rest_url: None,
            state_poll_ms: 1000,
            lease_secs: 60,
        }
    }
}

impl StoreSettings {
    /// `[store]` of a settings file (defaults when the file or the table is missing).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(KbError::io("reading", path, e)),
        };
        let bad = |m: String| KbError::InvalidQuery(format!("{}: {m}", path.display()));
        let table: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        match table.get("store") {
            None => Ok(Self::default()),
            Some(v) => v.clone().try_into().map_err(|e: toml::de::Error| bad(format!("[store]: {}", e.message()))),
        }
    }

    /// `XIAOGUAN_QDRANT_URL` (or a flag) points every KB at that server.
    pub fn with_url_override(mut self, url: Option<String>) -> Self {
        if let Some(u) = url.filter(|u| !u.trim().is_empty()) {
            self.backend = BackendKind::Qdrant;
            self.url = Some(u);
        }
        self
    }

    pub fn qdrant_settings(&self) -> Result<QdrantSettings> {
        let url = self.url.clone().ok_or_else(|| KbError::InvalidQuery("[store] backend = \"qdrant\" needs `url` (or XIAOGUAN_QDRANT_URL)".into()))?;
        if self.lease_secs < 3 || self.timeout_secs == 0 {
            return Err(KbError::InvalidQuery("[store] lease_secs must be at least 3 and timeout_secs at least 1".into()));
        }
        let api_key = std::env::var(&self.api_key_env).ok().filter(|k| !k.is_empty());
        Ok(QdrantSettings {
            url,
            api_key,
            collection_prefix: self.collection_prefix.clone(),
            shard_number: self.shard_number.max(1),
            replication_factor: self.replication_factor.max(1),
            write_consistency_factor: self.write_consistency_factor.max(1),
            write_ordering: self.write_ordering,
            timeout: Duration::from_secs(self.timeout_secs),
            connect_timeout: Duration::from_secs(self.connect_timeout_secs.max(1)),
            rest_url: self.rest_url.clone(),
        })
    }

    /// Open the backend: for a server, connect and check it answers (a clear error otherwise).
    pub fn connect(&self) -> Result<StoreBackend> {
        match self.backend {
            BackendKind::Embedded => Ok(StoreBackend::Embedded),
            BackendKind::Qdrant => {
                let server = QdrantServer::connect(self.qdrant_settings()?)?;
                Ok(StoreBackend::Qdrant { server, poll: Duration::from_millis(self.state_poll_ms), lease_ttl: Duration::from_secs(self.lease_secs) })
            }
        }
    }
}

/// An opened backend, shared by every KB on it.
#[derive(Clone, Debug, Default)]
pub enum StoreBackend {
    #[default]
    Embedded,
    Qdrant { server: Arc<QdrantServer>, poll: Duration, lease_ttl: Duration },
}

impl StoreBackend {
    /// "embedded" or "qdrant http://host:6334".
    pub fn describe(&self) -> String {
        match self {
            StoreBackend::Embedded => "embedded".into(),
            StoreBackend::Qdrant { server, .. } => format!("qdrant {}", server.url()),
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, StoreBackend::Qdrant { .. })
    }

    pub(crate) fn open_store(&self, kb_dir: &Path, id: &str, config: &CollectionConfig) -> Result<Box<dyn VectorStore>> {
        Ok(match self {
            StoreBackend::Embedded => Box::new(EdgeStore::open(&kb_dir.join("store"), config)?),
            StoreBackend::Qdrant { server, .. } => Box::new(server.open_collection(id, config)?),
        })
    }

    pub(crate) fn keeper(&self, kb_dir: &Path, id: &str) -> Box<dyn StateKeeper> {
        match self {
            StoreBackend::Embedded => Box::new(FileKeeper { path: kb_dir.join("state.json") }),
            StoreBackend::Qdrant { server, .. } => Box::new(ServerKeeper { server: server.clone(), key: format!("kb/{id}") }),
        }
    }

    /// The committed state of KB `id`, without opening its store.
    pub fn load_state(&self, kbs_root: &Path, id: &str) -> Result<Option<KbState>> {
        self.keeper(&kbs_root.join(id), id).load()
    }

    /// Delete KB `id`'s points and state (its definition stays). Refused while another process
    /// holds it (embedded: has it open; server: holds its ingest lease).
    pub fn remove(&self, kbs_root: &Path, id: &str) -> Result<bool> {
        let dir = kbs_root.join(id);
        match self {
            StoreBackend::Embedded => {
                if !dir.exists() {
                    return Ok(false);
                }
                // The index first (refused while a service or an ingest holds it), then the state.
                EdgeStore::remove(&dir.join("store"))?;
                std::fs::remove_dir_all(&dir).map_err(|e| KbError::io("removing", &dir, e))?;
                Ok(true)
            }
            StoreBackend::Qdrant { server, .. } => {
                let _lease = self.lease(id)?;
                let had_state = self.load_state(kbs_root, id)?.is_some();
                let had_points = server.drop_collection(id)?;
                server.delete_state(&format!("kb/{id}"))?;
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).map_err(|e| KbError::io("removing", &dir, e))?;
                }
                Ok(had_state || had_points)
            }
        }
    }

    /// The ingest lease of KB `id` (None for the embedded store: its folder is already one
    /// process's at a time).
    pub fn lease(&self, id: &str) -> Result<Option<IngestLease>> {
        match self {
            StoreBackend::Embedded => Ok(None),
            StoreBackend::Qdrant { server, lease_ttl, .. } => IngestLease::take(server.clone(), id, *lease_ttl).map(Some),
        }
    }

    pub(crate) fn poll_interval(&self) -> Option<Duration> {
        match self {
            StoreBackend::Embedded => None,
            StoreBackend::Qdrant { poll, .. } => Some(*poll),
        }
    }
}

/// Where a KB's committed state is written.
pub(crate) trait StateKeeper: Send + Sync {
    fn load(&self) -> Result<Option<KbState>>;
    /// Replace the committed state (durable before it returns).
    fn save(&self, state: &KbState) -> Result<()>;
    /// The committed revision only (a cheap check for another process's commit).
    fn revision(&self) -> Result<Option<u64>>;
}

struct FileKeeper {
    path: PathBuf,
}

impl StateKeeper for FileKeeper {
    fn load(&self) -> Result<Option<KbState>> {
        KbState::load(&self.path).map_err(|e| KbError::io("reading", &self.path, e))
    }
    fn save(&self, state: &KbState) -> Result<()> {
        state.save(&self.path).map_err(|e| KbError::io("writing", &self.path, e))
    }
    fn revision(&self) -> Result<Option<u64>> {
        Ok(self.load()?.map(|s| s.revision))
    }
}

struct ServerKeeper {
    server: Arc<QdrantServer>,
    key: String,
}

impl StateKeeper for ServerKeeper {
    fn load(&self) -> Result<Option<KbState>> {
        let Some((_, json)) = self.server.read_state(&self.key)? else { return Ok(None) };
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| KbError::Store(xiaoguan_store::StoreError::Backend { path: self.server.url().into(), message: format!("state {} is not valid: {e}", self.key) }))
    }
    fn save(&self, state: &KbState) -> Result<()> {
        let json = serde_json::to_string(state).expect("state serializes");
        Ok(self.server.write_state(&self.key, state.revision, &json)?)
    }
    fn revision(&self) -> Result<Option<u64>> {
        Ok(self.server.state_revision(&self.key)?)
    }
}

/// Who this process is, for leases: host, pid and a start time (a restarted process with the
/// same pid is someone else).
fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "host".into());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{host}:{}:{nanos:08x}", std::process::id())
}

/// A KB's ingest lease on the server, renewed every third of its lifetime until dropped (then
/// released). When a renewal fails for longer than the lease lasts, `lost` is set and the
/// ingest stops before its next commit.
pub struct IngestLease {
    server: Arc<QdrantServer>,
    name: String,
    holder: String,
    stop: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for IngestLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IngestLease({} by {})", self.name, self.holder)
    }
}

impl IngestLease {
    fn take(server: Arc<QdrantServer>, id: &str, ttl: Duration) -> Result<Self> {
        let name = format!("ingest/{id}");
        let holder = holder_id();
        match server.lease(&name, &holder, ttl)? {
            LeaseStatus::Acquired { .. } => {}
            LeaseStatus::HeldBy { holder: other, expires_ms } => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
                return Err(KbError::Busy(format!(
                    "knowledge base '{id}' is being changed by another process ({other}); its lease ends in {} s unless renewed: try again later",
                    ((expires_ms - now).max(0) + 999) / 1000
                )));
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (server, name, holder, stop, lost) = (server.clone(), name.clone(), holder.clone(), stop.clone(), lost.clone());
            std::thread::Builder::new()
                .name("kb-lease".into())
                .spawn(move || {
                    let mut last_ok = std::time::Instant::now();
                    let step = Duration::from_millis(100);
                    let mut waited = Duration::ZERO;
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(step);
                        waited += step;
                        if waited < ttl / 3 {
                            continue;
                        }
                        waited = Duration::ZERO;
                        match server.lease(&name, &holder, ttl) {
                            Ok(LeaseStatus::Acquired { .. }) => last_ok = std::time::Instant::now(),
                            Ok(LeaseStatus::HeldBy { holder: other, .. }) => {
                                tracing::error!("lease {name} was taken by {other}: this ingest stops before its next commit");
                                lost.store(true, Ordering::SeqCst);
                                return;
                            }
                            Err(e) if last_ok.elapsed() >= ttl => {
                                tracing::error!("lease {name} could not be renewed for {} s ({e}): this ingest stops before its next commit", ttl.as_secs());
                                lost.store(true, Ordering::SeqCst);
                                return;
                            }
                            Err(e) => tracing::warn!("renewing lease {name}: {e}"),
                        }
                    }
                })
                .map_err(|e| KbError::io("starting the lease renewer for", Path::new(id), e))?
        };
        Ok(Self { server, name, holder, stop, lost, renewer: Some(renewer) })
    }

    /// The lease can no longer be trusted: nothing more may be committed under it.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for IngestLease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        if !self.lost() {
            if let Err(e) = self.server.release(&self.name, &self.holder) {
                tracing::warn!("releasing lease {}: {e} (it expires by itself)", self.name);
            }
        }
    }
}
