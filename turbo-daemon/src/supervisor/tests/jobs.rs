//! Dependencies, one-shot jobs and schedules on the fake clock (and a fake wall clock).

use std::time::{SystemTime, UNIX_EPOCH};

use super::*;
use crate::spec::{AppKind, Condition, Dependency, Overlap, Schedule, ScheduleAction};

fn needs(mut s: AppSpec, deps: &[(&str, Condition)]) -> AppSpec {
    s.lifecycle.depends_on = deps
        .iter()
        .map(|(n, c)| Dependency {
            name: (*n).into(),
            condition: *c,
        })
        .collect();
    s
}

fn job(name: &str) -> AppSpec {
    let mut s = spec(name);
    s.lifecycle.kind = AppKind::Oneshot;
    s
}

fn signalled(actions: &[Action]) -> Vec<AppId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SignalGroup { app, signal, .. } if *signal == signal::TERM => Some(*app),
            _ => None,
        })
        .collect()
}

impl Harness {
    /// Starts `specs` in one command; returns their ids by name order of `specs` and the actions.
    fn start_all(&mut self, specs: Vec<AppSpec>) -> (Vec<AppId>, Vec<Action>) {
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let (_, actions) = self.cmd(Command::Start {
            specs,
            exclusive: true,
        });
        let ids = names
            .iter()
            .map(|n| self.sup.find(n).expect("added"))
            .collect();
        (ids, actions)
    }

    fn waiting_for(&self, id: AppId) -> Vec<String> {
        self.sup.app(id).expect("exists").jobs.waiting_for.clone()
    }
}

#[test]
fn a_chain_starts_one_after_the_other_and_says_what_it_waits_for() {
    let mut h = Harness::new();
    let (ids, actions) = h.start_all(vec![
        needs(spec("c"), &[("b", Condition::Started)]),
        needs(spec("b"), &[("a", Condition::Started)]),
        spec("a"),
    ]);
    let [c, b, a] = ids[..] else { panic!() };
    assert_eq!(spawns(&actions), [a], "only the root spawns");
    assert_eq!(h.state(c), AppState::Waiting);
    assert_eq!(h.waiting_for(c), ["b (started)"]);
    assert_eq!(h.waiting_for(b), ["a (started)"]);
    let actions = h.spawned(a);
    assert_eq!(spawns(&actions), [b]);
    let actions = h.spawned(b);
    assert_eq!(spawns(&actions), [c]);
    h.spawned(c);
    assert!(h.waiting_for(c).is_empty());
    assert_eq!(h.state(c), AppState::Online);
}

/// web needs a migration to complete and a database to be ready; the migration needs the
/// database too (a diamond).
#[test]
fn a_diamond_waits_for_a_ready_database_and_a_completed_migration() {
    let mut h = Harness::new();
    let mut db = spec("db");
    db.readiness.mode = ReadyMode::Notify;
    let (ids, actions) = h.start_all(vec![
        needs(
            spec("web"),
            &[("migrate", Condition::Completed), ("db", Condition::Ready)],
        ),
        needs(job("migrate"), &[("db", Condition::Ready)]),
        db,
    ]);
    let [web, migrate, db] = ids[..] else {
        panic!()
    };
    assert_eq!(spawns(&actions), [db]);
    assert_eq!(h.waiting_for(web), ["migrate (completed)", "db (ready)"]);
    // online is not ready: READY=1 has not come
    let actions = h.spawned(db);
    assert!(spawns(&actions).is_empty(), "{actions:?}");
    let actions = h.input(Input::Notified {
        app: db,
        message: NotifyMessage {
            ready: true,
            ..NotifyMessage::default()
        },
    });
    assert_eq!(
        spawns(&actions),
        [migrate],
        "web still waits for the migration"
    );
    h.spawned(migrate);
    h.at(secs(3));
    let actions = h.exit(migrate, WaitStatus::exited(0));
    assert_eq!(h.state(migrate), AppState::Completed);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Notify(Notification::Crashed { .. }))),
        "a job that did its work is no crash"
    );
    assert_eq!(spawns(&actions), [web]);
    let app = h.sup.app(migrate).expect("exists");
    assert_eq!(
        app.last_exit.as_ref().map(|e| e.status.code()),
        Some(Some(0))
    );
    assert_eq!(
        app.desired,
        Desired::Stopped,
        "not run again by a daemon restart"
    );
}

