//! Supervisor scenarios on a fake clock: `t0 + Duration`, no processes, no sleeps.

use std::time::{Duration, Instant};

use turbo_api::AppState;

use super::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
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
}

impl Harness {
    fn new() -> Self {
        let t0 = Instant::now();
        Self {
            sup: Supervisor::new(),
            t0,
            now: t0,
            ticket: 0,
        }
    }

    fn at(&mut self, s: u64) -> &mut Self {
        self.now = self.t0 + secs(s);
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

    /// Starts `name` and reports it spawned as `pid`; returns its id.
    fn start_online(&mut self, name: &str, pid: u32) -> AppId {
        let (_, actions) = self.cmd(Command::Start {
            specs: vec![spec(name)],
            exclusive: true,
        });
        let id = spawn_of(&actions).expect("start spawns");
        self.input(Input::Spawned { app: id, pid });
        id
    }

    fn state(&self, id: AppId) -> AppState {
        self.sup.app(id).expect("app exists").state.public()
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
    let actions = h.input(Input::Spawned { app: id, pid: 100 });
    assert_eq!(h.state(id), AppState::Online);
    assert_eq!(reply_of(&actions, t), Some(Ok(Reply::Apps(vec![id]))));
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
fn crash_restarts_after_the_fixed_delay() {
    let mut h = Harness::new();
    let id = h.start_online("api", 100);
    let actions = h.at(10).input(Input::Exited {
        pid: 100,
        status: WaitStatus::signaled(9),
        source: SourceKind::Ebpf,
    });
    assert_eq!(h.state(id), AppState::Backoff);
    let (generation, at) = timer_of(&actions).expect("restart timer");
    assert_eq!(at, h.t0 + secs(11));
    let exit = h.sup.app(id).unwrap().last_exit.clone().unwrap();
    assert_eq!(exit.reason, ExitReason::Signal);
    assert_eq!(exit.source, SourceKind::Ebpf);
    assert_eq!(exit.uptime, secs(10));

    // the second source reporting the same exit changes nothing
    let dup = h.input(Input::Exited {
        pid: 100,
        status: WaitStatus::signaled(9),
        source: SourceKind::Procfs,
    });
    assert!(dup.is_empty(), "{dup:?}");
    assert_eq!(
        h.sup.app(id).unwrap().last_exit.as_ref().unwrap().source,
        SourceKind::Ebpf
    );

    let actions = h.at(11).input(Input::Timer {
        app: id,
        generation,
    });
    assert_eq!(spawn_of(&actions), Some(id));
    h.input(Input::Spawned { app: id, pid: 101 });
    assert_eq!(h.state(id), AppState::Online);
    assert_eq!(h.sup.app(id).unwrap().restarts, 1);
    assert_eq!(h.sup.app(id).unwrap().pid(), Some(101));
}

#[test]
fn autorestart_policies() {
    // (policy, exit status, expected state after the exit)
    let table = [
        (
            Autorestart::Always,
            WaitStatus::exited(0),
            AppState::Backoff,
        ),
        (
            Autorestart::Always,
            WaitStatus::exited(3),
            AppState::Backoff,
        ),
        (
            Autorestart::OnFailure,
            WaitStatus::exited(0),
            AppState::Stopped,
        ),
        (
            Autorestart::OnFailure,
            WaitStatus::exited(3),
            AppState::Backoff,
        ),
        (
            Autorestart::OnFailure,
            WaitStatus::signaled(15),
            AppState::Backoff,
        ),
        (Autorestart::Never, WaitStatus::exited(3), AppState::Stopped),
    ];
    for (policy, status, expected) in table {
        let mut h = Harness::new();
        let mut s = spec("a");
        s.autorestart = policy;
        let (_, actions) = h.cmd(Command::Start {
            specs: vec![s],
            exclusive: true,
        });
        let id = spawn_of(&actions).unwrap();
        h.input(Input::Spawned { app: id, pid: 5 });
        h.at(1).input(Input::Exited {
            pid: 5,
            status,
            source: SourceKind::Procfs,
        });
        assert_eq!(h.state(id), expected, "{policy:?} {status:?}");
    }
}

#[test]
fn stop_waits_for_the_exit_and_escalates_to_sigkill() {
    let mut h = Harness::new();
    let id = h.start_online("api", 100);
    let (t, actions) = h.at(5).cmd(Command::Stop(Target::Name("api".into())));
    assert_eq!(signals(&actions), vec![(100, signal::TERM)]);
    assert_eq!(h.state(id), AppState::Stopping);
    assert_eq!(
        reply_of(&actions, t),
        None,
        "stop replies only when the process is gone"
    );
    let (generation, at) = timer_of(&actions).unwrap();
    assert_eq!(at, h.t0 + secs(10), "kill_timeout defaults to 5 s");

    let actions = h.at(10).input(Input::Timer {
        app: id,
        generation,
    });
    assert_eq!(signals(&actions), vec![(100, signal::KILL)]);
    // a second firing of the same timer does not kill twice
    assert!(
        signals(&h.input(Input::Timer {
            app: id,
            generation
        }))
        .is_empty()
    );

    let actions = h.input(Input::Exited {
        pid: 100,
        status: WaitStatus::signaled(9),
        source: SourceKind::Procfs,
    });
    assert_eq!(h.state(id), AppState::Stopped);
    assert_eq!(reply_of(&actions, t), Some(Ok(Reply::Apps(vec![id]))));
    let exit = h.sup.app(id).unwrap().last_exit.clone().unwrap();
    assert_eq!(exit.reason, ExitReason::Manual);
    assert_eq!(
        exit.status.signal(),
        Some(9),
        "the reply shows it took SIGKILL"
    );
}

#[test]
fn stop_during_backoff_cancels_the_restart() {
    let mut h = Harness::new();
    let id = h.start_online("api", 100);
    let actions = h.at(1).input(Input::Exited {
        pid: 100,
        status: WaitStatus::exited(1),
        source: SourceKind::Procfs,
    });
    let (generation, _) = timer_of(&actions).unwrap();
    let (t, actions) = h.cmd(Command::Stop(Target::All));
    assert_eq!(reply_of(&actions, t), Some(Ok(Reply::Apps(vec![id]))));
    assert!(
        spawn_of(&h.at(2).input(Input::Timer {
            app: id,
            generation
        }))
        .is_none()
    );
    assert_eq!(h.state(id), AppState::Stopped);
}

#[test]
fn restart_stops_then_spawns_and_counts() {
    let mut h = Harness::new();
    let id = h.start_online("api", 100);
    let (t, actions) = h.cmd(Command::Restart(Target::Id(id)));
    assert_eq!(signals(&actions), vec![(100, signal::TERM)]);
    let actions = h.input(Input::Exited {
        pid: 100,
        status: WaitStatus::signaled(15),
        source: SourceKind::Procfs,
    });
    assert_eq!(spawn_of(&actions), Some(id));
    assert_eq!(reply_of(&actions, t), None, "waits for the new process");
    let actions = h.input(Input::Spawned { app: id, pid: 200 });
    assert_eq!(reply_of(&actions, t), Some(Ok(Reply::Apps(vec![id]))));
    assert_eq!(h.sup.app(id).unwrap().restarts, 1);
}

#[test]
fn delete_forgets_after_the_exit() {
    let mut h = Harness::new();
    let id = h.start_online("api", 100);
    let (t, _) = h.cmd(Command::Delete(Target::Name("api".into())));
    assert!(h.sup.app(id).is_some(), "kept until its process is gone");
    let actions = h.input(Input::Exited {
        pid: 100,
        status: WaitStatus::signaled(15),
        source: SourceKind::Procfs,
    });
    assert!(h.sup.app(id).is_none());
    assert!(actions.contains(&Action::Notify(Notification::Removed {
        app: id,
        name: "api".into()
    })));
    assert_eq!(
        reply_of(&actions, t),
        Some(Ok(Reply::Deleted(vec!["api".into()])))
    );
}

#[test]
fn bad_targets_and_names_are_refused_without_side_effects() {
    let mut h = Harness::new();
    let id = h.start_online("api", 100);
    for cmd in [
        Command::Stop(Target::Name("nope".into())),
        Command::Restart(Target::Id(99)),
        Command::Delete(Target::Name("nope".into())),
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
    let id = h.start_online("api", 100);
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
    let (_, actions) = h.cmd(Command::Start {
        specs: vec![changed.clone()],
        exclusive: false,
    });
    assert_eq!(signals(&actions), vec![(100, signal::TERM)]);
    let actions = h.input(Input::Exited {
        pid: 100,
        status: WaitStatus::signaled(15),
        source: SourceKind::Procfs,
    });
    assert!(actions.contains(&Action::Spawn {
        app: id,
        spec: changed
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
    let id = h.start_online("api", 100);
    let actions = h.input(Input::Exited {
        pid: 4242,
        status: WaitStatus::exited(0),
        source: SourceKind::Ebpf,
    });
    assert!(actions.is_empty());
    assert_eq!(h.state(id), AppState::Online);
}
