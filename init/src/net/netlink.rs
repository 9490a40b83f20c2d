//! rtnetlink requests, encoded by hand (rtnetlink(7), <linux/rtnetlink.h>): link up, MTU, address,
//! route, a VLAN, a bond and its slaves. Four message shapes do not earn a netlink crate. The builders and [`parse_ack`] are pure;
//! [`Rtnetlink`] sends a request through `sys::Netlink` and waits, with a deadline, for its answer.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::sys;

/// How long the kernel may take to acknowledge one request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A NETLINK_ROUTE socket and the sequence number of its last request.
pub struct Rtnetlink {
    socket: sys::Netlink,
    seq: u32,
    timeout: Duration,
}

impl Rtnetlink {
    pub fn open() -> io::Result<Self> {
        Self::open_with(ANSWER_TIMEOUT)
    }

    fn open_with(timeout: Duration) -> io::Result<Self> {
        Ok(Rtnetlink { socket: sys::Netlink::open(timeout)?, seq: 0, timeout })
    }

    /// Sends one request built by `build(seq)` and waits for the kernel's acknowledgement: `Ok` for
    /// error code 0, the errno otherwise, `TimedOut` when none comes within [`ANSWER_TIMEOUT`]
    /// (the socket's receive timeout, and the loop's deadline over answers to other requests).
    pub fn request(&mut self, build: impl FnOnce(u32) -> Vec<u8>) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        self.socket.send(&build(self.seq))?;
        let deadline = sys::uptime().saturating_add(self.timeout);
        let mut buf = vec![0u8; 8192];
        while sys::uptime() < deadline {
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            match parse_ack(buf.get(..n).unwrap_or(&[]), self.seq) {
                Some(0) => return Ok(()),
                Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
                None => continue,
            }
        }
        let secs = self.timeout.as_secs_f32();
        Err(io::Error::new(io::ErrorKind::TimedOut, format!("the kernel did not answer within {secs}s")))
    }
}

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IFF_UP: u32 = 0x1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_VLAN_ID: u16 = 1;
// `IFLA_BOND_*` of <linux/if_link.h>: the bond's options inside IFLA_INFO_DATA.
const IFLA_BOND_MODE: u16 = 1;
const IFLA_BOND_MIIMON: u16 = 3;
const IFLA_BOND_UPDELAY: u16 = 4;
const IFLA_BOND_DOWNDELAY: u16 = 5;
const IFLA_BOND_PRIMARY: u16 = 11;
const IFLA_BOND_XMIT_HASH_POLICY: u16 = 14;
const IFLA_BOND_AD_LACP_RATE: u16 = 21;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RT_TABLE_MAIN: u8 = 254;
/// `RTPROT_DHCP`: routes a DHCP client installed; `ip route` shows `proto dhcp`.
const RTPROT_DHCP: u8 = 16;
/// `RTPROT_BOOT`: routes installed during boot, for static configuration.
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;

/// Who installs a route, as `ip route` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Dhcp,
    Static,
}

struct Message {
    buf: Vec<u8>,
}

impl Message {
    fn new(kind: u16, flags: u16, seq: u32) -> Message {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in finish()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        Message { buf }
    }

