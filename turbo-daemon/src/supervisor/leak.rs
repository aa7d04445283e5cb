//! Leak detection: from an app's memory samples over time, whether its memory grows in a
//! sustained way, and how fast.
//!
//! Pure like the rest of the supervisor: [`LeakDetector::record`] takes the sample *and* its
//! time, reads no clock and does no I/O, so it is unit-tested on synthetic series. It only
//! judges; it decides nothing about the app (a suspected leak is reported, never acted on).
//!
//! The method, and why:
//!
//! * **Theil–Sen slope** (the median of the slopes between every pair of samples) over the
//!   samples of the last `window`: the reported growth rate. It ignores up to ~29% of outliers,
//!   so the odd garbage-collector spike or dip neither raises nor hides a trend, where a
//!   least-squares line would follow them.
//! * **The levels rose**, not just the slopes: the median of the newest quarter of the observed
//!   span must exceed the median of the oldest quarter by [`LeakPolicy::min_relative_growth`]
//!   of the overall median, and by three times the scatter of the samples around the trend line
//!   (median absolute deviation). A sawtooth (a heap that a collector empties every few minutes)
//!   has steep pairwise slopes but quarters at the same level, and its scatter is large.
//! * **Sustained**: the newest quarter is above the one before it (by at least half of a
//!   quarter's share of the growth) and its own slope is at least half the overall slope. A
//!   process that grows while warming up and then plateaus has a positive slope over the whole
//!   window for a while, but a flat newest quarter, so it is not flagged (and a flag clears once
//!   the plateau fills the newest quarter).
//! * **Enough evidence**: at least a quarter of the window observed (`window / 4`) and
//!   [`MIN_POINTS`] samples, else the verdict is "unknown" (no rate at all).
//! * **Big enough to matter**: at least [`LeakPolicy::min_bytes_per_hour`], so a 20 MB process
//!   gaining a few pages is not a leak.
//!
//! Memory and time stay bounded: the newest kept sample is replaced by each new one until it
//! lies `window / (MAX_POINTS - 2)` after the one before it, so at most [`MAX_POINTS`] are
//! kept whatever the sampling rate, and the judgement (at most ~7000 slope pairs, some tens of
//! microseconds) runs only when a sample is kept, not on every reading.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// At most this many samples are kept per app (see the module docs).
pub const MAX_POINTS: usize = 120;
/// Fewer samples than this give no verdict.
pub const MIN_POINTS: usize = 12;
/// Fewer samples than this in the newest quarter give no "suspected".
const MIN_RECENT_POINTS: usize = 4;

/// How the detector judges; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeakPolicy {
    /// Samples older than this are forgotten; a quarter of it must be observed for a verdict.
    pub window: Duration,
    /// Growth over the observed span, relative to the median level, below which growth is not
    /// a leak (0.1 = 10%).
    pub min_relative_growth: f64,
    /// Growth rate below which growth is not a leak.
    pub min_bytes_per_hour: f64,
}

impl Default for LeakPolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(3600),
            min_relative_growth: 0.1,
            min_bytes_per_hour: 1024.0 * 1024.0,
        }
    }
}

/// What the detector concluded from the samples so far.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeakVerdict {
    /// The robust growth rate over the window, bytes per hour (negative when shrinking); `None`
    /// until enough has been observed.
    pub bytes_per_hour: Option<f64>,
    /// Sustained growth beyond the policy's thresholds.
    pub suspected: bool,
}

impl LeakVerdict {
    /// Nothing known yet.
    pub const UNKNOWN: Self = Self {
        bytes_per_hour: None,
        suspected: false,
    };
}

/// The memory samples of one process (tree) and the verdict on them.
#[derive(Clone, Debug)]
pub struct LeakDetector {
    policy: LeakPolicy,
    /// `(when, bytes)`, oldest first.
    points: VecDeque<(Instant, u64)>,
    verdict: LeakVerdict,
}

impl LeakDetector {
    /// A detector without samples.
    #[must_use]
    pub const fn new(policy: LeakPolicy) -> Self {
        Self {
            policy,
            points: VecDeque::new(),
            verdict: LeakVerdict::UNKNOWN,
        }
    }

