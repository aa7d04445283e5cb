//! `cargo xtask setup | run | test`: the orchestration around cargo for TurboProcess.
//!
//! * `setup` installs what a fresh machine of the project image lacks (nightly `rust-src`,
//!   bpf-linker linked to the nightly's LLVM, apt packages the tests use), idempotently.
//! * `run [config]` builds release binaries and starts a config with the real daemon.
//! * `test` runs fmt, clippy, a debug build of the binaries and the whole test suite; as root
//!   the eBPF tests are required to run.
//! * `bench [--quick]` measures TurboProcess against PM2 and supervisord (see `bench.rs`).
//! * `fuzz [--seconds N] [TARGET...]` runs the cargo-fuzz targets for a bounded time (`fuzz.rs`).
//! * `install [--prefix DIR]` installs the binaries, completions and man pages (`install.rs`).
//! * `dist` builds the Debian package and the static (musl) tarball (`dist.rs`).

mod bench;
mod dist;
mod fuzz;
mod install;
mod setup;
mod util;

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

use crate::util::{Ctx, human, run};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "TurboProcess build, run and test orchestration"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: nightly rust-src, bpf-linker 0.13.0, apt packages (idempotent).
    Setup,
    /// Setup, build release binaries, start a config with the daemon and show the status.
    Run {
        /// The turbo.yml to start [default: examples/turbo.yml in the repository].
        config: Option<PathBuf>,
    },
    /// Setup, then fmt + clippy, build the binaries and run the whole test suite.
    ///
    /// As root the eBPF tests must run (TURBO_TEST_EBPF=1). Arguments after `--` go to
    /// `cargo test`, e.g. `cargo xtask test -- e2e::status` or `-- -p turbo-api`.
    Test {
        /// Skip `cargo fmt --check` and `cargo clippy`.
        #[arg(long)]
        no_lint: bool,
        /// Passed to `cargo test`.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CARGO_TEST_ARGS"
        )]
        args: Vec<OsString>,
    },
    /// Build release binaries and install them with shell completions and man pages.
    Install {
        /// Installation prefix: binaries go to PREFIX/bin, completions and man pages to
        /// PREFIX/share.
        #[arg(long, value_name = "DIR", default_value = "/usr/local")]
        prefix: PathBuf,
        /// Install the binaries already built in DIR (e.g. target/debug) instead of building.
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// Build what users install: the Debian package (checked with lintian) and a statically
    /// linked (musl) tarball, from release binaries, into target/dist.
    Dist {
        /// Package the binaries already built in DIR (e.g. target/debug) instead of building
        /// release ones; makes only the .deb.
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
        /// The package version [default: what `turbo --version` says].
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
        /// Where the artefacts go [default: target/dist].
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Do not run lintian on the .deb.
        #[arg(long)]
        no_lintian: bool,
        /// Compress the .deb with gzip -1 instead of xz (quick, bigger: for tests).
        #[arg(long)]
        fast: bool,
    },
    /// Run the cargo-fuzz targets (config, state, start_options, dto) for a bounded time each;
    /// fails on a crash. Installs cargo-fuzz first if needed (nightly is required).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = fuzz::CI_SECONDS)]
        seconds: u64,
        /// Only these targets [default: all].
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
    },
    /// Install PM2 and supervisord privately, build release binaries, and measure TurboProcess
    /// against both in one run; writes BENCHMARKS.md and target/bench/results.json.
    Bench {
        /// Fewer iterations and lines; writes target/bench/BENCHMARKS.md instead.
        #[arg(long)]
        quick: bool,
        /// Run only these metrics (e.g. `restart,logs`); also writes to target/bench/.
        #[arg(long, value_delimiter = ',', value_name = "METRIC")]
        only: Vec<String>,
        /// Measure nothing: print the commands and configuration files (turbo.yml, PM2
        /// ecosystem files, supervisord.conf) of the last run, or of its `--only` metrics.
        #[arg(long, conflicts_with = "quick")]
        print_config: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = Ctx::new().and_then(|ctx| match cli.command {
        Cmd::Setup => setup::setup(&ctx),
        Cmd::Run { config } => run_config(&ctx, config),
        Cmd::Test { no_lint, args } => test(&ctx, no_lint, &args),
        Cmd::Install { prefix, bin_dir } => install::install(&ctx, &prefix, bin_dir.as_deref()),
        Cmd::Dist {
            bin_dir,
            version,
            out_dir,
            no_lintian,
            fast,
        } => dist::dist(
            &ctx,
            &dist::Options {
                bin_dir,
                version,
                out_dir,
                lintian: !no_lintian,
                fast,
            },
        ),
        Cmd::Bench {
            print_config: true,
            only,
            ..
        } => bench::print_config(&ctx, &only),
        Cmd::Bench { quick, only, .. } => bench::bench(&ctx, quick, &only),
        Cmd::Fuzz { seconds, targets } => fuzz::fuzz(&ctx, seconds, &targets),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `path` made absolute against the directory `cargo xtask` was started from.
fn absolute_from_cwd(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(env::current_dir()
        .context("the current directory is not readable")?
        .join(path))
}

/// Where cargo puts its output: `CARGO_TARGET_DIR` (relative to the repository, which is where
/// we run cargo) or `<repo>/target`.
fn target_dir(ctx: &Ctx) -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => ctx.root.join(dir),
        _ => ctx.root.join("target"),
    }
}

/// `cargo build --release` of `turbo` and `turbo-daemon` (for `target`, or the host); returns
/// the directory that holds them.
fn build_release(ctx: &Ctx, target: Option<&str>) -> Result<PathBuf> {
    let started = Instant::now();
    let mut cmd = ctx.cargo();
    cmd.args([
        "build",
        "--release",
        "-p",
        "turbo-cli",
        "-p",
        "turbo-daemon",
    ]);
    if let Some(t) = target {
        cmd.args(["--target", t]);
    }
    run(&mut cmd)
        .with_context(|| format!("release build for {} failed", target.unwrap_or("this host")))?;
    println!("built in {}", human(started.elapsed()));
    let mut dir = target_dir(ctx);
    if let Some(t) = target {
        dir.push(t);
    }
    Ok(dir.join("release"))
}

fn run_config(ctx: &Ctx, config: Option<PathBuf>) -> Result<()> {
    // an app to name in the hints: the examples have a `ticker`
    let (config, app) = match config {
        Some(path) => (absolute_from_cwd(&path)?, "<name>"),
        None => (ctx.root.join("examples/turbo.yml"), "ticker"),
    };
    if !config.is_file() {
        bail!("config {} does not exist", config.display());
    }
    let home = match env::var_os("TURBO_HOME") {
        Some(home) if !home.is_empty() => absolute_from_cwd(Path::new(&home))?,
        _ => ctx.root.join(".turbo-run"),
    };

    setup::setup(ctx)?;
    let started = Instant::now();
    run(ctx.cargo().args(["build", "--release"])).context("release build failed")?;
    println!("built in {}", human(started.elapsed()));

    let turbo = target_dir(ctx).join("release/turbo");
    if !turbo.is_file() {
        bail!("{} was not built", turbo.display());
    }
    fs::create_dir_all(&home).with_context(|| format!("creating TURBO_HOME {}", home.display()))?;
    println!("TURBO_HOME={}", home.display());
    if env::var_os("TURBO_BUS_ADDRESS").is_some() {
        println!("note: TURBO_BUS_ADDRESS is set; the CLI will use that daemon, not TURBO_HOME's");
    }
    let turbo_cmd = |args: &[&std::ffi::OsStr]| {
        let mut cmd = ctx.cmd(&turbo);
        cmd.args(args).env("TURBO_HOME", &home);
        cmd
    };
    run(&mut turbo_cmd(&["start".as_ref(), config.as_os_str()]))?;
    run(&mut turbo_cmd(&["status".as_ref()]))?;

    let bin_dir = turbo.parent().unwrap_or(Path::new("."));
    println!(
        "\nThe daemon keeps running in the background. To use it from this shell:\n\
         \x20 export TURBO_HOME={home} PATH={bin}:$PATH\n\
         \x20 turbo status                      # or --json\n\
         \x20 turbo logs {app} --lines 20      # one app's logs; add --follow to stream\n\
         \x20 turbo stop all                    # stop the apps (turbo delete all forgets them)\n\
         \x20 turbo kill                        # stop the daemon\n\
         \x20 busctl --address=unix:path=$TURBO_HOME/bus.sock tree org.turboprocess.Turbo1",
        home = home.display(),
        bin = bin_dir.display(),
    );
    Ok(())
}

fn test(ctx: &Ctx, no_lint: bool, args: &[OsString]) -> Result<()> {
    let started = Instant::now();
    let mut totals = None;
    let result = test_steps(ctx, no_lint, args, &mut totals);
    match &result {
        Ok(()) => println!("\ntest: all steps passed in {}", human(started.elapsed())),
        Err(_) => eprintln!("\ntest: FAILED after {}", human(started.elapsed())),
    }
    if let Some(t) = totals {
        // the plain closing line, last on purpose: cargo's own last line is often a doc-test
        // run of a crate that has none ("0 passed"), which says nothing about the suite
        println!(
            "tests: {} passed, {} failed, {} skipped",
            t.passed, t.failed, t.ignored
        );
    }
    result
}

fn test_steps(
    ctx: &Ctx,
    no_lint: bool,
    args: &[OsString],
    totals_out: &mut Option<Totals>,
) -> Result<()> {
    step("setup", || setup::setup(ctx))?;
    if no_lint {
        println!("skipping fmt and clippy (--no-lint)");
    } else {
        step("fmt", || {
            run(ctx.cargo().args(["fmt", "--all", "--check"]))
                .context("formatting differs; run `cargo fmt --all`")
        })?;
        step("clippy", || {
            run(ctx
                .cargo()
                .args(["clippy", "--all-targets", "--", "-D", "warnings"]))
            .context("clippy found problems (warnings are errors)")
        })?;
    }
    step("build", || {
        run(ctx.cargo().args(["build", "--bins"])).context("debug build of the binaries failed")
    })?;
    step("test", || {
        let mut cmd = ctx.cargo();
        cmd.arg("test").args(args);
        match env::var_os("TURBO_TEST_EBPF") {
            Some(v) => println!(
                "TURBO_TEST_EBPF={} (from the environment)",
                v.to_string_lossy()
            ),
            None if ctx.is_root() => {
                println!(
                    "TURBO_TEST_EBPF=1: running as root, the eBPF tests must run and use eBPF"
                );
                cmd.env("TURBO_TEST_EBPF", "1");
            }
            None => println!(
                "not root: the eBPF tests will say they are skipped (run as root to include them)"
            ),
        }
        let result = run_tests(&mut cmd);
        let totals = match result {
            Ok(t) => t,
            Err((t, e)) => {
                *totals_out = Some(t);
                return Err(e);
            }
        };
        let (failed, passed) = (totals.failed, totals.passed);
        *totals_out = Some(totals);
        if failed > 0 {
            bail!("{failed} tests failed");
        }
        if passed == 0 {
            bail!("no test ran");
        }
        Ok(())
    })?;
    fuzz::after_tests(ctx, args)
}

/// Counts summed over every `test result:` line of a `cargo test` run.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// Adds the counts of one `test result: ok. 5 passed; 0 failed; 1 ignored; ...` line.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// Runs `cargo test`, echoing its output as it comes, and sums the results.
fn run_tests(cmd: &mut std::process::Command) -> Result<Totals, (Totals, anyhow::Error)> {
    let mut totals = Totals::default();
    match run_tests_into(cmd, &mut totals) {
        Ok(()) => Ok(totals),
        Err(e) => {
            // a crash or a failed build counts as a failure even if no result line said so
            totals.failed = totals.failed.max(1);
            Err((totals, e))
        }
    }
}

fn run_tests_into(cmd: &mut std::process::Command, totals: &mut Totals) -> Result<()> {
    use std::io::{BufRead as _, BufReader};
    println!("$ {}", util::display(cmd));
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("could not start cargo test")?;
    for line in BufReader::new(child.stdout.take().context("piped stdout")?).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        totals.add_line(&line);
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    Ok(())
}

/// Runs one named step, printing a header and how long it took.
fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    println!("\n==> {name}");
    let started = Instant::now();
    let result = f().with_context(|| format!("step `{name}` failed"));
    if result.is_ok() {
        println!("==> {name}: ok ({})", human(started.elapsed()));
    }
    result
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    fn test_args(argv: &[&str]) -> (bool, Vec<OsString>) {
        match Cli::try_parse_from(argv).unwrap().command {
            Cmd::Test { no_lint, args } => (no_lint, args),
            _ => panic!("not the test command"),
        }
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn totals_sum_every_result_line() {
        let mut t = Totals::default();
        t.add_line("test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s");
        t.add_line(
            "test result: FAILED. 2 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        t.add_line("running 4 tests");
        assert_eq!(
            t,
            Totals {
                passed: 7,
                failed: 3,
                ignored: 1
            }
        );
    }

    #[test]
    fn test_passes_arguments_through() {
        assert_eq!(test_args(&["xtask", "test"]), (false, vec![]));
        assert_eq!(
            test_args(&["xtask", "test", "--no-lint", "--", "e2e::status"]),
            (true, vec!["e2e::status".into()])
        );
        assert_eq!(
            test_args(&[
                "xtask",
                "test",
                "--",
                "-p",
                "turbo-api",
                "--",
                "--nocapture"
            ]),
            (
                false,
                ["-p", "turbo-api", "--", "--nocapture"]
                    .map(OsString::from)
                    .to_vec()
            )
        );
    }
}
