//! System mode on a system-like bus: the shipped D-Bus policy lets anyone read, and the daemon
//! authorises every mutating call by the caller's credentials.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use turbo_tests::{SystemBus, bin_dir, is_root, wait_for};

/// Runs the CLI as uid/gid 65534 (nobody), with `groups` as supplementary groups.
fn turbo_as_nobody(cli: &Path, address: &str, groups: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534"]);
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        cmd.arg(format!("--groups={groups}"));
    }
    cmd.arg("--")
        .arg(cli)
        .args(args)
        .env("TURBO_BUS_ADDRESS", address)
        .env("HOME", "/nonexistent")
        .env("NO_COLOR", "1")
        .output()
        .expect("setpriv (util-linux)")
}

#[test]
fn readers_read_and_only_authorised_callers_change_things() {
    if !is_root() {
        eprintln!(
            "\n*** SKIPPED access: needs root to run a system-like bus and switch users (CI is root) ***\n"
        );
        return;
    }
    let bus = SystemBus::start("turbo-sysbus-");
    let home = tempfile::Builder::new()
        .prefix("turbo-sys-home-")
        .tempdir()
        .unwrap();
    let bins = bin_dir();
    // the CLI copied where uid 65534 can run it (the build tree may be under a private home)
    let cli: PathBuf = bus.cli();

    let log = std::fs::File::create(home.path().join("daemon.log")).unwrap();
    let mut daemon = Command::new(bins.join("turbo-daemon"))
        .args(["--bus-address", &bus.address(), "--home"])
        .arg(home.path())
        .args(["--admin-group", "adm", "--ebpf", "off"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let root_cli = |args: &[&str]| {
        Command::new(&cli)
            .args(args)
            .env("TURBO_BUS_ADDRESS", bus.address())
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    wait_for(
        "the daemon on the system-like bus",
        Duration::from_secs(15),
        || root_cli(&["ping"]).status.success().then_some(()),
    );
    let out = root_cli(&["start", "sleep", "--name", "svc", "--", "1000"]);
    assert!(
        out.status.success(),
        "root may start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = root_cli(&["info", "--json"]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("\"mode\": \"system\""));

    // nobody: reads work, changes are refused with a one-line AccessDenied
    let list = turbo_as_nobody(&cli, &bus.address(), "", &["status", "--json"]);
    assert!(
        list.status.success(),
        "anyone may list: {}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(String::from_utf8_lossy(&list.stdout).contains("\"svc\""));
    for args in [
        &["stop", "svc"][..],
        &["delete", "svc"],
        &["reload", "svc"],
        &["scale", "svc", "3"],
        &["start", "sleep", "--name", "evil", "--", "1"],
        &["kill"],
    ] {
        let out = turbo_as_nobody(&cli, &bus.address(), "", args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "nobody may not {args:?}");
        assert!(err.contains("uid 65534 may not"), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    let still = root_cli(&["status", "--json"]);
    assert!(
        String::from_utf8_lossy(&still.stdout).contains("\"online\""),
        "nothing changed"
    );

    // a member of the admin group may
    let out = turbo_as_nobody(&cli, &bus.address(), "4", &["stop", "svc"]);
    assert!(
        out.status.success(),
        "adm member may stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = turbo_as_nobody(&cli, &bus.address(), "4", &["delete", "svc"]);
    assert!(out.status.success());

    let _ = root_cli(&["kill"]);
    let _ = daemon.wait();
}
