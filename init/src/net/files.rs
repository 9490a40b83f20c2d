//! What the network stage leaves for the booted system: `/etc/resolv.conf`, the hostname,
//! `/run/netinit/lease` and `/run/netinit/lease.<nic>`, and the one console line per NIC. The texts
//! are pure functions; [`write_files`] writes them.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use super::{Configured, NetError};
use crate::sys;

/// `/etc/resolv.conf` (the DNS servers of every configured NIC, the first one's domain), the
/// hostname, and `/run/netinit/lease` (the boot NIC) plus `/run/netinit/lease.<nic>` for each.
pub(super) fn write_files(done: &[Configured]) -> Result<(), NetError> {
    write_file(Path::new("/etc/resolv.conf"), &resolver(done))?;
    if let Some(name) = hostname(done) {
        match sys::set_hostname(name) {
            Ok(()) => log::info!("hostname {name}"),
            Err(e) => log::warn!("setting the hostname to {name}: {e}"),
        }
    }
    for (i, c) in done.iter().enumerate() {
        let text = lease_file(c);
        if i == 0 {
            write_file(Path::new("/run/netinit/lease"), &text)?;
        }
        write_file(&Path::new("/run/netinit").join(format!("lease.{}", c.nic.name)), &text)?;
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<(), NetError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| NetError::Write { path: dir.into(), source })?;
    }
    std::fs::write(path, text).map_err(|source| NetError::Write { path: path.into(), source })
}

/// `/etc/resolv.conf` for everything configured: the DNS servers of every NIC, each once, and
/// their domains and search lists, the boot NIC's first.
pub fn resolver(done: &[Configured]) -> String {
    let mut dns: Vec<IpAddr> = Vec::new();
    for server in done.iter().flat_map(|c| &c.dns) {
        if !dns.contains(server) {
            dns.push(*server);
        }
    }
    let mut search: Vec<&str> = Vec::new();
    for name in done.iter().flat_map(|c| c.domain.iter().chain(&c.search)) {
        if !search.contains(&name.as_str()) {
            search.push(name);
        }
    }
    resolv_conf(&dns, &search)
}

/// The host name the configuration gives: the first NIC's that has one.
pub fn hostname(done: &[Configured]) -> Option<&str> {
    done.iter().find_map(|c| c.hostname.as_deref())
}

/// `/etc/resolv.conf`, resolv.conf(5): the domain (option 15) and search list (119) as one `search`.
pub fn resolv_conf(dns: &[IpAddr], search: &[&str]) -> String {
    let mut out = String::from("# written by netinit\n");
    if !search.is_empty() {
        let _ = writeln!(out, "search {}", search.join(" "));
    }
    for server in dns {
        let _ = writeln!(out, "nameserver {server}");
    }
    out
}

/// `/run/netinit/lease`: shell-sourceable `KEY=value` lines, values single-quoted.
pub fn lease_file(c: &Configured) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let v4 = c.v4.as_ref();
    let v6 = c.v6.as_ref();
    let mut lines = vec![
        ("INTERFACE", c.nic.name.clone()),
        ("MAC", c.nic.mac.to_string()),
        ("ADDRESS", v4.map(|v| v.address.to_string()).unwrap_or_default()),
        ("PREFIX", v4.map(|v| v.prefix.to_string()).unwrap_or_default()),
        ("GATEWAY", c.gateway().map(|g| g.to_string()).unwrap_or_default()),
        ("DNS", c.dns.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(" ")),
        ("DOMAIN", c.domain.clone().unwrap_or_default()),
        ("SEARCH", c.search.join(" ")),
        ("HOSTNAME", c.hostname.clone().unwrap_or_default()),
        ("MTU", c.mtu.map(|m| m.to_string()).unwrap_or_default()),
        ("NTP", c.ntp.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(" ")),
    ];
    match v4.map(|v| v.dhcp) {
        Some(Some((server, lease_time))) => {
            lines.push(("METHOD", "dhcp".into()));
            lines.push(("SERVER", server.to_string()));
            lines.push(("LEASE_TIME", lease_time.map(|t| t.as_secs().to_string()).unwrap_or_default()));
        }
        Some(None) => lines.push(("METHOD", "static".into())),
        None => lines.push(("METHOD", String::new())),
    }
    if let Some(v6) = v6 {
        let addresses: Vec<String> = v6.addresses.iter().map(|(a, p)| format!("{a}/{p}")).collect();
        lines.push(("ADDRESS6", addresses.join(" ")));
        lines.push(("GATEWAY6", v6.router.map(|r| r.to_string()).unwrap_or_default()));
        lines.push(("METHOD6", v6.method.name().into()));
    }
    lines.iter().map(|(k, v)| format!("{k}={}\n", quote(v))).collect()
}

/// One line saying what was configured.
pub fn summary(c: &Configured) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(v4) = &c.v4 {
        let mut p = format!("{}/{}", v4.address, v4.prefix);
        if let Some(gw) = c.gateway() {
            let _ = write!(p, " via {gw}");
        }
        parts.push(p);
    }
    if let Some(v6) = &c.v6 {
        let mut p: String =
            v6.addresses.iter().map(|(a, l)| format!("{a}/{l}")).collect::<Vec<_>>().join(" ");
        if let Some(r) = v6.router {
            let _ = write!(p, " via {r}");
        }
        let _ = write!(p, " ({})", v6.method.name());
        parts.push(p);
    }
    let mut s = format!("{}: {}", c.nic.name, parts.join(", "));
    if !c.dns.is_empty() {
        let _ = write!(s, ", dns {}", c.dns.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(" "));
    }
    if let Some(m) = c.mtu {
        let _ = write!(s, ", mtu {m}");
    }
    match c.v4.as_ref().map(|v| v.dhcp) {
        Some(Some((server, Some(t)))) => {
            let _ = write!(s, ", from DHCP server {server} for {}s", t.as_secs());
        }
        Some(Some((server, None))) => {
            let _ = write!(s, ", from DHCP server {server}");
        }
        Some(None) => s.push_str(", static"),
        None => {}
    }
    s
}
