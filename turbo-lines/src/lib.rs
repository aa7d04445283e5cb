//! The log keeper's per-line loop: finding the newlines of what an app wrote and copying each
//! line after its record head. Every byte of every app's output passes through here.
//!
//! It is a crate of its own for one reason: the release profile builds it at opt-level 3
//! (the workspace's `Cargo.toml`), while the daemon and the keeper that call it stay at "z" for
//! their resident memory. In "z" the newline search was one library call per line and each
//! copy a chain of calls; built here, the search is a few vector instructions per 64 bytes, the
//! head's copy is inline and each line is one `memcpy`. Under a flood of 100-byte lines
//! (`cargo xtask bench --only logs`, perf samples over 8 runs of a million lines) this cut the
//! user-space work of the keeper's reading thread by about 60%, and the thread's whole time,
//! kernel included, by about 40%.
//!
//! This crate must not know the record layout beyond "a head, the line, a newline" (the heads
//! are `turbo_api::logfmt`'s), nor read or write anything: it only fills buffers.

/// Bytes copied for a record's head when it is at most this long: a constant, so the copy is a
/// few vector moves rather than a call; the bytes past the head are overwritten by the line.
const HEAD_BLOCK: usize = 64;

/// Appends one text record per line of `data` to `buf`: `head`, the line, a newline.
///
/// Lines are the pieces of `data` between newlines (an empty one too), the last one also when
/// no newline ends it; a line longer than `max_line` bytes becomes several records of at most
/// that many, cut on a UTF-8 character boundary when there is one nearby ([`char_start`]).
/// Each line is copied once, with the newline that ended it in `data`; only a piece of a cut
/// line or an unfinished last line gets one added.
// never inlined into its caller: the whole loop stays as built here, not re-optimised for size
#[inline(never)]
pub fn push_text_records(buf: &mut Vec<u8>, head: &[u8], data: &[u8], max_line: usize) {
    let mut put = Put::new(buf, head);
    // room for lines of 64 bytes or more; shorter ones make `Put::record` reserve more
    put.buf
        .reserve(data.len() + (data.len() / 64 + 1) * (head.len() + 1) + HEAD_BLOCK);
    let max_line = max_line.max(1);
    let mut start = 0;
    // one step per newline, written out twice (the vector search, the tail) rather than passed
    // as a closure, which the compiler left as a call per line
    #[cfg(target_arch = "x86_64")]
    let (blocks, tail) = data.as_chunks::<64>();
    #[cfg(target_arch = "x86_64")]
    for (i, block) in blocks.iter().enumerate() {
        let mut bits = newline_mask(block);
        while bits != 0 {
            let pos = i * 64 + bits.trailing_zeros() as usize;
            put.line(data, start, pos, max_line);
            start = pos + 1;
            bits &= bits - 1;
        }
    }
    #[cfg(target_arch = "x86_64")]
    let (base, rest) = (blocks.len() * 64, tail);
    #[cfg(not(target_arch = "x86_64"))]
    let (base, rest) = (0, data);
    for pos in memchr::memchr_iter(b'\n', rest) {
        put.line(data, start, base + pos, max_line);
        start = base + pos + 1;
    }
    if start < data.len() {
        put.cut(&data[start..], max_line);
    }
}

/// Where the first record of the line `buf[start..end]` (no newline in it) ends when the line
/// is longer than `max_line` bytes: `max_line` bytes on, moved back to a character start
/// ([`char_start`]); `None` when the rest fits in one record. The one rule for cutting lines,
/// for the records written here and the ranges the daemon splits a batch into.
#[must_use]
pub fn next_cut(buf: &[u8], start: usize, end: usize, max_line: usize) -> Option<usize> {
    (end - start > max_line).then(|| char_start(buf, start + max_line, start))
}

/// `at`, moved back (by at most 3 bytes, never to `min`) to the start of a UTF-8 character, so a
/// cut does not split one; unchanged when the bytes there are not UTF-8 anyway.
#[must_use]
pub fn char_start(buf: &[u8], at: usize, min: usize) -> usize {
    let is_continuation = |i: usize| buf.get(i).is_some_and(|&b| b & 0xC0 == 0x80);
    (at.saturating_sub(3).max(min + 1)..=at)
        .rev()
        .find(|&i| !is_continuation(i))
        .unwrap_or(at)
}

/// Appending records with one head.
struct Put<'a> {
    buf: &'a mut Vec<u8>,
    head: &'a [u8],
    /// `head` padded to [`HEAD_BLOCK`]; `None` when it is longer.
    block: Option<[u8; HEAD_BLOCK]>,
}

impl<'a> Put<'a> {
    fn new(buf: &'a mut Vec<u8>, head: &'a [u8]) -> Self {
        let block = (head.len() <= HEAD_BLOCK).then(|| {
            let mut block = [0; HEAD_BLOCK];
            block[..head.len()].copy_from_slice(head);
            block
        });
        Self { buf, head, block }
    }

    /// The record(s) of the line `data[start..pos]`, ended by the newline at `pos`.
    #[inline(always)]
    fn line(&mut self, data: &[u8], start: usize, pos: usize, max_line: usize) {
        if pos - start <= max_line {
            self.record(&data[start..=pos], true);
        } else {
            self.cut(&data[start..pos], max_line);
        }
    }

