//! journald's native protocol: one datagram per record on the journal's socket
//! (`/run/systemd/journal/socket`), each a list of fields. A field is `NAME=value\n`, or, when
//! the value holds a newline, `NAME\n`, its length as a little-endian u64, the value and `\n`
//! (systemd's "Native Journal Protocol" document).
//!
//! Fields of each record: `MESSAGE` (the line as written, bytes as they are), `PRIORITY` (6
//! for stdout, `log.err_priority` for stderr), `SYSLOG_FACILITY=3` (daemon),
//! `SYSLOG_IDENTIFIER` (the app), `SYSLOG_PID` (the process; journald sets `_PID` itself, to
//! the sender, which is the keeper), `TURBO_APP`, `TURBO_INSTANCE`, `TURBO_PID`, `TURBO_STREAM`
//! (`out` or `err`). journald stamps the record when it receives it.
//!
//! This module must not queue or count (that is the parent module).

use std::{
    io::{self, Write as _},
    os::unix::net::UnixDatagram,
    path::PathBuf,
};

use super::{Batch, Link, SEND_TIMEOUT, Source};

impl Link for UnixDatagram {
    type Addr = PathBuf;

    fn connect(addr: &PathBuf) -> io::Result<Self> {
        let s = UnixDatagram::unbound()?;
        s.connect(addr)?;
        s.set_write_timeout(Some(SEND_TIMEOUT))?;
        Ok(s)
    }
}

/// Sends every record of `batch`; how many went out, and the error that stopped the rest.
pub(super) fn send(
    sock: &mut UnixDatagram,
    batch: &Batch,
    buf: &mut Vec<u8>,
) -> (u64, Option<io::Error>) {
    let mut sent = 0;
    let priority = batch.route.priority(batch.stream);
    for line in batch.lines() {
        entry(buf, batch, priority, line);
        if let Err(e) = sock.send(buf) {
            return (sent, Some(e));
        }
        sent += 1;
    }
    (sent, None)
}

/// One record's datagram into `buf`.
fn entry(buf: &mut Vec<u8>, batch: &Batch, priority: u8, line: &[u8]) {
    let app = batch.route.app.as_bytes();
    let Source { instance, pid } = batch.source;
    buf.clear();
    field(buf, "MESSAGE", line);
    // numbers never hold a newline: written in place, no field() needed
    let _ = write!(buf, "PRIORITY={priority}\nSYSLOG_FACILITY=3\n");
    field(buf, "SYSLOG_IDENTIFIER", app);
    let _ = writeln!(buf, "SYSLOG_PID={pid}");
    field(buf, "TURBO_APP", app);
    let _ = write!(buf, "TURBO_INSTANCE={instance}\nTURBO_PID={pid}\n");
    field(buf, "TURBO_STREAM", batch.stream.as_str().as_bytes());
}

/// One field, in the form its value allows.
pub(super) fn field(buf: &mut Vec<u8>, name: &str, value: &[u8]) {
    buf.extend_from_slice(name.as_bytes());
    if value.contains(&b'\n') {
        buf.push(b'\n');
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        buf.push(b'=');
    }
    buf.extend_from_slice(value);
    buf.push(b'\n');
}
