//! DHCP client tests: packets built the way dnsmasq and qemu's server build them, fed to the client.

use super::*;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const OFFERED: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A server reply: BOOTREPLY with the given fields and options (no END; the builder adds it).
fn reply(xid: u32, chaddr: [u8; 6], yiaddr: Ipv4Addr, kind: MessageType, options: &[(u8, &[u8])]) -> Vec<u8> {
    let mut p = vec![0u8; FIXED_LEN];
    p[0] = 2;
    p[1] = 1;
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[16..20].copy_from_slice(&yiaddr.octets());
    p[28..34].copy_from_slice(&chaddr);
    p.extend_from_slice(&COOKIE);
    p.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, kind as u8]);
    for (code, value) in options {
        p.push(*code);
        p.push(value.len() as u8);
        p.extend_from_slice(value);
    }
    p.push(OPT_END);
    p
}

fn client() -> Client {
    Client::new(Identity { mac: MAC, hostname: Some("node7".into()), client_id: None }, 42, secs(100))
}

fn offer(c: &Client, server: Ipv4Addr) -> Vec<u8> {
    reply(c.xid(), MAC, OFFERED, MessageType::Offer, &[(OPT_SERVER_ID, &server.octets())])
}

fn ack(c: &Client, server: Ipv4Addr, extra: &[(u8, &[u8])]) -> Vec<u8> {
    let server = server.octets();
    let mut options: Vec<(u8, &[u8])> = vec![(OPT_SERVER_ID, &server)];
    options.extend_from_slice(extra);
    reply(c.xid(), MAC, OFFERED, MessageType::Ack, &options)
}

#[test]
fn discover_carries_what_servers_need() {
    let mut c = client();
    let t = c.poll_transmit(secs(100)).unwrap();
    assert_eq!((t.kind, t.attempt), (MessageType::Discover, 1));
    let p = &t.packet;
    assert!(p.len() >= MIN_LEN);
    assert_eq!(&p[..4], &[1, 1, 6, 0]);
    assert_eq!(u32::from_be_bytes([p[4], p[5], p[6], p[7]]), c.xid());
    assert_eq!(&p[10..12], &[0x80, 0], "BROADCAST flag");
    assert_eq!(&p[28..34], &MAC);
    let mut options = Vec::new();
    parse_options(&p[FIXED_LEN + 4..], &mut options).unwrap();
    assert_eq!(find(&options, OPT_MESSAGE_TYPE), Some(&[1u8][..]));
    assert_eq!(find(&options, OPT_CLIENT_ID), Some(&[1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56][..]));
    assert_eq!(find(&options, OPT_HOSTNAME), Some(&b"node7"[..]));
    assert_eq!(find(&options, OPT_PARAMETERS), Some(&[1, 3, 6, 12, 15, 26, 28, 42, 51, 54, 119, 121][..]));
    assert_eq!(find(&options, OPT_REQUESTED_IP), None);
}

#[test]
fn client_id_from_the_cmdline() {
    let id = Identity { mac: MAC, hostname: None, client_id: Some((0, b"node-7".to_vec())) };
    let mut c = Client::new(id, 1, secs(0));
    let p = c.poll_transmit(secs(0)).unwrap().packet;
    let mut options = Vec::new();
    parse_options(&p[FIXED_LEN + 4..], &mut options).unwrap();
    assert_eq!(find(&options, OPT_CLIENT_ID), Some(&b"\0node-7"[..]));
    assert_eq!(find(&options, OPT_HOSTNAME), None);
}

#[test]
fn full_exchange() {
    let mut c = client();
    c.poll_transmit(secs(100)).unwrap();
    assert_eq!(c.poll_transmit(secs(101)), None, "nothing due before the retransmission time");
    let event = c.handle(&offer(&c, SERVER), secs(101));
    assert_eq!(event, Event::Offered { server: SERVER, address: OFFERED });
    let t = c.poll_transmit(secs(101)).unwrap();
    assert_eq!((t.kind, t.attempt), (MessageType::Request, 1));
    let request = Packet::decode(&{
        let mut p = t.packet.clone();
        p[0] = 2; // decode() reads any op; make it look like what a server sees
        p
    })
    .unwrap();
    assert_eq!(request.option(OPT_REQUESTED_IP), Some(&OFFERED.octets()[..]));
    assert_eq!(request.option(OPT_SERVER_ID), Some(&SERVER.octets()[..]));
    let event = c.handle(
        &ack(
            &c,
            SERVER,
            &[
                (OPT_SUBNET_MASK, &[255, 255, 255, 0]),
                (OPT_ROUTER, &[10, 0, 2, 2]),
                (OPT_DNS, &[10, 0, 2, 3, 1, 1, 1, 1]),
                (OPT_DOMAIN, b"lan"),
                (OPT_LEASE_TIME, &86400u32.to_be_bytes()),
                (OPT_MTU, &9000u16.to_be_bytes()),
                (OPT_NTP, &[10, 0, 2, 2, 192, 0, 2, 123]),
            ],
        ),
        secs(102),
    );
    let Event::Bound(lease) = event else { panic!("{event:?}") };
    assert_eq!(
        lease,
        Lease {
            address: OFFERED,
            prefix: 24,
            server: SERVER,
            routes: vec![Route { destination: Ipv4Addr::UNSPECIFIED, prefix: 0, gateway: SERVER }],
            dns: vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)],
            domain: Some("lan".into()),
            search: vec![],
            hostname: None,
            mtu: Some(9000),
            lease_time: Some(secs(86400)),
            renew_time: None,
            rebind_time: None,
            ntp: vec![SERVER, Ipv4Addr::new(192, 0, 2, 123)],
            refused: vec![],
        }
    );
    assert_eq!(c.poll_transmit(secs(1000)), None, "bound: nothing more to send");
}

