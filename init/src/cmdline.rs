//! The kernel command line: from the text of `/proc/cmdline` to a typed boot configuration, plus every
//! warning and error found in it at once. Each parameter is one entry of [`PARAMETERS`] (in
//! `params.rs`); `cmdline-spec.md` documents each, and a test keeps the two in step.
//!
//! Pure: no I/O, no clock, no environment. It does not decide what to do with a bad cmdline; `boot` does.

pub(crate) mod params;
mod types;

use std::net::{IpAddr, Ipv6Addr};

pub use params::{Kind, Param, Severity, PARAMETERS};
pub use types::*;

use params::{Draft, Report};

/// The URL(s) of the root image.
pub const MODLOOP: &str = "modloop";
/// The image's expected SHA-256.
pub const MODLOOP_SHA256: &str = "modloop_sha256";
/// Whether the image's signature must verify.
pub const MODLOOP_VERIFY: &str = "modloop_verify";
/// Whether the root is streamed from the image (NBD) instead of downloaded before the boot goes on.
pub const MODLOOP_STREAM: &str = "modloop_stream";
/// Retries of the download after the first attempt.
pub const RETRIES: &str = "netinit.retries";
/// The whole download's time budget.
pub const TIMEOUT: &str = "netinit.timeout";
/// The size of the tmpfs under the overlay.
pub const OVERLAY_SIZE: &str = "netinit.overlay_size";
/// Alpine's name for the same.
pub const ROOT_SIZE: &str = "root_size";
/// Network configuration, kernel `ip=` syntax.
pub const IP: &str = "ip";
/// The boot NIC's MAC, as PXE/iPXE pass it.
pub const BOOTIF: &str = "BOOTIF";
/// A tagged VLAN over a NIC, dracut's `vlan=<name>:<phys>`.
pub const VLAN: &str = "vlan";
/// A bonding interface over NICs, dracut's `bond=<name>[:<slaves>[:<options>[:<mtu>]]]`.
pub const BOND: &str = "bond";
/// dracut's HTTP proxy for every download.
pub const PROXY: &str = "proxy";
/// Hosts reached without the proxy.
pub const NOPROXY: &str = "noproxy";
/// The machine's hostname.
pub const HOSTNAME: &str = "hostname";
/// Whether the DHCP lease is kept after switch_root.
pub const KEEP_LEASE: &str = "netinit.keep_lease";
/// How long DHCP may take.
pub const DHCP_TIMEOUT: &str = "netinit.dhcp_timeout";
/// Extra kernel modules to load.
pub const MODULES: &str = "modules";
/// Kernel modules never to load.
pub const BLACKLIST: &str = "blacklist";
/// Whether the devices choose the modules.
pub const COLDPLUG: &str = "netinit.coldplug";
/// Alpine: a tar.gz overlay for the root.
pub const APKOVL: &str = "apkovl";
/// Alpine: package repositories for the booted system.
pub const ALPINE_REPO: &str = "alpine_repo";
/// Alpine: an SSH public key for root.
pub const SSH_KEY: &str = "ssh_key";
/// The program to exec in the new root.
pub const INIT: &str = "init";
/// Arguments for that program.
pub const INIT_ARGS: &str = "init_args";
/// More detail on the console.
pub const DEBUG_INIT: &str = "debug_init";
/// The kernel's `quiet`: netinit's info lines follow the console log level it sets.
pub const QUIET: &str = "quiet";
/// A rescue shell before switch_root.
pub const SINGLE: &str = "single";
/// Short for `single`.
pub const S: &str = "s";
/// What to do when the boot fails.
pub const FAIL: &str = "netinit.fail";
/// The kernel's panic timeout, read as the countdown on failure.
pub const PANIC: &str = "panic";
/// Where to POST a JSON report of each boot event.
pub const REPORT: &str = "netinit.report";
/// Where the kernel's netconsole streams the log once the network is up.
pub const NETCONSOLE: &str = "netinit.netconsole";

/// Words of the kernel and of common inits that must not be mistaken for typos of netinit's.
const OTHERS: &[&str] = &[
    "BOOT_IMAGE",
    "acpi",
    "apparmor",
    "biosdevname",
    "console",
    "crashkernel",
    "debug",
    "earlyprintk",
    "initrd",
    "isolcpus",
    "loglevel",
    "mitigations",
    "modprobe",
    "module_blacklist",
    "nokaslr",
    "nomodeset",
    "nosmt",
    "rdinit",
    "root",
    "rootfstype",
    "rootwait",
    "selinux",
    "splash",
];

