//! The app spec as the state file stores it ([`SavedSpec`] and the policies in it), and its
//! conversions from and to [`AppSpec`].
//!
//! These mirror the spec's types field for field, with the names and spelling the file has
//! always had (durations in integer milliseconds), so the spec can change without changing what
//! old files mean. Every conversion destructures without `..` (`mirror!`): a field added to
//! the spec does not compile until the schema decides how it is stored (a new key with a
//! `serde(default)` keeps old files loading; anything else bumps `SCHEMA_VERSION`). A missing
//! key means the spec's default. Pure: no I/O, no rules.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::spec::{
    AlertSpec, AlertTo, AppKind, AppSpec, Autorestart, Compression, Condition, Dependency,
    HealthProbe, HealthSpec, HookSpec, Hooks, Lifecycle, LogFormat, LogPolicy, MemoryEnforce,
    MemoryPolicy, Overlap, Privileges, ProcessLimits, Readiness, ReadyMode, Resources,
    RestartPolicy, Rlimit, RotatePeriod, RunAs, Schedule, ScheduleAction, WatchSpec,
};

/// A spec value and its form in the file.
trait Stored: Sized {
    /// The file's type.
    type Saved;
    fn save(&self) -> Self::Saved;
    fn load(saved: Self::Saved) -> Self;
}

/// Values the file stores as they are.
macro_rules! as_is {
    ($($t:ty),+ $(,)?) => {
        $(impl Stored for $t {
            type Saved = Self;
            fn save(&self) -> Self {
                self.clone()
            }
            fn load(saved: Self) -> Self {
                saved
            }
        })+
    };
}

as_is!(
    bool,
    String,
    PathBuf,
    u8,
    u32,
    i32,
    u64,
    f64,
    (u16, u16),
    Vec<String>,
    Vec<PathBuf>,
    Vec<i32>,
    Vec<(String, String)>,
    Vec<(String, u32)>,
);

/// Durations: integer milliseconds.
impl Stored for Duration {
    type Saved = u64;
    fn save(&self) -> u64 {
        u64::try_from(self.as_millis()).unwrap_or(u64::MAX)
    }
    fn load(saved: u64) -> Self {
        Self::from_millis(saved)
    }
}

impl<T: Stored> Stored for Option<T> {
    type Saved = Option<T::Saved>;
    fn save(&self) -> Self::Saved {
        self.as_ref().map(T::save)
    }
    fn load(saved: Self::Saved) -> Self {
        saved.map(T::load)
    }
}

impl<T: Stored> Stored for Box<T> {
    type Saved = T::Saved;
    fn save(&self) -> T::Saved {
        T::save(self)
    }
    fn load(saved: T::Saved) -> Self {
        Self::new(T::load(saved))
    }
}

/// A spec struct and its file struct of the same field names, converted field by field; the
/// file struct's default (a missing key) is the spec's.
macro_rules! mirror {
    ($spec:ident => $saved:ident { $($f:ident),+ $(,)? }) => {
        mirror!(@convert $spec => $saved { $($f),+ });

        impl Default for $saved {
            fn default() -> Self {
                $spec::default().save()
            }
        }
    };
    (@convert $spec:ident => $saved:ident { $($f:ident),+ $(,)? }) => {
        impl Stored for $spec {
            type Saved = $saved;
            fn save(&self) -> $saved {
                let Self { $($f),+ } = self;
                $saved { $($f: $f.save()),+ }
            }
            fn load(saved: $saved) -> Self {
                let $saved { $($f),+ } = saved;
                Self { $($f: Stored::load($f)),+ }
            }
        }
    };
}

