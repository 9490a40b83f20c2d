//! The download engine: one image, several mirrors, into one file, surviving resets, stalls, flaky
//! servers and servers that ignore `Range`. It works on any file path, so host tests drive it
//! against a scripted HTTP server; the fetch stage gives it a file on the image tmpfs.
//!
//! The decisions are pure functions ([`content_range`], [`on_response`], [`next_hop`], and the
//! retry [`Schedule`](super::retry::Schedule)) with table tests; [`download_to`] is the loop that
//! applies them.
//!
//! Which failures retry, and how (the table `cmdline-spec.md` refers to; `retry.rs` says why):
//!
//! | failure                                              | what happens                                          |
//! |------------------------------------------------------|-------------------------------------------------------|
//! | 503 or 429, with or without `Retry-After`            | busy: waited out within the time budget, the wait drawn from [RA, 1.5 RA] or jittered; next mirror first; uses no retry |
//! | connect refused or timed out by a mirror that answered before | busy, as above                               |
//! | connect refused or timed out, DNS failure            | next mirror; counts as a retry                        |
//! | no response headers in time, reset before the body  | next mirror; counts as a retry                        |
//! | other 5xx, 408                                       | next mirror; counts as a retry                        |
//! | reset, stall or short body after some bytes arrived  | resumes at once from the same mirror with `Range`; does not count |
//! | 404, 410, 403, 401 and other 4xx                     | that mirror gets one more try later, then is dropped  |
//! | every mirror dropped                                 | fails at once                                         |
//! | a redirect loop, more than 10 redirects              | fails at once, naming the first hops                  |
//! | `Content-Encoding: gzip` (never asked for)           | decoded; a broken transfer starts again from byte 0   |
//! | any other `Content-Encoding`                         | fails at once, naming it                              |
//! | 200 to a `Range` request                             | starts again from byte 0 on that response             |
//! | 206 at another offset, or the file changed           | starts again from byte 0 on the next attempt          |
//! | 416                                                  | done if the file is whole, else starts again          |
//! | image larger than the RAM disk's free space          | fails at once, giving both sizes                      |

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::Path;
use std::time::Duration;

use super::hasher::{Check, Hasher};
pub use super::http::Timeouts;
use super::http::{decoded, get, Client, GetError};
use super::retry::{self, Failure, Next, Schedule, Verdict};
use super::{mib, FetchError, Phase, Progress, RetryPolicy};
use crate::cmdline::{ImageConfig, ProxyConfig, Url};
use crate::sys;

/// What one download is asked to do.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    pub urls: &'a [Url],
    pub policy: RetryPolicy,
    /// The whole download's time budget.
    pub budget: Duration,
    pub timeouts: Timeouts,
    /// Bytes the file may grow to (the RAM disk's free space), if known.
    pub room: Option<u64>,
    /// `proxy=` and `noproxy=`.
    pub proxy: &'a ProxyConfig,
    /// Whether to compute the SHA-256: only when something compares it. Under qemu's TCG, with
    /// no spare CPU, hashing every byte took the download from 80 to 26 MiB/s.
    pub sha256: bool,
}

impl<'a> Job<'a> {
    /// The download the cmdline's image settings ask for: its mirrors, `netinit.retries=` and
    /// `netinit.timeout=`, the default per-phase timeouts, the SHA-256 if `modloop_sha256=` gives one.
    pub fn for_image(image: &'a ImageConfig, room: Option<u64>) -> Job<'a> {
        Job {
            urls: &image.urls,
            policy: RetryPolicy::with_retries(image.retries),
            budget: image.timeout,
            timeouts: Timeouts::default(),
            room,
            proxy: &image.proxy,
            sha256: image.sha256.is_some(),
        }
    }
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub url: Url,
    pub size: u64,
    /// The SHA-256, when the job asked for it.
    pub sha256: Option<[u8; 32]>,
    /// The signature check's result, when a [`Check`] was given.
    pub signature: Option<Result<(), String>>,
    /// Attempts made, resumes included.
    pub attempts: u32,
    /// How many attempts resumed a partial file.
    pub resumes: u32,
}

/// `Content-Range: bytes FIRST-LAST/TOTAL` (TOTAL may be `*`): (first, last, total).
pub fn content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let (first, last) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    (first <= last).then_some((first, last, total))
}

