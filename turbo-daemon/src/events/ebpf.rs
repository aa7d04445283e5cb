//! The eBPF event source: loads the `turbo-ebpf` object embedded at build time, attaches its
//! BTF tracepoints and turns ring-buffer records into [`Event`]s.
//!
//! * [`Ebpf::load`] reads kernel struct field offsets from `/sys/kernel/btf/vmlinux` (btf-rs,
//!   mmap backend), patches them into the object's read-only globals, creates the maps, loads
//!   every program and attaches all but `rss_stat`, and returns the owner of the programs and
//!   maps ([`Ebpf`]) plus the ring-buffer reader ([`RingReader`]). Every failure is an
//!   [`EbpfError`] whose `Display` is one line a user can act on; nothing here panics.
//! * Only `sched_process_exit` is essential: if it cannot be used the whole source fails (and the
//!   daemon falls back to procfs). Any other program whose BTF fields, tracepoint or verifier
//!   check is missing is left out and listed in [`Ebpf::fallbacks`] with the reason.
//! * `rss_stat` fires on every page fault in the system, so it is loaded at start-up (to find
//!   problems early) but attached only while at least one memory limit is set
//!   ([`Ebpf::set_memory_limit`]), and detached when the last one is cleared.
//! * The kernel side only reports thread groups in the `WATCHED` map, adds new child processes
//!   of watched ones itself (same key), and forgets a tgid by itself when it reports its exit. A
//!   tgid watched after it already died is never reported: the caller still reaps its direct
//!   children through pidfd/waitpid, and should [`Ebpf::unwatch`] a pid whose exit it learnt
//!   about elsewhere (pids are reused).
//! * Needs Linux 5.8+ with BTF, and CAP_BPF + CAP_PERFMON (or root). No tracefs.
//!
//! This module must not make supervision decisions or act on processes.

use std::{
    collections::HashSet,
    fmt, io,
    time::{Duration, Instant},
};

