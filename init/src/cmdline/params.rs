//! Every cmdline parameter netinit reads, as one table: its name, what kind of value it takes and
//! with what bound, whether a bad value is an error or a warning, and the function that reads the
//! value into the configuration. The parser, the misspelling check, the spec test and the fuzzers
//! all read [`PARAMETERS`]; adding a parameter is one entry here, its field, and its section in
//! `cmdline-spec.md`.

use std::time::Duration;

use super::*;

/// What a bad value does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The boot cannot go on as asked: it stops, saying why.
    Error,
    /// The default stays, and the boot goes on with a warning.
    Warning,
}

/// What a parameter takes.
#[derive(Clone, Copy)]
pub enum Kind {
    /// A word without a value (`quiet`).
    Flag(fn(&mut Config)),
    /// A whole number of `unit`s within `min..=max`; anything else keeps `default`.
    Number { unit: Unit, min: u64, max: u64, default: u64, set: fn(&mut Config, u64) },
    /// Any other value, read by its own function, which reports each problem it finds.
    Value(fn(&mut Draft, &str, &mut Report)),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
}

/// One parameter.
#[derive(Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub bad: Severity,
}

/// The configuration while it is read, and what needs the whole cmdline to decide.
pub struct Draft {
    pub config: Config,
    /// Each `ip=` value with what it parsed to; `finish` decides which apply.
    pub ip_values: Vec<(String, IpConfig)>,
}

/// The problems one value has, each with the part of the value it is about.
#[derive(Default)]
pub struct Report(pub Vec<(String, String)>);

impl Report {
    pub fn bad(&mut self, value: &str, message: impl Into<String>) {
        self.0.push((value.to_owned(), message.into()));
    }
}

const fn flag(name: &'static str, set: fn(&mut Config)) -> Param {
    Param { name, kind: Kind::Flag(set), bad: Severity::Warning }
}

const fn value(name: &'static str, bad: Severity, read: fn(&mut Draft, &str, &mut Report)) -> Param {
    Param { name, kind: Kind::Value(read), bad }
}

/// The longest wait any parameter may ask for: a day. Every deadline is computed with checked
/// arithmetic anyway; the bound keeps a typo from meaning "forever".
pub const MAX_SECONDS: u64 = 86_400;

const fn seconds(name: &'static str, default: Duration, set: fn(&mut Config, u64)) -> Param {
    let kind =
        Kind::Number { unit: Unit::Seconds, min: 1, max: MAX_SECONDS, default: default.as_secs(), set };
    Param { name, kind, bad: Severity::Warning }
}

