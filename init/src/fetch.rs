//! Stage 4: download the root image into a file on a tmpfs, streaming, with per-phase timeouts,
//! retries with backoff across the mirrors of `modloop=` within a time budget, a length check, and
//! SHA-256 computed on the way (checked against `modloop_sha256=` before anything mounts the file).
//! Progress goes to the console at most every 2 s.
//!
//! Not yet here: resuming with `Range:`, signatures, HTTPS. A retry restarts the file from byte 0,
//! so a partial download never survives into a mount.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::cmdline::{ImageConfig, Url, Verify};
use crate::sys;

/// Where the image is stored; the tmpfs mounted here is moved into the new root with `/run`.
pub const IMAGE_DIR: &str = "/run/netinit/image";
const IMAGE_FILE: &str = "root.squashfs";
const BUFFER: usize = 256 * 1024;
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Where `cargo xtask cpio --trust` will put the public keys images must be signed with.
pub const TRUSTED_KEYS: &str = "/etc/netinit/keys";

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
    #[error("GET {url}: the image's SHA-256 is {actual}, but modloop_sha256= says {expected}")]
    Digest { url: Url, expected: String, actual: String },
    #[error("modloop_verify=yes, but this initramfs has no trusted keys in {TRUSTED_KEYS}")]
    NoTrustedKeys,
    #[error("the download did not finish within netinit.timeout={}s ({attempts} attempts)", budget.as_secs())]
    Budget { budget: Duration, attempts: u32 },
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
            FetchError::Digest { .. } => {
                "the server has another image than the one named: check both, and the mirror"
            }
            FetchError::NoTrustedKeys => {
                "signature checks need keys built into the initramfs; or boot with modloop_verify=no"
            }
            FetchError::Budget { .. } => {
                "the server or the network is too slow for the budget: raise netinit.timeout="
            }
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

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The HTTP client: per-phase timeouts, status codes as values.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_resolve(Some(Duration::from_secs(15)))
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(30)))
        .user_agent(concat!("netinit/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// GETs a small file (an overlay, a key) into memory, once, refusing more than `limit` bytes.
pub fn get_small(url: &Url, limit: u64) -> Result<Vec<u8>, FetchError> {
    let transfer = |phase, message| FetchError::Transfer { url: url.clone(), phase, attempts: 1, message };
    let response = agent().get(url.as_str()).call().map_err(|e| {
        let (phase, message) = classify(&e);
        transfer(phase, message)
    })?;
    let status = response.status();
    if status.as_u16() != 200 {
        let reason = status.canonical_reason().map(str::to_owned);
        return Err(FetchError::Status { url: url.clone(), status: status.as_u16(), reason });
    }
    response
        .into_body()
        .into_with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| transfer(Phase::Body, e.to_string()))
}

/// One attempt's failure, and whether another attempt may help.
struct Failure {
    error: FetchError,
    permanent: bool,
}

/// Downloads the image from the first mirror that serves it.
pub fn download(image: &ImageConfig) -> Result<Fetched, FetchError> {
    let urls = &image.urls;
    if urls.is_empty() {
        return Err(FetchError::NoUrl);
    }
    if image.verify == Verify::Required && !has_trusted_keys() {
        return Err(FetchError::NoTrustedKeys);
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
    let policy = RetryPolicy { attempts: image.retries.saturating_add(1), ..RetryPolicy::default() };
    let deadline = sys::uptime() + image.timeout;
    let agent = agent();
    let mut dead = vec![false; urls.len()];
    let mut attempt = 0;
    let mut last = None;
    while attempt < policy.attempts {
        for (i, url) in urls.iter().enumerate() {
            if dead[i] || attempt >= policy.attempts {
                continue;
            }
            let left = deadline.saturating_sub(sys::uptime());
            if left.is_zero() {
                return Err(FetchError::Budget { budget: image.timeout, attempts: attempt });
            }
            attempt += 1;
            log::info!("fetching {url} (attempt {attempt} of {})", policy.attempts);
            match fetch_once(&agent, url, &path, attempt, left) {
                Ok(sha256) => {
                    if let Some(expected) = image.sha256 {
                        if expected != sha256 {
                            let (expected, actual) = (hex(&expected), hex(&sha256));
                            return Err(FetchError::Digest { url: url.clone(), expected, actual });
                        }
                        log::info!("SHA-256 matches modloop_sha256");
                    }
                    return Ok(Fetched { path, url: url.clone() });
                }
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
            let delay =
                policy.next_delay(attempt, sys::random_u64()).min(deadline.saturating_sub(sys::uptime()));
            log::info!("retrying in {:.1}s", delay.as_secs_f32());
            std::thread::sleep(delay);
        }
    }
    Err(last.unwrap_or(FetchError::NoUrl))
}

fn has_trusted_keys() -> bool {
    std::fs::read_dir(TRUSTED_KEYS).is_ok_and(|mut d| d.next().is_some())
}

/// One GET of the whole image into `path`; returns its SHA-256.
fn fetch_once(
    agent: &ureq::Agent,
    url: &Url,
    path: &Path,
    attempt: u32,
    budget: Duration,
) -> Result<[u8; 32], Failure> {
    let transient = |phase: Phase, message: String| Failure {
        error: FetchError::Transfer { url: url.clone(), phase, attempts: attempt, message },
        permanent: false,
    };
    let response =
        agent.get(url.as_str()).config().timeout_global(Some(budget)).build().call().map_err(|e| {
            let (phase, message) = classify(&e);
            transient(phase, message)
        })?;
    let status = response.status().as_u16();
    log::debug!("{url}: HTTP {status}, Content-Length {:?}", response.body().content_length());
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
    let mut hasher = Sha256::new();
    let mut progress = Progress::new(expected);
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(transient(Phase::Body, format!("{e} after {got} bytes"))),
        };
        file.write_all(&buf[..n]).map_err(write_error)?;
        hasher.update(&buf[..n]);
        got += n as u64;
        progress.update(got);
    }
    if let Some(expected) = expected.filter(|e| *e != got) {
        return Err(Failure {
            error: FetchError::Short { url: url.clone(), got, expected },
            permanent: false,
        });
    }
    let digest: [u8; 32] = hasher.finalize().into();
    progress.done(got, &digest);
    Ok(digest)
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

    fn done(&self, got: u64, sha256: &[u8]) {
        let elapsed = sys::uptime() - self.start;
        log::info!(
            "fetched {} in {:.1}s ({}), sha256 {}",
            mib(got),
            elapsed.as_secs_f32(),
            rate(got, elapsed),
            hex(sha256)
        );
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
            url: url.clone(),
            phase: Phase::Connect,
            attempts: 6,
            message: "Connection refused".into(),
        };
        assert_eq!(e.to_string(), "GET http://***@10.0.2.2:8080/missing.squashfs: connecting failed after 6 attempts: Connection refused");
        let e = FetchError::Digest { url, expected: "ab".repeat(32), actual: hex(&[0x01; 32]) };
        assert_eq!(
            e.to_string(),
            format!(
                "GET http://***@10.0.2.2:8080/missing.squashfs: the image's SHA-256 is {}, but modloop_sha256= says {}",
                "01".repeat(32),
                "ab".repeat(32)
            )
        );
    }
}
