//! The few C library calls the bench needs (a monotonic clock in nanoseconds, `kill`, a SIGINT
//! flag), declared here because xtask has no libc dependency. Linux, 64-bit only.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

const _: () = assert!(
    size_of::<usize>() == 8,
    "the bench assumes a 64-bit Linux (time_t and long are 64 bits)"
);

/// `struct timespec` on 64-bit Linux.
#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

const CLOCK_MONOTONIC: i32 = 1;
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;
/// The signal the restart benchmark sends.
pub const SIGKILL: i32 = 9;

unsafe extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
    fn signal(sig: i32, handler: extern "C" fn(i32)) -> usize;
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock the workload programs stamp with (it is one
/// system-wide clock on Linux, so stamps from other processes compare with it).
pub fn mono_ns() -> i64 {
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { clock_gettime(CLOCK_MONOTONIC, &raw mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Sends `sig` to the single process `pid` (never a group: `pid` must be positive).
pub fn send_signal(pid: u32, sig: i32) -> Result<()> {
    let Ok(raw) = i32::try_from(pid) else {
        bail!("pid {pid} is out of range")
    };
    if raw <= 0 {
        bail!("refusing to signal pid {pid}");
    }
    // SAFETY: kill(2) with a positive pid touches no memory of ours.
    if unsafe { kill(raw, sig) } != 0 {
        bail!(
            "kill({pid}, {sig}) failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The NUL-separated command line of `pid`, or `None` when it is gone (or a zombie).
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Whether `pid` is alive and runs `program` (its argv\[0\], or any argument, is that path):
/// the check before signalling a pid we learnt earlier, which may have been reused since.
pub fn runs(pid: u32, program: &Path) -> bool {
    let program = program.to_string_lossy();
    cmdline(pid).is_some_and(|argv| argv.iter().any(|a| *a == program))
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: i32) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT and SIGTERM into a flag that every wait loop checks, so that Ctrl-C still runs
/// the clean-up (daemons stopped, temporary directories removed).
pub fn trap_interrupts() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
    }
}

/// Fails once SIGINT or SIGTERM has arrived.
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}
