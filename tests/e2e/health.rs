//! Health checks and `--wait` through the real binaries: an HTTP check that turns unhealthy
//! restarts the app (reason `health`, crash record with the failure), `--wait` returns once the
//! check passes and fails with the last health error on timeout or crash; TCP and command
//! checks; the health state in status, describe and the D-Bus App object; config errors.

use std::{path::PathBuf, process::Output, time::Duration};

use turbo_tests::{TestDaemon, one_line_error, wait_for};

/// The shipped demo app whose `/health` answers 503 while a file exists.
fn sick_py() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/apps/sick.py")
}

/// A TCP port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local addr")
        .port()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_app_that_turns_unhealthy_is_restarted_and_wait_waits_for_healthy() {
    let d = TestDaemon::start("auto");
    let port = free_port();
    let sick = d.home().join("sick-flag");
    let yml = d.config(
        "health",
        &format!(
            "apps:\n  - name: sick\n    cmd: [python3, {}]\n    env: {{ PORT: '{port}', SICK_FILE: {}, READY_AFTER: '1.5' }}\n    \
             health: {{ http: 'http://127.0.0.1:{port}/health', interval: 500ms, timeout: 1s, retries: 3, retry_delay: 300ms, start_period: 10s }}\n",
            sick_py().display(),
            sick.display()
        ),
    );
    // the app listens only after 1.5 s: --wait must sit through the refused connections
    let started = std::time::Instant::now();
    let out = d.turbo(&["start", yml.to_str().unwrap(), "--wait"]);
    assert!(out.status.success(), "start --wait: {}", stderr(&out));
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "--wait returned before the app could answer its health check"
    );
    let app = d.app("sick");
    assert_eq!(app["health"], "healthy", "{app}");
    assert_eq!(app["restarts"], 0, "slow to listen is not unhealthy: {app}");
    let describe = d.json(&["describe", "sick"]);
    assert_eq!(describe["status"]["health"], "healthy", "{describe}");

    // the D-Bus App object carries it too
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let health: String = rt.block_on(async {
        let conn = d.connect().await;
        let app = zbus::Proxy::new(
            &conn,
            turbo_api::BUS_NAME,
            turbo_api::app_path("sick"),
            turbo_api::APP_INTERFACE,
        )
        .await
        .unwrap();
        app.get_property("Health").await.unwrap()
    });
    assert_eq!(health, "healthy");

    // it turns sick: three failed checks in a row restart it, recorded with the failure
    let pid = app["pid"].as_u64().unwrap();
    std::fs::write(&sick, "").unwrap();
    let app = d.wait_app("sick", "a restart for health", |a| {
        a["last_exit"]["reason"] == "health"
    });
    assert_ne!(app["pid"].as_u64(), Some(pid));
    let crashes = d.json(&["crashes", "sick"]);
    let last = &crashes["crashes"][0];
    assert_eq!(last["reason"], "health", "{crashes}");
    let detail = last["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("status 503, expected 200-399"),
        "the crash record says what failed: {crashes}"
    );

    let human = d.turbo_ok(&["describe", "sick"]);
    assert!(
        human.contains("health check") && human.contains("status 503, expected 200-399"),
        "describe shows the check and its last failure:\n{human}"
    );
    let human = d.turbo_ok(&["crashes", "sick"]);
    assert!(
        human.contains("status 503"),
        "crashes shows the failure:\n{human}"
    );

    // while it stays sick, restart --wait fails with the last health error, on one line
    let out = d.turbo(&["restart", "sick", "--wait", "--wait-timeout", "20s"]);
    let err = one_line_error(&out);
    assert!(err.contains("status 503"), "{err}");

    // healthy again: restart --wait succeeds
    std::fs::remove_file(&sick).unwrap();
    let out = d.turbo(&["restart", "sick", "--wait"]);
    assert!(out.status.success(), "restart --wait: {}", stderr(&out));
    assert_eq!(d.app("sick")["health"], "healthy");
}

#[test]
fn wait_times_out_with_the_last_health_error() {
    let d = TestDaemon::start("auto");
    let port = free_port();
    // many retries: the app is never restarted, it just never becomes ready
    let yml = d.config(
        "tcp",
        &format!(
            "apps:\n  - name: deaf\n    cmd: [sleep, '1000']\n    \
             health: {{ tcp: '127.0.0.1:{port}', interval: 300ms, retry_delay: 200ms, retries: 1000 }}\n"
        ),
    );
    let started = std::time::Instant::now();
    let out = d.turbo(&[
        "start",
        yml.to_str().unwrap(),
        "--wait",
        "--wait-timeout",
        "2s",
    ]);
    let err = one_line_error(&out);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "failed before the timeout"
    );
    assert!(
        err.contains("'deaf' is not ready after 2s")
            && err.contains(&format!("tcp 127.0.0.1:{port}"))
            && err.contains("refused"),
        "{err}"
    );
    // the app keeps running: a timeout is the caller's, not the app's
    let app = d.app("deaf");
    assert_eq!(app["state"], "online");
    assert_eq!(app["health"], "unhealthy");
}

