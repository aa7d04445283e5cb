//! eBPF programs of TurboProcess, built for `bpfel-unknown-none` by `turbo-daemon/build.rs`
//! (aya-build) and embedded in the daemon.
//!
//! # What it does
//!
//! Six `tp_btf` (BTF tracepoint) programs that report what happens to *supervised* process
//! trees into one ring buffer, [`EVENTS`]. Everything is filtered here, in the kernel: a thread
//! group is reported only when its tgid is in [`WATCHED`], which maps it to the app key the daemon
//! chose. All layouts are in `turbo-common`.
//!
//! * `sched_process_exit(task, group_dead)`: the last thread of a watched group exited. Reports
//!   `exit_code`, `signal->group_exit_code`, the resident pages still mapped and the peak of
//!   the current image (`mm->hiwater_rss` or the live counters, the kernel's own
//!   `get_mm_hiwater_rss`; not `signal->maxrss`, which also holds the pre-exec image: for a
//!   process posix_spawn'd with vfork that is the spawner's whole memory), then forgets the tgid in [`WATCHED`] and
//!   [`RSS_LIMITS`]. Runs in `do_exit()` before the address space is torn down and before the
//!   parent is notified, so this is earlier than `waitpid`/pidfd.
//! * `sched_process_fork(parent, child)`: a watched process created a new *process*
//!   (`child->pid == child->tgid`; new threads are ignored). The child is added to [`WATCHED`]
//!   with the parent's key *before* it first runs, so its own children (double forks, `setsid`
//!   daemons) are caught too. A process forked by a daemon thread listed in [`SPAWNERS`] (the
//!   daemon starting an app) is watched the same way with that thread's key, without an event:
//!   so an app is watched from its first instruction, however short its life.
//! * `sched_process_exec(task, old_pid, bprm)`: a watched process exec'd; reports
//!   `bprm->filename`, cut to `EXEC_FILENAME_LEN`.
//! * `mark_victim(task, uid)`: the OOM killer chose a watched process; reports its memory figures
//!   read from `task->mm` (0 where unreadable) and `oom_score_adj`.
//! * `signal_generate(sig, info, task, group, result)`: a signal in `SIGNAL_MASK` (every signal
//!   whose default action ends the process, real-time ones included, plus SIGSTOP and SIGCONT)
//!   was generated for a watched group; reports `si_code` and the sender (`current`'s tgid
//!   and comm). Ignored signals (but SIGCONT, which resumes before the kernel calls it
//!   ignored) and ones already pending are not reported.
//! * `rss_stat(mm, member)`: fires on every RSS counter update (about once per page fault,
//!   system-wide), so the daemon attaches it only while some limit is set. For a tgid in
//!   [`RSS_LIMITS`] it sums the file, anon and shmem counters of `mm` and reports only crossings:
//!   over when the sum reaches the limit, under when it falls below 7/8 of it (hysteresis).
//!
//! * `sched_wakeup(task)`, `sched_wakeup_new(task)` and `sched_switch(preempt, prev, next,
//!   prev_state)`: run-queue delay. A thread of a watched group that becomes runnable (woken, or
//!   switched out while still `TASK_RUNNING`) gets a timestamp in [`RUNQ_START`]; when it is
//!   switched in, the wait goes into its app's log2 histogram in [`RUNQ`] (per CPU, no event).
//!   A preempted thread stays queued whatever its state, so it counts as runnable too.
//!   A watched thread switched out while still runnable counts as an involuntary context switch
//!   (the kernel's `nivcsw`: a user-mode thread whose slice ended is switched out by `schedule()`
//!   with `preempt` false but state `TASK_RUNNING`).
//!   These fire on every wake-up and context switch of the system: for an unwatched thread the
//!   whole cost is one [`WATCHED`] lookup (wake-up) or two lookups (switch), with direct,
//!   verifier-checked loads rather than `bpf_probe_read_kernel`.
//!
//! * `inet_sock_set_state(sk, oldstate, newstate)`: the network view. A watched process that
//!   puts a TCP socket in LISTEN (the `listen()` call runs in its context) is reported and its
//!   port recorded in [`LISTENERS`]; the close of that very socket (LISTEN to CLOSE) is reported
//!   and the port forgotten. A watched process that sends a SYN (CLOSE to SYN_SENT, in its
//!   `connect()`) is reported with the peer. A connection established on a port in
//!   [`LISTENERS`] (SYN_RECV to ESTABLISHED, in softirq context: `current` is no one in
//!   particular, so the port is what says whose it is) is reported with the peer. Every other
//!   transition of the system costs two integer compares; the four above one hash lookup each
//!   before anything is read. Ports are those of the daemon's network namespace view: an app in
//!   its own namespace listening on a port another app also uses is attributed to whichever
//!   listened last.
//!
//! When the ring buffer is full an event is counted in [`LOST`] (one per-CPU slot) instead.
//!
//! # What it must not do
//!
//! Make decisions (that is the supervisor's job) or report anything about unwatched processes.
//! Nothing here may panic: every kernel read goes through `bpf_probe_read_kernel` and a failed
//! read ends the program quietly.
//!
//! Kernel struct field offsets are not compiled in (aya-ebpf has no CO-RE relocations): the
//! loader reads them from `/sys/kernel/btf/vmlinux` and patches the read-only globals `OFF_*`
//! before load. An offset left at 0 means "missing": the code needing it is skipped (the loader
//! does not attach a program whose required offsets are missing, and says why).
//!
//! # Minimum kernel
//!
//! Linux **5.8**: BTF tracepoints (`BPF_PROG_TYPE_TRACING` / `tp_btf`, 5.5), the BPF ring buffer
//! (5.8) and `bpf_probe_read_kernel` (5.5), with `CONFIG_DEBUG_INFO_BTF=y`
//! (`/sys/kernel/btf/vmlinux`). `rss_stat` with a `struct mm_struct *` argument needs 6.2
//! (percpu RSS counters). Needs CAP_BPF + CAP_PERFMON (or root); no tracefs.
//!
//! On the host (`cargo check --workspace`, clippy) this crate builds as an empty std binary so
//! the code is type-checked; only the BPF target gets `no_std`, `no_main` and the panic handler.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

