//! `log:` as written, and its checks: the text of turbo.yml into a [`LogPolicy`].

use serde::Deserialize;

use super::{Problem, Scalar, validate::Count};
use crate::spec::{AppSpec, Compression, LogFormat, RotatePeriod, units::Bounds};

/// `log:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogConfig {
    format: Option<String>,
    max_size: Option<Scalar>,
    keep: Option<i64>,
    compress: Option<serde_yaml_ng::Value>,
    rotate: Option<String>,
}

const LOG_KEEP: Count = Count::new(
    "log.keep",
    1,
    "at least 1: it is how many rotated files to keep",
);

/// Below this a file would rotate every few lines: surely a unit left out (`1` for `1mb`).
const MIN_MAX_SIZE: u64 = 1024;

pub(super) fn apply_log(cfg: &LogConfig, spec: &mut AppSpec, errors: &mut Vec<Problem>) {
    let l = &mut spec.log;
    match cfg.format.as_deref() {
        None | Some("text") => {}
        Some("json") => l.format = LogFormat::Json,
        Some(other) => errors.push(Problem::new(
            "log.format",
            format!("log.format '{other}' is not one of: text, json"),
        )),
    }
    if let Some(v) = &cfg.max_size {
        match v {
            // a file that only grows: for hosts whose logs something else rotates
            Scalar::Text(t) if matches!(t.trim(), "off" | "none" | "never") => l.max_size = 0,
            v => match v.size("log.max_size", Bounds::ANY_SIZE) {
                Ok(n) if n >= MIN_MAX_SIZE || n == 0 => l.max_size = n,
                Ok(n) => errors.push(
                    Problem::new("log.max_size", format!("log.max_size {n} is too small"))
                        .hint("use at least 1k, or `off` (or 0) to never rotate"),
                ),
                Err(e) => errors.push(e.at("log.max_size")),
            },
        }
    }
    if let Some(n) = LOG_KEEP.read(cfg.keep, errors) {
        l.keep = n;
    }
    match cfg.rotate.as_deref() {
        None => {}
        Some("daily") => l.rotate = Some(RotatePeriod::Daily),
        Some("hourly") => l.rotate = Some(RotatePeriod::Hourly),
        Some(other) => errors.push(
            Problem::new(
                "log.rotate",
                format!("log.rotate '{other}' is not one of: daily, hourly"),
            )
            .hint("rotation by size is log.max_size; both may be set"),
        ),
    }
    if let Some(v) = &cfg.compress {
        match compression(v) {
            Some(c) => l.compress = c,
            None => errors.push(
                Problem::new(
                    "log.compress",
                    format!(
                        "log.compress {} is not one of: true, false, gzip, zstd",
                        serde_yaml_ng::to_string(v).unwrap_or_default().trim()
                    ),
                )
                .hint("true means gzip; zstd is faster and smaller"),
            ),
        }
    }
}

/// `true`/`gzip`, `zstd`, or `false`/`none`.
fn compression(v: &serde_yaml_ng::Value) -> Option<Compression> {
    use serde_yaml_ng::Value;
    match v {
        Value::Bool(true) => Some(Compression::Gzip),
        Value::Bool(false) => Some(Compression::None),
        Value::String(s) => match s.as_str() {
            "gzip" | "gz" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            "none" | "off" => Some(Compression::None),
            _ => None,
        },
        _ => None,
    }
}
