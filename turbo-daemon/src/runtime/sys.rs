//! The narrow door to the operating system: spawning in a new session (as the user, with the
//! limits and the environment an app asks for), pidfds, reaping, signalling process groups,
//! reading `/proc`, locking files.
//!
//! Every syscall the runtime makes goes through here, so the rest of the runtime reads as
//! policy-free plumbing. Nothing here decides *when* to do anything.

use std::{
    collections::{HashMap, HashSet, hash_map::Entry},
    ffi::{CString, c_char},
    fs::File,
    io,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
        unix::{ffi::OsStrExt, process::CommandExt},
    },
    path::Path,
    process::{Command, Stdio},
    sync::OnceLock,
};

use crate::{
    config::{
        environment::{self, Identity},
        users,
    },
    events::WaitStatus,
    runtime::ProcessStats,
    supervisor::AppSpec,
};

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

/// What one process of an app gets besides its spec: instance variables and the listening
/// sockets the daemon holds for it.
#[derive(Debug, Default)]
pub struct Extra<'a> {
    /// Variables set last (they win over `env:`).
    pub env: Vec<(String, String)>,
    /// Listening sockets, passed as fds 3, 4, … with `LISTEN_FDS`, `LISTEN_PID` and
    /// `LISTEN_FDNAMES` (the systemd socket-activation protocol).
    pub listen: Vec<BorrowedFd<'a>>,
    /// The name of every socket in `LISTEN_FDNAMES` (the app name, as systemd names the fds
    /// of one socket unit after it).
    pub listen_name: String,
    /// `cgroup.procs` of the memory cgroup the child enters first thing after `setsid`, before
    /// it drops privileges ([`MemoryCgroup::procs`], `memory_enforce: cgroup`).
    pub cgroup_procs: Option<BorrowedFd<'a>>,
}

/// [`spawn_with`] without extras.
///
/// # Errors
/// As [`spawn_with`].
pub fn spawn(spec: &AppSpec) -> io::Result<Child> {
    spawn_with(spec, &Extra::default())
}