use core::ptr::{addr_of_mut, null};

use aya_ebpf::{
    Global,
    cty::c_void,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        generated::bpf_probe_read_kernel_str,
    },
    macros::{btf_tracepoint, map},
    maps::{HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::BtfTracePointContext,
};
use turbo_common::{
    AF_INET, AF_INET6, COMM_LEN, EVENT_EXEC, EVENT_EXIT, EVENT_FORK, EVENT_NET_ACCEPT,
    EVENT_NET_CONNECT, EVENT_NET_LISTEN, EVENT_NET_UNLISTEN, EVENT_OOM_VICTIM, EVENT_RSS_OVER,
    EVENT_RSS_UNDER, EVENT_SIGNAL, EXEC_FILENAME_LEN, EventHeader, ExecEvent, ExitEvent,
    FORK_UNTRACKED, ForkEvent, Listener, MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS,
    NetEvent, OomEvent, RssEvent, RssLimit, RunqStats, SIGCONT, SignalEvent, TCP_CLOSE,
    TCP_ESTABLISHED, TCP_LISTEN, TCP_SYN_RECV, TCP_SYN_SENT, TRACE_SIGNAL_ALREADY_PENDING,
    TRACE_SIGNAL_IGNORED, listener_key, rss_is_under, runq_bucket, signal_bit,
};

/// Ring buffer read by the daemon (256 KiB: ~6.5k exit or fork events, ~880 exec events, in
/// flight at once). The daemon drains it on every wake-up, so it only has to hold what
/// happens while the daemon is not scheduled; its data pages are mapped twice into the daemon
/// (for wrap-around), so every KiB here is two KiB of the daemon's resident memory.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 << 10, 0);

/// Supervised thread-group ids and their app keys; see `turbo_common::MAP_WATCHED`.
#[map]
static WATCHED: HashMap<u32, u32> = HashMap::with_max_entries(32_768, 0);

/// Daemon threads starting an app's process, and the app key; see `turbo_common::MAP_SPAWNERS`.
#[map]
static SPAWNERS: HashMap<u32, u32> = HashMap::with_max_entries(64, 0);

/// Events dropped because [`EVENTS`] was full (slot 0, per CPU).
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Resident-memory limits by tgid, and whether each is currently over; see `rss_stat`.
#[map]
static RSS_LIMITS: HashMap<u32, RssLimit> = HashMap::with_max_entries(4_096, 0);

/// Run-queue delay and involuntary switches per app key; see `turbo_common::MAP_RUNQ`.
#[map]
static RUNQ: PerCpuHashMap<u32, RunqStats> = PerCpuHashMap::with_max_entries(1_024, 0);

/// When each watched thread became runnable; see `turbo_common::MAP_RUNQ_START`. LRU: a thread
/// that exits while runnable leaves an entry nobody consumes.
#[map]
static RUNQ_START: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16_384, 0);

