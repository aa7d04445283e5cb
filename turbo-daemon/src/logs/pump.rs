//! Reading one output pipe: [`Pump`] turns whatever a read returns into line records (ranges
//! of the read buffer) and keeps the unfinished last line for the next read; [`pump`] drives one
//! from tokio's readiness (the daemon's own capture), the keeper drives its pumps from epoll.
//!
//! Lines: a line without its newline yet waits for it (or for the end of the pipe, when it is
//! handed on as it is). A line longer than [`MAX_LINE`] becomes several records of at most that
//! many bytes, cut on a UTF-8 character boundary when there is one nearby; nothing is dropped.
//!
//! A pipe found full is enlarged to 1 MiB ([`BIG_PIPE`]) and read in bigger pieces (up to
//! [`MAX_READ`]), so a flooding app blocks about 16 times less often and its reader makes fewer
//! system calls.
//!
//! A batch ([`Batch`]) is the bytes of its records, in one slice of the read buffer: writing
//! text records finds the newlines as it copies the lines, in one pass, so the ranges of the
//! lines are found only for those who ask ([`Batch::lines`]: json records, forwarding; the
//! stderr tail asks for the last few only, [`Batch::last_lines`]). A flood of short lines made
//! a `Vec` of ranges, pushed one by one in the size-optimised build, a seventh of the keeper's
//! time (`cargo xtask bench --only logs`).
//!
//! This module must not format or write records: it only hands batches of lines on.

use std::{
    fs, io,
    ops::Range,
    os::fd::{AsFd as _, BorrowedFd, OwnedFd},
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::net::unix::pipe;

pub(super) use turbo_lines::char_start;
use turbo_lines::next_cut;

use super::MAX_LINE;
use crate::os::pipe_io;

/// Bytes asked of a pipe per read at first (a pipe holds 64 KiB by default).
pub(super) const READ_SIZE: usize = 64 * 1024;
/// The size a pipe is given once it was found full (`F_SETPIPE_SZ`; 1 MiB is also the default
/// `/proc/sys/fs/pipe-max-size`), and so the most one read asks for. Only pipes seen full get it:
/// the kernel counts pipe buffers per user, and once a user's pipes hold more than
/// `pipe-user-pages-soft` (64 MiB by default), every new pipe of that user gets 8 KiB, so
/// enlarging every app's pipes up front would shrink all the others of a daemon with many apps.
pub(super) const BIG_PIPE: usize = 1024 * 1024;
/// The most one read asks for, however big the pipe: what one read brings in, the records made
/// of it and the kernel's copy of those into the page cache then stay within a core's L2 cache
/// (512 KiB here), where a 1 MiB read (2.3 MiB with its records) went through memory three times.
/// The pipe stays [`BIG_PIPE`], so the app still blocks as seldom; the loop only turns more often.
pub(super) const MAX_READ: usize = 256 * 1024;
/// A read or format buffer above this capacity, after a burst, is given back.
pub(super) const SHRINK_ABOVE: usize = 4 * READ_SIZE;

/// Reads `fd` to its end, handing each batch of records to `on_batch`: a [`Pump`] driven by
/// tokio's readiness.
pub(super) async fn pump(fd: OwnedFd, mut on_batch: impl FnMut(&mut Batch<'_>)) {
    let rx = match pipe::Receiver::from_owned_fd(fd) {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!("cannot watch an output pipe: {e}");
            return;
        }
    };
    let mut pump = Pump::default();
    let mut buf = Vec::new();
    let mut lines = Vec::new();
    loop {
        if let Err(e) = rx.readable().await {
            tracing::warn!("cannot watch an output pipe: {e}");
            break;
        }
        // try_read_buf clears tokio's readiness on EAGAIN, so the next await really waits
        let step = pump.step(
            rx.as_fd(),
            &mut buf,
            &mut lines,
            |b| rx.try_read_buf(b),
            &mut on_batch,
        );
        if step == Step::End {
            break;
        }
    }
}

/// What one [`Pump::step`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Bytes were read (records may have been handed on).
    Read,
    /// Nothing to read now.
    Empty,
    /// The pipe reached its end (or failed); everything read was handed on.
    End,
}

/// The reading state of one pipe: the unfinished last line and how much to ask for. The read
/// and record buffers are the caller's, so the log keeper shares one pair among all its pipes
/// and a quiet pipe costs only its unfinished line.
///
/// A read asks for [`READ_SIZE`] bytes at first. When one takes everything it asked for, the app
/// writes faster than the reader wakes up: the pipe is enlarged once to [`BIG_PIPE`] (so the app
/// blocks less and each wake-up finds more) and reads ask for twice as much, up to the pipe's
/// size or [`MAX_READ`]; when reads come back half empty they ask for less again, and buffers grown by a burst
/// are given back.
#[derive(Debug)]
pub(crate) struct Pump {
    /// The unfinished line, put back in front of the next read.
    carry: Vec<u8>,
    want: usize,
    pipe_size: Option<usize>,
    big_pipe: BigPipe,
}

