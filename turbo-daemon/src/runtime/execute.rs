//! Action execution: what the supervisor asks for, done. Timers become tasks that send their
//! input back to the loop, signals and spawns go through the OS layer (spawns prepared by the
//! [`super::spawner`]), group waits end on the events of the last member's reaping (polled off
//! the loop only where no such event comes), and notifications fan out to the
//! books (usage counters, crash store, state file) and to the adapters as [`Notice`]s.
//!
//! Nothing here decides: every `if` is about whether an effect is possible, not whether it
//! should happen.

use std::{
    os::fd::OwnedFd,
    time::{Duration, Instant},
};

use tokio::{io::unix::AsyncFd, sync::mpsc::UnboundedSender};
use turbo_api::Health;

use super::{Internal, Notice, Runtime, crashes, probe, usage::Reading, view};
use crate::{
    events::WaitStatus,
    os::{proc, process as os},
    spec::AppSpec,
    supervisor::{Action, AppId, Exit, Input, Notification},
};

/// Descriptors one spawn opens in the daemon at most while it runs: both ends of two pipes,
/// the pidfd, `/dev/null` for stdin, `cgroup.procs`, the fork path's error pipe. A spawn needs
/// them free beyond [`crate::keeper::FD_RESERVE`], so it never eats into the clients' share.
const SPAWN_FDS: u64 = 10;

/// How long a crash record waits for the last stderr lines of its process.
const STDERR_GRACE: Duration = Duration::from_millis(500);

