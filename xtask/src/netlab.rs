//! Test networks richer than qemu's user network, for the scenarios that need a NIC without DHCP, two
//! NICs, or a DHCP server that starts late: one network namespace per scenario run, holding one
//! bridge and one tap per guest NIC, a real dnsmasq per bridge that serves DHCP, and the test HTTP
//! server on port 80. qemu runs inside the namespace on the taps. Nothing leaves the namespace;
//! dropping the lab kills what it started (by handle) and deletes the namespace.
//!
//! NIC `i` sits on bridge `br{i}` with address `10.0.{10+i}.1/24`, leases `.100`-`.200`, MAC
//! `52:54:00:00:0a:0{i+1}`. Scenarios name the bridge addresses `{gw0}`, `{gw1}`...
//!
//! `lab: proxy` adds an HTTP proxy (Debian's tinyproxy) on port 3128 of every bridge, which wants
//! the credentials `netinit:s3cr3t`, and servers only it can reach: the test files over HTTP on the
//! namespace's `127.0.0.1:8080` and over HTTPS on `127.0.0.1:8443` (the test CA's certificate is
//! for 127.0.0.1). The guest's own 127.0.0.1 is its loopback, so those URLs work only through the
//! proxy. Its log is the lab log `proxy` (`log: proxy TEXT` in a scenario).
//!
//! `nic: lacp` (twice: NICs 0 and 1) links the guest's NIC to the LACP partner VM (`partner.rs`):
//! guest NIC `i` and partner NIC `i` are the two ends of a qemu `-netdev socket` UDP pair on the
//! namespace's loopback, both reporting 1000 Mb/s full duplex. The partner bonds its two NICs in
//! mode 802.3ad and bridges the bond with a third NIC, a tap on the first LACP NIC's bridge (`br0`:
//! `{gw0}`, its dnsmasq, the HTTP server), so the guest's DHCP and download go through LACP at both
//! ends. The lab waits (at most `PARTNER_TIMEOUT`) for the partner's `ready` line before the guest
//! boots; its console is the lab log `partner`, where it prints `/proc/net/bonding/bond0` every 2 s.
//!
//! `nic: bridge-of J` plugs the NIC into NIC `J`'s bridge (a second tap on it; no bridge or dnsmasq
//! of its own): two NICs on one network, one DHCP server, as an active-backup bond's NICs are.
//!
//! `lab: ntp` adds an NTP server (Debian's chronyd, unpacked from its package under the cache so
//! that no service is installed, serving its local clock at stratum 8 and never setting it) on every
//! bridge, and dnsmasq names it in option 42.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::host::{self, Result};

/// What a guest NIC is plugged into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nic {
    /// qemu's user network, with its built-in DHCP server.
    User,
    /// A bridge with no DHCP server.
    Silent,
    /// A bridge with dnsmasq serving DHCP, from the start or after a delay.
    Dhcp(Duration),
    /// A bridge with dnsmasq, reached only through VLAN `id`: the guest's NIC is a trunk port
    /// (`vlan_switch`) that passes frames tagged `id` and drops the rest.
    DhcpVlan(u16),
    /// An IPv6-only bridge (no IPv4 at all): `fd00:{10+i}::1/64`, dnsmasq sending Router
    /// Advertisements for SLAAC with RDNSS and DNSSL and answering DNS (`images.lab.test` is the
    /// bridge's address), and the test HTTP server on `[fd00:{10+i}::1]:80`.
    Slaac,
    /// The same IPv6-only network, where dnsmasq leases addresses by DHCPv6 (`::100` to `::1ff`,
    /// with its DNS server and domain list) and its Router Advertisements say so (the M flag, the
    /// prefix on-link but not for SLAAC).
    Dhcp6,
    /// Dual stack: `dhcp`'s IPv4 network and `slaac`'s IPv6 one on the same bridge.
    DualStack,
    /// A bridge with dnsmasq giving leases of `secs` seconds (dnsmasq's least is 120); with an
    /// outage, that dnsmasq is stopped `from` seconds after the lab starts, and another, leasing
    /// from `.201` with a lease file of its own, starts at `to`.
    ShortLease { secs: u32, outage: Option<(u64, u64)> },
    /// A link to the LACP partner VM (NICs 0 and 1), whose uplink sits on a bridge with dnsmasq.
    Lacp,
    /// A second tap on NIC `j`'s bridge.
    BridgeOf(usize),
}

