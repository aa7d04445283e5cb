//! The crash store: the kept crash records of every app and their totals.
//!
//! A consumer of the supervisor's `Crashed` notifications (after the runtime has completed each
//! record with wall time, memory and stderr tail). It keeps the newest [`KEEP`] records per app
//! and a total; it makes no decisions and does no I/O (the state file saves it).

use std::collections::{HashMap, VecDeque};

use turbo_api::{CrashRecord, CrashStats};

use crate::supervisor::AppId;

/// Records kept per app.
pub const KEEP: usize = 100;

/// Crashes of one app.
#[derive(Debug, Default, Clone)]
pub struct CrashBook {
    /// Crashes ever recorded.
    pub total: u32,
    /// Newest last.
    pub records: VecDeque<CrashRecord>,
}

/// Crash books by app.
#[derive(Debug, Default)]
pub struct CrashStore {
    books: HashMap<AppId, CrashBook>,
}

impl CrashStore {
    /// Adds a record.
    pub fn push(&mut self, app: AppId, record: CrashRecord) {
        let book = self.books.entry(app).or_default();
        book.total = book.total.saturating_add(1);
        book.records.push_back(record);
        while book.records.len() > KEEP {
            book.records.pop_front();
        }
    }

    /// Replaces an app's book (restoring saved state).
    pub fn restore(&mut self, app: AppId, book: CrashBook) {
        self.books.insert(app, book);
    }

    /// Hands `from`'s records to `to` (a reload's replacement takes over its instance's).
    pub fn hand_over(&mut self, from: AppId, to: AppId) {
        if let Some(book) = self.books.remove(&from) {
            self.books.insert(to, book);
        }
    }

    /// Forgets an app.
    pub fn remove(&mut self, app: AppId) {
        self.books.remove(&app);
    }

    /// An app's book (empty if it never crashed).
    #[must_use]
    pub fn book(&self, app: AppId) -> CrashBook {
        self.books.get(&app).cloned().unwrap_or_default()
    }

    /// Stats and records newest first.
    #[must_use]
    pub fn report(&self, app: AppId, now_ms: u64) -> (CrashStats, Vec<CrashRecord>) {
        let book = self.book(app);
        let records: Vec<CrashRecord> = book.records.iter().rev().cloned().collect();
        (CrashStats::compute(&records, book.total, now_ms), records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crash(at_ms: u64, reason: &str) -> CrashRecord {
        CrashRecord {
            at_ms,
            reason: reason.into(),
            ..CrashRecord::default()
        }
    }

    #[test]
    fn keeps_the_newest_hundred_and_counts_all() {
        let mut store = CrashStore::default();
        for i in 0..150 {
            store.push(
                1,
                crash(i * 1000, if i % 3 == 0 { "signal" } else { "exit" }),
            );
        }
        let (stats, records) = store.report(1, 150_000);
        assert_eq!(records.len(), KEEP);
        assert_eq!(records[0].at_ms, 149_000, "newest first");
        assert_eq!(stats.total, 150);
        assert_eq!(stats.last_hour, 100);
        assert_eq!(stats.mtbf_ms, 1000);
        assert_eq!(stats.most_common_reason, "exit");
        assert_eq!(store.report(2, 0).0.total, 0, "an app without crashes");
    }
}
