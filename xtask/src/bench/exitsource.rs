//! Exit-to-restart latency with TurboProcess's eBPF event source against its procfs fallback
//! (`TURBO_EBPF=off`), restart delay 0 (issue 4). Measured like the restart metric (the stamp
//! program, `kill -9`, the new process's first clock reading), for a small app and for one
//! holding 256 MB: the kernel reports an exit to eBPF before it frees the memory, and to the
//! parent's pidfd only after.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::bench::json::Json;
use crate::bench::managers::{Kind, Manager};
use crate::bench::restart::{SETTLE, Tally, WARMUP, check_pid, first_stamp, kill_once, stamp_app};
use crate::bench::stats::Summary;
use crate::bench::{Env, Metric, Outcome, Row, Unit, sys};

pub const METRIC: Metric = Metric {
    id: "exit-source",
    title: "Exit-to-restart latency, eBPF event source vs procfs fallback (restart delay 0)",
    run,
};

/// Memory the big app holds.
const BIG_MB: u32 = 256;
/// Longest wait for the big app to have touched its memory before a kill.
const FILL_LIMIT: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Ebpf,
    Procfs,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Ebpf => "eBPF",
            Source::Procfs => "procfs fallback (TURBO_EBPF=off)",
        }
    }
}

/// One measured subject: an app under one daemon.
struct Subject {
    source: Source,
    megabytes: Option<u32>,
    name: &'static str,
    stamp_file: PathBuf,
    pid: u32,
    row: Row,
    tally: Tally,
}

impl Subject {
    fn label(source: Source, megabytes: Option<u32>) -> String {
        match megabytes {
            None => format!("TurboProcess, {}, small app", source.label()),
            Some(mb) => format!("TurboProcess, {}, app holding {mb} MB", source.label()),
        }
    }
}

fn run(env: &mut Env<'_>) -> Result<Outcome> {
    let kills = if env.quick { 8 } else { 20 };
    let mut daemons: Vec<(Source, Option<Box<dyn Manager>>)> = Vec::new();
    let mut subjects: Vec<Subject> = Vec::new();
    let measured = measure(env, kills, &mut daemons, &mut subjects);
    let mut transcripts = Vec::new();
    for (source, m) in &mut daemons {
        if let Some(m) = m {
            for s in subjects.iter().filter(|s| s.source == *source) {
                if let Err(e) = m.remove(s.name) {
                    eprintln!("  {}: {e:#}", s.row.subject);
                }
            }
            if let Err(e) = m.shutdown() {
                eprintln!("  {}: shutdown: {e:#}", source.label());
            }
            transcripts.push((
                format!("TurboProcess, {}", source.label()),
                m.transcript().to_vec(),
            ));
        }
    }
    drop(daemons);
    measured?;
    Ok(outcome(kills, subjects, transcripts))
}

