//! Test harness for the end-to-end suite: starts the real `turbo-daemon` on a private
//! `TURBO_HOME`, runs the real `turbo` CLI against it, and talks D-Bus to it with the
//! `turbo-api` proxy. Every wait is bounded; every daemon and app is stopped on drop.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// The kinds of death the attribution workload (`src/bin/deathbed.rs`) dies, each of which the
/// attribution test (`e2e/attribution.rs`) wants seen.
pub const DEATH_KINDS: [&str; 9] = [
    "exit",
    "instant",
    "thread_exit",
    "exec_chain",
    "self_signal",
    "thread_signal",
    "external",
    "caught",
    "fault",
];

/// Directory holding the built binaries (`target/debug`), or `TURBO_BIN_DIR`.
///
/// # Panics
/// When the binaries are missing, with the command that builds them.
#[must_use]
pub fn bin_dir() -> PathBuf {
    let dir = std::env::var_os("TURBO_BIN_DIR").map_or_else(
        || {
            // target/debug/deps/e2e-<hash> -> target/debug
            let exe = std::env::current_exe().expect("current_exe");
            exe.parent()
                .and_then(Path::parent)
                .expect("target dir")
                .to_path_buf()
        },
        PathBuf::from,
    );
    for bin in ["turbo", "turbo-daemon"] {
        assert!(
            dir.join(bin).is_file(),
            "{} is missing: run `cargo build --bins` first (`cargo xtask test` does)",
            dir.join(bin).display()
        );
    }
    dir
}

/// Whether the tests run as root (eBPF tests need it).
#[must_use]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Polls `f` every 50 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// xorshift64*: enough randomness for timings, no dependency.
pub struct Rng(u64);

impl Rng {
    /// Seeded from the environment variable `var` when it holds a number (to replay a run),
    /// else from the clock; the seed is printed either way.
    #[must_use]
    pub fn seeded(var: &str) -> Self {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos());
                u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or(1) | 1
            });
        eprintln!("random timings: {var}={seed} replays them");
        Self(seed)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Whether a process exists (and is not a zombie).
#[must_use]
pub fn pid_alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// The pid of the log keeper of `home`, from /proc.
#[must_use]
pub fn keeper_pid(home: &Path) -> Option<u64> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<u64>().ok())
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("--log-keeper") && c.contains(home.to_str().unwrap_or("\0"))
            })
        })
}

/// A daemon on a private home, stopped (and its apps with it) on drop.
pub struct TestDaemon {
    /// The temporary `TURBO_HOME`.
    pub home: tempfile::TempDir,
    daemon: Option<Child>,
    bins: PathBuf,
    ebpf: String,
    /// Extra environment of every daemon this harness starts (e.g. `NOTIFY_SOCKET`).
    env: Vec<(String, String)>,
    /// A command the daemon runs under (`prlimit`, `setpriv`, ...), its binary appended.
    wrapper: Vec<String>,
}

impl TestDaemon {
    /// Starts `turbo-daemon` with `TURBO_EBPF=ebpf` and waits until it answers on its bus.
    #[must_use]
    pub fn start(ebpf: &str) -> Self {
        Self::start_under(ebpf, &[])
    }

    /// [`Self::start`] with the daemon run under `wrapper` (e.g. `["prlimit", "--nofile=64"]`;
    /// the daemon's path is appended), also on restarts.
    #[must_use]
    pub fn start_under(ebpf: &str, wrapper: &[&str]) -> Self {
        remember_panics();
        let home = tempfile::Builder::new()
            .prefix("turbo-e2e-")
            .tempdir()
            .expect("tempdir");
        let mut d = Self {
            home,
            daemon: None,
            bins: bin_dir(),
            ebpf: ebpf.to_owned(),
            env: Vec::new(),
            wrapper: wrapper.iter().map(|&w| w.to_owned()).collect(),
        };
        d.launch();
        d
    }

    /// Starts `turbo-daemon` with `TURBO_EBPF=ebpf` and the extra environment `env`, and returns
    /// at once, without waiting for it to answer (for tests of its start-up; then
    /// [`Self::wait_answering`]). Daemons started later by [`Self::restart_daemon`] get `env` too.
    #[must_use]
    pub fn spawn_with_env(ebpf: &str, env: &[(&str, &str)]) -> Self {
        let home = tempfile::Builder::new()
            .prefix("turbo-e2e-")
            .tempdir()
            .expect("tempdir");
        let mut d = Self {
            home,
            daemon: None,
            bins: bin_dir(),
            ebpf: ebpf.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            wrapper: Vec::new(),
        };
        d.spawn_daemon();
        d
    }

