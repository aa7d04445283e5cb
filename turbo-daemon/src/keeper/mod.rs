//! The log keeper: one process per daemon home that owns the read ends of every app's output
//! pipes and writes the log files, so that no line is lost when the daemon is killed, crashes
//! or re-executes itself for an upgrade (docs/log-keeper.md).
//!
//! * [`server`]: the keeper process itself (`turbo-daemon --log-keeper`), a synchronous epoll
//!   loop on [`crate::logs`].
//! * [`Keeper`]: the daemon's side. It starts the keeper or reconnects to the running one,
//!   registers each new process's pipes, takes copies of the pipes of adopted processes, and
//!   asks for stderr tails, flushes and counters.
//! * [`counters`]: the log volume of each app's streams, summed over its writers.
//! * the socket: `<home>/keeper.sock`, one JSON message per request or reply, descriptors
//!   attached by `SCM_RIGHTS` ([`crate::os::fdpass`]).
//!
//! Who holds what: an app's pipe read ends are held by the keeper *and* by the daemon (a
//! copy). The write ends are the app's alone. A pipe's reader side stays open as long as either
//! process lives, so the death of one never gives an app `EPIPE`/`SIGPIPE`: when the daemon
//! dies the keeper goes on reading; when the keeper dies the daemon starts a new one and hands
//! it its copies; a new daemon takes copies from the running keeper. Only when both are gone at
//! once do the pipes close (see the failure matrix in docs/log-keeper.md).
//!
//! This module must not decide anything about apps, and the daemon must never read from the
//! pipes it holds: it keeps them only so they stay open.

mod apps;
mod counters;
pub mod server;

