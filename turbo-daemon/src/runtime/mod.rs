//! The runtime: the one loop that owns the [`Supervisor`] and carries out its actions.
//!
//! Inputs arrive on channels (D-Bus requests, process events from the active source, reaped
//! exits, timers, termination signals); each becomes a supervisor [`Input`]; the returned
//! [`Action`]s are executed here through [`sys`]. Replies and notifications go back out on
//! channels, so the D-Bus adapter never touches supervisor state. The runtime also keeps what is
//! not a decision: log writers, crash records (see [`crashes`]) and the state file. This module
//! must not make lifecycle decisions: if it needs an `if` about an app's state, that belongs in
//! the supervisor.
//!
//! Resource figures are read on demand: `status`, `describe` and each metrics scrape
//! ([`Op::Metrics`]) read the app's whole process tree (the main process, the descendants the
//! event source reported, and their children in `/proc`) when asked. The one periodic reader
//! is the sampler ([`MonitorSettings::sample_interval_for`]). With the procfs fallback it reads
//! every running app's tree (`stat` and `children` per process) every 5 s, feeding the CPU
//! window and the leak detector ([`crate::supervisor::leak`]). With eBPF it only feeds the leak
//! detector, so it wakes once per `leak window / 48` (75 s by default, the slowest schedule
//! that still reaches a verdict after a quarter of the window) and reads one `statm` per app
//! (the tree only for apps with descendants): an idle daemon's cost per minute is a few µs per
//! app. Never `smaps` (PSS), which only `describe` and scrapes read (see docs/metrics.md).

pub mod bus;
pub mod crashes;
pub mod listen;
mod output;
pub mod probe;
pub mod sys;
pub mod watch;

use std::{
    cell::RefCell,
    collections::{HashMap, VecDeque},
    os::fd::OwnedFd,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, oneshot},
};
use turbo_api::{AppConfigInfo, AppStatus, CrashRecord, DaemonInfo, ExitInfo, Health};

use crate::{
    config,
    events::{Event, EventSource, Sender, SourceKind, WaitStatus},
    logs,
    storage::{self, SavedApp, SavedCrash, SavedProcess, SavedState, StateFile},
    supervisor::{
        Action, App, AppId, AppSpec, Command, CommandError, Desired, Exit, Input, Notification,
        Reply, Restored, State, Supervisor, Target, Ticket,
        leak::{LeakPolicy, LeakVerdict},
    },
};

/// What a D-Bus caller asked for.
#[derive(Debug)]
pub enum Op {
    /// Daemon description.
    Info,
    /// Everything a metrics scrape reports, measured now.
    Metrics,
    /// All apps.
    List,
    /// `StartApp`.
    Start {
        /// App name.
        name: String,
        /// Command line.
        argv: Vec<String>,
        /// Options (`a{sv}`).
        options: HashMap<String, zbus::zvariant::OwnedValue>,
        /// Who asked: the app is validated with the caller's powers.
        caller: config::Caller,
    },
    /// `StartConfig`.
    StartConfig {
        /// Document.
        content: String,
        /// File name for messages.
        origin: String,
        /// Directory relative paths resolve against.
        base_dir: String,
        /// Who asked: the apps are validated with the caller's powers.
        caller: config::Caller,
    },
    /// `StopApp`.
    Stop(String),
    /// `RestartApp`.
    Restart(String),
    /// `DeleteApp`.
    Delete(String),
    /// `ResetApp`.
    Reset(String),
    /// `ScaleApp`: name and instance count.
    Scale(String, u32),
    /// `ReloadApp`.
    Reload(String),
    /// `WaitReady`: answer once the apps are ready (or fail).
    WaitReady {
        /// Name, id or `all`.
        target: String,
        /// How long to wait.
        timeout: Duration,
    },
    /// `DescribeApp`.
    Describe(String),
    /// `GetCrashes`.
    Crashes(String),
    /// `FlushLogs`.
    Flush(String),
    /// `Save`.
    Save,
    /// `Resurrect`, for this caller: a non-root caller may only bring back its own apps.
    Resurrect(config::Caller),
    /// `DescribeEnv`: the environment values of one app (authorised for root only).
    DescribeEnv(String),
    /// Stop everything and exit.
    Shutdown,
    /// Save the state and end the loop for a re-exec; apps keep running.
    Upgrade,
}

/// Why [`Runtime::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every app stopped; the daemon exits.
    Shutdown,
    /// The state is saved and the apps run on: the daemon re-executes itself.
    Upgrade,
}

/// A successful answer.
#[derive(Debug)]
pub enum Response {
    /// For `Info`.
    Info(Box<DaemonInfo>),
    /// For `Metrics`.
    Metrics(Box<MetricsSnapshot>),
    /// App snapshots.
    Apps(Vec<AppStatus>),
    /// Names (deleted, flushed).
    Names(Vec<String>),
    /// For `DescribeApp`.
    Describe(Box<(AppStatus, AppConfigInfo, Vec<CrashRecord>)>),
    /// For `GetCrashes`.
    Crashes(Box<(turbo_api::CrashStats, Vec<CrashRecord>)>),
    /// A path (the dump file).
    Path(String),
    /// For `DescribeEnv`: `(name, value)` pairs.
    Env(Vec<(String, String)>),
    /// Nothing to say.
    Done,
}

/// A request with its reply channel.
#[derive(Debug)]
pub struct Request {
    /// What.
    pub op: Op,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<Response, turbo_api::Error>>,
}

/// A change observers (the D-Bus adapter) should reflect.
#[derive(Debug, Clone)]
pub enum Notice {
    /// A new app (create its object).
    Added(AppStatus),
    /// An app's state changed.
    Changed(AppStatus),
    /// An app crashed; the record is complete.
    Crashed(String, CrashRecord),
    /// An app's memory crossed its warning level: name, resident bytes, `max_memory`.
    MemoryWarning(String, u64, u64),
    /// An app is gone: its name, instance number and id.
    Removed(String, u32, AppId),
}

/// Where things live.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `TURBO_HOME`.
    pub home: PathBuf,
    /// App log files.
    pub log_dir: PathBuf,
}

impl Paths {
    fn state_file(&self) -> PathBuf {
        self.home.join("state.json")
    }

    fn dump_file(&self) -> PathBuf {
        self.home.join("dump.json")
    }
}

/// Static facts for `Info`.
#[derive(Debug, Clone)]
pub struct DaemonFacts {
    /// Address clients use.
    pub bus_address: String,
    /// `user` or `system`.
    pub mode: &'static str,
    /// `auto`, `require` or `off`.
    pub ebpf_setting: String,
}

/// Settings of the resource monitor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MonitorSettings {
    /// CPU percent is the average over this window (`--cpu-window`).
    pub cpu_window: Duration,
    /// Interval of the sampler (`--sample-interval`); `None`: [`Self::FALLBACK_SAMPLE`] with
    /// the procfs source, the leak window / [`Self::LEAK_SAMPLES_PER_WINDOW`] with eBPF (whose
    /// memory limits need no sampling: the sampler only feeds the leak detector then).
    pub sample_interval: Option<Duration>,
    /// How leaks are judged (`--leak-window`).
    pub leak: LeakPolicy,
}

impl MonitorSettings {
    /// The sampler interval in fallback (procfs) mode by default.
    pub const FALLBACK_SAMPLE: Duration = Duration::from_secs(5);
    /// With eBPF, the sampler takes this many leak samples per leak window by default: the
    /// detector wants [`crate::supervisor::leak::MIN_POINTS`] (12) samples within a quarter of
    /// the window before it judges, so 48 is the slowest schedule that judges as early as it
    /// can (every 75 s for the default hour).
    pub const LEAK_SAMPLES_PER_WINDOW: u32 = 48;
    /// The CPU window by default.
    pub const CPU_WINDOW: Duration = Duration::from_secs(10);

    /// The sampler interval with `source` active.
    #[must_use]
    pub fn sample_interval_for(&self, source: SourceKind) -> Duration {
        self.sample_interval.unwrap_or(match source {
            SourceKind::Ebpf => {
                (self.leak.window / Self::LEAK_SAMPLES_PER_WINDOW).max(Duration::from_millis(10))
            }
            SourceKind::Procfs => Self::FALLBACK_SAMPLE,
        })
    }
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            cpu_window: Self::CPU_WINDOW,
            sample_interval: None,
            leak: LeakPolicy::default(),
        }
    }
}

/// Restart reasons every app reports in metrics, at 0 until one happens (so `increase()` sees
/// the first one).
pub const RESTART_REASONS: &[&str] = &[
    "crash",
    "oom_kill",
    "memory_limit",
    "health",
    "watch",
    "manual",
];

/// Exit reasons every app reports in metrics (exits nobody asked for), at 0 until one happens.
pub const EXIT_REASONS: &[&str] = &["exit", "signal", "oom_kill", "memory_limit"];

/// What one metrics scrape reports, measured when it asked ([`Op::Metrics`]).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsSnapshot {
    /// Daemon version.
    pub version: &'static str,
    /// `ebpf` or `procfs`.
    pub event_source: &'static str,
    /// Events the kernel dropped.
    pub events_lost: u64,
    /// The daemon's own process figures (`process_*`), when `/proc/self` could be read.
    pub daemon: Option<ProcessStats>,
    /// Every app.
    pub apps: Vec<AppMetrics>,
    /// Log volume per app and stream (`turbo_log_bytes_total`, `turbo_log_dropped_bytes_total`).
    pub logs: Vec<crate::keeper::AppCounters>,
}

