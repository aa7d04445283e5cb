//! What a scrape shows: every metric family of docs/metrics.md, written from one
//! [`MetricsSnapshot`] in the text format of [`super::text`].
//!
//! Pure: no I/O, no clock; everything comes from the snapshot the runtime measured. Families are
//! written one after the other, each over all apps (the format wants a family's samples
//! together); each app's label values are escaped once, before the first family.

use std::collections::HashSet;

use turbo_api::AppState;

use super::text::{Kind, Labels, Text};
use crate::runtime::{AppMetrics, MetricsSnapshot};

/// An app and its escaped `app`, `app_instance` (and `group`) labels.
struct Row<'s> {
    app: &'s AppMetrics,
    labels: Labels,
}

/// Bytes of text per app, about (2.3 KB with eBPF, 5 KB with every app's run-queue
/// buckets): the buffer is sized once instead of doubling its way there.
const BYTES_PER_APP: usize = 5 << 9;

/// What a scrape shows beyond the default set (`--metrics-app-histograms`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Detail {
    /// Every app's run-queue delay buckets (24 series per app). Without it an app's histogram
    /// has its `+Inf` bucket, sum and count only (its mean delay), and the buckets are the
    /// host's: `turbo_runqueue_delay_seconds`, all apps summed.
    pub app_histograms: bool,
}

/// The exposition text of one snapshot.
#[must_use]
pub fn render(s: &MetricsSnapshot, detail: Detail) -> String {
    let rows: Vec<Row<'_>> = s
        .apps
        .iter()
        .map(|app| {
            let mut labels = Labels::new()
                .with("app", &app.name)
                .with("app_instance", &app.instance.to_string());
            if let Some(g) = &app.group {
                labels.push("group", g);
            }
            Row { app, labels }
        })
        .collect();
    let per_app = if detail.app_histograms {
        BYTES_PER_APP + (3 << 10)
    } else {
        BYTES_PER_APP
    };
    let mut t = Text::with_capacity(4096 + rows.len() * per_app);
    daemon_info(&mut t, s);
    app_state(&mut t, &rows);
    app_counts(&mut t, &rows);
    app_usage(&mut t, &rows);
    app_insight(&mut t, &rows, detail);
    app_cgroup(&mut t, &rows);
    logs(&mut t, s);
    notifications(&mut t, s);
    process(&mut t, s);
    t.finish()
}

