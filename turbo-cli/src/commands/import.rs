//! `turbo import pm2 <ecosystem.config.js|ecosystem.json|ecosystem.yml|dump.pm2> [-o turbo.yml]
//! [--env NAME]`.
//!
//! Converts PM2's description of apps into a turbo.yml that uses only keys turbo.yml accepts
//! today, and says on stderr what it could not carry over and what it approximated. The
//! conversion ([`convert`]) is a pure function of the parsed document and is unit-tested; this
//! module reads one file and writes one file (or stdout), and must not talk to the daemon: the
//! result is checked by `turbo start`, which validates it like any hand-written turbo.yml.
//!
//! Two inputs, told apart by their shape:
//! * an ecosystem file (JavaScript, JSON or YAML; a `.js`/`.cjs`/`.mjs` file is evaluated by
//!   `node`, found on PATH, which prints its export as JSON, as PM2 itself `require`s it):
//!   `{"apps": [...]}`, a list of apps, or one app; keys as the
//!   user wrote them, with PM2's aliases (`exec`, `interpreter`, `interpreter_args`, `user`, ...);
//!   an unknown key is reported, a known key without equivalent too;
//! * a dump (`pm2 save` writes `~/.pm2/dump.pm2`): a list of `pm2_env` objects, which hold the
//!   resolved options (`pm_exec_path`, `pm_cwd`, `exec_interpreter`, `node_args`...) mixed with
//!   runtime state (`status`, `restart_time`, `pm_uptime`...) and with the environment of the
//!   shell that ran PM2, copied to the top level and into `env`. Only option keys are read;
//!   runtime state is ignored, and so are the shell's variables (`HOME`, `PATH`, `SSH_*`...),
//!   which turbo sets itself; one note says how many were left out.
//!
//! PM2 behaviours kept on purpose: its stop signal (SIGINT; turbo's default is SIGTERM) is
//! written out for every app, and its interpreter choice (by extension, `node` for anything
//! else, `none` for a binary) decides between `script:` and `cmd:`.

use std::{
    collections::BTreeMap,
    fmt, fs,
    io::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};
use serde::Serialize;
use serde_json::{Map, Value};

use super::start::sanitize_name;
use crate::{cli::ImportPm2Args, hint::Hinted, render, term};

/// What kind of PM2 document was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// An ecosystem (process) file.
    Ecosystem,
    /// A `pm2 save` dump.
    Dump,
}

/// How a PM2 option fared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// No equivalent in turbo.yml: left out.
    Dropped,
    /// Converted, but turbo's behaviour differs somewhat.
    Approximated,
    /// Not a PM2 option we know: left out.
    Unknown,
}

/// One thing the user should know about the conversion of one app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The turbo app name (or the PM2 entry's position when it had none).
    pub app: String,
    /// The PM2 key.
    pub key: String,
    pub kind: NoteKind,
    /// What happened and why, short.
    pub what: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.app, self.key, self.what)
    }
}

/// The result of a conversion.
#[derive(Debug, Default)]
pub struct Conversion {
    pub apps: Vec<TurboApp>,
    pub notes: Vec<Note>,
}

/// `turbo.yml`, as written.
#[derive(Debug, Serialize)]
struct TurboFile<'a> {
    apps: &'a [TurboApp],
}

/// One app of the generated turbo.yml; field order is the order in the file.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TurboApp {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autorestart: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_exit_codes: Vec<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kill_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<Log>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<NameOrId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<NameOrId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<Instances>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<Watch>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignore_watch: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch_delay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autostart: Option<bool>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<Cron>,
}

/// `cron:`: an expression (a restart of a service), or a run of a one-shot job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Cron {
    /// `cron: "0 3 * * *"` (`action: restart`).
    Restart(String),
    /// `cron: {schedule, action: run}`.
    Run {
        /// The expression.
        schedule: String,
        /// `run`.
        action: &'static str,
    },
}

/// `instances:`: a count, or `max` (one per CPU).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Instances {
    /// That many.
    Count(u64),
    /// `max`.
    Max(&'static str),
}

/// `watch:`: `true` (the cwd) or paths.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Watch {
    All(bool),
    Paths(Vec<String>),
}

/// `restart:`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Restart {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash_loop: Option<CrashLoop>,
}

/// `restart.crash_loop:`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CrashLoop {
    pub max: u64,
}

/// `log:`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Log {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'static str>,
    /// PM2's default for several instances: a pair of files each (`<name>-out-<N>.log`, the
    /// very names PM2 gives them).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub per_instance: bool,
}

/// `user:` / `group:`: turbo.yml reads a number as an id and text as a name, so ids stay numbers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum NameOrId {
    Id(u64),
    Name(String),
}

/// Options of the conversion that do not come from the document.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--env NAME`: merge `env_NAME` over `env`, as `pm2 start --env NAME` does.
    pub env_name: Option<String>,
    /// Directory relative paths of the document are relative to (an ecosystem file's own
    /// directory); `Some` makes them absolute, for an output written elsewhere.
    pub rebase: Option<PathBuf>,
}

/// PM2's interpreters by extension (`lib/API/interpreter.json`).
const PM2_INTERPRETERS: &[(&str, &str)] = &[
    ("sh", "bash"),
    ("py", "python"),
    ("rb", "ruby"),
    ("php", "php"),
    ("pl", "perl"),
    ("js", "node"),
    ("coffee", "coffee"),
    ("ls", "lsc"),
    ("ts", "bun"),
    ("tsx", "bun"),
];

