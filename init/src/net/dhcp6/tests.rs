//! DHCPv6 client tests: server messages built option by option, the way dnsmasq and ISC Kea
//! lay them out, fed to the client; and property tests over random and mutated packets.

use super::*;
use proptest::prelude::*;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const IAID: u32 = 0x0012_3456;
const SERVER: &[u8] = &[0, 1, 0, 1, 0x2a, 0x2b, 0x2c, 0x2d, 0xde, 0xad, 0xbe, 0xef, 0, 1];
const OTHER: &[u8] = &[0, 3, 0, 1, 2, 2, 2, 2, 2, 2];
const OFFERED: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x15);

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn s(v: u64) -> Duration {
    Duration::from_secs(v)
}

fn opt(code: u16, value: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    put(&mut p, code, value);
    p
}

fn our_duid() -> Vec<u8> {
    Identity { mac: MAC }.duid()
}

fn status_opt(code: u16, message: &str) -> Vec<u8> {
    let mut v = code.to_be_bytes().to_vec();
    v.extend_from_slice(message.as_bytes());
    opt(OPT_STATUS_CODE, &v)
}

fn iaaddr(address: Ipv6Addr, preferred: u32, valid: u32, inner: &[Vec<u8>]) -> Vec<u8> {
    let mut v = address.octets().to_vec();
    v.extend_from_slice(&preferred.to_be_bytes());
    v.extend_from_slice(&valid.to_be_bytes());
    inner.iter().for_each(|o| v.extend_from_slice(o));
    opt(OPT_IAADDR, &v)
}

fn ia_na_opt(iaid: u32, t1: u32, t2: u32, inner: &[Vec<u8>]) -> Vec<u8> {
    let mut v = iaid.to_be_bytes().to_vec();
    v.extend_from_slice(&t1.to_be_bytes());
    v.extend_from_slice(&t2.to_be_bytes());
    inner.iter().for_each(|o| v.extend_from_slice(o));
    opt(OPT_IA_NA, &v)
}

/// The usual IA_NA: our IAID, T1 1800, T2 2880, the offered address for 3600/7200 s.
fn good_ia() -> Vec<u8> {
    ia_na_opt(IAID, 1800, 2880, &[iaaddr(OFFERED, 3600, 7200, &[])])
}

fn message(kind: MessageType, xid: u32, options: &[Vec<u8>]) -> Vec<u8> {
    let mut p = vec![kind as u8];
    p.extend_from_slice(&xid.to_be_bytes()[1..]);
    options.iter().for_each(|o| p.extend_from_slice(o));
    p
}

/// A server message to `c`'s transaction with our client id, `server`'s id and `extra`.
fn from_server(c: &Client, kind: MessageType, server: &[u8], extra: &[Vec<u8>]) -> Vec<u8> {
    let mut options = vec![opt(OPT_CLIENTID, &our_duid()), opt(OPT_SERVERID, server)];
    options.extend_from_slice(extra);
    message(kind, c.xid(), &options)
}

fn advertise(c: &Client, server: &[u8], preference: Option<u8>) -> Vec<u8> {
    let mut extra = vec![good_ia()];
    extra.extend(preference.map(|p| opt(OPT_PREFERENCE, &[p])));
    from_server(c, MessageType::Advertise, server, &extra)
}

fn stateful() -> Client {
    Client::new(Identity { mac: MAC }, Mode::Stateful, 42, s(100))
}

/// A client that has sent its first Solicit; returns it and when the first RT ends.
fn soliciting() -> (Client, Duration) {
    let mut c = stateful();
    let t = c.poll_transmit(c.next_deadline()).unwrap();
    assert_eq!((t.kind, t.attempt), (MessageType::Solicit, 1));
    let end = c.next_deadline();
    (c, end)
}

/// A client that took `SERVER`'s Advertise and sent its first Request.
fn requesting() -> Client {
    let (mut c, _) = soliciting();
    let e = c.handle(&advertise(&c, SERVER, Some(255)), s(100));
    assert!(matches!(e, Event::Advertised { selected: true, .. }), "{e:?}");
    let t = c.poll_transmit(s(100)).unwrap();
    assert_eq!((t.kind, t.attempt), (MessageType::Request, 1));
    c
}

fn reply(c: &Client, server: &[u8], extra: &[Vec<u8>]) -> Vec<u8> {
    from_server(c, MessageType::Reply, server, extra)
}

/// The options of a message the client sent, as a server reads them.
fn sent_options(p: &[u8]) -> Vec<(u16, Vec<u8>)> {
    walk(&p[4..]).unwrap().into_iter().map(|(c, v)| (c, v.to_vec())).collect()
}

fn sent(p: &[u8], code: u16) -> Option<Vec<u8>> {
    sent_options(p).into_iter().find(|(c, _)| *c == code).map(|(_, v)| v)
}

