//! VM scenarios, one file each in `qemu-tests/`, read like a transcript:
//!
//! ```text
//! # What the scenario proves (the first comment lines are its description).
//! cmdline: modloop={server}/root.squashfs ip=dhcp
//! timeout: 180
//! expect: netinit: mounting /proc
//! expect: netinit-test-root: pid=1
//! forbid: Kernel panic
//! ```
//!
//! `expect` lines must appear on the console in this order; `send` lines are typed into the console
//! (after the `expect` before them has matched); `forbid` lines must never appear; after the last
//! step the VM must power off or reboot by itself. In any of them `{server}` is the test HTTP server
//! as the guest sees it on qemu's user network (`http://10.0.2.2:PORT`), `{gw0}`, `{gw1}`... the
//! bridges of a test network (see `netlab`), `{https}` the test HTTPS server (its certificate from
//! the test CA, which only the `trusted` initramfs carries), and `{root_sha256}` the test image's
//! SHA-256, `{proxy_user}` the `user:password` `lab: proxy`'s proxy wants. Every
//! scenario also forbids a kernel panic and a netinit crash.
//!
//! `monitor:` lines are commands for qemu's monitor, run in order with the other steps
//! (`monitor: set_link n1 off` before the first `expect` holds NIC 1's link down from the start).
//!
//! `initramfs:` picks the test initramfs: `plain` (the default, with a rescue shell), `trusted` (also
//! trusting the test signing key and CA), `wrong-kernel` (its modules filed under another release),
//! `no-nbd` (without the streamed root's drivers, nbd and dm_mod),
//! or `split` (the plain one as two archives, `cargo xtask cpio --split`, which `boot: ipxe` loads
//! with two `initrd` lines).
//!
//! `kernels:` names the test kernels to boot (`all`, the two cloud kernels of `kernel::ALL`, or names
//! such as `6.1 6.12 6.1-generic`; the default is the first of `kernel::ALL`). The scenario runs once on each, each kernel with initramfs built from its
//! own modules; runs on other kernels than the default are named `NAME@6.12`. `{release}` is the
//! booted kernel's release, `{kernel}` its name; the test server serves its files under
//! `by-kernel/{kernel}/` too, for a fault path of each run's own.
//!
//! `user-nic: MODEL [OPTION]...` picks the qemu device of the NIC on qemu's user network
//! (`virtio-net-pci` by default; `e1000`, `e1000e`) and adds options to its `-netdev`
//! (`ipv4=off`: a NIC no DHCP server answers). `qemu:` lines add qemu arguments (a disk).
//!
//! `lab: proxy` and `lab: ntp` add servers to the test network (see `netlab`); `log: NAME TEXT`
//! lines must each find TEXT in the lab's log NAME (`proxy`) once the VM is done.
//!
//! `record: reports` starts an HTTP recorder on 127.0.0.1 for this run (`recorder.rs`, in
//! xtask's process) that answers every POST with 204 and writes each body as one line of
//! `logs/NAME.reports.jsonl`; `{reports}` is its URL as the guest sees it (`http://10.0.2.2:PORT`).
//! `record: netconsole` starts a UDP listener writing every datagram to `logs/NAME.netconsole.log`;
//! `{netconsole}` is its `10.0.2.2:PORT`. `{dead}` is `http://10.0.2.2:PORT` for a port where
//! nothing listens. `log: reports TEXT` and `log: netconsole TEXT` check those files, on any
//! network, and in order: each TEXT must come after the one of the line before it.
//!
//! `nic:` lines give the guest's NICs in order (`user`, the default; `none`, a bridge without DHCP;
//! `dhcp`; `dhcp-after SECONDS`; `dhcp-lease SECONDS [outage FROM TO]`, leases that short, and
//! the server away from FROM to TO seconds after the lab starts (its log is the lab log `dhcp0`);
//! `dhcp-vlan ID`, a VLAN trunk; `slaac`, `dhcp6` and `dual-stack`,
//! networks with IPv6, whose bridge addresses are `{gw6_0}`...; `lacp` twice, NICs 0 and 1 as the
//! two links of an 802.3ad bond to the LACP partner VM, whose console is the lab log `partner`;
//! `bridge-of J`, a second tap on NIC J's bridge: see `netlab`). `boot: ipxe` boots through the
//! NIC's iPXE ROM: qemu's DHCP hands it
//! a script over TFTP, in README's form, which fetches the kernel and initramfs over HTTP with
//! `cmdline` appended. `firmware: uefi` boots the machine with OVMF (and iPXE's EFI driver from
//! qemu's `efi-virtio.rom`) instead of SeaBIOS (`firmware: bios`, the default).
//!
//! `arch: aarch64` boots an arm64 guest (`qemu-system-aarch64 -M virt`, console `ttyAMA0`) on
//! the arm64 test kernel (`6.1-arm64`, the only one `kernels:` may then name), with the arm64
//! `/init`; its test root, with arm64 busybox, is `{server}/arm64/root.squashfs` (signed beside it),
//! and `{root_sha256}` is that root's. `firmware: uefi` is then EDK2's ArmVirtQemu, booting
//! `-kernel` through the EFI stub; `boot: ipxe` and `initramfs: split` are x86_64's only.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::arch::Arch;
use crate::netlab::{self, Lab, Nic, Service};
use crate::vm::{Boot, Firmware, Spec, Vm};
use crate::{kernel, recorder};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Wait for a console line containing this.
    Expect(String),
    /// Type this and Enter.
    Send(String),
    /// A command for qemu's monitor, e.g. `set_link n1 on`.
    Monitor(String),
}

