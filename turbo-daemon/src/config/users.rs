//! Read-only lookups in the user and group databases (`/etc/passwd`, `/etc/group`, or whatever
//! NSS is configured to use), through the reentrant libc calls.
//!
//! Used when a config is validated (names become ids once, there) and, for the daemon's own
//! entry, when an app without `user:` is spawned (its `HOME`, `USER`, `LOGNAME`, `SHELL`).
//! These calls may block on a network NSS source; nothing here runs between fork and exec.

use std::{
    ffi::{CStr, CString, c_char},
    io,
};

/// A passwd entry, the fields TurboProcess uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// A group entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// gid.
    pub gid: u32,
}

/// The passwd entry named `name`, `None` if there is none.
///
/// # Errors
/// A lookup failure (an unreachable NSS source, for example), not "no such user".
pub fn user_by_name(name: &str) -> io::Result<Option<User>> {
    let Ok(cname) = CString::new(name) else {
        return Ok(None);
    };
    lookup_user(|pwd, buf, len, result| {
        // SAFETY: every pointer is valid for the call; `buf` has `len` bytes.
        unsafe { libc::getpwnam_r(cname.as_ptr(), pwd, buf, len, result) }
    })
}

/// The passwd entry of `uid`, `None` if there is none.
///
/// # Errors
/// A lookup failure, not "no such user".
pub fn user_by_uid(uid: u32) -> io::Result<Option<User>> {
    lookup_user(|pwd, buf, len, result| {
        // SAFETY: as in `user_by_name`.
        unsafe { libc::getpwuid_r(uid, pwd, buf, len, result) }
    })
}

/// The group named `name`, `None` if there is none.
///
/// # Errors
/// A lookup failure, not "no such group".
pub fn group_by_name(name: &str) -> io::Result<Option<Group>> {
    let Ok(cname) = CString::new(name) else {
        return Ok(None);
    };
    lookup_group(|grp, buf, len, result| {
        // SAFETY: every pointer is valid for the call; `buf` has `len` bytes.
        unsafe { libc::getgrnam_r(cname.as_ptr(), grp, buf, len, result) }
    })
}

/// The group of `gid`, `None` if there is none.
///
/// # Errors
/// A lookup failure, not "no such group".
pub fn group_by_gid(gid: u32) -> io::Result<Option<Group>> {
    lookup_group(|grp, buf, len, result| {
        // SAFETY: as in `group_by_name`.
        unsafe { libc::getgrgid_r(gid, grp, buf, len, result) }
    })
}

/// The groups `initgroups(user, gid)` would give: `gid` plus every group listing `user` as a
/// member, without duplicates, in database order.
///
/// # Errors
/// The user name holds a NUL byte, or the list keeps growing (the database is changing).
pub fn group_list(user: &str, gid: u32) -> io::Result<Vec<u32>> {
    let cname = CString::new(user).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut groups: Vec<libc::gid_t> = vec![0; 32];
    for _ in 0..8 {
        let mut n = i32::try_from(groups.len()).unwrap_or(i32::MAX);
        // SAFETY: `groups` has room for `n` gids; glibc writes at most that many and sets `n`
        // to the number found (also when it returns -1 because there are more).
        let rc =
            unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &raw mut n) };
        let found = usize::try_from(n).unwrap_or(0);
        if rc >= 0 {
            groups.truncate(found);
            let mut unique = Vec::with_capacity(groups.len());
            for g in groups {
                if !unique.contains(&g) {
                    unique.push(g);
                }
            }
            return Ok(unique);
        }
        groups.resize(found.max(groups.len() * 2), 0);
    }
    Err(io::Error::other(format!(
        "the group list of {user} keeps growing"
    )))
}

/// Runs a `get*_r` call with a growing buffer until it fits (`ERANGE` means "too small").
fn with_buffer<T>(mut call: impl FnMut(&mut [u8]) -> (i32, Option<T>)) -> io::Result<Option<T>> {
    let mut buf = vec![0u8; 1024];
    loop {
        match call(&mut buf) {
            (0, found) => return Ok(found),
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            // "not found" may also come back as one of these, depending on the NSS module
            (libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM, _) => return Ok(None),
            (errno, _) => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

fn lookup_user(
    mut call: impl FnMut(*mut libc::passwd, *mut c_char, libc::size_t, *mut *mut libc::passwd) -> i32,
) -> io::Result<Option<User>> {
    with_buffer(|buf| {
        // SAFETY: an all-zero passwd is a valid out-parameter.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = call(
            &raw mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &raw mut result,
        );
        if rc != 0 || result.is_null() {
            return (rc, None);
        }
        // SAFETY: on success the string fields point into `buf`, NUL-terminated.
        let user = unsafe {
            User {
                name: text(pwd.pw_name),
                uid: pwd.pw_uid,
                gid: pwd.pw_gid,
                home: text(pwd.pw_dir),
                shell: text(pwd.pw_shell),
            }
        };
        (0, Some(user))
    })
}

fn lookup_group(
    mut call: impl FnMut(*mut libc::group, *mut c_char, libc::size_t, *mut *mut libc::group) -> i32,
) -> io::Result<Option<Group>> {
    with_buffer(|buf| {
        // SAFETY: an all-zero group is a valid out-parameter.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = call(
            &raw mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &raw mut result,
        );
        if rc != 0 || result.is_null() {
            return (rc, None);
        }
        // SAFETY: on success `gr_name` points into `buf`, NUL-terminated.
        let name = unsafe { text(grp.gr_name) };
        (
            0,
            Some(Group {
                name,
                gid: grp.gr_gid,
            }),
        )
    })
}

/// # Safety
/// `p` is null or points to a NUL-terminated string.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: the caller's promise.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_missing_entries() {
        let root = user_by_uid(0).unwrap().expect("root has a passwd entry");
        assert_eq!((root.name.as_str(), root.uid), ("root", 0));
        assert_eq!(user_by_name("root").unwrap(), Some(root.clone()));
        assert_eq!(user_by_name("no-such-user-turbo").unwrap(), None);
        assert_eq!(user_by_name("nul\0byte").unwrap(), None);
        let g = group_by_gid(root.gid).unwrap().expect("root's group");
        assert_eq!(group_by_name(&g.name).unwrap(), Some(g.clone()));
        assert_eq!(group_by_name("no-such-group-turbo").unwrap(), None);
        let list = group_list("root", root.gid).unwrap();
        assert_eq!(
            list.first(),
            Some(&root.gid),
            "the primary group comes first"
        );
    }
}
