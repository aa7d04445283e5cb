//! The privilege keys through the whole validation, as root, as a non-root daemon and for a
//! non-root caller.

use std::path::Path;

use super::*;
use crate::{
    config::{Document, from_yaml},
    spec::{AppSpec, Privileges},
};

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn root() -> Powers {
    Powers {
        euid: 0,
        egid: 0,
        groups: vec![0],
        nice: 0,
        nice_floor: -20,
        oom_score_adj: 0,
        hard: [4096, 1000, 0],
        nr_open: 1 << 20,
        unprivileged_port_start: 1024,
        caller: None,
    }
}

/// A daemon running as `nobody`, with a hard nofile of 4096 and no core dumps.
fn nobody_daemon() -> Powers {
    let n = nobody();
    Powers {
        euid: n.uid,
        egid: n.gid,
        groups: vec![n.gid],
        nice_floor: 20,
        ..root()
    }
}

fn nobody() -> users::User {
    users::user_by_name("nobody")
        .unwrap()
        .expect("the nobody user (Debian and most systems have it)")
}

/// The one app of `keys` (YAML lines at app level, each starting with 4 spaces).
fn app(keys: &str, powers: &Powers) -> Result<AppSpec, String> {
    let yml = format!("apps:\n  - name: a\n    cmd: [sleep, '1']\n{keys}");
    let doc = Document {
        content: &yml,
        origin: "t.yml",
        base_dir: Path::new("/"),
        path_env: PATH,
        vars: &crate::config::NO_VARS,
    };
    from_yaml(&doc, powers)
        .map(|mut s| s.remove(0))
        .map_err(|e| e.to_string())
}

fn err(keys: &str, powers: &Powers) -> String {
    app(keys, powers).expect_err("should be refused")
}

/// Each of `cases` (app keys, start of the message, a hint it must give) is refused for `powers`
/// with one line.
fn refused_with(cases: &[(&str, &str, &str)], powers: &Powers) {
    for (keys, start, hint) in cases {
        let e = err(keys, powers);
        assert_eq!(e.lines().count(), 1, "{keys:?} gave {e}");
        assert!(e.starts_with(start), "{keys:?} gave {e}\nwanted {start}");
        assert!(e.contains(hint), "{keys:?} gave {e}\nwanted {hint}");
    }
}

#[test]
fn nothing_asked_means_nothing_changed() {
    let spec = app("", &root()).unwrap();
    assert_eq!(*spec.privileges, Privileges::default());
}

#[test]
fn users_and_groups_resolve_to_ids() {
    let n = nobody();
    let spec = app("    user: nobody\n", &root()).unwrap();
    let r = spec.privileges.run_as.as_ref().unwrap();
    assert_eq!((r.user.as_str(), r.uid, r.gid), ("nobody", n.uid, n.gid));
    assert_eq!(
        (r.home.as_str(), r.shell.as_str()),
        (n.home.as_str(), n.shell.as_str())
    );
    let initgroups: Vec<u32> = users::group_list("nobody", n.gid).unwrap();
    assert_eq!(
        r.groups.iter().map(|(_, g)| *g).collect::<Vec<_>>(),
        initgroups,
        "default: the user's groups"
    );
    // a uid, as a number or as digits, names the same user
    for keys in [
        format!("    user: {}\n", n.uid),
        format!("    user: '{}'\n", n.uid),
    ] {
        let same = app(&keys, &root()).unwrap();
        assert_eq!(same.privileges.run_as, spec.privileges.run_as, "{keys}");
    }
    // explicit group and supplementary groups (exactly these, once each)
    let spec = app(
        "    user: nobody\n    group: root\n    groups: [root, 0]\n",
        &root(),
    )
    .unwrap();
    let r = spec.privileges.run_as.unwrap();
    assert_eq!((r.group.as_str(), r.gid), ("root", 0));
    assert_eq!(r.groups, [("root".to_owned(), 0)]);
    let spec = app("    user: nobody\n    groups: []\n", &root()).unwrap();
    assert!(
        spec.privileges.run_as.unwrap().groups.is_empty(),
        "groups: [] drops them all"
    );
    // `group:` alone: the daemon's own user with that group
    let spec = app("    group: root\n", &root()).unwrap();
    let r = spec.privileges.run_as.unwrap();
    assert_eq!((r.user.as_str(), r.uid, r.gid), ("root", 0, 0));
}

