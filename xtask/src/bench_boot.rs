//! `cargo xtask bench boot`: how long a network boot takes, beside the floor and a shell script.
//!
//! Boots Debian 12's generic kernel (`6.1-generic`) with one virtio NIC on qemu's user network,
//! under TCG with one vCPU and 2 GiB, alternating, N times each:
//!
//! - the floor: the kernel with a tiny static `/init` (the marker, `guest/bench-init.c`) and
//!   nothing else, packed the same way;
//! - netinit (the default `modules-list`, as `cargo xtask cpio` packs it) fetching a 1 MiB image,
//!   a 257 MiB one, the 257 MiB one with `modloop_sha256=`, and the 257 MiB one signed (an
//!   initramfs that trusts the test key), and the 1 MiB one again with an archive of only the
//!   modules this VM loads (what the default list's unpacking costs);
//! - the shell reference (`guest/bench-shell-init.sh`, busybox): insmod of the modules the job
//!   needs, udhcpc, wget into a tmpfs (through `tee | sha256sum` when it checks), loop mount,
//!   overlay, switch_root; with the 1 MiB image, the 257 MiB one, and the 257 MiB one checked.
//!
//! Every root's init is the marker, which prints the uptime and the RAM the tmpfs pages hold
//! (`Shmem`), then powers off. Per case it prints medians and ranges of: the uptime at `Run /init`
//! (the kernel's line), the uptime at the marker, the in-VM download rate, netinit's stage
//! durations and peak RSS (from its summary line); then the sizes, the ratios that matter and the
//! budget of issue 13, each measured in the same run; `--json` prints the same as JSON. It asserts
//! only what makes the figures meaningful: each boot reached its marker, and each digest or
//! signature that was asked for was checked.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::host::{self, Result};
use crate::initramfs::Compression;
use crate::{bench, httpd, image, initramfs, kernel, kmod, vm};

const MARKER_C: &str = include_str!("../guest/bench-init.c");
const SHELL_INIT: &str = include_str!("../guest/bench-shell-init.sh");
const UDHCPC_SCRIPT: &str = include_str!("../guest/bench-udhcpc.script");

/// The test kernel the budget is stated for.
const KERNEL: &str = "6.1-generic";
/// The file the small image pads itself with, and the big one's.
const SMALL_MIB: u64 = 1;
const BIG_MIB: u64 = 256;
/// What the shell reference loads: the NIC's driver and what the root needs. Their dependencies
/// come from the kernel, in load order.
const SHELL_MODULES: [&str; 5] = ["virtio_pci", "virtio_net", "loop", "squashfs", "overlay"];
const MEMORY_MB: u32 = 2048;

/// One kind of boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Floor,
    Small,
    /// netinit with only the modules this VM loads: what the default list's unpacking costs.
    SmallMinimal,
    Big,
    BigSha,
    BigSigned,
    ShellSmall,
    ShellBig,
    ShellBigSha,
}

impl Case {
    const ALL: [Case; 9] = [
        Case::Floor,
        Case::Small,
        Case::SmallMinimal,
        Case::Big,
        Case::BigSha,
        Case::BigSigned,
        Case::ShellSmall,
        Case::ShellBig,
        Case::ShellBigSha,
    ];

    fn label(self) -> &'static str {
        match self {
            Case::Floor => "floor",
            Case::Small => "netinit 1 MiB",
            Case::SmallMinimal => "netinit 1 MiB, 5 modules",
            Case::Big => "netinit 257 MiB",
            Case::BigSha => "netinit 257 MiB sha256",
            Case::BigSigned => "netinit 257 MiB signed",
            Case::ShellSmall => "shell 1 MiB",
            Case::ShellBig => "shell 257 MiB",
            Case::ShellBigSha => "shell 257 MiB sha256",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Case::Floor => "floor",
            Case::Small => "netinit_small",
            Case::SmallMinimal => "netinit_small_minimal_modules",
            Case::Big => "netinit_big",
            Case::BigSha => "netinit_big_sha256",
            Case::BigSigned => "netinit_big_signed",
            Case::ShellSmall => "shell_small",
            Case::ShellBig => "shell_big",
            Case::ShellBigSha => "shell_big_sha256",
        }
    }

    fn is_netinit(self) -> bool {
        matches!(self, Case::Small | Case::SmallMinimal | Case::Big | Case::BigSha | Case::BigSigned)
    }

    /// The console line that shows the check this case asks for ran and passed.
    fn check_line(self) -> Option<&'static str> {
        match self {
            Case::BigSha => Some("netinit: SHA-256 matches modloop_sha256"),
            Case::BigSigned => Some("netinit: signature verified"),
            Case::ShellBigSha => Some("sha256 checked"),
            _ => None,
        }
    }
}

