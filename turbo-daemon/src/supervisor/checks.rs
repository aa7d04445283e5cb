//! Health checks, watch mode and readiness: their specs and their pure bookkeeping.
//!
//! What a check probes and how often ([`HealthSpec`]), how results add up to a verdict
//! ([`HealthState`]), which changed paths count for watch mode ([`WatchSpec::ignores`]) and how a
//! burst of changes becomes one restart ([`Debounce`]). No I/O and no clock reads: probes run in
//! the runtime (`runtime::probe`), file events come from the runtime's watcher, and every
//! method takes `now`.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use turbo_api::Health;

/// What a health check probes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthProbe {
    /// `GET url` over HTTP/1.1; healthy when the status is within `status`.
    Http {
        /// `http://host:port/path` (no TLS).
        url: String,
        /// Accepted status codes, inclusive.
        status: (u16, u16),
    },
    /// A TCP connect to `host:port`.
    Tcp {
        /// `host:port`.
        addr: String,
    },
    /// A command run as the app (its user, cwd and environment); healthy on exit status 0.
    Cmd {
        /// Program and arguments; `argv[0]` is an absolute path.
        argv: Vec<String>,
    },
}

impl HealthProbe {
    /// One line naming the probe, for `describe` and messages.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Http { url, status } => format!("http {url} (status {}-{})", status.0, status.1),
            Self::Tcp { addr } => format!("tcp {addr}"),
            Self::Cmd { argv } => format!("cmd {}", argv.join(" ")),
        }
    }
}

/// `health:` of an app, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSpec {
    /// What to probe.
    pub probe: HealthProbe,
    /// Between two checks of a passing app.
    #[serde(with = "super::app::millis")]
    pub interval: Duration,
    /// A probe that takes longer fails (a command is killed).
    #[serde(with = "super::app::millis")]
    pub timeout: Duration,
    /// Consecutive failures that make the app be restarted.
    pub retries: u32,
    /// Between a failed check and the next one.
    #[serde(with = "super::app::millis")]
    pub retry_delay: Duration,
    /// After a spawn, failures count only once this has passed or a check has passed (an app
    /// that loads for a while before it listens is not unhealthy, only not ready yet).
    #[serde(with = "super::app::millis", default)]
    pub start_period: Duration,
}

impl HealthSpec {
    /// The defaults of DESIGN.md §7 around `probe`.
    #[must_use]
    pub const fn new(probe: HealthProbe) -> Self {
        Self {
            probe,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            retries: 3,
            retry_delay: Duration::from_secs(2),
            start_period: Duration::ZERO,
        }
    }

    /// Delay from the spawn to the first check: a fresh process needs a moment to listen, and
    /// `--wait` should not sit through a whole `interval` first.
    #[must_use]
    pub fn first_delay(&self) -> Duration {
        self.interval.min(Duration::from_secs(1))
    }
}

/// What the health checks of the current process found so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthState {
    /// Consecutive failed checks.
    pub failures: u32,
    /// The last check passed.
    pub passing: Option<bool>,
    /// A check passed at least once since the spawn (the start period is over then).
    pub ever_healthy: bool,
    /// The message of the last failed check (kept after a restart, for `--wait` and describe).
    pub last_error: Option<String>,
}

impl HealthState {
    /// The public verdict, given whether a check is configured.
    #[must_use]
    pub const fn public(&self, configured: bool) -> Health {
        match (configured, self.passing) {
            (false, _) => Health::None,
            (true, None) => Health::Unknown,
            (true, Some(true)) => Health::Healthy,
            (true, Some(false)) => Health::Unhealthy,
        }
    }

    /// Forgets the results of the previous process (the last error stays for messages).
    pub fn reset(&mut self) {
        self.failures = 0;
        self.passing = None;
        self.ever_healthy = false;
    }
}

/// How an app says it is ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadyMode {
    /// Ready once spawned (and healthy, with a health check).
    #[default]
    Spawn,
    /// Ready once it sends `READY=1` on `NOTIFY_SOCKET` (the systemd protocol).
    Notify,
}

impl std::str::FromStr for ReadyMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "spawn" => Ok(Self::Spawn),
            "notify" => Ok(Self::Notify),
            other => Err(format!(
                "ready '{other}' is not one of: spawn (ready once started), notify (ready on READY=1, the systemd protocol)"
            )),
        }
    }
}

/// `ready`, `ready_timeout` and `watchdog` of an app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Readiness {
    /// How it says it is ready.
    pub mode: ReadyMode,
    /// With `notify`: an app that sends no `READY=1` this long after its spawn is restarted.
    #[serde(with = "super::app::millis")]
    pub timeout: Duration,
    /// An app that sends no `WATCHDOG=1` for this long is hung and restarted.
    pub watchdog_ms: Option<u64>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            mode: ReadyMode::Spawn,
            timeout: Duration::from_secs(60),
            watchdog_ms: None,
        }
    }
}

