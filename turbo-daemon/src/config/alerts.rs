//! `on_crash:` and `on_state:` as written, checked into [`AlertSpec`]s (issue 17 point 5).
//!
//! Reads only: the command is found on `PATH` like a health-check command; nothing is run or
//! contacted here.

use serde::Deserialize;

use super::{Problem, Scalar, checks::set_positive, files::resolve_command, validate::Count};
use crate::spec::{AlertSpec, AlertTo, AppSpec};

/// `on_crash:` / `on_state:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertConfig {
    /// A command: program and arguments.
    cmd: Option<Vec<String>>,
    /// An `http://` URL to POST to.
    webhook: Option<String>,
    timeout: Option<Scalar>,
    retries: Option<i64>,
    rate_limit: Option<i64>,
    rate_window: Option<Scalar>,
}

/// Checks `on_crash` and `on_state` into `spec`.
pub(super) fn apply(
    on_crash: Option<AlertConfig>,
    on_state: Option<AlertConfig>,
    path_env: &str,
    spec: &mut AppSpec,
    errors: &mut Vec<Problem>,
) {
    if let Some(cfg) = on_crash {
        spec.on_crash = alert("on_crash", cfg, path_env, spec, errors).map(Box::new);
    }
    if let Some(cfg) = on_state {
        spec.on_state = alert("on_state", cfg, path_env, spec, errors).map(Box::new);
    }
}

fn alert(
    key: &'static str,
    cfg: AlertConfig,
    path_env: &str,
    spec: &AppSpec,
    errors: &mut Vec<Problem>,
) -> Option<AlertSpec> {
    let to = match (cfg.cmd, cfg.webhook) {
        (Some(argv), None) if !argv.is_empty() => {
            let argv = if spec.cwd.is_dir() {
                resolve_command(&argv, &spec.cwd, path_env, false).unwrap_or_else(|e| {
                    errors.push(
                        e.prefixed(&format!("{key}.cmd: "))
                            .at(format!("{key}.cmd[0]")),
                    );
                    argv
                })
            } else {
                argv
            };
            AlertTo::Command(argv)
        }
        (None, Some(url)) => {
            if let Err(e) = check_webhook(&url) {
                errors.push(
                    Problem::new(format!("{key}.webhook"), format!("{key}.webhook {e}"))
                        .hint("use a URL like http://127.0.0.1:9000/hook"),
                );
            }
            AlertTo::Webhook(url)
        }
        _ => {
            errors.push(Problem::new(
                key,
                format!("{key} needs exactly one of `cmd: [program, args..]` or `webhook: URL`"),
            ));
            return None;
        }
    };
    let mut alert = AlertSpec::new(to);
    let timeout = format!("{key}.timeout");
    set_positive(cfg.timeout.as_ref(), &timeout, &mut alert.timeout, errors);
    let window = format!("{key}.rate_window");
    set_positive(
        cfg.rate_window.as_ref(),
        &window,
        &mut alert.rate_window,
        errors,
    );
    let (retries, rate) = if key == "on_crash" {
        ("on_crash.retries", "on_crash.rate_limit")
    } else {
        ("on_state.retries", "on_state.rate_limit")
    };
    let retries = Count::new(retries, 0, "0 or more: attempts after a failed first one");
    if let Some(n) = retries.read(cfg.retries, errors) {
        // more would keep a dead receiver's task alive for minutes
        alert.retries = n.min(10);
    }
    let rate = Count::new(rate, 1, "at least 1: notifications per rate_window");
    if let Some(n) = rate.read(cfg.rate_limit, errors) {
        alert.rate_limit = n;
    }
    Some(alert)
}

/// An `http://` URL with a host (no TLS client in the daemon).
fn check_webhook(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("'{url}' is not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        Some("http") => Err(format!("'{url}' has no host")),
        Some("https") => Err(format!(
            "'{url}': https is not supported; post to a local relay over http, or use `cmd:` with curl"
        )),
        _ => Err(format!("'{url}' is not an http:// URL")),
    }
}
