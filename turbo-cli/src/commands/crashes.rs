//! `turbo crashes <name>` and `turbo describe <name>`: why an app died, and everything about it.
//!
//! The daemon keeps the records and computes the stats; this module only asks and renders
//! (rendering is pure and unit-tested).

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::{Value, json};
use turbo_api::{AppConfigInfo, AppStatus, CrashRecord, CrashStats, rfc3339_ms};

use super::{daemon, target_error};
use crate::{
    connect::call_error,
    render::{self, RenderOpts, Tone, escape_controls, paint},
    term,
};

/// `turbo crashes`.
/// `turbo crashes`; `@group`: each app of the group in turn (`--json`: an array of them).
pub async fn crashes(target: &str, as_json: bool) -> Result<()> {
    let d = daemon().await?;
    let members = super::group_members(&d, target).await?;
    let targets = members.unwrap_or_else(|| vec![target.to_owned()]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (mut docs, mut texts) = (Vec::new(), Vec::new());
    for one in &targets {
        let (stats, records) = match d.proxy.get_crashes(one).await {
            Ok(found) => found,
            Err(e) => return Err(target_error(&d, one, &e).await),
        };
        if as_json {
            docs.push(json!({
                "stats": stats.to_json(),
                "crashes": records.iter().map(CrashRecord::to_json).collect::<Vec<_>>(),
            }));
        } else {
            texts.push(render_timeline(
                one,
                &stats,
                &records,
                Some(now),
                &term::stdout_opts(),
            ));
        }
    }
    emit_one_or_all(target, docs, &texts, as_json)
}

/// One document or text as it is; a group's as a JSON array, or texts with a blank line between.
fn emit_one_or_all(
    target: &str,
    mut docs: Vec<Value>,
    texts: &[String],
    as_json: bool,
) -> Result<()> {
    let group = target.starts_with('@');
    match (as_json, group) {
        (true, true) => term::emit_json(&Value::Array(docs)),
        (true, false) => term::emit_json(&docs.pop().unwrap_or(Value::Null)),
        (false, _) => term::emit(texts.join("\n\n").trim_end()),
    }
}

/// `turbo describe`; `show_env` also asks for the environment values (root only); `@group`:
/// each app of the group in turn (`--json`: an array of them).
pub async fn describe(target: &str, as_json: bool, show_env: bool) -> Result<()> {
    let d = daemon().await?;
    let members = super::group_members(&d, target).await?;
    let targets = members.unwrap_or_else(|| vec![target.to_owned()]);
    let (mut docs, mut texts) = (Vec::new(), Vec::new());
    for one in &targets {
        let (doc, text) = describe_one(&d, one, as_json, show_env).await?;
        docs.extend(doc);
        texts.extend(text);
    }
    emit_one_or_all(target, docs, &texts, as_json)
}

/// One app's describe: its JSON document (with `as_json`) or its text.
async fn describe_one(
    d: &crate::connect::Daemon,
    target: &str,
    as_json: bool,
    show_env: bool,
) -> Result<(Option<Value>, Option<String>)> {
    let (status, config, records) = match d.proxy.describe_app(target).await {
        Ok(found) => found,
        Err(e) => return Err(target_error(d, target, &e).await),
    };
    // a daemon without eBPF answers with the reason; only a failed call leaves the section out
    let insight = d
        .proxy
        .get_insight(target)
        .await
        .ok()
        .and_then(|all| all.into_iter().find(|i| i.id == status.id));
    let env = if show_env {
        Some(
            d.proxy
                .describe_env(target)
                .await
                .map_err(|e| call_error(&e))?,
        )
    } else {
        None
    };
    if as_json {
        let mut doc = json!({
            "status": status.to_json(),
            "config": config.to_json(),
            "crashes": records.iter().map(CrashRecord::to_json).collect::<Vec<_>>(),
        });
        if let Some(env) = &env {
            doc["env"] = env.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        }
        if let Some(insight) = &insight {
            doc["insight"] = insight.to_json();
        }
        return Ok((Some(doc), None));
    }
    let mut text = render_describe(&status, &config, &records, &term::stdout_opts());
    if let Some(insight) = &insight {
        text.push_str(&super::insight::render_insight(
            insight,
            &term::stdout_opts(),
        ));
    }
    if let Some(env) = &env {
        text.push_str("\n\nEnvironment (values)\n");
        for (k, v) in env {
            let _ = writeln!(
                text,
                "  {}={}",
                render::escape_controls(k),
                render::escape_controls(v)
            );
        }
    }
    Ok((None, Some(text.trim_end().to_owned())))
}

/// The crash timeline: stats, then one block per crash, newest first (without "ago").
#[must_use]
pub fn render_crashes(
    name: &str,
    stats: &CrashStats,
    records: &[CrashRecord],
    opts: &RenderOpts,
) -> String {
    render_timeline(name, stats, records, None, opts)
}

/// The crash timeline drawn as one: a `●` per crash on a line that carries its last stderr
/// lines; with `now_ms`, each stamp also says how long ago it was.
#[must_use]
pub fn render_timeline(
    name: &str,
    stats: &CrashStats,
    records: &[CrashRecord],
    now_ms: Option<u64>,
    opts: &RenderOpts,
) -> String {
    let name = escape_controls(name);
    let mut out = String::new();
    if records.is_empty() {
        let _ = writeln!(out, "{name} has not crashed");
        return out.trim_end().to_owned();
    }
    let crashes = if stats.total == 1 { "crash" } else { "crashes" };
    let mut head = format!(
        "{}: {} {crashes} in all, {} in the last hour, {} in 24 h",
        paint(opts.color, Tone::Bold, &name),
        stats.total,
        stats.last_hour,
        stats.last_day,
    );
    if stats.mtbf_ms > 0 {
        head.push_str(&format!(
            "; one every {} on average",
            render::human_duration_ms(stats.mtbf_ms)
        ));
    }
    if let Some((cause, n)) = most_often(records) {
        head.push_str(&format!("; most often: {cause}"));
        if records.len() > 1 {
            head.push_str(&format!(" ({n} of {})", records.len()));
        }
    }
    let _ = writeln!(out, "{head}\n");
    let rail = paint(opts.color, Tone::Dim, "│");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            let _ = writeln!(out, "{rail}");
        }
        let how = match (r.code, r.signal) {
            (_, s) if s > 0 => match signal_name(s) {
                Some(n) => format!("signal {s} ({n})"),
                None => format!("signal {s}"),
            },
            (c, _) if c >= 0 => format!("exit {c}"),
            _ => "exit (status unknown)".into(),
        };
        let reason = escape_controls(&r.reason);
        let mut line = format!(
            "{} {}",
            paint(opts.color, Tone::Red, "●"),
            paint(opts.color, Tone::Dim, &rfc3339_ms(r.at_ms))
        );
        if let Some(now) = now_ms {
            let ago = format!(
                "{} ago",
                render::human_duration_ms(now.saturating_sub(r.at_ms))
            );
            line.push_str(&format!("  {}", paint(opts.color, Tone::Dim, &ago)));
        }
        line.push_str(&format!("  {}", paint(opts.color, Tone::Red, &how)));
        // "exit 1  exit" says nothing twice; oom_kill, memory_limit... are worth saying
        if r.reason != "exit" && r.reason != "signal" {
            line.push_str(&format!("  {}", paint(opts.color, Tone::Yellow, &reason)));
        }
        line.push_str(&format!(
            "  after {}  restart #{}",
            render::human_duration_ms(r.uptime_ms),
            r.restart_number
        ));
        if r.memory_bytes > 0 {
            line.push_str(&format!("  mem {}", render::human_bytes(r.memory_bytes)));
        }
        if r.memory_peak_bytes > 0 {
            line.push_str(&format!(
                "  peak {}",
                render::human_bytes(r.memory_peak_bytes)
            ));
        }
        if r.signal_sender_pid > 0 {
            // the sender's comm is whatever that process named itself (prctl PR_SET_NAME)
            line.push_str(&format!(
                "  sent by {} ({})",
                escape_controls(&r.signal_sender_comm),
                r.signal_sender_pid
            ));
        }
        let _ = writeln!(out, "{line}");
        if !r.detail.is_empty() {
            let detail = escape_controls(&r.detail);
            let _ = writeln!(out, "{rail} {}", paint(opts.color, Tone::Yellow, &detail));
        }
        for l in &r.stderr_tail {
            let _ = writeln!(out, "{rail} {}", escape_controls(l));
        }
    }
    out.trim_end().to_owned()
}

