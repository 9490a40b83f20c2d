//! A DHCPv4 client (RFC 2131, options from RFC 2132 and RFC 3442) as a sans-IO state machine: it is
//! given packets and the time, and says what to send and when. The network stage owns the socket
//! and the clock; everything here is tested on the host with recorded packets.
//!
//! It implements what a boot needs, INIT -> SELECTING -> REQUESTING -> BOUND, with the RFC's
//! randomized exponential retransmission. It deliberately does not renew or rebind: the lease is
//! written to `/run/netinit/lease` and the booted system's own client takes over.

use std::net::Ipv4Addr;
use std::time::Duration;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

const COOKIE: [u8; 4] = [99, 130, 83, 99];
const FIXED_LEN: usize = 236;
/// BOOTP's minimum message size; some relays drop shorter packets.
const MIN_LEN: usize = 300;

// Option codes, RFC 2132 and RFC 3442.
const OPT_PAD: u8 = 0;
const OPT_SUBNET_MASK: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_HOSTNAME: u8 = 12;
const OPT_DOMAIN: u8 = 15;
const OPT_MTU: u8 = 26;
const OPT_BROADCAST: u8 = 28;
const OPT_NTP: u8 = 42;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_LEASE_TIME: u8 = 51;
const OPT_OVERLOAD: u8 = 52;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMETERS: u8 = 55;
const OPT_MESSAGE: u8 = 56;
const OPT_MAX_SIZE: u8 = 57;
const OPT_RENEWAL_TIME: u8 = 58;
const OPT_REBINDING_TIME: u8 = 59;
const OPT_CLIENT_ID: u8 = 61;
const OPT_DOMAIN_SEARCH: u8 = 119;
const OPT_CLASSLESS_ROUTES: u8 = 121;
const OPT_END: u8 = 255;

/// Search domains passed on, at most: resolvers read no more (glibc used to stop at 6).
const MAX_SEARCH: usize = 32;

/// What the client asks servers for (option 55).
const PARAMETER_REQUEST_LIST: [u8; 12] = [
    OPT_SUBNET_MASK,
    OPT_ROUTER,
    OPT_DNS,
    OPT_HOSTNAME,
    OPT_DOMAIN,
    OPT_MTU,
    OPT_BROADCAST,
    OPT_NTP,
    OPT_LEASE_TIME,
    OPT_SERVER_ID,
    OPT_DOMAIN_SEARCH,
    OPT_CLASSLESS_ROUTES,
];

/// DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl MessageType {
    fn from_u8(v: u8) -> Option<Self> {
        use MessageType::*;
        [Discover, Offer, Request, Decline, Ack, Nak, Release, Inform].into_iter().find(|t| *t as u8 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            MessageType::Discover => "DISCOVER",
            MessageType::Offer => "OFFER",
            MessageType::Request => "REQUEST",
            MessageType::Decline => "DECLINE",
            MessageType::Ack => "ACK",
            MessageType::Nak => "NAK",
            MessageType::Release => "RELEASE",
            MessageType::Inform => "INFORM",
        }
    }
}

/// A route from option 121 (or 3, as a default route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

/// What a server's ACK gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub server: Ipv4Addr,
    /// Option 121 when present (RFC 3442: it then replaces option 3), else a default route per router.
    pub routes: Vec<Route>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    /// Option 119's domain search list (RFC 3397).
    pub search: Vec<String>,
    pub hostname: Option<String>,
    pub mtu: Option<u16>,
    pub lease_time: Option<Duration>,
    /// T1 and T2 (options 58 and 59), when the server gives them.
    pub renew_time: Option<Duration>,
    pub rebind_time: Option<Duration>,
    /// Option 42's NTP servers.
    pub ntp: Vec<Ipv4Addr>,
    /// What the server sent that netinit refused to pass on to the booted system, each saying why.
    pub refused: Vec<String>,
}

/// Why a received packet was not used. Every variant is a normal event on a busy network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    TooShort(usize),
    NotEthernet,
    NoCookie,
    /// An option runs past the end of its field.
    Truncated(u8),
    NoMessageType,
}

/// A decoded BOOTP/DHCP message: the fixed fields that matter and the options, with repeated
/// options concatenated (RFC 3396) and overloaded `file`/`sname` fields read (option 52).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub op: u8,
    pub xid: u32,
    pub yiaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    pub kind: MessageType,
    options: Vec<(u8, Vec<u8>)>,
}

