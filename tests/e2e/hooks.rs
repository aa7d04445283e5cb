//! `pre_start`, `post_start`, `pre_stop` and `post_stop` through the real binaries: their order
//! around the app's start and stop, the app's environment and cwd, their output marked in the
//! app's log, and a failing `pre_start` as a crash with its stderr (issue 17 point 4).

use std::{path::Path, time::Duration};

use turbo_tests::{TestDaemon, wait_for};

fn lines(path: &Path, want: &str) -> Vec<String> {
    wait_for(
        &format!("'{want}' in {}", path.display()),
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            lines.iter().any(|l| l == want).then_some(lines)
        },
    )
}

#[test]
fn hooks_run_in_order_around_start_and_stop_as_the_app_with_marked_output() {
    let d = TestDaemon::start("auto");
    let dir = d.home().join("hookdir");
    std::fs::create_dir_all(&dir).unwrap();
    let order = dir.join("order");
    let file = d.config(
        "hooked",
        &format!(
            "apps:\n  - name: hooked\n    cwd: {dir}\n    env: {{FOO: bar}}\n\
             \x20   cmd: [/bin/sh, -c, 'echo app_started >> order; trap \"echo app_term >> order; exit 0\" TERM; while true; do sleep 0.05; done']\n\
             \x20   pre_start: {{cmd: [/bin/sh, -c, 'echo \"pre $FOO $(pwd) $TURBO_HOOK\" >> order; echo pre-out; echo pre-err >&2']}}\n\
             \x20   post_start: {{cmd: [/bin/sh, -c, 'echo post_start >> order']}}\n\
             \x20   pre_stop: {{cmd: [/bin/sh, -c, 'echo pre_stop >> order; sleep 0.3; echo pre_stop_done >> order'], timeout: 5s}}\n\
             \x20   post_stop: {{cmd: [/bin/sh, -c, 'echo post_stop >> order']}}\n",
            dir = dir.display()
        ),
    );
    d.turbo_ok(&["start", file.to_str().unwrap()]);
    let started = lines(&order, "post_start");
    assert_eq!(
        started[0],
        format!("pre bar {} pre_start", dir.display()),
        "pre_start first, with the app's env and cwd: {started:?}"
    );
    assert_eq!(started[1], "app_started", "{started:?}");
    let logs = wait_for("the hook's marked output", Duration::from_secs(10), || {
        let logs = d.turbo_ok(&["logs", "hooked", "--lines", "50"]);
        (logs.contains("[pre_start] pre-out") && logs.contains("[pre_start] pre-err"))
            .then_some(logs)
    });
    assert!(logs.contains("[pre_start] pre-err"), "{logs}");

    d.turbo_ok(&["stop", "hooked"]);
    let all = lines(&order, "post_stop");
    let stop: Vec<&str> = all[3..].iter().map(String::as_str).collect();
    assert_eq!(
        stop,
        ["pre_stop", "pre_stop_done", "app_term", "post_stop"],
        "the stop signal waits for pre_stop; post_stop follows the group: {all:?}"
    );
}

#[test]
fn a_failing_pre_start_is_a_crash_with_its_stderr() {
    let d = TestDaemon::start("auto");
    let file = d.config(
        "broken",
        "apps:\n  - name: broken\n    cmd: [sleep, '1000']\n    restart: {delay: 30s}\n\
         \x20   pre_start: {cmd: [/bin/sh, -c, 'echo checking; echo cannot reach the database >&2; exit 3']}\n",
    );
    d.turbo_ok(&["start", file.to_str().unwrap()]);
    let report = wait_for("the crash record", Duration::from_secs(10), || {
        let r = d.json(&["crashes", "broken"]);
        (r["crashes"].as_array().is_some_and(|c| !c.is_empty())).then_some(r)
    });
    let crash = &report["crashes"][0];
    assert_eq!(crash["reason"], "pre_start", "{crash}");
    assert_eq!(crash["code"], 3, "{crash}");
    assert!(
        crash["detail"]
            .as_str()
            .is_some_and(|d| d.contains("cannot reach the database")),
        "{crash}"
    );
    assert!(
        crash["stderr_tail"]
            .to_string()
            .contains("[pre_start] cannot reach the database"),
        "{crash}"
    );
    let app = d.app("broken");
    assert_eq!(app["state"], "backoff", "the restart policy applies: {app}");
    assert_eq!(app["pid"], serde_json::Value::Null, "never spawned: {app}");
    let human = d.turbo_ok(&["crashes", "broken"]);
    assert!(human.contains("cannot reach the database"), "{human}");
}

#[test]
fn hooks_and_notification_commands_run_as_the_apps_user() {
    if !turbo_tests::is_root() {
        eprintln!(
            "\n*** SKIPPED hooks_and_notification_commands_run_as_the_apps_user: needs root to run apps as another user (CI runs as root) ***\n"
        );
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let d = TestDaemon::start("auto");
    let shared = tempfile::Builder::new()
        .prefix("turbo-e2e-hooks-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let dir = shared.path().display().to_string();
    let file = d.config(
        "asuser",
        &format!(
            "apps:\n  - name: asuser\n    cwd: {dir}\n    user: nobody\n\
             \x20   cmd: [/bin/sh, -c, 'test -e once && exec sleep 1000; touch once; exit 4']\n\
             \x20   restart: {{delay: 100ms}}\n\
             \x20   pre_start: {{cmd: [/bin/sh, -c, 'echo \"pre_start $(id -un)\" >> ids']}}\n\
             \x20   on_crash: {{cmd: [/bin/sh, -c, 'echo \"on_crash $(id -un)\" >> ids']}}\n"
        ),
    );
    d.turbo_ok(&["start", file.to_str().unwrap()]);
    let ids = lines(&shared.path().join("ids"), "on_crash nobody");
    assert!(ids.iter().any(|l| l == "pre_start nobody"), "{ids:?}");
    assert!(!ids.iter().any(|l| l.contains("root")), "{ids:?}");
}