#[test]
fn limits_in_every_form() {
    let spec = app(
        "    umask: '027'\n    rlimits: { nofile: [256, 512], nproc: 100, core: unlimited }\n    nice: -5\n    oom_score_adj: -900\n",
        &root(),
    )
    .unwrap();
    let l = &spec.privileges.limits;
    assert_eq!(l.umask, Some(0o027));
    assert_eq!(
        l.nofile,
        Some(Rlimit {
            soft: 256,
            hard: 512
        })
    );
    assert_eq!(
        l.nproc,
        Some(Rlimit {
            soft: 100,
            hard: 100
        })
    );
    assert_eq!(
        l.core,
        Some(Rlimit {
            soft: Rlimit::UNLIMITED,
            hard: Rlimit::UNLIMITED
        })
    );
    assert_eq!((l.nice, l.oom_score_adj), (Some(-5), Some(-900)));
    // YAML reads an unquoted 027 as text (a leading zero is not a YAML 1.2 integer)
    for (umask, mode) in [("027", 0o027), ("'0o77'", 0o077), ("'0'", 0), ("0", 0)] {
        let spec = app(&format!("    umask: {umask}\n"), &root()).unwrap();
        assert_eq!(spec.privileges.limits.umask, Some(mode), "{umask}");
    }
    let spec = app("    rlimits:\n      core: [0, 1gb]\n", &root()).unwrap();
    assert_eq!(
        spec.privileges.limits.core,
        Some(Rlimit {
            soft: 0,
            hard: 1 << 30
        })
    );
}

#[test]
fn each_problem_points_at_its_value_with_a_hint() {
    // (app keys, start of the message, a hint it must give)
    let cases: &[(&str, &str, &str)] = &[
        (
            "    user: no-such-user-turbo\n",
            "t.yml:4:11: apps[0] (a): unknown user 'no-such-user-turbo'",
            "useradd --system",
        ),
        (
            "    user: 4000000000\n",
            "t.yml:4:11: apps[0] (a): uid 4000000000 has no passwd entry",
            "name an existing user",
        ),
        (
            "    user: 4294967295\n",
            "t.yml:4:11: apps[0] (a): user 4294967295 is not a valid id",
            "0 to 4294967294",
        ),
        (
            "    user: nobody\n    groups: [root, no-such-group-turbo]\n",
            "t.yml:5:20: apps[0] (a): unknown group 'no-such-group-turbo'",
            "groupadd",
        ),
        (
            "    group: no-such-group-turbo\n",
            "t.yml:4:12: apps[0] (a): unknown group",
            "name an existing group",
        ),
        (
            "    umask: 22\n",
            "t.yml:4:12: apps[0] (a): umask 22 is a bare number",
            "umask: '027'",
        ),
        (
            "    umask: '0999'\n",
            "t.yml:4:12: apps[0] (a): umask '0999' is not an octal mode",
            "like '027'",
        ),
        (
            "    rlimits: { nofile: [512, 256] }\n",
            "t.yml:4:24: apps[0] (a): rlimits.nofile: the soft limit 512 is above the hard limit 256",
            "soft <= hard",
        ),
        (
            "    rlimits: { nproc: [1, 2, 3] }\n",
            "t.yml:4:23: apps[0] (a): rlimits.nproc has 3 values",
            "[soft, hard]",
        ),
        (
            "    rlimits: { nofile: [10, lots] }\n",
            "t.yml:4:29: apps[0] (a): rlimits.nofile 'lots' is not a count or unlimited",
            "unlimited",
        ),
        (
            "    rlimits: { nproc: -1 }\n",
            "t.yml:4:23: apps[0] (a): rlimits.nproc -1 is negative",
            "a count or unlimited",
        ),
        (
            "    rlimits: { nofile: unlimited }\n",
            "t.yml:4:24: apps[0] (a): rlimits.nofile unlimited is above the kernel's ceiling 1048576",
            "/proc/sys/fs/nr_open",
        ),
        (
            "    rlimits: { stack: 1 }\n",
            "t.yml:4:16: apps[0].rlimits: unknown field `stack`",
            "expected one of `nofile`, `nproc`, `core`",
        ),
        (
            "    nice: 20\n",
            "t.yml:4:11: apps[0] (a): nice 20 is out of range",
            "-20 (most favoured) to 19",
        ),
        (
            "    oom_score_adj: -1001\n",
            "t.yml:4:20: apps[0] (a): oom_score_adj -1001 is out of range",
            "-1000 (never killed)",
        ),
        (
            "    user: [nobody]\n",
            "t.yml:4:11: apps[0].user: invalid type: sequence",
            "expected a name or a numeric id",
        ),
    ];
    refused_with(cases, &root());
}

