//! Probe overhead of TurboProcess's eBPF event source (issue 4): what the kernel programs cost
//! the rest of the machine. A fork/exec-heavy and a page-fault-heavy workload are timed with no
//! daemon, with a TurboProcess daemon running (eBPF active, no memory limit), and with a memory
//! limit set on another app (so `rss_stat`, which runs on every RSS counter update in the
//! system, is attached). PM2 and supervisord have nothing in the kernel, so there is no peer to
//! compare with: the baseline is the machine without any daemon, measured in the same rounds.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::bench::managers::{App, Kind, Manager, Restart};
use crate::bench::process::exec;
use crate::bench::stats::Summary;
use crate::bench::{Env, Metric, Outcome, Row, Target, Unit, sys};

pub const METRIC: Metric = Metric {
    id: "probes",
    title: "Probe overhead of the eBPF event source (fork/exec and page faults)",
    run,
};

/// The target: with the daemon (no memory limit), at most this multiple of the time without.
const LIMIT: f64 = 1.02;
/// Memory the page-fault workload touches.
const MEGABYTES: u32 = 512;
/// The memory limit of the app that makes the daemon attach `rss_stat` (far above a `sleep`).
const APP_LIMIT: &str = "1gb";
/// Longest wait for `rss_stat` to be attached or detached after a limit comes or goes.
const LINK_WAIT: Duration = Duration::from_secs(5);
/// Bound on one workload run.
const RUN_LIMIT: Duration = Duration::from_secs(300);
/// Runs of each workload per condition and round; the round keeps the least CPU time. The
/// workloads do the same work every time, so what varies between runs is only added by the
/// machine (another process's cache traffic, a migration, an interrupt): the minimum is the
/// estimate least disturbed by it.
const REPEATS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cond {
    NoDaemon,
    Turbo,
    TurboLimit,
}

impl Cond {
    const ALL: [Cond; 3] = [Cond::NoDaemon, Cond::Turbo, Cond::TurboLimit];

