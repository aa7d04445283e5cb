//! The `watch`, `ignore_watch`, `watch_delay`, `health`, `ready`, `ready_timeout` and
//! `watchdog` keys: as written, and validated into [`WatchSpec`], [`HealthSpec`] and
//! `Readiness`. Read-only: it checks that watched paths exist and finds the health command on
//! `PATH`, nothing more.

use serde::Deserialize;

use super::{
    Problem, Scalar,
    error::Fault,
    files::{may_watch, resolve_command},
    validate::Count,
};
use crate::spec::{AppSpec, HealthProbe, HealthSpec, ReadyMode, WatchSpec};

const HEALTH_RETRIES: Count = Count::new(
    "health.retries",
    1,
    "at least 1: the failures in a row that restart the app",
);

/// `health:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HealthConfig {
    http: Option<String>,
    tcp: Option<String>,
    cmd: Option<Vec<String>>,
    interval: Option<Scalar>,
    timeout: Option<Scalar>,
    retries: Option<i64>,
    retry_delay: Option<Scalar>,
    start_period: Option<Scalar>,
    status: Option<Scalar>,
}

/// Reads the duration `value` of the key `what` into `field`; zero is refused (a timeout or an
/// interval of nothing).
pub(super) fn set_positive(
    value: Option<&Scalar>,
    what: &str,
    field: &mut std::time::Duration,
    errors: &mut Vec<Problem>,
) {
    let Some(v) = value else { return };
    match v.duration(what) {
        Ok(d) if d.is_zero() => errors.push(Problem::new(
            what,
            format!("{what} must be longer than 0, like 5s"),
        )),
        Ok(d) => *field = d,
        Err(e) => errors.push(e.at(what)),
    }
}

/// The watch keys of one app as written.
pub(super) struct WatchKeys {
    pub watch: Option<serde_yaml_ng::Value>,
    pub ignore_watch: Vec<String>,
    pub watch_delay: Option<Scalar>,
}

/// Why `path` (at `field`) cannot be watched.
fn unwatchable(field: &str, path: &std::path::Path, e: &std::io::Error) -> Problem {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        Problem::new(
            field,
            format!(
                "watch path {} cannot be read (Permission denied)",
                path.display()
            ),
        )
        .hint("watch only what you may read, or ask root to start it")
    } else {
        Problem::new(
            field,
            format!("watch path {} does not exist", path.display()),
        )
        .hint("create it or fix the path (relative to the app's cwd)")
    }
}

/// Sets `spec.watch` from the watch keys (relative paths resolve against the app's cwd).
pub(super) fn apply_watch(keys: WatchKeys, spec: &mut AppSpec, errors: &mut Vec<Problem>) {
    use serde_yaml_ng::Value;
    let written = keys.watch.is_some();
    let paths = match keys.watch {
        None | Some(Value::Bool(false) | Value::Null) => None,
        Some(Value::Bool(true)) => {
            if let Err(e) = may_watch(&spec.cwd) {
                errors.push(unwatchable("watch", &spec.cwd, &e));
            }
            Some(vec![spec.cwd.clone()])
        }
        Some(Value::Sequence(items)) => {
            let mut paths = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(p) => {
                        let path = spec.cwd.join(p);
                        match may_watch(&path) {
                            Ok(()) => paths.push(path),
                            Err(e) => errors.push(unwatchable(&format!("watch[{i}]"), &path, &e)),
                        }
                    }
                    None => errors.push(Problem::new(
                        format!("watch[{i}]"),
                        "watch paths must be text, like `src` or `config/app.yml`",
                    )),
                }
            }
            if items.is_empty() {
                errors.push(
                    Problem::new("watch", "`watch: []` watches nothing")
                        .hint("use `watch: true` (the cwd) or list paths"),
                );
            }
            Some(paths)
        }
        Some(_) => {
            errors.push(Problem::new(
                "watch",
                "watch must be true, false or a list of paths, like `watch: [src, config]`",
            ));
            None
        }
    };
    let mut delay = WatchSpec::DELAY;
    if let Some(d) = &keys.watch_delay {
        match d.duration("watch_delay") {
            Ok(d) => delay = d,
            Err(e) => errors.push(e.at("watch_delay")),
        }
    }
    // (a `watch:` that was written but is wrong has its own message already)
    if !written && (keys.watch_delay.is_some() || !keys.ignore_watch.is_empty()) {
        let at = if keys.ignore_watch.is_empty() {
            "watch_delay"
        } else {
            "ignore_watch"
        };
        errors.push(
            Problem::new(at, format!("{at} has no effect without `watch`"))
                .hint("add `watch: true` or remove it"),
        );
    }
    spec.watch = paths.map(|paths| WatchSpec {
        paths,
        ignore: keys.ignore_watch,
        delay,
    });
}

