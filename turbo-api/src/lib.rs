//! The daemon <-> client contract of TurboProcess, over D-Bus.
//!
//! Bus name, object paths, interface and error names, the data types that cross the bus, and a
//! hand-written [`ManagerProxy`] used by the `turbo` CLI and the tests. Both the daemon's
//! interface and the proxy are written against this crate, so they cannot drift apart silently
//! (a contract test in `tests/` calls every method). The other contract of daemon and CLI, the
//! layout of the log files the daemon writes and the CLI reads, is [`logfmt`]. This crate must
//! not contain daemon logic or I/O beyond what zbus does for a proxy.
#![deny(missing_docs)]

mod dto;
mod insight;
pub mod logfmt;
mod names;
mod status_json;

pub use dto::{
    AppChange, AppConfigInfo, AppRow, AppState, AppStatus, CrashRecord, CrashStats, DaemonInfo,
    ExitInfo, ExitReason, FieldChange, Health, LogStream, rfc3339_ms,
};
pub use insight::{AppInsight, ExecRecord, KernelEvent, ListenDrops, PeerRecord};
pub use names::{
    INTERPRETERS, MAX_NAME_LEN, app_path, escape_path_component, instance_path, parse_duration,
    parse_size, validate_app_name,
};
pub use status_json::{ExitJson, StatusJson};

/// Well-known bus name of the daemon.
pub const BUS_NAME: &str = "org.turboprocess.Turbo1";
/// Path of the `org.freedesktop.DBus.ObjectManager`.
pub const ROOT_PATH: &str = "/org/turboprocess/Turbo1";
/// Path of the manager object.
pub const MANAGER_PATH: &str = "/org/turboprocess/Turbo1/Manager";
/// Interface of the manager object.
pub const MANAGER_INTERFACE: &str = "org.turboprocess.Turbo1.Manager";
/// Interface of every app object.
pub const APP_INTERFACE: &str = "org.turboprocess.Turbo1.App";
/// Parent path of the app objects: `<APP_PATH_PREFIX>/<escaped name>`.
pub const APP_PATH_PREFIX: &str = "/org/turboprocess/Turbo1/app";
/// Prefix of every error name the daemon replies with.
pub const ERROR_PREFIX: &str = "org.turboprocess.Turbo1.Error";
/// Name of the private bus socket inside `TURBO_HOME` in user mode.
pub const BUS_SOCKET: &str = "bus.sock";

/// Keys understood in the `options` argument of `StartApp` (a D-Bus `a{sv}`), so that new options
/// can be added without changing the method signature.
pub mod option {
    /// `s`: working directory (absolute). Default: the daemon's home directory (`TURBO_HOME`).
    pub const CWD: &str = "cwd";
    /// `a{ss}`: extra environment variables.
    pub const ENV: &str = "env";
    /// `s`: `always` | `on-failure` | `never`.
    pub const AUTORESTART: &str = "autorestart";
    /// `t`: restart the app when its resident memory reaches this many bytes.
    pub const MAX_MEMORY: &str = "max_memory";
    /// `u`: how many instances to run (default 1).
    pub const INSTANCES: &str = "instances";
    /// `b`: restart the app when files under its cwd change (watch mode).
    pub const WATCH: &str = "watch";
    /// `s`: the first restart delay, a duration as in turbo.yml's `restart.delay` (`"5s"`).
    pub const RESTART_DELAY: &str = "restart_delay";
}

/// Names of the options of `ApplyConfig`.
pub mod apply_option {
    /// `b`: compute and return the plan, change nothing.
    pub const DRY_RUN: &str = "dry_run";
    /// `b`: stop and forget the apps the daemon has and the file does not.
    pub const PRUNE: &str = "prune";
    /// `as`: only these apps (names from the file or the daemon); the others are left alone.
    pub const ONLY: &str = "only";
    /// `s`: the profile whose `env_<profile>:` blocks are merged over `env:` (`--env`).
    pub const ENV_PROFILE: &str = "env_profile";
    /// `a{ss}`: the caller's environment, for `${VAR}` in the file (the app's environment is
    /// still only what the file gives it).
    pub const CALLER_ENV: &str = "caller_env";
}

/// Errors the daemon replies with; the D-Bus name is `org.turboprocess.Turbo1.Error.<Variant>`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.turboprocess.Turbo1.Error")]
pub enum Error {
    /// A transport or protocol error, not a reply of the daemon.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// No app matches the given name or id.
    NotFound(String),
    /// An app with that name already exists.
    AlreadyExists(String),
    /// An argument is malformed (bad name, unknown option, wrong type).
    InvalidArgument(String),
    /// The configuration file is invalid; the message lists every problem.
    InvalidConfig(String),
    /// The command could not be started (missing script, not executable, ...).
    SpawnFailed(String),
    /// The caller is not allowed to do this.
    AccessDenied(String),
    /// Anything else; the message says what.
    Failed(String),
}

