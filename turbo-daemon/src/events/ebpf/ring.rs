//! The ring buffer the programs write into, read on the daemon's loop through an `AsyncFd`, and
//! the decoding of its records into [`Event`]s.
//!
//! Under a flood (an app whose descendants fork and exit thousands of times a second) the
//! kernel wakes the reader for nearly every record, because the reader keeps up and so is
//! always waiting for the next one; each wake-up costs the daemon far more than the record.
//! [`WakePace`] lets the reader wake up at once while wake-ups are rare, and past a budget of
//! them makes it pause briefly after each drain so that records gather and are read in one
//! pass. A caller that must see every record written so far (a request judged against the
//! processes an app has) cuts the pause short ([`super::Ebpf::hurry_reader`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{Notify, mpsc::UnboundedSender},
};
use turbo_common as abi;

use super::{EbpfError, Ring, RingReader};

use crate::events::{Event, ExitMemory, NetKind, OomMemory, Sender, SourceKind, WaitStatus};

/// Wake-ups the reader takes at once within [`PACE_WINDOW`]; past them it pauses.
const PACE_BURST: u32 = 20;
/// The window [`PACE_BURST`] is counted in: up to 200 prompt wake-ups a second.
const PACE_WINDOW: Duration = Duration::from_millis(100);
/// The pause after a drain once the burst is spent. At the ring's size (256 KiB) and a record
/// of 40 to 300 bytes, a millisecond holds well over a million records a second before the ring
/// could fill.
const PACE_PAUSE: Duration = Duration::from_millis(1);

/// When the reader may wait for the next record again: at once while wake-ups are rare, after
/// [`PACE_PAUSE`] once more than [`PACE_BURST`] came within [`PACE_WINDOW`]. Pure: the caller
/// passes the time.
#[derive(Debug)]
pub(super) struct WakePace {
    /// Prompt wake-ups left in the window.
    left: u32,
    /// When the window began.
    since: Option<Instant>,
}

impl WakePace {
    pub(super) const fn new() -> Self {
        Self {
            left: PACE_BURST,
            since: None,
        }
    }

    /// A drain ended at `now`: how long to pause before waiting again.
    pub(super) fn drained(&mut self, now: Instant) -> Option<Duration> {
        let fresh = self
            .since
            .is_none_or(|at| now.saturating_duration_since(at) >= PACE_WINDOW);
        if fresh {
            self.since = Some(now);
            self.left = PACE_BURST;
        }
        if self.left == 0 {
            return Some(PACE_PAUSE);
        }
        self.left -= 1;
        None
    }
}

impl RingReader {
    /// The handle that cuts the reader's pause short (see the module docs).
    pub(super) fn hurry(&self) -> Arc<Notify> {
        Arc::clone(&self.hurry)
    }

