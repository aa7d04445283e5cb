//! One module per command; this one dispatches and holds what several commands share.
//!
//! Commands turn arguments into D-Bus calls and print the result through `render` and `term`.
//! They must not decide where the daemon is (that is `connect`) nor format tables themselves.

mod apply;
mod completions;
mod crashes;
mod daemon;
mod events;
mod flush;
mod import;
mod info;
mod insight;
mod logs;
mod manage;
mod monit;
mod persist;
mod start;
mod startup;
mod status;
mod wait;

use anyhow::Result;
use turbo_api::AppStatus;

use crate::{
    cli::{Cli, Cmd, ConfigCmd, ImportFrom},
    connect,
    hint::{self, Hinted},
    render, term,
};

/// Runs the parsed command line.
///
/// # Errors
/// Whatever the command reports; `main` prints it as one line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Start(args) => start::run(&args).await,
        Cmd::Apply(args) => apply::apply(&args).await,
        Cmd::Config(ConfigCmd::Check(args)) => {
            apply::check(&args.file, args.profile.as_deref()).await
        }
        Cmd::Config(ConfigCmd::Show(args)) => apply::show(&args.name).await,
        Cmd::Stop(t) => manage::run(manage::Verb::Stop, &t.target).await,
        Cmd::Restart(r) if r.update_env => {
            apply::restart_update_env(&r.target, r.profile.as_deref(), &r.wait).await
        }
        Cmd::Restart(r) => manage::restart(&r.target, &r.wait).await,
        Cmd::Delete(t) => manage::run(manage::Verb::Delete, &t.target).await,
        Cmd::Reload(t) => manage::run(manage::Verb::Reload, &t.target).await,
        Cmd::Scale(a) => manage::scale(&a.name, a.count).await,
        Cmd::Signal(a) => manage::signal(&a.signal, &a.target).await,
        Cmd::Status(a) => status::run(&a).await,
        Cmd::Info(j) => info::run(j.json).await,
        Cmd::Logs(_) if crate::remote::current().is_some() => remote_turbo(false),
        Cmd::Logs(args) => logs::run(&args).await,
        Cmd::Flush(t) => flush::run(&t.target).await,
        Cmd::Reset(t) => manage::run(manage::Verb::Reset, &t.target).await,
        Cmd::Crashes(a) => crashes::crashes(&a.name, a.json).await,
        Cmd::Events(a) => events::events(&a.name, a.follow, a.json).await,
        Cmd::Describe(a) => crashes::describe(&a.name, a.json, a.show_env).await,
        Cmd::Save => persist::save().await,
        Cmd::Resurrect => persist::resurrect().await,
        Cmd::Ping => daemon::ping().await,
        Cmd::Kill => daemon::kill().await,
        Cmd::Daemon(crate::cli::DaemonCmd::Upgrade) => daemon::upgrade().await,
        Cmd::Startup(args) => startup::startup(&args),
        Cmd::Unstartup(args) => startup::unstartup(&args),
        Cmd::Monit if crate::remote::current().is_some() => remote_turbo(true),
        Cmd::Monit => monit::run().await,
        Cmd::WaitReady(a) => wait::ready_all(&a.targets, &a.timeout).await,
        Cmd::Completions(args) => completions::completions(args.shell),
        Cmd::Man(args) => completions::man(args.out_dir.as_deref()),
        Cmd::Import(ImportFrom::Pm2(args)) => import::pm2(&args),
        Cmd::CompleteApps => completions::complete_apps().await,
    }
}

/// `logs` and `monit` with `-H`: they read the daemon's log files, which are on its host, so
/// the remote host's own `turbo` runs them over SSH (docs/fleet.md).
fn remote_turbo(tty: bool) -> Result<()> {
    let Some(target) = crate::remote::current() else {
        anyhow::bail!("no remote host");
    };
    if tty && !(term::stdin_is_terminal() && term::stdout_is_terminal()) {
        anyhow::bail!("turbo -H HOST monit needs a terminal");
    }
    let args: Vec<String> = crate::fleet::forwarded_args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match crate::remote::run_remote_turbo(target, &args, tty)? {
        0 => Ok(()),
        code => Err(anyhow::Error::new(crate::remote::Exited(
            u8::try_from(code).unwrap_or(1),
        ))),
    }
}

/// Connects to the daemon, starting it if needed: every command but `kill` wants one.
async fn daemon() -> Result<connect::Daemon> {
    connect::connect(true).await
}

/// The daemon's refusal of a call about `target`; when no app matches it, with what to try: the
/// closest name (a likely typo), or the names there are.
async fn target_error(daemon: &connect::Daemon, target: &str, err: &zbus::Error) -> anyhow::Error {
    let error = connect::call_error(err);
    if !connect::is_not_found(err) {
        return error;
    }
    let names: Vec<String> = match daemon.proxy.list_apps().await {
        Ok(apps) => apps.into_iter().map(|a| a.name).collect(),
        Err(_) => return error,
    };
    Hinted::wrap(error, not_found_help(target, &names))
}

/// The apps of `@group` (one name each, in id order), for the commands that take one app at a
/// time (`describe`, `crashes`); `None` when `target` is not a group. A group without apps is
/// an error naming it, as the daemon's commands answer.
async fn group_members(daemon: &connect::Daemon, target: &str) -> Result<Option<Vec<String>>> {
    let Some(group) = target.strip_prefix('@') else {
        return Ok(None);
    };
    let apps = daemon
        .proxy
        .list_apps()
        .await
        .map_err(|e| connect::call_error(&e))?;
    let mut names: Vec<String> = Vec::new();
    for app in apps.iter().filter(|a| a.group == group) {
        if !names.contains(&app.name) {
            names.push(app.name.clone());
        }
    }
    if names.is_empty() {
        return Err(Hinted::wrap(
            anyhow::anyhow!("no app matches '@{group}'"),
            "`turbo status --sort group` shows the groups".to_owned(),
        ));
    }
    Ok(Some(names))
}

/// What to try when no app is called `target`.
fn not_found_help(target: &str, names: &[String]) -> String {
    const SHOWN: usize = 8;
    // the daemon lists one entry per instance; an app is named once
    let mut unique: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        if !unique.contains(name) {
            unique.push(name.clone());
        }
    }
    let names = unique.as_slice();
    if let Some(close) = hint::did_you_mean(target, names) {
        return format!("did you mean `{close}`?");
    }
    match names.len() {
        0 => "no app is managed yet; `turbo start <script>` starts one".to_owned(),
        n if n <= SHOWN => format!("the apps are: {}", names.join(", ")),
        n => format!(
            "the apps include {} and {} more; `turbo status` lists them",
            names[..SHOWN].join(", "),
            n - SHOWN
        ),
    }
}

/// Prints the status table of `apps` to stdout.
fn print_table(apps: &[AppStatus]) -> Result<()> {
    term::emit_owned(render::render_status(apps, &term::stdout_opts()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_hints() {
        let names: Vec<String> = ["web", "worker"].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(not_found_help("wbe", &names), "did you mean `web`?");
        assert_eq!(not_found_help("db", &names), "the apps are: web, worker");
        let instances: Vec<String> = ["cw", "cw", "web", "cw"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(not_found_help("db", &instances), "the apps are: cw, web");
        assert!(not_found_help("x", &[]).contains("turbo start"));
        let many: Vec<String> = (0..10).map(|i| format!("app{i}x")).collect();
        assert!(not_found_help("zzzzzz", &many).contains("and 2 more"));
    }
}
