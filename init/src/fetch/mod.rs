//! The fetch stage: download the root image into a file on its own tmpfs, checked before anything mounts it.
//! The stage mounts the tmpfs, measures its room, runs the [`engine`] (mirrors, retries, resume,
//! per-phase timeouts, progress), compares the SHA-256 with `modloop_sha256=`, and prints one line
//! with size, time, rate and digest.
//!
//! Signatures: when the initramfs carries trusted minisign public keys (`cargo xtask cpio --trust`),
//! the image's detached signature `<URL>.minisig` is fetched first and checked while the image
//! streams in (minisign's prehashed Ed25519), unless `modloop_verify=no`.
//!
//! HTTPS: rustls, with Mozilla's roots plus the CAs built into the initramfs (`cargo xtask cpio --ca`,
//! in `/etc/netinit/ca`). Certificate errors are fatal and say why; a redirect from https to http is
//! refused.

pub mod engine;
mod hasher;
pub(crate) mod http;
mod proxy;
pub mod retry;
#[cfg(test)]
mod tests;
mod tls;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use retry::RetryPolicy;

use crate::cmdline::{ImageConfig, ProxyConfig, Url, Verify};
use crate::sys;

/// Where the image is stored; the tmpfs mounted here is moved into the new root with `/run`.
pub const IMAGE_DIR: &str = "/run/netinit/image";
pub const IMAGE_FILE: &str = "root.squashfs";
pub(crate) const BUFFER: usize = 256 * 1024;
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Where `cargo xtask cpio --trust` will put the public keys images must be signed with.
pub const TRUSTED_KEYS: &str = "/etc/netinit/keys";

