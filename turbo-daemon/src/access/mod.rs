//! Who a start call acts for, and what that caller may give its apps.
//!
//! * [`Caller`]: the uid the bus reported for the caller (from the kernel, so it cannot be
//!   forged), or the daemon itself.
//! * [`Powers`]: what a caller may grant its apps (ids, groups, nice, `oom_score_adj`, hard
//!   limits), and the pure decisions made with it: `Powers::may_run_as_user` and its siblings
//!   answer from numbers alone, so they are unit-tested without users or root.
//! * [`as_caller`]: runs a config's validation with the caller's powers and, for a non-root
//!   caller of a root daemon, with the caller's file access rights.
//!
//! In system mode the daemon is root, but the *caller* of a start call may not be: a member of
//! the admin group or a user polkit authorised. Such a caller's config is checked against the
//! caller's powers ([`Powers::for_caller`]), not the daemon's: an app without `user:` runs as
//! the caller, and naming another user, another group or supplementary groups is refused.
//! Without this, whoever may start apps could run any command as root.
//!
//! Identities and credentials come from `os::users` and `os::creds`; this module makes no
//! system call of its own. It does not read configs (`config` does, and words the refusals),
//! and whether a bus caller may call a method at all is `dbus::auth`'s.

mod credentials;
mod powers;

use std::io;

pub use self::{
    credentials::as_caller,
    powers::{LimitKind, Powers},
};
use crate::os::creds;

/// Who a start call acts for: the caller's uid as the bus reported it. The gid is not part of
/// it: the bus reports no primary group, so a caller's apps get the primary group and the
/// groups of the caller's passwd and group entries, exactly as `user: <caller>` would give them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The caller's uid.
    pub uid: u32,
}

impl Caller {
    /// The daemon itself acting on its own behalf (restoring state, tests, fuzzing).
    #[must_use]
    pub fn daemon() -> Self {
        Self {
            uid: creds::effective_uid(),
        }
    }

    /// Whether this caller's apps are limited to the caller's own identity: anyone but root
    /// and the daemon's own user.
    #[must_use]
    pub fn is_scoped(self) -> bool {
        self.uid != 0 && self.uid != creds::effective_uid()
    }
}

/// Why a caller cannot be given apps, or why its check could not run.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A daemon that is not root can run apps only as itself.
    #[error(
        "uid {caller}: this daemon runs as uid {daemon} and can run apps only as itself, so it starts apps only for root and uid {daemon}"
    )]
    DaemonNotRoot {
        /// The caller's uid.
        caller: u32,
        /// The daemon's.
        daemon: u32,
    },
    /// A non-root caller's apps run as the caller, which needs a passwd entry.
    #[error(
        "uid {0} has no passwd entry: apps started by a non-root caller run as the caller, which needs one; ask root to start them"
    )]
    NoPasswdEntry(u32),
    /// The user database could not be read.
    #[error("cannot look up uid {uid}: {source}")]
    Lookup {
        /// The caller's uid.
        uid: u32,
        /// The lookup's error.
        #[source]
        source: io::Error,
    },
    /// The checking thread could not take the caller's file access rights (nothing was read).
    #[error("cannot take the file access rights of uid {uid} to check the config: {source}")]
    SwitchCredentials {
        /// The caller's uid.
        uid: u32,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The checking thread could not be started.
    #[error("cannot start the config check: {0}")]
    Thread(#[source] io::Error),
    /// The check panicked on its thread.
    #[error("internal error: the config check panicked")]
    Panicked,
}
