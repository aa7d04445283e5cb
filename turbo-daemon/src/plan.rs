//! The plan of a `turbo apply`: what must happen to make the daemon's apps match a file.
//!
//! Pure: two lists of specs in, a [`Plan`] out. Every field of [`AppSpec`] is classified here
//! ([`diff`]) as one the supervisor can take over while the app runs ([`How::Live`]) or one
//! that needs a new process ([`How::Restart`]); an app with a restart-class change is replaced
//! with a rolling reload when it can tell when it is ready (`listen:`, `ready: notify` or a
//! health check), else restarted. It must not read files, the clock or the daemon's state: the
//! runtime hands it the specs and carries the plan out.

use crate::spec::{AppSpec, Controller, MemoryEnforce};

/// Whether a changed field can be taken over by a running app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// The supervisor uses the new value from now on; the process keeps running.
    Live,
    /// The process must be replaced for the new value to take effect.
    Restart,
}

impl How {
    /// `live` or `restart`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Restart => "restart",
        }
    }
}

/// One changed key of an app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldChange {
    /// The key as turbo.yml spells it (`max_memory`, `health`, `cmd`, ...).
    pub field: &'static str,
    /// How the change takes effect.
    pub how: How,
}

/// What happens to one app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// In the file, not in the daemon: started.
    Add,
    /// In the daemon, not in the file, with `--prune`: stopped and forgotten.
    Remove,
    /// In the daemon, not in the file, without `--prune`: left alone.
    Keep,
    /// The same in both.
    Unchanged,
    /// Only live changes: the running app takes them over.
    Update,
    /// Restart-class changes, no readiness signal: stopped and started with the new spec.
    Restart,
    /// Restart-class changes of an app that says when it is ready: replaced one instance at a
    /// time, each once its replacement is ready.
    Reload,
}

impl Step {
    /// The word the CLI and the D-Bus answer use.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Remove => "remove",
            Self::Keep => "keep",
            Self::Unchanged => "unchanged",
            Self::Update => "update",
            Self::Restart => "restart",
            Self::Reload => "reload",
        }
    }
}

/// One app's part of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct AppPlan {
    /// The app.
    pub name: String,
    /// What happens to it.
    pub step: Step,
    /// Its changed keys (empty unless `Update`, `Restart` or `Reload`).
    pub fields: Vec<FieldChange>,
    /// The new spec (`Add`, `Update`, `Restart`, `Reload`).
    pub spec: Option<AppSpec>,
}

/// Everything an apply does, one entry per app, in the file's order, then the apps only the
/// daemon has (by name).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The apps.
    pub apps: Vec<AppPlan>,
}

impl Plan {
    /// The apps with step `step`.
    pub fn with(&self, step: Step) -> impl Iterator<Item = &AppPlan> {
        self.apps.iter().filter(move |a| a.step == step)
    }

    /// Whether applying it changes nothing.
    #[must_use]
    pub fn is_noop(&self) -> bool {
        self.apps
            .iter()
            .all(|a| matches!(a.step, Step::Unchanged | Step::Keep))
    }
}