/// Starts `spec` in its own session (so it leads its own process group and has no controlling
/// terminal), stdin from /dev/null, stdout and stderr into pipes, with the environment of
/// [`environment::child_env`] and the identity and limits of `spec.privileges`.
///
/// Between fork and exec the child, in this order: marks every fd above 2 close-on-exec
/// ([`close_inherited_fds_on_exec`]); becomes a session leader; sets its rlimits,
/// nice and `oom_score_adj` (while it still has the daemon's privileges: raising a hard limit,
/// lowering nice or `oom_score_adj` need them); sets its umask; then drops privileges with
/// `setgroups`, `setgid` and `setuid`, last, so nothing after can regain them; and only then,
/// with a changed user, enters the working directory, so an app cannot get a directory its
/// user may not enter.
///
/// With sockets in `extra.listen` the child executes the program itself, last, with an
/// environment built here and `LISTEN_PID` written into it after the fork (see [`SocketExec`]).
///
/// # Errors
/// The spawn error with the program named (and the user, with a hint, when it runs as one).
pub fn spawn_with(spec: &AppSpec, extra: &Extra<'_>) -> io::Result<Child> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
    let mut setup = ChildSetup::new(spec)?;
    setup.cgroup_procs = extra.cgroup_procs.map(|fd| fd.as_raw_fd());
    let own = own_user();
    let identity = match (&spec.privileges.run_as, own) {
        (Some(r), _) => Some(Identity {
            user: &r.user,
            home: &r.home,
            shell: &r.shell,
        }),
        (None, Some(u)) => Some(Identity {
            user: &u.name,
            home: &u.home,
            shell: &u.shell,
        }),
        (None, None) => None,
    };
    let mut env = environment::child_env(std::env::vars_os(), identity, &spec.cwd, &spec.env);
    env.extend(
        extra
            .env
            .iter()
            .map(|(k, v)| (std::ffi::OsString::from(k), std::ffi::OsString::from(v))),
    );
    if !extra.listen.is_empty() {
        setup.sockets = Some(SocketExec::new(&spec.argv, &env, extra)?);
    }
    let fail = |e: io::Error| {
        let message = match &spec.privileges.run_as {
            Some(r) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => format!(
                "cannot start {program} as user {}: {e} (may {} enter {} and run {program}?)",
                r.user,
                r.user,
                spec.cwd.display()
            ),
            Some(r) => format!("cannot start {program} as user {}: {e}", r.user),
            None => format!("cannot start {program}: {e}"),
        };
        io::Error::new(e.kind(), message)
    };
    // musl has no posix_spawn_file_actions_addclosefrom_np: the fork path below does the same
    #[cfg(target_env = "gnu")]
    if setup.is_session_only() && Path::new(program).is_absolute() {
        return spawn_session(program, args, &env, &spec.cwd).map_err(fail);
    }
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if setup.chdir.is_none() {
        cmd.current_dir(&spec.cwd);
    }
    // SAFETY: `ChildSetup::apply` makes only async-signal-safe system calls and neither
    // allocates nor takes locks: everything it needs was prepared above, before the fork.
    unsafe {
        cmd.pre_exec(move || setup.apply());
    }
    let mut child = cmd.spawn().map_err(fail)?;
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

/// [`spawn_with`] for an app that needs nothing between fork and exec but its own session (no
/// limits, nice, `oom_score_adj`, umask, user, sockets or memory cgroup), through `posix_spawn`.
///
/// glibc's `posix_spawn` starts the child with `CLONE_VM | CLONE_VFORK`: it borrows the
/// daemon's memory until `exec` instead of copying its page tables, and the kernel does not
/// tear a copy down at `exec` either. Forking the daemon and those copies were about half of
/// its time when starting 100 apps. The child does what [`ChildSetup::apply`] would: a new
/// session, every fd above stderr closed (`closefrom` rather than close-on-exec marks: glibc
/// reports a failed `exec` through the shared memory, not through an fd), the working
/// directory; and as the standard library does, an empty signal mask and `SIGPIPE` back to
/// its default (the daemon ignores it). `program` is an absolute path: `posix_spawn` does not
/// search `PATH`.
#[cfg(target_env = "gnu")]
fn spawn_session(
    program: &str,
    args: &[String],
    env: &[(std::ffi::OsString, std::ffi::OsString)],
    cwd: &Path,
) -> io::Result<Child> {
    let nul = |e: std::ffi::NulError| io::Error::new(io::ErrorKind::InvalidInput, e);
    let mut strings = Vec::with_capacity(1 + args.len());
    strings.push(CString::new(program).map_err(nul)?);
    for arg in args {
        strings.push(CString::new(arg.as_str()).map_err(nul)?);
    }
    let mut vars = Vec::with_capacity(env.len());
    for (key, value) in env {
        let mut var = key.as_bytes().to_vec();
        var.push(b'=');
        var.extend_from_slice(value.as_bytes());
        vars.push(CString::new(var).map_err(nul)?);
    }
    let argv: Vec<*mut c_char> = strings
        .iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect();
    let envp: Vec<*mut c_char> = vars
        .iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect();
    let dir = CString::new(cwd.as_os_str().as_bytes()).map_err(nul)?;
    let (out_read, out_write) = pipe()?;
    let (err_read, err_write) = pipe()?;
    let posix = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    };
    let mut pid: libc::pid_t = 0;
    // SAFETY: the attribute and file-action objects are initialised before use and destroyed
    // on every path; every pointer handed over (argv, envp, paths) outlives the call, and
    // argv and envp end with a null pointer.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        posix(libc::posix_spawn_file_actions_init(&raw mut actions))?;
        if let Err(e) = posix(libc::posix_spawnattr_init(&raw mut attr)) {
            libc::posix_spawn_file_actions_destroy(&raw mut actions);
            return Err(e);
        }
        let mut no_signals: libc::sigset_t = std::mem::zeroed();
        let mut sigpipe: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut no_signals);
        libc::sigemptyset(&raw mut sigpipe);
        libc::sigaddset(&raw mut sigpipe, libc::SIGPIPE);
        // glibc declares SETSID a c_short and the older flags c_int; all fit a c_short
        #[expect(clippy::cast_possible_truncation, reason = "the flags fit a c_short")]
        let flags = libc::POSIX_SPAWN_SETSID
            | (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short;
        let result = (|| {
            posix(libc::posix_spawnattr_setflags(&raw mut attr, flags))?;
            posix(libc::posix_spawnattr_setsigmask(
                &raw mut attr,
                &raw const no_signals,
            ))?;
            posix(libc::posix_spawnattr_setsigdefault(
                &raw mut attr,
                &raw const sigpipe,
            ))?;
            posix(libc::posix_spawn_file_actions_addopen(
                &raw mut actions,
                0,
                c"/dev/null".as_ptr(),
                libc::O_RDONLY,
                0,
            ))?;
            posix(libc::posix_spawn_file_actions_adddup2(
                &raw mut actions,
                out_write.as_raw_fd(),
                1,
            ))?;
            posix(libc::posix_spawn_file_actions_adddup2(
                &raw mut actions,
                err_write.as_raw_fd(),
                2,
            ))?;
            posix(libc::posix_spawn_file_actions_addclosefrom_np(
                &raw mut actions,
                3,
            ))?;
            posix(libc::posix_spawn_file_actions_addchdir_np(
                &raw mut actions,
                dir.as_ptr(),
            ))?;
            posix(libc::posix_spawn(
                &raw mut pid,
                strings[0].as_ptr(),
                &raw const actions,
                &raw const attr,
                argv.as_ptr(),
                envp.as_ptr(),
            ))
        })();
        libc::posix_spawnattr_destroy(&raw mut attr);
        libc::posix_spawn_file_actions_destroy(&raw mut actions);
        result?;
    }
    drop((out_write, err_write));
    let pid = u32::try_from(pid).map_err(|_| io::Error::other("posix_spawn returned no pid"))?;
    // not waited for yet, so the pid cannot have been reused (as in `spawn_with`)
    let pidfd = pidfd_open(pid)?;
    set_nonblocking(&out_read)?;
    set_nonblocking(&err_read)?;
    Ok(Child {
        pid,
        pidfd,
        stdout: out_read,
        stderr: err_read,
    })
}

/// A close-on-exec pipe: (read end, write end).
#[cfg(target_env = "gnu")]
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array we own; we take ownership of both.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The daemon's own passwd entry, looked up once: `HOME`, `USER`, `LOGNAME`, `SHELL` of apps
/// without `user:`. `None` when the daemon's uid has no entry (then the daemon's own variables
/// are passed on).
fn own_user() -> Option<&'static users::User> {
    static OWN: OnceLock<Option<users::User>> = OnceLock::new();
    OWN.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        users::user_by_uid(unsafe { libc::geteuid() })
            .ok()
            .flatten()
    })
    .as_ref()
}

/// `setrlimit`'s resource type: glibc has one of its own, musl takes an `int`.
#[cfg(target_env = "gnu")]
type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type RlimitResource = libc::c_int;

