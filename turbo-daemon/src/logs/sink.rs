//! Appending records to one log file, and rotating it by size.
//!
//! Rotation, before a write would make a file exceed `max_size`: `<f>.N` becomes `<f>.N+1`
//! (those that would pass `keep` are deleted), `<f>` becomes `<f>.1`, and a new `<f>` is opened
//! (names: [`turbo_api::logfmt::rotated_path`]). It happens between records, so a record never
//! spans two files; a record bigger than `max_size` on its own goes alone into a fresh file
//! (which then exceeds `max_size` by that record). `max_size == 0` disables rotation; `keep == 0`
//! discards the full file instead of keeping it.
//!
//! With `rotate: daily|hourly`, the first batch written after midnight (the full hour) on the
//! log clock (`clock`) rotates first; a file that gets no output keeps its old records until
//! its app writes again. The period is counted from the first write after the file is opened,
//! so a keeper restarted after a boundary appends that period's first records to the file it
//! found.
//!
//! With `max_age`, rotated files last written longer ago than that are deleted at each rotation
//! (and when the keeper opens the log), so a quiet app's old files go at its next rotation.
//! Under the test-only fake clock (`clock`) a rotated file's modification time is set to the
//! fake time first, so that ages are counted on one clock.
//!
//! With `compress`, the file that becomes `<f>.2` at a rotation is handed to `compress`, which
//! replaces it with `<f>.2.gz` (or `.zst`) a moment later; `<f>.1` stays plain, because `turbo
//! logs --follow` may still be reading it. Renames here and the final rename there hold one
//! lock per file ([`Sink::names`]), so a compressed file is never shifted half-way.
//!
//! A file deleted or replaced behind the writer's back (an operator's `rm`, or the files of a
//! deleted app removed before it starts again) is noticed within a second of log-clock time at
//! the next write, and whenever a new process starts writing to it, and opened anew: records
//! written to an unlinked file would be lost.
//!
//! This module must not stop the app's output: a failed rotation keeps writing to the current
//! file, and a failed write (a full disk) is logged once per run of failures and counted as
//! dropped, not retried; the next batch tries again.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

use turbo_api::logfmt::{self, Compression};

use super::format::Records;
use crate::spec::LogPolicy;

/// Opens (creating 0640) a log file for appending. `O_NOFOLLOW`: a symlink planted in the log
/// directory is refused (`ELOOP`) rather than written through (the directory is also checked
/// to be the daemon's own at start-up: `storage::check_private_dir`).
pub(super) fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
        .open(path)
}

/// One log file being appended to.
#[derive(Debug)]
pub(super) struct Sink {
    pub(super) path: PathBuf,
    pub(super) file: File,
    /// Bytes in the file, counted rather than asked for on every write.
    pub(super) size: u64,
    /// A write failed and was logged; stay quiet until one succeeds.
    pub(super) failing: bool,
    /// Record bytes written since the file was opened (a metric: `turbo_log_bytes_total`).
    pub(super) written: u64,
    /// Record bytes that could not be written and were dropped (`turbo_log_dropped_bytes_total`).
    pub(super) dropped: u64,
    /// Held while the rotated files are renamed, here and by the compression worker.
    pub(super) names: Arc<Mutex<()>>,
    /// With `rotate`: when the current period ends (Unix ms, log clock), set by the first
    /// write of the period.
    pub(super) period_end: Option<i64>,
    /// When the path was last checked to still name `file` (log clock, ms).
    pub(super) checked_at: i64,
}

