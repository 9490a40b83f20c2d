//! Property tests over untrusted input: the kernel cmdline (anything the boot loader passes), DHCP
//! packets (anything on the wire) and netlink answers. Whatever the bytes, nothing panics, and what
//! comes out keeps its invariants: `explain` shows every problem and `--json` is JSON; a lease gives
//! well-formed netlink requests. A short run is part of every `cargo test`; a long one is
//! `NETINIT_FUZZ_SECS=600 cargo test -p netinit --release -- --ignored fuzz_for_a_while --nocapture`.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use crate::cmdline::{self, PARAMETERS};
use crate::net::dhcp;

/// Cmdlines: raw bytes, printable noise, and words built from real parameter names with values
/// that look almost right, which is where parsers break.
fn cmdlines() -> BoxedStrategy<String> {
    let name = prop_oneof![
        prop::sample::select(PARAMETERS.iter().map(|p| p.name).collect::<Vec<_>>()).prop_map(str::to_owned),
        "[a-zA-Z_.-]{1,20}",
        prop::sample::select(PARAMETERS.iter().map(|p| p.name).collect::<Vec<_>>())
            .prop_map(|p| p.replace('_', "-").to_uppercase()),
    ];
    let value = prop_oneof![
        "[0-9a-fA-F:.,%/-]{0,80}",
        "(http|https|ftp)://[a-z0-9.@:\\[\\]{}]{0,30}(/[a-zA-Z0-9._{}%?#=-]{0,20}){0,3}",
        "([0-9]{1,4}\\.){0,4}[0-9]{0,4}(:[0-9a-z.,]{0,16}){0,11}",
        "\"[^\"]{0,40}\"?",
        any::<String>(),
    ];
    let word = (name, prop::option::of(value)).prop_map(|(n, v)| match v {
        Some(v) => format!("{n}={v}"),
        None => n,
    });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ".{0,300}",
        prop::collection::vec(word, 0..16).prop_map(|w| w.join(" ")),
    ]
    .boxed()
}

/// DHCP packets: random bytes, and a valid reply with random bytes written over its options.
fn packets() -> BoxedStrategy<Vec<u8>> {
    let mut base = vec![0u8; 240];
    base[0] = 2;
    base[1] = 1;
    base[2] = 6;
    base[236..240].copy_from_slice(&[99, 130, 83, 99]);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..700),
        prop::collection::vec(any::<u8>(), 0..400).prop_map(move |tail| {
            let mut p = base.clone();
            p.extend_from_slice(&tail);
            p
        }),
    ]
    .boxed()
}

fn check_cmdline(text: &str) {
    let parsed = cmdline::parse(text);
    if parsed.errors.is_empty() {
        assert!(!parsed.config.image.urls.is_empty(), "a cmdline that boots has an image: {text:?}");
        assert!(!parsed.config.net.interfaces.is_empty());
    }
    let view = crate::plan::Plan::new(&parsed);
    let plan = view.text();
    assert!(plan.ends_with("would boot\n") == parsed.errors.is_empty(), "{plan}");
    for e in &parsed.errors {
        assert!(plan.contains(&e.to_string()), "explain shows every error: {e}\n{plan}");
    }
    for w in &parsed.warnings {
        assert!(plan.contains(&w.to_string()), "explain shows every warning: {w}\n{plan}");
    }
    let json = view.json();
    assert_eq!(json::validate(&json), Ok(()), "explain --json is JSON, whatever the cmdline: {json}");
}

/// Every netlink request the network stage would build from a lease: well-formed messages.
fn check_lease_requests(lease: &dhcp::Lease) {
    use crate::net::netlink;
    let mut requests = vec![netlink::add_address(3, lease.address, lease.prefix, 9)];
    if let Some(mtu) = lease.mtu {
        requests.push(netlink::link_mtu(3, u32::from(mtu), 9));
    }
    for r in &lease.routes {
        let gateway = (!r.gateway.is_unspecified()).then_some(r.gateway);
        let origin = netlink::Origin::Dhcp;
        requests.push(netlink::add_route(
            3,
            r.destination,
            r.prefix,
            gateway,
            Some(lease.address),
            origin,
            9,
        ));
    }
    for msg in &requests {
        assert_eq!(u32::from_ne_bytes(msg[..4].try_into().unwrap()) as usize, msg.len(), "nlmsg_len");
        assert_eq!(msg.len() % 4, 0, "a message is padded to 4 bytes");
        // After the 16-byte header and the fixed part (ifaddrmsg 8, rtmsg 12, ifinfomsg 16 bytes):
        // attributes that tile the rest exactly, each within the message.
        let kind = u16::from_ne_bytes([msg[4], msg[5]]);
        let mut at = 16
            + match kind {
                20 => 8,
                24 => 12,
                _ => 16,
            };
        while at < msg.len() {
            let len = usize::from(u16::from_ne_bytes([msg[at], msg[at + 1]]));
            assert!(len >= 4 && at + len <= msg.len(), "attribute at {at} of {len} bytes in {msg:?}");
            at += (len + 3) & !3;
        }
        assert_eq!(at, msg.len(), "attributes end where the message does");
    }
    assert!(lease.prefix <= 32 && lease.routes.iter().all(|r| r.prefix <= 32));
}

