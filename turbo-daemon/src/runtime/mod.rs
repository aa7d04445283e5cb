//! The runtime: the one loop that owns the [`Supervisor`] and carries out its actions.
//!
//! Inputs arrive on channels (requests from the adapters, process events from the active
//! source, reaped exits, timers, notify datagrams, termination signals); each becomes a
//! supervisor [`Input`]; the returned actions are carried out ([`execute`]) through the OS
//! layer ([`crate::os`]). Replies and notices go back out on channels, so the adapters never
//! touch supervisor state. This module must not make lifecycle decisions: if it needs an `if`
//! about an app's state, that belongs in the supervisor.
//!
//! Responsibilities, one file each:
//!
//! * this file: the loop and the order in which it takes its inputs;
//! * [`requests`]: requests and their typed replies, translated into commands;
//! * [`kernel`]: what the event sources report (exits, forks, execs, signals, OOM kills) and
//!   the timeline entries it makes;
//! * [`execute`]: carrying out actions (timers, signals, spawns, notifications);
//! * [`spawner`]: preparing a spawn plan (environment, identity, sockets, cgroup, watcher);
//! * [`procs`]: the process table (descendants, group waits, departed pids, crash facts);
//! * [`lost`]: recovering the process trees after eBPF events were lost;
//! * [`crashes`]: crash assembly into a domain [`crashes::Crash`] and the crash store;
//! * [`persist`]: the debounced state file, the dump file, restoring at start-up;
//! * [`marks`]: the mark every spawned process carries, and finding marked processes again;
//! * [`usage`]: resource readings and the books between them (CPU window, leaks, counters);
//! * [`view`]: the only builder of what callers see (statuses, info, describe, metrics);
//! * [`version`]: the counter of changes that tells adapters an answer they hold is out of date;
//! * [`output`]: where app output goes (the log keeper, or this daemon);
//! * [`listen`], [`watch`], [`probe`]: `listen:` sockets, watch mode, health probes.
//!
//! Resource figures are read on demand: `status`, `describe` and each metrics scrape read the
//! app's whole process tree (the main process, the descendants the event source reported, and
//! their children in `/proc`) when asked. The one periodic reader is the sampler
//! ([`MonitorSettings::sample_interval_for`]). With the procfs fallback it reads every running
//! app's tree (`stat` and `children` per process) every 5 s, feeding the CPU window and the leak
//! detector ([`crate::supervisor::leak`]). With eBPF it only feeds the leak detector, so it wakes
//! once per `leak window / 48` (75 s by default) and reads one `statm` per app (the tree only for
//! apps with descendants). Never `smaps` (PSS), which only `describe` and scrapes read.

pub mod alerts;
pub mod apply;
mod crashes;
mod execute;
mod hooks;
mod insight;
mod kernel;
pub mod listen;
mod lost;
mod marks;
mod output;
mod persist;
pub mod probe;
mod procs;
pub mod requests;
mod spawner;
mod usage;
mod version;
mod view;
pub mod watch;

use std::{
    collections::VecDeque,
    path::PathBuf,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use turbo_api::{AppStatus, CrashRecord};

pub use self::{
    insight::Net as NetView,
    requests::{AppsOp, CrashReport, Described, Listed, Reply, Request},
    usage::{LIST_MAX_AGE, MonitorSettings, RestartReason},
    version::StateVersion,
    view::{AppMetrics, InsightMetrics, MetricsSnapshot},
};
use self::{
    requests::Waiter,
    usage::{Reading, Usage},
    view::WallClock,
};
pub use crate::os::proc::ProcessStats;
use crate::{
    events::{Event, EventSource, NetKind, SourceKind},
    os::process as os,
    supervisor::{AppId, Command, Input, NotifyMessage, Supervisor, Ticket},
};

/// Why [`Runtime::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every app stopped; the daemon exits.
    Shutdown,
    /// The state is saved and the apps run on: the daemon re-executes itself.
    Upgrade,
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
    /// An exec inside an app's tree (eBPF): app name, pid, filename, allowed by `exec_allow`.
    Exec(String, u32, String, bool),
    /// An event `turbo events` lists: app name, the event.
    Event(String, turbo_api::KernelEvent),
}

