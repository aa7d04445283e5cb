//! The Prometheus exporter: `GET /metrics` on a TCP address (loopback by default), in the text
//! exposition format.
//!
//! A thin adapter, like `dbus`: every scrape sends one [`Request::Metrics`] to the runtime,
//! which measures what it reports *then* (process trees read from `/proc` on demand, counters
//! from its books), and this module only turns that [`MetricsSnapshot`] into text. It must not
//! own or cache state: nothing is kept between two scrapes, so a deleted app disappears from
//! the next scrape and nothing here can drift from what `turbo status` says.
//!
//! Rendering uses the `metrics` facade recording into a **fresh**
//! `metrics_exporter_prometheus` recorder per scrape (installed only for the duration of the
//! render with `metrics::with_local_recorder`, never globally), so the exposition format,
//! escaping and `# HELP`/`# TYPE` lines come from that crate. One exception: `metrics` counters
//! are integers, and CPU time is a fractional counter in seconds (Prometheus base unit), so the
//! two CPU counters are written with the same crate's `formatting` helpers instead of being
//! truncated to whole seconds.
//!
//! The crate's own HTTP listener is not used: it renders a global recorder on its own, with no
//! way to ask the runtime first. The server here is hyper's HTTP/1 connection driver on a tokio
//! listener, with a header timeout so an idle client cannot hold a connection forever. With
//! `--metrics-web-config` ([`web`]) each connection is first a TLS session and/or each request
//! must carry basic-auth credentials; the exporter serves metrics only, never control, whatever
//! address it listens on.
//!
//! Metric names and labels are listed in docs/metrics.md. Labels are bounded: `app`,
//! `app_instance`, `event`, `outcome`, `group` (only on apps with an `app_group`: to PromQL a missing label and an
//! empty one are the same, so `sum by (group)` works across all apps), `reason`, `state`, `source`, `mode`, `type`, `status`, `version`, `stream`;
//! never a pid. The instance number is `app_instance`, not `instance`: Prometheus attaches `instance`
//! (and `job`) to every scraped series itself and would rename ours to `exported_instance`.

pub mod web;

