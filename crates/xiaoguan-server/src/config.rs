//! Service configuration: a TOML file, overridden by environment variables and flags (the CLI
//! applies those), with limits that keep a 2-core machine responsive.

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// JSON request bodies.
    pub max_body_bytes: usize,
    /// Document uploads.
    pub max_upload_bytes: usize,
    pub max_question_chars: usize,
    /// Messages in a chat request / turns kept per conversation.
    pub max_messages: usize,
    /// Requests that may wait for the generator while one runs; more get 429.
    pub generator_queue: usize,
    /// Requests doing retrieval / classification at once (CPU bound); more wait.
    pub cpu_workers: usize,
    pub request_timeout_secs: u64,
    /// Conversations remembered for `conversation_id` (oldest forgotten first).
    pub max_conversations: usize,
    /// Uploads, deletes and reindexes that may wait per knowledge base while its ingest runs;
    /// more get 429 with Retry-After.
    pub upload_queue: usize,
    /// How long an upload (delete, reindex) request waits for its ingest before it answers
    /// 202 with the upload's status to poll (`GET /v1/kbs/{id}/uploads/{upload_id}`).
    pub upload_wait_secs: u64,
    /// Upload statuses remembered for polling (oldest forgotten first).
    pub max_upload_statuses: usize,
    /// Bytes of upload bodies the process holds at once, all uploads together (each reserves its
    /// Content-Length, or `max_upload_bytes` without one, before its body is read); an upload
    /// that does not fit gets 429 with Retry-After. Bounds what concurrent uploads can allocate.
    pub max_uploads_in_flight_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            max_upload_bytes: 20 * 1024 * 1024,
            max_question_chars: 2000,
            max_messages: 40,
            generator_queue: 4,
            cpu_workers: 2,
            request_timeout_secs: 180,
            max_conversations: 2000,
            upload_queue: 8,
            upload_wait_secs: 30,
            max_upload_statuses: 1000,
            max_uploads_in_flight_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub bind: String,
    /// The assist settings (KBs, generator, rules, classifiers).
    pub assist: PathBuf,
    /// API keys (TOML `[[keys]]`); without it the service runs open, on loopback only.
    pub keys_file: Option<PathBuf>,
    /// The feedback log of earlier versions (default <home>/feedback/feedback.jsonl): imported
    /// into the ticket store once at startup, then renamed `*.imported`.
    pub feedback_log: Option<PathBuf>,
    /// The ticket store.
    pub database: DatabaseConfig,
    /// Load the generator (generation mode); off = extractive answers only.
    pub generator: bool,
    /// After SIGTERM/SIGINT: seconds to drain answers and stop ingests before the process exits
    /// whatever is still running.
    pub shutdown_secs: u64,
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            assist: PathBuf::from("assist.toml"),
            keys_file: None,
            feedback_log: None,
            database: DatabaseConfig::default(),
            generator: true,
            shutdown_secs: 10,
            limits: Limits::default(),
        }
    }
}

/// `[database]`: where assisted tickets, decisions, reviews and feedback are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user@host/db` (replicas share it; the password from `password_env`) or a
    /// SQLite file path; default `<home>/tickets/tickets.db`. Env `XIAOGUAN_DATABASE_URL` overrides.
    pub url: Option<String>,
    /// The environment variable holding the PostgreSQL password (kept out of the file).
    pub password_env: Option<String>,
    /// The environment variable holding the salt reporters are hashed with. Replicas must share
    /// it; without it a random salt is kept in `<home>/tickets/reporter.salt`.
    pub reporter_salt_env: String,
    /// Delete tickets older than this many days (at startup and daily); None keeps them.
    pub retention_days: Option<u32>,
    /// Store every assisted ticket (off: assist only, nothing kept).
    pub store_tickets: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: None, password_env: None, reporter_salt_env: "XIAOGUAN_REPORTER_SALT".into(), retention_days: None, store_tickets: true }
    }
}

impl ServerConfig {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut c: ServerConfig = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.assist = base.join(&c.assist);
        c.keys_file = c.keys_file.map(|k| base.join(k));
        c.feedback_log = c.feedback_log.map(|k| base.join(k));
        Ok(c)
    }
}