    /// Reads events until `tx` is closed (or, logged, polling the ring fails), sending one
    /// [`Event`] per record.
    pub async fn run(self, tx: UnboundedSender<Event>) {
        let page_size = self.page_size;
        let hurry = self.hurry;
        let mut fd = match self.ring {
            Ring::Registered(fd) => fd,
            Ring::Unregistered(ring) => match register(ring) {
                Ok(fd) => fd,
                Err(e) => {
                    tracing::error!(error = %e, "eBPF events stopped");
                    return;
                }
            },
        };
        let mut pace = WakePace::new();
        loop {
            let mut guard = tokio::select! {
                ready = fd.readable_mut() => match ready {
                    Ok(guard) => guard,
                    Err(e) => {
                        tracing::error!(error = %e, "eBPF ring buffer poll failed; events stopped");
                        return;
                    }
                },
                () = tx.closed() => return,
            };
            let ring = guard.get_inner_mut();
            while let Some(item) = ring.next() {
                let Some(event) = decode(&item, page_size) else {
                    continue;
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
            guard.clear_ready();
            if let Some(pause) = pace.drained(Instant::now()) {
                // records written meanwhile gather; the edge-triggered readiness the kernel
                // signals for them is kept for the next `readable_mut`
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = hurry.notified() => {}
                    () = tx.closed() => return,
                }
            }
        }
    }
}

/// Reads a `T` from the start of `bytes` if it is long enough.
fn read_record<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: the length was checked, and T is Pod (any bit pattern is valid).
    Some(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

/// A NUL-padded kernel string.
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// One ring-buffer record to an [`Event`]; `None` for short records and unknown kinds.
pub(super) fn decode(bytes: &[u8], page_size: u64) -> Option<Event> {
    let hdr: abi::EventHeader = read_record(bytes)?;
    let source = SourceKind::Ebpf;
    let (pid, key) = (hdr.tgid, hdr.key);
    Some(match hdr.kind {
        abi::EVENT_EXIT => {
            let ev: abi::ExitEvent = read_record(bytes)?;
            Event::Exited {
                pid,
                key,
                status: WaitStatus(ev.wait_status()),
                memory: Some(ExitMemory {
                    rss_bytes: ev.rss_pages * page_size,
                    peak_bytes: ev.peak_rss_pages * page_size,
                }),
                source,
            }
        }
        abi::EVENT_FORK => {
            let ev: abi::ForkEvent = read_record(bytes)?;
            Event::Forked {
                parent: ev.parent_tgid,
                child: pid,
                key,
                tracked: ev.flags & abi::FORK_UNTRACKED == 0,
                source,
            }
        }
        abi::EVENT_EXEC => {
            let ev: abi::ExecEvent = read_record(bytes)?;
            let len = (ev.filename_len as usize).min(ev.filename.len());
            Event::Exec {
                pid,
                key,
                filename: String::from_utf8_lossy(&ev.filename[..len]).into_owned(),
                source,
            }
        }
        abi::EVENT_OOM_VICTIM => {
            let ev: abi::OomEvent = read_record(bytes)?;
            Event::OomKilled {
                pid,
                key,
                memory: OomMemory {
                    total_vm_bytes: ev.total_vm_pages * page_size,
                    anon_rss_bytes: ev.anon_pages * page_size,
                    file_rss_bytes: ev.file_pages * page_size,
                    shmem_rss_bytes: ev.shmem_pages * page_size,
                    oom_score_adj: ev.oom_score_adj,
                    comm: c_string(&ev.comm),
                },
                source,
            }
        }
        abi::EVENT_SIGNAL => {
            let ev: abi::SignalEvent = read_record(bytes)?;
            // si_code <= 0: a process sent it (kill, tkill, sigqueue), and `current` is that
            // process. > 0: the kernel generated it (OOM killer, faults); `current` is then just
            // whatever task was running and is not reported as a sender.
            let sender = (ev.code <= 0).then(|| Sender {
                pid: ev.sender_tgid,
                comm: c_string(&ev.sender_comm),
            });
            Event::Signaled {
                pid,
                key,
                signal: i32::try_from(ev.sig).unwrap_or(0),
                code: ev.code,
                sender,
                source,
            }
        }
        abi::EVENT_RSS_OVER | abi::EVENT_RSS_UNDER => {
            let ev: abi::RssEvent = read_record(bytes)?;
            let (rss, limit) = (ev.rss_pages * page_size, ev.limit_pages * page_size);
            Event::memory(
                hdr.kind == abi::EVENT_RSS_OVER,
                pid,
                key,
                rss,
                limit,
                source,
            )
        }
        abi::EVENT_NET_LISTEN
        | abi::EVENT_NET_UNLISTEN
        | abi::EVENT_NET_CONNECT
        | abi::EVENT_NET_ACCEPT => {
            let ev: abi::NetEvent = read_record(bytes)?;
            let kind = match hdr.kind {
                abi::EVENT_NET_LISTEN => NetKind::Listen,
                abi::EVENT_NET_UNLISTEN => NetKind::Unlisten,
                abi::EVENT_NET_CONNECT => NetKind::Connect,
                _ => NetKind::Accept,
            };
            Event::Net {
                pid,
                key,
                kind,
                local: socket_addr(ev.family, &ev.local_addr, ev.local_port),
                remote: socket_addr(ev.family, &ev.remote_addr, ev.remote_port),
                source,
            }
        }
        _ => return None,
    })
}

/// An address in network order (IPv4 in the first 4 bytes) and a port.
fn socket_addr(family: u16, addr: &[u8; 16], port: u16) -> SocketAddr {
    let ip = if family == abi::AF_INET6 {
        IpAddr::from(*addr)
    } else {
        IpAddr::from([addr[0], addr[1], addr[2], addr[3]])
    };
    SocketAddr::new(ip, port)
}

pub(super) fn register(ring: RingBuf<MapData>) -> Result<AsyncFd<RingBuf<MapData>>, EbpfError> {
    // SAFETY: the RingBuf owns its map fd, which stays open and the same until the AsyncFd
    // (which owns the RingBuf) is dropped.
    unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| EbpfError::Ring(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_pauses_only_past_its_burst_of_wake_ups_in_a_window() {
        let t0 = Instant::now();
        let mut pace = WakePace::new();
        for i in 0..PACE_BURST {
            assert_eq!(pace.drained(t0 + Duration::from_micros(u64::from(i))), None);
        }
        assert_eq!(
            pace.drained(t0 + Duration::from_millis(1)),
            Some(PACE_PAUSE)
        );
        assert_eq!(
            pace.drained(t0 + Duration::from_millis(50)),
            Some(PACE_PAUSE)
        );
        // a new window: prompt again
        assert_eq!(pace.drained(t0 + PACE_WINDOW), None);
    }
}
