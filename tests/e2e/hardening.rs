//! Hardening, through the real binaries: a non-root caller's apps run as that caller and its
//! files are read with its rights; environment values are for root only; every D-Bus argument
//! is bounded; log and state directories must be private and planted symlinks are not followed;
//! apps do not inherit the daemon's stray file descriptors.

use std::{
    collections::{BTreeSet, HashMap},
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use turbo_api::ManagerProxy;
use turbo_tests::{SystemBus, TestDaemon, bin_dir, is_root, json, wait_for};
use zbus::zvariant::Value;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("\n*** SKIPPED {test}: needs root to switch users (CI is root) ***\n");
    true
}

/// A `dbus-daemon` configured like the system bus with the shipped policy (as in `access.rs`),
/// and a root daemon on it whose admin group is `adm` (gid 4).
pub(crate) struct SystemLike {
    bus: SystemBus,
    daemon: Child,
    home: tempfile::TempDir,
    pub(crate) cli: PathBuf,
}

impl SystemLike {
    pub(crate) fn start() -> Self {
        let bus = SystemBus::start("turbo-harden-");
        let sock = bus.dir.path().join("system_bus_socket");
        let cli = bus.cli();

        let home = tempfile::Builder::new()
            .prefix("turbo-harden-home-")
            .tempdir()
            .unwrap();
        let log = std::fs::File::create(home.path().join("daemon.log")).unwrap();
        let daemon = Command::new(bin_dir().join("turbo-daemon"))
            .args(["--bus-address", &format!("unix:path={}", sock.display())])
            .arg("--home")
            .arg(home.path())
            .args(["--admin-group", "adm", "--ebpf", "off"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let s = Self {
            bus,
            daemon,
            home,
            cli,
        };
        wait_for(
            "the daemon on the system-like bus",
            Duration::from_secs(15),
            || s.root(&["ping"]).status.success().then_some(()),
        );
        s
    }

    pub(crate) fn address(&self) -> String {
        self.bus.address()
    }

    /// `turbo` as root.
    pub(crate) fn root(&self, args: &[&str]) -> Output {
        Command::new(&self.cli)
            .args(args)
            .current_dir(self.bus.dir.path())
            .env("TURBO_BUS_ADDRESS", self.address())
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }

    /// `turbo` as uid 65534 in the admin group `adm` (gid 4): authorised, but not root.
    pub(crate) fn admin(&self, args: &[&str]) -> Output {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--groups=4", "--"])
            .arg(&self.cli)
            .args(args)
            .current_dir(self.bus.dir.path())
            .env("TURBO_BUS_ADDRESS", self.address())
            .env("HOME", "/nonexistent")
            .env("NO_COLOR", "1")
            .output()
            .expect("setpriv (util-linux)")
    }

    /// A file in the shared directory, readable by everyone (configs the CLI reads as 65534).
    pub(crate) fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.bus.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for SystemLike {
    fn drop(&mut self) {
        let _ = self.root(&["kill"]);
        let _ = wait_for_exit(&mut self.daemon, Duration::from_secs(10));
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

fn wait_for_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let until = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < until {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

pub(crate) fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn failed(out: &Output, what: &str) -> String {
    assert!(
        !out.status.success(),
        "{what} should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The real uid of `pid` (first field of `Uid:` in /proc).
pub(crate) fn uid_of(pid: u64) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap()
}

pub(crate) fn app_pid(list: &str, name: &str) -> u64 {
    let apps = json(list);
    let app = apps
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {list}"));
    app["pid"].as_u64().unwrap()
}

/// The security finding: an admin-group member (or a polkit-authorised user) could run any
/// command as root, because an app without `user:` ran as the root daemon. Now a non-root
/// caller's apps run as that caller, another user is refused, the caller's `env_file` is read
/// with the caller's rights, environment values are root's only, and a resurrect cannot bring
/// back other users' apps.
#[test]
fn a_non_root_callers_apps_run_as_the_caller_and_only_root_sees_env_values() {
    if skip_unless_root("caller-scoped privileges") {
        return;
    }
    let s = SystemLike::start();

    // StartApp without `user:`: runs as uid 65534, not as root
    ok(
        &s.admin(&["start", "sleep", "--name", "mine", "--", "1000"]),
        "an admin may start an app",
    );
    let list = ok(&s.root(&["status", "--json"]), "status");
    assert_eq!(uid_of(app_pid(&list, "mine")), 65534, "{}", s.log());
    let describe = json(&ok(&s.root(&["describe", "mine", "--json"]), "describe"));
    assert_eq!(describe["config"]["uid"], 65534, "{describe}");

    // StartConfig without `user:` too; with `user: root` refused, naming the caller
    let yml = s.file(
        "own.yml",
        "apps:\n  - name: cfg-own\n    cmd: [sleep, '1000']\n    env: {TOKEN: s3cret}\n",
        0o644,
    );
    ok(&s.admin(&["start", yml.to_str().unwrap()]), "config start");
    let list = ok(&s.root(&["status", "--json"]), "status");
    assert_eq!(uid_of(app_pid(&list, "cfg-own")), 65534);
    let yml = s.file(
        "root.yml",
        "apps:\n  - name: escalate\n    cmd: [sleep, '1000']\n    user: root\n",
        0o644,
    );
    let err = failed(&s.admin(&["start", yml.to_str().unwrap()]), "user: root");
    assert!(
        err.contains("root.yml:4:11")
            && err.contains("only root may run apps as another user")
            && err.contains("you are nobody (uid 65534)"),
        "{err}"
    );

    // env_file: read with the caller's rights, so a root-only file is refused
    s.file("secret.env", "DB_PASSWORD=root-only\n", 0o600);
    let yml = s.file(
        "steal.yml",
        "apps:\n  - name: steal\n    cmd: [sleep, '1000']\n    env_file: secret.env\n",
        0o644,
    );
    let err = failed(&s.admin(&["start", yml.to_str().unwrap()]), "env_file");
    assert!(
        err.contains("secret.env cannot be read (Permission denied"),
        "{err}"
    );
    assert!(!err.contains("root-only"), "{err}");
    // root may, and then the value is root's to see
    ok(&s.root(&["start", yml.to_str().unwrap()]), "root env_file");
    let list = ok(&s.root(&["status", "--json"]), "status");
    assert_eq!(
        uid_of(app_pid(&list, "steal")),
        0,
        "root keeps today's behaviour"
    );

    // --show-env: root sees the values, an admin gets AccessDenied, plain describe hides them
    let shown = ok(
        &s.root(&["describe", "steal", "--show-env"]),
        "root --show-env",
    );
    assert!(shown.contains("DB_PASSWORD=root-only"), "{shown}");
    let doc = json(&ok(
        &s.root(&["describe", "cfg-own", "--show-env", "--json"]),
        "json",
    ));
    assert_eq!(doc["env"]["TOKEN"], "s3cret", "{doc}");
    let err = failed(
        &s.admin(&["describe", "cfg-own", "--show-env"]),
        "admin --show-env",
    );
    assert!(
        err.contains("uid 65534 may not read the environment values") && !err.contains("s3cret"),
        "{err}"
    );
    let hidden = ok(&s.admin(&["describe", "cfg-own"]), "describe");
    assert!(
        hidden.contains("TOKEN (values hidden)") && !hidden.contains("s3cret"),
        "{hidden}"
    );

    // operating existing apps stays open to admins (denial of service, not escalation)
    ok(
        &s.admin(&["restart", "steal"]),
        "an admin may restart root's app",
    );
    let list = ok(&s.root(&["status", "--json"]), "status");
    assert_eq!(
        uid_of(app_pid(&list, "steal")),
        0,
        "still root's definition"
    );

    // resurrect: an admin may not bring back another user's deleted app; root may
    ok(&s.root(&["save"]), "save");
    ok(&s.root(&["delete", "steal"]), "delete");
    let err = failed(&s.admin(&["resurrect"]), "admin resurrect");
    assert!(
        err.contains("may not resurrect apps that run as other users")
            && err.contains("steal (as uid 0)"),
        "{err}"
    );
    ok(&s.root(&["resurrect"]), "root resurrect");
    let list = ok(&s.root(&["status", "--json"]), "status");
    assert_eq!(uid_of(app_pid(&list, "steal")), 0);
}

fn error_name(err: &zbus::Error) -> String {
    match err {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        other => panic!("not a method error: {other:?}"),
    }
}

fn error_text(err: &zbus::Error) -> String {
    turbo_api::error_message(err)
}

/// Every D-Bus argument is bounded and checked: each oversized or malformed call is refused
/// with a short, one-line error naming the bound, and the daemon is unharmed.
#[test]
fn oversized_and_malformed_arguments_are_refused_with_the_bound() {
    let d = TestDaemon::start("off");
    rt().block_on(async {
        let conn = d.connect().await;
        let m = ManagerProxy::new(&conn).await.unwrap();
        let cwd = || HashMap::from([("cwd", Value::from("/tmp"))]);
        let check = |r: zbus::Result<_>, name: &str, wanted: &str| {
            let e = match r {
                Ok(_) => panic!("{wanted}: accepted"),
                Err(e) => e,
            };
            assert_eq!(error_name(&e), name, "{wanted}: {e}");
            let text = error_text(&e);
            assert!(text.contains(wanted), "wanted {wanted:?} in {text}");
            assert!(
                text.len() < 400 && !text.contains('\n'),
                "short, one line: {text}"
            );
        };
        const INVALID: &str = "org.turboprocess.Turbo1.Error.InvalidArgument";
        const CONFIG: &str = "org.turboprocess.Turbo1.Error.InvalidConfig";

        let long_name = "n".repeat(100_000);
        check(
            m.start_app(&long_name, &["sleep", "1"], cwd())
                .await
                .map(drop),
            INVALID,
            "too long (100000 bytes)",
        );
        let many: Vec<&str> = std::iter::once("sleep")
            .chain(std::iter::repeat_n("1", 5000))
            .collect();
        check(
            m.start_app("many", &many, cwd()).await.map(drop),
            INVALID,
            "5001 arguments: at most 4096",
        );
        let chunk = "x".repeat(100_000);
        let big: Vec<&str> = std::iter::once("sleep")
            .chain(std::iter::repeat_n(chunk.as_str(), 12))
            .collect();
        check(
            m.start_app("big", &big, cwd()).await.map(drop),
            INVALID,
            "at most 1048576",
        );
        // a NUL cannot cross D-Bus (the bus drops a caller that sends one), but YAML can
        // carry it ("\0"): it could never reach execve
        check(
            m.start_config(
                "apps:\n  - name: nul\n    cmd: [sleep, \"1\\0\"]\n",
                "t.yml",
                "/tmp",
            )
            .await
            .map(drop),
            CONFIG,
            "t.yml:3:18: '1\\u{0}' holds a NUL byte, which no path, name, argument or variable can pass to the OS",
        );
        let env: HashMap<String, String> =
            (0..2000).map(|i| (format!("V{i}"), "1".into())).collect();
        let mut opts = cwd();
        opts.insert("env", Value::from(env));
        check(
            m.start_app("envs", &["sleep", "1"], opts).await.map(drop),
            INVALID,
            "2000 environment variables: at most 1024",
        );
        let mut opts = cwd();
        opts.insert("env", Value::from(HashMap::from([("A=B", "1")])));
        check(
            m.start_app("eq", &["sleep", "1"], opts).await.map(drop),
            INVALID,
            "'A=B' is not allowed",
        );
        let mut opts = HashMap::new();
        opts.insert("cwd", Value::from(42u32));
        check(
            m.start_app("typ", &["sleep", "1"], opts).await.map(drop),
            INVALID,
            "option 'cwd' must be a string",
        );
        let mut opts = HashMap::new();
        opts.insert("cwd", Value::from("relative/dir"));
        check(
            m.start_app("rel", &["sleep", "1"], opts).await.map(drop),
            INVALID,
            "must be an absolute path",
        );
        let mut opts = cwd();
        opts.insert("colour\nforged", Value::from(1u32));
        check(
            m.start_app("unk", &["sleep", "1"], opts).await.map(drop),
            INVALID,
            "unknown option 'colour\\nforged'",
        );

        let huge = format!("apps:\n{}", "#".repeat(2 << 20));
        check(
            m.start_config(&huge, "t.yml", "/tmp").await.map(drop),
            CONFIG,
            "at most 1048576",
        );
        check(
            m.start_config("apps: []", "t.yml\nturbo.yml:1:1: forged", "/tmp")
                .await
                .map(drop),
            CONFIG,
            "is not a file name",
        );
        check(
            m.start_config("apps: []", "t.yml", "relative")
                .await
                .map(drop),
            CONFIG,
            "base_dir 'relative' must be an absolute path",
        );
        let target = "t".repeat(10_000);
        check(
            m.stop_app(&target).await.map(drop),
            INVALID,
            "10000 bytes: an app name (at most 64)",
        );
        check(
            m.describe_app(&target).await.map(drop),
            INVALID,
            "an app name (at most 64)",
        );
        check(m.delete_app("").await.map(drop), INVALID, "target is empty");

        // nothing was added, and the daemon still works
        assert!(m.list_apps().await.unwrap().is_empty());
        let st = m
            .start_app("fine", &["sleep", "1000"], cwd())
            .await
            .unwrap();
        assert_eq!(st.state, "online");
    });
}

/// A daemon refuses a log or state directory that others may write to, and a symlink planted
/// where a log file goes is not written through.
#[test]
fn private_directories_are_required_and_planted_symlinks_refused() {
    let run_daemon = |home: &Path| {
        let mut child = Command::new(bin_dir().join("turbo-daemon"))
            .env("TURBO_HOME", home)
            .env("TURBO_EBPF", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_for_exit(&mut child, Duration::from_secs(15));
        if status.is_none() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        (status, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for (what, mode_of) in [("logs", "logs"), ("home", "")] {
        let home = tempfile::Builder::new()
            .prefix("turbo-e2e-open-")
            .tempdir()
            .unwrap();
        let open = home.path().join(mode_of);
        std::fs::create_dir_all(&open).unwrap();
        std::fs::create_dir_all(home.path().join("logs")).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let (status, err) = run_daemon(home.path());
        assert!(
            status.is_some_and(|s| !s.success()),
            "{what}: the daemon must refuse to start: {err}"
        );
        assert!(
            err.contains("is writable by its group or others (mode 0777")
                && err.contains("chmod go-w"),
            "{what}: {err}"
        );
        // checked before anything is created in it
        for file in ["daemon.lock", "daemon.pid", "keeper.sock", "bus.sock"] {
            assert!(
                !home.path().join(file).exists(),
                "{what}: {file} was created"
            );
        }
    }

    // a planted symlink where a log file goes: the start fails, the target is untouched
    let d = TestDaemon::start("off");
    let victim = d.home().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::fs::create_dir_all(d.home().join("logs")).unwrap();
    std::os::unix::fs::symlink(&victim, d.home().join("logs/planted-out.log")).unwrap();
    let out = d.turbo(&[
        "start",
        "sh",
        "--name",
        "planted",
        "--",
        "-c",
        "echo hi; sleep 1000",
    ]);
    let err = failed(&out, "a symlinked log file");
    assert!(
        err.contains("planted-out.log") && err.contains("symbolic links"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

/// An app gets stdin, stdout and stderr and nothing else, even when the daemon itself was
/// started with stray fds open (10 and 251, as a shell left them in the finding); and a
/// failing exec is still reported (the exec-error pipe survives the fd sweep).
#[test]
fn apps_do_not_inherit_the_daemons_stray_fds() {
    let home = tempfile::Builder::new()
        .prefix("turbo-e2e-fds-")
        .tempdir()
        .unwrap();
    let log = std::fs::File::create(home.path().join("daemon.log")).unwrap();
    let stray = std::fs::File::open("/dev/null").unwrap();
    let stray_fd = std::os::fd::AsRawFd::as_raw_fd(&stray);
    let mut cmd = Command::new(bin_dir().join("turbo-daemon"));
    cmd.env("TURBO_HOME", home.path())
        .env("TURBO_EBPF", "off")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // SAFETY: dup2 is async-signal-safe; the new fds lack FD_CLOEXEC, like a shell's.
    unsafe {
        cmd.pre_exec(move || {
            for fd in [10, 251] {
                if libc::dup2(stray_fd, fd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut daemon = cmd.spawn().unwrap();
    let d = TestDaemon::adopt(home);
    wait_for("the daemon to answer", Duration::from_secs(15), || {
        // an explicit bus address: a `turbo` that finds no daemon yet must not start one
        Command::new(bin_dir().join("turbo"))
            .arg("ping")
            .env("TURBO_BUS_ADDRESS", d.address())
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .status
            .success()
            .then_some(())
    });
    let fds = |pid: u64| -> BTreeSet<u32> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    };
    let daemon_fds = fds(u64::from(daemon.id()));
    assert!(
        daemon_fds.contains(&10) && daemon_fds.contains(&251),
        "the daemon has the stray fds: {daemon_fds:?}"
    );
    d.turbo_ok(&["start", "sleep", "--name", "clean", "--", "1000"]);
    let pid = d.app("clean")["pid"].as_u64().unwrap();
    assert_eq!(
        fds(pid),
        BTreeSet::from([0, 1, 2]),
        "the app got only stdio"
    );

    // an exec that fails after validation (a missing interpreter) is still an error
    let script = d.home().join("broken");
    std::fs::write(&script, "#!/nonexistent/interpreter\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = failed(
        &d.turbo(&["start", script.to_str().unwrap(), "--name", "broken"]),
        "a failing exec",
    );
    assert!(err.contains("No such file or directory"), "{err}");

    let _ = d.turbo(&["kill"]);
    let _ = wait_for_exit(&mut daemon, Duration::from_secs(10));
    let _ = daemon.kill();
    let _ = daemon.wait();
}