#[test]
fn identity_is_duid_ll_and_the_macs_last_four_bytes() {
    let id = Identity { mac: MAC };
    assert_eq!(id.duid(), [0, 3, 0, 1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    assert_eq!(id.iaid(), IAID);
    assert_eq!(ALL_SERVERS.to_string(), "ff02::1:2");
    assert_eq!((CLIENT_PORT, SERVER_PORT), (546, 547));
}

#[test]
fn message_names() {
    assert_eq!(MessageType::InformationRequest.name(), "INFORMATION-REQUEST");
    assert_eq!(MessageType::from_u8(7).map(MessageType::name), Some("REPLY"));
    assert_eq!((1..=13).filter_map(MessageType::from_u8).count(), 13);
    assert_eq!(MessageType::from_u8(0), None);
    assert_eq!(MessageType::from_u8(14), None);
}

#[test]
fn nothing_is_taken_before_the_question() {
    let mut c = stateful();
    let early = advertise(&c, SERVER, Some(255));
    assert_eq!(c.handle(&early, s(100)), Event::Ignored("an answer before the question"));
    let t = c.poll_transmit(c.next_deadline()).unwrap();
    assert_eq!(t.kind, MessageType::Solicit, "nothing held: the Solicit goes out");
    assert!(matches!(c.handle(&early, s(101)), Event::Advertised { selected: true, .. }));
    let early = reply(&c, SERVER, &[good_ia()]);
    assert_eq!(c.handle(&early, s(101)), Event::Ignored("an answer before the question"));
}

#[test]
fn solicit_carries_what_servers_need() {
    let mut c = stateful();
    let due = c.next_deadline();
    assert_eq!(c.poll_transmit(due - ms(1)), None, "nothing before the initial delay");
    let t = c.poll_transmit(due).unwrap();
    let p = &t.packet;
    assert_eq!(p[0], 1, "SOLICIT");
    assert_eq!(u32::from_be_bytes([0, p[1], p[2], p[3]]), c.xid());
    let codes: Vec<u16> = sent_options(p).iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, [OPT_CLIENTID, OPT_ELAPSED_TIME, OPT_ORO, OPT_IA_NA]);
    assert_eq!(sent(p, OPT_CLIENTID).unwrap(), our_duid());
    assert_eq!(sent(p, OPT_ELAPSED_TIME).unwrap(), [0, 0], "0 in the first message");
    assert_eq!(sent(p, OPT_ORO).unwrap(), [0, 23, 0, 24, 0, 56, 0, 31, 0, 82]);
    let ia = ia_na(&sent(p, OPT_IA_NA).unwrap()).unwrap();
    assert_eq!(ia, IaNa { iaid: IAID, t1: 0, t2: 0, addresses: vec![], status: None });
    assert_eq!(Packet::decode(p).unwrap().kind, MessageType::Solicit, "what we send, we read");
}

#[test]
fn elapsed_time_counts_hundredths_and_caps() {
    let (mut c, end) = soliciting();
    let t = c.poll_transmit(end).unwrap();
    let elapsed = u16::from_be_bytes(sent(&t.packet, OPT_ELAPSED_TIME).unwrap().try_into().unwrap());
    let expected = (end - c.started).as_millis() / 10;
    assert!(expected > 0);
    assert_eq!(u128::from(elapsed), expected);
    let p = c.encode(MessageType::Solicit, c.started + s(700));
    assert_eq!(sent(&p, OPT_ELAPSED_TIME).unwrap(), [0xff, 0xff], "capped at 0xffff past 655.35 s");
}

#[test]
fn the_first_message_waits_up_to_a_second() {
    let mut delays = Vec::new();
    for seed in 0..200 {
        for mode in [Mode::Stateful, Mode::Stateless] {
            let c = Client::new(Identity { mac: MAC }, mode, seed, s(10));
            let d = c.next_deadline() - s(10);
            assert!(d <= s(1), "{d:?}");
            delays.push(d);
        }
    }
    assert!(delays.iter().any(|d| *d < ms(300)) && delays.iter().any(|d| *d > ms(700)), "spread over 0..1 s");
}

/// The gaps between sends of one message, for `n` sends.
fn gaps(c: &mut Client, n: usize) -> Vec<Duration> {
    let mut out = Vec::new();
    for _ in 0..n {
        let now = c.next_deadline();
        c.poll_transmit(now).unwrap();
        out.push(c.next_deadline() - now);
    }
    out
}

#[test]
fn solicit_retransmission_follows_rfc_8415_section_15() {
    let mut firsts = Vec::new();
    for seed in 0..300 {
        let mut c = Client::new(Identity { mac: MAC }, Mode::Stateful, seed, s(0));
        let g = gaps(&mut c, 16);
        // First RT: IRT + RAND*IRT with RAND in (0, 0.1]: strictly more than 1 s.
        assert!(g[0] > s(1) && g[0] <= ms(1100), "first RT {:?}", g[0]);
        firsts.push(g[0]);
        for w in g.windows(2) {
            let (prev, rt) = (w[0].as_secs_f64(), w[1].as_secs_f64());
            if rt < 3600.0 * 0.9 - 1e-6 {
                assert!(rt >= prev * 1.9 - 1e-6 && rt <= prev * 2.1 + 1e-6, "{prev} then {rt}");
            } else {
                // MRT + RAND*MRT once doubling passes SOL_MAX_RT.
                assert!((3240.0 - 1e-6..=3960.0 + 1e-6).contains(&rt), "capped RT {rt}");
            }
        }
        assert!(g[15] >= s(3240) && g[15] <= s(3960), "seed {seed}: {:?}", g[15]);
    }
    let mut capped: Vec<Duration> = Vec::new();
    for seed in 0..100 {
        let mut c = Client::new(Identity { mac: MAC }, Mode::Stateful, seed, s(0));
        capped.push(gaps(&mut c, 16)[15]);
    }
    assert!(capped.iter().any(|g| *g < s(3500)) && capped.iter().any(|g| *g > s(3700)), "MRT + RAND*MRT");
    firsts.sort();
    assert!(firsts[0] < ms(1020) && firsts[firsts.len() - 1] > ms(1080), "RAND spreads: {firsts:?}");
}

#[test]
fn rt_bounds_over_many_seeds() {
    let spread: Vec<Duration> = (1..200u64).map(|mut seed| first_rt(s(1), false, &mut seed)).collect();
    assert!(
        spread.iter().any(|d| *d < ms(950)) && spread.iter().any(|d| *d > ms(1050)),
        "RAND in [-0.1, 0.1]"
    );
    for seed in 1..2000u64 {
        let mut rng = seed;
        let first = first_rt(s(1), false, &mut rng);
        assert!((ms(900)..=ms(1100)).contains(&first), "{first:?}");
        let rt = next_rt(s(10), s(30), &mut rng);
        assert!((s(19)..=s(21)).contains(&rt), "{rt:?}");
        let capped = next_rt(s(20), s(30), &mut rng);
        assert!(capped <= s(33) && capped >= s(27), "{capped:?}");
        // 2*14 + 10% = 29.4 s stays under the cap: doubled, not capped.
        let under = next_rt(s(14), s(30), &mut rng);
        assert!((ms(26600)..=ms(29400)).contains(&under), "{under:?}");
        assert!(next_rt(s(1000), Duration::ZERO, &mut rng) >= s(1900), "MRT 0: no cap");
    }
}

#[test]
fn request_retransmits_ten_times_then_solicits_again() {
    let mut c = requesting();
    let first_xid = c.xid();
    let mut g = vec![c.next_deadline() - s(100)];
    g.extend(gaps(&mut c, 9));
    assert!(g[0] >= ms(900) && g[0] <= ms(1100), "REQ_TIMEOUT ±10%: {:?}", g[0]);
    assert!(g.iter().skip(5).all(|g| *g >= s(27) && *g <= s(33)), "REQ_MAX_RT 30 s: {g:?}");
    assert_eq!(c.attempt, REQ_MAX_RC);
    assert_eq!(c.xid(), first_xid, "retransmissions keep the transaction id");
    let t = c.poll_transmit(c.next_deadline()).unwrap();
    assert_eq!((t.kind, t.attempt), (MessageType::Solicit, 1), "the 11th send is a new Solicit");
    assert_ne!(c.xid(), first_xid);
}

#[test]
fn request_names_the_server_and_the_address() {
    let c = requesting();
    let p = c.encode(MessageType::Request, s(100));
    let codes: Vec<u16> = sent_options(&p).iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, [OPT_CLIENTID, OPT_SERVERID, OPT_ELAPSED_TIME, OPT_ORO, OPT_IA_NA]);
    assert_eq!(p[0], MessageType::Request as u8);
    assert_eq!(sent(&p, OPT_SERVERID).unwrap(), SERVER);
    let ia = ia_na(&sent(&p, OPT_IA_NA).unwrap()).unwrap();
    assert_eq!(ia.iaid, IAID);
    assert_eq!(ia.addresses, [IaAddr { address: OFFERED, preferred: 0, valid: 0, status: None }]);
}

