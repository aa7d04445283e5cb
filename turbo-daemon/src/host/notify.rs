//! Telling systemd how the daemon is doing: the `sd_notify(3)` protocol, without libsystemd.
//!
//! Under `Type=notify` systemd passes `NOTIFY_SOCKET` (an `AF_UNIX` datagram socket: a path, or
//! an abstract name written with a leading `@`). Each notification is one datagram of
//! newline-separated `KEY=VALUE` assignments: `READY=1`, `STATUS=<one line>`, `STOPPING=1`,
//! `WATCHDOG=1`. Without `NOTIFY_SOCKET` (the CLI started the daemon, or a shell did) every call
//! here is a no-op, so the rest of the daemon never asks "am I under systemd?".
//!
//! * [`init_from_env`] once at start-up; then [`ready`], [`status`], [`stopping`] from anywhere.
//! * The watchdog (`WatchdogSec=` gives us `WATCHDOG_USEC`, and `WATCHDOG_PID` when it is meant
//!   for one process): [`run_watchdog`] sends `WATCHDOG=1` every period/2, but only while a
//!   [`Heartbeat`] keeps moving. The main loop must bump the heartbeat at least every
//!   [`Watchdog::beat_interval`]; if the loop wedges, the pings stop and systemd kills and
//!   restarts the daemon (the apps survive: `KillMode=process`).
//! * The variables systemd gives the daemon are the daemon's alone. [`SERVICE_ONLY_ENV`] lists
//!   them and [`strip_service_env`] removes them from a child's environment, so an app (or the
//!   private dbus-daemon, which speaks sd_notify itself) can never declare the daemon ready or
//!   feed its watchdog, nor find the daemon's credentials directory. `NotifyAccess=main` in the
//!   unit makes systemd ignore such messages anyway; stripping keeps them from being sent.
//!
//! Sends never block and never fail the daemon: a full or vanished socket is logged and dropped.

use std::{
    io,
    os::{
        linux::net::SocketAddrExt as _,
        unix::net::{SocketAddr, UnixDatagram},
    },
    process::Command,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

/// Environment variables that systemd sets for the daemon and that no child may inherit:
/// notification and watchdog (a child would speak for the daemon), socket activation (the fds
/// are the daemon's), and the unit's own directories, credentials, invocation and journal stream.
pub const SERVICE_ONLY_ENV: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "MAINPID",
    "MANAGERPID",
    "SYSTEMD_EXEC_PID",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "CREDENTIALS_DIRECTORY",
    "RUNTIME_DIRECTORY",
    "STATE_DIRECTORY",
    "LOGS_DIRECTORY",
    "CACHE_DIRECTORY",
    "CONFIGURATION_DIRECTORY",
    "MEMORY_PRESSURE_WATCH",
    "MEMORY_PRESSURE_WRITE",
    "FDSTORE",
];

/// Removes [`SERVICE_ONLY_ENV`] from what `cmd` passes to its process (apps, the private bus).
pub fn strip_service_env(cmd: &mut Command) {
    for key in SERVICE_ONLY_ENV {
        cmd.env_remove(key);
    }
}

/// Longest `STATUS=` text sent; systemd shows one line in `systemctl status` anyway.
const MAX_STATUS: usize = 1024;

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// `STOPPING=1` is final for systemd; send it once even if several paths report shutdown.
    stopping_sent: AtomicBool,
}

