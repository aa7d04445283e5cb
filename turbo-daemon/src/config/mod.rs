//! App configuration: `turbo.yml` documents and `StartApp` options, validated into [`AppSpec`]s.
//!
//! Validation reports every problem at once, one per line, each naming the file, the line and
//! column of the value at fault, the app, what is wrong and what to do:
//! `turbo.yml:5:12: apps[0] (web): restart.delay -1 is negative: use a duration like 5s`.
//! Positions come from [`locate`], a second, mark-keeping read of the same text. The only OS
//! access here is read-only: checking that scripts, interpreters, directories and env files
//! exist, looking users and groups up ([`users`]) and reading the daemon's own limits
//! ([`Powers`]). Nothing here starts, stops or remembers anything. [`privileges`] checks the
//! least-privilege keys; [`environment`] decides what an app's environment is made of.
//!
//! A start call is validated for its *caller* ([`Caller`]): with the caller's powers, and, for a
//! non-root caller of a root daemon, with the caller's file access rights ([`credentials`]).
//! [`input`] bounds the sizes of everything a caller hands in.

mod checks;
mod credentials;
pub mod environment;
pub mod input;
mod locate;
mod privileges;
pub mod users;

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use zbus::zvariant::OwnedValue;

pub use self::{
    credentials::as_caller,
    privileges::{Caller, Powers, Privileges, ProcessLimits, Rlimit, RunAs},
};
use self::{
    locate::Locations,
    privileges::{NameOrId, RlimitsConfig, UmaskValue},
};
use crate::supervisor::{AppSpec, Autorestart, LogFormat, MemoryEnforce};

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
    env_file: Option<String>,
    autorestart: Option<String>,
    #[serde(default)]
    restart: RestartConfig,
    #[serde(default)]
    stop_exit_codes: Vec<i32>,
    stop_signal: Option<String>,
    kill_timeout: Option<Scalar>,
    #[serde(default)]
    log: LogConfig,
    /// Restart at this resident memory (`512mb`).
    max_memory: Option<Scalar>,
    /// Warn at this share of `max_memory` (`80%` or `80`).
    memory_warning: Option<Scalar>,
    /// Who acts at `max_memory`: `restart` (the daemon) or `cgroup` (the kernel).
    memory_enforce: Option<String>,
    /// Run as this user (name or uid); only root may name another user than itself.
    user: Option<NameOrId>,
    /// Primary group (name or gid); default: the user's.
    group: Option<NameOrId>,
    /// Supplementary groups, exactly; default: the user's groups in the group database.
    groups: Option<Vec<NameOrId>>,
    umask: Option<UmaskValue>,
    #[serde(default)]
    rlimits: RlimitsConfig,
    nice: Option<i64>,
    oom_score_adj: Option<i64>,
    /// `N` or `max` (one per online CPU).
    instances: Option<Scalar>,
    /// An address (`0.0.0.0:3000`) or a list of them: sockets the daemon binds and passes on.
    listen: Option<OneOrMany>,
    // ---- watch mode and health checks (issue #6) ----
    /// `true` (the cwd), `false`, or a list of paths.
    watch: Option<serde_yaml_ng::Value>,
    /// Globs of paths whose changes do not restart.
    #[serde(default)]
    ignore_watch: Vec<String>,
    /// Quiet time after the last change before the restart (`500ms`).
    watch_delay: Option<Scalar>,
    /// Health check.
    health: Option<checks::HealthConfig>,
    /// `spawn` or `notify` (the systemd protocol).
    ready: Option<String>,
    /// With `ready: notify`: restart an app that sends no `READY=1` this long after its start.
    ready_timeout: Option<Scalar>,
    /// Restart an app that sends no `WATCHDOG=1` for this long.
    watchdog: Option<Scalar>,
}

/// A value or a list of values.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `restart:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestartConfig {
    delay: Option<Scalar>,
    max_delay: Option<Scalar>,
    factor: Option<f64>,
    reset_after: Option<Scalar>,
    crash_loop: Option<CrashLoopConfig>,
    max_restarts: Option<i64>,
}

/// `restart.crash_loop:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CrashLoopConfig {
    max: Option<i64>,
    window: Option<Scalar>,
}

