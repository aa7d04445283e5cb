//! The procfs event source: the fallback when eBPF is off or cannot load, and the memory sampler
//! when eBPF lacks `rss_stat`. It produces the same [`Event`]s where `/proc` can show them.
//!
//! A scanner task wakes every `interval` while it tracks trees, and whenever a memory reading is
//! due (not at all while idle), and, in a blocking-pool thread so the daemon's loop never waits
//! on `/proc`:
//!
//! * lists `/proc` and reads `/proc/<pid>/stat` of pids it has not seen before (all of them
//!   once after each [`Procfs::watch`]); a new process whose parent is tracked becomes tracked
//!   with the parent's key ([`Event::Forked`]), repeatedly, so grandchildren found in the same
//!   scan are linked too. A process that `setsid`s or whose parent exits stays tracked: tracking
//!   is by the parent link seen when it first appeared;
//! * re-reads `stat` of every tracked pid: a new `comm` is an exec ([`Event::Exec`], with
//!   `/proc/<pid>/exe`); a new child whose `comm` differs from its parent's exec'd before the
//!   scan saw it; a zombie or a vanished pid is an exit ([`Event::Exited`], with the zombie's
//!   status when caught, else [`WaitStatus::UNKNOWN`]), reported for descendants only, never
//!   for the watched pids themselves, which the runtime reaps and reports with the real status;
//! * reads `/proc/<pid>/statm` of every pid with a memory threshold (a limit or a warning
//!   level; no other pid) and reports crossings with the same hysteresis as the kernel
//!   ([`Event::MemoryOver`] / [`Event::MemoryUnder`]). Each such pid has its own schedule
//!   ([`pace`]): read again sooner the closer it is to its threshold and the faster it grew since
//!   the last reading, at most every [`pace::FLOOR`] and at least every `interval`, so a process
//!   that holds still costs one read per `interval` and a fast grower is caught within a few MB.
//!
//! Limits of this source, by nature: a process that lives less than one interval is missed,
//! and so is a grandchild whose parent exited before any scan saw it (its parent link is gone,
//! it belongs to init); an exec of the same program name is not seen; there are no OOM-victim or
//! signal events. Within one scan, events come in the order forks, execs, exits.
//!
//! It must not act on processes (no signals, no `wait`).

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::{Event, SourceError, SourceKind, WaitStatus, next_over};
use crate::os::proc::{ProcStat as Stat, exe_or, list_pids, page_size, read_stat, resident_pages};

pub mod pace;

/// Settings of [`Procfs::start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcfsOptions {
    /// Time between two tree scans while something is tracked; the longest time between two
    /// memory readings of a process with a threshold.
    pub interval: Duration,
    /// Follow process trees and exits (the fallback source). False: only sample memory limits
    /// (next to eBPF without `rss_stat`).
    pub track_trees: bool,
}

/// Handle of the scanner task. Dropping it ends the task.
#[derive(Debug)]
pub struct Procfs {
    commands: UnboundedSender<Command>,
    page_size: u64,
}

#[derive(Debug)]
enum Command {
    Watch { pid: u32, key: u32, stat: Stat },
    Unwatch(u32),
    SetLimit { pid: u32, pages: u64 },
    ClearLimit(u32),
}

impl Procfs {
    /// Starts the scanner task on the current tokio runtime; it sends into `tx`.
    ///
    /// # Panics
    /// Outside a tokio runtime (like `tokio::spawn`).
    #[must_use]
    pub fn start(options: ProcfsOptions, tx: UnboundedSender<Event>) -> Self {
        let (commands, rx) = unbounded_channel();
        let page_size = page_size();
        let scanner = Scanner {
            options,
            page_size,
            tracked: HashMap::new(),
            limits: HashMap::new(),
            known: HashSet::new(),
            rescan_all: true,
        };
        tokio::spawn(scanner.run(rx, tx));
        Self {
            commands,
            page_size,
        }
    }

