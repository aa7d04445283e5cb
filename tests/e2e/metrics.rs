//! The resource monitor and the Prometheus exporter through the real daemon: CPU and memory of
//! whole process trees (eBPF and procfs), leak detection in status, D-Bus and metrics, the
//! exposition checked by `promtool`, the alert rules' unit tests, the Grafana dashboard's
//! queries against what the exporter really exposes, and a real Prometheus scraping the daemon.
//!
//! `promtool` and `prometheus` come from the Debian package `prometheus` (`cargo xtask setup`
//! installs it); these tests fail, not skip, without them.

use std::{
    collections::BTreeSet,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use turbo_tests::{TestDaemon, is_root, wait_for};

/// The repository root (`tests/..`).
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// A command from the `prometheus` package, or a loud failure saying how to get it.
fn prometheus_tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: it comes with the Debian package `prometheus` \
                 (`cargo xtask setup` installs it, or `apt-get install prometheus`)"
            )
        })
}

/// A loopback port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind :0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A daemon whose exporter listens on a free loopback port, with `env` on top; returns the
/// exporter's `host:port`.
pub(crate) fn daemon_with_metrics(ebpf: &str, env: &[(&str, &str)]) -> (TestDaemon, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut all = vec![("TURBO_METRICS_LISTEN", addr.as_str())];
    all.extend_from_slice(env);
    let mut d = TestDaemon::spawn_with_env(ebpf, &all);
    d.wait_answering();
    (d, addr)
}

/// `GET path` over HTTP/1.0 (so the answer is never chunked); status, headers and body.
fn http_get(addr: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read answer");
    let text = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, head.to_owned(), body.to_owned())
}

/// One scrape of the exporter.
pub(crate) fn scrape(addr: &str) -> String {
    let (status, _, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the series `name{labels…}` (labels given must match, others are ignored).
pub(crate) fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, v) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
        if n != name {
            return None;
        }
        let have = rest.trim_end_matches('}');
        labels
            .iter()
            .all(|(k, v)| have.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
            .then(|| v.parse().ok())?
    })
}

/// Metric family names (`# TYPE` lines) of an exposition; a histogram also gives the names of
/// its series (`_bucket`, `_sum`, `_count`), which queries use.
fn families(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for l in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut words = l.split_whitespace();
        let (Some(name), kind) = (words.next(), words.next()) else {
            continue;
        };
        if kind == Some("histogram") {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
        names.insert(name.to_owned());
    }
    names
}

