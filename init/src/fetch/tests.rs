//! The download engine against a scripted HTTP server on 127.0.0.1: each test says, request by
//! request, what the server answers and where it breaks (reset, stall, a lying Content-Length), then
//! checks the file, the digest, and the requests the engine sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::engine::{download_to, Job, Timeouts};
use super::{FetchError, Phase, RetryPolicy};
use crate::cmdline::{ProxyConfig, Url};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    range: Option<String>,
    if_range: Option<String>,
    accept_encoding: Option<String>,
    host: Option<String>,
    proxy_authorization: Option<String>,
}

/// One scripted answer.
#[derive(Debug, Clone, Default)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Declare this Content-Length instead of the body's.
    length: Option<u64>,
    /// Send this many body bytes, then close the connection.
    reset_after: Option<usize>,
    /// Send this many body bytes, then go silent for this long (then close).
    stall_after: Option<(usize, Duration)>,
    /// Send the body a byte at a time, this long apart.
    trickle: Option<Duration>,
}

fn ok(body: &[u8]) -> Answer {
    Answer { status: 200, body: body.to_vec(), ..Answer::default() }
}

fn status(code: u16) -> Answer {
    Answer { status: code, ..Answer::default() }
}

/// 206 for `Range: bytes=N-`, or 200 without one.
fn ranged(data: &[u8], seen: &Seen, etag: &str) -> Answer {
    let etag = ("ETag", etag.to_owned());
    match seen.range.as_deref().and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.strip_suffix('-')) {
        Some(n) => {
            let n: usize = n.parse().unwrap();
            let range = ("Content-Range", format!("bytes {}-{}/{}", n, data.len() - 1, data.len()));
            Answer { status: 206, headers: vec![range, etag], body: data[n..].to_vec(), ..Answer::default() }
        }
        None => Answer { status: 200, headers: vec![etag], body: data.to_vec(), ..Answer::default() },
    }
}

type Script = dyn Fn(usize, &Seen) -> Answer + Send + Sync;

struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start(script: impl Fn(usize, &Seen) -> Answer + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (script, log) = (Arc::clone(&script), Arc::clone(&log));
                std::thread::spawn(move || serve(stream, &*script, &log));
            }
        });
        Server { port, seen }
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://127.0.0.1:{}{path}", self.port)).unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, script: &Script, log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut seen = Seen {
        method: line.split_whitespace().next().unwrap_or("").to_owned(),
        path,
        range: None,
        if_range: None,
        accept_encoding: None,
        host: None,
        proxy_authorization: None,
    };
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => seen.range = Some(v.trim().to_owned()),
                "if-range" => seen.if_range = Some(v.trim().to_owned()),
                "accept-encoding" => seen.accept_encoding = Some(v.trim().to_owned()),
                "host" => seen.host = Some(v.trim().to_owned()),
                "proxy-authorization" => seen.proxy_authorization = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    let n = {
        let mut l = log.lock().unwrap();
        l.push(seen.clone());
        l.len() - 1
    };
    let a = script(n, &seen);
    let mut out = stream;
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", a.status);
    for (k, v) in &a.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", a.length.unwrap_or(a.body.len() as u64)));
    let _ = out.write_all(head.as_bytes());
    let cut = a.reset_after.or(a.stall_after.map(|s| s.0)).unwrap_or(a.body.len()).min(a.body.len());
    if let Some(gap) = a.trickle {
        for byte in &a.body[..cut] {
            if out.write_all(&[*byte]).and_then(|()| out.flush()).is_err() {
                return;
            }
            std::thread::sleep(gap);
        }
        return;
    }
    let _ = out.write_all(&a.body[..cut]);
    let _ = out.flush();
    if let Some((_, silence)) = a.stall_after {
        std::thread::sleep(silence);
    }
}

/// A test image: 1 MiB of bytes that are not all the same.
fn image() -> Vec<u8> {
    (0..1u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()
}

fn sha(data: &[u8]) -> Option<[u8; 32]> {
    Some(Sha256::digest(data).into())
}

fn file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("netinit-fetch-{name}-{}", std::process::id()))
}

