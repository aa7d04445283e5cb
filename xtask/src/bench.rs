//! `cargo xtask bench [--quick]`: TurboProcess side by side with PM2 and supervisord.
//!
//! One run installs what is missing (`tools`), builds the release binaries, then runs every
//! metric of [`METRICS`] against the three managers (each in a private home under one temporary
//! directory, talking over local sockets only), and writes `BENCHMARKS.md` plus
//! `target/bench/results.json` and the exact commands and generated configuration files to
//! `target/bench/commands.md` (`report`; `--print-config` prints the latter). A metric is a plain function from [`Env`] to an
//! [`Outcome`]: samples per subject, ratios and targets; adding one is adding a module and a
//! line to [`METRICS`]. Whatever happens, every daemon is stopped and the temporary directory
//! removed: the managers shut down when dropped, stray workload processes are killed by pid,
//! and Ctrl-C is turned into an error that unwinds through the same path.

mod churn;
mod exitsource;
mod fleet;
mod idle;
mod json;
mod logs;
mod managers;
mod memlimit;
mod probes;
mod process;
mod report;
mod restart;
mod scale;
mod scrape;
mod startmany;
mod stats;
mod status;
mod sys;
mod tools;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::bench::json::Json;
use crate::bench::managers::{Kind, Manager, Subst};
use crate::bench::process::TempDir;
use crate::bench::stats::Summary;
use crate::bench::tools::Tools;
use crate::util::{Ctx, human, output};

/// A benchmark: a name and the function that measures it.
pub struct Metric {
    /// Short key (JSON, directory names).
    pub id: &'static str,
    /// Section title in BENCHMARKS.md.
    pub title: &'static str,
    pub run: fn(&mut Env<'_>) -> Result<Outcome>,
}

/// Every metric, in report order.
const METRICS: &[Metric] = &[
    restart::METRIC,
    logs::METRIC,
    probes::METRIC,
    idle::METRIC,
    exitsource::METRIC,
    status::METRIC,
    startmany::METRIC,
    memlimit::METRIC,
    scrape::METRIC,
    scale::METRIC,
    churn::METRIC,
];

/// The unit of a metric's samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Millis,
    Seconds,
}

impl Unit {
    pub fn key(self) -> &'static str {
        match self {
            Unit::Millis => "ms",
            Unit::Seconds => "s",
        }
    }
}

/// The samples of one subject (a manager, or a reference) and what else was counted.
pub struct Row {
    pub subject: String,
    pub samples: Vec<f64>,
    /// Values of [`Outcome::extra_columns`], in order.
    pub extra: Vec<Json>,
    /// Why this subject could not be (fully) measured.
    pub error: Option<String>,
}

/// A pass/fail line of the summary.
pub struct Target {
    /// What is compared, e.g. "TurboProcess / PM2, medians".
    pub what: String,
    /// The number compared with `limit` (`None`: not measured).
    pub value: Option<f64>,
    /// Met when `value <= limit`.
    pub limit: f64,
    /// `value` for people, with its inputs.
    pub shown: String,
    /// `limit` for people, e.g. "≤ 1/3".
    pub limit_shown: String,
}

impl Target {
    pub fn met(&self) -> bool {
        self.value.is_some_and(|v| v <= self.limit)
    }
}

/// What a metric measured, ready for the report.
pub struct Outcome {
    pub unit: Unit,
    /// How it was measured (markdown paragraphs).
    pub method: Vec<String>,
    pub params: Vec<(String, String)>,
    pub extra_columns: Vec<String>,
    pub rows: Vec<Row>,
    /// Ratios of medians to show: (numerator subject, denominator subject).
    pub ratios: Vec<(String, String)>,
    pub targets: Vec<Target>,
    /// Per subject, the exact commands and config files used.
    pub transcripts: Vec<(String, Vec<String>)>,
    pub notes: Vec<String>,
}

impl Outcome {
    pub fn summary(&self, subject: &str) -> Option<Summary> {
        self.rows
            .iter()
            .find(|r| r.subject == subject)
            .and_then(|r| Summary::of(&r.samples))
    }

    /// Median of `num` over median of `den`.
    pub fn ratio(&self, num: &str, den: &str) -> Option<f64> {
        let (n, d) = (self.summary(num)?, self.summary(den)?);
        (d.median > 0.0).then(|| n.median / d.median)
    }
}

