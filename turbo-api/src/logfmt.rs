//! The log-file record format, written by the daemon's log keeper and read by the CLI: one
//! definition of the on-disk layout, so writer and reader cannot drift apart.
//!
//! Files: an app's output goes to `<app>-out.log` and `<app>-err.log` ([`file_name`]). Rotation
//! renames `<f>` to `<f>.1`, `<f>.1` to `<f>.2` and so on: `.1` is the newest rotated file and
//! higher numbers are older ([`rotated_path`], [`rotation_number`]). Numbers have no leading
//! zero; anything else beside the file (`<f>.x`, `<f>.01`) is not one of ours.
//!
//! Records, one per line, each ending in `\n`; a file may hold both layouts (a policy change
//! applies from the next record on), so every record is recognised on its own ([`Record::parse`]):
//! * text: `<stamp> <raw line bytes>`, the bytes exactly as the app wrote them;
//! * json: `{"at":"<stamp>","app":"..","stream":"out|err","line":".."}`. JSON strings cannot hold
//!   arbitrary bytes, so when a line is not valid UTF-8 its `line` is a lossy rendering (U+FFFD)
//!   and the record adds `"line_b64"`: the raw bytes in standard base64 (RFC 4648 §4, padded).
//!   Readers that need the exact bytes take `line_b64` when present, else `line`.
//!
//! The stamp is RFC 3339 UTC with milliseconds, always [`STAMP_LEN`] bytes
//! (`2026-01-02T03:04:05.678Z`).
//!
//! The writer's functions append to a caller's buffer and allocate nothing else: the keeper
//! formats a whole pipe read in one go on its hot path. This module does no I/O.

use std::{
    ffi::{OsStr, OsString},
    path::{Path, PathBuf},
};

use serde_json::Value;

use crate::LogStream;

/// Length of a record's stamp, e.g. `2026-01-02T03:04:05.678Z`.
pub const STAMP_LEN: usize = 24;

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

/// `Some(n)` when `candidate` (a file name) is the `n`th rotated file of the log named `log`
/// (`<log>.<n>`, n ≥ 1 without leading zeros).
#[must_use]
pub fn rotation_number(log: &OsStr, candidate: &OsStr) -> Option<u32> {
    let suffix = candidate
        .as_encoded_bytes()
        .strip_prefix(log.as_encoded_bytes())?
        .strip_prefix(b".")?;
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

/// Appends one json record (`app_json` from [`push_app_json`]), with `line_b64` when `line` is
/// not UTF-8, and its `\n`.
pub fn push_json_record(
    out: &mut Vec<u8>,
    stamp: &str,
    app_json: &[u8],
    stream: LogStream,
    line: &[u8],
) {
    out.extend_from_slice(b"{\"at\":\"");
    out.extend_from_slice(stamp.as_bytes());
    out.extend_from_slice(b"\",\"app\":");
    out.extend_from_slice(app_json);
    out.extend_from_slice(b",\"stream\":\"");
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(b"\",\"line\":");
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
    /// `<stamp> <line>`; `at` is `None` for a line without a stamp (not written by TurboProcess).
    Text {
        /// The stamp.
        at: Option<&'a str>,
        /// The raw line.
        line: &'a [u8],
    },
    /// A json record; fields it lacks are `None` (`line` empty).
    Json {
        /// The stamp.
        at: Option<String>,
        /// The app that wrote it.
        app: Option<String>,
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
            return Record::Json {
                at: field("at"),
                app: field("app"),
                stream: field("stream"),
                line: field("line").unwrap_or_default(),
                line_b64: field("line_b64"),
            };
        }
        match split_stamp(raw) {
            Some((at, line)) => Record::Text { at: Some(at), line },
            None => Record::Text {
                at: None,
                line: raw,
            },
        }
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

/// `(stamp, rest)` when `raw` starts with a stamp and a space.
fn split_stamp(raw: &[u8]) -> Option<(&str, &[u8])> {
    const SHAPE: &[u8; STAMP_LEN] = b"dddd-dd-ddTdd:dd:dd.dddZ";
    let stamp = raw.get(..STAMP_LEN)?;
    let fits = stamp.iter().zip(SHAPE).all(|(&b, &s)| {
        if s == b'd' {
            b.is_ascii_digit()
        } else {
            b == s
        }
    });
    if !fits || raw.get(STAMP_LEN) != Some(&b' ') {
        return None;
    }
    Some((std::str::from_utf8(stamp).ok()?, &raw[STAMP_LEN + 1..]))
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
                line: b"hello world"
            }
        );
        assert_eq!(
            Record::parse(b"2026-01-02T03:04:05.678Z "),
            Record::Text {
                at: Some("2026-01-02T03:04:05.678Z"),
                line: b""
            }
        );
        for unstamped in [
            &b"no stamp here"[..],
            b"2026-01-02 03:04:05 x",
            b"2026-01-02T03:04:05.678Zx",
            b"{not json",
            br#"{"line":1}"#,
        ] {
            assert_eq!(
                Record::parse(unstamped),
                Record::Text {
                    at: None,
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
            "api-out.log.1.gz",
            "api-err.log.1",
        ] {
            assert_eq!(n(not_ours), None, "{not_ours}");
        }
    }
}