/// `log:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogConfig {
    format: Option<String>,
    max_size: Option<Scalar>,
    keep: Option<i64>,
}

/// A duration or size: a bare number (seconds, bytes) or text with a unit (`500ms`, `10mb`).
#[derive(Debug, Clone)]
enum Scalar {
    Number(f64),
    Text(String),
}

/// By hand rather than `#[serde(untagged)]`, whose only message is "data did not match any
/// variant": this one says what was found and what is expected, at the value's position.
impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or text with a unit, like 500ms, 5s, 2m or 10mb")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_owned()))
            }
        }
        de.deserialize_any(Visitor)
    }
}

impl Scalar {
    fn duration(&self, what: &str) -> Result<Duration, String> {
        let hint = "like 500ms, 5s, 1m or 2h";
        match self {
            Self::Number(n) if *n >= 0.0 && n.is_finite() => Ok(Duration::from_secs_f64(*n)),
            Self::Number(n) if *n < 0.0 => {
                Err(format!("{what} {n} is negative: use a duration {hint}"))
            }
            Self::Number(n) => Err(format!("{what} {n} is not a duration: use one {hint}")),
            Self::Text(t) if t.trim_start().starts_with('-') => {
                Err(format!("{what} '{t}' is negative: use a duration {hint}"))
            }
            Self::Text(t) => parse_duration(t)
                .ok_or_else(|| format!("{what} '{t}' is not a duration: use one {hint}")),
        }
    }

    fn size(&self, what: &str) -> Result<u64, String> {
        let hint = "like 100k, 10mb or 1gb";
        match self {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "checked non-negative and finite; sizes are whole bytes"
            )]
            Self::Number(n) if *n >= 0.0 && n.is_finite() => Ok(*n as u64),
            Self::Number(n) if *n < 0.0 => {
                Err(format!("{what} {n} is negative: use a size {hint}"))
            }
            Self::Number(n) => Err(format!("{what} {n} is not a size: use one {hint}")),
            Self::Text(t) => {
                parse_size(t).ok_or_else(|| format!("{what} '{t}' is not a size: use one {hint}"))
            }
        }
    }
}

/// One problem with an app: what is wrong and what to do, and where.
#[derive(Debug)]
struct Problem {
    /// Key path of the value at fault, relative to the app (`restart.delay`, `cmd[0]`); empty
    /// for the app as a whole (a missing key).
    at: String,
    what: String,
}

impl Problem {
    fn new(at: impl Into<String>, what: impl Into<String>) -> Self {
        Self {
            at: at.into(),
            what: what.into(),
        }
    }
}

/// Parses and validates a `turbo.yml`. `origin` names the file in messages; relative paths
/// resolve against `base_dir`; `path_env` is the `PATH` used to find commands.
///
/// # Errors
/// Every problem found, one per line, as `origin:line:col: apps[i] (name): problem: hint`.
pub fn parse_config(
    content: &str,
    origin: &str,
    base_dir: &Path,
    path_env: &str,
) -> Result<Vec<AppSpec>, String> {
    parse_config_with(content, origin, base_dir, path_env, &Powers::current())
}

/// [`parse_config`] on behalf of `caller`: with the caller's powers and file access rights
/// ([`as_caller`]), so that a non-root caller's apps run as the caller and its `env_file` is
/// read only if the caller may read it.
///
/// # Errors
/// As [`parse_config`], or why the caller cannot be given apps (one line, no position).
pub fn parse_config_as(
    content: &str,
    origin: &str,
    base_dir: &Path,
    path_env: &str,
    caller: Caller,
) -> Result<Vec<AppSpec>, String> {
    as_caller(caller, |powers| {
        parse_config_with(content, origin, base_dir, path_env, powers)
    })
}