#[test]
fn advertises_are_collected_for_the_first_rt_and_the_most_preferred_taken() {
    let (mut c, end) = soliciting();
    let solicit_xid = c.xid();
    let e = c.handle(&advertise(&c, OTHER, Some(10)), s(100));
    assert_eq!(
        e,
        Event::Advertised { server: OTHER.to_vec(), address: OFFERED, preference: 10, selected: false }
    );
    let e = c.handle(&advertise(&c, SERVER, Some(50)), s(100));
    assert!(matches!(e, Event::Advertised { preference: 50, selected: false, .. }), "{e:?}");
    let e = c.handle(&advertise(&c, OTHER, Some(50)), s(100));
    assert_eq!(e, Event::Ignored("a more preferred advertise is held"), "a tie keeps the first");
    assert_eq!(c.poll_transmit(end - ms(1)), None);
    let t = c.poll_transmit(end).unwrap();
    assert_eq!((t.kind, t.attempt), (MessageType::Request, 1));
    assert_eq!(sent(&t.packet, OPT_SERVERID).unwrap(), SERVER);
    assert_ne!(c.xid(), solicit_xid, "the Request is a new exchange");
    assert_eq!(sent(&t.packet, OPT_ELAPSED_TIME).unwrap(), [0, 0]);
}

#[test]
fn preference_255_is_taken_at_once() {
    let (mut c, _) = soliciting();
    c.handle(&advertise(&c, OTHER, Some(10)), s(100));
    let e = c.handle(&advertise(&c, SERVER, Some(255)), s(100));
    assert!(matches!(e, Event::Advertised { preference: 255, selected: true, .. }), "{e:?}");
    let t = c.poll_transmit(s(100)).unwrap();
    assert_eq!(t.kind, MessageType::Request);
    assert_eq!(sent(&t.packet, OPT_SERVERID).unwrap(), SERVER);
}

#[test]
fn after_the_first_rt_the_first_acceptable_advertise_is_taken() {
    let (mut c, end) = soliciting();
    let t = c.poll_transmit(end).unwrap();
    assert_eq!((t.kind, t.attempt), (MessageType::Solicit, 2), "nothing came: Solicit again");
    let e = c.handle(&advertise(&c, OTHER, None), end + ms(10));
    assert!(matches!(e, Event::Advertised { preference: 0, selected: true, .. }), "{e:?}");
    assert_eq!(c.poll_transmit(end + ms(10)).unwrap().kind, MessageType::Request);
}

