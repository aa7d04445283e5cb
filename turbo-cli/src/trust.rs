//! Whether a user-mode home and its bus socket may be trusted with what the CLI sends (argv,
//! environment values such as `DB_PASSWORD`, configs) before anything is sent there.
//!
//! A `TURBO_HOME` that another user owns or may write to can hold a `bus.sock` served by that
//! user's fake daemon. So before connecting to `<home>/bus.sock` (and before starting a daemon
//! into `<home>`) the CLI checks, for the caller's effective uid:
//! * the home: a directory owned by the caller or root, not writable by group or others; a
//!   symlink to it must itself be owned by the caller or root;
//! * the socket file: not a symlink, owned by the caller or root;
//! * after connecting, the process that listens on it (`SO_PEERCRED`): running as the caller or
//!   root. This is the check that holds even if the files change between the looks above.
//!
//! An explicit `TURBO_BUS_ADDRESS` and the system bus are not checked: the first is the user's
//! own choice (like `DBUS_SESSION_BUS_ADDRESS`), the second lives where only root can write.
//! The decisions are pure functions of file metadata, unit-tested; this module prints nothing.

use std::{
    fs, io,
    os::unix::fs::{FileTypeExt as _, MetadataExt as _},
    path::Path,
};

use anyhow::{Result, anyhow};

use crate::hint::Hinted;

/// Group- and world-writable bits.
const WRITABLE_BY_OTHERS: u32 = 0o022;

/// The effective uid of this process: who the daemon would act for.
#[must_use]
pub fn caller() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// What a home is called in messages: `TURBO_HOME /x` or `~/.turbo (/home/u/.turbo)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HomeSource {
    /// From `TURBO_HOME`.
    Env,
    /// The default, `~/.turbo`.
    Default,
}

/// The part of a file's metadata the checks look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    pub uid: u32,
    pub mode: u32,
    pub kind: Kind,
}

/// File types that matter here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    Symlink,
    Socket,
    Other,
}

impl Facts {
    fn of(meta: &fs::Metadata) -> Self {
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_socket() {
            Kind::Socket
        } else {
            Kind::Other
        };
        Self {
            uid: meta.uid(),
            mode: meta.mode() & 0o7777,
            kind,
        }
    }
}

/// Whether `uid` is someone the caller may trust: itself or root.
fn trusted(uid: u32, me: u32) -> bool {
    uid == me || uid == 0
}

/// Why a home must not be used, or `None` when it is fine. `link` is the metadata of the path
/// itself (not followed), `target` what it leads to (the same when it is no symlink).
#[must_use]
pub fn home_problem(link: Facts, target: Facts, me: u32) -> Option<String> {
    if link.kind == Kind::Symlink && !trusted(link.uid, me) {
        return Some(format!(
            "it is a symlink owned by uid {}, not by you (uid {me}) or root",
            link.uid
        ));
    }
    if target.kind != Kind::Dir {
        return Some("it is not a directory".to_owned());
    }
    if !trusted(target.uid, me) {
        return Some(format!(
            "it is owned by uid {}, not by you (uid {me}) or root",
            target.uid
        ));
    }
    if target.mode & WRITABLE_BY_OTHERS != 0 {
        return Some(format!(
            "group or others may write to it (mode {:04o})",
            target.mode
        ));
    }
    None
}

/// Why a bus socket file must not be used, or `None`.
#[must_use]
pub fn socket_problem(socket: Facts, me: u32) -> Option<String> {
    if socket.kind == Kind::Symlink {
        return Some("it is a symlink".to_owned());
    }
    if !trusted(socket.uid, me) {
        return Some(format!(
            "it belongs to uid {}, not to you (uid {me}) or root",
            socket.uid
        ));
    }
    None
}

/// Why the process serving the socket must not be talked to, or `None`.
#[must_use]
pub fn peer_problem(peer_uid: u32, me: u32) -> Option<String> {
    (!trusted(peer_uid, me)).then(|| {
        format!("the process serving it runs as uid {peer_uid}, not as you (uid {me}) or root")
    })
}

fn home_label(home: &Path, source: HomeSource) -> String {
    match source {
        HomeSource::Env => format!("TURBO_HOME {}", home.display()),
        HomeSource::Default => format!("~/.turbo ({})", home.display()),
    }
}

fn home_help(home: &Path, source: HomeSource) -> String {
    match source {
        HomeSource::Env => "set TURBO_HOME to a directory of your own that only you may write \
                            to (or unset it to use ~/.turbo)"
            .to_owned(),
        HomeSource::Default => format!(
            "make {} yours and private (`chown $(id -u) {0}; chmod 700 {0}`), or remove it",
            home.display()
        ),
    }
}

/// Checks a home before connecting to its socket or starting a daemon in it. A home that does
/// not exist yet is fine (the CLI creates it 0700 when it starts a daemon, then checks again).
///
/// # Errors
/// A one-line refusal saying what is wrong and what to do; or the home cannot be examined.
pub fn check_home(home: &Path, source: HomeSource) -> Result<()> {
    let me = caller();
    let link = match fs::symlink_metadata(home) {
        Ok(meta) => Facts::of(&meta),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => {
            return Err(anyhow!(
                "cannot examine {}: {err}",
                home_label(home, source)
            ));
        }
    };
    let target = if link.kind == Kind::Symlink {
        match fs::metadata(home) {
            Ok(meta) => Facts::of(&meta),
            // a dangling link of our own: as good as missing, creating it goes through it
            Err(err) if err.kind() == io::ErrorKind::NotFound && trusted(link.uid, me) => {
                return Ok(());
            }
            Err(err) => {
                return Err(anyhow!(
                    "cannot examine {}: {err}",
                    home_label(home, source)
                ));
            }
        }
    } else {
        link
    };
    match home_problem(link, target, me) {
        None => Ok(()),
        Some(why) => Err(Hinted::wrap(
            anyhow!(
                "refusing to use {}: {why}, so its bus.sock could be another user's fake daemon",
                home_label(home, source)
            ),
            home_help(home, source),
        )),
    }
}

