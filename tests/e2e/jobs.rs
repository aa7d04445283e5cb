//! Dependencies, one-shot jobs and schedules through the real binaries: a web app that depends
//! on a one-shot migration (`completed`) and a database stand-in with a TCP health check
//! (`ready`) starts in order and stops in reverse; `turbo start NAME` pulls in stopped
//! dependencies and `--no-deps` does not; a seconds-field `cron:` runs a job and restarts a
//! service, with the next run in `status --json` and `describe`; cycles and unknown names are
//! refused with their position.

use std::{path::Path, time::Duration};

use turbo_tests::{TestDaemon, wait_for};

use crate::cluster::free_port;

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Writes the three apps' scripts; each appends what it does to `log`.
fn scripts(d: &TestDaemon, log: &Path, port: u16) -> String {
    let log = log.display();
    let db = d.script(
        "db.sh",
        &format!(
            "exec python3 - <<'PY'\n\
             import signal, socket, sys, time\n\
             log = open('{log}', 'a', buffering=1)\n\
             log.write('db start\\n')\n\
             def stop(*_):\n    log.write('db stop\\n'); sys.exit(0)\n\
             signal.signal(signal.SIGTERM, stop)\n\
             time.sleep(1.5)\n\
             s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('127.0.0.1', {port})); s.listen()\n\
             log.write('db listening\\n')\n\
             while True:\n    c, _ = s.accept(); c.close()\n\
             PY"
        ),
    );
    let migrate = d.script(
        "migrate.sh",
        &format!("echo migrate >> {log}\nsleep 0.3\necho migrated >> {log}\nexit 0"),
    );
    let web = d.script(
        "web.sh",
        &format!(
            "echo web start >> {log}\ntrap 'echo web stop >> {log}; exit 0' TERM\n\
             while true; do sleep 0.1; done"
        ),
    );
    format!(
        "apps:\n\
         \x20 - name: web\n    cmd: [{web}]\n    depends_on: {{migrate: completed, db: ready}}\n\
         \x20 - name: migrate\n    type: oneshot\n    cmd: [{migrate}]\n    depends_on: {{db: ready}}\n\
         \x20 - name: db\n    cmd: [{db}]\n    kill_timeout: 3s\n    \
         health: {{tcp: '127.0.0.1:{port}', interval: 200ms, timeout: 1s}}\n",
        web = web.display(),
        migrate = migrate.display(),
        db = db.display(),
    )
}

