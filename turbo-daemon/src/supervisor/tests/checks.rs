//! Watch mode, health checks and readiness on the fake clock.

use super::*;

fn http_spec(name: &str) -> AppSpec {
    let mut s = spec(name);
    s.health = Some(HealthSpec::new(HealthProbe::Http {
        url: "http://127.0.0.1:3000/health".into(),
        status: (200, 399),
    }));
    s
}

fn watch_spec(name: &str) -> AppSpec {
    let mut s = spec(name);
    s.watch = Some(WatchSpec {
        paths: vec!["/srv".into()],
        ignore: Vec::new(),
        delay: ms(500),
    });
    s
}

fn wake_of(actions: &[Action], want: WakeKind) -> Option<(u64, Instant)> {
    actions.iter().find_map(|a| match a {
        Action::Wake {
            kind, token, at, ..
        } if *kind == want => Some((*token, *at)),
        _ => None,
    })
}

fn probe_of(actions: &[Action]) -> Option<u64> {
    actions.iter().find_map(|a| match a {
        Action::Probe { generation, .. } => Some(*generation),
        _ => None,
    })
}

fn ready(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Notify(Notification::Ready(_))))
}

impl Harness {
    /// Fires the health wake in `actions` and answers its probe with `result`.
    fn check(&mut self, id: AppId, actions: &[Action], result: Result<(), &str>) -> Vec<Action> {
        let (token, at) = wake_of(actions, WakeKind::Health).expect("a health check is due");
        self.now = at;
        let probe = self.input(Input::Wake {
            app: id,
            kind: WakeKind::Health,
            token,
        });
        let generation = probe_of(&probe).expect("the wake asks for a probe");
        self.input(Input::ProbeResult {
            app: id,
            generation,
            result: result.map_err(str::to_owned),
        })
    }

    fn health(&self, id: AppId) -> turbo_api::Health {
        self.sup.app(id).unwrap().public_health()
    }
}

#[test]
fn without_checks_an_app_is_ready_once_online() {
    let mut h = Harness::new();
    let (_, actions) = h.cmd(Command::Start {
        specs: vec![spec("api")],
        exclusive: true,
    });
    let id = spawn_of(&actions).unwrap();
    assert!(!h.sup.app(id).unwrap().is_ready(), "starting is not ready");
    let actions = h.spawned(id);
    assert!(ready(&actions));
    assert!(h.sup.app(id).unwrap().is_ready());
    assert_eq!(h.health(id), turbo_api::Health::None);
}

#[test]
fn a_health_check_gates_readiness_and_runs_every_interval() {
    let mut h = Harness::new();
    let (_, actions) = h.cmd(Command::Start {
        specs: vec![http_spec("api")],
        exclusive: true,
    });
    let id = spawn_of(&actions).unwrap();
    let actions = h.spawned(id);
    assert!(!ready(&actions), "not ready before the first check passes");
    assert_eq!(h.health(id), turbo_api::Health::Unknown);
    assert_eq!(
        wake_of(&actions, WakeKind::Health).unwrap().1,
        h.t0 + secs(1)
    );
    // not listening yet: a failure, then a retry after retry_delay
    let actions = h.check(id, &actions, Err("connection refused"));
    assert_eq!(h.health(id), turbo_api::Health::Unhealthy);
    assert_eq!(
        wake_of(&actions, WakeKind::Health).unwrap().1,
        h.t0 + secs(3)
    );
    let actions = h.check(id, &actions, Ok(()));
    assert!(ready(&actions));
    assert!(h.sup.app(id).unwrap().is_ready());
    assert_eq!(h.health(id), turbo_api::Health::Healthy);
    // then every interval (10 s), and Ready is said once per process
    assert_eq!(
        wake_of(&actions, WakeKind::Health).unwrap().1,
        h.t0 + secs(13)
    );
    let actions = h.check(id, &actions, Ok(()));
    assert!(!ready(&actions));
    // a stale probe result (earlier generation) is ignored
    let g = h.sup.app(id).unwrap().generation;
    assert!(
        h.input(Input::ProbeResult {
            app: id,
            generation: g - 1,
            result: Err("old".into()),
        })
        .is_empty()
    );
}

/// Issue 15: a stopped instance showed `healthy`, the verdict of its last process.
#[test]
fn a_stopped_app_is_not_healthy() {
    let mut h = Harness::new();
    let (_, actions) = h.cmd(Command::Start {
        specs: vec![http_spec("api")],
        exclusive: true,
    });
    let id = spawn_of(&actions).unwrap();
    let actions = h.spawned(id);
    h.check(id, &actions, Ok(()));
    assert_eq!(h.health(id), turbo_api::Health::Healthy);
    h.cmd(Command::Stop(Target::Name("api".into())));
    h.exit(id, WaitStatus::signaled(15));
    assert_eq!(h.state(id), AppState::Stopped);
    assert_eq!(h.health(id), turbo_api::Health::Unknown);
}

