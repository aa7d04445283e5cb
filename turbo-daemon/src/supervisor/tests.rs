//! Supervisor scenarios on a fake clock: `t0 + Duration`, no processes, no sleeps.

use std::time::{Duration, Instant};

use turbo_api::{AppState, ExitReason};

use super::*;
use crate::{
    events::{SourceKind, WaitStatus},
    spec::{
        AppSpec, Autorestart, HealthProbe, HealthSpec, MemoryEnforce, Readiness, ReadyMode,
        RestartPolicy, WatchSpec, signal,
    },
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn spec(name: &str) -> AppSpec {
    AppSpec::new(name, vec!["/bin/true".into()], "/".into())
}

/// A supervisor plus a clock, with shorthands for the inputs.
struct Harness {
    sup: Supervisor,
    t0: Instant,
    now: Instant,
    ticket: Ticket,
    next_pid: u32,
}

impl Harness {
    fn new() -> Self {
        let t0 = Instant::now();
        Self {
            sup: Supervisor::new(),
            t0,
            now: t0,
            ticket: 0,
            next_pid: 100,
        }
    }

    fn at(&mut self, d: Duration) -> &mut Self {
        self.now = self.t0 + d;
        self
    }

    fn input(&mut self, input: Input) -> Vec<Action> {
        self.sup.handle(input, self.now)
    }

    fn cmd(&mut self, cmd: Command) -> (Ticket, Vec<Action>) {
        self.ticket += 1;
        let t = self.ticket;
        (t, self.input(Input::Command(t, cmd)))
    }

    /// Starts `spec` and reports it spawned; returns its id.
    fn start_spec(&mut self, spec: AppSpec) -> AppId {
        let (_, actions) = self.cmd(Command::Start {
            specs: vec![spec],
            exclusive: true,
        });
        let id = spawn_of(&actions).expect("start spawns");
        self.spawned(id);
        id
    }

    fn start_online(&mut self, name: &str) -> AppId {
        self.start_spec(spec(name))
    }

    fn spawned(&mut self, id: AppId) -> Vec<Action> {
        self.next_pid += 1;
        let pid = self.next_pid;
        self.input(Input::Spawned { app: id, pid })
    }

    fn pid(&self, id: AppId) -> u32 {
        self.sup.app(id).unwrap().pid().expect("running")
    }

    /// The main process of `id` exits and its group empties, as the runtime reports it.
    fn exit(&mut self, id: AppId, status: WaitStatus) -> Vec<Action> {
        let pid = self.pid(id);
        let mut actions = self.input(Input::Exited {
            pid,
            status,
            source: SourceKind::Procfs,
        });
        assert!(
            actions.contains(&Action::AwaitGroupGone { app: id, pgid: pid }),
            "every exit asks about the group: {actions:?}"
        );
        actions.extend(self.input(Input::GroupGone { app: id, pgid: pid }));
        actions
    }

    fn state(&self, id: AppId) -> AppState {
        self.sup.app(id).expect("app exists").state.public()
    }

    /// Fires the timer armed in `actions` at its time; returns what that did.
    fn fire(&mut self, id: AppId, actions: &[Action]) -> Vec<Action> {
        let (generation, at) = timer_of(actions).expect("a timer was armed");
        self.now = at;
        self.input(Input::Timer {
            app: id,
            generation,
        })
    }
}

fn spawn_of(actions: &[Action]) -> Option<AppId> {
    actions.iter().find_map(|a| match a {
        Action::Spawn { app, .. } => Some(*app),
        _ => None,
    })
}

fn timer_of(actions: &[Action]) -> Option<(u64, Instant)> {
    actions.iter().find_map(|a| match a {
        Action::SetTimer { generation, at, .. } => Some((*generation, *at)),
        _ => None,
    })
}

fn reply_of(actions: &[Action], ticket: Ticket) -> Option<Result<Reply, CommandError>> {
    actions.iter().find_map(|a| match a {
        Action::Reply { ticket: t, result } if *t == ticket => Some(result.clone()),
        _ => None,
    })
}

fn signals(actions: &[Action]) -> Vec<(u32, i32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SignalGroup { pid, signal, .. } => Some((*pid, *signal)),
            _ => None,
        })
        .collect()
}

fn crashed(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Notify(Notification::Crashed { .. })))
}

#[test]
fn start_replies_once_the_process_is_spawned() {
    let mut h = Harness::new();
    let (t, actions) = h.cmd(Command::Start {
        specs: vec![spec("api")],
        exclusive: true,
    });
    let id = spawn_of(&actions).expect("spawn");
    assert_eq!(h.state(id), AppState::Starting);
    assert_eq!(
        reply_of(&actions, t),
        None,
        "no reply before the spawn is reported"
    );
    let actions = h.spawned(id);
    assert_eq!(h.state(id), AppState::Online);
    assert_eq!(reply_of(&actions, t), Some(Ok(Reply::Apps(vec![id]))));
}

