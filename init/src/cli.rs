//! netinit as a command-line tool, when it is not PID 1: `netinit explain [--json] '<cmdline>'` shows
//! the boot plan a kernel command line gives, so an operator can check an iPXE script before booting a
//! fleet with it; `netinit fetch URL[,URL...] FILE` downloads an image exactly as the boot would
//! (mirrors, retries, resume, digest), to check a server, and to measure the fetcher.

use std::fmt::Write as _;

use crate::cmdline::{self, Config, Countdown, FailAction, IpConfig, IpMode, Parsed, SshKey, Verify};
use crate::fetch::{hex, RetryPolicy};
use crate::switch_root;

const USAGE: &str = "usage: netinit explain [--json] '<kernel command line>'
       netinit fetch [--sha256 HEX] URL[,URL...] FILE
       netinit --version

As PID 1 (the /init of an initramfs), netinit boots the machine.";

/// Returns the exit status: 0 when the cmdline would boot, 1 when it would not, 2 on bad usage.
pub fn main(args: Vec<String>) -> i32 {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (json, cmdline) = match args.as_slice() {
        ["explain", cmdline] => (false, *cmdline),
        ["explain", "--json", cmdline] | ["explain", cmdline, "--json"] => (true, *cmdline),
        ["fetch", rest @ ..] => return fetch(rest),
        ["--version"] => {
            println!("netinit {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        ["--help"] | ["-h"] | ["help"] => {
            println!("{USAGE}");
            return 0;
        }
        _ => {
            eprintln!("{USAGE}");
            return 2;
        }
    };
    let parsed = cmdline::parse(cmdline);
    if json {
        println!("{}", explain_json(&parsed));
    } else {
        print!("{}", explain(&parsed));
    }
    i32::from(!parsed.errors.is_empty())
}

fn nic_choice(c: &Config, ip: &IpConfig) -> String {
    match (&ip.device, &c.net.bootif) {
        (Some(dev), _) => format!("{dev} (ip=)"),
        (None, Some(mac)) => format!("the NIC with MAC {mac} (BOOTIF)"),
        (None, None) => "the first NIC with a link, in name order".into(),
    }
}

fn attempts(c: &Config) -> u32 {
    c.image.retries.saturating_add(1)
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

/// `netinit fetch`: the boot's downloader on the command line. Exit status 0 when the file is whole
/// (and matches `--sha256`), 1 otherwise, 2 on bad usage.
fn fetch(args: &[&str]) -> i32 {
    let (sha, rest) = match args {
        ["--sha256", hex, rest @ ..] => (Some(*hex), rest),
        rest => (None, rest),
    };
    let [urls, file] = rest else {
        eprintln!("{USAGE}");
        return 2;
    };
    let mut words = format!("modloop={urls}");
    if let Some(hex) = sha {
        words.push_str(&format!(" modloop_sha256={hex}"));
    }
    let parsed = cmdline::parse(&words);
    if let Some(e) = parsed.errors.first() {
        eprintln!("netinit: {e}");
        return 2;
    }
    crate::klog::init(false);
    let image = &parsed.config.image;
    let job = crate::fetch::engine::Job {
        urls: &image.urls,
        policy: RetryPolicy::with_retries(image.retries),
        budget: image.timeout,
        timeouts: crate::fetch::engine::Timeouts::default(),
        room: None,
    };
    let start = std::time::Instant::now();
    match crate::fetch::engine::download_to(std::path::Path::new(file), &job, None) {
        Ok(done) => {
            let secs = start.elapsed().as_secs_f64();
            let rate = done.size as f64 / 1048576.0 / secs.max(0.001);
            println!("{} bytes in {secs:.3}s ({rate:.1} MiB/s), sha256 {}", done.size, hex(&done.sha256));
            match image.sha256 {
                Some(expected) if expected != done.sha256 => {
                    eprintln!("netinit: the SHA-256 is {}, not {}", hex(&done.sha256), hex(&expected));
                    1
                }
                _ => 0,
            }
        }
        Err(e) => {
            eprintln!("netinit: {}", crate::boot::chain(&e));
            1
        }
    }
}

/// The boot plan, then warnings and errors.
pub fn explain(p: &Parsed) -> String {
    let c = &p.config;
    let mut s = String::new();
    let mut line = |label: &str, text: String| {
        let _ = writeln!(s, "{label:10}{text}");
    };
    for (i, ip) in c.net.interfaces.iter().enumerate() {
        line(if i == 0 { "network:" } else { "" }, nic_choice(c, ip));
        match &ip.mode {
            IpMode::Dhcp { client_id } => {
                let id = client_id
                    .as_ref()
                    .map(|id| format!(" with client id {:02x}:{}", id.kind, id.id))
                    .unwrap_or_default();
                line("", format!("DHCP{id}, giving up after {}s", c.net.dhcp_timeout.as_secs()));
            }
            IpMode::Static(st) => {
                line("", format!("static {}/{}", st.address, st.prefix));
                if let Some(gw) = st.gateway {
                    line("", format!("gateway {gw}"));
                }
                if !st.dns.is_empty() {
                    line(
                        "",
                        format!("dns {}", st.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" ")),
                    );
                }
            }
            IpMode::Off => line("", "left unconfigured".into()),
        }
    }
    if let Some(h) = c.net.hostname() {
        line("", format!("hostname {h}"));
    }
    for (i, url) in c.image.urls.iter().enumerate() {
        line(if i == 0 { "image:" } else { "" }, url.to_string());
    }
    match c.image.sha256 {
        Some(d) => line("", format!("must have SHA-256 {}", hex(&d))),
        None => line("", "no digest to check (modloop_sha256=)".into()),
    }
    line(
        "",
        match c.image.verify {
            Verify::Auto => "signature checked if the initramfs has trusted keys".into(),
            Verify::Required => "signature required".into(),
            Verify::Off => "signature not checked (modloop_verify=no)".into(),
        },
    );
    let policy = RetryPolicy::default();
    line(
        "",
        format!(
            "{} attempts within {}s, waits of up to {}s doubling to {}s between them",
            attempts(c),
            c.image.timeout.as_secs(),
            policy.base.as_secs(),
            policy.cap.as_secs()
        ),
    );
    line(
        "",
        format!(
            "a busy server (503, 429) is waited out within the {}s, using no attempts",
            c.image.timeout.as_secs()
        ),
    );
    line("", format!("mounted read-only under a tmpfs overlay of {}", c.overlay_size));
    let extra = if c.modules.is_empty() { String::new() } else { format!(", and {}", c.modules.join(", ")) };
    line("modules:", format!("those packed in the initramfs{extra}"));
    if !c.blacklist.is_empty() {
        line("", format!("never {}, nor what needs them", c.blacklist.join(", ")));
    }
    if let Some(t) = &c.alpine.apkovl {
        line("alpine:", format!("overlay {}", t.as_str()));
    }
    if !c.alpine.repositories.is_empty() {
        line(
            if c.alpine.apkovl.is_none() { "alpine:" } else { "" },
            format!("repositories {}", c.alpine.repositories.join(" ")),
        );
    }
    if let Some(key) = &c.alpine.ssh_key {
        let text = match key {
            SshKey::Inline(k) => {
                format!("root's ssh key {}", k.split_whitespace().take(1).collect::<String>())
            }
            SshKey::Fetch(url) => format!("root's ssh key from {url}"),
        };
        let label =
            if c.alpine.apkovl.is_none() && c.alpine.repositories.is_empty() { "alpine:" } else { "" };
        line(label, text);
    }
    let inits = switch_root::candidates(c.init.as_deref(), &c.init_args);
    let chosen_by = if c.init.is_some() { " (init=)" } else { "" };
    line("init:", format!("{}{chosen_by}", switch_root::candidates_text(&inits)));
    if c.single {
        line("", "after a rescue shell on the console (single)".into());
    }
    line("failure:", failure_text(c));
    for w in &p.warnings {
        line("warning:", w.to_string());
    }
    for e in &p.errors {
        line("error:", e.to_string());
    }
    let _ = writeln!(
        s,
        "{}",
        if p.errors.is_empty() { "this cmdline would boot" } else { "this cmdline would NOT boot" }
    );
    s
}

/// A JSON value, enough for the plan.
enum Json {
    Null,
    Bool(bool),
    Num(u64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(&'static str, Json)>),
}

impl Json {
    fn str(s: impl ToString) -> Json {
        Json::Str(s.to_string())
    }

    fn opt(s: Option<impl ToString>) -> Json {
        s.map_or(Json::Null, Json::str)
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(&n.to_string()),
            Json::Str(s) => {
                out.push('"');
                for ch in s.chars() {
                    match ch {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        c if (c as u32) < 0x20 => {
                            let _ = write!(out, "\\u{:04x}", c as u32);
                        }
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    Json::str(k).write(out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// One program the boot may exec: `{"path":...,"args":[...],"with_dir":...}`.
fn candidate_json(c: &switch_root::Candidate) -> Json {
    Json::Obj(vec![
        ("path", Json::str(&c.path)),
        ("args", Json::Arr(c.args.iter().map(Json::str).collect())),
        ("with_dir", Json::opt(c.with_dir)),
    ])
}

/// The same plan as [`explain`], as one JSON object.
pub fn explain_json(p: &Parsed) -> String {
    let c = &p.config;
    let inits = switch_root::candidates(c.init.as_deref(), &c.init_args);
    let interfaces = c
        .net
        .interfaces
        .iter()
        .map(|ip| {
            let mut f =
                vec![("device", Json::opt(ip.device.as_ref())), ("choice", Json::str(nic_choice(c, ip)))];
            match &ip.mode {
                IpMode::Dhcp { client_id } => {
                    f.push(("method", Json::str("dhcp")));
                    f.push((
                        "client_id",
                        Json::opt(client_id.as_ref().map(|id| format!("{:02x}:{}", id.kind, id.id))),
                    ));
                }
                IpMode::Static(st) => {
                    f.push(("method", Json::str("static")));
                    f.push(("address", Json::str(st.address)));
                    f.push(("prefix", Json::Num(u64::from(st.prefix))));
                    f.push(("gateway", Json::opt(st.gateway)));
                    f.push(("dns", Json::Arr(st.dns.iter().map(Json::str).collect())));
                }
                IpMode::Off => f.push(("method", Json::str("off"))),
            }
            Json::Obj(f)
        })
        .collect();
    let problems = |list: &[cmdline::Problem]| {
        Json::Arr(
            list.iter()
                .map(|e| {
                    Json::Obj(vec![
                        ("param", Json::str(e.param)),
                        ("value", Json::str(&e.value)),
                        ("message", Json::str(&e.message)),
                    ])
                })
                .collect(),
        )
    };
    let countdown = match c.failure.countdown {
        Countdown::After(d) => Json::Num(d.as_secs()),
        Countdown::Immediately => Json::Num(0),
        Countdown::Never => Json::Null,
    };
    let ssh_key = match &c.alpine.ssh_key {
        Some(SshKey::Inline(k)) => Json::str(k),
        Some(SshKey::Fetch(url)) => Json::str(url),
        None => Json::Null,
    };
    let plan = Json::Obj(vec![
        ("boots", Json::Bool(p.errors.is_empty())),
        (
            "network",
            Json::Obj(vec![
                ("bootif", Json::opt(c.net.bootif)),
                ("interfaces", Json::Arr(interfaces)),
                ("dhcp_timeout", Json::Num(c.net.dhcp_timeout.as_secs())),
                ("hostname", Json::opt(c.net.hostname())),
            ]),
        ),
        (
            "image",
            Json::Obj(vec![
                ("urls", Json::Arr(c.image.urls.iter().map(Json::str).collect())),
                ("sha256", Json::opt(c.image.sha256.map(|d| hex(&d)))),
                (
                    "verify",
                    Json::str(match c.image.verify {
                        Verify::Auto => "auto",
                        Verify::Required => "yes",
                        Verify::Off => "no",
                    }),
                ),
                ("attempts", Json::Num(u64::from(attempts(c)))),
                ("timeout", Json::Num(c.image.timeout.as_secs())),
                ("overlay_size", Json::str(c.overlay_size.tmpfs_option())),
            ]),
        ),
        (
            "modules",
            Json::Obj(vec![
                ("extra", Json::Arr(c.modules.iter().map(Json::str).collect())),
                ("blacklist", Json::Arr(c.blacklist.iter().map(Json::str).collect())),
            ]),
        ),
        (
            "alpine",
            Json::Obj(vec![
                ("apkovl", Json::opt(c.alpine.apkovl.as_ref().map(|t| t.as_str()))),
                ("repositories", Json::Arr(c.alpine.repositories.iter().map(Json::str).collect())),
                ("ssh_key", ssh_key),
            ]),
        ),
        (
            "init",
            Json::Obj(vec![
                ("path", Json::opt(c.init.as_ref())),
                ("args", Json::Arr(c.init_args.iter().map(Json::str).collect())),
                ("candidates", Json::Arr(inits.iter().map(candidate_json).collect())),
            ]),
        ),
        ("single", Json::Bool(c.single)),
        ("debug", Json::Bool(c.debug)),
        ("quiet", Json::Bool(c.quiet)),
        (
            "failure",
            Json::Obj(vec![("action", Json::str(c.failure.action.name())), ("countdown", countdown)]),
        ),
        ("warnings", problems(&p.warnings)),
        ("errors", problems(&p.errors)),
    ]);
    let mut out = String::new();
    plan.write(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan() {
        let p = cmdline::parse(
            "modloop=http://u:p@images.lan/alpine.squashfs,http://backup/alpine.squashfs ip=dhcp BOOTIF=01-52-54-00-12-34-56 panic=30",
        );
        assert_eq!(
            explain(&p),
            "network:  the NIC with MAC 52:54:00:12:34:56 (BOOTIF)
          DHCP, giving up after 90s
image:    http://***@images.lan/alpine.squashfs
          http://backup/alpine.squashfs
          no digest to check (modloop_sha256=)
          signature checked if the initramfs has trusted keys
          6 attempts within 900s, waits of up to 1s doubling to 30s between them
          a busy server (503, 429) is waited out within the 900s, using no attempts
          mounted read-only under a tmpfs overlay of 50% of RAM
modules:  those packed in the initramfs
init:     /sbin/zinit init if the image has /etc/zinit/, else /sbin/init, else /sbin/openrc-init
failure:  reboot after 30s
this cmdline would boot
"
        );
    }

    #[test]
    fn the_init_line_states_the_rule() {
        let init_line = |cmdline: &str| {
            let out = explain(&cmdline::parse(&format!("modloop=http://a/b {cmdline}")));
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
        let json = explain_json(&cmdline::parse("modloop=http://a/b init=/bin/sh"));
        assert!(
            json.contains(r#""init":{"path":"/bin/sh","args":[],"candidates":[{"path":"/bin/sh","args":[],"with_dir":null}]}"#),
            "{json}"
        );
    }

    #[test]
    fn a_bad_cmdline() {
        let p = cmdline::parse("ip=10.0.0.300::::::off modlop=http://x/y");
        let out = explain(&p);
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
        assert_eq!(main(vec!["explain".into(), "ip=dhcp".into()]), 1);
        assert_eq!(main(vec!["explain".into(), "modloop=http://a/b".into()]), 0);
        assert_eq!(main(vec!["explain".into(), "--json".into(), "modloop=http://a/b".into()]), 0);
        assert_eq!(main(vec!["frobnicate".into()]), 2);
    }

    /// Every kernel command line README.md shows explains as a cmdline that boots, with iPXE's
    /// `${...}` filled in as iPXE would.
    #[test]
    fn the_readme_cmdlines_boot() {
        let readme = include_str!("../../README.md");
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
            assert!(explain(&p).ends_with("this cmdline would boot\n"));
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
            explain_json(&p),
            concat!(
                r#"{"boots":true,"network":{"bootif":null,"interfaces":["#,
                r#"{"device":"eth0","choice":"eth0 (ip=)","method":"dhcp","client_id":null},"#,
                r#"{"device":"eth1","choice":"eth1 (ip=)","method":"static","address":"10.0.0.5","prefix":24,"gateway":"10.0.0.1","dns":[]}],"#,
                r#""dhcp_timeout":90,"hostname":"x"},"#,
                r#""image":{"urls":["http://a/b"],"sha256":null,"verify":"auto","attempts":6,"timeout":900,"overlay_size":"50%"},"#,
                r#""modules":{"extra":[],"blacklist":[]},"alpine":{"apkovl":null,"repositories":[],"ssh_key":null},"#,
                r#""init":{"path":null,"args":["a","\\b"],"candidates":["#,
                r#"{"path":"/sbin/zinit","args":["a","\\b"],"with_dir":"/etc/zinit"},"#,
                r#"{"path":"/sbin/init","args":["a","\\b"],"with_dir":null},"#,
                r#"{"path":"/sbin/openrc-init","args":["a","\\b"],"with_dir":null}]},"#,
                r#""single":false,"debug":false,"quiet":false,"#,
                r#""failure":{"action":"poweroff","countdown":null},"warnings":[],"errors":[]}"#
            )
        );
    }
}
