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
        // enough for text records (lines come from `data`), so the loop never reallocates
        self.buf
            .reserve(data.len() + lines.len() * (self.head.len() + 1));
        self.ends.reserve(lines.len());
        for range in lines {
            let line = &data[range.clone()];
            self.buf.extend_from_slice(&self.head);
            match format {
                LogFormat::Text => logfmt::push_text_line(&mut self.buf, line),
                LogFormat::Json => logfmt::push_json_line(&mut self.buf, line),
            }
            self.ends.push(self.buf.len());
        }
    }
}

/// The stamp of records written at `at_ms` (Unix milliseconds, [`super::clock::now_ms`]).
pub(super) fn timestamp(at_ms: i64) -> String {
    logfmt::stamp(u64::try_from(at_ms).unwrap_or(0))
}