#[test]
fn a_held_advertise_still_wins_when_a_worse_one_comes_late() {
    let (mut c, end) = soliciting();
    c.handle(&advertise(&c, SERVER, Some(9)), s(100));
    // The first RT ended but the caller has not polled yet.
    let e = c.handle(&advertise(&c, OTHER, Some(3)), end);
    assert_eq!(
        e,
        Event::Advertised { server: SERVER.to_vec(), address: OFFERED, preference: 9, selected: true }
    );
}

#[test]
fn advertises_without_addresses_are_ignored() {
    let (mut c, _) = soliciting();
    let check = |c: &mut Client, extra: &[Vec<u8>], expected: &str| {
        let packet = from_server(c, MessageType::Advertise, SERVER, extra);
        assert_eq!(c.handle(&packet, s(100)), Event::Ignored(Box::leak(expected.into())), "{extra:?}");
    };
    let fail = "advertise reports a failure status";
    let none = "advertise without a usable address";
    check(&mut c, &[status_opt(STATUS_NO_ADDRS_AVAIL, "no addresses"), good_ia()], fail);
    check(&mut c, &[ia_na_opt(IAID, 0, 0, &[status_opt(STATUS_NO_ADDRS_AVAIL, "")])], fail);
    check(&mut c, &[ia_na_opt(IAID, 0, 0, &[])], none);
    check(&mut c, &[], none);
    check(&mut c, &[ia_na_opt(IAID + 1, 0, 0, &[iaaddr(OFFERED, 1, 2, &[])])], none);
    check(&mut c, &[ia_na_opt(IAID, 0, 0, &[iaaddr(OFFERED, 3, 2, &[])])], none);
    check(&mut c, &[ia_na_opt(IAID, 0, 0, &[iaaddr(OFFERED, 0, 0, &[])])], none);
    check(&mut c, &[ia_na_opt(IAID, 0, 0, &[iaaddr(Ipv6Addr::UNSPECIFIED, 1, 2, &[])])], none);
    check(&mut c, &[ia_na_opt(IAID, 0, 0, &[iaaddr("ff02::1".parse().unwrap(), 1, 2, &[])])], none);
    check(&mut c, &[ia_na_opt(IAID, 9, 5, &[iaaddr(OFFERED, 1, 2, &[])])], none);
    check(
        &mut c,
        &[ia_na_opt(IAID, 0, 0, &[iaaddr(OFFERED, 1, 2, &[status_opt(STATUS_NOT_ON_LINK, "")])])],
        none,
    );
    // The second address is fine: taken.
    let two = ia_na_opt(IAID, 0, 0, &[iaaddr(OFFERED, 3, 2, &[]), iaaddr(OFFERED, 2, 3, &[])]);
    let packet = from_server(&c, MessageType::Advertise, SERVER, &[two]);
    assert!(matches!(c.handle(&packet, s(100)), Event::Advertised { address: OFFERED, .. }));
}

#[test]
fn foreign_messages_change_nothing() {
    let (mut c, _) = soliciting();
    let xid = c.xid();
    let good = advertise(&c, SERVER, None);
    let check =
        |c: &mut Client, packet: &[u8], expected: Event| assert_eq!(c.handle(packet, s(100)), expected);
    let mut other_xid = good.clone();
    other_xid[3] ^= 1;
    check(&mut c, &other_xid, Event::Ignored("another transaction"));
    let foreign = message(
        MessageType::Advertise,
        xid,
        &[opt(OPT_CLIENTID, OTHER), opt(OPT_SERVERID, SERVER), good_ia()],
    );
    check(&mut c, &foreign, Event::Ignored("another client's DUID"));
    let anonymous = message(MessageType::Advertise, xid, &[opt(OPT_SERVERID, SERVER), good_ia()]);
    check(&mut c, &anonymous, Event::Ignored("no client id"));
    let serverless = message(MessageType::Advertise, xid, &[opt(OPT_CLIENTID, &our_duid()), good_ia()]);
    check(&mut c, &serverless, Event::Ignored("no server id"));
    let mut solicit = good.clone();
    solicit[0] = MessageType::Solicit as u8;
    check(&mut c, &solicit, Event::Ignored("not an Advertise or Reply"));
    let early_reply = reply(&c, SERVER, &[good_ia()]);
    check(&mut c, &early_reply, Event::Ignored("not expected in this state"));
    check(&mut c, &good[..3], Event::Malformed(Malformed::TooShort(3)));
    let mut unknown = good.clone();
    unknown[0] = 99;
    check(&mut c, &unknown, Event::Malformed(Malformed::UnknownType(99)));
    let mut cut = good.clone();
    cut.pop();
    assert!(matches!(c.handle(&cut, s(100)), Event::Malformed(_)));
    assert!(matches!(c.handle(&good, s(100)), Event::Advertised { .. }), "the real one still works");
}