/// Ports watched apps listen on; see `turbo_common::MAP_LISTENERS`.
#[map]
static LISTENERS: HashMap<u32, Listener> = HashMap::with_max_entries(4_096, 0);

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
/// `task_struct.mm`.
#[unsafe(no_mangle)]
static OFF_TASK_MM: Global<u64> = Global::new(0);
/// `task_struct.comm`.
#[unsafe(no_mangle)]
static OFF_TASK_COMM: Global<u64> = Global::new(0);
/// `signal_struct.group_exit_code`.
#[unsafe(no_mangle)]
static OFF_SIGNAL_GROUP_EXIT_CODE: Global<u64> = Global::new(0);
/// `mm_struct.hiwater_rss`.
#[unsafe(no_mangle)]
static OFF_MM_HIWATER_RSS: Global<u64> = Global::new(0);
/// `signal_struct.oom_score_adj`.
#[unsafe(no_mangle)]
static OFF_SIGNAL_OOM_SCORE_ADJ: Global<u64> = Global::new(0);
/// `mm_struct.owner`.
#[unsafe(no_mangle)]
static OFF_MM_OWNER: Global<u64> = Global::new(0);
/// `mm_struct.rss_stat`.
#[unsafe(no_mangle)]
static OFF_MM_RSS_STAT: Global<u64> = Global::new(0);
/// `mm_struct.total_vm`.
#[unsafe(no_mangle)]
static OFF_MM_TOTAL_VM: Global<u64> = Global::new(0);
/// `sizeof(struct percpu_counter)`.
#[unsafe(no_mangle)]
static SIZE_PERCPU_COUNTER: Global<u64> = Global::new(0);
/// `percpu_counter.count`.
#[unsafe(no_mangle)]
static OFF_PERCPU_COUNTER_COUNT: Global<u64> = Global::new(0);
/// `linux_binprm.filename`.
#[unsafe(no_mangle)]
static OFF_BINPRM_FILENAME: Global<u64> = Global::new(0);
/// `kernel_siginfo.si_code`.
#[unsafe(no_mangle)]
static OFF_SIGINFO_CODE: Global<u64> = Global::new(0);
/// `sock_common.skc_family`.
#[unsafe(no_mangle)]
static OFF_SKC_FAMILY: Global<u64> = Global::new(0);
/// `sock_common.skc_num`.
#[unsafe(no_mangle)]
static OFF_SKC_NUM: Global<u64> = Global::new(0);
/// `sock_common.skc_dport`.
#[unsafe(no_mangle)]
static OFF_SKC_DPORT: Global<u64> = Global::new(0);
/// `sock_common.skc_daddr` plus one (it is at offset 0; 0 means missing).
#[unsafe(no_mangle)]
static OFF_SKC_DADDR_PLUS1: Global<u64> = Global::new(0);
/// `sock_common.skc_rcv_saddr`.
#[unsafe(no_mangle)]
static OFF_SKC_RCV_SADDR: Global<u64> = Global::new(0);
/// `sock_common.skc_v6_daddr`.
#[unsafe(no_mangle)]
static OFF_SKC_V6_DADDR: Global<u64> = Global::new(0);
/// `sock_common.skc_v6_rcv_saddr`.
#[unsafe(no_mangle)]
static OFF_SKC_V6_RCV_SADDR: Global<u64> = Global::new(0);
/// Signals reported by `signal_generate` (bit n - 1 = signal n).
#[unsafe(no_mangle)]
static SIGNAL_MASK: Global<u64> = Global::new(0);

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
    use turbo_common as abi;
    assert!(same(abi::MAP_EVENTS, "EVENTS"));
    assert!(same(abi::MAP_WATCHED, "WATCHED"));
    assert!(same(abi::MAP_LOST, "LOST"));
    assert!(same(abi::MAP_RSS_LIMITS, "RSS_LIMITS"));
    assert!(same(abi::MAP_SPAWNERS, "SPAWNERS"));
    assert!(same(abi::GLOBAL_OFF_MM_HIWATER_RSS, "OFF_MM_HIWATER_RSS"));
    assert!(same(abi::PROG_SCHED_PROCESS_EXIT, "sched_process_exit"));
    assert!(same(abi::PROG_SCHED_PROCESS_FORK, "sched_process_fork"));
    assert!(same(abi::PROG_SCHED_PROCESS_EXEC, "sched_process_exec"));
    assert!(same(abi::PROG_MARK_VICTIM, "mark_victim"));
    assert!(same(abi::PROG_SIGNAL_GENERATE, "signal_generate"));
    assert!(same(abi::PROG_RSS_STAT, "rss_stat"));
    assert!(same(abi::MAP_RUNQ, "RUNQ"));
    assert!(same(abi::MAP_RUNQ_START, "RUNQ_START"));
    assert!(same(abi::PROG_SCHED_WAKEUP, "sched_wakeup"));
    assert!(same(abi::PROG_SCHED_WAKEUP_NEW, "sched_wakeup_new"));
    assert!(same(abi::PROG_SCHED_SWITCH, "sched_switch"));
    assert!(same(abi::GLOBAL_OFF_TASK_EXIT_CODE, "OFF_TASK_EXIT_CODE"));
    assert!(same(abi::GLOBAL_OFF_TASK_TGID, "OFF_TASK_TGID"));
    assert!(same(abi::GLOBAL_OFF_TASK_PID, "OFF_TASK_PID"));
    assert!(same(abi::GLOBAL_OFF_TASK_SIGNAL, "OFF_TASK_SIGNAL"));
    assert!(same(abi::GLOBAL_OFF_TASK_MM, "OFF_TASK_MM"));
    assert!(same(abi::GLOBAL_OFF_TASK_COMM, "OFF_TASK_COMM"));
    assert!(same(
        abi::GLOBAL_OFF_SIGNAL_GROUP_EXIT_CODE,
        "OFF_SIGNAL_GROUP_EXIT_CODE"
    ));
    assert!(same(
        abi::GLOBAL_OFF_SIGNAL_OOM_SCORE_ADJ,
        "OFF_SIGNAL_OOM_SCORE_ADJ"
    ));
    assert!(same(abi::GLOBAL_OFF_MM_OWNER, "OFF_MM_OWNER"));
    assert!(same(abi::GLOBAL_OFF_MM_RSS_STAT, "OFF_MM_RSS_STAT"));
    assert!(same(abi::GLOBAL_OFF_MM_TOTAL_VM, "OFF_MM_TOTAL_VM"));
    assert!(same(abi::GLOBAL_SIZE_PERCPU_COUNTER, "SIZE_PERCPU_COUNTER"));
    assert!(same(
        abi::GLOBAL_OFF_PERCPU_COUNTER_COUNT,
        "OFF_PERCPU_COUNTER_COUNT"
    ));
    assert!(same(abi::GLOBAL_OFF_BINPRM_FILENAME, "OFF_BINPRM_FILENAME"));
    assert!(same(abi::GLOBAL_OFF_SIGINFO_CODE, "OFF_SIGINFO_CODE"));
    assert!(same(abi::GLOBAL_SIGNAL_MASK, "SIGNAL_MASK"));
    assert!(same(abi::MAP_LISTENERS, "LISTENERS"));
    assert!(same(abi::PROG_INET_SOCK_SET_STATE, "inet_sock_set_state"));
    assert!(same(abi::GLOBAL_OFF_SKC_FAMILY, "OFF_SKC_FAMILY"));
    assert!(same(abi::GLOBAL_OFF_SKC_NUM, "OFF_SKC_NUM"));
    assert!(same(abi::GLOBAL_OFF_SKC_DPORT, "OFF_SKC_DPORT"));
    assert!(same(abi::GLOBAL_OFF_SKC_DADDR_PLUS1, "OFF_SKC_DADDR_PLUS1"));
    assert!(same(abi::GLOBAL_OFF_SKC_RCV_SADDR, "OFF_SKC_RCV_SADDR"));
    assert!(same(abi::GLOBAL_OFF_SKC_V6_DADDR, "OFF_SKC_V6_DADDR"));
    assert!(same(
        abi::GLOBAL_OFF_SKC_V6_RCV_SADDR,
        "OFF_SKC_V6_RCV_SADDR"
    ));
};