/// A start of several apps replies when all of them are settled at once, whatever order they
/// settle in, and not while one that had settled is on its way again.
#[test]
fn a_start_of_many_replies_once_all_are_settled_together() {
    let mut h = Harness::new();
    let (t, actions) = h.cmd(Command::Start {
        specs: vec![spec("a"), spec("b"), spec("c")],
        exclusive: true,
    });
    let ids = spawns(&actions);
    let [a, b, c] = ids[..] else {
        panic!("three spawns: {actions:?}")
    };
    assert_eq!(reply_of(&h.spawned(b), t), None, "a and c still starting");
    assert_eq!(reply_of(&h.spawned(a), t), None, "c still starting");
    // a starts over before c is up: the reply waits for it again
    let (_, restart) = h.cmd(Command::Restart(Target::Id(a)));
    assert_eq!(reply_of(&restart, t), None);
    assert_eq!(reply_of(&h.spawned(c), t), None, "a is stopping");
    let respawn = h.exit(a, WaitStatus::signaled(15));
    assert_eq!(spawn_of(&respawn), Some(a), "{respawn:?}");
    assert_eq!(reply_of(&respawn, t), None, "a is starting");
    assert_eq!(
        reply_of(&h.spawned(a), t),
        Some(Ok(Reply::Apps(vec![a, b, c])))
    );
}

#[test]
fn failed_first_spawn_is_an_error_reply_and_errored_state() {
    let mut h = Harness::new();
    let (t, actions) = h.cmd(Command::Start {
        specs: vec![spec("api")],
        exclusive: true,
    });
    let id = spawn_of(&actions).expect("spawn");
    let actions = h.input(Input::SpawnFailed {
        app: id,
        error: "boom".into(),
    });
    assert_eq!(h.state(id), AppState::Errored);
    assert_eq!(
        reply_of(&actions, t),
        Some(Err(CommandError::SpawnFailed("boom".into())))
    );
}

#[test]
fn a_crash_is_recorded_and_restarted_after_the_delay() {
    let mut h = Harness::new();
    let id = h.start_online("api");
    let pid = h.pid(id);
    h.at(secs(10));
    let actions = h.exit(id, WaitStatus::signaled(9));
    assert!(crashed(&actions));
    assert_eq!(h.state(id), AppState::Backoff);
    assert_eq!(timer_of(&actions).unwrap().1, h.t0 + secs(11));
    assert!(
        signals(&actions).contains(&(pid, signal::TERM)),
        "leftovers of the group get the stop signal"
    );
    let exit = h.sup.app(id).unwrap().last_exit.clone().unwrap();
    assert_eq!(exit.reason, ExitReason::Signal);
    assert_eq!(exit.uptime, secs(10));

    // the second source reporting the same exit changes nothing
    let dup = h.input(Input::Exited {
        pid,
        status: WaitStatus::signaled(9),
        source: SourceKind::Ebpf,
    });
    assert!(dup.is_empty(), "{dup:?}");

    let restart = h.fire(id, &actions);
    assert_eq!(spawn_of(&restart), Some(id));
    h.spawned(id);
    assert_eq!(h.state(id), AppState::Online);
    assert_eq!(h.sup.app(id).unwrap().restarts, 1);
}

#[test]
fn backoff_doubles_up_to_the_cap_and_resets_after_a_stable_run() {
    let mut h = Harness::new();
    let mut s = spec("flappy");
    s.restart.crash_loop_max = 0; // only the backoff is under test
    let id = h.start_spec(s);
    let mut delays = Vec::new();
    for _ in 0..8 {
        let crash_at = h.now;
        let actions = h.exit(id, WaitStatus::exited(1));
        let (_, at) = timer_of(&actions).unwrap();
        delays.push(at - crash_at);
        h.fire(id, &actions);
        h.spawned(id);
    }
    assert_eq!(
        delays,
        [1, 2, 4, 8, 16, 30, 30, 30].map(secs),
        "1 s doubling, capped at 30 s"
    );
    // a run of reset_after (30 s) ends the streak
    let t = h.now + secs(30);
    h.now = t;
    let actions = h.exit(id, WaitStatus::exited(1));
    assert_eq!(timer_of(&actions).unwrap().1 - t, secs(1));
}

