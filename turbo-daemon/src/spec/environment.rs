//! What an app's environment is made of. Apps do not inherit the daemon's environment: it holds
//! the daemon's own settings, its service manager's sockets and whatever the shell that first
//! started it had (tokens, session bus addresses), none of which an app, possibly running as
//! another user, should see. The environment is built explicitly, later layers winning:
//!
//! 1. from the daemon's environment, only the variables of the allow-list
//!    ([`INHERITED`], [`INHERITED_PREFIXES`]), never those of [`NEVER_INHERITED`];
//! 2. `HOME`, `USER`, `LOGNAME`, `SHELL` from the passwd entry of the user the app runs as (the
//!    daemon's own user without `user:`), and `PWD`, the app's working directory;
//! 3. `env_file:`;
//! 4. `env:`.
//!
//! Layers 3 and 4 are merged when the config is validated (`AppSpec::env`); this module adds
//! layers 1 and 2 at spawn time. Anything else an app needs goes in `env:` or `env_file:`.
//! Pure: the daemon's environment and the passwd entry are handed in.

use std::{
    collections::BTreeMap,
    ffi::{OsStr, OsString},
    os::unix::ffi::OsStrExt,
    path::Path,
};

/// Daemon variables every app inherits:
/// * `PATH`: the config was validated with it (commands resolved, interpreters found), and
///   scripts run other programs through it;
/// * `LANG`, `LANGUAGE`: the locale, so messages and text encoding match the host;
/// * `TZ`: the time zone apps print times in.
pub const INHERITED: &[&str] = &["PATH", "LANG", "LANGUAGE", "TZ"];

/// Prefixes of daemon variables every app inherits: `LC_` (`LC_ALL`, `LC_CTYPE`, ... the rest
/// of the locale).
///
/// Deliberately absent: `TERM` (an app's output is a pipe into its log, not a terminal; with
/// `TERM` many programs write colour codes into the log), `TMPDIR` (the daemon's temporary
/// directory may be private to its user), `HOME`, `USER`, `LOGNAME`, `SHELL` (set from the
/// passwd entry instead), `PWD` (the daemon's, not the app's), `XDG_*`, `SSH_*`, `DISPLAY`
/// (belong to the session that started the daemon).
pub const INHERITED_PREFIXES: &[&str] = &["LC_"];

/// Prefixes of daemon variables no app inherits, whatever the allow-list says. A guard for
/// whoever extends the allow-list later:
/// * `NOTIFY_SOCKET`: systemd's notification socket for the daemon's unit. Apps live in the
///   daemon's cgroup, so with `NotifyAccess=all` an app could send `READY=1`, `STOPPING=1` or
///   `MAINPID=` on the daemon's behalf;
/// * `WATCHDOG_` (`WATCHDOG_USEC`, `WATCHDOG_PID`): the daemon's watchdog; an app would think
///   it has to ping one;
/// * `LISTEN_` (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`): socket activation of the
///   daemon; an app would take fds 3 and up for sockets passed to it;
/// * `TURBO_`: the daemon's own settings (`TURBO_HOME`, `TURBO_BUS_ADDRESS`, `TURBO_EBPF`);
///   a `turbo` started by an app would manage the daemon's home as if it were the daemon's
///   user;
/// * `DBUS_` (`DBUS_SESSION_BUS_ADDRESS`, `DBUS_SYSTEM_BUS_ADDRESS`): the buses of the session
///   that started the daemon, not the app's (and not reachable by another user);
/// * `JOURNAL_STREAM`, `INVOCATION_ID`: identify the daemon's stderr stream and unit run; an
///   app's stderr is a pipe to the daemon, so logging libraries would pick the wrong format.
pub const NEVER_INHERITED: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_",
    "LISTEN_",
    "TURBO_",
    "DBUS_",
    "JOURNAL_STREAM",
    "INVOCATION_ID",
];

/// Whether an app inherits the daemon's variable `name`.
#[must_use]
pub fn inherited(name: &OsStr) -> bool {
    let name = name.as_bytes();
    let starts = |p: &&str| name.starts_with(p.as_bytes());
    !NEVER_INHERITED.iter().any(starts)
        && (INHERITED.iter().any(|n| name == n.as_bytes()) || INHERITED_PREFIXES.iter().any(starts))
}

