//! Per-app cgroups: one mechanism for everything the daemon asks of a cgroup. An app's cgroup
//! is created below the daemon's own (so it stays inside whatever limits the daemon runs
//! under: a container, a systemd unit), entered by the child before it execs (it writes `0`
//! into each `cgroup.procs`), listed and killed as a whole, and removed with the app.
//!
//! What a cgroup is asked for ([`CgroupRequest`]) decides which hierarchies it needs:
//!
//! * **containment** (every process of the app, however it left its process group: `setsid`,
//!   double forks, daemons) needs no controller: the unified hierarchy (v2) where it is
//!   mounted, else a v1 `pids` or `freezer` hierarchy (any hierarchy lists its members);
//! * **a memory limit** needs the memory controller: v2 when it is enabled there, else the v1
//!   `memory` hierarchy (this is how `memory_enforce: cgroup` works);
//! * **cpu, io, pids and memory limits** ([`CgroupLimits`]) each need their controller: one
//!   directory in the hierarchy that has it (v2 when it offers the controller, else that
//!   controller's v1 hierarchy), with the same life cycle; [`AppCgroup::set`] rewrites them
//!   while the app runs. A limit no mounted hierarchy can enforce is an `Unsupported` error
//!   naming it, never a limit silently left out;
//! * **accounting** ([`AppCgroup::stats`]) reads whatever its directories offer: CPU time of
//!   the whole tree, throttling, memory with its page cache, pids, memory events.
//!
//! This module takes and returns plain data (paths, pids, sizes) and decides nothing: which
//! apps get a cgroup, and when to kill its members, is the caller's business.

use std::{
    io,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use rustix::io::Errno;

/// The cgroup interface a directory belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    /// The unified hierarchy: `memory.max`, `memory.events`, `cgroup.kill`.
    V2,
    /// A controller's own hierarchy: `memory.limit_in_bytes`, `memory.oom_control`.
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

/// One directory of a cgroup, in one hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupDir {
    /// Its directory.
    pub path: PathBuf,
    /// Which interface it has.
    pub version: CgroupVersion,
}

/// What a new cgroup must do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupRequest {
    /// Hold every process of the app, so that they can be listed and killed as a whole.
    pub contain: bool,
    /// Its limits.
    pub limits: CgroupLimits,
    /// `limits_required: false`: a limit no mounted hierarchy can enforce is left out and
    /// said so ([`AppCgroup::unenforced`]) instead of failing the cgroup.
    pub best_effort: bool,
}

/// The limits of a cgroup; `None`: the kernel's default (no limit, the default weight).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Limit its memory to this many bytes (swap included where the kernel accounts it).
    pub memory_max: Option<u64>,
    /// Reclaim and throttle above this many bytes (v2 `memory.high`; v1 has only the soft
    /// limit, `memory.soft_limit_in_bytes`, which reclaims it first under host pressure).
    pub memory_high: Option<u64>,
    /// CPU time per period, in percent of one CPU (v2 `cpu.max`, v1 `cpu.cfs_quota_us`).
    pub cpu_max_percent: Option<u32>,
    /// CPU weight, 1-10000 (v2 `cpu.weight`, v1 `cpu.shares` scaled as systemd does).
    pub cpu_weight: Option<u32>,
    /// IO weight, 1-10000 (v2 `io.weight`, v1 `blkio.bfq.weight` or `blkio.weight`).
    pub io_weight: Option<u32>,
    /// Processes and threads at most (`pids.max`).
    pub pids_max: Option<u64>,
}

/// A controller a limit needs, as v2 names it (and the v1 hierarchy that has it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Control {
    Memory,
    Cpu,
    Io,
    Pids,
}

impl Control {
    const ALL: [Self; 4] = [Self::Memory, Self::Cpu, Self::Io, Self::Pids];

    const fn v2_name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Cpu => "cpu",
            Self::Io => "io",
            Self::Pids => "pids",
        }
    }

    const fn v1_name(self) -> &'static str {
        match self {
            Self::Io => "blkio",
            other => other.v2_name(),
        }
    }
}

impl CgroupLimits {
    /// Whether a limit of `control` is set.
    const fn needs(&self, control: Control) -> bool {
        match control {
            Control::Memory => self.memory_max.is_some() || self.memory_high.is_some(),
            Control::Cpu => self.cpu_max_percent.is_some() || self.cpu_weight.is_some(),
            Control::Io => self.io_weight.is_some(),
            Control::Pids => self.pids_max.is_some(),
        }
    }

    /// The keys set for `control`, for messages.
    fn keys(&self, control: Control) -> &'static str {
        match control {
            Control::Memory if self.memory_max.is_some() => "max_memory (memory_enforce: cgroup)",
            Control::Memory => "memory_high",
            Control::Cpu if self.cpu_max_percent.is_some() => "cpu_max",
            Control::Cpu => "cpu_weight",
            Control::Io => "io_weight",
            Control::Pids => "pids_max",
        }
    }
}

/// What a cgroup counted, from whichever of its directories has it; `None` where none does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// CPU time of every process that was ever in it, user and system, in nanoseconds.
    pub cpu_user_ns: Option<u64>,
    /// See `cpu_user_ns`.
    pub cpu_system_ns: Option<u64>,
    /// Time its processes were held back by `cpu_max`, in nanoseconds.
    pub throttled_ns: Option<u64>,
    /// Periods in which they were.
    pub throttled_periods: Option<u64>,
    /// Memory charged to it (anonymous, page cache, kernel), in bytes.
    pub memory_bytes: Option<u64>,
    /// Of which page cache (file-backed pages the kernel can drop).
    pub page_cache_bytes: Option<u64>,
    /// Processes and threads in it now.
    pub pids: Option<u64>,
    /// Memory events by name: v2 `high`, `max`, `oom`, `oom_kill` (`memory.events`); v1
    /// `max` (`memory.failcnt`: the limit was hit) and `oom_kill`.
    pub memory_events: Vec<(&'static str, u64)>,
}

