//! A small HTTP/1.1 file server for the VM tests: GET and HEAD of the files in one directory, with
//! `Range: bytes=` (206) and 404, one thread per connection, `Connection: close`. It listens on
//! 127.0.0.1 only; qemu's user network shows it to the guest as 10.0.2.2. It serves real HTTP over
//! real TCP; the init cannot tell it from any other server.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

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
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || handle(stream, &dir));
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

/// Serves one request; returns `METHOD /path STATUS`, or `None` when the request was unreadable.
fn handle(stream: TcpStream, dir: &Path) -> Option<String> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request = String::new();
    reader.read_line(&mut request).ok()?;
    let mut range_header = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("range") {
                range_header = Some(v.trim().to_owned());
            }
        }
    }
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut out = stream;
    let path: PathBuf = dir.join(target.trim_start_matches('/'));
    let safe = !target.contains("..") && path.is_file();
    let status = if method != "GET" && method != "HEAD" {
        respond(&mut out, 405, "Method Not Allowed", &[], None)
    } else if !safe {
        respond(&mut out, 404, "Not Found", &[], None)
    } else {
        serve_file(&mut out, &path, &method, range_header.as_deref())
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

fn serve_file(out: &mut TcpStream, path: &Path, method: &str, range: Option<&str>) -> u16 {
    let Ok(mut file) = std::fs::File::open(path) else { return respond(out, 404, "Not Found", &[], None) };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let accept = "Accept-Ranges: bytes".to_string();
    let (status, start, count) = match range.and_then(|r| parse_range(r, len)) {
        Some(Ok((a, b))) => {
            let headers = [accept, format!("Content-Range: bytes {a}-{b}/{len}")];
            respond(out, 206, "Partial Content", &headers, Some(b - a + 1));
            (206, a, b - a + 1)
        }
        Some(Err(())) => {
            return respond(
                out,
                416,
                "Range Not Satisfiable",
                &[format!("Content-Range: bytes */{len}")],
                None,
            )
        }
        None => {
            respond(out, 200, "OK", &[accept], Some(len));
            (200, 0, len)
        }
    };
    if method == "GET" && file.seek(SeekFrom::Start(start)).is_ok() {
        let _ = std::io::copy(&mut file.take(count), out);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

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
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