/// A spec enum of unit variants as the file spells it (exhaustive matches: a new variant of
/// the spec does not compile until it is added here).
macro_rules! saved_enum {
    ($(#[$doc:meta])* $spec:ident => $saved:ident, $case:literal, { $($v:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = $case)]
        pub enum $saved {
            $($v),+
        }

        impl Stored for $spec {
            type Saved = $saved;
            fn save(&self) -> $saved {
                match self {
                    $(Self::$v => $saved::$v),+
                }
            }
            fn load(saved: $saved) -> Self {
                match saved {
                    $($saved::$v => Self::$v),+
                }
            }
        }
    };
}

saved_enum!(
    /// [`Autorestart`].
    Autorestart => SavedAutorestart, "kebab-case", { Always, OnFailure, Never }
);
saved_enum!(
    /// [`LogFormat`].
    LogFormat => SavedLogFormat, "lowercase", { Text, Json }
);
saved_enum!(
    /// [`Compression`].
    Compression => SavedCompression, "lowercase", { None, Gzip, Zstd }
);
saved_enum!(
    /// [`RotatePeriod`].
    RotatePeriod => SavedRotate, "lowercase", { Hourly, Daily }
);
saved_enum!(
    /// [`MemoryEnforce`].
    MemoryEnforce => SavedMemoryEnforce, "snake_case", { Restart, Cgroup }
);
saved_enum!(
    /// [`ReadyMode`].
    ReadyMode => SavedReadyMode, "lowercase", { Spawn, Notify }
);

impl From<&AppSpec> for SavedSpec {
    fn from(spec: &AppSpec) -> Self {
        spec.save()
    }
}

impl From<SavedSpec> for AppSpec {
    fn from(saved: SavedSpec) -> Self {
        Self::load(saved)
    }
}

/// [`AppSpec`]; durations in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedSpec {
    pub name: String,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub autorestart: SavedAutorestart,
    #[serde(default)]
    pub restart: SavedRestart,
    #[serde(default)]
    pub stop_exit_codes: Vec<i32>,
    pub stop_signal: i32,
    pub kill_timeout: u64,
    #[serde(default)]
    pub log: SavedLog,
    #[serde(default)]
    pub memory: SavedMemory,
    /// Left out without limits: files stay as they were before cgroup limits.
    #[serde(default, skip_serializing_if = "SavedResources::is_unset")]
    pub resources: SavedResources,
    #[serde(default)]
    pub privileges: SavedPrivileges,
    /// Files from before instances have none: 1.
    #[serde(default = "one")]
    pub instances: u32,
    #[serde(default)]
    pub listen: Vec<String>,
    #[serde(default)]
    pub watch: Option<SavedWatch>,
    #[serde(default)]
    pub health: Option<SavedHealth>,
    #[serde(default)]
    pub readiness: SavedReadiness,
    /// Files from before `turbo apply` have none: started.
    #[serde(default = "yes")]
    pub autostart: bool,
    #[serde(default)]
    pub source: Option<String>,
    /// Files from before jobs and dependencies have none: a service with no dependencies.
    #[serde(default)]
    pub lifecycle: SavedLifecycle,
    /// Left out when empty: files without a list read the same as before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec_allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload_signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_crash: Option<SavedAlert>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_state: Option<SavedAlert>,
    #[serde(default, skip_serializing_if = "SavedHooks::is_unset")]
    pub hooks: SavedHooks,
}

/// [`Hooks`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedHooks {
    pub pre_start: Option<SavedHook>,
    pub post_start: Option<SavedHook>,
    pub pre_stop: Option<SavedHook>,
    pub post_stop: Option<SavedHook>,
}

mirror!(Hooks => SavedHooks { pre_start, post_start, pre_stop, post_stop });

impl SavedHooks {
    /// No hook at all: the key is left out of the file.
    fn is_unset(&self) -> bool {
        *self == Self::default()
    }
}

/// [`HookSpec`]; the timeout in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedHook {
    pub argv: Vec<String>,
    pub timeout: u64,
}

mirror!(@convert HookSpec => SavedHook { argv, timeout });

/// [`AlertSpec`]; durations in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedAlert {
    pub to: SavedAlertTo,
    pub timeout: u64,
    pub retries: u32,
    pub rate_limit: u32,
    pub rate_window: u64,
}

mirror!(@convert AlertSpec => SavedAlert { to, timeout, retries, rate_limit, rate_window });

/// [`AlertTo`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SavedAlertTo {
    Command(Vec<String>),
    Webhook(String),
}

