//! When the procfs source next samples a process's memory against its threshold.
//!
//! The next sample comes sooner the closer the process is to the level whose crossing would be
//! reported next and the faster it moved toward that level since the last sample: the interval
//! is half the time the process would need to get there at the rate just observed, between a
//! floor and a ceiling. So an app that holds still far from its limit costs one read per ceiling
//! (a second by default, as before the sampling was adaptive), while one that grows by 100 MB/s
//! is read every few tens of milliseconds once it nears the limit and is caught within a few MB
//! of it. A short window that happens to see no growth (allocation in bursts) must not blind
//! the source for a whole ceiling: the rate used is the fastest seen recently (it halves every
//! second the process does not match it), and the interval at most doubles from one sample to
//! the next.
//!
//! Pure: the caller reads `/proc` and the clock and passes both in; nothing here does I/O.

use std::time::{Duration, Instant};

/// The fastest the source samples one process (a fast grower next to its threshold).
pub const FLOOR: Duration = Duration::from_millis(20);

/// The sampling schedule of one process under one threshold (kept across threshold changes:
/// the growth rate is the process's, not the threshold's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pace {
    floor: Duration,
    ceiling: Duration,
    /// The interval chosen at the last sample (the next one is at most twice it).
    interval: Duration,
    /// The growth rate toward the level the schedule goes by, in pages per second: the one just
    /// seen, or the recent fastest decayed (see the module docs).
    rate: f64,
    last: Option<(Instant, u64)>,
}

impl Pace {
    /// A schedule between `floor` and `ceiling` (a ceiling below the floor is raised to it).
    /// The first intervals are short, to learn how fast the process grows.
    #[must_use]
    pub fn new(floor: Duration, ceiling: Duration) -> Self {
        Self {
            floor,
            ceiling: ceiling.max(floor),
            interval: floor,
            rate: 0.0,
            last: None,
        }
    }

    /// Records a reading of `pages` resident at `now`, when the next crossing to report is of
    /// `level` pages (upwards when `pages < level`, else downwards); returns when to read next.
    pub fn sampled(&mut self, now: Instant, pages: u64, level: u64) -> Instant {
        let rising = pages < level;
        let headroom = pages.abs_diff(level);
        // growth toward the level since the last reading, in pages per second
        self.rate = self.last.map_or(0.0, |(at, before)| {
            let toward = if rising {
                pages.saturating_sub(before)
            } else {
                before.saturating_sub(pages)
            };
            let secs = now.saturating_duration_since(at).as_secs_f64();
            if secs > 0.0 {
                #[expect(clippy::cast_precision_loss, reason = "page counts far below 2^52")]
                let toward = toward as f64;
                (toward / secs).max(self.rate * 0.5_f64.powf(secs))
            } else {
                self.rate
            }
        });
        let wanted = interval(headroom, self.rate, self.floor, self.ceiling);
        self.interval = wanted.min(self.interval.saturating_mul(2));
        self.last = Some((now, pages));
        now + self.interval
    }
}

