//! What a forked child does to itself between `fork` and `exec` ([`ChildSetup`]), prepared by
//! the parent so that the child only makes async-signal-safe system calls: rlimits, nice,
//! `oom_score_adj`, umask, its cgroup, dropping privileges, the working directory, and for a
//! child that gets listening sockets its own `execve` ([`SocketExec`]).
//!
//! Only [`super::spawn`]'s fork path uses it; the `posix_spawn` path needs none of it. Nothing
//! here allocates, locks or formats after the fork.

use std::{
    ffi::{CString, c_char},
    io,
    os::{
        fd::{AsRawFd, RawFd},
        unix::ffi::OsStrExt,
    },
};

use super::Plan;
use crate::os::process;
/// `setrlimit`'s resource type: glibc has one of its own, musl takes an `int`.
#[cfg(target_env = "gnu")]
type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type RlimitResource = libc::c_int;

/// What the child does to itself between fork and exec, prepared by the parent: every
/// allocation, lookup and formatting happens here, so that [`ChildSetup::apply`] only makes
/// system calls (after `fork` in a multi-threaded process, only async-signal-safe calls are
/// allowed: another thread may have held the allocator's lock).
pub(super) struct ChildSetup {
    rlimits: Vec<(RlimitResource, libc::rlimit)>,
    nice: Option<i32>,
    /// The decimal text written to `/proc/self/oom_score_adj`, and its length.
    oom_score_adj: Option<([u8; 12], usize)>,
    umask: Option<libc::mode_t>,
    credentials: Option<Credentials>,
    /// The working directory, entered after the credentials change.
    pub(super) chdir: Option<CString>,
    /// `cgroup.procs` of the cgroup directories to enter, kept open by the caller until the
    /// spawn returns.
    cgroup_procs: Vec<RawFd>,
    /// Listening sockets to pass: then the child executes the program itself.
    sockets: Option<SocketExec>,
}

/// An `execve` prepared before the fork for a child that gets listening sockets.
///
/// `LISTEN_PID` must be the child's own pid, known only after the fork, and the standard
/// library builds the environment before it. So everything is built here, in the parent:
/// the program, `argv`, and an `envp` whose `LISTEN_PID=` entry points into a fixed buffer
/// with room for any pid. The child then only calls `getpid`, writes the digits into that
/// buffer, moves the sockets to fds 3, 4, … and calls `execve`: system calls and writes
/// into memory it owns, no allocation (async-signal-safe, as required after a fork in a
/// multi-threaded process).
struct SocketExec {
    program: CString,
    /// Owners of the strings `argv` and `envp` point into.
    _strings: Vec<CString>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    /// `LISTEN_PID=` then room for the digits and the NUL; allocated with `Box::into_raw`,
    /// freed on drop; `envp` holds a pointer to it.
    pid_entry: *mut [u8; 32],
    /// The daemon's sockets (close-on-exec in the daemon).
    fds: Vec<RawFd>,
    /// Scratch space for the copies made while moving them to 3, 4, …
    moved: Vec<RawFd>,
}

const LISTEN_PID: &[u8] = b"LISTEN_PID=";

// SAFETY: the raw pointers point into strings and a buffer owned by the same value, which is
// moved into the `pre_exec` closure and used only by the forked child (its own copy of memory).
unsafe impl Send for SocketExec {}
// SAFETY: as above; the parent never reads or writes through the pointers.
unsafe impl Sync for SocketExec {}

impl SocketExec {
    pub(super) fn new(plan: &Plan<'_>) -> io::Result<Self> {
        let (argv, env) = (&plan.argv, &plan.env);
        let nul = |_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in argv or environment");
        let mut strings = Vec::new();
        let mut argv_ptrs = Vec::with_capacity(argv.len() + 1);
        for a in argv {
            let c = CString::new(a.as_bytes()).map_err(nul)?;
            argv_ptrs.push(c.as_ptr());
            strings.push(c);
        }
        argv_ptrs.push(std::ptr::null());
        let n = plan.listen.len();
        let names = vec![plan.listen_name.as_str(); n].join(":");
        let mut envp = Vec::with_capacity(env.len() + 4);
        let listen_vars = [
            ("LISTEN_FDS".into(), n.to_string().into()),
            ("LISTEN_FDNAMES".into(), names.into()),
        ];
        for (k, v) in env.iter().chain(&listen_vars) {
            if k.as_bytes().starts_with(b"LISTEN_") && !listen_vars.iter().any(|(l, _)| l == k) {
                continue; // the daemon's own are never passed on; ours are below
            }
            let mut entry = k.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(v.as_bytes());
            let c = CString::new(entry).map_err(nul)?;
            envp.push(c.as_ptr());
            strings.push(c);
        }
        let mut buf = [0u8; 32];
        buf[..LISTEN_PID.len()].copy_from_slice(LISTEN_PID);
        let pid_entry = Box::into_raw(Box::new(buf));
        envp.push(pid_entry.cast::<c_char>().cast_const());
        envp.push(std::ptr::null());
        Ok(Self {
            program: CString::new(argv[0].as_bytes()).map_err(nul)?,
            _strings: strings,
            argv: argv_ptrs,
            envp,
            pid_entry,
            fds: plan.listen.iter().map(AsRawFd::as_raw_fd).collect(),
            moved: vec![-1; n],
        })
    }