#[test]
fn a_failed_job_is_retried_then_fails_its_dependents() {
    let mut h = Harness::new();
    let mut m = job("migrate");
    m.lifecycle.retries = 1;
    let (ids, _) = h.start_all(vec![
        needs(spec("web"), &[("migrate", Condition::Completed)]),
        m,
    ]);
    let [web, migrate] = ids[..] else { panic!() };
    h.spawned(migrate);
    let actions = h.exit(migrate, WaitStatus::exited(3));
    assert_eq!(h.state(migrate), AppState::Backoff, "one retry left");
    assert_eq!(h.state(web), AppState::Waiting);
    let actions = h.fire(migrate, &actions);
    assert_eq!(spawns(&actions), [migrate]);
    h.spawned(migrate);
    h.exit(migrate, WaitStatus::exited(3));
    assert_eq!(h.state(migrate), AppState::Failed);
    let State::Failed { reason } = &h.sup.app(migrate).unwrap().state else {
        panic!()
    };
    assert!(
        reason.starts_with("exited with code 3 after 2 attempt(s)"),
        "{reason}"
    );
    assert_eq!(h.state(web), AppState::Errored);
    let State::Errored { reason } = &h.sup.app(web).unwrap().state else {
        panic!()
    };
    assert!(
        reason.starts_with("dependency migrate is failed: exited with code 3"),
        "{reason}"
    );
}

#[test]
fn a_wait_ends_at_depends_timeout_naming_what_is_missing() {
    let mut h = Harness::new();
    let mut web = needs(spec("web"), &[("db", Condition::Ready)]);
    web.lifecycle.depends_timeout = secs(30);
    let (_, actions) = h.cmd(Command::Start {
        specs: vec![web],
        exclusive: true,
    });
    let web = h.sup.find("web").unwrap();
    assert_eq!(h.waiting_for(web), ["db (not defined)"]);
    let (_, at) = timer_of(&actions).expect("the wait has a deadline");
    assert_eq!(at, h.t0 + secs(30));
    h.fire(web, &actions);
    let State::Errored { reason } = &h.sup.app(web).unwrap().state else {
        panic!()
    };
    assert!(
        reason.starts_with("waited 30s for its dependencies: db (not defined)"),
        "{reason}"
    );
}

#[test]
fn starting_an_app_starts_its_stopped_dependencies_unless_no_deps() {
    for no_deps in [false, true] {
        let mut h = Harness::new();
        let mut db = spec("db");
        db.autostart = false;
        let mut web = needs(spec("web"), &[("db", Condition::Started)]);
        web.autostart = false;
        let (ids, actions) = h.start_all(vec![db, web]);
        let [db, web] = ids[..] else { panic!() };
        assert!(spawns(&actions).is_empty());
        let (_, actions) = h.cmd(Command::StartNamed {
            target: Target::Name("web".into()),
            no_deps,
        });
        assert_eq!(h.state(web), AppState::Waiting);
        if no_deps {
            assert!(spawns(&actions).is_empty(), "{actions:?}");
            assert_eq!(h.state(db), AppState::Stopped);
        } else {
            assert_eq!(spawns(&actions), [db]);
            let actions = h.spawned(db);
            assert_eq!(spawns(&actions), [web]);
        }
    }
}

