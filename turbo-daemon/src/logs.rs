//! Log capture: copies an app's stdout or stderr pipe into its log file, one timestamp per line.
//!
//! One small task per stream; it batches whatever the pipe holds into a single `write(2)`, so a
//! chatty app costs one syscall per read, not per line. It must not decide anything about the
//! app: when the pipe closes (the process and its children are gone) the task just ends.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::{fd::OwnedFd, unix::fs::OpenOptionsExt},
    path::{Path, PathBuf},
    time::SystemTime,
};

use tokio::{io::AsyncReadExt, net::unix::pipe};

/// Longest line kept whole; longer ones are split so memory stays bounded.
const MAX_LINE: usize = 64 * 1024;

/// The two log files of an app.
#[must_use]
pub fn paths(log_dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        log_dir.join(format!("{name}-out.log")),
        log_dir.join(format!("{name}-err.log")),
    )
}

/// Opens (creating 0640) a log file for appending.
///
/// # Errors
/// The open error.
pub fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// Copies `pipe_fd` into `file` until end of file, prefixing each line with an RFC 3339 time.
pub async fn capture(pipe_fd: OwnedFd, mut file: File) {
    let mut rx = match pipe::Receiver::from_owned_fd(pipe_fd) {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!("cannot watch an output pipe: {e}");
            return;
        }
    };
    let mut pending: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let n = match rx.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("reading an app's output failed: {e}");
                break;
            }
        };
        pending.extend_from_slice(&chunk[..n]);
        out.clear();
        let stamp = timestamp();
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
            push_line(&mut out, &stamp, &pending[start..=start + pos]);
            start += pos + 1;
        }
        pending.drain(..start);
        if pending.len() >= MAX_LINE {
            push_line(&mut out, &stamp, &pending);
            out.push(b'\n');
            pending.clear();
        }
        write_out(&mut file, &out);
    }
    if !pending.is_empty() {
        // the last line had no newline: keep it anyway
        out.clear();
        push_line(&mut out, &timestamp(), &pending);
        out.push(b'\n');
        write_out(&mut file, &out);
    }
}

fn push_line(out: &mut Vec<u8>, stamp: &str, line: &[u8]) {
    out.extend_from_slice(stamp.as_bytes());
    out.push(b' ');
    out.extend_from_slice(line);
}

fn write_out(file: &mut File, out: &[u8]) {
    if out.is_empty() {
        return;
    }
    if let Err(e) = file.write_all(out) {
        tracing::warn!("writing a log file failed: {e}");
    }
}

fn timestamp() -> String {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    turbo_api::rfc3339_ms(ms)
}

#[cfg(test)]
mod tests {
    use std::os::fd::{FromRawFd, OwnedFd};

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn lines_get_timestamps_and_the_last_partial_line_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two fds we then own.
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) },
            0
        );
        // SAFETY: fresh fds from pipe2.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let task = tokio::spawn(capture(r, open(&path).unwrap()));
        let mut w = File::from(w);
        w.write_all(b"one\ntwo\nthr").unwrap();
        w.write_all(b"ee\nfour").unwrap();
        drop(w);
        task.await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        for (line, want) in lines.iter().zip(["one", "two", "three", "four"]) {
            let (stamp, rest) = line.split_once(' ').unwrap();
            assert!(stamp.ends_with('Z') && stamp.len() == 24, "{stamp}");
            assert_eq!(rest, want);
        }
    }
}
