//! Property tests over untrusted input, driven through the code that consumes it, not only the
//! parsers: the kernel cmdline (anything the boot loader passes) into the plan, the download's
//! budget and retry schedule and the DHCP requests; DHCP packets (anything on the wire) into the
//! lease, the netlink requests and the files the booted system reads; HTTP header values into the
//! engine's decisions; squashfs superblocks into the mount plan; apkovl tarballs into the unpacker,
//! against a hostile temporary root. Whatever the bytes, nothing panics, and what comes out keeps
//! its invariants. A short run is part of every `cargo test`; a long one is
//! `NETINIT_FUZZ_SECS=600 cargo test -p netinit --release -- --ignored fuzz_for_a_while --nocapture`.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use crate::cmdline::{self, Countdown, IpMode, PARAMETERS};
use crate::customize::overlay;
use crate::customize::write::tests::Hostile;
use crate::fetch::engine::{self, Fit, Job, Partial};
use crate::fetch::retry::{self, Failure, Next, Schedule, Verdict, MAX_RETRY_AFTER};
use crate::net::{dhcp, files, Configured, Nic};
use crate::rootfs;

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
    check_deadlines(&parsed.config);
    check_dhcp_requests(&parsed.config);
    check_redaction(text);
    if let Some(t) = &parsed.config.report {
        // Whatever the machine's facts, a value never adds a path, query, fragment or userinfo.
        let odd = cmdline::Machine {
            mac: "52:54:00:12:34:56".into(),
            uuid: "u/u".into(),
            ip: "fd00::1".into(),
            hostname: "a/b?c#d@e".into(),
            serial: "serial with spaces/@:".into(),
        };
        if let Ok(url) = t.fill_machine(&odd) {
            for raw in ["u/u", "a/b?c#d@e", "with spaces/@"] {
                let unescaped = url.as_str().contains(raw) && !t.as_str().contains(raw);
                assert!(!unescaped, "{raw:?} unescaped in {url}");
            }
        }
    }
}

/// The boot record's cmdline: every URL's authority keeps no credentials, and the record is JSON.
fn check_redaction(text: &str) {
    let redacted = crate::report::redact_cmdline(text);
    let mut rest = redacted.as_str();
    while let Some(at) = rest.find("://") {
        rest = &rest[at + 3..];
        let end = rest.find(['/', ' ', '"', ',', '?', '#', '\t', '\n']).unwrap_or(rest.len());
        let authority = &rest[..end];
        assert!(
            !authority.contains('@') || authority.starts_with("***@") && authority.matches('@').count() == 1,
            "credentials left in {authority:?} of {redacted:?}"
        );
    }
    let mut out = String::new();
    crate::json::Json::str(&redacted).write(&mut out);
    assert_eq!(json::validate(&out), Ok(()));
}

/// Every duration the cmdline sets is bounded, so no deadline computed from it can overflow; and
/// the download's schedule, driven to the end, stops after the attempts `netinit.retries=` allows.
fn check_deadlines(cfg: &cmdline::Config) {
    let day = Duration::from_secs(cmdline::params::MAX_SECONDS);
    let job = Job::for_image(&cfg.image, Some(u64::MAX));
    let countdown = match cfg.failure.countdown {
        Countdown::After(d) => d,
        Countdown::Immediately | Countdown::Never => Duration::ZERO,
    };
    let small = crate::fetch::small_budget(&cfg.image);
    for d in [job.budget, cfg.net.dhcp_timeout, countdown, small] {
        assert!(d <= day, "a duration from the cmdline beyond a day: {d:?}");
        assert!(Instant::now().checked_add(d).is_some());
    }
    assert!(small <= crate::fetch::SMALL_BUDGET && small <= job.budget);
    let mut schedule = Schedule::new(job.policy, job.urls.len());
    let (mut now, mut failures) = (Duration::ZERO, 0u32);
    let cap = job.policy.attempts.min(300);
    loop {
        failures += 1;
        match schedule.after(
            failures as usize % job.urls.len().max(1),
            Failure::Transient,
            now,
            u64::from(failures),
        ) {
            Next::Try { after, mirror, .. } => {
                assert!(after <= job.policy.cap, "a transient failure waits at most the cap");
                assert!(mirror < job.urls.len().max(1));
                now = now.saturating_add(after);
            }
            Next::OutOfRetries => break,
            Next::NowhereToGo => panic!("transient failures never drop a mirror"),
        }
        if failures > cap {
            return; // a long policy: its end is the policy's own test's business
        }
    }
    assert_eq!(failures, job.policy.attempts, "netinit.retries=N gives N+1 attempts");
}

