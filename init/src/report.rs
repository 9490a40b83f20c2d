//! What a fleet sees of each boot: the JSON report netinit POSTs for each event to
//! `netinit.report=` (`network`, `fetched`, `mounted`, `handoff`, `failure`), and the boot record
//! `/run/netinit/boot.json` the booted system reads. `report-schema.md` documents every field and a
//! test pins the documents against it. The documents, the cmdline's redaction and the budget rule
//! are pure; [`Reporter`] sends, between stages, with a short deadline each.
//!
//! It never holds up the boot: an ordinary report gets [`ORDINARY`] for connect, send and the
//! answer's headers; the first that fails is said once and the rest are skipped, except the failure
//! report, which still tries, within [`FAILURE`]. It never fails the boot either: nothing here
//! returns an error to `boot`.

use std::path::Path;
use std::time::Duration;

use crate::boot::Stage;
use crate::cmdline::{Config, Countdown, FailurePolicy, Machine, ProxyConfig, Url, UrlTemplate};
use crate::fetch::{http, Fetched};
use crate::json::Json;
use crate::net::Configured;

/// The budget of each ordinary report: connect, send, the answer's headers.
pub const ORDINARY: Duration = Duration::from_secs(1);
/// The failure report's budget, which the failure countdown waits for.
pub const FAILURE: Duration = Duration::from_secs(3);
/// Where the boot record is written, for the booted system (`/run` moves into the new root).
pub const BOOT_RECORD: &str = "/run/netinit/boot.json";

/// The kinds of report, in the order a boot sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Network,
    Fetched,
    Mounted,
    Handoff,
    Failure,
}

impl Event {
    #[cfg(test)]
    pub const ALL: [Event; 5] =
        [Event::Network, Event::Fetched, Event::Mounted, Event::Handoff, Event::Failure];

    pub fn name(self) -> &'static str {
        match self {
            Event::Network => "network",
            Event::Fetched => "fetched",
            Event::Mounted => "mounted",
            Event::Handoff => "handoff",
            Event::Failure => "failure",
        }
    }
}

/// What every report and the boot record carry: who is booting, which boot this is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Random per boot, in UUID form.
    pub boot_id: String,
    pub machine: Machine,
}

impl Identity {
    /// A fresh boot id; the machine's facts come later, as the boot learns them.
    pub fn new(random: [u64; 2]) -> Identity {
        Identity { boot_id: boot_id(random), machine: Machine::default() }
    }
}

