//! The keeper's socket: `AF_UNIX`/`SOCK_SEQPACKET`, so every request and reply is one message
//! with its file descriptors (`SCM_RIGHTS`) attached, and JSON bodies need no framing. This
//! module only moves bytes and descriptors; what they mean is `keeper`'s business.

use std::{
    io,
    mem::{size_of, size_of_val, zeroed},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
    time::Duration,
};

/// Longest message (a reply with 20 stderr lines of 4 KiB, or the counters of many apps).
pub const MAX_MESSAGE: usize = 256 * 1024;
/// Most descriptors in one message (a process's stdout and stderr).
const MAX_FDS: usize = 2;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is a new descriptor we own.
    let fd = check(unsafe {
        libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn address(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid (empty) value.
    let mut addr: libc::sockaddr_un = unsafe { zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket path {} is too long (at most {} bytes); use a shorter TURBO_HOME",
                path.display(),
                addr.sun_path.len() - 1
            ),
        ));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let len = size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((addr, libc::socklen_t::try_from(len).unwrap_or(0)))
}

/// Listens on `path` (a stale socket file is replaced), owner-only.
///
/// # Errors
/// From socket, bind, chmod or listen.
pub fn listen(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::PermissionsExt as _;
    let fd = socket()?;
    let (addr, len) = address(path)?;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    check(unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    // SAFETY: listen on a bound socket we own.
    check(unsafe { libc::listen(fd.as_raw_fd(), 64) })?;
    Ok(fd)
}

/// Connects to the keeper at `path`; replies wait at most `timeout`.
///
/// # Errors
/// `NotFound`/`ConnectionRefused` when no keeper listens.
pub fn connect(path: &Path, timeout: Duration) -> io::Result<OwnedFd> {
    let fd = socket()?;
    let (addr, len) = address(path)?;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    check(unsafe { libc::connect(fd.as_raw_fd(), (&raw const addr).cast(), len) })?;
    set_timeouts(fd.as_raw_fd(), timeout)?;
    Ok(fd)
}

/// Accepts one connection (close-on-exec); its sends give up after `timeout`, so a client that
/// stops reading cannot stall the keeper.
///
/// # Errors
/// From accept4.
pub fn accept(listener: RawFd, timeout: Duration) -> io::Result<OwnedFd> {
    // SAFETY: accept4 on a listening socket; null address arguments are allowed.
    let fd = check(unsafe {
        libc::accept4(
            listener,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: a new descriptor from accept4, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_timeouts(fd.as_raw_fd(), timeout)?;
    Ok(fd)
}

fn set_timeouts(fd: RawFd, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros().min(999_999) as i32),
    };
    for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: setsockopt with a timeval of the right size.
        check(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&raw const tv).cast(),
                libc::socklen_t::try_from(size_of_val(&tv)).unwrap_or(0),
            )
        })?;
    }
    Ok(())
}

/// The control buffer for [`MAX_FDS`] descriptors, aligned for `cmsghdr`.
#[repr(C)]
struct Control {
    _align: [libc::cmsghdr; 0],
    bytes: [u8; 64],
}

/// Sends one message with `fds` attached.
///
/// # Errors
/// From sendmsg (`EPIPE` when the peer is gone: `MSG_NOSIGNAL`, so never a SIGPIPE).
pub fn send(fd: RawFd, body: &[u8], fds: &[RawFd]) -> io::Result<()> {
    assert!(fds.len() <= MAX_FDS, "at most {MAX_FDS} descriptors");
    let mut iov = libc::iovec {
        iov_base: body.as_ptr().cast_mut().cast(),
        iov_len: body.len(),
    };
    let mut control = Control {
        _align: [],
        bytes: [0; 64],
    };
    // SAFETY: msghdr is plain data; zeroes are valid, the fields are set below.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let data_len = u32::try_from(size_of_val(fds)).unwrap_or(0);
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(data_len) } as usize;
        msg.msg_control = control.bytes.as_mut_ptr().cast();
        // size_t in glibc, socklen_t in musl (cmsg_len too)
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer holds `space` bytes, enough for one cmsghdr with `fds`;
        // CMSG_FIRSTHDR/CMSG_DATA point inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(data_len) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(cmsg).cast::<RawFd>(),
                fds.len(),
            );
        }
    }
    // SAFETY: `msg` points at live buffers for the duration of the call.
    let n = unsafe { libc::sendmsg(fd, &raw const msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one message into `buf` and the descriptors attached to it (close-on-exec).
/// `Ok((0, []))` is the end of the connection.
///
/// # Errors
/// From recvmsg (`WouldBlock` on a timeout); `InvalidData` when the message was cut.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = Control {
        _align: [],
        bytes: [0; 64],
    };
    // SAFETY: as in `send`.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.bytes.as_mut_ptr().cast();
    msg.msg_controllen = control.bytes.len() as _;
    // SAFETY: `msg` points at live buffers for the duration of the call.
    let n = unsafe { libc::recvmsg(fd, &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `msg_controllen` bytes of control data; the CMSG_* macros
    // walk only inside it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let count =
                    ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a keeper message was cut",
        ));
    }
    Ok((usize::try_from(n).unwrap_or(0), fds))
}
