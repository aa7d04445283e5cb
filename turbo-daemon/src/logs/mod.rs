//! Log capture: copies each app's stdout and stderr pipes into its two log files, one
//! timestamp per line tagged with the instance and pid whose pipe it came through, rotating the
//! files by size.
//!
//! This code runs in the log keeper (`crate::keeper::server`, a synchronous loop that outlives
//! the daemon) and, only when no keeper can be started, in the daemon itself.
//!
//! [`AppLogs`] owns an app's files (or, with `log.per_instance`, one instance's files) for as
//! long as the app is managed, across restarts. Every
//! process of the app, and any descendant of an old process that still holds its pipes, writes
//! through that one owner under one lock, so a rotation is decided and done in one place and never
//! races with another writer. Bytes written and dropped are counted per file
//! ([`AppLogs::counters`]). The parts:
//! * `pump`: reading one pipe into batches of lines (a chatty app costs one syscall per read,
//!   not per line); the keeper drives pumps from `epoll`, [`AppLogs::capture`] from tokio tasks.
//! * `format`: a batch of lines into records of the app's [`LogPolicy`] format (`text` or
//!   `json`, a change applies from the next read on); the record layout is
//!   [`turbo_api::logfmt`], shared with the CLI that reads the files.
//! * `sink`: appending a batch with one `write(2)`, and rotation.
//! * `behind`: the keeper's writing of batches on a thread of its own, while it reads and
//!   formats the next ones.
//! * `compress`: compressing rotated files (`log.compress`) on a thread of its own, off the
//!   reading of the pipes.
//! * [`forward`]: sending records to journald and syslog (`log.to`), through bounded queues
//!   and threads of their own: a slow or absent receiver costs dropped, counted records, never
//!   a stalled app.
//!
//! This module must not decide anything about the app: when the pipes close (the process and its
//! descendants are gone) the capture ends and [`Capture::done`] resolves; what that means is the
//! supervisor's business. It must not lose output it could keep, nor stop reading (see `sink`).

mod behind;
pub mod clock;
mod compress;
pub(crate) mod format;
pub mod forward;
pub(crate) mod pump;
mod sink;
#[cfg(test)]
mod tests;

