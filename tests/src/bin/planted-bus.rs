//! A fake daemon for tests/e2e/adversary_cli.rs: what another user plants as `bus.sock` in a
//! `TURBO_HOME` to capture what the CLI sends (issue 15, item 2).
//!
//! `planted-bus SOCKET RECORD`: listens on SOCKET (mode 0777, so any user can connect), prints
//! `ready`, then for each connection appends `connection <n>: <bytes> bytes` to RECORD once the
//! client hangs up (or after 5 s of silence), with the bytes themselves escaped after a tab. Runs
//! until killed.

use std::{
    fmt::Write as _,
    io::{Read as _, Write as _},
    os::unix::{fs::PermissionsExt as _, net::UnixListener},
    time::Duration,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(socket), Some(record)) = (args.next(), args.next()) else {
        eprintln!("usage: planted-bus SOCKET RECORD");
        std::process::exit(2);
    };
    let listener = UnixListener::bind(&socket).expect("bind the socket");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777))
        .expect("chmod the socket");
    println!("ready");
    let _ = std::io::stdout().flush();
    for (n, stream) in listener.incoming().enumerate() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        let mut line = format!("connection {}: {} bytes\t", n + 1, got.len());
        for b in got.escape_ascii() {
            let _ = write!(line, "{}", char::from(b));
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&record)
            .expect("open the record");
        writeln!(file, "{line}").expect("write the record");
    }
}