/// `tp_btf/sched_process_exit`: see the module documentation.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    let _ = try_sched_process_exit(&ctx);
    0
}

/// `tp_btf/sched_process_fork`: see the module documentation.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    let _ = try_sched_process_fork(&ctx);
    0
}

/// `tp_btf/sched_process_exec`: see the module documentation.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    let _ = try_sched_process_exec(&ctx);
    0
}

/// `tp_btf/mark_victim`: see the module documentation.
#[btf_tracepoint(function = "mark_victim")]
pub fn mark_victim(ctx: BtfTracePointContext) -> i32 {
    let _ = try_mark_victim(&ctx);
    0
}

/// `tp_btf/signal_generate`: see the module documentation.
#[btf_tracepoint(function = "signal_generate")]
pub fn signal_generate(ctx: BtfTracePointContext) -> i32 {
    let _ = try_signal_generate(&ctx);
    0
}

/// `tp_btf/rss_stat`: see the module documentation.
#[btf_tracepoint(function = "rss_stat")]
pub fn rss_stat(ctx: BtfTracePointContext) -> i32 {
    let _ = try_rss_stat(&ctx);
    0
}

/// `tp_btf/sched_wakeup`: see the module documentation.
#[btf_tracepoint(function = "sched_wakeup")]
pub fn sched_wakeup(ctx: BtfTracePointContext) -> i32 {
    runnable(ctx.arg(0), now());
    0
}

/// `tp_btf/sched_wakeup_new`: see the module documentation.
#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn sched_wakeup_new(ctx: BtfTracePointContext) -> i32 {
    runnable(ctx.arg(0), now());
    0
}

/// `tp_btf/sched_switch`: see the module documentation.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    try_sched_switch(&ctx);
    0
}

/// `tp_btf/inet_sock_set_state`: see the module documentation.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: BtfTracePointContext) -> i32 {
    try_inet_sock_set_state(&ctx);
    0
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

/// `task->tgid`, or an error when the loader did not configure the offset or the read failed.
#[inline(always)]
fn tgid_of(task: *const u8) -> Result<u32, i32> {
    let off = OFF_TASK_TGID.load();
    if off == 0 {
        return Err(0);
    }
    // SAFETY: `task` is a `struct task_struct *` tracepoint argument; the offset is from BTF.
    unsafe { read_at(task, off) }
}

/// `task->pid` (the thread id), `fallback` when unreadable.
#[inline(always)]
fn pid_of(task: *const u8, fallback: u32) -> u32 {
    // SAFETY: as in `tgid_of`.
    unsafe { read_at(task, OFF_TASK_PID.load()) }.unwrap_or(fallback)
}

/// The app key of a watched tgid.
#[inline(always)]
fn watched_key(tgid: u32) -> Option<u32> {
    // SAFETY: a map value pointer returned by the kernel is valid for the program's run; the
    // value is a plain u32 (a torn read is impossible for an aligned 4-byte load).
    WATCHED.get_ptr(tgid).map(|p| unsafe { *p })
}

#[inline(always)]
fn header(kind: u32, tgid: u32, pid: u32, key: u32) -> EventHeader {
    EventHeader {
        kind,
        tgid,
        pid,
        key,
        // SAFETY: plain helper call without arguments.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
    }
}

/// Writes one fixed-size event into the ring buffer, or counts it as lost.
#[inline(always)]
fn emit<T: 'static>(event: T) {
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(event);
            entry.submit(0);
        }
        None => count_lost(),
    }
}

fn count_lost() {
    if let Some(n) = LOST.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *n += 1 };
    }
}

