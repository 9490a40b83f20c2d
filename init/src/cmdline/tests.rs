//! Table tests of the cmdline parser: one `check` per aspect, one line per case.

use std::net::Ipv4Addr;

use super::*;
use std::time::Duration;

fn ip(a: &str) -> Ipv4Addr {
    a.parse().unwrap()
}

/// A cmdline with a valid image URL prepended, so only the part under test can go wrong.
fn parsed(cmdline: &str) -> Parsed {
    parse(&format!("modloop=http://h/r.sqfs {cmdline}"))
}

/// Asserts exactly one error, for `param`, whose text contains `message`.
fn one_error(p: &Parsed, param: &str, message: &str) {
    assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
    assert_eq!(p.errors[0].param, param);
    assert!(p.errors[0].to_string().contains(message), "{}", p.errors[0]);
}

/// Asserts exactly one warning, for `param`, whose text contains `message`, and no error.
fn one_warning(p: &Parsed, param: &str, message: &str) {
    assert_eq!(p.errors, [], "{:?}", p.errors);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert_eq!(p.warnings[0].param, param);
    assert!(p.warnings[0].to_string().contains(message), "{}", p.warnings[0]);
}

fn clean(p: &Parsed) {
    assert_eq!((&p.errors, &p.warnings), (&vec![], &vec![]));
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
    check("é=ü", &[("é", Some("ü"))]);
    // Only the quotes the kernel removes are removed; inner ones stay (they were all dropped once).
    check("x=\"a\"b\"", &[("x", Some("a\"b"))]);
    check("\"a=b\"", &[("a", Some("b"))]);
    check("a=b\"c\"", &[("a", Some("b\"c\""))]);
    check("\"--\" a=1", &[]);
}

#[test]
fn numbers_are_digits_and_hex_is_hex_digits() {
    // `str::parse` and `from_str_radix` take a leading '+'; the kernel's own parsers and users do not.
    one_warning(&parsed("netinit.retries=+5"), RETRIES, "from 0 to 1000");
    one_error(
        &parsed(&format!("modloop_sha256=+a{}", "b".repeat(62))),
        MODLOOP_SHA256,
        "64 hexadecimal digits",
    );
    assert!(!parsed("BOOTIF=01-+2-54-00-12-34-56").errors.is_empty());
    assert!(!parsed("modloop=http://h:+80/x").errors.is_empty());
    assert!(!parsed("ip=10.0.0.2::10.0.0.1:+24::eth0:none").errors.is_empty());
    assert!(!parsed("ip=dhcp,+1,abc").errors.is_empty());
    assert!(!parsed("netinit.overlay_size=+50%").warnings.is_empty());
    clean(&parsed("netinit.retries=5 BOOTIF=01-52-54-00-12-34-56 netinit.overlay_size=512M"));
}

#[test]
fn modloop() {
    let check = |value: &str, expected: Result<&[&str], &str>| {
        let p = parse(&format!("modloop={value}"));
        match expected {
            Ok(urls) => {
                clean(&p);
                let got: Vec<&str> = p.config.image.urls.iter().map(Url::as_str).collect();
                assert_eq!(got, urls, "{value}");
            }
            Err(message) => one_error(&p, MODLOOP, message),
        }
    };
    check("http://10.0.2.2:8080/root.squashfs", Ok(&["http://10.0.2.2:8080/root.squashfs"]));
    check("http://a/x,http://b/x", Ok(&["http://a/x", "http://b/x"]));
    check("http://a/x,,http://b/x,", Ok(&["http://a/x", "http://b/x"]));
    check("http://[fd00::1]:81/x", Ok(&["http://[fd00::1]:81/x"]));
    check("http://u:p@host/x", Ok(&["http://u:p@host/x"]));
    check("http://host?x=1", Ok(&["http://host?x=1"]));
    check("ftp://a/x", Err("expected an http:// or https:// URL; the image cannot be fetched"));
    check("https://images.lan/x", Ok(&["https://images.lan/x"]));
    check("https://[fd00::1]:8443/x", Ok(&["https://[fd00::1]:8443/x"]));
    check("https:///x", Err("no host"));
    check("http:///x", Err("no host"));
    check("http://a:0/x", Err("bad port \"0\""));
    check("http://a:99999/x", Err("bad port"));
    check("http://a:/x", Err("bad port"));
    check("http://[fd00::1/x", Err("without ']'"));
    check("", Err("is empty"));
    check(",", Err("is empty"));
    one_error(
        &parse("quiet"),
        MODLOOP,
        "missing: netinit needs the root image's URL, e.g. modloop=http://server/root.squashfs",
    );
    let p = parse("modloop=http://a/1 modloop=http://b/2");
    assert_eq!(
        p.config.image.urls,
        [Url::parse("http://b/2").unwrap()],
        "a later modloop= replaces an earlier one"
    );
}

#[test]
fn urls_never_show_credentials() {
    let check = |raw: &str, shown: &str| assert_eq!(Url::parse(raw).unwrap().to_string(), shown);
    check("http://h/x", "http://h/x");
    check("http://user:secret@h:8080/x", "http://***@h:8080/x");
    check("http://user@h/x?a=b@c", "http://***@h/x?a=b@c");
    check("https://u:p@h/x", "https://***@h/x");
}