    /// Tracks `pid` (a process the runtime started or adopted) and, from the next scans, its
    /// descendants, all reported with `key`.
    ///
    /// # Errors
    /// When `/proc/<pid>/stat` cannot be read (no such process).
    pub fn watch(&self, pid: u32, key: u32) -> Result<(), SourceError> {
        let stat = read_stat(pid).map_err(|e| SourceError::Process {
            pid,
            reason: e.to_string(),
        })?;
        let _ = self.commands.send(Command::Watch { pid, key, stat });
        Ok(())
    }

    /// Stops tracking `pid` and clears its limit (its descendants stay tracked until they end).
    pub fn unwatch(&self, pid: u32) {
        let _ = self.commands.send(Command::Unwatch(pid));
    }

    /// Samples `pid`'s resident memory against `bytes` from now on; an immediate sample reports
    /// [`Event::MemoryOver`] at once if it is over already.
    ///
    /// # Errors
    /// When the process does not exist.
    pub fn set_memory_limit(&self, pid: u32, bytes: u64) -> Result<(), SourceError> {
        resident_pages(pid).map_err(|e| SourceError::Process {
            pid,
            reason: e.to_string(),
        })?;
        let pages = bytes.div_ceil(self.page_size).max(1);
        let _ = self.commands.send(Command::SetLimit { pid, pages });
        Ok(())
    }

    /// Stops sampling `pid`.
    pub fn clear_memory_limit(&self, pid: u32) {
        let _ = self.commands.send(Command::ClearLimit(pid));
    }
}

#[derive(Debug)]
struct Tracked {
    key: u32,
    /// Given to `watch`: its exit is the runtime's to report.
    root: bool,
    start_time: u64,
    comm: String,
}

#[derive(Debug)]
struct Limit {
    pages: u64,
    over: bool,
    pace: pace::Pace,
    /// When to read this process's memory next.
    due: Instant,
}

impl Limit {
    /// The level whose crossing would be reported next: the limit, or once over it the level
    /// it must fall under (see [`next_over`]).
    const fn next_level(&self) -> u64 {
        if self.over {
            self.pages - self.pages / 8
        } else {
            self.pages
        }
    }
}

#[derive(Debug)]
struct Scanner {
    options: ProcfsOptions,
    page_size: u64,
    tracked: HashMap<u32, Tracked>,
    limits: HashMap<u32, Limit>,
    /// Pids present at the last scan (only new ones have their `stat` read).
    known: HashSet<u32>,
    /// Read every pid's `stat` at the next scan: a new root may have children already.
    rescan_all: bool,
}

impl Scanner {
    /// Whether tree scans are due every `interval` (else only memory readings wake the task).
    fn scans_trees(&self) -> bool {
        self.options.track_trees && !self.tracked.is_empty()
    }

    /// When the earliest memory reading is due; none without thresholds.
    fn next_reading(&self) -> Option<Instant> {
        self.limits.values().map(|l| l.due).min()
    }

