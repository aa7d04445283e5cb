//! Persistence: the state file, written at most once per [`SAVE_INTERVAL`] after a change
//! (and always at shutdown and before an upgrade), the dump file of `turbo save` and
//! `turbo resurrect`, and restoring the apps of the state file at start-up (adopting the
//! processes that still run).
//!
//! The file format is `storage`'s; this module only decides what goes in and when.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use tokio::sync::mpsc::UnboundedSender;

use super::{Internal, Runtime, crashes::CrashStore, requests::Waiter, view::WallClock};
use crate::{
    os::proc,
    spec::AppSpec,
    storage::{self, SavedApp, SavedProcess, SavedState, StateFile},
    supervisor::{Command, Desired, Restored, Supervisor},
};

/// At most one state-file write per this interval.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// The state file and its debounce.
#[derive(Debug)]
pub struct Persist {
    file: StateFile,
    dirty: bool,
    save_scheduled: bool,
    last_save: Option<Instant>,
}

impl Persist {
    /// The state file at `path`, nothing to write yet.
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        Self {
            file: StateFile::new(path),
            dirty: false,
            save_scheduled: false,
            last_save: None,
        }
    }

    /// Something worth saving changed: a write is scheduled (sent as [`Internal::SaveDue`] on
    /// `tx`) unless one is already.
    pub fn mark_dirty(&mut self, tx: &UnboundedSender<Internal>) {
        self.dirty = true;
        if self.save_scheduled {
            return;
        }
        self.save_scheduled = true;
        let at = self
            .last_save
            .map_or_else(Instant::now, |t| t + SAVE_INTERVAL)
            .max(Instant::now());
        let tx = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let _ = tx.send(Internal::SaveDue);
        });
    }

    /// The scheduled write is due.
    pub const fn due(&mut self) {
        self.save_scheduled = false;
    }

    /// Marks the state changed without scheduling (it is written right after).
    pub const fn force(&mut self) {
        self.dirty = true;
    }

    /// Writes `state()` if anything changed; true when the file is up to date afterwards.
    pub fn save_now(&mut self, state: impl FnOnce() -> SavedState) -> bool {
        if !self.dirty {
            return true;
        }
        match self.file.save(&state()) {
            Ok(()) => {
                self.dirty = false;
                self.last_save = Some(Instant::now());
                true
            }
            // apps keep running; the next change retries
            Err(e) => {
                tracing::error!("cannot write {}: {e}", self.file.path().display());
                false
            }
        }
    }

    /// Reads the state file (see `StateFile::load`).
    ///
    /// # Errors
    /// When it exists but cannot be read.
    pub fn load(&self) -> std::io::Result<storage::Loaded> {
        self.file.load()
    }

    /// The state file's path.
    #[must_use]
    pub fn path(&self) -> &std::path::Path {
        self.file.path()
    }
}

/// What the state file says now: every app, its running process (pid and start time), its
/// crashes.
#[must_use]
pub fn snapshot(sup: &Supervisor, crashes: &CrashStore, clock: &WallClock) -> SavedState {
    SavedState {
        schema_version: storage::SCHEMA_VERSION,
        saved_at_ms: clock.ms(Instant::now()),
        apps: sup
            .apps()
            .map(|a| {
                let (total_crashes, crashes) = crashes.saved(a.id);
                SavedApp {
                    id: a.id,
                    instance: a.instance,
                    spec: a.spec.clone(),
                    desired: a.desired,
                    restarts: a.restarts,
                    process: a.pid().and_then(|pid| {
                        proc::start_ticks(pid).map(|start_ticks| SavedProcess { pid, start_ticks })
                    }),
                    total_crashes,
                    crashes,
                }
            })
            .collect(),
    }
}