/// What a metric gets: the tools, the size of the run, places for its files, and managers.
pub struct Env<'a> {
    pub tools: &'a Tools,
    pub quick: bool,
    work: PathBuf,
    subst: Subst,
    facts: Vec<(String, String)>,
    /// Workload processes seen, killed at the end of each metric if still there.
    leftovers: Vec<(u32, PathBuf)>,
}

impl Env<'_> {
    /// A fresh directory `<work>/<metric>/<name>` for a metric's files.
    pub fn dir(&self, metric: &str, name: &str) -> Result<PathBuf> {
        let dir = self.work.join(metric).join(name);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Starts a manager's daemon with a private home under the metric's directory.
    pub fn launch(&mut self, kind: Kind, metric: &str) -> Result<Box<dyn Manager>> {
        self.launch_with(kind, metric, kind.key(), &[])
    }

    /// Like [`Env::launch`], with the home in `<metric>/<name>` (several daemons of one kind in
    /// one metric) and `env` set for the daemon (TurboProcess only, e.g. `TURBO_EBPF=off`).
    pub fn launch_with(
        &mut self,
        kind: Kind,
        metric: &str,
        name: &str,
        env: &[(&str, &str)],
    ) -> Result<Box<dyn Manager>> {
        let home = self.dir(metric, name)?.join("home");
        let mut m = managers::launch(kind, self.tools, &home, &self.subst, env)?;
        for fact in m.facts() {
            if !self.facts.iter().any(|(k, _)| *k == fact.0) {
                self.facts.push(fact);
            }
        }
        Ok(m)
    }

    /// Remembers a workload process, to kill it at the end if a manager left it behind.
    pub fn watch_pid(&mut self, pid: u32, program: &Path) {
        if !self.leftovers.iter().any(|(p, _)| *p == pid) {
            self.leftovers.push((pid, program.to_path_buf()));
        }
    }

    /// The run's temporary directory written as `$WORK` (for method texts).
    pub fn show(&self, text: &str) -> String {
        self.subst.apply(text)
    }

    fn kill_leftovers(&mut self) {
        for (pid, program) in self.leftovers.drain(..) {
            if sys::runs(pid, &program) {
                eprintln!(
                    "warning: {} (pid {pid}) outlived its manager; killing it",
                    program.display()
                );
                let _ = sys::send_signal(pid, sys::SIGKILL);
            }
        }
    }
}

impl Drop for Env<'_> {
    fn drop(&mut self) {
        self.kill_leftovers();
    }
}

/// How the run went, for the report.
pub struct RunInfo {
    pub date: String,
    pub quick: bool,
    /// Only some metrics ran (`--only`).
    pub partial: bool,
    pub took: Duration,
    pub machine: Vec<(String, String)>,
    pub versions: Vec<(String, String)>,
    pub facts: Vec<(String, String)>,
    pub load_before: String,
    pub load_after: String,
    pub timings: Vec<(String, Duration)>,
}

impl RunInfo {
    pub fn command(&self, measured: &[Measured]) -> String {
        let mut cmd = String::from("cargo xtask bench");
        if self.quick {
            cmd.push_str(" --quick");
        }
        if self.partial {
            let ids: Vec<&str> = measured.iter().map(|m| m.metric.id).collect();
            cmd.push_str(&format!(" --only {}", ids.join(",")));
        }
        cmd
    }
}

/// One metric's result in the report: its outcome, or why it failed.
pub struct Measured {
    pub metric: &'static Metric,
    pub took: Duration,
    pub outcome: Result<Outcome, String>,
}

/// The metrics named in `only` (all when empty); fails on an unknown name.
fn selected(only: &[String]) -> Result<Vec<&'static Metric>> {
    for name in only {
        if !METRICS.iter().any(|m| m.id == name) {
            let known: Vec<&str> = METRICS.iter().map(|m| m.id).collect();
            bail!("no metric `{name}`; known: {}", known.join(", "));
        }
    }
    Ok(METRICS
        .iter()
        .filter(|m| only.is_empty() || only.iter().any(|o| o == m.id))
        .collect())
}

