//! The load and fault suite (issue 10) through the real binaries: many apps at once, many
//! concurrent CLI clients, every app crashing at the same moment, an app forking many children
//! that leave its process group, a log flood from 50 apps, and a full disk under the log
//! directory. Each scenario prints what held and what was lost (`-- --nocapture` shows it) and
//! fails on any loss the scenario cannot excuse.
//!
//! Sizes: `TURBO_LOAD_SCALE=ci` (the default, part of `cargo xtask test`) or `full` (the sizes
//! of the issue, e.g. `TURBO_LOAD_SCALE=full cargo test -p turbo-tests --test e2e load:: --
//! --nocapture --test-threads 1`). Nothing here checks a speed: the times printed are for
//! reading, the targets are benchmarks (`cargo xtask bench`).

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use turbo_tests::{TestDaemon, is_root, pid_alive, wait_for};

/// The sizes of one run.
struct Scale {
    name: &'static str,
    /// Apps managed at once.
    apps: usize,
    /// Children the forking app starts.
    children: usize,
    /// Lines each of the 50 flooding apps writes.
    flood_lines: usize,
}

fn scale() -> Scale {
    match std::env::var("TURBO_LOAD_SCALE").as_deref() {
        Ok("full") => Scale {
            name: "full",
            apps: 1000,
            children: 1000,
            flood_lines: 100_000,
        },
        Ok("ci") | Err(std::env::VarError::NotPresent) => Scale {
            name: "ci",
            apps: 200,
            children: 1000,
            flood_lines: 10_000,
        },
        Ok(other) => panic!("TURBO_LOAD_SCALE must be `ci` or `full`, not `{other}`"),
        Err(e) => panic!("TURBO_LOAD_SCALE: {e}"),
    }
}

/// Prints one scenario's verdict line: what held, what was lost.
fn report(scenario: &str, held: &str, lost: &str) {
    println!(
        "load [{}] {scenario}: held: {held}; lost: {lost}",
        scale().name
    );
}

/// A daemon for a load scenario (the event source the machine offers: eBPF as root).
fn daemon() -> TestDaemon {
    TestDaemon::start("auto")
}

/// `turbo status --json` as name -> status object.
fn by_name(d: &TestDaemon) -> std::collections::HashMap<String, Value> {
    d.status()
        .into_iter()
        .map(|a| (a["name"].as_str().unwrap_or_default().to_owned(), a))
        .collect()
}

