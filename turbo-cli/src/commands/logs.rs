//! `turbo logs [name[:N]] [--lines N] [--err|--out] [--follow] [--json] [--since W] [--until W]
//! [--grep TEXT]`: tails the apps' log files, or searches them.
//!
//! The daemon only tells us where the files are (`out_log`/`err_log` of `ListApps`); the CLI reads
//! them directly, so tailing costs the daemon nothing. This module must not write to, rotate or
//! truncate the files: the daemon owns them.
//!
//! Formats: the records and the rotated files' names are those of [`turbo_api::logfmt`], the one
//! definition the daemon writes with (`text` or `json`, possibly both in one file), so each line
//! is recognised on its own with [`Record::parse`]. Humans see `<stamp> <line>` either way, with
//! the line's control characters escaped (`\x1b[2J` instead of a cleared screen:
//! [`escape_controls`]), on a terminal and in a pipe alike, so that piping into a pager is as safe
//! as the terminal; `--raw` prints the bytes as the app wrote them. `--json` prints one object per
//! line, `{"app","instance","pid","stream","at","line"}` (`at` null when the line has no stamp;
//! `instance` and `pid` absent from untagged first-generation records), with `"line_b64"` under
//! the same rule as the daemon's, so the output is lossless for both formats.
//!
//! Instances of an app share its files: each file is read once, and each record is labelled
//! `name:N` by the tag the keeper gave it (the instance whose pipe it came through); `name:N`
//! keeps one instance's records.
//!
//! When records are left out (`name:N`, `--since`, `--until`, `--grep`), `--lines N` means the
//! last N shown: [`scan`] streams the rotated files and the current one, holding only those N.
//!
//! Following polls (every 200 ms) rather than using inotify because it must survive the daemon's
//! rotation and truncation either way. Rotation renames `<f>` to `<f>.1` and opens a new `<f>`:
//! the follower keeps the file it reads open and reads it to its end before moving to the new
//! `<f>`, so lines written just before a rotation are not skipped. Truncation (`turbo flush`) is
//! noticed when the file becomes shorter than what was read; lines written after a flush and
//! before the next poll that make the file longer again than that are missed (a flush erases
//! anyway). `--lines N` takes the older lines from `<f>.1`, `<f>.2`, ... when `<f>` has fewer,
//! reading compressed ones (`<f>.2.gz`, `<f>.3.zst`: `log.compress`) through. Following moves
//! from the held file to its successor by inode among the plain rotated files; the daemon never
//! compresses `<f>.1`, so only more than one rotation between two polls can skip a compressed
//! file's lines.
//!
//! `turbo monit` follows the selected app's logs with the same [`Follower`], and reads lines with
//! [`stamp_and_text`].

use std::{
    fs::File,
    io::{self, Read as _, Seek as _, SeekFrom},
    mem,
    os::unix::fs::{FileExt as _, MetadataExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};
use serde_json::Value;
use turbo_api::{
    AppStatus, LogStream as Stream,
    logfmt::{self, Compression, Record, rotated_path},
};

use super::daemon;
use crate::{
    cli::LogsArgs,
    connect::call_error,
    hint::Hinted,
    render::{self, NO_APPS, Tone, escape_bytes, escape_controls, paint},
    term,
};

/// How often `--follow` looks for new lines.
const POLL: Duration = Duration::from_millis(200);
/// Reading backwards stops after this much even without enough newlines (a log without line
/// breaks must not be slurped whole).
const MAX_TAIL_BYTES: u64 = 8 << 20;
/// Most bytes read from one file per poll, so one chatty app cannot starve the others.
const MAX_READ_PER_POLL: u64 = 4 << 20;
const CHUNK: u64 = 64 << 10;
/// Rotated files looked at for `--lines` (the daemon keeps far fewer).
const MAX_ROTATED: u32 = 1000;

/// The output forms of `turbo logs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// `<prefix><stamp> <line>`, controls escaped.
    Human,
    /// `<prefix><stamp> <line>` with the line's bytes as written (`--raw`).
    Raw,
    /// One JSON object per line (`--json`).
    Json,
}

/// How the lines of one log file are shown. Instances of an app share its files; each record
/// says which instance wrote it, and is labelled (and filtered) by that.
#[derive(Debug)]
struct Shown {
    app: String,
    stream: Stream,
    form: Form,
    /// Label records `name:N` (the app has several instances).
    several: bool,
    /// Only the records of this instance (`turbo logs name:N`).
    instance: Option<u32>,
    /// Only the records that pass `--since`, `--until` and `--grep`.
    filter: Filter,
    /// Width of the label column.
    width: usize,
    color: bool,
}

impl Shown {
    /// The line to print for `raw`, or `None` when it is another instance's.
    fn render(&self, raw: &[u8]) -> Option<Vec<u8>> {
        let record = Record::parse(raw);
        let source = record.source();
        // a first-generation record has no tag: it cannot be told whose it is
        if self.instance.is_some() && source.map(|s| s.instance) != self.instance {
            return None;
        }
        if !self.filter.passes(&record) {
            return None;
        }
        if self.form == Form::Json {
            return Some(render::json_safe(to_json(&record, &self.app, self.stream)).into());
        }
        let label = match source {
            Some(s) if self.several => format!("{}:{}", self.app, s.instance),
            _ => self.app.clone(),
        };
        let mut out = prefix(&label, self.width, self.stream, self.color).into_bytes();
        match self.form {
            Form::Human => out.extend_from_slice(human(&record, raw).as_bytes()),
            Form::Raw | Form::Json => out.extend_from_slice(&as_written(&record, raw)),
        }
        Some(out)
    }

    /// Whether some records are left out: then the last `n` shown lines are searched for
    /// through the whole log ([`scan`]), not just its last `n` lines.
    const fn selective(&self) -> bool {
        self.instance.is_some() || self.filter.active()
    }

