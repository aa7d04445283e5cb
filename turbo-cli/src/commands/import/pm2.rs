//! The pure conversion of a parsed PM2 document into turbo.yml apps, by the tables of PM2's
//! vocabulary in `pm2_keys`. This module must not read or write files, nor run anything.

use std::{collections::BTreeMap, path::Path};

use anyhow::Result;
use serde_json::{Map, Value};

use crate::commands::start::sanitize_name;

use super::{model::*, pm2_keys::*};

/// Converts a parsed PM2 document.
///
/// # Errors
/// The document is not a PM2 ecosystem or dump, or no app in it could be converted.
pub fn convert(doc: &Value, opts: &Options) -> Result<Conversion, String> {
    let (source, entries) = entries(doc)?;
    let mut out = Conversion::default();
    top_level_notes(doc, &mut out.notes);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let Value::Object(map) = entry else {
            out.notes.push(Note {
                app: format!("apps[{i}]"),
                key: "-".into(),
                kind: NoteKind::Dropped,
                what: "not an object: skipped".into(),
            });
            continue;
        };
        let Some(app) = convert_app(map, i, source, opts, &mut out.notes) else {
            continue;
        };
        // a dump lists every instance of a clustered app under the same name
        if let Some(n) = seen.get_mut(&app.name) {
            *n += 1;
            if source == Source::Dump {
                let count = *n;
                if let Some(first) = out.apps.iter_mut().find(|a| a.name == app.name) {
                    first.instances = u64::try_from(count).ok().map(Instances::Count);
                }
                continue;
            }
            let renamed = format!("{}-{}", app.name, n);
            out.notes.push(Note {
                app: app.name.clone(),
                key: "name".into(),
                kind: NoteKind::Approximated,
                what: format!("used twice: the second is called {renamed}"),
            });
            out.apps.push(TurboApp {
                name: renamed,
                ..app
            });
            continue;
        }
        seen.insert(app.name.clone(), 1);
        out.apps.push(app);
    }
    if let Some(name) = &opts.env_name {
        let key = format!("env_{name}");
        if !entries.iter().any(|e| e.get(&key).is_some()) {
            out.notes.push(Note {
                app: "every app".into(),
                key: "--env".into(),
                kind: NoteKind::Unknown,
                what: format!("no app has {key}: only `env` was used"),
            });
        }
    }
    if out.apps.is_empty() {
        return Err(if entries.is_empty() {
            "no apps in it".to_owned()
        } else {
            let why: Vec<String> = out.notes.iter().map(ToString::to_string).collect();
            format!("no app could be converted: {}", why.join("; "))
        });
    }
    Ok(out)
}

/// The app entries, and whether they come from a dump.
fn entries(doc: &Value) -> Result<(Source, &[Value]), String> {
    const SHAPE: &str = "expected a PM2 ecosystem (`{\"apps\": [...]}`) or a dump from `pm2 save` (a list of processes)";
    match doc {
        Value::Object(map) => match map.get("apps") {
            Some(Value::Array(apps)) => Ok((Source::Ecosystem, apps.as_slice())),
            Some(_) => Err(format!("`apps` is not a list: {SHAPE}")),
            None if map.contains_key("script") || map.contains_key("exec") => {
                Ok((Source::Ecosystem, std::slice::from_ref(doc)))
            }
            None => Err(format!("no `apps` list: {SHAPE}")),
        },
        Value::Array(items) => {
            let dump = items
                .iter()
                .any(|i| i.get("pm_exec_path").is_some() || i.get("pm_cwd").is_some());
            let source = if dump {
                Source::Dump
            } else {
                Source::Ecosystem
            };
            Ok((source, items.as_slice()))
        }
        _ => Err(SHAPE.to_owned()),
    }
}

/// The first of `keys` present in `map`.
fn get<'a>(map: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter()
        .find_map(|k| map.get(*k))
        .filter(|v| !v.is_null())
}