/// One app in a [`MetricsSnapshot`]. Figures of the process tree are `None` while it has no
/// process.
#[derive(Clone, Debug, PartialEq)]
pub struct AppMetrics {
    /// Name.
    pub name: String,
    /// Instance number.
    pub instance: u32,
    /// Lifecycle state.
    pub state: turbo_api::AppState,
    /// Health-check status.
    pub health: Health,
    /// Restarts since the daemon started, by reason (every one of [`RESTART_REASONS`]).
    pub restarts: Vec<(&'static str, u64)>,
    /// Exits nobody asked for since the daemon started, by reason (every one of
    /// [`EXIT_REASONS`], and any other seen).
    pub exits: Vec<(&'static str, u64)>,
    /// OOM kills of its main process since the daemon started.
    pub oom_kills: u64,
    /// User and system CPU seconds of the tree.
    pub cpu_seconds: Option<(f64, f64)>,
    /// Resident bytes of the tree.
    pub rss_bytes: Option<u64>,
    /// PSS of the tree, where readable.
    pub pss_bytes: Option<u64>,
    /// Live processes in the tree.
    pub processes: Option<u32>,
    /// `max_memory`.
    pub memory_limit_bytes: Option<u64>,
    /// Start of the current main process, Unix seconds.
    pub start_time_seconds: Option<f64>,
    /// Leak detection on the current process.
    pub leak: LeakVerdict,
}

/// The daemon's own figures, for the standard `process_*` metrics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU seconds (its own, not the apps it reaped).
    pub cpu_seconds: f64,
    /// Resident bytes.
    pub resident_bytes: u64,
    /// Virtual size.
    pub virtual_bytes: u64,
    /// `RLIMIT_AS` (`u64::MAX` when unlimited).
    pub virtual_max_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// `RLIMIT_NOFILE` soft limit.
    pub max_fds: u64,
    /// Start time, Unix seconds.
    pub start_time_seconds: f64,
    /// Threads.
    pub threads: u64,
}

/// How to read an app's process tree.
#[derive(Clone, Copy, Debug)]
enum Reading {
    /// `stat` (CPU, RSS) only: status lists and the sampler.
    Cheap,
    /// Also PSS, unless a PSS reading of the same process at most this old exists (PSS costs
    /// ~60 µs per process, five times a `stat`).
    WithPss(Duration),
}

/// Scrapes reuse a PSS reading up to this old (`describe` always reads it afresh).
const PSS_MAX_AGE: Duration = Duration::from_secs(30);

/// What the loop answers to a command once the supervisor replies.
enum Waiter {
    Apps(oneshot::Sender<Result<Response, turbo_api::Error>>),
    Shutdown(oneshot::Sender<Result<Response, turbo_api::Error>>),
    /// Nobody to answer (shutdown by signal, restore at start-up).
    Silent,
}

/// Events the loop sends itself.
enum Internal {
    /// For the supervisor.
    Input(Input),
    /// A crash record is complete (its process's stderr was read to the end, or timed out).
    CrashReady(AppId, CrashRecord),
    /// The debounce delay of the state file passed.
    SaveDue,
    /// A process was reaped: some awaited process group may be empty now.
    CheckGroups,
    /// Watched files of an app changed.
    FilesChanged(AppId, watch::Change),
    /// A datagram on the apps' `NOTIFY_SOCKET`, from this pid; `retried` once it was put back
    /// because its sender was not known yet.
    Notified {
        pid: u32,
        datagram: Vec<u8>,
        retried: bool,
    },
}

/// How long a descendant that exited is still attributed to its app: a short-lived child may
/// send `READY=1` and exit before its datagram is read (sd_notify from a forked helper).
const DEPARTED_FOR: Duration = Duration::from_secs(10);
/// Bound on remembered departed descendants (a fork bomb must not grow the daemon).
const DEPARTED_MAX: usize = 4096;
/// How long a datagram from an unknown pid waits for the event source to report its fork.
const NOTIFY_RETRY_AFTER: Duration = Duration::from_millis(100);

/// How long a crash record waits for the last stderr lines of its process.
const STDERR_GRACE: Duration = Duration::from_millis(500);
/// At most one state-file write per this interval.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// The loop's state. See the module docs.
pub struct Runtime {
    sup: Supervisor,
    paths: Paths,
    facts: DaemonFacts,
    source: EventSource,
    ebpf_exit_events: u64,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    requests_rx: mpsc::UnboundedReceiver<Request>,
    notices: mpsc::UnboundedSender<Notice>,
    waiters: HashMap<Ticket, Waiter>,
    next_ticket: Ticket,
    shutting_down: bool,
    started: (Instant, SystemTime),
    /// Resource books per app (CPU window, CPU counter, leak samples); updated by readings
    /// taken through `&self` (status, scrapes), hence the cell.
    usage: RefCell<HashMap<AppId, usage::AppUsage>>,
    /// Restart and exit counters by reason, per app, since the daemon started (for metrics;
    /// counters start from zero with the exporter, as Prometheus expects).
    counts: HashMap<AppId, usage::Counts>,
    monitor: MonitorSettings,
    /// Last resident memory seen per pid, for crash records of processes already gone.
    rss_seen: RefCell<HashMap<u32, u64>>,
    /// The `/proc` files of the apps' main processes, kept open between readings.
    main_files: RefCell<sys::MainFiles>,
    path_env: String,
    /// Log writers by app *name*, kept after a delete: leftovers of a deleted app may still
    /// write while a new app of the same name starts, and one owner per file keeps rotation safe.
    logs: HashMap<String, logs::AppLogs>,
    /// The output of each running process (for its crash record's stderr tail).
    procs: HashMap<u32, output::Output>,
    /// The log keeper, which reads the apps' output (none: this daemon reads it itself).
    keeper: Option<crate::keeper::Keeper>,
    /// Pipes of processes spawned in this pass of `feed`, handed over at its end.
    pending_output: Vec<output::Pending>,
    /// An upgrade was asked for: the reply, sent once the state is saved.
    upgrade: Option<oneshot::Sender<Result<Response, turbo_api::Error>>>,
    crashes: crashes::CrashStore,
    state_file: StateFile,
    dirty: bool,
    save_scheduled: bool,
    last_save: Option<Instant>,
    /// Descendants of each app's main process (forks reported by the event source), which a
    /// stop must reach even when they left the process group.
    tree: HashMap<AppId, std::collections::HashSet<u32>>,
    /// Process groups (with their apps' descendants) whose end the supervisor waits for.
    group_waits: HashMap<AppId, u32>,
    /// The last fatal signal each watched process got, and who sent it.
    fatal_signals: HashMap<u32, (i32, Option<Sender>)>,
    /// Descendants that exited recently, for attributing their late notify datagrams.
    departed: VecDeque<(u32, AppId, Instant)>,
    /// Resident memory of OOM victims when the kernel chose them.
    oom_memory: HashMap<u32, u64>,
    /// Listening sockets the daemon holds for apps with `listen:`.
    listeners: listen::Listeners,
    /// Beaten on every pass of the loop; the systemd watchdog pings only while it moves.
    heartbeat: Option<(crate::notify::Heartbeat, Duration)>,
    /// File watchers of the apps with `watch:`.
    watchers: HashMap<AppId, watch::AppWatcher>,
    /// The `NOTIFY_SOCKET` of apps with `ready: notify` or `watchdog`, bound when the first
    /// such app starts.
    notify_socket: Option<PathBuf>,
    /// Memory cgroups of apps with `memory_enforce: cgroup`, and the OOM kills counted in each
    /// when last looked at.
    cgroups: HashMap<AppId, (sys::MemoryCgroup, u64)>,
}

impl Runtime {
    /// Assembles a runtime; `events_rx` carries the active source's events.
    #[must_use]
    pub fn new(
        paths: Paths,
        facts: DaemonFacts,
        source: EventSource,
        events_rx: mpsc::UnboundedReceiver<Event>,
        requests_rx: mpsc::UnboundedReceiver<Request>,
        notices: mpsc::UnboundedSender<Notice>,
    ) -> Self {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        Self {
            sup: Supervisor::new(),
            state_file: StateFile::new(paths.state_file()),
            paths,
            facts,
            source,
            ebpf_exit_events: 0,
            internal_tx,
            internal_rx,
            events_rx,
            requests_rx,
            notices,
            waiters: HashMap::new(),
            next_ticket: 1,
            shutting_down: false,
            started: (Instant::now(), SystemTime::now()),
            usage: RefCell::default(),
            counts: HashMap::new(),
            monitor: MonitorSettings::default(),
            rss_seen: RefCell::default(),
            main_files: RefCell::default(),
            path_env: std::env::var("PATH")
                .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            logs: HashMap::new(),
            procs: HashMap::new(),
            keeper: None,
            pending_output: Vec::new(),
            upgrade: None,
            crashes: crashes::CrashStore::default(),
            dirty: false,
            save_scheduled: false,
            last_save: None,
            heartbeat: None,
            tree: HashMap::new(),
            group_waits: HashMap::new(),
            fatal_signals: HashMap::new(),
            departed: VecDeque::new(),
            oom_memory: HashMap::new(),
            listeners: listen::Listeners::default(),
            watchers: HashMap::new(),
            notify_socket: None,
            cgroups: HashMap::new(),
        }
    }

    /// Makes the loop beat `heartbeat` at least every `interval` (for the systemd watchdog).
    pub fn beat_into(&mut self, heartbeat: crate::notify::Heartbeat, interval: Duration) {
        self.heartbeat = Some((heartbeat, interval));
    }

    /// Sends app output through `keeper` (else the daemon reads it itself, and loses what it
    /// read but did not write when it is killed).
    pub fn keep_logs_with(&mut self, keeper: crate::keeper::Keeper) {
        self.keeper = Some(keeper);
    }

    /// Sets how resources are sampled and judged (the defaults otherwise).
    pub const fn monitor(&mut self, settings: MonitorSettings) {
        self.monitor = settings;
    }

    /// Loads the state file and restores its apps: adopts processes still running from before
    /// (same pid and start time), starts the others that should run.
    ///
    /// # Errors
    /// When the state file exists but cannot be read (not when it is corrupt: then the backup is
    /// used and a warning logged), or when the log or state directory is not private to the
    /// daemon's user (others could plant files there: `storage::check_private_dir`).
    pub fn restore(&mut self) -> std::io::Result<()> {
        storage::check_private_dir(&self.paths.log_dir)?;
        let loaded = self.state_file.load()?;
        if let Some(w) = &loaded.warning {
            tracing::warn!("{w}");
        }
        let kept = self.adopt_output();
        let restored = self.restored_apps(loaded.state);
        // pipes of processes that are not adopted after all: the keeper reads them to the end
        for pid in kept {
            if !self.procs.contains_key(&pid) {
                self.output_ended(pid);
            }
        }
        let adopted_notify = restored
            .iter()
            .any(|r| r.running.is_some() && r.spec.readiness.wants_socket());
        if adopted_notify && let Err(e) = self.notify_socket() {
            // their watchdog pings will be missed: they get restarted, not lost
            tracing::warn!("{e}");
        }
        if !restored.is_empty() {
            tracing::info!(
                "restoring {} apps from {}",
                restored.len(),
                self.state_file.path().display()
            );
            self.submit(Command::Restore(restored), Waiter::Silent);
        }
        Ok(())
    }

    fn restored_apps(&mut self, state: SavedState) -> Vec<Restored> {
        let now = Instant::now();
        let mut out = Vec::new();
        for app in state.apps {
            let running = app.process.and_then(|p| {
                let age = sys::process_age(p.pid, p.start_ticks)?;
                // adopt: exits are still seen (pidfd works for non-children; eBPF gives the
                // status); its output went on through the log keeper meanwhile
                if let Err(e) = self.watch_process(app.id, p.pid, None) {
                    tracing::warn!(app = %app.spec.name, "cannot adopt pid {}: {e}", p.pid);
                    return None;
                }
                if let Some(out) = self.adopted_output(p.pid, &app.spec.log) {
                    self.procs.insert(p.pid, out);
                }
                tracing::info!(app = %app.spec.name, pid = p.pid, "adopted the running process");
                if !app.spec.listen.is_empty() {
                    let taken = self.listeners.adopt(&app.spec.name, &app.spec.listen, p.pid);
                    if !taken.is_empty() {
                        tracing::info!(app = %app.spec.name, "took back the sockets of {}", taken.join(", "));
                    }
                }
                Some((p.pid, now.checked_sub(age).unwrap_or(now)))
            });
            if running.is_some() {
                // an adopted process already runs in its memory cgroup (same home, same
                // path): know it again, for `describe`, OOM counting and removal on delete
                if let Err(e) = self.memory_cgroup(app.id, app.instance, &app.spec) {
                    tracing::warn!(app = %app.spec.name, "{e}");
                }
            }
            self.crashes.restore(
                app.id,
                crashes::CrashBook {
                    total: app.total_crashes,
                    records: app.crashes.into_iter().map(CrashRecord::from).collect(),
                },
            );
            out.push(Restored {
                id: app.id,
                instance: app.instance,
                spec: app.spec,
                desired: app.desired,
                restarts: app.restarts,
                running,
            });
        }
        out
    }

