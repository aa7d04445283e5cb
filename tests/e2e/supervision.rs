//! Supervision in depth through the real binaries: backoff and crash loops, stopping whole
//! groups, crash records, persistent state, adoption after a daemon crash.

use std::time::Duration;

use turbo_tests::{TestDaemon, bin_dir, pid_alive, wait_for};

/// Parses the RFC 3339 `at` of a crash into milliseconds since the first one compared.
fn at_ms(crash: &serde_json::Value) -> i64 {
    let at = crash["at"].as_str().expect("at");
    // 2026-11-26T13:45:01.123Z: seconds of the day and millis suffice within one test
    let time = &at[11..23];
    let h: i64 = time[0..2].parse().unwrap();
    let m: i64 = time[3..5].parse().unwrap();
    let s: i64 = time[6..8].parse().unwrap();
    let ms: i64 = time[9..12].parse().unwrap();
    ((h * 60 + m) * 60 + s) * 1000 + ms
}

#[test]
fn backoff_grows_then_a_crash_loop_stops_restarts() {
    let d = TestDaemon::start("auto");
    let yml = d.config(
        "loop",
        "apps:\n  - name: dies\n    cmd: [sh, -c, 'echo dying >&2; exit 1']\n    restart: { delay: 200ms, factor: 2, max_delay: 30s, crash_loop: { max: 5, window: 60s } }\n",
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let app = d.wait_app("dies", "errored after a crash loop", |a| {
        a["state"] == "errored"
    });
    assert_eq!(app["restarts"], 4, "5 crashes = the first run + 4 restarts");
    let report = d.json(&["crashes", "dies"]);
    let crashes = report["crashes"].as_array().unwrap();
    assert_eq!(crashes.len(), 5, "{report}");
    assert_eq!(report["stats"]["total"], 5);
    assert_eq!(report["stats"]["most_common_reason"], "exit");
    // newest first: the gaps between crashes follow the backoff 0.2, 0.4, 0.8, 1.6 s
    let mut times: Vec<i64> = crashes.iter().map(at_ms).collect();
    times.reverse();
    let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, delay) in gaps.iter().zip([200, 400, 800, 1600]) {
        assert!(
            *gap >= delay && *gap < delay + 400,
            "gaps {gaps:?} do not follow the backoff 200/400/800/1600 ms"
        );
    }
    for c in crashes {
        assert_eq!(c["code"], 1);
        assert_eq!(c["reason"], "exit");
        assert_eq!(c["stderr_tail"][0], "dying", "{c}");
    }
    // no more restarts while errored
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(d.app("dies")["restarts"], 4);
    // `turbo restart` revives it (and it dies again, but it ran)
    d.turbo_ok(&["restart", "dies"]);
    assert!(d.app("dies")["restarts"].as_u64().unwrap() >= 5);
}

