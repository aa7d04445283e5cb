//! Where the runtime sends an app process's output: to the log keeper (crate::keeper), which
//! outlives the daemon, or, when no keeper can be started, to an in-process capture
//! (crate::logs), as a fallback that loses lines on a daemon crash. This module must not
//! decide anything about apps; it only routes pipes, tails, flushes and counters.

use std::{
    collections::{HashMap, HashSet},
    os::fd::OwnedFd,
    path::PathBuf,
    time::Duration,
};

use crate::{
    keeper::{AppCounters, Keeper, Registration, TailAsker},
    logs,
    spec::{AppSpec, LogPolicy},
};

/// The routes of every app process's output. See the module docs.
pub(super) struct Outputs {
    log_dir: PathBuf,
    /// The log keeper, which reads the apps' output (none: this daemon reads it itself).
    keeper: Option<Keeper>,
    /// Log writers by app *name* (and instance, with `log.per_instance`), kept after a delete:
    /// leftovers of a deleted app may still write while a new app of the same name starts, and
    /// one owner per file keeps rotation safe.
    logs: HashMap<(String, Option<u32>), logs::AppLogs>,
    /// The output of each running process (for its crash record's stderr tail).
    procs: HashMap<u32, Output>,
    /// Pipes of processes spawned in this pass of the loop, handed over at its end or when
    /// they fill [`crate::keeper::pass_budget`].
    pending: Vec<Pending>,
}

/// The output of one running process, for its crash record.
pub(super) enum Output {
    /// Read by this daemon (no keeper).
    Local(logs::Capture),
    /// Read by the keeper.
    Kept(TailAsker),
}

impl Output {
    /// The last stderr lines of `pid`, once its output has ended or `grace` has passed.
    pub(super) async fn last_lines(self, pid: u32, grace: Duration) -> Vec<String> {
        match self {
            Self::Local(capture) => {
                let _ = tokio::time::timeout(grace, capture.done).await;
                capture.stderr_tail.lines()
            }
            Self::Kept(asker) => tokio::task::spawn_blocking(move || asker.tail(pid, grace))
                .await
                .unwrap_or_default(),
        }
    }
}

/// A new process's pipes, waiting to be handed over.
pub(super) struct Pending {
    source: logs::Source,
    spec: AppSpec,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// Resolves when the keeper died (never without one). A free function, so the main loop can
/// wait on it while its other branches borrow other fields.
pub(super) async fn keeper_lost(keeper: Option<&Keeper>) {
    match keeper {
        Some(k) => k.lost().await,
        None => std::future::pending().await,
    }
}

impl Outputs {
    /// Routes to nobody yet; app log files go to `log_dir`.
    pub(super) fn new(log_dir: PathBuf) -> Self {
        Self {
            log_dir,
            keeper: None,
            logs: HashMap::new(),
            procs: HashMap::new(),
            pending: Vec::new(),
        }
    }

    /// Sends app output through `keeper` from now on.
    pub(super) fn keep_with(&mut self, keeper: Keeper) {
        self.keeper = Some(keeper);
    }

    /// The keeper, if there is one (for [`keeper_lost`]).
    pub(super) const fn keeper(&self) -> Option<&Keeper> {
        self.keeper.as_ref()
    }

    /// Opens `spec`'s log files before its process starts (in the keeper, or here without one),
    /// so a file that cannot be opened (a planted symlink, a missing directory) fails the start.
    pub(super) fn prepare(&mut self, spec: &AppSpec, instance: u32) -> Result<(), String> {
        match &mut self.keeper {
            Some(keeper) => keeper.open_logs(&spec.name, instance, &spec.log),
            None => self
                .local_logs(spec, instance)
                .map(drop)
                .map_err(|e| e.to_string()),
        }
    }

