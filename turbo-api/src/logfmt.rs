//! The log-file record format, written by the daemon's log keeper and read by the CLI: one
//! definition of the on-disk layout, so writer and reader cannot drift apart.
//!
//! Files: an app's output goes to `<app>-out.log` and `<app>-err.log` ([`file_name`]). Rotation
//! renames `<f>` to `<f>.1`, `<f>.1` to `<f>.2` and so on: `.1` is the newest rotated file and
//! higher numbers are older ([`rotated_path`], [`rotation_number`]). Numbers have no leading
//! zero. With `log.compress`, rotated files but the newest are compressed: `<f>.<n>.gz` or
//! `<f>.<n>.zst` ([`Compression`]); anything else beside the file (`<f>.x`, `<f>.01`,
//! `<f>.1.bz2`) is not one of ours.
//!
//! Records, one per line, each ending in `\n`; a file may hold every layout below (a policy
//! change or an upgrade applies from the next record on), so every record is recognised on its
//! own ([`Record::parse`]):
//! * text v2: `<stamp>[<instance>:<pid>] <raw line bytes>`: who wrote the line, tagged by the
//!   pipe it came from. The `[` right after the stamp (v1 has a space there) tells the layouts
//!   apart, so no v1 line can be mistaken for a tagged one;
//! * text v1 (first generation, still read): `<stamp> <raw line bytes>`;
//! * json: `{"at":"<stamp>","app":"..","instance":N,"pid":N,"stream":"out|err","line":".."}`
//!   (v1 records lack `instance` and `pid`). JSON strings cannot hold arbitrary bytes, so when a
//!   line is not valid UTF-8 its `line` is a lossy rendering (U+FFFD) and the record adds
//!   `"line_b64"`: the raw bytes in standard base64 (RFC 4648 §4, padded). Readers that need the
//!   exact bytes take `line_b64` when present, else `line`.
//!
//! The stamp written is RFC 3339 UTC with milliseconds, [`STAMP_LEN`] bytes
//! (`2026-01-02T03:04:05.678Z`). Readers also take a stamp at an offset
//! (`2026-01-02T04:04:05.678+01:00`, [`OFFSET_STAMP_LEN`] bytes), the form users type for
//! `turbo logs --since`; [`stamp_ms`] reads either back to Unix time.
//!
//! The writer's functions append to a caller's buffer and allocate nothing else: the keeper
//! formats a whole pipe read in one go on its hot path. This module does no I/O.

use std::{
    ffi::{OsStr, OsString},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::LogStream;

/// Length of a UTC stamp, e.g. `2026-01-02T03:04:05.678Z`.
pub const STAMP_LEN: usize = 24;
/// Length of a stamp at an offset, e.g. `2026-01-02T04:04:05.678+01:00`.
pub const OFFSET_STAMP_LEN: usize = 29;

/// Who wrote a record: the app's instance and the process, known by the pipe it came through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Source {
    /// The instance number (`name:N`).
    pub instance: u32,
    /// The process id.
    pub pid: u32,
}

/// How a rotated file is compressed, by its name's suffix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// `<f>.<n>`.
    #[default]
    None,
    /// `<f>.<n>.gz` (gzip, RFC 1952).
    Gzip,
    /// `<f>.<n>.zst` (Zstandard, RFC 8878).
    Zstd,
}

impl Compression {
    /// The suffix after `<f>.<n>`: empty, `.gz` or `.zst`.
    #[must_use]
    pub const fn suffix(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Gzip => ".gz",
            Self::Zstd => ".zst",
        }
    }

    /// The compression of a file, by its name.
    #[must_use]
    pub fn of(path: &Path) -> Compression {
        match path.extension().and_then(OsStr::to_str) {
            Some("gz") => Self::Gzip,
            Some("zst") => Self::Zstd,
            _ => Self::None,
        }
    }
}

/// The name of `app`'s log file for `stream`: `<app>-out.log` or `<app>-err.log`.
#[must_use]
pub fn file_name(app: &str, stream: LogStream) -> String {
    format!("{app}-{}.log", stream.as_str())
}

/// `<path>.<n>`: the `n`th rotated file of the log at `path` (1 is the newest).
#[must_use]
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// `<path>.<n><suffix>`: the `n`th rotated file, compressed with `compression`.
#[must_use]
pub fn rotated_path_as(path: &Path, n: u32, compression: Compression) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}{}", compression.suffix()));
    PathBuf::from(name)
}

