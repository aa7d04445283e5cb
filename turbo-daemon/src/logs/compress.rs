//! Compressing rotated log files off the writing path: one worker thread per process, so a
//! compression of a large file never delays the reading of the apps' pipes; it runs at nice 19, so that
//! on a busy host it also yields the CPU to them.
//!
//! A job names a file by its inode (it was opened right after its rotation), because while the
//! worker compresses, later rotations may shift its number. The worker writes a hidden temporary
//! file beside it (`.<name>.packing`, which no reader takes for a log), then, under the log's
//! rotation lock, finds where the file is now (`<f>.<k>`), renames the result to
//! `<f>.<k>.gz|zst` and removes the original; if the file was pruned meanwhile, the result is
//! discarded. Readers see either the plain file or the compressed one, never neither.
//!
//! The result keeps the plain file's modification time, and records the plain file's inode in
//! an extended attribute ([`logfmt::ORIGIN_XATTR`]): `turbo logs --follow`, holding the plain
//! file when it is compressed away, finds it there and reads on from the file after it.
//!
//! A keeper killed while compressing leaves its temporary file behind (hidden, never read) and
//! the plain file in place: when the next keeper opens the log, [`recover`] deletes the
//! temporary file and queues the plain rotated files that should be compressed again.
//!
//! While the process is under a flood (it wrote a batch of at least [`FLOOD_BATCH`] bytes in
//! the last [`QUIET_MS`] ms), the worker waits before it starts a file and between two pieces
//! of one, until the flood pauses, but at most [`MAX_DEFER_MS`] ms after the file's rotation:
//! on a host with few cores a compression running alongside a flood takes CPU that the keeper,
//! the writing app and the rest need, while after the burst the same work is in nobody's way.
//! A flood longer than that gets its files compressed anyway (at nice 19), each at most
//! [`MAX_DEFER_MS`] ms later than without the wait.
//!
//! This module must not decide when to rotate or what to keep (that is `sink`).

use std::{
    collections::{BTreeMap, HashMap},
    ffi::{OsStr, OsString},
    fs::{self, File},
    io::{self, BufWriter, Write as _},
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use turbo_api::logfmt::{self, Compression};

/// When a keeper opens `log`: deletes the temporary files a keeper killed while compressing
/// left (`.<name>.<inode>.packing`), and with `how`, queues the plain rotated files that should
/// be compressed (`<f>.2` and older). Done by the worker, which lists a directory once for all
/// the logs opened meanwhile ([`recover_all`]): a listing per open made starting 1,000 apps
/// quadratic (2,000 listings of a directory growing to 2,000 files, half the keeper's time).
/// Failures are logged: the files stay plain and readable.
pub(super) fn recover(log: &Path, how: Compression, lock: &Arc<Mutex<()>>) {
    send(Work::Recover(Recovery {
        log: log.to_owned(),
        how,
        lock: Arc::clone(lock),
    }));
}

/// A log just opened, to be cleaned up after (see [`recover`]).
pub(super) struct Recovery {
    pub(super) log: PathBuf,
    pub(super) how: Compression,
    /// The log's rotation lock, for the jobs it queues.
    pub(super) lock: Arc<Mutex<()>>,
}

/// What the worker is sent.
enum Work {
    /// A job, and when it is due at the latest ([`millis`]).
    Compress(Job, u64),
    Recover(Recovery),
}

/// A batch at least this big (bytes of records) means an app writes faster than the keeper
/// wakes up: its reads find the pipe full. A chatty app's batches of a few lines are smaller
/// and do not hold compression back.
pub(super) const FLOOD_BATCH: usize = 32 * 1024;
/// How long after the last flood batch the worker waits before it compresses (ms).
const QUIET_MS: u64 = 20;
/// The longest a rotated file waits for a quiet moment (ms): under a longer flood it is
/// compressed anyway.
const MAX_DEFER_MS: u64 = 2000;
/// How much of a file is compressed between two looks at whether a flood started (a fraction
/// of a millisecond of zstd's time, a few of gzip's).
pub(super) const PIECE: usize = 256 * 1024;

/// When the last flood batch was written ([`millis`]; 0: never).
static LAST_FLOOD: AtomicU64 = AtomicU64::new(0);

/// Milliseconds on the monotonic clock since this process first asked, plus one (so 0 is never
/// a time).
fn millis() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let ms = EPOCH.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX - 1) + 1
}

/// Tells the worker that a batch of `bytes` was just written to a log file.
pub(super) fn wrote(bytes: usize) {
    if bytes >= FLOOD_BATCH {
        LAST_FLOOD.store(millis(), Ordering::Relaxed);
    }
}