impl Nic {
    /// A network with IPv6.
    fn v6(&self) -> bool {
        matches!(self, Nic::Slaac | Nic::Dhcp6 | Nic::DualStack)
    }
}

impl Nic {
    /// `user`, `none`, `dhcp`, `dhcp-after SECONDS`, `dhcp-vlan ID`, `slaac`, `dhcp6`, `dual-stack`,
    /// `lacp`, `bridge-of J`.
    pub fn parse(v: &str) -> std::result::Result<Nic, String> {
        let words: Vec<&str> = v.split_whitespace().collect();
        match words.as_slice() {
            ["user"] => Ok(Nic::User),
            ["none"] => Ok(Nic::Silent),
            ["dhcp"] => Ok(Nic::Dhcp(Duration::ZERO)),
            ["slaac"] => Ok(Nic::Slaac),
            ["dhcp6"] => Ok(Nic::Dhcp6),
            ["dual-stack"] => Ok(Nic::DualStack),
            ["dhcp-after", secs] => secs
                .parse()
                .map(|s| Nic::Dhcp(Duration::from_secs(s)))
                .map_err(|_| format!("bad delay {secs:?}")),
            ["dhcp-vlan", id] => match id.parse::<u16>() {
                Ok(id) if (1..=4094).contains(&id) => Ok(Nic::DhcpVlan(id)),
                _ => Err(format!("bad VLAN id {id:?}")),
            },
            ["lacp"] => Ok(Nic::Lacp),
            ["dhcp-lease", secs, rest @ ..] => {
                let secs: u32 = secs.parse().ok().filter(|s| *s >= 120).ok_or(format!("bad lease time {secs:?} (dnsmasq's least is 120)"))?;
                let outage = match rest {
                    [] => None,
                    ["outage", from, to] => match (from.parse::<u64>(), to.parse::<u64>()) {
                        (Ok(f), Ok(t)) if f < t => Some((f, t)),
                        _ => return Err(format!("bad outage {from:?} {to:?} (FROM TO, seconds, FROM < TO)")),
                    },
                    _ => return Err("dhcp-lease SECONDS [outage FROM TO]".into()),
                };
                Ok(Nic::ShortLease { secs, outage })
            }
            ["bridge-of", j] => j.parse().map(Nic::BridgeOf).map_err(|_| format!("bad NIC number {j:?}")),
            _ => Err(format!(
                "unknown nic {v:?} (expected user, none, dhcp, dhcp-after SECONDS, dhcp-vlan ID, slaac, dhcp6, dual-stack, lacp or bridge-of J)"
            )),
        }
    }
}

/// The UDP addresses, on the lab's loopback, of NIC `i`'s VLAN switch and of qemu's end.
fn switch_ports(i: usize) -> (String, String) {
    let port = 40000 + 2 * i;
    (format!("127.0.0.1:{port}"), format!("127.0.0.1:{}", port + 1))
}

pub fn gateway(i: usize) -> String {
    format!("10.0.{}.1", 10 + i)
}

/// The IPv6 address of bridge `i` (`nic: slaac`).
pub fn gateway6(i: usize) -> String {
    format!("fd00:{}::1", 10 + i)
}

pub fn mac(i: usize) -> String {
    format!("52:54:00:00:0a:{:02x}", i + 1)
}

/// A server a scenario adds to its lab (`lab:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Proxy,
    Ntp,
}

impl Service {
    pub fn parse(v: &str) -> std::result::Result<Service, String> {
        match v {
            "proxy" => Ok(Service::Proxy),
            "ntp" => Ok(Service::Ntp),
            _ => Err(format!("unknown lab service {v:?} (expected proxy or ntp)")),
        }
    }
}

/// The port of `lab: proxy`'s proxy, and the credentials it wants.
pub const PROXY_PORT: u16 = 3128;
pub const PROXY_USER: (&str, &str) = ("netinit", "s3cr3t");

