//! `turbo stop|restart|delete|reset <name|id|all>`: one call each, then show what changed.
//!
//! Matching the target (name, id, `all`) is the daemon's job, so the CLI and busctl users see
//! the same rules and the same "not found" message.

use anyhow::Result;

use super::{daemon, print_table};
use crate::{connect::call_error, term};

#[derive(Clone, Copy, Debug)]
pub enum Verb {
    Stop,
    Restart,
    Delete,
    Reset,
}

pub async fn run(verb: Verb, target: &str) -> Result<()> {
    let daemon = daemon().await?;
    let proxy = &daemon.proxy;
    match verb {
        Verb::Stop => {
            let apps = proxy.stop_app(target).await.map_err(|e| call_error(&e))?;
            for app in apps.iter().filter(|a| killed_on_stop(a)) {
                eprintln!(
                    "note: {} did not exit on its stop signal within kill_timeout: it was killed with SIGKILL",
                    app.name
                );
            }
            print_table(&apps)
        }
        Verb::Restart => print_table(
            &proxy
                .restart_app(target)
                .await
                .map_err(|e| call_error(&e))?,
        ),
        Verb::Reset => print_table(&proxy.reset_app(target).await.map_err(|e| call_error(&e))?),
        Verb::Delete => {
            let names = proxy.delete_app(target).await.map_err(|e| call_error(&e))?;
            term::emit(&deleted_line(&names))
        }
    }
}

/// Whether the stop had to escalate to SIGKILL.
fn killed_on_stop(app: &turbo_api::AppStatus) -> bool {
    app.last_exit.reason == turbo_api::ExitReason::Manual.as_str() && app.last_exit.signal == 9
}

fn deleted_line(names: &[String]) -> String {
    if names.is_empty() {
        "nothing to delete".to_owned()
    } else {
        format!("deleted {}", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted() {
        assert_eq!(deleted_line(&["a".into(), "b".into()]), "deleted a, b");
        assert_eq!(deleted_line(&[]), "nothing to delete");
    }
}
