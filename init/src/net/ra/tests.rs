//! Router Advertisement tests: messages built option by option as radvd and the kernel lay them
//! out, RTM_NEWNDUSEROPT payloads as the kernel builds them (`ndisc_ra_useropt`), and property
//! tests over random and mutated bytes.

use super::*;
use proptest::prelude::*;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

fn addr(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// An ND option: type, length in 8-byte units, `body` padded with zeros to a multiple of 8.
fn nd_opt(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut o = vec![kind, 0];
    o.extend_from_slice(body);
    o.resize(o.len().div_ceil(8) * 8, 0);
    o[1] = (o.len() / 8) as u8;
    o
}

fn prefix_opt(prefix: &str, len: u8, flags: u8, valid: u32, preferred: u32) -> Vec<u8> {
    let mut b = vec![len, flags];
    b.extend_from_slice(&valid.to_be_bytes());
    b.extend_from_slice(&preferred.to_be_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&addr(prefix).octets());
    nd_opt(OPT_PREFIX_INFO, &b)
}

fn rdnss(lifetime: u32, servers: &[&str]) -> Vec<u8> {
    let mut b = vec![0, 0];
    b.extend_from_slice(&lifetime.to_be_bytes());
    for s in servers {
        b.extend_from_slice(&addr(s).octets());
    }
    nd_opt(OPT_RDNSS, &b)
}

fn dnssl(lifetime: u32, names: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0];
    b.extend_from_slice(&lifetime.to_be_bytes());
    b.extend_from_slice(names);
    nd_opt(OPT_DNSSL, &b)
}

/// An RA: hop limit 64, `flags`, router lifetime 1800 s, reachable 30000 ms, retrans 1000 ms.
fn ra(flags: u8, options: &[Vec<u8>]) -> Vec<u8> {
    let mut p = vec![134, 0, 0xab, 0xcd, 64, flags];
    p.extend_from_slice(&1800u16.to_be_bytes());
    p.extend_from_slice(&30000u32.to_be_bytes());
    p.extend_from_slice(&1000u32.to_be_bytes());
    options.iter().for_each(|o| p.extend_from_slice(o));
    p
}

fn server(a: &str, lifetime: u64) -> DnsServer {
    DnsServer { address: addr(a), lifetime: Duration::from_secs(lifetime) }
}

fn domain(name: &str, lifetime: u64) -> SearchDomain {
    SearchDomain { name: name.into(), lifetime: Duration::from_secs(lifetime) }
}

#[test]
fn a_full_router_advertisement() {
    let p = ra(
        0xc0,
        &[
            nd_opt(OPT_SOURCE_LL_ADDR, &MAC),
            prefix_opt("2001:db8:1::ffff", 64, 0xc0, 86400, 14400),
            nd_opt(OPT_MTU, &[0, 0, 0, 0, 0x05, 0xdc]),
            rdnss(600, &["2001:db8::53", "2001:db8::54"]),
            dnssl(600, b"\x04rack\x07example\x03org\x00\x03lan\x00"),
            nd_opt(99, &[1, 2, 3]),
        ],
    );
    assert_eq!(
        RouterAdvert::decode(&p),
        Ok(RouterAdvert {
            hop_limit: 64,
            managed: true,
            other: true,
            router_lifetime: Duration::from_secs(1800),
            reachable: Duration::from_millis(30000),
            retrans: Duration::from_millis(1000),
            prefixes: vec![Prefix {
                prefix: addr("2001:db8:1::"),
                len: 64,
                on_link: true,
                autonomous: true,
                valid: Duration::from_secs(86400),
                preferred: Duration::from_secs(14400),
            }],
            mtu: Some(1500),
            source_mac: Some(MAC),
            dns: Dns6 {
                servers: vec![server("2001:db8::53", 600), server("2001:db8::54", 600)],
                search: vec![domain("rack.example.org", 600), domain("lan", 600)],
                refused: vec![],
            },
        })
    );
}

