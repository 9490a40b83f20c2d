//! A DHCPv6 client (RFC 8415) as a sans-IO state machine: it is given packets and the time, and
//! says what to send and when. The network stage owns the socket (UDP port 546, to ff02::1:2 port
//! 547) and the clock; everything here is tested on the host with hand-built packets.
//!
//! Two modes, chosen at construction: stateful (Solicit -> Advertise -> Request -> Reply, one IA_NA)
//! and stateless (Information-Request -> Reply, for SLAAC networks whose RA has the O flag), both
//! with RFC 8415 §15's retransmission. It deliberately does not renew, rebind, release, confirm or
//! ask for prefixes (IA_PD), and takes no Rapid Commit: as with DHCPv4, the booted system's own
//! client takes over.

use std::net::Ipv6Addr;
use std::time::Duration;

use super::dhcp::xorshift;

pub const CLIENT_PORT: u16 = 546;
pub const SERVER_PORT: u16 = 547;
/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1), where every client message goes.
pub const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

// Option codes, RFC 8415 §21, RFC 3646, RFC 4075, RFC 5908.
const OPT_CLIENTID: u16 = 1;
const OPT_SERVERID: u16 = 2;
const OPT_IA_NA: u16 = 3;
const OPT_IAADDR: u16 = 5;
const OPT_ORO: u16 = 6;
const OPT_PREFERENCE: u16 = 7;
const OPT_ELAPSED_TIME: u16 = 8;
const OPT_STATUS_CODE: u16 = 13;
const OPT_DNS_SERVERS: u16 = 23;
const OPT_DOMAIN_LIST: u16 = 24;
const OPT_SNTP_SERVERS: u16 = 31;
const OPT_INFORMATION_REFRESH_TIME: u16 = 32;
const OPT_NTP_SERVER: u16 = 56;
const OPT_SOL_MAX_RT: u16 = 82;
const OPT_INF_MAX_RT: u16 = 83;

/// NTP_SERVER's suboptions (RFC 5908 §4): only the unicast address is used.
const NTP_SUBOPTION_SRV_ADDR: u16 = 1;

// Status codes, RFC 8415 §21.13.
pub const STATUS_SUCCESS: u16 = 0;
pub const STATUS_UNSPEC_FAIL: u16 = 1;
pub const STATUS_NO_ADDRS_AVAIL: u16 = 2;
pub const STATUS_NO_BINDING: u16 = 3;
pub const STATUS_NOT_ON_LINK: u16 = 4;
pub const STATUS_USE_MULTICAST: u16 = 5;

// Transmission and retransmission parameters, RFC 8415 §7.6.
const SOL_MAX_DELAY: Duration = Duration::from_secs(1);
const SOL_TIMEOUT: Duration = Duration::from_secs(1);
const SOL_MAX_RT: Duration = Duration::from_secs(3600);
const REQ_TIMEOUT: Duration = Duration::from_secs(1);
const REQ_MAX_RT: Duration = Duration::from_secs(30);
const REQ_MAX_RC: u32 = 10;
const INF_MAX_DELAY: Duration = Duration::from_secs(1);
const INF_TIMEOUT: Duration = Duration::from_secs(1);
const INF_MAX_RT: Duration = Duration::from_secs(3600);
/// The range a server's SOL_MAX_RT or INF_MAX_RT must fall in to be honoured (§21.24, §21.25).
const MAX_RT_RANGE: std::ops::RangeInclusive<u32> = 60..=86400;
/// IRT_DEFAULT for the information refresh time, when the server gives none (§21.23).
const IRT_DEFAULT: u32 = 86400;
/// A lifetime of all ones is infinity (§7.7).
pub const INFINITY: u32 = u32::MAX;

/// DNS and NTP servers passed on, at most.
const MAX_SERVERS: usize = 16;
/// Search domains passed on, at most, as in `dhcp`.
const MAX_SEARCH: usize = 32;
/// A status message is cut to this many characters: it only goes to the console.
const MAX_MESSAGE: usize = 200;

/// What the client asks servers for (option 6). RFC 8415 §21.24 and §21.25 make a client that
/// honours SOL_MAX_RT and INF_MAX_RT ask for them.
const ORO_STATEFUL: [u16; 5] =
    [OPT_DNS_SERVERS, OPT_DOMAIN_LIST, OPT_NTP_SERVER, OPT_SNTP_SERVERS, OPT_SOL_MAX_RT];