impl Packet {
    pub fn decode(data: &[u8]) -> Result<Packet, Malformed> {
        if data.len() < FIXED_LEN + COOKIE.len() {
            return Err(Malformed::TooShort(data.len()));
        }
        if data[1] != 1 || data[2] != 6 {
            return Err(Malformed::NotEthernet);
        }
        if data[FIXED_LEN..FIXED_LEN + 4] != COOKIE {
            return Err(Malformed::NoCookie);
        }
        let mut options: Vec<(u8, Vec<u8>)> = Vec::new();
        parse_options(&data[FIXED_LEN + 4..], &mut options)?;
        let overload = find(&options, OPT_OVERLOAD).and_then(|v| v.first().copied()).unwrap_or(0);
        if overload & 1 != 0 {
            parse_options(&data[108..236], &mut options)?;
        }
        if overload & 2 != 0 {
            parse_options(&data[44..108], &mut options)?;
        }
        let kind = find(&options, OPT_MESSAGE_TYPE)
            .and_then(|v| v.first().copied())
            .and_then(MessageType::from_u8)
            .ok_or(Malformed::NoMessageType)?;
        let mut chaddr = [0u8; 6];
        chaddr.copy_from_slice(&data[28..34]);
        Ok(Packet {
            op: data[0],
            xid: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            yiaddr: ipv4(&data[16..20]),
            chaddr,
            kind,
            options,
        })
    }

    pub fn option(&self, code: u8) -> Option<&[u8]> {
        find(&self.options, code)
    }

    fn ip_option(&self, code: u8) -> Option<Ipv4Addr> {
        self.option(code).filter(|v| v.len() >= 4).map(ipv4)
    }

    /// A 32-bit count of seconds.
    fn seconds(&self, code: u8) -> Option<Duration> {
        let v = self.option(code).filter(|v| v.len() == 4)?;
        Some(Duration::from_secs(u64::from(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))))
    }

    fn ip_list(&self, code: u8) -> Vec<Ipv4Addr> {
        self.option(code).map(|v| v.chunks_exact(4).map(ipv4).collect()).unwrap_or_default()
    }

    fn text(&self, code: u8) -> Option<String> {
        let v = self.option(code)?;
        let v = v.split(|&b| b == 0).next().unwrap_or(v);
        let s = String::from_utf8_lossy(v).trim().to_owned();
        (!s.is_empty() && s.chars().all(|c| c.is_ascii_graphic())).then_some(s)
    }

    pub fn server_id(&self) -> Option<Ipv4Addr> {
        self.ip_option(OPT_SERVER_ID)
    }

    /// The server's explanation in a NAK (option 56), if any.
    pub fn message(&self) -> Option<String> {
        self.option(OPT_MESSAGE).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The lease an ACK describes. Names that are not RFC 1123 host names are dropped, and said so
    /// in [`Lease::refused`]: they end up in `/etc/hostname` and `/etc/resolv.conf`.
    pub fn lease(&self) -> Lease {
        let prefix = self
            .ip_option(OPT_SUBNET_MASK)
            .map(u32::from)
            .filter(|m| *m != 0 && m.leading_ones() + m.trailing_zeros() == 32)
            .map_or_else(|| crate::cmdline::classful_prefix(self.yiaddr), |m| m.leading_ones() as u8);
        let routes = match self.option(OPT_CLASSLESS_ROUTES).map(classless_routes) {
            Some(Some(routes)) if !routes.is_empty() => routes,
            _ => self
                .ip_list(OPT_ROUTER)
                .into_iter()
                .take(1)
                .map(|gateway| Route { destination: Ipv4Addr::UNSPECIFIED, prefix: 0, gateway })
                .collect(),
        };
        let mut refused = Vec::new();
        let mut name = |code: u8, what: &str, value: Option<String>| match value {
            Some(v) if !crate::cmdline::valid_hostname(&v) => {
                refused.push(format!("{what} {v:?} (option {code}): not a valid host name"));
                None
            }
            v => v,
        };
        let hostname = name(OPT_HOSTNAME, "host name", self.text(OPT_HOSTNAME));
        let domain = name(OPT_DOMAIN, "domain", self.text(OPT_DOMAIN));
        let offered = self.option(OPT_DOMAIN_SEARCH).and_then(domain_search).unwrap_or_default();
        let mut search: Vec<String> =
            offered.into_iter().filter_map(|v| name(OPT_DOMAIN_SEARCH, "search domain", Some(v))).collect();
        if search.len() > MAX_SEARCH {
            let beyond = search.len() - MAX_SEARCH;
            refused.push(format!("{beyond} search domains beyond the first {MAX_SEARCH} (option 119)"));
            search.truncate(MAX_SEARCH);
        }
        Lease {
            address: self.yiaddr,
            prefix,
            server: self.server_id().unwrap_or(Ipv4Addr::UNSPECIFIED),
            routes,
            dns: self.ip_list(OPT_DNS),
            domain,
            search,
            hostname,
            mtu: self
                .option(OPT_MTU)
                .filter(|v| v.len() == 2)
                .map(|v| u16::from_be_bytes([v[0], v[1]]))
                .filter(|&m| m >= 576),
            lease_time: self
                .option(OPT_LEASE_TIME)
                .filter(|v| v.len() == 4)
                .map(|v| Duration::from_secs(u64::from(u32::from_be_bytes([v[0], v[1], v[2], v[3]])))),
            renew_time: self.seconds(OPT_RENEWAL_TIME),
            rebind_time: self.seconds(OPT_REBINDING_TIME),
            ntp: self.ip_list(OPT_NTP),
            refused,
        }
    }
}