#[test]
fn retransmission_backs_off_with_jitter() {
    let mut c = client();
    let mut now = secs(100);
    let mut gaps = Vec::new();
    for attempt in 1..=7 {
        let t = c.poll_transmit(now).unwrap();
        assert_eq!(t.attempt, attempt);
        let next = c.next_deadline();
        gaps.push((next - now).as_millis() as u64);
        now = next;
    }
    for (gap, base) in gaps.iter().zip([4000u64, 8000, 16000, 32000, 64000, 64000, 64000]) {
        assert!((base - 1000..=base + 1000).contains(gap), "{gap} ms around {base} ms");
    }
    assert!(gaps.windows(2).any(|w| w[0] % 1000 != w[1] % 1000), "jitter varies: {gaps:?}");
}

#[test]
fn first_offer_wins_over_a_second_server() {
    let mut c = client();
    c.poll_transmit(secs(100));
    let other = Ipv4Addr::new(10, 0, 2, 9);
    assert!(matches!(c.handle(&offer(&c, SERVER), secs(100)), Event::Offered { .. }));
    assert_eq!(c.handle(&offer(&c, other), secs(100)), Event::Ignored("not expected in this state"));
    c.poll_transmit(secs(100));
    assert_eq!(c.handle(&ack(&c, other, &[]), secs(100)), Event::Ignored("ack from another server"));
    assert!(matches!(c.handle(&ack(&c, SERVER, &[]), secs(100)), Event::Bound(_)));
}

#[test]
fn nak_starts_over_with_a_new_transaction() {
    let mut c = client();
    c.poll_transmit(secs(100));
    c.handle(&offer(&c, SERVER), secs(100));
    c.poll_transmit(secs(100));
    let old_xid = c.xid();
    let nak = reply(
        c.xid(),
        MAC,
        Ipv4Addr::UNSPECIFIED,
        MessageType::Nak,
        &[(OPT_SERVER_ID, &SERVER.octets()), (OPT_MESSAGE, b"wrong network")],
    );
    assert_eq!(
        c.handle(&nak, secs(101)),
        Event::Nak { server: SERVER, message: Some("wrong network".into()) }
    );
    assert_ne!(c.xid(), old_xid);
    let t = c.poll_transmit(secs(101)).unwrap();
    assert_eq!((t.kind, t.attempt), (MessageType::Discover, 1));
}

#[test]
fn unanswered_requests_fall_back_to_discover() {
    let mut c = client();
    c.poll_transmit(secs(100));
    c.handle(&offer(&c, SERVER), secs(100));
    let mut kinds = Vec::new();
    for _ in 0..6 {
        let now = c.next_deadline();
        kinds.push(c.poll_transmit(now).unwrap().kind);
    }
    use MessageType::*;
    assert_eq!(kinds, [Request, Request, Request, Request, Discover, Discover]);
}