#[test]
fn an_app_that_stays_unhealthy_is_restarted_with_reason_health() {
    let mut h = Harness::new();
    let id = h.start_spec(http_spec("api"));
    let pid = h.pid(id);
    // wake and probe actions of the spawn are gone; re-arm by looking at the app
    let mut actions = vec![Action::Wake {
        app: id,
        kind: WakeKind::Health,
        token: h.sup.app(id).unwrap().generation,
        at: h.t0 + secs(1),
    }];
    actions = h.check(id, &actions, Ok(()));
    assert!(h.sup.app(id).unwrap().is_ready());
    actions = h.check(
        id,
        &actions,
        Err("GET http://127.0.0.1:3000/health: status 500"),
    );
    actions = h.check(
        id,
        &actions,
        Err("GET http://127.0.0.1:3000/health: status 500"),
    );
    assert_eq!(h.state(id), AppState::Online, "two failures of three");
    let actions = h.check(
        id,
        &actions,
        Err("GET http://127.0.0.1:3000/health: status 503"),
    );
    assert_eq!(h.state(id), AppState::Stopping);
    assert!(signals(&actions).contains(&(pid, signal::TERM)));
    let actions = h.exit(id, WaitStatus::signaled(15));
    let crash = actions.iter().find_map(|a| match a {
        Action::Notify(Notification::Crashed { exit, .. }) => Some(exit.clone()),
        _ => None,
    });
    let crash = crash.expect("a health restart is recorded as a crash");
    assert_eq!(crash.reason, ExitReason::Health);
    assert_eq!(
        crash.detail.as_deref(),
        Some("GET http://127.0.0.1:3000/health: status 503")
    );
    assert_eq!(h.state(id), AppState::Starting, "started again at once");
    assert_eq!(h.sup.app(id).unwrap().restarts, 1);
    let actions = h.spawned(id);
    assert_eq!(
        h.health(id),
        turbo_api::Health::Unknown,
        "a new process starts unknown"
    );
    assert!(wake_of(&actions, WakeKind::Health).is_some());
}

#[test]
fn a_burst_of_changes_gives_one_restart_with_reason_watch() {
    let mut h = Harness::new();
    let id = h.start_spec(watch_spec("web"));
    let pid = h.pid(id);
    let first = h.input(Input::FilesChanged { app: id });
    let (token, at) = wake_of(&first, WakeKind::Watch).expect("the first change arms a timer");
    assert_eq!(at, h.t0 + ms(500));
    for i in 1..=200 {
        h.at(ms(i));
        assert!(
            h.input(Input::FilesChanged { app: id }).is_empty(),
            "later changes of the burst arm nothing"
        );
    }
    h.now = at;
    let later = h.input(Input::Wake {
        app: id,
        kind: WakeKind::Watch,
        token,
    });
    assert_eq!(h.state(id), AppState::Online, "not quiet yet");
    let (token, at) = wake_of(&later, WakeKind::Watch).unwrap();
    assert_eq!(at, h.t0 + ms(700), "500 ms after the last change");
    h.now = at;
    let actions = h.input(Input::Wake {
        app: id,
        kind: WakeKind::Watch,
        token,
    });
    assert_eq!(h.state(id), AppState::Stopping);
    assert!(signals(&actions).contains(&(pid, signal::TERM)));
    let actions = h.exit(id, WaitStatus::signaled(15));
    assert!(!crashed(&actions), "a watch restart is no crash");
    assert_eq!(
        h.sup.app(id).unwrap().last_exit.as_ref().unwrap().reason,
        ExitReason::Watch
    );
    h.spawned(id);
    assert_eq!(h.sup.app(id).unwrap().restarts, 1, "exactly one restart");
}

#[test]
fn changes_of_a_stopped_app_start_nothing_and_a_crashed_one_starts_at_once() {
    let mut h = Harness::new();
    let id = h.start_spec(watch_spec("web"));
    h.cmd(Command::Stop(Target::Name("web".into())));
    h.exit(id, WaitStatus::signaled(15));
    assert!(h.input(Input::FilesChanged { app: id }).is_empty());

    let id = h.start_spec(watch_spec("api"));
    h.exit(id, WaitStatus::exited(1));
    assert_eq!(h.state(id), AppState::Backoff);
    let (token, at) = wake_of(&h.input(Input::FilesChanged { app: id }), WakeKind::Watch).unwrap();
    h.now = at;
    let actions = h.input(Input::Wake {
        app: id,
        kind: WakeKind::Watch,
        token,
    });
    assert!(spawn_of(&actions).is_some(), "the fix may be in: try now");
}

