//! Event sources: turn kernel (eBPF) or `/proc` observations into one stream of [`Event`]s.
//!
//! The supervisor cannot tell which source produced an event; it only sees the `source` tag,
//! which is kept for reporting (`turbo info`, `last_exit.source`). This module decides which
//! source is active (`TURBO_EBPF=auto|require|off`), and offers one handle, [`EventSource`], to
//! say which processes to watch (with an app key that comes back in every event, also for their
//! descendants) and which memory limits to watch for. It must not make supervision decisions,
//! and it never acts on processes (no signals, no reaping: the runtime reaps its children).
//!
//! * [`ebpf`]: the kernel programs; exact and immediate.
//! * [`procfs`]: scanning `/proc` every `scan_interval`; the same events where it can see them
//!   (no OOM-victim or signal events; short-lived processes between two scans are missed; exit
//!   statuses of descendants only when caught as zombies), and nothing at all while idle.

pub mod ebpf;
pub mod procfs;

#[cfg(test)]
mod tests;

use std::{fmt, net::SocketAddr, time::Duration};

use tokio::sync::mpsc::UnboundedSender;

/// Which source delivered an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// The eBPF programs in `turbo-ebpf`.
    Ebpf,
    /// `/proc` scanning and pidfd reaping of direct children.
    Procfs,
}

impl SourceKind {
    /// The name used in `turbo info`, JSON and metrics.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ebpf => "ebpf",
            Self::Procfs => "procfs",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a process ended (defined with the reaping, in the OS layer).
pub use crate::os::process::WaitStatus;

/// One observation about a supervised process tree. Every variant carries the app `key` given
/// to [`EventSource::watch`] (inherited by descendants) and the `source` that saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The thread group `pid` is gone (its last thread exited).
    ///
    /// eBPF reports every watched process, with the real status, before the parent can reap it.
    /// procfs reports only *descendants* (never the pids given to `watch`, which the runtime
    /// reaps itself), with the status when it caught the zombie, else [`WaitStatus::UNKNOWN`].
    Exited {
        /// Thread-group id.
        pid: u32,
        /// App key.
        key: u32,
        /// How it ended.
        status: WaitStatus,
        /// Its memory at the end, when the source could read it (eBPF: before the kernel
        /// freed it; procfs: never).
        memory: Option<ExitMemory>,
        /// Who told us.
        source: SourceKind,
    },
    /// A watched process created a new process (not a thread), which is now watched too.
    Forked {
        /// The forking process (thread-group id).
        parent: u32,
        /// The new process.
        child: u32,
        /// App key (the parent's).
        key: u32,
        /// False when the kernel's watch map was full: the child's own events will be missing.
        tracked: bool,
        /// Who told us.
        source: SourceKind,
    },
    /// A watched process exec'd a new program.
    Exec {
        /// Thread-group id.
        pid: u32,
        /// App key.
        key: u32,
        /// eBPF: the path as given to execve (cut to 255 bytes). procfs: `/proc/<pid>/exe`, or
        /// the new `comm` when that is unreadable. A process watched right after `spawn` may
        /// report its own first exec: `spawn` returns while the kernel is still finishing it.
        filename: String,
        /// Who told us.
        source: SourceKind,
    },
    /// The kernel OOM killer chose this process as its victim; a SIGKILL ([`Event::Signaled`]
    /// with `code` 0x80) and the exit (signal 9) follow. eBPF only.
    OomKilled {
        /// Thread-group id.
        pid: u32,
        /// App key.
        key: u32,
        /// The victim's memory when chosen.
        memory: OomMemory,
        /// Who told us.
        source: SourceKind,
    },
    /// A signal whose default action ends the process (any of them, real-time ones included:
    /// [`turbo_common::default_fatal`]), or SIGSTOP or SIGCONT, was generated for this process.
    /// It may still handle it; the exit, if any, is a separate event. Ignored signals and
    /// duplicates of a pending one are not reported. eBPF only.
    Signaled {
        /// Thread-group id of the target.
        pid: u32,
        /// App key.
        key: u32,
        /// Signal number.
        signal: i32,
        /// `si_code`: 0 `kill`, -1 `sigqueue`, -6 `tkill`, 0x80 the kernel (OOM killer), > 0 a
        /// fault (e.g. SEGV_MAPERR 1).
        code: i32,
        /// The process that sent it, when a process did (`code <= 0`); `None` when the kernel
        /// generated it.
        sender: Option<Sender>,
        /// Who told us.
        source: SourceKind,
    },
    /// Resident memory reached the limit set with [`EventSource::set_memory_limit`] (also sent
    /// at once when the limit is set below the current usage).
    MemoryOver {
        /// Thread-group id.
        pid: u32,
        /// App key (0 if the pid is not watched).
        key: u32,
        /// Resident bytes (file + anon + shmem) at the crossing.
        rss: u64,
        /// The limit in bytes (rounded up to whole pages).
        limit: u64,
        /// Who told us.
        source: SourceKind,
    },
    /// Resident memory fell below 7/8 of the limit after a [`Event::MemoryOver`].
    MemoryUnder {
        /// Thread-group id.
        pid: u32,
        /// App key (0 if the pid is not watched).
        key: u32,
        /// Resident bytes at the crossing.
        rss: u64,
        /// The limit in bytes.
        limit: u64,
        /// Who told us.
        source: SourceKind,
    },
    /// A TCP socket of a watched app changed state (eBPF only).
    Net {
        /// The process that did it; 0 for [`NetKind::Accept`] and [`NetKind::Unlisten`], which
        /// the kernel does outside any process of the app.
        pid: u32,
        /// App key.
        key: u32,
        /// What happened.
        kind: NetKind,
        /// The local address and port (the port may be 0 on a connect: the kernel picks it
        /// right after).
        local: SocketAddr,
        /// The peer (unspecified for a listener).
        remote: SocketAddr,
        /// Who told us.
        source: SourceKind,
    },
}

