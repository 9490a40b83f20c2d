//! The boot log. Each record is one line written to `/dev/kmsg` with its priority and the `netinit:`
//! prefix; the kernel stamps it with the uptime, keeps it for `dmesg`, and echoes it on every console
//! whose log level lets it through. So the operator's serial console and `dmesg` show one interleaved
//! stream of kernel and netinit lines, and the kernel's `quiet` hides netinit's info lines but never
//! its errors. Where `/dev/kmsg` cannot be opened (not PID 1, or no devtmpfs) lines go to stderr with
//! the same uptime stamp.
//!
//! It does not filter by module or format structured fields: a line is written when logged. It keeps
//! the last [`RECENT`] lines in memory too ([`recent`]), for the failure report (`report.rs`).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct BootLogger {
    kmsg: Mutex<Option<File>>,
    recent: Mutex<Ring>,
}

static LOGGER: BootLogger = BootLogger { kmsg: Mutex::new(None), recent: Mutex::new(Ring::new(RECENT)) };

/// How many of the last lines [`recent`] gives.
pub const RECENT: usize = 100;

/// The last `cap` lines logged, oldest first.
pub struct Ring {
    lines: VecDeque<String>,
    cap: usize,
}

impl Ring {
    pub const fn new(cap: usize) -> Ring {
        Ring { lines: VecDeque::new(), cap }
    }

    pub fn push(&mut self, line: String) {
        if self.lines.len() == self.cap {
            self.lines.pop_front();
        }
        if self.cap > 0 {
            self.lines.push_back(line);
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}

/// The last [`RECENT`] lines logged (info and above, and debug lines with `debug_init`), oldest
/// first, each with its level: `error: boot failed ...`.
pub fn recent() -> Vec<String> {
    LOGGER.recent.lock().map(|r| r.lines()).unwrap_or_default()
}

/// Set by `debug_init`: debug lines are then written at info priority, so that the kernel echoes them
/// on the console like the rest (at debug priority they would reach `dmesg` only).
static DEBUG_ON_CONSOLE: AtomicBool = AtomicBool::new(false);

/// Shows debug lines on the console from now on (`debug_init`).
pub fn debug_on_console() {
    DEBUG_ON_CONSOLE.store(true, Ordering::Relaxed);
    log::set_max_level(LevelFilter::Debug);
}

/// Installs the logger. With `use_kmsg`, lines go to `/dev/kmsg` (the initramfs carries the node, so
/// this works before devtmpfs is mounted); without it, or when it cannot be opened, to stderr. The kernel's
/// rate limit on `/dev/kmsg` is lifted later, by [`lift_rate_limit`], once `/proc` is mounted.
pub fn init(use_kmsg: bool) {
    if use_kmsg {
        if let Ok(file) = File::options().write(true).open("/dev/kmsg") {
            if let Ok(mut slot) = LOGGER.kmsg.lock() {
                *slot = Some(file);
            }
        }
    }
    // Ignored when a logger is already set: then this one was installed before.
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}

/// Called once `/proc` is mounted.
pub fn lift_rate_limit() {
    match crate::sys::write_sysctl("/proc/sys/kernel/printk_devkmsg", "on\n") {
        Ok(()) => {}
        // EINVAL: locked by printk.devkmsg= on the cmdline. ENOENT: a kernel without the sysctl.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) => {}
        Err(e) => log::warn!("could not lift the /dev/kmsg rate limit: {e}"),
    }
}

/// The syslog priority of a level, as /dev/kmsg reads it: `<3>` error, `<4>` warning, `<6>` info,
/// `<7>` debug (syslog(2)), or `<6>` for debug too when `debug_on_console`.
fn priority(level: Level, debug_on_console: bool) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace if debug_on_console => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The longest text of one record: /dev/kmsg refuses records over 1024 bytes.
const RECORD_TEXT: usize = 960;

/// The kmsg records of one log call: one per line of the message, each `<prio>netinit: text\n`;
/// a line too long for one record is split across several, at character boundaries.
fn kmsg_records(level: Level, message: &str, debug_on_console: bool) -> Vec<String> {
    let prio = priority(level, debug_on_console);
    let mut records = Vec::new();
    for line in message.lines() {
        let mut rest = line;
        loop {
            let mut cut = rest.len().min(RECORD_TEXT);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            records.push(format!("<{prio}>netinit: {}\n", &rest[..cut]));
            rest = &rest[cut..];
            if rest.is_empty() {
                break;
            }
        }
    }
    records
}

impl Log for BootLogger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let message = record.args().to_string();
        if record.level() <= log::max_level() {
            if let Ok(mut recent) = self.recent.lock() {
                let t = crate::sys::uptime();
                for line in message.lines() {
                    let level = record.level().as_str().to_ascii_lowercase();
                    recent.push(format!("[{:5}.{:06}] {level}: {line}", t.as_secs(), t.subsec_micros()));
                }
            }
        }
        if let Ok(mut kmsg) = self.kmsg.lock() {
            if let Some(file) = kmsg.as_mut() {
                // One write(2) per record, as /dev/kmsg requires.
                for line in kmsg_records(record.level(), &message, DEBUG_ON_CONSOLE.load(Ordering::Relaxed)) {
                    if file.write_all(line.as_bytes()).is_err() {
                        break;
                    }
                }
                return;
            }
        }
        let t = crate::sys::uptime();
        let mut err = std::io::stderr().lock();
        for line in message.lines() {
            let _ = writeln!(err, "[{:5}.{:06}] netinit: {}", t.as_secs(), t.subsec_micros(), line);
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_lines() {
        let mut ring = Ring::new(3);
        for i in 0..5 {
            ring.push(i.to_string());
        }
        assert_eq!(ring.lines(), ["2", "3", "4"]);
        let mut none = Ring::new(0);
        none.push("x".into());
        assert!(none.lines().is_empty());
        let mut big = Ring::new(RECENT);
        for i in 0..250 {
            big.push(i.to_string());
        }
        assert_eq!(big.lines().len(), RECENT);
        assert_eq!(big.lines()[0], "150");
    }

    #[test]
    fn records() {
        let check = |level, message: &str, expected: &[&str]| {
            assert_eq!(kmsg_records(level, message, false), expected)
        };
        check(Level::Info, "loading modules", &["<6>netinit: loading modules\n"]);
        check(
            Level::Error,
            "fetch failed\nhint: x",
            &["<3>netinit: fetch failed\n", "<3>netinit: hint: x\n"],
        );
        check(Level::Warn, "w", &["<4>netinit: w\n"]);
        check(Level::Debug, "d", &["<7>netinit: d\n"]);
        assert_eq!(kmsg_records(Level::Debug, "d", true), ["<6>netinit: d\n"], "debug_init");
        assert_eq!(kmsg_records(Level::Error, "e", true), ["<3>netinit: e\n"]);
        let long = "é".repeat(700); // 1400 bytes
        let records = kmsg_records(Level::Info, &long, false);
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|r| r.len() <= 1024), "each fits a kmsg record");
        let text: String = records.iter().map(|r| &r["<6>netinit: ".len()..r.len() - 1]).collect();
        assert_eq!(text, long, "nothing lost");
    }
}