const ORO_STATELESS: [u16; 6] = [
    OPT_DNS_SERVERS,
    OPT_DOMAIN_LIST,
    OPT_NTP_SERVER,
    OPT_SNTP_SERVERS,
    OPT_INFORMATION_REFRESH_TIME,
    OPT_INF_MAX_RT,
];

/// DHCPv6 message types (RFC 8415 §7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Solicit = 1,
    Advertise = 2,
    Request = 3,
    Confirm = 4,
    Renew = 5,
    Rebind = 6,
    Reply = 7,
    Release = 8,
    Decline = 9,
    Reconfigure = 10,
    InformationRequest = 11,
    RelayForw = 12,
    RelayRepl = 13,
}

impl MessageType {
    fn from_u8(v: u8) -> Option<Self> {
        use MessageType::*;
        [
            Solicit,
            Advertise,
            Request,
            Confirm,
            Renew,
            Rebind,
            Reply,
            Release,
            Decline,
            Reconfigure,
            InformationRequest,
            RelayForw,
            RelayRepl,
        ]
        .into_iter()
        .find(|t| *t as u8 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            MessageType::Solicit => "SOLICIT",
            MessageType::Advertise => "ADVERTISE",
            MessageType::Request => "REQUEST",
            MessageType::Confirm => "CONFIRM",
            MessageType::Renew => "RENEW",
            MessageType::Rebind => "REBIND",
            MessageType::Reply => "REPLY",
            MessageType::Release => "RELEASE",
            MessageType::Decline => "DECLINE",
            MessageType::Reconfigure => "RECONFIGURE",
            MessageType::InformationRequest => "INFORMATION-REQUEST",
            MessageType::RelayForw => "RELAY-FORW",
            MessageType::RelayRepl => "RELAY-REPL",
        }
    }
}

/// The name RFC 8415 §21.13 gives a status code.
pub fn status_name(code: u16) -> &'static str {
    match code {
        STATUS_SUCCESS => "Success",
        STATUS_UNSPEC_FAIL => "UnspecFail",
        STATUS_NO_ADDRS_AVAIL => "NoAddrsAvail",
        STATUS_NO_BINDING => "NoBinding",
        STATUS_NOT_ON_LINK => "NotOnLink",
        STATUS_USE_MULTICAST => "UseMulticast",
        6 => "NoPrefixAvail",
        _ => "unknown status",
    }
}

/// Why a received packet was not used. Every variant is a normal event on a busy network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// Fewer than the 4 bytes of message type and transaction id.
    TooShort(usize),
    UnknownType(u8),
    /// Bytes left after the last option, too few for an option header.
    TrailingBytes(usize),
    /// An option runs past the end of the message or of the option holding it.
    Truncated(u16),
    /// An option of a length its kind does not allow.
    BadLength {
        code: u16,
        len: usize,
    },
    /// An option twice where one is allowed.
    Duplicate(u16),
}

/// A STATUS_CODE option: the code and the server's UTF-8 message, made printable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub message: String,
}

/// An IAADDR option (§21.6), lifetimes in seconds as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IaAddr {
    pub address: Ipv6Addr,
    pub preferred: u32,
    pub valid: u32,
    pub status: Option<Status>,
}

/// An IA_NA option (§21.4) with the IAADDR and STATUS_CODE options it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IaNa {
    pub iaid: u32,
    pub t1: u32,
    pub t2: u32,
    pub addresses: Vec<IaAddr>,
    pub status: Option<Status>,
}

/// A decoded client/server message (§8): the options the client acts on decoded and checked, and
/// every top-level option kept in order, repeats included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub kind: MessageType,
    /// 24 bits.
    pub xid: u32,
    pub client_id: Option<Vec<u8>>,
    pub server_id: Option<Vec<u8>>,
    /// PREFERENCE (7); 0 when absent (§18.2.9).
    pub preference: u8,
    pub status: Option<Status>,
    pub ia_na: Vec<IaNa>,
    options: Vec<(u16, Vec<u8>)>,
}

/// One option's code and value; `data` must be a whole sequence of options.
fn walk(mut data: &[u8]) -> Result<Vec<(u16, &[u8])>, Malformed> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let [c0, c1, l0, l1, rest @ ..] = data else {
            return Err(Malformed::TrailingBytes(data.len()));
        };
        let code = u16::from_be_bytes([*c0, *c1]);
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let value = rest.get(..len).ok_or(Malformed::Truncated(code))?;
        out.push((code, value));
        data = &rest[len..];
    }
    Ok(out)
}

