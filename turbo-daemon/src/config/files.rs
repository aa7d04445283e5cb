//! The files a config names, looked at read-only: the command to run (found on `PATH`, its
//! interpreter chosen by its extension) and the `env_file`.
//!
//! This is config's only file access besides checking that directories exist; it opens nothing
//! for writing and runs nothing. For a non-root caller of a root daemon it runs on a thread with
//! the caller's file access rights (`access::as_caller`), so it sees only what the caller may.

use std::{
    io::{self, Read as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use nix::fcntl::OFlag;
/// Interpreters chosen by a script's extension, as PM2 does (one table, shared with
/// `turbo import pm2`).
use turbo_api::INTERPRETERS;

use super::{error::Fault, input};

/// Whether `dir` is a directory the calling thread may enter: the stat of `dir/.` needs search
/// permission on `dir` itself, with the thread's file-system credentials (`access(2)` would use
/// the real uid instead, which is the daemon's).
///
/// # Errors
/// `PermissionDenied` when it cannot be entered, `NotFound` or `NotADirectory` otherwise.
pub(super) fn enter_dir(dir: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(dir.join("."))?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(io::ErrorKind::NotADirectory.into())
    }
}

/// Whether the calling thread may watch `path`: list it when it is a directory, open it for
/// reading (without blocking on a FIFO) otherwise, which is what inotify asks of a watcher.
/// Checked with the caller's rights, so watch mode reveals no activity in a directory the caller
/// cannot read (issue 15: `watch: [/root]` by an admin).
///
/// # Errors
/// `NotFound`, `PermissionDenied`, or the open's other error.
pub(super) fn may_watch(path: &Path) -> io::Result<()> {
    if std::fs::metadata(path)?.is_dir() {
        std::fs::read_dir(path).map(drop)
    } else {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(OFlag::O_NONBLOCK.bits())
            .open(path)
            .map(drop)
    }
}

/// Turns `argv` into something `execve` can run: `argv[0]` becomes an absolute path, and scripts
/// with a known extension get their interpreter in front.
///
/// `is_script` (the `script:` key) means `argv[0]` is always a file, never looked up in `PATH`.
///
/// # Errors
/// What was not found or not executable, and what to do (the caller knows which key named the
/// command).
pub(super) fn resolve_command(
    argv: &[String],
    cwd: &Path,
    path_env: &str,
    is_script: bool,
) -> Result<Vec<String>, Fault> {
    let first = argv.first().ok_or_else(|| Fault::new("empty command"))?;
    let rest = &argv[1..];
    let as_file = cwd.join(first);
    if is_script || first.contains('/') || as_file.is_file() {
        if !as_file.exists() {
            return Err(Fault::new(format!(
                "script {} not found (relative paths resolve against {})",
                as_file.display(),
                cwd.display()
            )));
        }
        if as_file.is_dir() {
            return Err(Fault::new(format!(
                "{} is a directory, not a script",
                as_file.display()
            ))
            .hint("name the file to run"));
        }
        let script = as_file.to_string_lossy().into_owned();
        let ext = as_file.extension().and_then(|e| e.to_str()).unwrap_or("");
        if let Some((_, interp)) = INTERPRETERS.iter().find(|(e, _)| *e == ext) {
            let interp_path = find_in_path(interp, path_env).ok_or_else(|| {
                Fault::new(format!("{script} needs `{interp}`, which is not in PATH"))
                    .hint("install it or use `cmd:`")
            })?;
            return Ok([interp_path, script]
                .into_iter()
                .chain(rest.iter().cloned())
                .collect());
        }
        if !is_executable(&as_file) {
            return Err(
                Fault::new(format!("{script} is not executable")).hint(format!(
                    "`chmod +x` it or name an interpreter (cmd: [python3, {first}])"
                )),
            );
        }
        return Ok(std::iter::once(script)
            .chain(rest.iter().cloned())
            .collect());
    }
    let found = find_in_path(first, path_env).ok_or_else(|| {
        Fault::new(format!(
            "command '{first}' not found: not a file in {} and not in PATH",
            cwd.display()
        ))
    })?;
    Ok(std::iter::once(found).chain(rest.iter().cloned()).collect())
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_in_path(program: &str, path_env: &str) -> Option<String> {
    path_env
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join(program))
        .find(|p| is_executable(p))
        .map(|p| p.to_string_lossy().into_owned())
}

/// Reads an `env_file`: a regular file of at most [`input::MAX_ENV_FILE_BYTES`]. Opened
/// non-blocking, so that a FIFO cannot hang the daemon before it is found not to be a file.
pub(super) fn read_env_file(path: &Path) -> io::Result<String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("larger than {} bytes", input::MAX_ENV_FILE_BYTES),
        )
    };
    if meta.len() > input::MAX_ENV_FILE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    // bounded again: the file may grow between the fstat and the read
    file.take(input::MAX_ENV_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > input::MAX_ENV_FILE_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Parses a `.env` file: `KEY=VALUE` lines, `#` comments, blank lines, an optional `export `
/// prefix and optional single or double quotes around the value.
///
/// # Errors
/// The first malformed line, with its number.
pub(super) fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut vars = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected KEY=VALUE, got '{raw}'", i + 1))?;
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("line {}: '{key}' is not a variable name", i + 1));
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.push((key.to_owned(), value.to_owned()));
    }
    Ok(vars)
}