#[test]
fn redirect_locations() {
    let check = |base: &str, location: &str, expected: Result<&str, &str>| {
        let got = Url::parse(base).unwrap().join(location);
        match expected {
            Ok(url) => {
                assert_eq!(got.map(|u| u.as_str().to_owned()), Ok(url.to_owned()), "{base} + {location}")
            }
            Err(message) => assert!(got.unwrap_err().contains(message), "{base} + {location}"),
        }
    };
    check("http://a/img/x.sqfs", "http://b/y", Ok("http://b/y"));
    check("https://a/img/x.sqfs", "https://b:8443/y", Ok("https://b:8443/y"));
    check("https://a/img/x.sqfs", "//cdn/y", Ok("https://cdn/y"));
    check("http://u:p@a:81/img/x.sqfs", "/other/y", Ok("http://u:p@a:81/other/y"));
    check("http://a/img/x.sqfs?v=1", "y.sqfs", Ok("http://a/img/y.sqfs"));
    check("http://a", "y", Ok("http://a/y"));
    check("http://a/img/x", "ftp://b/y", Err("expected an http:// or https:// URL"));
    // The scheme's case does not matter, and an upper-case http is still not https.
    check("https://a/img/x", "HTTPS://b/y", Ok("https://b/y"));
    check("https://a/img/x", "Http://b/y", Ok("http://b/y"));
    assert!(Url::parse("HTTPS://a/x").unwrap().is_https());
    assert!(Url::parse("https://a/x").unwrap().is_https());
    assert!(!Url::parse("http://a/x").unwrap().is_https());
    assert_eq!(Url::parse("https://u@a:1/x?y").unwrap().origin(), "https://u@a:1");
}

#[test]
fn image_verification_and_tuning() {
    let digest = "ab".repeat(32);
    let p =
        parsed(&format!("modloop_sha256={digest} modloop_verify=no netinit.retries=2 netinit.timeout=60"));
    clean(&p);
    assert_eq!(p.config.image.sha256, Some([0xab; 32]));
    assert_eq!(p.config.image.verify, Verify::Off);
    assert_eq!((p.config.image.retries, p.config.image.timeout), (2, Duration::from_secs(60)));
    assert_eq!(parsed("modloop_verify=yes").config.image.verify, Verify::Required);
    assert_eq!(parsed(&format!("modloop_sha256={}", "AB".repeat(32))).config.image.sha256, Some([0xab; 32]));
    one_error(
        &parsed(&format!("modloop_sha256={}", "ab".repeat(31))),
        MODLOOP_SHA256,
        "expected 64 hexadecimal digits",
    );
    one_error(
        &parsed(&format!("modloop_sha256={}zz", "ab".repeat(31))),
        MODLOOP_SHA256,
        "the image cannot be verified",
    );
    one_error(&parsed("modloop_verify=maybe"), MODLOOP_VERIFY, "expected yes or no");
    assert!(!parsed("").config.image.stream);
    assert!(parsed("modloop_stream=yes").config.image.stream);
    assert!(!parsed("modloop_stream=yes modloop_stream=no").config.image.stream);
    let p = parsed("modloop_stream=sometimes");
    one_warning(&p, MODLOOP_STREAM, "downloading the whole image first");
    assert!(!p.config.image.stream);
    one_warning(&parsed("netinit.retries=-1"), RETRIES, "expected a whole number from 0 to 1000; using 5");
    one_warning(&parsed("netinit.retries=1001"), RETRIES, "from 0 to 1000");
    one_warning(&parsed("netinit.timeout=0"), TIMEOUT, "expected whole seconds from 1 to 86400; using 900");
    // A value the parser once took, and the fetch then overflowed an Instant with (issue #10).
    one_warning(&parsed("netinit.timeout=18446744073709551615"), TIMEOUT, "from 1 to 86400; using 900");
    one_warning(&parsed("netinit.timeout=86401"), TIMEOUT, "from 1 to 86400; using 900");
    assert_eq!(parsed("netinit.timeout=86400").config.image.timeout, Duration::from_secs(86400));
    assert_eq!(parsed("netinit.retries=0").config.image.retries, 0);
}

#[test]
fn overlay_sizes() {
    let check = |cmdline: &str, expected: Size| {
        let p = parsed(cmdline);
        clean(&p);
        assert_eq!(p.config.overlay_size, expected, "{cmdline}");
    };
    check("", Size::Percent(50));
    check("netinit.overlay_size=25%", Size::Percent(25));
    check("root_size=512M", Size::Bytes(512 << 20));
    check("root_size=2g", Size::Bytes(2 << 30));
    check("netinit.overlay_size=64k", Size::Bytes(64 << 10));
    check("netinit.overlay_size=1048576", Size::Bytes(1 << 20));
    for bad in ["0%", "101%", "0", "12X", "-5M", "", "99999999999999999T"] {
        one_warning(&parsed(&format!("netinit.overlay_size={bad}")), OVERLAY_SIZE, "using 50%");
    }
    one_warning(
        &parsed("root_size=x"),
        ROOT_SIZE,
        "expected a percentage of RAM like 50% or a size like 512M",
    );
    assert_eq!(
        (Size::Percent(50).tmpfs_option(), Size::Bytes(4096).tmpfs_option()),
        ("50%".into(), "4096".into())
    );
    assert_eq!(Size::Bytes(3 << 30).to_string(), "3 GiB");
}