/// The test initramfs a scenario boots (`initramfs:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initramfs {
    /// With the rescue shell.
    Plain,
    /// Also trusting the test signing key and the test CA.
    Trusted,
    /// The plain one, its modules filed under another kernel release.
    WrongKernel,
    /// The plain one without the streamed root's drivers (`nbd`, `dm_mod`; default kernel only).
    NoNbd,
    /// The plain one as `--split` writes it: netinit's archive and the modules archive, which
    /// iPXE loads with two `initrd` lines (`boot: ipxe`; built for the default kernel).
    Split,
}

/// The files iPXE loads as initrds, by the names the test server serves them under.
pub const SPLIT_INITRDS: [&str; 2] = ["initramfs-split.cpio.gz", "initramfs-split-modules.cpio.gz"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub cmdline: String,
    pub steps: Vec<Step>,
    pub forbids: Vec<String>,
    pub timeout: Duration,
    pub nics: Vec<Nic>,
    /// Boot through iPXE instead of qemu's `-kernel`.
    pub ipxe: bool,
    /// SeaBIOS or OVMF.
    pub firmware: Firmware,
    /// Which test initramfs to boot.
    pub initramfs: Initramfs,
    /// The kernels it runs on (`kernels:`).
    pub kernels: Vec<&'static kernel::Spec>,
    /// The kernel this run boots.
    pub kernel: &'static kernel::Spec,
    /// `user-nic:`: the qemu device model of the user-network NIC, and options for its `-netdev`.
    pub user_nic: (String, String),
    /// `qemu:`: more qemu arguments (a disk, say).
    pub qemu: Vec<String>,
    /// `lab:`: servers added to the test network.
    pub services: Vec<Service>,
    /// `log: NAME TEXT`: lines a lab log must hold once the VM is done.
    pub logs: Vec<(String, String)>,
    /// `record:`: the recorders this run starts (`reports`, `netconsole`).
    pub records: Vec<String>,
    /// `arch:`: the guest's machine.
    pub arch: Arch,
}

/// The recorders a scenario may ask for, which are also the names of their `log:` files.
const RECORDS: [&str; 2] = ["reports", "netconsole"];

/// Lines every scenario forbids.
const ALWAYS_FORBIDDEN: [&str; 2] = ["Kernel panic", "netinit crashed"];