/// netinit's stages, in order, with their seconds.
type Stages = Vec<(String, f64)>;

/// What one boot showed.
#[derive(Debug, Clone, Default, PartialEq)]
struct Run {
    /// Uptime at the kernel's `Run /init as init process`.
    start: f64,
    /// Uptime the marker printed.
    marker: f64,
    /// The in-VM download rate, MiB/s.
    rate: Option<f64>,
    stages: Stages,
    /// netinit's peak RSS, MiB.
    peak_rss: Option<f64>,
    /// tmpfs pages at the marker, MiB.
    shmem: Option<f64>,
}

/// The kernel's timestamp of a console line: `[    1.234567] ...`.
fn timestamp(line: &str) -> Option<f64> {
    let rest = line.trim_start().strip_prefix('[')?;
    rest.split(']').next()?.trim().parse().ok()
}

/// The text after `key=` in `line`, up to the next space.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.split(&format!(" {key}=")).nth(1)?;
    rest.split_whitespace().next()
}

/// netinit's summary: `boot took 5.21s since the kernel started: mounts 0.01s, modules 0.40s; peak
/// RSS 4.1 MiB` gives the stages and the peak.
fn summary(line: &str) -> Option<(Stages, Option<f64>)> {
    let rest = line.split(" since the kernel started: ").nth(1)?;
    let (stages, peak) = match rest.split_once("; peak RSS ") {
        Some((s, p)) => (s, p.strip_suffix(" MiB").and_then(|p| p.parse().ok())),
        None => (rest, None),
    };
    // `; reports 0.02s` (netinit.report=) follows the stages.
    let stages = stages.split("; ").next().unwrap_or(stages);
    let stages = stages
        .split(", ")
        .map(|part| {
            let (name, secs) = part.rsplit_once(' ')?;
            Some((name.to_owned(), secs.strip_suffix('s')?.parse().ok()?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((stages, peak))
}

/// A boot's figures from its console transcript.
fn parse(case: Case, transcript: &[String]) -> std::result::Result<Run, String> {
    let find = |needle: &str| transcript.iter().find(|l| l.contains(needle));
    let start = find("Run /init as init process").and_then(|l| timestamp(l)).ok_or("no `Run /init` line")?;
    let marker_line = find("netinit-bench: marker ").ok_or("no marker line")?;
    let marker =
        field(marker_line, "uptime").and_then(|v| v.parse().ok()).ok_or("no uptime in the marker")?;
    let kib = |key| field(marker_line, key).and_then(|v| v.parse::<f64>().ok()).map(|k| k / 1024.0);
    let mut run = Run { start, marker, shmem: kib("shmem-kib"), ..Run::default() };
    if let Some(check) = case.check_line() {
        find(check).ok_or(format!("the console lacks {check:?}: the check did not run"))?;
    }
    if case.is_netinit() {
        let line = find("netinit: boot took ").ok_or("no netinit summary line")?;
        let (stages, peak) = summary(line).ok_or("netinit's summary line does not parse")?;
        run.stages = stages;
        run.peak_rss = peak;
        // `fetched 257.0 MiB in 3.4s (75.2 MiB/s average, 1 attempt)`
        let fetched = find("netinit: fetched ").ok_or("no fetched line")?;
        let before = fetched.split(" MiB/s average").next().ok_or("no rate")?;
        run.rate = before.rsplit('(').next().and_then(|r| r.parse().ok());
    }
    if matches!(case, Case::ShellSmall | Case::ShellBig | Case::ShellBigSha) {
        // `netinit-bench-shell: fetched 269484032 bytes from 3.12 to 6.80`
        let line = find("netinit-bench-shell: fetched ").ok_or("no fetched line from the shell")?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "fetched").ok_or("bad fetched line")?;
        let number = |i: usize| words.get(i).and_then(|w| w.trim_end_matches(',').parse::<f64>().ok());
        let (bytes, from, to) = (number(at + 1), number(at + 4), number(at + 6));
        if let (Some(bytes), Some(from), Some(to)) = (bytes, from, to) {
            run.rate = Some(bytes / 1048576.0 / (to - from).max(0.01));
        }
    }
    Ok(run)
}

/// Median, smallest and largest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub(crate) fn spread(values: &[f64]) -> Option<Spread> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Some(Spread { median, min: v[0], max: v[n - 1] })
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} [{:.2}-{:.2}]", self.median, self.min, self.max)
    }
}

