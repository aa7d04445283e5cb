//! Log capture and rotation: copies each app's stdout and stderr pipes into its two log files,
//! one timestamp per line, and rotates the files by size.
//!
//! This code runs in the log keeper (`crate::keeper::server`, a synchronous loop that outlives
//! the daemon) and, only when no keeper can be started, in the daemon itself.
//!
//! [`AppLogs`] owns an app's files for as long as the app is managed, across restarts. Every
//! process of the app, and any descendant of an old process that still holds its pipes, writes
//! through that one owner under one lock, so a rotation is decided and done in one place and never
//! races with another writer. A `Pump` reads one pipe: it turns whatever the pipe holds into
//! records that are appended with a single `write(2)`, so a chatty app costs one syscall per
//! read, not per line. The keeper drives pumps from `epoll`; [`AppLogs::capture`] drives them
//! from tokio tasks. A pipe found full is enlarged to 1 MiB and read in bigger pieces, so a
//! flooding app and its reader take turns about 16 times less often; lines are found with the C
//! library's `memchr`. Bytes written and dropped are counted per file ([`AppLogs::counters`]).
//!
//! Record formats (the app's [`LogPolicy`]; a change applies from the next read on):
//! * `text`: `<RFC 3339 UTC, ms> <raw line bytes>\n`, the bytes exactly as the app wrote them.
//! * `json`: one object per line, `{"at":"..","app":"..","stream":"out|err","line":".."}`. JSON
//!   strings cannot hold arbitrary bytes, so when a line is not valid UTF-8 its `line` is a lossy
//!   rendering (U+FFFD) and the record adds `"line_b64"`: the raw bytes in standard base64 (RFC
//!   4648 §4, padded). Readers that need the exact bytes take `line_b64` when present, else `line`.
//!
//! Lines: a line without its newline yet waits for it (or for the end of the pipe, when it is
//! written as it is). A line longer than [`MAX_LINE`] is written as several records of at most
//! that many bytes, cut on a UTF-8 character boundary when there is one nearby; nothing is dropped.
//!
//! Rotation, before a write would make a file exceed `max_size`: `<f>.N` becomes `<f>.N+1` (those
//! that would pass `keep` are deleted), `<f>` becomes `<f>.1`, and a new `<f>` is opened. It
//! happens between records, so a record never spans two files; a record bigger than `max_size` on
//! its own goes alone into a fresh file (which then exceeds `max_size` by that record).
//! `max_size == 0` disables rotation; `keep == 0` discards the full file instead of keeping it.
//!
//! This module must not decide anything about the app: when the pipes close (the process and its
//! descendants are gone) the capture ends and [`Capture::done`] resolves; what that means is the
//! supervisor's business. It must not lose output it could keep, nor stop reading: a failed
//! rotation keeps writing to the current file, and a failed write (a full disk) is logged once per
//! run of failures and counted as dropped, not retried; the next batch tries again.

use std::{
    collections::VecDeque,
    ffi::OsString,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    ops::Range,
    os::{
        fd::{AsRawFd as _, OwnedFd, RawFd},
        unix::{ffi::OsStrExt as _, fs::OpenOptionsExt},
    },
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard, OnceLock, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::SystemTime,
};

use tokio::{net::unix::pipe, task::JoinHandle};

use crate::supervisor::{LogFormat, LogPolicy};

/// Longest line written as one record; longer ones are cut, so memory stays bounded.
pub const MAX_LINE: usize = 64 * 1024;
/// How many stderr lines a [`StderrTail`] keeps.
pub const TAIL_LINES: usize = 20;
/// Longest line kept in a [`StderrTail`] (bytes, then `…`): the tail goes into crash records and
/// D-Bus replies, where 20 × 64 KiB would be too much.
const TAIL_LINE_MAX: usize = 4096;
/// Bytes asked of a pipe per read at first (a pipe holds 64 KiB by default).
const READ_SIZE: usize = 64 * 1024;
/// The size a pipe is given once it was found full (`F_SETPIPE_SZ`; 1 MiB is also the default
/// `/proc/sys/fs/pipe-max-size`), and so the most one read asks for. Only pipes seen full get it:
/// the kernel counts pipe buffers per user, and once a user's pipes hold more than
/// `pipe-user-pages-soft` (64 MiB by default), every new pipe of that user gets 8 KiB, so
/// enlarging every app's pipes up front would shrink all the others of a daemon with many apps.
const BIG_PIPE: usize = 1024 * 1024;
/// A read or format buffer above this capacity, after a burst, is given back.
const SHRINK_ABOVE: usize = 4 * READ_SIZE;

/// The two log files of an app.
#[must_use]
pub fn paths(log_dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        log_dir.join(format!("{name}-out.log")),
        log_dir.join(format!("{name}-err.log")),
    )
}

/// Opens (creating 0640) a log file for appending. `O_NOFOLLOW`: a symlink planted in the log
/// directory is refused (`ELOOP`) rather than written through (the directory is also checked
/// to be the daemon's own at start-up: `storage::check_private_dir`).
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Which pipe a record came from (one enum for the daemon, the keeper and the CLI).
pub use turbo_api::LogStream as Stream;

/// The log files of one app, shared by every capture of its processes. Cloning is cheap (one
/// `Arc`); all clones write the same files.
#[derive(Clone, Debug)]
pub struct AppLogs(Arc<Mutex<Files>>);

#[derive(Debug)]
struct Files {
    /// The app name as a JSON string, quotes included, ready to copy into json records.
    app_json: Vec<u8>,
    policy: LogPolicy,
    out: Sink,
    err: Sink,
}

impl AppLogs {
    /// Opens (creating 0640, appending) `<dir>/<app>-out.log` and `<dir>/<app>-err.log`.
    ///
    /// # Errors
    /// `cannot open log file <path>: <error>`.
    pub fn open(dir: &Path, app: &str, policy: &LogPolicy) -> io::Result<AppLogs> {
        let (out, err) = paths(dir, app);
        let mut app_json = Vec::with_capacity(app.len() + 2);
        push_json_str(&mut app_json, app);
        Ok(AppLogs(Arc::new(Mutex::new(Files {
            app_json,
            policy: policy.clone(),
            out: Sink::open(out)?,
            err: Sink::open(err)?,
        }))))
    }