/// The cgroup hierarchies mounted here, and where this process is in each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hierarchies {
    /// The unified hierarchy: this process's directory in it, and the controllers it offers.
    unified: Option<(PathBuf, Vec<String>)>,
    /// v1 hierarchies: each controller and this process's directory in its hierarchy.
    v1: Vec<(String, PathBuf)>,
}

impl Hierarchies {
    /// Reads `/proc/self/mountinfo` and `/proc/self/cgroup`.
    ///
    /// # Errors
    /// When either cannot be read.
    pub fn read() -> io::Result<Self> {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
        let own = std::fs::read_to_string("/proc/self/cgroup")?;
        Ok(Self::parse(&mounts, &own, |dir| {
            std::fs::read_to_string(dir.join("cgroup.controllers")).ok()
        }))
    }

    /// The hierarchies in a `mountinfo` text and a `/proc/<pid>/cgroup` text; `controllers`
    /// reads a v2 directory's `cgroup.controllers`.
    fn parse(mounts: &str, own: &str, controllers: impl Fn(&Path) -> Option<String>) -> Self {
        // /proc/self/cgroup: hierarchy-id:controllers:path ("0::path" for the unified one)
        let own_paths: Vec<(Vec<&str>, &str)> = own
            .lines()
            .filter_map(|line| {
                let mut f = line.splitn(3, ':');
                let (_, list, path) = (f.next()?, f.next()?, f.next()?);
                Some((list.split(',').filter(|c| !c.is_empty()).collect(), path))
            })
            .collect();
        let mut found = Self::default();
        // mountinfo: id parent dev root mountpoint options... - fstype source super-options
        for line in mounts.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let (Some(fstype), Some(_), Some(options)) = (right.next(), right.next(), right.next())
            else {
                continue;
            };
            let (Some(root), Some(point)) = (left.get(3), left.get(4)) else {
                continue;
            };
            // a bind mount of a sub-tree (mount root not `/`) shows paths below that root
            let below = |path: &str| {
                let rest = path.strip_prefix(root).unwrap_or(path);
                Path::new(point).join(rest.trim_start_matches('/'))
            };
            match fstype {
                "cgroup2" if found.unified.is_none() => {
                    if let Some((_, path)) = own_paths.iter().find(|(list, _)| list.is_empty()) {
                        let mut dir = below(path);
                        // moved there by this daemon: the apps' cgroups stay beside it
                        if dir.ends_with(LEAF) {
                            dir.pop();
                        }
                        let offered = controllers(Path::new(point)).unwrap_or_default();
                        let offered = offered.split_whitespace().map(str::to_owned).collect();
                        found.unified = Some((dir, offered));
                    }
                }
                "cgroup" => {
                    for controller in options.split(',') {
                        let Some((_, path)) = own_paths
                            .iter()
                            .find(|(list, _)| list.contains(&controller))
                        else {
                            continue;
                        };
                        if !found.v1.iter().any(|(c, _)| c == controller) {
                            found.v1.push((controller.to_owned(), below(path)));
                        }
                    }
                }
                _ => {}
            }
        }
        found
    }

    /// Where a cgroup that holds processes goes: the unified hierarchy, else v1 `pids`, else
    /// v1 `freezer`.
    fn membership(&self) -> Option<CgroupDir> {
        if let Some((dir, _)) = &self.unified {
            return Some(CgroupDir {
                path: dir.clone(),
                version: CgroupVersion::V2,
            });
        }
        self.v1_dir("pids").or_else(|| self.v1_dir("freezer"))
    }

    /// Where a cgroup with `controller` goes: the unified hierarchy when it offers it, else
    /// that controller's v1 hierarchy.
    #[cfg(test)]
    fn with_controller(&self, controller: &str) -> Option<CgroupDir> {
        self.with(controller, controller)
    }

    /// Where a cgroup with the controller `v2` (`v1` in a v1 hierarchy) goes.
    fn with(&self, v2: &str, v1: &str) -> Option<CgroupDir> {
        match &self.unified {
            Some((dir, offered)) if offered.iter().any(|c| c == v2) => Some(CgroupDir {
                path: dir.clone(),
                version: CgroupVersion::V2,
            }),
            _ => self.v1_dir(v1),
        }
    }

    fn v1_dir(&self, controller: &str) -> Option<CgroupDir> {
        self.v1
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, path)| CgroupDir {
                path: path.clone(),
                version: CgroupVersion::V1,
            })
    }
}

/// One app's cgroup: a directory in each hierarchy its request needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppCgroup {
    /// Every directory, each once.
    dirs: Vec<CgroupDir>,
    /// Index in `dirs` of the one that holds the processes (contain).
    members: Option<usize>,
    /// Index in `dirs` of the one of each controller a limit needed.
    controls: Vec<(Control, usize)>,
    /// The limits left out under [`CgroupRequest::best_effort`], each with why.
    unenforced: Vec<String>,
}