#[test]
fn flags_and_prefixes() {
    let check = |flags: u8, managed: bool, other: bool| {
        let r = RouterAdvert::decode(&ra(flags, &[])).unwrap();
        assert_eq!((r.managed, r.other), (managed, other), "{flags:#x}");
    };
    check(0x00, false, false);
    check(0x80, true, false);
    check(0x40, false, true);
    check(0x3f, false, false);
    let r = RouterAdvert::decode(&ra(
        0,
        &[
            prefix_opt("2001:db8:0:1:2:3:4:5", 48, 0x40, 0, 0),
            prefix_opt("2001:db8::", 129, 0xc0, 1, 1),
            prefix_opt("fd00::1", 0, 0x80, u32::MAX, 1),
        ],
    ))
    .unwrap();
    let got: Vec<_> = r.prefixes.iter().map(|p| (p.prefix, p.len, p.on_link, p.autonomous)).collect();
    assert_eq!(got, [(addr("2001:db8::"), 48, false, true), (addr("::"), 0, true, false)], "len 129 ignored");
    assert_eq!(r.prefixes[1].valid, Duration::from_secs(u64::from(u32::MAX)));
    let small_mtu = RouterAdvert::decode(&ra(0, &[nd_opt(OPT_MTU, &[0, 0, 0, 0, 1, 0])])).unwrap();
    assert_eq!(small_mtu.mtu, None, "an MTU below IPv6's 1280 is ignored");
}

#[test]
fn malformed_advertisements() {
    let check = |p: &[u8], expected: Malformed| assert_eq!(RouterAdvert::decode(p), Err(expected), "{p:?}");
    check(&[], Malformed::TooShort(0));
    check(&[134], Malformed::TooShort(1));
    check(&ra(0, &[])[..15], Malformed::TooShort(15));
    check(&[133, 0, 0, 0], Malformed::NotRouterAdvert { kind: 133, code: 0 });
    check(&[134, 1, 0, 0], Malformed::NotRouterAdvert { kind: 134, code: 1 });
    check(&ra(0, &[vec![OPT_MTU, 0, 0, 0, 0, 0, 0, 0]]), Malformed::ZeroLength(OPT_MTU));
    check(&ra(0, &[vec![99, 0]]), Malformed::ZeroLength(99));
    check(&ra(0, &[vec![OPT_RDNSS, 3, 0, 0, 0, 0, 0, 0]]), Malformed::Truncated(OPT_RDNSS));
    check(&ra(0, &[vec![OPT_MTU]]), Malformed::Truncated(OPT_MTU));
    check(&ra(0, &[nd_opt(OPT_MTU, &[0; 14])]), Malformed::BadLength { kind: OPT_MTU, len: 16 });
    check(&ra(0, &[nd_opt(OPT_PREFIX_INFO, &[64])]), Malformed::BadLength { kind: OPT_PREFIX_INFO, len: 8 });
    // RDNSS: length 3 + 2n. Length 1 (no address) and 4 (an address and a half) are malformed.
    check(&ra(0, &[nd_opt(OPT_RDNSS, &[0; 6])]), Malformed::BadLength { kind: OPT_RDNSS, len: 8 });
    check(&ra(0, &[nd_opt(OPT_RDNSS, &[0; 30])]), Malformed::BadLength { kind: OPT_RDNSS, len: 32 });
    check(&ra(0, &[nd_opt(OPT_DNSSL, &[0; 6])]), Malformed::BadLength { kind: OPT_DNSSL, len: 8 });
}

