use std::{collections::HashMap, ffi::OsString, os::unix::fs::PermissionsExt, path::PathBuf};

use zbus::zvariant::OwnedValue;

use super::{
    files::resolve_command,
    validate::{online_cpus, parse_signal},
    *,
};
use crate::spec::{
    Autorestart, MemoryEnforce,
    environment::{
        self,
        tests::{DAEMON_ENV, get, os},
    },
};

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A `turbo.yml` checked by the daemon on its own behalf, the error as users read it.
pub(super) fn parse_config(
    content: &str,
    origin: &str,
    base_dir: &Path,
    path_env: &str,
) -> Result<Vec<AppSpec>, String> {
    let doc = Document {
        content,
        origin,
        base_dir,
        path_env,
        vars: &super::NO_VARS,
    };
    from_yaml_as(&doc, Caller::daemon()).map_err(|e| e.to_string())
}

/// [`from_start_options`] with the error as users read it.
fn from_options(
    name: &str,
    argv: &[String],
    options: &HashMap<String, OwnedValue>,
    path_env: &str,
    default_cwd: &Path,
    powers: &Powers,
) -> Result<AppSpec, String> {
    let call = StartCall {
        name,
        argv,
        options,
        path_env,
        default_cwd,
    };
    from_start_options(&call, powers).map_err(|e| e.to_string())
}

#[test]
fn signals() {
    assert_eq!(parse_signal("SIGINT"), Some(2));
    assert_eq!(parse_signal("term"), Some(15));
    assert_eq!(parse_signal("SIGNOPE"), None);
}

#[test]
fn resolves_commands_scripts_and_interpreters() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let argv = resolve_command(&["sleep".into(), "5".into()], cwd, PATH, false).unwrap();
    assert!(argv[0].ends_with("/sleep") && argv[1] == "5", "{argv:?}");
    std::fs::write(cwd.join("app.py"), "print(1)").unwrap();
    let argv = resolve_command(&["app.py".into()], cwd, PATH, false).unwrap();
    assert!(argv[0].ends_with("python3"), "{argv:?}");
    assert_eq!(argv[1], cwd.join("app.py").to_string_lossy());
    std::fs::write(cwd.join("tool"), "#!/bin/sh\n").unwrap();
    let err = resolve_command(&["./tool".into()], cwd, PATH, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not executable") && err.contains("chmod +x"),
        "{err}"
    );
    let err = resolve_command(&["./missing.js".into()], cwd, PATH, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not found"), "{err}");
    let err = resolve_command(&["no-such-cmd-xyz".into()], cwd, PATH, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not in PATH"), "{err}");
}

#[test]
fn config_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let yml = "apps:\n  - name: ok\n    cmd: [sleep, '100']\n  - name: bad/name\n    script: nope.py\n  - name: ok\n    cmd: [sleep]\n  - name: x\n    cmd: [sleep]\n    autorestart: sometimes\n";
    let err = parse_config(yml, "turbo.yml", dir.path(), PATH).unwrap_err();
    assert_lines(
        &err,
        &[
            ("turbo.yml:4:11: apps[1] (bad/name): ", "'/'"),
            ("turbo.yml:5:13: apps[1] (bad/name): ", "nope.py not found"),
            (
                "turbo.yml:6:11: apps[2] (ok): name 'ok' is used twice",
                "apps[0]",
            ),
            ("turbo.yml:10:18: apps[3] (x): autorestart 'sometimes'", ""),
        ],
    );
}

/// `err` has one line per `(start, part)`, each starting with `start` and holding `part`.
fn assert_lines(err: &str, want: &[(&str, &str)]) {
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), want.len(), "{err}");
    for (line, (start, part)) in lines.iter().zip(want) {
        assert!(line.starts_with(start) && line.contains(part), "{err}");
    }
}