fn be32(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

/// The address in the first 16 bytes; callers check the length, and fewer give `::`.
fn ipv6(b: &[u8]) -> Ipv6Addr {
    b.get(..16).and_then(|b| <[u8; 16]>::try_from(b).ok()).map_or(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from)
}

fn status(value: &[u8]) -> Result<Status, Malformed> {
    let [c0, c1, text @ ..] = value else {
        return Err(Malformed::BadLength { code: OPT_STATUS_CODE, len: value.len() });
    };
    Ok(Status { code: u16::from_be_bytes([*c0, *c1]), message: printable(text) })
}

/// Text from a server, for the console: control characters replaced, at most [`MAX_MESSAGE`] chars.
fn printable(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(MAX_MESSAGE)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The one STATUS_CODE among `options`, if any; two is malformed.
fn one_status(options: &[(u16, &[u8])]) -> Result<Option<Status>, Malformed> {
    let mut found = None;
    for (_, v) in options.iter().filter(|(c, _)| *c == OPT_STATUS_CODE) {
        if found.replace(status(v)?).is_some() {
            return Err(Malformed::Duplicate(OPT_STATUS_CODE));
        }
    }
    Ok(found)
}

fn ia_addr(value: &[u8]) -> Result<IaAddr, Malformed> {
    if value.len() < 24 {
        return Err(Malformed::BadLength { code: OPT_IAADDR, len: value.len() });
    }
    let inner = walk(&value[24..])?;
    Ok(IaAddr {
        address: ipv6(value),
        preferred: be32(&value[16..]),
        valid: be32(&value[20..]),
        status: one_status(&inner)?,
    })
}

fn ia_na(value: &[u8]) -> Result<IaNa, Malformed> {
    if value.len() < 12 {
        return Err(Malformed::BadLength { code: OPT_IA_NA, len: value.len() });
    }
    let inner = walk(&value[12..])?;
    let addresses =
        inner.iter().filter(|(c, _)| *c == OPT_IAADDR).map(|(_, v)| ia_addr(v)).collect::<Result<_, _>>()?;
    Ok(IaNa {
        iaid: be32(value),
        t1: be32(&value[4..]),
        t2: be32(&value[8..]),
        addresses,
        status: one_status(&inner)?,
    })
}

impl Packet {
    pub fn decode(data: &[u8]) -> Result<Packet, Malformed> {
        let [kind, x0, x1, x2, rest @ ..] = data else {
            return Err(Malformed::TooShort(data.len()));
        };
        let kind = MessageType::from_u8(*kind).ok_or(Malformed::UnknownType(*kind))?;
        let options = walk(rest)?;
        let single = |code: u16| -> Result<Option<Vec<u8>>, Malformed> {
            let mut values = options.iter().filter(|(c, _)| *c == code);
            let first = values.next().map(|(_, v)| v.to_vec());
            match values.next() {
                Some(_) => Err(Malformed::Duplicate(code)),
                None => Ok(first),
            }
        };
        let duid = |code: u16| -> Result<Option<Vec<u8>>, Malformed> {
            // A DUID is a 2-byte type and at most 128 bytes of identifier (§11.1).
            match single(code)? {
                Some(v) if !(3..=130).contains(&v.len()) => Err(Malformed::BadLength { code, len: v.len() }),
                v => Ok(v),
            }
        };
        let client_id = duid(OPT_CLIENTID)?;
        let server_id = duid(OPT_SERVERID)?;
        let preference = match single(OPT_PREFERENCE)? {
            Some(v) if v.len() != 1 => {
                return Err(Malformed::BadLength { code: OPT_PREFERENCE, len: v.len() })
            }
            v => v.and_then(|v| v.first().copied()).unwrap_or(0),
        };
        let status = one_status(&options)?;
        let ia_na = options
            .iter()
            .filter(|(c, _)| *c == OPT_IA_NA)
            .map(|(_, v)| ia_na(v))
            .collect::<Result<_, _>>()?;
        Ok(Packet {
            kind,
            xid: u32::from_be_bytes([0, *x0, *x1, *x2]),
            client_id,
            server_id,
            preference,
            status,
            ia_na,
            options: options.into_iter().map(|(c, v)| (c, v.to_vec())).collect(),
        })
    }

    /// The first top-level option `code`.
    pub fn option(&self, code: u16) -> Option<&[u8]> {
        self.all(code).next()
    }

    /// Every top-level option `code`, in order.
    pub fn all(&self, code: u16) -> impl Iterator<Item = &[u8]> {
        self.options.iter().filter(move |(c, _)| *c == code).map(|(_, v)| v.as_slice())
    }

    fn u32_option(&self, code: u16) -> Option<u32> {
        self.option(code).filter(|v| v.len() == 4).map(be32)
    }

    /// The failure the message reports, at the top or in the IA_NA `iaid`; `None` for success.
    fn failure(&self, iaid: u32) -> Option<&Status> {
        let ia = self.ia_na.iter().filter(|ia| ia.iaid == iaid).filter_map(|ia| ia.status.as_ref());
        self.status.iter().chain(ia).find(|s| s.code != STATUS_SUCCESS)
    }

    /// The first address the IA_NA `iaid` holds that a client may use, with T1 and T2.
    fn offered(&self, iaid: u32) -> Option<(&IaNa, &IaAddr)> {
        self.ia_na
            .iter()
            .filter(|ia| ia.iaid == iaid)
            // §21.4: T1 > T2 with both non-zero: the client discards the IA_NA.
            .filter(|ia| ia.t1 == 0 || ia.t2 == 0 || ia.t1 <= ia.t2)
            .find_map(|ia| ia.addresses.iter().find(|a| usable(a)).map(|a| (ia, a)))
    }

    /// What any Reply (or Advertise) says beyond addresses. Values that are not passed on are
    /// said so in `refused`.
    pub fn info(&self, server_address: Option<Ipv6Addr>) -> Info6 {
        let mut refused = Vec::new();
        let mut dns = Vec::new();
        for v in self.all(OPT_DNS_SERVERS) {
            addresses(OPT_DNS_SERVERS, "DNS server", v, &mut dns, &mut refused);
        }
        let mut ntp = Vec::new();
        for v in self.all(OPT_NTP_SERVER) {
            match walk(v) {
                Ok(subs) => {
                    for (_, a) in subs.into_iter().filter(|(c, _)| *c == NTP_SUBOPTION_SRV_ADDR) {
                        match a.len() {
                            16 => addresses(OPT_NTP_SERVER, "NTP server", a, &mut ntp, &mut refused),
                            n => refused.push(format!("NTP server (option 56): an address of {n} bytes")),
                        }
                    }
                }
                Err(e) => refused.push(format!("NTP server (option 56): malformed suboptions ({e:?})")),
            }
        }
        for v in self.all(OPT_SNTP_SERVERS) {
            addresses(OPT_SNTP_SERVERS, "SNTP server", v, &mut ntp, &mut refused);
        }
        let mut search = Vec::new();
        for v in self.all(OPT_DOMAIN_LIST) {
            let Some(names) = domain_list(v) else {
                refused.push("domain list (option 24): malformed".to_owned());
                continue;
            };
            for name in names {
                if !crate::cmdline::valid_hostname(&name) {
                    refused.push(format!("search domain {name:?} (option 24): not a valid host name"));
                } else if !search.contains(&name) {
                    search.push(name);
                }
            }
        }
        for (list, what) in
            [(&mut dns, "DNS servers (option 23)"), (&mut ntp, "NTP servers (options 56, 31)")]
        {
            if list.len() > MAX_SERVERS {
                refused.push(format!("{} {what} beyond the first {MAX_SERVERS}", list.len() - MAX_SERVERS));
                list.truncate(MAX_SERVERS);
            }
        }
        if search.len() > MAX_SEARCH {
            let beyond = search.len() - MAX_SEARCH;
            refused.push(format!("{beyond} search domains beyond the first {MAX_SEARCH} (option 24)"));
            search.truncate(MAX_SEARCH);
        }
        let refresh = self.u32_option(OPT_INFORMATION_REFRESH_TIME).unwrap_or(IRT_DEFAULT).max(600);
        Info6 {
            server_duid: self.server_id.clone().unwrap_or_default(),
            server_address,
            dns,
            search,
            ntp,
            refresh: Duration::from_secs(u64::from(refresh)),
            status_message: self.status.as_ref().map(|s| s.message.clone()).filter(|m| !m.is_empty()),
            refused,
        }
    }
}

/// A list of addresses (`code`, a `what`) into `out`, without repeats; what is not a unicast
/// address is refused.
fn addresses(code: u16, what: &str, value: &[u8], out: &mut Vec<Ipv6Addr>, refused: &mut Vec<String>) {
    if value.len() % 16 != 0 {
        refused.push(format!("{what} (option {code}): {} bytes, not a list of addresses", value.len()));
        return;
    }
    for a in value.chunks_exact(16).map(ipv6) {
        if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
            refused.push(format!("{what} {a} (option {code}): not a unicast address"));
        } else if !out.contains(&a) {
            out.push(a);
        }
    }
}

/// An address a client may configure: unicast, not yet invalid, preferred no longer than valid
/// (§21.6: the client discards one whose preferred lifetime exceeds its valid lifetime).
fn usable(a: &IaAddr) -> bool {
    let unicast = !(a.address.is_unspecified() || a.address.is_multicast() || a.address.is_loopback());
    unicast
        && a.valid > 0
        && a.preferred <= a.valid
        && a.status.as_ref().is_none_or(|s| s.code == STATUS_SUCCESS)
}

/// DOMAIN_LIST (RFC 8415 §10, RFC 3646) and DNSSL (RFC 8106 §5.2): DNS names in wire format,
/// never compressed. A zero byte where a name would start is an empty name and skipped, which also
/// reads DNSSL's zero padding. `None` when malformed (a pointer, a label past the end, a label of
/// other than letters, digits, '-' and '_', a name over 253 characters), and the option is ignored.
pub fn domain_list(data: &[u8]) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let mut labels: Vec<&str> = Vec::new();
        loop {
            let len = usize::from(*data.get(at)?);
            at += 1;
            if len == 0 {
                break;
            }
            if len >= 64 {
                return None; // a compression pointer (0xC0) or a reserved label type
            }
            let label = data.get(at..at + len)?;
            if !label.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_') {
                return None;
            }
            labels.push(std::str::from_utf8(label).ok()?);
            at += len;
        }
        let name = labels.join(".");
        if name.len() > 253 {
            return None;
        }
        if !name.is_empty() {
            names.push(name);
        }
    }
    Some(names)
}

