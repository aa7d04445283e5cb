//! The ABI between the eBPF programs (`turbo-ebpf`) and the daemon (`turbo-daemon`).
//!
//! Everything both sides must agree on lives here and nowhere else: event layouts, map names and
//! value layouts, program names, the names of load-time globals. Only fixed-width integers and
//! byte arrays (no `bool`, no enums) so the layout is the same for `bpfel-unknown-none` and
//! x86_64, with explicit padding and size assertions.
//!
//! This crate must not contain logic beyond the pure helpers both sides must compute the same
//! way ([`ExitEvent::wait_status`], [`rss_is_under`], [`runq_bucket`]): decoding lives in the
//! daemon's event source, filtering in the programs.
//!
//! # Events
//!
//! Every ring-buffer record starts with an [`EventHeader`]; its `kind` (one of the `EVENT_*`
//! constants) says which struct the whole record is. Records have different sizes, so a reader
//! checks the length against the kind's struct before reading it. Memory figures are in **pages**
//! (the kernel's unit); the daemon converts them with its page size.
#![no_std]

/// Ring buffer all programs write events into.
pub const MAP_EVENTS: &str = "EVENTS";
/// `HashMap<u32 tgid, u32 key>` of supervised thread groups and the app key each belongs to.
/// Written by the daemon for the processes it starts; the fork program adds new child processes
/// of watched ones with the parent's key; the exit program removes dead ones.
pub const MAP_WATCHED: &str = "WATCHED";
/// `PerCpuArray<u64>` with one slot: events dropped because [`MAP_EVENTS`] was full.
pub const MAP_LOST: &str = "LOST";
/// `HashMap<u32 tgid, RssLimit>`: resident-memory limits, written by the daemon, crossing state
/// kept by the `rss_stat` program, entries removed by the exit program.
pub const MAP_RSS_LIMITS: &str = "RSS_LIMITS";

/// `HashMap<u32 tid, u32 key>`: threads of the daemon that are starting an app's process right
/// now. The fork program watches every new process such a thread forks (posix_spawn's vfork or
/// a plain fork) with the key, before the child runs its first instruction; no fork event is
/// sent for it (the daemon knows its own child). Written and cleared by the daemon around each
/// spawn.
pub const MAP_SPAWNERS: &str = "SPAWNERS";

/// `PerCpuHashMap<u32 key, RunqStats>`: run-queue delay histogram and involuntary context
/// switches of each app (by key), summed by the daemon over the CPUs. Written only by the
/// scheduler programs, for threads of watched thread groups.
pub const MAP_RUNQ: &str = "RUNQ";
/// `LruHashMap<u32 tid, u64 ktime_ns>`: when each thread of a watched group became runnable
/// (woken, or preempted while runnable); consumed when it gets a CPU.
pub const MAP_RUNQ_START: &str = "RUNQ_START";
/// `HashMap<u32 (family << 16 | port), Listener>`: TCP ports watched apps listen on, so that
/// connections accepted on them (established in softirq context, where `current` is no one in
/// particular) are attributed to the app. Written by `inet_sock_set_state` when a watched process
/// calls `listen()` and when that socket closes; the daemon adds the `listen:` sockets it holds
/// for apps itself (`sk` 0, never removed by the kernel).
pub const MAP_LISTENERS: &str = "LISTENERS";

/// Program names in the object (the Rust function names in `turbo-ebpf`); each attaches to the
/// BTF tracepoint of the same name.
pub const PROG_SCHED_PROCESS_EXIT: &str = "sched_process_exit";
/// `tp_btf/sched_process_fork`.
pub const PROG_SCHED_PROCESS_FORK: &str = "sched_process_fork";
/// `tp_btf/sched_process_exec`.
pub const PROG_SCHED_PROCESS_EXEC: &str = "sched_process_exec";
/// `tp_btf/mark_victim` (the OOM killer chose a victim).
pub const PROG_MARK_VICTIM: &str = "mark_victim";
/// `tp_btf/signal_generate`.
pub const PROG_SIGNAL_GENERATE: &str = "signal_generate";
/// `tp_btf/rss_stat` (fires on every RSS counter update: attached only while a limit is set).
pub const PROG_RSS_STAT: &str = "rss_stat";

