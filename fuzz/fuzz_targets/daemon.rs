//! Hostile input to a running `turbo-daemon`, with the watchdog of issue 15: each input is sent
//! over D-Bus as a `StartConfig` (a `turbo.yml` text) or a `StartApp` call (a `(sasa{sv})` body
//! decoded as in `start_options`), and then `Ping` must answer within [`PING_DEADLINE`], or the
//! target panics naming the call, and libFuzzer saves the input. A reply with an error is fine:
//! refusing is the daemon's job; going deaf or dying is the bug.
//!
//! The daemon is the real binary (`TURBO_FUZZ_DAEMON`, set by `cargo xtask fuzz`, else the
//! workspace's `target/debug/turbo-daemon`), started on the first input in user mode on a fresh
//! home, with its private bus. Fuzzed configs start real processes, so when the fuzzer is root
//! the daemon runs as uid/gid 65534 and nothing fuzzed runs as root. It gets SIGTERM when the
//! fuzzer exits however it exits (parent-death signal), which stops its apps and its bus; the
//! apps the inputs add are deleted every [`DELETE_EVERY`] inputs so they do not pile up.
//!
//! Coverage comes from this process only, not from the daemon: libFuzzer's guidance here is
//! weak, and the seeds in `fuzz/corpus/daemon/` carry the hostile shapes.
#![no_main]