    fn print(&self, lines: &[Vec<u8>]) -> Result<()> {
        let mut text = Vec::new();
        for line in lines {
            if let Some(shown) = self.render(line) {
                text.extend_from_slice(&shown);
                text.push(b'\n');
            }
        }
        if text.pop().is_none() {
            return Ok(());
        }
        term::emit_bytes(&text)
    }
}

pub async fn run(args: &LogsArgs) -> Result<()> {
    let apps = {
        let daemon = daemon().await?;
        daemon.proxy.list_apps().await.map_err(|e| call_error(&e))?
        // the connection closes here: following needs only the files
    };
    let (selected, instance) = select(&apps, args.name.as_deref())?;
    if selected.is_empty() {
        return if args.json {
            Ok(())
        } else {
            term::emit(NO_APPS)
        };
    }
    let streams: &[Stream] = match (args.out, args.err) {
        (true, false) => &[Stream::Out],
        (false, true) => &[Stream::Err],
        _ => &[Stream::Out, Stream::Err],
    };
    let form = match (args.json, args.raw) {
        (true, _) => Form::Json,
        (false, true) => Form::Raw,
        (false, false) => Form::Human,
    };
    let color = !args.json && term::stdout_opts().color;
    let filter = Filter::new(args, unix_now_ms())?;
    let width = labels(&selected)
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0);

    let mut followers = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for app in &selected {
        for &stream in streams {
            let path = PathBuf::from(match stream {
                Stream::Out => &app.out_log,
                Stream::Err => &app.err_log,
            });
            // the instances of an app share its files: each is read once
            if !seen.insert(path.clone()) {
                continue;
            }
            let instances = apps.iter().filter(|a| a.name == app.name).count();
            let shown = Shown {
                app: app.name.clone(),
                stream,
                form,
                several: instances > 1,
                instance,
                filter: filter.clone(),
                width,
                color,
            };
            let read_error = || format!("cannot read {}", path.display());
            let (mut lines, partial, follower) = if shown.selective() {
                // where following starts is fixed first, and the search stops there
                let (_, partial, follower) =
                    Follower::from_tail(&path, 0).with_context(read_error)?;
                let lines =
                    scan(&path, follower.offset, &shown, args.lines).with_context(read_error)?;
                (lines, partial, follower)
            } else {
                Follower::from_tail(&path, args.lines).with_context(read_error)?
            };
            // without --follow an unfinished last line is still the latest thing the app said
            if !args.follow && !partial.is_empty() {
                lines.push(partial);
            }
            shown.print(&lines)?;
            followers.push((shown, follower));
        }
    }
    if !args.follow {
        return Ok(());
    }

    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            res = &mut ctrl_c => {
                res.context("cannot listen for Ctrl-C")?;
                return Ok(());
            }
            () = tokio::time::sleep(POLL) => {}
        }
        for (shown, follower) in &mut followers {
            let lines = follower
                .poll()
                .with_context(|| format!("cannot read {}", follower.path.display()))?;
            shown.print(&lines)?;
        }
    }
}

/// `--since`, `--until` and `--grep`: which records are shown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Filter {
    /// Unix milliseconds: records stamped earlier are left out.
    since: Option<i64>,
    /// Unix milliseconds: records stamped later are left out.
    until: Option<i64>,
    /// Records whose line does not contain this are left out.
    grep: Option<String>,
}

impl Filter {
    fn new(args: &LogsArgs, now_ms: i64) -> Result<Self> {
        let instant = |flag: &str, text: &Option<String>| -> Result<Option<i64>> {
            text.as_deref()
                .map(|t| {
                    instant_ms(t, now_ms).ok_or_else(|| {
                        Hinted::wrap(
                            anyhow!("{flag} '{t}' is not a time"),
                            "give a duration back from now (30s, 10m, 2h, 1d) or a time \
                             (2026-01-02, 2026-01-02T03:04:05Z, 2026-01-02T04:04:05+01:00)",
                        )
                    })
                })
                .transpose()
        };
        Ok(Self {
            since: instant("--since", &args.since)?,
            until: instant("--until", &args.until)?,
            grep: args.grep.clone(),
        })
    }

    const fn active(&self) -> bool {
        self.since.is_some() || self.until.is_some() || self.grep.is_some()
    }

    fn passes(&self, record: &Record<'_>) -> bool {
        if self.since.is_some() || self.until.is_some() {
            // a line without a stamp is of no known time
            let Some(at) = record.at_ms() else {
                return false;
            };
            if self.since.is_some_and(|s| at < s) || self.until.is_some_and(|u| at > u) {
                return false;
            }
        }
        self.grep
            .as_deref()
            .is_none_or(|pattern| record.text().contains(pattern))
    }
}

/// Unix milliseconds of what a user wrote for `--since`/`--until`: a duration back from
/// `now_ms` (`30s`, `10m`, `2h`, `1d`), or a time: a date (midnight UTC), or RFC 3339 with or
/// without milliseconds, in UTC (`Z`) or at an offset.
fn instant_ms(text: &str, now_ms: i64) -> Option<i64> {
    let text = text.trim();
    let back = match text.strip_suffix('d') {
        Some(days) if !days.is_empty() && days.bytes().all(|b| b.is_ascii_digit()) => days
            .parse::<u64>()
            .ok()?
            .checked_mul(86_400_000)
            .map(std::time::Duration::from_millis),
        _ => turbo_api::parse_duration(text),
    };
    if let Some(back) = back {
        return Some(now_ms.saturating_sub(i64::try_from(back.as_millis()).ok()?));
    }
    // the record stamp's own form, after filling in what may be left out
    let full = match text.len() {
        10 => format!("{text}T00:00:00.000Z"),
        // `…:05Z` or `…:05+01:00`: no milliseconds
        20 | 25 if text.as_bytes().get(19).is_some_and(|&b| b != b'.') => {
            format!("{}.000{}", &text[..19], &text[19..])
        }
        _ => text.to_owned(),
    };
    logfmt::stamp_ms(&full)
}

fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Longest piece of a line [`scan`] holds at once: a file without newlines (not one the keeper
/// wrote) is cut into pieces of this size rather than read whole.
const MAX_SCAN_LINE: u64 = 1 << 20;

/// The last `n` lines of the log at `path` that `shown` shows, searched through its rotated
/// files (oldest first) and the current file up to byte `end`; memory stays at `n` lines
/// whatever the size of the files.
fn scan(path: &Path, end: u64, shown: &Shown, n: usize) -> io::Result<Vec<Vec<u8>>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let names: Vec<std::ffi::OsString> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut kept = std::collections::VecDeque::new();
    for file_path in logfmt::oldest_first(path, names) {
        let Some(file) = open_log(&file_path)? else {
            continue;
        };
        let limit = if file_path == path { end } else { u64::MAX };
        let reader = unpacked(file.take(limit), Compression::of(&file_path))?;
        last_lines(reader, n, &mut kept, |line| shown.render(line).is_some())?;
    }
    Ok(kept.into())
}

/// The bytes of a log file, decompressed as its name says.
fn unpacked<'a>(file: impl io::Read + 'a, how: Compression) -> io::Result<Box<dyn io::Read + 'a>> {
    Ok(match how {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(file)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(file)?),
    })
}

/// Reads `reader` line by line (a last line without its newline included) and keeps in `kept`
/// the last `n` that `wanted` takes, pushing out older ones: memory stays at `n` lines.
fn last_lines(
    reader: impl io::Read,
    n: usize,
    kept: &mut std::collections::VecDeque<Vec<u8>>,
    wanted: impl Fn(&[u8]) -> bool,
) -> io::Result<()> {
    use std::io::BufRead as _;
    let mut reader = io::BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        if (&mut reader)
            .take(MAX_SCAN_LINE)
            .read_until(b'\n', &mut line)?
            == 0
        {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if n > 0 && wanted(&line) {
            if kept.len() == n {
                kept.pop_front();
            }
            kept.push_back(line.clone());
        }
    }
}

/// The `n`th rotated file of `path`, plain or compressed, and how it is compressed.
fn open_rotated(path: &Path, n: u32) -> io::Result<Option<(File, Compression)>> {
    for how in [Compression::None, Compression::Gzip, Compression::Zstd] {
        if let Some(file) = open_log(&logfmt::rotated_path_as(path, n, how))? {
            return Ok(Some((file, how)));
        }
    }
    Ok(None)
}

/// The apps to show: all of them, or those whose name or id is `name`; `name:N` (as `turbo
/// describe` takes it) is instance N of the app `name`, returned as the instance to keep.
fn select(apps: &[AppStatus], name: Option<&str>) -> Result<(Vec<AppStatus>, Option<u32>)> {
    let Some(name) = name else {
        return Ok((apps.to_vec(), None));
    };
    if let Some((app, n)) = name.rsplit_once(':')
        && let Ok(n) = n.parse::<u32>()
        && apps.iter().any(|a| a.name == app)
    {
        return match apps.iter().find(|a| a.name == app && a.instance == n) {
            Some(a) => Ok((vec![a.clone()], Some(n))),
            None => {
                let count = apps.iter().filter(|a| a.name == app).count();
                Err(Hinted::wrap(
                    anyhow!("'{app}' has no instance {n}"),
                    format!(
                        "its instances are {app}:0 to {app}:{}",
                        count.saturating_sub(1)
                    ),
                ))
            }
        };
    }
    let matching: Vec<AppStatus> = apps
        .iter()
        .filter(|a| a.name == name || a.id.to_string() == name)
        .cloned()
        .collect();
    if matching.is_empty() {
        let names: Vec<String> = apps.iter().map(|a| a.name.clone()).collect();
        return Err(Hinted::wrap(
            anyhow!("no app matches '{name}'"),
            super::not_found_help(name, &names),
        ));
    }
    Ok((matching, None))
}

/// The name, with `:instance` when several instances share it.
fn labels(apps: &[AppStatus]) -> Vec<String> {
    crate::render::instance_labels(apps)
}

fn prefix(label: &str, width: usize, stream: Stream, color: bool) -> String {
    let (text, tone) = match stream {
        Stream::Out => (format!("{label:<width$} out |"), Tone::Dim),
        Stream::Err => (format!("{label:<width$} err |"), Tone::Red),
    };
    format!("{} ", paint(color, tone, &text))
}

/// The line for a human: `<at> <line>` whichever the format (the instance tag is in the
/// label); control characters escaped either way.
fn human(record: &Record<'_>, raw: &[u8]) -> String {
    match record {
        Record::Text {
            at: Some(at),
            source: Some(_),
            line,
        } => format!("{at} {}", escape_bytes(line)),
        Record::Text { .. } => escape_bytes(raw),
        Record::Json {
            at: Some(at), line, ..
        } => format!("{} {}", escape_controls(at), escape_controls(line)),
        Record::Json { at: None, line, .. } => escape_controls(line).into_owned(),
    }
}

/// The line as the app wrote it (`--raw`): `<at> <bytes>` with the record's exact bytes.
fn as_written(record: &Record<'_>, raw: &[u8]) -> Vec<u8> {
    match record {
        Record::Text {
            at: Some(at),
            source: Some(_),
            line,
        } => [at.as_bytes(), b" ", line].concat(),
        Record::Text { .. } => raw.to_vec(),
        Record::Json { at, .. } => {
            let mut out = at
                .as_ref()
                .map_or_else(Vec::new, |at| format!("{at} ").into_bytes());
            out.extend_from_slice(&record.bytes());
            out
        }
    }
}

