//! Resource usage of app process trees, read from `/proc` when asked, and the books kept between
//! two readings: CPU samples for the rolling window, the monotonic CPU counter, the leak
//! detector's samples, and the restart and exit counters by reason.
//!
//! Bookkeeping only: no decisions (the leak detector judges, the view reports) and no OS access
//! of its own (the `/proc` readers are in [`crate::os::proc`]). Readings change the books, so
//! they take `&mut self`: whoever reads usage says so.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use turbo_api::ExitReason;

use crate::{
    events::SourceKind,
    os::proc::{self, MainFiles, TreeSample},
    supervisor::{
        App, AppId, State,
        leak::{LeakDetector, LeakPolicy, LeakVerdict},
    },
};

/// Settings of the resource monitor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MonitorSettings {
    /// CPU percent is the average over this window (`--cpu-window`).
    pub cpu_window: Duration,
    /// Interval of the sampler (`--sample-interval`); `None`: [`Self::FALLBACK_SAMPLE`] with
    /// the procfs source, the leak window / [`Self::LEAK_SAMPLES_PER_WINDOW`] with eBPF (whose
    /// memory limits need no sampling: the sampler only feeds the leak detector then).
    pub sample_interval: Option<Duration>,
    /// How leaks are judged (`--leak-window`).
    pub leak: LeakPolicy,
}

impl MonitorSettings {
    /// The sampler interval in fallback (procfs) mode by default.
    pub const FALLBACK_SAMPLE: Duration = Duration::from_secs(5);
    /// With eBPF, the sampler takes this many leak samples per leak window by default: the
    /// detector wants [`crate::supervisor::leak::MIN_POINTS`] (12) samples within a quarter of
    /// the window before it judges, so 48 is the slowest schedule that judges as early as it
    /// can (every 75 s for the default hour).
    pub const LEAK_SAMPLES_PER_WINDOW: u32 = 48;
    /// The CPU window by default.
    pub const CPU_WINDOW: Duration = Duration::from_secs(10);

    /// The sampler interval with `source` active.
    #[must_use]
    pub fn sample_interval_for(&self, source: SourceKind) -> Duration {
        self.sample_interval.unwrap_or(match source {
            SourceKind::Ebpf => {
                (self.leak.window / Self::LEAK_SAMPLES_PER_WINDOW).max(Duration::from_millis(10))
            }
            SourceKind::Procfs => Self::FALLBACK_SAMPLE,
        })
    }
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            cpu_window: Self::CPU_WINDOW,
            sample_interval: None,
            leak: LeakPolicy::default(),
        }
    }
}

/// How to read an app's process tree.
#[derive(Clone, Copy, Debug)]
pub enum Reading {
    /// `stat` (CPU, RSS) only: the sampler.
    Cheap,
    /// Like `Cheap`, unless a reading of the same process at most this old exists: status
    /// lists, which many clients may ask for at once (one pass of `/proc` reads serves them
    /// all). State, pid and restarts are never taken from it: only CPU and memory figures.
    Recent(Duration),
    /// Also PSS, unless a PSS reading of the same process at most this old exists (PSS costs
    /// ~60 µs per process, five times a `stat`).
    WithPss(Duration),
}

/// Scrapes reuse a PSS reading up to this old (`describe` always reads it afresh).
pub const PSS_MAX_AGE: Duration = Duration::from_secs(30);

/// Status lists reuse a reading up to this old: the CPU figure is an average over
/// [`MonitorSettings::CPU_WINDOW`] in ticks of 10 ms, so a fresher reading would say nothing
/// new, and reading `/proc` again for every client was most of the daemon's work per call.
pub const LIST_MAX_AGE: Duration = Duration::from_millis(500);

/// Every app's books, the counters, and the kept `/proc` files of main processes.
#[derive(Debug, Default)]
pub struct Usage {
    /// Boxed: a table of 1000 entries has 2048 slots, half of them empty; an `AppUsage` is a
    /// few hundred bytes.
    books: HashMap<AppId, Box<AppUsage>>,
    counts: HashMap<AppId, Counts>,
    settings: MonitorSettings,
    files: MainFiles,
    /// Exits of main processes that eBPF reported first (`turbo info`).
    pub ebpf_exit_events: u64,
}