    /// Runs until a shutdown (request or SIGTERM/SIGINT) has stopped every app.
    ///
    /// # Errors
    /// Only if the termination signal handlers cannot be installed.
    pub async fn run(mut self) -> std::io::Result<Ending> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        // an idle loop still passes here every beat interval, proving it is not stuck
        let beat_every = self
            .heartbeat
            .as_ref()
            .map_or(Duration::from_secs(3600), |(_, i)| *i);
        let mut beat_tick = tokio::time::interval(beat_every);
        let mut sample_tick =
            tokio::time::interval(self.monitor.sample_interval_for(self.source.kind()));
        // a loop busy for a while samples once, late, rather than in a burst
        sample_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some((hb, _)) = &self.heartbeat {
                hb.beat();
            }
            tokio::select! {
                // kernel events first: when an eBPF exit and the pidfd are ready together, the
                // earlier notice should win so `last_exit.source` tells the truth
                biased;
                Some(ev) = self.events_rx.recv() => self.on_event(ev),
                Some(msg) = self.internal_rx.recv() => self.on_internal(msg),
                Some(req) = self.requests_rx.recv() => {
                    self.catch_up_events().await;
                    self.on_request(req);
                }
                _ = sigterm.recv() => self.begin_shutdown(Waiter::Silent),
                _ = sigint.recv() => self.begin_shutdown(Waiter::Silent),
                _ = beat_tick.tick() => {}
                _ = sample_tick.tick() => match self.source.kind() {
                    SourceKind::Procfs => self.sample_all(),
                    SourceKind::Ebpf => self.sample_leaks(),
                },
                () = output::keeper_lost(self.keeper.as_ref()) => self.replace_keeper(),
            }
            if self.shutting_down && self.waiters.is_empty() {
                // the last change must reach the disk, debounce or not
                self.save_now();
                self.release_keeper();
                return Ok(Ending::Shutdown);
            }
            if let Some(reply) = self.upgrade.take() {
                // the new daemon adopts from this file, so it is written now, changed or not
                self.dirty = true;
                self.save_now();
                if self.dirty {
                    let _ = reply.send(Err(turbo_api::Error::Failed(format!(
                        "cannot write {}; not upgrading (see the daemon log)",
                        self.state_file.path().display()
                    ))));
                } else {
                    let _ = reply.send(Ok(Response::Done));
                    return Ok(Ending::Upgrade);
                }
            }
        }
    }

    /// Handles every kernel event that happened before now. A request must be judged against
    /// them: a `turbo stop` handled before the fork event of a just-forked, setsid'd descendant
    /// (still in the ring buffer, its reader task not yet run) would complete without it. The
    /// yield lets the runtime poll its drivers and run the reader first.
    async fn catch_up_events(&mut self) {
        tokio::task::yield_now().await;
        while let Ok(ev) = self.events_rx.try_recv() {
            self.on_event(ev);
        }
    }

    fn wall_ms(&self, at: Instant) -> u64 {
        let (mono, wall) = self.started;
        let t = if at >= mono {
            wall + at.duration_since(mono)
        } else {
            wall - mono.duration_since(at)
        };
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Exited {
                pid,
                key,
                status,
                source,
            } => {
                let main = self.sup.apps().any(|a| a.pid() == Some(pid));
                if main {
                    if source == SourceKind::Ebpf {
                        self.ebpf_exit_events += 1;
                    }
                    self.feed(Input::Exited {
                        pid,
                        status,
                        source,
                    });
                } else if let Some(tree) = self.tree.get_mut(&key) {
                    if tree.remove(&pid) {
                        self.remember_departed(pid, key);
                    }
                    self.fatal_signals.remove(&pid);
                    self.check_group_waits();
                }
            }
            Event::Forked { child, key, .. } => {
                if self.sup.app(key).is_some() {
                    self.tree.entry(key).or_default().insert(child);
                }
            }
            Event::Exec { pid, filename, .. } => {
                tracing::debug!(pid, "exec {filename}");
            }
            Event::OomKilled { pid, memory, .. } => {
                tracing::warn!(
                    pid,
                    "the kernel OOM killer chose pid {pid} ({}, resident {} bytes)",
                    memory.comm,
                    memory.rss_bytes()
                );
                self.oom_memory.insert(pid, memory.rss_bytes());
                self.feed(Input::OomKilled { pid });
            }
            Event::Signaled {
                pid,
                signal,
                sender,
                ..
            } => {
                self.fatal_signals.insert(pid, (signal, sender));
            }
            Event::MemoryOver {
                pid, rss, limit, ..
            } => {
                self.saw_rss(pid, rss);
                self.memory_reading(pid, rss);
                self.feed(Input::MemoryOver { pid, rss, limit });
            }
            Event::MemoryUnder {
                pid, rss, limit, ..
            } => {
                self.saw_rss(pid, rss);
                self.memory_reading(pid, rss);
                self.feed(Input::MemoryUnder { pid, limit });
            }
        }
    }

    /// Keeps `rss` as the last figure of `pid` for its crash record. A process that is exiting
    /// reads as 0 once the kernel has freed its memory (the fallback's sampler can catch it
    /// between the stop signal and the reap): that is no figure, and must not replace the last
    /// real one.
    fn saw_rss(&self, pid: u32, rss: u64) {
        if rss > 0 {
            self.rss_seen.borrow_mut().insert(pid, rss);
        }
    }

    /// Whether process group `pgid`, or any known descendant of `app`, still lives.
    fn tree_alive(&self, app: AppId, pgid: u32) -> bool {
        sys::group_alive(pgid)
            || self
                .tree
                .get(&app)
                .is_some_and(|t| t.iter().any(|&p| sys::pid_alive(p)))
    }

    /// Reports the waited-for groups (and their apps' descendants) that are gone now.
    fn check_group_waits(&mut self) {
        let done: Vec<(AppId, u32)> = self
            .group_waits
            .iter()
            .map(|(&a, &g)| (a, g))
            .filter(|&(a, g)| !self.tree_alive(a, g))
            .collect();
        for (app, pgid) in done {
            self.group_waits.remove(&app);
            self.feed(Input::GroupGone { app, pgid });
        }
    }

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Input(input) => self.feed(input),
            Internal::CrashReady(app, record) => {
                let Some(name) = self.sup.app(app).map(|a| a.spec.name.clone()) else {
                    return; // deleted meanwhile
                };
                tracing::warn!(
                    app = %name,
                    "crashed: {} after {} ms (restart #{})",
                    describe_exit(record.code, record.signal),
                    record.uptime_ms,
                    record.restart_number
                );
                self.crashes.push(app, record.clone());
                let _ = self.notices.send(Notice::Crashed(name, record));
                self.mark_dirty();
            }
            Internal::SaveDue => {
                self.save_scheduled = false;
                self.save_now();
            }
            Internal::CheckGroups => self.check_group_waits(),
            Internal::FilesChanged(app, change) => {
                if let Some(w) = self.watchers.get_mut(&app) {
                    for dir in change.new_dirs {
                        if let Err(e) = w.add_tree(&dir) {
                            tracing::warn!(app, "cannot watch {}: {e}", dir.display());
                        }
                    }
                }
                self.feed(Input::FilesChanged { app });
            }
            Internal::Notified {
                pid,
                datagram,
                retried,
            } => match self.app_of_pid(pid) {
                Some(app) => {
                    let message = crate::supervisor::NotifyMessage::parse(&datagram);
                    self.feed(Input::Notified { app, message });
                }
                None if !retried => {
                    // The sender may be a new child whose fork event is still on its way (the
                    // event source and the socket are read by different tasks): ask again later.
                    let tx = self.internal_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(NOTIFY_RETRY_AFTER).await;
                        let _ = tx.send(Internal::Notified {
                            pid,
                            datagram,
                            retried: true,
                        });
                    });
                }
                None => tracing::debug!(pid, "notification from a process of no app: ignored"),
            },
        }
    }

    /// The app whose process tree `pid` is in: its main process, a descendant the event source
    /// reported, or (walking the parents in `/proc`) a child of one of those.
    fn app_of_pid(&self, pid: u32) -> Option<AppId> {
        let mut p = pid;
        for _ in 0..64 {
            if let Some(a) = self.sup.apps().find(|a| a.pid() == Some(p)) {
                return Some(a.id);
            }
            if let Some((&app, _)) = self.tree.iter().find(|(_, t)| t.contains(&p)) {
                return Some(app);
            }
            if let Some(&(_, app, _)) = self.departed.iter().find(|(d, ..)| *d == p) {
                return Some(app);
            }
            p = sys::parent_pid(p).filter(|&pp| pp > 1)?;
        }
        None
    }

    /// Remembers that `pid`, a descendant of `app`, exited (see [`DEPARTED_FOR`]).
    fn remember_departed(&mut self, pid: u32, app: AppId) {
        let now = Instant::now();
        while self
            .departed
            .front()
            .is_some_and(|&(_, _, at)| now.saturating_duration_since(at) > DEPARTED_FOR)
            || self.departed.len() >= DEPARTED_MAX
        {
            self.departed.pop_front();
        }
        self.departed.push_back((pid, app, now));
    }

    /// The path of the apps' `NOTIFY_SOCKET`, binding it (and starting its reader) first.
    fn notify_socket(&mut self) -> Result<PathBuf, String> {
        if let Some(p) = &self.notify_socket {
            return Ok(p.clone());
        }
        let path = self.paths.home.join("notify.sock");
        let sock = sys::bind_notify_socket(&path)
            .map_err(|e| format!("cannot bind the NOTIFY_SOCKET {}: {e}", path.display()))?;
        // SAFETY: the AsyncFd owns the socket, so the fd stays open and the same while registered.
        let afd = unsafe { AsyncFd::register(sock) }.map_err(|e| e.to_string())?;
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok(mut guard) = afd.readable().await else {
                    return;
                };
                match sys::recv_with_pid(afd.get_ref(), &mut buf) {
                    Ok((n, Some(pid))) => {
                        let _ = tx.send(Internal::Notified {
                            pid,
                            datagram: buf[..n].to_vec(),
                            retried: false,
                        });
                    }
                    Ok((_, None)) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => guard.clear_ready(),
                    Err(e) => {
                        tracing::error!("NOTIFY_SOCKET: {e}; readiness notifications stop");
                        return;
                    }
                }
            }
        });
        tracing::info!("apps' NOTIFY_SOCKET at {}", path.display());
        self.notify_socket = Some(path.clone());
        Ok(path)
    }

    /// Starts, replaces or drops the file watcher of `id` to match its spec.
    fn sync_watcher(&mut self, id: AppId) {
        let Some(app) = self.sup.app(id) else {
            self.watchers.remove(&id);
            return;
        };
        let Some(spec) = app.spec.watch.clone() else {
            self.watchers.remove(&id);
            return;
        };
        if self.watchers.get(&id).is_some_and(|w| w.spec() == &spec) {
            return;
        }
        self.watchers.remove(&id);
        // the daemon's own files change all the time: never a reason to restart
        let skip = vec![self.paths.home.clone(), self.paths.log_dir.clone()];
        let tx = self.internal_tx.clone();
        let name = app.spec.name.clone();
        match watch::AppWatcher::start(&spec, skip, move |change| {
            let _ = tx.send(Internal::FilesChanged(id, change));
        }) {
            Ok(w) => {
                tracing::info!(app = %name, "watching {} directories for changes", w.watched());
                self.watchers.insert(id, w);
            }
            Err(e) => tracing::warn!(app = %name, "watch mode is off: cannot watch files: {e}"),
        }
    }

    /// Hands one input to the supervisor and executes what it asks, including the inputs that
    /// executing produces (a spawn reports back at once), until nothing is left.
    fn feed(&mut self, input: Input) {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            let exit = match input {
                Input::Exited {
                    pid,
                    status,
                    source,
                } => Some((pid, status, source)),
                _ => None,
            };
            if let Some((pid, status, _)) = exit
                && status.signal() == Some(libc::SIGKILL)
                && self.cgroup_oom_kill(pid)
            {
                // the kernel may have told already (eBPF `mark_victim`); the cgroup's counter
                // tells with any event source
                let _ = self.sup.handle(Input::OomKilled { pid }, Instant::now());
            }
            let actions = self.sup.handle(input, Instant::now());
            if let Some((pid, ..)) = exit {
                // forget the pid (and its memory limit) in the source: a reused pid must not
                // inherit the watch
                self.source.unwatch(pid);
            }
            if let Some((pid, status, source)) = exit
                && !actions.is_empty()
            {
                // an exit the supervisor acted on (duplicates from the second source produce nothing)
                tracing::info!(
                    pid,
                    "process exited: {} (reported by {source})",
                    describe_exit(status.code().unwrap_or(-1), status.signal().unwrap_or(0))
                );
            }
            for action in actions {
                if let Some(next) = self.execute(action) {
                    queue.push_back(next);
                }
            }
            if let Some((pid, ..)) = exit {
                // not a crash (those took their entry): the output tasks end on their own
                self.procs.remove(&pid);
                self.output_ended(pid);
                self.rss_seen.borrow_mut().remove(&pid);
                self.main_files.borrow_mut().forget(pid);
            }
        }
        self.hand_over_output();
    }

    fn execute(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::Spawn { app, spec } => Some(match self.spawn(app, &spec) {
                Ok(pid) => Input::Spawned { app, pid },
                Err(error) => Input::SpawnFailed { app, error },
            }),
            Action::SignalGroup { app, pid, signal } => {
                if let Err(e) = sys::signal_group(pid, signal) {
                    tracing::warn!("signal {signal} to process group {pid} failed: {e}");
                }
                // descendants that left the group (setsid, double fork) get it too
                for &d in self.tree.get(&app).into_iter().flatten() {
                    let _ = sys::signal_pid(d, signal);
                }
                None
            }
            Action::SetMemoryLimit { app, pid, bytes } => {
                if let Err(e) = self.source.set_memory_limit(pid, bytes) {
                    tracing::warn!(app, "cannot watch the memory of pid {pid}: {e}");
                }
                None
            }
            Action::AwaitGroupGone { app, pgid } => {
                if !self.tree_alive(app, pgid) {
                    return Some(Input::GroupGone { app, pgid });
                }
                self.group_waits.insert(app, pgid);
                let descendants: Vec<u32> =
                    self.tree.get(&app).into_iter().flatten().copied().collect();
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    // short at first: usually only the not yet reaped leader is left
                    let mut pause = Duration::from_millis(2);
                    while sys::group_alive(pgid) || descendants.iter().any(|&p| sys::pid_alive(p)) {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(100));
                    }
                    let _ = tx.send(Internal::CheckGroups);
                });
                None
            }
            Action::SetTimer {
                app,
                generation,
                at,
            } => {
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    let _ = tx.send(Internal::Input(Input::Timer { app, generation }));
                });
                None
            }
            Action::Wake {
                app,
                kind,
                token,
                at,
            } => {
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    let _ = tx.send(Internal::Input(Input::Wake { app, kind, token }));
                });
                None
            }
            Action::ExpireWait { ticket, at } => {
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    let _ = tx.send(Internal::Input(Input::WaitExpired(ticket)));
                });
                None
            }
            Action::Probe {
                app,
                generation,
                check,
            } => {
                let spec = self.sup.app(app)?.spec.clone();
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    let result = probe::run(&check, &spec).await;
                    let _ = tx.send(Internal::Input(Input::ProbeResult {
                        app,
                        generation,
                        result,
                    }));
                });
                None
            }
            Action::Reply { ticket, result } => {
                self.reply(ticket, result);
                None
            }
            Action::Notify(n) => {
                self.notify(n);
                None
            }
        }
    }

    /// Whether the memory cgroup of the app whose main process is `pid` counted a new OOM
    /// kill since last asked.
    fn cgroup_oom_kill(&mut self, pid: u32) -> bool {
        let Some(app) = self.sup.apps().find(|a| a.pid() == Some(pid)) else {
            return false;
        };
        let Some((cgroup, seen)) = self.cgroups.get_mut(&app.id) else {
            return false;
        };
        let now = cgroup.oom_kills().unwrap_or(*seen);
        std::mem::replace(seen, now) < now
    }

    /// The memory cgroup `spec` asks for (`memory_enforce: cgroup`), created on first use below
    /// the daemon's own and set to its `max_memory` on every start (the spec may have changed);
    /// `None` when the app wants none.
    fn memory_cgroup(
        &mut self,
        app: AppId,
        instance: u32,
        spec: &AppSpec,
    ) -> Result<Option<OwnedFd>, String> {
        let (crate::supervisor::MemoryEnforce::Cgroup, Some(max)) =
            (spec.memory.enforce, spec.memory.max)
        else {
            return Ok(None);
        };
        let fail = |e: std::io::Error| {
            format!(
                "memory_enforce: cgroup: cannot put the app in a memory cgroup ({e}); use \
                 `memory_enforce: restart` (the default) where the daemon may not create cgroups"
            )
        };
        let (base, version) = sys::own_memory_cgroup().map_err(fail)?;
        // one directory per daemon home: daemons of other users or homes never share one
        let group = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.paths.home.hash(&mut h);
            format!("turbo-{:016x}", h.finish())
        };
        // one cgroup per instance: the limit is per process, as max_memory is
        let name = format!("{}.{instance}", spec.name);
        let cgroup = sys::create_memory_cgroup(&base, version, &group, &name, max).map_err(fail)?;
        let procs = cgroup.procs().map_err(fail)?;
        let seen = cgroup.oom_kills().unwrap_or(0);
        self.cgroups.insert(app, (cgroup, seen));
        Ok(Some(procs))
    }

    fn spawn(&mut self, app: AppId, spec: &AppSpec) -> Result<u32, String> {
        self.prepare_output(spec)?;
        self.sync_watcher(app);
        let mut with_socket;
        let spec = if spec.readiness.wants_socket() {
            // the systemd protocol: where to send READY=1 / WATCHDOG=1, and how often to ping
            with_socket = spec.clone();
            let socket = self.notify_socket()?;
            with_socket
                .env
                .push(("NOTIFY_SOCKET".into(), socket.display().to_string()));
            if let Some(period) = spec.readiness.watchdog() {
                with_socket
                    .env
                    .push(("WATCHDOG_USEC".into(), period.as_micros().to_string()));
            }
            &with_socket
        } else {
            spec
        };
        let instance = self.sup.app(app).map_or(0, |a| a.instance);
        let cgroup = self.memory_cgroup(app, instance, spec)?;
        let listen = self.listeners.sockets(&spec.name, &spec.listen)?;
        let extra = sys::Extra {
            env: [
                ("TURBO_INSTANCE", instance),
                ("TURBO_INSTANCES", spec.instances),
                // what PM2 sets, so apps written for it find their number
                ("NODE_APP_INSTANCE", instance),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_string()))
            .collect(),
            listen,
            listen_name: spec.name.clone(),
            cgroup_procs: cgroup.as_ref().map(std::os::fd::AsFd::as_fd),
        };
        let child = sys::spawn_with(spec, &extra).map_err(|e| e.to_string())?;
        let pid = child.pid;
        // handed to the keeper once this pass of `feed` is done, so the round trip does not
        // count in the process's uptime
        self.queue_output(pid, spec, child.stdout, child.stderr);
        if let Err(e) = self.watch_process(app, pid, Some(child.pidfd)) {
            tracing::warn!(app = %spec.name, "cannot watch pid {pid}: {e}");
        }
        tracing::info!(app = %spec.name, pid, "started {}", spec.argv.join(" "));
        Ok(pid)
    }

    /// Arranges to hear about the exit of `pid`: the eBPF watch list when eBPF is active, and a
    /// pidfd (opened here for adopted processes) that a task reaps or waits on.
    fn watch_process(
        &mut self,
        app: AppId,
        pid: u32,
        pidfd: Option<OwnedFd>,
    ) -> std::io::Result<()> {
        if let Err(e) = self.source.watch(pid, app) {
            // the pidfd still reports this exit; only the early notice is lost
            tracing::warn!("the event source cannot watch pid {pid}: {e}");
        }
        let pidfd = match pidfd {
            Some(fd) => fd,
            None => sys::pidfd_open(pid)?,
        };
        tokio::spawn(reap_when_exited(pid, pidfd, self.internal_tx.clone()));
        Ok(())
    }

    fn notify(&mut self, n: Notification) {
        match n {
            Notification::Added(id) => {
                if let Some(a) = self.sup.app(id) {
                    let _ = self.notices.send(Notice::Added(self.status(a, false)));
                }
                self.count_state(id);
                self.sync_watcher(id);
                self.mark_dirty();
            }
            Notification::HealthChanged(id) => {
                if let Some(a) = self.sup.app(id) {
                    let health = a.health.public(a.spec.health.is_some());
                    match &a.health.last_error {
                        Some(e) if health == Health::Unhealthy => {
                            tracing::warn!(app = %a.spec.name, "unhealthy: {e}");
                        }
                        _ => tracing::info!(app = %a.spec.name, "{health}"),
                    }
                    let _ = self.notices.send(Notice::Changed(self.status(a, false)));
                }
            }
            Notification::StatusText(id) => {
                if let Some(a) = self.sup.app(id) {
                    let _ = self.notices.send(Notice::Changed(self.status(a, false)));
                }
            }
            Notification::Ready(id) => {
                if let Some(a) = self.sup.app(id) {
                    tracing::info!(app = %a.spec.name, pid = a.pid().unwrap_or(0), "ready");
                }
            }
            Notification::StateChanged(id) => {
                if let Some(a) = self.sup.app(id) {
                    let _ = self.notices.send(Notice::Changed(self.status(a, false)));
                }
                self.count_state(id);
                // the pid and restart count are part of the saved state
                self.mark_dirty();
            }
            Notification::Crashed {
                app,
                pid,
                exit,
                restart_number,
            } => {
                self.counts.entry(app).or_default().exited(exit.reason);
                self.record_crash(app, pid, &exit, restart_number);
            }
            Notification::MemoryWarning { app, rss, max } => {
                if let Some(a) = self.sup.app(app) {
                    let name = a.spec.name.clone();
                    tracing::warn!(
                        app = %name,
                        "memory warning: {rss} bytes resident, {}% of max_memory {max}",
                        rss.saturating_mul(100) / max.max(1)
                    );
                    let _ = self.notices.send(Notice::MemoryWarning(name, rss, max));
                }
            }
            Notification::Persist => self.mark_dirty(),
            Notification::Replaced { old, new } => {
                self.crashes.hand_over(old, new);
                // copied, not moved: the old instance's series stay as they are (a counter must
                // not drop) until it is gone and the replacement's take over
                let before = self.counts.get(&old).cloned().unwrap_or_default();
                self.counts.entry(new).or_default().take_over(before);
                self.mark_dirty();
            }
            Notification::Removed {
                app,
                name,
                instance,
            } => {
                if !self.sup.apps().any(|a| a.spec.name == name) {
                    // the last instance is gone: so is the port
                    self.listeners.close(&name);
                }
                self.watchers.remove(&app);
                self.crashes.remove(app);
                self.tree.remove(&app);
                self.departed.retain(|&(_, a, _)| a != app);
                self.counts.remove(&app);
                self.usage.borrow_mut().remove(&app);
                if let Some((cgroup, _)) = self.cgroups.remove(&app)
                    && let Err(e) = cgroup.remove()
                {
                    tracing::warn!(app = %name, "cannot remove {}: {e}", cgroup.path.display());
                }
                let _ = self.notices.send(Notice::Removed(name, instance, app));
                self.mark_dirty();
            }
        }
    }

    /// Starts a crash record; it is completed (stderr tail) once the process's output has been
    /// read to the end, so the lines written just before dying are in it.
    fn record_crash(&mut self, app: AppId, pid: u32, exit: &Exit, restart_number: u32) {
        let (sender_pid, sender_comm) = match self.fatal_signals.remove(&pid) {
            Some((sig, Some(sender))) if exit.status.signal() == Some(sig) => {
                (sender.pid, sender.comm)
            }
            _ => (0, String::new()),
        };
        // eBPF reports the exit before the kernel frees the memory, so /proc may still answer
        let memory = self
            .oom_memory
            .remove(&pid)
            .filter(|&m| m > 0)
            .or_else(|| sys::read_stat(pid).map(|s| s.rss_bytes).filter(|&m| m > 0))
            .or_else(|| self.rss_seen.borrow().get(&pid).copied())
            .unwrap_or(0);
        let mut record = CrashRecord {
            at_ms: self.wall_ms(exit.at),
            code: exit.status.code().unwrap_or(-1),
            signal: exit.status.signal().unwrap_or(0),
            reason: exit.reason.as_str().into(),
            uptime_ms: u64::try_from(exit.uptime.as_millis()).unwrap_or(u64::MAX),
            restart_number,
            memory_bytes: memory,
            signal_sender_pid: sender_pid,
            signal_sender_comm: sender_comm,
            stderr_tail: Vec::new(),
            source: exit.source.as_str().into(),
            detail: exit.detail.clone().unwrap_or_default(),
        };
        let tx = self.internal_tx.clone();
        match self.procs.remove(&pid) {
            Some(io) => {
                self.output_ended(pid);
                tokio::spawn(async move {
                    record.stderr_tail = io.last_lines(pid, STDERR_GRACE).await;
                    let _ = tx.send(Internal::CrashReady(app, record));
                });
            }
            None => {
                let _ = tx.send(Internal::CrashReady(app, record));
            }
        }
    }

    fn mark_dirty(&mut self) {
        self.dirty = true;
        if self.save_scheduled {
            return;
        }
        self.save_scheduled = true;
        let at = self
            .last_save
            .map_or_else(Instant::now, |t| t + SAVE_INTERVAL)
            .max(Instant::now());
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let _ = tx.send(Internal::SaveDue);
        });
    }

    fn save_now(&mut self) {
        if !self.dirty {
            return;
        }
        let state = self.snapshot();
        match self.state_file.save(&state) {
            Ok(()) => {
                self.dirty = false;
                self.last_save = Some(Instant::now());
            }
            // apps keep running; the next change retries
            Err(e) => tracing::error!("cannot write {}: {e}", self.state_file.path().display()),
        }
    }

    fn snapshot(&self) -> SavedState {
        SavedState {
            schema_version: storage::SCHEMA_VERSION,
            saved_at_ms: self.wall_ms(Instant::now()),
            apps: self
                .sup
                .apps()
                .map(|a| {
                    let book = self.crashes.book(a.id);
                    SavedApp {
                        id: a.id,
                        instance: a.instance,
                        spec: a.spec.clone(),
                        desired: a.desired,
                        restarts: a.restarts,
                        process: a.pid().and_then(|pid| {
                            sys::start_ticks(pid)
                                .map(|start_ticks| SavedProcess { pid, start_ticks })
                        }),
                        total_crashes: book.total,
                        crashes: book.records.iter().map(SavedCrash::from).collect(),
                    }
                })
                .collect(),
        }
    }

    fn reply(&mut self, ticket: Ticket, result: Result<Reply, CommandError>) {
        let Some(waiter) = self.waiters.remove(&ticket) else {
            return;
        };
        let response = result.map_err(to_api_error).map(|reply| match reply {
            Reply::Apps(ids) => Response::Apps(
                ids.iter()
                    .filter_map(|id| self.sup.app(*id))
                    .map(|a| self.status(a, false))
                    .collect::<Vec<_>>(),
            ),
            Reply::Deleted(names) => Response::Names(names),
        });
        match waiter {
            Waiter::Apps(tx) => {
                let _ = tx.send(response);
            }
            Waiter::Shutdown(tx) => {
                let _ = tx.send(response.map(|_| Response::Done));
            }
            Waiter::Silent => {}
        }
    }

    fn on_request(&mut self, req: Request) {
        let Request { op, reply } = req;
        let read_only = matches!(
            op,
            Op::Info | Op::Metrics | Op::List | Op::Describe(_) | Op::Crashes(_)
        );
        if self.shutting_down && !read_only {
            let _ = reply.send(Err(turbo_api::Error::Failed(
                "the daemon is shutting down".into(),
            )));
            return;
        }
        if matches!(op, Op::Shutdown) {
            return self.begin_shutdown(Waiter::Shutdown(reply));
        }
        if matches!(op, Op::Upgrade) {
            // refused while the daemon can still say so: a failed exec would leave no daemon
            if let Err(e) = crate::install_path() {
                let _ = reply.send(Err(turbo_api::Error::Failed(format!(
                    "cannot upgrade: {e}; the daemon keeps running"
                ))));
                return;
            }
            // answered by `run` once the state is on disk
            self.upgrade = Some(reply);
            return;
        }
        match self.command_for(op) {
            Ok(command) => self.submit(command, Waiter::Apps(reply)),
            Err(answer) => {
                let _ = reply.send(answer);
            }
        }
    }

    /// The supervisor command for `op`, or the answer when `op` needs none.
    fn command_for(&mut self, op: Op) -> Result<Command, Result<Response, turbo_api::Error>> {
        let command = match op {
            Op::Info => return Err(Ok(Response::Info(Box::new(self.info())))),
            Op::Metrics => {
                let mut snapshot = self.metrics_snapshot();
                snapshot.logs = self.log_counters();
                return Err(Ok(Response::Metrics(Box::new(snapshot))));
            }
            Op::List => {
                let list = self.sup.apps().map(|a| self.status(a, true)).collect();
                return Err(Ok(Response::Apps(list)));
            }
            Op::Describe(t) => return Err(self.describe(&t)),
            Op::Crashes(t) => return Err(self.crash_report(&t)),
            Op::Flush(t) => return Err(self.flush(&t)),
            Op::Save => return Err(self.save_dump()),
            Op::DescribeEnv(t) => return Err(self.describe_env(&t)),
            Op::Shutdown | Op::Upgrade => unreachable!("handled by the caller"),
            Op::Resurrect(caller) => Command::Start {
                specs: self
                    .resurrect_specs()
                    .and_then(|specs| owned_by(caller, specs))
                    .map_err(Err)?,
                exclusive: false,
            },
            Op::Start {
                name,
                argv,
                options,
                caller,
            } => {
                // the check may run on another thread (with the caller's file access rights)
                let (path_env, home) = (&self.path_env, &self.paths.home);
                let spec = config::as_caller(caller, |powers| {
                    config::from_options(&name, &argv, &options, path_env, home, powers)
                })
                .map_err(|e| Err(turbo_api::Error::InvalidArgument(e)))?;
                Command::Start {
                    specs: vec![spec],
                    exclusive: true,
                }
            }
            Op::StartConfig {
                content,
                origin,
                base_dir,
                caller,
            } => Command::Start {
                specs: config::parse_config_as(
                    &content,
                    &origin,
                    std::path::Path::new(&base_dir),
                    &self.path_env,
                    caller,
                )
                .map_err(|e| Err(turbo_api::Error::InvalidConfig(e)))?,
                exclusive: false,
            },
            Op::Stop(t) => Command::Stop(Target::parse(&t)),
            Op::Restart(t) => Command::Restart(Target::parse(&t)),
            Op::Delete(t) => Command::Delete(Target::parse(&t)),
            Op::Reset(t) => Command::Reset(Target::parse(&t)),
            Op::Scale(name, count) => Command::Scale { name, count },
            Op::Reload(t) => Command::Reload(Target::parse(&t)),
            Op::WaitReady { target, timeout } => Command::WaitReady {
                target: Target::parse(&target),
                timeout,
            },
        };
        Ok(command)
    }

    fn one_app(&self, target: &str) -> Result<&App, turbo_api::Error> {
        let ids = self
            .sup
            .resolve(&Target::parse(target))
            .map_err(to_api_error)?;
        let apps: Vec<&App> = ids.iter().filter_map(|id| self.sup.app(*id)).collect();
        match apps.as_slice() {
            [app] => Ok(app),
            [] => Err(turbo_api::Error::NotFound("no apps".into())),
            // the instances of one app: the lowest-numbered stands for them (`name:N` names
            // another)
            [first, rest @ ..] if rest.iter().all(|a| a.spec.name == first.spec.name) => Ok(apps
                .iter()
                .min_by_key(|a| (a.instance, a.id))
                .expect("not empty")),
            _ => Err(turbo_api::Error::InvalidArgument(format!(
                "'{target}' matches {} apps: name one",
                ids.len()
            ))),
        }
    }

    fn describe(&self, target: &str) -> Result<Response, turbo_api::Error> {
        let app = self.one_app(target)?;
        let spec = &app.spec;
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (run_as, limits) = (spec.privileges.run_as.as_ref(), &spec.privileges.limits);
        let config = AppConfigInfo {
            autorestart: match spec.autorestart {
                crate::supervisor::Autorestart::Always => "always",
                crate::supervisor::Autorestart::OnFailure => "on-failure",
                crate::supervisor::Autorestart::Never => "never",
            }
            .into(),
            restart_delay_ms: ms(spec.restart.delay),
            restart_factor: spec.restart.factor,
            restart_max_delay_ms: ms(spec.restart.max_delay),
            restart_reset_after_ms: ms(spec.restart.reset_after),
            crash_loop_max: spec.restart.crash_loop_max,
            crash_loop_window_ms: ms(spec.restart.crash_loop_window),
            max_restarts: spec.restart.max_restarts,
            stop_exit_codes: spec.stop_exit_codes.clone(),
            stop_signal: spec.stop_signal,
            kill_timeout_ms: ms(spec.kill_timeout),
            env_names: spec.env.iter().map(|(k, _)| k.clone()).collect(),
            log_format: match spec.log.format {
                crate::supervisor::LogFormat::Text => "text",
                crate::supervisor::LogFormat::Json => "json",
            }
            .into(),
            log_max_size: spec.log.max_size,
            log_keep: spec.log.keep,
            desired: app.desired.as_str().into(),
            user: run_as.map(|r| r.user.clone()).unwrap_or_default(),
            uid: run_as.map_or(0, |r| r.uid),
            group: run_as.map(|r| r.group.clone()).unwrap_or_default(),
            gid: run_as.map_or(0, |r| r.gid),
            groups: run_as.map(|r| r.groups.clone()).unwrap_or_default(),
            umask: limits.umask.map(|m| format!("{m:04o}")).unwrap_or_default(),
            rlimits: limits
                .rlimits()
                .into_iter()
                .map(|(name, l)| (name.to_owned(), l.soft, l.hard))
                .collect(),
            nice: limits.nice.unwrap_or(AppConfigInfo::INHERITED),
            oom_score_adj: limits.oom_score_adj.unwrap_or(AppConfigInfo::INHERITED),
            instances: spec.instances,
            listen: spec.listen.clone(),
            health_check: spec.health.as_ref().map(describe_check).unwrap_or_default(),
            health_last_error: app.health.last_error.clone().unwrap_or_default(),
            watch_paths: spec
                .watch
                .iter()
                .flat_map(|w| &w.paths)
                .map(|p| p.display().to_string())
                .collect(),
            watch_ignore: spec
                .watch
                .as_ref()
                .map(|w| w.ignore.clone())
                .unwrap_or_default(),
            watch_delay_ms: spec.watch.as_ref().map_or(0, |w| ms(w.delay)),
            ready: match spec.readiness.mode {
                crate::supervisor::ReadyMode::Spawn => "spawn",
                crate::supervisor::ReadyMode::Notify => "notify",
            }
            .into(),
            ready_timeout_ms: ms(spec.readiness.timeout),
            watchdog_ms: spec.readiness.watchdog_ms.unwrap_or(0),
            memory_enforce: spec
                .memory
                .max
                .map(|_| spec.memory.enforce.as_str().to_owned())
                .unwrap_or_default(),
            memory_cgroup: self
                .cgroups
                .get(&app.id)
                .map(|(c, _)| format!("{} {}", c.version.as_str(), c.path.display()))
                .unwrap_or_default(),
        };
        let (_, records) = self.crashes.report(app.id, self.wall_ms(Instant::now()));
        Ok(Response::Describe(Box::new((
            // describe is about one app: worth the PSS reading
            self.status_read(app, Some(Reading::WithPss(Duration::ZERO))),
            config,
            records,
        ))))
    }

    /// The `env:`/`env_file:` variables of one app with their values (`DescribeEnv`).
    fn describe_env(&self, target: &str) -> Result<Response, turbo_api::Error> {
        Ok(Response::Env(self.one_app(target)?.spec.env.clone()))
    }

    fn crash_report(&self, target: &str) -> Result<Response, turbo_api::Error> {
        let app = self.one_app(target)?;
        let report = self.crashes.report(app.id, self.wall_ms(Instant::now()));
        Ok(Response::Crashes(Box::new(report)))
    }

    fn flush(&mut self, target: &str) -> Result<Response, turbo_api::Error> {
        let ids = self
            .sup
            .resolve(&Target::parse(target))
            .map_err(to_api_error)?;
        let mut names = Vec::new();
        for id in ids {
            let app = self.sup.app(id).expect("resolved");
            let spec = app.spec.clone();
            self.flush_output(&spec).map_err(|e| {
                turbo_api::Error::Failed(format!("cannot flush the logs of {}: {e}", spec.name))
            })?;
            names.push(spec.name);
        }
        Ok(Response::Names(names))
    }

    fn save_dump(&self) -> Result<Response, turbo_api::Error> {
        let path = self.paths.dump_file();
        let backup = self.paths.home.join("dump.json.bak");
        storage::write_atomic(&path, &backup, &self.snapshot()).map_err(|e| {
            turbo_api::Error::Failed(format!("cannot write {}: {e}", path.display()))
        })?;
        Ok(Response::Path(path.display().to_string()))
    }

    /// The specs of the dump file's apps that should run and are not managed now.
    fn resurrect_specs(&self) -> Result<Vec<AppSpec>, turbo_api::Error> {
        let file = StateFile::new(self.paths.dump_file());
        let loaded = file
            .load()
            .map_err(|e| turbo_api::Error::Failed(e.to_string()))?;
        if let Some(w) = loaded.warning {
            return Err(turbo_api::Error::Failed(w));
        }
        if loaded.state.apps.is_empty() && !self.paths.dump_file().exists() {
            return Err(turbo_api::Error::NotFound(format!(
                "no dump file at {}: `turbo save` writes one",
                self.paths.dump_file().display()
            )));
        }
        let managed: Vec<&str> = self.sup.apps().map(|a| a.spec.name.as_str()).collect();
        Ok(loaded
            .state
            .apps
            .into_iter()
            .filter(|a| a.desired == Desired::Running && !managed.contains(&a.spec.name.as_str()))
            .map(|a| a.spec)
            // one entry per instance in the dump, one spec per app (it carries the count)
            .fold(Vec::<AppSpec>::new(), |mut specs, spec| {
                if !specs.iter().any(|s| s.name == spec.name) {
                    specs.push(spec);
                }
                specs
            }))
    }

    fn submit(&mut self, command: Command, waiter: Waiter) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.waiters.insert(ticket, waiter);
        self.feed(Input::Command(ticket, command));
    }

    fn begin_shutdown(&mut self, waiter: Waiter) {
        if self.shutting_down {
            // a second SIGTERM/SIGINT: stop waiting for graceful exits
            tracing::warn!("second termination request: killing every app now");
            for pid in self.sup.apps().filter_map(App::pid).collect::<Vec<_>>() {
                let _ = sys::signal_group(pid, libc::SIGKILL);
            }
            return;
        }
        tracing::info!("shutting down: stopping every app");
        crate::notify::stopping();
        crate::notify::status(&format!("stopping {} apps", self.sup.apps().count()));
        self.shutting_down = true;
        self.submit(Command::StopForShutdown, waiter);
    }

    fn info(&self) -> DaemonInfo {
        DaemonInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            mode: self.facts.mode.into(),
            bus_address: self.facts.bus_address.clone(),
            home: self.paths.home.display().to_string(),
            log_dir: self.paths.log_dir.display().to_string(),
            ebpf_setting: self.facts.ebpf_setting.clone(),
            event_source: self.source.kind().as_str().into(),
            event_source_reason: self.source.reason().to_owned(),
            event_fallbacks: self.source.fallbacks(),
            ebpf_programs: self.source.programs(),
            ebpf_exit_events: self.ebpf_exit_events,
            events_lost: self.source.lost_events(),
            uptime_ms: u64::try_from(self.started.0.elapsed().as_millis()).unwrap_or(u64::MAX),
            apps: u32::try_from(self.sup.apps().count()).unwrap_or(u32::MAX),
        }
    }

    /// Builds the public snapshot of `app`. `measure` reads CPU and memory from `/proc`.
    fn status(&self, app: &App, measure: bool) -> AppStatus {
        self.status_read(app, measure.then_some(Reading::Cheap))
    }

    /// Builds the public snapshot of `app`; `reading`: `None` reads nothing (the last leak
    /// verdict is still reported), else how to read the process tree.
    fn status_read(&self, app: &App, reading: Option<Reading>) -> AppStatus {
        let now = Instant::now();
        let (out_log, err_log) = logs::paths(&self.paths.log_dir, &app.spec.name);
        let pid = app.pid().unwrap_or(0);
        let mut st = AppStatus {
            id: app.id,
            name: app.spec.name.clone(),
            instance: app.instance,
            state: app.state.public().as_str().into(),
            pid,
            restarts: app.restarts,
            uptime_ms: app.since().map_or(0, |s| {
                u64::try_from(now.duration_since(s).as_millis()).unwrap_or(0)
            }),
            cpu_percent: -1.0,
            memory_bytes: 0,
            memory_pss_bytes: 0,
            memory_limit_bytes: app.spec.memory.max.unwrap_or(0),
            leak_suspected: false,
            memory_growth_bytes_per_hour: AppStatus::GROWTH_UNKNOWN,
            health: app.health.public(app.spec.health.is_some()).as_str().into(),
            next_restart_in_ms: match app.state {
                State::Backoff { until } => {
                    u64::try_from(until.saturating_duration_since(now).as_millis())
                        .unwrap_or(0)
                        .max(1)
                }
                _ => 0,
            },
            argv: app.spec.argv.clone(),
            cwd: app.spec.cwd.display().to_string(),
            out_log: out_log.display().to_string(),
            err_log: err_log.display().to_string(),
            status_text: app.notify.status.clone().unwrap_or_default(),
            last_exit: app
                .last_exit
                .as_ref()
                .map_or_else(ExitInfo::default, |e| ExitInfo {
                    code: e.status.code().unwrap_or(-1),
                    signal: e.status.signal().unwrap_or(0),
                    reason: e.reason.as_str().into(),
                    at_ms: self.wall_ms(e.at),
                    source: e.source.as_str().into(),
                }),
        };
        if let Some(how) = reading
            && let Some(m) = self.measure(app, now, how)
        {
            st.memory_bytes = m.rss_bytes;
            st.memory_pss_bytes = m.pss_bytes.unwrap_or(0);
            st.cpu_percent = m.cpu_percent;
        }
        let verdict = self.leak_verdict(app);
        st.leak_suspected = verdict.suspected;
        if let Some(rate) = verdict.bytes_per_hour {
            #[expect(clippy::cast_possible_truncation, reason = "bytes per hour fit an i64")]
            let rate = rate.round() as i64;
            st.memory_growth_bytes_per_hour = rate.max(AppStatus::GROWTH_UNKNOWN + 1);
        }
        st
    }

    /// Reads the whole process tree of `app` now and books it (CPU window, CPU counter, leak
    /// samples); `None` while it has no process.
    fn measure(&self, app: &App, now: Instant, how: Reading) -> Option<usage::Measured> {
        let pid = app.pid()?;
        let cached_pss = match how {
            Reading::Cheap => None,
            Reading::WithPss(max_age) => self
                .usage
                .borrow()
                .get(&app.id)
                .and_then(|u| u.pss_within(pid, now, max_age)),
        };
        let deep = matches!(how, Reading::WithPss(_)) && cached_pss.is_none();
        let descendants = self.tree.get(&app.id).into_iter().flatten().copied();
        let sample = sys::sample_tree(pid, descendants, deep, &mut self.main_files.borrow_mut())?;
        // crash records keep the main process's own figure (what the kernel limits act on)
        self.saw_rss(pid, sample.main_rss_bytes);
        let uptime = app
            .since()
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        let mut books = self.usage.borrow_mut();
        let book = books
            .entry(app.id)
            .or_insert_with(|| usage::AppUsage::new(pid, self.monitor.leak));
        let mut m = book.observe(pid, now, uptime, &sample, self.monitor.cpu_window, deep);
        if !deep {
            m.pss_bytes = cached_pss;
        }
        Some(m)
    }

    /// The leak verdict on `app`'s current process.
    fn leak_verdict(&self, app: &App) -> LeakVerdict {
        app.pid().map_or(LeakVerdict::UNKNOWN, |pid| {
            self.usage
                .borrow()
                .get(&app.id)
                .map_or(LeakVerdict::UNKNOWN, |u| u.verdict(pid))
        })
    }

    /// The sampler: one cheap reading (no PSS) of every running app's tree.
    fn sample_all(&self) {
        let now = Instant::now();
        for app in self.sup.apps() {
            let _ = self.measure(app, now, Reading::Cheap);
        }
        self.close_stale_files();
    }

    /// Closes the kept `/proc` files of processes that are no longer an app's main process
    /// (those that exited are closed as they are reaped; this catches any other way out).
    fn close_stale_files(&self) {
        let mains = self.sup.apps().filter_map(App::pid).collect();
        self.main_files.borrow_mut().keep_only(&mains);
    }

    /// The sampler with eBPF: one leak sample of every running app, as cheaply as it can be
    /// read (the main process's `statm` when the event source knows of no descendants, the
    /// cheap tree reading otherwise). All apps in one wake-up rather than spread out: the
    /// reads cost the same either way, and one wake-up per interval is the cheapest schedule.
    fn sample_leaks(&self) {
        let now = Instant::now();
        for app in self.sup.apps() {
            let Some(pid) = app.pid() else { continue };
            if self.tree.get(&app.id).is_some_and(|t| !t.is_empty()) {
                let _ = self.measure(app, now, Reading::Cheap);
            } else if let Some(rss) = sys::resident_bytes(pid) {
                self.book_memory(app.id, pid, now, rss);
            }
        }
    }

    /// Books a resident-memory figure of `pid` (the whole tree of app `id`) as a leak sample.
    fn book_memory(&self, id: AppId, pid: u32, now: Instant, rss: u64) {
        self.usage
            .borrow_mut()
            .entry(id)
            .or_insert_with(|| usage::AppUsage::new(pid, self.monitor.leak))
            .memory(pid, now, rss);
    }

    /// A resident-memory figure from the event source (a threshold crossing): a free leak
    /// sample, when it covers the whole tree (the app has no known descendants).
    fn memory_reading(&self, pid: u32, rss: u64) {
        let Some(app) = self.sup.apps().find(|a| a.pid() == Some(pid)) else {
            return;
        };
        if self.tree.get(&app.id).is_some_and(|t| !t.is_empty()) {
            return;
        }
        self.book_memory(app.id, pid, Instant::now(), rss);
    }

    /// Books the state `id` is in now (restart counting).
    fn count_state(&mut self, id: AppId) {
        if let Some(a) = self.sup.app(id) {
            self.counts.entry(id).or_default().state_changed(
                &a.state,
                a.restarts,
                a.last_exit.as_ref().map(|e| e.reason),
                Instant::now(),
            );
        }
    }

    /// What a scrape reports, measured now (PSS included).
    fn metrics_snapshot(&self) -> MetricsSnapshot {
        let now = Instant::now();
        let mut seen = std::collections::HashSet::new();
        let apps = self
            .sup
            .apps()
            // during a reload a replacement shares its name and instance number with the
            // instance it replaces: one series per pair, the older app's, until it is gone
            .filter(|app| seen.insert((app.spec.name.as_str(), app.instance)))
            .map(|app| {
                let m = self.measure(app, now, Reading::WithPss(PSS_MAX_AGE));
                let counts = self.counts.get(&app.id);
                let restarts = RESTART_REASONS
                    .iter()
                    .map(|r| {
                        (
                            *r,
                            counts.and_then(|c| c.restarts.get(r)).copied().unwrap_or(0),
                        )
                    })
                    .collect();
                let mut exits: Vec<(&'static str, u64)> = EXIT_REASONS
                    .iter()
                    .map(|r| {
                        (
                            *r,
                            counts.and_then(|c| c.exits.get(r)).copied().unwrap_or(0),
                        )
                    })
                    .collect();
                for (reason, n) in counts.into_iter().flat_map(|c| &c.exits) {
                    if !EXIT_REASONS.contains(reason) {
                        exits.push((reason, *n));
                    }
                }
                AppMetrics {
                    name: app.spec.name.clone(),
                    instance: app.instance,
                    state: app.state.public(),
                    health: app.health.public(app.spec.health.is_some()),
                    restarts,
                    oom_kills: counts
                        .and_then(|c| c.exits.get(turbo_api::ExitReason::OomKill.as_str()))
                        .copied()
                        .unwrap_or(0),
                    exits,
                    cpu_seconds: m.map(|m| (m.user_seconds, m.system_seconds)),
                    rss_bytes: m.map(|m| m.rss_bytes),
                    pss_bytes: m.and_then(|m| m.pss_bytes),
                    processes: m.map(|m| m.processes),
                    memory_limit_bytes: app.spec.memory.max,
                    start_time_seconds: app.since().map(|s| self.wall_ms(s) as f64 / 1000.0),
                    leak: self.leak_verdict(app),
                }
            })
            .collect();
        MetricsSnapshot {
            version: env!("CARGO_PKG_VERSION"),
            event_source: self.source.kind().as_str(),
            events_lost: self.source.lost_events(),
            daemon: sys::daemon_stats(),
            apps,
            logs: Vec::new(),
        }
    }
}