/// `tp_btf/sched_wakeup`: a thread became runnable (run-queue delay starts).
pub const PROG_SCHED_WAKEUP: &str = "sched_wakeup";
/// `tp_btf/sched_wakeup_new`: a new thread became runnable for the first time.
pub const PROG_SCHED_WAKEUP_NEW: &str = "sched_wakeup_new";
/// `tp_btf/sched_switch`: a CPU switched threads (run-queue delay ends; preemptions counted).
pub const PROG_SCHED_SWITCH: &str = "sched_switch";
/// `tp_btf/inet_sock_set_state`: a TCP socket changed state (listen, connect, accept).
pub const PROG_INET_SOCK_SET_STATE: &str = "inet_sock_set_state";

/// Load-time globals: kernel struct field offsets read from `/sys/kernel/btf/vmlinux`, because
/// aya-ebpf has no CO-RE relocations. Zero means "not available": the code needing it is skipped.
pub const GLOBAL_OFF_TASK_EXIT_CODE: &str = "OFF_TASK_EXIT_CODE";
/// `task_struct.tgid`.
pub const GLOBAL_OFF_TASK_TGID: &str = "OFF_TASK_TGID";
/// `task_struct.pid`.
pub const GLOBAL_OFF_TASK_PID: &str = "OFF_TASK_PID";
/// `task_struct.signal`.
pub const GLOBAL_OFF_TASK_SIGNAL: &str = "OFF_TASK_SIGNAL";
/// `task_struct.mm`.
pub const GLOBAL_OFF_TASK_MM: &str = "OFF_TASK_MM";
/// `task_struct.comm`.
pub const GLOBAL_OFF_TASK_COMM: &str = "OFF_TASK_COMM";
/// `signal_struct.group_exit_code`.
pub const GLOBAL_OFF_SIGNAL_GROUP_EXIT_CODE: &str = "OFF_SIGNAL_GROUP_EXIT_CODE";
/// `mm_struct.hiwater_rss` (pages; lazily updated, so read with the live counters).
pub const GLOBAL_OFF_MM_HIWATER_RSS: &str = "OFF_MM_HIWATER_RSS";
/// `signal_struct.oom_score_adj`.
pub const GLOBAL_OFF_SIGNAL_OOM_SCORE_ADJ: &str = "OFF_SIGNAL_OOM_SCORE_ADJ";
/// `mm_struct.owner` (`CONFIG_MEMCG`).
pub const GLOBAL_OFF_MM_OWNER: &str = "OFF_MM_OWNER";
/// `mm_struct.rss_stat` (an array of `struct percpu_counter`, indexed by the `MM_*` counters).
pub const GLOBAL_OFF_MM_RSS_STAT: &str = "OFF_MM_RSS_STAT";
/// `mm_struct.total_vm` (pages).
pub const GLOBAL_OFF_MM_TOTAL_VM: &str = "OFF_MM_TOTAL_VM";
/// `sizeof(struct percpu_counter)`: the stride of `mm_struct.rss_stat`.
pub const GLOBAL_SIZE_PERCPU_COUNTER: &str = "SIZE_PERCPU_COUNTER";
/// `percpu_counter.count` (an `s64`).
pub const GLOBAL_OFF_PERCPU_COUNTER_COUNT: &str = "OFF_PERCPU_COUNTER_COUNT";
/// `linux_binprm.filename`.
pub const GLOBAL_OFF_BINPRM_FILENAME: &str = "OFF_BINPRM_FILENAME";
/// `kernel_siginfo.si_code`.
pub const GLOBAL_OFF_SIGINFO_CODE: &str = "OFF_SIGINFO_CODE";
/// `sock_common.skc_family` (offsets in `struct sock`, whose `__sk_common` comes first).
pub const GLOBAL_OFF_SKC_FAMILY: &str = "OFF_SKC_FAMILY";
/// `sock_common.skc_num`: the local port, host order.
pub const GLOBAL_OFF_SKC_NUM: &str = "OFF_SKC_NUM";
/// `sock_common.skc_dport`: the remote port, network order.
pub const GLOBAL_OFF_SKC_DPORT: &str = "OFF_SKC_DPORT";
/// `sock_common.skc_daddr`: the remote IPv4 address. Really at offset 0, so the loader passes
/// it plus one (0 stays "missing"), and the program subtracts it.
pub const GLOBAL_OFF_SKC_DADDR_PLUS1: &str = "OFF_SKC_DADDR_PLUS1";
/// `sock_common.skc_rcv_saddr`: the local IPv4 address.
pub const GLOBAL_OFF_SKC_RCV_SADDR: &str = "OFF_SKC_RCV_SADDR";
/// `sock_common.skc_v6_daddr`: the remote IPv6 address.
pub const GLOBAL_OFF_SKC_V6_DADDR: &str = "OFF_SKC_V6_DADDR";
/// `sock_common.skc_v6_rcv_saddr`: the local IPv6 address.
pub const GLOBAL_OFF_SKC_V6_RCV_SADDR: &str = "OFF_SKC_V6_RCV_SADDR";
/// Bit `n - 1` set: signal `n` is reported by `signal_generate` (see [`REPORTED_SIGNALS`]).
pub const GLOBAL_SIGNAL_MASK: &str = "SIGNAL_MASK";

