//! The kernel command line: from the text of `/proc/cmdline` to a typed boot configuration, plus every
//! warning and error found in it at once. `cmdline-spec.md` documents each parameter; a test keeps the
//! two in step through [`PARAMETERS`].
//!
//! Pure: no I/O, no clock, no environment. It does not decide what to do with a bad cmdline; `boot` does.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

/// The URL(s) of the root image.
pub const MODLOOP: &str = "modloop";
/// Network configuration, kernel `ip=` syntax.
pub const IP: &str = "ip";
/// The boot NIC's MAC, as PXE/iPXE pass it.
pub const BOOTIF: &str = "BOOTIF";
/// The program to exec in the new root.
pub const INIT: &str = "init";
/// Arguments for that program.
pub const INIT_ARGS: &str = "init_args";
/// Extra kernel modules to load.
pub const MODULES: &str = "modules";
/// The kernel's panic timeout, read as the reboot countdown on failure.
pub const PANIC: &str = "panic";
/// How long DHCP may take.
pub const DHCP_TIMEOUT: &str = "netinit.dhcp_timeout";
/// The kernel's `quiet`: netinit's info lines follow the console log level it sets.
pub const QUIET: &str = "quiet";

/// Every parameter netinit reads, as `cmdline-spec.md` names them.
pub const PARAMETERS: &[&str] = &[MODLOOP, IP, BOOTIF, INIT, INIT_ARGS, MODULES, PANIC, DHCP_TIMEOUT, QUIET];

/// What netinit does when the boot fails: wait this long, counting down, then reboot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Countdown {
    /// Reboot after this long (`panic=N`, N > 0, or the default).
    After(Duration),
    /// Reboot at once (`panic=-1` and other negative values).
    Immediately,
    /// Never reboot (`panic=0`): the operator power-cycles the machine.
    Never,
}

/// The reboot countdown when the cmdline has no `panic=`.
pub const DEFAULT_COUNTDOWN: Duration = Duration::from_secs(10);
/// How long DHCP may take by default: long enough for a switch port's spanning tree to open (30-50 s).
pub const DEFAULT_DHCP_TIMEOUT: Duration = Duration::from_secs(90);

/// An http(s) URL, checked enough to fail early with a clear message; the HTTP client parses it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    raw: String,
    /// Where the host part starts and ends in `raw` (after any `user:password@`).
    host_start: usize,
    userinfo: bool,
}

impl Url {
    pub fn parse(raw: &str) -> Result<Url, String> {
        let rest = if let Some(rest) = raw.strip_prefix("http://") {
            rest
        } else if raw.starts_with("https://") {
            return Err("https is not supported by this build yet (expected http://)".into());
        } else {
            return Err("expected an http:// URL".into());
        };
        let authority = rest.split('/').next().unwrap_or("");
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((_, hostport)) => (true, hostport),
            None => (false, authority),
        };
        let (host, port) = match hostport.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((host, after)) => (host, after.strip_prefix(':')),
                None => return Err("the host has '[' without ']'".into()),
            },
            None => match hostport.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            },
        };
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        if let Some(port) = port {
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("bad port {port:?}"));
            }
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the URL has spaces or control characters".into());
        }
        let host_start = "http://".len() + authority.len() - hostport.len();
        Ok(Url { raw: raw.to_owned(), host_start, userinfo })
    }

    /// The URL as given, credentials included: for the HTTP client only, never for a log line.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

/// Shows the URL with any credentials replaced by `***`, so it is safe to log.
impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.userinfo {
            write!(f, "http://***@{}", &self.raw[self.host_start..])
        } else {
            f.write_str(&self.raw)
        }
    }
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff`, or the PXE `BOOTIF` form `01-aa-bb-cc-dd-ee-ff`
    /// (hardware type 1, Ethernet, first).
    pub fn parse(s: &str) -> Option<Mac> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        let parts = match parts.len() {
            6 => &parts[..],
            7 if parts[0] == "01" => &parts[1..],
            _ => return None,
        };
        let mut mac = [0u8; 6];
        for (byte, part) in mac.iter_mut().zip(parts) {
            if part.len() != 2 {
                return None;
            }
            *byte = u8::from_str_radix(part, 16).ok()?;
        }
        Some(Mac(mac))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

/// A static IPv4 configuration from `ip=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub hostname: Option<String>,
}

/// How the network is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpMode {
    Dhcp,
    Static(StaticIp),
    /// No network configuration by netinit (`ip=off`); fetching then needs a NIC set up by something
    /// else, which in an initramfs means none: only useful with a `file://`-less future. Kept for
    /// parity with the kernel syntax, and reported as an error when an image must be fetched.
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    pub mode: IpMode,
    /// The NIC named in `ip=` (`eth0`), if any.
    pub device: Option<String>,
    /// The boot NIC's MAC from `BOOTIF=`, if any.
    pub bootif: Option<Mac>,
    pub dhcp_timeout: Duration,
    pub hostname: Option<String>,
}