/// The keys whose values differ between `old` and `new`, each classified.
///
/// Every field of [`AppSpec`] is named below (the destructuring is exhaustive), so a new field
/// cannot be added without deciding how an apply takes it over.
#[must_use]
pub fn diff(old: &AppSpec, new: &AppSpec) -> Vec<FieldChange> {
    let AppSpec {
        name: _,
        argv,
        cwd,
        env,
        autorestart,
        restart,
        stop_exit_codes,
        stop_signal,
        kill_timeout,
        log,
        memory,
        resources,
        privileges,
        instances,
        listen,
        watch,
        health,
        readiness,
        autostart,
        source,
        lifecycle,
        exec_allow,
        app_group,
        reload_signal,
        on_crash,
        on_state,
        hooks,
    } = new;
    let mut out = Vec::new();
    let mut note = |differs: bool, field: &'static str, how: How| {
        if differs {
            out.push(FieldChange { field, how });
        }
    };
    // the process itself: only a new one sees these
    note(*argv != old.argv, "cmd", How::Restart);
    note(*cwd != old.cwd, "cwd", How::Restart);
    note(*env != old.env, "env", How::Restart);
    // its log files are opened with the policy when it starts
    note(*log != old.log, "log", How::Restart);
    note(**privileges != *old.privileges, "privileges", How::Restart);
    // the sockets are bound before the spawn and passed to it
    note(*listen != old.listen, "listen", How::Restart);
    // the watcher is set up at the spawn
    note(*watch != old.watch, "watch", How::Restart);
    note(*readiness != old.readiness, "ready", How::Restart);
    // decisions the supervisor takes when they come up, from the spec it has then
    note(*autorestart != old.autorestart, "autorestart", How::Live);
    note(*restart != old.restart, "restart", How::Live);
    note(
        *stop_exit_codes != old.stop_exit_codes,
        "stop_exit_codes",
        How::Live,
    );
    note(*stop_signal != old.stop_signal, "stop_signal", How::Live);
    note(*kill_timeout != old.kill_timeout, "kill_timeout", How::Live);
    // scaling starts or stops instances and leaves the others running
    note(*instances != old.instances, "instances", How::Live);
    note(*source != old.source, "source", How::Live);
    // read when the app starts (dependencies), exits (type, retries) or its schedule is
    // re-armed (cron, which an update re-arms)
    note(lifecycle.kind != old.lifecycle.kind, "type", How::Live);
    note(
        lifecycle.retries != old.lifecycle.retries,
        "retries",
        How::Live,
    );
    note(
        lifecycle.depends_on != old.lifecycle.depends_on
            || lifecycle.depends_timeout != old.lifecycle.depends_timeout
            || lifecycle.restart_with_deps != old.lifecycle.restart_with_deps,
        "depends_on",
        How::Live,
    );
    note(lifecycle.cron != old.lifecycle.cron, "cron", How::Live);
    // each exec is judged with the spec of the moment
    note(*exec_allow != old.exec_allow, "exec_allow", How::Live);
    // it only decides whether adding the app starts it
    note(*autostart != old.autostart, "autostart", How::Live);
    // only read when a command names the group, or when a reload comes
    note(*app_group != old.app_group, "app_group", How::Live);
    note(
        *reload_signal != old.reload_signal,
        "reload_signal",
        How::Live,
    );
    // read when a crash or a state change is announced
    note(*on_crash != old.on_crash, "on_crash", How::Live);
    note(*on_state != old.on_state, "on_state", How::Live);
    // each is read when its moment comes
    note(**hooks != *old.hooks, "hooks", How::Live);
    // a new threshold is handed to the running process's memory watch; a limit the kernel
    // enforces lives in a cgroup made at the spawn, and no limit at all has no watch to update
    let memory_live = memory.enforce == MemoryEnforce::Restart
        && old.memory.enforce == MemoryEnforce::Restart
        && memory.max.is_some()
        && old.memory.max.is_some();
    note(
        *memory != old.memory,
        "max_memory",
        if memory_live { How::Live } else { How::Restart },
    );
    // a limit is rewritten in the cgroup the running instance is in; one that needs a
    // controller the instance's cgroup lacks (or no longer needs one) needs a new cgroup
    let resources_how = if cgroup_controllers(new) == cgroup_controllers(old) {
        How::Live
    } else {
        How::Restart
    };
    for ((key, now), (_, before)) in resources.keyed().into_iter().zip(old.resources.keyed()) {
        note(now != before, key, resources_how);
    }
    // it decides how the cgroup is made, at the start
    note(
        resources.best_effort != old.resources.best_effort,
        "limits_required",
        How::Restart,
    );
    // each check reads the spec when it runs; adding or removing one arms or drops its timers,
    // which happens at the start
    note(
        *health != old.health,
        "health",
        if health.is_some() && old.health.is_some() {
            How::Live
        } else {
            How::Restart
        },
    );
    out
}

/// The cgroup controllers an instance of `spec` is put under at its start.
fn cgroup_controllers(spec: &AppSpec) -> Vec<Controller> {
    let mut c = spec.resources.controllers();
    if spec.memory.enforce == MemoryEnforce::Cgroup
        && spec.memory.max.is_some()
        && !c.contains(&Controller::Memory)
    {
        c.push(Controller::Memory);
    }
    c
}

/// Whether the supervisor can tell when a new instance of `spec` is ready, so that a reload
/// can wait for it before stopping the old one.
#[must_use]
pub fn says_when_ready(spec: &AppSpec) -> bool {
    !spec.listen.is_empty()
        || spec.readiness.mode == crate::spec::ReadyMode::Notify
        || spec.health.is_some()
}

