//! The CLI-side holes of issue 15 and what a new user ran into, each through the real binaries:
//! a bus socket planted by another user gets nothing (item 2); app bytes reach the terminal
//! escaped (item 10); a FIFO given as config is refused at once (item 16); `monit` under
//! `script -qc`; `turbo start "cmd args"`; `turbo import pm2 ecosystem.config.js`; instances
//! named once; the crash header's code; `--restart-delay`.

use std::{
    io::{Read as _, Write as _},
    os::unix::fs::{PermissionsExt as _, chown, lchown},
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use turbo_tests::{
    TestDaemon, bin_dir, is_root, json, one_line_error, runnable_by_anyone, wait_for,
};

/// The bytes a hostile app writes: set the title (OSC 0), clear the screen (CSI 2J), write the
/// clipboard (OSC 52), then text.
const HOSTILE_OUT: &str = r"printf '\033]0;pwned-title\007\033[2J\033]52;c;ZXZpbA==\007visible\n'";
/// How those bytes must look in text output.
const ESCAPED_OUT: &str = r"\x1b]0;pwned-title\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07visible";

/// No ESC, BEL or C1 CSI byte sequence in `bytes`: nothing that could drive a terminal.
fn assert_inert(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(
        !bytes.contains(&0x1b) && !bytes.contains(&0x07) && !text.contains('\u{9b}'),
        "{what} let control characters through:\n{text:?}"
    );
}

fn stdout_of(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd`, failing the test if it takes longer than `limit` (a hang is the bug).
fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("reap");
            panic!(
                "{cmd:?} still ran after {limit:?} (it hangs); stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn a_planted_bus_socket_is_refused_before_anything_is_sent() {
    if !is_root() {
        eprintln!(
            "\n*** SKIPPED adversary_cli planted socket: needs root to act as two other users (CI is root) ***\n"
        );
        return;
    }
    /// The victim runs turbo; the attacker (a uid without a passwd entry) planted the socket.
    const VICTIM: u32 = 65534;
    const ATTACKER: u32 = 4242;
    let shared = tempfile::Builder::new()
        .prefix("turbo-e2e-plant-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cli = runnable_by_anyone(&bin_dir().join("turbo"), shared.path());
    // next to the CLI, for the control case that autostarts the victim's own daemon
    let _daemon = runnable_by_anyone(&bin_dir().join("turbo-daemon"), shared.path());
    let planter = runnable_by_anyone(Path::new(env!("CARGO_BIN_EXE_planted-bus")), shared.path());
    let dir = |name: &str, uid: u32, mode: u32| {
        let path = shared.path().join(name);
        std::fs::create_dir(&path).unwrap();
        chown(&path, Some(uid), Some(uid)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    let evil = dir("evil", ATTACKER, 0o755);
    let record = evil.join("record");
    let mut fake = Command::new("setpriv")
        .args([
            &format!("--reuid={ATTACKER}"),
            &format!("--regid={ATTACKER}"),
            "--clear-groups",
            "--",
        ])
        .arg(&planter)
        .arg(evil.join("bus.sock"))
        .arg(&record)
        .stdout(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)");
    let mut ready = [0u8; 6];
    fake.stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut ready)
        .expect("the fake daemon to say ready");
    assert_eq!(&ready, b"ready\n");
    let guard = KillOnDrop(fake);

    let victim = |home: &Path, args: &[&str]| {
        output_within(
            Command::new("setpriv")
                .args([
                    &format!("--reuid={VICTIM}"),
                    &format!("--regid={VICTIM}"),
                    "--clear-groups",
                    "--",
                ])
                .arg(&cli)
                .args(args)
                .current_dir(shared.path())
                .env("TURBO_HOME", home)
                .env("HOME", "/nonexistent")
                .env_remove("TURBO_BUS_ADDRESS")
                .env("NO_COLOR", "1"),
            Duration::from_secs(30),
        )
    };
    let secret_start = [
        "start",
        "sleep",
        "--name",
        "db",
        "--env",
        "DB_PASSWORD=hunter2",
        "--",
        "1000",
    ];
    let refused = |home: &Path, why: &str| {
        let err = one_line_error(&victim(home, &secret_start));
        assert!(err.contains("refusing to"), "{err}");
        assert!(err.contains(why), "expected '{why}' in: {err}");
        assert!(err.contains("help: "), "says what to do: {err}");
        err
    };

    // a home another user owns
    let err = refused(&evil, "owned by uid 4242, not by you (uid 65534) or root");
    assert!(err.contains("TURBO_HOME"), "{err}");
    // the victim's own home, but anyone may write to it
    let open = dir("open", VICTIM, 0o777);
    refused(&open, "group or others may write to it (mode 0777)");
    // a symlink the attacker owns, to a directory of the victim's
    let mine = dir("mine", VICTIM, 0o755);
    let link = shared.path().join("link");
    std::os::unix::fs::symlink(&mine, &link).unwrap();
    lchown(&link, Some(ATTACKER), Some(ATTACKER)).unwrap();
    refused(&link, "symlink owned by uid 4242");
    // the victim's home, the attacker's socket file moved in
    std::fs::rename(evil.join("bus.sock"), mine.join("bus.sock")).unwrap();
    refused(
        &mine,
        "it belongs to uid 4242, not to you (uid 65534) or root",
    );
    assert!(
        !record.exists(),
        "no connection was even attempted so far: {}",
        std::fs::read_to_string(&record).unwrap_or_default()
    );
    // the socket file is the victim's too, but the attacker's process serves it: the CLI
    // connects, asks the kernel who is at the other end, and hangs up before the handshake
    chown(mine.join("bus.sock"), Some(VICTIM), Some(VICTIM)).unwrap();
    refused(&mine, "the process serving it runs as uid 4242");
    let seen = wait_for(
        "the fake daemon to record the connection",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(&record)
                .ok()
                .filter(|r| r.ends_with('\n'))
        },
    );
    assert_eq!(
        seen, "connection 1: 0 bytes\t\n",
        "the fake daemon got bytes (the D-Bus handshake or a call)"
    );
    // `turbo kill` does not call a refused socket "no daemon running"
    let err = one_line_error(&victim(&mine, &["kill"]));
    assert!(
        err.contains("the process serving it runs as uid 4242"),
        "{err}"
    );
    wait_for(
        "the fake daemon to record the second connection",
        Duration::from_secs(10),
        || {
            let seen = std::fs::read_to_string(&record).ok()?;
            (seen.lines().count() == 2).then_some(())
        },
    );
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        "connection 1: 0 bytes\t\nconnection 2: 0 bytes\t\n"
    );
    drop(guard);
    for home in [&evil, &open, &mine] {
        assert!(
            !home.join("daemon.log").exists() && !home.join("state.json").exists(),
            "a daemon was started into {}",
            home.display()
        );
    }

    // control: the victim's own private home works, autostart included
    let own = dir("own", VICTIM, 0o700);
    let out = victim(&own, &["ping"]);
    assert!(
        out.status.success(),
        "the victim's own home: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(own.join("daemon.log")).unwrap_or_default()
    );
    let out = victim(&own, &["kill"]);
    assert!(
        out.status.success(),
        "kill: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn app_bytes_reach_the_terminal_escaped() {
    let d = TestDaemon::start("off");
    let app = d.script(
        "hostile.sh",
        &format!("{HOSTILE_OUT}\nprintf '\\033]0;pwned-err\\007boom\\n' >&2\nsleep 0.2\nexit 1"),
    );
    d.turbo_ok(&["start", app.to_str().unwrap(), "--name", "hostile"]);
    wait_for("a crash record", Duration::from_secs(15), || {
        let report = d.json(&["crashes", "hostile"]);
        (!report["crashes"].as_array()?.is_empty()).then_some(())
    });

    let logs = d.turbo_ok(&["logs", "hostile", "--lines", "5"]);
    assert_inert("turbo logs", logs.as_bytes());
    assert!(logs.contains(ESCAPED_OUT), "{logs}");
    assert!(logs.contains(r"\x1b]0;pwned-err\x07boom"), "{logs}");
    let out = d.turbo(&["logs", "hostile", "--lines", "5", "--out", "--raw"]);
    assert!(out.status.success());
    let raw: &[u8] = b"\x1b]0;pwned-title\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07visible\n";
    assert!(
        out.stdout.windows(raw.len()).any(|w| w == raw),
        "--raw prints the bytes as written: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = d.turbo(&["logs", "hostile", "--lines", "5", "--json"]);
    assert_inert("turbo logs --json", &out.stdout);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(json)
        .collect();
    assert!(
        lines.iter().any(|l| l["line"]
            .as_str()
            .is_some_and(|s| s.starts_with("\u{1b}]0;pwned-title\u{7}"))),
        "--json keeps the exact text: {lines:?}"
    );

    let crashes = d.turbo_ok(&["crashes", "hostile"]);
    assert_inert("turbo crashes", crashes.as_bytes());
    assert!(crashes.contains(r"│ \x1b]0;pwned-err\x07boom"), "{crashes}");
    assert!(crashes.contains("most often: exit 1"), "{crashes}");
    let describe = d.turbo_ok(&["describe", "hostile"]);
    assert_inert("turbo describe", describe.as_bytes());
    assert!(describe.contains(r"\x1b]0;pwned-err\x07boom"), "{describe}");
    let crashes_json = d.turbo(&["crashes", "hostile", "--json"]);
    assert_inert("turbo crashes --json", &crashes_json.stdout);

    // a health check's output: in describe, and in the error of `--wait`
    let yml = d.config(
        "sick",
        "apps:\n  - name: sickly\n    cmd: [sleep, '1000']\n    \
         health: { cmd: [sh, -c, \"printf '\\\\033]0;health-title\\\\007down\\\\n'; printf '\\\\033]0;health-title\\\\007down\\\\n' >&2; exit 3\"], interval: 300ms, retry_delay: 200ms, retries: 1000 }\n",
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    wait_for("a failed health check", Duration::from_secs(15), || {
        let doc = d.json(&["describe", "sickly"]);
        let error = doc["config"]["health_last_error"].as_str()?;
        error.contains("health-title").then_some(())
    });
    let describe = d.turbo_ok(&["describe", "sickly"]);
    assert_inert("describe with health output", describe.as_bytes());
    assert!(
        describe.contains(r"\x1b]0;health-title\x07down"),
        "{describe}"
    );
    let out = d.turbo(&["restart", "sickly", "--wait", "--wait-timeout", "2s"]);
    let err = one_line_error(&out);
    assert_inert("the --wait error", err.as_bytes());
}

/// `turbo monit` inside `script -qc` (a pty whose other side never answers the cursor-position
/// query), once with a sized pty and once with the 0 x 0 one `script` makes for piped input.
#[test]
fn monit_runs_where_the_terminal_does_not_answer() {
    let d = TestDaemon::start("off");
    let app = d.script("loud.sh", &format!("{HOSTILE_OUT}\nexec sleep 1000"));
    d.turbo_ok(&["start", app.to_str().unwrap(), "--name", "loud"]);
    wait_for("the app's line in its log", Duration::from_secs(10), || {
        d.turbo_ok(&["logs", "loud", "--lines", "1"])
            .contains("visible")
            .then_some(())
    });
    let turbo = bin_dir().join("turbo");
    for sizing in ["stty rows 30 cols 120; ", ""] {
        let mut child = Command::new("script")
            .args([
                "-qc",
                &format!("{sizing}exec {} monit", turbo.display()),
                "/dev/null",
            ])
            .current_dir(d.home())
            .env("TURBO_HOME", d.home())
            .env_remove("TURBO_BUS_ADDRESS")
            .env("TERM", "xterm-256color")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script (util-linux)");
        let screen = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let screen = Arc::clone(&screen);
            let mut stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stdout.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    screen.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        let shown =
            |needle: &str| String::from_utf8_lossy(&screen.lock().unwrap()).contains(needle);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(shown("TurboProcess monit") && shown(r"x1b]0;pwned-title")) {
            if Instant::now() >= deadline || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "monit ({sizing:?}) did not draw its screen with the escaped log line:\n{}",
                    String::from_utf8_lossy(&screen.lock().unwrap())
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.stdin.as_mut().unwrap().write_all(b"q").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("monit ({sizing:?}) did not quit on q");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        reader.join().unwrap();
        let screen = screen.lock().unwrap();
        let text = String::from_utf8_lossy(&screen);
        assert!(status.success(), "monit ({sizing:?}) failed: {text}");
        assert!(!text.contains("cursor position"), "{text}");
        assert!(
            !text.contains("\u{1b}]0;pwned") && !text.contains("\u{1b}]52;"),
            "the app's sequences reached the terminal: {text:?}"
        );
    }
}

#[test]
fn a_fifo_given_as_config_is_refused_at_once() {
    let d = TestDaemon::start("off");
    let fifo = d.home().join("fifo.yml");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let run = |args: &[&str]| {
        output_within(
            Command::new(bin_dir().join("turbo"))
                .args(args)
                .current_dir(d.home())
                .env("TURBO_HOME", d.home())
                .env_remove("TURBO_BUS_ADDRESS")
                .env("NO_COLOR", "1"),
            Duration::from_secs(15),
        )
    };
    let err = one_line_error(&run(&["start", "fifo.yml"]));
    assert!(
        err.contains("fifo.yml: it is a named pipe (FIFO), not a regular file"),
        "{err}"
    );
    std::fs::create_dir(d.home().join("pm2")).unwrap();
    let fifo_json = d.home().join("pm2/ecosystem.json");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo_json)
            .status()
            .unwrap()
            .success()
    );
    let err = one_line_error(&run(&["import", "pm2", "pm2/ecosystem.json"]));
    assert!(err.contains("named pipe (FIFO)"), "{err}");
    std::fs::create_dir(d.home().join("dir.yml")).unwrap();
    let err = one_line_error(&run(&["start", "dir.yml"]));
    assert!(
        err.contains("it is a directory, not a regular file"),
        "{err}"
    );
    assert!(d.status().is_empty(), "nothing was started");
}

#[test]
fn a_quoted_command_line_starts_like_pm2_and_so_does_the_double_dash() {
    let d = TestDaemon::start("off");
    d.turbo_ok(&["start", "sh -c 'echo \"started as one\"; exec sleep 1000'"]);
    let app = d.wait_app("sh", "the split command to run", |a| a["state"] == "online");
    // argv[0] as the daemon resolved it on PATH
    assert!(app["argv"][0].as_str().unwrap().ends_with("/sh"), "{app}");
    assert_eq!(
        app["argv"].as_array().unwrap()[1..],
        [
            serde_json::json!("-c"),
            serde_json::json!("echo \"started as one\"; exec sleep 1000")
        ]
    );
    wait_for("its output", Duration::from_secs(10), || {
        d.turbo_ok(&["logs", "sh", "--lines", "1"])
            .contains("started as one")
            .then_some(())
    });
    d.turbo_ok(&["start", "--name", "dashed", "--", "sleep", "1000"]);
    let app = d.wait_app("dashed", "the -- form to run", |a| a["state"] == "online");
    assert!(
        app["argv"][0].as_str().unwrap().ends_with("/sleep"),
        "{app}"
    );
    assert_eq!(app["argv"][1], "1000");
    let err = one_line_error(&d.turbo(&["start", "sh -c 'unclosed"]));
    assert!(err.contains("a quote is not closed"), "{err}");
}

#[test]
fn instances_are_named_once_and_the_crash_header_names_the_code() {
    let d = TestDaemon::start("off");
    d.turbo_ok(&[
        "start",
        "sleep",
        "--name",
        "cw",
        "--instances",
        "3",
        "--",
        "1000",
    ]);
    let out = d.turbo_ok(&["delete", "all"]);
    assert_eq!(out.trim(), "deleted cw (3 instances)");

    d.turbo_ok(&[
        "start",
        "sh",
        "--name",
        "crasher",
        "--restart-delay",
        "200ms",
        "--",
        "-c",
        "exit 3",
    ]);
    let config = d.json(&["describe", "crasher"])["config"].clone();
    assert_eq!(config["restart_delay_ms"], 200, "{config}");
    wait_for("two crashes", Duration::from_secs(15), || {
        let report = d.json(&["crashes", "crasher"]);
        (report["crashes"].as_array()?.len() >= 2).then_some(())
    });
    let crashes = d.turbo_ok(&["crashes", "crasher"]);
    let head = crashes.lines().next().unwrap_or_default();
    assert!(head.contains("most often: exit 3 ("), "{head}");
    let describe = d.turbo_ok(&["describe", "crasher"]);
    assert!(describe.contains("backoff         0.2s ×"), "{describe}");
    let err = one_line_error(&d.turbo(&["start", "sleep", "--restart-delay", "soon"]));
    assert!(
        err.contains("--restart-delay 'soon' is not a duration"),
        "{err}"
    );
}

#[test]
fn pm2_javascript_ecosystem_files_import_through_node() {
    let d = TestDaemon::start("off");
    let dir = d.home().join("pm2app");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("ecosystem.config.js"),
        "const name = ['from', 'js'].join('-');\n\
         module.exports = { apps: [{ name, script: 'sleep', args: '1000', interpreter: 'none', \
         env: { GREETING: 'hi' }, computed() {} }] };\n",
    )
    .unwrap();
    // `turbo start` points at the import, and the import it names works (no loop)
    let out = d.turbo_in(&["start", "ecosystem.config.js"], &dir);
    let err = one_line_error(&out);
    assert!(
        err.contains("help: convert it with `turbo import pm2 ecosystem.config.js -o turbo.yml`"),
        "{err}"
    );
    // without node on PATH: one line that names it
    let empty = tempfile::tempdir().unwrap();
    let out = output_within(
        Command::new(bin_dir().join("turbo"))
            .args(["import", "pm2", "ecosystem.config.js", "-o", "turbo.yml"])
            .current_dir(&dir)
            .env("PATH", empty.path())
            .env("NO_COLOR", "1"),
        Duration::from_secs(15),
    );
    let err = one_line_error(&out);
    assert!(
        err.contains("`node` (Node.js)") && err.contains("not on PATH"),
        "{err}"
    );
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!(
            "\n*** SKIPPED the node half of pm2_javascript_ecosystem_files: node is not on PATH ***\n"
        );
        return;
    }
    let out = d.turbo_in(
        &["import", "pm2", "ecosystem.config.js", "-o", "turbo.yml"],
        &dir,
    );
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yml = std::fs::read_to_string(dir.join("turbo.yml")).unwrap();
    assert!(yml.contains("name: from-js"), "{yml}");
    let out = d.turbo_in(&["start", "turbo.yml"], &dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = d.wait_app("from-js", "the imported app to run", |a| {
        a["state"] == "online"
    });
    assert!(
        app["argv"][0].as_str().unwrap().ends_with("/sleep"),
        "{app}"
    );
    assert_eq!(app["argv"][1], "1000");
    // an ES module too, and a file that throws says so
    std::fs::write(
        dir.join("ecosystem.config.mjs"),
        "export default { apps: [{ name: 'esm', script: 'sleep', args: '5', interpreter: 'none' }] };\n",
    )
    .unwrap();
    let yml = stdout_of(
        &d.turbo_in(&["import", "pm2", "ecosystem.config.mjs"], &dir),
        "import .mjs",
    );
    assert!(yml.contains("name: esm"), "{yml}");
    std::fs::write(
        dir.join("broken.config.js"),
        "throw new Error('no such thing');\n",
    )
    .unwrap();
    let err = one_line_error(&d.turbo_in(&["import", "pm2", "broken.config.js"], &dir));
    assert!(
        err.contains("node could not evaluate") && err.contains("no such thing"),
        "{err}"
    );
}
