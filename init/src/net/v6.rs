//! IPv6 on one NIC: `ip=auto6` (the kernel's SLAAC from a Router Advertisement, with the RA's
//! RDNSS and DNSSL, which the kernel does not use itself) and the static bracketed form of `ip=`.
//!
//! netinit asks for an advertisement itself (a Router Solicitation every 4 s on a raw ICMPv6
//! socket bound to the NIC, RFC 4861 6.3.7) rather than wait for the router's periodic one, reads
//! the advertisement from the same socket (`ra.rs` decodes it), and then waits for the kernel to
//! finish duplicate address detection on the address it formed from the advertised prefix:
//! `/proc/net/if_inet6` lists it without the tentative flag. The kernel installs the default
//! route from the advertisement; netinit adds none for SLAAC.

use std::net::{IpAddr, Ipv6Addr, SocketAddrV6};
use std::time::Duration;

use super::{dhcp6, netlink, ra, Configured, Method6, NetError, Nic, V6};
use crate::cmdline::StaticIp6;
use crate::sys;

/// How often a Router Solicitation is sent while no advertisement has come (RFC 4861's
/// RTR_SOLICITATION_INTERVAL).
const SOLICIT_INTERVAL: Duration = Duration::from_secs(4);
const POLL: Duration = Duration::from_millis(100);
/// Datagrams read per wakeup, at most: a flood cannot hold the loop.
const BURST: usize = 64;

/// `IFA_F_TENTATIVE` and `IFA_F_DADFAILED` in `/proc/net/if_inet6`'s flags.
const TENTATIVE: u32 = 0x40;
const DAD_FAILED: u32 = 0x08;

/// One line of `/proc/net/if_inet6`: address, ifindex, prefix length, scope, flags, name (all hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inet6 {
    pub address: Ipv6Addr,
    pub index: u32,
    pub prefix: u8,
    /// 0x00 global, 0x20 link-local.
    pub scope: u32,
    pub flags: u32,
}

impl Inet6 {
    /// A global address that passed duplicate address detection.
    pub fn usable(&self) -> bool {
        self.scope == 0 && self.flags & (TENTATIVE | DAD_FAILED) == 0
    }
}

/// `/proc/net/if_inet6`'s lines; a line it cannot read is skipped.
pub fn parse_if_inet6(text: &str) -> Vec<Inet6> {
    let line = |l: &str| -> Option<Inet6> {
        let f: Vec<&str> = l.split_whitespace().collect();
        let [addr, index, prefix, scope, flags, ..] = f.as_slice() else { return None };
        let bits = (addr.len() == 32).then(|| u128::from_str_radix(addr, 16).ok()).flatten()?;
        Some(Inet6 {
            address: Ipv6Addr::from(bits),
            index: u32::from_str_radix(index, 16).ok()?,
            prefix: u8::from_str_radix(prefix, 16).ok().filter(|p| *p <= 128)?,
            scope: u32::from_str_radix(scope, 16).ok()?,
            flags: u32::from_str_radix(flags, 16).ok()?,
        })
    };
    text.lines().filter_map(line).collect()
}

/// The usable global addresses of interface `index`.
fn global_addresses(index: u32) -> Vec<(Ipv6Addr, u8)> {
    let text = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    parse_if_inet6(&text)
        .into_iter()
        .filter(|a| a.index == index && a.usable())
        .map(|a| (a.address, a.prefix))
        .collect()
}

/// Lets the kernel do SLAAC on `nic` (its defaults, written in case an image's sysctl changed
/// them); a failure is said and the wait goes on.
fn enable(nic: &Nic) {
    for (key, value) in [("disable_ipv6", "0"), ("accept_ra", "1"), ("autoconf", "1")] {
        let path = format!("/proc/sys/net/ipv6/conf/{}/{key}", nic.name);
        if let Err(e) = sys::write_sysctl(&path, value) {
            log::warn!("{}: setting {key}={value}: {e}", nic.name);
        }
    }
}

/// What an advertisement gave: its router (when it is a default router), DNS servers and search
/// domains with a lifetime, and whether it offered a prefix for SLAAC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advertised {
    pub router: Option<Ipv6Addr>,
    pub dns: Vec<Ipv6Addr>,
    pub search: Vec<String>,
    pub slaac: bool,
    pub managed: bool,
    /// O: DNS and other facts are available by stateless DHCPv6.
    pub other: bool,
    pub mtu: Option<u32>,
}

