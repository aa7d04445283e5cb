//! Commands: start, stop, restart, delete, reset, restore (and the dispatch of scale, reload
//! and readiness waits), and the deferred replies that wait until every app they touch has
//! settled.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Instant,
};

use turbo_api::ExitReason;

use super::{
    Action, AfterStop, App, AppId, Command, CommandError, Desired, Notification, Reply, Restored,
    State, Supervisor, Target, Ticket, checks::arm_checks, hooks, process::begin_stopping,
};
use crate::spec::{AppSpec, HookKind};

/// A command whose reply waits for apps to settle.
#[derive(Debug)]
pub(super) struct Pending {
    ticket: Ticket,
    waiting: Vec<AppId>,
    reply: Reply,
    /// Start: a failed first spawn turns the reply into an error.
    fail_on_spawn_error: bool,
    /// Where in `waiting` the app that held the reply last time is: apps settle about in
    /// order, so looking from there first makes each check of a start of N apps cheap rather
    /// than O(N) (which made handling its N spawns quadratic).
    unsettled_at: usize,
}

impl Supervisor {
    pub(super) fn command(
        &mut self,
        ticket: Ticket,
        cmd: Command,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
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
            Command::StartNamed { target, no_deps } => self.start_named(&target, no_deps, out),
            Command::Update(specs) => self.update(specs, now, out),
            Command::Stop(target) => self.targets(&target).map(|ids| {
                self.stop_ordered(&ids, AfterStop::Stay, now, out);
                for &id in &ids {
                    self.apps.get_mut(&id).expect("resolved").desired = Desired::Stopped;
                }
                (ids.clone(), Reply::Apps(ids), false)
            }),
            Command::StopForShutdown => {
                let ids: Vec<AppId> = self.targets(&Target::All).unwrap_or_default();
                self.stop_ordered(&ids, AfterStop::Stay, now, out);
                Ok((ids.clone(), Reply::Apps(ids), false))
            }
            Command::Restart(target) => self.targets(&target).map(|ids| {
                let ids = self.with_followers(ids);
                self.stop_ordered(&ids, AfterStop::Start, now, out);
                (ids.clone(), Reply::Apps(ids), false)
            }),
            Command::Delete(target) => self.targets(&target).map(|ids| {
                let names = ids
                    .iter()
                    .map(|id| self.apps[id].spec.name.clone())
                    .collect();
                self.stop_ordered(&ids, AfterStop::Forget, now, out);
                (ids, Reply::Deleted(names), false)
            }),
            Command::Signal { target, signal } => self.signal(&target, signal, out),
            Command::WaitReady { target, timeout } => {
                self.wait_ready(ticket, &target, timeout, now, out);
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
                    unsettled_at: 0,
                });
            }
            Err(e) => out.push(Action::Reply {
                ticket,
                result: Err(e),
            }),
        }
    }

    pub(super) fn start(
        &mut self,
        specs: Vec<AppSpec>,
        exclusive: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Result<(Vec<AppId>, Reply, bool), CommandError> {
        // the apps by name, from one walk of the table rather than one per spec (a file of
        // 1,000 apps made a start quadratic before its first spawn)
        let mut by_name: BTreeMap<String, Vec<AppId>> = BTreeMap::new();
        for a in self.apps.values() {
            by_name.entry(a.spec.name.clone()).or_default().push(a.id);
        }
        // validate the whole request before touching anything: all or nothing
        let mut seen = BTreeSet::new();
        for spec in &specs {
            if !seen.insert(spec.name.as_str()) {
                return Err(CommandError::Duplicate(spec.name.clone()));
            }
            if exclusive && by_name.contains_key(&spec.name) {
                return Err(CommandError::AlreadyExists(spec.name.clone()));
            }
        }
        let mut ids = Vec::with_capacity(specs.len());
        for spec in specs {
            // the names are distinct: what this loop adds is never looked up again
            let existing = by_name.remove(&spec.name).unwrap_or_default();
            if existing.is_empty() {
                for instance in 0..spec.instances.max(1) {
                    let id = self.add_instance(&spec, instance, out);
                    if spec.autostart {
                        self.begin_start(id, out);
                    } else {
                        // defined, listed as stopped, started when asked by name
                        self.apps.get_mut(&id).expect("added").desired = Desired::Stopped;
                    }
                    ids.push(id);
                }
                continue;
            }
            let (name, count) = (spec.name.clone(), spec.instances.max(1));
            for id in existing {
                let app = self.apps.get_mut(&id).expect("found above");
                // a new instance count alone restarts nothing: scaling handles it below; nor
                // does the file it came from
                let changed = app.spec
                    != AppSpec {
                        instances: app.spec.instances,
                        source: app.spec.source.clone(),
                        ..spec.clone()
                    };
                app.spec = spec.clone();
                self.jobs.schedules_changed = true;
                if !spec.autostart && app.state == State::Stopped {
                    // a start of its file does not start it either: only a start by name
                    continue;
                }
                app.desired = Desired::Running;
                match app.state {
                    State::Stopped
                    | State::Errored { .. }
                    | State::Backoff { .. }
                    | State::Completed
                    | State::Failed { .. } => {
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

    pub(super) fn restore(
        &mut self,
        apps: Vec<Restored>,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> (Vec<AppId>, Reply, bool) {
        let mut ids = Vec::new();
        let mut to_start = Vec::new();
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
            self.apps.insert(id, Box::new(app));
            self.jobs.schedules_changed = true;
            out.push(Action::Notify(Notification::Added(id)));
            if run {
                to_start.push(id);
            }
            ids.push(id);
        }
        // once every app is back: a start sees (and pulls in) the dependencies restored after it
        for id in to_start {
            if self.apps[&id].state == State::Stopped {
                self.begin_start(id, out);
            }
        }
        (ids.clone(), Reply::Apps(ids), false)
    }

    pub(super) fn find(&self, name: &str) -> Option<AppId> {
        self.apps
            .values()
            .find(|a| a.spec.name == name)
            .map(|a| a.id)
    }

    /// Moves an app to `starting` and asks for a spawn, or to `waiting` while its dependencies
    /// are not met (`deps.rs`).
    pub(super) fn begin_start(&mut self, id: AppId, out: &mut Vec<Action>) {
        if !self.gate(id, out) {
            self.start_process(id, out);
        }
    }

    /// Moves an app to `starting` and asks for a spawn, whatever its dependencies.
    pub(super) fn start_process(&mut self, id: AppId, out: &mut Vec<Action>) {
        let app = self.apps.get_mut(&id).expect("caller checked");
        app.generation += 1; // cancels any backoff timer
        app.state = State::Starting;
        out.push(Action::Notify(Notification::StateChanged(id)));
        if !hooks::run(app, HookKind::PreStart, out) {
            out.push(Action::Spawn {
                app: id,
                spec: Box::new(app.spec.clone()),
            });
        }
    }

    pub(super) fn stop_one(
        &mut self,
        id: AppId,
        then: AfterStop,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
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
            // `starting` lasts until the runtime reports the spawn, which it does before taking
            // the next input, or until the app's `pre_start` hook ends; treat it like a stopped
            // app whose spawn is superseded (the hook's answer is then stale)
            State::Starting
            | State::Stopped
            | State::Backoff { .. }
            | State::Errored { .. }
            | State::Waiting { .. }
            | State::Completed
            | State::Failed { .. } => {
                app.generation += 1;
                app.state = State::Stopped;
                self.after_stop(id, then, out);
            }
        }
        out.push(Action::Notify(Notification::Persist));
    }

    pub(super) fn after_stop(&mut self, id: AppId, then: AfterStop, out: &mut Vec<Action>) {
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

    /// Emits the replies whose apps have all settled.
    pub(super) fn settle(&mut self, out: &mut Vec<Action>) {
        if self.pending.is_empty() {
            return;
        }
        let apps = &self.apps;
        let held: BTreeSet<AppId> = self.jobs.deferred_ids().collect();
        let settled =
            |id: &AppId| !held.contains(id) && apps.get(id).is_none_or(|a| a.state.is_settled());
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            // from where it was held last time, then the ones before (settled then, but an
            // app may have left its settled state since): the same answer as `all`
            let from = p.unsettled_at.min(p.waiting.len());
            let unsettled = (p.waiting[from..].iter().position(|id| !settled(id)))
                .map(|k| from + k)
                .or_else(|| p.waiting[..from].iter().position(|id| !settled(id)));
            if let Some(k) = unsettled {
                p.unsettled_at = k;
                i += 1;
            } else {
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
            }
        }
    }
}
