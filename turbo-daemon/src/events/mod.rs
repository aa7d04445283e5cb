//! Event sources: turn kernel (eBPF) or `/proc` + pidfd observations into one [`ProcEvent`] type.
//!
//! The supervisor cannot tell which source produced an event; it only sees the `source` tag,
//! which is kept for reporting (`turbo info`, `last_exit.source`). This module decides which
//! source is active (`TURBO_EBPF=auto|require|off`) and must not make supervision decisions.

pub mod ebpf;

use std::fmt;

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

/// A raw wait status (`exit_code` of the kernel, `si_status`-style encoding of `waitpid`):
/// `signal = raw & 0x7f`, `exit status = (raw >> 8) & 0xff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitStatus(pub u32);

impl WaitStatus {
    /// The status of a process that was not our child: it ended, but nobody can tell how
    /// (only eBPF sees the exit code of a process the daemon adopted).
    pub const UNKNOWN: Self = Self(u32::MAX);

    /// Builds the status of a normal exit.
    #[must_use]
    pub const fn exited(code: u8) -> Self {
        Self((code as u32) << 8)
    }

    /// Builds the status of a death by signal.
    #[must_use]
    pub const fn signaled(signal: u8) -> Self {
        Self((signal & 0x7f) as u32)
    }

    /// The killing signal, if the process died of one.
    #[must_use]
    pub const fn signal(self) -> Option<i32> {
        if self.0 == Self::UNKNOWN.0 {
            return None;
        }
        let sig = (self.0 & 0x7f) as i32;
        if sig == 0 { None } else { Some(sig) }
    }

    /// The exit status, if the process exited normally.
    #[must_use]
    pub const fn code(self) -> Option<i32> {
        if self.0 == Self::UNKNOWN.0 || self.signal().is_some() {
            None
        } else {
            Some(((self.0 >> 8) & 0xff) as i32)
        }
    }

    /// Whether a core dump was written.
    #[must_use]
    pub const fn core_dumped(self) -> bool {
        self.0 != Self::UNKNOWN.0 && self.0 & 0x80 != 0
    }
}

/// One observation about a supervised process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcEvent {
    /// The thread group `pid` is gone (its last thread exited).
    Exited {
        /// Thread-group id.
        pid: u32,
        /// How it ended.
        status: WaitStatus,
        /// Who told us.
        source: SourceKind,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_decoding() {
        let cases = [
            (0x300, Some(3), None, false),
            (0x9, None, Some(9), false),
            (0x8b, None, Some(11), true),
            (0, Some(0), None, false),
        ];
        for (raw, code, sig, core) in cases {
            let st = WaitStatus(raw);
            assert_eq!(st.code(), code, "{raw:#x}");
            assert_eq!(st.signal(), sig, "{raw:#x}");
            assert_eq!(st.core_dumped(), core, "{raw:#x}");
        }
        assert_eq!(WaitStatus::exited(3), WaitStatus(0x300));
        assert_eq!(WaitStatus::signaled(9).signal(), Some(9));
        let unknown = WaitStatus::UNKNOWN;
        assert_eq!(
            (unknown.code(), unknown.signal(), unknown.core_dumped()),
            (None, None, false)
        );
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

/// The source chosen at start-up and why.
pub struct SelectedSource {
    /// Which one.
    pub kind: SourceKind,
    /// Why (for procfs: why not eBPF).
    pub reason: String,
    /// The loaded programs, when eBPF is active.
    pub ebpf: Option<ebpf::Ebpf>,
}

/// Picks the event source and starts its reader, which sends into `tx`.
///
/// The procfs source needs no reader of its own in this version: every supervised process is a
/// direct child, and the runtime reaps each one through its pidfd.
///
/// # Errors
/// With [`EbpfSetting::Require`], the loader's error when eBPF cannot be used.
pub fn select(
    setting: EbpfSetting,
    tx: tokio::sync::mpsc::UnboundedSender<ProcEvent>,
) -> Result<SelectedSource, String> {
    if setting == EbpfSetting::Off {
        return Ok(SelectedSource {
            kind: SourceKind::Procfs,
            reason: "eBPF disabled (TURBO_EBPF=off)".into(),
            ebpf: None,
        });
    }
    match ebpf::Ebpf::load() {
        Ok((loaded, reader)) => {
            tokio::spawn(reader.run(tx));
            Ok(SelectedSource {
                kind: SourceKind::Ebpf,
                reason: format!("eBPF programs attached: {}", loaded.programs().join(", ")),
                ebpf: Some(loaded),
            })
        }
        Err(e) if setting == EbpfSetting::Require => Err(format!(
            "eBPF is required (TURBO_EBPF=require) but cannot be used: {e}"
        )),
        Err(e) => {
            tracing::warn!("eBPF unavailable, falling back to procfs + pidfd: {e}");
            Ok(SelectedSource {
                kind: SourceKind::Procfs,
                reason: format!("eBPF unavailable: {e}"),
                ebpf: None,
            })
        }
    }
}
