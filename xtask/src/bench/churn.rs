//! Process churn (issue 21): an app whose descendants fork and exit without pause (shell
//! loops, CGI-style workers, build agents) floods the fork and exit probes. Per event source
//! (eBPF, then the procfs fallback, one after the other so each sees only its own churn): the
//! daemon's CPU while an app forks 10,000 short-lived children a second, the events the ring
//! buffer had no room for and whether the daemon recovered from them, `turbo status --json`
//! during the churn against before it, and the attribution of the app's own exit afterwards.
//! TurboProcess only: the peers see no forks at all.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::bench::fleet::{sleep_apps, wait_running};
use crate::bench::json::Json;
use crate::bench::managers::{App, CLI_LIMIT, Kind, Manager, Restart};
use crate::bench::process::exec;
use crate::bench::scale::turbo;
use crate::bench::{Env, Metric, Outcome, Row, Target, Unit, sys};

pub const METRIC: Metric = Metric {
    id: "churn",
    title: "Process churn: 10,000 forks a second, eBPF vs procfs fallback",
    run,
};

/// Children forked a second.
const RATE: u32 = 10_000;
/// Idle apps beside the churning one, so that `status` has something to list.
const IDLE_APPS: usize = 10;
/// The churning app's exit code.
const CODE: u32 = 7;
/// `turbo status --json` calls before the churn (after 2 warm-ups).
const BASELINE_CALLS: usize = 10;
/// Pause between two `status` calls during the churn.
const CALL_EVERY: Duration = Duration::from_millis(500);
/// Target: the daemon's CPU during the churn, eBPF, percent of one core.
const CPU_LIMIT_PERCENT: f64 = 5.0;
/// What the daemon logs when it re-read the trees after lost events (`runtime/lost.rs`).
const RECOVERED: &str = "read again from the kernel's watch map";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Ebpf,
    Procfs,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Ebpf => "eBPF",
            Source::Procfs => "procfs fallback",
        }
    }
}

/// What one source measured.
struct Phase {
    source: Source,
    idle_ms: Vec<f64>,
    churn_ms: Vec<f64>,
    forks: u64,
    churn_s: f64,
    cpu_percent: f64,
    lost: u64,
    recovered: bool,
    exit: String,
    attributed: bool,
}

fn run(env: &mut Env<'_>) -> Result<Outcome> {
    let seconds: u64 = if env.quick { 5 } else { 30 };
    let mut phases = Vec::new();
    for source in [Source::Ebpf, Source::Procfs] {
        sys::check_interrupted()?;
        println!("churn: {} for {seconds} s", source.label());
        phases.push(phase(env, source, seconds)?);
    }
    Ok(outcome(seconds, &phases))
}

fn phase(env: &mut Env<'_>, source: Source, seconds: u64) -> Result<Phase> {
    let (name, vars): (&str, &[(&str, &str)]) = match source {
        Source::Ebpf => ("ebpf", &[]),
        Source::Procfs => ("procfs", &[("TURBO_EBPF", "off")]),
    };
    let home = env.dir("churn", name)?.join("home");
    let mut m = env.launch_with(Kind::Turbo, "churn", name, vars)?;
    let result = measure(env, m.as_mut(), &home, source, seconds);
    if let Err(e) = m.shutdown() {
        eprintln!("  churn {name}: shutdown: {e:#}");
    }
    result
}

