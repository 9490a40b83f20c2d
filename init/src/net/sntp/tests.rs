//! SNTP client tests: replies built field by field, as ntpd and chrony fill them, fed to the client.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

/// 2026-12-02 00:00:00 UTC, `clock.rs`'s floor.
const PIVOT: u64 = 1_796_169_600;
/// 2036-02-07 06:28:16 UTC: NTP era 1's first second.
const ERA_1: u64 = 2_085_978_496;

const S1: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 123));
const S2: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 99));

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An NTP timestamp for `unix` seconds since 1970 and a binary fraction.
fn ts(unix: u64, frac: u32) -> u64 {
    let ntp = (unix + NTP_TO_UNIX as u64) as u32;
    (u64::from(ntp) << 32) | u64::from(frac)
}

/// A server's reply, field by field.
#[derive(Debug, Clone)]
struct Reply {
    leap: u8,
    version: u8,
    mode: u8,
    stratum: u8,
    root_delay: u32,
    root_dispersion: u32,
    reference_id: [u8; 4],
    origin: u64,
    receive: u64,
    transmit: u64,
}

impl Reply {
    /// A stratum-2 server's answer to the request `t`: received at 2027-01-01 00:00:00 and answered
    /// 10 ms later (0x028f5c29 / 2^32 s), root delay 31 ms, dispersion 0.5 s.
    fn to(t: &Transmit) -> Reply {
        Reply {
            leap: 0,
            version: 4,
            mode: 4,
            stratum: 2,
            root_delay: 0x0000_07f0,
            root_dispersion: 0x0000_8000,
            reference_id: [192, 0, 2, 7],
            origin: origin_of(t),
            receive: ts(1_798_761_600, 0),
            transmit: ts(1_798_761_600, 0x028f_5c29),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut p = vec![0u8; PACKET_LEN];
        p[0] = (self.leap << 6) | (self.version << 3) | self.mode;
        p[1] = self.stratum;
        p[2] = 6; // poll
        p[3] = 0xe9; // precision, -23
        p[4..8].copy_from_slice(&self.root_delay.to_be_bytes());
        p[8..12].copy_from_slice(&self.root_dispersion.to_be_bytes());
        p[12..16].copy_from_slice(&self.reference_id);
        p[16..24].copy_from_slice(&self.receive.wrapping_sub(1 << 32).to_be_bytes()); // reference time
        p[24..32].copy_from_slice(&self.origin.to_be_bytes());
        p[32..40].copy_from_slice(&self.receive.to_be_bytes());
        p[40..48].copy_from_slice(&self.transmit.to_be_bytes());
        p
    }

    fn with(mut self, f: impl FnOnce(&mut Reply)) -> Reply {
        f(&mut self);
        self
    }

    fn kiss(t: &Transmit, code: &[u8; 4]) -> Reply {
        Reply::to(t).with(|r| {
            r.leap = 3;
            r.stratum = 0;
            r.reference_id = *code;
        })
    }
}

/// The transmit timestamp of a request, which the reply must echo.
fn origin_of(t: &Transmit) -> u64 {
    u64::from_be_bytes(t.packet[40..48].try_into().unwrap())
}

fn client(servers: &[IpAddr]) -> Client {
    Client::new(servers.to_vec(), PIVOT, 42, Duration::ZERO)
}

/// Sends the first request, to the first server, at 0.
fn asked(servers: &[IpAddr]) -> (Client, Transmit) {
    let mut c = client(servers);
    let t = c.poll_transmit(Duration::ZERO).unwrap();
    (c, t)
}

#[test]
fn the_request_says_nothing_but_a_random_transmit_timestamp() {
    let (mut c, t) = asked(&[S1]);
    assert_eq!((t.server, t.attempt), (S1, 1));
    assert_eq!(PORT, 123);
    assert_eq!(t.packet.len(), 48);
    assert_eq!(t.packet[0], 0x23, "LI 0, VN 4, mode 3");
    assert!(t.packet[1..40].iter().all(|&b| b == 0), "{:?}", t.packet);
    assert_ne!(origin_of(&t), 0);
    let again = c.poll_transmit(TIMEOUTS[0]).unwrap();
    assert_ne!(origin_of(&again), origin_of(&t), "each request has its own");
    let (_, other_seed) = {
        let mut c = Client::new(vec![S1], PIVOT, 44, Duration::ZERO);
        let t = c.poll_transmit(Duration::ZERO).unwrap();
        (c, t)
    };
    assert_ne!(origin_of(&other_seed), origin_of(&t), "the seed decides it");
}

#[test]
fn a_good_reply_gives_the_server_time_plus_half_the_round_trip() {
    let (mut c, t) = asked(&[S1]);
    // Sent at 0, answered at 110 ms, of which the server took 10 ms: 100 ms of round trip.
    let reply = Reply::to(&t).with(|r| r.transmit = ts(1_798_761_600, 0x0290_0000));
    let turnaround = fixed_to_duration(0x0290_0000);
    let Event::Synced(time) = c.handle(S1, &reply.bytes(), ms(110)) else { panic!("not synced") };
    assert_eq!(time.round_trip, ms(110) - turnaround);
    assert_eq!(time.unix, Duration::from_secs(1_798_761_600) + turnaround + time.round_trip / 2);
    assert_eq!(time.unix, Duration::new(1_798_761_600, 60_004_882), "10.009765 ms + 49.995117 ms");
    assert_eq!((time.server, time.stratum, time.at), (S1, 2, ms(110)));
    assert_eq!(time.unix_at(ms(1110)), time.unix + Duration::from_secs(1));
    assert!(c.is_done());
    assert_eq!(c.gave_up(), None);
    assert_eq!(c.next_deadline(), Duration::MAX);
    assert_eq!(c.poll_transmit(Duration::from_secs(100)), None);
    assert_eq!(
        Event::Synced(time).to_string(),
        "SNTP: 10.0.2.123 (stratum 2) says 2027-01-01 00:00:00 UTC, round trip 99 ms"
    );
}

#[test]
fn the_round_trip_is_clamped() {
    let check = |receive: u64, transmit: u64, at: Duration| {
        let (mut c, t) = asked(&[S1]);
        let reply = Reply::to(&t).with(|r| (r.receive, r.transmit) = (receive, transmit));
        match c.handle(S1, &reply.bytes(), at) {
            Event::Synced(time) => time.round_trip,
            e => panic!("{e:?}"),
        }
    };
    let t2 = ts(1_798_761_600, 0);
    assert_eq!(
        check(t2, ts(1_798_761_605, 0), ms(100)),
        Duration::ZERO,
        "a server slower than the round trip"
    );
    assert_eq!(check(ts(1_798_761_605, 0), t2, ms(100)), ms(100), "a server that answered before it heard");
    assert_eq!(check(0, t2, ms(100)), ms(100), "no receive timestamp: all the time counts");
    assert_eq!(check(t2, t2, ms(100)), ms(100));
}

#[test]
fn refusals() {
    use Reject::*;
    // (what the server sends, why it is refused, whether it was the answer to our request)
    type Case = (fn(Reply) -> Reply, Reject, bool);
    let cases: Vec<Case> = vec![
        (|r| r.with(|r| r.mode = 3), Mode(3), false),
        (|r| r.with(|r| r.mode = 5), Mode(5), false),
        (|r| r.with(|r| r.version = 2), Version(2), false),
        (|r| r.with(|r| r.version = 5), Version(5), false),
        (|r| r.with(|r| r.origin ^= 1), Origin, false),
        (|r| r.with(|r| r.origin = 0), Origin, false),
        (|r| r.with(|r| r.transmit = 0), ZeroTransmit, true),
        (|r| r.with(|r| r.stratum = 16), Unsynchronized(16), true),
        (|r| r.with(|r| r.stratum = 255), Unsynchronized(255), true),
        (|r| r.with(|r| r.leap = 3), LeapAlarm, true),
        (|r| r.with(|r| r.root_delay = 0x0010_0001), RootDelay(short_to_duration(0x0010_0001)), true),
        (|r| r.with(|r| r.root_delay = 0xffff_ffff), RootDelay(short_to_duration(0xffff_ffff)), true),
        (|r| r.with(|r| r.root_dispersion = 0x0011_0000), RootDispersion(Duration::from_secs(17)), true),
        (|r| r.with(|r| r.stratum = 0), Kiss(super::Kiss([192, 0, 2, 7])), true),
    ];
    for (make, why, answered) in cases {
        let (mut c, t) = asked(&[S1, S2]);
        let data = make(Reply::to(&t)).bytes();
        assert_eq!(check(&data, origin_of(&t)), Err(why.clone()));
        let expected = if answered {
            Event::Refused { server: S1, why: why.clone() }
        } else {
            Event::Ignored { from: S1, why: why.clone() }
        };
        assert_eq!(c.handle(S1, &data, ms(10)), expected);
        assert!(!c.is_done());
        // An ignored packet leaves the request waiting for its real reply; a refused one ends it.
        let good = Reply::to(&t).bytes();
        let after = c.handle(S1, &good, ms(20));
        assert_eq!(matches!(after, Event::Synced(_)), !answered, "{why:?}: {after:?}");
    }
    // At the limits, accepted.
    let (mut c, t) = asked(&[S1]);
    let edge = Reply::to(&t).with(|r| {
        (r.version, r.stratum, r.leap) = (3, 15, 2);
        (r.root_delay, r.root_dispersion) = (0x0010_0000, 0x0010_0000);
    });
    assert!(matches!(c.handle(S1, &edge.bytes(), ms(10)), Event::Synced(_)));
}

#[test]
fn too_short_and_longer_replies() {
    let (mut c, t) = asked(&[S1]);
    let good = Reply::to(&t).bytes();
    assert_eq!(c.handle(S1, &good[..47], ms(5)), Event::Ignored { from: S1, why: Reject::TooShort(47) });
    assert_eq!(c.handle(S1, &[], ms(5)), Event::Ignored { from: S1, why: Reject::TooShort(0) });
    let mut long = good.clone();
    long.extend_from_slice(&[0xab; 20]); // a MAC: key id and digest
    assert!(matches!(c.handle(S1, &long, ms(10)), Event::Synced(_)));
}

#[test]
fn a_reply_from_another_address_is_ignored() {
    let (mut c, t) = asked(&[S1, S2]);
    let good = Reply::to(&t).bytes();
    assert_eq!(
        c.handle(OTHER, &good, ms(5)),
        Event::Ignored { from: OTHER, why: Reject::WrongAddress { asked: S1 } }
    );
    assert_eq!(
        c.handle(S2, &good, ms(5)),
        Event::Ignored { from: S2, why: Reject::WrongAddress { asked: S1 } },
        "another server on the list, which was not asked"
    );
    assert!(matches!(c.handle(S1, &good, ms(10)), Event::Synced(t) if t.server == S1));
}

#[test]
fn ipv6_servers_and_mapped_addresses() {
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x123));
    let (mut c, t) = asked(&[v6]);
    assert_eq!(t.server, v6);
    assert!(matches!(c.handle(v6, &Reply::to(&t).bytes(), ms(10)), Event::Synced(_)));
    // A dual-stack socket reports an IPv4 server as ::ffff:a.b.c.d.
    let (mut c, t) = asked(&[S1]);
    let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 2, 123).to_ipv6_mapped());
    assert!(matches!(c.handle(mapped, &Reply::to(&t).bytes(), ms(10)), Event::Synced(_)));
}

