//! The state file: what the daemon must remember across its own restarts.
//!
//! Apps (spec, desired state, restart count, the pid and start time of a running process) and
//! their crash records live in one JSON document with a schema version ([`schema`]). Writes
//! are atomic: a temporary file is written and fsynced, the current file is hard-linked to the
//! backup (the first write, with no current file yet, writes the backup as a copy of its own),
//! the temporary file is renamed over the current one and the directory is fsynced, so from
//! the first write on there are always two complete files, never one only. A file that does
//! not parse, or is larger than [`MAX_BYTES`], is moved aside for inspection and the backup is
//! loaded instead. This module knows nothing about supervision; it stores and loads
//! [`SavedState`].
//!
//! The daemon is usually root, writing into its home: a symlink planted there by another user
//! (`state.tmp -> /etc/shadow`) would make it overwrite any file. So the directory must be the
//! daemon's own and closed to others ([`check_private_dir`], checked before the state is loaded,
//! so a daemon refuses to start in one that is not), and files are opened with `O_NOFOLLOW`
//! all the same (`os::files`); the temporary file is created afresh (`O_EXCL`), never reused.

pub mod schema;

use std::{
    fs::{self, File},
    io::{self, Write},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

pub use self::schema::{
    Decoded, SCHEMA_VERSION, SavedApp, SavedCrash, SavedProcess, SavedState, decode,
};
use crate::os::{files, process};

/// The largest state file read: far above what 1,000 apps with full crash books take, far
/// below what would strain the daemon's memory. A larger file is treated as corrupt.
pub const MAX_BYTES: u64 = 64 << 20;

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
        check_private_dir(self.path.parent().unwrap_or(Path::new(".")))?;
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
    let bytes = match files::read_capped(path, MAX_BYTES) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(e) if files::is_symlink_refusal(&e) => {
            return Err(Failure::Io(io::Error::new(
                e.kind(),
                "it is a symbolic link, which the daemon does not follow: remove it",
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
            return Err(Failure::Corrupt(e.to_string()));
        }
        Err(e) => return Err(Failure::Io(e)),
    };
    match decode(&bytes) {
        Ok(state) => Ok(Some(state)),
        Err(Decoded::Corrupt(why)) => Err(Failure::Corrupt(why)),
        Err(Decoded::Newer(version)) => {
            // a newer daemon wrote it: moving it aside would lose data on a downgrade
            Err(Failure::Io(io::Error::other(format!(
                "it was written by a newer turbo-daemon (schema {version}, this one reads up to {SCHEMA_VERSION}): \
                 upgrade turbo-daemon, or move the file away to start empty"
            ))))
        }
    }
}

/// Checks that `dir` is a directory owned by the daemon's user and not writable by its group or
/// others, so that nobody else can plant files or symbolic links where the daemon writes (state,
/// dumps, logs). A daemon refuses to start otherwise.
///
/// # Errors
/// One line: what is wrong with `dir` and the command that fixes it.
pub fn check_private_dir(dir: &Path) -> io::Result<()> {
    let meta = fs::metadata(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot inspect {}: {e}", dir.display())))?;
    let me = process::euid();
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} {why}, so other users could plant files or symbolic links the daemon would write through; refusing to use it",
                dir.display()
            ),
        ))
    };
    if !meta.is_dir() {
        return refuse("is not a directory".into());
    }
    if meta.uid() != me {
        return refuse(format!(
            "is owned by uid {}, not by the daemon's uid {me} (fix: chown {me} {})",
            meta.uid(),
            dir.display()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return refuse(format!(
            "is writable by its group or others (mode {mode:04o}; fix: chmod go-w {})",
            dir.display()
        ));
    }
    Ok(())
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
    write_new(&tmp, &bytes)?;
    if path.exists() {
        // link then rename: the backup is replaced in one step and never missing
        let bak_tmp = backup.with_extension("bak.tmp");
        let _ = fs::remove_file(&bak_tmp);
        fs::hard_link(path, &bak_tmp)?;
        fs::rename(&bak_tmp, backup)?;
    } else {
        // the first write: a copy of its own (not a link, which a damaged current file would
        // damage too), so the current file is never the only one
        let bak_tmp = backup.with_extension("bak.tmp");
        write_new(&bak_tmp, &bytes)?;
        fs::rename(&bak_tmp, backup)?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to a new file at `path`, fsynced. A leftover of a crashed write (or anything
/// planted there) is removed, not opened: unlink does not follow a symlink, and `O_EXCL`
/// creates a new file or fails.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = files::create_new(path, 0o600)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{spec::AppSpec, supervisor::Desired};

    fn sample() -> SavedState {
        SavedState {
            schema_version: SCHEMA_VERSION,
            saved_at_ms: 1,
            apps: vec![SavedApp {
                id: 3,
                instance: 0,
                spec: (&AppSpec::new("api", vec!["/bin/sleep".into(), "9".into()], "/".into()))
                    .into(),
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

    /// Issue 15 item 11: one save so far, then the current file is damaged; the backup
    /// written with the first save is loaded.
    #[test]
    fn the_first_write_leaves_two_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path().join("state.json"));
        let s = sample();
        f.save(&s).unwrap();
        let bak = dir.path().join("state.json.bak");
        assert_eq!(fs::read(&bak).unwrap(), fs::read(f.path()).unwrap());
        let current = fs::OpenOptions::new().write(true).open(f.path()).unwrap();
        current.set_len(10).unwrap(); // truncated in place
        assert!(fs::read(&bak).unwrap().len() > 10, "not the same inode");
        let loaded = f.load().unwrap();
        assert_eq!(loaded.state, s);
        assert!(loaded.warning.unwrap().contains("loaded the backup"));
    }

    #[test]
    fn an_oversized_file_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path().join("state.json"));
        let s = sample();
        f.save(&s).unwrap();
        let big = File::create(f.path()).unwrap();
        big.set_len(MAX_BYTES + 1).unwrap(); // sparse: costs no disk
        let loaded = f.load().unwrap();
        assert_eq!(loaded.state, s, "the backup");
        let warning = loaded.warning.unwrap();
        assert!(warning.contains("more than the"), "{warning}");
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
    fn planted_symlinks_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let f = StateFile::new(dir.path().join("state.json"));
        // a symlink where the temporary file goes is replaced, the victim untouched
        std::os::unix::fs::symlink(&victim, dir.path().join("state.tmp")).unwrap();
        f.save(&sample()).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(!fs::symlink_metadata(f.path()).unwrap().is_symlink());
        // a symlinked state file is refused, not read
        fs::remove_file(f.path()).unwrap();
        std::os::unix::fs::symlink(&victim, f.path()).unwrap();
        let err = f.load().unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }

    #[test]
    fn a_directory_others_can_write_to_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        check_private_dir(dir.path()).unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o775)).unwrap();
        let f = StateFile::new(dir.path().join("state.json"));
        let err = f.load().unwrap_err().to_string();
        assert!(
            err.contains("writable by its group or others (mode 0775")
                && err.contains("chmod go-w"),
            "{err}"
        );
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(check_private_dir(dir.path()).is_err(), "sticky or not");
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        let err = check_private_dir(&file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn decode_reports_what_is_wrong() {
        assert!(matches!(decode(b""), Err(Decoded::Corrupt(_))));
        assert!(matches!(
            decode(br#"{"schema_version":0,"saved_at_ms":0,"apps":[]}"#),
            Err(Decoded::Corrupt(_))
        ));
        assert!(matches!(
            decode(br#"{"schema_version":99,"saved_at_ms":0,"apps":[]}"#),
            Err(Decoded::Newer(99))
        ));
        let s = sample();
        assert_eq!(decode(&serde_json::to_vec(&s).unwrap()).unwrap(), s);
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
