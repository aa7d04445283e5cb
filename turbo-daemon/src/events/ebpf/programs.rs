//! The programs of the object and what each needs: the BTF fields it cannot work without, the
//! ones whose absence only degrades it, whether the source is useless without it, and whether
//! it is attached at load. A table only; `load_with` acts on it.

use turbo_common as abi;

/// One program: its name (= tracepoint), the globals it cannot work without, the ones that only
/// degrade it (with what is lost), and whether the source is useless without it.
pub(super) struct ProgramSpec {
    pub(super) name: &'static str,
    pub(super) required: &'static [&'static str],
    pub(super) optional: &'static [(&'static str, &'static str)],
    pub(super) essential: bool,
    pub(super) attach_at_load: bool,
}

pub(super) const PROGRAMS: &[ProgramSpec] = &[
    ProgramSpec {
        name: abi::PROG_SCHED_PROCESS_EXIT,
        required: &[
            abi::GLOBAL_OFF_TASK_TGID,
            abi::GLOBAL_OFF_TASK_PID,
            abi::GLOBAL_OFF_TASK_EXIT_CODE,
            abi::GLOBAL_OFF_TASK_SIGNAL,
            abi::GLOBAL_OFF_SIGNAL_GROUP_EXIT_CODE,
        ],
        optional: &[
            (abi::GLOBAL_OFF_TASK_MM, "exits have no memory figures"),
            (abi::GLOBAL_OFF_MM_RSS_STAT, "exits have no memory figures"),
            (
                abi::GLOBAL_OFF_PERCPU_COUNTER_COUNT,
                "exits have no memory figures",
            ),
            (
                abi::GLOBAL_OFF_MM_HIWATER_RSS,
                "exit peaks miss memory freed before the exit",
            ),
        ],
        essential: true,
        attach_at_load: true,
    },
    ProgramSpec {
        name: abi::PROG_SCHED_PROCESS_FORK,
        required: &[abi::GLOBAL_OFF_TASK_TGID, abi::GLOBAL_OFF_TASK_PID],
        optional: &[],
        essential: false,
        attach_at_load: true,
    },
    ProgramSpec {
        name: abi::PROG_SCHED_PROCESS_EXEC,
        required: &[abi::GLOBAL_OFF_TASK_TGID],
        optional: &[(abi::GLOBAL_OFF_BINPRM_FILENAME, "exec filenames are empty")],
        essential: false,
        attach_at_load: true,
    },
    ProgramSpec {
        name: abi::PROG_MARK_VICTIM,
        required: &[abi::GLOBAL_OFF_TASK_TGID],
        optional: &[
            (
                abi::GLOBAL_OFF_TASK_MM,
                "OOM victims have no memory figures",
            ),
            (
                abi::GLOBAL_OFF_MM_RSS_STAT,
                "OOM victims have no rss figures",
            ),
            (
                abi::GLOBAL_OFF_PERCPU_COUNTER_COUNT,
                "OOM victims have no rss figures",
            ),
            (abi::GLOBAL_OFF_MM_TOTAL_VM, "OOM victims have no total_vm"),
            (
                abi::GLOBAL_OFF_SIGNAL_OOM_SCORE_ADJ,
                "OOM victims have no oom_score_adj",
            ),
            (abi::GLOBAL_OFF_TASK_COMM, "OOM victims have no comm"),
        ],
        essential: false,
        attach_at_load: true,
    },
    ProgramSpec {
        name: abi::PROG_SIGNAL_GENERATE,
        required: &[abi::GLOBAL_OFF_TASK_TGID],
        optional: &[(
            abi::GLOBAL_OFF_SIGINFO_CODE,
            "si_code reads as 0, so kernel-generated signals look user-sent",
        )],
        essential: false,
        attach_at_load: true,
    },
    ProgramSpec {
        name: abi::PROG_RSS_STAT,
        required: &[
            abi::GLOBAL_OFF_TASK_TGID,
            abi::GLOBAL_OFF_MM_OWNER,
            abi::GLOBAL_OFF_MM_RSS_STAT,
            abi::GLOBAL_SIZE_PERCPU_COUNTER,
            abi::GLOBAL_OFF_PERCPU_COUNTER_COUNT,
        ],
        optional: &[],
        essential: false,
        // Every page fault in the system runs it: attached only while a limit is set.
        attach_at_load: false,
    },
    // Run-queue delay: every wake-up and context switch of the system runs these; for an
    // unwatched thread that is one or two hash lookups (measured in docs/ebpf.md).
    ProgramSpec {
        name: abi::PROG_SCHED_WAKEUP,
        required: &[abi::GLOBAL_OFF_TASK_TGID, abi::GLOBAL_OFF_TASK_PID],
        optional: &[],
        essential: false,
        attach_at_load: true,
    },
    ProgramSpec {
        name: abi::PROG_SCHED_WAKEUP_NEW,
        required: &[abi::GLOBAL_OFF_TASK_TGID, abi::GLOBAL_OFF_TASK_PID],
        optional: &[],
        essential: false,
        attach_at_load: true,
    },
    ProgramSpec {
        name: abi::PROG_SCHED_SWITCH,
        required: &[abi::GLOBAL_OFF_TASK_TGID, abi::GLOBAL_OFF_TASK_PID],
        optional: &[],
        essential: false,
        attach_at_load: true,
    },
    // The network view: every TCP state change of the system runs it; all but four kinds of
    // transition end after two compares.
    ProgramSpec {
        name: abi::PROG_INET_SOCK_SET_STATE,
        required: &[
            abi::GLOBAL_OFF_SKC_FAMILY,
            abi::GLOBAL_OFF_SKC_NUM,
            abi::GLOBAL_OFF_SKC_DPORT,
            abi::GLOBAL_OFF_SKC_DADDR_PLUS1,
            abi::GLOBAL_OFF_SKC_RCV_SADDR,
        ],
        optional: &[
            (abi::GLOBAL_OFF_SKC_V6_DADDR, "IPv6 peers read as ::"),
            (
                abi::GLOBAL_OFF_SKC_V6_RCV_SADDR,
                "IPv6 local addresses read as ::",
            ),
        ],
        essential: false,
        attach_at_load: true,
    },
];