/// The words of a cmdline as written, quotes kept, by the kernel's rules (`next_arg()` in
/// lib/cmdline.c): whitespace separates words, and double quotes keep spaces inside one.
pub fn raw_words(cmdline: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let mut in_quote = false;
    for (i, c) in cmdline.char_indices() {
        match (start, c.is_whitespace() && !in_quote) {
            (None, true) => {}
            (None, false) => start = Some(i),
            (Some(s), true) => {
                out.push(&cmdline[s..i]);
                start = None;
            }
            (Some(_), false) => {}
        }
        if c == '"' {
            in_quote = !in_quote;
        }
    }
    if let Some(s) = start {
        out.push(&cmdline[s..]);
    }
    out
}

/// One word's name and value, quotes removed as the kernel's `next_arg()` removes them: a quote
/// opening the word and the one closing it, or a quote opening the value and the one closing the
/// word. Quotes inside stay.
fn unquote(raw: &str) -> (&str, Option<&str>) {
    let (quoted, body) = match raw.strip_prefix('"') {
        Some(body) => (true, body),
        None => (false, raw),
    };
    match body.split_once('=') {
        Some((name, value)) => match value.strip_prefix('"') {
            Some(inner) => (name, Some(inner.strip_suffix('"').unwrap_or(inner))),
            None if quoted => (name, Some(value.strip_suffix('"').unwrap_or(value))),
            None => (name, Some(value)),
        },
        None if quoted => (body.strip_suffix('"').unwrap_or(body), None),
        None => (body, None),
    }
}

/// Splits a cmdline into `(name, value)` words by the kernel's rules (`next_arg()` in lib/cmdline.c):
/// whitespace separates words, double quotes keep spaces, a quote pair around the value or the whole
/// word is removed, a word without `=` has no value. Parsing stops at `--`: what follows is for init.
pub fn words(cmdline: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for raw in raw_words(cmdline) {
        let (name, value) = unquote(raw);
        if name == "--" && value.is_none() {
            break;
        }
        out.push((name.to_owned(), value.map(str::to_owned)));
    }
    out
}

/// `-` and `_` are the same in parameter names, as the kernel has it.
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Whether `name` is one of netinit's parameters (`-` and `_` alike).
pub fn is_parameter(name: &str) -> bool {
    known(name).is_some()
}

/// Which known parameter a cmdline name is, if any.
fn known(name: &str) -> Option<&'static Param> {
    let name = normalize(name);
    PARAMETERS.iter().find(|p| normalize(p.name) == name)
}

/// Edit distance with adjacent transpositions counted as one edit (optimal string alignment),
/// case-insensitive.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// The parameter an unknown word probably meant: any unknown `netinit.` name, or a word within edit
/// distance 1 (names of 5-6 letters) or 2 (longer names) of a parameter, unless it is a well-known
/// kernel word or in another program's namespace (`rd.`, `systemd.`).
pub fn probably_meant(name: &str) -> Option<&'static str> {
    let name = normalize(name);
    if OTHERS.iter().any(|o| normalize(o) == name) {
        return None;
    }
    let ours = name.to_lowercase().starts_with("netinit.");
    if name.contains('.') && !ours {
        return None;
    }
    let (best, d) =
        PARAMETERS.iter().map(|p| (p.name, distance(&name, &normalize(p.name)))).min_by_key(|(_, d)| *d)?;
    let limit = match best.len() {
        0..=4 => 0,
        5 | 6 => 1,
        _ => 2,
    };
    (d <= limit || ours).then_some(best)
}

/// Parses a whole cmdline. Every problem is collected; none stops the parse.
pub fn parse(cmdline: &str) -> Parsed {
    let draft = Draft { config: Config::default(), ip_values: Vec::new() };
    let mut p = Parser { draft, warnings: Vec::new(), errors: Vec::new() };
    for (name, value) in words(cmdline) {
        match known(&name) {
            Some(param) => p.param(param, value.as_deref()),
            None => {
                if let Some(meant) = probably_meant(&name) {
                    let shown = match &value {
                        Some(v) => format!("{name}={v}"),
                        None => name.clone(),
                    };
                    p.warn(
                        meant,
                        &shown,
                        format!("is not a netinit parameter; did you mean {meant}? ignored"),
                    );
                }
            }
        }
    }
    p.finish()
}