/// The whole boot configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub modloop: Vec<Url>,
    pub net: NetConfig,
    pub init: String,
    pub init_args: Vec<String>,
    pub modules: Vec<String>,
    pub countdown: Countdown,
    pub quiet: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            modloop: Vec::new(),
            net: NetConfig {
                mode: IpMode::Dhcp,
                device: None,
                bootif: None,
                dhcp_timeout: DEFAULT_DHCP_TIMEOUT,
                hostname: None,
            },
            init: "/sbin/init".into(),
            init_args: Vec::new(),
            modules: Vec::new(),
            countdown: Countdown::After(DEFAULT_COUNTDOWN),
            quiet: false,
        }
    }
}

/// One thing wrong with the cmdline: the parameter, the value as given, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub param: &'static str,
    pub value: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.param, self.message)
        } else {
            write!(f, "{}: {:?}: {}", self.param, self.value, self.message)
        }
    }
}

/// The result of parsing: the configuration (defaults where a value was bad), warnings (the boot goes
/// on), errors (the boot cannot succeed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub config: Config,
    pub warnings: Vec<Problem>,
    pub errors: Vec<Problem>,
}

/// Splits a cmdline into `(name, value)` words by the kernel's rules (`next_arg()` in lib/cmdline.c):
/// whitespace separates words, double quotes keep spaces, a quote pair around the value or the whole
/// word is removed, a word without `=` has no value. Parsing stops at `--`: what follows is for init.
pub fn words(cmdline: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut chars = cmdline.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut in_quote = false;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() && !in_quote {
                break;
            }
            if c == '"' {
                in_quote = !in_quote;
            } else {
                word.push(c);
            }
            chars.next();
        }
        if word == "--" {
            break;
        }
        match word.split_once('=') {
            Some((name, value)) => out.push((name.to_owned(), Some(value.to_owned()))),
            None => out.push((word, None)),
        }
    }
    out
}

/// `-` and `_` are the same in parameter names, as the kernel has it.
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Which known parameter a cmdline name is, if any.
fn known(name: &str) -> Option<&'static str> {
    let name = normalize(name);
    PARAMETERS.iter().copied().find(|p| normalize(p) == name)
}

pub fn parse(cmdline: &str) -> Parsed {
    let mut config = Config::default();
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    let mut ip_value: Option<String> = None;
    for (name, value) in words(cmdline) {
        let Some(param) = known(&name) else { continue };
        let problem = |value: &str, message: String| Problem { param, value: value.to_owned(), message };
        match (param, value.as_deref()) {
            (QUIET, _) => config.quiet = true,
            (_, None) => warnings.push(problem("", "has no value (expected name=value); ignored".into())),
            (MODLOOP, Some(v)) => {
                config.modloop.clear();
                for url in v.split(',').filter(|u| !u.is_empty()) {
                    match Url::parse(url) {
                        Ok(url) => config.modloop.push(url),
                        Err(why) => errors.push(problem(url, format!("{why}; the image cannot be fetched"))),
                    }
                }
                if v.split(',').all(str::is_empty) {
                    errors.push(problem(v, "is empty (expected http://server/path.squashfs)".into()));
                }
            }
            (IP, Some(v)) => {
                if ip_value.is_some() {
                    warnings.push(problem(v, "given again; only the last ip= is used".into()));
                }
                ip_value = Some(v.to_owned());
                match parse_ip(v) {
                    Ok((mode, device, hostname)) => {
                        config.net.mode = mode;
                        config.net.device = device;
                        if hostname.is_some() {
                            config.net.hostname = hostname;
                        }
                    }
                    Err(why) => errors.push(problem(v, format!("{why}; the network cannot be configured"))),
                }
            }
            (BOOTIF, Some(v)) => match Mac::parse(v) {
                Some(mac) => config.net.bootif = Some(mac),
                None => errors.push(problem(
                    v,
                    "expected a MAC address like 01-52-54-00-12-34-56 or 52:54:00:12:34:56; the boot NIC cannot be chosen"
                        .into(),
                )),
            },
            (INIT, Some(v)) => {
                if v.starts_with('/') {
                    config.init = v.to_owned();
                } else {
                    errors.push(problem(v, "expected an absolute path like /sbin/init".into()));
                }
            }
            (INIT_ARGS, Some(v)) => config.init_args = v.split_whitespace().map(str::to_owned).collect(),
            (MODULES, Some(v)) => {
                for m in v.split(',').filter(|m| !m.is_empty()) {
                    if m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                        config.modules.push(m.replace('-', "_"));
                    } else {
                        warnings.push(problem(m, "is not a module name; ignored".into()));
                    }
                }
            }
            (PANIC, Some(v)) => match v.parse::<i64>() {
                Ok(0) => config.countdown = Countdown::Never,
                Ok(n) if n < 0 => config.countdown = Countdown::Immediately,
                Ok(n) => config.countdown = Countdown::After(Duration::from_secs(n as u64)),
                Err(_) => warnings.push(problem(
                    v,
                    format!("expected whole seconds; rebooting {}s after a failure", DEFAULT_COUNTDOWN.as_secs()),
                )),
            },
            (DHCP_TIMEOUT, Some(v)) => match v.parse::<u64>() {
                Ok(n) if n > 0 => config.net.dhcp_timeout = Duration::from_secs(n),
                _ => warnings.push(problem(
                    v,
                    format!(
                        "expected whole seconds above 0; using {}",
                        DEFAULT_DHCP_TIMEOUT.as_secs()
                    ),
                )),
            },
            (_, Some(_)) => {}
        }
    }
    if config.modloop.is_empty() && !errors.iter().any(|e| e.param == MODLOOP) {
        errors.push(Problem {
            param: MODLOOP,
            value: String::new(),
            message: "missing: netinit needs the root image's URL, e.g. modloop=http://server/root.squashfs"
                .into(),
        });
    }
    if config.net.mode == IpMode::Off && !config.modloop.is_empty() {
        errors.push(Problem {
            param: IP,
            value: ip_value.unwrap_or_default(),
            message: "turns the network off, but the image must be fetched over it".into(),
        });
    }
    Parsed { config, warnings, errors }
}

