//! # turbo-daemon
//!
//! The TurboProcess daemon as a library, so tests and the thin `main.rs` start it the same way.
//!
//! ## Architecture
//!
//! ```text
//!  kernel tracepoints ─► turbo-ebpf ─► ring buffer ─┐ events (eBPF, or /proc scans)
//!  pidfd of each child (reaping) ───────────────────┤
//!  timers, notify datagrams, file changes ──────────┼─► runtime ─► Supervisor::handle(input, now) ─► actions
//!  D-Bus calls ─► dbus (checks, authorises, ────────┤   (loop)        (pure: no I/O, no clock)          │
//!     validates specs off the loop) ─► Request      │                                                   ▼
//!  metrics scrapes ─► Request ──────────────────────┘   runtime::execute ─► spawner (plan) ─► os (every syscall)
//!                                                        runtime::view (DTOs) ─► replies, notices ─► dbus objects/signals
//! ```
//!
//! * [`supervisor`]: every lifecycle decision, sans-IO, unit-tested with a fake clock.
//! * [`events`]: eBPF or procfs observations as one `Event` stream; source selection.
//! * [`runtime`]: the single loop that owns the supervisor, split by responsibility (requests,
//!   execute, spawner, process table, crashes, persistence, usage, view).
//! * [`os`]: the daemon's system calls beyond plain file I/O (spawning, pidfds, signals, the
//!   `/proc` parser, cgroups, sockets, locks, users, credentials), on plain data; it imports no
//!   domain module. No other module calls `libc`.
//! * [`host`]: the private `dbus-daemon`, `sd_notify` to systemd, the upgrade's re-exec.
//! * [`spec`]: the validated app description (pure); [`config`]: `turbo.yml` and start options
//!   into specs, with typed errors; [`access`]: who a call acts for and what it may grant.
//! * [`dbus`] and [`metrics`]: thin adapters; [`logs`] and [`keeper`]: capturing app output;
//!   [`storage`]: the state file (its schema in `storage::schema`, pinned by a fixture).

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod access;
pub mod config;
pub mod dbus;
pub mod events;
pub mod host;
pub mod keeper;
pub mod logs;
pub mod metrics;
pub mod os;
pub mod plan;
pub mod runtime;
pub mod spec;
pub mod storage;
pub mod supervisor;
pub mod system_config;

/// `sd_notify`, at its old path until the log keeper imports it from [`host`].
pub use host::notify;

use std::{
    io,
    path::{Path, PathBuf},
};

use events::EbpfSetting;
use tokio::sync::mpsc;

/// How to run the daemon.
#[derive(Debug, Clone)]
pub struct Options {
    /// `TURBO_HOME`: state, logs, the bus socket.
    pub home: PathBuf,
    /// Event source selection.
    pub ebpf: EbpfSetting,
    /// Which bus to serve on.
    pub bus: BusMode,
    /// App log directory (default `<home>/logs`).
    pub log_dir: Option<PathBuf>,
    /// Members of this group may manage apps over the bus (besides root and the daemon's user).
    pub admin_group: String,
    /// Where the Prometheus exporter listens; `None` turns it off.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// TLS and basic auth of the exporter (`--metrics-web-config`), checked before the start.
    pub metrics_web: Option<std::sync::Arc<metrics::WebConfig>>,
    /// What scrapes show beyond the default set (`--metrics-app-histograms`).
    pub metrics_detail: metrics::Detail,
    /// Resource sampling and leak detection.
    pub monitor: runtime::MonitorSettings,
    /// The daemon's own turbo.yml ([`system_config`]): applied at start and on SIGHUP (with
    /// prune); `None`: no such file, and SIGHUP keeps its default action.
    pub config_file: Option<PathBuf>,
    /// After `turbo daemon upgrade`: the private bus the previous image left running
    /// (`host::bus::REEXEC_ENV`).
    pub reexec_bus: Option<String>,
}

/// Where the daemon serves its D-Bus API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusMode {
    /// User mode: a private `dbus-daemon` on `<home>/bus.sock` that only the owner can reach.
    Private,
    /// System mode: the system bus; callers are authorised per call.
    System,
    /// System mode on the bus at this address (a system-like bus, e.g. in tests).
    Address(String),
}

