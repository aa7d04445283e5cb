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
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd, RawFd},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{AppCounters, Reply, Request};
use crate::{
    logs::{AppLogs, Pump, Source, StderrTail, Step, Stream, WriteBehind},
    os::{epoll::Epoll, fdpass, pipe_io},
};

/// The keeper exits after being this long without a daemon and without open pipes.
const IDLE_EXIT: Duration = Duration::from_secs(2);
/// A client that does not take a reply within this is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// Ended processes whose stderr tail is kept for a crash record not yet asked for.
const ENDED_KEPT: usize = 256;

/// The reading side of one pipe.
struct PipeReader {
    /// Kept open while read (its number is the key in `Keeper::pipes`).
    fd: OwnedFd,
    /// The instance and process writing into it: the tag of its records.
    source: Source,
    stream: Stream,
    pump: Pump,
    logs: AppLogs,
}

/// One process whose pipes were registered.
struct Proc {
    instance: u32,
    app: String,
    tail: StderrTail,
    /// Its pipes still open here (descriptor numbers, keys of `Keeper::pipes`).
    open: Vec<(Stream, RawFd)>,
}

struct Client {
    /// Kept open while connected (its number is the key in `Keeper::clients`).
    fd: OwnedFd,
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
    /// Formatted batches on their way to the files, written on a thread of their own.
    behind: WriteBehind,
}

struct Keeper {
    epoll: Epoll,
    listener: OwnedFd,
    log_dir: PathBuf,
    clients: HashMap<RawFd, Client>,
    pipes: HashMap<RawFd, PipeReader>,
    procs: HashMap<u32, Proc>,
    ended: VecDeque<u32>,
    /// Open log files by app and, with `log.per_instance`, instance.
    apps: HashMap<(String, Option<u32>), AppLogs>,
    waits: Vec<Wait>,
    scratch: Scratch,
    quit: bool,
    /// The keeper's own uid: the daemon that started it runs as it, and nobody else may connect.
    uid: u32,
}

/// Runs the keeper of `home` listening on `socket` (a file name in it: [`SOCKET`] for the
/// first keeper, `keeper-<n>.sock` for the others) until it has nothing left to keep.
///
/// # Errors
/// When the socket cannot be created (the daemon then says so and captures logs itself).
pub fn serve(home: &Path, log_dir: &Path, socket: &str) -> io::Result<()> {
    // exec'd as /proc/self/exe, the kernel named it `exe`: `ps -C turbo-daemon`, `pgrep
    // turbo-daemon` and `top` would miss it
    if let Err(e) = rustix::thread::set_name(super::KEEPER_NAME) {
        tracing::warn!("log keeper: cannot set its process name: {e}");
    }
    if socket.contains('/') || !socket.ends_with(".sock") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the keeper socket '{socket}' is not a file name ending in .sock"),
        ));
    }
    let listener = fdpass::listen(&home.join(socket))?;
    let mut k = Keeper {
        epoll: Epoll::new()?,
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
        uid: rustix::process::geteuid().as_raw(),
    };
    k.watch(k.listener.as_fd())?;
    tracing::info!(pid = std::process::id(), "log keeper ready");
    crate::os::alloc::trim_heap();
    let mut idle_since = Some(Instant::now());
    let mut ready = Vec::with_capacity(64);
    loop {
        let timeout = k.timeout(idle_since);
        k.epoll.wait(timeout, &mut ready)?;
        for &key in &ready {
            let fd = RawFd::try_from(key).unwrap_or(-1);
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
            let _ = std::fs::remove_file(home.join(socket));
            tracing::info!("log keeper: no daemon and no app output left, exiting");
            return Ok(());
        }
    }
}

impl Keeper {
    /// How long epoll may sleep: until the next `tail` deadline or idle check.
    fn timeout(&self, idle_since: Option<Instant>) -> Option<Duration> {
        let now = Instant::now();
        let mut next = self.waits.iter().map(|w| w.until).min();
        if let Some(t) = idle_since {
            next = Some(next.map_or(t + IDLE_EXIT, |n| n.min(t + IDLE_EXIT)));
        }
        // a millisecond more, so a deadline is past once the wait is over
        next.map(|t| t.saturating_duration_since(now) + Duration::from_millis(1))
    }

    /// Watches `fd`, known by its number (the key of `pipes`, `clients` or the listener).
    fn watch(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.epoll
            .add(fd, u64::try_from(fd.as_raw_fd()).unwrap_or(u64::MAX))
    }

