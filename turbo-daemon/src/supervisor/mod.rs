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
//!   Start ─► starting ─(Spawned)─► online ─(Exited, autorestart)─► backoff ─(Timer)─► starting
//!                │                   │  └─(Exited, no restart)─► stopped
//!                └─(SpawnFailed)─► errored
//!   Stop on online ─► stopping ─(Exited)─► stopped      (Timer at kill_timeout ─► SIGKILL to the group)
//! ```
//!
//! Replies to commands are deferred until every app they touch has *settled* (is neither
//! starting nor stopping), so `turbo stop` returns when the process is really gone.

mod app;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, time::Instant};

pub use app::{App, AppSpec, Autorestart, Exit, LogFormat, LogPolicy, RestartPolicy, State};
use turbo_api::ExitReason;

use crate::events::{SourceKind, WaitStatus};

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
    /// By name.
    Name(String),
}

impl Target {
    /// `all`, an id (all digits) or a name.
    #[must_use]
    pub fn parse(s: &str) -> Self {
        if s == "all" {
            Self::All
        } else if let Ok(id) = s.parse() {
            Self::Id(id)
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
    /// Stop apps and keep them.
    Stop(Target),
    /// Stop (if running) and start again.
    Restart(Target),
    /// Stop (if running) and forget.
    Delete(Target),
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
    /// A timer armed by [`Action::SetTimer`] fired.
    Timer {
        /// App.
        app: AppId,
        /// The app's timer generation when armed; stale timers are ignored.
        generation: u64,
    },
}

/// Signal numbers the core needs to name (Linux x86_64 values).
pub mod signal {
    /// SIGKILL.
    pub const KILL: i32 = 9;
    /// SIGTERM.
    pub const TERM: i32 = 15;
}

/// What happened to an app, for D-Bus signals and logs.
#[derive(Clone, Debug, PartialEq)]
pub enum Notification {
    /// A new app exists.
    Added(AppId),
    /// An app changed state.
    StateChanged(AppId),
    /// An app was forgotten.
    Removed {
        /// Its id.
        app: AppId,
        /// Its name.
        name: String,
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
        /// What to run.
        spec: AppSpec,
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
    /// Deliver [`Input::Timer`] at `at`.
    SetTimer {
        /// App.
        app: AppId,
        /// Generation to echo back.
        generation: u64,
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

/// The app table and the pending replies. See the module docs.
#[derive(Debug, Default)]
pub struct Supervisor {
    apps: BTreeMap<AppId, App>,
    next_id: AppId,
    pending: Vec<Pending>,
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
            Input::Timer { app, generation } => self.timer(app, generation, now, &mut out),
        }
        self.settle(&mut out);
        out
    }

    fn resolve(&self, target: &Target) -> Result<Vec<AppId>, CommandError> {
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
        };
        if ids.is_empty() && *target != Target::All {
            let shown = match target {
                Target::Id(id) => id.to_string(),
                Target::Name(n) => n.clone(),
                Target::All => unreachable!("checked above"),
            };
            return Err(CommandError::NotFound(shown));
        }
        Ok(ids)
    }

    fn command(&mut self, ticket: Ticket, cmd: Command, now: Instant, out: &mut Vec<Action>) {
        let result = match cmd {
            Command::Start { specs, exclusive } => self.start(specs, exclusive, now, out),
            Command::Stop(target) => self.resolve(&target).map(|ids| {
                for &id in &ids {
                    self.stop_one(id, AfterStop::Stay, now, out);
                }
                (ids.clone(), Reply::Apps(ids), false)
            }),
            Command::Restart(target) => self.resolve(&target).map(|ids| {
                for &id in &ids {
                    self.stop_one(id, AfterStop::Start, now, out);
                }
                (ids.clone(), Reply::Apps(ids), false)
            }),
            Command::Delete(target) => self.resolve(&target).map(|ids| {
                let names = ids
                    .iter()
                    .map(|id| self.apps[id].spec.name.clone())
                    .collect();
                for &id in &ids {
                    self.stop_one(id, AfterStop::Forget, now, out);
                }
                (ids, Reply::Deleted(names), false)
            }),
        };
        match result {
            Ok((waiting, reply, fail_on_spawn_error)) => self.pending.push(Pending {
                ticket,
                waiting,
                reply,
                fail_on_spawn_error,
            }),
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
            let id = if let Some(id) = self.find(&spec.name) {
                let app = self.apps.get_mut(&id).expect("found above");
                let changed = app.spec != spec;
                app.spec = spec;
                match app.state {
                    State::Stopped | State::Errored { .. } | State::Backoff { .. } => {
                        self.begin_start(id, out);
                    }
                    State::Online { .. } if changed => {
                        self.stop_one(id, AfterStop::Start, now, out);
                    }
                    // running with the same spec, or already on its way: nothing to do
                    _ => {}
                }
                id
            } else {
                let id = self.next_id;
                self.next_id += 1;
                self.apps.insert(id, App::new(id, spec));
                out.push(Action::Notify(Notification::Added(id)));
                self.begin_start(id, out);
                id
            };
            ids.push(id);
        }
        Ok((ids.clone(), Reply::Apps(ids), true))
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
            spec: app.spec.clone(),
        });
    }