/// Which part of a transfer failed: what the operator needs to look at differs for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Resolve,
    Connect,
    Tls,
    Headers,
    Body,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Resolve => "resolving the host",
            Phase::Connect => "connecting",
            Phase::Tls => "the TLS handshake",
            Phase::Headers => "waiting for the response headers",
            Phase::Body => "receiving the body",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "GET {url} answered HTTP {status}{}{}",
        reason.as_deref().map(|r| format!(" {r}")).unwrap_or_default(),
        via.as_deref().map(|p| format!(" (through the proxy {p})")).unwrap_or_default()
    )]
    Status { url: Url, status: u16, reason: Option<String>, via: Option<String> },
    #[error("GET {url}: {phase} failed on attempt {attempts}: {message}")]
    Transfer { url: Url, phase: Phase, attempts: u32, message: String },
    #[error("GET {url}: the body ended after {got} of {expected} bytes")]
    Short { url: Url, got: u64, expected: u64 },
    #[error("no image URL to fetch")]
    NoUrl,
    #[error("GET {url}: the TLS handshake failed: {message}")]
    Tls { url: Url, message: String },
    #[error("{from} redirects to {to}: refusing to leave https for http")]
    Downgrade { from: Url, to: Url },
    #[error("reading the trusted key {path}: {why}")]
    Key { path: PathBuf, why: String },
    #[error("no signature for the image: {why}")]
    NoSignature { why: String },
    #[error("{url} is not signed ({why}), and this initramfs checks signatures")]
    Unsigned { url: Url, why: String },
    #[error("{url} is signed by a key this initramfs does not trust ({why})")]
    UnknownKey { url: Url, why: String },
    #[error("the signature of {url} does not verify: {why}")]
    BadSignature { url: Url, why: String },
    #[error("the image's SHA-256 could not be computed: the hashing thread stopped")]
    Hashing,
    #[error("GET {url}: the image's SHA-256 is {actual}, but modloop_sha256= says {expected}")]
    Digest { url: Url, expected: String, actual: String },
    #[error("modloop_verify=yes, but this initramfs has no trusted keys in {TRUSTED_KEYS}")]
    NoTrustedKeys,
    #[error("the download did not finish within netinit.timeout={}s ({attempts} attempts{})", budget.as_secs(), busy_note(*busy))]
    Budget { budget: Duration, attempts: u32, busy: u32 },
    #[error("GET {url}: {} {hops}", if *looped { "the redirects go round in a loop:" } else { "more than 10 redirects:" })]
    Redirects { url: Url, hops: String, looped: bool },
    #[error("GET {url}: the server sent the image with Content-Encoding: {encoding}, which netinit did not ask for and cannot decode")]
    Encoded { url: Url, encoding: String },
    #[error("GET {url}: the image is {} but the RAM disk has {} free", mib(*size), mib(*room))]
    TooBig { url: Url, size: u64, room: u64 },
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
            FetchError::Status { status: 407, .. } | FetchError::Status { status: 401, via: Some(_), .. } => {
                "the proxy or the server refuses the credentials: check those of proxy= and of the URL"
            }
            FetchError::Status { status: 403, via: Some(_), .. } => {
                "the proxy or the server refuses access: check the proxy's rules and the server's permissions"
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
            FetchError::Tls { .. } => {
                "the server's certificate is not trusted: build its CA into the initramfs (cargo xtask cpio --ca) or fix the server's certificate"
            }
            FetchError::Downgrade { .. } => "serve the image over https all the way, or name the http URL in modloop= yourself",
            FetchError::Key { .. } => "rebuild the initramfs with a minisign public key file (cargo xtask cpio --trust)",
            FetchError::NoSignature { .. } => {
                "sign the image (minisign -Sm root.squashfs) and put the .minisig beside it, or boot with modloop_verify=no"
            }
            FetchError::Unsigned { .. } => {
                "sign it with an image key (minisign -Sm FILE) and put FILE.minisig beside it, or boot with modloop_verify=no"
            }
            FetchError::UnknownKey { .. } | FetchError::BadSignature { .. } => {
                "the file is not the one its publisher signed: do not boot it; re-sign it or check the mirror"
            }
            FetchError::Hashing => "this is a bug in netinit: please report it with this console log",
            FetchError::Digest { .. } => {
                "the server has another image than the one named: check both, and the mirror"
            }
            FetchError::NoTrustedKeys => {
                "signature checks need keys built into the initramfs; or boot with modloop_verify=no"
            }
            FetchError::Budget { busy: 0, .. } => {
                "the server or the network is too slow for the budget: raise netinit.timeout="
            }
            FetchError::Budget { .. } => {
                "the image server is overloaded: add mirrors to modloop= or an HTTP cache in front of it, or raise netinit.timeout="
            }
            FetchError::Redirects { .. } => {
                "a redirect that no retry can fix: correct the server's redirects, or name the final URL in modloop="
            }
            FetchError::Encoded { .. } => {
                "turn compression off for the image on the server (a squashfs is compressed already)"
            }
            FetchError::TooBig { .. } => "boot a machine with more RAM, or a smaller image",
            FetchError::Mount(_) => "this is unexpected; the error above names the system's answer",
        }
    }
}

/// `, 40 of them answered busy`, when any were.
fn busy_note(busy: u32) -> String {
    match busy {
        0 => String::new(),
        n => format!(", {n} of them answered busy"),
    }
}

