//! `cargo xtask bench storm`: a reboot storm on loopback (issue 18). N clients at once fetch one
//! image from Debian's nginx holding the limits of a busy image server (16 downloads at a time,
//! 503 with `Retry-After: 1` beyond that, 50 MiB/s per connection): first the boot's own downloader
//! (`netinit fetch --sha256`, the musl `/init`), then curl with `--retry 20 --retry-delay 1`; then
//! both again through a second nginx, a caching proxy (`proxy_cache_lock on`) that carries the limits
//! in front of an origin that just serves. It prints one table: the clients that got a verified
//! image, the wall time, the clients' p50/p95/max, the requests and 503s in the access log of the
//! server the clients talk to, and the bytes the origin sent. Figures, not a timed test: it asserts
//! nothing about them. Everything lives in a directory of `/dev/shm` removed at the end; xtask hashes
//! each client's file and deletes it as soon as the client exits, so the tmpfs holds about one
//! image per download in flight, not one per client. Traffic stays on 127.0.0.1.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::host::{self, Result};
use crate::nginx::{self, Nginx};

/// What `cargo xtask bench storm` was asked to do.
pub struct Options {
    pub clients: usize,
    pub size_mib: u64,
    /// Also run both tools through the caching proxy.
    pub cache: bool,
    /// A client still running after this is killed and counted as failed.
    pub client_timeout: Duration,
}

/// A busy image server's limits, as nginx enforces them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Downloads served at a time (`limit_conn`); the rest are answered 503.
    pub downloads: u32,
    /// The `Retry-After:` of those 503s, in seconds.
    pub retry_after: u32,
    /// Bytes per second per connection, in nginx's syntax (`limit_rate`).
    pub rate: &'static str,
}

/// The limits of issue 18.
pub const BUSY: Limits = Limits { downloads: 16, retry_after: 1, rate: "50m" };

const IMAGE: &str = "image.bin";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Netinit,
    Curl,
    /// curl, then `sha256sum` of what it wrote: a client that delivers a verified image, as
    /// `netinit fetch --sha256` does. On one 2-core machine the clients' hashing competes with the
    /// server, so this is the like-for-like row.
    CurlSha256,
}

impl Tool {
    fn label(self) -> &'static str {
        match self {
            Tool::Netinit => "netinit fetch",
            Tool::Curl => "curl --retry 20",
            Tool::CurlSha256 => "curl+sha256sum",
        }
    }

    fn command(self, init: &Path, url: &str, sha256: &str, out: &Path) -> Command {
        match self {
            Tool::Netinit => {
                let mut c = Command::new(init);
                c.args(["fetch", "--sha256", sha256, url]).arg(out);
                c
            }
            Tool::Curl => {
                let mut c = Command::new("curl");
                c.args(["-sS", "--fail", "--retry", "20", "--retry-delay", "1", "-o"]).arg(out).arg(url);
                c
            }
            Tool::CurlSha256 => {
                let script = r#"curl -sS --fail --retry 20 --retry-delay 1 -o "$1" "$2" && sha256sum "$1" | grep -q "^$3 ""#;
                let mut c = Command::new("sh");
                c.args(["-c", script, "sh"]).arg(out).args([url, sha256]);
                c
            }
        }
    }
}

/// One client's result.
#[derive(Debug, Clone)]
struct Client {
    secs: f64,
    verified: bool,
    /// Why it has no verified image (its last line on stderr...), empty when it has one.
    note: String,
}

/// One tool's run against one setup.
struct Run {
    label: String,
    clients: Vec<Client>,
    /// Seconds from the first client's start to the last one's exit.
    wall: f64,
    /// Seconds from the first client's start to the last one's.
    spread: f64,
    /// The access log of the server the clients talked to.
    front: Served,
    /// The access log of the origin (the same server when there is no proxy).
    origin: Served,
}

/// What an access log in the `storm` format says.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Served {
    pub requests: u64,
    /// Answers 503.
    pub busy: u64,
    /// Answers 200 or 206.
    pub ok: u64,
    pub bytes: u64,
    /// The longest request, in seconds.
    pub longest: f64,
}