/// Keys read by the conversion (with their PM2 aliases), so they are not reported as unknown.
const MAPPED: &[&str] = &[
    "name",
    "script",
    "exec",
    "pm_exec_path",
    "args",
    "cwd",
    "pm_cwd",
    "interpreter",
    "exec_interpreter",
    "node_args",
    "interpreter_args",
    "interpreterArgs",
    "env",
    "autorestart",
    "restart_delay",
    "exp_backoff_restart_delay",
    "max_restarts",
    "min_uptime",
    "kill_timeout",
    "max_memory_restart",
    "stop_exit_codes",
    "uid",
    "user",
    "gid",
    "log_type",
    "time",
    "port",
    "exec_mode",
    "instances",
    "watch",
    "ignore_watch",
    "watch_delay",
    "cron_restart",
    "cron",
    "wait_ready",
    "listen_timeout",
    "merge_logs",
    "combine_logs",
    "autostart",
];

/// PM2 options without an equivalent, with PM2's default (a value equal to it needs no note)
/// and why they are left out.
const DROPPED: &[(&str, Option<&str>, &str)] = &[
    (
        "watch_options",
        None,
        "chokidar's options; turbo watches with inotify (`ignore_watch`, `watch_delay`)",
    ),
    (
        "out_file",
        None,
        "turbo writes stdout to $TURBO_HOME/logs/<name>-out.log; `turbo describe` shows it",
    ),
    ("out", None, "turbo chooses the log paths"),
    ("output", None, "turbo chooses the log paths"),
    ("out_log", None, "turbo chooses the log paths"),
    (
        "error_file",
        None,
        "turbo writes stderr to $TURBO_HOME/logs/<name>-err.log; `turbo describe` shows it",
    ),
    ("error", None, "turbo chooses the log paths"),
    ("err", None, "turbo chooses the log paths"),
    ("err_file", None, "turbo chooses the log paths"),
    ("err_log", None, "turbo chooses the log paths"),
    (
        "log_file",
        None,
        "no combined log file; `turbo logs <name> --all` merges stdout and stderr by time",
    ),
    ("log", None, "no combined log file"),
    (
        "log_date_format",
        None,
        "turbo stores stamps in RFC 3339 (UTC); `turbo logs --time local` (or +HH:MM) shows them on your clock",
    ),
    (
        "disable_logs",
        Some("false"),
        "turbo always keeps logs (rotated by log.max_size / log.keep / log.max_age; log.to: [journald] sends them there instead)",
    ),
    (
        "shutdown_with_message",
        Some("false"),
        "turbo stops apps with a signal (stop_signal)",
    ),
    (
        "treekill",
        Some("true"),
        "turbo always stops the app's whole process group",
    ),
    ("pid_file", None, "`turbo status --json` has the pid"),
    ("pid", None, "`turbo status --json` has the pid"),
    ("namespace", Some("default"), "no namespaces"),
    (
        "instance_var",
        Some("NODE_APP_INSTANCE"),
        "turbo sets TURBO_INSTANCE and NODE_APP_INSTANCE",
    ),
    (
        "increment_var",
        None,
        "no per-instance increments: compute from TURBO_INSTANCE",
    ),
    (
        "filter_env",
        Some("false"),
        "apps never inherit the daemon's environment",
    ),
    (
        "append_env_to_name",
        Some("false"),
        "names are kept as they are",
    ),
    (
        "source_map_support",
        Some("true"),
        "Node-specific; pass node flags in cmd",
    ),
    ("disable_source_map_support", Some("false"), "Node-specific"),
    ("force", Some("false"), "names are unique in turbo"),
    ("post_update", None, "no deploy hooks"),
    ("vizion", Some("true"), "no versioning metadata"),
    ("pmx", Some("true"), "no in-app metrics wrapper"),
    ("automation", Some("true"), "no in-app metrics wrapper"),
    ("trace", Some("false"), "no transaction tracing"),
    ("disable_trace", Some("true"), "no transaction tracing"),
    ("deep_monitoring", None, "no in-app monitoring"),
    ("v8", None, "no in-app monitoring"),
    ("event_loop_inspector", None, "no in-app monitoring"),
    ("io", None, "no PM2.io"),
    (
        "kill_retry_time",
        Some("100"),
        "turbo waits kill_timeout, then SIGKILLs",
    ),
    ("windowsHide", Some("true"), "Windows only"),
    ("name_prefix", None, "names are kept as they are"),
    ("execute_command", None, "use cmd:"),
    ("write", None, "not needed"),
    ("install_url", None, "not needed"),
];

/// Keys of a dump that are PM2's runtime state, not options: ignored without a note (also in a
/// list of apps that was copied out of a dump or `pm2 jlist` by hand).
const DUMP_STATE: &[&str] = &[
    "status",
    "pm_uptime",
    "restart_time",
    "unstable_restarts",
    "created_at",
    "pm_id",
    "pm_pid_path",
    "pm_out_log_path",
    "pm_err_log_path",
    "pm_log_path",
    "axm_actions",
    "axm_monitor",
    "axm_options",
    "axm_dynamic",
    "km_link",
    "vizion_running",
    "node_version",
    "version",
    "versioning",
    "username",
    "exit_code",
    "prev_restart_delay",
    "unique_id",
    "NODE_APP_INSTANCE",
];