/// What a Reply gives beyond an address: the whole answer in stateless mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info6 {
    pub server_duid: Vec<u8>,
    /// Where the Reply came from, when the caller said.
    pub server_address: Option<Ipv6Addr>,
    pub dns: Vec<Ipv6Addr>,
    /// DOMAIN_LIST (24), each an RFC 1123 name.
    pub search: Vec<String>,
    /// NTP_SERVER (56)'s server addresses, then SNTP_SERVERS (31), without repeats.
    pub ntp: Vec<Ipv6Addr>,
    /// INFORMATION_REFRESH_TIME (32), at least 600 s, IRT_DEFAULT (1 day) when absent (§21.23).
    pub refresh: Duration,
    pub status_message: Option<String>,
    /// What the server sent that netinit refused to pass on to the booted system, each saying why.
    pub refused: Vec<String>,
}

/// What a server's Reply to a Request gives. The address is always a /128 (the prefix comes from
/// the RA); lifetimes of [`INFINITY`] seconds are infinite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease6 {
    pub address: Ipv6Addr,
    pub preferred: Duration,
    pub valid: Duration,
    /// From the IA_NA; when the server leaves them to the client (0), 0.5 and 0.8 times the
    /// preferred lifetime (§21.4, §18.2.4). Always `t1 <= t2`.
    pub t1: Duration,
    pub t2: Duration,
    pub server_duid: Vec<u8>,
    pub server_address: Option<Ipv6Addr>,
    pub dns: Vec<Ipv6Addr>,
    pub search: Vec<String>,
    pub ntp: Vec<Ipv6Addr>,
    pub status_message: Option<String>,
    pub refused: Vec<String>,
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

