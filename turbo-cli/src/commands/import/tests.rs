use serde_json::json;

use super::{model::*, pm2::*, *};

fn one(doc: &Value) -> (TurboApp, Vec<Note>) {
    let c = convert(doc, &Options::default()).unwrap();
    assert_eq!(c.apps.len(), 1, "{:?}", c.apps);
    (c.apps[0].clone(), c.notes)
}

fn keys(notes: &[Note]) -> Vec<&str> {
    notes.iter().map(|n| n.key.as_str()).collect()
}

#[test]
fn ecosystem_with_every_mapped_option() {
    let doc = json!({"apps": [{
        "name": "api",
        "script": "server.js",
        "args": "--port 3000 --msg 'hello world'",
        "cwd": "srv",
        "env": {"NODE_ENV": "development", "WORKERS": 4, "DEBUG": false},
        "env_production": {"NODE_ENV": "production"},
        "autorestart": true,
        "exp_backoff_restart_delay": 100,
        "max_restarts": 10,
        "kill_timeout": 3000,
        "max_memory_restart": "300M",
        "stop_exit_codes": [0, 3],
        "log_type": "json",
        "uid": "www-data",
        "gid": 33,
        "instances": 4,
        "exec_mode": "cluster",
        "watch": ["src"],
        "ignore_watch": ["node_modules", "*.log"],
        "watch_delay": 1500,
        "log_date_format": "YYYY-MM-DD",
        "out_file": "/var/log/api.out",
        "colour": "blue",
    }]});
    let c = convert(
        &doc,
        &Options {
            env_name: Some("production".into()),
            rebase: None,
        },
    )
    .unwrap();
    let app = &c.apps[0];
    assert_eq!(app.name, "api");
    assert_eq!(app.script.as_deref(), Some("server.js"));
    assert_eq!(app.args, ["--port", "3000", "--msg", "hello world"]);
    assert_eq!(app.cwd.as_deref(), Some("srv"));
    assert_eq!(app.env["NODE_ENV"], "production", "env_production wins");
    assert_eq!(app.env["WORKERS"], "4");
    assert_eq!(app.env["DEBUG"], "false");
    assert_eq!(app.autorestart, None);
    let restart = app.restart.as_ref().unwrap();
    assert_eq!(restart.delay.as_deref(), Some("100ms"));
    assert_eq!(restart.factor, Some(1.5));
    assert_eq!(restart.max_delay.as_deref(), Some("15s"));
    assert_eq!(restart.crash_loop, Some(CrashLoop { max: 10 }));
    assert_eq!(app.kill_timeout.as_deref(), Some("3s"));
    assert_eq!(app.max_memory.as_deref(), Some("300mb"));
    assert_eq!(app.stop_exit_codes, [0, 3]);
    assert_eq!(
        app.log,
        Some(Log {
            format: Some("json"),
            per_instance: true
        }),
        "4 instances without merge_logs: a pair of files each, as PM2"
    );
    assert_eq!(app.user, Some(NameOrId::Name("www-data".into())));
    assert_eq!(app.group, Some(NameOrId::Id(33)));
    assert_eq!(app.stop_signal, Some("SIGINT"));
    assert_eq!(app.instances, Some(Instances::Count(4)));
    assert_eq!(app.watch, Some(Watch::Paths(vec!["src".into()])));
    assert_eq!(app.ignore_watch, ["node_modules", "*.log"]);
    assert_eq!(app.watch_delay.as_deref(), Some("1500ms"));
    let mut dropped = keys(&c.notes);
    dropped.sort_unstable();
    assert_eq!(
        dropped,
        [
            "colour",
            "exec_mode",
            "log_date_format",
            "max_restarts",
            "out_file",
        ]
    );
    let colour = c.notes.iter().find(|n| n.key == "colour").unwrap();
    assert_eq!(colour.kind, NoteKind::Unknown);
}

#[test]
fn interpreters_decide_between_script_and_cmd() {
    let cases = [
        // (script, interpreter, node_args) -> (script?, cmd?)
        (json!({"script": "app.py"}), Some("app.py"), None),
        (
            json!({"script": "app.py", "interpreter": "python3"}),
            Some("app.py"),
            None,
        ),
        (
            json!({"script": "app.py", "interpreter": "/opt/py/bin/python3.12"}),
            None,
            Some(vec!["/opt/py/bin/python3.12", "app.py"]),
        ),
        (
            json!({"script": "app.js", "node_args": "--max-old-space-size=512"}),
            None,
            Some(vec!["node", "--max-old-space-size=512", "app.js"]),
        ),
        (
            json!({"script": "./bin/www"}),
            None,
            Some(vec!["node", "./bin/www"]),
        ),
        (
            json!({"script": "./server", "exec_interpreter": "none"}),
            None,
            Some(vec!["./server"]),
        ),
        (
            json!({"script": "npm", "args": ["run", "start"]}),
            None,
            Some(vec!["npm", "run", "start"]),
        ),
        (
            json!({"script": "app.coffee"}),
            None,
            Some(vec!["coffee", "app.coffee"]),
        ),
        // PM2 runs .sh with bash, turbo with sh: kept as PM2 had it
        (
            json!({"script": "run.sh"}),
            None,
            Some(vec!["bash", "run.sh"]),
        ),
        (
            json!({"script": "run.sh", "interpreter": "sh"}),
            Some("run.sh"),
            None,
        ),
    ];
    for (doc, script, cmd) in cases {
        let (app, _) = one(&doc);
        assert_eq!(app.script.as_deref(), script, "{doc}");
        let cmd: Option<Vec<String>> = cmd.map(|c| c.into_iter().map(str::to_owned).collect());
        let got = app.cmd.map(|mut c| {
            c.extend(app.args);
            c
        });
        assert_eq!(got, cmd, "{doc}");
    }
}