impl Readiness {
    /// The watchdog period.
    #[must_use]
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog_ms.map(Duration::from_millis)
    }

    /// Whether the app gets a `NOTIFY_SOCKET`.
    #[must_use]
    pub const fn wants_socket(&self) -> bool {
        matches!(self.mode, ReadyMode::Notify) || self.watchdog_ms.is_some()
    }
}

/// One `sd_notify` datagram of an app, parsed: newline-separated `KEY=VALUE` assignments, of
/// which `READY=1`, `STATUS=` and `WATCHDOG=1` mean something here (others are ignored, as
/// systemd ignores what it does not know).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyMessage {
    /// `READY=1`.
    pub ready: bool,
    /// `STATUS=<text>`, made one printable line of at most [`Self::STATUS_MAX`] characters.
    pub status: Option<String>,
    /// `WATCHDOG=1`.
    pub watchdog: bool,
}

impl NotifyMessage {
    /// Longest status text kept.
    pub const STATUS_MAX: usize = 200;

    /// Parses a datagram (invalid UTF-8 is replaced, not refused).
    #[must_use]
    pub fn parse(datagram: &[u8]) -> Self {
        let text = String::from_utf8_lossy(datagram);
        let mut msg = Self::default();
        for line in text.split('\n') {
            match line.split_once('=') {
                Some(("READY", "1")) => msg.ready = true,
                Some(("WATCHDOG", "1")) => msg.watchdog = true,
                Some(("STATUS", s)) => {
                    msg.status = Some(
                        s.chars()
                            .filter(|c| !c.is_control())
                            .take(Self::STATUS_MAX)
                            .collect(),
                    );
                }
                _ => {}
            }
        }
        msg
    }
}

/// What an app said over `NOTIFY_SOCKET` since its spawn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyState {
    /// `READY=1` came.
    pub ready: bool,
    /// The last `STATUS=`.
    pub status: Option<String>,
    /// The last `WATCHDOG=1`.
    pub last_ping: Option<Instant>,
}

/// `watch:` of an app, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchSpec {
    /// Absolute paths watched (directories recursively, minus the ignored ones).
    pub paths: Vec<PathBuf>,
    /// `ignore_watch` globs (`*`, `?`, `**`), matched against each path relative to its watched
    /// root and against the file name.
    pub ignore: Vec<String>,
    /// Quiet time after the last change before the restart.
    #[serde(with = "super::app::millis")]
    pub delay: Duration,
}

impl WatchSpec {
    /// The debounce delay by default.
    pub const DELAY: Duration = Duration::from_millis(500);
    /// Directory names never watched.
    pub const IGNORED_DIRS: &[&str] = &["node_modules", ".git"];

    /// Whether a change at `path` must not restart the app: under `node_modules` or `.git`, a
    /// log file (`*.log`, rotated `*.log.N`), under one of `skip` (the daemon's state and log
    /// directories), or matched by an `ignore_watch` glob.
    #[must_use]
    pub fn ignores(&self, path: &Path, skip: &[PathBuf]) -> bool {
        if skip.iter().any(|s| path.starts_with(s)) {
            return true;
        }
        let root = self.paths.iter().find(|r| path.starts_with(r));
        let rel = root.map_or(path, |r| path.strip_prefix(r).unwrap_or(path));
        let names: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
        if names.iter().any(|n| Self::IGNORED_DIRS.contains(n)) {
            return true;
        }
        let name = names.last().copied().unwrap_or_default();
        if is_log_file(name) {
            return true;
        }
        let rel = rel.to_string_lossy();
        self.ignore.iter().any(|g| {
            glob_match(g.as_bytes(), rel.as_bytes()) || glob_match(g.as_bytes(), name.as_bytes())
        })
    }
}

fn is_log_file(name: &str) -> bool {
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    name.ends_with(".log") || (base.len() < name.len() && base.ends_with(".log."))
}

/// `*` (within a path component), `**` (across components) and `?` (one character).
#[must_use]
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern {
        [] => text.is_empty(),
        // `dir/**` also matches `dir` itself: ignoring a tree ignores its creation
        [b'/', b'*', b'*'] => text.is_empty() || text.first() == Some(&b'/'),
        [b'*', b'*', rest @ ..] => {
            let rest = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=text.len()).any(|i| glob_match(rest, &text[i..]))
        }
        [b'*', rest @ ..] => (0..=text.len())
            .take_while(|&i| i == 0 || text[i - 1] != b'/')
            .any(|i| glob_match(rest, &text[i..])),
        [b'?', rest @ ..] => text
            .split_first()
            .is_some_and(|(c, t)| *c != b'/' && glob_match(rest, t)),
        [c, rest @ ..] => text
            .split_first()
            .is_some_and(|(t, tail)| t == c && glob_match(rest, tail)),
    }
}

/// Turns a burst of file changes into one restart: the restart comes `delay` after the *last*
/// change of the burst. At most one timer is armed at a time, so a burst of ten thousand events
/// costs one timer, not ten thousand.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Debounce {
    /// The last change not yet acted on.
    last_change: Option<Instant>,
    /// Token of the armed timer, if one is armed; stale timers carry another.
    armed: Option<u64>,
    next_token: u64,
}

