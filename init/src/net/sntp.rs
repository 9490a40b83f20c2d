//! An SNTP client (RFC 4330, with RFC 5905's packet format and checks) as a sans-IO state machine:
//! it is given datagrams and the time, and says what to send, to whom and when. The network stage
//! owns the socket and both clocks; everything here is tested on the host, packet by packet.
//!
//! It asks each server in turn, a fixed number of times with a growing timeout, and stops at the
//! first reply it can use, or gives up saying why for each server. It measures the round trip on the
//! monotonic clock and reports the server's time corrected by half of it: the local wall clock may be
//! years off (it is at best the build's epoch, see `clock.rs`), so RFC 4330's clock offset, which
//! needs it, is not computed. It deliberately does not discipline the clock, poll, average several
//! servers, or authenticate (no NTS, no symmetric keys): one step of the clock at boot, good to the
//! round trip, which is what TLS's certificate dates need.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::dhcp::xorshift;

/// The NTP port, on the server (RFC 5905 §7.2).
pub const PORT: u16 = 123;
/// The size of a request, and the least a reply may have: the header without extensions or MAC.
pub const PACKET_LEN: usize = 48;
/// How long each try to a server waits for its reply; one try per entry.
pub const TIMEOUTS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];
/// Servers asked, at most: the first ones given, once each. With [`TIMEOUTS`] the client gives up
/// within `MAX_SERVERS * 3 s` of its first request.
pub const MAX_SERVERS: usize = 4;
/// NTP's MAXDISP: a root delay or root dispersion above it says the server's time is worthless.
pub const MAX_ROOT: Duration = Duration::from_secs(16);

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
const NTP_TO_UNIX: i128 = 2_208_988_800;
/// Seconds in an NTP era: the 32-bit seconds field wraps on 2036-02-07.
const ERA: i128 = 1 << 32;

const MODE_CLIENT: u8 = 3;
const MODE_SERVER: u8 = 4;
const VERSION: u8 = 4;
const LEAP_ALARM: u8 = 3;
/// Stratum 16 and above: the server is not synchronized (RFC 5905 §7.3).
const UNSYNCHRONIZED: u8 = 16;

/// Converts an NTP seconds field to seconds since 1970, choosing the era that puts the result at
/// or after `pivot` and nearest to it, so that 2036's wrap is no step back to 1900. With the build's
/// epoch as the pivot ([`crate::clock::epoch`]) this is right for 136 years after the build; a time
/// before the pivot, which only a wrong server sends, is taken as the next era's.
pub fn ntp_to_unix(ntp_secs: u32, pivot: u64) -> u64 {
    let base = i128::from(ntp_secs) - NTP_TO_UNIX;
    let pivot = i128::from(pivot);
    // The least era e with base + e * ERA >= pivot (e may be negative for a pivot before 1970's era 0).
    let era = (pivot - base + ERA - 1).div_euclid(ERA);
    u64::try_from(base + era * ERA).unwrap_or(u64::MAX)
}

/// A 64-bit NTP timestamp (32.32 fixed point) as time since 1970, the era chosen by [`ntp_to_unix`].
pub fn timestamp_to_unix(ts: u64, pivot: u64) -> Duration {
    let secs = ntp_to_unix((ts >> 32) as u32, pivot);
    Duration::new(secs, fraction_nanos(ts as u32))
}

/// The nanoseconds of a 32-bit binary fraction of a second.
fn fraction_nanos(frac: u32) -> u32 {
    ((u64::from(frac) * 1_000_000_000) >> 32) as u32
}

/// A 32.32 fixed-point span as a `Duration`.
fn fixed_to_duration(d: u64) -> Duration {
    Duration::new(d >> 32, fraction_nanos(d as u32))
}

/// NTP's short format (16.16 fixed point, root delay and dispersion) as a `Duration`.
fn short_to_duration(v: u32) -> Duration {
    fixed_to_duration(u64::from(v) << 16)
}

/// A client request: LI 0, VN 4, mode 3, and only the transmit timestamp set, to a random value,
/// which the server echoes as the origin timestamp (RFC 5905 §8, as chrony and systemd-timesyncd do).
pub fn request(origin: u64) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0] = (VERSION << 3) | MODE_CLIENT;
    p[40..48].copy_from_slice(&origin.to_be_bytes());
    p
}

/// The header of an NTP packet (RFC 5905 §7.3), fields as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub leap: u8,
    pub version: u8,
    pub mode: u8,
    pub stratum: u8,
    pub root_delay: u32,
    pub root_dispersion: u32,
    /// For stratum 0, the kiss code.
    pub reference_id: [u8; 4],
    pub origin: u64,
    pub receive: u64,
    pub transmit: u64,
}