/// [`parse_config`] for a daemon with `powers` (tests pretend to be another user with it).
///
/// # Errors
/// As [`parse_config`].
pub fn parse_config_with(
    content: &str,
    origin: &str,
    base_dir: &Path,
    path_env: &str,
    powers: &Powers,
) -> Result<Vec<AppSpec>, String> {
    let file: ConfigFile =
        serde_yaml_ng::from_str(content).map_err(|e| describe_yaml_error(&e, origin))?;
    // (key path of the value at fault, message without the position)
    let mut found: Vec<(String, String)> = Vec::new();
    if file.apps.is_empty() {
        found.push((
            "apps".to_owned(),
            "`apps` is empty: add at least one app, like `- {name: web, cmd: [node, server.js]}`"
                .to_owned(),
        ));
    }
    let mut first_with_name: HashMap<String, usize> = HashMap::new();
    let mut specs = Vec::new();
    for (i, app) in file.apps.into_iter().enumerate() {
        let path = |at: &str| {
            if at.is_empty() {
                format!("apps[{i}]")
            } else {
                format!("apps[{i}].{at}")
            }
        };
        let label = if app.name.is_empty() {
            format!("apps[{i}]")
        } else {
            format!("apps[{i}] ({})", app.name)
        };
        let twin = if app.name.is_empty() {
            None
        } else {
            first_with_name.get(&app.name).copied()
        };
        match twin {
            Some(first) => found.push((
                path("name"),
                format!(
                    "{label}: name '{}' is used twice (apps[{first}] has it too): give each app its own name",
                    app.name
                ),
            )),
            None => {
                first_with_name.insert(app.name.clone(), i);
            }
        }
        // a twin is still checked, so that its other problems show up now rather than later
        match validate(app, base_dir, path_env, powers) {
            Ok(spec) if twin.is_none() => specs.push(spec),
            Ok(_) => {}
            Err(problems) => found.extend(
                problems
                    .into_iter()
                    .map(|p| (path(&p.at), format!("{label}: {}", p.what))),
            ),
        }
    }
    if found.is_empty() {
        return Ok(specs);
    }
    let locations = Locations::parse(content);
    let lines: Vec<String> = found
        .into_iter()
        .map(|(path, message)| {
            let at = locations
                .find(&path)
                .map(|p| format!(":{}:{}", p.line, p.col))
                .unwrap_or_default();
            one_line(&format!("{origin}{at}: {message}"))
        })
        .collect();
    Err(lines.join("\n"))
}

/// `origin:line:col: problem: hint` for a document serde_yaml_ng refused (bad YAML, an unknown
/// key, a wrong type, a missing key).
fn describe_yaml_error(e: &serde_yaml_ng::Error, origin: &str) -> String {
    let mut message = e.to_string();
    let mut at = String::new();
    if let Some(l) = e.location() {
        at = format!(":{}:{}", l.line(), l.column());
        // the position leads the line: no need to repeat it
        message = message.replacen(
            &format!(" at line {} column {}", l.line(), l.column()),
            "",
            1,
        );
    }
    // libyaml's own errors (syntax, encoding) are the only ones whose Debug form is a struct
    let syntax = format!("{e:?}").starts_with("Error {");
    let hint = if syntax {
        ": invalid YAML; check the indentation (spaces, not tabs), the `key: value` colons and \
         that quotes and brackets are closed, here or on the line before"
    } else if message.contains("missing field `apps`") {
        ": a turbo.yml is a mapping with an `apps:` list, like `apps: [{name: web, cmd: [node, server.js]}]`"
    } else if message.contains("missing field `name`") {
        ": give every app a `name:`"
    } else if message.contains("more than one document") {
        ": put every app in one `apps:` list, without `---` between documents"
    } else if message.contains("unknown field") {
        " (check the spelling and the indentation)"
    } else {
        ""
    };
    one_line(&format!("{origin}{at}: {message}{hint}"))
}