struct Parser {
    draft: Draft,
    warnings: Vec<Problem>,
    errors: Vec<Problem>,
}

impl Parser {
    fn error(&mut self, param: &'static str, value: &str, message: impl Into<String>) {
        self.errors.push(Problem { param, value: value.to_owned(), message: message.into() });
    }

    fn warn(&mut self, param: &'static str, value: &str, message: impl Into<String>) {
        self.warnings.push(Problem { param, value: value.to_owned(), message: message.into() });
    }

    /// One word naming `param`: its value read as the table says, each problem as its severity.
    fn param(&mut self, param: &'static Param, value: Option<&str>) {
        let name = param.name;
        let mut report = Report::default();
        match (param.kind, value) {
            (Kind::Flag(set), value) => {
                set(&mut self.draft.config);
                if let Some(v) = value {
                    self.warn(name, v, "is a flag and takes no value; the value is ignored");
                }
            }
            (_, None) => self.warn(name, "", "has no value (expected name=value); ignored"),
            (Kind::Number { unit, min, max, default, set }, Some(v)) => match decimal::<u64>(v) {
                Some(n) if (min..=max).contains(&n) => set(&mut self.draft.config, n),
                _ => report.bad(v, params::number_message(unit, min, max, default)),
            },
            (Kind::Value(read), Some(v)) => read(&mut self.draft, v, &mut report),
        }
        for (v, message) in report.0 {
            match param.bad {
                Severity::Error => self.error(name, &v, message),
                Severity::Warning => self.warn(name, &v, message),
            }
        }
    }

    /// Checks that need the whole cmdline.
    fn finish(mut self) -> Parsed {
        let ips = std::mem::take(&mut self.draft.ip_values);
        if ips.len() > 1 && ips.iter().any(|(_, ip)| ip.device.is_none()) {
            for (value, _) in ips.iter().filter(|(_, ip)| ip.device.is_none()) {
                let message = format!(
                    "ip= is given {} times, so each must name its NIC (ip=eth0:dhcp ip=eth1:dhcp); this one does not",
                    ips.len()
                );
                self.error(IP, value, message);
            }
        } else if !ips.is_empty() {
            let mut configs: Vec<IpConfig> = Vec::new();
            for (value, ip) in ips {
                if let Some(at) = configs.iter().position(|c| c.device == ip.device) {
                    self.warn(IP, &value, "configures the same NIC as an earlier ip=; this one is used");
                    configs.remove(at);
                }
                configs.push(ip);
            }
            self.draft.config.net.interfaces = configs;
        }
        // A bond's NIC carries no address of its own: the bond does.
        let net = &self.draft.config.net;
        let enslaved: Vec<(String, String)> = net
            .interfaces
            .iter()
            .filter_map(|i| i.device.as_ref())
            .filter_map(|d| {
                net.bonds.iter().find(|b| b.slaves.contains(d)).map(|b| (d.clone(), b.name.clone()))
            })
            .collect();
        for (nic, bond) in enslaved {
            self.error(
                IP,
                &nic,
                format!("{nic} is a NIC of bond {bond}, which carries its address: name {bond}"),
            );
        }
        let c = &self.draft.config;
        if c.image.urls.is_empty() && !self.errors.iter().any(|e| e.param == MODLOOP) {
            self.error(
                MODLOOP,
                "",
                "missing: netinit needs the root image's URL, e.g. modloop=http://server/root.squashfs",
            );
        }
        if self.draft.config.net.interfaces.iter().all(|i| i.mode == IpMode::Off)
            && !self.draft.config.image.urls.is_empty()
        {
            self.error(IP, "off", "turns the network off, but the image must be fetched over it");
        }
        let proxy = &self.draft.config.image.proxy;
        if proxy.server.is_none() && !proxy.bypass.is_empty() {
            let list: Vec<String> = proxy.bypass.iter().map(Bypass::to_string).collect();
            self.warn(NOPROXY, &list.join(","), "has no effect without proxy=");
        }
        Parsed { config: self.draft.config, warnings: self.warnings, errors: self.errors }
    }
}

