//! `netinit.netconsole=HOST[:PORT]`: once the network is up, the kernel's own netconsole is given
//! the leased address through configfs (`/sys/kernel/config/netconsole/netinit/`, the dynamic
//! targets of `CONFIG_NETCONSOLE_DYNAMIC`), so every later kernel and netinit line, and the booted
//! system's kernel log, go over UDP to a netconsole or syslog listener. The module `netconsole`
//! is loaded on demand by the modules stage (as `8021q` for `vlan=`).
//!
//! What to write is pure ([`settings`], [`next_hop`], [`arp_mac`]); [`start`] does it and says what
//! could not be set up (no module, no configfs, a write refused). It never fails the boot.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use crate::cmdline::NetconsoleTarget;
use crate::net::Configured;
use crate::sys;

/// The module that streams the log; `configfs` comes with it as its dependency.
pub const MODULE: &str = "netconsole";
/// Where configfs is mounted.
const CONFIGFS: &str = "/sys/kernel/config";
/// netinit's target, a directory the kernel fills with the target's attributes when made.
const TARGET: &str = "/sys/kernel/config/netconsole/netinit";
/// The Ethernet broadcast address: the kernel's own default for `remote_mac`
/// (Documentation/networking/netconsole.rst), which reaches a listener on the same L2.
pub const BROADCAST: &str = "ff:ff:ff:ff:ff:ff";
/// How long to wait for the next hop's ARP entry after a datagram asked the kernel to resolve it.
const ARP_WAIT: Duration = Duration::from_millis(500);

/// The IPv4 address the next hop to `remote` has from the boot NIC: `remote` itself on the
/// NIC's subnet, else the gateway of the route that takes it (the longest matching prefix).
pub fn next_hop(c: &Configured, remote: Ipv4Addr) -> Option<Ipv4Addr> {
    let v4 = c.v4.as_ref()?;
    let within = |net: Ipv4Addr, prefix: u8| {
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
        u32::from(net) & mask == u32::from(remote) & mask
    };
    if within(v4.address, v4.prefix) {
        return Some(remote);
    }
    let route = v4.routes.iter().filter(|r| within(r.destination, r.prefix)).max_by_key(|r| r.prefix)?;
    Some(if route.gateway.is_unspecified() { remote } else { route.gateway })
}

/// The MAC `/proc/net/arp` holds for `ip` on `dev`, complete (flag 0x2) and not all zeros.
pub fn arp_mac(table: &str, ip: Ipv4Addr, dev: &str) -> Option<String> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [addr, _, flags, mac, _, device] = f[..] else { return None };
        let complete = u32::from_str_radix(flags.trim_start_matches("0x"), 16).is_ok_and(|f| f & 0x2 != 0);
        (addr.parse() == Ok(ip) && device == dev && complete && mac != "00:00:00:00:00:00")
            .then(|| mac.to_lowercase())
    })
}

/// The target's attributes, in the order they are written; `enabled` last.
pub fn settings(
    dev: &str,
    local: Ipv4Addr,
    target: NetconsoleTarget,
    remote_mac: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("dev_name", dev.to_owned()),
        ("local_ip", local.to_string()),
        ("remote_ip", target.host.to_string()),
        ("remote_port", target.port.to_string()),
        ("remote_mac", remote_mac.to_owned()),
        ("enabled", "1".to_owned()),
    ]
}

/// Sets up netconsole towards `target` over the boot NIC; says what failed, never fails the boot.
pub fn start(target: NetconsoleTarget, network: &[Configured]) {
    let Some((c, local)) = network.iter().find_map(|c| c.v4.as_ref().map(|v| (c, v.address))) else {
        log::warn!("netconsole: no NIC has an IPv4 address; the log stays on this machine");
        return;
    };
    if !Path::new("/sys/module/netconsole").exists() {
        log::warn!("netconsole: the kernel has no netconsole (is {MODULE} in modules-list?); the log stays on this machine");
        return;
    }
    if !Path::new(CONFIGFS).join("netconsole").exists() {
        let flags = rustix::mount::MountFlags::NOSUID
            | rustix::mount::MountFlags::NODEV
            | rustix::mount::MountFlags::NOEXEC;
        match sys::mount("configfs", Path::new(CONFIGFS), "configfs", flags, "") {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => {
                log::warn!("netconsole: mounting configfs on {CONFIGFS}: {e}; the log stays on this machine");
                return;
            }
        }
    }
    let mac = remote_mac(c, target);
    match std::fs::create_dir(TARGET) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            log::warn!("netconsole: creating {TARGET}: {e} (a kernel without CONFIG_NETCONSOLE_DYNAMIC?); the log stays on this machine");
            return;
        }
    }
    // Each attribute is tried and each refusal said; `enabled` only when all the others took.
    let mut refused = 0;
    for (name, value) in settings(&c.nic.name, local, target, &mac) {
        if name == "enabled" && refused > 0 {
            log::warn!(
                "netconsole: not enabled, {refused} setting(s) refused; the log stays on this machine"
            );
            return;
        }
        if let Err(e) = std::fs::write(Path::new(TARGET).join(name), format!("{value}\n")) {
            log::warn!("netconsole: writing {TARGET}/{name} = {value}: {e}");
            refused += 1;
        }
    }
    if refused > 0 {
        log::warn!("netconsole: not enabled; the log stays on this machine");
        return;
    }
    log::info!("netconsole: the kernel log goes to {target} from {}:{local} (next hop {mac})", c.nic.name);
}

