//! Restart latency after `kill -9`, with the restart delay set to 0 (issue 3, issue 10).
//!
//! The app is `examples/bench/stamp.c`: first thing on start it reads `CLOCK_MONOTONIC` and
//! writes `<pid> <ns>` to a file. The harness reads the same clock just before
//! `kill(pid, SIGKILL)`; the latency of one restart is the new process's stamp minus that
//! time: everything from the kill to the replacement running its first instruction, so the
//! manager's exit detection, its restart decision and its spawn, and nothing of an interpreter.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::bench::json::Json;
use crate::bench::managers::{App, Kind, Manager, Restart};
use crate::bench::{Env, Metric, Outcome, Row, Target, Unit, sys};

pub const METRIC: Metric = Metric {
    id: "restart",
    title: "Restart latency after kill -9 (restart delay 0)",
    run,
};

/// Kills before the measured ones (caches, lazy initialisation in the managers).
const WARMUP: usize = 2;
/// Pause between a restart and the next kill, so the manager has finished its bookkeeping.
const SETTLE: Duration = Duration::from_millis(300);
/// Longest wait for one restart (supervisord needs about 1 s by design).
const PER_KILL: Duration = Duration::from_secs(5);
/// Longest wait for the first start.
const FIRST_START: Duration = Duration::from_secs(15);
/// The target: TurboProcess's median at most this fraction of PM2's.
const VS_PM2: f64 = 1.0 / 3.0;

fn run(env: &mut Env<'_>) -> Result<Outcome> {
    let iterations = if env.quick { 10 } else { 30 };
    let mut rows = Vec::new();
    let mut transcripts = Vec::new();
    for kind in Kind::ALL {
        println!(
            "restart latency under {} ({iterations} kills)",
            kind.label()
        );
        let mut row = Row {
            subject: kind.label().to_owned(),
            samples: Vec::new(),
            extra: vec![Json::from(0_usize), Json::from(0_u64)],
            error: None,
        };
        let mut transcript = Vec::new();
        if let Err(e) = measure(env, kind, iterations, &mut row, &mut transcript) {
            eprintln!("  {}: {e:#}", kind.label());
            row.error = Some(format!("{e:#}"));
        }
        sys::check_interrupted()?;
        if let Some(s) = crate::bench::stats::Summary::of(&row.samples) {
            println!(
                "  {}: median {:.2} ms, min {:.2} ms, p90 {:.2} ms (n={})",
                kind.label(),
                s.median,
                s.min,
                s.p90,
                s.n
            );
        }
        rows.push(row);
        transcripts.push((kind.label().to_owned(), transcript));
    }
    let mut outcome = Outcome {
        unit: Unit::Millis,
        method: vec![
            "The app is `examples/bench/stamp.c` (compiled with `cc -O2`): first thing on \
             start it reads `CLOCK_MONOTONIC` and writes `<pid> <ns>` to a file (temporary file \
             + rename), then sleeps. The harness reads the same clock just before \
             `kill(pid, SIGKILL)` and polls the file for a new pid; one sample is the new \
             process's stamp minus the kill time. That covers the manager's exit detection, its \
             restart decision and the spawn up to the new program's first instruction; C rather \
             than Python so that an interpreter's 15-30 ms start-up does not hide the managers' \
             differences."
                .to_owned(),
            format!(
                "Per manager: one fresh daemon, one app, {WARMUP} warm-up kills (not counted), \
                 then the measured kills, each {} ms after the previous restart; a restart not \
                 seen within {} s counts as a time-out. Before each kill the pid is checked to \
                 be the stamp program; after the loop the manager's own view of the pid \
                 (`turbo status --json`, `pm2 jlist`, `supervisorctl pid`) must match the last \
                 stamp.",
                SETTLE.as_millis(),
                PER_KILL.as_secs()
            ),
            "Configuration: TurboProcess `autorestart: always` and `restart: { delay: 0, \
             factor: 1, crash_loop: { max: 0 } }`; PM2 `autorestart: true`, `restart_delay: 0` \
             (and a high `max_restarts`, since PM2 counts quick deaths as unstable restarts); \
             supervisord `autorestart=true`, `startsecs=0`. The daemons run with their \
             defaults otherwise."
                .to_owned(),
        ],
        params: vec![
            (
                "measured kills per manager".to_owned(),
                iterations.to_string(),
            ),
            ("warm-up kills".to_owned(), WARMUP.to_string()),
            (
                "pause between restart and next kill".to_owned(),
                format!("{} ms", SETTLE.as_millis()),
            ),
            (
                "wait cap per restart".to_owned(),
                format!("{} s", PER_KILL.as_secs()),
            ),
        ],
        extra_columns: vec!["time-outs".to_owned(), "restarts seen".to_owned()],
        rows,
        ratios: vec![
            ("TurboProcess".to_owned(), "PM2".to_owned()),
            ("TurboProcess".to_owned(), "supervisord".to_owned()),
        ],
        targets: Vec::new(),
        transcripts,
        notes: vec![
            "supervisord checks its children once per pass of its main loop, which waits up \
             to 1 s, so about 1 s is expected from it by design."
                .to_owned(),
        ],
    };
    let ratio = outcome.ratio("TurboProcess", "PM2");
    let med = |s: &str| outcome.summary(s).map(|s| s.median);
    outcome.targets.push(Target {
        what: "restart latency after kill -9, TurboProcess / PM2 (medians)".to_owned(),
        value: ratio,
        limit: VS_PM2,
        shown: match (ratio, med("TurboProcess"), med("PM2")) {
            (Some(r), Some(t), Some(p)) => format!("{r:.3} ({t:.2} ms / {p:.2} ms)"),
            _ => "not measured".to_owned(),
        },
        limit_shown: "≤ 1/3 (0.333)".to_owned(),
    });
    Ok(outcome)
}