/// Indices into `mm_struct.rss_stat` (`enum { MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS,
/// MM_SHMEMPAGES, NR_MM_COUNTERS }`, unchanged since Linux 4.5). The loader checks that the
/// array has [`NR_MM_COUNTERS`] elements before it enables code that indexes it.
pub const MM_FILEPAGES: u64 = 0;
/// Anonymous pages.
pub const MM_ANONPAGES: u64 = 1;
/// Swap entries (not resident).
pub const MM_SWAPENTS: u64 = 2;
/// Shared-memory pages.
pub const MM_SHMEMPAGES: u64 = 3;
/// Length of `mm_struct.rss_stat`.
pub const NR_MM_COUNTERS: u64 = 4;

/// Whether signal `sig`'s default action ends the process (terminate, or dump core): every
/// signal from 1 to 64 except SIGCHLD 17, SIGCONT 18, SIGSTOP 19, SIGTSTP 20, SIGTTIN 21,
/// SIGTTOU 22, SIGURG 23 and SIGWINCH 28. That includes SIGUSR1/2, SIGPIPE, SIGALRM, SIGXCPU,
/// SIGSYS, SIGTRAP and every real-time signal (32..=64, including the two glibc reserves).
#[must_use]
pub const fn default_fatal(sig: u32) -> bool {
    matches!(sig, 1..=64) && !matches!(sig, 17..=23 | 28)
}

/// The bit of signal `sig` (1..=64) in [`REPORTED_SIGNALS`]: bit `sig - 1`, so all 64 fit.
#[must_use]
pub const fn signal_bit(sig: u32) -> u64 {
    if sig == 0 || sig > 64 {
        0
    } else {
        1u64 << (sig - 1)
    }
}

/// SIGSTOP: reported (not fatal) so a stop shows who froze the process.
pub const SIGSTOP: u32 = 19;
/// SIGCONT: reported (not fatal) so a resume shows who thawed it.
pub const SIGCONT: u32 = 18;

/// The signals `signal_generate` reports ([`GLOBAL_SIGNAL_MASK`], bit `n - 1` for signal `n`):
/// every [`default_fatal`] one, plus [`SIGSTOP`] and [`SIGCONT`].
pub const REPORTED_SIGNALS: u64 = {
    let mut mask = signal_bit(SIGSTOP) | signal_bit(SIGCONT);
    let mut sig = 1;
    while sig <= 64 {
        if default_fatal(sig) {
            mask |= signal_bit(sig);
        }
        sig += 1;
    }
    mask
};

/// `trace_signal_generate`'s `result`: the signal was ignored (never fatal, not reported).
pub const TRACE_SIGNAL_IGNORED: i32 = 1;
/// `trace_signal_generate`'s `result`: the same signal was already pending (not reported again).
pub const TRACE_SIGNAL_ALREADY_PENDING: i32 = 2;

