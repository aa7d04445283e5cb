//! Memory-limit reaction (issues 5 and 10): an app that grows by 10 MB every 100 ms under a
//! 200 MB limit; the time from its crossing the limit to its replacement running, and how far
//! it got. TurboProcess with its eBPF event source and with the procfs fallback
//! (`TURBO_EBPF=off`), against PM2's `max_memory_restart`; supervisord has no memory limit.
//!
//! The app is `examples/bench/memgrow.c`: it appends `start <pid> <ns>` to an events file on
//! start and `cross <pid> <ns> <bytes>` the moment its own resident size reaches the limit (it
//! checks after every 16 pages it touches), and keeps its peak resident size in a file of its
//! own. One sample is the next `start` after a `cross` minus that `cross`: the manager noticing,
//! stopping the process and starting a new one, all read off the workload's clock.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::bench::json::Json;
use crate::bench::managers::{App, Kind, Manager, Restart};
use crate::bench::stats::Summary;
use crate::bench::{Env, Metric, Outcome, Row, Target, Unit, sys};

pub const METRIC: Metric = Metric {
    id: "memory-limit",
    title: "Memory-limit reaction: 10 MB every 100 ms against a 200 MB limit",
    run,
};

/// The limit, in MiB (`max_memory: 200M`, `max_memory_restart: 200M`: both powers of 1024).
const LIMIT_MB: u64 = 200;
/// Growth per step and the step interval.
const STEP_MB: u64 = 10;
const INTERVAL_MS: u64 = 100;
/// Where the app stops growing and holds its memory: the bound for a manager that reacts
/// late (PM2 checks every 30 s by default, by then the app would hold 3 GB).
const CAP_MB: u64 = 1024;
/// Targets: reaction at most this fraction of PM2's; peak at most this far over the limit.
const VS_PM2: f64 = 1.0 / 100.0;
const PEAK_OVER_MB: f64 = 20.0;

/// One manager and its growing app.
struct Subject {
    label: String,
    /// Where its daemon lives under the metric's directory, and its environment.
    dir: &'static str,
    kind: Kind,
    env: &'static [(&'static str, &'static str)],
    want: usize,
    mgr: Option<Box<dyn Manager>>,
    events: PathBuf,
    cycles: Vec<Cycle>,
    /// Starts that followed no crossing: the app ended some other way.
    early: usize,
    error: Option<String>,
    done: bool,
}

/// One crossing and the restart that followed it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cycle {
    /// From the crossing to the next start, in ms.
    ms: f64,
    /// The crossed process's peak resident size, in bytes (`None` if its file is missing).
    peak: Option<u64>,
}

fn run(env: &mut Env<'_>) -> Result<Outcome> {
    let (turbo_cycles, pm2_cycles, bound) = if env.quick {
        (5, 1, Duration::from_secs(50))
    } else {
        (15, 3, Duration::from_secs(110))
    };
    let mut subjects = vec![
        subject("TurboProcess, eBPF", "ebpf", Kind::Turbo, &[], turbo_cycles),
        subject(
            "TurboProcess, procfs fallback (TURBO_EBPF=off)",
            "procfs",
            Kind::Turbo,
            &[("TURBO_EBPF", "off")],
            turbo_cycles,
        ),
        subject("PM2", "pm2", Kind::Pm2, &[], pm2_cycles),
    ];
    println!(
        "memory limit: {turbo_cycles} restarts per TurboProcess daemon, {pm2_cycles} of PM2, \
         at most {}s",
        bound.as_secs()
    );
    let result = measure(env, bound, &mut subjects);
    let mut transcripts = Vec::new();
    for s in &mut subjects {
        if let Some(mut m) = s.mgr.take() {
            if let Err(e) = m.shutdown() {
                s.error.get_or_insert(format!("{e:#}"));
            }
            transcripts.push((s.label.clone(), m.transcript().to_vec()));
        }
    }
    result?;
    Ok(outcome(env, bound, subjects, transcripts))
}

fn subject(
    label: &str,
    dir: &'static str,
    kind: Kind,
    env: &'static [(&'static str, &'static str)],
    want: usize,
) -> Subject {
    Subject {
        label: label.to_owned(),
        dir,
        kind,
        env,
        want,
        mgr: None,
        events: PathBuf::new(),
        cycles: Vec::new(),
        early: 0,
        error: None,
        done: false,
    }
}

