//! The plan of a cmdline, as text and as JSON: whole renderings pinned, and README's cmdlines.

use super::*;
use crate::cmdline;

#[test]
fn a_plan() {
    let p = cmdline::parse(
        "modloop=http://u:p@images.lan/alpine.squashfs,http://backup/alpine.squashfs ip=dhcp BOOTIF=01-52-54-00-12-34-56 panic=30",
    );
    assert_eq!(
        Plan::new(&p).text(),
        "network:  the NIC with MAC 52:54:00:12:34:56 (BOOTIF)
          DHCP, giving up after 90s
          the DHCP lease is kept after the switch unless the image has a DHCP client
image:    http://***@images.lan/alpine.squashfs
          http://backup/alpine.squashfs
          no digest to check (modloop_sha256=)
          signature checked if the initramfs has trusted keys
          6 attempts within 900s, waits of up to 1s doubling to 30s between them
          a busy server (503, 429) is waited out within the 900s, using no attempts
          mounted read-only under a tmpfs overlay of 50% of RAM
modules:  those the devices ask for and those no device asks for (loop, file systems); storage in the background
init:     /sbin/zinit init if the image has /etc/zinit/, else /sbin/init, else /sbin/openrc-init
failure:  reboot after 30s
fleet:    the boot record in /run/netinit/boot.json
this cmdline would boot
"
    );
}

#[test]
fn a_bad_cmdline() {
    let p = cmdline::parse("ip=10.0.0.300::::::off modlop=http://x/y");
    let out = Plan::new(&p).text();
    assert!(
        out.contains("error:    ip: \"10.0.0.300::::::off\": bad client address \"10.0.0.300\""),
        "{out}"
    );
    assert!(out.contains("error:    modloop: missing"), "{out}");
    assert!(
        out.contains(
            "warning:  modloop: \"modlop=http://x/y\": is not a netinit parameter; did you mean modloop?"
        ),
        "{out}"
    );
    assert!(out.ends_with("this cmdline would NOT boot\n"), "{out}");
}

/// Every kernel command line README.md shows explains as a cmdline that boots, with iPXE's
/// `${...}` filled in as iPXE would.
#[test]
fn the_readme_cmdlines_boot() {
    let readme = include_str!("../../../README.md");
    let mut seen = 0;
    for line in readme.lines() {
        let Some(start) = line.find("modloop=") else { continue };
        let text = line[start..].split(['`', '\'']).next().unwrap_or("");
        if !text.starts_with("modloop=http") || text.contains("...") {
            continue; // prose naming the parameter, not a cmdline
        }
        let cmdline = text.replace("${netX/mac:hexhyp}", "52-54-00-12-34-56");
        let p = cmdline::parse(&cmdline);
        assert_eq!(p.errors, [], "README: {cmdline}");
        assert!(Plan::new(&p).text().ends_with("this cmdline would boot\n"));
        seen += 1;
    }
    assert!(seen >= 3, "found {seen} cmdlines in README.md");
}

#[test]
fn json() {
    let p = cmdline::parse(
        "modloop=http://a/b ip=eth0:dhcp ip=10.0.0.5::10.0.0.1:24:n5:eth1:off hostname=x netinit.fail=poweroff panic=0 init_args=\"a \\\"b\"",
    );
    assert_eq!(
        Plan::new(&p).json(),
        concat!(
            r#"{"boots":true,"network":{"bootif":null,"bonds":[],"vlans":[],"interfaces":["#,
            r#"{"device":"eth0","choice":"eth0 (ip=)","method":"dhcp","client_id":null},"#,
            r#"{"device":"eth1","choice":"eth1 (ip=)","method":"static","address":"10.0.0.5","prefix":24,"gateway":"10.0.0.1","dns":[]}],"#,
            r#""dhcp_timeout":90,"keep_lease":"auto","hostname":"x"},"#,
            r#""image":{"urls":["http://a/b"],"sha256":null,"verify":"auto","stream":false,"attempts":6,"timeout":900,"overlay_size":"50%","proxy":{"server":null,"noproxy":[]}},"#,
            r#""modules":{"coldplug":true,"extra":[],"blacklist":[]},"alpine":{"apkovl":null,"repositories":[],"ssh_key":null},"#,
            r#""init":{"path":null,"args":["a","\\\"b"],"candidates":["#,
            r#"{"path":"/sbin/zinit","args":["a","\\\"b"],"with_dir":"/etc/zinit"},"#,
            r#"{"path":"/sbin/init","args":["a","\\\"b"],"with_dir":null},"#,
            r#"{"path":"/sbin/openrc-init","args":["a","\\\"b"],"with_dir":null}]},"#,
            r#""single":false,"debug":false,"quiet":false,"#,
            r#""failure":{"action":"poweroff","countdown":null},"#,
            r#""fleet":{"report":null,"netconsole":null,"boot_record":"/run/netinit/boot.json"},"warnings":[],"errors":[]}"#
        )
    );
}

