//! `turbo -H [user@]host[:port]`: D-Bus to another host's daemon through the system's `ssh`.
//!
//! Like `busctl -H` and `systemctl -H`, the CLI runs `ssh … host systemd-stdio-bridge` and speaks
//! D-Bus over the ssh child's stdin/stdout (one end of a socketpair; zbus has the other). ssh
//! does everything about the network and identity: ~/.ssh/config, the agent, known_hosts. The
//! bridge connects to the remote system bus as the SSH user, so the remote daemon authorises
//! each call by the remote user's credentials, exactly as for a local caller there; nothing here
//! adds a listener or a credential.
//!
//! Commands that read the daemon's files on its host (`logs`, `monit`) run the remote host's own
//! `turbo` over the same kind of SSH session instead ([`run_remote_turbo`]).
//!
//! When SSH fails, its stderr and exit status are turned into one line naming the problem and the
//! fix, with a distinct exit code ([`ExitCode`]). This module must not know about commands, and
//! prints nothing itself.

use std::{
    fmt,
    io::{self, Read as _},
    os::{fd::OwnedFd, unix::net::UnixStream},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow};
use zbus::{AuthMechanism, connection::Builder};

use crate::hint::Hinted;

/// What runs on the remote host: sd-bus's bridge between stdio and the system bus.
const BRIDGE: &str = "systemd-stdio-bridge";
/// Bound on the TCP connect, so that one dead host of a fleet cannot hold a command for minutes.
const CONNECT_TIMEOUT_S: u32 = 10;
/// How long to wait for ssh to exit and explain itself after the bus connection failed.
const EXPLAIN_GRACE: Duration = Duration::from_secs(3);

/// The exit codes of `turbo` (docs/fleet.md lists them; scripts rely on them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// The host does not answer on the SSH port (refused, timed out, unknown name, no route).
    Unreachable = 10,
    /// SSH authentication was refused (wrong key, no key, unknown user).
    AuthRefused = 11,
    /// The host key is not in known_hosts, or it changed.
    HostKey = 12,
    /// The remote host has no `systemd-stdio-bridge`.
    NoBridge = 13,
    /// The remote host has no system bus, or no turbo-daemon on it.
    NoDaemon = 14,
    /// The daemon refused the caller (local or remote): not root, not in its admin group.
    AccessDenied = 15,
}

/// An error with the exit code `main` must return for it.
#[derive(Debug)]
pub struct Coded {
    error: anyhow::Error,
    /// The exit status.
    pub code: ExitCode,
}

impl Coded {
    /// `error` (with its hint, if any) exiting with `code`.
    pub fn wrap(error: anyhow::Error, code: ExitCode) -> anyhow::Error {
        anyhow::Error::new(Self { error, code })
    }
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

// no `source()`, like `Hinted`: the message already holds the inner error; but the hint of an
// inner `Hinted` must still be found, so `help_of` looks inside (see `help`)
impl std::error::Error for Coded {}

impl Coded {
    /// The hint of the wrapped error.
    #[must_use]
    pub fn help(&self) -> Option<&str> {
        crate::hint::help_of(&self.error)
    }
}

/// The remote `turbo` (of `logs`, `monit`) failed with this exit code after printing its own
/// error: `main` exits with it and prints nothing more.
#[derive(Debug)]
pub struct Exited(pub u8);

impl fmt::Display for Exited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the remote turbo exited with status {}", self.0)
    }
}

impl std::error::Error for Exited {}

/// The exit code of the first [`Coded`] in `err`'s chain.
#[must_use]
pub fn exit_code_of(err: &anyhow::Error) -> Option<ExitCode> {
    err.chain()
        .find_map(|e| e.downcast_ref::<Coded>())
        .map(|c| c.code)
}

/// One host: `[user@]host[:port]`, `[v6addr]:port` for IPv6 with a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The remote user, or `None` for ssh's choice (ssh_config `User`, else the local name).
    pub user: Option<String>,
    /// Name or address, without brackets.
    pub host: String,
    /// The SSH port, or `None` for ssh's choice.
    pub port: Option<u16>,
    /// As the user wrote it, for messages and the `host` of JSON output.
    pub spec: String,
}

