//! The process table: what the runtime knows about the processes of its apps besides their
//! main pids (which the supervisor owns): the descendants the event source reported, the
//! process groups whose end the supervisor waits for, descendants that exited recently (for
//! late notify datagrams), and the facts a crash record needs later (the last fatal signal and
//! its sender, the memory of an OOM victim, the last resident memory seen).
//!
//! Bookkeeping only: it asks the OS nothing itself (whether a process or group lives, who a
//! parent is: the caller passes those checks in) and decides nothing about apps.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use crate::{
    events::{ExitMemory, Sender},
    supervisor::AppId,
};

/// How long a descendant that exited is still attributed to its app: a short-lived child may
/// send `READY=1` and exit before its datagram is read (sd_notify from a forked helper).
pub const DEPARTED_FOR: Duration = Duration::from_secs(10);
/// Bound on remembered departed descendants (a fork bomb must not grow the daemon).
pub const DEPARTED_MAX: usize = 4096;
/// How far up the parent chain a notify sender is looked for.
const ANCESTORS: usize = 64;
/// How long a [`GroupCensus`] pass over `/proc` stands for groups it saw running: passes are
/// spaced at least this far apart, however many groups wait (a stop of 1,000 adopted apps).
pub const CENSUS_FRESH: Duration = Duration::from_millis(50);
/// How long an orphaned zombie leader's group is taken as running before a [`GroupCensus`]
/// pass may be taken for it: its parent (an init) usually reaps it within moments, and then
/// `kill` says the group is gone for nothing. A pass reads every process's `stat` on the host,
/// tens of milliseconds with 10,000 processes: taken for each exit of a stop of that many
/// adopted apps, it made the stop take minutes.
pub const ZOMBIE_GRACE: Duration = Duration::from_millis(100);

/// The fatal signal that ended a process, and who sent it.
pub type FatalSignal = (i32, Option<Sender>);

/// Fatal signals remembered per process (a process caught and re-raised, or got several).
const SIGNALS_KEPT: usize = 8;

/// See the module docs.
#[derive(Debug, Default)]
pub struct ProcessTable {
    /// Descendants of each app's main process (forks reported by the event source), which a
    /// stop must reach even when they left the process group.
    tree: HashMap<AppId, HashSet<u32>>,
    /// Process groups (with their apps' descendants) whose end the supervisor waits for.
    group_waits: HashMap<AppId, u32>,
    /// The last few fatal signals each watched process got, oldest first, and who sent them.
    fatal_signals: HashMap<u32, VecDeque<FatalSignal>>,
    /// Descendants that exited recently, oldest first.
    departed: VecDeque<(u32, AppId, Instant)>,
    /// Resident memory of OOM victims when the kernel chose them.
    oom_memory: HashMap<u32, u64>,
    /// Last and largest resident memory seen per pid, for crash records of processes already
    /// gone.
    rss_seen: HashMap<u32, (u64, u64)>,
    /// Memory at the end, as the exit's reporter told (eBPF at the exit, `waitid` at the reap).
    exit_memory: HashMap<u32, ExitMemory>,
}

impl ProcessTable {
    /// `child` of app `app` was forked.
    pub fn forked(&mut self, app: AppId, child: u32) {
        self.tree.entry(app).or_default().insert(child);
    }

    /// A process of app `app` that is not its main process exited at `now`; it is remembered
    /// as departed when it was a known descendant. False when `app` has no descendants at all
    /// (nothing changed).
    pub fn descendant_exited(&mut self, app: AppId, pid: u32, now: Instant) -> bool {
        let Some(tree) = self.tree.get_mut(&app) else {
            return false;
        };
        if tree.remove(&pid) {
            while self
                .departed
                .front()
                .is_some_and(|&(_, _, at)| now.saturating_duration_since(at) > DEPARTED_FOR)
                || self.departed.len() >= DEPARTED_MAX
            {
                self.departed.pop_front();
            }
            self.departed.push_back((pid, app, now));
        }
        self.fatal_signals.remove(&pid);
        true
    }

