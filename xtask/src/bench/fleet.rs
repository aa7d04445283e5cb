//! Many apps at once under one manager: the list of `sleep` apps the size-dependent metrics
//! start (status latency, scrape cost), and the bounded wait until the manager runs them all.
//! No measuring here: the metrics time what they want around these.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::bench::managers::{App, Manager, Restart};
use crate::bench::{Env, sys};

/// Longest wait for a manager to run all of its apps (PM2 needs a while for hundreds).
pub const RUNNING_LIMIT: Duration = Duration::from_secs(300);

/// `n` apps named `<prefix>0000`, ... that sleep and are never restarted.
pub fn sleep_apps(prefix: &str, n: usize, sleep: &Path) -> Vec<App> {
    (0..n)
        .map(|i| {
            App::new(
                &format!("{prefix}{i:04}"),
                vec![sleep.display().to_string(), "100000".to_owned()],
                Restart::Never,
            )
        })
        .collect()
}

/// Waits until the manager reports at least `n` running apps (each watched as a leftover of
/// `program`); fails after [`RUNNING_LIMIT`] saying how many ran.
pub fn wait_running(
    env: &mut Env<'_>,
    m: &mut dyn Manager,
    n: usize,
    program: &Path,
) -> Result<()> {
    let deadline = Instant::now() + RUNNING_LIMIT;
    loop {
        sys::check_interrupted()?;
        let pids = m.app_pids()?;
        for &pid in &pids {
            env.watch_pid(pid, program);
        }
        if pids.len() >= n {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{}: only {} of {n} apps running after {RUNNING_LIMIT:?}",
                m.kind().label(),
                pids.len()
            );
        }
        thread::sleep(Duration::from_millis(500));
    }
}