/// What a debounce timer firing means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fire {
    /// Quiet for `delay`: act now.
    Now,
    /// Changes came in meanwhile: wait until this instant (timer token in the pair).
    Later(Instant, u64),
    /// A stale timer or nothing pending.
    Nothing,
}

impl Debounce {
    /// A change at `now`; returns `(at, token)` when a timer must be armed.
    pub fn change(&mut self, now: Instant, delay: Duration) -> Option<(Instant, u64)> {
        self.last_change = Some(now);
        if self.armed.is_some() {
            return None;
        }
        Some((now + delay, self.arm()))
    }

    /// The timer with `token` fired at `now`.
    pub fn fire(&mut self, token: u64, now: Instant, delay: Duration) -> Fire {
        if self.armed != Some(token) {
            return Fire::Nothing;
        }
        self.armed = None;
        let Some(last) = self.last_change else {
            return Fire::Nothing;
        };
        let due = last + delay;
        if now >= due {
            self.last_change = None;
            Fire::Now
        } else {
            Fire::Later(due, self.arm())
        }
    }

    /// Whether changes wait for their restart.
    #[must_use]
    pub const fn pending(&self) -> bool {
        self.last_change.is_some()
    }

    fn arm(&mut self) -> u64 {
        self.next_token += 1;
        self.armed = Some(self.next_token);
        self.next_token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    #[test]
    fn a_burst_gives_one_restart_delay_after_its_last_change() {
        let t0 = Instant::now();
        let delay = ms(500);
        let mut d = Debounce::default();
        let (at, token) = d.change(t0, delay).expect("first change arms");
        assert_eq!(at, t0 + delay);
        // the burst goes on: no more timers
        for i in 1..=1000 {
            assert_eq!(d.change(t0 + ms(i / 10), delay), None);
        }
        let last = t0 + ms(100);
        // the first timer fires: changes came after it was armed, wait for the quiet time
        let Fire::Later(due, token2) = d.fire(token, at, delay) else {
            panic!("changes after arming must postpone");
        };
        assert_eq!(due, last + delay);
        // an old timer is ignored
        assert_eq!(d.fire(token, due, delay), Fire::Nothing);
        assert_eq!(d.fire(token2, due, delay), Fire::Now);
        assert!(!d.pending());
        // quiet: a late duplicate does nothing
        assert_eq!(d.fire(token2, due + delay, delay), Fire::Nothing);
        // the next burst arms again
        assert!(d.change(due + ms(10), delay).is_some());
    }

    #[test]
    fn default_and_glob_ignores() {
        let w = WatchSpec {
            paths: vec!["/srv/app".into()],
            ignore: vec!["*.tmp".into(), "cache/**".into(), "data?.db".into()],
            delay: WatchSpec::DELAY,
        };
        let skip = vec![PathBuf::from("/srv/app/.turbo")];
        let yes = [
            "/srv/app/node_modules/x/index.js",
            "/srv/app/.git/HEAD",
            "/srv/app/out.log",
            "/srv/app/logs/app.log.3",
            "/srv/app/.turbo/state.json",
            "/srv/app/src/a.tmp",
            "/srv/app/cache/x/y.js",
            "/srv/app/cache",
            "/srv/app/data1.db",
        ];
        let no = [
            "/srv/app/server.js",
            "/srv/app/src/lib/logger.js",
            "/srv/app/catalog.json",
            "/srv/app/data10.db",
            "/srv/app/src/cache/y.js",
        ];
        for p in yes {
            assert!(w.ignores(Path::new(p), &skip), "{p} should be ignored");
        }
        for p in no {
            assert!(!w.ignores(Path::new(p), &skip), "{p} should count");
        }
    }

    #[test]
    fn notify_datagrams() {
        let m = NotifyMessage::parse(b"READY=1\nSTATUS=listening on :3000\nMAINPID=4");
        assert!(m.ready && !m.watchdog);
        assert_eq!(m.status.as_deref(), Some("listening on :3000"));
        let m = NotifyMessage::parse(b"WATCHDOG=1");
        assert!(m.watchdog && !m.ready && m.status.is_none());
        let m = NotifyMessage::parse(b"READY=0\nSTATUS=a\x1b[31mb\xff");
        assert!(!m.ready);
        assert_eq!(m.status.as_deref(), Some("a[31mb\u{fffd}"));
        let long = format!("STATUS={}", "x".repeat(1000));
        assert_eq!(
            NotifyMessage::parse(long.as_bytes()).status.unwrap().len(),
            200
        );
        assert!("notfy".parse::<ReadyMode>().unwrap_err().contains("spawn"));
    }

    #[test]
    fn health_verdicts() {
        let mut h = HealthState::default();
        assert_eq!(h.public(false), Health::None);
        assert_eq!(h.public(true), Health::Unknown);
        h.passing = Some(false);
        assert_eq!(h.public(true), Health::Unhealthy);
        h.passing = Some(true);
        assert_eq!(h.public(true), Health::Healthy);
        h.reset();
        assert_eq!(h.public(true), Health::Unknown);
    }
}