/// Escapes line breaks (in a name or a value quoted in a message) so one problem stays one line.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\n' | '\r') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Builds a spec from `StartApp(name, argv, options)` for an app that `powers` may grant (see
/// [`as_caller`] for a caller's); without a `cwd` option the app runs in `default_cwd`.
///
/// # Errors
/// Every problem found, one per line.
pub fn from_options(
    name: &str,
    argv: &[String],
    options: &HashMap<String, OwnedValue>,
    path_env: &str,
    default_cwd: &Path,
    powers: &Powers,
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
            turbo_api::option::INSTANCES => {
                match (
                    u32::try_from(value.clone()),
                    String::try_from(value.clone()),
                ) {
                    (Ok(n), _) => app.instances = Some(Scalar::Number(f64::from(n))),
                    (_, Ok(max)) if max == "max" => app.instances = Some(Scalar::Text(max)),
                    _ => {
                        errors.push("option 'instances' must be a count (u) or \"max\"".to_owned())
                    }
                }
            }
            turbo_api::option::WATCH => match bool::try_from(value.clone()) {
                Ok(w) => app.watch = Some(serde_yaml_ng::Value::Bool(w)),
                Err(_) => errors.push("option 'watch' must be a boolean (b)".to_owned()),
            },
            turbo_api::option::RESTART_DELAY => match String::try_from(value.clone()) {
                Ok(delay) => app.restart.delay = Some(Scalar::Text(delay)),
                Err(_) => errors.push("option 'restart_delay' must be a duration string (s)".to_owned()),
            },
            turbo_api::option::MAX_MEMORY => match u64::try_from(value.clone()) {
                #[expect(clippy::cast_precision_loss, reason = "a byte count far below 2^52")]
                Ok(n) => app.max_memory = Some(Scalar::Number(n as f64)),
                Err(_) => errors.push("option 'max_memory' must be a byte count (t)".to_owned()),
            },
            other => errors.push(format!(
                "unknown option '{}' (known: cwd, env, autorestart, max_memory, watch, instances, restart_delay)",
                input::shorten(&other.escape_default().to_string())
            )),
        }
    }
    if options.len() > input::MAX_OPTIONS {
        errors.push(format!(
            "{} options: at most {} are accepted",
            options.len(),
            input::MAX_OPTIONS
        ));
    }
    if let Some(cwd) = app.cwd.as_deref()
        && let Err(e) = input::check_dir_path("option 'cwd'", cwd)
    {
        errors.push(e);
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    validate(app, default_cwd, path_env, powers).map_err(|problems| {
        let lines: Vec<String> = problems.into_iter().map(|p| one_line(&p.what)).collect();
        lines.join("\n")
    })
}

