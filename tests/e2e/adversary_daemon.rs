//! The daemon-side findings of the adversarial pass (issue 15), through the real binaries: a
//! non-root admin on a system-like bus (a root daemon) and a user-mode daemon whose private bus
//! is killed. Each test names the finding it reproduces; docs/security.md lists them.

use std::{
    process::{Command, Output},
    time::Duration,
};

use turbo_tests::{TestDaemon, json, wait_for};

use crate::hardening::{SystemLike, app_pid, failed, ok, skip_unless_root, uid_of};

/// The daemon still answers: the watchdog of every hostile input below.
fn answers(s: &SystemLike, after: &str) {
    let out = s.root(&["ping"]);
    assert!(
        out.status.success(),
        "the daemon is deaf after {after}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
}

fn names(s: &SystemLike) -> Vec<String> {
    let list = json(&ok(&s.root(&["status", "--json"]), "status"));
    list.as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect()
}

fn start_config(s: &SystemLike, who: fn(&SystemLike, &[&str]) -> Output, yml: &str) -> Output {
    let path = s.file("hostile.yml", yml, 0o644);
    who(s, &["start", path.to_str().unwrap()])
}

/// Item 1: a non-root admin's `listen: 0.0.0.0:80` made the root daemon bind port 80 and hand it
/// to an app running as the admin. Now refused at validation, naming the port floor; an
/// unprivileged port still works for the admin, and root may still have a privileged one.
#[test]
fn a_privileged_port_is_only_for_callers_who_could_bind_it() {
    if skip_unless_root("privileged listen: ports") {
        return;
    }
    let s = SystemLike::start();
    let err = failed(
        &start_config(
            &s,
            SystemLike::admin,
            "apps:\n  - name: web\n    cmd: [sleep, '1000']\n    listen: 127.0.0.1:80\n",
        ),
        "an admin's listen on port 80",
    );
    assert!(
        err.contains("listen: 127.0.0.1:80 is a privileged port (below 1024")
            && err.contains("you are nobody (uid 65534)")
            && err.contains("use port 1024 or above, or ask root to start it"),
        "{err}"
    );
    assert!(
        !names(&s).contains(&"web".to_owned()),
        "nothing was started"
    );

    let port = free_port();
    ok(
        &start_config(
            &s,
            SystemLike::admin,
            &format!(
                "apps:\n  - name: web\n    cmd: [sleep, '1000']\n    listen: 127.0.0.1:{port}\n"
            ),
        ),
        "an admin's listen on an unprivileged port",
    );
    ok(
        &start_config(
            &s,
            SystemLike::root,
            "apps:\n  - name: web80\n    cmd: [sleep, '1000']\n    listen: 127.0.0.1:1009\n",
        ),
        "root may hand out a privileged port",
    );
    let list = ok(&s.root(&["status", "--json"]), "status");
    assert_eq!(uid_of(app_pid(&list, "web80")), 0);
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Item 15: an admin's `StartConfig` silently redefined root's app `victim`, which then ran as
/// the admin. Redefining needs the right to start the app as the user it runs as; the admin's
/// own apps it may still redefine.
#[test]
fn another_users_app_cannot_be_redefined() {
    if skip_unless_root("redefinition of another user's app") {
        return;
    }
    let s = SystemLike::start();
    let victim = "apps:\n  - name: victim\n    cmd: [sleep, '1000']\n";
    ok(
        &start_config(&s, SystemLike::root, victim),
        "root starts victim",
    );
    let before = app_pid(&ok(&s.root(&["status", "--json"]), "status"), "victim");
    let err = failed(
        &start_config(
            &s,
            SystemLike::admin,
            "apps:\n  - name: victim\n    cmd: [sleep, '2000']\n",
        ),
        "an admin redefines root's app",
    );
    assert!(
        err.contains("uid 65534 may not redefine apps that run as other users: victim (as uid 0)"),
        "{err}"
    );
    let list = ok(&s.root(&["status", "--json"]), "status");
    assert_eq!(app_pid(&list, "victim"), before, "victim untouched");
    assert_eq!(uid_of(before), 0);

    // the admin's own app: redefining it is the admin's business
    ok(
        &start_config(
            &s,
            SystemLike::admin,
            "apps:\n  - name: own\n    cmd: [sleep, '1000']\n",
        ),
        "admin starts own",
    );
    ok(
        &start_config(
            &s,
            SystemLike::admin,
            "apps:\n  - name: own\n    cmd: [sleep, '2000']\n",
        ),
        "admin redefines own",
    );
    let doc = json(&ok(&s.root(&["describe", "own", "--json"]), "describe"));
    assert_eq!(doc["config"]["uid"], 65534, "{doc}");
}

/// Items 4, 5 and 16 with the watchdog the issue asks for: NUL in every kind of `turbo.yml`
/// string (it made the daemon's reply invalid on the bus, and the bus dropped the daemon: alive
/// but deaf), durations that overflowed the clock (`1e19` seconds panicked in `Instant + d`,
/// `1e99` in `from_secs_f64`), a forbidden `cwd` (left an `errored` entry behind) and a 10 KB
/// name (echoed whole). After each, `ping` answers and nothing was added.
#[test]
fn hostile_configs_are_refused_and_the_daemon_stays_on_the_bus() {
    if skip_unless_root("hostile configs from an admin") {
        return;
    }
    let s = SystemLike::start();
    let app = |keys: &str| format!("apps:\n  - name: h\n    cmd: [sleep, '1000']\n{keys}");
    let nul: Vec<(&str, String)> = vec![
        (
            "name",
            "apps:\n  - name: \"a\\0b\"\n    cmd: [sleep, '1']\n".into(),
        ),
        ("env key", app("    env: {\"K\\0\": v}\n")),
        ("env value", app("    env: {K: \"v\\0w\"}\n")),
        ("cwd", app("    cwd: \"/tmp\\0x\"\n")),
        ("user", app("    user: \"nobody\\0\"\n")),
        ("stop_signal", app("    stop_signal: \"TERM\\0\"\n")),
        ("unknown key", app("    \"x\\0y\": 1\n")),
        ("watch path", app("    watch: [\"/tmp\\0\"]\n")),
        (
            "health URL",
            app("    health: {http: \"http://127.0.0.1:1/\\0\"}\n"),
        ),
        (
            "argv",
            "apps:\n  - name: h\n    cmd: [sleep, \"1\\0\"]\n".into(),
        ),
    ];
    for (what, yml) in &nul {
        let err = failed(&start_config(&s, SystemLike::admin, yml), what);
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
        answers(&s, &format!("NUL in {what}"));
    }
    for (key, value) in [
        ("kill_timeout", "1e19"),
        ("ready_timeout", "1e19"),
        ("kill_timeout", "1e99"),
        ("watch_delay", "1e19"),
    ] {
        let extra = if key == "ready_timeout" {
            "    ready: notify\n"
        } else if key == "watch_delay" {
            "    watch: [/tmp]\n"
        } else {
            ""
        };
        let err = failed(
            &start_config(
                &s,
                SystemLike::admin,
                &app(&format!("{extra}    {key}: {value}\n")),
            ),
            key,
        );
        assert!(
            err.contains(&format!("(h): {key} ")) && err.contains("is above 2592000s"),
            "{key}: {err}"
        );
        answers(&s, &format!("{key}: {value}"));
    }
    let err = failed(
        &start_config(
            &s,
            SystemLike::admin,
            &app("    restart: {delay: 1e19, max_delay: 1e99}\n"),
        ),
        "restart delays",
    );
    assert!(err.contains("is above 2592000s"), "{err}");
    let err = failed(
        &start_config(&s, SystemLike::admin, &app("    max_memory: 1e99\n")),
        "max_memory",
    );
    assert!(err.contains("max_memory"), "{err}");
    answers(&s, "huge durations");

    // a cwd the admin may not enter: refused, and no `errored` entry is left behind
    let err = failed(
        &start_config(&s, SystemLike::admin, &app("    cwd: /root\n")),
        "forbidden cwd",
    );
    assert!(err.contains("/root"), "{err}");
    // a 10 KB name is not echoed whole
    let long = "n".repeat(10_000);
    let err = failed(
        &s.admin(&["start", "sleep", "--name", &long, "--", "1"]),
        "long name",
    );
    assert!(err.len() < 2_000, "{} bytes echoed: {err}", err.len());
    answers(&s, "a 10 KB name");
    assert!(names(&s).is_empty(), "nothing was added: {:?}", names(&s));
}

/// Item 14: `kill -9` of the private `dbus-daemon` (user mode) left the daemon alive but deaf,
/// and the CLI then said "another turbo-daemon is already running". Now the daemon notices the
/// lost connection, re-executes with a new bus, and adopts its running apps.
#[test]
fn a_killed_private_bus_is_replaced_and_the_apps_kept() {
    let d = TestDaemon::start("off");
    d.turbo_ok(&["start", "sleep", "--name", "keep", "--", "1000"]);
    let pid = d.app("keep")["pid"].as_u64().unwrap();
    d.wait_saved_pid(pid);
    let daemon = d.daemon_pid().expect("the harness's daemon");
    let bus = children(daemon)
        .into_iter()
        .find(|p| comm(*p).as_deref() == Some("dbus-daemon"))
        .expect("the private dbus-daemon is the daemon's child");
    Command::new("kill")
        .args(["-9", &bus.to_string()])
        .status()
        .unwrap();
    wait_for(
        "the daemon to answer on a new bus",
        Duration::from_secs(20),
        || {
            let out = d.turbo(&["ping"]);
            out.status.success().then_some(())
        },
    );
    assert_eq!(d.daemon_pid(), Some(daemon), "re-executed in place");
    assert_eq!(
        d.app("keep")["pid"].as_u64(),
        Some(pid),
        "the app was adopted, not restarted:\n{}",
        d.daemon_log()
    );
    assert!(
        d.daemon_log().contains("lost the bus connection"),
        "{}",
        d.daemon_log()
    );
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_owned())
}

/// Item 7: the output of a failing health check (which can echo a secret from the app's
/// environment) was shown by `describe` to any local user. Now root and the app's own user see
/// it; an admin, and a plain user, see that it is hidden; `crashes` and `start --wait` the same.
#[test]
fn health_output_is_for_those_who_may_read_the_apps_logs() {
    if skip_unless_root("health output visibility") {
        return;
    }
    let s = SystemLike::start();
    ok(
        &start_config(
            &s,
            SystemLike::root,
            "apps:\n  - name: leaky\n    cmd: [sleep, '1000']\n    env: {TOKEN: s3cret-token}\n    \
             health: { cmd: [sh, -c, 'echo token=$TOKEN; exit 1'], interval: 200ms, retry_delay: 100ms, retries: 1, start_period: 0s }\n",
        ),
        "root starts leaky",
    );
    wait_for("the check to fail", Duration::from_secs(15), || {
        let d = json(&ok(&s.root(&["describe", "leaky", "--json"]), "describe"));
        d["config"]["health_last_error"]
            .as_str()
            .is_some_and(|e| e.contains("s3cret-token"))
            .then_some(())
    });
    for (who, out) in [
        ("an admin", s.admin(&["describe", "leaky"])),
        ("a plain user", plain_user(&s, &["describe", "leaky"])),
    ] {
        let text = ok(&out, who);
        assert!(
            !text.contains("s3cret-token") && text.contains("hidden: only root and the app's user"),
            "{who}: {text}"
        );
    }
    let err = failed(
        &s.admin(&["restart", "leaky", "--wait", "--wait-timeout", "3s"]),
        "an admin waits for leaky",
    );
    assert!(
        !err.contains("s3cret-token") && err.contains("health check failed: (hidden"),
        "{err}"
    );
    // the unhealthy app was restarted: a crash whose detail is the check's output
    wait_for(
        "root to see the crash detail",
        Duration::from_secs(15),
        || {
            ok(&s.root(&["crashes", "leaky"]), "root crashes")
                .contains("s3cret-token")
                .then_some(())
        },
    );
    let crashes = ok(&s.admin(&["crashes", "leaky"]), "admin crashes");
    assert!(!crashes.contains("s3cret-token"), "{crashes}");
    // root still sees it all
    let text = ok(&s.root(&["describe", "leaky"]), "root describe");
    assert!(text.contains("s3cret-token"), "{text}");
}

/// `turbo` as uid 65534 without the admin group: a plain local user.
fn plain_user(s: &SystemLike, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&s.cli)
        .args(args)
        .env("TURBO_BUS_ADDRESS", s.address())
        .env("HOME", "/nonexistent")
        .env("NO_COLOR", "1")
        .current_dir("/")
        .output()
        .unwrap()
}

