//! The test HTTPS server of the scenarios: `openssl s_server -WWW` serving the test files with a
//! certificate from the test CA, on 127.0.0.1, stopped when dropped.

use std::path::Path;
use std::time::Duration;

use crate::host::Result;
use crate::image;

/// A real HTTPS server for the scenarios: `openssl s_server -WWW` serving the test files with a
/// certificate from the test CA. Dropping it stops it.
pub struct HttpsServer {
    child: std::process::Child,
    pub port: u16,
}

impl HttpsServer {
    pub fn start(www: &Path, tls: &image::TestTls) -> Result<HttpsServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-WWW", "-quiet", "-accept", &format!("127.0.0.1:{port}")])
            .arg("-cert")
            .arg(&tls.server_cert)
            .arg("-key")
            .arg(&tls.server_key)
            .current_dir(www)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("starting openssl s_server: {e}"))?;
        // Wait until it accepts connections.
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(HttpsServer { child, port });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("openssl s_server did not start listening".into())
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
