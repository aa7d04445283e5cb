//! `turbo logs [name] [--lines N] [--err|--out] [--follow]`: tails the apps' log files.
//!
//! The daemon only tells us where the files are (`out_log`/`err_log` of `ListApps`); the CLI reads
//! them directly, so tailing costs the daemon nothing. This module must not write to, rotate or
//! truncate the files: the daemon owns them. Following polls (every 200 ms) rather than using
//! inotify because it must survive the daemon's rotation (rename) and truncation either way.

use std::{
    fs::{self, File},
    io::{self, Read as _, Seek as _, SeekFrom},
    os::unix::fs::{FileExt as _, MetadataExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use turbo_api::AppStatus;

use super::daemon;
use crate::{
    cli::LogsArgs,
    connect::call_error,
    render::{NO_APPS, Tone, paint},
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

/// One log file being shown, with the prefix of its lines.
struct Source {
    prefix: String,
    path: PathBuf,
}

pub async fn run(args: &LogsArgs) -> Result<()> {
    let apps = {
        let daemon = daemon().await?;
        daemon.proxy.list_apps().await.map_err(|e| call_error(&e))?
        // the connection closes here: following needs only the files
    };
    let selected = select(&apps, args.name.as_deref())?;
    if selected.is_empty() {
        return term::emit(NO_APPS);
    }
    let streams: &[Stream] = match (args.out, args.err) {
        (true, false) => &[Stream::Out],
        (false, true) => &[Stream::Err],
        _ => &[Stream::Out, Stream::Err],
    };
    let color = term::stdout_opts().color;
    let labels = labels(&selected);
    let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);

    let mut followers = Vec::new();
    for (app, label) in selected.iter().zip(&labels) {
        for &stream in streams {
            let source = Source {
                prefix: prefix(label, width, stream, color),
                path: PathBuf::from(match stream {
                    Stream::Out => &app.out_log,
                    Stream::Err => &app.err_log,
                }),
            };
            let tail = read_tail(&source.path, args.lines)
                .with_context(|| format!("cannot read {}", source.path.display()))?;
            let mut lines = tail.lines;
            // without --follow an unfinished last line is still the latest thing the app said
            if !args.follow && !tail.partial.is_empty() {
                lines.push(tail.partial);
            }
            print_lines(&source.prefix, &lines)?;
            followers.push(Follower {
                source,
                offset: tail.resume_at,
                inode: tail.inode,
                pending: Vec::new(),
            });
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
        for follower in &mut followers {
            let lines = follower
                .poll()
                .with_context(|| format!("cannot read {}", follower.source.path.display()))?;
            print_lines(&follower.source.prefix, &lines)?;
        }
    }
}

/// The apps to show: all of them, or those whose name or id is `name`.
fn select(apps: &[AppStatus], name: Option<&str>) -> Result<Vec<AppStatus>> {
    let Some(name) = name else {
        return Ok(apps.to_vec());
    };
    let matching: Vec<AppStatus> = apps
        .iter()
        .filter(|a| a.name == name || a.id.to_string() == name)
        .cloned()
        .collect();
    if matching.is_empty() {
        bail!("no app named {name}");
    }
    Ok(matching)
}

/// The name, with `:instance` when several instances share it.
fn labels(apps: &[AppStatus]) -> Vec<String> {
    apps.iter()
        .map(|app| {
            if apps.iter().filter(|a| a.name == app.name).count() > 1 {
                format!("{}:{}", app.name, app.instance)
            } else {
                app.name.clone()
            }
        })
        .collect()
}

fn prefix(label: &str, width: usize, stream: Stream, color: bool) -> String {
    let (text, tone) = match stream {
        Stream::Out => (format!("{label:<width$} out |"), Tone::Dim),
        Stream::Err => (format!("{label:<width$} err |"), Tone::Red),
    };
    format!("{} ", paint(color, tone, &text))
}

fn print_lines(prefix: &str, lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let text: Vec<String> = lines.iter().map(|l| format!("{prefix}{l}")).collect();
    term::emit(&text.join("\n"))
}

/// The end of a log file.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tail {
    /// The last complete lines, oldest first.
    lines: Vec<String>,
    /// Bytes after the last newline (a line still being written).
    partial: String,
    /// Where following continues: the start of `partial`.
    resume_at: u64,
    /// Identity of the file read, to notice rotation.
    inode: Option<u64>,
}

/// The last `n` complete lines of `path`, reading backwards in chunks; a missing file is empty
/// (the app may not have written anything yet).
fn read_tail(path: &Path, n: usize) -> io::Result<Tail> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Tail::default()),
        Err(err) => return Err(err),
    };
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
    let partial = String::from_utf8_lossy(&buf[complete_end..]).into_owned();
    let mut lines: Vec<&[u8]> = buf[..complete_end].split(|&b| b == b'\n').collect();
    lines.pop(); // the empty piece after the final newline
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // may be the end of a line that began before what we read
    }
    let skip = lines.len().saturating_sub(n);
    Ok(Tail {
        lines: lines[skip..]
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect(),
        resume_at: len - (buf.len() - complete_end) as u64,
        partial,
        inode: Some(meta.ino()),
    })
}

