//! When to try again, where, and after how long: the retry table as data, and a sans-IO
//! [`Schedule`] that the download loop asks after every attempt that failed. No I/O and no clock:
//! the loop passes the time and a random number in, so every decision is tested on the host.
//!
//! Three kinds of failure are kept apart, because they mean different things for a fleet:
//!
//! - **busy** (503 or 429, with or without `Retry-After`; a refused or timed-out connection to a
//!   mirror that answered before): the server works but is full. It is waited out within
//!   `netinit.timeout=` and never uses up `netinit.retries=`. A `Retry-After: N` wait is drawn from
//!   [N, 1.5 N] and any other wait has full jitter, so a thousand machines that were turned away in the
//!   same second come back spread out, not in lockstep. The next attempt goes to the next mirror,
//!   if there is one that is not itself waiting.
//! - **transient** (refused or timed out before the server ever answered, 5xx, 408, a reset before
//!   the body): uses up one retry; exponential backoff with full jitter.
//! - **not there** (404, 410, 403 and other 4xx): a mirror gets [`PERMANENT_ANSWERS`] of them, then is
//!   dropped; when every mirror is dropped the download fails at once.
//!
//! Bytes that arrived before a transfer broke are never waited for: the loop resumes at once.

use std::time::Duration;

/// The most a `Retry-After` may make netinit wait (before jitter).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Answers like 404 a mirror may give before it is dropped.
pub const PERMANENT_ANSWERS: u32 = 2;

/// When and how often to retry: exponential backoff with full jitter, pure so it is tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, across all mirrors, not counting busy answers and resumes.
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 6, base: Duration::from_secs(1), cap: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// The policy for `netinit.retries=N`: N + 1 attempts.
    pub fn with_retries(retries: u32) -> Self {
        RetryPolicy { attempts: retries.saturating_add(1), ..RetryPolicy::default() }
    }

    /// The wait before attempt `attempt + 1` after `attempt` (1-based) failed: uniform in
    /// `0..=min(cap, base * 2^(attempt-1))`, where `random` is any u64. Full jitter spreads a
    /// thousand machines that failed together.
    pub fn next_delay(&self, attempt: u32, random: u64) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let ceiling = u64::try_from(exp.min(self.cap).as_millis()).unwrap_or(u64::MAX - 1);
        Duration::from_millis(random % (ceiling + 1))
    }
}

/// What an HTTP status other than 200, 206 and 416 means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The server is full: wait (this long, if it said) and come back.
    Busy(Option<Duration>),
    /// Something went wrong that another try may not repeat.
    Transient,
    /// This mirror does not have it.
    NotThere,
}

/// The retry table for statuses. `retry_after` and `date` are the headers' values, if any.
pub fn verdict(status: u16, retry_after: Option<&str>, date: Option<&str>) -> Verdict {
    match status {
        429 | 503 => Verdict::Busy(retry_after.and_then(|v| parse_retry_after(v, date))),
        408 | 500..=599 => Verdict::Transient,
        _ => Verdict::NotThere,
    }
}

/// `Retry-After` as a wait, at most [`MAX_RETRY_AFTER`]: either seconds, or an HTTP date, which is
/// read against the response's own `Date` (the server's clock, not this machine's, which on a fresh
/// board may say 2000-01-01). A date without a `Date` header to read it against is ignored.
pub fn parse_retry_after(value: &str, date: Option<&str>) -> Option<Duration> {
    let value = value.trim();
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    let wait = match (digits, value.parse::<u64>()) {
        (true, Ok(secs)) => secs,
        // More seconds than a u64 holds is still "later than the cap".
        (true, Err(_)) => u64::MAX,
        (false, _) => http_date(value)?.saturating_sub(http_date(date?)?),
    };
    Some(Duration::from_secs(wait).min(MAX_RETRY_AFTER))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 5.6.7) as seconds since 1970.
fn http_date(v: &str) -> Option<u64> {
    let mut words = v.split_whitespace();
    let (_weekday, day, month, year, time, zone) =
        (words.next()?, words.next()?, words.next()?, words.next()?, words.next()?, words.next()?);
    if zone != "GMT" || words.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let (day, year): (u64, u64) = (day.parse().ok()?, year.parse().ok()?);
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || !(1970..=9999).contains(&year) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days from 1970-01-01 to the civil date (Howard Hinnant's days_from_civil, for years >= 1970).
    let (y, mo) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let (era, yoe) = (y / 400, y % 400);
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// How an attempt failed, as the schedule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server is full; `Some` is what its `Retry-After` asked for.
    Busy(Option<Duration>),
    /// A refused or timed-out connection: busy if this mirror answered before, else transient.
    Unreachable,
    /// No part of the image arrived, and another try may help.
    Transient,
    /// This mirror does not have the image.
    NotThere,
    /// Some bytes arrived before the transfer broke.
    Progress,
}

/// What the schedule says to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try `mirror` after waiting `after`. `busy` says the failure was a busy server's.
    Try { mirror: usize, after: Duration, busy: bool },
    /// Stop: the retries are used up.
    OutOfRetries,
    /// Stop: every mirror said it does not have the image.
    NowhereToGo,
}

