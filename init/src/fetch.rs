//! Stage 4: download the root image into a file on a tmpfs, streaming, with per-phase timeouts,
//! retries with backoff across the mirrors of `modloop=`, and a length check. Progress goes to the
//! console at most every 2 s.
//!
//! Not yet here (issue 5): resuming with `Range:`, digests and signatures, HTTPS. A retry restarts
//! the file from byte 0, so a partial download never survives into a mount.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmdline::Url;
use crate::sys;

/// Where the image is stored; the tmpfs mounted here is moved into the new root with `/run`.
pub const IMAGE_DIR: &str = "/run/netinit/image";
const IMAGE_FILE: &str = "root.squashfs";
const BUFFER: usize = 256 * 1024;
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// When and how often to retry: exponential backoff with full jitter, pure so it is tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, across all mirrors.
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 6, base: Duration::from_secs(1), cap: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` after `attempt` (1-based) failed: uniform in
    /// `0..=min(cap, base * 2^(attempt-1))`, where `random` is any u64. Full jitter spreads a
    /// thousand machines that failed together.
    pub fn next_delay(&self, attempt: u32, random: u64) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let ceiling = exp.min(self.cap).as_millis() as u64;
        Duration::from_millis(random % (ceiling + 1))
    }
}

/// Which part of a transfer failed: what the operator needs to look at differs for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Resolve,
    Connect,
    Headers,
    Body,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Resolve => "resolving the host",
            Phase::Connect => "connecting",
            Phase::Headers => "waiting for the response headers",
            Phase::Body => "receiving the body",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url} answered HTTP {status}{}", reason.as_deref().map(|r| format!(" {r}")).unwrap_or_default())]
    Status { url: Url, status: u16, reason: Option<String> },
    #[error("GET {url}: {phase} failed after {attempts} attempts: {message}")]
    Transfer { url: Url, phase: Phase, attempts: u32, message: String },
    #[error("GET {url}: the body ended after {got} of {expected} bytes")]
    Short { url: Url, got: u64, expected: u64 },
    #[error("no image URL to fetch")]
    NoUrl,
    #[error("mounting a tmpfs on {IMAGE_DIR}")]
    Mount(#[source] io::Error),
    #[error("writing {path}")]
    Write { path: PathBuf, source: io::Error },
}

impl FetchError {
    pub fn hint(&self) -> &'static str {
        match self {
            FetchError::Status { status: 404 | 410, .. } => {
                "check that the image exists at that path on the server"
            }
            FetchError::Status { status: 401 | 403, .. } => {
                "the server refuses access: check its permissions"
            }
            FetchError::Status { .. } => "the server could not serve the image: check its logs",
            FetchError::Transfer { phase: Phase::Resolve, .. } => {
                "check the host name and the DNS server from DHCP"
            }
            FetchError::Transfer { phase: Phase::Connect, .. } => {
                "check that the server is up and reachable from this network"
            }
            FetchError::Transfer { .. } | FetchError::Short { .. } => {
                "the server or the network dropped the transfer"
            }
            FetchError::Write { .. } => {
                "the image does not fit in RAM: use a machine with more memory or a smaller image"
            }
            FetchError::NoUrl => "give modloop=http://server/root.squashfs",
            FetchError::Mount(_) => "this is unexpected; the error above names the system's answer",
        }
    }
}

/// The downloaded image.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    pub url: Url,
}

/// One attempt's failure, and whether another attempt may help.
struct Failure {
    error: FetchError,
    permanent: bool,
}

/// Downloads the image from the first mirror that serves it.
pub fn download(urls: &[Url], policy: RetryPolicy) -> Result<Fetched, FetchError> {
    if urls.is_empty() {
        return Err(FetchError::NoUrl);
    }
    std::fs::create_dir_all(IMAGE_DIR).map_err(FetchError::Mount)?;
    sys::mount(
        "netinit-image",
        Path::new(IMAGE_DIR),
        "tmpfs",
        rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
        "mode=0755",
    )
    .map_err(FetchError::Mount)?;
    let path = Path::new(IMAGE_DIR).join(IMAGE_FILE);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_resolve(Some(Duration::from_secs(15)))
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(30)))
        .user_agent(concat!("netinit/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut dead = vec![false; urls.len()];
    let mut attempt = 0;
    let mut last = None;
    while attempt < policy.attempts {
        for (i, url) in urls.iter().enumerate() {
            if dead[i] || attempt >= policy.attempts {
                continue;
            }
            attempt += 1;
            log::info!("fetching {url} (attempt {attempt} of {})", policy.attempts);
            match fetch_once(&agent, url, &path, attempt) {
                Ok(()) => return Ok(Fetched { path, url: url.clone() }),
                Err(Failure { error, permanent }) => {
                    log::warn!("{error}");
                    dead[i] |= permanent;
                    last = Some(error);
                }
            }
        }
        if dead.iter().all(|d| *d) {
            break;
        }
        if attempt < policy.attempts {
            let delay = policy.next_delay(attempt, sys::random_u64());
            log::info!("retrying in {:.1}s", delay.as_secs_f32());
            std::thread::sleep(delay);
        }
    }
    Err(last.unwrap_or(FetchError::NoUrl))
}

fn fetch_once(agent: &ureq::Agent, url: &Url, path: &Path, attempt: u32) -> Result<(), Failure> {
    let transient = |phase: Phase, message: String| Failure {
        error: FetchError::Transfer { url: url.clone(), phase, attempts: attempt, message },
        permanent: false,
    };
    let response = agent.get(url.as_str()).call().map_err(|e| {
        let (phase, message) = classify(&e);
        transient(phase, message)
    })?;
    let status = response.status().as_u16();
    if status != 200 {
        // 408, 429 and 5xx may pass; other 4xx will not for this mirror.
        let permanent = (400..500).contains(&status) && status != 408 && status != 429;
        let reason = response.status().canonical_reason().map(str::to_owned);
        return Err(Failure { error: FetchError::Status { url: url.clone(), status, reason }, permanent });
    }
    let expected = response.body().content_length();
    let mut body = response.into_body().into_reader();
    let write_error =
        |source| Failure { error: FetchError::Write { path: path.to_owned(), source }, permanent: true };
    let mut file = File::create(path).map_err(write_error)?;
    let mut buf = vec![0u8; BUFFER];
    let mut got = 0u64;
    let mut progress = Progress::new(expected);
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(transient(Phase::Body, format!("{e} after {got} bytes"))),
        };
        file.write_all(&buf[..n]).map_err(write_error)?;
        got += n as u64;
        progress.update(got);
    }
    if let Some(expected) = expected.filter(|e| *e != got) {
        return Err(Failure {
            error: FetchError::Short { url: url.clone(), got, expected },
            permanent: false,
        });
    }
    progress.done(got);
    Ok(())
}

/// Which phase a ureq error belongs to, and what to say about it.
fn classify(e: &ureq::Error) -> (Phase, String) {
    use ureq::Timeout;
    match e {
        ureq::Error::HostNotFound => (Phase::Resolve, "host not found".into()),
        ureq::Error::Timeout(Timeout::Resolve) => (Phase::Resolve, "timed out".into()),
        ureq::Error::Timeout(Timeout::Connect) => (Phase::Connect, "timed out".into()),
        ureq::Error::ConnectionFailed => (Phase::Connect, "connection failed".into()),
        ureq::Error::Timeout(_) => (Phase::Headers, "timed out".into()),
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::HostUnreachable
            ) =>
        {
            (Phase::Connect, io.to_string())
        }
        other => (Phase::Headers, other.to_string()),
    }
}

/// Console progress: one line at most every 2 s, with the rate and, when the size is known, percent
/// and time left.
struct Progress {
    total: Option<u64>,
    start: Duration,
    last: Duration,
}

impl Progress {
    fn new(total: Option<u64>) -> Self {
        let now = sys::uptime();
        Progress { total, start: now, last: now }
    }

    fn update(&mut self, got: u64) {
        let now = sys::uptime();
        if now - self.last >= PROGRESS_EVERY {
            self.last = now;
            log::info!("{}", progress_line(got, self.total, now - self.start));
        }
    }

    fn done(&self, got: u64) {
        let elapsed = sys::uptime() - self.start;
        log::info!("fetched {} in {:.1}s ({})", mib(got), elapsed.as_secs_f32(), rate(got, elapsed));
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    format!("{:.1} MiB/s", bytes as f64 / 1048576.0 / secs)
}

/// `12.0 MiB of 40.0 MiB (30%), 6.0 MiB/s, 5s left`.
pub fn progress_line(got: u64, total: Option<u64>, elapsed: Duration) -> String {
    match total.filter(|t| *t > 0) {
        Some(total) => {
            let secs = elapsed.as_secs_f64().max(0.001);
            let left = (total.saturating_sub(got)) as f64 / (got as f64 / secs).max(1.0);
            format!(
                "{} of {} ({}%), {}, {:.0}s left",
                mib(got),
                mib(total),
                got * 100 / total,
                rate(got, elapsed),
                left
            )
        }
        None => format!("{}, {}", mib(got), rate(got, elapsed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_exponential_capped_and_jittered() {
        let p = RetryPolicy::default();
        let check = |attempt: u32, ceiling_ms: u64| {
            assert_eq!(
                p.next_delay(attempt, u64::MAX - (u64::MAX % (ceiling_ms + 1)) - 1).as_millis() as u64,
                ceiling_ms,
                "attempt {attempt}"
            );
            assert_eq!(p.next_delay(attempt, 0), Duration::ZERO, "attempt {attempt}");
            assert_eq!(
                p.next_delay(attempt, ceiling_ms),
                Duration::from_millis(ceiling_ms),
                "attempt {attempt}"
            );
        };
        check(1, 1000);
        check(2, 2000);
        check(3, 4000);
        check(5, 16000);
        check(6, 30000);
        check(40, 30000);
        assert_eq!(p.next_delay(0, 7), Duration::from_millis(7));
    }

    #[test]
    fn progress_lines() {
        let mib = 1048576;
        assert_eq!(
            progress_line(12 * mib, Some(40 * mib), Duration::from_secs(2)),
            "12.0 MiB of 40.0 MiB (30%), 6.0 MiB/s, 5s left"
        );
        assert_eq!(progress_line(3 * mib, None, Duration::from_secs(1)), "3.0 MiB, 3.0 MiB/s");
        assert_eq!(progress_line(0, Some(0), Duration::ZERO), "0.0 MiB, 0.0 MiB/s");
    }

    #[test]
    fn errors_name_url_status_and_phase() {
        let url = Url::parse("http://user:pw@10.0.2.2:8080/missing.squashfs").unwrap();
        let e = FetchError::Status { url: url.clone(), status: 404, reason: Some("Not Found".into()) };
        assert_eq!(
            e.to_string(),
            "GET http://***@10.0.2.2:8080/missing.squashfs answered HTTP 404 Not Found"
        );
        assert_eq!(e.hint(), "check that the image exists at that path on the server");
        let e = FetchError::Transfer {
            url,
            phase: Phase::Connect,
            attempts: 6,
            message: "Connection refused".into(),
        };
        assert_eq!(e.to_string(), "GET http://***@10.0.2.2:8080/missing.squashfs: connecting failed after 6 attempts: Connection refused");
    }
}
