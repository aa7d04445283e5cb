//! `--wait` of `turbo start` and `turbo restart`: one `WaitReady` call, which the daemon answers
//! once the apps are ready or with why they are not (the last health-check error), with a
//! spinner on stderr while a human watches. The deciding is the daemon's; this only waits.

use std::{io::Write as _, time::Duration};

use anyhow::{Result, anyhow};
use turbo_api::AppStatus;

use crate::{cli::WaitArgs, connect, term};

/// The timeout of `--wait`, or `None` without it.
///
/// # Errors
/// When `--wait-timeout` is not a duration.
pub fn timeout(args: &WaitArgs) -> Result<Option<Duration>> {
    if !args.wait {
        return Ok(None);
    }
    let t = turbo_api::parse_duration(&args.wait_timeout).ok_or_else(|| {
        anyhow!(
            "--wait-timeout '{}' is not a duration: use e.g. 30s, 2m or 500ms",
            args.wait_timeout
        )
    })?;
    Ok(Some(t))
}

/// Waits until the apps matching `target` are ready.
///
/// # Errors
/// The daemon's one-line reason when they are not ready in time, crash or error.
pub async fn ready(
    daemon: &connect::Daemon,
    target: &str,
    timeout: Duration,
) -> Result<Vec<AppStatus>> {
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let call = daemon.proxy.wait_ready(target, timeout_ms);
    let result = if term::stderr_is_terminal() {
        spin(call, &format!("waiting for {target} to be ready")).await
    } else {
        call.await
    };
    result.map_err(|e| connect::call_error(&e))
}

/// Runs `fut` while a spinner turns on stderr; the line is cleared afterwards.
async fn spin<T>(fut: impl Future<Output = T>, label: &str) -> T {
    const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let mut fut = std::pin::pin!(fut);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut i = 0;
    let out = loop {
        tokio::select! {
            out = &mut fut => break out,
            _ = tick.tick() => {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r{} {label}", FRAMES[i % FRAMES.len()]);
                let _ = err.flush();
                i += 1;
            }
        }
    };
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K");
    let _ = err.flush();
    out
}

/// `turbo __wait-ready TARGET...`: each target ready within one shared `timeout` (a fleet
/// rollout runs it on each host before going on).
///
/// # Errors
/// A bad duration, no daemon, or the daemon's reason why one target is not ready.
pub async fn ready_all(targets: &[String], timeout: &str) -> Result<()> {
    let total = turbo_api::parse_duration(timeout).ok_or_else(|| {
        anyhow!("--timeout '{timeout}' is not a duration: use e.g. 30s, 2m or 500ms")
    })?;
    let daemon = super::daemon().await?;
    let deadline = std::time::Instant::now() + total;
    for target in targets {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        ready(&daemon, target, left).await?;
    }
    Ok(())
}
