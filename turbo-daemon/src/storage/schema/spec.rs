//! The app spec as the state file stores it ([`SavedSpec`] and the policies in it), and its
//! conversions from and to [`AppSpec`].
//!
//! These mirror the spec's types field for field, spelled as the file has always spelled them
//! (durations in integer milliseconds), so the spec can change without changing what old files
//! mean. Every conversion destructures without `..`: a field added to the spec does not compile
//! until the schema decides how it is stored (a new optional key with a `serde(default)` keeps
//! old files loading; anything else bumps `SCHEMA_VERSION`). Pure: no I/O, no rules.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::spec::{
    AppSpec, Autorestart, HealthProbe, HealthSpec, LogFormat, LogPolicy, MemoryEnforce,
    MemoryPolicy, Privileges, ProcessLimits, Readiness, ReadyMode, RestartPolicy, Rlimit, RunAs,
    WatchSpec,
};

/// A spec enum of unit variants as the file spells it, with both conversions (exhaustive
/// matches: a new variant of the spec does not compile until it is added here).
macro_rules! saved_enum {
    ($(#[$doc:meta])* $saved:ident <=> $spec:ident, $case:literal, { $($v:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = $case)]
        pub enum $saved {
            $($v),+
        }

        impl From<$spec> for $saved {
            fn from(v: $spec) -> Self {
                match v {
                    $($spec::$v => Self::$v),+
                }
            }
        }

        impl From<$saved> for $spec {
            fn from(v: $saved) -> Self {
                match v {
                    $($saved::$v => Self::$v),+
                }
            }
        }
    };
}

/// A spec type whose file default is the spec's default, so a missing key means what it
/// meant when it was written.
macro_rules! default_from_spec {
    ($($saved:ident <= $spec:ident),+ $(,)?) => {
        $(impl Default for $saved {
            fn default() -> Self {
                Self::from(&$spec::default())
            }
        })+
    };
}

saved_enum!(
    /// [`Autorestart`].
    SavedAutorestart <=> Autorestart, "kebab-case", { Always, OnFailure, Never }
);
saved_enum!(
    /// [`LogFormat`].
    SavedLogFormat <=> LogFormat, "lowercase", { Text, Json }
);
saved_enum!(
    /// [`MemoryEnforce`].
    SavedMemoryEnforce <=> MemoryEnforce, "snake_case", { Restart, Cgroup }
);
saved_enum!(
    /// [`ReadyMode`].
    SavedReadyMode <=> ReadyMode, "lowercase", { Spawn, Notify }
);

default_from_spec!(
    SavedRestart <= RestartPolicy,
    SavedLog <= LogPolicy,
    SavedMemory <= MemoryPolicy,
    SavedPrivileges <= Privileges,
    SavedLimits <= ProcessLimits,
    SavedReadiness <= Readiness,
);

/// [`AppSpec`].
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
    #[serde(rename = "kill_timeout")]
    pub kill_timeout_ms: u64,
    #[serde(default)]
    pub log: SavedLog,
    #[serde(default)]
    pub memory: SavedMemory,
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
}

const fn one() -> u32 {
    1
}

/// [`RestartPolicy`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedRestart {
    #[serde(rename = "delay")]
    pub delay_ms: u64,
    pub factor: f64,
    #[serde(rename = "max_delay")]
    pub max_delay_ms: u64,
    #[serde(rename = "reset_after")]
    pub reset_after_ms: u64,
    pub crash_loop_max: u32,
    #[serde(rename = "crash_loop_window")]
    pub crash_loop_window_ms: u64,
    pub max_restarts: u32,
}

/// [`LogPolicy`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedLog {
    pub format: SavedLogFormat,
    pub max_size: u64,
    pub keep: u32,
}

/// [`MemoryPolicy`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedMemory {
    pub max: Option<u64>,
    pub warning_percent: u8,
    pub enforce: SavedMemoryEnforce,
}

/// [`Privileges`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedPrivileges {
    pub run_as: Option<SavedRunAs>,
    pub limits: SavedLimits,
}

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

/// [`Rlimit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRlimit {
    pub soft: u64,
    pub hard: u64,
}

/// [`WatchSpec`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedWatch {
    pub paths: Vec<PathBuf>,
    pub ignore: Vec<String>,
    #[serde(rename = "delay")]
    pub delay_ms: u64,
}

/// [`HealthSpec`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedHealth {
    pub probe: SavedProbe,
    #[serde(rename = "interval")]
    pub interval_ms: u64,
    #[serde(rename = "timeout")]
    pub timeout_ms: u64,
    pub retries: u32,
    #[serde(rename = "retry_delay")]
    pub retry_delay_ms: u64,
    /// Files from before it have none: 0.
    #[serde(rename = "start_period", default)]
    pub start_period_ms: u64,
}

/// [`HealthProbe`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SavedProbe {
    Http { url: String, status: (u16, u16) },
    Tcp { addr: String },
    Cmd { argv: Vec<String> },
}

