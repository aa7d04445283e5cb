//! When an app's hooks run, decided here; the runtime runs them (`Action::RunHook`) off the
//! loop and reports [`Input::HookDone`](super::Input::HookDone).
//!
//! * `pre_start` runs before every spawn (the first, restarts, reloads). The app is `starting`
//!   meanwhile; the spawn follows its success. Its failure (non-zero exit, killed at its
//!   timeout, cannot start) is a crash of reason `pre_start` with its last stderr lines in the
//!   crash record's `detail`: the restart policy decides what follows, as for any crash.
//! * `post_start` runs once the process is spawned; nothing waits for it.
//! * `pre_stop` runs before the stop signal to a running main process (any stop: by hand, a
//!   restart, the memory limit, a failing health check, the daemon's shutdown). The app is
//!   `stopping` meanwhile; the stop signal, and `kill_timeout` after it, follow its end
//!   whatever its outcome. A process that exits meanwhile simply completes the stop.
//! * `post_stop` runs once the process group is gone (after a stop or a crash); nothing waits
//!   for it, so a restart's `pre_start` may overlap it.
//!
//! A hook's answer carries the app's generation when it was asked; a later transition (a stop
//! during `pre_start`) makes it stale and it is ignored.

use std::time::{Duration, Instant};

use turbo_api::ExitReason;

use super::{Action, App, AppId, Exit, HookFailure, State, Supervisor, process::crashed};
use crate::{events::SourceKind, spec::HookKind};

/// How long after a `pre_stop` hook's own timeout the supervisor stops waiting for its answer
/// and escalates (the runtime always answers at the timeout; this only guards against a lost
/// answer).
const PRE_STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs `kind` for `app` if it has one, with the app's generation as token; says whether it did.
pub(super) fn run(app: &App, kind: HookKind, out: &mut Vec<Action>) -> bool {
    if app.spec.hooks.get(kind).is_none() {
        return false;
    }
    out.push(Action::RunHook {
        app: app.id,
        hook: kind,
        token: app.generation,
        spec: Box::new(app.spec.clone()),
    });
    true
}

/// Starts a stop of `app` (already `stopping`, generation bumped) with its `pre_stop` hook;
/// says whether it has one (otherwise the caller sends the stop signal now).
pub(super) fn pre_stop(app: &mut App, now: Instant, out: &mut Vec<Action>) -> bool {
    let Some(hook) = app.spec.hooks.pre_stop.as_ref() else {
        return false;
    };
    let deadline = super::after(now, hook.timeout + PRE_STOP_GRACE);
    if let State::Stopping { deadline: d, .. } = &mut app.state {
        *d = deadline;
    }
    run(app, HookKind::PreStop, out);
    out.push(Action::SetTimer {
        app: app.id,
        generation: app.generation,
        at: deadline,
    });
    true
}

impl Supervisor {
    #[expect(
        clippy::too_many_arguments,
        reason = "the fields of Input::HookDone, spelled out"
    )]
    pub(super) fn hook_done(
        &mut self,
        id: AppId,
        hook: HookKind,
        token: u64,
        pid: u32,
        result: Result<(), HookFailure>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(app) = self.apps.get_mut(&id) else {
            return;
        };
        if app.generation != token {
            return; // superseded: stopped or restarted meanwhile
        }
        match (hook, &app.state, result) {
            (HookKind::PreStart, State::Starting, Ok(())) => out.push(Action::Spawn {
                app: id,
                spec: Box::new(app.spec.clone()),
            }),
            (HookKind::PreStart, State::Starting, Err(failure)) => {
                let exit = Exit {
                    status: failure.status,
                    reason: ExitReason::PreStart,
                    source: SourceKind::Procfs,
                    at: now,
                    uptime: Duration::ZERO,
                    detail: Some(format!("pre_start failed: {}", failure.message)),
                };
                crashed(app, pid, exit, now, out);
            }
            (
                HookKind::PreStop,
                State::Stopping {
                    pid: main,
                    exited: false,
                    killed: false,
                    ..
                },
                _,
            ) => {
                let main = *main;
                app.generation += 1; // the guard timer is moot
                let deadline = super::after(now, app.spec.kill_timeout);
                if let State::Stopping { deadline: d, .. } = &mut app.state {
                    *d = deadline;
                }
                out.push(Action::SignalGroup {
                    app: id,
                    pid: main,
                    signal: app.spec.stop_signal,
                });
                out.push(Action::SetTimer {
                    app: id,
                    generation: app.generation,
                    at: deadline,
                });
            }
            // post_start and post_stop are waited for by nothing
            _ => {}
        }
    }
}