    /// Adds a sample of `bytes` taken `at` (not earlier than the previous one) and judges again.
    pub fn record(&mut self, at: Instant, bytes: u64) {
        if self.points.back().is_some_and(|&(t, _)| at < t) {
            return; // out of order: a late reading adds nothing a newer one did not say
        }
        // spacing that keeps at most MAX_POINTS in a window (the first and the provisional
        // newest one included)
        let gap = self.policy.window / u32::try_from(MAX_POINTS - 2).unwrap_or(u32::MAX);
        let n = self.points.len();
        // the newest kept sample stays provisional (each new sample replaces it) until it lies
        // `gap` after the one before it; replacing it changes the series too little to judge
        // again (that waits for the next kept sample, at most `gap` later)
        if n >= 2
            && self.points[n - 1]
                .0
                .saturating_duration_since(self.points[n - 2].0)
                < gap
        {
            self.points[n - 1] = (at, bytes);
            return;
        }
        self.points.push_back((at, bytes));
        while self
            .points
            .front()
            .is_some_and(|&(t, _)| at.saturating_duration_since(t) > self.policy.window)
        {
            self.points.pop_front();
        }
        self.verdict = self.judge();
    }

    /// Forgets every sample (a new process: its memory says nothing about the old one's).
    pub fn reset(&mut self) {
        self.points.clear();
        self.verdict = LeakVerdict::UNKNOWN;
    }

    /// The verdict after the last sample.
    #[must_use]
    pub const fn verdict(&self) -> LeakVerdict {
        self.verdict
    }

    /// Samples kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether no sample is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    fn judge(&self) -> LeakVerdict {
        let (Some(&(first, _)), Some(&(last, _))) = (self.points.front(), self.points.back())
        else {
            return LeakVerdict::UNKNOWN;
        };
        let span = last.saturating_duration_since(first);
        if self.points.len() < MIN_POINTS || span < self.policy.window / 4 {
            return LeakVerdict::UNKNOWN;
        }
        let series: Vec<(f64, f64)> = self
            .points
            .iter()
            .map(|&(t, b)| (t.saturating_duration_since(first).as_secs_f64(), b as f64))
            .collect();
        let Some(slope) = theil_sen(&series) else {
            return LeakVerdict::UNKNOWN;
        };
        let bytes_per_hour = slope * 3600.0;
        let quarter = span.as_secs_f64() / 4.0;
        let segment = |k: f64| -> Vec<(f64, f64)> {
            series
                .iter()
                .copied()
                .filter(|&(x, _)| x >= k * quarter && (x < (k + 1.0) * quarter || k >= 3.0))
                .collect()
        };
        let level_of = |seg: &[(f64, f64)]| median(seg.iter().map(|&(_, y)| y).collect());
        let (oldest, previous, newest) = (segment(0.0), segment(2.0), segment(3.0));
        let level = level_of(&series).unwrap_or(0.0);
        // how far samples scatter around the trend line (median absolute deviation of the
        // residuals): a sawtooth or noisy app must grow well past its own scatter to count
        let intercept = median(series.iter().map(|&(x, y)| y - slope * x).collect()).unwrap_or(0.0);
        let residuals: Vec<f64> = series
            .iter()
            .map(|&(x, y)| y - slope * x - intercept)
            .collect();
        let centre = median(residuals.clone()).unwrap_or(0.0);
        let scatter = median(residuals.iter().map(|r| (r - centre).abs()).collect()).unwrap_or(0.0);
        let suspected = match (
            level_of(&oldest),
            level_of(&previous),
            level_of(&newest),
            (newest.len() >= MIN_RECENT_POINTS)
                .then(|| theil_sen(&newest))
                .flatten(),
        ) {
            (Some(m1), Some(m3), Some(m4), Some(recent_slope)) => {
                let grown = m4 - m1;
                slope > 0.0
                    && bytes_per_hour >= self.policy.min_bytes_per_hour
                    // the *levels* rose, not just the pairwise slopes (a sawtooth has slopes)
                    && grown >= self.policy.min_relative_growth * level
                    && grown >= 3.0 * scatter
                    // and kept rising: the newest quarter is above the one before it by at
                    // least half a quarter's share of the growth, and still climbs
                    && m4 - m3 >= 0.5 * grown / 3.0
                    && recent_slope >= 0.5 * slope
            }
            _ => false,
        };
        LeakVerdict {
            bytes_per_hour: Some(bytes_per_hour),
            suspected,
        }
    }
}

/// The Theil–Sen estimator: the median of the slopes between every pair of points with
/// different `x`. `None` with fewer than two distinct `x`.
#[must_use]
pub fn theil_sen(points: &[(f64, f64)]) -> Option<f64> {
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for (i, &(x1, y1)) in points.iter().enumerate() {
        for &(x2, y2) in &points[i + 1..] {
            let dx = x2 - x1;
            if dx.abs() > f64::EPSILON {
                slopes.push((y2 - y1) / dx);
            }
        }
    }
    median(slopes)
}

