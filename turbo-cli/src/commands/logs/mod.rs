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
//! keeps one instance's records. With `log.per_instance` each instance has files of its own
//! (`out_log`/`err_log` differ between instances): `name` reads them all and merges their lines
//! by stamp, as `--all` does across apps; `name:N` reads only that instance's files.
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
//! from the held file to its successor by inode; when more than one rotation between two polls
//! got the held file (and maybe its successors) compressed, the keeper's record of the plain
//! file's inode on each compressed one ([`logfmt::ORIGIN_XATTR`]) says where it went, and the
//! compressed successors are read through. On a file system without user extended attributes
//! that record is missing, and such a successor's lines can be skipped.
//!
//! `turbo monit` follows the selected app's logs with the same [`Follower`], and reads lines with
//! [`stamp_and_text`].

mod follow;
mod search;
#[cfg(test)]
mod tests;
mod time;

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

pub(crate) use self::follow::Follower;
use self::{follow::*, search::*, time::Clock};
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
    /// The clock stamps are shown on (`--time`).
    clock: Clock,
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
            Form::Human => out.extend_from_slice(human(&record, raw, &self.clock).as_bytes()),
            Form::Raw | Form::Json => out.extend_from_slice(&as_written(&record, raw, &self.clock)),
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
    let instance = match (instance, args.instance) {
        (Some(a), Some(b)) if a != b => {
            return Err(Hinted::wrap(
                anyhow!(
                    "{} and --instance {b} name different instances",
                    args.name.as_deref().unwrap_or_default()
                ),
                "give one of them",
            ));
        }
        (Some(n), _) | (None, Some(n)) => Some(n),
        (None, None) => None,
    };
    if let Some(n) = instance
        && !selected.iter().any(|a| a.instance == n)
    {
        return Err(Hinted::wrap(
            anyhow!("no app shown has an instance {n}"),
            "`turbo status` lists the instances",
        ));
    }
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
    let clock = match args.time.as_deref() {
        None => Clock::Utc,
        Some(t) => Clock::parse(t).ok_or_else(|| {
            Hinted::wrap(
                anyhow!("--time '{t}' is not a clock"),
                "give utc (the default), local (TZ or /etc/localtime) or an offset such as +05:30",
            )
        })?,
    };
    let width = labels(&selected)
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0);

    // instances with files of their own (`log.per_instance`): their lines are merged by stamp,
    // as --all merges apps, so the app reads as one log
    let merge = args.all
        || selected.iter().any(|a| {
            selected
                .iter()
                .any(|b| b.name == a.name && b.instance != a.instance && b.out_log != a.out_log)
        });
    let mut followers = Vec::new();
    let mut timeline = Timeline::default();
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
                clock: clock.clone(),
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
            if merge {
                timeline.add(&shown, &lines);
            } else {
                shown.print(&lines)?;
            }
            followers.push((shown, follower));
        }
    }
    timeline.print(args.lines)?;
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
            if merge {
                timeline.add(shown, &lines);
            } else {
                shown.print(&lines)?;
            }
        }
        timeline.print(usize::MAX)?;
    }
}

/// `--all`: the shown lines of several logs, merged in time order before they are printed.
/// Each log contributes at most `--lines` lines (or one poll's worth), so memory stays bounded
/// by the number of logs times that.
#[derive(Debug, Default)]
struct Timeline {
    /// `(stamp, order of arrival, rendered line)`.
    lines: Vec<(i64, usize, Vec<u8>)>,
}

impl Timeline {
    fn add(&mut self, shown: &Shown, lines: &[Vec<u8>]) {
        // a line without a stamp stays right after the one before it in its own log
        let mut last = i64::MIN;
        for raw in lines {
            let Some(out) = shown.render(raw) else {
                continue;
            };
            if let Some(at) = Record::parse(raw).at_ms() {
                last = at;
            }
            let order = self.lines.len();
            self.lines.push((last, order, out));
        }
    }

    /// Prints the last `n` lines gathered, oldest first, and forgets them all.
    fn print(&mut self, n: usize) -> Result<()> {
        let mut all = mem::take(&mut self.lines);
        all.sort_unstable_by_key(|&(at, order, _)| (at, order));
        let skip = all.len().saturating_sub(n);
        let mut text = Vec::new();
        for (_, _, line) in all.into_iter().skip(skip) {
            text.extend_from_slice(&line);
            text.push(b'\n');
        }
        if text.pop().is_none() {
            return Ok(());
        }
        term::emit_bytes(&text)
    }
}

/// The apps to show: all of them, those of `@group`, or those whose name or id is `name`;
/// `name:N` (as `turbo describe` takes it) is instance N of the app `name`, returned as the
/// instance to keep.
fn select(apps: &[AppStatus], name: Option<&str>) -> Result<(Vec<AppStatus>, Option<u32>)> {
    let Some(name) = name else {
        return Ok((apps.to_vec(), None));
    };
    if let Some(group) = name.strip_prefix('@') {
        let members: Vec<AppStatus> = apps.iter().filter(|a| a.group == group).cloned().collect();
        if members.is_empty() {
            return Err(Hinted::wrap(
                anyhow!("no app matches '@{group}'"),
                "`turbo status --sort group` shows the groups".to_owned(),
            ));
        }
        return Ok((members, None));
    }
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
fn human(record: &Record<'_>, raw: &[u8], clock: &Clock) -> String {
    match record {
        Record::Text {
            at: Some(at),
            source: Some(_),
            line,
        } => format!("{} {}", clock.show(at), escape_bytes(line)),
        Record::Text { .. } => escape_bytes(raw),
        Record::Json {
            at: Some(at), line, ..
        } => format!(
            "{} {}",
            escape_controls(&clock.show(at)),
            escape_controls(line)
        ),
        Record::Json { at: None, line, .. } => escape_controls(line).into_owned(),
    }
}

/// The line as the app wrote it (`--raw`): `<at> <bytes>` with the record's exact bytes.
fn as_written(record: &Record<'_>, raw: &[u8], clock: &Clock) -> Vec<u8> {
    match record {
        Record::Text {
            at: Some(at),
            source: Some(_),
            line,
        } => [clock.show(at).as_bytes(), b" ", line].concat(),
        Record::Text { .. } => raw.to_vec(),
        Record::Json { at, .. } => {
            let mut out = at
                .as_ref()
                .map_or_else(Vec::new, |at| format!("{} ", clock.show(at)).into_bytes());
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