/// The cause of a crash in a word or two, for "most often": `exit 1`, `SIGSEGV`, `signal 40`,
/// or the reason when the daemon or the kernel ended the app (`oom_kill`, `health`, ...).
fn cause(r: &CrashRecord) -> String {
    match r.reason.as_str() {
        "exit" | "signal" => match (r.code, r.signal) {
            (_, s) if s > 0 => signal_name(s).map_or_else(|| format!("signal {s}"), str::to_owned),
            (c, _) if c >= 0 => format!("exit {c}"),
            _ => "exit".to_owned(),
        },
        other => escape_controls(other).into_owned(),
    }
}

/// The most frequent [`cause`] among the kept records and how many had it; a tie goes to the
/// most recent one (records come newest first).
fn most_often(records: &[CrashRecord]) -> Option<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for r in records {
        let c = cause(r);
        match counts.iter_mut().find(|(seen, _)| *seen == c) {
            Some((_, n)) => *n += 1,
            None => counts.push((c, 1)),
        }
    }
    counts.into_iter().fold(None, |best, (c, n)| match best {
        Some((_, m)) if m >= n => best,
        _ => Some((c, n)),
    })
}

/// Names of the signals that usually end a process.
fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// `describe`: sections for state, config, and the last crash.
#[must_use]
pub fn render_describe(
    status: &AppStatus,
    config: &AppConfigInfo,
    records: &[CrashRecord],
    opts: &RenderOpts,
) -> String {
    let mut out = String::new();
    let head = |out: &mut String, title: &str| {
        let _ = writeln!(out, "\n{}", paint(opts.color, Tone::Bold, title));
    };
    // every value may hold what an app or a config's author wrote (argv, STATUS= text, the
    // health check's last output): none of it may reach the terminal as control sequences
    let row = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "  {k:<16}{}", escape_controls(v));
    };
    let _ = writeln!(
        out,
        "{}",
        paint(
            opts.color,
            Tone::Bold,
            &format!("{} (id {})", escape_controls(&status.name), status.id)
        )
    );
    head(&mut out, "State");
    row(&mut out, "state", &status.state);
    row(&mut out, "desired", &config.desired);
    row(
        &mut out,
        "pid",
        &if status.pid > 0 {
            status.pid.to_string()
        } else {
            "-".into()
        },
    );
    row(
        &mut out,
        "uptime",
        &if status.pid > 0 {
            render::human_duration_ms(status.uptime_ms)
        } else {
            "-".into()
        },
    );
    row(&mut out, "restarts", &status.restarts.to_string());
    if !status.group.is_empty() {
        row(&mut out, "group", &format!("@{}", status.group));
    }
    if !status.status_text.is_empty() {
        row(&mut out, "status text", &status.status_text);
    }
    if !status.waiting_for.is_empty() {
        row(&mut out, "waiting for", &status.waiting_for.join(", "));
    }
    if status.next_run_ms > 0 {
        row(
            &mut out,
            "next run",
            &turbo_api::rfc3339_ms(status.next_run_ms),
        );
    }
    if status.next_restart_in_ms > 0 {
        row(
            &mut out,
            "next restart",
            &format!("in {}", render::human_delay_ms(status.next_restart_in_ms)),
        );
    }
    row(
        &mut out,
        "memory",
        &if status.memory_bytes > 0 {
            render::human_bytes(status.memory_bytes)
        } else {
            "-".into()
        },
    );
    if status.memory_limit_bytes > 0 {
        let limit = render::human_bytes(status.memory_limit_bytes);
        row(
            &mut out,
            "memory limit",
            &match (
                config.memory_enforce.as_str(),
                config.memory_cgroup.as_str(),
            ) {
                ("cgroup", "") => format!("{limit}, enforced by the kernel (memory cgroup)"),
                ("cgroup", cg) => {
                    format!("{limit}, enforced by the kernel (memory cgroup {cg})")
                }
                _ => format!("{limit}, restarted by the daemon at the limit"),
            },
        );
    }
    if !config.limits.is_empty() {
        let limits: Vec<String> = config
            .limits
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        row(&mut out, "cgroup limits", &limits.join(", "));
    }
    for (k, dir) in config.cgroups.iter().enumerate() {
        row(&mut out, if k == 0 { "cgroup" } else { "" }, dir);
    }
    row(
        &mut out,
        "last exit",
        &render::last_exit_text(&status.last_exit),
    );
    if config.instances > 1 {
        row(
            &mut out,
            "instance",
            &format!(
                "{} of 0..{} (`{}:N` names another)",
                status.instance,
                config.instances - 1,
                status.name
            ),
        );
    }
    head(&mut out, "Command");
    row(&mut out, "argv", &status.argv.join(" "));
    if !config.listen.is_empty() {
        row(
            &mut out,
            "listen",
            &format!("{} (fds from 3, LISTEN_FDS)", config.listen.join(", ")),
        );
    }
    row(&mut out, "cwd", &status.cwd);
    if !config.source.is_empty() {
        row(&mut out, "source", &config.source);
    }
    row(
        &mut out,
        "env",
        &if config.env_names.is_empty() {
            "-".into()
        } else {
            format!("{} (values hidden)", config.env_names.join(", "))
        },
    );
    head(&mut out, "Privileges");
    for (key, value) in privilege_rows(config) {
        row(&mut out, key, &value);
    }
    let notify = config.ready == "notify" || config.watchdog_ms > 0;
    if notify || !config.health_check.is_empty() || !config.watch_paths.is_empty() {
        head(&mut out, "Readiness, health and watch");
        if notify {
            let mut ready = config.ready.clone();
            if config.ready == "notify" {
                ready.push_str(&format!(
                    " (READY=1 within {})",
                    render::human_delay_ms(config.ready_timeout_ms)
                ));
            }
            row(&mut out, "ready", &ready);
        }
        if config.watchdog_ms > 0 {
            row(
                &mut out,
                "watchdog",
                &format!(
                    "WATCHDOG=1 every {}",
                    render::human_delay_ms(config.watchdog_ms)
                ),
            );
        }
        if !config.health_check.is_empty() {
            row(&mut out, "health check", &config.health_check);
            row(&mut out, "health", &status.health);
            if !config.health_last_error.is_empty() {
                row(&mut out, "last failure", &config.health_last_error);
            }
        }
        if !config.watch_paths.is_empty() {
            row(&mut out, "watch", &config.watch_paths.join(", "));
            if !config.watch_ignore.is_empty() {
                row(&mut out, "ignore", &config.watch_ignore.join(", "));
            }
            row(
                &mut out,
                "watch delay",
                &render::human_delay_ms(config.watch_delay_ms),
            );
        }
    }
    head(&mut out, "Restart policy");
    row(&mut out, "autorestart", &config.autorestart);
    row(
        &mut out,
        "backoff",
        &format!(
            "{} × {} up to {}, reset after {} up",
            render::human_delay_ms(config.restart_delay_ms),
            config.restart_factor,
            render::human_delay_ms(config.restart_max_delay_ms),
            render::human_delay_ms(config.restart_reset_after_ms)
        ),
    );
    row(
        &mut out,
        "crash loop",
        &if config.crash_loop_max == 0 {
            "off".into()
        } else {
            format!(
                "{} crashes in {}",
                config.crash_loop_max,
                render::human_delay_ms(config.crash_loop_window_ms)
            )
        },
    );
    row(
        &mut out,
        "max restarts",
        &if config.max_restarts == 0 {
            "unlimited".into()
        } else {
            config.max_restarts.to_string()
        },
    );
    if !config.stop_exit_codes.is_empty() {
        let codes: Vec<String> = config
            .stop_exit_codes
            .iter()
            .map(ToString::to_string)
            .collect();
        row(&mut out, "stop exit codes", &codes.join(", "));
    }
    row(
        &mut out,
        "stop",
        &format!(
            "signal {}, SIGKILL after {}",
            config.stop_signal,
            render::human_delay_ms(config.kill_timeout_ms)
        ),
    );
    if config.kind == "oneshot" || !config.depends_on.is_empty() || !config.cron.is_empty() {
        head(&mut out, "Jobs, dependencies and schedule");
        row(&mut out, "type", &config.kind);
        if config.kind == "oneshot" {
            row(&mut out, "retries", &config.retries.to_string());
        }
        if !config.depends_on.is_empty() {
            row(&mut out, "depends on", &config.depends_on.join(", "));
            row(
                &mut out,
                "depends timeout",
                &render::human_delay_ms(config.depends_timeout_ms),
            );
            if config.restart_with_deps {
                row(&mut out, "restart with deps", "yes");
            }
        }
        if !config.cron.is_empty() {
            let zone = if config.timezone.is_empty() {
                "UTC"
            } else {
                &config.timezone
            };
            let mut what = format!("{} ({zone}), {}", config.cron, config.cron_action);
            if config.cron_action == "run" {
                let _ = write!(what, ", overlap {}", config.cron_overlap);
            }
            row(&mut out, "cron", &what);
        }
    }
    head(&mut out, "Logs");
    row(&mut out, "stdout", &status.out_log);
    row(&mut out, "stderr", &status.err_log);
    row(
        &mut out,
        "format",
        &format!(
            "{}, rotate at {}, keep {}",
            config.log_format,
            render::human_bytes(config.log_max_size),
            config.log_keep
        ),
    );
    head(&mut out, "Last crash");
    match records.first() {
        None => out.push_str("  none\n"),
        Some(r) => {
            let mut one = render_crashes(
                &status.name,
                &CrashStats::compute(std::slice::from_ref(r), 1, r.at_ms),
                std::slice::from_ref(r),
                opts,
            );
            // drop the stats line: describe has its own header
            if let Some(pos) = one.find('\n') {
                one = one[pos..].trim_start_matches('\n').to_owned();
            }
            for line in one.lines() {
                let _ = writeln!(out, "  {line}");
            }
            if records.len() > 1 {
                let _ = writeln!(
                    out,
                    "  ({} more: `turbo crashes {}`)",
                    records.len() - 1,
                    status.name
                );
            }
        }
    }
    out.trim_end().to_owned()
}