/// Variables of a dump's `env` that come from the shell that ran PM2 (or from PM2 itself), not
/// from the app's configuration: turbo sets its own `PATH`, `HOME`, locale..., and the rest
/// belongs to a login session. Names ending in `*` are prefixes.
const SHELL_VARS: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "PWD",
    "OLDPWD",
    "SHLVL",
    "TERM",
    "TERM_*",
    "COLORTERM",
    "LS_COLORS",
    "LESSOPEN",
    "LESSCLOSE",
    "MAIL",
    "HOSTNAME",
    "HOSTTYPE",
    "MOTD_SHOWN",
    "_",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "DISPLAY",
    "XAUTHORITY",
    "WAYLAND_DISPLAY",
    "SSH_*",
    "SUDO_*",
    "XDG_*",
    "DBUS_*",
    "TMUX*",
    "STY",
    "WINDOW",
    "GPG_TTY",
    "NVM_*",
    "PM2_*",
    "npm_*",
    "INIT_CWD",
    "NODE_APP_INSTANCE",
    "unique_id",
    "TURBO_*",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "SYSTEMD_EXEC_PID",
    "MANAGERPID",
    "NOTIFY_SOCKET",
    "LISTEN_*",
    "WATCHDOG_*",
];

fn is_shell_var(name: &str) -> bool {
    SHELL_VARS.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *p,
    })
}

/// `turbo import pm2`.
pub fn pm2(args: &ImportPm2Args) -> Result<()> {
    let file = &args.file;
    let shown = file.display().to_string();
    let text = if is_javascript(file) {
        evaluate_with_node(file)?
    } else {
        crate::files::read_config(file).map_err(|err| {
            if file.exists() {
                err
            } else {
                Hinted::wrap(
                    err,
                    "a PM2 dump is usually ~/.pm2/dump.pm2 (`pm2 save` writes it)",
                )
            }
        })?
    };
    let doc = parse_document(&text, file)?;
    if let Some(out) = &args.output
        && out.exists()
        && !args.force
    {
        return Err(Hinted::new(
            format!("{} already exists", out.display()),
            "pass --force to overwrite it, or choose another -o",
        )
        .into());
    }
    let source_dir = absolute_parent(file)?;
    let rebase = match &args.output {
        Some(out) if absolute_parent(out)? != source_dir => Some(source_dir),
        _ => None,
    };
    let conversion = convert(
        &doc,
        &Options {
            env_name: args.env_name.clone(),
            rebase,
        },
    )
    .map_err(|e| anyhow!("{shown}: {e}"))?;
    let yaml = to_yaml(&conversion, &shown)?;
    match &args.output {
        Some(out) => {
            let mut f = fs::File::create(out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            f.write_all(yaml.as_bytes())
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
        None => term::emit(yaml.trim_end())?,
    }
    eprintln!(
        "{}",
        summary(
            &conversion,
            &shown,
            args.output.as_deref(),
            term::stderr_color()
        )
    );
    Ok(())
}

/// `ecosystem.config.js` and its `.cjs`/`.mjs` forms: JavaScript, which only node can read.
fn is_javascript(file: &Path) -> bool {
    file.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["js", "cjs", "mjs"]
            .iter()
            .any(|js| e.eq_ignore_ascii_case(js))
    })
}

/// How long node may take to evaluate an ecosystem file (one that never settles must not hang
/// the CLI).
const NODE_TIMEOUT: Duration = Duration::from_secs(30);

/// Imports the file given as argv[1] (CommonJS or ES module alike: `import()` of CommonJS
/// yields `module.exports` as `default`) and prints its export as JSON, as PM2 itself does by
/// `require`-ing it. Functions in it are left out by `JSON.stringify`. `process.exit` ends a
/// file that left timers behind; stdout to a pipe is synchronous in node on Linux, so nothing
/// is lost.
const NODE_EVAL: &str = r#"const { pathToFileURL } = require("url");
import(pathToFileURL(process.argv[1]).href).then(
  (m) => {
    const v = m.default !== undefined ? m.default : m;
    process.stdout.write(JSON.stringify(v === undefined ? null : v));
    process.exit(0);
  },
  (e) => {
    process.stderr.write(String((e && e.message) || e));
    process.exit(1);
  },
);"#;

/// The export of a JavaScript ecosystem file as JSON text, from `node`. Evaluating it runs its
/// code, as `pm2 start ecosystem.config.js` would: the user asked for this file.
///
/// # Errors
/// node is not on PATH, the file throws, or node takes longer than [`NODE_TIMEOUT`].
fn evaluate_with_node(file: &Path) -> Result<String> {
    use std::{
        io::Read as _,
        process::{Command, Stdio},
    };
    let shown = file.display();
    // a FIFO or a directory gets the same clear error as a JSON file would
    crate::files::open_regular(file).map_err(|err| anyhow!("cannot read {shown}: {err}"))?;
    let cwd = std::env::current_dir().context("cannot determine the current directory")?;
    let absolute = crate::paths::absolutize(&cwd, file);
    let mut child = match Command::new("node")
        .arg("-e")
        .arg(NODE_EVAL)
        .arg("--")
        .arg(&absolute)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(Hinted::new(
                format!(
                    "{shown} is JavaScript, and `node` (Node.js), which turbo runs to read it, \
                     is not on PATH"
                ),
                "install Node.js, or write the same content as ecosystem.json and import that",
            )
            .into());
        }
        Err(err) => return Err(anyhow!("cannot run node to read {shown}: {err}")),
    };
    // both pipes drained while we wait, so a chatty file cannot block node on a full pipe
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe
                    .take(crate::files::MAX_CONFIG_BYTES + 1)
                    .read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = std::time::Instant::now() + NODE_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot wait for node")? {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(anyhow!(
                "node did not finish evaluating {shown} within {} s",
                NODE_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    if !status.success() {
        let said = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(anyhow!(
            "node could not evaluate {shown} ({status}): {said}"
        ));
    }
    if stdout.len() as u64 > crate::files::MAX_CONFIG_BYTES {
        return Err(anyhow!("{shown} exports more than 16 MiB of settings"));
    }
    String::from_utf8(stdout).map_err(|_| anyhow!("node printed non-UTF-8 text for {shown}"))
}

