//! Finding the daemon (DESIGN §4) and, in user mode, starting it when none answers.
//!
//! Order: `TURBO_BUS_ADDRESS`, then `$TURBO_HOME/bus.sock`, then the system bus (only if
//! `org.turboprocess.Turbo1` has an owner there), then `~/.turbo/bus.sock`. Only the two user-mode
//! homes are ever autostarted: an explicit address or a system daemon belongs to someone else.
//! A user-mode home is checked by `trust` before its socket is connected to, and the process
//! serving it after: a home or socket another user controls is refused (and never autostarted
//! into), with nothing sent.
//! This module must not print anything except the one autostart notice on a terminal, and must
//! not know about commands beyond "may I start the daemon".

use std::{
    env,
    fs::{DirBuilder, OpenOptions},
    io,
    os::unix::{
        ffi::OsStrExt as _,
        fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
        process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow, bail};
use tokio::time::{Instant, sleep, timeout};
use turbo_api::{BUS_NAME, BUS_SOCKET, ManagerProxy, error_message};
use zbus::{connection::Builder, proxy::CacheProperties};

use crate::{
    hint::Hinted,
    render::{Tone, paint},
    term,
    trust::{self, HomeSource},
};

/// How long the daemon may take to answer after being started, and to go away after `kill`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Retry interval while waiting for the daemon to come up or go away.
const POLL: Duration = Duration::from_millis(50);
/// Bound on connecting plus one ping, so that a wedged socket cannot hang the CLI.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on looking for a daemon on the system bus before falling back to `~/.turbo`.
const SYSTEM_BUS_TIMEOUT: Duration = Duration::from_secs(2);
/// After our freshly spawned daemon exits, keep looking this long: it may have lost a start-up
/// race to another daemon that is about to answer.
const EXITED_GRACE: Duration = Duration::from_secs(2);
/// Bound on reaching a daemon over SSH (connect, login, bridge, ping); ssh's own connect
/// timeout is shorter, so an unreachable host is reported by ssh's words first.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the daemon is expected to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `TURBO_BUS_ADDRESS`: used as is, never autostarted.
    Explicit(String),
    /// The system bus, where a daemon owned the bus name when we looked.
    System,
    /// Another host's system bus, over SSH (`-H`): never autostarted.
    Remote(crate::remote::Target),
    /// A user-mode home with its private bus socket.
    User {
        /// `TURBO_HOME` (made absolute) or `~/.turbo`.
        home: PathBuf,
        /// Which of the two, for messages.
        source: HomeSource,
        /// `unix:path=<home>/bus.sock`, escaped.
        address: String,
    },
}

impl Endpoint {
    fn describe(&self) -> String {
        match self {
            Endpoint::Explicit(addr) => format!("{addr} (TURBO_BUS_ADDRESS)"),
            Endpoint::System => "the system bus".to_owned(),
            Endpoint::User { address, .. } => address.clone(),
            Endpoint::Remote(target) => format!("the system bus of {target} (over SSH)"),
        }
    }
}

/// A daemon that answered a ping.
pub struct Daemon {
    /// The manager proxy, on a connection of its own.
    pub proxy: ManagerProxy<'static>,
    /// What the ping returned.
    pub version: String,
    /// Where it answered.
    pub endpoint: Endpoint,
    /// The ssh child carrying the connection (`-H`), kept as long as the proxy.
    _session: Option<crate::remote::Session>,
}

/// What a probe of an endpoint found.
enum Probe {
    Up(Box<Daemon>),
    /// The bus answers but nobody owns the name: the daemon is not running there.
    NoOwner,
    /// Nothing listens on the socket (missing, refused, closed during the handshake).
    Unreachable(String),
    /// The home or whoever serves its socket is not to be trusted (see `trust`): nothing was
    /// sent, and no daemon may be started there.
    Refused(anyhow::Error),
}

/// Converts a failed D-Bus call into the one-line error the user sees: the daemon's own message;
/// a refusal of the caller exits with its own code.
pub fn call_error(err: &zbus::Error) -> anyhow::Error {
    let error = anyhow!(error_message(err));
    let denied = match err {
        zbus::Error::MethodError(name, _, _) => {
            name.as_str() == format!("{}.AccessDenied", turbo_api::ERROR_PREFIX)
                || name.as_str() == "org.freedesktop.DBus.Error.AccessDenied"
        }
        zbus::Error::FDO(fdo) => matches!(**fdo, zbus::fdo::Error::AccessDenied(_)),
        _ => false,
    };
    if denied {
        crate::remote::Coded::wrap(error, crate::remote::ExitCode::AccessDenied)
    } else {
        error
    }
}

