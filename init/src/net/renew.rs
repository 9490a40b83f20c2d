//! Keeping a DHCP lease after the boot (RFC 2131 4.4.5), as a sans-IO state machine on top of the
//! boot's client (`dhcp.rs`): BOUND until T1, then RENEWING (a REQUEST unicast to the server that
//! gave the lease), at T2 REBINDING (the REQUEST broadcast, for any server), and when the lease
//! ends without an ACK, or on a NAK, the address is given up ([`Step::Expired`]: the caller removes
//! it and the routes it added) and the client starts over with DISCOVER.
//!
//! Times are a monotonic clock that counts suspend (`CLOCK_BOOTTIME`): a machine that slept past
//! T2 or past the lease's end acts on it at the first look, rather than renew a lease it no longer
//! holds.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::dhcp::{self, encode_from, xorshift, Client, Event, Identity, Lease, MessageType, Packet};

/// The shortest wait between retransmissions while RENEWING or REBINDING (RFC 2131 4.4.5).
pub const MIN_RETRANSMIT: Duration = Duration::from_secs(60);
/// A lease with no lease time (an infinite one, or a server that gave none) is still checked
/// this often: the server may be gone, or have been replaced.
const NO_LEASE_TIME: Duration = Duration::from_secs(86_400);

/// The times of one lease, from when it was bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub renew: Duration,
    pub rebind: Duration,
    pub expiry: Duration,
}

impl Times {
    /// T1 (option 58, else half the lease), T2 (option 59, else 7/8 of it) and the lease's end,
    /// from `bound_at`; inconsistent values from a server are put in order (T1 <= T2 <= end).
    pub fn of(lease: &Lease, bound_at: Duration) -> Times {
        let length = lease.lease_time.unwrap_or(NO_LEASE_TIME);
        let rebind = lease.rebind_time.unwrap_or(length * 7 / 8).min(length);
        let renew = lease.renew_time.unwrap_or(length / 2).min(rebind);
        Times { renew: bound_at + renew, rebind: bound_at + rebind, expiry: bound_at + length }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Bound,
    Renewing,
    Rebinding,
    /// The lease is gone: DISCOVER as at boot.
    Init,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Bound => "bound",
            Phase::Renewing => "renewing",
            Phase::Rebinding => "rebinding",
            Phase::Init => "init",
        }
    }
}

/// What the caller does now.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send `packet` to `to` (unicast, port 67), or broadcast it when `to` is `None`.
    Send { packet: Vec<u8>, to: Option<Ipv4Addr>, kind: MessageType, phase: Phase },
    /// The lease ended (no ACK by its end, or a NAK): remove `lease`'s address and routes.
    Expired { lease: Lease, why: &'static str },
}

/// What a received packet did.
// A few of these are made per renewal: boxing the lease would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    Ignored(&'static str),
    Malformed(dhcp::Malformed),
    /// The lease was extended (by the same server, or in REBINDING perhaps another): apply its
    /// facts, for `Times`' length from now.
    Renewed(Lease),
    /// The server refused the renewal: the address must go ([`Step::Expired`] follows at once).
    Nak {
        server: Ipv4Addr,
    },
    /// After the lease ended: a new one (its address may differ): apply it.
    Bound(Lease),
}

pub struct Keeper {
    id: Identity,
    lease: Lease,
    times: Times,
    phase: Phase,
    xid: u32,
    rng: u64,
    /// When the current exchange started, for the `secs` field.
    started: Duration,
    /// The next retransmission; `None`: nothing sent in this phase yet.
    due: Option<Duration>,
    /// A NAK's expiry to report at the next poll.
    nak: bool,
    /// INIT's client, once the lease is gone.
    init: Option<Client>,
    seed: u64,
}

impl Keeper {
    /// Keeps `lease`, bound at `bound_at` (the boot's DHCP), for `id`.
    pub fn new(id: Identity, lease: Lease, bound_at: Duration, seed: u64) -> Keeper {
        let mut rng = seed | 1;
        let xid = xorshift(&mut rng) as u32;
        let times = Times::of(&lease, bound_at);
        Keeper {
            id,
            lease,
            times,
            phase: Phase::Bound,
            xid,
            rng,
            started: bound_at,
            due: None,
            nak: false,
            init: None,
            seed,
        }
    }

    #[cfg(test)]
    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    pub fn times(&self) -> Times {
        self.times
    }

    /// When [`Keeper::poll`] next has something to do.
    pub fn next_deadline(&self) -> Duration {
        if self.nak {
            return Duration::ZERO;
        }
        match (self.phase, &self.init) {
            (Phase::Init, Some(c)) => c.next_deadline(),
            (Phase::Bound, _) => self.times.renew,
            (Phase::Renewing, _) => self.due.unwrap_or(Duration::ZERO).min(self.times.rebind),
            (Phase::Rebinding, _) => self.due.unwrap_or(Duration::ZERO).min(self.times.expiry),
            (Phase::Init, None) => Duration::ZERO,
        }
    }

