//! Reading app output pipes: non-blocking reads into a buffer's spare room (no zeroing of a
//! 1 MiB buffer per read on the log hot path), and the pipe-size controls. Only system calls;
//! what is read and where it goes is `logs`' business.

use std::{
    io,
    os::fd::{AsFd, BorrowedFd},
};

/// Makes reads of `fd`'s open file description non-blocking (shared by every descriptor of it,
/// in every process).
///
/// # Errors
/// From `ioctl(FIONBIO)`.
pub fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    rustix::io::ioctl_fionbio(fd, true)?;
    Ok(())
}

/// One `read(2)` of `fd` into the spare capacity of `buf` (which grows by what was read).
/// `Ok(0)` is the end of the pipe; an empty non-blocking pipe is `WouldBlock`.
///
/// # Errors
/// From `read`.
pub fn read_into(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<usize> {
    Ok(rustix::io::read(fd, rustix::buffer::spare_capacity(buf))?)
}

/// Asks for `fd`'s pipe buffer to be `size` bytes (`F_SETPIPE_SZ`); returns the size it got.
///
/// # Errors
/// From `fcntl` (`EPERM` past the user's limits, `EBUSY` when it holds more than `size`).
pub fn set_pipe_size(fd: BorrowedFd<'_>, size: usize) -> io::Result<usize> {
    Ok(rustix::pipe::fcntl_setpipe_size(fd, size)?)
}

/// The size of `fd`'s pipe buffer (`F_GETPIPE_SZ`).
///
/// # Errors
/// From `fcntl`.
pub fn pipe_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    Ok(rustix::pipe::fcntl_getpipe_size(fd)?)
}

/// The memory page size.
#[must_use]
pub fn page_size() -> usize {
    rustix::param::page_size()
}

#[cfg(test)]
mod tests {
    use std::{io::Write as _, os::fd::AsFd as _};

    use super::*;

    #[test]
    fn reads_append_and_an_empty_pipe_would_block() {
        let (r, mut w) = std::io::pipe().unwrap();
        set_nonblocking(&r).unwrap();
        let mut buf = b"kept ".to_vec();
        buf.reserve(64);
        let err = read_into(r.as_fd(), &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        w.write_all(b"new").unwrap();
        assert_eq!(read_into(r.as_fd(), &mut buf).unwrap(), 3);
        assert_eq!(buf, b"kept new");
        drop(w);
        assert_eq!(read_into(r.as_fd(), &mut buf).unwrap(), 0, "end of pipe");
        assert!(pipe_size(r.as_fd()).unwrap() >= page_size());
        match set_pipe_size(r.as_fd(), 1 << 20) {
            Ok(size) => assert_eq!(size, 1 << 20),
            // not root, past the user's pipe limits
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}"),
        }
    }
}
