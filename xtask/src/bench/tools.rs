//! Everything the bench runs, made present idempotently: the release binaries of TurboProcess,
//! PM2 (npm, into `target/bench-tools/pm2`), supervisord (pip, into a venv at
//! `target/bench-tools/supervisor-venv`) and the C workload programs of `examples/bench/`
//! (into `target/bench-tools/bin`). Also what the report says about the machine and versions.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::bench::json::Json;
use crate::bench::process::exec;
use crate::setup;
use crate::util::{Ctx, output, run};

/// PM2 release the bench installs (npm).
pub const PM2_VERSION: &str = "7.0.4";
/// supervisor release the bench installs (PyPI).
pub const SUPERVISOR_VERSION: &str = "4.3.0";
/// Workload programs: (binary name, source under `examples/bench/`).
const WORKLOADS: &[(&str, &str)] = &[
    ("stamp", "stamp.c"),
    ("logflood", "logflood.c"),
    ("forkexec", "forkexec.c"),
    ("pagefault", "pagefault.c"),
    ("memgrow", "memgrow.c"),
    ("churn", "churn.c"),
];

/// Paths of everything a metric may run.
pub struct Tools {
    pub turbo: PathBuf,
    pub turbo_daemon: PathBuf,
    pub pm2: PathBuf,
    pub supervisord: PathBuf,
    pub supervisorctl: PathBuf,
    /// `examples/bench/stamp.c`, compiled.
    pub stamp: PathBuf,
    /// `examples/bench/logflood.c`, compiled.
    pub logflood: PathBuf,
    /// `examples/bench/forkexec.c`, compiled.
    pub forkexec: PathBuf,
    /// `examples/bench/pagefault.c`, compiled.
    pub pagefault: PathBuf,
    /// `examples/bench/memgrow.c`, compiled.
    pub memgrow: PathBuf,
    /// `examples/bench/churn.c`, compiled.
    pub churn: PathBuf,
    pub cat: PathBuf,
    /// `true(1)`, the program the fork/exec workload starts.
    pub true_: PathBuf,
    /// `sleep(1)`, the idle app.
    pub sleep: PathBuf,
    /// `target/bench-tools`.
    pub dir: PathBuf,
    venv_python: PathBuf,
    pm2_package: PathBuf,
}

/// Set-up steps with how long each took, for the report.
pub type Timings = Vec<(String, Duration)>;

fn timed<T>(timings: &mut Timings, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    println!("\n==> {what}");
    let started = Instant::now();
    let v = f().with_context(|| format!("bench set-up: {what}"))?;
    let took = started.elapsed();
    println!("==> {what}: {:.1}s", took.as_secs_f64());
    timings.push((what.to_owned(), took));
    Ok(v)
}

/// Installs or builds whatever is missing and returns the paths.
pub fn prepare(ctx: &Ctx, target: &Path, timings: &mut Timings) -> Result<Tools> {
    let dir = target.join("bench-tools");
    timed(timings, "setup (nightly rust-src, bpf-linker, apt)", || {
        setup::setup(ctx)
    })?;
    timed(timings, "commands (node, npm, cc, python3)", || {
        ensure_commands(ctx)
    })?;
    timed(timings, "build TurboProcess (release)", || {
        crate::build_release(ctx, None).map(drop)
    })?;
    let release = target.join("release");
    let (turbo, turbo_daemon) = (release.join("turbo"), release.join("turbo-daemon"));
    for bin in [&turbo, &turbo_daemon] {
        if !bin.is_file() {
            bail!("{} was not built", bin.display());
        }
    }
    let pm2_dir = dir.join("pm2");
    timed(timings, &format!("PM2 {PM2_VERSION} (npm)"), || {
        ensure_pm2(ctx, &pm2_dir)
    })?;
    let venv = dir.join("supervisor-venv");
    timed(
        timings,
        &format!("supervisor {SUPERVISOR_VERSION} (pip)"),
        || ensure_supervisor(ctx, &venv),
    )?;
    let bin = dir.join("bin");
    timed(timings, "workloads (cc examples/bench/*.c)", || {
        compile_workloads(ctx, &bin)
    })?;
    Ok(Tools {
        turbo,
        turbo_daemon,
        pm2: pm2_dir.join("node_modules/.bin/pm2"),
        supervisord: venv.join("bin/supervisord"),
        supervisorctl: venv.join("bin/supervisorctl"),
        stamp: bin.join("stamp"),
        logflood: bin.join("logflood"),
        forkexec: bin.join("forkexec"),
        pagefault: bin.join("pagefault"),
        memgrow: bin.join("memgrow"),
        churn: bin.join("churn"),
        cat: ctx.which_system("cat").context("no `cat` in PATH")?,
        true_: ctx.which_system("true").context("no `true` in PATH")?,
        sleep: ctx.which_system("sleep").context("no `sleep` in PATH")?,
        dir,
        venv_python: venv.join("bin/python"),
        pm2_package: pm2_dir.join("node_modules/pm2/package.json"),
    })
}