/// What is already in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partial {
    pub have: u64,
    /// The image's size, once a server said it.
    pub total: Option<u64>,
    /// A strong ETag, else Last-Modified, of the response the bytes came from.
    pub validator: Option<String>,
}

/// What to do with a response, given what the file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// Write the body from byte `at` of the file (0: start again; `have`: resume).
    Write { at: u64, total: Option<u64> },
    /// The file is already whole.
    Complete,
    /// Not usable: empty the file and try again.
    Restart(&'static str),
}

/// How a 200, 206 or 416 answer fits what we have. `content_length` is the body's length,
/// `range` the parsed Content-Range.
pub fn on_response(
    status: u16,
    content_length: Option<u64>,
    range: Option<(u64, u64, Option<u64>)>,
    p: &Partial,
) -> Fit {
    match status {
        200 => Fit::Write { at: 0, total: content_length },
        206 => match range {
            Some((first, last, total)) if first == p.have => {
                // The range must add up: its end within the total, its length the body's.
                let length = last.checked_sub(first).and_then(|n| n.checked_add(1));
                if total.is_some_and(|t| last >= t) || content_length.is_some_and(|l| Some(l) != length) {
                    Fit::Restart("the server's Content-Range does not add up")
                } else if p.total.is_some() && total.is_some() && p.total != total {
                    Fit::Restart("the image changed size on the server")
                } else {
                    Fit::Write { at: p.have, total: total.or(p.total) }
                }
            }
            Some(_) => Fit::Restart("the server resumed at another offset"),
            None => Fit::Restart("a 206 answer without a usable Content-Range"),
        },
        _ => match (range, p.total) {
            // 416: the range starts at or past the end.
            (Some((_, _, Some(total))), _) | (None, Some(total)) if total == p.have && p.have > 0 => {
                Fit::Complete
            }
            _ => Fit::Restart("the server cannot serve the rest (416)"),
        },
    }
}

/// The headers of a resuming request: `Range`, and `If-Range` when the bytes' origin is known,
/// so that a server whose file changed answers 200 with the new file instead of a spliced 206.
pub fn resume_headers(p: &Partial) -> Vec<(&'static str, String)> {
    if p.have == 0 {
        return Vec::new();
    }
    let mut h = vec![("Range", format!("bytes={}-", p.have))];
    if let Some(v) = &p.validator {
        h.push(("If-Range", v.clone()));
    }
    h
}

/// The validator to remember from response headers: a strong ETag, else Last-Modified.
fn validator(etag: Option<&str>, last_modified: Option<&str>) -> Option<String> {
    etag.filter(|e| !e.starts_with("W/")).or(last_modified).map(str::to_owned)
}

/// The file and its hash, kept across attempts.
struct Sink {
    file: File,
    partial: Partial,
    hasher: Hasher,
}

impl Sink {
    fn restart(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.partial = Partial::default();
        self.hasher.reset();
        Ok(())
    }
}

/// How one attempt ended, when it did not end the download.
enum Attempt {
    Done,
    /// Failed; `answered` says an HTTP status came back (a later refused connection to this mirror
    /// then means it is busy, not gone).
    Failed {
        error: FetchError,
        failure: Failure,
        answered: bool,
    },
}

/// The console while a busy server is waited out: one line when it turns busy, then a summary at
/// most every [`BUSY_SUMMARY_EVERY`], and one line when it takes the request.
#[derive(Default)]
struct BusyLog {
    /// When the current busy spell began, and the busy answers before it.
    since: Option<(Duration, u32)>,
    last_line: Duration,
}

const BUSY_SUMMARY_EVERY: Duration = Duration::from_secs(10);

