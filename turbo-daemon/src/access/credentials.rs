//! Looking at a caller's files with the caller's rights.
//!
//! A root daemon validating a config for a non-root caller reads files on the caller's behalf:
//! the `env_file`, and it checks the working directory, the script and the interpreter. Done with
//! root's rights, a caller could have the daemon read a file the caller may not (`env_file:
//! /etc/shadow` would fail to parse, but `env_file: /root/.aws/credentials` would not) and would
//! learn which files exist in directories closed to it.
//!
//! So for a scoped caller ([`Caller::is_scoped`]) the whole validation runs on a short-lived
//! thread whose *filesystem* credentials are the caller's: `setfsuid`, `setfsgid` and
//! `setgroups` as per-thread system calls (`os::creds::switch_thread_fs_credentials`; glibc's
//! `setgroups` wrapper would change every thread of the daemon). When the fsuid leaves 0 the
//! kernel also drops the thread's filesystem capabilities (`CAP_DAC_OVERRIDE`,
//! `CAP_DAC_READ_SEARCH`, ...), so every `open` and `stat` is checked exactly as for the caller:
//! mode bits, ACLs, search permission on every directory of the path, and no gap between a check
//! and the read (an `access`-style check, even `faccessat(AT_EACCESS)`, checks the daemon's own
//! ids, and checking ownership and mode bits by hand would miss ACLs and parent directories).
//! The thread ends with the validation; no other work ever runs on it.
//!
//! Why not a forked child with the caller's credentials: it would give the same answers, but
//! the validation (YAML, user lookups, building the spec) would have to cross a pipe, and a fork
//! of a multi-threaded daemon may only make async-signal-safe calls before it execs.

use super::{AccessError, Caller, Powers};
use crate::os::creds;

/// Runs `check` with the powers of `caller` ([`Powers::for_caller`]); for a scoped caller, on a
/// thread with the caller's filesystem credentials (see the module docs).
///
/// # Errors
/// The caller cannot be given apps (see [`Powers::for_caller`]), the credentials cannot be
/// switched (then nothing is read), or what `check` returns.
pub fn as_caller<T: Send, E: From<AccessError> + Send>(
    caller: Caller,
    check: impl FnOnce(&Powers) -> Result<T, E> + Send,
) -> Result<T, E> {
    let powers = Powers::for_caller(caller)?;
    if powers.caller.is_none() {
        return check(&powers);
    }
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("turbo-as-caller".into())
            .spawn_scoped(s, || {
                creds::switch_thread_fs_credentials(powers.euid, powers.egid, &powers.groups)
                    .map_err(|source| AccessError::SwitchCredentials {
                        uid: powers.euid,
                        source,
                    })?;
                check(&powers)
            })
            .map_err(AccessError::Thread)?;
        worker
            .join()
            .unwrap_or_else(|_| Err(AccessError::Panicked.into()))
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use std::io;

    use super::*;
    use crate::os::users;

    #[test]
    fn the_daemon_itself_checks_with_its_own_rights() {
        let got = as_caller(Caller::daemon(), |p| Ok::<_, AccessError>(p.caller.clone())).unwrap();
        assert_eq!(got, None);
    }

    /// As root: a file only root may read is unreadable on the caller's thread, a file the
    /// caller may read is readable, and the daemon's own thread keeps its rights.
    #[test]
    fn a_scoped_caller_reads_only_what_it_may() {
        if creds::effective_uid() != 0 {
            eprintln!("skipped: needs root to switch credentials");
            return;
        }
        let nobody = users::user_by_name("nobody").unwrap().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "TOKEN=root-only\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let open = dir.path().join("open");
        std::fs::write(&open, "A=1\n").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        let caller = Caller { uid: nobody.uid };
        let (secret_read, open_read) = as_caller(caller, |p| {
            assert_eq!(p.caller.as_deref(), Some("nobody"));
            Ok::<_, AccessError>((std::fs::read(&secret), std::fs::read(&open)))
        })
        .unwrap();
        let e = secret_read.expect_err("nobody may not read a 0600 root file");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(open_read.unwrap(), b"A=1\n");
        // the daemon's threads are untouched
        assert!(std::fs::read(&secret).is_ok());
    }
}