/// What [`Event::Net`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetKind {
    /// A process of the app called `listen()`.
    Listen,
    /// That listening socket closed.
    Unlisten,
    /// A process of the app sent a SYN to `remote`.
    Connect,
    /// The kernel established a connection from `remote` on a port the app listens on.
    Accept,
}

impl NetKind {
    /// The name used in JSON, metrics labels and `turbo events`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Listen => "listen",
            Self::Unlisten => "unlisten",
            Self::Connect => "connect",
            Self::Accept => "accept",
        }
    }
}

impl Event {
    /// The process the event is about (the child for [`Event::Forked`]).
    #[must_use]
    pub const fn pid(&self) -> u32 {
        match *self {
            Self::Exited { pid, .. }
            | Self::Exec { pid, .. }
            | Self::OomKilled { pid, .. }
            | Self::Signaled { pid, .. }
            | Self::MemoryOver { pid, .. }
            | Self::MemoryUnder { pid, .. }
            | Self::Net { pid, .. } => pid,
            Self::Forked { child, .. } => child,
        }
    }

    /// The app key.
    #[must_use]
    pub const fn key(&self) -> u32 {
        match *self {
            Self::Exited { key, .. }
            | Self::Forked { key, .. }
            | Self::Exec { key, .. }
            | Self::OomKilled { key, .. }
            | Self::Signaled { key, .. }
            | Self::MemoryOver { key, .. }
            | Self::MemoryUnder { key, .. }
            | Self::Net { key, .. } => key,
        }
    }

    /// Which source saw it.
    #[must_use]
    pub const fn source(&self) -> SourceKind {
        match *self {
            Self::Exited { source, .. }
            | Self::Forked { source, .. }
            | Self::Exec { source, .. }
            | Self::OomKilled { source, .. }
            | Self::Signaled { source, .. }
            | Self::MemoryOver { source, .. }
            | Self::MemoryUnder { source, .. }
            | Self::Net { source, .. } => source,
        }
    }

    /// A crossing of a memory threshold: [`Event::MemoryOver`] when `over`, else
    /// [`Event::MemoryUnder`]. Both sources build theirs here.
    #[must_use]
    pub const fn memory(
        over: bool,
        pid: u32,
        key: u32,
        rss: u64,
        limit: u64,
        source: SourceKind,
    ) -> Self {
        if over {
            Self::MemoryOver {
                pid,
                key,
                rss,
                limit,
                source,
            }
        } else {
            Self::MemoryUnder {
                pid,
                key,
                rss,
                limit,
                source,
            }
        }
    }

    /// A short name of the variant, for logs and metrics labels.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Exited { .. } => "exited",
            Self::Forked { .. } => "forked",
            Self::Exec { .. } => "exec",
            Self::OomKilled { .. } => "oom_killed",
            Self::Signaled { .. } => "signaled",
            Self::MemoryOver { .. } => "memory_over",
            Self::MemoryUnder { .. } => "memory_under",
            Self::Net { .. } => "net",
        }
    }
}

