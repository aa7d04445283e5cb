//! Zero-downtime reload: the running instances of the targeted apps are replaced one at a time.
//!
//! For each running instance: a replacement (a new app id with the same name, spec and instance
//! number) starts; once it [`App::is_ready`](super::App::is_ready) and has stayed so for [`SETTLE`], the old instance
//! is stopped gracefully and forgotten, and the replacement takes over its restart count (plus
//! one, as a restart by hand) and, through [`Notification::Replaced`], its crash records. Then
//! the next instance. Instances that are not running are restarted in place.
//!
//! The reload is abandoned when the replacement exits, fails to start or is not ready within
//! [`READY_TIMEOUT`]: the replacement is stopped and forgotten, every instance not yet replaced
//! keeps running untouched, and the reply is a one-line error. A `stop`, `restart`, `delete` or
//! `start` of the same app (and the daemon's shutdown) interrupts it the same way; a `scale` or
//! a second `reload` of it is refused while it lasts ([`CommandError::Busy`]).
//!
//! An online app with `reload_signal:` and no `listen:` is not replaced: it gets that signal
//! (`signals.rs`), as nginx, gunicorn and uwsgi reload themselves.
//!
//! Pure, like the rest of the core: deadlines are checked when the supervisor handles an input,
//! and a wake-up timer ([`WAKE_ONLY`]) makes sure one arrives at each deadline.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use super::{
    Action, AfterStop, AppId, Command, CommandError, Desired, Notification, Reply, State,
    Supervisor, Target, Ticket,
};
use crate::spec::{AppSpec, ReadyMode};

/// How long a replacement may take to become ready before the reload is given up, at least
/// (see `ready_timeout`).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a replacement must stay ready before the old instance is stopped: a process that
/// dies at once (a port it cannot bind, a config error) is caught before the old one goes.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Generation of the timers that only wake the supervisor up; no app ever reaches it, so such a
/// timer never counts as an app's own.
const WAKE_ONLY: u64 = u64::MAX;

/// One reload command under way.
#[derive(Debug)]
pub(super) struct Reload {
    ticket: Ticket,
    /// Names of the apps it covers.
    names: Vec<String>,
    /// Running instances still to replace, in order.
    queue: VecDeque<AppId>,
    step: Option<Step>,
    /// The apps to list in the reply: replacements and instances restarted in place.
    done: Vec<AppId>,
}

/// The instance being replaced now.
#[derive(Debug)]
struct Step {
    old: AppId,
    new: AppId,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The replacement starts; the reload fails at `deadline` unless it is ready.
    Waiting { deadline: Instant },
    /// The replacement is ready since `until - SETTLE`.
    Settling { until: Instant, deadline: Instant },
    /// The old instance is stopping; the step ends when it is forgotten.
    StoppingOld,
}

/// How long a replacement of `spec` may take to become ready: [`READY_TIMEOUT`], or longer when
/// the app's own settings allow more (`ready_timeout` with `ready: notify`; a health check's
/// `start_period` plus its first check), plus the `pre_start` hook's timeout.
fn ready_timeout(spec: &AppSpec) -> Duration {
    let notify = match spec.readiness.mode {
        ReadyMode::Notify => spec.readiness.timeout,
        ReadyMode::Spawn => Duration::ZERO,
    };
    let health = spec
        .health
        .as_ref()
        .map_or(Duration::ZERO, |h| h.start_period + h.interval + h.timeout);
    // a replacement's `pre_start` runs before it can be ready at all
    let hook = spec
        .hooks
        .pre_start
        .as_ref()
        .map_or(Duration::ZERO, |h| h.timeout);
    READY_TIMEOUT.max(notify).max(health) + hook
}

impl Supervisor {
    /// Whether a reload of app `name` is under way.
    pub(super) fn reloading(&self, name: &str) -> bool {
        self.reloads
            .iter()
            .any(|r| r.names.iter().any(|n| n == name))
    }

