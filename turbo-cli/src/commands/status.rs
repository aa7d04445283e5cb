//! `turbo status|ls|list [--json]`: every app, as a table or as the JSON array of DESIGN §6.

use anyhow::Result;
use serde_json::Value as Json;

use super::{daemon, print_table};
use crate::{connect::call_error, term};

pub async fn run(json: bool) -> Result<()> {
    let daemon = daemon().await?;
    let apps = daemon.proxy.list_apps().await.map_err(|e| call_error(&e))?;
    // an exporter that was asked for but could not listen is worth a line (off on purpose is not)
    if let Ok(why) = daemon.proxy.metrics_off_reason().await
        && !why.is_empty()
        && why != "--metrics-listen off"
    {
        eprintln!("warning: the metrics exporter is off: {why}");
    }
    if json {
        let array = Json::Array(apps.iter().map(turbo_api::AppStatus::to_json).collect());
        term::emit_json(&array)
    } else {
        print_table(&apps)
    }
}