    fn accept(&mut self) {
        match fdpass::accept(self.listener.as_fd(), SEND_TIMEOUT) {
            Ok(fd) => {
                // the home's permissions keep others out; this check holds even when they are
                // wrong (a home made world-searchable, a socket bind-mounted elsewhere): whoever
                // talks here can take copies of every app's pipes
                match fdpass::peer(fd.as_fd()) {
                    Ok((uid, _)) if uid == self.uid => {}
                    Ok((uid, pid)) => {
                        tracing::warn!(
                            "log keeper: refused a connection from uid {uid} (pid {pid}): only uid {} may talk to it",
                            self.uid
                        );
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("log keeper: refused a connection of unknown origin: {e}");
                        return;
                    }
                }
                if self.watch(fd.as_fd()).is_ok() {
                    self.clients
                        .insert(fd.as_raw_fd(), Client { fd, session: false });
                }
            }
            Err(e) => tracing::warn!("log keeper: cannot accept a connection: {e}"),
        }
    }

    fn drop_client(&mut self, fd: RawFd) {
        if let Some(client) = self.clients.remove(&fd) {
            self.epoll.remove(&client.fd);
        }
        self.waits.retain(|w| w.client != fd);
    }

    /// Sends one reply with `fds` attached to `client`, if it is still connected.
    fn send_to(&self, client: RawFd, reply: &Reply, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let Some(c) = self.clients.get(&client) else {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        };
        let body = serde_json::to_vec(reply).unwrap_or_default();
        fdpass::send(c.fd.as_fd(), &body, fds)
    }

    /// After a failed send: the client is gone (or stopped reading), and is dropped.
    fn gone(&mut self, client: RawFd, e: &io::Error) {
        tracing::debug!("log keeper: a client went away: {e}");
        self.drop_client(client);
    }

    fn reply(&mut self, client: RawFd, reply: &Reply) {
        if let Err(e) = self.send_to(client, reply, &[]) {
            self.gone(client, &e);
        }
    }

    fn serve_client(&mut self, fd: RawFd) {
        let Some(client) = self.clients.get(&fd) else {
            return;
        };
        // counters, flushes and tails answer for everything read so far
        self.scratch.behind.drain();
        let mut buf = vec![0; 64 * 1024];
        let (n, fds) = match fdpass::recv(client.fd.as_fd(), &mut buf) {
            Ok((0, fds)) if fds.is_empty() => return self.drop_client(fd),
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                // the kernel could not give this process the attached pipes (no descriptor
                // left): only `register` attaches any. The session stays: dropping it would
                // make the daemon start a second keeper for every process after this one.
                let (soft, _) = crate::os::creds::limit(crate::os::creds::Limit::Nofile);
                let error = format!(
                    "the log keeper has no file descriptor left for the pipes (limit {soft}): {e}"
                );
                return self.reply(fd, &Reply::Failed { error });
            }
            Err(e) => {
                tracing::debug!("log keeper: a client failed: {e}");
                return self.drop_client(fd);
            }
        };
        let request: Request = match serde_json::from_slice(&buf[..n]) {
            Ok(r) => r,
            Err(e) => {
                let error = format!("not a keeper request: {e}");
                return self.reply(fd, &Reply::Failed { error });
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
                    room: Some(self.room()),
                }
            }
            Request::Bye => {
                self.quit = true;
                if let Some(c) = self.clients.get_mut(&fd) {
                    c.session = false;
                }
                Reply::Ok
            }
            Request::Register {
                pid,
                instance,
                app,
                policy,
            } => self.register(Source { instance, pid }, &app, &policy, fds),
            Request::Policy {
                app,
                instance,
                policy,
            } => match crate::os::creds::short_of_fds(super::FD_RESERVE) {
                // asked before each start: the pipes and log files of one more process
                Some(free) => Reply::Failed {
                    error: super::short_of_fds("the log keeper", free),
                },
                None => match self.logs_of(&app, instance, &policy) {
                    Ok(_) => Reply::Ok,
                    Err(e) => Reply::Failed {
                        error: e.to_string(),
                    },
                },
            },
            Request::Flush {
                app,
                instance,
                policy,
            } => match self.logs_of(&app, instance, &policy) {
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
            Request::Stats { from } => stats_page(self.counters(), from),
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
        self.reply(fd, &reply);
    }

    /// Descriptors free for apps' pipes and log files: the limit less those open and the
    /// reserve, or less under [`super::SHARD_FDS_ENV`] (the daemon plans which keeper takes an
    /// app with it; the check before each start stays).
    fn room(&self) -> u64 {
        let (soft, _) = crate::os::creds::limit(crate::os::creds::Limit::Nofile);
        let open = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
        let free = soft
            .saturating_sub(u64::try_from(open).unwrap_or(u64::MAX))
            .saturating_sub(super::FD_RESERVE);
        let cap = std::env::var(super::SHARD_FDS_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok());
        let held = self.pipes.len() + 2 * self.apps.len();
        cap.map_or(free, |c| {
            free.min(c.saturating_sub(u64::try_from(held).unwrap_or(u64::MAX)))
        })
    }