/// nginx's log line for each request: status, bytes sent (headers included), request time.
const LOG_FORMAT: &str = "log_format storm '$status $bytes_sent $request_time';";

/// Reads an access log written with [`LOG_FORMAT`]; a line of another shape is an error.
pub fn parse_log(text: &str) -> Result<Served> {
    let mut s = Served::default();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = || format!("access log line {}: {line:?} is not `status bytes seconds`", i + 1);
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [status, bytes, secs] = fields.as_slice() else { return Err(bad()) };
        let status: u16 = status.parse().map_err(|_| bad())?;
        let bytes: u64 = bytes.parse().map_err(|_| bad())?;
        let secs: f64 = secs.parse().map_err(|_| bad())?;
        s.requests += 1;
        s.bytes += bytes;
        s.busy += u64::from(status == 503);
        s.ok += u64::from(status == 200 || status == 206);
        s.longest = s.longest.max(secs);
    }
    Ok(s)
}

/// The nearest-rank percentile `p` (1 to 100) of `sorted` (ascending); `None` when it is empty.
pub fn percentile(sorted: &[f64], p: usize) -> Option<f64> {
    let rank = (p * sorted.len()).div_ceil(100).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

/// The `http { }` directives of a server on 127.0.0.1:`port` that logs to `prefix/access.log`,
/// with `limits` when given, and `content` (how it answers) in its one location.
fn site(prefix: &Path, port: u16, limits: Option<Limits>, content: &str) -> String {
    let mut s = format!(
        "  {LOG_FORMAT}\n  access_log {}/access.log storm;\n  sendfile on;\n  tcp_nopush on;\n",
        prefix.display()
    );
    let (mut location, mut busy) = (String::new(), String::new());
    if let Some(l) = limits {
        // One zone keyed by the server's name: the limit is the server's, whoever asks.
        s.push_str("  limit_conn_zone $server_name zone=downloads:1m;\n");
        location = format!(
            "      limit_conn downloads {};\n      limit_conn_status 503;\n      limit_rate {};\n      \
             error_page 503 @busy;\n",
            l.downloads, l.rate
        );
        busy = format!(
            "    location @busy {{\n      add_header Retry-After {} always;\n      return 503;\n    }}\n",
            l.retry_after
        );
    }
    s.push_str(&format!(
        "  server {{\n    listen 127.0.0.1:{port};\n    server_name images;\n    location / {{\n\
         {location}      {content}\n    }}\n{busy}  }}\n"
    ));
    s
}

/// nginx.conf of the image server: files from `root`, with `limits` when it faces the clients.
pub fn origin_conf(prefix: &Path, port: u16, root: &Path, limits: Option<Limits>, clients: usize) -> String {
    let http = site(prefix, port, limits, &format!("root {};", root.display()));
    nginx::config(prefix, "auto", connections(clients), &http)
}

/// nginx.conf of a caching proxy in front of the origin on `origin_port`, with `limits`: one request
/// fills the cache (`proxy_cache_lock`) while the others for the same image wait for it.
pub fn proxy_conf(prefix: &Path, port: u16, origin_port: u16, limits: Limits, clients: usize) -> String {
    let cache = format!(
        "  proxy_cache_path {}/cache levels=1:2 keys_zone=images:1m use_temp_path=off;\n",
        prefix.display()
    );
    let content = format!(
        "proxy_pass http://127.0.0.1:{origin_port};\n      proxy_cache images;\n      \
         proxy_cache_valid 200 1h;\n      proxy_cache_lock on;\n      proxy_cache_lock_timeout 15m;\n      \
         proxy_cache_lock_age 15m;"
    );
    nginx::config(
        prefix,
        "auto",
        connections(clients),
        &(cache + &site(prefix, port, Some(limits), &content)),
    )
}

/// Connections per nginx worker: every client's, and as many to an origin, with room to spare.
fn connections(clients: usize) -> u32 {
    u32::try_from(clients.saturating_mul(2).saturating_add(64)).unwrap_or(u32::MAX)
}

/// Raises this process's soft open-file limit to its hard limit (the clients and nginx inherit it);
/// returns the limit.
fn raise_nofile() -> Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) writes into the rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error()));
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit(2) reads the rlimit we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(format!("setrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error()));
        }
    }
    Ok(lim.rlim_cur)
}

