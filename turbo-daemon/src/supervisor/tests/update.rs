//! `Command::Update`: a running app takes over a new spec without a restart.

use super::*;

#[test]
fn an_update_keeps_the_process_and_moves_the_memory_watch() {
    let mut h = Harness::new();
    let mut s = spec("api");
    s.memory.max = Some(1000);
    let id = h.start_spec(s.clone());
    let pid = h.pid(id);
    s.memory.max = Some(2000);
    s.kill_timeout = secs(1);
    s.instances = 2;
    let (t, actions) = h.cmd(Command::Update(vec![s]));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::SignalGroup { app, .. } if *app == id)),
        "no stop signal: {actions:?}"
    );
    assert!(actions.contains(&Action::SetMemoryLimit {
        app: id,
        pid,
        bytes: 1600
    }));
    let app = h.sup.app(id).expect("kept");
    assert_eq!((app.pid(), app.spec.kill_timeout), (Some(pid), secs(1)));
    // the second instance starts; the reply waits for it
    let added = spawn_of(&actions).expect("a new instance spawns");
    assert_ne!(added, id);
    assert!(reply_of(&actions, t).is_none());
    let settled = h.spawned(added);
    assert!(matches!(reply_of(&settled, t), Some(Ok(Reply::Apps(_)))));
}

#[test]
fn an_update_hands_new_cgroup_limits_to_the_running_process() {
    let mut h = Harness::new();
    let mut s = spec("api");
    s.resources.cpu_max = Some(50);
    let id = h.start_spec(s.clone());
    let pid = h.pid(id);
    // the same limits: nothing to rewrite
    let (_, same) = h.cmd(Command::Update(vec![s.clone()]));
    assert!(
        !same
            .iter()
            .any(|a| matches!(a, Action::SetCgroupLimits { .. }))
    );
    s.resources.cpu_max = Some(20);
    let (_, actions) = h.cmd(Command::Update(vec![s]));
    assert!(
        actions.contains(&Action::SetCgroupLimits { app: id }),
        "{actions:?}"
    );
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::SignalGroup { .. }))
    );
    let app = h.sup.app(id).expect("kept");
    assert_eq!(
        (app.pid(), app.spec.resources.cpu_max),
        (Some(pid), Some(20))
    );
}

#[test]
fn an_update_of_an_unknown_app_changes_nothing() {
    let mut h = Harness::new();
    let id = h.start_online("api");
    let mut known = spec("api");
    known.kill_timeout = secs(1);
    let (t, actions) = h.cmd(Command::Update(vec![known, spec("ghost")]));
    assert!(matches!(
        reply_of(&actions, t),
        Some(Err(CommandError::NotFound(_)))
    ));
    assert_eq!(h.sup.app(id).expect("kept").spec.kill_timeout, secs(5));
}

#[test]
fn an_app_without_autostart_is_defined_stopped_until_started_by_name() {
    let mut h = Harness::new();
    let mut s = spec("later");
    s.autostart = false;
    let (t, actions) = h.cmd(Command::Start {
        specs: vec![s.clone()],
        exclusive: false,
    });
    assert_eq!(spawn_of(&actions), None);
    assert!(
        matches!(reply_of(&actions, t), Some(Ok(Reply::Apps(ref ids))) if ids.len() == 1),
        "{actions:?}"
    );
    let id = h.sup.apps().next().expect("defined").id;
    assert_eq!(h.state(id), AppState::Stopped);
    // starting its file again does not start it either
    let (_, again) = h.cmd(Command::Start {
        specs: vec![s],
        exclusive: false,
    });
    assert_eq!(spawn_of(&again), None);
    let (_, restarted) = h.cmd(Command::Restart(Target::Name("later".into())));
    assert_eq!(spawn_of(&restarted), Some(id));
}