fn validate(
    app: AppConfig,
    base_dir: &Path,
    path_env: &str,
    powers: &Powers,
) -> Result<AppSpec, Vec<Problem>> {
    let mut errors = Vec::new();
    let keys = privileges::Keys {
        user: app.user,
        group: app.group,
        groups: app.groups,
        umask: app.umask,
        rlimits: app.rlimits,
        nice: app.nice,
        oom_score_adj: app.oom_score_adj,
    };
    if let Err(e) = turbo_api::validate_app_name(&app.name) {
        errors.push(Problem::new("name", e));
    }
    let cwd = app
        .cwd
        .as_deref()
        .map_or_else(|| base_dir.to_path_buf(), |c| base_dir.join(c));
    if !cwd.is_dir() {
        errors.push(Problem::new(
            "cwd",
            format!(
                "working directory {} does not exist: create it or fix `cwd`",
                cwd.display()
            ),
        ));
    }
    let is_script = app.script.is_some();
    let argv: Vec<String> = match (app.script, app.cmd) {
        (Some(script), None) => std::iter::once(script).chain(app.args).collect(),
        (None, Some(cmd)) if !cmd.is_empty() => cmd.into_iter().chain(app.args).collect(),
        (None, Some(_)) => {
            errors.push(Problem::new(
                "cmd",
                "`cmd` is empty: give the program and its arguments",
            ));
            Vec::new()
        }
        (Some(_), Some(_)) => {
            errors.push(Problem::new(
                "cmd",
                "give either `script` or `cmd`, not both",
            ));
            Vec::new()
        }
        (None, None) => {
            errors.push(Problem::new(
                "",
                "missing `script` (a file to run) or `cmd` (a command line)",
            ));
            Vec::new()
        }
    };
    let argv = if argv.is_empty() || !cwd.is_dir() {
        argv
    } else {
        resolve_command(&argv, &cwd, path_env, is_script).unwrap_or_else(|e| {
            errors.push(Problem::new(if is_script { "script" } else { "cmd[0]" }, e));
            Vec::new()
        })
    };
    if let Err(e) = input::check_argv(&argv) {
        errors.push(Problem::new(if is_script { "script" } else { "cmd" }, e));
    }
    let mut spec = AppSpec::new(app.name, argv, cwd);
    let mut env = BTreeMap::new();
    if let Some(file) = &app.env_file {
        let path = spec.cwd.join(file);
        match read_env_file(&path) {
            Ok(text) => match parse_env_file(&text) {
                Ok(vars) => env.extend(vars),
                Err(e) => errors.push(Problem::new(
                    "env_file",
                    format!("env_file {}: {e}", path.display()),
                )),
            },
            Err(e) => errors.push(Problem::new(
                "env_file",
                format!(
                    "env_file {} cannot be read ({e}): fix the path (relative to the app's cwd) or remove `env_file`",
                    path.display()
                ),
            )),
        }
    }
    // `env:` wins over `env_file:`, as in docker compose
    env.extend(app.env);
    if let Err(e) = input::check_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        errors.push(Problem::new("env", e));
    }
    spec.env = env.into_iter().collect();
    apply_restart(&app.restart, &mut spec, &mut errors);
    apply_log(&app.log, &mut spec, &mut errors);
    apply_memory(
        app.max_memory.as_ref(),
        app.memory_warning.as_ref(),
        &mut spec,
        &mut errors,
    );
    apply_memory_enforce(
        app.memory_enforce.as_deref(),
        app.max_memory.is_some(),
        &mut spec,
        &mut errors,
    );
    if let Some((k, bad)) = app
        .stop_exit_codes
        .iter()
        .enumerate()
        .find(|(_, c)| !(0..=255).contains(*c))
    {
        errors.push(Problem::new(
            format!("stop_exit_codes[{k}]"),
            format!("stop_exit_codes: {bad} is not an exit status (0-255)"),
        ));
    }
    spec.stop_exit_codes = app.stop_exit_codes;
    if let Some(a) = app.autorestart {
        match a.parse::<Autorestart>() {
            Ok(a) => spec.autorestart = a,
            Err(e) => errors.push(Problem::new("autorestart", e)),
        }
    }
    if let Some(s) = app.stop_signal {
        match parse_signal(&s) {
            Some(sig) => spec.stop_signal = sig,
            None => errors.push(Problem::new(
                "stop_signal",
                format!(
                    "stop_signal '{s}' is not a signal name like SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1"
                ),
            )),
        }
    }
    if let Some(d) = app.kill_timeout {
        match d.duration("kill_timeout") {
            Ok(d) => spec.kill_timeout = d,
            Err(e) => errors.push(Problem::new("kill_timeout", e)),
        }
    }
    if let Some(n) = &app.instances {
        match instance_count(n) {
            Ok(n) => spec.instances = n,
            Err(e) => errors.push(Problem::new("instances", e)),
        }
    }
    match app.listen {
        None => {}
        Some(OneOrMany::One(addr)) => match check_listen(&addr) {
            Ok(()) => spec.listen = vec![addr],
            Err(e) => errors.push(Problem::new("listen", e)),
        },
        Some(OneOrMany::Many(addrs)) => {
            for (k, addr) in addrs.iter().enumerate() {
                if let Err(e) = check_listen(addr) {
                    errors.push(Problem::new(format!("listen[{k}]"), e));
                } else if addrs[..k].contains(addr) {
                    errors.push(Problem::new(
                        format!("listen[{k}]"),
                        format!("listen: {addr} is given twice"),
                    ));
                }
            }
            spec.listen = addrs;
        }
    }
    checks::apply_watch(
        checks::WatchKeys {
            watch: app.watch,
            ignore_watch: app.ignore_watch,
            watch_delay: app.watch_delay,
        },
        &mut spec,
        &mut errors,
    );
    checks::apply_health(app.health, path_env, &mut spec, &mut errors);
    checks::apply_readiness(
        app.ready.as_deref(),
        app.ready_timeout.as_ref(),
        app.watchdog.as_ref(),
        &mut spec,
        &mut errors,
    );
    // last, as these keys usually come last in an app
    let (run_as, limits) = privileges::resolve(&keys, powers, &mut errors);
    spec.privileges = Box::new(Privileges { run_as, limits });
    if errors.is_empty() {
        Ok(spec)
    } else {
        Err(errors)
    }
}

