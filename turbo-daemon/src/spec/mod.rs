//! The validated description of an app ([`AppSpec`]): what to run, as whom, with which
//! environment, and the policies of its restarts, memory, logs, health checks, readiness and
//! watch mode.
//!
//! Pure data with its defaults and the few rules that only read it (the backoff delay, the
//! memory warning level, which watched paths count, the layers of an app's environment, the
//! bounds of a duration or a size). It imports nothing of the daemon: `config` builds specs from
//! text, `supervisor` decides with them, `runtime` carries them out and `storage` saves them,
//! and a test can build one by hand ([`AppSpec::new`], then set fields). Nothing here reads a
//! file, looks a user up, reads a clock or validates what a caller may ask for (`access` does).

/// `FromStr` for a key whose value is one of a few words; any other is refused with
/// `<key> '<value>' is not one of: <listed>`.
macro_rules! from_words {
    ($ty:ident, $key:literal, $listed:expr, { $($word:literal => $variant:ident),+ $(,)? }) => {
        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($word => Ok(Self::$variant),)+
                    other => Err(format!("{} '{other}' is not one of: {}", $key, $listed)),
                }
            }
        }
    };
}

mod alerts;
mod checks;
pub mod environment;
mod hooks;
mod jobs;
pub mod log;
mod memory;
mod privileges;
mod resources;
mod restart;
pub mod units;

use std::{path::PathBuf, time::Duration};

pub use self::{
    alerts::{AlertSpec, AlertTo},
    checks::{HealthProbe, HealthSpec, Readiness, ReadyMode, WatchSpec, glob_match},
    hooks::{HookKind, HookSpec, Hooks},
    jobs::{AppKind, Condition, Dependency, Lifecycle, Overlap, Schedule, ScheduleAction},
    log::{Compression, LogFormat, LogPolicy, RotatePeriod},
    memory::{MemoryEnforce, MemoryPolicy},
    privileges::{Privileges, ProcessLimits, Rlimit, RunAs, limit_text},
    resources::{Controller, Resources},
    restart::{Autorestart, RestartPolicy},
};

/// Signal numbers a spec and the supervisor name (Linux values).
pub mod signal {
    /// SIGKILL.
    pub const KILL: i32 = 9;
    /// SIGTERM.
    pub const TERM: i32 = 15;
    /// SIGHUP.
    pub const HUP: i32 = 1;
}

/// What to run and how, validated and resolved (absolute paths, interpreter chosen).
#[derive(Clone, Debug, PartialEq)]
pub struct AppSpec {
    /// Unique name.
    pub name: String,
    /// Program and arguments; `argv[0]` is an absolute path.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Restart policy.
    pub autorestart: Autorestart,
    /// Restart timing and limits.
    pub restart: RestartPolicy,
    /// Exit codes that mean "stopped on purpose": no restart, whatever `autorestart` says.
    pub stop_exit_codes: Vec<i32>,
    /// Signal that asks the app to stop.
    pub stop_signal: i32,
    /// How long to wait after `stop_signal` before SIGKILL to the whole group.
    pub kill_timeout: Duration,
    /// Log files.
    pub log: LogPolicy,
    /// Memory limit.
    pub memory: MemoryPolicy,
    /// cgroup limits (`cpu_max`, `cpu_weight`, `io_weight`, `pids_max`, `memory_high`).
    pub resources: Resources,
    /// Who the app runs as and under which limits (`user`, `group`, `groups`, `umask`,
    /// `rlimits`, `nice`, `oom_score_adj`). Boxed: `AppSpec` travels by value in supervisor
    /// actions, and the default (everything inherited from the daemon) is the common case.
    pub privileges: Box<Privileges>,
    /// How many instances run (`instances:`; `max` is resolved to the online CPUs when the
    /// config is read). Each is its own app of the supervisor, with the same name.
    pub instances: u32,
    /// Addresses the daemon listens on for the app and passes to every instance with the
    /// systemd socket-activation protocol (`listen:`), as written (`0.0.0.0:3000`).
    pub listen: Vec<String>,
    // ---- watch mode, health checks, readiness (issue #6 items 1-3): kept together ----
    /// Restart when watched files change (`watch`, `ignore_watch`, `watch_delay`).
    pub watch: Option<WatchSpec>,
    /// Health check (`health:`).
    pub health: Option<HealthSpec>,
    /// `ready`, `ready_timeout`, `watchdog`.
    pub readiness: Readiness,
    /// `autostart: false`: defined (listed, `stopped`) by a start of its file or an apply, but
    /// started only when asked by name (`turbo restart NAME`).
    pub autostart: bool,
    /// The absolute path of the `turbo.yml` the app came from (`turbo start FILE`, `turbo
    /// apply`); `None` for an app started from a command line.
    pub source: Option<String>,
    /// `type`, `retries`, `depends_on`, `depends_timeout`, `restart_with_deps`, `cron` (see
    /// `jobs.rs`).
    pub lifecycle: Lifecycle,
    // ---- groups and signals (issue 17 points 6-7) ----
    /// The group the app belongs to (`app_group:`), which commands name as `@group`.
    pub app_group: Option<String>,
    /// The signal `turbo reload` sends to the main process of an app without `listen:`
    /// (`reload_signal:`), instead of replacing its processes.
    pub reload_signal: Option<i32>,
    // ---- notifications (issue 17 point 5) ----
    /// `on_crash:`: told of every crash, once its record is complete.
    pub on_crash: Option<Box<AlertSpec>>,
    /// `on_state:`: told of every state change.
    pub on_state: Option<Box<AlertSpec>>,
    // ---- hooks (issue 17 point 4) ----
    /// `pre_start`, `post_start`, `pre_stop`, `post_stop` (boxed: usually all unset).
    pub hooks: Box<Hooks>,
}

