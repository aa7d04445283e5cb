//! Insight (issue 22): the book of what the kernel saw each app do. Execs inside its tree (all
//! of them counted, the latest kept, the ones its `exec_allow` list does not allow counted
//! apart), its run-queue delay over a recent window, from the cumulative histogram the eBPF
//! programs keep, and its TCP view: the addresses it listens on, its connections counted by
//! direction, and the latest peers (a bounded list: a busy server's clients never grow it).
//!
//! Book-keeping and arithmetic only: the figures come from the eBPF source, passed in. It must
//! not read `/proc` or estimate: without eBPF an app's insight says why it is unavailable and
//! carries no figures, and execs reported by the procfs source (seen only between two scans)
//! are never booked here.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant},
};

use turbo_api::{AppInsight, ExecRecord, KernelEvent, PeerRecord};
use turbo_common::{RUNQ_BUCKETS, RunqStats};

use crate::supervisor::AppId;

/// A recent window is renewed once it is this old, so it spans one to two of these.
const WINDOW: Duration = Duration::from_secs(2);

/// Events of an app's descendants that may enter its timeline (each is also an `AppEvent`
/// signal on the bus) in a burst, then [`EVENTS_PER_SECOND`]. Beyond that they are counted,
/// not kept: a tree forking thousands of processes a second must neither flood the bus (and
/// the daemon, which spent its time on signals nobody read, with `status` waiting behind them)
/// nor push the app's own events out of the timeline. The main process's events always pass.
pub const EVENT_BURST: u32 = 64;
/// See [`EVENT_BURST`].
pub const EVENTS_PER_SECOND: u32 = 20;

/// The book of every app.
#[derive(Debug, Default)]
pub struct Insight {
    /// Boxed, as are the usage books: a table of 1000 entries has 2048 slots, so large values
    /// inline would be half empty slots.
    apps: HashMap<AppId, Box<Book>>,
}

#[derive(Debug, Default)]
struct Book {
    execs_total: u64,
    execs_unexpected: u64,
    /// Newest first.
    recent: VecDeque<ExecRecord>,
    /// Two readings of the cumulative run-queue figures: the base of the recent window is the
    /// older one, so a window never shrinks to nothing right after it is renewed.
    older: Option<(Instant, RunqStats)>,
    newer: Option<(Instant, RunqStats)>,
    net: Net,
    /// Oldest first, at most [`AppInsight::RECENT_EVENTS`].
    events: VecDeque<KernelEvent>,
    budget: Budget,
}

/// A token bucket for the timeline (see [`EVENT_BURST`]).
#[derive(Debug, Default)]
struct Budget {
    tokens: u32,
    /// When `tokens` was last topped up (`None`: never, the bucket is full).
    at: Option<Instant>,
    /// Events held back since the last one that passed.
    held: u64,
}

/// An app's TCP view.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Net {
    /// Addresses a process of the app listens on.
    pub listening: BTreeSet<SocketAddr>,
    /// Connections it started.
    pub connects: u64,
    /// Connections established on its ports.
    pub accepts: u64,
    /// Newest first, one per (direction, peer), at most [`AppInsight::RECENT_PEERS`].
    pub peers: VecDeque<PeerRecord>,
}

/// What a TCP event of an app was (see `crate::events::NetKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetSeen {
    /// It listens on the address.
    Listen(SocketAddr),
    /// It no longer does.
    Unlisten(SocketAddr),
    /// It connected to the peer.
    Connect(SocketAddr),
    /// The peer connected to it.
    Accept(SocketAddr),
}

/// Run-queue figures of a recent window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recent {
    pub count: u64,
    pub mean_us: u64,
    pub p99_us: u64,
    pub window: Duration,
}

impl Insight {
    /// Whether an event of `app` at `now` may enter its timeline (`main`: of its main
    /// process, which always may): `Some(n)` when it may, `n` being the events held back
    /// before it (the caller says so in the timeline), `None` when it is held back.
    pub fn admit(&mut self, app: AppId, now: Instant, main: bool) -> Option<u64> {
        let b = &mut self.apps.entry(app).or_default().budget;
        match b.at {
            None => {
                b.tokens = EVENT_BURST;
                b.at = Some(now);
            }
            Some(at) => {
                let per_token = Duration::from_secs(1) / EVENTS_PER_SECOND;
                let elapsed = now.saturating_duration_since(at);
                let gained =
                    u32::try_from(elapsed.as_nanos() / per_token.as_nanos()).unwrap_or(u32::MAX);
                if b.tokens.saturating_add(gained) >= EVENT_BURST {
                    b.tokens = EVENT_BURST;
                    b.at = Some(now);
                } else if gained > 0 {
                    b.tokens += gained;
                    b.at = Some(at + per_token * gained);
                }
            }
        }
        if !main {
            if b.tokens == 0 {
                b.held += 1;
                return None;
            }
            b.tokens -= 1;
        }
        Some(std::mem::take(&mut b.held))
    }