#[test]
fn memory_enforce_values_and_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let ok = "apps:\n  - name: a\n    cmd: [sleep, '1']\n    max_memory: 64mb\n    memory_enforce: cgroup\n";
    let specs = parse_config(ok, "t.yml", dir.path(), PATH).unwrap();
    assert_eq!(specs[0].memory.enforce, MemoryEnforce::Cgroup);
    let err = config_error(
        "apps:\n  - name: a\n    cmd: [sleep, '1']\n    max_memory: 64mb\n    memory_enforce: kernel\n",
    );
    assert!(
        err.starts_with("t.yml:5:21: apps[0] (a): memory_enforce 'kernel' is not one of: restart")
            && err.contains("cgroup"),
        "{err}"
    );
    let err =
        config_error("apps:\n  - name: a\n    cmd: [sleep, '1']\n    memory_enforce: cgroup\n");
    assert!(
        err.starts_with("t.yml:4:21: apps[0] (a): memory_enforce needs max_memory")
            && err.contains("max_memory: 512mb"),
        "{err}"
    );
}

/// The whole message for `yml`, checked in a directory holding `run.sh` (executable).
#[test]
fn cgroup_limits_are_read_and_bad_ones_refused_at_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let ok = "apps:\n  - name: a\n    cmd: [sleep, '1']\n    cpu_max: 150%\n    cpu_weight: 50\n    \
              io_weight: 200\n    pids_max: 20\n    memory_high: 64mb\n";
    let specs = parse_config(ok, "t.yml", dir.path(), PATH).unwrap();
    assert_eq!(
        specs[0].resources,
        crate::spec::Resources {
            cpu_max: Some(150),
            cpu_weight: Some(50),
            io_weight: Some(200),
            pids_max: Some(20),
            memory_high: Some(64 << 20),
            best_effort: false,
        }
    );
    let bare = "apps:\n  - name: a\n    cmd: [sleep, '1']\n    cpu_max: 20\n";
    let specs = parse_config(bare, "t.yml", dir.path(), PATH).unwrap();
    assert_eq!(specs[0].resources.cpu_max, Some(20));
    let lenient = format!("{bare}    limits_required: false\n");
    let specs = parse_config(&lenient, "t.yml", dir.path(), PATH).unwrap();
    assert!(specs[0].resources.best_effort);
    for (key, value, says) in [
        ("cpu_max", "0%", "cpu_max '0%' is not a share of one CPU"),
        ("cpu_max", "lots", "cpu_max 'lots' is not"),
        (
            "cpu_weight",
            "0",
            "cpu_weight 0 must be between 1 and 10000",
        ),
        (
            "io_weight",
            "20000",
            "io_weight 20000 must be between 1 and 10000",
        ),
        ("pids_max", "0", "pids_max 0 must be between 1 and 4194304"),
        ("memory_high", "10k", "memory_high 10240 bytes is below 1mb"),
    ] {
        let err = config_error(&format!(
            "apps:\n  - name: a\n    cmd: [sleep, '1']\n    {key}: {value}\n"
        ));
        assert!(err.starts_with("t.yml:4:") && err.contains(says), "{err}");
    }
}