/// JSON (with line and column on error), or YAML for `.yml`/`.yaml` (PM2 reads both).
fn parse_document(text: &str, file: &Path) -> Result<Value> {
    let yaml = file
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"));
    let shown = file.display();
    if yaml {
        return serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            anyhow!("{shown}{at}: not valid YAML: {e}")
        });
    }
    serde_json::from_str(text).map_err(|e| {
        Hinted::new(
            format!("{shown}:{}:{}: not valid JSON: {e}", e.line(), e.column()),
            "PM2 ecosystem files in JSON and dumps from `pm2 save` are read; JSON5 (comments, trailing commas) is not",
        )
        .into()
    })
}

fn absolute_parent(file: &Path) -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot determine the current directory")?;
    let abs = crate::paths::absolutize(&cwd, file);
    Ok(abs.parent().map_or(cwd, Path::to_path_buf))
}

/// Converts a parsed PM2 document.
///
/// # Errors
/// The document is not a PM2 ecosystem or dump, or no app in it could be converted.
pub fn convert(doc: &Value, opts: &Options) -> Result<Conversion, String> {
    let (source, entries) = entries(doc)?;
    let mut out = Conversion::default();
    top_level_notes(doc, &mut out.notes);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let Value::Object(map) = entry else {
            out.notes.push(Note {
                app: format!("apps[{i}]"),
                key: "-".into(),
                kind: NoteKind::Dropped,
                what: "not an object: skipped".into(),
            });
            continue;
        };
        let Some(app) = convert_app(map, i, source, opts, &mut out.notes) else {
            continue;
        };
        // a dump lists every instance of a clustered app under the same name
        if let Some(n) = seen.get_mut(&app.name) {
            *n += 1;
            if source == Source::Dump {
                let count = *n;
                if let Some(first) = out.apps.iter_mut().find(|a| a.name == app.name) {
                    first.instances = u64::try_from(count).ok().map(Instances::Count);
                }
                continue;
            }
            let renamed = format!("{}-{}", app.name, n);
            out.notes.push(Note {
                app: app.name.clone(),
                key: "name".into(),
                kind: NoteKind::Approximated,
                what: format!("used twice: the second is called {renamed}"),
            });
            out.apps.push(TurboApp {
                name: renamed,
                ..app
            });
            continue;
        }
        seen.insert(app.name.clone(), 1);
        out.apps.push(app);
    }
    if let Some(name) = &opts.env_name {
        let key = format!("env_{name}");
        if !entries.iter().any(|e| e.get(&key).is_some()) {
            out.notes.push(Note {
                app: "every app".into(),
                key: "--env".into(),
                kind: NoteKind::Unknown,
                what: format!("no app has {key}: only `env` was used"),
            });
        }
    }
    if out.apps.is_empty() {
        return Err(if entries.is_empty() {
            "no apps in it".to_owned()
        } else {
            let why: Vec<String> = out.notes.iter().map(ToString::to_string).collect();
            format!("no app could be converted: {}", why.join("; "))
        });
    }
    Ok(out)
}

/// The app entries, and whether they come from a dump.
fn entries(doc: &Value) -> Result<(Source, &[Value]), String> {
    const SHAPE: &str = "expected a PM2 ecosystem (`{\"apps\": [...]}`) or a dump from `pm2 save` (a list of processes)";
    match doc {
        Value::Object(map) => match map.get("apps") {
            Some(Value::Array(apps)) => Ok((Source::Ecosystem, apps.as_slice())),
            Some(_) => Err(format!("`apps` is not a list: {SHAPE}")),
            None if map.contains_key("script") || map.contains_key("exec") => {
                Ok((Source::Ecosystem, std::slice::from_ref(doc)))
            }
            None => Err(format!("no `apps` list: {SHAPE}")),
        },
        Value::Array(items) => {
            let dump = items
                .iter()
                .any(|i| i.get("pm_exec_path").is_some() || i.get("pm_cwd").is_some());
            let source = if dump {
                Source::Dump
            } else {
                Source::Ecosystem
            };
            Ok((source, items.as_slice()))
        }
        _ => Err(SHAPE.to_owned()),
    }
}

/// The first of `keys` present in `map`.
fn get<'a>(map: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter()
        .find_map(|k| map.get(*k))
        .filter(|v| !v.is_null())
}

/// A string, or a number written as one.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Arguments: a list, or one string split like a shell would (PM2 accepts both).
fn words(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().filter_map(text).collect(),
        Value::String(s) => split_words(s),
        other => text(other).into_iter().collect(),
    }
}

