//! Coldplug without udev: load the packed modules that the machine's devices ask for.
//!
//! `cargo xtask cpio` packs `modules.alias` (the device aliases of the packed modules) and
//! `modules.always` (the listed modules that no device asks for: `loop`, the file systems). At
//! boot, a uevent socket is opened first; then every device's `modalias` in sysfs is matched
//! against the aliases ([`super::alias`]), and the drivers found, with `modules.always` and
//! `modules=`, less what `blacklist=` refuses, are loaded in two parts:
//!
//! - now, on the boot's own thread: everything but storage drivers (NICs, their buses, the root's
//!   file systems), so that the network stage starts the moment this returns;
//! - in the background, on one thread of its own: first the drivers of devices that appear while
//!   drivers load (a PCI driver's virtio devices, USB, a late hotplug), as their uevents arrive,
//!   then the storage drivers. It keeps following uevents while the network comes up and the image
//!   downloads, so a NIC whose driver registers late still joins the DHCP race, and it is stopped,
//!   with a deadline, before the root is switched.
//!
//! The plan is pure and host-tested; [`start`] and the thread are the I/O.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::alias::AliasIndex;
use super::{
    blocked, load_one, load_order, log_refused, warn_not_packed, LoadResult, Loaded, Module, ModuleDb,
    OrderError,
};
use crate::sys;

/// The most devices looked at: a big server has a few thousand.
const MAX_DEVICES: usize = 100_000;
/// The uevent socket's receive buffer.
const UEVENT_BUFFER: usize = 4 << 20;
/// How long the background loader may take to finish once asked to stop: its queue is bounded by
/// the packed modules, but a driver's probe can hang.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Once asked to stop, the loader still waits for uevents this long after the last one (a SCSI
/// host scans its disks asynchronously), at most [`SETTLE_MAX`] in all.
const SETTLE_QUIET: Duration = Duration::from_millis(200);
const SETTLE_MAX: Duration = Duration::from_secs(2);

/// Whether a packed module is a storage driver: the boot does not need it when the root is in RAM,
/// so it loads off the critical path. `loop` is the root's and stays on it.
pub fn is_storage(m: &Module) -> bool {
    const DIRS: [&str; 9] = [
        "kernel/drivers/ata/",
        "kernel/drivers/scsi/",
        "kernel/drivers/nvme/",
        "kernel/drivers/md/",
        "kernel/drivers/mmc/",
        "kernel/drivers/target/",
        "kernel/drivers/usb/storage/",
        "kernel/drivers/message/",
        "kernel/drivers/block/",
    ];
    // The root's own devices are loaded with the NIC drivers, not in the background after them:
    // the loop device, and the streamed root's NBD and device-mapper.
    !matches!(m.name.as_str(), "loop" | "nbd" | "dm_mod") && DIRS.iter().any(|d| m.path.starts_with(d))
}

/// Whether a packed module is a NIC's driver (its path is under `drivers/net/`).
fn is_nic_driver(m: &Module) -> bool {
    m.path.starts_with("kernel/drivers/net/")
}

/// Whether a `modalias` is a network device's: a PCI device of class 02 (network controller), or a
/// virtio network device.
pub fn is_network_device(modalias: &str) -> bool {
    match modalias.split_once(':') {
        Some(("pci", id)) => id.split_once("bc").is_some_and(|(_, class)| class.starts_with("02")),
        Some(("virtio", id)) => id.starts_with("d00000001v"),
        _ => false,
    }
}

/// What coldplug will load, and what it found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// To load now, dependencies first.
    pub now: Vec<String>,
    /// To load in the background (storage drivers and what only they need), dependencies first.
    pub later: Vec<String>,
    /// Modules a device or `modules.always` asked for that `blacklist=` refuses, with the
    /// blacklisted module that blocks each.
    pub refused: BTreeMap<String, String>,
    /// Devices with a driver here, and without one.
    pub matched: usize,
    pub unmatched: Vec<String>,
    /// `modules=` names that are not packed.
    pub not_packed: Vec<String>,
}

