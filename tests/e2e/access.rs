//! System mode on a system-like bus: the shipped D-Bus policy lets anyone read, and the daemon
//! authorises every mutating call by the caller's credentials.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use turbo_tests::{bin_dir, is_root, wait_for};

/// A `dbus-daemon` configured like the system bus, with the shipped policy included.
struct SystemBus {
    dir: tempfile::TempDir,
    child: Child,
}

impl SystemBus {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("turbo-sysbus-")
            .tempdir()
            .unwrap();
        // other users must reach the socket and the copied CLI
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let policy =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/org.turboprocess.Turbo1.conf");
        assert!(
            policy.is_file(),
            "the shipped bus policy {} is missing",
            policy.display()
        );
        let conf = dir.path().join("system.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"#,
                sock = dir.path().join("system_bus_socket").display(),
                policy = policy.display()
            ),
        )
        .unwrap();
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile"])
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (cargo xtask setup installs it)");
        let sock = dir.path().join("system_bus_socket");
        wait_for("the system-like bus socket", Duration::from_secs(5), || {
            std::os::unix::net::UnixStream::connect(&sock).ok()
        });
        Self { dir, child }
    }

    fn address(&self) -> String {
        format!(
            "unix:path={}",
            self.dir.path().join("system_bus_socket").display()
        )
    }
}

impl Drop for SystemBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    let bus = SystemBus::start();
    let home = tempfile::Builder::new()
        .prefix("turbo-sys-home-")
        .tempdir()
        .unwrap();
    let bins = bin_dir();
    // the CLI copied where uid 65534 can run it (the build tree may be under a private home)
    let cli: PathBuf = bus.dir.path().join("turbo");
    std::fs::copy(bins.join("turbo"), &cli).unwrap();
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
