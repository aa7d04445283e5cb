//! The cgroup limit keys of an app (`cpu_max`, `cpu_weight`, `io_weight`, `pids_max`,
//! `memory_high`) checked into [`crate::spec::Resources`]. Whether this host can enforce them is
//! known only at the start (the cgroup is made then), not here.

use super::{Problem, Scalar};
use crate::spec::{AppSpec, Resources, units::Bounds};

/// The keys as written.
#[derive(Debug, Default)]
pub(super) struct ResourceKeys {
    pub cpu_max: Option<Scalar>,
    pub cpu_weight: Option<i64>,
    pub io_weight: Option<i64>,
    pub pids_max: Option<i64>,
    pub memory_high: Option<Scalar>,
}

/// Checks `keys` into `spec.resources`, every problem at its key.
pub(super) fn apply_resources(keys: &ResourceKeys, spec: &mut AppSpec, errors: &mut Vec<Problem>) {
    let ResourceKeys {
        cpu_max,
        cpu_weight,
        io_weight,
        pids_max,
        memory_high,
    } = keys;
    let r = &mut spec.resources;
    if let Some(v) = cpu_max {
        match v.percent() {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "checked within 1..=CPU_MAX_PERCENT"
            )]
            Some(p) if (1.0..=f64::from(Resources::CPU_MAX_PERCENT)).contains(&p) => {
                r.cpu_max = Some(p.round() as u32);
            }
            _ => errors.push(
                Problem::new(
                    "cpu_max",
                    format!(
                        "cpu_max {} is not a share of one CPU between 1% and 100000%",
                        v.written()
                    ),
                )
                .hint("write e.g. `cpu_max: 50%` (half a CPU) or `cpu_max: 200%` (two CPUs)"),
            ),
        }
    }
    for (key, value, slot) in [
        ("cpu_weight", cpu_weight, &mut r.cpu_weight),
        ("io_weight", io_weight, &mut r.io_weight),
    ] {
        let Some(n) = *value else { continue };
        match u32::try_from(n) {
            Ok(w) if Resources::WEIGHTS.contains(&w) => *slot = Some(w),
            _ => errors.push(
                Problem::new(key, format!("{key} {n} must be between 1 and 10000"))
                    .hint("100 is the default share; 200 gets twice as much under contention"),
            ),
        }
    }
    if let Some(n) = *pids_max {
        // PID_MAX_LIMIT: no host has more
        match u64::try_from(n) {
            Ok(p) if (1..=1 << 22).contains(&p) => r.pids_max = Some(p),
            _ => errors.push(
                Problem::new(
                    "pids_max",
                    format!("pids_max {n} must be between 1 and 4194304"),
                )
                .hint("count every process and thread the app may have at once, e.g. 512"),
            ),
        }
    }
    if let Some(v) = memory_high {
        match v.size("memory_high", Bounds::MEMORY) {
            Ok(n) if n >= 1 << 20 => r.memory_high = Some(n),
            Ok(n) => errors.push(
                Problem::new("memory_high", format!("memory_high {n} bytes is below 1mb"))
                    .hint("no program runs in that; use e.g. 256mb"),
            ),
            Err(e) => errors.push(e.at("memory_high")),
        }
    }
}