/// Everything the boots need, built into the cache.
struct Files {
    vmlinuz: PathBuf,
    release: String,
    floor: PathBuf,
    netinit: PathBuf,
    netinit_trusted: PathBuf,
    /// netinit packed with [`SHELL_MODULES`] alone.
    netinit_minimal: PathBuf,
    shell: PathBuf,
    init: PathBuf,
    www: PathBuf,
    big_sha256: String,
}

/// The marker program, built static with musl-gcc.
fn marker_binary(dir: &Path) -> Result<PathBuf> {
    host::ensure_musl_cc()?;
    let source = dir.join("bench-init.c");
    let binary = dir.join("bench-init");
    std::fs::write(&source, MARKER_C).map_err(|e| e.to_string())?;
    host::run(Command::new("musl-gcc").args(["-static", "-Os", "-o"]).arg(&binary).arg(&source))?;
    Ok(binary)
}

/// A root whose `/sbin/init` is the marker, padded with `pad_mib` MiB of incompressible bytes.
/// Returns whether it was built afresh.
fn root_image(dir: &Path, marker: &Path, pad_mib: u64, out: &Path, stamp: &str) -> Result<bool> {
    let stamp_file = out.with_extension("stamp");
    if out.is_file() && std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp) {
        return Ok(false);
    }
    let tree = dir.join(format!("tree-{pad_mib}"));
    let _ = std::fs::remove_dir_all(&tree);
    for sub in ["sbin", "dev", "proc", "sys", "run", "tmp"] {
        std::fs::create_dir_all(tree.join(sub)).map_err(|e| e.to_string())?;
    }
    std::fs::copy(marker, tree.join("sbin/init")).map_err(|e| e.to_string())?;
    bench::write_data(&tree.join("pad"), pad_mib)?;
    image::mksquashfs(&tree, out)?;
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::write(&stamp_file, stamp).map_err(|e| e.to_string())?;
    Ok(true)
}

/// The floor's initramfs: the marker as `/init`, the console node, packed as netinit's is.
fn floor_initramfs(marker: &Path, out: &Path, packing: Compression) -> Result<()> {
    let mut a = mkcpio::Archive::new(0);
    let e = |e: mkcpio::PathError| e.to_string();
    a.file("init", 0o755, std::fs::read(marker).map_err(|e| e.to_string())?).map_err(e)?;
    a.char_device("dev/console", 0o600, 5, 1).map_err(e)?;
    initramfs::write_compressed(&a, out, packing).map(|_| ())
}

/// The shell reference's initramfs: busybox, the script as `/init`, and [`SHELL_MODULES`] with
/// their dependencies, decompressed, listed in load order in `/etc/modules`.
fn shell_initramfs(tree: &kmod::Tree, out: &Path, packing: Compression) -> Result<()> {
    let files = [("init", SHELL_INIT.as_bytes()), ("etc/udhcpc.script", UDHCPC_SCRIPT.as_bytes())];
    initramfs::busybox_initramfs(tree, &SHELL_MODULES, &files, out, packing)
}

