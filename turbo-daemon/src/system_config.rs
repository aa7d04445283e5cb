//! The daemon's own `turbo.yml` (`--config`, by default `/etc/turbo/turbo.yml` with `--system`):
//! applied when the daemon starts (apps added and updated, none removed) and again on SIGHUP
//! (`systemctl reload turbo-daemon`), then as `turbo apply --prune` would, so the file is the
//! source of truth.
//!
//! It acts as the daemon itself (`access::Caller::daemon`) through the same path as a D-Bus
//! `ApplyConfig`: the whole file is validated off the loop first (an invalid file changes
//! nothing and is reported in the log and the service status), then one `Request::Apply`. It must
//! not decide anything about the apps: the plan and the runtime do.

use std::path::{Path, PathBuf};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use turbo_api::AppChange;

use crate::{
    access::Caller,
    config::{self, Document, input::MAX_CONFIG_BYTES},
    dbus,
    host::notify,
    runtime::{Request, apply::ApplyRequest},
};

/// Applies `path` now, then again with prune on every SIGHUP, until the daemon ends.
pub async fn serve(path: PathBuf, requests: mpsc::UnboundedSender<Request>, path_env: String) {
    // installed before the first apply: a reload sent meanwhile is not lost (nor fatal)
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(
                "cannot catch SIGHUP: {e}; `systemctl reload` will not apply {}",
                path.display()
            );
            None
        }
    };
    apply_logged(&path, false, &requests, &path_env).await;
    let Some(hangups) = hangups.as_mut() else {
        return;
    };
    while hangups.recv().await.is_some() {
        notify::reloading(&format!("reloading: applying {}", path.display()));
        let summary = apply_logged(&path, true, &requests, &path_env).await;
        notify::ready(&summary);
    }
}

/// [`apply`] with its outcome in the log; returns the one-line summary for the service status.
async fn apply_logged(
    path: &Path,
    prune: bool,
    requests: &mpsc::UnboundedSender<Request>,
    path_env: &str,
) -> String {
    match apply(path, prune, requests, path_env).await {
        Ok(Some(plan)) => {
            let line = format!("applied {}: {}", path.display(), summary(&plan));
            tracing::info!("{line}");
            line
        }
        Ok(None) => {
            let line = format!("{} does not exist: no apps from it", path.display());
            tracing::info!("{line}");
            line
        }
        Err(e) => {
            let line = format!("{} was not applied, nothing changed: {e}", path.display());
            tracing::error!("{line}");
            line
        }
    }
}

/// Reads, validates and applies `path`; `None` when it does not exist.
async fn apply(
    path: &Path,
    prune: bool,
    requests: &mpsc::UnboundedSender<Request>,
    path_env: &str,
) -> Result<Option<Vec<AppChange>>, String> {
    let content = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
        Ok(m) if !m.is_file() => return Err("it is not a regular file".into()),
        Ok(m) if m.len() > MAX_CONFIG_BYTES as u64 => {
            return Err(format!("it is larger than {MAX_CONFIG_BYTES} bytes"));
        }
        Ok(_) => std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?,
    };
    let origin = path.display().to_string();
    let base_dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let path_env = path_env.to_owned();
    let specs = tokio::task::spawn_blocking(move || {
        let doc = Document {
            content: &content,
            origin: &origin,
            base_dir: &base_dir,
            path_env: &path_env,
            vars: &crate::config::NO_VARS,
        };
        config::file_specs_as(&doc, Caller::daemon(), true).map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| "internal error: the config check panicked".to_owned())??;
    let req = ApplyRequest {
        specs,
        prune,
        only: Vec::new(),
        dry_run: false,
        caller: Caller::daemon(),
    };
    dbus::ask(requests, |reply| Request::Apply(req, reply))
        .await
        .map(Some)
        .map_err(|e| crate::runtime::apply::message(&e))
}

/// `2 added, 1 changed, 1 removed, 3 unchanged`.
#[must_use]
pub fn summary(plan: &[AppChange]) -> String {
    let count = |actions: &[&str]| {
        plan.iter()
            .filter(|c| actions.contains(&c.action.as_str()))
            .count()
    };
    format!(
        "{} added, {} changed, {} removed, {} unchanged",
        count(&["add"]),
        count(&["update", "restart", "reload"]),
        count(&["remove"]),
        count(&["unchanged", "keep"])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_counts_by_kind() {
        let change = |action: &str| AppChange {
            name: "a".into(),
            action: action.into(),
            fields: Vec::new(),
        };
        let plan: Vec<AppChange> = ["add", "reload", "update", "remove", "keep", "unchanged"]
            .into_iter()
            .map(change)
            .collect();
        assert_eq!(summary(&plan), "1 added, 2 changed, 1 removed, 2 unchanged");
    }
}
