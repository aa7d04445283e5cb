//! Health checks, watch mode and readiness: their pure bookkeeping.
//!
//! How results add up to a verdict ([`HealthState`]), what an app said over `NOTIFY_SOCKET`
//! ([`NotifyMessage`], [`NotifyState`]) and how a burst of changes becomes one restart
//! ([`Debounce`]). What a check probes and which paths count are the spec's
//! (`spec::HealthSpec`, `spec::WatchSpec`). No I/O and no clock reads: probes run in the runtime
//! (`runtime::probe`), file events come from the runtime's watcher, and every method takes `now`.

use std::time::{Duration, Instant};

use turbo_api::{ExitReason, Health};

use super::{
    Action, AfterStop, App, AppId, Desired, Notification, State, Supervisor, WakeKind,
    process::begin_stopping, waits::human_duration,
};
use crate::spec::ReadyMode;

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
        Some((super::after(now, delay), self.arm()))
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
        let due = super::after(last, delay);
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

impl Supervisor {
    pub(super) fn wake(
        &mut self,
        id: AppId,
        kind: WakeKind,
        token: u64,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(app) = self.apps.get_mut(&id) else {
            return;
        };
        match kind {
            WakeKind::Health => {
                if app.generation != token || !matches!(app.state, State::Online { .. }) {
                    return;
                }
                if let Some(check) = &app.spec.health {
                    out.push(Action::Probe {
                        app: id,
                        generation: token,
                        check: Box::new(check.clone()),
                    });
                }
            }
            WakeKind::ReadyTimeout | WakeKind::Watchdog => {
                let State::Online { pid, since } = app.state else {
                    return;
                };
                if app.generation != token {
                    return;
                }
                let failure = if kind == WakeKind::ReadyTimeout {
                    (!app.notify.ready).then(|| {
                        format!(
                            "no READY=1 within {} of the start (ready_timeout)",
                            human_duration(app.spec.readiness.timeout)
                        )
                    })
                } else {
                    let period = app.spec.readiness.watchdog().unwrap_or_default();
                    let due = app.notify.last_ping.unwrap_or(since) + period;
                    if now < due {
                        out.push(Action::Wake {
                            app: id,
                            kind,
                            token,
                            at: due,
                        });
                        return;
                    }
                    Some(format!(
                        "watchdog timeout: no WATCHDOG=1 for {}",
                        human_duration(period)
                    ))
                };
                if let Some(failure) = failure {
                    // hung, or never ready: restart it, recorded like a failing health check
                    app.health.last_error = Some(failure);
                    restart_unhealthy(app, pid, since, now, out);
                }
            }
            WakeKind::Watch => {
                let Some(delay) = app.spec.watch.as_ref().map(|w| w.delay) else {
                    return;
                };
                match app.debounce.fire(token, now, delay) {
                    Fire::Now => self.restart_for_watch(id, now, out),
                    Fire::Later(at, token) => out.push(Action::Wake {
                        app: id,
                        kind: WakeKind::Watch,
                        token,
                        at,
                    }),
                    Fire::Nothing => {}
                }
            }
            // handled before the dispatch (`Supervisor::handle` -> `schedule.rs`)
            WakeKind::Schedule => {}
        }
    }

    pub(super) fn probe_result(
        &mut self,
        id: AppId,
        generation: u64,
        result: Result<(), String>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(app) = self.apps.get_mut(&id) else {
            return;
        };
        let (State::Online { pid, since }, Some(check)) = (&app.state, &app.spec.health) else {
            return;
        };
        if app.generation != generation {
            return; // a probe of an earlier process
        }
        let (pid, since, check) = (*pid, *since, check.clone());
        let was = app.health.passing;
        let next = match result {
            Ok(()) => {
                app.health.failures = 0;
                app.health.passing = Some(true);
                app.health.ever_healthy = true;
                super::after(now, check.interval)
            }
            Err(e) if !app.health.ever_healthy && now < since + check.start_period => {
                // still starting: not unhealthy, only not ready yet (`--wait` shows the error)
                app.health.last_error = Some(e);
                super::after(now, check.retry_delay)
            }
            Err(e) => {
                app.health.failures += 1;
                app.health.passing = Some(false);
                app.health.last_error = Some(e);
                super::after(now, check.retry_delay)
            }
        };
        if was != app.health.passing {
            out.push(Action::Notify(Notification::HealthChanged(id)));
        }
        if app.health.failures >= check.retries.max(1) {
            // stays unhealthy: restart it gracefully, recorded as a crash with reason health
            restart_unhealthy(app, pid, since, now, out);
            return;
        }
        out.push(Action::Wake {
            app: id,
            kind: WakeKind::Health,
            token: generation,
            at: next,
        });
        announce_ready(app, out);
    }