fn prepare() -> Result<Files> {
    host::ensure_vm_tools()?;
    let spec = kernel::by_name(KERNEL).ok_or(format!("no test kernel {KERNEL:?}"))?;
    let k = kernel::ensure(spec)?;
    let init = initramfs::build_init()?;
    let images = image::ensure()?;
    let dir = host::cache().join("bench-boot");
    let www = dir.join("www");
    std::fs::create_dir_all(&www).map_err(|e| e.to_string())?;
    let marker = marker_binary(&dir)?;
    let stamp = format!("{:x}", image::fnv(format!("{MARKER_C}{SMALL_MIB}{BIG_MIB}").as_bytes()));
    root_image(&dir, &marker, SMALL_MIB, &www.join("small.squashfs"), &stamp)?;
    let big = www.join("big.squashfs");
    let signature = www.join("big.squashfs.minisig");
    if root_image(&dir, &marker, BIG_MIB, &big, &stamp)? || !signature.is_file() {
        image::sign(&big, &signature)?;
    }
    let list = host::root().join("modules-list");
    let trust = [images.key.clone()];
    let netinit = dir.join("netinit.cpio.gz");
    let netinit_trusted = dir.join("netinit-trusted.cpio.gz");
    let netinit_minimal = dir.join("netinit-minimal.cpio.gz");
    let minimal_list = dir.join("modules-list-minimal");
    std::fs::write(&minimal_list, SHELL_MODULES.join("\n") + "\n").map_err(|e| e.to_string())?;
    for (out, trust, list) in [
        (&netinit, &trust[..0], &list),
        (&netinit_trusted, &trust[..], &list),
        (&netinit_minimal, &trust[..0], &minimal_list),
    ] {
        // As `cargo xtask cpio` packs it, without its report: stdout is the table or the JSON.
        let contents = initramfs::Contents {
            init: &init,
            modules_dir: &k.modules_dir,
            list,
            shell: None,
            trust,
            ca: &[],
            firmware: None,
            split: false,
        };
        initramfs::write(&contents, out)?;
    }
    // The floor and the shell reference are compressed as netinit's initramfs is for this kernel.
    let tree = kmod::Tree::open(&k.modules_dir)?;
    let packing = initramfs::compression_for(tree.config().as_ref().map(|(_, text)| text.as_str()))
        .ok_or("the kernel unpacks neither gzip nor zstd")?;
    let floor = dir.join("floor.cpio.gz");
    floor_initramfs(&marker, &floor, packing)?;
    let shell = dir.join("shell.cpio.gz");
    shell_initramfs(&tree, &shell, packing)?;
    let big_sha256 = image::sha256_file(&big)?;
    Ok(Files {
        vmlinuz: k.vmlinuz,
        release: spec.release.to_owned(),
        floor,
        netinit,
        netinit_trusted,
        netinit_minimal,
        shell,
        init,
        www,
        big_sha256,
    })
}

/// The kernel line and initramfs of one case; `url` is the image's on the host's server.
fn boot_args(case: Case, files: &Files, port: u16) -> (String, &Path) {
    let url = |name: &str| format!("http://10.0.2.2:{port}/{name}");
    let base = "console=ttyS0 panic=5";
    match case {
        Case::Floor => (base.to_owned(), &files.floor),
        Case::Small => (format!("{base} modloop={} ip=dhcp", url("small.squashfs")), &files.netinit),
        Case::SmallMinimal => {
            (format!("{base} modloop={} ip=dhcp", url("small.squashfs")), &files.netinit_minimal)
        }
        Case::Big => (format!("{base} modloop={} ip=dhcp", url("big.squashfs")), &files.netinit),
        Case::BigSha => (
            format!("{base} modloop={} modloop_sha256={} ip=dhcp", url("big.squashfs"), files.big_sha256),
            &files.netinit,
        ),
        Case::BigSigned => {
            (format!("{base} modloop={} ip=dhcp", url("big.squashfs")), &files.netinit_trusted)
        }
        Case::ShellSmall => (format!("{base} bench.url={}", url("small.squashfs")), &files.shell),
        Case::ShellBig => (format!("{base} bench.url={}", url("big.squashfs")), &files.shell),
        Case::ShellBigSha => (
            format!("{base} bench.url={} bench.sha256={}", url("big.squashfs"), files.big_sha256),
            &files.shell,
        ),
    }
}

