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
mod fleet;
mod hint;
mod paths;
mod remote;
mod render;
mod term;
mod trust;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let hosts = match fleet::hosts(&cli.fleet) {
        Ok(hosts) => hosts,
        Err(err) => return report(&err),
    };
    if !hosts.is_empty()
        && let Some(what) = local_only(&cli.command)
    {
        return report(&hint::Hinted::wrap(
            anyhow::anyhow!("turbo {what} acts on this machine, not over -H"),
            format!("run it on the host itself, e.g. `ssh HOST turbo {what}`"),
        ));
    }
    if hosts.len() > 1 {
        return match fleet::run(&cli, &hosts) {
            Ok(code) => ExitCode::from(code),
            Err(err) => report(&err),
        };
    }
    if let Some(target) = hosts.into_iter().next() {
        remote::set_current(target);
    }
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
        Err(err) => report(&err),
    }
}

/// The commands that never talk to a daemon and so have no meaning with `-H`.
fn local_only(cmd: &cli::Cmd) -> Option<&'static str> {
    use cli::Cmd;
    match cmd {
        Cmd::Startup(_) => Some("startup"),
        Cmd::Unstartup(_) => Some("unstartup"),
        Cmd::Completions(_) => Some("completions"),
        Cmd::Man(_) => Some("man"),
        Cmd::Import(_) => Some("import"),
        _ => None,
    }
}

/// Prints `err` (unless it is a closed stdout or a remote turbo's own failure) and returns the
/// exit code it stands for (docs/fleet.md lists them).
fn report(err: &anyhow::Error) -> ExitCode {
    if err.chain().any(|e| e.is::<term::StdoutClosed>()) {
        return ExitCode::SUCCESS;
    }
    if let Some(remote::Exited(code)) = err.chain().find_map(|e| e.downcast_ref::<remote::Exited>())
    {
        return ExitCode::from(*code);
    }
    let help = hint::help_of(err).or_else(|| {
        err.chain()
            .find_map(|e| e.downcast_ref::<remote::Coded>())
            .and_then(remote::Coded::help)
    });
    let printed = fail(&format!("{err:#}"), help);
    remote::exit_code_of(err).map_or(printed, |code| ExitCode::from(code as u8))
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