impl Header {
    /// The header of `data`, or `None` when it is shorter than [`PACKET_LEN`]. Extensions and a
    /// MAC after it are ignored.
    pub fn decode(data: &[u8]) -> Option<Header> {
        let h = data.get(..PACKET_LEN)?;
        let u32_at = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
        Some(Header {
            leap: h[0] >> 6,
            version: (h[0] >> 3) & 7,
            mode: h[0] & 7,
            stratum: h[1],
            root_delay: u32_at(4),
            root_dispersion: u32_at(8),
            reference_id: [h[12], h[13], h[14], h[15]],
            origin: u64_at(24),
            receive: u64_at(32),
            transmit: u64_at(40),
        })
    }
}

/// A kiss-o'-death code (RFC 5905 §7.4): four ASCII characters in the reference id of a stratum-0 reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kiss(pub [u8; 4]);

impl Kiss {
    /// DENY and RSTR: the server refuses this client, which must stop asking it (RFC 4330 §8).
    pub fn stops(self) -> bool {
        &self.0 == b"DENY" || &self.0 == b"RSTR"
    }
}

impl fmt::Display for Kiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            let c = if b.is_ascii_graphic() { char::from(b) } else { '?' };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Why a datagram gave no time. Those up to [`Reject::Origin`] are no answer to our request and
/// leave it waiting; the others are the server's answer, and end the try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// No request is waiting for a reply: none sent yet, or the client is done.
    NotWaiting,
    /// Not from the server the request went to (which is given).
    WrongAddress {
        asked: IpAddr,
    },
    /// Fewer than [`PACKET_LEN`] bytes.
    TooShort(usize),
    /// Not mode 4 (server).
    Mode(u8),
    /// Not NTP version 3 or 4.
    Version(u8),
    /// The origin timestamp is not our request's transmit timestamp: a stale, duplicated or forged packet.
    Origin,
    /// Stratum 0: a kiss-o'-death.
    Kiss(Kiss),
    /// The transmit timestamp is zero: the server sent no time.
    ZeroTransmit,
    /// Stratum 16 or more: the server is not synchronized.
    Unsynchronized(u8),
    /// Leap indicator 3: the server's clock is not synchronized.
    LeapAlarm,
    RootDelay(Duration),
    RootDispersion(Duration),
}

impl Reject {
    /// Whether the packet was the server's answer to our request (its origin timestamp matched).
    pub fn answered(&self) -> bool {
        !matches!(
            self,
            Reject::NotWaiting
                | Reject::WrongAddress { .. }
                | Reject::TooShort(_)
                | Reject::Mode(_)
                | Reject::Version(_)
                | Reject::Origin
        )
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::NotWaiting => write!(f, "no request is waiting for a reply"),
            Reject::WrongAddress { asked } => write!(f, "not from {asked}, the server asked"),
            Reject::TooShort(n) => write!(f, "{n} bytes, fewer than {PACKET_LEN}"),
            Reject::Mode(m) => write!(f, "mode {m}, not {MODE_SERVER} (server)"),
            Reject::Version(v) => write!(f, "NTP version {v}, not 3 or 4"),
            Reject::Origin => write!(f, "its origin timestamp is not our request's: no reply to it"),
            Reject::Kiss(k) if k.stops() => write!(f, "kiss-o'-death {k}: not asking this server again"),
            Reject::Kiss(k) => write!(f, "kiss-o'-death {k}"),
            Reject::ZeroTransmit => write!(f, "a zero transmit timestamp"),
            Reject::Unsynchronized(s) => write!(f, "stratum {s}: the server is not synchronized"),
            Reject::LeapAlarm => write!(f, "leap indicator 3: the server's clock is not synchronized"),
            Reject::RootDelay(d) => {
                write!(f, "root delay {:.3} s, more than {} s", d.as_secs_f64(), MAX_ROOT.as_secs())
            }
            Reject::RootDispersion(d) => {
                write!(f, "root dispersion {:.3} s, more than {} s", d.as_secs_f64(), MAX_ROOT.as_secs())
            }
        }
    }
}

/// The checks of RFC 4330 §5 and RFC 5905 §8 on a reply to the request whose transmit timestamp
/// was `origin`, in the order that keeps a forged packet from having any effect: nothing a packet
/// says is believed before its origin timestamp matched, not even a kiss-o'-death.
pub fn check(data: &[u8], origin: u64) -> Result<Header, Reject> {
    let h = Header::decode(data).ok_or(Reject::TooShort(data.len()))?;
    if h.mode != MODE_SERVER {
        return Err(Reject::Mode(h.mode));
    }
    if !(3..=4).contains(&h.version) {
        return Err(Reject::Version(h.version));
    }
    if h.origin != origin {
        return Err(Reject::Origin);
    }
    if h.stratum == 0 {
        return Err(Reject::Kiss(Kiss(h.reference_id)));
    }
    if h.transmit == 0 {
        return Err(Reject::ZeroTransmit);
    }
    if h.stratum >= UNSYNCHRONIZED {
        return Err(Reject::Unsynchronized(h.stratum));
    }
    if h.leap == LEAP_ALARM {
        return Err(Reject::LeapAlarm);
    }
    let (delay, dispersion) = (short_to_duration(h.root_delay), short_to_duration(h.root_dispersion));
    if delay > MAX_ROOT {
        return Err(Reject::RootDelay(delay));
    }
    if dispersion > MAX_ROOT {
        return Err(Reject::RootDispersion(dispersion));
    }
    Ok(h)
}

