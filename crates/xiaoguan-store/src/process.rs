//! A throwaway Qdrant server process on 127.0.0.1 (random ports, a folder of its own), for the
//! tests and the benchmarks that compare against a real server. Stopped by PID when dropped.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct QdrantProcess {
    child: Option<Child>,
    binary: PathBuf,
    storage: PathBuf,
    pub http_port: u16,
    pub grpc_port: u16,
}

/// The server binary: `XIAOGUAN_QDRANT_BIN`, else `shared/bin/qdrant` in a folder above the working
/// directory or the executable (the shared folder beside the checkout). Looked up at run time: a
/// path baked in at compile time would name whichever checkout last built this crate.
pub fn qdrant_binary() -> std::result::Result<PathBuf, String> {
    if let Ok(p) = std::env::var("XIAOGUAN_QDRANT_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(format!("XIAOGUAN_QDRANT_BIN={} is not a file", p.display())) };
    }
    let starts = [std::env::current_dir().ok(), std::env::current_exe().ok()];
    for start in starts.iter().flatten() {
        for dir in start.ancestors() {
            let candidate = dir.join("shared/bin/qdrant");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
    Err(format!(
        "the Qdrant server binary is missing: expected shared/bin/qdrant in a folder above {cwd} (the shared folder beside the checkout) or XIAOGUAN_QDRANT_BIN"
    ))
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl QdrantProcess {
    /// Start a server keeping its data in `dir` and wait until it answers.
    pub fn start(dir: &Path) -> std::io::Result<Self> {
        let binary = qdrant_binary().map_err(|m| std::io::Error::new(std::io::ErrorKind::NotFound, m))?;
        let mut last = None;
        for _ in 0..3 {
            let (http_port, grpc_port) = (free_port()?, free_port()?);
            if http_port == grpc_port {
                continue;
            }
            let mut p = Self { child: None, binary: binary.clone(), storage: dir.to_path_buf(), http_port, grpc_port };
            match p.spawn() {
                Ok(()) => return Ok(p),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free ports")))
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.storage.join("storage"))?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.storage.join("qdrant.log"))?;
        let child = Command::new(&self.binary)
            .current_dir(&self.storage)
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", self.http_port.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", self.grpc_port.to_string())
            .env("QDRANT__STORAGE__STORAGE_PATH", self.storage.join("storage"))
            .env("QDRANT__STORAGE__SNAPSHOTS_PATH", self.storage.join("snapshots"))
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .env("QDRANT__LOG_LEVEL", "WARN")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(std::io::Error::other(format!("qdrant exited at start ({status}); see {}", self.storage.join("qdrant.log").display())));
            }
            if self.answers() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
        Err(std::io::Error::other("qdrant did not answer within 60 s"))
    }

    /// `GET /readyz` on the REST port says 200 and the gRPC port accepts connections (the server
    /// binds gRPC after REST, so readyz alone may answer before gRPC is up).
    fn answers(&self) -> bool {
        if std::net::TcpStream::connect(("127.0.0.1", self.grpc_port)).is_err() {
            return false;
        }
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.http_port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if write!(s, "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 200")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn rest_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same ports and data (after `kill`).
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for QdrantProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
