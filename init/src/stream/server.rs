//! The block server: `@netinit-stream` (`netinit stream-serve`), a child of PID 1 that answers the
//! kernel's NBD requests for the root image while it arrives, and moves the root to a loop device
//! over the RAM copy once every chunk is in.
//!
//! Its stdin is the server's end of the NBD socket (PID 1 hands the other end to the kernel); its
//! stdout is the control socket to PID 1: it writes one line, `ready` (chunk 0 is in and the
//! server's size is the manifest's), `mismatch: WHY` (this is not the manifest's image) or
//! `error: WHY`, and reads one, `nbd N` (the device PID 1 attached it to).
//!
//! Threads: one reader of requests, which answers reads whose chunks are in; [`FETCHERS`]
//! fetchers, one of which only ever fetches chunks a read is waiting for; one that prints the
//! status on SIGUSR1; and the main thread, which waits for the last chunk and does the hand-over.
//! Everything it needs after switch_root (when the initramfs's paths are gone from its view) is
//! opened or resolved before it says `ready`: the image file, `/dev` as a directory handle, the
//! loop and device-mapper control devices, the netlink socket, the servers' addresses, the CAs.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::chunks::{self, Chunks, Read as Waiting, Taken};
use super::manifest::Manifest;
use super::nbd;
use crate::cmdline::{self, Url};
use crate::fetch::{self, hex, http, mib, retry::RetryPolicy, RangeError};
use crate::sys;

/// Chunk fetches at once: enough to fill a link whose round trip is long against a chunk's
/// transfer, few enough that a read that misses does not queue behind many prefetches.
const FETCHERS: usize = 3;
/// The device-mapper device the root is mounted from.
pub const DM_NAME: &str = "netinit-root";

struct Shared {
    manifest: Manifest,
    urls: Vec<Url>,
    client: http::Client,
    policy: RetryPolicy,
    budget: Duration,
    image: File,
    /// The mirror to try first: the last one that gave a good chunk.
    preferred: AtomicUsize,
    state: Mutex<Chunks>,
    wake: Condvar,
    replies: Mutex<File>,
    disconnected: AtomicBool,
    /// Whether a chunk could not be written, said once.
    local_failure: AtomicBool,
    started: Duration,
}

fn lock(m: &Mutex<Chunks>) -> MutexGuard<'_, Chunks> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `netinit stream-serve`: returns the exit status (0 after the hand-over).
pub fn run() -> i32 {
    crate::klog::init(true);
    // SAFETY: PID 1 started this process with the NBD socket on 0 and the control socket on 1,
    // and nothing else in this process owns those descriptors.
    let (nbd_socket, control) = unsafe { (File::from_raw_fd(0), File::from_raw_fd(1)) };
    let mut control_out = control;
    match serve(nbd_socket, &mut control_out) {
        Ok(()) => 0,
        Err(why) => {
            let _ = writeln!(control_out, "error: {why}");
            log::error!("stream: {why}");
            1
        }
    }
}