/// Item 8: the apps' `NOTIFY_SOCKET` was a file in the daemon's 0700 home, so an app running as
/// another user (`user:`, or an admin's caller-scoped app) never got `READY=1` through and
/// looped in restarts. Now it is an abstract socket: both reach it, and their watchdog pings
/// keep them running.
#[test]
fn apps_of_other_users_reach_the_notify_socket() {
    if skip_unless_root("notify socket for apps of other users") {
        return;
    }
    let s = SystemLike::start();
    let notifier = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/apps/notifier.py"),
    )
    .unwrap();
    let script = s.file("notifier.py", &notifier, 0o755);
    let app = |name: &str, user: &str| {
        format!(
            "apps:\n  - name: {name}\n    cmd: [/usr/bin/python3, {}]\n{user}    env: {{ READY_AFTER: '0.3' }}\n    \
             ready: notify\n    ready_timeout: 10s\n    watchdog: 1s\n",
            script.display()
        )
    };
    let yml = s.file("nobody.yml", &app("as-nobody", "    user: nobody\n"), 0o644);
    ok(
        &s.root(&["start", yml.to_str().unwrap(), "--wait"]),
        "root's app with user: nobody gets ready",
    );
    let yml = s.file("admins.yml", &app("admins", ""), 0o644);
    ok(
        &s.admin(&["start", yml.to_str().unwrap(), "--wait"]),
        "the admin's app gets ready",
    );
    // a few watchdog periods: the pings arrive, nothing is restarted
    std::thread::sleep(Duration::from_secs(3));
    let list = json(&ok(&s.root(&["status", "--json"]), "status"));
    for name in ["as-nobody", "admins"] {
        let a = list
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap();
        assert_eq!(a["state"], "online", "{a}\n{}", s.log());
        assert_eq!(a["status_text"], "serving", "{a}");
        assert_eq!(a["restarts"], 0, "{a}\n{}", s.log());
        assert_eq!(uid_of(a["pid"].as_u64().unwrap()), 65534, "{a}");
    }
}

