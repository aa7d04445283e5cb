//! The state file's document: explicit types for what is on disk ([`SavedState`] and the
//! records in it), its schema version and [`decode`].
//!
//! These types are the file format, not the daemon's working types: the runtime builds them
//! (`runtime::persist`, `runtime::crashes`) and reads them back; the app spec is stored as its
//! own mirror ([`SavedSpec`], in `spec`), never as the daemon's `AppSpec`. A change to them
//! changes what older files mean, so a checked-in
//! fixture of today's format (`fixtures/state-v1.json`) must still load to the same state and
//! today's writer must produce it byte for byte (`todays_format_is_pinned`): a format change is
//! then a deliberate edit of the fixture, with [`SCHEMA_VERSION`] bumped when old files can no
//! longer be read as they are. Pure: no I/O.

pub mod spec;

use serde::{Deserialize, Serialize};

pub use self::spec::SavedSpec;
use crate::supervisor::Desired;

/// Version of the document layout; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything saved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// Unix time of the write in milliseconds.
    pub saved_at_ms: u64,
    /// The apps, in id order.
    pub apps: Vec<SavedApp>,
}

/// One app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedApp {
    /// Id.
    pub id: u32,
    /// Instance number (files from before instances have none: 0).
    #[serde(default)]
    pub instance: u32,
    /// What to run.
    pub spec: SavedSpec,
    /// Whether it should run.
    pub desired: Desired,
    /// Restart count.
    #[serde(default)]
    pub restarts: u32,
    /// Its main process when the state was written, to adopt after a daemon restart.
    #[serde(default)]
    pub process: Option<SavedProcess>,
    /// Crashes ever (the records below are only the newest).
    #[serde(default)]
    pub total_crashes: u32,
    /// Newest last.
    #[serde(default)]
    pub crashes: Vec<SavedCrash>,
}

/// A running process, identified so that a reused pid is not mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedProcess {
    /// Pid.
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: start time in clock ticks since boot.
    pub start_ticks: u64,
}

/// A crash record as stored (the D-Bus DTO, owned).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedCrash {
    /// Unix ms.
    pub at_ms: u64,
    /// Exit status or -1.
    pub code: i32,
    /// Signal or 0.
    pub signal: i32,
    /// Reason.
    pub reason: String,
    /// Run time before the crash.
    pub uptime_ms: u64,
    /// Restarts before it.
    pub restart_number: u32,
    /// Memory before it, 0 if unknown.
    pub memory_bytes: u64,
    /// Sender of the fatal signal, 0 if unknown.
    #[serde(default)]
    pub signal_sender_pid: u32,
    /// Its command name.
    #[serde(default)]
    pub signal_sender_comm: String,
    /// Last stderr lines.
    pub stderr_tail: Vec<String>,
    /// Event source.
    pub source: String,
    /// Why the daemon ended it (health check message), empty if it did not.
    #[serde(default)]
    pub detail: String,
    /// Peak memory, 0 if unknown (files written before it was recorded have none).
    #[serde(default)]
    pub memory_peak_bytes: u64,
}

/// Why bytes are not a state this daemon can use.
#[derive(Debug)]
pub enum Decoded {
    /// Not a state document (truncated, garbage, no schema version).
    Corrupt(String),
    /// Written by a newer daemon (its schema version).
    Newer(u32),
}

/// Decodes a state or dump file. Pure, for the loader and the fuzz target.
///
/// # Errors
/// [`Decoded`]: what is wrong with it.
pub fn decode(bytes: &[u8]) -> Result<SavedState, Decoded> {
    let state: SavedState =
        serde_json::from_slice(bytes).map_err(|e| Decoded::Corrupt(e.to_string()))?;
    if state.schema_version > SCHEMA_VERSION {
        return Err(Decoded::Newer(state.schema_version));
    }
    if state.schema_version == 0 {
        return Err(Decoded::Corrupt("no schema_version".into()));
    }
    Ok(state)
}

#[cfg(test)]
pub(super) mod tests {
    use std::{path::PathBuf, time::Duration};

    use super::*;
    use crate::spec::{
        AppSpec, HealthProbe, HealthSpec, MemoryEnforce, ReadyMode, Rlimit, WatchSpec,
    };