impl Default for Pump {
    fn default() -> Self {
        Self {
            carry: Vec::new(),
            want: READ_SIZE,
            pipe_size: None,
            big_pipe: BigPipe(false),
        }
    }
}

impl Pump {
    /// One read of `fd` through `read` (which appends to the buffer it is given, or fails with
    /// `WouldBlock` when the pipe is empty), handing the complete records to `on_batch`; at the
    /// end of the pipe, the unfinished rest too.
    pub(crate) fn step(
        &mut self,
        fd: BorrowedFd<'_>,
        buf: &mut Vec<u8>,
        lines: &mut Vec<Range<usize>>,
        read: impl FnOnce(&mut Vec<u8>) -> io::Result<usize>,
        on_batch: &mut impl FnMut(&mut Batch<'_>),
    ) -> Step {
        buf.clear();
        buf.append(&mut self.carry);
        buf.reserve(self.want);
        let n = match read(buf) {
            Ok(0) => return self.finish(buf, lines, on_batch),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.carry.extend_from_slice(buf);
                return Step::Empty;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.carry.extend_from_slice(buf);
                return Step::Read;
            }
            Err(e) => {
                tracing::warn!("reading an app's output failed: {e}");
                return self.finish(buf, lines, on_batch);
            }
        };
        // nearly all that was asked: the pipe was (close to) full, as a 64 KiB pipe holding a
        // writer's 65,500-byte write is
        if n >= self.want / 4 * 3 {
            let size = *self
                .pipe_size
                .get_or_insert_with(|| self.big_pipe.enlarge(fd));
            self.want = (self.want * 2).min(size.clamp(READ_SIZE, MAX_READ));
        } else if n < self.want / 4 {
            self.want = (self.want / 2).max(READ_SIZE);
        }
        let used = batch_end(buf, false);
        if used > 0 {
            on_batch(&mut Batch::new(&buf[..used], lines));
        }
        self.carry.extend_from_slice(&buf[used..]);
        if self.want == READ_SIZE {
            give_back(buf, 2 * READ_SIZE);
            give_back(lines, 0);
            give_back(&mut self.carry, 0);
        }
        Step::Read
    }

    fn finish(
        &mut self,
        buf: &[u8],
        lines: &mut Vec<Range<usize>>,
        on_batch: &mut impl FnMut(&mut Batch<'_>),
    ) -> Step {
        if !buf.is_empty() {
            on_batch(&mut Batch::new(buf, lines));
        }
        self.carry = Vec::new();
        Step::End
    }
}

/// One read's complete records: `data` holds exactly their bytes. Records are the pieces of
/// `data` between newlines (an empty one too), the last one also when no newline ends it (a
/// piece of an unfinished line, or the rest at the end of the pipe), each cut into pieces of at
/// most [`MAX_LINE`] bytes (see [`split_lines`]). So `data` is never empty.
pub(crate) struct Batch<'a> {
    pub(crate) data: &'a [u8],
    ranges: &'a mut Vec<Range<usize>>,
    split: bool,
}

impl<'a> Batch<'a> {
    /// The batch of `data`, whose ranges (when asked for) go into `ranges`.
    pub(crate) fn new(data: &'a [u8], ranges: &'a mut Vec<Range<usize>>) -> Self {
        Self {
            data,
            ranges,
            split: false,
        }
    }

    /// The records as ranges of `data`, newline excluded; found at the first call.
    pub(crate) fn lines(&mut self) -> &[Range<usize>] {
        if !self.split {
            split_lines(self.data, true, self.ranges);
            self.split = true;
        }
        self.ranges
    }

    /// At least the last `n` records (all of them when there are fewer), as ranges of `data`,
    /// ending with the last: only the end of the batch is split, so keeping a tail of a flood
    /// does not cost a range per line.
    pub(crate) fn last_lines(&mut self, n: usize) -> &[Range<usize>] {
        if self.split {
            return self.ranges;
        }
        // the records of a piece that starts where a line starts are the batch's last ones;
        // n + 1 newlines back (the last one may end the batch) leave at least n whole lines
        let mut from = self.data.len();
        for _ in 0..=n {
            match memchr::memrchr(b'\n', &self.data[..from]) {
                Some(p) => from = p,
                None => {
                    from = 0;
                    break;
                }
            }
        }
        let start = if from == 0 { 0 } else { from + 1 };
        split_lines(&self.data[start..], true, self.ranges);
        for range in self.ranges.iter_mut() {
            *range = range.start + start..range.end + start;
        }
        // only a part: a later `lines` splits the whole batch
        self.ranges
    }
}