    /// Books an exec of `app`'s tree.
    pub fn exec(&mut self, app: AppId, record: ExecRecord) {
        let book = self.apps.entry(app).or_default();
        book.execs_total += 1;
        if !record.allowed {
            book.execs_unexpected += 1;
        }
        book.recent.push_front(record);
        book.recent.truncate(AppInsight::RECENT_EXECS);
    }

    /// `(execs, unexpected execs)` of `app` so far.
    #[must_use]
    pub fn exec_counts(&self, app: AppId) -> (u64, u64) {
        self.apps
            .get(&app)
            .map_or((0, 0), |b| (b.execs_total, b.execs_unexpected))
    }

    /// The latest execs of `app`, newest first.
    #[must_use]
    pub fn recent_execs(&self, app: AppId) -> Vec<ExecRecord> {
        self.apps
            .get(&app)
            .map(|b| b.recent.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The run-queue figures of `app` since the reading before the last renewal, given its
    /// cumulative figures `now`; the first reading has an empty window.
    pub fn recent_runq(&mut self, app: AppId, total: RunqStats, now: Instant) -> Recent {
        let book = self.apps.entry(app).or_default();
        let base = book.older.or(book.newer);
        match book.newer {
            None => book.newer = Some((now, total)),
            Some((at, _)) if now.duration_since(at) >= WINDOW => {
                book.older = book.newer;
                book.newer = Some((now, total));
            }
            Some(_) => {}
        }
        base.map_or_else(Recent::default, |(at, before)| {
            recent(&before, &total, now.duration_since(at))
        })
    }

    /// Books an event of `app` for `turbo events`, dropping the oldest beyond the bound.
    pub fn event(&mut self, app: AppId, event: KernelEvent) {
        let events = &mut self.apps.entry(app).or_default().events;
        if events.len() == AppInsight::RECENT_EVENTS {
            events.pop_front();
        }
        events.push_back(event);
    }

    /// The latest events of `app`, oldest first.
    #[must_use]
    pub fn events(&self, app: AppId) -> Vec<KernelEvent> {
        self.apps
            .get(&app)
            .map(|b| b.events.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Books a TCP event of `app` at `at_ms` (Unix ms). True when it is news for `turbo
    /// events`: a listen or its end, or a connection with a peer not in the recent list.
    pub fn net(&mut self, app: AppId, seen: NetSeen, at_ms: u64) -> bool {
        let net = &mut self.apps.entry(app).or_default().net;
        let (direction, peer) = match seen {
            NetSeen::Listen(addr) => {
                net.listening.insert(addr);
                return true;
            }
            NetSeen::Unlisten(addr) => {
                net.listening.remove(&addr);
                return true;
            }
            NetSeen::Connect(peer) => {
                net.connects += 1;
                ("connect", peer.to_string())
            }
            NetSeen::Accept(peer) => {
                net.accepts += 1;
                ("accept", peer.ip().to_string())
            }
        };
        let count = match net
            .peers
            .iter()
            .position(|p| p.direction == direction && p.peer == peer)
        {
            Some(i) => net.peers.remove(i).map_or(0, |p| p.count),
            None => 0,
        };
        net.peers.push_front(PeerRecord {
            at_ms,
            direction: direction.to_owned(),
            peer,
            count: count + 1,
        });
        net.peers.truncate(AppInsight::RECENT_PEERS);
        count == 0
    }

    /// The TCP view of `app` (empty when nothing was seen).
    #[must_use]
    pub fn net_view(&self, app: AppId) -> Net {
        self.apps
            .get(&app)
            .map(|b| b.net.clone())
            .unwrap_or_default()
    }

    /// Forgets an app that is gone.
    pub fn remove(&mut self, app: AppId) {
        self.apps.remove(&app);
    }
}

/// The figures between two cumulative readings.
fn recent(before: &RunqStats, after: &RunqStats, window: Duration) -> Recent {
    let mut buckets = [0u64; RUNQ_BUCKETS];
    for (d, (a, b)) in buckets
        .iter_mut()
        .zip(after.buckets.iter().zip(before.buckets))
    {
        *d = a.saturating_sub(b);
    }
    let count = after.count.saturating_sub(before.count);
    let sum_ns = after.sum_ns.saturating_sub(before.sum_ns);
    Recent {
        count,
        mean_us: sum_ns.checked_div(count).unwrap_or(0) / 1_000,
        p99_us: percentile_us(&buckets, 0.99),
        window,
    }
}

/// The upper bound in µs of the bucket holding the `q` quantile (0 without waits); the last
/// bucket has no upper bound and reports its lower one.
#[must_use]
pub fn percentile_us(buckets: &[u64], q: f64) -> u64 {
    let count: u64 = buckets.iter().sum();
    if count == 0 {
        return 0;
    }
    // the rank of the quantile, rounded up (1-based)
    let rank = ((count as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return bucket_upper_us(i.min(RUNQ_BUCKETS - 2));
        }
    }
    bucket_upper_us(RUNQ_BUCKETS - 2)
}

/// The upper bound of bucket `i` in µs: `2^i` (see `turbo_common::runq_bucket`).
#[must_use]
pub const fn bucket_upper_us(i: usize) -> u64 {
    1 << i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_churning_tree_passes_a_burst_then_a_rate_and_the_main_process_always() {
        let t0 = Instant::now();
        let mut ins = Insight::default();
        for _ in 0..EVENT_BURST {
            assert_eq!(ins.admit(1, t0, false), Some(0));
        }
        assert_eq!(ins.admit(1, t0, false), None, "the burst is spent");
        assert_eq!(ins.admit(1, t0, false), None);
        assert_eq!(
            ins.admit(2, t0, false),
            Some(0),
            "apps have their own budget"
        );
        assert_eq!(
            ins.admit(1, t0, true),
            Some(2),
            "the main process passes, with the count"
        );
        let tick = Duration::from_secs(1) / EVENTS_PER_SECOND;
        assert_eq!(
            ins.admit(1, t0 + tick / 2, false),
            None,
            "half a token is none"
        );
        assert_eq!(ins.admit(1, t0 + tick, false), Some(1), "one token a tick");
        assert_eq!(ins.admit(1, t0 + tick, false), None);
        // a second's rate, not more, after a second
        let later = t0 + tick + Duration::from_secs(1);
        let passed = (0..100)
            .filter(|_| ins.admit(1, later, false).is_some())
            .count();
        assert_eq!(passed, EVENTS_PER_SECOND as usize);
        // a quiet minute refills the burst, and no more
        let quiet = later + Duration::from_secs(60);
        let passed = (0..1000)
            .filter(|_| ins.admit(1, quiet, false).is_some())
            .count();
        assert_eq!(passed, EVENT_BURST as usize);
    }

    fn stats(waits: &[(usize, u64)], sum_ns: u64) -> RunqStats {
        let mut s = RunqStats::default();
        for &(b, n) in waits {
            s.buckets[b] += n;
            s.count += n;
        }
        s.sum_ns = sum_ns;
        s
    }

    #[test]
    fn execs_are_counted_and_the_latest_kept() {
        let mut book = Insight::default();
        for k in 0..20 {
            book.exec(
                3,
                ExecRecord {
                    at_ms: k,
                    pid: 100 + k as u32,
                    filename: format!("/bin/x{k}"),
                    allowed: k != 7,
                },
            );
        }
        assert_eq!(book.exec_counts(3), (20, 1));
        let recent = book.recent_execs(3);
        assert_eq!(recent.len(), AppInsight::RECENT_EXECS);
        assert_eq!(recent[0].filename, "/bin/x19", "newest first");
        assert_eq!(book.exec_counts(4), (0, 0));
        book.remove(3);
        assert_eq!(book.exec_counts(3), (0, 0));
    }

    #[test]
    fn the_recent_window_spans_one_to_two_windows() {
        let mut book = Insight::default();
        let t0 = Instant::now();
        let first = book.recent_runq(1, stats(&[(3, 10)], 50_000), t0);
        assert_eq!(first, Recent::default(), "nothing to compare with yet");

        let t1 = t0 + Duration::from_secs(1);
        let r = book.recent_runq(1, stats(&[(3, 10), (12, 90)], 50_000 + 90_000_000), t1);
        assert_eq!((r.count, r.window), (90, Duration::from_secs(1)));
        assert_eq!(r.mean_us, 1_000);
        assert_eq!(r.p99_us, 4_096, "bucket 12 holds waits up to 2^12 us");

        // renewed at t2 (a window old): the base stays t0 until the next renewal
        let t2 = t0 + Duration::from_secs(2);
        let busy = stats(&[(3, 10), (12, 100)], 50_000 + 100_000_000);
        assert_eq!(book.recent_runq(1, busy, t2).window, Duration::from_secs(2));
        let t3 = t0 + Duration::from_secs(3);
        let quiet = stats(&[(3, 20), (12, 100)], 60_000 + 100_000_000);
        let r = book.recent_runq(1, quiet, t3);
        assert_eq!(r.window, Duration::from_secs(3));
        let t4 = t0 + Duration::from_secs(4);
        book.recent_runq(1, quiet, t4);
        // base is now t2: only the quiet waits of bucket 3 are recent
        let t5 = t0 + Duration::from_secs(5);
        let r = book.recent_runq(1, stats(&[(3, 30), (12, 100)], 70_000 + 100_000_000), t5);
        assert_eq!((r.count, r.p99_us, r.mean_us), (20, 8, 1));
    }

    #[test]
    fn the_tcp_view_keeps_ports_counts_and_a_bounded_list_of_peers() {
        let mut book = Insight::default();
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        book.net(1, NetSeen::Listen(addr("0.0.0.0:8080")), 1);
        book.net(1, NetSeen::Listen(addr("[::]:9090")), 1);
        book.net(1, NetSeen::Unlisten(addr("[::]:9090")), 2);
        for k in 0..40u16 {
            book.net(
                1,
                NetSeen::Accept(addr(&format!("10.0.0.1:{}", 40000 + k))),
                3,
            );
        }
        book.net(1, NetSeen::Connect(addr("10.0.0.2:5432")), 4);
        for k in 0..20u8 {
            book.net(1, NetSeen::Connect(addr(&format!("10.0.1.{k}:80"))), 5);
        }
        let net = book.net_view(1);
        assert_eq!(
            net.listening.into_iter().collect::<Vec<_>>(),
            vec![addr("0.0.0.0:8080")]
        );
        assert_eq!((net.accepts, net.connects), (40, 21));
        assert_eq!(net.peers.len(), AppInsight::RECENT_PEERS);
        assert_eq!(net.peers[0].peer, "10.0.1.19:80", "newest first");
        assert!(
            book.net(1, NetSeen::Accept(addr("10.0.0.1:1")), 6),
            "news again"
        );
        assert!(
            !book.net(1, NetSeen::Accept(addr("10.0.0.1:2")), 6),
            "a repeat is not news"
        );
        let first = &book.net_view(1).peers[0];
        assert_eq!(
            (first.peer.as_str(), first.count),
            ("10.0.0.1", 2),
            "fell off, counted anew"
        );
        assert_eq!(book.net_view(2), Net::default());
    }

    #[test]
    fn the_event_list_is_bounded_and_oldest_first() {
        let mut book = Insight::default();
        for k in 0..100u64 {
            let event = KernelEvent {
                at_ms: k,
                kind: "exec".into(),
                ..KernelEvent::default()
            };
            book.event(7, event);
        }
        let events = book.events(7);
        assert_eq!(events.len(), AppInsight::RECENT_EVENTS);
        assert_eq!(events[0].at_ms, 100 - AppInsight::RECENT_EVENTS as u64);
        assert_eq!(events.last().map(|e| e.at_ms), Some(99));
    }

    #[test]
    fn percentiles_of_a_histogram() {
        assert_eq!(percentile_us(&[0; RUNQ_BUCKETS], 0.99), 0);
        let mut b = [0u64; RUNQ_BUCKETS];
        b[2] = 99;
        b[20] = 1;
        assert_eq!(percentile_us(&b, 0.99), 4);
        assert_eq!(percentile_us(&b, 1.0), 1 << 20);
        b[RUNQ_BUCKETS - 1] = 1000;
        assert_eq!(percentile_us(&b, 0.99), 1 << (RUNQ_BUCKETS - 2));
    }
}