fn parse_sha256(v: &str) -> Option<[u8; 32]> {
    if v.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = hex_byte(v.get(2 * i..2 * i + 2)?)?;
    }
    Some(out)
}

/// RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens, at most 253 bytes.
/// An RFC 1123 host name: labels of letters, digits and inner `-`, at most 63 bytes each, 253 in all.
/// The cmdline's `hostname=` and DHCP's host and domain names (options 12, 15, 119) alike.
pub fn valid_hostname(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// The kernel's `ip=` (Documentation/admin-guide/nfs/nfsroot.rst):
/// `<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>`,
/// its short forms (`dhcp`, `on`, `any`, `off`, `none`, ...), and dracut's `<device>:dhcp`.
fn parse_ip(v: &str) -> Result<IpConfig, String> {
    let autoconf = |s: &str| -> Result<Option<IpMode>, String> {
        let mut parts = s.split(',');
        let method = parts.next().unwrap_or("");
        match method {
            "" | "off" | "none" => Ok(None),
            "on" | "any" | "dhcp" | "bootp" | "both" | "rarp" => {
                let mut rest: Vec<&str> = parts.collect();
                let v6 = match rest.last() {
                    Some(&"auto6") => Some(Stack6::Auto6),
                    Some(&"dhcp6") => Some(Stack6::Dhcp6),
                    _ => None,
                };
                if v6.is_some() {
                    rest.pop();
                }
                let client_id = match rest.as_slice() {
                    [] => None,
                    [kind, id] if !id.is_empty() => {
                        let kind = hex_byte(kind)
                            .ok_or_else(|| format!("bad client id type {kind:?} (expected hex like 01)"))?;
                        Some(ClientId { kind, id: (*id).to_owned() })
                    }
                    _ => return Err("dhcp,<client-id-type>,<client-id> needs both parts".into()),
                };
                Ok(Some(match v6 {
                    None => IpMode::Dhcp { client_id },
                    Some(v6) => IpMode::DualStack { client_id, v6 },
                }))
            }
            "auto6" if parts.next().is_none() => Ok(Some(IpMode::Auto6)),
            "dhcp6" if parts.next().is_none() => Ok(Some(IpMode::Dhcp6)),
            other => Err(format!(
                "unknown autoconf method {other:?} (expected dhcp, auto6, dhcp6, on, any, off or none)"
            )),
        }
    };
    if v.is_empty() {
        return Err("is empty (expected dhcp, off, or a static configuration)".into());
    }
    // A lone word is an autoconf method when it is one; otherwise the kernel reads it as the
    // client address of the full form.
    if !v.contains(':') && !v.starts_with(|c: char| c.is_ascii_digit()) {
        return match autoconf(v)? {
            Some(mode) => Ok(IpConfig { mode, device: None, hostname: None, ntp: None }),
            None => Ok(IpConfig { mode: IpMode::Off, device: None, hostname: None, ntp: None }),
        };
    }
    if v.starts_with('[') {
        return parse_ip6(v);
    }
    if v.contains('[') {
        return Err("an IPv6 configuration has the client address first, in brackets: ip=[2001:db8::10]::[2001:db8::1]:64::eth0:none".into());
    }
    let f: Vec<&str> = v.split(':').collect();
    if f.len() == 2 {
        // dracut: <device>:dhcp
        let mode = autoconf(f[1])?.unwrap_or(IpMode::Off);
        return Ok(IpConfig { mode, device: non_empty(f[0]), hostname: None, ntp: None });
    }
    if f.len() > 10 {
        return Err(format!("has {} fields (at most 10)", f.len()));
    }
    let field = |i: usize| f.get(i).copied().unwrap_or("");
    let addr = |i: usize, what: &str| -> Result<Option<std::net::Ipv4Addr>, String> {
        let s = field(i);
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(|_| format!("bad {what} address {s:?} (expected an IPv4 address)"))
    };
    let client = addr(0, "client")?;
    addr(1, "server")?;
    let gateway = addr(2, "gateway")?;
    let prefix = match field(3) {
        "" => None,
        s => Some(parse_netmask(s)?),
    };
    let hostname = non_empty(field(4));
    if let Some(h) = &hostname {
        if !valid_hostname(h) {
            return Err(format!("bad hostname {h:?} (letters, digits, '-' and '.')"));
        }
    }
    let device = non_empty(field(5));
    let dns: Vec<std::net::Ipv4Addr> = [addr(7, "dns0")?, addr(8, "dns1")?].into_iter().flatten().collect();
    let ntp = addr(9, "ntp0")?;
    let auto = autoconf(field(6))?;
    let mode = match (client, auto) {
        (_, Some(mode)) => mode,
        (Some(address), None) => {
            let prefix = prefix.unwrap_or_else(|| classful_prefix(address));
            IpMode::Static(StaticIp { address, prefix, gateway, dns })
        }
        // No address and no autoconf: the kernel would autoconfigure when the field is empty.
        (None, None) if field(6).is_empty() => IpMode::Dhcp { client_id: None },
        (None, None) => return Err("has autoconf off but no client address".into()),
    };
    Ok(IpConfig { mode, device, hostname, ntp })
}

/// The kernel's bracketed IPv6 form (dracut's too):
/// `[<client>]:[<server>]:[<gw>]:<prefix>:<hostname>:<device>:<autoconf>:[<dns0>]:[<dns1>]`.
fn parse_ip6(v: &str) -> Result<IpConfig, String> {
    let mut f: Vec<&str> = Vec::new();
    let mut rest = v;
    loop {
        let (field, after) = match rest.strip_prefix('[') {
            Some(inner) => {
                let (addr, after) = inner.split_once(']').ok_or("an address has '[' without ']'")?;
                if !(after.is_empty() || after.starts_with(':')) {
                    return Err(format!("expected ':' after [{addr}]"));
                }
                (addr, after)
            }
            None => rest.split_once(':').map_or((rest, ""), |(a, _)| (a, &rest[a.len()..])),
        };
        f.push(field);
        match after.strip_prefix(':') {
            Some(next) => rest = next,
            None => break,
        }
    }
    if f.len() > 9 {
        return Err(format!("has {} fields (at most 9 in the IPv6 form)", f.len()));
    }
    let field = |i: usize| f.get(i).copied().unwrap_or("");
    let addr = |i: usize, what: &str| -> Result<Option<Ipv6Addr>, String> {
        match field(i) {
            "" => Ok(None),
            s => s
                .parse()
                .map(Some)
                .map_err(|_| format!("bad {what} address {s:?} (expected an IPv6 address)")),
        }
    };
    let address = addr(0, "client")?.ok_or("the IPv6 form needs the client address")?;
    addr(1, "server")?;
    let gateway = addr(2, "gateway")?;
    let prefix = match field(3) {
        "" => 64,
        p => decimal::<u8>(p)
            .filter(|p| (1..=128).contains(p))
            .ok_or(format!("bad prefix length {p:?} (1 to 128)"))?,
    };
    let hostname = non_empty(field(4));
    if hostname.as_deref().is_some_and(|h| !valid_hostname(h)) {
        return Err(format!("bad hostname {:?} (letters, digits, '-' and '.')", field(4)));
    }
    let device = non_empty(field(5));
    if !matches!(field(6), "" | "none" | "off") {
        return Err(format!("the IPv6 form is static: autoconf {:?} (expected none or off)", field(6)));
    }
    let mut dns: Vec<IpAddr> = Vec::new();
    for (i, what) in [(7, "dns0"), (8, "dns1")] {
        match field(i) {
            "" => {}
            s => dns.push(s.parse().map_err(|_| format!("bad {what} address {s:?}"))?),
        }
    }
    let mode = IpMode::Static6(StaticIp6 { address, prefix, gateway, dns });
    Ok(IpConfig { mode, device, hostname, ntp: None })
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// A netmask as a dotted quad (`255.255.255.0`) or a prefix length (`24`).
fn parse_netmask(s: &str) -> Result<u8, String> {
    if let Some(n) = decimal::<u8>(s) {
        if n <= 32 {
            return Ok(n);
        }
    }
    let bad = || format!("bad netmask {s:?} (expected 255.255.255.0 or a prefix length 0-32)");
    let mask = u32::from(s.parse::<std::net::Ipv4Addr>().map_err(|_| bad())?);
    if mask.leading_ones() + mask.trailing_zeros() != 32 {
        return Err(bad());
    }
    Ok(mask.leading_ones() as u8)
}

#[cfg(test)]
mod tests;
