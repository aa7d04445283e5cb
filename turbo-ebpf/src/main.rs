//! eBPF programs of TurboProcess, built for `bpfel-unknown-none` by `turbo-daemon/build.rs`
//! (aya-build) and embedded in the daemon.
//!
//! # What it does
//!
//! * `sched_process_exit` (a `tp_btf` BTF tracepoint, arguments
//!   `(struct task_struct *p, bool group_dead)`): when the last thread of a thread group exits
//!   (`group_dead`) and that thread group's id is in the [`WATCHED`] map, it writes one
//!   [`RawEvent`] of kind [`EVENT_EXIT`] (tgid, pid of the exiting thread, `exit_code`,
//!   `signal->group_exit_code`, `bpf_ktime_get_ns()`) into the [`EVENTS`] ring buffer, then
//!   removes the tgid from [`WATCHED`]. The hook runs in `do_exit()` before the address space is
//!   torn down and before the parent is notified, so user space learns about the exit earlier
//!   than `waitpid`/pidfd can.
//! * When the ring buffer is full the event is counted in [`LOST`] (one per-CPU slot) instead.
//!
//! Kernel struct field offsets are not compiled in (aya-ebpf has no CO-RE relocations): the
//! loader reads them from `/sys/kernel/btf/vmlinux` and patches the read-only globals
//! `OFF_*` before load. A program whose offsets were not set does nothing.
//!
//! # Minimum kernel
//!
//! Linux **5.8**: BTF tracepoints (`BPF_PROG_TYPE_TRACING` / `tp_btf`, 5.5), the BPF ring buffer
//! (5.8) and `bpf_probe_read_kernel` (5.5), with `CONFIG_DEBUG_INFO_BTF=y`
//! (`/sys/kernel/btf/vmlinux`). Needs CAP_BPF + CAP_PERFMON (or root); no tracefs.
//!
//! On the host (`cargo check --workspace`, clippy) this crate builds as an empty std binary so
//! the code is type-checked; only the BPF target gets `no_std`, `no_main` and the panic handler.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

use aya_ebpf::{
    Global,
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{btf_tracepoint, map},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::BtfTracePointContext,
};
use turbo_common::{EVENT_EXIT, RawEvent};

/// Ring buffer read by the daemon (1 MiB: ~32k events of 32 bytes).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Supervised thread-group ids; written by the daemon, entries removed here on exit.
#[map]
static WATCHED: HashMap<u32, u8> = HashMap::with_max_entries(16_384, 0);

/// Events dropped because [`EVENTS`] was full (slot 0, per CPU).
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// `task_struct.exit_code`.
#[unsafe(no_mangle)]
static OFF_TASK_EXIT_CODE: Global<u64> = Global::new(0);
/// `task_struct.tgid`.
#[unsafe(no_mangle)]
static OFF_TASK_TGID: Global<u64> = Global::new(0);
/// `task_struct.pid`.
#[unsafe(no_mangle)]
static OFF_TASK_PID: Global<u64> = Global::new(0);
/// `task_struct.signal`.
#[unsafe(no_mangle)]
static OFF_TASK_SIGNAL: Global<u64> = Global::new(0);
/// `signal_struct.group_exit_code`.
#[unsafe(no_mangle)]
static OFF_SIGNAL_GROUP_EXIT_CODE: Global<u64> = Global::new(0);

/// The kernel only lets GPL-compatible programs call `bpf_probe_read_kernel`.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

// The symbol names above are the ABI the loader relies on: keep them in sync with turbo-common.
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}
const _: () = {
    assert!(same(turbo_common::MAP_EVENTS, "EVENTS"));
    assert!(same(turbo_common::MAP_WATCHED, "WATCHED"));
    assert!(same(turbo_common::MAP_LOST, "LOST"));
    assert!(same(
        turbo_common::PROG_SCHED_PROCESS_EXIT,
        "sched_process_exit"
    ));
    assert!(same(
        turbo_common::GLOBAL_OFF_TASK_EXIT_CODE,
        "OFF_TASK_EXIT_CODE"
    ));
    assert!(same(turbo_common::GLOBAL_OFF_TASK_TGID, "OFF_TASK_TGID"));
    assert!(same(turbo_common::GLOBAL_OFF_TASK_PID, "OFF_TASK_PID"));
    assert!(same(
        turbo_common::GLOBAL_OFF_TASK_SIGNAL,
        "OFF_TASK_SIGNAL"
    ));
    assert!(same(
        turbo_common::GLOBAL_OFF_SIGNAL_GROUP_EXIT_CODE,
        "OFF_SIGNAL_GROUP_EXIT_CODE"
    ));
};

/// `tp_btf/sched_process_exit`: see the module documentation.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    match try_sched_process_exit(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

/// Reads a `T` at `base + off` from kernel memory.
///
/// # Safety
///
/// `base` must be a kernel pointer; the read itself is checked by `bpf_probe_read_kernel`.
#[inline(always)]
unsafe fn read_at<T: Copy>(base: *const u8, off: u64) -> Result<T, i32> {
    // SAFETY: wrapping_add never dereferences; bpf_probe_read_kernel validates the address.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(off as usize).cast::<T>()) }
}

fn try_sched_process_exit(ctx: &BtfTracePointContext) -> Result<(), i32> {
    // bool widened to u64 by the tracepoint glue.
    let group_dead: u64 = ctx.arg(1);
    if group_dead & 0xff == 0 {
        return Ok(());
    }
    let off_tgid = OFF_TASK_TGID.load();
    if off_tgid == 0 {
        return Ok(()); // the loader did not configure us
    }
    let task: *const u8 = ctx.arg(0);
    // SAFETY: `task` is the tracepoint's `struct task_struct *`; offsets come from kernel BTF.
    let tgid: u32 = unsafe { read_at(task, off_tgid)? };
    if WATCHED.get_ptr(tgid).is_none() {
        return Ok(());
    }

    // SAFETY: as above.
    let pid: u32 = unsafe { read_at(task, OFF_TASK_PID.load()) }.unwrap_or(tgid);
    // SAFETY: as above.
    let exit_code: u32 = unsafe { read_at(task, OFF_TASK_EXIT_CODE.load()) }.unwrap_or(0);
    // SAFETY: as above; a failed read gives null, and then group_exit_code stays 0.
    let signal: *const u8 =
        unsafe { read_at(task, OFF_TASK_SIGNAL.load()) }.unwrap_or(core::ptr::null());
    let group_exit_code: u32 = if signal.is_null() {
        0
    } else {
        // SAFETY: `signal` is `task->signal`, a kernel pointer.
        unsafe { read_at(signal, OFF_SIGNAL_GROUP_EXIT_CODE.load()) }.unwrap_or(0)
    };

    let event = RawEvent {
        kind: EVENT_EXIT,
        tgid,
        pid,
        exit_code,
        group_exit_code,
        _pad: 0,
        // SAFETY: plain helper call without arguments.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
    };
    match EVENTS.reserve::<RawEvent>(0) {
        Some(mut entry) => {
            entry.write(event);
            entry.submit(0);
        }
        None => count_lost(),
    }
    // Always forget the tgid: it is dead and may be reused by an unrelated process.
    let _ = WATCHED.remove(tgid);
    Ok(())
}

fn count_lost() {
    if let Some(n) = LOST.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *n += 1 };
    }
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // Unreachable in a verified program (the verifier rejects unbounded loops); required by no_std.
    loop {}
}

/// Host builds only: this crate is meaningless outside the BPF target.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