    fn label(self) -> &'static str {
        match self {
            Cond::NoDaemon => "no daemon",
            Cond::Turbo => "TurboProcess, eBPF, no memory limit",
            Cond::TurboLimit => "TurboProcess, eBPF, a memory limit set (rss_stat attached)",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Work {
    ForkExec,
    PageFault,
}

impl Work {
    const ALL: [Work; 2] = [Work::ForkExec, Work::PageFault];

    fn label(self, forks: usize) -> String {
        match self {
            Work::ForkExec => format!("fork/exec ({forks} × /bin/true)"),
            Work::PageFault => format!("page faults ({MEGABYTES} MB touched)"),
        }
    }
}

/// Samples of one (workload, condition).
#[derive(Default)]
struct Cell {
    cpu_ms: Vec<f64>,
    wall_ms: Vec<f64>,
    /// CPU time of this run over the no-daemon run of the same round.
    paired: Vec<f64>,
}

struct State {
    forks: usize,
    /// The CPU every workload run is pinned to (`taskset -c`), when `taskset` exists.
    pin: Option<usize>,
    cells: [[Cell; 3]; 2],
    /// Why a condition could not be measured (then it is skipped in later rounds).
    errors: [Option<String>; 3],
    transcript: Vec<String>,
    links: Vec<(usize, usize)>,
}

fn idx(c: Cond) -> usize {
    Cond::ALL.iter().position(|&x| x == c).unwrap_or(0)
}

fn widx(w: Work) -> usize {
    Work::ALL.iter().position(|&x| x == w).unwrap_or(0)
}

fn run(env: &mut Env<'_>) -> Result<Outcome> {
    let (rounds, forks) = if env.quick { (5, 500) } else { (15, 2000) };
    let pin = pin_cpu();
    let mut st = State {
        forks,
        pin,
        cells: Default::default(),
        errors: Default::default(),
        transcript: Vec::new(),
        links: Vec::new(),
    };
    for round in 0..rounds {
        sys::check_interrupted()?;
        // the two daemon conditions are adjacent in both orders, so one daemon serves them
        let order = if round % 2 == 0 {
            [Cond::NoDaemon, Cond::Turbo, Cond::TurboLimit]
        } else {
            [Cond::TurboLimit, Cond::Turbo, Cond::NoDaemon]
        };
        let mut results: [[Option<(f64, f64)>; 2]; 3] = Default::default();
        let mut mgr: Option<Box<dyn Manager>> = None;
        let outcome = one_round(env, &mut st, round, order, &mut mgr, &mut results);
        if let Some(mut m) = mgr.take() {
            let down = m.shutdown();
            if st.transcript.is_empty() {
                st.transcript = m.transcript().to_vec();
            }
            down?;
        }
        outcome?;
        for w in Work::ALL {
            let base = results[idx(Cond::NoDaemon)][widx(w)].map(|(cpu, _)| cpu);
            for c in Cond::ALL {
                if let Some((cpu, wall)) = results[idx(c)][widx(w)] {
                    let cell = &mut st.cells[widx(w)][idx(c)];
                    cell.cpu_ms.push(cpu);
                    cell.wall_ms.push(wall);
                    if let Some(b) = base.filter(|b| *b > 0.0) {
                        cell.paired.push(cpu / b);
                    }
                }
            }
        }
        println!(
            "  round {}/{rounds}: {}",
            round + 1,
            Work::ALL
                .iter()
                .flat_map(|&w| {
                    Cond::ALL.iter().filter_map(move |&c| {
                        results[idx(c)][widx(w)]
                            .map(|(cpu, _)| format!("{} {:.0}", short(w, c), cpu))
                    })
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(outcome(env, st, rounds))
}

fn short(w: Work, c: Cond) -> &'static str {
    match (w, c) {
        (Work::ForkExec, Cond::NoDaemon) => "fork none",
        (Work::ForkExec, Cond::Turbo) => "fork turbo",
        (Work::ForkExec, Cond::TurboLimit) => "fork limit",
        (Work::PageFault, Cond::NoDaemon) => "faults none",
        (Work::PageFault, Cond::Turbo) => "faults turbo",
        (Work::PageFault, Cond::TurboLimit) => "faults limit",
    }
}

/// One round: every condition once, in `order`; the daemon (in `mgr`, shut down by the caller)
/// is started before the first condition that needs it and stopped before the no-daemon one.
fn one_round(
    env: &mut Env<'_>,
    st: &mut State,
    round: usize,
    order: [Cond; 3],
    mgr: &mut Option<Box<dyn Manager>>,
    results: &mut [[Option<(f64, f64)>; 2]; 3],
) -> Result<()> {
    let mut base_links = 0;
    for cond in order {
        sys::check_interrupted()?;
        if st.errors[idx(cond)].is_some() {
            continue;
        }
        match cond {
            Cond::NoDaemon => {
                if let Some(mut m) = mgr.take() {
                    m.shutdown()?;
                }
            }
            Cond::Turbo | Cond::TurboLimit => {
                if mgr.is_none() {
                    // a fresh home each round: a daemon restores the apps of the last one
                    let mut m =
                        env.launch_with(Kind::Turbo, "probes", &format!("r{round}"), &[])?;
                    let idle = sleep_app(env, "idle", None);
                    m.start(&idle)?;
                    watch_apps(env, m.as_mut(), &["idle"])?;
                    let pid = daemon_pid(m.as_ref())?;
                    base_links = sys::bpf_links(pid);
                    if base_links == 0 {
                        bail!(
                            "the TurboProcess daemon holds no BPF link: its eBPF event source is \
                             not active (not root, or TURBO_EBPF), so there is no probe to measure"
                        );
                    }
                    *mgr = Some(m);
                }
                let m = mgr.as_mut().context("no daemon")?;
                let pid = daemon_pid(m.as_ref())?;
                let limited = m.pid("limited")?.is_some();
                if cond == Cond::TurboLimit && !limited {
                    let app = sleep_app(env, "limited", Some(APP_LIMIT));
                    if let Err(e) = m.start(&app) {
                        st.errors[idx(cond)] = Some(format!(
                            "this TurboProcess cannot set a memory limit \
                             (`max_memory: {APP_LIMIT}` refused: {e:#})"
                        ));
                        continue;
                    }
                    watch_apps(env, m.as_mut(), &["limited"])?;
                    match wait_links(pid, |n| n > base_links) {
                        Some(n) => st.links.push((base_links, n)),
                        None => {
                            st.errors[idx(cond)] = Some(format!(
                                "a memory limit was accepted but `rss_stat` was not attached \
                                 within {LINK_WAIT:?} (BPF links of the daemon stayed at \
                                 {base_links})"
                            ));
                            m.remove("limited")?;
                            continue;
                        }
                    }
                } else if cond == Cond::Turbo && limited {
                    m.remove("limited")?;
                    if wait_links(pid, |n| n <= base_links).is_none() {
                        bail!(
                            "`rss_stat` stayed attached {LINK_WAIT:?} after the only app with a \
                             memory limit was deleted"
                        );
                    }
                }
            }
        }
        for w in Work::ALL {
            let mut best: Option<(f64, f64)> = None;
            for _ in 0..REPEATS {
                let run = workload(env, st, w)?;
                if best.is_none_or(|b| run.0 < b.0) {
                    best = Some(run);
                }
            }
            results[idx(cond)][widx(w)] = best;
        }
    }
    Ok(())
}

fn sleep_app(env: &Env<'_>, name: &str, limit: Option<&str>) -> App {
    let mut app = App::new(
        name,
        vec![env.tools.sleep.display().to_string(), "100000".to_owned()],
        Restart::Never,
    );
    app.max_memory = limit.map(str::to_owned);
    app
}

/// Waits for the apps to run and remembers their pids for the final clean-up.
fn watch_apps(env: &mut Env<'_>, m: &mut dyn Manager, names: &[&str]) -> Result<()> {
    for name in names {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(pid) = m.pid(name)? {
                let sleep = env.tools.sleep.clone();
                env.watch_pid(pid, &sleep);
                break;
            }
            if Instant::now() >= deadline {
                bail!("the app `{name}` did not start within 15 s");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

fn daemon_pid(m: &dyn Manager) -> Result<u32> {
    m.processes()
        .first()
        .map(|(_, pid)| *pid)
        .context("the TurboProcess daemon is gone")
}

/// Polls the daemon's BPF link count until `ok`; the count, or `None` after [`LINK_WAIT`].
fn wait_links(pid: u32, ok: impl Fn(usize) -> bool) -> Option<usize> {
    let deadline = Instant::now() + LINK_WAIT;
    loop {
        let n = sys::bpf_links(pid);
        if ok(n) {
            return Some(n);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The CPU to pin the workloads to: the last one, when `taskset` is there. Every run of every
/// condition on the same CPU: no migrations in the middle of a run, and no condition favoured
/// by landing on a less busy core.
fn pin_cpu() -> Option<usize> {
    let cpus = thread::available_parallelism().map_or(1, std::num::NonZero::get);
    (cpus > 1 && Command::new("taskset").arg("-V").output().is_ok()).then(|| cpus - 1)
}

/// Runs one workload; returns its (CPU, wall) milliseconds as it measured them.
fn workload(env: &Env<'_>, st: &State, w: Work) -> Result<(f64, f64)> {
    let mut cmd = match st.pin {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string());
            c
        }
        None => Command::new(match w {
            Work::ForkExec => &env.tools.forkexec,
            Work::PageFault => &env.tools.pagefault,
        }),
    };
    if st.pin.is_some() {
        cmd.arg(match w {
            Work::ForkExec => &env.tools.forkexec,
            Work::PageFault => &env.tools.pagefault,
        });
    }
    match w {
        Work::ForkExec => cmd.arg(st.forks.to_string()).arg(&env.tools.true_),
        Work::PageFault => cmd.arg(MEGABYTES.to_string()),
    };
    let out = exec(&mut cmd, RUN_LIMIT)?;
    parse_times(&out).with_context(|| format!("workload printed `{}`", out.trim()))
}

/// `<wall ns> <cpu ns>` into (cpu ms, wall ms).
fn parse_times(text: &str) -> Result<(f64, f64)> {
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(wall)), Some(Ok(cpu)), None) = (it.next(), it.next(), it.next()) else {
        bail!("not `<wall ns> <cpu ns>`");
    };
    #[expect(clippy::cast_precision_loss, reason = "nanoseconds far below 2^53")]
    Ok((cpu as f64 / 1e6, wall as f64 / 1e6))
}

fn subject(w: Work, c: Cond, forks: usize) -> String {
    format!("{}, {}", w.label(forks), c.label())
}

fn outcome(env: &Env<'_>, st: State, rounds: usize) -> Outcome {
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    let mut targets = Vec::new();
    let mut notes = Vec::new();
    for w in Work::ALL {
        let base = subject(w, Cond::NoDaemon, st.forks);
        for c in Cond::ALL {
            let cell = &st.cells[widx(w)][idx(c)];
            let wall = Summary::of(&cell.wall_ms).map(|s| (s.median * 10.0).round() / 10.0);
            let paired = Summary::of(&cell.paired);
            let round3 = |v: f64| (v * 1000.0).round() / 1000.0;
            rows.push(Row {
                subject: subject(w, c, st.forks),
                samples: cell.cpu_ms.clone(),
                extra: vec![
                    wall.into(),
                    paired.map(|p| round3(p.median)).into(),
                    paired.map(|p| format!("{:.3}-{:.3}", p.p25, p.p75)).into(),
                    paired.map(|p| format!("{:.3}-{:.3}", p.min, p.max)).into(),
                ],
                error: st.errors[idx(c)].clone(),
            });
            if c != Cond::NoDaemon {
                ratios.push((subject(w, c, st.forks), base.clone()));
            }
        }
        let cell = &st.cells[widx(w)][idx(Cond::Turbo)];
        let paired = Summary::of(&cell.paired).map(|p| p.median);
        let medians = |c: Cond| Summary::of(&st.cells[widx(w)][idx(c)].cpu_ms).map(|s| s.median);
        targets.push(Target {
            what: format!(
                "probe overhead, {}: CPU time with TurboProcess running (eBPF, no memory limit) \
                 / without any daemon (median of per-round ratios)",
                w.label(st.forks)
            ),
            value: paired,
            limit: LIMIT,
            shown: match (paired, medians(Cond::Turbo), medians(Cond::NoDaemon)) {
                (Some(p), Some(t), Some(n)) => format!(
                    "{p:.3} ({:+.1}%; middle half of the rounds {}; medians {t:.0} ms / \
                     {n:.0} ms)",
                    (p - 1.0) * 100.0,
                    Summary::of(&cell.paired)
                        .map_or(String::new(), |s| format!("{:.3}-{:.3}", s.p25, s.p75))
                ),
                _ => "not measured".to_owned(),
            },
            limit_shown: "≤ 1.02 (under 2%)".to_owned(),
        });
        let limited = Summary::of(&st.cells[widx(w)][idx(Cond::TurboLimit)].paired);
        if let Some(l) = limited {
            notes.push(format!(
                "{}, for information: with a memory limit set on another app (`rss_stat` \
                 attached), the median per-round ratio to no daemon is {:.3} ({:+.1}%).",
                w.label(st.forks),
                l.median,
                (l.median - 1.0) * 100.0
            ));
        }
    }
    if let Some(e) = &st.errors[idx(Cond::TurboLimit)] {
        notes.push(format!(
            "The condition with a memory limit (`rss_stat` attached) was not measured: {e}. \
             The eBPF program is loaded at start-up and attached only while some app has a \
             limit; until the configuration can set one (`max_memory`, the metrics issue) \
             nothing in TurboProcess attaches it."
        ));
    }
    if let Some(&(before, after)) = st.links.first() {
        notes.push(format!(
            "With the memory limit set, the daemon held {after} BPF links instead of {before} \
             (counted in `/proc/<pid>/fdinfo`): `rss_stat` was attached while those runs were \
             measured, and detached again when the app was deleted."
        ));
    }
    let pin = st
        .pin
        .map_or(String::new(), |cpu| format!("taskset -c {cpu} "));
    let mut transcript = vec![
        env.show(&format!(
            "{pin}{} {} {}",
            env.tools.forkexec.display(),
            st.forks,
            env.tools.true_.display()
        )),
        env.show(&format!(
            "{pin}{} {MEGABYTES}",
            env.tools.pagefault.display()
        )),
    ];
    transcript.extend(st.transcript);
    Outcome {
        unit: Unit::Millis,
        method: vec![
            format!(
                "Workloads, compiled with `cc -O2`: `examples/bench/forkexec.c` starts \
                 `/bin/true` {} times, one after the other (fork, execv, waitpid), so every \
                 iteration passes the hooks `sched_process_fork`, `sched_process_exec` and \
                 `sched_process_exit`; `examples/bench/pagefault.c` maps {MEGABYTES} MB and \
                 writes one byte per page, so every page faults and updates the RSS counters \
                 (where `rss_stat` fires). One sample is the workload's CPU time (user + \
                 system, of the process and its children, from `getrusage`): the kernel runs \
                 the programs in the context of the process that forks, execs, exits or \
                 faults, so their cost lands there, and CPU time is less disturbed than wall \
                 time by the other work of a shared machine. Wall time is shown too.",
                st.forks
            ),
            format!(
                "Conditions: no daemon at all; a TurboProcess daemon with its eBPF source \
                 active (checked: the daemon holds BPF links) supervising one app (`sleep`), no \
                 memory limit; the same plus a second app with `max_memory: {APP_LIMIT}`, which \
                 makes the daemon attach `rss_stat` (checked by the daemon's BPF link count \
                 going up). PM2 and supervisord put nothing in the kernel, so they have no \
                 counterpart here. {rounds} rounds; each runs both workloads under every \
                 condition, in the order no daemon, daemon, daemon with a limit in even rounds \
                 and the reverse in odd ones, with a fresh daemon each round. Within a round \
                 each workload runs {REPEATS} times per condition and the least CPU time \
                 counts (the work is the same every time; the machine only adds to it). The \
                 ratio to no daemon is taken within each round, then its median over the \
                 rounds is the figure compared with the target (a slow spell of the shared \
                 machine then weighs on both sides of a ratio); the middle half and the range \
                 of the per-round ratios show the spread. {}",
                match st.pin {
                    Some(cpu) => format!(
                        "Every workload run is pinned to CPU {cpu} (`taskset -c {cpu}`), under \
                         every condition alike."
                    ),
                    None => "The workloads are not pinned to a CPU (no `taskset`, or one CPU)."
                        .to_owned(),
                }
            ),
        ],
        params: vec![
            ("rounds".to_owned(), rounds.to_string()),
            ("fork/exec iterations".to_owned(), st.forks.to_string()),
            ("memory touched".to_owned(), format!("{MEGABYTES} MB")),
        ],
        extra_columns: vec![
            "wall time, median (ms)".to_owned(),
            "per-round ratio to no daemon, median".to_owned(),
            "per-round ratio, middle half (p25-p75)".to_owned(),
            "per-round ratio, min-max".to_owned(),
        ],
        rows,
        ratios,
        targets,
        transcripts: vec![("TurboProcess and the workloads".to_owned(), transcript)],
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_output_parses() {
        assert_eq!(
            parse_times("2000000 1500000\n").unwrap(),
            (1.5, 2.0),
            "(cpu ms, wall ms)"
        );
        assert!(parse_times("1").is_err());
        assert!(parse_times("1 2 3").is_err());
        assert!(parse_times("x 2").is_err());
    }
}
