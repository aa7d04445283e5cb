//! One supervised app: its spec (what to run), its state and its history.

use std::{
    collections::VecDeque,
    path::PathBuf,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use turbo_api::{AppState, ExitReason};

use super::{
    AfterStop, AppId,
    checks::{Debounce, HealthSpec, HealthState, NotifyState, Readiness, ReadyMode, WatchSpec},
};
use crate::{
    config::Privileges,
    events::{SourceKind, WaitStatus},
};

/// When an app that exited on its own is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Autorestart {
    /// After every exit.
    #[default]
    Always,
    /// After an exit with a non-zero status or a signal.
    OnFailure,
    /// Never.
    Never,
}

impl std::str::FromStr for Autorestart {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Self::Always),
            "on-failure" => Ok(Self::OnFailure),
            "never" => Ok(Self::Never),
            other => Err(format!(
                "autorestart '{other}' is not one of: always, on-failure, never"
            )),
        }
    }
}

/// When and how fast to restart after an exit nobody asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestartPolicy {
    /// Delay before the first restart after a stable run.
    #[serde(with = "millis")]
    pub delay: Duration,
    /// Each consecutive quick crash multiplies the delay by this (>= 1).
    pub factor: f64,
    /// Cap of the delay.
    #[serde(with = "millis")]
    pub max_delay: Duration,
    /// A run at least this long resets the delay to `delay`.
    #[serde(with = "millis")]
    pub reset_after: Duration,
    /// This many crashes within `crash_loop_window` put the app in `errored`; 0 disables.
    pub crash_loop_max: u32,
    /// Window of the crash-loop count.
    #[serde(with = "millis")]
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

/// How an app's output is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `<RFC 3339 time> <line>`.
    #[default]
    Text,
    /// One JSON object per line: `{"at": .., "app": .., "stream": .., "line": ..}`.
    Json,
}

/// Log files of an app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogPolicy {
    /// Line format.
    pub format: LogFormat,
    /// Rotate a file when it would grow past this many bytes.
    pub max_size: u64,
    /// Rotated files kept per stream (`<file>.1` is the newest).
    pub keep: u32,
}

impl Default for LogPolicy {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            max_size: 10 * 1024 * 1024,
            keep: 5,
        }
    }
}

/// Memory limit of an app's main process (resident set size).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryPolicy {
    /// Restart the app when its resident memory reaches this many bytes.
    pub max: Option<u64>,
    /// Warn (once per crossing) at this percentage of `max`.
    pub warning_percent: u8,
    /// Who acts at `max` (`memory_enforce`).
    pub enforce: MemoryEnforce,
}

impl Default for MemoryPolicy {
    fn default() -> Self {
        Self {
            max: None,
            warning_percent: 80,
            enforce: MemoryEnforce::Restart,
        }
    }
}

/// Who acts when an app reaches `max_memory` (`memory_enforce:` in turbo.yml).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryEnforce {
    /// The supervisor restarts the app (reason `memory_limit`) when its resident memory
    /// crosses the limit.
    #[default]
    Restart,
    /// The kernel: the app runs in its own memory cgroup limited to `max_memory`, and an OOM
    /// kill (reason `oom_kill`) is the expected outcome; the supervisor only warns.
    Cgroup,
}

impl MemoryEnforce {
    /// The `memory_enforce:` value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Cgroup => "cgroup",
        }
    }
}

impl std::str::FromStr for MemoryEnforce {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "restart" => Ok(Self::Restart),
            "cgroup" => Ok(Self::Cgroup),
            other => Err(format!(
                "memory_enforce '{other}' is not one of: restart (the daemon restarts the app \
                 at max_memory, the default), cgroup (the kernel limits it in a memory cgroup)"
            )),
        }
    }
}

impl MemoryPolicy {
    /// The warning threshold in bytes, when a limit is set.
    #[must_use]
    pub fn warning(&self) -> Option<u64> {
        self.max.map(|max| {
            let warn = u128::from(max) * u128::from(self.warning_percent) / 100;
            u64::try_from(warn).unwrap_or(max)
        })
    }
}

/// Durations as integer milliseconds in the state file.
pub(super) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// What to run and how, validated and resolved (absolute paths, interpreter chosen).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppSpec {
    /// Unique name.
    pub name: String,
    /// Program and arguments; `argv[0]` is an absolute path.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Restart policy.
    pub autorestart: Autorestart,
    /// Restart timing and limits.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Exit codes that mean "stopped on purpose": no restart, whatever `autorestart` says.
    #[serde(default)]
    pub stop_exit_codes: Vec<i32>,
    /// Signal that asks the app to stop.
    pub stop_signal: i32,
    /// How long to wait after `stop_signal` before SIGKILL to the whole group.
    #[serde(with = "millis")]
    pub kill_timeout: Duration,
    /// Log files.
    #[serde(default)]
    pub log: LogPolicy,
    /// Memory limit.
    #[serde(default)]
    pub memory: MemoryPolicy,
    /// Who the app runs as and under which limits (`user`, `group`, `groups`, `umask`,
    /// `rlimits`, `nice`, `oom_score_adj`). Boxed: `AppSpec` travels by value in supervisor
    /// actions, and the default (everything inherited from the daemon) is the common case.
    #[serde(default)]
    pub privileges: Box<Privileges>,
    /// How many instances run (`instances:`; `max` is resolved to the online CPUs when the
    /// config is read). Each is its own [`App`] with the same name.
    #[serde(default = "one")]
    pub instances: u32,
    /// Addresses the daemon listens on for the app and passes to every instance with the
    /// systemd socket-activation protocol (`listen:`), as written (`0.0.0.0:3000`).
    #[serde(default)]
    pub listen: Vec<String>,
    // ---- watch mode, health checks, readiness (issue #6 items 1-3): kept together ----
    /// Restart when watched files change (`watch`, `ignore_watch`, `watch_delay`).
    #[serde(default)]
    pub watch: Option<WatchSpec>,
    /// Health check (`health:`).
    #[serde(default)]
    pub health: Option<HealthSpec>,
    /// `ready`, `ready_timeout`, `watchdog`.
    #[serde(default)]
    pub readiness: Readiness,
}

const fn one() -> u32 {
    1
}

impl AppSpec {
    /// A spec with the defaults for everything but the command.
    #[must_use]
    pub fn new(name: impl Into<String>, argv: Vec<String>, cwd: PathBuf) -> Self {
        Self {
            name: name.into(),
            argv,
            cwd,
            env: Vec::new(),
            autorestart: Autorestart::Always,
            restart: RestartPolicy::default(),
            stop_exit_codes: Vec::new(),
            stop_signal: super::signal::TERM,
            kill_timeout: Duration::from_secs(5),
            log: LogPolicy::default(),
            memory: MemoryPolicy::default(),
            privileges: Box::default(),
            instances: 1,
            listen: Vec::new(),
            watch: None,
            health: None,
            readiness: Readiness::default(),
        }
    }
}

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
            until: now + policy.delay_for(self.streak),
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