/// How long a start waits for `daemon.lock` when the daemon that wrote `daemon.pid` is gone.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Takes `<home>/daemon.lock`. A daemon killed with SIGKILL releases its lock only when every
/// copy of the lock's file description is closed, and a process it forked a moment before
/// (an app between `fork` and `execve`, which closes the copy) may still hold one; and the
/// killed daemon itself holds it until the kernel has closed its descriptors, which takes a
/// while with thousands of them. So when the daemon named in `daemon.pid` is gone or already
/// exiting, a held lock is retried for [`LOCK_GRACE`] instead of refusing at once. A living
/// owner is refused at once.
fn take_home_lock(home: &Path) -> io::Result<std::fs::File> {
    let path = home.join("daemon.lock");
    let deadline = std::time::Instant::now() + LOCK_GRACE;
    loop {
        match os::lock::lock_file(&path) {
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    && std::time::Instant::now() < deadline
                    && recorded_daemon_pid(home).is_none_or(|pid| !os::proc::pid_living(pid)) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            taken => return taken,
        }
    }
}

/// The pid in `<home>/daemon.pid`, written by the daemon that holds (or held) the lock.
fn recorded_daemon_pid(home: &Path) -> Option<u32> {
    std::fs::read_to_string(home.join("daemon.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another daemon owns this home.
    #[error(
        "another turbo-daemon is already running for {home} (pid {pid}); `turbo kill` stops it"
    )]
    AlreadyRunning {
        /// The home directory.
        home: String,
        /// Its pid, as written in `daemon.pid`.
        pid: String,
    },
    /// A file-system or process error, with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The bus could not be joined or the name not acquired.
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
    /// The event source could not be set up as required.
    #[error("{0}")]
    EventSource(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// Runs the daemon in user mode until a shutdown request or SIGTERM/SIGINT has stopped every
/// app. Must be called inside a tokio runtime (current-thread is enough).
///
/// # Errors
/// A [`DaemonError`] when start-up fails; the message says what to do.
pub async fn run(opts: Options) -> Result<(), DaemonError> {
    let home = &opts.home;
    // sd_notify: every call is a no-op unless systemd (or a test) passed NOTIFY_SOCKET
    notify::init_from_env();
    let heartbeat = notify::Heartbeat::default();
    // the runtime loop beats `heartbeat`; the watchdog pings systemd only while it does
    let beat_interval = notify::spawn_watchdog(&heartbeat).map(|w| w.beat_interval());
    let log_dir = opts.log_dir.clone().unwrap_or_else(|| home.join("logs"));
    // (a log directory in the home is as safe as the home, which `check_private_dir` checks)
    for dir in [home, &log_dir] {
        if dir == home || log_dir.parent() != Some(home.as_path()) {
            check_placement(dir).map_err(io_err("refusing to start"))?;
        }
    }
    create_private_dir(home)?;
    create_private_dir(&log_dir)?;
    // before anything is created in them (daemon.lock, daemon.pid, sockets): a directory
    // others can write to could hold planted files or symlinks
    for dir in [home, &log_dir] {
        storage::check_private_dir(dir).map_err(io_err("refusing to start"))?;
    }
    let lock = take_home_lock(home).map_err(|e| {
        if e.kind() == io::ErrorKind::WouldBlock {
            DaemonError::AlreadyRunning {
                home: home.display().to_string(),
                pid: recorded_daemon_pid(home).map_or_else(|| "unknown".into(), |p| p.to_string()),
            }
        } else {
            DaemonError::Io {
                what: format!("cannot lock {}", home.join("daemon.lock").display()),
                source: e,
            }
        }
    })?;
    std::fs::write(home.join("daemon.pid"), format!("{}\n", std::process::id()))
        .map_err(io_err("cannot write daemon.pid"))?;

    // descendants of apps that lose their parent (setsid'd daemons, double forks) come to the
    // daemon, not to PID 1: they stay findable, and their zombies are reaped here (the runtime
    // reaps unclaimed children on SIGCHLD). Kept across the re-exec of an upgrade.
    if let Err(e) = os::process::become_subreaper() {
        tracing::warn!("cannot become the subreaper of the apps' orphans: {e}");
    }

    // the keeper outlives this daemon and reads the apps' output across its death or upgrade;
    // a running one (from before a kill -9 or an upgrade) is reconnected to
    let log_keeper = match keeper::Keeper::start(home, &log_dir) {
        Ok(k) => {
            tracing::info!(pid = k.pid(), "log keeper connected");
            Some(k)
        }
        Err(e) => {
            tracing::error!(
                "cannot start the log keeper: {e}; the daemon reads app output itself, and a                  daemon crash will lose lines"
            );
            None
        }
    };

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let source = events::start(opts.ebpf, events::SourceOptions::default(), events_tx)
        .map_err(DaemonError::EventSource)?;
    tracing::info!(
        source = source.kind().as_str(),
        "event source: {}",
        source.reason()
    );
    notify::status(&format!(
        "starting: event source {} ({})",
        source.kind().as_str(),
        source.reason()
    ));

    let (bus, address, mode) = match &opts.bus {
        BusMode::Private => {
            let socket = home.join(turbo_api::BUS_SOCKET);
            let adopted = opts
                .reexec_bus
                .as_deref()
                .and_then(|v| host::bus::PrivateBus::adopt(v, &socket));
            let bus = match adopted {
                Some(bus) => {
                    tracing::info!("upgraded in place: kept the private bus");
                    bus
                }
                None => host::bus::start(home, &socket)
                    .map_err(io_err("cannot start the private bus"))?,
            };
            // clients get a plain path address: the guid dbus-daemon prints changes on every start
            (Some(bus), format!("unix:path={}", socket.display()), "user")
        }
        BusMode::System => (None, "system".to_owned(), "system"),
        BusMode::Address(a) => (None, a.clone(), "system"),
    };
    let builder = match &opts.bus {
        BusMode::System => zbus::connection::Builder::system()?,
        _ => zbus::connection::Builder::address(address.as_str())?,
    };

    let (requests_tx, requests_rx) = mpsc::unbounded_channel();
    // the exporter is optional: a port in use must not keep the apps from being supervised
    let exporter = match opts.metrics_listen {
        Some(addr) => match metrics::bind(addr).await {
            Ok(listener) => {
                let web = opts.metrics_web.clone();
                tracing::info!("{}", metrics::describe_listen(&addr, web.as_deref()));
                let tls = web.as_deref().is_some_and(|w| w.tls().is_some());
                tokio::spawn(metrics::serve(
                    listener,
                    requests_tx.clone(),
                    web,
                    opts.metrics_detail,
                ));
                metrics::Exporter::Serving { addr, tls }
            }
            Err(e) => {
                tracing::warn!(
                    "metrics: cannot listen on {addr}: {e}; the exporter is off \
                     (choose another address with --metrics-listen, or `off`)"
                );
                metrics::Exporter::BindFailed(format!("cannot listen on {addr}: {e}"))
            }
        },
        None => {
            tracing::info!("metrics: exporter off (--metrics-listen off)");
            metrics::Exporter::Off
        }
    };
    let (notices_tx, notices_rx) = mpsc::unbounded_channel();
    let policy = dbus::auth::Policy::new(&opts.admin_group);
    let validation = dbus::Validation {
        path_env: std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        home: home.clone(),
    };
    let config_file = opts
        .config_file
        .clone()
        .map(|path| (path, requests_tx.clone(), validation.path_env.clone()));
    let bus_watch_tx = requests_tx.clone();
    let state_version = runtime::StateVersion::default();
    let conn = builder
        .serve_at(
            turbo_api::MANAGER_PATH,
            dbus::ManagerIface::new(
                requests_tx,
                policy,
                validation,
                exporter.clone(),
                state_version.clone(),
            ),
        )?
        .serve_at(turbo_api::ROOT_PATH, zbus::fdo::ObjectManager)?
        .name(turbo_api::BUS_NAME)?
        .build()
        .await?;
    tokio::spawn(dbus::publish(conn.clone(), notices_rx));
    tokio::spawn(reconnect_when_deaf(conn.clone(), bus_watch_tx));
    os::alloc::trim_heap();
    tracing::info!(%address, pid = std::process::id(), "turbo-daemon ready");
    let ready_status = format!(
        "running: {mode} mode, event source {}, bus {address}",
        source.kind().as_str()
    );

    let mut rt = runtime::Runtime::new(
        runtime::Paths {
            home: home.clone(),
            log_dir,
        },
        runtime::DaemonFacts {
            bus_address: address,
            mode,
            ebpf_setting: opts.ebpf.as_str().into(),
            metrics: exporter,
        },
        source,
        events_rx,
        requests_rx,
        notices_tx,
    );
    if let Some(interval) = beat_interval {
        rt.beat_into(heartbeat, interval);
    }
    rt.monitor(opts.monitor);
    rt.count_changes_in(state_version);
    if let Some(k) = log_keeper {
        rt.keep_logs_with(k);
    }
    rt.restore().map_err(io_err(
        "cannot restore the saved state (running apps were not touched)",
    ))?;
    // applied once the loop runs, after the restored apps: the file adds and updates, and a
    // SIGHUP applies it again with prune
    if let Some((path, requests, path_env)) = config_file {
        tokio::spawn(system_config::serve(path, requests, path_env));
    }
    // the bus name is owned and the saved state loaded: calls are answered from here on
    notify::ready(&ready_status);
    let ending = rt.run().await.map_err(io_err("the main loop failed"))?;
    if ending == runtime::Ending::Upgrade {
        notify::reloading("upgrading: re-executing the daemon");
        // let the reply leave before the connection (and with it the bus name) goes
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        drop(conn);
        // a private bus that died (the reason for this re-exec, see `reconnect_when_deaf`) is
        // not handed over: the new image starts another
        let bus_env = bus.and_then(|mut b| b.is_running().then(|| b.keep_across_exec()));
        let e = host::upgrade::reexec(bus_env.as_deref());
        // still here: the exec failed; the apps run on, unsupervised until a daemon starts
        return Err(DaemonError::Io {
            what: "cannot re-execute the daemon for the upgrade".into(),
            source: e,
        });
    }
    notify::stopping();
    notify::status("stopping: every app has stopped, exiting");
    // let the reply to a Shutdown call leave before the bus goes away
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    drop(conn);
    if let Some(bus) = bus {
        drop(bus);
        // the socket would only make the next client wait for a refused connection
        let _ = std::fs::remove_file(home.join(turbo_api::BUS_SOCKET));
    }
    let _ = std::fs::remove_file(home.join("daemon.pid"));
    drop(lock);
    tracing::info!("turbo-daemon stopped");
    Ok(())
}

/// Never deaf: when the bus connection closes under a running daemon (its `dbus-daemon` was
/// killed, or the bus dropped it for a message it refused), the daemon re-executes itself in
/// place like `turbo daemon upgrade`: the state is saved first, the apps keep running and are
/// adopted, and the new image connects again (starting a new private bus in user mode). Should
/// that be refused, the daemon exits (its supervisor, or the next `turbo` command, starts one)
/// rather than stay alive with nobody able to reach it.
async fn reconnect_when_deaf(
    conn: zbus::Connection,
    requests: mpsc::UnboundedSender<runtime::Request>,
) {
    conn.closed().await;
    tracing::error!(
        "lost the bus connection: re-executing to connect again (apps keep running and are adopted)"
    );
    let answer = dbus::ask(&requests, runtime::Request::Upgrade).await;
    if let Err(e) = answer {
        tracing::error!(
            "cannot re-execute after losing the bus ({e:?}); exiting so that a new daemon takes over"
        );
        std::process::exit(75);
    }
}

/// Where `dir` is, checked before it is created or used (issue 15: a `TURBO_HOME` that was
/// another user's symlink, with `fs.protected_symlinks=0`, led the daemon's state and its apps'
/// output into that user's directory): `dir` itself, when a symlink, must be the daemon's user's
/// or root's (what it leads to is checked by `storage::check_private_dir`), and its parent must
/// not let another user replace it: owned by the daemon's user or root, and writable by nobody
/// else unless sticky (like `/tmp`, where only a file's owner may rename or remove it).
///
/// # Errors
/// One line naming the path, the owner or mode, and the fix.
fn check_placement(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let me = os::creds::effective_uid();
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} {why}; refusing to use it", dir.display()),
        ))
    };
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() && m.uid() != 0 && m.uid() != me => {
            return refuse(format!(
                "is a symbolic link owned by uid {}, not by the daemon's uid {me} or root, so \
                 that user decides where the daemon writes (fix: remove the link, or point \
                 TURBO_HOME at a directory of your own)",
                m.uid()
            ));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    let Ok(p) = std::fs::metadata(parent) else {
        return Ok(()); // created with `dir`, by the daemon itself
    };
    // (a sticky directory protects entries from other users, not from its own owner)
    if p.uid() != 0 && p.uid() != me {
        return refuse(format!(
            "is in {}, which uid {} owns and so may replace it (fix: use a directory in one \
             of your own or root's)",
            parent.display(),
            p.uid()
        ));
    }
    let sticky = p.mode() & 0o1000 != 0;
    if p.mode() & 0o022 != 0 && !sticky {
        return refuse(format!(
            "is in {}, which others may write to (mode {:04o}), so they may replace it (fix: \
             chmod go-w {} or use another directory)",
            parent.display(),
            p.mode() & 0o7777,
            parent.display()
        ));
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(format!("cannot create {}", dir.display())))
}

/// The user-mode home: `TURBO_HOME`, else `~/.turbo`.
#[must_use]
pub fn default_home() -> PathBuf {
    std::env::var_os("TURBO_HOME").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".turbo"),
        PathBuf::from,
    )
}