/// The modules the devices `modaliases` ask for, plus `always` and `extra`, less `blacklist`,
/// split into now and later, and none of `loaded` (already loaded).
pub fn plan(
    db: &ModuleDb,
    aliases: &AliasIndex,
    always: &[String],
    extra: &[String],
    blacklist: &[String],
    modaliases: &[String],
    loaded: &BTreeSet<String>,
) -> Result<Plan, OrderError> {
    let mut p = Plan::default();
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for modalias in modaliases {
        let drivers: Vec<&str> =
            aliases.drivers(modalias).into_iter().filter(|d| db.contains_key(*d)).collect();
        if drivers.is_empty() {
            p.unmatched.push(modalias.clone());
        } else {
            p.matched += 1;
            wanted.extend(drivers.into_iter().map(str::to_owned));
        }
    }
    wanted.extend(always.iter().filter(|m| db.contains_key(*m)).cloned());
    for name in extra {
        if db.contains_key(name) {
            wanted.insert(name.clone());
        } else {
            p.not_packed.push(name.clone());
        }
    }
    let blocked = blocked(db, blacklist);
    for name in &wanted {
        if let Some(by) = blocked.get(name) {
            p.refused.insert(name.clone(), by.clone());
        }
    }
    wanted.retain(|m| !blocked.contains_key(m) && !loaded.contains(m));
    let (later, now): (Vec<String>, Vec<String>) = wanted.into_iter().partition(|m| is_storage(&db[m]));
    let now_order = load_order(db, &now)?;
    p.now = now_order.iter().map(|m| m.name.clone()).filter(|m| !loaded.contains(m)).collect();
    p.later = load_order(db, &later)?
        .iter()
        .map(|m| m.name.clone())
        .filter(|m| !loaded.contains(m) && !p.now.contains(m))
        .collect();
    Ok(p)
}

/// A kernel uevent, as the kernel broadcasts it: `ACTION@DEVPATH`, then `KEY=VALUE` fields,
/// NUL-separated. Messages in another shape (udev's own, which start with `libudev`) are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    pub action: String,
    pub devpath: String,
    pub subsystem: Option<String>,
    pub modalias: Option<String>,
}

pub fn parse_uevent(msg: &[u8]) -> Option<Uevent> {
    let mut fields = msg.split(|&b| b == 0).map(String::from_utf8_lossy);
    let head = fields.next()?;
    let (action, devpath) = head.split_once('@')?;
    if action.is_empty() || !devpath.starts_with('/') {
        return None;
    }
    let mut event =
        Uevent { action: action.to_owned(), devpath: devpath.to_owned(), subsystem: None, modalias: None };
    for field in fields {
        match field.split_once('=') {
            Some(("SUBSYSTEM", v)) => event.subsystem = Some(v.to_owned()),
            Some(("MODALIAS", v)) if v.len() <= super::alias::MAX_LEN => event.modalias = Some(v.to_owned()),
            _ => {}
        }
    }
    Some(event)
}

/// The `modalias` of every device on a bus (`<sys>/bus/*/devices/*/modalias`; each device is on
/// one bus, and a device without a bus has no driver to load), and the processor's
/// (`<sys>/devices/system/cpu/modalias`), in name order. At most [`MAX_DEVICES`].
pub fn device_modaliases(sys: &Path) -> Vec<String> {
    fn sorted(dir: &Path) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> =
            std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        paths.sort();
        paths
    }
    let mut files: Vec<PathBuf> = sorted(&sys.join("bus"))
        .iter()
        .flat_map(|bus| sorted(&bus.join("devices")))
        .map(|device| device.join("modalias"))
        .collect();
    files.push(sys.join("devices/system/cpu/modalias"));
    if files.len() > MAX_DEVICES {
        log::warn!("coldplug: looking at the first {MAX_DEVICES} of {} devices", files.len());
        files.truncate(MAX_DEVICES);
    }
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty() && t.len() <= super::alias::MAX_LEN)
        .collect()
}

/// What coldplug learned that explains a missing NIC, for the network stage's error.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NicFindings {
    /// NIC drivers a device asked for that `blacklist=` refused, with the module that blocks each.
    pub refused: BTreeMap<String, String>,
    /// Network devices with no driver in the initramfs.
    pub without_driver: BTreeSet<String>,
}

impl NicFindings {
    fn note(&mut self, db: &ModuleDb, modalias: &str, drivers: &[&str], refused: &BTreeMap<String, String>) {
        if drivers.is_empty() && is_network_device(modalias) {
            self.without_driver.insert(modalias.to_owned());
        }
        for d in drivers {
            if let (Some(by), true) = (refused.get(*d), db.get(*d).is_some_and(is_nic_driver)) {
                self.refused.insert((*d).to_owned(), by.clone());
            }
        }
    }
}