use std::{
    collections::{HashMap, HashSet},
    io,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    os::unix::{ffi::OsStrExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    task::Poll,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;

pub use self::counters::{AppCounters, CounterSum};
use crate::{
    logs::{Source, Stream},
    os::{detach, fdpass},
    spec::LogPolicy,
};

/// The keeper's socket in the (private) daemon home.
pub const SOCKET: &str = "keeper.sock";
/// The keeper's process name (argv[0] and the kernel's short name, `comm`).
pub const KEEPER_NAME: &std::ffi::CStr = c"turbo-daemon";
/// The keeper's own diagnostics, in the daemon home.
pub const LOG_FILE: &str = "keeper.log";
/// How long the daemon waits for a reply before it treats the keeper as gone.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// File descriptors the daemon and the keeper keep free for what is not an app's (bus clients,
/// scrapes, hooks, the keeper's sessions): a start that would take one of them fails instead,
/// with the reason, before its process exists (docs/architecture.md, "File descriptors").
pub const FD_RESERVE: u64 = 64;

/// One line saying that `who` is short of descriptors (`free` left).
#[must_use]
pub fn short_of_fds(who: &str, free: u64) -> String {
    let (soft, _) = crate::os::creds::limit(crate::os::creds::Limit::Nofile);
    format!(
        "{who} is out of file descriptors ({free} of {soft} free, {FD_RESERVE} kept for clients): \
         raise its hard limit (LimitNOFILE= in the unit, ulimit -Hn) or run fewer apps"
    )
}

/// Counters per `stats` reply: 1,000 of about 120 bytes fit a message with room to spare.
pub const STATS_PAGE: usize = 1000;

/// Longest message (a reply with 20 stderr lines of 4 KiB, or the counters of many apps).
pub const MAX_MESSAGE: usize = 256 * 1024;

/// A request to the keeper (one JSON message).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// This connection is the daemon's: the keeper stays while it is open.
    Hello,
    /// The daemon stops for good: exit once the remaining pipes have ended.
    Bye,
    /// Read these pipes (stdout, stderr attached) of `pid` into `app`'s log files.
    Register {
        /// The process.
        pid: u32,
        /// Its instance (0 from a daemon older than instance tags).
        #[serde(default)]
        instance: u32,
        /// Its app (the log file names).
        app: String,
        /// Format and rotation.
        policy: LogPolicy,
    },
    /// Open `app`'s log files if they are not open yet, and use `policy` for them from now on.
    Policy {
        /// The app.
        app: String,
        /// Whose files, with `log.per_instance` (0 from a daemon older than per-instance files).
        #[serde(default)]
        instance: u32,
        /// Format and rotation.
        policy: LogPolicy,
    },
    /// Empty `app`'s log files and delete the rotated ones.
    Flush {
        /// The app.
        app: String,
        /// Whose files, with `log.per_instance` (0 from a daemon older than per-instance files).
        #[serde(default)]
        instance: u32,
        /// Its policy, should the keeper not have its files open yet.
        policy: LogPolicy,
    },
    /// The last stderr lines of `pid`, once its output has ended or after `wait_ms`.
    Tail {
        /// The process.
        pid: u32,
        /// Longest wait for the end of its output.
        wait_ms: u64,
    },
    /// Byte counters of every app, a page of [`STATS_PAGE`] from `from` on (one message holds
    /// about two thousand apps' counters).
    Stats {
        /// The first counter of the page (0 from a daemon older than paging).
        #[serde(default)]
        from: u32,
    },
    /// A copy of every pipe still open (one `pipe` reply each, then `end`).
    Pipes,
}

/// A reply of the keeper.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// To `hello`.
    Hello {
        /// The keeper's pid.
        pid: u32,
        /// Descriptors it has free for apps' pipes and log files, beyond its reserve (none from
        /// a keeper older than shards).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<u64>,
    },
    /// Done.
    Ok,
    /// Not done, and why.
    Failed {
        /// One line.
        error: String,
    },
    /// To `tail`.
    Tail {
        /// Oldest first.
        lines: Vec<String>,
        /// Whether the output had ended (else the wait ran out).
        ended: bool,
    },
    /// To `stats`.
    Stats {
        /// Per app and stream.
        apps: Vec<AppCounters>,
        /// Where the next page starts, when there is one (none from a keeper older than paging,
        /// which sends all at once).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<u32>,
    },
    /// One process's pipes, attached in the order of `streams`.
    Pipe {
        /// The process.
        pid: u32,
        /// Its instance (0 from a keeper older than instance tags).
        #[serde(default)]
        instance: u32,
        /// Its app.
        app: String,
        /// Which pipes are attached.
        streams: Vec<Stream>,
    },
    /// The last of the `pipe` replies.
    End,
}

/// What the daemon knows of one process whose pipes a keeper reads.
#[derive(Debug)]
struct Held {
    /// The keeper that reads them (an index of `Keeper::shards`).
    shard: usize,
    instance: u32,
    app: String,
    policy: LogPolicy,
    /// The daemon's copies of the read ends, so they outlive that keeper; empty when the
    /// daemon had no descriptors to spare for them ([`copy_budget`]).
    fds: Vec<OwnedFd>,
    /// Whether its pipes are counted in its keeper's `used` (registered by this daemon).
    counted: bool,
}

/// One process's pipes to hand over ([`Keeper::register_all`]).
#[derive(Debug)]
pub struct Registration {
    /// The process and its instance.
    pub source: Source,
    /// Its app (the log file names).
    pub app: String,
    /// Format and rotation.
    pub policy: LogPolicy,
    /// Read end of its stdout.
    pub stdout: OwnedFd,
    /// Read end of its stderr.
    pub stderr: OwnedFd,
}

/// The outcome of one registration: on failure the error, with both pipes back.
pub type Registered = Result<(), (io::Error, OwnedFd, OwnedFd)>;

/// Descriptors a keeper process holds per app process at most: the read ends of both pipes,
/// and the app's two log files (shared by its instances unless `log.per_instance`).
pub const FDS_PER_PROCESS: u64 = 4;