/// A request to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// To this address, port [`PORT`].
    pub server: IpAddr,
    pub packet: [u8; PACKET_LEN],
    /// 1 for the first request to this server, 2 for the second...
    pub attempt: u32,
}

/// The time a server gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Time {
    pub server: IpAddr,
    /// The wall-clock time at [`Time::at`], since the Unix epoch: the server's transmit timestamp
    /// plus half the round trip.
    pub unix: Duration,
    /// The monotonic time the reply was handled at; the caller adds what has passed since.
    pub at: Duration,
    /// The request's time out and back, less the server's time between receiving and answering.
    pub round_trip: Duration,
    pub stratum: u8,
}

impl Time {
    /// The wall-clock time at the monotonic time `now` (not before [`Time::at`]).
    pub fn unix_at(&self, now: Duration) -> Duration {
        self.unix.saturating_add(now.saturating_sub(self.at))
    }
}

/// Why a server gave no time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No reply to any of this many requests.
    NoReply { tries: u32 },
    /// Its last answer, refused.
    Refused(Reject),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NoReply { tries } => {
                let s = if *tries == 1 { "" } else { "s" };
                write!(f, "no reply to {tries} request{s}")
            }
            Failure::Refused(why) => write!(f, "refused its reply: {why}"),
        }
    }
}

/// Every server tried, and why each gave no time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaveUp {
    pub servers: Vec<(IpAddr, Failure)>,
}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.servers.is_empty() {
            return write!(f, "no SNTP server to ask");
        }
        write!(f, "no time from any SNTP server: ")?;
        for (i, (server, why)) in self.servers.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}{server}: {why}")?;
        }
        Ok(())
    }
}

/// What a received datagram did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The server's time: the client is done.
    Synced(Time),
    /// The server answered, but with nothing usable: this try is over. The next try to this server
    /// is due at the end of this one's timeout; the next server is asked at once, after this one's
    /// last try or a DENY or RSTR, which drop it. After the last server's, the client has given up
    /// ([`Client::gave_up`]).
    Refused { server: IpAddr, why: Reject },
    /// No answer to the waiting request: no change.
    Ignored { from: IpAddr, why: Reject },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Synced(t) => write!(
                f,
                "SNTP: {} (stratum {}) says {}, round trip {} ms",
                t.server,
                t.stratum,
                crate::clock::civil(t.unix.as_secs()),
                t.round_trip.as_millis()
            ),
            Event::Refused { server, why } => write!(f, "SNTP: refused {server}'s reply: {why}"),
            Event::Ignored { from, why } => write!(f, "SNTP: ignored a datagram from {from}: {why}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Server {
    address: IpAddr,
    /// Requests sent to it.
    tries: u32,
    /// Its last refused answer.
    refused: Option<Reject>,
}

/// The request waiting for its reply.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    origin: u64,
    sent: Duration,
    until: Duration,
}

#[derive(Debug, Clone)]
enum State {
    Asking,
    Synced,
    GaveUp(GaveUp),
}

pub struct Client {
    servers: Vec<Server>,
    /// The server being asked; `servers.len()` once all were.
    current: usize,
    waiting: Option<Waiting>,
    /// When [`Client::poll_transmit`] next has work: a request to send, or a timeout.
    due: Duration,
    rng: u64,
    pivot: u64,
    state: State,
}

impl Client {
    /// A client that asks `servers` in turn (the first [`MAX_SERVERS`], duplicates once), from `now`
    /// (any monotonic clock), with randomness from `seed`. NTP seconds are read in the era at or
    /// after `pivot` ([`ntp_to_unix`]), seconds since 1970: the build's epoch.
    pub fn new(servers: Vec<IpAddr>, pivot: u64, seed: u64, now: Duration) -> Client {
        let mut unique: Vec<Server> = Vec::new();
        for address in servers {
            let address = address.to_canonical();
            if unique.len() < MAX_SERVERS && !unique.iter().any(|s| s.address == address) {
                unique.push(Server { address, tries: 0, refused: None });
            }
        }
        let mut client = Client {
            servers: unique,
            current: 0,
            waiting: None,
            due: now,
            rng: seed | 1,
            pivot,
            state: State::Asking,
        };
        client.give_up_if_exhausted();
        client
    }