/// The downloaded image.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    pub url: Url,
    /// Its size in bytes, the time the download took, and in how many attempts.
    pub size: u64,
    pub elapsed: Duration,
    pub attempts: u32,
    /// Its SHA-256, when one was computed (`modloop_sha256=`).
    pub sha256: Option<String>,
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The longest any smaller download (the image's `.minisig`, `apkovl=`, `ssh_key=`, and their
/// signatures) may take in all, when `netinit.timeout=` is longer: a server trickling a byte a minute
/// cannot hold the boot.
pub const SMALL_BUDGET: Duration = Duration::from_secs(120);

/// The total budget of one smaller download: `netinit.timeout=`, at most [`SMALL_BUDGET`].
pub fn small_budget(image: &ImageConfig) -> Duration {
    image.timeout.min(SMALL_BUDGET)
}

/// GETs a small file (an overlay, a key, a signature) into memory, once, refusing more than
/// `limit` bytes and giving up when `budget` is spent, redirects and the body included.
pub fn get_small(
    url: &Url,
    limit: u64,
    budget: Duration,
    proxy: &ProxyConfig,
) -> Result<Vec<u8>, FetchError> {
    let transfer = |phase, message| FetchError::Transfer { url: url.clone(), phase, attempts: 1, message };
    let client = http::Client::new(&http::Timeouts::default(), proxy);
    let (at, response) = http::get(&client, url, &[], Some(budget)).map_err(|e| match e {
        http::GetError::Fatal(e) => e,
        http::GetError::Transfer(phase, message) => transfer(phase, message),
    })?;
    let status = response.status();
    if status.as_u16() != 200 {
        let reason = status.canonical_reason().map(str::to_owned);
        let via = client.via(&at);
        return Err(FetchError::Status { url: url.clone(), status: status.as_u16(), reason, via });
    }
    response.into_body().into_with_config().limit(limit).read_to_vec().map_err(|e| {
        let message = match e {
            ureq::Error::Timeout(_) => format!("not done within its budget of {}s", budget.as_secs()),
            other => other.to_string(),
        };
        transfer(Phase::Body, message)
    })
}

/// How the files fetched besides the image (`apkovl=`, `ssh_key=`) are fetched and checked.
pub struct Extras {
    /// Each one's total time budget, its signature's included: [`small_budget`].
    pub budget: Duration,
    /// The trusted keys when signatures are checked; then every extra must be signed by one of them.
    keys: Option<Vec<(PathBuf, minisign_verify::PublicKey)>>,
    proxy: ProxyConfig,
}

/// A file fetched besides the image.
#[derive(Debug)]
pub struct Extra {
    pub bytes: Vec<u8>,
    /// The trusted key whose signature it carries, when signatures are checked.
    pub signed_by: Option<PathBuf>,
}

impl Extras {
    /// As the image is checked: signatures are required of extras exactly when the image's is checked
    /// (trusted keys in the initramfs, and no `modloop_verify=no`).
    pub fn for_image(image: &ImageConfig) -> Result<Extras, FetchError> {
        let keys = trusted_keys()?;
        let checked = image.verify != Verify::Off && !keys.is_empty();
        Ok(Extras { budget: small_budget(image), keys: checked.then_some(keys), proxy: image.proxy.clone() })
    }

    /// GETs `url` (at most `limit` bytes) and then, when signatures are checked, `<url>.minisig`,
    /// which must be a trusted key's signature of exactly those bytes: else [`FetchError::Unsigned`],
    /// [`FetchError::UnknownKey`] or [`FetchError::BadSignature`]. Both within [`Extras::budget`].
    pub fn get(&self, url: &Url, limit: u64) -> Result<Extra, FetchError> {
        let deadline = sys::uptime().saturating_add(self.budget);
        let left = || deadline.saturating_sub(sys::uptime());
        let Some(keys) = &self.keys else {
            return Ok(Extra { bytes: get_small(url, limit, self.budget, &self.proxy)?, signed_by: None });
        };
        // The file first: one that is not there is the caller's to judge, as without signatures.
        let bytes = get_small(url, limit, left(), &self.proxy)?;
        let sig_url = signature_url(url).ok_or_else(|| FetchError::Unsigned {
            url: url.clone(),
            why: "no URL for its signature".into(),
        })?;
        let text = get_small(&sig_url, SIGNATURE_LIMIT, left(), &self.proxy)
            .map_err(|e| unsigned_or(e, |why| FetchError::Unsigned { url: url.clone(), why }))?;
        let signature = minisign_verify::Signature::decode(&String::from_utf8_lossy(&text))
            .map_err(|e| FetchError::BadSignature { url: sig_url.clone(), why: e.to_string() })?;
        let path = signer(keys, &bytes, &signature).map_err(|e| match e {
            Unverified::UnknownKey => {
                FetchError::UnknownKey { url: sig_url.clone(), why: trusted_list(keys) }
            }
            Unverified::Bad(why) => FetchError::BadSignature { url: sig_url.clone(), why },
        })?;
        log::info!(
            "{sig_url}: signed by {}; trusted comment: {}",
            path.display(),
            signature.trusted_comment()
        );
        Ok(Extra { bytes, signed_by: Some(path.to_owned()) })
    }
}

/// A failed `.minisig` download: "not signed" when the server says it has no such file; any other
/// failure (TLS, a refused connection, a 500) keeps its own error, so its hint points at the cause.
fn unsigned_or(e: FetchError, not_signed: impl FnOnce(String) -> FetchError) -> FetchError {
    match e {
        FetchError::Status { status: 404 | 410, .. } => not_signed(e.to_string()),
        other => other,
    }
}

/// The most a `.minisig` may be.
const SIGNATURE_LIMIT: u64 = 64 << 10;

/// Why bytes did not verify.
#[derive(Debug, PartialEq, Eq)]
enum Unverified {
    /// No trusted key has the signature's key id.
    UnknownKey,
    /// The key's own signature, which does not match these bytes (or is malformed).
    Bad(String),
}

/// The trusted key that made `signature` of `bytes`.
fn signer<'k>(
    keys: &'k [(PathBuf, minisign_verify::PublicKey)],
    bytes: &[u8],
    signature: &minisign_verify::Signature,
) -> Result<&'k Path, Unverified> {
    for (path, key) in keys {
        match key.verify(bytes, signature, false) {
            Ok(()) => return Ok(path),
            Err(minisign_verify::Error::UnexpectedKeyId) => continue,
            Err(e) => return Err(Unverified::Bad(e.to_string())),
        }
    }
    Err(Unverified::UnknownKey)
}