#[test]
fn a_crash_loop_errors_and_only_a_restart_or_reset_revives_it() {
    let mut h = Harness::new();
    let id = h.start_online("loop");
    let mut last = Vec::new();
    for i in 0..5 {
        last = h.exit(id, WaitStatus::exited(1));
        if i < 4 {
            assert_eq!(h.state(id), AppState::Backoff, "crash {}", i + 1);
            h.fire(id, &last);
            h.spawned(id);
        }
    }
    assert_eq!(h.state(id), AppState::Errored, "5 crashes within 60 s");
    assert!(timer_of(&last).is_none(), "no more restarts");
    match &h.sup.app(id).unwrap().state {
        State::Errored { reason } => assert!(reason.contains("crash loop"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // reset revives it with a clean slate
    let (t, actions) = h.cmd(Command::Reset(Target::Name("loop".into())));
    assert_eq!(spawn_of(&actions), Some(id));
    let actions = h.spawned(id);
    assert_eq!(reply_of(&actions, t), Some(Ok(Reply::Apps(vec![id]))));
    assert_eq!(h.sup.app(id).unwrap().restarts, 0);
    let actions = h.exit(id, WaitStatus::exited(1));
    assert_eq!(h.state(id), AppState::Backoff, "the window starts over");
    assert_eq!(timer_of(&actions).unwrap().1 - h.now, secs(1));
}

#[test]
fn crashes_spread_beyond_the_window_are_not_a_loop() {
    let mut h = Harness::new();
    let id = h.start_online("slow");
    for _ in 0..10 {
        h.now += secs(20); // 20 s runs: at most 3 crashes in any 60 s
        let actions = h.exit(id, WaitStatus::exited(1));
        assert_eq!(h.state(id), AppState::Backoff);
        h.fire(id, &actions);
        h.spawned(id);
    }
}

#[test]
fn max_restarts_gives_up() {
    let mut h = Harness::new();
    let mut s = spec("limited");
    s.restart.max_restarts = 2;
    s.restart.crash_loop_max = 0;
    let id = h.start_spec(s);
    for _ in 0..2 {
        let actions = h.exit(id, WaitStatus::exited(1));
        h.fire(id, &actions);
        h.spawned(id);
    }
    h.exit(id, WaitStatus::exited(1));
    assert_eq!(h.state(id), AppState::Errored);
}

#[test]
fn restart_policies_and_stop_exit_codes() {
    // (policy, stop_exit_codes, exit status, expected state after the exit)
    let table = [
        (
            Autorestart::Always,
            vec![],
            WaitStatus::exited(0),
            AppState::Backoff,
        ),
        (
            Autorestart::Always,
            vec![],
            WaitStatus::exited(3),
            AppState::Backoff,
        ),
        (
            Autorestart::Always,
            vec![3],
            WaitStatus::exited(3),
            AppState::Stopped,
        ),
        (
            Autorestart::OnFailure,
            vec![],
            WaitStatus::exited(0),
            AppState::Stopped,
        ),
        (
            Autorestart::OnFailure,
            vec![],
            WaitStatus::exited(3),
            AppState::Backoff,
        ),
        (
            Autorestart::OnFailure,
            vec![3],
            WaitStatus::exited(3),
            AppState::Stopped,
        ),
        (
            Autorestart::OnFailure,
            vec![],
            WaitStatus::signaled(15),
            AppState::Backoff,
        ),
        (
            Autorestart::Never,
            vec![],
            WaitStatus::exited(3),
            AppState::Stopped,
        ),
    ];
    for (policy, codes, status, expected) in table {
        let mut h = Harness::new();
        let mut s = spec("a");
        s.autorestart = policy;
        s.stop_exit_codes = codes.clone();
        let id = h.start_spec(s);
        h.at(secs(1));
        let actions = h.exit(id, status);
        assert_eq!(h.state(id), expected, "{policy:?} {codes:?} {status:?}");
        assert!(
            crashed(&actions),
            "every exit nobody asked for is a crash record"
        );
        if expected == AppState::Stopped {
            assert_eq!(h.sup.app(id).unwrap().desired, Desired::Stopped);
        }
    }
}

#[test]
fn stop_waits_for_the_group_and_escalates_to_sigkill() {
    let mut h = Harness::new();
    let id = h.start_online("api");
    let pid = h.pid(id);
    let (t, actions) = h.at(secs(5)).cmd(Command::Stop(Target::Name("api".into())));
    assert_eq!(signals(&actions), vec![(pid, signal::TERM)]);
    assert_eq!(h.state(id), AppState::Stopping);
    assert_eq!(
        reply_of(&actions, t),
        None,
        "stop replies only when the process is gone"
    );
    assert_eq!(
        timer_of(&actions).unwrap().1,
        h.t0 + secs(10),
        "kill_timeout defaults to 5 s"
    );

    let kill = h.fire(id, &actions);
    assert_eq!(signals(&kill), vec![(pid, signal::KILL)]);
    let (generation, _) = timer_of(&actions).unwrap();
    assert!(
        signals(&h.input(Input::Timer {
            app: id,
            generation
        }))
        .is_empty(),
        "a second firing of the same timer does not kill twice"
    );

    let exited = h.input(Input::Exited {
        pid,
        status: WaitStatus::signaled(9),
        source: SourceKind::Procfs,
    });
    assert!(!crashed(&exited), "a requested stop is not a crash");
    assert_eq!(
        h.state(id),
        AppState::Stopping,
        "its group may still have members"
    );
    assert_eq!(reply_of(&exited, t), None);
    let gone = h.input(Input::GroupGone { app: id, pgid: pid });
    assert_eq!(h.state(id), AppState::Stopped);
    assert_eq!(reply_of(&gone, t), Some(Ok(Reply::Apps(vec![id]))));
    let exit = h.sup.app(id).unwrap().last_exit.clone().unwrap();
    assert_eq!(exit.reason, ExitReason::Manual);
    assert_eq!(
        exit.status.signal(),
        Some(9),
        "the reply shows it took SIGKILL"
    );
    assert_eq!(h.sup.app(id).unwrap().desired, Desired::Stopped);
}

#[test]
fn a_restart_waits_until_the_old_group_is_gone() {
    let mut h = Harness::new();
    let id = h.start_online("api");
    let pid = h.pid(id);
    let crash = h.input(Input::Exited {
        pid,
        status: WaitStatus::exited(1),
        source: SourceKind::Ebpf,
    });
    // the delay passes while a member of the old group lives on
    let at_delay = h.fire(id, &crash);
    assert_eq!(
        spawn_of(&at_delay),
        None,
        "no overlap with the old instance"
    );
    assert_eq!(signals(&at_delay), vec![(pid, signal::KILL)]);
    let gone = h.input(Input::GroupGone { app: id, pgid: pid });
    assert_eq!(spawn_of(&gone), Some(id));
}

#[test]
fn stop_during_backoff_cancels_the_restart() {
    let mut h = Harness::new();
    let id = h.start_online("api");
    let actions = h.at(secs(1)).exit(id, WaitStatus::exited(1));
    let (t, stop) = h.cmd(Command::Stop(Target::All));
    assert_eq!(reply_of(&stop, t), Some(Ok(Reply::Apps(vec![id]))));
    assert!(spawn_of(&h.fire(id, &actions)).is_none());
    assert_eq!(h.state(id), AppState::Stopped);
}

#[test]
fn a_stop_of_many_apps_signals_each_once_and_answers_after_the_last_exit_in_any_order() {
    let mut h = Harness::new();
    let ids: Vec<AppId> = (0..300).map(|i| h.start_online(&format!("a{i}"))).collect();
    // restarted once: the pids the exits name are not the first ones any more
    let (t, _) = h.cmd(Command::Restart(Target::All));
    for &id in &ids {
        h.exit(id, WaitStatus::signaled(15));
    }
    let mut answer = None;
    for &id in &ids {
        answer = answer.or(reply_of(&h.spawned(id), t));
    }
    assert_eq!(answer, Some(Ok(Reply::Apps(ids.clone()))));
    let pids: Vec<u32> = ids.iter().map(|&id| h.pid(id)).collect();
    let (t, stop) = h.cmd(Command::Stop(Target::All));
    let mut signalled = signals(&stop);
    signalled.sort_unstable();
    let mut expected: Vec<(u32, i32)> = pids.iter().map(|&p| (p, signal::TERM)).collect();
    expected.sort_unstable();
    assert_eq!(signalled, expected, "every app signalled once, at once");
    let mut answers = 0;
    for (k, &id) in ids.iter().enumerate().rev() {
        let actions = h.exit(id, WaitStatus::signaled(15));
        assert!(spawn_of(&actions).is_none(), "a stopped app stays stopped");
        assert_eq!(h.state(id), AppState::Stopped);
        match reply_of(&actions, t) {
            Some(reply) => {
                assert_eq!(k, 0, "answered before the last exit");
                assert_eq!(reply, Ok(Reply::Apps(ids.clone())));
                answers += 1;
            }
            None => assert_ne!(k, 0, "no answer after the last exit"),
        }
    }
    assert_eq!(answers, 1);
}

#[test]
fn restart_stops_then_spawns_and_counts() {
    let mut h = Harness::new();
    let id = h.start_online("api");
    let pid = h.pid(id);
    let (t, actions) = h.cmd(Command::Restart(Target::Id(id)));
    assert_eq!(signals(&actions), vec![(pid, signal::TERM)]);
    let actions = h.exit(id, WaitStatus::signaled(15));
    assert_eq!(spawn_of(&actions), Some(id));
    assert_eq!(reply_of(&actions, t), None, "waits for the new process");
    let actions = h.spawned(id);
    assert_eq!(reply_of(&actions, t), Some(Ok(Reply::Apps(vec![id]))));
    assert_eq!(h.sup.app(id).unwrap().restarts, 1);
}

#[test]
fn delete_forgets_after_the_exit() {
    let mut h = Harness::new();
    let id = h.start_online("api");
    let (t, _) = h.cmd(Command::Delete(Target::Name("api".into())));
    assert!(h.sup.app(id).is_some(), "kept until its process is gone");
    let actions = h.exit(id, WaitStatus::signaled(15));
    assert!(h.sup.app(id).is_none());
    assert!(actions.contains(&Action::Notify(Notification::Removed {
        app: id,
        name: "api".into(),
        instance: 0,
    })));
    assert_eq!(
        reply_of(&actions, t),
        Some(Ok(Reply::Deleted(vec!["api".into()])))
    );
}

#[test]
fn shutdown_stops_everything_but_keeps_the_desired_state() {
    let mut h = Harness::new();
    let a = h.start_online("a");
    let b = h.start_online("b");
    h.cmd(Command::Stop(Target::Id(b)));
    h.exit(b, WaitStatus::signaled(15));
    let (t, _) = h.cmd(Command::StopForShutdown);
    let actions = h.exit(a, WaitStatus::signaled(15));
    assert_eq!(reply_of(&actions, t), Some(Ok(Reply::Apps(vec![a, b]))));
    assert_eq!(h.sup.app(a).unwrap().desired, Desired::Running);
    assert_eq!(h.sup.app(b).unwrap().desired, Desired::Stopped);
}

#[test]
fn restore_adopts_running_processes_and_starts_the_rest() {
    let mut h = Harness::new();
    let restored = vec![
        Restored {
            id: 4,
            instance: 0,
            spec: spec("adopted"),
            desired: Desired::Running,
            restarts: 7,
            running: Some((555, h.t0)),
        },
        Restored {
            id: 9,
            instance: 0,
            spec: spec("dead"),
            desired: Desired::Running,
            restarts: 0,
            running: None,
        },
        Restored {
            id: 2,
            instance: 0,
            spec: spec("off"),
            desired: Desired::Stopped,
            restarts: 0,
            running: None,
        },
    ];
    let (_, actions) = h.cmd(Command::Restore(restored));
    let spawns = spawns(&actions);
    assert_eq!(spawns, [9], "only the dead app that should run is started");
    assert_eq!(h.state(4), AppState::Online);
    assert_eq!(h.sup.app(4).unwrap().pid(), Some(555));
    assert_eq!(h.sup.app(4).unwrap().restarts, 7);
    assert_eq!(h.state(2), AppState::Stopped);
    // new apps get fresh ids
    let id = h.start_online("new");
    assert_eq!(id, 10);
    // the adopted process is supervised like any other
    h.exit(4, WaitStatus::UNKNOWN);
    assert_eq!(h.state(4), AppState::Backoff);
}

#[test]
fn bad_targets_and_names_are_refused_without_side_effects() {
    let mut h = Harness::new();
    let id = h.start_online("api");
    for cmd in [
        Command::Stop(Target::Name("nope".into())),
        Command::Restart(Target::Id(99)),
        Command::Delete(Target::Name("nope".into())),
        Command::Reset(Target::Name("nope".into())),
    ] {
        let (t, actions) = h.cmd(cmd);
        assert!(matches!(
            reply_of(&actions, t),
            Some(Err(CommandError::NotFound(_)))
        ));
        assert_eq!(actions.len(), 1, "only the reply: {actions:?}");
    }
    let (t, actions) = h.cmd(Command::Start {
        specs: vec![spec("api")],
        exclusive: true,
    });
    assert_eq!(
        reply_of(&actions, t),
        Some(Err(CommandError::AlreadyExists("api".into())))
    );
    let (t, actions) = h.cmd(Command::Start {
        specs: vec![spec("x"), spec("x")],
        exclusive: false,
    });
    assert_eq!(
        reply_of(&actions, t),
        Some(Err(CommandError::Duplicate("x".into())))
    );
    assert_eq!(h.sup.apps().count(), 1);
    assert_eq!(h.state(id), AppState::Online);
}

#[test]
fn config_start_is_idempotent_and_applies_changed_specs() {
    let mut h = Harness::new();
    let id = h.start_online("api");
    // same spec, not exclusive: nothing happens, immediate reply
    let (t, actions) = h.cmd(Command::Start {
        specs: vec![spec("api")],
        exclusive: false,
    });
    assert_eq!(reply_of(&actions, t), Some(Ok(Reply::Apps(vec![id]))));
    assert!(signals(&actions).is_empty() && spawn_of(&actions).is_none());
    // changed spec: restart with it
    let mut changed = spec("api");
    changed.argv.push("--flag".into());
    let pid = h.pid(id);
    let (_, actions) = h.cmd(Command::Start {
        specs: vec![changed.clone()],
        exclusive: false,
    });
    assert_eq!(signals(&actions), vec![(pid, signal::TERM)]);
    let actions = h.exit(id, WaitStatus::signaled(15));
    assert!(actions.contains(&Action::Spawn {
        app: id,
        spec: Box::new(changed)
    }));
}

#[test]
fn a_spawn_that_lost_its_app_is_killed() {
    let mut h = Harness::new();
    let actions = h.input(Input::Spawned { app: 42, pid: 7 });
    assert_eq!(signals(&actions), vec![(7, signal::KILL)]);
}

#[test]
fn exits_of_unknown_pids_are_ignored() {
    let mut h = Harness::new();
    let id = h.start_online("api");
    let actions = h.input(Input::Exited {
        pid: 4242,
        status: WaitStatus::exited(0),
        source: SourceKind::Ebpf,
    });
    assert!(actions.is_empty());
    assert_eq!(h.state(id), AppState::Online);
}

#[test]
fn delay_for_is_capped_and_handles_huge_attempts() {
    let p = RestartPolicy::default();
    assert_eq!(p.delay_for(1), secs(1));
    assert_eq!(p.delay_for(3), secs(4));
    assert_eq!(p.delay_for(1000), secs(30));
    let zero = RestartPolicy {
        delay: Duration::ZERO,
        ..RestartPolicy::default()
    };
    assert_eq!(zero.delay_for(5), Duration::ZERO, "delay 0 stays 0");
    let flat = RestartPolicy {
        factor: 1.0,
        delay: ms(500),
        ..RestartPolicy::default()
    };
    assert_eq!(flat.delay_for(9), ms(500));
}

#[test]
fn an_oom_victim_exit_is_classified_oom_kill() {
    let mut h = Harness::new();
    let id = h.start_online("hog");
    let pid = h.pid(id);
    h.input(Input::OomKilled { pid });
    h.exit(id, WaitStatus::signaled(9));
    let exit = h.sup.app(id).unwrap().last_exit.clone().unwrap();
    assert_eq!(exit.reason, ExitReason::OomKill);
    // the mark is spent: the next SIGKILL of the restarted process is an ordinary signal
    let restart = h.input(Input::Timer {
        app: id,
        generation: h.sup.app(id).unwrap().generation,
    });
    assert_eq!(spawn_of(&restart), Some(id));
    h.spawned(id);
    h.exit(id, WaitStatus::signaled(9));
    let exit = h.sup.app(id).unwrap().last_exit.clone().unwrap();
    assert_eq!(exit.reason, ExitReason::Signal);
}

#[test]
fn memory_warning_once_per_crossing_then_restart_at_the_limit() {
    let mut h = Harness::new();
    let mut s = spec("hog");
    s.memory.max = Some(1000);
    let (_, actions) = h.cmd(Command::Start {
        specs: vec![s],
        exclusive: true,
    });
    let id = spawn_of(&actions).unwrap();
    let spawned = h.spawned(id);
    let pid = h.pid(id);
    assert!(
        spawned.contains(&Action::SetMemoryLimit {
            app: id,
            pid,
            bytes: 800
        }),
        "the warning level (80%) is watched first: {spawned:?}"
    );
    let warned = h.input(Input::MemoryOver {
        pid,
        rss: 810,
        limit: 800,
    });
    assert!(
        warned.contains(&Action::Notify(Notification::MemoryWarning {
            app: id,
            rss: 810,
            max: 1000
        }))
    );
    assert!(warned.contains(&Action::SetMemoryLimit {
        app: id,
        pid,
        bytes: 1000
    }));
    // back under the limit but still above the warning level: re-armed, no second warning
    let under = h.input(Input::MemoryUnder { pid, limit: 1000 });
    assert!(under.contains(&Action::SetMemoryLimit {
        app: id,
        pid,
        bytes: 800
    }));
    let again = h.input(Input::MemoryOver {
        pid,
        rss: 850,
        limit: 800,
    });
    assert!(
        !again
            .iter()
            .any(|a| matches!(a, Action::Notify(Notification::MemoryWarning { .. })))
    );
    // under the warning level: the next crossing warns again
    h.input(Input::MemoryUnder { pid, limit: 800 });
    let third = h.input(Input::MemoryOver {
        pid,
        rss: 801,
        limit: 800,
    });
    assert!(
        third
            .iter()
            .any(|a| matches!(a, Action::Notify(Notification::MemoryWarning { .. })))
    );

    // over the limit: a graceful restart, recorded as a memory_limit crash
    let over = h.at(secs(3)).input(Input::MemoryOver {
        pid,
        rss: 1001,
        limit: 1000,
    });
    assert_eq!(signals(&over), vec![(pid, signal::TERM)]);
    assert_eq!(h.state(id), AppState::Stopping);
    let exited = h.exit(id, WaitStatus::signaled(15));
    assert!(crashed(&exited), "a memory-limit restart is a crash record");
    assert_eq!(
        h.sup.app(id).unwrap().last_exit.as_ref().unwrap().reason,
        ExitReason::MemoryLimit
    );
    assert_eq!(spawn_of(&exited), Some(id), "restarted at once");
    h.spawned(id);
    assert_eq!(h.sup.app(id).unwrap().restarts, 1);
}

// --- cluster instances, scale and reload ---

/// Starts `n` instances of `name` and reports each spawned; returns their ids by instance.
fn start_cluster(h: &mut Harness, name: &str, n: u32) -> Vec<AppId> {
    let mut s = spec(name);
    s.instances = n;
    let (_, actions) = h.cmd(Command::Start {
        specs: vec![s],
        exclusive: true,
    });
    let ids = spawns(&actions);
    assert_eq!(ids.len(), n as usize, "one spawn per instance");
    for &id in &ids {
        h.spawned(id);
    }
    ids
}

fn spawns(actions: &[Action]) -> Vec<AppId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { app, .. } => Some(*app),
            _ => None,
        })
        .collect()
}

