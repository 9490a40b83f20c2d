//! `cargo xtask bench stream`: time to the new root with the streamed root against the full
//! download, as the image grows and the boot's working set does not.
//!
//! Three root images with the same small boot (busybox and an init script) padded with 256 MiB,
//! 1 GiB and 2 GiB of incompressible bytes the boot never reads, served by the test server capped
//! at [`RATE_KIB`] KiB/s (its `/rate/` link, shared by all of a boot's requests). Each is booted N
//! times with `modloop_stream=yes` and N times without, alternating, on Debian 12's generic kernel
//! under TCG. The root's init prints the marker with the uptime; when streamed, it asks the block
//! server for its status (SIGUSR1), which says how much was fetched before the marker, and waits
//! for the server to hand the root over to RAM and exit. Per case: medians and ranges of the
//! uptime at the marker, MiB fetched before it, the seconds from the server's start to its last
//! chunk and then to hash the whole image, and the uptime of the hand-over; then, per mode, the slope of the marker's time against the image's size (s/GiB),
//! which for the streamed root must be about zero, and for the full download about 1 / bandwidth.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::bench_boot::{spread, Spread};
use crate::host::{self, Result};
use crate::{bench, httpd, image, initramfs, kernel, vm};

const KERNEL: &str = "6.1-generic";
/// The padding of the three images, MiB.
const PADS: [u64; 3] = [256, 1024, 2048];
/// The test server's cap: 20 MiB/s, a share of a data center's link per machine in a reboot storm.
const RATE_KIB: u64 = 20 * 1024;
/// Room for the largest image in the image tmpfs, which takes half the RAM (tmpfs's default).
const MEMORY_MB: u32 = 6144;

/// The bench root's init: the marker, then for a streamed root the server's status and the wait
/// for its exit (the hand-over), then power off.
const INIT: &str = r#"#!/bin/sh
export PATH=/bin
busybox mount -t proc proc /proc 2>/dev/null
echo "netinit-bench: marker uptime=$(busybox cut -d' ' -f1 /proc/uptime)"
pid=$(busybox cat /run/netinit/stream.pid 2>/dev/null)
running() { [ -r "/proc/$pid/stat" ] && [ "$(busybox awk '{ print $3 }' "/proc/$pid/stat")" != Z ]; }
if [ -n "$pid" ]; then
	busybox kill -USR1 "$pid"
	n=0
	while running && [ "$n" -lt 1200 ]; do busybox sleep 0.5; n=$((n + 1)); done
	echo "netinit-bench: server gone uptime=$(busybox cut -d' ' -f1 /proc/uptime)"
fi
busybox poweroff -f
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Stream,
    Full,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Stream => "streamed",
            Mode::Full => "full download",
        }
    }
}

/// What one boot showed.
#[derive(Debug, Clone, Default, PartialEq)]
struct Run {
    marker: f64,
    /// MiB the block server had fetched when the root's init asked, just after the marker.
    before_marker: Option<f64>,
    /// Seconds from the block server's start to its last chunk, and then to hash the whole image
    /// (its "all chunks fetched" line); the uptime of its hand-over line.
    prefetched: Option<f64>,
    hashed: Option<f64>,
    handed_over: Option<f64>,
}

fn timestamp(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    rest.split(']').next()?.trim().parse().ok()
}

