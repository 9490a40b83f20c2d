//! Table tests of the cmdline parser: one `check` per aspect, one line per case.

use super::*;

fn ip(a: &str) -> Ipv4Addr {
    a.parse().unwrap()
}

#[test]
fn words_follow_the_kernel() {
    let check = |cmdline: &str, expected: &[(&str, Option<&str>)]| {
        let got = words(cmdline);
        let got: Vec<(&str, Option<&str>)> = got.iter().map(|(n, v)| (n.as_str(), v.as_deref())).collect();
        assert_eq!(got, expected, "{cmdline:?}");
    };
    check("", &[]);
    check("   quiet  ", &[("quiet", None)]);
    check("a=1 b=2", &[("a", Some("1")), ("b", Some("2"))]);
    check("a=1=2", &[("a", Some("1=2"))]);
    check("init_args=\"-v --x\" b", &[("init_args", Some("-v --x")), ("b", None)]);
    check("\"quoted word\" x", &[("quoted word", None), ("x", None)]);
    check("a=\"unterminated b=2", &[("a", Some("unterminated b=2"))]);
    check("a\tb\nc", &[("a", None), ("b", None), ("c", None)]);
    check("a=1 -- init=/x single", &[("a", Some("1"))]);
    check("a=", &[("a", Some(""))]);
}

fn parsed(cmdline: &str) -> Parsed {
    parse(&format!("modloop=http://h/r.sqfs {cmdline}"))
}

#[test]
fn modloop() {
    let check = |value: &str, expected: Result<&[&str], &str>| {
        let p = parse(&format!("modloop={value}"));
        match expected {
            Ok(urls) => {
                assert_eq!(p.errors, [], "{value}");
                let got: Vec<&str> = p.config.modloop.iter().map(Url::as_str).collect();
                assert_eq!(got, urls, "{value}");
            }
            Err(message) => {
                assert_eq!(p.errors.len(), 1, "{value}: {:?}", p.errors);
                assert_eq!(p.errors[0].param, MODLOOP);
                assert!(p.errors[0].message.contains(message), "{value}: {}", p.errors[0]);
            }
        }
    };
    check("http://10.0.2.2:8080/root.squashfs", Ok(&["http://10.0.2.2:8080/root.squashfs"]));
    check("http://a/x,http://b/x", Ok(&["http://a/x", "http://b/x"]));
    check("http://a/x,,http://b/x,", Ok(&["http://a/x", "http://b/x"]));
    check("http://[fd00::1]:81/x", Ok(&["http://[fd00::1]:81/x"]));
    check("http://u:p@host/x", Ok(&["http://u:p@host/x"]));
    check("ftp://a/x", Err("expected an http:// URL"));
    check("https://a/x", Err("https is not supported"));
    check("http:///x", Err("no host"));
    check("http://a:0/x", Err("bad port \"0\""));
    check("http://a:99999/x", Err("bad port"));
    check("http://a:/x", Err("bad port"));
    check("http://[fd00::1/x", Err("without ']'"));
    check("", Err("is empty"));
    check(",", Err("is empty"));
    assert_eq!(
        parse("quiet").errors[0].message,
        "missing: netinit needs the root image's URL, e.g. modloop=http://server/root.squashfs"
    );
    assert_eq!(
        parse("modloop=http://a/1 modloop=http://b/2").config.modloop,
        [Url::parse("http://b/2").unwrap()]
    );
}

#[test]
fn urls_never_show_credentials() {
    let check = |raw: &str, shown: &str| assert_eq!(Url::parse(raw).unwrap().to_string(), shown);
    check("http://h/x", "http://h/x");
    check("http://user:secret@h:8080/x", "http://***@h:8080/x");
    check("http://user@h/x?a=b@c", "http://***@h/x?a=b@c");
}