/// What every run of one storm shares.
#[derive(Clone, Copy)]
struct Job<'a> {
    /// The `netinit` binary.
    init: &'a Path,
    /// The image's SHA-256, in hex.
    sha256: &'a str,
    /// The storm's directory, with the image in `www/`.
    work: &'a Path,
    o: &'a Options,
}

/// A directory of `/dev/shm`, removed with everything in it when dropped.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn storm(o: &Options) -> Result<()> {
    if !host::on_path("curl") {
        host::apt_install(&["curl"])?;
    }
    nginx::binary()?;
    let init = crate::initramfs::build_init()?;
    let nofile = raise_nofile()?;
    let work = WorkDir(Path::new("/dev/shm").join(format!("netinit-storm-{}", std::process::id())));
    let www = work.0.join("www");
    std::fs::create_dir_all(&www).map_err(|e| format!("creating {}: {e}", www.display()))?;
    crate::bench::write_data(&www.join(IMAGE), o.size_mib)?;
    let sha256 = crate::image::sha256_file(&www.join(IMAGE))?;
    println!(
        "bench storm: {} clients at once fetch a {} MiB image from nginx on 127.0.0.1: {} downloads at a \
         time (limit_conn), 503 with Retry-After: {} beyond that, limit_rate {} per connection (open files: \
         {nofile})",
        o.clients, o.size_mib, BUSY.downloads, BUSY.retry_after, BUSY.rate
    );
    println!("{}", header());
    let mut runs = Vec::new();
    for cached in if o.cache { &[false, true][..] } else { &[false][..] } {
        for tool in [Tool::Netinit, Tool::Curl, Tool::CurlSha256] {
            let job = Job { init: &init, sha256: &sha256, work: &work.0, o };
            let run = run_setup(tool, *cached, &job)?;
            println!("{}", row(&run));
            runs.push(run);
        }
    }
    println!(
        "(p50/p95/max: seconds to a verified image; requests, 503s: the log of the server the clients \
         ask, the proxy when cached; origin MiB: what the origin sent)\n"
    );
    for run in &runs {
        print!("{}", details(run, o.size_mib));
    }
    Ok(())
}

/// Starts the servers of one setup (the origin with the limits, or a plain origin behind a caching
/// proxy with them), runs the clients of one tool against it, stops the servers, reads their logs.
fn run_setup(tool: Tool, cached: bool, job: &Job) -> Result<Run> {
    let Job { work, o, .. } = *job;
    let dir = work.join(format!("{}-{tool:?}", if cached { "cached" } else { "direct" }));
    let (origin_dir, proxy_dir) = (dir.join("origin"), dir.join("proxy"));
    let www = work.join("www");
    let port = nginx::free_port()?;
    let limits = (!cached).then_some(BUSY);
    let origin = Nginx::start(&origin_dir, port, &origin_conf(&origin_dir, port, &www, limits, o.clients))?;
    let proxy = if cached {
        let p = nginx::free_port()?;
        Some(Nginx::start(&proxy_dir, p, &proxy_conf(&proxy_dir, p, port, BUSY, o.clients))?)
    } else {
        None
    };
    let front = proxy.as_ref().map_or(port, |p| p.port);
    let url = format!("http://127.0.0.1:{front}/{IMAGE}");
    let clients_dir = dir.join("clients");
    std::fs::create_dir_all(&clients_dir).map_err(|e| e.to_string())?;
    let (clients, wall, spread) = run_clients(tool, job, &url, &clients_dir)?;
    // Stopped first, so every request is in the logs.
    drop(proxy);
    drop(origin);
    let log = |d: &Path| -> Result<Served> {
        let path = d.join("access.log");
        parse_log(&std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?)
    };
    let origin = log(&origin_dir)?;
    let front = if cached { log(&proxy_dir)? } else { origin.clone() };
    let label = format!("{} {}", if cached { "cached" } else { "direct" }, tool.label());
    Ok(Run { label, clients, wall, spread, front, origin })
}