/// Boots one case and reads its figures.
fn boot(case: Case, files: &Files, port: u16) -> Result<Run> {
    let (append, initrd) = boot_args(case, files, port);
    let spec = vm::Spec::user_net(&files.vmlinuz, initrd, append, MEMORY_MB);
    let mut machine = vm::Vm::boot(&spec, false)?;
    let waited = machine.expect("netinit-bench: marker ", Instant::now() + Duration::from_secs(240));
    let tail = || machine.transcript.iter().rev().take(12).rev().cloned().collect::<Vec<_>>().join("\n  ");
    if let Err(e) = waited {
        return Err(format!("{}: {e}; the console ended with:\n  {}", case.label(), tail()));
    }
    parse(case, &machine.transcript)
        .map_err(|e| format!("{}: {e}; the console ended with:\n  {}", case.label(), tail()))
}

/// What all the runs of one case gave.
struct Figures {
    case: Case,
    runs: Vec<Run>,
}

impl Figures {
    fn of(&self, f: impl Fn(&Run) -> Option<f64>) -> Option<Spread> {
        spread(&self.runs.iter().filter_map(f).collect::<Vec<_>>())
    }
    fn start(&self) -> Option<Spread> {
        self.of(|r| Some(r.start))
    }
    fn marker(&self) -> Option<Spread> {
        self.of(|r| Some(r.marker))
    }
    fn rate(&self) -> Option<Spread> {
        self.of(|r| r.rate)
    }
    fn peak(&self) -> Option<Spread> {
        self.of(|r| r.peak_rss)
    }
    fn shmem(&self) -> Option<Spread> {
        self.of(|r| r.shmem)
    }
    /// Each stage's median, in the order netinit ran them.
    fn stages(&self) -> Vec<(String, Spread)> {
        let Some(first) = self.runs.first() else { return Vec::new() };
        first
            .stages
            .iter()
            .filter_map(|(name, _)| {
                let values: Vec<f64> = self
                    .runs
                    .iter()
                    .filter_map(|r| r.stages.iter().find(|(n, _)| n == name).map(|(_, s)| *s))
                    .collect();
                spread(&values).map(|s| (name.clone(), s))
            })
            .collect()
    }
}

/// One line of the budget: what, the measured value, the limit, and whether it is met.
struct Budget {
    what: &'static str,
    value: Option<f64>,
    limit: f64,
    unit: &'static str,
    /// Met when the value is at most the limit (else: at least).
    at_most: bool,
}

impl Budget {
    fn met(&self) -> Option<bool> {
        self.value.map(|v| if self.at_most { v <= self.limit } else { v >= self.limit })
    }
}

/// The sizes the budget names, in bytes.
struct Sizes {
    init: u64,
    netinit: u64,
    shell: u64,
    floor: u64,
}

fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn budget(all: &[Figures], sizes: &Sizes) -> Vec<Budget> {
    let get = |case: Case| all.iter().find(|f| f.case == case);
    let median = |case: Case, f: fn(&Figures) -> Option<Spread>| get(case).and_then(f).map(|s| s.median);
    let marker = |case| median(case, Figures::marker);
    let rate = |case| median(case, Figures::rate);
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let peak = all
        .iter()
        .filter(|f| f.case.is_netinit())
        .filter_map(|f| f.peak().map(|s| s.max))
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    vec![
        Budget {
            what: "netinit 1 MiB marker - floor marker",
            value: marker(Case::Small).zip(marker(Case::Floor)).map(|(n, f)| n - f),
            limit: 0.35,
            unit: "s",
            at_most: true,
        },
        Budget {
            what: "netinit 1 MiB marker / shell 1 MiB marker",
            value: ratio(marker(Case::Small), marker(Case::ShellSmall)),
            limit: 1.0,
            unit: "",
            at_most: true,
        },
        Budget {
            what: "download rate: netinit 257 MiB / shell 257 MiB",
            value: ratio(rate(Case::Big), rate(Case::ShellBig)),
            limit: 1.0,
            unit: "",
            at_most: false,
        },
        Budget {
            what: "download rate: netinit sha256 / shell sha256",
            value: ratio(rate(Case::BigSha), rate(Case::ShellBigSha)),
            limit: 1.0,
            unit: "",
            at_most: false,
        },
        Budget {
            what: "download rate: netinit signed / shell sha256",
            value: ratio(rate(Case::BigSigned), rate(Case::ShellBigSha)),
            limit: 1.0,
            unit: "",
            at_most: false,
        },
        Budget {
            what: "initramfs, default modules-list",
            value: Some(sizes.netinit as f64 / 1e6),
            limit: 6.0,
            unit: " MB",
            at_most: true,
        },
        Budget {
            what: "/init",
            value: Some(sizes.init as f64 / 1e6),
            limit: 2.0,
            unit: " MB",
            at_most: true,
        },
        Budget {
            what: "/init peak RSS (largest)",
            value: peak.map(|m| m * 1048576.0 / 1e6),
            limit: 8.0,
            unit: " MB",
            at_most: true,
        },
    ]
}

