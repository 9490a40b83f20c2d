//! The network stage: bring the network up. Choose the NIC (by `BOOTIF`, by the device in `ip=`, or the first
//! with a link), configure it by DHCP or statically, and leave the result where the booted system
//! finds it: `/etc/resolv.conf`, the hostname, and `/run/netinit/lease`. With several candidate
//! NICs, DHCP races on all of them at once and the first lease wins.
//!
//! IPv6 (`ip=auto6`, `ip=dhcp6`, the bracketed static form) is `v6.rs`. It does not renew leases.
//!
//! DHCP uses a UDP socket on port 68 bound to the NIC with `SO_BINDTODEVICE`, sending to
//! 255.255.255.255 with the BROADCAST flag set, so that servers broadcast their replies and the
//! kernel delivers them before the NIC has an address. That needs no raw packets and no BPF, and works
//! with dnsmasq, ISC and qemu's built-in server (see ARCHITECTURE.md).

pub mod dhcp;
pub mod dhcp6;
pub(crate) mod files;
pub mod keeper;
pub mod netlink;
pub mod ra;
pub mod renew;
pub mod sntp;
mod v6;

use files::write_files;
pub use files::{hostname, resolver, summary};
#[cfg(test)]
use files::{lease_file, resolv_conf};

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmdline::{Bond, ClientId, IpMode, Mac, NetConfig, Vlan};
use crate::sys;

/// How long to wait for the NIC driver to register its interfaces.
const NIC_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a link once the NICs are up: autonegotiation takes 1-5 s on real hardware.
const CARRIER_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);
/// With link notifications, the longest wait before sysfs is looked at again anyway.
const WATCHED_POLL: Duration = Duration::from_millis(250);
/// Datagrams read from one NIC per wakeup, at most.
const RECEIVE_BURST: usize = 64;

/// A physical network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub name: String,
    pub index: u32,
    pub mac: Mac,
}

/// The configuration netinit applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configured {
    pub nic: Nic,
    /// The IPv4 configuration, if the NIC has one.
    pub v4: Option<V4>,
    /// The IPv6 configuration, if the NIC has one.
    pub v6: Option<V6>,
    pub dns: Vec<IpAddr>,
    pub domain: Option<String>,
    /// Option 119's search list.
    pub search: Vec<String>,
    pub hostname: Option<String>,
    pub mtu: Option<u16>,
    /// NTP servers: `ip=`'s field, then DHCP's option 42.
    pub ntp: Vec<Ipv4Addr>,
    /// The DHCPv4 lease and when it was bound (`CLOCK_BOOTTIME`), for the lease keeper.
    pub lease: Option<(dhcp::Lease, Duration)>,
}

/// A NIC's IPv4 configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V4 {
    pub address: Ipv4Addr,
    pub prefix: u8,
    /// Option 121's routes, or one default route via the gateway.
    pub routes: Vec<dhcp::Route>,
    /// The DHCP server and lease time, when configured by DHCP.
    pub dhcp: Option<(Ipv4Addr, Option<Duration>)>,
}

/// How a NIC got its IPv6 addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method6 {
    /// The kernel formed them from a Router Advertisement's prefixes (SLAAC).
    Slaac,
    /// A DHCPv6 server leased it.
    Dhcp6,
    Static,
}

impl Method6 {
    pub fn name(self) -> &'static str {
        match self {
            Method6::Slaac => "slaac",
            Method6::Dhcp6 => "dhcp6",
            Method6::Static => "static",
        }
    }
}

/// A NIC's IPv6 configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V6 {
    /// Global addresses with their prefix lengths.
    pub addresses: Vec<(Ipv6Addr, u8)>,
    /// The default router: the Router Advertisement's sender, or `ip=`'s gateway.
    pub router: Option<Ipv6Addr>,
    pub method: Method6,
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("no network interface appeared within {}s", NIC_TIMEOUT.as_secs())]
    NoNic,
    #[error("no network interface has MAC {mac} (BOOTIF); found {found}")]
    NoBootif { mac: Mac, found: String },
    #[error("no network interface is named {name} (ip=); found {found}")]
    NoDevice { name: String, found: String },
    #[error("{nic}: no IPv6 address by DHCPv6: {why}")]
    NoDhcp6 { nic: String, why: String },
    #[error("{nic}: no IPv6 address by SLAAC: {why}")]
    NoSlaac { nic: String, why: String },
    /// A NIC that `bond=` or `vlan=` names, `of` saying whose.
    #[error("no network interface is named {name} ({of}); found {found}")]
    NoMember { name: String, of: String, found: String },
    #[error("no link on {names} after {}s", CARRIER_TIMEOUT.as_secs())]
    NoCarrier { names: String },
    #[error("no DHCP lease on {nic} after {}s ({discovers} DISCOVERs sent, {offers} offers received)", timeout.as_secs())]
    DhcpTimeout { nic: String, timeout: Duration, discovers: u32, offers: u32 },
    #[error("reading {path}")]
    Sysfs { path: PathBuf, source: io::Error },
    #[error("opening a DHCP socket on {nic}")]
    Socket { nic: String, source: io::Error },
    #[error("receiving DHCP replies on {nic}")]
    Receive { nic: String, source: io::Error },
    #[error("{step} on {nic}")]
    Netlink { step: String, nic: String, source: io::Error },
    #[error("creating VLAN {name} (id {id}) over {parent}")]
    Vlan { name: String, id: u16, parent: String, source: io::Error },
    #[error("{step} of bond {name}")]
    Bond { step: String, name: String, source: io::Error },
    #[error("writing {path}")]
    Write { path: PathBuf, source: io::Error },
}

