//! App configuration: `turbo.yml` documents and `StartApp` options turned into
//! [`AppSpec`]s, or a [`ConfigError`] listing every problem found.
//!
//! Each problem names the file, the line and column of the value at fault, the app, what is
//! wrong and what to do; displayed, one line each:
//! `turbo.yml:5:12: apps[0] (web): restart.delay -1 is negative: use a duration like 5s`.
//! Positions come from `locate.rs`, a second, mark-keeping read of the same text.
//!
//! The way from text to spec: the document as serde reads it (`ConfigFile`, `AppConfig`: every
//! value as written, so validation can say what was found, where), `validate.rs` (one app, every
//! key; `checks.rs` for health, readiness and watch mode, `privileges.rs` for the
//! identity and limit keys), `options.rs` (the D-Bus option map of a start call). The only OS
//! access here is read-only: checking that scripts, interpreters, directories and env files
//! exist and reading them (`files.rs`), and looking users and groups up (`os::users`). Nothing
//! here starts, stops or remembers anything, and what a caller may grant is decided in
//! `access`. [`input`] bounds the sizes of everything a caller hands in.
//!
//! A start call is validated for its *caller* (`access::Caller`): with the caller's powers,
//! and, for a non-root caller of a root daemon, with the caller's file access rights
//! ([`from_yaml_as`], `access::as_caller`).

mod alerts;
mod checks;
mod error;
mod files;
mod groups;
mod hooks;
mod include;
pub mod input;
mod jobs;
mod locate;
mod log;
mod options;
mod privileges;
mod resources;
#[cfg(test)]
mod tests;
mod validate;
mod vars;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    path::Path,
    time::Duration,
};

use serde::Deserialize;

use self::{
    error::Fault,
    log::LogConfig,
    privileges::{NameOrId, RlimitsConfig, UmaskValue},
    validate::validate,
};
pub use self::{
    error::{ConfigError, Problem},
    locate::Pos,
    options::{StartCall, from_start_options},
    vars::{NO_VARS, Vars},
};
use crate::{
    access::{self, Caller, Powers},
    spec::{
        AppSpec,
        units::{self, Bounds, Written},
    },
};

/// A `turbo.yml` to read: its text, the name messages give it (`origin`), the directory its
/// relative paths resolve against, and the `PATH` its commands are found on.
#[derive(Clone, Copy, Debug)]
pub struct Document<'a> {
    /// The YAML text.
    pub content: &'a str,
    /// The file name messages give.
    pub origin: &'a str,
    /// Where relative paths resolve.
    pub base_dir: &'a Path,
    /// The `PATH` used to find commands and interpreters.
    pub path_env: &'a str,
    /// The caller's environment and profile for `${VAR}` and `env_<profile>` ([`NO_VARS`]:
    /// none).
    pub vars: &'a Vars,
}

/// Parses and validates a `turbo.yml` for a daemon with `powers` (tests pretend to be another
/// user with it).
///
/// # Errors
/// Every problem found, each at the position of its value.
pub fn from_yaml(doc: &Document<'_>, powers: &Powers) -> Result<Vec<AppSpec>, ConfigError> {
    read(doc, powers, false)
}

/// The specs of a file (`turbo start FILE`, `turbo apply`, `/etc/turbo/turbo.yml`), on behalf of
/// `caller` as [`from_yaml_as`], each stamped with the file it came from ([`source_of`]).
/// `empty_ok`: `apps: []` is valid (a file to apply: applying it changes nothing, or removes
/// every app with prune; a file to start must start something).
///
/// # Errors
/// As [`from_yaml_as`].
pub fn file_specs_as(
    doc: &Document<'_>,
    caller: Caller,
    empty_ok: bool,
) -> Result<Vec<AppSpec>, ConfigError> {
    let mut specs = access::as_caller(caller, |powers| read(doc, powers, empty_ok))?;
    let source = source_of(doc.origin, doc.base_dir);
    // the apps of included files carry theirs already
    for spec in specs.iter_mut().filter(|s| s.source.is_none()) {
        spec.source = Some(source.clone());
    }
    Ok(specs)
}

/// The absolute path of the file a document came from: its directory (`base_dir`, absolute)
/// and the file name of `origin` (as the user typed it).
#[must_use]
pub fn source_of(origin: &str, base_dir: &Path) -> String {
    let name = Path::new(origin)
        .file_name()
        .map_or_else(|| origin.into(), std::ffi::OsStr::to_os_string);
    base_dir.join(name).to_string_lossy().into_owned()
}

