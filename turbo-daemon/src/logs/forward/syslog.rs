//! Syslog, RFC 5424: one message per record, to a unix datagram socket (`/dev/log`, the
//! default), or over UDP (one message per datagram, RFC 5426) or TCP (octet-counting framing,
//! RFC 6587 §3.4.1) to an address on the loopback interface.
//!
//! A message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [turbo@32473 instance="N"] MSG`,
//! where PRI is facility daemon (3) × 8 + the severity (6 for stdout, `log.err_priority` for
//! stderr), TIMESTAMP the record's stamp (RFC 3339 UTC, milliseconds), APP-NAME the app (bytes
//! outside printable ASCII become `_`, at most 48), PROCID the process, MSGID `stdout` or
//! `stderr`, and MSG the line as written. 32473 is the enterprise number RFC 5612 reserves for
//! documentation: TurboProcess has none of its own, and the structured element is only ever
//! read by operators' filters.
//!
//! Only loopback addresses are accepted: syslog over the network is unauthenticated and
//! unencrypted, so a remote collector is reached through a local relay (rsyslog, syslog-ng)
//! that the operator configures for it.
//!
//! This module must not queue or count (that is the parent module).

use std::{
    fmt, fs,
    io::{self, Write as _},
    net::{SocketAddr, TcpStream, UdpSocket},
    os::unix::net::UnixDatagram,
    path::PathBuf,
    sync::OnceLock,
};

use turbo_api::logfmt;

use super::{Batch, Link, SEND_TIMEOUT};
use crate::logs::Stream;

/// Where syslog messages go (`log.syslog_address`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SyslogAddr {
    /// A unix datagram socket such as `/dev/log`.
    Unix(PathBuf),
    /// `udp://<loopback ip>:<port>`.
    Udp(SocketAddr),
    /// `tcp://<loopback ip>:<port>`.
    Tcp(SocketAddr),
}

impl SyslogAddr {
    /// Reads `text`: an absolute socket path, `udp://ip:port` or `tcp://ip:port` (IPv6 in
    /// brackets) on loopback.
    ///
    /// # Errors
    /// A one-line reason naming the address.
    pub fn parse(text: &str) -> Result<SyslogAddr, String> {
        let net = |rest: &str| -> Result<SocketAddr, String> {
            let addr: SocketAddr = rest.parse().map_err(|_| {
                format!("log.syslog_address '{text}' is not an ip:port (IPv6 in brackets)")
            })?;
            if !addr.ip().is_loopback() {
                return Err(format!(
                    "log.syslog_address '{text}' is not on loopback: plain syslog is neither \
                     authenticated nor encrypted, so a remote collector is reached through a \
                     local relay"
                ));
            }
            Ok(addr)
        };
        if let Some(rest) = text.strip_prefix("udp://") {
            return net(rest).map(SyslogAddr::Udp);
        }
        if let Some(rest) = text.strip_prefix("tcp://") {
            return net(rest).map(SyslogAddr::Tcp);
        }
        if text.starts_with('/') {
            return Ok(SyslogAddr::Unix(text.into()));
        }
        Err(format!(
            "log.syslog_address '{text}' is not a socket path, udp://ip:port or tcp://ip:port"
        ))
    }
}

impl fmt::Display for SyslogAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "{}", p.display()),
            Self::Udp(a) => write!(f, "udp://{a}"),
            Self::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// A connection to a syslog receiver.
#[derive(Debug)]
pub(super) enum Conn {
    Unix(UnixDatagram),
    Udp(UdpSocket),
    Tcp(TcpStream),
}

impl Link for Conn {
    type Addr = SyslogAddr;

    fn connect(addr: &SyslogAddr) -> io::Result<Self> {
        Ok(match addr {
            SyslogAddr::Unix(path) => Conn::Unix(<UnixDatagram as Link>::connect(path)?),
            SyslogAddr::Udp(a) => {
                let local: SocketAddr = if a.is_ipv4() {
                    ([127, 0, 0, 1], 0).into()
                } else {
                    (std::net::Ipv6Addr::LOCALHOST, 0).into()
                };
                let s = UdpSocket::bind(local)?;
                s.connect(a)?;
                s.set_write_timeout(Some(SEND_TIMEOUT))?;
                Conn::Udp(s)
            }
            SyslogAddr::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, SEND_TIMEOUT)?;
                s.set_write_timeout(Some(SEND_TIMEOUT))?;
                s.set_nodelay(true)?;
                Conn::Tcp(s)
            }
        })
    }
}

/// Sends every record of `batch`; how many went out, and the error that stopped the rest.
/// Over TCP the whole batch goes in one write (each message framed by its length).
pub(super) fn send(conn: &mut Conn, batch: &Batch, buf: &mut Vec<u8>) -> (u64, Option<io::Error>) {
    let stamp = logfmt::stamp(u64::try_from(batch.at_ms).unwrap_or(0));
    let pri = 3 * 8 + batch.route.priority(batch.stream);
    let msgid = match batch.stream {
        Stream::Out => "stdout",
        Stream::Err => "stderr",
    };
    buf.clear();
    let _ = write!(buf, "<{pri}>1 {stamp} {} ", hostname());
    push_name(buf, &batch.route.app);
    let _ = write!(
        buf,
        " {} {msgid} [turbo@32473 instance=\"{}\"] ",
        batch.source.pid, batch.source.instance
    );
    let header = buf.len();
    match conn {
        Conn::Tcp(s) => {
            let mut framed =
                Vec::with_capacity(batch.text.len() + batch.lines as usize * (header + 8));
            for line in batch.lines() {
                let _ = write!(framed, "{} ", header + line.len());
                framed.extend_from_slice(&buf[..header]);
                framed.extend_from_slice(line);
            }
            match s.write_all(&framed) {
                Ok(()) => (batch.lines, None),
                // a part may have gone out (the receiver may see a cut message): none counts
                Err(e) => (0, Some(e)),
            }
        }
        Conn::Unix(s) => each(batch, buf, header, |m| s.send(m)),
        Conn::Udp(s) => each(batch, buf, header, |m| s.send(m)),
    }
}

/// One datagram per record: `buf[..header]` then the line.
fn each(
    batch: &Batch,
    buf: &mut Vec<u8>,
    header: usize,
    mut send: impl FnMut(&[u8]) -> io::Result<usize>,
) -> (u64, Option<io::Error>) {
    let mut sent = 0;
    for line in batch.lines() {
        buf.truncate(header);
        buf.extend_from_slice(line);
        if let Err(e) = send(buf) {
            return (sent, Some(e));
        }
        sent += 1;
    }
    (sent, None)
}

/// APP-NAME: printable US-ASCII, at most 48 characters.
fn push_name(buf: &mut Vec<u8>, app: &str) {
    buf.extend(
        app.bytes()
            .take(48)
            .map(|b| if b.is_ascii_graphic() { b } else { b'_' }),
    );
}

/// This host's name (HOSTNAME), read once; `-` (the nil value) when unknown.
fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or_else(|| "-".to_owned())
    })
}
