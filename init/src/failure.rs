//! What PID 1 does when the boot cannot go on: say what failed and what to do, then apply
//! `netinit.fail=` after the `panic=` countdown. The one place that decides; stages only return errors.
//! Also the rescue shell, which `single` opens before switch_root.
//!
//! It never returns and never exits: PID 1 exiting would panic the kernel.

use std::path::Path;
use std::time::Duration;

use crate::cmdline::{Countdown, FailAction, FailurePolicy};
use crate::sys;

/// The shell `cargo xtask cpio --shell` packs.
pub const SHELL: &str = "/bin/sh";

/// Logs the failure, lets `report` say it off the machine (bounded: `report.rs`), and applies the
/// policy.
pub fn fail(stage: &str, what: &str, hint: &str, policy: &FailurePolicy, report: &mut dyn FnMut()) -> ! {
    log::error!("boot failed in stage {stage}: {what}");
    log::error!("what to do: {hint}");
    report();
    let mut action = policy.action;
    if action == FailAction::Shell {
        match rescue_shell("the boot failed") {
            Ok(()) => log::error!("the rescue shell exited; rebooting"),
            Err(why) => log::error!("{why}; rebooting instead"),
        }
        action = FailAction::Reboot;
    }
    match policy.countdown {
        Countdown::Never => {
            log::error!("panic=0: waiting forever; power-cycle the machine to try again");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Countdown::Immediately => {}
        Countdown::After(wait) => {
            let secs = wait.as_secs().max(1);
            for left in (1..=secs).rev() {
                if countdown_line(left, secs) {
                    log::error!("{} in {left}s", verb(action));
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    finish(action)
}

fn verb(action: FailAction) -> &'static str {
    match action {
        FailAction::Poweroff => "powering off",
        FailAction::Halt => "halting",
        FailAction::Reboot | FailAction::Shell => "rebooting",
    }
}

/// Whether to print the countdown with `left` seconds to go of `total`: the first second, every 10 s,
/// and each of the last 5. At 115200 baud a line a second for minutes would drown the error.
pub fn countdown_line(left: u64, total: u64) -> bool {
    left == total || left % 10 == 0 || left <= 5
}

fn finish(action: FailAction) -> ! {
    log::error!("{} now", verb(action));
    let cmd = match action {
        FailAction::Poweroff => sys::RebootCommand::PowerOff,
        FailAction::Halt => sys::RebootCommand::Halt,
        FailAction::Reboot | FailAction::Shell => sys::RebootCommand::Restart,
    };
    let e = sys::reboot(cmd);
    log::error!("reboot(2) failed: {e}; halting here");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Runs the rescue shell on the console until it exits.
pub fn rescue_shell(why: &str) -> Result<(), String> {
    if !Path::new(SHELL).exists() {
        return Err(format!(
            "no rescue shell: this initramfs has no {SHELL} (build it with cargo xtask cpio --shell)"
        ));
    }
    log::error!("{why}: starting a rescue shell on the console; the new root is at /newroot once mounted; exit the shell to go on");
    match sys::run_on_console(SHELL, &["-i"]) {
        Ok(status) => {
            log::info!("the rescue shell exited ({status})");
            Ok(())
        }
        Err(e) => Err(format!("starting {SHELL}: {e}")),
    }
}

/// An error and its causes on one line: `outer: inner: innermost`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdown_lines() {
        let shown: Vec<u64> = (1..=30).rev().filter(|l| countdown_line(*l, 30)).collect();
        assert_eq!(shown, [30, 20, 10, 5, 4, 3, 2, 1]);
        let shown: Vec<u64> = (1..=7).rev().filter(|l| countdown_line(*l, 7)).collect();
        assert_eq!(shown, [7, 5, 4, 3, 2, 1]);
    }

    #[test]
    fn verbs() {
        assert_eq!(verb(FailAction::Poweroff), "powering off");
        assert_eq!(verb(FailAction::Shell), "rebooting");
    }
}