/// The `Privileges` rows of `describe`: who the app runs as and its limits, each either the
/// app's own or "inherited" from the daemon.
fn privilege_rows(config: &AppConfigInfo) -> Vec<(&'static str, String)> {
    const INHERITED: &str = "inherited from the daemon";
    let mut rows = Vec::new();
    if config.user.is_empty() {
        rows.push(("user", "the daemon's own".to_owned()));
    } else {
        rows.push(("user", format!("{} (uid {})", config.user, config.uid)));
        rows.push(("group", format!("{} (gid {})", config.group, config.gid)));
        let groups: Vec<String> = config
            .groups
            .iter()
            .map(|(name, gid)| {
                if *name == gid.to_string() {
                    name.clone()
                } else {
                    format!("{name} ({gid})")
                }
            })
            .collect();
        rows.push((
            "groups",
            if groups.is_empty() {
                "none".into()
            } else {
                groups.join(", ")
            },
        ));
    }
    rows.push((
        "umask",
        if config.umask.is_empty() {
            INHERITED.into()
        } else {
            config.umask.clone()
        },
    ));
    let limit = |v: u64| {
        if v == AppConfigInfo::UNLIMITED {
            "unlimited".to_owned()
        } else {
            v.to_string()
        }
    };
    let limits: Vec<String> = config
        .rlimits
        .iter()
        .map(|(name, soft, hard)| {
            if soft == hard {
                format!("{name} {}", limit(*soft))
            } else {
                format!("{name} {} (hard {})", limit(*soft), limit(*hard))
            }
        })
        .collect();
    rows.push((
        "rlimits",
        if limits.is_empty() {
            INHERITED.into()
        } else {
            limits.join(", ")
        },
    ));
    let set = |v: i32| {
        if v == AppConfigInfo::INHERITED {
            INHERITED.to_owned()
        } else {
            v.to_string()
        }
    };
    rows.push(("nice", set(config.nice)));
    rows.push(("oom_score_adj", set(config.oom_score_adj)));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> RenderOpts {
        RenderOpts {
            color: false,
            width: None,
        }
    }

    fn record(at_ms: u64, code: i32, signal: i32) -> CrashRecord {
        CrashRecord {
            at_ms,
            code,
            signal,
            reason: if signal > 0 { "signal" } else { "exit" }.into(),
            uptime_ms: 1500,
            restart_number: 2,
            memory_bytes: 3 << 20,
            memory_peak_bytes: 5 << 20,
            stderr_tail: vec!["boom".into()],
            source: "ebpf".into(),
            ..CrashRecord::default()
        }
    }

    #[test]
    fn timeline() {
        let records = [record(2000, -1, 9), record(1000, 3, 0)];
        let stats = CrashStats::compute(&records, 7, 3000);
        let text = render_crashes("api", &stats, &records, &plain());
        assert!(
            text.starts_with(
                "api: 7 crashes in all, 2 in the last hour, 2 in 24 h; one every 1s on average; most often: SIGKILL (1 of 2)\n\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "● 1970-01-01T00:00:02.000Z  signal 9 (SIGKILL)  after 1s  restart #2  mem 3.0 MB  peak 5.0 MB\n│ boom\n│\n● "
            ),
            "{text}"
        );
        assert!(
            text.contains("exit 3  after 1s"),
            "reason not repeated: {text}"
        );
        let later = render_timeline("api", &stats, &records, Some(302_000), &plain());
        assert!(later.contains(".000Z  5m ago  signal 9"), "{later}");
        let oom = CrashRecord {
            reason: "oom_kill".into(),
            ..record(5, -1, 9)
        };
        assert!(
            render_crashes("api", &stats, &[oom], &plain()).contains("(SIGKILL)  oom_kill  after"),
            "a reason that adds something is shown"
        );
        assert_eq!(
            render_crashes("x", &CrashStats::default(), &[], &plain()),
            "x has not crashed"
        );
    }

    #[test]
    fn most_often_names_the_code_or_signal() {
        let records = [
            record(5, 1, 0),
            record(4, -1, 11),
            record(3, 1, 0),
            record(2, 1, 0),
            record(1, 2, 0),
        ];
        let stats = CrashStats::compute(&records, 5, 10);
        let text = render_crashes("api", &stats, &records, &plain());
        assert!(
            text.lines()
                .next()
                .unwrap()
                .ends_with("most often: exit 1 (3 of 5)"),
            "{text}"
        );
        let segv = [record(2, -1, 11), record(1, -1, 11)];
        let text = render_crashes("api", &stats, &segv, &plain());
        assert!(
            text.lines()
                .next()
                .unwrap()
                .ends_with("most often: SIGSEGV (2 of 2)"),
            "{text}"
        );
        let one = [CrashRecord {
            reason: "oom_kill".into(),
            ..record(1, -1, 9)
        }];
        let text = render_crashes("api", &stats, &one, &plain());
        assert!(
            text.lines()
                .next()
                .unwrap()
                .ends_with("most often: oom_kill"),
            "{text}"
        );
        assert_eq!(cause(&record(1, -1, 40)), "signal 40");
    }

    #[test]
    fn app_text_is_escaped() {
        let hostile = CrashRecord {
            stderr_tail: vec!["\u{1b}]52;c;ZXZpbA==\u{7}\u{1b}[2J".into()],
            detail: "health: \u{1b}]0;title\u{7}".into(),
            signal_sender_pid: 7,
            signal_sender_comm: "k\u{1b}[31m".into(),
            ..record(5, -1, 9)
        };
        let text = render_crashes(
            "api",
            &CrashStats::default(),
            std::slice::from_ref(&hostile),
            &plain(),
        );
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(text.contains(r"│ \x1b]52;c;ZXZpbA==\x07\x1b[2J"), "{text}");
        assert!(text.contains(r"sent by k\x1b[31m (7)"), "{text}");
        let status = AppStatus {
            name: "api".into(),
            status_text: "ready\u{1b}[2J".into(),
            argv: vec!["sh".into(), "-c".into(), "echo\u{9b}2J".into()],
            ..AppStatus::default()
        };
        let config = AppConfigInfo {
            health_check: "cmd".into(),
            health_last_error: "secret\u{1b}]0;x\u{7}".into(),
            ..AppConfigInfo::default()
        };
        let text = render_describe(&status, &config, &[hostile], &plain());
        assert!(
            !text.chars().any(|c| c != '\n' && c.is_control()),
            "{text:?}"
        );
        for shown in [r"ready\x1b[2J", r"echo\u{9b}2J", r"secret\x1b]0;x\x07"] {
            assert!(text.contains(shown), "{shown} missing:\n{text}");
        }
    }

    #[test]
    fn describe_sections() {
        let status = AppStatus {
            name: "api".into(),
            state: "online".into(),
            pid: 42,
            argv: vec!["/bin/sleep".into(), "9".into()],
            ..AppStatus::default()
        };
        let config = AppConfigInfo {
            autorestart: "always".into(),
            env_names: vec!["TOKEN".into()],
            restart_factor: 2.0,
            crash_loop_max: 5,
            ..AppConfigInfo::default()
        };
        let text = render_describe(&status, &config, &[record(5, 1, 0)], &plain());
        for section in ["State", "Command", "Restart policy", "Logs", "Last crash"] {
            assert!(text.contains(section), "{section} missing:\n{text}");
        }
        assert!(text.contains("TOKEN (values hidden)"), "{text}");
        assert!(text.contains("exit 1"), "{text}");
        assert!(text.contains("Privileges"), "{text}");
        assert!(text.contains("user            the daemon's own"), "{text}");
        assert!(
            text.contains("nice            inherited from the daemon"),
            "{text}"
        );
    }

    #[test]
    fn describe_privileges() {
        let config = AppConfigInfo {
            user: "www".into(),
            uid: 33,
            group: "www".into(),
            gid: 33,
            groups: vec![("www".into(), 33), ("4000".into(), 4000)],
            umask: "0027".into(),
            rlimits: vec![
                ("nofile".into(), 1024, 4096),
                (
                    "core".into(),
                    AppConfigInfo::UNLIMITED,
                    AppConfigInfo::UNLIMITED,
                ),
            ],
            nice: 5,
            oom_score_adj: -100,
            ..AppConfigInfo::default()
        };
        let text = render_describe(&AppStatus::default(), &config, &[], &plain());
        for line in [
            "user            www (uid 33)",
            "group           www (gid 33)",
            "groups          www (33), 4000",
            "umask           0027",
            "rlimits         nofile 1024 (hard 4096), core unlimited",
            "nice            5",
            "oom_score_adj   -100",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }
}
