//! The view: the only place that builds what callers see (the wire's `AppStatus`, `DaemonInfo`,
//! `AppConfigInfo`, `CrashRecord`, and the metrics snapshot) from the supervisor's apps and the
//! runtime's books.
//!
//! Pure functions of what they are given: the caller takes the readings (which change the usage
//! books) and passes them in, so nothing here reads the OS or changes state.

use std::{
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use turbo_api::{AppConfigInfo, AppStatus, CrashRecord, CrashStats, DaemonInfo, ExitInfo, Health};

use super::{
    crashes::{Crash, CrashBook},
    usage::{Counts, EXIT_REASONS, Measured, RestartReason},
};
use crate::{
    events::EventSource,
    logs,
    os::{
        cgroup::{AppCgroup, CgroupStats},
        proc::ProcessStats,
    },
    spec::{AppKind, Autorestart, HealthSpec, LogFormat, Overlap, ReadyMode, ScheduleAction},
    supervisor::{App, State, leak::LeakVerdict},
};

/// Monotonic instants as wall-clock time: the pair read when the daemon started.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    mono: Instant,
    wall: SystemTime,
}

impl WallClock {
    /// Reads both clocks now.
    #[must_use]
    pub fn now() -> Self {
        Self {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// `at` in Unix milliseconds.
    #[must_use]
    pub fn ms(&self, at: Instant) -> u64 {
        let t = if at >= self.mono {
            self.wall + at.duration_since(self.mono)
        } else {
            self.wall - self.mono.duration_since(at)
        };
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// How long ago the clock was read.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.mono.elapsed()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The public snapshot of `app` at `now`, with the figures of a reading (`None`: not
/// measured) and the last leak verdict.
#[must_use]
pub fn status(
    app: &App,
    now: Instant,
    clock: &WallClock,
    log_dir: &Path,
    measured: Option<Measured>,
    verdict: LeakVerdict,
) -> AppStatus {
    let (out_log, err_log) = logs::paths(log_dir, &app.spec.name, app.instance, &app.spec.log);
    let mut st = AppStatus {
        id: app.id,
        name: app.spec.name.clone(),
        instance: app.instance,
        state: app.state.public().as_str().into(),
        pid: app.pid().unwrap_or(0),
        restarts: app.restarts,
        uptime_ms: app.since().map_or(0, |s| {
            u64::try_from(now.duration_since(s).as_millis()).unwrap_or(0)
        }),
        cpu_percent: -1.0,
        memory_bytes: 0,
        memory_pss_bytes: 0,
        memory_limit_bytes: app.spec.memory.max.unwrap_or(0),
        cpu_max_percent: app.spec.resources.cpu_max.unwrap_or(0),
        cpu_throttled_ms: 0,
        pids: 0,
        pids_max: app.spec.resources.pids_max.unwrap_or(0),
        memory_high_bytes: app.spec.resources.memory_high.unwrap_or(0),
        leak_suspected: verdict.suspected,
        memory_growth_bytes_per_hour: AppStatus::GROWTH_UNKNOWN,
        health: app.public_health().as_str().into(),
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
        status_text: match &app.state {
            // why it is errored (a start that failed, a crash loop), where `describe` shows it
            State::Errored { reason } => reason.clone(),
            _ => app.notify.status.clone().unwrap_or_default(),
        },
        waiting_for: app.jobs.waiting_for.clone(),
        next_run_ms: app.jobs.next_run.map_or(0, |t| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }),
        group: app.spec.app_group.clone().unwrap_or_default(),
        last_exit: app
            .last_exit
            .as_ref()
            .map_or_else(ExitInfo::default, |e| ExitInfo {
                code: e.status.code().unwrap_or(-1),
                signal: e.status.signal().unwrap_or(0),
                reason: e.reason.as_str().into(),
                at_ms: clock.ms(e.at),
                source: e.source.as_str().into(),
            }),
    };
    if let Some(m) = measured {
        st.memory_bytes = m.rss_bytes;
        st.memory_pss_bytes = m.pss_bytes.unwrap_or(0);
        st.cpu_percent = m.cpu_percent;
    }
    if let Some(rate) = verdict.bytes_per_hour {
        #[expect(clippy::cast_possible_truncation, reason = "bytes per hour fit an i64")]
        let rate = rate.round() as i64;
        st.memory_growth_bytes_per_hour = rate.max(AppStatus::GROWTH_UNKNOWN + 1);
    }
    st
}

/// What `turbo info` shows.
pub struct Facts<'a> {
    /// Bus address clients use.
    pub bus_address: &'a str,
    /// `user` or `system`.
    pub mode: &'a str,
    /// `TURBO_HOME`.
    pub home: &'a Path,
    /// App log directory.
    pub log_dir: &'a Path,
    /// `auto`, `require` or `off`.
    pub ebpf_setting: &'a str,
    /// The exporter's address, or why it is off.
    pub metrics: &'a crate::metrics::Exporter,
}

/// The daemon's description.
#[must_use]
pub fn info(
    facts: &Facts<'_>,
    source: &EventSource,
    ebpf_exit_events: u64,
    uptime: Duration,
    apps: usize,
    state_error: Option<&str>,
) -> DaemonInfo {
    DaemonInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        mode: facts.mode.into(),
        bus_address: facts.bus_address.into(),
        home: facts.home.display().to_string(),
        log_dir: facts.log_dir.display().to_string(),
        ebpf_setting: facts.ebpf_setting.into(),
        event_source: source.kind().as_str().into(),
        event_source_reason: source.reason().to_owned(),
        event_fallbacks: source.fallbacks(),
        ebpf_programs: source.programs(),
        ebpf_exit_events,
        events_lost: source.lost_events(),
        uptime_ms: ms(uptime),
        apps: u32::try_from(apps).unwrap_or(u32::MAX),
        metrics_address: facts.metrics.address().unwrap_or_default(),
        metrics_off_reason: facts.metrics.off_reason().unwrap_or_default(),
        state_error: state_error.unwrap_or_default().into(),
    }
}

/// Adds what the app's cgroup counted to its status (throttling, pids).
pub fn with_cgroup(st: &mut AppStatus, stats: Option<&CgroupStats>) {
    let Some(s) = stats else { return };
    st.cpu_throttled_ms = s.throttled_ns.map_or(0, |ns| ns / 1_000_000);
    st.pids = s.pids.unwrap_or(0);
}

/// The configuration of `app` for `describe` (environment names only), with the memory cgroup
/// it runs in.
#[must_use]
pub fn config(app: &App, cgroup: Option<&AppCgroup>) -> AppConfigInfo {
    let spec = &app.spec;
    let (run_as, limits) = (spec.privileges.run_as.as_ref(), &spec.privileges.limits);
    let cron = spec.lifecycle.cron.as_ref();
    AppConfigInfo {
        autorestart: match spec.autorestart {
            Autorestart::Always => "always",
            Autorestart::OnFailure => "on-failure",
            Autorestart::Never => "never",
        }
        .into(),
        restart_delay_ms: ms(spec.restart.delay),
        restart_factor: spec.restart.factor,
        restart_max_delay_ms: ms(spec.restart.max_delay),
        restart_reset_after_ms: ms(spec.restart.reset_after),
        crash_loop_max: spec.restart.crash_loop_max,
        crash_loop_window_ms: ms(spec.restart.crash_loop_window),
        max_restarts: spec.restart.max_restarts,
        stop_exit_codes: spec.stop_exit_codes.clone(),
        stop_signal: spec.stop_signal,
        kill_timeout_ms: ms(spec.kill_timeout),
        env_names: spec.env.iter().map(|(k, _)| k.clone()).collect(),
        log_format: match spec.log.format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
        .into(),
        log_max_size: spec.log.max_size,
        log_keep: spec.log.keep,
        desired: app.desired.as_str().into(),
        user: run_as.map(|r| r.user.clone()).unwrap_or_default(),
        uid: run_as.map_or(0, |r| r.uid),
        group: run_as.map(|r| r.group.clone()).unwrap_or_default(),
        gid: run_as.map_or(0, |r| r.gid),
        groups: run_as.map(|r| r.groups.clone()).unwrap_or_default(),
        umask: limits.umask.map(|m| format!("{m:04o}")).unwrap_or_default(),
        rlimits: limits
            .rlimits()
            .into_iter()
            .map(|(name, l)| (name.to_owned(), l.soft, l.hard))
            .collect(),
        nice: limits.nice.unwrap_or(AppConfigInfo::INHERITED),
        oom_score_adj: limits.oom_score_adj.unwrap_or(AppConfigInfo::INHERITED),
        instances: spec.instances,
        listen: spec.listen.clone(),
        health_check: spec.health.as_ref().map(describe_check).unwrap_or_default(),
        health_last_error: app.health.last_error.clone().unwrap_or_default(),
        watch_paths: spec
            .watch
            .iter()
            .flat_map(|w| &w.paths)
            .map(|p| p.display().to_string())
            .collect(),
        watch_ignore: spec
            .watch
            .as_ref()
            .map(|w| w.ignore.clone())
            .unwrap_or_default(),
        watch_delay_ms: spec.watch.as_ref().map_or(0, |w| ms(w.delay)),
        ready: match spec.readiness.mode {
            ReadyMode::Spawn => "spawn",
            ReadyMode::Notify => "notify",
        }
        .into(),
        ready_timeout_ms: ms(spec.readiness.timeout),
        watchdog_ms: spec.readiness.watchdog_ms.unwrap_or(0),
        memory_enforce: spec
            .memory
            .max
            .map(|_| spec.memory.enforce.as_str().to_owned())
            .unwrap_or_default(),
        memory_cgroup: cgroup
            .and_then(AppCgroup::memory)
            .map(|c| format!("{} {}", c.version.as_str(), c.path.display()))
            .unwrap_or_default(),
        limits: spec
            .resources
            .written()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        cgroups: cgroup.map(AppCgroup::describe).unwrap_or_default(),
        source: spec.source.clone().unwrap_or_default(),
        kind: match spec.lifecycle.kind {
            AppKind::Service => "service",
            AppKind::Oneshot => "oneshot",
        }
        .into(),
        retries: spec.lifecycle.retries,
        depends_on: spec
            .lifecycle
            .depends_on
            .iter()
            .map(|d| format!("{} ({})", d.name, d.condition.as_str()))
            .collect(),
        depends_timeout_ms: ms(spec.lifecycle.depends_timeout),
        restart_with_deps: spec.lifecycle.restart_with_deps,
        cron: cron.map(|c| c.expr.clone()).unwrap_or_default(),
        cron_action: cron
            .map(|c| match c.action {
                ScheduleAction::Restart => "restart",
                ScheduleAction::Run => "run",
            })
            .unwrap_or_default()
            .into(),
        cron_overlap: cron
            .map(|c| match c.overlap {
                Overlap::Skip => "skip",
                Overlap::Queue => "queue",
                Overlap::Replace => "replace",
            })
            .unwrap_or_default()
            .into(),
        timezone: cron.and_then(|c| c.timezone.clone()).unwrap_or_default(),
    }
}

/// One line about a health check for `describe`.
fn describe_check(check: &HealthSpec) -> String {
    let ms = |d: Duration| d.as_millis();
    let mut line = format!(
        "{} every {}ms, timeout {}ms, restart after {} failures {}ms apart",
        check.probe.describe(),
        ms(check.interval),
        ms(check.timeout),
        check.retries,
        ms(check.retry_delay)
    );
    if !check.start_period.is_zero() {
        line.push_str(&format!(", start period {}ms", ms(check.start_period)));
    }
    line
}

/// A crash as the wire shows it.
#[must_use]
pub fn crash_record(c: &Crash) -> CrashRecord {
    CrashRecord {
        at_ms: c.at_ms,
        code: c.status.code().unwrap_or(-1),
        signal: c.status.signal().unwrap_or(0),
        reason: c.reason.as_str().into(),
        uptime_ms: ms(c.uptime),
        restart_number: c.restart_number,
        memory_bytes: c.memory_bytes,
        signal_sender_pid: c.signal_sender.as_ref().map_or(0, |s| s.pid),
        signal_sender_comm: c
            .signal_sender
            .as_ref()
            .map(|s| s.comm.clone())
            .unwrap_or_default(),
        stderr_tail: c.stderr_tail.clone(),
        source: c.source.map(|s| s.as_str().to_owned()).unwrap_or_default(),
        detail: c.detail.clone().unwrap_or_default(),
        memory_peak_bytes: c.memory_peak_bytes,
    }
}

/// Stats and records (newest first) of one app's crashes at `now_ms`.
#[must_use]
pub fn crash_report(book: Option<&CrashBook>, now_ms: u64) -> (CrashStats, Vec<CrashRecord>) {
    let records: Vec<CrashRecord> = book
        .into_iter()
        .flat_map(|b| b.records.iter().rev())
        .map(crash_record)
        .collect();
    let total = book.map_or(0, |b| b.total);
    (CrashStats::compute(&records, total, now_ms), records)
}

/// What one metrics scrape reports, measured when it asked.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsSnapshot {
    /// Daemon version.
    pub version: &'static str,
    /// `ebpf` or `procfs`.
    pub event_source: &'static str,
    /// Events the kernel dropped.
    pub events_lost: u64,
    /// The daemon's own process figures (`process_*`), when `/proc/self` could be read.
    pub daemon: Option<ProcessStats>,
    /// Every app.
    pub apps: Vec<AppMetrics>,
    /// Log volume per app and stream (`turbo_log_bytes_total`, `turbo_log_dropped_bytes_total`).
    pub logs: Vec<crate::keeper::AppCounters>,
    /// Notifications by app name and event (`turbo_notifications_total`).
    pub notifications: Vec<(String, super::alerts::Event, super::alerts::Outcomes)>,
}

