//! Containment without eBPF (`TURBO_EBPF=off`): every descendant of an app, however it left
//! the process group (`setsid`, a double fork, a classic daemon), is in the app's cgroup and
//! ends with `stop` and with `turbo kill`; the orphans re-parented to the daemon (a
//! subreaper) are reaped by it, so no zombie is left waiting for PID 1.

use std::time::Duration;

use turbo_tests::{TestDaemon, is_root, pid_alive, wait_for};

/// An app whose main process starts three escapers, each writing its pid into `dir`:
/// `setsid` (a child in a session of its own), `double` (a grandchild whose parent exited) and
/// `daemon` (fork, setsid, fork, chdir /, stdio closed: the classic daemon).
const ESCAPERS: &str = r#"
import os, sys, time
d = sys.argv[1]
def note(name):
    open(os.path.join(d, name + ".tmp"), "w").write(str(os.getpid()))
    os.rename(os.path.join(d, name + ".tmp"), os.path.join(d, name))
if os.fork() == 0:
    os.setsid(); note("setsid"); time.sleep(1000); os._exit(0)
if os.fork() == 0:
    if os.fork() == 0:
        note("double"); time.sleep(1000)
    os._exit(0)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.chdir("/")
        for fd in (0, 1, 2):
            os.close(fd)
        note("daemon"); time.sleep(1000)
    os._exit(0)
time.sleep(1000)
"#;

/// Whether `pid` is still in the process table at all (a zombie counts: nobody reaped it).
fn exists(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn parent_of(pid: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()
}

/// Skips loudly where cgroups cannot be made (not root); CI is root and never skips.
fn skip(test: &str) -> bool {
    if is_root() {
        return false;
    }
    // creating cgroups needs root here; CI runs as root
    assert!(
        std::env::var_os("CI").is_none(),
        "CI runs the e2e tests as root"
    );
    eprintln!("\n*** SKIPPED {test}: needs root for cgroups ***\n");
    true
}

/// Starts the escapers under a daemon without eBPF and checks where they are: the orphans
/// re-parented to the daemon, all of them in the app's cgroup. Returns their names and pids.
fn escapers(d: &TestDaemon) -> Vec<(&'static str, u64)> {
    let script = d.home().join("escapers.py");
    std::fs::write(&script, ESCAPERS).unwrap();
    let dir = d.home().join("pids");
    std::fs::create_dir_all(&dir).unwrap();
    d.turbo_ok(&[
        "start",
        script.to_str().unwrap(),
        "--name",
        "escapers",
        "--",
        dir.to_str().unwrap(),
    ]);
    let pids: Vec<(&str, u64)> = ["setsid", "double", "daemon"]
        .into_iter()
        .map(|name| {
            let pid = wait_for(name, Duration::from_secs(10), || {
                std::fs::read_to_string(dir.join(name))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            });
            (name, pid)
        })
        .collect();
    let daemon = u64::from(d.daemon_pid().expect("the daemon runs"));
    for &(name, pid) in &pids {
        assert!(pid_alive(pid), "{name} ({pid}) runs");
        if name != "setsid" {
            // its parent exited: re-parented to the daemon (the subreaper), not to PID 1
            let parent = wait_for("the re-parenting", Duration::from_secs(5), || {
                parent_of(pid).filter(|&p| p != 1 && p == daemon)
            });
            assert_eq!(parent, daemon, "{name}");
        }
    }
    for &(name, pid) in &pids {
        // in the app's own cgroup, below the daemon's (one directory per home, one per instance)
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(
            cgroups
                .lines()
                .any(|l| l.contains("/turbo-") && l.ends_with("/escapers.0")),
            "{name} ({pid}) is in the app's cgroup: {cgroups}"
        );
    }
    let info = d.json(&["info"]);
    assert_eq!(info["event_source"], "procfs", "{info}");
    pids
}

#[test]
fn stop_leaves_no_descendant_and_no_zombie_without_ebpf() {
    if skip("stop_leaves_no_descendant_and_no_zombie_without_ebpf") {
        return;
    }
    let d = TestDaemon::start("off");
    let pids = escapers(&d);
    let daemon = u64::from(d.daemon_pid().expect("the daemon runs"));
    d.turbo_ok(&["stop", "escapers"]);
    for &(name, pid) in &pids {
        assert!(
            !pid_alive(pid),
            "`turbo stop` returned while the {name} descendant {pid} lived"
        );
    }
    // the orphans' zombies are the daemon's to reap
    for &(name, pid) in &pids {
        wait_for(
            &format!("the {name} descendant {pid} reaped"),
            Duration::from_secs(5),
            || (!exists(pid) || parent_of(pid).is_some_and(|p| p != daemon)).then_some(()),
        );
    }
    assert!(
        d.app("escapers")["state"] == "stopped",
        "{}",
        d.app("escapers")
    );
    // the app's cgroup goes with it
    d.turbo_ok(&["delete", "escapers"]);
}

/// `turbo kill` (stop every app, then the daemon) leaves none of them either.
#[test]
fn kill_leaves_no_descendant_without_ebpf() {
    if skip("kill_leaves_no_descendant_without_ebpf") {
        return;
    }
    let d = TestDaemon::start("off");
    let pids = escapers(&d);
    d.turbo_ok(&["kill"]);
    for &(name, pid) in &pids {
        assert!(
            !pid_alive(pid),
            "`turbo kill` returned while the {name} descendant {pid} lived"
        );
    }
}
