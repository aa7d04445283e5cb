//! Data that crosses the bus, and its JSON form (the `--json` contract of DESIGN.md §6).
//!
//! D-Bus has no optional values, so "absent" is a documented sentinel on the wire (`0`, `-1`,
//! empty string) and becomes `null` in JSON, in one place: [`AppStatus::to_json`].

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use zbus::zvariant::Type;

use crate::status_json::{ExitJson, StatusJson};

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire and JSON spelling.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} '{other}' (expected one of: {})",
                        stringify!($name),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

wire_enum! {
    /// Lifecycle state of an app instance.
    AppState {
        /// Spawned, not yet confirmed running.
        Starting => "starting",
        /// Running.
        Online => "online",
        /// Asked to stop, waiting for the process group to exit.
        Stopping => "stopping",
        /// Not running, and not going to run until asked.
        Stopped => "stopped",
        /// Exited; waiting for the restart delay before the next attempt.
        Backoff => "backoff",
        /// Gave up restarting (crash loop, too many restarts, or the command cannot start).
        Errored => "errored",
        /// A start waits for the app's dependencies (`depends_on`); `waiting_for` names them.
        Waiting => "waiting",
        /// A one-shot job (`type: oneshot`) exited 0.
        Completed => "completed",
        /// A one-shot job failed and has no retries left.
        Failed => "failed",
    }
}

wire_enum! {
    /// Why a process ended.
    ExitReason {
        /// Exited on its own with a status code.
        Exit => "exit",
        /// Killed by a signal nobody in TurboProcess asked for.
        Signal => "signal",
        /// Chosen by the kernel's OOM killer.
        OomKill => "oom_kill",
        /// Restarted by TurboProcess for crossing `max_memory`.
        MemoryLimit => "memory_limit",
        /// Restarted because its health check kept failing.
        Health => "health",
        /// Restarted because a watched file changed.
        Watch => "watch",
        /// Stopped or restarted on request.
        Manual => "manual",
        /// Never spawned: its `pre_start` hook failed.
        PreStart => "pre_start",
    }
}

wire_enum! {
    /// Result of the app's health check.
    Health {
        /// A check is configured but has no result yet.
        Unknown => "unknown",
        /// The last check passed.
        Healthy => "healthy",
        /// The check is failing.
        Unhealthy => "unhealthy",
        /// No health check is configured.
        None => "none",
    }
}

/// How a process ended. On the wire `code` is `-1` and `signal` `0` when they do not apply, and an
/// empty `reason` means "never exited".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Type)]
pub struct ExitInfo {
    /// Exit status (0–255), or -1 when killed by a signal.
    pub code: i32,
    /// Killing signal number, or 0.
    pub signal: i32,
    /// One of [`ExitReason`], or empty when there was no exit yet.
    pub reason: String,
    /// Unix time of the exit in milliseconds.
    pub at_ms: u64,
    /// Which event source reported the exit first: `ebpf` or `procfs`.
    pub source: String,
}

impl ExitInfo {
    /// `null`, or `{code, signal, reason, at, source}` with `at` in RFC 3339.
    #[must_use]
    pub fn to_json(&self) -> Json {
        serde_json::to_value(ExitJson::of(self)).unwrap_or(Json::Null)
    }
}

