//! Unix sockets that carry file descriptors: `AF_UNIX`/`SOCK_SEQPACKET`, so every message
//! keeps its boundaries (no framing needed) and carries its descriptors (`SCM_RIGHTS`). The log
//! keeper's socket is built on this. Only bytes and descriptors move here; what they mean is
//! the caller's business.

use std::{
    io,
    mem::MaybeUninit,
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::fs::PermissionsExt as _,
    },
    path::Path,
    time::Duration,
};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
    sockopt::{self, Timeout},
};

/// Most descriptors one message carries.
pub const MAX_FDS: usize = 2;
/// The longest socket path (`sun_path` less its terminating NUL).
const MAX_PATH: usize = 107;

fn socket() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

fn address(path: &Path) -> io::Result<SocketAddrUnix> {
    if path.as_os_str().len() > MAX_PATH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket path {} is too long (at most {MAX_PATH} bytes); use a shorter TURBO_HOME",
                path.display()
            ),
        ));
    }
    Ok(SocketAddrUnix::new(path)?)
}

/// Listens on `path` (a stale socket file is replaced), owner-only.
///
/// # Errors
/// From socket, bind, chmod or listen.
pub fn listen(path: &Path) -> io::Result<OwnedFd> {
    let fd = socket()?;
    let addr = address(path)?;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    rustix::net::bind(&fd, &addr)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    rustix::net::listen(&fd, 64)?;
    Ok(fd)
}

/// Connects to the socket at `path`; sends and receives give up after `timeout`.
///
/// # Errors
/// `NotFound`/`ConnectionRefused` when nothing listens there.
pub fn connect(path: &Path, timeout: Duration) -> io::Result<OwnedFd> {
    let fd = socket()?;
    rustix::net::connect(&fd, &address(path)?)?;
    set_timeouts(&fd, timeout)?;
    Ok(fd)
}

/// Accepts one connection (close-on-exec); its sends and receives give up after `timeout`, so
/// a peer that stops reading cannot stall the caller.
///
/// # Errors
/// From accept4.
pub fn accept(listener: BorrowedFd<'_>, timeout: Duration) -> io::Result<OwnedFd> {
    let fd = rustix::net::accept_with(listener, SocketFlags::CLOEXEC)?;
    set_timeouts(&fd, timeout)?;
    Ok(fd)
}

/// The uid and pid of the process at the other end of a connected socket (`SO_PEERCRED`: who
/// connected, as the kernel saw it at `connect`, not what the peer claims).
///
/// # Errors
/// From getsockopt.
pub fn peer(fd: BorrowedFd<'_>) -> io::Result<(u32, i32)> {
    let cred = sockopt::socket_peercred(fd)?;
    Ok((cred.uid.as_raw(), cred.pid.as_raw_pid()))
}

fn set_timeouts(fd: &OwnedFd, timeout: Duration) -> io::Result<()> {
    for which in [Timeout::Recv, Timeout::Send] {
        sockopt::set_socket_timeout(fd, which, Some(timeout))?;
    }
    Ok(())
}

/// A connected pair (close-on-exec), for tests.
///
/// # Errors
/// From socketpair.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Sends one message with `fds` (at most [`MAX_FDS`]) attached.
///
/// # Errors
/// From sendmsg, which is made again when a signal interrupts it (`EPIPE` when the peer is gone: `MSG_NOSIGNAL`, so never a SIGPIPE).
pub fn send(fd: BorrowedFd<'_>, body: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    assert!(fds.len() <= MAX_FDS, "at most {MAX_FDS} descriptors");
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("descriptors do not fit a message"));
    }
    // a socket with a time-out is not restarted after a signal handler (signal(7)), and the
    // daemon handles SIGCHLD: an interrupted call is made again
    rustix::io::retry_on_intr(|| {
        rustix::net::sendmsg(
            fd,
            &[io::IoSlice::new(body)],
            &mut control,
            SendFlags::NOSIGNAL,
        )
    })?;
    Ok(())
}