/// What the child does to itself between fork and exec, prepared by the parent: every
/// allocation, lookup and formatting happens here, so that [`ChildSetup::apply`] only makes
/// system calls (after `fork` in a multi-threaded process, only async-signal-safe calls are
/// allowed: another thread may have held the allocator's lock).
struct ChildSetup {
    rlimits: Vec<(RlimitResource, libc::rlimit)>,
    nice: Option<i32>,
    /// The decimal text written to `/proc/self/oom_score_adj`, and its length.
    oom_score_adj: Option<([u8; 12], usize)>,
    umask: Option<libc::mode_t>,
    credentials: Option<Credentials>,
    /// The working directory, entered after the credentials change.
    chdir: Option<CString>,
    /// `cgroup.procs` of the cgroup to enter (`memory_enforce: cgroup`), kept open by the
    /// caller until the spawn returns.
    cgroup_procs: Option<RawFd>,
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
    fn new(
        argv: &[String],
        env: &[(std::ffi::OsString, std::ffi::OsString)],
        extra: &Extra<'_>,
    ) -> io::Result<Self> {
        let nul = |_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in argv or environment");
        let mut strings = Vec::new();
        let mut argv_ptrs = Vec::with_capacity(argv.len() + 1);
        for a in argv {
            let c = CString::new(a.as_bytes()).map_err(nul)?;
            argv_ptrs.push(c.as_ptr());
            strings.push(c);
        }
        argv_ptrs.push(std::ptr::null());
        let n = extra.listen.len();
        let names = vec![extra.listen_name.as_str(); n].join(":");
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
            fds: extra.listen.iter().map(AsRawFd::as_raw_fd).collect(),
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
    fn new(spec: &AppSpec) -> io::Result<Self> {
        let limits = &spec.privileges.limits;
        let rlimits = [
            (libc::RLIMIT_NOFILE, limits.nofile),
            (libc::RLIMIT_NPROC, limits.nproc),
            (libc::RLIMIT_CORE, limits.core),
        ]
        .into_iter()
        .filter_map(|(resource, l)| {
            l.map(|l| {
                (
                    resource,
                    libc::rlimit {
                        rlim_cur: l.soft,
                        rlim_max: l.hard,
                    },
                )
            })
        })
        .collect();
        // SAFETY: these getters have no preconditions.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let credentials = spec.privileges.run_as.as_ref().and_then(|r| {
            if euid == 0 {
                Some(Credentials {
                    groups: Some(r.groups.iter().map(|(_, gid)| *gid).collect()),
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
                CString::new(spec.cwd.as_os_str().as_bytes())
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
            cgroup_procs: None,
            sockets: None,
        })
    }

    /// Runs in the child between fork and exec: system calls only.
    /// Nothing to do but become a session leader (and close inherited fds): what
    /// [`spawn_session`] does without a fork.
    #[cfg_attr(
        not(target_env = "gnu"),
        allow(dead_code, reason = "only glibc's posix_spawn path asks")
    )]
    fn is_session_only(&self) -> bool {
        self.rlimits.is_empty()
            && self.nice.is_none()
            && self.oom_score_adj.is_none()
            && self.umask.is_none()
            && self.credentials.is_none()
            && self.chdir.is_none()
            && self.sockets.is_none()
            && self.cgroup_procs.is_none()
    }

    fn apply(&mut self) -> io::Result<()> {
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
            check(libc::setsid())?;
            if let Some(procs) = self.cgroup_procs {
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
fn decimal(n: i32) -> ([u8; 12], usize) {
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

/// A TCP socket bound to `addr` (`0.0.0.0:3000`, `[::1]:8080`) and listening, close-on-exec,
/// with `SO_REUSEADDR` (the standard library's choice), so that a port in `TIME_WAIT` after a
/// daemon restart can be bound again.
///
/// # Errors
/// A malformed address, or the bind or listen error (`Address already in use`).
pub fn listen_tcp(addr: &str) -> io::Result<OwnedFd> {
    let addr: std::net::SocketAddr = addr.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an IP address with a port, like 0.0.0.0:3000",
        )
    })?;
    Ok(OwnedFd::from(std::net::TcpListener::bind(addr)?))
}

/// A copy of fd `fd` of process `pid` (`pidfd_getfd`, Linux 5.6; needs the right to ptrace
/// it, which the daemon has over its apps as root or as their user), if it is a TCP socket
/// listening on `addr`.
///
/// # Errors
/// The system call's error, or `InvalidData` when the fd is something else.
pub fn take_listener(pid: u32, fd: RawFd, addr: &str) -> io::Result<OwnedFd> {
    let pidfd = pidfd_open(pid)?;
    // SAFETY: plain syscall with integer arguments; on success it returns a new fd we own.
    let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    let copy = RawFd::try_from(copy).map_err(|_| io::Error::other("fd out of range"))?;
    // SAFETY: a fresh fd returned by the kernel, owned by nobody else (close-on-exec is set by
    // pidfd_getfd).
    let owned = unsafe { OwnedFd::from_raw_fd(copy) };
    let mut listening: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: getsockopt fills an int we own.
    let rc = unsafe {
        libc::getsockopt(
            owned.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut listening).cast(),
            &raw mut len,
        )
    };
    let wanted: Option<std::net::SocketAddr> = addr.parse().ok();
    let listener = std::net::TcpListener::from(owned);
    let local = listener.local_addr().ok();
    if rc != 0 || listening == 0 || local.is_none() || local != wanted {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a socket listening on {addr} (found {local:?})"),
        ));
    }
    Ok(OwnedFd::from(listener))
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

/// Sends `signal` to one process. A process that is already gone is not an error.
///
/// # Errors
/// Any other `kill(2)` failure.
pub fn signal_pid(pid: u32, signal: i32) -> io::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: plain syscall.
    if unsafe { libc::kill(pid, signal) } < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            return Err(err);
        }
    }
    Ok(())
}

