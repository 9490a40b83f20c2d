//! The lease keeper against packets built as dnsmasq builds them, and a clock that jumps.

use super::*;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 10, 1);
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 0, 10, 2);
const ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 10, 151);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn lease(length: u64) -> Lease {
    Lease {
        address: ADDRESS,
        prefix: 24,
        server: SERVER,
        routes: vec![],
        dns: vec![],
        domain: None,
        search: vec![],
        hostname: None,
        mtu: None,
        lease_time: Some(secs(length)),
        renew_time: None,
        rebind_time: None,
        ntp: vec![],
        refused: vec![],
    }
}

fn keeper(length: u64) -> Keeper {
    Keeper::new(Identity { mac: MAC, hostname: None, client_id: None }, lease(length), secs(1000), 7)
}

/// The transaction id and `ciaddr` of a request the keeper sent.
fn sent(step: &Step) -> (u32, Ipv4Addr, bool) {
    let Step::Send { packet, .. } = step else { panic!("{step:?}") };
    let xid = u32::from_be_bytes(packet[4..8].try_into().unwrap());
    let ciaddr = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let broadcast_flag = packet[10] & 0x80 != 0;
    (xid, ciaddr, broadcast_flag)
}

/// A reply from `server` to transaction `xid` of kind `kind` for `yiaddr`, with a 120 s lease.
fn reply(xid: u32, server: Ipv4Addr, yiaddr: Ipv4Addr, kind: u8) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 2;
    p[1] = 1;
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[16..20].copy_from_slice(&yiaddr.octets());
    p[28..34].copy_from_slice(&MAC);
    p.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind, 54, 4]);
    p.extend_from_slice(&server.octets());
    p.extend_from_slice(&[51, 4, 0, 0, 0, 120, 1, 4, 255, 255, 255, 0, 255]);
    p
}

#[test]
fn the_rfc_times() {
    let t = Times::of(&lease(3600), secs(100));
    assert_eq!((t.renew, t.rebind, t.expiry), (secs(1900), secs(3250), secs(3700)));
    // The server's T1 and T2, kept in order.
    let mut l = lease(120);
    (l.renew_time, l.rebind_time) = (Some(secs(30)), Some(secs(90)));
    assert_eq!(Times::of(&l, secs(0)), Times { renew: secs(30), rebind: secs(90), expiry: secs(120) });
    (l.renew_time, l.rebind_time) = (Some(secs(100)), Some(secs(500)));
    assert_eq!(Times::of(&l, secs(0)), Times { renew: secs(100), rebind: secs(120), expiry: secs(120) });
    // No lease time: checked daily.
    let mut forever = lease(1);
    forever.lease_time = None;
    assert_eq!(Times::of(&forever, secs(0)).renew, secs(43_200));
}

#[test]
fn renewing_is_unicast_to_the_server_and_an_ack_extends_the_lease() {
    let mut k = keeper(120);
    assert_eq!(k.poll(secs(1059)), None, "bound until T1");
    assert_eq!(k.next_deadline(), secs(1060));
    let step = k.poll(secs(1060)).unwrap();
    let Step::Send { to, kind, phase, .. } = &step else { panic!() };
    assert_eq!((*to, *kind, *phase), (Some(SERVER), MessageType::Request, Phase::Renewing));
    let (xid, ciaddr, broadcast) = sent(&step);
    assert_eq!((ciaddr, broadcast), (ADDRESS, false), "RFC 2131 4.3.2: ciaddr, no BROADCAST flag");
    assert_eq!(k.poll(secs(1061)), None, "one request until its retransmission");
    assert_eq!(
        k.handle(&reply(xid + 1, SERVER, ADDRESS, 5), secs(1061)),
        Heard::Ignored("not an answer to this client's request")
    );
    assert_eq!(
        k.handle(&reply(xid, OTHER, ADDRESS, 5), secs(1061)),
        Heard::Ignored("an answer from another server")
    );
    let Heard::Renewed(l) = k.handle(&reply(xid, SERVER, ADDRESS, 5), secs(1062)) else { panic!() };
    assert_eq!(l.lease_time, Some(secs(120)));
    assert_eq!(k.phase(), Phase::Bound);
    assert_eq!(
        k.times(),
        Times { renew: secs(1122), rebind: secs(1167), expiry: secs(1182) },
        "from the ACK"
    );
    assert_eq!(
        k.handle(&reply(xid, SERVER, ADDRESS, 5), secs(1063)),
        Heard::Ignored("not an answer to this client's request"),
        "a duplicate ACK"
    );
}