impl Target {
    /// Parses `[user@]host[:port]`.
    ///
    /// # Errors
    /// An empty host, a bad port, or characters ssh would read as an option.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |why: &str| {
            Hinted::wrap(
                anyhow!("host '{spec}' {why}"),
                "write it as [user@]host[:port], e.g. deploy@web1:2222 or [2001:db8::1]:22",
            )
        };
        let (user, rest) = match spec.rsplit_once('@') {
            Some((user, rest)) if !user.is_empty() => (Some(user.to_owned()), rest),
            Some(_) => return Err(bad("has an empty user name")),
            None => (None, spec),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (addr, after) = inner
                .split_once(']')
                .ok_or_else(|| bad("has no closing ']'"))?;
            match after {
                "" => (addr, None),
                p => (
                    addr,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| bad("has text after ']'"))?,
                    ),
                ),
            }
        } else {
            match rest.rsplit_once(':') {
                // more than one ':' and no brackets: a bare IPv6 address without a port
                Some((h, _)) if h.contains(':') => (rest, None),
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("has no host name"));
        }
        // ssh would take `-oProxyCommand=…` as an option, whatever `--` we put before it
        if host.starts_with('-') || user.as_deref().is_some_and(|u| u.starts_with('-')) {
            return Err(bad("starts with '-'"));
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains a space or a control character"));
        }
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("has a port that is not a number from 1 to 65535"))?,
            ),
        };
        Ok(Self {
            user,
            host: host.to_owned(),
            port,
            spec: spec.to_owned(),
        })
    }

    /// `user@host` or `host`, as ssh takes it.
    fn destination(&self) -> String {
        match &self.user {
            Some(user) => format!("{user}@{}", self.host),
            None => self.host.clone(),
        }
    }

    /// The `ssh` command line that reaches the host, for hints.
    fn ssh_hint(&self) -> String {
        match self.port {
            Some(port) => format!("ssh -p {port} {}", self.destination()),
            None => format!("ssh {}", self.destination()),
        }
    }

    /// The user in messages: the one given, else "your SSH user".
    fn who(&self) -> String {
        self.user
            .as_ref()
            .map_or_else(|| "your SSH user".to_owned(), |u| format!("user {u}"))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

static CURRENT: OnceLock<Target> = OnceLock::new();

/// Makes every daemon connection of this process go to `target` (`main`, once, before the
/// command runs).
pub fn set_current(target: Target) {
    let _ = CURRENT.set(target);
}

/// The host every connection goes to, if `-H` named one.
#[must_use]
pub fn current() -> Option<&'static Target> {
    CURRENT.get()
}

/// The `ssh` options and destination for a session to `target` running `remote`.
fn ssh_args(target: &Target, tty: bool, remote: &[String]) -> Vec<String> {
    let mut args: Vec<String> = vec!["-x".into()];
    args.push(if tty { "-t" } else { "-T" }.into());
    // a prompt nobody can answer would hang a script; on a terminal ssh may ask (passphrase,
    // host key confirmation, password)
    if !crate::term::stdin_is_terminal() {
        args.extend(["-o".into(), "BatchMode=yes".into()]);
    }
    args.extend(["-o".into(), format!("ConnectTimeout={CONNECT_TIMEOUT_S}")]);
    if let Some(port) = target.port {
        args.extend(["-p".into(), port.to_string()]);
    }
    args.push("--".into());
    args.push(target.destination());
    args.extend(remote.iter().cloned());
    args
}

/// The ssh client: `ssh` from PATH, as `busctl -H` runs it.
fn ssh_command() -> Command {
    Command::new("ssh")
}

/// A running ssh session; the child is killed when this is dropped (the bus connection that
/// used it is gone by then).
#[derive(Debug)]
pub struct Session {
    child: Child,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// ssh's stderr, collected by a thread while the session runs.
#[derive(Clone, Default)]
struct Stderr(Arc<Mutex<Vec<u8>>>);

impl Stderr {
    fn collect(&self, mut pipe: impl io::Read + Send + 'static) {
        let buf = Arc::clone(&self.0);
        thread::spawn(move || {
            let mut chunk = [0_u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                if let Ok(mut b) = buf.lock()
                    && b.len() < 64 * 1024
                {
                    b.extend_from_slice(&chunk[..n]);
                }
            }
        });
    }

    fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// A bus connection to `target`'s system bus through `ssh … systemd-stdio-bridge`.
///
/// # Errors
/// ssh cannot be started; the bus handshake fails (the error then says why, from ssh's stderr).
pub async fn open_bus(target: &Target) -> Result<(zbus::Connection, Session)> {
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| anyhow!("cannot create a socket pair for ssh: {e}"))?;
    let theirs_out = theirs
        .try_clone()
        .map_err(|e| anyhow!("cannot duplicate the ssh socket: {e}"))?;
    let mut cmd = ssh_command();
    cmd.args(ssh_args(target, false, &[BRIDGE.to_owned()]))
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::from(OwnedFd::from(theirs_out)))
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        Hinted::wrap(
            anyhow!("cannot run ssh to reach {target}: {e}"),
            "install the OpenSSH client (apt-get install openssh-client)",
        )
    })?;
    // our copies of the child's ends must go, or its exit would never look like EOF to zbus
    drop(cmd);
    let stderr = Stderr::default();
    if let Some(pipe) = child.stderr.take() {
        stderr.collect(pipe);
    }
    let mut session = Session { child };
    ours.set_nonblocking(true)
        .map_err(|e| anyhow!("cannot set up the ssh socket: {e}"))?;
    let stream = tokio::net::UnixStream::from_std(ours)
        .map_err(|e| anyhow!("cannot set up the ssh socket: {e}"))?;
    // the bridge is an sd-bus server on a pipe: no peer credentials for EXTERNAL to match, so
    // it accepts ANONYMOUS; who we are on the remote bus is the bridge's own identity (the SSH
    // user), as with `busctl -H`
    let built = Builder::unix_stream(stream)
        .auth_mechanism(AuthMechanism::Anonymous)
        .build()
        .await;
    match built {
        Ok(conn) => Ok((conn, session)),
        Err(err) => Err(explain(target, &mut session, &stderr, &err.to_string())),
    }
}