/// Writes `name` over every app: `each` gives an app's samples, with its labels.
fn per_app(
    t: &mut Text,
    rows: &[Row<'_>],
    (name, kind, help): (&'static str, Kind, &'static str),
    mut each: impl FnMut(&AppMetrics, &Labels, &mut super::text::Family<'_>),
) {
    let mut f = t.family(name, kind, help);
    for row in rows {
        each(row.app, &row.labels, &mut f);
    }
}

/// One sample per app of the value `value` gives, for apps where it has one.
fn per_app_value<V: super::text::Value>(
    t: &mut Text,
    rows: &[Row<'_>],
    family: (&'static str, Kind, &'static str),
    value: impl Fn(&AppMetrics) -> Option<V>,
) {
    per_app(t, rows, family, |app, labels, f| {
        if let Some(v) = value(app) {
            f.sample(labels, None, v);
        }
    });
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

fn daemon_info(t: &mut Text, s: &MetricsSnapshot) {
    t.family(
        "turbo_build_info",
        Kind::Gauge,
        "A metric with a constant '1' value labelled by the turbo-daemon version",
    )
    .sample(&Labels::new().with("version", s.version), None, 1.0);
    let source = Labels::new().with("source", s.event_source);
    t.family(
        "turbo_event_source_info",
        Kind::Gauge,
        "Which source reports process events: 'ebpf' or 'procfs' (value 1)",
    )
    .sample(&source, None, 1.0);
    t.family(
        "turbo_events_lost_total",
        Kind::Counter,
        "Process events the kernel dropped because the eBPF ring buffer was full",
    )
    .sample(&source, None, s.events_lost);
}

fn app_state(t: &mut Text, rows: &[Row<'_>]) {
    per_app_value(
        t,
        rows,
        (
            "turbo_app_up",
            Kind::Gauge,
            "1 when the app is online, else 0",
        ),
        |app| Some(flag(app.state == AppState::Online)),
    );
    per_app(
        t,
        rows,
        (
            "turbo_app_state",
            Kind::Gauge,
            "The app's lifecycle state: one series per app, labelled with the current state \
             (value 1)",
        ),
        // one series per app rather than one per possible state (nine): a state change ends
        // one series and starts another, which `turbo_app_state{state="errored"} == 1` and
        // `count by (state)` read the same way, for a ninth of the series
        |app, labels, f| f.sample(labels, Some(("state", app.state.as_str())), 1.0),
    );
    per_app(
        t,
        rows,
        (
            "turbo_app_health_status",
            Kind::Gauge,
            "The app's health-check status: one series per app, labelled with the current \
             status (value 1; 'none' when no check is configured)",
        ),
        |app, labels, f| f.sample(labels, Some(("status", app.health.as_str())), 1.0),
    );
    per_app_value(
        t,
        rows,
        (
            "turbo_app_start_time_seconds",
            Kind::Gauge,
            "Start time of the app's current main process since the Unix epoch",
        ),
        |app| app.start_time_seconds,
    );
}

fn app_counts(t: &mut Text, rows: &[Row<'_>]) {
    per_app(
        t,
        rows,
        (
            "turbo_app_restarts_total",
            Kind::Counter,
            "Restarts of the app since the daemon started, by reason",
        ),
        |app, labels, f| {
            for (reason, n) in &app.restarts {
                f.sample(labels, Some(("reason", reason)), *n);
            }
        },
    );
    per_app(
        t,
        rows,
        (
            "turbo_app_exits_total",
            Kind::Counter,
            "Exits of the app nobody asked for (crash records) since the daemon started, by \
             reason",
        ),
        |app, labels, f| {
            for (reason, n) in &app.exits {
                f.sample(labels, Some(("reason", reason)), *n);
            }
        },
    );
    per_app_value(
        t,
        rows,
        (
            "turbo_app_oom_kills_total",
            Kind::Counter,
            "Times the kernel OOM killer killed the app's main process since the daemon started",
        ),
        |app| Some(app.oom_kills),
    );
}

fn app_usage(t: &mut Text, rows: &[Row<'_>]) {
    per_app(
        t,
        rows,
        (
            "turbo_app_cpu_seconds_total",
            Kind::Counter,
            "CPU time used by the app's whole process tree, by mode: from its cgroup when it has \
             one (every process that ran in it), else the live processes and the children they \
             reaped (resets when the app's main process changes)",
        ),
        |app, labels, f| {
            if let Some((user, system)) = app.cpu_seconds {
                f.sample(labels, Some(("mode", "user")), user);
                f.sample(labels, Some(("mode", "system")), system);
            }
        },
    );
    per_app(
        t,
        rows,
        (
            "turbo_app_memory_bytes",
            Kind::Gauge,
            "Memory of the app's whole process tree: type 'rss' (resident, shared pages counted \
             per process) or 'pss' (proportional share, where readable); with a memory cgroup \
             also 'cgroup' (everything charged to it) and 'page_cache' (the file-backed part of \
             that)",
        ),
        |app, labels, f| {
            let cgroup = app.cgroup.as_ref();
            for (kind, bytes) in [
                ("rss", app.rss_bytes),
                ("pss", app.pss_bytes),
                ("cgroup", cgroup.and_then(|c| c.memory_bytes)),
                ("page_cache", cgroup.and_then(|c| c.page_cache_bytes)),
            ] {
                if let Some(b) = bytes {
                    f.sample(labels, Some(("type", kind)), b as f64);
                }
            }
        },
    );
    per_app_value(
        t,
        rows,
        (
            "turbo_app_memory_limit_bytes",
            Kind::Gauge,
            "The app's max_memory (only for apps that have one)",
        ),
        |app| app.memory_limit_bytes.map(|b| b as f64),
    );
    per_app_value(
        t,
        rows,
        (
            "turbo_app_processes",
            Kind::Gauge,
            "Processes in the app's tree (the main process and its known descendants)",
        ),
        |app| app.processes.map(f64::from),
    );
    per_app_value(
        t,
        rows,
        (
            "turbo_app_leak_suspected",
            Kind::Gauge,
            "1 when the app's memory grows in a sustained way (robust slope over the leak window)",
        ),
        |app| (app.state == AppState::Online).then(|| flag(app.leak.suspected)),
    );
    per_app_value(
        t,
        rows,
        (
            "turbo_app_memory_growth_bytes_per_hour",
            Kind::Gauge,
            "Robust (Theil-Sen) growth rate of the app's resident memory over the leak window",
        ),
        |app| app.leak.bytes_per_hour,
    );
    per_app_value(
        t,
        rows,
        (
            "turbo_app_cpu_limit_cpus",
            Kind::Gauge,
            "The app's cpu_max in CPUs (only for apps that have one)",
        ),
        |app| app.cpu_max_percent.map(|pct| f64::from(pct) / 100.0),
    );
    per_app_value(
        t,
        rows,
        (
            "turbo_app_pids_limit",
            Kind::Gauge,
            "The app's pids_max (only for apps that have one)",
        ),
        |app| app.pids_max.map(|n| n as f64),
    );
}

fn app_insight(t: &mut Text, rows: &[Row<'_>], detail: Detail) {
    per_app_value(
        t,
        rows,
        (
            "turbo_app_execs_total",
            Kind::Counter,
            "Execs inside the app's process tree seen by eBPF since the app was added (its own \
             start included)",
        ),
        |app| app.insight.map(|i| i.execs),
    );
    per_app_value(
        t,
        rows,
        (
            "turbo_app_execs_unexpected_total",
            Kind::Counter,
            "Execs inside the app's tree of a program its exec_allow list does not allow",
        ),
        |app| app.insight.map(|i| i.execs_unexpected),
    );
    per_app_value(
        t,
        rows,
        (
            "turbo_app_involuntary_switches_total",
            Kind::Counter,
            "Times the app's threads were taken off a CPU while still runnable (eBPF), since the \
             app was added",
        ),
        |app| app.insight.map(|i| i.runq.involuntary),
    );
    runq_histograms(t, rows, detail);
    per_app(
        t,
        rows,
        (
            "turbo_app_listen_ports",
            Kind::Gauge,
            "1 for each TCP address a process of the app listens on (eBPF), by addr",
        ),
        |app, labels, f| {
            for addr in app.net.iter().flat_map(|n| &n.listening) {
                f.sample(labels, Some(("addr", &addr.to_string())), 1.0);
            }
        },
    );
    per_app(
        t,
        rows,
        (
            "turbo_app_tcp_connections_total",
            Kind::Counter,
            "TCP connections of the app since it was added (eBPF): connect = SYNs it sent, \
             accept = connections established on ports it listens on",
        ),
        |app, labels, f| {
            if let Some(net) = &app.net {
                f.sample(labels, Some(("direction", "connect")), net.connects);
                f.sample(labels, Some(("direction", "accept")), net.accepts);
            }
        },
    );
    let mut f = t.family(
        "turbo_app_accept_queue_drops_total",
        Kind::Counter,
        "Connection attempts the kernel dropped on a listen: socket the daemon holds for the \
         app, almost all because the accept queue was full (the socket's sk_drops)",
    );
    for row in rows {
        let app = row.app;
        // the socket is the app name's, not an instance's: no instance label
        for (addr, drops) in &app.listen_drops {
            let mut labels = Labels::new().with("app", &app.name);
            if let Some(g) = &app.group {
                labels.push("group", g);
            }
            f.sample(&labels, Some(("listen", addr)), *drops);
        }
    }
}

/// `turbo_runqueue_delay_seconds` (every app's waits summed) and
/// `turbo_app_runqueue_delay_seconds` (per app: its buckets with [`Detail::app_histograms`],
/// else `+Inf`, sum and count only), from the kernel's log2 buckets: bucket `i` ends at `2^i` µs.
fn runq_histograms(t: &mut Text, rows: &[Row<'_>], detail: Detail) {
    // the bounds' text, written once for all apps
    let bounds: Vec<String> = (0..turbo_common::RUNQ_BUCKETS - 1)
        .map(|i| ((1u64 << i) as f64 / 1e6).to_string())
        .collect();
    let mut host = turbo_common::RunqStats::default();
    let mut any = false;
    for runq in rows
        .iter()
        .filter_map(|r| r.app.insight.as_ref().map(|i| &i.runq))
    {
        any = true;
        for (sum, n) in host.buckets.iter_mut().zip(runq.buckets) {
            *sum += n;
        }
        host.count += runq.count;
        host.sum_ns += runq.sum_ns;
    }
    let write = |f: &mut super::text::Family<'_>,
                 labels: &Labels,
                 runq: &turbo_common::RunqStats,
                 buckets: bool| {
        if buckets {
            let mut cumulative = 0u64;
            // the last bucket has no upper bound: it only counts in +Inf
            for (n, le) in runq.buckets.iter().zip(&bounds) {
                cumulative += n;
                f.line("bucket", labels, Some(("le", le)), cumulative);
            }
        }
        f.line("bucket", labels, Some(("le", "+Inf")), runq.count);
        f.line("sum", labels, None, runq.sum_ns as f64 / 1e9);
        f.line("count", labels, None, runq.count);
    };
    if any {
        let mut f = t.family(
            "turbo_runqueue_delay_seconds",
            Kind::Histogram,
            "Time the threads of every app's tree waited on a CPU run queue before running \
             (eBPF; the kernel's log2 buckets), summed over the apps, since each was added",
        );
        write(&mut f, &Labels::new(), &host, true);
    }
    per_app(
        t,
        rows,
        (
            "turbo_app_runqueue_delay_seconds",
            Kind::Histogram,
            "Time the app's threads waited on a CPU run queue before running (eBPF), since the \
             app was added; the kernel's log2 buckets with --metrics-app-histograms, else +Inf \
             only (sum and count: the mean)",
        ),
        |app, labels, f| {
            if let Some(runq) = app.insight.as_ref().map(|i| &i.runq) {
                write(f, labels, runq, detail.app_histograms);
            }
        },
    );
}

fn app_cgroup(t: &mut Text, rows: &[Row<'_>]) {
    per_app_value(
        t,
        rows,
        (
            "turbo_app_cpu_throttled_seconds_total",
            Kind::Counter,
            "Time the app's processes were held back by its cpu_max (from its cgroup)",
        ),
        |app| Some(app.cgroup.as_ref()?.throttled_ns? as f64 / 1e9),
    );
    per_app_value(
        t,
        rows,
        (
            "turbo_app_cpu_throttled_periods_total",
            Kind::Counter,
            "Scheduler periods in which cpu_max held the app back (from its cgroup)",
        ),
        |app| app.cgroup.as_ref()?.throttled_periods,
    );
    per_app_value(
        t,
        rows,
        (
            "turbo_app_pids",
            Kind::Gauge,
            "Processes and threads in the app's cgroup (only for apps that have a cgroup with \
             the pids controller)",
        ),
        |app| app.cgroup.as_ref()?.pids.map(|n| n as f64),
    );
    per_app(
        t,
        rows,
        (
            "turbo_app_memory_events_total",
            Kind::Counter,
            "Memory events of the app's memory cgroup: high (throttled at memory_high, v2), max \
             (at the limit), oom, oom_kill",
        ),
        |app, labels, f| {
            for (event, n) in app.cgroup.iter().flat_map(|c| &c.memory_events) {
                f.sample(labels, Some(("event", event)), *n);
            }
        },
    );
}

/// Log volume of the managed apps (the keeper also counts files of deleted apps: left out).
fn logs(t: &mut Text, s: &MetricsSnapshot) {
    let managed: HashSet<&str> = s.apps.iter().map(|a| a.name.as_str()).collect();
    let counters: Vec<_> = s
        .logs
        .iter()
        .filter(|c| managed.contains(c.app.as_str()))
        .map(|c| {
            let labels = Labels::new()
                .with("app", &c.app)
                .with("stream", c.stream.as_str());
            (c, labels)
        })
        .collect();
    let mut f = t.family(
        "turbo_log_bytes_total",
        Kind::Counter,
        "Bytes written to the app's log file (records, with timestamps), by stream 'out' or \
         'err'; resets when the log keeper restarts",
    );
    for (c, labels) in &counters {
        f.sample(labels, None, c.written);
    }
    drop(f);
    let mut f = t.family(
        "turbo_log_dropped_bytes_total",
        Kind::Counter,
        "Bytes of the app's log records that could not be written (full disk, I/O error) and \
         were dropped, by stream",
    );
    for (c, labels) in &counters {
        f.sample(labels, None, c.dropped);
    }
    drop(f);
    let mut f = t.family(
        "turbo_log_forwarded_total",
        Kind::Counter,
        "Records of the app sent to journald or syslog ('to'), by stream; resets when the log \
         keeper restarts",
    );
    for (c, labels) in &counters {
        for fw in &c.forwarded {
            f.sample(labels, Some(("to", fw.to.as_str())), fw.sent);
        }
    }
    drop(f);
    let mut f = t.family(
        "turbo_log_forward_dropped_total",
        Kind::Counter,
        "Records of the app that journald or syslog ('to') did not take in time (receiver \
         absent, stuck or slower than the app) and were dropped, by stream",
    );
    for (c, labels) in &counters {
        for fw in &c.forwarded {
            f.sample(labels, Some(("to", fw.to.as_str())), fw.dropped);
        }
    }
}

fn notifications(t: &mut Text, s: &MetricsSnapshot) {
    let mut f = t.family(
        "turbo_notifications_total",
        Kind::Counter,
        "on_crash and on_state notifications by event and outcome: sent, failed (every \
         attempt), dropped (over the app's rate_limit)",
    );
    for (app, event, o) in &s.notifications {
        let labels = Labels::new().with("app", app).with("event", event.as_str());
        for (outcome, n) in [
            ("sent", o.sent),
            ("failed", o.failed),
            ("dropped", o.dropped),
        ] {
            f.sample(&labels, Some(("outcome", outcome)), n);
        }
    }
}

/// The daemon's own `process_*` figures, as every Prometheus client library names them.
fn process(t: &mut Text, s: &MetricsSnapshot) {
    let Some(p) = &s.daemon else { return };
    let none = Labels::new();
    t.family(
        "process_cpu_seconds_total",
        Kind::Counter,
        "Total user and system CPU time spent by turbo-daemon in seconds",
    )
    .sample(&none, None, p.cpu_seconds);
    for (name, help, v) in [
        (
            "process_resident_memory_bytes",
            "Resident memory size of turbo-daemon in bytes",
            p.resident_bytes as f64,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size of turbo-daemon in bytes",
            p.virtual_bytes as f64,
        ),
        (
            "process_virtual_memory_max_bytes",
            "Maximum amount of virtual memory available to turbo-daemon in bytes",
            p.virtual_max_bytes as f64,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors of turbo-daemon",
            p.open_fds as f64,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors of turbo-daemon",
            p.max_fds as f64,
        ),
        (
            "process_start_time_seconds",
            "Start time of turbo-daemon since the Unix epoch in seconds",
            p.start_time_seconds,
        ),
        (
            "process_threads",
            "Number of OS threads of turbo-daemon",
            p.threads as f64,
        ),
    ] {
        t.family(name, Kind::Gauge, help).sample(&none, None, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::family_names;
    use crate::runtime::{ProcessStats, RestartReason};
    use crate::supervisor::leak::LeakVerdict;

    fn app(name: &str, state: AppState) -> AppMetrics {
        AppMetrics {
            name: name.into(),
            instance: 0,
            group: None,
            state,
            health: turbo_api::Health::None,
            restarts: RestartReason::ALL.iter().map(|r| (r.as_str(), 0)).collect(),
            exits: vec![("exit", 0), ("signal", 2)],
            oom_kills: 0,
            cpu_seconds: None,
            rss_bytes: None,
            pss_bytes: None,
            processes: None,
            memory_limit_bytes: None,
            start_time_seconds: None,
            leak: LeakVerdict::UNKNOWN,
            insight: None,
            net: None,
            listen_drops: Vec::new(),
            cgroup: None,
            cpu_max_percent: None,
            pids_max: None,
        }
    }

    #[test]
    fn renders_every_family_with_bounded_labels() {
        let online = AppMetrics {
            cpu_seconds: Some((1.25, 0.5)),
            rss_bytes: Some(10 << 20),
            pss_bytes: Some(8 << 20),
            processes: Some(3),
            memory_limit_bytes: Some(200 << 20),
            start_time_seconds: Some(1.7e9),
            leak: LeakVerdict {
                bytes_per_hour: Some(1e6),
                suspected: true,
            },
            insight: Some(crate::runtime::InsightMetrics {
                runq: {
                    let mut r = turbo_common::RunqStats::default();
                    r.buckets[0] = 2;
                    r.buckets[3] = 1;
                    r.buckets[turbo_common::RUNQ_BUCKETS - 1] = 1;
                    (r.count, r.sum_ns, r.involuntary) = (4, 9_000_000_000, 7);
                    r
                },
                execs: 5,
                execs_unexpected: 1,
            }),
            ..app("api \"quoted\"", AppState::Online)
        };
        let snapshot = MetricsSnapshot {
            version: "0.1.0",
            event_source: "ebpf",
            events_lost: 0,
            daemon: Some(ProcessStats {
                cpu_seconds: 0.75,
                resident_bytes: 1,
                virtual_bytes: 2,
                virtual_max_bytes: u64::MAX,
                open_fds: 3,
                max_fds: 4,
                start_time_seconds: 5.0,
                threads: 1,
            }),
            apps: vec![
                online,
                app("worker", AppState::Backoff),
                AppMetrics {
                    group: Some("front".into()),
                    cpu_seconds: Some((2.0, 0.0)),
                    ..app("web", AppState::Online)
                },
            ],
            notifications: vec![(
                "web".into(),
                crate::runtime::alerts::Event::Crash,
                crate::runtime::alerts::Outcomes {
                    sent: 2,
                    failed: 1,
                    dropped: 7,
                },
            )],
            logs: vec![
                crate::keeper::AppCounters {
                    app: "worker".into(),
                    stream: crate::logs::Stream::Err,
                    written: 120,
                    dropped: 30,
                    forwarded: vec![crate::logs::forward::ForwardCount {
                        to: crate::logs::forward::Dest::Journald,
                        sent: 7,
                        dropped: 2,
                    }],
                },
                crate::keeper::AppCounters {
                    app: "deleted".into(),
                    stream: crate::logs::Stream::Out,
                    written: 1,
                    dropped: 0,
                    forwarded: Vec::new(),
                },
            ],
        };
        let text = render(
            &snapshot,
            Detail {
                app_histograms: true,
            },
        );
        for needle in [
            "# TYPE turbo_app_cpu_seconds_total counter",
            "turbo_app_cpu_seconds_total{app=\"api \\\"quoted\\\"\",app_instance=\"0\",mode=\"user\"} 1.25",
            "process_cpu_seconds_total 0.75",
            "# TYPE turbo_app_restarts_total counter",
            "turbo_app_state{app=\"worker\",app_instance=\"0\",state=\"backoff\"} 1",
            "turbo_app_up{app=\"worker\",app_instance=\"0\"} 0",
            "turbo_app_leak_suspected{app=\"api \\\"quoted\\\"\",app_instance=\"0\"} 1",
            "turbo_build_info{version=\"0.1.0\"} 1",
            "turbo_log_bytes_total{app=\"worker\",stream=\"err\"} 120",
            "turbo_log_dropped_bytes_total{app=\"worker\",stream=\"err\"} 30",
            "# TYPE turbo_app_runqueue_delay_seconds histogram",
            "turbo_app_runqueue_delay_seconds_bucket{app=\"api \\\"quoted\\\"\",app_instance=\"0\",le=\"0.000001\"} 2",
            "turbo_app_runqueue_delay_seconds_bucket{app=\"api \\\"quoted\\\"\",app_instance=\"0\",le=\"0.000008\"} 3",
            "turbo_app_runqueue_delay_seconds_bucket{app=\"api \\\"quoted\\\"\",app_instance=\"0\",le=\"4.194304\"} 3",
            "turbo_app_runqueue_delay_seconds_bucket{app=\"api \\\"quoted\\\"\",app_instance=\"0\",le=\"+Inf\"} 4",
            "turbo_app_runqueue_delay_seconds_sum{app=\"api \\\"quoted\\\"\",app_instance=\"0\"} 9",
            "turbo_app_runqueue_delay_seconds_count{app=\"api \\\"quoted\\\"\",app_instance=\"0\"} 4",
            "turbo_app_execs_unexpected_total{app=\"api \\\"quoted\\\"\",app_instance=\"0\"} 1",
            "turbo_app_involuntary_switches_total{app=\"api \\\"quoted\\\"\",app_instance=\"0\"} 7",
            "turbo_app_up{app=\"web\",app_instance=\"0\",group=\"front\"} 1",
            "turbo_notifications_total{app=\"web\",event=\"crash\",outcome=\"dropped\"} 7",
            "turbo_notifications_total{app=\"web\",event=\"crash\",outcome=\"failed\"} 1",
            "turbo_app_state{app=\"web\",app_instance=\"0\",group=\"front\",state=\"online\"} 1",
            "turbo_app_cpu_seconds_total{app=\"web\",app_instance=\"0\",group=\"front\",mode=\"user\"} 2",
            "turbo_log_forwarded_total{app=\"worker\",stream=\"err\",to=\"journald\"} 7",
            "turbo_log_forward_dropped_total{app=\"worker\",stream=\"err\",to=\"journald\"} 2",
        ] {
            assert!(text.contains(needle), "missing {needle}:\n{text}");
        }
        assert!(!text.contains("pid="), "{text}");
        assert!(!text.contains("deleted"), "only managed apps' logs: {text}");
        let names = family_names(&text);
        assert!(
            names.contains(&"turbo_app_memory_bytes".to_owned()),
            "{names:?}"
        );
        // a stopped app has no CPU, memory or leak series, but its counters and state
        assert!(!text.contains("turbo_app_leak_suspected{app=\"worker\""));
        // no eBPF figures for it: no series, not zeros
        assert!(!text.contains("turbo_app_execs_total{app=\"worker\""));
        assert!(!text.contains("turbo_app_runqueue_delay_seconds_count{app=\"worker\""));
        assert!(text.contains(
            "turbo_app_exits_total{app=\"worker\",app_instance=\"0\",reason=\"signal\"} 2"
        ));
        // one state series per app: the current one's
        let states: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("turbo_app_state{app=\"worker\""))
            .collect();
        assert_eq!(
            states,
            ["turbo_app_state{app=\"worker\",app_instance=\"0\",state=\"backoff\"} 1"]
        );
        assert!(text.contains(
            "turbo_app_health_status{app=\"worker\",app_instance=\"0\",status=\"none\"} 1\n"
        ));
        assert_eq!(text.matches("turbo_app_health_status{").count(), 3);
        // the host's histogram: every app's buckets summed, always in full
        assert!(text.contains("turbo_runqueue_delay_seconds_bucket{le=\"0.000008\"} 3\n"));
        assert!(text.contains("turbo_runqueue_delay_seconds_count 4\n"));
    }

    /// By default an app's run-queue histogram is its `+Inf` bucket, sum and count (its mean),
    /// and the buckets are the host's only; an app that changes state moves its one series.
    #[test]
    fn default_detail_keeps_per_app_series_few() {
        let runq = |n: u64, at: usize| {
            let mut r = turbo_common::RunqStats::default();
            r.buckets[at] = n;
            (r.count, r.sum_ns) = (n, n * 1000);
            crate::runtime::InsightMetrics {
                runq: r,
                execs: 1,
                execs_unexpected: 0,
            }
        };
        let snapshot = |state| MetricsSnapshot {
            version: "0.1.0",
            event_source: "ebpf",
            events_lost: 0,
            daemon: None,
            apps: vec![
                AppMetrics {
                    insight: Some(runq(2, 1)),
                    ..app("a", state)
                },
                AppMetrics {
                    insight: Some(runq(3, 4)),
                    ..app("b", AppState::Online)
                },
            ],
            notifications: Vec::new(),
            logs: Vec::new(),
        };
        let text = render(&snapshot(AppState::Online), Detail::default());
        assert!(
            !text.contains(
                "turbo_app_runqueue_delay_seconds_bucket{app=\"a\",app_instance=\"0\",le=\"0"
            ),
            "{text}"
        );
        for needle in [
            "turbo_app_runqueue_delay_seconds_bucket{app=\"a\",app_instance=\"0\",le=\"+Inf\"} 2\n",
            "turbo_app_runqueue_delay_seconds_count{app=\"b\",app_instance=\"0\"} 3\n",
            "turbo_runqueue_delay_seconds_bucket{le=\"0.000002\"} 2\n",
            "turbo_runqueue_delay_seconds_bucket{le=\"0.000016\"} 5\n",
            "turbo_runqueue_delay_seconds_bucket{le=\"+Inf\"} 5\n",
            "turbo_runqueue_delay_seconds_sum 0.000005\n",
            "turbo_app_state{app=\"a\",app_instance=\"0\",state=\"online\"} 1\n",
        ] {
            assert!(text.contains(needle), "missing {needle}:\n{text}");
        }
        let after = render(&snapshot(AppState::Errored), Detail::default());
        let of_a = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| l.starts_with("turbo_app_state{app=\"a\""))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(
            of_a(&after),
            ["turbo_app_state{app=\"a\",app_instance=\"0\",state=\"errored\"} 1"]
        );
        assert_eq!(of_a(&text).len(), 1);
    }
}
