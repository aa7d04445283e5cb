//! The readers of the insight programs: the run-queue delay and involuntary switches the
//! scheduler programs keep per app (`RUNQ`), and whether the network program reports TCP
//! events (those come through the ring buffer, decoded in `ring`). Reading only: nothing here
//! decides what the figures mean (that is `runtime::insight`).

use std::io;

use aya::maps::MapError;
use turbo_common::{self as abi, RunqStats};

use super::{Ebpf, error_chain};

impl Ebpf {
    /// Whether the scheduler programs are attached, so [`Ebpf::runq`] measures something.
    #[must_use]
    pub fn runq_supported(&self) -> bool {
        [
            abi::PROG_SCHED_SWITCH,
            abi::PROG_SCHED_WAKEUP,
            abi::PROG_SCHED_WAKEUP_NEW,
        ]
        .iter()
        .all(|p| self.programs.iter().any(|q| q == p))
    }

    /// The run-queue delay histogram and involuntary switches of app `key` since it was first
    /// watched, summed over the CPUs; all zero before its threads ran.
    #[must_use]
    pub fn runq(&self, key: u32) -> RunqStats {
        let mut total = RunqStats::default();
        if let Ok(per_cpu) = self.runq.get(&key, 0) {
            for cpu in per_cpu.iter() {
                for (t, b) in total.buckets.iter_mut().zip(cpu.buckets) {
                    *t += b;
                }
                total.count += cpu.count;
                total.sum_ns += cpu.sum_ns;
                total.involuntary += cpu.involuntary;
            }
        }
        total
    }

    /// Drops the run-queue figures of an app that is gone (ignores "not found").
    pub fn forget_runq(&mut self, key: u32) {
        match self.runq.remove(&key) {
            Ok(()) | Err(MapError::KeyNotFound | MapError::ElementNotFound) => {}
            Err(MapError::SyscallError(e)) if e.io_error.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(key, error = %error_chain(&e), "eBPF run-queue removal failed")
            }
        }
    }

    /// Whether the network program is attached, so listens, connects and accepts are reported.
    #[must_use]
    pub fn net_supported(&self) -> bool {
        self.programs
            .iter()
            .any(|p| p == abi::PROG_INET_SOCK_SET_STATE)
    }
}
