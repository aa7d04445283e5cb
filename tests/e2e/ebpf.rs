//! The event source: eBPF for real when root (CI is), and the procfs + pidfd fallback.

use turbo_tests::{TestDaemon, is_root, json};

/// Whether `test` must skip because eBPF cannot load (not root), said loudly; a failure instead
/// when `TURBO_TEST_EBPF` asks for eBPF.
pub(crate) fn skip_without_ebpf(test: &str) -> bool {
    if is_root() {
        return false;
    }
    assert!(
        std::env::var_os("TURBO_TEST_EBPF").is_none(),
        "TURBO_TEST_EBPF is set but the tests do not run as root: eBPF needs CAP_BPF+CAP_PERFMON"
    );
    eprintln!(
        "\n*** SKIPPED {test}: not root, eBPF cannot load. Run `cargo xtask test` as root (CI does). ***\n"
    );
    true
}

#[test]
fn ebpf_reports_the_kill_9_exit() {
    if skip_without_ebpf("ebpf_reports_the_kill_9_exit") {
        return;
    }
    // require: start-up fails instead of silently falling back
    let d = TestDaemon::start("require");
    let info = json(&d.turbo_ok(&["info", "--json"]));
    assert_eq!(info["event_source"], "ebpf", "{info}");
    assert!(
        info["ebpf_programs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "sched_process_exit"),
        "{info}"
    );

    d.turbo_ok(&["start", "sleep", "--name", "victim", "--", "1000"]);
    let (_, app) = d.kill9_and_wait_restart("victim");
    assert_eq!(app["last_exit"]["signal"], 9);
    assert_eq!(
        app["last_exit"]["source"], "ebpf",
        "eBPF, not the pidfd, reported the exit: {app}"
    );
    let info = json(&d.turbo_ok(&["info", "--json"]));
    assert!(info["ebpf_exit_events"].as_u64().unwrap() >= 1, "{info}");
}

#[test]
fn procfs_fallback_when_ebpf_is_off() {
    let d = TestDaemon::start("off");
    let info = json(&d.turbo_ok(&["info", "--json"]));
    assert_eq!(info["event_source"], "procfs");
    assert!(
        info["event_source_reason"]
            .as_str()
            .unwrap()
            .contains("off"),
        "{info}"
    );
    d.turbo_ok(&["start", "sleep", "--name", "victim", "--", "1000"]);
    let (_, app) = d.kill9_and_wait_restart("victim");
    assert_eq!(app["last_exit"]["signal"], 9);
    assert_eq!(app["last_exit"]["source"], "procfs");
}
