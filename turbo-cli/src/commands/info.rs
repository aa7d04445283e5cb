//! `turbo info [--json]`: what the daemon says about itself (version, mode, event source, paths).

use anyhow::Result;

use super::daemon;
use crate::{connect::call_error, render, term};

pub async fn run(json: bool) -> Result<()> {
    let daemon = daemon().await?;
    let info = daemon.proxy.info().await.map_err(|e| call_error(&e))?;
    // a daemon older than the `MetricsUrl` property served plain HTTP only
    let url = match daemon.proxy.metrics_url().await {
        Ok(url) => url,
        Err(_) if info.metrics_address.is_empty() => String::new(),
        Err(_) => format!("http://{}/metrics", info.metrics_address),
    };
    if json {
        let mut doc = info.to_json();
        doc["metrics_url"] = url.into();
        term::emit_json(&doc)
    } else {
        term::emit(&render::render_info(&info, &url, &term::stdout_opts()))
    }
}
