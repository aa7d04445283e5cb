//! Crashes: a domain [`Crash`] assembled from the supervisor's `Crashed` notification and what
//! the process table knew about the process ([`assemble`]), and the [`CrashStore`] that keeps
//! the newest [`KEEP`] per app with a total.
//!
//! No I/O and no decisions: the runtime adds the stderr tail once the process's output ended,
//! the view turns a crash into the wire's `CrashRecord` (nothing else builds one), and a crash
//! and its state-file form (`storage::SavedCrash`) are converted into each other here.

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use turbo_api::ExitReason;

use super::procs::{CrashFacts, FatalSignal};
use crate::{
    events::{Sender, SourceKind, WaitStatus},
    storage::SavedCrash,
    supervisor::{AppId, Exit},
};

/// Records kept per app.
pub const KEEP: usize = 100;

/// One exit nobody asked for, complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crash {
    /// Wall-clock time of the exit, Unix milliseconds.
    pub at_ms: u64,
    /// How it ended.
    pub status: WaitStatus,
    /// Why, as the supervisor classified it.
    pub reason: ExitReason,
    /// How long the process ran.
    pub uptime: Duration,
    /// Restarts the app had had before this crash.
    pub restart_number: u32,
    /// Resident memory at the end (or the last figure seen), 0 when unknown.
    pub memory_bytes: u64,
    /// Peak resident memory over the process's life, 0 when unknown.
    pub memory_peak_bytes: u64,
    /// Who sent the fatal signal, when a process did.
    pub signal_sender: Option<Sender>,
    /// The last lines of its stderr.
    pub stderr_tail: Vec<String>,
    /// Which source reported the exit (`None` in records older than that field).
    pub source: Option<SourceKind>,
    /// More about the cause (a failing health check's message).
    pub detail: Option<String>,
}

/// Builds the crash of main process `pid` (`exit`) at wall time `at_ms`.
///
/// The sender is that of the signal that killed it ([`killer`]). The memory at the end is the
/// OOM killer's figure, else the exit reporter's (eBPF reads it before the kernel frees it),
/// else what `/proc` says now (`memory_now`), else the last figure seen; a 0 is no figure. The
/// peak is the exit reporter's (the kernel's high-water mark: `mm->hiwater_rss` at the exit
/// under eBPF, `ru_maxrss` of the reap), raised to any figure seen: a memory-limit record carries the peak,
/// not the reading that crossed the limit. When the reporter knew no peak (the reap's figure was
/// not above the daemon's own, or the process was not our child) the peak is unknown (0): the
/// figures seen are only samples, and one taken early in a process's growth is no peak.
/// The stderr tail is added later.
pub fn assemble(
    pid: u32,
    exit: &Exit,
    restart_number: u32,
    at_ms: u64,
    facts: CrashFacts,
    memory_now: impl FnOnce() -> Option<u64>,
) -> Crash {
    let signal_sender = exit
        .status
        .signal()
        .and_then(|sig| killer(pid, sig, &facts.fatal_signals));
    let exit_memory = facts.exit_memory.unwrap_or_default();
    let memory_bytes = facts
        .oom_memory
        .filter(|&m| m > 0)
        .or(Some(exit_memory.rss_bytes).filter(|&m| m > 0))
        .or_else(|| memory_now().filter(|&m| m > 0))
        .or(facts.last_rss)
        .unwrap_or(0);
    let memory_peak_bytes = if exit_memory.peak_bytes == 0 {
        0
    } else {
        exit_memory
            .peak_bytes
            .max(memory_bytes)
            .max(facts.peak_seen.unwrap_or(0))
    };
    Crash {
        at_ms,
        status: exit.status,
        reason: exit.reason,
        uptime: exit.uptime,
        restart_number,
        memory_bytes,
        memory_peak_bytes,
        signal_sender,
        stderr_tail: Vec::new(),
        source: Some(exit.source),
        detail: exit.detail.clone(),
    }
}

