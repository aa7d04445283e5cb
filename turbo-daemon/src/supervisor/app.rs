//! One supervised app: its spec (what to run, `crate::spec`), its state and its history.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use turbo_api::{AppState, ExitReason, Health};

use super::{
    AppId,
    checks::{Debounce, HealthState, NotifyState},
    deps::JobState,
};
use crate::{
    events::{SourceKind, WaitStatus},
    spec::{AppKind, AppSpec, Autorestart, ReadyMode},
};

/// Lifecycle state, carrying the data that only makes sense in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Spawn requested, not yet reported.
    Starting,
    /// Running as `pid` since `since`.
    Online {
        /// Main process (and process group) id.
        pid: u32,
        /// When it was spawned.
        since: Instant,
    },
    /// Stop signal sent, waiting for `pid` to exit.
    Stopping {
        /// Main process id.
        pid: u32,
        /// When it was spawned.
        since: Instant,
        /// When SIGKILL follows.
        deadline: Instant,
        /// Whether SIGKILL was sent.
        killed: bool,
        /// Whether the main process has exited (the group may still have members).
        exited: bool,
        /// Why it is being stopped: `manual` on request, `memory_limit` when over `max_memory`.
        cause: ExitReason,
        /// What happens once it is gone.
        then: AfterStop,
    },
    /// Not running.
    Stopped,
    /// Waiting to restart at `until`.
    Backoff {
        /// Next attempt.
        until: Instant,
    },
    /// Will not restart until asked.
    Errored {
        /// Why.
        reason: String,
    },
    /// A start waits for the app's dependencies (`depends_on`) until `deadline`.
    Waiting {
        /// When the wait fails (`depends_timeout`).
        deadline: Instant,
    },
    /// A one-shot job exited 0.
    Completed,
    /// A one-shot job failed, its retries spent.
    Failed {
        /// Its exit and attempts.
        reason: String,
    },
}

impl State {
    /// The public name of the state.
    #[must_use]
    pub const fn public(&self) -> AppState {
        match self {
            Self::Starting => AppState::Starting,
            Self::Online { .. } => AppState::Online,
            Self::Stopping { .. } => AppState::Stopping,
            Self::Stopped => AppState::Stopped,
            Self::Backoff { .. } => AppState::Backoff,
            Self::Errored { .. } => AppState::Errored,
            Self::Waiting { .. } => AppState::Waiting,
            Self::Completed => AppState::Completed,
            Self::Failed { .. } => AppState::Failed,
        }
    }

    /// Settled states end a command's wait: nothing is in flight.
    #[must_use]
    pub const fn is_settled(&self) -> bool {
        !matches!(self, Self::Starting | Self::Stopping { .. })
    }
}

/// How and when a process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// Wait status.
    pub status: WaitStatus,
    /// Classification.
    pub reason: ExitReason,
    /// Which source reported it first.
    pub source: SourceKind,
    /// When (monotonic).
    pub at: Instant,
    /// How long the process had run.
    pub uptime: Duration,
    /// What made the daemon end it, when it did (the failing health check's message).
    pub detail: Option<String>,
}

/// Whether an app should run; what a restarted daemon restores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    /// Keep it running.
    #[default]
    Running,
    /// Leave it stopped.
    Stopped,
}

impl Desired {
    /// The spelling in `turbo describe` and the state file.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
        }
    }
}

/// An app in the table.
#[derive(Clone, Debug)]
pub struct App {
    /// Id.
    pub id: AppId,
    /// Instance number, `0..spec.instances` (`TURBO_INSTANCE`). During a reload the replacement
    /// and the instance it replaces briefly share it.
    pub instance: u32,
    /// Spec.
    pub spec: AppSpec,
    /// State.
    pub state: State,
    /// Times it was started again after its first start (automatic and requested).
    pub restarts: u32,
    /// The last exit.
    pub last_exit: Option<Exit>,
    /// Bumped on every transition that invalidates armed timers.
    pub generation: u64,
    /// Whether it should run.
    pub desired: Desired,
    /// A process group whose leader exited and which may still have members.
    pub lingering: Option<u32>,
    /// Automatic restarts since the last start by hand (for `max_restarts`).
    pub auto_restarts: u32,
    /// Length of the current streak of quick crashes (drives the backoff).
    pub streak: u32,
    /// Times of recent crashes, for crash-loop detection (only those inside the window).
    pub recent_crashes: VecDeque<Instant>,
    /// The main process the kernel's OOM killer chose, until its exit is classified.
    pub oom_victim: Option<u32>,
    /// Whether the memory warning was given for the current crossing (cleared when memory falls
    /// back under the warning level).
    pub memory_warned: bool,
    // ---- watch mode, health checks, readiness (issue #6 items 1-3) ----
    /// Health-check results of the current process.
    pub health: HealthState,
    /// File changes waiting for their restart (watch mode).
    pub debounce: Debounce,
    /// Whether [`Notification::Ready`](super::Notification::Ready) was given for the current
    /// process.
    pub announced_ready: bool,
    /// What the current process said over `NOTIFY_SOCKET`.
    pub notify: NotifyState,
    /// Dependencies waited for and the schedule (`deps.rs`, `schedule.rs`).
    pub jobs: JobState,
}