/// [`from_yaml`], with `empty_ok`: whether a document without apps is valid. The apps of the
/// files it includes follow its own, each with its file as `source`.
fn read(doc: &Document<'_>, powers: &Powers, empty_ok: bool) -> Result<Vec<AppSpec>, ConfigError> {
    let mut profiles = BTreeSet::new();
    let specs = read_file(doc, powers, empty_ok, true, &mut profiles)?;
    match &doc.vars.profile {
        Some(wanted) if !profiles.contains(wanted) => {
            let known = if profiles.is_empty() {
                "none is defined".to_owned()
            } else {
                let names: Vec<&str> = profiles.iter().map(String::as_str).collect();
                format!("available: {}", names.join(", "))
            };
            let p = Problem::new(
                "apps",
                format!(
                    "profile '{}' is not defined by any app ({known})",
                    input::shorten(wanted)
                ),
            )
            .hint("add an `env_<profile>:` block to an app, or pick an available --env");
            Err(ConfigError::in_document(vec![p], doc.origin, doc.content))
        }
        _ => Ok(specs),
    }
}

/// [`read`] of one file; `main`: the file named by the caller, the only one that may include.
fn read_file(
    doc: &Document<'_>,
    powers: &Powers,
    empty_ok: bool,
    main: bool,
    profiles: &mut BTreeSet<String>,
) -> Result<Vec<AppSpec>, ConfigError> {
    let Document {
        content,
        origin,
        base_dir,
        path_env,
        vars,
    } = *doc;
    let nul = nul_bytes(content);
    if !nul.is_empty() {
        return Err(ConfigError::in_document(nul, origin, content));
    }
    let refused = |e| ConfigError::from_yaml(&e, origin);
    let file: ConfigFile = if vars::needed(content, vars) {
        // profiles and variables first, on the document as values; typed after
        let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(content).map_err(refused)?;
        let problems = vars::prepare(&mut value, vars, base_dir, profiles);
        if !problems.is_empty() {
            return Err(ConfigError::in_document(problems, origin, content));
        }
        serde_yaml_ng::from_value(value)
            .map_err(|e| ConfigError::from_yaml(&e, origin).placed(content))?
    } else {
        serde_yaml_ng::from_str(content).map_err(refused)?
    };
    let mut found: Vec<Problem> = Vec::new();
    if !main && !file.include.is_empty() {
        found.push(
            Problem::new("include", "an included file cannot include others")
                .hint("list every file in the `include:` of the main file"),
        );
    }
    if file.apps.is_empty() && file.include.is_empty() && !empty_ok {
        found.push(
            Problem::new("apps", "`apps` is empty")
                .hint("add at least one app, like `- {name: web, cmd: [node, server.js]}`"),
        );
    }
    let mut first_with_name: HashMap<String, usize> = HashMap::new();
    let mut specs = Vec::new();
    // for each spec: its file, its index there, whether `depends_on` is a map (for positions)
    let mut placed: Vec<(String, String, usize, bool)> = Vec::new();
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
            format!("apps[{i}] ({})", input::shorten(&app.name))
        };
        let twin = if app.name.is_empty() {
            None
        } else {
            first_with_name.get(&app.name).copied()
        };
        match twin {
            Some(first) => {
                let mut p = Problem::new(
                    path("name"),
                    format!(
                        "name '{}' is used twice (apps[{first}] has it too)",
                        input::shorten(&app.name)
                    ),
                )
                .hint("give each app its own name");
                p.app = Some(label.clone());
                found.push(p);
            }
            None => {
                first_with_name.insert(app.name.clone(), i);
            }
        }
        // read here rather than in `validate`: it only says whether a start starts the app
        let deps_map = matches!(app.depends_on, Some(serde_yaml_ng::Value::Mapping(_)));
        // a scheduled job waits for its first run unless asked
        let scheduled_job = app.cron.is_some() && app.kind.as_deref() == Some("oneshot");
        let autostart = app.autostart.unwrap_or(!scheduled_job);
        // a twin is still checked, so that its other problems show up now rather than later
        match validate(app, base_dir, path_env, powers) {
            Ok(mut spec) if twin.is_none() => {
                spec.autostart = autostart;
                specs.push(spec);
                placed.push((origin.to_owned(), content.to_owned(), i, deps_map));
            }
            Ok(_) => {}
            Err(problems) => found.extend(problems.into_iter().map(|mut p| {
                p.field = path(&p.field);
                p.app = Some(label.clone());
                p
            })),
        }
    }
    let included = if main {
        let (included, problems) = include::files(&file.include, base_dir);
        found.extend(problems);
        included
    } else {
        Vec::new()
    };
    let mut problems = Vec::new();
    if !found.is_empty() {
        problems = ConfigError::in_document(found, origin, content).problems;
    }
    // which file has each name: a name is one app, whichever file it is in
    let mut owner: HashMap<String, String> = specs
        .iter()
        .map(|s| (s.name.clone(), origin.to_owned()))
        .collect();
    for inc in &included {
        let sub = Document {
            content: &inc.content,
            origin: &inc.origin,
            base_dir: &inc.base_dir,
            path_env,
            vars,
        };
        let sub_specs = match read_file(&sub, powers, true, false, profiles) {
            Ok(sub_specs) => sub_specs,
            Err(e) => {
                problems.extend(e.problems);
                continue;
            }
        };
        // valid, so without twins: the j-th spec is apps[j]
        for (j, mut spec) in sub_specs.into_iter().enumerate() {
            if let Some(first) = owner.get(&spec.name) {
                let mut p = Problem::new(
                    format!("apps[{j}].name"),
                    format!("name '{}' is used in {first} too", spec.name),
                )
                .hint("give each app its own name across the included files");
                p.app = Some(format!("apps[{j}] ({})", spec.name));
                problems
                    .extend(ConfigError::in_document(vec![p], &inc.origin, &inc.content).problems);
                continue;
            }
            owner.insert(spec.name.clone(), inc.origin.clone());
            spec.source = Some(inc.origin.clone());
            specs.push(spec);
            placed.push((inc.origin.clone(), inc.content.clone(), j, false));
        }
    }
    if main {
        // the graph of the file and its includes, once every app is known
        let entry = |i: usize, k: usize| {
            let (_, _, at, map) = &placed[i];
            if *map {
                format!(
                    "apps[{at}].depends_on.{}",
                    specs[i].lifecycle.depends_on[k].name
                )
            } else {
                format!("apps[{at}].depends_on[{k}]")
            }
        };
        // apps with problems of their own are still apps of the file
        let named: Vec<&str> = first_with_name.keys().map(String::as_str).collect();
        for (i, mut p) in jobs::graph(&specs, &named, &entry) {
            let (file, text, at, _) = &placed[i];
            p.app = Some(format!("apps[{at}] ({})", specs[i].name));
            problems.extend(ConfigError::in_document(vec![p], file, text).problems);
        }
    }
    if problems.is_empty() && specs.is_empty() && !empty_ok {
        let p = Problem::new(
            "include",
            "no apps: `apps` is empty and the included files have none",
        )
        .hint("add an app to `apps:` or to an included file");
        problems = ConfigError::in_document(vec![p], origin, content).problems;
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(ConfigError { problems })
    }
}