pub fn parse(name: &str, text: &str) -> Result<Scenario, String> {
    let mut s = Scenario {
        name: name.to_owned(),
        description: String::new(),
        cmdline: String::new(),
        steps: Vec::new(),
        forbids: ALWAYS_FORBIDDEN.iter().map(|f| f.to_string()).collect(),
        timeout: Duration::from_secs(180),
        nics: Vec::new(),
        ipxe: false,
        firmware: Firmware::Bios,
        initramfs: Initramfs::Plain,
        kernels: vec![kernel::ALL[0]],
        kernel: kernel::ALL[0],
        user_nic: ("virtio-net-pci".into(), String::new()),
        qemu: Vec::new(),
        services: Vec::new(),
        logs: Vec::new(),
        records: Vec::new(),
        arch: Arch::X86_64,
    };
    let mut kernels_given = false;
    let mut in_header = true;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix('#') {
            if in_header {
                s.description.push_str(comment.trim());
                s.description.push(' ');
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        in_header = false;
        let (key, value) = line.split_once(':').ok_or(format!("{name}:{}: expected `key: value`", n + 1))?;
        let value = value.trim().to_owned();
        match key.trim() {
            "cmdline" => s.cmdline = value,
            "expect" => s.steps.push(Step::Expect(value)),
            "send" => s.steps.push(Step::Send(value)),
            "monitor" => s.steps.push(Step::Monitor(value)),
            "forbid" => s.forbids.push(value),
            "timeout" => {
                s.timeout = Duration::from_secs(
                    value.parse().map_err(|_| format!("{name}:{}: timeout is whole seconds", n + 1))?,
                )
            }
            "initramfs" => match value.as_str() {
                "plain" => s.initramfs = Initramfs::Plain,
                "trusted" => s.initramfs = Initramfs::Trusted,
                "wrong-kernel" => s.initramfs = Initramfs::WrongKernel,
                "split" => s.initramfs = Initramfs::Split,
                "no-nbd" => s.initramfs = Initramfs::NoNbd,
                _ => {
                    return Err(format!(
                        "{name}:{}: initramfs is plain, trusted, wrong-kernel or split",
                        n + 1
                    ))
                }
            },
            "kernels" => {
                s.kernels = parse_kernels(&value).map_err(|e| format!("{name}:{}: {e}", n + 1))?;
                kernels_given = true;
            }
            "arch" => s.arch = Arch::parse(&value).map_err(|e| format!("{name}:{}: {e}", n + 1))?,
            "nic" => s.nics.push(Nic::parse(&value).map_err(|e| format!("{name}:{}: {e}", n + 1))?),
            "user-nic" => {
                let mut words = value.split_whitespace();
                let model =
                    words.next().ok_or(format!("{name}:{}: user-nic: MODEL [NETDEV-OPTIONS]", n + 1))?;
                s.user_nic = (model.to_owned(), words.map(|w| format!(",{w}")).collect());
            }
            "qemu" => s.qemu.extend(value.split_whitespace().map(str::to_owned)),
            "lab" => s.services.push(Service::parse(&value).map_err(|e| format!("{name}:{}: {e}", n + 1))?),
            "log" => match value.split_once(' ') {
                Some((log, text)) if !text.trim().is_empty() => {
                    s.logs.push((log.to_owned(), text.trim().to_owned()))
                }
                _ => return Err(format!("{name}:{}: log: NAME TEXT", n + 1)),
            },
            "record" if RECORDS.contains(&value.as_str()) => s.records.push(value),
            "record" => return Err(format!("{name}:{}: record is reports or netconsole", n + 1)),
            "firmware" => match value.as_str() {
                "bios" => s.firmware = Firmware::Bios,
                "uefi" => s.firmware = Firmware::Uefi,
                _ => return Err(format!("{name}:{}: firmware is bios or uefi", n + 1)),
            },
            "boot" => match value.as_str() {
                "ipxe" => s.ipxe = true,
                "kernel" => s.ipxe = false,
                _ => return Err(format!("{name}:{}: boot is ipxe or kernel", n + 1)),
            },
            other => return Err(format!("{name}:{}: unknown key {other:?}", n + 1)),
        }
    }
    s.description = s.description.trim().to_owned();
    if !kernels_given {
        s.kernels = vec![kernel::default_for(s.arch)];
    }
    s.kernel = s.kernels[0];
    if let Some(k) = s.kernels.iter().find(|k| k.arch != s.arch) {
        return Err(format!(
            "{name}: kernel {} is for {}, not arch {}",
            k.name,
            k.arch.name(),
            s.arch.name()
        ));
    }
    if s.arch != Arch::X86_64 && (s.ipxe || s.initramfs == Initramfs::Split) {
        return Err(format!("{name}: boot: ipxe and initramfs: split are for x86_64 only"));
    }
    if s.nics.is_empty() {
        s.nics.push(Nic::User);
    }
    if s.initramfs == Initramfs::Split && !s.ipxe {
        return Err(format!(
            "{name}: initramfs: split boots through iPXE (boot: ipxe), which loads both archives"
        ));
    }
    if s.ipxe && s.nics != [Nic::User] {
        return Err(format!("{name}: boot: ipxe runs on qemu's user network (nic: user)"));
    }
    if let Some((log, _)) =
        s.logs.iter().find(|(l, _)| RECORDS.contains(&l.as_str()) && !s.records.contains(l))
    {
        return Err(format!("{name}: log: {log} needs record: {log}"));
    }
    let lab_logs = s.logs.iter().any(|(l, _)| !RECORDS.contains(&l.as_str()));
    if (!s.services.is_empty() || lab_logs) && s.nics.contains(&Nic::User) {
        return Err(format!("{name}: lab: and log: need a test network (nic: dhcp...)"));
    }
    if s.cmdline.is_empty() || !s.steps.iter().any(|st| matches!(st, Step::Expect(_))) {
        return Err(format!("{name}: needs a cmdline and at least one expect"));
    }
    Ok(s)
}

/// `kernels:`: `all`, or test kernels by name.
fn parse_kernels(value: &str) -> Result<Vec<&'static kernel::Spec>, String> {
    if value == "all" {
        return Ok(kernel::ALL.to_vec());
    }
    let names: Vec<&str> = kernel::KNOWN.iter().map(|k| k.name).collect();
    let kernels = value
        .split_whitespace()
        .map(|n| {
            kernel::by_name(n).ok_or(format!("no test kernel {n:?}: kernels is all or some of {names:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if kernels.is_empty() {
        return Err(format!("kernels is all or some of {names:?}"));
    }
    Ok(kernels)
}

/// A scenario's runs, one per kernel it names; the run on its arch's default kernel keeps the plain name.
pub fn runs(s: &Scenario) -> Vec<Scenario> {
    s.kernels
        .iter()
        .map(|&k| Scenario {
            name: if k == kernel::default_for(s.arch) {
                s.name.clone()
            } else {
                format!("{}@{}", s.name, k.name)
            },
            kernel: k,
            ..s.clone()
        })
        .collect()
}

/// Every `*.scenario` file of `dir`, by name.
pub fn load_all(dir: &Path) -> Result<Vec<Scenario>, String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "scenario") {
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            out.push(parse(&name, &text)?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub struct Outcome {
    pub failure: Option<String>,
    pub transcript: Vec<String>,
    pub elapsed: Duration,
}

/// A test kernel and the test initramfs built from its modules.
pub struct Boots {
    pub spec: &'static kernel::Spec,
    pub kernel: std::path::PathBuf,
    pub initrd: std::path::PathBuf,
    /// The same initramfs, trusting the test signing key.
    pub initrd_trusted: std::path::PathBuf,
    /// The plain initramfs with its modules filed under another kernel release (x86_64 only).
    pub initrd_wrong_kernel: Option<std::path::PathBuf>,
    /// Whether the test server serves this kernel's split archives (as [`SPLIT_INITRDS`]).
    pub split: bool,
    /// The plain initramfs without `nbd` and `dm_mod` (x86_64 only).
    pub initrd_no_nbd: Option<std::path::PathBuf>,
}

/// Where the VMs run: kernels and initramfs, the test files and the server's port, where logs go.
pub struct Env {
    /// One for each kernel the scenarios boot.
    pub boots: Vec<Boots>,
    pub port: u16,
    /// The test HTTPS server's port (`openssl s_server`, certificate from the test CA).
    pub https_port: u16,
    /// The SHA-256 of each machine's test root (see `image::ensure_arch`).
    pub root_sha256: Vec<(Arch, String)>,
    pub www: std::path::PathBuf,
    pub logs: std::path::PathBuf,
    /// The test HTTPS server's certificate and key.
    pub tls: (std::path::PathBuf, std::path::PathBuf),
    /// The LACP partner VM (`nic: lacp`), built when a scenario to run has one.
    pub partner: Option<crate::partner::Partner>,
}

/// Fills in `{server}`, `{gw0}`..., `{root_sha256}`, `{release}` and `{kernel}`.
fn expand(text: &str, s: &Scenario, env: &Env) -> String {
    let mut out = text
        .replace("{release}", s.kernel.release)
        .replace("{kernel}", s.kernel.name)
        .replace("{server}", &format!("http://10.0.2.2:{}", env.port))
        .replace("{https}", &format!("https://10.0.2.2:{}", env.https_port))
        .replace("{proxy_user}", &format!("{}:{}", netlab::PROXY_USER.0, netlab::PROXY_USER.1));
    for i in 0..4 {
        out = out.replace(&format!("{{gw{i}}}"), &netlab::gateway(i));
        out = out.replace(&format!("{{gw6_{i}}}"), &netlab::gateway6(i));
    }
    let sha = env.root_sha256.iter().find(|(a, _)| *a == s.arch).map_or("", |(_, sha)| sha.as_str());
    out.replace("{root_sha256}", sha)
}

/// The iPXE script a `boot: ipxe` scenario's VM gets over TFTP, in README's form: it loads the same
/// kernel and initramfs over HTTP (the two archives of `initramfs: split`, one `initrd` line each),
/// names each initramfs on the kernel line (`initrd=`, which the EFI stub of older iPXE builds needs
/// to find it) and passes BOOTIF as iPXE knows it.
fn ipxe_script(s: &Scenario, env: &Env) -> String {
    let server = format!("http://10.0.2.2:{}", env.port);
    let initrds: &[&str] = match s.initramfs {
        Initramfs::Split => &SPLIT_INITRDS,
        _ => &["initramfs.cpio.gz"],
    };
    let named: Vec<String> = initrds.iter().map(|name| format!("initrd={name} ")).collect();
    let lines: Vec<String> = initrds.iter().map(|name| format!("initrd {server}/{name}\n")).collect();
    format!(
        "#!ipxe\ndhcp\nkernel {server}/vmlinuz {}{} BOOTIF=01-${{netX/mac:hexhyp}}\n{}boot\n",
        named.concat(),
        kernel_cmdline(s, env),
        lines.concat()
    )
}

pub fn kernel_cmdline(s: &Scenario, env: &Env) -> String {
    format!("{} {}", s.arch.console(), expand(&s.cmdline, s, env))
}

/// This run's recorders (`record:`), and the port `{dead}` names.
struct Records {
    started: Vec<(String, recorder::Recorder)>,
    dead: u16,
}

impl Records {
    fn start(s: &Scenario, env: &Env) -> Result<Records, String> {
        let mut started = Vec::new();
        for name in &s.records {
            let file = env.logs.join(format!(
                "{}.{}",
                s.name,
                if name == "reports" { "reports.jsonl" } else { "netconsole.log" }
            ));
            let rec = match name.as_str() {
                "reports" => recorder::http(file),
                _ => recorder::udp(file),
            };
            started.push((name.clone(), rec.map_err(|e| format!("starting the {name} recorder: {e}"))?));
        }
        let dead = recorder::dead_port().map_err(|e| format!("finding a free port: {e}"))?;
        Ok(Records { started, dead })
    }

    /// Fills in `{reports}`, `{netconsole}` and `{dead}`.
    fn expand(&self, text: &str) -> String {
        let mut out = text.replace("{dead}", &format!("http://10.0.2.2:{}", self.dead));
        for (name, rec) in &self.started {
            let value = match name.as_str() {
                "reports" => format!("http://10.0.2.2:{}", rec.port),
                _ => format!("10.0.2.2:{}", rec.port),
            };
            out = out.replace(&format!("{{{name}}}"), &value);
        }
        out
    }

    /// The first `log:` line for a recorder that its file does not hold in order.
    fn check(&self, s: &Scenario, env: &Env) -> Option<String> {
        self.started.iter().find_map(|(name, rec)| {
            let texts: Vec<String> = s
                .logs
                .iter()
                .filter(|(l, _)| l == name)
                .map(|(_, t)| self.expand(&expand(t, s, env)))
                .collect();
            let held = std::fs::read_to_string(&rec.file).unwrap_or_default();
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            recorder::in_order(&held, &texts).err().map(|text| {
                format!("{} does not hold {text:?} (after the lines before it)", rec.file.display())
            })
        })
    }
}

pub fn run(s: &Scenario, env: &Env, echo: bool) -> Outcome {
    let start = Instant::now();
    let deadline = start + s.timeout;
    let failed = |e: String| Outcome { failure: Some(e), transcript: Vec::new(), elapsed: start.elapsed() };
    let records = match Records::start(s, env) {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let lab = match s.nics.as_slice() {
        [Nic::User] => None,
        nics => match Lab::create(
            &s.name,
            nics,
            &s.services,
            &netlab::Files {
                www: &env.www,
                logs: &env.logs,
                tls: (&env.tls.0, &env.tls.1),
                partner: env.partner.as_ref(),
            },
        ) {
            Ok(lab) => Some(lab),
            Err(e) => return failed(format!("building the test network: {e}")),
        },
    };
    let nics = match (&lab, s.ipxe) {
        (Some(_), _) => Lab::qemu_args(&s.nics),
        (None, false) => vec![
            "-netdev".into(),
            format!("user,id=n0{}", s.user_nic.1),
            "-device".into(),
            format!("{},netdev=n0,romfile=", s.user_nic.0),
        ],
        (None, true) => {
            let tftp = env.logs.join(format!("tftp-{}", s.name));
            let written = std::fs::create_dir_all(&tftp)
                .and_then(|()| std::fs::write(tftp.join("boot.ipxe"), records.expand(&ipxe_script(s, env))));
            if let Err(e) = written {
                return failed(format!("writing the iPXE script: {e}"));
            }
            let netdev = format!("user,id=n0,tftp={},bootfile=boot.ipxe", tftp.display());
            // OVMF runs the NIC's EFI driver: qemu's efi-virtio.rom has iPXE for both firmwares.
            let device = match s.firmware {
                Firmware::Bios => "virtio-net-pci,netdev=n0".to_owned(),
                Firmware::Uefi => {
                    format!("virtio-net-pci,netdev=n0,romfile={},bootindex=1", crate::host::EFI_VIRTIO_ROM)
                }
            };
            vec!["-netdev".into(), netdev, "-device".into(), device]
        }
    };
    let Some(boots) = env.boots.iter().find(|b| b.spec == s.kernel) else {
        return failed(format!("no initramfs was built for kernel {}", s.kernel.name));
    };
    let initrd = match s.initramfs {
        Initramfs::Plain => &boots.initrd,
        Initramfs::Trusted => &boots.initrd_trusted,
        Initramfs::WrongKernel => match &boots.initrd_wrong_kernel {
            Some(initrd) => initrd,
            None => {
                return failed(format!("no wrong-kernel initramfs is built for kernel {}", s.kernel.name))
            }
        },
        Initramfs::NoNbd => match &boots.initrd_no_nbd {
            Some(initrd) => initrd,
            None => return failed(format!("no no-nbd initramfs is built for kernel {}", s.kernel.name)),
        },
        // Served to iPXE under SPLIT_INITRDS' names; qemu's -initrd is not used.
        Initramfs::Split if boots.split => &boots.initrd,
        Initramfs::Split => {
            return failed(format!("the split archives are built for kernel {} only", kernel::ALL[0].name))
        }
    };
    let boot = match s.ipxe {
        true => Boot::Network,
        false => Boot::Kernel {
            kernel: boots.kernel.clone(),
            initrd: initrd.clone(),
            append: records.expand(&kernel_cmdline(s, env)),
        },
    };
    let nics = nics.into_iter().chain(s.qemu.iter().cloned()).collect();
    let spec = Spec {
        arch: s.arch,
        boot,
        firmware: s.firmware,
        memory_mb: 512,
        nics,
        netns: lab.as_ref().map(|l| l.ns.clone()),
    };
    let mut vm = match Vm::boot(&spec, echo) {
        Ok(vm) => vm,
        Err(e) => return failed(e),
    };
    let mut failure = None;
    for step in &s.steps {
        let done = match step {
            Step::Expect(needle) => vm.expect(&records.expand(&expand(needle, s, env)), deadline).map(|_| ()),
            Step::Send(text) => vm.send(&records.expand(&expand(text, s, env))),
            Step::Monitor(command) => vm.monitor(command),
        };
        if let Err(e) = done {
            failure = Some(e);
            break;
        }
    }
    if failure.is_none() {
        failure = vm.wait_exit(deadline).err();
    }
    let transcript = std::mem::take(&mut vm.transcript);
    drop(vm);
    if failure.is_none() {
        // Datagrams and requests still on their way when the VM stopped.
        std::thread::sleep(std::time::Duration::from_millis(300));
        failure = records.check(s, env);
    }
    drop(records);
    if let (None, Some(lab)) = (&failure, &lab) {
        failure =
            s.logs.iter().filter(|(log, _)| !RECORDS.contains(&log.as_str())).find_map(|(log, text)| {
                let path = lab.log(log);
                let held = std::fs::read_to_string(&path).unwrap_or_default();
                let text = expand(text, s, env);
                (!held.contains(&text)).then(|| format!("{} does not hold {text:?}", path.display()))
            });
    }
    drop(lab);
    if failure.is_none() {
        failure = s.forbids.iter().map(|f| expand(f, s, env)).find_map(|f| {
            transcript.iter().find(|l| l.contains(&f)).map(|l| format!("forbidden line: {l:?}"))
        });
    }
    Outcome { failure, transcript, elapsed: start.elapsed() }
}

/// `.scenario` files outside `qemu-tests/` (and `target/`): copies that would never run.
pub fn strays(root: &Path) -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for path in entries.flatten().map(|e| e.path()) {
            let skip = ["target", ".git", "qemu-tests"].map(|d| root.join(d));
            if path.is_dir() && !skip.contains(&path) {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "scenario") && path.is_file() {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An iPXE script's commands in order, and whether its `kernel` line names, with `initrd=`, each
    /// image its `initrd` lines load (iPXE names an image after the last part of its URL), in order.
    fn ipxe_shape(script: &str) -> (Vec<&str>, bool) {
        let commands: Vec<&str> = script.lines().filter_map(|l| l.split_whitespace().next()).collect();
        let loaded: Vec<&str> = script
            .lines()
            .filter_map(|l| l.strip_prefix("initrd "))
            .filter_map(|url| url.split_whitespace().next())
            .filter_map(|url| url.rsplit('/').next())
            .collect();
        let named = script.lines().filter(|l| l.starts_with("kernel ")).any(|l| {
            let names: Vec<&str> = l.split_whitespace().filter_map(|w| w.strip_prefix("initrd=")).collect();
            !loaded.is_empty() && names == loaded
        });
        (commands, named)
    }

    fn test_env() -> Env {
        Env {
            boots: Vec::new(),
            port: 8080,
            https_port: 8443,
            root_sha256: vec![(Arch::X86_64, "ab12".into()), (Arch::Aarch64, "cd34".into())],
            www: "w".into(),
            logs: "l".into(),
            tls: ("c".into(), "k".into()),
            partner: None,
        }
    }

    #[test]
    fn parses_a_transcript() {
        let s = parse(
            "x",
            "# Boots.\n# Really.\n\ncmdline: modloop={server}/r modloop_sha256={root_sha256}\ntimeout: 60\nexpect: a: b\nsend: ls\nexpect: c\nforbid: oops\n# later comment\n",
        )
        .unwrap();
        assert_eq!(s.description, "Boots. Really.");
        assert_eq!(s.steps, [Step::Expect("a: b".into()), Step::Send("ls".into()), Step::Expect("c".into())]);
        assert_eq!(s.forbids, ["Kernel panic", "netinit crashed", "oops"]);
        assert_eq!(s.timeout, Duration::from_secs(60));
        let env = test_env();
        assert_eq!(
            kernel_cmdline(&s, &env),
            "console=ttyS0,115200 modloop=http://10.0.2.2:8080/r modloop_sha256=ab12"
        );
        assert_eq!(s.nics, [Nic::User]);
        assert_eq!(expand("modloop=http://{gw1}/x", &s, &env), "modloop=http://10.0.11.1/x");
        assert_eq!(expand("{https}/x", &s, &env), "https://10.0.2.2:8443/x");
        assert_eq!(expand("for {release}", &s, &env), format!("for {}", kernel::ALL[0].release));
        assert_eq!(expand("by-kernel/{kernel}/", &s, &env), "by-kernel/6.1/");
        let s = parse("x", "boot: ipxe\ncmdline: ip=dhcp\nexpect: y\n").unwrap();
        assert_eq!(
            ipxe_script(&s, &env),
            "#!ipxe\ndhcp\nkernel http://10.0.2.2:8080/vmlinuz initrd=initramfs.cpio.gz console=ttyS0,115200 ip=dhcp BOOTIF=01-${netX/mac:hexhyp}\ninitrd http://10.0.2.2:8080/initramfs.cpio.gz\nboot\n"
        );
        assert_eq!(s.firmware, Firmware::Bios);
        assert_eq!(parse("x", "firmware: uefi\ncmdline: a\nexpect: b\n").unwrap().firmware, Firmware::Uefi);
    }

    /// The scenarios boot iPXE with README's script, so README's boots under BIOS and UEFI as written.
    #[test]
    fn the_ipxe_script_is_the_readmes() {
        let readme = include_str!("../../README.md");
        let block = readme.split("```\n#!ipxe\n").nth(1).and_then(|b| b.split("```").next()).unwrap();
        let readme_script = format!("#!ipxe\n{block}");
        let env = test_env();
        let s = parse("x", "boot: ipxe\ncmdline: ip=dhcp\nexpect: y\n").unwrap();
        let ours = ipxe_script(&s, &env);
        assert_eq!(ipxe_shape(&readme_script), ipxe_shape(&ours), "README:\n{readme_script}\nours:\n{ours}");
        assert_eq!(ipxe_shape(&ours), (vec!["#!ipxe", "dhcp", "kernel", "initrd", "boot"], true));
        assert!(
            readme_script.contains("BOOTIF=01-${netX/mac:hexhyp}")
                && ours.contains("BOOTIF=01-${netX/mac:hexhyp}")
        );
        assert!(!ipxe_shape("kernel http://h/vmlinuz ip=dhcp\ninitrd http://h/netinit.cpio.gz\n").1);
        assert!(
            !ipxe_shape("kernel http://h/vmlinuz initrd=a.gz\ninitrd http://h/a.gz\ninitrd http://h/b.gz\n")
                .1
        );
    }

    /// README's second iPXE script, the two archives of `--split`, is the split scenarios' script.
    #[test]
    fn the_split_ipxe_script_is_the_readmes() {
        let readme = include_str!("../../README.md");
        let block = readme.split("```\n#!ipxe\n").nth(2).and_then(|b| b.split("```").next()).unwrap();
        let readme_script = format!("#!ipxe\n{block}");
        let s = parse("x", "boot: ipxe\ninitramfs: split\ncmdline: ip=dhcp\nexpect: y\n").unwrap();
        let ours = ipxe_script(&s, &test_env());
        assert_eq!(ipxe_shape(&readme_script), ipxe_shape(&ours), "README:\n{readme_script}\nours:\n{ours}");
        assert_eq!(ipxe_shape(&ours), (vec!["#!ipxe", "dhcp", "kernel", "initrd", "initrd", "boot"], true));
        assert!(
            ours.contains(" initrd=initramfs-split.cpio.gz initrd=initramfs-split-modules.cpio.gz console=")
        );
        let e = parse("x", "initramfs: split\ncmdline: ip=dhcp\nexpect: y\n").unwrap_err();
        assert_eq!(e, "x: initramfs: split boots through iPXE (boot: ipxe), which loads both archives");
    }

    #[test]
    fn one_run_per_kernel() {
        let s = parse("boot", "kernels: all\ncmdline: ip=dhcp\nexpect: y\n").unwrap();
        let all = runs(&s);
        let got: Vec<(&str, &str)> = all.iter().map(|r| (r.name.as_str(), r.kernel.name)).collect();
        assert_eq!(got, [("boot", "6.1"), ("boot@6.12", "6.12")]);
        let s = parse("boot", "kernels: 6.12\ncmdline: ip=dhcp\nexpect: y\n").unwrap();
        assert_eq!(runs(&s).iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["boot@6.12"]);
        let s = parse("boot", "cmdline: ip=dhcp\nexpect: y\n").unwrap();
        assert_eq!(runs(&s).iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["boot"]);
        let e = parse("boot", "kernels: 5.10\ncmdline: ip=dhcp\nexpect: y\n").unwrap_err();
        assert_eq!(
            e,
            "boot:1: no test kernel \"5.10\": kernels is all or some of [\"6.1\", \"6.12\", \"6.1-generic\", \"6.1-arm64\"]"
        );
        let s = parse("boot", "kernels: 6.1-generic\ncmdline: ip=dhcp\nexpect: y\n").unwrap();
        assert_eq!(runs(&s).iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["boot@6.1-generic"]);
    }

    #[test]
    fn arm64_scenarios() {
        let s = parse("a", "arch: aarch64\ncmdline: modloop={server}/arm64/root.squashfs modloop_sha256={root_sha256}\nexpect: y\n").unwrap();
        assert_eq!((s.arch, s.kernel.name), (Arch::Aarch64, "6.1-arm64"));
        assert_eq!(runs(&s).iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            kernel_cmdline(&s, &test_env()),
            "console=ttyAMA0 modloop=http://10.0.2.2:8080/arm64/root.squashfs modloop_sha256=cd34"
        );
        let e = parse("a", "arch: aarch64\nkernels: 6.1\ncmdline: a\nexpect: y\n").unwrap_err();
        assert_eq!(e, "a: kernel 6.1 is for x86_64, not arch aarch64");
        let e = parse("a", "kernels: 6.1-arm64\ncmdline: a\nexpect: y\n").unwrap_err();
        assert_eq!(e, "a: kernel 6.1-arm64 is for aarch64, not arch x86_64");
        assert!(parse("a", "arch: aarch64\nboot: ipxe\ncmdline: a\nexpect: y\n")
            .unwrap_err()
            .contains("x86_64 only"));
        assert!(parse("a", "arch: mips\ncmdline: a\nexpect: y\n")
            .unwrap_err()
            .contains("a:1: no architecture \"mips\""));
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        assert!(parse("x", "cmdline: a\n").unwrap_err().contains("at least one expect"));
        assert!(parse("x", "cmdline: a\nsend: b\n").unwrap_err().contains("at least one expect"));
        assert!(parse("x", "cmdline: a\nexpect: b\nwhatever\n")
            .unwrap_err()
            .contains("x:3: expected `key: value`"));
        assert!(parse("x", "cmdline: a\nexpect: b\nwait: 3\n").unwrap_err().contains("unknown key \"wait\""));
        assert!(parse("x", "cmdline: a\nexpect: b\ntimeout: soon\n").unwrap_err().contains("whole seconds"));
        assert!(parse("x", "cmdline: a\nexpect: b\nnic: wifi\n").unwrap_err().contains("unknown nic"));
        assert!(parse("x", "cmdline: a\nexpect: b\nfirmware: coreboot\n")
            .unwrap_err()
            .contains("bios or uefi"));
        assert_eq!(
            parse("x", "cmdline: a\nexpect: b\nlog: reports x\n").unwrap_err(),
            "x: log: reports needs record: reports"
        );
        assert!(parse("x", "cmdline: a\nexpect: b\nrecord: x\n")
            .unwrap_err()
            .contains("reports or netconsole"));
        let s = parse("x", "cmdline: a\nexpect: b\nrecord: reports\nlog: reports y\n").unwrap();
        assert_eq!(
            (s.records, s.logs),
            (vec!["reports".to_owned()], vec![("reports".to_owned(), "y".to_owned())])
        );
        assert!(parse("x", "cmdline: a\nexpect: b\nlog: proxy x\n")
            .unwrap_err()
            .contains("need a test network"));
        assert!(parse("x", "cmdline: a\nexpect: b\nnic: dhcp\nboot: ipxe\n")
            .unwrap_err()
            .contains("user network"));
    }

    #[test]
    fn the_repository_scenarios_parse() {
        let all = load_all(&crate::host::root().join("qemu-tests")).unwrap();
        assert!(all.len() >= 3, "{} scenarios", all.len());
    }

    #[test]
    fn stray_scenarios_are_found() {
        let root = std::env::temp_dir().join(format!("xtask-strays-{}", std::process::id()));
        for dir in ["qemu-tests", "target/x", "docs"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        for file in ["qemu-tests/a.scenario", "target/x/b.scenario", "docs/c.scenario", "d.scenario", "e.txt"]
        {
            std::fs::write(root.join(file), "x").unwrap();
        }
        assert_eq!(strays(&root), [root.join("d.scenario"), root.join("docs/c.scenario")]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
