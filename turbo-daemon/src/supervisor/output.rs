//! What the supervisor answers: [`Action`]s for the runtime to carry out, [`Notification`]s
//! for observers, and the [`Reply`] or [`CommandError`] of a command.

use std::time::Instant;

use super::{AppId, Exit, Ticket, WakeKind};
use crate::spec::{AppSpec, HealthSpec, HookKind};

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No app matched the target.
    #[error("no app matches '{0}'; `turbo status` lists them")]
    NotFound(String),
    /// `Start` with `exclusive` and an existing name.
    #[error("an app named '{0}' already exists; use `turbo restart {0}` or choose another --name")]
    AlreadyExists(String),
    /// Two specs in one request share a name.
    #[error("app name '{0}' appears twice in one request")]
    Duplicate(String),
    /// The first start of an app failed.
    #[error("{0}")]
    SpawnFailed(String),
    /// The command cannot run while a reload of this app is under way.
    #[error("a reload of '{0}' is under way: try again once it has finished")]
    Busy(String),
    /// A reload was given up; the old instances keep running.
    #[error("{0}")]
    ReloadFailed(String),
    /// An argument makes no sense (scale to 0).
    #[error("{0}")]
    Invalid(String),
    /// A wait for readiness failed or timed out.
    #[error("{0}")]
    NotReady(String),
    /// None of the target apps has a process to signal.
    #[error("{0}")]
    NotRunning(String),
}

/// What a successful command produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The apps the command touched, in id order.
    Apps(Vec<AppId>),
    /// The names of deleted apps.
    Deleted(Vec<String>),
}

/// What happened to an app, for D-Bus signals and logs.
#[derive(Clone, Debug, PartialEq)]
pub enum Notification {
    /// A new app exists.
    Added(AppId),
    /// An app changed state.
    StateChanged(AppId),
    /// An app's health verdict changed.
    HealthChanged(AppId),
    /// An app sent a new `STATUS=` text.
    StatusText(AppId),
    /// An app became ready ([`App::is_ready`](super::App::is_ready)) for the first time since its spawn.
    Ready(AppId),
    /// A process of `app` ended without being asked to; the runtime turns this into a crash
    /// record (adding wall time, memory and the stderr tail) and the `AppCrashed` signal.
    Crashed {
        /// App.
        app: AppId,
        /// The process that ended.
        pid: u32,
        /// The exit.
        exit: Exit,
        /// Restarts the app had had before this crash.
        restart_number: u32,
    },
    /// An app's memory crossed its warning level (`memory_warning` of `max_memory`).
    MemoryWarning {
        /// App.
        app: AppId,
        /// Resident bytes.
        rss: u64,
        /// Its `max_memory`.
        max: u64,
    },
    /// Something worth saving changed (spec, desired state, restart count).
    Persist,
    /// A reload replaced app `old` by app `new` (same name and instance): the new one inherits
    /// the crash records and counters of the old.
    Replaced {
        /// The app that is going away.
        old: AppId,
        /// Its replacement.
        new: AppId,
    },
    /// An app was forgotten.
    Removed {
        /// Its id.
        app: AppId,
        /// Its name.
        name: String,
        /// Its instance number.
        instance: u32,
    },
}

/// Effects for the runtime to carry out, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Start the app's process (in its own session and process group), then report
    /// [`Input::Spawned`](super::Input::Spawned) or [`Input::SpawnFailed`](super::Input::SpawnFailed).
    Spawn {
        /// App.
        app: AppId,
        /// What to run (boxed: it is much larger than every other action).
        spec: Box<AppSpec>,
    },
    /// Send `signal` to the process group led by `pid`.
    SignalGroup {
        /// App.
        app: AppId,
        /// Group leader (= process group id).
        pid: u32,
        /// Signal number.
        signal: i32,
    },
    /// Send `signal` to process `pid` alone (`turbo signal`, `reload_signal`): a master process
    /// such as nginx's or gunicorn's handles it and passes on what its workers need.
    SignalProcess {
        /// App.
        app: AppId,
        /// Its main process.
        pid: u32,
        /// Signal number.
        signal: i32,
    },
    /// Run the app's `hook` (from `spec`) as the app runs, then report
    /// [`Input::HookDone`](super::Input::HookDone) with `token`.
    RunHook {
        /// App.
        app: AppId,
        /// Which hook.
        hook: HookKind,
        /// Token to echo back.
        token: u64,
        /// The app's spec (boxed, as in [`Action::Spawn`]).
        spec: Box<AppSpec>,
    },
    /// Watch process `pid` against this memory threshold (replacing the previous one).
    SetMemoryLimit {
        /// App.
        app: AppId,
        /// Its main process.
        pid: u32,
        /// Threshold in bytes.
        bytes: u64,
    },
    /// Rewrite the cgroup limits of the running `app` from its spec (a live change: `cpu_max`,
    /// `cpu_weight`, `io_weight`, `pids_max`, `memory_high`).
    SetCgroupLimits {
        /// App.
        app: AppId,
    },
    /// Report [`Input::GroupGone`](super::Input::GroupGone) once process group `pgid` has no members (at once if it has
    /// none already).
    AwaitGroupGone {
        /// App.
        app: AppId,
        /// Process group.
        pgid: u32,
    },
    /// Deliver [`Input::Timer`](super::Input::Timer) at `at`.
    SetTimer {
        /// App.
        app: AppId,
        /// Generation to echo back.
        generation: u64,
        /// When.
        at: Instant,
    },
    /// Deliver [`Input::Wake`](super::Input::Wake) at `at`.
    Wake {
        /// App.
        app: AppId,
        /// Which timer.
        kind: WakeKind,
        /// Token to echo back.
        token: u64,
        /// When.
        at: Instant,
    },
    /// Run the app's health check once, then report [`Input::ProbeResult`](super::Input::ProbeResult).
    Probe {
        /// App.
        app: AppId,
        /// Generation to echo back.
        generation: u64,
        /// The check (boxed: it is larger than most actions).
        check: Box<HealthSpec>,
    },
    /// Deliver [`Input::WaitExpired`](super::Input::WaitExpired) at `at`.
    ExpireWait {
        /// Ticket of the [`Command::WaitReady`](super::Command::WaitReady).
        ticket: Ticket,
        /// When.
        at: Instant,
    },
    /// Answer the command with this ticket.
    Reply {
        /// Ticket of the command.
        ticket: Ticket,
        /// Outcome.
        result: Result<Reply, CommandError>,
    },
    /// Tell observers.
    Notify(Notification),
}
