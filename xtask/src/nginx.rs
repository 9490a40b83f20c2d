//! Debian's nginx as a child of xtask, for the benchmarks: a config of xtask's own in a directory of
//! its own (pid, lock, logs and temp files all inside it), listening on 127.0.0.1 only, stopped with
//! SIGTERM to the PID xtask started. It never touches the system's nginx service or its config: when
//! nginx is not installed, Debian's package is unpacked with `dpkg -x` into `target/netinit-cache/`
//! rather than installed, since installing it starts the system service.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::host::{self, Result};

/// Debian's package with the nginx binary (bookworm and later; nginx-light is a metapackage there).
const PACKAGE: &str = "nginx";

/// The nginx binary: the installed one, else the unpacked package's.
pub fn binary() -> Result<PathBuf> {
    if let Some(path) = host::find("nginx") {
        return Ok(path);
    }
    let dir = host::cache().join("nginx");
    host::unpack_deb(PACKAGE, &dir)?;
    let path = dir.join("usr/sbin/nginx");
    if !path.is_file() {
        return Err(format!("{PACKAGE} unpacked without {}", path.display()));
    }
    Ok(path)
}

/// A free port of 127.0.0.1: bound, noted, let go (nginx binds it a moment later).
pub fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// A whole nginx.conf around `http` (the directives inside `http { }`): every path nginx writes is
/// under `prefix`, so nothing of the system's nginx is read or written. `connections` bounds the
/// connections of each worker; the workers' open-file limit is twice that.
pub fn config(prefix: &Path, workers: &str, connections: u32, http: &str) -> String {
    let p = prefix.display();
    let temp: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|t| format!("  {t}_temp_path {p}/temp/{t};\n"))
        .collect();
    format!(
        "worker_processes {workers};\nworker_rlimit_nofile {files};\ndaemon off;\n\
         pid {p}/nginx.pid;\nlock_file {p}/nginx.lock;\nerror_log {p}/error.log;\n\
         events {{ worker_connections {connections}; }}\n\
         http {{\n{temp}{http}}}\n",
        files = u64::from(connections) * 2,
    )
}

/// One running nginx; stopped when dropped.
pub struct Nginx {
    child: std::process::Child,
    pub port: u16,
    prefix: PathBuf,
}

impl Nginx {
    /// Writes `conf` to `prefix/nginx.conf` and starts nginx with it; returns once `port` accepts
    /// connections (within 5 s).
    pub fn start(prefix: &Path, port: u16, conf: &str) -> Result<Nginx> {
        std::fs::create_dir_all(prefix.join("temp")).map_err(|e| e.to_string())?;
        let file = prefix.join("nginx.conf");
        std::fs::write(&file, conf).map_err(|e| e.to_string())?;
        let child = Command::new(binary()?)
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&file)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting nginx: {e}"))?;
        let mut nginx = Nginx { child, port, prefix: prefix.to_path_buf() };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(nginx);
            }
            if let Ok(Some(status)) = nginx.child.try_wait() {
                return Err(format!("nginx exited ({status}): {}", nginx.errors()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("nginx did not listen on 127.0.0.1:{port} within 5s: {}", nginx.errors()))
    }

    /// The last lines of the error log, for a message.
    fn errors(&self) -> String {
        let text = std::fs::read_to_string(self.prefix.join("error.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }
}

impl Drop for Nginx {
    /// SIGTERM to the master, which stops its workers (SIGKILL would orphan them); SIGKILL only if
    /// it has not exited after 5 s.
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on the PID of our own child, which has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