    /// Replaces every app's descendants with those the kernel watches now (`watched`: tgid
    /// and app key, after lost events): forks whose events were dropped are added, processes
    /// whose exits were dropped are forgotten, so a stop neither misses the first nor signals
    /// a stranger that reused the pid of the second. `main_of` names an app's main process
    /// (not a descendant); keys of no app are ignored. Returns (added, forgotten).
    pub fn resync(
        &mut self,
        watched: &[(u32, AppId)],
        main_of: impl Fn(AppId) -> Option<Option<u32>>,
    ) -> (usize, usize) {
        let mut fresh: HashMap<AppId, HashSet<u32>> = HashMap::new();
        for &(pid, app) in watched {
            match main_of(app) {
                Some(main) if main != Some(pid) => {
                    fresh.entry(app).or_default().insert(pid);
                }
                _ => {}
            }
        }
        let mut forgotten = 0;
        for (app, old) in &self.tree {
            for pid in old {
                if !fresh.get(app).is_some_and(|n| n.contains(pid)) {
                    forgotten += 1;
                    self.fatal_signals.remove(pid);
                }
            }
        }
        let added = fresh
            .iter()
            .map(|(app, new)| {
                let old = self.tree.get(app);
                new.iter()
                    .filter(|p| !old.is_some_and(|o| o.contains(p)))
                    .count()
            })
            .sum();
        self.tree = fresh;
        (added, forgotten)
    }

