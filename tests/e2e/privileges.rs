//! Least privilege through the real binaries: apps run as the user, groups, umask, rlimits,
//! nice and `oom_score_adj` their config asks for (checked in `/proc`, not in the daemon's own
//! view), get an environment built from an allow-list instead of the daemon's, and their env
//! values are never printed. Switching users needs root: those tests say SKIPPED otherwise
//! (CI runs as root, where Debian's `nobody` user and `nogroup` group exist).

use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    time::Duration,
};

use turbo_tests::{TestDaemon, is_root, json, one_line_error, wait_for};

/// Set on the daemon only: it must not reach any app.
const CANARY: (&str, &str) = ("TURBO_SECRET_CANARY", "canary-value-3b9f");
/// An env value of an app: never printed by status, describe or the daemon's log.
const SECRET: &str = "hunter2-e2e-secret-value";

/// A daemon with [`CANARY`] in its environment. The socket is awaited before the first
/// `turbo ping`, so that the CLI does not auto-start a second daemon (without the canary)
/// that could win the home's lock; and the daemon that answers is checked to have it.
fn daemon_with_canary() -> TestDaemon {
    let mut d = TestDaemon::spawn_with_env("auto", &[CANARY]);
    let socket = d.home().join("bus.sock");
    wait_for("the daemon's bus socket", Duration::from_secs(15), || {
        std::os::unix::net::UnixStream::connect(&socket)
            .is_ok()
            .then_some(())
    });
    d.wait_answering();
    let pid = json(&d.turbo_ok(&["info", "--json"]))["pid"]
        .as_u64()
        .expect("info has the daemon's pid");
    assert_eq!(
        environ(pid).get(CANARY.0).map(String::as_str),
        Some(CANARY.1),
        "the daemon answering is not the one started with the canary"
    );
    d
}

fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!(
        "\n*** SKIPPED {test}: needs root to run apps as another user (CI runs as root) ***\n"
    );
    true
}

/// A directory any user may enter and write (the daemon's home is 0700 to everyone else).
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("turbo-e2e-priv-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

/// `name`'s entry in `/etc/passwd`: uid, gid, home, shell.
fn passwd(name: &str) -> (u32, u32, String, String) {
    let text = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let line = text
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .unwrap_or_else(|| panic!("no user {name} in /etc/passwd"));
    let f: Vec<&str> = line.split(':').collect();
    (
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
        f[5].to_owned(),
        f[6].to_owned(),
    )
}

/// `/etc/group`: name -> (gid, members).
fn groups_db() -> BTreeMap<String, (u32, Vec<String>)> {
    std::fs::read_to_string("/etc/group")
        .expect("/etc/group")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f.get(3)?.split(',').filter(|m| !m.is_empty());
            Some((
                f.first()?.to_string(),
                (
                    f.get(2)?.parse().ok()?,
                    members.map(str::to_owned).collect(),
                ),
            ))
        })
        .collect()
}

fn gid_of(group: &str) -> u32 {
    groups_db()
        .get(group)
        .unwrap_or_else(|| panic!("no group {group} in /etc/group"))
        .0
}

fn environ(pid: u64) -> BTreeMap<String, String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .expect("environ")
        .split(|&b| b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// The values of `field:` in `/proc/<pid>/status`.
fn status_field(pid: u64, field: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status:\n{status}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Soft and hard limit of the `/proc/<pid>/limits` row starting with `row`.
fn limits_row(pid: u64, row: &str) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix(row))
        .unwrap_or_else(|| panic!("no {row} in:\n{limits}"));
    let mut words = rest.split_whitespace();
    (
        words.next().unwrap().to_owned(),
        words.next().unwrap().to_owned(),
    )
}

/// Field `n` (1-based, as in proc(5)) of `/proc/<pid>/stat`.
fn stat_field(pid: u64, n: usize) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    after_comm.split(' ').nth(n - 3).unwrap().to_owned()
}

fn online_pid(d: &TestDaemon, name: &str) -> u64 {
    d.wait_app(name, "the app to be online", |a| a["state"] == "online")["pid"]
        .as_u64()
        .unwrap()
}

/// Everything the daemon prints about `name` must leave `SECRET` out.
fn assert_secret_never_printed(d: &TestDaemon, name: &str) {
    for args in [
        &["status", "--json"][..],
        &["status"],
        &["describe", name, "--json"],
        &["describe", name],
    ] {
        let out = d.turbo_ok(args);
        assert!(
            !out.contains(SECRET),
            "turbo {args:?} printed a secret:\n{out}"
        );
    }
    assert!(
        d.turbo_ok(&["describe", name]).contains("APP_TOKEN"),
        "describe names the variable"
    );
    assert!(!d.daemon_log().contains(SECRET), "{}", d.daemon_log());
}