    /// Uses `policy` from the next write on. Fewer `keep` deletes the surplus rotated files now; a
    /// smaller `max_size` rotates on the next write.
    pub fn set_policy(&self, policy: &LogPolicy) {
        let mut files = self.lock();
        let files = &mut *files;
        let fewer = policy.keep < files.policy.keep;
        files.policy = policy.clone();
        if fewer {
            for sink in [&files.out, &files.err] {
                if let Err(e) = prune(&sink.path, policy.keep) {
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
    pub fn capture(&self, stdout: OwnedFd, stderr: OwnedFd) -> Capture {
        let tail = StderrTail::default();
        let logs = self.clone();
        let err_tail = tail.clone();
        let done = tokio::spawn(async move {
            let logs = &logs;
            let mut out_records = Records::default();
            let mut err_records = Records::default();
            let out = pump(stdout, move |data, lines| {
                logs.append(Stream::Out, data, lines, &mut out_records);
            });
            let err = pump(stderr, move |data, lines| {
                logs.append(Stream::Err, data, lines, &mut err_records);
                err_tail.push(data, lines);
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
        for sink in [&mut files.out, &mut files.err] {
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
        (files.out.path.clone(), files.err.path.clone())
    }

    /// Bytes appended to each file, and bytes of records that could not be written (a full
    /// disk, an I/O error) and were dropped, since these files were opened: `(stream, written,
    /// dropped)`, stdout first.
    #[must_use]
    pub fn counters(&self) -> [(Stream, u64, u64); 2] {
        let files = self.lock();
        [
            (Stream::Out, files.out.written, files.out.dropped),
            (Stream::Err, files.err.written, files.err.dropped),
        ]
    }

    /// Formats and appends one batch of records of `stream`. The lock is held across formatting
    /// and writing so the policy, the size count and a rotation all see the same state.
    pub(crate) fn append(
        &self,
        stream: Stream,
        data: &[u8],
        lines: &[Range<usize>],
        records: &mut Records,
    ) {
        let stamp = timestamp();
        let mut files = self.lock();
        let files = &mut *files;
        records.format(
            files.policy.format,
            &stamp,
            &files.app_json,
            stream,
            data,
            lines,
        );
        let sink = match stream {
            Stream::Out => &mut files.out,
            Stream::Err => &mut files.err,
        };
        sink.write_records(records, &files.policy);
        if records.buf.len() <= READ_SIZE {
            give_back(&mut records.buf, 2 * READ_SIZE);
            give_back(&mut records.ends, 0);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Files> {
        // a panic while holding the lock leaves consistent enough state: at worst a size count off
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
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

    pub(crate) fn push(&self, data: &[u8], lines: &[Range<usize>]) {
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

fn tail_text(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() <= TAIL_LINE_MAX {
        return String::from_utf8_lossy(line).into_owned();
    }
    let cut = char_start(line, TAIL_LINE_MAX, 0);
    let mut text = String::from_utf8_lossy(&line[..cut]).into_owned();
    text.push('…');
    text
}

/// Reads `fd` to its end, handing each batch of records (ranges of the buffer, newline excluded)
/// to `on_batch`: a [`Pump`] driven by tokio's readiness.
async fn pump(fd: OwnedFd, mut on_batch: impl FnMut(&[u8], &[Range<usize>])) {
    let rx = match pipe::Receiver::from_owned_fd(fd) {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!("cannot watch an output pipe: {e}");
            return;
        }
    };
    let mut pump = Pump::default();
    let mut buf = Vec::new();
    let mut lines = Vec::new();
    loop {
        if let Err(e) = rx.readable().await {
            tracing::warn!("cannot watch an output pipe: {e}");
            break;
        }
        // try_read_buf clears tokio's readiness on EAGAIN, so the next await really waits
        let step = pump.step(
            rx.as_raw_fd(),
            &mut buf,
            &mut lines,
            |b| rx.try_read_buf(b),
            &mut on_batch,
        );
        if step == Step::End {
            break;
        }
    }
}

/// What one [`Pump::step`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Bytes were read (records may have been handed on).
    Read,
    /// Nothing to read now.
    Empty,
    /// The pipe reached its end (or failed); everything read was handed on.
    End,
}

/// The reading state of one pipe: the unfinished last line and how much to ask for. The read
/// and record buffers are the caller's, so the log keeper shares one pair among all its pipes
/// and a quiet pipe costs only its unfinished line.
///
/// A read asks for [`READ_SIZE`] bytes at first. When one takes everything it asked for, the app
/// writes faster than the reader wakes up: the pipe is enlarged once to [`BIG_PIPE`] (so the app
/// blocks less and each wake-up finds more) and reads ask for twice as much, up to the pipe's
/// size; when reads come back half empty they ask for less again, and buffers grown by a burst
/// are given back.
#[derive(Debug)]
pub(crate) struct Pump {
    /// The unfinished line, put back in front of the next read.
    carry: Vec<u8>,
    want: usize,
    pipe_size: Option<usize>,
    big_pipe: BigPipe,
}

impl Default for Pump {
    fn default() -> Self {
        Self {
            carry: Vec::new(),
            want: READ_SIZE,
            pipe_size: None,
            big_pipe: BigPipe(false),
        }
    }
}

impl Pump {
    /// One read of `fd` through `read` (which appends to the buffer it is given, or fails with
    /// `WouldBlock` when the pipe is empty), handing the complete records to `on_batch`; at the
    /// end of the pipe, the unfinished rest too.
    pub(crate) fn step(
        &mut self,
        fd: RawFd,
        buf: &mut Vec<u8>,
        lines: &mut Vec<Range<usize>>,
        read: impl FnOnce(&mut Vec<u8>) -> io::Result<usize>,
        on_batch: &mut impl FnMut(&[u8], &[Range<usize>]),
    ) -> Step {
        buf.clear();
        buf.append(&mut self.carry);
        buf.reserve(self.want);
        let n = match read(buf) {
            Ok(0) => return self.finish(buf, lines, on_batch),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.carry.extend_from_slice(buf);
                return Step::Empty;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.carry.extend_from_slice(buf);
                return Step::Read;
            }
            Err(e) => {
                tracing::warn!("reading an app's output failed: {e}");
                return self.finish(buf, lines, on_batch);
            }
        };
        // nearly all that was asked: the pipe was (close to) full, as a 64 KiB pipe holding a
        // writer's 65,500-byte write is
        if n >= self.want / 4 * 3 {
            let size = *self
                .pipe_size
                .get_or_insert_with(|| self.big_pipe.enlarge(fd));
            self.want = (self.want * 2).min(size.max(READ_SIZE));
        } else if n < self.want / 4 {
            self.want = (self.want / 2).max(READ_SIZE);
        }
        let used = split_lines(buf, false, lines);
        if !lines.is_empty() {
            on_batch(buf, lines);
        }
        self.carry.extend_from_slice(&buf[used..]);
        if self.want == READ_SIZE {
            give_back(buf, 2 * READ_SIZE);
            give_back(lines, 0);
            give_back(&mut self.carry, 0);
        }
        Step::Read
    }

    fn finish(
        &mut self,
        buf: &[u8],
        lines: &mut Vec<Range<usize>>,
        on_batch: &mut impl FnMut(&[u8], &[Range<usize>]),
    ) -> Step {
        split_lines(buf, true, lines);
        if !lines.is_empty() {
            on_batch(buf, lines);
        }
        self.carry = Vec::new();
        Step::End
    }
}

/// `read(2)` of a non-blocking `fd` into the spare capacity of `buf`.
pub(crate) fn read_into(fd: RawFd, buf: &mut Vec<u8>) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: reads at most `spare.len()` bytes into memory `buf` owns and has not initialised.
    let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: the kernel initialised the first `n` spare bytes.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Fills `lines` with the records of `buf`: each complete line (newline excluded), cut into
/// pieces of at most [`MAX_LINE`]; then pieces of an unfinished line while more than
/// [`MAX_LINE`] of it is there; then, at `eof`, the unfinished rest. Returns the bytes consumed.
fn split_lines(buf: &[u8], eof: bool, lines: &mut Vec<Range<usize>>) -> usize {
    lines.clear();
    let mut start = 0;
    while let Some(pos) = find_newline(&buf[start..]) {
        let last = cut_pieces(buf, start..start + pos, lines);
        lines.push(last); // even when empty: an empty line is a record
        start += pos + 1;
    }
    // an unfinished line of exactly MAX_LINE is not cut yet: its newline may come next
    let rest = cut_pieces(buf, start..buf.len(), lines);
    if eof && !rest.is_empty() {
        lines.push(rest.clone());
        return rest.end;
    }
    rest.start
}

/// Shrinks `v` to `keep` elements of room when a burst left it holding more than [`SHRINK_ABOVE`]
/// bytes of capacity.
fn give_back<T>(v: &mut Vec<T>, keep: usize) {
    if v.capacity() * size_of::<T>() > SHRINK_ABOVE {
        v.shrink_to(keep);
    }
}

/// How many pipes are enlarged to [`BIG_PIPE`] right now, for [`big_pipe_budget`].
static BIG_PIPES: AtomicUsize = AtomicUsize::new(0);

/// How many pipes may be enlarged at once: a quarter of `pipe-user-pages-soft`, so this daemon
/// alone never brings its user near the limit that would shrink every new pipe of that user.
fn big_pipe_budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let soft_pages = fs::read_to_string("/proc/sys/fs/pipe-user-pages-soft")
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok())
            .unwrap_or(16_384);
        if soft_pages == 0 {
            return usize::MAX; // no soft limit
        }
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        soft_pages / 4 / (BIG_PIPE / page).max(1)
    })
}

/// One capture's share of [`BIG_PIPES`], given back when the capture (and so the pipe) ends.
#[derive(Debug)]
struct BigPipe(bool);

impl BigPipe {
    /// Enlarges the pipe behind `rx` to [`BIG_PIPE`] if the budget allows, and returns its size
    /// afterwards. A refusal (budget, per-user limits, a lower `pipe-max-size`) is not an error:
    /// the pipe keeps its size, which is returned.
    fn enlarge(&mut self, fd: RawFd) -> usize {
        let taken = BIG_PIPES
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < big_pipe_budget()).then_some(n + 1)
            })
            .is_ok();
        let mut size = -1;
        if taken {
            let want = libc::c_int::try_from(BIG_PIPE).unwrap_or(libc::c_int::MAX);
            // SAFETY: fcntl on a pipe fd that `rx` keeps open.
            size = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, want) };
            if size < 0 {
                tracing::debug!(
                    "cannot enlarge an output pipe: {}",
                    io::Error::last_os_error()
                );
                BIG_PIPES.fetch_sub(1, Ordering::Relaxed);
            } else {
                self.0 = true;
            }
        }
        if size < 0 {
            // SAFETY: as above.
            size = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
        }
        usize::try_from(size).unwrap_or(READ_SIZE)
    }
}

impl Drop for BigPipe {
    fn drop(&mut self) {
        if self.0 {
            BIG_PIPES.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The position of the first `\n` in `bytes`: the C library's `memchr`, which looks at 16 to 64
/// bytes per instruction where a plain byte loop looks at one (that loop was the daemon's biggest
/// cost under a log flood).
fn find_newline(bytes: &[u8]) -> Option<usize> {
    // SAFETY: memchr reads at most `bytes.len()` bytes from the start of a live slice.
    let found = unsafe { libc::memchr(bytes.as_ptr().cast(), i32::from(b'\n'), bytes.len()) };
    if found.is_null() {
        return None;
    }
    // SAFETY: a non-null result points into `bytes`, so both pointers are in one allocation.
    let offset = unsafe { found.cast::<u8>().cast_const().offset_from(bytes.as_ptr()) };
    usize::try_from(offset).ok()
}

/// Pushes the leading pieces of `range` while more than [`MAX_LINE`] is left; returns the rest
/// (not empty when anything was cut).
fn cut_pieces(buf: &[u8], mut range: Range<usize>, lines: &mut Vec<Range<usize>>) -> Range<usize> {
    while range.len() > MAX_LINE {
        let cut = char_start(buf, range.start + MAX_LINE, range.start);
        lines.push(range.start..cut);
        range.start = cut;
    }
    range
}

/// `at`, moved back (by at most 3 bytes, never to `min`) to the start of a UTF-8 character, so a
/// cut does not split one; unchanged when the bytes there are not UTF-8 anyway.
fn char_start(buf: &[u8], at: usize, min: usize) -> usize {
    let is_continuation = |i: usize| buf.get(i).is_some_and(|&b| b & 0xC0 == 0x80);
    (at.saturating_sub(3).max(min + 1)..=at)
        .rev()
        .find(|&i| !is_continuation(i))
        .unwrap_or(at)
}

/// One batch of formatted records and where each ends.
#[derive(Debug, Default)]
pub(crate) struct Records {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Records {
    fn format(
        &mut self,
        format: LogFormat,
        stamp: &str,
        app_json: &[u8],
        stream: Stream,
        data: &[u8],
        lines: &[Range<usize>],
    ) {
        self.buf.clear();
        self.ends.clear();
        // enough for text records (lines come from `data`), so the loop never reallocates
        self.buf
            .reserve(data.len() + lines.len() * (stamp.len() + 2));
        self.ends.reserve(lines.len());
        for range in lines {
            let line = &data[range.clone()];
            match format {
                LogFormat::Text => {
                    self.buf.extend_from_slice(stamp.as_bytes());
                    self.buf.push(b' ');
                    self.buf.extend_from_slice(line);
                }
                LogFormat::Json => {
                    self.buf.extend_from_slice(b"{\"at\":\"");
                    self.buf.extend_from_slice(stamp.as_bytes());
                    self.buf.extend_from_slice(b"\",\"app\":");
                    self.buf.extend_from_slice(app_json);
                    self.buf.extend_from_slice(b",\"stream\":\"");
                    self.buf.extend_from_slice(stream.as_str().as_bytes());
                    self.buf.extend_from_slice(b"\",\"line\":");
                    if let Ok(text) = std::str::from_utf8(line) {
                        push_json_str(&mut self.buf, text);
                    } else {
                        push_json_str(&mut self.buf, &String::from_utf8_lossy(line));
                        self.buf.extend_from_slice(b",\"line_b64\":\"");
                        push_base64(&mut self.buf, line);
                        self.buf.push(b'"');
                    }
                    self.buf.push(b'}');
                }
            }
            self.buf.push(b'\n');
            self.ends.push(self.buf.len());
        }
    }
}

/// One log file being appended to.
#[derive(Debug)]
struct Sink {
    path: PathBuf,
    file: File,
    /// Bytes in the file, counted rather than asked for on every write.
    size: u64,
    /// A write failed and was logged; stay quiet until one succeeds.
    failing: bool,
    /// Record bytes written since the file was opened (a metric: `turbo_log_bytes_total`).
    written: u64,
    /// Record bytes that could not be written and were dropped (`turbo_log_dropped_bytes_total`).
    dropped: u64,
}

impl Sink {
    fn open(path: PathBuf) -> io::Result<Sink> {
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
        })
    }

    /// Appends whole records, rotating before one that would not fit: as many records per
    /// `write(2)` as fit in the current file.
    fn write_records(&mut self, records: &Records, policy: &LogPolicy) {
        let limit = if policy.max_size == 0 {
            u64::MAX
        } else {
            policy.max_size
        };
        let (mut start, mut i) = (0, 0);
        while i < records.ends.len() {
            let room = limit.saturating_sub(self.size);
            let fit = records.ends[i..].partition_point(|&end| (end - start) as u64 <= room);
            let take = match fit {
                0 if self.size > 0 => {
                    self.rotate(policy.keep);
                    continue;
                }
                // a record bigger than a whole file: alone in a fresh file rather than cut
                0 => 1,
                n => n,
            };
            let end = records.ends[i + take - 1];
            self.write(&records.buf[start..end]);
            (start, i) = (end, i + take);
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

    fn rotate(&mut self, keep: u32) {
        if let Err(e) = self.try_rotate(keep) {
            tracing::warn!("cannot rotate {}: {e}; writing on", self.path.display());
        }
        // also after a failure: the next attempt comes after another max_size bytes, not at once
        self.size = 0;
    }

    fn try_rotate(&mut self, keep: u32) -> io::Result<()> {
        // whatever would be shifted past `keep` goes first
        prune(&self.path, keep.saturating_sub(1))?;
        for (n, old) in rotated(&self.path)?.into_iter().rev() {
            fs::rename(&old, numbered(&self.path, n + 1))?;
        }
        let moved = if keep == 0 {
            fs::remove_file(&self.path)
        } else {
            fs::rename(&self.path, numbered(&self.path, 1))
        };
        match moved {
            // deleted behind our back: reopening is all there is to do
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.file = open_append(&self.path)?;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
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

/// `<path>.<n>`.
fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The rotated files of `path` (`<path>.<n>`, n ≥ 1), by increasing `n`.
fn rotated(path: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(name) = path.file_name() else {
        return Ok(Vec::new());
    };
    let list_error =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot list {}: {e}", dir.display()));
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let file_name = entry.file_name();
        let Some(suffix) = file_name
            .as_bytes()
            .strip_prefix(name.as_bytes())
            .and_then(|s| s.strip_prefix(b"."))
        else {
            continue;
        };
        if suffix.first().is_some_and(|&b| b != b'0')
            && suffix.iter().all(u8::is_ascii_digit)
            && let Some(n) = std::str::from_utf8(suffix)
                .ok()
                .and_then(|s| s.parse().ok())
        {
            found.push((n, dir.join(&file_name)));
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Deletes the rotated files of `path` numbered above `keep`.
fn prune(path: &Path, keep: u32) -> io::Result<()> {
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

/// Appends `s` as a JSON string (RFC 8259: `"`, `\` and control characters escaped).
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut copied = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[copied..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        copied = i + 1;
    }
    out.extend_from_slice(&bytes[copied..]);
    out.push(b'"');
}

/// Appends `data` in standard base64 with padding (RFC 4648 §4).
fn push_base64(out: &mut Vec<u8>, data: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextet = |n: u32, shift: u32| ALPHABET[((n >> shift) & 63) as usize];
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        out.extend_from_slice(&[sextet(n, 18), sextet(n, 12), sextet(n, 6), sextet(n, 0)]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend_from_slice(&[sextet(n, 18), sextet(n, 12), b'=', b'=']);
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            out.extend_from_slice(&[sextet(n, 18), sextet(n, 12), sextet(n, 6), b'=']);
        }
        _ => {}
    }
}

fn timestamp() -> String {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    turbo_api::rfc3339_ms(ms)
}

#[cfg(test)]
mod tests {
    use std::{
        os::fd::{AsRawFd as _, FromRawFd, OwnedFd},
        thread,
        time::Duration,
    };

    use serde_json::Value;

    use super::*;

    /// A pipe whose write end blocks (the writer is a thread), like an app's.
    fn pipe() -> (OwnedFd, File) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two fds we then own.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh fds from pipe2.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        (r, File::from(w))
    }

    /// Writes each piece in turn from a thread, then closes the pipe.
    fn feed(mut w: File, pieces: Vec<Vec<u8>>) -> thread::JoinHandle<()> {
        thread::spawn(move || {
            for piece in pieces {
                w.write_all(&piece).unwrap();
            }
        })
    }

    fn policy(format: LogFormat, max_size: u64, keep: u32) -> LogPolicy {
        LogPolicy {
            format,
            max_size,
            keep,
        }
    }

    /// Runs one process's worth of capture: `out` and `err` pieces, until both pipes close.
    async fn run(logs: &AppLogs, out: Vec<Vec<u8>>, err: Vec<Vec<u8>>) -> Vec<String> {
        let ((out_r, out_w), (err_r, err_w)) = (pipe(), pipe());
        let capture = logs.capture(out_r, err_r);
        let writers = [feed(out_w, out), feed(err_w, err)];
        tokio::time::timeout(Duration::from_secs(20), capture.done)
            .await
            .expect("capture ends after EOF")
            .unwrap();
        for w in writers {
            w.join().unwrap();
        }
        capture.stderr_tail.lines()
    }

    fn read(path: &Path) -> Vec<u8> {
        fs::read(path).unwrap_or_default()
    }

    /// Splits a text-format file into (stamp, line) pairs, checking every stamp.
    fn text_records(bytes: &[u8]) -> Vec<Vec<u8>> {
        assert!(
            bytes.is_empty() || bytes.ends_with(b"\n"),
            "ends mid-record"
        );
        bytes
            .split_inclusive(|&b| b == b'\n')
            .map(|rec| {
                let rec = &rec[..rec.len() - 1];
                let stamp = std::str::from_utf8(&rec[..24]).unwrap();
                assert!(
                    stamp.len() == 24
                        && stamp.ends_with('Z')
                        && stamp.as_bytes()[10] == b'T'
                        && stamp.as_bytes()[19] == b'.',
                    "{stamp}"
                );
                assert_eq!(rec[24], b' ');
                rec[25..].to_vec()
            })
            .collect()
    }

    fn json_records(bytes: &[u8]) -> Vec<Value> {
        std::str::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn b64_decode(s: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        };
        let mut out = Vec::new();
        for quad in s.as_bytes().chunks(4) {
            let pad = quad.iter().filter(|&&c| c == b'=').count();
            let n = quad
                .iter()
                .take(4 - pad)
                .fold(0u32, |n, &c| n << 6 | u32::from(value(c)))
                << (6 * pad);
            out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8][..3 - pad]);
        }
        out
    }

    /// The raw bytes of a json record's line.
    fn raw_line(rec: &Value) -> Vec<u8> {
        match rec.get("line_b64") {
            Some(b) => b64_decode(b.as_str().unwrap()),
            None => rec["line"].as_str().unwrap().as_bytes().to_vec(),
        }
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = Vec::new();
            push_base64(&mut out, plain.as_bytes());
            assert_eq!(out, encoded.as_bytes());
            assert_eq!(b64_decode(encoded), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        let mut out = Vec::new();
        push_base64(&mut out, &all);
        assert_eq!(b64_decode(std::str::from_utf8(&out).unwrap()), all);
    }

    #[test]
    fn splitting_lines_keeps_unfinished_ones_and_cuts_long_ones() {
        let mut lines = Vec::new();
        let used = split_lines(b"a\n\nbc\nde", false, &mut lines);
        assert_eq!((lines.clone(), used), (vec![0..1, 2..2, 3..5], 6));
        assert_eq!(split_lines(b"de", true, &mut lines), 2);
        assert_eq!(lines, [Range { start: 0, end: 2 }]);
        assert_eq!(split_lines(b"", true, &mut lines), 0);
        assert!(lines.is_empty());

        // exactly MAX_LINE unfinished: wait, its newline may be next
        let exact = vec![b'x'; MAX_LINE];
        assert_eq!(split_lines(&exact, false, &mut lines), 0);
        assert!(lines.is_empty());
        let mut with_newline = exact.clone();
        with_newline.push(b'\n');
        assert_eq!(split_lines(&with_newline, false, &mut lines), MAX_LINE + 1);
        assert_eq!(
            lines,
            [Range {
                start: 0,
                end: MAX_LINE
            }]
        );
        // one more byte: cut, and the rest waits
        let over = vec![b'x'; MAX_LINE + 1];
        assert_eq!(split_lines(&over, false, &mut lines), MAX_LINE);
        assert_eq!(
            lines,
            [Range {
                start: 0,
                end: MAX_LINE
            }]
        );
        // a cut backs off to a character boundary: 'é' is 2 bytes, the cut would halve one
        let mut accents = b"x".to_vec();
        accents.extend("é".repeat(MAX_LINE / 2).as_bytes());
        assert_eq!(split_lines(&accents, false, &mut lines), MAX_LINE - 1);
        assert_eq!(
            lines,
            [Range {
                start: 0,
                end: MAX_LINE - 1
            }]
        );
    }

    #[test]
    fn newlines_are_found_anywhere_or_not_at_all() {
        assert_eq!(find_newline(b""), None);
        assert_eq!(find_newline(b"\n"), Some(0));
        assert_eq!(find_newline(b"abc"), None);
        assert_eq!(find_newline(b"ab\ncd\n"), Some(2));
        let mut long = vec![b'x'; 100_001];
        assert_eq!(find_newline(&long), None);
        long[100_000] = b'\n';
        assert_eq!(find_newline(&long), Some(100_000));
        assert_eq!(find_newline(&long[1..]), Some(99_999));
    }

    #[test]
    fn buffers_grown_by_a_burst_are_given_back() {
        let mut small: Vec<u8> = Vec::with_capacity(2 * READ_SIZE);
        give_back(&mut small, 0);
        assert!(small.capacity() >= 2 * READ_SIZE, "not above the threshold");
        let mut big: Vec<u8> = Vec::with_capacity(BIG_PIPE);
        big.extend_from_slice(b"kept");
        give_back(&mut big, 2 * READ_SIZE);
        assert!(big.capacity() < SHRINK_ABOVE);
        assert_eq!(big, b"kept");
        let mut ranges: Vec<Range<usize>> = Vec::with_capacity(100_000);
        give_back(&mut ranges, 0);
        assert!(ranges.capacity() * size_of::<Range<usize>>() <= SHRINK_ABOVE);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_flooding_app_gets_a_bigger_pipe_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let logs = AppLogs::open(dir.path(), "flood", &LogPolicy::default()).unwrap();
        let ((out_r, mut out_w), (err_r, err_w)) = (pipe(), pipe());
        let capture = logs.capture(out_r, err_r);
        drop(err_w);
        let lines = 40_000;
        let text: String = (0..lines)
            .map(|i| format!("{i:010} {}\n", "x".repeat(88)))
            .collect();
        // a writer like the bench's: 65,500 bytes a write, so a full default pipe reads as less
        // than 64 KiB
        let writer = thread::spawn(move || {
            for piece in text.as_bytes().chunks(65_500) {
                out_w.write_all(piece).unwrap();
            }
            // SAFETY: F_GETPIPE_SZ on a pipe fd we own.
            let size = unsafe { libc::fcntl(out_w.as_raw_fd(), libc::F_GETPIPE_SZ) };
            usize::try_from(size).unwrap()
        });
        tokio::time::timeout(Duration::from_secs(20), capture.done)
            .await
            .expect("capture ends after EOF")
            .unwrap();
        let size = writer.join().unwrap();
        assert!(
            size == BIG_PIPE || big_pipe_budget() == 0,
            "pipe of {size} bytes"
        );
        let records = text_records(&read(&logs.paths().0));
        assert_eq!(records.len(), lines);
        for (i, rec) in records.iter().enumerate() {
            assert_eq!(rec.len(), 99);
            assert_eq!(&rec[..10], format!("{i:010}").as_bytes());
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn text_lines_get_timestamps_and_partial_lines_wait_for_their_newline() {
        let dir = tempfile::tempdir().unwrap();
        let logs = AppLogs::open(dir.path(), "app", &LogPolicy::default()).unwrap();
        let pieces = [&b"one\ntwo\nthr"[..], b"ee\n", b"\xff raw\r\n", b"four"];
        run(
            &logs,
            pieces.map(<[u8]>::to_vec).to_vec(),
            vec![b"e1\n".to_vec()],
        )
        .await;
        let (out, err) = logs.paths();
        assert_eq!(out, dir.path().join("app-out.log"));
        let lines = text_records(&read(&out));
        assert_eq!(
            lines,
            [&b"one"[..], b"two", b"three", b"\xff raw\r", b"four"],
            "raw bytes, last line kept at EOF"
        );
        assert_eq!(text_records(&read(&err)), [b"e1"]);
        for path in [out, err] {
            let mode = fs::metadata(&path).unwrap().permissions();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
                0o640
            );
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_200_kib_line_is_cut_into_pieces_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let logs = AppLogs::open(dir.path(), "big", &LogPolicy::default()).unwrap();
        let long: Vec<u8> = (0..200 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
        let mut data = b"before\n".to_vec();
        data.extend(&long);
        data.extend(b"\nafter\n");
        // small writes, so the line arrives over many reads
        run(
            &logs,
            data.chunks(5000).map(<[u8]>::to_vec).collect(),
            vec![],
        )
        .await;
        let lines = text_records(&read(&logs.paths().0));
        assert_eq!(lines.len(), 6, "before, 4 pieces, after");
        assert_eq!(
            (&lines[0][..], &lines[5][..]),
            (&b"before"[..], &b"after"[..])
        );
        assert!(lines[1..5].iter().all(|l| l.len() <= MAX_LINE));
        assert_eq!(lines[1..5].concat(), long);

        // json: pieces of a multi-byte text stay valid UTF-8 (no line_b64 needed)
        logs.set_policy(&policy(LogFormat::Json, 10 << 20, 5));
        logs.flush().unwrap();
        let text = "é€".repeat(40_000);
        run(&logs, vec![format!("{text}\n").into_bytes()], vec![]).await;
        let recs = json_records(&read(&logs.paths().0));
        assert!(recs.len() > 1);
        assert!(recs.iter().all(|r| r.get("line_b64").is_none()));
        let joined: String = recs.iter().map(|r| r["line"].as_str().unwrap()).collect();
        assert_eq!(joined, text);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn json_records_round_trip_any_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let logs =
            AppLogs::open(dir.path(), "j.s-on", &policy(LogFormat::Json, 1 << 20, 2)).unwrap();
        let lines: Vec<&[u8]> = vec![
            b"plain",
            b"",
            b"quote \" backslash \\ tab \t ctrl \x01\x1f del \x7f cr \r",
            "caf\u{e9} \u{2028} \u{1F600}".as_bytes(),
            b"\xff\xfe\x00 binary \x80",
            b"cut \xe2\x82",
        ];
        let mut data = lines.join(&b"\n"[..]);
        data.push(b'\n');
        run(&logs, vec![data], vec![b"on err".to_vec()]).await;
        let recs = json_records(&read(&logs.paths().0));
        assert_eq!(recs.len(), lines.len());
        for (rec, want) in recs.iter().zip(&lines) {
            assert_eq!(raw_line(rec), *want, "{rec}");
            assert_eq!(
                rec.get("line_b64").is_some(),
                std::str::from_utf8(want).is_err(),
                "base64 only when needed: {rec}"
            );
            assert_eq!(
                (&rec["app"], &rec["stream"]),
                (&"j.s-on".into(), &"out".into())
            );
            let at = rec["at"].as_str().unwrap();
            assert!(at.len() == 24 && at.ends_with('Z'), "{at}");
            let keys: Vec<&String> = rec.as_object().unwrap().keys().collect();
            assert!(keys.len() <= 5, "{keys:?}");
        }
        assert_eq!(recs[4]["line"], "\u{FFFD}\u{FFFD}\u{0} binary \u{FFFD}");
        let err = json_records(&read(&logs.paths().1));
        assert_eq!(
            (&err[0]["stream"], &err[0]["line"]),
            (&"err".into(), &"on err".into())
        );
    }

    /// The numbered lines found in `path`, `.1`, ... oldest first, checking each file's size.
    fn numbered_lines(path: &Path, max_size: u64) -> (Vec<u32>, usize) {
        let rotated = rotated(path).unwrap();
        let mut numbers = Vec::new();
        for file in rotated.iter().rev().map(|(_, p)| p.as_path()).chain([path]) {
            let bytes = read(file);
            assert!(
                bytes.len() as u64 <= max_size,
                "{} is too big",
                file.display()
            );
            assert!(!bytes.is_empty(), "{} is empty", file.display());
            for line in text_records(&bytes) {
                let line = String::from_utf8(line).unwrap();
                numbers.push(line.strip_prefix("line ").unwrap().parse::<u32>().unwrap());
            }
        }
        (numbers, rotated.len())
    }

    fn numbered_input(range: Range<u32>) -> Vec<Vec<u8>> {
        let text: String = range.map(|i| format!("line {i:05}\n")).collect();
        // uneven writes, so batches of many sizes meet the size limit
        let mut pieces = Vec::new();
        let mut rest = text.as_bytes();
        for size in [1, 7, 300, 36, 35, 1000, 4096].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*size).min(rest.len()));
            pieces.push(piece.to_vec());
            rest = tail;
        }
        pieces
    }

    #[tokio::test(flavor = "current_thread")]
    async fn rotation_keeps_whole_lines_once_and_at_most_keep_files() {
        let dir = tempfile::tempdir().unwrap();
        // 36 bytes a record: 1024 holds 28 of them
        let logs = AppLogs::open(dir.path(), "rot", &policy(LogFormat::Text, 1024, 3)).unwrap();
        let out = logs.paths().0;
        run(&logs, numbered_input(0..2000), vec![]).await;
        let (numbers, files) = numbered_lines(&out, 1024);
        assert_eq!(files, 3, "exactly keep rotated files");
        assert!(!numbered(&out, 4).exists());
        let first = numbers[0];
        assert!(first > 0);
        assert_eq!(
            numbers,
            (first..2000).collect::<Vec<_>>(),
            "a suffix, in order, once"
        );

        // with room for everything, nothing is lost across 70-odd rotations
        let dir = tempfile::tempdir().unwrap();
        let logs = AppLogs::open(dir.path(), "rot", &policy(LogFormat::Text, 1024, 500)).unwrap();
        run(&logs, numbered_input(0..2000), vec![]).await;
        let (numbers, files) = numbered_lines(&logs.paths().0, 1024);
        assert!(files > 60, "{files}");
        assert_eq!(numbers, (0..2000).collect::<Vec<_>>());

        // fewer to keep: the surplus goes at once; more lines rotate on the same owner
        logs.set_policy(&policy(LogFormat::Text, 1024, 2));
        assert_eq!(rotated(&logs.paths().0).unwrap().len(), 2);
        run(&logs, numbered_input(2000..2100), vec![]).await;
        let (numbers, files) = numbered_lines(&logs.paths().0, 1024);
        assert_eq!(files, 2);
        assert_eq!(numbers.last(), Some(&2099));
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_record_bigger_than_max_size_goes_alone_into_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let logs = AppLogs::open(dir.path(), "huge", &policy(LogFormat::Text, 1024, 10)).unwrap();
        let huge = "h".repeat(3000);
        run(&logs, vec![format!("a\n{huge}\nb\n").into_bytes()], vec![]).await;
        let out = logs.paths().0;
        assert_eq!(text_records(&read(&numbered(&out, 2))), [b"a"]);
        assert_eq!(text_records(&read(&numbered(&out, 1))), [huge.as_bytes()]);
        assert_eq!(text_records(&read(&out)), [b"b"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_old_and_a_new_process_share_rotation_without_losing_lines() {
        let dir = tempfile::tempdir().unwrap();
        let logs = AppLogs::open(dir.path(), "two", &policy(LogFormat::Text, 2048, 1000)).unwrap();
        let lines = |tag: &str| -> Vec<Vec<u8>> {
            (0..3000)
                .map(|i| format!("{tag} {i}\n").into_bytes())
                .collect()
        };
        let ((a_r, a_w), (b_r, b_w), (e1_r, e1_w), (e2_r, e2_w)) = (pipe(), pipe(), pipe(), pipe());
        let old = logs.capture(a_r, e1_r);
        let new = logs.capture(b_r, e2_r);
        let writers = [
            feed(a_w, lines("old")),
            feed(b_w, lines("new")),
            feed(e1_w, vec![]),
            feed(e2_w, vec![]),
        ];
        let (x, y) = tokio::join!(old.done, new.done);
        x.unwrap();
        y.unwrap();
        writers.into_iter().for_each(|w| w.join().unwrap());
        let out = logs.paths().0;
        let mut seen = vec![Vec::new(), Vec::new()];
        for file in rotated(&out)
            .unwrap()
            .iter()
            .rev()
            .map(|(_, p)| p.clone())
            .chain([out])
        {
            assert!(read(&file).len() <= 2048);
            for line in text_records(&read(&file)) {
                let line = String::from_utf8(line).unwrap();
                let (tag, n) = line.split_once(' ').unwrap();
                seen[usize::from(tag == "new")].push(n.parse::<u32>().unwrap());
            }
        }
        for numbers in seen {
            assert_eq!(numbers, (0..3000).collect::<Vec<_>>());
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn flush_empties_current_files_and_deletes_rotated_ones() {
        let dir = tempfile::tempdir().unwrap();
        let logs = AppLogs::open(dir.path(), "fl", &policy(LogFormat::Text, 1024, 3)).unwrap();
        run(&logs, numbered_input(0..200), numbered_input(0..200)).await;
        let (out, err) = logs.paths();
        assert_eq!(rotated(&out).unwrap().len(), 3);
        assert_eq!(rotated(&err).unwrap().len(), 3);
        fs::write(dir.path().join("fl-out.log.x"), "not ours").unwrap();
        logs.flush().unwrap();
        for path in [&out, &err] {
            assert_eq!(fs::metadata(path).unwrap().len(), 0);
            assert!(rotated(path).unwrap().is_empty());
        }
        assert!(dir.path().join("fl-out.log.x").exists());
        // writing goes on from the start of the emptied file, and the size count restarted
        run(&logs, numbered_input(200..210), vec![]).await;
        assert_eq!(numbered_lines(&out, 1024), ((200..210).collect(), 0));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_stderr_tail_holds_the_last_20_lines_of_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let logs = AppLogs::open(dir.path(), "tail", &LogPolicy::default()).unwrap();
        let first = run(&logs, vec![], vec![b"old 1\nold 2\n".to_vec()]).await;
        assert_eq!(first, ["old 1", "old 2"]);
        let err: Vec<Vec<u8>> = (0..30)
            .map(|i| format!("e{i}\r\n").into_bytes())
            .chain([b"\xffunfinished".to_vec()])
            .collect();
        let tail = run(&logs, vec![b"stdout is not in it\n".to_vec()], err).await;
        let want: Vec<String> = (11..30)
            .map(|i| format!("e{i}"))
            .chain(["\u{FFFD}unfinished".to_owned()])
            .collect();
        assert_eq!(tail, want, "only this process, newest last");
        let long = run(&logs, vec![], vec![vec![b'x'; 10_000]]).await;
        assert_eq!(long[0].len(), TAIL_LINE_MAX + '…'.len_utf8());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn done_resolves_only_when_both_streams_have_ended() {
        let dir = tempfile::tempdir().unwrap();
        let logs = AppLogs::open(dir.path(), "d", &LogPolicy::default()).unwrap();
        let ((out_r, mut out_w), (err_r, mut err_w)) = (pipe(), pipe());
        let capture = logs.capture(out_r, err_r);
        out_w.write_all(b"last words").unwrap();
        drop(out_w);
        err_w.write_all(b"still here\n").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!capture.done.is_finished(), "stderr is still open");
        assert_eq!(text_records(&read(&logs.paths().0)), [b"last words"]);
        assert_eq!(capture.stderr_tail.lines(), ["still here"]);
        drop(err_w);
        tokio::time::timeout(Duration::from_secs(5), capture.done)
            .await
            .expect("done after both EOFs")
            .unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_format_change_applies_to_the_next_lines() {
        let dir = tempfile::tempdir().unwrap();
        let logs = AppLogs::open(dir.path(), "f", &LogPolicy::default()).unwrap();
        run(&logs, vec![b"as text\n".to_vec()], vec![]).await;
        logs.set_policy(&policy(LogFormat::Json, 10 << 20, 5));
        run(&logs, vec![b"as json\n".to_vec()], vec![]).await;
        let bytes = read(&logs.paths().0);
        let (text, json) = bytes.split_at(bytes.iter().position(|&b| b == b'\n').unwrap() + 1);
        assert_eq!(text_records(text), [b"as text"]);
        assert_eq!(json_records(json)[0]["line"], "as json");
    }

    #[test]
    fn a_full_disk_drops_and_counts_records_and_writing_resumes_by_itself() {
        let data = b"one\ntwo\n";
        let mut records = Records::default();
        records.format(
            LogFormat::Text,
            "2026-01-02T03:04:05.678Z",
            b"\"a\"",
            Stream::Out,
            data,
            &[0..3, 4..7],
        );
        let batch = records.buf.len() as u64;
        // /dev/full: every write fails with ENOSPC
        let mut sink = Sink::open(PathBuf::from("/dev/full")).unwrap();
        sink.write_records(&records, &LogPolicy::default());
        sink.write_records(&records, &LogPolicy::default());
        assert_eq!((sink.written, sink.dropped), (0, 2 * batch));
        assert!(sink.failing, "reported once, quiet since");
        // space again (the file under the sink is one with room): the next batch is written
        let dir = tempfile::tempdir().unwrap();
        sink.file = open_append(&dir.path().join("room.log")).unwrap();
        sink.size = 0;
        sink.write_records(&records, &LogPolicy::default());
        assert_eq!((sink.written, sink.dropped), (batch, 2 * batch));
        assert!(!sink.failing);
        assert_eq!(
            text_records(&read(&dir.path().join("room.log"))),
            [b"one", b"two"]
        );
    }

    #[test]
    fn open_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = AppLogs::open(&missing, "a", &LogPolicy::default()).unwrap_err();
        let want = format!(
            "cannot open log file {}",
            missing.join("a-out.log").display()
        );
        assert!(err.to_string().starts_with(&want), "{err}");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