#[test]
fn a_stop_goes_in_reverse_order_and_a_restart_comes_back_in_order() {
    let mut h = Harness::new();
    let (ids, _) = h.start_all(vec![
        spec("db"),
        needs(spec("web"), &[("db", Condition::Started)]),
    ]);
    let [db, web] = ids[..] else { panic!() };
    h.spawned(db);
    h.spawned(web);
    let (t, actions) = h.cmd(Command::Stop(Target::All));
    assert_eq!(signalled(&actions), [web], "the dependent first");
    assert!(reply_of(&actions, t).is_none(), "db is still to stop");
    let actions = h.exit(web, WaitStatus::signaled(15));
    assert_eq!(signalled(&actions), [db]);
    let actions = h.exit(db, WaitStatus::signaled(15));
    assert!(matches!(reply_of(&actions, t), Some(Ok(_))));

    // restart of both: web stops first, db comes back first, then web
    let (_, actions) = h.cmd(Command::StartNamed {
        target: Target::All,
        no_deps: false,
    });
    assert_eq!(spawns(&actions), [db]);
    h.spawned(db);
    h.spawned(web);
    let (_, actions) = h.cmd(Command::Restart(Target::All));
    assert_eq!(signalled(&actions), [web]);
    let actions = h.exit(web, WaitStatus::signaled(15));
    assert_eq!(h.state(web), AppState::Waiting, "restarted, waits for db");
    assert_eq!(signalled(&actions), [db]);
    let actions = h.exit(db, WaitStatus::signaled(15));
    assert_eq!(spawns(&actions), [db]);
    let actions = h.spawned(db);
    assert_eq!(spawns(&actions), [web]);
}

#[test]
fn restart_with_deps_follows_a_restart_of_a_dependency_and_nothing_else_does() {
    let mut h = Harness::new();
    let mut follower = needs(spec("worker"), &[("db", Condition::Started)]);
    follower.lifecycle.restart_with_deps = true;
    let (ids, _) = h.start_all(vec![
        spec("db"),
        needs(spec("web"), &[("db", Condition::Started)]),
        follower,
    ]);
    let [db, web, worker] = ids[..] else { panic!() };
    for id in [db, web, worker] {
        h.spawned(id);
    }
    let (_, actions) = h.cmd(Command::Restart(Target::Name("db".into())));
    assert_eq!(signalled(&actions), [worker], "web does not cascade");
    let actions = h.exit(worker, WaitStatus::signaled(15));
    assert_eq!(signalled(&actions), [db]);
    let actions = h.exit(db, WaitStatus::signaled(15));
    assert_eq!(spawns(&actions), [db]);
    assert_eq!(spawns(&h.spawned(db)), [worker]);
    assert_eq!(h.state(web), AppState::Online);
}

/// A crash of a dependency does not stop its dependents, and an automatic restart of a
/// dependent is not gated (its dependency was met when it started).
#[test]
fn crashes_do_not_cascade() {
    let mut h = Harness::new();
    let (ids, _) = h.start_all(vec![
        spec("db"),
        needs(spec("web"), &[("db", Condition::Started)]),
    ]);
    let [db, web] = ids[..] else { panic!() };
    h.spawned(db);
    h.spawned(web);
    let db_crash = h.exit(db, WaitStatus::exited(1));
    assert_eq!(h.state(web), AppState::Online);
    let actions = h.exit(web, WaitStatus::exited(1));
    let actions = h.fire(web, &actions);
    assert_eq!(
        spawns(&actions),
        [web],
        "db is in backoff, web restarts anyway"
    );
    assert_eq!(spawns(&h.fire(db, &db_crash)), [db]);
}

// ---- schedules ----

/// 2026-12-04 03:00:00 UTC.
const T0_UNIX: u64 = 1_796_353_200;

fn wall(secs_after: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0_UNIX + secs_after)
}

fn cron(mut s: AppSpec, expr: &str, action: ScheduleAction, overlap: Overlap) -> AppSpec {
    s.lifecycle.cron = Some(Schedule {
        expr: expr.into(),
        action,
        overlap,
        timezone: None,
    });
    s
}