/// Turns a failed session into the one-line error of its cause, waiting briefly for ssh to say
/// what went wrong.
fn explain(
    target: &Target,
    session: &mut Session,
    stderr: &Stderr,
    bus_error: &str,
) -> anyhow::Error {
    let deadline = Instant::now() + EXPLAIN_GRACE;
    let status = loop {
        match session.child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => break None,
        }
    };
    // the stderr thread may still be draining the pipe after the exit
    thread::sleep(Duration::from_millis(30));
    classify(target, status, &stderr.text(), bus_error)
}

/// The last meaningful line ssh (or the remote side) wrote.
fn last_said(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .unwrap_or("")
        .to_owned()
}

/// The error for an SSH session that ended with `status` after writing `stderr`.
#[must_use]
pub fn classify(
    target: &Target,
    status: Option<i32>,
    stderr: &str,
    fallback: &str,
) -> anyhow::Error {
    let said = last_said(stderr);
    let has = |needle: &str| stderr.contains(needle);
    let coded =
        |code, msg: String, help: String| Coded::wrap(Hinted::wrap(anyhow!(msg), help), code);
    if has("Host key verification failed")
        || has("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || has("No matching host key")
    {
        return coded(
            ExitCode::HostKey,
            format!("the SSH host key of {target} is unknown or changed: {said}"),
            format!(
                "check and accept it once with `{}` (or add it to known_hosts with \
                 ssh-keyscan); a changed key may mean the host was replaced or an attack",
                target.ssh_hint()
            ),
        );
    }
    if has("Permission denied (") || has("Too many authentication failures") {
        return coded(
            ExitCode::AuthRefused,
            format!("{target} refused the SSH login of {}: {said}", target.who()),
            format!(
                "put your public key in that user's ~/.ssh/authorized_keys on {} (ssh-copy-id), \
                 or check which key ssh offers with `{} -v`",
                target.host,
                target.ssh_hint()
            ),
        );
    }
    const UNREACHABLE: [&str; 7] = [
        "Connection refused",
        "Connection timed out",
        "No route to host",
        "Network is unreachable",
        "Could not resolve hostname",
        "Name or service not known",
        "Connection closed by remote host",
    ];
    if UNREACHABLE.iter().any(|n| has(n)) || (status == Some(255) && said.contains("ssh:")) {
        return coded(
            ExitCode::Unreachable,
            format!("host {target} is unreachable over SSH: {said}"),
            format!(
                "check the name, the port and that sshd runs there (`{}`)",
                target.ssh_hint()
            ),
        );
    }
    // `bash: systemd-stdio-bridge: command not found`, `sh: 1: systemd-stdio-bridge: not found`
    if status == Some(127) || (has("not found") && has(BRIDGE)) {
        return coded(
            ExitCode::NoBridge,
            format!("{target} has no {BRIDGE} on the remote user's PATH"),
            format!(
                "install systemd on {} (it ships {BRIDGE}), as `busctl -H` needs too",
                target.host
            ),
        );
    }
    if has("Failed to start bus client") || has("Failed to connect to bus") {
        return coded(
            ExitCode::NoDaemon,
            format!("{target} has no system bus: {said}"),
            format!(
                "start dbus on {} and turbo-daemon in system mode there (`turbo startup`)",
                target.host
            ),
        );
    }
    let why = if said.is_empty() {
        fallback.to_owned()
    } else {
        said
    };
    coded(
        ExitCode::Unreachable,
        format!("the SSH session to {target} ended: {why}"),
        format!("try `{} {BRIDGE}` to see what happens", target.ssh_hint()),
    )
}

/// The error for a remote host whose bus has no turbo-daemon.
#[must_use]
pub fn no_daemon(target: &Target, why: &str) -> anyhow::Error {
    Coded::wrap(
        Hinted::wrap(
            anyhow!("no turbo-daemon runs on {target}: {why}"),
            format!(
                "start it there in system mode (`systemctl start turbo` after `turbo startup` on \
                 {})",
                target.host
            ),
        ),
        ExitCode::NoDaemon,
    )
}

/// Runs `turbo ARGS` on `target` over SSH with our stdout and stderr (a terminal is requested
/// when ours is one, for `monit`), and returns its exit code. The remote `turbo` is
/// `TURBO_REMOTE_TURBO` if set, else `turbo` on the remote user's PATH; it never starts a
/// user-mode daemon there.
///
/// # Errors
/// ssh cannot run, or SSH itself failed (classified like [`open_bus`]).
pub fn run_remote_turbo(target: &Target, args: &[String], tty: bool) -> Result<i32> {
    let program = std::env::var("TURBO_REMOTE_TURBO")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "turbo".to_owned());
    // ssh hands the words to the remote shell joined by spaces: each is quoted for it
    let mut remote = vec!["env".to_owned(), "TURBO_NO_AUTOSTART=1".to_owned()];
    remote.push(shell_quote(&program));
    remote.extend(args.iter().map(|a| shell_quote(a)));
    let mut cmd = ssh_command();
    cmd.args(ssh_args(target, tty, &remote))
        .stdin(if tty { Stdio::inherit() } else { Stdio::null() })
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow!("cannot run ssh to reach {target}: {e}"))?;
    // the remote turbo's own errors pass through; ssh's are kept to be classified
    let stderr = Stderr::default();
    let mut pipe = child.stderr.take();
    let relay = thread::spawn({
        let stderr = stderr.clone();
        move || {
            let mut chunk = [0_u8; 4096];
            while let Some(Ok(n)) = pipe.as_mut().map(|p| p.read(&mut chunk)) {
                if n == 0 {
                    break;
                }
                let _ = io::Write::write_all(&mut io::stderr(), &chunk[..n]);
                if let Ok(mut b) = stderr.0.lock() {
                    b.extend_from_slice(&chunk[..n]);
                }
            }
        }
    });
    let status = child
        .wait()
        .map_err(|e| anyhow!("cannot wait for ssh: {e}"))?;
    let _ = relay.join();
    match status.code() {
        Some(255) | Some(127) | None => {
            let code = status.code();
            Err(classify(target, code, &stderr.text(), "ssh failed"))
        }
        Some(code) => Ok(code),
    }
}

