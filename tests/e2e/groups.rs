//! Groups (`app_group:` and `@group` targets), `turbo signal`, `reload_signal:` and the
//! `AppStateChanged` signal seen by `busctl monitor`, through the real binaries (issue 17).

use std::{
    io::Read,
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use turbo_tests::{TestDaemon, one_line_error, wait_for};

fn pid_of(d: &TestDaemon, name: &str) -> u64 {
    d.wait_app(name, "the app to run", |a| a["state"] == "online")["pid"]
        .as_u64()
        .expect("an online app has a pid")
}

fn names(apps: &Value) -> Vec<String> {
    apps.as_array()
        .expect("an array")
        .iter()
        .map(|a| a["name"].as_str().expect("a name").to_owned())
        .collect()
}

#[test]
fn a_group_is_a_target_of_restart_stop_and_status() {
    let d = TestDaemon::start("auto");
    let file = d.config(
        "grouped",
        concat!(
            "apps:\n",
            "  - name: api\n    cmd: [sleep, '1000']\n    app_group: web\n",
            "  - name: front\n    cmd: [sleep, '1000']\n    app_group: web\n",
            "  - name: db\n    cmd: [sleep, '1000']\n",
        ),
    );
    d.turbo_ok(&["start", file.to_str().unwrap()]);
    let before: Vec<u64> = ["api", "front", "db"].map(|n| pid_of(&d, n)).into();

    let web = d.json(&["status", "@web"]);
    assert_eq!(names(&web), ["api", "front"]);
    assert!(
        web.as_array().unwrap().iter().all(|a| a["group"] == "web"),
        "{web}"
    );
    assert_eq!(d.app("db")["group"], Value::Null);
    let sorted = d.json(&["status", "--sort", "group"]);
    assert_eq!(names(&sorted), ["api", "front", "db"], "grouped apps first");
    let table = d.turbo_ok(&["status"]);
    assert!(table.contains("group") && table.contains("@web"), "{table}");

    d.turbo_ok(&["restart", "@web"]);
    let after: Vec<u64> = ["api", "front", "db"].map(|n| pid_of(&d, n)).into();
    assert_ne!(after[0], before[0], "api restarted");
    assert_ne!(after[1], before[1], "front restarted");
    assert_eq!(after[2], before[2], "db is not in @web");

    // the one-app commands take a group too: each of its apps in turn
    let described = d.json(&["describe", "@web"]);
    let described: Vec<&str> = described
        .as_array()
        .expect("describe @web --json is an array")
        .iter()
        .map(|doc| doc["status"]["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(described, ["api", "front"]);
    let crashes = d.json(&["crashes", "@web"]);
    assert_eq!(crashes.as_array().map(Vec::len), Some(2), "{crashes}");
    let text = d.turbo_ok(&["describe", "@web"]);
    assert!(
        text.contains("api") && text.contains("front") && !text.contains("db"),
        "{text}"
    );
    d.turbo_ok(&["logs", "@web", "--lines", "1"]);
    let out = d.turbo(&["logs", "@nobody"]);
    assert!(!out.status.success());
    assert!(
        one_line_error(&out).contains("no app matches '@nobody'"),
        "{out:?}"
    );

    d.turbo_ok(&["stop", "@web"]);
    assert_eq!(d.app("api")["state"], "stopped");
    assert_eq!(d.app("front")["state"], "stopped");
    assert_eq!(d.app("db")["state"], "online");
    let describe = d.turbo_ok(&["describe", "api"]);
    assert!(describe.contains("@web"), "{describe}");

    d.turbo_ok(&["reset", "@web"]);
    d.turbo_ok(&["flush", "@web"]);
    d.turbo_ok(&["delete", "@web"]);
    assert_eq!(names(&d.json(&["status"])), ["db"], "only @web was deleted");

    let out = d.turbo(&["restart", "@nobody"]);
    assert!(!out.status.success());
    assert!(one_line_error(&out).contains("@nobody"), "{out:?}");

    let bad = d.config(
        "badgroup",
        "apps:\n  - name: x\n    cmd: [sleep, '1']\n    app_group: 'no good'\n    reload_signal: SIGNOPE\n",
    );
    let out = d.turbo(&["config", "check", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("turbo.yml:4:") && err.contains("app_group"),
        "{err}"
    );
    assert!(
        err.contains("turbo.yml:5:") && err.contains("'SIGNOPE' is not a signal"),
        "{err}"
    );
    // `group:` is the Unix group; whoever meant a group of apps is sent to `app_group:`
    let unix = d.config(
        "unixgroup",
        "apps:\n  - name: x\n    cmd: [sleep, '1']\n    group: no-such-group-here\n",
    );
    let out = d.turbo(&["config", "check", unix.to_str().unwrap()]);
    let err = one_line_error(&out);
    assert!(
        err.contains("unknown group 'no-such-group-here'") && err.contains("use `app_group:`"),
        "{err}"
    );
}

/// Waits until the file at `path` has `n` lines and returns them.
fn lines(path: &Path, n: usize) -> Vec<String> {
    wait_for(
        &format!("{n} lines in {}", path.display()),
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            (lines.len() >= n).then_some(lines)
        },
    )
}

#[test]
fn signal_reaches_the_process_and_reload_sends_the_reload_signal() {
    let d = TestDaemon::start("auto");
    let got = d.home().join("got");
    let script = d.script(
        "trapper.sh",
        &format!(
            "trap 'echo hup >> {0}' HUP\ntrap 'echo usr1 >> {0}' USR1\necho ready >> {0}\n\
             while true; do sleep 0.05; done",
            got.display()
        ),
    );
    let file = d.config(
        "trap",
        &format!(
            "apps:\n  - name: trapper\n    cmd: [/bin/sh, '{}']\n    app_group: traps\n    reload_signal: usr1\n",
            script.display()
        ),
    );
    d.turbo_ok(&["start", file.to_str().unwrap()]);
    let pid = pid_of(&d, "trapper");
    lines(&got, 1);

    d.turbo_ok(&["signal", "SIGHUP", "trapper"]);
    assert_eq!(lines(&got, 2)[1], "hup");
    // a number, and a group as the target
    d.turbo_ok(&["signal", "10", "@traps"]);
    assert_eq!(lines(&got, 3)[2], "usr1");
    d.turbo_ok(&["signal", "hup", "trapper:0"]);
    assert_eq!(lines(&got, 4)[3], "hup");
    // reload of an app without listen: is its reload_signal, the process stays
    d.turbo_ok(&["reload", "trapper"]);
    assert_eq!(lines(&got, 5)[4], "usr1");
    let app = d.app("trapper");
    assert_eq!(app["pid"].as_u64(), Some(pid), "not replaced: {app}");
    assert_eq!(app["restarts"], 0);

    let out = d.turbo(&["signal", "SIGNOPE", "trapper"]);
    assert!(!out.status.success());
    assert!(
        one_line_error(&out).contains("'SIGNOPE' is not a signal"),
        "{out:?}"
    );
    d.turbo_ok(&["stop", "trapper"]);
    let out = d.turbo(&["signal", "HUP", "trapper"]);
    assert!(!out.status.success());
    assert!(one_line_error(&out).contains("not running"), "{out:?}");
}

#[test]
fn busctl_monitor_sees_every_state_change() {
    let d = TestDaemon::start("auto");
    let mut monitor = Command::new("busctl")
        .arg(format!("--address={}", d.address()))
        .args([
            "monitor",
            "--match",
            "type='signal',interface='org.turboprocess.Turbo1.Manager',member='AppStateChanged'",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("busctl is installed (cargo xtask setup installs it)");
    let seen = Arc::new(Mutex::new(String::new()));
    let mut stdout = monitor.stdout.take().expect("piped");
    let reader = {
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    // the monitor subscribes asynchronously: stop and start until it has seen one full cycle
    d.turbo_ok(&["start", "sleep", "--name", "watched", "--", "1000"]);
    let text = wait_for(
        "busctl monitor to show stopping, stopped, starting and online of `watched`",
        Duration::from_secs(20),
        || {
            let text = seen.lock().unwrap().clone();
            let cycle = text.find("\"stopping\"").is_some_and(|i| {
                let rest = &text[i..];
                rest.contains("\"stopped\"")
                    && rest.contains("\"starting\"")
                    && rest.contains("\"online\"")
            });
            if cycle {
                Some(text)
            } else {
                d.turbo_ok(&["stop", "watched"]);
                d.turbo_ok(&["restart", "watched"]);
                None
            }
        },
    );
    assert!(text.contains("AppStateChanged"), "{text}");
    assert!(text.contains("\"watched\""), "{text}");
    let _ = monitor.kill();
    let _ = monitor.wait();
    reader.join().expect("reader");
}