#[test]
fn foreign_and_broken_packets_change_nothing() {
    let mut c = client();
    c.poll_transmit(secs(100));
    let good = offer(&c, SERVER);
    let xid = c.xid();
    let check =
        |c: &mut Client, packet: &[u8], expected: Event| assert_eq!(c.handle(packet, secs(100)), expected);
    check(&mut c, &good[..100], Event::Malformed(Malformed::TooShort(100)));
    check(
        &mut c,
        &reply(xid ^ 1, MAC, OFFERED, MessageType::Offer, &[(OPT_SERVER_ID, &[1, 2, 3, 4])]),
        Event::Ignored("another transaction"),
    );
    check(
        &mut c,
        &reply(xid, [1; 6], OFFERED, MessageType::Offer, &[(OPT_SERVER_ID, &[1, 2, 3, 4])]),
        Event::Ignored("another client's hardware address"),
    );
    check(
        &mut c,
        &reply(xid, MAC, OFFERED, MessageType::Offer, &[]),
        Event::Ignored("offer without server id"),
    );
    check(
        &mut c,
        &reply(xid, MAC, Ipv4Addr::UNSPECIFIED, MessageType::Offer, &[(OPT_SERVER_ID, &[1, 2, 3, 4])]),
        Event::Ignored("offer without a usable address"),
    );
    let mut request = good.clone();
    request[0] = 1;
    check(&mut c, &request, Event::Ignored("not a reply"));
    let mut no_cookie = good.clone();
    no_cookie[FIXED_LEN] = 0;
    check(&mut c, &no_cookie, Event::Malformed(Malformed::NoCookie));
    let mut token_ring = good.clone();
    token_ring[1] = 6;
    check(&mut c, &token_ring, Event::Malformed(Malformed::NotEthernet));
    let mut truncated = good[..FIXED_LEN + 4].to_vec();
    truncated.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, 2, OPT_SERVER_ID, 4, 10, 0]);
    check(&mut c, &truncated, Event::Malformed(Malformed::Truncated(OPT_SERVER_ID)));
    let mut no_type = good[..FIXED_LEN + 4].to_vec();
    no_type.push(OPT_END);
    check(&mut c, &no_type, Event::Malformed(Malformed::NoMessageType));
    // After all that, the real offer still works.
    assert!(matches!(c.handle(&good, secs(100)), Event::Offered { .. }));
}

#[test]
fn option_overload_and_split_options() {
    let mut c = client();
    c.poll_transmit(secs(100));
    let mut p = reply(c.xid(), MAC, OFFERED, MessageType::Offer, &[(OPT_OVERLOAD, &[3])]);
    // The server id sits in `file`, the domain split across `sname` and the options field.
    p[108..116].copy_from_slice(&[OPT_SERVER_ID, 4, 10, 0, 2, 2, OPT_END, 0]);
    // RFC 3396 order: the options field, then `file`, then `sname`.
    p[44..52].copy_from_slice(&[OPT_DOMAIN, 3, b'o', b'r', b'g', OPT_END, 0, 0]);
    let end = p.len() - 1;
    p.splice(end..end, [OPT_DOMAIN, 3, b'e', b'x', b'.']);
    let packet = Packet::decode(&p).unwrap();
    assert_eq!(packet.server_id(), Some(SERVER));
    assert_eq!(packet.lease().domain.as_deref(), Some("ex.org"));
    assert!(matches!(c.handle(&p, secs(100)), Event::Offered { server: SERVER, .. }));
}

#[test]
fn classless_routes_replace_the_router_option() {
    let check = |option: &[u8], expected: Option<Vec<(Ipv4Addr, u8, Ipv4Addr)>>| {
        let got = classless_routes(option)
            .map(|r| r.into_iter().map(|r| (r.destination, r.prefix, r.gateway)).collect());
        assert_eq!(got, expected, "{option:?}");
    };
    let ip = Ipv4Addr::new;
    check(&[0, 10, 0, 0, 1], Some(vec![(ip(0, 0, 0, 0), 0, ip(10, 0, 0, 1))]));
    check(
        &[24, 192, 168, 5, 10, 0, 0, 2, 0, 10, 0, 0, 1],
        Some(vec![(ip(192, 168, 5, 0), 24, ip(10, 0, 0, 2)), (ip(0, 0, 0, 0), 0, ip(10, 0, 0, 1))]),
    );
    check(&[9, 10, 128, 1, 1, 1, 1], Some(vec![(ip(10, 128, 0, 0), 9, ip(1, 1, 1, 1))]));
    check(&[32, 1, 2, 3, 4, 5, 6, 7, 8], Some(vec![(ip(1, 2, 3, 4), 32, ip(5, 6, 7, 8))]));
    // Host bits past the prefix, which the kernel refuses (EINVAL, and the boot failed): cleared.
    check(&[20, 10, 0, 255, 10, 0, 2, 2], Some(vec![(ip(10, 0, 240, 0), 20, ip(10, 0, 2, 2))]));
    check(&[1, 255, 10, 0, 2, 2], Some(vec![(ip(128, 0, 0, 0), 1, ip(10, 0, 2, 2))]));
    check(&[33, 1, 2, 3, 4, 5, 6, 7, 8, 9], None);
    check(&[24, 192, 168], None);
    check(&[], Some(vec![]));

    let c = client();
    let a = ack(&c, SERVER, &[(OPT_ROUTER, &[10, 0, 2, 1]), (OPT_CLASSLESS_ROUTES, &[0, 10, 0, 2, 254])]);
    assert_eq!(
        Packet::decode(&a).unwrap().lease().routes,
        [Route { destination: Ipv4Addr::UNSPECIFIED, prefix: 0, gateway: ip(10, 0, 2, 254) }]
    );
    let a = ack(&c, SERVER, &[(OPT_ROUTER, &[10, 0, 2, 1]), (OPT_CLASSLESS_ROUTES, &[40])]);
    assert_eq!(
        Packet::decode(&a).unwrap().lease().routes,
        [Route { destination: Ipv4Addr::UNSPECIFIED, prefix: 0, gateway: ip(10, 0, 2, 1) }],
        "a malformed 121 is ignored"
    );
}