/// Who sent `sig`, the signal that killed `pid`, given the fatal signals it got (oldest first):
/// the sender of the last `sig`; but when that was the process itself re-raising a signal it
/// had caught (a handler that cleans up, then restores the default action and raises again),
/// the process that sent the caught one. `None` when the kernel generated it (a fault, the OOM
/// killer) or nothing was seen.
#[must_use]
pub fn killer(pid: u32, sig: i32, signals: &[FatalSignal]) -> Option<Sender> {
    let mut same = signals.iter().rev().filter(|(s, _)| *s == sig);
    let (_, last) = same.next()?;
    let last = last.as_ref()?;
    if last.pid != pid {
        return Some(last.clone());
    }
    same.find_map(|(_, s)| s.as_ref().filter(|s| s.pid != pid))
        .or(Some(last))
        .cloned()
}

impl Crash {
    /// The exit in words, for the daemon log.
    #[must_use]
    pub fn describe_exit(&self) -> String {
        describe_status(self.status)
    }
}

/// `signal N`, `exit code N` or an unknown status, for the daemon log.
#[must_use]
pub fn describe_status(status: WaitStatus) -> String {
    match (status.code(), status.signal()) {
        (_, Some(s)) => format!("signal {s}"),
        (Some(c), _) => format!("exit code {c}"),
        _ => "an unknown status (not our child)".into(),
    }
}

impl From<&Crash> for SavedCrash {
    fn from(c: &Crash) -> Self {
        let (signal_sender_pid, signal_sender_comm) = c
            .signal_sender
            .as_ref()
            .map_or((0, String::new()), |s| (s.pid, s.comm.clone()));
        Self {
            at_ms: c.at_ms,
            code: c.status.code().unwrap_or(-1),
            signal: c.status.signal().unwrap_or(0),
            reason: c.reason.as_str().into(),
            uptime_ms: u64::try_from(c.uptime.as_millis()).unwrap_or(u64::MAX),
            restart_number: c.restart_number,
            memory_bytes: c.memory_bytes,
            memory_peak_bytes: c.memory_peak_bytes,
            signal_sender_pid,
            signal_sender_comm,
            stderr_tail: c.stderr_tail.clone(),
            source: c.source.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            detail: c.detail.clone().unwrap_or_default(),
        }
    }
}

impl From<SavedCrash> for Crash {
    fn from(s: SavedCrash) -> Self {
        let status = match (s.code, s.signal) {
            (_, sig) if sig > 0 => WaitStatus::signaled(u8::try_from(sig).unwrap_or(0)),
            (code, _) if code >= 0 => WaitStatus::exited(u8::try_from(code).unwrap_or(0)),
            _ => WaitStatus::UNKNOWN,
        };
        Self {
            at_ms: s.at_ms,
            status,
            // written by this daemon from an `ExitReason`; anything else was edited by hand
            reason: s.reason.parse().unwrap_or(ExitReason::Exit),
            uptime: Duration::from_millis(s.uptime_ms),
            restart_number: s.restart_number,
            memory_bytes: s.memory_bytes,
            memory_peak_bytes: s.memory_peak_bytes,
            signal_sender: (s.signal_sender_pid != 0 || !s.signal_sender_comm.is_empty())
                .then_some(Sender {
                    pid: s.signal_sender_pid,
                    comm: s.signal_sender_comm,
                }),
            stderr_tail: s.stderr_tail,
            source: match s.source.as_str() {
                "ebpf" => Some(SourceKind::Ebpf),
                "procfs" => Some(SourceKind::Procfs),
                _ => None,
            },
            detail: Some(s.detail).filter(|d| !d.is_empty()),
        }
    }
}

/// Crashes of one app.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CrashBook {
    /// Crashes ever recorded.
    pub total: u32,
    /// Newest last.
    pub records: VecDeque<Crash>,
}

/// Crash books by app.
#[derive(Debug, Default)]
pub struct CrashStore {
    books: HashMap<AppId, CrashBook>,
}

impl CrashStore {
    /// Adds a crash.
    pub fn push(&mut self, app: AppId, crash: Crash) {
        let book = self.books.entry(app).or_default();
        book.total = book.total.saturating_add(1);
        book.records.push_back(crash);
        while book.records.len() > KEEP {
            book.records.pop_front();
        }
    }

    /// Replaces an app's book with the saved one (restoring state).
    pub fn restore(&mut self, app: AppId, total: u32, saved: Vec<SavedCrash>) {
        let records = saved.into_iter().map(Crash::from).collect();
        self.books.insert(app, CrashBook { total, records });
    }

