//! The one reader of `/proc`: `stat`, `statm`, `smaps_rollup`, `children`, the pid list, and the
//! figures built from them (a process tree's CPU and memory, the daemon's own `process_*`
//! figures, a process's age), and the processes that carry a variable in their environment
//! ([`tagged`], with what they run: [`image`]).
//!
//! Both the runtime (status, describe, scrapes, the sampler, crash records) and the procfs event
//! source (tree scans, memory thresholds) read through here, so there is one parser per file.
//! Small files are read with one sized read, not `read_to_string` (whose `statx` and growing
//! read chain were most of the cost of `turbo status` with 100 apps), and the files of apps'
//! main processes can be kept open and `pread` ([`MainFiles`]).

use std::{
    collections::{HashMap, HashSet, hash_map::Entry},
    fs::File,
    io,
    os::unix::fs::FileExt as _,
    time::Duration,
};

/// Reads a small `/proc` file (`stat`, `children`, `statm`) into a string.
///
/// # Errors
/// When it cannot be opened or read (the process is gone).
pub fn read_proc(path: &str) -> io::Result<String> {
    reread_proc(&File::open(path)?)
}

/// Reads a `/proc` file opened earlier, from its start (`pread` at offset 0 makes the kernel
/// produce the text afresh): open, read, read (the end), close. An open `/proc/<pid>/…` file
/// stays bound to that process: once it is reaped the read fails, never reading another process
/// that reuses the pid.
///
/// # Errors
/// The read failure; `InvalidData` for text that is not UTF-8.
pub fn reread_proc(file: &File) -> io::Result<String> {
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
            Err(err) => return Err(err),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// What `/proc/<pid>/stat` says about one process (times in clock ticks).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcStat {
    /// The command name (`comm`, at most 15 bytes; may hold spaces and parentheses).
    pub comm: String,
    /// The state letter (`R`, `S`, `Z`, …).
    pub state: u8,
    /// Parent process id (0 when unknown).
    pub ppid: u32,
    /// The kernel's `PF_*` flags (field 9).
    pub flags: u64,
    /// `utime`.
    pub utime: u64,
    /// `stime`.
    pub stime: u64,
    /// `cutime`: user time of the children it waited for (and theirs).
    pub cutime: u64,
    /// `cstime`.
    pub cstime: u64,
    /// Threads.
    pub threads: u64,
    /// Start time in ticks since boot: with the pid, the identity of a process.
    pub start_ticks: u64,
    /// Virtual size in bytes.
    pub vsize: u64,
    /// Resident pages.
    pub rss_pages: u64,
    /// Field 52, the wait status of a zombie (since Linux 3.5).
    pub exit_code: Option<u32>,
}

impl ProcStat {
    /// Exited, not yet reaped (or being torn down).
    #[must_use]
    pub const fn is_zombie(&self) -> bool {
        matches!(self.state, b'Z' | b'X')
    }

    /// Past the point of no return: a zombie, or in the kernel's exit path (`PF_EXITING`),
    /// where a process killed with SIGKILL spends a while closing its descriptors.
    #[must_use]
    pub const fn is_exiting(&self) -> bool {
        /// `PF_EXITING` in include/linux/sched.h.
        const PF_EXITING: u64 = 0x4;
        self.is_zombie() || self.flags & PF_EXITING != 0
    }

    /// Resident bytes.
    #[must_use]
    pub fn rss_bytes(&self) -> u64 {
        self.rss_pages * page_size()
    }
}

/// Reads `/proc/<pid>/stat`.
///
/// # Errors
/// When the process is gone, or `InvalidData` when the line does not parse.
pub fn read_stat(pid: u32) -> io::Result<ProcStat> {
    parse_stat(&read_proc(&format!("/proc/{pid}/stat"))?).ok_or_else(unparsable)
}

fn unparsable() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc line")
}

/// Parses a `stat` line. The command name may hold spaces and parentheses, so it is everything
/// between the first `(` and the last `)`, and the numbered fields start after that.
#[must_use]
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let f: Vec<&str> = text.get(close + 1..)?.split_ascii_whitespace().collect();
    // field N (1-based, as proc(5) numbers them) is f[N - 3]
    let n = |field: usize| f.get(field - 3).and_then(|v| v.parse::<u64>().ok());
    Some(ProcStat {
        comm,
        state: *f.first()?.as_bytes().first()?,
        ppid: u32::try_from(n(4)?).unwrap_or(0),
        flags: n(9).unwrap_or(0),
        utime: n(14)?,
        stime: n(15)?,
        cutime: n(16).unwrap_or(0),
        cstime: n(17).unwrap_or(0),
        threads: n(20).unwrap_or(0),
        start_ticks: n(22)?,
        vsize: n(23).unwrap_or(0),
        rss_pages: n(24)?,
        exit_code: f
            .get(52 - 3)
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(|c| u32::try_from(c).ok()),
    })
}

