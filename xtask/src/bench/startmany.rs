//! Time to start 100 and 1,000 apps from one configuration file (issues 10 and 21), against a
//! reference that spawns the same commands directly in a loop, with PM2 and supervisord for
//! context at 100 apps.
//!
//! Every app is the stamp program (`examples/bench/stamp.c`) with a file of its own: it writes
//! `CLOCK_MONOTONIC` there first thing on start. One sample is the latest of the stamps minus
//! the time read just before the start command (or the reference's first spawn): from asking
//! to every app having run its first instruction, whatever each manager prints or when its
//! command returns.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::bench::json::Json;
use crate::bench::managers::{App, CLI_LIMIT, Kind, Restart};
use crate::bench::process::exec;
use crate::bench::restart::parse_stamp;
use crate::bench::stats::Summary;
use crate::bench::{Env, Metric, Outcome, Row, Target, Unit, sys};

pub const METRIC: Metric = Metric {
    id: "start-many",
    title: "Time to start 100 and 1,000 apps from a config file",
    run,
};

/// Apps per start: every subject at the first size, TurboProcess and the reference at the
/// second (the peers need minutes for 1,000 programs and are compared at 100 already).
const SIZES: [usize; 2] = [100, 1000];
/// Starts before the measured ones (caches), not counted.
const WARMUP: usize = 1;
/// Longest wait for all stamps of one start, and for the apps to be gone after removal.
const LIMIT: Duration = Duration::from_secs(120);
/// The targets (issue 21): TurboProcess's median at most this multiple of the reference's,
/// per size of [`SIZES`].
const VS_REFERENCE: [f64; 2] = [1.2, 1.3];
/// The configuration file every manager is given (without extension).
const FILE: &str = "many";

/// One subject: a manager, or the reference (`kind` None), at one size.
struct Subject {
    kind: Option<Kind>,
    apps: usize,
    /// The commands and files of its last start.
    transcript: Vec<String>,
    row: Row,
    /// When the start command returned, per measured start, in ms after the start.
    returned: Vec<f64>,
}