    fn bytes(mut self, b: &[u8]) -> Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// One `struct rtattr`: length, type, payload, padding to 4 bytes.
    fn attr(mut self, kind: u16, payload: &[u8]) -> Self {
        self.buf.extend_from_slice(&rtattr(kind, payload));
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// One `struct rtattr` as bytes, padded to 4: the payload of a nested attribute is a run of these.
pub(crate) fn rtattr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut b = Vec::with_capacity(len + 3);
    b.extend_from_slice(&(len as u16).to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(payload);
    b.resize(len + (4 - len % 4) % 4, 0);
    b
}

/// `struct ifinfomsg` setting `flags` within `change`.
fn ifinfo(index: u32, flags: u32, change: u32) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

/// `ip link add link <parent> name <name> type vlan id <id>`: a new 802.1Q interface, refused with
/// `EEXIST` if the name is taken.
pub fn new_vlan(name: &str, parent: u32, id: u16, seq: u32) -> Vec<u8> {
    let mut ifname = name.as_bytes().to_vec();
    ifname.push(0);
    let info =
        [rtattr(IFLA_INFO_KIND, b"vlan\0"), rtattr(IFLA_INFO_DATA, &rtattr(IFLA_VLAN_ID, &id.to_ne_bytes()))]
            .concat();
    Message::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, seq)
        .bytes(&ifinfo(0, 0, 0))
        .attr(IFLA_IFNAME, &ifname)
        .attr(IFLA_LINK, &parent.to_ne_bytes())
        .attr(IFLA_LINKINFO, &info)
        .finish()
}

/// A bond's options, as the kernel's netlink policy types them (`bond_policy` in bond_netlink.c:
/// mode, hash policy and LACP rate are `u8`, the rest `u32`; the primary is an ifindex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BondAttrs {
    pub mode: u8,
    pub miimon: u32,
    pub updelay: Option<u32>,
    pub downdelay: Option<u32>,
    pub primary: Option<u32>,
    pub xmit_hash_policy: Option<u8>,
    pub lacp_rate: Option<u8>,
}

/// `ip link add name <name> type bond mode ... miimon ...`: a new bond, refused with `EEXIST` if
/// the name is taken. With `create` false, the same options for the existing bond of that name
/// (the kernel's changelink; it must be down and without slaves to change mode).
pub fn new_bond(name: &str, attrs: &BondAttrs, create: bool, seq: u32) -> Vec<u8> {
    let mut ifname = name.as_bytes().to_vec();
    ifname.push(0);
    let mut data =
        [rtattr(IFLA_BOND_MODE, &[attrs.mode]), rtattr(IFLA_BOND_MIIMON, &attrs.miimon.to_ne_bytes())]
            .concat();
    let u32s = [
        (IFLA_BOND_UPDELAY, attrs.updelay),
        (IFLA_BOND_DOWNDELAY, attrs.downdelay),
        (IFLA_BOND_PRIMARY, attrs.primary),
    ];
    for (kind, value) in u32s {
        data.extend(value.map(|v| rtattr(kind, &v.to_ne_bytes())).unwrap_or_default());
    }
    for (kind, value) in
        [(IFLA_BOND_XMIT_HASH_POLICY, attrs.xmit_hash_policy), (IFLA_BOND_AD_LACP_RATE, attrs.lacp_rate)]
    {
        data.extend(value.map(|v| rtattr(kind, &[v])).unwrap_or_default());
    }
    let info = [rtattr(IFLA_INFO_KIND, b"bond\0"), rtattr(IFLA_INFO_DATA, &data)].concat();
    let flags = if create { NLM_F_CREATE | NLM_F_EXCL } else { 0 };
    Message::new(RTM_NEWLINK, flags, seq)
        .bytes(&ifinfo(0, 0, 0))
        .attr(IFLA_IFNAME, &ifname)
        .attr(IFLA_LINKINFO, &info)
        .finish()
}

/// `ip link set dev <index> master <master>`: enslaves a NIC (which must be down) to a bond.
pub fn set_master(index: u32, master: u32, seq: u32) -> Vec<u8> {
    Message::new(RTM_NEWLINK, 0, seq)
        .bytes(&ifinfo(index, 0, 0))
        .attr(IFLA_MASTER, &master.to_ne_bytes())
        .finish()
}

/// `ip link set dev <index> up`.
pub fn link_up(index: u32, seq: u32) -> Vec<u8> {
    Message::new(RTM_NEWLINK, 0, seq).bytes(&ifinfo(index, IFF_UP, IFF_UP)).finish()
}

/// The netmask of a prefix length, as a number: 24 gives 0xFFFF_FF00, 0 gives 0.
pub fn prefix_mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0)
}

/// `ip link set dev <index> down`.
pub fn link_down(index: u32, seq: u32) -> Vec<u8> {
    Message::new(RTM_NEWLINK, 0, seq).bytes(&ifinfo(index, 0, IFF_UP)).finish()
}