    /// When [`Client::poll_transmit`] must next be called: a request is due or one times out.
    /// `Duration::MAX` once done.
    pub fn next_deadline(&self) -> Duration {
        match self.state {
            State::Asking => self.due,
            State::Synced | State::GaveUp(_) => Duration::MAX,
        }
    }

    /// Whether the client synced or gave up: it sends nothing more.
    pub fn is_done(&self) -> bool {
        !matches!(self.state, State::Asking)
    }

    /// Every server and why it gave no time, once the client gave up.
    pub fn gave_up(&self) -> Option<&GaveUp> {
        match &self.state {
            State::GaveUp(g) => Some(g),
            State::Asking | State::Synced => None,
        }
    }

    /// The request to send now, if one is due. A request whose timeout passed is given up first,
    /// and after the last try of the last server the client gives up and sends nothing.
    pub fn poll_transmit(&mut self, now: Duration) -> Option<Transmit> {
        if self.is_done() || now < self.due {
            return None;
        }
        if self.waiting.take().is_some() {
            self.end_try(now);
        }
        if self.is_done() || now < self.due {
            return None;
        }
        let server = self.servers.get_mut(self.current)?;
        let timeout = TIMEOUTS.get(server.tries as usize).copied().unwrap_or(Duration::ZERO);
        server.tries = server.tries.saturating_add(1);
        let origin = xorshift(&mut self.rng);
        let until = now.saturating_add(timeout);
        self.waiting = Some(Waiting { origin, sent: now, until });
        self.due = until;
        Some(Transmit { server: server.address, packet: request(origin), attempt: server.tries })
    }

    /// Takes a datagram from `from` (any port: the caller's socket decides), received at `now`.
    pub fn handle(&mut self, from: IpAddr, data: &[u8], now: Duration) -> Event {
        let from = from.to_canonical();
        let (Some(waiting), Some(server)) = (self.waiting, self.servers.get(self.current)) else {
            return Event::Ignored { from, why: Reject::NotWaiting };
        };
        if self.is_done() {
            return Event::Ignored { from, why: Reject::NotWaiting };
        }
        let asked = server.address;
        if from != asked {
            return Event::Ignored { from, why: Reject::WrongAddress { asked } };
        }
        let header = match check(data, waiting.origin) {
            Ok(h) => h,
            Err(why) if !why.answered() => return Event::Ignored { from, why },
            Err(why) => {
                self.refused(why.clone(), waiting, now);
                return Event::Refused { server: asked, why };
            }
        };
        self.waiting = None;
        self.state = State::Synced;
        // T3 - T2: the server's time between receiving and answering (across an era's end too),
        // never negative, and none when the server left T2 out.
        let turnaround = match header.receive {
            0 => Duration::ZERO,
            t2 => fixed_to_duration((header.transmit.wrapping_sub(t2) as i64).max(0) as u64),
        };
        let round_trip = now.saturating_sub(waiting.sent).saturating_sub(turnaround);
        let unix = timestamp_to_unix(header.transmit, self.pivot).saturating_add(round_trip / 2);
        Event::Synced(Time { server: asked, unix, at: now, round_trip, stratum: header.stratum })
    }

    /// The waiting request got an answer that is refused: the try is over.
    fn refused(&mut self, why: Reject, waiting: Waiting, now: Duration) {
        self.waiting = None;
        let stop = matches!(why, Reject::Kiss(k) if k.stops());
        if let Some(server) = self.servers.get_mut(self.current) {
            server.refused = Some(why);
            if stop {
                server.tries = TIMEOUTS.len() as u32;
            }
        }
        // The next try waits for this one's timeout, which is the back-off a RATE asks for; the
        // next server is asked at once.
        self.due = if stop { now } else { waiting.until.max(now) };
        self.end_try(now);
    }

    /// After a try: on to the next server when this one had all its tries; give up after the last.
    fn end_try(&mut self, now: Duration) {
        let Some(server) = self.servers.get(self.current) else { return };
        if server.tries as usize >= TIMEOUTS.len() {
            self.current += 1;
            self.due = now;
        }
        self.give_up_if_exhausted();
    }

    fn give_up_if_exhausted(&mut self) {
        if self.current < self.servers.len() {
            return;
        }
        let servers = self
            .servers
            .iter()
            .map(|s| {
                let why = match &s.refused {
                    Some(why) => Failure::Refused(why.clone()),
                    None => Failure::NoReply { tries: s.tries },
                };
                (s.address, why)
            })
            .collect();
        self.state = State::GaveUp(GaveUp { servers });
    }
}

#[cfg(test)]
mod tests;
