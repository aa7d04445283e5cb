//! The CLI as a person meets it: `turbo monit` driven in a real terminal (tmux), `turbo status`
//! and its JSON contract, completions that know the daemon's apps, the man pages and
//! `cargo xtask install`, `turbo import pm2` into a turbo.yml the daemon accepts, and hints that
//! say what to try.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use turbo_tests::{TestDaemon, bin_dir, one_line_error, wait_for};

/// A tmux server of our own running an interactive bash whose prompt is `tour$ `, with `turbo`
/// on its PATH and the daemon's TURBO_HOME; killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(d: &TestDaemon, width: u16, height: u16) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        assert!(
            Command::new("tmux").arg("-V").output().is_ok(),
            "tmux is missing: `cargo xtask setup` installs it"
        );
        let socket = format!(
            "turbo-tour-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let shell = format!(
            "env PATH='{path}' TURBO_HOME='{}' PS1='tour$ ' bash --norc --noprofile",
            d.home().display()
        );
        let t = Self { socket };
        t.run(&[
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "-s",
            "tour",
            &shell,
        ]);
        t.wait_screen("the shell prompt", |s| s.contains("tour$"));
        t
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` and presses Enter.
    fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-t", "tour", "-l", text]);
        self.run(&["send-keys", "-t", "tour", "Enter"]);
    }

    /// Presses keys by tmux name (`Down`, `q`, `Escape`...).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "tour"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "tour"])
    }

    fn wait_screen(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn resize(&self, width: u16, height: u16) {
        self.run(&[
            "resize-window",
            "-t",
            "tour",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
        ]);
    }

    /// The pid of the program running in the shell (monit).
    fn foreground_pid(&self) -> i32 {
        let shell = self.run(&["display-message", "-p", "-t", "tour", "#{pane_pid}"]);
        let shell = shell.trim();
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .expect("children of the shell");
        children
            .split_whitespace()
            .next()
            .expect("a foreground program")
            .parse()
            .expect("a pid")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stdin(Stdio::null())
            .output();
    }
}

/// The line of `screen` that shows app `name` in the table.
fn row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some(name) || l.contains(&format!(" {name} ●")))
}

/// Starts the apps of the tour: a ticking one, an idle one and one that keeps crashing.
fn tour_apps(d: &TestDaemon) {
    let ticker = d.script(
        "ticker.sh",
        "i=0; while true; do i=$((i+1)); echo \"tick $i\"; sleep 0.3; done",
    );
    let crasher = d.script(
        "crasher.sh",
        "echo 'about to fail' ; echo 'fatal: tour-c cannot go on' >&2; sleep 0.5; exit 3",
    );
    d.turbo_ok(&["start", ticker.to_str().unwrap(), "--name", "tour-a"]);
    d.turbo_ok(&["start", "sleep", "--name", "tour-b", "--", "1000"]);
    d.turbo_ok(&["start", crasher.to_str().unwrap(), "--name", "tour-c"]);
    d.wait_app("tour-a", "tour-a online", |a| a["state"] == "online");
    d.wait_app("tour-b", "tour-b online", |a| a["state"] == "online");
}

/// `stty -a` in the shell says the terminal is back in cooked mode with echo.
fn assert_terminal_restored(t: &Tmux) {
    t.type_line(
        "clear; stty -a | tr ' ;' '\\n\\n' | grep -x -e '-*icanon' -e '-*echo'; echo stty-done",
    );
    let screen = t.wait_screen("stty's answer", |s| s.lines().any(|l| l == "stty-done"));
    let words: Vec<&str> = screen.lines().map(str::trim).collect();
    assert!(
        words.contains(&"icanon") && words.contains(&"echo"),
        "raw mode is over: {screen}"
    );
}

#[test]
fn monit_in_a_real_terminal() {
    let d = TestDaemon::start("auto");
    tour_apps(&d);
    let t = Tmux::new(&d, 120, 40);
    t.type_line("turbo monit");
    let screen = t.wait_screen("the dashboard with every app online", |s| {
        s.contains("TurboProcess monit")
            && row(s, "tour-a").is_some_and(|r| r.contains("● online"))
            && row(s, "tour-b").is_some_and(|r| r.contains("● online"))
            && row(s, "tour-c").is_some()
    });
    assert!(
        row(&screen, "tour-a").unwrap().contains('▶'),
        "the first app is selected:\n{screen}"
    );
    for part in ["Apps", "Crashes", "Logs: tour-a", "r restart", "q quit"] {
        assert!(screen.contains(part), "{part} missing:\n{screen}");
    }
    // the log pane follows the selected app
    t.wait_screen("tour-a's log lines", |s| s.contains("tick "));

    // r restarts the selected app: its restart count moves, on screen and in the daemon
    let before = d.app("tour-a");
    t.keys(&["r"]);
    let screen = t.wait_screen("the restart to be reported", |s| {
        s.contains("restarted tour-a")
    });
    let after = d.wait_app("tour-a", "a new process after r", |a| {
        a["state"] == "online" && a["pid"] != before["pid"]
    });
    assert_eq!(
        after["restarts"].as_u64(),
        before["restarts"].as_u64().map(|r| r + 1),
        "{after}"
    );
    let restarts = after["restarts"].to_string();
    t.wait_screen("the new restart count in the table", |s| {
        row(s, "tour-a").is_some_and(|r| r.split_whitespace().any(|w| w == restarts))
    });
    drop(screen);

    // s stops the next app, S starts it again
    t.keys(&["Down", "s"]);
    t.wait_screen("tour-b stopped", |s| {
        row(s, "tour-b").is_some_and(|r| r.contains("○ stopped")) && s.contains("stopped tour-b")
    });
    assert_eq!(d.app("tour-b")["state"], "stopped");
    t.keys(&["S"]);
    t.wait_screen("tour-b online again", |s| {
        row(s, "tour-b").is_some_and(|r| r.contains("● online")) && s.contains("started tour-b")
    });

    // the crash timeline of the crashing app, with its last stderr line
    t.keys(&["Down"]);
    t.wait_screen("tour-c's crashes", |s| {
        s.contains("Crashes: ") && s.contains("exit 3") && s.contains("tour-c cannot go on")
    });

    // / filters by name; Esc clears the filter
    t.keys(&["/", "t", "o", "u", "r", "-", "b", "Enter"]);
    let screen = t.wait_screen("the filtered table", |s| {
        s.contains("Apps matching /tour-b/")
    });
    assert!(row(&screen, "tour-a").is_none(), "{screen}");
    assert!(row(&screen, "tour-b").is_some(), "{screen}");
    t.keys(&["Escape"]);
    t.wait_screen("the whole table again", |s| {
        row(s, "tour-a").is_some() && !s.contains("Apps matching")
    });

    // it redraws for a new size, and still fits
    t.resize(80, 24);
    let screen = t.wait_screen("the narrow layout", |s| {
        s.lines().count() <= 24 && row(s, "tour-a").is_some() && !s.contains("cpu history")
    });
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");
    t.resize(120, 40);
    t.wait_screen("the wide layout", |s| s.contains("cpu history"));

    // q gives the terminal back: the prompt, and a cooked terminal
    t.keys(&["q"]);
    t.wait_screen("the shell prompt after q", |s| {
        !s.contains("TurboProcess monit")
            && s.lines().rev().find(|l| !l.trim().is_empty()) == Some("tour$")
    });
    assert_terminal_restored(&t);

    // so does SIGTERM
    t.type_line("clear; turbo monit");
    t.wait_screen("the dashboard again", |s| s.contains("TurboProcess monit"));
    let pid = t.foreground_pid();
    // SAFETY: plain kill(2) of the monit process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    t.wait_screen("the prompt after SIGTERM", |s| {
        !s.contains("TurboProcess monit") && s.trim_end().ends_with("tour$")
    });
    assert_terminal_restored(&t);
}

#[test]
fn status_table_fits_the_terminal_and_json_is_stable() {
    let d = TestDaemon::start("auto");
    tour_apps(&d);
    let table = d.turbo_ok(&["status"]);
    let header = table.lines().next().unwrap();
    for col in [
        "id", "name", "state", "↺", "cpu", "memory", "uptime", "health",
    ] {
        assert!(header.contains(col), "{col} in {header}");
    }
    let a = table.lines().find(|l| l.contains("tour-a")).unwrap();
    assert!(a.contains("● online"), "{a}");

    // on a 60-column terminal the table drops columns instead of wrapping
    let t = Tmux::new(&d, 60, 20);
    t.type_line("clear; turbo status");
    let screen = t.wait_screen("the table and the prompt after it", |s| {
        s.contains("tour-c") && s.lines().any(|l| l == "tour$")
    });
    let lines: Vec<&str> = screen
        .lines()
        .skip_while(|l| !l.starts_with("id"))
        .take_while(|l| !l.starts_with("tour$"))
        .collect();
    assert!(lines.len() >= 4, "{screen}");
    assert!(!lines[0].contains("last exit"), "{screen}");
    assert!(
        lines.iter().all(|l| l.chars().count() <= 60),
        "every line fits in 60 columns:\n{screen}"
    );

    // the JSON contract of DESIGN §6, in a stable shape
    let first = d.status();
    let second = d.status();
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    for app in &first {
        for key in [
            "id",
            "name",
            "instance",
            "state",
            "pid",
            "restarts",
            "uptime_ms",
            "cpu_percent",
            "memory_bytes",
            "memory_limit_bytes",
            "health",
            "last_exit",
        ] {
            assert!(app.get(key).is_some(), "{key} missing in {app}");
        }
    }
    assert_eq!(
        first.iter().map(keys).collect::<Vec<_>>(),
        second.iter().map(keys).collect::<Vec<_>>(),
        "the same keys every time"
    );
    let stopped = d.turbo_ok(&["stop", "tour-b"]);
    assert!(stopped.contains("○ stopped"), "{stopped}");
    let b = d.app("tour-b");
    assert!(b["pid"].is_null() && b["cpu_percent"].is_null(), "{b}");
}

/// Runs the completion function of a bash script for the words of a command line.
fn bash_complete(d: &TestDaemon, script: &Path, line: &[&str]) -> Vec<String> {
    let words = line
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let program = format!(
        "source '{}'; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); \
         _turbo_with_apps turbo \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("TURBO_HOME", d.home())
        .env_remove("TURBO_BUS_ADDRESS")
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn completions_know_the_apps_and_install_puts_everything_in_place() {
    let d = TestDaemon::start("auto");
    tour_apps(&d);
    let dir = tempfile::tempdir().unwrap();

    let bash = dir.path().join("turbo.bash");
    std::fs::write(&bash, d.turbo_ok(&["completions", "bash"])).unwrap();
    let mut stop = bash_complete(&d, &bash, &["turbo", "stop", ""]);
    stop.sort();
    assert_eq!(stop, ["all", "tour-a", "tour-b", "tour-c"]);
    assert_eq!(
        bash_complete(&d, &bash, &["turbo", "logs", "--lines", "5", "tour-c"]),
        ["tour-c"]
    );
    assert_eq!(
        bash_complete(&d, &bash, &["turbo", "describe", "tour-b"]),
        ["tour-b"]
    );
    let subcommands = bash_complete(&d, &bash, &["turbo", "mo"]);
    assert_eq!(subcommands, ["monit"], "clap's completion still works");

    // the shells we have check the syntax of theirs
    for (shell, check) in [("zsh", ["-n"]), ("fish", ["-n"])] {
        let script = dir.path().join(format!("turbo.{shell}"));
        std::fs::write(&script, d.turbo_ok(&["completions", shell])).unwrap();
        match Command::new(shell).args(check).arg(&script).output() {
            Ok(out) => assert!(
                out.status.success(),
                "{shell}: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(_) => eprintln!("{shell} is not installed: its script's syntax is not checked"),
        }
    }

    // without a daemon, app completion is silent, quick and successful
    let started = Instant::now();
    let out = Command::new(bin_dir().join("turbo"))
        .arg("__complete-apps")
        .env("TURBO_BUS_ADDRESS", "unix:path=/nonexistent/bus.sock")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty());
    assert!(started.elapsed() < Duration::from_secs(3));

    let man = d.turbo_ok(&["man"]);
    assert!(man.contains(".SH SYNOPSIS") && man.contains(".SH ENVIRONMENT"));

    // cargo xtask install, with the binaries this test runs
    let xtask = bin_dir().join("xtask");
    assert!(
        xtask.is_file(),
        "{} is built by `cargo build --bins`",
        xtask.display()
    );
    let prefix = dir.path().join("prefix");
    let out = Command::new(&xtask)
        .args(["install", "--prefix"])
        .arg(&prefix)
        .arg("--bin-dir")
        .arg(bin_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "bin/turbo",
        "bin/turbo-daemon",
        "share/bash-completion/completions/turbo",
        "share/zsh/site-functions/_turbo",
        "share/fish/vendor_completions.d/turbo.fish",
        "share/man/man1/turbo.1",
        "share/man/man1/turbo-monit.1",
        "share/man/man1/turbo-import-pm2.1",
    ] {
        assert!(prefix.join(file).is_file(), "{file} was not installed");
    }
    let version = Command::new(prefix.join("bin/turbo"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("turbo "));
    let installed = prefix.join("share/bash-completion/completions/turbo");
    assert_eq!(
        bash_complete(&d, &installed, &["turbo", "restart", "tour-a"]),
        ["tour-a"]
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run_in(d: &TestDaemon, dir: &Path, args: &[&str]) -> Output {
    d.turbo_in(args, dir)
}

#[test]
fn pm2_ecosystem_and_dump_become_a_turbo_yml_the_daemon_starts() {
    let d = TestDaemon::start("auto");
    let dir = d.home().join("pm2-project");
    std::fs::create_dir_all(&dir).unwrap();
    write(
        &dir,
        "server.py",
        "import os, time\nprint('api up on', os.environ.get('PORT'), flush=True)\nwhile True:\n    time.sleep(1)\n",
    );
    write(&dir, "worker.sh", "echo worker $1; exec sleep 1000\n");
    write(
        &dir,
        "ecosystem.json",
        r#"{
  "apps": [
    {
      "name": "api",
      "script": "server.py",
      "env": { "PORT": 4000, "NODE_ENV": "development" },
      "env_production": { "NODE_ENV": "production" },
      "max_memory_restart": "64M",
      "kill_timeout": 3000,
      "exp_backoff_restart_delay": 200,
      "max_restarts": 5,
      "instances": 2,
      "exec_mode": "cluster",
      "watch": true,
      "log_date_format": "YYYY-MM-DD HH:mm"
    },
    {
      "name": "worker #1",
      "script": "worker.sh",
      "interpreter": "bash",
      "args": "--queue jobs",
      "autorestart": false,
      "restart_delay": 1500
    }
  ]
}"#,
    );
    let out = run_in(
        &d,
        &dir,
        &[
            "import",
            "pm2",
            "ecosystem.json",
            "-o",
            "turbo.yml",
            "--env",
            "production",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("converted 2 apps from ecosystem.json to turbo.yml"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("api: watch"),
        "watch is converted: {stderr}"
    );
    for unmapped in ["api: exec_mode", "api: log_date_format"] {
        assert!(
            stderr.contains(unmapped),
            "{unmapped} not listed:\n{stderr}"
        );
    }
    assert!(stderr.contains("worker-1"), "renamed: {stderr}");
    let yml = std::fs::read_to_string(dir.join("turbo.yml")).unwrap();
    assert!(yml.starts_with("# Converted from ecosystem.json"), "{yml}");
    assert!(yml.contains("instances: 2"), "{yml}");
    // no merge_logs: a pair of files per instance, as PM2 writes them
    assert!(yml.contains("per_instance: true"), "{yml}");

    // the daemon accepts it as it is
    let started = run_in(&d, &dir, &["start", "turbo.yml"]);
    assert!(
        started.status.success(),
        "{}\n--- turbo.yml ---\n{yml}",
        String::from_utf8_lossy(&started.stderr)
    );
    wait_for(
        "both instances of api online",
        Duration::from_secs(10),
        || {
            let online = d
                .status()
                .iter()
                .filter(|a| a["name"] == "api" && a["state"] == "online")
                .count();
            (online == 2).then_some(())
        },
    );
    for a in d.status().iter().filter(|a| a["name"] == "api") {
        let out = a["out_log"].as_str().unwrap();
        assert!(
            out.ends_with(&format!("/api-out-{}.log", a["instance"])),
            "{out}"
        );
    }
    let api = d.json(&["describe", "api"]);
    let config = &api["config"];
    assert_eq!(api["status"]["memory_limit_bytes"], 64 << 20);
    assert_eq!(config["kill_timeout_ms"], 3000);
    assert_eq!(config["stop_signal"], 2, "PM2's SIGINT");
    assert_eq!(config["restart_delay_ms"], 200);
    assert_eq!(config["restart_factor"], 1.5);
    assert_eq!(config["crash_loop_max"], 5);
    assert_eq!(
        config["watch_paths"][0],
        dir.to_str().unwrap(),
        "watch: true"
    );
    let env: Vec<&str> = config["env_names"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        env.contains(&"PORT") && env.contains(&"NODE_ENV"),
        "{env:?}"
    );
    wait_for("api's first line", Duration::from_secs(10), || {
        d.turbo_ok(&["logs", "api", "--lines", "5"])
            .contains("api up on 4000")
            .then_some(())
    });
    let worker = d.wait_app("worker-1", "the worker runs", |a| a["state"] == "online");
    let argv: Vec<&str> = worker["argv"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(argv.ends_with(&["--queue", "jobs"]), "{argv:?}");
    assert!(argv[0].ends_with("bash"), "{argv:?}");
    let worker = d.json(&["describe", "worker-1"]);
    assert_eq!(worker["config"]["autorestart"], "never");

    // a dump from `pm2 save`: options are read, runtime state and the shell's variables are not
    let dump_dir = d.home().join("pm2-dump");
    std::fs::create_dir_all(&dump_dir).unwrap();
    let script = dir.join("server.py");
    write(
        &dump_dir,
        "dump.pm2",
        &format!(
            r#"[{{
  "name": "from-dump",
  "pm_exec_path": "{script}",
  "pm_cwd": "{cwd}",
  "exec_interpreter": "python3",
  "node_args": [],
  "args": [],
  "env": {{ "PORT": "4100", "HOME": "/root", "SSH_CONNECTION": "1.2.3.4 22", "PATH": "/usr/bin", "from-dump": {{}} }},
  "PORT": "4100",
  "status": "online", "pm_uptime": 1700000000000, "restart_time": 4, "unstable_restarts": 0,
  "pm_out_log_path": "/root/.pm2/logs/from-dump-out.log",
  "pm_err_log_path": "/root/.pm2/logs/from-dump-error.log",
  "autorestart": true, "treekill": true, "vizion": true, "exec_mode": "fork_mode",
  "kill_retry_time": 100, "username": "root", "windowsHide": true
}}]"#,
            script = script.display(),
            cwd = dir.display()
        ),
    );
    let out = run_in(
        &d,
        &dump_dir,
        &["import", "pm2", "dump.pm2", "-o", "turbo.yml"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("variables of the shell that ran pm2"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("treekill") && !stderr.contains("status"),
        "{stderr}"
    );
    let started = run_in(&d, &dump_dir, &["start", "turbo.yml"]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    d.wait_app("from-dump", "the dump's app online", |a| {
        a["state"] == "online"
    });
    let env = d.json(&["describe", "from-dump"])["config"]["env_names"].clone();
    assert_eq!(
        env,
        serde_json::json!(["PORT"]),
        "only the app's own variables"
    );

    // PM2 files are not apps: `turbo start` says what to do
    let err = one_line_error(&run_in(&d, &dir, &["start", "ecosystem.json"]));
    assert!(
        err.contains("help: convert it with `turbo import pm2 ecosystem.json"),
        "{err}"
    );
    // a JavaScript ecosystem file is evaluated by node (adversary_cli imports and starts one)
    write(
        &dir,
        "ecosystem.config.js",
        "module.exports = { apps: 'nope' }\n",
    );
    let err = one_line_error(&run_in(&d, &dir, &["import", "pm2", "ecosystem.config.js"]));
    assert!(
        err.contains("ecosystem.config.js: `apps` is not a list"),
        "{err}"
    );
    let err = one_line_error(&run_in(
        &d,
        &dir,
        &["import", "pm2", "ecosystem.json", "-o", "turbo.yml"],
    ));
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
}