#[test]
fn full_exchange() {
    let mut c = requesting();
    let router: Ipv6Addr = "fe80::1".parse().unwrap();
    let dns1: Ipv6Addr = "2001:db8::53".parse().unwrap();
    let dns2: Ipv6Addr = "2001:db8::54".parse().unwrap();
    let ntp: Ipv6Addr = "2001:db8::123".parse().unwrap();
    let sntp: Ipv6Addr = "2001:db8::124".parse().unwrap();
    let dns = [dns1.octets(), dns2.octets()].concat();
    let mut ntp_opt = opt(NTP_SUBOPTION_SRV_ADDR, &ntp.octets());
    ntp_opt.extend(opt(3, b"\x03ntp\x03lan\x00")); // FQDN suboption: ignored
    ntp_opt.extend(opt(2, &"ff02::101".parse::<Ipv6Addr>().unwrap().octets())); // multicast: ignored
    let packet = reply(
        &c,
        SERVER,
        &[
            good_ia(),
            opt(OPT_DNS_SERVERS, &dns),
            opt(OPT_DOMAIN_LIST, b"\x04rack\x07example\x03org\x00\x03lan\x00"),
            opt(OPT_NTP_SERVER, &ntp_opt),
            opt(OPT_SNTP_SERVERS, &[sntp.octets(), ntp.octets()].concat()),
            status_opt(STATUS_SUCCESS, "all fine"),
        ],
    );
    let e = c.handle_from(&packet, Some(router), s(101));
    assert_eq!(
        e,
        Event::Bound(Lease6 {
            address: OFFERED,
            preferred: s(3600),
            valid: s(7200),
            t1: s(1800),
            t2: s(2880),
            server_duid: SERVER.to_vec(),
            server_address: Some(router),
            dns: vec![dns1, dns2],
            search: vec!["rack.example.org".into(), "lan".into()],
            ntp: vec![ntp, sntp],
            status_message: Some("all fine".into()),
            refused: vec![],
        })
    );
    assert_eq!(c.poll_transmit(s(10_000)), None, "bound: nothing more to send");
    assert_eq!(c.next_deadline(), Duration::MAX);
    assert_eq!(c.handle(&packet, s(102)), Event::Ignored("not expected in this state"));
}

#[test]
fn t1_and_t2_default_from_the_preferred_lifetime() {
    let check = |t1: u32, t2: u32, preferred: u32, expected: (u64, u64)| {
        let mut c = requesting();
        let ia = ia_na_opt(IAID, t1, t2, &[iaaddr(OFFERED, preferred, u32::MAX, &[])]);
        let Event::Bound(l) = c.handle(&reply(&c, SERVER, &[ia]), s(101)) else { panic!() };
        assert_eq!((l.t1, l.t2), (s(expected.0), s(expected.1)), "{t1} {t2} {preferred}");
        assert!(l.t1 <= l.t2);
    };
    check(0, 0, 1000, (500, 800));
    check(300, 0, 1000, (300, 800));
    check(0, 600, 1000, (500, 600));
    check(900, 0, 1000, (900, 900));
    check(100, 200, 1000, (100, 200));
    check(0, 0, u32::MAX, (u64::from(u32::MAX), u64::from(u32::MAX)));
}

#[test]
fn replies_are_checked() {
    let mut c = requesting();
    let xid = c.xid();
    let check = |c: &mut Client, packet: &[u8], expected: &str| {
        assert_eq!(c.handle(packet, s(101)), Event::Ignored(Box::leak(expected.into())));
    };
    let mut wrong_xid = reply(&c, SERVER, &[good_ia()]);
    wrong_xid[1] ^= 0x80;
    check(&mut c, &wrong_xid, "another transaction");
    let foreign =
        message(MessageType::Reply, xid, &[opt(OPT_CLIENTID, OTHER), opt(OPT_SERVERID, SERVER), good_ia()]);
    check(&mut c, &foreign, "another client's DUID");
    let other_server = reply(&c, OTHER, &[good_ia()]);
    check(&mut c, &other_server, "reply from another server");
    let late_advertise = advertise(&c, SERVER, Some(255));
    check(&mut c, &late_advertise, "not expected in this state");
    assert!(matches!(c.handle(&reply(&c, SERVER, &[good_ia()]), s(101)), Event::Bound(_)));
}

#[test]
fn failures_in_a_reply_start_over_with_solicit() {
    let check = |extra: Vec<Vec<u8>>, status: u16, text: &str| {
        let mut c = requesting();
        let xid = c.xid();
        let e = c.handle(&reply(&c, SERVER, &extra), s(101));
        assert_eq!(e, Event::Failed { status, message: text.into() }, "{extra:?}");
        assert_ne!(c.xid(), xid);
        let t = c.poll_transmit(s(101)).unwrap();
        assert_eq!((t.kind, t.attempt), (MessageType::Solicit, 1), "at once");
    };
    check(vec![status_opt(STATUS_UNSPEC_FAIL, "busy"), good_ia()], STATUS_UNSPEC_FAIL, "busy");
    check(vec![status_opt(STATUS_USE_MULTICAST, "")], STATUS_USE_MULTICAST, "");
    let ia = |code, text: &str| ia_na_opt(IAID, 0, 0, &[status_opt(code, text)]);
    check(vec![ia(STATUS_NOT_ON_LINK, "wrong link")], STATUS_NOT_ON_LINK, "wrong link");
    check(vec![ia(STATUS_NO_ADDRS_AVAIL, "pool empty")], STATUS_NO_ADDRS_AVAIL, "pool empty");
    check(vec![], STATUS_NO_ADDRS_AVAIL, "the reply holds no usable address");
    check(vec![ia_na_opt(IAID, 0, 0, &[iaaddr(OFFERED, 9, 0, &[])])], 2, "the reply holds no usable address");
    let on_link = iaaddr(OFFERED, 1, 2, &[status_opt(STATUS_NOT_ON_LINK, "moved")]);
    check(vec![ia_na_opt(IAID, 0, 0, &[on_link])], STATUS_NOT_ON_LINK, "moved");
    // Control characters in the server's text do not reach the console.
    check(vec![status_opt(1, "a\x1b[2Jb\n")], 1, "a?[2Jb?");
    assert_eq!(status_name(STATUS_NOT_ON_LINK), "NotOnLink");
    assert_eq!(status_name(STATUS_NO_ADDRS_AVAIL), "NoAddrsAvail");
}

