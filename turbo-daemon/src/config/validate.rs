//! One app as written ([`AppConfig`]) checked and resolved into an [`AppSpec`], with every
//! problem found, each at the key path of its value (relative to the app).
//!
//! The command is resolved to an absolute path, the `env_file` read and merged under `env:`,
//! durations and sizes read through `spec::units`, and the privilege keys checked against what
//! the caller may grant (`privileges`, `access::Powers`). Problems are collected, not returned
//! at the first, so a user fixes a config in one round.

use std::{collections::BTreeMap, path::Path, time::Duration};

use nix::unistd::{SysconfVar, sysconf};

use super::{
    AppConfig, OneOrMany, Problem, RestartConfig, Scalar, checks,
    error::Fault,
    files::{self, parse_env_file, read_env_file, resolve_command},
    input, jobs, privileges,
};
use crate::{
    access::Powers,
    spec::{AppSpec, Autorestart, MemoryEnforce, Privileges, units::Bounds},
};

/// Checks and resolves one app; relative paths resolve against `base_dir`, commands are found
/// on `path_env`, and what the app may be given is what `powers` may grant.
pub(super) fn validate(
    app: AppConfig,
    base_dir: &Path,
    path_env: &str,
    powers: &Powers,
) -> Result<AppSpec, Vec<Problem>> {
    let mut errors = Vec::new();
    let job_keys = jobs::JobKeys {
        kind: app.kind,
        retries: app.retries,
        depends_on: app.depends_on,
        depends_timeout: app.depends_timeout,
        restart_with_deps: app.restart_with_deps,
        cron: app.cron,
        timezone: app.timezone,
    };
    let keys = privileges::Keys {
        user: app.user,
        group: app.group,
        groups: app.groups,
        umask: app.umask,
        rlimits: app.rlimits,
        nice: app.nice,
        oom_score_adj: app.oom_score_adj,
    };
    if let Err(e) = turbo_api::validate_app_name(&app.name) {
        errors.push(Problem::new("name", e));
    }
    let cwd = app
        .cwd
        .as_deref()
        .map_or_else(|| base_dir.to_path_buf(), |c| base_dir.join(c));
    let cwd_ok = match files::enter_dir(&cwd) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            // checked with the caller's rights: an app that could never enter it would be
            // left behind as `errored` (issue 15)
            errors.push(
                Problem::new(
                    "cwd",
                    format!(
                        "working directory {} cannot be entered (Permission denied)",
                        cwd.display()
                    ),
                )
                .hint("choose a directory you may enter, or ask root to start it"),
            );
            false
        }
        Err(_) => {
            errors.push(
                Problem::new(
                    "cwd",
                    format!("working directory {} does not exist", cwd.display()),
                )
                .hint("create it or fix `cwd`"),
            );
            false
        }
    };
    let is_script = app.script.is_some();
    let argv: Vec<String> = match (app.script, app.cmd) {
        (Some(script), None) => std::iter::once(script).chain(app.args).collect(),
        (None, Some(cmd)) if !cmd.is_empty() => cmd.into_iter().chain(app.args).collect(),
        (None, Some(_)) => {
            errors.push(
                Problem::new("cmd", "`cmd` is empty").hint("give the program and its arguments"),
            );
            Vec::new()
        }
        (Some(_), Some(_)) => {
            errors.push(Problem::new(
                "cmd",
                "give either `script` or `cmd`, not both",
            ));
            Vec::new()
        }
        (None, None) => {
            errors.push(Problem::new(
                "",
                "missing `script` (a file to run) or `cmd` (a command line)",
            ));
            Vec::new()
        }
    };
    let argv = if argv.is_empty() || !cwd_ok {
        argv
    } else {
        resolve_command(&argv, &cwd, path_env, is_script).unwrap_or_else(|e| {
            errors.push(e.at(if is_script { "script" } else { "cmd[0]" }));
            Vec::new()
        })
    };
    if let Err(e) = input::check_argv(&argv) {
        errors.push(Problem::new(if is_script { "script" } else { "cmd" }, e));
    }
    let mut spec = AppSpec::new(app.name, argv, cwd);
    spec.lifecycle = jobs::lifecycle(job_keys, &mut errors);
    spec.env = environment(app.env_file.as_deref(), app.env, &spec.cwd, &mut errors);
    apply_restart(&app.restart, &mut spec, &mut errors);
    super::log::apply_log(&app.log, &mut spec, powers, &mut errors);
    apply_memory(
        app.max_memory.as_ref(),
        app.memory_warning.as_ref(),
        &mut spec,
        &mut errors,
    );
    apply_memory_enforce(
        app.memory_enforce.as_deref(),
        app.max_memory.is_some(),
        &mut spec,
        &mut errors,
    );
    let limits = super::resources::ResourceKeys {
        cpu_max: app.cpu_max,
        cpu_weight: app.cpu_weight,
        io_weight: app.io_weight,
        pids_max: app.pids_max,
        memory_high: app.memory_high,
    };
    super::resources::apply_resources(&limits, &mut spec, &mut errors);
    spec.resources.best_effort = app.limits_required == Some(false);
    if let Some((k, bad)) = app
        .stop_exit_codes
        .iter()
        .enumerate()
        .find(|(_, c)| !(0..=255).contains(*c))
    {
        errors.push(Problem::new(
            format!("stop_exit_codes[{k}]"),
            format!("stop_exit_codes: {bad} is not an exit status (0-255)"),
        ));
    }
    spec.stop_exit_codes = app.stop_exit_codes;
    if let Some(a) = app.autorestart {
        match a.parse::<Autorestart>() {
            Ok(a) => spec.autorestart = a,
            Err(e) => errors.push(Problem::new("autorestart", e)),
        }
    }
    if let Some(s) = app.stop_signal {
        match parse_signal(&s) {
            Some(sig) => spec.stop_signal = sig,
            None => errors.push(Problem::new(
                "stop_signal",
                format!(
                    "stop_signal '{s}' is not a signal name like SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1"
                ),
            )),
        }
    }
    if let Some(d) = app.kill_timeout {
        match d.duration("kill_timeout") {
            Ok(d) => spec.kill_timeout = d,
            Err(e) => errors.push(e.at("kill_timeout")),
        }
    }
    if let Some(n) = &app.instances {
        match instance_count(n) {
            Ok(n) => spec.instances = n,
            Err(e) => errors.push(e.at("instances")),
        }
    }
    apply_listen(app.listen, powers, &mut spec, &mut errors);
    spec.exec_allow = exec_allow(app.exec_allow, &mut errors);
    checks::apply_watch(
        checks::WatchKeys {
            watch: app.watch,
            ignore_watch: app.ignore_watch,
            watch_delay: app.watch_delay,
        },
        &mut spec,
        &mut errors,
    );
    checks::apply_health(app.health, path_env, &mut spec, &mut errors);
    checks::apply_readiness(
        app.ready.as_deref(),
        app.ready_timeout.as_ref(),
        app.watchdog.as_ref(),
        &mut spec,
        &mut errors,
    );
    super::groups::apply(app.app_group, app.reload_signal, &mut spec, &mut errors);
    super::alerts::apply(app.on_crash, app.on_state, path_env, &mut spec, &mut errors);
    let hooks = super::hooks::HookKeys {
        pre_start: app.pre_start,
        post_start: app.post_start,
        pre_stop: app.pre_stop,
        post_stop: app.post_stop,
    };
    super::hooks::apply(hooks, path_env, &mut spec, &mut errors);
    // last, as these keys usually come last in an app
    let (run_as, limits) = privileges::resolve(&keys, powers, &mut errors);
    spec.privileges = Box::new(Privileges { run_as, limits });
    if errors.is_empty() {
        Ok(spec)
    } else {
        Err(errors)
    }
}

