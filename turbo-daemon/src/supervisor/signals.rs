//! `turbo signal` and `reload_signal:`: a signal to the main process of running apps.
//!
//! The signal goes to the main process alone, not to its process group: the masters of nginx,
//! gunicorn or uwsgi handle SIGHUP and pass on to their workers what they need, while a worker
//! that got SIGHUP itself would, by default, die. Only apps with a process are signalled; the
//! others are left out of the reply, and a target with no running app at all is an error.
//! Decides only; the runtime sends ([`Action::SignalProcess`]).

use super::{Action, AppId, CommandError, Reply, State, Supervisor, Target};

impl Supervisor {
    /// `turbo signal SIG TARGET`: the apps signalled, answered at once (nothing is waited for).
    pub(super) fn signal(
        &self,
        target: &Target,
        signal: i32,
        out: &mut Vec<Action>,
    ) -> Result<(Vec<AppId>, Reply, bool), CommandError> {
        let ids = self.targets(target)?;
        let running: Vec<AppId> = ids
            .iter()
            .copied()
            .filter(|id| {
                self.apps[id].pid().is_some_and(|pid| {
                    out.push(Action::SignalProcess {
                        app: *id,
                        pid,
                        signal,
                    });
                    true
                })
            })
            .collect();
        if running.is_empty() {
            let name = ids
                .first()
                .map_or_else(String::new, |id| self.apps[id].spec.name.clone());
            return Err(CommandError::NotRunning(format!(
                "no process to signal: '{name}' is not running (`turbo status` shows its state; `turbo restart {name}` starts it)"
            )));
        }
        Ok((Vec::new(), Reply::Apps(running), false))
    }

    /// Reloads app `id` with its `reload_signal` when that is how it reloads (online, a
    /// `reload_signal`, no `listen:` sockets to hand over); says whether it did.
    pub(super) fn reload_by_signal(&self, id: AppId, out: &mut Vec<Action>) -> bool {
        let app = &self.apps[&id];
        match (app.spec.reload_signal, &app.state) {
            (Some(signal), State::Online { pid, .. }) if app.spec.listen.is_empty() => {
                out.push(Action::SignalProcess {
                    app: id,
                    pid: *pid,
                    signal,
                });
                true
            }
            _ => false,
        }
    }
}