/// `{"app","instance","pid","stream","at","line"}` (+ `"line_b64"`), one line of `--json`
/// output; `instance` and `pid` only when the record says (not in first-generation records).
fn to_json(record: &Record<'_>, app: &str, stream: Stream) -> String {
    let string = |s: &str| Value::from(s).to_string();
    let (app, stream, at, line, line_b64) = match record {
        Record::Text { at, line, .. } => (
            string(app),
            string(stream.as_str()),
            at.map_or_else(|| "null".to_owned(), string),
            string(&String::from_utf8_lossy(line)),
            std::str::from_utf8(line)
                .is_err()
                .then(|| logfmt::base64(line)),
        ),
        Record::Json {
            at,
            app: record_app,
            stream: record_stream,
            line,
            line_b64,
            ..
        } => (
            string(record_app.as_deref().unwrap_or(app)),
            string(record_stream.as_deref().unwrap_or(stream.as_str())),
            at.as_deref().map_or_else(|| "null".to_owned(), string),
            string(line),
            line_b64.clone(),
        ),
    };
    let b64 = line_b64.map_or_else(String::new, |b| format!(",\"line_b64\":{}", string(&b)));
    let source = record.source().map_or_else(String::new, |s| {
        format!(",\"instance\":{},\"pid\":{}", s.instance, s.pid)
    });
    format!("{{\"app\":{app}{source},\"stream\":{stream},\"at\":{at},\"line\":{line}{b64}}}")
}

/// One line of a log as `(stamp, text)`, whichever format the daemon wrote it in, controls
/// escaped: for `monit`, which lays lines out itself.
pub(super) fn stamp_and_text(raw: &[u8]) -> (Option<String>, String) {
    let record = Record::parse(raw);
    (
        record.at().map(|at| escape_controls(at).into_owned()),
        escape_controls(&record.text()).into_owned(),
    )
}

