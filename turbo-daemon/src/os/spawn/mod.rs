//! Starting a process from a prepared [`Plan`]: in its own session (so it leads its own process
//! group and has no controlling terminal), stdin from /dev/null (or a given fd), stdout and stderr into pipes,
//! with exactly the environment, identity and limits the plan says.
//!
//! Two paths, both measured fast paths (`cargo xtask bench`): a plan that needs nothing between
//! fork and exec but its session goes through `posix_spawn` ([`spawn_session`], `CLONE_VFORK`:
//! no copy of the daemon's page tables); the others fork, and the child applies what
//! [`ChildSetup`] prepared, making only async-signal-safe system calls. What the plan holds
//! (which environment, which user) is decided by the caller; nothing here knows what an app is.

use std::{
    ffi::{CString, OsString, c_char},
    io,
    os::{
        fd::{AsRawFd, BorrowedFd, OwnedFd},
        unix::{ffi::OsStrExt, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

mod child;

use self::child::ChildSetup;
#[cfg(test)]
use self::child::decimal;
use super::process::pidfd_open;

/// Everything one process is started with, prepared before the call.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    /// Program and arguments; the program is searched in the environment's `PATH` unless it
    /// is a path.
    pub argv: Vec<String>,
    /// The whole environment (nothing is inherited).
    pub env: Vec<(OsString, OsString)>,
    /// The working directory.
    pub cwd: PathBuf,
    /// Process attributes; `None` fields are inherited.
    pub limits: Limits,
    /// The user to run as; `None`: the daemon's own.
    pub run_as: Option<RunAs>,
    /// Listening sockets, passed as fds 3, 4, … with `LISTEN_FDS`, `LISTEN_PID` and
    /// `LISTEN_FDNAMES` (the systemd socket-activation protocol).
    pub listen: Vec<BorrowedFd<'a>>,
    /// The name of every socket in `LISTEN_FDNAMES`.
    pub listen_name: String,
    /// `cgroup.procs` of the cgroup directories the child enters first thing after `setsid`,
    /// before it drops privileges (see `cgroup::AppCgroup::procs`).
    pub cgroup_procs: Vec<BorrowedFd<'a>>,
    /// Its stdin (the read end of a pipe, for a notification command); `None`: /dev/null.
    pub stdin: Option<OwnedFd>,
}

/// Resource limits and scheduling attributes of a [`Plan`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// `RLIMIT_NOFILE` (soft, hard).
    pub nofile: Option<(u64, u64)>,
    /// `RLIMIT_NPROC` (soft, hard).
    pub nproc: Option<(u64, u64)>,
    /// `RLIMIT_CORE` (soft, hard).
    pub core: Option<(u64, u64)>,
    /// Niceness.
    pub nice: Option<i32>,
    /// `/proc/self/oom_score_adj`.
    pub oom_score_adj: Option<i32>,
    /// File mode creation mask.
    pub umask: Option<u32>,
}

/// The identity a [`Plan`] runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// The user's name, for messages.
    pub user: String,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary gids (set only by a root daemon).
    pub groups: Vec<u32>,
}

/// A freshly started process and the fds its caller keeps for it.
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