/// One line about a health check for `describe`.
fn describe_check(check: &crate::supervisor::HealthSpec) -> String {
    let ms = |d: Duration| d.as_millis();
    let mut line = format!(
        "{} every {}ms, timeout {}ms, restart after {} failures {}ms apart",
        check.probe.describe(),
        ms(check.interval),
        ms(check.timeout),
        check.retries,
        ms(check.retry_delay)
    );
    if !check.start_period.is_zero() {
        line.push_str(&format!(", start period {}ms", ms(check.start_period)));
    }
    line
}

fn describe_exit(code: i32, signal: i32) -> String {
    match (code, signal) {
        (_, s) if s > 0 => format!("signal {s}"),
        (c, _) if c >= 0 => format!("exit code {c}"),
        _ => "an unknown status (not our child)".into(),
    }
}

/// Waits for `pid` to exit, reaps it if it is our child, and reports the exit and, when its
/// process group is empty, that too (saving the group watcher a poll).
async fn reap_when_exited(pid: u32, pidfd: OwnedFd, tx: mpsc::UnboundedSender<Internal>) {
    // SAFETY: the AsyncFd owns the pidfd, so the fd stays open and the same while registered.
    let afd = match unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
    {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("cannot watch pid {pid}: {e}");
            return;
        }
    };
    loop {
        let Ok(mut guard) = afd.readable().await else {
            return;
        };
        let status = match sys::reap(afd.get_ref()) {
            Ok(status) => status,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                guard.clear_ready();
                continue;
            }
            // not our child (adopted after a daemon restart): it is gone, how is unknown here
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => WaitStatus::UNKNOWN,
            Err(e) => {
                tracing::error!("reaping pid {pid} failed: {e}");
                return;
            }
        };
        let _ = tx.send(Internal::Input(Input::Exited {
            pid,
            status,
            source: SourceKind::Procfs,
        }));
        // the group may be empty now; the loop knows the descendants too
        let _ = tx.send(Internal::CheckGroups);
        return;
    }
}

