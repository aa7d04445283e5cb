//! `turbo info [--json]`: what the daemon says about itself (version, mode, event source, paths).

use anyhow::Result;

use super::daemon;
use crate::{connect::call_error, render, term};

pub async fn run(json: bool) -> Result<()> {
    let daemon = daemon().await?;
    let info = daemon.proxy.info().await.map_err(|e| call_error(&e))?;
    if json {
        term::emit_json(&info.to_json())
    } else {
        term::emit(&render::render_info(&info, &term::stdout_opts()))
    }
}