use std::{convert::Infallible, fmt::Write as _, net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{Method, StatusCode, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::{Label, counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{LabelSet, PrometheusBuilder, formatting};
use tokio::{net::TcpListener, sync::mpsc};
use turbo_api::AppState;

use crate::runtime::{AppMetrics, MetricsSnapshot, Request};
pub use web::WebConfig;

/// `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The default listen address of a root daemon (`--metrics-listen`): loopback only, so nothing
/// is exposed to the network unless the operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// The first port of the per-user defaults, and how many there are: 10000-32767, below the
/// kernel's default ephemeral range (32768-60999), so a default never collides with an outgoing
/// connection's port.
const USER_PORTS: (u16, u16) = (10_000, 22_768);

/// The default exporter address of a daemon running as `uid`: [`DEFAULT_LISTEN`] for root;
/// for anyone else loopback port `10000 + uid mod 22768` (uid 1000: 11000), so the user-mode
/// daemons of several users on one host do not all want 9464, and the second one's exporter is
/// not silently off (issue 15). `turbo info` shows the address.
#[must_use]
pub fn default_listen(uid: u32) -> SocketAddr {
    let port = if uid == 0 {
        9464
    } else {
        let offset = u16::try_from(uid % u32::from(USER_PORTS.1)).unwrap_or(0);
        USER_PORTS.0 + offset
    };
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Binds the exporter's listener.
///
/// # Errors
/// When the address cannot be bound (in use, not local, no permission).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves scrapes on `listener` until the process ends; each scrape asks the runtime through
/// `requests`. With a `web` config, connections are TLS and/or requests need basic auth.
pub async fn serve(
    listener: TcpListener,
    requests: mpsc::UnboundedSender<Request>,
    web: Option<Arc<WebConfig>>,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // out of fds, usually: wait instead of spinning on the error
                tracing::warn!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let requests = requests.clone();
        let web = web.clone();
        tokio::spawn(async move {
            match web.as_ref().and_then(|w| w.tls().cloned()) {
                Some(tls) => {
                    // the handshake has the same bound as the request header
                    match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, requests, web).await,
                        Ok(Err(e)) => tracing::debug!("metrics: TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!("metrics: TLS handshake timed out"),
                    }
                }
                None => serve_connection(stream, requests, web).await,
            }
        });
    }
}

/// How long a client may take to send a request's headers (and a TLS handshake).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

async fn serve_connection<S>(
    stream: S,
    requests: mpsc::UnboundedSender<Request>,
    web: Option<Arc<WebConfig>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let requests = requests.clone();
        let web = web.clone();
        async move {
            if let Some(web) = &web {
                let header = req.headers().get(hyper::header::AUTHORIZATION);
                if !web
                    .authorised(header.map(hyper::header::HeaderValue::as_bytes))
                    .await
                {
                    return Ok(unauthorised());
                }
            }
            answer(req, requests).await
        }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!("metrics: connection ended: {e}");
    }
}

/// `401` with the challenge that makes clients send basic auth.
fn unauthorised() -> hyper::Response<Full<Bytes>> {
    let mut resp = hyper::Response::new(Full::new(Bytes::from_static(b"Unauthorized\n")));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = resp.headers_mut();
    headers.insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Basic realm=\"turbo-daemon\""),
    );
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    requests: mpsc::UnboundedSender<Request>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
            resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        resp
    };
    let text = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            text,
            "only GET\n".into(),
        ));
    }
    match req.uri().path() {
        "/metrics" => {}
        "/" => {
            return Ok(reply(
                StatusCode::OK,
                text,
                "turbo-daemon: metrics are at /metrics\n".into(),
            ));
        }
        _ => return Ok(reply(StatusCode::NOT_FOUND, text, "not found\n".into())),
    }
    let asked_at = std::time::Instant::now();
    // the runtime answers every scrape, so a failure is the channel's: it is shutting down
    let Ok(snapshot) = crate::dbus::ask(&requests, Request::Metrics).await else {
        return Ok(reply(
            StatusCode::SERVICE_UNAVAILABLE,
            text,
            "the daemon is shutting down\n".into(),
        ));
    };
    let measured_at = std::time::Instant::now();
    let apps = snapshot.apps.len();
    // rendering thousands of series takes tens of milliseconds: not on the daemon's loop thread
    let Ok(text) = tokio::task::spawn_blocking(move || render(&snapshot)).await else {
        return Ok(reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            text,
            "rendering the metrics failed\n".into(),
        ));
    };
    tracing::debug!(
        apps,
        bytes = text.len(),
        "metrics: scrape measured in {:?}, rendered in {:?}",
        measured_at - asked_at,
        measured_at.elapsed()
    );
    Ok(reply(StatusCode::OK, CONTENT_TYPE, text))
}

/// The exposition text of one snapshot.
#[must_use]
pub fn render(s: &MetricsSnapshot) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&recorder, || {
        describe();
        gauge!("turbo_build_info", "version" => s.version).set(1.0);
        gauge!("turbo_event_source_info", "source" => s.event_source).set(1.0);
        counter!("turbo_events_lost_total", "source" => s.event_source).absolute(s.events_lost);
        for app in &s.apps {
            record_app(app);
        }
        record_logs(s);
        for (app, event, o) in &s.notifications {
            for (outcome, n) in [
                ("sent", o.sent),
                ("failed", o.failed),
                ("dropped", o.dropped),
            ] {
                let labels = vec![
                    Label::new("app", app.clone()),
                    Label::new("event", event.as_str()),
                    Label::new("outcome", outcome),
                ];
                counter!("turbo_notifications_total", labels).absolute(n);
            }
        }
        if let Some(p) = &s.daemon {
            gauge!("process_resident_memory_bytes").set(p.resident_bytes as f64);
            gauge!("process_virtual_memory_bytes").set(p.virtual_bytes as f64);
            gauge!("process_virtual_memory_max_bytes").set(p.virtual_max_bytes as f64);
            gauge!("process_open_fds").set(p.open_fds as f64);
            gauge!("process_max_fds").set(p.max_fds as f64);
            gauge!("process_start_time_seconds").set(p.start_time_seconds);
            gauge!("process_threads").set(p.threads as f64);
        }
    });
    let mut out = recorder.handle().render();
    runq_histogram(&mut out, &s.apps);
    // the fractional counters (see the module docs)
    let mut cpu_rows = Vec::new();
    for app in &s.apps {
        if let Some((user, system)) = app.cpu_seconds {
            for (mode, v) in [("user", user), ("system", system)] {
                let mut labels = vec![
                    ("app", app.name.clone()),
                    ("app_instance", app.instance.to_string()),
                ];
                labels.extend(app.group.clone().map(|g| ("group", g)));
                labels.push(("mode", mode.to_owned()));
                cpu_rows.push((labels, v));
            }
        }
    }
    float_counter(
        &mut out,
        "turbo_app_cpu_seconds_total",
        "CPU time used by the app's whole process tree, by mode: from its cgroup when it has one \
         (every process that ran in it), else the live processes and the children they reaped \
         (resets when the app's main process changes)",
        &cpu_rows,
    );
    let throttled: Vec<_> = s
        .apps
        .iter()
        .filter_map(|app| {
            let ns = app.cgroup.as_ref()?.throttled_ns?;
            let labels = vec![
                ("app", app.name.clone()),
                ("app_instance", app.instance.to_string()),
            ];
            Some((labels, ns as f64 / 1e9))
        })
        .collect();
    float_counter(
        &mut out,
        "turbo_app_cpu_throttled_seconds_total",
        "Time the app's processes were held back by its cpu_max (from its cgroup)",
        &throttled,
    );
    if let Some(p) = &s.daemon {
        float_counter(
            &mut out,
            "process_cpu_seconds_total",
            "Total user and system CPU time spent by turbo-daemon in seconds",
            &[(Vec::new(), p.cpu_seconds)],
        );
    }
    out
}