/// The address in the first four bytes; callers check the length, and fewer give 0.0.0.0.
fn ipv4(b: &[u8]) -> Ipv4Addr {
    match b {
        [a, b, c, d, ..] => Ipv4Addr::new(*a, *b, *c, *d),
        _ => Ipv4Addr::UNSPECIFIED,
    }
}

fn find(options: &[(u8, Vec<u8>)], code: u8) -> Option<&[u8]> {
    options.iter().find(|(c, _)| *c == code).map(|(_, v)| v.as_slice())
}

fn parse_options(mut data: &[u8], out: &mut Vec<(u8, Vec<u8>)>) -> Result<(), Malformed> {
    while let Some((&code, rest)) = data.split_first() {
        match code {
            OPT_PAD => data = rest,
            OPT_END => return Ok(()),
            _ => {
                let (&len, rest) = rest.split_first().ok_or(Malformed::Truncated(code))?;
                let value = rest.get(..usize::from(len)).ok_or(Malformed::Truncated(code))?;
                match out.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, existing)) => existing.extend_from_slice(value),
                    None => out.push((code, value.to_vec())),
                }
                data = &rest[usize::from(len)..];
            }
        }
    }
    Ok(())
}

/// Option 121: a sequence of (prefix length, significant octets of the destination, router).
/// `None` when malformed, in which case the RFC says to ignore the option.
fn classless_routes(mut v: &[u8]) -> Option<Vec<Route>> {
    let mut routes = Vec::new();
    while let Some((&prefix, rest)) = v.split_first() {
        if prefix > 32 {
            return None;
        }
        let n = usize::from(prefix).div_ceil(8);
        let dest = rest.get(..n)?;
        let gw = rest.get(n..n + 4)?;
        let mut d = [0u8; 4];
        d[..n].copy_from_slice(dest);
        // Bits past the prefix are cleared: the kernel refuses a route that has them.
        let destination = Ipv4Addr::from(u32::from_be_bytes(d) & super::netlink::prefix_mask(prefix));
        routes.push(Route { destination, prefix, gateway: ipv4(gw) });
        v = &rest[n + 4..];
    }
    Some(routes)
}

/// Option 119: DNS names in wire format, with RFC 1035 compression pointers into the option itself
/// (RFC 3397). `None` when malformed, in which case the option is ignored.
pub fn domain_search(data: &[u8]) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let mut labels: Vec<String> = Vec::new();
        let mut pos = at;
        let mut next = None; // where the next name starts, once a pointer was followed
        let mut jumps = 0;
        loop {
            let len = *data.get(pos)? as usize;
            match len {
                0 => {
                    next.get_or_insert(pos + 1);
                    break;
                }
                l if l & 0xC0 == 0xC0 => {
                    let target = ((l & 0x3F) << 8) | *data.get(pos + 1)? as usize;
                    next.get_or_insert(pos + 2);
                    jumps += 1;
                    if jumps > 32 || target >= data.len() {
                        return None;
                    }
                    pos = target;
                }
                l if l < 64 => {
                    let label = data.get(pos + 1..pos + 1 + l)?;
                    if !label.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_') {
                        return None;
                    }
                    labels.push(String::from_utf8_lossy(label).into_owned());
                    pos += 1 + l;
                }
                _ => return None,
            }
        }
        // RFC 1035 §2.3.4: 255 bytes on the wire, 253 as text; a longer name is no name.
        let name = labels.join(".");
        if name.len() > 253 {
            return None;
        }
        if !labels.is_empty() {
            names.push(name);
        }
        at = next?;
    }
    Some(names)
}

