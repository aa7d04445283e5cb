//! File locks: one daemon per home holds `daemon.lock`.

use std::{fs::File, io, path::Path};

/// Takes an exclusive, non-blocking `flock` on `path` (created 0600) and keeps it while the
/// returned file lives.
///
/// # Errors
/// `WouldBlock` when another process holds it.
pub fn lock_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_would_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.lock");
        let held = lock_file(&path).unwrap();
        assert_eq!(
            lock_file(&path).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(held);
        lock_file(&path).unwrap();
    }
}