/// `--print-config`: the commands and configuration files of the last run (all metrics, or
/// those of `only`), as that run wrote them to `target/bench/commands.md`.
pub fn print_config(ctx: &Ctx, only: &[String]) -> Result<()> {
    selected(only)?;
    let path = crate::target_dir(ctx)
        .join("bench")
        .join(report::COMMANDS_FILE);
    let file = match fs::read_to_string(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no run has written {} yet; `cargo xtask bench --quick` (or `--only METRIC`) writes it",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let shown = report::commands_of(&file, only);
    if shown.is_empty() {
        bail!(
            "the last run (in {}) did not measure {}; run `cargo xtask bench --only {}`",
            path.display(),
            only.join(", "),
            only.join(",")
        );
    }
    print!("{shown}");
    Ok(())
}

pub fn bench(ctx: &Ctx, quick: bool, only: &[String]) -> Result<()> {
    let metrics = selected(only)?;
    sys::trap_interrupts();
    let started = Instant::now();
    let date = output(ctx.cmd("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]))?
        .trim()
        .to_owned();
    let target = crate::target_dir(ctx);
    let mut timings = Vec::new();
    let tools = tools::prepare(ctx, &target, &mut timings)?;
    let versions = tools::versions(ctx, &tools);
    let work = TempDir::new()?;
    let machine = tools::machine(work.path());
    let load_before = tools::loadavg();

    let root = format!("{}/", ctx.root.display());
    let subst = Subst(vec![
        (work.path().display().to_string(), "$WORK".to_owned()),
        (
            tools.dir.display().to_string(),
            "target/bench-tools".to_owned(),
        ),
        (target.display().to_string(), "target".to_owned()),
        (root, String::new()),
    ]);
    let mut env = Env {
        tools: &tools,
        quick,
        work: work.path().to_path_buf(),
        subst,
        facts: Vec::new(),
        leftovers: Vec::new(),
    };
    let mut measured = Vec::new();
    for metric in metrics {
        println!("\n==> metric `{}`: {}", metric.id, metric.title);
        let t = Instant::now();
        let outcome = (metric.run)(&mut env).map_err(|e| format!("{e:#}"));
        env.kill_leftovers();
        let took = t.elapsed();
        match &outcome {
            Ok(_) => println!("==> metric `{}`: done in {}", metric.id, human(took)),
            Err(e) => eprintln!(
                "==> metric `{}`: FAILED after {}: {e}",
                metric.id,
                human(took)
            ),
        }
        measured.push(Measured {
            metric,
            took,
            outcome,
        });
        sys::check_interrupted()?;
    }
    let facts = std::mem::take(&mut env.facts);
    drop(env);
    drop(work);

    let info = RunInfo {
        date,
        quick,
        partial: !only.is_empty(),
        took: started.elapsed(),
        machine,
        versions,
        facts,
        load_before,
        load_after: tools::loadavg(),
        timings,
    };
    let out_dir = target.join("bench");
    fs::create_dir_all(&out_dir)?;
    let md_path = if quick || info.partial {
        out_dir.join("BENCHMARKS.md")
    } else {
        ctx.root.join("BENCHMARKS.md")
    };
    let json_path = out_dir.join("results.json");
    let commands_path = out_dir.join(report::COMMANDS_FILE);
    fs::write(&md_path, report::markdown(&info, &measured))
        .with_context(|| format!("writing {}", md_path.display()))?;
    fs::write(&commands_path, report::commands(&info, &measured))
        .with_context(|| format!("writing {}", commands_path.display()))?;
    fs::write(&json_path, report::json(&info, &measured).pretty() + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!("\n{}", report::summary_text(&measured));
    println!(
        "wrote {}, {} and {} ({} in all)",
        md_path.display(),
        json_path.display(),
        commands_path.display(),
        human(info.took)
    );

    let problems: Vec<String> = measured
        .iter()
        .flat_map(|m| match &m.outcome {
            Err(e) => vec![format!("{}: {e}", m.metric.id)],
            Ok(o) => o
                .rows
                .iter()
                .filter_map(|r| {
                    r.error
                        .as_ref()
                        .map(|e| format!("{} / {}: {e}", m.metric.id, r.subject))
                })
                .collect(),
        })
        .collect();
    if !problems.is_empty() {
        bail!(
            "some measurements failed (the report says which):\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(())
}