/// What the client needs to say who it is.
#[derive(Debug, Clone)]
pub struct Identity {
    pub mac: [u8; 6],
    /// Option 12, when the cmdline names one.
    pub hostname: Option<String>,
    /// Option 61's type and value from `ip=dhcp,<type>,<id>`; by default type 1 (Ethernet) and the MAC.
    pub client_id: Option<(u8, Vec<u8>)>,
}

/// Builds a request from this client. `secs` is the time since the client started.
fn encode(id: &Identity, xid: u32, secs: u16, kind: MessageType, extra: &[(u8, &[u8])]) -> Vec<u8> {
    encode_from(id, xid, secs, kind, None, extra)
}

/// As [`encode`], from a client that has `ciaddr` (RENEWING and REBINDING, RFC 2131 4.3.2): the
/// address in `ciaddr` and no BROADCAST flag, as the client can receive unicast.
pub(super) fn encode_from(
    id: &Identity,
    xid: u32,
    secs: u16,
    kind: MessageType,
    ciaddr: Option<Ipv4Addr>,
    extra: &[(u8, &[u8])],
) -> Vec<u8> {
    let mut p = vec![0u8; FIXED_LEN];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[8..10].copy_from_slice(&secs.to_be_bytes());
    match ciaddr {
        Some(a) => p[12..16].copy_from_slice(&a.octets()),
        // BROADCAST: no address to receive unicast on yet.
        None => p[10..12].copy_from_slice(&0x8000u16.to_be_bytes()),
    }
    p[28..34].copy_from_slice(&id.mac);
    p.extend_from_slice(&COOKIE);
    let client_id: Vec<u8> = match &id.client_id {
        Some((kind, value)) => std::iter::once(*kind).chain(value.iter().copied()).collect(),
        None => std::iter::once(1u8).chain(id.mac).collect(),
    };
    let kind = [kind as u8];
    let mut opts: Vec<(u8, &[u8])> = vec![(OPT_MESSAGE_TYPE, &kind), (OPT_CLIENT_ID, &client_id)];
    opts.extend_from_slice(extra);
    let max_size = 1500u16.to_be_bytes();
    opts.push((OPT_MAX_SIZE, &max_size));
    if let Some(h) = id.hostname.as_deref() {
        opts.push((OPT_HOSTNAME, h.as_bytes()));
    }
    opts.push((OPT_PARAMETERS, &PARAMETER_REQUEST_LIST));
    for (code, value) in opts {
        for chunk in value.chunks(255) {
            p.push(code);
            p.push(chunk.len() as u8);
            p.extend_from_slice(chunk);
        }
    }
    p.push(OPT_END);
    if p.len() < MIN_LEN {
        p.resize(MIN_LEN, OPT_PAD);
    }
    p
}

/// A message the client wants broadcast now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub packet: Vec<u8>,
    pub kind: MessageType,
    /// 1 for the first send of this message, 2 for its first retransmission...
    pub attempt: u32,
}

/// What a received packet did.
// A few of these are made per lease: boxing the lease would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Not for us, or not what we wait for: no change.
    Ignored(&'static str),
    /// Unreadable: no change.
    Malformed(Malformed),
    /// An offer was taken; a REQUEST is due.
    Offered {
        server: Ipv4Addr,
        address: Ipv4Addr,
    },
    /// The server refused; the client starts over with DISCOVER.
    Nak {
        server: Ipv4Addr,
        message: Option<String>,
    },
    Bound(Lease),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Selecting,
    Requesting { server: Ipv4Addr, address: Ipv4Addr },
    Bound,
}

/// REQUESTs sent for one offer before starting over with DISCOVER.
const MAX_REQUESTS: u32 = 4;

pub struct Client {
    id: Identity,
    xid: u32,
    rng: u64,
    started: Duration,
    state: State,
    /// Sends of the current message so far.
    attempt: u32,
    /// When the next (re)transmission is due; `ZERO` means now.
    due: Duration,
}