use aya::{
    Btf, EbpfLoader,
    maps::{HashMap, Map, MapData, MapError, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{BtfTracePoint, ProgramError, tp_btf::BtfTracePointLinkId},
};
use tokio::io::unix::AsyncFd;
use turbo_common::{self as abi, RssLimit, RunqStats};

use super::MemoryLimitChange;
#[cfg(test)]
use super::{Event, Sender, SourceKind, WaitStatus};

/// The object built by `build.rs` (empty when the BPF toolchain was missing).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/turbo-ebpf"));
/// Why `OBJECT` is empty, when it is (set by `build.rs`).
const BUILD_NOTE: &str = env!("TURBO_EBPF_BUILD_NOTE");
/// Kernel BTF, the source of the field offsets and of the tracepoint type ids.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Why eBPF could not be used. `Display` is a one-line human reason.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// The daemon was built without the eBPF object.
    #[error("eBPF object not built: {reason}")]
    NotBuilt {
        /// What the build script reported.
        reason: String,
    },
    /// Kernel BTF could not be read (`CONFIG_DEBUG_INFO_BTF` off, or unreadable).
    #[error("kernel BTF unavailable at {VMLINUX_BTF}: {reason}")]
    Btf {
        /// The parser's error.
        reason: String,
    },
    /// A struct field the essential programs read is not in this kernel's BTF.
    #[error("kernel BTF has no field {ty}.{field}; this kernel is not supported")]
    MissingField {
        /// The struct.
        ty: &'static str,
        /// The field.
        field: &'static str,
    },
    /// The kernel refused for lack of privileges.
    #[error("permission denied loading BPF {what} (need CAP_BPF+CAP_PERFMON or root)")]
    PermissionDenied {
        /// `"maps"` or `"programs"`.
        what: &'static str,
    },
    /// The verifier rejected a program.
    #[error("the kernel verifier rejected {program}: {summary}")]
    Verifier {
        /// Program name.
        program: String,
        /// The last meaningful lines of the log.
        summary: String,
        /// The full verifier log.
        log: String,
    },
    /// Any other failure while parsing the object, creating maps or loading programs.
    #[error("loading eBPF failed: {0}")]
    Load(String),
    /// Attaching a loaded program failed.
    #[error("attaching {program} failed: {reason}")]
    Attach {
        /// Program name.
        program: String,
        /// Cause.
        reason: String,
    },
    /// Adding a tgid to the `WATCHED` map failed (e.g. it is full).
    #[error("cannot watch pid {tgid}: {reason}")]
    Watch {
        /// The thread-group id.
        tgid: u32,
        /// Cause.
        reason: String,
    },
    /// Setting a memory limit failed (no such process, map full, `rss_stat` unavailable...).
    #[error("cannot set a memory limit on pid {tgid}: {reason}")]
    Limit {
        /// The thread-group id.
        tgid: u32,
        /// Cause.
        reason: String,
    },
    /// The ring buffer could not be registered with the tokio reactor.
    #[error("cannot poll the eBPF ring buffer: {0}")]
    Ring(#[source] io::Error),
}

/// The loaded programs and the maps the daemon writes.
///
/// Dropping it detaches the programs (their links live in the inner `aya::Ebpf`).
pub struct Ebpf {
    /// Owns the programs and their links.
    bpf: aya::Ebpf,
    watched: HashMap<MapData, u32, u32>,
    /// Daemon threads starting an app's process (see [`Ebpf::spawning`]).
    spawners: HashMap<MapData, u32, u32>,
    limits: HashMap<MapData, u32, RssLimit>,
    lost: PerCpuArray<MapData, u64>,
    /// Run-queue delay per app key (per CPU).
    runq: PerCpuHashMap<MapData, u32, RunqStats>,
    /// Programs in use: attached, or (`rss_stat`) attached on demand.
    programs: Vec<String>,
    /// `program: why it is not used / what is degraded`.
    fallbacks: Vec<String>,
    rss: RssStat,
    page_size: u64,
    load_time: Duration,
}

/// The on-demand `rss_stat` program.
struct RssStat {
    /// Loaded (verified) and ready to attach.
    ready: bool,
    link: Option<BtfTracePointLinkId>,
    /// Tgids with a limit set by us (the kernel also removes entries on exit: pruned lazily).
    limited: HashSet<u32>,
}

/// Reads the ring buffer the programs write into; see [`RingReader::run`].
pub struct RingReader {
    ring: Ring,
    page_size: u64,
}

enum Ring {
    /// Registered with the reactor of the runtime `load` ran in.
    Registered(AsyncFd<RingBuf<MapData>>),
    /// `load` ran outside a runtime: registered when `run` starts.
    Unregistered(RingBuf<MapData>),
}

impl fmt::Debug for Ebpf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ebpf")
            .field("programs", &self.programs)
            .field("fallbacks", &self.fallbacks)
            .field("rss_stat_attached", &self.rss.link.is_some())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RingReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingReader").finish_non_exhaustive()
    }
}

impl Ebpf {
    /// Loads all programs and attaches all but `rss_stat`. Must not panic; every failure is an
    /// [`EbpfError`].
    ///
    /// Call it inside the tokio runtime that will poll [`RingReader::run`] (IO enabled) so the
    /// ring buffer is registered right away; outside a runtime, registration waits for `run`.
    pub fn load() -> Result<(Ebpf, RingReader), EbpfError> {
        load_object(OBJECT, BUILD_NOTE)
    }

    /// Whether this binary embeds the eBPF object (it does not when built without the BPF
    /// toolchain); [`Ebpf::load`] fails with [`EbpfError::NotBuilt`] otherwise.
    #[must_use]
    pub fn object_built() -> bool {
        !OBJECT.is_empty()
    }

    /// Size of the embedded object in bytes (0 when not built).
    #[must_use]
    pub fn object_size() -> usize {
        OBJECT.len()
    }

