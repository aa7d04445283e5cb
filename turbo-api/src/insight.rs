//! What the kernel saw an app do (`GetInsight`, `turbo describe`, `turbo monit`): run-queue
//! delay, involuntary context switches, the execs of its process tree and its TCP view
//! (listening ports, connections, peers; issue 22).
//!
//! Every figure comes from the daemon's eBPF programs. With another event source the daemon
//! says so in [`AppInsight::unavailable`] and sends no figures: this contract has no estimate to
//! offer in their place.

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use zbus::zvariant::Type;

use crate::rfc3339_ms;

/// One exec inside an app's process tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ExecRecord {
    /// Unix time in milliseconds when the daemon read it.
    pub at_ms: u64,
    /// The process that exec'd.
    pub pid: u32,
    /// The path given to `execve` (as the kernel reports it, cut to 255 bytes).
    pub filename: String,
    /// Whether the app's `exec_allow` list allows it (always true without a list).
    pub allowed: bool,
}

impl ExecRecord {
    /// The JSON object of `turbo describe --json`'s `insight.recent_execs`.
    #[must_use]
    pub fn to_json(&self) -> Json {
        json!({
            "at": rfc3339_ms(self.at_ms),
            "pid": self.pid,
            "filename": self.filename,
            "allowed": self.allowed,
        })
    }
}

/// One thing the kernel saw an app instance do (`turbo events`): an exec, a signal, an exit,
/// an OOM kill, a TCP listen, or a connection with a peer not seen lately.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct KernelEvent {
    /// Unix time in milliseconds when the daemon learnt it.
    pub at_ms: u64,
    /// The instance it is about.
    pub instance: u32,
    /// `exec`, `signal`, `exit`, `oom`, `listen`, `unlisten`, `connect` or `accept`; `held`
    /// when events of the app's descendants were held back (more than the daemon keeps a
    /// second; the detail says how many).
    pub kind: String,
    /// The process (0 when none of the app's processes did it: an accept, a socket's close).
    pub pid: u32,
    /// One line about it (`/bin/sh (unexpected)`, `SIGTERM from pid 12 (kill)`, `exit code 1`,
    /// `127.0.0.1:5432`).
    pub detail: String,
}

impl KernelEvent {
    /// The JSON object of `turbo events --json`.
    #[must_use]
    pub fn to_json(&self, name: &str) -> Json {
        json!({
            "at": rfc3339_ms(self.at_ms),
            "app": name,
            "instance": self.instance,
            "kind": self.kind,
            "pid": self.pid,
            "detail": self.detail,
        })
    }
}

/// A peer an app talked to over TCP, with how often (`turbo describe`'s recent peers).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct PeerRecord {
    /// Unix time in milliseconds of the latest connection with it.
    pub at_ms: u64,
    /// `"connect"` (the app sent a SYN to it) or `"accept"` (it connected to a port the app
    /// listens on).
    pub direction: String,
    /// `ip:port` for a connect; the ip alone for an accept (its port is ephemeral).
    pub peer: String,
    /// Connections with it since the app was added.
    pub count: u64,
}

impl PeerRecord {
    /// The JSON object of `turbo describe --json`'s `insight.net.recent_peers`.
    #[must_use]
    pub fn to_json(&self) -> Json {
        json!({
            "at": rfc3339_ms(self.at_ms),
            "direction": self.direction,
            "peer": self.peer,
            "count": self.count,
        })
    }
}

/// A `listen:` socket the daemon holds for an app, and what its accept queue dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ListenDrops {
    /// The address as configured.
    pub addr: String,
    /// Connection attempts the kernel dropped on this socket since it was bound, almost all of
    /// them because the accept queue was full (the socket's `sk_drops`, from `SO_MEMINFO`).
    pub drops: u64,
}

