//! Dependencies between apps (`depends_on`) and one-shot jobs (`type: oneshot`).
//!
//! A start of an app whose dependencies are not met puts it in `waiting` (naming what it waits
//! for) instead of spawning it, and, unless the command said `no_deps`, starts the dependencies
//! that are stopped, errored or failed (as systemd pulls in `Requires=`). After every input the
//! waiting apps are looked at again: all met, the process is spawned; a dependency that errors
//! or fails while waited for fails the wait at once; `depends_timeout` fails it at its timer.
//! Automatic restarts after a crash are not gated: the dependency was met when the app started.
//!
//! Stopping a set of apps goes in reverse dependency order: an app is stopped only once the apps
//! of the same set that depend on it are gone, which also makes a restart of a set come back up
//! in order (the dependents wait for what they depend on). `restart_with_deps: true` on an app
//! adds it to every restart of an app it depends on.
//!
//! A one-shot job's exit 0 is `completed` (not a crash, not restarted), a failure is retried
//! `retries` times with the restart backoff, then `failed`. Both leave it `desired: stopped`.
//!
//! Like the rest of the supervisor: no I/O, no clock; the time is the input's.

use std::{
    collections::HashSet,
    time::{Instant, SystemTime},
};

use super::{
    Action, AfterStop, App, AppId, Notification, State, Supervisor, waits::human_duration,
};
use crate::{
    events::WaitStatus,
    spec::{Condition, Schedule},
};

/// What an app remembers about its dependencies and its schedule.
#[derive(Clone, Debug, Default)]
pub struct JobState {
    /// While waiting: the dependencies not met yet, as `name (condition)`.
    pub waiting_for: Vec<String>,
    /// The next run of its schedule (wall time).
    pub next_run: Option<SystemTime>,
    /// The schedule the timer was armed for (a changed one is armed again).
    pub(super) armed: Option<Schedule>,
    /// Token of the armed schedule timer.
    pub(super) token: u64,
    /// A `run` that found the previous one running with `overlap: queue`.
    pub(super) queued: bool,
}

/// The supervisor's side of dependencies and schedules.
#[derive(Debug, Default)]
pub(super) struct Jobs {
    /// The time of the input being handled (set by `handle`).
    pub(super) now: Option<Instant>,
    /// Wall time at a monotonic instant, given by the runtime (`Supervisor::set_wall`).
    pub(super) wall: Option<(Instant, SystemTime)>,
    /// Whether the command being handled asked not to start missing dependencies.
    pub(super) no_deps: bool,
    /// Stops held back until the apps of the same set that depend on them are gone.
    deferred: Vec<Deferred>,
    /// An app may be `waiting`: set when one is put there, cleared by a pass that finds none.
    /// Every input ends with `advance_jobs`, and a walk of the whole table per input made any
    /// command over N apps (a start, a stop: N inputs) quadratic.
    pub(super) may_wait: bool,
    /// A job may have a queued run (`overlap: queue`): set when one is queued, cleared by a
    /// pass that finds none still queued.
    pub(super) may_queue: bool,
    /// An app was added or its spec replaced since the schedules were last armed (the same
    /// walk per input, for `arm_schedules`).
    pub(super) schedules_changed: bool,
}

impl Jobs {
    /// The apps whose stop is held back.
    pub(super) fn deferred_ids(&self) -> impl Iterator<Item = AppId> + '_ {
        self.deferred.iter().map(|d| d.id)
    }
}

#[derive(Debug)]
struct Deferred {
    id: AppId,
    then: AfterStop,
    set: Vec<AppId>,
}

/// A dependency not met.
struct Unmet {
    /// `name (condition)`.
    label: String,
    /// Set when it cannot be met without a user: what happened to it.
    failed: Option<String>,
}

impl Supervisor {
    /// The dependencies of `id` not met now.
    fn unmet(&self, id: AppId) -> Vec<Unmet> {
        let app = &self.apps[&id];
        let mut unmet = Vec::new();
        for dep in &app.spec.lifecycle.depends_on {
            let label = format!("{} ({})", dep.name, dep.condition.as_str());
            let instances: Vec<&App> = self
                .apps()
                .filter(|a| a.spec.name == dep.name && !self.retiring.contains(&a.id))
                .collect();
            if instances.is_empty() {
                unmet.push(Unmet {
                    label: format!("{} (not defined)", dep.name),
                    failed: None,
                });
                continue;
            }
            let met = instances
                .iter()
                .all(|d| meets(d, dep.condition) && !self.is_deferred(d.id));
            if met {
                continue;
            }
            let failed = instances.iter().find_map(|d| match &d.state {
                State::Errored { reason } | State::Failed { reason } => {
                    Some(format!("{} is {}: {reason}", dep.name, d.state.public()))
                }
                _ => None,
            });
            unmet.push(Unmet { label, failed });
        }
        unmet
    }

    /// Whether `id` is held back by a stop in order (a command's reply waits for it).
    pub(super) fn is_deferred(&self, id: AppId) -> bool {
        self.jobs.deferred.iter().any(|d| d.id == id)
    }