fn apply_restart(cfg: &RestartConfig, spec: &mut AppSpec, errors: &mut Vec<Problem>) {
    let r = &mut spec.restart;
    // `what` is also the key path of the value
    let mut set = |value: &Option<Scalar>, what: &str, field: &mut Duration| {
        if let Some(v) = value {
            match v.duration(what) {
                Ok(d) => *field = d,
                Err(e) => errors.push(Problem::new(what, e)),
            }
        }
    };
    set(&cfg.delay, "restart.delay", &mut r.delay);
    set(&cfg.max_delay, "restart.max_delay", &mut r.max_delay);
    set(&cfg.reset_after, "restart.reset_after", &mut r.reset_after);
    if let Some(cl) = &cfg.crash_loop {
        set(
            &cl.window,
            "restart.crash_loop.window",
            &mut r.crash_loop_window,
        );
        match cl.max.map(u32::try_from) {
            Some(Ok(n)) => r.crash_loop_max = n,
            Some(Err(_)) => errors.push(Problem::new(
                "restart.crash_loop.max",
                format!(
                    "restart.crash_loop.max {} must be 0 (off) or a positive count",
                    cl.max.unwrap_or_default()
                ),
            )),
            None => {}
        }
    }
    if let Some(f) = cfg.factor {
        if f.is_finite() && f >= 1.0 {
            r.factor = f;
        } else {
            errors.push(Problem::new(
                "restart.factor",
                format!("restart.factor {f} must be at least 1 (1 keeps the delay constant)"),
            ));
        }
    }
    match cfg.max_restarts.map(u32::try_from) {
        Some(Ok(n)) => r.max_restarts = n,
        Some(Err(_)) => errors.push(Problem::new(
            "restart.max_restarts",
            format!(
                "restart.max_restarts {} must be 0 (unlimited) or a positive count",
                cfg.max_restarts.unwrap_or_default()
            ),
        )),
        None => {}
    }
    if r.max_delay < r.delay {
        // point at whichever of the two was written, max_delay first
        let at = if cfg.max_delay.is_some() || cfg.delay.is_none() {
            "restart.max_delay"
        } else {
            "restart.delay"
        };
        errors.push(Problem::new(
            at,
            format!(
                "restart.max_delay ({:?}) is shorter than restart.delay ({:?}): raise max_delay or lower delay",
                r.max_delay, r.delay
            ),
        ));
    }
}

fn apply_memory(
    max: Option<&Scalar>,
    warning: Option<&Scalar>,
    spec: &mut AppSpec,
    errors: &mut Vec<Problem>,
) {
    if let Some(v) = max {
        match v.size("max_memory") {
            Ok(n) if n >= 1 << 20 => spec.memory.max = Some(n),
            Ok(n) => errors.push(Problem::new(
                "max_memory",
                format!(
                    "max_memory {n} bytes is below 1mb: no program runs in that; use e.g. 512mb"
                ),
            )),
            Err(e) => errors.push(Problem::new("max_memory", e)),
        }
    }
    if let Some(v) = warning {
        let pct = match v {
            Scalar::Number(n) => Some(*n),
            Scalar::Text(t) => t.trim().trim_end_matches('%').trim().parse::<f64>().ok(),
        };
        match pct {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "checked 1..=100"
            )]
            Some(p) if (1.0..=100.0).contains(&p) => spec.memory.warning_percent = p.round() as u8,
            _ => errors.push(Problem::new(
                "memory_warning",
                "memory_warning must be a percentage of max_memory between 1% and 100%, like 80%"
                    .to_owned(),
            )),
        }
        if max.is_none() {
            errors.push(Problem::new(
                "memory_warning",
                "memory_warning needs max_memory: it is a share of it".to_owned(),
            ));
        }
    }
}

fn apply_memory_enforce(
    enforce: Option<&str>,
    has_max: bool,
    spec: &mut AppSpec,
    errors: &mut Vec<Problem>,
) {
    let Some(value) = enforce else { return };
    match value.parse::<MemoryEnforce>() {
        Ok(e) => spec.memory.enforce = e,
        Err(e) => errors.push(Problem::new("memory_enforce", e)),
    }
    if !has_max {
        errors.push(Problem::new(
            "memory_enforce",
            "memory_enforce needs max_memory: it says who enforces that limit; add e.g. \
             `max_memory: 512mb`"
                .to_owned(),
        ));
    }
}