    /// The known descendants of `app`.
    pub fn descendants(&self, app: AppId) -> impl Iterator<Item = u32> + '_ {
        self.tree.get(&app).into_iter().flatten().copied()
    }

    /// Whether the event source reported descendants of `app` that are still around.
    pub fn has_descendants(&self, app: AppId) -> bool {
        self.tree.get(&app).is_some_and(|t| !t.is_empty())
    }

    /// Whether process group `pgid`, or any known descendant of `app`, still lives.
    pub fn tree_alive(
        &self,
        app: AppId,
        pgid: u32,
        mut group_alive: impl FnMut(u32) -> bool,
        pid_alive: impl Fn(u32) -> bool,
    ) -> bool {
        group_alive(pgid) || self.descendants(app).any(pid_alive)
    }

    /// Waits for the end of `pgid` and the descendants of `app` (see [`Self::finished_waits`]).
    pub fn await_group(&mut self, app: AppId, pgid: u32) {
        self.group_waits.insert(app, pgid);
    }

    /// The waited-for groups that are gone now (forgotten as they are returned); an app whose
    /// cgroup still holds a live process (`cgroup_alive`) is not gone. `only`: the app whose
    /// process ended, when the caller knows it; `None` looks at every wait (a pass that costs
    /// a `kill` per waited-for group, so a stop of N apps must not take one per exit).
    pub fn finished_waits(
        &mut self,
        only: Option<AppId>,
        mut group_alive: impl FnMut(u32) -> bool,
        pid_alive: impl Fn(u32) -> bool,
        cgroup_alive: impl Fn(AppId) -> bool,
    ) -> Vec<(AppId, u32)> {
        let waits: Vec<(AppId, u32)> = match only {
            Some(app) => self
                .group_waits
                .get(&app)
                .map(|&g| (app, g))
                .into_iter()
                .collect(),
            None => self.group_waits.iter().map(|(&a, &g)| (a, g)).collect(),
        };
        let mut done: Vec<(AppId, u32)> = waits
            .into_iter()
            .filter(|&(a, g)| {
                !self.tree_alive(a, g, &mut group_alive, &pid_alive) && !cgroup_alive(a)
            })
            .collect();
        done.sort_unstable();
        for (app, _) in &done {
            self.group_waits.remove(app);
        }
        done
    }

    /// The app whose process tree `pid` is in: its main process (`main_of`), a descendant the
    /// event source reported, one that departed lately, or (walking up with `parent`) a child
    /// of one of those.
    pub fn app_of_pid(
        &self,
        pid: u32,
        main_of: impl Fn(u32) -> Option<AppId>,
        parent: impl Fn(u32) -> Option<u32>,
    ) -> Option<AppId> {
        let mut p = pid;
        for _ in 0..ANCESTORS {
            if let Some(app) = main_of(p) {
                return Some(app);
            }
            if let Some((&app, _)) = self.tree.iter().find(|(_, t)| t.contains(&p)) {
                return Some(app);
            }
            if let Some(&(_, app, _)) = self.departed.iter().find(|(d, ..)| *d == p) {
                return Some(app);
            }
            p = parent(p).filter(|&pp| pp > 1)?;
        }
        None
    }

    /// `pid` got fatal signal `signal` (from `sender`, when a process sent it).
    pub fn signaled(&mut self, pid: u32, signal: i32, sender: Option<Sender>) {
        let kept = self.fatal_signals.entry(pid).or_default();
        if kept.len() >= SIGNALS_KEPT {
            kept.pop_front();
        }
        kept.push_back((signal, sender));
    }

    /// What the reporter of `pid`'s exit knew of its memory; figures of two reporters merge
    /// (the larger peak, the first non-zero value at the end).
    pub fn exit_memory(&mut self, pid: u32, memory: ExitMemory) {
        let m = self.exit_memory.entry(pid).or_default();
        m.peak_bytes = m.peak_bytes.max(memory.peak_bytes);
        if m.rss_bytes == 0 {
            m.rss_bytes = memory.rss_bytes;
        }
    }

    /// The kernel's OOM killer chose `pid`, resident with `rss` bytes.
    pub fn oom_victim(&mut self, pid: u32, rss: u64) {
        self.oom_memory.insert(pid, rss);
    }

    /// Keeps `rss` as the last figure of `pid` for its crash record. A process that is exiting
    /// reads as 0 once the kernel has freed its memory (the fallback's sampler can catch it
    /// between the stop signal and the reap): that is no figure, and must not replace the last
    /// real one.
    pub fn saw_rss(&mut self, pid: u32, rss: u64) {
        if rss > 0 {
            let peak = self.rss_seen.get(&pid).map_or(0, |&(_, p)| p).max(rss);
            self.rss_seen.insert(pid, (rss, peak));
        }
    }

    /// What is known about the end of main process `pid` for its crash record: its last fatal
    /// signal and the OOM killer's figure are taken, the last resident memory seen is copied
    /// (it goes with [`Self::main_exited`]).
    pub fn crash_facts(&mut self, pid: u32) -> CrashFacts {
        CrashFacts {
            fatal_signals: self
                .fatal_signals
                .remove(&pid)
                .map(Vec::from)
                .unwrap_or_default(),
            oom_memory: self.oom_memory.remove(&pid),
            last_rss: self.rss_seen.get(&pid).map(|&(last, _)| last),
            peak_seen: self.rss_seen.get(&pid).map(|&(_, peak)| peak),
            exit_memory: self.exit_memory.remove(&pid),
        }
    }

    /// Main process `pid` exited and was handled: its figures go.
    pub fn main_exited(&mut self, pid: u32) {
        self.rss_seen.remove(&pid);
        self.exit_memory.remove(&pid);
        self.fatal_signals.remove(&pid);
    }

    /// App `app` is gone.
    pub fn remove_app(&mut self, app: AppId) {
        self.tree.remove(&app);
        self.departed.retain(|&(_, a, _)| a != app);
    }
}

/// Which process groups still have a running member, for the groups whose leader is a zombie
/// that another process must reap (an app adopted from a previous daemon: its parent is an init
/// that may reap seconds later). `kill(-pgid, 0)` finds such a group until then, so `turbo
/// stop` would wait for someone else's reaping; a pass over `/proc` tells whether any member
/// still runs. Our own children need none: the daemon reaps them at their exit, and then the
/// group is gone for `kill` too.
///
/// Bookkeeping only, like the table: the checks and the pass are passed in.
#[derive(Debug, Default)]
pub struct GroupCensus {
    /// The last pass: when, and the groups with a running member.
    seen: Option<(Instant, HashSet<u32>)>,
    /// When each orphaned group was first asked about: only a pass taken after that can say
    /// it has no running member (an older one may predate the group's newest members).
    asked: HashMap<u32, Instant>,
}

