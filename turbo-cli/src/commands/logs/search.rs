//! Which records `turbo logs` shows (`--since`, `--until`, `--grep`), and searching a log's
//! files for the last lines that pass, in bounded memory.
//!
//! This module must not print anything.

use super::*;

/// `--since`, `--until` and `--grep`: which records are shown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Filter {
    /// Unix milliseconds: records stamped earlier are left out.
    pub(super) since: Option<i64>,
    /// Unix milliseconds: records stamped later are left out.
    pub(super) until: Option<i64>,
    /// Records whose line does not contain this are left out.
    pub(super) grep: Option<String>,
}

impl Filter {
    pub(super) fn new(args: &LogsArgs, now_ms: i64) -> Result<Self> {
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

    pub(super) const fn active(&self) -> bool {
        self.since.is_some() || self.until.is_some() || self.grep.is_some()
    }

    pub(super) fn passes(&self, record: &Record<'_>) -> bool {
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
pub(super) fn instant_ms(text: &str, now_ms: i64) -> Option<i64> {
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

pub(super) fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The names of the files in the directory of the log at `path`; `None` when it is gone.
pub(super) fn names_beside(path: &Path) -> io::Result<Option<Vec<std::ffi::OsString>>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(Some(
            entries
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect(),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Longest piece of a line [`scan`] holds at once: a file without newlines (not one the keeper
/// wrote) is cut into pieces of this size rather than read whole.
pub(super) const MAX_SCAN_LINE: u64 = 1 << 20;

/// The last `n` lines of the log at `path` that `shown` shows, searched through its rotated
/// files (oldest first) and the current file up to byte `end`; memory stays at `n` lines
/// whatever the size of the files.
pub(super) fn scan(path: &Path, end: u64, shown: &Shown, n: usize) -> io::Result<Vec<Vec<u8>>> {
    let Some(names) = names_beside(path)? else {
        return Ok(Vec::new());
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
pub(super) fn unpacked<'a>(
    file: impl io::Read + 'a,
    how: Compression,
) -> io::Result<Box<dyn io::Read + 'a>> {
    Ok(match how {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(file)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(file)?),
    })
}

/// Reads `reader` line by line (a last line without its newline included) and keeps in `kept`
/// the last `n` that `wanted` takes, pushing out older ones: memory stays at `n` lines.
pub(super) fn last_lines(
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
pub(super) fn open_rotated(path: &Path, n: u32) -> io::Result<Option<(File, Compression)>> {
    for how in [Compression::None, Compression::Gzip, Compression::Zstd] {
        if let Some(file) = open_log(&logfmt::rotated_path_as(path, n, how))? {
            return Ok(Some((file, how)));
        }
    }
    Ok(None)
}
