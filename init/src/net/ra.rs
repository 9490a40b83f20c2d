//! IPv6 Router Advertisements (RFC 4861 §4.2) and the DNS facts they carry (RFC 8106), as pure
//! functions over bytes: a Router Advertisement as a raw ICMPv6 socket delivers it (`v6.rs` reads
//! it there, which also gives the M and O flags and the router's address; rtnetlink's
//! RTM_NEWNDUSEROPT would give only the RDNSS and DNSSL options), and the Router Solicitation.
//!
//! It does no I/O and keeps no state: the kernel does SLAAC itself (accept_ra), and the caller
//! checks what only the socket knows (hop limit 255, a link-local source, the ICMPv6 checksum).

use std::net::Ipv6Addr;
use std::time::Duration;

use super::dhcp6::domain_list;

pub const ICMPV6_ROUTER_SOLICITATION: u8 = 133;
pub const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;
/// All-routers, where a Router Solicitation goes (RFC 4861 §6.3.7).
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

// ND option types, RFC 4861 §4.6 and RFC 8106.
const OPT_SOURCE_LL_ADDR: u8 = 1;
const OPT_PREFIX_INFO: u8 = 3;
const OPT_MTU: u8 = 5;
const OPT_RDNSS: u8 = 25;
const OPT_DNSSL: u8 = 31;

/// The RA header after type and code: checksum, hop limit, flags, router lifetime, reachable
/// time, retrans timer.
const RA_HEADER: usize = 16;

/// DNS servers and search domains passed on per message, at most.
const MAX_SERVERS: usize = 16;
const MAX_SEARCH: usize = 32;

/// Why bytes were not read as a Router Advertisement or an ND user option message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    TooShort(usize),
    /// ICMPv6 type and code other than 134/0, or an address family other than AF_INET6.
    NotRouterAdvert {
        kind: u8,
        code: u8,
    },
    /// RFC 4861 §6.1.2: an option of length 0 makes the message invalid.
    ZeroLength(u8),
    /// An option runs past the end of the message.
    Truncated(u8),
    /// An option whose length its type does not allow.
    BadLength {
        kind: u8,
        len: usize,
    },
}

/// A prefix information option (RFC 4861 §4.6.2). Lifetimes of all ones are infinite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    /// With the bits past `len` cleared.
    pub prefix: Ipv6Addr,
    pub len: u8,
    /// L: the prefix is on-link.
    pub on_link: bool,
    /// A: usable for SLAAC.
    pub autonomous: bool,
    pub valid: Duration,
    pub preferred: Duration,
}

/// A recursive DNS server (RDNSS, RFC 8106 §5.1). A lifetime of 0 means "remove this server";
/// all ones means infinity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsServer {
    pub address: Ipv6Addr,
    pub lifetime: Duration,
}

/// A search domain (DNSSL, RFC 8106 §5.2). A lifetime of 0 means "remove this domain".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchDomain {
    pub name: String,
    pub lifetime: Duration,
}

/// The DNS facts of one message: RDNSS and DNSSL options, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns6 {
    pub servers: Vec<DnsServer>,
    pub search: Vec<SearchDomain>,
    /// What the router sent that netinit refused to pass on, each saying why.
    pub refused: Vec<String>,
}

/// A decoded Router Advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterAdvert {
    pub hop_limit: u8,
    /// M: addresses are available by DHCPv6.
    pub managed: bool,
    /// O: other configuration (DNS, NTP) is available by DHCPv6.
    pub other: bool,
    /// 0: not a default router.
    pub router_lifetime: Duration,
    pub reachable: Duration,
    pub retrans: Duration,
    pub prefixes: Vec<Prefix>,
    pub mtu: Option<u32>,
    /// The router's link-layer address (option 1), when 6 bytes.
    pub source_mac: Option<[u8; 6]>,
    pub dns: Dns6,
}

