//! The download engine: one image, several mirrors, into one file, surviving resets, stalls, flaky
//! servers and servers that ignore `Range`. It works on any file path, so host tests drive it
//! against a scripted HTTP server; the fetch stage gives it a file on the image tmpfs.
//!
//! The decisions are pure functions ([`verdict`], [`content_range`], [`on_response`]) with table
//! tests; [`download_to`] is the loop that applies them.
//!
//! Which failures retry, and how (the table `cmdline-spec.md` refers to):
//!
//! | failure                                              | what happens                                          |
//! |------------------------------------------------------|-------------------------------------------------------|
//! | connect refused or timed out, DNS failure            | next mirror; counts as a retry                        |
//! | no response headers in time, reset before the body  | next mirror; counts as a retry                        |
//! | 5xx, 408                                             | next mirror; counts as a retry                        |
//! | 429, 503 with `Retry-After: SECONDS`                 | waits that long (at most 5 min), then as above        |
//! | reset, stall or short body after some bytes arrived  | resumes at once from the same mirror with `Range`; does not count |
//! | 404, 410, 403, 401 and other 4xx                     | that mirror gets one more try later, then is dropped  |
//! | every mirror dropped                                 | fails at once                                         |
//! | 200 to a `Range` request                             | starts again from byte 0 on that response             |
//! | 206 at another offset, or the file changed           | starts again from byte 0 on the next attempt          |
//! | 416                                                  | done if the file is whole, else starts again          |
//! | image larger than the RAM disk's free space          | fails at once, giving both sizes                      |

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::Path;
use std::time::Duration;

use super::hasher::{Check, Hasher};
use super::{classify, mib, FetchError, Phase, Progress, RetryPolicy};
use crate::cmdline::Url;
use crate::sys;

/// Per-phase timeouts of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// From sending the request to the end of the response headers.
    pub headers: Duration,
    /// The longest silence in the body.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            headers: Duration::from_secs(30),
            idle: Duration::from_secs(30),
        }
    }
}

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
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub url: Url,
    pub size: u64,
    pub sha256: [u8; 32],
    /// The signature check's result, when a [`Check`] was given.
    pub signature: Option<Result<(), String>>,
    /// Attempts made, resumes included.
    pub attempts: u32,
    /// How many attempts resumed a partial file.
    pub resumes: u32,
}

/// The most a `Retry-After` may make netinit wait.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Answers like 404 a mirror may give before it is dropped.
const PERMANENT_ANSWERS: u32 = 2;

/// What to do after an HTTP status other than 200, 206 and 416.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again (another mirror first), after the backoff.
    Retry,
    /// Try again after this long, as the server asked.
    RetryAfter(Duration),
    /// This mirror does not have it; it gets [`PERMANENT_ANSWERS`] such answers before it is dropped.
    NotThere,
}