impl Lease6 {
    fn new(ia: &IaNa, addr: &IaAddr, info: Info6) -> Lease6 {
        let pref = u64::from(addr.preferred);
        let default = |fraction: u64| match addr.preferred {
            INFINITY => INFINITY,
            _ => (pref * fraction / 10) as u32,
        };
        let t1 = if ia.t1 == 0 { default(5) } else { ia.t1 };
        let t2 = if ia.t2 == 0 { default(8) } else { ia.t2 }.max(t1);
        Lease6 {
            address: addr.address,
            preferred: secs(addr.preferred),
            valid: secs(addr.valid),
            t1: secs(t1),
            t2: secs(t2),
            server_duid: info.server_duid,
            server_address: info.server_address,
            dns: info.dns,
            search: info.search,
            ntp: info.ntp,
            status_message: info.status_message,
            refused: info.refused,
        }
    }
}

/// Who the client is.
#[derive(Debug, Clone)]
pub struct Identity {
    pub mac: [u8; 6],
}

impl Identity {
    /// DUID-LL (§11.4): type 3, hardware type 1 (Ethernet), the MAC.
    pub fn duid(&self) -> Vec<u8> {
        let mut d = vec![0, 3, 0, 1];
        d.extend_from_slice(&self.mac);
        d
    }

