//! Small process and environment helpers shared by the xtask commands.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use std::{env, fs};

use anyhow::{Context as _, Result, bail};

/// What every command needs to know about the machine and the repository.
pub struct Ctx {
    /// The workspace root (parent of `xtask/`).
    pub root: PathBuf,
    /// `$CARGO_HOME`, default `~/.cargo`.
    pub cargo_home: PathBuf,
    /// `PATH` for every child process: the caller's, with `$CARGO_HOME/bin` added in front when
    /// missing (aya-build finds `bpf-linker` through `PATH`).
    pub path: OsString,
    /// Effective uid of this process.
    pub euid: u32,
}

impl Ctx {
    pub fn new() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask has no parent directory")?
            .to_path_buf();
        let cargo_home = match env::var_os("CARGO_HOME") {
            Some(home) if !home.is_empty() => PathBuf::from(home),
            _ => home_dir()?.join(".cargo"),
        };
        let cargo_bin = cargo_home.join("bin");
        let current = env::var_os("PATH").unwrap_or_default();
        let mut dirs: Vec<PathBuf> = env::split_paths(&current).collect();
        if !dirs.contains(&cargo_bin) {
            dirs.insert(0, cargo_bin);
        }
        let path = env::join_paths(dirs).context("PATH contains an invalid entry")?;
        Ok(Self {
            root,
            cargo_home,
            path,
            euid: euid()?,
        })
    }

    pub fn is_root(&self) -> bool {
        self.euid == 0
    }

    /// A command with our `PATH`, run from the repository root.
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("PATH", &self.path).current_dir(&self.root);
        cmd
    }

    /// `cargo` through `PATH` (the rustup proxy), so rustup picks the toolchain as usual.
    pub fn cargo(&self) -> Command {
        let mut cmd = self.cmd("cargo");
        // setup has just made sure the BPF toolchain is there, so a build without the eBPF
        // object would be a bug to report, not a fallback to take silently
        if env::var_os("TURBO_BUILD_EBPF").is_none() {
            cmd.env("TURBO_BUILD_EBPF", "1");
        }
        cmd
    }

    /// First executable called `name` in our `PATH`.
    pub fn which(&self, name: &str) -> Option<PathBuf> {
        env::split_paths(&self.path)
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
    }

    /// Like [`Ctx::which`], also looking in the sbin/bin directories that a non-root `PATH` may
    /// lack.
    pub fn which_system(&self, name: &str) -> Option<PathBuf> {
        self.which(name).or_else(|| {
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|p| is_executable(p))
        })
    }
}

fn home_dir() -> Result<PathBuf> {
    match env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home)),
        _ => bail!("HOME is not set; set HOME or CARGO_HOME"),
    }
}

/// Effective uid, from `/proc/self/status` (`Uid: real effective saved fs`).
fn euid() -> Result<u32> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .context("no effective uid in /proc/self/status")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The command line as a shell user would type it (env assignments not included).
pub fn display(cmd: &Command) -> String {
    let mut out = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c));
        if plain {
            let _ = write!(out, " {arg}");
        } else {
            let _ = write!(out, " '{}'", arg.replace('\'', r"'\''"));
        }
    }
    out
}

/// Runs `cmd` with inherited stdio (stdin closed: CI has none, and nothing here should prompt),
/// echoing it first; fails with the command line and its exit status.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = display(cmd);
    println!("$ {line}");
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout; on failure the error carries stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let line = display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{line}`"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!("`{line}` failed ({}): {}", out.status, stderr.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `4.2s` below a minute, `3m05s` above.
pub fn human(d: Duration) -> String {
    if d.as_secs() < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}
