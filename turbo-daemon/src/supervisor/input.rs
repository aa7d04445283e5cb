//! What the supervisor is told: [`Input`]s (facts and commands) and the [`Command`]s users
//! give, with the [`Target`]s they name.

use std::time::Instant;

use super::{AppId, Desired, NotifyMessage, Ticket};
use crate::{
    events::{SourceKind, WaitStatus},
    spec::{AppSpec, HookKind},
};

/// Which apps a command applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every app.
    All,
    /// By numeric id.
    Id(AppId),
    /// By name: every instance.
    Name(String),
    /// One instance of an app: `name:N` (app names cannot contain `:`).
    Instance(String, u32),
    /// Every app whose `app_group` is this: `@group` (app names cannot start with `@`).
    Group(String),
}

impl Target {
    /// `all`, an id (all digits), `@group`, `name:N` or a name.
    #[must_use]
    pub fn parse(s: &str) -> Self {
        if s == "all" {
            Self::All
        } else if let Some(group) = s.strip_prefix('@') {
            Self::Group(group.to_owned())
        } else if let Ok(id) = s.parse() {
            Self::Id(id)
        } else if let Some((name, n)) = s.rsplit_once(':')
            && let Ok(n) = n.parse()
        {
            Self::Instance(name.to_owned(), n)
        } else {
            Self::Name(s.to_owned())
        }
    }
}

/// Things users ask for.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Add and start apps. Apps whose name already exists: a stopped or errored one starts with the
    /// new spec, a running one with an identical spec is left alone, a running one whose spec
    /// changed restarts with it. `exclusive` makes an existing name an error instead (CLI start).
    Start {
        /// The apps.
        specs: Vec<AppSpec>,
        /// Refuse names that already exist.
        exclusive: bool,
    },
    /// Start the existing apps of `target` that are not running (`turbo start NAME`), and the
    /// dependencies they wait for unless `no_deps`.
    StartNamed {
        /// The apps.
        target: Target,
        /// Do not start missing dependencies (`--no-deps`): wait for them.
        no_deps: bool,
    },
    /// Stop apps and keep them; they stay stopped across daemon restarts.
    Stop(Target),
    /// Stop every app because the daemon is shutting down: their desired state is kept, so the
    /// next daemon starts again what was running.
    StopForShutdown,
    /// Stop (if running) and start again.
    Restart(Target),
    /// Stop (if running) and forget.
    Delete(Target),
    /// Clear restart counters and crash-loop state; start `errored` apps again.
    Reset(Target),
    /// Re-create apps from saved state (daemon start-up). Apps whose process still runs are
    /// adopted as they are; the others go to their desired state.
    Restore(Vec<Restored>),
    /// Run `count` instances of the app `name`: new ones start, the highest-numbered stop.
    Scale {
        /// App name.
        name: String,
        /// Instances wanted (at least 1).
        count: u32,
    },
    /// Give existing apps a new spec without restarting them (changes that can be taken over
    /// live, see `crate::plan`); a new instance count scales. Every name must exist.
    Update(Vec<AppSpec>),
    /// Replace the running instances one at a time, each only once its replacement is ready
    /// (see `reload.rs`).
    Reload(Target),
    /// Send `signal` to the main process of every running target app (`turbo signal`).
    Signal {
        /// The apps.
        target: Target,
        /// Signal number.
        signal: i32,
    },
    /// Reply once every target app [`App::is_ready`](super::App::is_ready); fail if one crashes, errors or stops
    /// first, or when `timeout` passes (with the last health-check error).
    WaitReady {
        /// The apps.
        target: Target,
        /// How long to wait.
        timeout: std::time::Duration,
    },
}

/// One app as saved, with what the runtime found out about its process.
#[derive(Clone, Debug, PartialEq)]
pub struct Restored {
    /// Its id before the daemon restarted.
    pub id: AppId,
    /// Its instance number.
    pub instance: u32,
    /// Its spec.
    pub spec: AppSpec,
    /// Whether it should run.
    pub desired: Desired,
    /// Its restart count.
    pub restarts: u32,
    /// `(pid, started)` when its process is verified to be still running (pid and start time).
    pub running: Option<(u32, Instant)>,
}

