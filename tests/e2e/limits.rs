//! cgroup limits through the real binaries (root: CI is): `cpu_max` throttles a CPU burner
//! (measured from its cgroup, throttled time in the metrics) and an apply changes it live,
//! `pids_max` stops a fork bomb without harming the daemon, `memory_high` is written, and a
//! limit this host cannot enforce fails the start, naming it.
//!
//! This machine has the cpu, cpuacct, memory and pids controllers in cgroup v1 only, so these
//! run the v1 path for real; the v2 file protocol is covered by the unit tests of
//! `os::cgroup` against a directory fixture.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;
use turbo_tests::{TestDaemon, is_root, one_line_error, wait_for};

use crate::metrics::{daemon_with_metrics, promtool, repo, scrape, value};

fn skip(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("\n*** SKIPPED {test}: creating cgroups needs root (CI runs as root) ***\n");
    true
}

/// The directory of the app's cgroup in the hierarchy that has `file`, from `describe`.
fn cgroup_with(config: &Value, file: &str) -> PathBuf {
    config["cgroups"]
        .as_array()
        .expect("cgroups in describe")
        .iter()
        .filter_map(|d| d.as_str()?.split_once(' ').map(|(_, p)| PathBuf::from(p)))
        .find(|p| p.join(file).exists())
        .unwrap_or_else(|| panic!("no cgroup of the app has {file}: {config}"))
}