/// Every parameter netinit reads, as `cmdline-spec.md` names them.
pub const PARAMETERS: &[Param] = &[
    value(MODLOOP, Severity::Error, read_modloop),
    value(MODLOOP_SHA256, Severity::Error, |d, v, r| match parse_sha256(v) {
        Some(digest) => d.config.image.sha256 = Some(digest),
        None => r.bad(v, "expected 64 hexadecimal digits; the image cannot be verified"),
    }),
    value(MODLOOP_VERIFY, Severity::Error, |d, v, r| match v {
        "yes" | "1" | "true" => d.config.image.verify = Verify::Required,
        "no" | "0" | "false" => d.config.image.verify = Verify::Off,
        _ => r.bad(v, "expected yes or no"),
    }),
    value(MODLOOP_STREAM, Severity::Warning, |d, v, r| match v {
        "yes" | "1" | "true" => d.config.image.stream = true,
        "no" | "0" | "false" => d.config.image.stream = false,
        _ => r.bad(v, "expected yes or no; downloading the whole image first"),
    }),
    Param {
        name: RETRIES,
        kind: Kind::Number {
            unit: Unit::Count,
            min: 0,
            max: MAX_RETRIES as u64,
            default: DEFAULT_RETRIES as u64,
            set: |c, n| c.image.retries = u32::try_from(n).unwrap_or(MAX_RETRIES),
        },
        bad: Severity::Warning,
    },
    seconds(TIMEOUT, DEFAULT_FETCH_TIMEOUT, |c, n| c.image.timeout = Duration::from_secs(n)),
    value(PROXY, Severity::Error, |d, v, r| match ProxyServer::parse(v) {
        Ok(p) => d.config.image.proxy.server = Some(p),
        Err(why) => r.bad(v, format!("{why}; the image cannot be fetched as asked")),
    }),
    value(NOPROXY, Severity::Warning, |d, v, r| {
        d.config.image.proxy.bypass.clear();
        for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match Bypass::parse(entry) {
                Ok(b) => d.config.image.proxy.bypass.push(b),
                Err(why) => r.bad(entry, format!("{why}; ignored")),
            }
        }
    }),
    value(OVERLAY_SIZE, Severity::Warning, read_overlay_size),
    value(ROOT_SIZE, Severity::Warning, read_overlay_size),
    value(IP, Severity::Error, |d, v, r| match parse_ip(v) {
        Ok(ip) => d.ip_values.push((v.to_owned(), ip)),
        Err(why) => r.bad(v, format!("{why}; the network cannot be configured")),
    }),
    value(VLAN, Severity::Error, |d, v, r| match Vlan::parse(v) {
        Ok(vlan) if d.config.net.vlans.iter().any(|o| o.name == vlan.name) => {
            r.bad(v, format!("{} is given twice", vlan.name))
        }
        Ok(vlan) if d.config.net.vlans.iter().any(|o| (&o.parent, o.id) == (&vlan.parent, vlan.id)) => {
            r.bad(v, format!("VLAN {} on {} is given twice", vlan.id, vlan.parent))
        }
        Ok(vlan) => d.config.net.vlans.push(vlan),
        Err(why) => r.bad(v, format!("{why}; the network cannot be configured")),
    }),
    value(BOND, Severity::Error, |d, v, r| match Bond::parse(v) {
        Ok(bond) if d.config.net.bonds.iter().any(|o| o.name == bond.name) => {
            r.bad(v, format!("{} is given twice", bond.name))
        }
        Ok(bond) => match bond
            .slaves
            .iter()
            .find_map(|s| d.config.net.bonds.iter().find(|o| o.slaves.contains(s)).map(|o| (s, o)))
        {
            Some((s, other)) => r.bad(v, format!("{s} is already in bond {}", other.name)),
            None => d.config.net.bonds.push(bond),
        },
        Err(why) => r.bad(v, format!("{why}; the network cannot be configured")),
    }),
    value(BOOTIF, Severity::Error, |d, v, r| {
        match Mac::parse(v) {
        Some(mac) => d.config.net.bootif = Some(mac),
        None => r.bad(
            v,
            "expected a MAC address like 01-52-54-00-12-34-56 or 52:54:00:12:34:56; the boot NIC cannot be chosen",
        ),
    }
    }),
    value(HOSTNAME, Severity::Warning, |d, v, r| match valid_hostname(v) {
        true => d.config.net.hostname = Some(v.to_owned()),
        false => r.bad(v, "is not a valid host name (letters, digits, '-' and '.'); ignored"),
    }),
    seconds(DHCP_TIMEOUT, DEFAULT_DHCP_TIMEOUT, |c, n| c.net.dhcp_timeout = Duration::from_secs(n)),
    value(KEEP_LEASE, Severity::Warning, |d, v, r| match v {
        "yes" | "1" | "true" => d.config.net.keep_lease = KeepLease::Yes,
        "no" | "0" | "false" => d.config.net.keep_lease = KeepLease::No,
        "auto" => d.config.net.keep_lease = KeepLease::Auto,
        _ => r.bad(v, "expected yes, no or auto; using auto"),
    }),
    value(MODULES, Severity::Warning, |d, v, r| read_module_names(&mut d.config.modules, v, r)),
    value(BLACKLIST, Severity::Warning, |d, v, r| read_module_names(&mut d.config.blacklist, v, r)),
    value(COLDPLUG, Severity::Warning, |d, v, r| match v {
        "yes" | "1" | "true" => d.config.coldplug = true,
        "no" | "0" | "false" => d.config.coldplug = false,
        _ => r.bad(v, "expected yes or no; the devices choose the modules"),
    }),
    value(APKOVL, Severity::Error, |d, v, r| match UrlTemplate::parse(v) {
        Ok(t) => d.config.alpine.apkovl = Some(t),
        Err(why) => r.bad(v, format!("{why}; the overlay cannot be fetched")),
    }),
    value(ALPINE_REPO, Severity::Warning, read_alpine_repo),
    value(SSH_KEY, Severity::Warning, |d, v, r| match SshKey::parse(v) {
        Ok(key) => d.config.alpine.ssh_key = Some(key),
        Err(why) => r.bad(v, format!("{why}; ignored")),
    }),
    value(INIT, Severity::Error, |d, v, r| match v.starts_with('/') {
        true => d.config.init = Some(v.to_owned()),
        false => r.bad(v, "expected an absolute path like /sbin/init"),
    }),
    value(INIT_ARGS, Severity::Warning, |d, v, _| {
        d.config.init_args = v.split_whitespace().map(str::to_owned).collect()
    }),
    flag(DEBUG_INIT, |c| c.debug = true),
    flag(QUIET, |c| c.quiet = true),
    flag(SINGLE, |c| c.single = true),
    flag(S, |c| c.single = true),
    value(FAIL, Severity::Warning, |d, v, r| match FailAction::parse(v) {
        Some(action) => d.config.failure.action = action,
        None => r.bad(v, "expected shell, reboot, poweroff or halt; using reboot"),
    }),
    value(PANIC, Severity::Warning, |d, v, r| match v.parse::<i64>() {
        Ok(0) => d.config.failure.countdown = Countdown::Never,
        Ok(n) if n < 0 => d.config.failure.countdown = Countdown::Immediately,
        Ok(n) => {
            let secs = n.unsigned_abs();
            if secs > MAX_SECONDS {
                r.bad(v, format!("is more than a day; counting down {MAX_SECONDS}s"));
            }
            d.config.failure.countdown = Countdown::After(Duration::from_secs(secs.min(MAX_SECONDS)))
        }
        Err(_) => r.bad(
            v,
            format!("expected whole seconds; waiting {}s after a failure", DEFAULT_COUNTDOWN.as_secs()),
        ),
    }),
    value(REPORT, Severity::Warning, |d, v, r| match UrlTemplate::parse_report(v) {
        Ok(t) => d.config.report = Some(t),
        Err(why) => r.bad(v, format!("{why}; no reports are sent")),
    }),
    value(NETCONSOLE, Severity::Warning, |d, v, r| match NetconsoleTarget::parse(v) {
        Ok(t) => d.config.netconsole = Some(t),
        Err(why) => r.bad(v, format!("{why}; the log stays on this machine")),
    }),
];