    /// Begins a reload of `target`, answered with `ticket` when it ends.
    pub(super) fn reload(
        &mut self,
        ticket: Ticket,
        target: &Target,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Result<(), CommandError> {
        let ids = self.targets(target)?;
        let mut names: Vec<String> = ids
            .iter()
            .map(|id| self.apps[id].spec.name.clone())
            .collect();
        names.dedup();
        if let Some(busy) = names.iter().find(|n| self.reloading(n)) {
            return Err(CommandError::Busy(busy.clone()));
        }
        let mut queue = VecDeque::new();
        let mut done = Vec::new();
        for id in ids {
            if self.reload_by_signal(id, out) {
                done.push(id);
            } else if matches!(self.apps[&id].state, State::Online { .. }) {
                queue.push_back(id);
            } else {
                // nothing running to keep up: a restart by hand
                self.stop_one(id, AfterStop::Start, now, out);
                done.push(id);
            }
        }
        self.reloads.push(Reload {
            ticket,
            names,
            queue,
            step: None,
            done,
        });
        Ok(())
    }

    /// Moves every reload on as far as it can go now; answers those that ended.
    pub(super) fn advance_reloads(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.retiring.retain(|id| self.apps.contains_key(id));
        let mut i = 0;
        while i < self.reloads.len() {
            match self.advance(i, now, out) {
                Some(result) => {
                    let r = self.reloads.remove(i);
                    out.push(Action::Reply {
                        ticket: r.ticket,
                        result,
                    });
                }
                None => i += 1,
            }
        }
    }

    /// Moves reload `i` on; `Some` with its answer once it ended.
    fn advance(
        &mut self,
        i: usize,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Option<Result<Reply, CommandError>> {
        loop {
            let Some(step) = self.reloads[i].step.as_ref() else {
                let old = match self.reloads[i].queue.pop_front() {
                    Some(old) => old,
                    None => return Some(Ok(Reply::Apps(self.reloads[i].done.clone()))),
                };
                self.begin_step(i, old, now, out);
                continue;
            };
            let (old, new, phase) = (step.old, step.new, step.phase);
            match phase {
                Phase::StoppingOld => {
                    if self.apps.contains_key(&old) {
                        return None;
                    }
                    let r = &mut self.reloads[i];
                    r.done.push(new);
                    r.step = None;
                }
                Phase::Waiting { deadline } | Phase::Settling { deadline, .. } => {
                    if let Some(why) = self.replacement_failure(new) {
                        return Some(Err(self.abort(i, &why, now, out)));
                    }
                    let ready = self.apps[&new].is_ready();
                    let next = match phase {
                        Phase::Waiting { .. } if ready => {
                            let until = now + SETTLE;
                            out.push(Action::SetTimer {
                                app: new,
                                generation: WAKE_ONLY,
                                at: until,
                            });
                            Phase::Settling { until, deadline }
                        }
                        Phase::Settling { until, .. } if ready && now >= until => {
                            out.push(Action::Notify(Notification::Replaced { old, new }));
                            self.stop_one(old, AfterStop::Forget, now, out);
                            Phase::StoppingOld
                        }
                        // it was ready and is no longer (readiness or health lost)
                        Phase::Settling { .. } if !ready => Phase::Waiting { deadline },
                        _ if now >= deadline => {
                            let limit = ready_timeout(&self.apps[&new].spec);
                            let why = format!("was not ready within {}s", limit.as_secs());
                            return Some(Err(self.abort(i, &why, now, out)));
                        }
                        _ => return None,
                    };
                    let settled = next == phase;
                    self.reloads[i].step.as_mut().expect("checked").phase = next;
                    if settled || matches!(next, Phase::Settling { .. }) {
                        return None;
                    }
                }
            }
        }
    }

    /// Starts the replacement of running instance `old` for reload `i` (or restarts `old` in
    /// place when it stopped running meanwhile).
    fn begin_step(&mut self, i: usize, old: AppId, now: Instant, out: &mut Vec<Action>) {
        let Some(app) = self.apps.get(&old) else {
            return; // gone meanwhile
        };
        if !matches!(app.state, State::Online { .. }) {
            self.stop_one(old, AfterStop::Start, now, out);
            self.reloads[i].done.push(old);
            return;
        }
        let (spec, instance, restarts) = (app.spec.clone(), app.instance, app.restarts);
        let new = self.add_instance(&spec, instance, out);
        let replacement = self.apps.get_mut(&new).expect("added");
        // a restart by hand, as far as counters and history go
        replacement.restarts = restarts + 1;
        replacement.desired = Desired::Running;
        self.begin_start(new, out);
        out.push(Action::Notify(Notification::Persist));
        let deadline = super::after(now, ready_timeout(&spec));
        out.push(Action::SetTimer {
            app: new,
            generation: WAKE_ONLY,
            at: deadline,
        });
        self.reloads[i].step = Some(Step {
            old,
            new,
            phase: Phase::Waiting { deadline },
        });
    }

    /// Why replacement `new` cannot take over any more, if it cannot.
    fn replacement_failure(&self, new: AppId) -> Option<String> {
        let app = self.apps.get(&new)?;
        match &app.state {
            State::Starting | State::Online { .. } => None,
            State::Errored { reason } if app.last_exit.is_none() => {
                Some(format!("could not start: {reason}"))
            }
            _ => Some(match &app.last_exit {
                Some(exit) => match (exit.status.code(), exit.status.signal()) {
                    (_, Some(sig)) => format!("was killed by signal {sig}"),
                    (Some(code), None) => format!("exited with code {code}"),
                    (None, None) => "exited".to_owned(),
                },
                None => "stopped".to_owned(),
            }),
        }
    }

    /// Gives reload `i` up: its replacement in progress (if the old instance is not already
    /// stopping) is stopped and forgotten. Returns the error to answer with.
    fn abort(&mut self, i: usize, why: &str, now: Instant, out: &mut Vec<Action>) -> CommandError {
        let r = &mut self.reloads[i];
        let step = r.step.take();
        r.queue.clear();
        let replacement = match step {
            Some(Step { new, phase, .. }) if phase != Phase::StoppingOld => {
                let found = self
                    .apps
                    .get(&new)
                    .map(|a| (a.spec.name.clone(), a.instance));
                if found.is_some() {
                    self.retiring.insert(new);
                    self.stop_one(new, AfterStop::Forget, now, out);
                }
                found
            }
            _ => None,
        };
        CommandError::ReloadFailed(match replacement {
            Some((name, instance)) => format!(
                "reload of '{name}' aborted: the replacement of instance {instance} {why}; the instances not yet replaced keep running"
            ),
            None => format!(
                "reload of '{}' aborted: it {why}; the instances not yet replaced keep running",
                self.reloads[i].names.join("', '")
            ),
        })
    }

    /// Interrupts the reloads of the apps `cmd` is about to stop, restart, delete or start
    /// again (see the module docs): each answers with an error. Returns the replacements now
    /// on their way out, which the command's answer waits for too.
    pub(super) fn interrupt_reloads(
        &mut self,
        cmd: &Command,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Vec<AppId> {
        if self.reloads.is_empty() {
            return Vec::new();
        }
        let (verb, names): (&str, Vec<String>) = match cmd {
            Command::Stop(t) | Command::Restart(t) | Command::Delete(t) => {
                let verb = match cmd {
                    Command::Stop(_) => "`turbo stop`",
                    Command::Restart(_) => "`turbo restart`",
                    _ => "`turbo delete`",
                };
                let ids = self.resolve(t).unwrap_or_default();
                (
                    verb,
                    ids.iter()
                        .map(|id| self.apps[id].spec.name.clone())
                        .collect(),
                )
            }
            // an exclusive start of an existing name is refused: it changes nothing
            Command::Start {
                specs,
                exclusive: false,
            } => (
                "`turbo start`",
                specs.iter().map(|s| s.name.clone()).collect(),
            ),
            Command::StopForShutdown => (
                "the daemon's shutdown",
                self.apps.values().map(|a| a.spec.name.clone()).collect(),
            ),
            // starts only what is not running, which a reload never is
            Command::Start { .. }
            | Command::StartNamed { .. }
            | Command::Reset(_)
            | Command::Restore(_)
            | Command::Scale { .. }
            | Command::Update(_)
            | Command::Reload(_)
            | Command::Signal { .. }
            | Command::WaitReady { .. } => {
                return Vec::new();
            }
        };
        let before: Vec<AppId> = self.retiring.iter().copied().collect();
        let mut i = 0;
        while i < self.reloads.len() {
            if self.reloads[i].names.iter().any(|n| names.contains(n)) {
                let error = self.abort(i, &format!("was interrupted by {verb}"), now, out);
                let r = self.reloads.remove(i);
                out.push(Action::Reply {
                    ticket: r.ticket,
                    result: Err(error),
                });
            } else {
                i += 1;
            }
        }
        self.retiring
            .iter()
            .copied()
            .filter(|id| !before.contains(id))
            .collect()
    }
}
