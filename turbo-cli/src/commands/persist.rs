//! `turbo save` and `turbo resurrect`: an explicit snapshot of the app list, PM2-style.
//!
//! The daemon already saves its state continuously; `save` writes a separate dump file that
//! `resurrect` reads back, e.g. after `turbo delete all`. This module only calls and prints.

use anyhow::Result;

use super::{daemon, print_table};
use crate::{connect::call_error, term};

/// `turbo save`.
pub async fn save() -> Result<()> {
    let d = daemon().await?;
    let path = d.proxy.save().await.map_err(|e| call_error(&e))?;
    term::emit(&format!("saved the app list to {path}"))
}

/// `turbo resurrect`.
pub async fn resurrect() -> Result<()> {
    let d = daemon().await?;
    let apps = d.proxy.resurrect().await.map_err(|e| call_error(&e))?;
    if apps.is_empty() {
        return term::emit("nothing to resurrect: every saved app is already managed");
    }
    print_table(&apps)
}
