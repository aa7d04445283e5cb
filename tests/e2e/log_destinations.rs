//! `log: {to: [file, journald, syslog]}` through the real binaries: a fake journald (a unix
//! datagram socket the test binds, checked by the native protocol's own rules) and a fake
//! syslog collector (a loopback TCP listener, RFC 5424 with octet-counting framing) get every
//! line of a flooding app with the right fields; with both absent the app is never held up and
//! every record is counted as dropped.

use std::{
    collections::BTreeMap,
    io::Read as _,
    net::TcpListener,
    os::unix::net::UnixDatagram,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use turbo_tests::{TestDaemon, wait_for};

use crate::metrics::{daemon_with_metrics, free_port, scrape};

/// Lines of stdout and stderr each instance writes.
const OUT_LINES: u32 = 2000;
const ERR_LINES: u32 = 20;

/// A forward counter's value (the metrics module's reader, as an integer).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "counters of a few thousand records"
    )]
    crate::metrics::value(text, name, labels).map(|v| v as u64)
}

/// A two-instance app that writes its lines at once and then sleeps.
fn flood_config(d: &TestDaemon, dir: &str, log: &str) -> String {
    let cmd = format!(
        "cmd: [sh, -c, 'i=1; while [ $i -le {OUT_LINES} ]; do echo \"line $i\"; if [ $((i % 100)) -eq 0 ]; then echo \"oops $i\" >&2; fi; i=$((i+1)); done; sleep 1000']"
    );
    let yml = format!("apps:\n  - name: fw\n    instances: 2\n    {cmd}\n    log: {log}\n");
    d.config(dir, &yml).to_str().unwrap().to_owned()
}

/// Parses one native-protocol datagram by the protocol's rules: `NAME=value\n`, or `NAME\n`,
/// a little-endian u64 length, the value and `\n`.
fn journal_fields(mut d: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    while !d.is_empty() {
        let nl = d
            .iter()
            .position(|&b| b == b'\n')
            .expect("field ends in \\n");
        let head = &d[..nl];
        let (name, value, rest) = match head.iter().position(|&b| b == b'=') {
            Some(eq) => (&head[..eq], &head[eq + 1..], &d[nl + 1..]),
            None => {
                let len = u64::from_le_bytes(d[nl + 1..nl + 9].try_into().unwrap()) as usize;
                let end = nl + 9 + len;
                assert_eq!(d[end], b'\n', "a binary field ends in \\n");
                (head, &d[nl + 9..end], &d[end + 1..])
            }
        };
        let name = String::from_utf8(name.to_vec()).unwrap();
        assert!(
            !name.is_empty()
                && !name.starts_with('_')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
            "journald accepts only A-Z, 0-9 and _ in field names, not leading _: {name:?}"
        );
        out.insert(name, String::from_utf8_lossy(value).into_owned());
        d = rest;
    }
    out
}

/// Reads RFC 6587 octet-counted frames from one connection until `want` came or 60 s passed.
fn read_frames(listener: TcpListener, want: usize, tx: mpsc::Sender<Vec<String>>) {
    let (mut s, _) = listener.accept().expect("the keeper connects");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut raw, mut frames) = (Vec::new(), Vec::new());
    let mut buf = vec![0; 64 * 1024];
    while frames.len() < want && Instant::now() < deadline {
        if let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        while let Some(sp) = raw.iter().position(|&b| b == b' ') {
            let len: usize = std::str::from_utf8(&raw[..sp])
                .unwrap()
                .parse()
                .expect("a frame length");
            if raw.len() < sp + 1 + len {
                break;
            }
            frames.push(String::from_utf8_lossy(&raw[sp + 1..sp + 1 + len]).into_owned());
            raw.drain(..sp + 1 + len);
        }
    }
    tx.send(frames).unwrap();
}

