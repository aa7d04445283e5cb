//! Turning a batch of lines into log records, in the app's format: the record layout itself is
//! [`turbo_api::logfmt`], shared with the CLI that reads the files. A batch is formatted into
//! one buffer so that it can be appended with a single `write(2)`.
//!
//! This module must not write or rotate files (that is `sink`).

use turbo_api::logfmt::{self, Source};

use super::{MAX_LINE, Stream, pump::Batch};
use crate::spec::LogFormat;

/// One batch of formatted records, each ended by a newline (a record holds no other: text
/// lines were split on newlines, json escapes them), so the newlines tell where records end.
#[derive(Debug, Default)]
pub(crate) struct Records {
    pub(super) buf: Vec<u8>,
    /// What precedes the line in every record of the batch (stamp, tag; for json also the app
    /// and stream), formatted once per batch: per line only copies remain, which keeps the
    /// keeper at the pipe's speed even in the size-optimised release build.
    head: Vec<u8>,
}

impl Records {
    /// Formats `batch` of `source`'s `stream` with one `stamp`; `app_json` is the app's name as
    /// [`logfmt::push_app_json`] wrote it.
    pub(super) fn format(
        &mut self,
        format: LogFormat,
        stamp: &str,
        app_json: &[u8],
        source: Source,
        stream: Stream,
        batch: &mut Batch<'_>,
    ) {
        self.buf.clear();
        self.head.clear();
        match format {
            LogFormat::Text => {
                logfmt::push_text_head(&mut self.head, stamp, source);
                push_text(&mut self.buf, &self.head, batch);
            }
            LogFormat::Json => {
                logfmt::push_json_head(&mut self.head, stamp, app_json, Some(source), stream);
                let data = batch.data;
                for range in batch.lines() {
                    self.buf.extend_from_slice(&self.head);
                    logfmt::push_json_line(&mut self.buf, &data[range.clone()]);
                }
            }
        }
    }
}

/// Text records ([`logfmt::push_text_head`] then [`logfmt::push_text_line`] per line) in one
/// pass over the batch, in the crate built for it at full optimisation: in the size-optimised
/// release build, a list of the lines' ranges made first, a `Vec::push` per record end and a
/// chain of calls per copy were over half of the keeper's reading thread under a log flood
/// (`cargo xtask bench --only logs`).
fn push_text(buf: &mut Vec<u8>, head: &[u8], batch: &Batch<'_>) {
    turbo_lines::push_text_records(buf, head, batch.data, MAX_LINE);
}

/// The stamp of records written at `at_ms` (Unix milliseconds, [`super::clock::now_ms`]).
pub(super) fn timestamp(at_ms: i64) -> String {
    logfmt::stamp(u64::try_from(at_ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass text records are byte for byte what the record layout's own functions
    /// make of the batch's ranges, for lines ended by a newline, empty lines, pieces of a cut
    /// line (also one cut before a multi-byte character), an unfinished last line, and a
    /// flood of empty lines that outgrows the room reserved up front.
    #[test]
    fn one_pass_text_records_are_the_layouts() {
        let source = Source {
            instance: 3,
            pid: 4321,
        };
        let stamp = timestamp(1_767_323_045_678);
        let mut data = b"first\n\nthird line\n".to_vec();
        data.extend(vec![b'y'; MAX_LINE + 10]);
        data.extend_from_slice(b"\nno newline yet");
        let mut accents = b"x".to_vec();
        accents.extend("é".repeat(MAX_LINE).as_bytes());
        accents.extend_from_slice(b"\nlast");
        let cases = [
            (
                data,
                6,
                "3 lines, a cut one in 2 pieces, the unfinished one",
            ),
            (
                accents,
                4,
                "3 pieces of the accented line, the unfinished one",
            ),
            (vec![b'\n'; 5000], 5000, "empty lines"),
        ];
        for (data, count, what) in cases {
            let mut ranges = Vec::new();
            let mut batch = Batch::new(&data, &mut ranges);
            assert_eq!(batch.lines().len(), count, "{what}");
            let lines = batch.lines().to_vec();
            let mut records = Records::default();
            records.format(
                LogFormat::Text,
                &stamp,
                b"\"app\"",
                source,
                Stream::Out,
                &mut batch,
            );
            let mut want = Vec::new();
            for range in &lines {
                logfmt::push_text_head(&mut want, &stamp, source);
                logfmt::push_text_line(&mut want, &data[range.clone()]);
            }
            assert!(
                records.buf == want,
                "{what}: records differ from the layout's"
            );
        }
    }
}
