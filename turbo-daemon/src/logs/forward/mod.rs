//! Sending records to journald and syslog (`log: {to: [journald, syslog]}`), besides or instead
//! of the log files, without ever slowing down the reading of the apps' pipes.
//!
//! The writer (the keeper's loop, or the daemon's own capture) hands each batch of lines to
//! [`Route::submit`]: one copy of the batch's lines into one buffer, pushed onto the bounded
//! queue of each destination. Each destination kind has a thread of its own that encodes the
//! records ([`journald`]: the native protocol; [`syslog`]: RFC 5424) and sends them with
//! blocking sends bounded by [`SEND_TIMEOUT`]. So a receiver that keeps up gets every record
//! (a full socket makes its thread wait, not drop), and one that is slow, stuck or absent costs
//! the app nothing: once its queue holds [`QUEUE_MAX`] bytes, new batches are dropped, and an
//! absent receiver's batches are dropped while it stays unreachable (a new connection is tried
//! at most every [`RETRY`]). Every record sent or dropped is counted per app, stream and
//! destination ([`Counters`], the `turbo_log_forward*` metrics).
//!
//! This module must not write log files, and nothing here may block the caller of `submit`.

pub(crate) mod journald;
pub(crate) mod syslog;

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    io,
    ops::Range,
    path::PathBuf,
    sync::{
        Arc, Condvar, Mutex, OnceLock, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

pub use self::syslog::SyslogAddr;
use super::{Source, Stream};
use crate::spec::{LogPolicy, log::INFO};

/// Bytes of lines a destination's queue holds at most; batches beyond it are dropped.
pub const QUEUE_MAX: usize = 16 * 1024 * 1024;
/// Longest wait for a receiver to take one record before it counts as stuck.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// Least time between two attempts to reach an unreachable receiver.
pub const RETRY: Duration = Duration::from_secs(1);

/// Where records are sent, besides the files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dest {
    /// The journal's native datagram socket.
    Journald,
    /// A syslog receiver, RFC 5424.
    Syslog,
}

impl Dest {
    /// Both, in the order of the counters.
    pub const BOTH: [Dest; 2] = [Dest::Journald, Dest::Syslog];

    /// As the metrics' `to` label says it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Journald => "journald",
            Self::Syslog => "syslog",
        }
    }
}

/// Records of one app's stream sent to one destination, and dropped on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardCount {
    /// The destination.
    pub to: Dest,
    /// Records the receiver took.
    pub sent: u64,
    /// Records dropped (queue full, receiver absent or stuck).
    pub dropped: u64,
}

/// Per-app counters, by destination and stream: `[sent, dropped]`.
#[derive(Debug, Default)]
pub struct Counters([[[AtomicU64; 2]; 2]; 2]);

impl Counters {
    fn add(&self, to: Dest, stream: Stream, sent: u64, dropped: u64) {
        let c = &self.0[to as usize][stream_index(stream)];
        if sent > 0 {
            c[0].fetch_add(sent, Ordering::Relaxed);
        }
        if dropped > 0 {
            c[1].fetch_add(dropped, Ordering::Relaxed);
        }
    }

    /// The counts of `stream` for every destination that has sent or dropped anything.
    #[must_use]
    pub fn of(&self, stream: Stream) -> Vec<ForwardCount> {
        Dest::BOTH
            .into_iter()
            .map(|to| {
                let c = &self.0[to as usize][stream_index(stream)];
                ForwardCount {
                    to,
                    sent: c[0].load(Ordering::Relaxed),
                    dropped: c[1].load(Ordering::Relaxed),
                }
            })
            .filter(|c| c.sent + c.dropped > 0)
            .collect()
    }
}

const fn stream_index(stream: Stream) -> usize {
    match stream {
        Stream::Out => 0,
        Stream::Err => 1,
    }
}

/// Where one app's records go, and what they say there; rebuilt when its policy changes.
#[derive(Debug)]
pub struct Route {
    app: Arc<str>,
    journald: Option<PathBuf>,
    syslog: Option<SyslogAddr>,
    err_priority: u8,
    counters: Arc<Counters>,
}

impl Route {
    /// The route of `policy`, or `None` when it sends nothing beyond the files.
    #[must_use]
    pub fn of(app: &str, policy: &LogPolicy, counters: &Arc<Counters>) -> Option<Arc<Route>> {
        let syslog = policy
            .syslog
            .as_deref()
            .and_then(|a| match SyslogAddr::parse(a) {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::warn!("{app}: no syslog forwarding: {e}");
                    None
                }
            });
        if policy.journald.is_none() && syslog.is_none() {
            return None;
        }
        Some(Arc::new(Route {
            app: app.into(),
            journald: policy.journald.clone(),
            syslog,
            err_priority: policy.err_priority,
            counters: Arc::clone(counters),
        }))
    }

    /// Queues one batch of `source`'s `stream` (lines are ranges of `data`) for every
    /// destination of this route. One allocation per batch; never blocks.
    pub fn submit(
        self: &Arc<Self>,
        source: Source,
        stream: Stream,
        at_ms: i64,
        data: &[u8],
        lines: &[Range<usize>],
    ) {
        let mut text = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for range in lines {
            // a line never holds a newline (lines were split on it), so it can end one here
            text.extend_from_slice(&data[range.clone()]);
            text.push(b'\n');
        }
        let batch = Arc::new(Batch {
            route: Arc::clone(self),
            source,
            stream,
            at_ms,
            text,
            lines: lines.len() as u64,
        });
        if self.journald.is_some() {
            queue(Dest::Journald).push(Dest::Journald, &batch);
        }
        if self.syslog.is_some() {
            queue(Dest::Syslog).push(Dest::Syslog, &batch);
        }
    }

    /// The severity of `stream`'s records.
    const fn priority(&self, stream: Stream) -> u8 {
        match stream {
            Stream::Out => INFO,
            Stream::Err => self.err_priority,
        }
    }
}