impl BusyLog {
    fn busy(&mut self, url: &Url, error: &FetchError, s: &Schedule, attempts: u32, left: Duration) {
        let now = sys::uptime();
        match self.since {
            None => {
                self.since = Some((now, s.busy.saturating_sub(1)));
                self.last_line = now;
                log::warn!("{error}");
                log::info!(
                    "{url}: the server is busy; waiting it out within netinit.timeout= ({}s left), \
                     without using up retries",
                    left.as_secs()
                );
            }
            Some((start, before)) if now.saturating_sub(self.last_line) >= BUSY_SUMMARY_EVERY => {
                self.last_line = now;
                log::info!(
                    "still waiting for a busy server: {} busy answers in {}s, {attempts} attempts so far, {}s left",
                    s.busy - before,
                    now.saturating_sub(start).as_secs(),
                    left.as_secs()
                );
            }
            Some(_) => log::debug!("{error}"),
        }
    }

    /// The busy spell, if any, is over.
    fn over(&mut self, s: &Schedule) {
        if let Some((start, before)) = self.since.take() {
            let secs = sys::uptime().saturating_sub(start).as_secs();
            log::info!("the server took the request after {} busy answers in {secs}s", s.busy - before);
        }
    }
}

/// Downloads the first mirror of `job` that serves the image into `path`, resuming where it can,
/// checking `check`'s signature on the way if given.
pub fn download_to(path: &Path, job: &Job, check: Option<Check>) -> Result<Done, FetchError> {
    if job.urls.is_empty() {
        return Err(FetchError::NoUrl);
    }
    let write_error = |source| FetchError::Write { path: path.to_owned(), source };
    let file =
        File::options().read(true).write(true).create(true).truncate(true).open(path).map_err(write_error)?;
    let mut sink =
        Sink { file, partial: Partial::default(), hasher: Hasher::new(super::BUFFER, job.sha256, check) };
    let client = Client::new(&job.timeouts, job.proxy);
    let deadline = sys::uptime().saturating_add(job.budget);
    let mut schedule = Schedule::new(job.policy, job.urls.len());
    let mut busy_log = BusyLog::default();
    let (mut attempts, mut resumes, mut mirror) = (0u32, 0u32, 0usize);
    loop {
        let left = deadline.saturating_sub(sys::uptime());
        if left.is_zero() {
            return Err(FetchError::Budget { budget: job.budget, attempts, busy: schedule.busy });
        }
        let url = &job.urls[mirror];
        attempts = attempts.saturating_add(1);
        if sink.partial.have > 0 {
            resumes = resumes.saturating_add(1);
            let of = sink.partial.total.map(|t| format!(" of {}", mib(t))).unwrap_or_default();
            log::info!("resuming {url} at {}{of} (attempt {attempts})", mib(sink.partial.have));
        } else {
            let retries_left = job.policy.attempts.saturating_sub(schedule.retries + 1);
            let level = if schedule.in_busy_streak() { log::Level::Debug } else { log::Level::Info };
            log::log!(level, "fetching {url} (attempt {attempts}, {retries_left} retries left)");
        }
        let (error, failure, answered) = match attempt(&client, url, &mut sink, job, left, attempts)? {
            Attempt::Done => {
                busy_log.over(&schedule);
                let digests = sink.hasher.finish().ok_or(FetchError::Hashing)?;
                let (sha256, signature) = (digests.sha256, digests.signature);
                let size = sink.partial.have;
                return Ok(Done { url: url.clone(), size, sha256, signature, attempts, resumes });
            }
            Attempt::Failed { error, failure, answered } => (error, failure, answered),
        };
        if answered {
            schedule.answered(mirror);
        }
        match schedule.after(mirror, failure, sys::uptime(), sys::random_u64()) {
            Next::OutOfRetries | Next::NowhereToGo => return Err(error),
            Next::Try { mirror: next, after, busy } => {
                let left = deadline.saturating_sub(sys::uptime());
                if busy {
                    busy_log.busy(url, &error, &schedule, attempts, left);
                } else {
                    busy_log.over(&schedule);
                    log::warn!("{error}");
                }
                if after >= left {
                    log::warn!(
                        "not waiting {:.1}s: netinit.timeout= ends in {:.1}s",
                        after.as_secs_f32(),
                        left.as_secs_f32()
                    );
                    return Err(FetchError::Budget { budget: job.budget, attempts, busy: schedule.busy });
                }
                if !busy && !after.is_zero() {
                    log::info!("retrying in {:.1}s", after.as_secs_f32());
                }
                mirror = next;
                std::thread::sleep(after);
            }
        }
    }
}