    /// In the child, last: writes `LISTEN_PID`, puts the sockets at 3, 4, … and executes the
    /// program. Returns only on failure.
    ///
    /// # Safety
    /// Only between fork and exec.
    unsafe fn exec(&mut self) -> io::Error {
        let n = libc::c_int::try_from(self.fds.len()).unwrap_or(0);
        // SAFETY: system calls on fds and memory this value owns.
        unsafe {
            let (digits, len) = decimal(libc::getpid());
            let entry = &mut *self.pid_entry;
            entry[LISTEN_PID.len()..LISTEN_PID.len() + len].copy_from_slice(&digits[..len]);
            entry[LISTEN_PID.len() + len] = 0;
            // copies above the target range first, so that a socket already sitting at 3 or 4
            // is not overwritten by another before it moved
            for (i, &fd) in self.fds.iter().enumerate() {
                let copy = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3 + n);
                if copy < 0 {
                    return io::Error::last_os_error();
                }
                self.moved[i] = copy;
            }
            for (target, &copy) in (3..).zip(&self.moved) {
                // dup2 clears close-on-exec on the target: these fds reach the app
                if libc::dup2(copy, target) < 0 {
                    return io::Error::last_os_error();
                }
            }
            libc::execve(
                self.program.as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            );
        }
        io::Error::last_os_error()
    }
}

impl Drop for SocketExec {
    fn drop(&mut self) {
        // SAFETY: allocated with Box::into_raw in `new`, freed once here.
        drop(unsafe { Box::from_raw(self.pid_entry) });
    }
}

impl std::fmt::Debug for SocketExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketExec")
            .field("fds", &self.fds)
            .finish_non_exhaustive()
    }
}

/// `setgroups` (when allowed), `setgid`, `setuid`.
struct Credentials {
    /// `None` for a non-root daemon: setgroups needs CAP_SETGID, and validation made sure the
    /// app keeps the daemon's groups.
    groups: Option<Vec<libc::gid_t>>,
    gid: libc::gid_t,
    uid: libc::uid_t,
}