impl NetError {
    /// What the operator can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            NetError::NoNic => "is the NIC's driver in modules-list (or modules=)? dmesg shows what the kernel found",
            NetError::NoBootif { .. } | NetError::NoDevice { .. } => "check BOOTIF= / ip= against the MACs and names listed",
            NetError::NoMember { .. } => "check bond= / vlan= against the names listed",
            NetError::NoCarrier { .. } => "check the cable and the switch port",
            NetError::DhcpTimeout { .. } => {
                "check that a DHCP server serves this segment; netinit.dhcp_timeout= waits longer (spanning tree can block a port for 50 s)"
            }
            NetError::Vlan { source, .. } if source.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                "the kernel has no 802.1Q support loaded: pack 8021q (modules-list has it) or build it in"
            }
            NetError::Bond { source, .. } if source.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                "the kernel has no bonding support loaded: pack bonding (modules-list has it) or build it in"
            }
            _ => "this is unexpected; the error above names the step and the system's answer",
        }
    }
}

/// Brings the network up as `cfg` says: each `ip=` in turn (one DHCP race over every NIC when there
/// is none), then the files the booted system reads. The first configuration is the boot NIC's.
pub fn up(cfg: &NetConfig) -> Result<Vec<Configured>, NetError> {
    // Opened before the first look at sysfs, so that no change after it goes unnoticed.
    let watch = LinkWatch::open();
    let nics = wait_for_nics(cfg, &watch)?;
    let mut nl =
        netlink::Rtnetlink::open().map_err(|source| netlink_error("opening rtnetlink", "-", source))?;
    // BOOTIF= may name any slave of a bond: the bond, which takes its first slave's MAC, stands for it.
    let bootif = cfg.bootif.map(|mac| bond_bootif(mac, &cfg.bonds, &nics));
    let nics = add_bonds(&mut nl, &cfg.bonds, nics)?;
    let nics = add_vlans(&mut nl, &cfg.vlans, nics)?;
    // A NIC that carries a VLAN or is a bond's slave is no candidate unless an ip= names it: its
    // VLAN or bond takes its place.
    let unnamed: Vec<Nic> = nics
        .iter()
        .filter(|n| !cfg.vlans.iter().any(|v| v.parent == n.name))
        .filter(|n| !cfg.bonds.iter().any(|b| b.slaves.contains(&n.name)))
        .cloned()
        .collect();
    let mut done: Vec<Configured> = Vec::new();
    for ip in &cfg.interfaces {
        let pool = if ip.device.is_some() { &nics } else { &unnamed };
        let candidates = choose(bootif, ip.device.as_deref(), pool)?;
        for nic in &candidates {
            nl.request(|seq| netlink::link_up(nic.index, seq))
                .map_err(|source| netlink_error("setting the link up", &nic.name, source))?;
        }
        let configured = match &ip.mode {
            IpMode::Static(s) => {
                let nic = wait_for_carrier(&candidates, &watch)?;
                log::info!("{}: link up ({}), static configuration", nic.name, nic.mac);
                Configured {
                    nic,
                    v4: Some(V4 {
                        address: s.address,
                        prefix: s.prefix,
                        routes: s.gateway.map(default_route).into_iter().collect(),
                        dhcp: None,
                    }),
                    v6: None,
                    dns: s.dns.iter().copied().map(IpAddr::V4).collect(),
                    domain: None,
                    search: Vec::new(),
                    hostname: cfg.hostname().map(str::to_owned),
                    mtu: None,
                    ntp: ip.ntp.into_iter().collect(),
                    lease: None,
                }
            }
            IpMode::Dhcp { client_id } | IpMode::DualStack { client_id, .. } => {
                // Racing every NIC: one whose driver registers while DHCP runs joins too (not with
                // VLANs or bonds, whose NICs are no candidates).
                let growing = ip.device.is_none()
                    && cfg.bootif.is_none()
                    && cfg.vlans.is_empty()
                    && cfg.bonds.is_empty();
                let (nic, lease, candidates) =
                    race(&mut nl, &watch, candidates, growing, cfg, client_id.as_ref())?;
                for why in &lease.refused {
                    log::warn!("{}: DHCP: ignoring the {why}", nic.name);
                }
                for loser in candidates.iter().filter(|n| n.name != nic.name) {
                    match nl.request(|seq| netlink::link_down(loser.index, seq)) {
                        Ok(()) => log::info!("{}: set down ({} has the lease)", loser.name, nic.name),
                        Err(e) => log::warn!("{}: setting the link down: {e}", loser.name),
                    }
                }
                let mut configured = Configured::from_lease(nic, &lease, cfg.hostname());
                configured.lease = Some((lease.clone(), sys::uptime()));
                if let Some(ntp) = ip.ntp {
                    configured.ntp.retain(|n| *n != ntp);
                    configured.ntp.insert(0, ntp);
                }
                if let IpMode::DualStack { v6, .. } = ip.mode {
                    dual_stack(&mut nl, &mut configured, v6, cfg);
                }
                configured
            }
            IpMode::Auto6 => {
                let nic = wait_for_carrier(&candidates, &watch)?;
                log::info!("{}: link up ({}), IPv6 by SLAAC", nic.name, nic.mac);
                let deadline = sys::uptime().saturating_add(cfg.dhcp_timeout);
                v6::auto6(&nic, deadline, cfg.hostname())?
            }
            IpMode::Dhcp6 => {
                let nic = wait_for_carrier(&candidates, &watch)?;
                log::info!("{}: link up ({}), IPv6 by DHCPv6", nic.name, nic.mac);
                let deadline = sys::uptime().saturating_add(cfg.dhcp_timeout);
                v6::dhcp6(&mut nl, &nic, deadline, cfg.hostname())?
            }
            IpMode::Static6(s) => {
                let nic = wait_for_carrier(&candidates, &watch)?;
                log::info!("{}: link up ({}), static IPv6 configuration", nic.name, nic.mac);
                v6::static6(&mut nl, &nic, s, cfg.hostname())?
            }
            IpMode::Off => {
                for nic in &candidates {
                    log::info!("{}: left unconfigured (ip=off)", nic.name);
                }
                continue;
            }
        };
        apply(&mut nl, &configured)?;
        done.push(configured);
    }
    write_files(&done)?;
    Ok(done)
}