impl Usage {
    /// Sets how resources are sampled and judged.
    pub const fn configure(&mut self, settings: MonitorSettings) {
        self.settings = settings;
    }

    /// The settings in force.
    #[must_use]
    pub const fn settings(&self) -> &MonitorSettings {
        &self.settings
    }

    /// Reads the whole process tree of `app` now (its main process, `descendants`, and their
    /// children in `/proc`) and books it; `None` while it has no process. Also returns the main
    /// process's own resident bytes (what crash records keep).
    pub fn measure(
        &mut self,
        app: &App,
        descendants: impl IntoIterator<Item = u32>,
        now: Instant,
        how: Reading,
    ) -> Option<(Measured, u64)> {
        let pid = app.pid()?;
        if let Reading::Recent(max_age) = how
            && let Some(recent) = self
                .books
                .get(&app.id)
                .and_then(|u| u.recent(pid, now, max_age))
        {
            // as a `Cheap` reading: no PSS in a list, whichever reading this was
            return Some((
                Measured {
                    pss_bytes: None,
                    ..recent.0
                },
                recent.1,
            ));
        }
        let cached_pss = match how {
            Reading::Cheap | Reading::Recent(_) => None,
            Reading::WithPss(max_age) => self
                .books
                .get(&app.id)
                .and_then(|u| u.pss_within(pid, now, max_age)),
        };
        let deep = matches!(how, Reading::WithPss(_)) && cached_pss.is_none();
        let sample = proc::sample_tree(pid, descendants, deep, &mut self.files)?;
        let uptime = app
            .since()
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        let leak = self.settings.leak;
        let book = self
            .books
            .entry(app.id)
            .or_insert_with(|| Box::new(AppUsage::new(pid, leak)));
        let mut m = book.observe(pid, now, uptime, &sample, self.settings.cpu_window, deep);
        if !deep {
            m.pss_bytes = cached_pss;
        }
        Some((m, sample.main_rss_bytes))
    }

    /// Books a resident-memory figure of `pid` (the whole tree of app `id`) as a leak sample.
    pub fn book_memory(&mut self, id: AppId, pid: u32, now: Instant, rss: u64) {
        let leak = self.settings.leak;
        self.books
            .entry(id)
            .or_insert_with(|| Box::new(AppUsage::new(pid, leak)))
            .memory(pid, now, rss);
    }

    /// The leak verdict on `app`'s current process.
    #[must_use]
    pub fn verdict(&self, app: &App) -> LeakVerdict {
        app.pid().map_or(LeakVerdict::UNKNOWN, |pid| {
            self.books
                .get(&app.id)
                .map_or(LeakVerdict::UNKNOWN, |u| u.verdict(pid))
        })
    }

    /// Books the state `app` is in now (restart counting).
    pub fn count_state(&mut self, app: &App, now: Instant) {
        self.counts.entry(app.id).or_default().state_changed(
            &app.state,
            app.restarts,
            app.last_exit.as_ref().map(|e| e.reason),
            now,
        );
    }

    /// Books an exit of `app` nobody asked for.
    pub fn exited(&mut self, app: AppId, reason: ExitReason) {
        self.counts.entry(app).or_default().exited(reason);
    }

    /// A reload replaced `old` by `new`: the replacement's counters continue the old ones'
    /// (copied, not moved: the old instance's series stay as they are until it is gone, a
    /// counter must not drop).
    pub fn replaced(&mut self, old: AppId, new: AppId) {
        let before = self.counts.get(&old).cloned().unwrap_or_default();
        self.counts.entry(new).or_default().take_over(before);
    }

    /// The counters of `app`.
    #[must_use]
    pub fn counts(&self, app: AppId) -> Option<&Counts> {
        self.counts.get(&app)
    }

