//! The boot, top to bottom: each stage takes the previous one's typed output.
//! `mounts -> cmdline -> modules -> network -> fetch -> rootfs -> customize -> switch_root`.
//!
//! This module owns no mechanism. It sequences the stages, times them, and hands any error to
//! `failure`, the one place that decides what PID 1 does when the boot cannot go on.

use std::convert::Infallible;
use std::io;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use rustix::mount::MountFlags;

use crate::cmdline::{self, FailurePolicy};
use crate::report::{Facts, Record, Reporter};
use crate::{
    clock, customize, failure, fetch, klog, modloop_service, modules, net, netconsole, rootfs, stream,
    switch_root, sys,
};

/// The stages of the boot, in order: the names the console, the timings and the errors use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Mounts,
    Cmdline,
    Modules,
    Network,
    Fetch,
    Rootfs,
    Customize,
    RescueShell,
    SwitchRoot,
}

impl Stage {
    #[cfg(test)]
    const ALL: [Stage; 9] = [
        Stage::Mounts,
        Stage::Cmdline,
        Stage::Modules,
        Stage::Network,
        Stage::Fetch,
        Stage::Rootfs,
        Stage::Customize,
        Stage::RescueShell,
        Stage::SwitchRoot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Mounts => "mounts",
            Stage::Cmdline => "cmdline",
            Stage::Modules => "modules",
            Stage::Network => "network",
            Stage::Fetch => "fetch",
            Stage::Rootfs => "rootfs",
            Stage::Customize => "customize",
            Stage::RescueShell => "rescue shell",
            Stage::SwitchRoot => "switch_root",
        }
    }
}

/// The failure policy from the cmdline, once it is read, for the panic hook.
static POLICY: OnceLock<FailurePolicy> = OnceLock::new();

const NOSUID_NODEV_NOEXEC: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV).union(MountFlags::NOEXEC);