/// Waits (bounded) until every app of `names` satisfies `pred`; returns the statuses then.
fn wait_all(
    d: &TestDaemon,
    names: &[String],
    what: &str,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> std::collections::HashMap<String, Value> {
    let deadline = Instant::now() + limit;
    loop {
        let all = by_name(d);
        let ok = names
            .iter()
            .filter(|n| all.get(n.as_str()).is_some_and(&pred))
            .count();
        if ok == names.len() {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "after {limit:?}, only {ok} of {} apps were {what}",
            names.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A config of `names`, each running `cmd`, with `extra` (indented YAML) per app.
fn config(d: &TestDaemon, dir: &str, names: &[String], cmd: &str, extra: &str) -> PathBuf {
    use std::fmt::Write as _;
    let mut yml = String::from("apps:\n");
    for n in names {
        let _ = write!(yml, "  - name: {n}\n    cmd: {cmd}\n{extra}");
    }
    d.config(dir, &yml)
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:04}")).collect()
}

fn pid_of(app: &Value) -> u64 {
    app["pid"].as_u64().unwrap_or(0)
}

/// Every app online with a pid; their pids.
fn online_pids(all: &std::collections::HashMap<String, Value>, names: &[String]) -> Vec<u64> {
    names.iter().map(|n| pid_of(&all[n])).collect()
}

#[test]
fn many_apps_at_once() {
    let s = scale();
    let d = daemon();
    let names = names("many", s.apps);
    let yml = config(&d, "many", &names, "[sleep, '1000']", "");
    let t = Instant::now();
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let all = wait_all(&d, &names, "online", Duration::from_secs(120), |a| {
        a["state"] == "online" && pid_of(a) > 0
    });
    let started = t.elapsed();
    let pids = online_pids(&all, &names);
    let distinct: HashSet<u64> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), s.apps, "every app has a process of its own");
    let alive = pids.iter().filter(|&&p| pid_alive(p)).count();
    assert_eq!(alive, s.apps, "every reported pid runs");
    let t = Instant::now();
    let listed = d.status().len();
    let status_took = t.elapsed();
    assert_eq!(listed, s.apps);

    let t = Instant::now();
    d.turbo_ok(&["stop", "all"]);
    let stopped = t.elapsed();
    let all = by_name(&d);
    let not_stopped: Vec<&String> = names
        .iter()
        .filter(|n| all[n.as_str()]["state"] != "stopped")
        .collect();
    assert!(
        not_stopped.is_empty(),
        "`turbo stop all` returned with {} apps not stopped, e.g. {:?}",
        not_stopped.len(),
        &not_stopped[..not_stopped.len().min(3)]
    );
    let left: Vec<u64> = pids.iter().copied().filter(|&p| pid_alive(p)).collect();
    assert!(
        left.is_empty(),
        "{} processes outlived `turbo stop all`",
        left.len()
    );
    report(
        &format!("{} apps at once", s.apps),
        &format!(
            "all online after {:.1}s with distinct live pids, `turbo status --json` listed all \
             in {} ms, `turbo stop all` stopped all in {:.1}s and left no process",
            started.as_secs_f64(),
            status_took.as_millis(),
            stopped.as_secs_f64()
        ),
        "nothing",
    );
}

#[test]
fn a_hundred_concurrent_cli_clients() {
    const APPS: usize = 10;
    const CLIENTS: usize = 100;
    let d = daemon();
    let names = names("cli", APPS);
    let yml = config(&d, "cli", &names, "[sleep, '1000']", "");
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let before = wait_all(&d, &names, "online", Duration::from_secs(30), |a| {
        a["state"] == "online" && pid_of(a) > 0
    });
    // one restart per app, the rest reads: status and describe, all at the same moment
    let jobs: Vec<Vec<String>> = (0..CLIENTS)
        .map(|i| {
            let app = names[i % APPS].clone();
            match i % 10 {
                0 => vec!["restart".to_owned(), names[i / 10].clone()],
                k if k % 2 == 1 => vec!["status".to_owned(), "--json".to_owned()],
                _ => vec!["describe".to_owned(), app, "--json".to_owned()],
            }
        })
        .collect();
    let barrier = std::sync::Barrier::new(CLIENTS);
    let t = Instant::now();
    let results: Vec<(Vec<String>, std::process::Output, Duration)> = std::thread::scope(|sc| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|args| {
                let (d, barrier) = (&d, &barrier);
                sc.spawn(move || {
                    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                    barrier.wait();
                    let t = Instant::now();
                    let out = d.turbo(&argv);
                    (args.clone(), out, t.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let all_took = t.elapsed();
    let mut failed = Vec::new();
    for (args, out, _) in &results {
        let text = String::from_utf8_lossy(&out.stdout);
        let ok = out.status.success()
            && match args[0].as_str() {
                "status" => {
                    serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v.as_array().map(Vec::len))
                        == Some(APPS)
                }
                "describe" => serde_json::from_str::<Value>(&text)
                    .is_ok_and(|v| v.to_string().contains(args[1].as_str())),
                _ => true,
            };
        if !ok {
            failed.push(format!(
                "turbo {}: {} {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {CLIENTS} concurrent clients failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    let after = wait_all(&d, &names, "online again", Duration::from_secs(30), |a| {
        a["state"] == "online" && pid_of(a) > 0
    });
    for n in &names {
        assert_ne!(
            pid_of(&before[n]),
            pid_of(&after[n]),
            "{n} was restarted by one of the clients"
        );
    }
    let slowest = results.iter().map(|r| r.2).max().unwrap_or_default();
    report(
        &format!("{CLIENTS} concurrent CLI clients"),
        &format!(
            "all {CLIENTS} answered correctly ({} restarts, {} status, {} describe) in {:.1}s, \
             the slowest in {} ms; every restarted app runs a new process",
            APPS,
            jobs.iter().filter(|j| j[0] == "status").count(),
            jobs.iter().filter(|j| j[0] == "describe").count(),
            all_took.as_secs_f64(),
            slowest.as_millis()
        ),
        "nothing",
    );
}

#[test]
fn a_hundred_apps_crashing_at_the_same_moment() {
    const APPS: usize = 100;
    let d = daemon();
    let names = names("crash", APPS);
    let yml = config(
        &d,
        "crash",
        &names,
        "[sleep, '1000']",
        "    restart: { delay: 100ms }\n",
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let before = wait_all(&d, &names, "online", Duration::from_secs(60), |a| {
        a["state"] == "online" && pid_of(a) > 0
    });
    let pids = online_pids(&before, &names);
    let t = Instant::now();
    for &pid in &pids {
        // SAFETY: plain kill(2) of a pid the daemon reports for our app.
        let rc = unsafe { libc::kill(i32::try_from(pid).expect("pid"), libc::SIGKILL) };
        assert_eq!(rc, 0, "kill -9 {pid}");
    }
    let killed_in = t.elapsed();
    let after = wait_all(&d, &names, "restarted once", Duration::from_secs(60), |a| {
        a["state"] == "online" && a["restarts"] == 1
    });
    let back = t.elapsed();
    for (n, old) in names.iter().zip(&pids) {
        let a = &after[n];
        assert_ne!(pid_of(a), *old, "{n} runs a new process");
        assert_eq!(a["last_exit"]["signal"], 9, "{n}: {a}");
        assert_eq!(a["last_exit"]["reason"], "signal", "{n}: {a}");
        let crashes = d.json(&["crashes", n]);
        assert_eq!(
            crashes["stats"]["total"], 1,
            "{n}: exactly one crash: {crashes}"
        );
    }
    report(
        &format!("{APPS} apps crashing at once"),
        &format!(
            "{APPS} kill -9 within {} ms; all back online after {:.1}s, each with restarts 1, \
             last exit signal 9 and exactly one crash record",
            killed_in.as_millis(),
            back.as_secs_f64()
        ),
        "nothing",
    );
}

/// Pids of live processes whose command line is exactly `argv`.
fn processes_running(argv: &[&str]) -> Vec<u64> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
                let have: Vec<&[u8]> = raw.split(|&b| b == 0).filter(|a| !a.is_empty()).collect();
                have.len() == argv.len() && have.iter().zip(argv).all(|(h, w)| *h == w.as_bytes())
            })
        })
        .collect()
}

#[test]
fn an_app_forking_many_children_is_stopped_whole() {
    let s = scale();
    let d = daemon();
    // a sleep length no other process uses: the children are found by their command line
    let mark = format!("{}.5", 900_000 + std::process::id() % 90_000);
    let done = d.home().join("forked");
    // each child starts a session of its own: only the daemon's tracking of the app's
    // descendants can find them at stop (the process group is no help)
    let yml = d.config(
        "forker",
        &format!(
            "apps:\n  - name: forker\n    cmd: [sh, -c, 'i=0; while [ $i -lt {n} ]; do setsid sleep {mark} & i=$((i+1)); done; echo ok > {done}; wait']\n    autorestart: never\n",
            n = s.children,
            done = done.display()
        ),
    );
    let t = Instant::now();
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    wait_for(
        "the app to have forked its children",
        Duration::from_secs(120),
        || done.exists().then_some(()),
    );
    let children = wait_for("every child to run sleep", Duration::from_secs(60), || {
        let p = processes_running(&["sleep", &mark]);
        (p.len() >= s.children).then_some(p)
    });
    let forked_in = t.elapsed();
    assert_eq!(children.len(), s.children);
    // tracked: the app's memory covers its whole tree (a lone shell has a few MB)
    let app = d.app("forker");
    let tree = app["memory_bytes"].as_u64().unwrap_or(0);
    let per_child_floor = 100 << 10;
    assert!(
        tree >= per_child_floor * u64::try_from(s.children).unwrap(),
        "the app's memory ({} KiB) does not cover its {} children: they are not tracked",
        tree >> 10,
        s.children
    );
    let t = Instant::now();
    d.turbo_ok(&["stop", "forker"]);
    let stop_took = t.elapsed();
    let left: Vec<u64> = children.into_iter().filter(|&p| pid_alive(p)).collect();
    assert!(
        left.is_empty(),
        "`turbo stop` returned while {} of {} children (own sessions) still ran, e.g. {:?}",
        left.len(),
        s.children,
        &left[..left.len().min(5)]
    );
    report(
        &format!("an app forking {} children", s.children),
        &format!(
            "{} children in their own sessions after {:.1}s, the app's tree memory {} MiB; \
             `turbo stop` took {:.1}s and left none",
            s.children,
            forked_in.as_secs_f64(),
            tree >> 20,
            stop_took.as_secs_f64()
        ),
        "nothing",
    );
}

/// The numbers of `line N` records of a text log (each line `<timestamp> line N ...`).
fn line_numbers(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.split_once(" line ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn a_log_flood_from_fifty_apps_loses_no_line() {
    const APPS: usize = 50;
    let s = scale();
    let d = daemon();
    let names = names("flood", APPS);
    let n = s.flood_lines;
    let yml = config(
        &d,
        "flood",
        &names,
        &format!("[sh, -c, 'seq -f \"line %.0f\" 1 {n}; exec sleep 1000']"),
        "    autorestart: never\n    log: { max_size: 1gb }\n",
    );
    let t = Instant::now();
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let logs: Vec<PathBuf> = by_name(&d)
        .values()
        .filter(|a| names.iter().any(|n| a["name"] == n.as_str()))
        .map(|a| PathBuf::from(a["out_log"].as_str().expect("out_log")))
        .collect();
    assert_eq!(logs.len(), APPS);
    let last = format!(" line {n}\n");
    wait_for(
        "the last line in every app's log",
        Duration::from_secs(120),
        || {
            logs.iter()
                .all(|p| std::fs::read_to_string(p).is_ok_and(|t| t.ends_with(&last)))
                .then_some(())
        },
    );
    let took = t.elapsed();
    let want: Vec<u64> = (1..=u64::try_from(n).unwrap()).collect();
    let mut bad = Vec::new();
    for p in &logs {
        let got = line_numbers(&std::fs::read_to_string(p).expect("log"));
        if got != want {
            let missing = want.len().saturating_sub(got.len());
            let disorder = got.windows(2).filter(|w| w[1] != w[0] + 1).count();
            bad.push(format!(
                "{}: {} lines, {missing} missing, {disorder} breaks in the order",
                p.display(),
                got.len()
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "lines lost or out of order:\n{}",
        bad.join("\n")
    );
    report(
        &format!("log flood from {APPS} apps"),
        &format!(
            "{APPS} × {n} numbered lines, every one in its app's log once and in order, \
             all written after {:.1}s",
            took.as_secs_f64()
        ),
        "nothing",
    );
}

/// A tmpfs mounted over a directory for the life of the value (lazily unmounted on drop: the
/// daemon may still hold a file open there).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        assert!(
            is_root(),
            "the full-disk scenario mounts a tmpfs over the log directory, which needs root \
             (CI runs the tests as root); run the suite as root"
        );
        std::fs::create_dir_all(dir).expect("the log directory");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "cannot mount a {size} tmpfs over {}: {} (the full-disk scenario needs the right to \
             mount, e.g. root outside a restricted container)",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Self(dir.to_path_buf())
    }

    /// Bytes still free for unprivileged writers.
    fn available(&self) -> u64 {
        let path = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: statvfs fills the struct we pass; the path is a valid C string.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(path.as_ptr(), &raw mut st) };
        assert_eq!(rc, 0, "statvfs {}", self.0.display());
        st.f_bavail * st.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The writer of the full-disk scenario: numbered lines of about 200 bytes as fast as python
/// writes them (a pause every 20 lines), its count kept in a file (atomically, every 50 lines,
/// and exactly at SIGTERM: the handler only raises a flag, checked between two whole lines), so
/// the test knows how far it got whatever its log shows.
const FILLER: &str = r#"import os, signal, sys, time
progress = sys.argv[1]
pad = "x" * 180
i = 0
stopping = False
def save():
    tmp = progress + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(i))
    os.replace(tmp, progress)
def stop(*_):
    global stopping
    stopping = True
signal.signal(signal.SIGTERM, stop)
while not stopping:
    sys.stdout.write(f"line {i + 1} {pad}\n")
    sys.stdout.flush()
    i += 1
    if i % 50 == 0:
        save()
    if i % 20 == 0:
        time.sleep(0.002)
save()
"#;

#[test]
fn a_full_log_disk_blocks_no_app_and_logging_resumes() {
    let d = daemon();
    let logs_dir = d.home().join("logs");
    let disk = Tmpfs::mount(&logs_dir, "2m");
    // half of the disk taken by a ballast file, removed to give the space back
    let ballast = logs_dir.join("ballast");
    std::fs::write(&ballast, vec![0u8; 1 << 20]).expect("ballast");
    let script = d.home().join("filler.py");
    std::fs::write(&script, FILLER).expect("filler.py");
    let progress = d.home().join("filler.progress");
    let read_progress = || -> u64 {
        std::fs::read_to_string(&progress)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    };
    let yml = d.config(
        "full",
        &format!(
            "apps:\n  - name: filler\n    cmd: [python3, {}, {}]\n    autorestart: never\n    log: {{ max_size: 1gb }}\n",
            script.display(),
            progress.display()
        ),
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let pid = pid_of(&d.wait_app("filler", "online", |a| a["state"] == "online"));
    let out_log = PathBuf::from(d.app("filler")["out_log"].as_str().expect("out_log"));
    assert!(
        out_log.starts_with(&logs_dir),
        "the app logs into {}, not under the full disk {}",
        out_log.display(),
        logs_dir.display()
    );

    // 1. the disk fills up
    wait_for("the log disk to be full", Duration::from_secs(60), || {
        (disk.available() == 0).then_some(())
    });
    let full_at = read_progress();
    // 2. the app goes on while it is full, for more than a grown pipe (1 MiB) holds: a
    //    writer blocked on its pipe would stop after about 5,000 of its 200-byte lines
    let enough = full_at + 4 * (1 << 20) / 200;
    let mut last = (full_at, Instant::now());
    let deadline = Instant::now() + Duration::from_secs(90);
    while read_progress() < enough {
        let now = read_progress();
        if now != last.0 {
            last = (now, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(10),
            "the app is blocked while the log disk is full: its line count stayed at {} for \
             10 s (it was at {full_at} when the disk filled); the log plumbing must keep \
             draining the app's pipe on ENOSPC",
            last.0
        );
        assert!(
            Instant::now() < deadline,
            "the app wrote only {} lines in 90 s while the disk was full",
            last.0 - full_at
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(disk.available(), 0, "the disk stayed full meanwhile");
    let app = d.app("filler");
    assert_eq!(app["state"], "online", "{app}");
    assert_eq!(pid_of(&app), pid, "the app was not restarted: {app}");

    // 3. space returns: logging resumes
    let size_full = std::fs::metadata(&out_log).expect("log").len();
    std::fs::remove_file(&ballast).expect("remove the ballast");
    let freed_at = read_progress();
    wait_for(
        "the log to grow again once space returned",
        Duration::from_secs(30),
        || (std::fs::metadata(&out_log).ok()?.len() > size_full + 10_000).then_some(()),
    );
    // some more lines, then a clean stop (the app saves its exact count at SIGTERM)
    let more = read_progress() + 500;
    wait_for("more lines after recovery", Duration::from_secs(30), || {
        (read_progress() >= more).then_some(())
    });
    d.turbo_ok(&["stop", "filler"]);
    let written = read_progress();

    // 4. what arrived
    let text = std::fs::read_to_string(&out_log).expect("read the log");
    let got = line_numbers(&text);
    let in_order = got.windows(2).all(|w| w[0] < w[1]);
    assert!(in_order, "the log has lines out of order or twice");
    let first_gap = got.windows(2).find(|w| w[1] != w[0] + 1).map(|w| w[0]);
    assert_eq!(got.first(), Some(&1), "the first line is there");
    let lost = written - u64::try_from(got.len()).unwrap();
    assert_eq!(
        got.last(),
        Some(&written),
        "the log ends with the app's last line ({written}), after space returned"
    );
    // what the app had written but the daemon not yet read (a grown pipe: 1 MiB) may be lost
    // on either side of the full period; twice that is the slack
    let slack = 2 * (1 << 20) / 200;
    if let Some(gap) = first_gap {
        assert!(
            gap + 1 >= full_at.saturating_sub(slack),
            "lines were lost from {gap}, long before the disk filled (at line {full_at})"
        );
    }
    let last_gap_end = got
        .windows(2)
        .rev()
        .find(|w| w[1] != w[0] + 1)
        .map(|w| w[1]);
    if let Some(end) = last_gap_end {
        assert!(
            end <= freed_at + slack,
            "lines were lost up to {end}, long after space returned (at line {freed_at})"
        );
    }
    let resumed = got.iter().filter(|&&n| n > freed_at).count();
    assert!(
        resumed > 0,
        "no line written after space returned is in the log"
    );
    let gaps = got.windows(2).filter(|w| w[1] != w[0] + 1).count();
    report(
        "a full log disk",
        &format!(
            "the app ran on unblocked while the 2 MiB log disk was full (from line {full_at} \
             to {enough}+, same pid), logging resumed when space returned (at line \
             {freed_at}), the log ends with the app's last line {written}, in order"
        ),
        &format!(
            "{lost} of {written} lines (about {} KiB) in {gaps} gap(s), all while the disk was \
             full",
            lost * 200 / 1024
        ),
    );
    drop(d);
    drop(disk);
}