fn parse(mode: Mode, transcript: &[String]) -> std::result::Result<Run, String> {
    let find = |needle: &str| transcript.iter().find(|l| l.contains(needle));
    let marker_line = find("netinit-bench: marker uptime=").ok_or("no marker line")?;
    let marker = marker_line
        .split("uptime=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or("no uptime in the marker")?;
    let mut run = Run { marker, ..Run::default() };
    match mode {
        Mode::Full => {
            find("netinit: fetched ").ok_or("no fetched line: the image was not downloaded")?;
        }
        Mode::Stream => {
            find("netinit: stream: serving ").ok_or("the root was not streamed")?;
            // `stream: status: 3.0 of 257.0 MiB fetched (0.0 MiB on demand), 3 of 257 chunks`
            let status = find("netinit: stream: status: ").ok_or("no status line")?;
            run.before_marker = status
                .split("status: ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse().ok());
            // `all 257 chunks fetched and verified in 12.7s (...); the image's SHA-256 matches (hashed in 9.1s)`
            let done = find("chunks fetched and verified in ").ok_or("no line for the last chunk")?;
            let seconds = |after: &str| done.split(after).nth(1)?.split('s').next()?.parse::<f64>().ok();
            run.prefetched = seconds("verified in ");
            run.hashed = seconds("(hashed in ");
            run.handed_over = find("netinit: stream: hand-over:").and_then(|l| timestamp(l));
            run.handed_over.ok_or("no hand-over line")?;
        }
    }
    Ok(run)
}

fn show(s: Option<Spread>) -> String {
    s.map_or("-".into(), |s| s.to_string())
}

/// The least-squares slope of `y` against `x`.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

struct Image {
    pad_mib: u64,
    name: String,
    size: u64,
}

/// The images, built once into the cache: each with its manifest.
fn images(dir: &Path, init: &Path) -> Result<Vec<Image>> {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).map_err(|e| e.to_string())?;
    let stamp = format!("{:x}", image::fnv(format!("{INIT}{PADS:?}").as_bytes()));
    let mut out = Vec::new();
    for pad in PADS {
        let name = format!("pad-{pad}.squashfs");
        let path = www.join(&name);
        let stamp_file = www.join(format!("{name}.stamp"));
        if !(path.is_file() && std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp)) {
            eprintln!("xtask: building {} ({pad} MiB of padding)", path.display());
            let tree = dir.join("tree");
            let _ = std::fs::remove_dir_all(&tree);
            for sub in ["bin", "sbin", "dev", "proc", "sys", "run", "tmp"] {
                std::fs::create_dir_all(tree.join(sub)).map_err(|e| e.to_string())?;
            }
            std::fs::copy("/bin/busybox", tree.join("bin/busybox")).map_err(|e| e.to_string())?;
            std::os::unix::fs::symlink("busybox", tree.join("bin/sh")).map_err(|e| e.to_string())?;
            std::fs::write(tree.join("sbin/init"), INIT).map_err(|e| e.to_string())?;
            host::run(Command::new("chmod").arg("755").arg(tree.join("sbin/init")))?;
            bench::write_data(&tree.join("pad"), pad)?;
            // The padding is incompressible: stored as it is (-noD), as mksquashfs would after trying.
            host::run(
                Command::new("mksquashfs")
                    .arg(&tree)
                    .arg(&path)
                    .args(["-noappend", "-quiet", "-no-progress", "-all-root", "-comp", "gzip", "-noD"])
                    .args(["-mkfs-time", "0", "-all-time", "0"])
                    .stdout(std::process::Stdio::null()),
            )?;
            let _ = std::fs::remove_dir_all(&tree);
            image::manifest(init, &path, None)?;
            std::fs::write(&stamp_file, &stamp).map_err(|e| e.to_string())?;
        }
        let size = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
        out.push(Image { pad_mib: pad, name, size });
    }
    Ok(out)
}