/// The median (mean of the two middle values for an even count); `None` when empty.
fn median(mut values: Vec<f64>) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (_, &mut upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    if n % 2 == 1 {
        return Some(upper);
    }
    // the largest of the lower half is the other middle value
    let lower = values[..mid]
        .iter()
        .copied()
        .max_by(f64::total_cmp)
        .unwrap_or(upper);
    Some(f64::midpoint(lower, upper))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1024.0 * 1024.0;

    /// A deterministic noise source in [-1, 1] (an LCG: no dependency, same series every run).
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) as f64 / f64::from(u32::MAX >> 1)) - 1.0
        }
    }

    /// Feeds `f(seconds)` every `every` for `total`, returning every verdict along the way
    /// (with the time it was given at).
    fn run(
        policy: LeakPolicy,
        every: Duration,
        total: Duration,
        mut f: impl FnMut(f64) -> f64,
    ) -> (LeakDetector, Vec<(Duration, LeakVerdict)>) {
        let t0 = Instant::now();
        let mut d = LeakDetector::new(policy);
        let mut verdicts = Vec::new();
        let mut t = Duration::ZERO;
        while t <= total {
            let bytes = f(t.as_secs_f64()).max(0.0) as u64;
            d.record(t0 + t, bytes);
            verdicts.push((t, d.verdict()));
            t += every;
        }
        (d, verdicts)
    }

    #[test]
    fn steady_growth_is_flagged_with_its_rate() {
        // 100 MB growing 20 MB/h, sampled every 5 s for an hour, ±3 MB of noise
        let mut noise = Noise(7);
        let (d, verdicts) = run(
            LeakPolicy::default(),
            Duration::from_secs(5),
            Duration::from_secs(3600),
            |s| 100.0 * MB + 20.0 * MB * s / 3600.0 + 3.0 * MB * noise.next(),
        );
        let v = d.verdict();
        assert!(v.suspected, "{v:?}");
        let rate = v.bytes_per_hour.unwrap() / MB;
        assert!((16.0..24.0).contains(&rate), "rate {rate} MB/h");
        // no verdict before a quarter of the window was observed
        assert!(
            verdicts
                .iter()
                .filter(|(t, _)| *t < Duration::from_secs(900))
                .all(|(_, v)| *v == LeakVerdict::UNKNOWN)
        );
        assert!(d.len() <= MAX_POINTS, "bounded: {}", d.len());
    }

    #[test]
    fn outliers_do_not_hide_a_leak() {
        // every 7th sample a GC spike of +60 MB or a dip of -40 MB
        let mut i = 0u32;
        let (d, _) = run(
            LeakPolicy::default(),
            Duration::from_secs(30),
            Duration::from_secs(3600),
            |s| {
                i += 1;
                let base = 200.0 * MB + 30.0 * MB * s / 3600.0;
                match i % 7 {
                    0 => base + 60.0 * MB,
                    3 => base - 40.0 * MB,
                    _ => base,
                }
            },
        );
        let v = d.verdict();
        assert!(v.suspected, "{v:?}");
        let rate = v.bytes_per_hour.unwrap() / MB;
        assert!((25.0..35.0).contains(&rate), "rate {rate} MB/h");
    }

    #[test]
    fn grow_then_plateau_is_never_flagged() {
        // warm-up: +150 MB over the first 10 minutes, then flat for 50 minutes, with noise
        let mut noise = Noise(11);
        let (d, verdicts) = run(
            LeakPolicy::default(),
            Duration::from_secs(5),
            Duration::from_secs(3600),
            |s| 50.0 * MB + 150.0 * MB * (s / 600.0).min(1.0) + 2.0 * MB * noise.next(),
        );
        assert!(
            verdicts.iter().all(|(_, v)| !v.suspected),
            "flagged at {:?}",
            verdicts.iter().find(|(_, v)| v.suspected)
        );
        assert!(d.verdict().bytes_per_hour.is_some());
    }

    #[test]
    fn a_long_warm_up_is_flagged_while_it_grows_and_cleared_once_it_plateaus() {
        // +100 MB over 25 minutes, then flat: it *is* sustained growth for a while
        let (_, verdicts) = run(
            LeakPolicy::default(),
            Duration::from_secs(10),
            Duration::from_secs(3600),
            |s| 100.0 * MB + 100.0 * MB * (s / 1500.0).min(1.0),
        );
        let at = |min: u64| {
            verdicts
                .iter()
                .find(|(t, _)| *t >= Duration::from_secs(min * 60))
                .unwrap()
                .1
        };
        assert!(at(20).suspected, "growing for 20 min: {:?}", at(20));
        assert!(!at(40).suspected, "flat for 15 min: {:?}", at(40));
        assert!(!at(60).suspected, "flat for 35 min: {:?}", at(60));
    }

    #[test]
    fn noise_and_sawtooth_are_not_leaks() {
        let mut noise = Noise(3);
        let (d, verdicts) = run(
            LeakPolicy::default(),
            Duration::from_secs(5),
            Duration::from_secs(3600),
            |_| 300.0 * MB + 20.0 * MB * noise.next(),
        );
        assert!(verdicts.iter().all(|(_, v)| !v.suspected));
        let rate = d.verdict().bytes_per_hour.unwrap() / MB;
        assert!(rate.abs() < 10.0, "noise rate {rate} MB/h");

        // a garbage-collected heap: climbs 80 MB over 4 minutes, drops back, again and again
        let (_, verdicts) = run(
            LeakPolicy::default(),
            Duration::from_secs(5),
            Duration::from_secs(3600),
            |s| 100.0 * MB + 80.0 * MB * ((s % 240.0) / 240.0),
        );
        assert!(
            verdicts.iter().all(|(_, v)| !v.suspected),
            "{:?}",
            verdicts.iter().find(|(_, v)| v.suspected)
        );
    }

    #[test]
    fn small_or_shrinking_growth_is_not_a_leak() {
        // 2% over the hour: below the relative threshold
        let (d, _) = run(
            LeakPolicy::default(),
            Duration::from_secs(5),
            Duration::from_secs(3600),
            |s| 500.0 * MB + 10.0 * MB * s / 3600.0,
        );
        assert!(!d.verdict().suspected, "{:?}", d.verdict());
        // a tiny process doubling, but by 200 KB an hour: below the absolute threshold
        let (d, _) = run(
            LeakPolicy::default(),
            Duration::from_secs(5),
            Duration::from_secs(3600),
            |s| 200_000.0 + 200_000.0 * s / 3600.0,
        );
        assert!(!d.verdict().suspected, "{:?}", d.verdict());
        // shrinking: a negative rate, not a leak
        let (d, _) = run(
            LeakPolicy::default(),
            Duration::from_secs(5),
            Duration::from_secs(3600),
            |s| 500.0 * MB - 100.0 * MB * s / 3600.0,
        );
        let v = d.verdict();
        assert!(!v.suspected && v.bytes_per_hour.unwrap() < 0.0, "{v:?}");
    }

    #[test]
    fn short_windows_old_samples_and_resets() {
        // a 20 s window (as the e2e test uses): 2 MB/s flagged within seconds
        let policy = LeakPolicy {
            window: Duration::from_secs(20),
            ..LeakPolicy::default()
        };
        let (mut d, _) = run(
            policy,
            Duration::from_millis(200),
            Duration::from_secs(8),
            |s| 10.0 * MB + 2.0 * MB * s,
        );
        assert!(d.verdict().suspected, "{:?}", d.verdict());
        let rate = d.verdict().bytes_per_hour.unwrap() / MB;
        assert!((rate - 7200.0).abs() < 1.0, "{rate}");
        d.reset();
        assert!(d.is_empty());
        assert_eq!(d.verdict(), LeakVerdict::UNKNOWN);

        // samples older than the window are forgotten: a leak that stopped long ago is no leak
        let t0 = Instant::now();
        let mut d = LeakDetector::new(policy);
        for i in 0..100u64 {
            let bytes = if i < 50 { i * 2_000_000 } else { 100_000_000 };
            d.record(t0 + Duration::from_millis(i * 500), bytes);
        }
        assert!(!d.verdict().suspected, "{:?}", d.verdict());
        assert!(d.len() <= MAX_POINTS);
        // out-of-order samples are ignored
        let before = d.len();
        d.record(t0, 1);
        assert_eq!(d.len(), before);
    }

    #[test]
    fn estimator_basics() {
        assert_eq!(theil_sen(&[]), None);
        assert_eq!(theil_sen(&[(1.0, 1.0), (1.0, 5.0)]), None);
        assert_eq!(theil_sen(&[(0.0, 0.0), (1.0, 2.0), (2.0, 4.0)]), Some(2.0));
        // one wild point among five does not move it
        let s = theil_sen(&[(0.0, 0.0), (1.0, 1.0), (2.0, 100.0), (3.0, 3.0), (4.0, 4.0)]);
        assert_eq!(s, Some(1.0));
        assert_eq!(median(vec![3.0, 1.0, 2.0, 4.0]), Some(2.5));
        assert_eq!(median(vec![5.0]), Some(5.0));
    }
}
