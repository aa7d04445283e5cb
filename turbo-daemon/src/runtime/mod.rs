//! The runtime: the one loop that owns the [`Supervisor`] and carries out its actions.
//!
//! Inputs arrive on channels (D-Bus requests, process events from the active source, reaped
//! exits, timers, termination signals); each becomes a supervisor [`Input`]; the returned
//! [`Action`]s are executed here through [`sys`]. Replies and notifications go back out on
//! channels, so the D-Bus adapter never touches supervisor state. The runtime also keeps what is
//! not a decision: log writers, crash records (see [`crashes`]) and the state file. This module
//! must not make lifecycle decisions: if it needs an `if` about an app's state, that belongs in
//! the supervisor.

pub mod bus;
pub mod crashes;
pub mod sys;

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
    },
};

/// What a D-Bus caller asked for.
#[derive(Debug)]
pub enum Op {
    /// Daemon description.
    Info,
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
    },
    /// `StartConfig`.
    StartConfig {
        /// Document.
        content: String,
        /// File name for messages.
        origin: String,
        /// Directory relative paths resolve against.
        base_dir: String,
    },
    /// `StopApp`.
    Stop(String),
    /// `RestartApp`.
    Restart(String),
    /// `DeleteApp`.
    Delete(String),
    /// `ResetApp`.
    Reset(String),
    /// `DescribeApp`.
    Describe(String),
    /// `GetCrashes`.
    Crashes(String),
    /// `FlushLogs`.
    Flush(String),
    /// `Save`.
    Save,
    /// `Resurrect`.
    Resurrect,
    /// Stop everything and exit.
    Shutdown,
}

/// A successful answer.
#[derive(Debug)]
pub enum Response {
    /// For `Info`.
    Info(Box<DaemonInfo>),
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
    /// An app is gone.
    Removed(String),
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
}

