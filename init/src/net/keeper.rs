//! `netinit.keep_lease=`: after switch_root, a small process keeps the boot's DHCP lease alive for
//! a system that runs no DHCP client of its own (`renew.rs` is its state machine).
//!
//! PID 1 writes what the keeper needs to `/run/netinit/keeper.state` ([`state_text`]), copies its
//! own binary to `/run/netinit/netinit` before the initramfs is freed, and after the switch starts
//! `/run/netinit/netinit keep-lease`: a fresh process of its own small memory that holds no file of
//! the deleted initramfs. The keeper renews at T1, rebinds at T2, and when the lease ends removes
//! the address and routes it added and starts over with DISCOVER; every change goes to
//! `/run/netinit/lease` and one line to `/dev/kmsg`. It steps aside, saying so, when the address it
//! manages is removed or replaced by someone else (a DHCP client of the booted system starting
//! usually flushes the interface first) or when another socket binds UDP port 68, and it stops on
//! SIGTERM (the default action: shutdown sends it).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use super::dhcp::{self, Identity, Lease, Route};
use super::renew::{Heard, Keeper, Step};
use super::{files, netlink, Configured, Nic, V4};
use crate::cmdline::Mac;
use crate::sys;

/// Where PID 1 leaves the keeper's state, and its copy of the binary.
pub const STATE: &str = "/run/netinit/keeper.state";
pub const BINARY: &str = "/run/netinit/netinit";

/// The longest the keeper sleeps before looking at the other clients again.
const LOOK: Duration = Duration::from_secs(5);
const BURST: usize = 64;

/// What the keeper needs: the NIC, who the client is, the lease and when it was bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub nic: Nic,
    pub hostname: Option<String>,
    pub client_id: Option<(u8, Vec<u8>)>,
    pub lease: Lease,
    /// `CLOCK_BOOTTIME` when the lease was bound.
    pub bound_at: Duration,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (s.len() % 2 == 0)
        .then(|| (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect())?
}

/// The state file: `KEY=value` lines, values without spaces (routes `dest/prefix/gateway`).
pub fn state_text(s: &State) -> String {
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs().to_string()).unwrap_or_default();
    let routes: Vec<String> =
        s.lease.routes.iter().map(|r| format!("{}/{}/{}", r.destination, r.prefix, r.gateway)).collect();
    [
        ("INTERFACE", s.nic.name.clone()),
        ("INDEX", s.nic.index.to_string()),
        ("MAC", s.nic.mac.to_string()),
        ("HOSTNAME", s.hostname.clone().unwrap_or_default()),
        ("CLIENT_ID", s.client_id.as_ref().map(|(k, v)| format!("{k:02x}{}", hex(v))).unwrap_or_default()),
        ("ADDRESS", s.lease.address.to_string()),
        ("PREFIX", s.lease.prefix.to_string()),
        ("SERVER", s.lease.server.to_string()),
        ("ROUTES", routes.join(",")),
        ("LEASE_TIME", secs(s.lease.lease_time)),
        ("RENEW", secs(s.lease.renew_time)),
        ("REBIND", secs(s.lease.rebind_time)),
        ("BOUND_AT_MS", s.bound_at.as_millis().to_string()),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={v}\n"))
    .collect()
}