/// One GET. `Err` is fatal for the whole download; `Ok(Failed)` may be retried.
fn attempt(
    client: &Client,
    url: &Url,
    sink: &mut Sink,
    job: &Job,
    budget: Duration,
    n: u32,
) -> Result<Attempt, FetchError> {
    let transfer = |phase: Phase, message: String| FetchError::Transfer {
        url: url.clone(),
        phase,
        attempts: n,
        message,
    };
    let failed = |error, failure| Ok(Attempt::Failed { error, failure, answered: true });
    let write_error = |source| FetchError::Write { path: "the image file".into(), source };
    let response = match get(client, url, &resume_headers(&sink.partial), Some(budget)) {
        Ok((_, r)) => r,
        Err(GetError::Fatal(e)) => return Err(e),
        Err(GetError::Transfer(phase, message)) => {
            let failure = if phase == Phase::Connect { Failure::Unreachable } else { Failure::Transient };
            return Ok(Attempt::Failed { error: transfer(phase, message), failure, answered: false });
        }
    };
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let length = response.body().content_length();
    log::debug!(
        "{url}: HTTP {status}, Content-Length {length:?}, Content-Range {:?}",
        header("content-range")
    );
    if !matches!(status, 200 | 206 | 416) {
        let reason = response.status().canonical_reason().map(str::to_owned);
        let error = FetchError::Status { url: url.clone(), status, reason, via: client.via(url) };
        let (retry_after, date) = (header("retry-after"), header("date"));
        let failure = match retry::verdict(status, retry_after.as_deref(), date.as_deref()) {
            Verdict::Busy(wait) => Failure::Busy(wait),
            Verdict::Transient => Failure::Transient,
            Verdict::NotThere => Failure::NotThere,
        };
        return failed(error, failure);
    }
    let encoding = header("content-encoding");
    let range = header("content-range").as_deref().and_then(content_range);
    let (at, total) = match on_response(status, length, range, &sink.partial) {
        Fit::Complete => return Ok(Attempt::Done),
        Fit::Restart(why) => {
            log::warn!("{url}: {why}; starting again from byte 0");
            sink.restart().map_err(write_error)?;
            return failed(transfer(Phase::Body, why.to_owned()), Failure::Transient);
        }
        Fit::Write { at, total } => (at, total),
    };
    if at == 0 && sink.partial.have > 0 {
        log::warn!("{url}: the server sent the whole image instead of the rest; starting again from byte 0");
        sink.restart().map_err(write_error)?;
    }
    let resumable_by = validator(header("etag").as_deref(), header("last-modified").as_deref());
    let Some((mut body, gzipped)) = decoded(encoding.as_deref(), response.into_body().into_reader()) else {
        let encoding = encoding.unwrap_or_default();
        return Err(FetchError::Encoded { url: url.clone(), encoding });
    };
    // A gzipped body's length is not the image's, and its bytes cannot be resumed by range.
    if gzipped && sink.partial.have > 0 {
        sink.restart().map_err(write_error)?;
    }
    let total = if gzipped { None } else { total };
    if let (Some(total), Some(room)) = (total, job.room) {
        if total > room {
            return Err(FetchError::TooBig { url: url.clone(), size: total, room });
        }
    }
    sink.partial.total = total;
    sink.partial.validator = if gzipped { None } else { resumable_by };
    if gzipped {
        log::warn!("{url}: the server gzipped the image unasked (Content-Encoding: gzip); decoding it");
    }
    let (result, progress) = receive(&mut *body, sink, total).map_err(write_error)?;
    ended(url, n, sink, result, progress, gzipped)
}