/// The kernel's `ip=` (Documentation/admin-guide/nfs/nfsroot.rst):
/// `<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>`,
/// its short forms (`dhcp`, `on`, `any`, `off`, `none`, ...), and dracut's `<device>:dhcp`.
/// Returns the mode, the device named, and the hostname given.
#[allow(clippy::type_complexity)]
fn parse_ip(v: &str) -> Result<(IpMode, Option<String>, Option<String>), String> {
    let autoconf = |s: &str| -> Result<Option<IpMode>, String> {
        // The client id after `dhcp,` is accepted and, for now, not sent (the MAC is the client id).
        match s.split(',').next().unwrap_or("") {
            "" | "off" | "none" => Ok(None),
            "on" | "any" | "dhcp" | "bootp" | "both" | "rarp" => Ok(Some(IpMode::Dhcp)),
            other => Err(format!("unknown autoconf method {other:?} (expected dhcp, on, any, off or none)")),
        }
    };
    if !v.contains(':') {
        return match autoconf(v)? {
            Some(mode) => Ok((mode, None, None)),
            None if v.is_empty() => Err("is empty (expected dhcp, off, or a static configuration)".into()),
            None => Ok((IpMode::Off, None, None)),
        };
    }
    let f: Vec<&str> = v.split(':').collect();
    if f.len() == 2 {
        // dracut: <device>:dhcp
        let mode = autoconf(f[1])?.unwrap_or(IpMode::Off);
        return Ok((mode, non_empty(f[0]), None));
    }
    if f.len() > 10 {
        return Err(format!("has {} fields (at most 10)", f.len()));
    }
    let field = |i: usize| f.get(i).copied().unwrap_or("");
    let addr = |i: usize, what: &str| -> Result<Option<Ipv4Addr>, String> {
        let s = field(i);
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(|_| format!("bad {what} address {s:?} (expected an IPv4 address)"))
    };
    let client = addr(0, "client")?;
    let gateway = addr(2, "gateway")?;
    let prefix = match field(3) {
        "" => None,
        s => Some(parse_netmask(s)?),
    };
    let hostname = non_empty(field(4));
    let device = non_empty(field(5));
    let dns: Vec<Ipv4Addr> = [addr(7, "dns0")?, addr(8, "dns1")?].into_iter().flatten().collect();
    let auto = autoconf(field(6))?;
    match (client, auto) {
        (_, Some(mode)) => Ok((mode, device, hostname)),
        (Some(address), None) => {
            let prefix = prefix.unwrap_or_else(|| classful_prefix(address));
            Ok((
                IpMode::Static(StaticIp { address, prefix, gateway, dns, hostname: hostname.clone() }),
                device,
                hostname,
            ))
        }
        // No address and no autoconf: the kernel would autoconfigure when the field is empty.
        (None, None) if field(6).is_empty() => Ok((IpMode::Dhcp, device, hostname)),
        (None, None) => Err("has autoconf off but no client address".into()),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// A netmask as a dotted quad (`255.255.255.0`) or a prefix length (`24`).
fn parse_netmask(s: &str) -> Result<u8, String> {
    if let Ok(n) = s.parse::<u8>() {
        if n <= 32 {
            return Ok(n);
        }
    }
    let bad = || format!("bad netmask {s:?} (expected 255.255.255.0 or a prefix length 0-32)");
    let mask = u32::from(s.parse::<Ipv4Addr>().map_err(|_| bad())?);
    if mask.leading_ones() + mask.trailing_zeros() != 32 {
        return Err(bad());
    }
    Ok(mask.leading_ones() as u8)
}

/// The kernel's default when `ip=` gives an address but no netmask: the address's old class.
fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

#[cfg(test)]
mod tests;