pub fn boot_bench(runs: usize, json: bool) -> Result<()> {
    let files = prepare()?;
    let server = httpd::serve(&files.www).map_err(|e| format!("starting the HTTP server: {e}"))?;
    let sizes = Sizes {
        init: size_of(&files.init),
        netinit: size_of(&files.netinit),
        shell: size_of(&files.shell),
        floor: size_of(&files.floor),
    };
    // The images come from the page cache for every boot: read them once now.
    for name in ["small.squashfs", "big.squashfs"] {
        let mut f = std::fs::File::open(files.www.join(name)).map_err(|e| e.to_string())?;
        std::io::copy(&mut f, &mut std::io::sink()).map_err(|e| e.to_string())?;
    }
    eprintln!(
        "xtask: bench boot: kernel {}, virtio-net on qemu's user network, TCG, 1 vCPU, {MEMORY_MB} MiB; {runs} boot(s) of each of {} cases, alternating",
        files.release,
        Case::ALL.len()
    );
    let mut all: Vec<Figures> = Case::ALL.iter().map(|&case| Figures { case, runs: Vec::new() }).collect();
    for run in 0..runs {
        for k in 0..Case::ALL.len() {
            // Each round starts with another case, so none is always first.
            let i = (run + k) % Case::ALL.len();
            let case = Case::ALL[i];
            let r = boot(case, &files, server.port)?;
            eprintln!(
                "run {}: {:<24} /init at {:.2}s, marker at {:.2}s{}",
                run + 1,
                case.label(),
                r.start,
                r.marker,
                r.rate.map(|m| format!(", {m:.1} MiB/s")).unwrap_or_default()
            );
            all[i].runs.push(r);
        }
    }
    let budget = budget(&all, &sizes);
    if json {
        println!("{}", to_json(&files, runs, &all, &sizes, &budget));
    } else {
        print!("{}", table(&files, runs, &all, &sizes, &budget));
    }
    Ok(())
}

fn opt(s: Option<Spread>) -> String {
    s.map(|s| s.to_string()).unwrap_or_else(|| "-".into())
}