#[test]
fn a_duplicate_after_success_and_a_reply_before_any_request_are_ignored() {
    let mut c = client(&[S1]);
    assert_eq!(c.handle(S1, &[0; 48], ms(0)), Event::Ignored { from: S1, why: Reject::NotWaiting });
    let t = c.poll_transmit(ms(0)).unwrap();
    let good = Reply::to(&t).bytes();
    assert!(matches!(c.handle(S1, &good, ms(10)), Event::Synced(_)));
    assert_eq!(c.handle(S1, &good, ms(11)), Event::Ignored { from: S1, why: Reject::NotWaiting });
    assert!(c.is_done());
    assert_eq!(c.poll_transmit(ms(5000)), None);
}

#[test]
fn a_late_reply_to_an_earlier_try_is_ignored() {
    let (mut c, first) = asked(&[S1]);
    let second = c.poll_transmit(TIMEOUTS[0]).unwrap();
    assert_eq!(second.attempt, 2);
    assert_eq!(
        c.handle(S1, &Reply::to(&first).bytes(), ms(1100)),
        Event::Ignored { from: S1, why: Reject::Origin }
    );
    let Event::Synced(time) = c.handle(S1, &Reply::to(&second).bytes(), ms(1100)) else { panic!() };
    assert!(time.round_trip < ms(100), "measured from the second request: {:?}", time.round_trip);
}

