//! The runtime: the one loop that owns the [`Supervisor`] and carries out its actions.
//!
//! Inputs arrive on channels (D-Bus requests, process events from the active source, reaped
//! exits, timers, termination signals); each becomes a supervisor [`Input`]; the returned
//! [`Action`]s are executed here through [`sys`]. Replies and notifications go back out on
//! channels, so the D-Bus adapter never touches supervisor state. This module must not make
//! lifecycle decisions: if it needs an `if` about an app's state, that belongs in the supervisor.

pub mod bus;
pub mod sys;

use std::{
    collections::{HashMap, VecDeque},
    os::fd::OwnedFd,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, oneshot},
};
use turbo_api::{AppStatus, DaemonInfo, ExitInfo, Health};

use crate::{
    config,
    events::{ProcEvent, SelectedSource, SourceKind},
    logs,
    supervisor::{
        Action, App, Command, CommandError, Input, Notification, Reply, State, Supervisor, Target,
        Ticket,
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
    /// Deleted names.
    Deleted(Vec<String>),
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
    /// Shutdown started by a signal: nobody to answer.
    Silent,
}

/// The loop's state. See the module docs.
pub struct Runtime {
    sup: Supervisor,
    paths: Paths,
    facts: DaemonFacts,
    source: SelectedSource,
    ebpf_exit_events: u64,
    inputs_tx: mpsc::UnboundedSender<Input>,
    inputs_rx: mpsc::UnboundedReceiver<Input>,
    events_rx: mpsc::UnboundedReceiver<ProcEvent>,
    requests_rx: mpsc::UnboundedReceiver<Request>,
    notices: mpsc::UnboundedSender<Notice>,
    waiters: HashMap<Ticket, Waiter>,
    next_ticket: Ticket,
    shutting_down: bool,
    started: (Instant, SystemTime),
    /// Last CPU reading per pid; a cache, so reads through `&self` may update it.
    cpu_seen: std::cell::RefCell<HashMap<u32, (u64, Instant)>>,
    path_env: String,
}

impl Runtime {
    /// Assembles a runtime; `events_rx` carries the active source's events.
    #[must_use]
    pub fn new(
        paths: Paths,
        facts: DaemonFacts,
        source: SelectedSource,
        events_rx: mpsc::UnboundedReceiver<ProcEvent>,
        requests_rx: mpsc::UnboundedReceiver<Request>,
        notices: mpsc::UnboundedSender<Notice>,
    ) -> Self {
        let (inputs_tx, inputs_rx) = mpsc::unbounded_channel();
        Self {
            sup: Supervisor::new(),
            paths,
            facts,
            source,
            ebpf_exit_events: 0,
            inputs_tx,
            inputs_rx,
            events_rx,
            requests_rx,
            notices,
            waiters: HashMap::new(),
            next_ticket: 1,
            shutting_down: false,
            started: (Instant::now(), SystemTime::now()),
            cpu_seen: std::cell::RefCell::default(),
            path_env: std::env::var("PATH")
                .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        }
    }

    /// Runs until a shutdown (request or SIGTERM/SIGINT) has stopped every app.
    ///
    /// # Errors
    /// Only if the termination signal handlers cannot be installed.
    pub async fn run(mut self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                // kernel events first: when an eBPF exit and the pidfd are ready together, the
                // earlier notice should win so `last_exit.source` tells the truth
                biased;
                Some(ev) = self.events_rx.recv() => self.on_event(ev),
                Some(input) = self.inputs_rx.recv() => self.feed(input),
                Some(req) = self.requests_rx.recv() => self.on_request(req),
                _ = sigterm.recv() => self.begin_shutdown(Waiter::Silent),
                _ = sigint.recv() => self.begin_shutdown(Waiter::Silent),
            }
            if self.shutting_down && self.waiters.is_empty() {
                return Ok(());
            }
        }
    }

    fn now(&self) -> Instant {
        Instant::now()
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

    fn on_event(&mut self, ev: ProcEvent) {
        match ev {
            ProcEvent::Exited {
                pid,
                status,
                source,
            } => {
                if source == SourceKind::Ebpf {
                    self.ebpf_exit_events += 1;
                }
                self.feed(Input::Exited {
                    pid,
                    status,
                    source,
                });
            }
        }
    }

    /// Hands one input to the supervisor and executes what it asks, including the inputs that
    /// executing produces (a spawn reports back at once), until nothing is left.
    fn feed(&mut self, input: Input) {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            let now = self.now();
            let exit = match input {
                Input::Exited {
                    pid,
                    status,
                    source,
                } => Some((pid, status, source)),
                _ => None,
            };
            let actions = self.sup.handle(input, now);
            if let Some((pid, _, SourceKind::Procfs)) = exit
                && let Some(ebpf) = self.source.ebpf.as_mut()
            {
                // the program forgets a tgid when it reports it; one it never reported (it exited
                // before being watched) must be forgotten here, or a reused pid would be watched
                ebpf.unwatch(pid);
            }
            if let Some((pid, status, source)) = exit
                && !actions.is_empty()
            {
                // an exit the supervisor acted on (duplicates from the second source produce nothing)
                let how = status.signal().map_or_else(
                    || format!("exit code {}", status.code().unwrap_or(-1)),
                    |s| format!("signal {s}"),
                );
                tracing::info!(pid, "process exited: {how} (reported by {source})");
            }
            for action in actions {
                if let Some(next) = self.execute(action) {
                    queue.push_back(next);
                }
            }
        }
    }

    fn execute(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::Spawn { app, spec } => Some(match self.spawn(&spec) {
                Ok(pid) => Input::Spawned { app, pid },
                Err(error) => Input::SpawnFailed { app, error },
            }),
            Action::SignalGroup { pid, signal, .. } => {
                if let Err(e) = sys::signal_group(pid, signal) {
                    tracing::warn!("signal {signal} to process group {pid} failed: {e}");
                }
                None
            }
            Action::SetTimer {
                app,
                generation,
                at,
            } => {
                let tx = self.inputs_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at.into()).await;
                    let _ = tx.send(Input::Timer { app, generation });
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

    fn spawn(&mut self, spec: &crate::supervisor::AppSpec) -> Result<u32, String> {
        let (out_path, err_path) = logs::paths(&self.paths.log_dir, &spec.name);
        let open = |p: &std::path::Path| {
            logs::open(p).map_err(|e| format!("cannot open log file {}: {e}", p.display()))
        };
        let (out_file, err_file) = (open(&out_path)?, open(&err_path)?);
        let child = sys::spawn(spec).map_err(|e| e.to_string())?;
        let pid = child.pid;
        if let Some(ebpf) = self.source.ebpf.as_mut()
            && let Err(e) = ebpf.watch(pid)
        {
            // the pidfd still reports this exit; only the early notice is lost
            tracing::warn!("eBPF cannot watch pid {pid}: {e}");
        }
        tokio::spawn(logs::capture(child.stdout, out_file));
        tokio::spawn(logs::capture(child.stderr, err_file));
        tokio::spawn(reap_when_exited(pid, child.pidfd, self.inputs_tx.clone()));
        tracing::info!(app = %spec.name, pid, "started {}", spec.argv.join(" "));
        Ok(pid)
    }

    fn notify(&mut self, n: Notification) {
        let notice = match n {
            Notification::Added(id) => self
                .sup
                .app(id)
                .map(|a| Notice::Added(self.status(a, false))),
            Notification::StateChanged(id) => self
                .sup
                .app(id)
                .map(|a| Notice::Changed(self.status(a, false))),
            Notification::Removed { name, .. } => Some(Notice::Removed(name)),
        };
        if let Some(notice) = notice {
            let _ = self.notices.send(notice);
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
            Reply::Deleted(names) => Response::Deleted(names),
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
        if self.shutting_down && !matches!(op, Op::Info | Op::List) {
            let _ = reply.send(Err(turbo_api::Error::Failed(
                "the daemon is shutting down".into(),
            )));
            return;
        }
        let command = match op {
            Op::Info => {
                let _ = reply.send(Ok(Response::Info(Box::new(self.info()))));
                return;
            }
            Op::List => {
                let apps: Vec<&App> = self.sup.apps().collect();
                let list = apps.iter().map(|a| self.status(a, true)).collect();
                let _ = reply.send(Ok(Response::Apps(list)));
                return;
            }
            Op::Shutdown => return self.begin_shutdown(Waiter::Shutdown(reply)),
            Op::Start {
                name,
                argv,
                options,
            } => {
                match config::from_options(&name, &argv, &options, &self.path_env, &self.paths.home)
                {
                    Ok(spec) => Command::Start {
                        specs: vec![spec],
                        exclusive: true,
                    },
                    Err(e) => {
                        let _ = reply.send(Err(turbo_api::Error::InvalidArgument(e)));
                        return;
                    }
                }
            }
            Op::StartConfig {
                content,
                origin,
                base_dir,
            } => match config::parse_config(
                &content,
                &origin,
                std::path::Path::new(&base_dir),
                &self.path_env,
            ) {
                Ok(specs) => Command::Start {
                    specs,
                    exclusive: false,
                },
                Err(e) => {
                    let _ = reply.send(Err(turbo_api::Error::InvalidConfig(e)));
                    return;
                }
            },
            Op::Stop(t) => Command::Stop(Target::parse(&t)),
            Op::Restart(t) => Command::Restart(Target::parse(&t)),
            Op::Delete(t) => Command::Delete(Target::parse(&t)),
        };
        self.submit(command, Waiter::Apps(reply));
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
        self.shutting_down = true;
        self.submit(Command::Stop(Target::All), waiter);
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
            event_source: self.source.kind.as_str().into(),
            event_source_reason: self.source.reason.clone(),
            ebpf_programs: self
                .source
                .ebpf
                .as_ref()
                .map(crate::events::ebpf::Ebpf::programs)
                .unwrap_or_default(),
            ebpf_exit_events: self.ebpf_exit_events,
            events_lost: self
                .source
                .ebpf
                .as_ref()
                .map_or(0, crate::events::ebpf::Ebpf::lost_events),
            uptime_ms: u64::try_from(self.started.0.elapsed().as_millis()).unwrap_or(u64::MAX),
            apps: u32::try_from(self.sup.apps().count()).unwrap_or(u32::MAX),
        }
    }

    /// Builds the public snapshot of `app`. `measure` reads CPU and memory from `/proc`.
    fn status(&self, app: &App, measure: bool) -> AppStatus {
        let now = self.now();
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
            memory_limit_bytes: 0,
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

async fn reap_when_exited(pid: u32, pidfd: OwnedFd, tx: mpsc::UnboundedSender<Input>) {
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
        match sys::reap(afd.get_ref()) {
            Ok(status) => {
                let _ = tx.send(Input::Exited {
                    pid,
                    status,
                    source: SourceKind::Procfs,
                });
                return;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => guard.clear_ready(),
            Err(e) => {
                tracing::error!("reaping pid {pid} failed: {e}");
                return;
            }
        }
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
