//! `turbo logs --time utc|local|±HH:MM`: the clock the stamps are shown on. The files always
//! hold UTC (RFC 3339, milliseconds), which `--since`, `--until` and `--all` compare; only the
//! printed stamp changes, to RFC 3339 at the offset in force at that instant
//! (`2026-01-02T04:04:05.678+01:00`), which `--since` takes back as it is. `--json` keeps `at`
//! in UTC.
//!
//! This module must not read the files.

use std::borrow::Cow;

use turbo_api::logfmt;

/// Which clock stamps are shown on.
#[derive(Clone, Debug, Default)]
pub(super) enum Clock {
    /// As written.
    #[default]
    Utc,
    /// The system time zone (`TZ`, else `/etc/localtime`), daylight saving time included.
    Local(jiff::tz::TimeZone),
    /// A fixed offset east of UTC, in minutes.
    Fixed(i32),
}

impl Clock {
    /// `utc`, `local`, or an offset `+HH:MM` / `-HH:MM`.
    pub(super) fn parse(text: &str) -> Option<Clock> {
        match text.trim() {
            "utc" | "UTC" | "Z" | "z" => Some(Clock::Utc),
            "local" => Some(Clock::Local(jiff::tz::TimeZone::system())),
            t => {
                let b = t.as_bytes();
                let sign = match b.first()? {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                if b.len() != 6 || b[3] != b':' {
                    return None;
                }
                let (h, m): (i32, i32) = (t[1..3].parse().ok()?, t[4..6].parse().ok()?);
                (h <= 23
                    && m <= 59
                    && t[1..3]
                        .bytes()
                        .chain(t[4..6].bytes())
                        .all(|c| c.is_ascii_digit()))
                .then_some(Clock::Fixed(sign * (h * 60 + m)))
            }
        }
    }

    /// `stamp` (a record's) on this clock; unchanged when it is not a stamp.
    pub(super) fn show<'a>(&self, stamp: &'a str) -> Cow<'a, str> {
        let offset = match self {
            Clock::Utc => return Cow::Borrowed(stamp),
            Clock::Fixed(min) => *min,
            Clock::Local(tz) => {
                let Some(ms) = logfmt::stamp_ms(stamp) else {
                    return Cow::Borrowed(stamp);
                };
                let Ok(at) = jiff::Timestamp::from_millisecond(ms) else {
                    return Cow::Borrowed(stamp);
                };
                tz.to_offset(at).seconds() / 60
            }
        };
        match logfmt::stamp_ms(stamp) {
            Some(ms) => Cow::Owned(logfmt::stamp_at_offset(ms, offset)),
            None => Cow::Borrowed(stamp),
        }
    }
}