/// `ip link set dev <index> mtu <mtu>`.
pub fn link_mtu(index: u32, mtu: u32, seq: u32) -> Vec<u8> {
    Message::new(RTM_NEWLINK, 0, seq).bytes(&ifinfo(index, 0, 0)).attr(IFLA_MTU, &mtu.to_ne_bytes()).finish()
}

/// `ip address replace <address>/<prefix> broadcast + dev <index>`.
pub fn add_address(index: u32, address: Ipv4Addr, prefix: u8, seq: u32) -> Vec<u8> {
    let mut ifa = vec![AF_INET, prefix, 0, RT_SCOPE_UNIVERSE];
    ifa.extend_from_slice(&index.to_ne_bytes());
    let broadcast = Ipv4Addr::from(u32::from(address) | !prefix_mask(prefix));
    let mut m = Message::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, seq)
        .bytes(&ifa)
        .attr(IFA_LOCAL, &address.octets())
        .attr(IFA_ADDRESS, &address.octets());
    if prefix < 31 {
        m = m.attr(IFA_BROADCAST, &broadcast.octets());
    }
    m.finish()
}

/// `ip -6 address replace <address>/<prefix> dev <index>`.
pub fn add_address6(index: u32, address: Ipv6Addr, prefix: u8, seq: u32) -> Vec<u8> {
    let mut ifa = vec![AF_INET6, prefix, 0, RT_SCOPE_UNIVERSE];
    ifa.extend_from_slice(&index.to_ne_bytes());
    Message::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, seq)
        .bytes(&ifa)
        .attr(IFA_LOCAL, &address.octets())
        .attr(IFA_ADDRESS, &address.octets())
        .finish()
}

/// `ip -6 route replace default via <gateway> dev <index> proto boot`.
pub fn add_default_route6(index: u32, gateway: Ipv6Addr, seq: u32) -> Vec<u8> {
    let mut rtm = vec![AF_INET6, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST];
    rtm.extend_from_slice(&0u32.to_ne_bytes());
    Message::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, seq)
        .bytes(&rtm)
        .attr(RTA_GATEWAY, &gateway.octets())
        .attr(RTA_OIF, &index.to_ne_bytes())
        .finish()
}

/// The `RTM_DEL*` request of an `RTM_NEW*` one ([`add_address`], [`add_route`]): what it added,
/// removed (`ip address del`, `ip route del`).
pub fn as_delete(mut msg: Vec<u8>) -> Vec<u8> {
    if msg.len() >= 8 {
        let kind = u16::from_ne_bytes([msg[4], msg[5]]);
        msg[4..6].copy_from_slice(&(kind + 1).to_ne_bytes());
        msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    }
    msg
}

/// The IPv4 address changes in a buffer of rtnetlink notifications (`RTMGRP_IPV4_IFADDR`):
/// (added, interface index, address) for each RTM_NEWADDR / RTM_DELADDR. Total: whatever the
/// bytes, it never reads past them.
pub fn address_changes(mut buf: &[u8]) -> Vec<(bool, u32, Ipv4Addr)> {
    let mut out = Vec::new();
    let u16_at = |b: &[u8], at: usize| b.get(at..at + 2).map(|v| u16::from_ne_bytes([v[0], v[1]]));
    while let (Some(len), Some(kind)) = (buf.get(0..4), u16_at(buf, 4)) {
        let len = u32::from_ne_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        let msg = &buf[..len];
        if matches!(kind, RTM_NEWADDR | 21) && msg.get(16) == Some(&AF_INET) {
            let index = msg.get(20..24).map(|v| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]));
            let mut at = 24;
            let mut local = None;
            while let (Some(alen), Some(akind)) = (u16_at(msg, at), u16_at(msg, at + 2)) {
                let alen = usize::from(alen);
                if alen < 4 || at + alen > msg.len() {
                    break;
                }
                if akind == IFA_LOCAL && alen == 8 {
                    local = Some(Ipv4Addr::new(msg[at + 4], msg[at + 5], msg[at + 6], msg[at + 7]));
                }
                at += (alen + 3) & !3;
            }
            if let (Some(index), Some(local)) = (index, local) {
                out.push((kind == RTM_NEWADDR, index, local));
            }
        }
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    out
}