/// A job with short waits, so the tests take milliseconds.
fn job(urls: &[Url]) -> Job<'_> {
    Job {
        urls,
        policy: RetryPolicy { attempts: 6, base: Duration::from_millis(5), cap: Duration::from_millis(20) },
        budget: Duration::from_secs(20),
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            headers: Duration::from_secs(2),
            idle: Duration::from_millis(300),
        },
        room: None,
        proxy: &NO_PROXY,
        sha256: true,
    }
}

static NO_PROXY: ProxyConfig = ProxyConfig { server: None, bypass: Vec::new() };

#[test]
fn a_plain_download() {
    let data = image();
    let d = data.clone();
    let server = Server::start(move |_, _| ok(&d));
    let path = file("plain");
    let urls = [server.url("/img")];
    let done = download_to(&path, &job(&urls), None).unwrap();
    assert_eq!((done.size, done.attempts, done.resumes), (data.len() as u64, 1, 0));
    assert_eq!(done.sha256, sha(&data));
    assert_eq!(std::fs::read(&path).unwrap(), data);
    // Nothing asks for the digest: the same file, and no digest computed.
    let done = download_to(&path, &Job { sha256: false, ..job(&urls) }, None).unwrap();
    assert_eq!((done.size, done.sha256), (data.len() as u64, None));
    assert_eq!(std::fs::read(&path).unwrap(), data);
}

#[test]
fn three_503_then_200() {
    let data = image();
    let d = data.clone();
    let server = Server::start(move |n, _| if n < 3 { status(503) } else { ok(&d) });
    let path = file("503");
    let urls = [server.url("/img")];
    let done = download_to(&path, &job(&urls), None).unwrap();
    assert_eq!((done.attempts, done.resumes), (4, 0));
    assert_eq!(std::fs::read(&path).unwrap(), data);
}

#[test]
fn retry_after_is_honoured_with_jitter() {
    let data = image();
    let d = data.clone();
    let server = Server::start(move |n, _| match n {
        0 => Answer { headers: vec![("Retry-After", "1".into())], ..status(429) },
        _ => ok(&d),
    });
    let urls = [server.url("/img")];
    let start = Instant::now();
    let done = download_to(&file("429"), &job(&urls), None).unwrap();
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(1) && waited < Duration::from_millis(2500), "waited {waited:?}");
    assert_eq!(done.attempts, 2);
}

#[test]
fn a_busy_server_is_waited_out_past_the_retry_count() {
    // Six attempts allowed; 25 busy answers (503 with Retry-After: 0, 429 without, 503 with a date)
    // use none of them.
    let data = image();
    let d = data.clone();
    let server = Server::start(move |n, _| match n {
        0..=9 => Answer { headers: vec![("Retry-After", "0".into())], ..status(503) },
        10..=19 => status(429),
        20..=24 => {
            let date = ("Date", "Wed, 21 Oct 2015 07:28:00 GMT".to_owned());
            Answer {
                headers: vec![("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT".into()), date],
                ..status(503)
            }
        }
        _ => ok(&d),
    });
    let urls = [server.url("/img")];
    let path = file("busy");
    let done = download_to(&path, &job(&urls), None).unwrap();
    assert_eq!((done.attempts, done.sha256), (26, sha(&data)));
    assert_eq!(std::fs::read(&path).unwrap(), data);
}

#[test]
fn a_busy_mirror_sends_the_next_attempt_to_the_next_mirror_at_once() {
    let data = image();
    let d = data.clone();
    let server = Server::start(move |_, seen| match seen.path.as_str() {
        "/m1/img" => Answer { headers: vec![("Retry-After", "30".into())], ..status(503) },
        _ => ok(&d),
    });
    let urls = [server.url("/m1/img"), server.url("/m2/img")];
    let start = Instant::now();
    let done = download_to(&file("busy-mirror"), &job(&urls), None).unwrap();
    assert!(start.elapsed() < Duration::from_secs(5), "it did not wait for the busy mirror");
    assert_eq!(done.url, urls[1]);
    let paths: Vec<String> = server.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(paths, ["/m1/img", "/m2/img"]);
}

