//! App configuration: `turbo.yml` documents and `StartApp` options, validated into [`AppSpec`]s.
//!
//! Validation reports every problem at once, each naming the file, the app and what to do. The
//! only OS access here is read-only: checking that scripts, interpreters and directories exist.
//! Nothing here starts, stops or remembers anything.

use std::{
    collections::{BTreeMap, HashMap},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use zbus::zvariant::OwnedValue;

use crate::supervisor::{AppSpec, Autorestart};

/// A `turbo.yml` document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    apps: Vec<AppConfig>,
}

/// One app as written by a user.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppConfig {
    name: String,
    script: Option<String>,
    cmd: Option<Vec<String>>,
    #[serde(default)]
    args: Vec<String>,
    cwd: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    autorestart: Option<String>,
    stop_signal: Option<String>,
    kill_timeout: Option<String>,
}

/// Parses and validates a `turbo.yml`. `origin` names the file in messages; relative paths
/// resolve against `base_dir`; `path_env` is the `PATH` used to find commands.
///
/// # Errors
/// Every problem found, one per line.
pub fn parse_config(
    content: &str,
    origin: &str,
    base_dir: &Path,
    path_env: &str,
) -> Result<Vec<AppSpec>, String> {
    let file: ConfigFile = serde_yaml_ng::from_str(content).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        format!("{origin}{at}: {e}")
    })?;
    if file.apps.is_empty() {
        return Err(format!("{origin}: `apps` is empty: add at least one app"));
    }
    let mut errors = Vec::new();
    let mut specs = Vec::new();
    for (i, app) in file.apps.into_iter().enumerate() {
        let label = if app.name.is_empty() {
            format!("{origin}: apps[{i}]")
        } else {
            format!("{origin}: apps[{i}] ({})", app.name)
        };
        if specs.iter().any(|s: &AppSpec| s.name == app.name) {
            errors.push(format!("{label}: name '{}' is used twice", app.name));
            continue;
        }
        match validate(app, base_dir, path_env) {
            Ok(spec) => specs.push(spec),
            Err(problems) => errors.extend(problems.into_iter().map(|p| format!("{label}: {p}"))),
        }
    }
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(errors.join("\n"))
    }
}

