//! The ABI between the eBPF programs (`turbo-ebpf`) and the daemon (`turbo-daemon`).
//!
//! Everything both sides must agree on lives here and nowhere else: event layouts, map names,
//! the names of load-time globals. Only fixed-width integers (no `bool`, no enums) so the layout
//! is the same for `bpfel-unknown-none` and x86_64, with explicit padding and size assertions.
//! This crate must not contain logic: decoding lives in the daemon's event source.
#![no_std]

/// Ring buffer all programs write [`RawEvent`]s into.
pub const MAP_EVENTS: &str = "EVENTS";
/// `HashMap<u32 tgid, u8>` of supervised thread-group ids; written by the daemon.
pub const MAP_WATCHED: &str = "WATCHED";
/// `PerCpuArray<u64>` with one slot: events dropped because [`MAP_EVENTS`] was full.
pub const MAP_LOST: &str = "LOST";

/// Program names in the object (the Rust function names in `turbo-ebpf`).
pub const PROG_SCHED_PROCESS_EXIT: &str = "sched_process_exit";

/// Load-time globals: kernel struct field offsets read from `/sys/kernel/btf/vmlinux`, because
/// aya-ebpf has no CO-RE relocations.
pub const GLOBAL_OFF_TASK_EXIT_CODE: &str = "OFF_TASK_EXIT_CODE";
/// `task_struct.tgid`.
pub const GLOBAL_OFF_TASK_TGID: &str = "OFF_TASK_TGID";
/// `task_struct.pid`.
pub const GLOBAL_OFF_TASK_PID: &str = "OFF_TASK_PID";
/// `task_struct.signal`.
pub const GLOBAL_OFF_TASK_SIGNAL: &str = "OFF_TASK_SIGNAL";
/// `signal_struct.group_exit_code`.
pub const GLOBAL_OFF_SIGNAL_GROUP_EXIT_CODE: &str = "OFF_SIGNAL_GROUP_EXIT_CODE";

/// [`RawEvent::kind`]: a thread group's last thread exited (`group_dead`).
pub const EVENT_EXIT: u32 = 1;

/// One event in the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawEvent {
    /// One of the `EVENT_*` constants.
    pub kind: u32,
    /// Thread-group id (the "pid" users see).
    pub tgid: u32,
    /// Id of the thread that produced the event.
    pub pid: u32,
    /// `task->exit_code` in wait-status encoding (`signal = code & 0x7f`, `status = code >> 8`).
    pub exit_code: u32,
    /// `task->signal->group_exit_code`, preferred when non-zero (set by exit_group and fatal signals).
    pub group_exit_code: u32,
    /// Explicit padding so the layout has no implicit holes.
    pub _pad: u32,
    /// `bpf_ktime_get_ns()` when the hook fired.
    pub ktime_ns: u64,
}

const _: () = assert!(core::mem::size_of::<RawEvent>() == 32);

#[cfg(feature = "user")]
// SAFETY: RawEvent is repr(C), made only of integers, with no implicit padding (asserted above),
// so every bit pattern is a valid value.
unsafe impl aya::Pod for RawEvent {}

impl RawEvent {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_hand_built_buffer() {
        let mut bytes = [0u8; 32];
        bytes[0..4].copy_from_slice(&EVENT_EXIT.to_ne_bytes());
        bytes[4..8].copy_from_slice(&4242u32.to_ne_bytes());
        bytes[8..12].copy_from_slice(&4243u32.to_ne_bytes());
        bytes[12..16].copy_from_slice(&0x300u32.to_ne_bytes());
        bytes[16..20].copy_from_slice(&9u32.to_ne_bytes());
        bytes[24..32].copy_from_slice(&77u64.to_ne_bytes());
        // SAFETY: the buffer has the size of RawEvent and any bit pattern is valid.
        let ev: RawEvent = unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast()) };
        assert_eq!(ev.kind, EVENT_EXIT);
        assert_eq!(ev.tgid, 4242);
        assert_eq!(ev.pid, 4243);
        assert_eq!(ev.ktime_ns, 77);
        assert_eq!(ev.wait_status(), 9, "group_exit_code wins when set");
    }
}