#[test]
fn a_server_that_answered_then_refuses_connections_is_busy_until_the_budget() {
    // It answers once (503), then its port is closed: refused connections from then on are a full
    // server's, not a wrong address, so they do not use up the two attempts.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answered = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        s.write_all(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    });
    let urls = [Url::parse(&format!("http://127.0.0.1:{port}/img")).unwrap()];
    let mut j = job(&urls);
    j.policy.attempts = 2;
    j.budget = Duration::from_millis(800);
    let e = download_to(&file("refused-busy"), &j, None).unwrap_err();
    answered.join().unwrap();
    match e {
        FetchError::Budget { attempts, busy, .. } => assert!(attempts > 2 && busy + 1 >= attempts, "{e}"),
        other => panic!("{other}"),
    }
}

#[test]
fn a_reset_at_30_percent_resumes_with_range() {
    let data = image();
    let d = data.clone();
    let cut = data.len() * 3 / 10;
    let server = Server::start(move |n, seen| {
        let a = ranged(&d, seen, "\"v1\"");
        if n == 0 {
            Answer { reset_after: Some(cut), ..a }
        } else {
            a
        }
    });
    let path = file("reset");
    let urls = [server.url("/img")];
    let done = download_to(&path, &job(&urls), None).unwrap();
    assert_eq!((done.attempts, done.resumes), (2, 1));
    assert_eq!(done.sha256, sha(&data));
    assert_eq!(std::fs::read(&path).unwrap(), data);
    let seen = server.seen();
    assert_eq!(seen[1].range.as_deref(), Some(format!("bytes={cut}-").as_str()));
    assert_eq!(seen[1].if_range.as_deref(), Some("\"v1\""));
}

#[test]
fn twenty_resets_in_a_row_are_twenty_resumes() {
    // More resumes than the hashing thread has buffers: each attempt must give its buffers back.
    let data = image();
    let d = data.clone();
    let step = data.len() / 25;
    let server = Server::start(move |n, seen| {
        let a = ranged(&d, seen, "\"v1\"");
        if n < 20 {
            Answer { reset_after: Some(step), ..a }
        } else {
            a
        }
    });
    let urls = [server.url("/img")];
    let path = file("resets");
    let (tx, rx) = std::sync::mpsc::channel();
    let (job_urls, job_path) = (urls.clone(), path.clone());
    std::thread::spawn(move || {
        let _ = tx.send(download_to(&job_path, &job(&job_urls), None));
    });
    let done = rx.recv_timeout(Duration::from_secs(20)).expect("the download hung").unwrap();
    assert_eq!((done.attempts, done.resumes), (21, 20));
    assert_eq!(done.sha256, sha(&data));
    assert_eq!(std::fs::read(&path).unwrap(), data);
    let seen = server.seen();
    assert_eq!(seen[20].range.as_deref(), Some(format!("bytes={}-", 20 * step).as_str()));
}

#[test]
fn a_stall_resumes_after_the_idle_timeout() {
    let data = image();
    let d = data.clone();
    let cut = data.len() / 2;
    let server = Server::start(move |n, seen| {
        let a = ranged(&d, seen, "\"v1\"");
        if n == 0 {
            Answer { stall_after: Some((cut, Duration::from_secs(3))), ..a }
        } else {
            a
        }
    });
    let path = file("stall");
    let urls = [server.url("/img")];
    let start = Instant::now();
    let done = download_to(&path, &job(&urls), None).unwrap();
    assert!(start.elapsed() < Duration::from_secs(3), "the idle timeout, not the server, ended the stall");
    assert_eq!(done.resumes, 1);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(server.seen()[1].range.as_deref(), Some(format!("bytes={cut}-").as_str()));
}

#[test]
fn a_server_that_ignores_range_restarts_from_zero_without_corruption() {
    let data = image();
    let d = data.clone();
    let server = Server::start(move |n, _| {
        if n == 0 {
            Answer { reset_after: Some(d.len() / 3), ..ok(&d) }
        } else {
            ok(&d) // 200 and the whole file, whatever the Range
        }
    });
    let path = file("norange");
    let urls = [server.url("/img")];
    let done = download_to(&path, &job(&urls), None).unwrap();
    assert_eq!(done.sha256, sha(&data));
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert!(server.seen()[1].range.is_some(), "it did ask for the rest");
}

