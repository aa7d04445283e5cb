//! The workload of the attribution test (tests/e2e/attribution.rs): each run of it is one
//! death, taken from a plan made from a seed, and written down as the truth *before* it
//! happens.
//!
//! `deathbed run TRUTH SEED APP APPS DEATHS`: the plan is `APPS * DEATHS` deaths, shuffled by
//! `SEED`; app `APP` (0-based) dies the deaths `APP * DEATHS ..`, its run number `k` being the
//! number of lines already in `TRUTH` (one fixed-width line per run). A run appends one JSON
//! line saying what the daemon must record (pid, exit code or signal, who sends it, the peak
//! memory when it allocated), then dies that way. Once `DEATHS` runs are written it sleeps
//! until stopped, without a line.
//!
//! The plan has every signal whose default action ends a process (real-time ones included)
//! both self-raised and sent by another process, and every catchable one caught and
//! re-raised; the rest are kinds picked at random. The kinds: `exit` (a code 1..=255),
//! `instant` (exits at once: well under 1 ms of life), `thread_exit` (`exit_group` from a
//! second thread), `exec_chain` (execs itself 1-3 times, then exits or raises),
//! `self_signal` and `thread_signal` (raises the signal), `external` (a child with a
//! distinctive name sends it), `caught` (the signal is caught, the handler restores the
//! default action and raises it again: the sender is the child that sent the first),
//! `fault` (a real SIGSEGV: the kernel sends it). `exit`, `self_signal` and `external`
//! allocate 24-48 MiB first in a third of the runs and note their own `VmHWM` as the
//! reference peak.
//!
//! `deathbed chain N KIND VALUE` is an exec'd link of an `exec_chain`.

use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};

/// Bytes per truth line (padded with spaces, then `\n`), so that the run number is a `stat`.
const LINE: u64 = 256;

/// Signals whose default action ends the process (`turbo_common::default_fatal`).
fn fatal_signals() -> Vec<i32> {
    (1..=64).filter(|s| !matches!(s, 17..=23 | 28)).collect()
}

/// splitmix64: a tiny, good-enough generator for picking deaths.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[usize::try_from(self.below(items.len() as u64)).unwrap_or(0)]
    }
}

/// Whether a handler can catch `sig` (SIGKILL cannot; glibc keeps 32 and 33 for itself).
fn catchable(sig: i32) -> bool {
    sig != libc::SIGKILL && sig != 32 && sig != 33
}

/// One planned death: its kind and, for the kinds that take one, its signal.
#[derive(Clone, Copy)]
struct Death {
    kind: &'static str,
    signal: i32,
}

/// `total` deaths shuffled by `seed`: first every fatal signal self-raised, sent by another
/// process and (when catchable) caught and re-raised, then random kinds with random signals.
fn plan(seed: u64, total: usize) -> Vec<Death> {
    let mut rng = Rng(seed);
    let all = fatal_signals();
    let caught: Vec<i32> = all.iter().copied().filter(|&s| catchable(s)).collect();
    let mut plan: Vec<Death> = all
        .iter()
        .flat_map(|&signal| {
            let mut kinds = vec!["self_signal", "external"];
            if catchable(signal) {
                kinds.push("caught");
            }
            kinds.into_iter().map(move |kind| Death { kind, signal })
        })
        .collect();
    plan.truncate(total);
    while plan.len() < total {
        let kind = rng.pick(&turbo_tests::DEATH_KINDS);
        let signal = rng.pick(if kind == "caught" { &caught } else { &all });
        plan.push(Death { kind, signal });
    }
    // Fisher-Yates
    for i in (1..plan.len()).rev() {
        let j = usize::try_from(rng.below(i as u64 + 1)).unwrap_or(0);
        plan.swap(i, j);
    }
    plan
}

fn main() {
    reset_signals();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("run") if args.len() == 7 => run(&args[2], &args[3], &args[4], &args[5], &args[6]),
        Some("chain") if args.len() == 5 => chain(&args[2], &args[3], &args[4]),
        _ => {
            eprintln!(
                "usage: deathbed run TRUTH SEED APP APPS DEATHS | deathbed chain N KIND VALUE"
            );
            std::process::exit(64);
        }
    }
}