/// What the background loader did, when it stopped.
#[derive(Debug, Default)]
pub struct Late {
    /// Loaded for devices that appeared, and the storage drivers, in load order.
    pub loaded: Vec<String>,
    pub failed: Vec<String>,
}

/// The background loader, running.
pub struct Coldplug {
    stop: Arc<AtomicBool>,
    /// Ends the loader's wait for uevents at once when it is asked to stop.
    wake: Option<Arc<OwnedFd>>,
    done: mpsc::Receiver<Late>,
    findings: Arc<Mutex<NicFindings>>,
}

/// What [`start`] loaded on the boot's thread, and how many modules it left to the background.
#[derive(Debug)]
pub struct Started {
    pub now: Loaded,
    pub background: usize,
}

/// Everything the loader needs to decide on one more device.
struct Loader {
    dir: PathBuf,
    db: ModuleDb,
    aliases: AliasIndex,
    blocked: BTreeMap<String, String>,
    /// Loaded, or tried: nothing is loaded twice.
    done: BTreeSet<String>,
    findings: Arc<Mutex<NicFindings>>,
}

impl Loader {
    /// Loads `name` (its dependencies first) unless done; says what it loaded.
    fn load(&mut self, name: &str, why: &str, late: &mut Late) {
        let order: Vec<Module> = match load_order(&self.db, &[name.to_owned()]) {
            Ok(order) => order.into_iter().cloned().collect(),
            Err(e) => {
                log::warn!("modules: cannot load {name}: {e}");
                return;
            }
        };
        for m in order {
            if !self.done.insert(m.name.clone()) {
                continue;
            }
            match load_one(&self.dir, &m) {
                LoadResult::Loaded => {
                    log::info!("modules: loaded {} ({why})", m.name);
                    late.loaded.push(m.name);
                }
                LoadResult::Already => {}
                LoadResult::Failed => late.failed.push(m.name),
            }
        }
    }

    /// The drivers `modalias` asks for that may load and have not; notes what explains a missing NIC.
    fn drivers_for(&mut self, modalias: &str) -> Vec<String> {
        let drivers: Vec<&str> =
            self.aliases.drivers(modalias).into_iter().filter(|d| self.db.contains_key(*d)).collect();
        if let Ok(mut f) = self.findings.lock() {
            f.note(&self.db, modalias, &drivers, &self.blocked);
        }
        let mut out = Vec::new();
        for d in drivers {
            if let Some(by) = self.blocked.get(d) {
                if !self.done.contains(d) {
                    log::info!("modules: not loading {d} for {modalias}: blacklisted ({by})");
                    self.done.insert(d.to_owned());
                }
            } else if !self.done.contains(d) {
                out.push(d.to_owned());
            }
        }
        out
    }
}

/// Coldplug: plans from `/sys/devices`, loads the part the boot needs now, and starts the
/// background loader for the rest; `Err` only for a broken `modules.dep` (a cycle, a missing
/// dependency), which is the initramfs's fault.
pub fn start(
    dir: &Path,
    db: ModuleDb,
    aliases: AliasIndex,
    always: &[String],
    extra: &[String],
    blacklist: &[String],
) -> Result<(Started, Coldplug), OrderError> {
    // Opened before anything loads: a device a driver creates from now on is seen as a uevent.
    let socket = match sys::uevent_socket(UEVENT_BUFFER) {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!(
                "coldplug: cannot listen to kernel uevents ({e}); devices that appear later get no driver"
            );
            None
        }
    };
    let modaliases = device_modaliases(Path::new("/sys"));
    let p = plan(&db, &aliases, always, extra, blacklist, &modaliases, &BTreeSet::new())?;
    p.not_packed.iter().for_each(|name| warn_not_packed(name));
    log_refused(&p.refused);
    log::info!(
        "coldplug: {} devices, {} with a driver here ({} aliases), {} without",
        modaliases.len(),
        p.matched,
        aliases.len(),
        p.unmatched.len()
    );
    log::info!(
        "loading {} kernel modules for {}{}",
        p.now.len(),
        sys::kernel_release(),
        if p.now.is_empty() { String::new() } else { format!(": {}", p.now.join(" ")) }
    );
    let findings = Arc::new(Mutex::new(NicFindings::default()));
    let mut loader = Loader {
        dir: dir.to_owned(),
        blocked: blocked(&db, blacklist),
        db,
        aliases,
        done: BTreeSet::new(),
        findings: findings.clone(),
    };
    if let Ok(mut f) = findings.lock() {
        f.without_driver.extend(p.unmatched.iter().filter(|m| is_network_device(m)).cloned());
        for (module, by) in &p.refused {
            if loader.db.get(module).is_some_and(is_nic_driver) {
                f.refused.insert(module.clone(), by.clone());
            }
        }
    }
    // Refused once: a uevent for the same driver is not logged again.
    loader.done.extend(p.refused.keys().cloned());
    let mut started = Started { now: Loaded::default(), background: p.later.len() };
    for name in &p.now {
        loader.done.insert(name.clone());
        if let Some(m) = loader.db.get(name) {
            started.now.count(m, load_one(&loader.dir, m));
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, done) = mpsc::channel();
    let later: VecDeque<String> = p.later.into();
    let flag = stop.clone();
    let wake = match sys::eventfd() {
        Ok(fd) => Some(Arc::new(fd)),
        Err(e) => {
            log::debug!("coldplug: no eventfd ({e}); stopping waits for the next 50 ms tick");
            None
        }
    };
    let woken = wake.clone();
    let spawned = std::thread::Builder::new().name("coldplug".into()).spawn(move || {
        let late = follow(loader, socket, later, &flag, woken.as_deref());
        let _ = tx.send(late);
    });
    if let Err(e) = spawned {
        log::warn!("coldplug: cannot start the background loader ({e}); storage drivers are not loaded");
    }
    Ok((started, Coldplug { stop, wake, done, findings }))
}

