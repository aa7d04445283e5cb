//! start → online → kill -9 → restarted with a new pid → stop → delete, through the CLI.

use std::time::Duration;

use turbo_tests::{TestDaemon, json, pid_alive, wait_for};

#[test]
fn start_status_crash_restart_stop_delete() {
    let d = TestDaemon::start("auto");
    let started = d.turbo_ok(&["start", "sleep", "--name", "sl", "--", "1000"]);
    assert!(started.contains("sl"), "start prints the app: {started}");

    let app = d.app("sl");
    assert_eq!(app["state"], "online");
    let pid = app["pid"].as_u64().expect("online app has a pid");
    assert!(pid_alive(pid), "pid {pid} is a live process");
    assert_eq!(app["restarts"], 0);
    assert!(app["last_exit"].is_null());
    assert!(
        app["memory_bytes"].as_u64().unwrap_or(0) > 0,
        "memory is measured: {app}"
    );

    let (killed, app) = d.kill9_and_wait_restart("sl");
    assert_eq!(killed, pid);
    let new_pid = app["pid"].as_u64().unwrap();
    assert!(pid_alive(new_pid));
    assert!(!pid_alive(pid), "the killed process is gone (reaped)");
    assert_eq!(app["restarts"], 1);
    assert_eq!(app["last_exit"]["signal"], 9);
    assert_eq!(app["last_exit"]["reason"], "signal");
    assert!(app["last_exit"]["code"].is_null());

    d.turbo_ok(&["stop", "sl"]);
    // stop returns only once the process is gone: no polling here
    let app = d.app("sl");
    assert_eq!(app["state"], "stopped");
    assert!(app["pid"].is_null());
    assert!(
        !pid_alive(new_pid),
        "stop returned before pid {new_pid} exited"
    );
    assert_eq!(app["last_exit"]["reason"], "manual");
    assert_eq!(app["last_exit"]["signal"], 15);

    d.turbo_ok(&["delete", "sl"]);
    assert!(d.status().is_empty(), "delete forgets the app");
}

#[test]
fn exit_code_is_recorded_and_on_failure_policy_respected() {
    let d = TestDaemon::start("auto");
    let script = d.script("three.sh", "sleep 0.3; exit 3");
    d.turbo_ok(&[
        "start",
        script.to_str().unwrap(),
        "--name",
        "three",
        "--no-autorestart",
    ]);
    let app = d.wait_app("three", "exit with code 3", |a| a["state"] == "stopped");
    assert_eq!(app["last_exit"]["code"], 3);
    assert!(app["last_exit"]["signal"].is_null());
    assert_eq!(app["last_exit"]["reason"], "exit");
    assert_eq!(app["restarts"], 0, "--no-autorestart means no restart");
}

#[test]
fn stop_escalates_to_sigkill_after_the_kill_timeout() {
    let d = TestDaemon::start("auto");
    let dir = d.home().join("cfg");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("turbo.yml"),
        "apps:\n  - name: stubborn\n    cmd: [sh, -c, \"trap '' TERM; while :; do sleep 0.1; done\"]\n    kill_timeout: 500ms\n",
    )
    .unwrap();
    d.turbo_ok(&["start", dir.join("turbo.yml").to_str().unwrap()]);
    let pid = d.wait_app("stubborn", "online", |a| a["state"] == "online")["pid"]
        .as_u64()
        .unwrap();
    let out = d.turbo(&["stop", "stubborn"]);
    assert!(out.status.success());
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(
        note.contains("killed with SIGKILL"),
        "stop reports the escalation: {note}"
    );
    let app = d.app("stubborn");
    assert_eq!(app["state"], "stopped");
    assert_eq!(
        app["last_exit"]["signal"], 9,
        "ignored SIGTERM, so SIGKILL: {app}"
    );
    assert!(!pid_alive(pid));
}