fn table(files: &Files, runs: usize, all: &[Figures], sizes: &Sizes, budget: &[Budget]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "bench boot: kernel {}, virtio-net, qemu TCG, 1 vCPU, {MEMORY_MB} MiB; {runs} run(s) each; median [min-max]",
        files.release
    );
    let _ = writeln!(
        t,
        "| case | uptime at /init (s) | uptime at marker (s) | download (MiB/s) | tmpfs at marker (MiB) |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|");
    for f in all {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} |",
            f.case.label(),
            opt(f.start()),
            opt(f.marker()),
            opt(f.rate()),
            f.shmem().map(|s| format!("{:.0}", s.median)).unwrap_or_else(|| "-".into())
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "netinit's stages (s) and peak RSS (MiB):");
    for f in all.iter().filter(|f| f.case.is_netinit()) {
        let stages: Vec<String> = f.stages().iter().map(|(n, s)| format!("{n} {:.2}", s.median)).collect();
        let _ = writeln!(t, "  {:<24} {}; peak RSS {}", f.case.label(), stages.join(", "), opt(f.peak()));
    }
    let _ = writeln!(
        t,
        "sizes: /init {} KiB; initramfs: netinit {} KiB, shell reference {} KiB, floor {} KiB",
        sizes.init / 1024,
        sizes.netinit / 1024,
        sizes.shell / 1024,
        sizes.floor / 1024
    );
    let _ = writeln!(t);
    // Where a small image's boot goes, beside the floor and the shell.
    let med = |case: Case, f: fn(&Figures) -> Option<Spread>| {
        all.iter().find(|x| x.case == case).and_then(f).map(|s| s.median)
    };
    if let (Some(fs), Some(ns), Some(ms), Some(nm), Some(ss), Some(sm)) = (
        med(Case::Floor, Figures::start),
        med(Case::Small, Figures::start),
        med(Case::SmallMinimal, Figures::start),
        med(Case::Small, Figures::marker),
        med(Case::ShellSmall, Figures::start),
        med(Case::ShellSmall, Figures::marker),
    ) {
        let _ = writeln!(
            t,
            "small image: /init starts {:.2}s after the floor's ({:.2}s of it the default list's modules: with 5 it starts {:.2}s after); from /init to the marker netinit takes {:.2}s, the shell {:.2}s",
            ns - fs,
            ns - ms,
            ms - fs,
            nm - ns,
            sm - ss
        );
        let _ = writeln!(t);
    }
    let _ = writeln!(t, "budget (issue 13), medians of this run:");
    for b in budget {
        let verdict = match b.met() {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        let value = b.value.map(|v| format!("{v:.2}{}", b.unit)).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            t,
            "  {:<48} {value:>10}  {} {:.2}{}  {verdict}",
            b.what,
            if b.at_most { "<=" } else { ">=" },
            b.limit,
            b.unit
        );
    }
    t
}

fn json_spread(s: Option<Spread>) -> String {
    match s {
        Some(s) => format!("{{\"median\":{:.4},\"min\":{:.4},\"max\":{:.4}}}", s.median, s.min, s.max),
        None => "null".into(),
    }
}

