//! Sockets: `listen:` sockets (bound here, or taken back from a running process with
//! `pidfd_getfd`) and the abstract datagram socket apps send `sd_notify` messages to, whose datagrams
//! carry the sender's pid as the kernel knows it.

use std::{
    io::{self, IoSliceMut},
    mem::MaybeUninit,
    net::{SocketAddr, TcpListener},
    os::{
        fd::{OwnedFd, RawFd},
        unix::net::UnixDatagram,
    },
};

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

/// A TCP socket bound to `addr` (`0.0.0.0:3000`, `[::1]:8080`) and listening, close-on-exec,
/// with `SO_REUSEADDR` (the standard library's choice), so that a port in `TIME_WAIT` after a
/// daemon restart can be bound again.
///
/// # Errors
/// A malformed address, or the bind or listen error (`Address already in use`).
pub fn listen_tcp(addr: &str) -> io::Result<OwnedFd> {
    let addr: SocketAddr = addr.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an IP address with a port, like 0.0.0.0:3000",
        )
    })?;
    Ok(OwnedFd::from(TcpListener::bind(addr)?))
}

/// A copy of fd `fd` of process `pid` (`pidfd_getfd`, Linux 5.6; needs the right to ptrace
/// it, which the daemon has over its apps as root or as their user), if it is a TCP socket
/// listening on `addr`.
///
/// # Errors
/// The system call's error, or `InvalidData` when the fd is something else.
pub fn take_listener(pid: u32, fd: RawFd, addr: &str) -> io::Result<OwnedFd> {
    let pidfd = super::process::pidfd_open(pid)?;
    let copy = rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty())?;
    let listening = rustix::net::sockopt::socket_acceptconn(&copy).unwrap_or(false);
    let wanted: Option<SocketAddr> = addr.parse().ok();
    let listener = TcpListener::from(copy);
    let local = listener.local_addr().ok();
    if !listening || local.is_none() || local != wanted {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a socket listening on {addr} (found {local:?})"),
        ));
    }
    Ok(OwnedFd::from(listener))
}

/// Connection attempts the kernel dropped on listening socket `fd` since it was bound: its
/// `sk_drops`, read with `getsockopt(SO_MEMINFO)` (Linux 4.12). On a listener the kernel counts
/// there every SYN or handshake it threw away, which is almost always because the accept queue
/// (the `listen()` backlog) was full: the per-socket twin of `ListenDrops` in
/// `/proc/net/netstat`. Neither rustix nor nix wraps this option, hence the raw call.
///
/// # Errors
/// The system call's error.
pub fn listen_drops(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<u64> {
    use std::os::fd::AsRawFd as _;
    /// `SK_MEMINFO_VARS` in Linux 4.12 and every kernel since.
    const VARS: usize = 9;
    let mut info = [0u32; VARS];
    let mut len = libc::socklen_t::try_from(size_of_val(&info)).unwrap_or(0);
    // SAFETY: `info` is a writable buffer of `len` bytes that outlives the call, and `len` is a
    // valid in/out length; the kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let drops = libc::SK_MEMINFO_DROPS as usize;
    if (len as usize) < (drops + 1) * size_of::<u32>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "SO_MEMINFO returned too few counters",
        ));
    }
    Ok(u64::from(info[drops]))
}

/// Binds the datagram socket apps send `sd_notify` messages to under the abstract name `name`
/// (`NOTIFY_SOCKET=@name`), non-blocking and with `SO_PASSCRED`, so every datagram carries the
/// sender's pid as the kernel knows it. An abstract socket has no file and so no permissions:
/// apps of every uid reach it, wherever the daemon's home is, and so may anyone else, which is
/// harmless: what is said is tied to the sender's checked pid.
///
/// # Errors
/// `AddrInUse` when another socket holds the name; other bind errors.
pub fn bind_notify_abstract(name: &str) -> io::Result<UnixDatagram> {
    use std::os::linux::net::SocketAddrExt as _;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    notify_options(UnixDatagram::bind_addr(&addr)?)
}

/// Non-blocking, with `SO_PASSCRED`.
fn notify_options(sock: UnixDatagram) -> io::Result<UnixDatagram> {
    sock.set_nonblocking(true)?;
    rustix::net::sockopt::set_socket_passcred(&sock, true)?;
    Ok(sock)
}

/// Receives one datagram from a socket with `SO_PASSCRED` into `buf`; returns its length and
/// the sender's pid (`None` if the kernel attached no credentials).
///
/// # Errors
/// `WouldBlock` when nothing is queued; other `recvmsg(2)` errors.
pub fn recv_with_pid(sock: &UnixDatagram, buf: &mut [u8]) -> io::Result<(usize, Option<u32>)> {
    // room for one SCM_CREDENTIALS message (the only kind this socket gets unasked)
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let pid = control.drain().find_map(|message| match message {
        RecvAncillaryMessage::ScmCredentials(cred) => {
            u32::try_from(cred.pid.as_raw_nonzero().get()).ok()
        }
        _ => None,
    });
    Ok((received.bytes, pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_datagrams_carry_the_sender_pid() {
        let name = format!("turbo-test-notify-{}", std::process::id());
        let sock = bind_notify_abstract(&name).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(
            recv_with_pid(&sock, &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            UnixDatagram::unbound()
                .unwrap()
                .send_to_addr(b"READY=1", &addr)
                .unwrap();
        }
        // a second bind of the name is refused: the daemon then takes another
        assert_eq!(
            bind_notify_abstract(&name).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        let (n, pid) = recv_with_pid(&sock, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert_eq!(pid, Some(std::process::id()));
    }

    #[test]
    fn a_full_accept_queue_counts_drops() {
        use std::os::fd::AsFd as _;
        let listener = TcpListener::from(listen_tcp("127.0.0.1:0").unwrap());
        let addr = listener.local_addr().unwrap();
        assert_eq!(listen_drops(listener.as_fd()).unwrap(), 0);
        // more clients than the backlog (std's 128, or less with a small somaxconn), never
        // accepted: the kernel drops the handshakes that find the queue full
        let clients: Vec<OwnedFd> = (0..300)
            .map(|_| {
                let s = rustix::net::socket_with(
                    rustix::net::AddressFamily::INET,
                    rustix::net::SocketType::STREAM,
                    rustix::net::SocketFlags::NONBLOCK,
                    None,
                )
                .unwrap();
                let _ = rustix::net::connect(&s, &addr); // EINPROGRESS
                s
            })
            .collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut drops = 0;
        while drops == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            drops = listen_drops(listener.as_fd()).unwrap();
        }
        assert!(drops > 0, "no drops with {} clients waiting", clients.len());
    }

    #[test]
    fn listeners_bind_and_refuse_bad_addresses() {
        let fd = listen_tcp("127.0.0.1:0").unwrap();
        let listener = TcpListener::from(fd);
        assert!(listener.local_addr().unwrap().port() > 0);
        assert_eq!(
            listen_tcp("localhost").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