    /// Names of the programs in use (for `turbo info`): attached ones, plus `rss_stat` when it is
    /// ready to be attached on demand. See [`Ebpf::attached`] for what is attached right now.
    pub fn programs(&self) -> Vec<String> {
        self.programs.clone()
    }

    /// Names of the programs attached right now.
    #[must_use]
    pub fn attached(&self) -> Vec<String> {
        self.programs
            .iter()
            .filter(|p| p.as_str() != abi::PROG_RSS_STAT || self.rss.link.is_some())
            .cloned()
            .collect()
    }

    /// What is not used or degraded and why, one line each (`"rss_stat: kernel BTF has no
    /// field mm_struct.owner"`). Empty when everything works.
    #[must_use]
    pub fn fallbacks(&self) -> Vec<String> {
        self.fallbacks.clone()
    }

    /// How long [`Ebpf::load`] took (BTF parsing, map creation, load and attach).
    #[must_use]
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

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

    /// Whether [`Ebpf::set_memory_limit`] works (the `rss_stat` program loaded).
    #[must_use]
    pub fn memory_limits_supported(&self) -> bool {
        self.rss.ready
    }

    /// Makes the kernel watch every process the calling thread forks, with `key`, from before
    /// its first instruction, until [`Ebpf::spawned`]: call it around the spawn of an app's
    /// process, so an app that lives 10 µs is still reported. One map update and one removal
    /// per spawn (a few µs); the fork program's cost for other forks is one lookup in a map
    /// that is empty between spawns.
    ///
    /// # Errors
    /// When the map refuses the entry (the spawn then falls back to [`Ebpf::watch_app`]).
    pub fn spawning(&mut self, key: u32) -> Result<(), EbpfError> {
        let tid = crate::os::process::gettid();
        self.spawners
            .insert(tid, key, 0)
            .map_err(|e| EbpfError::Watch {
                tgid: tid,
                reason: error_chain(&e),
            })
    }

    /// Ends what [`Ebpf::spawning`] started for the calling thread.
    pub fn spawned(&mut self) {
        remove_quietly(&mut self.spawners, crate::os::process::gettid(), "spawner");
    }

    /// Starts reporting this thread group and, from now on, every process it forks (with the
    /// same `key`, which comes back in every event about them). A tgid the kernel already
    /// watches (a child of [`Ebpf::spawning`]) keeps its entry.
    pub fn watch_app(&mut self, tgid: u32, key: u32) -> Result<(), EbpfError> {
        /// `BPF_NOEXIST`: insert only.
        const NOEXIST: u64 = 1;
        match self.watched.insert(tgid, key, NOEXIST) {
            Err(MapError::SyscallError(e)) if e.io_error.kind() == io::ErrorKind::AlreadyExists => {
                return Ok(());
            }
            other => other,
        }
        .map_err(|e| EbpfError::Watch {
            tgid,
            reason: error_chain(&e),
        })
    }

    /// The key a tgid is watched with, if it is watched (descendants added by the kernel too).
    #[must_use]
    pub fn watched_key(&self, tgid: u32) -> Option<u32> {
        self.watched.get(&tgid, 0).ok()
    }

    /// Stops reporting it, and clears its memory limit (ignores "not found").
    pub fn unwatch(&mut self, tgid: u32) {
        remove_quietly(&mut self.watched, tgid, "unwatch");
        if self.rss.limited.contains(&tgid) {
            self.clear_memory_limit(tgid);
        }
    }