/// A snapshot of one app instance, as `ListApps` returns it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Type)]
pub struct AppStatus {
    /// Stable numeric id, unique per daemon state.
    pub id: u32,
    /// App name.
    pub name: String,
    /// Instance number (0 for single-instance apps).
    pub instance: u32,
    /// One of [`AppState`].
    pub state: String,
    /// Main process id, 0 when not running.
    pub pid: u32,
    /// Automatic restarts so far.
    pub restarts: u32,
    /// Milliseconds since the current process started, 0 when not running.
    pub uptime_ms: u64,
    /// CPU use of the app's whole process tree, in percent of one core, averaged over the
    /// daemon's CPU window; negative when unknown.
    pub cpu_percent: f64,
    /// Resident memory of the app's whole process tree in bytes, 0 when unknown or not running.
    pub memory_bytes: u64,
    /// Proportional set size of the tree in bytes (shared pages split between their users), 0
    /// when not measured (only `DescribeApp` reads it) or unreadable.
    pub memory_pss_bytes: u64,
    /// `max_memory` in bytes, 0 when none.
    pub memory_limit_bytes: u64,
    /// Whether the current process's memory grows in a sustained way (see docs/metrics.md).
    pub leak_suspected: bool,
    /// Robust growth rate of the tree's resident memory over the leak window, bytes per hour
    /// (negative when shrinking); [`AppStatus::GROWTH_UNKNOWN`] until enough was observed.
    pub memory_growth_bytes_per_hour: i64,
    /// One of [`Health`].
    pub health: String,
    /// Milliseconds until the next restart attempt while in `backoff`, else 0.
    pub next_restart_in_ms: u64,
    /// The command line that runs.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Log file of stdout.
    pub out_log: String,
    /// Log file of stderr.
    pub err_log: String,
    /// The last exit, if any.
    pub last_exit: ExitInfo,
    /// While `errored`: why (the start's error, the crash loop). Else the last `STATUS=` the app
    /// sent over `NOTIFY_SOCKET` (`ready: notify`), empty if none.
    pub status_text: String,
    /// While `waiting`: the dependencies not yet met, as `name (condition)`; else empty.
    pub waiting_for: Vec<String>,
    /// Unix time in milliseconds of the next run of its `cron:` schedule, 0 when none.
    pub next_run_ms: u64,
    // ---- from the app's cgroup (issue 22): 0 when it has none or the figure is unknown ----
    /// `cpu_max` in percent of one CPU, 0 when none.
    pub cpu_max_percent: u32,
    /// Time `cpu_max` held the app back since its cgroup was made, in milliseconds.
    pub cpu_throttled_ms: u64,
    /// Processes and threads in the app's cgroup, 0 when not counted.
    pub pids: u64,
    /// `pids_max`, 0 when none.
    pub pids_max: u64,
    /// `memory_high` in bytes, 0 when none.
    pub memory_high_bytes: u64,
    /// The app's group (`app_group:`, the `@group` target), empty if none.
    pub group: String,
}

impl AppStatus {
    /// `memory_growth_bytes_per_hour` on the wire when it is not known yet.
    pub const GROWTH_UNKNOWN: i64 = i64::MIN;

    /// The JSON object of the `turbo status --json` contract; absent values are `null`.
    #[must_use]
    pub fn to_json(&self) -> Json {
        // a struct of strings, numbers and lists always makes a Value
        serde_json::to_value(self.json()).unwrap_or(Json::Null)
    }

    /// The same object as [`AppStatus::to_json`], borrowed, to print without building a tree.
    #[must_use]
    pub fn json(&self) -> StatusJson<'_> {
        StatusJson::from(self)
    }
}

/// One row of the `turbo status` table, as `ListAppRows` returns it: the fields of
/// [`AppStatus`] the table and its `--sort` and target filters use, and no others. With 1,000
/// apps it is about a fifth of `ListApps`'s reply, which the bus copies and the CLI decodes
/// for every table (issue 21).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Type)]
pub struct AppRow {
    /// As [`AppStatus::id`].
    pub id: u32,
    /// As [`AppStatus::name`].
    pub name: String,
    /// As [`AppStatus::instance`].
    pub instance: u32,
    /// As [`AppStatus::group`].
    pub group: String,
    /// As [`AppStatus::state`].
    pub state: String,
    /// As [`AppStatus::pid`].
    pub pid: u32,
    /// As [`AppStatus::restarts`].
    pub restarts: u32,
    /// As [`AppStatus::uptime_ms`].
    pub uptime_ms: u64,
    /// As [`AppStatus::cpu_percent`].
    pub cpu_percent: f64,
    /// As [`AppStatus::memory_bytes`].
    pub memory_bytes: u64,
    /// As [`AppStatus::memory_limit_bytes`].
    pub memory_limit_bytes: u64,
    /// As [`AppStatus::health`].
    pub health: String,
    /// As [`AppStatus::next_restart_in_ms`].
    pub next_restart_in_ms: u64,
    /// As [`AppStatus::waiting_for`].
    pub waiting_for: Vec<String>,
    /// As [`AppStatus::last_exit`].
    pub last_exit: ExitInfo,
}