impl Notifier {
    /// Opens a notifier for `target`, a `NOTIFY_SOCKET` value: an absolute path, or `@name`
    /// for an abstract socket.
    ///
    /// # Errors
    /// `InvalidInput` for any other form (e.g. systemd's `vsock:` addresses, not supported);
    /// socket creation errors.
    pub fn connect(target: &str) -> io::Result<Self> {
        let addr = if let Some(name) = target.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes())?
        } else if target.starts_with('/') {
            SocketAddr::from_pathname(target)?
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unsupported NOTIFY_SOCKET {target:?}: expected an absolute path or @name"),
            ));
        };
        let socket = UnixDatagram::unbound()?;
        // a service manager that does not read must not stall the daemon's only thread
        socket.set_nonblocking(true)?;
        Ok(Self {
            socket,
            addr,
            stopping_sent: AtomicBool::new(false),
        })
    }

    /// Sends `state` as one datagram, as is.
    ///
    /// # Errors
    /// The send error (`WouldBlock` when the manager's queue is full, `ConnectionRefused` or
    /// `NotFound` when nobody listens).
    pub fn send(&self, state: &str) -> io::Result<()> {
        self.socket.send_to_addr(state.as_bytes(), &self.addr)?;
        Ok(())
    }

    /// `READY=1` with a `STATUS=` line: start-up is complete and the API answers.
    ///
    /// # Errors
    /// See [`Self::send`].
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// `STATUS=<text>`, made one line (newlines would start new assignments) of bounded length.
    ///
    /// # Errors
    /// See [`Self::send`].
    pub fn status(&self, text: &str) -> io::Result<()> {
        self.send(&format!("STATUS={}", one_line(text)))
    }

    /// `STOPPING=1`, the first time only.
    ///
    /// # Errors
    /// See [`Self::send`].
    pub fn stopping(&self) -> io::Result<()> {
        if self.stopping_sent.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        self.send("STOPPING=1")
    }

    /// `WATCHDOG=1`: the daemon is alive.
    ///
    /// # Errors
    /// See [`Self::send`].
    pub fn watchdog(&self) -> io::Result<()> {
        self.send("WATCHDOG=1")
    }
}

/// `text` on one line (CR/LF and other controls become spaces), at most [`MAX_STATUS`] bytes,
/// cut on a character boundary.
fn one_line(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > MAX_STATUS {
        let mut cut = MAX_STATUS;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// The process-wide notifier: `None` when `NOTIFY_SOCKET` is unset or unusable.
static GLOBAL: OnceLock<Option<Arc<Notifier>>> = OnceLock::new();

/// Reads `NOTIFY_SOCKET` once and sets up the process-wide notifier used by [`ready`],
/// [`status`], [`stopping`]. Later calls return the first result. The variable stays in the
/// daemon's environment (changing the environment of a running process is not thread-safe);
/// children must not inherit it: [`strip_service_env`].
pub fn init_from_env() -> Option<Arc<Notifier>> {
    GLOBAL
        .get_or_init(|| {
            let target = std::env::var("NOTIFY_SOCKET")
                .ok()
                .filter(|t| !t.is_empty())?;
            match Notifier::connect(&target) {
                Ok(n) => {
                    tracing::info!(socket = %target, "notifying the service manager (sd_notify)");
                    Some(Arc::new(n))
                }
                Err(e) => {
                    tracing::warn!("NOTIFY_SOCKET is set but unusable, not notifying: {e}");
                    None
                }
            }
        })
        .clone()
}

fn with_global(what: &str, f: impl FnOnce(&Notifier) -> io::Result<()>) {
    if let Some(Some(n)) = GLOBAL.get()
        && let Err(e) = f(n)
    {
        tracing::warn!("sd_notify {what} failed: {e}");
    }
}

/// Sends `READY=1` and `STATUS=<status>` if the daemon runs under a service manager.
pub fn ready(status: &str) {
    with_global("READY", |n| n.ready(status));
}

/// Sends `STATUS=<text>` if the daemon runs under a service manager. Cheap: call it on every
/// change of the one-line summary, not on a timer.
pub fn status(text: &str) {
    with_global("STATUS", |n| n.status(text));
}

/// Sends `RELOADING=1` with `MONOTONIC_USEC` and `STATUS=<status>` (the daemon is about to
/// re-execute itself, or to apply its config file; `READY=1` follows) if the daemon runs under a
/// service manager.
pub fn reloading(status: &str) {
    with_global("RELOADING", |n| {
        let usec = crate::os::clock::monotonic_ns() / 1000;
        n.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS={status}"
        ))
    });
}

/// Sends `STOPPING=1` (once) if the daemon runs under a service manager.
pub fn stopping() {
    with_global("STOPPING", Notifier::stopping);
}

/// Sends `WATCHDOG=1` if the daemon runs under a service manager. Normally only
/// [`run_watchdog`] calls this.
pub fn watchdog() {
    with_global("WATCHDOG", Notifier::watchdog);
}

/// A counter the main loop bumps to show it is alive; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Heartbeat {
    /// One more sign of life.
    pub fn beat(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// How many beats so far.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The watchdog systemd asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watchdog {
    /// `WatchdogSec=`: systemd kills the daemon when no `WATCHDOG=1` came for this long.
    pub period: Duration,
}