/// Connects to the daemon, starting it in user mode when none answers and `autostart` is set.
///
/// # Errors
/// No daemon answers and none could be started, or the bus refused us.
pub async fn connect(autostart: bool) -> Result<Daemon> {
    if let Some(target) = crate::remote::current() {
        return connect_remote(target).await;
    }
    // the remote half of `turbo -H HOST logs`: a daemon must already run there
    let autostart = autostart && env::var_os("TURBO_NO_AUTOSTART").is_none();
    let endpoint = match locate().await? {
        Located::Running(daemon) => return Ok(*daemon),
        Located::Endpoint(endpoint) => endpoint,
    };
    let reason = match probe(&endpoint).await? {
        Probe::Up(daemon) => return Ok(*daemon),
        Probe::NoOwner => "nothing owns the TurboProcess bus name there".to_owned(),
        Probe::Unreachable(reason) => reason,
        Probe::Refused(err) => return Err(err),
    };
    match &endpoint {
        Endpoint::User { home, source, .. } if autostart => {
            start_daemon(home, *source, &endpoint).await
        }
        Endpoint::Explicit(_) => Err(Hinted::wrap(
            anyhow!("no daemon answers at {}: {reason}", endpoint.describe()),
            "check that turbo-daemon runs at that address, or unset TURBO_BUS_ADDRESS to use \
             the daemon of TURBO_HOME (~/.turbo by default)",
        )),
        _ => bail!("no daemon answers at {}: {reason}", endpoint.describe()),
    }
}

/// Whether the daemon refused a call because no app matches the target.
#[must_use]
pub fn is_not_found(err: &zbus::Error) -> bool {
    matches!(err, zbus::Error::MethodError(name, _, _)
        if name.as_str() == format!("{}.NotFound", turbo_api::ERROR_PREFIX))
}

/// The daemon if one answers, without ever starting one (for `turbo kill`).
///
/// # Errors
/// The bus refused us for another reason than "nobody is there".
pub async fn find_running() -> Result<Option<Daemon>> {
    if let Some(target) = crate::remote::current() {
        return match connect_remote(target).await {
            Ok(daemon) => Ok(Some(daemon)),
            Err(err)
                if crate::remote::exit_code_of(&err) == Some(crate::remote::ExitCode::NoDaemon) =>
            {
                Ok(None)
            }
            Err(err) => Err(err),
        };
    }
    let endpoint = match locate().await? {
        Located::Running(daemon) => return Ok(Some(*daemon)),
        Located::Endpoint(endpoint) => endpoint,
    };
    Ok(match probe(&endpoint).await? {
        Probe::Up(daemon) => Some(*daemon),
        Probe::NoOwner | Probe::Unreachable(_) => None,
        // `turbo kill` must not say "no daemon running" about a socket it would not talk to
        Probe::Refused(err) => return Err(err),
    })
}

/// Waits until `endpoint` stops answering after a shutdown: the socket is gone (user mode) or the
/// bus name has no owner (system bus).
///
/// # Errors
/// The daemon still answers pings after [`READY_TIMEOUT`].
pub async fn wait_until_gone(endpoint: &Endpoint) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    if let Endpoint::Remote(target) = endpoint {
        // any failure to reach it again (no owner, no bus) means it is gone
        while connect_remote(target).await.is_ok() {
            if Instant::now() >= deadline {
                bail!(
                    "the daemon on {target} still answers {} s after shutdown",
                    READY_TIMEOUT.as_secs()
                );
            }
            sleep(POLL).await;
        }
        return Ok(());
    }
    loop {
        let state = probe(endpoint).await;
        let timed_out = Instant::now() >= deadline;
        match state {
            // any failure to even talk to it means it is gone for our purposes
            Err(_) | Ok(Probe::Unreachable(_) | Probe::Refused(_)) => return Ok(()),
            // on the system bus (or a bus named by TURBO_BUS_ADDRESS, which nobody autostarts
            // into) the bus outlives the daemon; a lingering private bus without its daemon is
            // also fine once we have waited for it to disappear
            Ok(Probe::NoOwner)
                if matches!(endpoint, Endpoint::System | Endpoint::Explicit(_)) || timed_out =>
            {
                return Ok(());
            }
            Ok(Probe::Up(_)) if timed_out => bail!(
                "the daemon at {} still answers {} s after shutdown",
                endpoint.describe(),
                READY_TIMEOUT.as_secs()
            ),
            Ok(_) => sleep(POLL).await,
        }
    }
}