fn config_error(yml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("run.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    parse_config(yml, "t.yml", dir.path(), PATH).unwrap_err()
}

#[test]
fn each_problem_points_at_its_value_with_a_hint() {
    // (document, start of the message, a hint it must give)
    let cases: &[(&str, &str, &str)] = &[
        (
            "apps:\n- name: a\n  cmd: [sleep]\n  restart:\n    delay: -1\n",
            "t.yml:5:12: apps[0] (a): restart.delay -1 is negative",
            "use a duration like 500ms",
        ),
        (
            "apps:\n- name: a\n  cmd: [sleep]\n  restart: {delay: 10s, max_delay: 1s}\n",
            "t.yml:4:36: apps[0] (a): restart.max_delay (1s) is shorter than restart.delay (10s)",
            "raise max_delay or lower delay",
        ),
        (
            "apps:\n- name: a\n  cmd: [sleep]\n  restart:\n    delay: 10m\n",
            "t.yml:5:12: apps[0] (a): restart.max_delay",
            "raise max_delay",
        ),
        (
            "apps:\n- name: a\n  cmd: [sleep]\n  restart:\n    factor: 0.5\n",
            "t.yml:5:13: apps[0] (a): restart.factor 0.5 must be at least 1",
            "1 keeps the delay constant",
        ),
        (
            "apps:\n- name: a\n  cmd: [sleep]\n  log:\n    keep: 0\n",
            "t.yml:5:11: apps[0] (a): log.keep 0 must be at least 1",
            "rotated files",
        ),
        (
            "apps:\n- name: a\n  cmd: [sleep]\n  log: {format: xml}\n",
            "t.yml:4:17: apps[0] (a): log.format 'xml'",
            "one of: text, json",
        ),
        (
            "apps:\n- name: a\n  cwd: .\n",
            "t.yml:2:3: apps[0] (a): missing `script`",
            "`cmd` (a command line)",
        ),
        (
            "apps:\n- name: a\n  script: nope.sh\n",
            "t.yml:3:11: apps[0] (a): script ",
            "relative paths resolve against",
        ),
        (
            "apps:\n- name: a\n  script: run.sh\n  env_file: missing.env\n",
            "t.yml:4:13: apps[0] (a): env_file ",
            "cannot be read (No such file or directory",
        ),
        (
            "apps:\n- name: a\n  cmd: [sleep]\n  stop_exit_codes: [0, 300]\n",
            "t.yml:4:24: apps[0] (a): stop_exit_codes: 300",
            "(0-255)",
        ),
        (
            "apps:\n- name: a\n  cmd: [sleep]\n  kill_timeout: 5 parsecs\n",
            "t.yml:4:17: apps[0] (a): kill_timeout '5 parsecs' is not a duration",
            "like 500ms",
        ),
        (
            "apps:\n- name: a\n  cmd: [sleep]\n  kill_timeout:\n  cwd: nowhere\n",
            "t.yml:5:8: apps[0] (a): working directory ",
            "create it or fix `cwd`",
        ),
        (
            "apps: []\n",
            "t.yml:1:7: `apps` is empty",
            "add at least one app",
        ),
        (
            "apps:\n",
            "t.yml:1:1: `apps` is empty",
            "add at least one app",
        ),
        // refused by serde_yaml_ng: its own position, plus a hint
        (
            "apps:\n- name: a\n  kill_timeout: [1]\n",
            "t.yml:3:17: apps[0].kill_timeout: invalid type: sequence",
            "expected a number or text with a unit, like 500ms",
        ),
        (
            "apps:\n- name: a\n  restart: {factor: fast}\n",
            "t.yml:3:21: apps[0].restart.factor: invalid type: string \"fast\"",
            "expected f64",
        ),
        (
            "apps:\n  - name: a\n    colour: red\n",
            "t.yml:3:5: apps[0]: unknown field `colour`",
            "expected one of `name`",
        ),
        (
            "apps:\n  - name: a\n   cmd: [sleep]\n",
            "t.yml:3:4: did not find expected '-' indicator",
            "invalid YAML; check the indentation",
        ),
        ("apps:\n  - name: 'a\n", "t.yml:", "invalid YAML"),
        (
            "",
            "t.yml:",
            "missing field `apps`: a turbo.yml is a mapping",
        ),
        (
            "apps:\n  - cmd: [sleep]\n",
            "t.yml:2:5: apps[0]: missing field `name`",
            "give every app a `name:`",
        ),
    ];
    for (yml, start, hint) in cases {
        let err = config_error(yml);
        assert_eq!(err.lines().count(), 1, "{yml:?} gave {err}");
        assert!(err.starts_with(start), "{yml:?} gave {err}\nwanted {start}");
        assert!(err.contains(hint), "{yml:?} gave {err}\nwanted {hint}");
    }
}

#[test]
fn several_problems_in_one_app_each_get_a_line_and_a_position() {
    let err = config_error(
        "apps:\n  - {name: a, script: run.sh, restart: {delay: -1s, factor: 0}}\n  - name: \"b\\nc\"\n    cmd: [sleep]\n",
    );
    assert_lines(
        &err,
        &[
            (
                "t.yml:2:48: apps[0] (a): restart.delay '-1s' is negative",
                "",
            ),
            ("t.yml:2:61: apps[0] (a): restart.factor 0 ", ""),
            // a line break in a name cannot split a message
            ("t.yml:3:11: apps[1] (b\\nc): app name", ""),
        ],
    );
}

#[test]
fn options_are_checked() {
    let mut opts = HashMap::new();
    opts.insert("colour".to_owned(), OwnedValue::from(1u32));
    let me = Powers::current();
    let err = from_options("a", &["sleep".into()], &opts, PATH, Path::new("/"), &me).unwrap_err();
    assert!(err.contains("unknown option 'colour'"), "{err}");
    let spec = from_options(
        "a",
        &["sleep".into(), "1".into()],
        &HashMap::new(),
        PATH,
        Path::new("/"),
        &me,
    )
    .unwrap();
    assert_eq!(spec.autorestart, Autorestart::Always);
    // wrong types, a relative cwd, bad environment names: all refused with the reason
    let mut opts = HashMap::new();
    opts.insert("cwd".to_owned(), OwnedValue::from(7u32));
    opts.insert("max_memory".to_owned(), OwnedValue::from(true));
    let err = from_options("a", &["sleep".into()], &opts, PATH, Path::new("/"), &me).unwrap_err();
    assert!(
        err.contains("'cwd' must be a string") && err.contains("'max_memory' must be"),
        "{err}"
    );
    let mut opts = HashMap::new();
    opts.insert(
        "cwd".to_owned(),
        OwnedValue::try_from(zbus::zvariant::Value::from("tmp")).unwrap(),
    );
    let err = from_options("a", &["sleep".into()], &opts, PATH, Path::new("/"), &me).unwrap_err();
    assert!(err.contains("must be an absolute path"), "{err}");
    let mut opts = HashMap::new();
    let env: HashMap<String, String> = [("A=B".to_owned(), "1".to_owned())].into();
    opts.insert(
        "env".to_owned(),
        OwnedValue::try_from(zbus::zvariant::Value::from(env)).unwrap(),
    );
    let err = from_options("a", &["sleep".into()], &opts, PATH, Path::new("/"), &me).unwrap_err();
    assert!(err.contains("'A=B' is not allowed"), "{err}");
}

#[test]
fn env_files_must_be_small_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let yml =
        |file: &str| format!("apps:\n  - name: a\n    cmd: [sleep, '1']\n    env_file: {file}\n");
    let e = parse_config(&yml("/dev/zero"), "t.yml", dir.path(), PATH).unwrap_err();
    assert!(e.contains("not a regular file"), "{e}");
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let e = parse_config(&yml("fifo"), "t.yml", dir.path(), PATH).unwrap_err();
    assert!(
        e.contains("not a regular file"),
        "a FIFO must not block: {e}"
    );
    let big = dir.path().join("big.env");
    std::fs::write(&big, "A=".to_owned() + &"x".repeat(2 << 20)).unwrap();
    let e = parse_config(&yml("big.env"), "t.yml", dir.path(), PATH).unwrap_err();
    assert!(e.contains("larger than 1048576 bytes"), "{e}");
}