/// The wake-up timers armed in `actions`.
fn wake_at(actions: &[Action]) -> Vec<Instant> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SetTimer { generation, at, .. } if *generation == u64::MAX => Some(*at),
            _ => None,
        })
        .collect()
}

/// Fires a wake-up timer of `app` at `at`.
fn wake(h: &mut Harness, app: AppId, at: Instant) -> Vec<Action> {
    h.now = at;
    h.input(Input::Timer {
        app,
        generation: u64::MAX,
    })
}

#[test]
fn instances_are_apps_of_their_own_with_a_number() {
    let mut h = Harness::new();
    let ids = start_cluster(&mut h, "web", 3);
    let numbers: Vec<u32> = ids
        .iter()
        .map(|id| h.sup.app(*id).unwrap().instance)
        .collect();
    assert_eq!(numbers, [0, 1, 2]);
    // one crashes: only it backs off
    h.exit(ids[1], WaitStatus::signaled(9));
    assert_eq!(h.state(ids[1]), AppState::Backoff);
    assert_eq!(h.state(ids[0]), AppState::Online);
    assert_eq!(h.state(ids[2]), AppState::Online);
    // by name: all; by `name:N`: one
    assert_eq!(h.sup.resolve(&Target::parse("web")).unwrap(), ids);
    assert_eq!(h.sup.resolve(&Target::parse("web:2")).unwrap(), [ids[2]]);
    assert_eq!(
        h.sup.resolve(&Target::parse("web:7")),
        Err(CommandError::NotFound("web:7".into()))
    );
}