/// What the kernel saw of one app instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Type)]
pub struct AppInsight {
    /// App id.
    pub id: u32,
    /// App name.
    pub name: String,
    /// Instance number.
    pub instance: u32,
    /// Why there are no figures (the daemon does not run on eBPF, or a program is missing);
    /// empty when they are measured, and then every other figure is real.
    pub unavailable: String,
    /// Cumulative run-queue delay histogram since the app was added: `runq_buckets[i]` counts
    /// waits under `2^i` µs (and at least `2^(i-1)` µs); the last bucket has no upper bound.
    pub runq_buckets: Vec<u64>,
    /// Waits measured since the app was added.
    pub runq_count: u64,
    /// Their sum in nanoseconds.
    pub runq_sum_ns: u64,
    /// Waits in the recent window (the last few seconds, see `recent_window_ms`).
    pub runq_recent_count: u64,
    /// Mean wait in the recent window, in µs (0 without waits).
    pub runq_recent_mean_us: u64,
    /// 99th percentile of the recent waits as the upper bound of its bucket, in µs.
    pub runq_recent_p99_us: u64,
    /// Length of the recent window in ms (0 on the first reading: nothing to compare with).
    pub recent_window_ms: u64,
    /// Involuntary context switches of the tree since the app was added (threads taken off a
    /// CPU while still runnable).
    pub involuntary_switches: u64,
    /// Execs seen inside the tree since the app was added (the app's own start included).
    pub execs_total: u64,
    /// Those the `exec_allow` list did not allow.
    pub execs_unexpected: u64,
    /// The app's `exec_allow` globs (empty: no list).
    pub exec_allow: Vec<String>,
    /// The latest execs, newest first (at most [`AppInsight::RECENT_EXECS`]).
    pub recent_execs: Vec<ExecRecord>,
    /// Why the network view (`listening`, connection counts, peers) is unavailable; empty when
    /// it is measured.
    pub net_unavailable: String,
    /// TCP addresses a process of the app listens on (`0.0.0.0:8080`, `[::]:443`), sorted.
    pub listening: Vec<String>,
    /// Connections the app started (SYNs sent) since it was added.
    pub connects_total: u64,
    /// Connections established on ports it listens on since it was added.
    pub accepts_total: u64,
    /// The peers of the latest connections, newest first (at most [`AppInsight::RECENT_PEERS`]).
    pub recent_peers: Vec<PeerRecord>,
    /// The `listen:` sockets the daemon holds for the app (any event source).
    pub listen_drops: Vec<ListenDrops>,
    /// The latest events, oldest first (at most [`AppInsight::RECENT_EVENTS`]); exits also
    /// with the procfs source, the rest with eBPF only.
    pub events: Vec<KernelEvent>,
}

impl AppInsight {
    /// How many execs `recent_execs` keeps.
    pub const RECENT_EXECS: usize = 16;
    /// How many events `events` keeps.
    pub const RECENT_EVENTS: usize = 64;
    /// How many peers `recent_peers` keeps.
    pub const RECENT_PEERS: usize = 16;

    /// The JSON object of `insight.net`.
    #[must_use]
    pub fn net_json(&self) -> Json {
        let held: Vec<Json> = self
            .listen_drops
            .iter()
            .map(|l| json!({ "addr": l.addr, "accept_queue_drops": l.drops }))
            .collect();
        if !self.net_unavailable.is_empty() {
            return json!({ "unavailable": self.net_unavailable, "listen_sockets": held });
        }
        json!({
            "unavailable": null,
            "listening": self.listening,
            "connects_total": self.connects_total,
            "accepts_total": self.accepts_total,
            "recent_peers": self.recent_peers.iter().map(PeerRecord::to_json).collect::<Vec<_>>(),
            "listen_sockets": held,
        })
    }

    /// The JSON object of `turbo describe --json`'s `insight`; figures are `null` when
    /// unavailable.
    #[must_use]
    pub fn to_json(&self) -> Json {
        if !self.unavailable.is_empty() {
            return json!({
                "unavailable": self.unavailable,
                "exec_allow": self.exec_allow,
                "net": self.net_json(),
            });
        }
        json!({
            "unavailable": null,
            "runq": {
                "count": self.runq_count,
                "sum_ns": self.runq_sum_ns,
                "buckets": self.runq_buckets,
                "recent_count": self.runq_recent_count,
                "recent_mean_us": self.runq_recent_mean_us,
                "recent_p99_us": self.runq_recent_p99_us,
                "recent_window_ms": self.recent_window_ms,
            },
            "involuntary_switches": self.involuntary_switches,
            "execs_total": self.execs_total,
            "execs_unexpected": self.execs_unexpected,
            "exec_allow": self.exec_allow,
            "recent_execs": self.recent_execs.iter().map(ExecRecord::to_json).collect::<Vec<_>>(),
            "net": self.net_json(),
        })
    }
}