    /// Events the kernel dropped because the ring buffer was full (for `turbo_events_lost_total`).
    #[must_use]
    pub fn lost_events(&self) -> u64 {
        self.lost
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().copied().fold(0u64, u64::wrapping_add))
            .unwrap_or(0)
    }

    /// Sets (or changes) the resident-memory limit of `tgid`, attaching `rss_stat` if it is the
    /// first limit. The "over" state is seeded from `/proc/<tgid>/statm`, so a process already
    /// over the limit is reported by the caller (see [`MemoryLimitChange`]) rather than never.
    pub fn set_memory_limit(
        &mut self,
        tgid: u32,
        bytes: u64,
    ) -> Result<MemoryLimitChange, EbpfError> {
        let fail = |reason: String| EbpfError::Limit { tgid, reason };
        if !self.rss.ready {
            return Err(fail("the rss_stat program is not available".into()));
        }
        let limit_pages = bytes.div_ceil(self.page_size).max(1);
        let rss_pages = crate::os::proc::resident_pages(tgid).map_err(|e| fail(e.to_string()))?;
        let was_over = self
            .limits
            .get(&tgid, 0)
            .map(|l| l.over != 0)
            .unwrap_or(false);
        // a new threshold starts fresh: only "already over it" matters, so that moving a
        // process from one threshold to another is never mistaken for a fall under the old one
        let over = rss_pages >= limit_pages;
        let value = RssLimit {
            limit_pages,
            over: u32::from(over),
            _pad: 0,
        };
        self.limits
            .insert(tgid, value, 0)
            .map_err(|e| fail(error_chain(&e)))?;
        self.rss.limited.insert(tgid);
        if let Err(e) = self.attach_rss_stat() {
            self.rss.limited.remove(&tgid);
            remove_quietly(&mut self.limits, tgid, "limit");
            return Err(e);
        }
        Ok(MemoryLimitChange {
            rss_bytes: rss_pages * self.page_size,
            limit_bytes: limit_pages * self.page_size,
            was_over,
            over,
        })
    }

    /// Removes the limit of `tgid`; detaches `rss_stat` when no limit is left.
    pub fn clear_memory_limit(&mut self, tgid: u32) {
        remove_quietly(&mut self.limits, tgid, "limit");
        self.rss.limited.remove(&tgid);
        self.prune_limits();
        if self.rss.limited.is_empty() {
            self.detach_rss_stat();
        }
    }

    /// Whether `rss_stat` is attached right now.
    #[must_use]
    pub fn rss_stat_attached(&self) -> bool {
        self.rss.link.is_some()
    }

    /// Forgets limits the kernel removed itself when their process exited.
    fn prune_limits(&mut self) {
        let limits = &self.limits;
        self.rss.limited.retain(|tgid| limits.get(tgid, 0).is_ok());
    }

    fn rss_program(&mut self) -> Result<&mut BtfTracePoint, EbpfError> {
        self.bpf
            .program_mut(abi::PROG_RSS_STAT)
            .ok_or_else(|| EbpfError::Load("rss_stat is missing from the object".into()))?
            .try_into()
            .map_err(|e: ProgramError| EbpfError::Load(error_chain(&e)))
    }

    fn attach_rss_stat(&mut self) -> Result<(), EbpfError> {
        if self.rss.link.is_some() {
            return Ok(());
        }
        let started = Instant::now();
        let link = self
            .rss_program()?
            .attach()
            .map_err(|e| EbpfError::Attach {
                program: abi::PROG_RSS_STAT.into(),
                reason: error_chain(&e),
            })?;
        self.rss.link = Some(link);
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros(),
            "rss_stat attached (a memory limit is set)"
        );
        Ok(())
    }

    fn detach_rss_stat(&mut self) {
        let Some(link) = self.rss.link.take() else {
            return;
        };
        match self
            .rss_program()
            .and_then(|p| p.detach(link).map_err(|e| EbpfError::Load(error_chain(&e))))
        {
            Ok(()) => tracing::debug!("rss_stat detached (no memory limit left)"),
            Err(e) => tracing::warn!(error = %e, "cannot detach rss_stat"),
        }
    }
}

fn remove_quietly<V: aya::Pod>(map: &mut HashMap<MapData, u32, V>, tgid: u32, what: &str) {
    match map.remove(&tgid) {
        Ok(()) | Err(MapError::KeyNotFound | MapError::ElementNotFound) => {}
        Err(MapError::SyscallError(e)) if e.io_error.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(tgid, error = %error_chain(&e), "eBPF {what} removal failed"),
    }
}