impl From<AppRow> for AppStatus {
    /// The status with the row's fields; every other field is its default (so a table drawn
    /// from rows or from full statuses is the same table).
    fn from(r: AppRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            instance: r.instance,
            group: r.group,
            state: r.state,
            pid: r.pid,
            restarts: r.restarts,
            uptime_ms: r.uptime_ms,
            cpu_percent: r.cpu_percent,
            memory_bytes: r.memory_bytes,
            memory_limit_bytes: r.memory_limit_bytes,
            health: r.health,
            next_restart_in_ms: r.next_restart_in_ms,
            waiting_for: r.waiting_for,
            last_exit: r.last_exit,
            ..Self::default()
        }
    }
}

/// One exit nobody asked for, as `turbo crashes` shows it. Sentinels as in [`ExitInfo`];
/// `signal_sender_pid` 0 means unknown, `memory_bytes` and `memory_peak_bytes` 0 mean not
/// measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Type)]
pub struct CrashRecord {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    /// Exit status, -1 when killed by a signal.
    pub code: i32,
    /// Killing signal, 0 if none.
    pub signal: i32,
    /// One of [`ExitReason`].
    pub reason: String,
    /// How long the process had run, in milliseconds.
    pub uptime_ms: u64,
    /// How many restarts the app had before this crash.
    pub restart_number: u32,
    /// Resident memory last seen before the exit, 0 if unknown.
    pub memory_bytes: u64,
    /// Pid of the process that sent the fatal signal, 0 if unknown.
    pub signal_sender_pid: u32,
    /// Command name of that process.
    pub signal_sender_comm: String,
    /// The last lines the process wrote to stderr.
    pub stderr_tail: Vec<String>,
    /// Which event source reported the exit.
    pub source: String,
    /// Why the daemon ended the process, when it did (the failing health check's message);
    /// empty otherwise.
    pub detail: String,
    /// Peak resident memory of the process over its life (the kernel's high-water mark), 0 if
    /// unknown. `memory_bytes` is the value at the end.
    pub memory_peak_bytes: u64,
}

impl CrashRecord {
    /// The JSON object of the `turbo crashes --json` contract.
    #[must_use]
    pub fn to_json(&self) -> Json {
        json!({
            "at": rfc3339_ms(self.at_ms),
            "code": (self.code >= 0).then_some(self.code),
            "signal": (self.signal > 0).then_some(self.signal),
            "reason": self.reason,
            "uptime_ms": self.uptime_ms,
            "restart_number": self.restart_number,
            "signal_sender": (self.signal_sender_pid > 0)
                .then(|| json!({"pid": self.signal_sender_pid, "comm": self.signal_sender_comm})),
            "memory_bytes": (self.memory_bytes > 0).then_some(self.memory_bytes),
            "memory_peak_bytes": (self.memory_peak_bytes > 0).then_some(self.memory_peak_bytes),
            "stderr_tail": self.stderr_tail,
            "source": self.source,
            "detail": (!self.detail.is_empty()).then_some(&self.detail),
        })
    }
}

/// Aggregates over an app's crashes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Type)]
pub struct CrashStats {
    /// Crashes since the app was created (not only the kept records).
    pub total: u32,
    /// Crashes in the last hour.
    pub last_hour: u32,
    /// Crashes in the last 24 hours.
    pub last_day: u32,
    /// Mean time between the kept crashes in milliseconds, 0 with fewer than two.
    pub mtbf_ms: u64,
    /// The most frequent reason among the kept records, empty if none.
    pub most_common_reason: String,
}