enum Located {
    /// Found on the system bus (checking for an owner already needed a connection).
    Running(Box<Daemon>),
    Endpoint(Endpoint),
}

async fn locate() -> Result<Located> {
    if let Some(addr) = env::var("TURBO_BUS_ADDRESS").ok().filter(|a| !a.is_empty()) {
        return Ok(Located::Endpoint(Endpoint::Explicit(addr)));
    }
    if let Some(home) = env::var_os("TURBO_HOME").filter(|h| !h.is_empty()) {
        let cwd = env::current_dir().context("cannot determine the current directory")?;
        return Ok(Located::Endpoint(user_endpoint(
            crate::paths::absolutize(&cwd, Path::new(&home)),
            HomeSource::Env,
        )));
    }
    // an owner that then fails to answer is an error worth showing, not a reason to silently
    // start a second daemon in ~/.turbo
    if let Probe::Up(daemon) = probe(&Endpoint::System).await? {
        return Ok(Located::Running(daemon));
    }
    let home = env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("cannot find the home directory: set TURBO_HOME or HOME"))?;
    Ok(Located::Endpoint(user_endpoint(
        Path::new(&home).join(".turbo"),
        HomeSource::Default,
    )))
}

fn user_endpoint(home: PathBuf, source: HomeSource) -> Endpoint {
    let address = format!(
        "unix:path={}",
        escape_address_value(home.join(BUS_SOCKET).as_os_str().as_bytes())
    );
    Endpoint::User {
        home,
        source,
        address,
    }
}

/// Escapes a D-Bus address value: bytes outside `[-0-9A-Za-z_/.\*]` become `%xx`, so that a home
/// with spaces, commas or `;` stays one address.
#[must_use]
pub fn escape_address_value(value: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(value.len());
    for &b in value {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'.' | b'\\' | b'*') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02x}");
        }
    }
    out
}

/// Connects to the daemon on `target`'s system bus over SSH and pings it.
async fn connect_remote(target: &crate::remote::Target) -> Result<Daemon> {
    let attempt = async {
        let (conn, session) = crate::remote::open_bus(target).await?;
        let proxy = ManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        match proxy.ping().await {
            Ok(version) => Ok(Daemon {
                proxy,
                version,
                endpoint: Endpoint::Remote(target.clone()),
                _session: Some(session),
            }),
            Err(err) if is_no_owner(&err) => {
                Err(crate::remote::no_daemon(target, &error_message(&err)))
            }
            Err(err) => bail!(
                "the daemon on {target} did not answer: {}",
                error_message(&err)
            ),
        }
    };
    match timeout(REMOTE_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(crate::remote::Coded::wrap(
            anyhow!(
                "{target} did not answer over SSH within {} s",
                REMOTE_TIMEOUT.as_secs()
            ),
            crate::remote::ExitCode::Unreachable,
        )),
    }
}

/// Connects and pings, classifying "nobody there" apart from real errors.
async fn probe(endpoint: &Endpoint) -> Result<Probe> {
    if let Endpoint::Remote(target) = endpoint {
        return Ok(match connect_remote(target).await {
            Ok(daemon) => Probe::Up(Box::new(daemon)),
            Err(err)
                if crate::remote::exit_code_of(&err) == Some(crate::remote::ExitCode::NoDaemon) =>
            {
                Probe::NoOwner
            }
            Err(err) => Probe::Unreachable(format!("{err:#}")),
        });
    }
    let what = endpoint.describe();
    let attempt = async {
        let conn = match endpoint {
            Endpoint::System => match system_connection().await {
                Some(conn) => conn,
                None => return Ok(Probe::NoOwner),
            },
            Endpoint::Remote(_) => unreachable!("answered above"),
            Endpoint::Explicit(address) | Endpoint::User { address, .. } => {
                let conn = match endpoint {
                    Endpoint::User { home, source, .. } => {
                        match connect_home(home, *source, address).await {
                            Ok(conn) => conn,
                            Err(refused) => return Ok(Probe::Refused(refused)),
                        }
                    }
                    _ => match Builder::address(address.as_str()) {
                        Ok(builder) => builder.build().await,
                        Err(err) => Err(err),
                    },
                };
                match conn {
                    Ok(conn) => conn,
                    Err(err) if is_absent(&err) => {
                        return Ok(Probe::Unreachable(error_message(&err)));
                    }
                    Err(err) => bail!("cannot connect to {what}: {}", error_message(&err)),
                }
            }
        };
        let proxy = ManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        match proxy.ping().await {
            Ok(version) => Ok(Probe::Up(Box::new(Daemon {
                proxy,
                version,
                endpoint: endpoint.clone(),
                _session: None,
            }))),
            Err(err) if is_no_owner(&err) => Ok(Probe::NoOwner),
            Err(err) if is_absent(&err) => Ok(Probe::Unreachable(error_message(&err))),
            Err(err) => bail!(
                "the daemon at {what} did not answer: {}",
                error_message(&err)
            ),
        }
    };
    match timeout(PROBE_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => bail!(
            "the daemon at {what} did not answer within {} s",
            PROBE_TIMEOUT.as_secs()
        ),
    }
}