impl Configured {
    /// What `lease` configures on `nic`; a `hostname` from the cmdline wins over the server's.
    pub fn from_lease(nic: Nic, lease: &dhcp::Lease, hostname: Option<&str>) -> Configured {
        Configured {
            nic,
            v4: Some(V4 {
                address: lease.address,
                prefix: lease.prefix,
                routes: lease.routes.clone(),
                dhcp: Some((lease.server, lease.lease_time)),
            }),
            v6: None,
            dns: lease.dns.iter().copied().map(IpAddr::V4).collect(),
            domain: lease.domain.clone(),
            search: lease.search.clone(),
            hostname: hostname.map(str::to_owned).or(lease.hostname.clone()),
            mtu: lease.mtu,
            ntp: lease.ntp.clone(),
            lease: None,
        }
    }

    /// What the lease keeper needs, when this NIC's IPv4 came from DHCP.
    pub fn keeper_state(&self, cfg: &crate::cmdline::Config) -> Option<keeper::State> {
        let lease = self.lease.clone()?;
        let ip = cfg.net.interfaces.iter().find(|i| i.device.as_deref().is_none_or(|d| d == self.nic.name));
        let client_id = ip.and_then(|i| match &i.mode {
            IpMode::Dhcp { client_id } | IpMode::DualStack { client_id, .. } => client_id.clone(),
            _ => None,
        });
        Some(keeper::State {
            nic: self.nic.clone(),
            hostname: cfg.net.hostname().map(str::to_owned),
            client_id: client_id.map(|c| (c.kind, c.id.into_bytes())),
            lease: lease.0,
            bound_at: lease.1,
        })
    }

    /// The IPv4 default route's gateway, if any.
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        self.v4.as_ref()?.routes.iter().find(|r| r.prefix == 0).map(|r| r.gateway)
    }
}

fn default_route(gateway: Ipv4Addr) -> dhcp::Route {
    dhcp::Route { destination: Ipv4Addr::UNSPECIFIED, prefix: 0, gateway }
}

fn netlink_error(step: &str, nic: &str, source: io::Error) -> NetError {
    NetError::Netlink { step: step.to_owned(), nic: nic.to_owned(), source }
}

/// The physical NICs, in name order. Loopback and virtual interfaces (no `device` link in sysfs:
/// bridges, bonds, tunnels) are left out.
pub fn list_nics() -> Result<Vec<Nic>, NetError> {
    let dir = Path::new("/sys/class/net");
    let entries = std::fs::read_dir(dir).map_err(|source| NetError::Sysfs { path: dir.into(), source })?;
    let mut nics = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.join("device").exists() {
            continue;
        }
        let read = |file: &str| {
            let p = path.join(file);
            std::fs::read_to_string(&p)
                .map(|s| s.trim().to_owned())
                .map_err(|source| NetError::Sysfs { path: p, source })
        };
        // A NIC that vanished between the listing and the read, or has odd files, is not a NIC.
        let (Ok(index), Ok(address)) = (read("ifindex"), read("address")) else { continue };
        let (Ok(index), Some(mac)) = (index.parse::<u32>(), Mac::parse(&address)) else { continue };
        nics.push(Nic { name: entry.file_name().to_string_lossy().into_owned(), index, mac });
    }
    nics.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nics)
}

/// Wakes the network stage when a link changes, so that it sets a NIC up the moment it registers
/// and starts DHCP the moment it has carrier, rather than at the next look at sysfs. Without the
/// socket (an old kernel, no memory), it is a plain sleep of [`POLL`].
struct LinkWatch(Option<std::os::fd::OwnedFd>);

/// Notifications read per wakeup, at most: a flapping link cannot hold the stage in the drain.
const LINK_BURST: usize = 64;

impl LinkWatch {
    fn open() -> LinkWatch {
        match sys::link_events() {
            Ok(fd) => LinkWatch(Some(fd)),
            Err(e) => {
                log::debug!("no rtnetlink link notifications ({e}); looking at sysfs every 50 ms");
                LinkWatch(None)
            }
        }
    }

    /// The longest wait between two looks at sysfs.
    fn tick(&self) -> Duration {
        if self.0.is_some() {
            WATCHED_POLL
        } else {
            POLL
        }
    }

    /// Waits until a link changes, at most `timeout` or [`LinkWatch::tick`], and drains what came.
    fn wait(&self, timeout: Duration) {
        let timeout = timeout.min(self.tick());
        match &self.0 {
            Some(fd) => {
                let _ = sys::poll_readable(&[fd], timeout);
                self.drain();
            }
            None => std::thread::sleep(timeout),
        }
    }

    /// Reads the notifications that are waiting: only their arrival matters.
    fn drain(&self) {
        if let Some(fd) = &self.0 {
            let mut buf = [0u8; 4096];
            for _ in 0..LINK_BURST {
                if !matches!(sys::recv_now(fd, &mut buf), Ok(Some(_))) {
                    break;
                }
            }
        }
    }
}

/// The MAC that stands for `BOOTIF=`'s `mac`: that of the first slave of the bond that has a slave
/// with it (the bond's, once made), else `mac` itself.
fn bond_bootif(mac: Mac, bonds: &[Bond], nics: &[Nic]) -> Mac {
    let slave = nics.iter().find(|n| n.mac == mac);
    let bond = slave.and_then(|s| bonds.iter().find(|b| b.slaves.contains(&s.name)));
    let first = bond.and_then(|b| b.slaves.first()).and_then(|f| nics.iter().find(|n| n.name == *f));
    first.map_or(mac, |f| f.mac)
}