#[test]
fn ip_forms() {
    let check = |value: &str, mode: IpMode, device: Option<&str>| {
        let p = parsed(&format!("ip={value}"));
        clean(&p);
        assert_eq!(p.config.net.interfaces.len(), 1, "{value}");
        assert_eq!(p.config.net.interfaces[0].mode, mode, "{value}");
        assert_eq!(p.config.net.interfaces[0].device.as_deref(), device, "{value}");
    };
    let dhcp = IpMode::Dhcp { client_id: None };
    let fixed = |a: &str, prefix: u8, gw: Option<&str>, dns: &[&str]| {
        IpMode::Static(StaticIp {
            address: ip(a),
            prefix,
            gateway: gw.map(ip),
            dns: dns.iter().map(|d| ip(d)).collect(),
        })
    };
    for short in ["dhcp", "on", "any", "bootp", "both", "rarp"] {
        check(short, dhcp.clone(), None);
    }
    check(
        "dhcp,01,node-7",
        IpMode::Dhcp { client_id: Some(ClientId { kind: 1, id: "node-7".into() }) },
        None,
    );
    check("eth1:dhcp", dhcp.clone(), Some("eth1"));
    check(":dhcp", dhcp.clone(), None);
    // The examples of Documentation/admin-guide/nfs/nfsroot.rst and dracut.cmdline(7).
    check(
        "10.0.0.5:10.0.0.1:10.0.0.254:255.255.255.0:node5:eth0:off",
        fixed("10.0.0.5", 24, Some("10.0.0.254"), &[]),
        Some("eth0"),
    );
    check(
        "10.0.0.5::10.0.0.1:24::eth0:none:10.0.0.2:10.0.0.3:10.0.0.4",
        fixed("10.0.0.5", 24, Some("10.0.0.1"), &["10.0.0.2", "10.0.0.3"]),
        Some("eth0"),
    );
    check("192.168.1.9:::::eth0:off", fixed("192.168.1.9", 24, None, &[]), Some("eth0"));
    check("10.1.2.3::::::", fixed("10.1.2.3", 8, None, &[]), None);
    check("172.16.0.2:::255.255.0.0", fixed("172.16.0.2", 16, None, &[]), None);
    check("172.16.0.2", fixed("172.16.0.2", 16, None, &[]), None);
    check(":::::eth0:dhcp", dhcp.clone(), Some("eth0"));
    check("::::::", dhcp.clone(), None);
    check("10.0.0.5:::24::eth0:dhcp", dhcp.clone(), Some("eth0"));
    let p = parsed("ip=10.0.0.5:::24:node5::off");
    assert_eq!(p.config.net.hostname(), Some("node5"), "the hostname field");
    let p = parsed("ip=10.0.0.5:::24:node5::off hostname=other");
    assert_eq!(p.config.net.hostname(), Some("other"), "hostname= wins");
}

#[test]
fn ip_errors() {
    let check = |value: &str, message: &str| one_error(&parsed(&format!("ip={value}")), IP, message);
    check("10.0.0.300::::::off", "ip: \"10.0.0.300::::::off\": bad client address \"10.0.0.300\" (expected an IPv4 address); the network cannot be configured");
    check("10.0.0.5::x::::off", "bad gateway address \"x\"");
    check("10.0.0.5:1.2.3:::::off", "bad server address");
    check("10.0.0.5:::255.0.255.0", "bad netmask \"255.0.255.0\"");
    check("10.0.0.5:::33", "bad netmask \"33\"");
    check("10.0.0.5::::bad_host::off", "bad hostname \"bad_host\"");
    check("10.0.0.5::::::off:1.2.3", "bad dns0 address");
    check("10.0.0.5::::::off:::x", "bad ntp0 address");
    check("dhcpx", "unknown autoconf method \"dhcpx\"");
    check("10.0.0.300", "bad client address \"10.0.0.300\"");
    check("dhcp,zz,id", "bad client id type \"zz\"");
    check("dhcp,01", "needs both parts");
    check("eth0:magic", "unknown autoconf method");
    check("::::::off", "autoconf off but no client address");
    check("1:2:3:4:5:6:7:8:9:10:11", "has 11 fields");
    check("", "ip: is empty");
    check("off", "ip: \"off\": turns the network off, but the image must be fetched over it");
    check("none", "turns the network off");
}

#[test]
fn several_ip() {
    let p = parsed("ip=eth0:dhcp ip=10.0.0.5:::24::eth1:off");
    clean(&p);
    let devices: Vec<Option<&str>> = p.config.net.interfaces.iter().map(|i| i.device.as_deref()).collect();
    assert_eq!(devices, [Some("eth0"), Some("eth1")]);
    let p = parsed("ip=eth0:dhcp ip=eth1:off");
    clean(&p);
    let p = parsed("ip=eth0:dhcp ip=eth0:off ip=eth1:dhcp");
    one_warning(&p, IP, "ip: \"eth0:off\": configures the same NIC as an earlier ip=; this one is used");
    let modes: Vec<(&str, &IpMode)> =
        p.config.net.interfaces.iter().map(|i| (i.device.as_deref().unwrap(), &i.mode)).collect();
    assert_eq!(modes, [("eth0", &IpMode::Off), ("eth1", &IpMode::Dhcp { client_id: None })]);
    let p = parsed("ip=dhcp ip=eth1:dhcp");
    one_error(&p, IP, "ip: \"dhcp\": ip= is given 2 times, so each must name its NIC (ip=eth0:dhcp ip=eth1:dhcp); this one does not");
    let p = parsed("ip=eth0:off ip=eth1:off");
    one_error(&p, IP, "turns the network off");
}

