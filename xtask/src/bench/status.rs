//! `status` CLI latency with 10, 100 and 1000 apps (issues 10 and 21): `turbo status` against
//! `pm2 jlist`, `pm2 ls` and `supervisorctl status`, each the whole command as a user runs it
//! (process start, connecting, asking the daemon, printing), with every manager holding the
//! same apps; `turbo ping` beside them as the floor (the same CLI doing one trivial call), and
//! at the largest size a burst of concurrent `turbo status --json` clients.

use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::bench::fleet::{sleep_apps, wait_running};
use crate::bench::managers::{CLI_LIMIT, Kind, Manager};
use crate::bench::process::{exec_any, last_lines};
use crate::bench::stats::{Summary, quantile};
use crate::bench::{Env, Metric, Outcome, Row, Target, Unit, sys};

pub const METRIC: Metric = Metric {
    id: "status",
    title: "status CLI latency with 10, 100 and 1000 apps",
    run,
};

/// App counts.
const SIZES: [usize; 3] = [10, 100, 1000];
/// From this many apps on, TurboProcess alone: `supervisorctl update` of 1000 programs outlasts
/// the bench's 60 s command limit on a busy machine, and the idle metric runs 1000 apps for
/// TurboProcess alone too. Those sizes are compared with the peers' largest measured size.
const PEERS_UP_TO: usize = 100;
/// Calls of each command before the measured ones (caches, first connection).
const WARMUP: usize = 2;
/// The target: `turbo status` at most this fraction of the fastest peer command.
const VS_BEST_PEER: f64 = 1.0 / 30.0;
/// The target: `turbo status` with the most apps at most this multiple of the fewest.
const FLAT: f64 = 2.0;
/// Concurrent `turbo status --json` clients in one burst, at the largest size.
const CLIENTS: usize = 100;
/// The target: the burst's p95 at most this multiple of one client alone (median).
const CONCURRENT_VS_ONE: f64 = 10.0;
/// The TurboProcess command the target is about (the table, as `pm2 ls` and
/// `supervisorctl status` print one).
const TURBO_STATUS: &str = "turbo status";
/// The JSON variant, which the concurrent clients run.
const TURBO_JSON: &str = "turbo status --json";
/// The floor: the same CLI, connecting and making one trivial call.
const TURBO_FLOOR: &str = "turbo ping";

/// One command under measurement.
struct Subject {
    kind: Kind,
    /// e.g. `pm2 jlist`.
    what: String,
    cmd: Command,
    /// Prints no app list (the floor): judged by its exit status alone.
    floor: bool,
    row: Row,
}

fn label(what: &str, apps: usize) -> String {
    format!("{what}, {apps} apps")
}

