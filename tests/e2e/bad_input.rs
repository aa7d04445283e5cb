//! Bad input: a one-line error, a non-zero exit, and nothing else disturbed.

use turbo_tests::{TestDaemon, one_line_error};

#[test]
fn each_mistake_is_one_line_and_disturbs_nothing() {
    let d = TestDaemon::start("auto");
    d.turbo_ok(&["start", "sleep", "--name", "keep", "--", "1000"]);
    let before = d.app("keep");

    let err = one_line_error(&d.turbo(&["stop", "nope"]));
    assert!(err.contains("nope"), "{err}");
    let err = one_line_error(&d.turbo(&["restart", "999"]));
    assert!(err.contains("999"), "{err}");
    let err = one_line_error(&d.turbo(&["start", "sleep", "--name", "keep", "--", "5"]));
    assert!(err.contains("already exists"), "{err}");
    let err = one_line_error(&d.turbo(&["start", "./missing-script.py", "--name", "m"]));
    assert!(
        err.contains("missing-script.py") && err.contains("not found"),
        "{err}"
    );
    let noexec = d.home().join("noexec");
    std::fs::write(&noexec, "#!/bin/sh\n").unwrap();
    let err = one_line_error(&d.turbo(&["start", noexec.to_str().unwrap(), "--name", "n"]));
    assert!(err.contains("not executable"), "{err}");
    let err = one_line_error(&d.turbo(&["start", "no-such-command-xyz", "--name", "q"]));
    assert!(err.contains("no-such-command-xyz"), "{err}");
    let err = one_line_error(&d.turbo(&["start", "sleep", "--name", "../../etc", "--", "1"]));
    assert!(err.contains("name"), "{err}");

    // an invalid config starts nothing, and names every problem
    let yml = d.home().join("bad.yml");
    std::fs::write(
        &yml,
        "apps:\n  - name: fine\n    cmd: [sleep, '5']\n  - name: broken\n    script: nope.js\n",
    )
    .unwrap();
    let out = d.turbo(&["start", yml.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yml") && err.contains("broken") && err.contains("nope.js"),
        "{err}"
    );
    let yml2 = d.home().join("syntax.yml");
    std::fs::write(
        &yml2,
        "apps:\n  - name: a\n    cmd: [sleep]\n    colour: red\n",
    )
    .unwrap();
    let err = one_line_error(&d.turbo(&["start", yml2.to_str().unwrap()]));
    assert!(
        err.contains("syntax.yml:4") && err.contains("colour"),
        "{err}"
    );

    // nothing else changed
    let names: Vec<_> = d.status().iter().map(|a| a["name"].clone()).collect();
    assert_eq!(names, ["keep"], "no app was added by a failed command");
    let after = d.app("keep");
    assert_eq!(after["pid"], before["pid"]);
    assert_eq!(after["state"], "online");
    assert!(d.turbo(&["ping"]).status.success(), "daemon still answers");
}

#[test]
fn an_unreachable_daemon_is_one_line() {
    let bins = turbo_tests::bin_dir();
    let out = std::process::Command::new(bins.join("turbo"))
        .arg("status")
        .env("TURBO_BUS_ADDRESS", "unix:path=/nonexistent/turbo/bus.sock")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(
        err.contains("/nonexistent/turbo/bus.sock") || err.contains("daemon"),
        "{err}"
    );
}

#[test]
fn config_errors_name_file_line_column_and_a_hint_and_change_nothing() {
    let d = TestDaemon::start("off");
    d.turbo_ok(&["start", "sleep", "--name", "keep", "--", "1000"]);
    let yml = d.config(
        "bad",
        "apps:\n  - name: web\n    cmd: [sleep, '100']\n    restart:\n      delay: -1s\n      max_delay: 5s\n  - name: web\n    cmd: [sleep, '100']\n    restart: { delay: 10s, max_delay: 1s, factor: 0.5 }\n    log: { keep: 0 }\n",
    );
    let out = d.turbo(&["start", yml.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let origin = yml.to_str().unwrap();
    for (pos, what) in [
        ("5:14", "negative"),
        ("7:11", "used twice"),
        ("9:51", "factor"),
        ("9:39", "shorter than restart.delay"),
        ("10:18", "keep"),
    ] {
        assert!(
            err.contains(&format!("{origin}:{pos}:")) && err.contains(what),
            "expected {what} at {pos} in:\n{err}"
        );
    }
    let names: Vec<_> = d.status().iter().map(|a| a["name"].clone()).collect();
    assert_eq!(names, ["keep"], "an invalid file starts nothing");
}