/// Whether process `pid` exists and is not a zombie.
#[must_use]
pub fn pid_alive(pid: u32) -> bool {
    read_stat(pid).is_some_and(|st| !st.zombie)
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

/// The parent of process `pid`, from `/proc/<pid>/stat`.
#[must_use]
pub fn parent_pid(pid: u32) -> Option<u32> {
    read_stat(pid).map(|st| st.ppid)
}

/// Binds the datagram socket apps send `sd_notify` messages to, at `path` (a stale socket file
/// is replaced), non-blocking and with `SO_PASSCRED`, so every datagram carries the sender's
/// pid as the kernel knows it. Writable by everyone: the socket says nothing to whoever writes
/// except through its checked pid, and apps may run as other users.
///
/// # Errors
/// When the socket cannot be bound or configured.
pub fn bind_notify_socket(path: &Path) -> io::Result<std::os::unix::net::UnixDatagram> {
    use std::os::unix::fs::PermissionsExt as _;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let sock = std::os::unix::net::UnixDatagram::bind(path)?;
    sock.set_nonblocking(true)?;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a pointer to a c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(sock)
}

/// Receives one datagram from a socket with `SO_PASSCRED` into `buf`; returns its length and
/// the sender's pid (`None` if the kernel attached no credentials).
///
/// # Errors
/// `WouldBlock` when nothing is queued; other `recvmsg(2)` errors.
pub fn recv_with_pid(
    sock: &std::os::unix::net::UnixDatagram,
    buf: &mut [u8],
) -> io::Result<(usize, Option<u32>)> {
    // room for one SCM_CREDENTIALS message (the only kind this socket gets unasked)
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // size_t in glibc, socklen_t in musl
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: recvmsg on a socket we own with buffers described by `msg`.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut pid = None;
    // SAFETY: the CMSG macros walk the control buffer recvmsg filled, within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_CREDENTIALS
            {
                let cred: libc::ucred = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                pid = u32::try_from(cred.pid).ok().filter(|&p| p > 0);
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Ok((usize::try_from(n).unwrap_or(0), pid))
}

/// Start time of a process in clock ticks since boot (field 22 of `/proc/<pid>/stat`); with
/// the pid it identifies a process even after the pid is reused.
#[must_use]
pub fn start_ticks(pid: u32) -> Option<u64> {
    read_stat(pid).map(|st| st.start_ticks)
}

/// How long process `pid` has run, if it is the one that started at `start_ticks`.
#[must_use]
pub fn process_age(pid: u32, expected_start_ticks: u64) -> Option<std::time::Duration> {
    let st = read_stat(pid)?;
    if st.zombie || st.start_ticks != expected_start_ticks {
        return None; // gone, or the pid was reused
    }
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    #[expect(clippy::cast_precision_loss, reason = "tick counts far below 2^52")]
    let started = st.start_ticks as f64 / clock_ticks() as f64;
    Some(std::time::Duration::from_secs_f64(
        (uptime - started).max(0.0),
    ))
}

// --- resource readings of app process trees (status, describe, scrapes, the sampler) ---

/// Reads a small `/proc` file (`stat`, `children`, `statm`) into a string; `None` when it
/// cannot be opened or read (the process is gone).
///
/// `std::fs::read_to_string` costs a `statx` and a chain of growing reads (32, 32, 64, 128, …
/// bytes) on these size-less files: nine syscalls for one `stat`. `ListApps` reads two files per
/// app, so that was most of the daemon's time for `turbo status` with 100 apps (`File::
/// read_to_string` also asks `statx` for a size hint). Here the first read has room for the whole
/// file and a second one sees the end: open, read, read, close.
#[must_use]
pub fn read_proc(path: &str) -> Option<String> {
    reread_proc(&File::open(path).ok()?)
}

/// Reads a `/proc` file opened earlier, from its start (`pread` at offset 0 makes the kernel
/// produce the text afresh). An open `/proc/<pid>/…` file stays bound to that process: once it
/// is reaped the read fails (`None`), never reading another process that reuses the pid.
#[must_use]
pub fn reread_proc(file: &File) -> Option<String> {
    use std::os::unix::fs::FileExt as _;
    /// Room for a whole `stat` line (about 300 bytes) and most `children` lists.
    const FIRST_READ: usize = 1024;
    let mut buf = vec![0_u8; FIRST_READ];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).ok()
}

/// What `/proc/<pid>/stat` says about one process (times in clock ticks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcStat {
    /// Parent process id (0 when unknown).
    pub ppid: u32,
    /// `utime`.
    pub utime: u64,
    /// `stime`.
    pub stime: u64,
    /// `cutime`: user time of the children it waited for (and theirs).
    pub cutime: u64,
    /// `cstime`.
    pub cstime: u64,
    /// Resident bytes.
    pub rss_bytes: u64,
    /// Start time in ticks since boot.
    pub start_ticks: u64,
    /// Virtual size in bytes.
    pub vsize: u64,
    /// Threads.
    pub threads: u64,
    /// A zombie (exited, not yet reaped).
    pub zombie: bool,
}

/// Reads `/proc/<pid>/stat`; `None` when the process is gone.
pub fn read_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&read_proc(&format!("/proc/{pid}/stat"))?)
}

fn parse_stat(text: &str) -> Option<ProcStat> {
    // the command name may hold spaces and parentheses: fields start after the last ')'
    let f: Vec<&str> = text.get(text.rfind(')')? + 2..)?.split(' ').collect();
    // field N (1-based, as proc(5) numbers them) is f[N - 3]
    let n = |field: usize| f.get(field - 3).and_then(|v| v.trim().parse::<u64>().ok());
    Some(ProcStat {
        zombie: f.first().is_some_and(|s| *s == "Z"),
        ppid: n(4).and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
        utime: n(14)?,
        stime: n(15)?,
        cutime: n(16).unwrap_or(0),
        cstime: n(17).unwrap_or(0),
        threads: n(20).unwrap_or(0),
        start_ticks: n(22)?,
        vsize: n(23).unwrap_or(0),
        rss_bytes: n(24)? * page_size(),
    })
}

