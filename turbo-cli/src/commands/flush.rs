//! `turbo flush [name|id|all]`: empties the apps' log files, current and rotated.
//!
//! The daemon does it (`FlushLogs`), because it owns the files and has them open: truncating them
//! from here would race with its writes and its rotation. Matching the target is the daemon's job
//! too, as for stop/restart/delete.

use anyhow::Result;

use super::{daemon, target_error};
use crate::term;

pub async fn run(target: &str) -> Result<()> {
    let daemon = daemon().await?;
    match daemon.proxy.flush_logs(target).await {
        Ok(names) => term::emit(&flushed_line(&names)),
        Err(e) => Err(target_error(&daemon, target, &e).await),
    }
}

fn flushed_line(names: &[String]) -> String {
    if names.is_empty() {
        "no logs to flush".to_owned()
    } else {
        format!("flushed {}", crate::render::fold_names(names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushed() {
        assert_eq!(flushed_line(&["a".into(), "b".into()]), "flushed a, b");
        assert_eq!(
            flushed_line(&["w".into(), "w".into()]),
            "flushed w (2 instances)"
        );
        assert_eq!(flushed_line(&[]), "no logs to flush");
    }
}
