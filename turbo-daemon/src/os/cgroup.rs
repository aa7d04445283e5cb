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
//! * more controllers (cpu, io, pids limits) are the same: one directory in the hierarchy
//!   that has the controller, with the same life cycle.
//!
//! This module takes and returns plain data (paths, pids, sizes) and decides nothing: which
//! apps get a cgroup, and when to kill its members, is the caller's business.

use std::{
    io,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

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
    /// Limit its memory to this many bytes (swap included where the kernel accounts it).
    pub memory_max: Option<u64>,
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
                        let dir = below(path);
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
    fn with_controller(&self, controller: &str) -> Option<CgroupDir> {
        match &self.unified {
            Some((dir, offered)) if offered.iter().any(|c| c == controller) => Some(CgroupDir {
                path: dir.clone(),
                version: CgroupVersion::V2,
            }),
            _ => self.v1_dir(controller),
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
    /// Index in `dirs` of the one with the memory limit.
    memory: Option<usize>,
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
        let unsupported = |what: &str| io::Error::new(io::ErrorKind::Unsupported, what.to_owned());
        let mut cgroup = Self {
            dirs: Vec::new(),
            members: None,
            memory: None,
        };
        if let Some(max) = request.memory_max {
            let base = h.with_controller("memory").ok_or_else(|| {
                unsupported(
                    "no memory cgroup controller is mounted (neither cgroup v2 with `memory` in \
                     cgroup.controllers nor a v1 `memory` hierarchy)",
                )
            })?;
            let dir = make_dir(&base, group, name, Some("memory"))?;
            set_memory_max(&dir, max)?;
            cgroup.memory = Some(cgroup.add(dir));
        }
        if request.contain {
            let base = h.membership().ok_or_else(|| {
                unsupported(
                    "no cgroup hierarchy is mounted (neither cgroup v2 nor v1 pids/freezer)",
                )
            })?;
            let dir = make_dir(&base, group, name, None)?;
            cgroup.members = Some(cgroup.add(dir));
        }
        Ok(cgroup)
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
        self.memory.map(|i| &self.dirs[i])
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
        let mut first = Ok(());
        for dir in &self.dirs {
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
            if !on {
                write(&control, &format!("+{controller}"))?;
            }
        }
    }
    std::fs::create_dir_all(&path).map_err(|e| named(&path, e))?;
    Ok(CgroupDir {
        path,
        version: base.version,
    })
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
                memory_max: None,
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
            memory_max: None,
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
}