impl CrashStats {
    /// Computes the stats of `records` (any order) at `now_ms`; `total` counts every crash ever.
    #[must_use]
    pub fn compute(records: &[CrashRecord], total: u32, now_ms: u64) -> Self {
        let within = |ms: u64| {
            let n = records
                .iter()
                .filter(|r| now_ms.saturating_sub(r.at_ms) <= ms)
                .count();
            u32::try_from(n).unwrap_or(u32::MAX)
        };
        let (first, last) = records.iter().fold((u64::MAX, 0), |(lo, hi), r| {
            (lo.min(r.at_ms), hi.max(r.at_ms))
        });
        let mtbf_ms = if records.len() >= 2 {
            (last - first) / (records.len() as u64 - 1)
        } else {
            0
        };
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for r in records {
            match counts.iter_mut().find(|(reason, _)| *reason == r.reason) {
                Some((_, n)) => *n += 1,
                None => counts.push((&r.reason, 1)),
            }
        }
        // ties go to the reason seen first, so the answer does not depend on hashing
        let most_common_reason = counts
            .iter()
            .fold(None::<(&str, usize)>, |best, &(reason, n)| match best {
                Some((_, m)) if m >= n => best,
                _ => Some((reason, n)),
            })
            .map(|(r, _)| r.to_owned())
            .unwrap_or_default();
        Self {
            total,
            last_hour: within(3_600_000),
            last_day: within(86_400_000),
            mtbf_ms,
            most_common_reason,
        }
    }

    /// The JSON form.
    #[must_use]
    pub fn to_json(&self) -> Json {
        json!({
            "total": self.total,
            "last_hour": self.last_hour,
            "last_24h": self.last_day,
            "mtbf_ms": (self.mtbf_ms > 0).then_some(self.mtbf_ms),
            "most_common_reason": (!self.most_common_reason.is_empty()).then_some(&self.most_common_reason),
        })
    }
}