fn schedule_wake(actions: &[Action]) -> Option<(AppId, u64, Instant)> {
    actions.iter().find_map(|a| match a {
        Action::Wake {
            app,
            kind: WakeKind::Schedule,
            token,
            at,
        } => Some((*app, *token, *at)),
        _ => None,
    })
}

impl Harness {
    /// A harness whose wall clock reads [`wall`]`(0)` at `t0`.
    fn with_wall() -> Self {
        let mut h = Self::new();
        h.sup.set_wall(h.t0, wall(0));
        h
    }

    /// Fires the schedule timer in `actions` at its time.
    fn fire_schedule(&mut self, actions: &[Action]) -> Vec<Action> {
        let (app, token, at) = schedule_wake(actions).expect("a schedule timer was armed");
        self.now = at;
        self.input(Input::Wake {
            app,
            kind: WakeKind::Schedule,
            token,
        })
    }
}

#[test]
fn a_run_schedule_fires_on_time_and_follows_its_overlap_policy() {
    for overlap in [Overlap::Skip, Overlap::Queue, Overlap::Replace] {
        let mut h = Harness::with_wall();
        let mut s = cron(
            job("report"),
            "*/10 * * * * *",
            ScheduleAction::Run,
            overlap,
        );
        s.autostart = false;
        let (ids, actions) = h.start_all(vec![s]);
        let id = ids[0];
        assert!(spawns(&actions).is_empty(), "waits for its first run");
        let (_, _, at) = schedule_wake(&actions).expect("armed at once");
        assert_eq!(at, h.t0 + secs(10));
        assert_eq!(h.sup.app(id).unwrap().jobs.next_run, Some(wall(10)));
        let actions = h.fire_schedule(&actions);
        assert_eq!(spawns(&actions), [id], "{overlap:?}");
        assert_eq!(h.sup.app(id).unwrap().jobs.next_run, Some(wall(20)));
        h.spawned(id);
        // still running at the next run
        let actions = h.fire_schedule(&actions);
        match overlap {
            Overlap::Skip => {
                assert!(spawns(&actions).is_empty() && signalled(&actions).is_empty());
                let after = h.exit(id, WaitStatus::exited(0));
                assert!(spawns(&after).is_empty(), "skipped, not postponed");
            }
            Overlap::Queue => {
                assert!(signalled(&actions).is_empty());
                let after = h.exit(id, WaitStatus::exited(0));
                assert_eq!(spawns(&after), [id], "the queued run starts when it ends");
            }
            Overlap::Replace => {
                assert_eq!(signalled(&actions), [id]);
                let after = h.exit(id, WaitStatus::signaled(15));
                assert_eq!(spawns(&after), [id]);
            }
        }
    }
}

#[test]
fn a_restart_schedule_restarts_a_running_service_and_leaves_a_stopped_one() {
    let mut h = Harness::with_wall();
    let (ids, actions) = h.start_all(vec![cron(
        spec("api"),
        "0 * * * *",
        ScheduleAction::Restart,
        Overlap::Skip,
    )]);
    let id = ids[0];
    h.spawned(id);
    let (_, _, at) = schedule_wake(&actions).expect("armed");
    assert_eq!(at, h.t0 + secs(3600), "the next full hour");
    let fired = h.fire_schedule(&actions);
    assert_eq!(signalled(&fired), [id]);
    let after = h.exit(id, WaitStatus::signaled(15));
    assert_eq!(spawns(&after), [id]);
    h.spawned(id);
    h.cmd(Command::Stop(Target::Id(id)));
    h.exit(id, WaitStatus::signaled(15));
    let fired = h.fire_schedule(&fired);
    assert!(signalled(&fired).is_empty() && spawns(&fired).is_empty());
    assert_eq!(h.state(id), AppState::Stopped);
}