/// The user an app runs as, for `HOME`, `USER`, `LOGNAME` and `SHELL`.
#[derive(Clone, Copy, Debug)]
pub struct Identity<'a> {
    /// Login name: `USER` and `LOGNAME`.
    pub user: &'a str,
    /// `HOME`.
    pub home: &'a str,
    /// `SHELL`.
    pub shell: &'a str,
}

/// The whole environment of an app (see the module docs for the layers). Without an
/// `identity` (a daemon user without a passwd entry), `HOME`, `USER`, `LOGNAME` and `SHELL`
/// come from the daemon's environment. Sorted by name, each name once.
#[must_use]
pub fn child_env(
    daemon_env: impl IntoIterator<Item = (OsString, OsString)>,
    identity: Option<Identity<'_>>,
    cwd: &Path,
    app_env: &[(String, String)],
) -> Vec<(OsString, OsString)> {
    const IDENTITY_VARS: [&str; 4] = ["HOME", "USER", "LOGNAME", "SHELL"];
    let mut env: BTreeMap<OsString, OsString> = BTreeMap::new();
    for (name, value) in daemon_env {
        let fallback = identity.is_none() && IDENTITY_VARS.iter().any(|v| name == *v);
        if inherited(&name) || fallback {
            env.insert(name, value);
        }
    }
    if let Some(id) = identity {
        for (name, value) in [
            ("HOME", id.home),
            ("USER", id.user),
            ("LOGNAME", id.user),
            ("SHELL", id.shell),
        ] {
            if !value.is_empty() {
                env.insert(name.into(), value.into());
            }
        }
    }
    env.insert("PWD".into(), cwd.as_os_str().to_owned());
    for (name, value) in app_env {
        env.insert(name.into(), value.into());
    }
    env.into_iter().collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    pub(crate) fn get<'a>(env: &'a [(OsString, OsString)], name: &str) -> Option<&'a str> {
        env.iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.to_str())
    }

    pub(crate) const DAEMON_ENV: &[(&str, &str)] = &[
        ("PATH", "/usr/bin:/bin"),
        ("LANG", "C.UTF-8"),
        ("LC_TIME", "en_GB.UTF-8"),
        ("TZ", "Europe/Paris"),
        ("HOME", "/root"),
        ("USER", "root"),
        ("PWD", "/var/lib/turbo"),
        ("TERM", "xterm-256color"),
        ("AWS_SECRET_ACCESS_KEY", "daemon-secret"),
        ("NOTIFY_SOCKET", "/run/systemd/notify"),
        ("WATCHDOG_USEC", "30000000"),
        ("LISTEN_FDS", "1"),
        ("TURBO_HOME", "/var/lib/turbo"),
        ("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/0/bus"),
        ("JOURNAL_STREAM", "8:1234"),
    ];

    #[test]
    fn only_the_allow_list_is_inherited() {
        let env = child_env(os(DAEMON_ENV), None, Path::new("/srv/app"), &[]);
        let names: Vec<&str> = env.iter().filter_map(|(k, _)| k.to_str()).collect();
        assert_eq!(
            names,
            ["HOME", "LANG", "LC_TIME", "PATH", "PWD", "TZ", "USER"],
            "without an identity, HOME and USER fall back to the daemon's"
        );
        assert_eq!(
            get(&env, "PWD"),
            Some("/srv/app"),
            "the app's cwd, not the daemon's"
        );
        for never in [
            "NOTIFY_SOCKET",
            "NOTIFY_SOCKET_X",
            "WATCHDOG_PID",
            "LISTEN_FDNAMES",
            "TURBO_EBPF",
            "DBUS_SYSTEM_BUS_ADDRESS",
            "JOURNAL_STREAM",
            "INVOCATION_ID",
        ] {
            assert!(!inherited(OsStr::new(never)), "{never}");
        }
        assert!(inherited(OsStr::new("LC_ALL")) && !inherited(OsStr::new("LCX")));
    }

    #[test]
    fn explicit_env_may_set_anything() {
        let env = child_env(
            os(DAEMON_ENV),
            None,
            Path::new("/"),
            &[("NOTIFY_SOCKET".into(), "/run/app.sock".into())],
        );
        assert_eq!(get(&env, "NOTIFY_SOCKET"), Some("/run/app.sock"));
    }
}
