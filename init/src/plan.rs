//! What a boot will do, decided once from a parsed cmdline: which NIC each `ip=` takes and how,
//! the image and how it is fetched (attempts, waits, the time budget), the overlay, modules,
//! Alpine's extras, the init, what happens on failure, and every problem found. `netinit explain`
//! shows it as text ([`Plan::text`]) and as JSON ([`Plan::json`]): two views of one value, each
//! section rendered by one function per view. The fetch stage takes its retry policy from the same
//! [`RetryPolicy::with_retries`].

use std::fmt::Write as _;

use crate::cmdline::{Config, Countdown, FailAction, IpConfig, IpMode, Mac, Parsed, Problem, SshKey, Verify};
use crate::fetch::{hex, RetryPolicy};
use crate::json::Json;
use crate::switch_root;

/// A static configuration's lines: the address, then the gateway and DNS servers when given.
fn static_lines(
    s: &mut Lines,
    address: String,
    gateway: Option<impl std::fmt::Display>,
    dns: &[impl ToString],
) {
    s.line("", address);
    if let Some(gw) = gateway {
        s.line("", format!("gateway {gw}"));
    }
    if !dns.is_empty() {
        let dns: Vec<String> = dns.iter().map(ToString::to_string).collect();
        s.line("", format!("dns {}", dns.join(" ")));
    }
}

/// How the NIC of one `ip=` is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The one `ip=` names.
    Named(String),
    /// The one with `BOOTIF`'s MAC.
    Bootif(Mac),
    /// Any NIC: the first with a link (for DHCP, every one with a link races).
    FirstWithLink,
}

/// One `ip=`, and the NIC it will take.
pub struct NicPlan<'a> {
    pub ip: &'a IpConfig,
    pub choice: Choice,
}

/// The boot a cmdline gives.
pub struct Plan<'a> {
    parsed: &'a Parsed,
    config: &'a Config,
    pub nics: Vec<NicPlan<'a>>,
    /// How the image download retries (`netinit.retries=`).
    pub retry: RetryPolicy,
    /// The programs the boot may exec, in the order the rule tries them (`init=` alone if given).
    pub inits: Vec<switch_root::Candidate>,
}

/// The text view being written: a label column, then the fact.
struct Lines(String);

impl Lines {
    fn line(&mut self, label: &str, text: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{label:10}{text}");
    }
}

impl<'a> Plan<'a> {
    pub fn new(parsed: &'a Parsed) -> Plan<'a> {
        let c = &parsed.config;
        let choose = |ip: &'a IpConfig| {
            let choice = match (&ip.device, c.net.bootif) {
                (Some(dev), _) => Choice::Named(dev.clone()),
                (None, Some(mac)) => Choice::Bootif(mac),
                (None, None) => Choice::FirstWithLink,
            };
            NicPlan { ip, choice }
        };
        let nics = c.net.interfaces.iter().map(choose).collect();
        let retry = RetryPolicy::with_retries(c.image.retries);
        let inits = switch_root::candidates(c.init.as_deref(), &c.init_args);
        Plan { parsed, config: c, nics, retry, inits }
    }

    /// Whether the cmdline would boot.
    pub fn boots(&self) -> bool {
        self.parsed.errors.is_empty()
    }

    /// The plan as an operator reads it: one labelled line per fact, then warnings and errors.
    pub fn text(&self) -> String {
        let mut s = Lines(String::new());
        self.network_text(&mut s);
        self.image_text(&mut s);
        self.rest_text(&mut s);
        for w in &self.parsed.warnings {
            s.line("warning:", w);
        }
        for e in &self.parsed.errors {
            s.line("error:", e);
        }
        let verdict = if self.boots() { "this cmdline would boot" } else { "this cmdline would NOT boot" };
        let _ = writeln!(s.0, "{verdict}");
        s.0
    }

