//! What the network stage leaves for the booted system: `/etc/resolv.conf`, the hostname,
//! `/run/netinit/lease` and `/run/netinit/lease.<nic>`, and the one console line per NIC. The texts
//! are pure functions; [`write_files`] writes them.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
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
    let mut dns: Vec<Ipv4Addr> = Vec::new();
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
pub fn resolv_conf(dns: &[Ipv4Addr], search: &[&str]) -> String {
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
    let mut lines = vec![
        ("INTERFACE", c.nic.name.clone()),
        ("MAC", c.nic.mac.to_string()),
        ("ADDRESS", c.address.to_string()),
        ("PREFIX", c.prefix.to_string()),
        ("GATEWAY", c.gateway().map(|g| g.to_string()).unwrap_or_default()),
        ("DNS", c.dns.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(" ")),
        ("DOMAIN", c.domain.clone().unwrap_or_default()),
        ("SEARCH", c.search.join(" ")),
        ("HOSTNAME", c.hostname.clone().unwrap_or_default()),
        ("MTU", c.mtu.map(|m| m.to_string()).unwrap_or_default()),
        ("NTP", c.ntp.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(" ")),
    ];
    match c.dhcp {
        Some((server, lease_time)) => {
            lines.push(("METHOD", "dhcp".into()));
            lines.push(("SERVER", server.to_string()));
            lines.push(("LEASE_TIME", lease_time.map(|t| t.as_secs().to_string()).unwrap_or_default()));
        }
        None => lines.push(("METHOD", "static".into())),
    }
    lines.iter().map(|(k, v)| format!("{k}={}\n", quote(v))).collect()
}

/// One line saying what was configured.
pub fn summary(c: &Configured) -> String {
    let mut s = format!("{}: {}/{}", c.nic.name, c.address, c.prefix);
    if let Some(gw) = c.gateway() {
        let _ = write!(s, " via {gw}");
    }
    if !c.dns.is_empty() {
        let _ = write!(s, ", dns {}", c.dns.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(" "));
    }
    if let Some(m) = c.mtu {
        let _ = write!(s, ", mtu {m}");
    }
    match c.dhcp {
        Some((server, Some(t))) => {
            let _ = write!(s, ", from DHCP server {server} for {}s", t.as_secs());
        }
        Some((server, None)) => {
            let _ = write!(s, ", from DHCP server {server}");
        }
        None => s.push_str(", static"),
    }
    s
}
