//! `turbo ping`, `turbo kill` and `turbo daemon upgrade`: the daemon's own lifecycle.
//!
//! `kill` must never start a daemon just to stop it, and returns only once the daemon's socket has
//! stopped answering, so that `turbo kill && turbo start ...` gets a fresh daemon. `upgrade`
//! neither: it returns once the re-executed daemon answers.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::daemon;
use crate::{connect, term};

pub async fn ping() -> Result<()> {
    let daemon = daemon().await?;
    term::emit(&format!("pong (turbo-daemon {})", daemon.version))
}

pub async fn kill() -> Result<()> {
    let Some(daemon) = connect::find_running().await? else {
        return term::emit("no daemon running");
    };
    match daemon.proxy.shutdown().await {
        Ok(()) => {}
        // it may exit before its reply makes it out; that is the outcome we asked for
        Err(err) if connect::is_disconnect(&err) => {}
        Err(err) => return Err(connect::call_error(&err)),
    }
    let endpoint = daemon.endpoint.clone();
    // close our connection first: a bus we hold open could otherwise look alive
    drop(daemon);
    connect::wait_until_gone(&endpoint).await?;
    term::emit("daemon stopped")
}

pub async fn upgrade() -> Result<()> {
    let Some(daemon) = connect::find_running().await? else {
        bail!("no daemon running: nothing to upgrade (any turbo command starts the installed one)");
    };
    let before = daemon
        .proxy
        .info()
        .await
        .map_err(|e| connect::call_error(&e))?;
    let asked = Instant::now();
    match daemon.proxy.upgrade().await {
        Ok(()) => {}
        // the exec may close the connection before the reply is read
        Err(err) if connect::is_disconnect(&err) => {}
        Err(err) => return Err(connect::call_error(&err)),
    }
    drop(daemon);
    // the bus name comes back once the new image is ready; the old one may answer a few more
    // milliseconds, so only an answer with a fresh uptime counts
    let deadline = Instant::now() + connect::READY_TIMEOUT;
    loop {
        if let Ok(Some(d)) = connect::find_running().await
            && let Ok(info) = d.proxy.info().await
            && u128::from(info.uptime_ms) <= asked.elapsed().as_millis()
        {
            let same = if info.pid == before.pid {
                "same pid"
            } else {
                "a NEW pid (it was restarted, not re-executed)"
            };
            return term::emit(&format!(
                "turbo-daemon upgraded in place: pid {} ({same}), version {} -> {}; apps kept running",
                info.pid, before.version, info.version
            ));
        }
        if Instant::now() > deadline {
            bail!(
                "the daemon did not come back within {} s of the upgrade; see {}/daemon.log \
                 (apps keep running; `turbo ping` starts a daemon that adopts them)",
                connect::READY_TIMEOUT.as_secs(),
                before.home
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