/// Splits on blanks as a POSIX shell would (quotes, backslashes); a string with an unclosed
/// quote, which PM2 would hand to its own splitter, falls back to plain blanks.
fn split_words(s: &str) -> Vec<String> {
    shlex::split(s).unwrap_or_else(|| s.split_whitespace().map(str::to_owned).collect())
}

/// Milliseconds from a number or PM2's `min_uptime` forms (`500`, `5s`, `2m`, `1h`).
fn millis(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f.round() as u64)),
        Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: u64 = num.parse().ok()?;
            match unit.trim() {
                "" | "ms" => Some(n),
                "s" => n.checked_mul(1000),
                "m" => n.checked_mul(60_000),
                "h" => n.checked_mul(3_600_000),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A turbo.yml duration: the largest whole unit.
fn duration_text(ms: u64) -> String {
    match ms {
        0 => "0s".to_owned(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// Bytes from PM2's `max_memory_restart` (`300M`, `1G`, `512K`, a number of bytes; 1024-based).
fn pm2_bytes(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let s = s.trim();
            let (num, mult) = match s.chars().last()?.to_ascii_uppercase() {
                'K' => (&s[..s.len() - 1], 1u64 << 10),
                'M' => (&s[..s.len() - 1], 1 << 20),
                'G' => (&s[..s.len() - 1], 1 << 30),
                _ => (s, 1),
            };
            num.trim().parse::<u64>().ok()?.checked_mul(mult)
        }
        _ => None,
    }
}

/// A turbo.yml size: `300mb`, `1gb`, `512k`, or bytes.
fn size_text(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}gb", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}mb", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}k", b >> 10),
        b => b.to_string(),
    }
}

fn extension(path: &str) -> &str {
    Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
}

