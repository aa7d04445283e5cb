//! Running under systemd: the sd_notify protocol against a datagram socket standing in for
//! systemd (READY=1 only once the bus answers, STATUS=, WATCHDOG=1, STOPPING=1), apps not
//! inheriting the daemon's service variables, `turbo startup`/`unstartup --root`, and the
//! shipped unit, bus policy and polkit actions checked by the tools that consume them.

use std::{
    io,
    os::{
        fd::AsRawFd,
        unix::{fs::PermissionsExt, net::UnixDatagram},
    },
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use turbo_tests::{TestDaemon, bin_dir, wait_for};

/// The repository's `deploy/` directory.
fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

fn path_arg(file: &str) -> String {
    deploy(file).display().to_string()
}

/// One notification: who sent it (from the kernel's `SCM_CREDENTIALS`, as systemd checks it for
/// `NotifyAccess=main`) and what it said.
#[derive(Debug, Clone)]
struct Notice {
    pid: i32,
    text: String,
    at: Instant,
}

/// A stand-in for systemd's notification socket.
struct FakeSystemd {
    _dir: tempfile::TempDir,
    sock: UnixDatagram,
    path: PathBuf,
}

impl FakeSystemd {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("turbo-notify-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        let on: libc::c_int = 1;
        // SAFETY: setsockopt on a socket we own, with a valid int option.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                (&raw const on).cast(),
                libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap(),
            )
        };
        assert_eq!(rc, 0, "SO_PASSCRED: {}", io::Error::last_os_error());
        Self {
            _dir: dir,
            sock,
            path,
        }
    }

    fn address(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// The next notification, or `None` after `timeout`.
    fn recv(&self, timeout: Duration) -> Option<Notice> {
        self.sock
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 4096];
        // u64 storage keeps the control buffer aligned for cmsghdr
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: zeroed msghdr is valid; the pointers set below outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control);
        // SAFETY: recvmsg into buffers we own.
        let n = unsafe { libc::recvmsg(self.sock.as_raw_fd(), &raw mut msg, 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ),
                "recvmsg: {err}"
            );
            return None;
        }
        let mut pid = -1;
        // SAFETY: walking the control messages the kernel wrote into `msg`.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_CREDENTIALS
                {
                    let cred: libc::ucred = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    pid = cred.pid;
                }
                cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
            }
        }
        let len = usize::try_from(n).unwrap();
        Some(Notice {
            pid,
            text: String::from_utf8_lossy(&buf[..len]).into_owned(),
            at: Instant::now(),
        })
    }

    /// Everything that arrives within `window`.
    fn drain(&self, window: Duration) -> Vec<Notice> {
        let end = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(n) = self.recv(end.saturating_duration_since(Instant::now())) {
            out.push(n);
        }
        out
    }
}

fn has_line(notice: &Notice, line: &str) -> bool {
    notice.text.lines().any(|l| l == line)
}

