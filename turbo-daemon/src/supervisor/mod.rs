//! The supervisor core: every decision about an app's lifecycle, and nothing else.
//!
//! It is sans-IO: [`Supervisor::handle`] takes an [`Input`] (a fact or a command) and the current
//! [`Instant`], mutates the app table and returns the [`Action`]s the runtime must carry out
//! (spawn, signal, arm a timer, reply, notify). It never spawns, signals, sleeps, reads a clock
//! or logs; that is what makes it testable with a fake clock (`t0 + Duration`) and no processes.
//!
//! Lifecycle of one app:
//!
//! ```text
//!   Start ─► starting ─(Spawned)─► online ─(Exited, restart)─► backoff ─(Timer, group gone)─► starting
//!                │                   │  ├─(Exited, no restart)─► stopped
//!                │                   │  └─(Exited, crash loop / max_restarts)─► errored
//!                └─(SpawnFailed)─► errored
//!   Stop on online ─► stopping ─(Exited, GroupGone)─► stopped   (Timer at kill_timeout ─► SIGKILL to the group)
//! ```
//!
//! Restart timing is exponential backoff (`delay * factor^(n-1)`, capped at `max_delay`) over a
//! streak of quick crashes; a run longer than `reset_after` ends the streak. `crash_loop_max`
//! crashes within `crash_loop_window`, or more than `max_restarts` automatic restarts, put the app
//! in `errored` until a user restarts or resets it.
//!
//! A process group is "gone" only when its last member has exited, which the runtime reports as
//! [`Input::GroupGone`]: a stop completes, and a restart spawns, only after that, so an old
//! instance never overlaps a new one.
//!
//! Replies to commands are deferred until every app they touch has *settled* (is neither
//! starting nor stopping), so `turbo stop` returns when the process is really gone.
//!
//! Cluster instances are apps of their own sharing a name (`instances.rs`: numbering, scale);
//! a rolling reload is a small state machine beside the app table (`reload.rs`).

mod app;
pub mod checks;
mod instances;
pub mod leak;
mod reload;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Instant,
};

pub use reload::{READY_TIMEOUT, SETTLE};

pub use app::{App, Desired, Exit, State};
use checks::Fire;
pub use checks::NotifyMessage;
use turbo_api::ExitReason;

// Transitional: code outside the supervisor (runtime, storage, keeper, logs) still names the spec
// types by their old paths; new code imports them from `crate::spec`.
use crate::events::{SourceKind, WaitStatus};
pub use crate::spec::{
    AppSpec, Autorestart, HealthProbe, HealthSpec, LogFormat, LogPolicy, MemoryEnforce,
    MemoryPolicy, Readiness, ReadyMode, RestartPolicy, WatchSpec, signal,
};

/// Numeric app id, stable for the daemon's lifetime.
pub type AppId = u32;
/// Identifies a command so its reply can be routed back to the caller.
pub type Ticket = u64;

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
}