/// Starts the three, then reads their events until each has its restarts or `bound` passed.
fn measure(env: &mut Env<'_>, bound: Duration, subjects: &mut [Subject]) -> Result<()> {
    let memgrow = env.tools.memgrow.clone();
    for s in subjects.iter_mut() {
        let dir = env.dir("memory-limit", s.dir)?;
        s.events = dir.join("events");
        let app = App {
            max_memory: Some(format!("{LIMIT_MB}M")),
            ..App::new(
                "grow",
                vec![
                    memgrow.display().to_string(),
                    s.events.display().to_string(),
                    LIMIT_MB.to_string(),
                    STEP_MB.to_string(),
                    INTERVAL_MS.to_string(),
                    CAP_MB.to_string(),
                ],
                Restart::Immediately,
            )
        };
        let started = env
            .launch_with(s.kind, "memory-limit", s.dir, s.env)
            .and_then(|mut m| {
                if s.kind == Kind::Turbo {
                    check_source(m.as_ref(), s.env.is_empty())?;
                }
                m.start(&app)?;
                Ok(m)
            });
        match started {
            Ok(m) => s.mgr = Some(m),
            Err(e) => {
                eprintln!("  {}: {e:#}", s.label);
                s.error = Some(format!("{e:#}"));
                s.done = true;
            }
        }
    }
    let deadline = Instant::now() + bound;
    while subjects.iter().any(|s| !s.done) {
        sys::check_interrupted()?;
        thread::sleep(Duration::from_millis(250));
        let late = Instant::now() >= deadline;
        for s in subjects.iter_mut().filter(|s| !s.done) {
            let text = fs::read_to_string(&s.events).unwrap_or_default();
            let events = parse_events(&text);
            for e in &events {
                if let Event::Start { pid, .. } = e {
                    env.watch_pid(*pid, &memgrow);
                }
            }
            (s.cycles, s.early) = cycles(&events, |pid| peak(&s.events, pid));
            if s.cycles.len() >= s.want || late {
                s.done = true;
                if s.cycles.len() < s.want {
                    s.error = Some(format!(
                        "{} of {} restarts after a crossing within {}s{}",
                        s.cycles.len(),
                        s.want,
                        bound.as_secs(),
                        if events.iter().any(|e| matches!(e, Event::Cross { .. })) {
                            ""
                        } else {
                            " (the app never crossed the limit)"
                        }
                    ));
                }
                // stop growing: the others are still being measured
                if let Some(m) = s.mgr.as_mut()
                    && let Err(e) = m.remove("grow")
                {
                    s.error.get_or_insert(format!("{e:#}"));
                }
                println!("  {}: {} restarts measured", s.label, s.cycles.len());
            }
        }
    }
    Ok(())
}

/// The TurboProcess daemon runs the event source it was meant to: BPF links with eBPF, none
/// with the fallback (so the two rows measure what they say).
fn check_source(m: &dyn Manager, ebpf: bool) -> Result<()> {
    let links = m
        .processes()
        .first()
        .map_or(0, |(_, pid)| sys::bpf_links(*pid));
    match (ebpf, links) {
        (true, 0) => anyhow::bail!(
            "the default TurboProcess daemon holds no BPF link: its eBPF source is not active \
             (not root?)"
        ),
        (false, n) if n > 0 => anyhow::bail!("the daemon with TURBO_EBPF=off holds {n} BPF links"),
        _ => Ok(()),
    }
}

/// A line of the events file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Start { pid: u32, ns: i64 },
    Cross { pid: u32, ns: i64 },
}

/// The events, in file order; a torn or unknown line is skipped (the file is being appended to).
fn parse_events(text: &str) -> Vec<Event> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (kind, pid, ns) = (
                it.next()?,
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
            );
            match kind {
                "start" => Some(Event::Start { pid, ns }),
                "cross" => Some(Event::Cross { pid, ns }),
                _ => None,
            }
        })
        .collect()
}