fn basename(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

/// Converts one PM2 app; `None` (with a note) when it has no script.
#[expect(
    clippy::too_many_lines,
    reason = "one straight pass over PM2's options, in the order of turbo.yml"
)]
fn convert_app(
    map: &Map<String, Value>,
    index: usize,
    source: Source,
    opts: &Options,
    notes: &mut Vec<Note>,
) -> Option<TurboApp> {
    let script = get(map, &["script", "exec", "pm_exec_path"]).and_then(text);
    let pm2_name = get(map, &["name"]).and_then(text);
    let label = pm2_name.clone().unwrap_or_else(|| format!("apps[{index}]"));
    let Some(script) = script.filter(|s| !s.trim().is_empty()) else {
        notes.push(Note {
            app: label,
            key: "script".into(),
            kind: NoteKind::Dropped,
            what: "missing: the app was skipped".into(),
        });
        return None;
    };
    let name = match &pm2_name {
        Some(n) => sanitize_name(n),
        // PM2's default too: the script's file name without extension
        None => sanitize_name(
            Path::new(&script)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("app"),
        ),
    };
    let mut app = TurboApp {
        name: name.clone(),
        ..TurboApp::default()
    };
    let mut note = |key: &str, kind: NoteKind, what: String| {
        notes.push(Note {
            app: name.clone(),
            key: key.to_owned(),
            kind,
            what,
        });
    };
    if let Some(n) = &pm2_name
        && *n != name
    {
        note(
            "name",
            NoteKind::Approximated,
            format!("'{n}' is not a valid turbo app name: renamed {name}"),
        );
    }

    // what runs
    let interpreter = get(map, &["exec_interpreter", "interpreter"])
        .and_then(text)
        .filter(|i| !i.is_empty());
    let interp_args = get(map, &["node_args", "interpreter_args", "interpreterArgs"])
        .map(words)
        .unwrap_or_default();
    let args = get(map, &["args"]).map(words).unwrap_or_default();
    let ext = extension(&script);
    let looks_like_command = !script.contains('/') && ext.is_empty();
    let pm2_default = PM2_INTERPRETERS
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|(_, i)| *i);
    let turbo_default = turbo_api::INTERPRETERS
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|(_, i)| *i);
    // the interpreter PM2 runs it with; None: the script itself (a binary or a command)
    let chosen: Option<String> = match interpreter.as_deref() {
        Some("none") => None,
        Some(i) => Some(i.to_owned()),
        None if script.contains(char::is_whitespace) && looks_like_command => None,
        None if looks_like_command => None,
        None => Some(pm2_default.unwrap_or("node").to_owned()),
    };
    match chosen {
        None if script.contains(char::is_whitespace) => {
            // `script: "npm run start"`: a command line
            let mut cmd = split_words(&script);
            cmd.extend(args);
            app.cmd = Some(cmd);
        }
        None => {
            let mut cmd = vec![script.clone()];
            cmd.extend(args);
            app.cmd = Some(cmd);
        }
        Some(interp) => {
            let same = turbo_default.is_some_and(|t| {
                let b = basename(&interp);
                // PM2's `python` means python3 where there is no python 2 (it checks PATH)
                b == t || (t == "python3" && b == "python")
            });
            if same && interp_args.is_empty() && !interp.contains('/') {
                app.script = Some(script.clone());
                app.args = args;
            } else {
                let mut cmd = vec![interp];
                cmd.extend(interp_args.iter().cloned());
                cmd.push(script.clone());
                cmd.extend(args);
                app.cmd = Some(cmd);
            }
        }
    }

    // where
    if let Some(cwd) = get(map, &["cwd", "pm_cwd"]).and_then(text) {
        app.cwd = Some(match &opts.rebase {
            Some(base) if Path::new(&cwd).is_relative() => {
                crate::paths::absolutize(base, Path::new(&cwd))
                    .to_string_lossy()
                    .into_owned()
            }
            _ => cwd,
        });
    } else if let Some(base) = &opts.rebase {
        // turbo.yml resolves a relative script against the file's directory, which moves
        app.cwd = Some(base.to_string_lossy().into_owned());
    }

    // environment: env, then env_<NAME>, then `port`
    let mut dropped_shell = 0usize;
    let mut add_env = |env: &Value,
                       key: &str,
                       app: &mut TurboApp,
                       note: &mut dyn FnMut(&str, NoteKind, String)| {
        let Value::Object(vars) = env else {
            note(
                key,
                NoteKind::Dropped,
                "not a map of variables: left out".to_owned(),
            );
            return;
        };
        for (k, v) in vars {
            if source == Source::Dump && is_shell_var(k) {
                dropped_shell += 1;
                continue;
            }
            let value = match v {
                Value::Null => continue,
                // PM2 passes objects as JSON text
                Value::Object(_) | Value::Array(_) if source == Source::Dump => continue,
                Value::Object(_) | Value::Array(_) => v.to_string(),
                other => text(other).unwrap_or_default(),
            };
            app.env.insert(k.clone(), value);
        }
    };
    if let Some(env) = get(map, &["env"]) {
        add_env(env, "env", &mut app, &mut note);
    }
    if let Some(env_name) = &opts.env_name {
        let key = format!("env_{env_name}");
        // an app without this block keeps its `env`, as with `pm2 start --env`
        if let Some(env) = map.get(&key) {
            add_env(env, &key, &mut app, &mut note);
        }
    }
    if let Some(port) = get(map, &["port"]).and_then(text) {
        app.env.entry("PORT".to_owned()).or_insert(port);
    }
    if dropped_shell > 0 {
        note(
            "env",
            NoteKind::Dropped,
            format!(
                "{dropped_shell} variables of the shell that ran pm2 (PATH, HOME, ...) left out: \
                 turbo sets PATH, HOME, USER and the locale itself; add any other the app needs to env:"
            ),
        );
    }

    // restarts
    if let Some(v) = get(map, &["autorestart"]) {
        match v {
            Value::Bool(false) => app.autorestart = Some("never"),
            Value::Bool(true) => {}
            other => note(
                "autorestart",
                NoteKind::Dropped,
                format!("{other} is not true or false"),
            ),
        }
    }
    if let Some(codes) = get(map, &["stop_exit_codes"]) {
        let list = match codes {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        app.stop_exit_codes = list
            .iter()
            .filter_map(|c| c.as_i64().and_then(|c| i32::try_from(c).ok()))
            .filter(|c| (0..=255).contains(c))
            .collect();
    }
    let mut restart = Restart::default();
    let exp = get(map, &["exp_backoff_restart_delay"])
        .and_then(millis)
        .filter(|ms| *ms > 0);
    let fixed = get(map, &["restart_delay"])
        .and_then(millis)
        .filter(|ms| *ms > 0);
    if let Some(ms) = exp {
        // PM2: ×1.5 per restart up to 15 s, back to the start after 30 s up
        restart.delay = Some(duration_text(ms));
        restart.factor = Some(1.5);
        restart.max_delay = Some(duration_text(ms.max(15_000)));
        restart.reset_after = Some("30s".to_owned());
        if fixed.is_some() {
            note(
                "restart_delay",
                NoteKind::Dropped,
                "PM2 ignores it when exp_backoff_restart_delay is set".to_owned(),
            );
        }
    } else if let Some(ms) = fixed {
        restart.delay = Some(duration_text(ms));
        restart.factor = Some(1.0);
        restart.max_delay = Some(duration_text(ms));
    }
    if let Some(max) = get(map, &["max_restarts"]).and_then(Value::as_u64) {
        restart.crash_loop = Some(CrashLoop { max });
        note(
            "max_restarts",
            NoteKind::Approximated,
            format!(
                "restart.crash_loop.max {max}: turbo counts crashes within restart.crash_loop.window \
                 (60s), PM2 counts restarts that lived less than min_uptime"
            ),
        );
    }
    if let Some(v) = get(map, &["min_uptime"])
        && millis(v) != Some(1000)
    {
        note(
            "min_uptime",
            NoteKind::Dropped,
            "turbo detects crash loops by count within a window (restart.crash_loop)".to_owned(),
        );
    }
    if restart != Restart::default() {
        app.restart = Some(restart);
    }

    // stopping: PM2 sends SIGINT, then SIGKILL after kill_timeout (1600 ms by default)
    app.stop_signal = Some("SIGINT");
    if let Some(ms) = get(map, &["kill_timeout"]).and_then(millis) {
        app.kill_timeout = Some(duration_text(ms));
    }

    // logs and memory
    if let Some(t) = get(map, &["log_type"]).and_then(text) {
        if t == "json" {
            app.log.get_or_insert_with(Log::default).format = Some("json");
        } else if t != "raw" {
            note("log_type", NoteKind::Dropped, format!("'{t}' is not json"));
        }
    }
    if let Some(v) = get(map, &["max_memory_restart"]) {
        match pm2_bytes(v) {
            Some(b) if b >= 1 << 20 => app.max_memory = Some(size_text(b)),
            _ => note(
                "max_memory_restart",
                NoteKind::Dropped,
                format!("{v} is not a size of at least 1M"),
            ),
        }
    }

    // watch mode
    let strings = |v: &Value| -> Option<Vec<String>> {
        match v {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect(),
            _ => None,
        }
    };
    match get(map, &["watch"]) {
        None | Some(Value::Bool(false) | Value::Null) => {}
        Some(Value::Bool(true)) => app.watch = Some(Watch::All(true)),
        Some(v) => match strings(v) {
            Some(paths) if !paths.is_empty() => app.watch = Some(Watch::Paths(paths)),
            _ => note(
                "watch",
                NoteKind::Dropped,
                format!("{v} is not true or paths"),
            ),
        },
    }
    if let Some(v) = get(map, &["ignore_watch"]) {
        match strings(v) {
            // PM2 (chokidar) also takes regular expressions; turbo takes globs, which the
            // common entries (`node_modules`, `*.log`, `logs/**`) already are
            Some(globs) => app.ignore_watch = globs,
            None => note(
                "ignore_watch",
                NoteKind::Dropped,
                format!("{v} is not a list of globs"),
            ),
        }
    }
    if let Some(v) = get(map, &["watch_delay"]) {
        match v.as_u64() {
            Some(ms) => app.watch_delay = Some(duration_text(ms)),
            None => note(
                "watch_delay",
                NoteKind::Dropped,
                format!("{v} is not milliseconds"),
            ),
        }
    }
    if app.watch.is_none() {
        // without watch they would be config errors in turbo.yml
        app.ignore_watch.clear();
        app.watch_delay = None;
    }

    // who
    let id_or_name = |v: &Value| match v {
        Value::Number(n) => n.as_u64().map(NameOrId::Id),
        Value::String(s) if !s.is_empty() => Some(match s.parse::<u64>() {
            Ok(id) => NameOrId::Id(id),
            Err(_) => NameOrId::Name(s.clone()),
        }),
        _ => None,
    };
    app.user = get(map, &["uid", "user"]).and_then(id_or_name);
    app.group = get(map, &["gid"]).and_then(id_or_name);

    // instances and mode (a dump has one entry per instance: counted by the caller)
    if let Some(v) = get(map, &["instances"])
        && source == Source::Ecosystem
    {
        let n = v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()));
        match (n, v.as_str()) {
            (Some(1), _) => {}
            (Some(n), _) if n > 1 => app.instances = u64::try_from(n).ok().map(Instances::Count),
            // PM2: 0 and "max" mean one per CPU, -N all CPUs but N
            (Some(0), _) | (_, Some("max")) => app.instances = Some(Instances::Max("max")),
            (Some(n), _) if n < 0 => {
                app.instances = Some(Instances::Max("max"));
                note(
                    "instances",
                    NoteKind::Approximated,
                    format!("{n} (all CPUs but {}): turbo runs one per CPU (`max`)", -n),
                );
            }
            _ => note("instances", NoteKind::Dropped, format!("{v} (not a count)")),
        }
    }
    if let Some(mode) = get(map, &["exec_mode"]).and_then(text)
        && mode.starts_with("cluster")
    {
        note(
            "exec_mode",
            NoteKind::Approximated,
            "cluster mode is Node's: turbo runs each instance as its own process; to share a port, \
             give it in `listen:` and read the socket from fd 3 (docs/cluster.md)"
                .to_owned(),
        );
    }

    jobs_and_readiness(map, &mut app, &mut note);

    // everything else
    for (key, value) in map {
        if MAPPED.contains(&key.as_str()) || key.starts_with("env_") {
            continue;
        }
        if let Some((_, default, why)) = DROPPED.iter().find(|(k, _, _)| k == key) {
            let value_text = text(value).unwrap_or_else(|| value.to_string());
            if default.is_some_and(|d| d == value_text) || value.is_null() {
                continue;
            }
            // a dump has PM2's log paths for every app; only other paths are a choice
            if source == Source::Dump && value_text.contains("/.pm2/") {
                continue;
            }
            note(key, NoteKind::Dropped, format!("{value_text} ({why})"));
        } else if source == Source::Ecosystem && !DUMP_STATE.contains(&key.as_str()) {
            note(
                key,
                NoteKind::Unknown,
                "not a PM2 option turbo knows: left out".to_owned(),
            );
        }
        // in a dump anything else is runtime state (DUMP_STATE) or a copy of an env variable
    }
    Some(app)
}