impl Target {
    /// `all`, an id (all digits) or a name.
    #[must_use]
    pub fn parse(s: &str) -> Self {
        if s == "all" {
            Self::All
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
    /// Replace the running instances one at a time, each only once its replacement is ready
    /// (see `reload.rs`).
    Reload(Target),
    /// Reply once every target app [`App::is_ready`]; fail if one crashes, errors or stops
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
}

/// What a successful command produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The apps the command touched, in id order.
    Apps(Vec<AppId>),
    /// The names of deleted apps.
    Deleted(Vec<String>),
}

/// Facts and commands the supervisor reacts to.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A user command; its reply comes back as [`Action::Reply`] with the same ticket.
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
    /// [`Action::SetMemoryLimit`]).
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
    /// A timer armed by [`Action::SetTimer`] fired.
    Timer {
        /// App.
        app: AppId,
        /// The app's timer generation when armed; stale timers are ignored.
        generation: u64,
    },
    /// A timer armed by [`Action::Wake`] fired.
    Wake {
        /// App.
        app: AppId,
        /// Which.
        kind: WakeKind,
        /// The token it was armed with; stale ones are ignored.
        token: u64,
    },
    /// A health probe asked for with [`Action::Probe`] finished.
    ProbeResult {
        /// App.
        app: AppId,
        /// The generation it was asked with.
        generation: u64,
        /// `Err` with one line saying what failed.
        result: Result<(), String>,
    },
    /// Files watched for `app` changed (paths already filtered by [`WatchSpec::ignores`]).
    FilesChanged {
        /// App.
        app: AppId,
    },
    /// The timeout of a [`Command::WaitReady`] passed.
    WaitExpired(Ticket),
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
    /// An app became ready ([`App::is_ready`]) for the first time since its spawn.
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
    /// [`Input::Spawned`] or [`Input::SpawnFailed`].
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
    /// Watch process `pid` against this memory threshold (replacing the previous one).
    SetMemoryLimit {
        /// App.
        app: AppId,
        /// Its main process.
        pid: u32,
        /// Threshold in bytes.
        bytes: u64,
    },
    /// Report [`Input::GroupGone`] once process group `pgid` has no members (at once if it has
    /// none already).
    AwaitGroupGone {
        /// App.
        app: AppId,
        /// Process group.
        pgid: u32,
    },
    /// Deliver [`Input::Timer`] at `at`.
    SetTimer {
        /// App.
        app: AppId,
        /// Generation to echo back.
        generation: u64,
        /// When.
        at: Instant,
    },
    /// Deliver [`Input::Wake`] at `at`.
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
    /// Run the app's health check once, then report [`Input::ProbeResult`].
    Probe {
        /// App.
        app: AppId,
        /// Generation to echo back.
        generation: u64,
        /// The check (boxed: it is larger than most actions).
        check: Box<HealthSpec>,
    },
    /// Deliver [`Input::WaitExpired`] at `at`.
    ExpireWait {
        /// Ticket of the [`Command::WaitReady`].
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

/// A command whose reply waits for apps to settle.
#[derive(Debug)]
struct Pending {
    ticket: Ticket,
    waiting: Vec<AppId>,
    reply: Reply,
    /// Start: a failed first spawn turns the reply into an error.
    fail_on_spawn_error: bool,
}

/// A [`Command::WaitReady`] waiting.
#[derive(Debug)]
struct ReadyWait {
    ticket: Ticket,
    apps: Vec<AppId>,
    timeout: std::time::Duration,
}

/// The app table and the pending replies. See the module docs.
#[derive(Debug, Default)]
pub struct Supervisor {
    apps: BTreeMap<AppId, App>,
    next_id: AppId,
    pending: Vec<Pending>,
    /// Reloads under way, one step at a time each.
    reloads: Vec<reload::Reload>,
    /// Replacements of an aborted reload, being stopped and forgotten: commands leave them be.
    retiring: BTreeSet<AppId>,
    waits: Vec<ReadyWait>,
}

impl Supervisor {
    /// An empty supervisor.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every app, in id order.
    pub fn apps(&self) -> impl Iterator<Item = &App> {
        self.apps.values()
    }

    /// One app.
    #[must_use]
    pub fn app(&self, id: AppId) -> Option<&App> {
        self.apps.get(&id)
    }

    /// Resolves a target to app ids (in id order).
    ///
    /// # Errors
    /// [`CommandError::NotFound`] when a name or id matches nothing.
    pub fn resolve(&self, target: &Target) -> Result<Vec<AppId>, CommandError> {
        let ids: Vec<AppId> = match target {
            Target::All => self.apps.keys().copied().collect(),
            Target::Id(id) => self
                .apps
                .contains_key(id)
                .then_some(*id)
                .into_iter()
                .collect(),
            Target::Name(name) => self
                .apps
                .values()
                .filter(|a| a.spec.name == *name)
                .map(|a| a.id)
                .collect(),
            Target::Instance(name, n) => self
                .apps
                .values()
                .filter(|a| a.spec.name == *name && a.instance == *n)
                .map(|a| a.id)
                .collect(),
        };
        match target {
            Target::Id(id) if ids.is_empty() => Err(CommandError::NotFound(id.to_string())),
            Target::Name(n) if ids.is_empty() => Err(CommandError::NotFound(n.clone())),
            Target::Instance(n, k) if ids.is_empty() => {
                Err(CommandError::NotFound(format!("{n}:{k}")))
            }
            _ => Ok(ids),
        }
    }

    /// Reacts to one input at `now`.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Command(ticket, cmd) => self.command(ticket, cmd, now, &mut out),
            Input::Spawned { app, pid } => self.spawned(app, pid, now, &mut out),
            Input::SpawnFailed { app, error } => {
                if let Some(a) = self.apps.get_mut(&app)
                    && matches!(a.state, State::Starting)
                {
                    a.state = State::Errored { reason: error };
                    out.push(Action::Notify(Notification::StateChanged(app)));
                }
            }
            Input::Exited {
                pid,
                status,
                source,
            } => self.exited(pid, status, source, now, &mut out),
            Input::GroupGone { app, pgid } => self.group_gone(app, pgid, now, &mut out),
            Input::MemoryOver { pid, rss, limit } => {
                self.memory_over(pid, rss, limit, now, &mut out)
            }
            Input::MemoryUnder { pid, limit } => self.memory_under(pid, limit, &mut out),
            Input::OomKilled { pid } => {
                if let Some(app) = self.apps.values_mut().find(|a| a.pid() == Some(pid)) {
                    app.oom_victim = Some(pid);
                }
            }
            Input::Timer { app, generation } => self.timer(app, generation, now, &mut out),
            Input::Wake { app, kind, token } => self.wake(app, kind, token, now, &mut out),
            Input::ProbeResult {
                app,
                generation,
                result,
            } => self.probe_result(app, generation, result, now, &mut out),
            Input::FilesChanged { app } => self.files_changed(app, now, &mut out),
            Input::WaitExpired(ticket) => self.wait_expired(ticket, &mut out),
            Input::Notified { app, message } => self.notified(app, message, now, &mut out),
        }
        self.advance_reloads(now, &mut out);
        self.settle(&mut out);
        self.settle_waits(&mut out);
        out
    }