    /// Forgets `app`.
    pub fn remove(&mut self, app: AppId) {
        self.counts.remove(&app);
        self.books.remove(&app);
    }

    /// Closes the kept files of `pid` (it exited).
    pub fn process_gone(&mut self, pid: u32) {
        self.files.forget(pid);
    }

    /// Closes the kept files of processes that are not one of `mains` (those that exited are
    /// closed as they are reaped; this catches any other way out).
    pub fn keep_files_of(&mut self, mains: &HashSet<u32>) {
        self.files.keep_only(mains);
    }
}

/// A reading with what the books made of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measured {
    /// CPU use over the rolling window, percent of one core.
    pub cpu_percent: f64,
    /// The tree's user CPU seconds (monotonic while the main process lives).
    pub user_seconds: f64,
    /// The tree's system CPU seconds, likewise.
    pub system_seconds: f64,
    /// Resident bytes of the tree.
    pub rss_bytes: u64,
    /// PSS of the tree, when read.
    pub pss_bytes: Option<u64>,
    /// Live processes in the tree.
    pub processes: u32,
}

/// The books of one app's current main process; a new process starts new books.
#[derive(Debug)]
pub struct AppUsage {
    pid: u32,
    /// `(when, total ticks)`, oldest first: at most one sample older than the window, and
    /// about ten inside it.
    cpu: VecDeque<(Instant, u64)>,
    /// The highest user and system ticks reported so far: the counter must never go back,
    /// and it would when a descendant that left the tree (an orphan reaped by init) exits.
    high: (u64, u64),
    leak: LeakDetector,
    /// The last PSS reading and when it was taken.
    pss: Option<(Instant, u64)>,
    /// The last reading of the tree (with the main process's own resident bytes) and when it
    /// was taken.
    last: Option<(Instant, Measured, u64)>,
}

impl AppUsage {
    /// Empty books for process `pid`.
    pub const fn new(pid: u32, policy: LeakPolicy) -> Self {
        Self {
            pid,
            cpu: VecDeque::new(),
            high: (0, 0),
            leak: LeakDetector::new(policy),
            pss: None,
            last: None,
        }
    }

    fn for_pid(&mut self, pid: u32) {
        if self.pid != pid {
            self.pid = pid;
            self.cpu.clear();
            self.high = (0, 0);
            self.leak.reset();
            self.pss = None;
            self.last = None;
        }
    }

    /// The last reading of process `pid`, if taken at most `max_age` before `now`.
    fn recent(&self, pid: u32, now: Instant, max_age: Duration) -> Option<(Measured, u64)> {
        self.last
            .filter(|&(at, ..)| pid == self.pid && now.saturating_duration_since(at) <= max_age)
            .map(|(_, m, main_rss)| (m, main_rss))
    }

    /// The last PSS reading of process `pid`, if taken at most `max_age` before `now`.
    pub fn pss_within(&self, pid: u32, now: Instant, max_age: Duration) -> Option<u64> {
        self.pss
            .filter(|&(at, _)| pid == self.pid && now.saturating_duration_since(at) <= max_age)
            .map(|(_, v)| v)
    }

    /// Books a reading of the tree of `pid` (running for `uptime`) taken at `now`; `deep`:
    /// the reading tried PSS (its `pss_bytes` replaces the last one).
    pub fn observe(
        &mut self,
        pid: u32,
        now: Instant,
        uptime: Duration,
        sample: &TreeSample,
        window: Duration,
        deep: bool,
    ) -> Measured {
        self.for_pid(pid);
        if deep {
            self.pss = sample.pss_bytes.map(|v| (now, v));
        }
        self.high = (self.high.0.max(sample.user), self.high.1.max(sample.system));
        let hz = proc::clock_ticks() as f64;
        let cpu_percent = self.cpu_percent(now, self.high.0 + self.high.1, uptime, window, hz);
        self.leak.record(now, sample.rss_bytes);
        let m = Measured {
            cpu_percent,
            user_seconds: self.high.0 as f64 / hz,
            system_seconds: self.high.1 as f64 / hz,
            rss_bytes: sample.rss_bytes,
            pss_bytes: sample.pss_bytes,
            processes: sample.processes,
        };
        self.last = Some((now, m, sample.main_rss_bytes));
        m
    }