/// The configuration of an app as `turbo describe` shows it. Environment values are never sent,
/// only their names (they often hold secrets). The default has every privilege field
/// inherited from the daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct AppConfigInfo {
    /// `always`, `on-failure` or `never`.
    pub autorestart: String,
    /// First restart delay (ms).
    pub restart_delay_ms: u64,
    /// Backoff factor.
    pub restart_factor: f64,
    /// Backoff cap (ms).
    pub restart_max_delay_ms: u64,
    /// Stable uptime that resets the backoff (ms).
    pub restart_reset_after_ms: u64,
    /// Crashes within the window that mean a crash loop (0 = off).
    pub crash_loop_max: u32,
    /// Crash-loop window (ms).
    pub crash_loop_window_ms: u64,
    /// Automatic restarts allowed (0 = unlimited).
    pub max_restarts: u32,
    /// Exit codes that mean "stopped on purpose".
    pub stop_exit_codes: Vec<i32>,
    /// Stop signal number.
    pub stop_signal: i32,
    /// Grace period before SIGKILL (ms).
    pub kill_timeout_ms: u64,
    /// Names of the extra environment variables.
    pub env_names: Vec<String>,
    /// `text` or `json`.
    pub log_format: String,
    /// Rotation size in bytes.
    pub log_max_size: u64,
    /// Rotated files kept.
    pub log_keep: u32,
    /// `running` or `stopped`: what the daemon restores after a restart.
    pub desired: String,
    /// User the app runs as; empty: the daemon's own user.
    pub user: String,
    /// Its uid; meaningful only when `user` is not empty.
    pub uid: u32,
    /// Primary group; empty: the daemon's own group.
    pub group: String,
    /// Its gid; meaningful only when `group` is not empty.
    pub gid: u32,
    /// Supplementary groups as `(name, gid)`; meaningful only when `user` is not empty
    /// (otherwise the app has the daemon's groups).
    pub groups: Vec<(String, u32)>,
    /// umask as four octal digits (`0027`); empty: inherited from the daemon.
    pub umask: String,
    /// Resource limits set for the app, as `(name, soft, hard)` (`nofile`, `nproc`, `core`);
    /// [`AppConfigInfo::UNLIMITED`] means no limit. The others are inherited from the daemon.
    pub rlimits: Vec<(String, u64, u64)>,
    /// Niceness; [`AppConfigInfo::INHERITED`] when inherited from the daemon.
    pub nice: i32,
    /// `oom_score_adj`; [`AppConfigInfo::INHERITED`] when inherited from the daemon.
    pub oom_score_adj: i32,
    /// How many instances the app runs (`instances:`).
    pub instances: u32,
    /// Addresses the daemon listens on for it (`listen:`), passed to every instance.
    pub listen: Vec<String>,
    /// The health check in one line (`http http://127.0.0.1:3000/health (status 200-399)
    /// every 10s, ...`); empty without one.
    pub health_check: String,
    /// The message of the last failed health check; empty if none failed.
    pub health_last_error: String,
    /// Watched paths (watch mode); empty when off.
    pub watch_paths: Vec<String>,
    /// `ignore_watch` globs.
    pub watch_ignore: Vec<String>,
    /// Debounce delay of watch mode in ms, 0 when off.
    pub watch_delay_ms: u64,
    /// `spawn` or `notify`.
    pub ready: String,
    /// With `ready: notify`: how long the app has to send `READY=1`, in ms.
    pub ready_timeout_ms: u64,
    /// Watchdog period in ms, 0 without one.
    pub watchdog_ms: u64,
    /// Who acts at `max_memory`: `restart` (the daemon) or `cgroup` (the kernel); empty
    /// without `max_memory`.
    pub memory_enforce: String,
    /// The app's memory cgroup (`memory_enforce: cgroup`) as `v1 <dir>` or `v2 <dir>`; empty
    /// until the daemon made one.
    pub memory_cgroup: String,
    /// The cgroup limits set (`cpu_max`, `cpu_weight`, `io_weight`, `pids_max`,
    /// `memory_high`) as `(key, value as turbo.yml writes it)`.
    pub limits: Vec<(String, String)>,
    /// The app's cgroup directories, each as `v1 <dir>` or `v2 <dir>`; empty until the daemon
    /// made one (an app without limits has one only with the procfs event source).
    pub cgroups: Vec<String>,
    /// The absolute path of the `turbo.yml` the app came from (`turbo start FILE`, `turbo
    /// apply`); empty for an app started from a command line.
    pub source: String,
    /// `service` or `oneshot` (`type:`).
    pub kind: String,
    /// Further attempts of a failed one-shot job.
    pub retries: u32,
    /// `depends_on`, each as `name (condition)`.
    pub depends_on: Vec<String>,
    /// How long a start waits for its dependencies (ms).
    pub depends_timeout_ms: u64,
    /// Whether a restart of a dependency restarts the app too.
    pub restart_with_deps: bool,
    /// The `cron:` expression, empty without a schedule.
    pub cron: String,
    /// `restart` or `run`, empty without a schedule.
    pub cron_action: String,
    /// `skip`, `queue` or `replace`, empty without a schedule.
    pub cron_overlap: String,
    /// The zone the schedule is read in, empty for UTC.
    pub timezone: String,
}

/// One app's part of the plan of an apply (`ApplyConfig`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct AppChange {
    /// The app.
    pub name: String,
    /// What happens to it: `add`, `remove` (pruned), `keep` (not in the file, no prune),
    /// `unchanged`, `update` (live changes only, no restart), `restart`, or `reload` (rolling,
    /// one instance at a time, for apps that say when they are ready).
    pub action: String,
    /// The keys that changed, each with how it takes effect.
    pub fields: Vec<FieldChange>,
}