/// A process's memory when it ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitMemory {
    /// Resident bytes at the end (0 when unreadable).
    pub rss_bytes: u64,
    /// Peak resident bytes of its current program (since its last exec; 0 when unreadable).
    pub peak_bytes: u64,
}

/// Who sent a signal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    /// Thread-group id of the sender.
    pub pid: u32,
    /// Its `comm` (the kernel's 15-byte command name).
    pub comm: String,
}

/// An OOM victim's memory when the OOM killer chose it (0 where the kernel's BTF lacked a field).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OomMemory {
    /// Virtual size.
    pub total_vm_bytes: u64,
    /// Resident anonymous memory.
    pub anon_rss_bytes: u64,
    /// Resident file-backed memory.
    pub file_rss_bytes: u64,
    /// Resident shared memory.
    pub shmem_rss_bytes: u64,
    /// Its `oom_score_adj`.
    pub oom_score_adj: i32,
    /// Its `comm`.
    pub comm: String,
}

impl OomMemory {
    /// Resident bytes (anon + file + shmem).
    #[must_use]
    pub const fn rss_bytes(&self) -> u64 {
        self.anon_rss_bytes + self.file_rss_bytes + self.shmem_rss_bytes
    }
}

/// What setting a memory limit found (returned by the source-specific setters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimitChange {
    /// Resident bytes now.
    pub rss_bytes: u64,
    /// The limit as applied (whole pages).
    pub limit_bytes: u64,
    /// Over before (a previous limit).
    pub was_over: bool,
    /// Over now.
    pub over: bool,
}

/// The hysteresis both sources use: over once `rss >= limit`, and over until `rss` falls below
/// 7/8 of the limit.
#[must_use]
pub const fn next_over(was_over: bool, rss: u64, limit: u64) -> bool {
    if was_over {
        !turbo_common::rss_is_under(rss, limit)
    } else {
        rss >= limit
    }
}

/// `TURBO_EBPF` / `--ebpf`: whether to use eBPF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EbpfSetting {
    /// Use eBPF when it loads, else fall back to procfs and say why.
    #[default]
    Auto,
    /// Fail start-up if eBPF does not load.
    Require,
    /// Do not try eBPF.
    Off,
}

impl EbpfSetting {
    /// The spelling used in `turbo info`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Require => "require",
            Self::Off => "off",
        }
    }
}

/// Error from [`EventSource`] calls.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The eBPF maps refused the change.
    #[error(transparent)]
    Ebpf(#[from] ebpf::EbpfError),
    /// The process is not there (or `/proc` cannot be read).
    #[error("pid {pid}: {reason}")]
    Process {
        /// The pid.
        pid: u32,
        /// Why.
        reason: String,
    },
}

/// Settings of the event sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceOptions {
    /// How often the procfs source scans `/proc` (and samples memory against limits) while it
    /// watches something. It does nothing while idle.
    pub scan_interval: Duration,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            scan_interval: Duration::from_secs(1),
        }
    }
}

/// The active event source: the one handle the runtime talks to.
///
/// With eBPF active, memory limits fall back to procfs sampling when the `rss_stat` program is
/// unavailable (listed in [`EventSource::fallbacks`]). Dropping it stops the source (programs
/// detached, scanner ended); the event channel then closes.
#[derive(Debug)]
pub struct EventSource {
    kind: SourceKind,
    reason: String,
    ebpf: Option<ebpf::Ebpf>,
    /// The whole source (procfs), or only the memory sampler (eBPF without `rss_stat`).
    procfs: Option<procfs::Procfs>,
    fallbacks: Vec<String>,
    tx: UnboundedSender<Event>,
}