    fn logs_of(
        &mut self,
        app: &str,
        instance: u32,
        policy: &crate::spec::LogPolicy,
    ) -> io::Result<AppLogs> {
        let key = (app.to_owned(), policy.per_instance.then_some(instance));
        if let Some(logs) = self.apps.get(&key)
            && logs.are(&self.log_dir, app, instance, policy)
        {
            logs.set_policy(policy);
            return Ok(logs.clone());
        }
        let logs = AppLogs::open(&self.log_dir, app, instance, policy)?;
        self.apps.insert(key, logs.clone());
        Ok(logs)
    }

    fn register(
        &mut self,
        source: Source,
        app: &str,
        policy: &crate::spec::LogPolicy,
        fds: Vec<OwnedFd>,
    ) -> Reply {
        let pid = source.pid;
        if self.procs.get(&pid).is_some_and(|p| !p.open.is_empty()) {
            // already read here (a daemon re-registering after it lost track): a second
            // reader of the same pipe would only reorder lines
            return Reply::Ok;
        }
        let logs = match self.logs_of(app, source.instance, policy) {
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
            // O_NONBLOCK lives in the open file description the daemon's copy shares, which is
            // harmless: the daemon never reads from it
            if let Err(e) = pipe_io::set_nonblocking(&fd) {
                tracing::warn!("log keeper: the output of pid {pid} stays blocking: {e}");
            }
            if let Err(e) = self.watch(fd.as_fd()) {
                return Reply::Failed {
                    error: format!("cannot watch the output of pid {pid}: {e}"),
                };
            }
            open.push((stream, raw));
            self.pipes.insert(
                raw,
                PipeReader {
                    fd,
                    source,
                    stream,
                    pump: Pump::default(),
                    logs: logs.clone(),
                },
            );
        }
        self.procs.insert(
            pid,
            Proc {
                instance: source.instance,
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
        let tail = self.procs.get(&pipe.source.pid).map(|p| p.tail.clone());
        let Scratch { buf, lines, behind } = &mut self.scratch;
        let (stream, source) = (pipe.stream, pipe.source);
        let logs = &pipe.logs;
        let pipe_fd = pipe.fd.as_fd();
        let step = pipe.pump.step(
            pipe_fd,
            buf,
            lines,
            |b| pipe_io::read_into(pipe_fd, b),
            &mut |batch| {
                let mut records = behind.buffer();
                match logs.format(source, stream, batch, &mut records) {
                    Some(now) => behind.write(logs, stream, records, now),
                    None => behind.put_back(records),
                }
                if stream == Stream::Err
                    && let Some(t) = &tail
                {
                    t.push(batch);
                }
            },
        );
        if step == Step::End {
            // the process's output is all in its files before its end is reported
            behind.drain();
            let pid = pipe.source.pid;
            self.epoll.remove(&pipe.fd);
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
            self.reply(w.client, &Reply::Tail { lines, ended });
        }
    }

    /// Per app and stream: the files of an app's instances (`log.per_instance`) add up.
    fn counters(&self) -> Vec<AppCounters> {
        let mut sum = super::CounterSum::default();
        for ((app, _), logs) in &self.apps {
            sum.add_logs(app, logs);
        }
        let mut out = sum.into_vec();
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
                instance: p.instance,
                app: p.app.clone(),
                streams: p.open.iter().map(|&(s, _)| s).collect(),
            };
            let fds: Vec<BorrowedFd<'_>> = p
                .open
                .iter()
                .filter_map(|(_, f)| self.pipes.get(f).map(|pipe| pipe.fd.as_fd()))
                .collect();
            if let Err(e) = self.send_to(client, &reply, &fds) {
                self.gone(client, &e);
            }
        }
        if self.clients.contains_key(&client) {
            self.reply(client, &Reply::End);
        }
    }
}

/// The `stats` reply with the counters of `all` from `from` on, at most [`super::STATS_PAGE`].
fn stats_page(mut all: Vec<AppCounters>, from: u32) -> Reply {
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(all.len());
    let to = (from + super::STATS_PAGE).min(all.len());
    let next = (to < all.len()).then(|| u32::try_from(to).unwrap_or(u32::MAX));
    all.truncate(to);
    Reply::Stats {
        apps: all.split_off(from),
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten thousand apps' counters come in pages that each fit a message, and add up to all.
    #[test]
    fn stats_come_in_pages_that_fit_a_message() {
        let all: Vec<AppCounters> = (0..20_000)
            .map(|i| AppCounters {
                app: format!("app-{i:05}"),
                stream: if i % 2 == 0 { Stream::Out } else { Stream::Err },
                written: u64::MAX,
                dropped: u64::MAX,
                forwarded: Vec::new(),
            })
            .collect();
        let mut got = Vec::new();
        let mut from = 0;
        loop {
            let reply = stats_page(all.clone(), from);
            let size = serde_json::to_vec(&reply).unwrap().len();
            assert!(size < super::super::MAX_MESSAGE / 2, "{size} bytes");
            let Reply::Stats { apps, next } = reply else {
                panic!("not stats")
            };
            got.extend(apps);
            match next {
                Some(n) => from = n,
                None => break,
            }
        }
        assert_eq!(got, all);
    }
}
