//! The calling process's credentials and limits, as the kernel sees them, and the file-system
//! credentials of one thread.
//!
//! Reads are what the daemon may grant its apps (its ids, groups, niceness, hard limits,
//! `oom_score_adj`, the kernel's `nr_open`); [`switch_thread_fs_credentials`] gives the calling
//! thread another user's file access rights. Through rustix and nix: no hand-written `unsafe`.
//! Imports no domain module: what these numbers allow is decided in `access`.

use std::{io, sync::OnceLock};

use nix::unistd::{Gid, Uid, setfsgid, setfsuid};
use rustix::process::{self, Resource};

/// The effective uid of the process.
#[must_use]
pub fn effective_uid() -> u32 {
    process::geteuid().as_raw()
}

/// The effective gid of the process.
#[must_use]
pub fn effective_gid() -> u32 {
    process::getegid().as_raw()
}

/// The supplementary groups of the process (empty if they cannot be read).
#[must_use]
pub fn groups() -> Vec<u32> {
    process::getgroups()
        .map(|groups| groups.into_iter().map(process::Gid::as_raw).collect())
        .unwrap_or_default()
}

/// The niceness of the process (0 if it cannot be read).
#[must_use]
pub fn nice() -> i32 {
    process::getpriority_process(None).unwrap_or(0)
}

/// A resource limit the daemon reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `RLIMIT_NOFILE`.
    Nofile,
    /// `RLIMIT_NPROC`.
    Nproc,
    /// `RLIMIT_CORE`.
    Core,
    /// `RLIMIT_NICE`.
    Nice,
}

/// The soft and hard values of `limit`; `u64::MAX` is `RLIM_INFINITY`.
#[must_use]
pub fn limit(limit: Limit) -> (u64, u64) {
    let resource = match limit {
        Limit::Nofile => Resource::Nofile,
        Limit::Nproc => Resource::Nproc,
        Limit::Core => Resource::Core,
        Limit::Nice => Resource::Nice,
    };
    let l = process::getrlimit(resource);
    (l.current.unwrap_or(u64::MAX), l.maximum.unwrap_or(u64::MAX))
}

/// The process's `oom_score_adj` (`/proc/self/oom_score_adj`).
#[must_use]
pub fn oom_score_adj() -> Option<i32> {
    read_number("/proc/self/oom_score_adj")
}

/// `/proc/sys/fs/nr_open`: no process, not even root's, may have a higher `RLIMIT_NOFILE`.
#[must_use]
pub fn nr_open() -> Option<u64> {
    read_number("/proc/sys/fs/nr_open")
}