#[test]
fn a_file_changed_on_the_server_starts_again() {
    let (old, new) = (image(), image().into_iter().rev().collect::<Vec<u8>>());
    let (o, n2) = (old.clone(), new.clone());
    let server = Server::start(move |n, seen| match n {
        0 => Answer { reset_after: Some(o.len() / 2), ..ranged(&o, seen, "\"v1\"") },
        // If-Range "v1" no longer matches: the whole new file, as RFC 9110 says.
        _ => ranged(&n2, &Seen { range: None, ..seen.clone() }, "\"v2\""),
    });
    let path = file("changed");
    let urls = [server.url("/img")];
    let done = download_to(&path, &job(&urls), None).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), new);
    assert_eq!(done.sha256, sha(&new));
    assert_eq!(server.seen()[1].if_range.as_deref(), Some("\"v1\""));
}

#[test]
fn a_content_length_that_lies_short_gives_what_it_declared() {
    let data = image();
    let d = data.clone();
    let half = data.len() as u64 / 2;
    let server = Server::start(move |_, _| Answer { length: Some(half), ..ok(&d) });
    let urls = [server.url("/img")];
    let done = download_to(&file("short"), &job(&urls), None).unwrap();
    assert_eq!(done.size, half);
    assert_ne!(done.sha256, sha(&data), "modloop_sha256= catches it, and the squashfs check after");
}

#[test]
fn a_content_length_that_lies_long_fails_after_the_retries() {
    let data = image();
    let d = data.clone();
    let long = data.len() as u64 * 2;
    let server = Server::start(move |_, seen| match seen.range {
        Some(_) => Answer { headers: vec![("Content-Range", format!("bytes */{}", d.len()))], ..status(416) },
        None => Answer { length: Some(long), ..ok(&d) },
    });
    let urls = [server.url("/img")];
    let e = download_to(&file("long"), &job(&urls), None).unwrap_err();
    assert!(matches!(e, FetchError::Transfer { .. } | FetchError::Short { .. }), "{e}");
    assert!(server.seen().len() <= 12, "bounded: {} requests", server.seen().len());
}

#[test]
fn a_404_on_the_first_mirror_falls_over_to_the_second() {
    let data = image();
    let d = data.clone();
    let server = Server::start(move |_, seen| if seen.path == "/m1/img" { status(404) } else { ok(&d) });
    let urls = [server.url("/m1/img"), server.url("/m2/img")];
    let done = download_to(&file("mirror"), &job(&urls), None).unwrap();
    assert_eq!(done.url, urls[1]);
    assert_eq!(done.attempts, 2);
}

#[test]
fn a_404_everywhere_ends_after_two_answers_per_mirror() {
    let server = Server::start(|_, _| status(404));
    let urls = [server.url("/m1/img"), server.url("/m2/img")];
    let mut j = job(&urls);
    j.policy.attempts = 50;
    let e = download_to(&file("404"), &j, None).unwrap_err();
    assert_eq!(e.to_string(), format!("GET {} answered HTTP 404 Not Found", urls[1]));
    assert_eq!(server.seen().len(), 4);
}

#[test]
fn refused_connections_use_up_the_retries() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // now closed
    let urls = [Url::parse(&format!("http://127.0.0.1:{port}/img")).unwrap()];
    let e = download_to(&file("refused"), &job(&urls), None).unwrap_err();
    match e {
        FetchError::Transfer { phase: Phase::Connect, attempts: 6, .. } => {}
        other => panic!("{other}"),
    }
}

