//! One module per command; this one dispatches and holds what several commands share.
//!
//! Commands turn arguments into D-Bus calls and print the result through `render` and `term`.
//! They must not decide where the daemon is (that is `connect`) nor format tables themselves.

mod crashes;
mod daemon;
mod flush;
mod info;
mod logs;
mod manage;
mod persist;
mod start;
mod startup;
mod status;

use anyhow::Result;
use turbo_api::AppStatus;

use crate::{
    cli::{Cli, Cmd},
    connect, render, term,
};

/// Runs the parsed command line.
///
/// # Errors
/// Whatever the command reports; `main` prints it as one line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Start(args) => start::run(&args).await,
        Cmd::Stop(t) => manage::run(manage::Verb::Stop, &t.target).await,
        Cmd::Restart(t) => manage::run(manage::Verb::Restart, &t.target).await,
        Cmd::Delete(t) => manage::run(manage::Verb::Delete, &t.target).await,
        Cmd::Status(j) => status::run(j.json).await,
        Cmd::Info(j) => info::run(j.json).await,
        Cmd::Logs(args) => logs::run(&args).await,
        Cmd::Flush(t) => flush::run(&t.target).await,
        Cmd::Reset(t) => manage::run(manage::Verb::Reset, &t.target).await,
        Cmd::Crashes(a) => crashes::crashes(&a.name, a.json).await,
        Cmd::Describe(a) => crashes::describe(&a.name, a.json).await,
        Cmd::Save => persist::save().await,
        Cmd::Resurrect => persist::resurrect().await,
        Cmd::Ping => daemon::ping().await,
        Cmd::Kill => daemon::kill().await,
        Cmd::Startup(args) => startup::startup(&args),
        Cmd::Unstartup(args) => startup::unstartup(&args),
    }
}

/// Connects to the daemon, starting it if needed: every command but `kill` wants one.
async fn daemon() -> Result<connect::Daemon> {
    connect::connect(true).await
}

/// Prints the status table of `apps` to stdout.
fn print_table(apps: &[AppStatus]) -> Result<()> {
    term::emit(&render::render_status(apps, &term::stdout_opts()))
}