/// The DHCP client the cmdline configures (its hostname and client identifier) sends requests a
/// server can read, carrying both whole.
fn check_dhcp_requests(cfg: &cmdline::Config) {
    for ip in &cfg.net.interfaces {
        let IpMode::Dhcp { client_id } = &ip.mode else { continue };
        let id = dhcp::Identity {
            mac: [2, 0, 0, 0, 0, 1],
            hostname: cfg.net.hostname().map(str::to_owned),
            client_id: client_id.as_ref().map(|c| (c.kind, c.id.as_bytes().to_vec())),
        };
        let mut client = dhcp::Client::new(id.clone(), 7, Duration::ZERO);
        let sent = client.poll_transmit(Duration::ZERO).expect("a new client sends a DISCOVER");
        let p = dhcp::Packet::decode(&sent.packet).expect("a server reads what the client sends");
        assert_eq!(p.kind, dhcp::MessageType::Discover);
        assert_eq!(p.option(12).map(<[u8]>::to_vec), id.hostname.map(String::into_bytes));
        if let Some((kind, value)) = id.client_id {
            let sent_id = p.option(61).expect("option 61");
            assert_eq!((sent_id[0], &sent_id[1..]), (kind, &value[..]));
        }
    }
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

/// What the booted system reads from a lease: names that passed RFC 1123, a resolv.conf of known
/// lines only, and a lease file a shell sources without running anything.
fn check_lease_files(lease: &dhcp::Lease) {
    let names = lease.hostname.iter().chain(&lease.domain).chain(&lease.search);
    for name in names {
        assert!(cmdline::valid_hostname(name), "a name the booted system would read: {name:?}");
    }
    let nic = Nic { name: "eth0".into(), index: 2, mac: cmdline::Mac([2, 0, 0, 0, 0, 1]) };
    let c = Configured::from_lease(nic, lease, None);
    let resolv = files::resolver(std::slice::from_ref(&c));
    for line in resolv.lines() {
        assert!(
            ["# written by netinit", "search ", "nameserver "].iter().any(|k| line.starts_with(k)),
            "resolv.conf line {line:?}"
        );
    }
    for line in files::lease_file(&c).lines() {
        let (key, value) = line.split_once('=').expect("KEY=value");
        assert!(key.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'), "{line:?}");
        assert!(single_quoted(value), "a lease file value the shell reads as data: {line:?}");
    }
}

/// `value` is one shell word made only of '...' strings and \' escapes: nothing expands.
fn single_quoted(value: &str) -> bool {
    let mut rest = value;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("\\'") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix('\'') {
            let Some(end) = r.find('\'') else { return false };
            rest = &r[end + 1..];
        } else {
            return false;
        }
    }
    true
}

fn check_packet(bytes: &[u8]) {
    if let Ok(p) = dhcp::Packet::decode(bytes) {
        let lease = p.lease();
        check_lease_requests(&lease);
        check_lease_files(&lease);
    }
    let id = dhcp::Identity { mac: [2, 0, 0, 0, 0, 1], hostname: None, client_id: None };
    let mut client = dhcp::Client::new(id, 7, Duration::ZERO);
    client.poll_transmit(Duration::ZERO);
    client.handle(bytes, Duration::ZERO);
    // The same bytes as the kernel's answer to a netlink request: read, never past their end.
    crate::net::netlink::parse_ack(bytes, 7);
}

/// A number as servers write them: small, any, or at the edge of u64.
fn numbers() -> BoxedStrategy<u64> {
    prop_oneof![0u64..4096, any::<u64>(), (0u64..4).prop_map(|d| u64::MAX - d)].boxed()
}

/// One HTTP answer as the engine sees it, with what the file already holds.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    content_length: Option<u64>,
    content_range: String,
    retry_after: String,
    date: String,
    location: String,
    have: u64,
    total: Option<u64>,
    mirror: usize,
}