/// One app in a [`MetricsSnapshot`]. Figures of the process tree are `None` while it has no
/// process.
#[derive(Clone, Debug, PartialEq)]
pub struct AppMetrics {
    /// Name.
    pub name: String,
    /// Instance number.
    pub instance: u32,
    /// `app_group`, a label only on the apps that have one.
    pub group: Option<String>,
    /// Lifecycle state.
    pub state: turbo_api::AppState,
    /// Health-check status.
    pub health: Health,
    /// Restarts since the daemon started, by reason (every one of [`RestartReason::ALL`]).
    pub restarts: Vec<(&'static str, u64)>,
    /// Exits nobody asked for since the daemon started, by reason (every one of
    /// [`EXIT_REASONS`], and any other seen).
    pub exits: Vec<(&'static str, u64)>,
    /// OOM kills of its main process since the daemon started.
    pub oom_kills: u64,
    /// User and system CPU seconds of the tree.
    pub cpu_seconds: Option<(f64, f64)>,
    /// Resident bytes of the tree.
    pub rss_bytes: Option<u64>,
    /// PSS of the tree, where readable.
    pub pss_bytes: Option<u64>,
    /// Live processes in the tree.
    pub processes: Option<u32>,
    /// `max_memory`.
    pub memory_limit_bytes: Option<u64>,
    /// Start of the current main process, Unix seconds.
    pub start_time_seconds: Option<f64>,
    /// Leak detection on the current process.
    pub leak: LeakVerdict,
    /// What the kernel saw (eBPF only; `None` otherwise: no series rather than zeros).
    pub insight: Option<InsightMetrics>,
    /// The TCP view (eBPF with the network program only).
    pub net: Option<super::NetView>,
    /// The `listen:` sockets the daemon holds for the app and their accept-queue drops (on one
    /// instance of each name only: the sockets are shared).
    pub listen_drops: Vec<(String, u64)>,
    /// What the app's cgroup counted, when it has one.
    pub cgroup: Option<CgroupStats>,
    /// `cpu_max` in percent of one CPU, `pids_max`.
    pub cpu_max_percent: Option<u32>,
    /// See `cpu_max_percent`.
    pub pids_max: Option<u64>,
}

/// An app's eBPF insight figures for a scrape (issue 22).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InsightMetrics {
    /// Cumulative run-queue delay histogram and involuntary switches.
    pub runq: turbo_common::RunqStats,
    /// Execs inside the tree.
    pub execs: u64,
    /// Those `exec_allow` did not allow.
    pub execs_unexpected: u64,
}

/// What a scrape reports: every app's metrics, the daemon's own figures, the log counters.
#[must_use]
pub fn metrics_snapshot(
    source: &EventSource,
    daemon: Option<ProcessStats>,
    apps: Vec<AppMetrics>,
    logs: Vec<crate::keeper::AppCounters>,
) -> MetricsSnapshot {
    MetricsSnapshot {
        version: env!("CARGO_PKG_VERSION"),
        event_source: source.kind().as_str(),
        events_lost: source.lost_events(),
        daemon,
        apps,
        logs,
        notifications: Vec::new(),
    }
}

/// One app's metrics from a reading and its counters.
#[must_use]
pub fn app_metrics(
    app: &App,
    clock: &WallClock,
    measured: Option<Measured>,
    counts: Option<&Counts>,
    leak: LeakVerdict,
    cgroup: Option<CgroupStats>,
) -> AppMetrics {
    let restarts = RestartReason::ALL
        .iter()
        .map(|r| {
            let n = counts.and_then(|c| c.restarts.get(r)).copied().unwrap_or(0);
            (r.as_str(), n)
        })
        .collect();
    let exits_of = |r: &turbo_api::ExitReason| counts.and_then(|c| c.exits.get(r)).copied();
    let mut exits: Vec<(&'static str, u64)> = EXIT_REASONS
        .iter()
        .map(|r| (r.as_str(), exits_of(r).unwrap_or(0)))
        .collect();
    exits.extend(
        turbo_api::ExitReason::ALL
            .iter()
            .filter(|r| !EXIT_REASONS.contains(r))
            .filter_map(|r| Some((r.as_str(), exits_of(r)?))),
    );
    AppMetrics {
        name: app.spec.name.clone(),
        instance: app.instance,
        group: app.spec.app_group.clone(),
        state: app.state.public(),
        health: app.public_health(),
        restarts,
        oom_kills: exits_of(&turbo_api::ExitReason::OomKill).unwrap_or(0),
        exits,
        // the cgroup counts every process that ever ran in it, the reaped ones included
        cpu_seconds: cgroup
            .as_ref()
            .and_then(|c| Some((c.cpu_user_ns?, c.cpu_system_ns?)))
            .map(|(u, s)| (u as f64 / 1e9, s as f64 / 1e9))
            .or_else(|| measured.map(|m| (m.user_seconds, m.system_seconds))),
        rss_bytes: measured.map(|m| m.rss_bytes),
        pss_bytes: measured.and_then(|m| m.pss_bytes),
        processes: measured.map(|m| m.processes),
        memory_limit_bytes: app.spec.memory.max,
        start_time_seconds: app.since().map(|s| clock.ms(s) as f64 / 1000.0),
        leak,
        insight: None,
        net: None,
        listen_drops: Vec::new(),
        cgroup,
        cpu_max_percent: app.spec.resources.cpu_max,
        pids_max: app.spec.resources.pids_max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        events::{SourceKind, WaitStatus},
        spec::AppSpec,
        supervisor::{Command, Input, Supervisor},
    };

    #[test]
    fn crash_records_and_reports() {
        let crash = |at_ms, reason| Crash {
            at_ms,
            status: WaitStatus::signaled(9),
            reason,
            uptime: Duration::from_millis(250),
            restart_number: 1,
            memory_bytes: 7,
            memory_peak_bytes: 9,
            signal_sender: Some(crate::events::Sender {
                pid: 3,
                comm: "kill".into(),
            }),
            stderr_tail: vec!["x".into()],
            source: Some(SourceKind::Procfs),
            detail: None,
        };
        let r = crash_record(&crash(5, turbo_api::ExitReason::Signal));
        assert_eq!((r.code, r.signal, r.reason.as_str()), (-1, 9, "signal"));
        assert_eq!(
            (r.signal_sender_pid, r.signal_sender_comm.as_str()),
            (3, "kill")
        );
        assert_eq!(
            (r.uptime_ms, r.source.as_str(), r.detail.as_str()),
            (250, "procfs", "")
        );
        let mut book = CrashBook::default();
        for i in 0..3 {
            book.records
                .push_back(crash(i * 1000, turbo_api::ExitReason::Exit));
        }
        book.total = 10;
        let (stats, records) = crash_report(Some(&book), 3000);
        assert_eq!(records[0].at_ms, 2000, "newest first");
        assert_eq!((stats.total, stats.mtbf_ms), (10, 1000));
        assert_eq!(crash_report(None, 0).0.total, 0);
    }

    #[test]
    fn every_restart_and_exit_reason_is_reported() {
        let mut sup = Supervisor::new();
        let spec = AppSpec::new("a", vec!["/bin/true".into()], "/".into());
        let start = Command::Start {
            specs: vec![spec],
            exclusive: true,
        };
        sup.handle(Input::Command(1, start), Instant::now());
        let app = sup.apps().next().expect("added");
        let mut counts = Counts::default();
        counts.exited(turbo_api::ExitReason::Health);
        counts.exited(turbo_api::ExitReason::OomKill);
        let m = app_metrics(
            app,
            &WallClock::now(),
            None,
            Some(&counts),
            LeakVerdict::UNKNOWN,
            None,
        );
        let reasons: Vec<&str> = m.restarts.iter().map(|(r, _)| *r).collect();
        assert_eq!(
            reasons,
            [
                "crash",
                "oom_kill",
                "memory_limit",
                "health",
                "watch",
                "manual"
            ]
        );
        assert_eq!(
            m.exits,
            [
                ("exit", 0),
                ("signal", 0),
                ("oom_kill", 1),
                ("memory_limit", 0),
                ("health", 1)
            ]
        );
        assert_eq!(m.oom_kills, 1);
        assert_eq!((m.rss_bytes, m.start_time_seconds), (None, None));
    }
}