/// A problem for every key or value of the document that holds a NUL byte (YAML writes one
/// as `"\0"`, `"\x00"` or `"\u0000"`). No path, name, environment entry or argument can pass a
/// NUL to the OS, and it must not reach a message either (see `dbus::wire`): the document is
/// refused before anything else is read from it.
fn nul_bytes(content: &str) -> Vec<Problem> {
    fn walk(value: &serde_yaml_ng::Value, path: &str, found: &mut Vec<Problem>) {
        use serde_yaml_ng::Value;
        let child = |key: &str| {
            if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            }
        };
        match value {
            Value::String(s) if s.contains('\0') => found.push(
                Problem::new(
                    path,
                    format!(
                        "'{}' holds a NUL byte, which no path, name, argument or variable can pass to the OS",
                        input::shorten(&s.escape_default().to_string())
                    ),
                )
                .hint("remove the \\0"),
            ),
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &format!("{path}[{i}]"), found);
                }
            }
            Value::Mapping(map) => {
                for (k, v) in map {
                    match k {
                        Value::String(key) if key.contains('\0') => found.push(
                            Problem::new(
                                path,
                                format!(
                                    "the key '{}' holds a NUL byte",
                                    input::shorten(&key.escape_default().to_string())
                                ),
                            )
                            .hint("remove the \\0"),
                        ),
                        Value::String(key) => walk(v, &child(key), found),
                        _ => walk(v, path, found),
                    }
                }
            }
            Value::Tagged(t) => walk(&t.value, path, found),
            _ => {}
        }
    }
    // a NUL can only be written as an escape: no backslash, no NUL, no second parse
    if !content.contains('\\') && !content.contains('\0') {
        return Vec::new();
    }
    let mut found = Vec::new();
    if let Ok(doc) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(content) {
        walk(&doc, "", &mut found);
    }
    found
}