/// The message for a number out of its bound, naming the bound and the default kept.
pub fn number_message(unit: Unit, min: u64, max: u64, default: u64) -> String {
    match (unit, max) {
        (Unit::Seconds, _) => format!("expected whole seconds from {min} to {max}; using {default}"),
        (Unit::Count, _) => format!("expected a whole number from {min} to {max}; using {default}"),
    }
}

fn read_modloop(d: &mut Draft, v: &str, r: &mut Report) {
    d.config.image.urls.clear();
    for url in v.split(',').filter(|u| !u.is_empty()) {
        match Url::parse(url) {
            Ok(url) => d.config.image.urls.push(url),
            Err(why) => r.bad(url, format!("{why}; the image cannot be fetched")),
        }
    }
    if v.split(',').all(str::is_empty) {
        r.bad(v, "is empty (expected http://server/path.squashfs)");
    }
}

fn read_overlay_size(d: &mut Draft, v: &str, r: &mut Report) {
    match Size::parse(v) {
        Some(size) => d.config.overlay_size = size,
        None => r.bad(v, "expected a percentage of RAM like 50% or a size like 512M; using 50%"),
    }
}

fn read_module_names(list: &mut Vec<String>, v: &str, r: &mut Report) {
    for m in v.split(',').filter(|m| !m.is_empty()) {
        if m.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-') {
            list.push(m.replace('-', "_"));
        } else {
            r.bad(m, "is not a module name; ignored");
        }
    }
}

fn read_alpine_repo(d: &mut Draft, v: &str, r: &mut Report) {
    d.config.alpine.repositories.clear();
    for url in v.split(',').filter(|u| !u.is_empty()) {
        if (url.starts_with("http://") || url.starts_with("https://")) && !url.contains(char::is_whitespace) {
            d.config.alpine.repositories.push(url.to_owned());
        } else {
            r.bad(url, "expected an http:// or https:// URL; ignored");
        }
    }
}
