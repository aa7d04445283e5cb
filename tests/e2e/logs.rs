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

/// Stops a `turbo logs --follow` child with Ctrl-C and returns what it printed.
fn interrupt_and_read(mut follower: std::process::Child) -> String {
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
    text
}

/// Starts, from one turbo.yml in `dir`, one app per `(name, log policy)` that writes `line 1`
/// to `line 3000` at once and then sleeps.
fn start_floods(d: &TestDaemon, dir: &str, apps: &[(&str, &str)]) {
    let flood = "cmd: [sh, -c, 'i=1; while [ $i -le 3000 ]; do echo \"line $i\"; i=$((i+1)); done; sleep 1000']";
    let yml: String = apps
        .iter()
        .map(|(name, log)| format!("  - name: {name}\n    {flood}\n    log: {log}\n"))
        .collect();
    let path = d.config(dir, &format!("apps:\n{yml}"));
    d.turbo_ok(&["start", path.to_str().unwrap()]);
}

/// The names of the rotated files of the log at `out`, sorted.
fn rotated_names(out: &std::path::Path) -> Vec<String> {
    let prefix = format!("{}.", out.file_name().unwrap().to_str().unwrap());
    let mut names: Vec<String> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    names.sort();
    names
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
    let follower = Command::new(turbo_tests::bin_dir().join("turbo"))
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
    let text = interrupt_and_read(follower);
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

/// What a connection to `socket` by uid 65534 gets back for a `stats` request: the reply, or
/// `hung up` when the keeper closes the connection (an empty read or a reset).
fn keeper_answer_as_nobody(socket: &std::path::Path) -> String {
    let probe = "import socket, sys\n\
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n\
        s.settimeout(5)\n\
        s.connect(sys.argv[1])\n\
        try:\n    s.send(b'{\"op\":\"stats\"}')\n    r = s.recv(65536)\n    print(repr(r) if r else 'hung up')\n\
        except (ConnectionResetError, BrokenPipeError):\n    print('hung up')\n";
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
        ])
        .arg(probe)
        .arg(socket)
        .output()
        .expect("setpriv (util-linux) and python3");
    assert!(
        out.status.success(),
        "the probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn the_log_keeper_talks_only_to_its_own_uid_and_is_named_like_the_daemon() {
    use std::os::unix::fs::PermissionsExt as _;
    assert!(
        turbo_tests::is_root(),
        "this test switches users: run it as root"
    );
    let d = TestDaemon::start("off");
    d.turbo_ok(&[
        "start",
        "sh",
        "--name",
        "talk",
        "--",
        "-c",
        "while :; do echo tick; sleep 0.1; done",
    ]);
    let keeper = wait_for("the log keeper", Duration::from_secs(10), || {
        turbo_tests::keeper_pid(d.home())
    });

    // `ps -C turbo-daemon` and `pgrep turbo-daemon` read the short name; `ps` shows argv
    let comm = std::fs::read_to_string(format!("/proc/{keeper}/comm")).unwrap();
    assert_eq!(comm.trim(), "turbo-daemon", "the keeper's short name");
    let cmdline = std::fs::read(format!("/proc/{keeper}/cmdline")).unwrap();
    assert!(
        cmdline.starts_with(b"turbo-daemon\0--log-keeper\0"),
        "argv: {}",
        String::from_utf8_lossy(&cmdline)
    );
    let ps = Command::new("ps")
        .args(["-C", "turbo-daemon", "-o", "pid="])
        .output()
        .expect("ps (procps)");
    let listed: Vec<u64> = String::from_utf8_lossy(&ps.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert!(
        listed.contains(&keeper),
        "ps -C turbo-daemon lists {listed:?}, not {keeper}"
    );

    // the home's permissions, made wrong on purpose: only the peer check is left to refuse
    let socket = d.home().join("keeper.sock");
    std::fs::set_permissions(d.home(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(
        keeper_answer_as_nobody(&socket),
        "hung up",
        "uid 65534 got an answer"
    );
    let log = std::fs::read_to_string(d.home().join("keeper.log")).unwrap();
    assert!(
        log.contains("refused a connection from uid 65534")
            && log.contains("only uid 0 may talk to it"),
        "keeper.log: {log}"
    );
    // and the keeper goes on with its own daemon: a new process's pipes are registered, read
    let old = d.app("talk")["pid"].as_u64().unwrap();
    d.turbo_ok(&["restart", "talk"]);
    d.wait_app("talk", "running with a new pid", |a| {
        a["state"] == "online" && a["pid"].as_u64().is_some_and(|p| p != old)
    });
    let out = d.app("talk")["out_log"].as_str().unwrap().to_owned();
    let before = std::fs::metadata(&out).unwrap().len();
    wait_for(
        "more ticks after the refusal",
        Duration::from_secs(10),
        || (std::fs::metadata(&out).unwrap().len() > before + 20).then_some(()),
    );
    assert_eq!(turbo_tests::keeper_pid(d.home()), Some(keeper));
}

#[test]
fn max_size_off_never_rotates_and_a_terabyte_is_a_size() {
    let d = TestDaemon::start("off");
    start_floods(
        &d,
        "big",
        &[
            ("never", "{ max_size: off }"),
            ("huge", "{ max_size: 1tb, keep: 2 }"),
        ],
    );
    for app in ["never", "huge"] {
        let out = std::path::PathBuf::from(d.app(app)["out_log"].as_str().unwrap());
        wait_for(
            &format!("{app}: line 3000"),
            Duration::from_secs(10),
            || {
                numbers(&std::fs::read_to_string(&out).unwrap_or_default())
                    .contains(&3000)
                    .then_some(())
            },
        );
        let all = numbers(&std::fs::read_to_string(&out).unwrap());
        assert_eq!(
            all,
            (1..=3000).collect::<Vec<_>>(),
            "{app}: one file holds it all"
        );
        let rotated = rotated_names(&out);
        assert!(rotated.is_empty(), "{app} rotated: {rotated:?}");
    }
    // a size too small to be meant is refused, naming the way to turn rotation off
    let bad = d.config(
        "small",
        "apps:\n  - name: tiny\n    cmd: [sleep, '1000']\n    log: { max_size: 100 }\n",
    );
    let out = d.turbo(&["start", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("log.max_size 100 is too small")
            && err.contains("`off` (or 0) to never rotate"),
        "{err}"
    );
}

/// `(label, instance the line says it came from, line)` of each `turbo logs` output line
/// `<label> out | <stamp> from <K> n <i>`.
fn labelled(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .map(|l| {
            let (label, rest) = l.split_once(" out | ").unwrap_or_else(|| panic!("{l}"));
            let line = rest.split_once(' ').unwrap().1;
            let from = line
                .strip_prefix("from ")
                .and_then(|r| r.split_once(' '))
                .unwrap_or_else(|| panic!("{l}"))
                .0;
            (label.trim().to_owned(), from.to_owned(), line.to_owned())
        })
        .collect()
}

/// What `turbo logs APP --out --follow --lines 0` prints in 1.5 s (at least 30 lines, none twice),
/// and its [`labelled`] lines.
fn follow_out(d: &TestDaemon, app: &str) -> (String, Vec<(String, String, String)>) {
    let follower = Command::new(turbo_tests::bin_dir().join("turbo"))
        .args(["logs", app, "--out", "--follow", "--lines", "0"])
        .env("TURBO_HOME", d.home())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let text = interrupt_and_read(follower);
    let shown = labelled(&text);
    assert!(shown.len() >= 30, "followed too little:\n{text}");
    let mut lines: Vec<&String> = shown.iter().map(|(_, _, l)| l).collect();
    lines.sort();
    let before = lines.len();
    lines.dedup();
    assert_eq!(lines.len(), before, "a followed line shown twice:\n{text}");
    (text, shown)
}

#[test]
fn each_line_shows_once_labelled_with_the_instance_that_wrote_it() {
    let d = TestDaemon::start("off");
    d.turbo_ok(&[
        "start",
        "sh",
        "--name",
        "cw",
        "--instances",
        "3",
        "--",
        "-c",
        "i=1; while :; do echo \"from $TURBO_INSTANCE n $i\"; i=$((i+1)); sleep 0.02; done",
    ]);
    let out = std::path::PathBuf::from(d.app("cw")["out_log"].as_str().unwrap());
    wait_for("30 lines of each instance", Duration::from_secs(15), || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        (0..3)
            .all(|k| text.contains(&format!("from {k} n 30\n")))
            .then_some(())
    });

    // every instance's lines, once each, labelled with the instance that wrote them
    let text = d.turbo_ok(&["logs", "cw", "--out", "--lines", "30"]);
    let shown = labelled(&text);
    assert_eq!(
        shown.len(),
        30,
        "--lines 30 of the shared file, once:\n{text}"
    );
    let mut unique: Vec<&String> = shown.iter().map(|(_, _, l)| l).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 30, "a line shown twice:\n{text}");
    for (label, from, line) in &shown {
        assert_eq!(*label, format!("cw:{from}"), "{line}");
    }

    // `name:N`: only that instance, its last N lines
    let one = d.turbo_ok(&["logs", "cw:1", "--out", "--lines", "5"]);
    let shown = labelled(&one);
    assert_eq!(shown.len(), 5, "{one}");
    assert!(
        shown.iter().all(|(l, f, _)| l == "cw:1" && f == "1"),
        "{one}"
    );
    let missing = d.turbo(&["logs", "cw:7"]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("'cw' has no instance 7"), "{err}");

    // json: instance and pid of the process that wrote the line
    let pids: std::collections::HashMap<u64, u64> = d
        .status()
        .iter()
        .filter(|a| a["name"] == "cw")
        .map(|a| (a["instance"].as_u64().unwrap(), a["pid"].as_u64().unwrap()))
        .collect();
    let json = d.turbo_ok(&["logs", "cw", "--out", "--lines", "12", "--json"]);
    for rec in json.lines().map(turbo_tests::json) {
        let line = rec["line"].as_str().unwrap();
        let instance = rec["instance"].as_u64().unwrap_or_else(|| panic!("{rec}"));
        assert!(line.starts_with(&format!("from {instance} ")), "{rec}");
        assert_eq!(rec["pid"].as_u64(), Some(pids[&instance]), "{rec}");
    }

    // following: each new line once (the file is read once, not once per instance)
    let (_, shown) = follow_out(&d, "cw");
    for (label, from, line) in &shown {
        assert_eq!(*label, format!("cw:{from}"), "{line}");
    }
}

/// `log: {per_instance: true}`: each instance writes files of its own, `turbo logs name` merges
/// them (each line once, labelled), `name:N` reads one instance's, and `flush` empties them all.
#[test]
fn per_instance_files_hold_one_instance_each_and_logs_merges_them() {
    let d = TestDaemon::start("off");
    let yml = d.config(
        "pi",
        "apps:\n  - name: pi\n    instances: 2\n    cmd: [sh, -c, 'i=1; while :; do echo \"from $TURBO_INSTANCE n $i\"; i=$((i+1)); sleep 0.02; done']\n    log: {per_instance: true}\n",
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let files: Vec<(u64, std::path::PathBuf, std::path::PathBuf)> = d
        .status()
        .iter()
        .filter(|a| a["name"] == "pi")
        .map(|a| {
            let path = |key: &str| std::path::PathBuf::from(a[key].as_str().unwrap());
            (
                a["instance"].as_u64().unwrap(),
                path("out_log"),
                path("err_log"),
            )
        })
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for (n, out, err) in &files {
        assert!(
            out.ends_with(format!("pi-out-{n}.log")),
            "{}",
            out.display()
        );
        assert!(
            err.ends_with(format!("pi-err-{n}.log")),
            "{}",
            err.display()
        );
    }
    wait_for(
        "30 lines in each instance's file",
        Duration::from_secs(15),
        || {
            files
                .iter()
                .all(|(n, out, _)| {
                    std::fs::read_to_string(out)
                        .unwrap_or_default()
                        .contains(&format!("from {n} n 30\n"))
                })
                .then_some(())
        },
    );
    // the shared file is not written at all
    assert!(!files[0].1.with_file_name("pi-out.log").exists());
    for (n, out, _) in &files {
        let text = std::fs::read_to_string(out).unwrap();
        let strangers: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains(&format!("] from {n} n ")))
            .collect();
        assert!(strangers.is_empty(), "pi:{n}'s file holds {strangers:?}");
    }

    // both files, each line once, labelled with its instance, in stamp order
    let text = d.turbo_ok(&["logs", "pi", "--out", "--lines", "40"]);
    let shown = labelled(&text);
    assert_eq!(shown.len(), 40, "{text}");
    let mut unique: Vec<&String> = shown.iter().map(|(_, _, l)| l).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 40, "a line shown twice:\n{text}");
    for (label, from, line) in &shown {
        assert_eq!(*label, format!("pi:{from}"), "{line}");
    }
    for n in ["0", "1"] {
        assert!(
            shown.iter().any(|(_, f, _)| f == n),
            "no line of pi:{n}:\n{text}"
        );
    }
    let stamps: Vec<&str> = text
        .lines()
        .map(|l| {
            l.split_once(" out | ")
                .unwrap()
                .1
                .split_once(' ')
                .unwrap()
                .0
        })
        .collect();
    assert!(stamps.is_sorted(), "not merged by stamp:\n{text}");

    // `name:N`: only that instance's file
    let one = d.turbo_ok(&["logs", "pi:1", "--out", "--lines", "5"]);
    let shown = labelled(&one);
    assert_eq!(shown.len(), 5, "{one}");
    assert!(
        shown.iter().all(|(l, f, _)| l == "pi:1" && f == "1"),
        "{one}"
    );

    // following both files: each new line once, labelled
    let (text, shown) = follow_out(&d, "pi");
    for n in ["0", "1"] {
        assert!(
            shown
                .iter()
                .any(|(l, f, _)| f == n && *l == format!("pi:{n}")),
            "{text}"
        );
    }

    // flush empties every instance's file
    d.turbo_ok(&["flush", "pi"]);
    for (n, out, _) in &files {
        let text = std::fs::read_to_string(out).unwrap();
        assert!(
            !text.contains(&format!("from {n} n 30\n")),
            "pi:{n}'s file not flushed:\n{text}"
        );
    }
}

#[test]
fn since_until_and_grep_search_through_rotated_files() {
    let d = TestDaemon::start("off");
    let yml = d.config(
        "search",
        "apps:\n  - name: hay\n    cmd: [sh, -c, 'i=1; while [ $i -le 400 ]; do if [ $((i % 10)) -eq 0 ]; then echo \"needle $i\"; else echo \"line $i\"; fi; i=$((i+1)); sleep 0.005; done; sleep 1000']\n    log: { max_size: 2k, keep: 100 }\n",
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let out = std::path::PathBuf::from(d.app("hay")["out_log"].as_str().unwrap());
    wait_for("needle 400", Duration::from_secs(20), || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("needle 400\n")
            .then_some(())
    });
    let rotated = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("hay-out.log."))
        .count();
    assert!(
        rotated >= 5,
        "the test wants several rotated files: {rotated}"
    );
    let numbers_of = |text: &str, word: &str| -> Vec<u64> {
        text.lines()
            .filter_map(|l| l.split_once(&format!(" {word} "))?.1.trim().parse().ok())
            .collect()
    };

    // every needle, oldest first, from the oldest rotated file to the current one
    let found = d.turbo_ok(&[
        "logs", "hay", "--out", "--grep", "needle", "--lines", "1000",
    ]);
    let want: Vec<u64> = (1..=40).map(|i| i * 10).collect();
    assert_eq!(numbers_of(&found, "needle"), want, "{found}");
    assert_eq!(numbers_of(&found, "line"), Vec::<u64>::new());
    // --lines counts the matches
    let last3 = d.turbo_ok(&["logs", "hay", "--out", "--grep", "needle", "--lines", "3"]);
    assert_eq!(numbers_of(&last3, "needle"), [380, 390, 400], "{last3}");

    // --since a record's own stamp: that record and everything after it, nothing before
    let all = d.turbo_ok(&["logs", "hay", "--out", "--since", "1d", "--lines", "1000"]);
    let line_200 = all
        .lines()
        .find(|l| l.ends_with(" needle 200"))
        .unwrap_or_else(|| panic!("{all}"));
    let stamp = line_200
        .split(" | ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    // the records at or after (before) the stamp, by the stamps `--since 1d` showed: RFC 3339
    // UTC stamps of one length order as text
    let stamp_of = |l: &str| {
        l.split(" | ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    let expect = |keep: &dyn Fn(&str) -> bool| -> Vec<String> {
        all.lines()
            .filter(|l| keep(&stamp_of(l)))
            .map(str::to_owned)
            .collect()
    };
    let since = d.turbo_ok(&["logs", "hay", "--out", "--since", stamp, "--lines", "1000"]);
    let want = expect(&|s| s >= stamp);
    assert!(want.len() < all.lines().count() && want.iter().any(|l| l.ends_with(" needle 200")));
    assert_eq!(since.lines().collect::<Vec<_>>(), want, "--since {stamp}");
    let until = d.turbo_ok(&["logs", "hay", "--out", "--until", stamp, "--lines", "1000"]);
    let want = expect(&|s| s <= stamp);
    assert!(want.iter().any(|l| l.ends_with(" line 1")));
    assert_eq!(until.lines().collect::<Vec<_>>(), want, "--until {stamp}");
    let none = d.turbo_ok(&["logs", "hay", "--out", "--until", "2000-01-01"]);
    assert!(none.trim().is_empty(), "{none}");

    let bad = d.turbo(&["logs", "hay", "--since", "yesterday"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("--since 'yesterday' is not a time") && err.contains("10m"),
        "{err}"
    );
}

#[test]
fn rotated_files_are_compressed_and_turbo_logs_reads_them_through() {
    let d = TestDaemon::start("off");
    start_floods(
        &d,
        "packed",
        &[
            ("gz", "{ max_size: 4k, keep: 4, compress: true }"),
            ("zs", "{ max_size: 4k, keep: 4, compress: zstd }"),
        ],
    );
    for (app, suffix) in [("gz", ".gz"), ("zs", ".zst")] {
        let out = std::path::PathBuf::from(d.app(app)["out_log"].as_str().unwrap());
        let dir = out.parent().unwrap().to_owned();
        let prefix = format!("{app}-out.log.");
        let rotated = || rotated_names(&out);
        let want = [
            format!("{prefix}1"),
            format!("{prefix}2{suffix}"),
            format!("{prefix}3{suffix}"),
            format!("{prefix}4{suffix}"),
        ];
        wait_for(
            &format!("{app}: line 3000 written and .2-.4 compressed"),
            Duration::from_secs(15),
            || {
                (numbers(&std::fs::read_to_string(&out).unwrap_or_default()).last() == Some(&3000)
                    && rotated() == want)
                    .then_some(())
            },
        );
        // the files are what the standard tools read
        let tool = if suffix == ".gz" { "gzip" } else { "zstd" };
        let plain = Command::new(tool)
            .arg("-dc")
            .arg(dir.join(&want[1]))
            .output()
            .unwrap_or_else(|e| panic!("{tool} (Debian package {tool}): {e}"));
        assert!(plain.status.success(), "{tool} -dc {}", want[1]);
        assert!(!numbers(&String::from_utf8_lossy(&plain.stdout)).is_empty());
        // `turbo logs` reads every file, compressed or not: one contiguous run ending at 3000
        let text = d.turbo_ok(&["logs", app, "--out", "--lines", "3000", "--raw"]);
        let shown: Vec<u64> = text
            .lines()
            .filter_map(|l| l.rsplit_once("line ")?.1.parse().ok())
            .collect();
        let first = shown[0];
        assert!(
            first > 1 && first < 3000 - 4 * 80,
            "{app}: starts at {first}"
        );
        assert_eq!(shown, (first..=3000).collect::<Vec<_>>(), "{app}");
        // and searching goes through them too
        let found = d.turbo_ok(&[
            "logs",
            app,
            "--out",
            "--grep",
            &format!("line {first}"),
            "--lines",
            "1000",
        ]);
        let first_found = found.lines().next().unwrap_or_default();
        assert!(
            first_found.ends_with(&format!("line {first}")),
            "{app}: {found}"
        );
    }
}

#[test]
fn daily_rotation_on_a_fast_clock_leaves_compressed_days_that_since_reads() {
    // the log clock starts at 2026-01-02T12:00:00Z and runs a day every 6 s (the test reads
    // the files between two midnights)
    let mut d = TestDaemon::spawn_with_env("off", &[("TURBO_TEST_LOG_CLOCK", "1767355200x14400")]);
    d.wait_answering();
    let yml = d.config(
        "days",
        "apps:\n  - name: days\n    cmd: [sh, -c, 'i=1; while :; do echo \"tick $i\"; i=$((i+1)); sleep 0.05; done']\n    log: { rotate: daily, max_size: off, keep: 5, compress: zstd }\n",
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let out = std::path::PathBuf::from(d.app("days")["out_log"].as_str().unwrap());
    let names = |n: usize| {
        let mut want = vec!["days-out.log.1".to_owned()];
        want.extend((2..=n).map(|k| format!("days-out.log.{k}.zst")));
        want
    };
    wait_for(
        "two midnights and a compressed day",
        Duration::from_secs(30),
        || (rotated_names(&out) == names(2)).then_some(()),
    );
    let unpacked = |name: &str| -> String {
        let path = out.parent().unwrap().join(name);
        if !name.ends_with(".zst") {
            return std::fs::read_to_string(path).unwrap();
        }
        let plain = Command::new("zstd")
            .arg("-dc")
            .arg(&path)
            .output()
            .expect("zstd");
        assert!(plain.status.success());
        String::from_utf8(plain.stdout).unwrap()
    };
    // each file holds one day, in order
    let day_of = |text: &str| -> Vec<String> {
        let mut days: Vec<String> = text.lines().map(|l| l[..10].to_owned()).collect();
        days.dedup();
        days
    };
    let first_day = unpacked("days-out.log.2.zst");
    assert_eq!(day_of(&first_day), ["2026-01-02"], "{first_day}");
    assert_eq!(day_of(&unpacked("days-out.log.1")), ["2026-01-03"]);
    // `--since`/`--until` pick that day out of the compressed file
    let shown = d.turbo_ok(&[
        "logs",
        "days",
        "--out",
        "--raw",
        "--since",
        "2026-01-02",
        "--until",
        "2026-01-02T23:59:59.999Z",
        "--lines",
        "100000",
    ]);
    let strip = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.split_once(" | ").map_or(l, |(_, r)| r).to_owned())
            .collect()
    };
    let want: Vec<String> = first_day
        .lines()
        .map(|l| {
            // the file's `<stamp>[<instance>:<pid>] tick N` is shown as `<stamp> tick N`
            let (stamp, rest) = l.split_at(24);
            format!("{stamp} {}", rest.split_once("] ").unwrap().1)
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(strip(&shown), want);
}

#[test]
fn all_merges_every_log_into_one_timeline_and_instance_filters() {
    let d = TestDaemon::start("off");
    let tick = |name: &str, instances: &str| {
        d.turbo_ok(&[
            "start",
            "sh",
            "--name",
            name,
            "--instances",
            instances,
            "--",
            "-c",
            "i=1; while :; do echo \"from $TURBO_INSTANCE n $i\"; echo \"e $i\" >&2; i=$((i+1)); sleep 0.03; done",
        ]);
    };
    tick("ta", "2");
    tick("tb", "1");
    for app in ["ta", "tb"] {
        let out = std::path::PathBuf::from(d.app(app)["out_log"].as_str().unwrap());
        wait_for("20 lines", Duration::from_secs(15), || {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            text.contains("from 0 n 20\n").then_some(())
        });
    }

    // one timeline across apps and streams: --lines counts the whole of it, in time order
    let text = d.turbo_ok(&["logs", "--all", "--lines", "40"]);
    let rows: Vec<(&str, &str)> = text
        .lines()
        .map(|l| {
            let (label, rest) = l
                .split_once(" out | ")
                .or_else(|| l.split_once(" err | "))
                .unwrap_or_else(|| panic!("{l}"));
            (label.trim(), rest.split_once(' ').unwrap().0)
        })
        .collect();
    assert_eq!(rows.len(), 40, "{text}");
    let stamps: Vec<&str> = rows.iter().map(|(_, at)| *at).collect();
    let mut sorted = stamps.clone();
    sorted.sort_unstable();
    assert_eq!(stamps, sorted, "in time order:\n{text}");
    for label in ["ta:0", "ta:1", "tb"] {
        assert!(rows.iter().any(|(l, _)| *l == label), "{label}:\n{text}");
    }
    assert!(text.contains(" err | "), "stderr merged in:\n{text}");

    // --instance N: instance N of every app shown (tb has none: only ta:1 is left)
    let one = d.turbo_ok(&["logs", "--instance", "1", "--out", "--lines", "5"]);
    let shown = labelled(&one);
    assert_eq!(shown.len(), 5, "{one}");
    assert!(
        shown.iter().all(|(l, f, _)| l == "ta:1" && f == "1"),
        "{one}"
    );
    let clash = d.turbo(&["logs", "ta:0", "--instance", "1"]);
    let err = String::from_utf8_lossy(&clash.stderr);
    assert!(
        !clash.status.success() && err.contains("name different instances"),
        "{err}"
    );
    // --time: the stamp on another clock, RFC 3339 at its offset
    let shifted = d.turbo_ok(&["logs", "tb", "--out", "--lines", "1", "--time", "+05:30"]);
    let stamp = shifted
        .split_once(" | ")
        .unwrap()
        .1
        .split_once(' ')
        .unwrap()
        .0;
    assert!(stamp.len() == 29 && stamp.ends_with("+05:30"), "{shifted}");
    let wrong = d.turbo(&["logs", "tb", "--time", "mars"]);
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success() && err.contains("--time 'mars' is not a clock"),
        "{err}"
    );
    let none = d.turbo(&["logs", "tb", "--instance", "3"]);
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(
        !none.status.success() && err.contains("no app shown has an instance 3"),
        "{err}"
    );
}

#[test]
fn max_age_deletes_rotated_days_older_than_it_whatever_keep_allows() {
    // a day every 1.5 s from 2026-01-02T12:00:00Z; the app writes every 50 ms (48 log-clock
    // minutes), so each file's last write is within an hour of its midnight
    let mut d = TestDaemon::spawn_with_env("off", &[("TURBO_TEST_LOG_CLOCK", "1767355200x57600")]);
    d.wait_answering();
    let yml = d.config(
        "aged",
        "apps:\n  - name: aged\n    cmd: [sh, -c, 'i=1; while :; do echo \"tick $i\"; i=$((i+1)); sleep 0.05; done']\n    log: { rotate: daily, max_size: off, keep: 50, max_age: 36h }\n",
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let out = std::path::PathBuf::from(d.app("aged")["out_log"].as_str().unwrap());
    wait_for("the sixth day", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        text.lines()
            .any(|l| l.starts_with("2026-01-06T"))
            .then_some(())
    });
    // four midnights have passed; only the two days younger than 36 h are left
    assert_eq!(
        rotated_names(&out),
        ["aged-out.log.1", "aged-out.log.2"],
        "keep: 50 would keep them all"
    );
    let first = |name: &str| {
        let text = std::fs::read_to_string(out.parent().unwrap().join(name)).unwrap();
        text[..10].to_owned()
    };
    assert_eq!(first("aged-out.log.1"), "2026-01-05");
    assert_eq!(first("aged-out.log.2"), "2026-01-04");
}

#[test]
fn a_log_file_removed_behind_the_keepers_back_is_made_anew_and_loses_nothing_after() {
    let d = TestDaemon::start("off");
    start_floods(&d, "gone", &[("gone", "{ max_size: 10mb }")]);
    let out = std::path::PathBuf::from(d.app("gone")["out_log"].as_str().unwrap());
    let full = |what: &str| {
        wait_for(what, Duration::from_secs(20), || {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            (numbers(&text) == (1..=3000).collect::<Vec<_>>()).then_some(())
        });
    };
    full("the first run's lines");
    // a delete, the files removed, the same app started again: the keeper still has a writer
    // for the name, and must not write on into the unlinked file
    d.turbo_ok(&["delete", "gone"]);
    std::fs::remove_file(&out).unwrap();
    start_floods(&d, "gone", &[("gone", "{ max_size: 10mb }")]);
    full("the second run's lines, in a new file");

    // removed while the app runs: a new file of that name within a second, and what the app
    // writes after that is in it
    let ticker = d.config(
        "tick",
        "apps:\n  - name: tick\n    cmd: [sh, -c, 'i=1; while true; do echo \"line $i\"; i=$((i+1)); sleep 0.05; done']\n",
    );
    d.turbo_ok(&["start", ticker.to_str().unwrap()]);
    let tick = std::path::PathBuf::from(d.app("tick")["out_log"].as_str().unwrap());
    wait_for("ticks", Duration::from_secs(10), || {
        tick.exists().then_some(())
    });
    std::fs::remove_file(&tick).unwrap();
    let after = wait_for("a new file with ticks", Duration::from_secs(10), || {
        let got = numbers(&std::fs::read_to_string(&tick).ok()?);
        (got.len() >= 20).then_some(got)
    });
    assert!(
        after.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive from the reopening on: {after:?}"
    );
}

#[test]
fn rotated_files_are_compressed_while_an_app_floods_without_pause() {
    // 64 KiB of numbered lines every 5 ms (about 13 MB/s): every read of the keeper is a
    // flood batch and no pause is long enough for the compression worker, which then compresses
    // each rotated file at most 2 s after its rotation anyway; 1 MB files and keep: 100 keep
    // each file about 8 s, long past that bound
    let d = TestDaemon::start("off");
    let flood = "import os, time\\nn = 0\\nwhile True:\\n    chunk = b''.join(b'%010d %s\\\\n' % (n + i, b'x' * 88) for i in range(655))\\n    os.write(1, chunk)\\n    n += 655\\n    time.sleep(0.005)\\n";
    let yml = d.config(
        "flood",
        &format!(
            "apps:\n  - name: flood\n    cmd: [python3, -c, \"{flood}\"]\n    log: {{ max_size: 1mb, keep: 100, compress: zstd }}\n"
        ),
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let out = std::path::PathBuf::from(d.app("flood")["out_log"].as_str().unwrap());
    wait_for(
        "a rotated file compressed while the app floods",
        Duration::from_secs(30),
        || {
            rotated_names(&out)
                .iter()
                .any(|n| n.ends_with(".zst"))
                .then_some(())
        },
    );
    // the flood went on meanwhile: the app still runs and the log rotates on
    let rotations = rotated_names(&out).len();
    assert_eq!(d.app("flood")["state"], "online");
    wait_for("more rotations", Duration::from_secs(10), || {
        (rotated_names(&out).len() > rotations + 2).then_some(())
    });
    d.turbo_ok(&["stop", "flood"]);
    // once the flood is over the rest is compressed at once; then the files, oldest first,
    // hold one run of whole lines
    let names = wait_for(
        "every rotated file but .1 compressed",
        Duration::from_secs(30),
        || {
            let names = rotated_names(&out);
            (names.iter().filter(|n| !n.ends_with(".zst")).count() == 1).then_some(names)
        },
    );
    let mut files: Vec<(u32, String)> = names
        .into_iter()
        .map(|n| {
            let k = n.split('.').nth(2).unwrap().parse().unwrap();
            (k, n)
        })
        .collect();
    files.sort_unstable_by_key(|&(k, _)| std::cmp::Reverse(k));
    let dir = out.parent().unwrap();
    let mut text = Vec::new();
    for (_, name) in &files {
        if name.ends_with(".zst") {
            let plain = Command::new("zstd")
                .arg("-dc")
                .arg(dir.join(name))
                .output()
                .expect("zstd (Debian package zstd)");
            assert!(plain.status.success(), "zstd -dc {name}");
            text.extend(plain.stdout);
        } else {
            text.extend(std::fs::read(dir.join(name)).unwrap());
        }
    }
    text.extend(std::fs::read(&out).unwrap());
    let numbers: Vec<u64> = String::from_utf8_lossy(&text)
        .lines()
        .map(|l| {
            assert!(l.ends_with(&"x".repeat(88)), "{l}");
            let n = l.rsplit(' ').nth(1).unwrap_or_default();
            n.parse().unwrap_or_else(|_| panic!("{l}"))
        })
        .collect();
    assert!(files.len() > 5, "{files:?}");
    let first = numbers[0];
    let want: Vec<u64> = (first..first + numbers.len() as u64).collect();
    assert!(
        numbers == want,
        "the lines of {files:?} are not one run from {first}"
    );
}