/// One changed key of an app in an apply plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct FieldChange {
    /// The key as turbo.yml spells it (`max_memory`, `cmd`, `health`, ...).
    pub field: String,
    /// `live` (the running app takes it over) or `restart` (a new process is needed).
    pub how: String,
}

impl Default for AppConfigInfo {
    fn default() -> Self {
        Self {
            autorestart: String::new(),
            restart_delay_ms: 0,
            restart_factor: 0.0,
            restart_max_delay_ms: 0,
            restart_reset_after_ms: 0,
            crash_loop_max: 0,
            crash_loop_window_ms: 0,
            max_restarts: 0,
            stop_exit_codes: Vec::new(),
            stop_signal: 0,
            kill_timeout_ms: 0,
            env_names: Vec::new(),
            log_format: String::new(),
            log_max_size: 0,
            log_keep: 0,
            desired: String::new(),
            user: String::new(),
            uid: 0,
            group: String::new(),
            gid: 0,
            groups: Vec::new(),
            umask: String::new(),
            rlimits: Vec::new(),
            nice: Self::INHERITED,
            oom_score_adj: Self::INHERITED,
            instances: 1,
            listen: Vec::new(),
            health_check: String::new(),
            health_last_error: String::new(),
            watch_paths: Vec::new(),
            watch_ignore: Vec::new(),
            watch_delay_ms: 0,
            ready: String::new(),
            ready_timeout_ms: 0,
            watchdog_ms: 0,
            memory_enforce: String::new(),
            memory_cgroup: String::new(),
            limits: Vec::new(),
            cgroups: Vec::new(),
            source: String::new(),
            kind: "service".into(),
            retries: 0,
            depends_on: Vec::new(),
            depends_timeout_ms: 0,
            restart_with_deps: false,
            cron: String::new(),
            cron_action: String::new(),
            cron_overlap: String::new(),
            timezone: String::new(),
        }
    }
}

impl AppConfigInfo {
    /// `nice` and `oom_score_adj` on the wire when the app inherits the daemon's.
    pub const INHERITED: i32 = i32::MIN;
    /// An rlimit without a limit (`RLIM_INFINITY`).
    pub const UNLIMITED: u64 = u64::MAX;

    /// The JSON form (durations in ms). The privilege fields use `null` for "inherited from
    /// the daemon", `"unlimited"` for no limit, and nest: `"groups": [{"name", "gid"}]`,
    /// `"rlimits": {"nofile": {"soft", "hard"}}`.
    #[must_use]
    pub fn to_json(&self) -> Json {
        let mut doc = serde_json::to_value(self).unwrap_or(Json::Null);
        let Some(map) = doc.as_object_mut() else {
            return doc;
        };
        let has_user = !self.user.is_empty();
        let limit = |v: u64| {
            if v == Self::UNLIMITED {
                json!("unlimited")
            } else {
                json!(v)
            }
        };
        let set = |v: i32| (v != Self::INHERITED).then_some(v);
        let fields = [
            ("user", json!(has_user.then_some(&self.user))),
            ("uid", json!(has_user.then_some(self.uid))),
            (
                "group",
                json!((!self.group.is_empty()).then_some(&self.group)),
            ),
            ("gid", json!((!self.group.is_empty()).then_some(self.gid))),
            (
                "groups",
                json!(has_user.then(|| {
                    self.groups
                        .iter()
                        .map(|(name, gid)| json!({"name": name, "gid": gid}))
                        .collect::<Vec<_>>()
                })),
            ),
            (
                "umask",
                json!((!self.umask.is_empty()).then_some(&self.umask)),
            ),
            (
                "rlimits",
                Json::Object(
                    self.rlimits
                        .iter()
                        .map(|(name, soft, hard)| {
                            (
                                name.clone(),
                                json!({"soft": limit(*soft), "hard": limit(*hard)}),
                            )
                        })
                        .collect(),
                ),
            ),
            ("nice", json!(set(self.nice))),
            ("oom_score_adj", json!(set(self.oom_score_adj))),
            (
                "memory_enforce",
                json!((!self.memory_enforce.is_empty()).then_some(&self.memory_enforce)),
            ),
            (
                "memory_cgroup",
                json!((!self.memory_cgroup.is_empty()).then_some(&self.memory_cgroup)),
            ),
            (
                "limits",
                Json::Object(
                    self.limits
                        .iter()
                        .map(|(k, v)| (k.clone(), json!(v)))
                        .collect(),
                ),
            ),
            (
                "source",
                json!((!self.source.is_empty()).then_some(&self.source)),
            ),
            (
                "cron",
                json!((!self.cron.is_empty()).then(|| json!({
                    "schedule": self.cron,
                    "action": self.cron_action,
                    "overlap": self.cron_overlap,
                    "timezone": (!self.timezone.is_empty()).then_some(&self.timezone),
                }))),
            ),
        ];
        for key in ["cron_action", "cron_overlap", "timezone"] {
            map.remove(key);
        }
        for (key, value) in fields {
            map.insert(key.to_owned(), value);
        }
        doc
    }
}

