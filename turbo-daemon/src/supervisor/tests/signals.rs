//! `turbo signal`, `reload_signal` and `@group` targets on the fake clock.

use super::*;

fn process_signals(actions: &[Action]) -> Vec<(AppId, u32, i32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SignalProcess { app, pid, signal } => Some((*app, *pid, *signal)),
            _ => None,
        })
        .collect()
}

fn grouped(name: &str, group: &str) -> AppSpec {
    let mut s = spec(name);
    s.app_group = Some(group.into());
    s
}

#[test]
fn signal_reaches_the_main_process_of_running_apps_only() {
    let mut h = Harness::new();
    let web = h.start_spec(grouped("web", "front"));
    let api = h.start_spec(grouped("api", "front"));
    let db = h.start_spec(grouped("db", "back"));
    h.cmd(Command::Stop(Target::Name("api".into())));
    h.exit(api, WaitStatus::signaled(15));
    assert_eq!(h.state(api), AppState::Stopped);

    let (t, actions) = h.cmd(Command::Signal {
        target: Target::parse("@front"),
        signal: signal::HUP,
    });
    // the stopped member is left out; the process alone, never its group, gets it
    assert_eq!(
        process_signals(&actions),
        vec![(web, h.pid(web), signal::HUP)]
    );
    assert!(signals(&actions).is_empty(), "no group signal: {actions:?}");
    assert_eq!(reply_of(&actions, t), Some(Ok(Reply::Apps(vec![web]))));
    assert_eq!(h.state(web), AppState::Online, "a signal changes no state");
    assert_eq!(h.state(db), AppState::Online);

    let (t, actions) = h.cmd(Command::Signal {
        target: Target::Name("api".into()),
        signal: signal::HUP,
    });
    assert!(process_signals(&actions).is_empty());
    match reply_of(&actions, t) {
        Some(Err(CommandError::NotRunning(m))) => {
            assert!(m.contains("'api' is not running"), "{m}")
        }
        other => panic!("expected NotRunning, got {other:?}"),
    }
    let (t, actions) = h.cmd(Command::Signal {
        target: Target::parse("@nobody"),
        signal: signal::HUP,
    });
    assert_eq!(
        reply_of(&actions, t),
        Some(Err(CommandError::NotFound("@nobody".into())))
    );
}

#[test]
fn a_group_is_a_target_of_every_command() {
    let mut h = Harness::new();
    let a = h.start_spec(grouped("a", "g"));
    let b = h.start_spec(grouped("b", "g"));
    let c = h.start_online("c");
    assert_eq!(h.sup.resolve(&Target::parse("@g")), Ok(vec![a, b]));
    let (_, actions) = h.cmd(Command::Restart(Target::parse("@g")));
    let stopped: Vec<u32> = signals(&actions).into_iter().map(|(pid, _)| pid).collect();
    assert_eq!(stopped, vec![h.pid(a), h.pid(b)], "only the group restarts");
    assert_eq!(h.state(c), AppState::Online);
}

#[test]
fn reload_with_a_reload_signal_signals_instead_of_replacing() {
    let mut h = Harness::new();
    let mut s = spec("nginx");
    s.reload_signal = Some(signal::HUP);
    let id = h.start_spec(s);
    let pid = h.pid(id);
    let (t, actions) = h.cmd(Command::Reload(Target::Name("nginx".into())));
    assert_eq!(process_signals(&actions), vec![(id, pid, signal::HUP)]);
    assert!(
        spawns(&actions).is_empty(),
        "nothing is replaced: {actions:?}"
    );
    assert_eq!(reply_of(&actions, t), Some(Ok(Reply::Apps(vec![id]))));
    assert_eq!(h.pid(id), pid);

    // with sockets to hand over, the rolling replacement is the better reload
    let mut s = spec("web");
    s.reload_signal = Some(signal::HUP);
    s.listen = vec!["127.0.0.1:0".into()];
    let web = h.start_spec(s);
    let (_, actions) = h.cmd(Command::Reload(Target::Name("web".into())));
    assert!(process_signals(&actions).is_empty());
    assert_eq!(
        spawns(&actions).len(),
        1,
        "a replacement starts: {actions:?}"
    );
    assert_ne!(spawns(&actions)[0], web);
}