/// The layers in order, from a spec built by the real config validation: daemon
/// allow-list < passwd identity < `env_file` < `env`.
#[test]
fn merge_order_daemon_then_identity_then_env_file_then_env() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "FROM_FILE=file\nOVERRIDDEN=file\nLANG=fr_FR.UTF-8\nUSER=file-user\n",
    )
    .unwrap();
    let yml = "apps:\n  - name: a\n    cmd: [sleep, '1']\n    env_file: .env\n    env: { OVERRIDDEN: env, TZ: UTC, HOME: /custom }\n";
    let specs = parse_config(yml, "t.yml", dir.path(), "/usr/bin:/bin").unwrap();
    let spec = &specs[0];
    let identity = environment::Identity {
        user: "www",
        home: "/var/www",
        shell: "/bin/false",
    };
    let env = environment::child_env(os(DAEMON_ENV), Some(identity), &spec.cwd, &spec.env);
    let expect: &[(&str, &str)] = &[
        ("PATH", "/usr/bin:/bin"),  // daemon
        ("LC_TIME", "en_GB.UTF-8"), // daemon
        ("LOGNAME", "www"),         // identity over nothing
        ("SHELL", "/bin/false"),    // identity
        ("LANG", "fr_FR.UTF-8"),    // env_file over daemon
        ("USER", "file-user"),      // env_file over identity
        ("FROM_FILE", "file"),      // env_file
        ("OVERRIDDEN", "env"),      // env over env_file
        ("TZ", "UTC"),              // env over daemon
        ("HOME", "/custom"),        // env over identity
    ];
    for (name, value) in expect {
        assert_eq!(get(&env, name), Some(*value), "{name} in {env:?}");
    }
    assert_eq!(
        get(&env, "PWD").map(PathBuf::from),
        Some(dir.path().to_path_buf())
    );
    assert_eq!(get(&env, "AWS_SECRET_ACCESS_KEY"), None);
    assert_eq!(get(&env, "TERM"), None);
    let mut names: Vec<&OsString> = env.iter().map(|(k, _)| k).collect();
    names.dedup();
    assert_eq!(names.len(), env.len(), "each name once");
}