#[test]
fn a_servers_sol_max_rt_is_honoured_within_bounds() {
    let check = |value: u32, expected: Duration| {
        let (mut c, _) = soliciting();
        let packet = from_server(
            &c,
            MessageType::Advertise,
            SERVER,
            &[status_opt(STATUS_NO_ADDRS_AVAIL, ""), opt(OPT_SOL_MAX_RT, &value.to_be_bytes())],
        );
        assert_eq!(c.handle(&packet, s(100)), Event::Ignored("advertise reports a failure status"));
        assert_eq!(c.sol_max_rt, expected, "{value}");
        let g = gaps(&mut c, 20);
        let cap = expected.as_secs_f64() * 1.1;
        assert!(g.iter().all(|g| g.as_secs_f64() <= cap + 1e-6), "{g:?}");
        assert!(g[19].as_secs_f64() >= expected.as_secs_f64() * 0.9 - 1e-6);
    };
    check(60, s(60));
    check(86400, s(86400));
    check(59, s(3600));
    check(86401, s(3600));
    check(120, s(120));
}

fn stateless() -> Client {
    Client::new(Identity { mac: MAC }, Mode::Stateless, 7, s(5))
}

#[test]
fn stateless_asks_for_information_only() {
    let mut c = stateless();
    let t = c.poll_transmit(c.next_deadline()).unwrap();
    assert_eq!((t.kind, t.attempt), (MessageType::InformationRequest, 1));
    assert_eq!(t.packet[0], 11);
    let codes: Vec<u16> = sent_options(&t.packet).iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, [OPT_CLIENTID, OPT_ELAPSED_TIME, OPT_ORO], "no IA_NA");
    assert_eq!(sent(&t.packet, OPT_ORO).unwrap(), [0, 23, 0, 24, 0, 56, 0, 31, 0, 32, 0, 83]);
    // An Advertise is not an answer here.
    assert_eq!(
        c.handle(&advertise(&c, SERVER, Some(255)), s(6)),
        Event::Ignored("not expected in this state")
    );
    let dns: Ipv6Addr = "2001:db8::53".parse().unwrap();
    let packet = reply(
        &c,
        SERVER,
        &[
            opt(OPT_DNS_SERVERS, &dns.octets()),
            opt(OPT_INFORMATION_REFRESH_TIME, &7200u32.to_be_bytes()),
            opt(OPT_INF_MAX_RT, &600u32.to_be_bytes()),
        ],
    );
    let Event::Informed(info) = c.handle(&packet, s(6)) else { panic!() };
    assert_eq!(info.dns, [dns]);
    assert_eq!(info.refresh, s(7200));
    assert_eq!(info.server_duid, SERVER);
    assert_eq!(c.inf_max_rt, s(600));
    assert_eq!(c.poll_transmit(s(10_000)), None);
}

#[test]
fn stateless_retransmission_and_failure() {
    let mut c = stateless();
    let g = gaps(&mut c, 16);
    assert!(g[0] >= ms(900) && g[0] <= ms(1100), "INF_TIMEOUT ±10%, RAND may be negative: {:?}", g[0]);
    assert!(g[15] >= s(3240) && g[15] <= s(3960), "INF_MAX_RT: {:?}", g[15]);
    let xid = c.xid();
    let fail = [status_opt(STATUS_UNSPEC_FAIL, "later"), opt(OPT_INF_MAX_RT, &60u32.to_be_bytes())];
    let e = c.handle(&reply(&c, SERVER, &fail), s(9000));
    assert_eq!(e, Event::Failed { status: STATUS_UNSPEC_FAIL, message: "later".into() });
    assert_ne!(c.xid(), xid);
    let t = c.poll_transmit(s(9000)).unwrap();
    assert_eq!((t.kind, t.attempt), (MessageType::InformationRequest, 1));
    // The failed Reply's INF_MAX_RT (60 s) caps the new exchange's retransmissions.
    let g = gaps(&mut c, 12);
    assert!(g.iter().all(|g| *g <= s(66)) && g[11] >= s(54), "{g:?}");
    let mut c2 = stateless();
    c2.poll_transmit(c2.next_deadline());
    let low = [status_opt(STATUS_UNSPEC_FAIL, ""), opt(OPT_INF_MAX_RT, &59u32.to_be_bytes())];
    c2.handle(&reply(&c2, SERVER, &low), s(7));
    assert_eq!(c2.inf_max_rt, INF_MAX_RT, "below 60 s: ignored");
    let packet = reply(&c, SERVER, &[opt(OPT_INFORMATION_REFRESH_TIME, &5u32.to_be_bytes())]);
    let Event::Informed(info) = c.handle(&packet, s(9001)) else { panic!() };
    assert_eq!(info.refresh, s(600), "INFORMATION_REFRESH_TIME has a floor of 600 s");
}