#[test]
fn mistakes_come_with_what_to_try() {
    let d = TestDaemon::start("auto");
    tour_apps(&d);
    let err = one_line_error(&d.turbo(&["stop", "tuor-a"]));
    assert!(
        err.contains("tuor-a") && err.ends_with("help: did you mean `tour-a`?"),
        "{err}"
    );
    let err = one_line_error(&d.turbo(&["describe", "database"]));
    assert!(
        err.contains("help: the apps are: tour-a, tour-b, tour-c"),
        "{err}"
    );
    let err = one_line_error(&d.turbo(&["logs", "tour-x"]));
    assert!(err.contains("help:"), "{err}");
    // monit without a terminal says what to use instead
    let err = one_line_error(&d.turbo(&["monit"]));
    assert!(
        err.contains("needs a terminal") && err.contains("turbo status --json"),
        "{err}"
    );
    // an unreachable explicit address says what to check
    let out = Command::new(bin_dir().join("turbo"))
        .arg("status")
        .env("TURBO_BUS_ADDRESS", "unix:path=/nonexistent/turbo/bus.sock")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(
        err.contains("help:") && err.contains("TURBO_BUS_ADDRESS"),
        "{err}"
    );
    // on a terminal the hint gets a line of its own, cargo-style
    let t = Tmux::new(&d, 120, 10);
    t.type_line("clear; NO_COLOR=1 turbo restart tour-cc");
    let screen = t.wait_screen("the error", |s| s.contains("help:"));
    let error = screen
        .lines()
        .position(|l| l.starts_with("error: "))
        .unwrap();
    assert_eq!(
        screen.lines().nth(error + 1),
        Some("help: did you mean `tour-c`?"),
        "{screen}"
    );
}
