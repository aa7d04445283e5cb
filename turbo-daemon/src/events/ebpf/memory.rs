//! Memory limits on the kernel side: the `rss_stat` program, attached only while at least one
//! limit is set (it fires on every page fault of the system), and the per-tgid limits it
//! compares against (`RSS_LIMITS`). It must not decide what a crossing means.

use std::{collections::HashSet, time::Instant};

use aya::programs::{BtfTracePoint, ProgramError, tp_btf::BtfTracePointLinkId};
use turbo_common::{self as abi, RssLimit};

use super::{Ebpf, EbpfError, MemoryLimitChange, error_chain, remove_quietly};

/// The on-demand `rss_stat` program.
pub(super) struct RssStat {
    /// Loaded (verified) and ready to attach.
    pub(super) ready: bool,
    pub(super) link: Option<BtfTracePointLinkId>,
    /// Tgids with a limit set by us (the kernel also removes entries on exit: pruned lazily).
    pub(super) limited: HashSet<u32>,
}

impl Ebpf {
    /// Whether [`Ebpf::set_memory_limit`] works (the `rss_stat` program loaded).
    #[must_use]
    pub fn memory_limits_supported(&self) -> bool {
        self.rss.ready
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
