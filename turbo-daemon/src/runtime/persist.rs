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

use super::{
    Internal, Runtime, crashes::CrashStore, marks, requests::Waiter, spawner, view::WallClock,
};
use crate::{
    os::{proc, process, users},
    spec::{AppSpec, RunAs},
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
    /// Why the last write failed; `None` once one succeeds.
    failure: Option<String>,
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
            failure: None,
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

    /// Writes `state()` if anything changed; true when the file is up to date afterwards. A
    /// failed write is logged (once per reason), kept for [`Self::failure`] and retried by
    /// the caller ([`Self::mark_dirty`]), at most once per [`SAVE_INTERVAL`].
    pub fn save_now(&mut self, state: impl FnOnce() -> SavedState) -> bool {
        if !self.dirty {
            return true;
        }
        self.last_save = Some(Instant::now());
        match self.file.save(&state()) {
            Ok(()) => {
                self.dirty = false;
                if self.failure.take().is_some() {
                    tracing::info!("{} is written again", self.file.path().display());
                }
                true
            }
            // apps keep running; commands fail until a write succeeds (`Runtime::reply`)
            Err(e) => {
                let why = format!("cannot write {}: {e}", self.file.path().display());
                if self.failure.as_ref() != Some(&why) {
                    tracing::error!("{why}");
                }
                self.failure = Some(why);
                false
            }
        }
    }

    /// Why the state file could not be written the last time, while that lasts.
    #[must_use]
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
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
                    spec: (&a.spec).into(),
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
        .map(|a| AppSpec::from(a.spec))
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
        let mut marked = marks::Found::new(proc::tagged(marks::VAR), &self.paths.home);
        let daemon_uid = process::euid();
        let mut out = Vec::new();
        for mut app in state.apps {
            let uid = app
                .spec
                .privileges
                .run_as
                .as_ref()
                .map_or(daemon_uid, |r| r.uid);
            let candidates = marked.take(&app.spec.name, app.instance, uid);
            let saved = app
                .process
                .filter(|p| proc::process_age(p.pid, p.start_ticks).is_some());
            let (process, copies) = choose(saved, candidates);
            if saved.is_none() && process.is_some() {
                // the state file is behind (a debounced or failed write, a backup): the
                // process found by its mark is the app's, and it was meant to run
                tracing::warn!(app = %app.spec.name, "found its running process by its mark");
                app.desired = Desired::Running;
            }
            stop_copies(&app.spec.name, app.spec.stop_signal, &copies);
            app.process = process;
            out.push(self.restored(app));
        }
        let mut next_id = out.iter().map(|r| r.id + 1).max().unwrap_or(1);
        for (mark, candidates) in marked.unclaimed() {
            let Some(spec) = rebuilt_spec(&mark, &candidates, daemon_uid) else {
                continue;
            };
            let id = if out.iter().any(|r| r.id == mark.id) {
                next_id += 1;
                next_id - 1
            } else {
                mark.id
            };
            next_id = next_id.max(id + 1);
            tracing::warn!(
                app = %mark.name,
                "the state file does not know this app; adopted its running process from its mark \
                 (its policies are the defaults now: `turbo start` its config again to restore them)"
            );
            let (process, copies) = choose(None, candidates);
            stop_copies(&spec.name, spec.stop_signal, &copies);
            out.push(self.restored(SavedApp {
                id,
                instance: mark.instance,
                spec: (&spec).into(),
                desired: Desired::Running,
                restarts: 0,
                process,
                total_crashes: 0,
                crashes: Vec::new(),
            }));
        }
        out
    }

    /// Restores one app of the state file: adopts its process when it still runs (the caller
    /// checked pid and start time).
    fn restored(&mut self, app: SavedApp) -> Restored {
        let spec = AppSpec::from(app.spec);
        let now = Instant::now();
        let running = app.process.and_then(|p| {
            let age = proc::process_age(p.pid, p.start_ticks)?;
            // adopt: exits are still seen (pidfd works for non-children; eBPF gives the
            // status); its output went on through the log keeper meanwhile
            if let Err(e) = self.watch_process(app.id, p.pid, None) {
                tracing::warn!(app = %spec.name, "cannot adopt pid {}: {e}", p.pid);
                return None;
            }
            self.output.adopt(p.pid, &spec.log);
            tracing::info!(app = %spec.name, pid = p.pid, "adopted the running process");
            self.spawner.adopt_sockets(&spec, p.pid);
            Some((p.pid, now.checked_sub(age).unwrap_or(now)))
        });
        if running.is_some() {
            // an adopted process already runs in its memory cgroup (same home, same
            // path): know it again, for `describe`, OOM counting and removal on delete
            if let Err(e) = self.spawner.app_cgroup(app.id, app.instance, &spec) {
                tracing::warn!(app = %spec.name, "{e}");
            }
        }
        self.crashes.restore(app.id, app.total_crashes, app.crashes);
        Restored {
            id: app.id,
            instance: app.instance,
            spec,
            desired: app.desired,
            restarts: app.restarts,
            running,
        }
    }
}