/// The API file systems, mounted first, in this order. `/dev/pts` and `/dev/shm` are for the booted
/// system (zinit mounts nothing itself, sshd needs ptys); they move into the new root with `/dev`.
/// Their options are dracut's (`99base/init.sh`), with `ptmxmode=0666` so that `/dev/pts/ptmx` works
/// where `/dev/ptmx` is a link to it.
const EARLY_MOUNTS: [(&str, &str, &str, MountFlags, &str); 6] = [
    ("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, ""),
    ("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, ""),
    ("devtmpfs", "/dev", "devtmpfs", MountFlags::NOSUID, "mode=0755"),
    (
        "devpts",
        "/dev/pts",
        "devpts",
        MountFlags::NOSUID.union(MountFlags::NOEXEC),
        "gid=5,mode=0620,ptmxmode=0666",
    ),
    ("tmpfs", "/dev/shm", "tmpfs", NOSUID_NODEV_NOEXEC.union(MountFlags::STRICTATIME), "mode=1777"),
    ("tmpfs", "/run", "tmpfs", MountFlags::NOSUID.union(MountFlags::NODEV), "mode=0755"),
];

/// Whether `target` is already a mount point: another file system than its parent's. Mounting
/// devpts or tmpfs again would stack a second instance rather than fail.
fn mounted(target: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev());
    match (dev(target), target.parent().map(dev)) {
        (Ok(d), Some(Ok(parent))) => d != parent,
        _ => false,
    }
}

#[derive(Debug, thiserror::Error)]
enum BootError {
    #[error("mounting {target}")]
    EarlyMount { target: &'static str, source: io::Error },
    #[error("reading /proc/cmdline")]
    ReadCmdline(#[source] io::Error),
    #[error("the kernel command line has {0} error(s), shown above")]
    Cmdline(usize),
    #[error(transparent)]
    Modules(#[from] modules::ModulesError),
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error("{0}")]
    NicDriverRefused(String),
    #[error("{0}")]
    NoNicDriver(String),
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    #[error(transparent)]
    Stream(#[from] stream::StreamError),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Customize(#[from] customize::CustomizeError),
    #[error(transparent)]
    Switch(#[from] switch_root::SwitchError),
}

impl BootError {
    fn stage(&self) -> Stage {
        match self {
            BootError::EarlyMount { .. } => Stage::Mounts,
            BootError::ReadCmdline(_) | BootError::Cmdline(_) => Stage::Cmdline,
            BootError::Modules(_) => Stage::Modules,
            BootError::Net(_) | BootError::NicDriverRefused(_) | BootError::NoNicDriver(_) => Stage::Network,
            BootError::Fetch(_) | BootError::Stream(_) => Stage::Fetch,
            BootError::Rootfs(_) => Stage::Rootfs,
            BootError::Customize(_) => Stage::Customize,
            BootError::Switch(_) => Stage::SwitchRoot,
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            BootError::Cmdline(_) => {
                "fix the parameters named above in the boot loader's (iPXE's) kernel line"
            }
            BootError::Modules(e) => e.hint(),
            BootError::Net(e) => e.hint(),
            BootError::NicDriverRefused(_) => "take the NIC's driver out of blacklist= on the kernel line",
            BootError::NoNicDriver(_) => {
                "add the NIC's driver to modules-list and rebuild the initramfs (the kernel's modules.alias names the driver of each modalias)"
            }
            BootError::Fetch(e) => e.hint(),
            BootError::Stream(e) => e.hint(),
            BootError::Rootfs(e) => e.hint(),
            BootError::Customize(e) => e.hint(),
            BootError::Switch(e) => e.hint(),
            _ => "this is unexpected; the error above names the step and the system's answer",
        }
    }
}

/// Stage durations, for the summary line before exec.
struct Timer {
    last: Duration,
    stages: Vec<(Stage, Duration)>,
    /// The time spent sending reports, inside the stages' (`netinit.report=`).
    reports: Option<Duration>,
}

impl Timer {
    fn new() -> Self {
        Timer { last: sys::uptime(), stages: Vec::new(), reports: None }
    }

    /// The last stage's duration.
    fn last_stage(&self) -> Duration {
        self.stages.last().map(|(_, d)| *d).unwrap_or_default()
    }

    fn stage(&mut self, stage: Stage) {
        let now = sys::uptime();
        self.stages.push((stage, now.saturating_sub(self.last)));
        self.last = now;
    }

    fn summary(&self) -> String {
        let peak = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| peak_rss_kib(&s));
        summary_line(&self.stages, sys::uptime(), self.reports, peak)
    }
}

/// `boot took 5.21s since the kernel started: mounts 0.01s, modules 0.40s, ...; reports 0.02s; peak
/// RSS 4.1 MiB` (`reports` with `netinit.report=`: the part of the stages spent sending them).
fn summary_line(
    stages: &[(Stage, Duration)],
    uptime: Duration,
    reports: Option<Duration>,
    peak_rss_kib: Option<u64>,
) -> String {
    let parts: Vec<String> =
        stages.iter().map(|(s, d)| format!("{} {:.2}s", s.name(), d.as_secs_f64())).collect();
    let reports = reports.map(|d| format!("; reports {:.2}s", d.as_secs_f64())).unwrap_or_default();
    let peak = peak_rss_kib.map(|k| format!("; peak RSS {:.1} MiB", k as f64 / 1024.0)).unwrap_or_default();
    format!(
        "boot took {:.2}s since the kernel started: {}{reports}{peak}",
        uptime.as_secs_f64(),
        parts.join(", ")
    )
}

/// The peak resident set (`VmHWM`, in KiB) that `/proc/self/status` gives: netinit's own memory,
/// threads included, not the image's tmpfs pages.
fn peak_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// PID 1's entry point. Never returns.
pub fn pid1() -> ! {
    klog::init(true);
    std::panic::set_hook(Box::new(|info| {
        failure::fail(
            "netinit",
            &format!("netinit crashed: {info}"),
            "this is a bug in netinit: please report it with this console log",
            POLICY.get().unwrap_or(&FailurePolicy::default()),
            &mut || {},
        )
    }));
    let mut reports = Reporter::new();
    match run(&mut reports) {
        Ok(never) => match never {},
        Err(e) => {
            let (stage, what, hint) = (e.stage().name(), failure::chain(&e), e.hint());
            let policy = POLICY.get().copied().unwrap_or_default();
            failure::fail(stage, &what, hint, &policy, &mut || reports.failure(stage, &what, hint, &policy))
        }
    }
}

fn run(reports: &mut Reporter) -> Result<Infallible, BootError> {
    let mut timer = Timer::new();
    log::info!("starting, version {}", env!("CARGO_PKG_VERSION"));
    for (source, target, fstype, flags, data) in EARLY_MOUNTS {
        if let Err(e) = std::fs::create_dir_all(target) {
            log::warn!("creating {target}: {e}");
        }
        if mounted(Path::new(target)) {
            log::info!("{target} is already mounted");
            continue;
        }
        log::info!("mounting {target}");
        match sys::mount(source, Path::new(target), fstype, flags, data) {
            // EBUSY: already mounted (a kernel with CONFIG_DEVTMPFS_MOUNT mounts /dev itself).
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(source) => return Err(BootError::EarlyMount { target, source }),
        }
    }
    klog::lift_rate_limit();
    timer.stage(Stage::Mounts);

    // Bytes, not UTF-8: another program's parameter in Latin-1 must not stop the boot.
    let bytes = std::fs::read("/proc/cmdline").map_err(BootError::ReadCmdline)?;
    let text = String::from_utf8_lossy(&bytes);
    let parsed = cmdline::parse(&text);
    // Set once, here; `get_or_init` cannot fail.
    POLICY.get_or_init(|| parsed.config.failure);
    if parsed.config.debug {
        klog::debug_on_console();
    }
    for w in &parsed.warnings {
        log::warn!("cmdline: {w}");
    }
    for e in &parsed.errors {
        log::error!("cmdline: {e}");
    }
    if !parsed.errors.is_empty() {
        return Err(BootError::Cmdline(parsed.errors.len()));
    }
    let cfg = parsed.config;
    reports.configure(&cfg);
    // Before any certificate is checked: a clock from before this build fails every one.
    clock::raise_to_epoch();

    let coldplug = load_modules(&cfg)?;
    timer.stage(Stage::Modules);

    let network = net::up(&cfg.net).map_err(|e| match (&e, &coldplug) {
        (net::NetError::NoNic, Some(c)) => no_nic(&e, &c.nic_findings()),
        _ => BootError::Net(e),
    })?;
    let mut ntp: Vec<std::net::Ipv4Addr> = Vec::new();
    for server in network.iter().flat_map(|c| &c.ntp) {
        if !ntp.contains(server) {
            ntp.push(*server);
        }
    }
    clock::set_from_ntp(&ntp);
    timer.stage(Stage::Network);
    if let Some(target) = cfg.netconsole {
        netconsole::start(target, &network);
    }
    reports.network(&network, net::hostname(&network));
    if let Some(lease) = network.first() {
        reports.send(&Facts::Network { lease, elapsed: timer.last_stage() });
    }

    if let Some(proxy) = &cfg.image.proxy.server {
        let bypass: Vec<String> = cfg.image.proxy.bypass.iter().map(ToString::to_string).collect();
        let except =
            if bypass.is_empty() { String::new() } else { format!(" (not for {})", bypass.join(" ")) };
        log::info!("downloads go through the proxy {proxy}{except}");
    }
    let extras = fetch::Extras::for_image(&cfg.image)?;
    let streamed = if cfg.image.stream { stream::start(&cfg.image)? } else { None };
    let image = match streamed {
        Some(image) => image,
        None => fetch::download(&cfg.image)?,
    };
    reports.send(&Facts::Fetched(&image));
    timer.stage(Stage::Fetch);

    let new_root = rootfs::assemble(&image.path, &image.url.to_string(), cfg.overlay_size)?;
    reports.send(&Facts::Mounted { root: &new_root, image: &image.url });
    timer.stage(Stage::Rootfs);

    customize::apply(&new_root, &cfg.alpine, &network, &extras)?;
    timer.stage(Stage::Customize);

    if cfg.single {
        if let Err(why) = failure::rescue_shell("single") {
            log::warn!("{why}; going on with the boot");
        }
        timer.stage(Stage::RescueShell);
    }

    if let Some(late) = coldplug.and_then(modules::coldplug::Coldplug::finish) {
        log::info!(
            "modules: {} more loaded since the modules stage{}{}",
            if late.loaded.is_empty() { "nothing".to_owned() } else { late.loaded.len().to_string() },
            if late.loaded.is_empty() { String::new() } else { format!(": {}", late.loaded.join(" ")) },
            if late.failed.is_empty() { String::new() } else { format!("; {} failed", late.failed.len()) },
        );
    }

    let init = switch_root::choose_in(&new_root, cfg.init.as_deref(), &cfg.init_args)?;
    let (init_line, total) = (init.to_string(), sys::uptime());
    reports.write_record(&Record {
        lease: network.first(),
        image: &image,
        init: &init_line,
        total,
        stages: &timer.stages,
        cmdline: text.trim_end(),
        report: reports.url(),
    });
    reports.send(&Facts::Handoff { init: &init_line, total, stages: &timer.stages });
    if reports.enabled() {
        timer.reports = Some(reports.spent);
    }
    let keeper = prepare_keeper(&cfg, &network, &new_root);
    log::info!("switching root to {} and starting {init}", new_root.display());
    switch_root::enter(&new_root, &init, modloop_service::prepare)?;
    if keeper {
        start_keeper();
    }
    timer.stage(Stage::SwitchRoot);
    log::info!("{}", timer.summary());
    Ok(switch_root::exec(&init)?)
}

/// Whether to keep the boot NIC's DHCP lease after the switch (`netinit.keep_lease=`); when so,
/// leaves the keeper its state and a copy of this binary in `/run/netinit`, which moves into the
/// new root. Anything that fails is said, and the lease is then left as it is.
fn prepare_keeper(cfg: &cmdline::Config, network: &[net::Configured], new_root: &std::path::Path) -> bool {
    use net::keeper;
    let Some(c) = network.iter().find(|c| c.lease.is_some()) else { return false };
    let client = keeper::CLIENTS.iter().find(|p| new_root.join(p).symlink_metadata().is_ok());
    match (cfg.net.keep_lease, client) {
        (cmdline::KeepLease::No, _) => return false,
        (cmdline::KeepLease::Auto, Some(client)) => {
            log::info!("{}: leaving the DHCP lease to the image's /{client}", c.nic.name);
            return false;
        }
        _ => {}
    }
    let Some(state) = c.keeper_state(cfg) else { return false };
    let written = std::fs::copy("/init", keeper::BINARY)
        .and_then(|_| std::fs::write(keeper::STATE, keeper::state_text(&state)));
    match written {
        Ok(()) => true,
        Err(e) => {
            log::warn!("{}: the lease will not be kept: writing {}: {e}", c.nic.name, keeper::BINARY);
            false
        }
    }
}

/// Starts the lease keeper in the new root, in a process group of its own.
fn start_keeper() {
    use std::os::unix::process::CommandExt;
    let started = std::process::Command::new(net::keeper::BINARY)
        .arg("keep-lease")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
    match started {
        Ok(child) => log::info!(
            "the DHCP lease is kept by process {} ({} keep-lease)",
            child.id(),
            net::keeper::BINARY
        ),
        Err(e) => log::warn!("starting the lease keeper: {e}; the lease will not be renewed"),
    }
}

/// The 802.1Q driver, which `vlan=` needs: netinit has no modprobe for the kernel to ask.
const VLAN_MODULE: &str = "8021q";
/// The streamed root's drivers (`modloop_stream=`).
const STREAM_MODULES: [&str; 2] = ["nbd", "dm_mod"];
/// The bonding driver, which `bond=` needs (loaded with `max_bonds=0`, see `modules::params`).
const BOND_MODULE: &str = "bonding";

/// The modules stage: coldplug, which goes on in the background (returned, to be stopped before
/// the root is switched), or every packed module (`netinit.coldplug=no`, or an initramfs without
/// `modules.alias`).
fn load_modules(cfg: &cmdline::Config) -> Result<Option<modules::coldplug::Coldplug>, BootError> {
    let mut packed = modules::packed()?;
    match packed.coldplug.take() {
        Some((aliases, always)) if cfg.coldplug => {
            let dir = packed.dir.clone();
            // Modules the cmdline asks for by name, and those its interfaces need.
            let mut extra = cfg.modules.clone();
            if !cfg.net.vlans.is_empty() {
                extra.push(VLAN_MODULE.to_owned());
            }
            if !cfg.net.bonds.is_empty() {
                extra.push(BOND_MODULE.to_owned());
            }
            if cfg.netconsole.is_some() {
                extra.push(netconsole::MODULE.to_owned());
            }
            // The streamed root's, when packed: without them it falls back to the full download.
            if cfg.image.stream {
                extra.extend(
                    STREAM_MODULES.iter().filter(|m| packed.db.contains_key(**m)).map(|m| (*m).to_owned()),
                );
            }
            let (started, coldplug) =
                modules::coldplug::start(&dir, packed.db, aliases, &always, &extra, &cfg.blacklist)
                    .map_err(|e| modules::order_error(&dir, e))?;
            log::info!(
                "modules: {} loaded, {} already present, {} failed; in the background: {}the drivers of devices as they appear",
                started.now.loaded,
                started.now.already,
                started.now.failed.len(),
                match started.background {
                    0 => String::new(),
                    n => format!("{n} storage drivers, then "),
                }
            );
            Ok(Some(coldplug))
        }
        found => {
            if found.is_none() && cfg.coldplug && !packed.db.is_empty() {
                log::info!("modules: this initramfs has no modules.alias (built before coldplug): loading every packed module");
            }
            let loaded = modules::load_all(&packed, &cfg.modules, &cfg.blacklist)?;
            log::info!(
                "modules: {} loaded, {} already present, {} failed",
                loaded.loaded,
                loaded.already,
                loaded.failed.len()
            );
            Ok(None)
        }
    }
}

/// No NIC appeared: say why, when coldplug knows.
fn no_nic(e: &net::NetError, findings: &modules::coldplug::NicFindings) -> BootError {
    if !findings.refused.is_empty() {
        let refused: Vec<String> = findings
            .refused
            .iter()
            .map(|(m, by)| if m == by { m.clone() } else { format!("{m} (it needs {by})") })
            .collect();
        return BootError::NicDriverRefused(format!(
            "{e}: blacklist= refuses the driver of the network device here: {}",
            refused.join(", ")
        ));
    }
    if !findings.without_driver.is_empty() {
        let devices: Vec<&str> = findings.without_driver.iter().map(String::as_str).collect();
        return BootError::NoNicDriver(format!(
            "{e}: this initramfs has no driver for the network device {}",
            devices.join(", ")
        ));
    }
    BootError::Net(net::NetError::NoNic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_booted_system_gets_ptys_and_shared_memory() {
        let row = |target: &str| EARLY_MOUNTS.iter().position(|m| m.1 == target).unwrap();
        let (dev, pts, shm, run) = (row("/dev"), row("/dev/pts"), row("/dev/shm"), row("/run"));
        assert!(dev < pts && dev < shm, "mounted on /dev, after it");
        assert!(run > row("/proc"));
        let pts = EARLY_MOUNTS[pts];
        assert_eq!((pts.0, pts.2, pts.4), ("devpts", "devpts", "gid=5,mode=0620,ptmxmode=0666"));
        assert_eq!(pts.3, MountFlags::NOSUID | MountFlags::NOEXEC);
        let shm = EARLY_MOUNTS[shm];
        assert_eq!((shm.2, shm.4), ("tmpfs", "mode=1777"));
        assert_eq!(
            shm.3,
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::STRICTATIME
        );
        assert!(mounted(Path::new("/proc")), "the host's /proc is a mount point");
        assert!(!mounted(&std::env::temp_dir().join("netinit-no-such-dir")));
    }

    #[test]
    fn summary() {
        let ms = Duration::from_millis;
        assert_eq!(
            summary_line(
                &[(Stage::Mounts, ms(12)), (Stage::Modules, ms(400)), (Stage::Fetch, ms(2346))],
                ms(5210),
                None,
                None
            ),
            "boot took 5.21s since the kernel started: mounts 0.01s, modules 0.40s, fetch 2.35s"
        );
        assert_eq!(
            summary_line(&[(Stage::Mounts, ms(12))], ms(5210), None, Some(4198)),
            "boot took 5.21s since the kernel started: mounts 0.01s; peak RSS 4.1 MiB"
        );
        assert_eq!(
            summary_line(&[(Stage::Mounts, ms(12))], ms(5210), Some(ms(31)), Some(4198)),
            "boot took 5.21s since the kernel started: mounts 0.01s; reports 0.03s; peak RSS 4.1 MiB"
        );
        let status = "Name:\tnetinit\nVmPeak:\t   10240 kB\nVmHWM:\t    4198 kB\nVmRSS:\t 3000 kB\n";
        assert_eq!(peak_rss_kib(status), Some(4198));
        assert_eq!(peak_rss_kib("VmRSS:\t 3000 kB\n"), None);
        assert_eq!(peak_rss_kib("VmHWM:\t lots\n"), None);
    }

    #[test]
    fn error_chains() {
        let e = BootError::EarlyMount { target: "/proc", source: io::Error::from_raw_os_error(libc::ENODEV) };
        assert_eq!(failure::chain(&e), "mounting /proc: No such device (os error 19)");
        assert_eq!(e.stage(), Stage::Mounts);
        let e = BootError::from(rootfs::RootfsError::LoopAttach {
            path: "/run/netinit/image/root.squashfs".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        });
        assert_eq!(failure::chain(&e), "attaching /run/netinit/image/root.squashfs to a loop device: No such file or directory (os error 2)");
        assert_eq!(e.hint(), "is loop in modules-list?");
    }

    #[test]
    fn the_file_opening_names_the_stages_in_order() {
        let doc = include_str!("boot.rs").lines().nth(1).unwrap_or_default();
        let named: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).filter(|n| *n != "rescue shell").collect();
        assert_eq!(doc, format!("//! `{}`.", named.join(" -> ")));
    }
}