/// The bond's options as rtnetlink carries them, its primary named by ifindex.
fn bond_attrs(b: &Bond, primary: Option<u32>) -> netlink::BondAttrs {
    netlink::BondAttrs {
        mode: b.mode as u8,
        miimon: b.miimon,
        updelay: b.updelay,
        downdelay: b.downdelay,
        primary,
        xmit_hash_policy: b.xmit_hash_policy,
        lacp_rate: b.lacp_fast.map(u8::from),
    }
}

/// Creates each `bond=` (`bonding`, which the modules stage loads only for `bond=`, with no bond
/// of its own), enslaves its NICs, each set down first as the kernel wants, and sets it up (with
/// its MTU); returns `nics` with the bonds. The bond takes its first slave's MAC.
fn add_bonds(nl: &mut netlink::Rtnetlink, bonds: &[Bond], mut nics: Vec<Nic>) -> Result<Vec<Nic>, NetError> {
    for b in bonds {
        let failed = |step: &str| {
            let (step, name) = (step.to_owned(), b.name.clone());
            move |source| NetError::Bond { step, name, source }
        };
        let mut slaves = Vec::new();
        for name in &b.slaves {
            let nic = nics.iter().find(|n| n.name == *name).cloned();
            slaves.push(nic.ok_or_else(|| NetError::NoMember {
                name: name.clone(),
                of: format!("a NIC of bond {}", b.name),
                found: describe(&nics),
            })?);
        }
        let primary = b.primary.as_ref().and_then(|p| slaves.iter().find(|s| s.name == *p)).map(|s| s.index);
        let attrs = bond_attrs(b, primary);
        match nl.request(|seq| netlink::new_bond(&b.name, &attrs, true, seq)) {
            Ok(()) => {}
            // A kernel with bonding built in has made bond0 itself (max_bonds=1): take it when it is
            // a bond that nothing uses yet, and give it the options.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && unused_bond(&b.name) => {
                log::info!("{}: made by the kernel, taken as it is down and has no slaves", b.name);
                nl.request(|seq| netlink::new_bond(&b.name, &attrs, false, seq))
                    .map_err(failed("setting the options"))?;
            }
            Err(e) => return Err(failed("creating")(e)),
        }
        let path = Path::new("/sys/class/net").join(&b.name);
        let index = read_index(&path)?;
        for s in &slaves {
            nl.request(|seq| netlink::link_down(s.index, seq))
                .map_err(failed(&format!("setting {} down", s.name)))?;
            nl.request(|seq| netlink::set_master(s.index, index, seq))
                .map_err(failed(&format!("enslaving {}", s.name)))?;
        }
        if let Some(mtu) = b.mtu {
            nl.request(|seq| netlink::link_mtu(index, mtu, seq)).map_err(failed("setting the MTU"))?;
        }
        nl.request(|seq| netlink::link_up(index, seq)).map_err(failed("setting the link up"))?;
        let first = slaves.first().map(|s| s.mac);
        let mac = sysfs_mac(&path).or(first).unwrap_or(Mac([0; 6]));
        if first.is_some_and(|f| f != mac) {
            log::warn!("{}: its MAC {mac} is not its first NIC's", b.name);
        }
        let names: Vec<&str> = slaves.iter().map(|s| s.name.as_str()).collect();
        log::info!("{}: {} over {} ({mac}), {}", b.name, b.mode.name(), names.join(" "), b.options_text());
        nics.push(Nic { name: b.name.clone(), index, mac });
    }
    Ok(nics)
}

/// Whether `name` is a bond that is down and has no slaves.
fn unused_bond(name: &str) -> bool {
    let dir = Path::new("/sys/class/net").join(name);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).map(|s| s.trim().to_owned());
    let down = read("flags").ok().and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok());
    read("bonding/slaves").is_ok_and(|s| s.is_empty()) && down.is_some_and(|f| f & 1 == 0)
}

/// The interface index in sysfs directory `path`.
fn read_index(path: &Path) -> Result<u32, NetError> {
    let p = path.join("ifindex");
    let text = std::fs::read_to_string(&p).map_err(|source| NetError::Sysfs { path: p.clone(), source })?;
    text.trim()
        .parse::<u32>()
        .map_err(|_| NetError::Sysfs { path: p, source: io::Error::from(io::ErrorKind::InvalidData) })
}

/// The MAC in sysfs directory `path`, if it reads as one.
fn sysfs_mac(path: &Path) -> Option<Mac> {
    std::fs::read_to_string(path.join("address")).ok().and_then(|a| Mac::parse(a.trim()))
}

/// Creates each `vlan=` over its NIC (set up first: a VLAN cannot come up on a NIC that is down),
/// in cmdline order, so that a VLAN may sit on an earlier one; returns `nics` with the VLANs.
fn add_vlans(nl: &mut netlink::Rtnetlink, vlans: &[Vlan], mut nics: Vec<Nic>) -> Result<Vec<Nic>, NetError> {
    for v in vlans {
        let parent = nics.iter().find(|n| n.name == v.parent).cloned().ok_or_else(|| NetError::NoMember {
            name: v.parent.clone(),
            of: format!("the NIC of VLAN {}", v.name),
            found: describe(&nics),
        })?;
        let failed =
            |source| NetError::Vlan { name: v.name.clone(), id: v.id, parent: v.parent.clone(), source };
        nl.request(|seq| netlink::link_up(parent.index, seq)).map_err(failed)?;
        // EEXIST too is a failure: nothing else makes VLANs before netinit, and an interface of that
        // name (or that id on that NIC) would not be the one asked for.
        nl.request(|seq| netlink::new_vlan(&v.name, parent.index, v.id, seq)).map_err(failed)?;
        let path = Path::new("/sys/class/net").join(&v.name);
        let read = |file: &str| {
            let p = path.join(file);
            std::fs::read_to_string(&p)
                .map(|s| s.trim().to_owned())
                .map_err(|source| NetError::Sysfs { path: p, source })
        };
        let index = read("ifindex")?.parse::<u32>().map_err(|_| NetError::Sysfs {
            path: path.join("ifindex"),
            source: io::Error::from(io::ErrorKind::InvalidData),
        })?;
        let mac = Mac::parse(&read("address")?).unwrap_or(parent.mac);
        log::info!("{}: VLAN {} over {} ({mac})", v.name, v.id, v.parent);
        nics.push(Nic { name: v.name.clone(), index, mac });
    }
    Ok(nics)
}

