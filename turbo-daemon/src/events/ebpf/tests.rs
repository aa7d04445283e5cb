//! Unit tests of the loader and decoder. The ones loading programs need root and say so; the
//! scenario tests (fork, exec, signals, OOM, memory limits, both sources) are in `events::tests`.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::*;
use crate::events::ExitMemory;
use crate::events::tests::{can_run_ebpf, runtime};

fn bytes_of<T: aya::Pod>(value: &T) -> Vec<u8> {
    // SAFETY: T is Pod: plain integers/arrays without padding, so all its bytes are initialised.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

fn hdr(kind: u32, tgid: u32, key: u32) -> abi::EventHeader {
    abi::EventHeader {
        kind,
        tgid,
        pid: tgid + 1,
        key,
        ktime_ns: 1,
    }
}

#[test]
fn btf_offsets_are_found() {
    if !std::path::Path::new(VMLINUX_BTF).exists() {
        eprintln!("SKIPPED: btf_offsets_are_found: no {VMLINUX_BTF} on this kernel");
        return;
    }
    let off = Offsets::from_kernel().expect("offsets from kernel BTF");
    for f in &off.fields {
        eprintln!("{f} = {:?}", f.value);
        assert!(f.value.is_some(), "{f} is missing on this kernel");
    }
    let tgid = off.get(abi::GLOBAL_OFF_TASK_TGID).unwrap_or(0);
    let pid = off.get(abi::GLOBAL_OFF_TASK_PID).unwrap_or(0);
    // `pid_t pid; pid_t tgid;` are adjacent in every kernel.
    assert_eq!(tgid, pid + 4);
    // Values the spike measured on this kernel (6.18): a sanity check of the anonymous-member
    // walk (mm_struct.owner sits in an anonymous struct).
    assert_eq!(off.get(abi::GLOBAL_OFF_PERCPU_COUNTER_COUNT), Some(8));
    assert_eq!(off.get(abi::GLOBAL_OFF_SIGINFO_CODE), Some(8));
}

#[test]
fn empty_object_is_an_error_not_a_panic() {
    let err = load_object(&[], "bpf-linker was missing at build time")
        .expect_err("an empty object cannot load");
    assert!(matches!(err, EbpfError::NotBuilt { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "eBPF object not built: bpf-linker was missing at build time"
    );
    let err = load_object(b"not an ELF file", "").expect_err("garbage cannot load");
    assert!(!err.to_string().is_empty());
}

#[test]
fn decode_maps_every_kind() {
    let page = 4096;
    let exit = abi::ExitEvent {
        hdr: hdr(abi::EVENT_EXIT, 42, 5),
        exit_code: 0x300,
        group_exit_code: 0x300,
        rss_pages: 10,
        peak_rss_pages: 30,
    };
    assert_eq!(
        decode(&bytes_of(&exit), page),
        Some(Event::Exited {
            pid: 42,
            key: 5,
            status: WaitStatus::exited(3),
            memory: Some(ExitMemory {
                rss_bytes: 10 * page,
                peak_bytes: 30 * page,
            }),
            source: SourceKind::Ebpf
        })
    );
    let fork = abi::ForkEvent {
        hdr: hdr(abi::EVENT_FORK, 43, 5),
        parent_tgid: 42,
        flags: abi::FORK_UNTRACKED,
    };
    assert_eq!(
        decode(&bytes_of(&fork), page),
        Some(Event::Forked {
            parent: 42,
            child: 43,
            key: 5,
            tracked: false,
            source: SourceKind::Ebpf
        })
    );
    let mut exec = abi::ExecEvent {
        hdr: hdr(abi::EVENT_EXEC, 43, 5),
        old_pid: 43,
        filename_len: 9,
        filename: [0xff; abi::EXEC_FILENAME_LEN],
    };
    exec.filename[..10].copy_from_slice(b"/bin/true\0");
    assert_eq!(
        decode(&bytes_of(&exec), page),
        Some(Event::Exec {
            pid: 43,
            key: 5,
            filename: "/bin/true".into(),
            source: SourceKind::Ebpf
        })
    );
    let mut listen = abi::NetEvent {
        hdr: hdr(abi::EVENT_NET_LISTEN, 43, 5),
        family: abi::AF_INET,
        local_port: 8080,
        ..abi::NetEvent::default()
    };
    listen.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    assert_eq!(
        decode(&bytes_of(&listen), page),
        Some(Event::Net {
            pid: 43,
            key: 5,
            kind: crate::events::NetKind::Listen,
            local: "127.0.0.1:8080".parse().unwrap(),
            remote: "0.0.0.0:0".parse().unwrap(),
            source: SourceKind::Ebpf
        })
    );
    let mut accept = abi::NetEvent {
        hdr: hdr(abi::EVENT_NET_ACCEPT, 0, 5),
        family: abi::AF_INET6,
        local_port: 443,
        remote_port: 50_000,
        ..abi::NetEvent::default()
    };
    accept.remote_addr[15] = 1;
    let Some(Event::Net { kind, remote, .. }) = decode(&bytes_of(&accept), page) else {
        panic!("an accept decodes");
    };
    assert_eq!(kind, crate::events::NetKind::Accept);
    assert_eq!(remote, "[::1]:50000".parse().unwrap());
    let mut comm = [0u8; abi::COMM_LEN];
    comm[..4].copy_from_slice(b"kill");
    let signal = abi::SignalEvent {
        hdr: hdr(abi::EVENT_SIGNAL, 43, 5),
        sig: 9,
        code: 0,
        sender_tgid: 99,
        sender_pid: 99,
        result: 0,
        group: 1,
        sender_comm: comm,
    };
    assert_eq!(
        decode(&bytes_of(&signal), page),
        Some(Event::Signaled {
            pid: 43,
            key: 5,
            signal: 9,
            code: 0,
            sender: Some(Sender {
                pid: 99,
                comm: "kill".into()
            }),
            source: SourceKind::Ebpf
        })
    );
    let kernel_sent = abi::SignalEvent {
        code: 0x80,
        ..signal
    };
    assert!(matches!(
        decode(&bytes_of(&kernel_sent), page),
        Some(Event::Signaled {
            sender: None,
            code: 0x80,
            ..
        })
    ));
    let oom = abi::OomEvent {
        hdr: hdr(abi::EVENT_OOM_VICTIM, 43, 5),
        total_vm_pages: 10,
        anon_pages: 3,
        file_pages: 2,
        shmem_pages: 1,
        oom_score_adj: -100,
        uid: 0,
        comm,
    };
    let Some(Event::OomKilled { memory, .. }) = decode(&bytes_of(&oom), page) else {
        panic!("oom decodes");
    };
    assert_eq!(memory.rss_bytes(), 6 * page);
    assert_eq!(memory.total_vm_bytes, 10 * page);
    assert_eq!(memory.oom_score_adj, -100);
    let rss = abi::RssEvent {
        hdr: hdr(abi::EVENT_RSS_UNDER, 43, 5),
        rss_pages: 7,
        limit_pages: 8,
    };
    assert_eq!(
        decode(&bytes_of(&rss), page),
        Some(Event::MemoryUnder {
            pid: 43,
            key: 5,
            rss: 7 * page,
            limit: 8 * page,
            source: SourceKind::Ebpf
        })
    );
    // Short records and unknown kinds are dropped, never misread.
    assert_eq!(decode(&bytes_of(&exec)[..40], page), None);
    assert_eq!(decode(&bytes_of(&exit)[..16], page), None);
    let unknown = abi::ExitEvent {
        hdr: hdr(999, 1, 1),
        ..exit
    };
    assert_eq!(decode(&bytes_of(&unknown), page), None);
}

#[test]
fn handles_and_reader_future_are_send() {
    fn is_send<T: Send>(_: &T) {}
    // Type-checked, never called: the daemon may move these into spawned tasks.
    let _check = |ebpf: Ebpf, ring: RingReader, tx: UnboundedSender<Event>| {
        is_send(&ebpf);
        is_send(&ring.run(tx));
    };
}

#[test]
fn verifier_log_summary_is_one_short_line() {
    let log = "0: (79) r1 = *(u64 *)(r1 +0)\n; foo\n1: R1 invalid mem access 'scalar'\n\
               processed 12 insns (limit 1000000)\n";
    assert_eq!(
        summarize_verifier_log(log),
        "; foo / 1: R1 invalid mem access 'scalar'"
    );
}

async fn next_exit_of(rx: &mut UnboundedReceiver<Event>, pid: u32) -> Event {
    let wait = async {
        loop {
            match rx.recv().await {
                Some(ev @ Event::Exited { pid: p, .. }) if p == pid => return ev,
                Some(_) => {}
                None => panic!("ring reader stopped before pid {pid} exited"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(2), wait)
        .await
        .unwrap_or_else(|_| panic!("no eBPF exit event for pid {pid} within 2 s"))
}

#[test]
fn loads_every_program_and_reports_what_is_attached() {
    if !can_run_ebpf("loads_every_program_and_reports_what_is_attached") {
        return;
    }
    runtime().block_on(async {
        let (ebpf, _ring) = Ebpf::load().unwrap_or_else(|e| panic!("eBPF must load as root: {e}"));
        eprintln!(
            "loaded in {:?}; object {} bytes; programs {:?}; attached {:?}; fallbacks {:?}",
            ebpf.load_time(),
            Ebpf::object_size(),
            ebpf.programs(),
            ebpf.attached(),
            ebpf.fallbacks()
        );
        assert_eq!(
            ebpf.programs(),
            [
                abi::PROG_SCHED_PROCESS_EXIT,
                abi::PROG_SCHED_PROCESS_FORK,
                abi::PROG_SCHED_PROCESS_EXEC,
                abi::PROG_MARK_VICTIM,
                abi::PROG_SIGNAL_GENERATE,
                abi::PROG_RSS_STAT,
                abi::PROG_SCHED_WAKEUP,
                abi::PROG_SCHED_WAKEUP_NEW,
                abi::PROG_SCHED_SWITCH,
                abi::PROG_INET_SOCK_SET_STATE,
            ]
        );
        assert!(ebpf.fallbacks().is_empty(), "{:?}", ebpf.fallbacks());
        assert!(ebpf.net_supported());
        assert!(ebpf.runq_supported());
        assert!(!ebpf.rss_stat_attached(), "no limit set: rss_stat is idle");
        assert!(!ebpf.attached().iter().any(|p| p == abi::PROG_RSS_STAT));
        assert!(ebpf.memory_limits_supported());
    });
}

/// A kernel without some BTF fields: only what needs them is left out, and said so.
#[test]
fn a_missing_field_disables_only_what_needs_it() {
    if !can_run_ebpf("a_missing_field_disables_only_what_needs_it") {
        return;
    }
    let without = |globals: &[&str]| {
        let mut off = Offsets::from_kernel().expect("offsets");
        for f in &mut off.fields {
            if globals.contains(&f.global) {
                f.value = None;
            }
        }
        off
    };
    runtime().block_on(async {
        let off = without(&[
            abi::GLOBAL_OFF_MM_OWNER,
            abi::GLOBAL_OFF_BINPRM_FILENAME,
            abi::GLOBAL_OFF_SKC_NUM,
        ]);
        let (mut ebpf, _ring) =
            load_with(OBJECT, &off, Instant::now()).expect("the source still loads");
        eprintln!("{:?}", ebpf.fallbacks());
        assert_eq!(
            ebpf.programs(),
            [
                abi::PROG_SCHED_PROCESS_EXIT,
                abi::PROG_SCHED_PROCESS_FORK,
                abi::PROG_SCHED_PROCESS_EXEC,
                abi::PROG_MARK_VICTIM,
                abi::PROG_SIGNAL_GENERATE,
                abi::PROG_SCHED_WAKEUP,
                abi::PROG_SCHED_WAKEUP_NEW,
                abi::PROG_SCHED_SWITCH,
            ]
        );
        assert_eq!(
            ebpf.fallbacks(),
            [
                "sched_process_exec: exec filenames are empty (field missing from BTF)",
                "rss_stat: kernel BTF has no mm_struct.owner",
                "inet_sock_set_state: kernel BTF has no sock_common.skc_num",
            ]
        );
        assert!(!ebpf.net_supported());
        assert!(!ebpf.memory_limits_supported());
        let err = ebpf
            .set_memory_limit(std::process::id(), 1 << 30)
            .expect_err("no rss_stat");
        assert!(err.to_string().contains("rss_stat"), "{err}");

        let off = without(&[abi::GLOBAL_OFF_TASK_EXIT_CODE]);
        let err = load_with(OBJECT, &off, Instant::now()).expect_err("exit is essential");
        assert_eq!(
            err.to_string(),
            "kernel BTF has no field task_struct.exit_code; this kernel is not supported"
        );
    });
}

#[test]
fn ebpf_reports_sigkill() {
    if !can_run_ebpf("ebpf_reports_sigkill") {
        return;
    }
    runtime().block_on(async {
        let (mut ebpf, ring) =
            Ebpf::load().unwrap_or_else(|e| panic!("eBPF must load as root: {e}"));
        let (tx, mut rx) = unbounded_channel();
        let reader = tokio::spawn(ring.run(tx));

        let mut child = Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        ebpf.watch_app(pid, 11).expect("watch");
        assert_eq!(ebpf.watched_key(pid), Some(11));
        let killed = Instant::now();
        child.kill().expect("SIGKILL");
        let ev = next_exit_of(&mut rx, pid).await;
        eprintln!("eBPF event after {:?}: {ev:?}", killed.elapsed());
        let _ = child.wait();
        let Event::Exited {
            status,
            source,
            key,
            ..
        } = ev
        else {
            unreachable!("next_exit_of returns exits")
        };
        assert_eq!((source, key), (SourceKind::Ebpf, 11));
        assert_eq!(status.signal(), Some(9), "{status:?}");
        assert_eq!(ebpf.lost_events(), 0);
        // The kernel forgot the tgid itself; unwatching again is harmless.
        assert_eq!(ebpf.watched_key(pid), None);
        ebpf.unwatch(pid);

        drop(rx);
        tokio::time::timeout(Duration::from_secs(2), reader)
            .await
            .expect("run returns once the receiver is gone")
            .expect("reader task");
    });
}

#[test]
fn ebpf_reports_exit_code() {
    if !can_run_ebpf("ebpf_reports_exit_code") {
        return;
    }
    runtime().block_on(async {
        let (mut ebpf, ring) =
            Ebpf::load().unwrap_or_else(|e| panic!("eBPF must load as root: {e}"));
        let (tx, mut rx) = unbounded_channel();
        tokio::spawn(ring.run(tx));

        let mut child = Command::new("sh")
            .args(["-c", "read x; exit 3"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let pid = child.id();
        ebpf.watch_app(pid, 0).expect("watch");
        drop(child.stdin.take()); // EOF: `read` returns, the shell exits 3
        let ev = next_exit_of(&mut rx, pid).await;
        eprintln!("eBPF event: {ev:?}");
        let _ = child.wait();
        let Event::Exited {
            pid: p,
            key: 0,
            status,
            memory: Some(memory),
            source: SourceKind::Ebpf,
        } = ev
        else {
            panic!("an eBPF exit of key 0 with memory figures: {ev:?}");
        };
        assert_eq!((p, status), (pid, WaitStatus::exited(3)));
        // a shell is resident with at least a few hundred KiB, and its peak is no lower
        assert!(memory.rss_bytes > 100 << 10, "{memory:?}");
        assert!(memory.peak_bytes >= memory.rss_bytes, "{memory:?}");
    });
}

#[test]
fn unwatched_processes_are_not_reported() {
    if !can_run_ebpf("unwatched_processes_are_not_reported") {
        return;
    }
    runtime().block_on(async {
        let (mut ebpf, ring) =
            Ebpf::load().unwrap_or_else(|e| panic!("eBPF must load as root: {e}"));
        let (tx, mut rx) = unbounded_channel();
        tokio::spawn(ring.run(tx));

        // Forks, execs, signals and exits of unwatched processes.
        let quiet = Command::new("sh")
            .args(["-c", "true; /bin/true & kill -TERM $$"])
            .status()
            .expect("run sh");
        assert!(!quiet.success());
        let mut child = Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        ebpf.watch_app(pid, 1).expect("watch");
        child.kill().expect("SIGKILL");
        // The first event is about the watched one: everything else is filtered in the kernel.
        let first = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .expect("an event within 2 s")
            .expect("reader alive");
        let _ = child.wait();
        assert_eq!(first.pid(), pid, "{first:?}");
    });
}

/// Two CPU-bound watched processes per CPU: their threads wait on the run queue, and the kernel
/// side files the waits and the preemptions under the key; an unwatched key has nothing.
#[test]
fn run_queue_delay_of_a_watched_tree() {
    if !can_run_ebpf("run_queue_delay_of_a_watched_tree") {
        return;
    }
    runtime().block_on(async {
        let (mut ebpf, _ring) =
            Ebpf::load().unwrap_or_else(|e| panic!("eBPF must load as root: {e}"));
        assert!(ebpf.runq_supported(), "{:?}", ebpf.fallbacks());
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut spinners: Vec<_> = (0..cpus * 2)
            .map(|_| {
                let child = Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
                    .expect("spawn a spinner");
                ebpf.watch_app(child.id(), 21).expect("watch");
                child
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let stats = ebpf.runq(21);
        for c in &mut spinners {
            let _ = c.kill();
            let _ = c.wait();
        }
        eprintln!(
            "runq: {} waits, mean {} us, {} involuntary; buckets {:?}",
            stats.count,
            stats.sum_ns / stats.count.max(1) / 1_000,
            stats.involuntary,
            stats.buckets
        );
        assert!(stats.count > 0, "waits were measured: {stats:?}");
        assert_eq!(stats.buckets.iter().sum::<u64>(), stats.count);
        assert!(stats.involuntary > 0, "spinners get preempted: {stats:?}");
        // twice as many spinners as CPUs: each waits about as long as it runs (ticks of ms)
        assert!(
            stats.sum_ns / stats.count > 100_000,
            "a mean wait over 100 us: {stats:?}"
        );
        assert_eq!(
            ebpf.runq(22),
            RunqStats::default(),
            "nothing for another key"
        );
        ebpf.forget_runq(21);
        assert_eq!(ebpf.runq(21).count, 0);
    });
}
