//! `turbo apply`, `turbo config check` and `turbo config show` through the real binaries: one
//! apply that adds, updates live, restarts and prunes at once; `--dry-run` and an invalid file
//! change nothing; a rolling apply of a `listen:` app under load fails no request.

use std::collections::BTreeMap;

use serde_json::Value;
use turbo_tests::{TestDaemon, json, one_line_error, pid_alive, wait_for};

use crate::cluster::{cluster_web, env_of, free_port, pids, under_load, wait_online};

/// `name -> (state, pid, memory_limit_bytes)` of every app.
type Apps = BTreeMap<String, (String, Option<u64>, Option<u64>)>;

/// One app's part of a plan: action and `(field, how)` pairs.
type Planned<'a> = (&'a str, Vec<(&'a str, &'a str)>);

fn apps(d: &TestDaemon) -> Apps {
    d.status()
        .into_iter()
        .map(|a| {
            (
                a["name"].as_str().expect("name").to_owned(),
                (
                    a["state"].as_str().expect("state").to_owned(),
                    a["pid"].as_u64(),
                    a["memory_limit_bytes"].as_u64(),
                ),
            )
        })
        .collect()
}

fn all_online(d: &TestDaemon, n: usize) -> Apps {
    wait_for(
        &format!("{n} apps online"),
        std::time::Duration::from_secs(15),
        || {
            let now = apps(d);
            (now.len() == n && now.values().all(|(s, ..)| s == "online")).then_some(now)
        },
    )
}