/// `trusted: /etc/netinit/keys/a.pub, ...`, for an unknown key's error.
fn trusted_list(keys: &[(PathBuf, minisign_verify::PublicKey)]) -> String {
    format!("trusted: {}", keys.iter().map(|(p, _)| p.display().to_string()).collect::<Vec<_>>().join(", "))
}

/// Why one [`get_range`] gave no bytes.
#[derive(Debug)]
pub enum RangeError {
    /// Worth another try, on this mirror or another.
    Transfer(String),
    /// The server answered, but not with that range: another mirror may.
    Refused(String),
    /// The server's file has another size than the manifest's image: another image.
    OtherImage(String),
}

impl std::fmt::Display for RangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RangeError::Transfer(m) | RangeError::Refused(m) | RangeError::OtherImage(m) => f.write_str(m),
        }
    }
}

/// Bytes `[start, end)` of `url`, whose whole size is `total`, by one `Range` GET into memory
/// within `budget` (the stream server's chunk fetch; its caller retries and rotates mirrors). The
/// answer must be `206` with a `Content-Range` of exactly that range and total, and that many bytes.
pub(crate) fn get_range(
    client: &http::Client,
    url: &Url,
    (start, end): (u64, u64),
    total: u64,
    budget: Duration,
) -> Result<Vec<u8>, RangeError> {
    let range = vec![("Range", format!("bytes={start}-{}", end.saturating_sub(1)))];
    let (at, response) = http::get(client, url, &range, Some(budget)).map_err(|e| match e {
        http::GetError::Fatal(e) => RangeError::Refused(e.to_string()),
        http::GetError::Transfer(phase, m) => RangeError::Transfer(format!("GET {url}: {phase}: {m}")),
    })?;
    let status = response.status().as_u16();
    match status {
        206 => {}
        200 => return Err(RangeError::Refused(format!("GET {at}: the server ignores Range (200, not 206)"))),
        s if retry::verdict(s, None, None) != retry::Verdict::NotThere => {
            return Err(RangeError::Transfer(format!("GET {at} answered HTTP {s}")))
        }
        s => return Err(RangeError::Refused(format!("GET {at} answered HTTP {s}"))),
    }
    let header = response.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
    let want = format!("bytes {start}-{}/{total}", end.saturating_sub(1));
    match engine::content_range(header) {
        Some((a, b, Some(t))) if (a, b, t) == (start, end.saturating_sub(1), total) => {}
        Some((_, _, Some(t))) if t != total => {
            return Err(RangeError::OtherImage(format!(
                "GET {at}: the file is {t} bytes, the manifest's image {total} (Content-Range \"{header}\")"
            )))
        }
        _ => {
            return Err(RangeError::Refused(format!(
                "GET {at}: Content-Range is \"{header}\", not \"{want}\""
            )))
        }
    }
    let want = end - start;
    // ureq refuses a body that reaches its limit: one byte of room, and the length is checked below.
    let bytes = response.into_body().into_with_config().limit(want + 1).read_to_vec().map_err(|e| {
        RangeError::Transfer(match e {
            ureq::Error::Timeout(_) => format!("GET {at}: not done within {}s", budget.as_secs()),
            other => format!("GET {at}: {other}"),
        })
    })?;
    match bytes.len() as u64 == want {
        true => Ok(bytes),
        false => Err(RangeError::Transfer(format!("GET {at}: {} of {want} bytes", bytes.len()))),
    }
}