/// Starts `plan`.
///
/// Between fork and exec the child, in this order: marks every fd above 2 close-on-exec
/// (`child::close_inherited_fds_on_exec`); becomes a session leader; enters its cgroup; sets its
/// rlimits, nice and `oom_score_adj` (while it still has the daemon's privileges: raising a hard
/// limit, lowering nice or `oom_score_adj` need them); sets its umask; then drops privileges
/// with `setgroups`, `setgid` and `setuid`, last, so nothing after can regain them; and only
/// then, with a changed user, enters the working directory, so a process cannot get a directory
/// its user may not enter.
///
/// With sockets in `plan.listen` the child executes the program itself, last, with an
/// environment built here and `LISTEN_PID` written into it after the fork (see `child::SocketExec`).
///
/// # Errors
/// The spawn error with the program named (and the user, with a hint, when it runs as one).
pub fn spawn(plan: &Plan<'_>) -> io::Result<Child> {
    let (program, args) = plan
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
    let mut setup = ChildSetup::new(plan)?;
    let env = &plan.env;
    let fail = |e: io::Error| {
        let message = match &plan.run_as {
            Some(r) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => format!(
                "cannot start {program} as user {}: {e} (may {} enter {} and run {program}?)",
                r.user,
                r.user,
                plan.cwd.display()
            ),
            Some(r) => format!("cannot start {program} as user {}: {e}", r.user),
            None => format!("cannot start {program}: {e}"),
        };
        io::Error::new(e.kind(), message)
    };
    // once the daemon raised its own limit, the child gets the one it was started with, which
    // posix_spawn cannot set (a `prlimit` after it races with the program reading its limit)
    if let Some(nofile) = super::creds::inherited_nofile() {
        setup.default_nofile(nofile);
    }
    // musl has no posix_spawn_file_actions_addclosefrom_np: the fork path below does the same
    #[cfg(target_env = "gnu")]
    if setup.is_session_only() && plan.stdin.is_none() && Path::new(program).is_absolute() {
        return spawn_session(program, args, env, &plan.cwd).map_err(fail);
    }
    let stdin = match &plan.stdin {
        Some(fd) => Stdio::from(fd.try_clone().map_err(fail)?),
        None => Stdio::null(),
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if setup.chdir.is_none() {
        cmd.current_dir(&plan.cwd);
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
    let pidfd = pidfd_or_kill(pid)?;
    let stdout = OwnedFd::from(child.stdout.take().expect("stdout was piped"));
    let stderr = OwnedFd::from(child.stderr.take().expect("stderr was piped"));
    // Dropping `child` neither waits nor kills; the pidfd owns the reaping from now on.
    drop(child);
    super::process::claim(pid);
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
/// limits, nice, `oom_score_adj`, umask, user, sockets or cgroup), through `posix_spawn`.
///
/// glibc's `posix_spawn` starts the child with `CLONE_VM | CLONE_VFORK`: it borrows the
/// daemon's memory until `exec` instead of copying its page tables, and the kernel does not
/// tear a copy down at `exec` either. Forking the daemon and those copies were about half of
/// its time when starting 100 apps. The child does what [`ChildSetup::apply`] would: a new
/// session, every fd above stderr closed (`closefrom` rather than close-on-exec marks: glibc
/// reports a failed `exec` through the shared memory, not through an fd), the working
/// directory; an empty signal mask and every signal back to its default action (the daemon
/// ignores SIGPIPE, and whoever started the daemon may have ignored more). `program` is an absolute path: `posix_spawn` does not
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
        // every signal to its default action (`child::default_signal_dispositions` says why);
        // glibc's full set leaves out its internal signals
        let mut every_signal: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut no_signals);
        libc::sigfillset(&raw mut every_signal);
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
                &raw const every_signal,
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
    let pidfd = pidfd_or_kill(pid)?;
    super::process::claim(pid);
    set_nonblocking(&out_read)?;
    set_nonblocking(&err_read)?;
    Ok(Child {
        pid,
        pidfd,
        stdout: out_read,
        stderr: err_read,
    })
}

/// The pidfd of `pid`, started just now and not waited for. Without one (no descriptor left:
/// `EMFILE`) the process is killed and reaped, so the start fails as a whole: nobody would
/// supervise it, and its pipes close with the error.
fn pidfd_or_kill(pid: u32) -> io::Result<OwnedFd> {
    pidfd_open(pid).inspect_err(|_| {
        if let Some(p) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
        }
    })
}

/// A close-on-exec pipe: (read end, write end).
#[cfg(target_env = "gnu")]
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    Ok(rustix::io::ioctl_fionbio(fd, true)?)
}

#[cfg(test)]
mod tests {
    use std::{fs::File, io::Read as _};

    use super::*;
    use crate::os::process::{SIGKILL, WaitStatus, reap, signal_group};

    fn plan(argv: &[&str], cwd: &Path) -> Plan<'static> {
        Plan {
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: cwd.to_path_buf(),
            ..Plan::default()
        }
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