#[test]
fn retransmissions_wait_half_the_time_left_but_a_minute_at_least() {
    let mut k = keeper(3600);
    // T1 1800, T2 3150 after 1000.
    let mut sends = vec![];
    let mut now = secs(2800);
    while now < secs(4150) {
        if let Some(Step::Send { phase, .. }) = k.poll(now) {
            sends.push((now.as_secs(), phase));
        }
        now = k.next_deadline().max(now + secs(1));
    }
    assert_eq!(
        sends,
        [
            (2800, Phase::Renewing),
            (3475, Phase::Renewing), // half of the 1350 s to T2
            (3812, Phase::Renewing), // half of 675, rounded down
            (3981, Phase::Renewing),
            (4065, Phase::Renewing), // half of 169
            (4125, Phase::Renewing), // a minute: half of 85 is less
                                     // T2 at 4150 comes first: rebinding.
        ]
    );
    let step = k.poll(secs(4150)).unwrap();
    let Step::Send { to, phase, .. } = &step else { panic!() };
    assert_eq!((*to, *phase), (None, Phase::Rebinding), "REBINDING broadcasts");
    assert_eq!(sent(&step).1, ADDRESS);
}

#[test]
fn rebinding_takes_any_server_and_expiry_gives_the_address_up() {
    let mut k = keeper(120);
    let Some(Step::Send { phase: Phase::Renewing, .. }) = k.poll(secs(1060)) else { panic!() };
    let step = k.poll(secs(1105)).unwrap();
    let (xid, _, _) = sent(&step);
    // Another server answers the broadcast: the lease is now that server's.
    let Heard::Renewed(l) = k.handle(&reply(xid, OTHER, ADDRESS, 5), secs(1106)) else { panic!() };
    assert_eq!((l.server, k.lease().server), (OTHER, OTHER));
    // The next renewal goes to it.
    let Some(Step::Send { to, .. }) = k.poll(secs(1166)) else { panic!() };
    assert_eq!(to, Some(OTHER));
    // Nobody answers: at the end the address goes, and DISCOVER starts.
    assert!(matches!(k.poll(secs(1211)), Some(Step::Send { phase: Phase::Rebinding, .. })));
    let Some(Step::Expired { lease, why }) = k.poll(secs(1226)) else { panic!() };
    assert_eq!((lease.address, why), (ADDRESS, "it ended without an answer"));
    assert_eq!(k.phase(), Phase::Init);
    let Some(Step::Send { kind, to, phase, .. }) = k.poll(secs(1226)) else { panic!() };
    assert_eq!((kind, to, phase), (MessageType::Discover, None, Phase::Init));
}

#[test]
fn a_clock_that_jumps_past_t2_or_the_end_acts_at_once() {
    let mut k = keeper(120);
    let Some(Step::Send { phase, to, .. }) = k.poll(secs(1110)) else { panic!() };
    assert_eq!((phase, to), (Phase::Rebinding, None), "a suspend past T2: straight to REBINDING");
    let mut k = keeper(120);
    assert!(
        matches!(k.poll(secs(5000)), Some(Step::Expired { .. })),
        "past the end: the address goes at once"
    );
}

#[test]
fn a_nak_gives_the_address_up_and_starts_over() {
    let mut k = keeper(120);
    let step = k.poll(secs(1060)).unwrap();
    let (xid, _, _) = sent(&step);
    assert_eq!(k.handle(&reply(xid, SERVER, ADDRESS, 6), secs(1061)), Heard::Nak { server: SERVER });
    assert_eq!(k.next_deadline(), Duration::ZERO);
    let Some(Step::Expired { why, .. }) = k.poll(secs(1061)) else { panic!() };
    assert_eq!(why, "the server refused the renewal (NAK)");
    // The new lease, perhaps another address, is bound as at boot.
    let Some(Step::Send { packet, kind: MessageType::Discover, .. }) = k.poll(secs(1061)) else { panic!() };
    let xid = u32::from_be_bytes(packet[4..8].try_into().unwrap());
    let other = Ipv4Addr::new(10, 0, 10, 160);
    assert_eq!(k.handle(&reply(xid, SERVER, other, 2), secs(1062)), Heard::Ignored("not a lease yet"));
    let Some(Step::Send { packet, kind: MessageType::Request, .. }) = k.poll(secs(1062)) else { panic!() };
    let xid = u32::from_be_bytes(packet[4..8].try_into().unwrap());
    let Heard::Bound(l) = k.handle(&reply(xid, SERVER, other, 5), secs(1063)) else { panic!() };
    assert_eq!((l.address, k.phase(), k.times().renew), (other, Phase::Bound, secs(1123)));
}

#[test]
fn acks_for_another_address_or_while_bound_are_ignored() {
    let mut k = keeper(120);
    assert_eq!(
        k.handle(&reply(0, SERVER, ADDRESS, 5), secs(1001)),
        Heard::Ignored("not an answer to this client's request")
    );
    let step = k.poll(secs(1060)).unwrap();
    let (xid, _, _) = sent(&step);
    assert_eq!(
        k.handle(&reply(xid, SERVER, OTHER, 5), secs(1061)),
        Heard::Ignored("an ACK for another address")
    );
    assert!(matches!(k.handle(&[1, 2, 3], secs(1061)), Heard::Malformed(_)));
    assert_eq!(k.phase(), Phase::Renewing);
}