fn run(env: &mut Env<'_>) -> Result<Outcome> {
    let starts = if env.quick { 2 } else { 5 };
    let mut subjects: Vec<Subject> = SIZES
        .iter()
        .flat_map(|&apps| {
            let kinds: &[Kind] = if apps == SIZES[0] {
                &Kind::ALL
            } else {
                &[Kind::Turbo]
            };
            std::iter::once(None)
                .chain(kinds.iter().copied().map(Some))
                .map(move |kind| (kind, apps))
        })
        .map(|(kind, apps)| Subject {
            kind,
            apps,
            transcript: Vec::new(),
            row: Row {
                subject: subject(kind, apps),
                samples: Vec::new(),
                extra: vec![Json::Null],
                error: None,
            },
            returned: Vec::new(),
        })
        .collect();
    println!("start {SIZES:?} apps: {starts} measured starts per subject, in rounds");
    let result = rounds(env, starts, &mut subjects);
    let mut rows = Vec::new();
    let mut transcripts = Vec::new();
    for mut s in subjects {
        if s.kind.is_some() {
            transcripts.push((s.row.subject.clone(), std::mem::take(&mut s.transcript)));
        }
        s.row.extra = vec![Summary::of(&s.returned).map(|x| round1(x.median)).into()];
        if let Some(x) = Summary::of(&s.row.samples) {
            println!(
                "  {}: median {:.0} ms, min {:.0} ms, max {:.0} ms (n={})",
                s.row.subject, x.median, x.min, x.max, x.n
            );
        }
        rows.push(s.row);
    }
    result?;
    let stamp = env.show(&env.tools.stamp.display().to_string());
    let [small, large] = SIZES;
    let mut outcome = Outcome {
        unit: Unit::Millis,
        method: vec![
            format!(
                "Every app is `examples/bench/stamp.c` with a stamp file of its own (`{stamp} \
                 $DIR/sNNNN.txt`): first thing on start it writes `CLOCK_MONOTONIC` there. The \
                 harness reads the same clock, runs the start command and waits for all the \
                 stamps; one sample is the latest stamp minus the time read before the command, \
                 so from asking to the last app running its first instruction (not until the \
                 command returns, which is shown apart). Then the manager's own view must list \
                 every app running, the daemon is shut down (`turbo kill`, `pm2 kill`, \
                 `supervisorctl shutdown`) and the harness waits until the processes are \
                 gone. Each start gets a fresh daemon (its start-up is not timed): removing {small} \
                 programs from a running supervisord takes minutes, one pass of its main loop \
                 per program."
            ),
            format!(
                "TurboProcess: `turbo start many.yml` (one file with all the apps, \
                 `autorestart: never`); PM2: `pm2 start many.json` (an ecosystem file, \
                 `interpreter: none`, fork mode); supervisord: an `[include]`d file with {small} \
                 `[program:x]` sections (`startsecs=0`) and `supervisorctl update`. The \
                 reference is the harness itself spawning the same commands in a loop \
                 (`std::process::Command::spawn`, output to /dev/null): the cost of the \
                 fork/exec a manager cannot avoid. {small} apps: every subject; {large} apps: \
                 TurboProcess and the reference only (the peers are compared at {small}). \
                 {WARMUP} warm-up start per subject, not counted; each round starts every \
                 subject once, each round starting with a different one."
            ),
        ],
        params: vec![
            ("apps per start".to_owned(), format!("{small} and {large}")),
            ("measured starts per subject".to_owned(), starts.to_string()),
        ],
        extra_columns: vec!["command returned after (median, ms)".to_owned()],
        rows,
        ratios: SIZES
            .iter()
            .flat_map(|&apps| {
                Kind::ALL
                    .iter()
                    .filter(move |&&k| apps == small || k == Kind::Turbo)
                    .map(move |&k| (subject(Some(k), apps), subject(None, apps)))
            })
            .collect(),
        targets: Vec::new(),
        transcripts,
        notes: vec![
            "Where the time goes (the reason when the target is missed): the daemon starts the apps one after another on its \
             one thread, and each costs more than the reference's bare spawn: the spawn \
             itself (`posix_spawn` for plain apps), a pidfd, the eBPF watch, the state \
             bookkeeping and D-Bus signals for each state change. The log keeper opens every \
             app's files in one exchange before the spawns and takes their pipes in one \
             batch after them; `turbo start` returns once all are online. A profile of a \
             1,000-app start (`perf record` on the daemon and its keepers, issue 21): the \
             keeper's time is mostly creating the 2,000 log files (`ext4_create`, about \
             three quarters of it once the per-file directory listing was batched; the \
             daemon waits for those opens, since a start fails whole before its process \
             exists when its output cannot be captured); the daemon's own thread spends \
             about a seventh in `clone3` and the rest spread over the per-app work above, \
             no function above a few percent; the config check (on a blocking thread, \
             before the first spawn) is mostly allocation. What meeting the target would \
             need: the keeper creating the files of the next batch while the daemon spawns \
             the current one (the opens overlap the spawns instead of preceding them, each \
             app still spawned only once its files are open), and a third of the daemon's \
             per-app work (0.55 ms of its thread per app in that profile) moved off the \
             spawn path."
                .to_owned(),
        ],
    };
    for (apps, limit) in SIZES.into_iter().zip(VS_REFERENCE) {
        let (turbo, reference) = (subject(Some(Kind::Turbo), apps), subject(None, apps));
        let ratio = outcome.ratio(&turbo, &reference);
        let med = |s: &str| outcome.summary(s).map(|s| s.median);
        let shown = match (ratio, med(&turbo), med(&reference)) {
            (Some(r), Some(t), Some(p)) => format!("{r:.2} ({t:.0} ms / {p:.0} ms)"),
            _ => "not measured".to_owned(),
        };
        outcome.targets.push(Target {
            what: format!(
                "time to start {apps} apps from a config file, TurboProcess / spawning them in \
                 a loop (medians)"
            ),
            value: ratio,
            limit,
            shown,
            limit_shown: format!("≤ {limit}"),
        });
    }
    Ok(outcome)
}