    fn stop_one(&mut self, id: AppId, then: AfterStop, now: Instant, out: &mut Vec<Action>) {
        let app = self.apps.get_mut(&id).expect("caller resolved the id");
        match app.state {
            State::Online { pid, since } => {
                app.generation += 1;
                let deadline = now + app.spec.kill_timeout;
                app.state = State::Stopping {
                    pid,
                    since,
                    deadline,
                    killed: false,
                    then,
                };
                out.push(Action::SignalGroup {
                    app: id,
                    pid,
                    signal: app.spec.stop_signal,
                });
                out.push(Action::SetTimer {
                    app: id,
                    generation: app.generation,
                    at: deadline,
                });
                out.push(Action::Notify(Notification::StateChanged(id)));
            }
            State::Stopping {
                then: ref mut current,
                ..
            } => *current = then,
            // `starting` lasts only until the runtime reports the spawn, which it does before
            // taking the next input; treat it like a stopped app whose spawn is superseded
            State::Starting | State::Stopped | State::Backoff { .. } | State::Errored { .. } => {
                app.generation += 1;
                app.state = State::Stopped;
                self.after_stop(id, then, out);
            }
        }
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
                }));
            }
        }
    }

    fn spawned(&mut self, id: AppId, pid: u32, now: Instant, out: &mut Vec<Action>) {
        match self.apps.get_mut(&id) {
            Some(app) if matches!(app.state, State::Starting) => {
                app.state = State::Online { pid, since: now };
                out.push(Action::Notify(Notification::StateChanged(id)));
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
        match app.state {
            State::Online { since, .. } => {
                let reason = if status.signal().is_some() {
                    ExitReason::Signal
                } else {
                    ExitReason::Exit
                };
                app.last_exit = Some(Exit {
                    status,
                    reason,
                    source,
                    at: now,
                    uptime: now.saturating_duration_since(since),
                });
                let clean = status.code() == Some(0);
                let restart = match app.spec.autorestart {
                    Autorestart::Always => true,
                    Autorestart::OnFailure => !clean,
                    Autorestart::Never => false,
                };
                app.generation += 1;
                if restart {
                    let until = now + app.spec.restart.delay;
                    app.state = State::Backoff { until };
                    out.push(Action::SetTimer {
                        app: id,
                        generation: app.generation,
                        at: until,
                    });
                } else {
                    app.state = State::Stopped;
                }
                out.push(Action::Notify(Notification::StateChanged(id)));
            }
            State::Stopping { since, then, .. } => {
                app.last_exit = Some(Exit {
                    status,
                    reason: ExitReason::Manual,
                    source,
                    at: now,
                    uptime: now.saturating_duration_since(since),
                });
                app.generation += 1; // the kill timer is moot
                app.state = State::Stopped;
                self.after_stop(id, then, out);
            }
            // only online and stopping apps have a pid
            State::Starting | State::Stopped | State::Backoff { .. } | State::Errored { .. } => {}
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
            State::Backoff { .. } => {
                app.restarts += 1;
                self.begin_start(id, out);
            }
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
