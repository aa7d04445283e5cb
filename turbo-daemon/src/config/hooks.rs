//! `pre_start`, `post_start`, `pre_stop` and `post_stop` as written, checked into
//! [`Hooks`] (issue 17 point 4). Reads only: the command is found on `PATH`.

use serde::Deserialize;

use super::{Problem, Scalar, checks::set_positive, files::resolve_command};
use crate::spec::{AppSpec, HookSpec, Hooks};

/// One hook as written: `{cmd: [program, args..], timeout: 30s}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HookConfig {
    cmd: Vec<String>,
    timeout: Option<Scalar>,
}

/// The four hook keys of one app.
pub(super) struct HookKeys {
    pub pre_start: Option<HookConfig>,
    pub post_start: Option<HookConfig>,
    pub pre_stop: Option<HookConfig>,
    pub post_stop: Option<HookConfig>,
}

/// Checks the hooks into `spec`.
pub(super) fn apply(keys: HookKeys, path_env: &str, spec: &mut AppSpec, errors: &mut Vec<Problem>) {
    let mut one = |key: &str, cfg: Option<HookConfig>| {
        let cfg = cfg?;
        if cfg.cmd.is_empty() {
            errors.push(
                Problem::new(format!("{key}.cmd"), format!("{key}.cmd is empty"))
                    .hint("give the program and its arguments, like [/bin/sh, -c, \"...\"]"),
            );
            return None;
        }
        let argv = if spec.cwd.is_dir() {
            resolve_command(&cfg.cmd, &spec.cwd, path_env, false).unwrap_or_else(|e| {
                errors.push(
                    e.prefixed(&format!("{key}.cmd: "))
                        .at(format!("{key}.cmd[0]")),
                );
                cfg.cmd.clone()
            })
        } else {
            cfg.cmd
        };
        let mut hook = HookSpec {
            argv,
            timeout: HookSpec::TIMEOUT,
        };
        let what = format!("{key}.timeout");
        set_positive(cfg.timeout.as_ref(), &what, &mut hook.timeout, errors);
        Some(hook)
    };
    let hooks = Hooks {
        pre_start: one("pre_start", keys.pre_start),
        post_start: one("post_start", keys.post_start),
        pre_stop: one("pre_stop", keys.pre_stop),
        post_stop: one("post_stop", keys.post_stop),
    };
    *spec.hooks = hooks;
}