fn measure(
    env: &mut Env<'_>,
    m: &mut dyn Manager,
    home: &Path,
    source: Source,
    seconds: u64,
) -> Result<Phase> {
    let daemon = m
        .processes()
        .first()
        .map(|&(_, pid)| pid)
        .context("no daemon")?;
    let links = sys::bpf_links(daemon);
    match source {
        Source::Ebpf if links == 0 => bail!(
            "the default TurboProcess daemon holds no BPF link: its eBPF source is not active \
             (not root?)"
        ),
        Source::Procfs if links > 0 => {
            bail!("the daemon started with TURBO_EBPF=off holds {links} BPF links")
        }
        _ => {}
    }
    let sleep = env.tools.sleep.clone();
    m.start_all("idle", &sleep_apps("s", IDLE_APPS, &sleep))?;
    wait_running(env, m, IDLE_APPS, &sleep)?;
    let status = |env: &Env<'_>| -> Result<f64> {
        let t = Instant::now();
        exec(&mut turbo(env, home, &["status", "--json"]), CLI_LIMIT)?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let mut idle_ms = Vec::new();
    for i in 0..2 + BASELINE_CALLS {
        let ms = status(env)?;
        if i >= 2 {
            idle_ms.push(ms);
        }
    }
    let lost_before = events_lost(env, home)?;
    let churn = env.tools.churn.clone();
    let argv = vec![
        churn.display().to_string(),
        RATE.to_string(),
        seconds.to_string(),
        CODE.to_string(),
    ];
    let cpu_before = sys::thread_cpu_ns(daemon);
    let started = Instant::now();
    m.start(&App::new("churn", argv, Restart::Never))?;
    let mut churn_ms = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        sys::check_interrupted()?;
        thread::sleep(CALL_EVERY);
        churn_ms.push(status(env)?);
    }
    let (app, ended) = wait_exit(env, home, seconds)?;
    let cpu_ns = sys::cpu_ns_between(&cpu_before, &sys::thread_cpu_ns(daemon));
    let churn_s = ended.duration_since(started).as_secs_f64();
    #[expect(clippy::cast_precision_loss, reason = "nanoseconds of CPU")]
    let cpu_percent = cpu_ns as f64 / 1e9 / churn_s * 100.0;
    let lost = events_lost(env, home)?.saturating_sub(lost_before);
    let log = std::fs::read_to_string(m.daemon_log()).unwrap_or_default();
    let out = std::fs::read_to_string(m.out_log("churn")).unwrap_or_default();
    let forks = out
        .lines()
        .find_map(|l| l.split("forked ").nth(1)?.split(' ').next()?.parse().ok())
        .with_context(|| format!("the churn app printed no count: {out}"))?;
    let last = app.get("last_exit").cloned().unwrap_or(Json::Null);
    let field = |k: &str| match last.get(k) {
        Some(Json::Str(s)) => s.clone(),
        Some(Json::Num(n)) => n.to_string(),
        _ => "none".to_owned(),
    };
    let attributed = last.get("code").and_then(Json::as_u32) == Some(CODE)
        && last.get("reason").and_then(Json::as_str) == Some("exit")
        && (source != Source::Ebpf || last.get("source").and_then(Json::as_str) == Some("ebpf"));
    Ok(Phase {
        source,
        idle_ms,
        churn_ms,
        forks,
        churn_s,
        cpu_percent,
        lost,
        recovered: lost == 0 || log.contains(RECOVERED),
        exit: format!(
            "code {}, reason {}, source {}",
            field("code"),
            field("reason"),
            field("source")
        ),
        attributed,
    })
}

/// `events_lost` of `turbo info --json`.
fn events_lost(env: &Env<'_>, home: &Path) -> Result<u64> {
    let out = exec(&mut turbo(env, home, &["info", "--json"]), CLI_LIMIT)?;
    let info = Json::parse(&out).context("`turbo info --json` printed invalid JSON")?;
    Ok(info
        .get("events_lost")
        .and_then(Json::as_u32)
        .map_or(0, u64::from))
}

