//! The time of log records: their stamps, and the boundaries of time-based rotation
//! (`log.rotate: daily|hourly`, at midnight or the full hour, UTC like the stamps).
//!
//! A test-only fake clock: `TURBO_TEST_LOG_CLOCK=<unix seconds>x<speed>` makes the log clock
//! start at that instant when first read and run `speed` times faster than real time, so an
//! end-to-end test can cross midnight in seconds. It is read by whoever writes the records (the
//! log keeper, which inherits it from the daemon that starts it) and by nothing else. Not for
//! production use: it changes the stamps of every record.
//!
//! This module must not write anything.

use std::{
    sync::OnceLock,
    time::{Instant, SystemTime},
};

use crate::spec::RotatePeriod;

/// The test-only fake clock's environment variable (see the module docs).
pub const FAKE_CLOCK_ENV: &str = "TURBO_TEST_LOG_CLOCK";

struct Fake {
    start_ms: i64,
    speed: f64,
    since: Instant,
}

fn fake() -> Option<&'static Fake> {
    static FAKE: OnceLock<Option<Fake>> = OnceLock::new();
    FAKE.get_or_init(|| {
        let text = std::env::var(FAKE_CLOCK_ENV).ok()?;
        let (start, speed) = text.split_once('x')?;
        Some(Fake {
            start_ms: start.trim().parse::<i64>().ok()?.checked_mul(1000)?,
            speed: speed.trim().parse().ok().filter(|s: &f64| *s > 0.0)?,
            since: Instant::now(),
        })
    })
    .as_ref()
}

/// Whether the test-only fake clock runs (then file times are set to it: see `sink`).
#[must_use]
pub fn is_fake() -> bool {
    fake().is_some()
}

/// Now, in Unix milliseconds, on the log clock.
#[must_use]
pub fn now_ms() -> i64 {
    if let Some(f) = fake() {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "a test clock's elapsed milliseconds are far below i64::MAX"
        )]
        let elapsed = (f.since.elapsed().as_secs_f64() * 1000.0 * f.speed) as i64;
        return f.start_ms.saturating_add(elapsed);
    }
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `at_ms` (Unix milliseconds) as a [`SystemTime`]; before 1970 is 1970.
#[must_use]
pub fn system_time(at_ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(at_ms).unwrap_or(0))
}

/// The end of the rotation period that `at_ms` falls in: the next midnight or full hour (UTC).
#[must_use]
pub const fn period_end(period: RotatePeriod, at_ms: i64) -> i64 {
    let p = period.millis();
    (at_ms.div_euclid(p) + 1) * p
}

#[cfg(test)]
mod tests {
    use turbo_api::logfmt;

    use super::*;

    #[test]
    fn periods_end_at_midnight_and_full_hours() {
        // 2026-01-02T03:04:05.678Z
        let at = 1_767_323_045_678;
        let midnight = logfmt::stamp_ms("2026-01-03T00:00:00.000Z").unwrap();
        assert_eq!(period_end(RotatePeriod::Daily, at), midnight);
        assert_eq!(
            period_end(RotatePeriod::Daily, midnight),
            midnight + 86_400_000
        );
        let hour = logfmt::stamp_ms("2026-01-02T04:00:00.000Z").unwrap();
        assert_eq!(period_end(RotatePeriod::Hourly, at), hour);
    }
}