/// Sets `spec.health` from `health:`.
pub(super) fn apply_health(
    cfg: Option<HealthConfig>,
    path_env: &str,
    spec: &mut AppSpec,
    errors: &mut Vec<Problem>,
) {
    let Some(cfg) = cfg else { return };
    let kinds = [cfg.http.is_some(), cfg.tcp.is_some(), cfg.cmd.is_some()];
    let probe = match (cfg.http, cfg.tcp, cfg.cmd) {
        _ if kinds.iter().filter(|k| **k).count() != 1 => {
            errors.push(Problem::new(
                "health",
                "health needs exactly one of `http: URL`, `tcp: \"host:port\"` or `cmd: [..]`",
            ));
            return;
        }
        (Some(url), _, _) => {
            let status = match cfg.status.as_ref().map(status_range) {
                None => (200, 399),
                Some(Ok(range)) => range,
                Some(Err(e)) => {
                    errors.push(e.at("health.status"));
                    (200, 399)
                }
            };
            if let Err(e) = check_url(&url) {
                errors.push(e.at("health.http"));
            }
            HealthProbe::Http { url, status }
        }
        (_, Some(addr), _) => {
            if let Err(e) = check_addr(&addr) {
                errors.push(e.at("health.tcp"));
            }
            HealthProbe::Tcp { addr }
        }
        (_, _, Some(argv)) => {
            if argv.is_empty() {
                errors.push(
                    Problem::new("health.cmd", "health.cmd is empty")
                        .hint("give the program and its arguments"),
                );
                return;
            }
            let argv = if spec.cwd.is_dir() {
                resolve_command(&argv, &spec.cwd, path_env, false).unwrap_or_else(|e| {
                    errors.push(e.prefixed("health.cmd: ").at("health.cmd[0]"));
                    argv
                })
            } else {
                argv
            };
            HealthProbe::Cmd { argv }
        }
        (None, None, None) => unreachable!("exactly one is set"),
    };
    if cfg.status.is_some() && !matches!(probe, HealthProbe::Http { .. }) {
        errors.push(
            Problem::new(
                "health.status",
                "health.status applies to `http` checks only",
            )
            .hint("remove it"),
        );
    }
    let mut check = HealthSpec::new(probe);
    let mut set = |value: Option<&Scalar>, key: &str, field: &mut std::time::Duration| {
        set_positive(value, &format!("health.{key}"), field, errors);
    };
    set(cfg.interval.as_ref(), "interval", &mut check.interval);
    set(cfg.timeout.as_ref(), "timeout", &mut check.timeout);
    set(
        cfg.retry_delay.as_ref(),
        "retry_delay",
        &mut check.retry_delay,
    );
    if let Some(v) = &cfg.start_period {
        match v.duration("health.start_period") {
            Ok(d) => check.start_period = d,
            Err(e) => errors.push(e.at("health.start_period")),
        }
    }
    if let Some(n) = HEALTH_RETRIES.read(cfg.retries, errors) {
        check.retries = n;
    }
    spec.health = Some(check);
}

/// Sets `spec.readiness` from `ready`, `ready_timeout` and `watchdog`.
pub(super) fn apply_readiness(
    ready: Option<&str>,
    timeout: Option<&Scalar>,
    watchdog: Option<&Scalar>,
    spec: &mut AppSpec,
    errors: &mut Vec<Problem>,
) {
    let r = &mut spec.readiness;
    if let Some(mode) = ready {
        match mode.parse::<ReadyMode>() {
            Ok(m) => r.mode = m,
            Err(e) => errors.push(Problem::new("ready", e)),
        }
    }
    if let Some(t) = timeout {
        match t.duration("ready_timeout") {
            Ok(d) if d.is_zero() => errors.push(Problem::new(
                "ready_timeout",
                "ready_timeout must be longer than 0, like 60s",
            )),
            Ok(d) => r.timeout = d,
            Err(e) => errors.push(e.at("ready_timeout")),
        }
        if r.mode != ReadyMode::Notify {
            errors.push(
                Problem::new(
                    "ready_timeout",
                    "ready_timeout applies to `ready: notify` only",
                )
                .hint("add it or remove ready_timeout"),
            );
        }
    }
    if let Some(w) = watchdog {
        match w.duration("watchdog") {
            // sd_notify clients ping every half period: under 100 ms is a busy loop
            Ok(d) if d < std::time::Duration::from_millis(100) => errors.push(Problem::new(
                "watchdog",
                "watchdog must be at least 100ms (apps ping every half period), like 10s",
            )),
            Ok(d) => r.watchdog_ms = Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            Err(e) => errors.push(e.at("watchdog")),
        }
    }
}

/// `http://host[:port][/path]`; no TLS (checks talk to the app on this machine).
fn check_url(url: &str) -> Result<(), Fault> {
    let hint = "use a URL like http://127.0.0.1:3000/health";
    let refuse = |message: String| Fault::new(message).hint(hint);
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| refuse(format!("health.http '{url}' is not a URL ({e})")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(refuse(format!(
                "health.http '{url}': https is not supported; check the app over plain http on this machine"
            )));
        }
        _ => return Err(refuse(format!("health.http '{url}' is not an http:// URL"))),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(refuse(format!("health.http '{url}' has no host")));
    }
    Ok(())
}

