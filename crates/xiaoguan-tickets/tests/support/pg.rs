//! A real, throwaway PostgreSQL server for tests: `initdb` into a fresh folder under the temp
//! dir, `postgres` on a free 127.0.0.1 port (socket in the same folder), trust auth, no fsync.
//! Stopped by its PID (SIGINT, PostgreSQL's fast shutdown) and its folder removed on `Drop`;
//! the per-process shared server (`shared()`) is stopped at process exit instead, and a small
//! watchdog process stops it if the test process dies without exiting normally.
//!
//! PostgreSQL refuses to run as root. As root, the server runs as the `postgres` system user
//! (which Debian's package creates): its folder is chowned to that user and `initdb` / `postgres`
//! are started with that uid and gid (the same as `runuser -u postgres --`, but the PID we hold
//! is the postmaster's own). As any other user it runs as that user.
//!
//! Binaries: `$XIAOGUAN_PG_BIN` if set, else the newest `/usr/lib/postgresql/<ver>/bin` (Debian's
//! `postgresql` package), else `initdb` on `PATH`.

#![allow(dead_code)]

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "install Debian's postgresql package: `source scripts/env.sh && ensure_system_packages` does it (or `apt-get install -y postgresql`)";

extern "C" {
    fn geteuid() -> u32;
    fn kill(pid: i32, sig: i32) -> i32;
    fn atexit(cb: extern "C" fn()) -> i32;
}
const SIGINT: i32 = 2;
const SIGQUIT: i32 = 3;
const SIGKILL: i32 = 9;

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub struct PgServer {
    /// The folder holding `data/` (the cluster), the socket and `server.log`.
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    pid: u32,
    child: Mutex<Option<Child>>,
    /// (uid, gid) the server runs as, when we are root.
    run_as: Option<(u32, u32)>,
}