    /// The pipe's text up to its end. The read end is non-blocking, and another test thread's
    /// fork may hold a copy of the write end until its exec closes it: wait for the end then.
    fn read_all(fd: &OwnedFd) -> String {
        let mut file = File::from(fd.try_clone().unwrap());
        let mut bytes = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match file.read_to_end(&mut bytes) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "the pipe never ended");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("reading the pipe: {e}"),
            }
        }
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn spawn_and_reap_a_real_process() {
        let child = spawn(&plan(&["/bin/sh", "-c", "exit 7"], Path::new("/"))).unwrap();
        assert_eq!(wait_reaped(&child).code(), Some(7));
        assert!(
            crate::os::proc::read_stat(child.pid).is_err(),
            "reaped processes leave /proc"
        );
    }

    #[test]
    fn apps_start_with_every_signal_at_its_default_whatever_the_daemon_ignores() {
        // SIGURG: its default action is to be ignored, so ignoring it here changes nothing for
        // the other tests of this process, yet it shows in SigIgn only while set to SIG_IGN
        // SAFETY: no handler is installed, only a disposition changed
        unsafe { libc::signal(libc::SIGURG, libc::SIG_IGN) };
        let script = "grep SigIgn /proc/$$/status";
        let plain = plan(&["/bin/sh", "-c", script], Path::new("/"));
        let mut forked = plan(&["/bin/sh", "-c", script], Path::new("/"));
        forked.limits.umask = Some(0o022);
        assert!(ChildSetup::new(&plain).unwrap().is_session_only());
        assert!(!ChildSetup::new(&forked).unwrap().is_session_only());
        for (path, p) in [("posix_spawn", plain), ("fork", forked)] {
            let child = spawn(&p).unwrap();
            assert_eq!(wait_reaped(&child).code(), Some(0));
            let out = read_all(&child.stdout);
            let ignored = out
                .trim()
                .strip_prefix("SigIgn:\t")
                .and_then(|mask| u64::from_str_radix(mask, 16).ok())
                .unwrap_or_else(|| panic!("{path}: no SigIgn in {out}"));
            // signals 1-31 (a non-interactive shell ignores none itself); glibc's posix_spawn
            // ignores its two internal real-time signals (32, 33) in the child, which glibc
            // programs take back at start-up
            assert_eq!(
                ignored & 0x7fff_ffff,
                0,
                "{path}: an ignored signal reached the app: {out}"
            );
        }
    }

    #[test]
    fn a_plain_plan_is_posix_spawned_like_a_forked_one() {
        let dir = std::env::temp_dir();
        // an fd the daemon holds without close-on-exec must not reach the child
        let stray = rustix::io::fcntl_dupfd_cloexec(std::io::stdin(), 100).unwrap();
        rustix::io::fcntl_setfd(&stray, rustix::io::FdFlags::empty()).unwrap();
        let script = "echo sid=$(cut -d' ' -f6 /proc/$$/stat) pid=$$; echo cwd=$PWD; \
                      echo var=$ONLY; read line; echo stdin=$?; grep SigIgn /proc/$$/status; \
                      ls /proc/$$/fd; echo oops >&2";
        let mut p = plan(&["/bin/sh", "-c", script], &dir);
        p.env.push(("ONLY".into(), "here".into()));
        p.env.push(("PWD".into(), dir.clone().into()));
        let setup = ChildSetup::new(&p).unwrap();
        assert!(
            setup.is_session_only(),
            "the test must take the posix_spawn path"
        );
        let child = spawn(&p).unwrap();
        drop(stray);
        assert_eq!(wait_reaped(&child).code(), Some(0));
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
            ignored & (1 << (13 - 1)),
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

        let err = spawn(&plan(&["/nonexistent/program"], &dir)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string()
                .starts_with("cannot start /nonexistent/program: "),
            "{err}"
        );
    }

    /// What an unprivileged daemon may set too, so this runs as any user; switching users is
    /// covered by the e2e tests (as root).
    #[test]
    fn spawn_applies_limits() {
        let own_nice = rustix::process::getpriority_process(None).unwrap();
        let own_oom: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut p = plan(&["/bin/sleep", "30"], Path::new("/"));
        p.limits = Limits {
            umask: Some(0o077),
            nofile: Some((64, 128)),
            core: Some((0, 0)),
            nice: Some((own_nice + 2).min(19)),
            oom_score_adj: Some(own_oom.max(500)),
            nproc: None,
        };
        let child = spawn(&p).unwrap();
        let pid = child.pid;
        let read = |what: &str| std::fs::read_to_string(format!("/proc/{pid}/{what}")).unwrap();
        let (status, limits, oom) = (read("status"), read("limits"), read("oom_score_adj"));
        let stat = crate::os::proc::read_stat(pid).unwrap();
        let nice = read("stat");
        signal_group(pid, SIGKILL).unwrap();
        assert_eq!(wait_reaped(&child).signal(), Some(SIGKILL));
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
        // field 19 (nice), counted after the command name
        let nice = nice[nice.rfind(')').unwrap() + 2..]
            .split(' ')
            .nth(16)
            .unwrap();
        assert_eq!(nice, (own_nice + 2).min(19).to_string(), "{stat:?}");
        assert_eq!(oom.trim(), own_oom.max(500).to_string());
    }

    #[test]
    fn decimal_text_without_allocating() {
        for n in [0, 7, -7, 500, -1000, i32::MAX, i32::MIN] {
            let (buf, len) = decimal(n);
            assert_eq!(std::str::from_utf8(&buf[..len]).unwrap(), n.to_string());
        }
    }
}