/// The facts of advertisement `ra` from `source`.
pub fn advertised(ra: &ra::RouterAdvert, source: Ipv6Addr) -> Advertised {
    Advertised {
        router: (!ra.router_lifetime.is_zero()).then_some(source),
        dns: ra.dns.servers.iter().filter(|s| !s.lifetime.is_zero()).map(|s| s.address).collect(),
        search: ra.dns.search.iter().filter(|s| !s.lifetime.is_zero()).map(|s| s.name.clone()).collect(),
        slaac: ra.prefixes.iter().any(|p| p.autonomous && !p.valid.is_zero() && p.len == 64),
        managed: ra.managed,
        other: ra.other,
        mtu: ra.mtu,
    }
}

/// `ip=auto6` on `nic` (already up): solicit an advertisement, then wait for the address the kernel
/// forms from it, until `deadline` (uptime).
pub(super) fn auto6(nic: &Nic, deadline: Duration, hostname: Option<&str>) -> Result<Configured, NetError> {
    enable(nic);
    let socket = sys::icmpv6_socket_on_device(&nic.name)
        .map_err(|source| super::netlink_error("opening an ICMPv6 socket", &nic.name, source))?;
    let all_routers = SocketAddrV6::new(ra::ALL_ROUTERS, 0, 0, nic.index);
    let solicitation = ra::router_solicitation(nic.mac.0);
    let mut next_solicit = Duration::ZERO;
    let mut got: Option<Advertised> = None;
    let mut buf = [0u8; 2048];
    let mut said_waiting = false;
    loop {
        let now = sys::uptime();
        if now >= deadline {
            return Err(NetError::NoSlaac {
                nic: nic.name.clone(),
                why: match &got {
                    None => "no Router Advertisement came".into(),
                    Some(a) if a.managed && !a.slaac => {
                        "the Router Advertisement offers no prefix for SLAAC and asks for DHCPv6 (M flag): use ip=dhcp6".into()
                    }
                    Some(a) if !a.slaac => "the Router Advertisement offers no prefix for SLAAC".into(),
                    Some(_) => "the kernel formed no usable address from the advertised prefix".into(),
                },
            });
        }
        if got.is_none() && now >= next_solicit {
            if let Err(e) = sys::send_to6(&socket, &solicitation, all_routers) {
                log::debug!("{}: Router Solicitation: {e}", nic.name);
            }
            next_solicit = now + SOLICIT_INTERVAL;
        }
        for _ in 0..BURST {
            let Ok(Some((n, from))) = sys::recv_from6_now(&socket, &mut buf) else { break };
            let Ok(advert) = ra::RouterAdvert::decode(&buf[..n]) else { continue };
            let a = advertised(&advert, from);
            for why in &advert.dns.refused {
                log::warn!("{}: Router Advertisement: ignoring the {why}", nic.name);
            }
            if got.is_none() {
                log::info!(
                    "{}: Router Advertisement from {from}{}{}",
                    nic.name,
                    if a.slaac { ", SLAAC" } else { "" },
                    if a.dns.is_empty() { String::new() } else { format!(", dns {}", join(&a.dns)) }
                );
            }
            // A later advertisement (another router, or DNS the first one left out) adds to the first.
            got = Some(match got.take() {
                None => a,
                Some(mut first) => {
                    first.router = first.router.or(a.router);
                    for d in a.dns {
                        if !first.dns.contains(&d) {
                            first.dns.push(d);
                        }
                    }
                    for d in a.search {
                        if !first.search.contains(&d) {
                            first.search.push(d);
                        }
                    }
                    first.slaac |= a.slaac;
                    first.other |= a.other;
                    first
                }
            });
        }
        if let Some(a) = got.as_ref().filter(|a| a.slaac) {
            let addresses = global_addresses(nic.index);
            if !addresses.is_empty() {
                let (mut dns, mut search) = (a.dns.clone(), a.search.clone());
                if a.other && dns.is_empty() {
                    // The router says DNS is to be had by DHCPv6, and gave no RDNSS.
                    match exchange(
                        nic,
                        dhcp6::Mode::Stateless,
                        sys::uptime().saturating_add(INFORMATION_BUDGET),
                    ) {
                        Ok(Answer::Informed(info)) => (dns, search) = (info.dns, info.search),
                        Ok(Answer::Bound(_)) => {}
                        Err(why) => log::warn!("{}: no DNS by stateless DHCPv6: {why}", nic.name),
                    }
                }
                return Ok(Configured {
                    nic: nic.clone(),
                    v4: None,
                    v6: Some(V6 { addresses, router: a.router, method: Method6::Slaac }),
                    dns: dns.into_iter().map(IpAddr::V6).collect(),
                    domain: None,
                    search,
                    hostname: hostname.map(str::to_owned),
                    mtu: None,
                    ntp: Vec::new(),
                    lease: None,
                });
            }
            if !said_waiting {
                log::info!(
                    "{}: waiting for the kernel's SLAAC address (duplicate address detection)",
                    nic.name
                );
                said_waiting = true;
            }
        }
        let _ = sys::poll_readable(&[&socket], POLL.min(deadline.saturating_sub(sys::uptime())));
    }
}

