//! VM scenarios, one file each in `qemu-tests/`, read like a transcript:
//!
//! ```text
//! # What the scenario proves (the first comment lines are its description).
//! cmdline: modloop={server}/root.squashfs ip=dhcp
//! timeout: 180
//! expect: netinit: mounting /proc
//! expect: netinit-test-root: pid=1
//! forbid: Kernel panic
//! ```
//!
//! `expect` lines must appear on the console in this order; `forbid` lines must never appear; after
//! the last `expect` the VM must power off or reboot by itself. `{server}`, in any of them, is the test
//! HTTP server as the guest sees it (`http://10.0.2.2:PORT`). Every scenario also forbids a kernel
//! panic and a netinit crash.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::vm::{Spec, Vm};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub cmdline: String,
    pub expects: Vec<String>,
    pub forbids: Vec<String>,
    pub timeout: Duration,
}

/// Lines every scenario forbids.
const ALWAYS_FORBIDDEN: [&str; 2] = ["Kernel panic", "netinit crashed"];

pub fn parse(name: &str, text: &str) -> Result<Scenario, String> {
    let mut s = Scenario {
        name: name.to_owned(),
        description: String::new(),
        cmdline: String::new(),
        expects: Vec::new(),
        forbids: ALWAYS_FORBIDDEN.iter().map(|f| f.to_string()).collect(),
        timeout: Duration::from_secs(180),
    };
    let mut in_header = true;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix('#') {
            if in_header {
                s.description.push_str(comment.trim());
                s.description.push(' ');
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        in_header = false;
        let (key, value) = line.split_once(':').ok_or(format!("{name}:{}: expected `key: value`", n + 1))?;
        let value = value.trim().to_owned();
        match key.trim() {
            "cmdline" => s.cmdline = value,
            "expect" => s.expects.push(value),
            "forbid" => s.forbids.push(value),
            "timeout" => {
                s.timeout = Duration::from_secs(
                    value.parse().map_err(|_| format!("{name}:{}: timeout is whole seconds", n + 1))?,
                )
            }
            other => return Err(format!("{name}:{}: unknown key {other:?}", n + 1)),
        }
    }
    s.description = s.description.trim().to_owned();
    if s.cmdline.is_empty() || s.expects.is_empty() {
        return Err(format!("{name}: needs a cmdline and at least one expect"));
    }
    Ok(s)
}

/// Every `*.scenario` file of `dir`, by name.
pub fn load_all(dir: &Path) -> Result<Vec<Scenario>, String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "scenario") {
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            out.push(parse(&name, &text)?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub struct Outcome {
    pub failure: Option<String>,
    pub transcript: Vec<String>,
    pub elapsed: Duration,
}

/// Where the VMs run: kernel, initramfs, the server's port.
pub struct Env {
    pub kernel: std::path::PathBuf,
    pub initrd: std::path::PathBuf,
    pub port: u16,
}

/// `{server}` as the guest sees the test HTTP server.
fn expand(text: &str, port: u16) -> String {
    text.replace("{server}", &format!("http://10.0.2.2:{port}"))
}

pub fn kernel_cmdline(s: &Scenario, port: u16) -> String {
    format!("console=ttyS0,115200 {}", expand(&s.cmdline, port))
}

pub fn run(s: &Scenario, env: &Env, echo: bool) -> Outcome {
    let start = Instant::now();
    let deadline = start + s.timeout;
    let spec = Spec {
        kernel: env.kernel.clone(),
        initrd: env.initrd.clone(),
        append: kernel_cmdline(s, env.port),
        memory_mb: 512,
    };
    let mut vm = match Vm::boot(&spec, echo) {
        Ok(vm) => vm,
        Err(e) => return Outcome { failure: Some(e), transcript: Vec::new(), elapsed: start.elapsed() },
    };
    let mut failure = None;
    for needle in &s.expects {
        if let Err(e) = vm.expect(&expand(needle, env.port), deadline) {
            failure = Some(e);
            break;
        }
    }
    if failure.is_none() {
        failure = vm.wait_exit(deadline).err();
    }
    let transcript = std::mem::take(&mut vm.transcript);
    drop(vm);
    if failure.is_none() {
        failure = s.forbids.iter().map(|f| expand(f, env.port)).find_map(|f| {
            transcript.iter().find(|l| l.contains(&f)).map(|l| format!("forbidden line: {l:?}"))
        });
    }
    Outcome { failure, transcript, elapsed: start.elapsed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_transcript() {
        let s = parse(
            "x",
            "# Boots.\n# Really.\n\ncmdline: modloop={server}/r ip=dhcp\ntimeout: 60\nexpect: a: b\nexpect: c\nforbid: oops\n# later comment\n",
        )
        .unwrap();
        assert_eq!(s.description, "Boots. Really.");
        assert_eq!(s.expects, ["a: b", "c"]);
        assert_eq!(s.forbids, ["Kernel panic", "netinit crashed", "oops"]);
        assert_eq!(s.timeout, Duration::from_secs(60));
        assert_eq!(kernel_cmdline(&s, 8080), "console=ttyS0,115200 modloop=http://10.0.2.2:8080/r ip=dhcp");
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        assert!(parse("x", "cmdline: a\n").unwrap_err().contains("at least one expect"));
        assert!(parse("x", "cmdline: a\nexpect: b\nwhatever\n")
            .unwrap_err()
            .contains("x:3: expected `key: value`"));
        assert!(parse("x", "cmdline: a\nexpect: b\nwait: 3\n").unwrap_err().contains("unknown key \"wait\""));
        assert!(parse("x", "cmdline: a\nexpect: b\ntimeout: soon\n").unwrap_err().contains("whole seconds"));
    }

    #[test]
    fn the_repository_scenarios_parse() {
        let all = load_all(&crate::host::root().join("qemu-tests")).unwrap();
        assert!(all.len() >= 3, "{} scenarios", all.len());
    }
}