fn try_sched_process_exit(ctx: &BtfTracePointContext) -> Result<(), i32> {
    // bool widened to u64 by the tracepoint glue.
    let group_dead: u64 = ctx.arg(1);
    if group_dead & 0xff == 0 {
        return Ok(());
    }
    let task: *const u8 = ctx.arg(0);
    let tgid = tgid_of(task)?;
    // A limit never outlives its process (the tgid may be reused by an unrelated one).
    let _ = RSS_LIMITS.remove(tgid);
    let Some(key) = watched_key(tgid) else {
        return Ok(());
    };

    let pid = pid_of(task, tgid);
    // SAFETY: `task` is the tracepoint's `struct task_struct *`; offsets come from kernel BTF.
    let exit_code: u32 = unsafe { read_at(task, OFF_TASK_EXIT_CODE.load()) }.unwrap_or(0);
    // SAFETY: as above; a failed read gives null, and then group_exit_code stays 0.
    let signal: *const u8 = unsafe { read_at(task, OFF_TASK_SIGNAL.load()) }.unwrap_or(null());
    let off_group = OFF_SIGNAL_GROUP_EXIT_CODE.load();
    let group_exit_code: u32 = if signal.is_null() || off_group == 0 {
        0
    } else {
        // SAFETY: `signal` is `task->signal`, a kernel pointer.
        unsafe { read_at(signal, off_group) }.unwrap_or(0)
    };
    // The address space is still mapped here (exit_mm comes after this tracepoint).
    let mm = mm_of(task);
    let rss_pages =
        mm_counter(mm, MM_FILEPAGES) + mm_counter(mm, MM_ANONPAGES) + mm_counter(mm, MM_SHMEMPAGES);
    let off_hiwater = OFF_MM_HIWATER_RSS.load();
    let hiwater: u64 = if mm.is_null() || off_hiwater == 0 {
        0
    } else {
        // SAFETY: `mm` is `task->mm`, a kernel pointer.
        unsafe { read_at(mm, off_hiwater) }.unwrap_or(0)
    };
    let peak_rss_pages = max(hiwater, rss_pages);

    emit(ExitEvent {
        hdr: header(EVENT_EXIT, tgid, pid, key),
        exit_code,
        group_exit_code,
        rss_pages,
        peak_rss_pages,
    });
    // Always forget the tgid: it is dead and may be reused by an unrelated process.
    let _ = WATCHED.remove(tgid);
    Ok(())
}

fn try_sched_process_fork(ctx: &BtfTracePointContext) -> Result<(), i32> {
    let parent: *const u8 = ctx.arg(0);
    let parent_tgid = tgid_of(parent)?;
    let Some(key) = watched_key(parent_tgid) else {
        return spawned(parent, ctx.arg(1));
    };
    let child: *const u8 = ctx.arg(1);
    let child_tgid = tgid_of(child)?;
    let child_pid = pid_of(child, 0);
    if child_pid != child_tgid {
        return Ok(()); // a new thread of an existing process
    }
    // Watched before it first runs (the hook fires before wake_up_new_task), so nothing it does
    // can be missed; done before the event so the daemon never sees an unwatched child.
    let flags = match WATCHED.insert(child_tgid, key, 0) {
        Ok(()) => 0,
        Err(_) => FORK_UNTRACKED,
    };
    emit(ForkEvent {
        hdr: header(EVENT_FORK, child_tgid, child_pid, key),
        parent_tgid,
        flags,
    });
    Ok(())
}

/// A process forked by a daemon thread listed in [`SPAWNERS`]: watched with that thread's key
/// before it runs, and not reported (the daemon learns its pid from the spawn itself).
#[inline(always)]
fn spawned(parent: *const u8, child: *const u8) -> Result<(), i32> {
    // SPAWNERS is empty except during a spawn: this lookup is the whole cost for every other
    // fork in the system.
    let Some(key) = SPAWNERS.get_ptr(pid_of(parent, 0)) else {
        return Ok(());
    };
    // SAFETY: a map value pointer is valid for the program's run; a plain aligned u32.
    let key = unsafe { *key };
    let child_tgid = tgid_of(child)?;
    if pid_of(child, 0) != child_tgid {
        return Ok(()); // a thread of the daemon, not the app
    }
    WATCHED.insert(child_tgid, key, 0).map_err(|e| e as i32)
}

#[inline(always)]
const fn max(a: u64, b: u64) -> u64 {
    if a > b { a } else { b }
}

/// `task->mm`, null when unreadable (kernel threads, or the offset is missing).
#[inline(always)]
fn mm_of(task: *const u8) -> *const u8 {
    let off_mm = OFF_TASK_MM.load();
    if off_mm == 0 {
        return null();
    }
    // SAFETY: `task` is a `struct task_struct *`; the offset is from BTF.
    unsafe { read_at(task, off_mm) }.unwrap_or(null())
}