impl Client {
    /// A client that starts at `now` (any monotonic clock), with randomness from `seed`.
    pub fn new(id: Identity, seed: u64, now: Duration) -> Client {
        let mut rng = seed | 1;
        let xid = xorshift(&mut rng) as u32;
        Client { id, xid, rng, started: now, state: State::Selecting, attempt: 0, due: now }
    }

    #[cfg(test)]
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// When [`Client::poll_transmit`] next has something to send.
    pub fn next_deadline(&self) -> Duration {
        self.due
    }

    /// The message to broadcast now, if one is due; it then schedules the retransmission:
    /// 4, 8, 16, 32, 64, 64... seconds, each ±1 s at random (RFC 2131 §4.1).
    pub fn poll_transmit(&mut self, now: Duration) -> Option<Transmit> {
        if now < self.due || self.state == State::Bound {
            return None;
        }
        if let State::Requesting { .. } = self.state {
            if self.attempt >= MAX_REQUESTS {
                self.state = State::Selecting;
                self.attempt = 0;
            }
        }
        self.attempt = self.attempt.saturating_add(1);
        let secs = now.saturating_sub(self.started).as_secs().min(u64::from(u16::MAX)) as u16;
        let (kind, packet) = match self.state {
            State::Selecting => {
                (MessageType::Discover, encode(&self.id, self.xid, secs, MessageType::Discover, &[]))
            }
            State::Requesting { server, address } => (
                MessageType::Request,
                encode(
                    &self.id,
                    self.xid,
                    secs,
                    MessageType::Request,
                    &[(OPT_REQUESTED_IP, &address.octets()), (OPT_SERVER_ID, &server.octets())],
                ),
            ),
            State::Bound => return None,
        };
        self.due = now + retransmit_delay(self.attempt, &mut self.rng);
        Some(Transmit { packet, kind, attempt: self.attempt })
    }

    /// Takes a received packet.
    pub fn handle(&mut self, data: &[u8], now: Duration) -> Event {
        let packet = match Packet::decode(data) {
            Ok(p) => p,
            Err(e) => return Event::Malformed(e),
        };
        if packet.op != 2 {
            return Event::Ignored("not a reply");
        }
        if packet.xid != self.xid {
            return Event::Ignored("another transaction");
        }
        if packet.chaddr != self.id.mac {
            return Event::Ignored("another client's hardware address");
        }
        match (&self.state, packet.kind) {
            (State::Selecting, MessageType::Offer) => {
                let Some(server) = packet.server_id() else {
                    return Event::Ignored("offer without server id");
                };
                if packet.yiaddr.is_unspecified() || packet.yiaddr.is_broadcast() {
                    return Event::Ignored("offer without a usable address");
                }
                self.state = State::Requesting { server, address: packet.yiaddr };
                self.attempt = 0;
                self.due = now;
                Event::Offered { server, address: packet.yiaddr }
            }
            (State::Requesting { server, address }, MessageType::Ack) => {
                if packet.server_id().is_some_and(|s| s != *server) {
                    return Event::Ignored("ack from another server");
                }
                if packet.yiaddr != *address {
                    return Event::Ignored("ack for another address");
                }
                self.state = State::Bound;
                Event::Bound(packet.lease())
            }
            (State::Requesting { server, .. }, MessageType::Nak) => {
                if packet.server_id().is_some_and(|s| s != *server) {
                    return Event::Ignored("nak from another server");
                }
                let server = *server;
                self.restart(now);
                Event::Nak { server, message: packet.message() }
            }
            _ => Event::Ignored("not expected in this state"),
        }
    }

    /// Back to INIT with a new transaction id, sending DISCOVER at once.
    fn restart(&mut self, now: Duration) {
        self.xid = xorshift(&mut self.rng) as u32;
        self.state = State::Selecting;
        self.attempt = 0;
        self.due = now;
    }
}

/// The wait after the `attempt`-th send: 2^(attempt+1) s capped at 64 s, plus a uniform -1..+1 s.
pub fn retransmit_delay(attempt: u32, rng: &mut u64) -> Duration {
    let base_ms = 1000u64 << attempt.saturating_add(1).min(6);
    let jitter = xorshift(rng) % 2001;
    Duration::from_millis(base_ms - 1000 + jitter)
}

/// xorshift64: fast, and plenty for transaction ids, jitter and SNTP's origin timestamps; every
/// sans-IO client of `net/` draws from it. A non-zero state never becomes zero.
pub(super) fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

#[cfg(test)]
mod tests;