/// Waits for the churning app to end; its status object and when it was seen ended.
fn wait_exit(env: &Env<'_>, home: &Path, seconds: u64) -> Result<(Json, Instant)> {
    let deadline = Instant::now() + Duration::from_secs(seconds + 30);
    loop {
        sys::check_interrupted()?;
        let out = exec(&mut turbo(env, home, &["status", "--json"]), CLI_LIMIT)?;
        let all = Json::parse(&out).context("`turbo status --json` printed invalid JSON")?;
        let app = all
            .as_array()
            .context("not an array")?
            .iter()
            .find(|a| a.get("name").and_then(Json::as_str) == Some("churn"))
            .cloned()
            .context("the churn app is not listed")?;
        if app.get("state").and_then(Json::as_str) != Some("online") {
            return Ok((app, Instant::now()));
        }
        if Instant::now() >= deadline {
            bail!("the churn app still runs 30 s after its end");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn subject(source: Source, during: bool) -> String {
    format!(
        "{}: `turbo status --json`, {}",
        source.label(),
        if during {
            "during the churn"
        } else {
            "before it"
        }
    )
}

fn outcome(seconds: u64, phases: &[Phase]) -> Outcome {
    let mut rows = Vec::new();
    for p in phases {
        rows.push(Row {
            subject: subject(p.source, false),
            samples: p.idle_ms.clone(),
            extra: vec![Json::Null; 6],
            error: None,
        });
        rows.push(Row {
            subject: subject(p.source, true),
            samples: p.churn_ms.clone(),
            extra: vec![
                Json::from(rate(p).round()),
                Json::from((p.cpu_percent * 100.0).round() / 100.0),
                Json::from(p.lost),
                Json::from(if p.recovered { "yes" } else { "NO" }),
                Json::from(p.exit.clone()),
                Json::from(if p.attributed { "yes" } else { "NO" }),
            ],
            error: None,
        });
    }
    let ebpf = phases.iter().find(|p| p.source == Source::Ebpf);
    let mut targets = vec![Target {
        what: "daemon CPU while an app forks 10,000 children a second, eBPF, % of one core"
            .to_owned(),
        value: ebpf.map(|p| p.cpu_percent),
        limit: CPU_LIMIT_PERCENT,
        shown: ebpf.map_or_else(
            || "not measured".to_owned(),
            |p| format!("{:.2}% ({:.0} forks/s)", p.cpu_percent, rate(p)),
        ),
        limit_shown: format!("≤ {CPU_LIMIT_PERCENT}%"),
    }];
    let wrong = phases.iter().filter(|p| !p.attributed).count();
    let unrecovered = phases.iter().filter(|p| !p.recovered).count();
    #[expect(clippy::cast_precision_loss, reason = "counts of two")]
    targets.push(Target {
        what: "the churning app's own exit (code 7) misattributed, eBPF and procfs".to_owned(),
        value: Some(wrong as f64),
        limit: 0.0,
        shown: phases
            .iter()
            .map(|p| format!("{}: {}", p.source.label(), p.exit))
            .collect::<Vec<_>>()
            .join("; "),
        limit_shown: "0".to_owned(),
    });
    #[expect(clippy::cast_precision_loss, reason = "counts of two")]
    targets.push(Target {
        what: "lost eBPF events not recovered from (trees not re-read)".to_owned(),
        value: Some(unrecovered as f64),
        limit: 0.0,
        shown: format!("{unrecovered} ({} events lost)", ebpf.map_or(0, |p| p.lost)),
        limit_shown: "0".to_owned(),
    });
    Outcome {
        unit: Unit::Millis,
        method: vec![
            format!(
                "The app is `examples/bench/churn.c` (compiled with `cc -O2`): it forks {RATE} \
                 children a second for {seconds} s, paced by the clock, each child exiting at \
                 once, up to 64 in flight, then prints how many it forked and exits with \
                 {CODE}. One TurboProcess daemon per event source, one after the other: its \
                 defaults (eBPF; checked: it holds BPF links), then `TURBO_EBPF=off` (the \
                 procfs fallback; checked: no BPF link). Each also runs {IDLE_APPS} idle \
                 `sleep` apps."
            ),
            format!(
                "Before the churn: 2 warm-up and {BASELINE_CALLS} timed `turbo status --json`. \
                 During it: one every {} ms. The daemon's CPU is the sum over its threads of \
                 `/proc/<pid>/task/<tid>/schedstat` from the app's start to the moment its \
                 exit shows in `status`, divided by that time. Lost events: the growth of \
                 `events_lost` (`turbo info --json`); recovered when the daemon logged that it \
                 re-read the trees (`{RECOVERED}`). The exit: `last_exit` must say code \
                 {CODE}, reason `exit`, and with eBPF, source `ebpf`.",
                CALL_EVERY.as_millis()
            ),
        ],
        params: vec![
            ("forks a second".to_owned(), RATE.to_string()),
            ("churn".to_owned(), format!("{seconds} s")),
            ("idle apps".to_owned(), IDLE_APPS.to_string()),
        ],
        extra_columns: vec![
            "forks/s".to_owned(),
            "daemon CPU, % of a core".to_owned(),
            "events lost".to_owned(),
            "recovered".to_owned(),
            "last exit".to_owned(),
            "exit attributed".to_owned(),
        ],
        rows,
        ratios: phases
            .iter()
            .map(|p| (subject(p.source, true), subject(p.source, false)))
            .collect(),
        targets,
        transcripts: Vec::new(),
        notes: vec![
            "The churn takes a core of its own (forks and exits are kernel work in the \
             forking process): on two cores, every other program, `turbo status` included, \
             shares the other one with it, so the status ratio shows that contention more than \
             the daemon's work."
                .to_owned(),
        ],
    }
}

fn rate(p: &Phase) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "fork counts")]
    let forks = p.forks as f64;
    forks / p.churn_s
}
