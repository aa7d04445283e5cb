//! Processes: pidfds, reaping, signals, existence checks, the daemon's own identity.
//!
//! Signals sent to something already gone are not errors: a process may exit between the
//! decision and the call, and the exit is reported separately.

use std::{
    collections::HashSet,
    io,
    os::fd::OwnedFd,
    sync::{Mutex, PoisonError},
};

use rustix::process::{Pid, PidfdFlags, Signal, kill_process, test_kill_process_group};

/// A raw wait status (`exit_code` of the kernel, `si_status`-style encoding of `waitpid`):
/// `signal = raw & 0x7f`, `exit status = (raw >> 8) & 0xff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitStatus(pub u32);

impl WaitStatus {
    /// The status of a process that was not our child: it ended, but nobody can tell how
    /// (only eBPF sees the exit code of a process the daemon adopted).
    pub const UNKNOWN: Self = Self(u32::MAX);

    /// Builds the status of a normal exit.
    #[must_use]
    pub const fn exited(code: u8) -> Self {
        Self((code as u32) << 8)
    }

    /// Builds the status of a death by signal.
    #[must_use]
    pub const fn signaled(signal: u8) -> Self {
        Self((signal & 0x7f) as u32)
    }

    /// The killing signal, if the process died of one.
    #[must_use]
    pub const fn signal(self) -> Option<i32> {
        if self.0 == Self::UNKNOWN.0 {
            return None;
        }
        let sig = (self.0 & 0x7f) as i32;
        if sig == 0 { None } else { Some(sig) }
    }

    /// The exit status, if the process exited normally.
    #[must_use]
    pub const fn code(self) -> Option<i32> {
        if self.0 == Self::UNKNOWN.0 || self.signal().is_some() {
            None
        } else {
            Some(((self.0 >> 8) & 0xff) as i32)
        }
    }

    /// Whether a core dump was written.
    #[must_use]
    pub const fn core_dumped(self) -> bool {
        self.0 != Self::UNKNOWN.0 && self.0 & 0x80 != 0
    }
}

/// SIGKILL.
pub const SIGKILL: i32 = 9;
/// SIGTERM.
pub const SIGTERM: i32 = 15;

fn pid_of(pid: u32) -> io::Result<Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no pid {pid}")))
}

/// Opens a pidfd for `pid` (child or not): it becomes readable when the process exits.
///
/// # Errors
/// `ESRCH` when the process does not exist.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    Ok(rustix::process::pidfd_open(
        pid_of(pid)?,
        PidfdFlags::empty(),
    )?)
}

/// Reaps the exited process behind `pidfd` and returns how it ended and its `ru_maxrss` in
/// bytes: the largest resident size of any image it had, the ones before an `exec` included
/// (for a child started with `vfork`, that is its parent's whole high-water mark: see
/// [`crate::os::proc::own_peak_bytes`]).
///
/// The raw system call, because the C library's `waitid` (and rustix's) drops the fifth
/// argument, the child's `rusage`.
///
/// # Errors
/// `WouldBlock` if it has not exited yet; `ECHILD` when it is not our child; other errors
/// from `waitid`.
pub fn reap_with_peak(pidfd: &OwnedFd) -> io::Result<(WaitStatus, u64)> {
    use std::os::fd::AsRawFd as _;
    /// `P_PIDFD` (Linux 5.4).
    const P_PIDFD: libc::c_int = 3;
    // SAFETY: both structs are plain C data for the kernel to fill; zeroes are valid values.
    let (mut info, mut usage): (libc::siginfo_t, libc::rusage) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: waitid with a pidfd and pointers to the two structs above, which outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_waitid,
            P_PIDFD,
            pidfd.as_raw_fd(),
            &raw mut info,
            libc::WEXITED | libc::WNOHANG,
            &raw mut usage,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled `info` for a child state change (or left it zeroed: pid 0).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    release(u32::try_from(pid).unwrap_or(0));
    let low_byte = |v: i32| u8::try_from(v & 0xff).unwrap_or(0);
    let status = match info.si_code {
        libc::CLD_EXITED => WaitStatus::exited(low_byte(status)),
        libc::CLD_DUMPED => WaitStatus(u32::from(low_byte(status) & 0x7f) | 0x80),
        _ => WaitStatus::signaled(low_byte(status)),
    };
    // ru_maxrss is in KiB
    let peak = u64::try_from(usage.ru_maxrss)
        .unwrap_or(0)
        .saturating_mul(1024);
    Ok((status, peak))
}