/// Where things live.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `TURBO_HOME`.
    pub home: PathBuf,
    /// App log files.
    pub log_dir: PathBuf,
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
    /// The exporter's address, or why it is off.
    pub metrics: crate::metrics::Exporter,
}

/// How long after a pass of the loop that did work the heap is trimmed (`malloc_trim`). A burst
/// (starting 1000 apps from one file, a scrape, a status of every app) leaves free memory spread
/// through the heap that glibc keeps for good unless it is at the top: 1.1 of 2.6 MB of heap
/// after starting 100 apps. At most one trim a second, however busy the loop is; none while
/// it is idle.
const TRIM_AFTER: Duration = Duration::from_secs(1);

/// Events the loop sends itself.
enum Internal {
    /// For the supervisor.
    Input(Input),
    /// A crash is complete (its process's stderr was read to the end, or timed out).
    CrashReady(AppId, crashes::Crash),
    /// The debounce delay of the state file passed.
    SaveDue,
    /// A process of this app was reaped, or its group looks gone: its awaited process group
    /// may be empty now.
    CheckGroup(AppId),
    /// An app's main process was reaped: how it ended, and its peak memory (`ru_maxrss`);
    /// `retried` once it was put back to let eBPF's report of the same exit go first.
    Reaped {
        app: AppId,
        pid: u32,
        status: crate::events::WaitStatus,
        peak_bytes: u64,
        retried: bool,
    },
    /// Watched files of an app changed.
    FilesChanged(AppId, watch::Change),
    /// The watcher of an app, set up off the loop (`Spawner::sync_watcher`).
    WatcherReady {
        app: AppId,
        name: String,
        result: Result<watch::AppWatcher, String>,
    },
    /// A datagram on the apps' `NOTIFY_SOCKET`, from this pid; `retried` once it was put back
    /// because its sender was not known yet.
    Notified {
        pid: u32,
        datagram: Vec<u8>,
        retried: bool,
    },
}

/// How long a datagram from an unknown pid waits for the event source to report its fork.
const NOTIFY_RETRY_AFTER: Duration = Duration::from_millis(100);

/// Events handled in one turn of the loop at most, so a flood cannot hold requests and timers
/// back for long.
const EVENTS_PER_PASS: usize = 256;

/// How long a reaped main process waits for eBPF's report of its exit. That report is in the
/// ring buffer before the pidfd turns readable (the kernel writes it in `do_exit`, before it
/// tells the parent), but its reader task may not have run yet; only a lost event makes the
/// whole wait, and then the reap's own figures stand.
const EBPF_EXIT_WAIT: Duration = Duration::from_millis(100);

/// The loop's channels.
struct Channels {
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    requests_rx: mpsc::UnboundedReceiver<Request>,
    notices: mpsc::UnboundedSender<Notice>,
}

/// Replies the loop owes.
#[derive(Default)]
struct Replies {
    waiters: std::collections::HashMap<Ticket, Waiter>,
    next_ticket: Ticket,
    shutting_down: bool,
    /// An upgrade was asked for: the reply, sent once the state is saved.
    upgrade: Option<Reply<()>>,
}