/// Environment variable that caps the descriptors a keeper reports free for apps' pipes and
/// log files (it counts those it holds against it), so that a test can make several keepers
/// with a few dozen apps. Unset in production; the keeper inherits it from the daemon.
pub const SHARD_FDS_ENV: &str = "TURBO_KEEPER_FDS";

/// The most descriptors the daemon spends on copies of pipes: a quarter of its hard limit, so
/// that its other per-app descriptor (the pidfd), the kept `/proc` files and the pipes of a
/// pass of spawns ([`pass_budget`]) still fit with ten thousand apps under a hard limit of
/// 20,000 (docs/architecture.md, "File descriptors").
fn copy_budget() -> u64 {
    crate::os::creds::limit(crate::os::creds::Limit::Nofile).1 / 4
}

/// The most descriptors the pipes of new processes hold in the daemon before they are handed
/// to the keeper: a sixteenth of its hard limit (1,250 under 20,000; 625 processes), at least
/// those of one process. A start of thousands hands over every so many spawns instead of once
/// at its end, so what it holds while it runs is bounded like what it keeps after.
#[must_use]
pub fn pass_budget() -> u64 {
    (crate::os::creds::limit(crate::os::creds::Limit::Nofile).1 / 16).max(2)
}

/// One keeper process (a shard) and the daemon's session with it.
#[derive(Debug)]
struct Shard {
    /// Its socket's file name in the home: [`SOCKET`] for the first, `keeper-<n>.sock` after.
    socket: String,
    session: Option<OwnedFd>,
    /// A copy of the session, watched by tokio: readable means the keeper went away.
    watch: Option<AsyncFd<OwnedFd>>,
    /// The keeper this daemon started (reaped when it dies).
    child: Option<Child>,
    pid: u32,
    /// The policies this keeper process has opened log files with, by app and instance: the
    /// same request again would change nothing there, so a restart skips the round trip (the
    /// keeper may be busy with the dead process's last output, and the replacement waited).
    opened: HashMap<(String, u32), LogPolicy>,
    /// Descriptors the keeper had free for apps when this daemon connected (none from a keeper
    /// older than shards: no bound).
    room: Option<u64>,
    /// Descriptors this daemon has given it work for since: two per log-file pair it opened,
    /// two per process registered.
    used: u64,
    /// Pipes of processes about to start (two per [`Keeper::open_logs`] since the last
    /// [`Keeper::settle`]), so that the spawns of one pass do not all land in a keeper that
    /// has room for one.
    starting: u64,
    /// Apps whose pipes [`Keeper::open_logs_all`] counted in `starting` already, in this pass:
    /// their own [`Keeper::open_logs`] must not count them again.
    reserved: HashSet<(String, u32)>,
}

impl Shard {
    fn new(socket: String) -> Self {
        Self {
            socket,
            session: None,
            watch: None,
            child: None,
            pid: 0,
            opened: HashMap::new(),
            room: None,
            used: 0,
            starting: 0,
            reserved: HashSet::new(),
        }
    }

    /// Whether the keeper's session is gone (it died or was never made).
    fn is_lost(&self) -> bool {
        self.watch
            .as_ref()
            .is_none_or(|w| fdpass::peer_closed(w.get_ref()))
    }
}

/// The daemon's side of the keepers: as many keeper processes (shards) as the descriptors of
/// the apps need, each app's processes all in one of them. See the module docs.
#[derive(Debug)]
pub struct Keeper {
    home: PathBuf,
    log_dir: PathBuf,
    /// The first is always there; more are started when the ones there are have no room.
    shards: Vec<Shard>,
    held: HashMap<u32, Held>,
    /// Which keeper writes each app's log files (one writer per file keeps rotation safe).
    apps: HashMap<String, usize>,
    /// Descriptors of the pipe copies in `held`.
    copies: u64,
}

