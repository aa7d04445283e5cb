//! The terminal side of output: whether stdout/stderr are terminals, whether colour is allowed,
//! how wide the terminal is, and writing to stdout so that a closed pipe ends the command quietly.
//!
//! This is the only module that looks at `NO_COLOR`, `TERM`, `COLUMNS`, `LINES` and the tty
//! ioctls (monit's own size comes from crossterm, which ratatui draws with); it must not format
//! anything (that is `render`'s job).

use std::{
    env, fmt,
    io::{self, IsTerminal as _, Write as _},
};

use crate::render::{self, RenderOpts};

/// Stdout was closed by the reader (`turbo status | head -1`): not a failure of the command.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Prints `text` and a newline to stdout, flushing so that `--follow` output is not held back.
///
/// # Errors
/// [`StdoutClosed`] on a broken pipe, which `main` turns into success; other write errors as is.
pub fn emit(text: &str) -> anyhow::Result<()> {
    emit_bytes(text.as_bytes())
}

/// [`emit`] for text the caller owns: the newline is appended to it, so it all goes out in one
/// `write` (a table of 1,000 apps is about 100 KB; issue 21).
///
/// # Errors
/// As [`emit`].
pub fn emit_owned(mut text: String) -> anyhow::Result<()> {
    text.push('\n');
    write_out(text.as_bytes())
}

/// [`emit`] for bytes that need not be UTF-8 (`turbo logs --raw`).
///
/// # Errors
/// As [`emit`].
pub fn emit_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    write_out(bytes)?;
    write_out(b"\n")
}

/// Writes `bytes` to stdout and flushes.
fn write_out(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|err| {
            if err.kind() == io::ErrorKind::BrokenPipe {
                anyhow::Error::new(StdoutClosed)
            } else {
                anyhow::Error::new(err).context("cannot write to stdout")
            }
        })
}

/// Prints a JSON document (pretty) to stdout, made safe for a terminal by [`render::json_safe`].
///
/// # Errors
/// As [`emit`].
pub fn emit_json(doc: &impl serde::Serialize) -> anyhow::Result<()> {
    emit_owned(render::json_safe(serde_json::to_string_pretty(doc)?))
}

/// Render options for stdout: colour and width only when it is a terminal.
#[must_use]
pub fn stdout_opts() -> RenderOpts {
    let tty = io::stdout().is_terminal();
    RenderOpts {
        color: tty && colour_allowed(),
        width: if tty { stdout_width() } else { None },
    }
}

/// Whether stderr may carry colour (for notices printed there).
#[must_use]
pub fn stderr_color() -> bool {
    io::stderr().is_terminal() && colour_allowed()
}

/// Whether stderr is a terminal, i.e. a human is probably watching.
#[must_use]
pub fn stderr_is_terminal() -> bool {
    io::stderr().is_terminal()
}

/// Whether stdout is a terminal.
#[must_use]
pub fn stdout_is_terminal() -> bool {
    io::stdout().is_terminal()
}

/// Whether stdin is a terminal: someone could answer a prompt (ssh's, for `-H`).
#[must_use]
pub fn stdin_is_terminal() -> bool {
    io::stdin().is_terminal()
}

/// `NO_COLOR` (any non-empty value, per no-color.org) and `TERM=dumb` turn colour off.
fn colour_allowed() -> bool {
    let no_color = env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = env::var_os("TERM").is_some_and(|t| t == "dumb");
    !no_color && !dumb
}

/// A screen size for a tty that reports none: `COLUMNS` x `LINES`, else 80 x 24.
#[must_use]
pub fn fallback_size() -> (u16, u16) {
    let dim = |name: &str, default: u16| {
        env::var(name)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .filter(|&v: &u16| v > 0)
            .unwrap_or(default)
    };
    (dim("COLUMNS", 80), dim("LINES", 24))
}

/// The width of the terminal on stdout; `COLUMNS` when the ioctl cannot tell (some CI ptys).
fn stdout_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes one `winsize` into the pointer we pass; it is a plain C struct
    // for which all-zero is a valid value, and the fd is our own stdout.
    let ioctl_cols = unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &raw mut ws) == 0).then_some(ws.ws_col)
    };
    match ioctl_cols {
        Some(cols) if cols > 0 => Some(usize::from(cols)),
        _ => env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse().ok())
            .filter(|&c: &usize| c > 0),
    }
}