impl GroupCensus {
    /// Whether group `pgid` has a member that runs. `kill_alive`: `kill(-pgid, 0)` finds it
    /// (zombies count); `orphaned`: its leader is a zombie another process must reap; `scan`:
    /// a pass over `/proc`, the groups with a running member.
    pub fn running(
        &mut self,
        pgid: u32,
        now: Instant,
        kill_alive: impl FnOnce(u32) -> bool,
        orphaned: impl FnOnce(u32) -> bool,
        scan: impl FnOnce() -> HashSet<u32>,
    ) -> bool {
        if !kill_alive(pgid) {
            self.asked.remove(&pgid);
            return false;
        }
        if !orphaned(pgid) {
            return true;
        }
        let asked = *self.asked.entry(pgid).or_insert(now);
        let (valid, fresh) = match &self.seen {
            Some((at, groups)) => (
                (*at >= asked).then_some(groups),
                now.saturating_duration_since(*at) < CENSUS_FRESH,
            ),
            None => (None, false),
        };
        let running = match valid {
            Some(groups) if fresh || !groups.contains(&pgid) => groups.contains(&pgid),
            // too old to say, and too young to take again: the caller asks again later
            _ if fresh => true,
            // its parent may reap it any moment: the caller asks again later
            _ if now.saturating_duration_since(asked) < ZOMBIE_GRACE => true,
            _ => {
                let groups = scan();
                let running = groups.contains(&pgid);
                self.seen = Some((now, groups));
                // groups asked about long ago and never again (their app was deleted)
                self.asked
                    .retain(|_, at| now.saturating_duration_since(*at) < DEPARTED_FOR);
                running
            }
        };
        if !running {
            self.asked.remove(&pgid);
        }
        running
    }
}

