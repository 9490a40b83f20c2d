//! `cargo xtask bench modules`: what coldplug saves. Boots a test kernel (Debian 12's generic one by
//! default, with the default `modules-list`) with one NIC, alternately with coldplug and with
//! `netinit.coldplug=no`, several times each, and prints for each run and as medians: the modules
//! stage's duration (from netinit's summary line), the modules loaded at that stage, the modules
//! loaded in all (as the booted system's `/proc/modules` counts them), and the uptime when netinit
//! starts the new root's init. Figures, not a timed test: it asserts only that each boot reached its root.

use std::time::Duration;

use crate::host::Result;
use crate::{fixtures, image, kernel, netlab, scenario, vm};

/// What one boot showed.
#[derive(Debug, Clone, Copy)]
struct Run {
    modules_stage: f64,
    at_stage: u32,
    in_all: u32,
    booted: f64,
}

/// The seconds after `label ` in `line` (`modules 0.40s`).
fn seconds_after(line: &str, label: &str) -> Option<f64> {
    let rest = line.split(&format!(" {label} ")).nth(1)?;
    rest.split('s').next()?.parse().ok()
}

/// The number after `prefix` in `line`.
fn number_after(line: &str, prefix: &str) -> Option<u32> {
    let rest = line.split(prefix).nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// A boot's figures from its console transcript.
fn parse(transcript: &[String]) -> Option<Run> {
    let find = |needle: &str| transcript.iter().find(|l| l.contains(needle));
    let summary = find("netinit: boot took ")?;
    Some(Run {
        modules_stage: seconds_after(summary, "modules")?,
        at_stage: number_after(find("netinit: modules: ")?, "netinit: modules: ")?,
        in_all: number_after(find("netinit-test-root: modules-loaded=")?, "modules-loaded=")?,
        // The uptime when netinit hands over: the root's own lines carry no timestamp.
        booted: seconds_after(summary, "took")?,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn modules(kernel_name: &str, nic: &str, runs: usize) -> Result<()> {
    let spec = kernel::by_name(kernel_name).ok_or(format!("no test kernel {kernel_name:?}"))?;
    let (env, _servers) = fixtures::prepare_vm_env(&[spec])?;
    let boot = |coldplug: bool| -> Result<Run> {
        let extra = if coldplug { "" } else { " netinit.coldplug=no" };
        let s = scenario::Scenario {
            name: format!("bench-modules-{}", if coldplug { "coldplug" } else { "all" }),
            description: String::new(),
            cmdline: format!("modloop={{server}}/{} ip=dhcp panic=5{extra}", image::root_path(spec.arch)),
            steps: vec![scenario::Step::Expect(image::MARKER.into())],
            forbids: vec!["Kernel panic".into(), "netinit: boot failed".into()],
            timeout: Duration::from_secs(300),
            nics: vec![netlab::Nic::User],
            ipxe: false,
            firmware: vm::Firmware::Bios,
            initramfs: scenario::Initramfs::Plain,
            kernels: vec![spec],
            kernel: spec,
            user_nic: (nic.to_owned(), String::new()),
            qemu: Vec::new(),
            services: Vec::new(),
            logs: Vec::new(),
            records: Vec::new(),
            arch: spec.arch,
        };
        let outcome = scenario::run(&s, &env, false);
        if let Some(why) = outcome.failure {
            return Err(format!("{}: {why}", s.name));
        }
        parse(&outcome.transcript).ok_or(format!("{}: the console lacks the figures", s.name))
    };
    println!(
        "xtask: bench modules: kernel {}, NIC {nic}, {runs} boots each, alternating (TCG, 1 vCPU)",
        spec.release
    );
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for i in 1..=runs {
        for coldplug in [true, false] {
            let r = boot(coldplug)?;
            println!(
                "run {i} {:<12} modules stage {:.2}s, {:>3} modules at the stage, {:>3} in all; boot took {:.2}s",
                if coldplug { "coldplug" } else { "coldplug=no" },
                r.modules_stage,
                r.at_stage,
                r.in_all,
                r.booted
            );
            if coldplug { &mut with } else { &mut without }.push(r);
        }
    }
    for (label, v) in [("coldplug", &with), ("coldplug=no", &without)] {
        println!(
            "median {label:<12} modules stage {:.2}s, {:>3} modules at the stage, {:>3} in all; boot took {:.2}s",
            median(v.iter().map(|r| r.modules_stage).collect()),
            median(v.iter().map(|r| f64::from(r.at_stage)).collect()),
            median(v.iter().map(|r| f64::from(r.in_all)).collect()),
            median(v.iter().map(|r| r.booted).collect()),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_from_a_console() {
        let t: Vec<String> = [
            "[    2.4] netinit: modules: 8 loaded, 0 already present, 0 failed; 0 storage drivers",
            "[    3.0] netinit: boot took 3.03s since the kernel started: mounts 0.02s, modules 0.39s, network 0.11s",
            "netinit-test-root: pid=1",
            "netinit-test-root: modules-loaded=11",
        ]
        .map(String::from)
        .to_vec();
        let r = parse(&t).unwrap();
        assert_eq!((r.modules_stage, r.at_stage, r.in_all, r.booted), (0.39, 8, 11, 3.03));
        assert!(parse(&t[..2]).is_none());
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}
