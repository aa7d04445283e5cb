//! The log keeper process (`turbo-daemon --log-keeper`): one per daemon home, a synchronous
//! `epoll` loop without tokio, that owns the read ends of every app's stdout and stderr pipes
//! and writes them into the log files through [`crate::logs`] (timestamps, formats, rotation).
//!
//! It outlives the daemon on purpose (own session, no parent-death signal): a daemon killed
//! between reading a line and writing it would lose that line, the keeper holds it across the
//! daemon's death, upgrade or restart. It exits by itself once no daemon is connected and no
//! pipe is left open (after `IDLE_EXIT`, 2 s), so it never lingers without work.
//!
//! What it must not do: decide anything about apps (it does not know their state), block on a
//! client (replies give up after `SEND_TIMEOUT`), or stop reading a pipe because a file cannot
//! be written (records are dropped and counted instead, see [`crate::logs`]): an app must never
//! block on a full disk.

use std::{
    collections::{HashMap, VecDeque},
    io,
    ops::Range,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{AppCounters, Reply, Request, SOCKET, wire};
use crate::logs::{self, AppLogs, Pump, Records, StderrTail, Step, Stream};

/// The keeper exits after being this long without a daemon and without open pipes.
const IDLE_EXIT: Duration = Duration::from_secs(2);
/// A client that does not take a reply within this is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// Ended processes whose stderr tail is kept for a crash record not yet asked for.
const ENDED_KEPT: usize = 256;

/// The reading side of one pipe.
struct PipeReader {
    /// Kept open while read (its number is the key in `Keeper::pipes`).
    _fd: OwnedFd,
    pid: u32,
    stream: Stream,
    pump: Pump,
    logs: AppLogs,
}

/// One process whose pipes were registered.
struct Proc {
    app: String,
    tail: StderrTail,
    /// Its pipes still open here (descriptor numbers, keys of `Keeper::pipes`).
    open: Vec<(Stream, RawFd)>,
}

struct Client {
    /// Kept open while connected (its number is the key in `Keeper::clients`).
    _fd: OwnedFd,
    /// The daemon's own connection (`hello`): the keeper stays while one is open.
    session: bool,
}

/// A `tail` request waiting for the end of a process's output.
struct Wait {
    client: RawFd,
    pid: u32,
    until: Instant,
}

/// Buffers shared by every pipe: one burst's worth, not one per pipe.
#[derive(Default)]
struct Scratch {
    buf: Vec<u8>,
    lines: Vec<Range<usize>>,
    out: Records,
    err: Records,
}

struct Keeper {
    epoll: OwnedFd,
    listener: OwnedFd,
    log_dir: PathBuf,
    clients: HashMap<RawFd, Client>,
    pipes: HashMap<RawFd, PipeReader>,
    procs: HashMap<u32, Proc>,
    ended: VecDeque<u32>,
    apps: HashMap<String, AppLogs>,
    waits: Vec<Wait>,
    scratch: Scratch,
    quit: bool,
}

/// Runs the keeper of `home` until it has nothing left to keep.
///
/// # Errors
/// When the socket cannot be created (the daemon then says so and captures logs itself).
pub fn serve(home: &Path, log_dir: &Path) -> io::Result<()> {
    let listener = wire::listen(&home.join(SOCKET))?;
    // SAFETY: epoll_create1 returns a new descriptor we own.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epoll < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut k = Keeper {
        // SAFETY: just created, owned by nobody else.
        epoll: unsafe { OwnedFd::from_raw_fd(epoll) },
        listener,
        log_dir: log_dir.to_owned(),
        clients: HashMap::new(),
        pipes: HashMap::new(),
        procs: HashMap::new(),
        ended: VecDeque::new(),
        apps: HashMap::new(),
        waits: Vec::new(),
        scratch: Scratch::default(),
        quit: false,
    };
    k.watch(k.listener.as_raw_fd())?;
    tracing::info!(pid = std::process::id(), "log keeper ready");
    crate::runtime::sys::trim_heap();
    let mut idle_since = Some(Instant::now());
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    loop {
        let timeout = k.timeout(idle_since);
        // SAFETY: `events` is a live array of 64 entries.
        let n = unsafe { libc::epoll_wait(k.epoll.as_raw_fd(), events.as_mut_ptr(), 64, timeout) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..usize::try_from(n).unwrap_or(0)] {
            let fd = RawFd::try_from(ev.u64).unwrap_or(-1);
            if fd == k.listener.as_raw_fd() {
                k.accept();
            } else if k.pipes.contains_key(&fd) {
                k.read_pipe(fd);
            } else if k.clients.contains_key(&fd) {
                k.serve_client(fd);
            }
        }
        k.answer_waits(Instant::now());
        let busy = !k.pipes.is_empty() || k.clients.values().any(|c| c.session);
        idle_since = match (busy, idle_since) {
            (true, _) => None,
            (false, None) => Some(Instant::now()),
            (false, since) => since,
        };
        if idle_since.is_some_and(|t| t.elapsed() >= IDLE_EXIT) || (k.quit && !busy) {
            // the next daemon starts a fresh keeper; a stale socket would only be refused
            let _ = std::fs::remove_file(home.join(SOCKET));
            tracing::info!("log keeper: no daemon and no app output left, exiting");
            return Ok(());
        }
    }
}

