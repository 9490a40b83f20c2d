//! The scenarios' recorders, in-process on 127.0.0.1 (the guest on qemu's user network reaches them
//! as 10.0.2.2): an HTTP server that answers every POST with 204 and writes each body as one line of
//! a file (the boot reports, `record: reports`), and a UDP listener that writes every datagram it
//! receives (the netconsole stream, `record: netconsole`). Each runs on a thread of its own until it
//! is dropped. It is not a general HTTP server: one request per connection, the body by
//! `Content-Length`, at most 1 MiB.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One recorder: its port, the file it writes, and the thread's stop flag.
pub struct Recorder {
    pub port: u16,
    pub file: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn append(file: &Path, bytes: &[u8]) {
    let written = std::fs::OpenOptions::new().create(true).append(true).open(file).and_then(|mut f| {
        f.write_all(bytes)?;
        if !bytes.ends_with(b"\n") {
            f.write_all(b"\n")?;
        }
        Ok(())
    });
    if let Err(e) = written {
        eprintln!("xtask: recorder: writing {}: {e}", file.display());
    }
}

/// One request: its body, when it is a POST with a `Content-Length` of at most 1 MiB.
fn read_post(stream: &TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let post = line.starts_with("POST ");
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    if !post || length > 1 << 20 {
        return Ok(None);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some(body))
}

/// The reports' server: every POST body becomes a line of `file`, answered `204 No Content`.
pub fn http(file: PathBuf) -> std::io::Result<Recorder> {
    let _ = std::fs::remove_file(&file);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, path) = (stop.clone(), file.clone());
    let thread = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let answer = match read_post(&stream) {
                        Ok(Some(body)) => {
                            append(&path, &body);
                            "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
                        }
                        _ => "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    };
                    let _ = stream.write_all(answer.as_bytes());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    eprintln!("xtask: recorder: accept: {e}");
                    std::thread::sleep(Duration::from_millis(100))
                }
            }
        }
    });
    Ok(Recorder { port, file, stop, thread: Some(thread) })
}

/// The netconsole listener: every datagram is appended to `file`.
pub fn udp(file: PathBuf) -> std::io::Result<Recorder> {
    let _ = std::fs::remove_file(&file);
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let port = socket.local_addr()?.port();
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, path) = (stop.clone(), file.clone());
    let thread = std::thread::spawn(move || {
        let mut buf = vec![0; 65536];
        while !flag.load(Ordering::Relaxed) {
            if let Ok(n) = socket.recv(&mut buf) {
                append(&path, &buf[..n]);
            }
        }
    });
    Ok(Recorder { port, file, stop, thread: Some(thread) })
}

/// A port on 127.0.0.1 where nothing listens (bound, then let go).
pub fn dead_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether `texts` are found in `held` in this order, each after the one before; the first that
/// is not.
pub fn in_order<'a>(held: &str, texts: &[&'a str]) -> Result<(), &'a str> {
    let mut at = 0;
    for text in texts {
        match held[at..].find(text) {
            Some(i) => at += i + text.len(),
            None => return Err(text),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_posts_and_datagrams() {
        let dir = std::env::temp_dir().join(format!("xtask-recorder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rec = http(dir.join("r.jsonl")).unwrap();
        for body in [r#"{"event":"network"}"#, r#"{"event":"fetched"}"#] {
            let mut s = TcpStream::connect(("127.0.0.1", rec.port)).unwrap();
            write!(s, "POST /r HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).unwrap();
            assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
        }
        let mut s = TcpStream::connect(("127.0.0.1", rec.port)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"));
        let file = rec.file.clone();
        drop(rec);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "{\"event\":\"network\"}\n{\"event\":\"fetched\"}\n"
        );

        let rec = udp(dir.join("n.log")).unwrap();
        let out = UdpSocket::bind("127.0.0.1:0").unwrap();
        out.send_to(b"netinit: hello\n", ("127.0.0.1", rec.port)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let file = rec.file.clone();
        drop(rec);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "netinit: hello\n");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(dead_port().unwrap() > 0);
    }

    #[test]
    fn texts_in_order() {
        assert_eq!(in_order("a b c", &["a", "c"]), Ok(()));
        assert_eq!(in_order("a b c", &["c", "a"]), Err("a"));
        assert_eq!(in_order("a b c", &[]), Ok(()));
        assert_eq!(in_order("aa", &["a", "a"]), Ok(()));
        assert_eq!(in_order("a", &["a", "a"]), Err("a"));
    }
}
