//! Facts about an app's processes: spawned, failed to spawn, exited, its group gone, and the
//! lifecycle timers (the restart delay, the kill timeout). Exits nobody asked for become crashes
//! and, by the restart policy, a backoff, `stopped` or `errored`.

use std::time::Instant;

use turbo_api::ExitReason;

use super::{
    Action, AfterStop, App, AppId, Desired, Exit, Notification, State, Supervisor,
    checks::{NotifyState, announce_ready, arm_checks},
    hooks,
};
use crate::{
    events::{SourceKind, WaitStatus},
    spec::{AppKind, HookKind, signal},
};

impl Supervisor {
    pub(super) fn spawned(&mut self, id: AppId, pid: u32, now: Instant, out: &mut Vec<Action>) {
        match self.apps.get_mut(&id) {
            Some(app) if matches!(app.state, State::Starting) => {
                app.state = State::Online { pid, since: now };
                app.lingering = None;
                app.memory_warned = false;
                app.health.reset();
                app.announced_ready = false;
                app.notify = NotifyState::default();
                arm_checks(app, now, true, out);
                if let Some(bytes) = app.spec.memory.warning() {
                    out.push(Action::SetMemoryLimit {
                        app: id,
                        pid,
                        bytes,
                    });
                }
                out.push(Action::Notify(Notification::StateChanged(id)));
                hooks::run(app, HookKind::PostStart, out);
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

    /// The runtime could not start the process of `id`: a first start that fails is final.
    pub(super) fn spawn_failed(&mut self, id: AppId, error: String, out: &mut Vec<Action>) {
        if let Some(a) = self.apps.get_mut(&id)
            && matches!(a.state, State::Starting)
        {
            a.state = State::Errored { reason: error };
            out.push(Action::Notify(Notification::StateChanged(id)));
        }
    }

    pub(super) fn exited(
        &mut self,
        pid: u32,
        status: WaitStatus,
        source: SourceKind,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(app) = self.running_as(pid) else {
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
                // leftovers of a crashed instance get the stop signal now (as systemd's
                // KillMode=control-group does) and SIGKILL before the next start
                out.push(Action::SignalGroup {
                    app: id,
                    pid,
                    signal: app.spec.stop_signal,
                });
                crashed(app, pid, exit, now, out);
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
            State::Starting
            | State::Stopped
            | State::Backoff { .. }
            | State::Errored { .. }
            | State::Waiting { .. }
            | State::Completed
            | State::Failed { .. } => {}
        }
    }

    pub(super) fn group_gone(&mut self, id: AppId, pgid: u32, now: Instant, out: &mut Vec<Action>) {
        let Some(app) = self.apps.get_mut(&id) else {
            return;
        };
        if app.lingering != Some(pgid) {
            return;
        }
        app.lingering = None;
        hooks::run(app, HookKind::PostStop, out);
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

    pub(super) fn timer(&mut self, id: AppId, generation: u64, out: &mut Vec<Action>) {
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
            State::Waiting { .. } => self.waiting_timed_out(id, out),
            _ => {}
        }
    }

    pub(super) fn restart_now(&mut self, id: AppId, out: &mut Vec<Action>) {
        let app = self.apps.get_mut(&id).expect("caller checked");
        app.restarts += 1;
        app.auto_restarts += 1;
        // not gated: its dependencies were met when it started (see `deps.rs`)
        self.start_process(id, out);
        out.push(Action::Notify(Notification::Persist));
    }
}

/// A crash of `app`: an exit of `pid` nobody asked for, or a `pre_start` that failed. Recorded
/// and announced; the restart policy decides what follows (backoff, `stopped`, `errored`).
pub(super) fn crashed(app: &mut App, pid: u32, exit: Exit, now: Instant, out: &mut Vec<Action>) {
    let id = app.id;
    let (status, uptime) = (exit.status, exit.uptime);
    app.last_exit = Some(exit.clone());
    // a one-shot job that exited 0 did its work: no crash
    let job_done = app.spec.lifecycle.kind == AppKind::Oneshot && status.code() == Some(0);
    if !job_done {
        out.push(Action::Notify(Notification::Crashed {
            app: id,
            pid,
            exit,
            restart_number: app.restarts,
        }));
    }
    app.generation += 1;
    app.state = app.after_crash(status, uptime, now);
    if let State::Backoff { until } = app.state {
        out.push(Action::SetTimer {
            app: id,
            generation: app.generation,
            at: until,
        });
    }
    if matches!(
        app.state,
        State::Stopped | State::Completed | State::Failed { .. }
    ) {
        app.desired = Desired::Stopped;
    }
    out.push(Action::Notify(Notification::StateChanged(id)));
    out.push(Action::Notify(Notification::Persist));
}

/// Moves `app` to `stopping`: the stop signal to its group now, SIGKILL at the kill timeout.
/// `exited` says whether the main process is already gone (only its group is left).
#[expect(
    clippy::too_many_arguments,
    reason = "one transition, spelled out at each call site"
)]
pub(super) fn begin_stopping(
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
    let deadline = super::after(now, app.spec.kill_timeout);
    app.state = State::Stopping {
        pid,
        since,
        deadline,
        killed: false,
        exited,
        cause,
        then,
    };
    out.push(Action::Notify(Notification::StateChanged(app.id)));
    if !exited && hooks::pre_stop(app, now, out) {
        return;
    }
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
}