/// What `Info` returns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Type)]
pub struct DaemonInfo {
    /// Daemon version.
    pub version: String,
    /// Daemon process id.
    pub pid: u32,
    /// `user` or `system`.
    pub mode: String,
    /// Address clients use to reach the daemon.
    pub bus_address: String,
    /// Home directory (user mode) or `/var/lib/turbo` (system mode).
    pub home: String,
    /// Directory of the app log files.
    pub log_dir: String,
    /// The requested event source selection: `auto`, `require` or `off`.
    pub ebpf_setting: String,
    /// The active event source: `ebpf` or `procfs`.
    pub event_source: String,
    /// Why that source is active (for `procfs`: why eBPF is not).
    pub event_source_reason: String,
    /// eBPF programs loaded and attached.
    pub ebpf_programs: Vec<String>,
    /// What fell back to another mechanism and why (a program that did not load, memory
    /// limits sampled from /proc, ...).
    pub event_fallbacks: Vec<String>,
    /// Exit events received from eBPF.
    pub ebpf_exit_events: u64,
    /// Events lost between the kernel and the daemon.
    pub events_lost: u64,
    /// Daemon uptime in milliseconds.
    pub uptime_ms: u64,
    /// Number of apps managed.
    pub apps: u32,
    /// Where the Prometheus exporter listens (`127.0.0.1:9464`); empty when it is off.
    pub metrics_address: String,
    /// Why the exporter is off: `--metrics-listen off`, or the bind failure (`cannot listen on
    /// 127.0.0.1:9464: Address in use`); empty while it serves.
    pub metrics_off_reason: String,
    /// Why the state file could not be written the last time (empty while it is written):
    /// the daemon would forget what changed since, and mutating commands fail until it is.
    pub state_error: String,
}

impl DaemonInfo {
    /// The JSON form of `turbo info --json`.
    #[must_use]
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }
}