/// The next hop's MAC: sends one datagram to the listener (a line saying netconsole starts), which
/// makes the kernel resolve the next hop, then reads `/proc/net/arp` for at most [`ARP_WAIT`];
/// broadcast when it does not show.
fn remote_mac(c: &Configured, target: NetconsoleTarget) -> String {
    let Some(hop) = next_hop(c, target.host) else { return BROADCAST.to_owned() };
    let hello = format!("netinit: netconsole starting on {}\n", c.nic.name);
    match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.send_to(hello.as_bytes(), (target.host, target.port)))
    {
        Ok(_) => {}
        Err(e) => log::debug!("netconsole: the datagram to {target}: {e}"),
    }
    let deadline = sys::uptime() + ARP_WAIT;
    loop {
        let table = std::fs::read_to_string("/proc/net/arp").unwrap_or_default();
        if let Some(mac) = arp_mac(&table, hop, &c.nic.name) {
            return mac;
        }
        if sys::uptime() >= deadline {
            log::info!("netconsole: no ARP entry for the next hop {hop}; sending to the broadcast address");
            return BROADCAST.to_owned();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::Mac;
    use crate::net::{dhcp::Route, Nic, V4};

    fn configured(address: [u8; 4], prefix: u8, routes: Vec<Route>) -> Configured {
        Configured {
            nic: Nic { name: "eth0".into(), index: 2, mac: Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]) },
            v4: Some(V4 { address: address.into(), prefix, routes, dhcp: None }),
            v6: None,
            dns: Vec::new(),
            domain: None,
            search: Vec::new(),
            hostname: None,
            mtu: None,
            ntp: Vec::new(),
            lease: None,
        }
    }

    #[test]
    fn the_next_hop() {
        let default = Route { destination: Ipv4Addr::UNSPECIFIED, prefix: 0, gateway: [10, 0, 2, 2].into() };
        let lan = Route { destination: [192, 168, 7, 0].into(), prefix: 24, gateway: [10, 0, 2, 3].into() };
        let c = configured([10, 0, 2, 15], 24, vec![default.clone(), lan]);
        let check = |remote: [u8; 4], hop: Option<[u8; 4]>| {
            assert_eq!(next_hop(&c, remote.into()), hop.map(Ipv4Addr::from), "{remote:?}")
        };
        check([10, 0, 2, 2], Some([10, 0, 2, 2]));
        check([10, 0, 2, 99], Some([10, 0, 2, 99]));
        check([192, 168, 7, 5], Some([10, 0, 2, 3]));
        check([8, 8, 8, 8], Some([10, 0, 2, 2]));
        assert_eq!(next_hop(&configured([10, 0, 2, 15], 24, vec![]), [8, 8, 8, 8].into()), None);
        let c32 = configured([10, 0, 2, 15], 32, vec![default]);
        assert_eq!(next_hop(&c32, [10, 0, 2, 2].into()), Some([10, 0, 2, 2].into()));
    }

    #[test]
    fn arp_entries() {
        let table = "IP address       HW type     Flags       HW address            Mask     Device\n\
                     10.0.2.2         0x1         0x2         52:55:0A:00:02:02     *        eth0\n\
                     10.0.2.3         0x1         0x0         00:00:00:00:00:00     *        eth0\n\
                     10.0.3.2         0x1         0x2         52:55:0a:00:03:02     *        eth1\n";
        assert_eq!(arp_mac(table, [10, 0, 2, 2].into(), "eth0").as_deref(), Some("52:55:0a:00:02:02"));
        assert_eq!(arp_mac(table, [10, 0, 2, 3].into(), "eth0"), None, "incomplete");
        assert_eq!(arp_mac(table, [10, 0, 3, 2].into(), "eth0"), None, "another NIC");
        assert_eq!(arp_mac("", [10, 0, 2, 2].into(), "eth0"), None);
    }

    #[test]
    fn the_settings_end_with_enabled() {
        let t = NetconsoleTarget::parse("10.0.2.2:5555").unwrap();
        let s = settings("eth0", [10, 0, 2, 15].into(), t, BROADCAST);
        let names: Vec<&str> = s.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["dev_name", "local_ip", "remote_ip", "remote_port", "remote_mac", "enabled"]);
        assert_eq!(s[3].1, "5555");
        assert_eq!(s[4].1, "ff:ff:ff:ff:ff:ff");
    }
}