/// The state of one download's retries across its mirrors.
#[derive(Debug, Clone)]
pub struct Schedule {
    policy: RetryPolicy,
    /// Per mirror: answers like 404 so far.
    not_there: Vec<u32>,
    /// Per mirror: it has answered with an HTTP status at least once.
    answered: Vec<bool>,
    /// Per mirror: the uptime before which it asked not to be asked again.
    not_before: Vec<Duration>,
    /// Failures that used up a retry.
    pub retries: u32,
    /// Busy answers in all.
    pub busy: u32,
    /// Busy answers since the last other outcome: the exponent of a wait without `Retry-After`.
    streak: u32,
}

impl Schedule {
    pub fn new(policy: RetryPolicy, mirrors: usize) -> Self {
        let n = mirrors.max(1);
        Schedule {
            policy,
            not_there: vec![0; n],
            answered: vec![false; n],
            not_before: vec![Duration::ZERO; n],
            retries: 0,
            busy: 0,
            streak: 0,
        }
    }

    /// `mirror` answered with an HTTP status: a later refused connection to it means it is busy.
    pub fn answered(&mut self, mirror: usize) {
        if let Some(a) = self.answered.get_mut(mirror) {
            *a = true;
        }
    }

    /// Whether the last failures were all a busy server's.
    pub fn in_busy_streak(&self) -> bool {
        self.streak > 0
    }

    /// The decision after an attempt on `mirror` failed as `failure`, at uptime `now`; `random` is
    /// any u64 (the jitter).
    pub fn after(&mut self, mirror: usize, failure: Failure, now: Duration, random: u64) -> Next {
        let mirror = mirror.min(self.not_there.len() - 1);
        let failure = match failure {
            Failure::Unreachable if self.answered[mirror] => Failure::Busy(None),
            Failure::Unreachable => Failure::Transient,
            other => other,
        };
        let wait = match failure {
            Failure::Progress => {
                self.streak = 0;
                return Next::Try { mirror, after: Duration::ZERO, busy: false };
            }
            Failure::Busy(asked) => {
                self.busy = self.busy.saturating_add(1);
                self.streak = self.streak.saturating_add(1);
                let wait = match asked {
                    // [RA, 1.5 RA]: never sooner than asked, and a herd spreads over half an RA
                    // more. A wider window spreads no better (the server turns extra requests away
                    // cheaply) and only delays the last machines: `cargo xtask bench storm`.
                    Some(ra) => ra.saturating_add(jitter(ra / 2, random)),
                    None => self.policy.next_delay(self.streak, random),
                };
                self.not_before[mirror] = now.saturating_add(wait);
                Duration::ZERO
            }
            Failure::NotThere | Failure::Transient | Failure::Unreachable => {
                self.streak = 0;
                if failure == Failure::NotThere {
                    self.not_there[mirror] = self.not_there[mirror].saturating_add(1);
                }
                if self.live().next().is_none() {
                    return Next::NowhereToGo;
                }
                self.retries = self.retries.saturating_add(1);
                if self.retries >= self.policy.attempts {
                    return Next::OutOfRetries;
                }
                self.policy.next_delay(self.retries, random)
            }
        };
        let Some(next) = self.next_mirror(mirror) else { return Next::NowhereToGo };
        let after = wait.max(self.not_before[next].saturating_sub(now));
        Next::Try { mirror: next, after, busy: matches!(failure, Failure::Busy(_)) }
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.not_there.len()).filter(|i| self.not_there[*i] < PERMANENT_ANSWERS)
    }

    /// The mirror to ask after `mirror` failed: the live ones in round-robin order, `mirror` itself
    /// only when it is the last one left, and of those the one that may be asked soonest (a
    /// mirror that asked for a wait yields to one that did not).
    fn next_mirror(&self, mirror: usize) -> Option<usize> {
        let n = self.not_there.len();
        let live = |i: &usize| self.not_there[*i] < PERMANENT_ANSWERS;
        let others = (1..n).map(|k| (mirror + k) % n).filter(live);
        let soonest = others.min_by_key(|i| self.not_before[*i]);
        soonest.or_else(|| Some(mirror).filter(live))
    }
}