/// Connects to the private bus socket of a user-mode home, once `trust` accepts the home, the
/// socket file and the process serving it; the outer error is that refusal (nothing was sent:
/// the D-Bus handshake starts only after the peer check).
///
/// zbus connects a `unix:path=` address on a blocking thread, which `turbo` would start just for
/// that on every command; a non-blocking connect on our own runtime spares it. A failure is the
/// same error zbus reports, so messages and [`is_absent`] do not change.
async fn connect_home(
    home: &Path,
    source: HomeSource,
    address: &str,
) -> Result<zbus::Result<zbus::Connection>> {
    let socket = home.join(BUS_SOCKET);
    trust::check_home(home, source)?;
    trust::check_socket(&socket, home, source)?;
    let stream = match tokio::net::UnixStream::connect(&socket).await {
        Ok(stream) => stream,
        Err(err) => {
            let err = std::sync::Arc::new(err);
            return Ok(Err(match zbus::Address::try_from(address) {
                Ok(address) => zbus::Error::Connection(err, address),
                Err(_) => zbus::Error::InputOutput(err),
            }));
        }
    };
    let peer = stream
        .peer_cred()
        .with_context(|| format!("cannot tell who serves {}", socket.display()))?;
    trust::check_peer(peer.uid(), &socket, home, source)?;
    Ok(Builder::unix_stream(stream).build().await)
}

/// A system-bus connection if the bus is reachable and our name has an owner there. Any failure
/// means "no system daemon": most machines running the CLI in user mode have no such thing, and
/// a broken system bus must not stop user mode from working.
async fn system_connection() -> Option<zbus::Connection> {
    let attempt = async {
        let conn = Builder::system().ok()?.build().await.ok()?;
        // ask the bus first: a call to an unowned name on the system bus may be refused by policy
        // instead of answered with ServiceUnknown
        let dbus = zbus::fdo::DBusProxy::new(&conn).await.ok()?;
        let owned = dbus.name_has_owner(BUS_NAME.try_into().ok()?).await.ok()?;
        owned.then_some(conn)
    };
    timeout(SYSTEM_BUS_TIMEOUT, attempt).await.ok().flatten()
}

