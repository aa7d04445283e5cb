//! The kernel probes through the real binaries: every tp_btf program loaded and listed by
//! `turbo info`; descendants' events (now reported by the kernel for whole process trees) do not
//! disturb supervision; and the procfs fallback when the daemon lacks the BPF capabilities.
//! Loading eBPF needs root (CI runs as root): those tests say SKIPPED otherwise, and fail under
//! `CI` rather than pass vacuously.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use turbo_tests::{TestDaemon, bin_dir, is_root, json, wait_for};

const PROGRAMS: [&str; 10] = [
    "sched_process_exit",
    "sched_process_fork",
    "sched_process_exec",
    "mark_victim",
    "signal_generate",
    "rss_stat",
    "sched_wakeup",
    "sched_wakeup_new",
    "sched_switch",
    "inet_sock_set_state",
];

fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: CI must run the eBPF tests as root"
    );
    eprintln!("\n*** SKIPPED {test}: needs root to load eBPF; it did NOT run ***\n");
    true
}

#[test]
fn info_lists_every_probe() {
    if skip_unless_root("info_lists_every_probe") {
        return;
    }
    let d = TestDaemon::start("require");
    let info = json(&d.turbo_ok(&["info", "--json"]));
    assert_eq!(info["event_source"], "ebpf", "{info}");
    let programs: Vec<&str> = info["ebpf_programs"]
        .as_array()
        .expect("ebpf_programs")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert_eq!(programs, PROGRAMS, "{info}");
    assert_eq!(info["events_lost"], 0, "{info}");
}

/// The kernel now follows whole trees: every short-lived child of an app is reported when it
/// exits. None of that may look like the app itself dying.
#[test]
fn descendants_exits_do_not_disturb_supervision() {
    let d = TestDaemon::start("auto");
    d.turbo_ok(&[
        "start",
        "sh",
        "--name",
        "forker",
        "--",
        "-c",
        "while :; do /bin/true; sleep 0.02; done",
    ]);
    let app = d.wait_app("forker", "online", |a| a["state"] == "online");
    let pid = app["pid"].as_u64().expect("pid");
    std::thread::sleep(Duration::from_millis(1500)); // ~100 descendants born and gone
    let app = d.app("forker");
    assert_eq!(app["state"], "online", "{app}");
    assert_eq!(app["pid"].as_u64(), Some(pid), "{app}");
    assert_eq!(app["restarts"], 0, "{app}");
    assert!(app["last_exit"].is_null(), "{app}");
    d.turbo_ok(&["stop", "forker"]);
    let app = d.app("forker");
    assert_eq!(app["state"], "stopped", "{app}");
}

/// A daemon started by hand under `capsh`, which drops the given capabilities from the
/// bounding set before exec'ing it (so root loses them too); killed on drop.
struct CappedDaemon {
    home: tempfile::TempDir,
    daemon: Child,
    bins: PathBuf,
}

impl CappedDaemon {
    fn start(drop_caps: &str) -> Self {
        let home = tempfile::Builder::new()
            .prefix("turbo-e2e-caps-")
            .tempdir()
            .expect("tempdir");
        let bins = bin_dir();
        let log = std::fs::File::create(home.path().join("daemon.log")).expect("daemon.log");
        let daemon = Command::new("capsh")
            .arg(format!("--drop={drop_caps}"))
            .args(["--", "-c", "exec \"$0\""])
            .arg(bins.join("turbo-daemon"))
            .env("TURBO_HOME", home.path())
            .env("TURBO_EBPF", "auto")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("capsh (package libcap2-bin) is needed");
        let mut d = Self { home, daemon, bins };
        // The socket first: a `turbo` command finding no daemon would auto-start an uncapped one
        // that could win the home's lock.
        let socket = d.home.path().join("bus.sock");
        wait_for(
            "the capped daemon's socket",
            Duration::from_secs(15),
            || {
                if let Ok(Some(status)) = d.daemon.try_wait() {
                    panic!("capped daemon exited ({status}):\n{}", d.log());
                }
                std::os::unix::net::UnixStream::connect(&socket)
                    .is_ok()
                    .then_some(())
            },
        );
        wait_for(
            "the capped daemon to answer",
            Duration::from_secs(15),
            || d.turbo(&["ping"]).status.success().then_some(()),
        );
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("daemon.log")).unwrap_or_default()
    }

    fn turbo(&self, args: &[&str]) -> std::process::Output {
        Command::new(self.bins.join("turbo"))
            .args(args)
            .env("TURBO_HOME", self.home.path())
            .env_remove("TURBO_BUS_ADDRESS")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run turbo")
    }
}

impl Drop for CappedDaemon {
    fn drop(&mut self) {
        let _ = self.turbo(&["kill"]);
        for _ in 0..100 {
            if matches!(self.daemon.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

#[test]
fn falls_back_to_procfs_without_bpf_capabilities() {
    if skip_unless_root("falls_back_to_procfs_without_bpf_capabilities") {
        return;
    }
    let d = CappedDaemon::start("cap_bpf,cap_perfmon,cap_sys_admin");
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", d.daemon.id())).unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(str::trim)
        .unwrap_or("?")
        .to_owned();
    let out = d.turbo(&["info", "--json"]);
    assert!(out.status.success(), "{}", d.log());
    let info = json(&String::from_utf8_lossy(&out.stdout));
    eprintln!("daemon CapEff {eff}: {info}");
    assert_eq!(
        info["pid"].as_u64(),
        Some(u64::from(d.daemon.id())),
        "the daemon answering is the capped one"
    );
    assert_eq!(info["event_source"], "procfs", "{info}");
    let reason = info["event_source_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("permission denied"), "{info}");
    assert_eq!(
        info["ebpf_programs"].as_array().map(Vec::len),
        Some(0),
        "{info}"
    );
    assert!(d.log().contains("falling back"), "{}", d.log());
}
