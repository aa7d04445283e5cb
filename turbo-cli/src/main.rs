//! `turbo`: the command line client of TurboProcess.
//!
//! It talks to `turbo-daemon` over D-Bus through `turbo_api::ManagerProxy` only, and never links
//! the daemon's code. Errors are one line on stderr (`error: <message>`, with `; help: <hint>`
//! when there is something to try) with exit status 1; on a terminal the hint goes on a line of
//! its own, cargo-style (see `hint`). A closed stdout (`turbo status | head -1`) is not an error.

mod cli;
mod commands;
mod connect;
mod files;
mod hint;
mod paths;
mod render;
mod term;
mod trust;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&format!("cannot start the async runtime: {err}"), None),
    };
    let result = runtime.block_on(commands::run(cli));
    // do not wait for zbus's background tasks; everything we needed has been awaited
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.chain().any(|e| e.is::<term::StdoutClosed>()) => ExitCode::SUCCESS,
        Err(err) => fail(&format!("{err:#}"), hint::help_of(&err)),
    }
}

fn fail(message: &str, help: Option<&str>) -> ExitCode {
    // a message can quote what an app or another user wrote (a health check's output, a path)
    let help = help.map(|h| render::escape_controls(&one_line(h)).into_owned());
    eprintln!(
        "{}",
        hint::format_error(
            &render::escape_controls(&one_line(message)),
            help.as_deref(),
            term::stderr_is_terminal(),
            term::stderr_color()
        )
    );
    ExitCode::FAILURE
}

/// Scripts read the first line of stderr; a multi-line message (e.g. a config with several
/// problems) is joined with "; " so nothing is lost and the contract of one line holds.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_one_line() {
        assert_eq!(one_line("a"), "a");
        assert_eq!(
            one_line("turbo.yml: 2 problems\n  turbo.yml:3:5: bad\n\n  turbo.yml:9:1: worse\n"),
            "turbo.yml: 2 problems; turbo.yml:3:5: bad; turbo.yml:9:1: worse"
        );
    }
}