fn run(env: &mut Env<'_>) -> Result<Outcome> {
    let calls = if env.quick { 6 } else { 20 };
    let bursts = if env.quick { 1 } else { 3 };
    let mut rows = Vec::new();
    let mut transcripts = Vec::new();
    let mut targets = Vec::new();
    let mut ratios = Vec::new();
    let mut notes = Vec::new();
    let largest = SIZES[SIZES.len() - 1];
    let mut peers: Vec<String> = Vec::new();
    // CPU time of one burst client on average (ms), for the burst's floor note
    let mut client_cpu = None;
    for apps in SIZES {
        sys::check_interrupted()?;
        println!("status latency with {apps} apps: {calls} calls of each command");
        let mut mgrs: Vec<Box<dyn Manager>> = Vec::new();
        let mut subjects = Vec::new();
        let mut measured = size(env, apps, calls, &mut mgrs, &mut subjects);
        if measured.is_ok() && apps == largest {
            measured = burst(&mut subjects, apps, bursts).map(|(row, cpu)| {
                rows.push(row);
                client_cpu = cpu;
            });
        }
        for m in &mut mgrs {
            if let Err(e) = m.shutdown() {
                eprintln!("  {}: {e:#}", m.kind().label());
            }
            if apps == largest {
                transcripts.push((m.kind().label().to_owned(), m.transcript().to_vec()));
            }
        }
        drop(mgrs);
        measured?;
        let turbo = label(TURBO_STATUS, apps);
        if apps <= PEERS_UP_TO {
            peers = subjects
                .iter()
                .filter(|s| s.kind != Kind::Turbo)
                .map(|s| s.row.subject.clone())
                .collect();
        }
        for peer in &peers {
            ratios.push((turbo.clone(), peer.clone()));
        }
        rows.extend(subjects.into_iter().map(|s| s.row));
        notes.push(floor_note(&rows, apps));
        targets.push(target(&rows, &turbo, &peers, apps));
    }
    targets.push(flat_target(&rows));
    targets.push(burst_target(&rows, largest));
    notes.push(burst_floor_note(&rows, largest, client_cpu));
    notes.extend([
        "PM2's CLI is a Node.js program and supervisorctl a Python one: most of their time \
         is the interpreter starting, which a user pays on every call too."
            .to_owned(),
        "Where the time goes: the floor (`turbo ping`) is the CLI process starting, connecting \
         to the private bus (authentication, `Hello`) and one round trip through the \
         dbus-daemon; `status` adds one `ListApps` call and one property read (sent together), \
         the daemon's reply (a list built by its loop, per app two `/proc` reads, `stat` and \
         `children`, kept open and re-read with `pread`; one list answers every call while \
         nothing changes, for up to 500 ms, so most calls only serialise it), the dbus-daemon \
         copying it (about 0.8 KB per app), and the CLI decoding and printing it. A profile at \
         1000 apps before issue 21's last round (release build, `perf record`, CPU per call): \
         the CLI 18.5 ms for `status --json`, most of it building and printing a JSON tree, \
         and 20 ms for the table, a quarter of it labelling instances by comparing every name \
         with every other (both gone since); the daemon 11 ms, the dbus-daemon 2.5 ms."
            .to_owned(),
        "Where the rest goes (the reason when a target is missed), profiled after issue 21's \
         last round at 1,000 apps (release build, `perf stat` and `perf record` over 30-40 \
         calls, loaded 2-core machine): the CLI used 3.1-4.2 ms of CPU per `turbo status` \
         (the floor `turbo ping` 1.1-2.0 ms), the rest spread over decoding the rows \
         (zvariant, a few percent per function), the zeroed buffer the reply is read into \
         (its page faults) and the table's layout; the daemon about 3.7 ms per call, \
         averaged over calls served from the shared list and the list's rebuilds every \
         500 ms (per-app `/proc` reads, about an eighth), most of it zbus serialising the \
         rows at opt-level \"z\" (sized in one pass, written in a second, each field a call); \
         the dbus-daemon 1.7 ms copying the reply through. The three run one after another \
         for each call. Reaching 1/30 of supervisorctl would need the reply's bytes built once per list \
         (kept with the shared list and sent as a raw body) and fewer bytes per row."
            .to_owned(),
    ]);
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
             the peers' commands. `turbo ping` (connect, one trivial call, print the version) \
             is the floor any `turbo` command pays; the notes give `turbo status` as floor + \
             the rest."
                .to_owned(),
            format!(
                "PM2 and supervisord hold at most {PEERS_UP_TO} apps here (`supervisorctl \
                 update` of 1000 programs outlasts the 60 s command limit on a busy machine): \
                 above that, TurboProcess is compared with the peers' commands at {PEERS_UP_TO} \
                 apps, which can only flatter the peers, since their time grows with the apps."
            ),
            format!(
                "Concurrent clients, with {largest} apps, TurboProcess only: {bursts} bursts of \
                 {CLIENTS} `turbo status --json` started at once (released together from a \
                 barrier, each from its own thread of the harness); one sample is one client's \
                 wall time, and its output must list the last app. The target compares the \
                 burst's 95th percentile with the median of `turbo status --json` alone at the \
                 same size. The machine's cores are shared by all the clients, so a burst \
                 measures the daemon's serialisation points and the CPU the clients need."
            ),
        ],
        params: vec![
            (
                "app counts".to_owned(),
                SIZES.map(|n| n.to_string()).join(", "),
            ),
            ("measured calls per command".to_owned(), calls.to_string()),
            ("warm-up calls".to_owned(), WARMUP.to_string()),
            (
                "concurrent clients".to_owned(),
                format!("{CLIENTS} per burst, {bursts} bursts, {largest} apps"),
            ),
        ],
        extra_columns: vec![],
        rows,
        ratios,
        targets,
        transcripts,
        notes,
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
    let kinds: &[Kind] = if apps <= PEERS_UP_TO {
        &Kind::ALL
    } else {
        &[Kind::Turbo]
    };
    for &kind in kinds {
        let started = Instant::now();
        let mut m = env.launch_with(kind, "status", &format!("{}-{apps}", kind.key()), &[])?;
        m.start_all("status", &list)?;
        wait_running(env, m.as_mut(), apps, &sleep)?;
        println!(
            "  {}: {apps} apps running after {:.1}s",
            kind.label(),
            started.elapsed().as_secs_f64()
        );
        let floor = m.floor_command().into_iter().map(|c| (c, true));
        let listing = m.status_commands().into_iter().map(|c| (c, false));
        for ((what, cmd), floor) in listing.chain(floor) {
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
                floor,
            });
        }
        mgrs.push(m);
    }
    let last_app = last_app(apps);
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
            if !ok || !(s.floor || out.stdout.contains(&last_app)) {
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
        if let Some(x) = Summary::of(&s.row.samples) {
            println!("  {}: median {:.1} ms (n={})", s.row.subject, x.median, x.n);
        }
    }
    Ok(())
}