impl AppCgroup {
    /// Creates (or reuses) the cgroup `group/name` below the daemon's own directory in every
    /// hierarchy `request` needs, and applies its settings. For a v2 controller, it is first
    /// enabled for the children of the daemon's directory and of `group`.
    ///
    /// # Errors
    /// `Unsupported` when no mounted hierarchy can do what is asked (naming what is missing);
    /// else what the kernel refused, naming the file.
    pub fn create(
        h: &Hierarchies,
        group: &str,
        name: &str,
        request: &CgroupRequest,
    ) -> io::Result<Self> {
        let unsupported = |what: String| io::Error::new(io::ErrorKind::Unsupported, what);
        let mut cgroup = Self {
            dirs: Vec::new(),
            members: None,
            controls: Vec::new(),
            unenforced: Vec::new(),
        };
        let limits = &request.limits;
        for control in Control::ALL.into_iter().filter(|c| limits.needs(*c)) {
            let (v2, v1) = (control.v2_name(), control.v1_name());
            let missing = || {
                format!(
                    "{} needs the {v2} cgroup controller, and none is mounted (neither cgroup v2 \
                     with `{v2}` in cgroup.controllers nor a v1 `{v1}` hierarchy)",
                    limits.keys(control)
                )
            };
            let base = match h.with(v2, v1) {
                Some(base) => base,
                None if request.best_effort => {
                    cgroup.unenforced.push(missing());
                    continue;
                }
                None => return Err(unsupported(missing())),
            };
            let dir = make_dir(&base, group, name, Some(v2))?;
            let i = cgroup.add(dir);
            cgroup.controls.push((control, i));
            if control == Control::Cpu && base.version == CgroupVersion::V1 {
                // v1 counts CPU time in the cpuacct hierarchy (often mounted with cpu, then
                // this is the same directory)
                if let Some(acct) = h.v1_dir("cpuacct") {
                    let dir = make_dir(&acct, group, name, None)?;
                    cgroup.add(dir);
                }
            }
        }
        if request.best_effort {
            for (control, i) in cgroup.controls.clone() {
                match write_limits(&cgroup.dirs[i], control, limits) {
                    Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                        cgroup.unenforced.push(e.to_string());
                    }
                    other => other?,
                }
            }
        } else {
            cgroup.set(limits)?;
        }
        if request.contain {
            let base = h.membership().ok_or_else(|| {
                unsupported(
                    "no cgroup hierarchy is mounted (neither cgroup v2 nor v1 pids/freezer)"
                        .to_owned(),
                )
            })?;
            let dir = make_dir(&base, group, name, None)?;
            cgroup.members = Some(cgroup.add(dir));
        }
        Ok(cgroup)
    }

    /// Writes `limits` into the directories made for them, the kernel's default for every
    /// limit that is `None` (so a limit taken out of the spec is lifted): at its creation and
    /// whenever the spec changes while the app runs.
    ///
    /// # Errors
    /// `Unsupported` when a limit needs a controller this cgroup was not made with (it needs a
    /// new one: a restart) or the hierarchy lacks the file (v1 blkio without BFQ); else what the
    /// kernel refused, naming the file.
    pub fn set(&self, limits: &CgroupLimits) -> io::Result<()> {
        for control in Control::ALL {
            let dir = self.controls.iter().find(|(c, _)| *c == control);
            match dir {
                Some((_, i)) => write_limits(&self.dirs[*i], control, limits)?,
                None if limits.needs(control) => {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!(
                            "{} needs a {} cgroup the running process is not in: restart it",
                            limits.keys(control),
                            control.v2_name()
                        ),
                    ));
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Each directory with the hierarchy it is in (`v1 /sys/fs/cgroup/cpu/...`), then each
    /// limit left unenforced (`unenforced: …`), for `describe`.
    #[must_use]
    pub fn describe(&self) -> Vec<String> {
        self.dirs
            .iter()
            .map(|d| format!("{} {}", d.version.as_str(), d.path.display()))
            .chain(
                self.unenforced
                    .iter()
                    .map(|why| format!("unenforced: {why}")),
            )
            .collect()
    }

    /// The limits left out because this host cannot enforce them (`limits_required: false`),
    /// each with why; empty otherwise.
    #[must_use]
    pub fn unenforced(&self) -> &[String] {
        &self.unenforced
    }

    /// What its directories counted (see [`CgroupStats`]); unreadable files are `None`.
    #[must_use]
    pub fn stats(&self) -> CgroupStats {
        let mut s = CgroupStats::default();
        // v2 `cpu.stat` (every v2 directory has it) or v1 `cpu.stat` (throttling only)
        if let Some((text, version)) = self.first("cpu.stat") {
            let us = |k| keyed(&text, k).map(|v| v.saturating_mul(1000));
            match version {
                CgroupVersion::V2 => {
                    s.cpu_user_ns = us("user_usec");
                    s.cpu_system_ns = us("system_usec");
                    s.throttled_ns = us("throttled_usec");
                }
                CgroupVersion::V1 => s.throttled_ns = keyed(&text, "throttled_time"),
            }
            s.throttled_periods = keyed(&text, "nr_throttled");
        }
        if s.cpu_user_ns.is_none() {
            let ns = |file| self.first(file).and_then(|(t, _)| t.trim().parse().ok());
            s.cpu_user_ns = ns("cpuacct.usage_user");
            s.cpu_system_ns = ns("cpuacct.usage_sys");
        }
        if let Some((_, i)) = self.controls.iter().find(|(c, _)| *c == Control::Memory) {
            let dir = &self.dirs[*i];
            let read = |file: &str| std::fs::read_to_string(dir.path.join(file)).ok();
            let number = |file: &str| read(file).and_then(|t| t.trim().parse().ok());
            let stat = read("memory.stat").unwrap_or_default();
            match dir.version {
                CgroupVersion::V2 => {
                    s.memory_bytes = number("memory.current");
                    s.page_cache_bytes = keyed(&stat, "file");
                    let events = read("memory.events").unwrap_or_default();
                    s.memory_events = ["high", "max", "oom", "oom_kill"]
                        .into_iter()
                        .filter_map(|k| Some((k, keyed(&events, k)?)))
                        .collect();
                }
                CgroupVersion::V1 => {
                    s.memory_bytes = number("memory.usage_in_bytes");
                    s.page_cache_bytes = keyed(&stat, "total_cache");
                    let oom = read("memory.oom_control").unwrap_or_default();
                    s.memory_events = [
                        ("max", number("memory.failcnt")),
                        ("oom_kill", keyed(&oom, "oom_kill")),
                    ]
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v?)))
                    .collect();
                }
            }
        }
        s.pids = self
            .first("pids.current")
            .and_then(|(t, _)| t.trim().parse().ok());
        s
    }

    /// The text of `file` in the first of its directories that has it.
    fn first(&self, file: &str) -> Option<(String, CgroupVersion)> {
        self.dirs.iter().find_map(|d| {
            std::fs::read_to_string(d.path.join(file))
                .ok()
                .map(|t| (t, d.version))
        })
    }

    fn add(&mut self, dir: CgroupDir) -> usize {
        if let Some(i) = self.dirs.iter().position(|d| d.path == dir.path) {
            return i;
        }
        self.dirs.push(dir);
        self.dirs.len() - 1
    }

    /// Opens every directory's `cgroup.procs` for [`super::spawn::Plan::cgroup_procs`]: the
    /// child writes `0` (itself) into each before it execs, so everything it does is in the
    /// cgroup from its first instruction on (memory charged, forks contained).
    ///
    /// # Errors
    /// The open failure, naming the file.
    pub fn procs(&self) -> io::Result<Vec<OwnedFd>> {
        self.dirs
            .iter()
            .map(|d| {
                let path = d.path.join("cgroup.procs");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map(OwnedFd::from)
                    .map_err(|e| named(&path, e))
            })
            .collect()
    }

    /// The memory-limited directory, if a limit was asked for (`describe` shows it).
    #[must_use]
    pub fn memory(&self) -> Option<&CgroupDir> {
        self.controls
            .iter()
            .find(|(c, _)| *c == Control::Memory)
            .map(|(_, i)| &self.dirs[*i])
    }

    /// Whether it holds the app's processes (its members can be listed and killed).
    #[must_use]
    pub const fn contains(&self) -> bool {
        self.members.is_some()
    }

    /// The processes in it now (thread-group ids, from `cgroup.procs`), wherever they went in
    /// the process tree; empty when it does not contain or cannot be read.
    #[must_use]
    pub fn members(&self) -> Vec<u32> {
        let Some(dir) = self.members.map(|i| &self.dirs[i]) else {
            return Vec::new();
        };
        std::fs::read_to_string(dir.path.join("cgroup.procs"))
            .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// How many times the kernel OOM killer has killed a process in its memory-limited
    /// directory (the `oom_kill` line of `memory.events`, v2, or `memory.oom_control`, v1 since
    /// Linux 4.13).
    #[must_use]
    pub fn oom_kills(&self) -> Option<u64> {
        let dir = self.memory()?;
        let file = match dir.version {
            CgroupVersion::V2 => "memory.events",
            CgroupVersion::V1 => "memory.oom_control",
        };
        std::fs::read_to_string(dir.path.join(file))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))?
            .trim()
            .parse()
            .ok()
    }

    /// Removes every directory (and each group directory once it is empty).
    ///
    /// # Errors
    /// The first failure (`EBUSY` while a process is still in it); the others are still tried.
    pub fn remove(&self) -> io::Result<()> {
        self.remove_beyond(None)
    }

    /// Removes the directories that `kept` (the instance's cgroup from now on) does not have:
    /// a controller no longer needed.
    ///
    /// # Errors
    /// As [`Self::remove`].
    pub fn remove_beyond(&self, kept: Option<&Self>) -> io::Result<()> {
        let mut first = Ok(());
        let in_kept = |d: &CgroupDir| kept.is_some_and(|k| k.dirs.contains(d));
        for dir in self.dirs.iter().filter(|d| !in_kept(d)) {
            match std::fs::remove_dir(&dir.path) {
                Ok(()) => {
                    if let Some(parent) = dir.path.parent() {
                        // other apps' cgroups keep it busy: fine
                        let _ = std::fs::remove_dir(parent);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    if first.is_ok() {
                        first = Err(named(&dir.path, e));
                    }
                }
            }
        }
        first
    }
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value).map_err(|e| named(path, e))
}