#[test]
fn ip_forms() {
    let check = |value: &str, mode: IpMode, device: Option<&str>| {
        let p = parsed(&format!("ip={value}"));
        assert_eq!(p.errors, [], "{value}");
        assert_eq!(p.config.net.mode, mode, "{value}");
        assert_eq!(p.config.net.device.as_deref(), device, "{value}");
    };
    let fixed = |a: &str, prefix: u8, gw: Option<&str>, dns: &[&str], host: Option<&str>| {
        IpMode::Static(StaticIp {
            address: ip(a),
            prefix,
            gateway: gw.map(ip),
            dns: dns.iter().map(|d| ip(d)).collect(),
            hostname: host.map(str::to_owned),
        })
    };
    for short in ["dhcp", "on", "any", "bootp", "both", "rarp", "dhcp,01,aabb"] {
        check(short, IpMode::Dhcp, None);
    }
    check("eth1:dhcp", IpMode::Dhcp, Some("eth1"));
    check(":dhcp", IpMode::Dhcp, None);
    // The examples of Documentation/admin-guide/nfs/nfsroot.rst and dracut.cmdline(7).
    check(
        "10.0.0.5:10.0.0.1:10.0.0.254:255.255.255.0:node5:eth0:off",
        fixed("10.0.0.5", 24, Some("10.0.0.254"), &[], Some("node5")),
        Some("eth0"),
    );
    check(
        "10.0.0.5::10.0.0.1:24::eth0:none:10.0.0.2:10.0.0.3",
        fixed("10.0.0.5", 24, Some("10.0.0.1"), &["10.0.0.2", "10.0.0.3"], None),
        Some("eth0"),
    );
    check("192.168.1.9:::::eth0:off", fixed("192.168.1.9", 24, None, &[], None), Some("eth0"));
    check("10.1.2.3::::::", fixed("10.1.2.3", 8, None, &[], None), None);
    check("172.16.0.2:::255.255.0.0", fixed("172.16.0.2", 16, None, &[], None), None);
    check(":::::eth0:dhcp", IpMode::Dhcp, Some("eth0"));
    check("::::::", IpMode::Dhcp, None);
    check("10.0.0.5:::24::eth0:dhcp", IpMode::Dhcp, Some("eth0"));
}

#[test]
fn ip_errors() {
    let check = |value: &str, message: &str| {
        let p = parsed(&format!("ip={value}"));
        assert_eq!(p.errors.len(), 1, "{value}: {:?}", p.errors);
        assert_eq!(p.errors[0].param, IP);
        assert!(p.errors[0].message.contains(message), "{value}: {}", p.errors[0]);
        if !value.is_empty() {
            assert!(p.errors[0].to_string().starts_with(&format!("ip: {value:?}: ")), "{}", p.errors[0]);
        }
    };
    check(
        "10.0.0.300::::::off",
        "bad client address \"10.0.0.300\" (expected an IPv4 address); the network cannot be configured",
    );
    check("10.0.0.5::x::::off", "bad gateway address \"x\"");
    check("10.0.0.5:::255.0.255.0", "bad netmask \"255.0.255.0\"");
    check("10.0.0.5:::33", "bad netmask \"33\"");
    check("10.0.0.5::::::off:1.2.3", "bad dns0 address");
    check("dhcpx", "unknown autoconf method \"dhcpx\"");
    check("eth0:magic", "unknown autoconf method");
    check("::::::off", "autoconf off but no client address");
    check("1:2:3:4:5:6:7:8:9:10:11", "has 11 fields");
    check("", "is empty");
    check("off", "turns the network off");
    check("none", "turns the network off");
}

#[test]
fn ip_given_twice_warns_and_keeps_the_last() {
    let p = parsed("ip=off ip=dhcp");
    assert_eq!(p.config.net.mode, IpMode::Dhcp);
    assert_eq!(p.warnings.len(), 1);
    assert!(p.warnings[0].message.contains("only the last ip= is used"));
}