impl Stored for AlertTo {
    type Saved = SavedAlertTo;
    fn save(&self) -> SavedAlertTo {
        match self.clone() {
            Self::Command(argv) => SavedAlertTo::Command(argv),
            Self::Webhook(url) => SavedAlertTo::Webhook(url),
        }
    }
    fn load(saved: SavedAlertTo) -> Self {
        match saved {
            SavedAlertTo::Command(argv) => Self::Command(argv),
            SavedAlertTo::Webhook(url) => Self::Webhook(url),
        }
    }
}

const fn one() -> u32 {
    1
}

const fn yes() -> bool {
    true
}

// no `Default`: a spec needs a name and a command
mirror!(@convert AppSpec => SavedSpec {
    name, argv, cwd, env, autorestart, restart, stop_exit_codes, stop_signal, kill_timeout, log,
    memory, resources, privileges, instances, listen, watch, health, readiness, autostart,
    source, lifecycle, exec_allow, app_group, reload_signal, on_crash, on_state, hooks,
});

saved_enum!(
    /// [`AppKind`].
    AppKind => SavedKind, "lowercase", { Service, Oneshot }
);
saved_enum!(
    /// [`Condition`].
    Condition => SavedCondition, "lowercase", { Started, Ready, Completed }
);
saved_enum!(
    /// [`ScheduleAction`].
    ScheduleAction => SavedAction, "lowercase", { Restart, Run }
);
saved_enum!(
    /// [`Overlap`].
    Overlap => SavedOverlap, "lowercase", { Skip, Queue, Replace }
);

/// [`Lifecycle`]; durations in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedLifecycle {
    pub kind: SavedKind,
    pub retries: u32,
    pub depends_on: Vec<SavedDependency>,
    pub depends_timeout: u64,
    pub restart_with_deps: bool,
    pub cron: Option<SavedSchedule>,
}

mirror!(Lifecycle => SavedLifecycle {
    kind, retries, depends_on, depends_timeout, restart_with_deps, cron,
});

/// [`Dependency`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedDependency {
    pub name: String,
    pub condition: SavedCondition,
}

mirror!(@convert Dependency => SavedDependency { name, condition });

impl Stored for Vec<Dependency> {
    type Saved = Vec<SavedDependency>;
    fn save(&self) -> Self::Saved {
        self.iter().map(Stored::save).collect()
    }
    fn load(saved: Self::Saved) -> Self {
        saved.into_iter().map(Stored::load).collect()
    }
}

/// [`Schedule`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSchedule {
    pub expr: String,
    pub action: SavedAction,
    pub overlap: SavedOverlap,
    pub timezone: Option<String>,
}

mirror!(@convert Schedule => SavedSchedule { expr, action, overlap, timezone });

/// [`RestartPolicy`]; durations in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedRestart {
    pub delay: u64,
    pub factor: f64,
    pub max_delay: u64,
    pub reset_after: u64,
    pub crash_loop_max: u32,
    pub crash_loop_window: u64,
    pub max_restarts: u32,
}

mirror!(RestartPolicy => SavedRestart {
    delay, factor, max_delay, reset_after, crash_loop_max, crash_loop_window, max_restarts,
});

/// [`LogPolicy`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedLog {
    pub format: SavedLogFormat,
    pub max_size: u64,
    pub keep: u32,
    pub compress: SavedCompression,
    pub rotate: Option<SavedRotate>,
    /// Milliseconds.
    pub max_age: Option<u64>,
    pub file: bool,
    pub out: Option<PathBuf>,
    pub err: Option<PathBuf>,
    pub journald: Option<PathBuf>,
    pub syslog: Option<String>,
    pub err_priority: u8,
    pub per_instance: bool,
}

mirror!(LogPolicy => SavedLog {
    format, max_size, keep, compress, rotate, max_age, file, out, err, journald, syslog,
    err_priority, per_instance,
});

/// [`MemoryPolicy`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedMemory {
    pub max: Option<u64>,
    pub warning_percent: u8,
    pub enforce: SavedMemoryEnforce,
}

mirror!(MemoryPolicy => SavedMemory { max, warning_percent, enforce });

/// [`Resources`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedResources {
    pub cpu_max: Option<u32>,
    pub cpu_weight: Option<u32>,
    pub io_weight: Option<u32>,
    pub pids_max: Option<u64>,
    pub memory_high: Option<u64>,
    /// `limits_required: false` (absent in files written before it existed).
    pub best_effort: bool,
}