/// Reads [`state_text`]'s output back; `None` if anything needed is missing or unreadable.
pub fn parse_state(text: &str) -> Option<State> {
    let get = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='));
    let secs = |key: &str| match get(key)? {
        "" => Some(None),
        v => v.parse().ok().map(|s| Some(Duration::from_secs(s))),
    };
    let routes = match get("ROUTES")? {
        "" => Vec::new(),
        list => list
            .split(',')
            .map(|r| {
                let mut f = r.split('/');
                let (d, p, g) = (f.next()?, f.next()?, f.next()?);
                Some(Route {
                    destination: d.parse().ok()?,
                    prefix: p.parse().ok().filter(|p| *p <= 32)?,
                    gateway: g.parse().ok()?,
                })
            })
            .collect::<Option<Vec<Route>>>()?,
    };
    let client_id = match get("CLIENT_ID")? {
        "" => None,
        v => unhex(v).filter(|b| !b.is_empty()).map(|b| (b[0], b[1..].to_vec())),
    };
    Some(State {
        nic: Nic {
            name: get("INTERFACE")?.to_owned(),
            index: get("INDEX")?.parse().ok()?,
            mac: Mac::parse(get("MAC")?)?,
        },
        hostname: Some(get("HOSTNAME")?.to_owned()).filter(|h| !h.is_empty()),
        client_id,
        lease: Lease {
            address: get("ADDRESS")?.parse().ok()?,
            prefix: get("PREFIX")?.parse().ok().filter(|p| *p <= 32)?,
            server: get("SERVER")?.parse().ok()?,
            routes,
            dns: Vec::new(),
            domain: None,
            search: Vec::new(),
            hostname: None,
            mtu: None,
            lease_time: secs("LEASE_TIME")?,
            renew_time: secs("RENEW")?,
            rebind_time: secs("REBIND")?,
            ntp: Vec::new(),
            refused: Vec::new(),
        },
        bound_at: Duration::from_millis(get("BOUND_AT_MS")?.parse().ok()?),
    })
}

/// The DHCP client binaries `netinit.keep_lease=auto` looks for in the new root: with one of them
/// the booted system is taken to run its own client.
pub const CLIENTS: [&str; 11] = [
    "sbin/udhcpc",
    "usr/sbin/udhcpc",
    "sbin/dhclient",
    "usr/sbin/dhclient",
    "sbin/dhcpcd",
    "usr/sbin/dhcpcd",
    "usr/lib/systemd/systemd-networkd",
    "lib/systemd/systemd-networkd",
    "usr/sbin/NetworkManager",
    "usr/sbin/connmand",
    "usr/bin/connmand",
];

/// Sockets bound to UDP port 68 in `/proc/net/udp`, other than the one with inode `ours`.
pub fn other_clients(proc_net_udp: &str, ours: u64) -> usize {
    proc_net_udp
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = f.get(1).and_then(|a| a.rsplit(':').next());
            let inode = f.get(9).and_then(|i| i.parse::<u64>().ok());
            port.is_some_and(|p| p.eq_ignore_ascii_case("0044")) && inode.is_some_and(|i| i != ours)
        })
        .count()
}

/// `netinit keep-lease`: runs until it steps aside. Returns the exit status.
pub fn run() -> i32 {
    crate::klog::init(true);
    let Some(state) = std::fs::read_to_string(STATE).ok().as_deref().and_then(parse_state) else {
        log::warn!("keeper: no usable {STATE}; the lease is not kept");
        return 1;
    };
    let _ = std::fs::remove_file(STATE);
    match keep(state) {
        Ok(why) => {
            log::info!("keeper: {why}");
            0
        }
        Err(e) => {
            log::warn!("keeper: {e}; the lease is no longer kept");
            1
        }
    }
}

