//! The C allocator's knobs: the daemon is long-lived and mostly idle, so memory it used once
//! must go back to the kernel.

/// Fixes glibc's allocator thresholds for a long-lived, mostly idle daemon: blocks of 128 KiB
/// and more (log read buffers grown by a burst, start-up parsing) get their own mappings and go
/// back to the kernel when freed, and free memory at the top of the heap is returned above
/// 256 KiB. By default both thresholds grow after the first large free (up to 32 MiB), after
/// which such memory stays with the process for good. One arena: the daemon runs on one thread
/// (a tokio blocking-pool thread now and then would otherwise get an arena of its own).
pub fn settle_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 10);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Gives the heap the allocator keeps after a burst (start-up parsing, BTF) back to the kernel.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; no pointer is invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
}