const V1: &str = "apps:
  - name: keep
    cmd: [sleep, \"300\"]
    max_memory: 100mb
  - name: slow
    cmd: [sleep, \"300\"]
  - name: swap
    cmd: [sleep, \"300\"]
  - name: old
    cmd: [sleep, \"300\"]
";

const V2: &str = "apps:
  - name: keep
    cmd: [sleep, \"300\"]
    max_memory: 200mb
  - name: slow
    cmd: [sleep, \"300\"]
    kill_timeout: 1s
  - name: swap
    cmd: [sleep, \"301\"]
  - name: fresh
    cmd: [sleep, \"300\"]
";

const BAD: &str = "apps:
  - name: other
    cmd: [sleep, \"300\"]
  - name: keep
    cmd: [sleep, \"300\"]
    restart: {delay: -1}
";

#[test]
fn one_apply_adds_updates_restarts_and_prunes_while_dry_runs_and_invalid_files_change_nothing() {
    let d = TestDaemon::start("auto");
    let v1 = d.config("v1", V1);
    let first = d.turbo_ok(&["apply", v1.to_str().unwrap()]);
    assert!(
        first.contains("4 to add, 0 to change, 0 to remove"),
        "{first}"
    );
    let before = all_online(&d, 4);

    // the plan, and nothing else
    // beside v1 (an app's cwd is its file's directory by default: a new one would restart it)
    let v2 = v1.with_file_name("v2.yml");
    std::fs::write(&v2, V2).expect("write v2.yml");
    let plan = d.json(&["apply", v2.to_str().unwrap(), "--prune", "--dry-run"]);
    let actions: BTreeMap<&str, Planned<'_>> = plan
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| {
            let fields = c["fields"]
                .as_array()
                .expect("fields")
                .iter()
                .map(|f| (f["field"].as_str().unwrap(), f["how"].as_str().unwrap()))
                .collect();
            (
                c["name"].as_str().unwrap(),
                (c["action"].as_str().unwrap(), fields),
            )
        })
        .collect();
    assert_eq!(
        actions,
        BTreeMap::from([
            (
                "keep",
                ("update", vec![("source", "live"), ("max_memory", "live")])
            ),
            (
                "slow",
                ("update", vec![("kill_timeout", "live"), ("source", "live")])
            ),
            (
                "swap",
                ("restart", vec![("cmd", "restart"), ("source", "live")])
            ),
            ("fresh", ("add", vec![])),
            ("old", ("remove", vec![])),
        ])
    );
    assert_eq!(apps(&d), before, "--dry-run changed nothing");

    // one invalid app rejects the whole file, with its position, and changes nothing
    let bad = d.home().join("bad.yml");
    std::fs::write(&bad, BAD).expect("write bad.yml");
    let out = d.turbo(&["apply", bad.to_str().unwrap(), "--prune"]);
    let err = one_line_error(&out);
    assert!(
        err.contains("bad.yml:6:") && err.contains("restart.delay"),
        "{err}"
    );
    assert_eq!(apps(&d), before, "an invalid file changed nothing");
    let check = d.turbo(&["config", "check", bad.to_str().unwrap()]);
    assert!(one_line_error(&check).contains("bad.yml:6:"));
    let valid = d.turbo_ok(&["config", "check", v2.to_str().unwrap()]);
    assert!(valid.contains("valid, 4 apps"), "{valid}");
    assert_eq!(apps(&d), before, "config check changed nothing");

    // the real thing
    let text = d.turbo_ok(&["apply", v2.to_str().unwrap(), "--prune"]);
    assert!(
        text.contains("~ keep   update, no restart: source (live), max_memory (live)")
            && text.contains("1 to add, 3 to change, 1 to remove"),
        "{text}"
    );
    let after = all_online(&d, 4);
    let pid = |m: &Apps, n: &str| m[n].1;
    assert_eq!(
        pid(&after, "keep"),
        pid(&before, "keep"),
        "live: same process"
    );
    assert_eq!(after["keep"].2, Some(200 << 20), "with the new limit");
    assert_eq!(pid(&after, "slow"), pid(&before, "slow"));
    assert_ne!(pid(&after, "swap"), pid(&before, "swap"), "restarted");
    assert!(after.contains_key("fresh") && !after.contains_key("old"));
    assert!(
        !pid_alive(pid(&before, "old").unwrap()),
        "the pruned app stopped"
    );

    // the daemon remembers the file, and shows the effective configuration
    let source = v2.to_str().unwrap();
    let described = d.json(&["describe", "slow"]);
    assert_eq!(described["config"]["source"], source);
    assert!(d.turbo_ok(&["describe", "slow"]).contains(source));
    let shown = json(&d.turbo_ok(&["config", "show", "slow"]));
    assert_eq!(
        (&shown["kill_timeout_ms"], &shown["source"]),
        (&Value::from(1000), &Value::from(source))
    );
    // the command as it runs: resolved on the daemon's PATH
    let program = shown["cmd"][0].as_str().expect("cmd");
    assert!(
        program.starts_with('/') && program.ends_with("/sleep"),
        "{shown}"
    );

    let again = d.turbo_ok(&["apply", v2.to_str().unwrap(), "--prune"]);
    assert!(again.contains("nothing to do"), "{again}");
    assert_eq!(apps(&d), after);
}

#[test]
fn a_rolling_apply_of_a_listen_app_under_load_fails_no_request() {
    let d = TestDaemon::start("auto");
    let port = free_port();
    let yml = |version: &str| {
        format!(
            "apps:\n  - name: web\n    cmd: [python3, \"{}\"]\n    instances: 2\n    listen: \"127.0.0.1:{port}\"\n    env: {{ VERSION: \"{version}\" }}\n",
            cluster_web()
        )
    };
    let file = d.config("web", &yml("1"));
    d.turbo_ok(&["apply", file.to_str().unwrap()]);
    let before = pids(&wait_online(&d, "web", 2));
    std::fs::write(&file, yml("2")).expect("rewrite turbo.yml");
    let mut text = String::new();
    let load = under_load(port, || {
        text = d.turbo_ok(&["apply", file.to_str().unwrap()]);
    });
    println!(
        "rolling apply: {} requests ({} during), {} failed",
        load.ok,
        load.during,
        load.failed.len()
    );
    assert!(
        text.contains("~ web  rolling reload: env (restart)"),
        "{text}"
    );
    assert!(load.during > 0, "requests were served during the apply");
    assert!(load.failed.is_empty(), "{:?}", load.failed);
    let after = pids(&wait_online(&d, "web", 2));
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} -> {after:?}"
    );
    for pid in after {
        assert_eq!(env_of(pid, "VERSION").as_deref(), Some("2"));
    }
}

#[test]
fn an_app_with_autostart_false_is_listed_stopped_until_asked_and_apply_keeps_it_so() {
    let d = TestDaemon::start("auto");
    let file = d.config(
        "later",
        "apps:\n  - name: now\n    cmd: [sleep, \"300\"]\n  - name: later\n    cmd: [sleep, \"300\"]\n    autostart: false\n",
    );
    d.turbo_ok(&["apply", file.to_str().unwrap()]);
    d.wait_app("now", "online", |a| a["state"] == "online");
    let later = d.app("later");
    assert_eq!(
        (&later["state"], &later["pid"]),
        (&Value::from("stopped"), &Value::Null)
    );
    // starting its file again does not start it
    d.turbo_ok(&["start", file.to_str().unwrap()]);
    assert_eq!(d.app("later")["state"], "stopped");
    // a change that needs a restart is handed over; the app stays stopped
    std::fs::write(
        &file,
        "apps:\n  - name: now\n    cmd: [sleep, \"300\"]\n  - name: later\n    cmd: [sleep, \"301\"]\n    autostart: false\n",
    )
    .expect("rewrite");
    let text = d.turbo_ok(&["apply", file.to_str().unwrap()]);
    assert!(
        text.contains("~ later  update, no restart: cmd (restart)"),
        "{text}"
    );
    assert_eq!(d.app("later")["state"], "stopped");
    // asked by name, it runs the new command
    d.turbo_ok(&["restart", "later"]);
    let running = d.wait_app("later", "online", |a| a["state"] == "online");
    let pid = running["pid"].as_u64().expect("pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert!(String::from_utf8_lossy(&cmdline).contains("301"));
}

/// The daemon's own file in system mode: applied at start, and on SIGHUP as `turbo apply
/// --prune`; the packaged `/etc/turbo/turbo.yml` (`apps: []`) is accepted.
#[test]
fn sighup_applies_the_system_config_file_with_prune() {
    use std::process::{Command, Stdio};

    use turbo_tests::{SystemBus, bin_dir, is_root};

    if !is_root() {
        eprintln!(
            "\n*** SKIPPED sighup_applies_the_system_config_file_with_prune: needs root to own the daemon's name on a system-like bus (CI is root) ***\n"
        );
        return;
    }
    let bus = SystemBus::start("turbo-sysconf-");
    let home = tempfile::Builder::new()
        .prefix("turbo-sysconf-home-")
        .tempdir()
        .expect("tempdir");
    let etc = home.path().join("etc");
    std::fs::create_dir_all(&etc).expect("etc dir");
    let file = etc.join("turbo.yml");
    let yml = |apps: &[(&str, &str)]| {
        let mut s = String::from("apps:\n");
        for (name, extra) in apps {
            s.push_str(&format!(
                "  - name: {name}\n    cmd: [sleep, \"300\"]\n{extra}"
            ));
        }
        s
    };
    std::fs::write(&file, yml(&[("a", ""), ("b", "")])).expect("write turbo.yml");
    let log = std::fs::File::create(home.path().join("daemon.log")).expect("log");
    let mut daemon = Command::new(bin_dir().join("turbo-daemon"))
        .args([
            "--bus-address",
            &bus.address(),
            "--ebpf",
            "off",
            "--metrics-listen",
            "off",
        ])
        .arg("--home")
        .arg(home.path())
        .arg("--config")
        .arg(&file)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start turbo-daemon");
    let daemon_log = || std::fs::read_to_string(home.path().join("daemon.log")).unwrap_or_default();
    let cli = |args: &[&str]| {
        let out = Command::new(bin_dir().join("turbo"))
            .args(args)
            .env("TURBO_BUS_ADDRESS", bus.address())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run turbo");
        assert!(
            out.status.success(),
            "turbo {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            daemon_log()
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let names = || -> BTreeMap<String, (String, u64)> {
        json(&cli(&["status", "--json"]))
            .as_array()
            .expect("a list")
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().expect("name").to_owned(),
                    (
                        a["state"].as_str().expect("state").to_owned(),
                        a["pid"].as_u64().unwrap_or(0),
                    ),
                )
            })
            .collect()
    };
    let wait_names = |want: &[&str]| {
        wait_for(
            &format!("apps {want:?} online"),
            std::time::Duration::from_secs(20),
            || {
                let now = names();
                (now.keys().map(String::as_str).eq(want.iter().copied())
                    && now.values().all(|(s, _)| s == "online"))
                .then_some(now)
            },
        )
    };
    // as the unit's ExecReload does it
    let hup = || {
        let sent = Command::new("kill")
            .args(["-HUP", &daemon.id().to_string()])
            .status()
            .expect("kill(1)");
        assert!(sent.success());
    };

    wait_for(
        "the daemon on the system-like bus",
        std::time::Duration::from_secs(15),
        || {
            Command::new(bin_dir().join("turbo"))
                .arg("ping")
                .env("TURBO_BUS_ADDRESS", bus.address())
                .output()
                .ok()?
                .status
                .success()
                .then_some(())
        },
    );
    // at start: the file's apps, from the file
    let started = wait_names(&["a", "b"]);
    let source = file.to_str().expect("utf-8");
    assert_eq!(
        json(&cli(&["describe", "a", "--json"]))["config"]["source"],
        source
    );
    cli(&["start", "sleep", "--name", "manual", "--", "300"]);
    wait_names(&["a", "b", "manual"]);

    // SIGHUP: a changes live, b and the app not in the file go, c comes
    // (c from /etc/turbo/conf.d, as it were)
    std::fs::create_dir(etc.join("conf.d")).expect("conf.d");
    let c_file = etc.join("conf.d").join("c.yml");
    std::fs::write(&c_file, yml(&[("c", "")])).expect("write conf.d/c.yml");
    let main = yml(&[("a", "    kill_timeout: 2s\n")]) + "include: [\"conf.d/*.yml\"]\n";
    std::fs::write(&file, main).expect("rewrite");
    hup();
    let reloaded = wait_names(&["a", "c"]);
    assert_eq!(
        json(&cli(&["describe", "c", "--json"]))["config"]["source"],
        c_file.to_str().expect("utf-8")
    );
    assert_eq!(reloaded["a"].1, started["a"].1, "a kept its process");
    assert!(!turbo_tests::pid_alive(started["b"].1), "b stopped");
    assert!(
        daemon_log().contains("1 added, 1 changed, 2 removed"),
        "{}",
        daemon_log()
    );

    // an invalid file changes nothing and says why
    std::fs::write(&file, yml(&[("a", "    kill_timeout: soon\n")])).expect("rewrite");
    hup();
    wait_for(
        "the refusal in the log",
        std::time::Duration::from_secs(10),
        || {
            daemon_log()
                .contains("was not applied, nothing changed")
                .then_some(())
        },
    );
    assert!(daemon_log().contains("turbo.yml:4:19"), "{}", daemon_log());
    assert_eq!(names(), reloaded);

    // the packaged file: `apps: []`, accepted; with prune it leaves no app
    let packaged = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/turbo.yml");
    std::fs::copy(packaged, &file).expect("copy deploy/turbo.yml");
    hup();
    wait_for(
        "every app removed",
        std::time::Duration::from_secs(20),
        || names().is_empty().then_some(()),
    );
    assert!(!turbo_tests::pid_alive(reloaded["c"].1));

    cli(&["kill"]);
    let _ = daemon.wait();
}

/// `turbo` against `d` with `GREETING` set to `greeting` (or unset) in its environment.
fn turbo_with_greeting(
    d: &TestDaemon,
    greeting: Option<&str>,
    args: &[&str],
) -> std::process::Output {
    let mut cmd = std::process::Command::new(turbo_tests::bin_dir().join("turbo"));
    cmd.args(args)
        .current_dir(d.home())
        .env("TURBO_HOME", d.home())
        .env_remove("TURBO_BUS_ADDRESS")
        .env_remove("GREETING")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    if let Some(greeting) = greeting {
        cmd.env("GREETING", greeting);
    }
    cmd.output().expect("run turbo")
}

/// `${VAR}` from the caller, `${VAR:-default}`, an `env_production:` profile with `--env`, an
/// unknown profile and an unset variable refused at their place, and `restart --update-env`
/// reading the caller's environment again.
#[test]
fn variables_defaults_and_profiles_come_from_the_caller_and_update_env_reads_them_again() {
    let d = TestDaemon::start("auto");
    let file = d.config(
        "vars",
        "apps:\n  - name: vars\n    cmd: [sleep, \"${NAP:-300}\"]\n    env:\n      GREETING: \"${GREETING}\"\n      MODE: dev\n    env_production:\n      MODE: \"prod-$${GREETING}-${GREETING}\"\n",
    );
    let path = file.to_str().unwrap();
    let e = one_line_error(&turbo_with_greeting(&d, None, &["apply", path]));
    assert!(
        e.contains(&format!(
            "{path}:5:17: apps[0] (vars): variable GREETING is not set"
        )),
        "{e}"
    );
    let e = one_line_error(&turbo_with_greeting(
        &d,
        Some("hello"),
        &["config", "check", path, "--env", "staging"],
    ));
    assert!(
        e.contains("profile 'staging' is not defined by any app (available: production)"),
        "{e}"
    );
    assert!(d.status().is_empty(), "refused files changed nothing");

    let out = turbo_with_greeting(&d, Some("hello"), &["apply", path, "--env", "production"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = d.wait_app("vars", "online", |a| a["state"] == "online");
    let pid = app["pid"].as_u64().expect("pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert!(
        String::from_utf8_lossy(&cmdline).ends_with("\x00300\x00"),
        "the default: {cmdline:?}"
    );
    assert_eq!(env_of(pid, "GREETING").as_deref(), Some("hello"));
    assert_eq!(
        env_of(pid, "MODE").as_deref(),
        Some("prod-${GREETING}-hello")
    );

    // the app keeps what it was given until asked to read the environment again
    let out = turbo_with_greeting(&d, Some("bye"), &["restart", "vars"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = d.wait_app("vars", "restarted", |a| {
        a["state"] == "online" && a["pid"].as_u64() != Some(pid)
    });
    let pid = app["pid"].as_u64().expect("pid");
    assert_eq!(env_of(pid, "GREETING").as_deref(), Some("hello"));
    let out = turbo_with_greeting(
        &d,
        Some("bye"),
        &["restart", "vars", "--update-env", "--env", "production"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = d.wait_app("vars", "replaced", |a| {
        a["state"] == "online" && a["pid"].as_u64() != Some(pid)
    });
    let pid = app["pid"].as_u64().expect("pid");
    assert_eq!(env_of(pid, "GREETING").as_deref(), Some("bye"));
    assert_eq!(env_of(pid, "MODE").as_deref(), Some("prod-${GREETING}-bye"));

    // `turbo start FILE --env NAME` expands the same way (StartConfigWith)
    let out = turbo_with_greeting(&d, Some("start"), &["start", path, "--env", "production"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = d.wait_app("vars", "started again", |a| {
        a["state"] == "online" && a["pid"].as_u64() != Some(pid)
    });
    let pid = app["pid"].as_u64().expect("pid");
    assert_eq!(
        env_of(pid, "MODE").as_deref(),
        Some("prod-${GREETING}-start")
    );
}
