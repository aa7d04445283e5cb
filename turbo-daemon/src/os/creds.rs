//! The calling process's credentials and limits, as the kernel sees them, and the file-system
//! credentials of one thread.
//!
//! Reads are what the daemon may grant its apps (its ids, groups, niceness, hard limits,
//! `oom_score_adj`, the kernel's `nr_open`); [`switch_thread_fs_credentials`] gives the calling
//! thread another user's file access rights. Through rustix and nix: no hand-written `unsafe`.
//! Imports no domain module: what these numbers allow is decided in `access`.

use std::io;

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