/// The specs of the dump file's apps that should run and are not `managed` now (one per app:
/// the dump has one entry per instance, the spec carries the count).
///
/// # Errors
/// The dump cannot be read, or there is none.
pub fn resurrect_specs(dump: PathBuf, managed: &[&str]) -> Result<Vec<AppSpec>, turbo_api::Error> {
    let file = StateFile::new(dump.clone());
    let loaded = file
        .load()
        .map_err(|e| turbo_api::Error::Failed(e.to_string()))?;
    if let Some(w) = loaded.warning {
        return Err(turbo_api::Error::Failed(w));
    }
    if loaded.state.apps.is_empty() && !dump.exists() {
        return Err(turbo_api::Error::NotFound(format!(
            "no dump file at {}: `turbo save` writes one",
            dump.display()
        )));
    }
    Ok(loaded
        .state
        .apps
        .into_iter()
        .filter(|a| a.desired == Desired::Running && !managed.contains(&a.spec.name.as_str()))
        .map(|a| a.spec)
        .fold(Vec::<AppSpec>::new(), |mut specs, spec| {
            if !specs.iter().any(|s| s.name == spec.name) {
                specs.push(spec);
            }
            specs
        }))
}

impl Runtime {
    /// Loads the state file and restores its apps: adopts processes still running from before
    /// (same pid and start time), starts the others that should run.
    ///
    /// # Errors
    /// When the state file exists but cannot be read (not when it is corrupt: then the backup is
    /// used and a warning logged), or when the log or state directory is not private to the
    /// daemon's user (others could plant files there: `storage::check_private_dir`).
    pub fn restore(&mut self) -> std::io::Result<()> {
        storage::check_private_dir(&self.paths.log_dir)?;
        let loaded = self.persist.load()?;
        if let Some(w) = &loaded.warning {
            tracing::warn!("{w}");
        }
        let kept = self.output.adopt_all();
        let restored = self.restored_apps(loaded.state);
        // pipes of processes that are not adopted after all: the keeper reads them to the end
        self.output.release_unadopted(kept);
        let adopted_notify = restored
            .iter()
            .any(|r| r.running.is_some() && r.spec.readiness.wants_socket());
        if adopted_notify && let Err(e) = self.spawner.notify_socket(&self.chan.internal_tx) {
            // their watchdog pings will be missed: they get restarted, not lost
            tracing::warn!("{e}");
        }
        if !restored.is_empty() {
            tracing::info!(
                "restoring {} apps from {}",
                restored.len(),
                self.persist.path().display()
            );
            self.submit(Command::Restore(restored), Waiter::Silent);
        }
        Ok(())
    }

    fn restored_apps(&mut self, state: SavedState) -> Vec<Restored> {
        let now = Instant::now();
        let mut out = Vec::new();
        for app in state.apps {
            let running = app.process.and_then(|p| {
                let age = proc::process_age(p.pid, p.start_ticks)?;
                // adopt: exits are still seen (pidfd works for non-children; eBPF gives the
                // status); its output went on through the log keeper meanwhile
                if let Err(e) = self.watch_process(app.id, p.pid, None) {
                    tracing::warn!(app = %app.spec.name, "cannot adopt pid {}: {e}", p.pid);
                    return None;
                }
                self.output.adopt(p.pid, &app.spec.log);
                tracing::info!(app = %app.spec.name, pid = p.pid, "adopted the running process");
                self.spawner.adopt_sockets(&app.spec, p.pid);
                Some((p.pid, now.checked_sub(age).unwrap_or(now)))
            });
            if running.is_some() {
                // an adopted process already runs in its memory cgroup (same home, same
                // path): know it again, for `describe`, OOM counting and removal on delete
                if let Err(e) = self.spawner.app_cgroup(app.id, app.instance, &app.spec) {
                    tracing::warn!(app = %app.spec.name, "{e}");
                }
            }
            self.crashes.restore(app.id, app.total_crashes, app.crashes);
            out.push(Restored {
                id: app.id,
                instance: app.instance,
                spec: app.spec,
                desired: app.desired,
                restarts: app.restarts,
                running,
            });
        }
        out
    }
}