/// The lab's files the test server and the HTTPS server serve, and the HTTPS server's certificate
/// and key.
pub struct Files<'a> {
    pub www: &'a Path,
    pub logs: &'a Path,
    pub tls: (&'a Path, &'a Path),
    /// The LACP partner VM's kernel and initramfs, for `nic: lacp`.
    pub partner: Option<&'a crate::partner::Partner>,
}

/// How long the LACP partner VM may take to boot and bond (TCG).
const PARTNER_TIMEOUT: Duration = Duration::from_secs(60);

/// Checks the NICs' plugging: `nic: lacp` is NICs 0 and 1 together, `bridge-of J` names an
/// earlier NIC that has a bridge of its own.
fn check_nics(nics: &[Nic]) -> Result<()> {
    let lacp: Vec<usize> = (0..nics.len()).filter(|i| nics[*i] == Nic::Lacp).collect();
    if !lacp.is_empty() && lacp != [0, 1] {
        return Err("nic: lacp is NICs 0 and 1, the partner's two links".into());
    }
    for (i, nic) in nics.iter().enumerate() {
        if let Nic::BridgeOf(j) = nic {
            if *j >= i || matches!(nics[*j], Nic::BridgeOf(_) | Nic::User) {
                return Err(format!("nic {i}: bridge-of {j} names no earlier bridged NIC"));
            }
        }
    }
    Ok(())
}

pub struct Lab {
    pub ns: String,
    logs: std::path::PathBuf,
    children: Arc<Mutex<Vec<Child>>>,
    stopped: Arc<AtomicBool>,
}

fn ip(args: &[&str]) -> Result<()> {
    host::run(Command::new("ip").args(args).stdout(Stdio::null()))
}