/// A non-root daemon may only give an app what it has itself: checked when the config is
/// validated, with the reason, rather than failing every spawn with EPERM.
#[test]
fn a_non_root_daemon_refuses_what_only_root_may_grant() {
    let me = nobody_daemon();
    // its own user is fine, and the app keeps the daemon's groups (setgroups needs root)
    let spec = app("    user: nobody\n", &me).unwrap();
    let r = spec.privileges.run_as.unwrap();
    assert_eq!((r.uid, r.gid), (me.euid, me.egid));
    assert_eq!(
        r.groups.iter().map(|(_, g)| *g).collect::<Vec<_>>(),
        me.groups
    );
    // lowering the soft limit, raising nice and oom_score_adj are fine too
    app(
        "    rlimits: { nofile: [64, 4096] }\n    nice: 10\n    oom_score_adj: 100\n",
        &me,
    )
    .unwrap();

    let cases: &[(&str, &str, &str)] = &[
        (
            "    user: root\n",
            "t.yml:4:11: apps[0] (a): user root (uid 0): only root may run apps as another user, and the daemon runs as nobody",
            "remove `user:` or run the daemon as root",
        ),
        (
            "    user: nobody\n    group: root\n",
            "t.yml:5:12: apps[0] (a): group root (gid 0): only root may run apps with another group",
            "run the daemon as root",
        ),
        (
            "    groups: [nogroup]\n",
            "t.yml:4:13: apps[0] (a): only root may set supplementary groups",
            "remove `groups:`",
        ),
        (
            "    rlimits: { nofile: 8192 }\n",
            "t.yml:4:24: apps[0] (a): rlimits.nofile: the hard limit 8192 is above the daemon's own (4096)",
            "use at most 4096",
        ),
        (
            "    rlimits: { core: unlimited }\n",
            "t.yml:4:22: apps[0] (a): rlimits.core: the hard limit unlimited is above the daemon's own (0)",
            "only root may raise it",
        ),
        (
            "    nice: -1\n",
            "t.yml:4:11: apps[0] (a): nice -1 is below the daemon's own (0)",
            "use 0 or more",
        ),
        (
            "    oom_score_adj: -100\n",
            "t.yml:4:20: apps[0] (a): oom_score_adj -100 is below the daemon's own (0)",
            "only root may lower it",
        ),
    ];
    refused_with(cases, &me);
    // every problem at once, one line each
    let e = err("    user: root\n    nice: -1\n    oom_score_adj: -5\n", &me);
    assert_eq!(e.lines().count(), 3, "{e}");
}

/// A non-root caller of a root daemon: what `Powers::for_caller` gives for uid 65534.
fn nobody_caller() -> Powers {
    let n = nobody();
    Powers {
        euid: n.uid,
        egid: n.gid,
        groups: users::group_list(&n.name, n.gid).unwrap(),
        nice_floor: 20,
        caller: Some(n.name),
        ..root()
    }
}

/// The security finding this closes: an app without `user:` started by a non-root caller
/// ran as the daemon, root. Now it runs as the caller, and naming anyone else is refused.
#[test]
fn a_non_root_callers_apps_run_as_the_caller() {
    let me = nobody_caller();
    let n = nobody();
    let spec = app("", &me).unwrap();
    let r = spec
        .privileges
        .run_as
        .expect("an explicit identity, not the daemon's");
    assert_eq!((r.user.as_str(), r.uid, r.gid), ("nobody", n.uid, n.gid));
    assert_eq!(
        r.groups.iter().map(|(_, g)| *g).collect::<Vec<_>>(),
        me.groups,
        "the caller's groups in the group database"
    );
    assert_eq!(r.home, n.home);
    // naming oneself is fine
    app("    user: nobody\n", &me).unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "    user: root\n",
            "t.yml:4:11: apps[0] (a): user root (uid 0): only root may run apps as another user, and you are nobody",
            "remove `user:` or ask root to start it",
        ),
        (
            "    group: root\n",
            "t.yml:4:12: apps[0] (a): group root (gid 0): only root may run apps with another group, and you are nobody",
            "ask root to start it",
        ),
        (
            "    groups: [root]\n",
            "t.yml:4:13: apps[0] (a): only root may set supplementary groups",
            "ask root to start it",
        ),
        (
            "    nice: -5\n",
            "t.yml:4:11: apps[0] (a): nice -5 is below the daemon's own (0)",
            "ask root to start it",
        ),
        (
            "    rlimits: { nofile: 8192 }\n",
            "t.yml:4:24: apps[0] (a): rlimits.nofile: the hard limit 8192 is above the daemon's own (4096)",
            "use at most 4096",
        ),
        (
            "    listen: 0.0.0.0:80\n",
            "t.yml:4:13: apps[0] (a): listen: 0.0.0.0:80 is a privileged port (below 1024, net.ipv4.ip_unprivileged_port_start) and you are nobody",
            "use port 1024 or above, or ask root to start it",
        ),
    ];
    refused_with(cases, &me);
    // an unprivileged port is the caller's to use; root and the daemon's own requests may use any
    app("    listen: 0.0.0.0:8080\n", &me).unwrap();
    app("    listen: 0.0.0.0:80\n", &root()).unwrap();
    app("    listen: 0.0.0.0:80\n", &nobody_daemon()).unwrap();
}
