//! The state file: what the daemon must remember across its own restarts.
//!
//! Apps (spec, desired state, restart count, the pid and start time of a running process) and
//! their crash records live in one JSON document with a schema version. Writes are atomic: a
//! temporary file is written and fsynced, the current file is hard-linked to the backup, the
//! temporary file is renamed over the current one and the directory is fsynced, so at every
//! instant there is a complete current file or a complete backup. A file that does not parse is
//! moved aside for inspection and the backup is loaded instead. This module knows nothing about
//! supervision; it stores and loads [`SavedState`].

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use turbo_api::CrashRecord;

use crate::supervisor::{AppSpec, Desired};

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
    /// What to run.
    pub spec: AppSpec,
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
}

impl From<&CrashRecord> for SavedCrash {
    fn from(r: &CrashRecord) -> Self {
        Self {
            at_ms: r.at_ms,
            code: r.code,
            signal: r.signal,
            reason: r.reason.clone(),
            uptime_ms: r.uptime_ms,
            restart_number: r.restart_number,
            memory_bytes: r.memory_bytes,
            signal_sender_pid: r.signal_sender_pid,
            signal_sender_comm: r.signal_sender_comm.clone(),
            stderr_tail: r.stderr_tail.clone(),
            source: r.source.clone(),
        }
    }
}

impl From<SavedCrash> for CrashRecord {
    fn from(c: SavedCrash) -> Self {
        Self {
            at_ms: c.at_ms,
            code: c.code,
            signal: c.signal,
            reason: c.reason,
            uptime_ms: c.uptime_ms,
            restart_number: c.restart_number,
            memory_bytes: c.memory_bytes,
            signal_sender_pid: c.signal_sender_pid,
            signal_sender_comm: c.signal_sender_comm,
            stderr_tail: c.stderr_tail,
            source: c.source,
        }
    }
}

/// What loading found.
#[derive(Debug)]
pub struct Loaded {
    /// The state (empty when there was none).
    pub state: SavedState,
    /// Something the operator should know (corrupt file moved aside, backup used).
    pub warning: Option<String>,
}

/// A state file and its backup.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The file `path` (its backup is `<path>.bak`).
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Path of the current file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        self.path.with_file_name(name)
    }

    /// Loads the state: the current file, else (with a warning) the backup, else nothing.
    ///
    /// # Errors
    /// Only when neither file can be read for a reason other than absence or corruption (e.g.
    /// permissions): then the daemon must not start and overwrite what it cannot read.
    pub fn load(&self) -> io::Result<Loaded> {
        match read(&self.path) {
            Ok(Some(state)) => Ok(Loaded {
                state,
                warning: None,
            }),
            Ok(None) => Ok(Loaded {
                state: SavedState::default(),
                warning: None,
            }),
            Err(Failure::Io(e)) => Err(io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", self.path.display()),
            )),
            Err(Failure::Corrupt(why)) => {
                let aside = self.sibling(&format!(".corrupt-{}", now_ms()));
                fs::rename(&self.path, &aside)?;
                let backup = self.sibling(".bak");
                let (state, from) = match read(&backup) {
                    Ok(Some(state)) => (state, format!("loaded the backup {}", backup.display())),
                    _ => (
                        SavedState::default(),
                        "no usable backup: starting with no apps".to_owned(),
                    ),
                };
                Ok(Loaded {
                    state,
                    warning: Some(format!(
                        "state file {} is corrupt ({why}); moved it to {} and {from}",
                        self.path.display(),
                        aside.display()
                    )),
                })
            }
        }
    }

    /// Writes `state` atomically, keeping the previous file as `<path>.bak`.
    ///
    /// # Errors
    /// Any I/O error; the previous current file is then still in place.
    pub fn save(&self, state: &SavedState) -> io::Result<()> {
        write_atomic(&self.path, &self.sibling(".bak"), state)
    }
}

enum Failure {
    Io(io::Error),
    Corrupt(String),
}