    fn network_text(&self, s: &mut Lines) {
        let c = self.config;
        for (i, b) in c.net.bonds.iter().enumerate() {
            let text = format!(
                "{}: {} over {} (bonding), {}",
                b.name,
                b.mode.name(),
                b.slaves.join(" "),
                b.options_text()
            );
            s.line(if i == 0 { "bonds:" } else { "" }, text);
        }
        for (i, v) in c.net.vlans.iter().enumerate() {
            let text = format!("{}: VLAN {} over {} (8021q)", v.name, v.id, v.parent);
            s.line(if i == 0 { "vlans:" } else { "" }, text);
        }
        for (i, n) in self.nics.iter().enumerate() {
            s.line(if i == 0 { "network:" } else { "" }, choice_text(&n.choice));
            let timeout = c.net.dhcp_timeout.as_secs();
            let dhcp = |s: &mut Lines, client_id: &Option<crate::cmdline::ClientId>| {
                let id = client_id
                    .as_ref()
                    .map(|id| format!(" with client id {:02x}:{}", id.kind, id.id))
                    .unwrap_or_default();
                s.line("", format!("DHCP{id}, giving up after {timeout}s"));
            };
            match &n.ip.mode {
                IpMode::Dhcp { client_id } => dhcp(s, client_id),
                IpMode::Static(st) => {
                    static_lines(s, format!("static {}/{}", st.address, st.prefix), st.gateway, &st.dns)
                }
                IpMode::Auto6 => s.line(
                    "",
                    format!(
                        "IPv6 by SLAAC (Router Advertisement, DNS from RDNSS), giving up after {timeout}s"
                    ),
                ),
                IpMode::DualStack { client_id, v6 } => {
                    dhcp(s, client_id);
                    let text =
                        format!("then IPv6 by {} on that NIC (a failure there is a warning)", v6.name());
                    s.line("", text);
                }
                IpMode::Dhcp6 => s.line(
                    "",
                    format!("IPv6 by DHCPv6 (routes from Router Advertisements), giving up after {timeout}s"),
                ),
                IpMode::Static6(st) => {
                    static_lines(s, format!("static IPv6 {}/{}", st.address, st.prefix), st.gateway, &st.dns)
                }
                IpMode::Off => s.line("", "left unconfigured"),
            }
        }
        if let Some(h) = c.net.hostname() {
            s.line("", format!("hostname {h}"));
        }
        if self.nics.iter().any(|n| matches!(n.ip.mode, IpMode::Dhcp { .. } | IpMode::DualStack { .. })) {
            s.line(
                "",
                match c.net.keep_lease {
                    crate::cmdline::KeepLease::Yes => {
                        "the DHCP lease is kept after the switch (renewed, rebound)"
                    }
                    crate::cmdline::KeepLease::No => "the DHCP lease is left to the booted system",
                    crate::cmdline::KeepLease::Auto => {
                        "the DHCP lease is kept after the switch unless the image has a DHCP client"
                    }
                },
            );
        }
    }

    fn image_text(&self, s: &mut Lines) {
        let c = self.config;
        for (i, url) in c.image.urls.iter().enumerate() {
            s.line(if i == 0 { "image:" } else { "" }, url);
        }
        match c.image.sha256 {
            Some(d) => s.line("", format!("must have SHA-256 {}", hex(&d))),
            None => s.line("", "no digest to check (modloop_sha256=)"),
        }
        s.line(
            "",
            match c.image.verify {
                Verify::Auto => "signature checked if the initramfs has trusted keys",
                Verify::Required => "signature required",
                Verify::Off => "signature not checked (modloop_verify=no)",
            },
        );
        if c.image.stream {
            s.line(
                "",
                "streamed (modloop_stream=yes): the root is served from the image's chunks as they \
                 arrive, each checked against IMAGE.chunks; the whole image is downloaded if that cannot start",
            );
        }
        if let Some(proxy) = &c.image.proxy.server {
            let except: Vec<String> = c.image.proxy.bypass.iter().map(ToString::to_string).collect();
            let except = match except.is_empty() {
                true => String::new(),
                false => format!(", except for {}", except.join(" ")),
            };
            s.line("", format!("every download through the proxy {proxy}{except}"));
        }
        let (p, budget) = (self.retry, c.image.timeout.as_secs());
        s.line(
            "",
            format!(
                "{} attempts within {budget}s, waits of up to {}s doubling to {}s between them",
                p.attempts,
                p.base.as_secs(),
                p.cap.as_secs()
            ),
        );
        s.line("", format!("a busy server (503, 429) is waited out within the {budget}s, using no attempts"));
        s.line("", format!("mounted read-only under a tmpfs overlay of {}", c.overlay_size));
    }