/// The daemon was down across two due times: the restored app is not run for them, its next
/// run is the next one after the start.
#[test]
fn runs_missed_while_the_daemon_was_down_are_not_made_up() {
    let mut h = Harness::new();
    // the daemon comes back 25 minutes after T0; the job ran every 10 minutes
    h.sup.set_wall(h.t0, wall(25 * 60));
    let s = cron(
        job("report"),
        "*/10 * * * *",
        ScheduleAction::Run,
        Overlap::Skip,
    );
    let (_, actions) = h.cmd(Command::Restore(vec![Restored {
        id: 4,
        instance: 0,
        spec: s,
        desired: Desired::Stopped,
        restarts: 0,
        running: None,
    }]));
    assert!(spawns(&actions).is_empty(), "no catch-up run");
    let (_, _, at) = schedule_wake(&actions).expect("armed");
    assert_eq!(at, h.t0 + secs(5 * 60), "the 30-minute mark");
}

/// The wall clock was set back after the timer was armed: the timer fires early by the wall
/// clock and is armed again for the rest instead of running.
#[test]
fn an_early_timer_waits_for_the_wall_clock() {
    let mut h = Harness::with_wall();
    let mut s = cron(
        job("report"),
        "0 * * * *",
        ScheduleAction::Run,
        Overlap::Skip,
    );
    s.autostart = false;
    let (ids, actions) = h.start_all(vec![s]);
    let (_, token, at) = schedule_wake(&actions).expect("armed");
    // at the timer's instant the wall clock reads 10 minutes less than planned
    h.sup.set_wall(at, wall(3600 - 600));
    h.now = at;
    let actions = h.input(Input::Wake {
        app: ids[0],
        kind: WakeKind::Schedule,
        token,
    });
    assert!(spawns(&actions).is_empty());
    let (_, _, again) = schedule_wake(&actions).expect("armed again");
    assert_eq!(again, at + secs(600));
}

/// A daily 02:30 job in Europe/Paris: the run of the day the clocks spring forward happens at
/// 03:00 local (the first instant after the gap), and the next day's at 02:30 local again, 23 h
/// later on the monotonic clock.
#[test]
fn a_schedule_across_a_dst_change_on_the_fake_clocks() {
    let mut h = Harness::new();
    // 2026-03-28 12:00 UTC
    let noon = UNIX_EPOCH + Duration::from_secs(1_774_699_200);
    h.sup.set_wall(h.t0, noon);
    let mut s = cron(
        job("backup"),
        "30 2 * * *",
        ScheduleAction::Run,
        Overlap::Skip,
    );
    s.lifecycle.cron.as_mut().unwrap().timezone = Some("Europe/Paris".into());
    s.autostart = false;
    let (_, actions) = h.start_all(vec![s]);
    let (_, _, first) = schedule_wake(&actions).expect("armed");
    // 03:00 CEST on the 29th = 01:00 UTC: 13 h after noon UTC
    assert_eq!(first, h.t0 + secs(13 * 3600));
    let fired = h.fire_schedule(&actions);
    let (_, _, second) = schedule_wake(&fired).expect("armed again");
    // 02:30 CEST on the 30th = 00:30 UTC: 23.5 h later
    assert_eq!(second, first + secs(23 * 3600 + 1800));
}

/// A daemon that starts again (boot): the web app that should run starts after the migration
/// it depends on, which had completed (stopped on purpose) and is restored after it.
#[test]
fn a_restore_runs_a_completed_dependency_again_for_a_dependent_that_starts() {
    let mut h = Harness::new();
    let restored = |id, spec, desired| Restored {
        id,
        instance: 0,
        spec,
        desired,
        restarts: 0,
        running: None,
    };
    let (_, actions) = h.cmd(Command::Restore(vec![
        restored(
            1,
            needs(spec("web"), &[("migrate", Condition::Completed)]),
            Desired::Running,
        ),
        restored(2, job("migrate"), Desired::Stopped),
    ]));
    assert_eq!(spawns(&actions), [2], "the migration runs first");
    assert_eq!(h.state(1), AppState::Waiting);
    h.spawned(2);
    let actions = h.exit(2, WaitStatus::exited(0));
    assert_eq!(spawns(&actions), [1]);
}