/// Mounts the tmpfs that holds the image, on [`IMAGE_DIR`].
pub fn mount_image_dir() -> Result<(), FetchError> {
    std::fs::create_dir_all(IMAGE_DIR).map_err(FetchError::Mount)?;
    sys::mount(
        "netinit-image",
        Path::new(IMAGE_DIR),
        "tmpfs",
        rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
        "mode=0755",
    )
    .map_err(FetchError::Mount)
}

/// Downloads the image as `image` says into the image tmpfs.
pub fn download(image: &ImageConfig) -> Result<Fetched, FetchError> {
    if image.urls.is_empty() {
        return Err(FetchError::NoUrl);
    }
    if image.verify == Verify::Required && !has_trusted_keys() {
        return Err(FetchError::NoTrustedKeys);
    }
    mount_image_dir()?;
    let room = match sys::fs_free(Path::new(IMAGE_DIR)) {
        Ok(free) => Some(free),
        Err(e) => {
            log::warn!("measuring the free space of {IMAGE_DIR}: {e}; not checking the image's size");
            None
        }
    };
    let check = signature_check(image)?;
    let path = Path::new(IMAGE_DIR).join(IMAGE_FILE);
    let job = engine::Job::for_image(image, room);
    let start = sys::uptime();
    let done = engine::download_to(&path, &job, check)?;
    let elapsed = sys::uptime() - start;
    log::info!(
        "fetched {} in {:.1}s ({} average, {} attempt{}){}",
        mib(done.size),
        elapsed.as_secs_f32(),
        rate(done.size, elapsed),
        done.attempts,
        if done.attempts == 1 { "" } else { "s" },
        done.sha256.map(|d| format!(", sha256 {}", hex(&d))).unwrap_or_default()
    );
    match &done.signature {
        Some(Ok(())) => log::info!(
            "signature verified: {}",
            signature_url(&done.url).map(|u| u.to_string()).unwrap_or_default()
        ),
        Some(Err(why)) => {
            let url = done.url.clone();
            return Err(FetchError::BadSignature { url, why: why.clone() });
        }
        None => {}
    }
    if let Some(expected) = image.sha256 {
        // The job computes the digest whenever modloop_sha256= gives one: a missing one is a bug,
        // and fails the check rather than skipping it.
        let actual = done.sha256.map(|d| hex(&d)).unwrap_or_else(|| "not computed".into());
        if Some(expected) != done.sha256 {
            return Err(FetchError::Digest { url: done.url, expected: hex(&expected), actual });
        }
        log::info!("SHA-256 matches modloop_sha256");
    }
    Ok(Fetched {
        path,
        url: done.url,
        size: done.size,
        elapsed,
        attempts: done.attempts,
        sha256: done.sha256.map(|d| hex(&d)),
    })
}

pub fn has_trusted_keys() -> bool {
    std::fs::read_dir(TRUSTED_KEYS).is_ok_and(|mut d| d.next().is_some())
}

/// The trusted keys of this initramfs, sorted by file name.
fn trusted_keys() -> Result<Vec<(PathBuf, minisign_verify::PublicKey)>, FetchError> {
    let Ok(dir) = std::fs::read_dir(TRUSTED_KEYS) else { return Ok(Vec::new()) };
    let mut paths: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let key = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| minisign_verify::PublicKey::decode(&text).map_err(|e| e.to_string()));
            key.map(|k| (path.clone(), k)).map_err(|why| FetchError::Key { path, why })
        })
        .collect()
}

/// `<URL>.minisig`.
fn signature_url(url: &Url) -> Option<Url> {
    Url::parse(&format!("{}.minisig", url.as_str())).ok()
}