#[test]
fn an_app_runs_with_the_user_groups_umask_and_limits_it_asks_for() {
    if skip_unless_root("an_app_runs_with_the_user_groups_umask_and_limits_it_asks_for") {
        return;
    }
    let d = daemon_with_canary();
    let shared = shared_dir();
    let dir = shared.path().to_str().unwrap();
    let script = shared.path().join("app.sh");
    std::fs::write(&script, "#!/bin/sh\ntouch made-by-app\nexec sleep 1000\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let yml = d.config(
        "priv",
        &format!(
            "apps:
  - name: jailed
    script: app.sh
    cwd: {dir}
    user: nobody
    umask: '027'
    rlimits: {{ nofile: [256, 512], nproc: 200, core: unlimited }}
    nice: 5
    oom_score_adj: 500
    env: {{ APP_TOKEN: {SECRET} }}
  - name: grouped
    cmd: [sleep, '1000']
    cwd: {dir}
    user: nobody
    group: users
    groups: [daemon, nogroup]
"
        ),
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let pid = online_pid(&d, "jailed");
    let made = shared.path().join("made-by-app");
    wait_for(
        "the app to create its file",
        Duration::from_secs(10),
        || made.exists().then_some(()),
    );

    // identity: every uid and gid (real, effective, saved, fs) and the supplementary groups
    let (uid, gid, home, shell) = passwd("nobody");
    assert_eq!(status_field(pid, "Uid"), vec![uid.to_string(); 4]);
    assert_eq!(status_field(pid, "Gid"), vec![gid.to_string(); 4]);
    let expected: BTreeSet<String> = std::iter::once(gid)
        .chain(
            groups_db()
                .values()
                .filter(|(_, members)| members.iter().any(|m| m == "nobody"))
                .map(|(g, _)| *g),
        )
        .map(|g| g.to_string())
        .collect();
    let groups: BTreeSet<String> = status_field(pid, "Groups").into_iter().collect();
    assert_eq!(groups, expected, "nobody's groups, as initgroups sets them");

    // umask: in /proc and on the file the app created
    assert_eq!(status_field(pid, "Umask"), ["0027"]);
    let meta = std::fs::metadata(&made).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o640, "0666 & ~027");
    assert_eq!(meta.uid(), uid, "created by nobody");

    // rlimits, nice (stat field 19), oom_score_adj
    assert_eq!(
        limits_row(pid, "Max open files"),
        ("256".into(), "512".into())
    );
    assert_eq!(
        limits_row(pid, "Max processes"),
        ("200".into(), "200".into())
    );
    assert_eq!(
        limits_row(pid, "Max core file size"),
        ("unlimited".into(), "unlimited".into())
    );
    assert_eq!(stat_field(pid, 19), "5");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
            .unwrap()
            .trim(),
        "500"
    );

    // environment: the allow-list, the user's identity, the app's env; not the daemon's
    let env = environ(pid);
    assert_eq!(env.get("HOME"), Some(&home));
    assert_eq!(env.get("USER").map(String::as_str), Some("nobody"));
    assert_eq!(env.get("LOGNAME").map(String::as_str), Some("nobody"));
    assert_eq!(env.get("SHELL"), Some(&shell));
    assert_eq!(env.get("APP_TOKEN").map(String::as_str), Some(SECRET));
    assert_eq!(
        env.get("PATH").map(String::as_str),
        std::env::var("PATH").ok().as_deref(),
        "PATH is inherited"
    );
    assert!(!env.contains_key(CANARY.0), "{env:?}");
    // the daemon's own TURBO_* never; the instance number of the app itself and its mark, always
    assert!(
        !env.keys().any(|k| k.starts_with("TURBO_")
            && !["TURBO_INSTANCE", "TURBO_INSTANCES", "TURBO_APP"].contains(&k.as_str())),
        "{env:?}"
    );
    assert_eq!(env.get("TURBO_INSTANCE").map(String::as_str), Some("0"));
    // and the daemon's mark of it (runtime/marks.rs)
    assert!(
        env.get("TURBO_APP").is_some_and(
            |m| m.starts_with("jailed:0:") && m.ends_with(&*d.home().to_string_lossy())
        ),
        "{env:?}"
    );

    // explicit group and supplementary groups replace the user's
    let pid = online_pid(&d, "grouped");
    assert_eq!(status_field(pid, "Uid"), vec![uid.to_string(); 4]);
    assert_eq!(
        status_field(pid, "Gid"),
        vec![gid_of("users").to_string(); 4]
    );
    let groups: BTreeSet<String> = status_field(pid, "Groups").into_iter().collect();
    let expected: BTreeSet<String> = [gid_of("daemon"), gid_of("nogroup")]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(groups, expected);

    // describe shows what runs
    let doc = d.json(&["describe", "jailed"]);
    let config = &doc["config"];
    assert_eq!(config["user"], "nobody", "{config}");
    assert_eq!(config["uid"], uid);
    assert_eq!(config["umask"], "0027");
    assert_eq!(config["rlimits"]["nofile"]["soft"], 256);
    assert_eq!(config["rlimits"]["core"]["hard"], "unlimited");
    assert_eq!(config["nice"], 5);
    assert_eq!(config["oom_score_adj"], 500);
    let text = d.turbo_ok(&["describe", "grouped"]);
    assert!(text.contains("group           users"), "{text}");
    assert_secret_never_printed(&d, "jailed");
}

