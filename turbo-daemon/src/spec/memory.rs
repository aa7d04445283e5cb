//! An app's memory limit: `max_memory`, `memory_warning` and `memory_enforce`.

/// Memory limit of an app's main process (resident set size).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPolicy {
    /// Restart the app when its resident memory reaches this many bytes.
    pub max: Option<u64>,
    /// Warn (once per crossing) at this percentage of `max`.
    pub warning_percent: u8,
    /// Who acts at `max` (`memory_enforce`).
    pub enforce: MemoryEnforce,
}

impl Default for MemoryPolicy {
    fn default() -> Self {
        Self {
            max: None,
            warning_percent: 80,
            enforce: MemoryEnforce::Restart,
        }
    }
}

impl MemoryPolicy {
    /// The warning threshold in bytes, when a limit is set.
    #[must_use]
    pub fn warning(&self) -> Option<u64> {
        self.max.map(|max| {
            let warn = u128::from(max) * u128::from(self.warning_percent) / 100;
            u64::try_from(warn).unwrap_or(max)
        })
    }
}

/// Who acts when an app reaches `max_memory` (`memory_enforce:` in turbo.yml).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemoryEnforce {
    /// The supervisor restarts the app (reason `memory_limit`) when its resident memory
    /// crosses the limit.
    #[default]
    Restart,
    /// The kernel: the app runs in its own memory cgroup limited to `max_memory`, and an OOM
    /// kill (reason `oom_kill`) is the expected outcome; the supervisor only warns.
    Cgroup,
}

impl MemoryEnforce {
    /// The `memory_enforce:` value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Cgroup => "cgroup",
        }
    }
}

from_words!(
    MemoryEnforce,
    "memory_enforce",
    "restart (the daemon restarts the app at max_memory, the default), cgroup (the kernel \
     limits it in a memory cgroup)",
    { "restart" => Restart, "cgroup" => Cgroup }
);