/// Drives `c` with no replies until it is done: each request's (time, server, attempt).
fn silence(c: &mut Client) -> Vec<(Duration, IpAddr, u32)> {
    let mut sent = Vec::new();
    while !c.is_done() {
        let now = c.next_deadline();
        assert!(now < Duration::from_secs(3600), "no end");
        if let Some(before) = now.checked_sub(ms(1)) {
            assert_eq!(c.poll_transmit(before), None, "nothing before the deadline");
        }
        if let Some(t) = c.poll_transmit(now) {
            sent.push((now, t.server, t.attempt));
        }
    }
    sent
}

#[test]
fn timeouts_and_rotation() {
    let mut c = client(&[S1, S2]);
    assert_eq!(c.next_deadline(), Duration::ZERO);
    let sent = silence(&mut c);
    let s = Duration::from_secs;
    assert_eq!(sent, [(s(0), S1, 1), (s(1), S1, 2), (s(3), S2, 1), (s(4), S2, 2)]);
    let gave_up = c.gave_up().unwrap();
    assert_eq!(gave_up.servers, [(S1, Failure::NoReply { tries: 2 }), (S2, Failure::NoReply { tries: 2 })]);
    assert_eq!(
        gave_up.to_string(),
        "no time from any SNTP server: 10.0.2.123: no reply to 2 requests; 192.0.2.1: no reply to 2 requests"
    );
    assert_eq!(c.next_deadline(), Duration::MAX);
}

