//! `status` CLI latency with 10 and 100 apps (issue 10): `turbo status` against `pm2 jlist`,
//! `pm2 ls` and `supervisorctl status`, each the whole command as a user runs it (process
//! start, connecting, asking the daemon, printing), with every manager holding the same apps.

use std::process::Command;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::bench::fleet::{sleep_apps, wait_running};
use crate::bench::managers::{CLI_LIMIT, Kind, Manager};
use crate::bench::process::{exec_any, last_lines};
use crate::bench::{Env, Metric, Outcome, Row, Target, Unit, sys};

pub const METRIC: Metric = Metric {
    id: "status",
    title: "status CLI latency with 10 and 100 apps",
    run,
};

/// App counts.
const SIZES: [usize; 2] = [10, 100];
/// Calls of each command before the measured ones (caches, first connection).
const WARMUP: usize = 2;
/// The target: `turbo status` at most this fraction of the fastest peer command.
const VS_BEST_PEER: f64 = 1.0 / 20.0;
/// The TurboProcess command the target is about (the table, as `pm2 ls` and
/// `supervisorctl status` print one).
const TURBO_STATUS: &str = "turbo status";

/// One command under measurement.
struct Subject {
    kind: Kind,
    /// e.g. `pm2 jlist`.
    what: String,
    cmd: Command,
    row: Row,
}

fn label(what: &str, apps: usize) -> String {
    format!("{what}, {apps} apps")
}

fn run(env: &mut Env<'_>) -> Result<Outcome> {
    let calls = if env.quick { 6 } else { 20 };
    let mut rows = Vec::new();
    let mut transcripts = Vec::new();
    let mut targets = Vec::new();
    let mut ratios = Vec::new();
    for apps in SIZES {
        sys::check_interrupted()?;
        println!("status latency with {apps} apps: {calls} calls of each command");
        let mut mgrs: Vec<Box<dyn Manager>> = Vec::new();
        let mut subjects = Vec::new();
        let measured = size(env, apps, calls, &mut mgrs, &mut subjects);
        for m in &mut mgrs {
            if let Err(e) = m.shutdown() {
                eprintln!("  {}: {e:#}", m.kind().label());
            }
            if apps == SIZES[SIZES.len() - 1] {
                transcripts.push((m.kind().label().to_owned(), m.transcript().to_vec()));
            }
        }
        drop(mgrs);
        measured?;
        let turbo = label(TURBO_STATUS, apps);
        let peers: Vec<String> = subjects
            .iter()
            .filter(|s| s.kind != Kind::Turbo)
            .map(|s| s.row.subject.clone())
            .collect();
        for peer in &peers {
            ratios.push((turbo.clone(), peer.clone()));
        }
        rows.extend(subjects.into_iter().map(|s| s.row));
        targets.push(target(&rows, &turbo, &peers, apps));
    }
    Ok(Outcome {
        unit: Unit::Millis,
        method: vec![
            format!(
                "Each manager gets a fresh daemon holding the same apps (`sleep 100000`, no \
                 restart), started from one configuration file; once the manager reports them \
                 all running, every command below is run in rounds, {WARMUP} warm-up rounds \
                 then {calls} measured ones, each round starting with a different command. One \
                 sample is the wall time of the whole command as a user runs it (process start, \
                 connecting to the daemon, the answer, printing it into a pipe), and its output \
                 is checked to list the last app."
            ),
            "Commands: `turbo status` (the table, with CPU and memory read from /proc for each \
             app) and `turbo status --json`; `pm2 jlist` (JSON) and `pm2 ls` (the table); \
             `supervisorctl status`. The target compares `turbo status` with the fastest of \
             the peers' commands."
                .to_owned(),
        ],
        params: vec![
            (
                "app counts".to_owned(),
                SIZES.map(|n| n.to_string()).join(", "),
            ),
            ("measured calls per command".to_owned(), calls.to_string()),
            ("warm-up calls".to_owned(), WARMUP.to_string()),
        ],
        extra_columns: vec![],
        rows,
        ratios,
        targets,
        transcripts,
        notes: vec![
            "PM2's CLI is a Node.js program and supervisorctl a Python one: most of their time \
             is the interpreter starting, which a user pays on every call too."
                .to_owned(),
            "Where the time goes (the reason when a size misses): the fixed part of `turbo \
             status` is the CLI process starting, the D-Bus handshake and the round trips \
             through the private dbus-daemon; on top of it each app costs the daemon two \
             `/proc` reads (`stat` and `children`, kept open and re-read with `pread`), a \
             larger reply for zbus to serialise and the dbus-daemon to copy, and a table row \
             for the CLI. Making `ListApps` cheaper per app (a smaller reply, fewer reads) is \
             what is left to do."
                .to_owned(),
        ],
    })
}