#[test]
fn info_is_checked_and_bounded() {
    let info = |extra: &[Vec<u8>]| {
        let mut p = vec![opt(OPT_SERVERID, SERVER)];
        p.extend_from_slice(extra);
        Packet::decode(&message(MessageType::Reply, 1, &p)).unwrap().info(None)
    };
    let i = info(&[opt(OPT_DNS_SERVERS, &[1; 20])]);
    assert_eq!(
        (i.dns.len(), i.refused.as_slice()),
        (0, &["DNS server (option 23): 20 bytes, not a list of addresses".to_owned()][..])
    );
    let i = info(&[opt(
        OPT_DNS_SERVERS,
        &[Ipv6Addr::UNSPECIFIED.octets(), Ipv6Addr::LOCALHOST.octets()].concat(),
    )]);
    assert_eq!(i.dns, Vec::<Ipv6Addr>::new());
    assert_eq!(
        i.refused,
        [
            "DNS server :: (option 23): not a unicast address",
            "DNS server ::1 (option 23): not a unicast address"
        ]
    );
    let many: Vec<u8> =
        (1..=20u8).flat_map(|n| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n.into()).octets()).collect();
    let i = info(&[opt(OPT_DNS_SERVERS, &many)]);
    assert_eq!(i.dns.len(), 16);
    assert_eq!(i.refused, ["4 DNS servers (option 23) beyond the first 16"]);
    let i = info(&[opt(OPT_DOMAIN_LIST, b"\x03a_b\x00\x04-lan\x00\x03lan\x00\x03lan\x00")]);
    assert_eq!(i.search, ["lan"], "repeats dropped");
    assert_eq!(
        i.refused,
        [
            "search domain \"a_b\" (option 24): not a valid host name",
            "search domain \"-lan\" (option 24): not a valid host name"
        ]
    );
    let i = info(&[opt(OPT_DOMAIN_LIST, b"\x03lan\xc0\x00")]);
    assert_eq!(
        (i.search.len(), i.refused.as_slice()),
        (0, &["domain list (option 24): malformed".to_owned()][..])
    );
    let mut names = Vec::new();
    for n in 0..40u8 {
        names.extend_from_slice(&[2, b'd', b'a' + n % 26, 1, b'a' + n / 26, 0]);
    }
    let i = info(&[opt(OPT_DOMAIN_LIST, &names)]);
    assert_eq!(i.search.len(), 32);
    assert_eq!(i.refused, ["8 search domains beyond the first 32 (option 24)"]);
    let i = info(&[opt(OPT_NTP_SERVER, &[0, 1, 0, 4, 1, 2, 3, 4]), opt(OPT_NTP_SERVER, &[0, 1, 0, 9])]);
    assert_eq!(i.ntp, Vec::<Ipv6Addr>::new());
    assert_eq!(
        i.refused,
        [
            "NTP server (option 56): an address of 4 bytes",
            "NTP server (option 56): malformed suboptions (Truncated(1))"
        ]
    );
    let long = "x".repeat(500);
    let i = info(&[status_opt(0, &long)]);
    assert_eq!(i.status_message.map(|m| m.len()), Some(MAX_MESSAGE));
    assert_eq!(info(&[]).refresh, s(86400));
}

#[test]
fn domain_lists() {
    let check = |data: &[u8], expected: Option<&[&str]>| {
        let got = domain_list(data);
        assert_eq!(
            got.as_deref().map(|v| v.iter().map(String::as_str).collect::<Vec<_>>()),
            expected.map(<[&str]>::to_vec),
            "{data:?}"
        );
    };
    check(b"\x03eng\x05apple\x03com\x00\x03lan\x00", Some(&["eng.apple.com", "lan"]));
    check(b"\x03lan\x00\x00\x00\x00", Some(&["lan"]));
    check(b"", Some(&[]));
    check(b"\x03la", None);
    check(b"\x03lan", None);
    check(b"\x03eng\xc0\x00", None);
    check(b"\x03a b\x00", None);
    check(&[64], None);
    let mut label64 = vec![64];
    label64.extend_from_slice(&[b'a'; 64]);
    label64.push(0);
    check(&label64, None);
    // A compression pointer, even one followed by bytes that would read as a label: no list.
    let mut pointer = vec![3, b'l', b'a', b'n', 0xc0];
    pointer.extend_from_slice(&[b'a'; 192]);
    pointer.push(0);
    check(&pointer, None);
    let mut long = Vec::new();
    for _ in 0..4 {
        long.push(63);
        long.extend_from_slice(&[b'a'; 63]);
    }
    long.push(0);
    check(&long, None);
}

#[test]
fn decode_is_strict() {
    let check = |options: &[Vec<u8>], expected: Malformed| {
        assert_eq!(Packet::decode(&message(MessageType::Reply, 5, options)), Err(expected), "{options:?}");
    };
    check(&[vec![0, 1, 0]], Malformed::TrailingBytes(3));
    check(&[vec![0, 23, 0, 17, 0]], Malformed::Truncated(23));
    check(&[opt(OPT_IA_NA, &[0; 11])], Malformed::BadLength { code: OPT_IA_NA, len: 11 });
    let mut ia = vec![0; 12];
    ia.extend_from_slice(&[0, 5, 0, 30, 0]);
    check(&[opt(OPT_IA_NA, &ia)], Malformed::Truncated(OPT_IAADDR));
    check(
        &[ia_na_opt(1, 0, 0, &[opt(OPT_IAADDR, &[0; 23])])],
        Malformed::BadLength { code: OPT_IAADDR, len: 23 },
    );
    check(
        &[ia_na_opt(1, 0, 0, &[iaaddr(OFFERED, 1, 1, &[vec![0, 13, 0, 1]])])],
        Malformed::Truncated(OPT_STATUS_CODE),
    );
    check(&[ia_na_opt(1, 0, 0, &[opt(OPT_STATUS_CODE, &[0])])], Malformed::BadLength { code: 13, len: 1 });
    check(&[status_opt(0, ""), status_opt(1, "")], Malformed::Duplicate(OPT_STATUS_CODE));
    check(
        &[opt(OPT_CLIENTID, &[0, 3, 1]), opt(OPT_CLIENTID, &[0, 3, 1])],
        Malformed::Duplicate(OPT_CLIENTID),
    );
    check(&[opt(OPT_SERVERID, &[0, 3])], Malformed::BadLength { code: OPT_SERVERID, len: 2 });
    check(&[opt(OPT_SERVERID, &[1; 131])], Malformed::BadLength { code: OPT_SERVERID, len: 131 });
    check(&[opt(OPT_PREFERENCE, &[1, 2])], Malformed::BadLength { code: OPT_PREFERENCE, len: 2 });
    let p =
        Packet::decode(&message(MessageType::Reply, 0xabcdef, &[opt(OPT_PREFERENCE, &[7]), opt(999, b"?")]))
            .unwrap();
    assert_eq!((p.xid, p.preference, p.option(999)), (0xabcdef, 7, Some(&b"?"[..])), "unknown options kept");
}