/// `Some(n)` when `candidate` (a file name) is the `n`th rotated file of the log named `log`
/// (`<log>.<n>`, n ≥ 1 without leading zeros, optionally `.gz` or `.zst` after it).
#[must_use]
pub fn rotation_number(log: &OsStr, candidate: &OsStr) -> Option<u32> {
    let mut suffix = candidate
        .as_encoded_bytes()
        .strip_prefix(log.as_encoded_bytes())?
        .strip_prefix(b".")?;
    for packed in [Compression::Gzip, Compression::Zstd] {
        if let Some(number) = suffix.strip_suffix(packed.suffix().as_bytes()) {
            suffix = number;
            break;
        }
    }
    if suffix.first().is_none_or(|&b| b == b'0') || !suffix.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(suffix).ok()?.parse().ok()
}

/// The rotated files of the log at `log`, found among `names` (the file names in its
/// directory), with their numbers: `.1` (the newest) first.
#[must_use]
pub fn rotated_files(log: &Path, names: impl IntoIterator<Item = OsString>) -> Vec<(u32, PathBuf)> {
    let Some(log_name) = log.file_name() else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = names
        .into_iter()
        .filter_map(|name| rotation_number(log_name, &name).map(|n| (n, log.with_file_name(name))))
        .collect();
    found.sort_unstable();
    found
}

/// Every file of the log at `log` in the order they were written: its rotated files (found
/// among `names`, the file names in its directory) oldest first, then `log` itself.
#[must_use]
pub fn oldest_first(log: &Path, names: impl IntoIterator<Item = OsString>) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = rotated_files(log, names)
        .into_iter()
        .rev()
        .map(|(_, path)| path)
        .collect();
    files.push(log.to_owned());
    files
}

/// The stamp of a record written at `unix_ms` (milliseconds since the Unix epoch).
#[must_use]
pub fn stamp(unix_ms: u64) -> String {
    crate::rfc3339_ms(unix_ms)
}