/// Every catchable signal back to its default action (Rust ignores SIGPIPE and catches SEGV and
/// BUS for its stack guard), and no core files (the core-dumping signals must be quick).
///
/// Signals 32 and 33 through the raw system call: glibc keeps them for itself (its `signal`
/// and `sigaddset` refuse them), and its `posix_spawn` starts children with both *ignored*, so
/// a process started by a posix_spawn'ing parent (turbo-daemon's fast path) survives them
/// unless it restores them itself.
fn reset_signals() {
    /// The kernel's `struct sigaction` on x86_64.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    for sig in fatal_signals() {
        if sig == libc::SIGKILL {
            continue;
        }
        if sig == 32 || sig == 33 {
            let default = KernelSigaction {
                handler: libc::SIG_DFL,
                flags: 0,
                restorer: 0,
                mask: 0,
            };
            // SAFETY: rt_sigaction(2) with a valid struct and the kernel's sigset size (8).
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &raw const default,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                )
            };
            continue;
        }
        // SAFETY: signal(2) with SIG_DFL on a valid signal number.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit with a valid struct.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &raw const none) };
}

fn run(truth: &str, seed: &str, app: &str, apps: &str, deaths: &str) {
    let number = |s: &str, what: &str| -> u64 {
        s.parse()
            .unwrap_or_else(|_| panic!("{what} is a number, not {s:?}"))
    };
    let (seed, app, apps, deaths) = (
        number(seed, "SEED"),
        number(app, "APP"),
        number(apps, "APPS"),
        number(deaths, "DEATHS"),
    );
    let k = std::fs::metadata(truth).map_or(0, |m| m.len() / LINE);
    if k >= deaths {
        loop {
            // SAFETY: pause(2) has no arguments.
            unsafe { libc::pause() };
        }
    }
    let slot = app * deaths + k;
    let death =
        plan(seed, usize::try_from(apps * deaths).unwrap_or(0))[usize::try_from(slot).unwrap_or(0)];
    // this death's own choices (code, size, chain length, sender name)
    let mut rng = Rng(seed ^ slot.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let pid = std::process::id();
    let kind = death.kind;
    // `instant` must be quick: no allocation, straight to the line and the exit
    let allocate = matches!(kind, "exit" | "self_signal" | "external") && rng.below(3) == 0;
    // kept (never freed) until the death
    let mut hog: Vec<u8>;
    let mut peak = 0;
    if allocate {
        let bytes = usize::try_from(24 + rng.below(25)).unwrap_or(24) << 20;
        hog = vec![1u8; bytes];
        // touch every page so that it is resident, whatever the allocator did
        for i in (0..bytes).step_by(4096) {
            // SAFETY: `i` is within the vector.
            unsafe { std::ptr::write_volatile(hog.as_mut_ptr().add(i), 2) };
        }
        peak = vm_hwm();
        std::hint::black_box(&hog);
    }
    let code = i32::try_from(1 + rng.below(255)).unwrap_or(1);
    let sig = death.signal;
    let me = comm();
    let mut line = Truth {
        k,
        pid,
        kind,
        code: -1,
        signal: 0,
        sender_pid: 0,
        sender_comm: String::new(),
        peak,
    };
    match kind {
        "exit" | "instant" | "thread_exit" => {
            line.code = code;
            line.write(truth);
            if kind == "thread_exit" {
                let t = std::thread::spawn(move || {
                    // SAFETY: exit_group(2) ends every thread; nothing is left to clean up.
                    unsafe { libc::syscall(libc::SYS_exit_group, code) };
                });
                let _ = t.join();
            }
            // SAFETY: _exit(2): the line was written with one write(2), nothing is buffered.
            unsafe { libc::_exit(code) };
        }
        "exec_chain" => {
            let links = 1 + rng.below(3);
            let end = if rng.below(2) == 0 {
                line.code = code;
                ("exit", code)
            } else {
                line.signal = sig;
                line.sender_pid = pid;
                line.sender_comm = me;
                ("raise", sig)
            };
            line.write(truth);
            chain(&links.to_string(), end.0, &end.1.to_string());
        }
        "self_signal" | "thread_signal" => {
            line.signal = sig;
            line.sender_pid = pid;
            line.sender_comm = me;
            line.write(truth);
            if kind == "thread_signal" {
                // raise(3) in a thread: tgkill to that thread, the whole group dies
                let t = std::thread::spawn(move || {
                    // glibc installs its own handlers for 32 and 33 once a thread exists
                    reset_signals();
                    raise(sig);
                    std::thread::sleep(std::time::Duration::from_secs(60));
                });
                let _ = t.join();
            } else {
                // SAFETY: kill(2) to ourselves.
                unsafe { libc::kill(pid_i32(pid), sig) };
            }
            hang();
        }
        "external" | "caught" => {
            let name = format!("kl{k}x{:x}", rng.below(0xffff));
            let killer = fork_killer(pid, sig, &name);
            if kind == "caught" {
                catch_and_reraise(sig);
            }
            line.signal = sig;
            line.sender_pid = killer.0;
            line.sender_comm = name;
            line.write(truth);
            killer.go();
            hang();
        }
        "fault" => {
            line.signal = libc::SIGSEGV;
            line.write(truth);
            // SAFETY: not safe at all, on purpose: a write to address 0 faults and the kernel
            // sends SIGSEGV (its default action, restored above, ends the process).
            unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
            hang();
        }
        _ => unreachable!(),
    }
}

/// The next link of an exec chain: exec again while `n` > 1, else end as `kind` says.
fn chain(n: &str, kind: &str, value: &str) {
    let n: u64 = n.parse().expect("N");
    let value: i32 = value.parse().expect("VALUE");
    if n > 0 {
        let exe = std::env::current_exe().expect("/proc/self/exe");
        let err = std::os::unix::process::CommandExt::exec(std::process::Command::new(exe).args([
            "chain",
            &(n - 1).to_string(),
            kind,
            &value.to_string(),
        ]));
        panic!("exec: {err}");
    }
    if kind == "raise" {
        raise(value);
        hang();
    }
    // SAFETY: _exit(2).
    unsafe { libc::_exit(value) };
}

/// `raise(3)` as the system call `tgkill` to the calling thread: glibc's `raise` refuses
/// signals 32 and 33.
fn raise(sig: i32) {
    // SAFETY: tgkill(2) to this thread of this process.
    unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            libc::syscall(libc::SYS_gettid),
            sig,
        );
    }
}