#[test]
fn crash_records_carry_code_signal_stderr_tail_and_memory() {
    let d = TestDaemon::start("auto");
    let script = d.script(
        "noisy.sh",
        "i=1; while [ $i -le 30 ]; do echo \"err line $i\" >&2; i=$((i+1)); done\nsleep 0.3\nexit 3",
    );
    d.turbo_ok(&["start", script.to_str().unwrap(), "--name", "noisy"]);
    wait_for("a crash record", Duration::from_secs(10), || {
        (d.json(&["crashes", "noisy"])["stats"]["total"] == 1).then_some(())
    });
    let report = d.json(&["crashes", "noisy"]);
    let crash = &report["crashes"][0];
    assert_eq!(crash["code"], 3);
    assert!(crash["signal"].is_null());
    assert_eq!(crash["reason"], "exit");
    assert_eq!(crash["restart_number"], 0);
    assert!(crash["uptime_ms"].as_u64().unwrap() >= 300, "{crash}");
    let tail: Vec<&str> = crash["stderr_tail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let want: Vec<String> = (11..=30).map(|i| format!("err line {i}")).collect();
    assert_eq!(tail, want, "the last 20 stderr lines");
    assert!(crash.get("signal_sender").is_some());

    // a kill -9 is recorded with its signal
    let (_, _) = d.kill9_and_wait_restart("noisy");
    let report = d.json(&["crashes", "noisy"]);
    assert_eq!(report["crashes"][0]["signal"], 9, "{report}");
    assert!(report["crashes"][0]["code"].is_null());
    assert_eq!(report["crashes"][0]["restart_number"], 1);
    assert!(report["stats"]["total"].as_u64().unwrap() >= 2);

    // describe shows config, state and the last crash; env values never appear
    let described = d.json(&["describe", "noisy"]);
    assert_eq!(described["status"]["name"], "noisy");
    assert_eq!(described["config"]["autorestart"], "always");
    assert_eq!(described["config"]["kill_timeout_ms"], 5000);
    assert!(
        described["crashes"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    );
}

#[test]
fn a_stop_waits_for_the_whole_group_and_kills_stragglers() {
    let d = TestDaemon::start("auto");
    // the leader exits on SIGTERM at once; its child ignores SIGTERM and stays in the group
    let yml = d.config(
        "group",
        "apps:\n  - name: family\n    cmd: [sh, -c, \"sh -c 'trap \\\"\\\" TERM; echo $$ > child.pid; while :; do sleep 0.1; done' & wait\"]\n    kill_timeout: 700ms\n",
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let child_pid_file = yml.parent().unwrap().join("child.pid");
    let child: u64 = wait_for("the child to write its pid", Duration::from_secs(5), || {
        std::fs::read_to_string(&child_pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    assert!(pid_alive(child));
    let started = std::time::Instant::now();
    d.turbo_ok(&["stop", "family"]);
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "stop returned before the kill timeout, with the child still in the group"
    );
    assert!(
        !pid_alive(child),
        "stop returned while a group member ({child}) lived"
    );
    assert_eq!(d.app("family")["state"], "stopped");
}

#[test]
fn state_and_crash_history_survive_kill_and_restart() {
    let mut d = TestDaemon::start("auto");
    d.turbo_ok(&["start", "sleep", "--name", "keeper", "--", "1000"]);
    d.turbo_ok(&["start", "sleep", "--name", "resting", "--", "1000"]);
    d.turbo_ok(&["stop", "resting"]);
    d.kill9_and_wait_restart("keeper");
    d.turbo_ok(&["kill"]);
    d.restart_daemon();
    let keeper = d.wait_app("keeper", "restored and running", |a| a["state"] == "online");
    assert_eq!(keeper["restarts"], 1, "restart count survives");
    assert_eq!(
        d.app("resting")["state"],
        "stopped",
        "desired state survives"
    );
    let report = d.json(&["crashes", "keeper"]);
    assert_eq!(
        report["stats"]["total"], 1,
        "crash history survives: {report}"
    );
    assert_eq!(report["crashes"][0]["signal"], 9);

    // a corrupt state file: kept aside, the backup loaded, apps untouched
    d.turbo_ok(&["kill"]);
    let state = d.home().join("state.json");
    let text = std::fs::read(&state).unwrap();
    std::fs::write(&state, &text[..text.len() / 3]).unwrap();
    d.restart_daemon();
    let names: Vec<_> = d.status().iter().map(|a| a["name"].clone()).collect();
    assert!(
        names.contains(&"keeper".into()),
        "backup restored the apps: {names:?}"
    );
    assert!(d.daemon_log().contains("corrupt"), "{}", d.daemon_log());
    let aside = std::fs::read_dir(d.home())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .any(|n| n.starts_with("state.json.corrupt-"));
    assert!(aside, "the corrupt file is kept for inspection");
}

#[test]
fn a_new_daemon_adopts_running_apps_instead_of_starting_them_twice() {
    let mut d = TestDaemon::start("auto");
    d.turbo_ok(&["start", "sleep", "--name", "survivor", "--", "1000"]);
    let before = d.app("survivor");
    let pid = before["pid"].as_u64().unwrap();
    d.wait_saved_pid(pid);
    d.kill9_daemon();
    assert!(pid_alive(pid), "apps outlive the daemon");
    d.restart_daemon();
    let after = d.app("survivor");
    assert_eq!(after["state"], "online");
    assert_eq!(after["pid"], pid, "adopted, not started twice");
    assert_eq!(after["restarts"], before["restarts"]);
    let sleeps = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<u64>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                c == "/usr/bin/sleep\u{0}1000\u{0}" || c == "/bin/sleep\u{0}1000\u{0}"
            })
        })
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/environ"))
                .is_ok_and(|e| e.contains(d.home().to_str().unwrap()))
        })
        .count();
    assert_eq!(sleeps, 1, "exactly one process of the app");
    // the adopted process is still supervised: a crash restarts it
    let (_, app) = d.kill9_and_wait_restart("survivor");
    assert_eq!(app["restarts"], 1);
    d.turbo_ok(&["stop", "survivor"]);
}