/// One program: its name (= tracepoint), the globals it cannot work without, the ones that only
/// degrade it (with what is lost), and whether the source is useless without it.
struct ProgramSpec {
    name: &'static str,
    required: &'static [&'static str],
    optional: &'static [(&'static str, &'static str)],
    essential: bool,
    attach_at_load: bool,
}

const PROGRAMS: &[ProgramSpec] = &[
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

fn load_object(object: &[u8], build_note: &str) -> Result<(Ebpf, RingReader), EbpfError> {
    if object.is_empty() {
        let reason = if build_note.is_empty() {
            "the build produced an empty object"
        } else {
            build_note
        };
        return Err(EbpfError::NotBuilt {
            reason: reason.to_owned(),
        });
    }
    let started = Instant::now();
    let offsets = Offsets::from_kernel()?;
    load_with(object, &offsets, started)
}

/// Loads with the given offsets (a missing one disables what needs it; tests remove some).
fn load_with(
    object: &[u8],
    offsets: &Offsets,
    started: Instant,
) -> Result<(Ebpf, RingReader), EbpfError> {
    // One parse of kernel BTF for the loader and every tp_btf program.
    let kernel_btf = Btf::from_sys_fs().map_err(|e| EbpfError::Btf {
        reason: error_chain(&e),
    })?;

    let values: Vec<(&'static str, u64)> = offsets
        .fields
        .iter()
        .map(|f| (f.global, f.value.unwrap_or(0)))
        .collect();
    let signal_mask = abi::REPORTED_SIGNALS;
    let mut loader = EbpfLoader::new();
    loader.btf(Some(&kernel_btf));
    for (global, value) in &values {
        loader.override_global(global, value, true);
    }
    loader.override_global(abi::GLOBAL_SIGNAL_MASK, &signal_mask, true);
    let mut bpf = loader.load(object).map_err(loader_error)?;

    let mut programs = Vec::new();
    let mut fallbacks = Vec::new();
    let mut rss_ready = false;
    for spec in PROGRAMS {
        if let Some(missing) = offsets.first_missing(spec.required) {
            if spec.essential {
                return Err(EbpfError::MissingField {
                    ty: missing.ty,
                    field: missing.field,
                });
            }
            fallbacks.push(format!("{}: kernel BTF has no {missing}", spec.name));
            continue;
        }
        match load_tp_btf(&mut bpf, &kernel_btf, spec.name, spec.attach_at_load) {
            Ok(()) => {
                programs.push(spec.name.to_owned());
                if spec.name == abi::PROG_RSS_STAT {
                    rss_ready = true;
                }
                let mut lost: Vec<&str> = Vec::new();
                for (global, what) in spec.optional {
                    if offsets.get(global).is_none() && !lost.contains(what) {
                        lost.push(what);
                    }
                }
                for what in lost {
                    fallbacks.push(format!("{}: {what} (field missing from BTF)", spec.name));
                }
            }
            Err(e) if spec.essential => return Err(e),
            Err(e) => fallbacks.push(format!("{}: {e}", spec.name)),
        }
    }

    let events = RingBuf::try_from(take_map(&mut bpf, abi::MAP_EVENTS)?).map_err(map_error)?;
    let watched = HashMap::try_from(take_map(&mut bpf, abi::MAP_WATCHED)?).map_err(map_error)?;
    let spawners = HashMap::try_from(take_map(&mut bpf, abi::MAP_SPAWNERS)?).map_err(map_error)?;
    let limits = HashMap::try_from(take_map(&mut bpf, abi::MAP_RSS_LIMITS)?).map_err(map_error)?;
    let lost = PerCpuArray::try_from(take_map(&mut bpf, abi::MAP_LOST)?).map_err(map_error)?;
    let runq = PerCpuHashMap::try_from(take_map(&mut bpf, abi::MAP_RUNQ)?).map_err(map_error)?;

    let ring = if tokio::runtime::Handle::try_current().is_ok() {
        Ring::Registered(register(events)?)
    } else {
        Ring::Unregistered(events)
    };

    drop(kernel_btf);
    // give back the heap used while parsing BTF (~10-15 MB)
    crate::os::alloc::trim_heap();
    let load_time = started.elapsed();
    tracing::debug!(
        elapsed_ms = load_time.as_secs_f64() * 1e3,
        ?programs,
        ?fallbacks,
        "eBPF programs loaded"
    );
    let page_size = crate::os::proc::page_size();
    Ok((
        Ebpf {
            bpf,
            watched,
            spawners,
            limits,
            lost,
            runq,
            programs,
            fallbacks,
            rss: RssStat {
                ready: rss_ready,
                link: None,
                limited: HashSet::new(),
            },
            page_size,
            load_time,
        },
        RingReader { ring, page_size },
    ))
}

fn load_tp_btf(
    bpf: &mut aya::Ebpf,
    btf: &Btf,
    program: &str,
    attach: bool,
) -> Result<(), EbpfError> {
    let prog: &mut BtfTracePoint = bpf
        .program_mut(program)
        .ok_or_else(|| EbpfError::Load(format!("program {program} is missing from the object")))?
        .try_into()
        .map_err(|e: ProgramError| EbpfError::Load(format!("{program}: {}", error_chain(&e))))?;
    prog.load(program, btf)
        .map_err(|e| program_error(program, e))?;
    if attach {
        prog.attach().map_err(|e| EbpfError::Attach {
            program: program.to_owned(),
            reason: error_chain(&e),
        })?;
    }
    Ok(())
}

fn take_map(bpf: &mut aya::Ebpf, name: &str) -> Result<Map, EbpfError> {
    bpf.take_map(name)
        .ok_or_else(|| EbpfError::Load(format!("map {name} is missing from the object")))
}

fn map_error(e: MapError) -> EbpfError {
    EbpfError::Load(error_chain(&e))
}

/// EPERM or EACCES (the standard library maps both to `PermissionDenied`).
fn is_permission(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
}

fn loader_error(e: aya::EbpfError) -> EbpfError {
    match e {
        aya::EbpfError::MapError(MapError::CreateError { ref io_error, .. })
            if is_permission(io_error) =>
        {
            EbpfError::PermissionDenied { what: "maps" }
        }
        aya::EbpfError::ProgramError(pe) => program_error("(object)", pe),
        other => EbpfError::Load(error_chain(&other)),
    }
}

fn program_error(program: &str, e: ProgramError) -> EbpfError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            if log.trim().is_empty() {
                if is_permission(&io_error) {
                    EbpfError::PermissionDenied { what: "programs" }
                } else {
                    EbpfError::Load(format!("{program}: BPF_PROG_LOAD failed: {io_error}"))
                }
            } else {
                EbpfError::Verifier {
                    program: program.to_owned(),
                    summary: summarize_verifier_log(&log),
                    log,
                }
            }
        }
        ProgramError::SyscallError(ref s) if is_permission(&s.io_error) => {
            EbpfError::PermissionDenied { what: "programs" }
        }
        other => EbpfError::Load(format!("{program}: {}", error_chain(&other))),
    }
}

/// The last lines of a verifier log that say what went wrong, on one line.
fn summarize_verifier_log(log: &str) -> String {
    let meaningful: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
        })
        .collect();
    let tail = &meaningful[meaningful.len().saturating_sub(2)..];
    let mut summary = tail.join(" / ");
    if summary.len() > 240 {
        let mut cut = 240;
        while !summary.is_char_boundary(cut) {
            cut -= 1;
        }
        summary.truncate(cut);
        summary.push('…');
    }
    summary
}

/// `e: cause: cause`, skipping causes whose text is already included.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

mod btf;
mod ring;
#[cfg(test)]
mod tests;

use btf::Offsets;
#[cfg(test)]
use ring::decode;
use ring::register;
