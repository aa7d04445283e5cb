//! Watch mode through the real binaries: a burst of changes in a 10,000-file tree gives exactly
//! one restart with reason `watch`; changes under `node_modules`, `.git`, log files and
//! `ignore_watch` give none; a directory created later is watched too; the daemon idles
//! without burning CPU while it watches the tree; `turbo start --watch`.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use turbo_tests::{TestDaemon, wait_for};

/// User + system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("daemon stat");
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    // fields 14 and 15 (utime, stime), counted from the state (field 3)
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap();
    Duration::from_millis(ticks * 1000 / hz)
}

/// `dirs` directories of `per_dir` files under `root/sub`.
fn fill(root: &Path, sub: &str, dirs: usize, per_dir: usize) {
    for d in 0..dirs {
        let dir = root.join(sub).join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..per_dir {
            std::fs::write(dir.join(format!("f{f}.js")), "x").unwrap();
        }
    }
}

fn restarts(d: &TestDaemon, name: &str) -> u64 {
    d.app(name)["restarts"].as_u64().unwrap()
}

/// Waits `quiet` and checks that the restart count stayed at `n`.
fn still(d: &TestDaemon, name: &str, n: u64, quiet: Duration, after: &str) {
    std::thread::sleep(quiet);
    assert_eq!(restarts(d, name), n, "a restart after {after}");
}

#[test]
fn a_burst_restarts_once_ignored_paths_never_and_idle_costs_nothing() {
    let d = TestDaemon::start("auto");
    let tree = tempfile::Builder::new()
        .prefix("turbo-watch-")
        .tempdir()
        .unwrap();
    let root = tree.path();
    // 10,000 files: half in the app, half in node_modules (which gets no watches at all)
    fill(root, "src", 50, 100);
    fill(root, "node_modules", 50, 100);
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join(".git/HEAD"), "ref").unwrap();
    let yml = d.config(
        "watch",
        &format!(
            "apps:\n  - name: w\n    cmd: [sleep, '1000']\n    cwd: {}\n    watch: true\n    \
             watch_delay: 300ms\n    ignore_watch: ['*.tmp', 'cache/**']\n",
            root.display()
        ),
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let log = wait_for("the watcher to be set up", Duration::from_secs(20), || {
        let log = d.daemon_log();
        log.contains("watching").then_some(log)
    });
    // src, its 50 directories and the root: node_modules and .git are not walked
    assert!(log.contains("watching 52 directories"), "{log}");

    // idle: the daemon's CPU time barely moves while it watches the tree
    let pid = d.daemon_pid().expect("daemon pid");
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(3));
    let idle = cpu_time(pid) - before;
    eprintln!(
        "daemon CPU time over 3 s idle, watching 52 directories of a 10,000-file tree: {idle:?}"
    );
    assert!(
        idle < Duration::from_millis(300),
        "the daemon used {idle:?} of CPU in 3 s of idling on a watched tree"
    );

    // a burst of 200 changes over ~0.5 s: one restart, reason watch
    let pid_before = d.app("w")["pid"].as_u64().unwrap();
    let burst = Instant::now();
    for i in 0..200 {
        std::fs::write(root.join(format!("src/d{}/f{}.js", i % 50, i)), "y").unwrap();
        if i % 40 == 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let app = d.wait_app("w", "a restart after the burst", |a| {
        a["restarts"] == 1 && a["state"] == "online"
    });
    assert!(
        burst.elapsed() >= Duration::from_millis(300),
        "restarted before the debounce delay"
    );
    assert_eq!(app["last_exit"]["reason"], "watch", "{app}");
    assert_ne!(app["pid"].as_u64(), Some(pid_before));
    still(
        &d,
        "w",
        1,
        Duration::from_millis(1500),
        "the burst was over",
    );
    let crashes = d.json(&["crashes", "w"]);
    assert_eq!(crashes["stats"]["total"], 0, "a watch restart is no crash");

    // ignored: node_modules, .git, logs, ignore_watch globs, the daemon's own home
    std::fs::write(root.join("node_modules/d3/f1.js"), "z").unwrap();
    std::fs::write(root.join("node_modules/new.js"), "z").unwrap();
    std::fs::write(root.join(".git/HEAD"), "ref2").unwrap();
    std::fs::write(root.join("app.log"), "line").unwrap();
    std::fs::write(root.join("src/d1/x.tmp"), "t").unwrap();
    std::fs::create_dir_all(root.join("cache/a")).unwrap();
    still(
        &d,
        "w",
        1,
        Duration::from_millis(1500),
        "changes of ignored paths",
    );

    // a directory created after the start is watched too
    std::fs::create_dir_all(root.join("src/later")).unwrap();
    let app = d.wait_app("w", "a restart for the new directory", |a| {
        a["restarts"] == 2 && a["state"] == "online"
    });
    assert_eq!(app["last_exit"]["reason"], "watch");
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(root.join("src/later/new.js"), "n").unwrap();
    d.wait_app("w", "a restart for a file in the new directory", |a| {
        a["restarts"] == 3 && a["state"] == "online"
    });
}

#[test]
fn start_watch_on_the_command_line() {
    let d = TestDaemon::start("auto");
    let tree = tempfile::Builder::new()
        .prefix("turbo-watch-cli-")
        .tempdir()
        .unwrap();
    std::fs::write(tree.path().join("app.js"), "1").unwrap();
    let out = d.turbo_in(
        &[
            "start",
            "/bin/sleep",
            "--name",
            "cli",
            "--watch",
            "--",
            "1000",
        ],
        tree.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the watcher", Duration::from_secs(10), || {
        d.daemon_log().contains("watching").then_some(())
    });
    std::fs::write(tree.path().join("app.js"), "2").unwrap();
    let app = d.wait_app("cli", "a restart for the change", |a| {
        a["restarts"] == 1 && a["state"] == "online"
    });
    assert_eq!(app["last_exit"]["reason"], "watch");
    // stopped by hand: changes do not start it
    d.turbo_ok(&["stop", "cli"]);
    std::fs::write(tree.path().join("app.js"), "3").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(d.app("cli")["state"], "stopped");
}