fn count_newlines(buf: &[u8]) -> usize {
    buf.iter().filter(|&&b| b == b'\n').count()
}

/// Follows one file across appends, truncation and rotation.
struct Follower {
    source: Source,
    offset: u64,
    inode: Option<u64>,
    /// Bytes of a line whose newline has not arrived yet.
    pending: Vec<u8>,
}

impl Follower {
    /// The complete lines appended since the last poll.
    fn poll(&mut self) -> io::Result<Vec<String>> {
        let meta = match fs::metadata(&self.source.path) {
            Ok(meta) => meta,
            // between a rotation's rename and the daemon reopening the file
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        if self.inode != Some(meta.ino()) || meta.len() < self.offset {
            // rotated (a new file) or truncated: what is there now is all new
            self.inode = Some(meta.ino());
            self.offset = 0;
            self.pending.clear();
        }
        if meta.len() == self.offset {
            return Ok(Vec::new());
        }
        let mut file = File::open(&self.source.path)?;
        file.seek(SeekFrom::Start(self.offset))?;
        let read = file
            .take(MAX_READ_PER_POLL)
            .read_to_end(&mut self.pending)?;
        self.offset += read as u64;
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        let rest = self.pending.split_off(end + 1);
        let complete = std::mem::replace(&mut self.pending, rest);
        Ok(complete[..end]
            .split(|&b| b == b'\n')
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

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
        assert_eq!(select(&apps, None).unwrap().len(), 3);
        assert_eq!(select(&apps, Some("api")).unwrap().len(), 2);
        assert_eq!(select(&apps, Some("2")).unwrap()[0].name, "worker");
        let err = select(&apps, Some("nope")).unwrap_err().to_string();
        assert_eq!(err, "no app named nope");
        assert_eq!(labels(&apps), ["api:0", "api:1", "worker"]);
        assert_eq!(prefix("api", 6, Stream::Err, false), "api    err | ");
    }

    fn write(path: &Path, text: &str) {
        fs::write(path, text).unwrap();
    }

    #[test]
    fn tails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        assert_eq!(
            read_tail(&path, 5).unwrap(),
            Tail::default(),
            "missing is empty"
        );

        write(&path, "one\ntwo\nthree\nfour\npart");
        let tail = read_tail(&path, 2).unwrap();
        assert_eq!(tail.lines, ["three", "four"]);
        assert_eq!(tail.partial, "part");
        assert_eq!(tail.resume_at, 19);
        assert_eq!(
            read_tail(&path, 10).unwrap().lines,
            ["one", "two", "three", "four"]
        );
        assert!(read_tail(&path, 0).unwrap().lines.is_empty());
        assert_eq!(read_tail(&path, 0).unwrap().resume_at, 19);

        // longer than one chunk, so the backwards reading has to stitch chunks together
        let long: String = (0..30_000).map(|i| format!("line {i}\n")).collect();
        write(&path, &long);
        let tail = read_tail(&path, 3).unwrap();
        assert_eq!(tail.lines, ["line 29997", "line 29998", "line 29999"]);
        assert_eq!(tail.resume_at, long.len() as u64);
        assert_eq!(read_tail(&path, 20_000).unwrap().lines[0], "line 10000");
    }

    #[test]
    fn following_appends_partial_lines_truncation_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        write(&path, "old\n");
        let tail = read_tail(&path, 1).unwrap();
        let mut f = Follower {
            source: Source {
                prefix: String::new(),
                path: path.clone(),
            },
            offset: tail.resume_at,
            inode: tail.inode,
            pending: Vec::new(),
        };
        assert!(f.poll().unwrap().is_empty());

        let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"new 1\nnew").unwrap();
        assert_eq!(f.poll().unwrap(), ["new 1"]);
        file.write_all(b" 2\n").unwrap();
        assert_eq!(f.poll().unwrap(), ["new 2"]);

        // truncation: everything now in the file is new
        file.set_len(0).unwrap();
        file.write_all(b"after truncate\n").unwrap();
        assert_eq!(f.poll().unwrap(), ["after truncate"]);

        // rotation: renamed away, a new file appears; even if already longer than our offset
        fs::rename(&path, dir.path().join("a.log.1")).unwrap();
        assert!(
            f.poll().unwrap().is_empty(),
            "gap between rename and reopen"
        );
        write(
            &path,
            "rotated 1\nrotated 2 is long enough to pass the old offset\n",
        );
        assert_eq!(
            f.poll().unwrap(),
            [
                "rotated 1",
                "rotated 2 is long enough to pass the old offset"
            ]
        );
    }
}