#[test]
fn instances_and_listen() {
    let ok = |yml: &str| parse_config(yml, "t.yml", Path::new("/"), PATH).unwrap();
    let spec = &ok("apps:\n- name: a\n  cmd: [sleep]\n  instances: 3\n  listen: 0.0.0.0:3000\n")[0];
    assert_eq!(
        (spec.instances, spec.listen.as_slice()),
        (3, ["0.0.0.0:3000".to_owned()].as_slice())
    );
    let spec = &ok(
        "apps:\n- name: a\n  cmd: [sleep]\n  instances: max\n  listen: [\"127.0.0.1:1\", \"[::1]:2\"]\n",
    )[0];
    assert_eq!(spec.instances, online_cpus());
    assert_eq!(spec.listen, ["127.0.0.1:1", "[::1]:2"]);
    assert_eq!(ok("apps:\n- name: a\n  cmd: [sleep]\n")[0].instances, 1);
    for (yml, want) in [
        (
            "  instances: 0\n",
            "t.yml:4:14: apps[0] (a): 0 instances: run at least 1",
        ),
        (
            "  instances: 2.5\n",
            "t.yml:4:14: apps[0] (a): instances 2.5 is not a count",
        ),
        (
            "  instances: lots\n",
            "t.yml:4:14: apps[0] (a): instances 'lots' is not a count",
        ),
        (
            "  instances: 5000\n",
            "t.yml:4:14: apps[0] (a): 5000 instances: at most 1024",
        ),
        (
            "  listen: :3000\n",
            "t.yml:4:11: apps[0] (a): listen: ':3000' is not an IP address",
        ),
        (
            "  listen: 0.0.0.0:0\n",
            "t.yml:4:11: apps[0] (a): listen: 0.0.0.0:0 has port 0",
        ),
        (
            "  listen: [1.2.3.4:5, 1.2.3.4:5]\n",
            "t.yml:4:23: apps[0] (a): listen: 1.2.3.4:5 is given twice",
        ),
    ] {
        let e = parse_config(
            &format!("apps:\n- name: a\n  cmd: [sleep]\n{yml}"),
            "t.yml",
            Path::new("/"),
            PATH,
        )
        .unwrap_err();
        assert!(e.starts_with(want), "{yml}: {e}");
    }
}

/// The typed error of `yml` (named `t.yml`, relative to `dir`), checked with the daemon's powers.
fn document_error(yml: &str, dir: &Path) -> ConfigError {
    let doc = Document {
        content: yml,
        origin: "t.yml",
        base_dir: dir,
        path_env: PATH,
        vars: &super::NO_VARS,
    };
    from_yaml(&doc, &Powers::current()).expect_err("should be refused")
}

/// The typed error of a start call of `sleep` with `options`.
fn options_error(options: &HashMap<String, OwnedValue>) -> ConfigError {
    let call = StartCall {
        name: "a",
        argv: &["sleep".into()],
        options,
        path_env: PATH,
        default_cwd: Path::new("/"),
    };
    from_start_options(&call, &Powers::current()).expect_err("should be refused")
}