/// Kills and restarts under one manager, filling `row`; `transcript` gets the commands used.
fn measure(
    env: &mut Env<'_>,
    kind: Kind,
    iterations: usize,
    row: &mut Row,
    transcript: &mut Vec<String>,
) -> Result<()> {
    let dir = env.dir("restart", kind.key())?;
    let stamp_file = dir.join("stamp.txt");
    let stamp = env.tools.stamp.clone();
    let mut mgr = env.launch(kind, "restart")?;
    let result = kill_loop(env, mgr.as_mut(), &stamp, &stamp_file, iterations, row);
    let removed = mgr.remove("stamp");
    let down = mgr.shutdown();
    *transcript = mgr.transcript().to_vec();
    result?;
    removed?;
    down
}

fn kill_loop(
    env: &mut Env<'_>,
    mgr: &mut dyn Manager,
    stamp: &Path,
    stamp_file: &Path,
    iterations: usize,
    row: &mut Row,
) -> Result<()> {
    let app = App {
        name: "stamp".to_owned(),
        argv: vec![
            stamp.display().to_string(),
            stamp_file.display().to_string(),
        ],
        restart: Restart::Immediately,
    };
    mgr.start(&app)?;
    let Some((mut pid, _)) = wait_stamp(stamp_file, None, FIRST_START)? else {
        bail!("the app did not start within {FIRST_START:?}");
    };
    env.watch_pid(pid, stamp);
    check_pid(mgr, pid)?;
    let mut timeouts = 0_usize;
    let mut restarts = 0_u64;
    for i in 0..WARMUP + iterations {
        thread::sleep(SETTLE);
        sys::check_interrupted()?;
        if !sys::runs(pid, stamp) {
            bail!("pid {pid} is no longer the stamp program; something else restarted it");
        }
        let t0 = sys::mono_ns();
        sys::send_signal(pid, sys::SIGKILL)?;
        let found = match wait_stamp(stamp_file, Some(pid), PER_KILL)? {
            Some(found) => Some(found),
            None => {
                timeouts += 1;
                // late is still useful to know; give it one more chance to come back
                wait_stamp(stamp_file, Some(pid), PER_KILL)?
            }
        };
        let Some((new_pid, ns)) = found else {
            bail!(
                "no restart within {:?} after kill {} (pid {pid})",
                PER_KILL * 2,
                i + 1
            );
        };
        restarts += 1;
        env.watch_pid(new_pid, stamp);
        if ns < t0 {
            bail!("the new process's stamp ({ns}) is older than the kill ({t0})");
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "nanosecond differences far below 2^53"
        )]
        let ms = (ns - t0) as f64 / 1e6;
        if i >= WARMUP && ms <= PER_KILL.as_secs_f64() * 1e3 {
            row.samples.push(ms);
        }
        pid = new_pid;
        row.extra = vec![Json::from(timeouts), Json::from(restarts)];
    }
    thread::sleep(SETTLE);
    check_pid(mgr, pid)
}

/// The manager must report `pid` for the app: proof that the stamps are its processes.
fn check_pid(mgr: &mut dyn Manager, pid: u32) -> Result<()> {
    let mut last = None;
    for _ in 0..20 {
        last = mgr.pid("stamp")?;
        if last == Some(pid) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "{} reports pid {last:?} for the app, but the stamp file says {pid}",
        mgr.kind().label()
    )
}

/// Polls the stamp file (every 0.5 ms) for a pid other than `old`, for at most `limit`.
fn wait_stamp(path: &Path, old: Option<u32>, limit: Duration) -> Result<Option<(u32, i64)>> {
    let limit_ns = i64::try_from(limit.as_nanos()).unwrap_or(i64::MAX);
    let deadline = sys::mono_ns().saturating_add(limit_ns);
    let mut polls = 0_u32;
    loop {
        if let Ok(text) = fs::read_to_string(path) {
            let stamp = parse_stamp(&text)
                .with_context(|| format!("{} holds `{}`", path.display(), text.trim()))?;
            if Some(stamp.0) != old {
                return Ok(Some(stamp));
            }
        }
        if sys::mono_ns() >= deadline {
            return Ok(None);
        }
        polls += 1;
        if polls.is_multiple_of(200) {
            sys::check_interrupted()?;
        }
        thread::sleep(Duration::from_micros(500));
    }
}

/// `<pid> <ns>\n` as written by stamp.c.
fn parse_stamp(text: &str) -> Result<(u32, i64)> {
    let mut it = text.split_whitespace();
    let (Some(pid), Some(ns), None) = (it.next(), it.next(), it.next()) else {
        bail!("not `<pid> <ns>`");
    };
    Ok((pid.parse()?, ns.parse()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_parse() {
        assert_eq!(parse_stamp("42 123456789\n").unwrap(), (42, 123_456_789));
        assert!(parse_stamp("42").is_err());
        assert!(parse_stamp("42 1 2").is_err());
        assert!(parse_stamp("x 1").is_err());
    }
}