#[test]
fn scale_starts_missing_numbers_and_stops_the_highest() {
    let mut h = Harness::new();
    let ids = start_cluster(&mut h, "web", 2);
    let (t, actions) = h.cmd(Command::Scale {
        name: "web".into(),
        count: 4,
    });
    let new = spawns(&actions);
    assert_eq!(new.len(), 2);
    assert_eq!(reply_of(&actions, t), None, "answered once they run");
    h.spawned(new[0]);
    let actions = h.spawned(new[1]);
    assert!(matches!(reply_of(&actions, t), Some(Ok(_))));
    let numbers: Vec<u32> = new
        .iter()
        .map(|id| h.sup.app(*id).unwrap().instance)
        .collect();
    assert_eq!(numbers, [2, 3]);
    assert!(h.sup.apps().all(|a| a.spec.instances == 4));

    let (pid2, pid3) = (h.pid(new[0]), h.pid(new[1]));
    let (t, actions) = h.cmd(Command::Scale {
        name: "web".into(),
        count: 2,
    });
    let sent = signals(&actions);
    assert!(sent.contains(&(pid2, signal::TERM)) && sent.contains(&(pid3, signal::TERM)));
    h.exit(new[0], WaitStatus::signaled(15));
    let actions = h.exit(new[1], WaitStatus::signaled(15));
    assert!(matches!(reply_of(&actions, t), Some(Ok(_))));
    assert_eq!(h.sup.apps().map(|a| a.id).collect::<Vec<_>>(), ids);

    let (t, actions) = h.cmd(Command::Scale {
        name: "web".into(),
        count: 0,
    });
    assert!(matches!(
        reply_of(&actions, t),
        Some(Err(CommandError::Invalid(_)))
    ));
}

