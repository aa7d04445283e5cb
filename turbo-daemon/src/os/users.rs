//! Read-only lookups in the user and group databases (`/etc/passwd`, `/etc/group`, or whatever
//! NSS is configured to use), through nix's wrappers of the reentrant libc calls.
//!
//! Used when a config is validated (names become ids once, there) and, for the daemon's own
//! entry, when an app without `user:` is spawned (its `HOME`, `USER`, `LOGNAME`, `SHELL`).
//! These calls may block on a network NSS source; nothing here runs between fork and exec.
//! Imports no domain module: the records are the database's, not an app's.

use std::{ffi::CString, io};

use nix::{
    errno::Errno,
    unistd::{self, Gid, Uid},
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

impl From<unistd::User> for User {
    fn from(u: unistd::User) -> Self {
        Self {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir.to_string_lossy().into_owned(),
            shell: u.shell.to_string_lossy().into_owned(),
        }
    }
}

/// A group entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// gid.
    pub gid: u32,
}

impl From<unistd::Group> for Group {
    fn from(g: unistd::Group) -> Self {
        Self {
            name: g.name,
            gid: g.gid.as_raw(),
        }
    }
}

/// The passwd entry named `name`, `None` if there is none (or the name holds a NUL byte).
///
/// # Errors
/// A lookup failure (an unreachable NSS source, for example), not "no such user".
pub fn user_by_name(name: &str) -> io::Result<Option<User>> {
    found(unistd::User::from_name(name))
}

/// The passwd entry of `uid`, `None` if there is none.
///
/// # Errors
/// A lookup failure, not "no such user".
pub fn user_by_uid(uid: u32) -> io::Result<Option<User>> {
    found(unistd::User::from_uid(Uid::from_raw(uid)))
}

/// The group named `name`, `None` if there is none (or the name holds a NUL byte).
///
/// # Errors
/// A lookup failure, not "no such group".
pub fn group_by_name(name: &str) -> io::Result<Option<Group>> {
    found(unistd::Group::from_name(name))
}

/// The group of `gid`, `None` if there is none.
///
/// # Errors
/// A lookup failure, not "no such group".
pub fn group_by_gid(gid: u32) -> io::Result<Option<Group>> {
    found(unistd::Group::from_gid(Gid::from_raw(gid)))
}

/// The groups `initgroups(user, gid)` would give: `gid` plus every group listing `user` as a
/// member, without duplicates, in database order.
///
/// # Errors
/// The user name holds a NUL byte, or the lookup failed.
pub fn group_list(user: &str, gid: u32) -> io::Result<Vec<u32>> {
    let cname = CString::new(user).map_err(|_| io::ErrorKind::InvalidInput)?;
    let groups = unistd::getgrouplist(&cname, Gid::from_raw(gid)).map_err(io::Error::from)?;
    let mut unique = Vec::with_capacity(groups.len());
    for g in groups.into_iter().map(Gid::as_raw) {
        if !unique.contains(&g) {
            unique.push(g);
        }
    }
    Ok(unique)
}

/// A lookup's answer with "not found" as `None`: depending on the NSS module it may also come
/// back as one of these errors rather than as an empty result.
fn found<T, U: Into<T>>(result: nix::Result<Option<U>>) -> io::Result<Option<T>> {
    match result {
        Ok(entry) => Ok(entry.map(Into::into)),
        Err(Errno::ENOENT | Errno::ESRCH | Errno::EBADF | Errno::EPERM) => Ok(None),
        Err(errno) => Err(errno.into()),
    }
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
