//! The rate limit of notifications (`on_crash`, `on_state`): whether one more may go now.
//!
//! Pure, like the rest of the core: it is told `now` and keeps the times of the notifications
//! it let through. The runtime asks it before delivering and delivers off the loop.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// A sliding window: at most `limit` notifications within any `window`.
#[derive(Clone, Debug, Default)]
pub struct RateLimiter {
    sent: VecDeque<Instant>,
}

impl RateLimiter {
    /// Whether a notification may go at `now`; if so it is counted.
    pub fn allow(&mut self, limit: u32, window: Duration, now: Instant) -> bool {
        while self
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.sent.pop_front();
        }
        if self.sent.len() >= limit as usize {
            return false;
        }
        self.sent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_loop_is_cut_to_the_limit_and_the_window_slides() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut r = RateLimiter::default();
        let window = s(60);
        // a crash every second: the first 3 go, the rest of the minute is dropped
        let sent: Vec<bool> = (0..10).map(|i| r.allow(3, window, t0 + s(i))).collect();
        assert_eq!(
            sent,
            [
                true, true, true, false, false, false, false, false, false, false
            ]
        );
        // one minute after the first, one slot is free again, then the next two
        assert!(!r.allow(3, window, t0 + s(59)));
        assert!(r.allow(3, window, t0 + s(60)));
        assert!(!r.allow(3, window, t0 + s(60)));
        assert!(r.allow(3, window, t0 + s(61)));
        assert!(r.allow(3, window, t0 + s(62)));
        assert!(!r.allow(3, window, t0 + s(62)));
        // quiet for a window: the full limit again
        let later = t0 + s(200);
        assert_eq!(
            (0..4)
                .map(|_| r.allow(3, window, later))
                .collect::<Vec<_>>(),
            [true, true, true, false]
        );
    }
}