    async fn run(mut self, mut commands: UnboundedReceiver<Command>, tx: UnboundedSender<Event>) {
        let mut tick = tokio::time::interval(self.options.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let trees = self.scans_trees();
            let reading = self.next_reading();
            // (a deadline far off when nothing is due: the branch is disabled then anyway)
            let reading_at = reading.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let scan_trees = tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(command) => {
                        for event in self.apply(command) {
                            let _ = tx.send(event);
                        }
                        continue;
                    }
                    None => return,
                },
                () = tx.closed() => return,
                _ = tick.tick(), if trees => true,
                () = tokio::time::sleep_until(reading_at.into()), if reading.is_some() => false,
            };
            // /proc reads block; keep them off the daemon's (single-threaded) loop.
            let scanned = tokio::task::spawn_blocking(move || {
                let events = self.scan(scan_trees);
                (self, events)
            })
            .await;
            let events;
            (self, events) = match scanned {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(error = %e, "procfs scan failed; procfs events stopped");
                    return;
                }
            };
            for event in events {
                if tx.send(event).is_err() {
                    return;
                }
            }
        }
    }

    fn apply(&mut self, command: Command) -> Vec<Event> {
        match command {
            Command::Watch { pid, key, stat } => {
                self.tracked.insert(
                    pid,
                    Tracked {
                        key,
                        root: true,
                        start_time: stat.start_ticks,
                        comm: stat.comm,
                    },
                );
                self.rescan_all = true;
                Vec::new()
            }
            Command::Unwatch(pid) => {
                if self.tracked.get(&pid).is_some_and(|t| t.root) {
                    self.tracked.remove(&pid);
                }
                self.limits.remove(&pid);
                Vec::new()
            }
            Command::SetLimit { pid, pages } => {
                // a new threshold starts fresh (see EventSource::set_memory_limit), but the
                // process's schedule stays: how fast it grows does not change with the threshold
                // (the limit follows the warning level in the middle of a fast growth)
                let pace = self.limits.get(&pid).map_or_else(
                    || pace::Pace::new(pace::FLOOR, self.options.interval),
                    |l| l.pace,
                );
                let now = Instant::now();
                self.limits.insert(
                    pid,
                    Limit {
                        pages,
                        over: false,
                        pace,
                        due: now,
                    },
                );
                let mut events = Vec::new();
                self.sample(pid, now, &mut events);
                events
            }
            Command::ClearLimit(pid) => {
                self.limits.remove(&pid);
                Vec::new()
            }
        }
    }

    /// Scans the trees if asked to, then reads the memory of the processes whose reading is due.
    fn scan(&mut self, trees: bool) -> Vec<Event> {
        let mut events = Vec::new();
        if trees && self.scans_trees() {
            match list_pids() {
                Ok(now) => self.scan_trees(&now, &mut events),
                Err(e) => tracing::warn!(error = %e, "cannot list /proc"),
            }
        }
        let now = Instant::now();
        let mut due: Vec<u32> = self
            .limits
            .iter()
            .filter(|(_, l)| l.due <= now)
            .map(|(pid, _)| *pid)
            .collect();
        due.sort_unstable();
        for pid in due {
            self.sample(pid, now, &mut events);
        }
        events
    }

    fn scan_trees(&mut self, now: &HashSet<u32>, events: &mut Vec<Event>) {
        let source = SourceKind::Procfs;
        let mut forks = Vec::new();
        let mut execs = Vec::new();
        let mut exits = Vec::new();

        // Processes appeared since the last scan (all, after a watch), linked to tracked
        // parents; repeated so a child and its own child found together are both linked.
        let mut fresh: Vec<(u32, Stat)> = {
            let mut pids: Vec<u32> = now
                .iter()
                .copied()
                .filter(|pid| {
                    (self.rescan_all || !self.known.contains(pid))
                        && !self.tracked.contains_key(pid)
                })
                .collect();
            pids.sort_unstable();
            pids.into_iter()
                .filter_map(|pid| read_stat(pid).ok().map(|st| (pid, st)))
                .collect()
        };
        let mut linked = Vec::new();
        loop {
            let before = fresh.len();
            fresh.retain(|(pid, st)| {
                let Some(parent) = self.tracked.get(&st.ppid) else {
                    return true;
                };
                // A parent younger than the child is a reused pid, not the parent.
                if st.start_ticks < parent.start_time {
                    return true;
                }
                let (key, parent_comm) = (parent.key, parent.comm.clone());
                self.tracked.insert(
                    *pid,
                    Tracked {
                        key,
                        root: false,
                        start_time: st.start_ticks,
                        comm: st.comm.clone(),
                    },
                );
                forks.push(Event::Forked {
                    parent: st.ppid,
                    child: *pid,
                    key,
                    tracked: true,
                    source,
                });
                linked.push((*pid, st.clone(), parent_comm));
                false
            });
            if fresh.len() == before {
                break;
            }
        }
        let just_linked: HashSet<u32> = linked.iter().map(|(pid, _, _)| *pid).collect();
        for (pid, st, parent_comm) in linked {
            let key = self.tracked.get(&pid).map_or(0, |t| t.key);
            if st.comm != parent_comm {
                // It exec'd between its fork and this scan.
                execs.push(Event::Exec {
                    pid,
                    key,
                    filename: exe_or(pid, &st.comm),
                    source,
                });
            }
            if st.is_zombie() {
                self.tracked.remove(&pid);
                exits.push(Event::Exited {
                    pid,
                    key,
                    status: st.exit_code.map_or(WaitStatus::UNKNOWN, WaitStatus),
                    memory: None,
                    source,
                });
            }
        }

        // Tracked processes seen before: exec'd, exited, or gone.
        let mut old: Vec<u32> = self
            .tracked
            .keys()
            .copied()
            .filter(|pid| !just_linked.contains(pid))
            .collect();
        old.sort_unstable();
        for pid in old {
            let Some(t) = self.tracked.get_mut(&pid) else {
                continue;
            };
            let stat = if now.contains(&pid) {
                read_stat(pid).ok()
            } else {
                None
            };
            let (key, root) = (t.key, t.root);
            let status = match stat {
                Some(st) if st.start_ticks == t.start_time => {
                    if !st.is_zombie() {
                        if st.comm != t.comm {
                            execs.push(Event::Exec {
                                pid,
                                key,
                                filename: exe_or(pid, &st.comm),
                                source,
                            });
                            t.comm = st.comm;
                        }
                        continue;
                    }
                    st.exit_code.map_or(WaitStatus::UNKNOWN, WaitStatus)
                }
                // Gone (or the pid now belongs to another process).
                _ => WaitStatus::UNKNOWN,
            };
            self.tracked.remove(&pid);
            if !root {
                exits.push(Event::Exited {
                    pid,
                    key,
                    status,
                    memory: None,
                    source,
                });
            }
        }

        events.append(&mut forks);
        events.append(&mut execs);
        events.append(&mut exits);
        self.known.clone_from(now);
        self.rescan_all = false;
    }

    /// Compares `pid`'s resident memory with its limit, reporting a crossing, and schedules the
    /// next reading; forgets the limit when the process is gone.
    fn sample(&mut self, pid: u32, now: Instant, events: &mut Vec<Event>) {
        let Some(limit) = self.limits.get_mut(&pid) else {
            return;
        };
        let Ok(rss) = resident_pages(pid) else {
            self.limits.remove(&pid);
            return;
        };
        let over = next_over(limit.over, rss, limit.pages);
        let crossed = over != limit.over;
        limit.over = over;
        limit.due = limit.pace.sampled(now, rss, limit.next_level());
        if !crossed {
            return;
        }
        let key = self.tracked.get(&pid).map_or(0, |t| t.key);
        let (rss, limit, source) = (
            rss * self.page_size,
            limit.pages * self.page_size,
            SourceKind::Procfs,
        );
        events.push(Event::memory(over, pid, key, rss, limit, source));
    }
}

