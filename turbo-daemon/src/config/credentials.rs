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
//! `setgroups`, made as raw system calls, which change only the calling thread on Linux (glibc's
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

use std::io;

use super::{Caller, Powers};

/// Runs `check` with the powers of `caller` ([`Powers::for_caller`]); for a scoped caller, on a
/// thread with the caller's filesystem credentials (see the module docs).
///
/// # Errors
/// The caller cannot be given apps (see [`Powers::for_caller`]), the credentials cannot be
/// switched (then nothing is read), or what `check` returns.
pub fn as_caller<T: Send>(
    caller: Caller,
    check: impl FnOnce(&Powers) -> Result<T, String> + Send,
) -> Result<T, String> {
    let powers = Powers::for_caller(caller)?;
    if powers.caller.is_none() {
        return check(&powers);
    }
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("turbo-as-caller".into())
            .spawn_scoped(s, || {
                switch_fs_credentials(powers.euid, powers.egid, &powers.groups).map_err(|e| {
                    format!(
                        "cannot take the file access rights of uid {} to check the config: {e}",
                        powers.euid
                    )
                })?;
                check(&powers)
            })
            .map_err(|e| format!("cannot start the config check: {e}"))?;
        worker
            .join()
            .unwrap_or_else(|_| Err("internal error: the config check panicked".into()))
    })
}

/// Gives the *calling thread* the filesystem credentials `uid`, `gid`, `groups`, and checks
/// that the kernel took them. Raw system calls: per thread, unlike glibc's wrappers of
/// `setgroups` (which glibc applies to every thread of the process).
fn switch_fs_credentials(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
    // SAFETY: setgroups reads `groups.len()` gids from a live slice.
    if unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // setfsgid/setfsuid return the previous id and report no error: ask again with an invalid
    // id (-1), which changes nothing and returns the current one
    // SAFETY: plain system calls with integer arguments.
    let (fsgid, fsuid) = unsafe {
        libc::syscall(libc::SYS_setfsgid, gid);
        let fsgid = libc::syscall(libc::SYS_setfsgid, u32::MAX);
        libc::syscall(libc::SYS_setfsuid, uid);
        let fsuid = libc::syscall(libc::SYS_setfsuid, u32::MAX);
        (fsgid, fsuid)
    };
    if fsgid != i64::from(gid) || fsuid != i64::from(uid) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the kernel kept fsuid {fsuid} and fsgid {fsgid} (the daemon needs CAP_SETUID and CAP_SETGID)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::config::users;

    #[test]
    fn the_daemon_itself_checks_with_its_own_rights() {
        let got = as_caller(Caller::daemon(), |p| Ok(p.caller.clone())).unwrap();
        assert_eq!(got, None);
    }

    /// As root: a file only root may read is unreadable on the caller's thread, a file the
    /// caller may read is readable, and the daemon's own thread keeps its rights.
    #[test]
    fn a_scoped_caller_reads_only_what_it_may() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
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
            Ok((std::fs::read(&secret), std::fs::read(&open)))
        })
        .unwrap();
        let e = secret_read.expect_err("nobody may not read a 0600 root file");
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(open_read.unwrap(), b"A=1\n");
        // the daemon's threads are untouched
        assert!(std::fs::read(&secret).is_ok());
    }
}
