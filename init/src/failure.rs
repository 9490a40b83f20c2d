//! What PID 1 does when the boot cannot go on: say what failed and what to do, then count down
//! and reboot, as `panic=` asks. The one place that decides; stages only return errors.
//!
//! It never returns and never exits: PID 1 exiting would panic the kernel.

use std::time::Duration;

use crate::cmdline::Countdown;
use crate::sys;

/// Logs the failure and applies the countdown.
pub fn fail(stage: &str, what: &str, hint: &str, countdown: &Countdown) -> ! {
    log::error!("boot failed in stage {stage}: {what}");
    log::error!("what to do: {hint}");
    match countdown {
        Countdown::Never => {
            log::error!("panic=0: waiting forever; power-cycle the machine to try again");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Countdown::Immediately => reboot(),
        Countdown::After(wait) => {
            let secs = wait.as_secs().max(1);
            for left in (1..=secs).rev() {
                if countdown_line(left, secs) {
                    log::error!("rebooting in {left}s");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            reboot()
        }
    }
}

/// Whether to print the countdown with `left` seconds to go of `total`: the first second, every 10 s,
/// and each of the last 5. At 115200 baud a line a second for minutes would drown the error.
pub fn countdown_line(left: u64, total: u64) -> bool {
    left == total || left % 10 == 0 || left <= 5
}

fn reboot() -> ! {
    log::error!("rebooting now");
    let e = sys::reboot(sys::RebootCommand::Restart);
    log::error!("reboot failed: {e}; halting");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
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
}
