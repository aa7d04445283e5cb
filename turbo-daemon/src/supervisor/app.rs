//! One supervised app: its spec (what to run), its state and its history.

use std::{path::PathBuf, time::Duration, time::Instant};

use turbo_api::{AppState, ExitReason};

use super::{AfterStop, AppId};
use crate::events::{SourceKind, WaitStatus};

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

/// What to run and how, validated and resolved (absolute paths, interpreter chosen).
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// Delay before an automatic restart.
    pub restart_delay: Duration,
    /// Signal that asks the app to stop.
    pub stop_signal: i32,
    /// How long to wait after `stop_signal` before SIGKILL to the whole group.
    pub kill_timeout: Duration,
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
            restart_delay: Duration::from_secs(1),
            stop_signal: super::signal::TERM,
            kill_timeout: Duration::from_secs(5),
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
}

/// An app in the table.
#[derive(Clone, Debug)]
pub struct App {
    /// Id.
    pub id: AppId,
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
}

impl App {
    pub(super) fn new(id: AppId, spec: AppSpec) -> Self {
        Self {
            id,
            spec,
            state: State::Stopped,
            restarts: 0,
            last_exit: None,
            generation: 0,
        }
    }

    /// The main process while one exists.
    #[must_use]
    pub const fn pid(&self) -> Option<u32> {
        match self.state {
            State::Online { pid, .. } | State::Stopping { pid, .. } => Some(pid),
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