    /// The pid of the daemon process this harness started, if it still has one.
    #[must_use]
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// Starts a daemon process on this home and waits until it answers.
    fn launch(&mut self) {
        self.spawn_daemon();
        self.wait_answering();
    }

    /// Starts a daemon process on this home.
    fn spawn_daemon(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home().join("daemon.log"))
            .expect("daemon.log");
        let bin = self.bins.join("turbo-daemon");
        let mut cmd = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let daemon = cmd
            .env("TURBO_HOME", self.home())
            .env("TURBO_EBPF", &self.ebpf)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn turbo-daemon");
        self.daemon = Some(daemon);
    }

    /// Waits until the daemon answers `turbo ping`; panics with its log if it exits first.
    pub fn wait_answering(&mut self) {
        wait_for("the daemon to answer ping", Duration::from_secs(15), || {
            if let Some(status) = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "turbo-daemon exited early ({status}):\n{}",
                    self.daemon_log()
                );
            }
            // an explicit bus address: a `turbo` that finds no daemon yet must not start one
            Command::new(self.bins.join("turbo"))
                .arg("ping")
                .env("TURBO_BUS_ADDRESS", self.address())
                .stdin(Stdio::null())
                .output()
                .expect("run turbo ping")
                .status
                .success()
                .then_some(())
        });
    }

    /// Waits until the (debounced) state file names `pid`: what a daemon killed from now on
    /// leaves for the next one to adopt.
    pub fn wait_saved_pid(&self, pid: u64) {
        let needle = format!("\"pid\": {pid}");
        wait_for(
            "the state file to name the pid",
            Duration::from_secs(5),
            || {
                std::fs::read_to_string(self.home().join("state.json"))
                    .ok()
                    .filter(|s| s.contains(&needle))
            },
        );
    }

    /// SIGKILLs the daemon (its apps live on) and waits until it is gone.
    pub fn kill9_daemon(&mut self) {
        let mut child = self
            .daemon
            .take()
            .expect("a daemon started by this harness");
        child.kill().expect("kill -9 the daemon");
        child.wait().expect("reap the daemon");
        // its private bus follows it (parent-death signal): wait until the socket refuses
        wait_for("the old bus to go away", Duration::from_secs(5), || {
            std::os::unix::net::UnixStream::connect(self.home().join("bus.sock"))
                .is_err()
                .then_some(())
        });
    }

    /// Takes the daemon process (or its wrapper) out of the harness, which then starts the next
    /// one without waiting for it: for a wrapper that outlives its daemon.
    pub fn detach_daemon(&mut self) -> Option<Child> {
        self.daemon.take()
    }

    /// Starts a new daemon on the same home without waiting for it to answer (to kill it at a
    /// random moment of its start-up); [`Self::wait_answering`] waits.
    pub fn respawn_daemon(&mut self) {
        if let Some(mut old) = self.daemon.take() {
            let _ = old.wait();
        }
        self.spawn_daemon();
    }

    /// Starts a new daemon on the same home (after [`Self::kill9_daemon`] or `turbo kill`).
    pub fn restart_daemon(&mut self) {
        if let Some(mut old) = self.daemon.take() {
            // `turbo kill` stopped it: collect its exit status
            let _ = old.wait();
        }
        self.launch();
    }

    /// Adopts a daemon the CLI started by itself in `home` (for auto-start tests).
    #[must_use]
    pub fn adopt(home: tempfile::TempDir) -> Self {
        Self {
            home,
            daemon: None,
            bins: bin_dir(),
            ebpf: "auto".to_owned(),
            env: Vec::new(),
            wrapper: Vec::new(),
        }
    }

    /// `TURBO_HOME`.
    #[must_use]
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The bus address.
    #[must_use]
    pub fn address(&self) -> String {
        format!("unix:path={}", self.home().join("bus.sock").display())
    }

    /// What the daemon logged so far.
    #[must_use]
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.home().join("daemon.log")).unwrap_or_default()
    }

    /// Runs the real `turbo` CLI against this daemon.
    #[must_use]
    pub fn turbo(&self, args: &[&str]) -> Output {
        self.turbo_in(args, self.home())
    }

    /// Runs `turbo` with `cwd` as working directory.
    #[must_use]
    pub fn turbo_in(&self, args: &[&str], cwd: &Path) -> Output {
        Command::new(self.bins.join("turbo"))
            .args(args)
            .current_dir(cwd)
            .env("TURBO_HOME", self.home())
            .env_remove("TURBO_BUS_ADDRESS")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run turbo")
    }

    /// Runs `turbo` and returns stdout, panicking with stderr on failure.
    pub fn turbo_ok(&self, args: &[&str]) -> String {
        let out = self.turbo(args);
        assert!(
            out.status.success(),
            "turbo {args:?} failed ({}): {}\n--- daemon log ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.daemon_log()
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// `turbo status --json`.
    #[must_use]
    pub fn status(&self) -> Vec<Value> {
        let text = self.turbo_ok(&["status", "--json"]);
        match serde_json::from_str(&text) {
            Ok(Value::Array(apps)) => apps,
            other => panic!("status --json is not an array: {other:?}\n{text}"),
        }
    }

    /// `turbo status --json` from `clients` processes started at once, each list parsed.
    ///
    /// # Panics
    /// If a client fails or prints something else than an array.
    #[must_use]
    pub fn status_from_many(&self, clients: usize) -> Vec<Vec<Value>> {
        let runs: Vec<_> = (0..clients)
            .map(|_| {
                let cli = self.bins.join("turbo");
                let home = self.home().to_path_buf();
                std::thread::spawn(move || {
                    Command::new(cli)
                        .args(["status", "--json"])
                        .env("TURBO_HOME", home)
                        .env_remove("TURBO_BUS_ADDRESS")
                        .env("NO_COLOR", "1")
                        .output()
                        .expect("run turbo status")
                })
            })
            .collect();
        runs.into_iter()
            .map(|run| {
                let out = run.join().expect("client thread");
                assert!(out.status.success(), "{out:?}");
                let text = String::from_utf8_lossy(&out.stdout);
                match serde_json::from_str(&text) {
                    Ok(Value::Array(apps)) => apps,
                    other => panic!("status --json is not an array: {other:?}\n{text}"),
                }
            })
            .collect()
    }

    /// The status object of app `name`.
    ///
    /// # Panics
    /// If there is no such app.
    #[must_use]
    pub fn app(&self, name: &str) -> Value {
        self.status()
            .into_iter()
            .find(|a| a["name"] == name)
            .unwrap_or_else(|| panic!("no app {name} in status"))
    }

    /// Waits until `pred` holds for app `name`'s status and returns it.
    pub fn wait_app(&self, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for(what, Duration::from_secs(10), || {
            let app = self.app(name);
            pred(&app).then_some(app)
        })
    }

    /// Sends SIGKILL to app `name`'s process and waits until the daemon has restarted it with
    /// another pid; returns the old pid and the app's status then.
    pub fn kill9_and_wait_restart(&self, name: &str) -> (u64, Value) {
        let pid = self.wait_app(name, "the app to run", |a| a["state"] == "online")["pid"]
            .as_u64()
            .expect("an online app has a pid");
        // SAFETY: plain kill(2).
        let rc = unsafe { libc::kill(i32::try_from(pid).expect("pid fits"), libc::SIGKILL) };
        assert_eq!(rc, 0, "kill -9 {pid}");
        let app = self.wait_app(name, "a restart with a new pid after kill -9", |a| {
            a["state"] == "online" && a["pid"].as_u64().is_some_and(|p| p != pid)
        });
        (pid, app)
    }

    /// A D-Bus connection to the daemon's private bus.
    ///
    /// # Panics
    /// If the bus cannot be reached.
    pub async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address().as_str())
            .expect("address")
            .build()
            .await
            .expect("connect to the private bus")
    }

    /// Writes `turbo.yml` content into a fresh directory of the home and returns its path.
    #[must_use]
    pub fn config(&self, dir: &str, yml: &str) -> PathBuf {
        let dir = self.home().join(dir);
        std::fs::create_dir_all(&dir).expect("config dir");
        let path = dir.join("turbo.yml");
        std::fs::write(&path, yml).expect("write turbo.yml");
        path
    }

    /// `turbo <args> --json`, parsed.
    #[must_use]
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        json(&self.turbo_ok(&all))
    }

    /// Writes an executable script into the home and returns its path.
    #[must_use]
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.home().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        // the graceful path first: it stops the apps; then make sure nothing is left
        let _ = self.turbo(&["kill"]);
        if let Some(mut child) = self.daemon.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- daemon log ({}) ---\n{}",
                self.home().display(),
                self.daemon_log()
            );
            // the log is long and CI shows its tail: say again why the test failed
            if let Some(why) = LAST_PANIC.with(|p| p.borrow_mut().take()) {
                eprintln!("--- the test failed (repeated after the log) ---\n{why}");
            }
        }
    }
}