    /// Modules, Alpine's extras, the init and the failure policy.
    fn rest_text(&self, s: &mut Lines) {
        let c = self.config;
        let extra =
            if c.modules.is_empty() { String::new() } else { format!(", and {}", c.modules.join(", ")) };
        let which = match c.coldplug {
            true => "those the devices ask for and those no device asks for (loop, file systems); storage in the background",
            false => "every one packed in the initramfs",
        };
        s.line("modules:", format!("{which}{extra}"));
        if !c.blacklist.is_empty() {
            s.line("", format!("never {}, nor what needs them", c.blacklist.join(", ")));
        }
        let mut alpine = Vec::new();
        if let Some(t) = &c.alpine.apkovl {
            alpine.push(format!("overlay {}", t.as_str()));
        }
        if !c.alpine.repositories.is_empty() {
            alpine.push(format!("repositories {}", c.alpine.repositories.join(" ")));
        }
        match &c.alpine.ssh_key {
            Some(SshKey::Inline(k)) => {
                alpine.push(format!("root's ssh key {}", k.split_whitespace().next().unwrap_or("")))
            }
            Some(SshKey::Fetch(url)) => alpine.push(format!("root's ssh key from {url}")),
            None => {}
        }
        for (i, text) in alpine.iter().enumerate() {
            s.line(if i == 0 { "alpine:" } else { "" }, text);
        }
        let chosen_by = if c.init.is_some() { " (init=)" } else { "" };
        s.line("init:", format!("{}{chosen_by}", switch_root::candidates_text(&self.inits)));
        if c.single {
            s.line("", "after a rescue shell on the console (single)");
        }
        s.line("failure:", failure_text(c));
        let mut fleet = Vec::new();
        if let Some(t) = &c.report {
            fleet.push(format!("a JSON report of each boot event POSTed to {}", redacted_template(t)));
        }
        if let Some(t) = &c.netconsole {
            fleet.push(format!("the kernel log streamed to {t} (UDP, netconsole) once the network is up"));
        }
        fleet.push(format!("the boot record in {}", crate::report::BOOT_RECORD));
        for (i, text) in fleet.iter().enumerate() {
            s.line(if i == 0 { "fleet:" } else { "" }, text);
        }
    }

    /// The same plan as one JSON object, for scripts; its shape is pinned by a test.
    pub fn json(&self) -> String {
        let c = self.config;
        let problems = |list: &[Problem]| {
            let one = |e: &Problem| {
                Json::Obj(vec![
                    ("param", Json::str(e.param)),
                    ("value", Json::str(&e.value)),
                    ("message", Json::str(&e.message)),
                ])
            };
            Json::Arr(list.iter().map(one).collect())
        };
        let countdown = match c.failure.countdown {
            Countdown::After(d) => Json::Num(d.as_secs()),
            Countdown::Immediately => Json::Num(0),
            Countdown::Never => Json::Null,
        };
        let strings = |list: &[String]| Json::Arr(list.iter().map(Json::str).collect());
        let plan = Json::Obj(vec![
            ("boots", Json::Bool(self.boots())),
            ("network", self.network_json()),
            ("image", self.image_json()),
            (
                "modules",
                Json::Obj(vec![
                    ("coldplug", Json::Bool(c.coldplug)),
                    ("extra", strings(&c.modules)),
                    ("blacklist", strings(&c.blacklist)),
                ]),
            ),
            ("alpine", self.alpine_json()),
            ("init", self.init_json()),
            ("single", Json::Bool(c.single)),
            ("debug", Json::Bool(c.debug)),
            ("quiet", Json::Bool(c.quiet)),
            (
                "failure",
                Json::Obj(vec![("action", Json::str(c.failure.action.name())), ("countdown", countdown)]),
            ),
            (
                "fleet",
                Json::Obj(vec![
                    ("report", Json::opt(c.report.as_ref().map(redacted_template))),
                    ("netconsole", Json::opt(c.netconsole)),
                    ("boot_record", Json::str(crate::report::BOOT_RECORD)),
                ]),
            ),
            ("warnings", problems(&self.parsed.warnings)),
            ("errors", problems(&self.parsed.errors)),
        ]);
        let mut out = String::new();
        plan.write(&mut out);
        out
    }