/// `/proc/sys/net/ipv4/ip_unprivileged_port_start` (also governs IPv6): the lowest port a
/// process without `CAP_NET_BIND_SERVICE` may bind; 1024 when it cannot be read.
#[must_use]
pub fn unprivileged_port_start() -> u16 {
    read_number("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap_or(1024)
}

/// `RLIMIT_NOFILE` as this process found it, before [`raise_nofile`] (what children get back).
static INHERITED_NOFILE: OnceLock<(u64, u64)> = OnceLock::new();

/// Raises the process's `RLIMIT_NOFILE` to what the host allows, as systemd does for itself:
/// the hard limit to `nr_open` where the process may (`CAP_SYS_RESOURCE`), else the soft limit
/// to the hard one. The daemon and the keeper hold a few descriptors per app
/// (docs/architecture.md, "File descriptors"), so the limit they were started with (often
/// 1,024) would cap the number of apps. Returns the new (soft, hard); the pair the process
/// was started with is kept for [`inherited_nofile`] (a second call keeps the first's).
///
/// # Errors
/// When not even the soft limit can be raised to the hard one.
pub fn raise_nofile() -> io::Result<(u64, u64)> {
    let old = limit(Limit::Nofile);
    let _ = INHERITED_NOFILE.set(old);
    let ceiling = nr_open().unwrap_or(old.1).max(old.1);
    let set = |n: u64| {
        process::setrlimit(
            Resource::Nofile,
            process::Rlimit {
                current: Some(n),
                maximum: Some(n),
            },
        )
    };
    if ceiling > old.1 && set(ceiling).is_ok() {
        return Ok((ceiling, ceiling));
    }
    if old.0 < old.1 {
        set(old.1)?;
    }
    Ok((old.1, old.1))
}

/// The `RLIMIT_NOFILE` this process was started with, when [`raise_nofile`] changed it: what
/// its children get (a soft limit above 1,024 breaks programs that use `select`, and some close
/// every possible descriptor at start, which takes long with a million).
#[must_use]
pub fn inherited_nofile() -> Option<(u64, u64)> {
    INHERITED_NOFILE
        .get()
        .copied()
        .filter(|&old| old != limit(Limit::Nofile))
}

/// Lowers the process's `RLIMIT_NOFILE` back to what it was started with (before it
/// re-executes itself, so the new image knows what its apps get).
///
/// # Errors
/// From setrlimit.
pub fn restore_nofile() -> io::Result<()> {
    let Some((soft, hard)) = inherited_nofile() else {
        return Ok(());
    };
    process::setrlimit(
        Resource::Nofile,
        process::Rlimit {
            current: Some(soft),
            maximum: Some(hard),
        },
    )?;
    Ok(())
}

/// Whether this process has fewer than `reserve` file descriptors left under its soft limit;
/// then how many it has. Cheap while far from the limit: descriptors are numbered lowest free
/// first, so the lowest free number (one `fcntl`, which never grows the descriptor table the
/// way probing a high number would: with a limit of a million that is 8 MB of kernel memory)
/// is about the count in use. Within twice `reserve` of the limit the open descriptors are
/// counted (`/proc/self/fd`). A process whose table has holes below many high descriptors may
/// be found not short when it is; its starts then fail on `EMFILE` instead, as cleanly.
#[must_use]
pub fn short_of_fds(reserve: u64) -> Option<u64> {
    use std::os::fd::AsRawFd as _;
    // a descriptor to duplicate, opened once
    static ROOT: OnceLock<Option<std::os::fd::OwnedFd>> = OnceLock::new();
    let (soft, _) = limit(Limit::Nofile);
    let root = ROOT.get_or_init(|| {
        rustix::fs::open(
            "/",
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .ok()
    });
    if let Some(root) = root
        && let Ok(lowest) = rustix::io::fcntl_dupfd_cloexec(root, 0)
        && u64::try_from(lowest.as_raw_fd()).unwrap_or(u64::MAX) + 2 * reserve < soft
    {
        return None;
    }
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    let free = soft.saturating_sub(u64::try_from(open).unwrap_or(u64::MAX));
    (free < reserve).then_some(free)
}

fn read_number<T: std::str::FromStr>(path: &str) -> Option<T> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Gives the *calling thread* the file-system credentials `uid`, `gid`, `groups`, and checks
/// that the kernel took them.
///
/// All three are per thread in the kernel. glibc's `setgroups` wrapper would apply the groups
/// to every thread of the daemon, so they are set with rustix's raw `setgroups` system call;
/// `setfsuid` and `setfsgid` have no such wrapper behaviour. When the fsuid leaves 0 the kernel
/// also drops the thread's file-system capabilities (`CAP_DAC_OVERRIDE`, ...).
///
/// # Errors
/// The groups were refused, or the kernel kept other ids (the process lacks `CAP_SETUID` or
/// `CAP_SETGID`).
pub fn switch_thread_fs_credentials(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
    let gids: Vec<process::Gid> = groups.iter().map(|&g| process::Gid::from_raw(g)).collect();
    rustix::thread::set_thread_groups(&gids)?;
    // setfsgid/setfsuid return the previous id and report no error: ask again with an invalid
    // id (-1), which changes nothing and returns the current one
    setfsgid(Gid::from_raw(gid));
    let fsgid = setfsgid(Gid::from_raw(u32::MAX)).as_raw();
    setfsuid(Uid::from_raw(uid));
    let fsuid = setfsuid(Uid::from_raw(u32::MAX)).as_raw();
    if fsgid != gid || fsuid != uid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the kernel kept fsuid {fsuid} and fsgid {fsgid} (the daemon needs CAP_SETUID and CAP_SETGID)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the calls read is what the kernel shows in `/proc` for this process.
    #[test]
    fn the_process_reads_itself_as_proc_shows_it() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let numbers = |name: &str| -> Vec<u64> {
            let line = status.lines().find_map(|l| l.strip_prefix(name)).unwrap();
            line.split_whitespace()
                .map(|n| n.parse().unwrap())
                .collect()
        };
        // Uid: real, effective, saved, fs
        assert_eq!(u64::from(effective_uid()), numbers("Uid:")[1]);
        assert_eq!(u64::from(effective_gid()), numbers("Gid:")[1]);
        let mut mine: Vec<u64> = groups().into_iter().map(u64::from).collect();
        let mut shown = numbers("Groups:");
        mine.sort_unstable();
        shown.sort_unstable();
        assert_eq!(mine, shown);
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let open_files: Vec<u64> = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .unwrap()
            .split_whitespace()
            .take(2)
            .map(|n| n.parse().unwrap_or(u64::MAX))
            .collect();
        assert_eq!(limit(Limit::Nofile), (open_files[0], open_files[1]));
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let after_comm: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        // field 19 (nice), counted from field 3 (state) after the command name
        assert_eq!(nice().to_string(), after_comm[19 - 3]);
        let adj = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
        assert_eq!(oom_score_adj(), adj.trim().parse().ok());
        assert!(nr_open().is_some_and(|n| n >= open_files[1]));
    }

    /// As root, on a thread of its own: the ids and groups change for that thread only.
    #[test]
    fn fs_credentials_change_for_one_thread() {
        if effective_uid() != 0 {
            eprintln!("skipped: needs root to switch credentials");
            return;
        }
        let before = groups();
        let (fsuid, thread_groups) = std::thread::spawn(|| {
            switch_thread_fs_credentials(65534, 65534, &[65534]).expect("root may switch");
            (setfsuid(Uid::from_raw(u32::MAX)).as_raw(), groups())
        })
        .join()
        .unwrap();
        assert_eq!((fsuid, thread_groups), (65534, vec![65534]));
        assert_eq!(groups(), before, "other threads keep theirs");
        assert_eq!(setfsuid(Uid::from_raw(u32::MAX)).as_raw(), 0);
    }
}