/// Starts `o.clients` clients of `tool` at once, each writing to its own file of `dir`; as each
/// exits, a second thread checks its file's SHA-256 and deletes it. A client running longer than
/// `o.client_timeout` is killed. Returns the clients, the wall time (from the first start to the last
/// exit; the checking that follows is not counted) and the time it took to start them all.
fn run_clients(tool: Tool, job: &Job, url: &str, dir: &Path) -> Result<(Vec<Client>, f64, f64)> {
    let Job { init, sha256, o, .. } = *job;
    let files: Vec<(PathBuf, PathBuf)> =
        (0..o.clients).map(|i| (dir.join(format!("{i}.img")), dir.join(format!("{i}.err")))).collect();
    let first = Instant::now();
    let mut running = spawn_all(&files, |out| tool.command(init, url, sha256, out), tool.label())?;
    let spread = first.elapsed().as_secs_f64();
    let (tx, rx) = std::sync::mpsc::channel::<(usize, PathBuf)>();
    let image_path = job.work.join("www").join(IMAGE);
    let image = std::fs::read(&image_path).map_err(|e| format!("reading {}: {e}", image_path.display()))?;
    let checker = check_in_turn(rx, image);
    let mut clients = vec![Client { secs: 0.0, verified: false, note: String::new() }; o.clients];
    let mut wall = 0.0;
    while !running.is_empty() {
        running.retain_mut(|(i, child, start)| {
            let failure = match child.try_wait() {
                Ok(None) if start.elapsed() < o.client_timeout => return true,
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    format!("killed after {} s", o.client_timeout.as_secs())
                }
                Ok(Some(status)) if status.success() => String::new(),
                Ok(Some(status)) => last_line(&files[*i].1, &files[*i].0, status),
                Err(e) => format!("waiting for it: {e}"),
            };
            clients[*i].secs = start.elapsed().as_secs_f64();
            wall = first.elapsed().as_secs_f64();
            if failure.is_empty() {
                let _ = tx.send((*i, files[*i].0.clone()));
            } else {
                clients[*i].note = failure;
                let _ = std::fs::remove_file(&files[*i].0);
            }
            false
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(tx);
    for (i, verdict) in checker.join().map_err(|_| "the SHA-256 checker panicked")? {
        clients[i].verified = verdict.is_none();
        clients[i].note = verdict.unwrap_or_default();
    }
    Ok((clients, wall, spread))
}

/// Starts one client per `(image file, stderr file)`, as fast as it can; when one cannot start, kills
/// those already started.
fn spawn_all(
    files: &[(PathBuf, PathBuf)],
    command: impl Fn(&Path) -> Command,
    label: &str,
) -> Result<Vec<(usize, Child, Instant)>> {
    let mut running: Vec<(usize, Child, Instant)> = Vec::with_capacity(files.len());
    for (i, (out, err)) in files.iter().enumerate() {
        let spawned = std::fs::File::create(err).map_err(|e| e.to_string()).and_then(|stderr| {
            let mut cmd = command(out);
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
            cmd.spawn().map_err(|e| format!("starting client {i} ({label}): {e}"))
        });
        match spawned {
            Ok(child) => running.push((i, child, Instant::now())),
            Err(e) => {
                for (_, child, _) in &mut running {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(e);
            }
        }
    }
    Ok(running)
}

/// A thread that compares each file it is sent with the image byte for byte, deletes the file, and
/// returns each client's verdict: `None` for the image, else what was wrong. A comparison, not a
/// second SHA-256: hashing every client's file again would charge netinit, which has already
/// hashed what it received, for the same work twice on a 2-core machine.
fn check_in_turn(
    files: std::sync::mpsc::Receiver<(usize, PathBuf)>,
    image: Vec<u8>,
) -> std::thread::JoinHandle<Vec<(usize, Option<String>)>> {
    std::thread::spawn(move || {
        files
            .into_iter()
            .map(|(i, path)| {
                let verdict = match std::fs::read(&path) {
                    Ok(got) if got == image => None,
                    Ok(got) => Some(format!("exit 0, but the file ({} bytes) is not the image", got.len())),
                    Err(e) => Some(format!("exit 0, but reading it: {e}")),
                };
                let _ = std::fs::remove_file(&path);
                (i, verdict)
            })
            .collect()
    })
}

/// A failed client's last line on stderr, its own file's name replaced by `FILE` so that the same
/// failure reads the same for every client.
fn last_line(err: &Path, out: &Path, status: std::process::ExitStatus) -> String {
    let text = std::fs::read_to_string(err).unwrap_or_default();
    let line = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(nothing on stderr)");
    let line = line.replace(&out.display().to_string(), "FILE");
    format!("{status}: {}", line.chars().take(200).collect::<String>())
}

fn header() -> String {
    format!(
        "{:<24}{:>9}{:>8}{:>7}{:>7}{:>7}{:>10}{:>7}{:>12}",
        "", "verified", "wall s", "p50 s", "p95 s", "max s", "requests", "503s", "origin MiB"
    )
}

/// One line of the table; the percentiles are over the clients that got a verified image.
fn row(r: &Run) -> String {
    let mut times: Vec<f64> = r.clients.iter().filter(|c| c.verified).map(|c| c.secs).collect();
    times.sort_by(f64::total_cmp);
    let p = |n| percentile(&times, n).map_or("-".to_owned(), |t| format!("{t:.1}"));
    format!(
        "{:<24}{:>9}{:>8.1}{:>7}{:>7}{:>7}{:>10}{:>7}{:>12.1}",
        r.label,
        format!("{}/{}", times.len(), r.clients.len()),
        r.wall,
        p(50),
        p(95),
        p(100),
        r.front.requests,
        r.front.busy,
        r.origin.bytes as f64 / 1048576.0
    )
}

/// Distinct notes with how often each occurs, the most frequent first (then alphabetically).
pub fn tally<'a>(notes: impl IntoIterator<Item = &'a str>) -> Vec<(usize, &'a str)> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for n in notes {
        *counts.entry(n).or_default() += 1;
    }
    let mut out: Vec<(usize, &str)> = counts.into_iter().map(|(n, c)| (c, n)).collect();
    out.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    out
}

/// What the table does not show: the answers nginx gave, and why clients failed.
fn details(r: &Run, size_mib: u64) -> String {
    let f = &r.front;
    let mut s = format!(
        "{}: started within {:.1} s; {} answers 200/206, {} 503, {} other; longest request {:.1} s; origin \
         sent {:.2} images' worth\n",
        r.label,
        r.spread,
        f.ok,
        f.busy,
        f.requests - f.ok - f.busy,
        f.longest,
        r.origin.bytes as f64 / (size_mib.max(1) << 20) as f64
    );
    let failed: Vec<&Client> = r.clients.iter().filter(|c| !c.verified).collect();
    if let (Some(first), Some(last)) = (
        failed.iter().map(|c| c.secs).min_by(f64::total_cmp),
        failed.iter().map(|c| c.secs).max_by(f64::total_cmp),
    ) {
        s.push_str(&format!(
            "  {} without the image, giving up after {first:.1} to {last:.1} s:\n",
            failed.len()
        ));
        for (count, note) in tally(failed.iter().map(|c| c.note.as_str())).into_iter().take(3) {
            s.push_str(&format!("  {count:5} x {note}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_logs() {
        let check = |text: &str, expected: Result<Served>| assert_eq!(parse_log(text), expected, "{text:?}");
        check("", Ok(Served::default()));
        check(
            "200 33554677 0.671\n503 355 0.000\n\n206 1000 1.500\n499 0 2.000\n",
            Ok(Served { requests: 4, busy: 1, ok: 2, bytes: 33556032, longest: 2.0 }),
        );
        check("503 355\n", Err("access log line 1: \"503 355\" is not `status bytes seconds`".into()));
        check(
            "200 1 0.1\n127.0.0.1 - - [date] \"GET /\" 200\n",
            Err(
                "access log line 2: \"127.0.0.1 - - [date] \\\"GET /\\\" 200\" is not `status bytes seconds`"
                    .into(),
            ),
        );
        check("200 -1 0.1\n", Err("access log line 1: \"200 -1 0.1\" is not `status bytes seconds`".into()));
    }

    #[test]
    fn percentiles() {
        let check =
            |v: &[f64], p: usize, expected: Option<f64>| assert_eq!(percentile(v, p), expected, "{v:?} {p}");
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        check(&hundred, 50, Some(50.0));
        check(&hundred, 95, Some(95.0));
        check(&hundred, 100, Some(100.0));
        check(&hundred, 1, Some(1.0));
        check(&[1.0, 2.0, 3.0], 50, Some(2.0));
        check(&[1.0, 2.0, 3.0, 4.0], 50, Some(2.0));
        check(&[1.0, 2.0, 3.0, 4.0], 95, Some(4.0));
        check(&[7.0], 95, Some(7.0));
        check(&[], 50, None);
    }

    #[test]
    fn the_busy_server_has_the_limits() {
        let conf = origin_conf(Path::new("/w/o"), 8080, Path::new("/w/www"), Some(BUSY), 200);
        for line in [
            "listen 127.0.0.1:8080;",
            "root /w/www;",
            "limit_conn_zone $server_name zone=downloads:1m;",
            "limit_conn downloads 16;",
            "limit_conn_status 503;",
            "limit_rate 50m;",
            "error_page 503 @busy;",
            "add_header Retry-After 1 always;",
            "access_log /w/o/access.log storm;",
            LOG_FORMAT,
            "pid /w/o/nginx.pid;",
            "error_log /w/o/error.log;",
            "proxy_temp_path /w/o/temp/proxy;",
            "worker_connections 464;",
            "worker_rlimit_nofile 928;",
        ] {
            assert!(conf.contains(line), "{line:?} missing from:\n{conf}");
        }
        assert_eq!(conf.matches('{').count(), conf.matches('}').count(), "{conf}");
        assert!(!conf.contains("listen 80") && !conf.contains("include"), "{conf}");
    }

    #[test]
    fn behind_a_cache_the_origin_just_serves_and_the_proxy_has_the_limits() {
        let origin = origin_conf(Path::new("/w/o"), 8080, Path::new("/w/www"), None, 200);
        assert!(!origin.contains("limit_conn") && !origin.contains("limit_rate"), "{origin}");
        assert!(!origin.contains("Retry-After"), "{origin}");
        assert!(origin.contains("root /w/www;"), "{origin}");
        let proxy = proxy_conf(Path::new("/w/p"), 8081, 8080, BUSY, 200);
        for line in [
            "listen 127.0.0.1:8081;",
            "proxy_pass http://127.0.0.1:8080;",
            "proxy_cache_path /w/p/cache levels=1:2 keys_zone=images:1m use_temp_path=off;",
            "proxy_cache images;",
            "proxy_cache_lock on;",
            "proxy_cache_valid 200 1h;",
            "limit_conn downloads 16;",
            "limit_rate 50m;",
            "add_header Retry-After 1 always;",
            "access_log /w/p/access.log storm;",
        ] {
            assert!(proxy.contains(line), "{line:?} missing from:\n{proxy}");
        }
        assert!(!proxy.contains("root "), "{proxy}");
        assert_eq!(proxy.matches('{').count(), proxy.matches('}').count(), "{proxy}");
    }

    #[test]
    fn notes_are_tallied_most_frequent_first() {
        assert_eq!(tally(["b", "a", "b", "c", "a", "b"]), vec![(3, "b"), (2, "a"), (1, "c")]);
        assert_eq!(tally(["z", "y"]), vec![(1, "y"), (1, "z")]);
        assert_eq!(tally([]), Vec::<(usize, &str)>::new());
    }
}
