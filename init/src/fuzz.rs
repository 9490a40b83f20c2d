//! Property tests over untrusted input: the kernel cmdline (anything the boot loader passes) and
//! DHCP packets (anything on the wire). Whatever the bytes, nothing panics, parsing is deterministic,
//! and what comes out keeps its invariants. A short run is part of every `cargo test`; a long one is
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
        prop::sample::select(PARAMETERS.to_vec()).prop_map(str::to_owned),
        "[a-zA-Z_.-]{1,20}",
        prop::sample::select(PARAMETERS.to_vec()).prop_map(|p| p.replace('_', "-").to_uppercase()),
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
    assert_eq!(cmdline::parse(text), parsed, "deterministic");
    if parsed.errors.is_empty() {
        assert!(!parsed.config.image.urls.is_empty(), "a cmdline that boots has an image: {text:?}");
        assert!(!parsed.config.net.interfaces.is_empty());
    }
    let plan = crate::cli::explain(&parsed);
    assert!(plan.ends_with("would boot\n") == parsed.errors.is_empty(), "{plan}");
    let json = crate::cli::explain_json(&parsed);
    assert!(json.starts_with('{') && json.ends_with('}'));
}

fn check_packet(bytes: &[u8]) {
    if let Ok(p) = dhcp::Packet::decode(bytes) {
        let lease = p.lease();
        assert!(lease.prefix <= 32);
    }
    let id = dhcp::Identity { mac: [2, 0, 0, 0, 0, 1], hostname: None, client_id: None };
    let mut client = dhcp::Client::new(id, 7, Duration::ZERO);
    client.poll_transmit(Duration::ZERO);
    client.handle(bytes, Duration::ZERO);
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
