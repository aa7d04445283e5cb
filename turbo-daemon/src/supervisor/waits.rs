//! Readiness waits (`Command::WaitReady`, behind `--wait`): answered once every target app is
//! ready, at once when one fails first, or at the wait's own timeout.

use std::time::{Duration, Instant};

use turbo_api::ExitReason;

use super::{Action, App, AppId, CommandError, Reply, State, Supervisor, Target, Ticket};
use crate::spec::ReadyMode;

/// A [`Command::WaitReady`](super::Command::WaitReady) waiting.
#[derive(Debug)]
pub(super) struct ReadyWait {
    ticket: Ticket,
    apps: Vec<AppId>,
    timeout: std::time::Duration,
}

impl Supervisor {
    /// `Command::WaitReady`: answered by [`Self::settle_waits`] or at `timeout`.
    pub(super) fn wait_ready(
        &mut self,
        ticket: Ticket,
        target: &Target,
        timeout: Duration,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        match self.resolve(target) {
            Ok(apps) => {
                out.push(Action::ExpireWait {
                    ticket,
                    at: super::after(now, timeout),
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
    }

    pub(super) fn wait_expired(&mut self, ticket: Ticket, out: &mut Vec<Action>) {
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
    pub(super) fn settle_waits(&mut self, out: &mut Vec<Action>) {
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
                        | State::Failed { .. }
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
                // a one-shot job that completed did what a wait waits for
                None if w
                    .apps
                    .iter()
                    .all(|id| apps[id].is_ready() || apps[id].state == State::Completed) =>
                {
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
}

/// What introduces the last health-check error in a readiness error (the D-Bus adapter hides
/// what follows from callers who may not read the app's output).
pub const HEALTH_FAILED: &str = "health check failed: ";

/// Why `app` is not ready, in a few words: the last health-check error, its errored reason or
/// its last exit.
pub(super) fn not_ready_detail(app: &App) -> String {
    if let State::Errored { reason } | State::Failed { reason } = &app.state {
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
        return format!("{HEALTH_FAILED}{e}");
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
pub(super) fn human_duration(d: std::time::Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else if d < std::time::Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