/// One batch of lines on its way.
#[derive(Debug)]
struct Batch {
    route: Arc<Route>,
    source: Source,
    stream: Stream,
    at_ms: i64,
    /// The lines, each followed by `\n`.
    text: Vec<u8>,
    lines: u64,
}

impl Batch {
    fn lines(&self) -> impl Iterator<Item = &[u8]> {
        let body = self.text.strip_suffix(b"\n").unwrap_or(&self.text);
        // an empty batch has no lines, not one empty line
        body.split(|&b| b == b'\n').take(self.lines as usize)
    }

    fn count(&self, to: Dest, sent: u64, dropped: u64) {
        self.route.counters.add(to, self.stream, sent, dropped);
    }
}

/// A destination's bounded queue, and the thread that empties it.
#[derive(Debug, Default)]
struct Queue {
    state: Mutex<Pending>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct Pending {
    batches: VecDeque<Arc<Batch>>,
    bytes: usize,
}

impl Queue {
    fn push(&self, to: Dest, batch: &Arc<Batch>) {
        let mut p = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if p.bytes + batch.text.len() > QUEUE_MAX {
            drop(p);
            return batch.count(to, 0, batch.lines);
        }
        p.bytes += batch.text.len();
        p.batches.push_back(Arc::clone(batch));
        drop(p);
        self.ready.notify_one();
    }

    fn pop(&self) -> Arc<Batch> {
        let mut p = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(b) = p.batches.pop_front() {
                p.bytes -= b.text.len();
                return b;
            }
            p = self.ready.wait(p).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The queue of `to`, its thread started on first use.
fn queue(to: Dest) -> &'static Queue {
    static QUEUES: [OnceLock<Queue>; 2] = [OnceLock::new(), OnceLock::new()];
    let cell = &QUEUES[to as usize];
    if let Some(q) = cell.get() {
        return q;
    }
    let mut started = false;
    let q = cell.get_or_init(|| {
        started = true;
        Queue::default()
    });
    if started {
        let spawned = std::thread::Builder::new()
            .name(format!("log-{}", to.as_str()))
            .spawn(move || match to {
                Dest::Journald => drain(to, q, |b| b.route.journald.clone(), journald::send),
                Dest::Syslog => drain(to, q, |b| b.route.syslog.clone(), syslog::send),
            });
        if let Err(e) = spawned {
            tracing::warn!(
                "no log forwarding to {}: cannot start its thread: {e}",
                to.as_str()
            );
        }
    }
    q
}

/// A connection to one receiver, as the destination's sender keeps it.
pub(super) trait Link: Sized {
    /// The receiver's address.
    type Addr: Clone + Eq + Hash;
    /// Connects (sends time out after [`SEND_TIMEOUT`]).
    fn connect(addr: &Self::Addr) -> io::Result<Self>;
}

/// The body of a destination's thread: each batch to its receiver, through a connection kept
/// per address; `send` sends a whole batch and returns how many records went out before a
/// failure (the rest counts as dropped, and the connection is made anew after [`RETRY`]).
fn drain<L: Link>(
    to: Dest,
    q: &Queue,
    addr_of: impl Fn(&Batch) -> Option<L::Addr>,
    send: impl Fn(&mut L, &Batch, &mut Vec<u8>) -> (u64, Option<io::Error>),
) {
    let mut links: HashMap<L::Addr, L> = HashMap::new();
    let mut down: HashMap<L::Addr, Instant> = HashMap::new();
    let mut buf = Vec::new();
    loop {
        let batch = q.pop();
        let Some(addr) = addr_of(&batch) else {
            continue;
        };
        if down.get(&addr).is_some_and(|until| Instant::now() < *until) {
            batch.count(to, 0, batch.lines);
            continue;
        }
        let link = match links.entry(addr.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => match L::connect(&addr) {
                Ok(l) => {
                    if down.remove(&addr).is_some() {
                        tracing::info!("{}: the receiver is back", to.as_str());
                    }
                    e.insert(l)
                }
                Err(err) => {
                    if down.insert(addr, Instant::now() + RETRY).is_none() {
                        tracing::warn!(
                            "{}: cannot reach the receiver ({err}); records are dropped and counted until it is back",
                            to.as_str()
                        );
                    }
                    batch.count(to, 0, batch.lines);
                    continue;
                }
            },
        };
        let (sent, failed) = send(link, &batch, &mut buf);
        batch.count(to, sent, batch.lines - sent);
        if let Some(err) = failed {
            links.remove(&addr);
            tracing::warn!(
                "{}: sending failed ({err}); records are dropped and counted until the receiver is back",
                to.as_str()
            );
            down.insert(addr, Instant::now() + RETRY);
        }
        if buf.capacity() > super::pump::SHRINK_ABOVE {
            buf.shrink_to(super::pump::READ_SIZE);
        }
    }
}

/// A syslog severity by name (`warning`, `err` …) or number (0 to 7).
#[must_use]
pub fn severity(name: Option<&str>, number: Option<u64>) -> Option<u8> {
    const NAMES: [&[&str]; 8] = [
        &["emerg", "emergency", "panic"],
        &["alert"],
        &["crit", "critical"],
        &["err", "error"],
        &["warning", "warn"],
        &["notice"],
        &["info"],
        &["debug"],
    ];
    if let Some(n) = number {
        return u8::try_from(n).ok().filter(|&n| n <= 7);
    }
    let name = name?.trim().to_ascii_lowercase();
    NAMES
        .iter()
        .position(|names| names.contains(&name.as_str()))
        .and_then(|i| u8::try_from(i).ok())
}

#[cfg(test)]
mod tests;