    /// The IA_NA's IAID: the MAC's last four bytes, stable across boots.
    pub fn iaid(&self) -> u32 {
        be32(&self.mac[2..])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Solicit -> Advertise -> Request -> Reply, for one address (IA_NA).
    Stateful,
    /// Information-Request -> Reply, for the DNS and NTP servers of a SLAAC network.
    Stateless,
}

/// A message the client wants sent now, from port [`CLIENT_PORT`] to [`ALL_SERVERS`] port
/// [`SERVER_PORT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub packet: Vec<u8>,
    pub kind: MessageType,
    /// 1 for the first send of this message, 2 for its first retransmission...
    pub attempt: u32,
}

/// What a received packet did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Not for us, or not what we wait for: no change.
    Ignored(&'static str),
    /// Unreadable: no change.
    Malformed(Malformed),
    /// An acceptable Advertise. `selected`: the client took it and a Request is due; otherwise it
    /// is held as the best so far until the first Solicit's RT ends (§18.2.1).
    Advertised {
        server: Vec<u8>,
        address: Ipv6Addr,
        preference: u8,
        selected: bool,
    },
    /// The server's Reply reported a failure; the client starts over (Solicit, or a new
    /// Information-Request in stateless mode).
    Failed {
        status: u16,
        message: String,
    },
    Bound(Lease6),
    /// The Reply to an Information-Request.
    Informed(Info6),
}

/// An Advertise the client may take.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Offer {
    server_id: Vec<u8>,
    preference: u8,
    address: Ipv6Addr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Soliciting; `best` is the Advertise held while the first RT runs.
    Soliciting {
        best: Option<Offer>,
    },
    Requesting(Offer),
    Informing,
    Done,
}

pub struct Client {
    id: Identity,
    mode: Mode,
    rng: u64,
    xid: u32,
    state: State,
    /// When the current exchange's first message went out.
    started: Duration,
    /// Sends of the current message so far.
    attempt: u32,
    /// The current retransmission timeout.
    rt: Duration,
    /// When the next (re)transmission is due.
    due: Duration,
    /// When the first Solicit's RT ends: Advertises are collected until then.
    collect_until: Duration,
    sol_max_rt: Duration,
    inf_max_rt: Duration,
}

impl Client {
    /// A client that starts at `now` (any monotonic clock), with randomness from `seed`. Its first
    /// message waits a random 0..1 s (SOL_MAX_DELAY, INF_MAX_DELAY).
    pub fn new(id: Identity, mode: Mode, seed: u64, now: Duration) -> Client {
        let mut rng = seed | 1;
        let xid = new_xid(&mut rng);
        let max_delay = match mode {
            Mode::Stateful => SOL_MAX_DELAY,
            Mode::Stateless => INF_MAX_DELAY,
        };
        let delay = Duration::from_millis(xorshift(&mut rng) % (max_delay.as_millis() as u64 + 1));
        let state = match mode {
            Mode::Stateful => State::Soliciting { best: None },
            Mode::Stateless => State::Informing,
        };
        Client {
            id,
            mode,
            rng,
            xid,
            state,
            started: now,
            attempt: 0,
            rt: Duration::ZERO,
            due: now.saturating_add(delay),
            collect_until: Duration::MAX,
            sol_max_rt: SOL_MAX_RT,
            inf_max_rt: INF_MAX_RT,
        }
    }

    #[cfg(test)]
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// When [`Client::poll_transmit`] next has something to send or decide; `Duration::MAX` once done.
    pub fn next_deadline(&self) -> Duration {
        match self.state {
            State::Done => Duration::MAX,
            _ => self.due,
        }
    }

    /// The message to send now, if one is due; it then schedules the retransmission (§15).
    pub fn poll_transmit(&mut self, now: Duration) -> Option<Transmit> {
        if now < self.due || self.state == State::Done {
            return None;
        }
        if let State::Soliciting { best: Some(offer) } = &self.state {
            // The first RT is over: the best Advertise collected is taken.
            let offer = offer.clone();
            self.select(offer, now);
        }
        if matches!(self.state, State::Requesting(_)) && self.attempt >= REQ_MAX_RC {
            // §18.2.2: the Request exchange failed; server discovery starts over.
            self.start(State::Soliciting { best: None }, now);
        }
        self.attempt = self.attempt.saturating_add(1);
        if self.attempt == 1 {
            self.started = now;
        }
        let (kind, irt, mrt) = match self.state {
            State::Soliciting { .. } => (MessageType::Solicit, SOL_TIMEOUT, self.sol_max_rt),
            State::Requesting(_) => (MessageType::Request, REQ_TIMEOUT, REQ_MAX_RT),
            State::Informing => (MessageType::InformationRequest, INF_TIMEOUT, self.inf_max_rt),
            State::Done => return None,
        };
        self.rt = match self.attempt {
            1 => first_rt(irt, kind == MessageType::Solicit, &mut self.rng),
            _ => next_rt(self.rt, mrt, &mut self.rng),
        };
        if kind == MessageType::Solicit && self.attempt == 1 {
            self.collect_until = now.saturating_add(self.rt);
        }
        self.due = now.saturating_add(self.rt);
        let packet = self.encode(kind, now);
        Some(Transmit { packet, kind, attempt: self.attempt })
    }

