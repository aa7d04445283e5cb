//! Readiness with the systemd protocol through the real binaries: `ready: notify` apps get a
//! `NOTIFY_SOCKET`; `READY=1` (from any process of the app) gates `--wait`; `STATUS=` shows in
//! status and describe; `watchdog:` gives `WATCHDOG_USEC`, and a missed ping restarts the hung
//! app with reason `health` and a crash record saying "watchdog timeout".

use std::{path::PathBuf, time::Duration};

use turbo_tests::{TestDaemon, one_line_error};

fn notifier_py() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/apps/notifier.py")
}

#[test]
fn ready_1_gates_wait_and_status_text_is_shown() {
    let d = TestDaemon::start("auto");
    let yml = d.config(
        "notify",
        &format!(
            "apps:\n  - name: n\n    cmd: [python3, {}]\n    env: {{ READY_AFTER: '1.5', READY_FROM_CHILD: '1' }}\n    ready: notify\n",
            notifier_py().display()
        ),
    );
    let started = std::time::Instant::now();
    d.turbo_ok(&["start", yml.to_str().unwrap(), "--wait"]);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "--wait returned before READY=1"
    );
    let app = d.app("n");
    assert_eq!(app["state"], "online");
    assert_eq!(app["status_text"], "serving", "{app}");
    let describe = d.turbo_ok(&["describe", "n"]);
    assert!(describe.contains("serving"), "{describe}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let text: String = rt.block_on(async {
        let conn = d.connect().await;
        let app = zbus::Proxy::new(
            &conn,
            turbo_api::BUS_NAME,
            turbo_api::app_path("n"),
            turbo_api::APP_INTERFACE,
        )
        .await
        .unwrap();
        app.get_property("StatusText").await.unwrap()
    });
    assert_eq!(text, "serving", "the App object's StatusText");

    // an app that never says READY=1 times --wait out, saying so
    let yml = d.config(
        "mute",
        "apps:\n  - name: mute\n    cmd: [sleep, '1000']\n    ready: notify\n",
    );
    let err = one_line_error(&d.turbo(&[
        "start",
        yml.to_str().unwrap(),
        "--wait",
        "--wait-timeout",
        "1s",
    ]));
    assert!(
        err.contains("'mute' is not ready after 1s: it has not sent READY=1 yet"),
        "{err}"
    );
}

#[test]
fn a_missed_watchdog_restarts_the_hung_app() {
    let d = TestDaemon::start("auto");
    let hang = d.home().join("hang");
    let yml = d.config(
        "wd",
        &format!(
            "apps:\n  - name: wd\n    cmd: [python3, {}]\n    env: {{ READY_AFTER: '0', HANG_FILE: {} }}\n    \
             ready: notify\n    watchdog: 1s\n",
            notifier_py().display(),
            hang.display()
        ),
    );
    d.turbo_ok(&["start", yml.to_str().unwrap(), "--wait"]);
    // pinging every 0.5 s: it stays up well past the period
    std::thread::sleep(Duration::from_millis(2500));
    let app = d.app("wd");
    assert_eq!(app["restarts"], 0, "a pinging app is not hung: {app}");
    std::fs::write(&hang, "").unwrap();
    // the exit is recorded first and the restart counted when it starts, so a status in
    // between shows the one without the other: wait for both
    let app = d.wait_app("wd", "a restart for the missed watchdog", |a| {
        a["last_exit"]["reason"] == "health" && a["restarts"].as_u64() >= Some(1)
    });
    assert!(app["restarts"].as_u64().unwrap() >= 1);
    let crashes = d.json(&["crashes", "wd"]);
    assert_eq!(
        crashes["crashes"][0]["detail"], "watchdog timeout: no WATCHDOG=1 for 1s",
        "{crashes}"
    );
}

#[test]
fn unknown_ready_modes_and_bad_watchdogs_are_config_errors() {
    let d = TestDaemon::start("auto");
    let yml = d.config(
        "bad",
        "apps:\n  - name: a\n    cmd: [sleep, '1']\n    ready: notfy\n    watchdog: 10ms\n    ready_timeout: later\n",
    );
    let out = d.turbo(&["start", yml.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for expected in [
        "turbo.yml:4:12: apps[0] (a): ready 'notfy' is not one of: spawn",
        "turbo.yml:5:15: apps[0] (a): watchdog must be at least 100ms",
        "turbo.yml:6:20: apps[0] (a): ready_timeout 'later' is not a duration",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
}

#[test]
fn an_adopted_app_keeps_pinging_the_next_daemon() {
    let mut d = TestDaemon::start("auto");
    let yml = d.config(
        "adopt",
        &format!(
            "apps:\n  - name: wd\n    cmd: [python3, {}]\n    env: {{ READY_AFTER: '0' }}\n    \
             ready: notify\n    watchdog: 1s\n",
            notifier_py().display()
        ),
    );
    d.turbo_ok(&["start", yml.to_str().unwrap(), "--wait"]);
    let pid = d.app("wd")["pid"].as_u64().unwrap();
    d.wait_saved_pid(pid);
    d.kill9_daemon();
    d.restart_daemon();
    // the new daemon binds the same NOTIFY_SOCKET: the pings reach it, no watchdog restart
    std::thread::sleep(Duration::from_millis(3000));
    let app = d.app("wd");
    assert_eq!(app["pid"].as_u64(), Some(pid), "{app}");
    assert_eq!(app["restarts"], 0, "{app}");
    d.turbo_ok(&["restart", "wd", "--wait"]);
}