    pub(super) fn notified(
        &mut self,
        id: AppId,
        message: NotifyMessage,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(app) = self.apps.get_mut(&id) else {
            return;
        };
        if !matches!(app.state, State::Online { .. }) {
            return; // a stopping app's last words change nothing
        }
        if message.watchdog {
            app.notify.last_ping = Some(now);
        }
        if let Some(status) = message.status
            && app.notify.status.as_ref() != Some(&status)
        {
            app.notify.status = Some(status);
            out.push(Action::Notify(Notification::StatusText(id)));
        }
        if message.ready {
            app.notify.ready = true;
            announce_ready(app, out);
        }
    }

    pub(super) fn files_changed(&mut self, id: AppId, now: Instant, out: &mut Vec<Action>) {
        let Some(app) = self.apps.get_mut(&id) else {
            return;
        };
        let Some(delay) = app.spec.watch.as_ref().map(|w| w.delay) else {
            return;
        };
        if app.desired != Desired::Running {
            return; // stopped by hand: edits do not start it
        }
        if let Some((at, token)) = app.debounce.change(now, delay) {
            out.push(Action::Wake {
                app: id,
                kind: WakeKind::Watch,
                token,
                at,
            });
        }
    }

    /// The restart a quiet burst of file changes asks for.
    pub(super) fn restart_for_watch(&mut self, id: AppId, now: Instant, out: &mut Vec<Action>) {
        let app = self.apps.get_mut(&id).expect("caller checked");
        if app.desired != Desired::Running {
            return;
        }
        match app.state {
            State::Online { pid, since } => {
                // a code change is a fresh start: the crash history was about the old code
                app.clear_history();
                begin_stopping(
                    app,
                    pid,
                    since,
                    false,
                    ExitReason::Watch,
                    AfterStop::Start,
                    now,
                    out,
                );
            }
            // crashed (waiting or given up): the fix may be in, try it now
            State::Backoff { .. } | State::Errored { .. } if app.lingering.is_none() => {
                app.clear_history();
                app.restarts += 1;
                self.begin_start(id, out);
                out.push(Action::Notify(Notification::Persist));
            }
            // already on its way, or its old group is still being killed (the backoff timer
            // starts it once that is done)
            _ => {}
        }
    }
}

/// Restarts an app whose health check kept failing, or that hung (watchdog) or never said it was
/// ready: gracefully, and recorded as a crash with reason `health`.
pub(super) fn restart_unhealthy(
    app: &mut App,
    pid: u32,
    since: Instant,
    now: Instant,
    out: &mut Vec<Action>,
) {
    begin_stopping(
        app,
        pid,
        since,
        false,
        ExitReason::Health,
        AfterStop::Start,
        now,
        out,
    );
}

/// Arms the timers of a process that just came online: its first health check, its watchdog
/// and, for a fresh spawn with `ready: notify`, its `ready_timeout`.
pub(super) fn arm_checks(app: &mut App, now: Instant, spawned: bool, out: &mut Vec<Action>) {
    let (id, token, readiness) = (app.id, app.generation, &app.spec.readiness);
    if spawned && readiness.mode == ReadyMode::Notify {
        out.push(Action::Wake {
            app: id,
            kind: WakeKind::ReadyTimeout,
            token,
            at: super::after(now, readiness.timeout),
        });
    }
    if let Some(period) = readiness.watchdog() {
        app.notify.last_ping = Some(now);
        out.push(Action::Wake {
            app: id,
            kind: WakeKind::Watchdog,
            token,
            at: super::after(now, period),
        });
    }
    if let Some(check) = &app.spec.health {
        out.push(Action::Wake {
            app: id,
            kind: WakeKind::Health,
            token,
            at: super::after(now, check.first_delay()),
        });
    }
}

/// Gives [`Notification::Ready`] once per process, when the app has become ready.
pub(super) fn announce_ready(app: &mut App, out: &mut Vec<Action>) {
    if app.is_ready() && !app.announced_ready {
        app.announced_ready = true;
        out.push(Action::Notify(Notification::Ready(app.id)));
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