/// Reloads `name` up to the point where the replacement of the first instance runs.
fn reload_started(h: &mut Harness, target: &str) -> (Ticket, AppId, Vec<Action>) {
    let (t, actions) = h.cmd(Command::Reload(Target::parse(target)));
    let new = spawns(&actions);
    assert_eq!(new.len(), 1, "one replacement at a time: {actions:?}");
    assert_eq!(reply_of(&actions, t), None);
    (t, new[0], actions)
}

#[test]
fn reload_replaces_one_instance_at_a_time_once_ready() {
    let mut h = Harness::new();
    let old = start_cluster(&mut h, "web", 2);
    let old_pids = [h.pid(old[0]), h.pid(old[1])];
    let (t, new0, _) = reload_started(&mut h, "web");
    assert_eq!(h.sup.app(new0).unwrap().instance, 0);
    let actions = h.spawned(new0);
    // ready (online): it must stay so for SETTLE before the old one goes
    assert!(signals(&actions).is_empty(), "nothing stops yet");
    let settle = wake_at(&actions);
    assert_eq!(settle, [h.now + SETTLE]);
    let actions = wake(&mut h, new0, settle[0]);
    assert_eq!(signals(&actions), [(old_pids[0], signal::TERM)]);
    assert!(actions.contains(&Action::Notify(Notification::Replaced {
        old: old[0],
        new: new0
    })));
    assert!(
        spawns(&actions).is_empty(),
        "the next waits for the old one to go"
    );
    let actions = h.exit(old[0], WaitStatus::signaled(15));
    assert!(h.sup.app(old[0]).is_none(), "the old instance is forgotten");
    let new1 = spawns(&actions);
    assert_eq!(new1.len(), 1, "then the next instance");
    let new1 = new1[0];
    assert_eq!(h.sup.app(new1).unwrap().instance, 1);
    let actions = h.spawned(new1);
    let actions = wake(&mut h, new1, wake_at(&actions)[0]);
    assert_eq!(signals(&actions), [(old_pids[1], signal::TERM)]);
    let actions = h.exit(old[1], WaitStatus::signaled(15));
    assert_eq!(
        reply_of(&actions, t),
        Some(Ok(Reply::Apps(vec![new0, new1])))
    );
    let restarts: Vec<u32> = h.sup.apps().map(|a| a.restarts).collect();
    assert_eq!(restarts, [1, 1], "a reload counts as a restart by hand");
    assert!(!crashed(&actions));
}