    /// A memory reading from elsewhere (a threshold crossing) for the leak detector.
    pub fn memory(&mut self, pid: u32, now: Instant, bytes: u64) {
        self.for_pid(pid);
        self.leak.record(now, bytes);
    }

    /// The leak verdict on process `pid`.
    pub fn verdict(&self, pid: u32) -> LeakVerdict {
        if pid == self.pid {
            self.leak.verdict()
        } else {
            LeakVerdict::UNKNOWN
        }
    }

    /// CPU percent of one core between the newest sample at least `window` old (or the
    /// oldest one) and now; over the process's lifetime when no sample is at least 200 ms
    /// old (the first look: a shorter delta would be mostly rounding).
    fn cpu_percent(
        &mut self,
        now: Instant,
        ticks: u64,
        uptime: Duration,
        window: Duration,
        hz: f64,
    ) -> f64 {
        while self.cpu.len() >= 2 && now.saturating_duration_since(self.cpu[1].0) >= window {
            self.cpu.pop_front();
        }
        let (d_ticks, d_secs) = match self.cpu.front() {
            Some(&(at, t0)) if now.saturating_duration_since(at) >= MIN_CPU_SPAN => (
                ticks.saturating_sub(t0),
                now.saturating_duration_since(at).as_secs_f64(),
            ),
            _ => (ticks, uptime.as_secs_f64()),
        };
        if self
            .cpu
            .back()
            .is_none_or(|&(at, _)| now.saturating_duration_since(at) >= window / 10)
        {
            self.cpu.push_back((now, ticks));
        }
        if d_secs <= 0.0 {
            return 0.0;
        }
        (d_ticks as f64 / hz / d_secs * 1000.0).round() / 10.0
    }
}

/// Deltas over less than this are too coarse (ticks are 10 ms) to be a percentage.
const MIN_CPU_SPAN: Duration = Duration::from_millis(200);

/// Why an app was restarted (`turbo_app_restarts_total{reason}`): the reason of the exit that
/// made it restart, except that the exits nobody asked for (`exit`, `signal`) are one `crash`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RestartReason {
    /// After an exit or a death by signal.
    Crash,
    /// After the kernel's OOM killer.
    OomKill,
    /// For crossing `max_memory`.
    MemoryLimit,
    /// For a failing health check (or readiness, or watchdog).
    Health,
    /// For a watched file that changed.
    Watch,
    /// Asked for.
    Manual,
}

impl RestartReason {
    /// Every reason, each app reports all of them (at 0 until one happens, so `increase()`
    /// sees the first).
    pub const ALL: [Self; 6] = [
        Self::Crash,
        Self::OomKill,
        Self::MemoryLimit,
        Self::Health,
        Self::Watch,
        Self::Manual,
    ];

    /// The metric label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Crash => "crash",
            Self::OomKill => "oom_kill",
            Self::MemoryLimit => "memory_limit",
            Self::Health => "health",
            Self::Watch => "watch",
            Self::Manual => "manual",
        }
    }

    /// The restart reason a previous exit stands for.
    #[must_use]
    pub const fn after(exit: ExitReason) -> Self {
        match exit {
            ExitReason::Exit | ExitReason::Signal | ExitReason::PreStart => Self::Crash,
            ExitReason::OomKill => Self::OomKill,
            ExitReason::MemoryLimit => Self::MemoryLimit,
            ExitReason::Health => Self::Health,
            ExitReason::Watch => Self::Watch,
            ExitReason::Manual => Self::Manual,
        }
    }
}

/// Exit reasons every app reports in metrics (`turbo_app_exits_total{reason}`, exits nobody
/// asked for) at 0 until one happens; others appear once seen.
pub const EXIT_REASONS: [ExitReason; 4] = [
    ExitReason::Exit,
    ExitReason::Signal,
    ExitReason::OomKill,
    ExitReason::MemoryLimit,
];

