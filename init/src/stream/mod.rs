//! The streamed root (`modloop_stream=yes`): boot from the image while it is still arriving.
//!
//! PID 1's part is [`start`]: fetch and check the manifest (`manifest.rs`), start the block server
//! (`server.rs`, a child process), attach its socket to the kernel's NBD driver (`nbd.rs`) and put
//! a device-mapper linear device over that (`sys::dm`), from which the root is mounted. Whatever
//! fails before the server answers falls back to the full download, saying why; a manifest or
//! image that contradicts itself or the cmdline stops the boot. `chunks.rs` is the server's
//! bookkeeping.

mod chunks;
pub mod manifest;
mod nbd;
mod server;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmdline::{ImageConfig, Url, Verify};
use crate::fetch::{self, hex, mib, FetchError};
use crate::sys;

pub use server::run as serve;

/// The image, as the full download would leave it: the server fills it chunk by chunk.
const IMAGE_PATH: &str = "/run/netinit/image/root.squashfs";
/// The verified manifest, for the server.
const MANIFEST_PATH: &str = "/run/netinit/image/root.squashfs.chunks";
/// The server's process id, for `kill -USR1`.
pub const PID_PATH: &str = "/run/netinit/stream.pid";
/// RAM left over besides the image, at least, for the streamed root to start.
const MARGIN: u64 = 128 << 20;
/// The longest manifest read: 64 bytes a chunk, a 64 GiB image in 1 MiB chunks.
const MANIFEST_LIMIT: u64 = 5 << 20;

/// Why a streamed boot must not go on, nor fall back: the servers' image is not the manifest's.
#[derive(Debug, thiserror::Error)]
#[error("stream: {url} does not match its manifest {url}.chunks: {why}")]
pub struct StreamError {
    pub url: Url,
    pub why: String,
}

impl StreamError {
    pub fn hint(&self) -> &'static str {
        "write the manifest again from the image the servers hold (netinit manifest IMAGE) and copy both to every mirror"
    }
}

/// Starts the streamed root. `Ok(Some)`: the root's device is live (its path in `Fetched::path`);
/// `Ok(None)`: it could not start, the reason is logged, and the caller downloads the image.
pub fn start(image: &ImageConfig) -> Result<Option<fetch::Fetched>, StreamError> {
    match try_start(image) {
        Ok(started) => Ok(Some(started)),
        Err(Start::Refuse(e)) => Err(e),
        Err(Start::Fallback(why)) => {
            log::warn!("stream: falling back to the full download: {why}");
            Ok(None)
        }
    }
}

enum Start {
    Fallback(String),
    Refuse(StreamError),
}

fn fallback(why: impl std::fmt::Display) -> Start {
    Start::Fallback(why.to_string())
}