/// Waits until the NICs the cmdline names (or any NIC) are registered; a VLAN's name stands for
/// its NIC and a bond's for its slaves, as netinit makes the VLAN and the bond itself.
fn wait_for_nics(cfg: &NetConfig, watch: &LinkWatch) -> Result<Vec<Nic>, NetError> {
    let start = sys::uptime();
    let is_vlan = |d: &str| cfg.vlans.iter().any(|v| v.name == d) || cfg.bonds.iter().any(|b| b.name == d);
    loop {
        let nics = list_nics()?;
        let named = cfg
            .interfaces
            .iter()
            .filter_map(|i| i.device.as_deref())
            .filter(|d| !is_vlan(d))
            .chain(cfg.vlans.iter().map(|v| v.parent.as_str()).filter(|p| !is_vlan(p)))
            .chain(cfg.bonds.iter().flat_map(|b| b.slaves.iter().map(String::as_str)));
        let wanted = match &cfg.bootif {
            Some(mac) if cfg.bonds.is_empty() => nics.iter().any(|n| n.mac == *mac),
            // Every slave of a bond, as BOOTIF's NIC may be one of them.
            Some(mac) => {
                nics.iter().any(|n| n.mac == *mac)
                    && named.into_iter().all(|d| nics.iter().any(|n| n.name == d))
            }
            None => !nics.is_empty() && named.into_iter().all(|d| nics.iter().any(|n| n.name == d)),
        };
        let waited = sys::uptime().saturating_sub(start);
        if wanted || waited >= NIC_TIMEOUT {
            if nics.is_empty() {
                return Err(NetError::NoNic);
            }
            return Ok(nics);
        }
        watch.wait(NIC_TIMEOUT.saturating_sub(waited));
    }
}

/// The NICs of `now` that are not among `known` (by interface index: a name can be reused).
fn newcomers(known: &[Nic], now: Vec<Nic>) -> Vec<Nic> {
    now.into_iter().filter(|n| !known.iter().any(|k| k.index == n.index)).collect()
}

fn describe(nics: &[Nic]) -> String {
    nics.iter().map(|n| format!("{} ({})", n.name, n.mac)).collect::<Vec<_>>().join(", ")
}

/// The NICs one `ip=` may use: the one it names, else the one `BOOTIF` names, else all.
pub fn choose(bootif: Option<Mac>, device: Option<&str>, nics: &[Nic]) -> Result<Vec<Nic>, NetError> {
    if let Some(name) = device {
        return match nics.iter().find(|n| n.name == name) {
            Some(n) => Ok(vec![n.clone()]),
            None => Err(NetError::NoDevice { name: name.to_owned(), found: describe(nics) }),
        };
    }
    if let Some(mac) = bootif {
        return match nics.iter().find(|n| n.mac == mac) {
            Some(n) => Ok(vec![n.clone()]),
            None => Err(NetError::NoBootif { mac, found: describe(nics) }),
        };
    }
    Ok(nics.to_vec())
}

fn has_carrier(nic: &Nic) -> bool {
    // Reading `carrier` fails with EINVAL while the link is down administratively.
    std::fs::read_to_string(format!("/sys/class/net/{}/carrier", nic.name)).is_ok_and(|s| s.trim() == "1")
}

/// The first NIC, in name order, that has a link.
fn wait_for_carrier(candidates: &[Nic], watch: &LinkWatch) -> Result<Nic, NetError> {
    let start = sys::uptime();
    loop {
        let waited = sys::uptime().saturating_sub(start);
        if waited >= CARRIER_TIMEOUT {
            break;
        }
        if let Some(nic) = candidates.iter().find(|n| has_carrier(n)) {
            return Ok(nic.clone());
        }
        watch.wait(CARRIER_TIMEOUT.saturating_sub(waited));
    }
    Err(NetError::NoCarrier {
        names: candidates.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", "),
    })
}

/// One NIC in the DHCP race.
struct Racer {
    nic: Nic,
    socket: std::os::fd::OwnedFd,
    client: dhcp::Client,
    discovers: u32,
    offers: u32,
}