fn record_app(app: &AppMetrics) {
    let mut base = vec![
        Label::new("app", app.name.clone()),
        Label::new("app_instance", app.instance.to_string()),
    ];
    base.extend(app.group.clone().map(|g| Label::new("group", g)));
    let with = |key: &'static str, value: &'static str| {
        let mut labels = base.clone();
        labels.push(Label::new(key, value));
        labels
    };
    let up = app.state == AppState::Online;
    gauge!("turbo_app_up", base.clone()).set(if up { 1.0 } else { 0.0 });
    for state in AppState::ALL {
        let v = if *state == app.state { 1.0 } else { 0.0 };
        gauge!("turbo_app_state", with("state", state.as_str())).set(v);
    }
    for status in turbo_api::Health::ALL {
        let v = if *status == app.health { 1.0 } else { 0.0 };
        gauge!("turbo_app_health_status", with("status", status.as_str())).set(v);
    }
    for (reason, n) in &app.restarts {
        counter!("turbo_app_restarts_total", with("reason", reason)).absolute(*n);
    }
    for (reason, n) in &app.exits {
        counter!("turbo_app_exits_total", with("reason", reason)).absolute(*n);
    }
    counter!("turbo_app_oom_kills_total", base.clone()).absolute(app.oom_kills);
    if let Some(limit) = app.memory_limit_bytes {
        gauge!("turbo_app_memory_limit_bytes", base.clone()).set(limit as f64);
    }
    if let Some(start) = app.start_time_seconds {
        gauge!("turbo_app_start_time_seconds", base.clone()).set(start);
    }
    if let Some(rss) = app.rss_bytes {
        gauge!("turbo_app_memory_bytes", with("type", "rss")).set(rss as f64);
    }
    if let Some(pss) = app.pss_bytes {
        gauge!("turbo_app_memory_bytes", with("type", "pss")).set(pss as f64);
    }
    if let Some(n) = app.processes {
        gauge!("turbo_app_processes", base.clone()).set(f64::from(n));
    }
    if up {
        let suspected = if app.leak.suspected { 1.0 } else { 0.0 };
        gauge!("turbo_app_leak_suspected", base.clone()).set(suspected);
    }
    if let Some(rate) = app.leak.bytes_per_hour {
        gauge!("turbo_app_memory_growth_bytes_per_hour", base.clone()).set(rate);
    }
    if let Some(i) = &app.insight {
        counter!("turbo_app_execs_total", base.clone()).absolute(i.execs);
        counter!("turbo_app_execs_unexpected_total", base.clone()).absolute(i.execs_unexpected);
        counter!("turbo_app_involuntary_switches_total", base.clone()).absolute(i.runq.involuntary);
    }
    if let Some(net) = &app.net {
        let labelled = |key: &'static str, value: String| {
            let mut labels = base.clone();
            labels.push(Label::new(key, value));
            labels
        };
        for addr in &net.listening {
            gauge!("turbo_app_listen_ports", labelled("addr", addr.to_string())).set(1.0);
        }
        counter!(
            "turbo_app_tcp_connections_total",
            with("direction", "connect")
        )
        .absolute(net.connects);
        counter!(
            "turbo_app_tcp_connections_total",
            with("direction", "accept")
        )
        .absolute(net.accepts);
    }
    for (addr, drops) in &app.listen_drops {
        // the socket is the app name's, not an instance's: no instance label
        let mut labels = vec![Label::new("app", app.name.clone())];
        labels.extend(app.group.clone().map(|g| Label::new("group", g)));
        labels.push(Label::new("listen", addr.clone()));
        counter!("turbo_app_accept_queue_drops_total", labels).absolute(*drops);
    }
    if let Some(pct) = app.cpu_max_percent {
        gauge!("turbo_app_cpu_limit_cpus", base.clone()).set(f64::from(pct) / 100.0);
    }
    if let Some(n) = app.pids_max {
        gauge!("turbo_app_pids_limit", base.clone()).set(n as f64);
    }
    let Some(c) = &app.cgroup else { return };
    if let Some(n) = c.throttled_periods {
        counter!("turbo_app_cpu_throttled_periods_total", base.clone()).absolute(n);
    }
    if let Some(n) = c.pids {
        gauge!("turbo_app_pids", base.clone()).set(n as f64);
    }
    if let Some(b) = c.memory_bytes {
        gauge!("turbo_app_memory_bytes", with("type", "cgroup")).set(b as f64);
    }
    if let Some(b) = c.page_cache_bytes {
        gauge!("turbo_app_memory_bytes", with("type", "page_cache")).set(b as f64);
    }
    for (event, n) in &c.memory_events {
        counter!("turbo_app_memory_events_total", with("event", event)).absolute(*n);
    }
}