fn apply_log(cfg: &LogConfig, spec: &mut AppSpec, errors: &mut Vec<Problem>) {
    let l = &mut spec.log;
    match cfg.format.as_deref() {
        None | Some("text") => {}
        Some("json") => l.format = LogFormat::Json,
        Some(other) => errors.push(Problem::new(
            "log.format",
            format!("log.format '{other}' is not one of: text, json"),
        )),
    }
    if let Some(v) = &cfg.max_size {
        match v.size("log.max_size") {
            Ok(n) if n >= 1024 => l.max_size = n,
            Ok(n) => errors.push(Problem::new(
                "log.max_size",
                format!("log.max_size {n} is too small: use at least 1k"),
            )),
            Err(e) => errors.push(Problem::new("log.max_size", e)),
        }
    }
    match cfg.keep.map(u32::try_from) {
        Some(Ok(n)) if n >= 1 => l.keep = n,
        Some(_) => errors.push(Problem::new(
            "log.keep",
            format!(
                "log.keep {} must be at least 1: it is how many rotated files to keep",
                cfg.keep.unwrap_or_default()
            ),
        )),
        None => {}
    }
}

/// Reads an `env_file`: a regular file of at most [`input::MAX_ENV_FILE_BYTES`]. Opened
/// non-blocking, so that a FIFO cannot hang the daemon before it is found not to be a file.
/// `instances:`: a count from 1 to [`input::MAX_INSTANCES`], or `max` (the online CPUs).
fn instance_count(value: &Scalar) -> Result<u32, String> {
    let n = match value {
        Scalar::Text(t) if t == "max" => online_cpus(),
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "checked to be a whole number in range first"
        )]
        Scalar::Number(n) if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(n) => {
            *n as u32
        }
        Scalar::Number(n) => {
            return Err(format!(
                "instances {n} is not a count: give a whole number like 4, or `max` for one per CPU"
            ));
        }
        Scalar::Text(t) => {
            return Err(format!(
                "instances '{}' is not a count: give a whole number like 4, or `max` for one per CPU",
                input::shorten(t)
            ));
        }
    };
    input::check_instances(n).map(|()| n)
}

/// The number of online CPUs (`max` instances).
fn online_cpus() -> u32 {
    // SAFETY: sysconf with a constant name has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).ok().filter(|&n| n > 0).unwrap_or(1)
}

/// `listen:`: an IP address with a port. Whether the port is free is known only when the daemon
/// binds it (at the first start), which reports `cannot listen on <addr>: <cause>`.
fn check_listen(addr: &str) -> Result<(), String> {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) if a.port() == 0 => Err(format!(
            "listen: {addr} has port 0: give the port the app serves on, like 0.0.0.0:3000"
        )),
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "listen: '{}' is not an IP address with a port: write it like 0.0.0.0:3000 or [::]:3000",
            input::shorten(addr)
        )),
    }
}

fn read_env_file(path: &Path) -> std::io::Result<String> {
    use std::{io::Read as _, os::unix::fs::OpenOptionsExt as _};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let too_big = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("larger than {} bytes", input::MAX_ENV_FILE_BYTES),
        )
    };
    if meta.len() > input::MAX_ENV_FILE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    // bounded again: the file may grow between the fstat and the read
    file.take(input::MAX_ENV_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > input::MAX_ENV_FILE_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Parses a `.env` file: `KEY=VALUE` lines, `#` comments, blank lines, an optional `export `
/// prefix and optional single or double quotes around the value.
///
/// # Errors
/// The first malformed line, with its number.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut vars = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected KEY=VALUE, got '{raw}'", i + 1))?;
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("line {}: '{key}' is not a variable name", i + 1));
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.push((key.to_owned(), value.to_owned()));
    }
    Ok(vars)
}

/// Sizes are parsed as the CLI parses them (one definition, in the contract crate).
pub use turbo_api::parse_size;