/// `cargo xtask bench stream [--runs N] [--json]`.
pub fn stream(runs: usize, json: bool) -> Result<()> {
    host::ensure_vm_tools()?;
    let spec = kernel::by_name(KERNEL).ok_or(format!("no test kernel {KERNEL:?}"))?;
    let k = kernel::ensure(spec)?;
    let init = initramfs::build_init()?;
    let dir = host::cache().join("bench-stream");
    let images = images(&dir, &init)?;
    let initrd = dir.join("netinit.cpio.gz");
    let list = host::root().join("modules-list");
    let contents = initramfs::Contents {
        init: &init,
        modules_dir: &k.modules_dir,
        list: &list,
        shell: None,
        trust: &[],
        ca: &[],
        firmware: None,
        split: false,
    };
    initramfs::write(&contents, &initrd)?;
    let server = httpd::serve(&dir.join("www")).map_err(|e| format!("starting the test server: {e}"))?;
    let mut results: Vec<(usize, Mode, Vec<Run>)> = Vec::new();
    for (i, _) in images.iter().enumerate() {
        for mode in [Mode::Stream, Mode::Full] {
            results.push((i, mode, Vec::new()));
        }
    }
    let started = Instant::now();
    for run in 0..runs {
        for (i, img) in images.iter().enumerate() {
            for mode in [Mode::Stream, Mode::Full] {
                let url = format!("http://10.0.2.2:{}/rate/{RATE_KIB}/{}", server.port, img.name);
                let stream = if mode == Mode::Stream { " modloop_stream=yes" } else { "" };
                let append = format!("console=ttyS0 panic=5 ip=dhcp modloop={url}{stream}");
                let spec = vm::Spec::user_net(&k.vmlinuz, &initrd, append, MEMORY_MB);
                let mut machine = vm::Vm::boot(&spec, false)?;
                // Twice the transfer at the cap, and a margin for the boot and the hashing.
                let budget = Duration::from_secs(120 + 2 * img.size / (RATE_KIB * 1024));
                let deadline = Instant::now() + budget;
                let label = format!("{} MiB {}", img.pad_mib, mode.label());
                let tail = |m: &vm::Vm| {
                    m.transcript.iter().rev().take(12).rev().cloned().collect::<Vec<_>>().join("\n  ")
                };
                let last = if mode == Mode::Stream {
                    "netinit-bench: server gone"
                } else {
                    "netinit-bench: marker "
                };
                if let Err(e) = machine.expect(last, deadline) {
                    return Err(format!("{label}: {e}; the console ended with:\n  {}", tail(&machine)));
                }
                let _ = machine.wait_exit(Instant::now() + Duration::from_secs(30));
                let got = parse(mode, &machine.transcript)
                    .map_err(|e| format!("{label}: {e}; the console ended with:\n  {}", tail(&machine)))?;
                eprintln!(
                    "xtask: run {}/{runs}: {label}: marker at {:.1}s{}",
                    run + 1,
                    got.marker,
                    got.handed_over.map(|h| format!(", hand-over at {h:.1}s")).unwrap_or_default()
                );
                if let Some(slot) = results.iter_mut().find(|(j, m, _)| *j == i && *m == mode) {
                    slot.2.push(got);
                }
            }
        }
    }
    let of =
        |runs: &[Run], f: fn(&Run) -> Option<f64>| spread(&runs.iter().filter_map(f).collect::<Vec<_>>());
    let slope_of = |mode: Mode| {
        let points: Vec<(f64, f64)> = results
            .iter()
            .filter(|(_, m, _)| *m == mode)
            .filter_map(|(i, _, runs)| {
                of(runs, |r| Some(r.marker)).map(|m| (images[*i].size as f64 / (1u64 << 30) as f64, m.median))
            })
            .collect();
        slope(&points)
    };
    let (stream_slope, full_slope) = (slope_of(Mode::Stream), slope_of(Mode::Full));
    if json {
        let mut out = String::from("{\"cases\":[");
        for (n, (i, mode, runs)) in results.iter().enumerate() {
            let med = |f: fn(&Run) -> Option<f64>| {
                of(runs, f).map_or("null".into(), |m| format!("{:.2}", m.median))
            };
            let _ = write!(
                out,
                "{}{{\"image_mib\":{},\"mode\":\"{}\",\"runs\":{},\"marker_s\":{},\"mib_before_marker\":{},\"prefetch_s\":{},\"hash_s\":{},\"hand_over_s\":{}}}",
                if n == 0 { "" } else { "," },
                images[*i].size >> 20,
                mode.label(),
                runs.len(),
                med(|r| Some(r.marker)),
                med(|r| r.before_marker),
                med(|r| r.prefetched),
                med(|r| r.hashed),
                med(|r| r.handed_over)
            );
        }
        let num = |s: Option<f64>| s.map_or("null".into(), |v| format!("{v:.3}"));
        let _ = write!(
            out,
            "],\"rate_mib_s\":{},\"slope_s_per_gib\":{{\"streamed\":{},\"full\":{}}}}}",
            RATE_KIB / 1024,
            num(stream_slope),
            num(full_slope)
        );
        println!("{out}");
        return Ok(());
    }
    println!(
        "bench stream: {KERNEL} under TCG, {MEMORY_MB} MiB, the server capped at {} MiB/s; medians [ranges] of {runs} boots each, {:.0}s in all",
        RATE_KIB / 1024,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<10} {:<14} {:>20} {:>18} {:>20} {:>20} {:>20}",
        "image",
        "mode",
        "marker (s)",
        "MiB before marker",
        "prefetch took (s)",
        "then hashing (s)",
        "hand-over at (s)"
    );
    for (i, mode, runs) in &results {
        println!(
            "{:<10} {:<14} {:>20} {:>18} {:>20} {:>20} {:>20}",
            format!("{} MiB", images[*i].size >> 20),
            mode.label(),
            show(of(runs, |r| Some(r.marker))),
            show(of(runs, |r| r.before_marker)),
            show(of(runs, |r| r.prefetched)),
            show(of(runs, |r| r.hashed)),
            show(of(runs, |r| r.handed_over)),
        );
    }
    let per_gib = |s: Option<f64>| s.map_or("-".into(), |v| format!("{v:.2} s/GiB"));
    println!(
        "slope of the marker's time against the image's size: streamed {}, full download {} (at the cap: {:.1} s/GiB)",
        per_gib(stream_slope),
        per_gib(full_slope),
        1024.0 / (RATE_KIB as f64 / 1024.0)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes() {
        assert_eq!(slope(&[(0.25, 4.0), (1.0, 4.0), (2.0, 4.0)]), Some(0.0));
        let s = slope(&[(0.25, 13.0), (1.0, 51.0), (2.0, 102.0)]).unwrap();
        assert!((s - 50.9).abs() < 0.5, "{s}");
        assert_eq!(slope(&[(1.0, 2.0)]), None);
    }

    #[test]
    fn a_streamed_boot_parses() {
        let lines: Vec<String> = [
            "[    2.7] netinit: stream: serving http://10.0.2.2:1/rate/20480/pad-256.squashfs from /dev/nbd0 through /dev/dm-0 (block server pid 97)",
            "netinit-bench: marker uptime=4.21 0.00",
            "[    4.3] netinit: stream: status: 3.0 of 257.0 MiB fetched (0.5 MiB on demand), 3 of 257 chunks",
            "[   15.4] netinit: stream: all 257 chunks fetched and verified in 12.7s (257.0 MiB, 0.5 MiB on demand); the image's SHA-256 matches (hashed in 2.5s)",
            "[   15.5] netinit: stream: hand-over: the root now reads from /dev/loop0 (the RAM copy); NBD disconnected",
        ]
        .map(String::from)
        .to_vec();
        let r = parse(Mode::Stream, &lines).unwrap();
        let want = Run {
            marker: 4.21,
            before_marker: Some(3.0),
            prefetched: Some(12.7),
            hashed: Some(2.5),
            handed_over: Some(15.5),
        };
        assert_eq!(r, want);
        assert!(parse(Mode::Full, &lines).is_err(), "no fetched line");
        assert!(parse(Mode::Stream, &lines[..3]).is_err(), "no hand-over");
    }
}