#[test]
fn journald_and_syslog_get_every_line_of_a_flood_with_its_fields() {
    let (d, metrics) = daemon_with_metrics("off", &[]);
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.sock");
    let jrx = UnixDatagram::bind(&journal).unwrap();
    let syslog = TcpListener::bind("127.0.0.1:0").unwrap();
    let syslog_addr = syslog.local_addr().unwrap();
    let want = (2 * (OUT_LINES + ERR_LINES)) as usize;
    let (jtx, jdone) = mpsc::channel();
    thread::spawn(move || {
        jrx.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0; 128 * 1024];
        while got.len() < want {
            let Ok(n) = jrx.recv(&mut buf) else { break };
            got.push(journal_fields(&buf[..n]));
        }
        jtx.send(got).unwrap();
    });
    let (stx, sdone) = mpsc::channel();
    thread::spawn(move || read_frames(syslog, want, stx));

    let yml = flood_config(
        &d,
        "fw",
        &format!(
            "{{ to: [file, journald, syslog], journald_socket: {}, syslog_address: 'tcp://{syslog_addr}', err_priority: err }}",
            journal.display()
        ),
    );
    d.turbo_ok(&["start", &yml]);

    let entries = jdone.recv_timeout(Duration::from_secs(90)).unwrap();
    assert_eq!(entries.len(), want, "journald got every record");
    let mut seen: BTreeMap<(String, String), u32> = BTreeMap::new();
    for e in &entries {
        assert_eq!(e["SYSLOG_IDENTIFIER"], "fw");
        assert_eq!(e["TURBO_APP"], "fw");
        assert_eq!(e["SYSLOG_FACILITY"], "3");
        assert_eq!(e["SYSLOG_PID"], e["TURBO_PID"]);
        let (stream, priority) = (&e["TURBO_STREAM"], &e["PRIORITY"]);
        match stream.as_str() {
            "out" => assert_eq!(priority, "6", "{e:?}"),
            "err" => assert_eq!(priority, "3", "err_priority: err: {e:?}"),
            other => panic!("stream {other}"),
        }
        *seen
            .entry((e["TURBO_INSTANCE"].clone(), stream.clone()))
            .or_default() += 1;
    }
    for instance in ["0", "1"] {
        assert_eq!(
            seen[&(instance.into(), "out".into())],
            OUT_LINES,
            "{seen:?}"
        );
        assert_eq!(
            seen[&(instance.into(), "err".into())],
            ERR_LINES,
            "{seen:?}"
        );
    }
    let lines: Vec<u32> = entries
        .iter()
        .filter(|e| e["TURBO_INSTANCE"] == "1" && e["TURBO_STREAM"] == "out")
        .map(|e| e["MESSAGE"].strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        lines,
        (1..=OUT_LINES).collect::<Vec<_>>(),
        "in order, none lost"
    );

    let frames = sdone.recv_timeout(Duration::from_secs(90)).unwrap();
    assert_eq!(frames.len(), want, "syslog got every record");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for f in &frames {
        // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG
        let parts: Vec<&str> = f.splitn(7, ' ').collect();
        let stdout = parts[0] == "<30>1";
        assert!(
            stdout || parts[0] == "<27>1",
            "daemon.info or daemon.err: {f}"
        );
        assert_eq!(parts[1].len(), 24, "RFC 3339 UTC with milliseconds: {f}");
        assert!(parts[1].ends_with('Z'), "{f}");
        assert_eq!(parts[2], hostname.trim());
        assert_eq!(parts[3], "fw");
        assert!(parts[4].parse::<u32>().is_ok(), "PROCID: {f}");
        assert_eq!(parts[5], if stdout { "stdout" } else { "stderr" });
        let (sd, msg) = parts[6].split_once("] ").unwrap();
        assert!(
            sd == "[turbo@32473 instance=\"0\"" || sd == "[turbo@32473 instance=\"1\"",
            "{f}"
        );
        assert!(
            msg.starts_with(if stdout { "line " } else { "oops " }),
            "{f}"
        );
    }

    // the file got them too, and the metrics count what went out
    let app = &d.status().into_iter().find(|a| a["name"] == "fw").unwrap();
    let out = std::path::PathBuf::from(app["out_log"].as_str().unwrap());
    wait_for("the file's last line", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        (text.matches(&format!("] line {OUT_LINES}\n")).count() == 2).then_some(())
    });
    let text = wait_for("forward metrics", Duration::from_secs(10), || {
        let t = scrape(&metrics);
        (value(
            &t,
            "turbo_log_forwarded_total",
            &[("to", "syslog"), ("stream", "out")],
        ) == Some(u64::from(2 * OUT_LINES)))
        .then_some(t)
    });
    for to in ["journald", "syslog"] {
        for (stream, n) in [("out", OUT_LINES), ("err", ERR_LINES)] {
            let labels = [("app", "fw"), ("to", to), ("stream", stream)];
            assert_eq!(
                value(&text, "turbo_log_forwarded_total", &labels),
                Some(u64::from(2 * n))
            );
            assert_eq!(
                value(&text, "turbo_log_forward_dropped_total", &labels),
                Some(0)
            );
        }
    }
}