    /// Called by `begin_start`: with unmet dependencies the app goes to `waiting` (and its
    /// stopped dependencies are started, unless the command said `no_deps`). Returns whether it
    /// waits.
    pub(super) fn gate(&mut self, id: AppId, out: &mut Vec<Action>) -> bool {
        let unmet = self.unmet(id);
        let app = self.apps.get_mut(&id).expect("caller checked");
        if unmet.is_empty() {
            app.jobs.waiting_for.clear();
            return false;
        }
        let now = self.jobs.now.expect("set by handle");
        app.generation += 1; // cancels any backoff timer
        let deadline = super::after(now, app.spec.lifecycle.depends_timeout);
        app.state = State::Waiting { deadline };
        app.jobs.waiting_for = unmet.into_iter().map(|u| u.label).collect();
        self.jobs.may_wait = true;
        out.push(Action::SetTimer {
            app: id,
            generation: app.generation,
            at: deadline,
        });
        out.push(Action::Notify(Notification::StateChanged(id)));
        if !self.jobs.no_deps {
            let names: Vec<String> = app
                .spec
                .lifecycle
                .depends_on
                .iter()
                .map(|d| d.name.clone())
                .collect();
            for name in names {
                for dep in self.named(&name) {
                    let held = self.is_deferred(dep);
                    let d = self.apps.get_mut(&dep).expect("named");
                    if matches!(
                        d.state,
                        State::Stopped | State::Errored { .. } | State::Failed { .. }
                    ) && !held
                    {
                        d.clear_history();
                        d.desired = super::Desired::Running;
                        self.begin_start(dep, out);
                        out.push(Action::Notify(Notification::Persist));
                    }
                }
            }
        }
        true
    }

    /// `Command::StartNamed`: the apps of `target` that are not running start (their crash
    /// history forgotten, as a start by hand does), waiting ones wait again (pulling their
    /// dependencies unless `no_deps`); running ones are left alone.
    pub(super) fn start_named(
        &mut self,
        target: &super::Target,
        no_deps: bool,
        out: &mut Vec<Action>,
    ) -> Result<(Vec<AppId>, super::Reply, bool), super::CommandError> {
        let ids = self.targets(target)?;
        self.jobs.no_deps = no_deps;
        for &id in &ids {
            let app = self.apps.get_mut(&id).expect("resolved");
            // a waiting app is gated again: with `no_deps` off, its dependencies start now
            if matches!(
                app.state,
                State::Stopped
                    | State::Errored { .. }
                    | State::Failed { .. }
                    | State::Completed
                    | State::Waiting { .. }
            ) {
                app.clear_history();
                app.desired = super::Desired::Running;
                self.begin_start(id, out);
            }
        }
        self.jobs.no_deps = false;
        out.push(Action::Notify(Notification::Persist));
        Ok((ids.clone(), super::Reply::Apps(ids), true))
    }

    /// After every input: waiting apps whose dependencies are met start; those with a
    /// dependency that errored or failed fail. Held-back stops whose dependents are gone go on.
    pub(super) fn advance_jobs(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.advance_deferred(now, out);
        let waiting: Vec<AppId> = if self.jobs.may_wait {
            self.apps
                .values()
                .filter(|a| matches!(a.state, State::Waiting { .. }))
                .map(|a| a.id)
                .collect()
        } else {
            Vec::new()
        };
        self.jobs.may_wait = !waiting.is_empty();
        for id in waiting {
            let unmet = self.unmet(id);
            if unmet.is_empty() {
                self.apps
                    .get_mut(&id)
                    .expect("listed")
                    .jobs
                    .waiting_for
                    .clear();
                self.start_process(id, out);
                continue;
            }
            let app = self.apps.get_mut(&id).expect("listed");
            if let Some(failed) = unmet.iter().find_map(|u| u.failed.clone()) {
                app.generation += 1;
                app.jobs.waiting_for.clear();
                app.state = State::Errored {
                    reason: format!(
                        "dependency {failed}; fix it, then `turbo start {}`",
                        app.spec.name
                    ),
                };
                out.push(Action::Notify(Notification::StateChanged(id)));
            } else {
                app.jobs.waiting_for = unmet.into_iter().map(|u| u.label).collect();
            }
        }
        // a queued run of a job starts once the previous one has ended
        if !self.jobs.may_queue {
            return;
        }
        let queued: Vec<AppId> = self
            .apps
            .values()
            .filter(|a| {
                a.jobs.queued
                    && matches!(
                        a.state,
                        State::Stopped
                            | State::Completed
                            | State::Failed { .. }
                            | State::Errored { .. }
                    )
            })
            .map(|a| a.id)
            .collect();
        for id in queued {
            let app = self.apps.get_mut(&id).expect("listed");
            app.jobs.queued = false;
            app.clear_history();
            app.desired = super::Desired::Running;
            self.begin_start(id, out);
        }
        self.jobs.may_queue = self.apps.values().any(|a| a.jobs.queued);
    }