/// Uniform in `0..=max` milliseconds.
fn jitter(max: Duration, random: u64) -> Duration {
    let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX - 1);
    Duration::from_millis(random % (ms + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_retry_table() {
        let check = |status: u16, retry_after: Option<&str>, expected: Verdict| {
            assert_eq!(verdict(status, retry_after, None), expected, "{status} {retry_after:?}");
        };
        check(500, None, Verdict::Transient);
        check(502, None, Verdict::Transient);
        check(503, None, Verdict::Busy(None));
        check(408, None, Verdict::Transient);
        check(503, Some("7"), Verdict::Busy(Some(S(7))));
        check(429, Some(" 2 "), Verdict::Busy(Some(S(2))));
        check(429, Some("86400"), Verdict::Busy(Some(MAX_RETRY_AFTER)));
        check(429, Some("soon"), Verdict::Busy(None));
        check(429, None, Verdict::Busy(None));
        check(500, Some("5"), Verdict::Transient);
        check(404, None, Verdict::NotThere);
        check(410, None, Verdict::NotThere);
        check(403, None, Verdict::NotThere);
        check(401, None, Verdict::NotThere);
        check(400, None, Verdict::NotThere);
    }

    #[test]
    fn retry_after_dates_are_read_on_the_servers_clock() {
        let date = Some("Wed, 21 Oct 2015 07:28:00 GMT");
        let check = |ra: &str, date: Option<&str>, expected: Option<Duration>| {
            assert_eq!(parse_retry_after(ra, date), expected, "{ra} {date:?}");
        };
        check("Wed, 21 Oct 2015 07:28:09 GMT", date, Some(S(9)));
        check("Wed, 21 Oct 2015 08:28:00 GMT", date, Some(MAX_RETRY_AFTER));
        check("Thu, 01 Jan 2015 00:00:00 GMT", date, Some(S(0)));
        check("Wed, 21 Oct 2015 07:28:09 GMT", None, None);
        check("Wed, 21 Oct 2015 07:28:09 UTC", date, None);
        check("Wed, 32 Oct 2015 07:28:09 GMT", date, None);
        check("12", None, Some(S(12)));
        check("-1", None, None);
        check("+12", None, None);
        check("99999999999999999999999", None, Some(MAX_RETRY_AFTER));
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(http_date("Tue, 29 Feb 2000 12:00:00 GMT"), Some(951_825_600));
        assert_eq!(http_date("Sun, 06 Nov 1994 08:49 GMT"), None);
    }

    #[test]
    fn backoff_is_exponential_capped_and_jittered() {
        let p = RetryPolicy::default();
        let check = |attempt: u32, ceiling_ms: u64| {
            let top = u64::MAX - (u64::MAX % (ceiling_ms + 1)) - 1;
            assert_eq!(p.next_delay(attempt, top), Duration::from_millis(ceiling_ms), "attempt {attempt}");
            assert_eq!(p.next_delay(attempt, 0), Duration::ZERO, "attempt {attempt}");
            assert_eq!(p.next_delay(attempt, ceiling_ms), Duration::from_millis(ceiling_ms), "{attempt}");
        };
        check(1, 1000);
        check(2, 2000);
        check(3, 4000);
        check(5, 16000);
        check(6, 30000);
        check(40, 30000);
        assert_eq!(p.next_delay(0, 7), Duration::from_millis(7));
        assert_eq!(RetryPolicy::with_retries(u32::MAX).attempts, u32::MAX);
    }

    /// Drives a schedule through `steps` of (mirror that failed, how, seconds now, random), checking
    /// each decision.
    fn drive(s: &mut Schedule, steps: &[(usize, Failure, u64, u64, Next)]) {
        for (i, (mirror, failure, now, random, expected)) in steps.iter().enumerate() {
            assert_eq!(s.after(*mirror, *failure, S(*now), *random), *expected, "step {i}: {failure:?}");
        }
    }

    fn try_(mirror: usize, after_ms: u64, busy: bool) -> Next {
        Next::Try { mirror, after: Duration::from_millis(after_ms), busy }
    }

    #[test]
    fn a_busy_server_is_waited_out_past_the_retry_count() {
        // Six attempts allowed; twenty busy answers (503 with Retry-After: 1, 429 without) use none.
        let mut s = Schedule::new(RetryPolicy::default(), 1);
        s.answered(0);
        for k in 0..10 {
            drive(&mut s, &[(0, Failure::Busy(Some(S(1))), k, 250, try_(0, 1250, true))]);
            drive(&mut s, &[(0, Failure::Busy(None), k, 0, try_(0, 0, true))]);
        }
        assert_eq!((s.busy, s.retries), (20, 0));
        // A refused connection to a server that answered before is busy too.
        drive(&mut s, &[(0, Failure::Unreachable, 20, 0, try_(0, 0, true))]);
        assert_eq!(s.retries, 0);
        // Then five transient failures leave the sixth attempt as the last.
        drive(
            &mut s,
            &[
                (0, Failure::Transient, 30, 0, try_(0, 0, false)),
                (0, Failure::Transient, 30, 0, try_(0, 0, false)),
                (0, Failure::Transient, 30, 0, try_(0, 0, false)),
                (0, Failure::Transient, 30, 0, try_(0, 0, false)),
                (0, Failure::Transient, 30, 0, try_(0, 0, false)),
                (0, Failure::Transient, 30, 0, Next::OutOfRetries),
            ],
        );
    }

    #[test]
    fn retry_after_is_jittered_within_half_a_retry_after_more() {
        let mut s = Schedule::new(RetryPolicy::default(), 1);
        let waits: Vec<Duration> = (0..1000u64)
            .map(|r| {
                match s.after(0, Failure::Busy(Some(S(2))), S(0), r.wrapping_mul(0x9E37_79B9_7F4A_7C15)) {
                    Next::Try { after, .. } => after,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert!(waits.iter().all(|w| (S(2)..=S(3)).contains(w)), "all within [RA, 1.5 RA]");
        let early = waits.iter().filter(|w| **w < Duration::from_millis(2500)).count();
        assert!((350..650).contains(&early), "spread over the interval, not bunched: {early} of 1000");
    }

    #[test]
    fn busy_waits_without_retry_after_grow_with_the_streak() {
        let mut s = Schedule::new(RetryPolicy::default(), 1);
        // With `random` at the ceiling, each wait is the ceiling: 1 s, 2 s, 4 s ... up to 30 s.
        for ceiling_ms in [1000, 2000, 4000, 8000, 16000, 30000, 30000] {
            drive(&mut s, &[(0, Failure::Busy(None), 0, ceiling_ms, try_(0, ceiling_ms, true))]);
        }
        // Any other outcome ends the streak: the next busy wait is back to at most 1 s.
        drive(&mut s, &[(0, Failure::Progress, 0, 0, try_(0, 0, false))]);
        drive(&mut s, &[(0, Failure::Busy(None), 0, 30000, try_(0, 30000 % 1001, true))]);
    }

    #[test]
    fn a_refused_connection_before_any_answer_uses_up_a_retry() {
        let mut s = Schedule::new(RetryPolicy::with_retries(1), 1);
        drive(
            &mut s,
            &[
                (0, Failure::Unreachable, 0, 0, try_(0, 0, false)),
                (0, Failure::Unreachable, 0, 0, Next::OutOfRetries),
            ],
        );
    }

    #[test]
    fn a_busy_mirror_sends_the_next_attempt_to_the_next_mirror() {
        let mut s = Schedule::new(RetryPolicy::default(), 3);
        drive(
            &mut s,
            &[
                // Mirror 0 busy for 5 s: go on to mirror 1 at once.
                (0, Failure::Busy(Some(S(5))), 0, 0, try_(1, 0, true)),
                // Mirror 1 busy for 5 s: mirror 2 at once.
                (1, Failure::Busy(Some(S(5))), 1, 0, try_(2, 0, true)),
                // Mirror 2 busy for 10 s: mirror 0 is free again soonest, at 5 s.
                (2, Failure::Busy(Some(S(10))), 2, 0, try_(0, 3000, true)),
                // Mirror 0 does not have it: mirror 1, after the backoff and its own wait.
                (0, Failure::NotThere, 5, 0, try_(1, 1000, false)),
            ],
        );
        assert_eq!((s.busy, s.retries), (3, 1));
    }

    #[test]
    fn mirrors_that_do_not_have_it_are_dropped() {
        let mut s = Schedule::new(RetryPolicy { attempts: 50, ..RetryPolicy::default() }, 2);
        drive(
            &mut s,
            &[
                (0, Failure::NotThere, 0, 0, try_(1, 0, false)),
                (1, Failure::NotThere, 0, 0, try_(0, 0, false)),
                (0, Failure::NotThere, 0, 0, try_(1, 0, false)),
                (1, Failure::NotThere, 0, 0, Next::NowhereToGo),
            ],
        );
    }

    #[test]
    fn progress_resumes_at_once_on_the_same_mirror_and_uses_nothing() {
        let mut s = Schedule::new(RetryPolicy::with_retries(0), 2);
        for _ in 0..100 {
            drive(&mut s, &[(1, Failure::Progress, 0, 7, try_(1, 0, false))]);
        }
        assert_eq!((s.busy, s.retries), (0, 0));
    }
}
