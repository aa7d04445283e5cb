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
//! * Layout: this file loads and owns; `programs` is the table of programs and what each needs,
//!   `btf` reads the field offsets, `ring` decodes the ring buffer (exits, forks, execs,
//!   signals, OOM victims, memory crossings, TCP events), `memory` runs `rss_stat` and its
//!   limits, `insight` reads the scheduler programs' map and says whether the network program
//!   is there.
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
    programs::{BtfTracePoint, ProgramError},
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
    /// The reader's hurry handle (see [`Ebpf::hurry_reader`]).
    hurry: std::sync::Arc<tokio::sync::Notify>,
}

/// Reads the ring buffer the programs write into; see [`RingReader::run`].
pub struct RingReader {
    ring: Ring,
    page_size: u64,
    /// Cuts the reader's pause under a flood short (`ring` module docs).
    hurry: std::sync::Arc<tokio::sync::Notify>,
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

    /// Every watched tgid with its key, as the kernel knows them now: its programs add a
    /// fork's child and remove an exit's process themselves, so this is the truth even when
    /// the ring buffer dropped the events that announced them. One map walk (two syscalls an
    /// entry): for recovering from lost events, not for a hot path.
    #[must_use]
    pub fn watched_all(&self) -> Vec<(u32, u32)> {
        self.watched.iter().filter_map(Result::ok).collect()
    }

    /// Stops reporting it, and clears its memory limit (ignores "not found").
    pub fn unwatch(&mut self, tgid: u32) {
        remove_quietly(&mut self.watched, tgid, "unwatch");
        if self.rss.limited.contains(&tgid) {
            self.clear_memory_limit(tgid);
        }
    }

    /// Makes the ring-buffer reader read what the kernel wrote so far now, even if it is
    /// pausing under a flood of events (see the `ring` module).
    pub fn hurry_reader(&self) {
        self.hurry.notify_one();
    }

    /// Events the kernel dropped because the ring buffer was full (for `turbo_events_lost_total`).
    #[must_use]
    pub fn lost_events(&self) -> u64 {
        self.lost
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().copied().fold(0u64, u64::wrapping_add))
            .unwrap_or(0)
    }
}

fn remove_quietly<V: aya::Pod>(map: &mut HashMap<MapData, u32, V>, tgid: u32, what: &str) {
    match map.remove(&tgid) {
        Ok(()) | Err(MapError::KeyNotFound | MapError::ElementNotFound) => {}
        Err(MapError::SyscallError(e)) if e.io_error.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(tgid, error = %error_chain(&e), "eBPF {what} removal failed"),
    }
}

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
    let reader = RingReader {
        ring,
        page_size,
        hurry: std::sync::Arc::default(),
    };
    Ok((
        Ebpf {
            hurry: reader.hurry(),
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
        reader,
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
mod insight;
mod memory;
mod programs;
mod ring;
#[cfg(test)]
mod tests;

use btf::Offsets;
use memory::RssStat;
use programs::PROGRAMS;
#[cfg(test)]
use ring::decode;
use ring::register;
