//! Opening the ticket store the configuration names: the URL (env `XIAOGUAN_DATABASE_URL` first),
//! the PostgreSQL password from its environment variable, the reporter salt, retention.

use crate::config::DatabaseConfig;
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use xiaoguan_assist::history::TicketHistory;
use xiaoguan_tickets::TicketStore;

/// The store's URL: env `XIAOGUAN_DATABASE_URL`, else `[database] url`, else the SQLite file
/// `<home>/tickets/tickets.db`; a PostgreSQL password comes from `password_env`.
pub fn url(config: &DatabaseConfig, home: &Path) -> anyhow::Result<String> {
    let url = std::env::var("XIAOGUAN_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .or_else(|| config.url.clone())
        .unwrap_or_else(|| home.join("tickets").join("tickets.db").display().to_string());
    match (&config.password_env, url.starts_with("postgres")) {
        (Some(var), true) => {
            let pw = std::env::var(var).map_err(|_| anyhow::anyhow!("[database] password_env names {var}, which is not set"))?;
            with_password(&url, &pw)
        }
        _ => Ok(url),
    }
}

/// `postgres://user@host/db` + password → `postgres://user:pw@host/db` (percent-encoded).
fn with_password(url: &str, pw: &str) -> anyhow::Result<String> {
    let start = url.find("://").map(|i| i + 3).ok_or_else(|| anyhow::anyhow!("the database url has no scheme"))?;
    let at = url[start..].find('@').map(|i| start + i).ok_or_else(|| anyhow::anyhow!("the database url names no user (postgres://USER@host/db) for the password"))?;
    if url[start..at].contains(':') {
        anyhow::bail!("the database url already holds a password: keep it in the environment variable only");
    }
    let enc: String = pw.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
    Ok(format!("{}:{enc}{}", &url[..at], &url[at..]))
}

/// The salt reporters are hashed with: the environment variable, else a random one kept in
/// `<home>/tickets/reporter.salt` (created once, owner-only).
pub fn reporter_salt(config: &DatabaseConfig, home: &Path) -> anyhow::Result<String> {
    if let Ok(s) = std::env::var(&config.reporter_salt_env) {
        if !s.is_empty() {
            return Ok(s);
        }
    }
    let path = home.join("tickets").join("reporter.salt");
    if let Ok(s) = std::fs::read_to_string(&path) {
        if !s.trim().is_empty() {
            return Ok(s.trim().to_string());
        }
    }
    let dir = path.parent().unwrap_or(home);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut b = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
    let salt = hex::encode(b);
    // A temp file of its own (pid and the new salt), published with a hard link: the link fails if the
    // salt exists, so replicas starting together all end up with the one that won.
    let tmp = dir.join(format!(".reporter.salt.{}.{salt}.tmp", std::process::id()));
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(salt.as_bytes())?;
        f.sync_all()?;
    }
    let published = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match published {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let theirs = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            return Ok(theirs.trim().to_string());
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("publishing {}", path.display()))),
    }
    Ok(salt)
}

/// Open the store (migrating it), import the old feedback log once, and apply retention.
pub fn open(config: &DatabaseConfig, home: &Path, legacy_feedback_log: &Path) -> anyhow::Result<Arc<TicketHistory>> {
    let url = url(config, home)?;
    let store: Arc<dyn TicketStore> = xiaoguan_tickets::open(&url).map_err(|e| anyhow::anyhow!("ticket store {}: {e}", xiaoguan_tickets::redact_url(&url)))?;
    tracing::warn!("ticket store: {} at {} (schema {})", store.backend(), store.location(), store.schema_version()?);
    crate::feedback::import_legacy_log(store.as_ref(), legacy_feedback_log)?;
    if let Some(days) = config.retention_days {
        purge(store.as_ref(), days)?;
        spawn_daily_retention(store.clone(), days);
    }
    Ok(Arc::new(TicketHistory::new(store, reporter_salt(config, home)?)))
}

/// Retention while serving: purge once a day on a background thread (the process's lifetime).
pub fn spawn_daily_retention(store: Arc<dyn TicketStore>, days: u32) {
    std::thread::Builder::new()
        .name("ticket-retention".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(86_400));
            if let Err(e) = purge(store.as_ref(), days) {
                tracing::error!("retention purge failed: {e:#}");
            }
        })
        .map(drop)
        .unwrap_or_else(|e| tracing::error!("cannot start the retention thread: {e}"));
}

/// Retention: delete tickets received more than `days` ago, and conversations not continued
/// for as long (they hold citizens' questions too). Returns the tickets deleted.
pub fn purge(store: &dyn TicketStore, days: u32) -> anyhow::Result<u64> {
    let before = xiaoguan_tickets::now_ms() - days as i64 * 86_400_000;
    let n = store.purge_before(before)?;
    if n > 0 {
        tracing::warn!("retention: deleted {n} ticket(s) older than {days} days");
    }
    let c = store.purge_conversations_before(before)?;
    if c > 0 {
        tracing::warn!("retention: deleted {c} conversation(s) idle for more than {days} days");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_added_encoded_and_never_doubled() {
        assert_eq!(super::with_password("postgres://xg@127.0.0.1:5432/xg", "p@ss:w/rd").unwrap(), "postgres://xg:p%40ss%3Aw%2Frd@127.0.0.1:5432/xg");
        assert!(super::with_password("postgres://xg:old@h/db", "new").is_err());
        assert!(super::with_password("postgres://h/db", "new").is_err());
    }

    #[test]
    fn replicas_creating_the_reporter_salt_together_agree_on_one() {
        let home = tempfile::tempdir().unwrap();
        let config = crate::config::DatabaseConfig { reporter_salt_env: "XIAOGUAN_TEST_UNSET_SALT_VAR".into(), ..Default::default() };
        for _ in 0..10 {
            let _ = std::fs::remove_file(home.path().join("tickets/reporter.salt"));
            let salts: Vec<String> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8).map(|_| s.spawn(|| super::reporter_salt(&config, home.path()).unwrap())).collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(salts.iter().all(|s| s == &salts[0] && s.len() == 32), "{salts:?}");
            assert_eq!(std::fs::read_to_string(home.path().join("tickets/reporter.salt")).unwrap(), salts[0]);
        }
        let left: Vec<_> = std::fs::read_dir(home.path().join("tickets")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "temp files left behind: {left:?}");
    }
}
