//! `turbo stop|restart|reload|delete|reset <name|id|@group|all>`, `turbo signal SIG <target>` and
//! `turbo scale <name> <n>`: one call each, then show what changed.
//!
//! Matching the target (name, id, `all`) is the daemon's job, so the CLI and busctl users see
//! the same rules and the same "not found" message.

use anyhow::Result;

use super::{daemon, print_table, target_error, wait};
use crate::{cli::WaitArgs, render, term};

#[derive(Clone, Copy, Debug)]
pub enum Verb {
    Stop,
    Restart,
    Delete,
    Reset,
    Reload,
}

pub async fn run(verb: Verb, target: &str) -> Result<()> {
    let daemon = daemon().await?;
    let proxy = &daemon.proxy;
    let daemon = &daemon;
    let refused = |e: zbus::Error| async move { Err(target_error(daemon, target, &e).await) };
    match verb {
        Verb::Stop => {
            let apps = match proxy.stop_app(target).await {
                Ok(apps) => apps,
                Err(e) => return refused(e).await,
            };
            let killed: Vec<String> = apps
                .iter()
                .filter(|a| killed_on_stop(a))
                .map(|a| a.name.clone())
                .collect();
            if !killed.is_empty() {
                eprintln!(
                    "note: {} did not exit on its stop signal within kill_timeout: killed with SIGKILL",
                    render::fold_names(&killed)
                );
            }
            print_table(&apps)
        }
        Verb::Restart => match proxy.restart_app(target).await {
            Ok(apps) => print_table(&apps),
            Err(e) => refused(e).await,
        },
        Verb::Reload => match proxy.reload_app(target).await {
            Ok(apps) => print_table(&apps),
            Err(e) => refused(e).await,
        },
        Verb::Reset => match proxy.reset_app(target).await {
            Ok(apps) => print_table(&apps),
            Err(e) => refused(e).await,
        },
        Verb::Delete => match proxy.delete_app(target).await {
            Ok(names) => term::emit(&deleted_line(&names)),
            Err(e) => refused(e).await,
        },
    }
}

/// `turbo scale <name> <n>`.
pub async fn scale(name: &str, count: u32) -> Result<()> {
    let daemon = daemon().await?;
    match daemon.proxy.scale_app(name, count).await {
        Ok(apps) => print_table(&apps),
        Err(e) => Err(target_error(&daemon, name, &e).await),
    }
}

/// `turbo signal SIGNAL TARGET`: the daemon reads the signal, so busctl callers get the same
/// names and messages.
pub async fn signal(signal: &str, target: &str) -> Result<()> {
    let daemon = daemon().await?;
    match daemon.proxy.signal_app(target, signal).await {
        Ok(apps) => print_table(&apps),
        Err(e) => Err(target_error(&daemon, target, &e).await),
    }
}

/// `turbo restart [--wait]`.
pub async fn restart(target: &str, wait_args: &WaitArgs) -> Result<()> {
    let Some(timeout) = wait::timeout(wait_args)? else {
        return run(Verb::Restart, target).await;
    };
    let daemon = daemon().await?;
    if let Err(e) = daemon.proxy.restart_app(target).await {
        return Err(target_error(&daemon, target, &e).await);
    }
    let apps = wait::ready(&daemon, target, timeout).await?;
    print_table(&apps)
}

/// Whether the stop had to escalate to SIGKILL.
fn killed_on_stop(app: &turbo_api::AppStatus) -> bool {
    app.last_exit.reason == turbo_api::ExitReason::Manual.as_str() && app.last_exit.signal == 9
}

fn deleted_line(names: &[String]) -> String {
    if names.is_empty() {
        "nothing to delete".to_owned()
    } else {
        format!("deleted {}", render::fold_names(names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted() {
        assert_eq!(deleted_line(&["a".into(), "b".into()]), "deleted a, b");
        let cw = vec!["cw".to_owned(); 3];
        assert_eq!(deleted_line(&cw), "deleted cw (3 instances)");
        assert_eq!(deleted_line(&[]), "nothing to delete");
    }
}
