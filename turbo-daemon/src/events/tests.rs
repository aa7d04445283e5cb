//! Scenario tests of the event sources with real processes, through [`EventSource`]: process
//! trees (fork, double fork + setsid), exec, `kill -9` from another process, a real OOM kill in a
//! cgroup v1 memory cgroup, memory-limit crossings with their latency, and one scripted
//! workload through both sources at once.
//!
//! eBPF tests need root (CI runs as root). Without it they print `SKIPPED ... needs root` and
//! return, except under `CI`, where they fail: CI must never pass them vacuously.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::*;
use crate::os::process as os;

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn is_root() -> bool {
    crate::os::process::euid() == 0
}

/// Whether a real eBPF test can run; prints why not. Under `CI` a missing precondition fails.
pub(crate) fn can_run_ebpf(test: &str) -> bool {
    let ci = std::env::var_os("CI").is_some();
    if !is_root() {
        assert!(!ci, "{test}: CI must run the eBPF tests as root");
        eprintln!(
            "\n*** SKIPPED {test}: needs root (CAP_BPF+CAP_PERFMON) to load eBPF; it did NOT run ***\n"
        );
        return false;
    }
    if !ebpf::Ebpf::object_built() {
        assert!(!ci, "{test}: CI must build the eBPF object");
        eprintln!("\n*** SKIPPED {test}: eBPF object not built; it did NOT run ***\n");
        return false;
    }
    true
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns` and of Python's `time.monotonic_ns`.
fn monotonic_ns() -> u64 {
    crate::os::clock::monotonic_ns()
}

/// The real Python binary (not a pyenv shim script, whose extra execs would blur the events).
fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is needed by these tests");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A test process in its own process group, killed with its group (and any `also` pid, e.g.
/// one that left the group) when dropped, so a failing test leaves nothing behind.
struct Gated {
    child: Child,
    also: Vec<u32>,
}

impl Gated {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        let _ = os::signal_group(self.child.id(), os::SIGKILL);
        for pid in &self.also {
            let _ = os::signal_pid(*pid, os::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a script that prints `ready` and then waits for a line on stdin before doing its
/// work, and returns once `ready` was read: its exec is then complete (`spawn` itself returns
/// while the kernel is still finishing the exec, whose event would otherwise race the watch).
fn spawn_gated(program: &str, args: &[&str]) -> Gated {
    use std::{io::Read as _, os::unix::process::CommandExt as _};
    let mut child = Command::new(program)
        .args(args)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let out = child.stdout.as_mut().expect("piped stdout");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        match out.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            _ => panic!("{program} ended before printing ready"),
        }
    }
    assert_eq!(line, b"ready\n", "{program}");
    Gated {
        child,
        also: Vec::new(),
    }
}

fn release(gated: &mut Gated) {
    let stdin = gated.child.stdin.as_mut().expect("piped stdin");
    stdin.write_all(b"\n").expect("write to the gated child");
    stdin.flush().expect("flush");
}

fn ebpf_source(tx: tokio::sync::mpsc::UnboundedSender<Event>) -> EventSource {
    let source = start(EbpfSetting::Require, SourceOptions::default(), tx)
        .unwrap_or_else(|e| panic!("eBPF must load as root: {e}"));
    assert_eq!(source.kind(), SourceKind::Ebpf);
    source
}

fn procfs_source(tx: tokio::sync::mpsc::UnboundedSender<Event>) -> EventSource {
    let source = start(
        EbpfSetting::Off,
        SourceOptions {
            scan_interval: Duration::from_millis(20),
        },
        tx,
    )
    .expect("procfs always starts");
    assert_eq!(source.kind(), SourceKind::Procfs);
    source
}

/// Collects events until `done` says so (checked after each event), or panics after `limit`.
async fn collect_until(
    rx: &mut UnboundedReceiver<Event>,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&[Event]) -> bool,
) -> Vec<Event> {
    let started = Instant::now();
    let mut seen = Vec::new();
    while !done(&seen) {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(ev)) => {
                eprintln!(
                    "  {:>7.2} ms  {ev:?}",
                    started.elapsed().as_secs_f64() * 1e3
                );
                seen.push(ev);
            }
            Ok(None) => panic!("source stopped while waiting for {what}: {seen:#?}"),
            Err(_) => panic!("timed out after {limit:?} waiting for {what}; got {seen:#?}"),
        }
    }
    seen
}

fn has_exit(seen: &[Event], pid: u32) -> bool {
    seen.iter()
        .any(|e| matches!(e, Event::Exited { pid: p, .. } if *p == pid))
}

fn exit_status(seen: &[Event], pid: u32) -> Option<WaitStatus> {
    seen.iter().find_map(|e| match e {
        Event::Exited { pid: p, status, .. } if *p == pid => Some(*status),
        _ => None,
    })
}

fn forked_children(seen: &[Event], parent: u32) -> Vec<u32> {
    seen.iter()
        .filter_map(|e| match e {
            Event::Forked {
                parent: p, child, ..
            } if *p == parent => Some(*child),
            _ => None,
        })
        .collect()
}

#[test]
fn fork_of_a_watched_process_is_watched_with_its_key() {
    if !can_run_ebpf("fork_of_a_watched_process_is_watched_with_its_key") {
        return;
    }
    runtime().block_on(async {
        let (tx, mut rx) = unbounded_channel();
        let mut source = ebpf_source(tx);
        let mut root = spawn_gated("sh", &["-c", "echo ready; read x; /bin/sleep 1000 & wait"]);
        let pid = root.pid();
        source.watch(pid, 5).expect("watch");
        release(&mut root);

        let seen = collect_until(&mut rx, Duration::from_secs(5), "fork + exec", |s| {
            s.iter().any(|e| matches!(e, Event::Exec { .. }))
        })
        .await;
        let [child] = forked_children(&seen, pid)[..] else {
            panic!("one fork of the root: {seen:#?}");
        };
        assert!(
            matches!(&seen[0], Event::Forked { key: 5, tracked: true, source: SourceKind::Ebpf, .. }),
            "{seen:#?}"
        );
        assert!(
            seen.iter().any(|e| matches!(e, Event::Exec { pid: p, key: 5, filename, .. } if *p == child && filename == "/bin/sleep")),
            "{seen:#?}"
        );
        let ebpf = source.ebpf().expect("eBPF source");
        assert_eq!(ebpf.watched_key(child), Some(5), "the kernel watches the child");

        // Its exit comes with the key, and the kernel forgets it.
        os::signal_pid(child, os::SIGKILL).expect("kill");
        let seen = collect_until(&mut rx, Duration::from_secs(5), "child and root exits", |s| {
            has_exit(s, child) && has_exit(s, pid)
        })
        .await;
        assert_eq!(exit_status(&seen, child).and_then(WaitStatus::signal), Some(9));
        assert!(seen.iter().all(|e| e.key() == 5), "{seen:#?}");
        assert_eq!(source.ebpf().and_then(|e| e.watched_key(child)), None);
        let _ = root.child.wait();
        source.unwatch(pid);
    });
}

/// A daemonizing app: the child calls setsid, forks the real worker and exits at once. The
/// worker's parent link is gone by the time anyone could look at /proc; the kernel saw the fork.
/// Then `kill -9` from another process names that process as the sender.
#[test]
fn double_fork_setsid_grandchild_is_tracked_and_kill_names_the_sender() {
    if !can_run_ebpf("double_fork_setsid_grandchild_is_tracked_and_kill_names_the_sender") {
        return;
    }
    let script = "import os, sys, time\n\
                  print('ready', flush=True)\n\
                  sys.stdin.readline()\n\
                  child = os.fork()\n\
                  if child == 0:\n\
                  \x20   os.setsid()\n\
                  \x20   if os.fork() == 0:\n\
                  \x20       time.sleep(1000)\n\
                  \x20   os._exit(0)\n\
                  os.waitpid(child, 0)\n";
    runtime().block_on(async {
        let (tx, mut rx) = unbounded_channel();
        let mut source = ebpf_source(tx);
        let mut root = spawn_gated(&python(), &["-c", script]);
        let pid = root.pid();
        source.watch(pid, 9).expect("watch");
        release(&mut root);

        let seen = collect_until(&mut rx, Duration::from_secs(10), "the root's exit", |s| {
            has_exit(s, pid)
        })
        .await;
        let [child] = forked_children(&seen, pid)[..] else {
            panic!("one fork of the root: {seen:#?}");
        };
        let [grandchild] = forked_children(&seen, child)[..] else {
            panic!("one fork of the child: {seen:#?}");
        };
        assert_eq!(exit_status(&seen, child), Some(WaitStatus::exited(0)));
        assert_eq!(exit_status(&seen, pid), Some(WaitStatus::exited(0)));
        let _ = root.child.wait();
        root.also.push(grandchild);
        let ebpf = source.ebpf().expect("eBPF source");
        assert_eq!(
            ebpf.watched_key(grandchild),
            Some(9),
            "the daemon is still tracked"
        );
        let sid = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).expect("alive");
        eprintln!("grandchild {grandchild}: {sid}");

        // `kill -9` from another process.
        let mut killer = Command::new("/bin/kill")
            .args(["-9", &grandchild.to_string()])
            .spawn()
            .expect("spawn kill");
        let killer_pid = killer.id();
        let seen = collect_until(
            &mut rx,
            Duration::from_secs(5),
            "the grandchild's exit",
            |s| has_exit(s, grandchild),
        )
        .await;
        assert!(killer.wait().expect("kill").success());
        let signal = seen
            .iter()
            .find_map(|e| match e {
                Event::Signaled {
                    pid: p,
                    signal,
                    code,
                    sender,
                    key,
                    ..
                } if *p == grandchild => Some((*signal, *code, sender.clone(), *key)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("a Signaled event: {seen:#?}"));
        assert_eq!(
            signal,
            (
                9,
                0,
                Some(Sender {
                    pid: killer_pid,
                    comm: "kill".into()
                }),
                9
            )
        );
        assert_eq!(
            exit_status(&seen, grandchild).and_then(WaitStatus::signal),
            Some(9)
        );
    });
}

#[test]
fn exec_of_a_watched_process_is_reported_with_its_filename() {
    if !can_run_ebpf("exec_of_a_watched_process_is_reported_with_its_filename") {
        return;
    }
    runtime().block_on(async {
        let (tx, mut rx) = unbounded_channel();
        let mut source = ebpf_source(tx);
        let mut root = spawn_gated("sh", &["-c", "echo ready; read x; exec /bin/true"]);
        let pid = root.pid();
        source.watch(pid, 1).expect("watch");
        release(&mut root);
        let seen = collect_until(&mut rx, Duration::from_secs(5), "exit", |s| {
            has_exit(s, pid)
        })
        .await;
        let _ = root.child.wait();
        // the exit's memory figures are checked elsewhere (ebpf_reports_exit_code)
        let seen: Vec<Event> = seen
            .into_iter()
            .map(|e| match e {
                Event::Exited {
                    pid,
                    key,
                    status,
                    memory: Some(_),
                    source,
                } => Event::Exited {
                    pid,
                    key,
                    status,
                    memory: None,
                    source,
                },
                other => other,
            })
            .collect();
        assert_eq!(
            seen,
            [
                Event::Exec {
                    pid,
                    key: 1,
                    filename: "/bin/true".into(),
                    source: SourceKind::Ebpf
                },
                Event::Exited {
                    pid,
                    key: 1,
                    status: WaitStatus::exited(0),
                    memory: None,
                    source: SourceKind::Ebpf
                }
            ]
        );
    });
}

/// A cgroup v1 memory cgroup, removed on drop.
struct MemCgroup(std::path::PathBuf);

impl MemCgroup {
    fn create(limit: u64) -> Option<Self> {
        let root = std::path::Path::new("/sys/fs/cgroup/memory");
        if !root.join("memory.limit_in_bytes").exists() {
            return None;
        }
        let dir = root.join(format!("turbo-test-{}", std::process::id()));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).expect("create the memory cgroup");
        let cg = Self(dir);
        std::fs::write(cg.0.join("memory.limit_in_bytes"), limit.to_string())
            .expect("set memory.limit_in_bytes");
        Some(cg)
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).expect("move into cgroup");
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        // The cgroup can be removed only once its processes are gone (and reaped).
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("WARNING: could not remove {}", self.0.display());
    }
}

#[test]
fn oom_kill_in_a_v1_memory_cgroup_reports_the_victim() {
    if !can_run_ebpf("oom_kill_in_a_v1_memory_cgroup_reports_the_victim") {
        return;
    }
    let Some(cgroup) = MemCgroup::create(64 << 20) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs the cgroup v1 memory controller"
        );
        eprintln!(
            "\n*** SKIPPED oom_kill...: no cgroup v1 memory controller; it did NOT run ***\n"
        );
        return;
    };
    runtime().block_on(async {
        let (tx, mut rx) = unbounded_channel();
        let mut source = ebpf_source(tx);
        let python = python();
        let mut root = spawn_gated(
            "sh",
            &["-c", &format!("echo ready; read x; exec {python} -c \"b=b'x'*(200<<20)\"")],
        );
        let pid = root.pid();
        cgroup.add(pid);
        source.watch(pid, 4).expect("watch");
        release(&mut root);
        let seen = collect_until(&mut rx, Duration::from_secs(20), "the OOM kill", |s| {
            has_exit(s, pid)
        })
        .await;
        let status = root.child.wait().expect("wait");
        eprintln!("waitpid: {status}");
        let oom = seen
            .iter()
            .find_map(|e| match e {
                Event::OomKilled { pid: p, memory, key, .. } if *p == pid => Some((memory.clone(), *key)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("an OomKilled event: {seen:#?}"));
        eprintln!("victim: {oom:?}");
        assert_eq!(oom.1, 4);
        assert!(oom.0.rss_bytes() > 32 << 20, "rss near the 64M limit: {oom:?}");
        assert!(oom.0.anon_rss_bytes > 0 && oom.0.total_vm_bytes > 0, "{oom:?}");
        assert!(oom.0.comm.starts_with("python"), "{oom:?}");
        assert!(
            seen.iter().any(|e| matches!(e, Event::Signaled { pid: p, signal: 9, code: 0x80, sender: None, .. } if *p == pid)),
            "the kernel's SIGKILL: {seen:#?}"
        );
        assert_eq!(exit_status(&seen, pid).and_then(WaitStatus::signal), Some(9));
        source.unwatch(pid);
    });
    drop(cgroup);
}

/// What the allocating child printed: `(monotonic ns, resident pages)` after each step.
type Steps = std::sync::Arc<std::sync::Mutex<Vec<(u64, u64)>>>;

fn read_steps(child: &mut Child) -> Steps {
    let steps: Steps = Steps::default();
    let out = child.stdout.take().expect("piped stdout");
    let sink = steps.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let mut it = line.split_ascii_whitespace().map(str::parse::<u64>);
            if let (Some(Ok(t)), Some(Ok(rss))) = (it.next(), it.next()) {
                sink.lock().expect("steps").push((t, rss));
            }
        }
    });
    steps
}

/// Grows in 1 MiB steps (each touched), 2 ms apart, printing `monotonic_ns resident_pages`
/// after each; then waits for a line, frees everything and waits for another.
const GROWER: &str = "import os, sys, time\n\
    print('ready', flush=True)\n\
    sys.stdin.readline()\n\
    chunks = []\n\
    for i in range(int(sys.argv[1])):\n\
    \x20   chunks.append(b'x' * (1 << 20))\n\
    \x20   rss = int(open('/proc/self/statm').read().split()[1])\n\
    \x20   print(time.monotonic_ns(), rss, flush=True)\n\
    \x20   time.sleep(0.002)\n\
    sys.stdin.readline()\n\
    chunks = None\n\
    print(time.monotonic_ns(), int(open('/proc/self/statm').read().split()[1]), flush=True)\n\
    sys.stdin.readline()\n";

/// Latency of a limit crossing: from the start of the step that crossed (the previous step's
/// report) to the event's arrival, upper bound; and from the end of that step, lower bound.
fn crossing_latency(steps: &Steps, limit_pages: u64, arrived: u64) -> (f64, f64) {
    let steps = steps.lock().expect("steps").clone();
    let i = steps
        .iter()
        .position(|&(_, rss)| rss >= limit_pages)
        .unwrap_or_else(|| panic!("no step reached {limit_pages} pages: {steps:?}"));
    let start = if i == 0 { steps[0].0 } else { steps[i - 1].0 };
    let end = steps[i].0;
    let ms = |a: u64, b: u64| (a as f64 - b as f64) / 1e6;
    (ms(arrived, start), ms(arrived, end))
}

#[test]
fn rss_limit_crossings_are_reported_within_milliseconds() {
    if !can_run_ebpf("rss_limit_crossings_are_reported_within_milliseconds") {
        return;
    }
    runtime().block_on(async {
        let (tx, mut rx) = unbounded_channel();
        let mut source = ebpf_source(tx);
        let mut child = spawn_gated(&python(), &["-c", GROWER, "64"]);
        let pid = child.pid();
        let steps = read_steps(&mut child.child);
        tokio::time::sleep(Duration::from_millis(300)).await; // interpreter started
        source.watch(pid, 2).expect("watch");
        let page = crate::os::proc::page_size();
        let base = crate::os::proc::resident_pages(pid).expect("statm");
        let limit = base * page + (32 << 20);
        assert!(!source.ebpf().expect("ebpf").rss_stat_attached());
        source.set_memory_limit(pid, limit).expect("set limit");
        assert!(
            source.ebpf().expect("ebpf").rss_stat_attached(),
            "attached while a limit is set"
        );
        release(&mut child);
        let over = collect_until(&mut rx, Duration::from_secs(10), "MemoryOver", |s| {
            s.iter().any(|e| matches!(e, Event::MemoryOver { .. }))
        })
        .await;
        let arrived = monotonic_ns();
        tokio::time::sleep(Duration::from_millis(200)).await; // the child's report of that step
        let Some(Event::MemoryOver {
            rss,
            limit: reported,
            key,
            ..
        }) = over.last().cloned()
        else {
            unreachable!()
        };
        assert_eq!(key, 2);
        assert!(rss >= reported && reported >= limit && reported < limit + page, "{over:?}");
        let (upper, lower) = crossing_latency(&steps, limit.div_ceil(page), arrived);
        eprintln!(
            "MemoryOver at rss {rss} B, limit {reported} B: {lower:.2} ms after the crossing \
             step ended, {upper:.2} ms after it started"
        );
        assert!(
            upper < 50.0,
            "the crossing is reported within 50 ms (took {upper:.2} ms)"
        );

        // Free it all: below 7/8 of the limit, MemoryUnder.
        release(&mut child);
        let under = collect_until(&mut rx, Duration::from_secs(10), "MemoryUnder", |s| {
            s.iter().any(|e| matches!(e, Event::MemoryUnder { .. }))
        })
        .await;
        assert!(
            matches!(under.last(), Some(Event::MemoryUnder { pid: p, rss, limit: l, .. }) if *p == pid && *rss < *l - *l / 8),
            "{under:?}"
        );
        // Exactly one crossing each way, despite ~16k page faults.
        assert_eq!(
            over.iter()
                .chain(&under)
                .filter(|e| matches!(e, Event::MemoryOver { .. } | Event::MemoryUnder { .. }))
                .count(),
            2
        );
        source.clear_memory_limit(pid);
        assert!(
            !source.ebpf().expect("ebpf").rss_stat_attached(),
            "detached with the last limit"
        );
        release(&mut child);
        let _ = child.child.wait();
        source.unwatch(pid);
    });
}

#[test]
fn a_limit_set_below_current_usage_reports_over_at_once() {
    if !can_run_ebpf("a_limit_set_below_current_usage_reports_over_at_once") {
        return;
    }
    runtime().block_on(async {
        let (tx, mut rx) = unbounded_channel();
        let mut source = ebpf_source(tx);
        let child = spawn_gated("sh", &["-c", "echo ready; read x"]);
        let pid = child.pid();
        source.watch(pid, 6).expect("watch");
        source.set_memory_limit(pid, 4096).expect("limit");
        let seen = collect_until(&mut rx, Duration::from_secs(2), "MemoryOver", |s| {
            !s.is_empty()
        })
        .await;
        assert!(
            matches!(seen[0], Event::MemoryOver { pid: p, key: 6, limit: 4096, .. } if p == pid),
            "{seen:?}"
        );
        // Moving the threshold far above is a new threshold, not a fall under the old one: no
        // event (a supervisor switching between warning and limit levels relies on that).
        source.set_memory_limit(pid, 1 << 40).expect("limit");
        let quiet = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
        assert!(
            quiet.is_err(),
            "unexpected event after raising the limit: {quiet:?}"
        );
        drop(child);
        source.unwatch(pid);
        assert!(!source.ebpf().expect("ebpf").rss_stat_attached());
    });
}

/// The same scripted workload through both sources at once: the root forks two children; one
/// execs `sleep`, the other exits 3; the root waits for both and exits. Normalised to (kind,
/// role), both sources must tell the same story. The root's own exit is left out: procfs never
/// reports watched pids' exits (the runtime reaps them).
#[test]
fn one_workload_through_both_sources_gives_the_same_events() {
    if !can_run_ebpf("one_workload_through_both_sources_gives_the_same_events") {
        return;
    }
    let script = "import os, sys, time\n\
                  print('ready', flush=True)\n\
                  sys.stdin.readline()\n\
                  c1 = os.fork()\n\
                  if c1 == 0:\n\
                  \x20   time.sleep(0.2)\n\
                  \x20   os.execv('/bin/sleep', ['sleep', '0.4'])\n\
                  c2 = os.fork()\n\
                  if c2 == 0:\n\
                  \x20   time.sleep(0.4)\n\
                  \x20   os._exit(3)\n\
                  os.waitpid(c2, 0)\n\
                  os.waitpid(c1, 0)\n";
    runtime().block_on(async {
        let (ebpf_tx, mut ebpf_rx) = unbounded_channel();
        let (procfs_tx, mut procfs_rx) = unbounded_channel();
        let mut ebpf = ebpf_source(ebpf_tx);
        let mut procfs = procfs_source(procfs_tx);
        let mut root = spawn_gated(&python(), &["-c", script]);
        let pid = root.pid();
        ebpf.watch(pid, 8).expect("eBPF watch");
        procfs.watch(pid, 8).expect("procfs watch");
        tokio::time::sleep(Duration::from_millis(100)).await; // the first procfs scans
        release(&mut root);
        let started = Instant::now();
        let (root, status) = tokio::task::spawn_blocking(move || {
            let mut root = root;
            let status = root.child.wait();
            (root, status)
        })
        .await
        .expect("join");
        let status = status.expect("wait");
        drop(root);
        eprintln!("workload done in {:?}: {status}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await; // the last procfs scans
        ebpf.unwatch(pid);
        procfs.unwatch(pid);

        let drain = |rx: &mut UnboundedReceiver<Event>| {
            let mut v = Vec::new();
            while let Ok(e) = rx.try_recv() {
                v.push(e);
            }
            v
        };
        let from_ebpf = drain(&mut ebpf_rx);
        let from_procfs = drain(&mut procfs_rx);
        eprintln!("eBPF:   {from_ebpf:#?}\nprocfs: {from_procfs:#?}");
        let normalise = |events: &[Event]| {
            let children = forked_children(events, pid);
            let role = |p: u32| {
                if p == pid {
                    "root".to_owned()
                } else {
                    children
                        .iter()
                        .position(|c| *c == p)
                        .map_or_else(|| format!("other {p}"), |i| format!("c{}", i + 1))
                }
            };
            events
                .iter()
                .filter(|e| !matches!(e, Event::Exited { pid: p, .. } if *p == pid))
                .map(|e| {
                    assert_eq!(e.key(), 8, "{e:?}");
                    (e.kind(), role(e.pid()))
                })
                .collect::<Vec<_>>()
        };
        let expected: Vec<(&str, String)> = vec![
            ("forked", "c1".into()),
            ("forked", "c2".into()),
            ("exec", "c1".into()),
            ("exited", "c2".into()),
            ("exited", "c1".into()),
        ];
        assert_eq!(normalise(&from_ebpf), expected, "eBPF");
        assert_eq!(normalise(&from_procfs), expected, "procfs");
        // eBPF knows every status; procfs when it caught the zombie.
        let c2 = forked_children(&from_ebpf, pid)[1];
        assert_eq!(exit_status(&from_ebpf, c2), Some(WaitStatus::exited(3)));
        let c2p = forked_children(&from_procfs, pid)[1];
        let st = exit_status(&from_procfs, c2p).expect("procfs exit of c2");
        assert!(
            st == WaitStatus::exited(3) || st == WaitStatus::UNKNOWN,
            "{st:?}"
        );
    });
}

/// Measurements for BENCHMARKS.md, not a check: `cargo test -p turbo-daemon --lib
/// events::tests::measure -- --ignored --nocapture` as root.
#[test]
#[ignore = "a measurement, run by hand"]
fn measure() {
    if !can_run_ebpf("measure") {
        return;
    }
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    fn timed(program: &str, args: &[&str]) -> f64 {
        let t = Instant::now();
        let st = Command::new(program).args(args).status().expect("run");
        assert!(st.success());
        t.elapsed().as_secs_f64() * 1e3
    }
    let faults = || {
        timed(
            "dd",
            &[
                "if=/dev/zero",
                "of=/dev/null",
                "bs=512M",
                "count=1",
                "status=none",
            ],
        )
    };
    let forks = || {
        timed(
            "sh",
            &[
                "-c",
                "i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done",
            ],
        )
    };
    let runs = 15;
    let series = |f: &dyn Fn() -> f64| median((0..runs).map(|_| f()).collect());

    let base_faults = series(&faults);
    let base_forks = series(&forks);
    runtime().block_on(async {
        let (tx, mut rx) = unbounded_channel();
        let mut source = ebpf_source(tx);
        let ebpf = source.ebpf().expect("ebpf");
        eprintln!(
            "object {} B; load+attach {:?}; programs {:?}",
            ebpf::Ebpf::object_size(),
            ebpf.load_time(),
            ebpf.attached()
        );
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let idle_faults = series(&faults);
        let idle_forks = series(&forks);

        // A limit on another process: rss_stat attached, every fault pays the owner lookup.
        let mut other = spawn_gated("sh", &["-c", "echo ready; read x"]);
        let t = Instant::now();
        source
            .set_memory_limit(other.pid(), 1 << 40)
            .expect("limit");
        let attach = t.elapsed();
        let rss_faults = series(&faults);
        let t = Instant::now();
        source.clear_memory_limit(other.pid());
        let detach = t.elapsed();
        release(&mut other);

        // The workload itself watched (its forks, execs and exits are all reported).
        let mut watched_forks = Vec::new();
        let mut latencies = Vec::new();
        for _ in 0..runs {
            let mut root = spawn_gated(
                "sh",
                &[
                    "-c",
                    "echo ready; read x; i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done",
                ],
            );
            source.watch(root.pid(), 1).expect("watch");
            let t = Instant::now();
            release(&mut root);
            let _ = root.child.wait();
            watched_forks.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let watched_forks = median(watched_forks);
        drop(source);

        // kill -9 -> Exited, through EventSource.
        let (tx, mut rx) = unbounded_channel();
        let mut source = ebpf_source(tx);
        for _ in 0..50 {
            let mut child = Command::new("sleep").arg("1000").spawn().expect("sleep");
            let pid = child.id();
            source.watch(pid, 1).expect("watch");
            let t = Instant::now();
            child.kill().expect("kill");
            loop {
                match rx.recv().await {
                    Some(Event::Exited { pid: p, .. }) if p == pid => break,
                    Some(_) => {}
                    None => panic!("source gone"),
                }
            }
            latencies.push(t.elapsed().as_secs_f64() * 1e6);
            let _ = child.wait();
        }
        let mut sorted = latencies.clone();
        sorted.sort_by(f64::total_cmp);
        eprintln!(
            "kill -9 -> Exited event: median {:.0} us, p90 {:.0} us, max {:.0} us (50 runs)",
            sorted[25], sorted[45], sorted[49]
        );
        eprintln!("rss_stat attach {attach:?}, detach {detach:?}");
        eprintln!(
            "dd 512M (page faults), median of {runs}: no BPF {base_faults:.1} ms; programs \
             attached, no limit {idle_faults:.1} ms ({:+.1}%); rss_stat attached (a limit on \
             another process) {rss_faults:.1} ms ({:+.1}%)",
            (idle_faults / base_faults - 1.0) * 100.0,
            (rss_faults / base_faults - 1.0) * 100.0
        );
        eprintln!(
            "300 fork+exec+exit, median of {runs}: no BPF {base_forks:.1} ms; attached, \
             unwatched {idle_forks:.1} ms ({:+.1}%); watched (900 events) {watched_forks:.1} ms \
             ({:+.1}%)",
            (idle_forks / base_forks - 1.0) * 100.0,
            (watched_forks / base_forks - 1.0) * 100.0
        );
    });
}