fn measure(
    env: &mut Env<'_>,
    kills: usize,
    daemons: &mut Vec<(Source, Option<Box<dyn Manager>>)>,
    subjects: &mut Vec<Subject>,
) -> Result<()> {
    let stamp = env.tools.stamp.clone();
    for source in [Source::Ebpf, Source::Procfs] {
        let (dir_name, vars): (&str, &[(&str, &str)]) = match source {
            Source::Ebpf => ("ebpf", &[]),
            Source::Procfs => ("procfs", &[("TURBO_EBPF", "off")]),
        };
        let mut m = env.launch_with(Kind::Turbo, "exit-source", dir_name, vars)?;
        let links = m
            .processes()
            .first()
            .map_or(0, |(_, pid)| sys::bpf_links(*pid));
        match source {
            Source::Ebpf if links == 0 => bail!(
                "the default TurboProcess daemon holds no BPF link: its eBPF source is not \
                 active (not root?), so there is nothing to compare the fallback with"
            ),
            Source::Procfs if links > 0 => {
                bail!("the daemon started with TURBO_EBPF=off holds {links} BPF links")
            }
            _ => {}
        }
        let dir = env.dir("exit-source", dir_name)?;
        for (name, megabytes) in [("small", None), ("big", Some(BIG_MB))] {
            let stamp_file = dir.join(format!("{name}.txt"));
            let app = stamp_app(name, &stamp, &stamp_file, megabytes);
            m.start(&app)?;
            let pid = first_stamp(env, &stamp, &stamp_file)?;
            check_pid(m.as_mut(), name, pid)?;
            subjects.push(Subject {
                source,
                megabytes,
                name,
                stamp_file,
                pid,
                row: Row {
                    subject: Subject::label(source, megabytes),
                    samples: Vec::new(),
                    extra: vec![Json::from(0_usize), Json::from(0_u64)],
                    error: None,
                },
                tally: Tally::default(),
            });
        }
        daemons.push((source, Some(m)));
    }
    // round k kills every subject once, starting with a different one each round
    let n = subjects.len();
    for k in 0..WARMUP + kills {
        for j in 0..n {
            let s = &mut subjects[(k + j) % n];
            thread::sleep(SETTLE);
            sys::check_interrupted()?;
            if let Some(mb) = s.megabytes {
                wait_filled(s.pid, &stamp, mb)?;
            }
            let r = kill_once(env, &stamp, &s.stamp_file, s.pid)?;
            s.tally.record(&mut s.row, &r, k >= WARMUP);
            s.pid = r.pid;
        }
        if k + 1 == WARMUP + kills || (k + 1) % 5 == 0 {
            println!(
                "  after {} kills each: {}",
                k + 1,
                subjects
                    .iter()
                    .filter_map(|s| Summary::of(&s.row.samples).map(|m| format!(
                        "{} {:.2} ms",
                        short(s),
                        m.median
                    )))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    thread::sleep(SETTLE);
    for (source, m) in daemons.iter_mut() {
        let Some(m) = m else { continue };
        for s in subjects.iter().filter(|s| s.source == *source) {
            check_pid(m.as_mut(), s.name, s.pid)?;
        }
    }
    Ok(())
}

fn short(s: &Subject) -> String {
    format!(
        "{}/{}",
        match s.source {
            Source::Ebpf => "ebpf",
            Source::Procfs => "procfs",
        },
        s.name
    )
}

/// Waits until `pid` (the stamp program) is resident with `mb` megabytes, so that each kill
/// finds it holding all of its memory.
fn wait_filled(pid: u32, stamp: &Path, mb: u32) -> Result<()> {
    let want = u64::from(mb) << 20;
    let deadline = Instant::now() + FILL_LIMIT;
    loop {
        if sys::vm_rss(pid).is_some_and(|rss| rss >= want) {
            return Ok(());
        }
        if !sys::runs(pid, stamp) {
            bail!("pid {pid} is no longer the stamp program");
        }
        if Instant::now() >= deadline {
            bail!("pid {pid} did not reach {mb} MB resident within {FILL_LIMIT:?}");
        }
        sys::check_interrupted()?;
        thread::sleep(Duration::from_millis(10));
    }
}

fn outcome(
    kills: usize,
    subjects: Vec<Subject>,
    transcripts: Vec<(String, Vec<String>)>,
) -> Outcome {
    let ratios = [None, Some(BIG_MB)]
        .into_iter()
        .map(|mb| {
            (
                Subject::label(Source::Ebpf, mb),
                Subject::label(Source::Procfs, mb),
            )
        })
        .collect();
    Outcome {
        unit: Unit::Millis,
        method: vec![
            format!(
                "As in the restart metric: the app is `examples/bench/stamp.c`, which writes \
                 `CLOCK_MONOTONIC` to a file first thing on start; one sample is the new \
                 process's stamp minus the time read just before `kill(pid, SIGKILL)`. Two \
                 TurboProcess daemons run side by side: one with its defaults (eBPF event \
                 source; checked: it holds BPF links) and one with `TURBO_EBPF=off` (the procfs \
                 fallback, where the main process's exit is seen through its pidfd; checked: \
                 no BPF link). Each runs two apps with `autorestart: always` and `restart: \
                 {{ delay: 0, factor: 1, crash_loop: {{ max: 0 }} }}`: the stamp program alone, \
                 and the stamp program that then allocates and touches {BIG_MB} MB (`stamp \
                 FILE {BIG_MB}`; before each kill the harness waits until it is resident)."
            ),
            format!(
                "{WARMUP} warm-up rounds and {kills} measured ones; each round kills every \
                 app once, {} ms after the previous restart, starting with a different app \
                 each round. After the loop each daemon must report the last stamped pid of \
                 each app.",
                SETTLE.as_millis()
            ),
        ],
        params: vec![
            ("measured kills per app".to_owned(), kills.to_string()),
            ("memory of the big app".to_owned(), format!("{BIG_MB} MB")),
        ],
        extra_columns: vec!["time-outs".to_owned(), "restarts seen".to_owned()],
        rows: subjects.into_iter().map(|s| s.row).collect(),
        ratios,
        targets: Vec::new(),
        transcripts,
        notes: vec![
            "No target: issue 4 asks for the comparison. The kernel runs \
             `sched_process_exit` (where the eBPF program reports the exit) in `do_exit()` \
             before `exit_mm()` frees the process's memory, while the parent's pidfd becomes \
             readable only after `exit_notify()`; the gap grows with the memory the process \
             held. With eBPF the replacement may briefly run while the old process's memory \
             is still being freed."
                .to_owned(),
        ],
    }
}