#[test]
fn config_file_starts_every_app_and_is_idempotent() {
    let d = TestDaemon::start("auto");
    let dir = d.home().join("proj");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("hello.sh"),
        "echo hello from $GREETING\nexec sleep 1000\n",
    )
    .unwrap();
    let yml = dir.join("turbo.yml");
    std::fs::write(
        &yml,
        "apps:\n  - name: one\n    script: hello.sh\n    env: { GREETING: yml }\n  - name: two\n    cmd: [sleep, '1000']\n",
    )
    .unwrap();
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let apps = d.status();
    assert_eq!(apps.len(), 2);
    assert!(apps.iter().all(|a| a["state"] == "online"), "{apps:?}");
    let pids: Vec<_> = apps.iter().map(|a| a["pid"].clone()).collect();
    let one = &apps[0];
    assert_eq!(
        one["cwd"],
        dir.to_str().unwrap(),
        "cwd defaults to the file's directory"
    );

    // the same file again changes nothing
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let again: Vec<_> = d.status().iter().map(|a| a["pid"].clone()).collect();
    assert_eq!(
        pids, again,
        "starting an unchanged config must not restart apps"
    );

    // the log got the line, with a timestamp, and `turbo logs` shows it
    let out_log = one["out_log"].as_str().unwrap().to_owned();
    let line = wait_for("the app's line in its log", Duration::from_secs(5), || {
        std::fs::read_to_string(&out_log)
            .ok()
            .filter(|s| s.contains("hello from yml"))
    });
    let first = line.lines().next().unwrap();
    let record = turbo_api::logfmt::Record::parse(first.as_bytes());
    let stamp = record
        .at()
        .unwrap_or_else(|| panic!("no timestamp: {first}"));
    assert!(
        stamp.ends_with('Z') && stamp.contains('T'),
        "timestamp: {stamp}"
    );
    // tagged with the instance and pid that wrote it
    let source = record.source().unwrap_or_else(|| panic!("no tag: {first}"));
    assert_eq!(source.instance, 0, "{first}");
    assert_eq!(Some(u64::from(source.pid)), one["pid"].as_u64(), "{first}");
    assert_eq!(record.bytes(), b"hello from yml");
    let logs = d.turbo_ok(&["logs", "one", "--lines", "5"]);
    assert!(logs.contains("hello from yml"), "turbo logs: {logs}");
}

#[test]
fn status_json_contract() {
    let d = TestDaemon::start("auto");
    d.turbo_ok(&["start", "sleep", "--name", "c", "--", "1000"]);
    let text = d.turbo_ok(&["status", "--json"]);
    let apps = json(&text);
    let app = &apps[0];
    for key in [
        "id",
        "name",
        "instance",
        "state",
        "pid",
        "restarts",
        "uptime_ms",
        "cpu_percent",
        "memory_bytes",
        "memory_limit_bytes",
        "health",
        "last_exit",
    ] {
        assert!(app.get(key).is_some(), "status --json lacks {key}: {app}");
    }
    assert_eq!(app["instance"], 0);
    assert_eq!(app["health"], "none");
    assert!(app["memory_limit_bytes"].is_null());
    // the human table names the app and its state
    let table = d.turbo_ok(&["status"]);
    assert!(table.contains('c') && table.contains("online"), "{table}");
}

#[test]
fn cli_autostarts_the_daemon_and_kill_stops_it() {
    let home = tempfile::Builder::new()
        .prefix("turbo-auto-")
        .tempdir()
        .unwrap();
    let d = TestDaemon::adopt(home);
    let out = d.turbo_ok(&["ping"]);
    assert!(out.contains("pong"), "{out}");
    let pid: i32 = std::fs::read_to_string(d.home().join("daemon.pid"))
        .expect("the auto-started daemon wrote its pid")
        .trim()
        .parse()
        .unwrap();
    d.turbo_ok(&["start", "sleep", "--name", "s", "--", "1000"]);
    let app_pid = d.app("s")["pid"].as_u64().unwrap();
    d.turbo_ok(&["kill"]);
    assert!(
        !pid_alive(u64::try_from(pid).unwrap()),
        "daemon {pid} still running after kill"
    );
    assert!(!pid_alive(app_pid), "kill stops the apps too");
    // and kill does not start a daemon just to stop it
    let out = d.turbo_ok(&["kill"]);
    assert!(out.contains("no daemon"), "{out}");
    assert!(!d.home().join("daemon.pid").exists());
}

