//! `cargo xtask bench fetch`: the fetcher's throughput beside curl's, same file, same server, same
//! target file system. A 1 GiB file is served on 127.0.0.1 by xtask's HTTP server, which sends
//! with sendfile(2) as image servers do (or, with `--nginx`, by Debian's nginx with `sendfile on`),
//! and fetched into a tmpfs (`/dev/shm`, as the boot writes into a tmpfs) by the musl `/init` binary
//! (`netinit fetch`, which also computes SHA-256 on the way, as every boot does), by `curl -o`, and,
//! for a like-for-like figure, by `curl -o` followed by `openssl dgst -sha256` (SHA-NI where the CPU
//! has it), alternately, several times. It prints each run and the medians; it asserts nothing:
//! figures, not a timed test. On a machine with few cores the server, the receiver and the hashing
//! thread compete for them; read the figures with `nproc` in mind.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::host::{self, Result};
use crate::nginx::Nginx;

/// Which HTTP server serves the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Xtask,
    Nginx,
}

pub fn fetch(size_mib: u64, runs: usize, server: Server) -> Result<()> {
    let mut missing: Vec<&str> = Vec::new();
    if !host::on_path("curl") {
        missing.push("curl");
    }
    host::apt_install(&missing)?;
    let init = crate::initramfs::build_init()?;
    let dir = host::cache().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let name = format!("image-{size_mib}MiB.bin");
    let data = dir.join(&name);
    if std::fs::metadata(&data).map(|m| m.len()).ok() != Some(size_mib << 20) {
        write_data(&data, size_mib)?;
    }
    let (port, _nginx) = match server {
        Server::Xtask => (crate::httpd::serve(&dir).map_err(|e| e.to_string())?.port, None),
        Server::Nginx => {
            let nginx = start_nginx(&dir)?;
            (nginx.port, Some(nginx))
        }
    };
    let url = format!("http://127.0.0.1:{port}/{name}");
    let out = Path::new("/dev/shm").join(format!("netinit-bench-{}", std::process::id()));
    println!(
        "bench fetch: {size_mib} MiB from {url} ({server:?} server) into {}, {runs} runs each, alternating",
        out.display()
    );
    let tools = ["netinit", "curl", "curl+sha256"];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); tools.len()];
    // The file must come from the page cache for every run: this host reclaims cold page cache
    // (DAMON), which made whichever tool ran first read from disk.
    let mut file = std::fs::File::open(&data).map_err(|e| e.to_string())?;
    std::io::copy(&mut file, &mut std::io::sink()).map_err(|e| e.to_string())?;
    for run in 0..runs {
        // Each run starts with another tool, so none is always first (or always after another).
        for k in 0..tools.len() {
            let i = (run + k) % tools.len();
            let tool = tools[i];
            let mut cmd = match i {
                0 => {
                    let mut c = Command::new(&init);
                    c.arg("fetch").arg(&url).arg(&out);
                    c
                }
                1 => {
                    let mut c = Command::new("curl");
                    c.args(["-sS", "--fail", "-o"]).arg(&out).arg(&url);
                    c
                }
                _ => {
                    let mut c = Command::new("sh");
                    c.arg("-c")
                        .arg(r#"curl -sS --fail -o "$1" "$2" && openssl dgst -sha256 "$1""#)
                        .args(["sh"])
                        .arg(&out)
                        .arg(&url);
                    c
                }
            };
            let start = Instant::now();
            let status = cmd.stdout(Stdio::null()).status().map_err(|e| format!("running {tool}: {e}"))?;
            let secs = start.elapsed().as_secs_f64();
            let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            let _ = std::fs::remove_file(&out);
            if !status.success() || size != size_mib << 20 {
                return Err(format!("{tool} failed ({status}, {size} bytes)"));
            }
            let rate = size_mib as f64 / secs;
            println!("  run {}: {tool:12} {secs:7.3}s  {rate:8.1} MiB/s", run + 1);
            results[i].push(rate);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    // Each run's netinit/curl, the two measured within seconds of each other: the machine's speed
    // drifts (other tenants), and pairing cancels most of the drift that separate medians keep.
    let mut paired: Vec<f64> = results[0].iter().zip(&results[1]).map(|(n, c)| n / c).collect();
    let mut medians = Vec::new();
    for (tool, rates) in tools.iter().zip(&mut results) {
        let m = median(rates);
        let (lo, hi) = (rates[0], rates[rates.len() - 1]);
        println!("  {tool:12} median {m:7.1} MiB/s, slowest {lo:7.1}, fastest {hi:7.1}");
        medians.push(m);
    }
    let (n, c, ch) = (medians[0], medians[1], medians[2]);
    println!(
        "median MiB/s: netinit {n:.1}, curl {c:.1}, curl+sha256 {ch:.1} ({} cores)",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!(
        "netinit/curl = {:.3} ({:+.1} %), netinit/(curl+sha256) = {:.3} ({:+.1} %)",
        n / c,
        (n / c - 1.0) * 100.0,
        n / ch,
        (n / ch - 1.0) * 100.0
    );
    let p = median(&mut paired);
    println!(
        "netinit/curl run by run: median {p:.3} ({:+.1} %), from {:.3} to {:.3}",
        (p - 1.0) * 100.0,
        paired[0],
        paired[paired.len() - 1]
    );
    Ok(())
}

/// Pseudo-random bytes (xorshift), so no file system or link compresses or dedups them.
pub fn write_data(path: &Path, size_mib: u64) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| e.to_string())?);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..size_mib {
        for word in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&chunk).map_err(|e| e.to_string())?;
    }
    f.flush().map_err(|e| e.to_string())
}

/// Debian's nginx serving one directory on a free port of 127.0.0.1, configured as an image server
/// would be (`sendfile on`, no access log); stopped when dropped.
fn start_nginx(root: &Path) -> Result<Nginx> {
    let prefix = host::cache().join("bench-nginx");
    let port = crate::nginx::free_port()?;
    let http = format!(
        "  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  \
         server {{ listen 127.0.0.1:{port}; root {root}; }}\n",
        root = root.display(),
    );
    Nginx::start(&prefix, port, &crate::nginx::config(&prefix, "1", 64, &http))
}