/// `word` quoted for a POSIX shell (unchanged when it is plainly safe).
#[must_use]
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = Target::parse("deploy@web1:2222").unwrap();
        assert_eq!(
            (t.user.as_deref(), t.host.as_str(), t.port),
            (Some("deploy"), "web1", Some(2222))
        );
        let t = Target::parse("web1").unwrap();
        assert_eq!((t.user, t.host.as_str(), t.port), (None, "web1", None));
        let t = Target::parse("[2001:db8::1]:22").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("2001:db8::1", Some(22)));
        let t = Target::parse("2001:db8::1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("2001:db8::1", None));
        for bad in [
            "",
            "@web",
            "web:0",
            "web:x",
            "-oProxyCommand=x",
            "a b",
            "[::1",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ssh_arguments() {
        let t = Target::parse("u@h:2200").unwrap();
        let args = ssh_args(&t, false, &[BRIDGE.to_owned()]);
        let tail: Vec<&str> = args
            .iter()
            .rev()
            .take(4)
            .rev()
            .map(String::as_str)
            .collect();
        assert_eq!(tail, ["2200", "--", "u@h", BRIDGE]);
        assert!(args.contains(&"-T".to_owned()) && args.contains(&"-x".to_owned()));
    }

    #[test]
    fn ssh_failures_are_classified() {
        let t = Target::parse("web1").unwrap();
        let code = |status, stderr: &str| exit_code_of(&classify(&t, status, stderr, "eof"));
        assert_eq!(
            code(
                Some(255),
                "ssh: connect to host web1 port 22: Connection refused\n"
            ),
            Some(ExitCode::Unreachable)
        );
        assert_eq!(
            code(Some(255), "root@web1: Permission denied (publickey).\n"),
            Some(ExitCode::AuthRefused)
        );
        assert_eq!(
            code(
                Some(255),
                "No ED25519 host key is known for web1 and you have requested strict checking.\nHost key verification failed.\n"
            ),
            Some(ExitCode::HostKey)
        );
        assert_eq!(
            code(
                Some(127),
                "bash: line 1: systemd-stdio-bridge: command not found\n"
            ),
            Some(ExitCode::NoBridge)
        );
        assert_eq!(
            code(
                Some(1),
                "Failed to start bus client: No such file or directory\n"
            ),
            Some(ExitCode::NoDaemon)
        );
    }

    #[test]
    fn words_are_quoted_for_the_remote_shell() {
        assert_eq!(shell_quote("logs"), "logs");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm)"), "'$(rm)'");
    }
}