/// How long the worker should wait at `now` before compressing (more), given the last flood
/// batch at `flood` and a job due at `due` (all [`millis`]); `None`: go on.
pub(super) fn pause(now: u64, flood: u64, due: u64) -> Option<Duration> {
    let quiet_at = flood.saturating_add(QUIET_MS);
    let until = quiet_at.min(due);
    (flood != 0 && now < until).then(|| Duration::from_millis(until - now))
}

/// Waits while the keeper is under a flood, until `due` at the latest.
fn wait_for_quiet(due: u64) {
    while let Some(d) = pause(millis(), LAST_FLOOD.load(Ordering::Relaxed), due) {
        std::thread::sleep(d);
    }
}

/// The recoveries of `logs` (the last one per log counts), each directory listed once; returns
/// the compressions they call for.
pub(super) fn recover_all(logs: Vec<Recovery>) -> Vec<Job> {
    let mut by_dir: HashMap<PathBuf, BTreeMap<PathBuf, Recovery>> = HashMap::new();
    for r in logs {
        let dir = r.log.parent().unwrap_or(Path::new(".")).to_owned();
        by_dir.entry(dir).or_default().insert(r.log.clone(), r);
    }
    let mut jobs = Vec::new();
    for (dir, logs) in by_dir {
        let names: Vec<OsString> = match fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect(),
            Err(e) => {
                tracing::warn!("cannot list {}: {e}", dir.display());
                continue;
            }
        };
        // each name under the log it could belong to, so each log looks at its own few
        let mut by_log: HashMap<&[u8], Vec<&OsStr>> = HashMap::new();
        for name in &names {
            if let Some(log) = log_of(name.as_encoded_bytes()) {
                by_log.entry(log).or_default().push(name);
            }
        }
        for r in logs.into_values() {
            let name = r.log.file_name().unwrap_or_default();
            let mine = by_log
                .get(name.as_encoded_bytes())
                .map_or(&[][..], Vec::as_slice);
            recover_one(&r, &dir, mine, &mut jobs);
        }
    }
    jobs
}

/// The log name a leftover (`.<log>.<digits>.packing`) or a rotated file (`<log>.<digits>`,
/// maybe compressed) would belong to; the exact checks are [`recover_one`]'s.
fn log_of(name: &[u8]) -> Option<&[u8]> {
    let inner = match name
        .strip_prefix(b".")
        .and_then(|n| n.strip_suffix(b".packing"))
    {
        Some(hidden) => hidden,
        None => [Compression::Gzip, Compression::Zstd]
            .iter()
            .find_map(|c| name.strip_suffix(c.suffix().as_bytes()))
            .unwrap_or(name),
    };
    let dot = inner.iter().rposition(|&b| b == b'.')?;
    Some(&inner[..dot])
}

/// [`recover`] of one log, given the names in its directory that may be its own.
fn recover_one(r: &Recovery, dir: &Path, names: &[&OsStr], jobs: &mut Vec<Job>) {
    let name = r.log.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!(".{name}.");
    for leftover in names.iter().filter(|n| {
        n.to_str()
            .and_then(|n| n.strip_prefix(&prefix)?.strip_suffix(".packing"))
            .is_some_and(|ino| !ino.is_empty() && ino.bytes().all(|b| b.is_ascii_digit()))
    }) {
        let path = dir.join(leftover);
        match fs::remove_file(&path) {
            Ok(()) => tracing::info!(
                "removed {}, left by an interrupted compression",
                path.display()
            ),
            Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
        }
    }
    if r.how == Compression::None {
        return;
    }
    let names = names.iter().map(|&n| n.to_owned());
    for (_, plain) in logfmt::rotated_files(&r.log, names)
        .into_iter()
        .filter(|(n, p)| *n >= 2 && Compression::of(p) == Compression::None)
    {
        match open_plain(&plain) {
            Ok(file) => jobs.push(Job {
                file,
                log: r.log.clone(),
                how: r.how,
                lock: Arc::clone(&r.lock),
            }),
            Err(e) => tracing::warn!("cannot compress {}: {e}", plain.display()),
        }
    }
}

/// Opens a rotated file to compress, refusing a symlink planted under its name.
pub(super) fn open_plain(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
        .open(path)
}

/// One file to compress.
pub(super) struct Job {
    /// The rotated file, opened after its rename.
    pub(super) file: File,
    /// The log it belongs to (`<f>`).
    pub(super) log: PathBuf,
    pub(super) how: Compression,
    /// Held for the final renames, shared with the log's rotation.
    pub(super) lock: Arc<Mutex<()>>,
}

/// The compression thread's nice value: the lowest priority short of `SCHED_IDLE`, which
/// could starve it for good on a saturated host and leave files plain.
const COMPRESS_NICE: i32 = 19;

