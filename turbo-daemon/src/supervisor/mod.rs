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
//! The code is split by input family: the vocabulary (`input.rs`: inputs and commands;
//! `output.rs`: actions, notifications, replies), commands (`commands.rs`), facts about processes
//! (`process.rs`: spawned, exited, group gone, lifecycle timers), memory (`memory.rs`), health
//! checks, readiness and watch mode (`checks.rs`) and readiness waits (`waits.rs`). Cluster
//! instances are apps of their own sharing a name (`instances.rs`: numbering, scale); a rolling
//! reload is a small state machine beside the app table (`reload.rs`); `turbo signal` and
//! `reload_signal` are in `signals.rs`; when hooks run around a spawn and a stop is decided in
//! `hooks.rs`. Dependencies and one-shot jobs (`deps.rs`: `waiting`, `completed`, `failed`, stops
//! in reverse order) and schedules (`schedule.rs`: `cron:`, wall time given by the runtime) are
//! decided here too. What an app *is* (its
//! spec) comes from `crate::spec`; the supervisor never reads a config.

pub mod alerts;
mod app;
pub mod checks;
mod commands;
mod deps;
mod hooks;
mod input;
mod instances;
pub mod leak;
mod memory;
mod output;
mod process;
mod reload;
mod schedule;
mod signals;
#[cfg(test)]
mod tests;
mod update;
mod waits;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, Instant},
};

pub use self::{
    app::{AfterStop, App, Desired, Exit, State},
    checks::NotifyMessage,
    deps::JobState,
    input::{Command, HookFailure, Input, Restored, Target, WakeKind},
    output::{Action, CommandError, Notification, Reply},
    reload::{READY_TIMEOUT, SETTLE},
    waits::HEALTH_FAILED,
};
use self::{commands::Pending, waits::ReadyWait};

/// `now + d`, or a moment too far off to matter when that sum does not fit an `Instant`: a
/// timer computed from a spec never panics (specs are bounded when read, see `spec::units`,
/// and this holds for any spec built otherwise too).
#[must_use]
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    /// Far enough for any timer, near enough to fit every clock.
    const FAR: Duration = Duration::from_secs(100 * 365 * 86_400);
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// Numeric app id, stable for the daemon's lifetime.
pub type AppId = u32;
/// Identifies a command so its reply can be routed back to the caller.
pub type Ticket = u64;

/// The app table and the pending replies. See the module docs.
#[derive(Debug, Default)]
pub struct Supervisor {
    /// Boxed: an `App` is over a kilobyte, and a B-tree node holds eleven of them inline
    /// whether it is full or not (a third of the table was empty slots at 1000 apps).
    apps: BTreeMap<AppId, Box<App>>,
    next_id: AppId,
    pending: Vec<Pending>,
    /// Reloads under way, one step at a time each.
    reloads: Vec<reload::Reload>,
    /// Replacements of an aborted reload, being stopped and forgotten: commands leave them be.
    retiring: BTreeSet<AppId>,
    waits: Vec<ReadyWait>,
    /// Dependencies and schedules (`deps.rs`, `schedule.rs`).
    jobs: deps::Jobs,
    /// The app each main process was last seen to be: a hint, checked before it is used
    /// (see [`Self::running_as`]).
    by_pid: HashMap<u32, AppId>,
}

impl Supervisor {
    /// An empty supervisor.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every app, in id order.
    pub fn apps(&self) -> impl Iterator<Item = &App> {
        self.apps.values().map(|a| &**a)
    }

    /// One app.
    #[must_use]
    pub fn app(&self, id: AppId) -> Option<&App> {
        self.apps.get(&id).map(|a| &**a)
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
            Target::Group(group) => self
                .apps
                .values()
                .filter(|a| a.spec.app_group.as_ref() == Some(group))
                .map(|a| a.id)
                .collect(),
        };
        match target {
            Target::Id(id) if ids.is_empty() => Err(CommandError::NotFound(id.to_string())),
            Target::Name(n) if ids.is_empty() => Err(CommandError::NotFound(n.clone())),
            Target::Instance(n, k) if ids.is_empty() => {
                Err(CommandError::NotFound(format!("{n}:{k}")))
            }
            Target::Group(g) if ids.is_empty() => Err(CommandError::NotFound(format!("@{g}"))),
            _ => Ok(ids),
        }
    }

    /// The app whose main process is `pid`. From the hint when it still holds; else one walk
    /// of the table, which makes the hint for every running app: each exit of a stop of N
    /// apps walked the table before (quadratic).
    fn running_as(&mut self, pid: u32) -> Option<&mut App> {
        let hinted = self
            .by_pid
            .get(&pid)
            .copied()
            .filter(|id| self.apps.get(id).is_some_and(|a| a.pid() == Some(pid)));
        let id = match hinted {
            Some(id) => id,
            None => {
                self.by_pid.clear();
                for a in self.apps.values() {
                    if let Some(p) = a.pid() {
                        // the first in id order, as a walk would find it
                        self.by_pid.entry(p).or_insert(a.id);
                    }
                }
                *self.by_pid.get(&pid)?
            }
        };
        self.apps.get_mut(&id).map(|a| &mut **a)
    }

    /// Reacts to one input at `now`.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.jobs.now = Some(now);
        match input {
            Input::Command(ticket, cmd) => self.command(ticket, cmd, now, &mut out),
            Input::Wake {
                app,
                kind: WakeKind::Schedule,
                token,
            } => self.schedule_due(app, token, now, &mut out),
            Input::Spawned { app, pid } => self.spawned(app, pid, now, &mut out),
            Input::SpawnFailed { app, error } => self.spawn_failed(app, error, &mut out),
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
            Input::OomKilled { pid } => self.oom_killed(pid),
            Input::Timer { app, generation } => self.timer(app, generation, &mut out),
            Input::Wake { app, kind, token } => self.wake(app, kind, token, now, &mut out),
            Input::ProbeResult {
                app,
                generation,
                result,
            } => self.probe_result(app, generation, result, now, &mut out),
            Input::FilesChanged { app } => self.files_changed(app, now, &mut out),
            Input::WaitExpired(ticket) => self.wait_expired(ticket, &mut out),
            Input::Notified { app, message } => self.notified(app, message, now, &mut out),
            Input::HookDone {
                app,
                hook,
                token,
                pid,
                result,
            } => self.hook_done(app, hook, token, pid, result, now, &mut out),
        }
        self.advance_reloads(now, &mut out);
        self.advance_jobs(now, &mut out);
        self.arm_schedules(now, &mut out);
        self.settle(&mut out);
        self.settle_waits(&mut out);
        out
    }
}
