//! A small HTTP/1.1 file server for the VM tests: GET and HEAD of the files in one directory, with
//! `Range: bytes=` (206, 416), `ETag` and `If-Range`, 404, one thread per connection,
//! `Connection: close`. One scripted fault for the resume tests: a path under
//! `/fault/reset-once-at-P/` serves the file below it, but the first request for that exact path
//! is cut after P % of its body. And a link of limited bandwidth: below `/rate/KIB/` the files are
//! sent at KIB KiB/s at most, shared by every request under that prefix (a token bucket per
//! server), for the streamed root's tests and benchmark. It listens on
//! 127.0.0.1 only; qemu's user network shows it to the guest as 10.0.2.2. It serves real HTTP over
//! real TCP; the init cannot tell it from any other server.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Server {
    pub port: u16,
}

/// Starts serving `dir` on a free port of 127.0.0.1; the server lives as long as the process.
pub fn serve(dir: &Path) -> std::io::Result<Server> {
    serve_at(dir, "127.0.0.1:0")
}

/// Starts serving `dir` on `addr`.
pub fn serve_at(dir: &Path, addr: &str) -> std::io::Result<Server> {
    let listener = TcpListener::bind(addr)?;
    let port = listener.local_addr()?.port();
    let dir = dir.to_path_buf();
    let faulted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let link: Arc<Mutex<Instant>> = Arc::new(Mutex::new(Instant::now()));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (dir, faulted, link) = (dir.clone(), Arc::clone(&faulted), Arc::clone(&link));
            std::thread::spawn(move || handle(stream, &dir, &faulted, &link));
        }
    });
    Ok(Server { port })
}

/// A parsed `Range: bytes=` header against a file of `len` bytes: the inclusive byte range, or
/// `Err(())` when it cannot be satisfied (416).
pub fn parse_range(header: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // multiple ranges: serve the whole file, as RFC 9110 allows
    }
    let (start, end) = spec.split_once('-')?;
    let range = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (len.saturating_sub(n), len.checked_sub(1)?)
        }
        (s, "") => (s.parse().ok()?, len.saturating_sub(1)),
        (s, e) => (s.parse().ok()?, e.parse::<u64>().ok()?.min(len.saturating_sub(1))),
    };
    Some(if range.0 <= range.1 && range.0 < len { Ok(range) } else { Err(()) })
}

/// A request's target split into the file to serve and the share of its body after which the
/// connection is cut, for `/fault/reset-once-at-P/...`.
pub fn fault(target: &str) -> (&str, Option<u64>) {
    let Some(rest) = target.strip_prefix("/fault/reset-once-at-") else { return (target, None) };
    match rest.split_once('/') {
        Some((p, file)) => match p.parse::<u64>() {
            Ok(p) if p < 100 => (&target[target.len() - file.len() - 1..], Some(p)),
            _ => (target, None),
        },
        None => (target, None),
    }
}

/// A request's target without a `/rate/KIB/` prefix, and the rate in bytes per second.
pub fn rate(target: &str) -> (&str, Option<u64>) {
    let Some(rest) = target.strip_prefix("/rate/") else { return (target, None) };
    match rest.split_once('/') {
        Some((kib, _)) => match kib.parse::<u64>() {
            Ok(k) if k > 0 => (&rest[kib.len()..], Some(k * 1024)),
            _ => (target, None),
        },
        None => (target, None),
    }
}