#[test]
fn giving_up_within_the_bound() {
    let many: Vec<IpAddr> = (1..=10).map(|i| IpAddr::V4(Ipv4Addr::new(192, 0, 2, i))).collect();
    let start = Duration::from_secs(500);
    let mut c = Client::new([many.clone(), many.clone()].concat(), PIVOT, 7, start);
    let sent = silence(&mut c);
    assert_eq!(sent.len(), MAX_SERVERS * TIMEOUTS.len());
    let asked: Vec<IpAddr> = sent.iter().map(|(_, s, _)| *s).collect();
    let expected: Vec<IpAddr> = many.iter().take(MAX_SERVERS).flat_map(|s| [*s, *s]).collect();
    assert_eq!(asked, expected, "each of the first servers, in order, twice");
    let per_server: Duration = TIMEOUTS.iter().sum();
    assert_eq!(c.gave_up().unwrap().servers.len(), MAX_SERVERS);
    let ended = sent.last().unwrap().0 + TIMEOUTS[TIMEOUTS.len() - 1];
    assert_eq!(ended - start, per_server * MAX_SERVERS as u32);
    assert!(ended - start <= Duration::from_secs(12));

    let c = Client::new(vec![], PIVOT, 7, start);
    assert!(c.is_done());
    assert_eq!(c.gave_up().unwrap().to_string(), "no SNTP server to ask");
}

