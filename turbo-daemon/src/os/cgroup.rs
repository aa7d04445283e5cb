//! Memory cgroups (`memory_enforce: cgroup`): finding the daemon's own, creating one below it
//! with a limit, reading its OOM-kill counter, removing it. Both hierarchies: the unified one
//! (v2) when its memory controller is enabled, else the v1 `memory` hierarchy.

use std::{
    io,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

/// The cgroup interface a memory limit is set through.
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

/// A memory cgroup the daemon made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryCgroup {
    /// Its directory.
    pub path: PathBuf,
    /// Through which interface.
    pub version: CgroupVersion,
}

/// Where the daemon's own memory cgroup is: in the unified hierarchy when the memory controller
/// is enabled there, else in the v1 memory hierarchy. New cgroups go below it, so they stay
/// inside whatever limits the daemon itself runs under (a container, a systemd unit).
///
/// # Errors
/// `Unsupported` when neither hierarchy has a memory controller mounted.
pub fn own_memory_cgroup() -> io::Result<(PathBuf, CgroupVersion)> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    let own = std::fs::read_to_string("/proc/self/cgroup")?;
    // mountinfo: id parent dev root mountpoint options... - fstype source super-options
    let mount = |want: CgroupVersion| {
        mounts.lines().find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let (fstype, _, options) = (right.next()?, right.next()?, right.next()?);
            let (root, point) = (*left.get(3)?, PathBuf::from(*left.get(4)?));
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
    /// Opens the cgroup's `cgroup.procs` for [`super::spawn::Plan::cgroup_procs`]: the child writes `0` (itself)
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