/// `host:port` with a port in 1..=65535.
fn check_addr(addr: &str) -> Result<(), Fault> {
    let refuse =
        |message: String| Fault::new(message).hint("use \"host:port\", like \"127.0.0.1:5432\"");
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| refuse(format!("health.tcp '{addr}' has no port")))?;
    if host.is_empty() {
        return Err(refuse(format!("health.tcp '{addr}' has no host")));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(refuse(format!(
            "health.tcp '{addr}': '{port}' is not a port (1-65535)"
        ))),
    }
}

/// `200`, `"200-399"`.
fn status_range(v: &Scalar) -> Result<(u16, u16), Fault> {
    let code = |t: &str| {
        t.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
    };
    let text = match v {
        Scalar::Number(n) => n.to_string(),
        Scalar::Text(t) => t.clone(),
    };
    let range = match text.split_once('-') {
        Some((lo, hi)) => code(lo).zip(code(hi)),
        None => code(&text).map(|c| (c, c)),
    };
    match range {
        Some((lo, hi)) if lo <= hi => Ok((lo, hi)),
        _ => Err(Fault::new(format!(
            "health.status '{text}' is not an HTTP status or range (100-599)"
        ))
        .hint("use one like 200 or \"200-399\"")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::tests::parse_config;
    use crate::spec::{HealthProbe, ReadyMode};

    const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

    #[test]
    fn health_watch_and_readiness_keys_become_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        let yml = "apps:\n\
            - name: a\n  cmd: [sleep, '1']\n  watch: [src]\n  ignore_watch: ['*.tmp']\n  watch_delay: 1s\n  \
              health: { cmd: [test, -e, /], interval: 3s, retries: 2, start_period: 30s }\n  \
              ready: notify\n  ready_timeout: 2m\n  watchdog: 5s\n\
            - name: b\n  cmd: [sleep, '1']\n  watch: true\n  health: { http: 'http://[::1]:8080/up', status: 204 }\n\
            - name: c\n  cmd: [sleep, '1']\n  health: { tcp: 'localhost:5432' }\n";
        let specs = parse_config(yml, "t.yml", dir.path(), PATH).expect("valid");
        let w = specs[0].watch.as_ref().unwrap();
        assert_eq!(w.paths, [dir.path().join("src")]);
        assert_eq!(w.ignore, ["*.tmp"]);
        assert_eq!(w.delay, Duration::from_secs(1));
        let h = specs[0].health.as_ref().unwrap();
        let HealthProbe::Cmd { argv } = &h.probe else {
            panic!("{h:?}")
        };
        assert!(argv[0].ends_with("/test"), "resolved on PATH: {argv:?}");
        assert_eq!(
            (h.interval, h.retries, h.timeout, h.start_period),
            (
                Duration::from_secs(3),
                2,
                Duration::from_secs(5),
                Duration::from_secs(30)
            )
        );
        let r = &specs[0].readiness;
        assert_eq!(r.mode, ReadyMode::Notify);
        assert_eq!(r.timeout, Duration::from_secs(120));
        assert_eq!(r.watchdog(), Some(Duration::from_secs(5)));
        assert!(r.wants_socket());
        assert_eq!(specs[1].watch.as_ref().unwrap().paths, [dir.path()]);
        assert_eq!(
            specs[1].health.as_ref().unwrap().probe,
            HealthProbe::Http {
                url: "http://[::1]:8080/up".into(),
                status: (204, 204)
            }
        );
        assert!(!specs[1].readiness.wants_socket());
        assert_eq!(
            specs[2].health.as_ref().unwrap().probe,
            HealthProbe::Tcp {
                addr: "localhost:5432".into()
            }
        );
    }

    #[test]
    fn every_problem_of_the_new_keys_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let yml = "apps:\n\
            - name: a\n  cmd: [sleep, '1']\n  health: { http: 'http://x/', tcp: 'x:1' }\n  watch: 3\n  ignore_watch: ['*.log']\n\
            - name: b\n  cmd: [sleep, '1']\n  health: { http: 'ftp://x/', status: '500-200' }\n  ready_timeout: 1s\n\
            - name: c\n  cmd: [sleep, '1']\n  health: { tcp: 'x:99999', status: 200 }\n  watch_delay: 1s\n";
        let err = parse_config(yml, "t.yml", dir.path(), PATH).unwrap_err();
        for expected in [
            "t.yml:4:11: apps[0] (a): health needs exactly one of",
            "t.yml:5:10: apps[0] (a): watch must be true, false or a list of paths",
            "t.yml:9:19: apps[1] (b): health.http 'ftp://x/' is not an http:// URL",
            "apps[1] (b): health.status '500-200' is not an HTTP status or range",
            "t.yml:10:18: apps[1] (b): ready_timeout applies to `ready: notify` only",
            "t.yml:13:18: apps[2] (c): health.tcp 'x:99999': '99999' is not a port",
            "apps[2] (c): health.status applies to `http` checks only",
            "t.yml:14:16: apps[2] (c): watch_delay has no effect without `watch`",
        ] {
            assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
        }
        // `watch: 3` is the only watch problem of apps[0]: ignore_watch is not also blamed
        assert_eq!(err.matches("apps[0] (a)").count(), 2, "{err}");
    }
}