/// How many bytes of `buf` the next batch takes ([`split_lines`]'s count, without the
/// ranges): up to its last newline, then the leading pieces of an unfinished line longer than
/// [`MAX_LINE`]; at `eof`, everything.
pub(super) fn batch_end(buf: &[u8], eof: bool) -> usize {
    if eof {
        return buf.len();
    }
    let mut end = memchr::memrchr(b'\n', buf).map_or(0, |p| p + 1);
    // an unfinished line of exactly MAX_LINE is not cut yet
    while let Some(cut) = next_cut(buf, end, buf.len(), MAX_LINE) {
        end = cut;
    }
    end
}

/// Fills `lines` with the records of `buf`: each complete line (newline excluded), cut into
/// pieces of at most [`MAX_LINE`]; then pieces of an unfinished line while more than
/// [`MAX_LINE`] of it is there; then, at `eof`, the unfinished rest. Returns the bytes consumed.
pub(super) fn split_lines(buf: &[u8], eof: bool, lines: &mut Vec<Range<usize>>) -> usize {
    lines.clear();
    let mut start = 0;
    // one searcher over the whole read: memchr's iterator looks at 16 to 64 bytes per
    // instruction and, unlike a call per line, pays its set-up once (a byte loop, then one call
    // per line, were in turn the daemon's biggest cost under a log flood)
    for pos in memchr::memchr_iter(b'\n', buf) {
        let last = cut_pieces(buf, start..pos, lines);
        lines.push(last); // even when empty: an empty line is a record
        start = pos + 1;
    }
    // an unfinished line of exactly MAX_LINE is not cut yet: its newline may come next
    let rest = cut_pieces(buf, start..buf.len(), lines);
    if eof && !rest.is_empty() {
        lines.push(rest.clone());
        return rest.end;
    }
    rest.start
}

/// Shrinks `v` to `keep` elements of room when a burst left it holding more than [`SHRINK_ABOVE`]
/// bytes of capacity.
pub(super) fn give_back<T>(v: &mut Vec<T>, keep: usize) {
    if v.capacity() * size_of::<T>() > SHRINK_ABOVE {
        v.shrink_to(keep);
    }
}

/// How many pipes are enlarged to [`BIG_PIPE`] right now, for [`big_pipe_budget`].
static BIG_PIPES: AtomicUsize = AtomicUsize::new(0);

/// How many pipes may be enlarged at once: a quarter of `pipe-user-pages-soft`, so this daemon
/// alone never brings its user near the limit that would shrink every new pipe of that user.
pub(super) fn big_pipe_budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let soft_pages = fs::read_to_string("/proc/sys/fs/pipe-user-pages-soft")
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok())
            .unwrap_or(16_384);
        if soft_pages == 0 {
            return usize::MAX; // no soft limit
        }
        soft_pages / 4 / (BIG_PIPE / pipe_io::page_size()).max(1)
    })
}

/// One capture's share of [`BIG_PIPES`], given back when the capture (and so the pipe) ends.
#[derive(Debug)]
struct BigPipe(bool);

impl BigPipe {
    /// Enlarges the pipe `fd` to [`BIG_PIPE`] if the budget allows, and returns its size
    /// afterwards. A refusal (budget, per-user limits, a lower `pipe-max-size`) is not an error:
    /// the pipe keeps its size, which is returned.
    fn enlarge(&mut self, fd: BorrowedFd<'_>) -> usize {
        let taken = BIG_PIPES
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < big_pipe_budget()).then_some(n + 1)
            })
            .is_ok();
        let mut size = None;
        if taken {
            match pipe_io::set_pipe_size(fd, BIG_PIPE) {
                Ok(got) => {
                    self.0 = true;
                    size = Some(got);
                }
                Err(e) => {
                    tracing::debug!("cannot enlarge an output pipe: {e}");
                    BIG_PIPES.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        size.or_else(|| pipe_io::pipe_size(fd).ok())
            .unwrap_or(READ_SIZE)
    }
}

impl Drop for BigPipe {
    fn drop(&mut self) {
        if self.0 {
            BIG_PIPES.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Pushes the leading pieces of `range` while more than [`MAX_LINE`] is left; returns the rest
/// (not empty when anything was cut).
fn cut_pieces(buf: &[u8], mut range: Range<usize>, lines: &mut Vec<Range<usize>>) -> Range<usize> {
    while let Some(cut) = next_cut(buf, range.start, range.end, MAX_LINE) {
        lines.push(range.start..cut);
        range.start = cut;
    }
    range
}