impl AppSpec {
    /// A spec with the defaults for everything but the command.
    #[must_use]
    pub fn new(name: impl Into<String>, argv: Vec<String>, cwd: PathBuf) -> Self {
        Self {
            name: name.into(),
            argv,
            cwd,
            env: Vec::new(),
            autorestart: Autorestart::Always,
            restart: RestartPolicy::default(),
            stop_exit_codes: Vec::new(),
            stop_signal: signal::TERM,
            kill_timeout: Duration::from_secs(5),
            log: LogPolicy::default(),
            memory: MemoryPolicy::default(),
            resources: Resources::default(),
            privileges: Box::default(),
            instances: 1,
            listen: Vec::new(),
            watch: None,
            health: None,
            readiness: Readiness::default(),
            autostart: true,
            source: None,
            lifecycle: Lifecycle::default(),
            app_group: None,
            reload_signal: None,
            on_crash: None,
            on_state: None,
            hooks: Box::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spec needs no config: built by hand it has the documented defaults and its policies
    /// answer from it alone (the state file's form of it is `storage::schema::spec`'s).
    #[test]
    fn a_spec_is_built_by_hand() {
        let mut spec = AppSpec::new("web", vec!["/bin/sleep".into(), "5".into()], "/srv".into());
        assert_eq!(
            (
                spec.autorestart,
                spec.stop_signal,
                spec.kill_timeout,
                spec.instances
            ),
            (Autorestart::Always, signal::TERM, Duration::from_secs(5), 1)
        );
        assert_eq!(*spec.privileges, Privileges::default());
        assert_eq!(spec.restart.delay_for(1), Duration::from_secs(1));
        assert_eq!(spec.restart.delay_for(3), Duration::from_secs(4));
        assert_eq!(spec.restart.delay_for(10), spec.restart.max_delay);
        assert_eq!(spec.memory.warning(), None);
        spec.memory.max = Some(1000);
        assert_eq!(spec.memory.warning(), Some(800));
        spec.health = Some(HealthSpec::new(HealthProbe::Tcp {
            addr: "127.0.0.1:5432".into(),
        }));
        spec.readiness.mode = ReadyMode::Notify;
        spec.privileges.limits.nofile = Some(Rlimit {
            soft: 64,
            hard: Rlimit::UNLIMITED,
        });
    }

    #[test]
    fn choices_name_what_is_accepted() {
        assert_eq!("on-failure".parse(), Ok(Autorestart::OnFailure));
        assert_eq!(
            "sometimes".parse::<Autorestart>(),
            Err("autorestart 'sometimes' is not one of: always, on-failure, never".to_owned())
        );
        assert_eq!("cgroup".parse(), Ok(MemoryEnforce::Cgroup));
        assert!(
            "kernel"
                .parse::<MemoryEnforce>()
                .unwrap_err()
                .starts_with("memory_enforce 'kernel' is not one of: restart (")
        );
    }
}