fn keep(state: State) -> Result<String, String> {
    let nic = state.nic.clone();
    let socket = sys::udp_socket_on_device(&nic.name, dhcp::CLIENT_PORT)
        .map_err(|e| format!("the DHCP socket: {e}"))?;
    let ours = sys::inode(&socket).unwrap_or(0);
    let events = sys::address_events().map_err(|e| format!("rtnetlink address events: {e}"))?;
    let mut nl = netlink::Rtnetlink::open().map_err(|e| format!("rtnetlink: {e}"))?;
    let id =
        Identity { mac: nic.mac.0, hostname: state.hostname.clone(), client_id: state.client_id.clone() };
    let mut keeper = Keeper::new(id, state.lease.clone(), state.bound_at, sys::random_u64());
    let mut held: Option<Lease> = Some(state.lease);
    log::info!(
        "keeper: {}: keeping {} from {} (renewal at {}s of uptime)",
        nic.name,
        keeper.lease().address,
        keeper.lease().server,
        keeper.times().renew.as_secs()
    );
    let mut buf = vec![0u8; 1600];
    loop {
        while let Some(step) = keeper.poll(sys::uptime()) {
            match step {
                Step::Send { packet, to, kind, phase } => {
                    let dest = SocketAddrV4::new(to.unwrap_or(Ipv4Addr::BROADCAST), dhcp::SERVER_PORT);
                    log::info!(
                        "keeper: {}: DHCP {} to {} ({})",
                        nic.name,
                        kind.name(),
                        dest.ip(),
                        phase.name()
                    );
                    if let Err(e) = sys::send_to(&socket, &packet, dest) {
                        log::warn!("keeper: {}: sending: {e}", nic.name);
                    }
                }
                Step::Expired { lease, why } => {
                    log::warn!(
                        "keeper: {}: the lease of {} is over ({why}): removing it",
                        nic.name,
                        lease.address
                    );
                    remove(&mut nl, &nic, &lease);
                    held = None;
                    write_lease(&nic, None);
                    drain(&events);
                }
            }
        }
        let wait = keeper.next_deadline().saturating_sub(sys::uptime()).min(LOOK);
        let ready = sys::poll_readable(&[&socket, &events], wait).unwrap_or_default();
        if ready.first() == Some(&true) {
            for _ in 0..BURST {
                let Ok(Some(n)) = sys::recv_now(&socket, &mut buf) else { break };
                match keeper.handle(&buf[..n], sys::uptime()) {
                    Heard::Renewed(lease) | Heard::Bound(lease) => {
                        let old = held.replace(lease.clone());
                        if let Some(old) = old.filter(|o| o.address != lease.address) {
                            remove(&mut nl, &nic, &old);
                        }
                        apply(&mut nl, &nic, &lease)?;
                        drain(&events);
                        write_lease(&nic, Some(&lease));
                        log::info!(
                            "keeper: {}: {} from {} for {}s",
                            nic.name,
                            lease.address,
                            lease.server,
                            lease.lease_time.map_or(0, |t| t.as_secs())
                        );
                    }
                    Heard::Nak { server } => {
                        log::warn!("keeper: {}: {server} refused the renewal (NAK)", nic.name)
                    }
                    Heard::Ignored(_) | Heard::Malformed(_) => {}
                }
            }
        }
        if ready.get(1) == Some(&true) {
            if let Some(why) = someone_else(&events, &nic, held.as_ref()) {
                return Ok(format!(
                    "{}: {why}: stepping aside, the booted system runs the network",
                    nic.name
                ));
            }
        }
        let udp = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
        if other_clients(&udp, ours) > 0 {
            return Ok(format!("{}: another DHCP client bound UDP port 68: stepping aside", nic.name));
        }
    }
}

/// Whether an address event says someone else manages the NIC: our address removed, or another
/// IPv4 address added.
fn someone_else(events: &std::os::fd::OwnedFd, nic: &Nic, held: Option<&Lease>) -> Option<String> {
    let mut buf = vec![0u8; 8192];
    let mut found = None;
    for _ in 0..BURST {
        let Ok(Some(n)) = sys::recv_now(events, &mut buf) else { break };
        for (added, index, address) in netlink::address_changes(&buf[..n]) {
            if index != nic.index {
                continue;
            }
            match (added, held) {
                (false, Some(l)) if l.address == address => {
                    found = Some(format!("its address {address} was removed"))
                }
                (true, Some(l)) if l.address != address => {
                    found = Some(format!("another address, {address}, was added"))
                }
                (true, None) => found = Some(format!("an address, {address}, was added while it had none")),
                _ => {}
            }
        }
    }
    found
}

/// Reads away the address events netinit's own changes caused.
fn drain(events: &std::os::fd::OwnedFd) {
    let mut buf = vec![0u8; 8192];
    for _ in 0..BURST {
        if !matches!(sys::recv_now(events, &mut buf), Ok(Some(_))) {
            break;
        }
    }
}

fn v4(lease: &Lease) -> V4 {
    V4 {
        address: lease.address,
        prefix: lease.prefix,
        routes: lease.routes.clone(),
        dhcp: Some((lease.server, lease.lease_time)),
    }
}

fn apply(nl: &mut netlink::Rtnetlink, nic: &Nic, lease: &Lease) -> Result<(), String> {
    super::apply_v4(nl, nic, &v4(lease)).map_err(|e| e.to_string())
}