impl Sink {
    pub(super) fn open(path: PathBuf) -> io::Result<Sink> {
        let context = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("cannot open log file {}: {e}", path.display()),
            )
        };
        let file = open_append(&path).map_err(context)?;
        let size = file.metadata().map_err(context)?.len();
        Ok(Sink {
            path,
            file,
            size,
            failing: false,
            written: 0,
            dropped: 0,
            names: Arc::default(),
            period_end: None,
            checked_at: super::clock::now_ms(),
        })
    }

    /// Opens the path anew when it no longer names the open file (deleted, or replaced by
    /// another file). When that cannot be told or the new open fails, writing goes on to the
    /// open file, and the reason is logged.
    pub(super) fn reopen_if_moved(&mut self) {
        use std::os::unix::fs::MetadataExt as _;
        let same = match (fs::symlink_metadata(&self.path), self.file.metadata()) {
            (Ok(path), Ok(open)) => path.dev() == open.dev() && path.ino() == open.ino(),
            (Err(e), _) if e.kind() == io::ErrorKind::NotFound => false,
            _ => return,
        };
        if same {
            return;
        }
        match open_append(&self.path).and_then(|f| Ok((f.metadata()?.len(), f))) {
            Ok((size, file)) => {
                tracing::info!(
                    "{} was deleted or replaced; writing to a new file of that name",
                    self.path.display()
                );
                self.file = file;
                self.size = size;
            }
            Err(e) => tracing::warn!(
                "{} was deleted or replaced, and cannot be opened anew ({e}); writing on to the old file",
                self.path.display()
            ),
        }
    }

    /// Appends whole records, rotating before one that would not fit: as many records per
    /// `write(2)` as fit in the current file (a batch that fits, the common case, is one).
    pub(super) fn write_records(&mut self, records: &Records, policy: &LogPolicy, now_ms: i64) {
        if now_ms.abs_diff(self.checked_at) >= 1000 {
            self.checked_at = now_ms;
            self.reopen_if_moved();
        }
        match policy.rotate {
            Some(period) => {
                if self.period_end.is_some_and(|end| now_ms >= end) && self.size > 0 {
                    self.rotate(policy, now_ms);
                }
                if self.period_end.is_none_or(|end| now_ms >= end) {
                    self.period_end = Some(super::clock::period_end(period, now_ms));
                }
            }
            None => self.period_end = None,
        }
        let limit = if policy.max_size == 0 {
            u64::MAX
        } else {
            policy.max_size
        };
        let mut rest = &records.buf[..];
        while !rest.is_empty() {
            let room = limit.saturating_sub(self.size);
            let take = if rest.len() as u64 <= room {
                rest.len()
            } else {
                // records end with the only newline they hold: the last newline in the room
                // ends the last record that fits
                let fit = memchr::memrchr(b'\n', &rest[..usize::try_from(room).unwrap_or(0)]);
                match fit {
                    Some(p) => p + 1,
                    None if self.size > 0 => {
                        self.rotate(policy, now_ms);
                        continue;
                    }
                    // a record bigger than a whole file: alone in a fresh file rather than cut
                    None => memchr::memchr(b'\n', rest).map_or(rest.len(), |p| p + 1),
                }
            };
            self.write(&rest[..take]);
            rest = &rest[take..];
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        match self.file.write_all(bytes) {
            Ok(()) => {
                self.size += bytes.len() as u64;
                self.written += bytes.len() as u64;
                if self.failing {
                    self.failing = false;
                    tracing::info!("writing {} works again", self.path.display());
                }
            }
            Err(e) => {
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(
                        "writing {} failed: {e}; output is dropped until a write succeeds",
                        self.path.display()
                    );
                }
                // part of it may have been written; the rest is dropped, and the next batch tries
                // again, so writing resumes by itself once there is room
                let now = self.file.metadata().map_or(self.size, |m| m.len());
                let part = now.saturating_sub(self.size).min(bytes.len() as u64);
                self.written += part;
                self.dropped += bytes.len() as u64 - part;
                self.size = now;
            }
        }
    }

    fn rotate(&mut self, policy: &LogPolicy, now_ms: i64) {
        if super::clock::is_fake() {
            // the test clock's time, so that ages (`max_age`) are counted on it
            let _ = self.file.set_modified(super::clock::system_time(now_ms));
        }
        if let Err(e) = self.try_rotate(policy.keep, policy.compress) {
            tracing::warn!("cannot rotate {}: {e}; writing on", self.path.display());
        }
        if let Some(age) = policy.max_age
            && let Err(e) = prune_older(&self.path, age, now_ms)
        {
            tracing::warn!(
                "cannot delete old rotated logs of {}: {e}",
                self.path.display()
            );
        }
        // also after a failure: the next attempt comes after another max_size bytes, not at once
        self.size = 0;
    }

    fn try_rotate(&mut self, keep: u32, compress: Compression) -> io::Result<()> {
        let names = Arc::clone(&self.names);
        let _names = names.lock().unwrap_or_else(PoisonError::into_inner);
        // whatever would be shifted past `keep` goes first
        prune(&self.path, keep.saturating_sub(1))?;
        for (n, old) in rotated(&self.path)?.into_iter().rev() {
            let to = logfmt::rotated_path_as(&self.path, n + 1, Compression::of(&old));
            fs::rename(&old, to)?;
        }
        let second = logfmt::rotated_path(&self.path, 2);
        if compress != Compression::None
            && let Ok(file) = super::compress::open_plain(&second)
        {
            super::compress::submit(super::compress::Job {
                file,
                log: self.path.clone(),
                how: compress,
                lock: Arc::clone(&self.names),
            });
        }
        let moved = if keep == 0 {
            fs::remove_file(&self.path)
        } else {
            fs::rename(&self.path, logfmt::rotated_path(&self.path, 1))
        };
        match moved {
            // deleted behind our back: reopening is all there is to do
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.file = open_append(&self.path)?;
        Ok(())
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        let context = |what: &str, path: &Path, e: io::Error| {
            io::Error::new(e.kind(), format!("cannot {what} {}: {e}", path.display()))
        };
        let truncated = self
            .file
            .set_len(0)
            .map_err(|e| context("truncate", &self.path, e));
        self.size = 0;
        truncated?;
        prune(&self.path, 0)
    }
}