#[test]
fn reload_aborts_when_the_replacement_crashes_and_keeps_the_old_ones() {
    let mut h = Harness::new();
    let old = start_cluster(&mut h, "web", 2);
    let old_pids = [h.pid(old[0]), h.pid(old[1])];
    let (t, new0, _) = reload_started(&mut h, "web");
    h.spawned(new0);
    h.at(ms(200));
    let actions = h.exit(new0, WaitStatus::exited(3));
    match reply_of(&actions, t) {
        Some(Err(CommandError::ReloadFailed(m))) => {
            assert!(m.contains("exited with code 3"), "{m}");
        }
        other => panic!("the reload fails: {other:?}"),
    }
    assert!(h.sup.app(new0).is_none(), "the replacement is forgotten");
    assert!(spawns(&actions).is_empty(), "it is not restarted");
    assert_eq!(
        [h.pid(old[0]), h.pid(old[1])],
        old_pids,
        "old ones untouched"
    );
}

#[test]
fn reload_aborts_when_the_replacement_is_never_ready() {
    let mut h = Harness::new();
    let old = start_cluster(&mut h, "web", 1);
    let (t, new0, actions) = reload_started(&mut h, "web");
    // the spawn never reports: the replacement stays `starting`
    let deadline = wake_at(&actions);
    assert_eq!(deadline, [h.t0 + READY_TIMEOUT]);
    let actions = wake(&mut h, new0, deadline[0]);
    match reply_of(&actions, t) {
        Some(Err(CommandError::ReloadFailed(m))) => assert!(m.contains("not ready within"), "{m}"),
        other => panic!("the reload fails: {other:?}"),
    }
    assert!(h.sup.app(new0).is_none());
    assert_eq!(h.state(old[0]), AppState::Online);
}