/// [`from_yaml`] on behalf of `caller`: with the caller's powers and file access rights
/// (`access::as_caller`), so that a non-root caller's apps run as the caller and its
/// `env_file` is read only if the caller may read it.
///
/// # Errors
/// As [`from_yaml`], or why the caller cannot be given apps (one problem, no position).
pub fn from_yaml_as(doc: &Document<'_>, caller: Caller) -> Result<Vec<AppSpec>, ConfigError> {
    access::as_caller(caller, |powers| from_yaml(doc, powers))
}

/// A `turbo.yml` document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    apps: Vec<AppConfig>,
    /// Other files whose apps belong to this one (`conf.d/*.yml`), see `include.rs`.
    #[serde(default)]
    include: Vec<String>,
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
    // ---- cgroup limits (see resources.rs) ----
    /// `150%` (one and a half CPUs) or `150`.
    cpu_max: Option<Scalar>,
    cpu_weight: Option<i64>,
    io_weight: Option<i64>,
    pids_max: Option<i64>,
    /// A size (`256mb`).
    memory_high: Option<Scalar>,
    /// `false`: start without a limit this host cannot enforce (warned) rather than fail.
    limits_required: Option<bool>,
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
    /// `false`: the app is defined (listed, stopped) but not started until asked by name.
    autostart: Option<bool>,
    /// With `ready: notify`: restart an app that sends no `READY=1` this long after its start.
    ready_timeout: Option<Scalar>,
    /// Restart an app that sends no `WATCHDOG=1` for this long.
    watchdog: Option<Scalar>,
    // ---- jobs, dependencies, schedules (issue 17; `jobs.rs`) ----
    /// `service` or `oneshot`.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Further attempts of a failed one-shot job.
    retries: Option<i64>,
    /// A list of app names, or a map name -> started | ready | completed.
    depends_on: Option<serde_yaml_ng::Value>,
    /// How long a start waits for its dependencies.
    depends_timeout: Option<Scalar>,
    /// Restart along with a dependency that is restarted.
    restart_with_deps: Option<bool>,
    /// A cron expression, or `{schedule, action, overlap}`.
    cron: Option<serde_yaml_ng::Value>,
    /// The IANA zone `cron` is read in (default UTC).
    timezone: Option<String>,
    /// Absolute paths or globs of the programs the app's tree is expected to exec (issue 22).
    #[serde(default)]
    exec_allow: Vec<String>,
    // ---- groups and signals (issue 17) ----
    /// The app's group, a target as `@name` (`group:` is the Unix group it runs as).
    app_group: Option<String>,
    /// The signal `turbo reload` sends instead of replacing an app without `listen:`.
    reload_signal: Option<String>,
    /// Told of every crash: `{cmd: [..]}` or `{webhook: URL}`, with bounds.
    on_crash: Option<alerts::AlertConfig>,
    /// Told of every state change, the same way.
    on_state: Option<alerts::AlertConfig>,
    /// Hooks: `{cmd: [..], timeout: 30s}` each.
    pre_start: Option<hooks::HookConfig>,
    post_start: Option<hooks::HookConfig>,
    pre_stop: Option<hooks::HookConfig>,
    post_stop: Option<hooks::HookConfig>,
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

/// A duration or size: a bare number (seconds, bytes) or text with a unit (`500ms`, `10mb`).
#[derive(Debug, Clone)]
enum Scalar {
    Number(f64),
    Text(String),
}