/// A string, or a number written as one.
pub(super) fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Arguments: a list, or one string split like a shell would (PM2 accepts both).
pub(super) fn words(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().filter_map(text).collect(),
        Value::String(s) => split_words(s),
        other => text(other).into_iter().collect(),
    }
}

/// Splits on blanks as a POSIX shell would (quotes, backslashes); a string with an unclosed
/// quote, which PM2 would hand to its own splitter, falls back to plain blanks.
pub(super) fn split_words(s: &str) -> Vec<String> {
    shlex::split(s).unwrap_or_else(|| s.split_whitespace().map(str::to_owned).collect())
}

/// Milliseconds from a number or PM2's `min_uptime` forms (`500`, `5s`, `2m`, `1h`).
pub(super) fn millis(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f.round() as u64)),
        Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: u64 = num.parse().ok()?;
            match unit.trim() {
                "" | "ms" => Some(n),
                "s" => n.checked_mul(1000),
                "m" => n.checked_mul(60_000),
                "h" => n.checked_mul(3_600_000),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A turbo.yml duration: the largest whole unit.
pub(super) fn duration_text(ms: u64) -> String {
    match ms {
        0 => "0s".to_owned(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// Bytes from PM2's `max_memory_restart` (`300M`, `1G`, `512K`, a number of bytes; 1024-based).
pub(super) fn pm2_bytes(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let s = s.trim();
            let (num, mult) = match s.chars().last()?.to_ascii_uppercase() {
                'K' => (&s[..s.len() - 1], 1u64 << 10),
                'M' => (&s[..s.len() - 1], 1 << 20),
                'G' => (&s[..s.len() - 1], 1 << 30),
                _ => (s, 1),
            };
            num.trim().parse::<u64>().ok()?.checked_mul(mult)
        }
        _ => None,
    }
}

/// A turbo.yml size: `300mb`, `1gb`, `512k`, or bytes.
pub(super) fn size_text(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}gb", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}mb", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}k", b >> 10),
        b => b.to_string(),
    }
}

pub(super) fn extension(path: &str) -> &str {
    Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
}

