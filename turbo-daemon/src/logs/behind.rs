//! The log keeper's writing of formatted batches on a thread of its own: while one batch is
//! copied into the page cache by `write(2)`, the keeper already reads and formats the next, so
//! under a flood the two halves of the work run on two cores instead of one after the other.
//!
//! Batches travel in a few buffers ([`BUFFERS`]) that go to the writing thread and come back:
//! when all are out, the keeper waits for one, so memory stays bounded and a slow disk slows
//! the reading of the pipes exactly as much as writing in place did (the app never blocks
//! on more than its full pipe). One thread writes every batch in the order it was given, so
//! the records of a file keep their order. [`WriteBehind::drain`] waits until everything given
//! has been written: the keeper calls it before it answers a request (counters, flush, tail)
//! and when a pipe ends, so what it reports and what a reader finds are never behind.
//!
//! Without its thread (it could not be started, or it died), batches are written in place.
//!
//! This module must not format, rotate or decide anything about the records: it only moves
//! batches between the keeper and [`AppLogs::write`].

use std::{
    sync::mpsc::{self, Receiver, SyncSender},
    thread,
};

use super::{AppLogs, Records, Stream};

/// Buffers in flight: one being written, one being formatted, one spare so a short stall of
/// either side does not stop the other.
const BUFFERS: usize = 3;

/// One formatted batch to write.
struct Job {
    logs: AppLogs,
    stream: Stream,
    records: Records,
    now: i64,
}

/// The keeper's side of the writing thread.
pub(crate) struct WriteBehind {
    /// `None`: no thread; batches are written in place.
    to_writer: Option<SyncSender<Job>>,
    back: Receiver<Records>,
    /// Buffers here, not out at the writer.
    spare: Vec<Records>,
    /// Buffers made so far (at most [`BUFFERS`] while the thread lives).
    made: usize,
}

impl Default for WriteBehind {
    fn default() -> Self {
        Self::start()
    }
}

impl WriteBehind {
    /// Starts the writing thread; without one (the start failed), batches are written in place.
    pub(crate) fn start() -> Self {
        let (to_writer, jobs) = mpsc::sync_channel::<Job>(BUFFERS);
        let (give_back, back) = mpsc::sync_channel::<Records>(BUFFERS);
        let spawned = thread::Builder::new()
            .name("log-write".into())
            .spawn(move || {
                for mut job in jobs {
                    job.logs.write(job.stream, &mut job.records, job.now);
                    drop(job.logs);
                    if give_back.send(job.records).is_err() {
                        break;
                    }
                }
            });
        let to_writer = match spawned {
            Ok(_) => Some(to_writer),
            Err(e) => {
                tracing::warn!(
                    "log keeper: cannot start its writing thread ({e}); writing in place"
                );
                None
            }
        };
        Self {
            to_writer,
            back,
            spare: Vec::new(),
            made: 0,
        }
    }

    /// A buffer to format a batch into: a spare one, one the writer is done with, a new one
    /// while fewer than [`BUFFERS`] exist, or else the next one the writer gives back.
    pub(crate) fn buffer(&mut self) -> Records {
        if let Some(r) = self.spare.pop() {
            return r;
        }
        if let Ok(r) = self.back.try_recv() {
            return r;
        }
        if self.made < BUFFERS || self.to_writer.is_none() {
            self.made += 1;
            return Records::default();
        }
        self.back.recv().unwrap_or_else(|_| {
            // the thread is gone with the buffers it held: write in place from now on
            self.lost_writer();
            Records::default()
        })
    }

    /// Takes back a buffer that was not used (its batch went to no file).
    pub(crate) fn put_back(&mut self, records: Records) {
        self.spare.push(records);
    }

    /// Writes `records` (formatted by [`AppLogs::format`] at `now`) to `logs`' file of `stream`,
    /// on the writing thread when there is one.
    pub(crate) fn write(&mut self, logs: &AppLogs, stream: Stream, mut records: Records, now: i64) {
        if let Some(tx) = &self.to_writer {
            let job = Job {
                logs: logs.clone(),
                stream,
                records,
                now,
            };
            match tx.send(job) {
                Ok(()) => return,
                Err(mpsc::SendError(job)) => {
                    self.lost_writer();
                    records = job.records;
                }
            }
        }
        logs.write(stream, &mut records, now);
        self.spare.push(records);
    }

    /// Waits until every batch given to [`WriteBehind::write`] is written.
    pub(crate) fn drain(&mut self) {
        while self.to_writer.is_some() && self.spare.len() < self.made {
            match self.back.recv() {
                Ok(r) => self.spare.push(r),
                Err(_) => self.lost_writer(),
            }
        }
    }

    fn lost_writer(&mut self) {
        tracing::warn!("log keeper: its writing thread is gone; writing in place");
        self.to_writer = None;
        self.made = self.spare.len();
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        self.drain();
    }
}