/// `env_file:` merged under `env:` (`env:` wins, as in docker compose); relative paths resolve
/// against the app's `cwd`.
fn environment(
    env_file: Option<&str>,
    written: BTreeMap<String, String>,
    cwd: &Path,
    errors: &mut Vec<Problem>,
) -> Vec<(String, String)> {
    let mut env = BTreeMap::new();
    if let Some(file) = env_file {
        let path = cwd.join(file);
        match read_env_file(&path) {
            Ok(text) => match parse_env_file(&text) {
                Ok(vars) => env.extend(vars),
                Err(e) => errors.push(Problem::new(
                    "env_file",
                    format!("env_file {}: {e}", path.display()),
                )),
            },
            Err(e) => errors.push(
                Problem::new(
                    "env_file",
                    format!("env_file {} cannot be read ({e})", path.display()),
                )
                .hint("fix the path (relative to the app's cwd) or remove `env_file`"),
            ),
        }
    }
    env.extend(written);
    if let Err(e) = input::check_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        errors.push(Problem::new("env", e));
    }
    env.into_iter().collect()
}

fn apply_restart(cfg: &RestartConfig, spec: &mut AppSpec, errors: &mut Vec<Problem>) {
    let r = &mut spec.restart;
    // `field` is also the key path of the value
    let mut set = |value: &Option<Scalar>, field: &str, into: &mut Duration| {
        if let Some(v) = value {
            match v.duration(field) {
                Ok(d) => *into = d,
                Err(e) => errors.push(e.at(field)),
            }
        }
    };
    set(&cfg.delay, "restart.delay", &mut r.delay);
    set(&cfg.max_delay, "restart.max_delay", &mut r.max_delay);
    set(&cfg.reset_after, "restart.reset_after", &mut r.reset_after);
    if let Some(cl) = &cfg.crash_loop {
        set(
            &cl.window,
            "restart.crash_loop.window",
            &mut r.crash_loop_window,
        );
        if let Some(n) = CRASH_LOOP_MAX.read(cl.max, errors) {
            r.crash_loop_max = n;
        }
    }
    if let Some(f) = cfg.factor {
        if f.is_finite() && f >= 1.0 {
            r.factor = f;
        } else {
            errors.push(Problem::new(
                "restart.factor",
                format!("restart.factor {f} must be at least 1 (1 keeps the delay constant)"),
            ));
        }
    }
    if let Some(n) = MAX_RESTARTS.read(cfg.max_restarts, errors) {
        r.max_restarts = n;
    }
    if r.max_delay < r.delay {
        // point at whichever of the two was written, max_delay first
        let at = if cfg.max_delay.is_some() || cfg.delay.is_none() {
            "restart.max_delay"
        } else {
            "restart.delay"
        };
        errors.push(
            Problem::new(
                at,
                format!(
                    "restart.max_delay ({:?}) is shorter than restart.delay ({:?})",
                    r.max_delay, r.delay
                ),
            )
            .hint("raise max_delay or lower delay"),
        );
    }
}