/// How long the worker gathers the logs opened after one it is to recover (see [`send`]).
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);

/// Queues `job` for the worker.
pub(super) fn submit(job: Job) {
    send(Work::Compress(job, millis().saturating_add(MAX_DEFER_MS)));
}

/// Hands `work` to the worker (started on first use). It takes whatever has queued up at
/// once: the recoveries first, in one pass ([`recover_all`]), then the compressions.
fn send(work: Work) {
    static WORKER: OnceLock<Mutex<mpsc::Sender<Work>>> = OnceLock::new();
    let tx = WORKER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Work>();
        let spawned = std::thread::Builder::new()
            .name("log-compress".into())
            .spawn(move || {
                // background work: on a busy host the pumps reading the apps' pipes come first
                // (Linux applies a thread id's nice value to that thread only)
                let _ = rustix::process::setpriority_process(
                    Some(rustix::thread::gettid()),
                    COMPRESS_NICE,
                );
                while let Ok(first) = rx.recv() {
                    if matches!(first, Work::Recover(_)) {
                        // logs open in bursts (a start of many apps): what opens meanwhile
                        // shares the listing, so a burst costs a few listings, not one per log
                        std::thread::sleep(GATHER);
                    }
                    let (mut jobs, mut recoveries) = (Vec::new(), Vec::new());
                    for work in std::iter::once(first).chain(rx.try_iter()) {
                        match work {
                            Work::Compress(job, due) => jobs.push((job, due)),
                            Work::Recover(r) => recoveries.push(r),
                        }
                    }
                    let due = millis().saturating_add(MAX_DEFER_MS);
                    jobs.extend(recover_all(recoveries).into_iter().map(|j| (j, due)));
                    for (job, due) in jobs {
                        if let Err(e) = run(&job, || wait_for_quiet(due)) {
                            tracing::warn!(
                                "cannot compress a rotated file of {}: {e}; it stays as it is",
                                job.log.display()
                            );
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("no log compression: cannot start its thread: {e}");
        }
        Mutex::new(tx)
    });
    // a dead worker drops the work: the files stay uncompressed, and readable
    let _ = tx.lock().unwrap_or_else(PoisonError::into_inner).send(work);
}

/// Compresses one file (the worker's body), calling `wait` before it starts and between
/// two pieces of the file.
pub(super) fn run(job: &Job, mut wait: impl FnMut()) -> io::Result<()> {
    wait();
    let ino = job.file.metadata()?.ino();
    let dir = job.log.parent().unwrap_or(Path::new("."));
    let name = job.log.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{name}.{ino}.packing"));
    let out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
        .open(&temp)?;
    let written = pack(&job.file, &out, job.how, wait).and_then(|()| {
        // the plain file's time, for readers that order rotated files by it
        out.set_modified(job.file.metadata()?.modified()?)
    });
    // which plain file this was, for a follower that held it (best effort: not every file
    // system takes user attributes, and followers then fall back on modification times)
    if let Err(e) = rustix::fs::fsetxattr(
        &out,
        logfmt::ORIGIN_XATTR,
        ino.to_string().as_bytes(),
        rustix::fs::XattrFlags::empty(),
    ) {
        tracing::debug!("cannot mark {} with its origin: {e}", temp.display());
    }
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    let _guard = job.lock.lock().unwrap_or_else(PoisonError::into_inner);
    let names = fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.file_name()));
    let found = logfmt::rotated_files(&job.log, names)
        .into_iter()
        .find(|(_, p)| {
            Compression::of(p) == Compression::None
                && fs::symlink_metadata(p).is_ok_and(|m| m.ino() == ino)
        });
    match found {
        Some((k, plain)) => {
            fs::rename(&temp, logfmt::rotated_path_as(&job.log, k, job.how))?;
            fs::remove_file(plain)
        }
        // pruned (or flushed) while being compressed
        None => fs::remove_file(&temp),
    }
}

fn pack(from: &File, to: &File, how: Compression, wait: impl FnMut()) -> io::Result<()> {
    let to = BufWriter::new(to);
    match how {
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(to, flate2::Compression::default());
            copy_in_pieces(from, &mut enc, wait)?;
            enc.finish()?.flush()
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(to, 3)?;
            copy_in_pieces(from, &mut enc, wait)?;
            enc.finish()?.flush()
        }
        Compression::None => Ok(()),
    }
}

/// Copies `from` to its end into `to`, [`PIECE`] bytes at a time, calling `wait` after each.
fn copy_in_pieces(
    mut from: &File,
    to: &mut impl io::Write,
    mut wait: impl FnMut(),
) -> io::Result<()> {
    let mut buf = vec![0; PIECE];
    loop {
        let n = match io::Read::read(&mut from, &mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        wait();
    }
}