/// 128 random bits as a version-4 UUID: `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`.
pub fn boot_id(random: [u64; 2]) -> String {
    let hi = (random[0] & !0xf000) | 0x4000;
    let lo = (random[1] & !(0xc << 60)) | (0x8 << 60);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

fn ms(d: Duration) -> Json {
    Json::Num(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The fields every document starts with.
fn common(event: &str, id: &Identity, uptime: Duration) -> Vec<(&'static str, Json)> {
    let or_null = |s: &str| if s.is_empty() { Json::Null } else { Json::str(s) };
    vec![
        ("event", Json::str(event)),
        ("boot_id", Json::str(&id.boot_id)),
        ("mac", or_null(&id.machine.mac)),
        ("uuid", or_null(&id.machine.uuid)),
        ("serial", or_null(&id.machine.serial)),
        ("version", Json::str(env!("CARGO_PKG_VERSION"))),
        ("uptime_ms", ms(uptime)),
    ]
}

/// The boot NIC's lease: what `/run/netinit/lease` says, as JSON.
pub fn lease(c: &Configured) -> Json {
    let v4 = c.v4.as_ref();
    let (method, server, lease_time) = match v4.map(|v| v.dhcp) {
        Some(Some((server, t))) => {
            ("dhcp", Json::str(server), t.map_or(Json::Null, |t| Json::Num(t.as_secs())))
        }
        Some(None) => ("static", Json::Null, Json::Null),
        None => ("none", Json::Null, Json::Null),
    };
    let v6: Vec<Json> =
        c.v6.iter().flat_map(|v| &v.addresses).map(|(a, p)| Json::str(format!("{a}/{p}"))).collect();
    Json::Obj(vec![
        ("interface", Json::str(&c.nic.name)),
        ("mac", Json::str(c.nic.mac)),
        ("method", Json::str(method)),
        ("address", Json::opt(v4.map(|v| v.address))),
        ("prefix", v4.map_or(Json::Null, |v| Json::Num(u64::from(v.prefix)))),
        ("gateway", Json::opt(c.gateway())),
        ("server", server),
        ("lease_time", lease_time),
        ("dns", Json::Arr(c.dns.iter().map(Json::str).collect())),
        ("domain", Json::opt(c.domain.as_ref())),
        ("hostname", Json::opt(c.hostname.as_ref())),
        ("mtu", c.mtu.map_or(Json::Null, |m| Json::Num(u64::from(m)))),
        ("addresses6", Json::Arr(v6)),
        ("method6", Json::opt(c.v6.as_ref().map(|v| v.method.name()))),
    ])
}

/// The downloaded image; its URL without credentials.
pub fn image(f: &Fetched) -> Json {
    let rate = (f.size as f64 / f.elapsed.as_secs_f64().max(0.001)) as u64;
    Json::Obj(vec![
        ("url", Json::str(&f.url)),
        ("size", Json::Num(f.size)),
        ("elapsed_ms", ms(f.elapsed)),
        ("rate", Json::Num(rate)),
        ("sha256", Json::opt(f.sha256.as_ref())),
        ("attempts", Json::Num(u64::from(f.attempts))),
    ])
}

/// Stage timings as an object, in boot order: `{"mounts": 12, "modules": 400, ...}` (ms).
pub fn stages(list: &[(Stage, Duration)]) -> Json {
    Json::Obj(list.iter().map(|(s, d)| (s.name(), ms(*d))).collect())
}

/// The failure policy about to be applied.
pub fn policy(p: &FailurePolicy) -> Json {
    let countdown = match p.countdown {
        Countdown::After(d) => Json::Num(d.as_secs()),
        Countdown::Immediately => Json::Num(0),
        Countdown::Never => Json::Null,
    };
    Json::Obj(vec![("action", Json::str(p.action.name())), ("countdown", countdown)])
}

/// What one report says, beyond the common fields.
pub enum Facts<'a> {
    Network { lease: &'a Configured, elapsed: Duration },
    Fetched(&'a Fetched),
    Mounted { root: &'a Path, image: &'a Url },
    Handoff { init: &'a str, total: Duration, stages: &'a [(Stage, Duration)] },
    Failure { stage: &'a str, error: &'a str, hint: &'a str, log: &'a [String], policy: &'a FailurePolicy },
}

impl Facts<'_> {
    pub fn event(&self) -> Event {
        match self {
            Facts::Network { .. } => Event::Network,
            Facts::Fetched(_) => Event::Fetched,
            Facts::Mounted { .. } => Event::Mounted,
            Facts::Handoff { .. } => Event::Handoff,
            Facts::Failure { .. } => Event::Failure,
        }
    }
}

/// One report's JSON document.
pub fn document(facts: &Facts, id: &Identity, uptime: Duration) -> Json {
    let mut f = common(facts.event().name(), id, uptime);
    match facts {
        Facts::Network { lease: c, elapsed } => {
            f.push(("nic", Json::str(&c.nic.name)));
            f.push(("lease", lease(c)));
            f.push(("elapsed_ms", ms(*elapsed)));
        }
        Facts::Fetched(image) => f.push(("image", self::image(image))),
        Facts::Mounted { root, image } => {
            f.push(("root", Json::str(root.display())));
            f.push(("image_url", Json::str(image)));
        }
        Facts::Handoff { init, total, stages } => {
            f.push(("init", Json::str(init)));
            f.push(("total_ms", ms(*total)));
            f.push(("stages", self::stages(stages)));
        }
        Facts::Failure { stage, error, hint, log, policy } => {
            f.push(("stage", Json::str(stage)));
            f.push(("error", Json::str(error)));
            f.push(("hint", Json::str(hint)));
            f.push(("log", Json::Arr(log.iter().map(Json::str).collect())));
            f.push(("policy", self::policy(policy)));
        }
    }
    Json::Obj(f)
}

/// What the boot record holds: the same facts as the reports, for the booted system.
pub struct Record<'a> {
    pub lease: Option<&'a Configured>,
    pub image: &'a Fetched,
    pub init: &'a str,
    pub total: Duration,
    pub stages: &'a [(Stage, Duration)],
    /// The kernel's cmdline as netinit read it; redacted here.
    pub cmdline: &'a str,
    pub report: Option<&'a Url>,
}

/// `/run/netinit/boot.json`'s document.
pub fn boot_record(r: &Record, id: &Identity, uptime: Duration) -> Json {
    let mut f = common("boot", id, uptime);
    f.push(("nic", Json::opt(r.lease.map(|c| &c.nic.name))));
    f.push(("lease", r.lease.map_or(Json::Null, lease)));
    f.push(("image", image(r.image)));
    f.push(("init", Json::str(r.init)));
    f.push(("total_ms", ms(r.total)));
    f.push(("stages", stages(r.stages)));
    f.push(("cmdline", Json::str(redact_cmdline(r.cmdline))));
    f.push(("report", Json::opt(r.report)));
    Json::Obj(f)
}

/// The cmdline with every URL's credentials replaced by `***` (`modloop=`'s, `proxy=`'s password,
/// `netinit.report=`'s): `http://user:pw@host/` becomes `http://***@host/`. Public keys
/// (`ssh_key=`) are not secret and stay.
pub fn redact_cmdline(cmdline: &str) -> String {
    let mut out = String::with_capacity(cmdline.len());
    let mut rest = cmdline;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after.find(['/', ' ', '"', ',', '?', '#', '\t', '\n']).unwrap_or(after.len());
        match after[..authority_end].rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***");
                rest = &after[userinfo_end..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// Whether a report is sent, and what to say when one fails: the rule that keeps a dead report
/// server from costing more than one [`ORDINARY`] budget in all.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Budget {
    /// A report failed: ordinary ones are skipped from now on.
    pub dead: bool,
    /// Reports skipped because of that.
    pub skipped: u32,
}

impl Budget {
    /// The time `event`'s report may take, or `None` to skip it.
    pub fn allow(&mut self, event: Event) -> Option<Duration> {
        match (event, self.dead) {
            (Event::Failure, _) => Some(FAILURE),
            (_, true) => {
                self.skipped += 1;
                None
            }
            (_, false) => Some(ORDINARY),
        }
    }

    /// Records how a report went; returns the line to log, which is at most one for a dead server.
    pub fn record(&mut self, event: Event, url: &Url, result: &Result<u16, String>) -> Option<String> {
        let why = match result {
            Ok(status) if (200..300).contains(status) => return None,
            Ok(status) => format!("answered HTTP {status}"),
            Err(e) => e.clone(),
        };
        let first = !self.dead;
        self.dead = true;
        match (event, first) {
            (Event::Failure, _) => {
                Some(format!("report: the failure report to {url} was not delivered: {why}"))
            }
            (_, true) => Some(format!(
                "report: POST {url} ({} report): {why}; skipping the other reports but the failure one",
                event.name()
            )),
            (_, false) => None,
        }
    }
}

/// The boot's reporter. Empty until the cmdline asks for reports; it learns the machine's facts as
/// the boot goes and sends each event's document between stages.
pub struct Reporter {
    pub id: Identity,
    template: Option<UrlTemplate>,
    proxy: ProxyConfig,
    /// The report URL and the client that sends to it, once the network filled the template.
    url: Option<(Url, http::Client)>,
    budget: Budget,
    /// The time spent sending, for the summary line.
    pub spent: Duration,
}

impl Reporter {
    pub fn new() -> Reporter {
        let random = [crate::sys::random_u64(), crate::sys::random_u64()];
        Reporter {
            id: Identity::new(random),
            template: None,
            proxy: ProxyConfig::default(),
            url: None,
            budget: Budget::default(),
            spent: Duration::ZERO,
        }
    }

    /// Takes `netinit.report=` and reads the SMBIOS facts (`/sys` is mounted by now).
    pub fn configure(&mut self, cfg: &Config) {
        let dmi = |f: &str| {
            std::fs::read_to_string(Path::new("/sys/class/dmi/id").join(f))
                .map(|u| u.trim().to_owned())
                .unwrap_or_default()
        };
        self.id.machine.uuid = dmi("product_uuid").to_lowercase();
        self.id.machine.serial = dmi("product_serial");
        self.template = cfg.report.clone();
        self.proxy = cfg.image.proxy.clone();
    }

    /// Whether reports are asked for.
    pub fn enabled(&self) -> bool {
        self.template.is_some()
    }

    /// The network is up: the boot NIC's facts fill the URL's placeholders.
    pub fn network(&mut self, network: &[Configured], hostname: Option<&str>) {
        if let Some(c) = network.first() {
            self.id.machine.mac = c.nic.mac.to_string();
            let v6 = c.v6.as_ref().and_then(|v| v.addresses.first()).map(|(a, _)| a.to_string());
            self.id.machine.ip = c.v4.as_ref().map(|v| v.address.to_string()).or(v6).unwrap_or_default();
        }
        self.id.machine.hostname = hostname.unwrap_or_default().to_owned();
        if let Some(t) = &self.template {
            match t.fill_machine(&self.id.machine) {
                Ok(url) => {
                    log::info!("report: each boot event goes to {url}");
                    // Each request's own deadline is its budget; the agent's bound the phases.
                    let t = http::Timeouts { connect: ORDINARY, headers: FAILURE, idle: FAILURE };
                    self.url = Some((url, http::Client::new(&t, &self.proxy)));
                }
                Err(e) => log::warn!("report: {e}; no reports are sent"),
            }
        }
    }

    /// The report URL, once the network filled it.
    pub fn url(&self) -> Option<&Url> {
        self.url.as_ref().map(|(url, _)| url)
    }

    /// Sends one event's report, within its budget; never fails the boot.
    pub fn send(&mut self, facts: &Facts) {
        let Some((url, client)) = &self.url else { return };
        let event = facts.event();
        let Some(budget) = self.budget.allow(event) else { return };
        let mut body = String::new();
        document(facts, &self.id, crate::sys::uptime()).write(&mut body);
        let start = crate::sys::uptime();
        let result = http::post_json(client, url, &body, budget);
        self.spent += crate::sys::uptime().saturating_sub(start);
        match self.budget.record(event, url, &result) {
            Some(line) => log::warn!("{line}"),
            None if result.is_ok() && event == Event::Failure => log::info!("report: failure report sent"),
            None => log::debug!("report: {} sent", event.name()),
        }
    }

    /// The failure report, with the last log lines; bounded by [`FAILURE`].
    pub fn failure(&mut self, stage: &str, error: &str, hint: &str, policy: &FailurePolicy) {
        if self.url.is_none() {
            if self.enabled() {
                log::warn!("report: the network is not up; the failure is not reported");
            }
            return;
        }
        let log = crate::klog::recent();
        self.send(&Facts::Failure { stage, error, hint, log: &log, policy });
    }

    /// Writes `/run/netinit/boot.json`; a failure is said, never fatal.
    pub fn write_record(&self, record: &Record) {
        let mut text = String::new();
        boot_record(record, &self.id, crate::sys::uptime()).write(&mut text);
        text.push('\n');
        match std::fs::create_dir_all("/run/netinit").and_then(|()| std::fs::write(BOOT_RECORD, text)) {
            Ok(()) => log::info!("wrote {BOOT_RECORD}"),
            Err(e) => log::warn!("writing {BOOT_RECORD}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests;