fn try_start(image: &ImageConfig) -> Result<fetch::Fetched, Start> {
    let started = sys::uptime();
    if image.verify == Verify::Required && !fetch::has_trusted_keys() {
        // The download says so as the boot's error.
        return Err(fallback("modloop_verify=yes, but this initramfs has no trusted keys"));
    }
    let mut driver = nbd::Driver::open().map_err(fallback)?;
    if !Path::new("/dev/mapper/control").exists() {
        return Err(fallback(
            "the kernel has no dm-mod driver (no /dev/mapper/control; is dm_mod in modules-list?)",
        ));
    }
    let (url, manifest) = fetch_manifest(image)?;
    let refuse = |why: String| Start::Refuse(StreamError { url: url.clone(), why });
    if let Some(want) = image.sha256.filter(|d| *d != manifest.sha256) {
        return Err(refuse(format!(
            "its sha256 is {}, but modloop_sha256= says {}",
            hex(&manifest.sha256),
            hex(&want)
        )));
    }
    log::info!(
        "stream: manifest {url}.chunks: {} chunks of {}, {}, sha256 {}",
        manifest.chunks.len(),
        mib(manifest.chunk_size),
        mib(manifest.size),
        hex(&manifest.sha256)
    );
    if manifest.size % 512 != 0 || manifest.size == 0 {
        return Err(fallback(format!(
            "the image's size, {} bytes, is not a whole number of 512-byte sectors",
            manifest.size
        )));
    }
    let available = mem_available().map_err(|e| fallback(format!("/proc/meminfo: {e}")))?;
    if available < manifest.size.saturating_add(MARGIN) {
        return Err(fallback(format!(
            "{} of RAM available, less than the image's {} and {} more",
            mib(available),
            mib(manifest.size),
            mib(MARGIN)
        )));
    }
    fetch::mount_image_dir().map_err(fallback)?;
    // The image tmpfs takes half the RAM (tmpfs's default), as for the full download.
    match sys::fs_free(Path::new(fetch::IMAGE_DIR)) {
        Ok(room) if room < manifest.size => {
            unmount_image_dir();
            return Err(fallback(format!(
                "the image is {} but the RAM disk has {} free",
                mib(manifest.size),
                mib(room)
            )));
        }
        _ => {}
    }
    let server = Server::start(&manifest).map_err(|e| {
        unmount_image_dir();
        fallback(e)
    })?;
    let pid = server.child.id();
    match server.wait_ready(fetch::small_budget(image).saturating_add(Duration::from_secs(30))) {
        Ready::Yes => {}
        Ready::Mismatch(why) => {
            server.stop();
            return Err(refuse(why));
        }
        Ready::No(why) => {
            server.stop();
            return Err(fallback(format!("the block server did not start: {why}")));
        }
    }
    let block = if manifest.size % 4096 == 0 { 4096 } else { 512 };
    let attached =
        driver.connect(&server.nbd, manifest.size, block).map_err(|e| format!("attaching NBD: {e}"));
    let device = attached.and_then(|index| {
        let nbd = format!("/dev/nbd{index}");
        // devtmpfs makes the node of the device the connect created a moment after it.
        let made = sys::retry_not_found(|| std::fs::metadata(&nbd))
            .map_err(|e| format!("{nbd}: {e}"))
            .and_then(|node| {
                let dm = sys::dm::Control::open().map_err(|e| format!("/dev/mapper/control: {e}"))?;
                let backing = sys::dm::DevNum::from_rdev(node.rdev());
                dm.create_linear(server::DM_NAME, manifest.size / 512, backing)
                    .map_err(|e| format!("creating the device-mapper device over {nbd}: {e}"))
            });
        if made.is_err() {
            let _ = driver.disconnect(index);
        }
        made.map(|n| (index, n))
    });
    let (index, dm) = match device {
        Ok(d) => d,
        Err(why) => {
            server.stop();
            return Err(fallback(why));
        }
    };
    let told = server.control.try_clone().and_then(|fd| writeln!(std::fs::File::from(fd), "nbd {index}"));
    if let Err(e) = told {
        log::warn!("stream: telling the block server its device: {e}; it will not hand the root over to RAM");
    }
    let path = PathBuf::from(format!("/dev/dm-{}", dm.minor));
    log::info!(
        "stream: serving {url} from /dev/nbd{index} through {} (block server pid {pid})",
        path.display()
    );
    if let Err(e) = std::fs::write(PID_PATH, format!("{pid}\n")) {
        log::warn!("stream: writing {PID_PATH}: {e}");
    }
    Ok(fetch::Fetched {
        path,
        url,
        size: manifest.size,
        elapsed: sys::uptime().saturating_sub(started),
        attempts: 1,
        sha256: Some(hex(&manifest.sha256)),
    })
}