#[test]
fn command_checks_report_their_output_and_are_killed_at_the_timeout() {
    let d = TestDaemon::start("auto");
    let yml = d.config(
        "cmd",
        "apps:\n  - name: nope\n    cmd: [sleep, '1000']\n    \
         health: { cmd: [sh, -c, 'echo not yet >&2; exit 4'], interval: 300ms, retry_delay: 200ms, retries: 1000 }\n  \
         - name: slow\n    cmd: [sleep, '1000']\n    \
         health: { cmd: [sleep, '30.123'], timeout: 300ms, interval: 300ms, retry_delay: 200ms, retries: 1000 }\n  \
         - name: fine\n    cmd: [sleep, '1000']\n    health: { cmd: ['true'], interval: 300ms }\n",
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    d.turbo_ok(&["restart", "fine", "--wait", "--wait-timeout", "10s"]);
    assert_eq!(d.app("fine")["health"], "healthy");
    let err = one_line_error(&d.turbo(&["restart", "nope", "--wait", "--wait-timeout", "2s"]));
    assert!(err.contains("exited with 4: not yet"), "{err}");
    let err = one_line_error(&d.turbo(&["restart", "slow", "--wait", "--wait-timeout", "2s"]));
    assert!(err.contains("killed after the 300ms timeout"), "{err}");
    assert!(err.contains("/sleep 30.123"), "{err}");
    // no check command is left behind (the daemon kills each at its timeout): with the app
    // stopped no new one starts, and each would live 30 s if it were not killed
    d.turbo_ok(&["stop", "slow"]);
    wait_for("killed checks to be gone", Duration::from_secs(5), || {
        let out = std::process::Command::new("pgrep")
            .args(["-f", "/sleep 30.123$"])
            .output()
            .expect("pgrep");
        out.stdout.is_empty().then_some(())
    });
}

#[test]
fn wait_fails_at_once_when_the_app_crashes() {
    let d = TestDaemon::start("auto");
    let port = free_port();
    let yml = d.config(
        "crashy",
        &format!(
            "apps:\n  - name: crashy\n    cmd: [sh, -c, 'sleep 0.5; exit 3']\n    \
             health: {{ tcp: '127.0.0.1:{port}', interval: 200ms, retry_delay: 200ms, retries: 1000 }}\n"
        ),
    );
    let started = std::time::Instant::now();
    let out = d.turbo(&["start", yml.to_str().unwrap(), "--wait"]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the crash ended the wait, not the timeout"
    );
    let err = one_line_error(&out);
    assert!(
        err.contains("'crashy' is backoff instead of ready: its process exited with code 3"),
        "{err}"
    );
    // without a health check, ready means online: --wait returns at once
    d.turbo_ok(&[
        "start",
        "/bin/sleep",
        "--name",
        "plain",
        "--wait",
        "--",
        "1000",
    ]);
    assert_eq!(d.app("plain")["health"], "none");
}

#[test]
fn health_and_watch_keys_are_validated_with_positions() {
    let d = TestDaemon::start("auto");
    let yml = d.config(
        "bad",
        "apps:\n  - name: a\n    cmd: [sleep, '1']\n    health: { http: 'https://x/health', interval: soon, retries: 0 }\n  \
         - name: b\n    cmd: [sleep, '1']\n    health: { tcp: 'localhost' }\n    watch: [nowhere]\n    watch_delay: -1s\n",
    );
    let out = d.turbo(&["start", yml.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    for expected in [
        "turbo.yml:4:21: apps[0] (a): health.http 'https://x/health': https is not supported",
        "turbo.yml:4:51: apps[0] (a): health.interval 'soon' is not a duration",
        "turbo.yml:4:66: apps[0] (a): health.retries 0 must be at least 1",
        "turbo.yml:7:20: apps[1] (b): health.tcp 'localhost' has no port",
        "turbo.yml:8:13: apps[1] (b): watch path",
        "turbo.yml:9:18: apps[1] (b): watch_delay '-1s' is negative",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
    let yml = d.config(
        "unknown",
        "apps:\n  - name: a\n    cmd: [sleep, '1']\n    health: { http: 'http://x/', every: 1s }\n",
    );
    let err = one_line_error(&d.turbo(&["start", yml.to_str().unwrap()]));
    assert!(
        err.contains("turbo.yml:4:") && err.contains("unknown field `every`"),
        "{err}"
    );
    assert!(d.status().is_empty(), "nothing started on bad input");
}
