//! When an app that ended on its own is started again, and how fast: `autorestart`,
//! `stop_exit_codes` and `restart:`.

use std::time::Duration;

/// When an app that exited on its own is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Autorestart {
    /// After every exit.
    #[default]
    Always,
    /// After an exit with a non-zero status or a signal.
    OnFailure,
    /// Never.
    Never,
}

from_words!(Autorestart, "autorestart", "always, on-failure, never", {
    "always" => Always,
    "on-failure" => OnFailure,
    "never" => Never,
});

/// When and how fast to restart after an exit nobody asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct RestartPolicy {
    /// Delay before the first restart after a stable run.
    pub delay: Duration,
    /// Each consecutive quick crash multiplies the delay by this (>= 1).
    pub factor: f64,
    /// Cap of the delay.
    pub max_delay: Duration,
    /// A run at least this long resets the delay to `delay`.
    pub reset_after: Duration,
    /// This many crashes within `crash_loop_window` put the app in `errored`; 0 disables.
    pub crash_loop_max: u32,
    /// Window of the crash-loop count.
    pub crash_loop_window: Duration,
    /// Automatic restarts allowed before `errored`; 0 means unlimited.
    pub max_restarts: u32,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            delay: Duration::from_secs(1),
            factor: 2.0,
            max_delay: Duration::from_secs(30),
            reset_after: Duration::from_secs(30),
            crash_loop_max: 5,
            crash_loop_window: Duration::from_secs(60),
            max_restarts: 0,
        }
    }
}

impl RestartPolicy {
    /// The delay before restart number `attempt` of a streak of quick crashes (1-based):
    /// `delay * factor^(attempt-1)`, capped at `max_delay`.
    #[must_use]
    pub fn delay_for(&self, attempt: u32) -> Duration {
        let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.delay.as_secs_f64() * self.factor.powi(exp);
        if !secs.is_finite() || secs >= self.max_delay.as_secs_f64() {
            self.max_delay
        } else {
            Duration::from_secs_f64(secs)
        }
    }
}