/// What applying `file` to a daemon with the apps `running` (one spec per app name) does.
///
/// `stopped`: names of the apps that are stopped on purpose: a restart-class change of one is
/// only handed over (`Update`), for its next start; an apply does not start what was stopped.
/// `prune`: apps only the daemon has are removed (else kept). `only`: when not empty, the plan
/// covers just these names (from the file or the daemon); the other apps are left out of it.
#[must_use]
pub fn plan(
    running: &[AppSpec],
    stopped: &[String],
    file: &[AppSpec],
    prune: bool,
    only: &[String],
) -> Plan {
    let wanted = |name: &str| only.is_empty() || only.iter().any(|n| n == name);
    let mut apps = Vec::new();
    for new in file.iter().filter(|s| wanted(&s.name)) {
        let entry = match running.iter().find(|s| s.name == new.name) {
            None => AppPlan {
                name: new.name.clone(),
                step: Step::Add,
                fields: Vec::new(),
                spec: Some(new.clone()),
            },
            Some(old) => {
                let fields = diff(old, new);
                let step = if fields.is_empty() {
                    Step::Unchanged
                } else if fields.iter().all(|f| f.how == How::Live) || stopped.contains(&new.name) {
                    Step::Update
                } else if says_when_ready(new) && !fields.iter().any(|f| f.field == "listen") {
                    // a replacement gets the sockets the daemon holds for the name: a new
                    // address needs the old process gone first
                    Step::Reload
                } else {
                    Step::Restart
                };
                AppPlan {
                    name: new.name.clone(),
                    spec: (step != Step::Unchanged).then(|| new.clone()),
                    step,
                    fields,
                }
            }
        };
        apps.push(entry);
    }
    let mut gone: Vec<&AppSpec> = running
        .iter()
        .filter(|s| wanted(&s.name) && !file.iter().any(|f| f.name == s.name))
        .collect();
    gone.sort_by(|a, b| a.name.cmp(&b.name));
    apps.extend(gone.into_iter().map(|s| AppPlan {
        name: s.name.clone(),
        step: if prune { Step::Remove } else { Step::Keep },
        fields: Vec::new(),
        spec: None,
    }));
    Plan { apps }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::spec::{Autorestart, HealthProbe, HealthSpec, LogFormat, ReadyMode, WatchSpec};

    fn spec(name: &str) -> AppSpec {
        let mut s = AppSpec::new(name, vec!["/bin/sleep".into(), "9".into()], "/srv".into());
        s.memory.max = Some(100 << 20);
        s
    }

    fn health() -> HealthSpec {
        HealthSpec::new(HealthProbe::Tcp {
            addr: "127.0.0.1:1".into(),
        })
    }

    type Edit = fn(&mut AppSpec);

    /// Each edit of `old` changes exactly its key, applied as said.
    fn assert_classified(old: &AppSpec, table: &[(Edit, &'static str, How)]) {
        for (edit, field, how) in table {
            let mut new = old.clone();
            edit(&mut new);
            assert_eq!(
                diff(old, &new),
                vec![FieldChange { field, how: *how }],
                "{field}"
            );
        }
    }

    /// One row per field: the change, the key reported, how it is applied.
    #[test]
    fn every_field_is_classified() {
        let table: &[(Edit, &str, How)] = &[
            (|s| s.argv.push("x".into()), "cmd", How::Restart),
            (|s| s.cwd = "/tmp".into(), "cwd", How::Restart),
            (
                |s| s.env.push(("A".into(), "1".into())),
                "env",
                How::Restart,
            ),
            (|s| s.log.format = LogFormat::Json, "log", How::Restart),
            (
                |s| s.privileges.limits.nice = Some(5),
                "privileges",
                How::Restart,
            ),
            (
                |s| s.privileges.limits.umask = Some(0o27),
                "privileges",
                How::Restart,
            ),
            (
                |s| s.listen.push("127.0.0.1:0".into()),
                "listen",
                How::Restart,
            ),
            (
                |s| {
                    s.watch = Some(WatchSpec {
                        paths: vec!["/srv".into()],
                        ignore: Vec::new(),
                        delay: Duration::from_millis(500),
                    });
                },
                "watch",
                How::Restart,
            ),
            (
                |s| s.readiness.mode = ReadyMode::Notify,
                "ready",
                How::Restart,
            ),
            (
                |s| s.autorestart = Autorestart::Never,
                "autorestart",
                How::Live,
            ),
            (
                |s| s.restart.delay = Duration::from_secs(7),
                "restart",
                How::Live,
            ),
            (|s| s.stop_exit_codes.push(3), "stop_exit_codes", How::Live),
            (|s| s.stop_signal = 2, "stop_signal", How::Live),
            (
                |s| s.kill_timeout = Duration::from_secs(1),
                "kill_timeout",
                How::Live,
            ),
            (|s| s.instances = 3, "instances", How::Live),
            (
                |s| s.source = Some("/etc/turbo/turbo.yml".into()),
                "source",
                How::Live,
            ),
            (|s| s.autostart = false, "autostart", How::Live),
            (
                |s| s.exec_allow = vec!["/bin/*".into()],
                "exec_allow",
                How::Live,
            ),
            (|s| s.memory.max = Some(200 << 20), "max_memory", How::Live),
            (|s| s.memory.warning_percent = 50, "max_memory", How::Live),
            (|s| s.memory.max = None, "max_memory", How::Restart),
            (
                |s| s.memory.enforce = MemoryEnforce::Cgroup,
                "max_memory",
                How::Restart,
            ),
            (|s| s.health = Some(health()), "health", How::Restart),
            // a first cgroup limit needs a cgroup the running process is not in
            (|s| s.resources.cpu_max = Some(50), "cpu_max", How::Restart),
        ];
        let old = spec("web");
        assert_classified(&old, table);
        assert!(diff(&old, &old.clone()).is_empty());
    }

    #[test]
    fn cgroup_limits_are_live_within_the_controllers_the_cgroup_has() {
        let mut old = spec("web");
        old.resources.cpu_max = Some(50);
        old.resources.pids_max = Some(20);
        let table: &[(Edit, &str, How)] = &[
            (|s| s.resources.cpu_max = Some(150), "cpu_max", How::Live),
            // the same controller: cpu
            (
                |s| s.resources.cpu_weight = Some(10),
                "cpu_weight",
                How::Live,
            ),
            (|s| s.resources.pids_max = None, "pids_max", How::Restart),
            (
                |s| s.resources.io_weight = Some(10),
                "io_weight",
                How::Restart,
            ),
            (
                |s| s.resources.memory_high = Some(1 << 30),
                "memory_high",
                How::Restart,
            ),
        ];
        assert_classified(&old, table);
        // memory_high beside a kernel-enforced max_memory: the memory cgroup is there already
        old.memory.enforce = MemoryEnforce::Cgroup;
        let mut new = old.clone();
        new.resources.memory_high = Some(50 << 20);
        assert_eq!(diff(&old, &new)[0].how, How::Live);
    }

    #[test]
    fn health_timing_is_live_but_adding_a_check_is_not() {
        let mut old = spec("web");
        old.health = Some(health());
        let mut new = old.clone();
        new.health.as_mut().expect("set").interval = Duration::from_secs(1);
        assert_eq!(diff(&old, &new)[0].how, How::Live);
        new.health = None;
        assert_eq!(diff(&old, &new)[0].how, How::Restart);
    }

    #[test]
    fn a_plan_adds_changes_keeps_and_prunes() {
        let running = vec![spec("api"), spec("old"), spec("same"), spec("worker")];
        let mut api = spec("api");
        api.memory.max = Some(1 << 30);
        let mut worker = spec("worker");
        worker.argv.push("--fast".into());
        let file = vec![spec("new"), api, spec("same"), worker];
        let steps = |p: &Plan| -> Vec<(String, Step)> {
            p.apps.iter().map(|a| (a.name.clone(), a.step)).collect()
        };
        let kept = plan(&running, &[], &file, false, &[]);
        assert_eq!(
            steps(&kept),
            [
                ("new".into(), Step::Add),
                ("api".into(), Step::Update),
                ("same".into(), Step::Unchanged),
                ("worker".into(), Step::Restart),
                ("old".into(), Step::Keep),
            ]
        );
        assert!(kept.apps[2].spec.is_none() && kept.apps[3].spec.is_some());
        let pruned = plan(&running, &[], &file, true, &[]);
        assert_eq!(pruned.apps[4].step, Step::Remove);
        assert!(!pruned.is_noop());
        let only = plan(&running, &[], &file, true, &["api".into(), "old".into()]);
        assert_eq!(
            steps(&only),
            [("api".into(), Step::Update), ("old".into(), Step::Remove)]
        );
        assert!(plan(&running, &[], &running, true, &[]).is_noop());
        // a stopped app is handed its new spec and stays stopped
        let stopped = plan(&running, &["worker".into()], &file, false, &[]);
        assert_eq!(stopped.apps[3].step, Step::Update);
        assert_eq!(stopped.apps[3].fields[0].how, How::Restart);
    }

    #[test]
    fn an_app_that_says_when_it_is_ready_is_reloaded() {
        let mut old = spec("web");
        old.listen = vec!["127.0.0.1:8080".into()];
        let mut new = old.clone();
        new.env.push(("V".into(), "2".into()));
        assert_eq!(
            plan(&[old.clone()], &[], &[new.clone()], false, &[]).apps[0].step,
            Step::Reload
        );
        // a new listen address cannot be reloaded into: the old sockets are the old ones
        new.listen = vec!["127.0.0.1:8081".into()];
        assert_eq!(
            plan(&[old], &[], &[new], false, &[]).apps[0].step,
            Step::Restart
        );
    }
}