fn last_app(apps: usize) -> String {
    format!("s{:04}", apps - 1)
}

/// CPU time (user + system) of the harness's children it has waited for, in ms, from
/// `/proc/self/stat` (`cutime` and `cstime`, in clock ticks).
fn children_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // the fields after the command name, which is in parentheses and may hold spaces
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // cutime and cstime are fields 16 and 17 of the line, 14 and 15 of the rest
    let ticks = fields.get(13)?.parse::<u64>().ok()? + fields.get(14)?.parse::<u64>().ok()?;
    let hz = rustix::param::clock_ticks_per_second();
    #[expect(
        clippy::cast_precision_loss,
        reason = "the ticks of a bench run fit an f64"
    )]
    Some(ticks as f64 * 1e3 / hz as f64)
}

/// `bursts` times [`CLIENTS`] concurrent runs of the `turbo status --json` subject; with the
/// clients' mean CPU time (ms), when it could be read.
fn burst(subjects: &mut [Subject], apps: usize, bursts: usize) -> Result<(Row, Option<f64>)> {
    let what = label(TURBO_JSON, apps);
    let Some(s) = subjects.iter_mut().find(|s| s.row.subject == what) else {
        bail!("no `{TURBO_JSON}` subject to run concurrently");
    };
    let last = last_app(apps);
    let mut row = Row {
        subject: format!("{TURBO_JSON}, {CLIENTS} concurrent clients, {apps} apps"),
        samples: Vec::new(),
        extra: vec![],
        error: None,
    };
    let cpu_before = children_cpu_ms();
    for _ in 0..bursts {
        sys::check_interrupted()?;
        let gate = Arc::new(Barrier::new(CLIENTS));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let mut cmd = clone_command(&s.cmd);
                let gate = Arc::clone(&gate);
                thread::spawn(move || {
                    gate.wait();
                    let t = Instant::now();
                    let out = exec_any(&mut cmd, CLI_LIMIT);
                    (t.elapsed().as_secs_f64() * 1e3, out)
                })
            })
            .collect();
        for client in clients {
            let Ok((ms, out)) = client.join() else {
                bail!("a concurrent client's thread panicked");
            };
            let out = out?;
            if !out.status.success() || !out.stdout.contains(&last) {
                bail!(
                    "a concurrent `{TURBO_JSON}` ({}) did not list {last}: {}",
                    out.status,
                    last_lines(&format!("{}\n{}", out.stdout, out.stderr), 4)
                );
            }
            row.samples.push(ms);
        }
    }
    if let Some(x) = Summary::of(&row.samples) {
        println!(
            "  {}: median {:.1} ms, max {:.1} ms (n={})",
            row.subject, x.median, x.max, x.n
        );
    }
    #[expect(clippy::cast_precision_loss, reason = "a few hundred clients")]
    let cpu = match (cpu_before, children_cpu_ms()) {
        (Some(a), Some(b)) if b > a => Some((b - a) / (bursts * CLIENTS) as f64),
        _ => None,
    };
    Ok((row, cpu))
}

/// How fast the burst could be at best here: [`CLIENTS`] clients need their CPU time on the
/// machine's cores, so the last ones cannot finish before that time divided by the cores.
fn burst_floor_note(rows: &[Row], apps: usize, client_cpu: Option<f64>) -> String {
    let cores = thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let one = median(rows, &label(TURBO_JSON, apps));
    let (Some(cpu), Some(one)) = (client_cpu, one) else {
        return "The burst's floor was not measured (no burst, or the clients' CPU time could \
                not be read)."
            .to_owned();
    };
    #[expect(clippy::cast_precision_loss, reason = "small counts")]
    let (clients, cores_f) = (CLIENTS as f64, cores as f64);
    let floor = cpu * clients / cores_f;
    let verdict = if floor > CONCURRENT_VS_ONE * one {
        format!(
            "above the target's {CONCURRENT_VS_ONE}× before the daemon or the bus does \
             anything, so out of reach on {cores} cores however cheap the daemon's answer (it \
             would take about {:.0} cores, or clients that need less CPU)",
            (cpu * clients / (CONCURRENT_VS_ONE * one)).ceil()
        )
    } else {
        "within the target: what the burst takes beyond it is queueing in the daemon or the bus"
            .to_owned()
    };
    format!(
        "The burst's floor here: each `{TURBO_JSON}` client used {cpu:.1} ms of CPU on average \
         (its own process only, from the harness's children's CPU time; the daemon's and the \
         dbus-daemon's come on top), so {CLIENTS} of them on {cores} cores cannot all be done \
         before {floor:.0} ms, {:.1}× one client alone ({one:.1} ms): {verdict}.",
        floor / one
    )
}

