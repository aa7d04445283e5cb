//! `log:` as written, and its checks: the text of turbo.yml into a [`LogPolicy`].

use serde::Deserialize;

use super::{Problem, Scalar, validate::Count};
use crate::{
    access::Powers,
    logs::forward::{self, SyslogAddr},
    spec::{AppSpec, Compression, LogFormat, RotatePeriod, log, units::Bounds},
};

/// `log:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogConfig {
    format: Option<String>,
    max_size: Option<Scalar>,
    keep: Option<i64>,
    compress: Option<serde_yaml_ng::Value>,
    rotate: Option<String>,
    max_age: Option<Scalar>,
    out: Option<String>,
    err: Option<String>,
    path: Option<String>,
    to: Option<Vec<String>>,
    journald_socket: Option<String>,
    syslog_address: Option<String>,
    err_priority: Option<serde_yaml_ng::Value>,
    per_instance: Option<bool>,
}

const LOG_KEEP: Count = Count::new(
    "log.keep",
    1,
    "at least 1: it is how many rotated files to keep",
);

/// Below this a file would rotate every few lines: surely a unit left out (`1` for `1mb`).
const MIN_MAX_SIZE: u64 = 1024;

pub(super) fn apply_log(
    cfg: &LogConfig,
    spec: &mut AppSpec,
    powers: &Powers,
    errors: &mut Vec<Problem>,
) {
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
    if let Some(v) = &cfg.max_age {
        match v {
            Scalar::Text(t) if matches!(t.trim(), "off" | "none" | "never") => l.max_age = None,
            v => match v.duration("log.max_age") {
                Ok(d) if d.is_zero() => errors.push(
                    Problem::new(
                        "log.max_age",
                        "log.max_age 0 would delete every rotated file",
                    )
                    .hint("give an age such as 7d or 12h, or `off` to keep files of any age"),
                ),
                Ok(d) => l.max_age = Some(d),
                Err(e) => errors.push(e.at("log.max_age")),
            },
        }
    }
    l.per_instance = cfg.per_instance.unwrap_or(false);
    apply_paths(cfg, l, errors);
    apply_destinations(cfg, l, errors);
    if let Some(caller) = &powers.caller {
        refuse_custom_places(cfg, l, caller, errors);
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

/// A root daemon writes the files and sends the records as root: for a non-root caller, where
/// to is not the caller's choice, or root would append to the caller's files or talk, as a root
/// peer, to a socket the caller picked. The defaults (the log directory, the system journal's
/// socket, `/dev/log`) and loopback UDP/TCP (which carry no credentials) stay open to all.
fn refuse_custom_places(
    cfg: &LogConfig,
    l: &crate::spec::LogPolicy,
    caller: &str,
    errors: &mut Vec<Problem>,
) {
    let custom = [
        ("log.out", cfg.out.is_some()),
        ("log.err", cfg.err.is_some()),
        ("log.path", cfg.path.is_some()),
        (
            "log.journald_socket",
            cfg.journald_socket
                .as_deref()
                .is_some_and(|p| p != log::JOURNALD_SOCKET),
        ),
        (
            "log.syslog_address",
            l.syslog
                .as_deref()
                .is_some_and(|a| a.starts_with('/') && a != log::SYSLOG_SOCKET),
        ),
    ];
    for (key, _) in custom.into_iter().filter(|(_, set)| *set) {
        errors.push(
            Problem::new(
                key,
                format!("{key} is for root: this daemon would write or send there as root for {caller}"),
            )
            .hint("leave it out (the log directory, the system journal and /dev/log are open to all), or ask root"),
        );
    }
}

/// `log.out`, `log.err` (one file per stream) or `log.path` (one file for both).
fn apply_paths(cfg: &LogConfig, l: &mut crate::spec::LogPolicy, errors: &mut Vec<Problem>) {
    let mut check = |key: &str, text: &str| -> Option<std::path::PathBuf> {
        let path = std::path::Path::new(text);
        let fine = path.is_absolute()
            && path.file_name().is_some()
            && !text.ends_with('/')
            && path
                .components()
                .all(|c| !matches!(c, std::path::Component::ParentDir));
        if fine {
            return Some(path.to_owned());
        }
        errors.push(
            Problem::new(
                format!("log.{key}"),
                format!("log.{key} '{text}' is not an absolute file path without `..`"),
            )
            .hint("e.g. /var/log/api/out.log, in a directory owned by the daemon's user and closed to others"),
        );
        None
    };
    if let Some(path) = &cfg.path {
        if cfg.out.is_some() || cfg.err.is_some() {
            errors.push(
                Problem::new(
                    "log.path",
                    "log.path is one file for both streams; log.out and log.err are one each",
                )
                .hint("give log.path, or log.out and/or log.err"),
            );
            return;
        }
        let p = check("path", path);
        l.out.clone_from(&p);
        l.err = p;
        return;
    }
    if let Some(out) = &cfg.out {
        l.out = check("out", out);
    }
    if let Some(err) = &cfg.err {
        l.err = check("err", err);
    }
}

/// `log.to`, `log.journald_socket`, `log.syslog_address`, `log.err_priority`.
fn apply_destinations(cfg: &LogConfig, l: &mut crate::spec::LogPolicy, errors: &mut Vec<Problem>) {
    let (mut file, mut journald, mut syslog) = (cfg.to.is_none(), false, false);
    for to in cfg.to.iter().flatten() {
        match to.as_str() {
            "file" => file = true,
            "journald" | "journal" => journald = true,
            "syslog" => syslog = true,
            other => errors.push(
                Problem::new(
                    "log.to",
                    format!("log.to '{other}' is not one of: file, journald, syslog"),
                )
                .hint("any combination, e.g. to: [file, journald]"),
            ),
        }
    }
    if cfg.to.as_ref().is_some_and(Vec::is_empty) {
        errors.push(
            Problem::new("log.to", "log.to is empty: the output would go nowhere")
                .hint("name at least one of: file, journald, syslog"),
        );
    }
    l.file = file;
    let unused = |key: &str, dest: &str| {
        Problem::new(
            format!("log.{key}"),
            format!("log.{key} is set but log.to does not name {dest}"),
        )
        .hint(format!("add {dest} to log.to, or remove log.{key}"))
    };
    match (&cfg.journald_socket, journald) {
        (Some(path), true) if !path.starts_with('/') => errors.push(
            Problem::new(
                "log.journald_socket",
                format!("log.journald_socket '{path}' is not an absolute path"),
            )
            .hint(format!(
                "the journal's own socket is {}",
                log::JOURNALD_SOCKET
            )),
        ),
        (path, true) => {
            l.journald = Some(path.as_deref().unwrap_or(log::JOURNALD_SOCKET).into());
        }
        (Some(_), false) => errors.push(unused("journald_socket", "journald")),
        (None, false) => {}
    }
    match (&cfg.syslog_address, syslog) {
        (address, true) => {
            let address = address.as_deref().unwrap_or(log::SYSLOG_SOCKET);
            match SyslogAddr::parse(address) {
                Ok(_) => l.syslog = Some(address.to_owned()),
                Err(e) => errors.push(
                    Problem::new("log.syslog_address", e)
                        .hint("a socket path (/dev/log), udp://127.0.0.1:514 or tcp://[::1]:601"),
                ),
            }
        }
        (Some(_), false) => errors.push(unused("syslog_address", "syslog")),
        (None, false) => {}
    }
    if let Some(v) = &cfg.err_priority {
        match forward::severity(v.as_str(), v.as_u64()) {
            Some(n) => l.err_priority = n,
            None => errors.push(
                Problem::new(
                    "log.err_priority",
                    format!(
                        "log.err_priority {} is not a syslog severity",
                        serde_yaml_ng::to_string(v).unwrap_or_default().trim()
                    ),
                )
                .hint("one of emerg, alert, crit, err, warning, notice, info, debug (or 0 to 7)"),
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