/// [`Readiness`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedReadiness {
    pub mode: SavedReadyMode,
    #[serde(rename = "timeout")]
    pub timeout_ms: u64,
    pub watchdog_ms: Option<u64>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<&AppSpec> for SavedSpec {
    fn from(spec: &AppSpec) -> Self {
        let AppSpec {
            name,
            argv,
            cwd,
            env,
            autorestart,
            restart,
            stop_exit_codes,
            stop_signal,
            kill_timeout,
            log,
            memory,
            privileges,
            instances,
            listen,
            watch,
            health,
            readiness,
        } = spec;
        Self {
            name: name.clone(),
            argv: argv.clone(),
            cwd: cwd.clone(),
            env: env.clone(),
            autorestart: (*autorestart).into(),
            restart: restart.into(),
            stop_exit_codes: stop_exit_codes.clone(),
            stop_signal: *stop_signal,
            kill_timeout_ms: ms(*kill_timeout),
            log: log.into(),
            memory: memory.into(),
            privileges: privileges.as_ref().into(),
            instances: *instances,
            listen: listen.clone(),
            watch: watch.as_ref().map(Into::into),
            health: health.as_ref().map(Into::into),
            readiness: readiness.into(),
        }
    }
}

impl From<SavedSpec> for AppSpec {
    fn from(saved: SavedSpec) -> Self {
        let SavedSpec {
            name,
            argv,
            cwd,
            env,
            autorestart,
            restart,
            stop_exit_codes,
            stop_signal,
            kill_timeout_ms,
            log,
            memory,
            privileges,
            instances,
            listen,
            watch,
            health,
            readiness,
        } = saved;
        Self {
            name,
            argv,
            cwd,
            env,
            autorestart: autorestart.into(),
            restart: restart.into(),
            stop_exit_codes,
            stop_signal,
            kill_timeout: Duration::from_millis(kill_timeout_ms),
            log: log.into(),
            memory: memory.into(),
            privileges: Box::new(privileges.into()),
            instances,
            listen,
            watch: watch.map(Into::into),
            health: health.map(Into::into),
            readiness: readiness.into(),
        }
    }
}

impl From<&RestartPolicy> for SavedRestart {
    fn from(p: &RestartPolicy) -> Self {
        let RestartPolicy {
            delay,
            factor,
            max_delay,
            reset_after,
            crash_loop_max,
            crash_loop_window,
            max_restarts,
        } = p;
        Self {
            delay_ms: ms(*delay),
            factor: *factor,
            max_delay_ms: ms(*max_delay),
            reset_after_ms: ms(*reset_after),
            crash_loop_max: *crash_loop_max,
            crash_loop_window_ms: ms(*crash_loop_window),
            max_restarts: *max_restarts,
        }
    }
}

impl From<SavedRestart> for RestartPolicy {
    fn from(s: SavedRestart) -> Self {
        let SavedRestart {
            delay_ms,
            factor,
            max_delay_ms,
            reset_after_ms,
            crash_loop_max,
            crash_loop_window_ms,
            max_restarts,
        } = s;
        Self {
            delay: Duration::from_millis(delay_ms),
            factor,
            max_delay: Duration::from_millis(max_delay_ms),
            reset_after: Duration::from_millis(reset_after_ms),
            crash_loop_max,
            crash_loop_window: Duration::from_millis(crash_loop_window_ms),
            max_restarts,
        }
    }
}

impl From<&LogPolicy> for SavedLog {
    fn from(p: &LogPolicy) -> Self {
        let LogPolicy {
            format,
            max_size,
            keep,
        } = p;
        Self {
            format: (*format).into(),
            max_size: *max_size,
            keep: *keep,
        }
    }
}

impl From<SavedLog> for LogPolicy {
    fn from(s: SavedLog) -> Self {
        let SavedLog {
            format,
            max_size,
            keep,
        } = s;
        Self {
            format: format.into(),
            max_size,
            keep,
        }
    }
}

impl From<&MemoryPolicy> for SavedMemory {
    fn from(p: &MemoryPolicy) -> Self {
        let MemoryPolicy {
            max,
            warning_percent,
            enforce,
        } = p;
        Self {
            max: *max,
            warning_percent: *warning_percent,
            enforce: (*enforce).into(),
        }
    }
}

impl From<SavedMemory> for MemoryPolicy {
    fn from(s: SavedMemory) -> Self {
        let SavedMemory {
            max,
            warning_percent,
            enforce,
        } = s;
        Self {
            max,
            warning_percent,
            enforce: enforce.into(),
        }
    }
}

impl From<&Privileges> for SavedPrivileges {
    fn from(p: &Privileges) -> Self {
        let Privileges { run_as, limits } = p;
        Self {
            run_as: run_as.as_ref().map(Into::into),
            limits: limits.into(),
        }
    }
}

impl From<SavedPrivileges> for Privileges {
    fn from(s: SavedPrivileges) -> Self {
        let SavedPrivileges { run_as, limits } = s;
        Self {
            run_as: run_as.map(Into::into),
            limits: limits.into(),
        }
    }
}