/// [`EventHeader::kind`]: a watched thread group's last thread exited ([`ExitEvent`]).
pub const EVENT_EXIT: u32 = 1;
/// A watched process forked a new process, which is now watched too ([`ForkEvent`]).
pub const EVENT_FORK: u32 = 2;
/// A watched process called execve ([`ExecEvent`]).
pub const EVENT_EXEC: u32 = 3;
/// The OOM killer chose a watched process as its victim ([`OomEvent`]).
pub const EVENT_OOM_VICTIM: u32 = 4;
/// A fatal signal was generated for a watched process ([`SignalEvent`]).
pub const EVENT_SIGNAL: u32 = 5;
/// A limited process's resident memory reached its limit ([`RssEvent`]).
pub const EVENT_RSS_OVER: u32 = 6;
/// A limited process's resident memory fell below 7/8 of its limit after being over ([`RssEvent`]).
pub const EVENT_RSS_UNDER: u32 = 7;

/// A watched process put a TCP socket in the LISTEN state ([`NetEvent`]).
pub const EVENT_NET_LISTEN: u32 = 8;
/// A socket recorded by [`EVENT_NET_LISTEN`] closed ([`NetEvent`]; `hdr.tgid` 0).
pub const EVENT_NET_UNLISTEN: u32 = 9;
/// A watched process started a TCP connection (SYN sent; [`NetEvent`], the local port may
/// still be 0: the kernel picks it after this transition).
pub const EVENT_NET_CONNECT: u32 = 10;
/// A connection to a port in [`MAP_LISTENERS`] was established (accepted by the kernel, maybe
/// not yet by the app; [`NetEvent`], `hdr.tgid` 0: this happens in softirq context).
pub const EVENT_NET_ACCEPT: u32 = 11;

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;
/// TCP states of `inet_sock_set_state` (`include/net/tcp_states.h`).
pub const TCP_ESTABLISHED: i32 = 1;
/// See [`TCP_ESTABLISHED`].
pub const TCP_SYN_SENT: i32 = 2;
/// See [`TCP_ESTABLISHED`].
pub const TCP_SYN_RECV: i32 = 3;
/// See [`TCP_ESTABLISHED`].
pub const TCP_CLOSE: i32 = 7;
/// See [`TCP_ESTABLISHED`].
pub const TCP_LISTEN: i32 = 10;

/// The [`MAP_LISTENERS`] key of a local port.
#[must_use]
#[inline(always)]
pub const fn listener_key(family: u16, port: u16) -> u32 {
    ((family as u32) << 16) | port as u32
}

/// [`ForkEvent::flags`]: the child could not be added to [`MAP_WATCHED`] (map full), so its own
/// children, exit and signals will not be reported.
pub const FORK_UNTRACKED: u32 = 1;

/// Bytes of the exec filename kept (including the terminating NUL); longer names are cut.
pub const EXEC_FILENAME_LEN: usize = 256;
/// `TASK_COMM_LEN`.
pub const COMM_LEN: usize = 16;

/// The start of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// One of the `EVENT_*` constants.
    pub kind: u32,
    /// Thread-group id (the "pid" users see) the event is about.
    pub tgid: u32,
    /// Id of the thread the event is about (for exit: the last thread).
    pub pid: u32,
    /// The app key from [`MAP_WATCHED`] (0 when the tgid is not watched, e.g. an RSS event of a
    /// process limited but not watched).
    pub key: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the hook fired.
    pub ktime_ns: u64,
}

/// [`EVENT_EXIT`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitEvent {
    /// Common fields.
    pub hdr: EventHeader,
    /// `task->exit_code` in wait-status encoding (`signal = code & 0x7f`, `status = code >> 8`).
    pub exit_code: u32,
    /// `task->signal->group_exit_code`, preferred when non-zero (set by exit_group and fatal signals).
    pub group_exit_code: u32,
    /// Resident pages (file + anon + shmem) at the exit, before the kernel frees them (0 when
    /// unreadable).
    pub rss_pages: u64,
    /// Peak resident pages of the current image (since the last exec): the larger of
    /// `mm->hiwater_rss` and `rss_pages` (0 when unreadable).
    pub peak_rss_pages: u64,
}