#[test]
fn bootif_and_hostname() {
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
    for good in ["node7", "node-7.rack3.example", "a"] {
        assert_eq!(parsed(&format!("hostname={good}")).config.net.hostname(), Some(good));
    }
    for bad in ["-node", "node-", "no de", "a..b", "über"] {
        one_warning(&parsed(&format!("hostname=\"{bad}\"")), HOSTNAME, "is not a valid host name");
    }
    one_warning(&parsed(&format!("hostname={}", "a".repeat(64))), HOSTNAME, "not a valid host name");
}

#[test]
fn modules_and_blacklist() {
    let p = parsed("modules=e1000e,ixgbe modules=mlx4-en,,bad/name blacklist=nouveau,floppy");
    assert_eq!(p.config.modules, ["e1000e", "ixgbe", "mlx4_en"]);
    assert_eq!(p.config.blacklist, ["nouveau", "floppy"]);
    one_warning(&p, MODULES, "modules: \"bad/name\": is not a module name; ignored");
}

#[test]
fn alpine_parameters() {
    let p = parsed(
        "apkovl=http://boot/ovl/{MAC}.tar.gz alpine_repo=http://a/v3.20/main,https://b/community ssh_key=\"ssh-ed25519 AAAAC3 me@host\"",
    );
    clean(&p);
    let ovl = p.config.alpine.apkovl.as_ref().unwrap();
    assert_eq!(
        ovl.fill("52:54:00:12:34:56", "u").unwrap().as_str(),
        "http://boot/ovl/52:54:00:12:34:56.tar.gz"
    );
    assert_eq!(p.config.alpine.repositories, ["http://a/v3.20/main", "https://b/community"]);
    assert_eq!(p.config.alpine.ssh_key, Some(SshKey::Inline("ssh-ed25519 AAAAC3 me@host".into())));
    let p = parsed("apkovl=http://b/{UUID}.apkovl.tar.gz ssh_key=http://keys/root.pub");
    assert_eq!(
        p.config.alpine.apkovl.as_ref().unwrap().fill("m", "4c4c-44").unwrap().as_str(),
        "http://b/4c4c-44.apkovl.tar.gz"
    );
    // No SMBIOS UUID to fill in: not http://b/.apkovl.tar.gz, another machine's or nobody's file.
    assert_eq!(
        p.config.alpine.apkovl.as_ref().unwrap().fill("m", "").unwrap_err(),
        "http://b/{UUID}.apkovl.tar.gz names {UUID}, which this machine does not have"
    );
    assert_eq!(p.config.alpine.ssh_key, Some(SshKey::Fetch(Url::parse("http://keys/root.pub").unwrap())));
    one_error(
        &parsed("apkovl=ftp://x/{MAC}"),
        APKOVL,
        "expected an http:// or https:// URL; the overlay cannot be fetched",
    );
    one_warning(
        &parsed("alpine_repo=/media/cdrom/apks"),
        ALPINE_REPO,
        "expected an http:// or https:// URL; ignored",
    );
    one_warning(&parsed("ssh_key=AAAAC3"), SSH_KEY, "expected a public key like");
    one_warning(&parsed("ssh_key=ssh-ed25519"), SSH_KEY, "expected a public key like");
}

#[test]
fn init_and_args() {
    let p = parsed("init=/bin/zinit init_args=\"init --debug\"");
    assert_eq!(
        (p.config.init.as_deref(), p.config.init_args.clone()),
        (Some("/bin/zinit"), vec!["init".into(), "--debug".into()])
    );
    assert_eq!(parsed("").config.init, None, "without init=, the image decides");
    one_error(
        &parsed("init=sbin/init"),
        INIT,
        "init: \"sbin/init\": expected an absolute path like /sbin/init",
    );
}

#[test]
fn flags() {
    let p = parsed("quiet debug_init single");
    clean(&p);
    assert!(p.config.quiet && p.config.debug && p.config.single);
    assert!(parsed("s").config.single);
    let d = parsed("");
    assert!(!d.config.quiet && !d.config.debug && !d.config.single);
    one_warning(&parsed("single=1"), SINGLE, "is a flag and takes no value");
}