/// Proportional set size of `pid` from `/proc/<pid>/smaps_rollup` (readable by the
/// process's own user or with `CAP_SYS_PTRACE`); `None` when unreadable.
pub fn read_pss(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// One reading of an app's process tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeSample {
    /// User ticks of the live processes and of the children they reaped.
    pub user: u64,
    /// System ticks, likewise.
    pub system: u64,
    /// Resident bytes summed over the live processes.
    pub rss_bytes: u64,
    /// Resident bytes of the main process alone.
    pub main_rss_bytes: u64,
    /// PSS summed, when asked for and readable for every process.
    pub pss_bytes: Option<u64>,
    /// Live (not zombie) processes counted.
    pub processes: u32,
}

/// The children of `pid` forked by its main thread (`/proc/<pid>/task/<pid>/children`;
/// children forked by other threads are listed under those threads and not read here).
fn children(pid: u32) -> Vec<u32> {
    parse_children(read_proc(&format!("/proc/{pid}/task/{pid}/children")))
}

fn parse_children(text: Option<String>) -> Vec<u32> {
    text.map(|s| {
        s.split_whitespace()
            .filter_map(|c| c.parse().ok())
            .collect()
    })
    .unwrap_or_default()
}

/// The open `stat` and `children` files of apps' main processes, so that reading an app
/// (every `ListApps`, every sampler pass) costs two `pread`s instead of two path lookups,
/// opens and closes: those were most of the daemon's time for `turbo status` with 100 apps.
/// Descendants come and go too often to be worth keeping open.
#[derive(Debug, Default)]
pub struct MainFiles {
    open: HashMap<u32, (File, Option<File>)>,
}

impl MainFiles {
    /// `/proc/<pid>/stat` of a main process, through its kept file (opened on first use).
    /// A process gone takes its files with it.
    fn stat(&mut self, pid: u32) -> Option<ProcStat> {
        let stat = match self.open.entry(pid) {
            Entry::Occupied(e) => {
                let text = reread_proc(&e.get().0);
                if text.is_none() {
                    e.remove();
                }
                text
            }
            Entry::Vacant(e) => {
                let stat = File::open(format!("/proc/{pid}/stat")).ok()?;
                let text = reread_proc(&stat)?;
                let children = File::open(format!("/proc/{pid}/task/{pid}/children")).ok();
                e.insert((stat, children));
                Some(text)
            }
        };
        parse_stat(&stat?)
    }

    /// The children of a main process whose `stat` was just read by [`Self::stat`].
    fn children(&self, pid: u32) -> Vec<u32> {
        match self.open.get(&pid) {
            Some((_, Some(file))) => parse_children(reread_proc(file)),
            _ => children(pid),
        }
    }

    /// Closes the files of processes that are no longer a main process of an app.
    pub fn keep_only(&mut self, mains: &HashSet<u32>) {
        self.open.retain(|pid, _| mains.contains(pid));
    }

    /// Closes the files of `pid` (it exited).
    pub fn forget(&mut self, pid: u32) {
        self.open.remove(&pid);
    }
}

/// Sums the tree of `main`: `main`, those of `descendants` (the event source's) still alive,
/// and the children of each of them found in `/proc` (descendants forked before the event
/// source watched `main`, which eBPF cannot have seen). Processes that started earlier than
/// `main` are skipped (an older process behind a reused pid is not ours). `None` when
/// `main` is gone. `deep` adds PSS, which makes the kernel walk page tables, so it is read
/// only for `describe` and scrapes, never by the sampler.
///
/// CPU counts `utime + cutime` (and the system pair) of every process: the time of a
/// descendant that exited and was reaped inside the tree moves into its parent's `cutime`,
/// so it is neither lost nor counted twice.
pub fn sample_tree(
    main: u32,
    descendants: impl IntoIterator<Item = u32>,
    deep: bool,
    files: &mut MainFiles,
) -> Option<TreeSample> {
    let first = files.stat(main)?;
    let mut sample = TreeSample {
        user: first.utime + first.cutime,
        system: first.stime + first.cstime,
        rss_bytes: first.rss_bytes,
        main_rss_bytes: first.rss_bytes,
        pss_bytes: None,
        processes: u32::from(!first.zombie),
    };
    let mut pss = if deep { read_pss(main) } else { None };
    let mut seen = std::collections::HashSet::from([main]);
    let mut todo: Vec<u32> = files.children(main);
    todo.extend(descendants);
    while let Some(pid) = todo.pop() {
        if !seen.insert(pid) {
            continue;
        }
        let Some(st) = read_stat(pid) else { continue };
        if st.start_ticks < first.start_ticks {
            continue;
        }
        sample.user += st.utime + st.cutime;
        sample.system += st.stime + st.cstime;
        sample.rss_bytes += st.rss_bytes;
        if !st.zombie {
            sample.processes += 1;
            if deep {
                pss = pss.zip(read_pss(pid)).map(|(a, b)| a + b);
            }
            todo.extend(children(pid));
        }
    }
    sample.pss_bytes = pss;
    Some(sample)
}

/// The daemon's own `process_*` figures (its own CPU only: the apps it reaped are in its
/// `cutime`, and they are not the daemon's cost).
pub fn daemon_stats() -> Option<ProcessStats> {
    let st = read_stat(std::process::id())?;
    let hz = clock_ticks() as f64;
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    })?;
    let limit = |resource| {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        (unsafe { libc::getrlimit(resource, &raw mut rl) } == 0).then_some(rl.rlim_cur)
    };
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    Some(ProcessStats {
        cpu_seconds: (st.utime + st.stime) as f64 / hz,
        resident_bytes: st.rss_bytes,
        virtual_bytes: st.vsize,
        virtual_max_bytes: limit(libc::RLIMIT_AS).unwrap_or(u64::MAX),
        open_fds,
        max_fds: limit(libc::RLIMIT_NOFILE).unwrap_or(0),
        start_time_seconds: boot as f64 + st.start_ticks as f64 / hz,
        threads: st.threads,
    })
}