impl Keeper {
    /// Connects to the keepers of `home` (those a previous daemon started, after a `kill -9` or
    /// an upgrade), starting the first if none runs.
    ///
    /// # Errors
    /// When no keeper runs and none can be started (`keeper.log` in the home says why).
    pub fn start(home: &Path, log_dir: &Path) -> io::Result<Keeper> {
        let mut k = Keeper {
            home: home.to_owned(),
            log_dir: log_dir.to_owned(),
            shards: vec![Shard::new(SOCKET.to_owned())],
            held: HashMap::new(),
            apps: HashMap::new(),
            copies: 0,
        };
        k.connect(0)?;
        for socket in shard_sockets(home) {
            k.shards.push(Shard::new(socket));
            let i = k.shards.len() - 1;
            match k.hello(i) {
                Ok(fd) => k.attach(i, fd)?,
                Err(e) => {
                    // a keeper killed with its socket left behind: its pipes are gone with it
                    tracing::warn!(
                        "the log keeper of {} does not answer ({e}); removing its socket",
                        k.shards[i].socket
                    );
                    let _ = std::fs::remove_file(k.home.join(&k.shards[i].socket));
                    k.shards.pop();
                }
            }
        }
        Ok(k)
    }

    /// The first keeper's pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.shards.first().map_or(0, |s| s.pid)
    }

    /// The number of keeper processes.
    #[must_use]
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn socket(&self, shard: usize) -> PathBuf {
        self.home.join(&self.shards[shard].socket)
    }

    /// Opens the session with `shard`, starting its keeper when none answers, and hands it
    /// every pipe held for it.
    fn connect(&mut self, shard: usize) -> io::Result<()> {
        let s = &mut self.shards[shard];
        s.session = None;
        s.watch = None;
        if let Some(child) = &mut s.child
            && child.try_wait().ok().flatten().is_some()
        {
            s.child = None;
        }
        let fd = match self.hello(shard) {
            Ok(fd) => fd,
            Err(_) => {
                self.spawn(shard)?;
                self.hello(shard)?
            }
        };
        self.attach(shard, fd)
    }

    /// Makes `fd` (answered `hello`) the session with `shard`, and hands it every pipe held for
    /// it (after its keeper died: the new one reads them from here on).
    fn attach(&mut self, shard: usize, fd: OwnedFd) -> io::Result<()> {
        let copy = fd.try_clone()?;
        let s = &mut self.shards[shard];
        // a new keeper process has opened nothing yet
        s.opened.clear();
        // SAFETY: `copy` is an OwnedFd the AsyncFd owns from here on, so it stays open and the
        // same for the AsyncFd's whole life.
        s.watch =
            unsafe { AsyncFd::register_with_interest(copy, tokio::io::Interest::READABLE) }.ok();
        s.session = Some(fd);
        let mut lost = 0;
        for (&pid, h) in self.held.iter().filter(|(_, h)| h.shard == shard) {
            if h.fds.is_empty() {
                lost += 1;
                continue;
            }
            let req = Request::Register {
                pid,
                instance: h.instance,
                app: h.app.clone(),
                policy: h.policy.clone(),
            };
            let fds: Vec<BorrowedFd<'_>> = h.fds.iter().map(AsFd::as_fd).collect();
            if let Err(e) = self.exchange(shard, &req, &fds) {
                tracing::warn!("cannot hand the output of pid {pid} to the log keeper: {e}");
            }
        }
        if lost > 0 {
            tracing::error!(
                "{lost} processes' output pipes were held by the log keeper alone (the daemon \
                 had no descriptors to spare for copies): they closed with it, and those \
                 processes get EPIPE on their next write"
            );
        }
        Ok(())
    }

    fn hello(&mut self, shard: usize) -> io::Result<OwnedFd> {
        let fd = fdpass::connect(&self.socket(shard), CALL_TIMEOUT)?;
        let reply = call_on(fd.as_fd(), &Request::Hello, &[])?;
        match reply {
            Reply::Hello { pid, room } => {
                let s = &mut self.shards[shard];
                s.pid = pid;
                s.room = room;
                s.used = 0;
                if s.child.is_none() {
                    reap_if_our_child(pid);
                }
                Ok(fd)
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Starts `turbo-daemon --log-keeper` (this very binary, so its code pages are shared with
    /// the daemon's) in a session of its own, and waits until it listens.
    fn spawn(&mut self, shard: usize) -> io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join(LOG_FILE))?;
        let socket = self.socket(shard);
        let mut cmd = Command::new("/proc/self/exe");
        // argv[0] as `ps` and `pgrep -f` show it; the short name (`ps -C`, `pgrep`) would be
        // `exe`, after the path, and the keeper sets it itself (`server::serve`)
        cmd.arg0(std::ffi::OsStr::from_bytes(KEEPER_NAME.to_bytes()))
            .arg("--log-keeper")
            .arg("--home")
            .arg(&self.home)
            .arg("--log-dir")
            .arg(&self.log_dir);
        if shard > 0 {
            cmd.arg("--keeper-socket").arg(&self.shards[shard].socket);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        // the keeper is not the service: it must not answer systemd's notify socket
        crate::notify::strip_service_env(&mut cmd);
        // a session of its own: a terminal's or the daemon's process-group signals must not
        // reach it, and no parent-death signal is set
        detach::in_new_session(&mut cmd);
        let mut child = cmd.spawn()?;
        // waited for through `child`, not by the daemon's orphan reaper
        crate::os::process::claim(child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while fdpass::connect(&socket, CALL_TIMEOUT).is_err() {
            if let Some(status) = child.try_wait()? {
                return Err(io::Error::other(format!(
                    "the log keeper exited at start ({status}); see {}",
                    self.home.join(LOG_FILE).display()
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("the log keeper did not start listening"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::info!(
            pid = child.id(),
            socket = %self.shards[shard].socket,
            "started a log keeper"
        );
        self.shards[shard].child = Some(child);
        Ok(())
    }

    /// The keeper that writes `app`'s logs: the one it has, else the first with room for one
    /// more process, else a new one.
    fn shard_for(&mut self, app: &str) -> io::Result<usize> {
        if let Some(&i) = self.apps.get(app)
            && i < self.shards.len()
        {
            return Ok(i);
        }
        let room = |s: &Shard| s.room.unwrap_or(u64::MAX);
        let i = match self
            .shards
            .iter()
            .position(|s| s.used + s.starting + FDS_PER_PROCESS <= room(s))
        {
            Some(i) => i,
            None => {
                let taken: HashSet<&str> = self.shards.iter().map(|s| s.socket.as_str()).collect();
                let socket = (1..)
                    .map(|n| format!("keeper-{n}.sock"))
                    .find(|name| !taken.contains(name.as_str()))
                    .unwrap_or_default();
                self.shards.push(Shard::new(socket));
                let i = self.shards.len() - 1;
                if let Err(e) = self.connect(i) {
                    self.shards.pop();
                    return Err(io::Error::other(format!(
                        "every log keeper is full and another cannot be started: {e}"
                    )));
                }
                tracing::info!(
                    "{} log keepers read the apps' output now (each has room for about {} \
                     processes)",
                    self.shards.len(),
                    room(&self.shards[i]) / FDS_PER_PROCESS
                );
                i
            }
        };
        self.apps.insert(app.to_owned(), i);
        Ok(i)
    }

    fn session(&self, shard: usize) -> io::Result<BorrowedFd<'_>> {
        self.shards[shard]
            .session
            .as_ref()
            .map(AsFd::as_fd)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    fn exchange(&self, shard: usize, req: &Request, fds: &[BorrowedFd<'_>]) -> io::Result<Reply> {
        call_on(self.session(shard)?, req, fds)
    }

    /// One request to `shard`; when its keeper is gone, a new one is started (and given every
    /// pipe held for it) and the request is sent once more.
    fn call(&mut self, shard: usize, req: &Request, fds: &[BorrowedFd<'_>]) -> io::Result<Reply> {
        match self.exchange(shard, req, fds) {
            Ok(reply) => Ok(reply),
            Err(e) => {
                tracing::warn!("the log keeper did not answer ({e}); starting a new one");
                self.connect(shard)?;
                self.exchange(shard, req, fds)
            }
        }
    }

    /// One request whose answer is `Ok` or a one-line failure.
    fn call_ok(&mut self, shard: usize, req: &Request) -> Result<(), String> {
        match self.call(shard, req, &[]) {
            Ok(Reply::Ok) => Ok(()),
            Ok(Reply::Failed { error }) => Err(error),
            Ok(other) => Err(unexpected(&other).to_string()),
            Err(e) => Err(format!("the log keeper does not answer: {e}")),
        }
    }

    /// Empties `app`'s log files (`instance`'s, with `log.per_instance`).
    ///
    /// # Errors
    /// The keeper's one-line reason.
    pub fn flush(&mut self, app: &str, instance: u32, policy: &LogPolicy) -> Result<(), String> {
        let req = Request::Flush {
            app: app.to_owned(),
            instance,
            policy: policy.clone(),
        };
        let shard = self.shard_for(app).map_err(|e| e.to_string())?;
        self.call_ok(shard, &req)
    }

    /// Byte counters of every app, from every keeper (empty from one that does not answer).
    pub fn stats(&mut self) -> CounterSum {
        let mut all = CounterSum::default();
        for shard in 0..self.shards.len() {
            all.extend(self.stats_of(shard));
        }
        all
    }

    fn stats_of(&mut self, shard: usize) -> Vec<AppCounters> {
        let mut all = Vec::new();
        let mut from = 0;
        loop {
            match self.call(shard, &Request::Stats { from }, &[]) {
                Ok(Reply::Stats { apps, next }) => {
                    all.extend(apps);
                    match next {
                        Some(n) if n > from => from = n,
                        _ => return all,
                    }
                }
                Ok(other) => {
                    tracing::warn!("log keeper: {}", unexpected(&other));
                    return Vec::new();
                }
                Err(e) => {
                    tracing::warn!("log keeper: no counters: {e}");
                    return Vec::new();
                }
            }
        }
    }

    /// What a task needs to ask for `pid`'s stderr tail off the main loop (from the keeper that
    /// reads its pipes).
    #[must_use]
    pub fn tail_asker(&self, pid: u32) -> TailAsker {
        let shard = self.held.get(&pid).map_or(0, |h| h.shard);
        TailAsker(self.socket(shard))
    }

    /// Resolves when a keeper's end of its session closes (it died); never without sessions.
    pub async fn lost(&self) {
        std::future::poll_fn(|cx| {
            for w in self.shards.iter().filter_map(|s| s.watch.as_ref()) {
                while let Poll::Ready(Ok(mut guard)) = w.poll_read_ready(cx) {
                    if fdpass::peer_closed(guard.get_inner()) {
                        return Poll::Ready(());
                    }
                    guard.clear_ready();
                }
            }
            Poll::Pending
        })
        .await;
    }

    /// After [`Self::lost`]: starts a new keeper for each that died and hands it every pipe
    /// held for it.
    ///
    /// # Errors
    /// When a keeper cannot be started.
    pub fn reconnect(&mut self) -> io::Result<()> {
        for shard in 0..self.shards.len() {
            if !self.shards[shard].is_lost() {
                continue;
            }
            let old = self.shards[shard].pid;
            self.connect(shard)?;
            let n = self.held.values().filter(|h| h.shard == shard).count();
            tracing::warn!(
                "the log keeper (pid {old}) went away; pid {} now reads the {n} processes' \
                 output (lines the old one had read but not written are lost)",
                self.shards[shard].pid,
            );
        }
        Ok(())
    }

    /// The daemon stops for good: the keepers exit once the remaining pipes have ended.
    pub fn bye(&mut self) {
        for shard in 0..self.shards.len() {
            let _ = self.exchange(shard, &Request::Bye, &[]);
        }
    }
}

/// The socket names of keepers beyond the first in `home` (`keeper-<n>.sock`), in order.
fn shard_sockets(home: &Path) -> Vec<String> {
    let mut found: Vec<(u32, String)> = std::fs::read_dir(home)
        .map(|dir| {
            dir.filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let n = name
                    .strip_prefix("keeper-")?
                    .strip_suffix(".sock")?
                    .parse()
                    .ok()?;
                Some((n, name))
            })
            .collect()
        })
        .unwrap_or_default();
    found.sort_unstable();
    found.into_iter().map(|(_, name)| name).collect()
}

/// Asks for a process's stderr tail on a connection of its own (off the main loop).
#[derive(Clone, Debug)]
pub struct TailAsker(PathBuf);

impl TailAsker {
    /// The last stderr lines of `pid`, waiting up to `wait` for its output to end. Blocking.
    #[must_use]
    pub fn tail(&self, pid: u32, wait: Duration) -> Vec<String> {
        let req = Request::Tail {
            pid,
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        };
        let reply = fdpass::connect(&self.0, wait + CALL_TIMEOUT)
            .and_then(|fd| call_on(fd.as_fd(), &req, &[]));
        match reply {
            Ok(Reply::Tail { lines, .. }) => lines,
            Ok(other) => {
                tracing::warn!("log keeper: {}", unexpected(&other));
                Vec::new()
            }
            Err(e) => {
                tracing::warn!("no stderr tail for pid {pid}: the log keeper: {e}");
                Vec::new()
            }
        }
    }
}

fn to_json(req: &Request) -> Vec<u8> {
    serde_json::to_vec(req).unwrap_or_default()
}

fn call_on(fd: BorrowedFd<'_>, req: &Request, fds: &[BorrowedFd<'_>]) -> io::Result<Reply> {
    fdpass::send(fd, &to_json(req), fds)?;
    let mut buf = vec![0; MAX_MESSAGE];
    let (n, _) = fdpass::recv(fd, &mut buf)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "the log keeper closed the connection",
        ));
    }
    serde_json::from_slice(&buf[..n]).map_err(io::Error::other)
}

fn unexpected(reply: &Reply) -> io::Error {
    match reply {
        Reply::Failed { error } => io::Error::other(error.clone()),
        other => io::Error::other(format!("unexpected reply from the log keeper: {other:?}")),
    }
}

/// A keeper started by this process before a re-exec (`turbo daemon upgrade`) is still its
/// child, but no `Child` handle survived the exec: reap it when it exits, or it stays a zombie.
/// The pidfd is taken while the keeper answers and is known to be our child, so it cannot name a
/// reused pid; a keeper whose daemon was killed is init's child and is left alone.
fn reap_if_our_child(pid: u32) {
    if crate::os::proc::parent_pid(pid) != Some(std::process::id()) {
        return;
    }
    let Ok(pidfd) = crate::os::process::pidfd_open(pid) else {
        return;
    };
    // SAFETY: the AsyncFd owns the pidfd, so the fd stays open and the same while registered.
    let Ok(pidfd) =
        (unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) })
    else {
        return;
    };
    tokio::spawn(async move {
        // a pidfd turns readable when its process has exited
        if pidfd.readable().await.is_ok() {
            let _ = crate::os::process::reap(pidfd.get_ref());
        }
    });
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn pipe() -> (OwnedFd, std::io::PipeWriter) {
        let (r, w) = std::io::pipe().unwrap();
        (r.into(), w)
    }

    /// A new daemon finds the keepers beyond the first by their sockets, in order of their
    /// number, and nothing else in the home.
    #[test]
    fn the_sockets_of_more_keepers_are_found_in_order() {
        let home = tempfile::tempdir().unwrap();
        for name in [
            SOCKET,
            "keeper-10.sock",
            "keeper-2.sock",
            "keeper-x.sock",
            "keeper-3.log",
            "keeper-.sock",
        ] {
            std::fs::write(home.path().join(name), b"").unwrap();
        }
        assert_eq!(
            shard_sockets(home.path()),
            ["keeper-2.sock", "keeper-10.sock"]
        );
    }

    /// The keeper process's loop, in a thread: registration, lines to the file, the stderr
    /// tail once the output ended, counters, copies of open pipes, and its exit once idle.
    #[test]
    fn the_keeper_writes_tails_counts_and_exits_when_idle() {
        let home = tempfile::tempdir().unwrap();
        let logs = home.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let (h, l) = (home.path().to_owned(), logs.clone());
        let keeper = std::thread::spawn(move || server::serve(&h, &l, SOCKET));
        let socket = home.path().join(SOCKET);
        let deadline = Instant::now() + Duration::from_secs(10);
        let session = loop {
            if let Ok(fd) = fdpass::connect(&socket, CALL_TIMEOUT) {
                break fd;
            }
            assert!(Instant::now() < deadline, "the keeper listens");
            std::thread::sleep(Duration::from_millis(5));
        };
        let call =
            |req: &Request, fds: &[BorrowedFd<'_>]| call_on(session.as_fd(), req, fds).unwrap();
        assert!(matches!(call(&Request::Hello, &[]), Reply::Hello { .. }));
        let ((out_r, mut out_w), (err_r, mut err_w)) = (pipe(), pipe());
        let register = Request::Register {
            pid: 42,
            instance: 3,
            app: "app".into(),
            policy: LogPolicy::default(),
        };
        let reply = call(&register, &[out_r.as_fd(), err_r.as_fd()]);
        assert!(matches!(reply, Reply::Ok), "{reply:?}");
        out_w.write_all(b"one\ntwo\n").unwrap();
        err_w.write_all(b"oops\n").unwrap();

        // a second connection (a new daemon) gets copies of the open pipes
        let other = fdpass::connect(&socket, CALL_TIMEOUT).unwrap();
        fdpass::send(other.as_fd(), &to_json(&Request::Pipes), &[]).unwrap();
        let mut buf = vec![0; MAX_MESSAGE];
        let (n, fds) = fdpass::recv(other.as_fd(), &mut buf).unwrap();
        let pipe_reply: Reply = serde_json::from_slice(&buf[..n]).unwrap();
        assert!(
            matches!(&pipe_reply, Reply::Pipe { pid: 42, instance: 3, app, .. } if app == "app"),
            "{pipe_reply:?}"
        );
        assert_eq!(fds.len(), 2);
        drop((fds, other));

        drop((out_w, err_w, out_r, err_r));
        let tail = call(
            &Request::Tail {
                pid: 42,
                wait_ms: 5000,
            },
            &[],
        );
        match tail {
            Reply::Tail { lines, ended } => {
                assert_eq!(lines, ["oops"]);
                assert!(ended);
            }
            other => panic!("{other:?}"),
        }
        let text = std::fs::read_to_string(logs.join("app-out.log")).unwrap();
        // tagged by the pipe: instance 3, pid 42
        let lines: Vec<&str> = text.lines().map(|l| &l[24..]).collect();
        assert_eq!(lines, ["[3:42] one", "[3:42] two"]);
        match call(&Request::Stats { from: 0 }, &[]) {
            Reply::Stats { apps, next } => {
                assert_eq!(next, None, "one page");
                let out = apps.iter().find(|c| c.stream == Stream::Out).unwrap();
                assert_eq!((out.written, out.dropped), (text.len() as u64, 0));
            }
            other => panic!("{other:?}"),
        }
        // no daemon, no pipes: it leaves, and removes its socket
        drop(session);
        keeper.join().unwrap().unwrap();
        assert!(!socket.exists());
    }
}