/// `specs` if a resurrect by `caller` may start them all: root and the daemon's own user may
/// start any; anyone else only apps that run as themselves (bringing back another user's
/// deleted app would be starting it on that user's behalf).
fn owned_by(caller: config::Caller, specs: Vec<AppSpec>) -> Result<Vec<AppSpec>, turbo_api::Error> {
    if !caller.is_scoped() {
        return Ok(specs);
    }
    let daemon_uid = config::Caller::daemon().uid;
    let others: Vec<String> = specs
        .iter()
        .filter_map(|s| {
            let run_as = s.privileges.run_as.as_ref();
            let uid = run_as.map_or(daemon_uid, |r| r.uid);
            (uid != caller.uid).then(|| {
                let user = run_as.map_or_else(|| format!("uid {uid}"), |r| r.user.clone());
                format!("{} (as {user})", s.name)
            })
        })
        .collect();
    if others.is_empty() {
        return Ok(specs);
    }
    Err(turbo_api::Error::AccessDenied(format!(
        "uid {} may not resurrect apps that run as other users: {}; ask root to resurrect them",
        caller.uid,
        others.join(", ")
    )))
}

fn to_api_error(e: CommandError) -> turbo_api::Error {
    let msg = e.to_string();
    match e {
        CommandError::NotFound(_) => turbo_api::Error::NotFound(msg),
        CommandError::AlreadyExists(_) => turbo_api::Error::AlreadyExists(msg),
        CommandError::Duplicate(_) => turbo_api::Error::InvalidArgument(msg),
        CommandError::SpawnFailed(_) => turbo_api::Error::SpawnFailed(msg),
        CommandError::Busy(_) | CommandError::ReloadFailed(_) => turbo_api::Error::Failed(msg),
        CommandError::Invalid(_) => turbo_api::Error::InvalidArgument(msg),
        CommandError::NotReady(_) => turbo_api::Error::Failed(msg),
    }
}