/// One size: the three daemons with `apps` apps each, then the rounds of calls.
fn size(
    env: &mut Env<'_>,
    apps: usize,
    calls: usize,
    mgrs: &mut Vec<Box<dyn Manager>>,
    subjects: &mut Vec<Subject>,
) -> Result<()> {
    let sleep = env.tools.sleep.clone();
    let list = sleep_apps("s", apps, &sleep);
    for kind in Kind::ALL {
        let started = Instant::now();
        let mut m = env.launch_with(kind, "status", &format!("{}-{apps}", kind.key()), &[])?;
        m.start_all("status", &list)?;
        wait_running(env, m.as_mut(), apps, &sleep)?;
        println!(
            "  {}: {apps} apps running after {:.1}s",
            kind.label(),
            started.elapsed().as_secs_f64()
        );
        for (what, cmd) in m.status_commands() {
            subjects.push(Subject {
                kind,
                row: Row {
                    subject: label(&what, apps),
                    samples: Vec::new(),
                    extra: vec![],
                    error: None,
                },
                what,
                cmd,
            });
        }
        mgrs.push(m);
    }
    let last_app = format!("s{:04}", apps - 1);
    let n = subjects.len();
    for round in 0..WARMUP + calls {
        for j in 0..n {
            sys::check_interrupted()?;
            let s = &mut subjects[(round + j) % n];
            let t = Instant::now();
            let out = exec_any(&mut s.cmd, CLI_LIMIT)?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            // supervisorctl exits with 3 when any program is not running: judge it by its output
            let ok = out.status.success() || s.kind == Kind::Supervisord;
            if !ok || !out.stdout.contains(&last_app) {
                bail!(
                    "`{}` ({}) did not list {last_app}: {}",
                    s.what,
                    out.status,
                    last_lines(&format!("{}\n{}", out.stdout, out.stderr), 4)
                );
            }
            if round >= WARMUP {
                s.row.samples.push(ms);
            }
        }
    }
    for s in subjects.iter() {
        if let Some(x) = crate::bench::stats::Summary::of(&s.row.samples) {
            println!("  {}: median {:.1} ms (n={})", s.row.subject, x.median, x.n);
        }
    }
    Ok(())
}

/// `turbo status` against the fastest peer command at one size.
fn target(rows: &[Row], turbo: &str, peers: &[String], apps: usize) -> Target {
    let median = |subject: &str| {
        rows.iter()
            .find(|r| r.subject == subject)
            .and_then(|r| crate::bench::stats::Summary::of(&r.samples))
            .map(|s| s.median)
    };
    let best = peers
        .iter()
        .filter_map(|p| Some((p.as_str(), median(p)?)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let value = match (median(turbo), best) {
        (Some(t), Some((_, b))) if b > 0.0 => Some(t / b),
        _ => None,
    };
    Target {
        what: format!(
            "status latency with {apps} apps, `turbo status` / the fastest peer command (medians)"
        ),
        value,
        limit: VS_BEST_PEER,
        shown: match (value, median(turbo), best) {
            (Some(r), Some(t), Some((name, b))) => {
                format!("{r:.3} ({t:.1} ms / {b:.0} ms for {name})")
            }
            _ => "not measured".to_owned(),
        },
        limit_shown: "≤ 1/20 (0.05)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(subject: &str, samples: &[f64]) -> Row {
        Row {
            subject: subject.to_owned(),
            samples: samples.to_vec(),
            extra: vec![],
            error: None,
        }
    }

    #[test]
    fn the_target_takes_the_fastest_peer() {
        let rows = [
            row("turbo status, 10 apps", &[4.0, 5.0, 6.0]),
            row("pm2 jlist, 10 apps", &[150.0, 160.0, 170.0]),
            row("supervisorctl status, 10 apps", &[100.0, 100.0, 100.0]),
        ];
        let peers = ["pm2 jlist, 10 apps", "supervisorctl status, 10 apps"].map(str::to_owned);
        let t = target(&rows, "turbo status, 10 apps", &peers, 10);
        assert_eq!(t.value, Some(0.05));
        assert!(t.met());
        assert!(t.shown.contains("supervisorctl status"), "{}", t.shown);
        let none = target(&rows[1..], "turbo status, 10 apps", &peers, 10);
        assert_eq!(none.value, None);
        assert!(!none.met());
    }
}