/// Pairs each crossing with the next start of another process; also counts starts that
/// followed a process which never crossed (it ended some other way).
fn cycles(events: &[Event], peak: impl Fn(u32) -> Option<u64>) -> (Vec<Cycle>, usize) {
    let mut out = Vec::new();
    let mut early = 0;
    let mut current: Option<u32> = None;
    let mut crossed: Option<(u32, i64)> = None;
    for &e in events {
        match e {
            Event::Cross { pid, ns } if current == Some(pid) && crossed.is_none() => {
                crossed = Some((pid, ns));
            }
            Event::Cross { .. } => {}
            Event::Start { pid, ns } => {
                match (current, crossed.take()) {
                    (Some(_), Some((old, at))) => {
                        #[expect(clippy::cast_precision_loss, reason = "nanosecond spans")]
                        let ms = (ns - at) as f64 / 1e6;
                        out.push(Cycle {
                            ms,
                            peak: peak(old),
                        });
                    }
                    (Some(_), None) => early += 1,
                    (None, _) => {}
                }
                current = Some(pid);
            }
        }
    }
    (out, early)
}

/// The peak resident size the process `pid` recorded.
fn peak(events: &Path, pid: u32) -> Option<u64> {
    let path = PathBuf::from(format!("{}.peak.{pid}", events.display()));
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[expect(clippy::cast_precision_loss, reason = "sizes in bytes far below 2^53")]
fn mb(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn outcome(
    env: &Env<'_>,
    bound: Duration,
    subjects: Vec<Subject>,
    transcripts: Vec<(String, Vec<String>)>,
) -> Outcome {
    let peaks =
        |s: &Subject| -> Vec<f64> { s.cycles.iter().filter_map(|c| c.peak.map(mb)).collect() };
    let limit = f64::from(u32::try_from(LIMIT_MB).unwrap_or(u32::MAX));
    let mut targets = Vec::new();
    let pm2 = subjects
        .iter()
        .find(|s| s.kind == Kind::Pm2)
        .and_then(|s| Summary::of(&s.cycles.iter().map(|c| c.ms).collect::<Vec<_>>()));
    for s in subjects.iter().filter(|s| s.kind == Kind::Turbo) {
        let own = Summary::of(&s.cycles.iter().map(|c| c.ms).collect::<Vec<_>>());
        let ratio = match (own, pm2) {
            (Some(t), Some(p)) if p.median > 0.0 => Some(t.median / p.median),
            _ => None,
        };
        targets.push(Target {
            what: format!("memory-limit reaction, {} / PM2 (medians)", s.label),
            value: ratio,
            limit: VS_PM2,
            shown: match (ratio, own, pm2) {
                (Some(r), Some(t), Some(p)) => {
                    format!("{r:.4} ({:.0} ms / {:.0} ms)", t.median, p.median)
                }
                _ => "not measured".to_owned(),
            },
            limit_shown: "≤ 1/100 (0.01)".to_owned(),
        });
        let worst = peaks(s).into_iter().reduce(f64::max);
        targets.push(Target {
            what: format!(
                "peak resident memory over the {LIMIT_MB} MB limit, {} (worst of {} restarts)",
                s.label,
                s.cycles.len()
            ),
            value: worst.map(|p| p - limit),
            limit: PEAK_OVER_MB,
            shown: worst.map_or_else(
                || "not measured".to_owned(),
                |p| format!("{:+.0} MB (peak {p:.0} MB)", p - limit),
            ),
            limit_shown: "≤ 20 MB".to_owned(),
        });
    }
    let rows = subjects
        .iter()
        .map(|s| {
            let p = Summary::of(&peaks(s));
            Row {
                subject: s.label.clone(),
                samples: s.cycles.iter().map(|c| c.ms).collect(),
                extra: vec![
                    p.map(|x| x.median.round()).into(),
                    p.map(|x| x.max.round()).into(),
                    Json::from(s.early),
                ],
                error: s.error.clone(),
            }
        })
        .collect();
    let memgrow = env.show(&env.tools.memgrow.display().to_string());
    Outcome {
        unit: Unit::Millis,
        method: vec![
            format!(
                "The app is `examples/bench/memgrow.c` (`{memgrow} EVENTS {LIMIT_MB} {STEP_MB} \
                 {INTERVAL_MS} {CAP_MB}`): every {INTERVAL_MS} ms it maps {STEP_MB} MB more and \
                 writes to every page, reading its own resident size (`/proc/self/statm`) \
                 after every 16 pages (64 KiB). It appends `start <pid> <ns>` \
                 (`CLOCK_MONOTONIC`) to an events file first thing on start, `cross <pid> <ns>` \
                 the first time its resident size reaches {LIMIT_MB} MB, and keeps its peak \
                 resident size in a file of its own, so whatever kills it, the peak is known to \
                 within 64 KiB. One sample is the next `start` after a `cross` minus that \
                 `cross`: noticing, stopping the process and starting the next one. At \
                 {CAP_MB} MB the app stops growing and holds its memory (the bound for a \
                 manager that reacts late)."
            ),
            format!(
                "Limit {LIMIT_MB} MB and restarts without delay: TurboProcess `max_memory: \
                 {LIMIT_MB}M` with `autorestart: always`, `restart: {{ delay: 0, factor: 1, \
                 crash_loop: {{ max: 0 }} }}`, once with its defaults (eBPF: the kernel's \
                 `rss_stat` events, filtered in the kernel against the limit; checked: the \
                 daemon holds BPF links) and once with `TURBO_EBPF=off` (the procfs source \
                 reads the app's memory on an adaptive schedule, 20 ms to 1 s, sooner the \
                 nearer and faster it grows toward the limit); PM2 `max_memory_restart: {LIMIT_MB}M` with \
                 `autorestart`, `restart_delay: 0`, its default check interval (30 s). The three \
                 run side by side; each app is removed once its restarts are measured. The run \
                 is bounded to {}s, so PM2 contributes few samples, and each of its samples \
                 depends on where in PM2's 30 s cycle the app crossed.",
                bound.as_secs()
            ),
        ],
        params: vec![
            ("limit".to_owned(), format!("{LIMIT_MB} MB")),
            (
                "growth".to_owned(),
                format!("{STEP_MB} MB every {INTERVAL_MS} ms"),
            ),
            ("growth stops at".to_owned(), format!("{CAP_MB} MB")),
            (
                "bound on the run".to_owned(),
                format!("{} s", bound.as_secs()),
            ),
        ],
        extra_columns: vec![
            "peak RSS, median (MB)".to_owned(),
            "peak RSS, max (MB)".to_owned(),
            "restarts not after a crossing".to_owned(),
        ],
        rows,
        ratios: subjects
            .iter()
            .filter(|s| s.kind == Kind::Turbo)
            .map(|s| (s.label.clone(), "PM2".to_owned()))
            .collect(),
        targets,
        transcripts,
        notes: vec![format!(
            "PM2 reads its apps' memory in a worker that runs every 30 s (`PM2_WORKER_INTERVAL`); \
             an app growing {STEP_MB} MB per {INTERVAL_MS} ms goes far past the limit before \
             that, here up to the {CAP_MB} MB where the workload stops. The procfs fallback of \
             TurboProcess reads the memory of an app with a limit between every 20 ms and every \
             second, sooner the closer the app is to the limit and the faster it grew since \
             the last reading, so a fast grower is read every few tens of milliseconds as it \
             nears the limit; eBPF acts on the kernel event of the page \
             fault that crossed the limit. A sample ends when the replacement starts, which \
             is after the old process has exited, and a process holding {LIMIT_MB} MB needs \
             tens of milliseconds to exit while the kernel frees its memory (the exit-source \
             metric shows it for 256 MB)."
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossings_pair_with_the_next_start() {
        let text = "start 10 1000000\n\
                    cross 10 3000000 209715200\n\
                    start 11 5000000\n\
                    start 12 6000000\n\
                    cross 12 9000000 209715200\n\
                    cross 12 9500000 209715200\n\
                    torn li";
        let events = parse_events(text);
        assert_eq!(events.len(), 6);
        let (cycles, early) = cycles(&events, |pid| Some(u64::from(pid) << 20));
        assert_eq!(
            cycles,
            vec![Cycle {
                ms: 2.0,
                peak: Some(10 << 20)
            }]
        );
        // pid 11 ended without crossing; pid 12 has not been restarted yet
        assert_eq!(early, 1);
    }
}