fn apply_memory(
    max: Option<&Scalar>,
    warning: Option<&Scalar>,
    spec: &mut AppSpec,
    errors: &mut Vec<Problem>,
) {
    if let Some(v) = max {
        match v.size("max_memory", Bounds::MEMORY) {
            Ok(n) if n >= 1 << 20 => spec.memory.max = Some(n),
            Ok(n) => errors.push(
                Problem::new("max_memory", format!("max_memory {n} bytes is below 1mb"))
                    .hint("no program runs in that; use e.g. 512mb"),
            ),
            Err(e) => errors.push(e.at("max_memory")),
        }
    }
    if let Some(v) = warning {
        match v.percent() {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "checked 1..=100"
            )]
            Some(p) if (1.0..=100.0).contains(&p) => spec.memory.warning_percent = p.round() as u8,
            _ => errors.push(Problem::new(
                "memory_warning",
                "memory_warning must be a percentage of max_memory between 1% and 100%, like 80%",
            )),
        }
        if max.is_none() {
            errors.push(Problem::new(
                "memory_warning",
                "memory_warning needs max_memory: it is a share of it",
            ));
        }
    }
}

fn apply_memory_enforce(
    enforce: Option<&str>,
    has_max: bool,
    spec: &mut AppSpec,
    errors: &mut Vec<Problem>,
) {
    let Some(value) = enforce else { return };
    match value.parse::<MemoryEnforce>() {
        Ok(e) => spec.memory.enforce = e,
        Err(e) => errors.push(Problem::new("memory_enforce", e)),
    }
    if !has_max {
        errors.push(
            Problem::new("memory_enforce", "memory_enforce needs max_memory")
                .hint("it says who enforces that limit; add e.g. `max_memory: 512mb`"),
        );
    }
}

/// A key whose value is a count: its path, its smallest value, and what a refusal says it
/// must be.
pub(super) struct Count {
    field: &'static str,
    min: u32,
    must: &'static str,
}

impl Count {
    pub(super) const fn new(field: &'static str, min: u32, must: &'static str) -> Self {
        Self { field, min, must }
    }

    /// The count written, or the problem `<field> <n> must be <must>`.
    pub(super) fn read(&self, value: Option<i64>, errors: &mut Vec<Problem>) -> Option<u32> {
        let n = value?;
        match u32::try_from(n) {
            Ok(c) if c >= self.min => Some(c),
            _ => {
                let Self { field, must, .. } = self;
                errors.push(Problem::new(*field, format!("{field} {n} must be {must}")));
                None
            }
        }
    }
}