#[test]
fn fixed_delay_and_autorestart_off() {
    let (app, _) =
        one(&json!({"apps": [{"script": "w.js", "restart_delay": 45000, "autorestart": false}]}));
    assert_eq!(app.name, "w");
    let r = app.restart.unwrap();
    assert_eq!(
        (r.delay.as_deref(), r.factor, r.max_delay.as_deref()),
        (Some("45s"), Some(1.0), Some("45s"))
    );
    assert_eq!(app.autorestart, Some("never"));
}

#[test]
fn dump_reads_options_and_ignores_state_and_shell() {
    let entry = json!({
        "name": "web api",
        "pm_exec_path": "/srv/web/index.js",
        "pm_cwd": "/srv/web",
        "exec_interpreter": "node",
        "node_args": [],
        "args": ["--port", "8080"],
        "env": {
            "PATH": "/usr/bin", "HOME": "/root", "SSH_CONNECTION": "x", "LC_ALL": "C",
            "NODE_ENV": "production", "web api": {}, "unique_id": "abc",
        },
        "PATH": "/usr/bin",
        "NODE_ENV": "production",
        "status": "online", "pm_uptime": 1, "restart_time": 3, "unstable_restarts": 0,
        "pm_out_log_path": "/root/.pm2/logs/web-api-out.log",
        "pm_err_log_path": "/root/.pm2/logs/web-api-error.log",
        "vizion": true, "treekill": true, "autostart": true, "merge_logs": false,
        "instance_var": "NODE_APP_INSTANCE", "exec_mode": "fork_mode", "autorestart": true,
        "kill_retry_time": 100, "windowsHide": true, "username": "root",
        "max_memory_restart": 536870912,
        "watch": false,
    });
    let doc = json!([entry.clone(), entry]);
    let c = convert(&doc, &Options::default()).unwrap();
    assert_eq!(c.apps.len(), 1, "instances of one app collapse");
    let app = &c.apps[0];
    assert_eq!(app.name, "web-api");
    assert_eq!(app.script.as_deref(), Some("/srv/web/index.js"));
    assert_eq!(app.args, ["--port", "8080"]);
    assert_eq!(app.cwd.as_deref(), Some("/srv/web"));
    assert_eq!(app.env.keys().collect::<Vec<_>>(), ["NODE_ENV"]);
    assert_eq!(app.max_memory.as_deref(), Some("512mb"));
    assert_eq!(
        app.instances,
        Some(Instances::Count(2)),
        "one entry per instance"
    );
    let mut k = keys(&c.notes);
    k.sort_unstable();
    k.dedup();
    assert_eq!(k, ["env", "name"], "{:?}", c.notes);
}

#[test]
fn rebase_makes_paths_absolute() {
    let doc = json!({"apps": [{"name": "a", "script": "a.py", "cwd": "sub"}, {"name": "b", "script": "b.py"}]});
    let c = convert(
        &doc,
        &Options {
            env_name: None,
            rebase: Some("/home/u/proj".into()),
        },
    )
    .unwrap();
    assert_eq!(c.apps[0].cwd.as_deref(), Some("/home/u/proj/sub"));
    assert_eq!(c.apps[1].cwd.as_deref(), Some("/home/u/proj"));
}

#[test]
fn bad_documents_say_what_was_expected() {
    for doc in [json!(3), json!({"apps": 3}), json!({"services": []})] {
        let err = convert(&doc, &Options::default()).unwrap_err();
        assert!(err.contains("ecosystem") || err.contains("apps"), "{err}");
    }
    assert_eq!(
        convert(&json!({"apps": []}), &Options::default()).unwrap_err(),
        "no apps in it"
    );
    let err = convert(&json!({"apps": [{"name": "x"}]}), &Options::default()).unwrap_err();
    assert!(err.contains("x: script: missing"), "{err}");
}

#[test]
fn duplicate_names_in_an_ecosystem_get_a_suffix() {
    let c = convert(
        &json!({"apps": [{"name": "a", "script": "a.py"}, {"name": "a", "script": "b.py"}]}),
        &Options::default(),
    )
    .unwrap();
    let names: Vec<&str> = c.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["a", "a-2"]);
}