/// Where the server binaries are, or what to install.
pub fn find_bin() -> Result<PathBuf, String> {
    let ok = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(d) = std::env::var_os("XIAOGUAN_PG_BIN") {
        let d = PathBuf::from(d);
        return if ok(&d) { Ok(d) } else { Err(format!("XIAOGUAN_PG_BIN={} holds no initdb and postgres: point it at a PostgreSQL bin folder, or unset it and {INSTALL_HINT}", d.display())) };
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: Vec<u32> = e.file_name().to_str()?.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
            let bin = e.path().join("bin");
            ok(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    for d in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if ok(&d) {
            return Ok(d);
        }
    }
    Err(format!("PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, no initdb and postgres on PATH): {INSTALL_HINT}"))
}

fn id_of(flag: &str) -> Result<u32, String> {
    let out = Command::new("id").args([flag, "postgres"]).output().map_err(|e| format!("cannot run `id`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "running as root, and PostgreSQL refuses to run as root, but there is no `postgres` system user to run it as: {INSTALL_HINT} (it creates the user)"
        ));
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|e| format!("`id {flag} postgres` printed no number: {e}"))
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind a port on 127.0.0.1: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl PgServer {
    /// initdb, start, wait until it accepts connections. The error says what is missing or
    /// what the server logged.
    pub fn start() -> Result<Self, String> {
        let bin = find_bin()?;
        let run_as = if unsafe { geteuid() } == 0 { Some((id_of("-u")?, id_of("-g")?)) } else { None };
        let base = std::env::var_os("XIAOGUAN_PG_TMP").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("xg-pg-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let cleanup = |e: String| {
            let _ = std::fs::remove_dir_all(&dir);
            e
        };
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| cleanup(format!("cannot chown {} to postgres: {e}", dir.display())))?;
        }
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .current_dir(&dir)
            .stdin(Stdio::null());
        if let Some((uid, gid)) = run_as {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().map_err(|e| cleanup(format!("cannot run {}: {e} ({INSTALL_HINT})", bin.join("initdb").display())))?;
        if !out.status.success() {
            return Err(cleanup(format!(
                "initdb failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let log_path = dir.join("server.log");
        let mut last_err = String::new();
        // A port found free can be taken before the server binds it: try a few.
        for _ in 0..5 {
            let port = free_port().map_err(cleanup)?;
            let log = File::create(&log_path).map_err(|e| cleanup(format!("cannot create {}: {e}", log_path.display())))?;
            let mut cmd = Command::new(bin.join("postgres"));
            cmd.arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(&dir)
                .arg("-p")
                .arg(port.to_string())
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
                .args(["-c", "max_connections=200", "-c", "shared_buffers=32MB"])
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            if let Some((uid, gid)) = run_as {
                cmd.uid(uid).gid(gid);
            }
            let child = cmd.spawn().map_err(|e| cleanup(format!("cannot start {}: {e}", bin.join("postgres").display())))?;
            let server = PgServer { dir: dir.clone(), bin: bin.clone(), port, pid: child.id(), child: Mutex::new(Some(child)), run_as };
            match server.wait_ready(Duration::from_secs(60)) {
                Ok(()) => return Ok(server),
                Err(e) => {
                    let in_use = tail(&log_path).contains("already in use");
                    last_err = e;
                    server.kill_only();
                    // Not `drop`: that would remove the folder, and with it the cluster to retry on.
                    std::mem::forget(server);
                    if !in_use {
                        break;
                    }
                }
            }
        }
        Err(cleanup(last_err))
    }

    fn wait_ready(&self, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < limit {
            if let Some(status) = self.child.lock().unwrap().as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!(
                    "the PostgreSQL server ({}) exited at start ({status}); its log:\n{}",
                    self.bin.join("postgres").display(),
                    tail(&self.dir.join("server.log"))
                ));
            }
            match self.admin() {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "the PostgreSQL server on port {} did not accept connections within {} s (last: {last}); its log:\n{}",
            self.port,
            limit.as_secs(),
            tail(&self.dir.join("server.log"))
        ))
    }

    /// A superuser connection to the `postgres` database.
    pub fn admin(&self) -> Result<postgres::Client, postgres::Error> {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(2))
            .connect(postgres::NoTls)
    }

    /// A URL for database `db` (which may not exist). The password is a dummy — trust auth never
    /// asks for it — so that tests can check it is redacted.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres:not-a-secret@127.0.0.1:{}/{db}", self.port)
    }

    /// Create database `name` (an identifier: letters, digits, `_`) and return its URL.
    pub fn create_database(&self, name: &str) -> Result<String, String> {
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "database name {name:?}");
        let mut c = self.admin().map_err(|e| format!("cannot connect to the test server: {e}"))?;
        c.batch_execute(&format!("CREATE DATABASE {name}")).map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
        Ok(self.url(name))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Signal the postmaster by PID and reap it: SIGINT (fast shutdown), SIGQUIT after 20 s, SIGKILL after 10 more.
    fn kill_only(&self) {
        let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() else { return };
        for (sig, wait) in [(SIGINT, 20), (SIGQUIT, 10), (SIGKILL, 10)] {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            unsafe { kill(self.pid as i32, sig) };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(wait) {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = child.wait();
    }

    /// Stop the server and remove its folder. Idempotent.
    pub fn stop(&self) {
        self.kill_only();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// A process that waits for this test process to end and then, if the server is still up
    /// (its `postmaster.pid` still names it), stops it and removes the folder: the backstop for a
    /// test process killed before it could stop the server itself.
    fn watchdog(&self) {
        const SCRIPT: &str = r#"trap '' INT HUP TERM PIPE
while kill -0 "$1" 2>/dev/null; do sleep 1; done
if [ -f "$3/data/postmaster.pid" ] && [ "$(head -n 1 "$3/data/postmaster.pid")" = "$2" ]; then
  kill -INT "$2" 2>/dev/null
  i=0; while kill -0 "$2" 2>/dev/null && [ $i -lt 40 ]; do sleep 0.5; i=$((i+1)); done
  kill -KILL "$2" 2>/dev/null
fi
rm -rf "$3""#;
        let _ = Command::new("sh")
            .args(["-c", SCRIPT, "xg-pg-watchdog"])
            .arg(std::process::id().to_string())
            .arg(self.pid.to_string())
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

static SHARED: OnceLock<Result<PgServer, String>> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(Ok(s)) = SHARED.get() {
        s.stop();
    }
}

/// One server for the whole test process (each test makes its own database on it), stopped at
/// exit. Panics, failing the test, with what is missing when it cannot start.
pub fn shared() -> &'static PgServer {
    let r = SHARED.get_or_init(|| {
        let s = PgServer::start()?;
        s.watchdog();
        unsafe { atexit(stop_shared) };
        Ok(s)
    });
    match r {
        Ok(s) => s,
        Err(e) => panic!("cannot run the PostgreSQL tests: {e}"),
    }
}

/// A fresh, empty database on the shared server; its URL.
pub fn fresh_database(tag: &str) -> String {
    let server = shared();
    let tag: String = tag.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).take(40).collect();
    let name = format!("t{}_{tag}", SEQ.fetch_add(1, Ordering::SeqCst));
    server.create_database(&name).unwrap_or_else(|e| panic!("{e}"))
}