    fn network_json(&self) -> Json {
        let c = self.config;
        let nic = |n: &NicPlan| {
            let ip = n.ip;
            let mut f = vec![
                ("device", Json::opt(ip.device.as_ref())),
                ("choice", Json::str(choice_text(&n.choice))),
            ];
            match &ip.mode {
                IpMode::Dhcp { client_id } => {
                    f.push(("method", Json::str("dhcp")));
                    let id = client_id.as_ref().map(|id| format!("{:02x}:{}", id.kind, id.id));
                    f.push(("client_id", Json::opt(id)));
                }
                IpMode::Static(st) => {
                    f.push(("method", Json::str("static")));
                    f.push(("address", Json::str(st.address)));
                    f.push(("prefix", Json::Num(u64::from(st.prefix))));
                    f.push(("gateway", Json::opt(st.gateway)));
                    f.push(("dns", Json::Arr(st.dns.iter().map(Json::str).collect())));
                }
                IpMode::Auto6 => f.push(("method", Json::str("auto6"))),
                IpMode::Dhcp6 => f.push(("method", Json::str("dhcp6"))),
                IpMode::DualStack { client_id, v6 } => {
                    f.push(("method", Json::str("dhcp")));
                    let id = client_id.as_ref().map(|id| format!("{:02x}:{}", id.kind, id.id));
                    f.push(("client_id", Json::opt(id)));
                    f.push(("ipv6", Json::str(v6.name())));
                }
                IpMode::Static6(st) => {
                    f.push(("method", Json::str("static6")));
                    f.push(("address", Json::str(st.address)));
                    f.push(("prefix", Json::Num(u64::from(st.prefix))));
                    f.push(("gateway", Json::opt(st.gateway)));
                    f.push(("dns", Json::Arr(st.dns.iter().map(Json::str).collect())));
                }
                IpMode::Off => f.push(("method", Json::str("off"))),
            }
            Json::Obj(f)
        };
        let vlan = |v: &crate::cmdline::Vlan| {
            Json::Obj(vec![
                ("name", Json::str(&v.name)),
                ("parent", Json::str(&v.parent)),
                ("id", Json::Num(u64::from(v.id))),
            ])
        };
        let bond = |b: &crate::cmdline::Bond| {
            let num = |n: Option<u32>| n.map_or(Json::Null, |n| Json::Num(u64::from(n)));
            let policy =
                b.xmit_hash_policy.and_then(|p| crate::cmdline::XMIT_HASH_POLICIES.get(usize::from(p)));
            Json::Obj(vec![
                ("name", Json::str(&b.name)),
                ("slaves", Json::Arr(b.slaves.iter().map(Json::str).collect())),
                ("mode", Json::str(b.mode.name())),
                ("miimon", Json::Num(u64::from(b.miimon))),
                ("updelay", num(b.updelay)),
                ("downdelay", num(b.downdelay)),
                ("lacp_rate", Json::opt(b.lacp_fast.map(|f| if f { "fast" } else { "slow" }))),
                ("xmit_hash_policy", Json::opt(policy)),
                ("primary", Json::opt(b.primary.as_ref())),
                ("mtu", num(b.mtu)),
            ])
        };
        Json::Obj(vec![
            ("bootif", Json::opt(c.net.bootif)),
            ("bonds", Json::Arr(c.net.bonds.iter().map(bond).collect())),
            ("vlans", Json::Arr(c.net.vlans.iter().map(vlan).collect())),
            ("interfaces", Json::Arr(self.nics.iter().map(nic).collect())),
            ("dhcp_timeout", Json::Num(c.net.dhcp_timeout.as_secs())),
            ("keep_lease", Json::str(c.net.keep_lease.name())),
            ("hostname", Json::opt(c.net.hostname())),
        ])
    }