impl From<&RunAs> for SavedRunAs {
    fn from(r: &RunAs) -> Self {
        let RunAs {
            user,
            uid,
            group,
            gid,
            groups,
            home,
            shell,
        } = r;
        Self {
            user: user.clone(),
            uid: *uid,
            group: group.clone(),
            gid: *gid,
            groups: groups.clone(),
            home: home.clone(),
            shell: shell.clone(),
        }
    }
}

impl From<SavedRunAs> for RunAs {
    fn from(s: SavedRunAs) -> Self {
        let SavedRunAs {
            user,
            uid,
            group,
            gid,
            groups,
            home,
            shell,
        } = s;
        Self {
            user,
            uid,
            group,
            gid,
            groups,
            home,
            shell,
        }
    }
}

impl From<&ProcessLimits> for SavedLimits {
    fn from(l: &ProcessLimits) -> Self {
        let ProcessLimits {
            umask,
            nofile,
            nproc,
            core,
            nice,
            oom_score_adj,
        } = l;
        Self {
            umask: *umask,
            nofile: nofile.map(Into::into),
            nproc: nproc.map(Into::into),
            core: core.map(Into::into),
            nice: *nice,
            oom_score_adj: *oom_score_adj,
        }
    }
}

impl From<SavedLimits> for ProcessLimits {
    fn from(s: SavedLimits) -> Self {
        let SavedLimits {
            umask,
            nofile,
            nproc,
            core,
            nice,
            oom_score_adj,
        } = s;
        Self {
            umask,
            nofile: nofile.map(Into::into),
            nproc: nproc.map(Into::into),
            core: core.map(Into::into),
            nice,
            oom_score_adj,
        }
    }
}

impl From<Rlimit> for SavedRlimit {
    fn from(r: Rlimit) -> Self {
        let Rlimit { soft, hard } = r;
        Self { soft, hard }
    }
}

impl From<SavedRlimit> for Rlimit {
    fn from(s: SavedRlimit) -> Self {
        let SavedRlimit { soft, hard } = s;
        Self { soft, hard }
    }
}

impl From<&WatchSpec> for SavedWatch {
    fn from(w: &WatchSpec) -> Self {
        let WatchSpec {
            paths,
            ignore,
            delay,
        } = w;
        Self {
            paths: paths.clone(),
            ignore: ignore.clone(),
            delay_ms: ms(*delay),
        }
    }
}

impl From<SavedWatch> for WatchSpec {
    fn from(s: SavedWatch) -> Self {
        let SavedWatch {
            paths,
            ignore,
            delay_ms,
        } = s;
        Self {
            paths,
            ignore,
            delay: Duration::from_millis(delay_ms),
        }
    }
}

impl From<&HealthSpec> for SavedHealth {
    fn from(h: &HealthSpec) -> Self {
        let HealthSpec {
            probe,
            interval,
            timeout,
            retries,
            retry_delay,
            start_period,
        } = h;
        Self {
            probe: probe.into(),
            interval_ms: ms(*interval),
            timeout_ms: ms(*timeout),
            retries: *retries,
            retry_delay_ms: ms(*retry_delay),
            start_period_ms: ms(*start_period),
        }
    }
}

impl From<SavedHealth> for HealthSpec {
    fn from(s: SavedHealth) -> Self {
        let SavedHealth {
            probe,
            interval_ms,
            timeout_ms,
            retries,
            retry_delay_ms,
            start_period_ms,
        } = s;
        Self {
            probe: probe.into(),
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(timeout_ms),
            retries,
            retry_delay: Duration::from_millis(retry_delay_ms),
            start_period: Duration::from_millis(start_period_ms),
        }
    }
}

impl From<&HealthProbe> for SavedProbe {
    fn from(p: &HealthProbe) -> Self {
        match p.clone() {
            HealthProbe::Http { url, status } => Self::Http { url, status },
            HealthProbe::Tcp { addr } => Self::Tcp { addr },
            HealthProbe::Cmd { argv } => Self::Cmd { argv },
        }
    }
}

impl From<SavedProbe> for HealthProbe {
    fn from(s: SavedProbe) -> Self {
        match s {
            SavedProbe::Http { url, status } => Self::Http { url, status },
            SavedProbe::Tcp { addr } => Self::Tcp { addr },
            SavedProbe::Cmd { argv } => Self::Cmd { argv },
        }
    }
}

impl From<&Readiness> for SavedReadiness {
    fn from(r: &Readiness) -> Self {
        let Readiness {
            mode,
            timeout,
            watchdog_ms,
        } = r;
        Self {
            mode: (*mode).into(),
            timeout_ms: ms(*timeout),
            watchdog_ms: *watchdog_ms,
        }
    }
}

impl From<SavedReadiness> for Readiness {
    fn from(s: SavedReadiness) -> Self {
        let SavedReadiness {
            mode,
            timeout_ms,
            watchdog_ms,
        } = s;
        Self {
            mode: mode.into(),
            timeout: Duration::from_millis(timeout_ms),
            watchdog_ms,
        }
    }
}

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
        };
        spec.memory = MemoryPolicy {
            max: Some(256 << 20),
            warning_percent: 90,
            enforce: MemoryEnforce::Cgroup,
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