#[test]
fn domain_search_lists() {
    let check = |data: &[u8], expected: Option<&[&str]>| {
        let got = domain_search(data);
        assert_eq!(
            got.as_deref().map(|v| v.iter().map(String::as_str).collect::<Vec<_>>()),
            expected.map(|e| e.to_vec()),
            "{data:?}"
        );
    };
    // RFC 3397's example: eng.apple.com and marketing.apple.com, the second pointing into the first.
    let rfc = [
        3, b'e', b'n', b'g', 5, b'a', b'p', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, 9, b'm', b'a', b'r',
        b'k', b'e', b't', b'i', b'n', b'g', 0xC0, 4,
    ];
    check(&rfc, Some(&["eng.apple.com", "marketing.apple.com"]));
    check(&[3, b'l', b'a', b'n', 0], Some(&["lan"]));
    check(&[], Some(&[]));
    check(&[3, b'l', b'a'], None);
    check(&[0xC0, 0], None);
    check(&[0xC0, 9], None);
    check(&[3, b'a', b' ', b'b', 0], None);
    check(&[70], None);
    // A name of 255 bytes of text, longer than DNS allows (253), pieced from pointers: no name.
    let mut long = Vec::new();
    for _ in 0..4 {
        long.push(63);
        long.extend_from_slice(&[b'a'; 63]);
    }
    long.push(0);
    check(&long, None);
    let c = client();
    let a = ack(&c, SERVER, &[(OPT_DOMAIN_SEARCH, &rfc)]);
    assert_eq!(Packet::decode(&a).unwrap().lease().search, ["eng.apple.com", "marketing.apple.com"]);
}

#[test]
fn odd_values_in_an_ack() {
    let c = client();
    let lease = |extra: &[(u8, &[u8])]| Packet::decode(&ack(&c, SERVER, extra)).unwrap().lease();
    assert_eq!(lease(&[]).prefix, 8, "no mask: classful");
    assert_eq!(lease(&[(OPT_SUBNET_MASK, &[255, 0, 255, 0])]).prefix, 8, "a non-contiguous mask is ignored");
    assert_eq!(lease(&[(OPT_MTU, &[0, 68])]).mtu, None, "an MTU below 576 is ignored");
    assert_eq!(lease(&[(OPT_HOSTNAME, b"node\0junk")]).hostname.as_deref(), Some("node"));
    assert_eq!(lease(&[(OPT_HOSTNAME, b"bad name")]).hostname, None);
    assert_eq!(lease(&[(OPT_SUBNET_MASK, &[0, 0, 0, 0])]).prefix, 8, "a /0 mask is ignored: classful");
    // Names go into /etc/hostname and /etc/resolv.conf: RFC 1123 or nothing, and said so.
    let l = lease(&[
        (OPT_HOSTNAME, b"x;reboot"),
        (OPT_DOMAIN, b"-lan"),
        (OPT_DOMAIN_SEARCH, &[3, b'a', b'_', b'b', 0, 3, b'l', b'a', b'n', 0]),
    ]);
    assert_eq!((l.hostname, l.domain, l.search), (None, None, vec!["lan".to_owned()]));
    assert_eq!(
        l.refused,
        [
            "host name \"x;reboot\" (option 12): not a valid host name",
            "domain \"-lan\" (option 15): not a valid host name",
            "search domain \"a_b\" (option 119): not a valid host name"
        ]
    );
    let l = lease(&[(OPT_HOSTNAME, &[b'h'; 254]), (OPT_DOMAIN, b"rack3.example.org")]);
    assert_eq!((l.hostname, l.domain.as_deref()), (None, Some("rack3.example.org")));
    let mut many = Vec::new();
    for i in 0..40u8 {
        many.extend_from_slice(&[2, b'd', b'a' + i % 26, 0]);
    }
    let l = lease(&[(OPT_DOMAIN_SEARCH, &many)]);
    assert_eq!(l.search.len(), 32);
    assert_eq!(l.refused, ["8 search domains beyond the first 32 (option 119)"]);
    assert_eq!(lease(&[(OPT_DNS, &[1, 2, 3, 4, 5, 6])]).dns, [Ipv4Addr::new(1, 2, 3, 4)]);
}