/// Serves one request; returns `METHOD /path STATUS`, or `None` when the request was unreadable.
fn handle(
    stream: TcpStream,
    dir: &Path,
    faulted: &Mutex<HashSet<String>>,
    link: &Mutex<Instant>,
) -> Option<String> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request = String::new();
    reader.read_line(&mut request).ok()?;
    let (mut range_header, mut if_range) = (None, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => range_header = Some(v.trim().to_owned()),
                "if-range" => if_range = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let (rated, limit) = rate(&target);
    let (file, cut) = fault(rated);
    // Only the first request for a fault path is cut.
    let cut = cut.filter(|_| faulted.lock().is_ok_and(|mut f| f.insert(target.clone())));
    let mut out = stream;
    let path: PathBuf = dir.join(file.trim_start_matches('/'));
    let safe = !target.contains("..") && path.is_file();
    let status = if method != "GET" && method != "HEAD" {
        respond(&mut out, 405, "Method Not Allowed", &[], None)
    } else if !safe {
        respond(&mut out, 404, "Not Found", &[], None)
    } else {
        let pace = limit.map(|bytes_per_second| (link, bytes_per_second));
        serve_file(&mut out, &path, &method, range_header.as_deref(), if_range.as_deref(), cut, pace)
    };
    Some(format!("{method} {target} {status}"))
}

fn respond(out: &mut TcpStream, status: u16, reason: &str, headers: &[String], len: Option<u64>) -> u16 {
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\nServer: netinit-xtask\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", len.unwrap_or(0)));
    let _ = out.write_all(head.as_bytes());
    status
}

/// Serves a file; with `cut`, only that share of the body before closing the connection.
fn serve_file(
    out: &mut TcpStream,
    path: &Path,
    method: &str,
    range: Option<&str>,
    if_range: Option<&str>,
    cut: Option<u64>,
    pace: Option<(&Mutex<Instant>, u64)>,
) -> u16 {
    let Ok(file) = std::fs::File::open(path) else { return respond(out, 404, "Not Found", &[], None) };
    let (len, mtime) = file.metadata().map(|m| (m.len(), m.mtime())).unwrap_or((0, 0));
    let etag = format!("\"{len:x}-{mtime:x}\"");
    // A Range whose If-Range no longer matches gets the whole file (RFC 9110 13.1.5).
    let range = range.filter(|_| if_range.is_none_or(|v| v == etag));
    let common = ["Accept-Ranges: bytes".to_string(), format!("ETag: {etag}")];
    let (status, start, count) = match range.and_then(|r| parse_range(r, len)) {
        Some(Ok((a, b))) => {
            let headers =
                [common[0].clone(), common[1].clone(), format!("Content-Range: bytes {a}-{b}/{len}")];
            respond(out, 206, "Partial Content", &headers, Some(b - a + 1));
            (206, a, b - a + 1)
        }
        Some(Err(())) => {
            let headers = [format!("Content-Range: bytes */{len}")];
            return respond(out, 416, "Range Not Satisfiable", &headers, None);
        }
        None => {
            respond(out, 200, "OK", &common, Some(len));
            (200, 0, len)
        }
    };
    let send = cut.map_or(count, |p| count * p / 100);
    if method == "GET" {
        let _ = match pace {
            None => send_file(&file, out, start, send),
            Some((link, rate)) => send_paced(&file, out, start, send, link, rate),
        };
    }
    status
}

/// [`send_file`] in 64 KiB pieces, each sent when the link shared by all paced requests is free:
/// every piece books `len / rate` seconds of it.
fn send_paced(
    file: &std::fs::File,
    out: &TcpStream,
    offset: u64,
    count: u64,
    link: &Mutex<Instant>,
    rate: u64,
) -> std::io::Result<()> {
    const PIECE: u64 = 64 * 1024;
    let mut at = 0;
    while at < count {
        let n = PIECE.min(count - at);
        let due = {
            let mut free = link.lock().map_err(|_| std::io::Error::other("poisoned"))?;
            let start = (*free).max(Instant::now());
            *free = start + Duration::from_secs_f64(n as f64 / rate as f64);
            *free
        };
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        send_file(file, out, offset + at, n)?;
        at += n;
    }
    Ok(())
}