/// Formats Unix milliseconds as RFC 3339 UTC with millisecond precision, without a date crate.
#[must_use]
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let ms = unix_ms % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // civil-from-days (Howard Hinnant's algorithm), valid for the whole u64 range we care about
    let z = i64::try_from(days).unwrap_or(i64::MAX / 2) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn enums_round_trip() {
        for s in AppState::ALL {
            assert_eq!(s.as_str().parse::<AppState>(), Ok(*s));
        }
        assert!(
            "bogus"
                .parse::<ExitReason>()
                .unwrap_err()
                .contains("oom_kill")
        );
    }

    #[test]
    fn config_json_nulls_for_inherited_privileges() {
        let inherited = AppConfigInfo {
            env_names: vec!["TOKEN".into()],
            ..AppConfigInfo::default()
        };
        let j = inherited.to_json();
        for key in [
            "user",
            "uid",
            "group",
            "gid",
            "groups",
            "umask",
            "nice",
            "oom_score_adj",
        ] {
            assert!(j[key].is_null(), "{key} in {j}");
        }
        assert_eq!(j["rlimits"], json!({}));
        assert_eq!(j["env_names"], json!(["TOKEN"]));
        let set = AppConfigInfo {
            user: "nobody".into(),
            uid: 65534,
            group: "nogroup".into(),
            gid: 65534,
            groups: vec![("nogroup".into(), 65534)],
            umask: "0027".into(),
            rlimits: vec![
                ("nofile".into(), 256, 512),
                (
                    "core".into(),
                    AppConfigInfo::UNLIMITED,
                    AppConfigInfo::UNLIMITED,
                ),
            ],
            nice: 5,
            oom_score_adj: -100,
            ..inherited
        };
        let j = set.to_json();
        assert_eq!(j["user"], "nobody");
        assert_eq!(j["uid"], 65534);
        assert_eq!(j["groups"], json!([{"name": "nogroup", "gid": 65534}]));
        assert_eq!(j["umask"], "0027");
        assert_eq!(j["rlimits"]["nofile"], json!({"soft": 256, "hard": 512}));
        assert_eq!(j["rlimits"]["core"]["hard"], "unlimited");
        assert_eq!(
            (j["nice"].clone(), j["oom_score_adj"].clone()),
            (json!(5), json!(-100))
        );
    }

    #[test]
    fn status_json_has_every_contract_field_with_nulls() {
        let st = AppStatus {
            name: "a".into(),
            state: "stopped".into(),
            health: "none".into(),
            ..Default::default()
        };
        let j = st.to_json();
        for key in [
            "id",
            "name",
            "instance",
            "state",
            "pid",
            "restarts",
            "uptime_ms",
            "cpu_percent",
            "memory_bytes",
            "memory_pss_bytes",
            "memory_limit_bytes",
            "leak_suspected",
            "memory_growth_bytes_per_hour",
            "health",
            "last_exit",
        ] {
            assert!(j.get(key).is_some(), "missing {key}");
        }
        assert!(j["pid"].is_null());
        assert!(j["last_exit"].is_null());
        assert!(j["leak_suspected"].is_null() && j["memory_growth_bytes_per_hour"].is_null());
        let st = AppStatus {
            pid: 7,
            last_exit: ExitInfo {
                code: -1,
                signal: 9,
                reason: "signal".into(),
                at_ms: 1000,
                source: "ebpf".into(),
            },
            ..st
        };
        let j = st.to_json();
        assert_eq!(j["pid"], 7);
        assert_eq!(j["leak_suspected"], false);
        let growing = AppStatus {
            memory_growth_bytes_per_hour: 3_600_000,
            leak_suspected: true,
            ..st.clone()
        };
        let g = growing.to_json();
        assert_eq!(
            (
                g["memory_growth_bytes_per_hour"].clone(),
                g["leak_suspected"].clone()
            ),
            (json!(3_600_000), json!(true))
        );
        let unknown = AppStatus {
            memory_growth_bytes_per_hour: AppStatus::GROWTH_UNKNOWN,
            ..st.clone()
        };
        assert!(unknown.to_json()["memory_growth_bytes_per_hour"].is_null());
        assert_eq!(j["last_exit"]["signal"], 9);
        assert!(j["last_exit"]["code"].is_null());
    }
}

/// Which output stream of an app a log record came from: the `stream` field of a json log
/// record (`"out"` or `"err"`), shared by the daemon that writes the records and the CLI that
/// reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// Standard output (`<app>-out.log`).
    Out,
    /// Standard error (`<app>-err.log`).
    Err,
}

impl LogStream {
    /// Both streams, stdout first.
    pub const BOTH: [LogStream; 2] = [LogStream::Out, LogStream::Err];

    /// `out` or `err`, as in json records and metric labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Out => "out",
            Self::Err => "err",
        }
    }
}
