//! A clock TLS can trust. A machine whose real-time clock is earlier than this netinit's build (a
//! dead battery, a fresh board that says 2000-01-01) finds every certificate "not yet valid". Before
//! the network stage, a clock earlier than the build's epoch is raised to it, and the console says
//! so, as systemd does with its `TIME_EPOCH`. The epoch is `SOURCE_DATE_EPOCH` when the build gives
//! one (`cargo xtask` builds with the commit's time), and never earlier than [`SOURCE_EPOCH`].
//!
//! Once the network is up, when DHCP (option 42) or `ip=`'s NTP field names NTP servers, the clock
//! is set from one of them with one bounded SNTP exchange ([`set_from_ntp`], the client in
//! `net/sntp.rs`): no daemon, no discipline, one step, good to the round trip.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::Duration;

use crate::net::sntp;
use crate::sys;

/// The longest [`set_from_ntp`] takes, whatever the servers do: the client gives up within
/// `sntp::MAX_SERVERS` * 3 s by itself; this bounds the loop around it too.
const NTP_BUDGET: Duration = Duration::from_secs(15);

/// 2026-12-02 00:00:00 UTC: no netinit built from this source is older.
const SOURCE_EPOCH: u64 = 1_796_169_600;

/// The build's epoch, in seconds since 1970.
pub fn epoch() -> u64 {
    option_env!("SOURCE_DATE_EPOCH").and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0).max(SOURCE_EPOCH)
}

/// The time to set, when `now` is earlier than `epoch`.
pub fn raised(now: Duration, epoch: u64) -> Option<u64> {
    (now.as_secs() < epoch).then_some(epoch)
}

/// `2026-12-02 21:40:05 UTC`: the civil date of `secs` since 1970 (Howard Hinnant's `civil_from_days`).
pub fn civil(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rest / 3600, rest / 60 % 60, rest % 60)
}

/// Raises the real-time clock to the build's epoch if it is earlier, saying so.
pub fn raise_to_epoch() {
    let now = sys::realtime();
    let Some(to) = raised(now, epoch()) else { return };
    match sys::set_realtime(Duration::from_secs(to)) {
        Ok(()) => log::warn!(
            "the clock said {}, earlier than this netinit's build: set to {} so that certificates can verify",
            civil(now.as_secs()),
            civil(to)
        ),
        Err(e) => log::warn!(
            "the clock says {}, earlier than this netinit's build ({}), and cannot be set: {e}; https may fail with certificates \"not yet valid\"",
            civil(now.as_secs()),
            civil(to)
        ),
    }
}

/// Sets the clock from the first of `servers` (IPv4 NTP servers) that gives a usable time, saying
/// what it did; an unreachable or refusing server costs its timeouts and a warning, never the boot.
pub fn set_from_ntp(servers: &[Ipv4Addr]) {
    if servers.is_empty() {
        return;
    }
    let socket = match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
        Ok(s) => s,
        Err(e) => return log::warn!("SNTP: no UDP socket ({e}); the clock is left as it is"),
    };
    let start = sys::uptime();
    let all: Vec<IpAddr> = servers.iter().copied().map(IpAddr::V4).collect();
    let mut client = sntp::Client::new(all, epoch(), sys::random_u64(), start);
    let mut buf = [0u8; 512];
    while !client.is_done() && sys::uptime().saturating_sub(start) < NTP_BUDGET {
        if let Some(t) = client.poll_transmit(sys::uptime()) {
            log::debug!("SNTP: asking {} (try {})", t.server, t.attempt);
            if let Err(e) = socket.send_to(&t.packet, (t.server, sntp::PORT)) {
                log::debug!("SNTP: sending to {}: {e}", t.server);
            }
        }
        let now = sys::uptime();
        let wait = client.next_deadline().min(start.saturating_add(NTP_BUDGET)).saturating_sub(now);
        if client.is_done() || socket.set_read_timeout(Some(wait.max(Duration::from_millis(1)))).is_err() {
            continue;
        }
        let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
        match client.handle(from.ip(), &buf[..n], sys::uptime()) {
            sntp::Event::Synced(t) => return step(&t),
            e @ sntp::Event::Refused { .. } => log::warn!("{e}"),
            e @ sntp::Event::Ignored { .. } => log::debug!("{e}"),
        }
    }
    match client.gave_up() {
        Some(why) => log::warn!("SNTP: {why}; the clock stays at {}", civil(sys::realtime().as_secs())),
        None => log::warn!("SNTP: no time within {}s; the clock stays as it is", NTP_BUDGET.as_secs()),
    }
}

/// Sets the clock to `t`, saying from where and by how much it moved.
fn step(t: &sntp::Time) {
    let was = sys::realtime();
    let to = t.unix_at(sys::uptime());
    let moved = |a: Duration, b: Duration| match a >= b {
        true => format!("forward {:.3}s", (a - b).as_secs_f64()),
        false => format!("back {:.3}s", (b - a).as_secs_f64()),
    };
    match sys::set_realtime(to) {
        Ok(()) => log::info!(
            "clock set to {} from NTP server {} (stratum {}, round trip {} ms): {}",
            civil(to.as_secs()),
            t.server,
            t.stratum,
            t.round_trip.as_millis(),
            moved(to, was)
        ),
        Err(e) => {
            log::warn!("SNTP: {} gave {}, but the clock cannot be set: {e}", t.server, civil(to.as_secs()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(civil(SOURCE_EPOCH), "2026-12-02 00:00:00 UTC");
        assert_eq!(civil(951_782_400), "2000-02-29 00:00:00 UTC", "a leap day of a century leap year");
        assert_eq!(civil(978_307_199), "2000-12-31 23:59:59 UTC");
        assert_eq!(civil(4_107_542_400), "2100-03-01 00:00:00 UTC", "2100 is no leap year");
    }

    #[test]
    fn only_an_earlier_clock_is_raised() {
        let e = 1_796_169_600;
        assert_eq!(raised(Duration::from_secs(978_307_200), e), Some(e), "2001 is raised");
        assert_eq!(raised(Duration::from_secs(e), e), None);
        assert_eq!(raised(Duration::from_secs(e + 1), e), None, "a later clock is left alone");
        assert!(epoch() >= SOURCE_EPOCH);
    }
}