mirror!(Resources => SavedResources { cpu_max, cpu_weight, io_weight, pids_max, memory_high, best_effort });

impl SavedResources {
    fn is_unset(&self) -> bool {
        *self == Self::default()
    }
}

/// [`Privileges`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedPrivileges {
    pub run_as: Option<SavedRunAs>,
    pub limits: SavedLimits,
}

mirror!(Privileges => SavedPrivileges { run_as, limits });

/// [`RunAs`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRunAs {
    pub user: String,
    pub uid: u32,
    pub group: String,
    pub gid: u32,
    pub groups: Vec<(String, u32)>,
    pub home: String,
    pub shell: String,
}

mirror!(@convert RunAs => SavedRunAs { user, uid, group, gid, groups, home, shell });

/// [`ProcessLimits`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedLimits {
    pub umask: Option<u32>,
    pub nofile: Option<SavedRlimit>,
    pub nproc: Option<SavedRlimit>,
    pub core: Option<SavedRlimit>,
    pub nice: Option<i32>,
    pub oom_score_adj: Option<i32>,
}

mirror!(ProcessLimits => SavedLimits { umask, nofile, nproc, core, nice, oom_score_adj });

/// [`Rlimit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRlimit {
    pub soft: u64,
    pub hard: u64,
}

mirror!(@convert Rlimit => SavedRlimit { soft, hard });

/// [`WatchSpec`]; the delay in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedWatch {
    pub paths: Vec<PathBuf>,
    pub ignore: Vec<String>,
    pub delay: u64,
}

mirror!(@convert WatchSpec => SavedWatch { paths, ignore, delay });

/// [`HealthSpec`]; durations in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedHealth {
    pub probe: SavedProbe,
    pub interval: u64,
    pub timeout: u64,
    pub retries: u32,
    pub retry_delay: u64,
    /// Files from before it have none: 0.
    #[serde(default)]
    pub start_period: u64,
}

mirror!(@convert HealthSpec => SavedHealth {
    probe, interval, timeout, retries, retry_delay, start_period,
});

/// [`HealthProbe`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SavedProbe {
    Http { url: String, status: (u16, u16) },
    Tcp { addr: String },
    Cmd { argv: Vec<String> },
}

impl Stored for HealthProbe {
    type Saved = SavedProbe;
    fn save(&self) -> SavedProbe {
        match self.clone() {
            Self::Http { url, status } => SavedProbe::Http { url, status },
            Self::Tcp { addr } => SavedProbe::Tcp { addr },
            Self::Cmd { argv } => SavedProbe::Cmd { argv },
        }
    }
    fn load(saved: SavedProbe) -> Self {
        match saved {
            SavedProbe::Http { url, status } => Self::Http { url, status },
            SavedProbe::Tcp { addr } => Self::Tcp { addr },
            SavedProbe::Cmd { argv } => Self::Cmd { argv },
        }
    }
}

/// [`Readiness`]; the timeout in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedReadiness {
    pub mode: SavedReadyMode,
    pub timeout: u64,
    pub watchdog_ms: Option<u64>,
}

mirror!(Readiness => SavedReadiness { mode, timeout, watchdog_ms });

#[cfg(test)]
mod tests {
    use super::*;