impl Watchdog {
    /// From the environment: `WATCHDOG_USEC` set and non-zero, and `WATCHDOG_PID` unset or our
    /// pid (a watchdog meant for another process is not ours to feed).
    #[must_use]
    pub fn from_env() -> Option<Self> {
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        Self::from_values(usec.as_deref(), pid.as_deref(), std::process::id())
    }

    /// [`Self::from_env`] on given values.
    #[must_use]
    pub fn from_values(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Self> {
        let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
        if let Some(pid) = pid
            && pid.trim().parse::<u32>().ok() != Some(own_pid)
        {
            return None;
        }
        Some(Self {
            period: Duration::from_micros(usec),
        })
    }

    /// How often `WATCHDOG=1` is sent: half the period, as sd_watchdog_enabled(3) advises.
    #[must_use]
    pub fn ping_interval(&self) -> Duration {
        self.period / 2
    }

    /// How often the main loop must beat at the least (a quarter of the period), so that
    /// every ping interval sees a beat even when the two clocks drift against each other.
    #[must_use]
    pub fn beat_interval(&self) -> Duration {
        self.period / 4
    }
}

/// Sends `WATCHDOG=1` through `notifier` every [`Watchdog::ping_interval`] as long as
/// `heartbeat` moved since the previous ping; stops pinging (so that systemd acts) while it
/// does not. Runs until the task is dropped.
pub async fn run_watchdog(notifier: Arc<Notifier>, watchdog: Watchdog, heartbeat: Heartbeat) {
    let mut tick = tokio::time::interval(watchdog.ping_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<u64> = None;
    let mut stalled = false;
    loop {
        tick.tick().await;
        let now = heartbeat.count();
        if last == Some(now) {
            if !stalled {
                stalled = true;
                tracing::error!(
                    "the main loop has not run for {:?}: withholding WATCHDOG=1, systemd will \
                     restart the daemon after {:?} (apps keep running)",
                    watchdog.ping_interval(),
                    watchdog.period
                );
            }
            continue;
        }
        if std::mem::take(&mut stalled) {
            tracing::warn!("the main loop runs again; pinging the watchdog");
        }
        last = Some(now);
        if let Err(e) = notifier.watchdog() {
            tracing::warn!("sd_notify WATCHDOG failed: {e}");
        }
    }
}

/// Beats `heartbeat` every `interval` from a task of its own.
///
/// A stand-in until the runtime loop beats the heartbeat itself: on the daemon's current-thread
/// runtime this task only runs while the thread is not blocked, so a blocked thread still stops
/// the pings, but a loop stuck in an `.await` would not.
pub async fn beat_every(heartbeat: Heartbeat, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        heartbeat.beat();
    }
}

/// Starts the watchdog task when systemd asked for one and a notifier is set up; returns the
/// watchdog so the caller can pass [`Watchdog::beat_interval`] to the loop that beats.
pub fn spawn_watchdog(heartbeat: &Heartbeat) -> Option<Watchdog> {
    let notifier = GLOBAL.get().cloned().flatten()?;
    let watchdog = Watchdog::from_env()?;
    tracing::info!(
        "systemd watchdog: {:?}, pinging every {:?} while the main loop runs",
        watchdog.period,
        watchdog.ping_interval()
    );
    tokio::spawn(run_watchdog(notifier, watchdog, heartbeat.clone()));
    Some(watchdog)
}

#[cfg(test)]
mod tests {
    use std::{os::unix::net::UnixDatagram, time::Instant};

    use super::*;

    /// A stand-in for systemd: a datagram socket bound in a temporary directory.
    fn manager() -> (tempfile::TempDir, UnixDatagram, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        (dir, sock, path.to_str().unwrap().to_owned())
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a datagram within 2 s");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn nothing_queued(sock: &UnixDatagram) -> bool {
        sock.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let empty = sock
            .recv(&mut buf)
            .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock);
        sock.set_nonblocking(false).unwrap();
        empty
    }

    #[test]
    fn exact_messages_on_a_path_socket() {
        let (_dir, sock, path) = manager();
        let n = Notifier::connect(&path).unwrap();
        n.ready("3 apps online, eBPF").unwrap();
        assert_eq!(recv(&sock), "READY=1\nSTATUS=3 apps online, eBPF");
        n.status("line one\nREADY=1\rx\ty").unwrap();
        assert_eq!(
            recv(&sock),
            "STATUS=line one READY=1 x y",
            "a status cannot inject assignments"
        );
        n.watchdog().unwrap();
        assert_eq!(recv(&sock), "WATCHDOG=1");
        n.stopping().unwrap();
        assert_eq!(recv(&sock), "STOPPING=1");
        n.stopping().unwrap();
        assert!(nothing_queued(&sock), "STOPPING=1 is sent once");
    }