/// The process an app adopts: the state file's own when it still runs, else the newest marked
/// one; and the marked copies beside it, which must not run on unmanaged.
fn choose(
    saved: Option<SavedProcess>,
    candidates: Vec<proc::Tagged>,
) -> (Option<SavedProcess>, Vec<proc::Tagged>) {
    let mut copies: Vec<proc::Tagged> = candidates
        .into_iter()
        .filter(|t| saved.is_none_or(|s| s.pid != t.pid))
        .collect();
    let process = saved.or_else(|| {
        (!copies.is_empty()).then(|| {
            let t = copies.remove(0);
            SavedProcess {
                pid: t.pid,
                start_ticks: t.start_ticks,
            }
        })
    });
    (process, copies)
}

/// Stops the process groups of `copies` of an app (a second process of one instance, from a
/// daemon killed between a spawn and the write that would have named it).
fn stop_copies(name: &str, stop_signal: i32, copies: &[proc::Tagged]) {
    for c in copies {
        tracing::warn!(app = %name, pid = c.pid, "stopping a second process of the same instance");
        if let Err(e) = process::signal_group(c.pid, stop_signal) {
            tracing::warn!(app = %name, "cannot stop pid {}: {e}", c.pid);
        }
    }
}

/// A spec for a marked process the state file does not know, from what it runs (program,
/// arguments, directory, environment) and as whom; the policies are the defaults. `None`
/// (and the process is left alone) when it cannot be read or its user not looked up.
fn rebuilt_spec(
    mark: &marks::Mark,
    candidates: &[proc::Tagged],
    daemon_uid: u32,
) -> Option<AppSpec> {
    let newest = candidates.first()?;
    let image = proc::image(newest.pid)?;
    let mut argv = image.argv;
    if !argv.first().is_some_and(|a| a.starts_with('/')) {
        *argv.first_mut()? = image.exe;
    }
    let mut spec = AppSpec::new(mark.name.clone(), argv, image.cwd);
    spec.env = image
        .env
        .into_iter()
        .filter(|(k, _)| {
            !spawner::SET_PER_PROCESS.contains(&k.as_str()) && !k.starts_with("LISTEN_")
        })
        .collect();
    spec.instances = mark.instance + 1;
    if newest.uid != daemon_uid {
        let run_as = run_as_uid(newest.uid);
        if run_as.is_none() {
            tracing::warn!(app = %mark.name, pid = newest.pid, "cannot look up uid {}: its process is left alone", newest.uid);
        }
        spec.privileges.run_as = Some(run_as?);
    }
    Some(spec)
}

/// The identity of user `uid` as a spec names it: its passwd entry, primary group and groups.
fn run_as_uid(uid: u32) -> Option<RunAs> {
    let user = users::user_by_uid(uid).ok()??;
    let group_name = |gid: u32| {
        users::group_by_gid(gid)
            .ok()
            .flatten()
            .map_or_else(|| gid.to_string(), |g| g.name)
    };
    let groups = users::group_list(&user.name, user.gid)
        .ok()?
        .into_iter()
        .map(|gid| (group_name(gid), gid))
        .collect();
    Some(RunAs {
        group: group_name(user.gid),
        user: user.name,
        uid,
        gid: user.gid,
        groups,
        home: user.home,
        shell: user.shell,
    })
}