/// Resident pages of `pid` (file + anon + shmem: `/proc/<pid>/statm` field 2), the same figure
/// as `stat`'s at about half the kernel's cost (no CPU times to gather). One read into the
/// stack: the line is seven numbers.
///
/// # Errors
/// When the process is gone, or `InvalidData` when the line does not parse.
pub fn resident_pages(pid: u32) -> io::Result<u64> {
    use std::io::Read as _;
    let mut buf = [0u8; 160];
    let n = File::open(format!("/proc/{pid}/statm"))?.read(&mut buf)?;
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|text| text.split_ascii_whitespace().nth(1)?.parse().ok())
        .ok_or_else(unparsable)
}

/// Resident bytes of process `pid` alone ([`resident_pages`]); `None` when it is gone.
#[must_use]
pub fn resident_bytes(pid: u32) -> Option<u64> {
    resident_pages(pid).ok().map(|p| p * page_size())
}

/// Peak resident bytes of process `pid`'s current program (`VmHWM` in `/proc/<pid>/status`);
/// `None` when it is gone or a zombie (its memory is freed before it is reaped).
#[must_use]
pub fn peak_bytes(pid: u32) -> Option<u64> {
    status_kib(&format!("/proc/{pid}/status"), "VmHWM:")
}

/// This process's own peak resident memory (its `ru_maxrss`, `VmHWM` or above). A child's
/// `ru_maxrss` counts the images it had before its `exec`, and a child started with `vfork`
/// (posix_spawn) had the parent's: a `ru_maxrss` not above this figure may be the parent's, not
/// the child's. One `getrusage` call: it is read after every reap of a main process, on the
/// way to its restart (reading `/proc/self/status` took a dozen system calls there).
#[must_use]
pub fn own_peak_bytes() -> u64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF)
        .ok()
        .and_then(|u| u64::try_from(u.max_rss()).ok())
        .map_or(u64::MAX, |kib| kib.saturating_mul(1024))
}

/// How far two readings of one process's resident memory may disagree with no page mapped or
/// freed between them. The kernel keeps a process's file, anonymous and shared-memory page
/// counts in per-CPU counters (since 6.2) and reads them without summing the CPUs' pending
/// deltas, each below the batch (`max(32, 2 × CPUs)` pages) on every CPU. So a child's
/// `ru_maxrss` that holds the daemon's image may read a little above the daemon's own
/// `VmHWM`; a figure within this margin of it says nothing about the child.
#[must_use]
pub fn rss_reading_slack() -> u64 {
    static SLACK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SLACK.get_or_init(|| {
        use nix::unistd::{SysconfVar, sysconf};
        let cpus = sysconf(SysconfVar::_NPROCESSORS_CONF)
            .ok()
            .flatten()
            .and_then(|n| u64::try_from(n).ok())
            .filter(|&n| n > 0)
            .unwrap_or(1);
        // three counters (file, anon, shmem), each off by less than a batch per CPU
        3 * cpus * (2 * cpus).max(32) * page_size()
    })
}