#[test]
fn failure_policy() {
    let check = |cmdline: &str, action: FailAction, countdown: Countdown, warned: bool| {
        let p = parsed(cmdline);
        assert_eq!(p.config.failure, FailurePolicy { action, countdown }, "{cmdline}");
        assert_eq!(!p.warnings.is_empty(), warned, "{cmdline}");
    };
    let after = |s| Countdown::After(Duration::from_secs(s));
    check("", FailAction::Reboot, after(10), false);
    check("panic=5", FailAction::Reboot, after(5), false);
    check("panic=0", FailAction::Reboot, Countdown::Never, false);
    check("panic=-1", FailAction::Reboot, Countdown::Immediately, false);
    check("panic=soon", FailAction::Reboot, after(10), true);
    check("panic=86400", FailAction::Reboot, after(86400), false);
    check("panic=9223372036854775807", FailAction::Reboot, after(86400), true);
    check("panic=-9223372036854775808", FailAction::Reboot, Countdown::Immediately, false);
    check("netinit.fail=poweroff", FailAction::Poweroff, after(10), false);
    check("netinit.fail=halt panic=3", FailAction::Halt, after(3), false);
    check("netinit.fail=shell", FailAction::Shell, after(10), false);
    check("netinit.fail=explode", FailAction::Reboot, after(10), true);
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
    check("netinit.dhcp_timeout=18446744073709551615", 90, true);
    check("netinit.dhcp_timeout=86400", 86400, false);
}

#[test]
fn unknown_words_are_ignored_unless_they_look_like_typos() {
    let check = |word: &str, meant: Option<&str>| {
        let p = parsed(word);
        assert_eq!(p.errors, [], "{word}");
        match meant {
            Some(m) => one_warning(&p, m, &format!("is not a netinit parameter; did you mean {m}? ignored")),
            None => assert_eq!(p.warnings, [], "{word}"),
        }
    };
    check("console=ttyS0,115200", None);
    check("root=/dev/ram0", None);
    check("rd.debug", None);
    check("systemd.unit=rescue.target", None);
    check("initrd=netinit.cpio.gz", None);
    check("BOOT_IMAGE=vmlinuz", None);
    check("loglevel=7", None);
    check("foo", None);
    check("id=3", None);
    check("modlop=http://x", Some(MODLOOP));
    check("modloop_sha265=ab", Some(MODLOOP_SHA256));
    check("bootif=01-52-54-00-12-34-56", Some(BOOTIF));
    check("hostnmae=x", Some(HOSTNAME));
    check("apkvol=http://x", Some(APKOVL));
    check("singel", Some(SINGLE));
    check("netinit.retry=3", Some(RETRIES));
    check("netinit.whatever=3", Some(RETRIES));
    check("blacklsit=floppy", Some(BLACKLIST));
    check("alpine-repo=http://x", None); // not a typo: '-' is '_'
}

#[test]
fn all_problems_are_reported_at_once() {
    let p = parse("modloop=ftp://x ip=1.2.3.999::::::off BOOTIF=zz init=bad panic=x modlop=y");
    let params: Vec<&str> = p.errors.iter().map(|e| e.param).collect();
    assert_eq!(params, [MODLOOP, IP, BOOTIF, INIT]);
    let warned: Vec<&str> = p.warnings.iter().map(|e| e.param).collect();
    assert_eq!(warned, [PANIC, MODLOOP]);
}

#[test]
fn distances() {
    let check = |a: &str, b: &str, d: usize| assert_eq!(distance(a, b), d, "{a} {b}");
    check("modloop", "modloop", 0);
    check("modlop", "modloop", 1);
    check("singel", "single", 1);
    check("BOOTIF", "bootif", 0);
    check("", "abc", 3);
    check("kitten", "sitting", 3);
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
    let mut parsed: Vec<&str> = PARAMETERS.iter().map(|p| p.name).collect();
    parsed.sort_unstable();
    assert_eq!(documented, parsed);
    for p in PARAMETERS {
        assert_eq!(known(p.name).map(|k| k.name), Some(p.name));
        let heading = match matches!(p.kind, Kind::Flag(_)) {
            true => format!("### `{}`\n", p.name),
            false => format!("### `{}=`\n", p.name),
        };
        assert!(spec.contains(&heading), "{} is documented as {heading:?}", p.name);
        let rule = match p.bad {
            Severity::Error => "- Bad value: error",
            Severity::Warning => "- Bad value: warning",
        };
        let section = spec.split(&heading).nth(1).and_then(|rest| rest.split("\n### ").next()).unwrap_or("");
        let free = section.contains("- Bad value: none possible");
        assert!(
            matches!(p.kind, Kind::Flag(_)) || section.contains(rule) || free,
            "{}: the spec says {rule:?}",
            p.name
        );
    }
}

#[test]
fn vlans() {
    let vlan = |name: &str, parent: &str, id: u16| Vlan { name: name.into(), parent: parent.into(), id };
    // dracut's four naming styles, and several VLANs in cmdline order.
    let p =
        parsed("vlan=eth0.100:eth0 vlan=vlan0005:eth1 vlan=vlan7:eth1 vlan=eno1.0042:eno1 ip=eth0.100:dhcp");
    clean(&p);
    assert_eq!(
        p.config.net.vlans,
        [
            vlan("eth0.100", "eth0", 100),
            vlan("vlan0005", "eth1", 5),
            vlan("vlan7", "eth1", 7),
            vlan("eno1.0042", "eno1", 42)
        ]
    );
    assert_eq!(p.config.net.interfaces[0].device.as_deref(), Some("eth0.100"));
    assert_eq!(parsed("").config.net.vlans, []);
    for (value, message) in [
        ("eth0.100", "expected <name>:<nic>"),
        ("eth0.100:eth0:x", "expected <name>:<nic>"),
        ("mgmt:eth0", "names no VLAN id"),
        ("eth0.0:eth0", "names no VLAN id"),
        ("eth0.4095:eth0", "names no VLAN id"),
        ("eth0.5a:eth0", "names no VLAN id"),
        ("eth0.+5:eth0", "is not an interface name"),
        ("vlan:eth0", "names no VLAN id"),
        ("averyveryverylongname.5:eth0", "is not an interface name"),
        ("eth0.5:et/h0", "is not an interface name"),
        ("eth0.5:", "is not an interface name"),
        ("eth0.5:eth0.5", "cannot be its own NIC"),
    ] {
        one_error(&parsed(&format!("vlan={value}")), VLAN, message);
    }
    one_error(&parsed("vlan=eth0.5:eth0 vlan=eth0.5:eth1"), VLAN, "eth0.5 is given twice");
    one_error(&parsed("vlan=vlan100:eth0 vlan=eth0.100:eth0"), VLAN, "VLAN 100 on eth0 is given twice");
}