/// The same program, arguments and environment (`Command` is not `Clone`).
fn clone_command(cmd: &Command) -> Command {
    let mut copy = Command::new(cmd.get_program());
    copy.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => copy.env(k, v),
            None => copy.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        copy.current_dir(dir);
    }
    copy
}

fn median(rows: &[Row], subject: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.subject == subject)
        .and_then(|r| Summary::of(&r.samples))
        .map(|s| s.median)
}

/// `turbo status` as the floor plus the rest, at one size.
fn floor_note(rows: &[Row], apps: usize) -> String {
    let status = median(rows, &label(TURBO_STATUS, apps));
    let json = median(rows, &label(TURBO_JSON, apps));
    let floor = median(rows, &label(TURBO_FLOOR, apps));
    match (status, json, floor) {
        (Some(s), Some(j), Some(f)) => format!(
            "With {apps} apps: `turbo status` = floor {f:.2} ms + {:.2} ms; `turbo status \
             --json` = floor + {:.2} ms (medians; the floor is `turbo ping`).",
            s - f,
            j - f
        ),
        _ => format!("With {apps} apps: the floor or a status command was not measured."),
    }
}

/// `turbo status` with the most apps against the fewest.
fn flat_target(rows: &[Row]) -> Target {
    let (few, many) = (SIZES[0], SIZES[SIZES.len() - 1]);
    let a = median(rows, &label(TURBO_STATUS, few));
    let b = median(rows, &label(TURBO_STATUS, many));
    let value = match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => Some(b / a),
        _ => None,
    };
    Target {
        what: format!(
            "status flat in the number of apps, `turbo status` with {many} apps / with {few} apps (medians)"
        ),
        value,
        limit: FLAT,
        shown: match (value, a, b) {
            (Some(r), Some(a), Some(b)) => format!("{r:.2} ({b:.1} ms / {a:.1} ms)"),
            _ => "not measured".to_owned(),
        },
        limit_shown: format!("≤ {FLAT}"),
    }
}

/// The concurrent clients' p95 against one client alone, at `apps`.
fn burst_target(rows: &[Row], apps: usize) -> Target {
    let one = median(rows, &label(TURBO_JSON, apps));
    let subject = format!("{TURBO_JSON}, {CLIENTS} concurrent clients, {apps} apps");
    let p95 = rows.iter().find(|r| r.subject == subject).and_then(|r| {
        let mut s: Vec<f64> = r.samples.iter().copied().filter(|v| !v.is_nan()).collect();
        s.sort_by(f64::total_cmp);
        (!s.is_empty()).then(|| quantile(&s, 0.95))
    });
    let value = match (p95, one) {
        (Some(p), Some(o)) if o > 0.0 => Some(p / o),
        _ => None,
    };
    Target {
        what: format!(
            "{CLIENTS} concurrent `{TURBO_JSON}` clients with {apps} apps, p95 / one client alone (median)"
        ),
        value,
        limit: CONCURRENT_VS_ONE,
        shown: match (value, p95, one) {
            (Some(r), Some(p), Some(o)) => format!("{r:.1} ({p:.0} ms / {o:.1} ms)"),
            _ => "not measured".to_owned(),
        },
        limit_shown: format!("≤ {CONCURRENT_VS_ONE}×"),
    }
}

/// `turbo status` against the fastest peer command at one size.
fn target(rows: &[Row], turbo: &str, peers: &[String], apps: usize) -> Target {
    let median = |subject: &str| median(rows, subject);
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
        limit_shown: "≤ 1/30 (0.033)".to_owned(),
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
        assert!(!t.met(), "1/20 is above the 1/30 target");
        assert!(t.shown.contains("supervisorctl status"), "{}", t.shown);
        let none = target(&rows[1..], "turbo status, 10 apps", &peers, 10);
        assert_eq!(none.value, None);
        assert!(!none.met());
    }

    #[test]
    fn flat_and_burst_targets() {
        let burst: Vec<f64> = (1..=100).map(f64::from).collect();
        let rows = [
            row("turbo status, 10 apps", &[4.0, 4.0, 4.0]),
            row("turbo status, 1000 apps", &[10.0, 10.0, 10.0]),
            row("turbo status --json, 1000 apps", &[10.0, 10.0]),
            row(
                "turbo status --json, 100 concurrent clients, 1000 apps",
                &burst,
            ),
        ];
        let flat = flat_target(&rows);
        assert_eq!(flat.value, Some(2.5));
        assert!(!flat.met());
        let b = burst_target(&rows, 1000);
        let p95 = b.value.expect("measured") * 10.0;
        assert!((p95 - 95.05).abs() < 1e-9, "{p95}");
        assert!(b.met());
        assert_eq!(burst_target(&rows[..2], 1000).value, None);
    }
}