#[test]
fn an_app_whose_user_cannot_enter_its_directory_does_not_start() {
    if skip_unless_root("an_app_whose_user_cannot_enter_its_directory_does_not_start") {
        return;
    }
    let d = daemon_with_canary();
    // root may enter this directory, nobody may not
    let locked = d.home().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let yml = d.config(
        "locked-config",
        &format!(
            "apps:\n  - name: locked\n    cmd: [sleep, '1000']\n    cwd: {}\n    user: nobody\n",
            locked.display()
        ),
    );
    let out = d.turbo(&["start", yml.to_str().unwrap()]);
    let app = d.wait_app("locked", "the spawn to fail", |a| a["state"] == "errored");
    assert!(app["pid"].is_null(), "{app}");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stderr), d.daemon_log());
    assert!(
        said.contains("as user nobody") && said.contains("Permission denied"),
        "{said}"
    );
}

#[test]
fn the_daemon_environment_does_not_reach_apps_and_env_values_stay_hidden() {
    let d = daemon_with_canary();
    let dir = d.home().join("envapp");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(".env"), "FROM_FILE=file\nOVERRIDDEN=file\n").unwrap();
    let yml = d.config(
        "envapp",
        &format!(
            "apps:\n  - name: plain\n    cmd: [sleep, '1000']\n    cwd: {}\n    env_file: .env\n    env: {{ OVERRIDDEN: env, APP_TOKEN: {SECRET} }}\n",
            dir.display()
        ),
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let env = environ(online_pid(&d, "plain"));
    assert!(
        !env.contains_key(CANARY.0),
        "the daemon's {} reached the app: {env:?}",
        CANARY.0
    );
    for leaked in [
        "TURBO_HOME",
        "TURBO_EBPF",
        "CARGO_PKG_NAME",
        "RUST_TEST_THREADS",
    ] {
        assert!(!env.contains_key(leaked), "{leaked} in {env:?}");
    }
    assert_eq!(
        env.get("PATH").map(String::as_str),
        std::env::var("PATH").ok().as_deref()
    );
    assert_eq!(env.get("PWD").map(Path::new), Some(dir.as_path()));
    assert_eq!(env.get("FROM_FILE").map(String::as_str), Some("file"));
    assert_eq!(
        env.get("OVERRIDDEN").map(String::as_str),
        Some("env"),
        "env wins over env_file"
    );
    // HOME, USER, LOGNAME: the daemon's own user's, from its passwd entry
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if let Some(line) = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find(|l| l.split(':').nth(2) == Some(&me.to_string()))
    {
        let f: Vec<&str> = line.split(':').collect();
        assert_eq!(env.get("USER").map(String::as_str), Some(f[0]));
        assert_eq!(env.get("LOGNAME").map(String::as_str), Some(f[0]));
        assert_eq!(env.get("HOME").map(String::as_str), Some(f[5]));
    }
    assert_secret_never_printed(&d, "plain");
}

#[test]
fn an_unknown_user_is_a_config_error_at_its_position() {
    let d = TestDaemon::start("off");
    let yml = d.config(
        "ghost",
        "apps:\n  - name: ghost\n    cmd: [sleep, '1000']\n    user: no-such-user-turbo-e2e\n",
    );
    let err = one_line_error(&d.turbo(&["start", yml.to_str().unwrap()]));
    let origin = yml.to_str().unwrap();
    assert!(
        err.contains(&format!(
            "{origin}:4:11: apps[0] (ghost): unknown user 'no-such-user-turbo-e2e'"
        )) && err.contains("useradd"),
        "{err}"
    );
    assert!(d.status().is_empty(), "an invalid file starts nothing");
}