/// `cron_restart`, `wait_ready` with `listen_timeout`, `autostart`, and `merge_logs` of
/// several instances (without it, per-instance files, as PM2 writes them).
fn jobs_and_readiness(
    map: &Map<String, Value>,
    app: &mut TurboApp,
    note: &mut impl FnMut(&str, NoteKind, String),
) {
    if let Some(expr) = get(map, &["cron_restart", "cron"]).and_then(text) {
        let key = if map.contains_key("cron_restart") {
            "cron_restart"
        } else {
            "cron"
        };
        let zone = "PM2 reads it in the server's local time zone, turbo in UTC: add \
                    `timezone:` (e.g. Europe/Paris) if they differ";
        if app.autorestart == Some("never") {
            // PM2's way to run a job on a schedule: it exits, stays stopped, cron starts it
            app.kind = Some("oneshot");
            app.autorestart = None;
            app.cron = Some(Cron::Run {
                schedule: expr,
                action: "run",
            });
            note(
                key,
                NoteKind::Approximated,
                format!(
                    "with autorestart: false it is a scheduled job: `type: oneshot` run by the \
                     schedule (a run still going when the next is due is skipped); {zone}"
                ),
            );
        } else {
            app.cron = Some(Cron::Restart(expr));
            note(
                key,
                NoteKind::Approximated,
                format!("restarts on schedule; {zone}"),
            );
        }
    }
    let wait_ready = get(map, &["wait_ready"]).and_then(Value::as_bool) == Some(true);
    let listen_timeout = get(map, &["listen_timeout"]).and_then(millis);
    if wait_ready {
        app.ready = Some("notify");
        // PM2's default listen_timeout is 3 s
        app.ready_timeout = Some(duration_text(listen_timeout.unwrap_or(3000)));
        note(
            "wait_ready",
            NoteKind::Approximated,
            "`ready: notify`: the app must send READY=1 on $NOTIFY_SOCKET (`systemd-notify \
             --ready`, or the sd-notify package) instead of process.send('ready'); PM2 goes on \
             at listen_timeout, turbo restarts an app that is not ready by ready_timeout"
                .to_owned(),
        );
    } else if let Some(ms) = listen_timeout {
        note(
            "listen_timeout",
            NoteKind::Dropped,
            format!(
                "{} (PM2 waits for the app to listen; turbo considers an app without a \
                 readiness signal online once started: with wait_ready it becomes ready_timeout)",
                duration_text(ms)
            ),
        );
    }
    if get(map, &["autostart"]).and_then(Value::as_bool) == Some(false) {
        app.autostart = Some(false);
    }
    let merge = get(map, &["merge_logs", "combine_logs"]).and_then(Value::as_bool);
    if app.instances.is_some() && merge != Some(true) {
        app.log.get_or_insert_with(Log::default).per_instance = true;
    }
}