fn read(path: &Path) -> Result<Option<SavedState>, Failure> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Failure::Io(e)),
    };
    let state: SavedState =
        serde_json::from_slice(&bytes).map_err(|e| Failure::Corrupt(e.to_string()))?;
    if state.schema_version > SCHEMA_VERSION {
        // a newer daemon wrote it: moving it aside would lose data on a downgrade
        return Err(Failure::Io(io::Error::other(format!(
            "it was written by a newer turbo-daemon (schema {}, this one reads up to {SCHEMA_VERSION}): \
             upgrade turbo-daemon, or move the file away to start empty",
            state.schema_version
        ))));
    }
    if state.schema_version == 0 {
        return Err(Failure::Corrupt("no schema_version".into()));
    }
    Ok(Some(state))
}

/// Writes `state` to `path` atomically; the file it replaces becomes `backup`.
///
/// # Errors
/// Any I/O error.
pub fn write_atomic(path: &Path, backup: &Path, state: &SavedState) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut bytes = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    bytes.push(b'\n');
    {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    if path.exists() {
        // link then rename: the backup is replaced in one step and never missing
        let bak_tmp = backup.with_extension("bak.tmp");
        let _ = fs::remove_file(&bak_tmp);
        fs::hard_link(path, &bak_tmp)?;
        fs::rename(&bak_tmp, backup)?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SavedState {
        SavedState {
            schema_version: SCHEMA_VERSION,
            saved_at_ms: 1,
            apps: vec![SavedApp {
                id: 3,
                spec: AppSpec::new("api", vec!["/bin/sleep".into(), "9".into()], "/".into()),
                desired: Desired::Running,
                restarts: 2,
                process: Some(SavedProcess {
                    pid: 42,
                    start_ticks: 7,
                }),
                total_crashes: 1,
                crashes: Vec::new(),
            }],
        }
    }

    #[test]
    fn round_trip_and_backup() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path().join("state.json"));
        assert_eq!(
            f.load().unwrap().state,
            SavedState::default(),
            "nothing yet"
        );
        let mut s = sample();
        f.save(&s).unwrap();
        s.apps[0].restarts = 3;
        f.save(&s).unwrap();
        assert_eq!(f.load().unwrap().state, s);
        let bak: SavedState =
            serde_json::from_slice(&fs::read(dir.path().join("state.json.bak")).unwrap()).unwrap();
        assert_eq!(bak.apps[0].restarts, 2, "the previous file is the backup");
    }

    #[test]
    fn corrupt_file_is_kept_aside_and_the_backup_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path().join("state.json"));
        let s = sample();
        f.save(&s).unwrap();
        f.save(&s).unwrap();
        let good = fs::read(f.path()).unwrap();
        fs::write(f.path(), &good[..good.len() / 2]).unwrap(); // truncated
        let loaded = f.load().unwrap();
        assert_eq!(loaded.state, s);
        let warning = loaded.warning.unwrap();
        assert!(
            warning.contains("corrupt") && warning.contains("backup"),
            "{warning}"
        );
        let kept: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.contains(".corrupt-"))
            .collect();
        assert_eq!(kept.len(), 1, "the corrupt file is kept for inspection");
    }

    #[test]
    fn garbage_without_backup_starts_empty_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path().join("state.json"));
        fs::write(f.path(), b"\x00\x01garbage").unwrap();
        let loaded = f.load().unwrap();
        assert!(loaded.state.apps.is_empty());
        assert!(loaded.warning.unwrap().contains("no usable backup"));
    }

    #[test]
    fn newer_schema_is_an_error_and_the_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path().join("state.json"));
        let mut s = sample();
        s.schema_version = SCHEMA_VERSION + 1;
        fs::write(f.path(), serde_json::to_vec(&s).unwrap()).unwrap();
        let err = f.load().unwrap_err().to_string();
        assert!(err.contains("newer turbo-daemon"), "{err}");
        assert!(f.path().exists());
    }
}