/// The error as data: every problem with its file, position, app, key path, message and hint,
/// and the one line each that users read.
#[test]
fn a_config_error_lists_every_problem_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let yml = "apps:\n  - name: web\n    cmd: [sleep]\n    restart: {delay: -1, factor: 0.5}\n  - name: web\n    cmd: [sleep]\n";
    let err = document_error(yml, dir.path());
    let at = |line, col| Some(Pos { line, col });
    let problem = |pos, field: &str, message: &str, hint: Option<&str>| Problem {
        file: Some("t.yml".into()),
        pos,
        app: Some(
            if field.starts_with("apps[1]") {
                "apps[1] (web)"
            } else {
                "apps[0] (web)"
            }
            .into(),
        ),
        field: field.into(),
        message: message.into(),
        hint: hint.map(Into::into),
    };
    assert_eq!(
        err.problems,
        [
            problem(
                at(4, 22),
                "apps[0].restart.delay",
                "restart.delay -1 is negative",
                Some("use a duration like 500ms, 5s, 1m or 2h"),
            ),
            problem(
                at(4, 34),
                "apps[0].restart.factor",
                "restart.factor 0.5 must be at least 1 (1 keeps the delay constant)",
                None,
            ),
            problem(
                at(5, 11),
                "apps[1].name",
                "name 'web' is used twice (apps[0] has it too)",
                Some("give each app its own name"),
            ),
        ]
    );
    assert_eq!(
        err.to_string(),
        "t.yml:4:22: apps[0] (web): restart.delay -1 is negative: use a duration like 500ms, 5s, 1m or 2h\n\
         t.yml:4:34: apps[0] (web): restart.factor 0.5 must be at least 1 (1 keeps the delay constant)\n\
         t.yml:5:11: apps[1] (web): name 'web' is used twice (apps[0] has it too): give each app its own name"
    );
}

#[test]
fn a_document_serde_refuses_is_one_problem_at_serdes_position() {
    let dir = tempfile::tempdir().unwrap();
    let yml = "apps:\n- name: a\n  restart: {factor: fast}\n";
    let err = document_error(yml, dir.path());
    let [p] = err.problems.as_slice() else {
        panic!("one problem: {err:?}")
    };
    assert_eq!(
        (p.file.as_deref(), p.pos, p.app.as_deref(), p.field.as_str()),
        (
            Some("t.yml"),
            Some(Pos { line: 3, col: 21 }),
            None,
            "apps[0].restart.factor"
        )
    );
    assert!(
        p.message
            .starts_with("apps[0].restart.factor: invalid type"),
        "{p:?}"
    );
    let err = document_error("apps:\n  - name: 'a\n", dir.path());
    assert!(
        err.problems[0]
            .hint
            .as_deref()
            .is_some_and(|h| h.starts_with("invalid YAML")),
        "{err:?}"
    );
}

/// Start options have no document: problems without file or position, each still at its key.
#[test]
fn start_option_problems_have_no_place_but_their_key() {
    let mut opts = HashMap::new();
    opts.insert("cwd".to_owned(), OwnedValue::from(7u32));
    opts.insert("colour".to_owned(), OwnedValue::from(1u32));
    let err = options_error(&opts);
    let mut got: Vec<(&str, &str)> = err
        .problems
        .iter()
        .map(|p| {
            assert_eq!((p.file.as_ref(), p.pos, p.app.as_ref()), (None, None, None));
            (p.field.as_str(), p.message.as_str())
        })
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        [
            (
                "",
                "unknown option 'colour' (known: cwd, env, autorestart, max_memory, watch, instances, restart_delay)"
            ),
            ("cwd", "option 'cwd' must be a string"),
        ]
    );
    // validation problems of the app come without position too, their hint kept
    let mut opts = HashMap::new();
    opts.insert(
        "cwd".to_owned(),
        OwnedValue::try_from(zbus::zvariant::Value::from("/nonexistent/turbo")).unwrap(),
    );
    let err = options_error(&opts);
    assert_eq!(
        err.to_string(),
        "working directory /nonexistent/turbo does not exist: create it or fix `cwd`"
    );
    assert_eq!(err.problems[0].field, "cwd");
}

/// A caller that cannot be given apps is one problem without a place.
#[test]
fn a_refused_caller_is_one_problem() {
    let err = ConfigError::from(crate::access::AccessError::NoPasswdEntry(4_000_000_000));
    assert_eq!(err.problems.len(), 1);
    assert!(err.problems[0].file.is_none() && err.problems[0].hint.is_none());
    assert!(
        err.to_string()
            .starts_with("uid 4000000000 has no passwd entry")
    );
}

