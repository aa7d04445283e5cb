//! Who an app runs as and under which limits: `user`, `group`, `groups`, `umask`, `rlimits`,
//! `nice` and `oom_score_adj`, resolved (names are ids already, so what `describe` shows is what
//! runs). Which of these a caller may ask for is decided in `access`; the names are looked up
//! when a config is read (`config`); `runtime::spawner` puts them in the plan `os::spawn` applies between fork and exec.

/// Who an app runs as and under which limits: `AppSpec::privileges`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Privileges {
    /// `user`, `group`, `groups`; `None`: the daemon's own user, with the daemon's groups.
    pub run_as: Option<RunAs>,
    /// umask, rlimits, nice, `oom_score_adj`.
    pub limits: ProcessLimits,
}

/// The identity an app runs as. Names are resolved once, when the config is validated, so what
/// `describe` shows is what runs; a changed `/etc/passwd` applies at the next
/// `turbo start <config>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// User name (from its passwd entry).
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// Primary group name (the user's own unless `group:` says otherwise).
    pub group: String,
    /// Its gid.
    pub gid: u32,
    /// Supplementary groups `(name, gid)`: exactly these replace the daemon's. By default the
    /// user's groups in the group database, as `initgroups(user, gid)` would set them.
    pub groups: Vec<(String, u32)>,
    /// The user's home directory: the app's `HOME`.
    pub home: String,
    /// The user's login shell: the app's `SHELL`.
    pub shell: String,
}

/// Process attributes applied between fork and exec; `None` means inherited from the daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessLimits {
    /// File mode creation mask (`0o027`).
    pub umask: Option<u32>,
    /// `RLIMIT_NOFILE`: open file descriptors.
    pub nofile: Option<Rlimit>,
    /// `RLIMIT_NPROC`: processes and threads of the app's real uid (all of them, not only
    /// the app's).
    pub nproc: Option<Rlimit>,
    /// `RLIMIT_CORE`: core dump size in bytes.
    pub core: Option<Rlimit>,
    /// Scheduling niceness, -20 (favoured) to 19.
    pub nice: Option<i32>,
    /// OOM-killer preference, -1000 (never) to 1000 (first).
    pub oom_score_adj: Option<i32>,
}

impl ProcessLimits {
    /// The rlimits that are set, by their config name.
    #[must_use]
    pub fn rlimits(&self) -> Vec<(&'static str, Rlimit)> {
        [
            ("nofile", self.nofile),
            ("nproc", self.nproc),
            ("core", self.core),
        ]
        .into_iter()
        .filter_map(|(name, limit)| limit.map(|l| (name, l)))
        .collect()
    }
}

/// A soft and a hard resource limit; [`Rlimit::UNLIMITED`] is `RLIM_INFINITY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    /// What the kernel enforces.
    pub soft: u64,
    /// The ceiling the app may raise its soft limit to.
    pub hard: u64,
}

impl Rlimit {
    /// No limit (`RLIM_INFINITY` on Linux).
    pub const UNLIMITED: u64 = u64::MAX;
}

/// One limit value as text: a number or `unlimited`.
#[must_use]
pub fn limit_text(v: u64) -> String {
    if v == Rlimit::UNLIMITED {
        "unlimited".into()
    } else {
        v.to_string()
    }
}