    /// [`Self::prepare`] ahead for a batch of spawns (`spec`, instance): the keeper opens all
    /// their files in one exchange. Each spawn still calls `prepare`, which then costs nothing
    /// (or, for a file that could not be opened, asks again and fails its start).
    pub(super) fn prepare_all(&mut self, batch: &[(&AppSpec, u32)]) {
        if let Some(keeper) = &mut self.keeper {
            let apps: Vec<(&str, u32, &LogPolicy)> = batch
                .iter()
                .map(|(spec, instance)| (spec.name.as_str(), *instance, &spec.log))
                .collect();
            keeper.open_logs_all(&apps);
        }
    }

    /// Keeps a new process's pipes (`source`: its instance and pid) until [`Self::hand_over`].
    pub(super) fn queue(
        &mut self,
        source: logs::Source,
        spec: &AppSpec,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) {
        self.pending.push(Pending {
            source,
            spec: spec.clone(),
            stdout,
            stderr,
        });
    }

    /// Whether the pipes queued since the last [`Self::hand_over`] fill the daemon's share for
    /// them ([`crate::keeper::pass_budget`]): the caller hands them over before the next spawn.
    pub(super) fn pass_full(&self) -> bool {
        2 * self.pending.len() as u64 >= crate::keeper::pass_budget()
    }

    /// Hands the queued pipes to the keeper in one batch (or captures them here). Returns the
    /// pids whose output nobody can read (no descriptor left in the keeper nor here), with
    /// why: the caller ends those processes, whose start fails.
    pub(super) fn hand_over(&mut self) -> Vec<(u32, String)> {
        if let Some(k) = &mut self.keeper {
            k.settle();
        }
        if self.pending.is_empty() {
            return Vec::new();
        }
        let pending = std::mem::take(&mut self.pending);
        let mut failed = Vec::new();
        let mut local = Vec::new();
        match &mut self.keeper {
            Some(keeper) => {
                let mut specs = Vec::with_capacity(pending.len());
                let batch = pending
                    .into_iter()
                    .map(|p| {
                        let r = Registration {
                            source: p.source,
                            app: p.spec.name.clone(),
                            policy: p.spec.log.clone(),
                            stdout: p.stdout,
                            stderr: p.stderr,
                        };
                        specs.push((p.source, p.spec));
                        r
                    })
                    .collect();
                let results = keeper.register_all(batch);
                for ((source, spec), result) in specs.into_iter().zip(results) {
                    match result {
                        Ok(()) => {
                            let asker = keeper.tail_asker(source.pid);
                            self.procs.insert(source.pid, Output::Kept(asker));
                        }
                        Err((e, stdout, stderr)) => {
                            tracing::error!(
                                app = %spec.name,
                                "the log keeper cannot take the output of pid {} ({e}); the \
                                 daemon reads it itself, and a daemon crash will lose some of it",
                                source.pid
                            );
                            local.push(Pending {
                                source,
                                spec,
                                stdout,
                                stderr,
                            });
                        }
                    }
                }
            }
            None => local = pending,
        }
        for p in local {
            match self.capture_here(p.source, &p.spec, p.stdout, p.stderr) {
                Ok(out) => {
                    self.procs.insert(p.source.pid, out);
                }
                Err(e) => {
                    tracing::error!(
                        app = %p.spec.name,
                        "cannot capture the output of pid {}: {e}",
                        p.source.pid
                    );
                    failed.push((p.source.pid, format!("cannot capture its output: {e}")));
                }
            }
        }
        failed
    }