#[test]
fn absent_receivers_cost_counted_drops_and_never_hold_the_app_up() {
    let (d, metrics) = daemon_with_metrics("off", &[]);
    let dir = tempfile::tempdir().unwrap();
    // nobody listens on either: the socket file does not exist, the port is closed
    let journal = dir.path().join("no-journal.sock");
    let port = free_port();
    let yml = flood_config(
        &d,
        "fwdown",
        &format!(
            "{{ to: [file, journald, syslog], journald_socket: {}, syslog_address: 'tcp://127.0.0.1:{port}' }}",
            journal.display()
        ),
    );
    d.turbo_ok(&["start", &yml]);
    let app = &d.status().into_iter().find(|a| a["name"] == "fw").unwrap();
    let out = std::path::PathBuf::from(app["out_log"].as_str().unwrap());
    // the app wrote everything: nothing waited for the absent receivers
    wait_for("every line in the file", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        (text.matches(&format!("] line {OUT_LINES}\n")).count() == 2).then_some(())
    });
    let text = wait_for("drop counters", Duration::from_secs(10), || {
        let t = scrape(&metrics);
        let all = ["journald", "syslog"].iter().all(|to| {
            value(
                &t,
                "turbo_log_forward_dropped_total",
                &[("to", to), ("stream", "out")],
            ) == Some(u64::from(2 * OUT_LINES))
        });
        all.then_some(t)
    });
    for to in ["journald", "syslog"] {
        let labels = [("app", "fw"), ("to", to), ("stream", "err")];
        assert_eq!(
            value(&text, "turbo_log_forward_dropped_total", &labels),
            Some(u64::from(2 * ERR_LINES))
        );
        assert_eq!(value(&text, "turbo_log_forwarded_total", &labels), Some(0));
    }
}