fn answers() -> BoxedStrategy<Vec<Answer>> {
    let status = prop_oneof![
        prop::sample::select(vec![200u16, 206, 416, 301, 302, 307, 308, 404, 408, 429, 500, 503]),
        any::<u16>()
    ];
    let range = prop_oneof![
        (numbers(), numbers(), prop::option::of(numbers())).prop_map(|(a, b, t)| match t {
            Some(t) => format!("bytes {a}-{b}/{t}"),
            None => format!("bytes {a}-{b}/*"),
        }),
        "(bytes )?[0-9 */+-]{0,30}",
        any::<String>(),
    ];
    let retry_after = prop_oneof![
        numbers().prop_map(|n| n.to_string()),
        "[0-9]{20,30}",
        "(Mon|Sun), [0-9]{1,2} (Jan|Feb|Dec|Xyz) [0-9]{4} [0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2} GMT",
        ".{0,30}",
    ];
    let date =
        prop_oneof!["(Mon|Sun), [0-9]{1,2} (Jan|Nov) [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT", ".{0,30}"];
    let location = prop_oneof![
        "(http|https|ftp)://[a-z0-9.:@\\[\\]]{0,20}(/[a-z.%]{0,10}){0,3}",
        "/?[a-z./%?#]{0,20}",
        "//[a-z.]{0,10}/x",
        any::<String>(),
    ];
    let answer = (
        status,
        prop::option::of(numbers()),
        range,
        retry_after,
        date,
        location,
        numbers(),
        prop::option::of(numbers()),
        0usize..4,
    )
        .prop_map(
            |(status, content_length, content_range, retry_after, date, location, have, total, mirror)| {
                Answer {
                    status,
                    content_length,
                    content_range,
                    retry_after,
                    date,
                    location,
                    have,
                    total,
                    mirror,
                }
            },
        );
    prop::collection::vec(answer, 1..12).boxed()
}

/// A run of answers through the engine's decisions: how a body fits the file, what a status
/// means, where a redirect goes and how long the schedule waits. Each decision keeps its promise.
fn check_answers(answers: &[Answer]) {
    let mut schedule = Schedule::new(retry::RetryPolicy::with_retries(5), 3);
    let mut now = Duration::ZERO;
    for (i, a) in answers.iter().enumerate() {
        let range = engine::content_range(&a.content_range);
        if let Some((first, last, _)) = range {
            assert!(first <= last, "{:?}", a.content_range);
        }
        // Also with ranges no parser would give: on_response is total on its own.
        let _ = engine::on_response(
            206,
            a.content_length,
            Some((a.have, a.have.wrapping_sub(1), a.total)),
            &Partial::default(),
        );
        let p = Partial { have: a.have, total: a.total, validator: None };
        match engine::on_response(a.status, a.content_length, range, &p) {
            Fit::Write { at, total } if at != 0 => {
                // A resume: only from a 206 that starts at our end and adds up.
                let (first, last, sent_total) = range.expect("a resume has a Content-Range");
                assert_eq!((a.status, first, at), (206, p.have, p.have));
                assert!(sent_total.is_none_or(|t| last < t), "{a:?}");
                assert!(a.content_length.is_none_or(|l| Some(l) == (last - first).checked_add(1)), "{a:?}");
                assert!(total.is_none() || total == sent_total.or(p.total));
            }
            Fit::Write { .. } => assert!(a.status == 200 || p.have == 0, "{a:?}"),
            Fit::Complete => assert!(a.status != 200 && a.status != 206 && p.have > 0, "{a:?}"),
            Fit::Restart(_) => assert_ne!(a.status, 200),
        }
        let date = (!a.date.is_empty()).then_some(a.date.as_str());
        if let Some(wait) = retry::parse_retry_after(&a.retry_after, date) {
            assert!(wait <= MAX_RETRY_AFTER);
        }
        let failure = match retry::verdict(a.status, Some(&a.retry_after), date) {
            Verdict::Busy(ra) => Failure::Busy(ra),
            Verdict::Transient => Failure::Transient,
            Verdict::NotThere => Failure::NotThere,
        };
        let failure = if i % 5 == 4 { Failure::Unreachable } else { failure };
        schedule.answered(a.mirror);
        match schedule.after(a.mirror, failure, now, a.have) {
            Next::Try { mirror, after, .. } => {
                assert!(mirror < 3);
                assert!(after <= MAX_RETRY_AFTER.saturating_mul(3) / 2, "waits at most 1.5 Retry-After caps");
                now = now.saturating_add(after);
            }
            Next::OutOfRetries | Next::NowhereToGo => {
                schedule = Schedule::new(retry::RetryPolicy::default(), 3)
            }
        }
        for at in ["http://images.lan/root.squashfs", "https://images.lan:8443/a/b?x=1"] {
            let at = cmdline::Url::parse(at).expect("a test URL");
            let location = (!a.location.is_empty()).then_some(a.location.as_str());
            if let Ok(Some(next)) = crate::fetch::http::next_hop(&at, a.status, location) {
                assert!(!at.is_https() || next.is_https(), "https never becomes http: {next}");
            }
        }
    }
}

