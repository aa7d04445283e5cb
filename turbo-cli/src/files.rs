//! Opening the files a user names (turbo.yml, PM2 ecosystem files) and the log files the daemon
//! names: regular files only, opened so that nothing can make the CLI wait.
//!
//! A plain `open(2)` of a FIFO blocks until someone opens its other end, so `turbo start x.yml`
//! with a FIFO at `x.yml` hung forever. Files are opened with `O_NONBLOCK` (which a regular file
//! ignores), then refused unless the open file is a regular one. This module does no parsing.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read as _},
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::Path,
};

use anyhow::{Result, anyhow};

/// The largest config or ecosystem file read: far above any real one, and it bounds what a
/// mistaken path (a disk image, a log) costs.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Opens `path` for reading without blocking on a FIFO or a device, and only if it is a regular
/// file. A non-regular file is an `InvalidInput` error whose message says what it is.
///
/// # Errors
/// The open fails, or `path` is not a regular file.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a named pipe (FIFO)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        if what.starts_with("not") {
            what.to_owned()
        } else {
            format!("it is {what}, not a regular file")
        },
    ))
}

/// Reads a config file the user named as UTF-8 text.
///
/// # Errors
/// One line naming the file: missing, not a regular file, larger than [`MAX_CONFIG_BYTES`], or
/// not UTF-8.
pub fn read_config(path: &Path) -> Result<String> {
    let shown = path.display();
    let file = open_regular(path).map_err(|err| anyhow!("cannot read {shown}: {err}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| anyhow!("cannot read {shown}: {err}"))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(anyhow!(
            "cannot read {shown}: it is larger than {} MiB, too large for a config file",
            MAX_CONFIG_BYTES >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|err| {
        anyhow!(
            "cannot read {shown}: not UTF-8 text (invalid byte at offset {})",
            err.utf8_error().valid_up_to()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_and_no_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let yml = dir.path().join("turbo.yml");
        std::fs::write(&yml, "apps: []\n").unwrap();
        assert_eq!(read_config(&yml).unwrap(), "apps: []\n");

        let fifo = dir.path().join("fifo.yml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo");
        // with a blocking open this would wait for a writer forever
        let err = read_config(&fifo).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "cannot read {}: it is a named pipe (FIFO), not a regular file",
                fifo.display()
            )
        );
        let err = read_config(dir.path()).unwrap_err().to_string();
        assert!(
            err.ends_with("it is a directory, not a regular file"),
            "{err}"
        );
        let err = read_config(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(err.contains("character device"), "{err}");
        let err = read_config(&dir.path().join("missing.yml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("No such file"), "{err}");
        std::fs::write(&yml, b"\xff").unwrap();
        assert!(read_config(&yml).unwrap_err().to_string().contains("UTF-8"));
    }
}