/// Runs DHCP on every candidate NIC that has a link, in parallel; a NIC whose link comes up later
/// joins, and with `growing`, so does a NIC that registers later (set up here). The first lease
/// wins; the candidates are returned as they ended up. Gives up after `cfg.dhcp_timeout`, or after
/// the carrier timeout if no NIC has a link at all.
fn race(
    nl: &mut netlink::Rtnetlink,
    watch: &LinkWatch,
    mut candidates: Vec<Nic>,
    growing: bool,
    cfg: &NetConfig,
    client_id: Option<&ClientId>,
) -> Result<(Nic, dhcp::Lease, Vec<Nic>), NetError> {
    let start = sys::uptime();
    let deadline = start.saturating_add(cfg.dhcp_timeout);
    let mut waiting: Vec<Nic> = candidates.clone();
    let mut racers: Vec<Racer> = Vec::new();
    let mut buf = vec![0u8; 1600];
    let mut listed = start;
    // A link changed since the last look: a NIC may have registered or found its carrier.
    let mut changed = false;
    loop {
        let now = sys::uptime();
        if growing && (changed || now.saturating_sub(listed) >= POLL * 5) {
            listed = now;
            for nic in newcomers(&candidates, list_nics().unwrap_or_default()) {
                log::info!("{}: a new NIC ({}), set up to join the DHCP race", nic.name, nic.mac);
                if let Err(e) = nl.request(|seq| netlink::link_up(nic.index, seq)) {
                    log::warn!("{}: setting the link up: {e}", nic.name);
                }
                candidates.push(nic.clone());
                waiting.push(nic);
            }
        }
        // NICs with a link join the race.
        let (joined, still): (Vec<Nic>, Vec<Nic>) = waiting.into_iter().partition(has_carrier);
        waiting = still;
        // Racing every NIC, the race is open to those that register later, however many there are now.
        let racing = growing || candidates.len() > 1;
        for nic in joined {
            racers.push(Racer::join(nic, cfg, client_id, racing, now)?);
        }
        if racers.is_empty() && now.saturating_sub(start) >= CARRIER_TIMEOUT {
            let names = candidates.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ");
            return Err(NetError::NoCarrier { names });
        }
        if now >= deadline {
            return Err(NetError::DhcpTimeout {
                nic: racers.iter().map(|r| r.nic.name.as_str()).collect::<Vec<_>>().join(", "),
                timeout: cfg.dhcp_timeout,
                discovers: racers.iter().map(|r| r.discovers).fold(0, u32::saturating_add),
                offers: racers.iter().map(|r| r.offers).fold(0, u32::saturating_add),
            });
        }
        for r in &mut racers {
            r.transmit(now, now.saturating_sub(start));
        }
        let mut wake =
            racers.iter().map(|r| r.client.next_deadline()).min().unwrap_or(deadline).min(deadline);
        if !waiting.is_empty() || growing {
            wake = wake.min(now.saturating_add(POLL * 5));
        }
        let mut sockets: Vec<&std::os::fd::OwnedFd> = racers.iter().map(|r| &r.socket).collect();
        // The link watch last, while there is a NIC it could bring.
        let watched = (!waiting.is_empty() || growing).then_some(watch.0.as_ref()).flatten();
        sockets.extend(watched);
        let ready = sys::poll_readable(&sockets, wake.saturating_sub(sys::uptime()))
            .map_err(|source| NetError::Receive { nic: "-".into(), source })?;
        changed = watched.is_some() && ready.last() == Some(&true);
        if changed {
            watch.drain();
        }
        for (r, _) in racers.iter_mut().zip(ready).filter(|(_, ready)| *ready) {
            if let Some(lease) = r.receive(&mut buf)? {
                if candidates.len() > 1 {
                    log::info!("{}: won the DHCP race: first lease, from {}", r.nic.name, lease.server);
                }
                return Ok((r.nic.clone(), lease, candidates));
            }
        }
    }
}

impl Racer {
    /// `nic` has a link: open its socket and start its client.
    fn join(
        nic: Nic,
        cfg: &NetConfig,
        client_id: Option<&ClientId>,
        racing: bool,
        now: Duration,
    ) -> Result<Racer, NetError> {
        let socket = sys::udp_socket_on_device(&nic.name, dhcp::CLIENT_PORT)
            .map_err(|source| NetError::Socket { nic: nic.name.clone(), source })?;
        let identity = dhcp::Identity {
            mac: nic.mac.0,
            hostname: cfg.hostname().map(str::to_owned),
            client_id: client_id.map(|c| (c.kind, c.id.as_bytes().to_vec())),
        };
        let what = if racing { ", joining the DHCP race" } else { "" };
        log::info!("{}: link up ({}){what}", nic.name, nic.mac);
        let client = dhcp::Client::new(identity, sys::random_u64(), now);
        Ok(Racer { nic, socket, client, discovers: 0, offers: 0 })
    }

    /// Sends what the client has to send now, if anything.
    fn transmit(&mut self, now: Duration, elapsed: Duration) {
        let Some(t) = self.client.poll_transmit(now) else { return };
        if t.kind == dhcp::MessageType::Discover {
            self.discovers = self.discovers.saturating_add(1);
        }
        let (name, kind) = (&self.nic.name, t.kind.name());
        log::info!("{name}: DHCP {kind} (attempt {}, {}s elapsed)", t.attempt, elapsed.as_secs());
        let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, dhcp::SERVER_PORT);
        if let Err(e) = sys::send_to(&self.socket, &t.packet, broadcast) {
            // ENETDOWN and friends while a link flaps: the retransmission will try again.
            log::warn!("{name}: sending DHCP {kind}: {e}");
        }
    }

    /// Reads the waiting replies, at most [`RECEIVE_BURST`] of them, so that a flood of broadcasts
    /// cannot keep the race from its deadline; the lease, once one binds.
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<dhcp::Lease>, NetError> {
        let name = &self.nic.name;
        let receive_error = |source| NetError::Receive { nic: name.clone(), source };
        for _ in 0..RECEIVE_BURST {
            let Some(n) = sys::recv_now(&self.socket, buf).map_err(receive_error)? else { break };
            match self.client.handle(buf.get(..n).unwrap_or(&[]), sys::uptime()) {
                dhcp::Event::Offered { server, address } => {
                    self.offers = self.offers.saturating_add(1);
                    log::info!("{name}: DHCP OFFER of {address} from {server}");
                }
                dhcp::Event::Nak { server, message } => {
                    let why = message.as_deref().unwrap_or("no reason given");
                    log::warn!("{name}: DHCP NAK from {server}: {why}; starting over");
                }
                dhcp::Event::Bound(lease) => return Ok(Some(lease)),
                dhcp::Event::Ignored(why) => log::debug!("{name}: ignored a DHCP packet: {why}"),
                dhcp::Event::Malformed(why) => {
                    log::debug!("{name}: ignored a malformed DHCP packet: {why:?}")
                }
            }
        }
        Ok(None)
    }
}

