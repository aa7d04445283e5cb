//! Recovery from events the eBPF ring buffer had no room for (a burst of forks while the daemon
//! was not scheduled): the loss is counted by the kernel (`events_lost`), and the process trees
//! those events described are taken again from the kernel's own map of watched processes.
//!
//! [`LossWatch`] decides when to look (pure, with the caller's clock); the runtime part reads
//! the counter and the map through the event source only. An app's own exit never depends on
//! this: its pidfd reports it either way.

use std::time::{Duration, Instant};

use super::Runtime;

/// Looks at the loss counter at most this often while events flow.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// When to read the loss counter: right after events when the last look is old enough, else
/// once [`CHECK_EVERY`] after the last look, so the last events of a burst are looked at too
/// (an idle daemon never wakes for it).
#[derive(Debug, Default)]
pub struct LossWatch {
    /// The counter at the last look.
    seen: u64,
    last: Option<Instant>,
    /// Events came since the last look.
    pending: bool,
}

impl LossWatch {
    /// Events were handled at `now`: true when the counter should be read now.
    pub fn events_handled(&mut self, now: Instant) -> bool {
        self.pending = true;
        self.last
            .is_none_or(|at| now.saturating_duration_since(at) >= CHECK_EVERY)
    }

    /// The counter read `lost` at `now`: true when it grew (the trees need reading again).
    pub fn looked(&mut self, lost: u64, now: Instant) -> bool {
        self.last = Some(now);
        self.pending = false;
        let grew = lost > self.seen;
        self.seen = lost;
        grew
    }

    /// When the deferred look is due (`None`: nothing pending).
    pub fn due(&self) -> Option<Instant> {
        self.last
            .filter(|_| self.pending)
            .map(|at| at + CHECK_EVERY)
    }
}

impl Runtime {
    /// After events: reads the loss counter when [`LossWatch`] says so.
    pub(super) fn after_events(&mut self) {
        let now = Instant::now();
        if self.source.ebpf().is_some() && self.losses.events_handled(now) {
            self.look_for_losses(now);
        }
    }

    /// Reads the loss counter; when it grew, takes every app's descendants from the kernel.
    pub(super) fn look_for_losses(&mut self, now: Instant) {
        let lost = self.source.lost_events();
        if !self.losses.looked(lost, now) {
            return;
        }
        let Some(watched) = self.source.watched_all() else {
            return;
        };
        let sup = &self.sup;
        let (added, forgotten) = self.procs.resync(&watched, |app| {
            sup.app(app).map(crate::supervisor::App::pid)
        });
        tracing::warn!(
            lost,
            "the eBPF ring buffer was full: {lost} events lost so far; the apps' process trees \
             were read again from the kernel's watch map ({added} descendants found, \
             {forgotten} gone)"
        );
        self.check_group_waits(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_at_most_every_interval_and_once_more_after_the_last_events() {
        let t0 = Instant::now();
        let mut w = LossWatch::default();
        assert_eq!(w.due(), None, "nothing to look at before any event");
        assert!(w.events_handled(t0), "the first events are looked at");
        assert!(!w.looked(0, t0));
        assert_eq!(w.due(), None);
        let t1 = t0 + CHECK_EVERY / 2;
        assert!(!w.events_handled(t1), "too soon after the last look");
        assert_eq!(
            w.due(),
            Some(t0 + CHECK_EVERY),
            "but the look is kept for later"
        );
        assert!(w.looked(5, t0 + CHECK_EVERY), "the counter grew");
        assert!(!w.looked(5, t0 + CHECK_EVERY * 2), "and then did not");
        assert!(w.events_handled(t0 + CHECK_EVERY * 3));
    }
}