#[test]
fn a_web_app_waits_for_its_migration_and_database_and_stops_before_them() {
    let d = TestDaemon::start("auto");
    let log = d.home().join("order.log");
    let yml = d.config("deps", &scripts(&d, &log, free_port()));
    d.turbo_ok(&["start", yml.to_str().unwrap()]);

    // the database takes 1.5 s to listen: web waits, and says for what
    let web = d.app("web");
    assert_eq!(web["state"], "waiting", "{web}");
    let waiting: Vec<&str> = web["waiting_for"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(waiting.contains(&"migrate (completed)"), "{web}");
    let describe = d.turbo_ok(&["describe", "web"]);
    assert!(describe.contains("waiting for"), "{describe}");
    let status = d.turbo_ok(&["status"]);
    assert!(status.contains("waiting for"), "{status}");

    let web = wait_for("web to run", Duration::from_secs(20), || {
        let app = d.app("web");
        (app["state"] == "online").then_some(app)
    });
    assert!(
        web["waiting_for"].as_array().is_some_and(Vec::is_empty),
        "{web}"
    );
    let migrate = d.app("migrate");
    assert_eq!(migrate["state"], "completed", "{migrate}");
    assert_eq!(migrate["last_exit"]["code"], 0, "{migrate}");
    assert_eq!(
        migrate["restarts"], 0,
        "a job that succeeded is not run again"
    );
    let crashes = d.json(&["crashes", "migrate"]);
    assert_eq!(
        crashes["crashes"].as_array().map(Vec::len),
        Some(0),
        "{crashes}"
    );
    assert_eq!(
        lines(&log),
        [
            "db start",
            "db listening",
            "migrate",
            "migrated",
            "web start"
        ],
        "in dependency order"
    );

    d.turbo_ok(&["stop", "all"]);
    let order = lines(&log);
    assert_eq!(
        order[5..],
        ["web stop", "db stop"],
        "stopped in reverse order: {order:?}"
    );
}

#[test]
fn starting_an_app_by_name_starts_its_dependencies_unless_no_deps() {
    let d = TestDaemon::start("auto");
    let yml = d.config(
        "pull",
        "apps:\n  - name: db\n    cmd: [sleep, '60']\n    autostart: false\n  \
         - name: web\n    cmd: [sleep, '60']\n    autostart: false\n    depends_on: [db]\n    \
         depends_timeout: 30s\n",
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    assert_eq!(d.app("web")["state"], "stopped");
    d.turbo_ok(&["start", "web", "--no-deps"]);
    let web = d.app("web");
    assert_eq!(web["state"], "waiting", "{web}");
    assert_eq!(web["waiting_for"][0], "db (started)", "{web}");
    assert_eq!(d.app("db")["state"], "stopped", "--no-deps leaves it");
    d.turbo_ok(&["start", "web"]);
    d.wait_app("db", "db pulled in", |a| a["state"] == "online");
    d.wait_app("web", "web to follow", |a| a["state"] == "online");
    let out = d.turbo(&["start", "nosuchapp", "--no-deps"]);
    assert!(!out.status.success());
}

#[test]
fn a_seconds_field_schedule_runs_a_job_and_restarts_a_service() {
    let d = TestDaemon::start("auto");
    let runs = d.home().join("runs.log");
    let yml = d.config(
        "cron",
        &format!(
            "apps:\n  - name: tick\n    type: oneshot\n    cmd: [sh, -c, 'date +%s >> {}']\n    \
             cron: {{schedule: '*/2 * * * * *', overlap: skip}}\n  \
             - name: api\n    cmd: [sleep, '600']\n    cron: '*/3 * * * * *'\n    \
             timezone: Europe/Paris\n  \
             - name: nightly\n    type: oneshot\n    cmd: [sh, -c, 'exit 0']\n    cron: '0 3 * * *'\n",
            runs.display()
        ),
    );
    d.turbo_ok(&["start", yml.to_str().unwrap()]);
    // (tick may already have had its first run: it is due every 2 s)
    let nightly = d.app("nightly");
    assert_eq!(
        nightly["state"], "stopped",
        "a scheduled job waits for its first run: {nightly}"
    );
    assert!(
        nightly["next_run"]
            .as_str()
            .is_some_and(|t| t.contains("T03:00:00.000Z")),
        "{nightly}"
    );
    wait_for("two scheduled runs", Duration::from_secs(15), || {
        (lines(&runs).len() >= 2).then_some(())
    });
    let tick = d.wait_app("tick", "the job to complete", |a| a["state"] == "completed");
    assert_eq!(tick["last_exit"]["code"], 0, "{tick}");
    let api = d.wait_app("api", "a scheduled restart", |a| {
        a["restarts"].as_u64().is_some_and(|r| r >= 1) && a["state"] == "online"
    });
    assert_eq!(api["last_exit"]["reason"], "manual", "{api}");
    let describe = d.json(&["describe", "api"]);
    assert_eq!(describe["config"]["cron"]["schedule"], "*/3 * * * * *");
    assert_eq!(describe["config"]["cron"]["action"], "restart");
    assert_eq!(describe["config"]["cron"]["timezone"], "Europe/Paris");
    assert!(describe["status"]["next_run"].is_string(), "{describe}");
    let text = d.turbo_ok(&["describe", "tick"]);
    assert!(
        text.contains("next run") && text.contains("*/2 * * * * * (UTC), run"),
        "{text}"
    );
}

#[test]
fn cycles_and_unknown_dependencies_are_refused_at_their_position() {
    let d = TestDaemon::start("auto");
    let yml = d.config(
        "bad",
        "apps:\n  - name: a\n    cmd: [sleep, '1']\n    depends_on: [b]\n  \
         - name: b\n    cmd: [sleep, '1']\n    depends_on: {a: ready, ghost: started}\n  \
         - name: c\n    cmd: [sleep, '1']\n    cron: '61 * * * *'\n",
    );
    let out = d.turbo(&["start", yml.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // each at its value: `ghost: started` and `a: ready` on line 7
    assert!(
        err.contains(
            "turbo.yml:7:35: apps[1] (b): depends on 'ghost', which is no app of this file"
        ),
        "{err}"
    );
    assert!(
        err.contains("turbo.yml:7:21: apps[1] (b): dependency cycle: a -> b -> a"),
        "{err}"
    );
    assert!(
        err.contains("apps[2] (c): cron '61 * * * *' is not a cron expression"),
        "{err}"
    );
    assert!(d.status().is_empty(), "nothing started");
}

#[test]
fn a_pm2_ecosystem_with_schedules_and_readiness_imports_into_a_file_the_daemon_runs() {
    let d = TestDaemon::start("auto");
    let dir = d.home().join("pm2");
    std::fs::create_dir_all(&dir).unwrap();
    // says READY=1 on $NOTIFY_SOCKET, as the note on wait_ready tells to
    std::fs::write(
        dir.join("api.py"),
        "import os, socket, time\n\
         addr = os.environ['NOTIFY_SOCKET']\n\
         addr = '\\0' + addr[1:] if addr.startswith('@') else addr\n\
         socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', addr)\n\
         while True:\n    time.sleep(1)\n",
    )
    .unwrap();
    std::fs::write(dir.join("report.sh"), "echo report\n").unwrap();
    std::fs::write(
        dir.join("ecosystem.json"),
        r#"{
  "apps": [
    {"name": "api", "script": "api.py", "wait_ready": true, "listen_timeout": 10000,
     "cron_restart": "0 3 * * *", "instances": 2, "merge_logs": true},
    {"name": "report", "script": "report.sh", "cron": "*/5 * * * *", "autorestart": false}
  ],
  "deploy": {"production": {"user": "node", "host": "example.org", "ref": "origin/main"}}
}"#,
    )
    .unwrap();
    let out = d.turbo_in(
        &["import", "pm2", "ecosystem.json", "-o", "turbo.yml"],
        &dir,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for said in [
        "deploy: PM2's deployment",
        "api: cron_restart: restarts on schedule",
        "api: wait_ready: `ready: notify`",
        "report: cron: with autorestart: false it is a scheduled job",
    ] {
        assert!(stderr.contains(said), "{said} not said:\n{stderr}");
    }
    assert!(
        !stderr.contains("merge_logs"),
        "merged is what turbo does: {stderr}"
    );
    let out = d.turbo_in(
        &["start", "turbo.yml", "--wait", "--wait-timeout", "20s"],
        &dir,
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("turbo.yml")).unwrap_or_default()
    );
    let api = d.json(&["describe", "api"]);
    assert_eq!(api["config"]["cron"]["schedule"], "0 3 * * *", "{api}");
    assert_eq!(api["config"]["cron"]["action"], "restart", "{api}");
    assert_eq!(api["config"]["ready"], "notify", "{api}");
    assert_eq!(api["config"]["ready_timeout_ms"], 10_000, "{api}");
    let report = d.json(&["describe", "report"]);
    assert_eq!(report["config"]["kind"], "oneshot", "{report}");
    assert_eq!(report["config"]["cron"]["action"], "run", "{report}");
    assert_eq!(
        report["status"]["state"], "stopped",
        "waits for its first run"
    );
}