/// Counters by reason of one app since the daemon started, and the state it was last seen
/// in (to tell why the next restart happened). A consumer of state-change notifications, like
/// the crash store: it decides nothing.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Restarts by reason.
    pub restarts: BTreeMap<RestartReason, u64>,
    /// Exits nobody asked for, by reason.
    pub exits: HashMap<ExitReason, u64>,
    restarts_seen: Option<u32>,
    last_state: Option<State>,
}

impl Counts {
    /// Books the app's state after a change at `now`. A grown restart count is a restart,
    /// whose reason the state before tells: `backoff` whose delay passed, an automatic
    /// restart after the last exit; `stopping` for `max_memory`, a memory-limit restart;
    /// anything else (a stopping by request, a restart out of `backoff`, `errored` or
    /// `stopped`), a restart by hand.
    pub fn state_changed(
        &mut self,
        state: &State,
        restarts: u32,
        last_exit: Option<ExitReason>,
        now: Instant,
    ) {
        if let Some(seen) = self.restarts_seen
            && restarts > seen
        {
            let reason = match &self.last_state {
                Some(State::Backoff { until }) if now >= *until => {
                    last_exit.map_or(RestartReason::Crash, RestartReason::after)
                }
                Some(State::Stopping { cause, .. }) => RestartReason::after(*cause),
                _ => RestartReason::Manual,
            };
            *self.restarts.entry(reason).or_default() += u64::from(restarts - seen);
        }
        self.restarts_seen = Some(restarts);
        self.last_state = Some(state.clone());
    }

    /// Adds the counters of the instance a reload replaced, and that replacement, a restart
    /// by hand.
    pub fn take_over(&mut self, old: Self) {
        for (reason, n) in old.restarts {
            *self.restarts.entry(reason).or_default() += n;
        }
        for (reason, n) in old.exits {
            *self.exits.entry(reason).or_default() += n;
        }
        *self.restarts.entry(RestartReason::Manual).or_default() += 1;
    }