#[test]
fn bonds() {
    let p = parsed(
        "bond=bond0:eth0,eth1:mode=802.3ad,miimon=100,lacp_rate=fast,xmit_hash_policy=layer3+4 ip=bond0:dhcp",
    );
    clean(&p);
    let b = &p.config.net.bonds[0];
    assert_eq!(
        (b.name.as_str(), b.slaves.as_slice()),
        ("bond0", ["eth0".to_owned(), "eth1".to_owned()].as_slice())
    );
    assert_eq!(
        (b.mode, b.miimon, b.lacp_fast, b.xmit_hash_policy),
        (BondMode::Lacp, 100, Some(true), Some(1))
    );
    assert_eq!(p.config.net.interfaces[0].device.as_deref(), Some("bond0"));
    // dracut's defaults for what is left out, but active-backup rather than balance-rr.
    let p = parsed("bond=bond0");
    clean(&p);
    let b = &p.config.net.bonds[0];
    assert_eq!(b.slaves, ["eth0", "eth1"]);
    assert_eq!((b.mode, b.miimon, b.mtu, b.primary.as_deref()), (BondMode::ActiveBackup, 100, None, None));
    let b = Bond::parse("bond1:eno1,eno2:mode=1,primary=eno2,updelay=0,downdelay=400:9000").unwrap();
    assert_eq!(
        (b.mode, b.primary.as_deref(), b.updelay, b.downdelay, b.mtu),
        (BondMode::ActiveBackup, Some("eno2"), Some(0), Some(400), Some(9000))
    );
    assert_eq!(b.options_text(), "miimon 100, updelay 0, downdelay 400, primary eno2, mtu 9000");
    assert_eq!(Bond::parse("b::mode=balance-alb").unwrap().slaves, ["eth0", "eth1"]);
    for (mode, number) in [
        ("balance-rr", 0),
        ("active-backup", 1),
        ("balance-xor", 2),
        ("broadcast", 3),
        ("802.3ad", 4),
        ("balance-tlb", 5),
        ("balance-alb", 6),
    ] {
        let by_name = Bond::parse(&format!("b:eth0:mode={mode}")).unwrap().mode;
        assert_eq!((by_name.name(), by_name as u8), (mode, number));
        assert_eq!(Bond::parse(&format!("b:eth0:mode={number}")).unwrap().mode, by_name);
    }
    for (value, message) in [
        ("", "is not an interface name"),
        ("bond/0", "is not an interface name"),
        ("bond0:eth0,", "is not an interface name"),
        ("bond0:eth0,eth0", "eth0 is named twice"),
        ("bond0:bond0", "cannot be its own NIC"),
        ("bond0:eth0:mode=lacp", "is not a bonding mode"),
        ("bond0:eth0:mode=7", "is not a bonding mode"),
        ("bond0:eth0:miimon=fast", "is not a whole number of milliseconds"),
        ("bond0:eth0:updelay=-1", "is not a whole number"),
        ("bond0:eth0:downdelay=99999999999", "is not a whole number"),
        ("bond0:eth0:mode=802.3ad,lacp_rate=medium", "is not slow or fast"),
        ("bond0:eth0:lacp_rate=fast", "lacp_rate is for mode 802.3ad, not active-backup"),
        ("bond0:eth0:mode=802.3ad,xmit_hash_policy=layer5", "is not one of layer2, layer3+4"),
        ("bond0:eth0:xmit_hash_policy=layer2", "xmit_hash_policy is for modes"),
        ("bond0:eth0,eth1:primary=eth2", "primary=eth2 is not one of the bond's NICs (eth0, eth1)"),
        ("bond0:eth0,eth1:mode=802.3ad,primary=eth1", "primary is for modes active-backup"),
        ("bond0:eth0:arp_interval=100", "unknown bonding option \"arp_interval\""),
        ("bond0:eth0:miimon", "is not key=value"),
        ("bond0:eth0::67", "is not a number from 68 to 65535"),
        ("bond0:eth0::65536", "is not a number from 68 to 65535"),
        ("bond0:eth0::1500:x", "expected <name>[:<nics>"),
    ] {
        one_error(&parsed(&format!("bond={value}")), BOND, message);
    }
    assert_eq!(Bond::parse("b:eth0::68").unwrap().mtu, Some(68));
    assert_eq!(
        Bond::parse("b:eth0:mode=802.3ad,xmit_hash_policy=5,lacp_rate=0").unwrap().xmit_hash_policy,
        Some(5)
    );
    one_error(
        &parsed("bond=bond0:eth0,eth1 ip=eth1:dhcp"),
        IP,
        "eth1 is a NIC of bond bond0, which carries its address: name bond0",
    );
    one_error(&parsed("bond=bond0:eth0 bond=bond0:eth1"), BOND, "bond0 is given twice");
    one_error(&parsed("bond=bond0:eth0,eth1 bond=bond1:eth1"), BOND, "eth1 is already in bond bond0");
}

