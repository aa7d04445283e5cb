//! The state version: a counter the loop moves on before it handles anything that may change
//! what callers see, so that an adapter holding an answer built at one version knows, without
//! asking the loop, whether that answer still stands (issue 21: `ListApps` served from one
//! snapshot to every client until something happens).
//!
//! The counter moves *before* the change, never after: a reply the loop sends while handling a
//! change (a stop that completed) reaches its caller only after the counter moved, so that
//! caller's next question never meets an answer from before its own change. It must not say
//! what changed, and it must not be moved by a read-only request.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

/// A shared counter of the loop's changes; clones share it.
#[derive(Clone, Debug, Default)]
pub struct StateVersion(Arc<AtomicU64>);

impl StateVersion {
    /// Something may change now: answers built before are out of date.
    pub fn bump(&self) {
        // SeqCst: a bump must be seen before anything the loop sends after it
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// The version now.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_counter() {
        let v = StateVersion::default();
        let seen = v.clone();
        assert_eq!(seen.get(), 0);
        v.bump();
        v.bump();
        assert_eq!(seen.get(), 2);
    }
}