    fn image_json(&self) -> Json {
        let c = self.config;
        let verify = match c.image.verify {
            Verify::Auto => "auto",
            Verify::Required => "yes",
            Verify::Off => "no",
        };
        Json::Obj(vec![
            ("urls", Json::Arr(c.image.urls.iter().map(Json::str).collect())),
            ("sha256", Json::opt(c.image.sha256.map(|d| hex(&d)))),
            ("verify", Json::str(verify)),
            ("stream", Json::Bool(c.image.stream)),
            ("attempts", Json::Num(u64::from(self.retry.attempts))),
            ("timeout", Json::Num(c.image.timeout.as_secs())),
            ("overlay_size", Json::str(c.overlay_size.tmpfs_option())),
            (
                "proxy",
                Json::Obj(vec![
                    ("server", Json::opt(c.image.proxy.server.as_ref())),
                    ("noproxy", Json::Arr(c.image.proxy.bypass.iter().map(Json::str).collect())),
                ]),
            ),
        ])
    }

    fn init_json(&self) -> Json {
        let c = self.config;
        let candidate = |i: &switch_root::Candidate| {
            Json::Obj(vec![
                ("path", Json::str(&i.path)),
                ("args", Json::Arr(i.args.iter().map(Json::str).collect())),
                ("with_dir", Json::opt(i.with_dir)),
            ])
        };
        Json::Obj(vec![
            ("path", Json::opt(c.init.as_ref())),
            ("args", Json::Arr(c.init_args.iter().map(Json::str).collect())),
            ("candidates", Json::Arr(self.inits.iter().map(candidate).collect())),
        ])
    }

    fn alpine_json(&self) -> Json {
        let a = &self.config.alpine;
        let ssh_key = match &a.ssh_key {
            Some(SshKey::Inline(k)) => Json::str(k),
            Some(SshKey::Fetch(url)) => Json::str(url),
            None => Json::Null,
        };
        Json::Obj(vec![
            ("apkovl", Json::opt(a.apkovl.as_ref().map(|t| t.as_str()))),
            ("repositories", Json::Arr(a.repositories.iter().map(Json::str).collect())),
            ("ssh_key", ssh_key),
        ])
    }
}

/// `netinit.report=`'s template with its credentials shown as `***`.
fn redacted_template(t: &crate::cmdline::UrlTemplate) -> String {
    crate::report::redact_cmdline(t.as_str())
}

fn choice_text(choice: &Choice) -> String {
    match choice {
        Choice::Named(dev) => format!("{dev} (ip=)"),
        Choice::Bootif(mac) => format!("the NIC with MAC {mac} (BOOTIF)"),
        Choice::FirstWithLink => "the first NIC with a link, in name order".into(),
    }
}

fn failure_text(c: &Config) -> String {
    let action = match c.failure.action {
        FailAction::Shell => "open a rescue shell, then reboot",
        FailAction::Reboot => "reboot",
        FailAction::Poweroff => "power off",
        FailAction::Halt => "halt",
    };
    match c.failure.countdown {
        Countdown::After(d) => format!("{action} after {}s", d.as_secs()),
        Countdown::Immediately => format!("{action} at once"),
        Countdown::Never => "wait forever (panic=0)".into(),
    }
}

#[cfg(test)]
mod tests;