/// What the process table knew about a main process when it ended (see
/// [`super::crashes::assemble`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashFacts {
    /// The last fatal signals it got, oldest first, with their senders.
    pub fatal_signals: Vec<FatalSignal>,
    /// Its resident memory when the OOM killer chose it.
    pub oom_memory: Option<u64>,
    /// The last resident memory seen (by a status, a scrape, the sampler or a threshold event).
    pub last_rss: Option<u64>,
    /// The largest resident memory seen.
    pub peak_seen: Option<u64>,
    /// Its memory at the end, from the exit's reporter.
    pub exit_memory: Option<ExitMemory>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resync_takes_the_kernels_view_of_every_tree() {
        let mut t = ProcessTable::default();
        t.forked(1, 100); // its exit was lost
        t.forked(1, 101);
        t.forked(3, 300); // app 3 is gone
        t.signaled(100, 9, None);
        // the kernel: 101 lives, 102 and 201 were forked behind a full ring buffer, 10 and 20
        // are main processes, 900 belongs to no app
        let watched = [(10, 1), (101, 1), (102, 1), (20, 2), (201, 2), (900, 9)];
        let main_of = |app| match app {
            1 => Some(Some(10)),
            2 => Some(Some(20)),
            _ => None,
        };
        assert_eq!(t.resync(&watched, main_of), (2, 2));
        let mut d: Vec<u32> = t.descendants(1).collect();
        d.sort_unstable();
        assert_eq!(d, [101, 102]);
        assert_eq!(t.descendants(2).collect::<Vec<_>>(), [201]);
        assert!(!t.has_descendants(3));
        assert!(t.crash_facts(100).fatal_signals.is_empty());
        assert_eq!(t.resync(&watched, main_of), (0, 0), "nothing changes twice");
    }

    #[test]
    fn descendants_depart_and_are_remembered_for_a_while() {
        let t0 = Instant::now();
        let mut t = ProcessTable::default();
        t.forked(1, 100);
        t.forked(1, 101);
        t.forked(2, 200);
        assert_eq!(
            {
                let mut d: Vec<u32> = t.descendants(1).collect();
                d.sort_unstable();
                d
            },
            [100, 101]
        );
        t.signaled(100, 15, None);
        t.descendant_exited(1, 100, t0);
        assert!(
            t.crash_facts(100).fatal_signals.is_empty(),
            "forgotten on exit"
        );
        let main_of = |_| None;
        let no_parent = |_| None;
        // a late datagram of the departed child still belongs to app 1
        assert_eq!(t.app_of_pid(100, main_of, no_parent), Some(1));
        assert_eq!(t.app_of_pid(101, main_of, no_parent), Some(1));
        assert_eq!(t.app_of_pid(200, main_of, no_parent), Some(2));
        assert_eq!(t.app_of_pid(300, main_of, no_parent), None);
        // a grandchild nobody reported, found through its parent
        let parent = |p| (p == 300).then_some(101);
        assert_eq!(t.app_of_pid(300, main_of, parent), Some(1));
        // init is nobody's ancestor
        assert_eq!(t.app_of_pid(300, main_of, |_| Some(1)), None);
        // main processes come first
        assert_eq!(
            t.app_of_pid(7, |p| (p == 7).then_some(9), no_parent),
            Some(9)
        );
        // the memory of departed children is bounded in time
        t.forked(1, 102);
        t.descendant_exited(1, 102, t0 + DEPARTED_FOR + Duration::from_secs(1));
        assert_eq!(t.app_of_pid(100, main_of, no_parent), None, "too old");
        assert_eq!(t.app_of_pid(102, main_of, no_parent), Some(1));
        t.remove_app(1);
        assert_eq!(t.app_of_pid(102, main_of, no_parent), None);
        assert!(!t.has_descendants(1) && t.has_descendants(2));
    }

    #[test]
    fn departed_descendants_are_bounded_in_number() {
        let t0 = Instant::now();
        let mut t = ProcessTable::default();
        for pid in 0..u32::try_from(DEPARTED_MAX + 10).unwrap() {
            t.forked(1, pid + 2);
            t.descendant_exited(1, pid + 2, t0);
        }
        assert_eq!(t.departed.len(), DEPARTED_MAX);
        assert_eq!(t.app_of_pid(2, |_| None, |_| None), None, "the oldest went");
        // a process that was never a known descendant is not remembered
        t.descendant_exited(1, 99_999, t0);
        assert_eq!(t.app_of_pid(99_999, |_| None, |_| None), None);
    }

    #[test]
    fn orphaned_zombie_groups_end_by_census_and_passes_are_spaced() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut c = GroupCensus::default();
        let scans = std::cell::Cell::new(0);
        let scan = |running: &'static [u32]| {
            || {
                scans.set(scans.get() + 1);
                running.iter().copied().collect::<HashSet<u32>>()
            }
        };
        let yes = |_| true;
        let no = |_| false;
        // gone for kill, or led by a process that runs or that we reap: no pass
        assert!(!c.running(50, t0, no, yes, scan(&[])));
        assert!(c.running(50, t0, yes, no, scan(&[])));
        assert_eq!(scans.get(), 0);
        // an orphaned zombie leader's parent may reap it any moment: no pass during the grace
        assert!(c.running(60, t0, yes, yes, scan(&[60])));
        assert!(c.running(50, t0, yes, yes, scan(&[])));
        assert!(c.running(60, ms(99), yes, yes, scan(&[60])));
        assert_eq!(scans.get(), 0);
        // after it: one pass answers every group asked about by then
        let g = |n: u64| ms(100 + n);
        assert!(c.running(60, g(0), yes, yes, scan(&[60])));
        assert!(
            !c.running(50, g(0), yes, yes, scan(&[])),
            "no running member"
        );
        assert!(c.running(60, g(10), yes, yes, scan(&[])));
        assert_eq!(scans.get(), 1);
        // group 70 first asked after the pass, which may predate its members: no answer from
        // it, and no new pass while it is fresh or within its grace
        assert!(c.running(70, g(20), yes, yes, scan(&[])));
        assert!(c.running(70, g(60), yes, yes, scan(&[])));
        assert_eq!(scans.get(), 1);
        // once both passed, a new pass answers both
        assert!(!c.running(70, g(120), yes, yes, scan(&[60])));
        assert_eq!(scans.get(), 2);
        assert!(c.running(60, g(130), yes, yes, scan(&[])));
        assert!(!c.running(60, g(300), yes, yes, scan(&[])));
        assert_eq!(scans.get(), 3);
        assert!(c.asked.is_empty(), "answered groups are forgotten");
    }

    #[test]
    fn a_stop_of_many_adopted_apps_takes_no_pass_when_their_parent_reaps_at_once() {
        let t0 = Instant::now();
        let mut c = GroupCensus::default();
        let scans = std::cell::Cell::new(0);
        let scan = || {
            scans.set(scans.get() + 1);
            HashSet::new()
        };
        let yes = |_| true;
        let no = |_| false;
        for pgid in 1..=10_000 {
            // each exit seen while its leader is a zombie, then once reaped
            assert!(c.running(pgid, t0, yes, yes, scan));
            assert!(!c.running(pgid, t0 + Duration::from_millis(5), no, yes, scan));
        }
        assert_eq!(scans.get(), 0);
        assert!(c.asked.is_empty());
    }

    #[test]
    fn group_waits_end_with_the_group_and_every_descendant() {
        let mut t = ProcessTable::default();
        t.forked(1, 100);
        t.await_group(1, 50);
        t.await_group(2, 60);
        let alive = |set: &'static [u32]| move |p: u32| set.contains(&p);
        // group 50 is empty but its setsid'd descendant lives on
        assert!(t.tree_alive(1, 50, alive(&[]), alive(&[100])));
        let no_cgroup = |_| false;
        assert_eq!(
            t.finished_waits(None, alive(&[60]), alive(&[100]), no_cgroup),
            []
        );
        // a process in app 1's cgroup lives on, unseen by the scans
        assert_eq!(
            t.finished_waits(None, alive(&[60]), alive(&[]), |a| a == 1),
            []
        );
        assert_eq!(
            t.finished_waits(None, alive(&[60]), alive(&[]), no_cgroup),
            [(1, 50)]
        );
        assert_eq!(
            t.finished_waits(None, alive(&[]), alive(&[]), no_cgroup),
            [(2, 60)]
        );
        assert_eq!(
            t.finished_waits(None, alive(&[]), alive(&[]), no_cgroup),
            [],
            "reported once"
        );
    }

    #[test]
    fn a_check_for_one_app_looks_at_its_wait_only() {
        let mut t = ProcessTable::default();
        t.await_group(1, 50);
        t.await_group(2, 60);
        let asked = std::cell::RefCell::new(Vec::new());
        let gone = |g: u32| {
            asked.borrow_mut().push(g);
            false
        };
        let none = |_: u32| false;
        assert_eq!(t.finished_waits(Some(2), gone, none, |_| false), [(2, 60)]);
        assert_eq!(*asked.borrow(), [60], "app 1's group was not looked at");
        assert_eq!(
            t.finished_waits(Some(3), gone, none, |_| false),
            [],
            "no wait"
        );
        assert_eq!(t.finished_waits(None, gone, none, |_| false), [(1, 50)]);
    }

    #[test]
    fn a_few_fatal_signals_are_kept_per_process() {
        let mut t = ProcessTable::default();
        for sig in 1..=20 {
            t.signaled(7, sig, None);
        }
        let kept: Vec<i32> = t.crash_facts(7).fatal_signals.iter().map(|s| s.0).collect();
        assert_eq!(
            kept,
            (13..=20).collect::<Vec<_>>(),
            "the newest, oldest first"
        );
    }

    #[test]
    fn crash_facts_keep_real_memory_figures_only() {
        let mut t = ProcessTable::default();
        let sender = Sender {
            pid: 9,
            comm: "kill".into(),
        };
        t.saw_rss(5, 4096);
        t.saw_rss(5, 0); // read between the stop signal and the reap: no figure
        t.signaled(5, 9, Some(sender.clone()));
        t.oom_victim(5, 8192);
        t.exit_memory(
            5,
            ExitMemory {
                rss_bytes: 0,
                peak_bytes: 9000,
            },
        );
        t.exit_memory(
            5,
            ExitMemory {
                rss_bytes: 2048,
                peak_bytes: 8000,
            },
        );
        let facts = t.crash_facts(5);
        assert_eq!(
            facts,
            CrashFacts {
                fatal_signals: vec![(9, Some(sender))],
                oom_memory: Some(8192),
                last_rss: Some(4096),
                peak_seen: Some(4096),
                exit_memory: Some(ExitMemory {
                    rss_bytes: 2048,
                    peak_bytes: 9000,
                }),
            }
        );
        // taken once; the last figure stays until the exit is handled
        let again = t.crash_facts(5);
        assert!(again.fatal_signals.is_empty() && again.oom_memory.is_none());
        assert_eq!(again.last_rss, Some(4096));
        t.main_exited(5);
        assert_eq!(t.crash_facts(5), CrashFacts::default());
    }
}