#[test]
fn an_env_name_nobody_has_is_reported_once() {
    let doc = json!({"apps": [{"script": "a.js"}, {"script": "b.js", "env_staging": {"X": "1"}}]});
    let opts = |name: &str| Options {
        env_name: Some(name.into()),
        rebase: None,
    };
    let c = convert(&doc, &opts("staging")).unwrap();
    assert!(c.notes.is_empty(), "{:?}", c.notes);
    assert_eq!(c.apps[1].env["X"], "1");
    let c = convert(&doc, &opts("prod")).unwrap();
    assert_eq!(keys(&c.notes), ["--env"]);
}

#[test]
fn units() {
    assert_eq!(pm2_bytes(&json!("300M")), Some(300 << 20));
    assert_eq!(pm2_bytes(&json!("1G")), Some(1 << 30));
    assert_eq!(pm2_bytes(&json!("512k")), Some(512 << 10));
    assert_eq!(pm2_bytes(&json!(2_000_000)), Some(2_000_000));
    assert_eq!(pm2_bytes(&json!("lots")), None);
    assert_eq!(size_text(300 << 20), "300mb");
    assert_eq!(size_text(2_000_000), "2000000");
    assert_eq!(millis(&json!("5s")), Some(5000));
    assert_eq!(millis(&json!(1500)), Some(1500));
    assert_eq!(millis(&json!("2m")), Some(120_000));
    assert_eq!(duration_text(1500), "1500ms");
    assert_eq!(duration_text(120_000), "2m");
    assert_eq!(
        split_words(r#"a "b c" 'd e' f\ g"#),
        ["a", "b c", "d e", "f g"]
    );
}

#[test]
fn schedules_readiness_merged_logs_and_deploy() {
    let doc = json!({
        "apps": [
            {"name": "api", "script": "server.js", "cron_restart": "0 3 * * *",
             "wait_ready": true, "listen_timeout": 8000, "instances": 2, "merge_logs": true},
            {"name": "report", "script": "report.js", "cron": "*/5 * * * *",
             "autorestart": false, "autostart": false},
            {"name": "slow", "script": "slow.js", "listen_timeout": 2000},
        ],
        "deploy": {"production": {"user": "node", "repo": "git@example.com:app.git"}},
    });
    let c = convert(&doc, &Options::default()).unwrap();
    let [api, report, slow] = &c.apps[..] else {
        panic!("{:?}", c.apps)
    };
    assert_eq!(api.cron, Some(Cron::Restart("0 3 * * *".into())));
    assert_eq!(
        (api.ready, api.ready_timeout.as_deref()),
        (Some("notify"), Some("8s"))
    );
    assert_eq!(api.kind, None);
    assert_eq!(
        api.log, None,
        "merge_logs: one pair of files, turbo's default"
    );
    assert_eq!(report.kind, Some("oneshot"));
    assert_eq!(report.autorestart, None, "a job is not restarted anyway");
    assert_eq!(
        report.cron,
        Some(Cron::Run {
            schedule: "*/5 * * * *".into(),
            action: "run"
        })
    );
    assert_eq!(report.autostart, Some(false));
    assert_eq!((slow.ready, slow.ready_timeout.as_ref()), (None, None));
    let noted: Vec<(&str, &str, &NoteKind)> = c
        .notes
        .iter()
        .map(|n| (n.app.as_str(), n.key.as_str(), &n.kind))
        .collect();
    assert_eq!(
        noted,
        [
            ("file", "deploy", &NoteKind::Dropped),
            ("api", "cron_restart", &NoteKind::Approximated),
            ("api", "wait_ready", &NoteKind::Approximated),
            ("report", "cron", &NoteKind::Approximated),
            ("slow", "listen_timeout", &NoteKind::Dropped),
        ],
        "merged logs of instances are what turbo does: no note"
    );
    let deploy = &c.notes[0].what;
    assert!(deploy.contains("turbo apply"), "{deploy}");
    assert!(c.notes[1].what.contains("timezone:"), "{}", c.notes[1].what);
    let text = to_yaml(&c, "ecosystem.json").unwrap();
    assert!(text.contains("  cron: 0 3 * * *\n"), "{text}");
    assert!(
        text.contains("  type: oneshot\n  cron:\n    schedule: '*/5 * * * *'\n    action: run\n"),
        "{text}"
    );
    assert!(
        text.contains("  ready: notify\n  ready_timeout: 8s\n"),
        "{text}"
    );
}

#[test]
fn yaml_output_is_turbo_yml() {
    let (app, notes) = one(
        &json!({"apps": [{"name": "api", "script": "s.js", "env": {"PORT": 3000}, "watch": true}]}),
    );
    let text = to_yaml(
        &Conversion {
            apps: vec![app],
            notes,
        },
        "ecosystem.json",
    )
    .unwrap();
    assert!(
        text.starts_with("# Converted from ecosystem.json"),
        "{text}"
    );
    assert!(text.contains("\n  watch: true\n"), "{text}");
    assert!(text.ends_with('\n'));
    assert!(
        text.contains("apps:\n- name: api\n  script: s.js\n"),
        "{text}"
    );
    // numbers in env stay strings, as turbo.yml wants
    assert!(text.contains("PORT: '3000'"), "{text}");
    assert!(text.contains("stop_signal: SIGINT"), "{text}");
}