/// The socket is missing, refuses, or hangs up: nothing is serving there.
fn is_absent(err: &zbus::Error) -> bool {
    let io = match err {
        zbus::Error::Connection(io, _) | zbus::Error::InputOutput(io) => io,
        // the peer closed the socket mid-handshake, e.g. a bus that is shutting down
        zbus::Error::Handshake(_) => return true,
        _ => return false,
    };
    matches!(
        io.kind(),
        io::ErrorKind::NotFound
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// The bus answered that nobody owns our name.
fn is_no_owner(err: &zbus::Error) -> bool {
    const NAMES: [&str; 2] = [
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
    ];
    match err {
        zbus::Error::MethodError(name, _, _) => NAMES.contains(&name.as_str()),
        zbus::Error::FDO(fdo) => matches!(
            **fdo,
            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_)
        ),
        _ => false,
    }
}

/// Whether a failed call means the daemon went away rather than refused (e.g. it exited before
/// replying to `Shutdown`).
#[must_use]
pub fn is_disconnect(err: &zbus::Error) -> bool {
    is_absent(err) || is_no_owner(err)
}

/// Starts `turbo-daemon` for `home`, detached, and waits until it answers.
async fn start_daemon(home: &Path, source: HomeSource, endpoint: &Endpoint) -> Result<Daemon> {
    let mut child = spawn_daemon(home, source)?;
    if term::stderr_is_terminal() {
        let note = format!("started turbo-daemon (pid {})", child.id());
        eprintln!("{}", paint(term::stderr_color(), Tone::Dim, &note));
    }
    let log = home.join("daemon.log");
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut exited: Option<(Instant, ExitStatus)> = None;
    loop {
        // errors while it comes up (half-created socket, bus without the name yet) are expected;
        // a socket someone else got in first with is not
        match probe(endpoint).await {
            Ok(Probe::Up(daemon)) => return Ok(*daemon),
            Ok(Probe::Refused(err)) => return Err(err),
            _ => {}
        }
        let now = Instant::now();
        if exited.is_none() {
            // reaps it too, so a daemon that dies at start-up does not linger as a zombie
            exited = child.try_wait().ok().flatten().map(|status| (now, status));
        }
        if let Some((at, status)) = exited
            && now.duration_since(at) >= EXITED_GRACE
        {
            // its last words are usually the reason (a bad TURBO_EBPF, a busy socket...)
            let said = last_line(&log).map_or_else(String::new, |l| format!(": {l}"));
            return Err(Hinted::wrap(
                anyhow!("turbo-daemon exited ({status}) before answering{said}"),
                format!("the whole start-up log is {}", log.display()),
            ));
        }
        if now >= deadline {
            bail!(
                "the daemon did not come up within {} s; see {}",
                READY_TIMEOUT.as_secs(),
                log.display()
            );
        }
        sleep(POLL).await;
    }
}

fn spawn_daemon(home: &Path, source: HomeSource) -> Result<Child> {
    let binary = daemon_binary()?;
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(home)
        .with_context(|| format!("cannot create {}", home.display()))?;
    // `create` is content with a directory someone else made since we looked
    trust::check_home(home, source)?;
    let log_path = home.join("daemon.log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut cmd = Command::new(&binary);
    cmd.env("TURBO_HOME", home)
        .env_remove("TURBO_BUS_ADDRESS")
        // do not pin the user's current directory (it could not be unmounted or deleted)
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .context("cannot duplicate the daemon log handle")?,
        )
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent; a new session
    // detaches the daemon from our terminal so Ctrl-C or closing the shell does not kill it.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

/// `turbo-daemon` next to this executable (an unpacked release or `target/debug`), else in PATH.
fn daemon_binary() -> Result<PathBuf> {
    const NAME: &str = "turbo-daemon";
    let sibling = env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(NAME)));
    if let Some(path) = sibling.filter(|p| is_executable(p)) {
        return Ok(path);
    }
    env::var_os("PATH")
        .iter()
        .flat_map(env::split_paths)
        .map(|dir| dir.join(NAME))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            Hinted::wrap(
                anyhow!("cannot find {NAME} next to the turbo executable or in PATH to start it"),
                "install both binaries with `cargo xtask install`, or put the directory that \
                 holds turbo-daemon on PATH",
            )
        })
}

/// The last non-empty line of a (log) file, from its last 4 KiB at most.
fn last_line(path: &Path) -> Option<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    String::from_utf8_lossy(&tail)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_values_are_escaped() {
        assert_eq!(
            escape_address_value(b"/home/a/.turbo/bus.sock"),
            "/home/a/.turbo/bus.sock"
        );
        assert_eq!(
            escape_address_value(b"/tmp/my home;x=1,y/bus.sock"),
            "/tmp/my%20home%3bx%3d1%2cy/bus.sock"
        );
        assert_eq!(escape_address_value("/é".as_bytes()), "/%c3%a9");
    }

    #[test]
    fn user_endpoint_address() {
        let Endpoint::User { address, home, .. } =
            user_endpoint(PathBuf::from("/x/.turbo"), HomeSource::Default)
        else {
            panic!("not a user endpoint");
        };
        assert_eq!(address, "unix:path=/x/.turbo/bus.sock");
        assert_eq!(home, Path::new("/x/.turbo"));
    }

    #[test]
    fn last_line_of_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("daemon.log");
        assert_eq!(last_line(&log), None);
        std::fs::write(&log, "starting\nerror: TURBO_EBPF=require: no BTF\n\n").unwrap();
        assert_eq!(
            last_line(&log).as_deref(),
            Some("error: TURBO_EBPF=require: no BTF")
        );
    }

    #[test]
    fn error_classification() {
        let refused =
            zbus::Error::InputOutput(io::Error::from(io::ErrorKind::ConnectionRefused).into());
        assert!(is_absent(&refused) && is_disconnect(&refused));
        let denied =
            zbus::Error::InputOutput(io::Error::from(io::ErrorKind::PermissionDenied).into());
        assert!(!is_absent(&denied));
        let unknown = zbus::Error::FDO(Box::new(zbus::fdo::Error::ServiceUnknown("x".into())));
        assert!(is_no_owner(&unknown));
        assert!(!is_no_owner(&zbus::Error::Failure("x".into())));
    }
}