/// Superblocks: random bytes, and a valid one with any field overwritten, read from a file of
/// any length.
fn superblocks() -> BoxedStrategy<(Vec<u8>, u64)> {
    let mut valid = vec![0u8; 96];
    valid[0..4].copy_from_slice(b"hsqs");
    valid[4..8].copy_from_slice(&12u32.to_le_bytes());
    valid[12..16].copy_from_slice(&(128u32 << 10).to_le_bytes());
    valid[20..22].copy_from_slice(&1u16.to_le_bytes());
    valid[22..24].copy_from_slice(&17u16.to_le_bytes());
    valid[28..30].copy_from_slice(&4u16.to_le_bytes());
    valid[40..48].copy_from_slice(&4096u64.to_le_bytes());
    let mutated =
        (prop::collection::vec((0usize..96, any::<u8>()), 0..6), numbers()).prop_map(move |(w, len)| {
            let mut b = valid.clone();
            for (at, byte) in w {
                b[at] = byte;
            }
            (b, len)
        });
    prop_oneof![mutated, (prop::collection::vec(any::<u8>(), 0..120), numbers())].boxed()
}

fn check_superblock((head, file_len): &(Vec<u8>, u64)) {
    let Ok(sq) = rootfs::check_superblock(head, *file_len) else { return };
    assert!(sq.bytes_used <= *file_len, "a squashfs that does not fit in its file is refused");
    assert!(sq.block_size.is_power_of_two() && (4096..=1 << 20).contains(&sq.block_size));
    for size in ["50%", "1", "512M", "100%"] {
        let size = cmdline::Size::parse(size).expect("a test size");
        let mounts = rootfs::plan("/dev/loop0", size);
        assert_eq!(
            mounts.iter().map(|m| m.target.as_str()).collect::<Vec<_>>(),
            [rootfs::LOWER, rootfs::RW, rootfs::NEW_ROOT]
        );
    }
}

