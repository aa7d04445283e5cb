//! Durations and sizes as written, and their bounds: the one place the daemon turns `500ms`,
//! `5s`, `10mb` or a bare number into a [`Duration`] or a byte count.
//!
//! The text syntax is the contract crate's ([`turbo_api::parse_duration`],
//! [`turbo_api::parse_size`]: `500ms`, `5s`, `2m`, `1h`; `100k`, `10mb`, `1gb`), so `turbo.yml`,
//! the daemon's flags and the CLI read the same words. This module adds what the text syntax
//! cannot know: bare numbers (seconds, bytes) as YAML hands them over, the refusal of negative
//! values, and [`Bounds`], checked here for every reader, so that a value no timer or `Instant`
//! could hold is refused when it is read, never met later as an overflow.

use std::{fmt, time::Duration};

/// A duration or size as written: a bare number (seconds, bytes) or text with a unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Written<'a> {
    /// A number without a unit (`5`, `0.5`): seconds or bytes.
    Number(f64),
    /// Text, usually with a unit (`500ms`, `10mb`).
    Text(&'a str),
}

/// As quoted in messages: a number as it is, text in single quotes.
impl fmt::Display for Written<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(t) => write!(f, "'{t}'"),
        }
    }
}

/// The smallest and largest value a reader accepts, both included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds<T> {
    /// Smallest accepted value.
    pub min: T,
    /// Largest accepted value.
    pub max: T,
}

/// The longest timer a spec may ask for: 30 days. Every duration of an app (`kill_timeout`,
/// restart delays, `crash_loop.window`, health and readiness timers, `watchdog`,
/// `watch_delay`) becomes a deadline `now + d` on the daemon's clock; a month is far beyond any
/// real use and far below what an `Instant` holds (`1e19` seconds, as written by the
/// adversarial pass, panicked in the addition).
pub const MAX_TIMER: Duration = Duration::from_secs(30 * 86_400);

/// The largest memory size a spec may name: 1 PiB (`1e99` bytes saturated to `u64::MAX`
/// before, which no cgroup file or percentage computation expects).
pub const MAX_MEMORY: u64 = 1 << 50;

impl Bounds<Duration> {
    /// A timer of an app: zero to [`MAX_TIMER`].
    pub const TIMER: Self = Self {
        min: Duration::ZERO,
        max: MAX_TIMER,
    };

    /// Every duration a [`Duration`] can hold.
    pub const ANY_DURATION: Self = Self {
        min: Duration::ZERO,
        max: Duration::MAX,
    };

    /// At least `min`.
    #[must_use]
    pub const fn at_least(min: Duration) -> Self {
        Self {
            min,
            max: Duration::MAX,
        }
    }
}

impl Bounds<u64> {
    /// A memory size of an app: zero to [`MAX_MEMORY`].
    pub const MEMORY: Self = Self {
        min: 0,
        max: MAX_MEMORY,
    };

    /// Every byte count.
    pub const ANY_SIZE: Self = Self {
        min: 0,
        max: u64::MAX,
    };
}

/// What is being read: a duration or a size (for messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// A duration.
    Duration,
    /// A size in bytes.
    Size,
}

impl Measure {
    const fn noun(self) -> &'static str {
        match self {
            Self::Duration => "duration",
            Self::Size => "size",
        }
    }

    const fn examples(self) -> &'static str {
        match self {
            Self::Duration => "like 500ms, 5s, 1m or 2h",
            Self::Size => "like 100k, 10mb or 1gb",
        }
    }
}

/// Why a written duration or size was refused. Its `Display` is what is wrong with the value
/// (`is negative`), [`UnitError::hint`] what to write instead; a reader puts the key and the
/// value in front: `restart.delay -1 is negative: use a duration like 500ms, 5s, 1m or 2h`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnitError {
    /// Below zero.
    Negative(Measure),
    /// Not a number with a known unit (or not a finite number).
    Malformed(Measure),
    /// Below the reader's [`Bounds::min`] (shown with its unit).
    Below(String),
    /// Above the reader's [`Bounds::max`] (shown with its unit), or more than the type holds.
    Above(String),
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Negative(_) => f.write_str("is negative"),
            Self::Malformed(m) => write!(f, "is not a {}", m.noun()),
            Self::Below(min) => write!(f, "is below {min}"),
            Self::Above(max) => write!(f, "is above {max}"),
        }
    }
}

impl std::error::Error for UnitError {}

impl UnitError {
    /// What to write instead.
    #[must_use]
    pub fn hint(&self) -> String {
        match self {
            Self::Negative(m) => format!("use a {} {}", m.noun(), m.examples()),
            Self::Malformed(m) => format!("use one {}", m.examples()),
            Self::Below(min) => format!("use at least {min}"),
            Self::Above(max) => format!("use at most {max}"),
        }
    }
}

/// A duration: text in the contract's syntax, or a bare number of seconds, within `bounds`.
///
/// # Errors
/// Negative, malformed, or out of `bounds`.
pub fn duration(written: Written<'_>, bounds: Bounds<Duration>) -> Result<Duration, UnitError> {
    let m = Measure::Duration;
    let d = match non_negative(written, m)? {
        Written::Number(n) => Duration::try_from_secs_f64(n)
            .map_err(|_| UnitError::Above(duration_text(bounds.max)))?,
        Written::Text(t) => turbo_api::parse_duration(t).ok_or(UnitError::Malformed(m))?,
    };
    within(d, bounds, duration_text)
}