/// Unix milliseconds of a stamp in either form (`…Z` or `…±HH:MM`); `None` when `stamp` is
/// not one.
#[must_use]
pub fn stamp_ms(stamp: &str) -> Option<i64> {
    let b = stamp.as_bytes();
    let (offset_min, main) = match b.len() {
        STAMP_LEN if b[STAMP_LEN - 1] == b'Z' => (0, &b[..STAMP_LEN - 1]),
        OFFSET_STAMP_LEN => {
            let (main, off) = b.split_at(STAMP_LEN - 1);
            let sign = match off[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if off[3] != b':' {
                return None;
            }
            (
                sign * (digits(&off[1..3])? * 60 + digits(&off[4..6])?),
                main,
            )
        }
        _ => return None,
    };
    // `dddd-dd-ddTdd:dd:dd.ddd`
    if [4, 7, 10, 13, 16, 19].map(|i| main[i]) != *b"--T::." {
        return None;
    }
    let (y, mo, d) = (
        digits(&main[0..4])?,
        digits(&main[5..7])?,
        digits(&main[8..10])?,
    );
    let (h, mi, s, ms) = (
        digits(&main[11..13])?,
        digits(&main[14..16])?,
        digits(&main[17..19])?,
        digits(&main[20..23])?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + s - offset_min * 60) * 1000) + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
#[must_use]
pub const fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

/// Appends `app` as a JSON string, quotes included: the `app` field of a json record, which a
/// writer computes once per app and passes to [`push_json_record`].
pub fn push_app_json(out: &mut Vec<u8>, app: &str) {
    push_json_str(out, app);
}

/// Appends one text record: `<stamp> <line>\n`.
pub fn push_text_record(out: &mut Vec<u8>, stamp: &str, line: &[u8]) {
    out.extend_from_slice(stamp.as_bytes());
    out.push(b' ');
    out.extend_from_slice(line);
    out.push(b'\n');
}

/// Appends one tagged text record: `<stamp>[<instance>:<pid>] <line>\n`.
pub fn push_tagged_text_record(out: &mut Vec<u8>, stamp: &str, source: Source, line: &[u8]) {
    push_text_head(out, stamp, source);
    push_text_line(out, line);
}

/// Appends what precedes the line in a tagged text record, `<stamp>[<instance>:<pid>] `: the
/// same for every line of a batch, so a writer formats it once per batch ([`push_text_line`]
/// after a copy of it completes each record).
pub fn push_text_head(out: &mut Vec<u8>, stamp: &str, source: Source) {
    out.extend_from_slice(stamp.as_bytes());
    out.push(b'[');
    push_u32(out, source.instance);
    out.push(b':');
    push_u32(out, source.pid);
    out.extend_from_slice(b"] ");
}

/// Appends the rest of a text record after its head ([`push_text_head`]): `<line>\n`.
pub fn push_text_line(out: &mut Vec<u8>, line: &[u8]) {
    out.extend_from_slice(line);
    out.push(b'\n');
}

/// Appends one json record (`app_json` from [`push_app_json`]), with `line_b64` when `line` is
/// not UTF-8, and its `\n`: the first generation's layout, without `instance` and `pid`.
pub fn push_json_record(
    out: &mut Vec<u8>,
    stamp: &str,
    app_json: &[u8],
    stream: LogStream,
    line: &[u8],
) {
    push_json(out, stamp, app_json, None, stream, line);
}

/// Appends one json record with `instance` and `pid` (today's layout).
pub fn push_tagged_json_record(
    out: &mut Vec<u8>,
    stamp: &str,
    app_json: &[u8],
    source: Source,
    stream: LogStream,
    line: &[u8],
) {
    push_json(out, stamp, app_json, Some(source), stream, line);
}

fn push_u32(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        // a decimal digit
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn push_json(
    out: &mut Vec<u8>,
    stamp: &str,
    app_json: &[u8],
    source: Option<Source>,
    stream: LogStream,
    line: &[u8],
) {
    push_json_head(out, stamp, app_json, source, stream);
    push_json_line(out, line);
}

/// Appends what precedes the line in a json record (`{"at":…,"stream":"out","line":`): the same
/// for every line of a batch, so a writer formats it once per batch ([`push_json_line`] after a
/// copy of it completes each record). `source` is `None` for the first generation's layout.
pub fn push_json_head(
    out: &mut Vec<u8>,
    stamp: &str,
    app_json: &[u8],
    source: Option<Source>,
    stream: LogStream,
) {
    out.extend_from_slice(b"{\"at\":\"");
    out.extend_from_slice(stamp.as_bytes());
    out.extend_from_slice(b"\",\"app\":");
    out.extend_from_slice(app_json);
    if let Some(source) = source {
        out.extend_from_slice(b",\"instance\":");
        push_u32(out, source.instance);
        out.extend_from_slice(b",\"pid\":");
        push_u32(out, source.pid);
    }
    out.extend_from_slice(b",\"stream\":\"");
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(b"\",\"line\":");
}

/// Appends the rest of a json record after its head ([`push_json_head`]): the line as a JSON
/// string, `line_b64` when it is not UTF-8, and `}\n`.
pub fn push_json_line(out: &mut Vec<u8>, line: &[u8]) {
    if let Ok(text) = std::str::from_utf8(line) {
        push_json_str(out, text);
    } else {
        push_json_str(out, &String::from_utf8_lossy(line));
        out.extend_from_slice(b",\"line_b64\":\"");
        push_base64(out, line);
        out.push(b'"');
    }
    out.extend_from_slice(b"}\n");
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

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Appends `data` in standard base64 with padding (RFC 4648 §4), as `line_b64` holds it.
pub fn push_base64(out: &mut Vec<u8>, data: &[u8]) {
    let sextet = |n: u32, shift: u32| BASE64[((n >> shift) & 63) as usize];
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                sextet(n, 18 - 6 * i as u32)
            } else {
                b'='
            });
        }
    }
}

/// `data` in standard base64 with padding, as a string.
#[must_use]
pub fn base64(data: &[u8]) -> String {
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    push_base64(&mut out, data);
    // the alphabet and the padding are ASCII
    String::from_utf8(out).unwrap_or_default()
}