/// Server messages: random bytes, and valid Advertises and Replies to `c` with bytes overwritten,
/// inserted or cut.
fn packets(xid: u32) -> BoxedStrategy<Vec<u8>> {
    let mut options = vec![opt(OPT_CLIENTID, &our_duid()), opt(OPT_SERVERID, SERVER), good_ia()];
    options.push(opt(OPT_DNS_SERVERS, &[0x20; 32]));
    options.push(opt(OPT_DOMAIN_LIST, b"\x03lan\x00"));
    options.push(opt(OPT_NTP_SERVER, &opt(1, &[0x20; 16])));
    let advertise = message(MessageType::Advertise, xid, &options);
    let reply = message(MessageType::Reply, xid, &options);
    let mutate = |base: Vec<u8>| {
        (
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(move |(edits, cut, insert)| {
                let mut p = base.clone();
                for (at, b) in edits {
                    let i = at.index(p.len());
                    if insert {
                        p.insert(i, b);
                    } else {
                        p[i] = b;
                    }
                }
                let keep = p.len() - cut.index(p.len() / 4 + 1);
                p.truncate(keep);
                p
            })
    };
    prop_oneof![prop::collection::vec(any::<u8>(), 0..300), mutate(advertise), mutate(reply),].boxed()
}

/// What `Bound` holds: a usable /128 with ordered lifetimes and timers, and names and servers that
/// passed the checks.
fn check_lease(l: &Lease6) {
    assert!(!(l.address.is_unspecified() || l.address.is_multicast() || l.address.is_loopback()));
    assert!(l.preferred <= l.valid && !l.valid.is_zero());
    assert!(l.t1 <= l.t2);
    assert!((3..=130).contains(&l.server_duid.len()));
    assert!(l.dns.len() <= MAX_SERVERS && l.ntp.len() <= MAX_SERVERS && l.search.len() <= MAX_SEARCH);
    assert!(l.dns.iter().chain(&l.ntp).all(|a| !a.is_multicast() && !a.is_unspecified()));
    assert!(l.search.iter().all(|n| crate::cmdline::valid_hostname(n)));
    assert!(l
        .status_message
        .iter()
        .all(|m| m.chars().count() <= MAX_MESSAGE && !m.chars().any(char::is_control)));
}

proptest! {
    #[test]
    fn any_bytes_into_a_soliciting_client(packet in packets(0)) {
        let (mut c, end) = soliciting();
        let mut packet = packet;
        if packet.len() >= 4 {
            packet[1..4].copy_from_slice(&c.xid().to_be_bytes()[1..]);
        }
        let _ = Packet::decode(&packet);
        let _ = c.handle(&packet, s(100));
        let _ = c.handle(&packet, end);
        let t = c.poll_transmit(end).unwrap();
        prop_assert!(matches!(t.kind, MessageType::Solicit | MessageType::Request));
        prop_assert!(c.next_deadline() > end);
    }

    #[test]
    fn any_bytes_into_a_requesting_client(packet in packets(0)) {
        let mut c = requesting();
        let mut packet = packet;
        if packet.len() >= 4 {
            packet[1..4].copy_from_slice(&c.xid().to_be_bytes()[1..]);
        }
        match c.handle_from(&packet, Some(Ipv6Addr::LOCALHOST), s(101)) {
            Event::Bound(l) => {
                check_lease(&l);
                prop_assert_eq!(&l.server_duid[..], SERVER);
                prop_assert_eq!(c.poll_transmit(s(1000)), None);
            }
            Event::Failed { .. } => prop_assert_eq!(c.poll_transmit(s(101)).map(|t| t.kind), Some(MessageType::Solicit)),
            _ => {}
        }
    }

    #[test]
    fn any_bytes_into_a_stateless_client(packet in packets(0)) {
        let mut c = stateless();
        c.poll_transmit(c.next_deadline());
        let mut packet = packet;
        if packet.len() >= 4 {
            packet[1..4].copy_from_slice(&c.xid().to_be_bytes()[1..]);
        }
        if let Event::Informed(i) = c.handle(&packet, s(6)) {
            prop_assert!(i.refresh >= s(600));
            prop_assert!(i.search.iter().all(|n| crate::cmdline::valid_hostname(n)));
        }
        let _ = domain_list(&packet);
    }

    #[test]
    fn timers_stay_in_bounds(seed in any::<u64>(), sends in 1usize..40) {
        let mut c = Client::new(Identity { mac: MAC }, Mode::Stateful, seed, s(0));
        for g in gaps(&mut c, sends) {
            prop_assert!(g > s(1) - ms(100) && g <= s(3960), "{g:?}");
        }
    }
}
