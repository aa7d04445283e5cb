//! How an app's output is written: to its log files, journald and syslog (`log:`).

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
pub use turbo_api::logfmt::Compression;

/// How an app's output is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `<RFC 3339 time> <line>`.
    #[default]
    Text,
    /// One JSON object per line: `{"at": .., "app": .., "stream": .., "line": ..}`.
    Json,
}

/// Rotation by time: a new file at each period boundary (UTC, like the stamps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RotatePeriod {
    /// At every full hour.
    Hourly,
    /// At midnight.
    Daily,
}

impl RotatePeriod {
    /// The period's length in milliseconds.
    #[must_use]
    pub const fn millis(self) -> i64 {
        match self {
            Self::Hourly => 3_600_000,
            Self::Daily => 86_400_000,
        }
    }
}

/// Log files of an app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogPolicy {
    /// Line format.
    pub format: LogFormat,
    /// Rotate a file when it would grow past this many bytes.
    pub max_size: u64,
    /// Rotated files kept per stream (`<file>.1` is the newest).
    pub keep: u32,
    /// Compression of the rotated files but the newest (`<file>.2.gz` …), which `turbo logs
    /// --follow` may still be reading.
    pub compress: Compression,
    /// Rotation by time too: the first record of a new day (hour) starts a new file.
    pub rotate: Option<RotatePeriod>,
    /// Rotated files last written longer ago than this are deleted (at a rotation, and when
    /// the keeper opens the log), whatever `keep` allows.
    pub max_age: Option<Duration>,
    /// Whether records go to the log files (`log.to` names `file`).
    pub file: bool,
    /// The stdout file instead of `<log dir>/<app>-out.log` (`log.out`, or `log.path` for one
    /// file of both streams); its directory must be the daemon's own and closed to others.
    pub out: Option<PathBuf>,
    /// The stderr file instead of `<log dir>/<app>-err.log` (`log.err`); the same as `out` for
    /// one combined file.
    pub err: Option<PathBuf>,
    /// The journald native socket records are also sent to (`log.to` names `journald`).
    pub journald: Option<PathBuf>,
    /// The syslog address records are also sent to, RFC 5424 (`log.to` names `syslog`): a unix
    /// datagram socket path, `udp://ip:port` or `tcp://ip:port` (loopback).
    pub syslog: Option<String>,
    /// Severity of stderr records at journald and syslog (0 emerg … 7 debug); stdout is info.
    pub err_priority: u8,
    /// Each instance writes files of its own (`log.per_instance`): `-<N>` goes before the
    /// extension of every file name, default or custom (`<app>-out-<N>.log`).
    pub per_instance: bool,
}

/// The journald native socket when `log.journald_socket` does not name one.
pub const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";
/// The syslog socket when `log.syslog_address` does not name one.
pub const SYSLOG_SOCKET: &str = "/dev/log";
/// Severity `warning`: stderr records at journald and syslog unless `log.err_priority` says.
pub const WARNING: u8 = 4;
/// Severity `info`: stdout records.
pub const INFO: u8 = 6;

impl Default for LogPolicy {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            max_size: 10 * 1024 * 1024,
            keep: 5,
            compress: Compression::None,
            rotate: None,
            max_age: None,
            file: true,
            out: None,
            err: None,
            journald: None,
            syslog: None,
            err_priority: WARNING,
            per_instance: false,
        }
    }
}