    #[test]
    fn abstract_socket() {
        let name = format!("turbo-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let n = Notifier::connect(&format!("@{name}")).unwrap();
        n.ready("up").unwrap();
        assert_eq!(recv(&sock), "READY=1\nSTATUS=up");
    }

    #[test]
    fn bad_targets_and_absent_listener() {
        for bad in ["", "relative/path", "vsock:2:1234"] {
            let err = Notifier::connect(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("nobody.sock");
        let n = Notifier::connect(gone.to_str().unwrap()).unwrap();
        assert!(n.ready("x").is_err(), "an error, not a hang or a panic");
    }

    #[test]
    fn long_status_is_cut_on_a_char_boundary() {
        let (_dir, sock, path) = manager();
        let n = Notifier::connect(&path).unwrap();
        n.status(&"é".repeat(MAX_STATUS)).unwrap();
        let got = recv(&sock);
        let text = got.strip_prefix("STATUS=").unwrap();
        assert!(text.len() <= MAX_STATUS && text.len() >= MAX_STATUS - 1);
        assert!(text.chars().all(|c| c == 'é'));
    }

    #[test]
    fn watchdog_settings() {
        let w = Watchdog::from_values(Some("200000"), None, 42).unwrap();
        assert_eq!(w.period, Duration::from_millis(200));
        assert_eq!(w.ping_interval(), Duration::from_millis(100));
        assert_eq!(w.beat_interval(), Duration::from_millis(50));
        assert_eq!(
            Watchdog::from_values(Some("30000000"), Some("42"), 42).map(|w| w.period),
            Some(Duration::from_secs(30))
        );
        assert_eq!(Watchdog::from_values(Some("200000"), Some("41"), 42), None);
        assert_eq!(Watchdog::from_values(Some("200000"), Some("x"), 42), None);
        assert_eq!(Watchdog::from_values(Some("0"), None, 42), None);
        assert_eq!(Watchdog::from_values(Some("soon"), None, 42), None);
        assert_eq!(Watchdog::from_values(None, Some("42"), 42), None);
    }

    #[test]
    fn children_do_not_inherit_the_service_variables() {
        let mut cmd = Command::new("/usr/bin/env");
        cmd.env("NOTIFY_SOCKET", "/run/systemd/notify")
            .env("WATCHDOG_USEC", "1")
            .env("KEEP_ME", "1");
        strip_service_env(&mut cmd);
        let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
        assert!(out.lines().any(|l| l == "KEEP_ME=1"), "{out}");
        for key in SERVICE_ONLY_ENV {
            assert!(
                !out.lines().any(|l| l.starts_with(&format!("{key}="))),
                "{key} leaked: {out}"
            );
        }
    }

    #[tokio::test]
    async fn watchdog_pings_while_the_heartbeat_moves_and_stops_when_it_does_not() {
        let (_dir, sock, path) = manager();
        let notifier = Arc::new(Notifier::connect(&path).unwrap());
        let watchdog = Watchdog::from_values(Some("80000"), None, 0).unwrap();
        let heartbeat = Heartbeat::default();
        let beater = tokio::spawn(beat_every(heartbeat.clone(), watchdog.beat_interval()));
        let pinger = tokio::spawn(run_watchdog(notifier, watchdog, heartbeat.clone()));

        // alive: a ping every 40 ms
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut pings = 0;
        sock.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        while let Ok(n) = sock.recv(&mut buf) {
            assert_eq!(&buf[..n], b"WATCHDOG=1");
            pings += 1;
        }
        assert!(
            pings >= 3,
            "only {pings} pings in 300 ms at a 40 ms interval"
        );

        // wedged: the heartbeat stops, so must the pings (one may already be under way)
        beater.abort();
        tokio::time::sleep(Duration::from_millis(60)).await;
        while sock.recv(&mut buf).is_ok() {}
        let stalled_at = Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            sock.recv(&mut buf).is_err(),
            "a ping {:?} after the heartbeat stopped",
            stalled_at.elapsed()
        );

        // alive again: pings resume
        heartbeat.beat();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sock.recv(&mut buf).ok(), Some(10), "WATCHDOG=1 resumes");
        pinger.abort();
    }
}