/// Facts and commands the supervisor reacts to.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A user command; its reply comes back as [`Action::Reply`](super::Action::Reply) with the same ticket.
    Command(Ticket, Command),
    /// The runtime started the process of `app` as `pid`.
    Spawned {
        /// App.
        app: AppId,
        /// Its new main process.
        pid: u32,
    },
    /// The runtime could not start the process of `app`.
    SpawnFailed {
        /// App.
        app: AppId,
        /// One-line reason.
        error: String,
    },
    /// A process ended. Duplicates (both sources report the same exit) are ignored.
    Exited {
        /// Thread-group id.
        pid: u32,
        /// How.
        status: WaitStatus,
        /// Which source noticed first.
        source: SourceKind,
    },
    /// The kernel's OOM killer chose process `pid` (its exit follows).
    OomKilled {
        /// The victim.
        pid: u32,
    },
    /// Process `pid`'s resident memory rose to `limit` or above (the threshold set with
    /// [`Action::SetMemoryLimit`](super::Action::SetMemoryLimit)).
    MemoryOver {
        /// Process.
        pid: u32,
        /// Resident bytes.
        rss: u64,
        /// The threshold crossed.
        limit: u64,
    },
    /// Process `pid`'s resident memory fell back under 7/8 of `limit`.
    MemoryUnder {
        /// Process.
        pid: u32,
        /// The threshold.
        limit: u64,
    },
    /// The process group `pgid` of `app` has no members left.
    GroupGone {
        /// App.
        app: AppId,
        /// The group (= the pid of its first leader).
        pgid: u32,
    },
    /// A timer armed by [`Action::SetTimer`](super::Action::SetTimer) fired.
    Timer {
        /// App.
        app: AppId,
        /// The app's timer generation when armed; stale timers are ignored.
        generation: u64,
    },
    /// A timer armed by [`Action::Wake`](super::Action::Wake) fired.
    Wake {
        /// App.
        app: AppId,
        /// Which.
        kind: WakeKind,
        /// The token it was armed with; stale ones are ignored.
        token: u64,
    },
    /// A health probe asked for with [`Action::Probe`](super::Action::Probe) finished.
    ProbeResult {
        /// App.
        app: AppId,
        /// The generation it was asked with.
        generation: u64,
        /// `Err` with one line saying what failed.
        result: Result<(), String>,
    },
    /// Files watched for `app` changed (paths already filtered by [`WatchSpec::ignores`](crate::spec::WatchSpec::ignores)).
    FilesChanged {
        /// App.
        app: AppId,
    },
    /// The timeout of a [`Command::WaitReady`] passed.
    WaitExpired(Ticket),
    /// A hook asked for with [`Action::RunHook`](super::Action::RunHook) ended (or was killed at
    /// its timeout, or could not start).
    HookDone {
        /// App.
        app: AppId,
        /// Which hook.
        hook: HookKind,
        /// The token it was asked with; stale ones are ignored.
        token: u64,
        /// Its process (0 when it could not start).
        pid: u32,
        /// `Err` when it failed: how, and the last lines it wrote to stderr.
        result: Result<(), HookFailure>,
    },
    /// A process of `app` sent an `sd_notify` datagram on its `NOTIFY_SOCKET`.
    Notified {
        /// App (the runtime attributed the sender's pid to it).
        app: AppId,
        /// What it said.
        message: NotifyMessage,
    },
}

/// Timers of watch mode and health checks; they run while an app is online, next to nothing
/// else, so they have their own tokens rather than the lifecycle generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeKind {
    /// Time for the next health check (token: the app's generation).
    Health,
    /// The watch debounce delay may have passed (token: the debounce's).
    Watch,
    /// `ready_timeout` after the spawn (token: the app's generation).
    ReadyTimeout,
    /// The watchdog period may have passed without a ping (token: the app's generation).
    Watchdog,
    /// The next run of the app's `cron:` schedule may be due (token: the schedule's).
    Schedule,
}

/// How a hook failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookFailure {
    /// Its wait status (`SIGKILL` at the timeout, exit 127 when it could not start).
    pub status: WaitStatus,
    /// One line: what happened, and its last stderr lines.
    pub message: String,
}