impl Lab {
    /// Builds the namespace `name` for `nics` (all but `User`) and starts its servers; the HTTP
    /// server serves `www`, and each dnsmasq's log and leases go under `logs`.
    pub fn create(name: &str, nics: &[Nic], services: &[Service], files: &Files) -> Result<Lab> {
        let (www, logs) = (files.www, files.logs);
        if !host::is_root() {
            return Err("this scenario builds a test network (network namespaces, taps, dnsmasq), which needs root: run cargo xtask test as root".into());
        }
        let ns = format!("netinit-{name}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &ns]).stderr(Stdio::null()).status();
        ip(&["netns", "add", &ns])?;
        let lab =
            Lab { ns: ns.clone(), logs: logs.to_owned(), children: Arc::default(), stopped: Arc::default() };
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        check_nics(nics)?;
        for (i, nic) in nics.iter().enumerate() {
            if *nic == Nic::User {
                return Err("a scenario cannot mix nic: user with bridged NICs".into());
            }
            // The second LACP link has no bridge: the partner's uplink is on the first's.
            if *nic == Nic::Lacp && i > 0 {
                continue;
            }
            let tap = match nic {
                Nic::Lacp => crate::partner::UPLINK_TAP.to_owned(),
                _ => format!("tap{i}"),
            };
            let br = match nic {
                Nic::BridgeOf(j) => format!("br{j}"),
                _ => {
                    let br = format!("br{i}");
                    ip(&["-n", &ns, "link", "add", &br, "type", "bridge"])?;
                    if nic.v6() {
                        ip(&["-n", &ns, "addr", "add", &format!("{}/64", gateway6(i)), "dev", &br, "nodad"])?;
                    }
                    if !matches!(nic, Nic::Slaac | Nic::Dhcp6) {
                        ip(&["-n", &ns, "addr", "add", &format!("{}/24", gateway(i)), "dev", &br])?;
                    }
                    ip(&["-n", &ns, "link", "set", &br, "up"])?;
                    br
                }
            };
            ip(&["-n", &ns, "tuntap", "add", "dev", &tap, "mode", "tap"])?;
            ip(&["-n", &ns, "link", "set", &tap, "master", &br])?;
            ip(&["-n", &ns, "link", "set", &tap, "up"])?;
        }
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        // The trunk ports: each VLAN NIC's tap is the switch's, and qemu talks to the switch.
        for (i, nic) in nics.iter().enumerate() {
            if let Nic::DhcpVlan(id) = nic {
                let (listen, peer) = switch_ports(i);
                let switch = Command::new("ip")
                    .args(["netns", "exec", &ns])
                    .arg(&exe)
                    .args(["vlan-switch", &id.to_string(), &format!("tap{i}"), &listen, &peer])
                    .stdout(Stdio::null())
                    .spawn()
                    .map_err(|e| format!("starting the VLAN switch in {ns}: {e}"))?;
                lab.keep(switch);
            }
        }
        if nics.contains(&Nic::Lacp) {
            lab.start_partner(files)?;
        }
        if services.contains(&Service::Proxy) {
            lab.start_proxy(&exe, files)?;
        }
        if services.contains(&Service::Ntp) {
            lab.start_ntp()?;
        }
        let http = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(&exe)
            .arg("serve")
            .arg(www)
            .arg("0.0.0.0:80")
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the HTTP server in {ns}: {e}"))?;
        lab.keep(http);
        for (i, nic) in nics.iter().enumerate() {
            if nic.v6() {
                let http = Command::new("ip")
                    .args(["netns", "exec", &ns])
                    .arg(&exe)
                    .arg("serve")
                    .arg(www)
                    .arg(format!("[{}]:80", gateway6(i)))
                    .stdout(Stdio::null())
                    .spawn()
                    .map_err(|e| format!("starting the IPv6 HTTP server in {ns}: {e}"))?;
                lab.keep(http);
                let dnsmasq = dnsmasq6(&ns, i, *nic == Nic::Dhcp6, logs)
                    .spawn()
                    .map_err(|e| format!("starting dnsmasq (IPv6) in {ns}: {e}"))?;
                lab.keep(dnsmasq);
            }
        }
        for (i, nic) in nics.iter().enumerate() {
            if let Nic::ShortLease { secs, outage } = nic {
                lab.start_short_leases(i, *secs, *outage, services.contains(&Service::Ntp))?;
            }
            let delay = match nic {
                Nic::Dhcp(delay) => Some(*delay),
                Nic::DhcpVlan(_) | Nic::DualStack => Some(Duration::ZERO),
                Nic::Lacp if i == 0 => Some(Duration::ZERO),
                _ => None,
            };
            if let Some(delay) = delay {
                let mut cmd = dnsmasq(&ns, i, logs, services.contains(&Service::Ntp), "1h", 100);
                let (children, stopped) = (Arc::clone(&lab.children), Arc::clone(&lab.stopped));
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    if let Ok(mut c) = children.lock() {
                        if !stopped.load(Ordering::SeqCst) {
                            match cmd.spawn() {
                                Ok(child) => c.push(child),
                                Err(e) => eprintln!("xtask: starting dnsmasq: {e}"),
                            }
                        }
                    }
                });
            }
        }
        // Let the servers bind before the guest asks them anything; one that exited at once (a bad
        // configuration, a port in use) fails the scenario here, not as a refused connection later.
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(mut children) = lab.children.lock() {
            for child in children.iter_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "a server of the test network (pid {}) exited at once: {status}",
                        child.id()
                    ));
                }
            }
        }
        Ok(lab)
    }

    /// dnsmasq with short leases on bridge `i`, and its outage (see [`Nic::ShortLease`]).
    fn start_short_leases(&self, i: usize, secs: u32, outage: Option<(u64, u64)>, ntp: bool) -> Result<()> {
        let lease = secs.to_string();
        let mut first = dnsmasq(&self.ns, i, &self.logs, ntp, &lease, 100)
            .spawn()
            .map_err(|e| format!("starting dnsmasq in {}: {e}", self.ns))?;
        let Some((from, to)) = outage else {
            self.keep(first);
            return Ok(());
        };
        let mut second = dnsmasq(&self.ns, i, &self.logs, ntp, &lease, 201);
        let (children, stopped) = (Arc::clone(&self.children), Arc::clone(&self.stopped));
        let start = std::time::Instant::now();
        let wait_until = move |at: u64| {
            while start.elapsed() < Duration::from_secs(at) && !stopped.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
            }
            !stopped.load(Ordering::SeqCst)
        };
        let stopped = Arc::clone(&self.stopped);
        std::thread::spawn(move || {
            wait_until(from);
            let _ = first.kill();
            let _ = first.wait();
            if wait_until(to) {
                if let Ok(mut c) = children.lock() {
                    if !stopped.load(Ordering::SeqCst) {
                        match second.spawn() {
                            Ok(child) => c.push(child),
                            Err(e) => eprintln!("xtask: starting the second dnsmasq: {e}"),
                        }
                    }
                }
            }
        });
        Ok(())
    }

    /// The path of the lab's log `name` (`proxy`, `dhcp0`...).
    pub fn log(&self, name: &str) -> std::path::PathBuf {
        self.logs.join(format!("{}-{name}.log", self.ns))
    }

    /// The LACP partner VM, and the wait for its bond: the guest boots once the partner is ready.
    fn start_partner(&self, files: &Files) -> Result<()> {
        let partner = files.partner.ok_or("nic: lacp needs the partner VM, which was not built")?;
        let log = self.log("partner");
        let _ = std::fs::remove_file(&log);
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "qemu-system-x86_64"])
            .args(crate::partner::qemu_args(partner, &log))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the LACP partner VM in {}: {e}", self.ns))?;
        self.keep(child);
        let deadline = std::time::Instant::now() + PARTNER_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("lacp-partner: ready") {
                return Ok(());
            }
            if let Some(line) = text.lines().find(|l| l.contains("lacp-partner: FAILED")) {
                return Err(format!("the LACP partner VM: {line} (see {})", log.display()));
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "the LACP partner VM was not ready within {}s (see {})",
                    PARTNER_TIMEOUT.as_secs(),
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// tinyproxy on every bridge, and the servers only it reaches, on the namespace's loopback.
    fn start_proxy(&self, exe: &Path, files: &Files) -> Result<()> {
        let ns = &self.ns;
        let hidden = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .arg("serve")
            .arg(files.www)
            .arg("127.0.0.1:8080")
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the HTTP server behind the proxy: {e}"))?;
        self.keep(hidden);
        let https = Command::new("ip")
            .args(["netns", "exec", ns, "openssl", "s_server", "-WWW", "-quiet", "-accept", "127.0.0.1:8443"])
            .arg("-cert")
            .arg(files.tls.0)
            .arg("-key")
            .arg(files.tls.1)
            .current_dir(files.www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the HTTPS server behind the proxy: {e}"))?;
        self.keep(https);
        let log = self.log("proxy");
        let _ = std::fs::remove_file(&log);
        let conf = self.logs.join(format!("{ns}-tinyproxy.conf"));
        std::fs::write(&conf, tinyproxy_conf(&log))
            .map_err(|e| format!("writing {}: {e}", conf.display()))?;
        let tinyproxy = Command::new("ip")
            .args(["netns", "exec", ns, "tinyproxy", "-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting tinyproxy in {ns}: {e}"))?;
        self.keep(tinyproxy);
        Ok(())
    }

    /// chronyd on every address of the namespace.
    fn start_ntp(&self) -> Result<()> {
        let chrony = crate::debs::chrony()?;
        let log = self.log("ntp");
        let conf = self.logs.join(format!("{}-chrony.conf", self.ns));
        let text = format!(
            "local stratum 8\nallow 10.0.0.0/8\nport 123\ncmdport 0\npidfile {}\n",
            self.logs.join(format!("{}-chrony.pid", self.ns)).display()
        );
        std::fs::write(&conf, text).map_err(|e| format!("writing {}: {e}", conf.display()))?;
        let out = std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(&chrony.chronyd)
            // -x: never touch the clock (the namespace shares the host's); -u root: the package's
            // _chrony user need not exist here.
            .args(["-d", "-x", "-u", "root", "-f"])
            .arg(&conf)
            .env("LD_LIBRARY_PATH", &chrony.libraries)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .map_err(|e| format!("starting chronyd in {}: {e}", self.ns))?;
        self.keep(child);
        Ok(())
    }

    fn keep(&self, child: Child) {
        if let Ok(mut c) = self.children.lock() {
            c.push(child);
        }
    }

    /// qemu's NIC arguments: one tap per NIC (a VLAN NIC: the UDP socket of its switch; an LACP
    /// link: the UDP socket of the partner's NIC), each with its fixed MAC.
    pub fn qemu_args(nics: &[Nic]) -> Vec<String> {
        let mut args = Vec::new();
        for (i, nic) in nics.iter().enumerate() {
            args.push("-netdev".into());
            match nic {
                Nic::DhcpVlan(_) => {
                    let (switch, qemu) = switch_ports(i);
                    args.push(format!("socket,id=n{i},udp={switch},localaddr={qemu}"));
                }
                Nic::Lacp => {
                    let (partner, guest) = crate::partner::link_ports(i);
                    args.push(format!("socket,id=n{i},udp={partner},localaddr={guest}"));
                }
                _ => args.push(format!("tap,id=n{i},ifname=tap{i},script=no,downscript=no")),
            }
            args.push("-device".into());
            let link = if *nic == Nic::Lacp {
                format!(",{}", crate::partner::LINK_PROPERTIES)
            } else {
                String::new()
            };
            args.push(format!("virtio-net-pci,netdev=n{i},mac={}{link},romfile=", mac(i)));
        }
        args
    }
}

/// dnsmasq on IPv6-only bridge `i`: Router Advertisements for SLAAC (the A flag, no DHCPv6) with
/// RDNSS and DNSSL, or with `dhcp6` addresses by DHCPv6 instead, and DNS on the bridge's address,
/// where `images.lab.test` is that address.
fn dnsmasq6(ns: &str, i: usize, dhcp6: bool, logs: &Path) -> Command {
    let gw = gateway6(i);
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null"])
        .args(["--bind-interfaces", &format!("--interface=br{i}"), "--except-interface=lo", "--user=root"])
        .args(["--no-resolv", "--no-hosts", &format!("--listen-address={gw}")])
        // Answers for lab.test are dnsmasq's own: NODATA for the A record, not REFUSED, which a
        // resolver (musl's) takes as a failed server.
        .arg("--local=/lab.test/")
        .arg(format!("--host-record=images.lab.test,{gw}"))
        .arg("--enable-ra")
        .arg(match dhcp6 {
            true => format!("--dhcp-range=fd00:{0}::100,fd00:{0}::1ff,64,1h", 10 + i),
            false => format!("--dhcp-range=fd00:{}::,ra-only,64,1h", 10 + i),
        })
        .arg(format!("--dhcp-leasefile={}", logs.join(format!("{ns}-br{i}.leases6")).display()))
        .arg(format!("--dhcp-option=option6:dns-server,[{gw}]"))
        .arg("--dhcp-option=option6:domain-search,lab.test")
        .args(["--pid-file=", "--log-facility=-"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// tinyproxy's configuration: on every address of the namespace, for the lab's networks only,
/// wanting `PROXY_USER`'s credentials, tunnelling (`CONNECT`) only to the HTTPS server's port, and
/// logging each request.
fn tinyproxy_conf(log: &Path) -> String {
    format!(
        "Port {PROXY_PORT}\nListen 0.0.0.0\nTimeout 60\nMaxClients 20\nAllow 10.0.0.0/8\nBasicAuth {} {}\nConnectPort 8443\nLogFile \"{}\"\nLogLevel Info\nDisableViaHeader Yes\n",
        PROXY_USER.0,
        PROXY_USER.1,
        log.display()
    )
}

/// dnsmasq serving DHCP (and nothing else: `--port=0` turns DNS off) on bridge `i`, in the foreground.
/// Its log is the lab log `dhcp{i}`; `lease` is the lease time as dnsmasq takes it (`1h`, `120`),
/// and the range starts at `.{first}` (with its own lease file).
fn dnsmasq(ns: &str, i: usize, logs: &Path, ntp: bool, lease: &str, first: u8) -> Command {
    let net = format!("10.0.{}", 10 + i);
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0"])
        .args(["--bind-interfaces", &format!("--interface=br{i}"), "--except-interface=lo", "--user=root"])
        .arg(format!(
            "--dhcp-range={net}.{first},{net}.{},255.255.255.0,{lease}",
            first.saturating_add(100).min(250)
        ))
        .arg(format!("--dhcp-option=option:router,{net}.1"))
        .arg(format!("--dhcp-option=option:dns-server,{net}.1"))
        .arg("--dhcp-option=option:domain-search,lab.test,netinit.test")
        .arg("--dhcp-option=option:mtu,1400")
        // Option 121 replaces option 3 (RFC 3442), so it carries the default route too.
        .arg(format!("--dhcp-option=option:classless-static-route,192.168.77.0/24,{net}.1,0.0.0.0/0,{net}.1"))
        .args(ntp.then(|| format!("--dhcp-option=option:ntp-server,{net}.1")))
        .arg(format!("--dhcp-leasefile={}", logs.join(format!("{ns}-br{i}-{first}.leases")).display()))
        .args(["--pid-file=", "--log-dhcp"])
        .arg(format!("--log-facility={}", logs.join(format!("{ns}-dhcp{i}.log")).display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Ok(mut children) = self.children.lock() {
            for child in children.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nic_specs() {
        assert_eq!(Nic::parse("dhcp"), Ok(Nic::Dhcp(Duration::ZERO)));
        assert_eq!(Nic::parse("dhcp-after 20"), Ok(Nic::Dhcp(Duration::from_secs(20))));
        assert_eq!(Nic::parse("dhcp-lease 120"), Ok(Nic::ShortLease { secs: 120, outage: None }));
        assert_eq!(
            Nic::parse("dhcp-lease 120 outage 140 262"),
            Ok(Nic::ShortLease { secs: 120, outage: Some((140, 262)) })
        );
        assert!(Nic::parse("dhcp-lease 60").is_err(), "dnsmasq's least is 120");
        assert!(Nic::parse("dhcp-lease 120 outage 9 3").is_err());
        assert!(Nic::parse("dhcp-lease 120 later").is_err());
        assert_eq!(Nic::parse("none"), Ok(Nic::Silent));
        assert_eq!(Nic::parse("user"), Ok(Nic::User));
        assert!(Nic::parse("dhcp-after soon").is_err());
        assert!(Nic::parse("wifi").is_err());
        assert_eq!(Nic::parse("dhcp-vlan 100"), Ok(Nic::DhcpVlan(100)));
        assert!(Nic::parse("dhcp-vlan 4095").is_err());
        let vlan = Lab::qemu_args(&[Nic::DhcpVlan(100)]);
        assert_eq!(vlan[1], "socket,id=n0,udp=127.0.0.1:40000,localaddr=127.0.0.1:40001");
        assert_eq!((gateway(1), mac(1)), ("10.0.11.1".to_string(), "52:54:00:00:0a:02".to_string()));
        let args = Lab::qemu_args(&[Nic::Silent, Nic::Dhcp(Duration::ZERO)]);
        assert_eq!(args[1], "tap,id=n0,ifname=tap0,script=no,downscript=no");
        assert_eq!(args[7], "virtio-net-pci,netdev=n1,mac=52:54:00:00:0a:02,romfile=");
        assert_eq!(Nic::parse("lacp"), Ok(Nic::Lacp));
        assert_eq!(Nic::parse("bridge-of 0"), Ok(Nic::BridgeOf(0)));
        let lacp = Lab::qemu_args(&[Nic::Lacp, Nic::Lacp]);
        assert_eq!(lacp[5], "socket,id=n1,udp=127.0.0.1:41002,localaddr=127.0.0.1:41003");
        assert_eq!(lacp[7], "virtio-net-pci,netdev=n1,mac=52:54:00:00:0a:02,speed=1000,duplex=full,romfile=");
        let shared = Lab::qemu_args(&[Nic::Dhcp(Duration::ZERO), Nic::BridgeOf(0)]);
        assert_eq!(shared[5], "tap,id=n1,ifname=tap1,script=no,downscript=no");
        assert_eq!(check_nics(&[Nic::Lacp, Nic::Lacp]), Ok(()));
        assert!(check_nics(&[Nic::Lacp]).is_err());
        assert!(check_nics(&[Nic::Dhcp(Duration::ZERO), Nic::Lacp, Nic::Lacp]).is_err());
        assert_eq!(check_nics(&[Nic::Dhcp(Duration::ZERO), Nic::BridgeOf(0)]), Ok(()));
        assert!(check_nics(&[Nic::BridgeOf(0)]).is_err());
        assert!(check_nics(&[Nic::Dhcp(Duration::ZERO), Nic::BridgeOf(1)]).is_err());
    }
}
