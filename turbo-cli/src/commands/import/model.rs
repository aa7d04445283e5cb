//! The result of an import: the turbo.yml apps and the notes on what did not carry over. Plain
//! data, serialised by the parent module; this module must not know PM2's keys.

use std::{collections::BTreeMap, fmt, path::PathBuf};

use serde::Serialize;

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
pub(super) struct TurboFile<'a> {
    pub(super) apps: &'a [TurboApp],
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