/// `turbo_app_runqueue_delay_seconds`, a histogram written from the kernel's cumulative log2
/// buckets (the `metrics` facade only records single samples): bucket `i` ends at `2^i` µs.
fn runq_histogram(out: &mut String, apps: &[AppMetrics]) {
    const NAME: &str = "turbo_app_runqueue_delay_seconds";
    let rows: Vec<(&AppMetrics, &turbo_common::RunqStats)> = apps
        .iter()
        .filter_map(|a| Some((a, &a.insight.as_ref()?.runq)))
        .collect();
    if rows.is_empty() {
        return;
    }
    formatting::write_help_line(
        out,
        NAME,
        None,
        None,
        "Time the app's threads waited on a CPU run queue before running (eBPF; the kernel's \
         log2 buckets), since the app was added",
    );
    formatting::write_type_line(out, NAME, None, None, "histogram");
    let global = indexmap::IndexMap::new();
    for (app, runq) in rows {
        let key = metrics::Key::from_parts(
            NAME,
            vec![
                Label::new("app", app.name.clone()),
                Label::new("app_instance", app.instance.to_string()),
            ],
        );
        let set = LabelSet::from_key_and_global(&key, &global);
        let mut cumulative = 0u64;
        // the last bucket has no upper bound: it only counts in +Inf
        for (i, n) in runq.buckets[..turbo_common::RUNQ_BUCKETS - 1]
            .iter()
            .enumerate()
        {
            cumulative += n;
            let le = (1u64 << i) as f64 / 1e6;
            formatting::write_metric_line(
                out,
                NAME,
                Some("bucket"),
                &set,
                Some(("le", le)),
                cumulative,
                None,
            );
        }
        formatting::write_metric_line(
            out,
            NAME,
            Some("bucket"),
            &set,
            Some(("le", "+Inf")),
            runq.count,
            None,
        );
        let sum = runq.sum_ns as f64 / 1e9;
        formatting::write_metric_line::<&str, f64>(out, NAME, Some("sum"), &set, None, sum, None);
        formatting::write_metric_line::<&str, u64>(
            out,
            NAME,
            Some("count"),
            &set,
            None,
            runq.count,
            None,
        );
    }
}

/// Log volume of the managed apps (the keeper also counts files of deleted apps: left out).
fn record_logs(s: &MetricsSnapshot) {
    for c in s
        .logs
        .iter()
        .filter(|c| s.apps.iter().any(|a| a.name == c.app))
    {
        let labels = vec![
            Label::new("app", c.app.clone()),
            Label::new("stream", c.stream.as_str()),
        ];
        counter!("turbo_log_bytes_total", labels.clone()).absolute(c.written);
        counter!("turbo_log_dropped_bytes_total", labels.clone()).absolute(c.dropped);
        for f in &c.forwarded {
            let mut labels = labels.clone();
            labels.push(Label::new("to", f.to.as_str()));
            counter!("turbo_log_forwarded_total", labels.clone()).absolute(f.sent);
            counter!("turbo_log_forward_dropped_total", labels).absolute(f.dropped);
        }
    }
}