pub(super) fn basename(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

/// Converts one PM2 app; `None` (with a note) when it has no script.
#[expect(
    clippy::too_many_lines,
    reason = "one straight pass over PM2's options, in the order of turbo.yml"
)]
fn convert_app(
    map: &Map<String, Value>,
    index: usize,
    source: Source,
    opts: &Options,
    notes: &mut Vec<Note>,
) -> Option<TurboApp> {
    let script = get(map, &["script", "exec", "pm_exec_path"]).and_then(text);
    let pm2_name = get(map, &["name"]).and_then(text);
    let label = pm2_name.clone().unwrap_or_else(|| format!("apps[{index}]"));
    let Some(script) = script.filter(|s| !s.trim().is_empty()) else {
        notes.push(Note {
            app: label,
            key: "script".into(),
            kind: NoteKind::Dropped,
            what: "missing: the app was skipped".into(),
        });
        return None;
    };
    let name = match &pm2_name {
        Some(n) => sanitize_name(n),
        // PM2's default too: the script's file name without extension
        None => sanitize_name(
            Path::new(&script)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("app"),
        ),
    };
    let mut app = TurboApp {
        name: name.clone(),
        ..TurboApp::default()
    };
    let mut note = |key: &str, kind: NoteKind, what: String| {
        notes.push(Note {
            app: name.clone(),
            key: key.to_owned(),
            kind,
            what,
        });
    };
    if let Some(n) = &pm2_name
        && *n != name
    {
        note(
            "name",
            NoteKind::Approximated,
            format!("'{n}' is not a valid turbo app name: renamed {name}"),
        );
    }

    // what runs
    let interpreter = get(map, &["exec_interpreter", "interpreter"])
        .and_then(text)
        .filter(|i| !i.is_empty());
    let interp_args = get(map, &["node_args", "interpreter_args", "interpreterArgs"])
        .map(words)
        .unwrap_or_default();
    let args = get(map, &["args"]).map(words).unwrap_or_default();
    let ext = extension(&script);
    let looks_like_command = !script.contains('/') && ext.is_empty();
    let pm2_default = PM2_INTERPRETERS
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|(_, i)| *i);
    let turbo_default = turbo_api::INTERPRETERS
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|(_, i)| *i);
    // the interpreter PM2 runs it with; None: the script itself (a binary or a command)
    let chosen: Option<String> = match interpreter.as_deref() {
        Some("none") => None,
        Some(i) => Some(i.to_owned()),
        None if script.contains(char::is_whitespace) && looks_like_command => None,
        None if looks_like_command => None,
        None => Some(pm2_default.unwrap_or("node").to_owned()),
    };
    match chosen {
        None if script.contains(char::is_whitespace) => {
            // `script: "npm run start"`: a command line
            let mut cmd = split_words(&script);
            cmd.extend(args);
            app.cmd = Some(cmd);
        }
        None => {
            let mut cmd = vec![script.clone()];
            cmd.extend(args);
            app.cmd = Some(cmd);
        }
        Some(interp) => {
            let same = turbo_default.is_some_and(|t| {
                let b = basename(&interp);
                // PM2's `python` means python3 where there is no python 2 (it checks PATH)
                b == t || (t == "python3" && b == "python")
            });
            if same && interp_args.is_empty() && !interp.contains('/') {
                app.script = Some(script.clone());
                app.args = args;
            } else {
                let mut cmd = vec![interp];
                cmd.extend(interp_args.iter().cloned());
                cmd.push(script.clone());
                cmd.extend(args);
                app.cmd = Some(cmd);
            }
        }
    }

    // where
    if let Some(cwd) = get(map, &["cwd", "pm_cwd"]).and_then(text) {
        app.cwd = Some(match &opts.rebase {
            Some(base) if Path::new(&cwd).is_relative() => {
                crate::paths::absolutize(base, Path::new(&cwd))
                    .to_string_lossy()
                    .into_owned()
            }
            _ => cwd,
        });
    } else if let Some(base) = &opts.rebase {
        // turbo.yml resolves a relative script against the file's directory, which moves
        app.cwd = Some(base.to_string_lossy().into_owned());
    }

    // environment: env, then env_<NAME>, then `port`
    let mut dropped_shell = 0usize;
    let mut add_env = |env: &Value,
                       key: &str,
                       app: &mut TurboApp,
                       note: &mut dyn FnMut(&str, NoteKind, String)| {
        let Value::Object(vars) = env else {
            note(
                key,
                NoteKind::Dropped,
                "not a map of variables: left out".to_owned(),
            );
            return;
        };
        for (k, v) in vars {
            if source == Source::Dump && is_shell_var(k) {
                dropped_shell += 1;
                continue;
            }
            let value = match v {
                Value::Null => continue,
                // PM2 passes objects as JSON text
                Value::Object(_) | Value::Array(_) if source == Source::Dump => continue,
                Value::Object(_) | Value::Array(_) => v.to_string(),
                other => text(other).unwrap_or_default(),
            };
            app.env.insert(k.clone(), value);
        }
    };
    if let Some(env) = get(map, &["env"]) {
        add_env(env, "env", &mut app, &mut note);
    }
    if let Some(env_name) = &opts.env_name {
        let key = format!("env_{env_name}");
        // an app without this block keeps its `env`, as with `pm2 start --env`
        if let Some(env) = map.get(&key) {
            add_env(env, &key, &mut app, &mut note);
        }
    }
    if let Some(port) = get(map, &["port"]).and_then(text) {
        app.env.entry("PORT".to_owned()).or_insert(port);
    }
    if dropped_shell > 0 {
        note(
            "env",
            NoteKind::Dropped,
            format!(
                "{dropped_shell} variables of the shell that ran pm2 (PATH, HOME, ...) left out: \
                 turbo sets PATH, HOME, USER and the locale itself; add any other the app needs to env:"
            ),
        );
    }

    // restarts
    if let Some(v) = get(map, &["autorestart"]) {
        match v {
            Value::Bool(false) => app.autorestart = Some("never"),
            Value::Bool(true) => {}
            other => note(
                "autorestart",
                NoteKind::Dropped,
                format!("{other} is not true or false"),
            ),
        }
    }
    if let Some(codes) = get(map, &["stop_exit_codes"]) {
        let list = match codes {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        app.stop_exit_codes = list
            .iter()
            .filter_map(|c| c.as_i64().and_then(|c| i32::try_from(c).ok()))
            .filter(|c| (0..=255).contains(c))
            .collect();
    }
    let mut restart = Restart::default();
    let exp = get(map, &["exp_backoff_restart_delay"])
        .and_then(millis)
        .filter(|ms| *ms > 0);
    let fixed = get(map, &["restart_delay"])
        .and_then(millis)
        .filter(|ms| *ms > 0);
    if let Some(ms) = exp {
        // PM2: ×1.5 per restart up to 15 s, back to the start after 30 s up
        restart.delay = Some(duration_text(ms));
        restart.factor = Some(1.5);
        restart.max_delay = Some(duration_text(ms.max(15_000)));
        restart.reset_after = Some("30s".to_owned());
        if fixed.is_some() {
            note(
                "restart_delay",
                NoteKind::Dropped,
                "PM2 ignores it when exp_backoff_restart_delay is set".to_owned(),
            );
        }
    } else if let Some(ms) = fixed {
        restart.delay = Some(duration_text(ms));
        restart.factor = Some(1.0);
        restart.max_delay = Some(duration_text(ms));
    }
    if let Some(max) = get(map, &["max_restarts"]).and_then(Value::as_u64) {
        restart.crash_loop = Some(CrashLoop { max });
        note(
            "max_restarts",
            NoteKind::Approximated,
            format!(
                "restart.crash_loop.max {max}: turbo counts crashes within restart.crash_loop.window \
                 (60s), PM2 counts restarts that lived less than min_uptime"
            ),
        );
    }
    if let Some(v) = get(map, &["min_uptime"])
        && millis(v) != Some(1000)
    {
        note(
            "min_uptime",
            NoteKind::Dropped,
            "turbo detects crash loops by count within a window (restart.crash_loop)".to_owned(),
        );
    }
    if restart != Restart::default() {
        app.restart = Some(restart);
    }

    // stopping: PM2 sends SIGINT, then SIGKILL after kill_timeout (1600 ms by default)
    app.stop_signal = Some("SIGINT");
    if let Some(ms) = get(map, &["kill_timeout"]).and_then(millis) {
        app.kill_timeout = Some(duration_text(ms));
    }

    // logs and memory
    if let Some(t) = get(map, &["log_type"]).and_then(text) {
        if t == "json" {
            app.log.get_or_insert_with(Log::default).format = Some("json");
        } else if t != "raw" {
            note("log_type", NoteKind::Dropped, format!("'{t}' is not json"));
        }
    }
    if let Some(v) = get(map, &["max_memory_restart"]) {
        match pm2_bytes(v) {
            Some(b) if b >= 1 << 20 => app.max_memory = Some(size_text(b)),
            _ => note(
                "max_memory_restart",
                NoteKind::Dropped,
                format!("{v} is not a size of at least 1M"),
            ),
        }
    }

    // watch mode
    let strings = |v: &Value| -> Option<Vec<String>> {
        match v {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect(),
            _ => None,
        }
    };
    match get(map, &["watch"]) {
        None | Some(Value::Bool(false) | Value::Null) => {}
        Some(Value::Bool(true)) => app.watch = Some(Watch::All(true)),
        Some(v) => match strings(v) {
            Some(paths) if !paths.is_empty() => app.watch = Some(Watch::Paths(paths)),
            _ => note(
                "watch",
                NoteKind::Dropped,
                format!("{v} is not true or paths"),
            ),
        },
    }
    if let Some(v) = get(map, &["ignore_watch"]) {
        match strings(v) {
            // PM2 (chokidar) also takes regular expressions; turbo takes globs, which the
            // common entries (`node_modules`, `*.log`, `logs/**`) already are
            Some(globs) => app.ignore_watch = globs,
            None => note(
                "ignore_watch",
                NoteKind::Dropped,
                format!("{v} is not a list of globs"),
            ),
        }
    }
    if let Some(v) = get(map, &["watch_delay"]) {
        match v.as_u64() {
            Some(ms) => app.watch_delay = Some(duration_text(ms)),
            None => note(
                "watch_delay",
                NoteKind::Dropped,
                format!("{v} is not milliseconds"),
            ),
        }
    }
    if app.watch.is_none() {
        // without watch they would be config errors in turbo.yml
        app.ignore_watch.clear();
        app.watch_delay = None;
    }

    // who
    let id_or_name = |v: &Value| match v {
        Value::Number(n) => n.as_u64().map(NameOrId::Id),
        Value::String(s) if !s.is_empty() => Some(match s.parse::<u64>() {
            Ok(id) => NameOrId::Id(id),
            Err(_) => NameOrId::Name(s.clone()),
        }),
        _ => None,
    };
    app.user = get(map, &["uid", "user"]).and_then(id_or_name);
    app.group = get(map, &["gid"]).and_then(id_or_name);

    // instances and mode (a dump has one entry per instance: counted by the caller)
    if let Some(v) = get(map, &["instances"])
        && source == Source::Ecosystem
    {
        let n = v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()));
        match (n, v.as_str()) {
            (Some(1), _) => {}
            (Some(n), _) if n > 1 => app.instances = u64::try_from(n).ok().map(Instances::Count),
            // PM2: 0 and "max" mean one per CPU, -N all CPUs but N
            (Some(0), _) | (_, Some("max")) => app.instances = Some(Instances::Max("max")),
            (Some(n), _) if n < 0 => {
                app.instances = Some(Instances::Max("max"));
                note(
                    "instances",
                    NoteKind::Approximated,
                    format!("{n} (all CPUs but {}): turbo runs one per CPU (`max`)", -n),
                );
            }
            _ => note("instances", NoteKind::Dropped, format!("{v} (not a count)")),
        }
    }
    if let Some(mode) = get(map, &["exec_mode"]).and_then(text)
        && mode.starts_with("cluster")
    {
        note(
            "exec_mode",
            NoteKind::Approximated,
            "cluster mode is Node's: turbo runs each instance as its own process; to share a port, \
             give it in `listen:` and read the socket from fd 3 (docs/cluster.md)"
                .to_owned(),
        );
    }

    jobs_and_readiness(map, &mut app, &mut note);

    // everything else
    for (key, value) in map {
        if MAPPED.contains(&key.as_str()) || key.starts_with("env_") {
            continue;
        }
        if let Some((_, default, why)) = DROPPED.iter().find(|(k, _, _)| k == key) {
            let value_text = text(value).unwrap_or_else(|| value.to_string());
            if default.is_some_and(|d| d == value_text) || value.is_null() {
                continue;
            }
            // a dump has PM2's log paths for every app; only other paths are a choice
            if source == Source::Dump && value_text.contains("/.pm2/") {
                continue;
            }
            note(key, NoteKind::Dropped, format!("{value_text} ({why})"));
        } else if source == Source::Ecosystem && !DUMP_STATE.contains(&key.as_str()) {
            note(
                key,
                NoteKind::Unknown,
                "not a PM2 option turbo knows: left out".to_owned(),
            );
        }
        // in a dump anything else is runtime state (DUMP_STATE) or a copy of an env variable
    }
    Some(app)
}