/// The NIC's link-local address, once duplicate address detection passed: DHCPv6 sends from it.
fn link_local_ready(index: u32) -> bool {
    let text = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    parse_if_inet6(&text)
        .iter()
        .any(|a| a.index == index && a.scope == 0x20 && a.flags & (TENTATIVE | DAD_FAILED) == 0)
}

/// What a DHCPv6 exchange gave.
enum Answer {
    Bound(dhcp6::Lease6),
    Informed(dhcp6::Info6),
}

/// One DHCPv6 exchange in `mode` on `nic`, from its link-local address, until `deadline`; the
/// error says why there was no answer (the last refusal, else no server).
fn exchange(nic: &Nic, mode: dhcp6::Mode, deadline: Duration) -> Result<Answer, String> {
    while !link_local_ready(nic.index) {
        if sys::uptime() >= deadline {
            return Err("the link-local address never passed duplicate address detection".into());
        }
        std::thread::sleep(POLL);
    }
    let socket = sys::udp6_socket_on_device(&nic.name, dhcp6::CLIENT_PORT)
        .map_err(|e| format!("opening the DHCPv6 socket: {e}"))?;
    let servers = SocketAddrV6::new(dhcp6::ALL_SERVERS, dhcp6::SERVER_PORT, 0, nic.index);
    let mut client =
        dhcp6::Client::new(dhcp6::Identity { mac: nic.mac.0 }, mode, sys::random_u64(), sys::uptime());
    let mut buf = [0u8; 2048];
    let mut last_failure = None;
    loop {
        let now = sys::uptime();
        if now >= deadline {
            return Err(last_failure.unwrap_or_else(|| "no DHCPv6 server answered".to_owned()));
        }
        if let Some(t) = client.poll_transmit(now) {
            log::info!("{}: DHCPv6 {} (attempt {})", nic.name, t.kind.name(), t.attempt);
            if let Err(e) = sys::send_to6(&socket, &t.packet, servers) {
                log::debug!("{}: DHCPv6 send: {e}", nic.name);
            }
        }
        for _ in 0..BURST {
            let Ok(Some((n, from))) = sys::recv_from6_now(&socket, &mut buf) else { break };
            match client.handle_from(&buf[..n], Some(from), sys::uptime()) {
                dhcp6::Event::Bound(lease) => return Ok(Answer::Bound(lease)),
                dhcp6::Event::Informed(info) => return Ok(Answer::Informed(info)),
                dhcp6::Event::Advertised { address, preference, .. } => {
                    log::info!(
                        "{}: DHCPv6 ADVERTISE of {address} from {from} (preference {preference})",
                        nic.name
                    )
                }
                dhcp6::Event::Failed { status, message } => {
                    let why =
                        format!("the server {from} refused: {} ({message})", dhcp6::status_name(status));
                    log::warn!("{}: DHCPv6: {why}", nic.name);
                    last_failure = Some(why);
                }
                other => log::debug!("{}: DHCPv6: {other:?}", nic.name),
            }
        }
        let wake = client.next_deadline().min(deadline);
        let _ =
            sys::poll_readable(&[&socket], wake.saturating_sub(sys::uptime()).min(Duration::from_secs(1)));
    }
}