impl Runtime {
    /// Carries out `action`; returns the input it produces at once (a spawn's outcome).
    pub(super) fn execute(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::Spawn { app, spec } => Some(match self.spawn(app, &spec) {
                Ok(pid) => Input::Spawned { app, pid },
                Err(error) => Input::SpawnFailed { app, error },
            }),
            Action::SignalGroup { app, pid, signal } => {
                if let Err(e) = os::signal_group(pid, signal) {
                    tracing::warn!("signal {signal} to process group {pid} failed: {e}");
                }
                // descendants that left the group (setsid, double fork) get it too: the ones the
                // event source reported, and every process in the app's cgroup
                let mut others: Vec<u32> = self.procs.descendants(app).collect();
                others.extend(self.spawner.members(app));
                others.sort_unstable();
                others.dedup();
                for d in others.into_iter().filter(|&d| d != pid) {
                    let _ = os::signal_pid(d, signal);
                }
                None
            }
            Action::RunHook {
                app,
                hook,
                token,
                spec,
            } => {
                self.run_hook(app, hook, token, &spec);
                None
            }
            Action::SignalProcess { app, pid, signal } => {
                // the supervisor saw `pid` alive as this app's main process just now
                if let Err(e) = os::signal_pid(pid, signal) {
                    tracing::warn!(app, "signal {signal} to process {pid} failed: {e}");
                }
                None
            }
            Action::SetMemoryLimit { app, pid, bytes } => {
                if let Err(e) = self.source.set_memory_limit(pid, bytes) {
                    tracing::warn!(app, "cannot watch the memory of pid {pid}: {e}");
                }
                None
            }
            Action::SetCgroupLimits { app } => {
                if let Some(spec) = self.sup.app(app).map(|a| &a.spec)
                    && let Err(e) = self.spawner.set_limits(app, spec)
                {
                    tracing::warn!(app, "cannot change the cgroup limits of {}: {e}", spec.name);
                }
                None
            }
            Action::AwaitGroupGone { app, pgid } => {
                let cgroup = self.spawner.cgroup(app).filter(|c| c.contains()).cloned();
                let cgroup_alive = |c: &Option<crate::os::cgroup::AppCgroup>| {
                    c.as_ref()
                        .is_some_and(|c| c.members().into_iter().any(proc::pid_alive))
                };
                let census = &mut self.census;
                if !self
                    .procs
                    .tree_alive(app, pgid, |g| group_running(census, g), proc::pid_alive)
                    && !cgroup_alive(&cgroup)
                {
                    return Some(Input::GroupGone { app, pgid });
                }
                self.procs.await_group(app, pgid);
                // Events end the wait when the daemon reaps the last member: the leader's
                // reaper task, SIGCHLD for the orphans it adopted as subreaper, and the event
                // source's descendant exits each check again (check_group_waits). A leader
                // that is our child and not yet reaped (an eBPF exit notice comes first) needs
                // nothing more; otherwise (a leader adopted from a previous daemon, reaped by
                // whoever its parent is; a procfs tree with members left) a poll ends the wait.
                if os::is_subreaper() && proc::parent_pid(pgid) == Some(std::process::id()) {
                    return None;
                }
                let descendants: Vec<u32> = self.procs.descendants(app).collect();
                let tx = self.chan.internal_tx.clone();
                tokio::spawn(async move {
                    // short at first: usually only the not yet reaped leader is left
                    let mut pause = Duration::from_millis(2);
                    loop {
                        let group = os::group_alive(pgid);
                        let rest = descendants.iter().any(|&p| proc::pid_alive(p))
                            || cgroup_alive(&cgroup);
                        // a zombie leader that another process reaps (later): the loop's
                        // census tells whether anything of the group still runs
                        if !rest && (!group || proc::zombie_of_another(pgid)) {
                            let _ = tx.send(Internal::CheckGroup(app));
                            if !group {
                                break;
                            }
                        }
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(100));
                    }
                });
                None
            }
            Action::SetTimer {
                app,
                generation,
                at,
            } => {
                self.input_at(at, Input::Timer { app, generation });
                None
            }
            Action::Wake {
                app,
                kind,
                token,
                at,
            } => {
                self.input_at(at, Input::Wake { app, kind, token });
                None
            }
            Action::ExpireWait { ticket, at } => {
                self.input_at(at, Input::WaitExpired(ticket));
                None
            }
            Action::Probe {
                app,
                generation,
                check,
            } => {
                let spec = self.sup.app(app)?.spec.clone();
                let tx = self.chan.internal_tx.clone();
                tokio::spawn(async move {
                    let result = probe::run(&check, &spec).await;
                    let _ = tx.send(Internal::Input(Input::ProbeResult {
                        app,
                        generation,
                        result,
                    }));
                });
                None
            }
            Action::Reply { ticket, result } => {
                self.reply(ticket, result);
                None
            }
            Action::Notify(n) => {
                self.notify(n);
                None
            }
        }
    }

    /// Opens the log files of every spawn among `actions` in one exchange with the keeper
    /// before the first of them, so the spawns do not each wait for the keeper in turn.
    pub(super) fn prepare_spawns(&mut self, actions: &[Action]) {
        let batch: Vec<(&AppSpec, u32)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Spawn { app, spec } => {
                    Some((&**spec, self.sup.app(*app).map_or(0, |a| a.instance)))
                }
                _ => None,
            })
            .collect();
        if batch.len() > 1 {
            self.output.prepare_all(&batch);
        }
    }

    /// Sends `input` to the loop at `at`.
    fn input_at(&self, at: Instant, input: Input) {
        let tx = self.chan.internal_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let _ = tx.send(Internal::Input(input));
        });
    }

    fn spawn(&mut self, app: AppId, spec: &AppSpec) -> Result<u32, String> {
        let instance = self.sup.app(app).map_or(0, |a| a.instance);
        // a start fails whole, before its process exists, rather than leave one running
        // whose output nobody reads
        let reserve = crate::keeper::FD_RESERVE + SPAWN_FDS;
        if let Some(free) = crate::os::creds::short_of_fds(reserve) {
            // raised when first needed, not at start: until then apps inherit the daemon's
            // limit and start through posix_spawn, which cannot give them back a lower one
            let (before, _) = crate::os::creds::limit(crate::os::creds::Limit::Nofile);
            if let Ok((soft, _)) = crate::os::creds::raise_nofile()
                && soft > before
            {
                tracing::info!("raised the file descriptor limit to {soft} ({free} were free)");
            }
            if let Some(free) = crate::os::creds::short_of_fds(reserve) {
                return Err(crate::keeper::short_of_fds("the daemon", free));
            }
        }
        self.output.prepare(spec, instance)?;
        self.spawner
            .sync_watcher(app, self.sup.app(app), &self.chan.internal_tx);
        // the kernel watches the child from its first instruction (see EventSource::spawning)
        self.source.spawning(app);
        let child = self
            .spawner
            .spawn(app, instance, spec, &self.chan.internal_tx);
        self.source.spawned();
        let child = child?;
        let pid = child.pid;
        // handed to the keeper with the other spawns of this pass of `feed`, before the
        // supervisor hears of it (`Runtime::captured`)
        let source = crate::logs::Source { instance, pid };
        self.output.queue(source, spec, child.stdout, child.stderr);
        if let Err(e) = self.watch_process(app, pid, Some(child.pidfd)) {
            tracing::warn!(app = %spec.name, "cannot watch pid {pid}: {e}");
        }
        tracing::info!(app = %spec.name, pid, "started {}", spec.argv.join(" "));
        Ok(pid)
    }

    /// Arranges to hear about the exit of `pid`: the eBPF watch list when eBPF is active, and a
    /// pidfd (opened here for adopted processes) that a task reaps or waits on.
    pub(super) fn watch_process(
        &mut self,
        app: AppId,
        pid: u32,
        pidfd: Option<OwnedFd>,
    ) -> std::io::Result<()> {
        if let Err(e) = self.source.watch(pid, app) {
            // the pidfd still reports this exit; only the early notice is lost
            tracing::warn!("the event source cannot watch pid {pid}: {e}");
        }
        let pidfd = match pidfd {
            Some(fd) => fd,
            None => os::pidfd_open(pid)?,
        };
        // an adopted process is still our child after an upgrade's re-exec: reaped here, not by
        // the orphan reaper
        os::claim(pid);
        tokio::spawn(reap_when_exited(
            app,
            pid,
            pidfd,
            self.chan.internal_tx.clone(),
        ));
        Ok(())
    }

    /// The public snapshot of app `id`, unmeasured (for notices and command replies).
    pub(super) fn notice_status(&self, id: AppId) -> Option<turbo_api::AppStatus> {
        let app = self.sup.app(id)?;
        Some(view::status(
            app,
            Instant::now(),
            &self.clock,
            &self.paths.log_dir,
            None,
            self.usage.verdict(app),
        ))
    }

    fn send_changed(&self, id: AppId) {
        if let Some(st) = self.notice_status(id) {
            let _ = self.chan.notices.send(Notice::Changed(st));
        }
    }

    fn notify(&mut self, n: Notification) {
        match n {
            Notification::Added(id) => {
                if let Some(st) = self.notice_status(id) {
                    let _ = self.chan.notices.send(Notice::Added(st));
                }
                self.count_state(id);
                self.spawner
                    .sync_watcher(id, self.sup.app(id), &self.chan.internal_tx);
                self.mark_dirty();
            }
            Notification::HealthChanged(id) => {
                if let Some(a) = self.sup.app(id) {
                    let health = a.public_health();
                    match &a.health.last_error {
                        Some(e) if health == Health::Unhealthy => {
                            tracing::warn!(app = %a.spec.name, "unhealthy: {e}");
                        }
                        _ => tracing::info!(app = %a.spec.name, "{health}"),
                    }
                }
                self.send_changed(id);
            }
            Notification::StatusText(id) => self.send_changed(id),
            Notification::Ready(id) => {
                if let Some(a) = self.sup.app(id) {
                    tracing::info!(app = %a.spec.name, pid = a.pid().unwrap_or(0), "ready");
                }
            }
            Notification::StateChanged(id) => {
                self.send_changed(id);
                if let Some(a) = self.sup.app(id)
                    && a.spec.on_state.is_some()
                    && let Some(st) = self.notice_status(id)
                {
                    self.alerts.state_changed(id, &a.spec, &st);
                }
                self.count_state(id);
                // the pid and restart count are part of the saved state
                self.mark_dirty();
            }
            Notification::Crashed {
                app,
                pid,
                exit,
                restart_number,
            } => {
                self.usage.exited(app, exit.reason);
                self.record_crash(app, pid, &exit, restart_number);
            }
            Notification::MemoryWarning { app, rss, max } => {
                if let Some(a) = self.sup.app(app) {
                    let name = a.spec.name.clone();
                    tracing::warn!(
                        app = %name,
                        "memory warning: {rss} bytes resident, {}% of max_memory {max}",
                        rss.saturating_mul(100) / max.max(1)
                    );
                    let _ = self
                        .chan
                        .notices
                        .send(Notice::MemoryWarning(name, rss, max));
                }
            }
            Notification::Persist => self.mark_dirty(),
            Notification::Replaced { old, new } => {
                self.crashes.hand_over(old, new);
                self.usage.replaced(old, new);
                self.mark_dirty();
            }
            Notification::Removed {
                app,
                name,
                instance,
            } => {
                // the last instance gone: so is the port
                let last = !self.sup.apps().any(|a| a.spec.name == name);
                self.spawner.removed(app, &name, last);
                self.crashes.remove(app);
                self.alerts.remove(app);
                self.procs.remove_app(app);
                self.usage.remove(app);
                self.insight.remove(app);
                self.source.forget_app(app);
                let _ = self.chan.notices.send(Notice::Removed(name, instance, app));
                self.mark_dirty();
            }
        }
    }

    /// Books the state `id` is in now (restart counting).
    fn count_state(&mut self, id: AppId) {
        if let Some(a) = self.sup.app(id) {
            self.usage.count_state(a, Instant::now());
        }
    }

    /// Starts a crash record; it is completed (stderr tail) once the process's output has been
    /// read to the end, so the lines written just before dying are in it.
    fn record_crash(&mut self, app: AppId, pid: u32, exit: &Exit, restart_number: u32) {
        let facts = self.procs.crash_facts(pid);
        let memory_now = || proc::read_stat(pid).ok().map(|s| s.rss_bytes());
        let mut crash = crashes::assemble(
            pid,
            exit,
            restart_number,
            self.clock.ms(exit.at),
            facts,
            memory_now,
        );
        let tx = self.chan.internal_tx.clone();
        match self.output.take(pid) {
            Some(io) => {
                tokio::spawn(async move {
                    crash.stderr_tail = io.last_lines(pid, STDERR_GRACE).await;
                    let _ = tx.send(Internal::CrashReady(app, crash));
                });
            }
            None => {
                let _ = tx.send(Internal::CrashReady(app, crash));
            }
        }
    }

    /// A crash is complete: logged, stored, saved and announced.
    pub(super) fn crash_ready(&mut self, app: AppId, crash: crashes::Crash) {
        let Some(a) = self.sup.app(app) else {
            return; // deleted meanwhile
        };
        let name = a.spec.name.clone();
        // a clean exit is recorded like a crash (it was not asked for), but not called one
        if crash.status.code() == Some(0) {
            tracing::info!(
                app = %name,
                "exited: exit code 0 after {} ms (restart #{})",
                crash.uptime.as_millis(),
                crash.restart_number
            );
        } else {
            tracing::warn!(
                app = %name,
                "crashed: {} after {} ms (restart #{})",
                crash.describe_exit(),
                crash.uptime.as_millis(),
                crash.restart_number
            );
        }
        let record = view::crash_record(&crash);
        self.alerts.crashed(app, &a.spec, a.instance, &record);
        self.crashes.push(app, crash);
        let _ = self.chan.notices.send(Notice::Crashed(name, record));
        self.mark_dirty();
    }

    /// The status of app `id` with a reading of its tree (`how`).
    pub(super) fn measured_status(
        &mut self,
        id: AppId,
        how: Reading,
    ) -> Option<turbo_api::AppStatus> {
        let now = Instant::now();
        let measured = self.measure(id, now, how);
        let app = self.sup.app(id)?;
        let mut st = view::status(
            app,
            now,
            &self.clock,
            &self.paths.log_dir,
            measured,
            self.usage.verdict(app),
        );
        let stats = self
            .spawner
            .cgroup(id)
            .map(crate::os::cgroup::AppCgroup::stats);
        view::with_cgroup(&mut st, stats.as_ref());
        Some(st)
    }
}

