//! Health checks, watch mode and readiness: their pure bookkeeping.
//!
//! How results add up to a verdict ([`HealthState`]), what an app said over `NOTIFY_SOCKET`
//! ([`NotifyMessage`], [`NotifyState`]) and how a burst of changes becomes one restart
//! ([`Debounce`]). What a check probes and which paths count are the spec's
//! (`spec::HealthSpec`, `spec::WatchSpec`). No I/O and no clock reads: probes run in the runtime
//! (`runtime::probe`), file events come from the runtime's watcher, and every method takes `now`.

use std::time::{Duration, Instant};

use turbo_api::Health;

/// What the health checks of the current process found so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthState {
    /// Consecutive failed checks.
    pub failures: u32,
    /// The last check passed.
    pub passing: Option<bool>,
    /// A check passed at least once since the spawn (the start period is over then).
    pub ever_healthy: bool,
    /// The message of the last failed check (kept after a restart, for `--wait` and describe).
    pub last_error: Option<String>,
}

impl HealthState {
    /// The public verdict, given whether a check is configured.
    #[must_use]
    pub const fn public(&self, configured: bool) -> Health {
        match (configured, self.passing) {
            (false, _) => Health::None,
            (true, None) => Health::Unknown,
            (true, Some(true)) => Health::Healthy,
            (true, Some(false)) => Health::Unhealthy,
        }
    }

    /// Forgets the results of the previous process (the last error stays for messages).
    pub fn reset(&mut self) {
        self.failures = 0;
        self.passing = None;
        self.ever_healthy = false;
    }
}

/// One `sd_notify` datagram of an app, parsed: newline-separated `KEY=VALUE` assignments, of
/// which `READY=1`, `STATUS=` and `WATCHDOG=1` mean something here (others are ignored, as
/// systemd ignores what it does not know).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyMessage {
    /// `READY=1`.
    pub ready: bool,
    /// `STATUS=<text>`, made one printable line of at most [`Self::STATUS_MAX`] characters.
    pub status: Option<String>,
    /// `WATCHDOG=1`.
    pub watchdog: bool,
}

impl NotifyMessage {
    /// Longest status text kept.
    pub const STATUS_MAX: usize = 200;

    /// Parses a datagram (invalid UTF-8 is replaced, not refused).
    #[must_use]
    pub fn parse(datagram: &[u8]) -> Self {
        let text = String::from_utf8_lossy(datagram);
        let mut msg = Self::default();
        for line in text.split('\n') {
            match line.split_once('=') {
                Some(("READY", "1")) => msg.ready = true,
                Some(("WATCHDOG", "1")) => msg.watchdog = true,
                Some(("STATUS", s)) => {
                    msg.status = Some(
                        s.chars()
                            .filter(|c| !c.is_control())
                            .take(Self::STATUS_MAX)
                            .collect(),
                    );
                }
                _ => {}
            }
        }
        msg
    }
}

/// What an app said over `NOTIFY_SOCKET` since its spawn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyState {
    /// `READY=1` came.
    pub ready: bool,
    /// The last `STATUS=`.
    pub status: Option<String>,
    /// The last `WATCHDOG=1`.
    pub last_ping: Option<Instant>,
}

/// Turns a burst of file changes into one restart: the restart comes `delay` after the *last*
/// change of the burst. At most one timer is armed at a time, so a burst of ten thousand events
/// costs one timer, not ten thousand.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Debounce {
    /// The last change not yet acted on.
    last_change: Option<Instant>,
    /// Token of the armed timer, if one is armed; stale timers carry another.
    armed: Option<u64>,
    next_token: u64,
}

/// What a debounce timer firing means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fire {
    /// Quiet for `delay`: act now.
    Now,
    /// Changes came in meanwhile: wait until this instant (timer token in the pair).
    Later(Instant, u64),
    /// A stale timer or nothing pending.
    Nothing,
}

impl Debounce {
    /// A change at `now`; returns `(at, token)` when a timer must be armed.
    pub fn change(&mut self, now: Instant, delay: Duration) -> Option<(Instant, u64)> {
        self.last_change = Some(now);
        if self.armed.is_some() {
            return None;
        }
        Some((now + delay, self.arm()))
    }

    /// The timer with `token` fired at `now`.
    pub fn fire(&mut self, token: u64, now: Instant, delay: Duration) -> Fire {
        if self.armed != Some(token) {
            return Fire::Nothing;
        }
        self.armed = None;
        let Some(last) = self.last_change else {
            return Fire::Nothing;
        };
        let due = last + delay;
        if now >= due {
            self.last_change = None;
            Fire::Now
        } else {
            Fire::Later(due, self.arm())
        }
    }

    /// Whether changes wait for their restart.
    #[must_use]
    pub const fn pending(&self) -> bool {
        self.last_change.is_some()
    }

    fn arm(&mut self) -> u64 {
        self.next_token += 1;
        self.armed = Some(self.next_token);
        self.next_token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    #[test]
    fn a_burst_gives_one_restart_delay_after_its_last_change() {
        let t0 = Instant::now();
        let delay = ms(500);
        let mut d = Debounce::default();
        let (at, token) = d.change(t0, delay).expect("first change arms");
        assert_eq!(at, t0 + delay);
        // the burst goes on: no more timers
        for i in 1..=1000 {
            assert_eq!(d.change(t0 + ms(i / 10), delay), None);
        }
        let last = t0 + ms(100);
        // the first timer fires: changes came after it was armed, wait for the quiet time
        let Fire::Later(due, token2) = d.fire(token, at, delay) else {
            panic!("changes after arming must postpone");
        };
        assert_eq!(due, last + delay);
        // an old timer is ignored
        assert_eq!(d.fire(token, due, delay), Fire::Nothing);
        assert_eq!(d.fire(token2, due, delay), Fire::Now);
        assert!(!d.pending());
        // quiet: a late duplicate does nothing
        assert_eq!(d.fire(token2, due + delay, delay), Fire::Nothing);
        // the next burst arms again
        assert!(d.change(due + ms(10), delay).is_some());
    }

    #[test]
    fn notify_datagrams() {
        let m = NotifyMessage::parse(b"READY=1\nSTATUS=listening on :3000\nMAINPID=4");
        assert!(m.ready && !m.watchdog);
        assert_eq!(m.status.as_deref(), Some("listening on :3000"));
        let m = NotifyMessage::parse(b"WATCHDOG=1");
        assert!(m.watchdog && !m.ready && m.status.is_none());
        let m = NotifyMessage::parse(b"READY=0\nSTATUS=a\x1b[31mb\xff");
        assert!(!m.ready);
        assert_eq!(m.status.as_deref(), Some("a[31mb\u{fffd}"));
        let long = format!("STATUS={}", "x".repeat(1000));
        assert_eq!(
            NotifyMessage::parse(long.as_bytes()).status.unwrap().len(),
            200
        );
    }

    #[test]
    fn health_verdicts() {
        let mut h = HealthState::default();
        assert_eq!(h.public(false), Health::None);
        assert_eq!(h.public(true), Health::Unknown);
        h.passing = Some(false);
        assert_eq!(h.public(true), Health::Unhealthy);
        h.passing = Some(true);
        assert_eq!(h.public(true), Health::Healthy);
        h.reset();
        assert_eq!(h.public(true), Health::Unknown);
    }
}