fn hang() -> ! {
    loop {
        // SAFETY: pause(2) has no arguments.
        unsafe { libc::pause() };
    }
}

fn pid_i32(pid: u32) -> i32 {
    i32::try_from(pid).unwrap_or(0)
}

/// A child that, once told, names itself `name` and sends `sig` to `target`.
struct Killer(u32, std::os::fd::OwnedFd);

impl Killer {
    fn go(self) {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.1);
        // SAFETY: write(2) of one byte from a live buffer to the pipe's write end.
        unsafe { libc::write(fd, b"!".as_ptr().cast(), 1) };
    }
}

fn fork_killer(target: u32, sig: i32, name: &str) -> Killer {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) into a two-element array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    let mut cname = [0u8; 16];
    cname[..name.len().min(15)].copy_from_slice(&name.as_bytes()[..name.len().min(15)]);
    // SAFETY: fork(2) of a single-threaded process; the child makes only system calls.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork");
    if child == 0 {
        // SAFETY: system calls on live buffers, then _exit: no allocation after the fork.
        unsafe {
            libc::close(fds[1]);
            libc::prctl(libc::PR_SET_NAME, cname.as_ptr());
            let mut byte = 0u8;
            libc::read(fds[0], (&raw mut byte).cast(), 1);
            libc::kill(pid_i32(target), sig);
            libc::_exit(0);
        }
    }
    // SAFETY: the read end belongs to the child now; the write end is ours.
    unsafe {
        libc::close(fds[0]);
        Killer(
            u32::try_from(child).unwrap_or(0),
            std::os::fd::FromRawFd::from_raw_fd(fds[1]),
        )
    }
}

extern "C" fn reraise(sig: libc::c_int) {
    // SAFETY: async-signal-safe calls only: back to the default action, then raise it again.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

fn catch_and_reraise(sig: i32) {
    // SAFETY: installs a handler that makes only async-signal-safe calls.
    unsafe { libc::signal(sig, reraise as *const () as libc::sighandler_t) };
}

/// This process's `VmHWM` in bytes.
fn vm_hwm() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
        * 1024
}

/// This process's `comm`.
fn comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_default()
}

/// One line of truth.
struct Truth {
    k: u64,
    pid: u32,
    kind: &'static str,
    code: i32,
    signal: i32,
    sender_pid: u32,
    sender_comm: String,
    peak: u64,
}

impl Truth {
    /// Appends the line with one `write(2)` (`O_APPEND`), padded to [`LINE`] bytes.
    fn write(&self, path: &str) {
        let mut text = format!(
            "{{\"k\":{},\"pid\":{},\"kind\":\"{}\",\"code\":{},\"signal\":{},\"sender_pid\":{},\"sender_comm\":\"{}\",\"peak\":{}}}",
            self.k,
            self.pid,
            self.kind,
            self.code,
            self.signal,
            self.sender_pid,
            self.sender_comm,
            self.peak
        );
        let width = usize::try_from(LINE).unwrap_or(256) - 1;
        assert!(text.len() <= width, "a truth line is too long: {text}");
        text.extend(std::iter::repeat_n(' ', width - text.len()));
        text.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(path)
            .expect("open the truth file");
        f.write_all(text.as_bytes()).expect("write the truth");
    }
}