/// The row of `kind` (the reference when `None`) at `apps` apps.
fn subject(kind: Option<Kind>, apps: usize) -> String {
    match kind {
        Some(k) => format!("{}, {apps} apps", k.label()),
        None => format!("reference: the {apps} commands spawned in a loop"),
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Runs the rounds; a subject that fails is left out from then on, with its error in its row.
fn rounds(env: &mut Env<'_>, starts: usize, subjects: &mut [Subject]) -> Result<()> {
    let n = subjects.len();
    for round in 0..WARMUP + starts {
        for j in 0..n {
            sys::check_interrupted()?;
            let s = &mut subjects[(round + j) % n];
            if s.row.error.is_some() {
                continue;
            }
            let name = format!(
                "{}-{}-{round}",
                s.kind.map_or("reference", Kind::key),
                s.apps
            );
            match start_once(env, s, &name) {
                Ok((ms, returned)) if round >= WARMUP => {
                    s.row.samples.push(ms);
                    s.returned.push(returned);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("  {}: start {}: {e:#}", s.row.subject, round + 1);
                    s.row.error = Some(format!("start {}: {e:#}", round + 1));
                }
            }
        }
    }
    Ok(())
}

/// The stamp files of one start of `apps` apps, in `dir`.
fn stamp_files(dir: &Path, apps: usize) -> Vec<PathBuf> {
    (0..apps)
        .map(|i| dir.join(format!("s{i:04}.txt")))
        .collect()
}

/// One start of all apps, measured, then everything stopped again: a fresh daemon each time,
/// shut down afterwards (removing 100 programs from supervisord one main-loop pass at a time
/// takes minutes; a shutdown stops them all at once). Returns the sample and when the start
/// command returned (both in ms after the start).
fn start_once(env: &mut Env<'_>, s: &mut Subject, name: &str) -> Result<(f64, f64)> {
    let stamp = env.tools.stamp.clone();
    let dir = env.dir("start-many", name)?;
    let files = stamp_files(&dir, s.apps);
    let mut mgr = match s.kind {
        Some(kind) => Some(env.launch_with(kind, "start-many", name, &[])?),
        None => None,
    };
    let apps: Vec<App> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            App::new(
                &format!("m{i:04}"),
                vec![stamp.display().to_string(), f.display().to_string()],
                Restart::Never,
            )
        })
        .collect();
    let mut children: Vec<Child> = Vec::new();
    let (t0, returned_ns) = match mgr.as_mut() {
        Some(m) => {
            let mut cmd = m.start_all_command(FILE, &apps)?;
            let t0 = sys::mono_ns();
            exec(&mut cmd, CLI_LIMIT)?;
            (t0, sys::mono_ns())
        }
        None => {
            let t0 = sys::mono_ns();
            for app in &apps {
                let child = Command::new(&app.argv[0])
                    .args(&app.argv[1..])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("spawning the stamp program")?;
                children.push(child);
            }
            (t0, sys::mono_ns())
        }
    };
    let stamps = wait_stamps(&files);
    let pids: Vec<u32> = stamps
        .as_ref()
        .map(|v| v.iter().map(|&(pid, _)| pid).collect())
        .unwrap_or_default();
    for &pid in &pids {
        env.watch_pid(pid, &stamp);
    }
    // clean up whatever happened, then judge
    let listed = match mgr.as_mut() {
        Some(m) => {
            let listed = m.app_pids().map(|p| p.len());
            m.shutdown()?;
            s.transcript = m.transcript().to_vec();
            listed
        }
        None => {
            for c in &mut children {
                let _ = c.kill();
                let _ = c.wait();
            }
            Ok(s.apps)
        }
    };
    wait_gone(&pids, &stamp)?;
    let stamps = stamps?;
    let listed = listed?;
    if listed < s.apps {
        bail!(
            "all {} apps stamped, but the manager lists only {listed} running",
            s.apps
        );
    }
    let last = stamps.iter().map(|&(_, ns)| ns).max().context("no stamp")?;
    if last < t0 {
        bail!("a stamp ({last}) is older than the start ({t0})");
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "nanosecond spans far below 2^53"
    )]
    let ms = |ns: i64| ns as f64 / 1e6;
    Ok((ms(last - t0), ms(returned_ns - t0)))
}

/// Polls the stamp files until all exist; their (pid, ns).
fn wait_stamps(files: &[PathBuf]) -> Result<Vec<(u32, i64)>> {
    let deadline = Instant::now() + LIMIT;
    let mut found: Vec<Option<(u32, i64)>> = vec![None; files.len()];
    loop {
        for (slot, f) in found.iter_mut().zip(files) {
            if slot.is_none()
                && let Ok(text) = fs::read_to_string(f)
            {
                *slot = Some(
                    parse_stamp(&text)
                        .with_context(|| format!("{} holds `{}`", f.display(), text.trim()))?,
                );
            }
        }
        let done = found.iter().filter(|s| s.is_some()).count();
        if done == files.len() {
            return Ok(found.into_iter().flatten().collect());
        }
        if Instant::now() >= deadline {
            bail!(
                "only {done} of {} apps started within {LIMIT:?}",
                files.len()
            );
        }
        sys::check_interrupted()?;
        // the stamps hold the times: polling slowly costs no precision, only less CPU taken
        // from the managers
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until none of `pids` runs `program` any more.
fn wait_gone(pids: &[u32], program: &Path) -> Result<()> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = pids.iter().filter(|&&p| sys::runs(p, program)).count();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{left} apps still ran {LIMIT:?} after they were removed");
        }
        sys::check_interrupted()?;
        thread::sleep(Duration::from_millis(50));
    }
}
