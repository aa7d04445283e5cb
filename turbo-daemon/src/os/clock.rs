//! Clock readings that `std::time` does not expose.

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of systemd's `MONOTONIC_USEC=`, of
/// `bpf_ktime_get_ns` and of Python's `time.monotonic_ns`.
#[must_use]
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}