/// `status` reuses a CPU and memory reading of the same process for a moment (many clients at
/// once cost one pass of `/proc` reads), but never a state, a pid or a reading of another
/// process: each change shows in the very next call, from one client or from many at once.
#[test]
fn status_shows_every_change_at_once_even_right_after_a_reading() {
    let d = TestDaemon::start("auto");
    d.turbo_ok(&["start", "sleep", "--name", "now", "--", "1000"]);
    let first = d.wait_app("now", "the app to run", |a| a["state"] == "online");
    let old = first["pid"].as_u64().expect("online app has a pid");
    assert!(first["memory_bytes"].as_u64().unwrap_or(0) > 0, "{first}");

    // within the reuse window of the reading just taken
    d.turbo_ok(&["restart", "now"]);
    let app = d.app("now");
    let new = app["pid"].as_u64().expect("restarted app has a pid");
    assert_ne!(new, old, "the new process shows at once: {app}");
    assert_eq!(app["state"], "online");
    assert!(
        app["memory_bytes"].as_u64().unwrap_or(0) > 0,
        "the new process is measured, not left blank: {app}"
    );
    assert!(
        app["uptime_ms"].as_u64().expect("uptime") < 5_000,
        "uptime is the new process's: {app}"
    );

    d.turbo_ok(&["stop", "now"]);
    for apps in d.status_from_many(8) {
        let app = &apps[0];
        assert_eq!(app["state"], "stopped", "{app}");
        assert!(app["pid"].is_null(), "{app}");
        assert!(
            app["memory_bytes"].is_null(),
            "a stopped app has no reading: {app}"
        );
    }
}

/// A start from a file opens every app's log files in one exchange with the keeper before the
/// spawns: an app whose log file cannot be opened fails its own start with the reason, and its
/// neighbours in the batch start and write their output.
#[test]
fn a_batch_start_fails_only_the_app_whose_log_file_cannot_be_opened() {
    let d = TestDaemon::start("auto");
    let logs = d.home().join("logs");
    // a directory where the file must be: opening it for writing fails (EISDIR)
    std::fs::create_dir_all(logs.join("bad-out.log")).unwrap();
    let app = |name: &str| {
        format!("  - name: {name}\n    cmd: [sh, -c, 'echo hi from {name}; exec sleep 1000']\n")
    };
    let yml = d.config(
        "batch",
        &format!("apps:\n{}{}{}", app("first"), app("bad"), app("last")),
    );
    let out = d.turbo(&["start", yml.to_str().unwrap()]);
    assert!(!out.status.success(), "one app failed: the start says so");
    let apps = d.status();
    let state = |name: &str| {
        apps.iter()
            .find(|a| a["name"] == name)
            .map(|a| a["state"].clone())
    };
    assert_eq!(state("bad"), Some("errored".into()), "{apps:?}");
    assert_eq!(state("first"), Some("online".into()), "{apps:?}");
    assert_eq!(state("last"), Some("online".into()), "{apps:?}");
    let bad = d.json(&["describe", "bad"]);
    assert!(
        bad.to_string().contains("bad-out.log"),
        "the reason names the file: {bad}"
    );
    for name in ["first", "last"] {
        let path = logs.join(format!("{name}-out.log"));
        wait_for("the app's line in its log", Duration::from_secs(10), || {
            std::fs::read_to_string(&path)
                .is_ok_and(|t| t.contains(&format!("hi from {name}")))
                .then_some(())
        });
    }
}