impl ChildSetup {
    pub(super) fn new(plan: &Plan<'_>) -> io::Result<Self> {
        let limits = &plan.limits;
        let rlimits = [
            (libc::RLIMIT_NOFILE, limits.nofile),
            (libc::RLIMIT_NPROC, limits.nproc),
            (libc::RLIMIT_CORE, limits.core),
        ]
        .into_iter()
        .filter_map(|(resource, l)| {
            l.map(|(soft, hard)| {
                (
                    resource,
                    libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    },
                )
            })
        })
        .collect();
        let (euid, egid) = (process::euid(), process::egid());
        let credentials = plan.run_as.as_ref().and_then(|r| {
            if euid == 0 {
                Some(Credentials {
                    groups: Some(r.groups.clone()),
                    gid: r.gid,
                    uid: r.uid,
                })
            } else if (r.uid, r.gid) == (euid, egid) {
                // validated to be the daemon's own identity: nothing to change
                None
            } else {
                // not validated by this daemon (a state file of another one): try, and let
                // the kernel refuse
                Some(Credentials {
                    groups: None,
                    gid: r.gid,
                    uid: r.uid,
                })
            }
        });
        let chdir = match &credentials {
            Some(_) => Some(
                CString::new(plan.cwd.as_os_str().as_bytes())
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in cwd"))?,
            ),
            None => None,
        };
        Ok(Self {
            rlimits,
            nice: limits.nice,
            oom_score_adj: limits.oom_score_adj.map(decimal),
            umask: limits.umask,
            credentials,
            chdir,
            cgroup_procs: plan.cgroup_procs.iter().map(AsRawFd::as_raw_fd).collect(),
            sockets: if plan.listen.is_empty() {
                None
            } else {
                Some(SocketExec::new(plan)?)
            },
        })
    }

    /// Gives the child `RLIMIT_NOFILE` `(soft, hard)` unless the plan sets one (the limit the
    /// daemon was started with, see [`crate::os::creds::raise_nofile`]).
    pub(super) fn default_nofile(&mut self, (soft, hard): (u64, u64)) {
        if !self.rlimits.iter().any(|(r, _)| *r == libc::RLIMIT_NOFILE) {
            self.rlimits.push((
                libc::RLIMIT_NOFILE,
                libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                },
            ));
        }
    }

    /// Nothing to do but become a session leader (and close inherited fds): what
    /// [`spawn_session`] does without a fork.
    #[cfg_attr(
        not(target_env = "gnu"),
        allow(dead_code, reason = "only glibc's posix_spawn path asks")
    )]
    pub(super) fn is_session_only(&self) -> bool {
        self.rlimits.is_empty()
            && self.nice.is_none()
            && self.oom_score_adj.is_none()
            && self.umask.is_none()
            && self.credentials.is_none()
            && self.chdir.is_none()
            && self.sockets.is_none()
            && self.cgroup_procs.is_empty()
    }

    /// Runs in the child between fork and exec: system calls only.
    pub(super) fn apply(&mut self) -> io::Result<()> {
        let check = |rc: libc::c_int| {
            if rc < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        // SAFETY: plain system calls on memory owned by `self`, prepared before the fork.
        unsafe {
            close_inherited_fds_on_exec();
            default_signal_dispositions();
            check(libc::setsid())?;
            for &procs in &self.cgroup_procs {
                // "0" is the writer itself, in v1 and v2 alike
                if libc::write(procs, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (resource, limit) in &self.rlimits {
                check(libc::setrlimit(*resource, limit))?;
            }
            if let Some(nice) = self.nice {
                check(libc::setpriority(libc::PRIO_PROCESS, 0, nice))?;
            }
            if let Some((text, len)) = &self.oom_score_adj {
                let fd = libc::open(
                    c"/proc/self/oom_score_adj".as_ptr(),
                    libc::O_WRONLY | libc::O_CLOEXEC,
                );
                check(fd)?;
                let written = libc::write(fd, text.as_ptr().cast(), *len);
                let error = io::Error::last_os_error();
                libc::close(fd);
                if usize::try_from(written).ok() != Some(*len) {
                    return Err(error);
                }
            }
            if let Some(mask) = self.umask {
                libc::umask(mask);
            }
            if let Some(c) = &self.credentials {
                if let Some(groups) = &c.groups {
                    check(libc::setgroups(groups.len(), groups.as_ptr()))?;
                }
                check(libc::setgid(c.gid))?;
                check(libc::setuid(c.uid))?;
            }
            if let Some(dir) = &self.chdir {
                check(libc::chdir(dir.as_ptr()))?;
            }
            if let Some(sockets) = &mut self.sockets {
                return Err(sockets.exec());
            }
        }
        Ok(())
    }
}

/// Marks every fd above stderr close-on-exec, in the child between fork and exec, so the app
/// gets only stdin, stdout and stderr. The daemon's own fds are close-on-exec already, but fds
/// it *inherited* without the flag (a shell that started a user-mode daemon with fds 10 and 251
/// open, a socket-activating parent) would otherwise reach every app.
///
/// `CLOSE_RANGE_CLOEXEC` (Linux 5.11) rather than closing them now: the standard library
/// reports a failed `exec` to the daemon through a close-on-exec pipe among these fds, and
/// closing it would turn every failed spawn into a silent success. Older kernels get the same
/// through `fcntl` on every fd below the `nofile` limit. Only system calls: async-signal-safe.
fn close_inherited_fds_on_exec() {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with integer arguments; it only sets flags.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if rc == 0 {
        return;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a struct we own.
    let top = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } == 0 {
        limit.rlim_cur.min(1 << 20)
    } else {
        1024
    };
    for fd in 3..libc::c_int::try_from(top).unwrap_or(1024) {
        // SAFETY: fcntl on any fd number; an unused one fails with EBADF and is skipped.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// `n` as decimal ASCII in a fixed buffer, and its length.
pub(super) fn decimal(n: i32) -> ([u8; 12], usize) {
    let mut digits = [0u8; 12];
    let mut len = 0;
    let mut rest = n.unsigned_abs();
    loop {
        digits[len] = b'0' + u8::try_from(rest % 10).unwrap_or(0);
        len += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        digits[len] = b'-';
        len += 1;
    }
    digits[..len].reverse();
    (digits, len)
}

/// Every signal back to its default action, as systemd does for its services: an app must not
/// inherit what the daemon's own starter ignored (a daemon started under `nohup` ignores
/// SIGHUP, and a shell app then cannot even trap it, so `turbo signal HUP` and
/// `reload_signal: SIGHUP` would do nothing). Handlers the daemon installed are reset by
/// `exec` anyway; only ignored signals survive it. Only `sigaction`: async-signal-safe.
///
/// # Safety
/// Call only in a forked child before `exec`.
pub(super) unsafe fn default_signal_dispositions() {
    // SAFETY: a zeroed sigaction is SIG_DFL with an empty mask and no flags; sigaction on a
    // signal that cannot be changed (SIGKILL, SIGSTOP, glibc's internal ones) fails harmlessly
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        for signal in 1..libc::SIGRTMAX() {
            libc::sigaction(signal, &raw const default, std::ptr::null_mut());
        }
    }
}