fn be16(b: &[u8]) -> u16 {
    match b {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

fn be32(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

fn ipv6(b: &[u8]) -> Ipv6Addr {
    b.get(..16).and_then(|b| <[u8; 16]>::try_from(b).ok()).map_or(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from)
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

/// ND options (RFC 4861 §4.6): type, length in units of 8 bytes, value. Each item is the type
/// and the whole option, header included.
fn options(mut data: &[u8]) -> Result<Vec<(u8, &[u8])>, Malformed> {
    let mut out = Vec::new();
    while let [kind, units, ..] = data {
        if *units == 0 {
            return Err(Malformed::ZeroLength(*kind));
        }
        let len = usize::from(*units) * 8;
        let option = data.get(..len).ok_or(Malformed::Truncated(*kind))?;
        out.push((*kind, option));
        data = &data[len..];
    }
    match data.first() {
        Some(kind) => Err(Malformed::Truncated(*kind)),
        None => Ok(out),
    }
}

impl Dns6 {
    /// Reads one RDNSS or DNSSL option (whole, header included) into `self`; other types are left.
    fn read(&mut self, kind: u8, option: &[u8]) -> Result<(), Malformed> {
        let lifetime = secs(be32(option.get(4..).unwrap_or_default()));
        match kind {
            OPT_RDNSS => {
                // RFC 8106 §5.1: length 3 + 2n, n >= 1.
                let units = option.len() / 8;
                if units < 3 || units % 2 == 0 {
                    return Err(Malformed::BadLength { kind, len: option.len() });
                }
                for address in option[8..].chunks_exact(16).map(ipv6) {
                    if address.is_unspecified() || address.is_multicast() || address.is_loopback() {
                        self.refused.push(format!("DNS server {address} (RDNSS): not a unicast address"));
                    } else if self.servers.len() >= MAX_SERVERS {
                        self.refused
                            .push(format!("DNS server {address} (RDNSS): beyond the first {MAX_SERVERS}"));
                    } else {
                        self.servers.push(DnsServer { address, lifetime });
                    }
                }
            }
            OPT_DNSSL => {
                if option.len() < 16 {
                    return Err(Malformed::BadLength { kind, len: option.len() });
                }
                let Some(names) = domain_list(&option[8..]) else {
                    self.refused.push("search domains (DNSSL): malformed".to_owned());
                    return Ok(());
                };
                for name in names {
                    if !crate::cmdline::valid_hostname(&name) {
                        self.refused.push(format!("search domain {name:?} (DNSSL): not a valid host name"));
                    } else if self.search.len() >= MAX_SEARCH {
                        self.refused
                            .push(format!("search domain {name:?} (DNSSL): beyond the first {MAX_SEARCH}"));
                    } else {
                        self.search.push(SearchDomain { name, lifetime });
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl RouterAdvert {
    /// The ICMPv6 message as a raw ICMPv6 socket delivers it: type 134, code 0, then the header
    /// and the options.
    pub fn decode(icmpv6: &[u8]) -> Result<RouterAdvert, Malformed> {
        let [kind, code, ..] = icmpv6 else {
            return Err(Malformed::TooShort(icmpv6.len()));
        };
        if (*kind, *code) != (ICMPV6_ROUTER_ADVERTISEMENT, 0) {
            return Err(Malformed::NotRouterAdvert { kind: *kind, code: *code });
        }
        if icmpv6.len() < RA_HEADER {
            return Err(Malformed::TooShort(icmpv6.len()));
        }
        let flags = icmpv6[5];
        let mut ra = RouterAdvert {
            hop_limit: icmpv6[4],
            managed: flags & 0x80 != 0,
            other: flags & 0x40 != 0,
            router_lifetime: Duration::from_secs(u64::from(be16(&icmpv6[6..]))),
            reachable: Duration::from_millis(u64::from(be32(&icmpv6[8..]))),
            retrans: Duration::from_millis(u64::from(be32(&icmpv6[12..]))),
            prefixes: Vec::new(),
            mtu: None,
            source_mac: None,
            dns: Dns6::default(),
        };
        for (kind, option) in options(&icmpv6[RA_HEADER..])? {
            let bad = Malformed::BadLength { kind, len: option.len() };
            match kind {
                OPT_SOURCE_LL_ADDR => {
                    ra.source_mac = option.get(2..8).and_then(|m| <[u8; 6]>::try_from(m).ok());
                }
                OPT_PREFIX_INFO => {
                    if option.len() != 32 {
                        return Err(bad);
                    }
                    let len = option[2];
                    if len > 128 {
                        continue; // no prefix: ignored, as the kernel does
                    }
                    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                    ra.prefixes.push(Prefix {
                        prefix: Ipv6Addr::from(u128::from(ipv6(&option[16..])) & mask),
                        len,
                        on_link: option[3] & 0x80 != 0,
                        autonomous: option[3] & 0x40 != 0,
                        valid: secs(be32(&option[4..])),
                        preferred: secs(be32(&option[8..])),
                    });
                }
                OPT_MTU => {
                    if option.len() != 8 {
                        return Err(bad);
                    }
                    ra.mtu = Some(be32(&option[4..])).filter(|m| *m >= 1280);
                }
                OPT_RDNSS | OPT_DNSSL => ra.dns.read(kind, option)?,
                _ => {}
            }
        }
        Ok(ra)
    }
}

/// A Router Solicitation (RFC 4861 §4.1) with the source link-layer address option. The checksum
/// is left 0: the kernel fills it in for raw ICMPv6 sockets.
pub fn router_solicitation(mac: [u8; 6]) -> Vec<u8> {
    let mut p = vec![ICMPV6_ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0, OPT_SOURCE_LL_ADDR, 1];
    p.extend_from_slice(&mac);
    p
}

#[cfg(test)]
mod tests;