/// Resource usage of app process trees, read from `/proc` when asked, and the books the runtime
/// keeps between two readings: CPU samples for the rolling window, the monotonic CPU counter,
/// the leak detector's samples, and the restart and exit counters by reason.
///
/// Bookkeeping only: no decisions (the leak detector judges, the runtime reports) and no OS
/// access (the `/proc` readers are in [`sys`]).
mod usage {
    use std::{
        collections::{BTreeMap, VecDeque},
        time::{Duration, Instant},
    };

    use turbo_api::ExitReason;

    use super::sys::{self, TreeSample};
    use crate::supervisor::{
        State,
        leak::{LeakDetector, LeakPolicy, LeakVerdict},
    };

    /// A reading with what the books made of it.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct Measured {
        /// CPU use over the rolling window, percent of one core.
        pub cpu_percent: f64,
        /// The tree's user CPU seconds (monotonic while the main process lives).
        pub user_seconds: f64,
        /// The tree's system CPU seconds, likewise.
        pub system_seconds: f64,
        /// Resident bytes of the tree.
        pub rss_bytes: u64,
        /// PSS of the tree, when read.
        pub pss_bytes: Option<u64>,
        /// Live processes in the tree.
        pub processes: u32,
    }

    /// The books of one app's current main process; a new process starts new books.
    #[derive(Debug)]
    pub struct AppUsage {
        pid: u32,
        /// `(when, total ticks)`, oldest first: at most one sample older than the window, and
        /// about ten inside it.
        cpu: VecDeque<(Instant, u64)>,
        /// The highest user and system ticks reported so far: the counter must never go back,
        /// and it would when a descendant that left the tree (an orphan reaped by init) exits.
        high: (u64, u64),
        leak: LeakDetector,
        /// The last PSS reading and when it was taken.
        pss: Option<(Instant, u64)>,
    }

    impl AppUsage {
        /// Empty books for process `pid`.
        pub const fn new(pid: u32, policy: LeakPolicy) -> Self {
            Self {
                pid,
                cpu: VecDeque::new(),
                high: (0, 0),
                leak: LeakDetector::new(policy),
                pss: None,
            }
        }

        fn for_pid(&mut self, pid: u32) {
            if self.pid != pid {
                self.pid = pid;
                self.cpu.clear();
                self.high = (0, 0);
                self.leak.reset();
                self.pss = None;
            }
        }

        /// The last PSS reading of process `pid`, if taken at most `max_age` before `now`.
        pub fn pss_within(&self, pid: u32, now: Instant, max_age: Duration) -> Option<u64> {
            self.pss
                .filter(|&(at, _)| pid == self.pid && now.saturating_duration_since(at) <= max_age)
                .map(|(_, v)| v)
        }

        /// Books a reading of the tree of `pid` (running for `uptime`) taken at `now`; `deep`:
        /// the reading tried PSS (its `pss_bytes` replaces the last one).
        pub fn observe(
            &mut self,
            pid: u32,
            now: Instant,
            uptime: Duration,
            sample: &TreeSample,
            window: Duration,
            deep: bool,
        ) -> Measured {
            self.for_pid(pid);
            if deep {
                self.pss = sample.pss_bytes.map(|v| (now, v));
            }
            self.high = (self.high.0.max(sample.user), self.high.1.max(sample.system));
            let hz = sys::clock_ticks() as f64;
            let cpu_percent = self.cpu_percent(now, self.high.0 + self.high.1, uptime, window, hz);
            self.leak.record(now, sample.rss_bytes);
            Measured {
                cpu_percent,
                user_seconds: self.high.0 as f64 / hz,
                system_seconds: self.high.1 as f64 / hz,
                rss_bytes: sample.rss_bytes,
                pss_bytes: sample.pss_bytes,
                processes: sample.processes,
            }
        }

        /// A memory reading from elsewhere (a threshold crossing) for the leak detector.
        pub fn memory(&mut self, pid: u32, now: Instant, bytes: u64) {
            self.for_pid(pid);
            self.leak.record(now, bytes);
        }

        /// The leak verdict on process `pid`.
        pub fn verdict(&self, pid: u32) -> LeakVerdict {
            if pid == self.pid {
                self.leak.verdict()
            } else {
                LeakVerdict::UNKNOWN
            }
        }

        /// CPU percent of one core between the newest sample at least `window` old (or the
        /// oldest one) and now; over the process's lifetime when no sample is at least 200 ms
        /// old (the first look: a shorter delta would be mostly rounding).
        fn cpu_percent(
            &mut self,
            now: Instant,
            ticks: u64,
            uptime: Duration,
            window: Duration,
            hz: f64,
        ) -> f64 {
            while self.cpu.len() >= 2 && now.saturating_duration_since(self.cpu[1].0) >= window {
                self.cpu.pop_front();
            }
            let (d_ticks, d_secs) = match self.cpu.front() {
                Some(&(at, t0)) if now.saturating_duration_since(at) >= MIN_CPU_SPAN => (
                    ticks.saturating_sub(t0),
                    now.saturating_duration_since(at).as_secs_f64(),
                ),
                _ => (ticks, uptime.as_secs_f64()),
            };
            if self
                .cpu
                .back()
                .is_none_or(|&(at, _)| now.saturating_duration_since(at) >= window / 10)
            {
                self.cpu.push_back((now, ticks));
            }
            if d_secs <= 0.0 {
                return 0.0;
            }
            (d_ticks as f64 / hz / d_secs * 1000.0).round() / 10.0
        }
    }

    /// Deltas over less than this are too coarse (ticks are 10 ms) to be a percentage.
    const MIN_CPU_SPAN: Duration = Duration::from_millis(200);

    /// The restart reason a previous exit stands for (`turbo_app_restarts_total{reason}`).
    pub const fn restart_reason(exit: ExitReason) -> &'static str {
        match exit {
            ExitReason::Exit | ExitReason::Signal => "crash",
            ExitReason::OomKill => "oom_kill",
            ExitReason::MemoryLimit => "memory_limit",
            ExitReason::Health => "health",
            ExitReason::Watch => "watch",
            ExitReason::Manual => "manual",
        }
    }

    /// Counters by reason of one app since the daemon started, and the state it was last seen
    /// in (to tell why the next restart happened). A consumer of state-change notifications, like
    /// the crash store: it decides nothing.
    #[derive(Clone, Debug, Default)]
    pub struct Counts {
        /// Restarts by reason (see [`restart_reason`]).
        pub restarts: BTreeMap<&'static str, u64>,
        /// Exits nobody asked for, by [`ExitReason`].
        pub exits: BTreeMap<&'static str, u64>,
        restarts_seen: Option<u32>,
        last_state: Option<State>,
    }

    impl Counts {
        /// Books the app's state after a change at `now`. A grown restart count is a restart,
        /// whose reason the state before tells: `backoff` whose delay passed, an automatic
        /// restart after the last exit; `stopping` for `max_memory`, a memory-limit restart;
        /// anything else (a stopping by request, a restart out of `backoff`, `errored` or
        /// `stopped`), a restart by hand.
        pub fn state_changed(
            &mut self,
            state: &State,
            restarts: u32,
            last_exit: Option<ExitReason>,
            now: Instant,
        ) {
            if let Some(seen) = self.restarts_seen
                && restarts > seen
            {
                let reason = match &self.last_state {
                    Some(State::Backoff { until }) if now >= *until => {
                        last_exit.map_or("crash", restart_reason)
                    }
                    Some(State::Stopping { cause, .. }) => restart_reason(*cause),
                    _ => "manual",
                };
                *self.restarts.entry(reason).or_default() += u64::from(restarts - seen);
            }
            self.restarts_seen = Some(restarts);
            self.last_state = Some(state.clone());
        }

        /// Adds the counters of the instance a reload replaced, and that replacement, a restart
        /// by hand.
        pub fn take_over(&mut self, old: Self) {
            for (reason, n) in old.restarts {
                *self.restarts.entry(reason).or_default() += n;
            }
            for (reason, n) in old.exits {
                *self.exits.entry(reason).or_default() += n;
            }
            *self.restarts.entry("manual").or_default() += 1;
        }

        /// Books an exit nobody asked for.
        pub fn exited(&mut self, reason: ExitReason) {
            *self.exits.entry(reason.as_str()).or_default() += 1;
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn sampler_schedule_by_source() {
            use super::super::{MonitorSettings, SourceKind};
            let m = MonitorSettings::default();
            assert_eq!(
                m.sample_interval_for(SourceKind::Procfs),
                Duration::from_secs(5)
            );
            // eBPF: leak samples only, 12 of them within the first quarter of the window
            let ebpf = m.sample_interval_for(SourceKind::Ebpf);
            assert_eq!(ebpf, Duration::from_secs(75));
            assert!(ebpf * crate::supervisor::leak::MIN_POINTS as u32 <= m.leak.window / 4);
            let short = MonitorSettings {
                leak: LeakPolicy {
                    window: Duration::from_secs(12),
                    ..LeakPolicy::default()
                },
                ..m
            };
            assert_eq!(
                short.sample_interval_for(SourceKind::Ebpf),
                Duration::from_millis(250)
            );
            let set = MonitorSettings {
                sample_interval: Some(Duration::from_millis(200)),
                ..m
            };
            assert_eq!(
                set.sample_interval_for(SourceKind::Ebpf),
                Duration::from_millis(200)
            );
        }

        #[test]
        fn cpu_window_and_monotonic_counter() {
            let t0 = Instant::now();
            let mut u = AppUsage::new(7, LeakPolicy::default());
            let window = Duration::from_secs(10);
            let hz = sys::clock_ticks() as f64;
            let ticks = |secs: f64| (secs * hz) as u64;
            let at = |s: u64| t0 + Duration::from_secs(s);
            let sample = |user: u64| TreeSample {
                user,
                rss_bytes: 1,
                processes: 1,
                ..TreeSample::default()
            };
            // first look: the lifetime average (2 s of CPU in 4 s)
            let m = u.observe(
                7,
                at(0),
                Duration::from_secs(4),
                &sample(ticks(2.0)),
                window,
                false,
            );
            assert!((m.cpu_percent - 50.0).abs() < 0.2, "{m:?}");
            // 5 s later, 5 s more CPU: one core busy
            let m = u.observe(
                7,
                at(5),
                Duration::from_secs(9),
                &sample(ticks(7.0)),
                window,
                false,
            );
            assert!((m.cpu_percent - 100.0).abs() < 0.2, "{m:?}");
            // a descendant's time left the tree: the counter holds, the rate is 0
            let m = u.observe(
                7,
                at(20),
                Duration::from_secs(24),
                &sample(ticks(6.0)),
                window,
                false,
            );
            assert!((m.user_seconds - 7.0).abs() < 0.02, "{m:?}");
            // idle for a window: 0%, measured over the window only
            let m = u.observe(
                7,
                at(31),
                Duration::from_secs(35),
                &sample(ticks(7.0)),
                window,
                false,
            );
            assert!(m.cpu_percent < 0.1, "{m:?}");
            assert!(u.cpu.len() <= 12);
            // PSS readings are kept for reuse, per process
            let with_pss = TreeSample {
                pss_bytes: Some(5),
                ..sample(ticks(7.0))
            };
            u.observe(7, at(32), Duration::from_secs(36), &with_pss, window, true);
            assert_eq!(u.pss_within(7, at(40), Duration::from_secs(30)), Some(5));
            assert_eq!(u.pss_within(7, at(63), Duration::from_secs(30)), None);
            assert_eq!(u.pss_within(8, at(40), Duration::from_secs(30)), None);
            // a new process: new books
            let m = u.observe(
                8,
                at(32),
                Duration::from_secs(1),
                &sample(ticks(0.5)),
                window,
                false,
            );
            assert!((m.user_seconds - 0.5).abs() < 0.02, "{m:?}");
            assert!((m.cpu_percent - 50.0).abs() < 0.2, "{m:?}");
        }

        #[test]
        fn restarts_by_reason() {
            let t0 = Instant::now();
            let mut c = Counts::default();
            let online = State::Online { pid: 1, since: t0 };
            c.state_changed(&online, 4, None, t0); // restored with 4: not counted
            let backoff = State::Backoff {
                until: t0 + Duration::from_secs(1),
            };
            c.state_changed(&backoff, 4, Some(ExitReason::Signal), t0);
            let later = t0 + Duration::from_secs(1);
            c.state_changed(&State::Starting, 5, Some(ExitReason::Signal), later);
            c.state_changed(&online, 5, Some(ExitReason::Signal), later);
            let stopping = |cause| State::Stopping {
                pid: 1,
                since: t0,
                deadline: later,
                killed: false,
                exited: false,
                cause,
                then: crate::supervisor::AfterStop::Start,
            };
            c.state_changed(&stopping(ExitReason::MemoryLimit), 5, None, later);
            c.state_changed(&State::Starting, 6, Some(ExitReason::MemoryLimit), later);
            c.state_changed(&stopping(ExitReason::Manual), 6, None, later);
            c.state_changed(&State::Starting, 7, Some(ExitReason::Manual), later);
            // restarted by hand while waiting in backoff
            c.state_changed(&backoff, 7, Some(ExitReason::Exit), t0);
            c.state_changed(&State::Starting, 8, Some(ExitReason::Exit), t0);
            let got: Vec<_> = c.restarts.iter().map(|(k, v)| (*k, *v)).collect();
            assert_eq!(got, [("crash", 1), ("manual", 2), ("memory_limit", 1)]);
            c.exited(ExitReason::OomKill);
            assert_eq!(c.exits.get("oom_kill"), Some(&1));
        }
    }
}