    /// Reads a new process's pipes in this daemon (no keeper, or it could not take them).
    fn capture_here(
        &mut self,
        source: logs::Source,
        spec: &AppSpec,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<Output, String> {
        let app_logs = self
            .local_logs(spec, source.instance)
            .map_err(|e| e.to_string())?;
        Ok(Output::Local(app_logs.capture(source, stdout, stderr)))
    }

    fn local_logs(&mut self, spec: &AppSpec, instance: u32) -> std::io::Result<logs::AppLogs> {
        let key = (spec.name.clone(), spec.log.per_instance.then_some(instance));
        if let Some(l) = self.logs.get(&key)
            && l.are(&self.log_dir, &spec.name, instance, &spec.log)
        {
            l.set_policy(&spec.log);
            return Ok(l.clone());
        }
        let l = logs::AppLogs::open(&self.log_dir, &spec.name, instance, &spec.log)?;
        self.logs.insert(key, l.clone());
        Ok(l)
    }

    /// Takes copies of the pipes the keeper reads for processes of a previous daemon, so the
    /// adopted ones get crash records with stderr tails again.
    pub(super) fn adopt_all(&mut self) -> HashSet<u32> {
        let Some(keeper) = &mut self.keeper else {
            return HashSet::new();
        };
        match keeper.adopt() {
            Ok(pids) => pids,
            Err(e) => {
                tracing::warn!("cannot take over the pipes the log keeper reads: {e}");
                HashSet::new()
            }
        }
    }

    /// Routes the output of adopted process `pid` again, when the keeper still reads it;
    /// `policy` is what a new keeper gets should this one die.
    pub(super) fn adopt(&mut self, pid: u32, policy: &LogPolicy) {
        let Some(keeper) = self.keeper.as_mut() else {
            return;
        };
        if keeper.adopted(pid, policy) {
            self.procs.insert(pid, Output::Kept(keeper.tail_asker(pid)));
        }
    }

    /// Lets go of the pipes among `kept` whose process was not adopted after all: the keeper
    /// reads them to the end.
    pub(super) fn release_unadopted(&mut self, kept: HashSet<u32>) {
        for pid in kept {
            if !self.procs.contains_key(&pid) {
                self.ended(pid);
            }
        }
    }

    /// The output of process `pid`, which crashed, for its stderr tail (the daemon's copy of
    /// its pipes goes).
    pub(super) fn take(&mut self, pid: u32) -> Option<Output> {
        let out = self.procs.remove(&pid)?;
        self.ended(pid);
        Some(out)
    }

    /// Process `pid` is gone and handled: drop what is routed for it (its output tasks end on
    /// their own).
    pub(super) fn gone(&mut self, pid: u32) {
        self.procs.remove(&pid);
        self.ended(pid);
    }

    /// The process is gone: drop the daemon's copy of its pipes (the keeper reads them to the end).
    fn ended(&mut self, pid: u32) {
        if let Some(keeper) = &mut self.keeper {
            keeper.forget(pid);
        }
    }

    /// Empties the log files of `spec`'s app (`instance`'s, with `log.per_instance`): the
    /// keeper's writers, and this daemon's own.
    pub(super) fn flush(&mut self, spec: &AppSpec, instance: u32) -> Result<(), String> {
        if let Some(keeper) = &mut self.keeper {
            keeper.flush(&spec.name, instance, &spec.log)?;
        }
        let key = (spec.name.clone(), spec.log.per_instance.then_some(instance));
        match self.logs.get(&key) {
            Some(l) => l.flush().map_err(|e| e.to_string()),
            None if self.keeper.is_none() => {
                // never started by this daemon: its files may still exist
                logs::AppLogs::open(&self.log_dir, &spec.name, instance, &spec.log)
                    .and_then(|l| l.flush())
                    .map_err(|e| e.to_string())
            }
            None => Ok(()),
        }
    }

    /// Log volume per app and stream (keeper and local writers together).
    pub(super) fn counters(&mut self) -> Vec<AppCounters> {
        let mut all = self.keeper.as_mut().map(Keeper::stats).unwrap_or_default();
        for ((app, _), l) in &self.logs {
            all.add_logs(app, l);
        }
        all.into_vec()
    }

    /// After [`keeper_lost`]: a new keeper gets every pipe the daemon holds.
    pub(super) fn replace_keeper(&mut self) {
        if let Some(k) = &mut self.keeper
            && let Err(e) = k.reconnect()
        {
            tracing::error!(
                "the log keeper died and no new one starts: {e}; app output waits in the pipes"
            );
        }
    }

    /// The daemon stops for good: the keeper exits once the last pipes have ended.
    pub(super) fn release_keeper(&mut self) {
        if let Some(k) = &mut self.keeper {
            k.bye();
        }
    }
}