#[test]
fn a_refused_answer_ends_the_try_and_the_next_waits_for_its_timeout() {
    let (mut c, t) = asked(&[S1, S2]);
    let unsynced = Reply::to(&t).with(|r| r.stratum = 16).bytes();
    assert!(matches!(c.handle(S1, &unsynced, ms(50)), Event::Refused { .. }));
    assert_eq!(c.next_deadline(), TIMEOUTS[0]);
    assert_eq!(c.poll_transmit(ms(500)), None);
    let t = c.poll_transmit(TIMEOUTS[0]).unwrap();
    assert_eq!((t.server, t.attempt), (S1, 2));
    // The second try refused too: S1 is done with, and S2 is asked at once.
    let unsynced = Reply::to(&t).with(|r| r.leap = 3).bytes();
    assert!(matches!(c.handle(S1, &unsynced, ms(1050)), Event::Refused { .. }));
    assert_eq!(c.next_deadline(), ms(1050));
    let t = c.poll_transmit(ms(1050)).unwrap();
    assert_eq!((t.server, t.attempt), (S2, 1));
    // The last try of the last server refused: given up at once, with each server's reason.
    let sent = c.poll_transmit(ms(2050)).unwrap();
    assert_eq!((sent.server, sent.attempt), (S2, 2));
    let bad = Reply::to(&sent).with(|r| r.root_dispersion = 0xffff_0000).bytes();
    assert!(matches!(c.handle(S2, &bad, ms(2100)), Event::Refused { .. }));
    assert!(c.is_done());
    assert_eq!(
        c.gave_up().unwrap().servers,
        [
            (S1, Failure::Refused(Reject::LeapAlarm)),
            (S2, Failure::Refused(Reject::RootDispersion(short_to_duration(0xffff_0000)))),
        ]
    );
    assert_eq!(
        c.gave_up().unwrap().to_string(),
        "no time from any SNTP server: 10.0.2.123: refused its reply: leap indicator 3: the server's clock is not synchronized; 192.0.2.1: refused its reply: root dispersion 65535.000 s, more than 16 s"
    );
}

#[test]
fn kiss_o_death() {
    for (code, stops) in [(b"DENY", true), (b"RSTR", true), (b"RATE", false), (b"INIT", false)] {
        let (mut c, t) = asked(&[S1, S2]);
        let kiss = Reply::kiss(&t, code).bytes();
        let why = Reject::Kiss(Kiss(*code));
        assert_eq!(c.handle(S1, &kiss, ms(30)), Event::Refused { server: S1, why: why.clone() });
        let next = c.poll_transmit(ms(30));
        if stops {
            assert_eq!(next.map(|t| (t.server, t.attempt)), Some((S2, 1)), "{why:?}: on to the next server");
        } else {
            assert_eq!(next, None, "{why:?}: the next try waits");
            let t = c.poll_transmit(TIMEOUTS[0]).unwrap();
            assert_eq!((t.server, t.attempt), (S1, 2), "{why:?}: the same server again, later");
        }
        assert_eq!(Kiss(*code).stops(), stops);
    }
    // A forged DENY (wrong origin) is no kiss: the server stays.
    let (mut c, t) = asked(&[S1, S2]);
    let forged = Reply::kiss(&t, b"DENY").with(|r| r.origin = 12345).bytes();
    assert_eq!(c.handle(S1, &forged, ms(30)), Event::Ignored { from: S1, why: Reject::Origin });
    assert!(matches!(c.handle(S1, &Reply::to(&t).bytes(), ms(40)), Event::Synced(_)));

    // DENY from the only server: given up at once.
    let (mut c, t) = asked(&[S1]);
    let deny = Event::Refused { server: S1, why: Reject::Kiss(Kiss(*b"DENY")) };
    assert_eq!(c.handle(S1, &Reply::kiss(&t, b"DENY").bytes(), ms(30)), deny);
    assert!(c.is_done());
    assert_eq!(
        c.gave_up().unwrap().to_string(),
        "no time from any SNTP server: 10.0.2.123: refused its reply: kiss-o'-death DENY: not asking this server again"
    );
    assert_eq!(
        deny.to_string(),
        "SNTP: refused 10.0.2.123's reply: kiss-o'-death DENY: not asking this server again"
    );
    assert_eq!(Kiss([b'R', b'A', 0, 0xff]).to_string(), "RA??");
}