/// Top-level keys of an ecosystem file besides `apps`: a `deploy` block (PM2's git-based
/// deployment) and anything else, each noted.
fn top_level_notes(doc: &Value, notes: &mut Vec<Note>) {
    let Value::Object(map) = doc else {
        return;
    };
    if !map.contains_key("apps") {
        return; // a single app: its keys are the app's
    }
    for key in map.keys().filter(|k| *k != "apps") {
        let (kind, what) = if key == "deploy" {
            (
                NoteKind::Dropped,
                "PM2's deployment (`pm2 deploy`: git pull, hooks, over ssh) has no equivalent: \
                 deploy the code with your own tooling, then run `turbo apply turbo.yml` on the \
                 host"
                    .to_owned(),
            )
        } else {
            (
                NoteKind::Unknown,
                "not a top-level key of a PM2 ecosystem file: left out".to_owned(),
            )
        };
        notes.push(Note {
            app: "file".into(),
            key: key.clone(),
            kind,
            what,
        });
    }
}

/// The turbo.yml text, with a header saying where it came from and what was left out.
///
/// # Errors
/// Serialisation failed (it does not for these types).
pub fn to_yaml(conversion: &Conversion, origin: &str) -> Result<String> {
    let body = serde_yaml_ng::to_string(&TurboFile {
        apps: &conversion.apps,
    })
    .context("cannot write YAML")?;
    let mut out = format!(
        "# Converted from {origin} by `turbo import pm2`. Relative paths resolve against this\n\
         # file's directory. Check it with `turbo start <this file>`.\n"
    );
    let dropped: Vec<&Note> = conversion
        .notes
        .iter()
        .filter(|n| n.kind != NoteKind::Approximated)
        .collect();
    if !dropped.is_empty() {
        out.push_str("# Left out (no equivalent in turbo.yml):\n");
        for n in dropped {
            out.push_str(&format!("#   {}\n", one_line(&n.to_string())));
        }
    }
    out.push_str(&body);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// What stderr says after a conversion.
#[must_use]
pub fn summary(
    conversion: &Conversion,
    origin: &str,
    output: Option<&Path>,
    color: bool,
) -> String {
    let n = conversion.apps.len();
    let apps = if n == 1 { "app" } else { "apps" };
    let to = output.map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
    let mut lines = vec![format!(
        "{} {n} {apps} from {origin} to {to}",
        render::paint(color, render::Tone::Green, "converted")
    )];
    let section = |lines: &mut Vec<String>, title: &str, kinds: &[NoteKind]| {
        let notes: Vec<&Note> = conversion
            .notes
            .iter()
            .filter(|n| kinds.contains(&n.kind))
            .collect();
        if notes.is_empty() {
            return;
        }
        lines.push(render::paint(color, render::Tone::Yellow, title));
        for n in notes {
            lines.push(format!("  {n}"));
        }
    };
    section(
        &mut lines,
        "not converted (no equivalent in turbo.yml yet):",
        &[NoteKind::Dropped, NoteKind::Unknown],
    );
    section(
        &mut lines,
        "converted approximately:",
        &[NoteKind::Approximated],
    );
    lines.push(format!(
        "note: stop_signal is SIGINT, PM2's (turbo's default is SIGTERM); next: turbo start {}",
        output.map_or_else(|| "<file>".to_owned(), |p| p.display().to_string())
    ));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
        let (app, _) = one(
            &json!({"apps": [{"script": "w.js", "restart_delay": 45000, "autorestart": false}]}),
        );
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
        let doc =
            json!({"apps": [{"script": "a.js"}, {"script": "b.js", "env_staging": {"X": "1"}}]});
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
            text.contains(
                "  type: oneshot\n  cron:\n    schedule: '*/5 * * * *'\n    action: run\n"
            ),
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
}