/// `# HELP` of every metric (the `metrics` way: descriptions are registered with the recorder).
fn describe() {
    describe_gauge!(
        "turbo_build_info",
        "A metric with a constant '1' value labelled by the turbo-daemon version"
    );
    describe_gauge!(
        "turbo_event_source_info",
        "Which source reports process events: 'ebpf' or 'procfs' (value 1)"
    );
    describe_counter!(
        "turbo_events_lost_total",
        "Process events the kernel dropped because the eBPF ring buffer was full"
    );
    describe_gauge!("turbo_app_up", "1 when the app is online, else 0");
    describe_gauge!(
        "turbo_app_state",
        "The app's lifecycle state: 1 for the current state, 0 for the others"
    );
    describe_gauge!(
        "turbo_app_health_status",
        "The app's health-check status: 1 for the current status ('none' when no check is configured)"
    );
    describe_counter!(
        "turbo_app_restarts_total",
        "Restarts of the app since the daemon started, by reason"
    );
    describe_counter!(
        "turbo_app_exits_total",
        "Exits of the app nobody asked for (crash records) since the daemon started, by reason"
    );
    describe_counter!(
        "turbo_app_oom_kills_total",
        "Times the kernel OOM killer killed the app's main process since the daemon started"
    );
    describe_gauge!(
        "turbo_app_memory_bytes",
        "Memory of the app's whole process tree: type 'rss' (resident, shared pages counted per process) or 'pss' (proportional share, where readable); with a memory cgroup also 'cgroup' (everything charged to it) and 'page_cache' (the file-backed part of that)"
    );
    describe_gauge!(
        "turbo_app_cpu_limit_cpus",
        "The app's cpu_max in CPUs (only for apps that have one)"
    );
    describe_counter!(
        "turbo_app_cpu_throttled_periods_total",
        "Scheduler periods in which cpu_max held the app back (from its cgroup)"
    );
    describe_gauge!(
        "turbo_app_pids",
        "Processes and threads in the app's cgroup (only for apps that have a cgroup with the pids controller)"
    );
    describe_gauge!(
        "turbo_app_pids_limit",
        "The app's pids_max (only for apps that have one)"
    );
    describe_counter!(
        "turbo_app_memory_events_total",
        "Memory events of the app's memory cgroup: high (throttled at memory_high, v2), max (at the limit), oom, oom_kill"
    );
    describe_gauge!(
        "turbo_app_memory_limit_bytes",
        "The app's max_memory (only for apps that have one)"
    );
    describe_gauge!(
        "turbo_app_start_time_seconds",
        "Start time of the app's current main process since the Unix epoch"
    );
    describe_gauge!(
        "turbo_app_processes",
        "Processes in the app's tree (the main process and its known descendants)"
    );
    describe_gauge!(
        "turbo_app_leak_suspected",
        "1 when the app's memory grows in a sustained way (robust slope over the leak window)"
    );
    describe_counter!(
        "turbo_log_bytes_total",
        "Bytes written to the app's log file (records, with timestamps), by stream 'out' or 'err'; resets when the log keeper restarts"
    );
    describe_counter!(
        "turbo_notifications_total",
        "on_crash and on_state notifications by event and outcome: sent, failed (every attempt), \
         dropped (over the app's rate_limit)"
    );
    describe_counter!(
        "turbo_log_dropped_bytes_total",
        "Bytes of the app's log records that could not be written (full disk, I/O error) and were dropped, by stream"
    );
    describe_counter!(
        "turbo_log_forwarded_total",
        "Records of the app sent to journald or syslog ('to'), by stream; resets when the log keeper restarts"
    );
    describe_counter!(
        "turbo_log_forward_dropped_total",
        "Records of the app that journald or syslog ('to') did not take in time (receiver absent, stuck or slower than the app) and were dropped, by stream"
    );
    describe_gauge!(
        "turbo_app_memory_growth_bytes_per_hour",
        "Robust (Theil-Sen) growth rate of the app's resident memory over the leak window"
    );
    describe_counter!(
        "turbo_app_execs_total",
        "Execs inside the app's process tree seen by eBPF since the app was added (its own start included)"
    );
    describe_counter!(
        "turbo_app_execs_unexpected_total",
        "Execs inside the app's tree of a program its exec_allow list does not allow"
    );
    describe_counter!(
        "turbo_app_involuntary_switches_total",
        "Times the app's threads were taken off a CPU while still runnable (eBPF), since the app was added"
    );
    describe_gauge!(
        "turbo_app_listen_ports",
        "1 for each TCP address a process of the app listens on (eBPF), by addr"
    );
    describe_counter!(
        "turbo_app_tcp_connections_total",
        "TCP connections of the app since it was added (eBPF): connect = SYNs it sent, accept = connections established on ports it listens on"
    );
    describe_counter!(
        "turbo_app_accept_queue_drops_total",
        "Connection attempts the kernel dropped on a listen: socket the daemon holds for the app, almost all because the accept queue was full (the socket's sk_drops)"
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        "Resident memory size of turbo-daemon in bytes"
    );
    describe_gauge!(
        "process_virtual_memory_bytes",
        "Virtual memory size of turbo-daemon in bytes"
    );
    describe_gauge!(
        "process_virtual_memory_max_bytes",
        "Maximum amount of virtual memory available to turbo-daemon in bytes"
    );
    describe_gauge!(
        "process_open_fds",
        "Number of open file descriptors of turbo-daemon"
    );
    describe_gauge!(
        "process_max_fds",
        "Maximum number of open file descriptors of turbo-daemon"
    );
    describe_gauge!(
        "process_start_time_seconds",
        "Start time of turbo-daemon since the Unix epoch in seconds"
    );
    describe_gauge!("process_threads", "Number of OS threads of turbo-daemon");
}