#[test]
fn an_image_larger_than_the_ram_disk_is_refused_before_downloading() {
    let data = image();
    let d = data.clone();
    let server = Server::start(move |_, _| ok(&d));
    let urls = [server.url("/img")];
    let mut j = job(&urls);
    j.room = Some(1000);
    let e = download_to(&file("room"), &j, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("GET {}: the image is 1.0 MiB but the RAM disk has 0.0 MiB free", urls[0])
    );
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn the_time_budget_ends_a_hopeless_download() {
    let server = Server::start(|_, _| status(503));
    let urls = [server.url("/img")];
    let mut j = job(&urls);
    j.policy =
        RetryPolicy { attempts: 1000, base: Duration::from_millis(50), cap: Duration::from_millis(50) };
    j.budget = Duration::from_millis(600);
    let start = Instant::now();
    let e = download_to(&file("budget"), &j, None).unwrap_err();
    assert!(matches!(e, FetchError::Budget { busy, .. } if busy > 2), "{e}");
    assert!(e.to_string().contains("of them answered busy"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn redirects_are_followed_and_resumes_go_where_they_lead() {
    let data = image();
    let d = data.clone();
    let server = Server::start(move |n, seen| match seen.path.as_str() {
        "/old/img" => Answer { headers: vec![("Location", "/new/img".into())], ..status(302) },
        "/new/img" if n == 1 => Answer { reset_after: Some(d.len() / 4), ..ranged(&d, seen, "\"v1\"") },
        _ => ranged(&d, seen, "\"v1\""),
    });
    let urls = [server.url("/old/img")];
    let done = download_to(&file("redirect"), &job(&urls), None).unwrap();
    assert_eq!((done.sha256, done.resumes), (sha(&data), 1));
    let paths: Vec<String> = server.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(paths, ["/old/img", "/new/img", "/old/img", "/new/img"]);
    assert!(server.seen()[3].range.is_some(), "the resume asks the new place for the rest");
}

#[test]
fn a_redirect_loop_fails_at_once_naming_its_hops() {
    let server = Server::start(|_, seen| {
        let to = if seen.path == "/a" { "/b" } else { "/a" };
        Answer { headers: vec![("Location", to.into())], ..status(302) }
    });
    let urls = [server.url("/a")];
    let e = download_to(&file("loop"), &job(&urls), None).unwrap_err();
    let (a, b) = (server.url("/a"), server.url("/b"));
    assert_eq!(e.to_string(), format!("GET {a}: the redirects go round in a loop: {a} -> {b} -> {a}"));
    assert_eq!(server.seen().len(), 2, "no retries: a loop is a configuration error");
}

#[test]
fn a_chain_of_more_than_ten_redirects_fails_at_once() {
    let server =
        Server::start(|n, _| Answer { headers: vec![("Location", format!("/r{}", n + 1))], ..status(301) });
    let urls = [server.url("/r0")];
    let e = download_to(&file("chain"), &job(&urls), None).unwrap_err();
    assert!(matches!(e, FetchError::Redirects { looped: false, .. }), "{e}");
    let (r0, r1) = (server.url("/r0"), server.url("/r1"));
    assert!(e.to_string().starts_with(&format!("GET {r0}: more than 10 redirects: {r0} -> {r1} -> ")), "{e}");
    assert!(e.to_string().ends_with("... (11 hops)"), "{e}");
    assert_eq!(server.seen().len(), 11);
}

fn gzipped(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

#[test]
fn a_body_gzipped_unasked_is_decoded_and_a_broken_one_starts_again() {
    let data = image();
    let packed = gzipped(&data);
    let server = Server::start(move |n, _| {
        let a = Answer { headers: vec![("Content-Encoding", "gzip".into())], ..ok(&packed) };
        if n == 0 {
            Answer { reset_after: Some(packed.len() / 2), ..a }
        } else {
            a
        }
    });
    let urls = [server.url("/img")];
    let path = file("gzip");
    let done = download_to(&path, &job(&urls), None).unwrap();
    assert_eq!((done.sha256, done.size), (sha(&data), data.len() as u64), "the image, not its encoding");
    assert_eq!(std::fs::read(&path).unwrap(), data);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].accept_encoding.as_deref(),
        Some("identity"),
        "netinit asks for the bytes as they are"
    );
    assert_eq!(seen[1].range, None, "a gzipped body is never resumed by range");
}

#[test]
fn an_encoding_netinit_cannot_decode_fails_at_once_naming_it() {
    let server =
        Server::start(|_, _| Answer { headers: vec![("Content-Encoding", "br".into())], ..ok(b"xx") });
    let urls = [server.url("/img")];
    let e = download_to(&file("br"), &job(&urls), None).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "GET {}: the server sent the image with Content-Encoding: br, which netinit did not ask for and cannot decode",
            urls[0]
        )
    );
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn a_signed_image_verifies_across_a_resume_and_a_tampered_one_does_not() {
    use super::hasher::tests::{check, signed_data};
    let data = signed_data();
    let d = data.clone();
    let server = Server::start(move |n, seen| {
        let a = ranged(&d, seen, "\"v1\"");
        if n == 0 {
            Answer { reset_after: Some(d.len() / 2), ..a }
        } else {
            a
        }
    });
    let urls = [server.url("/img")];
    let done = download_to(&file("signed"), &job(&urls), Some(check())).unwrap();
    assert_eq!((done.resumes, done.signature), (1, Some(Ok(()))));
    let mut bad = data.clone();
    bad[7] ^= 0x80;
    let server = Server::start(move |_, _| ok(&bad));
    let urls = [server.url("/img")];
    let done = download_to(&file("tampered"), &job(&urls), Some(check())).unwrap();
    assert!(matches!(done.signature, Some(Err(_))), "{:?}", done.signature);
}

/// A real TLS server (`openssl s_server -WWW`) with a self-signed certificate for 127.0.0.1, which
/// no root vouches for: the handshake fails, and the download stops at once, saying why. Needs the
/// openssl tool, which `cargo xtask test` installs before the host tests (and with
/// `NETINIT_REQUIRE_TOOLS=1` requires); a plain `cargo test` without it skips this test, saying so.
#[test]
fn an_untrusted_certificate_is_fatal_at_once() {
    use std::process::{Command, Stdio};
    if Command::new("openssl").arg("version").stdout(Stdio::null()).status().is_err() {
        assert!(
            std::env::var_os("NETINIT_REQUIRE_TOOLS").is_none(),
            "openssl is missing (apt-get install openssl)"
        );
        eprintln!("skipping: the openssl tool is not installed (apt-get install openssl)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("netinit-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("img"), b"not reached").unwrap();
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running openssl (apt-get install openssl)");
    assert!(made.success());
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-WWW",
            "-quiet",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            "cert.pem",
            "-key",
            "key.pem",
        ])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let urls = [Url::parse(&format!("https://127.0.0.1:{port}/img")).unwrap()];
    let result = up.then(|| download_to(&file("tls"), &job(&urls), None));
    let _ = server.kill();
    let _ = server.wait();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(up, "openssl s_server did not start");
    let e = result.unwrap().unwrap_err();
    match &e {
        FetchError::Tls { message, .. } => assert!(message.contains("UnknownIssuer"), "{e}"),
        other => panic!("expected a TLS error, got: {other}"),
    }
}

/// The body of an HTTP response read raw, to keep the server honest.
#[test]
fn the_scripted_server_speaks_http() {
    let server = Server::start(|_, _| ok(b"hello"));
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nRange: bytes=1-\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("\r\n\r\nhello"), "{out}");
    assert_eq!(server.seen()[0].range.as_deref(), Some("bytes=1-"));
}

