//! The few system calls the bench needs: a monotonic clock in nanoseconds and `kill` (through
//! rustix), and a SIGINT flag (the C library's `signal`, which rustix does not offer safely).
//! Linux, 64-bit only.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

const _: () = assert!(
    size_of::<usize>() == 8,
    "the bench assumes a 64-bit Linux (time_t and long are 64 bits)"
);

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;
/// The signal the restart benchmark sends.
pub const SIGKILL: i32 = 9;

unsafe extern "C" {
    fn signal(sig: i32, handler: extern "C" fn(i32)) -> usize;
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock the workload programs stamp with (it is one
/// system-wide clock on Linux, so stamps from other processes compare with it).
pub fn mono_ns() -> i64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
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
    let (Some(target), Some(signal)) = (
        rustix::process::Pid::from_raw(raw),
        rustix::process::Signal::from_named_raw(sig),
    ) else {
        bail!("kill({pid}, {sig}): not a process id or not a signal");
    };
    if let Err(e) = rustix::process::kill_process(target, signal) {
        bail!("kill({pid}, {sig}) failed: {}", std::io::Error::from(e));
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

/// The fields of `/proc/<pid>/stat` after the command name: `fields[0]` is field 3 (state).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name may hold spaces and parentheses: the fields start after the last ')'
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split(' ').map(str::to_owned).collect())
}

/// The command name (`/proc/<pid>/comm`), or `None` when the process is gone.
pub fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_owned())
}

/// The pids whose parent is `ppid`.
pub fn children(ppid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            stat_fields(pid)
                .and_then(|f| f.get(1)?.parse::<u32>().ok())
                .is_some_and(|parent| parent == ppid)
        })
        .collect()
}

/// User + system CPU time of the whole process (`/proc/<pid>/stat` utime + stime, dead threads
/// included) in clock ticks of `USER_HZ` (100 per second on Linux).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// `USER_HZ`: the unit of [`cpu_ticks`]; fixed at 100 in the kernel's ABI.
pub const TICKS_PER_SECOND: f64 = 100.0;

/// Nanoseconds on CPU of each live thread of `pid` (`/proc/<pid>/task/<tid>/schedstat`, first
/// field: exact, unlike the 10 ms ticks of [`cpu_ticks`], but a thread that has exited is not
/// there any more).
pub fn thread_cpu_ns(pid: u32) -> Vec<(u32, u64)> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let tid = e.ok()?.file_name().to_str()?.parse::<u32>().ok()?;
        let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
        Some((tid, text.split_whitespace().next()?.parse().ok()?))
    })
    .collect()
}

/// CPU nanoseconds between two [`thread_cpu_ns`] readings: the growth of threads present in
/// both, plus all of threads that appeared in between.
pub fn cpu_ns_between(before: &[(u32, u64)], after: &[(u32, u64)]) -> u64 {
    after
        .iter()
        .map(|&(tid, ns)| {
            let old = before
                .iter()
                .find(|(t, _)| *t == tid)
                .map_or(0, |&(_, n)| n);
            ns.saturating_sub(old)
        })
        .sum()
}

/// The `KEY:   123 kB` field of a `/proc` file, in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// Anonymous resident memory in bytes (`Anonymous` of `/proc/<pid>/smaps_rollup`: heap,
/// stacks; the rest of the RSS is file-backed, the program and its libraries).
pub fn anon(pid: u32) -> Option<u64> {
    kib_field(
        &fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?,
        "Anonymous",
    )
}

/// Resident and proportional set size in bytes (`/proc/<pid>/smaps_rollup`: `Rss`, `Pss`).
pub fn rss_pss(pid: u32) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some((kib_field(&text, "Rss")?, kib_field(&text, "Pss")?))
}

/// Resident memory of `pid` in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn vm_rss(pid: u32) -> Option<u64> {
    kib_field(
        &fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        "VmRSS",
    )
}

/// How many BPF links `pid` holds open (`link_type:` in `/proc/<pid>/fdinfo/*`): one per
/// attached program of TurboProcess's event source.
pub fn bpf_links(pid: u32) -> usize {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    dir.filter_map(|e| fs::read_to_string(e.ok()?.path()).ok())
        .filter(|t| t.lines().any(|l| l.starts_with("link_type:")))
        .count()
}
