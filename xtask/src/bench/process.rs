//! Running commands with a time bound, and owning what must be cleaned up.

use std::fs;
use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use rustix::event::{PollFd, PollFlags};

use crate::util::display;

/// What a bounded command printed.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (stdin closed) for at most `limit`; on time-out the child is killed and this
/// fails. Does not look at the exit status.
pub fn exec_any(cmd: &mut Command, limit: Duration) -> Result<Output> {
    let line = display(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{line}`"))?;
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let status = match wait_bounded(&mut child, limit) {
        Ok(status) => status,
        Err(e) => return Err(e.context(format!("`{line}` did not finish"))),
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Like [`exec_any`], and fails (with stderr) unless the command succeeded; returns stdout.
pub fn exec(cmd: &mut Command, limit: Duration) -> Result<String> {
    let line = display(cmd);
    let out = exec_any(cmd, limit)?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            last_lines(&format!("{}\n{}", out.stdout, out.stderr), 6)
        );
    }
    Ok(out.stdout)
}

/// Waits for our own child for at most `limit`, then kills it (by its id) and reaps it.
/// Ctrl-C does not cut this short: clean-up commands (`pm2 kill`, ...) must still run after
/// one, and every wait is bounded anyway.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + limit;
    // Woken by the child's pidfd rather than by polling on a timer: a sleep between checks
    // would round every measured command up to that period (with a 5 ms poll, `turbo status`
    // measured a flat 5.3 ms whatever the number of apps).
    let pidfd = pidfd_open(child.id());
    loop {
        if let Some(status) = child.try_wait().context("waiting for a child")? {
            return Ok(status);
        }
        let now = Instant::now();
        if now >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("still running after {limit:?}; killed it");
        }
        match &pidfd {
            Some(fd) => {
                let wait = (deadline - now).max(Duration::from_millis(1));
                let timeout = rustix::event::Timespec::try_from(wait).ok();
                let mut fds = [PollFd::new(fd, PollFlags::IN)];
                // a pidfd turns readable when the process exits; an error is a shorter wait
                let _ = rustix::event::poll(&mut fds, timeout.as_ref());
            }
            None => thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// A pidfd of `pid` (readable once it has exited), or `None` where the kernel has none.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// The last `n` non-empty lines of `text`, joined with " | " (for one-line errors).
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// The tail of a file, for error messages about a daemon that did not come up.
pub fn file_tail(path: &Path, n: usize) -> String {
    fs::read_to_string(path)
        .map(|t| last_lines(&t, n))
        .unwrap_or_else(|e| format!("({} unreadable: {e})", path.display()))
}

/// A directory removed (with everything in it) when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/turbo-bench-<pid>`, fresh.
    pub fn new() -> Result<Self> {
        let path = std::env::temp_dir().join(format!("turbo-bench-{}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path)
                .with_context(|| format!("removing a stale {}", path.display()))?;
        }
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            eprintln!("warning: could not remove {}: {e}", self.0.display());
        }
    }
}