/// The bytes of standard base64 text (padded or not); `None` when `text` is not base64.
#[must_use]
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let digits = text.trim_end_matches('=').as_bytes();
    if text.len() - digits.len() > 2 || digits.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() / 4 * 3 + 2);
    for quad in digits.chunks(4) {
        let mut n = 0u32;
        for &c in quad {
            let v = BASE64.iter().position(|&a| a == c)?;
            n = n << 6 | u32::try_from(v).ok()?;
        }
        n <<= 6 * (4 - quad.len());
        out.extend_from_slice(&n.to_be_bytes()[1..quad.len()]);
    }
    Some(out)
}

/// One record of a log file, in whichever layout it was written.
#[derive(Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// `<stamp>[<instance>:<pid>] <line>` or `<stamp> <line>`; `at` is `None` for a line without
    /// a stamp (not written by TurboProcess).
    Text {
        /// The stamp.
        at: Option<&'a str>,
        /// Who wrote it (`None` in first-generation records).
        source: Option<Source>,
        /// The raw line.
        line: &'a [u8],
    },
    /// A json record; fields it lacks are `None` (`line` empty).
    Json {
        /// The stamp.
        at: Option<String>,
        /// The app that wrote it.
        app: Option<String>,
        /// Who wrote it (`None` in first-generation records).
        source: Option<Source>,
        /// `out` or `err`.
        stream: Option<String>,
        /// The line, lossy when it was not UTF-8.
        line: String,
        /// The raw bytes, when the line was not UTF-8.
        line_b64: Option<String>,
    },
}

impl<'a> Record<'a> {
    /// Recognises one record (`raw` without its `\n`): a JSON object with a string `line` is a
    /// json record, anything else a text record, stamped when it starts with a stamp and a space.
    #[must_use]
    pub fn parse(raw: &'a [u8]) -> Record<'a> {
        if raw.first() == Some(&b'{')
            && let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(raw)
            && map.get("line").is_some_and(Value::is_string)
        {
            let field = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
            let number = |key: &str| {
                map.get(key)
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
            };
            return Record::Json {
                at: field("at"),
                app: field("app"),
                source: number("instance")
                    .zip(number("pid"))
                    .map(|(instance, pid)| Source { instance, pid }),
                stream: field("stream"),
                line: field("line").unwrap_or_default(),
                line_b64: field("line_b64"),
            };
        }
        match split_stamp(raw) {
            Some((at, source, line)) => Record::Text {
                at: Some(at),
                source,
                line,
            },
            None => Record::Text {
                at: None,
                source: None,
                line: raw,
            },
        }
    }

    /// Who wrote the record, when it says.
    #[must_use]
    pub const fn source(&self) -> Option<Source> {
        match self {
            Record::Text { source, .. } | Record::Json { source, .. } => *source,
        }
    }

    /// Unix milliseconds of its stamp, when it has one.
    #[must_use]
    pub fn at_ms(&self) -> Option<i64> {
        self.at().and_then(stamp_ms)
    }

    /// The stamp, if the record has one.
    #[must_use]
    pub fn at(&self) -> Option<&str> {
        match self {
            Record::Text { at, .. } => *at,
            Record::Json { at, .. } => at.as_deref(),
        }
    }

    /// The line as text (lossy UTF-8).
    #[must_use]
    pub fn text(&self) -> String {
        match self {
            Record::Text { line, .. } => String::from_utf8_lossy(line).into_owned(),
            Record::Json { line, .. } => line.clone(),
        }
    }

    /// The line's exact bytes: the raw text line, or `line_b64` decoded when a json record has
    /// it (else its `line`).
    #[must_use]
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Record::Text { line, .. } => line.to_vec(),
            Record::Json { line, line_b64, .. } => line_b64
                .as_deref()
                .and_then(decode_base64)
                .unwrap_or_else(|| line.as_bytes().to_vec()),
        }
    }
}

