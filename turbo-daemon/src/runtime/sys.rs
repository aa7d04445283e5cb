//! The narrow door to the operating system: spawning in a new session, pidfds, reaping,
//! signalling process groups, reading `/proc`, locking files.
//!
//! Every syscall the runtime makes goes through here, so the rest of the runtime reads as
//! policy-free plumbing. Nothing here decides *when* to do anything.

use std::{
    fs::File,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    path::Path,
    process::{Command, Stdio},
};

use crate::{events::WaitStatus, supervisor::AppSpec};

/// A freshly started process and the fds the runtime keeps for it.
#[derive(Debug)]
pub struct Child {
    /// Process id (also its session and process group id).
    pub pid: u32,
    /// pidfd: becomes readable when the process exits; used to reap it.
    pub pidfd: OwnedFd,
    /// Read end of its stdout.
    pub stdout: OwnedFd,
    /// Read end of its stderr.
    pub stderr: OwnedFd,
}

/// Starts `spec` in its own session (so it leads its own process group and has no controlling
/// terminal), stdin from /dev/null, stdout and stderr into pipes.
///
/// # Errors
/// The spawn error with the program named.
pub fn spawn(spec: &AppSpec) -> io::Result<Child> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {program}: {e}")))?;
    let pid = child.id();
    // The child has not been waited for, so its pid cannot have been reused: pidfd_open is
    // race-free here even if it already exited (it is a zombie until we reap it).
    let pidfd = pidfd_open(pid)?;
    let stdout = OwnedFd::from(child.stdout.take().expect("stdout was piped"));
    let stderr = OwnedFd::from(child.stderr.take().expect("stderr was piped"));
    // Dropping `child` neither waits nor kills; the pidfd owns the reaping from now on.
    drop(child);
    set_nonblocking(&stdout)?;
    set_nonblocking(&stderr)?;
    Ok(Child {
        pid,
        pidfd,
        stdout,
        stderr,
    })
}

/// Opens a pidfd for `pid` (child or not): it becomes readable when the process exits.
///
/// # Errors
/// `ESRCH` when the process does not exist.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel just returned this fd to us and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0
        || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reaps the exited process behind `pidfd` and returns how it ended.
///
/// # Errors
/// `WouldBlock` if it has not exited yet; other errors from `waitid`.
pub fn reap(pidfd: &OwnedFd) -> io::Result<WaitStatus> {
    // SAFETY: zeroed siginfo_t is a valid out-parameter.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid with P_PIDFD on an fd we own; WNOHANG so it never blocks the loop.
    let rc = unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &raw mut info,
            libc::WEXITED | libc::WNOHANG,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid filled the SIGCHLD fields (si_pid is 0 if nothing was ready).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let status = u8::try_from(status & 0xff).unwrap_or(0);
    Ok(match info.si_code {
        libc::CLD_EXITED => WaitStatus::exited(status),
        libc::CLD_DUMPED => WaitStatus(u32::from(status & 0x7f) | 0x80),
        _ => WaitStatus::signaled(status),
    })
}

/// Sends `signal` to the process group `pgid`. A group that is already gone is not an error.
///
/// # Errors
/// Any other `kill(2)` failure.
pub fn signal_group(pgid: u32, signal: i32) -> io::Result<()> {
    let pgid = i32::try_from(pgid).map_err(|_| io::Error::other("pgid out of range"))?;
    // SAFETY: plain syscall.
    if unsafe { libc::kill(-pgid, signal) } < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            return Err(err);
        }
    }
    Ok(())
}

/// Whether process group `pgid` still has a member (zombies count until they are reaped).
#[must_use]
pub fn group_alive(pgid: u32) -> bool {
    let Ok(pgid) = i32::try_from(pgid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(-pgid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Start time of a process in clock ticks since boot (field 22 of `/proc/<pid>/stat`); with
/// the pid it identifies a process even after the pid is reused.
#[must_use]
pub fn start_ticks(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// How long process `pid` has run, if it is the one that started at `start_ticks`.
#[must_use]
pub fn process_age(pid: u32, expected_start_ticks: u64) -> Option<std::time::Duration> {
    let fields = stat_fields(pid)?;
    if fields.first().is_some_and(|s| s.as_str() == "Z") {
        return None;
    }
    let start: u64 = fields.get(19)?.parse().ok()?;
    if start != expected_start_ticks {
        return None; // the pid was reused
    }
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    #[expect(clippy::cast_precision_loss, reason = "tick counts far below 2^52")]
    let started = start as f64 / clock_ticks() as f64;
    Some(std::time::Duration::from_secs_f64(
        (uptime - started).max(0.0),
    ))
}

/// The fields of `/proc/<pid>/stat` after the command name: `fields[0]` is field 3 (state).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name may contain spaces and parentheses: fields start after the last ')'
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split(' ').map(str::to_owned).collect())
}

/// CPU time (user + system, in clock ticks) and resident memory (bytes) of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcSample {
    /// utime + stime in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

/// Reads `/proc/<pid>/stat`. `None` if the process is gone.
#[must_use]
pub fn sample(pid: u32) -> Option<ProcSample> {
    let fields = stat_fields(pid)?;
    // field 3 (state) is fields[0], so field N is fields[N - 3]
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    Some(ProcSample {
        cpu_ticks: utime + stime,
        rss_bytes: rss_pages * page_size(),
    })
}

/// Clock ticks per second (`_SC_CLK_TCK`).
#[must_use]
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// Takes an exclusive, non-blocking `flock` on `path` (created 0600) and keeps it while the
/// returned file lives.
///
/// # Errors
/// `WouldBlock` when another process holds it.
pub fn lock_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Asks the kernel to send SIGTERM to the calling (child) process when its parent dies.
/// Call only between fork and exec.
///
/// # Errors
/// The `prctl` failure.
pub fn die_with_parent() -> io::Result<()> {
    // SAFETY: prctl with integer arguments; async-signal-safe.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Frees heap the allocator keeps after start-up parsing (BTF, config).
pub fn trim_heap() {
    // SAFETY: glibc call with no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_reap_and_sample_a_real_process() {
        let spec = AppSpec::new(
            "t",
            vec!["/bin/sh".into(), "-c".into(), "exit 7".into()],
            "/".into(),
        );
        let child = spawn(&spec).unwrap();
        let status = loop {
            match reap(&child.pidfd) {
                Ok(s) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(status.code(), Some(7));
        assert!(sample(std::process::id()).unwrap().rss_bytes > 0);
        assert!(sample(child.pid).is_none(), "reaped processes leave /proc");
    }
}
