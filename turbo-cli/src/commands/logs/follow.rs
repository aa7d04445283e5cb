//! Reading the end of a log file and following it across appends, truncation and rotation
//! (the module docs of `logs` say how).
//!
//! This module must not print anything.

use super::*;

/// Opens a log file; `None` when it does not exist (yet). Something else planted where a log
/// goes (a FIFO) is an error, not a wait.
pub(super) fn open_log(path: &Path) -> io::Result<Option<File>> {
    match crate::files::open_regular(path) {
        Ok(file) => Ok(Some(file)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Up to `need` lines that came before the current file, from its rotated files (newest is
/// `.1`), oldest first. `current` is the inode of the current file as read: if a rotation
/// happened since, it is `.1` now and is skipped rather than shown twice.
pub(super) fn older_lines(
    path: &Path,
    current: Option<u64>,
    need: usize,
) -> io::Result<Vec<Vec<u8>>> {
    let mut older: Vec<Vec<u8>> = Vec::new();
    for n in 1..=MAX_ROTATED {
        if older.len() >= need {
            break;
        }
        let Some((file, how)) = open_rotated(path, n)? else {
            break;
        };
        if current.is_some() && current == Some(file.metadata()?.ino()) {
            continue;
        }
        let mut lines = if how == Compression::None {
            let tail = read_tail(&file, need - older.len())?;
            let mut lines = tail.lines;
            if !tail.partial.is_empty() {
                lines.push(tail.partial);
            }
            lines
        } else {
            // no seeking back in a compressed file: it is read through, keeping its last lines
            let mut kept = std::collections::VecDeque::new();
            last_lines(unpacked(file, how)?, need - older.len(), &mut kept, |_| {
                true
            })?;
            kept.into()
        };
        lines.append(&mut older);
        older = lines;
    }
    let extra = older.len().saturating_sub(need);
    older.drain(..extra);
    Ok(older)
}

/// The end of a log file.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Tail {
    /// The last complete lines, oldest first, newline excluded.
    pub(super) lines: Vec<Vec<u8>>,
    /// Bytes after the last newline (a line still being written).
    pub(super) partial: Vec<u8>,
    /// Where following continues: the start of `partial`.
    pub(super) resume_at: u64,
    /// Identity of the file read, to notice rotation.
    pub(super) inode: Option<u64>,
}

/// The last `n` complete lines of `file`, reading backwards in chunks.
pub(super) fn read_tail(file: &File, n: usize) -> io::Result<Tail> {
    let meta = file.metadata()?;
    let len = meta.len();
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    // n lines need n newlines plus the one before the first of them (unless at the start)
    while start > 0 && len - start < MAX_TAIL_BYTES && count_newlines(&buf) <= n {
        let size = CHUNK.min(start);
        start -= size;
        let mut chunk = vec![0; usize::try_from(size).unwrap_or(usize::MAX)];
        match file.read_exact_at(&mut chunk, start) {
            Ok(()) => {}
            // truncated under us: report nothing rather than garbage; following starts over
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(Tail {
                    inode: Some(meta.ino()),
                    ..Tail::default()
                });
            }
            Err(err) => return Err(err),
        }
        chunk.extend_from_slice(&buf);
        buf = chunk;
    }
    let complete_end = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let partial = buf[complete_end..].to_vec();
    let mut lines: Vec<&[u8]> = buf[..complete_end].split(|&b| b == b'\n').collect();
    lines.pop(); // the empty piece after the final newline
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // may be the end of a line that began before what we read
    }
    let skip = lines.len().saturating_sub(n);
    Ok(Tail {
        lines: lines[skip..].iter().map(|l| l.to_vec()).collect(),
        resume_at: len - partial.len() as u64,
        partial,
        inode: Some(meta.ino()),
    })
}

pub(super) fn count_newlines(buf: &[u8]) -> usize {
    buf.iter().filter(|&&b| b == b'\n').count()
}

/// Follows one log file across appends, truncation and rotation.
pub(crate) struct Follower {
    pub(super) path: PathBuf,
    /// The file being read, kept open: after a rotation has renamed (or deleted) it, what was
    /// written to it since the last poll is still read from here before moving on.
    pub(super) file: Option<File>,
    pub(super) inode: Option<u64>,
    pub(super) offset: u64,
    /// Bytes of a line whose newline has not arrived yet.
    pub(super) pending: Vec<u8>,
}

impl Follower {
    /// The last `n` complete lines of the log at `path` (from its rotated files too when it has
    /// fewer), the unfinished line after them, and a follower that returns what comes next
    /// (the unfinished line included, once it is complete).
    pub(crate) fn from_tail(
        path: &Path,
        n: usize,
    ) -> io::Result<(Vec<Vec<u8>>, Vec<u8>, Follower)> {
        let file = open_log(path)?;
        let tail = match &file {
            Some(file) => read_tail(file, n)?,
            None => Tail::default(),
        };
        let need = n.saturating_sub(tail.lines.len());
        let mut lines = older_lines(path, tail.inode, need)?;
        lines.extend(tail.lines);
        let follower = Follower {
            path: path.to_owned(),
            file,
            inode: tail.inode,
            offset: tail.resume_at,
            pending: Vec::new(),
        };
        Ok((lines, tail.partial, follower))
    }

    /// The complete lines appended since the last poll, oldest first.
    pub(crate) fn poll(&mut self) -> io::Result<Vec<Vec<u8>>> {
        let mut lines = Vec::new();
        // one turn per file: a fast app can rotate several times between two polls
        for _ in 0..=MAX_ROTATED {
            // Where the path points is looked at before the open file is drained: the daemon
            // writes its last bytes to a file before it renames it, so once the path shows
            // another file everything of the one we hold is there to be read.
            let now = inode(&self.path)?;
            let Some(file) = &self.file else {
                // nothing written yet when we started
                if now.is_none() || !self.open(&self.path.clone())? {
                    break;
                }
                continue;
            };
            let at_end = read_new(file, &mut self.offset, &mut self.pending, &mut lines)?;
            // between a rename and the daemon opening the new file the path is missing
            if !at_end || now.is_none() || now == self.inode {
                break;
            }
            // rotated away and finished; the daemon ends files with a newline, but keep the rest
            if !self.pending.is_empty() {
                lines.push(mem::take(&mut self.pending));
            }
            if !self.open_successor(&mut lines)? {
                break;
            }
        }
        Ok(lines)
    }

    /// Switches to the file written after the one held, which a rotation has renamed to
    /// `<f>.k` (its successor is `<f>.k-1`, or `<f>` for k = 1), compressed (`<f>.k.gz`, known
    /// by the origin the keeper records on it) or deleted. Compressed successors (more than one
    /// rotation since the last poll) are read through whole into `lines`, and the search goes
    /// on from them. Returns false when the plain successor is not there (yet): the held one
    /// stays, and the next poll looks again.
    fn open_successor(&mut self, lines: &mut Vec<Vec<u8>>) -> io::Result<bool> {
        let mut attempts = 0;
        while attempts < 10 {
            let files = rotated_now(&self.path)?;
            let Some(k) = files
                .iter()
                .find(|(_, _, origin)| origin.is_some() && *origin == self.inode)
                .map(|(n, _, _)| *n)
            else {
                let plain_run = files
                    .iter()
                    .zip(1..)
                    .take_while(|((n, p, _), want)| {
                        *n == *want && Compression::of(p) == Compression::None
                    })
                    .count();
                let next = self.first_after_deleted(u32::try_from(plain_run).unwrap_or(0))?;
                return self.open(&next);
            };
            let held_still_at_k = |files_now: &[(u32, PathBuf, Option<u64>)]| {
                files_now
                    .iter()
                    .any(|(n, _, origin)| *n == k && *origin == self.inode)
            };
            let next = if k == 1 {
                self.path.clone()
            } else {
                match files.iter().find(|(n, _, _)| *n == k - 1) {
                    Some((_, p, _)) => p.clone(),
                    None => return Ok(false),
                }
            };
            let Some(file) = open_log(&next)? else {
                return Ok(false);
            };
            // The daemon renames the highest numbers first, so while the held file is still at
            // `.k` its successor has not moved: what was opened is the right file. Otherwise a
            // rotation came in between; look again.
            if !held_still_at_k(&rotated_now(&self.path)?) {
                attempts += 1;
                continue;
            }
            let how = Compression::of(&next);
            if how == Compression::None {
                self.start(file)?;
                return Ok(true);
            }
            // compressed, so complete: read it through and go on from it
            let Some(origin) = origin(&next, how) else {
                // no origin recorded: nothing to go on from but modification times
                return Ok(false);
            };
            let mut kept = std::collections::VecDeque::new();
            last_lines(unpacked(file, how)?, usize::MAX, &mut kept, |_| true)?;
            lines.extend(kept);
            self.inode = Some(origin);
            attempts = 0;
        }
        Ok(false)
    }

    /// The file to read after the held one was deleted. When the daemon deleted it (more
    /// rotations than `keep` since the last poll) every rotated file left is newer and unread:
    /// the oldest of them comes next. When someone else deleted it, the rotated files are older
    /// than it and were shown already: the current file comes next. Their last write tells
    /// which (a successor was written after the held file's last write).
    pub(super) fn first_after_deleted(&self, rotated: u32) -> io::Result<PathBuf> {
        let Some(held) = &self.file else {
            return Ok(self.path.clone());
        };
        let last_write = held.metadata()?.modified()?;
        for n in (1..=rotated).rev() {
            let path = rotated_path(&self.path, n);
            match std::fs::metadata(&path) {
                Ok(meta) if meta.modified()? >= last_write => return Ok(path),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
        Ok(self.path.clone())
    }

    /// Starts reading `path` from its beginning; false when it does not exist.
    fn open(&mut self, path: &Path) -> io::Result<bool> {
        let Some(file) = open_log(path)? else {
            return Ok(false);
        };
        self.start(file)?;
        Ok(true)
    }

    fn start(&mut self, file: File) -> io::Result<()> {
        self.inode = Some(file.metadata()?.ino());
        self.file = Some(file);
        self.offset = 0;
        self.pending.clear();
        Ok(())
    }
}

/// The rotated files of the log at `path` now, plain or compressed, by number, each with the
/// inode of the plain file it is or was made from ([`origin`]).
pub(super) fn rotated_now(path: &Path) -> io::Result<Vec<(u32, PathBuf, Option<u64>)>> {
    let Some(names) = names_beside(path)? else {
        return Ok(Vec::new());
    };
    Ok(logfmt::rotated_files(path, names)
        .into_iter()
        .map(|(n, p)| {
            let o = origin(&p, Compression::of(&p));
            (n, p, o)
        })
        .collect())
}

/// The inode of the plain file `path` is (its own) or was compressed from (recorded by the
/// keeper in [`logfmt::ORIGIN_XATTR`]); `None` when it is gone or has no such record.
fn origin(path: &Path, how: Compression) -> Option<u64> {
    if how == Compression::None {
        return inode(path).ok().flatten();
    }
    let mut buf = [0u8; 32];
    let n = rustix::fs::getxattr(path, logfmt::ORIGIN_XATTR, &mut buf[..]).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.parse().ok()
}

/// The inode `path` names now; `None` when it does not exist.
pub(super) fn inode(path: &Path) -> io::Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(meta.ino())),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Appends to `lines` the complete lines of `file` after `offset` (at most
/// [`MAX_READ_PER_POLL`] bytes of them); returns whether it read to the end of the file.
pub(super) fn read_new(
    mut file: &File,
    offset: &mut u64,
    pending: &mut Vec<u8>,
    lines: &mut Vec<Vec<u8>>,
) -> io::Result<bool> {
    let len = file.metadata()?.len();
    if len < *offset {
        // truncated (turbo flush): what is there now is all new
        *offset = 0;
        pending.clear();
    }
    if len == *offset {
        return Ok(true);
    }
    file.seek(SeekFrom::Start(*offset))?;
    let read = file.take(MAX_READ_PER_POLL).read_to_end(pending)? as u64;
    *offset += read;
    if let Some(end) = pending.iter().rposition(|&b| b == b'\n') {
        let rest = pending.split_off(end + 1);
        let complete = mem::replace(pending, rest);
        lines.extend(complete[..end].split(|&b| b == b'\n').map(<[u8]>::to_vec));
    }
    Ok(read < MAX_READ_PER_POLL)
}