thread_local! {
    /// The message of the panic this test thread is unwinding from, for [`TestDaemon`]'s drop.
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs (once per test binary) a panic hook that keeps each thread's panic message in
/// [`LAST_PANIC`] and then runs the default hook.
fn remember_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let message = info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| {
                    info.payload()
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                })
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("panicked{at}:\n{message}")));
            default(info);
        }));
    });
}

/// Parses a JSON document printed by the CLI.
///
/// # Panics
/// If it is not JSON.
#[must_use]
pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The one line the CLI printed on stderr, checked to be a single `error: ...` line.
///
/// # Panics
/// If the command succeeded or printed more than one line.
#[must_use]
pub fn one_line_error(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
    assert_eq!(
        err.lines().count(),
        1,
        "expected one line on stderr, got:\n{err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// A `dbus-daemon` configured like the system bus, with the shipped
/// `deploy/org.turboprocess.Turbo1.conf` included: anyone may connect, only root may own the
/// daemon's name. Its directory is world-readable so other users (setpriv) reach the socket and
/// whatever a test copies there.
pub struct SystemBus {
    /// The bus directory (socket, config, and room for the test's files).
    pub dir: tempfile::TempDir,
    child: Child,
}

impl SystemBus {
    /// Starts the bus and waits until its socket accepts connections.
    ///
    /// # Panics
    /// When the shipped policy is missing or `dbus-daemon` cannot start.
    #[must_use]
    pub fn start(prefix: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the bus directory");
        let policy =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/org.turboprocess.Turbo1.conf");
        assert!(
            policy.is_file(),
            "the shipped bus policy {} is missing",
            policy.display()
        );
        let conf = dir.path().join("system.conf");
        let sock = dir.path().join("system_bus_socket");
        std::fs::write(
            &conf,
            system_bus_config(&sock, &format!("<include>{}</include>", policy.display())),
        )
        .expect("write the bus config");
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile"])
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (cargo xtask setup installs it)");
        wait_for("the system-like bus socket", Duration::from_secs(5), || {
            std::os::unix::net::UnixStream::connect(&sock).ok()
        });
        Self { dir, child }
    }

    /// Makes the `turbo` CLI runnable by other users from the bus directory (the build tree may
    /// be under a private home) and returns its path.
    #[must_use]
    pub fn cli(&self) -> PathBuf {
        runnable_by_anyone(&bin_dir().join("turbo"), self.dir.path())
    }

    /// Its D-Bus address.
    #[must_use]
    pub fn address(&self) -> String {
        format!(
            "unix:path={}",
            self.dir.path().join("system_bus_socket").display()
        )
    }
}

/// Puts the executable `bin` into `dir` (which other users can enter) under the same name, so
/// tests can run it as another user even when the build tree is under a private home; returns
/// its path there.
///
/// A hard link when possible: a copy is written through a file descriptor that a test thread
/// forking at the same moment can inherit, and executing a file that some process still has
/// open for writing fails with "Text file busy".
///
/// # Panics
/// When neither a link nor a copy can be made.
#[must_use]
pub fn runnable_by_anyone(bin: &Path, dir: &Path) -> PathBuf {
    let name = bin.file_name().expect("a file name");
    let runnable = dir.join(name);
    if std::fs::hard_link(bin, &runnable).is_err() {
        std::fs::copy(bin, &runnable).expect("copy the executable");
        // another thread's fork may still hold the copy's write descriptor until its exec
        wait_for(
            "the copied executable to be runnable",
            Duration::from_secs(5),
            || {
                let err = Command::new(&runnable)
                    .arg("--version")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .err();
                (err.and_then(|e| e.raw_os_error()) != Some(libc::ETXTBSY)).then_some(())
            },
        );
    }
    runnable
}

/// The configuration of a `dbus-daemon` that behaves like the system bus (anyone may connect
/// and call the bus itself; owning names and calling services is denied unless a policy
/// allows it), listening on `socket`, with the service policies that `policies` pulls in (an
/// `<include>` or `<includedir>` element).
#[must_use]
pub fn system_bus_config(socket: &Path, policies: &str) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
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
  {policies}
</busconfig>
"#,
        socket = socket.display()
    )
}

impl Drop for SystemBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