/// Reaps the exited process behind `pidfd` and returns how it ended.
///
/// # Errors
/// `WouldBlock` if it has not exited yet; `ECHILD` when it is not our child; other errors
/// from `waitid`.
pub fn reap(pidfd: &OwnedFd) -> io::Result<WaitStatus> {
    reap_with_peak(pidfd).map(|(status, _)| status)
}

/// Reaps our child `pid` if it has exited, without waiting; true when it was reaped here (then
/// its pidfd's `waitid` finds no child any more: [`is_not_our_child`]). A process that is not
/// our child, or still runs, is left alone.
pub fn reap_if_exited(pid: u32) -> bool {
    let Ok(p) = pid_of(pid) else { return false };
    let reaped = matches!(
        rustix::process::waitid(
            rustix::process::WaitId::Pid(p),
            rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOHANG,
        ),
        Ok(Some(_))
    );
    if reaped {
        release(pid);
    }
    reaped
}

/// Whether `e` (from [`reap`]) says the process is not our child (`ECHILD`: adopted from a
/// previous daemon, so someone else reaps it).
#[must_use]
pub fn is_not_our_child(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::CHILD.raw_os_error())
}

/// Sends `signal` to the process group `pgid`. A group that is already gone is not an error.
///
/// # Errors
/// Any other `kill(2)` failure.
pub fn signal_group(pgid: u32, signal: i32) -> io::Result<()> {
    kill(-pid_of(pgid)?.as_raw_nonzero().get(), signal)
}

/// Sends `signal` to one process. A process that is already gone is not an error.
///
/// # Errors
/// Any other `kill(2)` failure.
pub fn signal_pid(pid: u32, signal: i32) -> io::Result<()> {
    kill(pid_of(pid)?.as_raw_nonzero().get(), signal)
}

/// `kill(2)`, a target already gone being no error. Not rustix's: its `Signal` admits only
/// named signals, and `stop_signal` may be any number up to 64 (real-time ones included).
fn kill(target: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory of this process.
    if unsafe { libc::kill(target, signal) } < 0 {
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
    let Ok(pgid) = pid_of(pgid) else {
        return false;
    };
    matches!(
        test_kill_process_group(pgid),
        Ok(()) | Err(rustix::io::Errno::PERM)
    )
}

/// Kills our child `pid` with SIGKILL and reaps it (a child this process image did not start
/// itself, so it holds no handle to it: after an `execve`, children stay).
pub fn kill_and_reap(pid: u32) {
    let Ok(p) = pid_of(pid) else { return };
    let _ = kill_process(p, Signal::KILL);
    let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
}

/// Whether our child `pid` (one this process image did not start itself) still runs; a child
/// that ended is reaped here.
#[must_use]
pub fn child_running(pid: u32) -> bool {
    let Ok(p) = pid_of(pid) else { return false };
    matches!(
        rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG),
        Ok(None)
    )
}

/// The calling thread's id.
#[must_use]
pub fn gettid() -> u32 {
    // SAFETY: gettid(2) takes no argument and cannot fail.
    u32::try_from(unsafe { libc::gettid() }).unwrap_or(0)
}

/// Makes this process the reaper of its orphaned descendants (`PR_SET_CHILD_SUBREAPER`): a
/// process whose parent dies is re-parented to it rather than to PID 1, so a `setsid`'d or
/// double-forked descendant of an app stays a descendant of the daemon, and the daemon reaps
/// its zombie. The flag is kept across `execve` (`turbo daemon upgrade`) and is not inherited
/// by children.
///
/// # Errors
/// The `prctl` failure.
pub fn become_subreaper() -> io::Result<()> {
    Ok(rustix::process::set_child_subreaper(Some(
        rustix::process::getpid(),
    ))?)
}

/// Whether this process is a child subreaper (`PR_GET_CHILD_SUBREAPER`).
#[must_use]
pub fn is_subreaper() -> bool {
    rustix::process::child_subreaper().is_ok_and(|p| p.is_some())
}