fn try_sched_process_exec(ctx: &BtfTracePointContext) -> Result<(), i32> {
    let task: *const u8 = ctx.arg(0);
    let tgid = tgid_of(task)?;
    let Some(key) = watched_key(tgid) else {
        return Ok(());
    };
    let old_pid: u32 = ctx.arg(1);
    let bprm: *const u8 = ctx.arg(2);
    let pid = pid_of(task, tgid);
    let off_filename = OFF_BINPRM_FILENAME.load();
    let filename: *const u8 = if off_filename == 0 {
        null()
    } else {
        // SAFETY: `bprm` is the tracepoint's `struct linux_binprm *`; the offset is from BTF.
        unsafe { read_at(bprm, off_filename) }.unwrap_or(null())
    };

    // The record is filled in place: 288 bytes would crowd the 512-byte BPF stack.
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        count_lost();
        return Ok(());
    };
    let p = entry.as_mut_ptr();
    // SAFETY: `p` points to a reserved ring-buffer record of size_of::<ExecEvent>() bytes; every
    // field is written through raw pointers (no reference to uninitialised memory is made), and
    // bpf_probe_read_kernel_str writes at most EXEC_FILENAME_LEN bytes into `filename`.
    unsafe {
        addr_of_mut!((*p).hdr).write(header(EVENT_EXEC, tgid, pid, key));
        addr_of_mut!((*p).old_pid).write(old_pid);
        let dst = addr_of_mut!((*p).filename).cast::<u8>();
        let copied = if filename.is_null() {
            -1
        } else {
            bpf_probe_read_kernel_str(
                dst.cast::<c_void>(),
                EXEC_FILENAME_LEN as u32,
                filename.cast::<c_void>(),
            )
        };
        // The helper's result counts the NUL; on failure it leaves an empty string.
        let len = if copied > 0 { (copied - 1) as u32 } else { 0 };
        if copied <= 0 {
            dst.write(0);
        }
        addr_of_mut!((*p).filename_len).write(len);
    }
    entry.submit(0);
    Ok(())
}

/// `mm->rss_stat[member].count` in pages (negative transients of the percpu counter read as 0).
#[inline(always)]
fn mm_counter(mm: *const u8, member: u64) -> u64 {
    let (base, size, count) = (
        OFF_MM_RSS_STAT.load(),
        SIZE_PERCPU_COUNTER.load(),
        OFF_PERCPU_COUNTER_COUNT.load(),
    );
    if base == 0 || size == 0 || mm.is_null() {
        return 0;
    }
    // SAFETY: `mm` is a `struct mm_struct *`; offsets and the array stride come from BTF and
    // the loader checked the array has NR_MM_COUNTERS elements.
    let pages: i64 = unsafe { read_at(mm, base + member * size + count) }.unwrap_or(0);
    if pages > 0 { pages as u64 } else { 0 }
}

fn try_mark_victim(ctx: &BtfTracePointContext) -> Result<(), i32> {
    let task: *const u8 = ctx.arg(0);
    let tgid = tgid_of(task)?;
    let Some(key) = watched_key(tgid) else {
        return Ok(());
    };
    let uid: u32 = ctx.arg(1);
    let pid = pid_of(task, tgid);
    let mm = mm_of(task);
    let off_total_vm = OFF_MM_TOTAL_VM.load();
    let total_vm_pages: u64 = if mm.is_null() || off_total_vm == 0 {
        0
    } else {
        // SAFETY: `mm` is `task->mm`, a kernel pointer.
        unsafe { read_at(mm, off_total_vm) }.unwrap_or(0)
    };
    let off_adj = OFF_SIGNAL_OOM_SCORE_ADJ.load();
    let signal: *const u8 = if off_adj == 0 {
        null()
    } else {
        // SAFETY: as above.
        unsafe { read_at(task, OFF_TASK_SIGNAL.load()) }.unwrap_or(null())
    };
    let oom_score_adj: i16 = if signal.is_null() {
        0
    } else {
        // SAFETY: `signal` is `task->signal`, a kernel pointer.
        unsafe { read_at(signal, off_adj) }.unwrap_or(0)
    };
    let off_comm = OFF_TASK_COMM.load();
    let comm: [u8; COMM_LEN] = if off_comm == 0 {
        [0; COMM_LEN]
    } else {
        // SAFETY: as above.
        unsafe { read_at(task, off_comm) }.unwrap_or([0; COMM_LEN])
    };
    emit(OomEvent {
        hdr: header(EVENT_OOM_VICTIM, tgid, pid, key),
        total_vm_pages,
        anon_pages: mm_counter(mm, MM_ANONPAGES),
        file_pages: mm_counter(mm, MM_FILEPAGES),
        shmem_pages: mm_counter(mm, MM_SHMEMPAGES),
        oom_score_adj: i32::from(oom_score_adj),
        uid,
        comm,
    });
    Ok(())
}

fn try_signal_generate(ctx: &BtfTracePointContext) -> Result<(), i32> {
    let sig: u32 = ctx.arg(0);
    if SIGNAL_MASK.load() & signal_bit(sig) == 0 {
        return Ok(());
    }
    let result: i32 = ctx.arg(4);
    // SIGCONT without a handler counts as ignored, yet it did its work (the kernel resumes the
    // process before it decides that): it is reported all the same
    if (result == TRACE_SIGNAL_IGNORED && sig != SIGCONT) || result == TRACE_SIGNAL_ALREADY_PENDING
    {
        return Ok(());
    }
    let task: *const u8 = ctx.arg(2);
    let tgid = tgid_of(task)?;
    let Some(key) = watched_key(tgid) else {
        return Ok(());
    };
    let info: *const u8 = ctx.arg(1);
    // SEND_SIG_NOINFO (0) and SEND_SIG_PRIV (1) are not pointers: the kernel's own tracepoint
    // turns them into SI_USER and SI_KERNEL.
    let off_code = OFF_SIGINFO_CODE.load();
    let code: i32 = match info as usize {
        0 => 0,
        1 => 0x80,
        // SAFETY: `info` is the tracepoint's `struct kernel_siginfo *`; offset from BTF.
        _ if off_code != 0 => unsafe { read_at(info, off_code) }.unwrap_or(0),
        _ => 0,
    };
    let group: i32 = ctx.arg(3);
    let current = bpf_get_current_pid_tgid();
    emit(SignalEvent {
        hdr: header(EVENT_SIGNAL, tgid, pid_of(task, tgid), key),
        sig,
        code,
        sender_tgid: (current >> 32) as u32,
        sender_pid: current as u32,
        result,
        group: u32::from(group != 0),
        sender_comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    });
    Ok(())
}

