//! Turning a batch of lines into log records, in the app's format: the record layout itself is
//! [`turbo_api::logfmt`], shared with the CLI that reads the files. A batch is formatted into
//! one buffer so that it can be appended with a single `write(2)`.
//!
//! This module must not write or rotate files (that is `sink`).

use std::ops::Range;

use turbo_api::logfmt::{self, Source};

use super::Stream;
use crate::spec::LogFormat;

/// One batch of formatted records and where each ends.
#[derive(Debug, Default)]
pub(crate) struct Records {
    pub(super) buf: Vec<u8>,
    pub(super) ends: Vec<usize>,
    /// What precedes the line in every record of the batch (stamp, tag; for json also the app
    /// and stream), formatted once per batch: per line only copies remain, which keeps the
    /// keeper at the pipe's speed even in the size-optimised release build.
    head: Vec<u8>,
}

impl Records {
    /// Formats `lines` (ranges of `data`) of `source`'s `stream` with one `stamp`; `app_json`
    /// is the app's name as [`logfmt::push_app_json`] wrote it.
    #[expect(
        clippy::too_many_arguments,
        reason = "one batch's whole context, passed on the hot path without a struct to fill"
    )]
    pub(super) fn format(
        &mut self,
        format: LogFormat,
        stamp: &str,
        app_json: &[u8],
        source: Source,
        stream: Stream,
        data: &[u8],
        lines: &[Range<usize>],
    ) {
        self.buf.clear();
        self.ends.clear();
        self.head.clear();
        match format {
            LogFormat::Text => logfmt::push_text_head(&mut self.head, stamp, source),
            LogFormat::Json => {
                logfmt::push_json_head(&mut self.head, stamp, app_json, Some(source), stream);
            }
        }
        // enough for text records (lines come from `data`, and see push_text), so the loop
        // never reallocates
        self.buf
            .reserve(data.len() + lines.len() * (self.head.len() + 1) + HEAD_BLOCK);
        self.ends.reserve(lines.len());
        match format {
            LogFormat::Text => push_text(&mut self.buf, &mut self.ends, &self.head, data, lines),
            LogFormat::Json => {
                for range in lines {
                    self.buf.extend_from_slice(&self.head);
                    logfmt::push_json_line(&mut self.buf, &data[range.clone()]);
                    self.ends.push(self.buf.len());
                }
            }
        }
    }
}

/// Bytes copied for a text record's head: at least the longest head (a stamp with an offset,
/// 29 bytes, and `[4294967295:4294967295] `, 24), a constant, so that the copy is a few vector
/// moves in place rather than a call; the bytes past the head are overwritten by the line.
const HEAD_BLOCK: usize = 64;

/// Text records ([`logfmt::push_text_head`] then [`logfmt::push_text_line`]) in one pass: each
/// line is copied once, straight from the read buffer after its head, together with the newline
/// that ended it in the pipe; only a piece of a cut line or an unfinished last line (no newline
/// after it in `data`) gets one added.
///
/// Per line this is a constant-size head copy and one `memcpy` into room reserved once per
/// batch: in the size-optimised release build, `extend_from_slice` stays a chain of calls with a
/// capacity check each, and two of those per line were a fifth of the keeper's time under a
/// log flood (`cargo xtask bench --only logs`).
fn push_text(
    buf: &mut Vec<u8>,
    ends: &mut Vec<usize>,
    head: &[u8],
    data: &[u8],
    lines: &[Range<usize>],
) {
    let Some(block) = head_block(head) else {
        for range in lines {
            buf.extend_from_slice(head);
            logfmt::push_text_line(buf, &data[range.clone()]);
            ends.push(buf.len());
        }
        return;
    };
    let start = buf.len();
    // lines are disjoint pieces of `data`, and each record is its head, its line and a
    // newline; the last head block may reach HEAD_BLOCK - head.len() bytes further
    let most = data.len() + lines.len() * (head.len() + 1) + HEAD_BLOCK;
    buf.reserve(most);
    let room = &mut buf.spare_capacity_mut()[..most];
    let mut at = 0;
    for range in lines {
        room[at..at + HEAD_BLOCK].write_copy_of_slice(&block);
        at += head.len();
        let ended = data.get(range.end) == Some(&b'\n');
        let line = &data[range.start..range.end + usize::from(ended)];
        room[at..at + line.len()].write_copy_of_slice(line);
        at += line.len();
        if !ended {
            room[at].write(b'\n');
            at += 1;
        }
        ends.push(start + at);
    }
    // SAFETY: the first `at` bytes of the spare capacity were all written above (each record's
    // head, line and newline, one after the other), and `at <= most <= capacity - start`
    unsafe { buf.set_len(start + at) };
}

/// `head` padded to [`HEAD_BLOCK`] bytes; `None` when it is longer (it never is for text).
fn head_block(head: &[u8]) -> Option<[u8; HEAD_BLOCK]> {
    let mut block = [0; HEAD_BLOCK];
    block.get_mut(..head.len())?.copy_from_slice(head);
    Some(block)
}

/// The stamp of records written at `at_ms` (Unix milliseconds, [`super::clock::now_ms`]).
pub(super) fn timestamp(at_ms: i64) -> String {
    logfmt::stamp(u64::try_from(at_ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::pump::split_lines;

    /// The one-pass text records are byte for byte what the record layout's own functions
    /// make, for lines ended by a newline, empty lines, pieces of a cut line and an unfinished
    /// last line.
    #[test]
    fn one_pass_text_records_are_the_layouts() {
        let source = Source {
            instance: 3,
            pid: 4321,
        };
        let stamp = timestamp(1_767_323_045_678);
        let mut data = b"first\n\nthird line\n".to_vec();
        data.extend(vec![b'y'; super::super::MAX_LINE + 10]);
        data.extend_from_slice(b"\nno newline yet");
        let mut lines = Vec::new();
        split_lines(&data, true, &mut lines);
        assert_eq!(
            lines.len(),
            6,
            "3 lines, a cut one in 2 pieces, the unfinished one"
        );
        let mut records = Records::default();
        records.format(
            LogFormat::Text,
            &stamp,
            b"\"app\"",
            source,
            Stream::Out,
            &data,
            &lines,
        );
        let (mut want, mut ends) = (Vec::new(), Vec::new());
        for range in &lines {
            logfmt::push_text_head(&mut want, &stamp, source);
            logfmt::push_text_line(&mut want, &data[range.clone()]);
            ends.push(want.len());
        }
        assert_eq!(records.buf, want);
        assert_eq!(records.ends, ends);
    }
}
