//! `turbo ping` and `turbo kill`: the daemon's own lifecycle.
//!
//! `kill` must never start a daemon just to stop it, and returns only once the daemon's socket has
//! stopped answering, so that `turbo kill && turbo start ...` gets a fresh daemon.

use anyhow::Result;

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