/// The v2 cgroup the daemon's own processes move to when their cgroup must give controllers to
/// the apps' (see [`make_dir`]); its parent stays the base of the apps' cgroups.
const LEAF: &str = "turbo-daemon.leaf";

/// Moves every process of the v2 cgroup `dir` into its child [`LEAF`].
fn move_to_leaf(dir: &Path) -> io::Result<()> {
    let leaf = dir.join(LEAF);
    std::fs::create_dir_all(&leaf).map_err(|e| named(&leaf, e))?;
    let procs = dir.join("cgroup.procs");
    let members = std::fs::read_to_string(&procs).map_err(|e| named(&procs, e))?;
    for pid in members.lines().map(str::trim).filter(|p| !p.is_empty()) {
        match std::fs::write(leaf.join("cgroup.procs"), pid) {
            // gone meanwhile
            Err(e) if e.raw_os_error() == Some(Errno::SRCH.raw_os_error()) => {}
            other => other.map_err(|e| named(&leaf.join("cgroup.procs"), e))?,
        }
    }
    Ok(())
}

/// Creates `base/group/name`; for a v2 `controller`, enables it below `base` and `group` first.
fn make_dir(
    base: &CgroupDir,
    group: &str,
    name: &str,
    controller: Option<&str>,
) -> io::Result<CgroupDir> {
    let parent = base.path.join(group);
    let path = parent.join(name);
    std::fs::create_dir_all(&parent).map_err(|e| named(&parent, e))?;
    if let (CgroupVersion::V2, Some(controller)) = (base.version, controller) {
        for dir in [base.path.as_path(), parent.as_path()] {
            let control = dir.join("cgroup.subtree_control");
            let on = std::fs::read_to_string(&control)
                .is_ok_and(|c| c.split_whitespace().any(|c| c == controller));
            if on {
                continue;
            }
            let enable = format!("+{controller}");
            match std::fs::write(&control, &enable) {
                // v2 gives controllers to the children of a cgroup only while it holds no
                // process itself; the daemon (and its log keeper) are in the cgroup it was
                // given (a systemd unit's, delegated): they move to a leaf below it first
                Err(e)
                    if e.raw_os_error() == Some(Errno::BUSY.raw_os_error()) && dir == base.path =>
                {
                    move_to_leaf(&base.path)?;
                    write(&control, &enable)?;
                }
                other => other.map_err(|e| named(&control, e))?,
            }
        }
    }
    std::fs::create_dir_all(&path).map_err(|e| named(&path, e))?;
    Ok(CgroupDir {
        path,
        version: base.version,
    })
}