/// `(stamp, source, rest)` when `raw` starts with a stamp (either form) and then a space (v1)
/// or a `[<instance>:<pid>] ` tag.
fn split_stamp(raw: &[u8]) -> Option<(&str, Option<Source>, &[u8])> {
    const SHAPE: &[u8; STAMP_LEN - 1] = b"dddd-dd-ddTdd:dd:dd.ddd";
    let head = raw.get(..STAMP_LEN - 1)?;
    let fits = head.iter().zip(SHAPE).all(|(&b, &s)| {
        if s == b'd' {
            b.is_ascii_digit()
        } else {
            b == s
        }
    });
    if !fits {
        return None;
    }
    let len = match raw.get(STAMP_LEN - 1)? {
        b'Z' => STAMP_LEN,
        b'+' | b'-' => OFFSET_STAMP_LEN,
        _ => return None,
    };
    let stamp = std::str::from_utf8(raw.get(..len)?).ok()?;
    stamp_ms(stamp)?;
    let rest = &raw[len..];
    match rest.first()? {
        b' ' => Some((stamp, None, &rest[1..])),
        b'[' => {
            let close = rest.iter().position(|&b| b == b']')?;
            let (instance, pid) = std::str::from_utf8(&rest[1..close]).ok()?.split_once(':')?;
            let digits_only = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
            if !digits_only(instance) || !digits_only(pid) || rest.get(close + 1) != Some(&b' ') {
                return None;
            }
            let source = Source {
                instance: instance.parse().ok()?,
                pid: pid.parse().ok()?,
            };
            Some((stamp, Some(source), &rest[close + 2..]))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(base64(plain.as_bytes()), encoded);
            assert_eq!(decode_base64(encoded).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode_base64(&base64(&all)).unwrap(), all);
        for bad in ["Z", "Zg===", "Z!==", "Zm9v Yg=="] {
            assert_eq!(decode_base64(bad), None, "{bad}");
        }
    }

    #[test]
    fn records_of_both_layouts() {
        assert_eq!(
            Record::parse(b"2026-01-02T03:04:05.678Z hello world"),
            Record::Text {
                at: Some("2026-01-02T03:04:05.678Z"),
                source: None,
                line: b"hello world"
            }
        );
        assert_eq!(
            Record::parse(b"2026-01-02T03:04:05.678Z "),
            Record::Text {
                at: Some("2026-01-02T03:04:05.678Z"),
                source: None,
                line: b""
            }
        );
        for unstamped in [
            &b"no stamp here"[..],
            b"2026-01-02 03:04:05 x",
            b"2026-01-02T03:04:05.678Zx",
            b"{not json",
            br#"{"line":1}"#,
            b"2026-01-02T03:04:05.678Z[1:2]x",
            b"2026-01-02T03:04:05.678Z[1:] x",
            b"2026-01-02T03:04:05.678Z[a:2] x",
            b"2026-13-02T03:04:05.678Z x",
            b"2026-01-02T03:04:05.678+0100 x",
        ] {
            assert_eq!(
                Record::parse(unstamped),
                Record::Text {
                    at: None,
                    source: None,
                    line: unstamped
                }
            );
        }
        let json =
            br#"{"at":"2026-01-02T03:04:05.678Z","app":"api","stream":"err","line":"boom \"x\""}"#;
        let rec = Record::parse(json);
        assert_eq!(
            rec,
            Record::Json {
                at: Some("2026-01-02T03:04:05.678Z".into()),
                app: Some("api".into()),
                source: None,
                stream: Some("err".into()),
                line: "boom \"x\"".into(),
                line_b64: None
            }
        );
        assert_eq!(
            (rec.at(), rec.text(), rec.bytes()),
            (
                Some("2026-01-02T03:04:05.678Z"),
                "boom \"x\"".to_owned(),
                b"boom \"x\"".to_vec()
            )
        );
    }

    #[test]
    fn json_records_round_trip_any_bytes() {
        let mut app = Vec::new();
        push_app_json(&mut app, "a\"pp");
        for line in [
            &b"plain"[..],
            b"",
            b"quote \" backslash \\ tab \t ctrl \x01\x1f del \x7f cr \r",
            "caf\u{e9} \u{2028} \u{1F600}".as_bytes(),
            b"\xff\xfe\x00 binary \x80",
            b"cut \xe2\x82",
        ] {
            let mut out = Vec::new();
            push_json_record(
                &mut out,
                "2026-01-02T03:04:05.678Z",
                &app,
                LogStream::Err,
                line,
            );
            let raw = out.strip_suffix(b"\n").unwrap();
            let value: Value = serde_json::from_slice(raw).unwrap();
            assert_eq!(value["app"], "a\"pp");
            assert_eq!(
                value.get("line_b64").is_some(),
                std::str::from_utf8(line).is_err()
            );
            assert_eq!(Record::parse(raw).bytes(), line);
        }
    }

    #[test]
    fn rotated_file_names() {
        let log = Path::new("/l/api-out.log");
        assert_eq!(file_name("api", LogStream::Out), "api-out.log");
        assert_eq!(file_name("api", LogStream::Err), "api-err.log");
        assert_eq!(rotated_path(log, 3), Path::new("/l/api-out.log.3"));
        let n = |s: &str| rotation_number(OsStr::new("api-out.log"), OsStr::new(s));
        assert_eq!(n("api-out.log.1"), Some(1));
        assert_eq!(n("api-out.log.120"), Some(120));
        assert_eq!(n("api-out.log.3.gz"), Some(3));
        assert_eq!(n("api-out.log.4.zst"), Some(4));
        assert_eq!(
            rotated_path_as(log, 2, Compression::Zstd),
            Path::new("/l/api-out.log.2.zst")
        );
        assert_eq!(
            Compression::of(Path::new("/l/a.log.2.gz")),
            Compression::Gzip
        );
        assert_eq!(Compression::of(Path::new("/l/a.log.2")), Compression::None);
        let names = [
            "api-out.log.10",
            "api-out.log",
            "api-out.log.2",
            "x",
            "api-out.log.1",
        ]
        .map(OsString::from);
        assert_eq!(
            oldest_first(log, names),
            [
                "/l/api-out.log.10",
                "/l/api-out.log.2",
                "/l/api-out.log.1",
                "/l/api-out.log"
            ]
            .map(PathBuf::from)
        );
        for not_ours in [
            "api-out.log",
            "api-out.log.",
            "api-out.log.0",
            "api-out.log.01",
            "api-out.log.x",
            "api-out.log.1.bz2",
            "api-out.log.gz",
            "api-out.log.01.gz",
            "api-err.log.1",
        ] {
            assert_eq!(n(not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn tagged_records_and_offset_stamps() {
        let source = Source {
            instance: 2,
            pid: 4242,
        };
        let mut out = Vec::new();
        push_tagged_text_record(&mut out, "2026-01-02T03:04:05.678Z", source, b"hi [0:1] x");
        assert_eq!(out, b"2026-01-02T03:04:05.678Z[2:4242] hi [0:1] x\n");
        let rec = Record::parse(out.strip_suffix(b"\n").unwrap());
        assert_eq!(rec.source(), Some(source));
        assert_eq!(rec.bytes(), b"hi [0:1] x");
        assert_eq!(rec.at_ms(), Some(1_767_323_045_678));

        let mut app = Vec::new();
        push_app_json(&mut app, "api");
        let mut json = Vec::new();
        push_tagged_json_record(&mut json, "t", &app, source, LogStream::Out, b"x");
        assert_eq!(
            json,
            br#"{"at":"t","app":"api","instance":2,"pid":4242,"stream":"out","line":"x"}"#
                .iter()
                .chain(b"\n")
                .copied()
                .collect::<Vec<u8>>()
        );
        assert_eq!(
            Record::parse(json.strip_suffix(b"\n").unwrap()).source(),
            Some(source)
        );

        // a v1 line that happens to look like a tag stays the line
        let v1 = Record::parse(b"2026-01-02T03:04:05.678Z [1:2] x");
        assert_eq!((v1.source(), v1.bytes()), (None, b"[1:2] x".to_vec()));

        let at = 1_767_323_045_678;
        for text in [
            "2026-01-02T03:04:05.678Z",
            "2026-01-02T04:04:05.678+01:00",
            "2026-01-01T21:34:05.678-05:30",
        ] {
            assert_eq!(stamp_ms(text), Some(at), "{text}");
        }
        let offset = Record::parse(b"2026-01-02T04:04:05.678+01:00[0:7] z");
        assert_eq!((offset.at_ms(), offset.bytes()), (Some(at), b"z".to_vec()));
        assert_eq!(stamp_ms("2000-02-29T00:00:00.000Z"), Some(951_782_400_000));
        for bad in [
            "",
            "2026-01-02T03:04:05.678",
            "2026-01-02T03:04:05.678+01-00",
            "x",
        ] {
            assert_eq!(stamp_ms(bad), None, "{bad}");
        }
    }
}