/// `ip route replace <destination>/<prefix> [via <gateway>] dev <index> [src <source>]`.
/// Without a gateway the route is on-link (scope link).
pub fn add_route(
    index: u32,
    destination: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
    source: Option<Ipv4Addr>,
    origin: Origin,
    seq: u32,
) -> Vec<u8> {
    let scope = if gateway.is_some() { RT_SCOPE_UNIVERSE } else { RT_SCOPE_LINK };
    let protocol = match origin {
        Origin::Dhcp => RTPROT_DHCP,
        Origin::Static => RTPROT_BOOT,
    };
    let mut rtm = vec![AF_INET, prefix, 0, 0, RT_TABLE_MAIN, protocol, scope, RTN_UNICAST];
    rtm.extend_from_slice(&0u32.to_ne_bytes());
    let mut m = Message::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, seq).bytes(&rtm);
    if prefix > 0 {
        m = m.attr(RTA_DST, &destination.octets());
    }
    if let Some(gw) = gateway {
        m = m.attr(RTA_GATEWAY, &gw.octets());
    }
    if let Some(src) = source {
        m = m.attr(RTA_PREFSRC, &src.octets());
    }
    m.attr(RTA_OIF, &index.to_ne_bytes()).finish()
}

/// The kernel's answer to request `seq` in `buf`: `Some(0)` for success, `Some(errno)` for failure,
/// `None` when `buf` holds no acknowledgement for `seq`. Total: whatever the bytes, it never reads
/// past them (the last message may be unpadded, or lie about its length).
pub fn parse_ack(mut buf: &[u8], seq: u32) -> Option<i32> {
    let u32_at = |b: &[u8], at: usize| Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?));
    // A message is at least 16 bytes (`struct nlmsghdr`), and the next one starts 4-aligned.
    while let (Some(len), Some(kind), Some(msg_seq)) = (u32_at(buf, 0), buf.get(4..6), u32_at(buf, 8)) {
        let len = usize::try_from(len).ok()?;
        if len < 16 || len > buf.len() {
            return None;
        }
        if u16::from_ne_bytes([kind[0], kind[1]]) == NLMSG_ERROR && msg_seq == seq && len >= 20 {
            let error = i32::from_ne_bytes(buf.get(16..20)?.try_into().ok()?);
            return Some(error.checked_neg().unwrap_or(i32::MAX));
        }
        buf = buf.get(len.checked_add(3)? & !3..).unwrap_or(&[]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_mirror_their_additions() {
        let add = add_address(3, Ipv4Addr::new(10, 0, 10, 151), 24, 7);
        let del = as_delete(add.clone());
        assert_eq!(u16::from_ne_bytes([del[4], del[5]]), 21, "RTM_DELADDR");
        assert_eq!(u16::from_ne_bytes([del[6], del[7]]), NLM_F_REQUEST | NLM_F_ACK, "no CREATE or REPLACE");
        assert_eq!((&del[..4], &del[8..]), (&add[..4], &add[8..]), "the same address, the same length");
        let route = as_delete(add_route(
            3,
            Ipv4Addr::UNSPECIFIED,
            0,
            Some(Ipv4Addr::new(10, 0, 10, 1)),
            None,
            Origin::Dhcp,
            8,
        ));
        assert_eq!(u16::from_ne_bytes([route[4], route[5]]), 25, "RTM_DELROUTE");
        assert_eq!(as_delete(vec![1, 2]), [1, 2]);
    }

    #[test]
    fn address_notifications() {
        // The kernel's notifications have the request's layout: an RTM_NEWADDR as add_address
        // builds it, and the same as RTM_DELADDR, one after the other in one datagram.
        let added = add_address(3, Ipv4Addr::new(10, 0, 10, 151), 24, 0);
        let removed = as_delete(add_address(3, Ipv4Addr::new(10, 0, 10, 151), 24, 0));
        let v6 = add_address6(3, "fd00::5".parse().unwrap(), 64, 0);
        let buf = [added.clone(), v6, removed].concat();
        assert_eq!(
            address_changes(&buf),
            [(true, 3, Ipv4Addr::new(10, 0, 10, 151)), (false, 3, Ipv4Addr::new(10, 0, 10, 151))],
            "IPv6 changes are not the keeper's"
        );
        // Cut or lying buffers give what they hold whole, and never read past the end.
        assert_eq!(address_changes(&added[..added.len() - 1]), []);
        let mut lying = added.clone();
        lying[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(address_changes(&lying), []);
        for cut in 0..buf.len() {
            let _ = address_changes(&buf[..cut]);
        }
    }

    fn u16_at(b: &[u8], i: usize) -> u16 {
        u16::from_ne_bytes([b[i], b[i + 1]])
    }
    fn u32_at(b: &[u8], i: usize) -> u32 {
        u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
    }

    /// The attributes after a fixed header of `skip` bytes: (type, payload).
    fn attrs(msg: &[u8], skip: usize) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 16 + skip;
        while at < msg.len() {
            let len = usize::from(u16_at(msg, at));
            out.push((u16_at(msg, at + 2), msg[at + 4..at + len].to_vec()));
            at += (len + 3) & !3;
        }
        out
    }

    #[test]
    fn a_kernel_that_does_not_answer_is_a_timeout_of_the_request() {
        // NLMSG_NOOP without NLM_F_ACK: the kernel takes it and answers nothing, as a hung one would.
        let mut nl = Rtnetlink::open_with(Duration::from_millis(300)).expect("an rtnetlink socket");
        let start = std::time::Instant::now();
        let noop = |seq: u32| [16u32.to_ne_bytes(), [1, 0, 1, 0], seq.to_ne_bytes(), [0; 4]].concat();
        let e = nl.request(noop).expect_err("no answer");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("did not answer within 0.3s"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(3), "bounded by the socket's timeout");
    }

    #[test]
    fn a_vlan() {
        let m = new_vlan("eth0.100", 7, 100, 9);
        assert_eq!(u32_at(&m, 0) as usize, m.len());
        assert_eq!(u16_at(&m, 4), RTM_NEWLINK);
        assert_eq!(u16_at(&m, 6), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        assert_eq!(&m[16..32], &[0u8; 16], "ifinfomsg: no index, no flags");
        let a = attrs(&m, 16);
        assert_eq!(a[0], (IFLA_IFNAME, b"eth0.100\0".to_vec()));
        assert_eq!(a[1], (IFLA_LINK, 7u32.to_ne_bytes().to_vec()));
        assert_eq!(a[2].0, IFLA_LINKINFO);
        assert_eq!(a.len(), 3);
        // The nested attributes, parsed as the kernel does: kind, then data holding the id.
        let mut info = vec![0u8; 16];
        info.extend_from_slice(&a[2].1);
        let nested = attrs(&info, 0);
        assert_eq!(nested[0], (IFLA_INFO_KIND, b"vlan\0".to_vec()));
        assert_eq!(nested[1].0, IFLA_INFO_DATA);
        let mut data = vec![0u8; 16];
        data.extend_from_slice(&nested[1].1);
        assert_eq!(attrs(&data, 0), [(IFLA_VLAN_ID, 100u16.to_ne_bytes().to_vec())]);
        // 16 header, 16 ifinfomsg, 16 name (4 + 9, padded), 8 link, 28 linkinfo (4 + 12 kind + 12 data).
        assert_eq!(m.len(), 84);
    }

    #[test]
    fn a_bond() {
        let lacp = BondAttrs {
            mode: 4,
            miimon: 100,
            updelay: None,
            downdelay: Some(200),
            primary: None,
            xmit_hash_policy: Some(1),
            lacp_rate: Some(1),
        };
        let m = new_bond("bond0", &lacp, true, 5);
        assert_eq!(u32_at(&m, 0) as usize, m.len());
        assert_eq!(u16_at(&m, 4), RTM_NEWLINK);
        assert_eq!(u16_at(&m, 6), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        assert_eq!(u32_at(&m, 8), 5);
        assert_eq!(&m[16..32], &[0u8; 16], "ifinfomsg: no index, no flags");
        let a = attrs_of(&m);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0], (IFLA_IFNAME, b"bond0\0".to_vec()));
        assert_eq!(a[1].0, IFLA_LINKINFO);
        let nested = attrs(&[vec![0u8; 16], a[1].1.clone()].concat(), 0);
        assert_eq!(nested[0], (IFLA_INFO_KIND, b"bond\0".to_vec()));
        assert_eq!(nested[1].0, IFLA_INFO_DATA);
        let data = attrs(&[vec![0u8; 16], nested[1].1.clone()].concat(), 0);
        assert_eq!(
            data,
            [
                (1, vec![4]),
                (3, 100u32.to_ne_bytes().to_vec()),
                (5, 200u32.to_ne_bytes().to_vec()),
                (14, vec![1]),
                (21, vec![1]),
            ]
        );
        // The u8 attributes are padded to 8 bytes each: 8 + 8 + 8 + 8 + 8 of data, 40 + 4 in
        // IFLA_INFO_DATA, 12 for the kind, 4 for IFLA_LINKINFO; 12 for the name; 32 of headers.
        assert_eq!(m.len(), 32 + 12 + 4 + 12 + 44);
        assert_eq!(&m[m.len() - 40..m.len() - 36], &[5, 0, 1, 0], "IFLA_BOND_MODE, one byte");
        // Without create: the same options for a bond that exists.
        let primary =
            BondAttrs { mode: 1, primary: Some(3), xmit_hash_policy: None, lacp_rate: None, ..lacp };
        let m = new_bond("bond0", &primary, false, 6);
        assert_eq!(u16_at(&m, 6), NLM_F_REQUEST | NLM_F_ACK);
        let a = attrs_of(&m);
        let nested = attrs(&[vec![0u8; 16], a[1].1.clone()].concat(), 0);
        let data = attrs(&[vec![0u8; 16], nested[1].1.clone()].concat(), 0);
        assert_eq!(data[3], (11, 3u32.to_ne_bytes().to_vec()), "IFLA_BOND_PRIMARY, an ifindex");
        assert_eq!(data.len(), 4);
    }

    #[test]
    fn a_slave() {
        let m = set_master(3, 9, 2);
        assert_eq!(u32_at(&m, 0) as usize, m.len());
        assert_eq!(u16_at(&m, 6), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!((u32_at(&m, 20), u32_at(&m, 24), u32_at(&m, 28)), (3, 0, 0), "index, no flags changed");
        assert_eq!(attrs_of(&m), [(IFLA_MASTER, 9u32.to_ne_bytes().to_vec())]);
        assert_eq!(IFLA_MASTER, libc::IFLA_MASTER, "the libc crate agrees");
        assert_eq!(m.len(), 40);
    }

    /// The attributes after `struct ifinfomsg`.
    fn attrs_of(m: &[u8]) -> Vec<(u16, Vec<u8>)> {
        attrs(m, 16)
    }

    #[test]
    fn header() {
        let m = link_up(3, 77);
        assert_eq!(u32_at(&m, 0) as usize, m.len());
        assert_eq!(u16_at(&m, 4), RTM_NEWLINK);
        assert_eq!(u16_at(&m, 6), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(u32_at(&m, 8), 77);
        assert_eq!(m.len(), 32);
        assert_eq!(u32_at(&m, 20), 3, "ifi_index");
        assert_eq!((u32_at(&m, 24), u32_at(&m, 28)), (IFF_UP, IFF_UP), "flags, change");
    }

    #[test]
    fn down() {
        let m = link_down(3, 1);
        assert_eq!((u32_at(&m, 20), u32_at(&m, 24), u32_at(&m, 28)), (3, 0, IFF_UP), "index, flags, change");
    }

    #[test]
    fn mtu() {
        let m = link_mtu(2, 9000, 1);
        assert_eq!(attrs(&m, 16), [(IFLA_MTU, 9000u32.to_ne_bytes().to_vec())]);
        assert_eq!((u32_at(&m, 24), u32_at(&m, 28)), (0, 0), "flags untouched");
    }

    #[test]
    fn address() {
        let m = add_address(2, Ipv4Addr::new(10, 0, 2, 15), 24, 5);
        assert_eq!(u16_at(&m, 4), RTM_NEWADDR);
        assert_eq!(u16_at(&m, 6), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE);
        assert_eq!(&m[16..20], &[AF_INET, 24, 0, RT_SCOPE_UNIVERSE]);
        assert_eq!(u32_at(&m, 20), 2);
        assert_eq!(
            attrs(&m, 8),
            [
                (IFA_LOCAL, vec![10, 0, 2, 15]),
                (IFA_ADDRESS, vec![10, 0, 2, 15]),
                (IFA_BROADCAST, vec![10, 0, 2, 255])
            ]
        );
        let m = add_address(2, Ipv4Addr::new(192, 0, 2, 7), 32, 5);
        assert_eq!(attrs(&m, 8).len(), 2, "no broadcast on a /32");
    }

    #[test]
    fn routes() {
        let gw = Ipv4Addr::new(10, 0, 2, 2);
        let m = add_route(2, Ipv4Addr::UNSPECIFIED, 0, Some(gw), None, Origin::Dhcp, 9);
        assert_eq!(u16_at(&m, 4), RTM_NEWROUTE);
        assert_eq!(
            &m[16..24],
            &[AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_DHCP, RT_SCOPE_UNIVERSE, RTN_UNICAST]
        );
        assert_eq!(attrs(&m, 12), [(RTA_GATEWAY, vec![10, 0, 2, 2]), (RTA_OIF, 2u32.to_ne_bytes().to_vec())]);
        let m = add_route(4, gw, 32, None, Some(Ipv4Addr::new(10, 0, 2, 15)), Origin::Static, 9);
        assert_eq!(&m[16..24], &[AF_INET, 32, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_LINK, RTN_UNICAST]);
        assert_eq!(
            attrs(&m, 12),
            [
                (RTA_DST, vec![10, 0, 2, 2]),
                (RTA_PREFSRC, vec![10, 0, 2, 15]),
                (RTA_OIF, 4u32.to_ne_bytes().to_vec())
            ]
        );
    }

    #[test]
    fn acks() {
        let ack = |seq: u32, error: i32| {
            let mut b = Vec::new();
            b.extend_from_slice(&36u32.to_ne_bytes());
            b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            b.extend_from_slice(&0u16.to_ne_bytes());
            b.extend_from_slice(&seq.to_ne_bytes());
            b.extend_from_slice(&0u32.to_ne_bytes());
            b.extend_from_slice(&error.to_ne_bytes());
            b.extend_from_slice(&[0u8; 16]);
            b
        };
        assert_eq!(parse_ack(&ack(7, 0), 7), Some(0));
        assert_eq!(parse_ack(&ack(7, -17), 7), Some(17));
        assert_eq!(parse_ack(&ack(6, 0), 7), None);
        let mut two = ack(6, -1);
        two.extend_from_slice(&ack(7, -22));
        assert_eq!(parse_ack(&two, 7), Some(22));
        assert_eq!(parse_ack(&ack(7, 0)[..20], 7), None, "truncated");
        assert_eq!(parse_ack(&[], 7), None);
        // A last message of 17 bytes: the next one would start at 20, past the end.
        let mut odd = ack(6, 0);
        odd[0] = 17;
        odd.truncate(17);
        assert_eq!(parse_ack(&odd, 7), None);
        let mut odd_then_ack = ack(6, 0);
        odd_then_ack[0] = 17;
        odd_then_ack.truncate(20);
        odd_then_ack.extend_from_slice(&ack(7, -13));
        assert_eq!(parse_ack(&odd_then_ack, 7), Some(13));
        assert_eq!(parse_ack(&ack(7, i32::MIN), 7), Some(i32::MAX), "an errno no kernel sends");
    }
}