fn read_u64(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn keyed(path: &Path, key: &str) -> u64 {
    let text = std::fs::read_to_string(path).expect("stat file");
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {}: {text}", path.display()))
}

/// The CPU the cgroup used over `window`, in CPUs (v1 `cpuacct.usage`, nanoseconds).
fn cpus_used(acct: &Path, window: Duration) -> f64 {
    let (t0, u0) = (Instant::now(), read_u64(&acct.join("cpuacct.usage")));
    std::thread::sleep(window);
    let (t1, u1) = (Instant::now(), read_u64(&acct.join("cpuacct.usage")));
    (u1 - u0) as f64 / 1e9 / (t1 - t0).as_secs_f64()
}

const BURNER: &str = "    cmd: [sh, -c, 'while :; do :; done']\n";

#[test]
fn cpu_max_throttles_a_cpu_burner_and_an_apply_changes_it_live() {
    if skip("cpu_max_throttles_a_cpu_burner_and_an_apply_changes_it_live") {
        return;
    }
    let (d, addr) = daemon_with_metrics("auto", &[]);
    let yml = |pct: u32| {
        format!("apps:\n  - name: burn\n{BURNER}    cpu_max: {pct}%\n    memory_high: 64mb\n")
    };
    let file = d.config("limits", &yml(20));
    d.turbo_ok(&["start", file.to_str().unwrap()]);
    let pid = d.wait_app("burn", "online", |a| a["state"] == "online")["pid"].clone();

    let config = d.json(&["describe", "burn"])["config"].clone();
    assert_eq!(config["limits"]["cpu_max"], "20%", "{config}");
    assert_eq!(config["limits"]["memory_high"], "64mb", "{config}");
    let cpu = cgroup_with(&config, "cpu.cfs_quota_us");
    let acct = cgroup_with(&config, "cpuacct.usage");
    let memory = cgroup_with(&config, "memory.soft_limit_in_bytes");
    assert_eq!(read_u64(&cpu.join("cpu.cfs_quota_us")), 20_000);
    assert_eq!(read_u64(&cpu.join("cpu.cfs_period_us")), 100_000);
    assert_eq!(
        read_u64(&memory.join("memory.soft_limit_in_bytes")),
        64 << 20
    );
    let text = d.turbo_ok(&["describe", "burn"]);
    assert!(text.contains("cpu_max 20%, memory_high 64mb"), "{text}");

    // the burner would take a whole CPU: it gets at most a fifth (the upper bound is the
    // kernel's doing; the host may be busy, so the lower one is loose)
    let used = cpus_used(&acct, Duration::from_secs(2));
    assert!(
        (0.02..=0.26).contains(&used),
        "cpu_max 20% used {used:.3} CPUs"
    );
    let throttled = keyed(&cpu.join("cpu.stat"), "throttled_time ");
    assert!(throttled > 0, "throttled time in {}", cpu.display());
    let metric = |text: &str| {
        value(
            text,
            "turbo_app_cpu_throttled_seconds_total",
            &[("app", "burn")],
        )
    };
    let first = wait_for(
        "the throttled time in the metrics",
        Duration::from_secs(10),
        || metric(&scrape(&addr)).filter(|v| *v > 0.0),
    );
    std::thread::sleep(Duration::from_millis(500));
    let text = scrape(&addr);
    let later = metric(&text).expect("still exported");
    // the new families pass the exposition linter too
    let lint = promtool(&repo(), &["check", "metrics"], Some(&text));
    assert!(!lint.contains("turbo_app_"), "{lint}");
    for (family, labels) in [
        ("turbo_app_cpu_limit_cpus", vec![("app", "burn")]),
        (
            "turbo_app_cpu_throttled_periods_total",
            vec![("app", "burn")],
        ),
        (
            "turbo_app_memory_bytes",
            vec![("app", "burn"), ("type", "page_cache")],
        ),
        (
            "turbo_app_memory_events_total",
            vec![("app", "burn"), ("event", "max")],
        ),
    ] {
        assert!(
            value(&text, family, &labels).is_some(),
            "{family} {labels:?}:\n{text}"
        );
    }
    assert!(later > first, "throttled time grows: {first} then {later}");
    // and in the status monit draws from
    let st = d.app("burn");
    assert_eq!(st["cpu_max_percent"], 20, "{st}");
    assert!(st["cpu_throttled_ms"].as_u64().unwrap_or(0) > 0, "{st}");
    assert_eq!(st["memory_high_bytes"], 64u64 << 20, "{st}");

    // live: the same process, a new quota
    let applied = d.turbo_ok(&["apply", file.to_str().unwrap(), "--dry-run"]);
    assert!(
        applied.contains("unchanged") || applied.contains("no change"),
        "{applied}"
    );
    std::fs::write(&file, yml(50)).expect("edit turbo.yml");
    let plan = d.turbo_ok(&["apply", file.to_str().unwrap()]);
    assert!(plan.contains("cpu_max") && plan.contains("live"), "{plan}");
    assert_eq!(read_u64(&cpu.join("cpu.cfs_quota_us")), 50_000);
    assert_eq!(d.app("burn")["pid"], pid, "no restart for a live limit");
    let used = cpus_used(&acct, Duration::from_secs(2));
    assert!(used <= 0.56, "cpu_max 50% used {used:.3} CPUs");
    assert_eq!(
        d.json(&["describe", "burn"])["config"]["limits"]["cpu_max"],
        "50%"
    );

    // every limit taken out: a new process without a cgroup, and the old one's removed
    std::fs::write(&file, format!("apps:\n  - name: burn\n{BURNER}")).expect("edit turbo.yml");
    let plan = d.turbo_ok(&["apply", file.to_str().unwrap()]);
    assert!(
        plan.contains("cpu_max") && plan.contains("restart"),
        "{plan}"
    );
    d.wait_app("burn", "a new process", |a| {
        a["state"] == "online" && a["pid"] != pid
    });
    wait_for("the app's cgroups removed", Duration::from_secs(5), || {
        (!cpu.exists() && !memory.exists()).then_some(())
    });
    let config = d.json(&["describe", "burn"])["config"].clone();
    assert_eq!(config["cgroups"], serde_json::json!([]), "{config}");
    assert_eq!(config["limits"], serde_json::json!({}), "{config}");
    d.turbo_ok(&["delete", "burn"]);
}

#[test]
fn pids_max_stops_a_fork_bomb_inside_the_app() {
    if skip("pids_max_stops_a_fork_bomb_inside_the_app") {
        return;
    }
    let d = TestDaemon::start("auto");
    let out = d.home().join("forks.txt");
    // forks until the kernel refuses, then says how far it got (bounded, in case it never does)
    let bomb = format!(
        "import os, time\nn = 0\ntry:\n    while n < 500:\n        if os.fork() == 0:\n            time.sleep(60)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n    open('{}', 'w').write(f'{{n}} {{e.errno}}')\ntime.sleep(60)\n",
        out.display()
    );
    let script = d.home().join("bomb.py");
    std::fs::write(&script, bomb).expect("bomb.py");
    let file = d.config(
        "bomb",
        &format!(
            "apps:\n  - name: bomb\n    cmd: [python3, {}]\n    pids_max: 20\n    autorestart: never\n",
            script.display()
        ),
    );
    d.turbo_ok(&["start", file.to_str().unwrap()]);
    let result = wait_for(
        "the fork bomb stopped by pids_max",
        Duration::from_secs(20),
        || std::fs::read_to_string(&out).ok().filter(|t| !t.is_empty()),
    );
    let (forks, errno) = result.split_once(' ').expect("n errno");
    // python itself counts (one task per thread): at most 19 children
    let forks: u32 = forks.parse().expect("count");
    assert!((1..20).contains(&forks), "{forks} forks under pids_max 20");
    assert_eq!(errno, "11", "EAGAIN");
    let config = d.json(&["describe", "bomb"])["config"].clone();
    let pids = cgroup_with(&config, "pids.max");
    assert_eq!(
        std::fs::read_to_string(pids.join("pids.max"))
            .unwrap()
            .trim(),
        "20"
    );
    assert!(read_u64(&pids.join("pids.current")) <= 20);
    let st = d.app("bomb");
    assert_eq!(st["pids_max"], 20, "{st}");
    let n = st["pids"].as_u64().expect("pids counted from the cgroup");
    assert!((forks as u64..=20).contains(&n), "{st}");
    // the daemon is not in the app's cgroup: it still forks (a start of another app) and answers
    let other = d.config("other", "apps:\n  - name: other\n    cmd: [sleep, '60']\n");
    d.turbo_ok(&["start", other.to_str().unwrap()]);
    d.wait_app("other", "online", |a| a["state"] == "online");
    d.turbo_ok(&["delete", "bomb"]);
    wait_for("the app's cgroup removed", Duration::from_secs(10), || {
        (!pids.exists()).then_some(())
    });
}

/// Whether this host can enforce `io_weight` (v1 blkio with BFQ), which makes a test of a limit
/// it cannot enforce pointless; says so loudly, with where `what` is tested instead.
fn enforces_io_weight(what: &str) -> bool {
    let blkio = Path::new("/sys/fs/cgroup/blkio");
    let enforces = blkio.join("blkio.bfq.weight").exists() || blkio.join("blkio.weight").exists();
    if enforces {
        eprintln!("\n*** SKIPPED: this host enforces io_weight (BFQ); {what} is unit-tested ***\n");
    }
    enforces
}

#[test]
fn a_limit_this_host_cannot_enforce_fails_the_start_naming_it() {
    if skip("a_limit_this_host_cannot_enforce_fails_the_start_naming_it") {
        return;
    }
    if enforces_io_weight("the refusal") {
        return;
    }
    let d = TestDaemon::start("auto");
    let file = d.config(
        "io",
        &format!("apps:\n  - name: io\n{BURNER}    io_weight: 200\n"),
    );
    let out = d.turbo(&["start", file.to_str().unwrap()]);
    let said = format!(
        "{}{}",
        one_line_error(&out),
        String::from_utf8_lossy(&out.stdout)
    );
    let app = d.app("io");
    let text = format!("{said} {app}");
    assert!(text.contains("io_weight") && text.contains("BFQ"), "{text}");
    assert_ne!(app["state"], "online", "{app}");
}

#[test]
fn with_limits_required_false_an_unenforceable_limit_is_left_out_loudly() {
    if skip("with_limits_required_false_an_unenforceable_limit_is_left_out_loudly") {
        return;
    }
    if enforces_io_weight("the leniency") {
        return;
    }
    let d = TestDaemon::start("auto");
    let file = d.config(
        "io",
        "apps:\n  - name: io\n    cmd: [sleep, '1000']\n    io_weight: 200\n    \
         pids_max: 64\n    limits_required: false\n",
    );
    d.turbo_ok(&["start", file.to_str().unwrap()]);
    let app = d.wait_app("io", "online", |a| a["state"] == "online");
    // the limit it can enforce still is
    assert_eq!(app["pids_max"], 64, "{app}");
    let config = &d.json(&["describe", "io"])["config"];
    let cgroups: Vec<&str> = config["cgroups"]
        .as_array()
        .expect("cgroups")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        cgroups
            .iter()
            .any(|l| l.starts_with("unenforced: io_weight") && l.contains("BFQ")),
        "{config}"
    );
    let text = d.turbo_ok(&["describe", "io"]);
    assert!(text.contains("unenforced: io_weight"), "{text}");
    assert!(
        d.daemon_log()
            .contains("limit unenforced (limits_required: false): io_weight"),
        "{}",
        d.daemon_log()
    );
}