    /// Appends the head, then `line`, then a newline unless `line` ends with its own (`ended`).
    #[inline(always)]
    fn record(&mut self, line: &[u8], ended: bool) {
        let Some(block) = &self.block else {
            self.buf.extend_from_slice(self.head);
            self.buf.extend_from_slice(line);
            if !ended {
                self.buf.push(b'\n');
            }
            return;
        };
        let head_len = self.head.len();
        // the head block writes HEAD_BLOCK bytes before the line overwrites its tail
        let need = HEAD_BLOCK.max(head_len + line.len() + 1);
        if self.buf.capacity() - self.buf.len() < need {
            reserve_more(self.buf, need);
        }
        let room = &mut self.buf.spare_capacity_mut()[..need];
        room[..HEAD_BLOCK].write_copy_of_slice(block);
        room[head_len..head_len + line.len()].write_copy_of_slice(line);
        let mut len = head_len + line.len();
        if !ended {
            room[len].write(b'\n');
            len += 1;
        }
        // SAFETY: the first `len` bytes of the spare capacity were written above: the head (the
        // block's first `head_len` bytes), the line after it and the newline; `len <= need`
        unsafe { self.buf.set_len(self.buf.len() + len) };
    }

    /// The records of `line` (no newline in it), cut into pieces of at most `max_line` bytes.
    #[cold]
    #[inline(never)]
    fn cut(&mut self, line: &[u8], max_line: usize) {
        let mut start = 0;
        while let Some(cut) = next_cut(line, start, line.len(), max_line) {
            self.record(&line[start..cut], false);
            start = cut;
        }
        self.record(&line[start..], false);
    }
}

#[cold]
#[inline(never)]
fn reserve_more(buf: &mut Vec<u8>, need: usize) {
    buf.reserve(need.max(buf.capacity()));
}

/// Bit `i` set where `block[i]` is a newline: four SSE2 compares (every x86_64 has SSE2, so no
/// detection). Lines of a log flood are short, and a search call per line (memchr's iterator)
/// pays its set-up each time; here a line costs one bit.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn newline_mask(block: &[u8; 64]) -> u64 {
    use core::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of every x86_64 target (its baseline), so these instructions exist;
    // the four unaligned 16-byte loads read `block[0..64]`, all inside it
    unsafe {
        let newline = _mm_set1_epi8(b'\n'.cast_signed());
        let quarter = |at: usize| {
            let v = _mm_loadu_si128(block.as_ptr().add(at).cast::<__m128i>());
            u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, newline)).cast_unsigned())
        };
        quarter(0) | quarter(16) << 16 | quarter(32) << 32 | quarter(48) << 48
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records a plain loop over the lines makes: the reference for the fast one.
    fn plain(head: &[u8], data: &[u8], max_line: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pieces = |line: &[u8]| {
            let mut start = 0;
            while line.len() - start > max_line {
                let cut = char_start(line, start + max_line, start);
                out.extend_from_slice(head);
                out.extend_from_slice(&line[start..cut]);
                out.push(b'\n');
                start = cut;
            }
            out.extend_from_slice(head);
            out.extend_from_slice(&line[start..]);
            out.push(b'\n');
        };
        let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        // the piece after the last newline is a line only when it is not empty
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        for line in lines {
            pieces(line);
        }
        out
    }

    /// Newlines at every offset of the 64-byte blocks and in the tail, empty lines, an
    /// unfinished last line, lines cut (also before a multi-byte character), and heads short
    /// and longer than the block: byte for byte the plain loop's records.
    #[test]
    fn records_are_the_plain_loops() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let heads: [&[u8]; 3] = [b"", b"2026-12-05T12:00:00.000Z[0:42] ", &[b'h'; 100]];
        for round in 0..300 {
            let len = (next() % 700) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| match next() % 10 {
                    0 => b'\n',
                    1 => 0xC3, // the first byte of 'é'
                    2 => 0xA9,
                    _ => b'x',
                })
                .collect();
            let max_line = [5, 64, 1000][round % 3];
            for head in heads {
                let mut buf = b"kept".to_vec();
                push_text_records(&mut buf, head, &data, max_line);
                let mut want = b"kept".to_vec();
                want.extend(plain(head, &data, max_line));
                assert!(buf == want, "round {round}, head of {} bytes", head.len());
            }
        }
    }

    #[test]
    fn a_flood_of_empty_lines_outgrows_the_first_reservation() {
        let data = vec![b'\n'; 10_000];
        let mut buf = Vec::new();
        push_text_records(&mut buf, b"head ", &data, 64);
        assert_eq!(buf, b"head \n".repeat(10_000));
    }

    #[test]
    fn cuts_step_back_to_a_character_start() {
        let line = "aé".as_bytes(); // a, then 0xC3 0xA9
        assert_eq!(
            char_start(line, 2, 0),
            1,
            "a cut inside 'é' moves to its start"
        );
        assert_eq!(char_start(line, 1, 0), 1);
        assert_eq!(char_start(b"xxxx", 2, 0), 2);
    }
}