/// Receives one message into `buf` and the descriptors attached to it (close-on-exec).
/// `Ok((0, []))` is the end of the connection.
///
/// # Errors
/// From recvmsg, which is made again when a signal interrupts it (`WouldBlock` on a
/// time-out); `InvalidData` when the message was cut (its
/// descriptors are closed).
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    // made again when a signal handler interrupts it, as in `send`
    let msg = rustix::io::retry_on_intr(|| {
        rustix::net::recvmsg(
            fd,
            &mut [io::IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
    })?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    if msg
        .flags
        .intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a socket message was cut",
        ));
    }
    Ok((msg.bytes, fds))
}

/// Whether the peer of a connected socket has closed it (or it failed), without waiting and
/// without taking any message: `false` while it is open, with or without data waiting.
pub fn peer_closed(fd: impl AsFd) -> bool {
    let mut byte = [0u8; 1];
    match rustix::net::recv(&fd, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Ok((_, n)) => n == 0,
        Err(e) => e != rustix::io::Errno::AGAIN,
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Read as _, io::Write as _, os::fd::AsFd as _};

    use super::*;

    #[test]
    fn a_message_carries_its_descriptors() {
        let (a, b) = pair().unwrap();
        let (r, mut w) = std::io::pipe().unwrap();
        send(a.as_fd(), b"hello", &[r.as_fd()]).unwrap();
        drop(r);
        let mut buf = [0; 64];
        let (n, fds) = recv(b.as_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"hello"[..], 1));
        w.write_all(b"through the copy").unwrap();
        drop(w);
        let mut got = String::new();
        std::fs::File::from(fds.into_iter().next().unwrap())
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, "through the copy");
        assert!(!peer_closed(&b));
        send(a.as_fd(), b"waiting", &[]).unwrap();
        assert!(!peer_closed(&b), "a waiting message is not taken");
        assert_eq!(recv(b.as_fd(), &mut buf).unwrap().0, 7);
        drop(a);
        assert!(peer_closed(&b));
        assert_eq!(recv(b.as_fd(), &mut buf).unwrap().0, 0, "end");
    }

    #[test]
    fn a_message_too_big_for_the_buffer_is_an_error() {
        let (a, b) = pair().unwrap();
        let (r, _w) = std::io::pipe().unwrap();
        send(a.as_fd(), b"0123456789", &[r.as_fd()]).unwrap();
        let err = recv(b.as_fd(), &mut [0; 4]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_receive_interrupted_by_a_signal_handler_goes_on() {
        extern "C" fn nothing(_: libc::c_int) {}
        let sig = libc::SIGRTMIN() + 7;
        // SAFETY: a handler that does nothing, for a real-time signal nobody else uses here;
        // no SA_RESTART, and the socket has a time-out anyway (never restarted by the kernel).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = nothing as *const () as libc::sighandler_t;
            assert_eq!(
                libc::sigaction(sig, &raw const action, std::ptr::null_mut()),
                0
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = listen(&path).unwrap();
        let client = connect(&path, Duration::from_secs(5)).unwrap();
        let server = accept(listener.as_fd(), Duration::from_secs(5)).unwrap();
        // SAFETY: pthread_self has no preconditions.
        let receiver = unsafe { libc::pthread_self() };
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: the receiving thread is alive (it waits in recv until the send below).
            assert_eq!(unsafe { libc::pthread_kill(receiver, sig) }, 0);
            std::thread::sleep(Duration::from_millis(100));
            send(client.as_fd(), b"after", &[]).unwrap();
        });
        let got = recv(server.as_fd(), &mut [0; 8]);
        sender.join().unwrap();
        assert_eq!(got.unwrap().0, 5);
    }

    #[test]
    fn listen_connect_accept_and_a_too_long_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = listen(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let client = connect(&path, Duration::from_secs(1)).unwrap();
        let server = accept(listener.as_fd(), Duration::from_millis(50)).unwrap();
        send(client.as_fd(), b"hi", &[]).unwrap();
        assert_eq!(recv(server.as_fd(), &mut [0; 8]).unwrap().0, 2);
        let err = recv(server.as_fd(), &mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "time-out");
        let long = dir.path().join("x".repeat(120));
        let err = connect(&long, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("too long"), "{err}");
    }
}