/// The IPv6 half of a dual-stack `ip=`, on the NIC DHCPv4 chose, its facts added to `c`'s. IPv4
/// works, so a failure here is a warning: the boot goes on over IPv4.
fn dual_stack(nl: &mut netlink::Rtnetlink, c: &mut Configured, v6: crate::cmdline::Stack6, cfg: &NetConfig) {
    let deadline = sys::uptime().saturating_add(cfg.dhcp_timeout);
    let got = match v6 {
        crate::cmdline::Stack6::Auto6 => v6::auto6(&c.nic, deadline, None),
        crate::cmdline::Stack6::Dhcp6 => v6::dhcp6(nl, &c.nic, deadline, None),
    };
    match got {
        Ok(six) => {
            c.v6 = six.v6;
            for d in six.dns {
                if !c.dns.contains(&d) {
                    c.dns.push(d);
                }
            }
            for s in six.search {
                if !c.search.contains(&s) {
                    c.search.push(s);
                }
            }
        }
        Err(e) => log::warn!("{e}; going on with IPv4 only"),
    }
}

/// Applies address, routes, MTU, DNS and hostname.
fn apply(nl: &mut netlink::Rtnetlink, c: &Configured) -> Result<(), NetError> {
    let nic = &c.nic;
    if let Some(mtu) = c.mtu {
        // An MTU the NIC cannot take (a server's 9000 for a 1500-byte NIC) leaves its own.
        if let Err(e) = nl.request(|seq| netlink::link_mtu(nic.index, u32::from(mtu), seq)) {
            log::warn!("{}: setting MTU {mtu}: {e}; keeping the NIC's", nic.name);
        }
    }
    if let Some(v4) = &c.v4 {
        apply_v4(nl, nic, v4)?;
    }
    log::info!("{}", summary(c));
    Ok(())
}