#[test]
fn era_conversion() {
    assert_eq!(ntp_to_unix(NTP_TO_UNIX as u32, 0), 0, "1970 with a pivot of 1970");
    assert_eq!(ntp_to_unix(0, PIVOT), ERA_1, "NTP second 0 after 2026 is 2036-02-07");
    assert_eq!(ntp_to_unix(u32::MAX, PIVOT), ERA_1 - 1, "the last second of era 0");
    assert_eq!(crate::clock::civil(ERA_1), "2036-02-07 06:28:16 UTC");
    let at = |unix: u64| (unix + NTP_TO_UNIX as u64) as u32;
    // Around the pivot: at it and after it as is; just before it, the next era.
    assert_eq!(ntp_to_unix(at(PIVOT), PIVOT), PIVOT);
    assert_eq!(ntp_to_unix(at(PIVOT + 1), PIVOT), PIVOT + 1);
    assert_eq!(ntp_to_unix(at(PIVOT - 1), PIVOT), PIVOT - 1 + (1 << 32));
    // A pivot in era 1 (a build from 2040) reads small seconds as era 1, large as era 1 too.
    let pivot_2040 = 2_208_988_800;
    assert_eq!(crate::clock::civil(pivot_2040), "2040-01-01 00:00:00 UTC");
    assert_eq!(ntp_to_unix(at(pivot_2040 + 86_400), pivot_2040), pivot_2040 + 86_400);
    assert_eq!(ntp_to_unix(at(4_102_444_800), pivot_2040), 4_102_444_800, "2100");
    // Fractions.
    assert_eq!(timestamp_to_unix(ts(PIVOT, 0x8000_0000), PIVOT), Duration::new(PIVOT, 500_000_000));
    assert_eq!(timestamp_to_unix(ts(PIVOT, u32::MAX), PIVOT), Duration::new(PIVOT, 999_999_999));
    assert_eq!(ntp_to_unix(0, u64::MAX), u64::MAX, "no overflow");
}

#[test]
fn a_reply_after_2036_is_read_in_era_1() {
    let (mut c, t) = asked(&[S1]);
    let unix_2040 = 2_208_988_800; // 2040-01-01
    let reply = Reply::to(&t).with(|r| (r.receive, r.transmit) = (ts(unix_2040, 0), ts(unix_2040, 0)));
    assert!((reply.transmit >> 32) < (1 << 31), "a small seconds field");
    let Event::Synced(time) = c.handle(S1, &reply.bytes(), ms(20)) else { panic!() };
    assert_eq!(time.unix, Duration::from_secs(unix_2040) + ms(10));
}

fn datagram() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..120)
}

proptest! {
    #[test]
    fn random_bytes_never_panic(
        mut data in datagram(),
        echo in any::<bool>(),
        from_server in any::<bool>(),
        at in 0u64..10_000,
    ) {
        let (mut c, t) = asked(&[S1, S2]);
        // Half the time, random fields around the right origin timestamp, which a sync then needs.
        if let (true, Some(origin)) = (echo, data.get_mut(24..32)) {
            origin.copy_from_slice(&t.packet[40..48]);
        }
        let from = if from_server { S1 } else { OTHER };
        match c.handle(from, &data, ms(at)) {
            Event::Synced(_) => prop_assert_eq!(&data[24..32], &t.packet[40..48]),
            e => { let _ = e.to_string(); }
        }
        let _ = c.poll_transmit(ms(at));
    }

    #[test]
    fn mutated_replies_never_panic_and_only_a_matching_origin_syncs(
        seed in any::<u64>(),
        edits in prop::collection::vec((0usize..64, any::<u8>()), 0..6),
        cut in prop::option::of(0usize..64),
        at in 0u64..5_000,
    ) {
        let mut c = Client::new(vec![S1], PIVOT, seed, Duration::ZERO);
        let t = c.poll_transmit(Duration::ZERO).unwrap();
        let mut data = Reply::to(&t).bytes();
        data.extend_from_slice(&[0; 16]);
        for (i, b) in edits {
            if let Some(x) = data.get_mut(i) { *x = b; }
        }
        if let Some(n) = cut { data.truncate(n); }
        match c.handle(S1, &data, ms(at)) {
            Event::Synced(time) => {
                prop_assert_eq!(&data[24..32], &t.packet[40..48]);
                prop_assert!(time.unix >= Duration::from_secs(PIVOT));
                prop_assert!(time.round_trip <= ms(at));
                prop_assert!(c.is_done());
            }
            Event::Refused { why, .. } => prop_assert!(why.answered()),
            Event::Ignored { why, .. } => prop_assert!(!why.answered()),
        }
        let _ = c.poll_transmit(ms(at + 3000));
    }

    #[test]
    fn eras_land_at_or_after_the_pivot(secs in any::<u32>(), pivot in 0u64..(1 << 40)) {
        let unix = ntp_to_unix(secs, pivot);
        prop_assert!(unix >= pivot && unix - pivot < (1 << 32));
        prop_assert_eq!((unix + NTP_TO_UNIX as u64) as u32, secs);
    }
}