/// [`EVENT_FORK`]: `hdr.tgid`/`hdr.pid` are the child's (equal: threads are not reported).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkEvent {
    /// Common fields (the child, with the parent's key).
    pub hdr: EventHeader,
    /// Thread-group id of the forking process.
    pub parent_tgid: u32,
    /// [`FORK_UNTRACKED`] or 0.
    pub flags: u32,
}

/// [`EVENT_EXEC`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    /// Common fields.
    pub hdr: EventHeader,
    /// The id of the thread that called execve (it became the leader; differs from the tgid
    /// only when a non-leader thread exec'd).
    pub old_pid: u32,
    /// Bytes of `filename` before the NUL (0 when it could not be read).
    pub filename_len: u32,
    /// `bprm->filename` as passed to execve, NUL-terminated, cut to [`EXEC_FILENAME_LEN`].
    pub filename: [u8; EXEC_FILENAME_LEN],
}

/// [`EVENT_OOM_VICTIM`]: figures from the victim's `mm` (0 when unreadable).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OomEvent {
    /// Common fields.
    pub hdr: EventHeader,
    /// `mm->total_vm` (pages).
    pub total_vm_pages: u64,
    /// Resident anonymous pages.
    pub anon_pages: u64,
    /// Resident file pages.
    pub file_pages: u64,
    /// Resident shared-memory pages.
    pub shmem_pages: u64,
    /// `signal->oom_score_adj`.
    pub oom_score_adj: i32,
    /// The victim's uid (tracepoint argument).
    pub uid: u32,
    /// The victim's `comm`, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// [`EVENT_SIGNAL`]: `hdr` is the target; the sender is the task that generated the signal.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalEvent {
    /// Common fields (the target).
    pub hdr: EventHeader,
    /// Signal number.
    pub sig: u32,
    /// `si_code`: <= 0 when a process sent it (`SI_USER` 0, `SI_QUEUE` -1, `SI_TKILL` -6), > 0
    /// when the kernel did (`SI_KERNEL` 0x80 e.g. the OOM killer, fault codes for SIGSEGV...).
    pub code: i32,
    /// Thread-group id of `current` when the signal was generated.
    pub sender_tgid: u32,
    /// Thread id of `current`.
    pub sender_pid: u32,
    /// The `TRACE_SIGNAL_*` result (0 delivered, 3 overflow, 4 info lost).
    pub result: i32,
    /// Non-zero when sent to the whole thread group.
    pub group: u32,
    /// `current->comm`, NUL-padded.
    pub sender_comm: [u8; COMM_LEN],
}

/// [`EVENT_RSS_OVER`] / [`EVENT_RSS_UNDER`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RssEvent {
    /// Common fields.
    pub hdr: EventHeader,
    /// Resident pages (file + anon + shmem) at the crossing.
    pub rss_pages: u64,
    /// The limit (pages).
    pub limit_pages: u64,
}

/// [`EVENT_NET_LISTEN`], [`EVENT_NET_UNLISTEN`], [`EVENT_NET_CONNECT`], [`EVENT_NET_ACCEPT`].
/// Addresses are in network order: IPv4 in the first 4 bytes of the 16.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetEvent {
    /// Common fields (`tgid` 0 when no process of the app was running it).
    pub hdr: EventHeader,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// Local port, host order.
    pub local_port: u16,
    /// Remote port, host order (0 for a listener).
    pub remote_port: u16,
    /// Explicit padding.
    pub _pad: u16,
    /// Local address.
    pub local_addr: [u8; 16],
    /// Remote address (zero for a listener).
    pub remote_addr: [u8; 16],
}

/// Value of [`MAP_LISTENERS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Listener {
    /// The app key.
    pub key: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// The listening `struct sock *` (so that only its own close removes the entry); 0 for a
    /// socket the daemon holds.
    pub sk: u64,
}