    /// What to do at `now`: the phase follows the clock first (a jump past T2 or the lease's end
    /// goes straight there), then a due (re)transmission.
    pub fn poll(&mut self, now: Duration) -> Option<Step> {
        if self.nak {
            self.nak = false;
            return Some(self.expire(now, "the server refused the renewal (NAK)"));
        }
        if self.phase != Phase::Init && now >= self.times.expiry {
            return Some(self.expire(now, "it ended without an answer"));
        }
        let phase = if now >= self.times.rebind {
            Phase::Rebinding
        } else if now >= self.times.renew {
            Phase::Renewing
        } else {
            Phase::Bound
        };
        if self.phase != Phase::Init && phase != self.phase {
            self.phase = phase;
            self.due = None;
            self.started = now;
            self.xid = xorshift(&mut self.rng) as u32;
        }
        match self.phase {
            Phase::Bound => None,
            Phase::Renewing | Phase::Rebinding => {
                if self.due.is_some_and(|d| now < d) {
                    return None;
                }
                let end = if self.phase == Phase::Renewing { self.times.rebind } else { self.times.expiry };
                // Half the time left, but at least a minute (RFC 2131 4.4.5); never past the phase.
                let wait = (end.saturating_sub(now) / 2).max(MIN_RETRANSMIT);
                self.due = Some((now + wait).min(end));
                let secs = now.saturating_sub(self.started).as_secs().min(u64::from(u16::MAX)) as u16;
                let packet = encode_from(
                    &self.id,
                    self.xid,
                    secs,
                    MessageType::Request,
                    Some(self.lease.address),
                    &[],
                );
                let to = (self.phase == Phase::Renewing).then_some(self.lease.server);
                Some(Step::Send { packet, to, kind: MessageType::Request, phase: self.phase })
            }
            Phase::Init => {
                let client = self.init.get_or_insert_with(|| Client::new(self.id.clone(), self.seed, now));
                let t = client.poll_transmit(now)?;
                Some(Step::Send { packet: t.packet, to: None, kind: t.kind, phase: Phase::Init })
            }
        }
    }

    /// Takes a received packet at `now`.
    pub fn handle(&mut self, data: &[u8], now: Duration) -> Heard {
        if self.phase == Phase::Init {
            let Some(client) = self.init.as_mut() else { return Heard::Ignored("nothing sent yet") };
            return match client.handle(data, now) {
                Event::Bound(lease) => {
                    self.bind(lease.clone(), now);
                    Heard::Bound(lease)
                }
                Event::Malformed(m) => Heard::Malformed(m),
                _ => Heard::Ignored("not a lease yet"),
            };
        }
        let packet = match Packet::decode(data) {
            Ok(p) => p,
            Err(e) => return Heard::Malformed(e),
        };
        if packet.op != 2 || packet.xid != self.xid || packet.chaddr != self.id.mac {
            return Heard::Ignored("not an answer to this client's request");
        }
        if self.phase == Phase::Bound || self.due.is_none() {
            return Heard::Ignored("no request is waiting");
        }
        let server = packet.server_id();
        // RENEWING asked one server; REBINDING asked them all.
        if self.phase == Phase::Renewing && server.is_some_and(|s| s != self.lease.server) {
            return Heard::Ignored("an answer from another server");
        }
        match packet.kind {
            MessageType::Ack if packet.yiaddr == self.lease.address => {
                let lease = packet.lease();
                self.bind(lease.clone(), now);
                Heard::Renewed(lease)
            }
            MessageType::Ack => Heard::Ignored("an ACK for another address"),
            MessageType::Nak => {
                self.nak = true;
                Heard::Nak { server: server.unwrap_or(self.lease.server) }
            }
            _ => Heard::Ignored("not an ACK or a NAK"),
        }
    }

    fn bind(&mut self, lease: Lease, now: Duration) {
        self.times = Times::of(&lease, now);
        self.lease = lease;
        self.phase = Phase::Bound;
        self.due = None;
        self.init = None;
        self.xid = xorshift(&mut self.rng) as u32;
    }

    fn expire(&mut self, now: Duration, why: &'static str) -> Step {
        self.phase = Phase::Init;
        self.due = None;
        self.seed = xorshift(&mut self.rng);
        self.init = Some(Client::new(self.id.clone(), self.seed, now));
        Step::Expired { lease: self.lease.clone(), why }
    }
}

#[cfg(test)]
mod tests;