impl Keeper {
    /// Milliseconds epoll may sleep: until the next `tail` deadline or idle check.
    fn timeout(&self, idle_since: Option<Instant>) -> i32 {
        let now = Instant::now();
        let mut next = self.waits.iter().map(|w| w.until).min();
        if let Some(t) = idle_since {
            next = Some(next.map_or(t + IDLE_EXIT, |n| n.min(t + IDLE_EXIT)));
        }
        next.map_or(-1, |t| {
            i32::try_from(t.saturating_duration_since(now).as_millis() + 1).unwrap_or(i32::MAX)
        })
    }

    fn watch(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: u64::try_from(fd).unwrap_or(0),
        };
        // SAFETY: epoll_ctl with a live event struct.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &raw mut ev) }
            < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn unwatch(&self, fd: RawFd) {
        // SAFETY: epoll_ctl DEL; the event argument may be null.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            );
        }
    }

    fn accept(&mut self) {
        match wire::accept(self.listener.as_raw_fd(), SEND_TIMEOUT) {
            Ok(fd) => {
                let raw = fd.as_raw_fd();
                if self.watch(raw).is_ok() {
                    self.clients.insert(
                        raw,
                        Client {
                            _fd: fd,
                            session: false,
                        },
                    );
                }
            }
            Err(e) => tracing::warn!("log keeper: cannot accept a connection: {e}"),
        }
    }

    fn drop_client(&mut self, fd: RawFd) {
        self.unwatch(fd);
        self.clients.remove(&fd);
        self.waits.retain(|w| w.client != fd);
    }

    fn reply(&mut self, client: RawFd, reply: &Reply, fds: &[RawFd]) {
        let body = serde_json::to_vec(reply).unwrap_or_default();
        if let Err(e) = wire::send(client, &body, fds) {
            tracing::debug!("log keeper: a client went away: {e}");
            self.drop_client(client);
        }
    }

    fn serve_client(&mut self, fd: RawFd) {
        let mut buf = vec![0; 64 * 1024];
        let (n, fds) = match wire::recv(fd, &mut buf) {
            Ok((0, fds)) if fds.is_empty() => return self.drop_client(fd),
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                tracing::debug!("log keeper: a client failed: {e}");
                return self.drop_client(fd);
            }
        };
        let request: Request = match serde_json::from_slice(&buf[..n]) {
            Ok(r) => r,
            Err(e) => {
                let error = format!("not a keeper request: {e}");
                return self.reply(fd, &Reply::Failed { error }, &[]);
            }
        };
        let reply = match request {
            Request::Hello => {
                // a new daemon after a `bye`: it stays for this one
                self.quit = false;
                if let Some(c) = self.clients.get_mut(&fd) {
                    c.session = true;
                }
                Reply::Hello {
                    pid: std::process::id(),
                }
            }
            Request::Bye => {
                self.quit = true;
                if let Some(c) = self.clients.get_mut(&fd) {
                    c.session = false;
                }
                Reply::Ok
            }
            Request::Register { pid, app, policy } => self.register(pid, &app, &policy, fds),
            Request::Policy { app, policy } => match self.logs_of(&app, &policy) {
                Ok(_) => Reply::Ok,
                Err(e) => Reply::Failed {
                    error: e.to_string(),
                },
            },
            Request::Flush { app, policy } => match self.logs_of(&app, &policy) {
                Ok(logs) => match logs.flush() {
                    Ok(()) => Reply::Ok,
                    Err(e) => Reply::Failed {
                        error: e.to_string(),
                    },
                },
                Err(e) => Reply::Failed {
                    error: e.to_string(),
                },
            },
            Request::Stats => Reply::Stats {
                apps: self.counters(),
            },
            Request::Pipes => return self.send_pipes(fd),
            Request::Tail { pid, wait_ms } => {
                self.waits.push(Wait {
                    client: fd,
                    pid,
                    until: Instant::now() + Duration::from_millis(wait_ms),
                });
                return;
            }
        };
        self.reply(fd, &reply, &[]);
    }

    fn logs_of(&mut self, app: &str, policy: &crate::supervisor::LogPolicy) -> io::Result<AppLogs> {
        if let Some(logs) = self.apps.get(app) {
            logs.set_policy(policy);
            return Ok(logs.clone());
        }
        let logs = AppLogs::open(&self.log_dir, app, policy)?;
        self.apps.insert(app.to_owned(), logs.clone());
        Ok(logs)
    }

    fn register(
        &mut self,
        pid: u32,
        app: &str,
        policy: &crate::supervisor::LogPolicy,
        fds: Vec<OwnedFd>,
    ) -> Reply {
        if self.procs.get(&pid).is_some_and(|p| !p.open.is_empty()) {
            // already read here (a daemon re-registering after it lost track): a second
            // reader of the same pipe would only reorder lines
            return Reply::Ok;
        }
        let logs = match self.logs_of(app, policy) {
            Ok(l) => l,
            Err(e) => {
                return Reply::Failed {
                    error: e.to_string(),
                };
            }
        };
        self.ended.retain(|&p| p != pid);
        let tail = StderrTail::default();
        let mut open = Vec::new();
        for (stream, fd) in Stream::BOTH.into_iter().zip(fds) {
            let raw = fd.as_raw_fd();
            // SAFETY: fcntl on a descriptor we own; O_NONBLOCK lives in the open file
            // description the daemon's copy shares, and the daemon never reads from it.
            unsafe {
                let flags = libc::fcntl(raw, libc::F_GETFL);
                libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
            if let Err(e) = self.watch(raw) {
                return Reply::Failed {
                    error: format!("cannot watch the output of pid {pid}: {e}"),
                };
            }
            open.push((stream, raw));
            self.pipes.insert(
                raw,
                PipeReader {
                    _fd: fd,
                    pid,
                    stream,
                    pump: Pump::default(),
                    logs: logs.clone(),
                },
            );
        }
        self.procs.insert(
            pid,
            Proc {
                app: app.to_owned(),
                tail,
                open,
            },
        );
        Reply::Ok
    }

    fn read_pipe(&mut self, fd: RawFd) {
        let Some(pipe) = self.pipes.get_mut(&fd) else {
            return;
        };
        let tail = self.procs.get(&pipe.pid).map(|p| p.tail.clone());
        let Scratch {
            buf,
            lines,
            out,
            err,
        } = &mut self.scratch;
        let stream = pipe.stream;
        let logs = &pipe.logs;
        let records = if stream == Stream::Out { out } else { err };
        let step = pipe.pump.step(
            fd,
            buf,
            lines,
            |b| logs::read_into(fd, b),
            &mut |data, lines| {
                logs.append(stream, data, lines, records);
                if stream == Stream::Err
                    && let Some(t) = &tail
                {
                    t.push(data, lines);
                }
            },
        );
        if step == Step::End {
            let pid = pipe.pid;
            self.unwatch(fd);
            self.pipes.remove(&fd);
            if let Some(p) = self.procs.get_mut(&pid) {
                p.open.retain(|&(_, f)| f != fd);
                if p.open.is_empty() {
                    self.ended.push_back(pid);
                    if self.ended.len() > ENDED_KEPT
                        && let Some(old) = self.ended.pop_front()
                    {
                        self.procs.remove(&old);
                    }
                }
            }
        }
    }

    /// Answers the `tail` requests whose process's output has ended, or whose wait is over.
    fn answer_waits(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.waits.len() {
            let w = &self.waits[i];
            let ended = self.procs.get(&w.pid).is_none_or(|p| p.open.is_empty());
            if !ended && w.until > now {
                i += 1;
                continue;
            }
            let w = self.waits.swap_remove(i);
            let lines = self
                .procs
                .get(&w.pid)
                .map(|p| p.tail.lines())
                .unwrap_or_default();
            if ended {
                self.procs.remove(&w.pid);
                self.ended.retain(|&p| p != w.pid);
            }
            self.reply(w.client, &Reply::Tail { lines, ended }, &[]);
        }
    }

    fn counters(&self) -> Vec<AppCounters> {
        let mut out: Vec<AppCounters> = self
            .apps
            .iter()
            .flat_map(|(app, logs)| {
                logs.counters()
                    .into_iter()
                    .map(|(stream, written, dropped)| AppCounters {
                        app: app.clone(),
                        stream,
                        written,
                        dropped,
                    })
            })
            .collect();
        out.sort_by(|a, b| (&a.app, a.stream.as_str()).cmp(&(&b.app, b.stream.as_str())));
        out
    }

    /// Sends a copy of every open pipe, one message per process, then `end`.
    fn send_pipes(&mut self, client: RawFd) {
        let pids: Vec<u32> = self
            .procs
            .iter()
            .filter(|(_, p)| !p.open.is_empty())
            .map(|(&pid, _)| pid)
            .collect();
        for pid in pids {
            if !self.clients.contains_key(&client) {
                return; // gone (a daemon killed while adopting): its descriptor number is closed
            }
            let Some(p) = self.procs.get(&pid) else {
                continue;
            };
            let reply = Reply::Pipe {
                pid,
                app: p.app.clone(),
                streams: p.open.iter().map(|&(s, _)| s).collect(),
            };
            let fds: Vec<RawFd> = p.open.iter().map(|&(_, f)| f).collect();
            self.reply(client, &reply, &fds);
        }
        if self.clients.contains_key(&client) {
            self.reply(client, &Reply::End, &[]);
        }
    }
}