#[test]
fn proxies() {
    let p = parsed(
        "proxy=http://boot:s3cr%40t@proxy.lan:3128/ noproxy=.Lan,10.0.0.0/8,[fd00::]/8,images.test.,*",
    );
    clean(&p);
    let proxy = &p.config.image.proxy;
    let server = proxy.server.as_ref().unwrap();
    assert_eq!(server.authority(), "proxy.lan:3128");
    assert_eq!(server.to_string(), "http://***@proxy.lan:3128");
    // base64("boot:s3cr@t")
    assert_eq!(server.authorization().as_deref(), Some("Basic Ym9vdDpzM2NyQHQ="));
    assert_eq!(
        proxy.bypass.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [".lan", "10.0.0.0/8", "fd00::/8", ".images.test", "*"]
    );
    let plain = parsed("proxy=http://10.0.0.3:8080");
    assert_eq!(plain.config.image.proxy.server.as_ref().unwrap().authorization(), None);
    assert_eq!(plain.config.image.proxy.server.as_ref().unwrap().to_string(), "http://10.0.0.3:8080");

    for (value, message) in [
        ("http://proxy.lan", "give the proxy's port, as in http://proxy.lan:3128"),
        ("http://[fd00::1]", "give the proxy's port"),
        ("https://proxy.lan:3128", "expected an http:// proxy"),
        ("proxy.lan:3128", "expected an http:// or https:// URL"),
        ("http://proxy.lan:3128/path", "a proxy URL has no path"),
        ("http://a:%zz@proxy.lan:3128", "bad %-escape"),
        ("http://proxy.lan:0", "bad port"),
    ] {
        one_error(&parsed(&format!("proxy={value}")), PROXY, message);
    }
    one_warning(&parsed("proxy=http://p:1 noproxy=a/8,ok.lan"), NOPROXY, "expected a host name");
    one_warning(&parsed("proxy=http://p:1 noproxy=10.0.0.0/33"), NOPROXY, "bad prefix length");
    one_warning(&parsed("noproxy=.lan"), NOPROXY, "has no effect without proxy=");
}

#[test]
fn what_bypasses_the_proxy() {
    let config = |bypass: &str| parsed(&format!("proxy=http://p:3128 noproxy={bypass}")).config.image.proxy;
    let through = |config: &ProxyConfig, url: &str| config.for_url(&Url::parse(url).unwrap()).is_some();
    let c = config("images.lan,10.0.0.0/8,fd00::/16,192.168.1.7");
    assert!(!through(&c, "http://images.lan/r"));
    assert!(!through(&c, "http://a.b.IMAGES.lan./r"));
    assert!(through(&c, "http://badimages.lan/r"));
    assert!(through(&c, "http://lan/r"));
    assert!(!through(&c, "http://10.200.0.1:8080/r"));
    assert!(through(&c, "http://11.0.0.1/r"));
    assert!(!through(&c, "https://[fd00:0:1::5]/r"));
    assert!(through(&c, "https://[fd01::5]/r"));
    assert!(!through(&c, "http://192.168.1.7/r"));
    assert!(through(&c, "http://192.168.1.8/r"));
    // A name is not resolved to match an address entry.
    assert!(through(&c, "http://localhost/r"));
    assert!(!through(&config("*"), "http://x/"));
    assert!(through(&config("0.0.0.0/1"), "http://200.0.0.1/"));
    assert!(!through(&config("0.0.0.0/0"), "http://200.0.0.1/"));
    assert!(!through(&config("10.1.2.0/23"), "http://10.1.3.255/"));
    assert!(through(&config("10.1.2.0/23"), "http://10.1.4.0/"));
    // No proxy= at all: everything goes direct.
    assert!(!through(&parsed("").config.image.proxy, "http://x/"));
}

#[test]
fn the_ntp_field() {
    let p = parsed("ip=10.0.0.5::10.0.0.1:24::eth0:off:10.0.0.1::10.0.0.9");
    clean(&p);
    assert_eq!(p.config.net.interfaces[0].ntp, Some(ip("10.0.0.9")));
    assert_eq!(parsed("ip=::::::dhcp:::10.0.0.9").config.net.interfaces[0].ntp, Some(ip("10.0.0.9")));
    assert_eq!(parsed("ip=dhcp").config.net.interfaces[0].ntp, None);
    one_error(&parsed("ip=10.0.0.5::10.0.0.1:24::eth0:off:::ntp.lan"), IP, "bad ntp0 address");
}

