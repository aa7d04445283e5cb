//! When hooks run relative to the spawn and the stop, on the fake clock.

use super::*;
use crate::spec::{HookKind, HookSpec};

fn hook(argv: &str, timeout: Duration) -> Option<HookSpec> {
    Some(HookSpec {
        argv: vec![argv.into()],
        timeout,
    })
}

fn hooked(name: &str) -> AppSpec {
    let mut s = spec(name);
    s.hooks.pre_start = hook("/bin/pre", secs(10));
    s.hooks.post_start = hook("/bin/post", secs(10));
    s.hooks.pre_stop = hook("/bin/drain", secs(20));
    s.hooks.post_stop = hook("/bin/cleanup", secs(10));
    s
}

fn hooks_run(actions: &[Action]) -> Vec<(HookKind, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::RunHook { hook, token, .. } => Some((*hook, *token)),
            _ => None,
        })
        .collect()
}

fn done(h: &mut Harness, app: AppId, hook: HookKind, token: u64, ok: bool) -> Vec<Action> {
    h.input(Input::HookDone {
        app,
        hook,
        token,
        pid: 900,
        result: if ok {
            Ok(())
        } else {
            Err(HookFailure {
                status: WaitStatus::exited(3),
                message: "/bin/pre exited with 3: database not reachable".into(),
            })
        },
    })
}

/// Starts a hooked app through its `pre_start`; returns its id and what the spawn did.
fn start_hooked(h: &mut Harness, spec: AppSpec) -> (AppId, Ticket, Vec<Action>) {
    let (t, actions) = h.cmd(Command::Start {
        specs: vec![spec],
        exclusive: true,
    });
    let [(HookKind::PreStart, token)] = hooks_run(&actions)[..] else {
        panic!("pre_start first: {actions:?}");
    };
    assert!(
        spawn_of(&actions).is_none(),
        "no spawn before pre_start: {actions:?}"
    );
    let id = h.sup.apps().next().expect("added").id;
    assert_eq!(h.state(id), AppState::Starting);
    assert_eq!(reply_of(&actions, t), None, "start answers once it has run");
    let actions = done(h, id, HookKind::PreStart, token, true);
    assert_eq!(
        spawn_of(&actions),
        Some(id),
        "the spawn follows: {actions:?}"
    );
    (id, t, actions)
}

/// Starts a hooked app up to its `pre_start`; returns its id and the hook's token.
fn pre_starting(h: &mut Harness) -> (AppId, u64) {
    let (_, actions) = h.cmd(Command::Start {
        specs: vec![hooked("web")],
        exclusive: true,
    });
    (h.sup.apps().next().unwrap().id, hooks_run(&actions)[0].1)
}

#[test]
fn pre_start_comes_before_the_spawn_and_post_start_after_it() {
    let mut h = Harness::new();
    let (id, t, _) = start_hooked(&mut h, hooked("web"));
    let actions = h.spawned(id);
    assert_eq!(h.state(id), AppState::Online);
    assert_eq!(hooks_run(&actions).len(), 1);
    assert_eq!(hooks_run(&actions)[0].0, HookKind::PostStart);
    assert_eq!(reply_of(&actions, t), Some(Ok(Reply::Apps(vec![id]))));
    // post_start is waited for by nothing: its answer changes nothing
    let token = hooks_run(&actions)[0].1;
    assert!(done(&mut h, id, HookKind::PostStart, token, false).is_empty());
    assert_eq!(h.state(id), AppState::Online);
}

#[test]
fn a_failed_pre_start_is_a_crash_with_its_stderr_then_the_restart_policy() {
    let mut h = Harness::new();
    let (id, token) = pre_starting(&mut h);
    let actions = done(&mut h, id, HookKind::PreStart, token, false);
    assert!(spawn_of(&actions).is_none());
    let crash = actions.iter().find_map(|a| match a {
        Action::Notify(Notification::Crashed { pid, exit, .. }) => Some((*pid, exit.clone())),
        _ => None,
    });
    let (pid, exit) = crash.expect("a crash record");
    assert_eq!(
        pid, 900,
        "the hook's process, whose stderr the record takes"
    );
    assert_eq!(exit.reason, ExitReason::PreStart);
    assert_eq!(exit.status.code(), Some(3));
    assert!(
        exit.detail
            .as_deref()
            .unwrap()
            .contains("database not reachable"),
        "{exit:?}"
    );
    assert_eq!(h.state(id), AppState::Backoff);
    // the next attempt runs pre_start again, not the app
    let actions = h.fire(id, &actions);
    assert_eq!(hooks_run(&actions).len(), 1, "{actions:?}");
    assert_eq!(hooks_run(&actions)[0].0, HookKind::PreStart);
    assert!(spawn_of(&actions).is_none());
}

#[test]
fn pre_stop_comes_before_the_stop_signal_and_post_stop_after_the_group() {
    let mut h = Harness::new();
    let (id, _, _) = start_hooked(&mut h, hooked("web"));
    h.spawned(id);
    let pid = h.pid(id);
    h.at(secs(100));
    let (t, actions) = h.cmd(Command::Stop(Target::Name("web".into())));
    assert_eq!(h.state(id), AppState::Stopping);
    assert!(
        signals(&actions).is_empty(),
        "no signal during pre_start: {actions:?}"
    );
    let [(HookKind::PreStop, token)] = hooks_run(&actions)[..] else {
        panic!("pre_stop: {actions:?}");
    };
    // its guard: the hook's timeout and a grace
    let (_, guard) = timer_of(&actions).expect("a guard timer");
    assert_eq!(guard, h.t0 + secs(100 + 20 + 5));
    h.at(secs(103));
    let actions = done(&mut h, id, HookKind::PreStop, token, false);
    assert_eq!(
        signals(&actions),
        vec![(pid, signal::TERM)],
        "whatever its outcome"
    );
    let (generation, kill_at) = timer_of(&actions).expect("the kill timer");
    assert_eq!(
        kill_at,
        h.t0 + secs(103) + h.sup.app(id).unwrap().spec.kill_timeout
    );
    // the guard is stale now: it kills nothing
    assert!(
        signals(&h.input(Input::Timer {
            app: id,
            generation: generation - 1
        }))
        .is_empty()
    );
    let actions = h.exit(id, WaitStatus::signaled(15));
    assert_eq!(h.state(id), AppState::Stopped);
    assert_eq!(hooks_run(&actions).len(), 1);
    assert_eq!(hooks_run(&actions)[0].0, HookKind::PostStop);
    assert_eq!(reply_of(&actions, t), Some(Ok(Reply::Apps(vec![id]))));
}

#[test]
fn a_stop_during_pre_start_makes_its_answer_stale() {
    let mut h = Harness::new();
    let (id, token) = pre_starting(&mut h);
    h.cmd(Command::Stop(Target::Name("web".into())));
    assert_eq!(h.state(id), AppState::Stopped);
    let actions = done(&mut h, id, HookKind::PreStart, token, true);
    assert!(spawn_of(&actions).is_none(), "{actions:?}");
    assert_eq!(h.state(id), AppState::Stopped);
}

#[test]
fn without_hooks_nothing_waits() {
    let mut h = Harness::new();
    let id = h.start_online("plain");
    let (_, actions) = h.cmd(Command::Stop(Target::Name("plain".into())));
    assert!(hooks_run(&actions).is_empty());
    assert_eq!(signals(&actions).len(), 1, "the stop signal at once");
    assert_eq!(h.state(id), AppState::Stopping);
}