#[test]
fn a_small_download_ends_at_its_budget_however_slowly_the_bytes_come() {
    // 100 bytes, one every 50 ms: each read is quick, the whole takes 5 s.
    let server =
        Server::start(|_, _| Answer { trickle: Some(Duration::from_millis(50)), ..ok(&[b'k'; 100]) });
    let start = Instant::now();
    let e = super::get_small(&server.url("/key"), 1 << 10, Duration::from_secs(1), &NO_PROXY).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
    assert!(
        matches!(&e, FetchError::Transfer { phase: Phase::Body, message, .. } if message.contains("budget of 1s")),
        "{e}"
    );
    let fast = Server::start(|_, _| ok(b"ssh-ed25519 AAAA"));
    assert_eq!(
        super::get_small(&fast.url("/key"), 1 << 10, Duration::from_secs(1), &NO_PROXY).unwrap(),
        b"ssh-ed25519 AAAA"
    );
}

#[test]
fn a_budget_too_large_for_an_instant_is_not_a_crash() {
    let server = Server::start(|_, _| ok(b"x"));
    let huge = Duration::from_secs(u64::MAX);
    assert_eq!(super::get_small(&server.url("/x"), 1 << 10, huge, &NO_PROXY).unwrap(), b"x");
}

mod extras {
    use super::super::hasher::tests::{signed_data, KEY, SIGNATURE};
    use super::super::{Extras, FetchError};
    use super::*;