/// Interpreters chosen by a script's extension, as PM2 does (one table, shared with
/// `turbo import pm2`).
use turbo_api::INTERPRETERS;

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
                "{} is a directory, not a script: name the file to run",
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

pub use turbo_api::parse_duration;

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
        assert!(
            lines[0].starts_with("turbo.yml:4:11: apps[1] (bad/name): ")
                && lines[0].contains("'/'"),
            "{err}"
        );
        assert!(
            lines[1].starts_with("turbo.yml:5:13: apps[1] (bad/name): ")
                && lines[1].contains("nope.py not found"),
            "{err}"
        );
        assert!(
            lines[2].starts_with("turbo.yml:6:11: apps[2] (ok): name 'ok' is used twice")
                && lines[2].contains("apps[0]"),
            "{err}"
        );
        assert!(
            lines[3].starts_with("turbo.yml:10:18: apps[3] (x): autorestart 'sometimes'"),
            "{err}"
        );
    }

    #[test]
    fn memory_enforce_values_and_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let ok = "apps:\n  - name: a\n    cmd: [sleep, '1']\n    max_memory: 64mb\n    memory_enforce: cgroup\n";
        let specs = parse_config(ok, "t.yml", dir.path(), PATH).unwrap();
        assert_eq!(
            specs[0].memory.enforce,
            crate::supervisor::MemoryEnforce::Cgroup
        );
        let err = config_error(
            "apps:\n  - name: a\n    cmd: [sleep, '1']\n    max_memory: 64mb\n    memory_enforce: kernel\n",
        );
        assert!(
            err.starts_with(
                "t.yml:5:21: apps[0] (a): memory_enforce 'kernel' is not one of: restart"
            ) && err.contains("cgroup"),
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
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 3, "{err}");
        assert!(
            lines[0].starts_with("t.yml:2:48: apps[0] (a): restart.delay '-1s' is negative"),
            "{err}"
        );
        assert!(
            lines[1].starts_with("t.yml:2:61: apps[0] (a): restart.factor 0 "),
            "{err}"
        );
        // a line break in a name cannot split a message
        assert!(
            lines[2].starts_with("t.yml:3:11: apps[1] (b\\nc): app name"),
            "{err}"
        );
    }

    #[test]
    fn options_are_checked() {
        let mut opts = HashMap::new();
        opts.insert("colour".to_owned(), OwnedValue::from(1u32));
        let me = Powers::current();
        let err =
            from_options("a", &["sleep".into()], &opts, PATH, Path::new("/"), &me).unwrap_err();
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
        let err =
            from_options("a", &["sleep".into()], &opts, PATH, Path::new("/"), &me).unwrap_err();
        assert!(
            err.contains("'cwd' must be a string") && err.contains("'max_memory' must be"),
            "{err}"
        );
        let mut opts = HashMap::new();
        opts.insert(
            "cwd".to_owned(),
            OwnedValue::try_from(zbus::zvariant::Value::from("tmp")).unwrap(),
        );
        let err =
            from_options("a", &["sleep".into()], &opts, PATH, Path::new("/"), &me).unwrap_err();
        assert!(err.contains("must be an absolute path"), "{err}");
        let mut opts = HashMap::new();
        let env: HashMap<String, String> = [("A=B".to_owned(), "1".to_owned())].into();
        opts.insert(
            "env".to_owned(),
            OwnedValue::try_from(zbus::zvariant::Value::from(env)).unwrap(),
        );
        let err =
            from_options("a", &["sleep".into()], &opts, PATH, Path::new("/"), &me).unwrap_err();
        assert!(err.contains("'A=B' is not allowed"), "{err}");
    }

    #[test]
    fn env_files_must_be_small_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let yml = |file: &str| {
            format!("apps:\n  - name: a\n    cmd: [sleep, '1']\n    env_file: {file}\n")
        };
        let e = parse_config(&yml("/dev/zero"), "t.yml", dir.path(), PATH).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
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

    #[test]
    fn instances_and_listen() {
        let ok = |yml: &str| parse_config(yml, "t.yml", Path::new("/"), PATH).unwrap();
        let spec =
            &ok("apps:\n- name: a\n  cmd: [sleep]\n  instances: 3\n  listen: 0.0.0.0:3000\n")[0];
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
}