    fn command(&mut self, ticket: Ticket, cmd: Command, now: Instant, out: &mut Vec<Action>) {
        // a command that changes what runs takes precedence over a reload of the same apps
        let retired = self.interrupt_reloads(&cmd, now, out);
        let result = match cmd {
            Command::Scale { name, count } => self.scale(&name, count, now, out),
            Command::Reload(target) => {
                // answered when the last step is done, not when the apps settle
                if let Err(e) = self.reload(ticket, &target, now, out) {
                    out.push(Action::Reply {
                        ticket,
                        result: Err(e),
                    });
                }
                return;
            }
            Command::Start { specs, exclusive } => self.start(specs, exclusive, now, out),
            Command::Restore(apps) => Ok(self.restore(apps, now, out)),
            Command::Stop(target) => self.targets(&target).map(|ids| {
                for &id in &ids {
                    self.stop_one(id, AfterStop::Stay, now, out);
                    self.apps.get_mut(&id).expect("resolved").desired = Desired::Stopped;
                }
                (ids.clone(), Reply::Apps(ids), false)
            }),
            Command::StopForShutdown => {
                let ids: Vec<AppId> = self.targets(&Target::All).unwrap_or_default();
                for &id in &ids {
                    self.stop_one(id, AfterStop::Stay, now, out);
                }
                Ok((ids.clone(), Reply::Apps(ids), false))
            }
            Command::Restart(target) => self.targets(&target).map(|ids| {
                for &id in &ids {
                    self.stop_one(id, AfterStop::Start, now, out);
                }
                (ids.clone(), Reply::Apps(ids), false)
            }),
            Command::Delete(target) => self.targets(&target).map(|ids| {
                let names = ids
                    .iter()
                    .map(|id| self.apps[id].spec.name.clone())
                    .collect();
                for &id in &ids {
                    self.stop_one(id, AfterStop::Forget, now, out);
                }
                (ids, Reply::Deleted(names), false)
            }),
            Command::WaitReady { target, timeout } => {
                match self.resolve(&target) {
                    Ok(apps) => {
                        out.push(Action::ExpireWait {
                            ticket,
                            at: now + timeout,
                        });
                        self.waits.push(ReadyWait {
                            ticket,
                            apps,
                            timeout,
                        });
                    }
                    Err(e) => out.push(Action::Reply {
                        ticket,
                        result: Err(e),
                    }),
                }
                return;
            }
            Command::Reset(target) => self.targets(&target).map(|ids| {
                for &id in &ids {
                    let app = self.apps.get_mut(&id).expect("resolved");
                    app.clear_history();
                    app.restarts = 0;
                    if matches!(app.state, State::Errored { .. }) {
                        app.desired = Desired::Running;
                        self.begin_start(id, out);
                    }
                    out.push(Action::Notify(Notification::StateChanged(id)));
                }
                out.push(Action::Notify(Notification::Persist));
                (ids.clone(), Reply::Apps(ids), false)
            }),
        };
        match result {
            Ok((mut waiting, reply, fail_on_spawn_error)) => {
                // an interrupted reload's replacement is gone too before the answer
                waiting.extend(retired);
                self.pending.push(Pending {
                    ticket,
                    waiting,
                    reply,
                    fail_on_spawn_error,
                });
            }
            Err(e) => out.push(Action::Reply {
                ticket,
                result: Err(e),
            }),
        }
    }