    /// A server with `/ovl` (the signed bytes, or `body`) and, when `signature`, `/ovl.minisig`.
    fn serve(body: Option<Vec<u8>>, signature: bool) -> Server {
        let body = body.unwrap_or_else(signed_data);
        Server::start(move |_, seen| match seen.path.as_str() {
            "/ovl" => ok(&body),
            "/ovl.minisig" if signature => ok(SIGNATURE.as_bytes()),
            _ => status(404),
        })
    }

    fn trusting(keys: &[&str]) -> Extras {
        let keys = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                (
                    PathBuf::from(format!("/etc/netinit/keys/{i}.pub")),
                    minisign_verify::PublicKey::decode(k).unwrap(),
                )
            })
            .collect();
        Extras { budget: Duration::from_secs(5), keys: Some(keys), proxy: ProxyConfig::default() }
    }

    const OTHER: &str = include_str!("testdata/other.pub");

    #[test]
    fn a_signed_extra_is_taken_with_its_signer() {
        let server = serve(None, true);
        let got = trusting(&[OTHER, KEY]).get(&server.url("/ovl"), 1 << 20).unwrap();
        assert_eq!(got.bytes, signed_data());
        assert_eq!(got.signed_by, Some(PathBuf::from("/etc/netinit/keys/1.pub")));
    }

    #[test]
    fn unsigned_tampered_or_foreign_extras_are_refused() {
        let server = serve(None, false);
        let e = trusting(&[KEY]).get(&server.url("/ovl"), 1 << 20).unwrap_err();
        assert!(matches!(e, FetchError::Unsigned { .. }), "{e}");
        assert!(e.to_string().contains("/ovl is not signed (GET http://127.0.0.1:"), "{e}");
        assert!(e.to_string().contains("/ovl.minisig answered HTTP 404"), "{e}");
        let mut tampered = signed_data();
        tampered[1000] ^= 1;
        let server = serve(Some(tampered), true);
        let e = trusting(&[KEY]).get(&server.url("/ovl"), 1 << 20).unwrap_err();
        assert!(matches!(e, FetchError::BadSignature { .. }), "{e}");
        let server = serve(None, true);
        let e = trusting(&[OTHER]).get(&server.url("/ovl"), 1 << 20).unwrap_err();
        assert!(matches!(e, FetchError::UnknownKey { .. }), "{e}");
        assert!(e.to_string().contains("trusted: /etc/netinit/keys/0.pub"), "{e}");
    }

    #[test]
    fn a_signature_the_server_fails_to_serve_is_that_failure_not_unsigned() {
        let server = Server::start(|_, seen| match seen.path.as_str() {
            "/ovl" => ok(&signed_data()),
            _ => status(500),
        });
        let e = trusting(&[KEY]).get(&server.url("/ovl"), 1 << 20).unwrap_err();
        assert!(matches!(e, FetchError::Status { status: 500, .. }), "{e}");
        assert!(!e.hint().contains("sign it"), "{}", e.hint());
    }

    #[test]
    fn a_missing_extra_is_missing_not_unsigned_and_without_keys_no_signature_is_asked() {
        let server = Server::start(|_, _| status(404));
        let e = trusting(&[KEY]).get(&server.url("/ovl"), 1 << 20).unwrap_err();
        assert!(matches!(e, FetchError::Status { status: 404, .. }), "{e}");
        let server = serve(Some(b"plain".to_vec()), false);
        let open = Extras { budget: Duration::from_secs(5), keys: None, proxy: ProxyConfig::default() };
        let got = open.get(&server.url("/ovl"), 1 << 20).unwrap();
        assert_eq!((got.bytes.as_slice(), got.signed_by), (&b"plain"[..], None));
        assert_eq!(server.seen().iter().map(|s| s.path.as_str()).collect::<Vec<_>>(), ["/ovl"]);
    }
}