/// Appends one counter family with fractional values, formatted by the exporter crate.
fn float_counter(
    out: &mut String,
    name: &str,
    help: &str,
    rows: &[(Vec<(&'static str, String)>, f64)],
) {
    if rows.is_empty() {
        return;
    }
    formatting::write_help_line(out, name, None, None, help);
    formatting::write_type_line(out, name, None, None, "counter");
    let global = indexmap::IndexMap::new();
    for (labels, value) in rows {
        let key = metrics::Key::from_parts(
            name.to_owned(),
            labels
                .iter()
                .map(|(k, v)| Label::new(*k, v.clone()))
                .collect::<Vec<_>>(),
        );
        let set = LabelSet::from_key_and_global(&key, &global);
        formatting::write_metric_line::<&str, f64>(out, name, None, &set, None, *value, None);
    }
}

/// The names of the metric families in an exposition text (for tests and docs checks).
#[must_use]
pub fn family_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Whether the exporter serves, and where; or why not. `turbo info`, `turbo status` and the
/// Manager's `MetricsAddress`/`MetricsOffReason` properties show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exporter {
    /// Serving on this address.
    Serving(SocketAddr),
    /// Turned off (`--metrics-listen off`).
    Off,
    /// Asked for, but the address could not be bound: why.
    BindFailed(String),
}

impl Exporter {
    /// The address it serves on.
    #[must_use]
    pub fn address(&self) -> Option<String> {
        match self {
            Self::Serving(addr) => Some(addr.to_string()),
            Self::Off | Self::BindFailed(_) => None,
        }
    }

    /// Why it is off, in one line.
    #[must_use]
    pub fn off_reason(&self) -> Option<String> {
        match self {
            Self::Serving(_) => None,
            Self::Off => Some("--metrics-listen off".into()),
            Self::BindFailed(why) => Some(why.clone()),
        }
    }
}

/// A one-line description of where the exporter listens and how it is protected, for the
/// daemon log.
#[must_use]
pub fn describe_listen(addr: &SocketAddr, web: Option<&WebConfig>) -> String {
    let scheme = if web.is_some_and(|w| w.tls().is_some()) {
        "https"
    } else {
        "http"
    };
    let mut s = format!("metrics: serving Prometheus metrics on {scheme}://{addr}/metrics");
    if let Some(w) = web {
        let _ = write!(s, " with {} ({})", w.describe(), w.path.display());
    }
    if !addr.ip().is_loopback() {
        let _ = write!(
            s,
            " (not loopback: reachable from the network; metrics only, no control)"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn every_user_gets_its_own_default_port() {
        assert_eq!(default_listen(0).to_string(), DEFAULT_LISTEN);
        assert_eq!(default_listen(1000).to_string(), "127.0.0.1:11000");
        assert_eq!(default_listen(1001).to_string(), "127.0.0.1:11001");
        assert_eq!(default_listen(65534).port(), 10_000 + 65534 % 22_768);
        assert!((10_000..32_768).contains(&default_listen(u32::MAX).port()));
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
        let text = render(&snapshot);
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
    }
}