/// What a body that was received, in whole or in part, means for the download.
fn ended(
    url: &Url,
    n: u32,
    sink: &mut Sink,
    result: Result<(), Received>,
    progress: u64,
    gzipped: bool,
) -> Result<Attempt, FetchError> {
    let transfer =
        |message: String| FetchError::Transfer { url: url.clone(), phase: Phase::Body, attempts: n, message };
    let failed = |error, failure| Ok(Attempt::Failed { error, failure, answered: true });
    match result {
        Ok(()) => Ok(Attempt::Done),
        Err(_) if gzipped => {
            let source = |source| FetchError::Write { path: "the image file".into(), source };
            sink.restart().map_err(source)?;
            failed(transfer("the gzipped body broke off; starting again".into()), Failure::Transient)
        }
        Err(Received::Broke(e)) if progress > 0 => {
            failed(transfer(format!("{e} after {}", mib(sink.partial.have))), Failure::Progress)
        }
        Err(Received::Broke(e)) => failed(transfer(e.to_string()), Failure::Transient),
        Err(Received::Short { expected }) => {
            let error = FetchError::Short { url: url.clone(), got: sink.partial.have, expected };
            failed(error, if progress > 0 { Failure::Progress } else { Failure::Transient })
        }
    }
}

/// How receiving a body went wrong.
enum Received {
    /// A read failed.
    Broke(io::Error),
    /// The body ended before the declared length.
    Short { expected: u64 },
}

/// Streams `body` into the file and the hashing thread. Returns how it ended and the bytes it
/// added; `Err` only for a failed write.
fn receive(
    body: &mut dyn Read,
    sink: &mut Sink,
    total: Option<u64>,
) -> io::Result<(Result<(), Received>, u64)> {
    let mut progress = Progress::new(total, sink.partial.have);
    let before = sink.partial.have;
    loop {
        let mut buf = sink.hasher.buffer();
        let (got, read) = fill(body, &mut buf);
        let written = sink.file.write_all(&buf[..got]);
        // Every buffer goes back, even an unused one: the pool is small, and an attempt that kept
        // one would leave the next attempts waiting forever for it.
        sink.hasher.update(buf, if written.is_ok() { got } else { 0 });
        written?;
        sink.partial.have += got as u64;
        progress.update(sink.partial.have);
        let added = sink.partial.have - before;
        match read {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Ok((Err(Received::Broke(e)), added)),
        }
    }
    let added = sink.partial.have - before;
    match total.filter(|t| *t != sink.partial.have) {
        Some(expected) => Ok((Err(Received::Short { expected }), added)),
        None => Ok((Ok(()), added)),
    }
}