#[test]
fn log_max_size_takes_terabytes_and_off() {
    let dir = tempfile::tempdir().unwrap();
    let size = |v: &str| {
        let doc = format!("apps:\n- name: a\n  cmd: [sleep]\n  log: {{max_size: {v}}}\n");
        parse_config(&doc, "t.yml", dir.path(), PATH).map(|apps| apps[0].log.max_size)
    };
    assert_eq!(size("1tb"), Ok(1 << 40));
    assert_eq!(size("2TiB"), Ok(2 << 40));
    for never in ["off", "0", "never"] {
        assert_eq!(size(never), Ok(0), "{never}");
    }
    let small = size("512").unwrap_err();
    assert!(
        small.contains("log.max_size 512 is too small") && small.contains("`off`"),
        "{small}"
    );
    let unknown = size("2pb").unwrap_err();
    assert!(
        unknown.contains("log.max_size '2pb' is not a size"),
        "{unknown}"
    );
}

#[test]
fn log_compress_and_rotate_take_their_names() {
    use crate::spec::Compression;
    let dir = tempfile::tempdir().unwrap();
    let compress = |v: &str| {
        let doc = format!("apps:\n- name: a\n  cmd: [sleep]\n  log: {{compress: {v}}}\n");
        parse_config(&doc, "t.yml", dir.path(), PATH).map(|apps| apps[0].log.compress)
    };
    assert_eq!(compress("true"), Ok(Compression::Gzip));
    assert_eq!(compress("gzip"), Ok(Compression::Gzip));
    assert_eq!(compress("zstd"), Ok(Compression::Zstd));
    assert_eq!(compress("false"), Ok(Compression::None));
    let doc = "apps:\n- name: a\n  cmd: [sleep]\n  log: {rotate: weekly}\n";
    let weekly = parse_config(doc, "t.yml", dir.path(), PATH).unwrap_err();
    assert!(
        weekly.contains("log.rotate 'weekly' is not one of: daily, hourly"),
        "{weekly}"
    );
    let doc = "apps:\n- name: a\n  cmd: [sleep]\n  log: {rotate: hourly}\n";
    let hourly = parse_config(doc, "t.yml", dir.path(), PATH).unwrap();
    assert_eq!(
        hourly[0].log.rotate,
        Some(crate::spec::RotatePeriod::Hourly)
    );
    let bad = compress("bzip2").unwrap_err();
    assert!(
        bad.contains("log.compress bzip2 is not one of: true, false, gzip, zstd"),
        "{bad}"
    );
}

#[test]
fn log_places_of_its_choosing_are_for_root_when_a_root_daemon_serves_another_user() {
    let dir = tempfile::tempdir().unwrap();
    let caller = Powers {
        euid: 65534,
        egid: 65534,
        caller: Some("nobody".into()),
        ..Powers::current()
    };
    let parse = |log: &str, powers: &Powers| {
        let content = format!("apps:\n- name: a\n  cmd: [sleep]\n  log: {log}\n");
        let doc = Document {
            content: &content,
            origin: "t.yml",
            base_dir: dir.path(),
            path_env: PATH,
            vars: &super::NO_VARS,
        };
        from_yaml(&doc, powers).map_err(|e| e.to_string())
    };
    for (log, key) in [
        ("{ out: /tmp/x.log }", "log.out"),
        ("{ path: /tmp/x.log }", "log.path"),
        (
            "{ to: [journald], journald_socket: /run/other.sock }",
            "log.journald_socket",
        ),
        (
            "{ to: [syslog], syslog_address: /run/other.sock }",
            "log.syslog_address",
        ),
    ] {
        let err = parse(log, &caller).unwrap_err();
        assert!(
            err.contains(&format!("{key} is for root")) && err.contains("for nobody"),
            "{log}: {err}"
        );
        parse(log, &Powers::current()).unwrap_or_else(|e| panic!("the daemon's own: {log}: {e}"));
    }
    // the defaults and loopback carry no such risk
    for log in [
        "{ to: [file, journald, syslog] }",
        "{ to: [syslog], syslog_address: 'udp://127.0.0.1:514' }",
    ] {
        parse(log, &caller).unwrap_or_else(|e| panic!("{log}: {e}"));
    }
}
