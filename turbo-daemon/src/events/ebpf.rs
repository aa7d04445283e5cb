//! The eBPF event source: loads the `turbo-ebpf` object embedded at build time, attaches its
//! BTF tracepoints and turns ring-buffer records into [`ProcEvent`]s.
//!
//! * [`Ebpf::load`] reads kernel struct field offsets from `/sys/kernel/btf/vmlinux` (btf-rs,
//!   mmap backend), patches them into the object's read-only globals, creates the maps, loads and
//!   attaches `tp_btf/sched_process_exit`, and returns the owner of the programs and the
//!   `WATCHED` map ([`Ebpf`]) plus the ring-buffer reader ([`RingReader`]). Every failure is an
//!   [`EbpfError`] whose `Display` is one line a user can act on; nothing here panics.
//! * The kernel side only reports thread groups that were [`Ebpf::watch`]ed, and forgets a tgid
//!   by itself when it reports its exit. A tgid watched after it already died is never
//!   reported: the caller still reaps its direct children through pidfd/waitpid, and should
//!   [`Ebpf::unwatch`] a pid whose exit it learnt about elsewhere (pids are reused).
//! * Needs Linux 5.8+ with BTF, and CAP_BPF + CAP_PERFMON (or root). No tracefs.

use std::{fmt, io, time::Instant};

use aya::{
    Btf, EbpfLoader,
    maps::{HashMap, Map, MapData, MapError, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, ProgramError},
};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc::UnboundedSender,
};
use turbo_common::{self as abi, RawEvent};

use super::{ProcEvent, SourceKind, WaitStatus};

/// The object built by `build.rs` (empty when the BPF toolchain was missing).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/turbo-ebpf"));
/// Why `OBJECT` is empty, when it is (set by `build.rs`).
const BUILD_NOTE: &str = env!("TURBO_EBPF_BUILD_NOTE");
/// Kernel BTF, the source of the field offsets and of the tracepoint type ids.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The `tp_btf` programs in the object and the kernel tracepoint each one attaches to.
const TP_BTF_PROGRAMS: &[(&str, &str)] = &[(abi::PROG_SCHED_PROCESS_EXIT, "sched_process_exit")];

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
    /// A struct field the programs read is not in this kernel's BTF.
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
    /// The ring buffer could not be registered with the tokio reactor.
    #[error("cannot poll the eBPF ring buffer: {0}")]
    Ring(#[source] io::Error),
}

/// The loaded, attached programs and the maps the daemon writes.
///
/// Dropping it detaches the programs (their links live in the inner `aya::Ebpf`).
pub struct Ebpf {
    /// Owns the programs and their links (never read: dropping it detaches them).
    _bpf: aya::Ebpf,
    watched: HashMap<MapData, u32, u8>,
    lost: PerCpuArray<MapData, u64>,
    programs: Vec<String>,
}

/// Reads the ring buffer the programs write into; see [`RingReader::run`].
pub struct RingReader {
    ring: Ring,
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
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RingReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingReader").finish_non_exhaustive()
    }
}

impl Ebpf {
    /// Loads and attaches all programs. Must not panic; every failure is an [`EbpfError`].
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

    /// Names of the attached programs (for `turbo info`).
    pub fn programs(&self) -> Vec<String> {
        self.programs.clone()
    }

    /// Starts reporting the exit of this tgid.
    pub fn watch(&mut self, tgid: u32) -> Result<(), EbpfError> {
        self.watched
            .insert(tgid, 1, 0)
            .map_err(|e| EbpfError::Watch {
                tgid,
                reason: error_chain(&e),
            })
    }