/// apkovl tarballs: entries with hostile names, types, modes and link targets (`{OUT}` stands
/// for a directory outside the root, `{SECRET}` for a file there), gzipped; and gzipped noise.
fn tarballs() -> BoxedStrategy<Vec<u8>> {
    let name = prop_oneof![
        prop::sample::select(vec![
            "etc/motd",
            "etc/",
            "etc/conf.d/net",
            "etc/up/x",
            "../x",
            "/abs",
            "a/../../x",
            "./etc/a",
            "etc",
            "etc/motd/x",
            "dev/null",
            "usr/bin/tool",
            "etc/up",
            "etc/conf.d",
        ])
        .prop_map(str::to_owned),
        "[a-z./]{1,20}",
    ];
    let link =
        prop::sample::select(vec!["", "{OUT}", "{SECRET}", "/etc", "../../..", "etc/motd", "/dev/sda"]);
    let kind = prop::sample::select(vec![
        b'0', b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'x', b'g', b'L', b'K', b'Z',
    ]);
    let entry = (name, kind, any::<u32>(), link, prop::collection::vec(any::<u8>(), 0..64));
    prop_oneof![
        4 => prop::collection::vec(entry, 0..10).prop_map(|entries| {
            let mut out = Vec::new();
            for (name, kind, mode, link, data) in entries {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::new(kind));
                header.set_size(data.len() as u64);
                header.set_mode(mode & 0o7777);
                header.set_mtime(u64::from(mode));
                let old = header.as_old_mut();
                let name = name.as_bytes();
                old.name[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
                let link = link.as_bytes();
                old.linkname[..link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
                header.set_cksum();
                out.extend_from_slice(header.as_bytes());
                out.extend_from_slice(&data);
                out.resize(out.len().div_ceil(512) * 512, 0);
            }
            out
        }),
        1 => prop::collection::vec(any::<u8>(), 0..2048),
    ]
    .boxed()
}

/// Unpacks `tar` (its `{OUT}`/`{SECRET}` placeholders made real) into a root whose own symlinks
/// point out of it: nothing is written outside, the file outside gains no hard link, and an
/// unsigned tarball leaves no setuid, setgid, device node or fifo.
fn check_tarball(tar: &[u8], signed: bool) {
    use std::os::unix::fs::{symlink, MetadataExt};
    static CASES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let case = CASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let h = Hostile::new(&format!("fuzz-tar-{case}"));
    let secret = h.base.join("secret");
    std::fs::write(&secret, "keep").expect("the secret");
    symlink(&h.outside, h.root.join("etc/conf.d")).expect("a symlink out");
    symlink("../../../../../../..", h.root.join("etc/up")).expect("a symlink up");
    let mut tar = tar.to_vec();
    for (placeholder, real) in [(&b"{OUT}"[..], h.outside.as_os_str()), (b"{SECRET}", secret.as_os_str())] {
        let real = real.as_encoded_bytes();
        while let Some(at) = tar.windows(placeholder.len()).position(|w| w == placeholder) {
            // Same length on the wire is not needed: the link name field is NUL-padded.
            let field_end = (at + 100).min(tar.len());
            let mut field = real.to_vec();
            field.resize(field_end - at, 0);
            tar.splice(at..field_end, field.into_iter().take(field_end - at));
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let limits = overlay::Limits { entries: 64, bytes: 1 << 20 };
    let _ = overlay::unpack(&gz, &h.in_root(), signed, &limits);
    h.outside_untouched();
    let base: Vec<_> = std::fs::read_dir(&h.base).expect("base").flatten().map(|e| e.file_name()).collect();
    assert_eq!(base.len(), 3, "only root/, outside/ and the secret beside the root: {base:?}");
    let meta = std::fs::symlink_metadata(&secret).expect("the secret is still there");
    assert_eq!((meta.nlink(), std::fs::read(&secret).ok()), (1, Some(b"keep".to_vec())));
    let mut dirs = vec![h.root.clone()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).expect("a directory of the root").flatten() {
            let m = e.path().symlink_metadata().expect("an entry");
            let t = m.file_type();
            if t.is_dir() {
                dirs.push(e.path());
            }
            if !signed {
                use std::os::unix::fs::FileTypeExt;
                assert_eq!(m.mode() & 0o6000, 0, "setuid/setgid from an unsigned tarball: {:?}", e.path());
                assert!(
                    !(t.is_char_device() || t.is_block_device() || t.is_fifo() || t.is_socket()),
                    "{:?}",
                    e.path()
                );
            }
        }
    }
}

/// `modules.dep` texts: lines over a few names, with the paths a broken or hostile file holds.
fn modules_deps() -> BoxedStrategy<String> {
    let path = prop_oneof![
        (0u8..12).prop_map(|i| format!("kernel/drivers/m{i}.ko")),
        (0u8..12).prop_map(|i| format!("kernel/m-{i}.ko.xz")),
        prop::sample::select(vec!["../../etc/x.ko", "/abs/m1.ko", "m1", "kernel//m2.ko", ":", ""])
            .prop_map(str::to_owned),
    ];
    let line =
        (path.clone(), prop::collection::vec(path, 0..5)).prop_map(|(p, d)| format!("{p}: {}", d.join(" ")));
    prop_oneof![prop::collection::vec(line, 0..30).prop_map(|l| l.join("\n")), ".{0,200}",].boxed()
}

/// Whatever `modules.dep` says, the load order is each module once, after what it needs, and
/// never a path out of the modules directory.
fn check_modules_dep(text: &str) {
    let (db, _) = crate::modules::parse_modules_dep(text);
    for m in db.values() {
        assert!(!m.path.starts_with('/') && !m.path.split('/').any(|p| p == ".."), "{m:?}");
    }
    let all: Vec<String> = db.keys().cloned().collect();
    let _ = crate::modules::blocked(&db, &all[..all.len().min(2)]);
    let Ok(order) = crate::modules::load_order(&db, &all) else { return };
    let mut loaded = std::collections::BTreeSet::new();
    for m in order {
        assert!(m.deps.iter().all(|d| loaded.contains(d.as_str())), "{} before its dependencies", m.name);
        assert!(loaded.insert(m.name.as_str()), "{} twice", m.name);
    }
}

/// `(pattern, module)` lines of a `modules.alias`, and devices' modaliases.
type AliasesAndDevices = (Vec<(String, String)>, Vec<String>);

/// `modules.alias` lines and modaliases over a small alphabet with every special character, so
/// that patterns and devices often meet.
fn aliases_and_devices() -> BoxedStrategy<AliasesAndDevices> {
    let pattern = "[pciv:0-9A-F*?\\[\\]!^\\\\-]{0,24}";
    let device = "[pciv:0-9A-F\\[\\]*?-]{0,24}";
    (prop::collection::vec((pattern, "m[0-3]"), 0..40), prop::collection::vec(device, 0..10)).boxed()
}

/// The index finds, for any device, exactly the modules whose patterns `fnmatch` one by one, in
/// the file's order; a uevent of any bytes parses or is `None`.
fn check_aliases((lines, devices): &AliasesAndDevices) {
    use crate::modules::alias::{fnmatch, AliasIndex};
    let text: String = lines.iter().map(|(p, m)| format!("alias {p} {m}\n")).collect();
    let (index, _) = AliasIndex::parse(&text);
    for device in devices {
        let mut expected: Vec<&str> = Vec::new();
        for (p, m) in lines.iter().filter(|(p, _)| !p.is_empty()) {
            if fnmatch(p.as_bytes(), device.as_bytes()) && !expected.contains(&m.as_str()) {
                expected.push(m);
            }
        }
        assert_eq!(index.drivers(device), expected, "{device:?} against {text:?}");
        let _ = crate::modules::coldplug::parse_uevent(device.as_bytes());
    }
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

    #[test]
    fn http_answers_never_panic(answers in answers()) {
        check_answers(&answers);
    }

    #[test]
    fn superblocks_never_panic(sb in superblocks()) {
        check_superblock(&sb);
    }

    #[test]
    fn modules_deps_never_panic(text in modules_deps()) {
        check_modules_dep(&text);
    }

    #[test]
    fn the_alias_index_matches_as_fnmatch_does(input in aliases_and_devices()) {
        check_aliases(&input);
    }
}

proptest! {
    // Each case unpacks into a fresh directory tree: fewer cases in the short run.
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn tarballs_stay_in_the_root(tar in tarballs(), signed in any::<bool>()) {
        check_tarball(&tar, signed);
    }
}

/// The long run: as many random inputs as fit in `NETINIT_FUZZ_SECS` (default 60) seconds.
#[test]
#[ignore]
fn fuzz_for_a_while() {
    let secs = std::env::var("NETINIT_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let budget = Duration::from_secs(secs);
    let mut runner = TestRunner::deterministic();
    /// One input from `strategy` through `check`: 1 when it was drawn, 0 when not.
    fn one<T: std::fmt::Debug>(
        runner: &mut TestRunner,
        strategy: &BoxedStrategy<T>,
        check: impl Fn(&T),
    ) -> u64 {
        strategy.new_tree(runner).map(|tree| check(&tree.current())).is_ok().into()
    }
    let (cmdlines, packets, answers, superblocks, tarballs, deps, aliases) =
        (cmdlines(), packets(), answers(), superblocks(), tarballs(), modules_deps(), aliases_and_devices());
    let start = Instant::now();
    let mut n = [0u64; 7];
    while start.elapsed() < budget {
        for round in 0..100 {
            n[0] += one(&mut runner, &cmdlines, |t| check_cmdline(t));
            n[1] += one(&mut runner, &packets, |p| check_packet(p));
            n[2] += one(&mut runner, &answers, |a| check_answers(a));
            n[3] += one(&mut runner, &superblocks, check_superblock);
            n[5] += one(&mut runner, &deps, |d| check_modules_dep(d));
            n[6] += one(&mut runner, &aliases, check_aliases);
            // A tarball costs a directory tree: one in ten rounds.
            if round % 10 == 0 {
                n[4] += one(&mut runner, &tarballs, |t| check_tarball(t, round % 20 == 0));
            }
        }
    }
    println!(
        "fuzzed for {secs}s, no panic: {} cmdlines, {} DHCP packets, {} HTTP answer runs, {} superblocks, {} apkovl tarballs, {} modules.dep files, {} alias files",
        n[0], n[1], n[2], n[3], n[4], n[5], n[6]
    );
}