/// Sends `count` bytes of `file` from `offset` with sendfile(2), as production image servers do
/// (nginx's `sendfile on`): the bytes go from the page cache to the socket without passing through
/// this process, so the benchmark's server leaves the receiver as much of the CPU as a real one.
/// (`std::io::copy` on a `Take<File>` did read and send in 8 KiB pieces here, per strace.)
fn send_file(file: &std::fs::File, out: &TcpStream, offset: u64, count: u64) -> std::io::Result<()> {
    let mut offset = libc::off_t::try_from(offset).map_err(std::io::Error::other)?;
    let mut left = count;
    while left > 0 {
        let chunk = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
        // SAFETY: both descriptors are open for the call's duration and `offset` is a valid off_t.
        let sent = unsafe { libc::sendfile(out.as_raw_fd(), file.as_raw_fd(), &mut offset, chunk) };
        match sent {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n if n > 0 => left -= n as u64,
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn ranges() {
        let check = |h: &str, expected: Option<Result<(u64, u64), ()>>| {
            assert_eq!(parse_range(h, 1000), expected, "{h}")
        };
        check("bytes=0-99", Some(Ok((0, 99))));
        check("bytes=900-", Some(Ok((900, 999))));
        check("bytes=-100", Some(Ok((900, 999))));
        check("bytes=990-5000", Some(Ok((990, 999))));
        check("bytes=1000-", Some(Err(())));
        check("bytes=5-4", Some(Err(())));
        check("bytes=0-1,5-6", None);
        check("items=0-1", None);
        check("bytes=x-1", None);
    }

    #[test]
    fn rates() {
        assert_eq!(rate("/root.squashfs"), ("/root.squashfs", None));
        assert_eq!(rate("/rate/2048/stream/root.squashfs"), ("/stream/root.squashfs", Some(2048 * 1024)));
        assert_eq!(rate("/rate/0/x"), ("/rate/0/x", None));
        assert_eq!(rate("/rate/x/y"), ("/rate/x/y", None));
        assert_eq!(fault(rate("/rate/8/fault/reset-once-at-5/a").0), ("/a", Some(5)));
    }

    #[test]
    fn faults() {
        assert_eq!(fault("/root.squashfs"), ("/root.squashfs", None));
        assert_eq!(fault("/fault/reset-once-at-30/root.squashfs"), ("/root.squashfs", Some(30)));
        assert_eq!(fault("/fault/reset-once-at-30/a/b"), ("/a/b", Some(30)));
        assert_eq!(fault("/fault/reset-once-at-300/x"), ("/fault/reset-once-at-300/x", None));
        assert_eq!(fault("/fault/reset-once-at-x/x"), ("/fault/reset-once-at-x/x", None));
    }

    #[test]
    fn serves_files_ranges_and_404_over_tcp() {
        let dir = std::env::temp_dir().join(format!("xtask-httpd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), b"0123456789").unwrap();
        let server = serve(&dir).unwrap();
        let get = |req: &str| {
            let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let r = get("GET /f HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n0123456789"), "{r}");
        let r = get("GET /f HTTP/1.1\r\nRange: bytes=3-5\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 206") && r.contains("Content-Range: bytes 3-5/10") && r.ends_with("345"),
            "{r}"
        );
        let r = get("GET /missing HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 404 Not Found"), "{r}");
        let r = get("GET /../etc/passwd HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        let r = get("HEAD /f HTTP/1.1\r\n\r\n");
        assert!(r.contains("Content-Length: 10") && r.ends_with("\r\n\r\n"), "{r}");
        let etag = r.lines().find_map(|l| l.strip_prefix("ETag: ")).unwrap().to_owned();
        let r = get(&format!("GET /f HTTP/1.1\r\nRange: bytes=3-\r\nIf-Range: {etag}\r\n\r\n"));
        assert!(r.starts_with("HTTP/1.1 206") && r.ends_with("3456789"), "{r}");
        let r = get("GET /f HTTP/1.1\r\nRange: bytes=3-\r\nIf-Range: \"other\"\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("0123456789"),
            "a changed file is sent whole: {r}"
        );
        let r = get("GET /fault/reset-once-at-50/f HTTP/1.1\r\n\r\n");
        assert!(r.contains("Content-Length: 10") && r.ends_with("\r\n\r\n01234"), "cut at 50 %: {r}");
        let r = get("GET /fault/reset-once-at-50/f HTTP/1.1\r\n\r\n");
        assert!(r.ends_with("0123456789"), "only once: {r}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