/// Children this process waits for itself (through a pidfd or a `Child` handle), which
/// [`reap_orphans`] must leave alone.
static CLAIMED: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

/// `pid` is a child some code of this process will wait for: [`reap_orphans`] leaves it
/// alone. Every spawn site claims its child before it can yield to the loop (the daemon's
/// loop and its spawns share one thread, so no reaper pass can come in between).
pub fn claim(pid: u32) {
    CLAIMED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_default()
        .insert(pid);
}

/// `pid` was reaped by its owner.
pub fn release(pid: u32) {
    if let Some(set) = CLAIMED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_mut()
    {
        set.remove(&pid);
    }
}

/// Reaps every exited child of this process that nobody claimed: orphans re-parented to it as
/// a subreaper ([`become_subreaper`]), whom nobody else will wait for. Returns their pids.
pub fn reap_orphans() -> Vec<u32> {
    let me = rustix::process::getpid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs();
    let claimed = CLAIMED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_default();
    let mut reaped = Vec::new();
    for pid in super::proc::all_children(me) {
        if claimed.contains(&pid) || !super::proc::read_stat(pid).is_ok_and(|st| st.is_zombie()) {
            continue;
        }
        let Ok(p) = pid_of(pid) else { continue };
        if matches!(
            rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG),
            Ok(Some(_))
        ) {
            reaped.push(pid);
        }
    }
    reaped
}

/// The effective uid of the daemon.
#[must_use]
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The effective gid of the daemon.
#[must_use]
pub fn egid() -> u32 {
    rustix::process::getegid().as_raw()
}

/// Whether this process may execute the file at `path` (`access(2)` with `X_OK`).
///
/// # Errors
/// Why not (`NotFound`, `PermissionDenied`, …).
pub fn check_executable(path: &std::path::Path) -> io::Result<()> {
    Ok(rustix::fs::access(path, rustix::fs::Access::EXEC_OK)?)
}

/// Asks the kernel to send SIGTERM to the calling (child) process when its parent dies.
/// Call only between fork and exec (a raw system call: async-signal-safe).
///
/// # Errors
/// The `prctl` failure.
pub fn die_with_parent() -> io::Result<()> {
    Ok(rustix::process::set_parent_process_death_signal(Some(
        Signal::TERM,
    ))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_decoding() {
        let cases = [
            (0x300, Some(3), None, false),
            (0x9, None, Some(9), false),
            (0x8b, None, Some(11), true),
            (0, Some(0), None, false),
        ];
        for (raw, code, sig, core) in cases {
            let st = WaitStatus(raw);
            assert_eq!(st.code(), code, "{raw:#x}");
            assert_eq!(st.signal(), sig, "{raw:#x}");
            assert_eq!(st.core_dumped(), core, "{raw:#x}");
        }
        assert_eq!(WaitStatus::exited(3), WaitStatus(0x300));
        assert_eq!(WaitStatus::signaled(9).signal(), Some(9));
        let unknown = WaitStatus::UNKNOWN;
        assert_eq!(
            (unknown.code(), unknown.signal(), unknown.core_dumped()),
            (None, None, false)
        );
    }

    #[test]
    fn signals_reaping_and_groups() {
        use std::os::unix::process::CommandExt as _;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        let pidfd = pidfd_open(pid).unwrap();
        assert_eq!(
            reap(&pidfd).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "still running"
        );
        assert!(group_alive(pid));
        signal_group(pid, SIGKILL).unwrap();
        let status = loop {
            match reap(&pidfd) {
                Ok(s) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(status.signal(), Some(SIGKILL));
        assert!(!group_alive(pid));
        assert!(
            child.try_wait().is_err(),
            "reaped through the pidfd already"
        );
        signal_pid(pid, SIGTERM).expect("a process gone is not an error");
        // a real-time signal (any `stop_signal` up to 64 may be sent)
        let mut rt = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        signal_pid(rt.id(), 40).unwrap();
        let killed = std::os::unix::process::ExitStatusExt::signal(&rt.wait().unwrap());
        assert_eq!(killed, Some(40));
        assert!(pidfd_open(pid).is_err());
        assert_eq!(euid(), rustix::process::geteuid().as_raw());
    }
}
