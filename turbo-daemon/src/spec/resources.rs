//! An app's cgroup limits beside `max_memory`: `cpu_max`, `cpu_weight`, `io_weight`,
//! `pids_max` and `memory_high`, and the cgroup controllers they need.
//!
//! Pure data: which hierarchy enforces a limit and how it is written there is `os::cgroup`'s
//! business, whether it can change while the app runs is the plan's.

/// Limits the kernel enforces on each instance of an app, in a cgroup of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU time per wall-clock time, in percent of one CPU (`150` = one and a half CPUs).
    pub cpu_max: Option<u32>,
    /// Share of the CPU against the other cgroups under contention, 1 to 10000 (100: the
    /// kernel's default).
    pub cpu_weight: Option<u32>,
    /// Share of the block devices under contention, 1 to 10000 (100: the default).
    pub io_weight: Option<u32>,
    /// At most this many processes and threads at once: a fork beyond fails with `EAGAIN`.
    pub pids_max: Option<u64>,
    /// Memory above which the kernel reclaims and throttles the app (v2), or reclaims it
    /// first under host pressure (v1 soft limit); never a kill.
    pub memory_high: Option<u64>,
    /// `limits_required: false`: a limit this host cannot enforce (its cgroup controller is
    /// missing, or v1 blkio without BFQ) is left out with a warning instead of failing the
    /// start. Not a limit itself.
    pub best_effort: bool,
}

/// A cgroup controller a limit needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    /// `cpu_max`, `cpu_weight`.
    Cpu,
    /// `io_weight`.
    Io,
    /// `pids_max`.
    Pids,
    /// `memory_high` (and `max_memory` with `memory_enforce: cgroup`).
    Memory,
}

impl Resources {
    /// The smallest and largest weight (`cpu_weight`, `io_weight`), as cgroup v2 has them.
    pub const WEIGHTS: std::ops::RangeInclusive<u32> = 1..=10_000;
    /// The largest `cpu_max`: 1000 CPUs.
    pub const CPU_MAX_PERCENT: u32 = 100_000;

    /// Whether no limit is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keyed().iter().all(|(_, v)| v.is_none())
    }

    /// The controllers these limits need, each once, in a fixed order.
    #[must_use]
    pub fn controllers(&self) -> Vec<Controller> {
        let mut out: Vec<Controller> = self
            .keyed()
            .into_iter()
            .filter(|(_, v)| v.is_some())
            .map(|(key, _)| match key {
                "cpu_max" | "cpu_weight" => Controller::Cpu,
                "io_weight" => Controller::Io,
                "pids_max" => Controller::Pids,
                _ => Controller::Memory,
            })
            .collect();
        out.dedup();
        out
    }

    /// Every limit by its turbo.yml key, set or not (for comparing two specs key by key).
    #[must_use]
    pub fn keyed(&self) -> [(&'static str, Option<u64>); 5] {
        let Self {
            cpu_max,
            cpu_weight,
            io_weight,
            pids_max,
            memory_high,
            best_effort: _,
        } = *self;
        [
            ("cpu_max", cpu_max.map(u64::from)),
            ("cpu_weight", cpu_weight.map(u64::from)),
            ("io_weight", io_weight.map(u64::from)),
            ("pids_max", pids_max),
            ("memory_high", memory_high),
        ]
    }

    /// Every limit that is set as `(key, value as turbo.yml writes it)`, for `describe`.
    #[must_use]
    pub fn written(&self) -> Vec<(&'static str, String)> {
        [
            ("cpu_max", self.cpu_max.map(|p| format!("{p}%"))),
            ("cpu_weight", self.cpu_weight.map(|w| w.to_string())),
            ("io_weight", self.io_weight.map(|w| w.to_string())),
            ("pids_max", self.pids_max.map(|n| n.to_string())),
            ("memory_high", self.memory_high.map(size_text)),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect()
    }
}

/// A size the way turbo.yml writes it (`64mb`), in the largest unit that divides it.
fn size_text(bytes: u64) -> String {
    [("gb", 30), ("mb", 20), ("kb", 10)]
        .into_iter()
        .find(|(_, shift)| bytes >= 1 << shift && bytes.is_multiple_of(1 << shift))
        .map_or_else(
            || bytes.to_string(),
            |(unit, shift)| format!("{}{unit}", bytes >> shift),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_follow_the_limits_set() {
        assert!(Resources::default().controllers().is_empty());
        let r = Resources {
            cpu_weight: Some(50),
            cpu_max: Some(150),
            memory_high: Some(1 << 20),
            ..Resources::default()
        };
        assert_eq!(r.controllers(), [Controller::Cpu, Controller::Memory]);
        assert_eq!(
            r.written(),
            [
                ("cpu_max", "150%".to_owned()),
                ("cpu_weight", "50".to_owned()),
                ("memory_high", "1mb".to_owned()),
            ]
        );
    }
}