/// Value of [`MAP_RSS_LIMITS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RssLimit {
    /// Limit in pages; reaching it is "over", falling below 7/8 of it is "under" again.
    pub limit_pages: u64,
    /// 1 while over. The daemon seeds it from `/proc/<pid>/statm` when it sets the limit.
    pub over: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// Buckets of [`RunqStats::buckets`]: bucket 0 counts delays under 1 µs, bucket `i` (1..=22)
/// delays in `[2^(i-1), 2^i)` µs, and the last one everything from 2^22 µs (4.2 s) up.
pub const RUNQ_BUCKETS: usize = 24;

/// Value of [`MAP_RUNQ`] (one per CPU): how long an app's threads waited on a run queue before
/// they got a CPU, and how often they were preempted while still runnable.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunqStats {
    /// Log2 histogram of the delays, see [`runq_bucket`].
    pub buckets: [u64; RUNQ_BUCKETS],
    /// Delays measured (the sum of `buckets`).
    pub count: u64,
    /// Their sum in nanoseconds.
    pub sum_ns: u64,
    /// Involuntary context switches: a thread taken off the CPU while still runnable.
    pub involuntary: u64,
    /// Explicit padding.
    pub _pad: u64,
}

/// The [`RunqStats::buckets`] index of a run-queue delay: the bit length of the delay in whole
/// microseconds, capped at the last bucket. The upper bound of bucket `i` (but the last) is
/// `2^i` µs.
#[must_use]
#[inline(always)]
pub const fn runq_bucket(delay_ns: u64) -> usize {
    let mut v = delay_ns / 1_000;
    let mut n = 0usize;
    // unrolled binary search: no loop for the verifier, no ctlz the BPF backend may lack
    if v >> 32 != 0 {
        v >>= 32;
        n += 32;
    }
    if v >> 16 != 0 {
        v >>= 16;
        n += 16;
    }
    if v >> 8 != 0 {
        v >>= 8;
        n += 8;
    }
    if v >> 4 != 0 {
        v >>= 4;
        n += 4;
    }
    if v >> 2 != 0 {
        v >>= 2;
        n += 2;
    }
    if v >> 1 != 0 {
        v >>= 1;
        n += 1;
    }
    n += v as usize;
    if n >= RUNQ_BUCKETS {
        RUNQ_BUCKETS - 1
    } else {
        n
    }
}

const _: () = {
    assert!(core::mem::size_of::<RunqStats>() == 8 * (RUNQ_BUCKETS + 4));
    assert!(core::mem::size_of::<EventHeader>() == 24);
    assert!(core::mem::size_of::<ExitEvent>() == 48);
    assert!(core::mem::size_of::<ForkEvent>() == 32);
    assert!(core::mem::size_of::<ExecEvent>() == 32 + EXEC_FILENAME_LEN);
    assert!(core::mem::size_of::<OomEvent>() == 80);
    assert!(core::mem::size_of::<SignalEvent>() == 64);
    assert!(core::mem::size_of::<RssEvent>() == 40);
    assert!(core::mem::size_of::<RssLimit>() == 16);
    assert!(core::mem::size_of::<NetEvent>() == 64);
    assert!(core::mem::size_of::<Listener>() == 16);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY (all): repr(C), made only of integers and byte arrays, with no implicit padding
    // (sizes asserted above), so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::EventHeader {}
    unsafe impl aya::Pod for super::ExitEvent {}
    unsafe impl aya::Pod for super::ForkEvent {}
    unsafe impl aya::Pod for super::ExecEvent {}
    unsafe impl aya::Pod for super::OomEvent {}
    unsafe impl aya::Pod for super::SignalEvent {}
    unsafe impl aya::Pod for super::RssEvent {}
    unsafe impl aya::Pod for super::RssLimit {}
    unsafe impl aya::Pod for super::RunqStats {}
    unsafe impl aya::Pod for super::NetEvent {}
    unsafe impl aya::Pod for super::Listener {}
}

impl ExitEvent {
    /// The status that decides how the process ended: `group_exit_code` when set, else `exit_code`.
    #[must_use]
    pub const fn wait_status(&self) -> u32 {
        if self.group_exit_code != 0 {
            self.group_exit_code
        } else {
            self.exit_code
        }
    }
}

