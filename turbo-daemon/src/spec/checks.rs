//! Health checks, readiness and watch mode as an app asks for them: `health:`, `ready`,
//! `ready_timeout`, `watchdog`, `watch`, `ignore_watch` and `watch_delay`.
//!
//! Only the description and the rule that reads it ([`WatchSpec::ignores`]: which changed paths
//! count). What the checks found so far, and when they run, is the supervisor's
//! (`supervisor::checks`); probes and file watching are the runtime's.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// What a health check probes.
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSpec {
    /// What to probe.
    pub probe: HealthProbe,
    /// Between two checks of a passing app.
    pub interval: Duration,
    /// A probe that takes longer fails (a command is killed).
    pub timeout: Duration,
    /// Consecutive failures that make the app be restarted.
    pub retries: u32,
    /// Between a failed check and the next one.
    pub retry_delay: Duration,
    /// After a spawn, failures count only once this has passed or a check has passed (an app
    /// that loads for a while before it listens is not unhealthy, only not ready yet).
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

/// How an app says it is ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReadyMode {
    /// Ready once spawned (and healthy, with a health check).
    #[default]
    Spawn,
    /// Ready once it sends `READY=1` on `NOTIFY_SOCKET` (the systemd protocol).
    Notify,
}

from_words!(
    ReadyMode,
    "ready",
    "spawn (ready once started), notify (ready on READY=1, the systemd protocol)",
    { "spawn" => Spawn, "notify" => Notify }
);

/// `ready`, `ready_timeout` and `watchdog` of an app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// How it says it is ready.
    pub mode: ReadyMode,
    /// With `notify`: an app that sends no `READY=1` this long after its spawn is restarted.
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

/// `watch:` of an app, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchSpec {
    /// Absolute paths watched (directories recursively, minus the ignored ones).
    pub paths: Vec<PathBuf>,
    /// `ignore_watch` globs (`*`, `?`, `**`), matched against each path relative to its watched
    /// root and against the file name.
    pub ignore: Vec<String>,
    /// Quiet time after the last change before the restart.
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn ready_modes() {
        assert_eq!("notify".parse::<ReadyMode>(), Ok(ReadyMode::Notify));
        assert!("notfy".parse::<ReadyMode>().unwrap_err().contains("spawn"));
    }
}