#[test]
fn ipv6_forms() {
    let p = parsed("ip=auto6");
    clean(&p);
    assert_eq!(p.config.net.interfaces[0].mode, IpMode::Auto6);
    let p = parsed("ip=eth1:auto6");
    assert_eq!(
        (&p.config.net.interfaces[0].mode, p.config.net.interfaces[0].device.as_deref()),
        (&IpMode::Auto6, Some("eth1"))
    );
    let p = parsed("ip=[2001:db8::10]::[2001:db8::1]:64:node6:eth0:none:[2001:db8::53]:[10.0.0.53]");
    clean(&p);
    let ip = &p.config.net.interfaces[0];
    assert_eq!(
        ip.mode,
        IpMode::Static6(StaticIp6 {
            address: "2001:db8::10".parse().unwrap(),
            prefix: 64,
            gateway: Some("2001:db8::1".parse().unwrap()),
            dns: vec!["2001:db8::53".parse().unwrap(), "10.0.0.53".parse().unwrap()],
        })
    );
    assert_eq!((ip.device.as_deref(), ip.hostname.as_deref()), (Some("eth0"), Some("node6")));
    // Trailing fields may be left out; the prefix defaults to 64.
    let p = parsed("ip=[fd00::5]");
    let IpMode::Static6(s) = &p.config.net.interfaces[0].mode else { panic!("{p:?}") };
    assert_eq!((s.prefix, s.gateway, p.config.net.interfaces[0].device.as_deref()), (64, None, None));
    for (value, message) in [
        ("[fd00::5", "'[' without ']'"),
        ("[fd00::5]x:", "expected ':' after [fd00::5]"),
        ("[fd00::g]", "bad client address"),
        ("[fd00::5]::[fd00::1]:129", "bad prefix length"),
        ("[fd00::5]::[10.0.0.1]:64", "bad gateway address"),
        ("[fd00::5]:::64::eth0:dhcp", "the IPv6 form is static"),
        ("10.0.0.5::[fd00::1]:64", "the client address first, in brackets"),
        ("[fd00::5]:::64::eth0:none:::x", "at most 9"),
        ("dhcp6,x", "unknown autoconf method"),
    ] {
        one_error(&parsed(&format!("ip={value}")), IP, message);
    }
}

#[test]
fn dual_stack() {
    let mode = |v: &str| parsed(&format!("ip={v}")).config.net.interfaces[0].mode.clone();
    assert_eq!(mode("dhcp,auto6"), IpMode::DualStack { client_id: None, v6: Stack6::Auto6 });
    assert_eq!(mode("eth0:dhcp,dhcp6"), IpMode::DualStack { client_id: None, v6: Stack6::Dhcp6 });
    assert_eq!(
        mode("dhcp,01,node7,auto6"),
        IpMode::DualStack { client_id: Some(ClientId { kind: 1, id: "node7".into() }), v6: Stack6::Auto6 }
    );
    assert_eq!(
        mode("dhcp,01,node7"),
        IpMode::Dhcp { client_id: Some(ClientId { kind: 1, id: "node7".into() }) }
    );
    one_error(&parsed("ip=dhcp,auto6,x"), IP, "bad client id type \"auto6\"");
    one_error(&parsed("ip=dhcp,01"), IP, "needs both parts");
    one_error(&parsed("ip=auto6,dhcp"), IP, "unknown autoconf method");
}

#[test]
fn report_and_netconsole() {
    let c = parse("modloop=http://a/b netinit.report=https://t:k@ctl/boot/{MAC}?ip={IP}&u={UUID}&h={HOSTNAME}&s={SERIAL} netinit.netconsole=10.0.2.2:5555");
    assert_eq!(c.warnings, []);
    let t = c.config.report.unwrap();
    let m = Machine {
        mac: "52:54:00:12:34:56".into(),
        uuid: "4c4c4544-0042".into(),
        ip: "10.0.2.15".into(),
        hostname: "n5".into(),
        serial: "SN 12/3".into(),
    };
    assert_eq!(
        t.fill_machine(&m).unwrap().as_str(),
        "https://t:k@ctl/boot/52:54:00:12:34:56?ip=10.0.2.15&u=4c4c4544-0042&h=n5&s=SN%2012%2F3"
    );
    let no_serial = Machine { serial: String::new(), ..m.clone() };
    assert!(t
        .fill_machine(&no_serial)
        .unwrap_err()
        .contains("names {SERIAL}, which this machine does not have"));
    let only_mac = UrlTemplate::parse_report("http://c/r/{MAC}").unwrap();
    assert_eq!(only_mac.fill_machine(&no_serial).unwrap().as_str(), "http://c/r/52:54:00:12:34:56");
    assert_eq!(c.config.netconsole, Some(NetconsoleTarget { host: [10, 0, 2, 2].into(), port: 5555 }));
    let c = parse("modloop=http://a/b netinit.netconsole=192.168.1.9");
    assert_eq!(c.config.netconsole.unwrap().port, 6666);
    let c = parse("modloop=http://a/b netinit.report=ftp://x netinit.netconsole=logs.lan:0");
    assert_eq!(c.errors, []);
    let w: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        [
            "netinit.report: \"ftp://x\": expected an http:// or https:// URL; no reports are sent",
            "netinit.netconsole: \"logs.lan:0\": bad port \"0\" (expected 1 to 65535); the log stays on this machine"
        ]
    );
    assert_eq!(c.config.report, None);
    let c = parse("modloop=http://a/b netinit.netconsole=logs.lan");
    assert!(c.warnings[0].to_string().contains("expected an IPv4 address, not \"logs.lan\""));
}