/// `ip=dhcp6` on `nic` (already up): one address from a DHCPv6 server (Solicit, Advertise,
/// Request, Reply), added as a /128; the on-link prefix and the default route come from the
/// Router Advertisements, which the kernel takes itself. Until `deadline` (uptime).
pub(super) fn dhcp6(
    nl: &mut netlink::Rtnetlink,
    nic: &Nic,
    deadline: Duration,
    hostname: Option<&str>,
) -> Result<Configured, NetError> {
    enable(nic);
    let failed = |why: String| NetError::NoDhcp6 { nic: nic.name.clone(), why };
    let lease = match exchange(nic, dhcp6::Mode::Stateful, deadline).map_err(failed)? {
        Answer::Bound(lease) => lease,
        Answer::Informed(_) => return Err(failed("the server gave no address".into())),
    };
    for why in &lease.refused {
        log::warn!("{}: DHCPv6: ignoring the {why}", nic.name);
    }
    nl.request(|seq| netlink::add_address6(nic.index, lease.address, 128, seq)).map_err(|source| {
        super::netlink_error(&format!("adding address {}/128", lease.address), &nic.name, source)
    })?;
    Ok(Configured {
        nic: nic.clone(),
        v4: None,
        v6: Some(V6 { addresses: vec![(lease.address, 128)], router: None, method: Method6::Dhcp6 }),
        dns: lease.dns.iter().copied().map(IpAddr::V6).collect(),
        domain: None,
        search: lease.search.clone(),
        hostname: hostname.map(str::to_owned),
        mtu: None,
        ntp: Vec::new(),
        lease: None,
    })
}

/// How long SLAAC's stateless DHCPv6 (the RA's O flag, for DNS) may take: it only adds DNS.
const INFORMATION_BUDGET: Duration = Duration::from_secs(10);

/// The static IPv6 form of `ip=`: the address, and a default route through the gateway.
pub(super) fn static6(
    nl: &mut netlink::Rtnetlink,
    nic: &Nic,
    s: &StaticIp6,
    hostname: Option<&str>,
) -> Result<Configured, NetError> {
    enable(nic);
    nl.request(|seq| netlink::add_address6(nic.index, s.address, s.prefix, seq)).map_err(|source| {
        super::netlink_error(&format!("adding address {}/{}", s.address, s.prefix), &nic.name, source)
    })?;
    if let Some(gw) = s.gateway {
        nl.request(|seq| netlink::add_default_route6(nic.index, gw, seq)).map_err(|source| {
            super::netlink_error(&format!("adding the default route via {gw}"), &nic.name, source)
        })?;
    }
    Ok(Configured {
        nic: nic.clone(),
        v4: None,
        v6: Some(V6 { addresses: vec![(s.address, s.prefix)], router: s.gateway, method: Method6::Static }),
        dns: s.dns.clone(),
        domain: None,
        search: Vec::new(),
        hostname: hostname.map(str::to_owned),
        mtu: None,
        ntp: Vec::new(),
        lease: None,
    })
}

fn join(a: &[Ipv6Addr]) -> String {
    a.iter().map(Ipv6Addr::to_string).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_addresses() {
        let text = "fd00001000000000505400fffe000a01 02 40 00 80 eth0\n\
                    fe80000000000000505400fffe000a01 02 40 20 80 eth0\n\
                    fd00001000000000505400fffe000a02 03 40 00 c0 eth1\n\
                    00000000000000000000000000000001 01 80 10 80 lo\n\
                    garbage line\n\
                    fd0000100000000000000000000000zz 02 40 00 80 eth0\n";
        let all = parse_if_inet6(text);
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].address, "fd00:10::5054:ff:fe00:a01".parse::<Ipv6Addr>().unwrap());
        assert_eq!((all[0].index, all[0].prefix, all[0].usable()), (2, 64, true));
        assert!(!all[1].usable(), "link-local");
        assert!(!all[2].usable(), "tentative (0x40)");
        assert!(!all[3].usable(), "loopback scope");
        let failed = parse_if_inet6("fd00001000000000505400fffe000a01 02 40 00 88 eth0\n");
        assert!(!failed[0].usable(), "DAD failed");
    }
}