#[test]
fn the_init_line_states_the_rule() {
    let init_line = |cmdline: &str| {
        let parsed = cmdline::parse(&format!("modloop=http://a/b {cmdline}"));
        let out = Plan::new(&parsed).text();
        out.lines().find(|l| l.starts_with("init:")).unwrap_or_default().to_owned()
    };
    assert_eq!(
        init_line(""),
        "init:     /sbin/zinit init if the image has /etc/zinit/, else /sbin/init, else /sbin/openrc-init"
    );
    assert_eq!(
        init_line("init_args=\"-d init\""),
        "init:     /sbin/zinit -d init if the image has /etc/zinit/, else /sbin/init -d init, else /sbin/openrc-init -d init"
    );
    assert_eq!(init_line("init=/sbin/zinit-pid1"), "init:     /sbin/zinit-pid1 (init=)");
    assert_eq!(init_line("init=/bin/sh init_args=-x"), "init:     /bin/sh -x (init=)");
    let json = Plan::new(&cmdline::parse("modloop=http://a/b init=/bin/sh")).json();
    assert!(
        json.contains(r#""init":{"path":"/bin/sh","args":[],"candidates":[{"path":"/bin/sh","args":[],"with_dir":null}]}"#),
        "{json}"
    );
}

#[test]
fn a_vlan_plan() {
    let p = cmdline::parse(
        "modloop=http://images.lan/r.squashfs vlan=eth0.100:eth0 vlan=vlan7:eth1 ip=eth0.100:dhcp",
    );
    let text = Plan::new(&p).text();
    assert!(
        text.starts_with(
            "vlans:    eth0.100: VLAN 100 over eth0 (8021q)
          vlan7: VLAN 7 over eth1 (8021q)
network:  eth0.100 (ip=)
"
        ),
        "{text}"
    );
    let json = Plan::new(&p).json();
    assert!(
        json.contains(r#""vlans":[{"name":"eth0.100","parent":"eth0","id":100},{"name":"vlan7","parent":"eth1","id":7}]"#),
        "{json}"
    );
}

#[test]
fn a_bond_plan() {
    let p = cmdline::parse(
        "modloop=http://images.lan/r.squashfs bond=bond0:eth0,eth1:mode=802.3ad,lacp_rate=fast,xmit_hash_policy=layer3+4 bond=bond1:eth2,eth3:primary=eth3:9000 ip=bond0:dhcp",
    );
    let text = Plan::new(&p).text();
    assert!(
        text.starts_with(
            "bonds:    bond0: 802.3ad over eth0 eth1 (bonding), miimon 100, lacp_rate fast, xmit_hash_policy layer3+4
          bond1: active-backup over eth2 eth3 (bonding), miimon 100, primary eth3, mtu 9000
network:  bond0 (ip=)
"
        ),
        "{text}"
    );
    let json = Plan::new(&p).json();
    assert!(
        json.contains(r#""bonds":[{"name":"bond0","slaves":["eth0","eth1"],"mode":"802.3ad","miimon":100,"updelay":null,"downdelay":null,"lacp_rate":"fast","xmit_hash_policy":"layer3+4","primary":null,"mtu":null},{"name":"bond1","slaves":["eth2","eth3"],"mode":"active-backup","miimon":100,"updelay":null,"downdelay":null,"lacp_rate":null,"xmit_hash_policy":null,"primary":"eth3","mtu":9000}],"vlans":[]"#),
        "{json}"
    );
}

#[test]
fn a_proxy_plan() {
    let p = cmdline::parse(
        "modloop=http://images.lan/r.squashfs proxy=http://u:pw@proxy.lan:3128 noproxy=.lan,10.0.0.0/8",
    );
    let text = Plan::new(&p).text();
    assert!(
        text.contains("          every download through the proxy http://***@proxy.lan:3128, except for .lan 10.0.0.0/8\n"),
        "{text}"
    );
    assert!(!text.contains("pw"), "{text}");
    let json = Plan::new(&p).json();
    assert!(
        json.contains(r#""proxy":{"server":"http://***@proxy.lan:3128","noproxy":[".lan","10.0.0.0/8"]}"#),
        "{json}"
    );
    assert!(!json.contains("pw"), "{json}");
}

#[test]
fn ipv6_plans() {
    let p = cmdline::parse("modloop=http://[fd00::1]/r.squashfs ip=eth0:dhcp,auto6 ip=eth1:dhcp6 ip=[fd00::5]::[fd00::1]:64::eth2:none");
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    let text = Plan::new(&p).text();
    for line in [
        "          then IPv6 by auto6 on that NIC (a failure there is a warning)\n",
        "          IPv6 by DHCPv6 (routes from Router Advertisements), giving up after 90s\n",
        "          static IPv6 fd00::5/64\n          gateway fd00::1\n",
        "image:    http://[fd00::1]/r.squashfs\n",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    let json = Plan::new(&p).json();
    for part in [
        r#""method":"dhcp","client_id":null,"ipv6":"auto6""#,
        r#""method":"dhcp6""#,
        r#""method":"static6","address":"fd00::5","prefix":64,"gateway":"fd00::1","dns":[]"#,
    ] {
        assert!(json.contains(part), "{part} in {json}");
    }
}

#[test]
fn reports_and_netconsole() {
    let p = cmdline::parse(
        "modloop=http://a/b netinit.report=https://t:k@ctl/boot?mac={MAC} netinit.netconsole=10.0.0.1",
    );
    let out = Plan::new(&p).text();
    assert!(
        out.contains(
            "fleet:    a JSON report of each boot event POSTed to https://***@ctl/boot?mac={MAC}
          the kernel log streamed to 10.0.0.1:6666 (UDP, netconsole) once the network is up
          the boot record in /run/netinit/boot.json
"
        ),
        "{out}"
    );
    let json = Plan::new(&p).json();
    assert!(
        json.contains(r#""fleet":{"report":"https://***@ctl/boot?mac={MAC}","netconsole":"10.0.0.1:6666","boot_record":"/run/netinit/boot.json"}"#),
        "{json}"
    );
    assert!(!json.contains("t:k") && !out.contains("t:k"));
}