/// By hand rather than `#[serde(untagged)]`, whose only message is "data did not match any
/// variant": this one says what was found and what is expected, at the value's position.
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
    const fn written(&self) -> Written<'_> {
        match self {
            Self::Number(n) => Written::Number(*n),
            Self::Text(t) => Written::Text(t.as_str()),
        }
    }

    /// The duration of the key `what` (named in the message): every duration of an app is a
    /// timer, so within [`Bounds::TIMER`].
    fn duration(&self, what: &str) -> Result<Duration, Fault> {
        units::duration(self.written(), Bounds::TIMER).map_err(|e| self.refused(what, &e))
    }

    /// The size of the key `what`, within `bounds`.
    fn size(&self, what: &str, bounds: Bounds<u64>) -> Result<u64, Fault> {
        units::size(self.written(), bounds).map_err(|e| self.refused(what, &e))
    }

    /// A percentage: `80%` or a bare `80`.
    fn percent(&self) -> Option<f64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Text(t) => t.trim().trim_end_matches('%').trim().parse().ok(),
        }
    }

    fn refused(&self, what: &str, e: &units::UnitError) -> Fault {
        Fault::new(format!("{what} {} {e}", self.written())).hint(e.hint())
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn a_file_to_apply_may_be_empty_and_its_apps_know_where_they_came_from() {
        let doc = |content| Document {
            content,
            origin: "conf/turbo.yml",
            base_dir: Path::new("/srv/conf"),
            path_env: "/usr/bin:/bin",
            vars: &NO_VARS,
        };
        let empty = doc("apps: []\n");
        let refused = file_specs_as(&empty, Caller::daemon(), false).unwrap_err();
        assert!(refused.to_string().contains("`apps` is empty"), "{refused}");
        assert!(
            file_specs_as(&empty, Caller::daemon(), true)
                .expect("valid to apply")
                .is_empty()
        );
        let one = doc("apps:\n  - {name: web, cmd: [sh], cwd: /}\n");
        let specs = file_specs_as(&one, Caller::daemon(), true).expect("valid");
        assert_eq!(specs[0].source.as_deref(), Some("/srv/conf/turbo.yml"));
    }

    #[test]
    fn included_files_add_apps_with_their_own_names_and_positions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("conf.d");
        std::fs::create_dir(&conf).expect("conf.d");
        let write = |name: &str, text: &str| std::fs::write(conf.join(name), text).expect("write");
        write("a.yml", "apps:\n  - name: worker\n    cmd: [sh]\n");
        let main = "apps:\n  - name: web\n    cmd: [sh]\ninclude: [\"conf.d/*.yml\"]\n";
        let read = || {
            let doc = Document {
                content: main,
                origin: "turbo.yml",
                base_dir: dir.path(),
                path_env: "/usr/bin:/bin",
                vars: &NO_VARS,
            };
            file_specs_as(&doc, Caller::daemon(), false)
        };
        let specs = read().expect("valid");
        let a = conf.join("a.yml").display().to_string();
        let got: Vec<(&str, Option<&str>)> = specs
            .iter()
            .map(|s| (s.name.as_str(), s.source.as_deref()))
            .collect();
        let main_source = dir.path().join("turbo.yml").display().to_string();
        assert_eq!(
            got,
            [
                ("web", Some(main_source.as_str())),
                ("worker", Some(a.as_str()))
            ]
        );
        assert_eq!(specs[1].cwd, conf, "relative to its own file");

        // a problem in an included file is placed in that file
        write(
            "b.yml",
            "apps:\n  - name: other\n    cmd: [sh]\n    kill_timeout: soon\n",
        );
        let e = read().unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:4:19: ", conf.join("b.yml").display())),
            "{e}"
        );
        // a name in two files is refused, at the second
        write("b.yml", "apps:\n  - name: web\n    cmd: [sh]\n");
        let e = read().unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "{}:2:11: apps[0] (web): name 'web' is used in turbo.yml too",
                conf.join("b.yml").display()
            )),
            "{e}"
        );
        // no nesting
        write("b.yml", "apps: []\ninclude: [\"x.yml\"]\n");
        let e = read().unwrap_err().to_string();
        assert!(e.contains("an included file cannot include others"), "{e}");
    }

    #[test]
    fn variables_and_profiles_place_their_problems_in_the_file() {
        let read = |content: &str, vars: &Vars| {
            let doc = Document {
                content,
                origin: "turbo.yml",
                base_dir: Path::new("/"),
                path_env: "/usr/bin:/bin",
                vars,
            };
            file_specs_as(&doc, Caller::daemon(), false)
        };
        let text = "apps:\n  - name: web\n    cmd: [sh, '${NOPE}']\n    env_prod: {A: b}\n";
        let e = read(text, &NO_VARS).unwrap_err().to_string();
        assert!(
            e.starts_with("turbo.yml:3:15: apps[0] (web): variable NOPE is not set"),
            "{e}"
        );
        let prod = Vars {
            env: [("NOPE".to_owned(), "x".to_owned())].into(),
            profile: Some("prod".into()),
        };
        let specs = read(text, &prod).expect("valid");
        assert_eq!(specs[0].argv[1], "x");
        assert!(specs[0].env.iter().any(|(k, v)| k == "A" && v == "b"));
        let other = Vars {
            profile: Some("staging".into()),
            ..prod.clone()
        };
        let e = read(text, &other).unwrap_err().to_string();
        assert!(
            e.contains("profile 'staging' is not defined by any app (available: prod)"),
            "{e}"
        );
        // a misspelt key beside a profile still gets serde's list, at its place
        let typo =
            "apps:\n  - name: web\n    cmd: [sh]\n    env_prod: {A: b}\n    kill_timout: 3\n";
        let e = read(typo, &prod).unwrap_err().to_string();
        assert!(
            e.contains("unknown field `kill_timout`, expected one of")
                && e.starts_with("turbo.yml:"),
            "{e}"
        );
    }
}