use std::{
    collections::HashMap,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use libfuzzer_sys::fuzz_target;
use turbo_api::ManagerProxy;
use zbus::zvariant::{
    Endian, OwnedValue,
    serialized::{Context, Data},
};

/// How long `Ping` may take after an input before the daemon counts as deaf.
const PING_DEADLINE: Duration = Duration::from_secs(5);
/// How long a call may take; a slow refusal is not a failure, a deaf daemon after it is.
const CALL_DEADLINE: Duration = Duration::from_secs(5);
/// Every this many inputs, `DeleteApp("all")`.
const DELETE_EVERY: u64 = 32;
/// The daemon's home is `$TMPDIR/<this><fuzzer pid>`.
const HOME_PREFIX: &str = "turbo-fuzz-daemon-";
/// The unprivileged user the daemon runs as when the fuzzer is root (`nobody`).
const NOBODY: u32 = 65534;

struct Daemon {
    rt: tokio::runtime::Runtime,
    bus: Mutex<Bus>,
    child: Mutex<Child>,
    home: PathBuf,
    address: String,
    root: bool,
}

/// The fuzzer's connection to the daemon's bus.
#[derive(Clone)]
struct Bus {
    conn: zbus::Connection,
    proxy: ManagerProxy<'static>,
}

fuzz_target!(|data: &[u8]| {
    static DAEMON: OnceLock<Daemon> = OnceLock::new();
    static INPUTS: AtomicU64 = AtomicU64::new(0);
    let d = DAEMON.get_or_init(Daemon::start);
    let bus = d.bus.lock().expect("bus lock").clone();
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let kind = if first & 1 == 0 {
        let yml = String::from_utf8_lossy(body);
        d.call(bus.proxy.start_config(&yml, "fuzz.yml", "/"));
        "StartConfig"
    } else {
        let endian = if first & 2 == 0 {
            Endian::Little
        } else {
            Endian::Big
        };
        let bytes = Data::new(body, Context::new_dbus(endian, 0));
        let Ok((call, _)) =
            bytes.deserialize::<(String, Vec<String>, HashMap<String, OwnedValue>)>()
        else {
            return;
        };
        d.call(bus.conn.call_method(
            Some("org.turboprocess.Turbo1"),
            "/org/turboprocess/Turbo1/Manager",
            Some("org.turboprocess.Turbo1.Manager"),
            "StartApp",
            &call,
        ));
        "StartApp"
    };
    d.answers(kind);
    if INPUTS.fetch_add(1, Ordering::Relaxed) % DELETE_EVERY == DELETE_EVERY - 1 {
        // `answers` may have replaced the connection
        let bus = d.bus.lock().expect("bus lock").clone();
        d.call(bus.proxy.delete_app("all"));
        d.answers("DeleteApp(all)");
    }
});

impl Daemon {
    fn start() -> Self {
        let bin = std::env::var_os("TURBO_FUZZ_DAEMON").map_or_else(
            || {
                PathBuf::from(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../target/debug/turbo-daemon"
                ))
            },
            PathBuf::from,
        );
        assert!(
            bin.is_file(),
            "no turbo-daemon at {}: build it (`cargo build -p turbo-daemon`) or set TURBO_FUZZ_DAEMON",
            bin.display()
        );
        remove_stale_homes();
        let home = std::env::temp_dir().join(format!("{HOME_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).expect("create the daemon's home");
        let root = turbo_daemon::os::process::euid() == 0;
        if root {
            std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY))
                .expect("give the daemon's home to uid 65534");
        }
        let log = std::fs::File::create(home.join("daemon.log")).expect("daemon.log");
        let mut cmd = Command::new(&bin);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &home)
            .env("TURBO_HOME", &home)
            .env("TURBO_EBPF", "off")
            .env("TURBO_METRICS_LISTEN", "off")
            .current_dir(&home)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup daemon.log"))
            .stderr(log);
        if root {
            // std drops the supplementary groups when root sets a uid
            cmd.uid(NOBODY).gid(NOBODY);
        }
        // after the uid change (which clears it), so the fuzzer's exit, even by a crash, stops
        // the daemon, its apps and its bus
        // SAFETY: `die_with_parent` is one prctl system call, async-signal-safe.
        unsafe { cmd.pre_exec(turbo_daemon::os::process::die_with_parent) };
        let mut child = cmd.spawn().expect("spawn turbo-daemon");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let address = format!("unix:path={}", home.join("bus.sock").display());
        let started = Instant::now();
        let bus = loop {
            match connect(&rt, &address, root) {
                Ok(bus) => break bus,
                Err(e) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!(
                            "turbo-daemon exited at start ({status}):\n{}",
                            std::fs::read_to_string(home.join("daemon.log")).unwrap_or_default()
                        );
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(8),
                        "turbo-daemon did not answer within 8 s ({e}):\n{}",
                        std::fs::read_to_string(home.join("daemon.log")).unwrap_or_default()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        eprintln!(
            "turbo-daemon {} answers on {address} as uid {}",
            bin.display(),
            if root {
                NOBODY
            } else {
                turbo_daemon::os::process::euid()
            }
        );
        Self {
            rt,
            bus: Mutex::new(bus),
            child: Mutex::new(child),
            home,
            address,
            root,
        }
    }

    /// Runs one call to completion or [`CALL_DEADLINE`], whatever it answers.
    fn call<T>(&self, call: impl Future<Output = T>) {
        let _ = self
            .rt
            .block_on(async { tokio::time::timeout(CALL_DEADLINE, call).await });
    }

    /// Panics unless the daemon is alive and answers `Ping` in time.
    /// A hostile call may get the *fuzzer* dropped by the bus (a message the bus refuses): then a
    /// new connection asks, since only the daemon's deafness is a finding.
    fn answers(&self, after: &str) {
        let mut bus = self.bus.lock().expect("bus lock");
        let ping = |proxy: &ManagerProxy<'static>| {
            self.rt
                .block_on(async { tokio::time::timeout(PING_DEADLINE, proxy.ping()).await })
                .map_err(|_| format!("did not answer Ping within {PING_DEADLINE:?}"))
                .and_then(|r| r.map_err(|e| format!("failed Ping: {e}")))
        };
        let mut answer = ping(&bus.proxy);
        if answer.is_err() && !bus.conn.is_closed() {
            // the same connection is still open: the daemon itself did not answer
        } else if answer.is_err() {
            answer = connect(&self.rt, &self.address, self.root)
                .map_err(|e| format!("refused a new connection: {e}"))
                .map(|fresh| *bus = fresh)
                .and_then(|()| ping(&bus.proxy));
        }
        let exited = self
            .child
            .lock()
            .ok()
            .and_then(|mut c| c.try_wait().ok().flatten());
        let why = match (answer, exited) {
            (_, Some(status)) => format!("exited ({status})"),
            (Ok(_), None) => return,
            (Err(e), None) => e,
        };
        let log = std::fs::read_to_string(self.home.join("daemon.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        panic!(
            "the daemon {why} after a hostile {after}; its log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

/// Runs `f` (connecting to the daemon's bus) with this thread's effective uid 65534 when `root`:
/// the private bus admits only the daemon's user, and the bus takes the caller's uid from the
/// socket at connect time. Only this thread changes (a raw `setresuid`, not libc's, which would
/// change every thread), and the current-thread runtime connects on it.
fn as_user<T>(root: bool, f: impl FnOnce() -> T) -> T {
    use rustix::thread::set_thread_res_uid;
    if !root {
        return f();
    }
    set_thread_res_uid(None, rustix::process::Uid::from_raw(NOBODY), None)
        .expect("take uid 65534 on this thread");
    let out = f();
    set_thread_res_uid(None, rustix::process::Uid::ROOT, None).expect("back to root");
    out
}

/// Connects to the daemon's bus (as its user) and checks that it answers `Ping`.
fn connect(rt: &tokio::runtime::Runtime, address: &str, root: bool) -> zbus::Result<Bus> {
    as_user(root, || {
        rt.block_on(async {
            let conn = zbus::connection::Builder::address(address)?.build().await?;
            let proxy = ManagerProxy::new(&conn).await?;
            tokio::time::timeout(PING_DEADLINE, proxy.ping())
                .await
                .map_err(|_| zbus::Error::Failure("no answer to Ping".into()))??;
            Ok(Bus { conn, proxy })
        })
    })
}

/// Removes the homes of earlier runs whose fuzzer is gone (the daemon outlives this process by
/// its shutdown, so a run cannot remove its own).
fn remove_stale_homes() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(HOME_PREFIX)) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