/// The value of `key` in a flat-keyed file (`cpu.stat`, `memory.stat`, `memory.events`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// The CFS period the CPU quota is a share of (the kernel's default, 100 ms).
const CPU_PERIOD_US: u64 = 100_000;

/// Writes the limits of `control` into `dir`.
fn write_limits(dir: &CgroupDir, control: Control, limits: &CgroupLimits) -> io::Result<()> {
    let at = |file: &str| dir.path.join(file);
    let v2 = dir.version == CgroupVersion::V2;
    let or_max = |v: Option<u64>| v.map_or_else(|| "max".to_owned(), |n| n.to_string());
    match control {
        Control::Memory => {
            if v2 {
                write(&at("memory.high"), &or_max(limits.memory_high))?;
            } else {
                let soft = limits
                    .memory_high
                    .map_or_else(|| "-1".to_owned(), |n| n.to_string());
                write(&at("memory.soft_limit_in_bytes"), &soft)?;
            }
            if let Some(max) = limits.memory_max {
                set_memory_max(dir, max)?;
            }
        }
        Control::Cpu => {
            let quota = limits
                .cpu_max_percent
                .map(|p| u64::from(p) * CPU_PERIOD_US / 100);
            let weight = limits.cpu_weight.unwrap_or(100);
            if v2 {
                write(
                    &at("cpu.max"),
                    &format!("{} {CPU_PERIOD_US}", or_max(quota)),
                )?;
                write(&at("cpu.weight"), &weight.to_string())?;
            } else {
                write(&at("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                let quota = quota.map_or_else(|| "-1".to_owned(), |q| q.to_string());
                write(&at("cpu.cfs_quota_us"), &quota)?;
                // systemd's mapping: weight 100 is the v1 default of 1024 shares
                let shares = (u64::from(weight) * 1024 / 100).max(2);
                write(&at("cpu.shares"), &shares.to_string())?;
            }
        }
        Control::Io => {
            let weight = limits.io_weight.unwrap_or(100);
            let (file, value) = if v2 {
                (at("io.weight"), format!("default {weight}"))
            } else {
                // systemd's mapping onto the v1 range 10-1000 (default 500)
                let blkio = (u64::from(weight) * 5).clamp(10, 1000).to_string();
                let bfq = at("blkio.bfq.weight");
                (
                    if bfq.exists() {
                        bfq
                    } else {
                        at("blkio.weight")
                    },
                    blkio,
                )
            };
            if !file.exists() {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "io_weight: {} does not exist (IO weights need the BFQ I/O scheduler or, \
                         with cgroup v2, io.weight); remove io_weight on this host",
                        file.display()
                    ),
                ));
            }
            write(&file, &value)?;
        }
        Control::Pids => write(&at("pids.max"), &or_max(limits.pids_max))?,
    }
    Ok(())
}