use std::{
    collections::VecDeque,
    io,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use tokio::task::JoinHandle;
use turbo_api::logfmt;

use self::sink::Sink;
pub(crate) use self::{
    behind::WriteBehind,
    format::Records,
    pump::{Batch, Pump, Step},
};
use crate::spec::{LogFormat, LogPolicy};

/// Longest line written as one record; longer ones are cut, so memory stays bounded.
pub const MAX_LINE: usize = 64 * 1024;
/// How many stderr lines a [`StderrTail`] keeps.
pub const TAIL_LINES: usize = 20;
/// Longest line kept in a [`StderrTail`] (bytes, then `…`): the tail goes into crash records and
/// D-Bus replies, where 20 × 64 KiB would be too much.
const TAIL_LINE_MAX: usize = 4096;

/// The two log files of an app's `instance`: `log.out`/`log.err` when set, else in `log_dir`.
/// Both are the same file when the app logs to one (`log.path`). With `log.per_instance` the
/// instance's number goes before each name's extension ([`of_instance`]).
#[must_use]
pub fn paths(log_dir: &Path, name: &str, instance: u32, policy: &LogPolicy) -> (PathBuf, PathBuf) {
    let path = |custom: &Option<PathBuf>, stream| {
        let path = custom
            .clone()
            .unwrap_or_else(|| log_dir.join(logfmt::file_name(name, stream)));
        if policy.per_instance {
            of_instance(&path, instance)
        } else {
            path
        }
    };
    (
        path(&policy.out, Stream::Out),
        path(&policy.err, Stream::Err),
    )
}

/// `path` with `-<instance>` before its extension: `api-out.log` becomes `api-out-1.log`,
/// `/var/log/api/all` becomes `/var/log/api/all-1`. A default name always ends in `-out.log` or
/// `-err.log`, which no such name does, so an instance's file never is another app's.
#[must_use]
pub fn of_instance(path: &Path, instance: u32) -> PathBuf {
    let mut name = path.file_stem().unwrap_or_default().to_os_string();
    name.push(format!("-{instance}"));
    if let Some(ext) = path.extension() {
        name.push(".");
        name.push(ext);
    }
    path.with_file_name(name)
}

/// Which pipe a record came from (one enum for the daemon, the keeper and the CLI).
pub use turbo_api::LogStream as Stream;
/// Which instance and process a record came from, known by its pipe.
pub use turbo_api::logfmt::Source;

/// The log files of one app, shared by every capture of its processes. Cloning is cheap (one
/// `Arc`); all clones write the same files.
#[derive(Clone, Debug)]
pub struct AppLogs(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    /// The app name as a JSON string, quotes included, ready to copy into json records.
    app_json: Box<[u8]>,
    /// What formatting a batch needs, under a lock of its own: formatting one batch never waits
    /// for the write of the one before ([`WriteBehind`]).
    head: Mutex<Head>,
    files: Mutex<Files>,
}

#[derive(Debug)]
struct Head {
    format: LogFormat,
    /// Whether records go to the files at all (`log.to`).
    file: bool,
    /// Where records go besides the files (`None`: nowhere).
    route: Option<Arc<forward::Route>>,
}

#[derive(Debug)]
struct Files {
    app: String,
    policy: LogPolicy,
    forwarded: Arc<forward::Counters>,
    out: Sink,
    /// `None`: stderr goes to `out`'s file too (`log.path`).
    err: Option<Sink>,
}

impl AppLogs {
    /// Opens (creating 0640, appending) the two log files of the app's `instance` ([`paths`]; the
    /// instance matters only with `log.per_instance`), or its one.
    ///
    /// # Errors
    /// `cannot open log file <path>: <error>`; for a path of `log.out`/`log.err`, also when its
    /// directory is not the daemon's own or is open to others (`storage::check_private_dir`),
    /// so that nobody else can plant a link the daemon would write through.
    pub fn open(dir: &Path, app: &str, instance: u32, policy: &LogPolicy) -> io::Result<AppLogs> {
        let (out, err) = paths(dir, app, instance, policy);
        for (custom, path) in [(&policy.out, &out), (&policy.err, &err)] {
            if custom.is_some() {
                crate::storage::check_private_dir(path.parent().unwrap_or(Path::new("/")))
                    .map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("cannot open log file {}: {e}", path.display()),
                        )
                    })?;
            }
        }
        let mut app_json = Vec::with_capacity(app.len() + 2);
        logfmt::push_app_json(&mut app_json, app);
        let forwarded = Arc::default();
        let combined = out == err;
        let out = Sink::open(out)?;
        let err = if combined {
            None
        } else {
            Some(Sink::open(err)?)
        };
        for sink in std::iter::once(&out).chain(&err) {
            compress::recover(&sink.path, policy.compress, &sink.names);
            if let Some(age) = policy.max_age
                && let Err(e) = sink::prune_older(&sink.path, age, clock::now_ms())
            {
                tracing::warn!(
                    "cannot delete old rotated logs of {}: {e}",
                    sink.path.display()
                );
            }
        }
        let head = Head {
            format: policy.format,
            file: policy.file,
            route: forward::Route::of(app, policy, &forwarded),
        };
        Ok(AppLogs(Arc::new(Shared {
            app_json: app_json.into(),
            head: Mutex::new(head),
            files: Mutex::new(Files {
                app: app.to_owned(),
                policy: policy.clone(),
                forwarded,
                out,
                err,
            }),
        })))
    }

    /// Whether these are the files `policy` names (else the app's files moved: `log.out`,
    /// `log.err`, `log.path` or `log.per_instance` changed, and the next process gets newly
    /// opened ones).
    #[must_use]
    pub fn are(&self, dir: &Path, app: &str, instance: u32, policy: &LogPolicy) -> bool {
        self.paths() == paths(dir, app, instance, policy)
    }

    /// Uses `policy` from the next write on. Fewer `keep` deletes the surplus rotated files now; a
    /// smaller `max_size` rotates on the next write. Called for each new process that writes to
    /// these files, so it also reopens a file deleted or replaced since it was opened (a
    /// `turbo delete`, the files removed, and the app started again).
    pub fn set_policy(&self, policy: &LogPolicy) {
        let mut files = self.lock();
        let files = &mut *files;
        files.out.reopen_if_moved();
        if let Some(err) = &mut files.err {
            err.reopen_if_moved();
        }
        let fewer = policy.keep < files.policy.keep;
        files.policy = policy.clone();
        *lock(&self.0.head) = Head {
            format: policy.format,
            file: policy.file,
            route: forward::Route::of(&files.app, policy, &files.forwarded),
        };
        if fewer {
            for sink in std::iter::once(&files.out).chain(&files.err) {
                if let Err(e) = sink::prune(&sink.path, policy.keep) {
                    tracing::warn!(
                        "cannot delete old rotated logs of {}: {e}",
                        sink.path.display()
                    );
                }
            }
        }
    }

    /// Starts capturing one process's stdout and stderr into these files, in one task.
    ///
    /// Must be called inside the tokio runtime (it calls `tokio::spawn`).
    #[must_use = "Capture::done tells when the process's output has ended"]
    pub fn capture(&self, source: Source, stdout: OwnedFd, stderr: OwnedFd) -> Capture {
        let tail = StderrTail::default();
        let logs = self.clone();
        let err_tail = tail.clone();
        let done = tokio::spawn(async move {
            let logs = &logs;
            let mut out_records = Records::default();
            let mut err_records = Records::default();
            let out = pump::pump(stdout, move |batch| {
                logs.append(source, Stream::Out, batch, &mut out_records);
            });
            let err = pump::pump(stderr, move |batch| {
                logs.append(source, Stream::Err, batch, &mut err_records);
                err_tail.push(batch);
            });
            tokio::join!(out, err);
        });
        Capture {
            stderr_tail: tail,
            done,
        }
    }

    /// Empties both current files and deletes their rotated files. Captures keep writing, from
    /// the start of the emptied files.
    ///
    /// # Errors
    /// The first failure (`cannot truncate|list|remove <path>: <error>`); the rest is still tried.
    pub fn flush(&self) -> io::Result<()> {
        let mut files = self.lock();
        let files = &mut *files;
        let mut first = None;
        for sink in std::iter::once(&mut files.out).chain(&mut files.err) {
            if let Err(e) = sink.flush() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The stdout and stderr log files.
    #[must_use]
    pub fn paths(&self) -> (PathBuf, PathBuf) {
        let files = self.lock();
        let err = files.err.as_ref().unwrap_or(&files.out);
        (files.out.path.clone(), err.path.clone())
    }

    /// Bytes appended to each file, and bytes of records that could not be written (a full
    /// disk, an I/O error) and were dropped, since these files were opened: `(stream, written,
    /// dropped)`, stdout first.
    #[must_use]
    pub fn counters(&self) -> [(Stream, u64, u64); 2] {
        let files = self.lock();
        [
            (Stream::Out, files.out.written, files.out.dropped),
            // one combined file counts both streams as stdout
            files
                .err
                .as_ref()
                .map_or((Stream::Err, 0, 0), |e| (Stream::Err, e.written, e.dropped)),
        ]
    }

    /// Records of each stream sent to journald and syslog, and dropped on the way there.
    #[must_use]
    pub fn forwarded(&self) -> [(Stream, Vec<forward::ForwardCount>); 2] {
        let files = self.lock();
        Stream::BOTH.map(|s| (s, files.forwarded.of(s)))
    }

    /// Formats and appends one batch of records of `source`'s `stream`, and hands it to the
    /// other destinations: [`AppLogs::format`] then [`AppLogs::write`].
    pub(crate) fn append(
        &self,
        source: Source,
        stream: Stream,
        batch: &mut Batch<'_>,
        records: &mut Records,
    ) {
        if let Some(now) = self.format(source, stream, batch, records) {
            self.write(stream, records, now);
        }
    }

    /// Hands one batch of `source`'s `stream` to the other destinations and formats it into
    /// `records`, stamped now; returns that time (log clock, ms), or `None` when the app's
    /// records go to no file. The lock is held only to read the policy: formatting a batch
    /// does not hold up the writing of the one before ([`WriteBehind`]).
    pub(crate) fn format(
        &self,
        source: Source,
        stream: Stream,
        batch: &mut Batch<'_>,
        records: &mut Records,
    ) -> Option<i64> {
        let now = clock::now_ms();
        let format = {
            let head = lock(&self.0.head);
            if let Some(route) = &head.route {
                let data = batch.data;
                route.submit(source, stream, now, data, batch.lines());
            }
            if !head.file {
                return None;
            }
            head.format
        };
        let stamp = format::timestamp(now);
        records.format(format, &stamp, &self.0.app_json, source, stream, batch);
        Some(now)
    }

    /// Appends a batch [`AppLogs::format`] made at `now` to the file of `stream`, rotating it
    /// when the policy says so. The lock is held across the write, so the policy, the size count
    /// and a rotation all see the same state.
    pub(crate) fn write(&self, stream: Stream, records: &mut Records, now: i64) {
        {
            let mut files = self.lock();
            let files = &mut *files;
            let sink = match stream {
                Stream::Out => &mut files.out,
                Stream::Err => files.err.as_mut().unwrap_or(&mut files.out),
            };
            sink.write_records(records, &files.policy, now);
        }
        // a flood holds the compression of rotated files back (`compress`)
        compress::wrote(records.buf.len());
        if records.buf.len() <= pump::READ_SIZE {
            pump::give_back(&mut records.buf, 2 * pump::READ_SIZE);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Files> {
        lock(&self.0.files)
    }
}

/// The output of one process being captured.
#[derive(Debug)]
pub struct Capture {
    /// The last stderr lines of this process.
    pub stderr_tail: StderrTail,
    /// Resolves when both pipes have reached end of file and everything read is written.
    pub done: JoinHandle<()>,
}

/// The last [`TAIL_LINES`] stderr lines of one process, oldest first: without timestamps, lossy
/// UTF-8, a trailing `\r` removed, each cut to 4 KiB. The unfinished last line counts once the
/// pipe has closed. Cloning shares the same tail.
#[derive(Clone, Debug, Default)]
pub struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    /// A copy of the lines kept so far.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    pub(crate) fn push(&self, batch: &mut Batch<'_>) {
        let data = batch.data;
        let lines = batch.last_lines(TAIL_LINES);
        let mut tail = self.lock();
        // only the batch's last lines can survive, so only they are converted
        for range in &lines[lines.len().saturating_sub(TAIL_LINES)..] {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(tail_text(&data[range.clone()]));
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // a panic while holding the lock leaves consistent enough state: at worst a size count off
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn tail_text(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() <= TAIL_LINE_MAX {
        return String::from_utf8_lossy(line).into_owned();
    }
    let cut = pump::char_start(line, TAIL_LINE_MAX, 0);
    let mut text = String::from_utf8_lossy(&line[..cut]).into_owned();
    text.push('…');
    text
}