    /// The saved form of an app's book: its total and records, oldest first.
    #[must_use]
    pub fn saved(&self, app: AppId) -> (u32, Vec<SavedCrash>) {
        self.books.get(&app).map_or((0, Vec::new()), |b| {
            let saved = b.records.iter().map(SavedCrash::from);
            (b.total, saved.collect())
        })
    }

    /// Hands `from`'s records to `to` (a reload's replacement takes over its instance's).
    pub fn hand_over(&mut self, from: AppId, to: AppId) {
        if let Some(book) = self.books.remove(&from) {
            self.books.insert(to, book);
        }
    }

    /// Forgets an app.
    pub fn remove(&mut self, app: AppId) {
        self.books.remove(&app);
    }

    /// An app's book (empty if it never crashed).
    #[must_use]
    pub fn book(&self, app: AppId) -> Option<&CrashBook> {
        self.books.get(&app)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(status: WaitStatus, reason: ExitReason) -> Exit {
        Exit {
            status,
            reason,
            at: std::time::Instant::now(),
            uptime: Duration::from_millis(1500),
            source: SourceKind::Ebpf,
            detail: None,
        }
    }

    fn sender() -> Sender {
        Sender {
            pid: 42,
            comm: "killer".into(),
        }
    }

    #[test]
    fn the_sender_counts_only_for_the_killing_signal() {
        let killed = exit(WaitStatus::signaled(9), ExitReason::Signal);
        let facts = |sig| CrashFacts {
            fatal_signals: vec![(sig, Some(sender()))],
            ..CrashFacts::default()
        };
        let c = assemble(1, &killed, 3, 1000, facts(9), || None);
        assert_eq!(c.signal_sender, Some(sender()));
        assert_eq!(
            (c.at_ms, c.restart_number, c.reason),
            (1000, 3, ExitReason::Signal)
        );
        assert_eq!(c.uptime, Duration::from_millis(1500));
        assert_eq!(c.source, Some(SourceKind::Ebpf));
        // a SIGTERM it survived, then a crash of its own: nobody killed it
        assert_eq!(
            assemble(1, &killed, 3, 1000, facts(15), || None).signal_sender,
            None
        );
        let exited = exit(WaitStatus::exited(1), ExitReason::Exit);
        assert_eq!(
            assemble(1, &exited, 0, 0, facts(9), || None).signal_sender,
            None
        );
        // the kernel sent it (no sender)
        let kernel = CrashFacts {
            fatal_signals: vec![(9, None)],
            ..CrashFacts::default()
        };
        assert_eq!(
            assemble(1, &killed, 0, 0, kernel, || None).signal_sender,
            None
        );
    }

    #[test]
    fn a_caught_and_re_raised_signal_names_the_original_sender() {
        let me = |pid| Sender {
            pid,
            comm: "app".into(),
        };
        let term = |s| (15, Some(s));
        // self-raised with nobody else involved: the process itself
        assert_eq!(killer(7, 15, &[term(me(7))]), Some(me(7)));
        // caught from 42, then re-raised: 42
        assert_eq!(
            killer(7, 15, &[term(sender()), term(me(7))]),
            Some(sender())
        );
        // an external SIGTERM after its own: the external one
        assert_eq!(
            killer(7, 15, &[term(me(7)), term(sender())]),
            Some(sender())
        );
        // another signal caught before does not count
        assert_eq!(
            killer(7, 6, &[term(sender()), (6, Some(me(7)))]),
            Some(me(7))
        );
        // the kernel's (a fault): nobody
        assert_eq!(killer(7, 11, &[(11, Some(sender())), (11, None)]), None);
        assert_eq!(killer(7, 9, &[]), None);
    }

    #[test]
    fn the_peak_is_the_kernels_raised_to_any_figure_seen() {
        let e = exit(WaitStatus::signaled(15), ExitReason::MemoryLimit);
        let facts = |rss, peak, last| CrashFacts {
            exit_memory: Some(crate::events::ExitMemory {
                rss_bytes: rss,
                peak_bytes: peak,
            }),
            last_rss: last,
            peak_seen: last,
            ..CrashFacts::default()
        };
        let c = assemble(1, &e, 0, 0, facts(300, 500, Some(400)), || Some(1));
        assert_eq!((c.memory_bytes, c.memory_peak_bytes), (300, 500));
        // the crossing was read above what the kernel reported (percpu counters lag)
        let c = assemble(1, &e, 0, 0, facts(0, 100, Some(400)), || None);
        assert_eq!((c.memory_bytes, c.memory_peak_bytes), (400, 400));
        let c = assemble(1, &e, 0, 0, CrashFacts::default(), || None);
        assert_eq!((c.memory_bytes, c.memory_peak_bytes), (0, 0), "unknown");
        // no peak from the reporter: a sample taken while it grew is no peak
        let c = assemble(1, &e, 0, 0, facts(0, 0, Some(400)), || None);
        assert_eq!((c.memory_bytes, c.memory_peak_bytes), (400, 0), "unknown");
    }

    #[test]
    fn memory_prefers_the_oom_figure_then_proc_then_the_last_seen() {
        let e = exit(WaitStatus::signaled(9), ExitReason::OomKill);
        let facts = |oom, last| CrashFacts {
            oom_memory: oom,
            last_rss: last,
            ..CrashFacts::default()
        };
        let memory = |f, now: Option<u64>| assemble(1, &e, 0, 0, f, || now).memory_bytes;
        assert_eq!(memory(facts(Some(300), Some(100)), Some(200)), 300);
        assert_eq!(
            memory(facts(Some(0), Some(100)), Some(200)),
            200,
            "0 is no figure"
        );
        assert_eq!(memory(facts(None, Some(100)), Some(0)), 100);
        assert_eq!(memory(facts(None, Some(100)), None), 100);
        assert_eq!(memory(facts(None, None), None), 0);
        let mut asked = false;
        assemble(1, &e, 0, 0, facts(Some(5), None), || {
            asked = true;
            None
        });
        assert!(!asked, "/proc is not read when the OOM killer told");
    }

    #[test]
    fn saved_crashes_round_trip() {
        let mut e = exit(WaitStatus::signaled(11), ExitReason::Health);
        e.detail = Some("GET /: status 500".into());
        let mut c = assemble(
            1,
            &e,
            2,
            7,
            CrashFacts {
                fatal_signals: vec![(11, Some(sender()))],
                last_rss: Some(4096),
                ..CrashFacts::default()
            },
            || None,
        );
        c.stderr_tail = vec!["boom".into()];
        let saved = SavedCrash::from(&c);
        assert_eq!((saved.code, saved.signal), (-1, 11));
        assert_eq!(saved.reason, "health");
        assert_eq!(saved.source, "ebpf");
        assert_eq!(Crash::from(saved), c);
        let exited = assemble(
            1,
            &exit(WaitStatus::exited(3), ExitReason::Exit),
            0,
            0,
            CrashFacts::default(),
            || None,
        );
        assert_eq!(Crash::from(SavedCrash::from(&exited)), exited);
        let unknown = Crash {
            status: WaitStatus::UNKNOWN,
            source: None,
            detail: None,
            ..exited
        };
        let saved = SavedCrash::from(&unknown);
        assert_eq!(
            (saved.code, saved.signal, saved.source.as_str()),
            (-1, 0, "")
        );
        assert_eq!(Crash::from(saved), unknown);
    }

    #[test]
    fn keeps_the_newest_hundred_and_counts_all() {
        let mut store = CrashStore::default();
        let base = assemble(
            1,
            &exit(WaitStatus::exited(1), ExitReason::Exit),
            0,
            0,
            CrashFacts::default(),
            || None,
        );
        for i in 0..150 {
            store.push(
                1,
                Crash {
                    at_ms: i * 1000,
                    ..base.clone()
                },
            );
        }
        let book = store.book(1).unwrap();
        assert_eq!(book.records.len(), KEEP);
        assert_eq!(book.total, 150);
        assert_eq!(book.records.back().unwrap().at_ms, 149_000, "newest last");
        let (total, saved) = store.saved(1);
        assert_eq!((total, saved.len()), (150, KEEP));
        store.hand_over(1, 2);
        assert!(store.book(1).is_none());
        store.restore(3, 7, saved);
        assert_eq!(store.book(3).unwrap().total, 7);
        store.remove(3);
        assert_eq!(store.saved(3), (0, Vec::new()), "an app without crashes");
    }
}