    /// Every optional field set and every default changed: the file form loses nothing.
    fn full() -> AppSpec {
        let mut spec = AppSpec::new("api", vec!["/usr/bin/node".into()], "/srv/api".into());
        spec.env = vec![("PORT".into(), "3000".into())];
        spec.autorestart = Autorestart::OnFailure;
        spec.restart = RestartPolicy {
            delay: Duration::from_millis(250),
            factor: 1.5,
            max_delay: Duration::from_secs(9),
            reset_after: Duration::from_secs(11),
            crash_loop_max: 3,
            crash_loop_window: Duration::from_secs(20),
            max_restarts: 7,
        };
        spec.stop_exit_codes = vec![0, 143];
        spec.stop_signal = 2;
        spec.kill_timeout = Duration::from_millis(2500);
        spec.log = LogPolicy {
            format: LogFormat::Json,
            max_size: 4096,
            keep: 2,
            compress: Compression::Zstd,
            rotate: Some(RotatePeriod::Hourly),
            max_age: Some(Duration::from_secs(7 * 86_400)),
            file: false,
            out: Some("/var/log/api/all.log".into()),
            err: Some("/var/log/api/all.log".into()),
            journald: Some("/run/j.sock".into()),
            syslog: Some("udp://127.0.0.1:5514".into()),
            err_priority: 3,
            per_instance: true,
        };
        spec.memory = MemoryPolicy {
            max: Some(256 << 20),
            warning_percent: 90,
            enforce: MemoryEnforce::Cgroup,
        };
        spec.resources = Resources {
            cpu_max: Some(150),
            cpu_weight: Some(50),
            io_weight: Some(200),
            pids_max: Some(64),
            memory_high: Some(128 << 20),
            best_effort: true,
        };
        let limit = |soft| {
            Some(Rlimit {
                soft,
                hard: Rlimit::UNLIMITED,
            })
        };
        *spec.privileges = Privileges {
            run_as: Some(RunAs {
                user: "app".into(),
                uid: 1001,
                group: "web".into(),
                gid: 1002,
                groups: vec![("audio".into(), 29)],
                home: "/home/app".into(),
                shell: "/bin/sh".into(),
            }),
            limits: ProcessLimits {
                umask: Some(0o027),
                nofile: limit(1024),
                nproc: limit(64),
                core: limit(0),
                nice: Some(5),
                oom_score_adj: Some(-100),
            },
        };
        spec.instances = 4;
        spec.listen = vec!["127.0.0.1:3000".into()];
        spec.watch = Some(WatchSpec {
            paths: vec!["/srv/api/src".into()],
            ignore: vec!["*.tmp".into()],
            delay: Duration::from_millis(300),
        });
        spec.health = Some(HealthSpec {
            start_period: Duration::from_secs(3),
            ..HealthSpec::new(HealthProbe::Http {
                url: "http://127.0.0.1:3000/health".into(),
                status: (200, 299),
            })
        });
        spec.readiness = Readiness {
            mode: ReadyMode::Notify,
            timeout: Duration::from_secs(15),
            watchdog_ms: Some(5000),
        };
        spec.autostart = false;
        spec.source = Some("/srv/api/turbo.yml".into());
        spec.exec_allow = vec!["/usr/bin/node".into(), "/usr/lib/node_modules/**".into()];
        spec
    }

    #[test]
    fn a_spec_round_trips_through_the_file_form() {
        let spec = full();
        assert_ne!(
            spec,
            AppSpec::new("api", spec.argv.clone(), spec.cwd.clone())
        );
        let json = serde_json::to_string(&SavedSpec::from(&spec)).unwrap();
        let back: SavedSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(AppSpec::from(back), spec);
        for probe in [
            HealthProbe::Tcp {
                addr: "127.0.0.1:1".into(),
            },
            HealthProbe::Cmd {
                argv: vec!["/bin/true".into()],
            },
        ] {
            let mut spec = full();
            spec.health = Some(HealthSpec::new(probe));
            let json = serde_json::to_string(&SavedSpec::from(&spec)).unwrap();
            let back: SavedSpec = serde_json::from_str(&json).unwrap();
            assert_eq!(AppSpec::from(back), spec);
        }
    }

    /// A missing key means the spec's default, as when the file was written.
    #[test]
    fn missing_keys_are_the_specs_defaults() {
        let minimal = r#"{"name":"a","argv":["/bin/true"],"cwd":"/","env":[],
            "autorestart":"always","stop_signal":15,"kill_timeout":5000,
            "health":{"probe":{"tcp":{"addr":"h:1"}},"interval":10000,"timeout":5000,
                      "retries":3,"retry_delay":2000}}"#;
        let spec = AppSpec::from(serde_json::from_str::<SavedSpec>(minimal).unwrap());
        let mut expected = AppSpec::new("a", vec!["/bin/true".into()], "/".into());
        expected.health = Some(HealthSpec::new(HealthProbe::Tcp { addr: "h:1".into() }));
        assert_eq!(spec, expected);
    }
}
