//! Log capture through the real binaries: timestamps, rotation, follow across rotation, JSON,
//! flush.

use std::{
    io::Read as _,
    process::{Command, Stdio},
    time::Duration,
};

use turbo_tests::{TestDaemon, wait_for};

/// The numbers of `line N` records in a text log file, in file order.
fn numbers(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest))
        .filter_map(|rest| rest.strip_prefix("line ")?.parse().ok())
        .collect()
}

#[test]
fn rotation_keeps_exactly_keep_files_and_loses_no_line() {
    let d = TestDaemon::start("off");
    let yml = d.config(
        "rot",
        "apps:\n  - name: chatty\n    cmd: [sh, -c, 'i=1; while [ $i -le 3000 ]; do echo \"line $i\"; i=$((i+1)); done; sleep 1000']\n    log: { max_size: 4k, keep: 3 }\n",
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let app = d.app("chatty");
    let out = std::path::PathBuf::from(app["out_log"].as_str().unwrap());
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    wait_for(
        "line 3000 in the current file",
        Duration::from_secs(10),
        || {
            numbers(&read(&out))
                .last()
                .is_some_and(|&n| n == 3000)
                .then_some(())
        },
    );
    let dir = out.parent().unwrap();
    let rotated: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("chatty-out.log."))
        .collect();
    assert_eq!(
        rotated.len(),
        3,
        "exactly `keep` rotated files: {rotated:?}"
    );
    // oldest to newest: .3 .2 .1 current, one contiguous run of numbers ending at 3000
    let mut all = Vec::new();
    for suffix in [".3", ".2", ".1", ""] {
        let f = dir.join(format!("chatty-out.log{suffix}"));
        let text = read(&f);
        assert!(
            text.len() <= 4096,
            "{} exceeds max_size: {} bytes",
            f.display(),
            text.len()
        );
        all.extend(numbers(&text));
    }
    let first = all[0];
    let want: Vec<u64> = (first..=3000).collect();
    assert_eq!(all, want, "no line lost or repeated across rotation");
}

#[test]
fn follow_survives_rotation_and_json_and_flush_work() {
    let d = TestDaemon::start("off");
    let yml = d.config(
        "follow",
        "apps:\n  - name: steady\n    cmd: [sh, -c, 'i=1; while [ $i -le 400 ]; do echo \"line $i\"; i=$((i+1)); sleep 0.005; done; sleep 1000']\n    log: { max_size: 2k, keep: 50 }\n",
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let mut follower = Command::new(turbo_tests::bin_dir().join("turbo"))
        .args(["logs", "steady", "--out", "--follow", "--lines", "1000"])
        .env("TURBO_HOME", d.home())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = d.app("steady")["out_log"].as_str().unwrap().to_owned();
    wait_for("line 400 written", Duration::from_secs(15), || {
        numbers(&std::fs::read_to_string(&out).unwrap_or_default())
            .contains(&400)
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(600)); // two poll periods of the follower
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(i32::try_from(follower.id()).unwrap(), libc::SIGINT) };
    let mut text = String::new();
    follower
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let _ = follower.wait();
    let seen: Vec<u64> = text
        .lines()
        .filter_map(|l| {
            l.split_once("line ")
                .and_then(|(_, n)| n.trim().parse().ok())
        })
        .collect();
    assert_eq!(
        seen,
        (1..=400).collect::<Vec<_>>(),
        "follow lost or repeated lines:\n{text}"
    );

    let json = d.turbo_ok(&["logs", "steady", "--out", "--lines", "3", "--json"]);
    let records: Vec<serde_json::Value> = json.lines().map(turbo_tests::json).collect();
    assert_eq!(records.len(), 3, "{json}");
    assert_eq!(records[2]["line"], "line 400");
    assert_eq!(records[2]["app"], "steady");
    assert_eq!(records[2]["stream"], "out");
    assert!(records[2]["at"].as_str().unwrap().ends_with('Z'));

    d.turbo_ok(&["flush", "steady"]);
    assert_eq!(
        std::fs::metadata(&out).unwrap().len(),
        0,
        "flush empties the current file"
    );
    let rotated = std::fs::read_dir(std::path::Path::new(&out).parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("steady-out.log."))
        .count();
    assert_eq!(rotated, 0, "flush removes rotated files");
}