/// Reads `body` into `buf` until it is full, the body ends or a read fails: the bytes read, and
/// whether there may be more (`Ok(false)` at the end). One buffer holds several of the HTTP
/// client's reads (128 KiB each), so the file and the hashing thread take fewer, larger pieces.
fn fill(body: &mut (impl Read + ?Sized), buf: &mut [u8]) -> (usize, io::Result<bool>) {
    let mut filled = 0;
    while filled < buf.len() {
        match body.read(&mut buf[filled..]) {
            Ok(0) => return (filled, Ok(false)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (filled, Err(e)),
        }
    }
    (filled, Ok(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        let check = |v: &str, expected: Option<(u64, u64, Option<u64>)>| {
            assert_eq!(content_range(v), expected, "{v}")
        };
        check("bytes 0-99/1000", Some((0, 99, Some(1000))));
        check("bytes 100-199/*", Some((100, 199, None)));
        check(" bytes 5-5/6 ", Some((5, 5, Some(6))));
        check("bytes */1000", None);
        check("bytes 9-5/10", None);
        check("items 0-1/2", None);
        check("bytes 0-x/2", None);
    }

    #[test]
    fn a_content_range_that_does_not_add_up_starts_again() {
        let p = Partial { have: 300, total: None, validator: None };
        // Once accepted, and the engine wrote past the total it was told, retrying at once until the budget.
        assert_eq!(
            on_response(206, Some(100), Some((300, 399, Some(200))), &p),
            Fit::Restart("the server's Content-Range does not add up")
        );
        assert_eq!(
            on_response(206, Some(5), Some((300, 399, Some(1000))), &p),
            Fit::Restart("the server's Content-Range does not add up")
        );
        assert_eq!(
            on_response(206, Some(100), Some((300, 399, Some(400))), &p),
            Fit::Write { at: 300, total: Some(400) }
        );
        assert_eq!(
            on_response(206, None, Some((300, u64::MAX, None)), &p),
            Fit::Write { at: 300, total: None }
        );
        assert_eq!(
            on_response(206, Some(u64::MAX), Some((0, u64::MAX, None)), &Partial { have: 0, ..p }),
            Fit::Restart("the server's Content-Range does not add up"),
            "no overflow on the length"
        );
    }

    #[test]
    fn responses_against_what_we_have() {
        let p = |have, total: Option<u64>| Partial { have, total, validator: None };
        let check = |status, len, range, partial: &Partial, expected: Fit| {
            assert_eq!(on_response(status, len, range, partial), expected, "{status} {range:?} {partial:?}");
        };
        check(200, Some(1000), None, &p(0, None), Fit::Write { at: 0, total: Some(1000) });
        check(200, None, None, &p(0, None), Fit::Write { at: 0, total: None });
        check(200, Some(1000), None, &p(300, Some(1000)), Fit::Write { at: 0, total: Some(1000) });
        check(
            206,
            Some(700),
            Some((300, 999, Some(1000))),
            &p(300, Some(1000)),
            Fit::Write { at: 300, total: Some(1000) },
        );
        check(
            206,
            Some(700),
            Some((300, 999, None)),
            &p(300, Some(1000)),
            Fit::Write { at: 300, total: Some(1000) },
        );
        check(
            206,
            Some(700),
            Some((200, 999, Some(1000))),
            &p(300, Some(1000)),
            Fit::Restart("the server resumed at another offset"),
        );
        check(
            206,
            Some(1000),
            Some((300, 1299, Some(1300))),
            &p(300, Some(1000)),
            Fit::Restart("the image changed size on the server"),
        );
        check(
            206,
            Some(700),
            None,
            &p(300, Some(1000)),
            Fit::Restart("a 206 answer without a usable Content-Range"),
        );
        check(416, None, None, &p(1000, Some(1000)), Fit::Complete);
        check(416, None, Some((0, 0, Some(1000))), &p(1000, None), Fit::Complete);
        check(416, None, None, &p(300, Some(1000)), Fit::Restart("the server cannot serve the rest (416)"));
        check(416, None, None, &p(0, None), Fit::Restart("the server cannot serve the rest (416)"));
    }

    #[test]
    fn resume_requests() {
        assert_eq!(resume_headers(&Partial::default()), []);
        let p = Partial { have: 300, total: Some(1000), validator: Some("\"abc\"".into()) };
        assert_eq!(
            resume_headers(&p),
            [("Range", "bytes=300-".to_string()), ("If-Range", "\"abc\"".to_string())]
        );
        let p = Partial { have: 300, total: None, validator: None };
        assert_eq!(resume_headers(&p), [("Range", "bytes=300-".to_string())]);
        assert_eq!(validator(Some("\"e1\""), Some("Tue, 1 Jan 2030")), Some("\"e1\"".into()));
        assert_eq!(
            validator(Some("W/\"e1\""), Some("Tue, 1 Jan 2030")),
            Some("Tue, 1 Jan 2030".into()),
            "weak ETags cannot validate a range"
        );
        assert_eq!(validator(None, None), None);
    }
}