/// Half the time `headroom` pages take at `rate` pages per second, within `floor..=ceiling`;
/// the ceiling when the process does not move toward its threshold.
#[must_use]
pub fn interval(headroom: u64, rate: f64, floor: Duration, ceiling: Duration) -> Duration {
    if rate <= 0.0 || !rate.is_finite() {
        return ceiling;
    }
    #[expect(clippy::cast_precision_loss, reason = "page counts far below 2^52")]
    let secs = headroom as f64 / rate / 2.0;
    Duration::try_from_secs_f64(secs).map_or(ceiling, |d| d.clamp(floor, ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    /// 10 MB in 4 KiB pages.
    const TEN_MB: u64 = 2560;

    fn pace() -> Pace {
        Pace::new(FLOOR, Duration::from_secs(1))
    }

    #[test]
    fn interval_is_half_the_time_to_the_level_within_bounds() {
        let (floor, ceiling) = (FLOOR, Duration::from_secs(1));
        // 1000 pages away at 1000 pages/s: there in 1 s, look again in 500 ms
        assert_eq!(interval(1000, 1000.0, floor, ceiling), 500 * MS);
        assert_eq!(interval(1, 1000.0, floor, ceiling), floor);
        assert_eq!(interval(0, 1000.0, floor, ceiling), floor);
        assert_eq!(interval(1_000_000, 1.0, floor, ceiling), ceiling);
        assert_eq!(interval(10, 0.0, floor, ceiling), ceiling);
        assert_eq!(interval(10, f64::NAN, floor, ceiling), ceiling);
    }

    #[test]
    fn still_process_far_from_its_limit_settles_at_one_read_per_ceiling() {
        let t0 = Instant::now();
        let mut p = pace();
        let mut now = t0;
        let mut gaps = Vec::new();
        for _ in 0..10 {
            let next = p.sampled(now, 1000, 50_000);
            gaps.push(next - now);
            now = next;
        }
        // learning first (doubling from the floor), then the ceiling for good
        assert_eq!(
            gaps[..6],
            [40 * MS, 80 * MS, 160 * MS, 320 * MS, 640 * MS, 1000 * MS]
        );
        assert!(
            gaps[6..].iter().all(|g| *g == Duration::from_secs(1)),
            "{gaps:?}"
        );
        // ten reads take 6.24 s: the learning costs five reads more than a fixed second would
        assert_eq!(now - t0, 6240 * MS);
    }

    /// The benchmark's workload: 10 MB every 100 ms, in steps, against a 200 MB limit.
    #[test]
    fn fast_grower_is_caught_within_a_few_mb_of_its_limit() {
        let t0 = Instant::now();
        let limit = 20 * TEN_MB;
        let rss_at = |at: Instant| {
            let steps = u64::try_from((at - t0).as_millis() / 100).expect("small");
            TEN_MB * (steps + 1)
        };
        // a long quiet history: the schedule is at the ceiling when the growth starts
        let mut p = pace();
        let mut at = t0 - Duration::from_secs(30);
        while at < t0 {
            at = p.sampled(at, TEN_MB, limit);
        }
        let mut reads = 0;
        let caught = loop {
            let rss = rss_at(at);
            reads += 1;
            if rss >= limit {
                break rss;
            }
            at = p.sampled(at, rss, limit);
        };
        let over = caught - limit;
        assert!(over <= TEN_MB, "caught {} pages over the limit", over);
        assert!(reads < 40, "{reads} reads on the way to the limit");
    }

    #[test]
    fn a_quiet_window_between_bursts_does_not_blind_the_schedule() {
        let t0 = Instant::now();
        let mut p = pace();
        p.sampled(t0, 0, 10_000);
        // 5000 pages in 100 ms, 5000 pages from the level: there in 100 ms, look in 50
        let at = p.sampled(t0 + 100 * MS, 5000, 10_000);
        assert_eq!(at - (t0 + 100 * MS), 50 * MS);
        // nothing moved since: the recent rate (decayed by 2^-0.05) still counts
        let after_quiet = p.sampled(at, 5000, 10_000);
        let gap = after_quiet - at;
        assert!(gap > 50 * MS && gap < 55 * MS, "{gap:?}");
        // a long stillness: the rate decays away (halving each second), the interval grows to
        // the ceiling within a few seconds
        let still_from = after_quiet;
        let mut at = after_quiet;
        let mut gaps = Vec::new();
        while at - still_from < Duration::from_secs(8) {
            let next = p.sampled(at, 5000, 10_000);
            gaps.push(next - at);
            at = next;
        }
        assert!(gaps.windows(2).all(|w| w[1] >= w[0]), "{gaps:?}");
        assert_eq!(gaps.last(), Some(&Duration::from_secs(1)), "{gaps:?}");
        assert!(gaps.len() < 80, "{} reads in 8 s of stillness", gaps.len());
    }

    #[test]
    fn over_the_level_it_paces_toward_falling_back_under() {
        let t0 = Instant::now();
        let mut p = pace();
        // over a limit of 8000 pages, waiting to fall under 7000 (7/8)
        p.sampled(t0, 9000, 7000);
        let next = p.sampled(t0 + 40 * MS, 8000, 7000);
        // shrinking 1000 pages in 40 ms toward a level 1000 pages away: the floor
        assert_eq!(next - (t0 + 40 * MS), FLOOR);
        // growing away from it, 2000 pages from the level: the recent rate (decayed) still
        // counts, then the doubling allows no more than 40 ms
        let later = p.sampled(next, 9000, 7000);
        assert_eq!(later - next, 40 * MS);
    }

    #[test]
    fn ceiling_below_floor_is_raised() {
        let t0 = Instant::now();
        let mut p = Pace::new(50 * MS, 10 * MS);
        assert_eq!(p.sampled(t0, 1, 100) - t0, 50 * MS);
    }
}