/// Whether `rss` (pages) has fallen far enough below `limit` to end an "over" state: below 7/8
/// of the limit. Shared so the kernel and the procfs fallback use the same hysteresis.
#[must_use]
#[inline(always)]
pub const fn rss_is_under(rss: u64, limit: u64) -> bool {
    rss < limit - limit / 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_hand_built_buffer() {
        let mut bytes = [0u8; 48];
        bytes[0..4].copy_from_slice(&EVENT_EXIT.to_ne_bytes());
        bytes[4..8].copy_from_slice(&4242u32.to_ne_bytes());
        bytes[8..12].copy_from_slice(&4243u32.to_ne_bytes());
        bytes[12..16].copy_from_slice(&7u32.to_ne_bytes());
        bytes[16..24].copy_from_slice(&77u64.to_ne_bytes());
        bytes[24..28].copy_from_slice(&0x300u32.to_ne_bytes());
        bytes[28..32].copy_from_slice(&9u32.to_ne_bytes());
        bytes[32..40].copy_from_slice(&100u64.to_ne_bytes());
        bytes[40..48].copy_from_slice(&300u64.to_ne_bytes());
        // SAFETY: the buffer has the size of ExitEvent and any bit pattern is valid.
        let ev: ExitEvent = unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast()) };
        assert_eq!(ev.hdr.kind, EVENT_EXIT);
        assert_eq!(ev.hdr.tgid, 4242);
        assert_eq!(ev.hdr.pid, 4243);
        assert_eq!(ev.hdr.key, 7);
        assert_eq!(ev.hdr.ktime_ns, 77);
        assert_eq!(ev.wait_status(), 9, "group_exit_code wins when set");
        assert_eq!((ev.rss_pages, ev.peak_rss_pages), (100, 300));
    }

    #[test]
    fn runq_buckets_are_log2_microseconds() {
        assert_eq!(runq_bucket(0), 0);
        assert_eq!(runq_bucket(999), 0, "under 1 µs");
        assert_eq!(runq_bucket(1_000), 1, "[1, 2) µs");
        assert_eq!(runq_bucket(1_999), 1);
        assert_eq!(runq_bucket(2_000), 2, "[2, 4) µs");
        assert_eq!(runq_bucket(1_000_000), 10, "1 ms is in [512, 1024) µs");
        assert_eq!(runq_bucket((1 << 22) * 1_000 - 1), 22);
        assert_eq!(runq_bucket((1 << 22) * 1_000), RUNQ_BUCKETS - 1);
        assert_eq!(runq_bucket(u64::MAX), RUNQ_BUCKETS - 1);
    }

    #[test]
    fn hysteresis_is_seven_eighths() {
        assert!(!rss_is_under(800, 800));
        assert!(!rss_is_under(700, 800));
        assert!(rss_is_under(699, 800));
        assert!(!rss_is_under(0, 0));
    }

    #[test]
    fn fatal_signal_mask() {
        for sig in [
            1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 24, 25, 26, 27, 29, 30, 31,
        ] {
            assert!(default_fatal(sig), "{sig}");
            assert_ne!(REPORTED_SIGNALS & signal_bit(sig), 0, "{sig}");
        }
        for sig in 32..=64 {
            assert!(default_fatal(sig), "real-time {sig}");
        }
        for sig in [0, 17, 18, 19, 20, 21, 22, 23, 28, 65] {
            assert!(!default_fatal(sig), "{sig}");
        }
        for sig in [17, 20, 21, 22, 23, 28] {
            assert_eq!(REPORTED_SIGNALS & signal_bit(sig), 0, "{sig}");
        }
        assert_ne!(REPORTED_SIGNALS & signal_bit(SIGSTOP), 0);
        assert_ne!(REPORTED_SIGNALS & signal_bit(SIGCONT), 0);
        assert_eq!(signal_bit(64), 1 << 63);
        assert_eq!(signal_bit(0) | signal_bit(65), 0);
    }
}
