//! Schedules (`cron:`): when each app's next run is, and what a run does.
//!
//! The runtime tells the supervisor the wall time at a monotonic instant before every input
//! ([`Supervisor::set_wall`]); the supervisor never reads a clock. After every input each app
//! with a schedule whose timer is not armed for its current schedule gets one: the next
//! occurrence after the wall time now (`spec::Schedule::next_after`, which knows time zones and
//! DST), as a [`WakeKind::Schedule`] timer at the matching instant. When it fires, a timer that
//! is early by the wall clock (the clock was set back) is armed again for the rest; otherwise the
//! run happens and the next one is armed, counted from the run's due time so a late timer never
//! skips or repeats one.
//!
//! A run: `restart` restarts an app that is online and should run (with its `restart_with_deps`
//! followers); `run` starts an app that is not running, and, when the previous run has not ended,
//! follows `overlap`: `skip` it, `queue` one more run for when it ends, or `replace` it (restart).
//!
//! Runs missed while the daemon was down are not made up: a daemon that starts arms the next
//! occurrence after its start (like a systemd timer without `Persistent=`, and like cron).

use std::time::{Duration, Instant, SystemTime};

use super::{Action, AfterStop, AppId, Desired, State, Supervisor, WakeKind};
use crate::spec::{Overlap, ScheduleAction};

/// A schedule timer that fires this much before its due time (by the wall clock) still runs:
/// timers and the two clocks are not exact.
const EARLY: Duration = Duration::from_millis(500);

impl Supervisor {
    /// Tells the supervisor that the wall time at `now` is `wall` (the runtime calls it before
    /// each input; tests call it to set their fake wall clock).
    pub fn set_wall(&mut self, now: Instant, wall: SystemTime) {
        self.jobs.wall = Some((now, wall));
    }

    /// The wall time at `now`, from the last [`Supervisor::set_wall`].
    fn wall_at(&self, now: Instant) -> Option<SystemTime> {
        let (mono, wall) = self.jobs.wall?;
        Some(if now >= mono {
            wall + now.duration_since(mono)
        } else {
            wall.checked_sub(mono.duration_since(now)).unwrap_or(wall)
        })
    }

    /// Arms the timer of every schedule that has none for its current spec (new apps, restored
    /// apps, changed schedules), and forgets those of apps whose schedule was removed.
    pub(super) fn arm_schedules(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.jobs.schedules_changed {
            return;
        }
        let Some(wall) = self.wall_at(now) else {
            return; // no wall time given yet: nothing can be placed
        };
        self.jobs.schedules_changed = false;
        for app in self.apps.values_mut() {
            if app.jobs.armed == app.spec.lifecycle.cron {
                continue;
            }
            app.jobs.armed.clone_from(&app.spec.lifecycle.cron);
            app.jobs.token += 1;
            app.jobs.next_run = app
                .spec
                .lifecycle
                .cron
                .as_ref()
                .and_then(|s| s.next_after(wall));
            if let Some(next) = app.jobs.next_run {
                out.push(wake(app.id, app.jobs.token, now, wall, next));
            }
        }
    }

    /// The schedule timer `token` of `id` fired at `now`.
    pub(super) fn schedule_due(
        &mut self,
        id: AppId,
        token: u64,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(wall) = self.wall_at(now) else {
            return;
        };
        let Some(app) = self.apps.get_mut(&id) else {
            return;
        };
        let (Some(due), Some(schedule)) = (app.jobs.next_run, app.spec.lifecycle.cron.clone())
        else {
            return;
        };
        if app.jobs.token != token {
            return; // re-armed since
        }
        app.jobs.token += 1;
        if wall + EARLY < due {
            // the wall clock went back since the timer was armed: wait for the rest
            out.push(wake(id, app.jobs.token, now, wall, due));
            return;
        }
        // counted from the due time: a late timer neither skips nor repeats a run
        app.jobs.next_run = schedule.next_after(due.max(wall));
        if let Some(next) = app.jobs.next_run {
            out.push(wake(id, app.jobs.token, now, wall, next));
        }
        match schedule.action {
            ScheduleAction::Restart => {
                if app.desired == Desired::Running && matches!(app.state, State::Online { .. }) {
                    let ids = self.with_followers(vec![id]);
                    self.stop_ordered(&ids, AfterStop::Start, now, out);
                }
            }
            ScheduleAction::Run => match app.state {
                State::Stopped
                | State::Completed
                | State::Failed { .. }
                | State::Errored { .. } => {
                    app.clear_history();
                    app.desired = Desired::Running;
                    self.begin_start(id, out);
                    out.push(Action::Notify(super::Notification::Persist));
                }
                _ => match schedule.overlap {
                    Overlap::Skip => {}
                    Overlap::Queue => {
                        app.jobs.queued = true;
                        self.jobs.may_queue = true;
                    }
                    Overlap::Replace => self.stop_one(id, AfterStop::Start, now, out),
                },
            },
        }
    }
}

/// The schedule timer of `app` for the wall time `next`, seen from `now` (= `wall`).
fn wake(app: AppId, token: u64, now: Instant, wall: SystemTime, next: SystemTime) -> Action {
    Action::Wake {
        app,
        kind: WakeKind::Schedule,
        token,
        at: super::after(now, next.duration_since(wall).unwrap_or_default()),
    }
}