/// The retry table for statuses. `retry_after` is the header's value, if any.
pub fn verdict(status: u16, retry_after: Option<&str>) -> Verdict {
    let asked = retry_after.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
    match status {
        429 | 503 => asked.map_or(Verdict::Retry, |d| Verdict::RetryAfter(d.min(MAX_RETRY_AFTER))),
        408 | 500..=599 => Verdict::Retry,
        _ => Verdict::NotThere,
    }
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
pub enum Take {
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
) -> Take {
    match status {
        200 => Take::Write { at: 0, total: content_length },
        206 => match range {
            Some((first, _, total)) if first == p.have => {
                if p.total.is_some() && total.is_some() && p.total != total {
                    Take::Restart("the image changed size on the server")
                } else {
                    Take::Write { at: p.have, total: total.or(p.total) }
                }
            }
            Some(_) => Take::Restart("the server resumed at another offset"),
            None => Take::Restart("a 206 answer without a usable Content-Range"),
        },
        _ => match (range, p.total) {
            // 416: the range starts at or past the end.
            (Some((_, _, Some(total))), _) | (None, Some(total)) if total == p.have && p.have > 0 => {
                Take::Complete
            }
            _ => Take::Restart("the server cannot serve the rest (416)"),
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

/// How one attempt ended.
enum Attempt {
    Done,
    /// Failed after writing this many new bytes; `wait` is what the server asked for.
    Failed {
        error: FetchError,
        progress: u64,
        not_there: bool,
        wait: Option<Duration>,
    },
}

/// The HTTP client: per-phase timeouts, statuses as values (the retry table decides what they mean).
pub(super) fn agent(t: &Timeouts) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        // netinit follows redirects itself (see `get`), to refuse https -> http.
        .max_redirects(0)
        .max_redirects_will_error(false)
        .tls_config(super::tls::config())
        .timeout_resolve(Some(t.connect))
        .timeout_connect(Some(t.connect))
        .timeout_recv_response(Some(t.headers))
        .timeout_per_read(Some(t.idle))
        .user_agent(concat!("netinit/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Redirects followed in one request, at most.
const MAX_REDIRECTS: u32 = 10;

/// Why [`get`] returned no response.
pub(super) enum Got {
    /// A transfer that may be retried.
    Transfer(Phase, String),
    /// One that must not be: a certificate error, a redirect from https to http.
    Fatal(FetchError),
}

/// GET `url` with `headers`, following redirects (301, 302, 303, 307, 308) but never from https to
/// http. Returns the URL that answered and its response, whatever its status.
pub(super) fn get(
    agent: &ureq::Agent,
    url: &Url,
    headers: &[(&'static str, String)],
    budget: Option<Duration>,
) -> Result<(Url, ureq::http::Response<ureq::Body>), Got> {
    let mut at = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let mut request = agent.get(at.as_str()).config().timeout_global(budget).build();
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = match request.call() {
            Ok(r) => r,
            Err(e) => {
                let (phase, message, fatal) = classify(&e);
                return Err(match fatal {
                    true => Got::Fatal(FetchError::Tls { url: at, message }),
                    false => Got::Transfer(phase, message),
                });
            }
        };
        let status = response.status().as_u16();
        let location = response.headers().get("location").and_then(|v| v.to_str().ok());
        let Some(next) = next_hop(&at, status, location)? else { return Ok((at, response)) };
        log::info!("{at} redirects ({status}) to {next}");
        at = next;
    }
    Err(Got::Transfer(Phase::Headers, format!("more than {MAX_REDIRECTS} redirects")))
}

/// Where a response sends the request next: `None` when it is not a redirect, the next URL when
/// it is, an error for a bad `Location` or a step from https down to http.
pub(super) fn next_hop(at: &Url, status: u16, location: Option<&str>) -> Result<Option<Url>, Got> {
    let (true, Some(location)) = (matches!(status, 301 | 302 | 303 | 307 | 308), location) else {
        return Ok(None);
    };
    let next = at
        .join(location)
        .map_err(|why| Got::Transfer(Phase::Headers, format!("bad redirect to {location:?}: {why}")))?;
    if at.is_https() && !next.is_https() {
        return Err(Got::Fatal(FetchError::Downgrade { from: at.clone(), to: next }));
    }
    Ok(Some(next))
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
    let mut sink = Sink { file, partial: Partial::default(), hasher: Hasher::new(super::BUFFER, check) };
    let agent = agent(&job.timeouts);
    let start = sys::uptime();
    let deadline = start + job.budget;
    let mut not_there = vec![0u32; job.urls.len()];
    let (mut attempts, mut retries, mut resumes) = (0u32, 0u32, 0u32);
    let mut mirror = 0usize;
    loop {
        let left = deadline.saturating_sub(sys::uptime());
        if left.is_zero() {
            return Err(FetchError::Budget { budget: job.budget, attempts });
        }
        let url = &job.urls[mirror];
        attempts += 1;
        let resuming = sink.partial.have > 0;
        if resuming {
            resumes += 1;
            let of = sink.partial.total.map(|t| format!(" of {}", mib(t))).unwrap_or_default();
            log::info!("resuming {url} at {}{of} (attempt {attempts})", mib(sink.partial.have));
        } else {
            log::info!(
                "fetching {url} (attempt {attempts}, {} retries left)",
                job.policy.attempts.saturating_sub(retries + 1)
            );
        }
        match attempt(&agent, url, &mut sink, job, left, attempts) {
            Ok(Attempt::Done) => {
                let digests = sink.hasher.finish().ok_or(FetchError::Hashing)?;
                let (sha256, signature) = (digests.sha256, digests.signature);
                let size = sink.partial.have;
                return Ok(Done { url: url.clone(), size, sha256, signature, attempts, resumes });
            }
            Ok(Attempt::Failed { error, progress, not_there: gone, wait }) => {
                log::warn!("{error}");
                if gone {
                    not_there[mirror] += 1;
                }
                let live: Vec<usize> =
                    (0..job.urls.len()).filter(|i| not_there[*i] < PERMANENT_ANSWERS).collect();
                if live.is_empty() {
                    return Err(error);
                }
                if progress > 0 && wait.is_none() {
                    continue; // bytes arrived: resume at once from the same mirror
                }
                retries += 1;
                if retries >= job.policy.attempts {
                    return Err(error);
                }
                // The next live mirror after this one, coming back round.
                mirror = live.iter().copied().find(|i| *i > mirror).unwrap_or(live[0]);
                let backoff = job.policy.next_delay(retries, sys::random_u64());
                let delay = wait.unwrap_or(backoff).min(deadline.saturating_sub(sys::uptime()));
                let why = if wait.is_some() { " (the server's Retry-After)" } else { "" };
                log::info!("retrying in {:.1}s{why}", delay.as_secs_f32());
                std::thread::sleep(delay);
            }
            Err(fatal) => return Err(fatal),
        }
    }
}

/// One GET. `Err` is fatal for the whole download; `Ok(Failed)` may be retried.
fn attempt(
    agent: &ureq::Agent,
    url: &Url,
    sink: &mut Sink,
    job: &Job,
    budget: Duration,
    n: u32,
) -> Result<Attempt, FetchError> {
    let failed = |phase: Phase, message: String, progress: u64| Attempt::Failed {
        error: FetchError::Transfer { url: url.clone(), phase, attempts: n, message },
        progress,
        not_there: false,
        wait: None,
    };
    let write_error = |source| FetchError::Write { path: "the image file".into(), source };
    let response = match get(agent, url, &resume_headers(&sink.partial), Some(budget)) {
        Ok((_, r)) => r,
        Err(Got::Fatal(e)) => return Err(e),
        Err(Got::Transfer(phase, message)) => return Ok(failed(phase, message, 0)),
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
        let error = FetchError::Status { url: url.clone(), status, reason };
        return Ok(match verdict(status, header("retry-after").as_deref()) {
            Verdict::Retry => Attempt::Failed { error, progress: 0, not_there: false, wait: None },
            Verdict::RetryAfter(d) => Attempt::Failed { error, progress: 0, not_there: false, wait: Some(d) },
            Verdict::NotThere => Attempt::Failed { error, progress: 0, not_there: true, wait: None },
        });
    }
    let range = header("content-range").as_deref().and_then(content_range);
    let (at, total) = match on_response(status, length, range, &sink.partial) {
        Take::Complete => return Ok(Attempt::Done),
        Take::Restart(why) => {
            log::warn!("{url}: {why}; starting again from byte 0");
            sink.restart().map_err(write_error)?;
            return Ok(failed(Phase::Body, why.to_owned(), 0));
        }
        Take::Write { at, total } => (at, total),
    };
    if at == 0 && sink.partial.have > 0 {
        log::warn!("{url}: the server sent the whole image instead of the rest; starting again from byte 0");
        sink.restart().map_err(write_error)?;
    }
    if let (Some(total), Some(room)) = (total, job.room) {
        if total > room {
            return Err(FetchError::TooBig { url: url.clone(), size: total, room });
        }
    }
    sink.partial.total = total;
    sink.partial.validator = validator(header("etag").as_deref(), header("last-modified").as_deref());
    let mut body = response.into_body().into_reader();
    let mut progress = Progress::new(total, sink.partial.have);
    let before = sink.partial.have;
    loop {
        let mut buf = sink.hasher.buffer();
        let (got, read) = fill(&mut body, &mut buf);
        let written = sink.file.write_all(&buf[..got]);
        // Every buffer goes back, even an unused one: the pool is small, and an attempt that kept
        // one would leave the next attempts waiting forever for it.
        sink.hasher.update(buf, if written.is_ok() { got } else { 0 });
        written.map_err(write_error)?;
        sink.partial.have += got as u64;
        progress.update(sink.partial.have);
        match read {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let progress = sink.partial.have - before;
                let message = format!("{e} after {}", mib(sink.partial.have));
                return Ok(failed(Phase::Body, message, progress));
            }
        }
    }
    if let Some(expected) = total.filter(|t| *t != sink.partial.have) {
        let error = FetchError::Short { url: url.clone(), got: sink.partial.have, expected };
        let progress = sink.partial.have - before;
        return Ok(Attempt::Failed { error, progress, not_there: false, wait: None });
    }
    Ok(Attempt::Done)
}

/// Reads `body` into `buf` until it is full, the body ends or a read fails: the bytes read, and
/// whether there may be more (`Ok(false)` at the end). One buffer holds several of the HTTP
/// client's reads (128 KiB each), so the file and the hashing thread take fewer, larger pieces.
fn fill(body: &mut impl Read, buf: &mut [u8]) -> (usize, io::Result<bool>) {
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
    fn the_retry_table() {
        let check = |status: u16, retry_after: Option<&str>, expected: Verdict| {
            assert_eq!(verdict(status, retry_after), expected, "{status} {retry_after:?}");
        };
        check(500, None, Verdict::Retry);
        check(502, None, Verdict::Retry);
        check(503, None, Verdict::Retry);
        check(408, None, Verdict::Retry);
        check(503, Some("7"), Verdict::RetryAfter(Duration::from_secs(7)));
        check(429, Some(" 2 "), Verdict::RetryAfter(Duration::from_secs(2)));
        check(429, Some("86400"), Verdict::RetryAfter(MAX_RETRY_AFTER));
        check(429, Some("Wed, 21 Oct 2015 07:28:00 GMT"), Verdict::Retry);
        check(429, None, Verdict::Retry);
        check(500, Some("5"), Verdict::Retry);
        check(404, None, Verdict::NotThere);
        check(410, None, Verdict::NotThere);
        check(403, None, Verdict::NotThere);
        check(401, None, Verdict::NotThere);
        check(400, None, Verdict::NotThere);
    }

    #[test]
    fn redirects() {
        let url = |u: &str| Url::parse(u).unwrap();
        let check = |at: &str, status: u16, location: Option<&str>, expected: Result<Option<&str>, &str>| {
            let got = match next_hop(&url(at), status, location) {
                Ok(next) => Ok(next.map(|u| u.as_str().to_owned())),
                Err(Got::Fatal(e)) => Err(e.to_string()),
                Err(Got::Transfer(_, m)) => Err(m),
            };
            match expected {
                Ok(next) => assert_eq!(got, Ok(next.map(str::to_owned)), "{at} {status} {location:?}"),
                Err(m) => {
                    assert!(got.as_ref().is_err_and(|e| e.contains(m)), "{at} {status} {location:?}: {got:?}")
                }
            }
        };
        check("http://a/x", 200, Some("/y"), Ok(None));
        check("http://a/x", 302, None, Ok(None));
        check("http://a/x", 301, Some("/y"), Ok(Some("http://a/y")));
        check("http://a/x", 307, Some("https://b/y"), Ok(Some("https://b/y")));
        check("https://a/x", 308, Some("https://b/y"), Ok(Some("https://b/y")));
        check("https://a/x", 302, Some("//b/y"), Ok(Some("https://b/y")));
        check(
            "https://a/x",
            302,
            Some("http://b/y"),
            Err("https://a/x redirects to http://b/y: refusing to leave https for http"),
        );
        check("http://a/x", 303, Some("gopher://b/"), Err("bad redirect to \"gopher://b/\""));
    }

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
    fn responses_against_what_we_have() {
        let p = |have, total: Option<u64>| Partial { have, total, validator: None };
        let check = |status, len, range, partial: &Partial, expected: Take| {
            assert_eq!(on_response(status, len, range, partial), expected, "{status} {range:?} {partial:?}");
        };
        check(200, Some(1000), None, &p(0, None), Take::Write { at: 0, total: Some(1000) });
        check(200, None, None, &p(0, None), Take::Write { at: 0, total: None });
        check(200, Some(1000), None, &p(300, Some(1000)), Take::Write { at: 0, total: Some(1000) });
        check(
            206,
            Some(700),
            Some((300, 999, Some(1000))),
            &p(300, Some(1000)),
            Take::Write { at: 300, total: Some(1000) },
        );
        check(
            206,
            Some(700),
            Some((300, 999, None)),
            &p(300, Some(1000)),
            Take::Write { at: 300, total: Some(1000) },
        );
        check(
            206,
            Some(700),
            Some((200, 999, Some(1000))),
            &p(300, Some(1000)),
            Take::Restart("the server resumed at another offset"),
        );
        check(
            206,
            Some(700),
            Some((300, 1299, Some(1300))),
            &p(300, Some(1000)),
            Take::Restart("the image changed size on the server"),
        );
        check(
            206,
            Some(700),
            None,
            &p(300, Some(1000)),
            Take::Restart("a 206 answer without a usable Content-Range"),
        );
        check(416, None, None, &p(1000, Some(1000)), Take::Complete);
        check(416, None, Some((0, 0, Some(1000))), &p(1000, None), Take::Complete);
        check(416, None, None, &p(300, Some(1000)), Take::Restart("the server cannot serve the rest (416)"));
        check(416, None, None, &p(0, None), Take::Restart("the server cannot serve the rest (416)"));
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