/// `cron_restart`, `wait_ready` with `listen_timeout`, `autostart`, and `merge_logs` of
/// several instances (without it, per-instance files, as PM2 writes them).
fn jobs_and_readiness(
    map: &Map<String, Value>,
    app: &mut TurboApp,
    note: &mut impl FnMut(&str, NoteKind, String),
) {
    if let Some(expr) = get(map, &["cron_restart", "cron"]).and_then(text) {
        let key = if map.contains_key("cron_restart") {
            "cron_restart"
        } else {
            "cron"
        };
        let zone = "PM2 reads it in the server's local time zone, turbo in UTC: add \
                    `timezone:` (e.g. Europe/Paris) if they differ";
        if app.autorestart == Some("never") {
            // PM2's way to run a job on a schedule: it exits, stays stopped, cron starts it
            app.kind = Some("oneshot");
            app.autorestart = None;
            app.cron = Some(Cron::Run {
                schedule: expr,
                action: "run",
            });
            note(
                key,
                NoteKind::Approximated,
                format!(
                    "with autorestart: false it is a scheduled job: `type: oneshot` run by the \
                     schedule (a run still going when the next is due is skipped); {zone}"
                ),
            );
        } else {
            app.cron = Some(Cron::Restart(expr));
            note(
                key,
                NoteKind::Approximated,
                format!("restarts on schedule; {zone}"),
            );
        }
    }
    let wait_ready = get(map, &["wait_ready"]).and_then(Value::as_bool) == Some(true);
    let listen_timeout = get(map, &["listen_timeout"]).and_then(millis);
    if wait_ready {
        app.ready = Some("notify");
        // PM2's default listen_timeout is 3 s
        app.ready_timeout = Some(duration_text(listen_timeout.unwrap_or(3000)));
        note(
            "wait_ready",
            NoteKind::Approximated,
            "`ready: notify`: the app must send READY=1 on $NOTIFY_SOCKET (`systemd-notify \
             --ready`, or the sd-notify package) instead of process.send('ready'); PM2 goes on \
             at listen_timeout, turbo restarts an app that is not ready by ready_timeout"
                .to_owned(),
        );
    } else if let Some(ms) = listen_timeout {
        note(
            "listen_timeout",
            NoteKind::Dropped,
            format!(
                "{} (PM2 waits for the app to listen; turbo considers an app without a \
                 readiness signal online once started: with wait_ready it becomes ready_timeout)",
                duration_text(ms)
            ),
        );
    }
    if get(map, &["autostart"]).and_then(Value::as_bool) == Some(false) {
        app.autostart = Some(false);
    }
    let merge = get(map, &["merge_logs", "combine_logs"]).and_then(Value::as_bool);
    if app.instances.is_some() && merge != Some(true) {
        app.log.get_or_insert_with(Log::default).per_instance = true;
    }
}

/// Top-level keys of an ecosystem file besides `apps`: a `deploy` block (PM2's git-based
/// deployment) and anything else, each noted.
fn top_level_notes(doc: &Value, notes: &mut Vec<Note>) {
    let Value::Object(map) = doc else {
        return;
    };
    if !map.contains_key("apps") {
        return; // a single app: its keys are the app's
    }
    for key in map.keys().filter(|k| *k != "apps") {
        let (kind, what) = if key == "deploy" {
            (
                NoteKind::Dropped,
                "PM2's deployment (`pm2 deploy`: git pull, hooks, over ssh) has no equivalent: \
                 deploy the code with your own tooling, then run `turbo apply turbo.yml` on the \
                 host"
                    .to_owned(),
            )
        } else {
            (
                NoteKind::Unknown,
                "not a top-level key of a PM2 ecosystem file: left out".to_owned(),
            )
        };
        notes.push(Note {
            app: "file".into(),
            key: key.clone(),
            kind,
            what,
        });
    }
}