fn set_memory_max(dir: &CgroupDir, bytes: u64) -> io::Result<()> {
    let limit = bytes.to_string();
    match dir.version {
        CgroupVersion::V2 => {
            write(&dir.path.join("memory.max"), &limit)?;
            let swap = dir.path.join("memory.swap.max");
            if swap.exists() {
                write(&swap, "0")?;
            }
        }
        CgroupVersion::V1 => {
            // memsw (memory + swap) must stay >= the memory limit: lower it after, raise it
            // before
            let memsw = dir.path.join("memory.memsw.limit_in_bytes");
            let has_memsw = memsw.exists();
            if has_memsw {
                let _ = std::fs::write(&memsw, &limit);
            }
            write(&dir.path.join("memory.limit_in_bytes"), &limit)?;
            if has_memsw {
                write(&memsw, &limit)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const OWN: &str = "\
8:pids:/
6:freezer:/
4:memory:/ci/job1
1:cpu,cpuacct:/
0::/
";

    #[test]
    fn hierarchies_are_found_with_the_own_paths() {
        let h = Hierarchies::parse(MOUNTS, OWN, |_| Some("hugetlb\n".into()));
        let unified = CgroupDir {
            path: "/sys/fs/cgroup/unified/".into(),
            version: CgroupVersion::V2,
        };
        // containment needs no controller: v2
        assert_eq!(h.membership(), Some(unified));
        // memory is not offered by v2 here: the v1 hierarchy, below the daemon's own cgroup
        assert_eq!(
            h.with_controller("memory"),
            Some(CgroupDir {
                path: "/sys/fs/cgroup/memory/ci/job1".into(),
                version: CgroupVersion::V1,
            })
        );
        assert_eq!(
            h.with_controller("cpuacct").map(|d| d.path),
            Some("/sys/fs/cgroup/cpu,cpuacct/".into())
        );
        // v2 with the memory controller enabled wins
        let h2 = Hierarchies::parse(MOUNTS, OWN, |_| Some("cpu memory pids".into()));
        assert_eq!(
            h2.with_controller("memory").map(|d| d.version),
            Some(CgroupVersion::V2)
        );
        // without v2, containment takes v1 pids
        let v1_only: String = MOUNTS
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .collect::<Vec<_>>()
            .join("\n");
        let h1 = Hierarchies::parse(&v1_only, OWN, |_| None);
        assert_eq!(
            h1.membership().map(|d| d.path),
            Some("/sys/fs/cgroup/pids/".into())
        );
        // nothing mounted: nothing offered
        let none = Hierarchies::parse("", OWN, |_| None);
        assert!(none.membership().is_none() && none.with_controller("memory").is_none());
        let err = AppCgroup::create(
            &none,
            "g",
            "a",
            &CgroupRequest {
                contain: true,
                limits: CgroupLimits::default(),
                best_effort: false,
            },
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    }

    /// The real thing, where this machine allows it (root with a cgroup hierarchy; CI is).
    #[test]
    fn a_contained_process_is_listed_wherever_it_goes() {
        let h = Hierarchies::read().unwrap();
        if h.membership().is_none() {
            eprintln!("*** SKIPPED: no writable cgroup hierarchy here ***");
            return;
        }
        let request = CgroupRequest {
            contain: true,
            limits: CgroupLimits::default(),
            best_effort: false,
        };
        let group = format!("turbo-unit-{}", std::process::id());
        let cg = match AppCgroup::create(&h, &group, "a.0", &request) {
            Ok(cg) => cg,
            Err(e) if crate::os::process::euid() != 0 => {
                eprintln!("*** SKIPPED: cannot create a cgroup as non-root: {e} ***");
                return;
            }
            Err(e) => panic!("root creates a cgroup: {e}"),
        };
        assert!(cg.contains() && cg.memory().is_none());
        let procs = cg.procs().unwrap();
        assert_eq!(procs.len(), 1);
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let path = cg.dirs[0].path.join("cgroup.procs");
        std::fs::write(&path, pid.to_string()).unwrap();
        assert_eq!(cg.members(), [pid]);
        assert!(cg.remove().is_err(), "busy while a process is in it");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(cg.members().is_empty());
        cg.remove().unwrap();
        assert!(!cg.dirs[0].path.exists());
    }

    /// A cgroup v2 directory tree in a temporary directory: what the kernel would show.
    fn fake_v2(root: &Path) -> Hierarchies {
        let mounts = format!("41 31 0:38 / {} rw - cgroup2 cgroup2 rw\n", root.display());
        Hierarchies::parse(&mounts, "0::/daemon\n", |_| {
            Some("cpu io memory pids".into())
        })
    }

    fn all_limits() -> CgroupLimits {
        CgroupLimits {
            memory_max: Some(256 << 20),
            memory_high: Some(192 << 20),
            cpu_max_percent: Some(150),
            cpu_weight: Some(50),
            io_weight: Some(200),
            pids_max: Some(20),
        }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path)
            .expect("written")
            .trim()
            .to_owned()
    }

    /// The v2 file protocol (this machine has no v2 controllers to try it on for real).
    #[test]
    fn v2_limits_are_written_rewritten_and_lifted_in_one_directory() {
        let tmp = tempfile::tempdir().expect("tmp");
        let h = fake_v2(tmp.path());
        let app = tmp.path().join("daemon/g/a.0");
        // files the kernel offers only where the controller exists: io.weight (blk-iocost)
        std::fs::create_dir_all(&app).expect("mkdir");
        std::fs::write(app.join("io.weight"), "default 100\n").expect("io.weight");
        let request = CgroupRequest {
            contain: true,
            limits: all_limits(),
            best_effort: false,
        };
        let cg = AppCgroup::create(&h, "g", "a.0", &request).expect("created");
        // one v2 directory serves every controller and the membership
        assert_eq!(cg.dirs.len(), 1, "{:?}", cg.dirs);
        assert_eq!(cg.describe(), [format!("v2 {}", app.display())]);
        for (dir, on) in [("daemon", "+cpu"), ("daemon/g", "+cpu")] {
            let control = read(&tmp.path().join(dir).join("cgroup.subtree_control"));
            assert!(!control.is_empty(), "{dir}: {control} (last: {on} ...)");
        }
        assert_eq!(read(&app.join("cpu.max")), "150000 100000");
        assert_eq!(read(&app.join("cpu.weight")), "50");
        assert_eq!(read(&app.join("io.weight")), "default 200");
        assert_eq!(read(&app.join("pids.max")), "20");
        assert_eq!(read(&app.join("memory.high")), (192u64 << 20).to_string());
        assert_eq!(read(&app.join("memory.max")), (256u64 << 20).to_string());
        // live: a changed limit is rewritten, one taken out is lifted to the default
        let mut lower = all_limits();
        lower.cpu_max_percent = Some(20);
        lower.cpu_weight = None;
        lower.pids_max = None;
        lower.memory_high = None;
        cg.set(&lower).expect("rewritten");
        assert_eq!(read(&app.join("cpu.max")), "20000 100000");
        assert_eq!(read(&app.join("cpu.weight")), "100");
        assert_eq!(read(&app.join("pids.max")), "max");
        assert_eq!(read(&app.join("memory.high")), "max");

        // what the kernel counts, as v2 spells it
        std::fs::write(
            app.join("cpu.stat"),
            "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\nnr_periods 9\n\
             nr_throttled 4\nthrottled_usec 700\n",
        )
        .expect("cpu.stat");
        std::fs::write(app.join("memory.current"), "8192\n").expect("current");
        std::fs::write(app.join("memory.stat"), "anon 4096\nfile 2048\n").expect("stat");
        std::fs::write(
            app.join("memory.events"),
            "low 0\nhigh 5\nmax 2\noom 1\noom_kill 1\n",
        )
        .expect("events");
        std::fs::write(app.join("pids.current"), "3\n").expect("pids");
        assert_eq!(
            cg.stats(),
            CgroupStats {
                cpu_user_ns: Some(2_000_000),
                cpu_system_ns: Some(1_000_000),
                throttled_ns: Some(700_000),
                throttled_periods: Some(4),
                memory_bytes: Some(8192),
                page_cache_bytes: Some(2048),
                pids: Some(3),
                memory_events: vec![("high", 5), ("max", 2), ("oom", 1), ("oom_kill", 1)],
            }
        );
        assert_eq!(cg.oom_kills(), Some(1));
    }

    /// The v1 protocol against a directory fixture (the e2e tests run it for real).
    #[test]
    fn v1_limits_go_to_each_controllers_hierarchy() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        let mut mounts = String::new();
        for (k, c) in ["memory", "cpu", "cpuacct", "blkio", "pids"]
            .iter()
            .enumerate()
        {
            mounts.push_str(&format!(
                "{} 31 0:{k} / {}/{c} rw - cgroup cgroup rw,{c}\n",
                50 + k,
                root.display()
            ));
        }
        let h = Hierarchies::parse(
            &mounts,
            "5:pids:/\n4:blkio:/\n3:cpuacct:/\n2:cpu:/\n1:memory:/job\n",
            |_| None,
        );
        let request = CgroupRequest {
            contain: false,
            limits: CgroupLimits {
                io_weight: None,
                ..all_limits()
            },
            best_effort: false,
        };
        let cg = AppCgroup::create(&h, "g", "a.0", &request).expect("created");
        let at = |c: &str, f: &str| root.join(c).join("g/a.0").join(f);
        let mem = |f: &str| root.join("memory/job/g/a.0").join(f);
        assert_eq!(read(&at("cpu", "cpu.cfs_period_us")), "100000");
        assert_eq!(read(&at("cpu", "cpu.cfs_quota_us")), "150000");
        assert_eq!(read(&at("cpu", "cpu.shares")), "512");
        assert_eq!(read(&at("pids", "pids.max")), "20");
        assert_eq!(
            read(&mem("memory.soft_limit_in_bytes")),
            (192u64 << 20).to_string()
        );
        assert_eq!(
            read(&mem("memory.limit_in_bytes")),
            (256u64 << 20).to_string()
        );
        // memory, cpu, cpuacct (for the CPU time), pids
        assert_eq!(cg.dirs.len(), 4, "{:?}", cg.describe());
        // the kernel's default back when a limit is taken out
        cg.set(&CgroupLimits {
            cpu_max_percent: None,
            ..request.limits
        })
        .expect("lifted");
        assert_eq!(read(&at("cpu", "cpu.cfs_quota_us")), "-1");
        // a controller it was not made with: a restart, said so
        let err = cg.set(&all_limits()).expect_err("no blkio directory");
        assert!(
            err.kind() == io::ErrorKind::Unsupported && err.to_string().contains("io_weight"),
            "{err}"
        );
        std::fs::write(
            at("cpu", "cpu.stat"),
            "nr_periods 9\nnr_throttled 4\nthrottled_time 7000\n",
        )
        .expect("cpu.stat");
        std::fs::write(at("cpuacct", "cpuacct.usage_user"), "2000\n").expect("user");
        std::fs::write(at("cpuacct", "cpuacct.usage_sys"), "1000\n").expect("sys");
        std::fs::write(mem("memory.usage_in_bytes"), "8192\n").expect("usage");
        std::fs::write(mem("memory.stat"), "cache 10\nrss 20\ntotal_cache 2048\n").expect("stat");
        std::fs::write(mem("memory.failcnt"), "6\n").expect("failcnt");
        std::fs::write(
            mem("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .expect("oom");
        std::fs::write(at("pids", "pids.current"), "4\n").expect("pids");
        let s = cg.stats();
        assert_eq!(
            (
                s.cpu_user_ns,
                s.cpu_system_ns,
                s.throttled_ns,
                s.throttled_periods
            ),
            (Some(2000), Some(1000), Some(7000), Some(4))
        );
        assert_eq!(
            (s.memory_bytes, s.page_cache_bytes, s.pids),
            (Some(8192), Some(2048), Some(4))
        );
        assert_eq!(s.memory_events, [("max", 6), ("oom_kill", 2)]);
    }

    #[test]
    fn a_limit_no_hierarchy_enforces_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mounts = format!(
            "50 31 0:1 / {}/cpu rw - cgroup cgroup rw,cpu\n",
            tmp.path().display()
        );
        let h = Hierarchies::parse(&mounts, "2:cpu:/\n", |_| None);
        for (limits, key) in [
            (
                CgroupLimits {
                    pids_max: Some(5),
                    ..CgroupLimits::default()
                },
                "pids_max needs the pids",
            ),
            (
                CgroupLimits {
                    memory_high: Some(1 << 20),
                    ..CgroupLimits::default()
                },
                "memory_high needs",
            ),
            (
                CgroupLimits {
                    io_weight: Some(5),
                    ..CgroupLimits::default()
                },
                "io_weight needs the io",
            ),
        ] {
            let request = CgroupRequest {
                contain: false,
                limits,
                best_effort: false,
            };
            let err = AppCgroup::create(&h, "g", "a", &request).expect_err(key);
            assert!(
                err.kind() == io::ErrorKind::Unsupported && err.to_string().starts_with(key),
                "{err}"
            );
        }
        // blkio mounted but without a weight file (no BFQ): refused at the start too
        let blkio = format!(
            "51 31 0:2 / {}/blkio rw - cgroup cgroup rw,blkio\n",
            tmp.path().display()
        );
        let h = Hierarchies::parse(&blkio, "4:blkio:/\n", |_| None);
        let request = CgroupRequest {
            contain: false,
            limits: CgroupLimits {
                io_weight: Some(5),
                ..CgroupLimits::default()
            },
            best_effort: false,
        };
        let err = AppCgroup::create(&h, "g", "a", &request).expect_err("no weight file");
        assert!(err.to_string().contains("BFQ"), "{err}");
        // limits_required: false: made all the same, the limit said to be unenforced
        let lenient = CgroupRequest {
            best_effort: true,
            ..request
        };
        let made = AppCgroup::create(&h, "g", "a", &lenient).expect("best effort");
        assert!(
            made.unenforced()[0].contains("BFQ"),
            "{:?}",
            made.unenforced()
        );
        assert!(
            made.describe()
                .iter()
                .any(|l| l.starts_with("unenforced: io_weight")),
            "{:?}",
            made.describe()
        );
        let none = Hierarchies::parse("", "", |_| None);
        let made = AppCgroup::create(&none, "g", "a", &lenient).expect("nothing mounted");
        assert!(
            made.unenforced()[0].contains("needs the io cgroup controller"),
            "{:?}",
            made.unenforced()
        );
    }

    /// The delegated-subtree rule of v2 for real, with the one controller this machine's v2
    /// has (hugetlb): a cgroup holding a process (the daemon in its systemd unit's cgroup)
    /// cannot give a controller to its children until that process moves to a leaf.
    #[test]
    fn v2_processes_move_to_a_leaf_so_the_apps_get_controllers() {
        let h = Hierarchies::read().expect("hierarchies");
        let Some((root, offered)) = h.unified.clone() else {
            eprintln!("*** SKIPPED: no cgroup v2 hierarchy mounted ***");
            return;
        };
        let Some(controller) = offered.first().cloned() else {
            eprintln!("*** SKIPPED: cgroup v2 offers no controller here ***");
            return;
        };
        let unit = root.join(format!("turbo-unit-leaf-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir(&unit) {
            assert_ne!(crate::os::process::euid(), 0, "root makes a v2 cgroup: {e}");
            eprintln!("*** SKIPPED: cannot create a v2 cgroup as non-root: {e} ***");
            return;
        }
        // the controller reaches the unit only through the root's subtree_control (taken
        // back at the end when this test gave it)
        let root_control = root.join("cgroup.subtree_control");
        let given = !std::fs::read_to_string(&root_control)
            .unwrap_or_default()
            .split_whitespace()
            .any(|c| c == controller);
        if given {
            std::fs::write(&root_control, format!("+{controller}")).expect("enable at the root");
        }
        let mut unit_proc = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = unit_proc.id();
        std::fs::write(unit.join("cgroup.procs"), pid.to_string()).expect("into the unit");
        let base = CgroupDir {
            path: unit.clone(),
            version: CgroupVersion::V2,
        };
        let made = make_dir(&base, "g", "a.0", Some(&controller));
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        unit_proc.kill().expect("kill");
        unit_proc.wait().expect("reap");
        let dir = made.expect("the app's cgroup with the controller");
        let enabled = std::fs::read_to_string(unit.join("g/cgroup.subtree_control"));
        for d in [
            dir.path.clone(),
            unit.join("g"),
            unit.join(LEAF),
            unit.clone(),
        ] {
            let _ = std::fs::remove_dir(d);
        }
        if given {
            let _ = std::fs::write(&root_control, format!("-{controller}"));
        }
        assert!(
            own.contains(LEAF),
            "the unit's process moved to the leaf: {own}"
        );
        assert!(enabled.expect("g").contains(&controller));
        // a daemon that moved itself keeps the apps' cgroups beside its leaf
        let moved = Hierarchies::parse(
            "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            &format!("0::/unit/{LEAF}\n"),
            |_| Some("cpu".into()),
        );
        assert_eq!(
            moved.membership().map(|d| d.path),
            Some("/sys/fs/cgroup/unit".into())
        );
    }
}