#[test]
fn bootif() {
    let check = |value: &str, expected: Option<[u8; 6]>| {
        let p = parsed(&format!("BOOTIF={value}"));
        assert_eq!(p.config.net.bootif.map(|m| m.0), expected, "{value}");
        assert_eq!(p.errors.is_empty(), expected.is_some(), "{value}: {:?}", p.errors);
    };
    check("01-52-54-00-12-34-56", Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
    check("52:54:00:12:34:56", Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
    check("52-54-00-AB-cd-EF", Some([0x52, 0x54, 0, 0xab, 0xcd, 0xef]));
    check("02-52-54-00-12-34-56", None);
    check("52:54:00:12:34", None);
    check("52:54:00:12:34:5g", None);
    check("525:4:00:12:34:56", None);
    assert_eq!(Mac([0x52, 0x54, 0, 0xab, 0xcd, 0xef]).to_string(), "52:54:00:ab:cd:ef");
}

#[test]
fn init_and_args() {
    let p = parsed("init=/bin/zinit init_args=\"init --debug\"");
    assert_eq!(
        (p.config.init.as_str(), p.config.init_args.clone()),
        ("/bin/zinit", vec!["init".into(), "--debug".into()])
    );
    assert_eq!(parsed("").config.init, "/sbin/init");
    let p = parsed("init=sbin/init");
    assert_eq!(p.errors[0].to_string(), "init: \"sbin/init\": expected an absolute path like /sbin/init");
}

#[test]
fn modules() {
    let p = parsed("modules=e1000e,ixgbe modules=mlx4-en,,bad/name");
    assert_eq!(p.config.modules, ["e1000e", "ixgbe", "mlx4_en"]);
    assert_eq!(p.warnings.len(), 1);
    assert_eq!(p.warnings[0].to_string(), "modules: \"bad/name\": is not a module name; ignored");
}

#[test]
fn panic_is_the_countdown() {
    let check = |cmdline: &str, expected: Countdown, warned: bool| {
        let p = parsed(cmdline);
        assert_eq!(p.config.countdown, expected, "{cmdline}");
        assert_eq!(!p.warnings.is_empty(), warned, "{cmdline}");
    };
    check("", Countdown::After(DEFAULT_COUNTDOWN), false);
    check("panic=5", Countdown::After(Duration::from_secs(5)), false);
    check("panic=0", Countdown::Never, false);
    check("panic=-1", Countdown::Immediately, false);
    check("panic=soon", Countdown::After(DEFAULT_COUNTDOWN), true);
}

#[test]
fn tuning_knobs_warn_and_keep_defaults() {
    let check = |cmdline: &str, expected: u64, warned: bool| {
        let p = parsed(cmdline);
        assert_eq!(p.config.net.dhcp_timeout, Duration::from_secs(expected), "{cmdline}");
        assert_eq!(p.warnings.len(), usize::from(warned), "{cmdline}: {:?}", p.warnings);
        assert_eq!(p.errors, [], "{cmdline}");
    };
    check("", 90, false);
    check("netinit.dhcp_timeout=120", 120, false);
    check("netinit.dhcp-timeout=30", 30, false);
    check("netinit.dhcp_timeout=0", 90, true);
    check("netinit.dhcp_timeout=-3", 90, true);
    check("netinit.dhcp_timeout", 90, true);
}

#[test]
fn quiet_and_unknown_words() {
    let p = parsed("quiet console=ttyS0,115200 root=/dev/ram0 rd.debug foo");
    assert!(p.config.quiet);
    assert_eq!((p.warnings.len(), p.errors.len()), (0, 0));
}

#[test]
fn all_problems_are_reported_at_once() {
    let p = parse("modloop=ftp://x ip=1.2.3.999::::::off BOOTIF=zz init=bad panic=x");
    let params: Vec<&str> = p.errors.iter().map(|e| e.param).collect();
    assert_eq!(params, [MODLOOP, IP, BOOTIF, INIT]);
    assert_eq!(p.warnings.len(), 1);
}

/// Every parameter in `cmdline-spec.md` is one the parser reads, and every one it reads is there.
#[test]
fn spec_and_parser_agree() {
    let spec = include_str!("../../../cmdline-spec.md");
    let mut documented: Vec<&str> = spec
        .lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.split(['`', '=']).next())
        .collect();
    documented.sort_unstable();
    let mut parsed: Vec<&str> = PARAMETERS.to_vec();
    parsed.sort_unstable();
    assert_eq!(documented, parsed);
    for name in PARAMETERS {
        assert_eq!(known(name), Some(*name));
    }
}