/// What the image must be verified against: `None` when there are no trusted keys or
/// `modloop_verify=no`; else the signature from the first mirror that has one, and the trusted key
/// that made it.
fn signature_check(image: &ImageConfig) -> Result<Option<hasher::Check>, FetchError> {
    let keys = trusted_keys()?;
    if image.verify == Verify::Off || keys.is_empty() {
        if image.verify == Verify::Off && !keys.is_empty() {
            log::warn!("modloop_verify=no: not checking the image's signature");
        }
        return Ok(None);
    }
    let mut failure = None;
    for url in &image.urls {
        let Some(sig_url) = signature_url(url) else { continue };
        let text = match get_small(&sig_url, SIGNATURE_LIMIT, small_budget(image), &image.proxy) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                log::warn!("{e}");
                failure = Some(unsigned_or(e, |why| FetchError::NoSignature { why }));
                continue;
            }
        };
        let signature = minisign_verify::Signature::decode(&text)
            .map_err(|e| FetchError::BadSignature { url: sig_url.clone(), why: e.to_string() })?;
        let Some((path, key)) = keys.iter().find(|(_, k)| k.verify_stream(&signature).is_ok()) else {
            return Err(FetchError::UnknownKey { url: sig_url, why: trusted_list(&keys) });
        };
        log::info!(
            "{sig_url}: signed by {}; trusted comment: {}",
            path.display(),
            signature.trusted_comment()
        );
        return Ok(Some(hasher::Check { key: key.clone(), signature }));
    }
    Err(failure.unwrap_or(FetchError::NoUrl))
}

/// Console progress: one line at most every 2 s, with the rate and, when the size is known, percent
/// and time left.
pub(crate) struct Progress {
    total: Option<u64>,
    /// Bytes the file had when this attempt began: the rate counts only this attempt's.
    base: u64,
    start: Duration,
    last: Duration,
}

impl Progress {
    pub(crate) fn new(total: Option<u64>, base: u64) -> Self {
        let now = sys::uptime();
        Progress { total, base, start: now, last: now }
    }

    pub(crate) fn update(&mut self, have: u64) {
        let now = sys::uptime();
        if now - self.last >= PROGRESS_EVERY {
            self.last = now;
            log::info!("{}", progress_line(have, self.base, self.total, now - self.start));
        }
    }
}

pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    format!("{:.1} MiB/s", bytes as f64 / 1048576.0 / secs)
}

/// `12.0 MiB of 40.0 MiB (30%), 6.0 MiB/s, 5s left`: `have` bytes in the file, `base` of them from
/// before this attempt, `elapsed` since it began.
pub fn progress_line(have: u64, base: u64, total: Option<u64>, elapsed: Duration) -> String {
    let got = have.saturating_sub(base);
    match total.filter(|t| *t > 0) {
        Some(total) => {
            let secs = elapsed.as_secs_f64().max(0.001);
            let left = (total.saturating_sub(have)) as f64 / (got as f64 / secs).max(1.0);
            format!(
                "{} of {} ({}%), {}, {:.0}s left",
                mib(have),
                mib(total),
                u128::from(have) * 100 / u128::from(total),
                rate(got, elapsed),
                left
            )
        }
        None => format!("{}, {}", mib(have), rate(got, elapsed)),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn progress_lines() {
        let mib = 1048576;
        assert_eq!(
            progress_line(12 * mib, 0, Some(40 * mib), Duration::from_secs(2)),
            "12.0 MiB of 40.0 MiB (30%), 6.0 MiB/s, 5s left"
        );
        assert_eq!(progress_line(3 * mib, 0, None, Duration::from_secs(1)), "3.0 MiB, 3.0 MiB/s");
        assert_eq!(
            progress_line(30 * mib, 26 * mib, None, Duration::from_secs(2)),
            "30.0 MiB, 2.0 MiB/s",
            "a resumed attempt's rate"
        );
        assert_eq!(progress_line(0, 0, Some(0), Duration::ZERO), "0.0 MiB, 0.0 MiB/s");
    }

    #[test]
    fn errors_name_url_status_and_phase() {
        let url = Url::parse("http://user:pw@10.0.2.2:8080/missing.squashfs").unwrap();
        let e =
            FetchError::Status { url: url.clone(), status: 404, reason: Some("Not Found".into()), via: None };
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
        assert_eq!(e.to_string(), "GET http://***@10.0.2.2:8080/missing.squashfs: connecting failed on attempt 6: Connection refused");
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
