//! `cargo xtask fuzz [--seconds N] [TARGET...]`: runs the cargo-fuzz targets of `fuzz/` for a
//! bounded time each, and fails on the first crash, panic, leak, timeout or out-of-memory.
//!
//! The targets (see `fuzz/fuzz_targets/`): `config` (turbo.yml parsing and validation),
//! `state` (the state/dump file decoder), `start_options` (a `StartApp` call body decoded by
//! zvariant, then the daemon's checks), `dto` (the bus types decoded as a client does) and
//! `daemon` (hostile `StartConfig`/`StartApp` calls to a running `turbo-daemon`, which must
//! still answer `Ping` after each; it runs the debug `turbo-daemon` this step builds first, as
//! uid 65534 when run as root).
//!
//! The committed seeds in `fuzz/corpus/<target>/` are read, never written: libFuzzer adds the
//! inputs it finds to the *first* corpus directory it is given, so that is a working copy under
//! `target/fuzz-corpus/<target>/`, kept between local runs (a fresh CI clone starts from the
//! seeds). A crashing input is saved by libFuzzer under `fuzz/artifacts/<target>/` and named
//! in the error, with the command that replays it.
//!
//! `cargo xtask test` runs every target for [`CI_SECONDS`] after the tests
//! ([`after_tests`]); `TURBO_FUZZ_SECONDS` changes that (0 skips fuzzing).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::util::{Ctx, human};

/// Every target, in the order they run.
pub const TARGETS: &[&str] = &["config", "state", "start_options", "dto", "daemon"];
/// Seconds per target in `cargo xtask test`.
pub const CI_SECONDS: u64 = 20;
/// A single input taking longer than this is a hang, reported as a failure.
const INPUT_TIMEOUT_SECS: u64 = 10;

/// The fuzz step of `cargo xtask test`: every target for [`CI_SECONDS`] (or
/// `TURBO_FUZZ_SECONDS`), unless the tests were filtered with arguments (a partial run).
pub fn after_tests(ctx: &Ctx, test_args: &[std::ffi::OsString]) -> Result<()> {
    if !test_args.is_empty() {
        println!("\nskipping the fuzz step: the tests were filtered");
        return Ok(());
    }
    let seconds = match std::env::var("TURBO_FUZZ_SECONDS") {
        Ok(s) => s
            .trim()
            .parse()
            .with_context(|| format!("TURBO_FUZZ_SECONDS={s} is not a number of seconds"))?,
        Err(_) => CI_SECONDS,
    };
    if seconds == 0 {
        println!("\nskipping the fuzz step: TURBO_FUZZ_SECONDS=0");
        return Ok(());
    }
    crate::step("fuzz", || fuzz(ctx, seconds, &[]))
}

/// Builds the targets and runs each of `only` (all when empty) for `seconds`.
pub fn fuzz(ctx: &Ctx, seconds: u64, only: &[String]) -> Result<()> {
    let targets: Vec<&str> = if only.is_empty() {
        TARGETS.to_vec()
    } else {
        for t in only {
            if !TARGETS.contains(&t.as_str()) {
                bail!(
                    "unknown fuzz target {t}: the targets are {}",
                    TARGETS.join(", ")
                );
            }
        }
        only.iter().map(String::as_str).collect()
    };
    crate::setup::ensure_fuzz_tools(ctx)?;
    let dir = ctx.root.join("fuzz");
    let started = Instant::now();
    // all at once (cargo fuzz builds one target or all of them): one cargo invocation
    crate::util::run(fuzz_cmd(ctx, &dir).arg("build"))
        .context("building the fuzz targets failed")?;
    if targets.contains(&"daemon") {
        // the `daemon` target talks to the real binary, an ordinary (not sanitizer) build
        crate::util::run(ctx.cmd("cargo").args(["build", "-p", "turbo-daemon"]))
            .context("building turbo-daemon for the daemon fuzz target failed")?;
    }
    println!("fuzz targets built in {}", human(started.elapsed()));
    let mut summary = Vec::new();
    for target in targets {
        summary.push(run_target(ctx, &dir, target, seconds)?);
    }
    println!("\nfuzzing: every target ran clean");
    for line in summary {
        println!("  {line}");
    }
    Ok(())
}

/// `cargo +nightly fuzz` in `dir`, without the eBPF object (the fuzzed code never loads it,
/// and the sanitizer build would only get slower).
fn fuzz_cmd(ctx: &Ctx, dir: &Path) -> std::process::Command {
    let mut cmd = ctx.cmd("cargo");
    cmd.args(["+nightly", "fuzz"])
        .current_dir(dir)
        .env("TURBO_BUILD_EBPF", "0");
    cmd
}

/// Runs one target; returns its one-line summary.
fn run_target(ctx: &Ctx, dir: &Path, target: &str, seconds: u64) -> Result<String> {
    let seeds = dir.join("corpus").join(target);
    let work = crate::target_dir(ctx).join("fuzz-corpus").join(target);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut cmd = fuzz_cmd(ctx, dir);
    cmd.env(
        "TURBO_FUZZ_DAEMON",
        crate::target_dir(ctx).join("debug").join("turbo-daemon"),
    )
    .args(["run", target])
    .arg(&work)
    .arg(&seeds)
    .arg("--")
    .arg(format!("-max_total_time={seconds}"))
    .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
    .arg("-rss_limit_mb=2048")
    .arg("-print_final_stats=1");
    println!("\n$ {}", crate::util::display(&cmd));
    let started = Instant::now();
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("could not run the fuzz target {target}"))?;
    // libFuzzer reports on stderr; keep the end of it visible either way
    let log = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    if !out.status.success() {
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
        let artifact = log
            .lines()
            .find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim()))
            .unwrap_or("(see the output above)");
        bail!(
            "fuzz target {target} failed ({}): crashing input {artifact}; replay it with \
             `cd fuzz && cargo +nightly fuzz run {target} {artifact}`",
            out.status
        );
    }
    let stat = |name: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
            .map_or("?", str::trim)
            .to_owned()
    };
    let coverage = log
        .lines()
        .rev()
        .find_map(|l| l.split_once(" cov: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("?");
    let corpus = std::fs::read_dir(&work).map_or(0, Iterator::count);
    let line = format!(
        "{target}: {} runs in {} ({} per s), coverage {coverage} edges, corpus {corpus} inputs, peak rss {} MB",
        stat("number_of_executed_units"),
        human(started.elapsed()),
        stat("average_exec_per_sec"),
        stat("peak_rss_mb"),
    );
    println!("{line}");
    Ok(line)
}