/// A size: text in the contract's syntax, or a bare number of bytes, within `bounds`.
///
/// # Errors
/// Negative, malformed, or out of `bounds`.
pub fn size(written: Written<'_>, bounds: Bounds<u64>) -> Result<u64, UnitError> {
    let m = Measure::Size;
    let n = match non_negative(written, m)? {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "checked non-negative and finite; sizes are whole bytes (saturating)"
        )]
        Written::Number(n) => n as u64,
        Written::Text(t) => turbo_api::parse_size(t).ok_or(UnitError::Malformed(m))?,
    };
    within(n, bounds, |n| format!("{n} bytes"))
}

/// `written`, unless it is no finite number or below zero.
fn non_negative(written: Written<'_>, m: Measure) -> Result<Written<'_>, UnitError> {
    match written {
        Written::Number(n) if !n.is_finite() => Err(UnitError::Malformed(m)),
        Written::Number(n) if n < 0.0 => Err(UnitError::Negative(m)),
        Written::Text(t) if t.trim_start().starts_with('-') => Err(UnitError::Negative(m)),
        w => Ok(w),
    }
}

/// `value` if it is within `bounds` (shown with `text` when it is not).
fn within<T: PartialOrd + Copy>(
    value: T,
    bounds: Bounds<T>,
    text: impl Fn(T) -> String,
) -> Result<T, UnitError> {
    if value < bounds.min {
        Err(UnitError::Below(text(bounds.min)))
    } else if value > bounds.max {
        Err(UnitError::Above(text(bounds.max)))
    } else {
        Ok(value)
    }
}

/// `10ms`, `5s`, `1500ms`: whole seconds when exact (and for [`Duration::MAX`], whose
/// nanoseconds nobody wants to read), else milliseconds.
fn duration_text(d: Duration) -> String {
    if d.as_secs() > 0 && (d.subsec_millis() == 0 || d == Duration::MAX) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: Bounds<Duration> = Bounds::ANY_DURATION;

    #[test]
    fn durations_in_every_form() {
        for (written, want) in [
            (Written::Text("500ms"), Duration::from_millis(500)),
            (Written::Text("5s"), Duration::from_secs(5)),
            (Written::Text(" 2m"), Duration::from_secs(120)),
            (Written::Text("1h"), Duration::from_secs(3600)),
            (Written::Text("3"), Duration::from_secs(3)),
            (Written::Number(1.5), Duration::from_millis(1500)),
            (Written::Number(0.0), Duration::ZERO),
        ] {
            assert_eq!(duration(written, ANY), Ok(want), "{written}");
        }
    }

    #[test]
    fn refused_durations_say_why_and_what_to_write() {
        let d = Measure::Duration;
        for (written, want) in [
            (Written::Number(-1.0), UnitError::Negative(d)),
            (Written::Text("-1s"), UnitError::Negative(d)),
            (Written::Number(f64::NAN), UnitError::Malformed(d)),
            (Written::Number(f64::INFINITY), UnitError::Malformed(d)),
            (Written::Text("5 parsecs"), UnitError::Malformed(d)),
            (Written::Text("1.5s"), UnitError::Malformed(d)),
            // more than a Duration holds: refused, not a panic
            (
                Written::Number(1e99),
                UnitError::Above("18446744073709551615s".into()),
            ),
        ] {
            assert_eq!(duration(written, ANY), Err(want), "{written}");
        }
        let e = duration(Written::Number(-1.0), ANY).unwrap_err();
        assert_eq!(
            format!("{e}: {}", e.hint()),
            "is negative: use a duration like 500ms, 5s, 1m or 2h"
        );
        let e = duration(Written::Text("soon"), ANY).unwrap_err();
        assert_eq!(
            format!("{e}: {}", e.hint()),
            "is not a duration: use one like 500ms, 5s, 1m or 2h"
        );
    }

    #[test]
    fn bounds_are_checked_where_the_value_is_read() {
        let at_least = Bounds::at_least(Duration::from_millis(10));
        assert_eq!(
            duration(Written::Text("10ms"), at_least),
            Ok(Duration::from_millis(10))
        );
        let e = duration(Written::Text("5ms"), at_least).unwrap_err();
        assert_eq!(
            format!("{e}: {}", e.hint()),
            "is below 10ms: use at least 10ms"
        );
        let short = Bounds {
            min: Duration::ZERO,
            max: Duration::from_secs(60),
        };
        let e = duration(Written::Text("2m"), short).unwrap_err();
        assert_eq!(
            format!("{e}: {}", e.hint()),
            "is above 60s: use at most 60s"
        );
        let small = Bounds {
            min: 1024,
            max: 1 << 20,
        };
        assert_eq!(size(Written::Text("1k"), small), Ok(1024));
        assert_eq!(
            size(Written::Number(10.0), small),
            Err(UnitError::Below("1024 bytes".into()))
        );
        assert_eq!(
            size(Written::Text("1gb"), small),
            Err(UnitError::Above("1048576 bytes".into()))
        );
    }

    #[test]
    fn sizes_in_every_form() {
        let any = Bounds::ANY_SIZE;
        assert_eq!(size(Written::Text("512mb"), any), Ok(512 << 20));
        assert_eq!(size(Written::Number(4096.0), any), Ok(4096));
        let s = Measure::Size;
        assert_eq!(
            size(Written::Number(-1.0), any),
            Err(UnitError::Negative(s))
        );
        assert_eq!(
            size(Written::Text("-1mb"), any),
            Err(UnitError::Negative(s))
        );
        assert_eq!(
            size(Written::Text("lots"), any),
            Err(UnitError::Malformed(s))
        );
        let e = size(Written::Text("lots"), any).unwrap_err();
        assert_eq!(e.hint(), "use one like 100k, 10mb or 1gb");
    }
}