/// The message a user should see for a failed call: the daemon's own text for its errors, the
/// transport error otherwise.
#[must_use]
pub fn error_message(err: &zbus::Error) -> String {
    match err {
        zbus::Error::MethodError(_, Some(msg), _) => msg.clone(),
        zbus::Error::MethodError(name, None, _) => name.to_string(),
        zbus::Error::FDO(fdo) => fdo_message(fdo),
        other => other.to_string(),
    }
}

fn fdo_message(err: &zbus::fdo::Error) -> String {
    let text = err.to_string();
    // fdo errors print as "org.freedesktop.DBus.Error.X: message"; the message is what matters
    text.split_once(": ")
        .map_or(text.clone(), |(_, msg)| msg.to_owned())
}

pub use proxy::{AppStateChanged, AppStateChangedArgs, AppStateChangedStream, ManagerProxy};

mod proxy {
    #![allow(missing_docs, reason = "zbus::proxy generates undocumented items")]
    use std::collections::HashMap;

    use zbus::zvariant::Value;

    use crate::{
        AppChange, AppConfigInfo, AppInsight, AppRow, AppStatus, CrashRecord, CrashStats,
        DaemonInfo, KernelEvent,
    };

    /// Client side of `org.turboprocess.Turbo1.Manager`.
    #[zbus::proxy(
        interface = "org.turboprocess.Turbo1.Manager",
        default_service = "org.turboprocess.Turbo1",
        default_path = "/org/turboprocess/Turbo1/Manager"
    )]
    pub trait Manager {
        /// Returns the daemon's version; a cheap liveness check.
        fn ping(&self) -> zbus::Result<String>;

        /// Describes the daemon: version, mode, paths, active event source and why.
        fn info(&self) -> zbus::Result<DaemonInfo>;

        /// Where the Prometheus exporter listens, empty when it is off.
        #[zbus(property)]
        fn metrics_address(&self) -> zbus::Result<String>;

        /// The URL the exporter serves (`https://` when it speaks TLS only), empty when it is
        /// off. Newer than `MetricsAddress`: a daemon before it has no such property.
        #[zbus(property)]
        fn metrics_url(&self) -> zbus::Result<String>;

        /// Why the exporter is off, empty while it serves.
        #[zbus(property)]
        fn metrics_off_reason(&self) -> zbus::Result<String>;

        /// Starts one app running `argv` (argv[0] is a script or a command; see [`option`]).
        fn start_app(
            &self,
            name: &str,
            argv: &[&str],
            options: HashMap<&str, Value<'_>>,
        ) -> zbus::Result<AppStatus>;

        /// Validates a `turbo.yml` document and starts (or restarts) every app in it. `origin` names
        /// the file in error messages; relative paths in it resolve against `base_dir`.
        fn start_config(
            &self,
            content: &str,
            origin: &str,
            base_dir: &str,
        ) -> zbus::Result<Vec<AppStatus>>;

        /// `start_config` with options: [`apply_option::CALLER_ENV`] and
        /// [`apply_option::ENV_PROFILE`] (`turbo start FILE`; `StartConfig` keeps its signature).
        fn start_config_with(
            &self,
            content: &str,
            origin: &str,
            base_dir: &str,
            options: HashMap<&str, Value<'_>>,
        ) -> zbus::Result<Vec<AppStatus>>;

        /// Makes the daemon's apps match a `turbo.yml` document: validates all of it first
        /// (one invalid app rejects the whole file, nothing changes), then starts new apps,
        /// updates, restarts or reloads changed ones and, with the `prune` option, removes the
        /// apps the file no longer has. Returns the plan, one entry per app, once it is carried
        /// out (at once with `dry_run`). Options: [`apply_option`].
        fn apply_config(
            &self,
            content: &str,
            origin: &str,
            base_dir: &str,
            options: HashMap<&str, Value<'_>>,
        ) -> zbus::Result<Vec<AppChange>>;

        /// Stops the apps matching `target` (name, id or `all`); returns once they have exited.
        fn stop_app(&self, target: &str) -> zbus::Result<Vec<AppStatus>>;

        /// Starts the existing apps matching `target` that are not running, and the
        /// dependencies they wait for unless `no_deps`.
        fn start_named(&self, target: &str, no_deps: bool) -> zbus::Result<Vec<AppStatus>>;

        /// Restarts (or starts, if stopped) the apps matching `target`.
        fn restart_app(&self, target: &str) -> zbus::Result<Vec<AppStatus>>;

        /// Replaces the running instances of the apps matching `target` one at a time, each
        /// once its replacement is ready (zero-downtime reload).
        fn reload_app(&self, target: &str) -> zbus::Result<Vec<AppStatus>>;

        /// Sends `signal` (`SIGHUP`, `hup`, `1`) to the main process of every running app
        /// matching `target` (name, `name:N`, id, `all`, `@group`); returns those signalled.
        fn signal_app(&self, target: &str, signal: &str) -> zbus::Result<Vec<AppStatus>>;

        /// Runs `count` instances of app `name`.
        fn scale_app(&self, name: &str, count: u32) -> zbus::Result<Vec<AppStatus>>;

        /// Stops and forgets the apps matching `target`; returns the names deleted.
        fn delete_app(&self, target: &str) -> zbus::Result<Vec<String>>;

        /// Every app, ordered by id.
        fn list_apps(&self) -> zbus::Result<Vec<AppStatus>>;

        /// Every app, ordered by id, with only the fields of the `turbo status` table.
        fn list_app_rows(&self) -> zbus::Result<Vec<AppRow>>;

        /// Stops every app, then the daemon.
        fn shutdown(&self) -> zbus::Result<()>;

        /// Saves the state and re-executes the daemon binary from its install path, in place
        /// (same pid): apps keep running, the log keeper keeps their output, the new daemon
        /// adopts them. Replies before the exec; the name is back once the new daemon is ready.
        fn upgrade(&self) -> zbus::Result<()>;

        /// Clears restart counters and the crash-loop state of the matching apps; an `errored`
        /// app starts again.
        fn reset_app(&self, target: &str) -> zbus::Result<Vec<AppStatus>>;

        /// The app's status, configuration and its kept crash records (newest first).
        fn describe_app(
            &self,
            target: &str,
        ) -> zbus::Result<(AppStatus, AppConfigInfo, Vec<CrashRecord>)>;

        /// The app's environment variables (`env:` and `env_file:`) with their values, sorted by
        /// name. Root only (and the daemon's own user in user mode): values are secrets.
        fn describe_env(&self, target: &str) -> zbus::Result<Vec<(String, String)>>;

        /// Crash statistics and records (newest first) of one app.
        fn get_crashes(&self, target: &str) -> zbus::Result<(CrashStats, Vec<CrashRecord>)>;

        /// Empties the log files (current and rotated) of the matching apps; returns their names.
        fn flush_logs(&self, target: &str) -> zbus::Result<Vec<String>>;

        /// Writes the app list to the dump file (`turbo resurrect` reads it back); returns its path.
        fn save(&self) -> zbus::Result<String>;

        /// Starts the apps of the dump file that are not already managed; returns them.
        fn resurrect(&self) -> zbus::Result<Vec<AppStatus>>;

        /// Returns once every app matching `target` is ready (online and, with a health check,
        /// healthy since its start); fails with the reason (the last health-check error) when
        /// one crashes, errors or stops first, or after `timeout_ms`.
        fn wait_ready(&self, target: &str, timeout_ms: u64) -> zbus::Result<Vec<AppStatus>>;

        /// What the kernel saw the apps matching `target` (name, id or `all`) do: run-queue
        /// delay, involuntary switches, execs (eBPF only; otherwise each says why not).
        fn get_insight(&self, target: &str) -> zbus::Result<Vec<AppInsight>>;

        /// Emitted for every exec inside an app's process tree (eBPF only); `allowed` is false
        /// when the app's `exec_allow` list does not allow the program.
        #[zbus(signal)]
        fn app_exec(&self, name: &str, pid: u32, filename: &str, allowed: bool)
        -> zbus::Result<()>;

        /// Emitted when an app's resident memory crosses its warning level (once per crossing).
        #[zbus(signal)]
        fn memory_warning(
            &self,
            name: &str,
            rss_bytes: u64,
            max_memory_bytes: u64,
        ) -> zbus::Result<()>;

        /// Emitted for every crash, once its record is complete (stderr tail included).
        /// Emitted for every event `turbo events` lists (see [`KernelEvent`]).
        #[zbus(signal)]
        fn app_event(&self, name: &str, event: KernelEvent) -> zbus::Result<()>;

        #[zbus(signal)]
        fn app_crashed(&self, name: &str, crash: CrashRecord) -> zbus::Result<()>;

        /// Emitted on every state change of an app.
        #[zbus(signal)]
        fn app_state_changed(&self, name: &str, state: &str, pid: u32) -> zbus::Result<()>;
    }
}