/// The loop's state. See the module docs.
pub struct Runtime {
    sup: Supervisor,
    paths: Paths,
    facts: DaemonFacts,
    clock: WallClock,
    source: EventSource,
    chan: Channels,
    replies: Replies,
    procs: procs::ProcessTable,
    /// Running members of groups whose zombie leader another process must reap.
    census: procs::GroupCensus,
    losses: lost::LossWatch,
    usage: Usage,
    crashes: crashes::CrashStore,
    insight: insight::Insight,
    /// `on_crash` and `on_state` notifications.
    alerts: alerts::Alerts,
    persist: persist::Persist,
    output: output::Outputs,
    spawner: spawner::Spawner,
    /// Beaten on every pass of the loop; the systemd watchdog pings only while it moves.
    heartbeat: Option<(crate::host::notify::Heartbeat, Duration)>,
    /// Moved on before anything that may change what callers see (see [`version`]).
    version: StateVersion,
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
        let mut spawner = spawner::Spawner::new(&paths.home, &paths.log_dir);
        if source.kind() == SourceKind::Procfs {
            // without eBPF nothing follows a descendant between two /proc scans: each app's
            // cgroup holds them all
            spawner.contain_apps();
        }
        Self {
            sup: Supervisor::new(),
            persist: persist::Persist::new(paths.home.join("state.json")),
            output: output::Outputs::new(paths.log_dir.clone()),
            spawner,
            paths,
            facts,
            clock: WallClock::now(),
            source,
            chan: Channels {
                internal_tx,
                internal_rx,
                events_rx,
                requests_rx,
                notices,
            },
            replies: Replies {
                next_ticket: 1,
                ..Replies::default()
            },
            procs: procs::ProcessTable::default(),
            census: procs::GroupCensus::default(),
            losses: lost::LossWatch::default(),
            usage: Usage::default(),
            crashes: crashes::CrashStore::default(),
            insight: insight::Insight::default(),
            alerts: alerts::Alerts::default(),
            heartbeat: None,
            version: StateVersion::default(),
        }
    }

    /// Counts the loop's changes in `version`, which the D-Bus adapter reads to know whether
    /// the status list it holds still stands.
    pub fn count_changes_in(&mut self, version: StateVersion) {
        self.version = version;
    }

    /// Makes the loop beat `heartbeat` at least every `interval` (for the systemd watchdog).
    pub fn beat_into(&mut self, heartbeat: crate::host::notify::Heartbeat, interval: Duration) {
        self.heartbeat = Some((heartbeat, interval));
    }

    /// Sends app output through `keeper` (else the daemon reads it itself, and loses what it
    /// read but did not write when it is killed).
    pub fn keep_logs_with(&mut self, keeper: crate::keeper::Keeper) {
        self.output.keep_with(keeper);
    }

    /// Sets how resources are sampled and judged (the defaults otherwise).
    pub const fn monitor(&mut self, settings: MonitorSettings) {
        self.usage.configure(settings);
    }

    /// Runs until a shutdown (request or SIGTERM/SIGINT) has stopped every app.
    ///
    /// # Errors
    /// Only if the termination signal handlers cannot be installed.
    pub async fn run(mut self) -> std::io::Result<Ending> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        // orphans of the apps' trees, re-parented to the daemon as subreaper
        let mut sigchld = signal(SignalKind::child())?;
        // an idle loop still passes here every beat interval, proving it is not stuck
        let beat_every = self
            .heartbeat
            .as_ref()
            .map_or(Duration::from_secs(3600), |(_, i)| *i);
        let mut beat_tick = tokio::time::interval(beat_every);
        let sample_every = self
            .usage
            .settings()
            .sample_interval_for(self.source.kind());
        let mut sample_tick = tokio::time::interval(sample_every);
        // a loop busy for a while samples once, late, rather than in a burst
        sample_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // free heap goes back to the kernel once a burst of work is over (see `TRIM_AFTER`)
        let trim = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(trim);
        let mut trim_armed = false;
        loop {
            if let Some((hb, _)) = &self.heartbeat {
                hb.beat();
            }
            let mut worked = true;
            let loss_check = self.losses.due();
            tokio::select! {
                // kernel events first: when an eBPF exit and the pidfd are ready together, the
                // earlier notice should win so `last_exit.source` tells the truth
                biased;
                Some(ev) = self.chan.events_rx.recv() => {
                    self.on_event(ev);
                    // the rest of a batch in this pass: one turn of this loop per event would
                    // cost more than the events under a flood of descendants' forks and exits
                    for _ in 1..EVENTS_PER_PASS {
                        let Ok(ev) = self.chan.events_rx.try_recv() else {
                            break;
                        };
                        self.on_event(ev);
                    }
                    self.after_events();
                }
                Some(msg) = self.chan.internal_rx.recv() => self.on_internal(msg),
                Some(req) = self.chan.requests_rx.recv() => {
                    self.catch_up_events().await;
                    self.on_request(req);
                }
                _ = sigterm.recv() => self.begin_shutdown(Waiter::Silent),
                _ = sigint.recv() => self.begin_shutdown(Waiter::Silent),
                _ = sigchld.recv() => self.reap_orphans(),
                _ = beat_tick.tick() => worked = false,
                () = &mut trim, if trim_armed => {
                    crate::os::alloc::trim_heap();
                    (trim_armed, worked) = (false, false);
                }
                _ = sample_tick.tick() => match self.source.kind() {
                    SourceKind::Procfs => self.sample_all(),
                    SourceKind::Ebpf => self.sample_leaks(),
                },
                () = output::keeper_lost(self.output.keeper()) => self.output.replace_keeper(),
                () = sleep_until(loss_check) => self.look_for_losses(Instant::now()),
            }
            if worked && !trim_armed {
                trim.as_mut()
                    .reset(tokio::time::Instant::now() + TRIM_AFTER);
                trim_armed = true;
            }
            if self.replies.shutting_down && self.replies.waiters.is_empty() {
                // the last change must reach the disk, debounce or not
                self.save_now();
                self.output.release_keeper();
                return Ok(Ending::Shutdown);
            }
            if let Some(reply) = self.replies.upgrade.take() {
                // the new daemon adopts from this file, so it is written now, changed or not
                self.persist.force();
                if self.save_now() {
                    let _ = reply.send(Ok(()));
                    return Ok(Ending::Upgrade);
                }
                let _ = reply.send(Err(turbo_api::Error::Failed(format!(
                    "cannot write {}; not upgrading (see the daemon log)",
                    self.persist.path().display()
                ))));
            }
        }
    }

    /// Reports the waited-for groups (and their apps' descendants) that are gone now: of app
    /// `only`, or of every app (see [`procs::ProcessTable::finished_waits`]).
    fn check_group_waits(&mut self, only: Option<AppId>) {
        let spawner = &self.spawner;
        let cgroup_alive = |app| {
            spawner
                .members(app)
                .into_iter()
                .any(crate::os::proc::pid_alive)
        };
        let census = &mut self.census;
        let group_alive = |pgid| execute::group_running(census, pgid);
        for (app, pgid) in
            self.procs
                .finished_waits(only, group_alive, crate::os::proc::pid_alive, cgroup_alive)
        {
            self.version.bump();
            self.feed(Input::GroupGone { app, pgid });
        }
    }

    /// Reaps the exited orphans the daemon adopted as subreaper (nobody else waits for them);
    /// a stop waiting for them may be over now.
    fn reap_orphans(&mut self) {
        self.version.bump();
        let reaped = os::reap_orphans();
        if !reaped.is_empty() {
            tracing::debug!(?reaped, "reaped orphaned descendants");
            self.check_group_waits(None);
        }
    }

    fn on_internal(&mut self, msg: Internal) {
        self.version.bump();
        match msg {
            Internal::Input(input) => {
                let hook = match &input {
                    Input::HookDone { pid, .. } if *pid != 0 => Some(*pid),
                    _ => None,
                };
                self.feed(input);
                // a failed pre_start took its output for the crash record already
                if let Some(pid) = hook {
                    self.output.gone(pid);
                }
            }
            Internal::CrashReady(app, crash) => self.crash_ready(app, crash),
            Internal::SaveDue => {
                self.persist.due();
                self.save_now();
            }
            Internal::CheckGroup(app) => self.check_group_waits(Some(app)),
            Internal::Reaped {
                app,
                pid,
                status,
                peak_bytes,
                retried,
            } => {
                // the kernel's report of the same exit may be waiting: it goes first, so the
                // record has its sender and its source is the truth (a reader pausing under a
                // flood passes it on at once, for the retry below)
                self.source.hurry();
                while let Ok(ev) = self.chan.events_rx.try_recv() {
                    self.on_event(ev);
                }
                // by the app's key: a walk of every app per exit made a stop of N apps quadratic
                if self.main_app_keyed(app, pid).is_none() {
                    return; // handled already (eBPF was first), or no app's any more
                }
                if self.source.kind() == SourceKind::Ebpf && !retried {
                    let tx = self.chan.internal_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(EBPF_EXIT_WAIT).await;
                        let _ = tx.send(Internal::Reaped {
                            app,
                            pid,
                            status,
                            peak_bytes,
                            retried: true,
                        });
                    });
                    return;
                }
                self.procs.exit_memory(
                    pid,
                    crate::events::ExitMemory {
                        rss_bytes: 0,
                        peak_bytes,
                    },
                );
                self.feed(Input::Exited {
                    pid,
                    status,
                    source: SourceKind::Procfs,
                });
            }
            Internal::FilesChanged(app, change) => {
                self.spawner.watch_new_dirs(app, change.new_dirs);
                self.feed(Input::FilesChanged { app });
            }
            Internal::WatcherReady { app, name, result } => {
                self.spawner.watcher_ready(app, &name, result);
            }
            Internal::Notified {
                pid,
                datagram,
                retried,
            } => {
                let main_of = |p| self.main_app(p);
                match self
                    .procs
                    .app_of_pid(pid, main_of, crate::os::proc::parent_pid)
                {
                    Some(app) => {
                        let message = NotifyMessage::parse(&datagram);
                        self.feed(Input::Notified { app, message });
                    }
                    None if !retried => {
                        // The sender may be a new child whose fork event is still on its way
                        // (the event source and the socket are read by different tasks): ask
                        // again later.
                        let tx = self.chan.internal_tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(NOTIFY_RETRY_AFTER).await;
                            let _ = tx.send(Internal::Notified {
                                pid,
                                datagram,
                                retried: true,
                            });
                        });
                    }
                    None => {
                        tracing::debug!(pid, "notification from a process of no app: ignored");
                    }
                }
            }
        }
    }

    /// Hands one input to the supervisor and executes what it asks, including the inputs that
    /// executing produces (a spawn reports back at once), until nothing is left.
    fn feed(&mut self, input: Input) {
        let mut queue = VecDeque::from([input]);
        // spawns of this pass, told to the supervisor once their output is handed over (in
        // batches of `keeper::pass_budget`), so a process whose output cannot be captured fails its start instead
        let mut spawned = Vec::new();
        loop {
            let Some(input) = queue.pop_front() else {
                // the pipes of the pass's spawns and hooks; their spawns are told after
                self.hand_over(&mut spawned, &mut queue);
                if queue.is_empty() {
                    break;
                }
                continue;
            };
            let exit = match input {
                Input::Exited {
                    pid,
                    status,
                    source,
                } => Some((pid, status, source)),
                _ => None,
            };
            if let Some((pid, status, _)) = exit
                && status.signal() == Some(os::SIGKILL)
                && self
                    .main_app(pid)
                    .is_some_and(|app| self.spawner.cgroup_oom_kill(app))
            {
                // the kernel may have told already (eBPF `mark_victim`); the cgroup's counter
                // tells with any event source
                let _ = self.sup.handle(Input::OomKilled { pid }, Instant::now());
            }
            let now = Instant::now();
            // schedules (`cron:`) are placed by the wall clock, read here and nowhere in the core
            self.sup.set_wall(now, std::time::SystemTime::now());
            let actions = self.sup.handle(input, now);
            if let Some((pid, ..)) = exit {
                // forget the pid (and its memory limit) in the source: a reused pid must not
                // inherit the watch
                self.source.unwatch(pid);
            }
            if let Some((pid, status, source)) = exit
                && !actions.is_empty()
            {
                // an exit the supervisor acted on (duplicates from the second source produce
                // nothing)
                tracing::info!(
                    pid,
                    "process exited: {} (reported by {source})",
                    crashes::describe_status(status)
                );
            }
            self.prepare_spawns(&actions);
            for action in actions {
                match self.execute(action) {
                    Some(next @ Input::Spawned { .. }) => {
                        spawned.push(next);
                        // a start of thousands holds the pipes of at most so many at once
                        if self.output.pass_full() {
                            self.hand_over(&mut spawned, &mut queue);
                        }
                    }
                    Some(next) => queue.push_back(next),
                    None => {}
                }
            }
            if let Some((pid, ..)) = exit {
                // not a crash (those took their entry): the output tasks end on their own
                self.output.gone(pid);
                self.procs.main_exited(pid);
                self.usage.process_gone(pid);
            }
        }
    }

    /// Hands the queued pipes over and queues the `spawned` inputs whose pipes they were, each
    /// told as [`Self::captured`] says.
    fn hand_over(&mut self, spawned: &mut Vec<Input>, queue: &mut VecDeque<Input>) {
        let lost = self.output.hand_over();
        queue.extend(spawned.drain(..).map(|s| self.captured(s, &lost)));
    }

    /// `spawned` (an [`Input::Spawned`]), or its start failed when its output cannot be
    /// captured (`lost`, from [`output::Outputs::hand_over`]): the process is killed, and its
    /// exit, no longer the app's, is ignored.
    fn captured(&self, spawned: Input, lost: &[(u32, String)]) -> Input {
        let Input::Spawned { app, pid } = spawned else {
            return spawned;
        };
        match lost.iter().find(|(p, _)| *p == pid) {
            Some((_, error)) => {
                let _ = os::signal_group(pid, os::SIGKILL);
                Input::SpawnFailed {
                    app,
                    error: error.clone(),
                }
            }
            None => spawned,
        }
    }

    fn submit(&mut self, command: Command, waiter: Waiter) {
        let ticket = self.replies.next_ticket;
        self.replies.next_ticket += 1;
        self.replies.waiters.insert(ticket, waiter);
        self.feed(Input::Command(ticket, command));
    }

    fn begin_shutdown(&mut self, waiter: Waiter) {
        self.version.bump();
        if self.replies.shutting_down {
            // a second SIGTERM/SIGINT: stop waiting for graceful exits
            tracing::warn!("second termination request: killing every app now");
            for pid in self.sup.apps().filter_map(|a| a.pid()).collect::<Vec<_>>() {
                let _ = os::signal_group(pid, os::SIGKILL);
            }
            return;
        }
        tracing::info!("shutting down: stopping every app");
        crate::host::notify::stopping();
        crate::host::notify::status(&format!("stopping {} apps", self.sup.apps().count()));
        self.replies.shutting_down = true;
        self.submit(Command::StopForShutdown, waiter);
    }

    /// Writes the state file if it changed; true when it is up to date. A failed write is
    /// tried again later.
    fn save_now(&mut self) -> bool {
        let (sup, crashes, clock) = (&self.sup, &self.crashes, &self.clock);
        let saved = self
            .persist
            .save_now(|| persist::snapshot(sup, crashes, clock));
        if !saved && !self.replies.shutting_down {
            self.mark_dirty();
        }
        saved
    }

    fn mark_dirty(&mut self) {
        self.persist.mark_dirty(&self.chan.internal_tx);
    }

    /// Reads the tree of app `id` now (see [`Usage::measure`]); the main process's figure is
    /// kept for its crash record.
    fn measure(&mut self, id: AppId, now: Instant, how: Reading) -> Option<usage::Measured> {
        let app = self.sup.app(id)?;
        let (m, main_rss) = self
            .usage
            .measure(app, self.procs.descendants(id), now, how)?;
        if let Some(pid) = app.pid() {
            self.procs.saw_rss(pid, main_rss);
        }
        Some(m)
    }

    /// The sampler: one cheap reading (no PSS) of every running app's tree.
    fn sample_all(&mut self) {
        // new figures: a list built before shows the old ones
        self.version.bump();
        let now = Instant::now();
        let ids: Vec<AppId> = self.sup.apps().map(|a| a.id).collect();
        for id in ids {
            let _ = self.measure(id, now, Reading::Cheap);
        }
        let mains = self.sup.apps().filter_map(|a| a.pid()).collect();
        self.usage.keep_files_of(&mains);
    }

    /// The sampler with eBPF: one leak sample of every running app, as cheaply as it can be
    /// read (the main process's `statm` when the event source knows of no descendants, the
    /// cheap tree reading otherwise). All apps in one wake-up rather than spread out: the
    /// reads cost the same either way, and one wake-up per interval is the cheapest schedule.
    fn sample_leaks(&mut self) {
        self.version.bump();
        let now = Instant::now();
        let running: Vec<(AppId, u32)> = self
            .sup
            .apps()
            .filter_map(|a| Some((a.id, a.pid()?)))
            .collect();
        for (id, pid) in running {
            if self.procs.has_descendants(id) {
                let _ = self.measure(id, now, Reading::Cheap);
            } else if let Some(rss) = crate::os::proc::resident_bytes(pid) {
                self.usage.book_memory(id, pid, now, rss);
            }
        }
    }

    /// A resident-memory figure from the event source (a threshold crossing): the last figure
    /// of the process for its crash record, and a free leak sample when it covers the whole
    /// tree (the app has no known descendants).
    fn memory_reading(&mut self, pid: u32, rss: u64) {
        self.procs.saw_rss(pid, rss);
        let Some(app) = self.main_app(pid) else {
            return;
        };
        if !self.procs.has_descendants(app) {
            self.usage.book_memory(app, pid, Instant::now(), rss);
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