    fn start(
        &mut self,
        specs: Vec<AppSpec>,
        exclusive: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Result<(Vec<AppId>, Reply, bool), CommandError> {
        // validate the whole request before touching anything: all or nothing
        for (i, spec) in specs.iter().enumerate() {
            if specs[..i].iter().any(|s| s.name == spec.name) {
                return Err(CommandError::Duplicate(spec.name.clone()));
            }
            if exclusive && self.find(&spec.name).is_some() {
                return Err(CommandError::AlreadyExists(spec.name.clone()));
            }
        }
        let mut ids = Vec::with_capacity(specs.len());
        for spec in specs {
            let existing = self.named(&spec.name);
            if existing.is_empty() {
                for instance in 0..spec.instances.max(1) {
                    let id = self.add_instance(&spec, instance, out);
                    self.begin_start(id, out);
                    ids.push(id);
                }
                continue;
            }
            let (name, count) = (spec.name.clone(), spec.instances.max(1));
            for id in existing {
                let app = self.apps.get_mut(&id).expect("found above");
                // a new instance count alone restarts nothing: scaling handles it below
                let changed = app.spec
                    != AppSpec {
                        instances: app.spec.instances,
                        ..spec.clone()
                    };
                app.spec = spec.clone();
                app.desired = Desired::Running;
                match app.state {
                    State::Stopped | State::Errored { .. } | State::Backoff { .. } => {
                        app.clear_history();
                        self.begin_start(id, out);
                    }
                    State::Online { .. } if changed => {
                        self.stop_one(id, AfterStop::Start, now, out);
                    }
                    // running with the same spec, or already on its way: nothing to do
                    _ => {}
                }
            }
            ids.extend(self.scale_to(&name, count, now, out));
        }
        out.push(Action::Notify(Notification::Persist));
        Ok((ids.clone(), Reply::Apps(ids), true))
    }

    fn restore(
        &mut self,
        apps: Vec<Restored>,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> (Vec<AppId>, Reply, bool) {
        let mut ids = Vec::new();
        for r in apps {
            if self.apps.contains_key(&r.id)
                || self
                    .apps
                    .values()
                    .any(|a| a.spec.name == r.spec.name && a.instance == r.instance)
            {
                // already managed, or a replacement saved in the middle of a reload (the
                // instance it was to replace is restored, the replacement is not): a process
                // of it still running must not stay on unmanaged
                if let Some((pid, _)) = r.running {
                    out.push(Action::SignalGroup {
                        app: r.id,
                        pid,
                        signal: r.spec.stop_signal,
                    });
                }
                continue;
            }
            let mut app = App::new(r.id, r.spec);
            app.instance = r.instance;
            app.restarts = r.restarts;
            app.desired = r.desired;
            let id = r.id;
            self.next_id = self.next_id.max(id + 1);
            let adopted = r.running.map(|(pid, since)| State::Online { pid, since });
            let run = adopted.is_none() && r.desired == Desired::Running;
            if let Some(state) = adopted {
                app.state = state;
                // it ran before the daemon restarted: it said READY=1 to the previous daemon
                // (and will not again), but its checks and watchdog go on from now
                app.notify.ready = true;
                arm_checks(&mut app, now, false, out);
            }
            self.apps.insert(id, app);
            out.push(Action::Notify(Notification::Added(id)));
            if run {
                self.begin_start(id, out);
            }
            ids.push(id);
        }
        (ids.clone(), Reply::Apps(ids), false)
    }

    fn find(&self, name: &str) -> Option<AppId> {
        self.apps
            .values()
            .find(|a| a.spec.name == name)
            .map(|a| a.id)
    }

    /// Moves an app to `starting` and asks for a spawn.
    fn begin_start(&mut self, id: AppId, out: &mut Vec<Action>) {
        let app = self.apps.get_mut(&id).expect("caller checked");
        app.generation += 1; // cancels any backoff timer
        app.state = State::Starting;
        out.push(Action::Notify(Notification::StateChanged(id)));
        out.push(Action::Spawn {
            app: id,
            spec: Box::new(app.spec.clone()),
        });
    }

    fn stop_one(&mut self, id: AppId, then: AfterStop, now: Instant, out: &mut Vec<Action>) {
        let app = self.apps.get_mut(&id).expect("caller resolved the id");
        if then == AfterStop::Start {
            // a restart by hand is a fresh start: crash-loop and backoff begin again
            app.clear_history();
            app.desired = Desired::Running;
        }
        match app.state {
            State::Online { pid, since } => {
                begin_stopping(app, pid, since, false, ExitReason::Manual, then, now, out);
            }
            State::Stopping {
                then: ref mut current,
                ..
            } => *current = then,
            State::Backoff { .. } if app.lingering.is_some() => {
                // the crashed instance left members in its group: stop them like a running app
                let pgid = app.lingering.expect("checked");
                begin_stopping(app, pgid, now, true, ExitReason::Manual, then, now, out);
            }
            // `starting` lasts only until the runtime reports the spawn, which it does before
            // taking the next input; treat it like a stopped app whose spawn is superseded
            State::Starting | State::Stopped | State::Backoff { .. } | State::Errored { .. } => {
                app.generation += 1;
                app.state = State::Stopped;
                self.after_stop(id, then, out);
            }
        }
        out.push(Action::Notify(Notification::Persist));
    }

    fn after_stop(&mut self, id: AppId, then: AfterStop, out: &mut Vec<Action>) {
        match then {
            AfterStop::Stay => out.push(Action::Notify(Notification::StateChanged(id))),
            AfterStop::Start => {
                self.apps.get_mut(&id).expect("present").restarts += 1;
                self.begin_start(id, out);
            }
            AfterStop::Forget => {
                let app = self.apps.remove(&id).expect("present");
                out.push(Action::Notify(Notification::Removed {
                    app: id,
                    name: app.spec.name,
                    instance: app.instance,
                }));
            }
        }
    }

    fn spawned(&mut self, id: AppId, pid: u32, now: Instant, out: &mut Vec<Action>) {
        match self.apps.get_mut(&id) {
            Some(app) if matches!(app.state, State::Starting) => {
                app.state = State::Online { pid, since: now };
                app.lingering = None;
                app.memory_warned = false;
                app.health.reset();
                app.announced_ready = false;
                app.notify = checks::NotifyState::default();
                arm_checks(app, now, true, out);
                if let Some(bytes) = app.spec.memory.warning() {
                    out.push(Action::SetMemoryLimit {
                        app: id,
                        pid,
                        bytes,
                    });
                }
                out.push(Action::Notify(Notification::StateChanged(id)));
                announce_ready(app, out);
            }
            // the app was stopped or deleted while its spawn was in flight: nobody owns this
            // process any more, so it must not outlive the decision
            _ => out.push(Action::SignalGroup {
                app: id,
                pid,
                signal: signal::KILL,
            }),
        }
    }

    fn exited(
        &mut self,
        pid: u32,
        status: WaitStatus,
        source: SourceKind,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(app) = self.apps.values_mut().find(|a| a.pid() == Some(pid)) else {
            return; // already handled (the other source was first) or not ours
        };
        let id = app.id;
        // the leader is gone; its group may not be
        app.lingering = Some(pid);
        out.push(Action::AwaitGroupGone { app: id, pgid: pid });
        match app.state {
            State::Online { since, .. } => {
                let reason = match status.signal() {
                    Some(signal::KILL) if app.oom_victim == Some(pid) => ExitReason::OomKill,
                    Some(_) => ExitReason::Signal,
                    None => ExitReason::Exit,
                };
                app.oom_victim = None;
                let uptime = now.saturating_duration_since(since);
                let exit = Exit {
                    status,
                    reason,
                    source,
                    at: now,
                    uptime,
                    detail: None,
                };
                app.last_exit = Some(exit.clone());
                out.push(Action::Notify(Notification::Crashed {
                    app: id,
                    pid,
                    exit,
                    restart_number: app.restarts,
                }));
                // leftovers of a crashed instance get the stop signal now (as systemd's
                // KillMode=control-group does) and SIGKILL before the next start
                out.push(Action::SignalGroup {
                    app: id,
                    pid,
                    signal: app.spec.stop_signal,
                });
                app.generation += 1;
                app.state = app.after_crash(status, uptime, now);
                if let State::Backoff { until } = app.state {
                    out.push(Action::SetTimer {
                        app: id,
                        generation: app.generation,
                        at: until,
                    });
                }
                if matches!(app.state, State::Stopped) {
                    app.desired = Desired::Stopped;
                }
                out.push(Action::Notify(Notification::StateChanged(id)));
                out.push(Action::Notify(Notification::Persist));
            }
            State::Stopping {
                since,
                ref mut exited,
                cause,
                ..
            } => {
                *exited = true;
                let exit = Exit {
                    status,
                    reason: cause,
                    source,
                    at: now,
                    uptime: now.saturating_duration_since(since),
                    detail: (cause == ExitReason::Health)
                        .then(|| app.health.last_error.clone())
                        .flatten(),
                };
                if !matches!(cause, ExitReason::Manual | ExitReason::Watch) {
                    // a restart the daemon decided (memory limit) is a crash to the user
                    out.push(Action::Notify(Notification::Crashed {
                        app: id,
                        pid,
                        exit: exit.clone(),
                        restart_number: app.restarts,
                    }));
                }
                app.last_exit = Some(exit);
                // completes on GroupGone
            }
            // only online and stopping apps have a pid
            State::Starting | State::Stopped | State::Backoff { .. } | State::Errored { .. } => {}
        }
    }

    fn memory_over(&mut self, pid: u32, rss: u64, limit: u64, now: Instant, out: &mut Vec<Action>) {
        let Some(app) = self.apps.values_mut().find(|a| a.pid() == Some(pid)) else {
            return;
        };
        let (id, memory) = (app.id, app.spec.memory.clone());
        let Some(max) = memory.max else {
            return;
        };
        if !matches!(app.state, State::Online { .. }) {
            return;
        }
        let kernel_enforces = memory.enforce == MemoryEnforce::Cgroup;
        if limit >= max || rss >= max {
            if kernel_enforces {
                // the cgroup limit acts (an OOM kill), not the supervisor
                return;
            }
            // over max_memory: restart it now, gracefully (stop signal, then SIGKILL at the
            // kill timeout), and record it as a crash with reason memory_limit
            let State::Online { since, .. } = app.state else {
                unreachable!("checked online")
            };
            begin_stopping(
                app,
                pid,
                since,
                false,
                ExitReason::MemoryLimit,
                AfterStop::Start,
                now,
                out,
            );
            return;
        }
        if !app.memory_warned {
            app.memory_warned = true;
            out.push(Action::Notify(Notification::MemoryWarning {
                app: id,
                rss,
                max,
            }));
        }
        if kernel_enforces {
            // nothing more to watch: the kernel enforces the limit; the warning level stays
            // armed, and falling under it re-arms the warning
            return;
        }
        // next: the limit itself
        out.push(Action::SetMemoryLimit {
            app: id,
            pid,
            bytes: max,
        });
    }

    fn memory_under(&mut self, pid: u32, limit: u64, out: &mut Vec<Action>) {
        let Some(app) = self.apps.values_mut().find(|a| a.pid() == Some(pid)) else {
            return;
        };
        let (Some(max), Some(warning)) = (app.spec.memory.max, app.spec.memory.warning()) else {
            return;
        };
        if limit >= max && warning < max {
            // back under the limit: watch the warning level again (if memory is still above
            // it, the source says so at once and the limit is armed again, without a new warning)
            out.push(Action::SetMemoryLimit {
                app: app.id,
                pid,
                bytes: warning,
            });
        } else {
            // under the warning level: the next crossing deserves a new warning
            app.memory_warned = false;
        }
    }

    fn group_gone(&mut self, id: AppId, pgid: u32, now: Instant, out: &mut Vec<Action>) {
        let Some(app) = self.apps.get_mut(&id) else {
            return;
        };
        if app.lingering != Some(pgid) {
            return;
        }
        app.lingering = None;
        match app.state {
            State::Stopping {
                exited: true, then, ..
            } => {
                app.generation += 1; // the kill timer is moot
                app.state = State::Stopped;
                self.after_stop(id, then, out);
            }
            // the backoff delay already passed while the old group was being killed
            State::Backoff { until } if until <= now => self.restart_now(id, out),
            _ => {}
        }
    }

    fn timer(&mut self, id: AppId, generation: u64, _now: Instant, out: &mut Vec<Action>) {
        let Some(app) = self.apps.get_mut(&id) else {
            return;
        };
        if app.generation != generation {
            return; // superseded by a later transition
        }
        match app.state {
            State::Backoff { .. } => match app.lingering {
                // members of the old group survived the stop signal: they must go before the
                // new instance starts (a port or lock they hold would make it fail)
                Some(pgid) => out.push(Action::SignalGroup {
                    app: id,
                    pid: pgid,
                    signal: signal::KILL,
                }),
                None => self.restart_now(id, out),
            },
            State::Stopping {
                pid, killed: false, ..
            } => {
                if let State::Stopping { killed, .. } = &mut app.state {
                    *killed = true;
                }
                out.push(Action::SignalGroup {
                    app: id,
                    pid,
                    signal: signal::KILL,
                });
            }
            _ => {}
        }
    }

    fn wake(&mut self, id: AppId, kind: WakeKind, token: u64, now: Instant, out: &mut Vec<Action>) {
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
        }
    }

    fn probe_result(
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
                now + check.interval
            }
            Err(e) if !app.health.ever_healthy && now < since + check.start_period => {
                // still starting: not unhealthy, only not ready yet (`--wait` shows the error)
                app.health.last_error = Some(e);
                now + check.retry_delay
            }
            Err(e) => {
                app.health.failures += 1;
                app.health.passing = Some(false);
                app.health.last_error = Some(e);
                now + check.retry_delay
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

    fn notified(&mut self, id: AppId, message: NotifyMessage, now: Instant, out: &mut Vec<Action>) {
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

    fn files_changed(&mut self, id: AppId, now: Instant, out: &mut Vec<Action>) {
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
    fn restart_for_watch(&mut self, id: AppId, now: Instant, out: &mut Vec<Action>) {
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

    fn wait_expired(&mut self, ticket: Ticket, out: &mut Vec<Action>) {
        let Some(i) = self.waits.iter().position(|w| w.ticket == ticket) else {
            return;
        };
        let w = self.waits.swap_remove(i);
        let why = w
            .apps
            .iter()
            .filter_map(|id| self.apps.get(id))
            .find(|a| !a.is_ready())
            .map_or_else(
                || "it went away".to_owned(),
                |a| {
                    format!(
                        "'{}' is not ready after {}: {}",
                        a.spec.name,
                        human_duration(w.timeout),
                        not_ready_detail(a)
                    )
                },
            );
        out.push(Action::Reply {
            ticket,
            result: Err(CommandError::NotReady(why)),
        });
    }

    /// Answers the readiness waits that are decided: every app ready, or one failed.
    fn settle_waits(&mut self, out: &mut Vec<Action>) {
        let apps = &self.apps;
        self.waits.retain(|w| {
            let failed = w.apps.iter().find_map(|id| {
                let Some(a) = apps.get(id) else {
                    return Some(format!("app {id} was deleted while waiting for it"));
                };
                let gone = matches!(
                    a.state,
                    State::Stopped
                        | State::Stopping { .. }
                        | State::Backoff { .. }
                        | State::Errored { .. }
                );
                gone.then(|| {
                    format!(
                        "'{}' is {} instead of ready: {}",
                        a.spec.name,
                        a.state.public(),
                        not_ready_detail(a)
                    )
                })
            });
            let result = match failed {
                Some(why) => Err(CommandError::NotReady(why)),
                None if w.apps.iter().all(|id| apps[id].is_ready()) => {
                    Ok(Reply::Apps(w.apps.clone()))
                }
                None => return true,
            };
            out.push(Action::Reply {
                ticket: w.ticket,
                result,
            });
            false
        });
    }

    fn restart_now(&mut self, id: AppId, out: &mut Vec<Action>) {
        let app = self.apps.get_mut(&id).expect("caller checked");
        app.restarts += 1;
        app.auto_restarts += 1;
        self.begin_start(id, out);
        out.push(Action::Notify(Notification::Persist));
    }

    /// Emits the replies whose apps have all settled.
    fn settle(&mut self, out: &mut Vec<Action>) {
        let apps = &self.apps;
        let settled = |id: &AppId| apps.get(id).is_none_or(|a| a.state.is_settled());
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].waiting.iter().all(settled) {
                let p = self.pending.swap_remove(i);
                let failure = p.fail_on_spawn_error.then(|| {
                    p.waiting.iter().find_map(|id| match &apps.get(id)?.state {
                        State::Errored { reason } => Some(reason.clone()),
                        _ => None,
                    })
                });
                let result = match failure.flatten() {
                    Some(reason) => Err(CommandError::SpawnFailed(reason)),
                    None => Ok(p.reply),
                };
                out.push(Action::Reply {
                    ticket: p.ticket,
                    result,
                });
            } else {
                i += 1;
            }
        }
    }
}

/// Restarts an app whose health check kept failing, or that hung (watchdog) or never said it was
/// ready: gracefully, and recorded as a crash with reason `health`.
fn restart_unhealthy(app: &mut App, pid: u32, since: Instant, now: Instant, out: &mut Vec<Action>) {
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

/// Moves `app` to `stopping`: the stop signal to its group now, SIGKILL at the kill timeout.
/// `exited` says whether the main process is already gone (only its group is left).
#[expect(
    clippy::too_many_arguments,
    reason = "one transition, spelled out at each call site"
)]
fn begin_stopping(
    app: &mut App,
    pid: u32,
    since: Instant,
    exited: bool,
    cause: ExitReason,
    then: AfterStop,
    now: Instant,
    out: &mut Vec<Action>,
) {
    app.generation += 1;
    let deadline = now + app.spec.kill_timeout;
    app.state = State::Stopping {
        pid,
        since,
        deadline,
        killed: false,
        exited,
        cause,
        then,
    };
    out.push(Action::SignalGroup {
        app: app.id,
        pid,
        signal: app.spec.stop_signal,
    });
    out.push(Action::SetTimer {
        app: app.id,
        generation: app.generation,
        at: deadline,
    });
    out.push(Action::Notify(Notification::StateChanged(app.id)));
}

/// Arms the timers of a process that just came online: its first health check, its watchdog
/// and, for a fresh spawn with `ready: notify`, its `ready_timeout`.
fn arm_checks(app: &mut App, now: Instant, spawned: bool, out: &mut Vec<Action>) {
    let (id, token, readiness) = (app.id, app.generation, &app.spec.readiness);
    if spawned && readiness.mode == ReadyMode::Notify {
        out.push(Action::Wake {
            app: id,
            kind: WakeKind::ReadyTimeout,
            token,
            at: now + readiness.timeout,
        });
    }
    if let Some(period) = readiness.watchdog() {
        app.notify.last_ping = Some(now);
        out.push(Action::Wake {
            app: id,
            kind: WakeKind::Watchdog,
            token,
            at: now + period,
        });
    }
    if let Some(check) = &app.spec.health {
        out.push(Action::Wake {
            app: id,
            kind: WakeKind::Health,
            token,
            at: now + check.first_delay(),
        });
    }
}

/// Gives [`Notification::Ready`] once per process, when the app has become ready.
fn announce_ready(app: &mut App, out: &mut Vec<Action>) {
    if app.is_ready() && !app.announced_ready {
        app.announced_ready = true;
        out.push(Action::Notify(Notification::Ready(app.id)));
    }
}

/// Why `app` is not ready, in a few words: the last health-check error, its errored reason or
/// its last exit.
fn not_ready_detail(app: &App) -> String {
    if let State::Errored { reason } = &app.state {
        return reason.clone();
    }
    let crashed = matches!(app.state, State::Backoff { .. } | State::Stopped);
    if let Some(e) = app
        .last_exit
        .as_ref()
        .filter(|e| crashed && e.reason != ExitReason::Health)
    {
        return match (e.status.code(), e.status.signal()) {
            (Some(code), _) => format!("its process exited with code {code}"),
            (_, Some(signal)) => format!("its process was killed by signal {signal}"),
            _ => format!("its process ended ({})", e.reason),
        };
    }
    if let Some(e) = &app.health.last_error {
        return format!("health check failed: {e}");
    }
    if app.spec.health.is_some() && matches!(app.state, State::Online { .. }) {
        return "the health check has not passed yet".to_owned();
    }
    if app.spec.readiness.mode == ReadyMode::Notify && matches!(app.state, State::Online { .. }) {
        return "it has not sent READY=1 yet (ready: notify)".to_owned();
    }
    match &app.last_exit {
        Some(e) => format!("its last process ended ({})", e.reason),
        None => "it has not started".to_owned(),
    }
}

/// `60s`, `1.5s`, `500ms`.
fn human_duration(d: std::time::Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else if d < std::time::Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
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