    /// Stops reporting it (ignore "not found").
    pub fn unwatch(&mut self, tgid: u32) {
        match self.watched.remove(&tgid) {
            Ok(()) => {}
            Err(MapError::KeyNotFound | MapError::ElementNotFound) => {}
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => tracing::warn!(tgid, error = %error_chain(&e), "eBPF unwatch failed"),
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
}

impl RingReader {
    /// Reads events forever, sending `ProcEvent::Exited { pid: tgid, status, source: Ebpf }`
    /// for each exit. Returns when `tx` is closed (or, logged, if polling the ring fails).
    pub async fn run(self, tx: UnboundedSender<ProcEvent>) {
        let mut fd = match self.ring {
            Ring::Registered(fd) => fd,
            Ring::Unregistered(ring) => match register(ring) {
                Ok(fd) => fd,
                Err(e) => {
                    tracing::error!(error = %e, "eBPF events stopped");
                    return;
                }
            },
        };
        loop {
            let mut guard = tokio::select! {
                ready = fd.readable_mut() => match ready {
                    Ok(guard) => guard,
                    Err(e) => {
                        tracing::error!(error = %e, "eBPF ring buffer poll failed; events stopped");
                        return;
                    }
                },
                () = tx.closed() => return,
            };
            let ring = guard.get_inner_mut();
            while let Some(item) = ring.next() {
                let Some(event) = decode(&item) else {
                    continue;
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
            guard.clear_ready();
        }
    }
}

/// One ring-buffer record to a [`ProcEvent`]; `None` for short records and unknown kinds.
fn decode(bytes: &[u8]) -> Option<ProcEvent> {
    if bytes.len() < size_of::<RawEvent>() {
        return None;
    }
    // SAFETY: the length was checked, and RawEvent is plain integers (any bit pattern is valid).
    let raw: RawEvent = unsafe { bytes.as_ptr().cast::<RawEvent>().read_unaligned() };
    match raw.kind {
        abi::EVENT_EXIT => Some(ProcEvent::Exited {
            pid: raw.tgid,
            status: WaitStatus(raw.wait_status()),
            source: SourceKind::Ebpf,
        }),
        _ => None,
    }
}

fn register(ring: RingBuf<MapData>) -> Result<AsyncFd<RingBuf<MapData>>, EbpfError> {
    // SAFETY: the RingBuf owns its map fd, which stays open and the same until the AsyncFd
    // (which owns the RingBuf) is dropped.
    unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| EbpfError::Ring(e.into()))
}

/// Kernel struct field offsets (bytes) the programs need, read from kernel BTF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Offsets {
    pub(crate) task_exit_code: u64,
    pub(crate) task_pid: u64,
    pub(crate) task_tgid: u64,
    pub(crate) task_signal: u64,
    pub(crate) signal_group_exit_code: u64,
}

impl Offsets {
    pub(crate) fn from_kernel() -> Result<Self, EbpfError> {
        let btf = btf_rs::Btf::from_file_with_backend(VMLINUX_BTF, btf_rs::Backend::Mmap).map_err(
            |e| EbpfError::Btf {
                reason: error_chain(&e),
            },
        )?;
        let off = |ty: &'static str, field: &'static str| {
            member_offset(&btf, ty, field).ok_or(EbpfError::MissingField { ty, field })
        };
        Ok(Self {
            task_exit_code: off("task_struct", "exit_code")?,
            task_pid: off("task_struct", "pid")?,
            task_tgid: off("task_struct", "tgid")?,
            task_signal: off("task_struct", "signal")?,
            signal_group_exit_code: off("signal_struct", "group_exit_code")?,
        })
    }
}

/// Byte offset of `field` in `struct ty`, looking into anonymous struct/union members.
fn member_offset(btf: &btf_rs::Btf, ty: &str, field: &str) -> Option<u64> {
    btf.resolve_types_by_name(ty)
        .ok()?
        .iter()
        .find_map(|t| match t {
            btf_rs::Type::Struct(s) => find_member(btf, s, field, 0, 0),
            _ => None,
        })
}

fn find_member(
    btf: &btf_rs::Btf,
    s: &btf_rs::Struct,
    field: &str,
    base_bits: u64,
    depth: u32,
) -> Option<u64> {
    if depth > 8 {
        return None;
    }
    for m in &s.members {
        let bits = base_bits + u64::from(m.bit_offset());
        let name = btf.resolve_name(m).unwrap_or_default();
        if name == field {
            // Bitfields and sub-byte offsets cannot be read with a byte offset.
            return (m.bitfield_size().unwrap_or(0) == 0 && bits.is_multiple_of(8))
                .then_some(bits / 8);
        }
        if !name.is_empty() {
            continue;
        }
        // Anonymous member: follow typedefs/qualifiers to the struct or union.
        let mut t = btf.resolve_chained_type(m).ok()?;
        for _ in 0..8 {
            t = match &t {
                btf_rs::Type::Struct(inner) | btf_rs::Type::Union(inner) => {
                    if let Some(off) = find_member(btf, inner, field, bits, depth + 1) {
                        return Some(off);
                    }
                    break;
                }
                btf_rs::Type::Typedef(x) => btf.resolve_chained_type(x).ok()?,
                btf_rs::Type::Volatile(x) | btf_rs::Type::Const(x) | btf_rs::Type::Restrict(x) => {
                    btf.resolve_chained_type(x).ok()?
                }
                btf_rs::Type::TypeTag(x) => btf.resolve_chained_type(x).ok()?,
                _ => break,
            };
        }
    }
    None
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
    // One parse of kernel BTF for the loader and every tp_btf program.
    let kernel_btf = Btf::from_sys_fs().map_err(|e| EbpfError::Btf {
        reason: error_chain(&e),
    })?;

    let mut bpf = EbpfLoader::new()
        .btf(Some(&kernel_btf))
        .override_global(
            abi::GLOBAL_OFF_TASK_EXIT_CODE,
            &offsets.task_exit_code,
            true,
        )
        .override_global(abi::GLOBAL_OFF_TASK_PID, &offsets.task_pid, true)
        .override_global(abi::GLOBAL_OFF_TASK_TGID, &offsets.task_tgid, true)
        .override_global(abi::GLOBAL_OFF_TASK_SIGNAL, &offsets.task_signal, true)
        .override_global(
            abi::GLOBAL_OFF_SIGNAL_GROUP_EXIT_CODE,
            &offsets.signal_group_exit_code,
            true,
        )
        .load(object)
        .map_err(loader_error)?;

    let mut programs = Vec::new();
    for &(program, tracepoint) in TP_BTF_PROGRAMS {
        attach_tp_btf(&mut bpf, &kernel_btf, program, tracepoint)?;
        programs.push(program.to_owned());
    }

    let events = RingBuf::try_from(take_map(&mut bpf, abi::MAP_EVENTS)?).map_err(map_error)?;
    let watched = HashMap::try_from(take_map(&mut bpf, abi::MAP_WATCHED)?).map_err(map_error)?;
    let lost = PerCpuArray::try_from(take_map(&mut bpf, abi::MAP_LOST)?).map_err(map_error)?;

    let ring = if tokio::runtime::Handle::try_current().is_ok() {
        Ring::Registered(register(events)?)
    } else {
        Ring::Unregistered(events)
    };

    drop(kernel_btf);
    trim_heap();
    tracing::debug!(
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        ?offsets,
        "eBPF programs attached"
    );
    Ok((
        Ebpf {
            _bpf: bpf,
            watched,
            lost,
            programs,
        },
        RingReader { ring },
    ))
}

fn attach_tp_btf(
    bpf: &mut aya::Ebpf,
    btf: &Btf,
    program: &str,
    tracepoint: &str,
) -> Result<(), EbpfError> {
    let prog: &mut BtfTracePoint = bpf
        .program_mut(program)
        .ok_or_else(|| EbpfError::Load(format!("program {program} is missing from the object")))?
        .try_into()
        .map_err(|e: ProgramError| EbpfError::Load(format!("{program}: {}", error_chain(&e))))?;
    prog.load(tracepoint, btf)
        .map_err(|e| program_error(program, e))?;
    prog.attach().map_err(|e| EbpfError::Attach {
        program: program.to_owned(),
        reason: error_chain(&e),
    })?;
    Ok(())
}

fn take_map(bpf: &mut aya::Ebpf, name: &str) -> Result<Map, EbpfError> {
    bpf.take_map(name)
        .ok_or_else(|| EbpfError::Load(format!("map {name} is missing from the object")))
}

fn map_error(e: MapError) -> EbpfError {
    EbpfError::Load(error_chain(&e))
}

fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
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

/// Give back the heap used while parsing BTF (~10-15 MB) to the OS.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; no pointers are invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        process::{Command, Stdio},
        time::Duration,
    };

    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    use super::*;

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// Whether a real eBPF test can run; prints why not. Under CI a missing object fails.
    fn can_run_ebpf(test: &str) -> bool {
        if !is_root() {
            eprintln!(
                "SKIPPED: {test} needs root (CAP_BPF+CAP_PERFMON) to load eBPF; \
                 it did NOT run"
            );
            return false;
        }
        if !Ebpf::object_built() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must build the eBPF object, but: {BUILD_NOTE}"
            );
            eprintln!("SKIPPED: {test}: eBPF object not built ({BUILD_NOTE}); it did NOT run");
            return false;
        }
        true
    }

    /// Loads the programs (they must load: these tests run as root) and starts the reader.
    fn load_and_read() -> (Ebpf, UnboundedReceiver<ProcEvent>) {
        let (ebpf, ring) = Ebpf::load().unwrap_or_else(|e| panic!("eBPF must load as root: {e}"));
        let (tx, rx) = unbounded_channel();
        tokio::spawn(ring.run(tx));
        (ebpf, rx)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    }

    async fn next_exit_of(rx: &mut UnboundedReceiver<ProcEvent>, pid: u32) -> ProcEvent {
        let wait = async {
            loop {
                match rx.recv().await {
                    Some(ev @ ProcEvent::Exited { pid: p, .. }) if p == pid => return ev,
                    Some(_) => {}
                    None => panic!("ring reader stopped before pid {pid} exited"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(2), wait)
            .await
            .unwrap_or_else(|_| panic!("no eBPF exit event for pid {pid} within 2 s"))
    }

    #[test]
    fn btf_offsets_are_non_zero() {
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            eprintln!("SKIPPED: btf_offsets_are_non_zero: no {VMLINUX_BTF} on this kernel");
            return;
        }
        let off = Offsets::from_kernel().expect("offsets from kernel BTF");
        eprintln!("{off:?}");
        for (name, v) in [
            ("task_struct.exit_code", off.task_exit_code),
            ("task_struct.pid", off.task_pid),
            ("task_struct.tgid", off.task_tgid),
            ("task_struct.signal", off.task_signal),
            ("signal_struct.group_exit_code", off.signal_group_exit_code),
        ] {
            assert_ne!(v, 0, "{name}");
        }
        // `pid_t pid; pid_t tgid;` are adjacent in every kernel.
        assert_eq!(off.task_tgid, off.task_pid + 4);
    }

    #[test]
    fn empty_object_is_an_error_not_a_panic() {
        let err = load_object(&[], "bpf-linker was missing at build time")
            .expect_err("an empty object cannot load");
        assert!(matches!(err, EbpfError::NotBuilt { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "eBPF object not built: bpf-linker was missing at build time"
        );
        let err = load_object(b"not an ELF file", "").expect_err("garbage cannot load");
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn decode_maps_raw_events() {
        let raw = RawEvent {
            kind: abi::EVENT_EXIT,
            tgid: 42,
            pid: 43,
            exit_code: 0x300,
            group_exit_code: 0x300,
            _pad: 0,
            ktime_ns: 1,
        };
        // SAFETY: RawEvent is plain integers without padding.
        let bytes: [u8; 32] = unsafe { std::mem::transmute(raw) };
        assert_eq!(
            decode(&bytes),
            Some(ProcEvent::Exited {
                pid: 42,
                status: WaitStatus::exited(3),
                source: SourceKind::Ebpf
            })
        );
        assert_eq!(decode(&bytes[..16]), None);
        let mut other = raw;
        other.kind = 999;
        // SAFETY: as above.
        let bytes: [u8; 32] = unsafe { std::mem::transmute(other) };
        assert_eq!(decode(&bytes), None);
    }

    #[test]
    fn handles_and_reader_future_are_send() {
        fn is_send<T: Send>(_: &T) {}
        // Type-checked, never called: the daemon may move these into spawned tasks.
        let _check = |ebpf: Ebpf, ring: RingReader, tx: UnboundedSender<ProcEvent>| {
            is_send(&ebpf);
            is_send(&ring.run(tx));
        };
    }

    #[test]
    fn verifier_log_summary_is_one_short_line() {
        let log = "0: (79) r1 = *(u64 *)(r1 +0)\n; foo\n1: R1 invalid mem access 'scalar'\n\
                   processed 12 insns (limit 1000000)\n";
        assert_eq!(
            summarize_verifier_log(log),
            "; foo / 1: R1 invalid mem access 'scalar'"
        );
    }

    #[test]
    fn ebpf_reports_sigkill() {
        if !can_run_ebpf("ebpf_reports_sigkill") {
            return;
        }
        runtime().block_on(async {
            let (mut ebpf, ring) =
                Ebpf::load().unwrap_or_else(|e| panic!("eBPF must load as root: {e}"));
            assert_eq!(ebpf.programs(), [abi::PROG_SCHED_PROCESS_EXIT]);
            let (tx, mut rx) = unbounded_channel();
            let reader = tokio::spawn(ring.run(tx));

            let mut child = Command::new("sleep")
                .arg("1000")
                .spawn()
                .expect("spawn sleep");
            let pid = child.id();
            ebpf.watch(pid).expect("watch");
            let killed = Instant::now();
            child.kill().expect("SIGKILL");
            let ev = next_exit_of(&mut rx, pid).await;
            eprintln!("eBPF event after {:?}: {ev:?}", killed.elapsed());
            let _ = child.wait();
            let ProcEvent::Exited { status, source, .. } = ev;
            assert_eq!(source, SourceKind::Ebpf);
            assert_eq!(status.signal(), Some(9), "{status:?}");
            assert_eq!(ebpf.lost_events(), 0);
            // The kernel forgot the tgid itself; unwatching again is harmless.
            ebpf.unwatch(pid);

            drop(rx);
            tokio::time::timeout(Duration::from_secs(2), reader)
                .await
                .expect("run returns once the receiver is gone")
                .expect("reader task");
        });
    }

    #[test]
    fn ebpf_reports_exit_code() {
        if !can_run_ebpf("ebpf_reports_exit_code") {
            return;
        }
        runtime().block_on(async {
            let (mut ebpf, mut rx) = load_and_read();

            let mut child = Command::new("sh")
                .args(["-c", "read x; exit 3"])
                .stdin(Stdio::piped())
                .spawn()
                .expect("spawn sh");
            let pid = child.id();
            ebpf.watch(pid).expect("watch");
            drop(child.stdin.take()); // EOF: `read` returns, the shell exits 3
            let ev = next_exit_of(&mut rx, pid).await;
            eprintln!("eBPF event: {ev:?}");
            let _ = child.wait();
            assert_eq!(
                ev,
                ProcEvent::Exited {
                    pid,
                    status: WaitStatus::exited(3),
                    source: SourceKind::Ebpf
                }
            );
        });
    }

    #[test]
    fn unwatched_exits_are_not_reported() {
        if !can_run_ebpf("unwatched_exits_are_not_reported") {
            return;
        }
        runtime().block_on(async {
            let (mut ebpf, mut rx) = load_and_read();

            let quiet = Command::new("true").status().expect("run true");
            assert!(quiet.success());
            let mut child = Command::new("sleep")
                .arg("1000")
                .spawn()
                .expect("spawn sleep");
            let pid = child.id();
            ebpf.watch(pid).expect("watch");
            child.kill().expect("SIGKILL");
            // The first event is the watched one: `true` (and the rest of the system) is filtered.
            let first = tokio::time::timeout(Duration::from_secs(2), rx.recv())
                .await
                .expect("an event within 2 s")
                .expect("reader alive");
            let _ = child.wait();
            assert!(
                matches!(first, ProcEvent::Exited { pid: p, .. } if p == pid),
                "{first:?}"
            );
        });
    }
}