    /// The wait of `id` passed `depends_timeout`.
    pub(super) fn waiting_timed_out(&mut self, id: AppId, out: &mut Vec<Action>) {
        let app = self.apps.get_mut(&id).expect("caller checked");
        let waited = human_duration(app.spec.lifecycle.depends_timeout);
        app.generation += 1;
        app.state = State::Errored {
            reason: format!(
                "waited {waited} for its dependencies: {} (depends_timeout); `turbo start {}` tries again",
                app.jobs.waiting_for.join(", "),
                app.spec.name
            ),
        };
        app.jobs.waiting_for.clear();
        out.push(Action::Notify(Notification::StateChanged(id)));
    }

    /// Stops `ids` in reverse dependency order: an app whose dependents in `ids` still run is
    /// held back until they are gone.
    pub(super) fn stop_ordered(
        &mut self,
        ids: &[AppId],
        then: AfterStop,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        // only an app that another app of `ids` names as a dependency can be held: the names
        // first, so that a stop of N apps without dependencies is not N walks of `ids`
        let named: HashSet<&str> = ids
            .iter()
            .filter_map(|id| self.apps.get(id))
            .flat_map(|a| a.spec.lifecycle.depends_on.iter().map(|d| d.name.as_str()))
            .collect();
        let held: HashSet<AppId> = ids
            .iter()
            .copied()
            .filter(|id| {
                self.apps
                    .get(id)
                    .is_some_and(|a| named.contains(a.spec.name.as_str()))
            })
            .filter(|&id| self.dependents_in(id, ids).next().is_some())
            .collect();
        for &id in ids {
            if held.contains(&id) {
                // a held-back app is not waited for by its dependents' restarts either
                self.jobs.deferred.retain(|d| d.id != id);
                self.jobs.deferred.push(Deferred {
                    id,
                    then,
                    set: ids.to_vec(),
                });
            } else {
                self.stop_one(id, then, now, out);
            }
        }
        self.advance_deferred(now, out);
    }

    /// The apps of `set` that depend on `id` and still run.
    fn dependents_in<'a>(
        &'a self,
        id: AppId,
        set: &'a [AppId],
    ) -> impl Iterator<Item = AppId> + 'a {
        let name = self.apps.get(&id).map(|a| a.spec.name.clone());
        set.iter().copied().filter(move |&d| {
            d != id
                && self.apps.get(&d).is_some_and(|a| {
                    name.as_ref().is_some_and(|n| {
                        a.spec.lifecycle.depends_on.iter().any(|dep| dep.name == *n)
                    }) && (matches!(
                        a.state,
                        State::Online { .. } | State::Stopping { .. } | State::Starting
                    ) || self.is_deferred(d))
                })
        })
    }

    fn advance_deferred(&mut self, now: Instant, out: &mut Vec<Action>) {
        loop {
            let ready = self.jobs.deferred.iter().position(|d| {
                !self.apps.contains_key(&d.id) || self.dependents_in(d.id, &d.set).next().is_none()
            });
            let Some(i) = ready else {
                return;
            };
            let d = self.jobs.deferred.remove(i);
            if self.apps.contains_key(&d.id) {
                self.stop_one(d.id, d.then, now, out);
            }
        }
    }

    /// `ids` and, transitively, the running apps with `restart_with_deps` that depend on one
    /// of them.
    pub(super) fn with_followers(&self, mut ids: Vec<AppId>) -> Vec<AppId> {
        let mut i = 0;
        while i < ids.len() {
            let name = self.apps[&ids[i]].spec.name.clone();
            for a in self.apps.values() {
                if a.spec.lifecycle.restart_with_deps
                    && matches!(a.state, State::Online { .. })
                    && a.spec.lifecycle.depends_on.iter().any(|d| d.name == name)
                    && !ids.contains(&a.id)
                {
                    ids.push(a.id);
                }
            }
            i += 1;
        }
        ids.sort_unstable();
        ids
    }
}

/// Whether `dep` meets `condition`. A completed job meets every condition: it was started and
/// did what it had to.
fn meets(dep: &App, condition: Condition) -> bool {
    match dep.state {
        State::Completed => true,
        State::Online { .. } => match condition {
            Condition::Started => true,
            Condition::Ready => dep.is_ready(),
            Condition::Completed => false,
        },
        _ => false,
    }
}

impl App {
    /// The state of a one-shot job after its process exited on its own.
    pub(super) fn after_job(&mut self, status: WaitStatus, now: Instant) -> State {
        if status.code() == Some(0) {
            return State::Completed;
        }
        if self.auto_restarts < self.spec.lifecycle.retries {
            self.streak += 1;
            return State::Backoff {
                until: super::after(now, self.spec.restart.delay_for(self.streak)),
            };
        }
        let how = status.code().map_or_else(
            || format!("was killed by signal {}", status.signal().unwrap_or(0)),
            |c| format!("exited with code {c}"),
        );
        State::Failed {
            reason: format!(
                "{how} after {} attempt(s) (retries: {}); `turbo start {}` runs it again",
                self.auto_restarts + 1,
                self.spec.lifecycle.retries,
                self.spec.name
            ),
        }
    }
}