fn serve(nbd_socket: File, control: &mut File) -> Result<(), String> {
    let text = std::fs::read_to_string(super::MANIFEST_PATH)
        .map_err(|e| format!("{}: {e}", super::MANIFEST_PATH))?;
    let manifest = Manifest::parse(&text).map_err(|e| format!("{}: {e}", super::MANIFEST_PATH))?;
    let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(|e| format!("/proc/cmdline: {e}"))?;
    let image_cfg = cmdline::parse(&cmdline).config.image;
    if image_cfg.urls.is_empty() {
        return Err("no modloop= URL on the kernel command line".into());
    }
    let image = File::options()
        .read(true)
        .write(true)
        .open(super::IMAGE_PATH)
        .map_err(|e| format!("{}: {e}", super::IMAGE_PATH))?;
    for failed in sys::harden_storage_daemon() {
        log::warn!("stream: {failed}; the server is less protected than it should be");
    }
    sys::block_signal(libc::SIGUSR1);
    let dev = sys::open_dir(Path::new("/dev")).map_err(|e| format!("/dev: {e}"))?;
    let loop_control = File::options()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(|e| format!("/dev/loop-control: {e}"))?;
    let dm = sys::dm::Control::open().map_err(|e| format!("/dev/mapper/control: {e}"))?;
    let mut driver = nbd::Driver::open().map_err(|e| e.to_string())?;
    let client = http::Client::pinned(&http::Timeouts::default(), &image_cfg.proxy, &image_cfg.urls);
    let sizes = (0..manifest.chunks.len()).map(|i| manifest.range(i)).map(|(a, b)| b - a).collect();
    let replies = nbd_socket.try_clone().map_err(|e| format!("the NBD socket: {e}"))?;
    let shared = Arc::new(Shared {
        urls: image_cfg.urls.clone(),
        client,
        policy: RetryPolicy::with_retries(image_cfg.retries),
        budget: fetch::small_budget(&image_cfg),
        image,
        preferred: AtomicUsize::new(0),
        // The prefetch order waits for chunk 0's superblock.
        state: Mutex::new(Chunks::new(sizes, Vec::new())),
        wake: Condvar::new(),
        replies: Mutex::new(replies),
        disconnected: AtomicBool::new(false),
        local_failure: AtomicBool::new(false),
        started: sys::uptime(),
        manifest,
    });

    // Chunk 0 first: it says whether the servers hold the manifest's image (the Content-Range's
    // total is the image's size, the bytes are the chunk), and its superblock orders the prefetch.
    let first = match fetch_chunk(&shared, 0) {
        Ok(bytes) => bytes,
        Err(Failure::Mismatch(why)) => {
            let _ = writeln!(control, "mismatch: {why}");
            return Ok(());
        }
        Err(Failure::Transfer(why) | Failure::Local(why)) => return Err(why),
    };
    shared.image.write_all_at(&first, 0).map_err(|e| format!("{}: {e}", super::IMAGE_PATH))?;
    {
        let m = &shared.manifest;
        let order = chunks::prefetch_order(m.chunks.len(), m.chunk_size, chunks::squashfs_metadata(&first));
        let mut state = lock(&shared.state);
        state.prefetch_in(order);
        state.mark_have(0);
        state.fetched += first.len() as u64;
    }
    writeln!(control, "ready").map_err(|e| format!("the control socket: {e}"))?;

    // Reads may come as soon as PID 1 attaches the socket, before it says which device it is.
    let reader = {
        let s = shared.clone();
        std::thread::Builder::new().name("nbd-reader".into()).spawn(move || read_requests(&s, nbd_socket))
    }
    .map_err(|e| format!("starting the reader: {e}"))?;
    for n in 0..FETCHERS {
        let s = shared.clone();
        std::thread::Builder::new()
            .name(format!("fetch-{n}"))
            .spawn(move || fetcher(&s, n == 0))
            .map_err(|e| format!("starting a fetcher: {e}"))?;
    }
    {
        let s = shared.clone();
        let _ = std::thread::Builder::new().name("status".into()).spawn(move || loop {
            sys::wait_signal(libc::SIGUSR1);
            log::info!("{}", status_line(&s));
        });
    }

    let mut line = String::new();
    let _ = BufReader::new(&*control).read_line(&mut line);
    let Some(index) = line.trim().strip_prefix("nbd ").and_then(|n| n.parse::<u32>().ok()) else {
        // PID 1 could not attach the device and went on without it.
        return Err("PID 1 did not attach the NBD device; stopping".into());
    };

    // Wait for the last chunk; a chunk that failed every attempt waits for a read to ask again.
    {
        let mut state = lock(&shared.state);
        while !state.complete() && !shared.disconnected.load(Ordering::Relaxed) {
            state = shared.wake.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if !state.complete() {
            log::warn!("stream: the kernel disconnected NBD before the image was in; stopping");
            return Ok(());
        }
    }
    let elapsed = sys::uptime().saturating_sub(shared.started);
    let (fetched, on_demand) = {
        let state = lock(&shared.state);
        (state.fetched, state.on_demand)
    };
    let hashing = sys::uptime();
    let whole =
        image_sha256(&shared.image, shared.manifest.size).map_err(|e| format!("hashing the image: {e}"))?;
    let hashed = sys::uptime().saturating_sub(hashing);
    let n = shared.manifest.chunks.len();
    if whole != shared.manifest.sha256 {
        log::error!(
            "stream: all {n} chunks are in, but the image's SHA-256 is {}, the manifest says {}; staying on NBD",
            hex(&whole),
            hex(&shared.manifest.sha256)
        );
        return park(&reader);
    }
    log::info!(
        "stream: all {n} chunks fetched and verified in {:.1}s ({}, {} on demand); the image's SHA-256 matches (hashed in {:.1}s)",
        elapsed.as_secs_f32(),
        mib(fetched),
        mib(on_demand),
        hashed.as_secs_f32()
    );
    match hand_over(&shared, &dm, &loop_control, &dev) {
        Ok(loop_path) => {
            if let Err(e) = driver.disconnect(index) {
                log::warn!("stream: disconnecting /dev/nbd{index}: {e}; it stays attached, unused");
            }
            log::info!(
                "stream: hand-over: the root now reads from {loop_path} (the RAM copy); NBD disconnected"
            );
            for _ in 0..100 {
                if reader.is_finished() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        }
        Err(why) => {
            log::error!("stream: the hand-over to a loop device failed: {why}; the root stays on NBD, served from RAM");
            park(&reader)
        }
    }
}

/// Serves from RAM until the kernel lets go of the device.
fn park(reader: &std::thread::JoinHandle<()>) -> Result<(), String> {
    while !reader.is_finished() {
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}

/// A loop device over the RAM copy, swapped in under the device-mapper device: suspend (the
/// kernel waits for the reads in flight, which the reader answers from RAM), load, resume.
fn hand_over(
    s: &Shared,
    dm: &sys::dm::Control,
    loop_control: &File,
    dev: &OwnedFd,
) -> Result<String, String> {
    let open = |n: u32| sys::retry_not_found(|| sys::open_at(dev, &format!("loop{n}")));
    let device = sys::loop_attach(&s.image, Path::new(super::IMAGE_PATH), loop_control, &open)
        .map_err(|e| format!("attaching a loop device: {e}"))?;
    let number = sys::device_number(device.file()).map_err(|e| format!("{}: {e}", device.path.display()))?;
    let sectors = s.manifest.size / 512;
    dm.suspend(DM_NAME).map_err(|e| format!("suspending {DM_NAME}: {e}"))?;
    let loaded = dm.load_linear(DM_NAME, sectors, number);
    // Resume whatever happened: with the new table if it loaded, else with the old one.
    let resumed = dm.resume(DM_NAME);
    loaded.map_err(|e| format!("loading the table over {}: {e}", device.path.display()))?;
    resumed.map_err(|e| format!("resuming {DM_NAME}: {e}"))?;
    Ok(device.path.display().to_string())
}

fn image_sha256(file: &File, size: u64) -> std::io::Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < size {
        let n = buf.len().min((size - at) as usize);
        file.read_exact_at(&mut buf[..n], at)?;
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(h.finalize().into())
}

fn status_line(s: &Shared) -> String {
    let state = lock(&s.state);
    let have = state.fetched;
    format!(
        "stream: status: {} of {} fetched ({} on demand), {} of {} chunks{}",
        mib(have).trim_end_matches(" MiB"),
        mib(s.manifest.size),
        mib(state.on_demand),
        state.have(),
        state.count(),
        match state.failed_count() {
            0 => String::new(),
            n => format!(", {n} failed every attempt"),
        }
    )
}

/// Reads requests until the kernel disconnects.
fn read_requests(s: &Shared, mut socket: File) {
    let mut header = [0u8; nbd::REQUEST_LEN];
    loop {
        if let Err(e) = socket.read_exact(&mut header) {
            if e.kind() != std::io::ErrorKind::UnexpectedEof {
                log::warn!("stream: reading the NBD socket: {e}");
            }
            break;
        }
        let Some(req) = nbd::Request::parse(&header) else {
            log::error!("stream: a request with a bad magic number: the NBD stream is out of step; stopping");
            break;
        };
        match req.cmd {
            nbd::CMD_READ => {
                let end = req.from.checked_add(u64::from(req.len));
                if end.is_none_or(|e| e > s.manifest.size) {
                    send(s, req.handle, libc::EINVAL as u32, None);
                    continue;
                }
                let chunks = s.manifest.chunks_of(req.from, u64::from(req.len));
                let ready = lock(&s.state).read(req.handle, req.from, req.len, chunks);
                match ready {
                    Some(read) => answer(s, &read),
                    None => s.wake.notify_all(),
                }
            }
            nbd::CMD_DISC => break,
            nbd::CMD_FLUSH => send(s, req.handle, 0, None),
            nbd::CMD_WRITE => {
                // A read-only device gets none; if one comes, its payload still follows.
                let _ = std::io::copy(&mut (&socket).take(u64::from(req.len)), &mut std::io::sink());
                send(s, req.handle, libc::EPERM as u32, None);
            }
            _ => send(s, req.handle, libc::EINVAL as u32, None),
        }
    }
    s.disconnected.store(true, Ordering::Relaxed);
    s.wake.notify_all();
}

/// Answers a read whose chunks are in, from the RAM copy.
fn answer(s: &Shared, read: &Waiting) {
    let mut data = vec![0u8; read.len as usize];
    match s.image.read_exact_at(&mut data, read.from) {
        Ok(()) => send(s, read.handle, 0, Some(&data)),
        Err(e) => {
            log::error!("stream: reading {} at {}: {e}", super::IMAGE_PATH, read.from);
            send(s, read.handle, libc::EIO as u32, None);
        }
    }
}

fn send(s: &Shared, handle: [u8; 8], error: u32, data: Option<&[u8]>) {
    let mut out = s.replies.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let sent =
        out.write_all(&nbd::reply(handle, error)).and_then(|()| data.map_or(Ok(()), |d| out.write_all(d)));
    if let Err(e) = sent {
        if !s.disconnected.load(Ordering::Relaxed) {
            log::warn!("stream: answering the kernel: {e}");
        }
    }
}

/// One fetcher: takes the next chunk, fetches and checks it, keeps it, answers the reads it completes.
fn fetcher(s: &Shared, demand_only: bool) {
    loop {
        let taken: Taken = {
            let mut state = lock(&s.state);
            loop {
                if state.complete() || s.disconnected.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(t) = state.take(demand_only) {
                    break t;
                }
                state = s.wake.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        let got = fetch_chunk(s, taken.index).and_then(|bytes| {
            let (start, _) = s.manifest.range(taken.index);
            s.image
                .write_all_at(&bytes, start)
                .map_err(|e| Failure::Local(format!("writing {}: {e}", super::IMAGE_PATH)))
        });
        let (ready, failed) = {
            let mut state = lock(&s.state);
            match &got {
                Ok(()) => (state.done(taken), Vec::new()),
                Err(_) => (Vec::new(), state.failed(taken.index)),
            }
        };
        if let Err(Failure::Local(why)) = &got {
            // Said once: every chunk after it would say the same.
            if !s.local_failure.swap(true, Ordering::Relaxed) {
                log::error!("stream: {why}; the reads of chunks not yet in fail with an I/O error");
            }
        } else if let Err(Failure::Transfer(why) | Failure::Mismatch(why)) = &got {
            log::error!(
                "stream: chunk {} failed every attempt ({why}); {} waiting reads fail with an I/O error",
                taken.index,
                failed.len()
            );
        }
        ready.iter().for_each(|r| answer(s, r));
        failed.iter().for_each(|r| send(s, r.handle, libc::EIO as u32, None));
        let complete = lock(&s.state).complete();
        if complete || !failed.is_empty() || !ready.is_empty() {
            s.wake.notify_all();
        }
    }
}

enum Failure {
    /// No server gave the manifest's bytes (another image?).
    Mismatch(String),
    Transfer(String),
    /// The chunk could not be kept (the RAM disk is full).
    Local(String),
}

/// Chunk `index`, checked against the manifest, with the download's attempts over the mirrors:
/// after a failure the next mirror, after a bad chunk the next mirror at once.
fn fetch_chunk(s: &Shared, index: usize) -> Result<Vec<u8>, Failure> {
    let range = s.manifest.range(index);
    let n = s.urls.len().max(1);
    let mut mirror = s.preferred.load(Ordering::Relaxed) % n;
    let mut last = Failure::Transfer("no attempt".into());
    for attempt in 1..=s.policy.attempts {
        let url = &s.urls[mirror];
        let next = &s.urls[(mirror + 1) % n];
        match fetch::get_range(&s.client, url, range, s.manifest.size, s.budget) {
            Ok(bytes) => match s.manifest.check(index, &bytes) {
                Ok(()) => {
                    s.preferred.store(mirror, Ordering::Relaxed);
                    return Ok(bytes);
                }
                Err(got) => {
                    let want = s.manifest.chunks.get(index).map(|d| hex(d)).unwrap_or_default();
                    log::warn!(
                        "stream: chunk {index} of {url} failed verification (sha256 {}, the manifest says {want}); trying {next}",
                        hex(&got)
                    );
                    last = Failure::Mismatch(format!(
                        "chunk {index} of {url} has sha256 {}, the manifest says {want}",
                        hex(&got)
                    ));
                    mirror = (mirror + 1) % n;
                    continue;
                }
            },
            Err(RangeError::OtherImage(why)) => {
                log::warn!("stream: chunk {index}: {why}; trying {next}");
                last = Failure::Mismatch(why);
            }
            Err(RangeError::Refused(why)) => {
                log::warn!("stream: chunk {index}: {why}; trying {next}");
                last = Failure::Transfer(why);
            }
            Err(RangeError::Transfer(why)) => {
                last = Failure::Transfer(why.clone());
                if attempt < s.policy.attempts {
                    let wait = s.policy.next_delay(attempt, sys::random_u64());
                    log::warn!("stream: chunk {index}: {why}; trying {next} in {:.1}s", wait.as_secs_f32());
                    std::thread::sleep(wait);
                }
            }
        }
        mirror = (mirror + 1) % n;
    }
    Err(last)
}