fn to_json(files: &Files, runs: usize, all: &[Figures], sizes: &Sizes, budget: &[Budget]) -> String {
    let cases: Vec<String> = all
        .iter()
        .map(|f| {
            let stages: Vec<String> =
                f.stages().iter().map(|(n, s)| format!("\"{n}\":{}", json_spread(Some(*s)))).collect();
            format!(
                "\"{}\":{{\"label\":\"{}\",\"init_start_s\":{},\"marker_s\":{},\"download_mib_s\":{},\"tmpfs_mib\":{},\"peak_rss_mib\":{},\"stages_s\":{{{}}}}}",
                f.case.key(),
                f.case.label(),
                json_spread(f.start()),
                json_spread(f.marker()),
                json_spread(f.rate()),
                json_spread(f.shmem()),
                json_spread(f.peak()),
                stages.join(",")
            )
        })
        .collect();
    let budget: Vec<String> = budget
        .iter()
        .map(|b| {
            format!(
                "{{\"what\":\"{}\",\"value\":{},\"limit\":{},\"at_most\":{},\"met\":{}}}",
                b.what,
                b.value.map(|v| format!("{v:.4}")).unwrap_or_else(|| "null".into()),
                b.limit,
                b.at_most,
                b.met().map(|m| m.to_string()).unwrap_or_else(|| "null".into())
            )
        })
        .collect();
    format!(
        "{{\"kernel\":\"{}\",\"runs\":{runs},\"vcpus\":1,\"memory_mib\":{MEMORY_MB},\"sizes_bytes\":{{\"init\":{},\"initramfs\":{},\"shell_initramfs\":{},\"floor_initramfs\":{}}},\"cases\":{{{}}},\"budget\":[{}]}}",
        files.release,
        sizes.init,
        sizes.netinit,
        sizes.shell,
        sizes.floor,
        cases.join(","),
        budget.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn netinit_figures_from_a_console() {
        let t = lines(&[
            "[    1.712345] Run /init as init process",
            "[    2.4] netinit: fetched 257.0 MiB in 3.4s (75.2 MiB/s average, 1 attempt), sha256 ab",
            "[    2.5] netinit: SHA-256 matches modloop_sha256",
            "[    3.0] netinit: boot took 3.03s since the kernel started: mounts 0.02s, modules 0.39s, network 0.11s; peak RSS 4.1 MiB",
            "netinit-bench: marker uptime=3.10 shmem-kib=263168 used-kib=300000",
        ]);
        let r = parse(Case::BigSha, &t).unwrap();
        assert_eq!((r.start, r.marker, r.rate, r.peak_rss), (1.712345, 3.10, Some(75.2), Some(4.1)));
        assert_eq!(r.shmem, Some(257.0));
        assert_eq!(r.stages, [("mounts".into(), 0.02), ("modules".into(), 0.39), ("network".into(), 0.11)]);
        // The same console without the check's line: the digest was not checked, which the bench refuses.
        let unchecked: Vec<String> = t.iter().filter(|l| !l.contains("matches")).cloned().collect();
        assert!(parse(Case::BigSha, &unchecked).unwrap_err().contains("the check did not run"));
        assert!(parse(Case::Big, &unchecked).is_ok());
        assert!(parse(Case::Big, &t[..3]).is_err(), "no marker, no figures");
        let line = "boot took 3.03s since the kernel started: mounts 0.02s, network 0.11s; reports 0.05s; peak RSS 4.1 MiB";
        let (stages, peak) = summary(line).unwrap();
        assert_eq!((stages, peak), (vec![("mounts".into(), 0.02), ("network".into(), 0.11)], Some(4.1)));
    }

    #[test]
    fn shell_and_floor_figures() {
        let t = lines(&[
            "[    1.5] Run /init as init process",
            "netinit-bench-shell: fetched 269484032 bytes from 3.00 to 6.50, sha256 checked",
            "netinit-bench: marker uptime=7.00 shmem-kib=1024 used-kib=1",
        ]);
        let r = parse(Case::ShellBigSha, &t).unwrap();
        let rate = r.rate.unwrap();
        assert!((rate - 257.0 / 3.5).abs() < 1e-9, "{rate}");
        assert!(r.stages.is_empty() && r.peak_rss.is_none());
        let floor = parse(Case::Floor, &[t[0].clone(), t[2].clone()]).unwrap();
        assert_eq!((floor.start, floor.marker, floor.rate), (1.5, 7.0, None));
    }

    #[test]
    fn spreads_and_budget() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), Some(Spread { median: 2.0, min: 1.0, max: 3.0 }));
        assert_eq!(spread(&[4.0, 1.0]).unwrap().median, 2.5);
        assert_eq!(spread(&[]), None);
        let run = |marker: f64, rate: Option<f64>| Run { marker, rate, ..Run::default() };
        let all = vec![
            Figures { case: Case::Floor, runs: vec![run(2.0, None)] },
            Figures { case: Case::Small, runs: vec![run(2.3, None)] },
            Figures { case: Case::ShellSmall, runs: vec![run(2.2, None)] },
            Figures { case: Case::Big, runs: vec![run(9.0, Some(80.0))] },
            Figures { case: Case::ShellBig, runs: vec![run(9.0, Some(100.0))] },
        ];
        let sizes = Sizes { init: 1_900_000, netinit: 7_000_000, shell: 1, floor: 1 };
        let b = budget(&all, &sizes);
        let met: Vec<Option<bool>> = b.iter().map(Budget::met).collect();
        assert_eq!(
            met,
            [Some(true), Some(false), Some(false), None, None, Some(false), Some(true), None],
            "floor + 0.3 s is within 0.35 s; slower than the shell is not; no sha256 runs, nothing said"
        );
        let text = table(
            &Files {
                vmlinuz: PathBuf::new(),
                release: "r".into(),
                floor: PathBuf::new(),
                netinit: PathBuf::new(),
                netinit_trusted: PathBuf::new(),
                netinit_minimal: PathBuf::new(),
                shell: PathBuf::new(),
                init: PathBuf::new(),
                www: PathBuf::new(),
                big_sha256: String::new(),
            },
            1,
            &all,
            &sizes,
            &b,
        );
        assert!(
            text.contains(
                "| netinit 257 MiB | 0.00 [0.00-0.00] | 9.00 [9.00-9.00] | 80.00 [80.00-80.00] | - |"
            ),
            "{text}"
        );
        assert!(text.contains("MISSED") && text.contains("not measured"), "{text}");
    }
}