#[test]
fn log_destinations_are_checked_before_anything_starts() {
    let d = TestDaemon::start("off");
    for (log, says) in [
        (
            "{ to: [file, kafka] }",
            "log.to 'kafka' is not one of: file, journald, syslog",
        ),
        (
            "{ to: [syslog], syslog_address: 'udp://10.1.2.3:514' }",
            "is not on loopback",
        ),
        (
            "{ to: [file], journald_socket: /run/j.sock }",
            "log.to does not name journald",
        ),
        (
            "{ to: [journald], err_priority: loud }",
            "is not a syslog severity",
        ),
        ("{ to: [] }", "log.to is empty"),
    ] {
        let yml = d.config(
            "bad",
            &format!("apps:\n  - name: b\n    cmd: [true]\n    log: {log}\n"),
        );
        let out = d.turbo(&["start", yml.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{log}: {err}");
    }
    assert!(d.status().is_empty(), "nothing started");
}

#[test]
fn custom_log_paths_one_per_stream_or_combined_in_a_checked_directory() {
    use std::os::unix::fs::PermissionsExt as _;
    let d = TestDaemon::start("off");
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("applogs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cmd = "cmd: [sh, -c, 'echo hello out; echo hello err >&2; sleep 1000']";
    let yml = format!(
        "apps:\n  - name: split\n    {cmd}\n    log: {{ out: {0}/split.out, err: {0}/split.err }}\n  - name: both\n    {cmd}\n    log: {{ path: {0}/both.log }}\n  - name: each\n    instances: 2\n    cmd: [sh, -c, 'echo out of $TURBO_INSTANCE; echo err of $TURBO_INSTANCE >&2; sleep 1000']\n    log: {{ path: {0}/each.log, per_instance: true }}\n",
        logs.display()
    );
    let yml = d.config("paths", &yml);
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    let split = d.app("split");
    assert_eq!(split["out_log"], logs.join("split.out").to_str().unwrap());
    assert_eq!(split["err_log"], logs.join("split.err").to_str().unwrap());
    let both = d.app("both");
    assert_eq!(both["out_log"], both["err_log"]);
    let read = |name: &str| std::fs::read_to_string(logs.join(name)).unwrap_or_default();
    wait_for("the lines in their files", Duration::from_secs(10), || {
        (read("split.out").ends_with("] hello out\n")
            && read("split.err").ends_with("] hello err\n")
            && read("both.log").contains("] hello out\n")
            && read("both.log").contains("] hello err\n"))
        .then_some(())
    });
    // turbo logs reads them where they are, the combined file once
    let shown = d.turbo_ok(&["logs", "both", "--lines", "10"]);
    assert_eq!(shown.matches("hello").count(), 2, "{shown}");
    let shown = d.turbo_ok(&["logs", "split", "--err", "--lines", "10"]);
    assert!(
        shown.contains("hello err") && !shown.contains("hello out"),
        "{shown}"
    );

    // per_instance with a combined path: one combined file per instance, `-<N>` before `.log`
    for n in 0..2 {
        let status = d
            .status()
            .into_iter()
            .find(|a| a["name"] == "each" && a["instance"] == n)
            .unwrap();
        let file = format!("each-{n}.log");
        assert_eq!(status["out_log"], logs.join(&file).to_str().unwrap());
        assert_eq!(status["err_log"], status["out_log"]);
        wait_for("each instance's two lines", Duration::from_secs(10), || {
            let text = read(&file);
            (text.contains(&format!("] out of {n}\n")) && text.contains(&format!("] err of {n}\n")))
                .then_some(())
        });
        assert_eq!(read(&file).lines().count(), 2, "{}", read(&file));
    }
    let shown = d.turbo_ok(&["logs", "each", "--lines", "10"]);
    assert_eq!(shown.matches(" of ").count(), 4, "{shown}");
    let shown = d.turbo_ok(&["logs", "each:1", "--lines", "10"]);
    assert!(
        shown.matches(" of 1").count() == 2 && !shown.contains(" of 0"),
        "{shown}"
    );

    // a directory others may write to: they could plant a link the daemon writes through
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    // a link planted where the file goes is not followed
    let target = dir.path().join("target");
    std::fs::write(&target, "untouched\n").unwrap();
    std::os::unix::fs::symlink(&target, logs.join("link.log")).unwrap();
    for (name, log, says) in [
        (
            "opendir",
            format!("{{ out: {}/x.log }}", open.display()),
            "writable by its group or others",
        ),
        (
            "linked",
            format!("{{ path: {}/link.log }}", logs.display()),
            "cannot open log file",
        ),
        (
            "relative",
            "{ out: logs/x.log }".to_owned(),
            "is not an absolute file path",
        ),
        (
            "clash",
            format!("{{ path: {0}/a.log, out: {0}/b.log }}", logs.display()),
            "log.path is one file for both streams",
        ),
    ] {
        let yml = d.config(
            name,
            &format!("apps:\n  - name: {name}\n    {cmd}\n    log: {log}\n"),
        );
        let out = d.turbo(&["start", yml.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{name}: {err}");
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n");
    assert!(!open.join("x.log").exists());
}

/// A real `systemd-journald` in a journal namespace of its own (`systemd-journald NAME`, the
/// form systemd runs as `systemd-journald@NAME`): its sockets are under
/// `/run/systemd/journal.NAME/`, and it stores the journal in the test's directory, bound over
/// `/var/log/journal` in a private mount namespace so that the host's journal is never touched.
/// Stopped, and its socket directory removed, on drop.
struct Journald {
    child: std::process::Child,
    sockets: std::path::PathBuf,
    /// The directory `journalctl --directory` reads.
    journal: std::path::PathBuf,
}

impl Journald {
    fn start(store: &std::path::Path) -> Self {
        let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
        assert!(
            machine_id.trim().len() == 32,
            "systemd-journald needs /etc/machine-id (run systemd-machine-id-setup); this test cannot run without it"
        );
        let name = format!("turbotest{}", std::process::id());
        let sockets = std::path::PathBuf::from(format!("/run/systemd/journal.{name}"));
        // the mount namespace hides /var/log behind a tmpfs and binds the test's directory
        // at /var/log/journal, whatever the host has there
        let script = format!(
            "mount -t tmpfs tmpfs /var/log && mkdir /var/log/journal && mount --bind {} /var/log/journal && exec /lib/systemd/systemd-journald {name}",
            store.display()
        );
        let child = std::process::Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .env("SYSTEMD_LOG_TARGET", "console")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("unshare runs");
        let j = Self {
            child,
            journal: store.join(format!("{}.{name}", machine_id.trim())),
            sockets,
        };
        wait_for("journald's socket", Duration::from_secs(10), || {
            j.sockets.join("socket").exists().then_some(())
        });
        j
    }

    /// Every record journald stored for `app`, as journald's own reader gives them.
    fn records(&self, app: &str) -> Vec<serde_json::Value> {
        let out = std::process::Command::new("journalctl")
            .arg("--directory")
            .arg(&self.journal)
            .args(["-o", "json", "--no-pager", &format!("TURBO_APP={app}")])
            .output()
            .expect("journalctl runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("journalctl -o json gives one object a line"))
            .collect()
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.sockets);
    }
}

#[test]
fn a_real_journald_stores_every_record_and_journalctl_reads_the_fields_back() {
    let d = TestDaemon::start("off");
    let store = tempfile::tempdir().unwrap();
    let journald = Journald::start(store.path());
    let yml = flood_config(
        &d,
        "fwj",
        &format!(
            "{{ to: [file, journald], journald_socket: {}, err_priority: err }}",
            journald.sockets.join("socket").display()
        ),
    );
    d.turbo_ok(&["start", &yml]);
    let want = (2 * (OUT_LINES + ERR_LINES)) as usize;
    let records = wait_for(
        "journald to store every record",
        Duration::from_secs(60),
        || {
            let r = journald.records("fw");
            (r.len() >= want).then_some(r)
        },
    );
    assert_eq!(records.len(), want, "each record once");
    let pids: Vec<u64> = d
        .status()
        .iter()
        .filter(|a| a["name"] == "fw")
        .map(|a| a["pid"].as_u64().unwrap())
        .collect();
    let field = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_default().to_owned();
    for r in &records {
        assert_eq!(
            field(r, "_TRANSPORT"),
            "journal",
            "the native protocol: {r}"
        );
        assert_eq!(field(r, "SYSLOG_IDENTIFIER"), "fw");
        assert_eq!(field(r, "SYSLOG_PID"), field(r, "TURBO_PID"));
        let pid: u64 = field(r, "TURBO_PID").parse().unwrap();
        assert!(
            pids.contains(&pid),
            "the writing instance's pid {pid}: {pids:?}"
        );
        match field(r, "TURBO_STREAM").as_str() {
            "out" => assert_eq!(field(r, "PRIORITY"), "6"),
            "err" => assert_eq!(field(r, "PRIORITY"), "3"),
            other => panic!("stream {other}"),
        }
    }
    // journalctl's own field match, as an operator would filter: one instance's stdout, in order
    for instance in ["0", "1"] {
        let out = std::process::Command::new("journalctl")
            .arg("--directory")
            .arg(&journald.journal)
            .args([
                "-o",
                "cat",
                "--no-pager",
                "TURBO_APP=fw",
                &format!("TURBO_INSTANCE={instance}"),
                "TURBO_STREAM=out",
            ])
            .output()
            .unwrap();
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        let expect: Vec<String> = (1..=OUT_LINES).map(|i| format!("line {i}")).collect();
        assert_eq!(lines, expect, "instance {instance}: every line, in order");
    }
}