/// Whether process group `pgid` has a member that runs: `kill(-pgid, 0)` finds it, and, when
/// its leader is a zombie another process must reap, `census` saw a running member.
pub(super) fn group_running(census: &mut super::procs::GroupCensus, pgid: u32) -> bool {
    census.running(
        pgid,
        Instant::now(),
        os::group_alive,
        proc::zombie_of_another,
        proc::running_groups,
    )
}

/// Waits for `pid` to exit, reaps it if it is our child, and reports the exit and, when its
/// process group is empty, that too (saving the group watcher a poll).
async fn reap_when_exited(app: AppId, pid: u32, pidfd: OwnedFd, tx: UnboundedSender<Internal>) {
    // SAFETY: the AsyncFd owns the pidfd, so the fd stays open and the same while registered.
    let afd = match unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
    {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("cannot watch pid {pid}: {e}");
            return;
        }
    };
    loop {
        let Ok(mut guard) = afd.readable().await else {
            return;
        };
        let (status, peak_bytes) = match os::reap_with_peak(afd.get_ref()) {
            Ok(reaped) => reaped,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                guard.clear_ready();
                continue;
            }
            // not our child (adopted after a daemon restart): it is gone, how is unknown here
            Err(e) if os::is_not_our_child(&e) => (WaitStatus::UNKNOWN, 0),
            Err(e) => {
                tracing::error!("reaping pid {pid} failed: {e}");
                return;
            }
        };
        // ru_maxrss no higher than the daemon's own high-water mark may be the daemon's (the
        // image before the exec, see os::proc::own_peak_bytes), give or take the kernel's
        // counter slack: then it says nothing
        let peak_bytes = if peak_bytes > proc::own_peak_bytes() + proc::rss_reading_slack() {
            peak_bytes
        } else {
            0
        };
        let _ = tx.send(Internal::Reaped {
            app,
            pid,
            status,
            peak_bytes,
            retried: false,
        });
        // the group may be empty now; the loop knows the descendants too
        let _ = tx.send(Internal::CheckGroup(app));
        return;
    }
}