/// Resident bytes of process `pid` alone, from `/proc/<pid>/statm` (the same figure as `stat`'s,
/// at about half the kernel's cost: no CPU times to gather); the leak sampler's reading.
/// `None` when the process is gone.
#[must_use]
pub fn resident_bytes(pid: u32) -> Option<u64> {
    use std::io::Read as _;
    // one read into the stack: the line is seven numbers, and `read_to_string` would add a
    // `statx` for the size and a second read for the end of file (the sampler does this for
    // every app)
    let mut buf = [0u8; 160];
    let n = File::open(format!("/proc/{pid}/statm"))
        .ok()?
        .read(&mut buf)
        .ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let pages: u64 = text.split(' ').nth(1)?.trim().parse().ok()?;
    Some(pages * page_size())
}

// --- memory cgroups (`memory_enforce: cgroup`) ---

/// The cgroup interface an app's memory limit is set through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    /// The unified hierarchy: `memory.max`, `memory.events`.
    V2,
    /// The memory controller's own hierarchy: `memory.limit_in_bytes`, `memory.oom_control`.
    V1,
}

impl CgroupVersion {
    /// `v2` or `v1`, as `describe` shows it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::V2 => "v2",
            Self::V1 => "v1",
        }
    }
}

/// A memory cgroup the daemon made for one app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryCgroup {
    /// Its directory.
    pub path: std::path::PathBuf,
    /// Through which interface.
    pub version: CgroupVersion,
}

/// Where the daemon's own memory cgroup is: in the unified hierarchy when the memory controller
/// is enabled there, else in the v1 memory hierarchy. New cgroups go below it, so they stay
/// inside whatever limits the daemon itself runs under (a container, a systemd unit).
///
/// # Errors
/// `Unsupported` when neither hierarchy has a memory controller mounted.
pub fn own_memory_cgroup() -> io::Result<(std::path::PathBuf, CgroupVersion)> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    let own = std::fs::read_to_string("/proc/self/cgroup")?;
    // mountinfo: id parent dev root mountpoint options... - fstype source super-options
    let mount = |want: CgroupVersion| {
        mounts.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let (fstype, _, options) = (right.next()?, right.next()?, right.next()?);
            let (root, point) = (*left.get(3)?, std::path::PathBuf::from(*left.get(4)?));
            let fits = match want {
                CgroupVersion::V2 => {
                    fstype == "cgroup2"
                        && std::fs::read_to_string(point.join("cgroup.controllers"))
                            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
                }
                CgroupVersion::V1 => {
                    fstype == "cgroup" && options.split(',').any(|o| o == "memory")
                }
            };
            fits.then(|| (root.to_owned(), point))
        })
    };
    // /proc/self/cgroup: hierarchy-id:controllers:path ("0::path" for the unified one)
    let own_path = |want: CgroupVersion| {
        own.lines().find_map(|line| {
            let mut f = line.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            let fits = match want {
                CgroupVersion::V2 => controllers.is_empty(),
                CgroupVersion::V1 => controllers.split(',').any(|c| c == "memory"),
            };
            fits.then(|| path.to_owned())
        })
    };
    for version in [CgroupVersion::V2, CgroupVersion::V1] {
        if let (Some((root, point)), Some(path)) = (mount(version), own_path(version)) {
            // a bind mount of a sub-tree (mount root not `/`) shows paths below that root
            let below = path.strip_prefix(root.as_str()).unwrap_or(&path);
            return Ok((point.join(below.trim_start_matches('/')), version));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "no memory cgroup controller is mounted (neither cgroup v2 with `memory` in \
         cgroup.controllers nor a v1 `memory` hierarchy)",
    ))
}

/// Creates (or reuses) the memory cgroup `base/group/name` and sets its limit to `bytes`
/// (swap included where the kernel accounts it, so the limit cannot be dodged by swapping).
/// For v2 the memory controller is first enabled for the children of `base` and of `group`.
///
/// # Errors
/// What the kernel refused, naming the file.
pub fn create_memory_cgroup(
    base: &Path,
    version: CgroupVersion,
    group: &str,
    name: &str,
    bytes: u64,
) -> io::Result<MemoryCgroup> {
    let named =
        |path: &Path, e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let write = |path: &Path, value: &str| std::fs::write(path, value).map_err(|e| named(path, e));
    let parent = base.join(group);
    let path = parent.join(name);
    if version == CgroupVersion::V2 {
        for dir in [base, parent.as_path()] {
            if dir == parent.as_path() {
                std::fs::create_dir_all(dir).map_err(|e| named(dir, e))?;
            }
            let control = dir.join("cgroup.subtree_control");
            let on = std::fs::read_to_string(&control)
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
            if !on {
                write(&control, "+memory")?;
            }
        }
    }
    std::fs::create_dir_all(&path).map_err(|e| named(&path, e))?;
    let limit = bytes.to_string();
    match version {
        CgroupVersion::V2 => {
            write(&path.join("memory.max"), &limit)?;
            let swap = path.join("memory.swap.max");
            if swap.exists() {
                write(&swap, "0")?;
            }
        }
        CgroupVersion::V1 => {
            // memsw (memory + swap) must stay >= the memory limit: lower it after, raise it
            // before
            let memsw = path.join("memory.memsw.limit_in_bytes");
            let has_memsw = memsw.exists();
            if has_memsw {
                let _ = std::fs::write(&memsw, &limit);
            }
            write(&path.join("memory.limit_in_bytes"), &limit)?;
            if has_memsw {
                write(&memsw, &limit)?;
            }
        }
    }
    Ok(MemoryCgroup { path, version })
}

