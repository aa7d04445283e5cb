//! Opening files the daemon writes in directories it owns without following a symbolic link
//! planted there (`O_NOFOLLOW`), and recognising the refusal.
//!
//! Plain data in and out (paths, `std::fs` types); which files deserve it is the caller's
//! business.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read as _},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
};

use rustix::{fs::OFlags, io::Errno};

/// Adds `O_NOFOLLOW` to `options`: opening a symbolic link then fails with `ELOOP`
/// ([`is_symlink_refusal`]) instead of reaching the file it points to.
pub fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    options.custom_flags(OFlags::NOFOLLOW.bits().cast_signed())
}

/// True when `e` is the `ELOOP` of an `O_NOFOLLOW` open of a symbolic link.
#[must_use]
pub fn is_symlink_refusal(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::LOOP.raw_os_error())
}

/// Reads the regular file at `path` (not through a symbolic link) when it holds at most `cap`
/// bytes; `Ok(None)` when there is no such file.
///
/// # Errors
/// Any I/O error; [`io::ErrorKind::FileTooLarge`] past `cap`, before anything is read.
pub fn read_capped(path: &Path, cap: u64) -> io::Result<Option<Vec<u8>>> {
    let mut file = match no_follow(OpenOptions::new().read(true)).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let size = file.metadata()?.len();
    if size > cap {
        return Err(too_large(size, cap));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // the file may grow while it is read: never past the cap
    (&mut file).take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_large(bytes.len() as u64, cap));
    }
    Ok(Some(bytes))
}

fn too_large(size: u64, cap: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("{size} bytes, more than the {cap} this file may hold"),
    )
}

/// Creates `path` afresh (`O_EXCL`, never through a symbolic link) with `mode`, for writing.
///
/// # Errors
/// Any I/O error, `AlreadyExists` when something is there.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    no_follow(OpenOptions::new().create_new(true).write(true).mode(mode)).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_refused_and_sizes_capped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_capped(&file, 5).unwrap().unwrap(), b"12345");
        let err = read_capped(&file, 4).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge, "{err}");
        assert!(read_capped(&dir.path().join("none"), 4).unwrap().is_none());
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(is_symlink_refusal(&read_capped(&link, 9).unwrap_err()));
        let err = create_new(&link, 0o600).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::AlreadyExists,
            "never opened through: {err}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"12345");
    }
}