pub(super) fn apply_v4(nl: &mut netlink::Rtnetlink, nic: &Nic, c: &V4) -> Result<(), NetError> {
    let err = |step: &str| {
        let step = step.to_owned();
        move |source| NetError::Netlink { step, nic: nic.name.clone(), source }
    };
    nl.request(|seq| netlink::add_address(nic.index, c.address, c.prefix, seq))
        .map_err(err(&format!("adding address {}/{}", c.address, c.prefix)))?;
    let origin = if c.dhcp.is_some() { netlink::Origin::Dhcp } else { netlink::Origin::Static };
    for route in &c.routes {
        let gateway = (!route.gateway.is_unspecified()).then_some(route.gateway);
        if let Some(gw) = gateway.filter(|gw| !same_subnet(*gw, c.address, c.prefix)) {
            // A gateway outside the subnet (common with /32 leases) must first be reachable on-link.
            nl.request(|seq| netlink::add_route(nic.index, gw, 32, None, Some(c.address), origin, seq))
                .map_err(err(&format!("adding an on-link route to gateway {gw}")))?;
        }
        nl.request(|seq| {
            netlink::add_route(nic.index, route.destination, route.prefix, gateway, None, origin, seq)
        })
        .map_err(err(&format!(
            "adding route {}/{} via {}",
            route.destination, route.prefix, route.gateway
        )))?;
    }
    Ok(())
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let mask = netlink::prefix_mask(prefix);
    u32::from(a) & mask == u32::from(b) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(name: &str, last: u8) -> Nic {
        Nic { name: name.into(), index: u32::from(last), mac: Mac([0x52, 0x54, 0, 0, 0, last]) }
    }

    #[test]
    fn nics_that_register_during_the_race_are_newcomers() {
        let known = [nic("eth0", 1)];
        assert_eq!(newcomers(&known, vec![nic("eth0", 1), nic("eth1", 2)]), [nic("eth1", 2)]);
        assert_eq!(newcomers(&known, vec![nic("eth0", 1)]), []);
        assert_eq!(newcomers(&known, vec![]), [], "a NIC that went away is not a newcomer");
    }

    #[test]
    fn choosing_the_nic() {
        let nics = [nic("eth0", 1), nic("eth1", 2)];
        let names =
            |r: Result<Vec<Nic>, NetError>| r.map(|v| v.into_iter().map(|n| n.name).collect::<Vec<_>>());
        let mac = |last| Some(Mac([0x52, 0x54, 0, 0, 0, last]));
        assert_eq!(names(choose(None, None, &nics)).unwrap(), ["eth0", "eth1"]);
        assert_eq!(names(choose(mac(2), None, &nics)).unwrap(), ["eth1"]);
        let e = choose(mac(9), None, &nics).unwrap_err();
        assert_eq!(e.to_string(), "no network interface has MAC 52:54:00:00:00:09 (BOOTIF); found eth0 (52:54:00:00:00:01), eth1 (52:54:00:00:00:02)");
        assert_eq!(names(choose(None, Some("eth1"), &nics)).unwrap(), ["eth1"]);
        assert_eq!(
            names(choose(mac(1), Some("eth1"), &nics)).unwrap(),
            ["eth1"],
            "ip= names the NIC it configures"
        );
        assert!(matches!(choose(None, Some("ens3"), &nics), Err(NetError::NoDevice { .. })));
    }

    #[test]
    fn bootif_names_a_bond_by_any_of_its_slaves() {
        let nics = [nic("eth0", 1), nic("eth1", 2), nic("eth2", 3)];
        let bond = crate::cmdline::Bond::parse("bond0:eth1,eth0").unwrap();
        let mac = |last| Mac([0x52, 0x54, 0, 0, 0, last]);
        let bonds = std::slice::from_ref(&bond);
        assert_eq!(bond_bootif(mac(2), bonds, &nics), mac(2), "the first slave's MAC is the bond's");
        assert_eq!(bond_bootif(mac(1), bonds, &nics), mac(2), "the second slave stands for the bond");
        assert_eq!(bond_bootif(mac(3), bonds, &nics), mac(3), "no slave: the NIC itself");
        assert_eq!(bond_bootif(mac(9), bonds, &nics), mac(9));
        assert_eq!(bond_bootif(mac(1), &[], &nics), mac(1));
    }

    #[test]
    fn bond_options_over_rtnetlink() {
        let b = crate::cmdline::Bond::parse(
            "bond0:eth0,eth1:mode=802.3ad,miimon=50,lacp_rate=fast,xmit_hash_policy=layer3+4,updelay=200",
        )
        .unwrap();
        let a = bond_attrs(&b, None);
        assert_eq!(
            a,
            netlink::BondAttrs {
                mode: 4,
                miimon: 50,
                updelay: Some(200),
                downdelay: None,
                primary: None,
                xmit_hash_policy: Some(1),
                lacp_rate: Some(1)
            }
        );
        let b = crate::cmdline::Bond::parse("bond1:eth0,eth1:primary=eth1").unwrap();
        let a = bond_attrs(&b, Some(7));
        assert_eq!((a.mode, a.miimon, a.primary, a.lacp_rate), (1, 100, Some(7), None));
    }

    fn configured() -> Configured {
        Configured {
            nic: nic("eth0", 1),
            v4: Some(V4 {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
                routes: vec![default_route(Ipv4Addr::new(10, 0, 2, 2))],
                dhcp: Some((Ipv4Addr::new(10, 0, 2, 2), Some(Duration::from_secs(86400)))),
            }),
            v6: None,
            dns: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 2, 3))],
            domain: Some("lan".into()),
            search: vec![],
            hostname: Some("it's".into()),
            mtu: None,
            ntp: vec![Ipv4Addr::new(10, 0, 2, 2)],
            lease: None,
        }
    }

    #[test]
    fn files_for_the_booted_system() {
        assert_eq!(
            resolv_conf(
                &["1.1.1.1".parse().unwrap(), "fd00::53".parse().unwrap()],
                &["ex.org", "lab.ex.org"]
            ),
            "# written by netinit\nsearch ex.org lab.ex.org\nnameserver 1.1.1.1\nnameserver fd00::53\n"
        );
        assert_eq!(resolv_conf(&[], &[]), "# written by netinit\n");
        assert_eq!(
            lease_file(&configured()),
            "INTERFACE='eth0'\nMAC='52:54:00:00:00:01'\nADDRESS='10.0.2.15'\nPREFIX='24'\nGATEWAY='10.0.2.2'\nDNS='10.0.2.3'\nDOMAIN='lan'\nSEARCH=''\nHOSTNAME='it'\\''s'\nMTU=''\nNTP='10.0.2.2'\nMETHOD='dhcp'\nSERVER='10.0.2.2'\nLEASE_TIME='86400'\n"
        );
    }

    #[test]
    fn summaries() {
        assert_eq!(
            summary(&configured()),
            "eth0: 10.0.2.15/24 via 10.0.2.2, dns 10.0.2.3, from DHCP server 10.0.2.2 for 86400s"
        );
        let mut c = configured();
        let v4 = c.v4.as_mut().unwrap();
        v4.dhcp = None;
        v4.routes.clear();
        c.dns.clear();
        c.mtu = Some(9000);
        assert_eq!(summary(&c), "eth0: 10.0.2.15/24, mtu 9000, static");
        // IPv6 only, and dual stack.
        let v6 = V6 {
            addresses: vec![("fd00:10::5".parse().unwrap(), 64)],
            router: Some("fe80::1".parse().unwrap()),
            method: Method6::Slaac,
        };
        let c6 = Configured {
            v4: None,
            v6: Some(v6.clone()),
            dns: vec!["fd00:10::1".parse().unwrap()],
            ..configured()
        };
        assert_eq!(summary(&c6), "eth0: fd00:10::5/64 via fe80::1 (slaac), dns fd00:10::1");
        let lease = lease_file(&c6);
        assert!(lease.contains("ADDRESS=''\nPREFIX=''\nGATEWAY=''\nDNS='fd00:10::1'\n"), "{lease}");
        assert!(
            lease.ends_with("METHOD=''\nADDRESS6='fd00:10::5/64'\nGATEWAY6='fe80::1'\nMETHOD6='slaac'\n"),
            "{lease}"
        );
        let dual = Configured { v6: Some(v6), ..configured() };
        assert_eq!(
            summary(&dual),
            "eth0: 10.0.2.15/24 via 10.0.2.2, fd00:10::5/64 via fe80::1 (slaac), dns 10.0.2.3, from DHCP server 10.0.2.2 for 86400s"
        );
    }

    #[test]
    fn a_flood_of_datagrams_is_read_in_bursts_so_the_deadline_still_comes() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = socket.local_addr().unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..RECEIVE_BURST * 3 {
            sender.send_to(b"not dhcp", to).unwrap();
        }
        let identity = dhcp::Identity { mac: [0x52, 0x54, 0, 0, 0, 1], hostname: None, client_id: None };
        let mut racer = Racer {
            nic: nic("eth0", 1),
            socket: std::os::fd::OwnedFd::from(socket),
            client: dhcp::Client::new(identity, 1, Duration::ZERO),
            discovers: 0,
            offers: 0,
        };
        let mut buf = vec![0u8; 1600];
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(racer.receive(&mut buf).unwrap(), None);
        let mut left = 0;
        while sys::recv_now(&racer.socket, &mut buf).unwrap().is_some() {
            left += 1;
        }
        assert_eq!(left, RECEIVE_BURST * 2, "one call reads one burst and goes back to the clock");
    }

    #[test]
    fn subnets() {
        let ip = Ipv4Addr::new;
        assert!(same_subnet(ip(10, 0, 2, 2), ip(10, 0, 2, 15), 24));
        assert!(!same_subnet(ip(10, 0, 3, 2), ip(10, 0, 2, 15), 24));
        assert!(!same_subnet(ip(10, 0, 2, 2), ip(10, 0, 2, 15), 32));
        assert!(same_subnet(ip(1, 2, 3, 4), ip(5, 6, 7, 8), 0));
    }
}