impl MemoryCgroup {
    /// Opens the cgroup's `cgroup.procs` for [`Extra::cgroup_procs`]: the child writes `0` (itself)
    /// into it before it execs, so all its memory is charged there from the first page.
    ///
    /// # Errors
    /// The open failure, naming the file.
    pub fn procs(&self) -> io::Result<OwnedFd> {
        let path = self.path.join("cgroup.procs");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map(OwnedFd::from)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }

    /// How many times the kernel OOM killer has killed a process in this cgroup (the
    /// `oom_kill` line of `memory.events`, v2, or `memory.oom_control`, v1 since Linux 4.13).
    #[must_use]
    pub fn oom_kills(&self) -> Option<u64> {
        let file = match self.version {
            CgroupVersion::V2 => "memory.events",
            CgroupVersion::V1 => "memory.oom_control",
        };
        std::fs::read_to_string(self.path.join(file))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))?
            .trim()
            .parse()
            .ok()
    }

    /// Removes the cgroup (and its group directory when that is now empty).
    ///
    /// # Errors
    /// `EBUSY` while a process is still in it.
    pub fn remove(&self) -> io::Result<()> {
        std::fs::remove_dir(&self.path)?;
        if let Some(parent) = self.path.parent() {
            // other apps' cgroups keep it busy: fine
            let _ = std::fs::remove_dir(parent);
        }
        Ok(())
    }
}

/// Clock ticks per second (`_SC_CLK_TCK`).
#[must_use]
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100)
}