#[test]
fn wait_ready_answers_when_ready_fails_on_crash_and_times_out() {
    let mut h = Harness::new();
    let id = h.start_spec(http_spec("api"));
    let spawn_wake = Action::Wake {
        app: id,
        kind: WakeKind::Health,
        token: h.sup.app(id).unwrap().generation,
        at: h.t0 + secs(1),
    };
    let (t, actions) = h.cmd(Command::WaitReady {
        target: Target::Name("api".into()),
        timeout: secs(60),
    });
    assert!(actions.contains(&Action::ExpireWait {
        ticket: t,
        at: h.t0 + secs(60)
    }));
    assert_eq!(reply_of(&actions, t), None);
    let actions = h.check(id, &[spawn_wake], Ok(()));
    assert_eq!(reply_of(&actions, t), Some(Ok(Reply::Apps(vec![id]))));
    // an expiry after the answer does nothing
    assert!(h.input(Input::WaitExpired(t)).is_empty());

    // a new process that never passes: the timeout says the last error
    h.cmd(Command::Restart(Target::Name("api".into())));
    h.exit(id, WaitStatus::signaled(15));
    let actions = h.spawned(id);
    let (t, _) = h.cmd(Command::WaitReady {
        target: Target::Name("api".into()),
        timeout: secs(5),
    });
    h.check(id, &actions, Err("tcp 127.0.0.1:9: connection refused"));
    let actions = h.input(Input::WaitExpired(t));
    let Some(Err(CommandError::NotReady(why))) = reply_of(&actions, t) else {
        panic!("expected a timeout: {actions:?}");
    };
    assert_eq!(
        why,
        "'api' is not ready after 5s: health check failed: tcp 127.0.0.1:9: connection refused"
    );

    // a crash while waiting fails the wait at once
    let (t, _) = h.cmd(Command::WaitReady {
        target: Target::Name("api".into()),
        timeout: secs(60),
    });
    let actions = h.exit(id, WaitStatus::exited(3));
    let Some(Err(CommandError::NotReady(why))) = reply_of(&actions, t) else {
        panic!("expected a failure: {actions:?}");
    };
    assert!(
        why.starts_with("'api' is backoff instead of ready"),
        "{why}"
    );
}

#[test]
fn failures_within_the_start_period_do_not_count() {
    let mut h = Harness::new();
    let mut s = http_spec("slow");
    s.health.as_mut().unwrap().start_period = secs(10);
    let (_, actions) = h.cmd(Command::Start {
        specs: vec![s],
        exclusive: true,
    });
    let id = spawn_of(&actions).unwrap();
    let mut actions = h.spawned(id);
    for _ in 0..4 {
        actions = h.check(id, &actions, Err("connection refused"));
        assert_eq!(h.state(id), AppState::Online);
        assert_eq!(
            h.health(id),
            turbo_api::Health::Unknown,
            "starting, not unhealthy"
        );
    }
    assert_eq!(
        h.sup.app(id).unwrap().health.last_error.as_deref(),
        Some("connection refused"),
        "kept for --wait"
    );
    // past the start period, failures count again: three in a row restart it
    h.at(secs(11));
    actions = vec![Action::Wake {
        app: id,
        kind: WakeKind::Health,
        token: h.sup.app(id).unwrap().generation,
        at: h.t0 + secs(11),
    }];
    for _ in 0..3 {
        actions = h.check(id, &actions, Err("connection refused"));
    }
    assert_eq!(h.state(id), AppState::Stopping);
}

fn notify_spec(name: &str, watchdog: Option<u64>) -> AppSpec {
    let mut s = spec(name);
    s.readiness = Readiness {
        mode: ReadyMode::Notify,
        timeout: secs(60),
        watchdog_ms: watchdog,
    };
    s
}

fn said(ready: bool, status: Option<&str>, watchdog: bool) -> NotifyMessage {
    NotifyMessage {
        ready,
        status: status.map(str::to_owned),
        watchdog,
    }
}