    /// An app with one of nearly everything a spec and a crash record can hold.
    pub(in crate::storage) fn sample() -> SavedState {
        let mut spec = AppSpec::new(
            "api",
            vec!["/usr/bin/node".into(), "server.js".into()],
            "/srv/api".into(),
        );
        spec.env = vec![("PORT".into(), "3000".into())];
        spec.stop_exit_codes = vec![0, 143];
        spec.kill_timeout = Duration::from_millis(2500);
        spec.memory.max = Some(256 << 20);
        spec.memory.enforce = MemoryEnforce::Cgroup;
        spec.privileges.limits.nice = Some(5);
        spec.privileges.limits.nofile = Some(Rlimit {
            soft: 1024,
            hard: Rlimit::UNLIMITED,
        });
        spec.instances = 2;
        spec.listen = vec!["127.0.0.1:3000".into()];
        spec.watch = Some(WatchSpec {
            paths: vec![PathBuf::from("/srv/api/src")],
            ignore: vec!["*.tmp".into()],
            delay: Duration::from_millis(300),
        });
        spec.health = Some(HealthSpec::new(HealthProbe::Tcp {
            addr: "127.0.0.1:3000".into(),
        }));
        spec.readiness.mode = ReadyMode::Notify;
        spec.autostart = false;
        spec.source = Some("/srv/api/turbo.yml".into());
        spec.lifecycle.depends_on = vec![crate::spec::Dependency {
            name: "db".into(),
            condition: crate::spec::Condition::Ready,
        }];
        spec.lifecycle.restart_with_deps = true;
        spec.lifecycle.cron = Some(crate::spec::Schedule {
            expr: "0 3 * * *".into(),
            action: crate::spec::ScheduleAction::Restart,
            overlap: crate::spec::Overlap::Skip,
            timezone: Some("Europe/Paris".into()),
        });
        SavedState {
            schema_version: SCHEMA_VERSION,
            saved_at_ms: 1_764_800_000_000,
            apps: vec![SavedApp {
                id: 3,
                instance: 1,
                spec: (&spec).into(),
                desired: Desired::Running,
                restarts: 2,
                process: Some(SavedProcess {
                    pid: 4242,
                    start_ticks: 778_899,
                }),
                total_crashes: 7,
                crashes: vec![SavedCrash {
                    at_ms: 1_764_799_000_000,
                    code: -1,
                    signal: 9,
                    reason: "oom_kill".into(),
                    uptime_ms: 61_000,
                    restart_number: 1,
                    memory_bytes: 268_435_456,
                    signal_sender_pid: 0,
                    signal_sender_comm: String::new(),
                    stderr_tail: vec!["allocating".into(), "still allocating".into()],
                    source: "ebpf".into(),
                    detail: String::new(),
                    memory_peak_bytes: 270_000_000,
                }],
            }],
        }
    }

    const FIXTURE: &str = include_str!("fixtures/state-v1.json");

    #[test]
    fn todays_format_is_pinned() {
        let loaded = decode(FIXTURE.as_bytes()).expect("today's state file loads");
        assert_eq!(loaded, sample(), "the fixture means what it meant");
        let mut written = serde_json::to_string_pretty(&sample()).unwrap();
        written.push('\n');
        assert_eq!(
            written, FIXTURE,
            "the writer changed the state file's format: if that is deliberate, update \
             fixtures/state-v1.json (and bump SCHEMA_VERSION if old files no longer load)"
        );
    }

    #[test]
    fn files_older_than_optional_fields_still_load() {
        let v1 = br#"{"schema_version":1,"saved_at_ms":5,"apps":[{"id":1,
            "spec":{"name":"a","argv":["/bin/true"],"cwd":"/","env":[],"autorestart":"always",
                    "stop_signal":15,"kill_timeout":5000},
            "desired":"running"}]}"#;
        let s = decode(v1).unwrap();
        assert_eq!(s.apps[0].instance, 0);
        assert_eq!(s.apps[0].spec.instances, 1);
        // `autostart` and `source` came with `turbo apply`: started, from no file
        assert!(s.apps[0].spec.autostart && s.apps[0].spec.source.is_none());
        assert!(s.apps[0].crashes.is_empty() && s.apps[0].process.is_none());
    }
}