/// Label names used by the samples of an exposition.
fn label_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| Some(l.split_once('{')?.1.rsplit_once('}')?.0.to_owned()))
        .flat_map(|labels| {
            // values in these tests hold no commas or equals signs
            labels
                .split(',')
                .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Runs `promtool` with `args` in `dir`; panics with its output unless it succeeds.
pub(crate) fn promtool(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(prometheus_tool("promtool"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("feed promtool");
    }
    drop(input);
    let out = child.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{said}");
    said
}

/// The metric names an expression (PromQL or a Grafana `label_values(...)`) refers to: every
/// identifier starting with `turbo_` or `process_`.
fn metric_names_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts_word && (expr[i..].starts_with("turbo_") || expr[i..].starts_with("process_")) {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(expr.len(), |e| i + e);
            names.insert(expr[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// Every query string of the dashboard: panel target `expr`s and template variable queries.
fn dashboard_queries(dash: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                        ("query", Value::String(s)) if s.contains('(') => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dash, &mut out);
    out
}

pub(crate) fn load_dashboard() -> Value {
    let path = repo().join("deploy/grafana/turbo-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The Python interpreter itself (not a wrapper such as a pyenv shim, whose own short-lived
/// processes would blur the figures of an app's tree).
fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 (cargo xtask setup installs it)");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// An executable Python script in the daemon's home (`time` imported).
fn python_app(d: &TestDaemon, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = d.home().join(name);
    std::fs::write(&path, format!("#!{}\nimport time\n{body}", python())).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A shell app whose main process at once starts a child that holds 20 MiB and burns CPU, and
/// a sleeping one: a tree of 3 (forked before the event source may have watched the shell).
fn start_burner(d: &TestDaemon, name: &str) {
    let script = d.script(
        &format!("{name}.sh"),
        &format!(
            "{} -c 'b = b\"x\" * (20 << 20)\nwhile 1: pass' &\nsleep 1000 &\nwait",
            python()
        ),
    );
    d.turbo_ok(&["start", script.to_str().unwrap(), "--name", name]);
}

/// The tree of a CPU-burning app is measured as a whole: CPU of a child, memory summed over
/// three processes, PSS in describe, and the same in the metrics.
fn tree_usage_is_summed(ebpf: &str) {
    let (d, addr) = daemon_with_metrics(ebpf, &[("TURBO_CPU_WINDOW", "2s")]);
    start_burner(&d, "burn");
    let app = d.wait_app("burn", "the burner to run", |a| a["state"] == "online");
    let main_pid = app["pid"].as_u64().unwrap();
    let main_rss = std::fs::read_to_string(format!("/proc/{main_pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .expect("main process statm")
        * 4096;
    // python needs a moment to load and fill its 20 MiB after its fork shows up
    let text = wait_for(
        "the three processes of the tree in the metrics, python loaded",
        Duration::from_secs(15),
        || {
            let text = scrape(&addr);
            let rss = value(
                &text,
                "turbo_app_memory_bytes",
                &[("app", "burn"), ("type", "rss")],
            )?;
            (value(&text, "turbo_app_processes", &[("app", "burn")]) == Some(3.0)
                && rss > (main_rss + (20 << 20)) as f64)
                .then_some(text)
        },
    );
    assert!(
        value(
            &text,
            "turbo_app_memory_bytes",
            &[("app", "burn"), ("type", "pss")]
        )
        .unwrap()
            > 0.0
    );
    // the CPU is the child's: the shell itself only waits
    let busy = wait_for(
        "CPU of the child in the app's figure",
        Duration::from_secs(10),
        || {
            let app = d.app("burn");
            (app["cpu_percent"].as_f64()? > 20.0).then_some(app)
        },
    );
    assert!(
        busy["memory_bytes"].as_u64().unwrap() > main_rss + (20 << 20),
        "the tree, not the shell alone ({main_rss} B): {busy}"
    );
    let described = d.json(&["describe", "burn"]);
    assert!(
        described["status"]["memory_pss_bytes"].as_u64() > Some(0),
        "{described}"
    );
    let user = |text: &str| {
        value(
            text,
            "turbo_app_cpu_seconds_total",
            &[("app", "burn"), ("mode", "user")],
        )
        .unwrap()
    };
    let first = user(&scrape(&addr));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(user(&scrape(&addr)) > first, "the CPU counter moves");
    d.turbo_ok(&["delete", "burn"]);
}

#[test]
fn tree_cpu_and_memory_with_ebpf_or_its_fallback() {
    tree_usage_is_summed("auto");
}

#[test]
fn tree_cpu_and_memory_with_the_procfs_source() {
    tree_usage_is_summed("off");
}

/// The metric set of DESIGN.md §8 (less `turbo_log_bytes_total`, see docs/metrics.md), counters
/// by reason that move, bounded labels, and a clean `promtool check metrics`.
#[test]
fn exporter_serves_the_metric_set_and_promtool_accepts_it() {
    let (d, addr) = daemon_with_metrics("auto", &[]);
    let info = d.json(&["info"]);
    assert_eq!(info["metrics_address"], addr.as_str(), "{info}");
    assert_eq!(
        info["metrics_url"],
        format!("http://{addr}/metrics"),
        "{info}"
    );
    assert_eq!(info["metrics_off_reason"], "", "{info}");
    assert!(
        d.turbo_ok(&["info"])
            .contains(&format!("http://{addr}/metrics")),
        "turbo info shows the exporter's address"
    );
    d.turbo_ok(&[
        "start",
        "sleep",
        "--name",
        "capped",
        "--max-memory",
        "100M",
        "--",
        "1000",
    ]);
    d.turbo_ok(&["start", "sleep", "--name", "sleepy", "--", "1000"]);
    d.kill9_and_wait_restart("capped");
    d.turbo_ok(&["restart", "sleepy"]);
    let text = scrape(&addr);
    let have = families(&text);
    for name in [
        "turbo_build_info",
        "turbo_app_up",
        "turbo_app_state",
        "turbo_app_restarts_total",
        "turbo_app_exits_total",
        "turbo_app_oom_kills_total",
        "turbo_app_cpu_seconds_total",
        "turbo_app_memory_bytes",
        "turbo_app_memory_limit_bytes",
        "turbo_app_start_time_seconds",
        "turbo_app_health_status",
        "turbo_app_processes",
        "turbo_app_leak_suspected",
        "turbo_event_source_info",
        "turbo_events_lost_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_virtual_memory_max_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(have.contains(name), "missing {name} in:\n{text}");
    }
    let capped = [("app", "capped")];
    let of =
        |name: &str, reason: &str| value(&text, name, &[("app", "capped"), ("reason", reason)]);
    assert_eq!(of("turbo_app_restarts_total", "crash"), Some(1.0), "{text}");
    assert_eq!(of("turbo_app_restarts_total", "oom_kill"), Some(0.0));
    assert_eq!(of("turbo_app_exits_total", "signal"), Some(1.0));
    assert_eq!(
        value(
            &text,
            "turbo_app_restarts_total",
            &[("app", "sleepy"), ("reason", "manual")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&text, "turbo_app_up", &capped), Some(1.0));
    assert_eq!(
        value(
            &text,
            "turbo_app_state",
            &[("app", "capped"), ("state", "online")]
        ),
        Some(1.0)
    );
    let limit = d.app("capped")["memory_limit_bytes"].as_f64().unwrap();
    assert_eq!(
        value(&text, "turbo_app_memory_limit_bytes", &capped),
        Some(limit)
    );
    assert!(value(&text, "turbo_app_memory_limit_bytes", &[("app", "sleepy")]).is_none());
    let started = value(&text, "turbo_app_start_time_seconds", &capped).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - 60.0..=now + 1.0).contains(&started),
        "{started} vs {now}"
    );
    let labels = label_names(&text);
    let allowed: BTreeSet<String> = [
        "app",
        "app_instance",
        "reason",
        "state",
        "status",
        "type",
        "mode",
        "source",
        "version",
        "stream",
        // the bucket bounds of the run-queue histogram (24 fixed values)
        "le",
        // connect / accept
        "direction",
        // the addresses an app listens on, and the `listen:` ones of its turbo.yml: a handful
        // per app, never its peers
        "addr",
        "listen",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert!(labels.is_subset(&allowed), "unexpected labels {labels:?}");
    let lint = promtool(&repo(), &["check", "metrics"], Some(&text));
    assert!(lint.trim().is_empty(), "promtool lint:\n{lint}\n{text}");

    // the HTTP side: content type, other paths
    let (status, head, _) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert_eq!(http_get(&addr, "/nope").0, 404);

    // a deleted app leaves the next scrape: the exporter keeps nothing
    d.turbo_ok(&["delete", "sleepy"]);
    assert!(value(&scrape(&addr), "turbo_app_up", &[("app", "sleepy")]).is_none());
}

#[test]
fn exporter_can_be_turned_off_and_a_busy_port_does_not_stop_the_daemon() {
    let mut d = TestDaemon::spawn_with_env("off", &[("TURBO_METRICS_LISTEN", "off")]);
    d.wait_answering();
    assert!(
        d.daemon_log().contains("exporter off"),
        "{}",
        d.daemon_log()
    );
    d.turbo_ok(&["start", "sleep", "--name", "still", "--", "1000"]);
    let info = d.json(&["info"]);
    assert_eq!(info["metrics_address"], "", "{info}");
    assert_eq!(info["metrics_off_reason"], "--metrics-listen off", "{info}");
    assert!(
        d.turbo_ok(&["info"]).contains("off — --metrics-listen off"),
        "turbo info says it is off and why"
    );
    let status = d.turbo(&["status"]);
    assert!(
        !String::from_utf8_lossy(&status.stderr).contains("warning"),
        "off on purpose is not worth a warning"
    );

    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().unwrap().to_string();
    let mut d = TestDaemon::spawn_with_env("off", &[("TURBO_METRICS_LISTEN", addr.as_str())]);
    d.wait_answering();
    d.turbo_ok(&["start", "sleep", "--name", "still", "--", "1000"]);
    assert!(
        d.daemon_log().contains(&format!("cannot listen on {addr}")),
        "{}",
        d.daemon_log()
    );
    // the failure is visible where users look, not only in daemon.log
    let info = d.json(&["info"]);
    let why = info["metrics_off_reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        why.starts_with(&format!("cannot listen on {addr}: ")),
        "{info}"
    );
    assert_eq!(info["metrics_address"], "", "{info}");
    let status = d.turbo(&["status"]);
    assert!(status.status.success());
    assert_eq!(
        String::from_utf8_lossy(&status.stderr).trim(),
        format!("warning: the metrics exporter is off: {why}"),
        "one warning line"
    );
    let property = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let conn = d.connect().await;
            let m = turbo_api::ManagerProxy::new(&conn).await.unwrap();
            m.metrics_off_reason().await.unwrap()
        });
    assert_eq!(property, why, "the MetricsOffReason D-Bus property");
    let bad = Command::new(turbo_tests::bin_dir().join("turbo-daemon"))
        .args(["--metrics-listen", "nowhere"])
        .env("TURBO_HOME", d.home())
        .output()
        .expect("run turbo-daemon");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("`off`"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// A process that allocates steadily is flagged; one that allocated once and plateaus is not;
/// the verdict is in `status --json`, on D-Bus and in the metrics.
#[test]
fn leak_is_flagged_in_status_dbus_and_metrics() {
    let (d, addr) = daemon_with_metrics(
        "auto",
        &[
            ("TURBO_LEAK_WINDOW", "12s"),
            ("TURBO_SAMPLE_INTERVAL", "200ms"),
        ],
    );
    // 1 MiB every 100 ms, written (so resident), up to 200 MiB
    let grower = python_app(
        &d,
        "grower.py",
        "b = []\nwhile True:\n    if len(b) < 200:\n        b.append(b'x' * (1 << 20))\n    \
         time.sleep(0.1)\n",
    );
    // 40 MiB at once, then nothing
    let plateau = python_app(
        &d,
        "plateau.py",
        "b = b'x' * (40 << 20)\ntime.sleep(1000)\n",
    );
    d.turbo_ok(&["start", plateau.to_str().unwrap(), "--name", "plateau"]);
    d.turbo_ok(&["start", grower.to_str().unwrap(), "--name", "grower"]);
    let flagged = wait_for(
        "the grower to be flagged in status --json",
        Duration::from_secs(20),
        || {
            let app = d.app("grower");
            (app["leak_suspected"] == true).then_some(app)
        },
    );
    let rate = flagged["memory_growth_bytes_per_hour"].as_i64().unwrap();
    // 10 MiB/s is 36 GiB/h; sampling and the interpreter's own allocations blur it
    assert!(
        ((10_i64 << 30)..(80_i64 << 30)).contains(&rate),
        "rate {rate} B/h"
    );
    // the sampler feeds the detector (a status call reuses a reading up to 500 ms old rather
    // than adding one), so on a busy machine the plateau's first verdict may come a little later
    let calm = d.wait_app("plateau", "a verdict on the plateau", |a| {
        a["memory_growth_bytes_per_hour"].is_i64()
    });
    assert_eq!(calm["leak_suspected"], false, "{calm}");
    assert!(
        calm["memory_growth_bytes_per_hour"]
            .as_i64()
            .is_some_and(|r| r.abs() < rate / 20),
        "{calm}"
    );

    let text = scrape(&addr);
    assert_eq!(
        value(&text, "turbo_app_leak_suspected", &[("app", "grower")]),
        Some(1.0),
        "{text}"
    );
    assert!(
        value(
            &text,
            "turbo_app_memory_growth_bytes_per_hour",
            &[("app", "grower")]
        )
        .unwrap()
            > (10u64 << 30) as f64
    );
    assert_eq!(
        value(&text, "turbo_app_leak_suspected", &[("app", "plateau")]),
        Some(0.0)
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = d.connect().await;
        let m = turbo_api::ManagerProxy::new(&conn).await.unwrap();
        let apps = m.list_apps().await.unwrap();
        let grower = apps.iter().find(|a| a.name == "grower").unwrap();
        assert!(grower.leak_suspected, "{grower:?}");
        assert!(grower.memory_growth_bytes_per_hour > 10 << 30, "{grower:?}");
        let plateau = apps.iter().find(|a| a.name == "plateau").unwrap();
        assert!(!plateau.leak_suspected, "{plateau:?}");
    });
    d.turbo_ok(&["delete", "grower"]);
}

/// How many alerts `deploy/prometheus/turbo-alerts.yml` defines.
fn shipped_alerts() -> usize {
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/turbo-alerts.yml")).unwrap();
    rules
        .lines()
        .filter(|l| l.trim().starts_with("- alert: "))
        .count()
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let dir = repo().join("deploy/prometheus");
    let checked = promtool(&dir, &["check", "rules", "turbo-alerts.yml"], None);
    let found = format!("SUCCESS: {} rules found", shipped_alerts());
    assert!(checked.contains(&found), "{checked}");
    let tested = promtool(&dir, &["test", "rules", "turbo-alerts.test.yml"], None);
    assert!(tested.contains("SUCCESS"), "{tested}");
    promtool(&dir, &["check", "config", "prometheus.yml"], None);
    // every alert has a unit test
    let rules = std::fs::read_to_string(dir.join("turbo-alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("turbo-alerts.test.yml")).unwrap();
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "{alert} has no unit test"
        );
    }
}

/// Every metric the dashboard and the alert rules query is one the exporter really exposes
/// (scraped from a daemon that has every kind of series: a limit, a leak verdict, a tree).
#[test]
fn dashboard_and_rules_only_use_exported_metrics() {
    let dash = load_dashboard();
    assert!(dash["title"].is_string() && dash["uid"].is_string());
    assert!(dash["schemaVersion"].as_u64() >= Some(30));
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id {p}"
        );
        if p["type"] != "row" {
            assert!(
                p["targets"].as_array().is_some_and(|t| !t.is_empty()),
                "panel without queries: {p}"
            );
        }
    }
    let (d, addr) = daemon_with_metrics(
        "auto",
        &[
            ("TURBO_LEAK_WINDOW", "4s"),
            ("TURBO_SAMPLE_INTERVAL", "100ms"),
        ],
    );
    d.turbo_ok(&[
        "start",
        "sleep",
        "--name",
        "capped",
        "--max-memory",
        "100M",
        "--",
        "1000",
    ]);
    // the accept-queue family needs a `listen:` socket held by the daemon
    let held = d.config(
        "held",
        &format!(
            "apps:\n  - name: held\n    cmd: [sleep, '1000']\n    listen: 127.0.0.1:{}\n",
            free_port()
        ),
    );
    d.turbo_ok(&["start", held.to_str().unwrap()]);
    // the cgroup families need an app with cgroup limits, which needs root (CI is)
    if is_root() {
        let yml = d.config(
            "limited",
            "apps:\n  - name: limited\n    cmd: [sleep, '1000']\n    cpu_max: 50%\n    \
             pids_max: 50\n    memory_high: 64mb\n",
        );
        d.turbo_ok(&["start", yml.to_str().unwrap()]);
    } else {
        eprintln!("\n*** not root: the cgroup metric families are not checked ***\n");
    }
    let text = wait_for("a known growth rate", Duration::from_secs(10), || {
        let text = scrape(&addr);
        value(
            &text,
            "turbo_app_memory_growth_bytes_per_hour",
            &[("app", "capped")],
        )
        .map(|_| text)
    });
    let exposed = families(&text);
    let cgroup_only = |n: &String| {
        !is_root()
            && (n.contains("throttled")
                || n.contains("_pids")
                || n.contains("memory_events")
                || n.contains("cpu_limit"))
    };

    let queries = dashboard_queries(&dash);
    assert!(queries.len() >= 15, "{queries:?}");
    // the fleet: a `host` variable from a turbo metric's label, and every query that selects
    // a job selects the host too (the fleet row's queries run in fleet_metrics)
    let vars = dash["templating"]["list"].as_array().expect("variables");
    assert!(
        vars.iter().any(|v| v["name"] == "host"
            && v["definition"]
                .as_str()
                .is_some_and(|q| q.starts_with("label_values(turbo_") && q.ends_with(", host)"))),
        "no host variable: {vars:?}"
    );
    for q in queries.iter().filter(|q| q.contains("$job")) {
        assert!(
            q.contains(r#"host=~"$host""#) || q.ends_with(", host)"),
            "a query ignores the host variable: {q}"
        );
    }
    let mut used = BTreeSet::new();
    for q in &queries {
        let names = metric_names_in(q);
        assert!(!names.is_empty(), "a query without a turbo metric: {q}");
        used.extend(names);
    }
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/turbo-alerts.yml")).unwrap();
    used.extend(metric_names_in(&rules));
    let unknown: Vec<&String> = used
        .iter()
        .filter(|n| !exposed.contains(*n) && !cgroup_only(n))
        .collect();
    assert!(
        unknown.is_empty(),
        "queried but not exposed: {unknown:?}\nexposed: {exposed:?}"
    );
    for wanted in [
        "turbo_app_up",
        "turbo_app_state",
        "turbo_app_restarts_total",
        "turbo_app_cpu_seconds_total",
        "turbo_app_memory_bytes",
        "turbo_app_memory_limit_bytes",
        "turbo_app_oom_kills_total",
        "turbo_app_cpu_throttled_seconds_total",
        "turbo_app_pids",
        "turbo_app_memory_events_total",
    ] {
        assert!(
            used.contains(wanted),
            "the dashboard does not show {wanted}"
        );
    }
}

/// A Prometheus server, killed on drop.
pub(crate) struct Prometheus {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `prometheus` on a free loopback port, scraping `target` every second as job
    /// `turbo`, with the shipped alert rules loaded; waits until it is ready.
    fn start(target: &str) -> Self {
        Self::start_with(target, "1s")
    }

    /// [`Prometheus::start`], scraping every `scrape_interval` (rules evaluated every second).
    fn start_with(target: &str, scrape_interval: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("turbo-prom-")
            .tempdir()
            .unwrap();
        let rules = repo().join("deploy/prometheus/turbo-alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: turbo\n    static_configs:\n      - targets: ['{target}']\n",
            rules.display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let config = dir.path().join("prometheus.yml");
        Self::run(dir, &config)
    }

    /// Starts `prometheus` on a free loopback port with the configuration file `config`, its
    /// data and log in `dir` (removed on drop); waits until it is ready.
    pub(crate) fn run(dir: tempfile::TempDir, config: &Path) -> Self {
        let bin = prometheus_tool("prometheus");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut p = Self { child, addr, dir };
        wait_for("prometheus to be ready", Duration::from_secs(30), || {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", p.log());
            }
            TcpStream::connect(&p.addr)
                .ok()
                .and_then(|_| (http_get(&p.addr, "/-/ready").0 == 200).then_some(()))
        });
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query through the HTTP API; the `data.result` array.
    pub(crate) fn query(&self, promql: &str) -> Vec<Value> {
        let (status, _, body) = http_get(
            &self.addr,
            &format!("/api/v1/query?query={}", encode(promql)),
        );
        let doc: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert!(
            status == 200 && doc["status"] == "success",
            "query {promql} failed: {body}"
        );
        doc["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The single value of an instant query, if it has exactly one series.
    fn scalar(&self, promql: &str) -> Option<f64> {
        match self.query(promql).as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- prometheus log ---\n{}", self.log());
        }
    }
}

/// Percent-encoding of a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A real Prometheus scrapes the daemon every second: it sees the app up, the restart counter
/// move after a `kill -9`, the alert rules loaded, and every dashboard query evaluates.
#[test]
fn prometheus_scrapes_the_daemon_and_sees_a_restart() {
    let (d, addr) = daemon_with_metrics("auto", &[]);
    d.turbo_ok(&["start", "sleep", "--name", "web", "--", "1000"]);
    let prom = Prometheus::start(&addr);
    let up = r#"turbo_app_up{job="turbo",app="web"}"#;
    wait_for("prometheus to see web up", Duration::from_secs(30), || {
        (prom.scalar(up) == Some(1.0)).then_some(())
    });
    let restarts = r#"turbo_app_restarts_total{job="turbo",app="web",reason="crash"}"#;
    assert_eq!(prom.scalar(restarts), Some(0.0));
    d.kill9_and_wait_restart("web");
    wait_for(
        "prometheus to see the restart counter move",
        Duration::from_secs(30),
        || (prom.scalar(restarts) == Some(1.0)).then_some(()),
    );
    wait_for("the restart in increase()", Duration::from_secs(10), || {
        let inc = prom.scalar(&format!("increase({restarts}[1m])"))?;
        (inc > 0.0).then_some(())
    });
    assert_eq!(
        prom.scalar(r#"turbo_app_exits_total{job="turbo",app="web",reason="signal"}"#),
        Some(1.0)
    );
    assert_eq!(prom.scalar(r#"up{job="turbo"}"#), Some(1.0));
    // the shipped rules load and evaluate
    let (_, _, rules) = http_get(&prom.addr, "/api/v1/rules");
    let rules: Value = serde_json::from_str(&rules).unwrap();
    let groups = rules["data"]["groups"].as_array().unwrap();
    assert!(
        groups.iter().any(|g| g["name"] == "turbo"
            && g["rules"].as_array().is_some_and(
                |r| r.len() == shipped_alerts() && r.iter().all(|r| r["health"] != "err")
            )),
        "{rules}"
    );
    // every dashboard query is valid PromQL that this Prometheus evaluates
    for q in dashboard_queries(&load_dashboard()) {
        let promql = q
            .replace("$__rate_interval", "1m")
            .replace("$__range", "1h")
            .replace("$job", ".*")
            .replace("$host", ".*")
            .replace("$app", ".*");
        let promql = match promql.strip_prefix("label_values(") {
            // label_values(<selector>, <label>) is Grafana's: query its selector
            Some(rest) => rest
                .rsplit_once(',')
                .map_or(rest.to_owned(), |(sel, _)| sel.to_owned()),
            None => promql,
        };
        prom.query(&promql);
    }
    // the tree figures reached it too
    assert!(
        prom.scalar(r#"turbo_app_memory_bytes{job="turbo",app="web",type="rss"}"#)
            .is_some_and(|v| v > 0.0)
    );
}

/// A crash loop that starts and ends in `errored` between two scrapes (10 s apart) still
/// alerts: `TurboAppErrored` fires from the first scrape that sees the state, although no
/// scrape saw the exits counter move.
#[test]
fn a_crash_loop_shorter_than_the_scrape_interval_fires_an_alert() {
    let (d, addr) = daemon_with_metrics("auto", &[]);
    let prom = Prometheus::start_with(&addr, "10s");
    wait_for("the first scrape", Duration::from_secs(30), || {
        (prom.scalar(r#"up{job="turbo"}"#) == Some(1.0)).then_some(())
    });
    let yml = d.config(
        "looper",
        "apps:\n  - name: looper\n    cmd: [sh, -c, 'exit 3']\n    restart: { delay: 10ms, max_delay: 20ms, crash_loop: { max: 3, window: 60s } }\n",
    );
    let started = std::time::Instant::now();
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    d.wait_app("looper", "errored after a crash loop", |a| {
        a["state"] == "errored"
    });
    let looped = started.elapsed();
    assert!(
        looped < Duration::from_secs(10),
        "the loop took {looped:?}: not shorter than the scrape interval"
    );
    let firing = r#"ALERTS{alertname="TurboAppErrored",alertstate="firing",app="looper"}"#;
    wait_for("TurboAppErrored to fire", Duration::from_secs(30), || {
        (!prom.query(firing).is_empty()).then_some(())
    });
    // the rate-based rule needs two scrapes that see the counter move: it could not have
    assert!(
        prom.query(r#"ALERTS{alertname="TurboAppCrashLooping",app="looper"}"#)
            .is_empty()
    );
}

/// The numbers of the numbered-lines records in a text log file (`end N` excluded).
fn logged_numbers(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ')?.1.parse().ok())
        .collect()
}

/// Unmounts (lazily: the keeper keeps the files open) when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_log_disk_never_blocks_the_app_and_writing_resumes_when_there_is_room() {
    let (d, addr) = daemon_with_metrics("off", &[]);
    // a 64 KiB file system under the log directory, mounted after the daemon checked it
    let logs = d.home().join("logs");
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
        .arg(&logs)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "cannot mount a 64 KiB tmpfs on {} (the e2e suite runs as root, as in CI): {}",
        logs.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let _mounted = Mounted(logs.clone());
    let config = d.config(
        "full",
        &format!(
            "apps:\n  - name: full\n    cmd: [\"{}\"]\n    env: {{ NUMBERED_LINES_MS: \"1\" }}\n",
            env!("CARGO_BIN_EXE_numbered-lines")
        ),
    );
    d.turbo_ok(&["start", config.to_str().unwrap()]);
    let pid = d.app("full")["pid"].clone();
    let dropped = |text: &str| {
        value(
            text,
            "turbo_log_dropped_bytes_total",
            &[("app", "full"), ("stream", "out")],
        )
        .unwrap_or(0.0)
    };
    let first = wait_for("bytes dropped", Duration::from_secs(20), || {
        Some(dropped(&scrape(&addr))).filter(|&b| b > 0.0)
    });
    // the keeper keeps draining the pipe, so the app writes on and the count keeps growing: a
    // reader that stopped (or an app blocked on a full pipe) would leave it flat
    let mut last = first;
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        let now = dropped(&scrape(&addr));
        assert!(now > last, "dropped bytes stopped growing at {now}");
        last = now;
    }
    let out_log = logs.join("full-out.log");
    let before = *logged_numbers(&out_log)
        .last()
        .expect("lines before the disk filled");
    assert_eq!(
        d.app("full")["pid"],
        pid,
        "the app was never blocked or killed"
    );

    // room again: writing resumes by itself, with what the app writes now
    d.turbo_ok(&["flush", "full"]);
    let after = wait_for("lines after the flush", Duration::from_secs(10), || {
        let n = logged_numbers(&out_log);
        (n.len() > 50).then_some(n)
    });
    assert!(
        after[0] > before,
        "the app kept writing while the disk was full: {before} then {}",
        after[0]
    );
    assert!(
        after.windows(2).all(|w| w[1] == w[0] + 1),
        "whole records again once there is room"
    );
    let text = scrape(&addr);
    assert!(
        value(
            &text,
            "turbo_log_bytes_total",
            &[("app", "full"), ("stream", "out")]
        )
        .is_some_and(|b| b > 0.0),
        "{text}"
    );
    d.turbo_ok(&["stop", "full"]);
}

#[test]
fn instances_are_series_of_their_own_and_a_reload_counts_as_a_manual_restart() {
    let (d, addr) = daemon_with_metrics("off", &[]);
    d.turbo_ok(&[
        "start",
        "sleep",
        "--name",
        "inst",
        "--instances",
        "2",
        "--",
        "1000",
    ]);
    let text = scrape(&addr);
    for k in ["0", "1"] {
        let up = [("app", "inst"), ("app_instance", k)];
        assert_eq!(value(&text, "turbo_app_up", &up), Some(1.0), "{text}");
    }
    // while a reload runs, a replacement shares its instance number: still one series each
    // (the scrape in the middle must lint), and afterwards each instance counts a manual restart
    let reload = std::thread::spawn({
        let home = d.home().to_path_buf();
        let bin = turbo_tests::bin_dir().join("turbo");
        move || {
            Command::new(bin)
                .args(["reload", "inst"])
                .env("TURBO_HOME", home)
                .env_remove("TURBO_BUS_ADDRESS")
                .output()
                .expect("turbo reload")
        }
    });
    wait_for(
        "a replacement next to instance 0",
        Duration::from_secs(10),
        || {
            let zeros = d
                .status()
                .iter()
                .filter(|a| a["name"] == "inst" && a["instance"] == 0)
                .count();
            (zeros == 2).then_some(())
        },
    );
    let text = scrape(&addr);
    let series = text
        .lines()
        .filter(|l| l.starts_with("turbo_app_up{app=\"inst\",app_instance=\"0\"}"))
        .count();
    assert_eq!(series, 1, "{text}");
    promtool(&repo(), &["check", "metrics"], Some(&text));
    let out = reload.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = scrape(&addr);
    for k in ["0", "1"] {
        let manual = [("app", "inst"), ("app_instance", k), ("reason", "manual")];
        assert_eq!(
            value(&text, "turbo_app_restarts_total", &manual),
            Some(1.0),
            "{text}"
        );
    }
}

#[test]
fn health_status_follows_the_check() {
    let (d, addr) = daemon_with_metrics("auto", &[]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let yml = d.config(
        "health-metric",
        &format!(
            "apps:\n  - name: hm\n    cmd: [sleep, '1000']\n    \
             health: {{ tcp: '127.0.0.1:{port}', interval: 200ms, retry_delay: 200ms, retries: 1000 }}\n  \
             - name: plain\n    cmd: [sleep, '1000']\n"
        ),
    );
    d.turbo_ok(&["start", yml.to_str().unwrap(), "--wait"]);
    let health = |text: &str, app: &str, status: &str| {
        value(
            text,
            "turbo_app_health_status",
            &[("app", app), ("status", status)],
        )
    };
    let text = scrape(&addr);
    assert_eq!(health(&text, "hm", "healthy"), Some(1.0), "{text}");
    // one series per app, the current status's: no zeros for the others
    assert_eq!(health(&text, "hm", "unhealthy"), None, "{text}");
    assert_eq!(health(&text, "plain", "none"), Some(1.0));
    drop(listener);
    let text = wait_for(
        "the metric to say unhealthy",
        Duration::from_secs(10),
        || {
            let text = scrape(&addr);
            (health(&text, "hm", "unhealthy") == Some(1.0)).then_some(text)
        },
    );
    // the status moved: the healthy series is gone, not 0
    assert_eq!(health(&text, "hm", "healthy"), None, "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("turbo_app_health_status{app=\"hm\""))
            .count(),
        1,
        "{text}"
    );
}

/// `GET /metrics` with `Accept-Encoding: gzip` as Prometheus sends it: the answer's head and
/// its body, decompressed.
fn scrape_gzip(addr: &str) -> (String, usize, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nAccept-Encoding: gzip\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read answer");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8(raw[..end].to_vec()).expect("utf-8 head");
    let body = &raw[end + 4..];
    let mut text = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("the body is not gzip ({e}): {head}"));
    (head, body.len(), text)
}

/// The series of an exposition (name and labels), without their values, which move between
/// two scrapes.
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_owned()))
        .collect()
}

/// Prometheus asks for gzip: it gets the same series compressed, and a client that does not
/// ask gets plain text.
#[test]
fn a_gzip_scrape_decodes_to_the_plain_answer() {
    let (d, addr) = daemon_with_metrics("auto", &[]);
    for name in ["one", "two"] {
        d.turbo_ok(&["start", "sleep", "--name", name, "--", "1000"]);
    }
    let plain = scrape(&addr);
    let (head, wire, text) = scrape_gzip(&addr);
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("vary: accept-encoding"), "{head}");
    assert!(
        wire * 3 < text.len(),
        "{wire} bytes on the wire for {}",
        text.len()
    );
    assert_eq!(series(&text), series(&plain), "{text}\n---\n{plain}");
    assert!(value(&text, "turbo_app_up", &[("app", "two")]) == Some(1.0));
    let (_, head, _) = http_get(&addr, "/metrics");
    assert!(
        !head.to_ascii_lowercase().contains("content-encoding"),
        "{head}"
    );
}