/// The manifest of the first mirror that has a usable one, checked as the image would be (signed
/// when signatures are checked).
fn fetch_manifest(image: &ImageConfig) -> Result<(Url, manifest::Manifest), Start> {
    let extras = fetch::Extras::for_image(image).map_err(fallback)?;
    let mut last = String::from("no image URL");
    for url in &image.urls {
        let Ok(at) = Url::parse(&format!("{}.chunks", url.as_str())) else { continue };
        let got = match extras.get(&at, MANIFEST_LIMIT) {
            Ok(got) => got,
            Err(
                e @ (FetchError::Unsigned { .. }
                | FetchError::UnknownKey { .. }
                | FetchError::BadSignature { .. }),
            ) => {
                return Err(fallback(format!("{e}; the image's own signature is checked instead")));
            }
            Err(e) => {
                last = format!("no manifest: {e}");
                continue;
            }
        };
        let text = String::from_utf8_lossy(&got.bytes);
        return match manifest::Manifest::parse(&text) {
            Ok(m) => Ok((url.clone(), m)),
            Err(e @ (manifest::ManifestError::Count { .. } | manifest::ManifestError::ChunkSize(_))) => {
                Err(Start::Refuse(StreamError {
                    url: url.clone(),
                    why: format!("the manifest contradicts itself: {e}"),
                }))
            }
            Err(e) => Err(fallback(format!("{at} is not a manifest: {e}"))),
        };
    }
    Err(fallback(last))
}

fn mem_available() -> std::io::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| std::io::Error::other("no MemAvailable line"))
}

fn unmount_image_dir() {
    let _ = std::fs::remove_file(IMAGE_PATH);
    let _ = sys::unmount_detach(Path::new(fetch::IMAGE_DIR));
}

/// The block server as PID 1 holds it: the process, and PID 1's ends of its two sockets.
struct Server {
    child: std::process::Child,
    /// The kernel's end of the NBD socket, until it is attached.
    nbd: OwnedFd,
    control: OwnedFd,
}

enum Ready {
    Yes,
    Mismatch(String),
    No(String),
}

impl Server {
    fn start(manifest: &manifest::Manifest) -> Result<Server, String> {
        use std::os::unix::process::CommandExt;
        std::fs::write(MANIFEST_PATH, manifest.text())
            .map_err(|e| format!("writing {MANIFEST_PATH}: {e}"))?;
        let file = std::fs::File::create(IMAGE_PATH).map_err(|e| format!("creating {IMAGE_PATH}: {e}"))?;
        file.set_len(manifest.size).map_err(|e| format!("sizing {IMAGE_PATH}: {e}"))?;
        let (nbd, theirs) = sys::socket_pair().map_err(|e| format!("socketpair: {e}"))?;
        let (control, their_control) = sys::socket_pair().map_err(|e| format!("socketpair: {e}"))?;
        let child = std::process::Command::new("/proc/self/exe")
            .arg0("@netinit-stream")
            .arg("stream-serve")
            .stdin(theirs)
            .stdout(their_control)
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting the block server: {e}"))?;
        Ok(Server { child, nbd, control })
    }

    /// The server's first line, within `budget`.
    fn wait_ready(&self, budget: Duration) -> Ready {
        match sys::poll_readable(&[&self.control], budget) {
            Ok(r) if r.first() == Some(&true) => {}
            Ok(_) => return Ready::No(format!("no answer within {}s", budget.as_secs())),
            Err(e) => return Ready::No(e.to_string()),
        }
        let mut line = String::new();
        if let Ok(fd) = self.control.try_clone() {
            let _ = BufReader::new(std::fs::File::from(fd)).read_line(&mut line);
        }
        let line = line.trim();
        match line.split_once(": ") {
            _ if line == "ready" => Ready::Yes,
            Some(("mismatch", why)) => Ready::Mismatch(why.to_owned()),
            Some(("error", why)) => Ready::No(why.to_owned()),
            _ if line.is_empty() => Ready::No("it exited".into()),
            _ => Ready::No(format!("it said {line:?}")),
        }
    }

    /// Stops the server (the process this started), and frees the image's tmpfs.
    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        unmount_image_dir();
    }
}