    /// Books an exit nobody asked for.
    pub fn exited(&mut self, reason: ExitReason) {
        *self.exits.entry(reason).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_schedule_by_source() {
        use super::super::{MonitorSettings, SourceKind};
        let m = MonitorSettings::default();
        assert_eq!(
            m.sample_interval_for(SourceKind::Procfs),
            Duration::from_secs(5)
        );
        // eBPF: leak samples only, 12 of them within the first quarter of the window
        let ebpf = m.sample_interval_for(SourceKind::Ebpf);
        assert_eq!(ebpf, Duration::from_secs(75));
        assert!(ebpf * crate::supervisor::leak::MIN_POINTS as u32 <= m.leak.window / 4);
        let short = MonitorSettings {
            leak: LeakPolicy {
                window: Duration::from_secs(12),
                ..LeakPolicy::default()
            },
            ..m
        };
        assert_eq!(
            short.sample_interval_for(SourceKind::Ebpf),
            Duration::from_millis(250)
        );
        let set = MonitorSettings {
            sample_interval: Some(Duration::from_millis(200)),
            ..m
        };
        assert_eq!(
            set.sample_interval_for(SourceKind::Ebpf),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn cpu_window_and_monotonic_counter() {
        let t0 = Instant::now();
        let mut u = AppUsage::new(7, LeakPolicy::default());
        let window = Duration::from_secs(10);
        let hz = proc::clock_ticks() as f64;
        let ticks = |secs: f64| (secs * hz) as u64;
        let at = |s: u64| t0 + Duration::from_secs(s);
        let sample = |user: u64| TreeSample {
            user,
            rss_bytes: 1,
            processes: 1,
            ..TreeSample::default()
        };
        // first look: the lifetime average (2 s of CPU in 4 s)
        let m = u.observe(
            7,
            at(0),
            Duration::from_secs(4),
            &sample(ticks(2.0)),
            window,
            false,
        );
        assert!((m.cpu_percent - 50.0).abs() < 0.2, "{m:?}");
        // 5 s later, 5 s more CPU: one core busy
        let m = u.observe(
            7,
            at(5),
            Duration::from_secs(9),
            &sample(ticks(7.0)),
            window,
            false,
        );
        assert!((m.cpu_percent - 100.0).abs() < 0.2, "{m:?}");
        // a descendant's time left the tree: the counter holds, the rate is 0
        let m = u.observe(
            7,
            at(20),
            Duration::from_secs(24),
            &sample(ticks(6.0)),
            window,
            false,
        );
        assert!((m.user_seconds - 7.0).abs() < 0.02, "{m:?}");
        // idle for a window: 0%, measured over the window only
        let m = u.observe(
            7,
            at(31),
            Duration::from_secs(35),
            &sample(ticks(7.0)),
            window,
            false,
        );
        assert!(m.cpu_percent < 0.1, "{m:?}");
        assert!(u.cpu.len() <= 12);
        // the last reading is reused within its age, for the same process only
        assert_eq!(u.recent(7, at(31), Duration::ZERO).map(|r| r.0), Some(m));
        assert_eq!(
            u.recent(7, at(31) + Duration::from_millis(400), LIST_MAX_AGE)
                .map(|r| r.0),
            Some(m)
        );
        assert_eq!(u.recent(7, at(32), LIST_MAX_AGE), None);
        assert_eq!(u.recent(8, at(31), LIST_MAX_AGE), None);
        // PSS readings are kept for reuse, per process
        let with_pss = TreeSample {
            pss_bytes: Some(5),
            ..sample(ticks(7.0))
        };
        u.observe(7, at(32), Duration::from_secs(36), &with_pss, window, true);
        assert_eq!(u.pss_within(7, at(40), Duration::from_secs(30)), Some(5));
        assert_eq!(u.pss_within(7, at(63), Duration::from_secs(30)), None);
        assert_eq!(u.pss_within(8, at(40), Duration::from_secs(30)), None);
        // a new process: new books
        let m = u.observe(
            8,
            at(32),
            Duration::from_secs(1),
            &sample(ticks(0.5)),
            window,
            false,
        );
        assert!((m.user_seconds - 0.5).abs() < 0.02, "{m:?}");
        assert!((m.cpu_percent - 50.0).abs() < 0.2, "{m:?}");
    }

    #[test]
    fn restarts_by_reason() {
        let t0 = Instant::now();
        let mut c = Counts::default();
        let online = State::Online { pid: 1, since: t0 };
        c.state_changed(&online, 4, None, t0); // restored with 4: not counted
        let backoff = State::Backoff {
            until: t0 + Duration::from_secs(1),
        };
        c.state_changed(&backoff, 4, Some(ExitReason::Signal), t0);
        let later = t0 + Duration::from_secs(1);
        c.state_changed(&State::Starting, 5, Some(ExitReason::Signal), later);
        c.state_changed(&online, 5, Some(ExitReason::Signal), later);
        let stopping = |cause| State::Stopping {
            pid: 1,
            since: t0,
            deadline: later,
            killed: false,
            exited: false,
            cause,
            then: crate::supervisor::AfterStop::Start,
        };
        c.state_changed(&stopping(ExitReason::MemoryLimit), 5, None, later);
        c.state_changed(&State::Starting, 6, Some(ExitReason::MemoryLimit), later);
        c.state_changed(&stopping(ExitReason::Manual), 6, None, later);
        c.state_changed(&State::Starting, 7, Some(ExitReason::Manual), later);
        // restarted by hand while waiting in backoff
        c.state_changed(&backoff, 7, Some(ExitReason::Exit), t0);
        c.state_changed(&State::Starting, 8, Some(ExitReason::Exit), t0);
        let got: Vec<_> = c.restarts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(got, [("crash", 1), ("memory_limit", 1), ("manual", 2)]);
        c.exited(ExitReason::OomKill);
        assert_eq!(c.exits.get(&ExitReason::OomKill), Some(&1));
    }
}