fn try_rss_stat(ctx: &BtfTracePointContext) -> Result<(), i32> {
    // Hot path (every page fault in the system while attached): bail out as early as possible.
    let member: u32 = ctx.arg(1);
    if u64::from(member) == MM_SWAPENTS {
        return Ok(());
    }
    let off_owner = OFF_MM_OWNER.load();
    if off_owner == 0 {
        return Ok(());
    }
    let off_tgid = OFF_TASK_TGID.load();
    let mm: *const u8 = ctx.arg(0);
    // `mm->owner` is the thread group that owns the address space (NULL only during exit);
    // unlike `current` it is right for updates made on behalf of another process.
    // Direct loads, not bpf_probe_read_kernel: this runs on every page fault. The verifier
    // accepts them because `mm` is a BTF-typed tracepoint argument and the offsets are
    // constants (frozen .rodata): it checks them against the kernel's BTF and makes them
    // fault-safe.
    // SAFETY: `mm` is the tracepoint's `struct mm_struct *`; the offset is from BTF.
    let owner: *const u8 =
        unsafe { core::ptr::read_volatile(mm.wrapping_add(off_owner as usize).cast()) };
    if owner.is_null() {
        return Ok(());
    }
    // SAFETY: `owner` is `mm->owner`, a `struct task_struct *`; the offset is from BTF.
    let tgid: u32 =
        unsafe { core::ptr::read_volatile(owner.wrapping_add(off_tgid as usize).cast()) };
    let Some(state) = RSS_LIMITS.get_ptr_mut(tgid) else {
        return Ok(());
    };
    let rss =
        mm_counter(mm, MM_FILEPAGES) + mm_counter(mm, MM_ANONPAGES) + mm_counter(mm, MM_SHMEMPAGES);
    // SAFETY: a map value pointer is valid for the program's run. Threads of one process may
    // race on `over` (non-atomic read-modify-write): at worst a crossing is reported twice,
    // which the daemon tolerates.
    let (limit, over) = unsafe { ((*state).limit_pages, (*state).over) };
    let kind = if over == 0 && rss >= limit {
        // SAFETY: as above.
        unsafe { (*state).over = 1 };
        EVENT_RSS_OVER
    } else if over != 0 && rss_is_under(rss, limit) {
        // SAFETY: as above.
        unsafe { (*state).over = 0 };
        EVENT_RSS_UNDER
    } else {
        return Ok(());
    };
    let key = watched_key(tgid).unwrap_or(0);
    emit(RssEvent {
        hdr: header(kind, tgid, tgid, key),
        rss_pages: rss,
        limit_pages: limit,
    });
    Ok(())
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: plain helper call without arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// `(task->pid, task->tgid)` by direct loads (hot path: every wake-up and context switch). The
/// verifier accepts them because `task` is a BTF-typed tracepoint argument and the offsets are
/// frozen constants; `None` when the loader had no offsets.
#[inline(always)]
fn ids_fast(task: *const u8) -> Option<(u32, u32)> {
    let (off_pid, off_tgid) = (OFF_TASK_PID.load(), OFF_TASK_TGID.load());
    if off_pid == 0 || off_tgid == 0 || task.is_null() {
        return None;
    }
    // SAFETY: `task` is the tracepoint's `struct task_struct *`; offsets are from BTF.
    unsafe {
        Some((
            core::ptr::read_volatile(task.wrapping_add(off_pid as usize).cast()),
            core::ptr::read_volatile(task.wrapping_add(off_tgid as usize).cast()),
        ))
    }
}

/// A thread became runnable: start its run-queue clock if its group is watched. Returns the app
/// key when it is.
#[inline(always)]
fn runnable(task: *const u8, at: u64) -> Option<u32> {
    let (pid, tgid) = ids_fast(task)?;
    let key = watched_key(tgid)?;
    let _ = RUNQ_START.insert(pid, at, 0);
    Some(key)
}

/// This CPU's stats of app `key`, created on first use.
#[inline(always)]
fn runq_stats(key: u32) -> Option<*mut RunqStats> {
    if let Some(p) = RUNQ.get_ptr_mut(key) {
        return Some(p);
    }
    /// `BPF_NOEXIST`: another CPU may create it first; either way it exists afterwards.
    const NOEXIST: u64 = 1;
    let _ = RUNQ.insert(key, RunqStats::default(), NOEXIST);
    RUNQ.get_ptr_mut(key)
}

fn try_sched_switch(ctx: &BtfTracePointContext) {
    let at = now();
    // bool widened to u64 by the tracepoint glue, as is the unsigned int state.
    let preempt: u64 = ctx.arg(0);
    let prev_state: u64 = ctx.arg(3);
    // Preempted in the kernel (whatever its state: it stays queued) or still TASK_RUNNING (0:
    // its time slice ended, or it yielded): back on the run queue, and an involuntary switch in
    // the kernel's own sense (`nivcsw`).
    if (preempt & 0xff != 0 || prev_state & 0xffff_ffff == 0)
        && let Some(key) = runnable(ctx.arg(1), at)
        && let Some(stats) = runq_stats(key)
    {
        // SAFETY: a per-CPU map value, only written by this CPU while the program runs.
        unsafe { (*stats).involuntary += 1 };
    }

    let Some((pid, tgid)) = ids_fast(ctx.arg(2)) else {
        return;
    };
    if pid == 0 {
        return; // the idle task
    }
    let Some(key) = watched_key(tgid) else {
        return;
    };
    let Some(start) = RUNQ_START.get_ptr(pid) else {
        return;
    };
    // SAFETY: a map value pointer is valid for the program's run; an aligned u64.
    let delay = at.saturating_sub(unsafe { *start });
    let _ = RUNQ_START.remove(pid);
    let Some(stats) = runq_stats(key) else {
        return;
    };
    // SAFETY: as above (per-CPU value); the index is bounds-checked by `get_mut`.
    unsafe {
        if let Some(b) = (*stats).buckets.get_mut(runq_bucket(delay)) {
            *b += 1;
        }
        (*stats).count += 1;
        (*stats).sum_ns += delay;
    }
}

fn try_inet_sock_set_state(ctx: &BtfTracePointContext) {
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    let sk: *const u8 = ctx.arg(0);
    match (old, new) {
        (_, TCP_LISTEN) | (TCP_CLOSE, TCP_SYN_SENT) => {
            let current = bpf_get_current_pid_tgid();
            let tgid = (current >> 32) as u32;
            let Some(key) = watched_key(tgid) else {
                return;
            };
            let Some(mut ev) = net_event(sk) else {
                return;
            };
            ev.hdr = header(EVENT_NET_CONNECT, tgid, current as u32, key);
            if new == TCP_LISTEN {
                ev.hdr.kind = EVENT_NET_LISTEN;
                ev.remote_port = 0;
                ev.remote_addr = [0; 16];
                let value = Listener {
                    key,
                    _pad: 0,
                    sk: sk as u64,
                };
                let _ = LISTENERS.insert(listener_key(ev.family, ev.local_port), value, 0);
            }
            emit(ev);
        }
        (TCP_SYN_RECV, TCP_ESTABLISHED) | (TCP_LISTEN, TCP_CLOSE) => {
            let Some((family, port)) = local_port(sk) else {
                return;
            };
            let lkey = listener_key(family, port);
            let Some(entry) = LISTENERS.get_ptr(lkey) else {
                return;
            };
            // SAFETY: a map value pointer is valid for the program's run; plain integers.
            let (key, owner) = unsafe { ((*entry).key, (*entry).sk) };
            let kind = if new == TCP_ESTABLISHED {
                EVENT_NET_ACCEPT
            } else if owner == sk as u64 {
                let _ = LISTENERS.remove(lkey);
                EVENT_NET_UNLISTEN
            } else {
                return; // another socket on that port (or one the daemon holds)
            };
            let Some(mut ev) = net_event(sk) else {
                return;
            };
            ev.hdr = header(kind, 0, 0, key);
            emit(ev);
        }
        _ => {}
    }
}

/// `(family, local port)` of a TCP socket by direct loads; `None` for other families.
#[inline(always)]
fn local_port(sk: *const u8) -> Option<(u16, u16)> {
    let (off_family, off_num) = (OFF_SKC_FAMILY.load(), OFF_SKC_NUM.load());
    if off_family == 0 || off_num == 0 || sk.is_null() {
        return None;
    }
    // SAFETY: `sk` is the tracepoint's `struct sock *`; offsets are from BTF (frozen).
    let (family, port): (u16, u16) = unsafe {
        (
            core::ptr::read_volatile(sk.wrapping_add(off_family as usize).cast()),
            core::ptr::read_volatile(sk.wrapping_add(off_num as usize).cast()),
        )
    };
    (family == AF_INET || family == AF_INET6).then_some((family, port))
}

/// The addresses and ports of `sk` (header left to the caller).
#[inline(always)]
fn net_event(sk: *const u8) -> Option<NetEvent> {
    let (family, local_port) = local_port(sk)?;
    let mut ev = NetEvent {
        family,
        local_port,
        ..NetEvent::default()
    };
    // SAFETY (all reads): `sk` is a `struct sock *`; offsets are from BTF; failed reads leave
    // zeros.
    let dport: u16 = unsafe { read_at(sk, OFF_SKC_DPORT.load()) }.unwrap_or(0);
    ev.remote_port = u16::from_be(dport);
    if family == AF_INET {
        let daddr = OFF_SKC_DADDR_PLUS1.load().wrapping_sub(1);
        let remote: [u8; 4] = unsafe { read_at(sk, daddr) }.unwrap_or([0; 4]);
        let local: [u8; 4] = unsafe { read_at(sk, OFF_SKC_RCV_SADDR.load()) }.unwrap_or([0; 4]);
        ev.remote_addr[..4].copy_from_slice(&remote);
        ev.local_addr[..4].copy_from_slice(&local);
    } else {
        ev.remote_addr = unsafe { read_at(sk, OFF_SKC_V6_DADDR.load()) }.unwrap_or([0; 16]);
        ev.local_addr = unsafe { read_at(sk, OFF_SKC_V6_RCV_SADDR.load()) }.unwrap_or([0; 16]);
    }
    Some(ev)
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