/// The output streams of one running process.
struct ProcIo {
    tail: logs::StderrTail,
    done: tokio::task::JoinHandle<()>,
}

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
    /// Last CPU reading per pid; a cache, so reads through `&self` may update it.
    cpu_seen: RefCell<HashMap<u32, (u64, Instant)>>,
    /// Last resident memory seen per pid, for crash records of processes already gone.
    rss_seen: RefCell<HashMap<u32, u64>>,
    path_env: String,
    /// Log writers by app *name*, kept after a delete: leftovers of a deleted app may still
    /// write while a new app of the same name starts, and one owner per file keeps rotation safe.
    logs: HashMap<String, logs::AppLogs>,
    procs: HashMap<u32, ProcIo>,
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
    /// Resident memory of OOM victims when the kernel chose them.
    oom_memory: HashMap<u32, u64>,
    /// Beaten on every pass of the loop; the systemd watchdog pings only while it moves.
    heartbeat: Option<(crate::notify::Heartbeat, Duration)>,
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
            cpu_seen: RefCell::default(),
            rss_seen: RefCell::default(),
            path_env: std::env::var("PATH")
                .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            logs: HashMap::new(),
            procs: HashMap::new(),
            crashes: crashes::CrashStore::default(),
            dirty: false,
            save_scheduled: false,
            last_save: None,
            heartbeat: None,
            tree: HashMap::new(),
            group_waits: HashMap::new(),
            fatal_signals: HashMap::new(),
            oom_memory: HashMap::new(),
        }
    }

    /// Makes the loop beat `heartbeat` at least every `interval` (for the systemd watchdog).
    pub fn beat_into(&mut self, heartbeat: crate::notify::Heartbeat, interval: Duration) {
        self.heartbeat = Some((heartbeat, interval));
    }

    /// Loads the state file and restores its apps: adopts processes still running from before
    /// (same pid and start time), starts the others that should run.
    ///
    /// # Errors
    /// When the state file exists but cannot be read (not when it is corrupt: then the backup is
    /// used and a warning logged).
    pub fn restore(&mut self) -> std::io::Result<()> {
        let loaded = self.state_file.load()?;
        if let Some(w) = &loaded.warning {
            tracing::warn!("{w}");
        }
        let restored = self.restored_apps(loaded.state);
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
                // status), but its output pipes died with the previous daemon
                if let Err(e) = self.watch_process(app.id, p.pid, None) {
                    tracing::warn!(app = %app.spec.name, "cannot adopt pid {}: {e}", p.pid);
                    return None;
                }
                tracing::info!(app = %app.spec.name, pid = p.pid, "adopted the running process");
                Some((p.pid, now.checked_sub(age).unwrap_or(now)))
            });
            self.crashes.restore(
                app.id,
                crashes::CrashBook {
                    total: app.total_crashes,
                    records: app.crashes.into_iter().map(CrashRecord::from).collect(),
                },
            );
            out.push(Restored {
                id: app.id,
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
    pub async fn run(mut self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        // an idle loop still passes here every beat interval, proving it is not stuck
        let beat_every = self
            .heartbeat
            .as_ref()
            .map_or(Duration::from_secs(3600), |(_, i)| *i);
        let mut beat_tick = tokio::time::interval(beat_every);
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
                Some(req) = self.requests_rx.recv() => self.on_request(req),
                _ = sigterm.recv() => self.begin_shutdown(Waiter::Silent),
                _ = sigint.recv() => self.begin_shutdown(Waiter::Silent),
                _ = beat_tick.tick() => {}
            }
            if self.shutting_down && self.waiters.is_empty() {
                // the last change must reach the disk, debounce or not
                self.save_now();
                return Ok(());
            }
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
                    tree.remove(&pid);
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
                self.rss_seen.borrow_mut().insert(pid, rss);
                self.feed(Input::MemoryOver { pid, rss, limit });
            }
            Event::MemoryUnder {
                pid, rss, limit, ..
            } => {
                self.rss_seen.borrow_mut().insert(pid, rss);
                self.feed(Input::MemoryUnder { pid, limit });
            }
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
                self.cpu_seen.borrow_mut().remove(&pid);
                self.rss_seen.borrow_mut().remove(&pid);
            }
        }
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

    fn spawn(&mut self, app: AppId, spec: &AppSpec) -> Result<u32, String> {
        let app_logs = match self.logs.get(&spec.name) {
            Some(l) => {
                l.set_policy(&spec.log);
                l.clone()
            }
            None => {
                let l = logs::AppLogs::open(&self.paths.log_dir, &spec.name, &spec.log)
                    .map_err(|e| e.to_string())?;
                self.logs.insert(spec.name.clone(), l.clone());
                l
            }
        };
        let child = sys::spawn(spec).map_err(|e| e.to_string())?;
        let pid = child.pid;
        let capture = app_logs.capture(child.stdout, child.stderr);
        self.procs.insert(
            pid,
            ProcIo {
                tail: capture.stderr_tail,
                done: capture.done,
            },
        );
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
                self.mark_dirty();
            }
            Notification::StateChanged(id) => {
                if let Some(a) = self.sup.app(id) {
                    let _ = self.notices.send(Notice::Changed(self.status(a, false)));
                }
                // the pid and restart count are part of the saved state
                self.mark_dirty();
            }
            Notification::Crashed {
                app,
                pid,
                exit,
                restart_number,
            } => self.record_crash(app, pid, &exit, restart_number),
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
            Notification::Removed { app, name } => {
                self.crashes.remove(app);
                self.tree.remove(&app);
                let _ = self.notices.send(Notice::Removed(name));
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
            .or_else(|| sys::sample(pid).map(|s| s.rss_bytes).filter(|&m| m > 0))
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
        };
        let tx = self.internal_tx.clone();
        match self.procs.remove(&pid) {
            Some(io) => {
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(STDERR_GRACE, io.done).await;
                    record.stderr_tail = io.tail.lines();
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
        let read_only = matches!(op, Op::Info | Op::List | Op::Describe(_) | Op::Crashes(_));
        if self.shutting_down && !read_only {
            let _ = reply.send(Err(turbo_api::Error::Failed(
                "the daemon is shutting down".into(),
            )));
            return;
        }
        if matches!(op, Op::Shutdown) {
            return self.begin_shutdown(Waiter::Shutdown(reply));
        }
        match self.command_for(op) {
            Ok(command) => self.submit(command, Waiter::Apps(reply)),
            Err(answer) => {
                let _ = reply.send(answer);
            }
        }
    }

    /// The supervisor command for `op`, or the answer when `op` needs none.
    fn command_for(&self, op: Op) -> Result<Command, Result<Response, turbo_api::Error>> {
        let command = match op {
            Op::Info => return Err(Ok(Response::Info(Box::new(self.info())))),
            Op::List => {
                let list = self.sup.apps().map(|a| self.status(a, true)).collect();
                return Err(Ok(Response::Apps(list)));
            }
            Op::Describe(t) => return Err(self.describe(&t)),
            Op::Crashes(t) => return Err(self.crash_report(&t)),
            Op::Flush(t) => return Err(self.flush(&t)),
            Op::Save => return Err(self.save_dump()),
            Op::Shutdown => unreachable!("handled by the caller"),
            Op::Resurrect => Command::Start {
                specs: self.resurrect_specs().map_err(Err)?,
                exclusive: false,
            },
            Op::Start {
                name,
                argv,
                options,
            } => Command::Start {
                specs: vec![
                    config::from_options(&name, &argv, &options, &self.path_env, &self.paths.home)
                        .map_err(|e| Err(turbo_api::Error::InvalidArgument(e)))?,
                ],
                exclusive: true,
            },
            Op::StartConfig {
                content,
                origin,
                base_dir,
            } => Command::Start {
                specs: config::parse_config(
                    &content,
                    &origin,
                    std::path::Path::new(&base_dir),
                    &self.path_env,
                )
                .map_err(|e| Err(turbo_api::Error::InvalidConfig(e)))?,
                exclusive: false,
            },
            Op::Stop(t) => Command::Stop(Target::parse(&t)),
            Op::Restart(t) => Command::Restart(Target::parse(&t)),
            Op::Delete(t) => Command::Delete(Target::parse(&t)),
            Op::Reset(t) => Command::Reset(Target::parse(&t)),
        };
        Ok(command)
    }

    fn one_app(&self, target: &str) -> Result<&App, turbo_api::Error> {
        let ids = self
            .sup
            .resolve(&Target::parse(target))
            .map_err(to_api_error)?;
        match ids.as_slice() {
            [id] => Ok(self.sup.app(*id).expect("resolved")),
            [] => Err(turbo_api::Error::NotFound("no apps".into())),
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
        };
        let (_, records) = self.crashes.report(app.id, self.wall_ms(Instant::now()));
        Ok(Response::Describe(Box::new((
            self.status(app, true),
            config,
            records,
        ))))
    }

    fn crash_report(&self, target: &str) -> Result<Response, turbo_api::Error> {
        let app = self.one_app(target)?;
        let report = self.crashes.report(app.id, self.wall_ms(Instant::now()));
        Ok(Response::Crashes(Box::new(report)))
    }

    fn flush(&self, target: &str) -> Result<Response, turbo_api::Error> {
        let ids = self
            .sup
            .resolve(&Target::parse(target))
            .map_err(to_api_error)?;
        let mut names = Vec::new();
        for id in ids {
            let app = self.sup.app(id).expect("resolved");
            let result = match self.logs.get(&app.spec.name) {
                Some(l) => l.flush(),
                // never started by this daemon: its files may still exist
                None => logs::AppLogs::open(&self.paths.log_dir, &app.spec.name, &app.spec.log)
                    .and_then(|l| l.flush()),
            };
            result.map_err(|e| {
                turbo_api::Error::Failed(format!("cannot flush the logs of {}: {e}", app.spec.name))
            })?;
            names.push(app.spec.name.clone());
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
            .collect())
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
        let now = Instant::now();
        let (out_log, err_log) = logs::paths(&self.paths.log_dir, &app.spec.name);
        let pid = app.pid().unwrap_or(0);
        let mut st = AppStatus {
            id: app.id,
            name: app.spec.name.clone(),
            instance: 0,
            state: app.state.public().as_str().into(),
            pid,
            restarts: app.restarts,
            uptime_ms: app.since().map_or(0, |s| {
                u64::try_from(now.duration_since(s).as_millis()).unwrap_or(0)
            }),
            cpu_percent: -1.0,
            memory_bytes: 0,
            memory_limit_bytes: app.spec.memory.max.unwrap_or(0),
            health: Health::None.as_str().into(),
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
        if measure
            && pid != 0
            && let Some(sample) = sys::sample(pid)
        {
            st.memory_bytes = sample.rss_bytes;
            self.rss_seen.borrow_mut().insert(pid, sample.rss_bytes);
            st.cpu_percent = self.cpu_percent(pid, sample.cpu_ticks, st.uptime_ms, now);
        }
        st
    }

    /// CPU use since the previous look at this pid, or over its lifetime on the first look.
    fn cpu_percent(&self, pid: u32, ticks: u64, uptime_ms: u64, now: Instant) -> f64 {
        let hz = sys::clock_ticks() as f64;
        let mut seen = self.cpu_seen.borrow_mut();
        let previous = seen.insert(pid, (ticks, now));
        let (d_ticks, d_secs) = match previous {
            Some((t0, at)) if now.duration_since(at) >= Duration::from_millis(200) => (
                ticks.saturating_sub(t0),
                now.duration_since(at).as_secs_f64(),
            ),
            Some(kept) if now.duration_since(kept.1) < Duration::from_millis(200) => {
                // too close to the last look for a meaningful delta: keep the older baseline
                seen.insert(pid, kept);
                (ticks, uptime_ms as f64 / 1000.0)
            }
            _ => (ticks, uptime_ms as f64 / 1000.0),
        };
        if d_secs <= 0.0 {
            return 0.0;
        }
        (d_ticks as f64 / hz / d_secs * 100.0 * 10.0).round() / 10.0
    }
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

fn to_api_error(e: CommandError) -> turbo_api::Error {
    let msg = e.to_string();
    match e {
        CommandError::NotFound(_) => turbo_api::Error::NotFound(msg),
        CommandError::AlreadyExists(_) => turbo_api::Error::AlreadyExists(msg),
        CommandError::Duplicate(_) => turbo_api::Error::InvalidArgument(msg),
        CommandError::SpawnFailed(_) => turbo_api::Error::SpawnFailed(msg),
    }
}