/// A stopped app whose zombie only its parent may reap, and that parent is slow (an init
/// that reaps late, here a wrapper that never does): the stop completes once nothing of the
/// group runs, not when someone else gets round to the reaping.
#[test]
fn stopping_an_adopted_app_does_not_wait_for_another_parent_to_reap_it() {
    let reaper = bin_dir().join("lazy-reaper");
    let mut d = TestDaemon::start_under("auto", &[reaper.to_str().unwrap()]);
    d.turbo_ok(&["start", "sleep", "--name", "orphan", "--", "1000"]);
    let pid = d.app("orphan")["pid"].as_u64().unwrap();
    d.wait_saved_pid(pid);
    let wrapper = d.detach_daemon().expect("the wrapper");
    let wrapper_pid = u64::from(wrapper.id());
    let ppid = |p: u64| -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
    };
    let state = |p: u64| -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        stat[stat.rfind(')')? + 2..].chars().next()
    };
    let daemon = ppid(pid).expect("the app's parent");
    assert_ne!(daemon, wrapper_pid, "the daemon is the app's parent");
    // SAFETY: kill with a pid and a signal number.
    assert_eq!(
        unsafe { libc::kill(i32::try_from(daemon).unwrap(), libc::SIGKILL) },
        0
    );
    wait_for(
        "the app to be the lazy reaper's",
        Duration::from_secs(5),
        || (ppid(pid) == Some(wrapper_pid)).then_some(()),
    );
    d.restart_daemon();
    assert_eq!(d.app("orphan")["pid"], pid, "adopted");
    d.turbo_ok(&["stop", "orphan"]);
    let app = d.app("orphan");
    assert_eq!(app["state"], "stopped", "{app}");
    assert_eq!(
        state(pid),
        Some('Z'),
        "still a zombie: the stop did not wait for its reaping"
    );
    // the wrappers outlive their daemons: ended here, the second once its daemon is gone
    d.turbo_ok(&["kill"]);
    for mut w in [Some(wrapper), d.detach_daemon()].into_iter().flatten() {
        let _ = w.kill();
        let _ = w.wait();
    }
}

#[test]
fn save_and_resurrect() {
    let d = TestDaemon::start("auto");
    d.turbo_ok(&["start", "sleep", "--name", "a", "--", "1000"]);
    d.turbo_ok(&["start", "sleep", "--name", "b", "--", "1000"]);
    let out = d.turbo_ok(&["save"]);
    assert!(out.contains("dump.json"), "{out}");
    d.turbo_ok(&["delete", "all"]);
    assert!(d.status().is_empty());
    d.turbo_ok(&["resurrect"]);
    let names: Vec<_> = d.status().iter().map(|a| a["name"].clone()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(d.status().iter().all(|a| a["state"] == "online"));
}

#[test]
fn app_crashed_signal_carries_the_record() {
    use futures_util::StreamExt;
    let d = TestDaemon::start("auto");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = d.connect().await;
        let m = turbo_api::ManagerProxy::new(&conn).await.unwrap();
        let mut crashes = m.receive_app_crashed().await.unwrap();
        let script = d.script("boom.sh", "echo 'about to fail' >&2; exit 42");
        m.start_app(
            "boom",
            &[script.to_str().unwrap()],
            std::collections::HashMap::new(),
        )
        .await
        .unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(5), crashes.next())
            .await
            .expect("AppCrashed within 5 s")
            .unwrap();
        let args = ev.args().unwrap();
        assert_eq!(args.name, "boom");
        assert_eq!(args.crash.code, 42);
        // a signal reaches every subscriber: the app's output only through GetCrashes
        assert_eq!(
            args.crash.stderr_tail,
            ["(hidden: only root and the app's user may read its output)"]
        );
        let (_, records) = m.get_crashes("boom").await.unwrap();
        assert_eq!(records[0].stderr_tail, ["about to fail"]);
        m.stop_app("boom").await.unwrap();
    });
}