/// The rotated files of `path` (`<path>.<n>`, n ≥ 1), by increasing `n`: newest first.
pub(super) fn rotated(path: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let list_error =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot list {}: {e}", dir.display()));
    let names = fs::read_dir(dir)
        .map_err(list_error)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()
        .map_err(list_error)?;
    Ok(logfmt::rotated_files(
        &dir.join(path.file_name().unwrap_or_default()),
        names,
    ))
}

/// Deletes the rotated files of `path` (plain or compressed) last written more than `age`
/// before `now_ms` (log clock).
pub(super) fn prune_older(path: &Path, age: std::time::Duration, now_ms: i64) -> io::Result<()> {
    let limit = super::clock::system_time(now_ms)
        .checked_sub(age)
        .unwrap_or(std::time::UNIX_EPOCH);
    let mut first = None;
    for (_, old) in rotated(path)? {
        let stale = fs::symlink_metadata(&old)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < limit);
        if stale
            && let Err(e) = fs::remove_file(&old)
            && e.kind() != io::ErrorKind::NotFound
        {
            first.get_or_insert(io::Error::new(
                e.kind(),
                format!("cannot remove {}: {e}", old.display()),
            ));
        }
    }
    first.map_or(Ok(()), Err)
}

/// Deletes the rotated files of `path` numbered above `keep`.
pub(super) fn prune(path: &Path, keep: u32) -> io::Result<()> {
    let mut first = None;
    for (_, old) in rotated(path)?.into_iter().filter(|(n, _)| *n > keep) {
        if let Err(e) = fs::remove_file(&old)
            && e.kind() != io::ErrorKind::NotFound
        {
            first.get_or_insert(io::Error::new(
                e.kind(),
                format!("cannot remove {}: {e}", old.display()),
            ));
        }
    }
    first.map_or(Ok(()), Err)
}