/// Item 6: `watch: [/root]` by an admin made the root daemon walk a tree the admin cannot read,
/// on its main loop, and restarts then revealed activity there. Now a watch path is checked
/// with the caller's rights (refused), trees are walked off the loop with the app user's
/// rights, and at most 8192 directories are watched per app.
#[test]
fn watch_paths_are_read_with_the_callers_rights_and_bounded() {
    if skip_unless_root("watch paths of an admin") {
        return;
    }
    let s = SystemLike::start();
    let err = failed(
        &start_config(
            &s,
            SystemLike::admin,
            "apps:\n  - name: spy\n    cmd: [sleep, '1000']\n    watch: [/root]\n",
        ),
        "an admin watches /root",
    );
    assert!(
        err.contains("watch path /root cannot be read (Permission denied)")
            && err.contains("watch only what you may read"),
        "{err}"
    );
    answers(&s, "watch: [/root]");

    // a tree of 9000 directories: walked off the loop, cut at 8192
    let tree = tempfile::tempdir().unwrap();
    for i in 0..90 {
        for j in 0..100 {
            std::fs::create_dir_all(tree.path().join(format!("d{i}/e{j}"))).unwrap();
        }
    }
    ok(
        &start_config(
            &s,
            SystemLike::root,
            &format!(
                "apps:\n  - name: big\n    cmd: [sleep, '1000']\n    watch: [{}]\n",
                tree.path().display()
            ),
        ),
        "root watches a big tree",
    );
    answers(&s, "a big watch tree");
    wait_for("the cap to be reported", Duration::from_secs(30), || {
        s.log()
            .contains("more than 8192 directories under")
            .then_some(())
    });
    assert!(
        s.log().contains("watching 8192 directories for changes"),
        "{}",
        s.log()
    );

    // root's app that runs as nobody: its tree is walked with nobody's rights, so a private
    // directory in it (and what is below) is not watched
    use std::os::unix::fs::PermissionsExt as _;
    let mixed = tempfile::tempdir().unwrap();
    for (dir, mode) in [("", 0o755), ("open", 0o755), ("private", 0o700)] {
        let d = mixed.path().join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    for sub in ["x", "y", "z"] {
        std::fs::create_dir(mixed.path().join("private").join(sub)).unwrap();
    }
    ok(
        &start_config(
            &s,
            SystemLike::root,
            &format!(
                "apps:\n  - name: asnobody\n    cmd: [sleep, '1000']\n    user: nobody\n    watch: [{}]\n",
                mixed.path().display()
            ),
        ),
        "root's app as nobody watches a mixed tree",
    );
    wait_for("the watcher of asnobody", Duration::from_secs(15), || {
        s.log()
            .lines()
            .find(|l| l.contains("asnobody") && l.contains("watching"))
            .map(str::to_owned)
    });
    let line = s
        .log()
        .lines()
        .find(|l| l.contains("asnobody") && l.contains("watching"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("watching 2 directories"),
        "the root and `open`, not `private` and below: {line}"
    );
}

/// Found by a new user: stopped instances still showed `healthy` (their last process's verdict).
#[test]
fn a_stopped_instance_is_not_reported_healthy() {
    let d = TestDaemon::start("off");
    let yml = d.config(
        "hc",
        "apps:\n  - name: hc\n    cmd: [sleep, '1000']\n    instances: 2\n    \
         health: { cmd: ['true'], interval: 200ms }\n",
    );
    d.turbo_ok(&["start", yml.to_str().unwrap(), "--wait"]);
    d.wait_app("hc", "healthy", |a| a["health"] == "healthy");
    d.turbo_ok(&["stop", "hc"]);
    let list = d.status();
    let hc: Vec<_> = list.iter().filter(|a| a["name"] == "hc").collect();
    assert_eq!(hc.len(), 2, "{list:?}");
    for a in hc {
        assert_eq!(a["state"], "stopped", "{a}");
        assert_eq!(a["health"], "unknown", "{a}");
    }
    let table = d.turbo_ok(&["status"]);
    assert!(!table.contains("healthy"), "{table}");
}

/// Found by the side-by-side benchmark: `turbo start FILE.yml` returned before every app had
/// exec'd once. The reply waits for every process's spawn, which returns after its `execve`:
/// when the CLI returns, each instance runs its own program.
#[test]
fn start_of_a_config_returns_after_every_app_has_execd() {
    let d = TestDaemon::start("off");
    let mut yml = String::from("apps:\n");
    for i in 0..6 {
        yml.push_str(&format!(
            "  - name: e{i}\n    cmd: [sleep, '1000']\n    instances: 3\n"
        ));
    }
    let path = d.config("many", &yml);
    d.turbo_ok(&["start", path.to_str().unwrap()]);
    let list = d.status();
    assert_eq!(list.len(), 18, "{list:?}");
    for a in &list {
        let pid = a["pid"].as_u64().unwrap_or(0);
        assert!(pid > 0, "{a}");
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert_eq!(
            exe.file_name().and_then(|n| n.to_str()),
            Some("sleep"),
            "pid {pid} of {} runs {} at the reply",
            a["name"],
            exe.display()
        );
    }
}

/// Found by the side-by-side benchmark: every user-mode daemon wanted 127.0.0.1:9464, so on a
/// host where two users run turbo the second one's exporter was silently off. Now a non-root
/// daemon's default is loopback port `10000 + uid mod 22768`, shown by `turbo info`, while
/// root's stays 9464.
#[test]
fn each_users_daemon_gets_its_own_exporter_port() {
    if skip_unless_root("a user-mode daemon of another user") {
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let daemon_bin = turbo_tests::runnable_by_anyone(
        &turbo_tests::bin_dir().join("turbo-daemon"),
        shared.path(),
    );
    let cli = turbo_tests::runnable_by_anyone(&turbo_tests::bin_dir().join("turbo"), shared.path());
    let home = shared.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    let as_nobody = |program: &std::path::Path| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(program)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &home)
            .env("TURBO_HOME", &home)
            .env("TURBO_EBPF", "off")
            .current_dir("/");
        c
    };
    let mut daemon = as_nobody(&daemon_bin)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let info = wait_for("nobody's daemon", Duration::from_secs(15), || {
        let out = as_nobody(&cli).args(["info", "--json"]).output().unwrap();
        out.status
            .success()
            .then(|| json(&String::from_utf8_lossy(&out.stdout)))
    });
    let port = 10_000 + 65_534 % 22_768;
    assert_eq!(
        info["metrics_address"],
        format!("127.0.0.1:{port}"),
        "{info}"
    );
    let scrape = std::net::TcpStream::connect(("127.0.0.1", port));
    let _ = as_nobody(&cli).arg("kill").output();
    let _ = daemon.wait();
    assert!(scrape.is_ok(), "the exporter answers on {port}");
    // root's daemon keeps 9464 (or says why not)
    let d = TestDaemon::start("off");
    let info = d.json(&["info"]);
    let why = info["metrics_off_reason"].as_str().unwrap();
    assert!(
        info["metrics_address"] == "127.0.0.1:9464"
            || why.starts_with("cannot listen on 127.0.0.1:9464"),
        "{info}"
    );
}

/// Item 3 (daemon side): a `TURBO_HOME` that was another user's symlink (with
/// `fs.protected_symlinks=0`) led the daemon's state and its apps' output into that user's
/// directory. The daemon now refuses a home that is a symlink another user owns, or that lies in
/// a directory another user owns or may write to (they could swap it), before creating anything.
#[test]
fn a_home_another_user_controls_is_refused_by_the_daemon() {
    if skip_unless_root("homes planted by another user") {
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |home: &std::path::Path| {
        let out = Command::new(turbo_tests::bin_dir().join("turbo-daemon"))
            .env("TURBO_HOME", home)
            .env("TURBO_EBPF", "off")
            .env("TURBO_METRICS_LISTEN", "off")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // the attacker's symlink to a private directory of root's
    let target = base.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = base.path().join("home-link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    let (status, err) = run(&link);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("is a symbolic link owned by uid 65534"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "nothing written"
    );

    // a home inside a directory the attacker owns
    let theirs = base.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let (status, err) = run(&theirs.join("home"));
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("which uid 65534 owns and so may replace it"),
        "{err}"
    );
    assert!(!theirs.join("home").exists(), "nothing created");

    // a home inside a world-writable directory without the sticky bit
    let open = base.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (status, err) = run(&open.join("home"));
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("which others may write to (mode 0777)"),
        "{err}"
    );

    // root's own symlink to its own directory is fine
    std::os::unix::fs::lchown(&link, Some(0), Some(0)).unwrap();
    let mut d = Command::new(turbo_tests::bin_dir().join("turbo-daemon"))
        .env("TURBO_HOME", &link)
        .env("TURBO_EBPF", "off")
        .env("TURBO_METRICS_LISTEN", "off")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let address = format!("unix:path={}", link.join("bus.sock").display());
    wait_for(
        "the daemon on root's own link",
        Duration::from_secs(15),
        || {
            Command::new(turbo_tests::bin_dir().join("turbo"))
                .arg("ping")
                .env("TURBO_BUS_ADDRESS", &address)
                .output()
                .ok()
                .filter(|o| o.status.success())
        },
    );
    let _ = Command::new(turbo_tests::bin_dir().join("turbo"))
        .arg("kill")
        .env("TURBO_BUS_ADDRESS", &address)
        .output();
    let _ = d.wait();
}

/// The watchdog the issue asks for, over many inputs: a seeded generator of hostile `turbo.yml`
/// documents (NUL and escape sequences in every kind of string, overflowing and non-finite
/// numbers, huge and deeply nested values, unknown keys) and hostile `StartApp` option maps
/// (every known key with values of every type, unknown keys), sent straight over D-Bus; after
/// each, `Ping` must answer within 5 s and the connection must still be up. Whatever was
/// started is deleted again. Deterministic: a failure names its seed and input.
#[test]
fn no_hostile_input_takes_the_daemon_off_the_bus() {
    use std::collections::HashMap;
    use turbo_api::{ManagerProxy, option};
    use zbus::zvariant::{Array, Dict, Value};

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
            let n = u64::try_from(from.len()).unwrap();
            &from[usize::try_from(self.next() % n).unwrap()]
        }
    }

    const SCALARS: &[&str] = &[
        "\"\\0\"",
        "\"a\\0b\"",
        "\"\\e[2J\\e]52;c;eA==\\a\"",
        "1e19",
        "1e99",
        "-1e19",
        "18446744073709551616",
        "-1",
        "0",
        ".nan",
        ".inf",
        "-.inf",
        "~",
        "true",
        "\"\"",
        "\"\\uFFFF\\u0085\\u2028\"",
        "'/root'",
        "'/proc/self/fd/0'",
        "'/dev/zero'",
        "'../../etc/passwd'",
        "\"1tb\"",
        "\"1e99s\"",
        "\"99999999999999999999h\"",
        "0.0000001",
        "'0.0.0.0:80'",
        "'[::]:0'",
        "'http://127.0.0.1:1/\\0'",
        "SIGKILL",
        "\"TERM\\0\"",
        "root",
    ];
    const KEYS: &[&str] = &[
        "cwd",
        "env",
        "env_file",
        "user",
        "group",
        "groups",
        "stop_signal",
        "kill_timeout",
        "autorestart",
        "restart",
        "watch",
        "ignore_watch",
        "watch_delay",
        "health",
        "ready",
        "ready_timeout",
        "watchdog",
        "max_memory",
        "memory_warning",
        "memory_enforce",
        "instances",
        "listen",
        "log",
        "rlimits",
        "nice",
        "oom_score_adj",
        "umask",
        "stop_exit_codes",
        "exec_allow",
        "args",
        "\"x\\0y\"",
        "\"\\e[31m\"",
    ];
    let value = |rng: &mut Rng| -> String {
        match rng.next() % 8 {
            0 => format!("[{}, {}]", rng.pick(SCALARS), rng.pick(SCALARS)),
            1 => format!(
                "{{ {}: {}, interval: {}, delay: {}, max_size: {}, nofile: {} }}",
                rng.pick(&["http", "tcp", "cmd", "\"\\0\""]),
                rng.pick(SCALARS),
                rng.pick(SCALARS),
                rng.pick(SCALARS),
                rng.pick(SCALARS),
                rng.pick(SCALARS)
            ),
            2 => format!("{}{}", "[".repeat(200), "]".repeat(200)),
            3 => format!("'{}'", "x".repeat(70_000)),
            4 => format!("{{ {}: {} }}", rng.pick(SCALARS), rng.pick(SCALARS)),
            _ => (*rng.pick(SCALARS)).to_owned(),
        }
    };

    let d = TestDaemon::start("off");
    let base = d.home().join("fuzz");
    std::fs::create_dir(&base).unwrap();
    let base = base.to_str().unwrap().to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let d = &d;
    rt.block_on(async move {
        let conn = d.connect().await;
        let m = ManagerProxy::new(&conn).await.unwrap();
        let mut rng = Rng(0x7e57_5eed_0015);
        let (mut refused, mut started) = (0, 0);
        for round in 0..300 {
            let name = if rng.next().is_multiple_of(4) {
                (*rng.pick(SCALARS)).to_owned()
            } else {
                format!("f{round}")
            };
            let mut yml = format!("apps:\n  - name: {name}\n    cmd: [sleep, '1000']\n");
            for _ in 0..=(rng.next() % 4) {
                let key = *rng.pick(KEYS);
                let v = value(&mut rng);
                yml.push_str(&format!("    {key}: {v}\n"));
            }
            let answer = m.start_config(&yml, "fuzz.yml", &base).await;
            if answer.is_ok() {
                started += 1
            } else {
                refused += 1
            }
            let shown: String = yml.chars().take(300).collect();
            alive(&m, d, format!("round {round}: StartConfig of\n{shown}")).await;
            if answer.is_ok() {
                let _ = m.delete_app("all").await;
            }

            let mut opts: HashMap<&str, Value<'_>> = HashMap::new();
            let keys = [
                option::CWD,
                option::ENV,
                option::AUTORESTART,
                option::MAX_MEMORY,
                option::INSTANCES,
                option::WATCH,
                option::RESTART_DELAY,
                "unknown\u{1b}[2J",
            ];
            for _ in 0..=(rng.next() % 3) {
                let key = *rng.pick(&keys);
                let v: Value<'_> = match rng.next() % 9 {
                    0 => Value::from(u64::MAX),
                    1 => Value::from(i64::MIN),
                    2 => Value::from(f64::NAN),
                    3 => Value::from(f64::INFINITY),
                    4 => Value::from(
                        rng.pick(&["/root", "/", "never", "\u{1b}]0;x\u{7}", ""])
                            .to_string(),
                    ),
                    5 => Value::from(true),
                    6 => Value::from(Array::from(vec!["/root", "/proc", "\u{85}"])),
                    7 => {
                        let mut dict: Dict<'_, '_> = Dict::new(
                            &zbus::zvariant::Signature::Str,
                            &zbus::zvariant::Signature::Str,
                        );
                        let _ = dict.append(Value::from("K=V"), Value::from("x".repeat(200_000)));
                        Value::from(dict)
                    }
                    _ => Value::from(u32::MAX),
                };
                opts.insert(key, v);
            }
            let shown = format!("{opts:?}").chars().take(300).collect::<String>();
            let answer = m
                .start_app(&format!("o{round}"), &["sleep", "1000"], opts)
                .await;
            if answer.is_ok() {
                started += 1;
            } else {
                refused += 1;
            }
            alive(&m, d, format!("round {round}: StartApp with {shown}")).await;
            if answer.is_ok() {
                let _ = m.delete_app("all").await;
            }
        }
        // hostile, not merely invalid: most are refused, and some get through to a spawn
        assert!(
            refused > 300 && started > 0,
            "{refused} refused, {started} started"
        );
    });
    assert!(!d.daemon_log().contains("panicked"), "{}", d.daemon_log());
}

/// `Ping` answers within 5 s, or the test fails naming `what` came before.
async fn alive(m: &turbo_api::ManagerProxy<'_>, d: &TestDaemon, what: String) {
    let pong = tokio::time::timeout(Duration::from_secs(5), m.ping()).await;
    assert!(
        matches!(pong, Ok(Ok(_))),
        "the daemon stopped answering after {what}: {pong:?}\n{}",
        d.daemon_log()
    );
}