/// Removes `lease`'s routes and address; each failure is said, and the rest goes on.
fn remove(nl: &mut netlink::Rtnetlink, nic: &Nic, lease: &Lease) {
    for r in &lease.routes {
        let gateway = (!r.gateway.is_unspecified()).then_some(r.gateway);
        let msg = |seq| {
            netlink::as_delete(netlink::add_route(
                nic.index,
                r.destination,
                r.prefix,
                gateway,
                None,
                netlink::Origin::Dhcp,
                seq,
            ))
        };
        if let Err(e) = nl.request(msg) {
            log::debug!("keeper: {}: removing route {}/{}: {e}", nic.name, r.destination, r.prefix);
        }
    }
    let msg = |seq| netlink::as_delete(netlink::add_address(nic.index, lease.address, lease.prefix, seq));
    if let Err(e) = nl.request(msg) {
        log::warn!("keeper: {}: removing {}/{}: {e}", nic.name, lease.address, lease.prefix);
    }
}

/// `/run/netinit/lease` and `lease.<nic>` for the booted system: the current lease, or none.
fn write_lease(nic: &Nic, lease: Option<&Lease>) {
    let text = match lease {
        Some(l) => files::lease_file(&Configured::from_lease(nic.clone(), l, None)),
        None => format!("INTERFACE='{}'\nMAC='{}'\nADDRESS=''\nMETHOD='dhcp'\n", nic.name, nic.mac),
    };
    for path in ["/run/netinit/lease".to_owned(), format!("/run/netinit/lease.{}", nic.name)] {
        if let Err(e) = std::fs::write(Path::new(&path), &text) {
            log::warn!("keeper: writing {path}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            nic: Nic { name: "eth0".into(), index: 2, mac: Mac([0x52, 0x54, 0, 0, 0x0a, 1]) },
            hostname: Some("node7".into()),
            client_id: Some((0xff, b"id\x01".to_vec())),
            lease: Lease {
                address: "10.0.10.151".parse().unwrap(),
                prefix: 24,
                server: "10.0.10.1".parse().unwrap(),
                routes: vec![
                    Route {
                        destination: Ipv4Addr::UNSPECIFIED,
                        prefix: 0,
                        gateway: "10.0.10.1".parse().unwrap(),
                    },
                    Route {
                        destination: "192.168.77.0".parse().unwrap(),
                        prefix: 24,
                        gateway: "10.0.10.1".parse().unwrap(),
                    },
                ],
                dns: vec![],
                domain: None,
                search: vec![],
                hostname: None,
                mtu: None,
                lease_time: Some(Duration::from_secs(120)),
                renew_time: Some(Duration::from_secs(50)),
                rebind_time: None,
                ntp: vec![],
                refused: vec![],
            },
            bound_at: Duration::from_millis(6_315),
        }
    }

    #[test]
    fn the_state_file_round_trips() {
        let s = state();
        let text = state_text(&s);
        assert!(text.contains("ROUTES=0.0.0.0/0/10.0.10.1,192.168.77.0/24/10.0.10.1\n"), "{text}");
        assert!(text.contains("CLIENT_ID=ff696401\n") && text.contains("REBIND=\n"), "{text}");
        assert_eq!(parse_state(&text), Some(s.clone()));
        let plain = State {
            hostname: None,
            client_id: None,
            lease: Lease { routes: vec![], ..s.lease.clone() },
            ..s
        };
        assert_eq!(parse_state(&state_text(&plain)), Some(plain));
        // A damaged file keeps nothing rather than something wrong.
        assert_eq!(parse_state(&text.replace("PREFIX=24", "PREFIX=40")), None);
        assert_eq!(parse_state(&text.replace("ROUTES=0.0.0.0/0/", "ROUTES=0.0.0.0/0")), None);
        assert_eq!(parse_state(&text.replace("INDEX=2\n", "")), None);
        assert_eq!(parse_state(""), None);
    }

    #[test]
    fn other_dhcp_clients_are_seen_in_proc_net_udp() {
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4321 2 0000000000000000 0
  124: 00000000:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 999 2 0000000000000000 0
";
        assert_eq!(other_clients(udp, 4321), 0, "only ours on 68; 67 is a server's");
        let two = format!("{udp}  125: 0A000A97:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5555 2 0 0\n");
        assert_eq!(other_clients(&two, 4321), 1);
        assert_eq!(other_clients("garbage\nlines without fields\n", 1), 0);
    }
}