    fn encode(&self, kind: MessageType, now: Duration) -> Vec<u8> {
        let elapsed = (now.saturating_sub(self.started).as_millis() / 10).min(0xffff) as u16;
        let mut p = vec![kind as u8];
        p.extend_from_slice(&self.xid.to_be_bytes()[1..]);
        let oro: Vec<u8> = match self.mode {
            Mode::Stateful => ORO_STATEFUL.iter().flat_map(|c| c.to_be_bytes()).collect(),
            Mode::Stateless => ORO_STATELESS.iter().flat_map(|c| c.to_be_bytes()).collect(),
        };
        put(&mut p, OPT_CLIENTID, &self.id.duid());
        if let State::Requesting(offer) = &self.state {
            put(&mut p, OPT_SERVERID, &offer.server_id);
        }
        put(&mut p, OPT_ELAPSED_TIME, &elapsed.to_be_bytes());
        put(&mut p, OPT_ORO, &oro);
        if kind != MessageType::InformationRequest {
            // T1 and T2 0: the client has no preference (§18.2.1, §18.2.2).
            let mut ia: Vec<u8> = self.id.iaid().to_be_bytes().into_iter().chain([0; 8]).collect();
            if let State::Requesting(offer) = &self.state {
                let mut addr = offer.address.octets().to_vec();
                addr.extend_from_slice(&[0; 8]);
                put(&mut ia, OPT_IAADDR, &addr);
            }
            put(&mut p, OPT_IA_NA, &ia);
        }
        p
    }

    /// Takes a received packet; `handle_from` also records where it came from.
    #[cfg(test)]
    pub fn handle(&mut self, data: &[u8], now: Duration) -> Event {
        self.handle_from(data, None, now)
    }

    /// Takes a received packet from `source` (the server's or relay's address), when known.
    pub fn handle_from(&mut self, data: &[u8], source: Option<Ipv6Addr>, now: Duration) -> Event {
        let packet = match Packet::decode(data) {
            Ok(p) => p,
            Err(e) => return Event::Malformed(e),
        };
        if !matches!(packet.kind, MessageType::Advertise | MessageType::Reply) {
            return Event::Ignored("not an Advertise or Reply");
        }
        if packet.xid != self.xid {
            return Event::Ignored("another transaction");
        }
        if self.attempt == 0 {
            return Event::Ignored("an answer before the question");
        }
        match &packet.client_id {
            None => return Event::Ignored("no client id"),
            Some(c) if *c != self.id.duid() => return Event::Ignored("another client's DUID"),
            Some(_) => {}
        }
        let Some(server) = packet.server_id.clone() else {
            return Event::Ignored("no server id");
        };
        // §18.2.9, §18.2.10: a server's SOL_MAX_RT and INF_MAX_RT count even in a message the
        // client otherwise discards.
        let max_rt = |code| packet.u32_option(code).filter(|v| MAX_RT_RANGE.contains(v)).map(secs);
        if let Some(v) = max_rt(OPT_SOL_MAX_RT) {
            self.sol_max_rt = v;
        }
        if let Some(v) = max_rt(OPT_INF_MAX_RT).filter(|_| packet.kind == MessageType::Reply) {
            self.inf_max_rt = v;
        }
        let iaid = self.id.iaid();
        match (&self.state, packet.kind) {
            (State::Soliciting { best }, MessageType::Advertise) => {
                if packet.failure(iaid).is_some() {
                    return Event::Ignored("advertise reports a failure status");
                }
                let Some((_, addr)) = packet.offered(iaid) else {
                    return Event::Ignored("advertise without a usable address");
                };
                let offer = Offer { server_id: server, preference: packet.preference, address: addr.address };
                let event = |offer: &Offer, selected| Event::Advertised {
                    server: offer.server_id.clone(),
                    address: offer.address,
                    preference: offer.preference,
                    selected,
                };
                let better = best.as_ref().is_none_or(|b| offer.preference > b.preference);
                if offer.preference == 255 || now >= self.collect_until {
                    let chosen = match best {
                        Some(b) if !better => b.clone(),
                        _ => offer,
                    };
                    self.select(chosen.clone(), now);
                    event(&chosen, true)
                } else if better {
                    let e = event(&offer, false);
                    self.state = State::Soliciting { best: Some(offer) };
                    e
                } else {
                    Event::Ignored("a more preferred advertise is held")
                }
            }
            (State::Requesting(offer), MessageType::Reply) => {
                if server != offer.server_id {
                    return Event::Ignored("reply from another server");
                }
                if let Some(s) = packet.failure(iaid) {
                    let e = Event::Failed { status: s.code, message: s.message.clone() };
                    self.start(State::Soliciting { best: None }, now);
                    return e;
                }
                let Some((ia, addr)) = packet.offered(iaid) else {
                    self.start(State::Soliciting { best: None }, now);
                    // An address's own status (NotOnLink, say) says more than "none usable".
                    let status = packet
                        .ia_na
                        .iter()
                        .filter(|ia| ia.iaid == iaid)
                        .flat_map(|ia| &ia.addresses)
                        .filter_map(|a| a.status.as_ref())
                        .find(|s| s.code != STATUS_SUCCESS);
                    return match status {
                        Some(s) => Event::Failed { status: s.code, message: s.message.clone() },
                        None => Event::Failed {
                            status: STATUS_NO_ADDRS_AVAIL,
                            message: "the reply holds no usable address".to_owned(),
                        },
                    };
                };
                let lease = Lease6::new(ia, addr, packet.info(source));
                self.state = State::Done;
                Event::Bound(lease)
            }
            (State::Informing, MessageType::Reply) => {
                if let Some(s) = packet.status.as_ref().filter(|s| s.code != STATUS_SUCCESS) {
                    let e = Event::Failed { status: s.code, message: s.message.clone() };
                    self.start(State::Informing, now);
                    return e;
                }
                self.state = State::Done;
                Event::Informed(packet.info(source))
            }
            _ => Event::Ignored("not expected in this state"),
        }
    }