/// `proxy=`: a plain http URL is asked of the proxy in absolute form, with the origin's `Host` and
/// the proxy's credentials; `noproxy=` sends a matching host straight to it; an https URL goes
/// through `CONNECT`, whose refusal names the proxy.
#[test]
fn through_a_proxy() {
    let data = image();
    let d = data.clone();
    let proxy = Server::start(move |_, seen| match seen.method.as_str() {
        "GET" => ok(&d),
        _ => status(403),
    });
    let config = ProxyConfig {
        server: Some(
            crate::cmdline::ProxyServer::parse(&format!("http://op:s%40cret@127.0.0.1:{}", proxy.port))
                .unwrap(),
        ),
        bypass: vec![crate::cmdline::Bypass::parse(".direct.test").unwrap()],
    };
    let urls = [Url::parse("http://images.test:8080/root.squashfs#x").unwrap()];
    let path = file("proxy");
    let done = download_to(&path, &Job { proxy: &config, ..job(&urls) }, None).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(done.size, data.len() as u64);
    let seen = proxy.seen();
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, "http://images.test:8080/root.squashfs");
    assert_eq!(seen[0].host.as_deref(), Some("images.test:8080"));
    // "op:s@cret"
    assert_eq!(seen[0].proxy_authorization.as_deref(), Some("Basic b3A6c0BjcmV0"));

    // Bypassed: straight to the server (here the same one, which then sees an origin-form request).
    let urls = [Url::parse(&format!("http://127.0.0.1:{}/root.squashfs", proxy.port)).unwrap()];
    let direct =
        ProxyConfig { bypass: vec![crate::cmdline::Bypass::parse("127.0.0.0/8").unwrap()], ..config.clone() };
    download_to(&path, &Job { proxy: &direct, ..job(&urls) }, None).unwrap();
    let last = proxy.seen().pop().unwrap();
    assert_eq!((last.path.as_str(), last.proxy_authorization), ("/root.squashfs", None));

    let urls = [Url::parse("https://images.test/root.squashfs").unwrap()];
    let small =
        Job { proxy: &config, policy: RetryPolicy { attempts: 1, ..job(&urls).policy }, ..job(&urls) };
    let e = download_to(&path, &small, None).unwrap_err().to_string();
    assert!(e.contains(&format!("through the proxy http://***@127.0.0.1:{}", proxy.port)), "{e}");
    let last = proxy.seen().pop().unwrap();
    assert_eq!((last.method.as_str(), last.path.as_str()), ("CONNECT", "images.test:443"));
    let _ = std::fs::remove_file(&path);
}

/// The stream server's chunk fetch: exactly the range asked for, of an image of exactly the
/// manifest's size, or an error that says which kind of failure it was.
#[test]
fn a_range_is_fetched_and_checked() {
    use super::{get_range, http, RangeError};
    let data: Vec<u8> = (0..100u8).collect();
    let d = data.clone();
    let server = Server::start(move |_, seen| {
        let range = |a: usize, b: usize, total: usize| Answer {
            status: 206,
            headers: vec![("Content-Range", format!("bytes {a}-{b}/{total}"))],
            body: d[a..=b].to_vec(),
            ..Answer::default()
        };
        match seen.path.as_str() {
            "/good" => range(10, 19, 100),
            "/other" => range(10, 19, 120),
            "/shifted" => range(11, 20, 100),
            "/short" => Answer { length: Some(10), reset_after: Some(4), ..range(10, 19, 100) },
            "/busy" => status(503),
            "/gone" => status(404),
            _ => ok(&d),
        }
    });
    // Pinned: the name (here an address) is resolved once, up front.
    let client = http::Client::pinned(&Timeouts::default(), &ProxyConfig::default(), &[server.url("/good")]);
    let get = |path: &str| get_range(&client, &server.url(path), (10, 20), 100, Duration::from_secs(10));
    assert_eq!(get("/good").unwrap(), data[10..20].to_vec());
    assert_eq!(server.seen()[0].range.as_deref(), Some("bytes=10-19"));
    assert!(matches!(get("/other"), Err(RangeError::OtherImage(m)) if m.contains("120 bytes")));
    assert!(matches!(get("/shifted"), Err(RangeError::Refused(_))));
    assert!(matches!(get("/whole"), Err(RangeError::Refused(m)) if m.contains("ignores Range")));
    assert!(matches!(get("/short"), Err(RangeError::Transfer(_))));
    assert!(matches!(get("/busy"), Err(RangeError::Transfer(m)) if m.contains("503")));
    assert!(matches!(get("/gone"), Err(RangeError::Refused(m)) if m.contains("404")));
}