/// Picks the event source and starts it; its events go to `tx`. Call inside the tokio runtime
/// that will run the daemon (IO and time enabled).
///
/// # Errors
/// With [`EbpfSetting::Require`], the loader's error when eBPF cannot be used.
pub fn start(
    setting: EbpfSetting,
    options: SourceOptions,
    tx: UnboundedSender<Event>,
) -> Result<EventSource, String> {
    let procfs_source = |reason: String| {
        let procfs = procfs::Procfs::start(
            procfs::ProcfsOptions {
                interval: options.scan_interval,
                track_trees: true,
            },
            tx.clone(),
        );
        EventSource {
            kind: SourceKind::Procfs,
            reason,
            ebpf: None,
            procfs: Some(procfs),
            fallbacks: Vec::new(),
            tx: tx.clone(),
        }
    };
    if setting == EbpfSetting::Off {
        return Ok(procfs_source("eBPF disabled (TURBO_EBPF=off)".into()));
    }
    match ebpf::Ebpf::load() {
        Ok((loaded, reader)) => {
            tokio::spawn(reader.run(tx.clone()));
            let mut fallbacks = loaded.fallbacks();
            let procfs = if loaded.memory_limits_supported() {
                None
            } else {
                fallbacks.push(format!(
                    "memory limits: sampled from /proc every {:?} (rss_stat unavailable)",
                    options.scan_interval
                ));
                Some(procfs::Procfs::start(
                    procfs::ProcfsOptions {
                        interval: options.scan_interval,
                        track_trees: false,
                    },
                    tx.clone(),
                ))
            };
            Ok(EventSource {
                kind: SourceKind::Ebpf,
                reason: format!("eBPF programs loaded: {}", loaded.programs().join(", ")),
                ebpf: Some(loaded),
                procfs,
                fallbacks,
                tx,
            })
        }
        Err(e) if setting == EbpfSetting::Require => Err(format!(
            "eBPF is required (TURBO_EBPF=require) but cannot be used: {e}"
        )),
        Err(e) => {
            tracing::warn!("eBPF unavailable, falling back to procfs: {e}");
            Ok(procfs_source(format!("eBPF unavailable: {e}")))
        }
    }
}

impl EventSource {
    /// Which source is active.
    #[must_use]
    pub const fn kind(&self) -> SourceKind {
        self.kind
    }

    /// Why this source (for procfs: why not eBPF).
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The eBPF programs in use (empty for procfs); `rss_stat` is listed when ready to attach.
    #[must_use]
    pub fn programs(&self) -> Vec<String> {
        self.ebpf
            .as_ref()
            .map(ebpf::Ebpf::programs)
            .unwrap_or_default()
    }

    /// What fell back or is degraded, and why, one line each (empty when nothing did).
    #[must_use]
    pub fn fallbacks(&self) -> Vec<String> {
        self.fallbacks.clone()
    }

    /// Events the kernel dropped because the ring buffer was full.
    #[must_use]
    pub fn lost_events(&self) -> u64 {
        self.ebpf.as_ref().map_or(0, ebpf::Ebpf::lost_events)
    }

    /// Makes the eBPF reader pass on every event written so far without its flood pause, for
    /// a caller that must see them all now (nothing to do with procfs).
    pub fn hurry(&self) {
        if let Some(ebpf) = &self.ebpf {
            ebpf.hurry_reader();
        }
    }

    /// Every process the kernel watches for an app, with the app's key (eBPF only: `None`
    /// with the procfs fallback, which announces nothing it could lose).
    #[must_use]
    pub fn watched_all(&self) -> Option<Vec<(u32, u32)>> {
        self.ebpf.as_ref().map(ebpf::Ebpf::watched_all)
    }

    /// The eBPF handle, when eBPF is active (load time, attached programs, watched keys).
    #[must_use]
    pub const fn ebpf(&self) -> Option<&ebpf::Ebpf> {
        self.ebpf.as_ref()
    }

    /// Makes the kernel watch, with `key`, the processes this thread forks until
    /// [`EventSource::spawned`]: around an app's spawn, so the app is watched before its first
    /// instruction and nothing it does is missed however short its life (eBPF only; a failure
    /// is logged and [`EventSource::watch`] after the spawn still covers most of it).
    pub fn spawning(&mut self, key: u32) {
        if let Some(ebpf) = self.ebpf.as_mut()
            && let Err(e) = ebpf.spawning(key)
        {
            tracing::warn!("eBPF cannot watch the next spawn from its fork: {e}");
        }
    }

    /// Ends [`EventSource::spawning`].
    pub fn spawned(&mut self) {
        if let Some(ebpf) = self.ebpf.as_mut() {
            ebpf.spawned();
        }
    }