/// `turbo` at an explicit bus address: never auto-starts a daemon, so success means the daemon
/// under test answered.
fn turbo_at(address: &str, args: &[&str]) -> Output {
    Command::new(bin_dir().join("turbo"))
        .args(args)
        .env("TURBO_BUS_ADDRESS", address)
        .env_remove("TURBO_HOME")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn sd_notify_ready_after_the_bus_answers_status_watchdog_stopping() {
    let systemd = FakeSystemd::new();
    let d = TestDaemon::spawn_with_env(
        "off",
        &[
            ("NOTIFY_SOCKET", systemd.address()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let daemon_pid = i32::try_from(d.daemon_pid().unwrap()).unwrap();

    // READY=1, and at that very moment the daemon must answer on its bus
    let mut before_ready = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let ready = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(n) = systemd.recv(left) else {
            panic!(
                "no READY=1 within 15 s; got {before_ready:?}\n{}",
                d.daemon_log()
            );
        };
        if n.pid == daemon_pid && has_line(&n, "READY=1") {
            break n;
        }
        before_ready.push(n);
    };
    let ping = turbo_at(&d.address(), &["ping"]);
    assert!(
        ping.status.success(),
        "READY=1 was sent but the daemon does not answer: {}",
        String::from_utf8_lossy(&ping.stderr)
    );
    let ours: Vec<&Notice> = before_ready
        .iter()
        .filter(|n| n.pid == daemon_pid)
        .collect();
    assert!(
        ours.iter()
            .any(|n| n.text.starts_with("STATUS=starting: event source procfs")),
        "a STATUS= line while starting: {before_ready:?}"
    );
    let status = ready
        .text
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("READY=1 comes with a STATUS= line: {:?}", ready.text));
    assert!(
        status.starts_with("running: user mode, event source procfs, bus unix:path="),
        "{status}"
    );

    // WATCHDOG=1 every 100 ms (WATCHDOG_USEC/2) from the daemon itself
    let window = systemd.drain(Duration::from_millis(500));
    let pings = window
        .iter()
        .filter(|n| n.pid == daemon_pid && n.text == "WATCHDOG=1")
        .count();
    assert!(
        pings >= 2,
        "{pings} WATCHDOG=1 in 500 ms with WATCHDOG_USEC=200000: {window:?}"
    );

    // STOPPING=1 on `turbo kill`
    let kill = turbo_at(&d.address(), &["kill"]);
    assert!(
        kill.status.success(),
        "turbo kill: {}",
        String::from_utf8_lossy(&kill.stderr)
    );
    let stopping = wait_for("STOPPING=1", Duration::from_secs(10), || {
        systemd
            .recv(Duration::from_millis(200))
            .filter(|n| n.pid == daemon_pid && has_line(n, "STOPPING=1"))
    });
    assert!(stopping.at > ready.at);
    let after = systemd.drain(Duration::from_millis(300));
    assert!(
        !after.iter().any(|n| has_line(n, "READY=1")),
        "READY=1 after STOPPING=1: {after:?}"
    );
}

/// Needs the daemon to strip its service variables from children: the app environment
/// allow-list of the spawn plan (`runtime/spawner.rs`) and `notify::strip_service_env` for the
/// private `dbus-daemon` in `host::bus::start` (which speaks sd_notify itself).
#[test]
fn children_never_get_the_daemons_notify_socket_or_watchdog() {
    let systemd = FakeSystemd::new();
    let mut d = TestDaemon::spawn_with_env(
        "off",
        &[
            ("NOTIFY_SOCKET", systemd.address()),
            ("WATCHDOG_USEC", "200000"),
            ("LISTEN_FDS", "1"),
            ("LISTEN_PID", "1"),
        ],
    );
    d.wait_answering();
    let daemon_pid = i32::try_from(d.daemon_pid().unwrap()).unwrap();
    d.turbo_ok(&["start", "sleep", "--name", "envcheck", "--", "1000"]);
    let pid = d.wait_app("envcheck", "online", |a| a["state"] == "online")["pid"]
        .as_u64()
        .unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let leaked: Vec<String> = environ
        .split(|&b| b == 0)
        .map(|kv| String::from_utf8_lossy(kv).into_owned())
        .filter(|kv| {
            [
                "NOTIFY_SOCKET=",
                "WATCHDOG_USEC=",
                "WATCHDOG_PID=",
                "LISTEN_",
            ]
            .iter()
            .any(|p| kv.starts_with(p))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "app pid {pid} inherited the daemon's service variables {leaked:?}: \
         the spawn plan must not pass them on"
    );

    let foreign: Vec<Notice> = systemd
        .drain(Duration::from_millis(300))
        .into_iter()
        .filter(|n| n.pid != daemon_pid)
        .collect();
    assert!(
        foreign.is_empty(),
        "processes other than the daemon (pid {daemon_pid}) notified its service manager: \
         {foreign:?} (the private dbus-daemon sends READY=1 when it inherits NOTIFY_SOCKET: \
         host::bus::start must call notify::strip_service_env)"
    );
}

fn turbo_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin_dir().join("turbo"));
    cmd.args(args)
        .env_remove("TURBO_STARTUP_ROOT")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const UNIT: &str = "etc/systemd/system/turbo-daemon.service";
const BUS_POLICY: &str = "etc/dbus-1/system.d/org.turboprocess.Turbo1.conf";
const POLKIT: &str = "usr/share/polkit-1/actions/org.turboprocess.turbo1.policy";

#[test]
fn startup_and_unstartup_into_a_root_directory() {
    let root = tempfile::tempdir().unwrap();
    let root_s = root.path().to_str().unwrap();
    let daemon = std::fs::canonicalize(bin_dir().join("turbo-daemon")).unwrap();

    let out = run_ok(&mut turbo_cmd(&["startup", "--root", root_s]));
    assert!(out.contains("systemctl was not run"), "{out}");
    let unit = std::fs::read_to_string(root.path().join(UNIT)).unwrap();
    let exec: Vec<&str> = unit
        .lines()
        .filter(|l| l.starts_with("ExecStart="))
        .collect();
    assert_eq!(
        exec,
        [format!("ExecStart={} --system", daemon.display())],
        "the unit starts the turbo-daemon next to turbo"
    );
    for (installed, shipped) in [
        (BUS_POLICY, "org.turboprocess.Turbo1.conf"),
        (POLKIT, "org.turboprocess.turbo1.policy"),
    ] {
        let path = root.path().join(installed);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            std::fs::read_to_string(deploy(shipped)).unwrap(),
            "{installed} is the shipped file"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{installed}");
    }

    // --print shows exactly what is installed; a second install changes nothing
    let printed = run_ok(&mut turbo_cmd(&["startup", "--print"]));
    assert_eq!(printed, unit);
    let again = run_ok(turbo_cmd(&["startup"]).env("TURBO_STARTUP_ROOT", root_s));
    assert_eq!(again.matches("unchanged ").count(), 3, "{again}");

    let out = run_ok(&mut turbo_cmd(&["unstartup", "--root", root_s]));
    assert_eq!(out.matches("removed ").count(), 3, "{out}");
    for rel in [UNIT, BUS_POLICY, POLKIT] {
        assert!(!root.path().join(rel).exists(), "{rel} was removed");
    }
    let out = run_ok(turbo_cmd(&["unstartup"]).env("TURBO_STARTUP_ROOT", root_s));
    assert_eq!(out.matches("not present ").count(), 3, "{out}");
}

/// `systemd-analyze verify` on a unit; returns everything it printed (empty when clean).
fn verify(unit: &Path) -> String {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .unwrap();
    // it exits 0 even for unknown keys and bad values, so its output is the verdict
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() && said.is_empty() {
        said = format!("exit status {}", out.status);
    }
    said
}

#[test]
fn shipped_unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED shipped_unit_passes_systemd_analyze_verify: systemd-analyze is missing \
             (apt package `systemd`; cargo xtask setup installs it)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // verify insists that ExecStart= exists: point the shipped unit at the built daemon
    let daemon = std::fs::canonicalize(bin_dir().join("turbo-daemon")).unwrap();
    let shipped = std::fs::read_to_string(deploy("turbo-daemon.service")).unwrap();
    assert!(shipped.contains("\nExecStart=/usr/local/bin/turbo-daemon --system\n"));
    let unit = dir.path().join("turbo-daemon.service");
    std::fs::write(
        &unit,
        shipped.replace(
            "\nExecStart=/usr/local/bin/turbo-daemon ",
            &format!("\nExecStart={} ", daemon.display()),
        ),
    )
    .unwrap();
    assert_eq!(
        verify(&unit),
        "",
        "systemd-analyze verify on the shipped unit"
    );

    // the unit `turbo startup` writes is as clean
    let root = dir.path().join("root");
    run_ok(&mut turbo_cmd(&[
        "startup",
        "--root",
        root.to_str().unwrap(),
    ]));
    assert_eq!(
        verify(&root.join(UNIT)),
        "",
        "the unit turbo startup writes"
    );

    // and the check is not vacuous: verify does report a bad line
    let bad = dir.path().join("bad").join("turbo-daemon.service");
    std::fs::create_dir(bad.parent().unwrap()).unwrap();
    std::fs::write(
        &bad,
        std::fs::read_to_string(&unit)
            .unwrap()
            .replace("KillMode=process", "KillMode=procss"),
    )
    .unwrap();
    let said = verify(&bad);
    assert!(
        said.contains("procss"),
        "systemd-analyze verify must flag a bad KillMode, said: {said:?}"
    );
}

#[test]
fn bus_policy_and_polkit_actions_are_valid() {
    // dbus-daemon refuses to start on a policy it cannot parse (unknown element or attribute)
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("bus");
    let conf = dir.path().join("bus.conf");
    std::fs::write(
        &conf,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <include>{}</include>
</busconfig>
"#,
            sock.display(),
            deploy("org.turboprocess.Turbo1.conf").display()
        ),
    )
    .unwrap();
    let mut bus = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", conf.display()))
        .args(["--nofork", "--nopidfile", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dbus-daemon (cargo xtask setup installs it)");
    let mut line = String::new();
    io::BufRead::read_line(
        &mut io::BufReader::new(bus.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = bus.kill();
    let out = bus.wait_with_output().unwrap();
    assert!(
        line.starts_with("unix:"),
        "dbus-daemon rejected deploy/org.turboprocess.Turbo1.conf: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let xmllint = Command::new("xmllint").arg("--version").output();
    assert!(
        xmllint.is_ok(),
        "xmllint is missing: install the apt package libxml2-utils (cargo xtask setup should)"
    );
    let mut checks = vec![
        vec![
            "--noout".to_owned(),
            path_arg("org.turboprocess.Turbo1.conf"),
        ],
        vec![
            "--noout".to_owned(),
            path_arg("org.turboprocess.turbo1.policy"),
        ],
    ];
    // validate against polkit's DTD where polkit is installed (no network needed)
    let dtd = Path::new("/usr/share/polkit-1/policyconfig-1.dtd");
    if dtd.is_file() {
        checks.push(vec![
            "--noout".to_owned(),
            "--dtdvalid".to_owned(),
            dtd.display().to_string(),
            path_arg("org.turboprocess.turbo1.policy"),
        ]);
    } else {
        eprintln!(
            "note: {} is missing; polkit actions only checked for well-formedness",
            dtd.display()
        );
    }
    for args in checks {
        let out = Command::new("xmllint").args(&args).output().unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "xmllint {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The pid of the private `dbus-daemon` of `home`, from /proc.
fn private_bus_pid(home: &Path) -> Option<u32> {
    let needle = format!("--config-file={}", home.join("bus.conf").display());
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<u32>().ok())
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
}

#[test]
fn upgrade_keeps_the_main_pid_and_the_bus_and_says_reloading_then_ready() {
    let systemd = FakeSystemd::new();
    let d = TestDaemon::spawn_with_env(
        "off",
        &[
            ("NOTIFY_SOCKET", systemd.address()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    let daemon_pid = i32::try_from(d.daemon_pid().unwrap()).unwrap();
    wait_for("READY=1", Duration::from_secs(15), || {
        systemd
            .recv(Duration::from_millis(200))
            .filter(|n| n.pid == daemon_pid && has_line(n, "READY=1"))
    });
    let bus = private_bus_pid(d.home()).expect("a private bus");
    let out = turbo_at(&d.address(), &["daemon", "upgrade"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&format!("pid {daemon_pid} (same pid)")),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reloading = wait_for("RELOADING=1", Duration::from_secs(10), || {
        systemd
            .recv(Duration::from_millis(200))
            .filter(|n| n.pid == daemon_pid && has_line(n, "RELOADING=1"))
    });
    assert!(
        reloading
            .text
            .lines()
            .any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    let ready = wait_for("READY=1 again", Duration::from_secs(15), || {
        systemd
            .recv(Duration::from_millis(200))
            .filter(|n| n.pid == daemon_pid && has_line(n, "READY=1"))
    });
    assert!(ready.at >= reloading.at);
    assert_eq!(
        private_bus_pid(d.home()),
        Some(bus),
        "the private bus survived the exec"
    );
    assert!(turbo_at(&d.address(), &["ping"]).status.success());
}