#[test]
fn stop_interrupts_a_reload_and_scale_is_refused_meanwhile() {
    let mut h = Harness::new();
    let old = start_cluster(&mut h, "web", 2);
    let (t, new0, _) = reload_started(&mut h, "web");
    h.spawned(new0);
    let new_pid = h.pid(new0);

    let (ts, actions) = h.cmd(Command::Scale {
        name: "web".into(),
        count: 3,
    });
    assert_eq!(
        reply_of(&actions, ts),
        Some(Err(CommandError::Busy("web".into())))
    );
    let (tr, actions) = h.cmd(Command::Reload(Target::parse("web")));
    assert_eq!(
        reply_of(&actions, tr),
        Some(Err(CommandError::Busy("web".into())))
    );

    let (stop, actions) = h.cmd(Command::Stop(Target::parse("web")));
    assert!(matches!(
        reply_of(&actions, t),
        Some(Err(CommandError::ReloadFailed(_)))
    ));
    // every process gets the stop signal, the replacement included, and the replacement is
    // not kept as an extra instance
    assert!(signals(&actions).contains(&(new_pid, signal::TERM)));
    h.exit(old[0], WaitStatus::signaled(15));
    let actions = h.exit(old[1], WaitStatus::signaled(15));
    assert_eq!(
        reply_of(&actions, stop),
        None,
        "the replacement is not gone yet"
    );
    let actions = h.exit(new0, WaitStatus::signaled(15));
    assert!(matches!(reply_of(&actions, stop), Some(Ok(_))));
    assert_eq!(h.sup.apps().map(|a| a.id).collect::<Vec<_>>(), old);
    assert!(h.sup.apps().all(|a| a.state == State::Stopped));
}
/// Watch mode, health checks and readiness.
mod checks;
mod hooks;
/// Dependencies, one-shot jobs and schedules.
mod jobs;
mod signals;
mod update;

#[test]
fn reload_waits_for_ready_1_with_ready_notify() {
    let mut h = Harness::new();
    let mut s = spec("web");
    s.readiness.mode = ReadyMode::Notify;
    let (_, actions) = h.cmd(Command::Start {
        specs: vec![s],
        exclusive: true,
    });
    let old = spawns(&actions)[0];
    h.spawned(old);
    let old_pid = h.pid(old);
    let (t, new, _) = reload_started(&mut h, "web");
    let actions = h.spawned(new);
    assert!(
        wake_at(&actions).is_empty(),
        "online is not ready without READY=1"
    );
    h.at(secs(5));
    let actions = h.input(Input::Notified {
        app: new,
        message: NotifyMessage::parse(b"READY=1"),
    });
    let settle = wake_at(&actions);
    assert_eq!(settle, [h.t0 + secs(5) + SETTLE], "ready now: settling");
    let actions = wake(&mut h, new, settle[0]);
    assert_eq!(signals(&actions), [(old_pid, signal::TERM)]);
    let actions = h.exit(old, WaitStatus::signaled(15));
    assert_eq!(reply_of(&actions, t), Some(Ok(Reply::Apps(vec![new]))));
}

#[test]
fn with_cgroup_enforcement_the_supervisor_only_warns_and_the_kernel_kills() {
    let mut h = Harness::new();
    let mut s = spec("hog");
    s.memory.max = Some(1000);
    s.memory.enforce = MemoryEnforce::Cgroup;
    let (_, actions) = h.cmd(Command::Start {
        specs: vec![s],
        exclusive: true,
    });
    let id = spawn_of(&actions).unwrap();
    h.spawned(id);
    let pid = h.pid(id);
    let warned = h.input(Input::MemoryOver {
        pid,
        rss: 810,
        limit: 800,
    });
    assert!(
        warned
            .iter()
            .any(|a| matches!(a, Action::Notify(Notification::MemoryWarning { .. })))
    );
    assert!(
        !warned
            .iter()
            .any(|a| matches!(a, Action::SetMemoryLimit { .. })),
        "the limit itself is the kernel's: not watched ({warned:?})"
    );
    // a crossing reported anyway (a limit set before) does not restart the app
    let over = h.input(Input::MemoryOver {
        pid,
        rss: 1001,
        limit: 1000,
    });
    assert!(signals(&over).is_empty(), "{over:?}");
    assert_eq!(h.state(id), AppState::Online);
    // the kernel's OOM kill is what ends it
    h.input(Input::OomKilled { pid });
    h.exit(id, WaitStatus::signaled(9));
    assert_eq!(
        h.sup.app(id).unwrap().last_exit.as_ref().unwrap().reason,
        ExitReason::OomKill
    );
}