/// The background loader's loop: uevents first, then the storage drivers, until asked to stop
/// and the devices have settled.
fn follow(
    mut loader: Loader,
    socket: Option<OwnedFd>,
    mut later: VecDeque<String>,
    stop: &AtomicBool,
    wake: Option<&OwnedFd>,
) -> Late {
    let mut late = Late::default();
    let mut queue: VecDeque<(String, String)> = VecDeque::new();
    let mut buf = vec![0u8; 8192];
    let mut stopping_since: Option<Duration> = None;
    let mut last_event = sys::uptime();
    loop {
        if let Some(socket) = &socket {
            loop {
                match sys::recv_now(socket, &mut buf) {
                    Ok(Some(n)) => {
                        let Some(event) = parse_uevent(buf.get(..n).unwrap_or(&[])) else { continue };
                        if let (true, Some(modalias)) = (event.action == "add", event.modalias) {
                            // Only a new device with a modalias may need a driver: settle on those.
                            last_event = sys::uptime();
                            for d in loader.drivers_for(&modalias) {
                                queue.push_back((d, modalias.clone()));
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        // Uevents were lost: what they announced is in sysfs now.
                        log::info!("coldplug: uevents overflowed; looking at /sys again");
                        for modalias in device_modaliases(Path::new("/sys")) {
                            for d in loader.drivers_for(&modalias) {
                                queue.push_back((d, modalias.clone()));
                            }
                        }
                    }
                    Err(e) => {
                        log::warn!("coldplug: reading uevents: {e}");
                        break;
                    }
                }
            }
        }
        // A NIC's driver before a disk's.
        if let Some(i) = queue.iter().position(|(d, _)| !loader.db.get(d).is_some_and(is_storage)) {
            if let Some((d, modalias)) = queue.remove(i) {
                loader.load(&d, &format!("for {modalias}"), &mut late);
            }
            continue;
        }
        if let Some((d, modalias)) = queue.pop_front() {
            loader.load(&d, &format!("for {modalias}"), &mut late);
            continue;
        }
        if let Some(d) = later.pop_front() {
            loader.load(&d, "storage", &mut late);
            continue;
        }
        let now = sys::uptime();
        let stopping = stop.load(Ordering::Acquire);
        let mut wait = TICK;
        if stopping {
            let since = *stopping_since.get_or_insert(now);
            let quiet = now.saturating_sub(last_event);
            if socket.is_none() || quiet >= SETTLE_QUIET || now.saturating_sub(since) >= SETTLE_MAX {
                break;
            }
            // No later than the moment the devices count as settled.
            wait = wait.min(SETTLE_QUIET.saturating_sub(quiet));
        }
        // The wake fd stays readable once signalled: it is watched only until the stop is seen.
        let fds: Vec<&OwnedFd> = socket.iter().chain(wake.filter(|_| !stopping)).collect();
        if fds.is_empty() {
            std::thread::sleep(wait);
        } else {
            let _ = sys::poll_readable(&fds, wait);
        }
    }
    late
}

/// How long the loader waits for a uevent before it looks at its stop flag again, if nothing wakes it.
const TICK: Duration = Duration::from_millis(50);

impl Coldplug {
    /// What explains a missing NIC, so far.
    pub fn nic_findings(&self) -> NicFindings {
        self.findings.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Stops the background loader once its work is done and the devices have settled, waiting at
    /// most [`STOP_TIMEOUT`]; says what it loaded.
    pub fn finish(self) -> Option<Late> {
        self.stop.store(true, Ordering::Release);
        if let Some(wake) = &self.wake {
            if let Err(e) = sys::eventfd_signal(wake) {
                log::debug!("coldplug: waking the loader: {e}");
            }
        }
        match self.done.recv_timeout(STOP_TIMEOUT) {
            Ok(late) => Some(late),
            Err(_) => {
                log::warn!(
                    "coldplug: the background module loader is still busy after {}s; going on without it",
                    STOP_TIMEOUT.as_secs()
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_modules_dep;
    use super::*;

    /// A packed tree as `cargo xtask cpio` writes it for the default list (abridged).
    const DEP: &str = "\
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/ethernet/intel/e1000/e1000.ko:
kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/loop.ko:
kernel/drivers/scsi/scsi_mod.ko:
kernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/ata/libata.ko: kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/ata/libahci.ko: kernel/drivers/ata/libata.ko
kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libahci.ko kernel/drivers/ata/libata.ko
kernel/fs/squashfs/squashfs.ko:
kernel/fs/overlayfs/overlay.ko:
";

    const ALIASES: &str = "\
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias virtio:d00000002v* virtio_blk
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias scsi:t-0x00* sd_mod
alias pci:v000015B3d00001017sv*sd*bc*sc*i* mlx5_core
";

    /// qemu's q35 machine with an e1000e NIC, an AHCI controller, a virtio disk and devices
    /// nothing here drives.
    const Q35: [&str; 5] = [
        "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00",
        "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
        "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
        "pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00",
        "acpi:PNP0C0C:",
    ];

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn planned(modaliases: &[&str], extra: &[&str], blacklist: &[&str], loaded: &[&str]) -> Plan {
        let (db, _) = parse_modules_dep(DEP);
        let (aliases, _) = AliasIndex::parse(ALIASES);
        let always = strings(&["loop", "squashfs", "overlay"]);
        let loaded: BTreeSet<String> = strings(loaded).into_iter().collect();
        plan(&db, &aliases, &always, &strings(extra), &strings(blacklist), &strings(modaliases), &loaded)
            .unwrap()
    }

    #[test]
    fn the_devices_choose_the_modules_and_storage_waits() {
        let p = planned(&Q35, &[], &[], &[]);
        assert_eq!(
            p.now,
            [
                "e1000e",
                "loop",
                "overlay",
                "squashfs",
                "virtio_ring",
                "virtio",
                "virtio_pci_modern_dev",
                "virtio_pci"
            ]
        );
        assert_eq!(p.later, ["scsi_mod", "libata", "libahci", "ahci"]);
        assert_eq!((p.matched, p.unmatched.len()), (3, 2));
        assert!(p.refused.is_empty() && p.not_packed.is_empty());
        assert!(
            !p.now.iter().chain(&p.later).any(|m| m == "e1000" || m == "mlx5_core"),
            "no device, no driver"
        );
    }

    #[test]
    fn modules_and_blacklist_keep_their_meaning() {
        let p = planned(&Q35, &["e1000", "ixgbe"], &["libata"], &[]);
        assert!(p.now.contains(&"e1000".to_string()), "modules= loads what no device asks for");
        assert_eq!(p.not_packed, ["ixgbe"]);
        assert_eq!(p.refused, BTreeMap::from([("ahci".to_string(), "libata".to_string())]));
        assert!(p.later.is_empty(), "nothing that needs libata: {:?}", p.later);
        let p = planned(&Q35, &[], &["e1000e"], &[]);
        assert_eq!(p.refused, BTreeMap::from([("e1000e".to_string(), "e1000e".to_string())]));
        assert!(!p.now.contains(&"e1000e".to_string()));
    }

    #[test]
    fn a_device_that_appears_later_loads_only_what_is_not_loaded() {
        let done =
            ["virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci", "loop", "overlay", "squashfs"];
        let p = planned(&["virtio:d00000001v00001AF4"], &[], &[], &done);
        assert_eq!(p.now, ["failover", "net_failover", "virtio_net"]);
        let p = planned(&["virtio:d00000002v00001AF4", "scsi:t-0x00"], &[], &[], &done);
        assert_eq!(
            (p.now.as_slice(), p.later.as_slice()),
            (&[][..], &strings(&["scsi_mod", "sd_mod", "virtio_blk"])[..])
        );
    }

    #[test]
    fn network_devices() {
        for (modalias, network) in [
            ("pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00", true),
            ("pci:v000010ECd00008168sv00001849sd00008168bc02sc00i00", true),
            ("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", false),
            ("virtio:d00000001v00001AF4", true),
            ("virtio:d00000002v00001AF4", false),
            ("usb:v0BDAp8153d3000dc00dsc00dp00icFFisc00ip00in00", false),
        ] {
            assert_eq!(is_network_device(modalias), network, "{modalias}");
        }
        let (db, _) = parse_modules_dep(DEP);
        let mut f = NicFindings::default();
        let refused = BTreeMap::from([("virtio_net".to_string(), "failover".to_string())]);
        f.note(&db, "virtio:d00000001v00001AF4", &["virtio_net"], &refused);
        f.note(&db, "pci:v000010ECd00008168sv00001849sd00008168bc02sc00i00", &[], &refused);
        f.note(&db, "acpi:PNP0C0C:", &[], &refused);
        assert_eq!(f.refused, refused);
        assert_eq!(
            f.without_driver,
            BTreeSet::from(["pci:v000010ECd00008168sv00001849sd00008168bc02sc00i00".to_string()])
        );
    }

    #[test]
    fn uevents() {
        let msg = b"add@/devices/pci0000:00/0000:00:03.0/virtio0\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:03.0/virtio0\0SUBSYSTEM=virtio\0MODALIAS=virtio:d00000001v00001AF4\0SEQNUM=1234\0";
        assert_eq!(
            parse_uevent(msg),
            Some(Uevent {
                action: "add".into(),
                devpath: "/devices/pci0000:00/0000:00:03.0/virtio0".into(),
                subsystem: Some("virtio".into()),
                modalias: Some("virtio:d00000001v00001AF4".into()),
            })
        );
        let bind = parse_uevent(b"bind@/devices/x\0SUBSYSTEM=pci\0").unwrap();
        assert_eq!((bind.action.as_str(), bind.modalias), ("bind", None));
        assert_eq!(parse_uevent(b"libudev\0\xfe\xed\xca\xfe"), None, "udev's messages are not the kernel's");
        assert_eq!(parse_uevent(b""), None);
        assert_eq!(parse_uevent(b"@/x\0"), None);
        assert_eq!(parse_uevent(b"add@relative\0"), None);
    }

    #[test]
    fn the_devices_are_those_on_a_bus() {
        let root = std::env::temp_dir().join(format!("netinit-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let nic = root.join("devices/pci0000:00/0000:00:02.0");
        let virtio = nic.join("virtio0");
        let bridge = root.join("devices/pci0000:00/0000:00:00.0");
        for dir in [&virtio, &bridge, &root.join("bus/pci/devices"), &root.join("bus/virtio/devices")] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::create_dir_all(root.join("bus/platform")).unwrap();
        std::fs::write(nic.join("modalias"), "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00\n")
            .unwrap();
        std::fs::write(virtio.join("modalias"), "virtio:d00000001v00001AF4\n").unwrap();
        std::fs::write(bridge.join("modalias"), "\n").unwrap();
        std::os::unix::fs::symlink(&nic, root.join("bus/pci/devices/0000:00:02.0")).unwrap();
        std::os::unix::fs::symlink(&bridge, root.join("bus/pci/devices/0000:00:00.0")).unwrap();
        std::os::unix::fs::symlink(&virtio, root.join("bus/virtio/devices/virtio0")).unwrap();
        std::fs::create_dir_all(root.join("devices/system/cpu")).unwrap();
        std::fs::write(
            root.join("devices/system/cpu/modalias"),
            "cpu:type:x86,ven0000fam0006mod003F:feature:,0000\n",
        )
        .unwrap();
        assert_eq!(
            device_modaliases(&root),
            [
                "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00",
                "virtio:d00000001v00001AF4",
                "cpu:type:x86,ven0000fam0006mod003F:feature:,0000"
            ]
        );
        assert!(device_modaliases(&root.join("missing")).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