/// node, npm, cc and python3, installed with apt when missing (as root).
fn ensure_commands(ctx: &Ctx) -> Result<()> {
    let wanted = [
        ("node", "nodejs"),
        ("npm", "npm"),
        ("cc", "gcc"),
        ("python3", "python3"),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(cmd, _)| ctx.which_system(cmd).is_none())
        .map(|&(_, pkg)| pkg)
        .collect();
    if missing.is_empty() {
        println!("ok: node, npm, cc, python3");
        return Ok(());
    }
    apt_install(ctx, &missing)
}

fn apt_install(ctx: &Ctx, packages: &[&str]) -> Result<()> {
    let list = packages.join(" ");
    if !ctx.is_root() {
        bail!(
            "missing packages; install them as root with:\n    \
             sudo apt-get update && sudo apt-get install -y --no-install-recommends {list}"
        );
    }
    println!("installing: {list} (apt)");
    let apt = |args: &[&str]| {
        let mut cmd = ctx.cmd("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    run(&mut apt(&["update", "-q"]))?;
    run(apt(&["install", "-y", "-q", "--no-install-recommends"]).args(packages))
}

fn pm2_installed(package_json: &Path) -> Option<String> {
    let text = fs::read_to_string(package_json).ok()?;
    let v = Json::parse(&text).ok()?;
    v.get("version").and_then(Json::as_str).map(str::to_owned)
}

fn ensure_pm2(ctx: &Ctx, dir: &Path) -> Result<()> {
    let package = dir.join("node_modules/pm2/package.json");
    let bin = dir.join("node_modules/.bin/pm2");
    if pm2_installed(&package).as_deref() == Some(PM2_VERSION) && bin.exists() {
        println!("ok: pm2 {PM2_VERSION} ({})", bin.display());
        return Ok(());
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    println!("installing: pm2 {PM2_VERSION} into {}", dir.display());
    run(ctx
        .cmd("npm")
        .arg("install")
        .arg("--prefix")
        .arg(dir)
        .args([
            "--no-audit",
            "--no-fund",
            "--no-update-notifier",
            "--loglevel=error",
        ])
        .arg(format!("pm2@{PM2_VERSION}")))?;
    match pm2_installed(&package) {
        Some(v) if v == PM2_VERSION && bin.exists() => Ok(()),
        other => bail!("npm installed pm2 {other:?}, expected {PM2_VERSION} with {bin:?}"),
    }
}

fn supervisor_installed(python: &Path) -> Option<String> {
    let mut cmd = Command::new(python);
    cmd.args([
        "-c",
        "import importlib.metadata as m; print(m.version('supervisor'))",
    ]);
    exec(&mut cmd, Duration::from_secs(30))
        .ok()
        .map(|v| v.trim().to_owned())
}

fn ensure_supervisor(ctx: &Ctx, venv: &Path) -> Result<()> {
    let python = venv.join("bin/python");
    let supervisord = venv.join("bin/supervisord");
    if supervisor_installed(&python).as_deref() == Some(SUPERVISOR_VERSION) && supervisord.exists()
    {
        println!(
            "ok: supervisor {SUPERVISOR_VERSION} ({})",
            supervisord.display()
        );
        return Ok(());
    }
    if !python.exists() {
        let make = || run(ctx.cmd("python3").args(["-m", "venv"]).arg(venv));
        if make().is_err() {
            // Debian's python3 needs python3-venv for ensurepip
            let _ = fs::remove_dir_all(venv);
            apt_install(ctx, &["python3-venv"])?;
            make()?;
        }
    }
    println!(
        "installing: supervisor {SUPERVISOR_VERSION} into {}",
        venv.display()
    );
    run(ctx.cmd(&python).args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        &format!("supervisor=={SUPERVISOR_VERSION}"),
    ]))?;
    match supervisor_installed(&python) {
        Some(v) if v == SUPERVISOR_VERSION && supervisord.exists() => Ok(()),
        other => bail!("pip installed supervisor {other:?}, expected {SUPERVISOR_VERSION}"),
    }
}

fn compile_workloads(ctx: &Ctx, bin: &Path) -> Result<()> {
    let cc = ctx
        .which_system("cc")
        .context("no C compiler `cc` (Rust needs it as its linker too)")?;
    fs::create_dir_all(bin)?;
    for (name, source) in WORKLOADS {
        let src = ctx.root.join("examples/bench").join(source);
        let out = bin.join(name);
        let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
        let src_time = modified(&src).with_context(|| format!("{} is missing", src.display()))?;
        if modified(&out).is_some_and(|t| t >= src_time) {
            println!("ok: {name} ({})", out.display());
            continue;
        }
        run(ctx
            .cmd(&cc)
            .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&out)
            .arg(&src))?;
    }
    Ok(())
}