    /// Takes `offer`: a Request is due now, in a new exchange.
    fn select(&mut self, offer: Offer, now: Duration) {
        self.start(State::Requesting(offer), now);
    }

    /// A new exchange in `state` with a new transaction id, its first message due now.
    fn start(&mut self, state: State, now: Duration) {
        self.xid = new_xid(&mut self.rng);
        self.state = state;
        self.attempt = 0;
        self.due = now;
        self.collect_until = Duration::MAX;
    }
}

fn put(p: &mut Vec<u8>, code: u16, value: &[u8]) {
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(&(value.len() as u16).to_be_bytes());
    p.extend_from_slice(value);
}

/// RAND*`base`, RAND uniform in [-0.1, +0.1] in steps of 0.0001, or in (0, +0.1] when `positive`.
fn jitter(base: Duration, positive: bool, rng: &mut u64) -> (Duration, bool) {
    let r = xorshift(rng);
    let (magnitude, negative) = match positive {
        true => (1 + r % 1000, false),
        false => {
            let v = (r % 2001) as i64 - 1000;
            (v.unsigned_abs(), v < 0)
        }
    };
    let nanos = base.as_nanos() * u128::from(magnitude) / 10_000;
    (Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64), negative)
}

fn add_jitter(base: Duration, positive: bool, rng: &mut u64) -> Duration {
    match jitter(base, positive, rng) {
        (j, true) => base.saturating_sub(j),
        (j, false) => base.saturating_add(j),
    }
}

/// The first RT: IRT + RAND*IRT, RAND > 0 for the first Solicit (§15, §18.2.1).
pub fn first_rt(irt: Duration, solicit: bool, rng: &mut u64) -> Duration {
    add_jitter(irt, solicit, rng)
}

/// The next RT: 2*RTprev + RAND*RTprev; past MRT (when not 0), MRT + RAND*MRT (§15).
pub fn next_rt(prev: Duration, mrt: Duration, rng: &mut u64) -> Duration {
    let rt = match jitter(prev, false, rng) {
        (j, true) => prev.saturating_mul(2).saturating_sub(j),
        (j, false) => prev.saturating_mul(2).saturating_add(j),
    };
    match mrt.is_zero() || rt <= mrt {
        true => rt,
        false => add_jitter(mrt, false, rng),
    }
}

fn new_xid(rng: &mut u64) -> u32 {
    (xorshift(rng) & 0xff_ffff) as u32
}

#[cfg(test)]
mod tests;