    /// Starts watching `pid` and every process it forks from now on, reporting them with `key`.
    /// Call it right after spawning (or adopting) the process.
    ///
    /// # Errors
    /// When the pid cannot be watched (eBPF map full; procfs: no such process). Its exit is then
    /// still seen by the runtime's pidfd; only the extra events are lost.
    pub fn watch(&mut self, pid: u32, key: u32) -> Result<(), SourceError> {
        if let Some(ebpf) = self.ebpf.as_mut() {
            ebpf.watch_app(pid, key)?;
            // the kernel only sees forks from now on: children forked between the exec and this
            // watch (`sh -c 'a & b & wait'`) are adopted into the tree here, with their own
            // descendants, and reported like a fork
            let mut stack = vec![pid];
            while let Some(parent) = stack.pop() {
                for child in crate::os::proc::all_children(parent) {
                    if ebpf.watched_key(child).is_some() {
                        continue;
                    }
                    let tracked = ebpf.watch_app(child, key).is_ok();
                    let _ = self.tx.send(Event::Forked {
                        parent,
                        child,
                        key,
                        tracked,
                        source: SourceKind::Ebpf,
                    });
                    stack.push(child);
                }
            }
        }
        if let Some(procfs) = &self.procfs {
            let watched = procfs.watch(pid, key);
            // Next to eBPF the sampler only needs the key for memory events: not fatal.
            if self.ebpf.is_none() {
                watched?;
            }
        }
        Ok(())
    }

    /// Stops watching `pid` (not its descendants, which end by themselves) and clears its
    /// memory limit. Call it once the runtime has reaped the process (pids are reused).
    pub fn unwatch(&mut self, pid: u32) {
        if let Some(ebpf) = self.ebpf.as_mut() {
            ebpf.unwatch(pid);
        }
        if let Some(procfs) = &self.procfs {
            procfs.unwatch(pid);
        }
    }

    /// Reports [`Event::MemoryOver`] when `pid`'s resident memory reaches `bytes`, and
    /// [`Event::MemoryUnder`] when it falls below 7/8 of it. If it is over already, `MemoryOver`
    /// is sent at once. Setting it again changes the limit; the limit ends with the process.
    ///
    /// # Errors
    /// No such process, or the kernel map refused it.
    pub fn set_memory_limit(&mut self, pid: u32, bytes: u64) -> Result<(), SourceError> {
        if let Some(ebpf) = self.ebpf.as_mut()
            && ebpf.memory_limits_supported()
        {
            let change = ebpf.set_memory_limit(pid, bytes)?;
            let key = ebpf.watched_key(pid).unwrap_or(0);
            // a new threshold starts fresh: report at once only a process already over it
            if change.over {
                let (rss, limit) = (change.rss_bytes, change.limit_bytes);
                let _ = self
                    .tx
                    .send(Event::memory(true, pid, key, rss, limit, SourceKind::Ebpf));
            }
            return Ok(());
        }
        match &self.procfs {
            Some(procfs) => procfs.set_memory_limit(pid, bytes),
            None => Err(SourceError::Process {
                pid,
                reason: "no memory source".into(),
            }),
        }
    }

    /// Stops reporting memory crossings for `pid` (no event is sent).
    pub fn clear_memory_limit(&mut self, pid: u32) {
        if let Some(ebpf) = self.ebpf.as_mut()
            && ebpf.memory_limits_supported()
        {
            ebpf.clear_memory_limit(pid);
        }
        if let Some(procfs) = &self.procfs {
            procfs.clear_memory_limit(pid);
        }
    }

    /// The cumulative run-queue figures of app `key` (eBPF with the scheduler programs), or
    /// why there are none.
    ///
    /// # Errors
    /// The reason, for the user: not eBPF, or the scheduler programs are missing.
    pub fn runq(&self, key: u32) -> Result<turbo_common::RunqStats, String> {
        match &self.ebpf {
            Some(ebpf) if ebpf.runq_supported() => Ok(ebpf.runq(key)),
            Some(_) => Err("the scheduler eBPF programs are not loaded (see `turbo info`)".into()),
            None => Err(format!("needs the eBPF event source ({})", self.reason)),
        }
    }

    /// Why the network view is unavailable, if it is.
    pub fn net_unavailable(&self) -> Option<String> {
        match &self.ebpf {
            Some(ebpf) if ebpf.net_supported() => None,
            Some(_) => {
                Some("the inet_sock_set_state eBPF program is not loaded (see `turbo info`)".into())
            }
            None => Some(format!("needs the eBPF event source ({})", self.reason)),
        }
    }

    /// Forgets the kernel's figures of an app that is gone.
    pub fn forget_app(&mut self, key: u32) {
        if let Some(ebpf) = self.ebpf.as_mut() {
            ebpf.forget_runq(key);
        }
    }
}