/// First line of a command's stdout, or why there is none.
fn first_line(cmd: &mut Command) -> String {
    match output(cmd) {
        Ok(text) => text.lines().next().unwrap_or("").trim().to_owned(),
        Err(e) => format!("unknown ({e:#})"),
    }
}

/// Versions of the three managers and of what they run on.
pub fn versions(ctx: &Ctx, tools: &Tools) -> Vec<(String, String)> {
    let commit = first_line(ctx.cmd("git").args(["rev-parse", "--short=12", "HEAD"]));
    let dirty = output(
        ctx.cmd("git")
            .args(["status", "--porcelain", "--untracked-files=no"]),
    )
    .map(|s| !s.trim().is_empty())
    .unwrap_or(false);
    let turbo = format!(
        "{} (git {commit}{}; release build)",
        first_line(Command::new(&tools.turbo).arg("--version")),
        if dirty {
            " with uncommitted changes in the work tree"
        } else {
            ""
        }
    );
    vec![
        ("TurboProcess".to_owned(), turbo),
        (
            "PM2".to_owned(),
            pm2_installed(&tools.pm2_package).unwrap_or_else(|| "unknown".to_owned()),
        ),
        (
            "Node.js (runs PM2)".to_owned(),
            first_line(ctx.cmd("node").arg("--version")),
        ),
        (
            "supervisord".to_owned(),
            first_line(Command::new(&tools.supervisord).arg("--version")),
        ),
        (
            "Python (runs supervisord)".to_owned(),
            first_line(Command::new(&tools.venv_python).arg("--version")),
        ),
        (
            "cc (workloads)".to_owned(),
            first_line(ctx.cmd("cc").arg("--version")),
        ),
        (
            "rustc".to_owned(),
            first_line(ctx.cmd("rustc").arg("--version")),
        ),
    ]
}

fn proc_field(path: &str, key: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

/// `/proc/loadavg`'s three averages.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

/// `MemTotal` in GiB.
fn memory() -> String {
    proc_field("/proc/meminfo", "MemTotal")
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or_else(
            || "?".to_owned(),
            #[expect(clippy::cast_precision_loss, reason = "a memory size in KiB")]
            |kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0),
        )
}

/// What the report says about the machine.
pub fn machine(work: &Path) -> Vec<(String, String)> {
    let os = fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "?".to_owned());
    let fs_type = first_line(Command::new("stat").args(["-f", "-c", "%T"]).arg(work));
    vec![
        (
            "nproc".to_owned(),
            std::thread::available_parallelism().map_or_else(|_| "?".to_owned(), |n| n.to_string()),
        ),
        (
            "CPU".to_owned(),
            proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "?".to_owned()),
        ),
        ("memory".to_owned(), memory()),
        (
            "kernel".to_owned(),
            fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "?".to_owned()),
        ),
        ("OS".to_owned(), os),
        (
            "temporary directory".to_owned(),
            format!("{} ({fs_type})", std::env::temp_dir().display()),
        ),
    ]
}