fn check_packet(bytes: &[u8]) {
    if let Ok(p) = dhcp::Packet::decode(bytes) {
        check_lease_requests(&p.lease());
    }
    let id = dhcp::Identity { mac: [2, 0, 0, 0, 0, 1], hostname: None, client_id: None };
    let mut client = dhcp::Client::new(id, 7, Duration::ZERO);
    client.poll_transmit(Duration::ZERO);
    client.handle(bytes, Duration::ZERO);
    // The same bytes as the kernel's answer to a netlink request: read, never past their end.
    crate::net::netlink::parse_ack(bytes, 7);
}

/// A JSON validator (RFC 8259), to hold `explain --json` to the format whatever the input.
mod json {
    pub fn validate(text: &str) -> Result<(), String> {
        let b = text.as_bytes();
        let at = value(b, ws(b, 0))?;
        match ws(b, at) == b.len() {
            true => Ok(()),
            false => Err(format!("trailing bytes at {at}")),
        }
    }

    fn ws(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
            i += 1;
        }
        i
    }

    fn value(b: &[u8], i: usize) -> Result<usize, String> {
        match b.get(i) {
            Some(b'{') => seq(b, i + 1, b'}', |b, i| {
                let i = ws(b, string(b, ws(b, i))?);
                if b.get(i) != Some(&b':') {
                    return Err(format!("expected ':' at {i}"));
                }
                value(b, ws(b, i + 1))
            }),
            Some(b'[') => seq(b, i + 1, b']', value),
            Some(b'"') => string(b, i),
            Some(b't') if b[i..].starts_with(b"true") => Ok(i + 4),
            Some(b'f') if b[i..].starts_with(b"false") => Ok(i + 5),
            Some(b'n') if b[i..].starts_with(b"null") => Ok(i + 4),
            Some(c) if c.is_ascii_digit() || *c == b'-' => {
                let end = i
                    + 1
                    + b[i + 1..].iter().take_while(|c| c.is_ascii_digit() || b".eE+-".contains(c)).count();
                std::str::from_utf8(&b[i..end])
                    .ok()
                    .and_then(|n| n.parse::<f64>().ok())
                    .ok_or(format!("number at {i}"))?;
                Ok(end)
            }
            _ => Err(format!("no value at {i}")),
        }
    }

    fn seq(
        b: &[u8],
        i: usize,
        close: u8,
        item: fn(&[u8], usize) -> Result<usize, String>,
    ) -> Result<usize, String> {
        let mut i = ws(b, i);
        if b.get(i) == Some(&close) {
            return Ok(i + 1);
        }
        loop {
            i = ws(b, item(b, ws(b, i))?);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(c) if *c == close => return Ok(i + 1),
                _ => return Err(format!("expected ',' or '{}' at {i}", close as char)),
            }
        }
    }

    fn string(b: &[u8], i: usize) -> Result<usize, String> {
        if b.get(i) != Some(&b'"') {
            return Err(format!("expected a string at {i}"));
        }
        let mut i = i + 1;
        loop {
            match b.get(i) {
                None => return Err("unterminated string".into()),
                Some(b'"') => return Ok(i + 1),
                Some(b'\\') => match b.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u')
                        if b.get(i + 2..i + 6).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                    {
                        i += 6
                    }
                    _ => return Err(format!("bad escape at {i}")),
                },
                Some(c) if *c < 0x20 => return Err(format!("control character {c:#x} unescaped at {i}")),
                Some(_) => i += 1,
            }
        }
    }

    #[test]
    fn the_validator_tells_json_from_not() {
        for ok in [r#"{"a":[1,-2.5e3,true,null,"x\u00e9\n"],"b":{}}"#, "[]", r#""""#] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for bad in [r#"{"a":1,}"#, r#"{"a" 1}"#, "[1 2]", "\"tab\there\"", r#""\x""#, "{} x", ""] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}

proptest! {
    #[test]
    fn cmdlines_never_panic(text in cmdlines()) {
        check_cmdline(&text);
    }

    #[test]
    fn packets_never_panic(bytes in packets()) {
        check_packet(&bytes);
    }
}

/// The long run: as many random inputs as fit in `NETINIT_FUZZ_SECS` (default 60) seconds.
#[test]
#[ignore]
fn fuzz_for_a_while() {
    let secs = std::env::var("NETINIT_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let budget = Duration::from_secs(secs);
    let mut runner = TestRunner::deterministic();
    let (cmdlines, packets) = (cmdlines(), packets());
    let start = Instant::now();
    let (mut n_cmd, mut n_pkt) = (0u64, 0u64);
    while start.elapsed() < budget {
        for _ in 0..1000 {
            if let Ok(tree) = cmdlines.new_tree(&mut runner) {
                check_cmdline(&tree.current());
                n_cmd += 1;
            }
            if let Ok(tree) = packets.new_tree(&mut runner) {
                check_packet(&tree.current());
                n_pkt += 1;
            }
        }
    }
    println!("fuzzed for {secs}s: {n_cmd} cmdlines and {n_pkt} DHCP packets, no panic");
}