#[test]
fn rdnss_and_dnssl_values() {
    let dns = |options: &[Vec<u8>]| RouterAdvert::decode(&ra(0, options)).unwrap().dns;
    let d = dns(&[rdnss(0, &["2001:db8::53"]), dnssl(0, b"\x03lan\x00")]);
    assert_eq!(d.servers, [server("2001:db8::53", 0)], "lifetime 0: remove, passed on as such");
    assert_eq!(d.search, [domain("lan", 0)]);
    let d = dns(&[rdnss(u32::MAX, &["::", "ff02::1", "::1", "fe80::1"])]);
    assert_eq!(d.servers, [server("fe80::1", u64::from(u32::MAX))], "a link-local server is fine");
    assert_eq!(
        d.refused,
        [
            "DNS server :: (RDNSS): not a unicast address",
            "DNS server ff02::1 (RDNSS): not a unicast address",
            "DNS server ::1 (RDNSS): not a unicast address"
        ]
    );
    let d = dns(&[dnssl(60, b"\x03a_b\x00\x03lan\x00"), dnssl(60, b"\x03lan\xc0\x0c")]);
    assert_eq!(d.search, [domain("lan", 60)]);
    assert_eq!(
        d.refused,
        ["search domain \"a_b\" (DNSSL): not a valid host name", "search domains (DNSSL): malformed"]
    );
    let many: Vec<String> = (1..=20).map(|n| format!("2001:db8::{n:x}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let d = dns(&[rdnss(60, &many)]);
    assert_eq!(d.servers.len(), MAX_SERVERS);
    assert_eq!(d.refused.len(), 4);
    assert_eq!(d.refused[0], "DNS server 2001:db8::11 (RDNSS): beyond the first 16");
}

#[test]
fn router_solicitation_carries_the_mac() {
    assert_eq!(
        router_solicitation(MAC),
        [133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]
    );
    assert_eq!(ALL_ROUTERS.to_string(), "ff02::2");
    assert_eq!(
        options(&router_solicitation(MAC)[8..]).unwrap(),
        [(OPT_SOURCE_LL_ADDR, &router_solicitation(MAC)[8..])]
    );
}

/// RAs: random bytes, and valid ones with bytes overwritten or cut.
fn messages() -> BoxedStrategy<Vec<u8>> {
    let options = vec![
        nd_opt(OPT_SOURCE_LL_ADDR, &MAC),
        prefix_opt("2001:db8:1::", 64, 0xc0, 86400, 14400),
        nd_opt(OPT_MTU, &[0, 0, 0, 0, 0x05, 0xdc]),
        rdnss(600, &["2001:db8::53", "2001:db8::54"]),
        dnssl(600, b"\x04rack\x07example\x03org\x00\x03lan\x00"),
    ];
    let advert = ra(0xc0, &options);
    let mutate = |base: Vec<u8>| {
        (
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            any::<prop::sample::Index>(),
        )
            .prop_map(move |(edits, cut)| {
                let mut p = base.clone();
                for (at, b) in edits {
                    let i = at.index(p.len());
                    p[i] = b;
                }
                p.truncate(p.len() - cut.index(p.len() / 4 + 1));
                p
            })
    };
    prop_oneof![prop::collection::vec(any::<u8>(), 0..300), mutate(advert)].boxed()
}

/// What a decoded message holds: prefixes of at most 128 bits with the host bits clear, unicast
/// servers, RFC 1123 names, and no more than the limits.
fn check_dns(d: &Dns6) {
    assert!(d.servers.len() <= MAX_SERVERS && d.search.len() <= MAX_SEARCH);
    assert!(d.servers.iter().all(|s| !s.address.is_multicast() && !s.address.is_unspecified()));
    assert!(d.search.iter().all(|s| crate::cmdline::valid_hostname(&s.name)));
}

proptest! {
    #[test]
    fn any_bytes_into_decode(bytes in messages()) {
        if let Ok(r) = RouterAdvert::decode(&bytes) {
            for p in &r.prefixes {
                prop_assert!(p.len <= 128);
                let host = u128::from(p.prefix) & !u128::MAX.checked_shl(128 - u32::from(p.len)).unwrap_or(0);
                prop_assert_eq!(host, 0);
            }
            prop_assert!(r.mtu.is_none_or(|m| m >= 1280));
            check_dns(&r.dns);
        }
    }
}
