//! An app for the chaos test (tests/e2e/chaos.rs): writes `<n>\n` to stdout for n = 0, 1, 2, ...,
//! one `write(2)` per line (atomic on a pipe), every `NUMBERED_LINES_MS` milliseconds (10 by
//! default). On SIGTERM it writes `end <n>` with the count of lines written and exits 0, so the
//! test knows exactly which numbers must be in the log, none missing at the end either.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn write_line(text: &str) {
    let bytes = text.as_bytes();
    // SAFETY: write(2) from a live buffer to stdout. A failure (EPIPE would be one) ends the
    // app with a nonzero status, which the test reports as a changed pid.
    let n = unsafe { libc::write(1, bytes.as_ptr().cast(), bytes.len()) };
    if usize::try_from(n).ok() != Some(bytes.len()) {
        std::process::exit(3);
    }
}

fn main() {
    let pause = std::env::var("NUMBERED_LINES_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    // SAFETY: installs a handler that only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(
            libc::SIGTERM,
            on_term as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    let mut n: u64 = 0;
    while !STOP.load(Ordering::SeqCst) {
        write_line(&format!("{n}\n"));
        n += 1;
        std::thread::sleep(Duration::from_millis(pause));
    }
    write_line(&format!("end {n}\n"));
}