/// Bytes per page (`_SC_PAGESIZE`).
#[must_use]
pub fn page_size() -> u64 {
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

/// Fixes glibc's allocator thresholds for a long-lived, mostly idle daemon: blocks of 128 KiB
/// and more (log read buffers grown by a burst, start-up parsing) get their own mappings and go
/// back to the kernel when freed, and free memory at the top of the heap is returned above
/// 256 KiB. By default both thresholds grow after the first large free (up to 32 MiB), after
/// which such memory stays with the process for good. One arena: the daemon runs on one thread
/// (a tokio blocking-pool thread now and then would otherwise get an arena of its own).
pub fn settle_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 10);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Frees heap the allocator keeps after start-up parsing (BTF, config).
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: glibc call with no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

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
        let me = std::process::id();
        assert!(read_stat(me).unwrap().rss_bytes > 0);
        assert!(resident_bytes(me).unwrap() > 0);
        assert!(
            read_stat(child.pid).is_none(),
            "reaped processes leave /proc"
        );
        assert!(resident_bytes(child.pid).is_none());
    }

    #[test]
    fn a_plain_app_is_posix_spawned_like_a_forked_one() {
        use std::io::Read as _;
        let dir = std::env::temp_dir();
        // an fd the daemon holds without close-on-exec must not reach the app
        // SAFETY: a copy of stdin at fd 100 or above, without close-on-exec; closed below.
        let stray = unsafe { libc::fcntl(0, libc::F_DUPFD, 100) };
        assert!(stray >= 100);
        let script = "echo sid=$(cut -d' ' -f6 /proc/$$/stat) pid=$$; echo cwd=$PWD; \
                      echo var=$ONLY; read line; echo stdin=$?; grep SigIgn /proc/$$/status; \
                      ls /proc/$$/fd; echo oops >&2"
            .to_owned();
        let mut spec = AppSpec::new(
            "t",
            vec!["/bin/sh".into(), "-c".into(), script],
            dir.clone(),
        );
        spec.env = vec![("ONLY".into(), "here".into())];
        let setup = ChildSetup::new(&spec).unwrap();
        assert!(
            setup.is_session_only(),
            "the test must take the posix_spawn path"
        );
        let child = spawn(&spec).unwrap();
        // SAFETY: closing the fd duplicated above.
        unsafe { libc::close(stray) };
        assert_eq!(wait_reaped(&child).code(), Some(0));
        let read_all = |fd: &OwnedFd| {
            let mut text = String::new();
            File::from(fd.try_clone().unwrap())
                .read_to_string(&mut text)
                .unwrap();
            text
        };
        let out = read_all(&child.stdout);
        assert!(
            out.contains(&format!("sid={0} pid={0}", child.pid)),
            "{out}"
        );
        assert!(out.contains(&format!("cwd={}", dir.display())), "{out}");
        assert!(out.contains("var=here"), "{out}");
        assert!(out.contains("stdin=1"), "/dev/null gives EOF: {out}");
        let ignored = out
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:\t"))
            .and_then(|mask| u64::from_str_radix(mask, 16).ok())
            .expect("SigIgn line");
        // the test process ignores SIGPIPE, as the daemon does (Rust's runtime)
        assert_eq!(
            ignored & (1 << (libc::SIGPIPE - 1)),
            0,
            "SIGPIPE back to default: {out}"
        );
        let fds: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.starts_with("SigIgn"))
            .skip(1)
            .collect();
        assert!(
            fds.iter()
                .all(|fd| fd.parse::<i32>().is_ok_and(|fd| fd <= 3)),
            "only 0-2 (and ls's own directory fd): {fds:?}"
        );
        assert_eq!(read_all(&child.stderr), "oops\n");

        let missing = AppSpec::new("t", vec!["/nonexistent/program".into()], dir);
        let err = spawn(&missing).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string()
                .starts_with("cannot start /nonexistent/program: "),
            "{err}"
        );
    }

    fn wait_reaped(child: &Child) -> WaitStatus {
        loop {
            match reap(&child.pidfd) {
                Ok(s) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// What an unprivileged daemon may set too, so this runs as any user; switching users is
    /// covered by the e2e tests (as root).
    #[test]
    fn spawn_applies_limits_and_builds_the_environment() {
        use crate::config::Rlimit;
        // SAFETY: getpriority; -1 is a valid answer, which is fine for this test.
        let own_nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let own_oom: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut spec = AppSpec::new("t", vec!["/bin/sleep".into(), "30".into()], "/".into());
        spec.env = vec![("APP_VAR".into(), "1".into())];
        let l = &mut spec.privileges.limits;
        l.umask = Some(0o077);
        l.nofile = Some(Rlimit {
            soft: 64,
            hard: 128,
        });
        l.core = Some(Rlimit { soft: 0, hard: 0 });
        l.nice = Some((own_nice + 2).min(19));
        l.oom_score_adj = Some(own_oom.max(500));
        let child = spawn(&spec).unwrap();
        let pid = child.pid;
        let read = |what: &str| std::fs::read_to_string(format!("/proc/{pid}/{what}")).unwrap();
        let status = read("status");
        let limits = read("limits");
        let oom = read("oom_score_adj");
        let stat = read("stat");
        // field 19 (nice), counted after the command name like `parse_stat` does
        let nice = stat[stat.rfind(')').unwrap() + 2..]
            .split(' ')
            .nth(16)
            .unwrap()
            .to_owned();
        let environ = read("environ");
        signal_group(pid, libc::SIGKILL).unwrap();
        assert_eq!(wait_reaped(&child).signal(), Some(libc::SIGKILL));

        assert!(status.contains("Umask:\t0077"), "{status}");
        let row = |name: &str| {
            limits
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(row("Max open files"), "64 128");
        assert_eq!(row("Max core file size"), "0 0");
        assert_eq!(nice, (own_nice + 2).min(19).to_string());
        assert_eq!(oom.trim(), own_oom.max(500).to_string());
        let vars: Vec<&str> = environ.split('\0').filter(|v| !v.is_empty()).collect();
        assert!(
            vars.contains(&"APP_VAR=1") && vars.contains(&"PWD=/"),
            "{vars:?}"
        );
        assert!(vars.iter().any(|v| v.starts_with("PATH=")), "{vars:?}");
        // cargo sets CARGO_* for this test process: not on the allow-list
        assert!(!vars.iter().any(|v| v.starts_with("CARGO_")), "{vars:?}");
    }

    #[test]
    fn stat_fields_with_a_hostile_command_name() {
        let text = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 3 0 \
                12345 1000000 256 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let st = parse_stat(text).unwrap();
        assert_eq!(st.ppid, 1);
        assert_eq!(
            (st.utime, st.stime, st.cutime, st.cstime),
            (250, 50, 30, 20)
        );
        assert_eq!(
            (st.threads, st.start_ticks, st.vsize),
            (3, 12345, 1_000_000)
        );
        assert_eq!(st.rss_bytes, 256 * page_size());
        assert!(!st.zombie);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn kept_files_read_fresh_figures_and_go_with_their_process() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 60 & wait"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut files = MainFiles::default();
        // the shell forks its sleep soon; the kept children file must show it when it does
        let deadline = Instant::now() + Duration::from_secs(10);
        let grandchild = loop {
            let first = files.stat(pid).expect("alive");
            assert!(!first.zombie);
            if let Some(&c) = files.children(pid).first() {
                break c;
            }
            assert!(Instant::now() < deadline, "sh never forked its sleep");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(files.open.len(), 1);
        let tree = sample_tree(pid, [], false, &mut files).unwrap();
        assert_eq!(tree.processes, 2, "{tree:?}");
        // SAFETY: plain kill(2) of the process we spawned (and of its sleep).
        unsafe {
            libc::kill(i32::try_from(grandchild).unwrap(), libc::SIGKILL);
            libc::kill(i32::try_from(pid).unwrap(), libc::SIGKILL);
        }
        child.wait().unwrap();
        // reaped: the kept file answers nothing and is closed, whoever gets the pid next
        assert_eq!(files.stat(pid), None);
        assert!(files.open.is_empty());
        files.stat(std::process::id()).unwrap();
        files.keep_only(&HashSet::new());
        assert!(files.open.is_empty());
    }

    #[test]
    fn own_tree_and_daemon_stats_read() {
        let me = std::process::id();
        let s = sample_tree(me, [me, u32::MAX - 1], true, &mut MainFiles::default()).unwrap();
        assert_eq!(s.processes, 1);
        assert!(s.rss_bytes > 0 && s.rss_bytes == s.main_rss_bytes);
        assert!(s.pss_bytes.is_some_and(|p| p > 0), "{s:?}");
        let d = daemon_stats().unwrap();
        assert!(d.open_fds > 0 && d.max_fds > 0 && d.threads > 0, "{d:?}");
        assert!(d.start_time_seconds > 1.6e9, "{d:?}");
    }

    #[test]
    fn decimal_text_without_allocating() {
        for n in [0, 7, -7, 500, -1000, i32::MAX, i32::MIN] {
            let (buf, len) = decimal(n);
            assert_eq!(std::str::from_utf8(&buf[..len]).unwrap(), n.to_string());
        }
    }

    #[test]
    fn read_proc_reads_whole_files_of_any_size() {
        let stat = read_proc(&format!("/proc/{}/stat", std::process::id())).unwrap();
        assert!(
            stat.starts_with(&format!("{} (", std::process::id())),
            "{stat}"
        );
        // larger than the first read: the rest must follow
        let dir = std::env::temp_dir().join(format!("turbo-read-proc-{}", std::process::id()));
        let text: String = (0..1000).map(|i| format!("{i} ")).collect();
        assert!(text.len() > 3000);
        std::fs::write(&dir, &text).unwrap();
        assert_eq!(
            read_proc(dir.to_str().unwrap()).as_deref(),
            Some(text.as_str())
        );
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(read_proc("/proc/0/stat"), None);
    }
}