/// Opens a log file; `None` when it does not exist (yet). Something else planted where a log
/// goes (a FIFO) is an error, not a wait.
fn open_log(path: &Path) -> io::Result<Option<File>> {
    match crate::files::open_regular(path) {
        Ok(file) => Ok(Some(file)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Up to `need` lines that came before the current file, from its rotated files (newest is
/// `.1`), oldest first. `current` is the inode of the current file as read: if a rotation
/// happened since, it is `.1` now and is skipped rather than shown twice.
fn older_lines(path: &Path, current: Option<u64>, need: usize) -> io::Result<Vec<Vec<u8>>> {
    let mut older: Vec<Vec<u8>> = Vec::new();
    for n in 1..=MAX_ROTATED {
        if older.len() >= need {
            break;
        }
        let Some((file, how)) = open_rotated(path, n)? else {
            break;
        };
        if current.is_some() && current == Some(file.metadata()?.ino()) {
            continue;
        }
        let mut lines = if how == Compression::None {
            let tail = read_tail(&file, need - older.len())?;
            let mut lines = tail.lines;
            if !tail.partial.is_empty() {
                lines.push(tail.partial);
            }
            lines
        } else {
            // no seeking back in a compressed file: it is read through, keeping its last lines
            let mut kept = std::collections::VecDeque::new();
            last_lines(unpacked(file, how)?, need - older.len(), &mut kept, |_| {
                true
            })?;
            kept.into()
        };
        lines.append(&mut older);
        older = lines;
    }
    let extra = older.len().saturating_sub(need);
    older.drain(..extra);
    Ok(older)
}

/// The end of a log file.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tail {
    /// The last complete lines, oldest first, newline excluded.
    lines: Vec<Vec<u8>>,
    /// Bytes after the last newline (a line still being written).
    partial: Vec<u8>,
    /// Where following continues: the start of `partial`.
    resume_at: u64,
    /// Identity of the file read, to notice rotation.
    inode: Option<u64>,
}

/// The last `n` complete lines of `file`, reading backwards in chunks.
fn read_tail(file: &File, n: usize) -> io::Result<Tail> {
    let meta = file.metadata()?;
    let len = meta.len();
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    // n lines need n newlines plus the one before the first of them (unless at the start)
    while start > 0 && len - start < MAX_TAIL_BYTES && count_newlines(&buf) <= n {
        let size = CHUNK.min(start);
        start -= size;
        let mut chunk = vec![0; usize::try_from(size).unwrap_or(usize::MAX)];
        match file.read_exact_at(&mut chunk, start) {
            Ok(()) => {}
            // truncated under us: report nothing rather than garbage; following starts over
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(Tail {
                    inode: Some(meta.ino()),
                    ..Tail::default()
                });
            }
            Err(err) => return Err(err),
        }
        chunk.extend_from_slice(&buf);
        buf = chunk;
    }
    let complete_end = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let partial = buf[complete_end..].to_vec();
    let mut lines: Vec<&[u8]> = buf[..complete_end].split(|&b| b == b'\n').collect();
    lines.pop(); // the empty piece after the final newline
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // may be the end of a line that began before what we read
    }
    let skip = lines.len().saturating_sub(n);
    Ok(Tail {
        lines: lines[skip..].iter().map(|l| l.to_vec()).collect(),
        resume_at: len - partial.len() as u64,
        partial,
        inode: Some(meta.ino()),
    })
}

fn count_newlines(buf: &[u8]) -> usize {
    buf.iter().filter(|&&b| b == b'\n').count()
}

/// Follows one log file across appends, truncation and rotation.
pub(super) struct Follower {
    path: PathBuf,
    /// The file being read, kept open: after a rotation has renamed (or deleted) it, what was
    /// written to it since the last poll is still read from here before moving on.
    file: Option<File>,
    inode: Option<u64>,
    offset: u64,
    /// Bytes of a line whose newline has not arrived yet.
    pending: Vec<u8>,
}

impl Follower {
    /// The last `n` complete lines of the log at `path` (from its rotated files too when it has
    /// fewer), the unfinished line after them, and a follower that returns what comes next
    /// (the unfinished line included, once it is complete).
    pub(super) fn from_tail(
        path: &Path,
        n: usize,
    ) -> io::Result<(Vec<Vec<u8>>, Vec<u8>, Follower)> {
        let file = open_log(path)?;
        let tail = match &file {
            Some(file) => read_tail(file, n)?,
            None => Tail::default(),
        };
        let need = n.saturating_sub(tail.lines.len());
        let mut lines = older_lines(path, tail.inode, need)?;
        lines.extend(tail.lines);
        let follower = Follower {
            path: path.to_owned(),
            file,
            inode: tail.inode,
            offset: tail.resume_at,
            pending: Vec::new(),
        };
        Ok((lines, tail.partial, follower))
    }

    /// The complete lines appended since the last poll, oldest first.
    pub(super) fn poll(&mut self) -> io::Result<Vec<Vec<u8>>> {
        let mut lines = Vec::new();
        // one turn per file: a fast app can rotate several times between two polls
        for _ in 0..=MAX_ROTATED {
            // Where the path points is looked at before the open file is drained: the daemon
            // writes its last bytes to a file before it renames it, so once the path shows
            // another file everything of the one we hold is there to be read.
            let now = inode(&self.path)?;
            let Some(file) = &self.file else {
                // nothing written yet when we started
                if now.is_none() || !self.open(&self.path.clone())? {
                    break;
                }
                continue;
            };
            let at_end = read_new(file, &mut self.offset, &mut self.pending, &mut lines)?;
            // between a rename and the daemon opening the new file the path is missing
            if !at_end || now.is_none() || now == self.inode {
                break;
            }
            // rotated away and finished; the daemon ends files with a newline, but keep the rest
            if !self.pending.is_empty() {
                lines.push(mem::take(&mut self.pending));
            }
            if !self.open_successor()? {
                break;
            }
        }
        Ok(lines)
    }

    /// Switches to the file written after the one held, which a rotation has renamed to
    /// `<f>.k` (its successor is `<f>.k-1`, or `<f>` for k = 1) or deleted. Returns false when
    /// that file is not there (yet): the held one stays, and the next poll looks again.
    fn open_successor(&mut self) -> io::Result<bool> {
        for _ in 0..10 {
            let mut found = None;
            let mut rotated = 0;
            for n in 1..=MAX_ROTATED {
                match inode(&rotated_path(&self.path, n))? {
                    Some(ino) if Some(ino) == self.inode => {
                        found = Some(n);
                        break;
                    }
                    Some(_) => rotated = n,
                    None => break,
                }
            }
            let Some(k) = found else {
                let next = self.first_after_deleted(rotated)?;
                return self.open(&next);
            };
            let next = if k == 1 {
                self.path.clone()
            } else {
                rotated_path(&self.path, k - 1)
            };
            let Some(file) = open_log(&next)? else {
                return Ok(false);
            };
            // The daemon renames the highest numbers first, so while the held file is still at
            // `.k` its successor has not moved: what was opened is the right file. Otherwise a
            // rotation came in between; look again.
            if inode(&rotated_path(&self.path, k))? == self.inode {
                self.start(file)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The file to read after the held one was deleted. When the daemon deleted it (more
    /// rotations than `keep` since the last poll) every rotated file left is newer and unread:
    /// the oldest of them comes next. When someone else deleted it, the rotated files are older
    /// than it and were shown already: the current file comes next. Their last write tells
    /// which (a successor was written after the held file's last write).
    fn first_after_deleted(&self, rotated: u32) -> io::Result<PathBuf> {
        let Some(held) = &self.file else {
            return Ok(self.path.clone());
        };
        let last_write = held.metadata()?.modified()?;
        for n in (1..=rotated).rev() {
            let path = rotated_path(&self.path, n);
            match std::fs::metadata(&path) {
                Ok(meta) if meta.modified()? >= last_write => return Ok(path),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
        Ok(self.path.clone())
    }

    /// Starts reading `path` from its beginning; false when it does not exist.
    fn open(&mut self, path: &Path) -> io::Result<bool> {
        let Some(file) = open_log(path)? else {
            return Ok(false);
        };
        self.start(file)?;
        Ok(true)
    }

    fn start(&mut self, file: File) -> io::Result<()> {
        self.inode = Some(file.metadata()?.ino());
        self.file = Some(file);
        self.offset = 0;
        self.pending.clear();
        Ok(())
    }
}

/// The inode `path` names now; `None` when it does not exist.
fn inode(path: &Path) -> io::Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(meta.ino())),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Appends to `lines` the complete lines of `file` after `offset` (at most
/// [`MAX_READ_PER_POLL`] bytes of them); returns whether it read to the end of the file.
fn read_new(
    mut file: &File,
    offset: &mut u64,
    pending: &mut Vec<u8>,
    lines: &mut Vec<Vec<u8>>,
) -> io::Result<bool> {
    let len = file.metadata()?.len();
    if len < *offset {
        // truncated (turbo flush): what is there now is all new
        *offset = 0;
        pending.clear();
    }
    if len == *offset {
        return Ok(true);
    }
    file.seek(SeekFrom::Start(*offset))?;
    let read = file.take(MAX_READ_PER_POLL).read_to_end(pending)? as u64;
    *offset += read;
    if let Some(end) = pending.iter().rposition(|&b| b == b'\n') {
        let rest = pending.split_off(end + 1);
        let complete = mem::replace(pending, rest);
        lines.extend(complete[..end].split(|&b| b == b'\n').map(<[u8]>::to_vec));
    }
    Ok(read < MAX_READ_PER_POLL)
}

#[cfg(test)]
mod tests {
    use std::{fs, io::Write as _};

    use super::*;

    fn app(id: u32, name: &str, instance: u32) -> AppStatus {
        AppStatus {
            id,
            name: name.into(),
            instance,
            ..AppStatus::default()
        }
    }

    #[test]
    fn selecting_apps() {
        let apps = [app(0, "api", 0), app(1, "api", 1), app(2, "worker", 0)];
        assert_eq!(select(&apps, None).unwrap().0.len(), 3);
        assert_eq!(select(&apps, Some("api")).unwrap().0.len(), 2);
        assert_eq!(select(&apps, Some("2")).unwrap().0[0].name, "worker");
        let (one, instance) = select(&apps, Some("api:1")).unwrap();
        assert_eq!((one.len(), one[0].id, instance), (1, 1, Some(1)));
        let none = select(&apps, Some("api:7")).unwrap_err();
        assert_eq!(none.to_string(), "'api' has no instance 7");
        assert_eq!(
            crate::hint::help_of(&none),
            Some("its instances are api:0 to api:1")
        );
        let err = select(&apps, Some("wroker")).unwrap_err();
        assert_eq!(err.to_string(), "no app matches 'wroker'");
        assert_eq!(crate::hint::help_of(&err), Some("did you mean `worker`?"));
        assert_eq!(labels(&apps), ["api:0", "api:1", "worker"]);
        assert_eq!(prefix("api", 6, Stream::Err, false), "api    err | ");
    }

    fn write(path: &Path, text: &str) {
        fs::write(path, text).unwrap();
    }

    fn strings(lines: &[Vec<u8>]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }

    fn tail_of(path: &Path, n: usize) -> Tail {
        read_tail(&File::open(path).unwrap(), n).unwrap()
    }

    #[test]
    fn tails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        assert!(open_log(&path).unwrap().is_none(), "missing is no file");

        write(&path, "one\ntwo\nthree\nfour\npart");
        let tail = tail_of(&path, 2);
        assert_eq!(strings(&tail.lines), ["three", "four"]);
        assert_eq!(tail.partial, b"part");
        assert_eq!(tail.resume_at, 19);
        assert_eq!(
            strings(&tail_of(&path, 10).lines),
            ["one", "two", "three", "four"]
        );
        assert!(tail_of(&path, 0).lines.is_empty());
        assert_eq!(tail_of(&path, 0).resume_at, 19);

        // longer than one chunk, so the backwards reading has to stitch chunks together
        let long: String = (0..30_000).map(|i| format!("line {i}\n")).collect();
        write(&path, &long);
        let tail = tail_of(&path, 3);
        assert_eq!(
            strings(&tail.lines),
            ["line 29997", "line 29998", "line 29999"]
        );
        assert_eq!(tail.resume_at, long.len() as u64);
        assert_eq!(tail_of(&path, 20_000).lines[0], b"line 10000");
    }

    #[test]
    fn older_lines_come_from_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        write(&rotated_path(&path, 2), "1\n2\n");
        write(&rotated_path(&path, 1), "3\n4\n");
        write(&path, "5\n");
        let current = File::open(&path).unwrap().metadata().unwrap().ino();
        assert_eq!(
            strings(&older_lines(&path, Some(current), 3).unwrap()),
            ["2", "3", "4"]
        );
        assert_eq!(
            strings(&older_lines(&path, Some(current), 10).unwrap()),
            ["1", "2", "3", "4"]
        );
        assert!(older_lines(&path, Some(current), 0).unwrap().is_empty());
        // rotated between reading the current file and its predecessors: the file we read is
        // `.1` now, and is not shown twice
        let read = File::open(&path).unwrap().metadata().unwrap().ino();
        fs::rename(rotated_path(&path, 2), rotated_path(&path, 3)).unwrap();
        fs::rename(rotated_path(&path, 1), rotated_path(&path, 2)).unwrap();
        fs::rename(&path, rotated_path(&path, 1)).unwrap();
        assert_eq!(
            strings(&older_lines(&path, Some(read), 3).unwrap()),
            ["2", "3", "4"]
        );
    }

    fn follower(path: &Path) -> Follower {
        let file = open_log(path).unwrap();
        let tail = file
            .as_ref()
            .map(|f| read_tail(f, 1).unwrap())
            .unwrap_or_default();
        Follower {
            path: path.to_owned(),
            file,
            inode: tail.inode,
            offset: tail.resume_at,
            pending: Vec::new(),
        }
    }

    fn poll(f: &mut Follower) -> Vec<String> {
        strings(&f.poll().unwrap())
    }

    #[test]
    fn following_appends_partial_lines_truncation_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        write(&path, "old\n");
        let mut f = follower(&path);
        assert!(poll(&mut f).is_empty());

        let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"new 1\nnew").unwrap();
        assert_eq!(poll(&mut f), ["new 1"]);
        file.write_all(b" 2\n").unwrap();
        assert_eq!(poll(&mut f), ["new 2"]);

        // truncation: everything now in the file is new
        file.set_len(0).unwrap();
        file.write_all(b"after truncate\n").unwrap();
        assert_eq!(poll(&mut f), ["after truncate"]);

        // rotation: lines written just before the rename are read from the renamed file first
        file.write_all(b"last of the old file\n").unwrap();
        fs::rename(&path, dir.path().join("a.log.1")).unwrap();
        assert_eq!(
            poll(&mut f),
            ["last of the old file"],
            "gap between rename and reopen"
        );
        file.write_all(b"late\n").unwrap(); // cannot happen with the daemon, but is not lost
        write(
            &path,
            "rotated 1\nrotated 2 is long enough to pass the old offset\n",
        );
        assert_eq!(
            poll(&mut f),
            [
                "late",
                "rotated 1",
                "rotated 2 is long enough to pass the old offset"
            ]
        );
        assert!(poll(&mut f).is_empty());

        // rename and reopen both between two polls, the old file then deleted (keep = 0)
        let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"before\n").unwrap();
        fs::rename(&path, dir.path().join("a.log.1")).unwrap();
        fs::remove_file(dir.path().join("a.log.1")).unwrap();
        write(&path, "after\n");
        assert_eq!(poll(&mut f), ["before", "after"]);
    }

    /// What the daemon does: `.n` to `.n+1` (the highest first, dropping those past `keep`),
    /// `<f>` to `.1`, a new `<f>`.
    fn rotate(path: &Path, keep: u32) {
        for n in (1..=keep + 5).rev() {
            let old = rotated_path(path, n);
            if n >= keep {
                let _ = fs::remove_file(&old);
            } else if old.exists() {
                fs::rename(&old, rotated_path(path, n + 1)).unwrap();
            }
        }
        let _ = fs::rename(path, rotated_path(path, 1));
        File::create(path).unwrap();
    }

    fn append(path: &Path, text: &str) {
        let mut file = fs::OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn following_through_several_rotations_between_two_polls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        write(&path, "seen\n");
        let mut f = follower(&path);
        append(&path, "1\n");
        for i in 2..=4 {
            rotate(&path, 5);
            append(&path, &format!("{i}\n"));
        }
        append(&path, "5 unfinished");
        assert_eq!(poll(&mut f), ["1", "2", "3", "4"]);
        append(&path, "\n");
        assert_eq!(poll(&mut f), ["5 unfinished"]);

        // more rotations than `keep`: the file being read is deleted, the oldest one left is next
        append(&path, "6\n");
        for i in 7..=10 {
            rotate(&path, 2);
            append(&path, &format!("{i}\n"));
        }
        assert_eq!(
            poll(&mut f),
            ["6", "8", "9", "10"],
            "7 was rotated away unread"
        );
    }

    #[test]
    fn following_after_someone_deletes_the_current_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        write(&rotated_path(&path, 1), "old, shown before\n");
        std::thread::sleep(Duration::from_millis(50)); // file times are coarse
        write(&path, "current\n");
        let mut f = follower(&path);
        let mut daemon = fs::OpenOptions::new().append(true).open(&path).unwrap();
        fs::remove_file(&path).unwrap();
        daemon.write_all(b"into the deleted file\n").unwrap();
        assert_eq!(poll(&mut f), ["into the deleted file"]);
        rotate(&path, 5); // the daemon's next rotation finds no <f> and opens a new one
        append(&path, "new file\n");
        assert_eq!(poll(&mut f), ["new file"]);
    }

    #[test]
    fn following_a_file_that_does_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut f = follower(&path);
        assert!(poll(&mut f).is_empty());
        write(&path, "first\n");
        assert_eq!(poll(&mut f), ["first"]);
    }

    fn shown(form: Form) -> Shown {
        Shown {
            app: "api".into(),
            stream: Stream::Out,
            form,
            several: false,
            instance: None,
            filter: Filter::default(),
            width: 3,
            color: false,
        }
    }

    fn render(form: Form, raw: &[u8]) -> String {
        String::from_utf8(shown(form).render(raw).unwrap()).unwrap()
    }

    #[test]
    fn compressed_rotated_files_read_like_plain_ones() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-out.log");
        let text = |r: std::ops::Range<u32>| r.map(|i| format!("line {i}\n")).collect::<String>();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text(10..20).as_bytes()).unwrap();
        fs::write(
            logfmt::rotated_path_as(&path, 2, Compression::Gzip),
            gz.finish().unwrap(),
        )
        .unwrap();
        fs::write(
            logfmt::rotated_path_as(&path, 3, Compression::Zstd),
            zstd::encode_all(text(0..10).as_bytes(), 3).unwrap(),
        )
        .unwrap();
        write(&rotated_path(&path, 1), &text(20..30));
        write(&path, &text(30..35));
        let want = |r: std::ops::Range<u32>| r.map(|i| format!("line {i}")).collect::<Vec<_>>();
        assert_eq!(strings(&older_lines(&path, None, 25).unwrap()), want(5..30));
        let (lines, _, _) = Follower::from_tail(&path, 32).unwrap();
        assert_eq!(strings(&lines), want(3..35));
        let end = fs::metadata(&path).unwrap().len();
        let all = scan(&path, end, &shown(Form::Human), 1000).unwrap();
        assert_eq!(strings(&all), want(0..35));
    }

    #[test]
    fn since_and_until_take_durations_dates_and_stamps() {
        let now = 1_767_323_045_678; // 2026-01-02T03:04:05.678Z
        assert_eq!(instant_ms("10m", now), Some(now - 600_000));
        assert_eq!(instant_ms("2h", now), Some(now - 7_200_000));
        assert_eq!(instant_ms("1d", now), Some(now - 86_400_000));
        let midnight = logfmt::stamp_ms("2026-01-02T00:00:00.000Z");
        assert_eq!(instant_ms("2026-01-02", now), midnight);
        assert_eq!(instant_ms("2026-01-02T03:04:05Z", now), Some(now - 678));
        assert_eq!(instant_ms("2026-01-02T04:04:05.678+01:00", now), Some(now));
        assert_eq!(
            instant_ms("2026-01-02T04:04:05+01:00", now),
            Some(now - 678)
        );
        for bad in ["yesterday", "2026-13-01", "5 minutes", "", "d"] {
            assert_eq!(instant_ms(bad, now), None, "{bad}");
        }
        let filter = Filter {
            since: Some(now - 1000),
            until: Some(now),
            grep: Some("needle".into()),
        };
        let pass = |raw: &[u8]| filter.passes(&Record::parse(raw));
        assert!(pass(b"2026-01-02T03:04:05.000Z[0:1] a needle here"));
        assert!(!pass(b"2026-01-02T03:04:05.000Z[0:1] no match"));
        assert!(!pass(b"2026-01-02T03:04:04.000Z[0:1] needle, too early"));
        assert!(!pass(b"2026-01-02T03:04:06.000Z[0:1] needle, too late"));
        assert!(!pass(b"needle without a stamp"));
        assert!(Filter::default().passes(&Record::parse(b"anything")));
    }

    #[test]
    fn scanning_finds_the_last_shown_lines_through_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-out.log");
        let rec = |i: u32| format!("2026-01-02T03:04:05.678Z[{}:7] line {i}\n", i % 2);
        let text = |r: std::ops::Range<u32>| r.map(rec).collect::<String>();
        write(&rotated_path(&path, 2), &text(0..10));
        write(&rotated_path(&path, 1), &text(10..20));
        write(
            &path,
            &(text(20..30) + "2026-01-02T03:04:05.678Z[1:7] unfinished"),
        );
        let end = fs::metadata(&path).unwrap().len()
            - "2026-01-02T03:04:05.678Z[1:7] unfinished".len() as u64;
        let grep = Shown {
            filter: Filter {
                grep: Some("line 1".into()),
                ..Filter::default()
            },
            ..shown(Form::Human)
        };
        // line 1, line 10 … line 19: across .2 and .1; the last 4 of them
        let found = scan(&path, end, &grep, 4).unwrap();
        assert_eq!(
            strings(&found),
            (16..20)
                .map(|i| rec(i).trim_end().to_owned())
                .collect::<Vec<_>>()
        );
        let odd = Shown {
            instance: Some(1),
            ..shown(Form::Human)
        };
        let found = scan(&path, end, &odd, 3).unwrap();
        assert_eq!(
            strings(&found),
            [25, 27, 29].map(|i| rec(i).trim_end().to_owned()),
            "the unfinished line past `end` is the follower's"
        );
    }

    #[test]
    fn records_are_labelled_and_filtered_by_the_instance_that_wrote_them() {
        let several = Shown {
            several: true,
            width: 5,
            ..shown(Form::Human)
        };
        let tagged = b"2026-01-02T03:04:05.678Z[2:4242] hi";
        let shown_line =
            |s: &Shown, raw: &[u8]| s.render(raw).map(|l| String::from_utf8(l).unwrap());
        assert_eq!(
            shown_line(&several, tagged).unwrap(),
            "api:2 out | 2026-01-02T03:04:05.678Z hi"
        );
        // one instance: no label, and the tag is not shown either
        assert_eq!(
            render(Form::Human, tagged),
            "api out | 2026-01-02T03:04:05.678Z hi"
        );
        assert_eq!(
            shown(Form::Raw).render(tagged).unwrap(),
            b"api out | 2026-01-02T03:04:05.678Z hi"
        );
        let only_1 = Shown {
            instance: Some(1),
            ..shown(Form::Human)
        };
        assert_eq!(shown_line(&only_1, tagged), None);
        assert!(shown_line(&only_1, b"2026-01-02T03:04:05.678Z[1:7] x").is_some());
        // untagged (first generation): shown unfiltered, left out of one instance's view
        assert!(shown_line(&only_1, b"2026-01-02T03:04:05.678Z x").is_none());
        let json: Value = serde_json::from_str(&render(Form::Json, tagged)).unwrap();
        assert_eq!((&json["instance"], &json["pid"]), (&2.into(), &4242.into()));
    }

    #[test]
    fn human_output_looks_the_same_for_both_formats() {
        let text = b"2026-01-02T03:04:05.678Z hi";
        let json = br#"{"at":"2026-01-02T03:04:05.678Z","app":"api","stream":"out","line":"hi"}"#;
        assert_eq!(
            render(Form::Human, text),
            "api out | 2026-01-02T03:04:05.678Z hi"
        );
        assert_eq!(render(Form::Human, json), render(Form::Human, text));
        assert_eq!(render(Form::Human, b"\xffraw"), "api out | \u{FFFD}raw");
    }

    #[test]
    fn control_characters_are_escaped_unless_raw() {
        // OSC 0 (title), CSI 2J (clear), OSC 52 (clipboard), a bare CR that would overwrite
        let hostile =
            b"2026-01-02T03:04:05.678Z \x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07\rfake\tok";
        let shown_text = render(Form::Human, hostile);
        assert_eq!(
            shown_text,
            "api out | 2026-01-02T03:04:05.678Z \\x1b]0;pwned\\x07\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07\\rfake\tok"
        );
        assert_eq!(
            shown(Form::Raw).render(hostile).unwrap(),
            [&b"api out | "[..], hostile].concat(),
            "--raw is byte for byte"
        );
        // json-format records: escaped for humans, the original bytes for --raw
        let record = br#"{"at":"2026-01-02T03:04:05.678Z","app":"api","stream":"out","line":"\u001b[2J\ufffd","line_b64":"G1sySv8="}"#;
        assert_eq!(
            render(Form::Human, record),
            "api out | 2026-01-02T03:04:05.678Z \\x1b[2J\u{FFFD}"
        );
        assert_eq!(
            shown(Form::Raw).render(record).unwrap(),
            b"api out | 2026-01-02T03:04:05.678Z \x1b[2J\xff"
        );
        // monit gets the escaped text too
        assert_eq!(
            stamp_and_text(hostile).1,
            "\\x1b]0;pwned\\x07\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07\\rfake\tok"
        );
        // --json stays exact: serde escapes C0, and DEL/C1 become \u escapes of the same value
        let json = render(
            Form::Json,
            "2026-01-02T03:04:05.678Z \u{1b}[2J \u{9b}2J \u{7f}".as_bytes(),
        );
        assert!(json.contains(r"\u001b[2J \u009b2J \u007f"), "{json}");
        let value: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["line"], "\u{1b}[2J \u{9b}2J \u{7f}");
    }

    #[test]
    fn json_output_of_both_formats() {
        let parse =
            |raw: &[u8]| -> Value { serde_json::from_str(&render(Form::Json, raw)).unwrap() };
        let text = parse(b"2026-01-02T03:04:05.678Z say \"hi\"\t");
        assert_eq!(
            text,
            serde_json::json!({"app": "api", "stream": "out", "at": "2026-01-02T03:04:05.678Z", "line": "say \"hi\"\t"})
        );
        assert_eq!(
            render(Form::Json, b"2026-01-02T03:04:05.678Z x"),
            r#"{"app":"api","stream":"out","at":"2026-01-02T03:04:05.678Z","line":"x"}"#,
            "fields in the documented order"
        );
        let bare = parse(b"no stamp");
        assert_eq!(
            (&bare["at"], &bare["line"]),
            (&Value::Null, &"no stamp".into())
        );
        // not UTF-8: lossy line plus the raw bytes
        let binary = parse(b"2026-01-02T03:04:05.678Z \xff\x00ok");
        assert_eq!(binary["line"], "\u{FFFD}\u{0}ok");
        assert_eq!(binary["line_b64"], "/wBvaw==");
        // json records pass through, line_b64 included
        let json = parse(
            br#"{"at":"2026-01-02T03:04:05.678Z","app":"other","stream":"err","line":"\ufffd","line_b64":"/w=="}"#,
        );
        assert_eq!(
            json,
            serde_json::json!({"app": "other", "stream": "err", "at": "2026-01-02T03:04:05.678Z", "line": "\u{FFFD}", "line_b64": "/w=="})
        );
    }
}