#[cfg(test)]
mod tests {
    use std::{
        process::{Command as Cmd, Stdio},
        time::Instant,
    };

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    }

    async fn next(rx: &mut UnboundedReceiver<Event>, what: &str) -> Event {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no event within 5 s: waiting for {what}"))
            .expect("scanner alive")
    }

    /// Needs no privileges: a process's own children are readable in /proc.
    #[test]
    fn tracks_children_and_grandchildren_and_their_exits() {
        runtime().block_on(async {
            let (tx, mut rx) = unbounded_channel();
            let procfs = Procfs::start(
                ProcfsOptions {
                    interval: Duration::from_millis(20),
                    track_trees: true,
                },
                tx,
            );
            // root ─ child (sh, sleeps, then exits 3) ─ grandchild (sleep, exec'd)
            let mut root = Cmd::new("sh")
                .args([
                    "-c",
                    "read x; sh -c 'sleep 0.4 & sleep 0.2; exit 3' & wait; exit 0",
                ])
                .stdin(Stdio::piped())
                .spawn()
                .expect("spawn sh");
            let pid = root.id();
            procfs.watch(pid, 7).expect("watch");
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(root.stdin.take());

            let mut seen = Vec::new();
            let started = Instant::now();
            while seen
                .iter()
                .filter(|e| matches!(e, Event::Exited { .. }))
                .count()
                < 2
            {
                let ev = next(&mut rx, "2 exits").await;
                eprintln!("{:>6.1} ms {ev:?}", started.elapsed().as_secs_f64() * 1e3);
                assert_eq!(ev.key(), 7, "{ev:?}");
                assert_eq!(ev.source(), SourceKind::Procfs);
                seen.push(ev);
            }
            let _ = root.wait();
            let Some(Event::Forked { child, parent, .. }) = seen.first().cloned() else {
                panic!("first event is the fork: {seen:?}");
            };
            assert_eq!(parent, pid);
            let grandchild = seen
                .iter()
                .find_map(|e| match e {
                    Event::Forked { parent, child: c, .. } if *parent == child => Some(*c),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("grandchild fork: {seen:?}"));
            assert!(
                seen.iter()
                    .any(|e| matches!(e, Event::Exec { pid, filename, .. } if *pid == grandchild && filename.contains("sleep"))),
                "{seen:?}"
            );
            let child_exit = seen
                .iter()
                .find_map(|e| match e {
                    Event::Exited { pid, status, .. } if *pid == child => Some(*status),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("child exit: {seen:?}"));
            // Caught as a zombie (the status), or after it was reaped (unknown).
            assert!(
                child_exit == WaitStatus::exited(3) || child_exit == WaitStatus::UNKNOWN,
                "{child_exit:?}"
            );
            assert!(
                !seen
                    .iter()
                    .any(|e| matches!(e, Event::Exited { pid: p, .. } if *p == pid)),
                "the watched pid's own exit is the runtime's: {seen:?}"
            );
        });
    }

    #[test]
    fn memory_limit_crossings_by_sampling() {
        runtime().block_on(async {
            let (tx, mut rx) = unbounded_channel();
            let procfs = Procfs::start(
                ProcfsOptions {
                    // the ceiling of the adaptive schedule (the daemon's default)
                    interval: Duration::from_secs(1),
                    track_trees: false,
                },
                tx,
            );
            // Holds 64 MiB after a line on stdin, frees it after the next.
            let mut child = Cmd::new("python3")
                .args([
                    "-c",
                    "import sys\nsys.stdin.readline()\nb=b'x'*(64<<20)\nsys.stdin.readline()\n\
                     del b\nsys.stdin.readline()",
                ])
                .stdin(Stdio::piped())
                .spawn()
                .expect("spawn python3");
            let pid = child.id();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let base = resident_pages(pid).expect("statm") * page_size();
            procfs.watch(pid, 3).expect("watch");
            procfs
                .set_memory_limit(pid, base + (32 << 20))
                .expect("limit");
            let mut stdin = child.stdin.take().expect("stdin");
            use std::io::Write as _;
            stdin.write_all(b"\n").expect("write");
            let over = next(&mut rx, "MemoryOver").await;
            eprintln!("{over:?}");
            assert!(
                matches!(over, Event::MemoryOver { pid: p, key: 3, rss, limit, .. } if p == pid && rss >= limit),
                "{over:?}"
            );
            stdin.write_all(b"\n").expect("write");
            let under = next(&mut rx, "MemoryUnder").await;
            eprintln!("{under:?}");
            assert!(
                matches!(under, Event::MemoryUnder { pid: p, rss, limit, .. } if p == pid && rss < limit),
                "{under:?}"
            );
            drop(stdin);
            let _ = child.wait();
        });
    }

    #[test]
    fn idle_scanner_does_not_scan() {
        let scanner = Scanner {
            options: ProcfsOptions {
                interval: Duration::from_secs(1),
                track_trees: true,
            },
            page_size: 4096,
            tracked: HashMap::new(),
            limits: HashMap::new(),
            known: HashSet::new(),
            rescan_all: true,
        };
        assert!(!scanner.scans_trees() && scanner.next_reading().is_none());
        let memory_only = Scanner {
            options: ProcfsOptions {
                interval: Duration::from_secs(1),
                track_trees: false,
            },
            tracked: HashMap::from([(
                1,
                Tracked {
                    key: 0,
                    root: true,
                    start_time: 1,
                    comm: String::new(),
                },
            )]),
            ..scanner
        };
        assert!(
            !memory_only.scans_trees() && memory_only.next_reading().is_none(),
            "watched pids alone need no memory samples"
        );
    }
}