impl App {
    pub(super) fn new(id: AppId, spec: AppSpec) -> Self {
        Self {
            id,
            instance: 0,
            spec,
            state: State::Stopped,
            restarts: 0,
            last_exit: None,
            generation: 0,
            desired: Desired::Running,
            lingering: None,
            auto_restarts: 0,
            streak: 0,
            recent_crashes: VecDeque::new(),
            oom_victim: None,
            memory_warned: false,
            health: HealthState::default(),
            debounce: Debounce::default(),
            announced_ready: false,
            notify: NotifyState::default(),
            jobs: JobState::default(),
        }
    }

    /// Whether the app can take work: online and, with `ready: notify`, `READY=1` received
    /// since its spawn and, with a health check, healthy at least once since its spawn.
    /// `--wait` and rolling reloads wait for this.
    #[must_use]
    pub const fn is_ready(&self) -> bool {
        matches!(self.state, State::Online { .. })
            && (self.spec.health.is_none() || self.health.ever_healthy)
            && (matches!(self.spec.readiness.mode, ReadyMode::Spawn) || self.notify.ready)
    }

    /// The health to show: the checks' verdict while a process runs (online); `unknown` for an
    /// app with a check but no running process (a stopped instance is not `healthy` because its
    /// last process was, issue 15); `none` without a check.
    #[must_use]
    pub const fn public_health(&self) -> Health {
        let configured = self.spec.health.is_some();
        if matches!(self.state, State::Online { .. }) || !configured {
            self.health.public(configured)
        } else {
            Health::Unknown
        }
    }

    /// Forgets the crash streak, the crash-loop window and the automatic restart count: what a
    /// start or restart by hand, or `turbo reset`, means.
    pub fn clear_history(&mut self) {
        self.streak = 0;
        self.auto_restarts = 0;
        self.recent_crashes.clear();
    }

    /// The state after a crash (an exit nobody asked for) at `now` after `uptime` of running:
    /// `stopped` when policy says not to restart, `errored` on a crash loop or too many restarts,
    /// else `backoff` until the next attempt. Updates the streak and the crash window.
    pub fn after_crash(&mut self, status: WaitStatus, uptime: Duration, now: Instant) -> State {
        if self.spec.lifecycle.kind == AppKind::Oneshot {
            return self.after_job(status, now);
        }
        let policy = &self.spec.restart;
        let code = status.code();
        let on_purpose = code.is_some_and(|c| self.spec.stop_exit_codes.contains(&c));
        let restart = !on_purpose
            && match self.spec.autorestart {
                Autorestart::Always => true,
                Autorestart::OnFailure => code != Some(0),
                Autorestart::Never => false,
            };
        if !restart {
            return State::Stopped;
        }
        if uptime >= policy.reset_after {
            self.streak = 0;
        }
        self.recent_crashes.push_back(now);
        while self
            .recent_crashes
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > policy.crash_loop_window)
        {
            self.recent_crashes.pop_front();
        }
        let crashes = u32::try_from(self.recent_crashes.len()).unwrap_or(u32::MAX);
        if policy.crash_loop_max > 0 && crashes >= policy.crash_loop_max {
            return State::Errored {
                reason: format!(
                    "crash loop: {crashes} crashes within {}s; fix it, then `turbo restart {}` (or `turbo reset {}`)",
                    policy.crash_loop_window.as_secs(),
                    self.spec.name,
                    self.spec.name
                ),
            };
        }
        if policy.max_restarts > 0 && self.auto_restarts >= policy.max_restarts {
            return State::Errored {
                reason: format!(
                    "gave up after {} automatic restarts (max_restarts); `turbo restart {}` tries again",
                    self.auto_restarts, self.spec.name
                ),
            };
        }
        self.streak += 1;
        State::Backoff {
            until: super::after(now, policy.delay_for(self.streak)),
        }
    }

    /// The main process while one exists.
    #[must_use]
    pub const fn pid(&self) -> Option<u32> {
        match self.state {
            State::Online { pid, .. }
            | State::Stopping {
                pid, exited: false, ..
            } => Some(pid),
            _ => None,
        }
    }

    /// When the current process started.
    #[must_use]
    pub const fn since(&self) -> Option<Instant> {
        match self.state {
            State::Online { since, .. } | State::Stopping { since, .. } => Some(since),
            _ => None,
        }
    }
}

/// What a stopping app does once its process is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterStop {
    /// Stay stopped.
    Stay,
    /// Start again (restart).
    Start,
    /// Be removed (delete).
    Forget,
}