fn status_kib(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Proportional set size of `pid` from `/proc/<pid>/smaps_rollup` (readable by the process's
/// own user or with `CAP_SYS_PTRACE`); `None` when unreadable.
#[must_use]
pub fn read_pss(pid: u32) -> Option<u64> {
    status_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// The parent of process `pid`.
#[must_use]
pub fn parent_pid(pid: u32) -> Option<u32> {
    read_stat(pid).ok().map(|st| st.ppid)
}

/// Whether process `pid` exists and is not a zombie.
#[must_use]
pub fn pid_alive(pid: u32) -> bool {
    read_stat(pid).is_ok_and(|st| !st.is_zombie())
}

/// Whether process `pid` exists and has not begun to exit.
#[must_use]
pub fn pid_living(pid: u32) -> bool {
    read_stat(pid).is_ok_and(|st| !st.is_exiting())
}

/// Whether process `pid` is a zombie whose parent is not this process: it is gone, but only
/// its parent can remove it (a leader adopted from a previous daemon, re-parented to an init
/// that may reap seconds later). Until then `kill(-pgid, 0)` still finds its group.
#[must_use]
pub fn zombie_of_another(pid: u32) -> bool {
    read_stat(pid).is_ok_and(|st| st.is_zombie() && st.ppid != std::process::id())
}

/// The process groups that have a member that is not a zombie: one pass over `/proc` (fields
/// 3 and 5 of every `stat`). A process that ends during the pass may be counted or not.
#[must_use]
pub fn running_groups() -> HashSet<u32> {
    let Ok(pids) = list_pids() else {
        return HashSet::new();
    };
    pids.into_iter()
        .filter_map(|pid| {
            let text = read_proc(&format!("/proc/{pid}/stat")).ok()?;
            state_and_group(&text)
        })
        .filter(|&(state, _)| !matches!(state, b'Z' | b'X'))
        .map(|(_, pgrp)| pgrp)
        .collect()
}

/// The state letter and process group (fields 3 and 5) of a `stat` line.
fn state_and_group(text: &str) -> Option<(u8, u32)> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let mut f = rest.split_ascii_whitespace();
    let state = *f.next()?.as_bytes().first()?;
    let pgrp = f.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// Start time of a process in clock ticks since boot (field 22 of `stat`); with the pid it
/// identifies a process even after the pid is reused.
#[must_use]
pub fn start_ticks(pid: u32) -> Option<u64> {
    read_stat(pid).ok().map(|st| st.start_ticks)
}

/// How long process `pid` has run, if it is the one that started at `expected_start_ticks`.
#[must_use]
pub fn process_age(pid: u32, expected_start_ticks: u64) -> Option<Duration> {
    let st = read_stat(pid).ok()?;
    if st.is_zombie() || st.start_ticks != expected_start_ticks {
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
    Some(Duration::from_secs_f64((uptime - started).max(0.0)))
}

/// The children of `pid` forked by its main thread (`/proc/<pid>/task/<pid>/children`;
/// children forked by other threads are listed under those threads).
#[must_use]
pub fn children(pid: u32) -> Vec<u32> {
    parse_children(read_proc(&format!("/proc/{pid}/task/{pid}/children")).ok())
}

/// The children of `pid` forked by any of its threads (`/proc/<pid>/task/*/children`), sorted;
/// empty if it is gone.
#[must_use]
pub fn all_children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut all: Vec<u32> = tasks
        .filter_map(|t| read_proc(t.ok()?.path().join("children").to_str()?).ok())
        .flat_map(|text| parse_children(Some(text)))
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

fn parse_children(text: Option<String>) -> Vec<u32> {
    text.map(|s| {
        s.split_ascii_whitespace()
            .filter_map(|c| c.parse().ok())
            .collect()
    })
    .unwrap_or_default()
}

/// Every pid in `/proc`.
///
/// # Errors
/// When `/proc` cannot be listed.
pub fn list_pids() -> io::Result<HashSet<u32>> {
    Ok(std::fs::read_dir("/proc")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// What `pid` runs: `/proc/<pid>/exe`, or `fallback` when that is unreadable.
#[must_use]
pub fn exe_or(pid: u32, fallback: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map_or_else(|_| fallback.to_owned(), |p| p.display().to_string())
}

/// A process whose environment holds a variable ([`tagged`]): what identifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tagged {
    /// Pid.
    pub pid: u32,
    /// Field 22 of `stat`: with the pid, the process.
    pub start_ticks: u64,
    /// Its parent.
    pub ppid: u32,
    /// Owner of `/proc/<pid>`: its effective uid.
    pub uid: u32,
    /// Whether it leads its own session (`setsid`), as every process the daemon spawns does.
    pub session_leader: bool,
    /// The variable's value.
    pub value: String,
}

/// Every live process whose environment (`/proc/<pid>/environ`, as it was at its `exec`)
/// holds `var`. Processes that cannot be read (gone, or not ours to read) are left out.
#[must_use]
pub fn tagged(var: &str) -> Vec<Tagged> {
    let Ok(pids) = list_pids() else {
        return Vec::new();
    };
    let prefix = format!("{var}=");
    let mut found: Vec<Tagged> = pids
        .into_iter()
        .filter_map(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let value = environ
                .split(|&b| b == 0)
                .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))?;
            let value = String::from_utf8(value.to_vec()).ok()?;
            let st = read_stat(pid).ok().filter(|st| !st.is_zombie())?;
            let uid = std::os::unix::fs::MetadataExt::uid(
                &std::fs::metadata(format!("/proc/{pid}")).ok()?,
            );
            let raw = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
            let session_leader = rustix::process::getsid(Some(raw)).ok() == Some(raw);
            Some(Tagged {
                pid,
                start_ticks: st.start_ticks,
                ppid: st.ppid,
                uid,
                session_leader,
                value,
            })
        })
        .collect();
    found.sort_unstable_by_key(|t| t.pid);
    found
}

/// What process `pid` runs, as seen from outside: its program (`exe`), arguments
/// (`cmdline`), working directory (`cwd`) and environment (`environ`, as at its `exec`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// `/proc/<pid>/exe`.
    pub exe: String,
    /// `/proc/<pid>/cmdline`, split.
    pub argv: Vec<String>,
    /// `/proc/<pid>/cwd`.
    pub cwd: std::path::PathBuf,
    /// `/proc/<pid>/environ`, split at the first `=`.
    pub env: Vec<(String, String)>,
}

/// [`Image`] of `pid`; `None` when any part cannot be read or is not UTF-8.
#[must_use]
pub fn image(pid: u32) -> Option<Image> {
    let split = |bytes: Vec<u8>| -> Option<Vec<String>> {
        bytes
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8(s.to_vec()).ok())
            .collect()
    };
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(Image {
        exe: exe.to_str()?.to_owned(),
        argv: split(std::fs::read(format!("/proc/{pid}/cmdline")).ok()?)?,
        cwd: std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?,
        env: split(std::fs::read(format!("/proc/{pid}/environ")).ok()?)?
            .into_iter()
            .filter_map(|e| {
                let (k, v) = e.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect(),
    })
}

/// The open `stat` and `children` files of apps' main processes, so that reading an app
/// (every `ListApps`, every sampler pass) costs two `pread`s instead of two path lookups,
/// opens and closes. Descendants come and go too often to be worth keeping open. At most
/// [`MainFiles::kept`] processes' files are kept: two descriptors per app would otherwise
/// count against the daemon's limit with thousands of apps (docs/architecture.md, "File
/// descriptors"); the others are read by path.
#[derive(Debug, Default)]
pub struct MainFiles {
    open: HashMap<u32, (File, Option<File>)>,
}

impl MainFiles {
    /// Most processes whose files are kept open, whatever the limit.
    pub const KEPT: usize = 1024;

    /// Most processes whose files are kept open under this process's hard `RLIMIT_NOFILE`:
    /// [`Self::KEPT`], or fewer when two descriptors each would take more than an eighth of
    /// the limit (so the daemon's budget is shares of its limit plus one pidfd per app).
    #[must_use]
    pub fn kept() -> usize {
        let (_, hard) = super::creds::limit(super::creds::Limit::Nofile);
        usize::try_from(hard / 16).map_or(Self::KEPT, |n| n.min(Self::KEPT))
    }

    /// `/proc/<pid>/stat` of a main process, through its kept file (opened on first use).
    /// A process gone takes its files with it.
    fn stat(&mut self, pid: u32) -> Option<ProcStat> {
        if !self.open.contains_key(&pid) && self.open.len() >= Self::kept() {
            return read_stat(pid).ok();
        }
        let text = match self.open.entry(pid) {
            Entry::Occupied(e) => {
                let text = reread_proc(&e.get().0).ok();
                if text.is_none() {
                    e.remove();
                }
                text?
            }
            Entry::Vacant(e) => {
                let stat = File::open(format!("/proc/{pid}/stat")).ok()?;
                let text = reread_proc(&stat).ok()?;
                let children = File::open(format!("/proc/{pid}/task/{pid}/children")).ok();
                e.insert((stat, children));
                text
            }
        };
        parse_stat(&text)
    }

    /// The children of a main process whose `stat` was just read by [`Self::stat`].
    fn children(&self, pid: u32) -> Vec<u32> {
        match self.open.get(&pid) {
            Some((_, Some(file))) => parse_children(reread_proc(file).ok()),
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

/// One reading of a process tree.
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

/// Sums the tree of `main`: `main`, those of `descendants` still alive, and the children of
/// each of them found in `/proc` (descendants forked before an event source watched `main`).
/// Processes that started earlier than `main` are skipped (an older process behind a reused pid
/// is not in the tree). `None` when `main` is gone. `deep` adds PSS, which makes the kernel walk
/// page tables.
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
        rss_bytes: first.rss_bytes(),
        main_rss_bytes: first.rss_bytes(),
        pss_bytes: None,
        processes: u32::from(!first.is_zombie()),
    };
    let mut pss = if deep { read_pss(main) } else { None };
    let mut seen = HashSet::from([main]);
    let mut todo: Vec<u32> = files.children(main);
    todo.extend(descendants);
    while let Some(pid) = todo.pop() {
        if !seen.insert(pid) {
            continue;
        }
        let Ok(st) = read_stat(pid) else { continue };
        if st.start_ticks < first.start_ticks {
            continue;
        }
        sample.user += st.utime + st.cutime;
        sample.system += st.stime + st.cstime;
        sample.rss_bytes += st.rss_bytes();
        if !st.is_zombie() {
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

/// The daemon's own figures, for the standard `process_*` metrics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU seconds (its own, not the apps it reaped).
    pub cpu_seconds: f64,
    /// Resident bytes.
    pub resident_bytes: u64,
    /// Virtual size.
    pub virtual_bytes: u64,
    /// `RLIMIT_AS` (`u64::MAX` when unlimited).
    pub virtual_max_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// `RLIMIT_NOFILE` soft limit.
    pub max_fds: u64,
    /// Start time, Unix seconds.
    pub start_time_seconds: f64,
    /// Threads.
    pub threads: u64,
}

/// The calling process's own `process_*` figures (its own CPU only: the children it reaped are
/// in its `cutime`, and they are not its cost).
#[must_use]
pub fn own_stats() -> Option<ProcessStats> {
    use rustix::process::{Resource, getrlimit};
    let st = read_stat(std::process::id()).ok()?;
    let hz = clock_ticks() as f64;
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    })?;
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    Some(ProcessStats {
        cpu_seconds: (st.utime + st.stime) as f64 / hz,
        resident_bytes: st.rss_bytes(),
        virtual_bytes: st.vsize,
        virtual_max_bytes: getrlimit(Resource::As).current.unwrap_or(u64::MAX),
        open_fds,
        max_fds: getrlimit(Resource::Nofile).current.unwrap_or(0),
        start_time_seconds: boot as f64 + st.start_ticks as f64 / hz,
        threads: st.threads,
    })
}

/// Clock ticks per second (`_SC_CLK_TCK`, from the auxiliary vector).
#[must_use]
pub fn clock_ticks() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// Bytes per page.
#[must_use]
pub fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn own_peak_is_at_least_the_high_water_mark_the_kernel_shows() {
        let shown = status_kib("/proc/self/status", "VmHWM:").expect("VmHWM");
        let peak = own_peak_bytes();
        // two readings of the kernel's per-CPU counters differ by up to the slack, and other
        // test threads map and free memory between them
        assert!(
            peak + rss_reading_slack() >= shown && peak < u64::MAX,
            "{peak} < {shown}"
        );
    }

    #[test]
    fn stat_fields_with_a_hostile_command_name() {
        let text = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 3 0 \
                12345 1000000 256 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let st = parse_stat(text).unwrap();
        assert_eq!(st.comm, "a) b (c");
        assert_eq!(st.ppid, 1);
        assert_eq!(
            (st.utime, st.stime, st.cutime, st.cstime),
            (250, 50, 30, 20)
        );
        assert_eq!(
            (st.threads, st.start_ticks, st.vsize),
            (3, 12345, 1_000_000)
        );
        assert_eq!(st.rss_bytes(), 256 * page_size());
        assert!(!st.is_zombie());
        assert_eq!(st.flags, 0x40_0100);
        assert!(!st.is_exiting());
        assert_eq!(st.exit_code, None, "a line without field 52");
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn stat_of_a_zombie_with_its_exit_code() {
        let text = "4242 (a (weird) name) Z 4241 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    98765 1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 \
                    0 0 0 0 0 0 0 768";
        let st = parse_stat(text).expect("parses");
        assert_eq!(st.comm, "a (weird) name");
        assert_eq!(st.state, b'Z');
        assert!(st.is_zombie());
        assert_eq!(st.ppid, 4241);
        assert_eq!(st.start_ticks, 98765);
        assert_eq!(st.exit_code, Some(768));
    }

    #[test]
    fn a_process_in_the_exit_path_is_exiting_before_it_is_a_zombie() {
        // A daemon killed with SIGKILL, closing its descriptors: still `R` (or `D`), with
        // PF_EXITING (0x4) and PF_SIGNALED (0x400) among its flags.
        let text = "77 (turbo-daemon) R 1 77 77 0 -1 4211716 100 0 0 0 1 2 0 0 20 0 9 0 \
                    98765 1000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let st = parse_stat(text).expect("parses");
        assert_eq!(st.flags & 0x404, 0x404);
        assert!(!st.is_zombie());
        assert!(st.is_exiting());
        assert!(pid_living(std::process::id()));
    }

    #[test]
    fn own_stat_statm_and_parent() {
        let me = std::process::id();
        let st = read_stat(me).expect("own stat");
        assert_eq!(Some(st.ppid), Some(std::os::unix::process::parent_id()));
        assert!(st.start_ticks > 0 && st.rss_bytes() > 0);
        assert!(resident_pages(me).expect("own statm") > 0);
        assert!(read_stat(u32::MAX - 1).is_err());
        assert!(resident_bytes(u32::MAX - 1).is_none());
        assert!(list_pids().unwrap().contains(&me));
    }

    #[test]
    fn a_process_is_known_by_its_start_time() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let ticks = start_ticks(pid).expect("running");
        let age = process_age(pid, ticks).expect("the same process");
        assert!(age < Duration::from_secs(10), "{age:?}");
        assert_eq!(
            process_age(pid, ticks + 1),
            None,
            "another process behind the pid"
        );
        assert!(pid_alive(pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(process_age(pid, ticks), None, "gone");
        assert!(!pid_alive(pid));
    }

    #[test]
    fn running_groups_count_live_members_only() {
        assert_eq!(
            state_and_group("42 (a (b) c) Z 1 42 42 0 -1"),
            Some((b'Z', 42))
        );
        assert_eq!(state_and_group("42 (x) S 1"), None);
        let own = rustix::process::getpgrp()
            .as_raw_nonzero()
            .get()
            .cast_unsigned();
        assert!(
            running_groups().contains(&own),
            "this test runs in group {own}"
        );
        assert!(!zombie_of_another(std::process::id()));
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
        assert_eq!(read_proc(dir.to_str().unwrap()).unwrap(), text);
        std::fs::remove_file(&dir).unwrap();
        assert!(read_proc("/proc/0/stat").is_err());
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
            assert!(!first.is_zombie());
            if let Some(&c) = files.children(pid).first() {
                break c;
            }
            assert!(Instant::now() < deadline, "sh never forked its sleep");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(files.open.len(), 1);
        assert_eq!(all_children(pid), [grandchild]);
        let tree = sample_tree(pid, [], false, &mut files).unwrap();
        assert_eq!(tree.processes, 2, "{tree:?}");
        crate::os::process::signal_pid(grandchild, 9).unwrap();
        crate::os::process::signal_pid(pid, 9).unwrap();
        child.wait().unwrap();
        // reaped: the kept file answers nothing and is closed, whoever gets the pid next
        assert_eq!(files.stat(pid), None);
        assert!(files.open.is_empty());
        files.stat(std::process::id()).unwrap();
        files.keep_only(&HashSet::new());
        assert!(files.open.is_empty());
    }

    /// Past `kept()` processes, figures are read by path and no descriptor is kept.
    #[test]
    fn kept_files_are_bounded() {
        let me = std::process::id();
        let mut files = MainFiles::default();
        for fake in 0..MainFiles::kept() {
            // stand-ins: the entries only count here
            let f = File::open("/proc/self/stat").unwrap();
            files
                .open
                .insert(u32::MAX - 1 - u32::try_from(fake).unwrap(), (f, None));
        }
        let s = files.stat(me).expect("read by path");
        let direct = read_stat(me).unwrap();
        assert_eq!((s.ppid, s.start_ticks), (direct.ppid, direct.start_ticks));
        assert_eq!(
            files.open.len(),
            MainFiles::kept(),
            "no file kept beyond the bound"
        );
        assert!(!files.open.contains_key(&me));
    }

    #[test]
    fn own_tree_and_own_stats_read() {
        let me = std::process::id();
        let s = sample_tree(me, [me, u32::MAX - 1], true, &mut MainFiles::default()).unwrap();
        assert_eq!(s.processes, 1);
        assert!(s.rss_bytes > 0 && s.rss_bytes == s.main_rss_bytes);
        assert!(s.pss_bytes.is_some_and(|p| p > 0), "{s:?}");
        let d = own_stats().unwrap();
        assert!(d.open_fds > 0 && d.max_fds > 0 && d.threads > 0, "{d:?}");
        assert!(d.start_time_seconds > 1.6e9, "{d:?}");
    }
}