#[test]
fn ready_notify_waits_for_ready_1_and_keeps_the_status_text() {
    let mut h = Harness::new();
    let (_, actions) = h.cmd(Command::Start {
        specs: vec![notify_spec("api", None)],
        exclusive: true,
    });
    let id = spawn_of(&actions).unwrap();
    let actions = h.spawned(id);
    assert!(!ready(&actions));
    assert_eq!(
        wake_of(&actions, WakeKind::ReadyTimeout).unwrap().1,
        h.t0 + secs(60)
    );
    let (t, _) = h.cmd(Command::WaitReady {
        target: Target::Id(id),
        timeout: secs(30),
    });
    let actions = h.input(Input::Notified {
        app: id,
        message: said(false, Some("loading"), false),
    });
    assert!(actions.contains(&Action::Notify(Notification::StatusText(id))));
    assert_eq!(reply_of(&actions, t), None);
    h.at(secs(2));
    let actions = h.input(Input::Notified {
        app: id,
        message: said(true, Some("serving"), false),
    });
    assert!(ready(&actions));
    assert_eq!(reply_of(&actions, t), Some(Ok(Reply::Apps(vec![id]))));
    assert_eq!(
        h.sup.app(id).unwrap().notify.status.as_deref(),
        Some("serving")
    );
}

#[test]
fn no_ready_1_within_ready_timeout_restarts_the_app() {
    let mut h = Harness::new();
    let (_, actions) = h.cmd(Command::Start {
        specs: vec![notify_spec("api", None)],
        exclusive: true,
    });
    let id = spawn_of(&actions).unwrap();
    let actions = h.spawned(id);
    let (token, at) = wake_of(&actions, WakeKind::ReadyTimeout).unwrap();
    h.now = at;
    h.input(Input::Wake {
        app: id,
        kind: WakeKind::ReadyTimeout,
        token,
    });
    assert_eq!(h.state(id), AppState::Stopping);
    let actions = h.exit(id, WaitStatus::signaled(15));
    let detail = actions.iter().find_map(|a| match a {
        Action::Notify(Notification::Crashed { exit, .. }) => exit.detail.clone(),
        _ => None,
    });
    assert_eq!(
        detail.as_deref(),
        Some("no READY=1 within 60s of the start (ready_timeout)")
    );
}

#[test]
fn a_missed_watchdog_restarts_the_hung_app_and_pings_keep_it() {
    let mut h = Harness::new();
    let (_, actions) = h.cmd(Command::Start {
        specs: vec![notify_spec("api", Some(2000))],
        exclusive: true,
    });
    let id = spawn_of(&actions).unwrap();
    let actions = h.spawned(id);
    let (token, at) = wake_of(&actions, WakeKind::Watchdog).unwrap();
    assert_eq!(at, h.t0 + secs(2));
    h.input(Input::Notified {
        app: id,
        message: said(true, None, false),
    });
    // pings at 1 s and 2.5 s: the timer at 2 s re-arms for 1 s + 2 s
    h.at(secs(1));
    h.input(Input::Notified {
        app: id,
        message: said(false, None, true),
    });
    h.now = at;
    let actions = h.input(Input::Wake {
        app: id,
        kind: WakeKind::Watchdog,
        token,
    });
    assert_eq!(h.state(id), AppState::Online);
    let (token, at) = wake_of(&actions, WakeKind::Watchdog).unwrap();
    assert_eq!(at, h.t0 + secs(3));
    // then it hangs: no ping by 3 s
    h.now = at;
    let actions = h.input(Input::Wake {
        app: id,
        kind: WakeKind::Watchdog,
        token,
    });
    assert_eq!(h.state(id), AppState::Stopping);
    assert!(!signals(&actions).is_empty());
    let actions = h.exit(id, WaitStatus::signaled(15));
    let exit = actions.iter().find_map(|a| match a {
        Action::Notify(Notification::Crashed { exit, .. }) => Some(exit.clone()),
        _ => None,
    });
    let exit = exit.expect("a watchdog restart is recorded");
    assert_eq!(exit.reason, ExitReason::Health);
    assert_eq!(
        exit.detail.as_deref(),
        Some("watchdog timeout: no WATCHDOG=1 for 2s")
    );
}

#[test]
fn adopted_apps_keep_their_checks_and_watchdog() {
    let mut h = Harness::new();
    let mut s = notify_spec("api", Some(2000));
    s.health = http_spec("api").health;
    h.at(secs(100));
    let (_, actions) = h.cmd(Command::Restore(vec![Restored {
        id: 3,
        instance: 0,
        spec: s,
        desired: Desired::Running,
        restarts: 0,
        // started long before this daemon
        running: Some((777, h.t0)),
    }]));
    let app = h.sup.app(3).unwrap();
    assert!(app.notify.ready, "it said READY=1 to the previous daemon");
    assert!(!app.is_ready(), "its health check has to pass first");
    assert!(wake_of(&actions, WakeKind::ReadyTimeout).is_none());
    assert_eq!(
        wake_of(&actions, WakeKind::Watchdog).unwrap().1,
        h.t0 + secs(102),
        "the watchdog counts from the adoption, not from the old start"
    );
    let actions = h.check(3, &actions, Ok(()));
    assert!(ready(&actions));
}