/// Builds a spec from `StartApp(name, argv, options)`; without a `cwd` option the app runs in
/// `default_cwd`.
///
/// # Errors
/// Every problem found, one per line.
pub fn from_options(
    name: &str,
    argv: &[String],
    options: &HashMap<String, OwnedValue>,
    path_env: &str,
    default_cwd: &Path,
) -> Result<AppSpec, String> {
    let mut app = AppConfig {
        name: name.to_owned(),
        cmd: Some(argv.to_vec()),
        ..AppConfig::default()
    };
    let mut errors = Vec::new();
    for (key, value) in options {
        match key.as_str() {
            turbo_api::option::CWD => match String::try_from(value.clone()) {
                Ok(cwd) => app.cwd = Some(cwd),
                Err(_) => errors.push("option 'cwd' must be a string".to_owned()),
            },
            turbo_api::option::ENV => match HashMap::<String, String>::try_from(value.clone()) {
                Ok(env) => app.env = env.into_iter().collect(),
                Err(_) => errors.push("option 'env' must be a{ss}".to_owned()),
            },
            turbo_api::option::AUTORESTART => match String::try_from(value.clone()) {
                Ok(s) => app.autorestart = Some(s),
                Err(_) => errors.push("option 'autorestart' must be a string".to_owned()),
            },
            other => errors.push(format!(
                "unknown option '{other}' (known: cwd, env, autorestart)"
            )),
        }
    }
    if app
        .cwd
        .as_deref()
        .is_some_and(|c| !Path::new(c).is_absolute())
    {
        errors.push("option 'cwd' must be an absolute path".to_owned());
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    validate(app, default_cwd, path_env).map_err(|e| e.join("\n"))
}

fn validate(app: AppConfig, base_dir: &Path, path_env: &str) -> Result<AppSpec, Vec<String>> {
    let mut errors = Vec::new();
    if let Err(e) = turbo_api::validate_app_name(&app.name) {
        errors.push(e);
    }
    let cwd = app
        .cwd
        .as_deref()
        .map_or_else(|| base_dir.to_path_buf(), |c| base_dir.join(c));
    if !cwd.is_dir() {
        errors.push(format!(
            "working directory {} does not exist",
            cwd.display()
        ));
    }
    let is_script = app.script.is_some();
    let argv: Vec<String> = match (app.script, app.cmd) {
        (Some(script), None) => std::iter::once(script).chain(app.args).collect(),
        (None, Some(cmd)) if !cmd.is_empty() => cmd.into_iter().chain(app.args).collect(),
        (None, Some(_)) => {
            errors.push("`cmd` is empty: give the program and its arguments".into());
            Vec::new()
        }
        (Some(_), Some(_)) => {
            errors.push("give either `script` or `cmd`, not both".into());
            Vec::new()
        }
        (None, None) => {
            errors.push("missing `script` (a file to run) or `cmd` (a command line)".into());
            Vec::new()
        }
    };
    let argv = if argv.is_empty() || !cwd.is_dir() {
        argv
    } else {
        resolve_command(&argv, &cwd, path_env, is_script).unwrap_or_else(|e| {
            errors.push(e);
            Vec::new()
        })
    };
    let mut spec = AppSpec::new(app.name, argv, cwd);
    spec.env = app.env.into_iter().collect();
    if let Some(a) = app.autorestart {
        match a.parse::<Autorestart>() {
            Ok(a) => spec.autorestart = a,
            Err(e) => errors.push(e),
        }
    }
    if let Some(s) = app.stop_signal {
        match parse_signal(&s) {
            Some(sig) => spec.stop_signal = sig,
            None => errors.push(format!(
                "stop_signal '{s}' is not a signal name like SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1"
            )),
        }
    }
    if let Some(d) = app.kill_timeout {
        match parse_duration(&d) {
            Some(d) => spec.kill_timeout = d,
            None => errors.push(format!(
                "kill_timeout '{d}' is not a duration like 500ms, 5s or 1m"
            )),
        }
    }
    if errors.is_empty() {
        Ok(spec)
    } else {
        Err(errors)
    }
}

/// Interpreters chosen by a script's extension, as PM2 does.
const INTERPRETERS: &[(&str, &str)] = &[
    ("py", "python3"),
    ("js", "node"),
    ("mjs", "node"),
    ("cjs", "node"),
    ("ts", "ts-node"),
    ("sh", "sh"),
    ("bash", "bash"),
    ("rb", "ruby"),
    ("pl", "perl"),
    ("php", "php"),
];

/// Turns `argv` into something `execve` can run: `argv[0]` becomes an absolute path, and scripts
/// with a known extension get their interpreter in front.
///
/// `is_script` (the `script:` key) means `argv[0]` is always a file, never looked up in `PATH`.
///
/// # Errors
/// A one-line message: what was not found or not executable, and what to do.
pub fn resolve_command(
    argv: &[String],
    cwd: &Path,
    path_env: &str,
    is_script: bool,
) -> Result<Vec<String>, String> {
    let first = argv.first().ok_or("empty command")?;
    let rest = &argv[1..];
    let as_file = cwd.join(first);
    if is_script || first.contains('/') || as_file.is_file() {
        if !as_file.exists() {
            return Err(format!(
                "script {} not found (relative paths resolve against {})",
                as_file.display(),
                cwd.display()
            ));
        }
        if as_file.is_dir() {
            return Err(format!(
                "{} is a directory, not a script",
                as_file.display()
            ));
        }
        let script = as_file.to_string_lossy().into_owned();
        let ext = as_file.extension().and_then(|e| e.to_str()).unwrap_or("");
        if let Some((_, interp)) = INTERPRETERS.iter().find(|(e, _)| *e == ext) {
            let interp_path = find_in_path(interp, path_env).ok_or_else(|| {
                format!("{script} needs `{interp}`, which is not in PATH: install it or use `cmd:`")
            })?;
            return Ok([interp_path, script]
                .into_iter()
                .chain(rest.iter().cloned())
                .collect());
        }
        if !is_executable(&as_file) {
            return Err(format!(
                "{script} is not executable: `chmod +x` it or name an interpreter (cmd: [python3, {first}])"
            ));
        }
        return Ok(std::iter::once(script)
            .chain(rest.iter().cloned())
            .collect());
    }
    let found = find_in_path(first, path_env).ok_or_else(|| {
        format!(
            "command '{first}' not found: not a file in {} and not in PATH",
            cwd.display()
        )
    })?;
    Ok(std::iter::once(found).chain(rest.iter().cloned()).collect())
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_in_path(program: &str, path_env: &str) -> Option<String> {
    path_env
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join(program))
        .find(|p| is_executable(p))
        .map(|p| p.to_string_lossy().into_owned())
}

/// `500ms`, `5s`, `1m`, `2h`; a bare number is seconds.
#[must_use]
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// `SIGTERM`, `TERM` or a number.
#[must_use]
pub fn parse_signal(s: &str) -> Option<i32> {
    const NAMES: &[(&str, i32)] = &[
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("USR2", libc::SIGUSR2),
        ("TERM", libc::SIGTERM),
        ("WINCH", libc::SIGWINCH),
    ];
    let upper = s.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    NAMES
        .iter()
        .find(|(n, _)| *n == bare)
        .map(|(_, v)| *v)
        .or_else(|| bare.parse().ok().filter(|n| (1..=64).contains(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

    #[test]
    fn durations_and_signals() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("5 parsecs"), None);
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
        let err = resolve_command(&["./tool".into()], cwd, PATH, false).unwrap_err();
        assert!(
            err.contains("not executable") && err.contains("chmod +x"),
            "{err}"
        );
        let err = resolve_command(&["./missing.js".into()], cwd, PATH, false).unwrap_err();
        assert!(err.contains("not found"), "{err}");
        let err = resolve_command(&["no-such-cmd-xyz".into()], cwd, PATH, false).unwrap_err();
        assert!(err.contains("not in PATH"), "{err}");
    }

    #[test]
    fn config_reports_every_problem_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let yml = "apps:\n  - name: ok\n    cmd: [sleep, '100']\n  - name: bad/name\n    script: nope.py\n  - name: ok\n    cmd: [sleep]\n  - name: x\n    cmd: [sleep]\n    autorestart: sometimes\n";
        let err = parse_config(yml, "turbo.yml", dir.path(), PATH).unwrap_err();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 4, "{err}");
        assert!(lines[0].starts_with("turbo.yml: apps[1] (bad/name):") && lines[0].contains("'/'"));
        assert!(lines[1].contains("nope.py not found"));
        assert!(lines[2].contains("used twice"));
        assert!(lines[3].contains("sometimes"));
    }

    #[test]
    fn config_syntax_errors_carry_line_and_column() {
        let err = parse_config(
            "apps:\n  - name: a\n    colour: red\n",
            "t.yml",
            Path::new("/"),
            PATH,
        )
        .unwrap_err();
        assert!(err.starts_with("t.yml:3:"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn options_are_checked() {
        let mut opts = HashMap::new();
        opts.insert("colour".to_owned(), OwnedValue::from(1u32));
        let err = from_options("a", &["sleep".into()], &opts, PATH, Path::new("/")).unwrap_err();
        assert!(err.contains("unknown option 'colour'"), "{err}");
        let spec = from_options(
            "a",
            &["sleep".into(), "1".into()],
            &HashMap::new(),
            PATH,
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(spec.autorestart, Autorestart::Always);
    }
}