/// Checks the socket file of a home; a missing one is fine (nothing to connect to).
///
/// # Errors
/// A one-line refusal; or the socket cannot be examined.
pub fn check_socket(socket: &Path, home: &Path, source: HomeSource) -> Result<()> {
    let facts = match fs::symlink_metadata(socket) {
        Ok(meta) => Facts::of(&meta),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(anyhow!("cannot examine {}: {err}", socket.display())),
    };
    match socket_problem(facts, caller()) {
        None => Ok(()),
        Some(why) => Err(refusal(socket, &why, home, source)),
    }
}

/// Checks who serves a connected socket.
///
/// # Errors
/// A one-line refusal when it is neither the caller nor root.
pub fn check_peer(peer_uid: u32, socket: &Path, home: &Path, source: HomeSource) -> Result<()> {
    match peer_problem(peer_uid, caller()) {
        None => Ok(()),
        Some(why) => Err(refusal(socket, &why, home, source)),
    }
}

fn refusal(socket: &Path, why: &str, home: &Path, source: HomeSource) -> anyhow::Error {
    Hinted::wrap(
        anyhow!(
            "refusing to talk to {}: {why}; it could be another user's fake daemon, and nothing \
             was sent to it",
            socket.display()
        ),
        format!(
            "if you did not put it there, remove it and tell your administrator; else {}",
            home_help(home, source)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u32 = 1000;

    fn facts(uid: u32, mode: u32, kind: Kind) -> Facts {
        Facts { uid, mode, kind }
    }

    #[test]
    fn homes() {
        let dir = |uid, mode| facts(uid, mode, Kind::Dir);
        for ok in [dir(ME, 0o700), dir(ME, 0o755), dir(0, 0o755), dir(0, 0o700)] {
            assert_eq!(home_problem(ok, ok, ME), None, "{ok:?}");
        }
        let other = dir(1001, 0o700);
        assert!(
            home_problem(other, other, ME)
                .unwrap()
                .contains("owned by uid 1001, not by you (uid 1000) or root")
        );
        for writable in [0o770, 0o757, 0o1777, 0o775] {
            let d = dir(ME, writable);
            assert!(
                home_problem(d, d, ME).unwrap().contains("may write to it"),
                "{writable:o}"
            );
        }
        // root's own home must be root's: a user's directory is someone else's for root
        let users = dir(ME, 0o700);
        assert!(home_problem(users, users, 0).is_some());
        // symlinks: the link's owner matters as much as the target's
        let link = |uid| facts(uid, 0o777, Kind::Symlink);
        assert_eq!(home_problem(link(ME), dir(ME, 0o700), ME), None);
        assert_eq!(home_problem(link(0), dir(ME, 0o700), ME), None);
        assert!(
            home_problem(link(1001), dir(ME, 0o700), ME)
                .unwrap()
                .contains("symlink owned by uid 1001")
        );
        assert!(home_problem(link(ME), dir(1001, 0o700), ME).is_some());
        let file = facts(ME, 0o600, Kind::Other);
        assert!(
            home_problem(file, file, ME)
                .unwrap()
                .contains("not a directory")
        );
    }

    #[test]
    fn sockets_and_peers() {
        assert_eq!(socket_problem(facts(ME, 0o777, Kind::Socket), ME), None);
        assert_eq!(socket_problem(facts(0, 0o777, Kind::Socket), ME), None);
        assert!(
            socket_problem(facts(1001, 0o777, Kind::Socket), ME)
                .unwrap()
                .contains("belongs to uid 1001")
        );
        assert!(
            socket_problem(facts(ME, 0o777, Kind::Symlink), ME)
                .unwrap()
                .contains("symlink")
        );
        assert_eq!(peer_problem(ME, ME), None);
        assert_eq!(peer_problem(0, ME), None);
        assert!(
            peer_problem(65534, ME)
                .unwrap()
                .contains("runs as uid 65534")
        );
        assert!(peer_problem(ME, 0).is_some(), "root trusts only root");
    }

    #[test]
    fn real_directories() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        assert!(
            check_home(&home, HomeSource::Env).is_ok(),
            "missing is fine"
        );
        fs::create_dir(&home).unwrap();
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(check_home(&home, HomeSource::Env).is_ok());
        fs::set_permissions(&home, fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_home(&home, HomeSource::Env).unwrap_err();
        assert!(
            err.to_string().contains("mode 0777") && err.to_string().contains("TURBO_HOME"),
            "{err}"
        );
        assert!(crate::hint::help_of(&err).unwrap().contains("TURBO_HOME"));
        let err = check_home(&home, HomeSource::Default).unwrap_err();
        assert!(crate::hint::help_of(&err).unwrap().contains("chmod 700"));
        // a dangling symlink of our own is a home yet to be made
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        assert!(check_home(&link, HomeSource::Env).is_ok());
        assert!(check_socket(&home.join("bus.sock"), &home, HomeSource::Env).is_ok());
        std::os::unix::fs::symlink("/nowhere", home.join("bus.sock")).unwrap();
        let err = check_socket(&home.join("bus.sock"), &home, HomeSource::Env).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
    }
}