const CRASH_LOOP_MAX: Count =
    Count::new("restart.crash_loop.max", 0, "0 (off) or a positive count");
const MAX_RESTARTS: Count = Count::new(
    "restart.max_restarts",
    0,
    "0 (unlimited) or a positive count",
);
/// `listen:`: one address or a list of them, each checked, none twice.
fn apply_listen(
    listen: Option<OneOrMany>,
    powers: &Powers,
    spec: &mut AppSpec,
    errors: &mut Vec<Problem>,
) {
    match listen {
        None => {}
        Some(OneOrMany::One(addr)) => match check_listen(&addr, powers) {
            Ok(()) => spec.listen = vec![addr],
            Err(e) => errors.push(e.at("listen")),
        },
        Some(OneOrMany::Many(addrs)) => {
            for (k, addr) in addrs.iter().enumerate() {
                if let Err(e) = check_listen(addr, powers) {
                    errors.push(e.at(format!("listen[{k}]")));
                } else if addrs[..k].contains(addr) {
                    errors.push(Problem::new(
                        format!("listen[{k}]"),
                        format!("listen: {addr} is given twice"),
                    ));
                }
            }
            spec.listen = addrs;
        }
    }
}

/// `exec_allow:`: absolute paths or globs (the kernel reports the path given to `execve`, and a
/// relative glob would depend on the app's working directory at the time).
fn exec_allow(globs: Vec<String>, errors: &mut Vec<Problem>) -> Vec<String> {
    for (k, g) in globs.iter().enumerate() {
        if !g.starts_with('/') || g.contains('\0') {
            errors.push(
                Problem::new(
                    format!("exec_allow[{k}]"),
                    format!("exec_allow: '{g}' is not an absolute path or glob"),
                )
                .hint("write it like /usr/bin/node or /usr/lib/node_modules/**"),
            );
        }
    }
    globs
}

/// `instances:`: a count from 1 to [`input::MAX_INSTANCES`], or `max` (the online CPUs).
pub(super) fn instance_count(value: &Scalar) -> Result<u32, Fault> {
    let hint = "give a whole number like 4, or `max` for one per CPU";
    let n = match value {
        Scalar::Text(t) if t == "max" => online_cpus(),
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "checked to be a whole number in range first"
        )]
        Scalar::Number(n) if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(n) => {
            *n as u32
        }
        Scalar::Number(n) => {
            return Err(Fault::new(format!("instances {n} is not a count")).hint(hint));
        }
        Scalar::Text(t) => {
            return Err(
                Fault::new(format!("instances '{}' is not a count", input::shorten(t))).hint(hint),
            );
        }
    };
    input::check_instances(n).map(|()| n).map_err(Fault::from)
}

/// The number of online CPUs (`max` instances), as glibc counts them (`/sys`), 1 if unknown.
pub(super) fn online_cpus() -> u32 {
    sysconf(SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

/// `listen:`: an IP address with a port. Whether the port is free is known only when the daemon
/// binds it (at the first start), which reports `cannot listen on <addr>: <cause>`. A
/// privileged port is refused to a caller who could not bind it (issue 15: the root daemon bound
/// port 80 for an admin's app, which then served it as uid 1001).
fn check_listen(addr: &str, powers: &Powers) -> Result<(), Fault> {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) if a.port() == 0 => Err(Fault::new(format!("listen: {addr} has port 0"))
            .hint("give the port the app serves on, like 0.0.0.0:3000")),
        Ok(a) if !powers.may_listen_on(a.port()) => Err(Fault::new(format!(
            "listen: {addr} is a privileged port (below {}, net.ipv4.ip_unprivileged_port_start) and {} may not bind it",
            powers.unprivileged_port_start,
            powers.holder()
        ))
        .hint(format!(
            "use port {} or above, or {}",
            powers.unprivileged_port_start,
            powers.root_hint()
        ))),
        Ok(_) => Ok(()),
        Err(_) => Err(Fault::new(format!(
            "listen: '{}' is not an IP address with a port",
            input::shorten(addr)
        ))
        .hint("write it like 0.0.0.0:3000 or [::]:3000")),
    }
}

/// `SIGTERM`, `TERM` or a number.
pub(super) fn parse_signal(s: &str) -> Option<i32> {
    input::parse_signal(s).ok()
}
