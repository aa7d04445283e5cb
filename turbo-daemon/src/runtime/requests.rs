//! Requests from the adapters (D-Bus, metrics), each with its own typed reply channel, and their
//! translation into supervisor commands or immediate answers.
//!
//! What arrives here is already checked: arguments by the D-Bus adapter, and start requests
//! validated into specs there too (with the caller's credentials, off this loop), so the loop
//! never waits on a config file, an NSS lookup or a credentials thread. The translation itself
//! ([`command`], [`is_read_only`], [`owned_by`], [`api_error`]) is pure and unit-tested; the
//! answers are built by the view.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use turbo_api::{
    AppChange, AppConfigInfo, AppInsight, AppStatus, CrashRecord, CrashStats, DaemonInfo, Error,
};

use super::{
    Runtime,
    apply::{ApplyRequest, Chain},
    persist,
    usage::{LIST_MAX_AGE, PSS_MAX_AGE, Reading},
    view::{self, MetricsSnapshot},
};
use crate::{
    access::Caller,
    spec::AppSpec,
    storage,
    supervisor::{App, AppId, Command, CommandError, Reply as SupReply, Target, Ticket},
};

/// Where the answer of one request goes.
pub type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// `DescribeApp`'s answer: status (with PSS), configuration, crash records newest first.
pub type Described = (AppStatus, AppConfigInfo, Vec<CrashRecord>);

/// `GetCrashes`'s answer: stats and records newest first.
pub type CrashReport = (CrashStats, Vec<CrashRecord>);

/// `ListApps`'s answer: every app, and the state version it shows (an adapter may hand it to
/// other callers until the version moves on or it is [`LIST_MAX_AGE`] old).
#[derive(Debug)]
pub struct Listed {
    /// [`super::StateVersion::get`] while the list was built.
    pub version: u64,
    /// Every app, by id.
    pub apps: Vec<AppStatus>,
}

/// What a caller asks for, with where the typed answer goes.
#[derive(Debug)]
pub enum Request {
    /// The daemon's description.
    Info(Reply<DaemonInfo>),
    /// Everything a metrics scrape reports, measured now.
    Metrics(Reply<MetricsSnapshot>),
    /// Every app, measured now (or with a reading up to [`LIST_MAX_AGE`] old), with the
    /// [`super::StateVersion`] it was built at.
    List(Reply<Listed>),
    /// One app in detail (name, id or `name:N`).
    Describe(String, Reply<Described>),
    /// One app's crashes.
    Crashes(String, Reply<CrashReport>),
    /// What the kernel saw the matching apps do (name, id or `all`).
    Insight(String, Reply<Vec<AppInsight>>),
    /// The environment values of one app (authorised for root only).
    DescribeEnv(String, Reply<Vec<(String, String)>>),
    /// Empty the log files of the matching apps; answers their names.
    Flush(String, Reply<Vec<String>>),
    /// Write the dump file; answers its path.
    Save(Reply<String>),
    /// Stop and forget apps; answers their names once they are gone.
    Delete(String, Reply<Vec<String>>),
    /// A command on apps, answered with them once they have settled.
    Apps(AppsOp, Reply<Vec<AppStatus>>),
    /// Make the apps match a file (`turbo apply`); answered with the plan once carried out.
    Apply(ApplyRequest, Reply<Vec<AppChange>>),
    /// Stop everything and exit.
    Shutdown(Reply<()>),
    /// Save the state and end the loop for a re-exec; apps keep running.
    Upgrade(Reply<()>),
}

/// A command on apps ([`Request::Apps`]).
#[derive(Debug, Clone, PartialEq)]
pub enum AppsOp {
    /// Start these apps (validated specs); `exclusive`: an existing name is an error.
    Start {
        /// The apps.
        specs: Vec<AppSpec>,
        /// Refuse names that already exist (`StartApp`).
        exclusive: bool,
        /// Who asks: an existing app of the same name is redefined only if the caller could
        /// start it as the user it runs as ([`owned_by`]).
        caller: Caller,
    },
    /// `StartNamed`: existing apps that are not running, with or without their dependencies.
    StartNamed {
        /// Name, `name:N`, id or `all`.
        target: String,
        /// Leave stopped dependencies stopped (the app waits for them).
        no_deps: bool,
    },
    /// `StopApp`.
    Stop(String),
    /// `RestartApp`.
    Restart(String),
    /// `ResetApp`.
    Reset(String),
    /// `ReloadApp`.
    Reload(String),
    /// `ScaleApp`: name and instance count.
    Scale(String, u32),
    /// `SignalApp`: target and signal number.
    Signal(String, i32),
    /// `WaitReady`: answer once the apps are ready (or fail).
    WaitReady {
        /// Name, id or `all`.
        target: String,
        /// How long to wait.
        timeout: Duration,
    },
    /// `Resurrect`, for this caller: a non-root caller may only bring back its own apps.
    Resurrect(Caller),
}

impl Request {
    /// Answers `error` on whatever channel this request has.
    pub fn refuse(self, error: Error) {
        fn fail<T>(tx: Reply<T>, error: Error) {
            let _ = tx.send(Err(error));
        }
        match self {
            Self::Info(tx) => fail(tx, error),
            Self::Metrics(tx) => fail(tx, error),
            Self::List(tx) => fail(tx, error),
            Self::Apps(_, tx) => fail(tx, error),
            Self::Apply(_, tx) => fail(tx, error),
            Self::Describe(_, tx) => fail(tx, error),
            Self::Crashes(_, tx) => fail(tx, error),
            Self::DescribeEnv(_, tx) => fail(tx, error),
            Self::Insight(_, tx) => fail(tx, error),
            Self::Flush(_, tx) | Self::Delete(_, tx) => fail(tx, error),
            Self::Save(tx) => fail(tx, error),
            Self::Shutdown(tx) | Self::Upgrade(tx) => fail(tx, error),
        }
    }
}

/// Whether `req` only reads: answered even while the daemon shuts down.
#[must_use]
pub const fn is_read_only(req: &Request) -> bool {
    matches!(
        req,
        Request::Info(_)
            | Request::Metrics(_)
            | Request::List(_)
            | Request::Describe(..)
            | Request::Crashes(..)
            | Request::Insight(..)
    )
}

/// The supervisor command for `op`; `dump` gives the apps of the dump file that should run and
/// are not managed (only a resurrect asks).
///
/// # Errors
/// What `dump` returns, or [`owned_by`]'s refusal.
pub fn command(
    op: AppsOp,
    dump: impl FnOnce() -> Result<Vec<AppSpec>, Error>,
) -> Result<Command, Error> {
    Ok(match op {
        AppsOp::Start {
            specs, exclusive, ..
        } => Command::Start { specs, exclusive },
        AppsOp::StartNamed { target, no_deps } => Command::StartNamed {
            target: Target::parse(&target),
            no_deps,
        },
        AppsOp::Stop(t) => Command::Stop(Target::parse(&t)),
        AppsOp::Restart(t) => Command::Restart(Target::parse(&t)),
        AppsOp::Reset(t) => Command::Reset(Target::parse(&t)),
        AppsOp::Reload(t) => Command::Reload(Target::parse(&t)),
        AppsOp::Scale(name, count) => Command::Scale { name, count },
        AppsOp::Signal(t, signal) => Command::Signal {
            target: Target::parse(&t),
            signal,
        },
        AppsOp::WaitReady { target, timeout } => Command::WaitReady {
            target: Target::parse(&target),
            timeout,
        },
        AppsOp::Resurrect(caller) => Command::Start {
            specs: owned_by(caller, dump()?, Caller::daemon().uid, Purpose::Resurrect)?,
            exclusive: false,
        },
    })
}

/// Why [`owned_by`] is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Bringing apps of the dump file back.
    Resurrect,
    /// Replacing the spec of existing apps by a start call with their name.
    Redefine,
}

/// `specs` if `caller` may start them all: root and the daemon's own user (`daemon_uid`) may
/// start any; anyone else only apps that run as themselves. Bringing back another user's
/// deleted app, or giving another user's app a new definition (issue 15: an admin's
/// `StartConfig` silently made root's `victim` run as the admin), would be starting it on that
/// user's behalf.
///
/// # Errors
/// [`Error::AccessDenied`] naming the apps of other users.
pub fn owned_by(
    caller: Caller,
    specs: Vec<AppSpec>,
    daemon_uid: u32,
    purpose: Purpose,
) -> Result<Vec<AppSpec>, Error> {
    if caller.uid == 0 || caller.uid == daemon_uid {
        return Ok(specs);
    }
    let others: Vec<String> = specs
        .iter()
        .filter_map(|s| {
            let run_as = s.privileges.run_as.as_ref();
            let uid = run_as.map_or(daemon_uid, |r| r.uid);
            (uid != caller.uid).then(|| {
                let user = run_as.map_or_else(|| format!("uid {uid}"), |r| r.user.clone());
                format!("{} (as {user})", s.name)
            })
        })
        .collect();
    if others.is_empty() {
        return Ok(specs);
    }
    let (verb, what_to_do) = match purpose {
        Purpose::Resurrect => ("resurrect", "ask root to resurrect them"),
        Purpose::Redefine => (
            "redefine",
            "give your apps other names, or ask root to change them",
        ),
    };
    Err(Error::AccessDenied(format!(
        "uid {} may not {verb} apps that run as other users: {}; {what_to_do}",
        caller.uid,
        others.join(", ")
    )))
}

/// The D-Bus error for a refused command.
#[must_use]
pub fn api_error(e: CommandError) -> Error {
    let msg = e.to_string();
    match e {
        CommandError::NotFound(_) => Error::NotFound(msg),
        CommandError::AlreadyExists(_) => Error::AlreadyExists(msg),
        CommandError::Duplicate(_) | CommandError::Invalid(_) => Error::InvalidArgument(msg),
        CommandError::SpawnFailed(_) => Error::SpawnFailed(msg),
        CommandError::Busy(_)
        | CommandError::ReloadFailed(_)
        | CommandError::NotReady(_)
        | CommandError::NotRunning(_) => Error::Failed(msg),
    }
}

/// Who waits for the supervisor's reply to a command.
#[derive(Debug)]
pub enum Waiter {
    /// The apps the command touched.
    Apps(Reply<Vec<AppStatus>>),
    /// The names of the apps it deleted.
    Names(Reply<Vec<String>>),
    /// Only that it is done (shutdown).
    Done(Reply<()>),
    /// Nobody to answer (shutdown by signal, restore at start-up).
    Silent,
    /// The next command of an apply, or its answer.
    Chain(Box<Chain>),
}

impl Runtime {
    /// Answers `req` now, or submits its command and answers once the supervisor replies.
    pub(super) fn on_request(&mut self, req: Request) {
        if self.replies.shutting_down && !is_read_only(&req) {
            return req.refuse(Error::Failed("the daemon is shutting down".into()));
        }
        // everything but the list itself and `info` may change what a list shows: commands,
        // and the fresher readings a scrape or a describe takes (a list must never show older
        // figures than a caller already saw)
        if !matches!(req, Request::List(_) | Request::Info(_)) {
            self.version.bump();
        }
        match req {
            Request::Info(tx) => {
                let _ = tx.send(Ok(self.info()));
            }
            Request::Metrics(tx) => {
                let _ = tx.send(Ok(self.metrics_snapshot()));
            }
            Request::List(tx) => {
                let version = self.version.get();
                let ids: Vec<AppId> = self.sup.apps().map(|a| a.id).collect();
                let apps = ids
                    .into_iter()
                    .filter_map(|id| self.measured_status(id, Reading::Recent(LIST_MAX_AGE)))
                    .collect();
                let _ = tx.send(Ok(Listed { version, apps }));
            }
            Request::Describe(target, tx) => {
                let _ = tx.send(self.describe(&target));
            }
            Request::Crashes(target, tx) => {
                let report = self.one_app(&target).map(|id| {
                    let now_ms = self.clock.ms(Instant::now());
                    view::crash_report(self.crashes.book(id), now_ms)
                });
                let _ = tx.send(report);
            }
            Request::Insight(target, tx) => {
                let _ = tx.send(self.insight(&target));
            }
            Request::DescribeEnv(target, tx) => {
                let env = self.one_app(&target).map(|id| {
                    self.sup
                        .app(id)
                        .map(|a| a.spec.env.clone())
                        .unwrap_or_default()
                });
                let _ = tx.send(env);
            }
            Request::Flush(target, tx) => {
                let _ = tx.send(self.flush(&target));
            }
            Request::Save(tx) => {
                let _ = tx.send(self.save_dump());
            }
            Request::Delete(target, tx) => {
                self.submit(Command::Delete(Target::parse(&target)), Waiter::Names(tx));
            }
            Request::Apps(op, tx) => {
                if let AppsOp::Start { specs, caller, .. } = &op {
                    // one spec per name: instances share theirs
                    let mut existing: Vec<AppSpec> = Vec::new();
                    for app in self.sup.apps() {
                        if specs.iter().any(|s| s.name == app.spec.name)
                            && !existing.iter().any(|e| e.name == app.spec.name)
                        {
                            existing.push(app.spec.clone());
                        }
                    }
                    let daemon_uid = Caller::daemon().uid;
                    if let Err(e) = owned_by(*caller, existing, daemon_uid, Purpose::Redefine) {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
                let dump = || {
                    let managed: Vec<&str> =
                        self.sup.apps().map(|a| a.spec.name.as_str()).collect();
                    persist::resurrect_specs(self.paths.home.join("dump.json"), &managed)
                };
                match command(op, dump) {
                    Ok(command) => self.submit(command, Waiter::Apps(tx)),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            }
            Request::Apply(req, tx) => self.apply(req, tx),
            Request::Shutdown(tx) => self.begin_shutdown(Waiter::Done(tx)),
            Request::Upgrade(tx) => {
                // refused while the daemon can still say so: a failed exec would leave no daemon
                if let Err(e) = crate::host::upgrade::install_path() {
                    let _ = tx.send(Err(Error::Failed(format!(
                        "cannot upgrade: {e}; the daemon keeps running"
                    ))));
                    return;
                }
                // answered by `run` once the state is on disk
                self.replies.upgrade = Some(tx);
            }
        }
    }

    /// Delivers the supervisor's reply to the command with `ticket`.
    pub(super) fn reply(&mut self, ticket: Ticket, result: Result<SupReply, CommandError>) {
        let Some(waiter) = self.replies.waiters.remove(&ticket) else {
            return;
        };
        let mut result = result.map_err(api_error);
        if result.is_ok() && matches!(waiter, Waiter::Apps(_) | Waiter::Names(_)) {
            // the state file cannot be written: what the command did would be forgotten (or
            // done twice) after a daemon restart, so it must not look like a plain success
            if let Some(e) = self.unsaved() {
                result = Err(e);
            }
        }
        match waiter {
            Waiter::Apps(tx) => {
                let statuses = result.map(|reply| match reply {
                    SupReply::Apps(ids) => ids
                        .into_iter()
                        .filter_map(|id| self.notice_status(id))
                        .collect(),
                    SupReply::Deleted(_) => Vec::new(),
                });
                let _ = tx.send(statuses);
            }
            Waiter::Names(tx) => {
                let names = result.map(|reply| match reply {
                    SupReply::Deleted(names) => names,
                    SupReply::Apps(ids) => ids
                        .iter()
                        .filter_map(|id| Some(self.sup.app(*id)?.spec.name.clone()))
                        .collect(),
                });
                let _ = tx.send(names);
            }
            Waiter::Done(tx) => {
                let _ = tx.send(result.map(drop));
            }
            Waiter::Chain(chain) => self.step_done(*chain, result.map(drop)),
            Waiter::Silent => {}
        }
    }

    /// While state writes fail, tries once more now: the error a command then answers (it was
    /// carried out, but would not be remembered), or `None` when the file is up to date.
    fn unsaved(&mut self) -> Option<Error> {
        self.persist.failure()?;
        if self.save_now() {
            return None;
        }
        let why = self
            .persist
            .failure()
            .unwrap_or("the state file cannot be written");
        Some(Error::Failed(format!(
            "done, but not saved: {why}; the daemon would forget this (or start a copy) after \
             a restart: free space or make its home writable (`turbo info` shows the state)"
        )))
    }

    /// The one app `target` names: an id, a name (of one app, or the lowest-numbered of its
    /// instances) or `name:N`.
    fn one_app(&self, target: &str) -> Result<AppId, Error> {
        let ids = self
            .sup
            .resolve(&Target::parse(target))
            .map_err(api_error)?;
        let apps: Vec<&App> = ids.iter().filter_map(|id| self.sup.app(*id)).collect();
        match apps.as_slice() {
            [app] => Ok(app.id),
            [] => Err(Error::NotFound("no apps".into())),
            // the instances of one app: the lowest-numbered stands for them (`name:N` names
            // another)
            [first, rest @ ..] if rest.iter().all(|a| a.spec.name == first.spec.name) => Ok(apps
                .iter()
                .min_by_key(|a| (a.instance, a.id))
                .map_or(first.id, |a| a.id)),
            _ => Err(Error::InvalidArgument(format!(
                "'{target}' matches {} apps: name one",
                ids.len()
            ))),
        }
    }

    fn info(&self) -> DaemonInfo {
        let facts = view::Facts {
            bus_address: &self.facts.bus_address,
            mode: self.facts.mode,
            home: &self.paths.home,
            log_dir: &self.paths.log_dir,
            ebpf_setting: &self.facts.ebpf_setting,
            metrics: &self.facts.metrics,
        };
        view::info(
            &facts,
            &self.source,
            self.usage.ebpf_exit_events,
            self.clock.elapsed(),
            self.sup.apps().count(),
            self.persist.failure(),
        )
    }

    fn describe(&mut self, target: &str) -> Result<Described, Error> {
        let id = self.one_app(target)?;
        // describe is about one app: worth the PSS reading
        let status = self
            .measured_status(id, Reading::WithPss(Duration::ZERO))
            .ok_or_else(|| Error::NotFound("no apps".into()))?;
        let app = self
            .sup
            .app(id)
            .ok_or_else(|| Error::NotFound("no apps".into()))?;
        let config = view::config(app, self.spawner.cgroup(id));
        let (_, records) = view::crash_report(self.crashes.book(id), self.clock.ms(Instant::now()));
        Ok((status, config, records))
    }

    /// `GetInsight`: the figures of each matching app, or why there are none.
    fn insight(&mut self, target: &str) -> Result<Vec<AppInsight>, Error> {
        let ids = self
            .sup
            .resolve(&Target::parse(target))
            .map_err(api_error)?;
        let now = Instant::now();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(app) = self.sup.app(id) else {
                continue;
            };
            let mut report = AppInsight {
                id,
                name: app.spec.name.clone(),
                instance: app.instance,
                exec_allow: app.spec.exec_allow.clone(),
                ..AppInsight::default()
            };
            match self.source.runq(id) {
                Err(why) => report.unavailable = why,
                Ok(total) => {
                    let recent = self.insight.recent_runq(id, total, now);
                    (report.execs_total, report.execs_unexpected) = self.insight.exec_counts(id);
                    report.recent_execs = self.insight.recent_execs(id);
                    report.runq_buckets = total.buckets.to_vec();
                    report.runq_count = total.count;
                    report.runq_sum_ns = total.sum_ns;
                    report.involuntary_switches = total.involuntary;
                    report.runq_recent_count = recent.count;
                    report.runq_recent_mean_us = recent.mean_us;
                    report.runq_recent_p99_us = recent.p99_us;
                    report.recent_window_ms =
                        u64::try_from(recent.window.as_millis()).unwrap_or(u64::MAX);
                }
            }
            match self.source.net_unavailable() {
                Some(why) => report.net_unavailable = why,
                None => {
                    let net = self.insight.net_view(id);
                    report.listening = net.listening.iter().map(ToString::to_string).collect();
                    report.connects_total = net.connects;
                    report.accepts_total = net.accepts;
                    report.recent_peers = net.peers.into_iter().collect();
                }
            }
            report.events = self.insight.events(id);
            report.listen_drops = self
                .spawner
                .listen_drops(&report.name)
                .into_iter()
                .map(|(addr, drops)| turbo_api::ListenDrops { addr, drops })
                .collect();
            out.push(report);
        }
        Ok(out)
    }

    fn flush(&mut self, target: &str) -> Result<Vec<String>, Error> {
        let ids = self
            .sup
            .resolve(&Target::parse(target))
            .map_err(api_error)?;
        let mut names = Vec::new();
        for id in ids {
            let Some((spec, instance)) = self.sup.app(id).map(|a| (a.spec.clone(), a.instance))
            else {
                continue;
            };
            self.output.flush(&spec, instance).map_err(|e| {
                Error::Failed(format!("cannot flush the logs of {}: {e}", spec.name))
            })?;
            if !names.contains(&spec.name) {
                names.push(spec.name);
            }
        }
        Ok(names)
    }

    fn save_dump(&self) -> Result<String, Error> {
        let path = self.paths.home.join("dump.json");
        let backup = self.paths.home.join("dump.json.bak");
        let state = persist::snapshot(&self.sup, &self.crashes, &self.clock);
        storage::write_atomic(&path, &backup, &state)
            .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))?;
        Ok(path.display().to_string())
    }

    /// What a scrape reports, measured now (PSS included, reused up to [`PSS_MAX_AGE`]).
    fn metrics_snapshot(&mut self) -> MetricsSnapshot {
        let now = Instant::now();
        let mut seen = std::collections::HashSet::new();
        // during a reload a replacement shares its name and instance number with the instance
        // it replaces: one series per pair, the older app's, until it is gone
        let ids: Vec<AppId> = self
            .sup
            .apps()
            .filter(|app| seen.insert((app.spec.name.clone(), app.instance)))
            .map(|a| a.id)
            .collect();
        let mut apps = Vec::with_capacity(ids.len());
        let mut drops_named = std::collections::HashSet::new();
        for id in ids {
            let measured = self.measure(id, now, Reading::WithPss(PSS_MAX_AGE));
            let Some(app) = self.sup.app(id) else {
                continue;
            };
            let mut metrics = view::app_metrics(
                app,
                &self.clock,
                measured,
                self.usage.counts(id),
                self.usage.verdict(app),
                self.spawner
                    .cgroup(id)
                    .map(crate::os::cgroup::AppCgroup::stats),
            );
            metrics.insight = self.source.runq(id).ok().map(|runq| {
                let (execs, execs_unexpected) = self.insight.exec_counts(id);
                view::InsightMetrics {
                    runq,
                    execs,
                    execs_unexpected,
                }
            });
            metrics.net = self
                .source
                .net_unavailable()
                .is_none()
                .then(|| self.insight.net_view(id));
            // the sockets belong to the app name, shared by its instances: reported once
            if drops_named.insert(metrics.name.clone()) {
                metrics.listen_drops = self.spawner.listen_drops(&metrics.name);
            }
            apps.push(metrics);
        }
        let logs = self.output.counters();
        let mut snapshot =
            view::metrics_snapshot(&self.source, crate::os::proc::own_stats(), apps, logs);
        snapshot.notifications = self.alerts.outcomes();
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RunAs;

    fn spec(name: &str, uid: Option<u32>) -> AppSpec {
        let mut s = AppSpec::new(name, vec!["/bin/true".into()], "/".into());
        s.privileges.run_as = uid.map(|uid| RunAs {
            user: format!("user{uid}"),
            uid,
            group: String::new(),
            gid: uid,
            groups: Vec::new(),
            home: "/".into(),
            shell: "/bin/sh".into(),
        });
        s
    }

    fn no_dump() -> Result<Vec<AppSpec>, Error> {
        panic!("only a resurrect reads the dump")
    }

    #[test]
    fn targets_become_commands() {
        let cases = [
            (AppsOp::Stop("all".into()), Command::Stop(Target::All)),
            (
                AppsOp::Restart("@web".into()),
                Command::Restart(Target::Group("web".into())),
            ),
            (
                AppsOp::Signal("web:1".into(), 1),
                Command::Signal {
                    target: Target::Instance("web".into(), 1),
                    signal: 1,
                },
            ),
            (AppsOp::Restart("7".into()), Command::Restart(Target::Id(7))),
            (
                AppsOp::Reset("web".into()),
                Command::Reset(Target::Name("web".into())),
            ),
            (
                AppsOp::Reload("web:2".into()),
                Command::Reload(Target::Instance("web".into(), 2)),
            ),
            (
                AppsOp::Scale("web".into(), 3),
                Command::Scale {
                    name: "web".into(),
                    count: 3,
                },
            ),
            (
                AppsOp::WaitReady {
                    target: "all".into(),
                    timeout: Duration::from_secs(2),
                },
                Command::WaitReady {
                    target: Target::All,
                    timeout: Duration::from_secs(2),
                },
            ),
        ];
        for (op, want) in cases {
            assert_eq!(command(op.clone(), no_dump).ok(), Some(want), "{op:?}");
        }
        let start = AppsOp::Start {
            specs: vec![spec("a", None)],
            exclusive: true,
            caller: Caller::daemon(),
        };
        assert_eq!(
            command(start, no_dump).ok(),
            Some(Command::Start {
                specs: vec![spec("a", None)],
                exclusive: true
            })
        );
    }

    #[test]
    fn a_resurrect_starts_the_dump_for_whom_it_may() {
        let daemon = Caller::daemon();
        let dump = || Ok(vec![spec("mine", Some(1000)), spec("theirs", Some(1001))]);
        let Ok(Command::Start { specs, exclusive }) =
            command(AppsOp::Resurrect(Caller { uid: 0 }), dump)
        else {
            panic!("root resurrects everything");
        };
        assert_eq!((specs.len(), exclusive), (2, false));
        let e = command(AppsOp::Resurrect(daemon), || {
            Err(Error::NotFound("no dump file".into()))
        });
        assert!(matches!(e, Err(Error::NotFound(m)) if m == "no dump file"));
        // a scoped caller: only its own apps
        let mine = owned_by(
            Caller { uid: 1000 },
            vec![spec("mine", Some(1000))],
            0,
            Purpose::Resurrect,
        );
        assert_eq!(mine.ok().map(|s| s.len()), Some(1));
        let refused =
            owned_by(Caller { uid: 1000 }, dump().unwrap(), 0, Purpose::Resurrect).unwrap_err();
        let Error::AccessDenied(msg) = refused else {
            panic!("{refused:?}")
        };
        assert!(
            msg.contains("theirs (as user1001)") && !msg.contains("mine"),
            "{msg}"
        );
        // an app without `user:` runs as the daemon
        let plain = owned_by(
            Caller { uid: 1000 },
            vec![spec("plain", None)],
            0,
            Purpose::Redefine,
        )
        .unwrap_err();
        assert!(
            format!("{plain:?}")
                .contains("may not redefine apps that run as other users: plain (as uid 0)"),
            "{plain:?}"
        );
        assert!(
            owned_by(
                Caller { uid: 5 },
                vec![spec("p", None)],
                5,
                Purpose::Redefine
            )
            .is_ok()
        );
    }

    #[test]
    fn only_reads_pass_during_a_shutdown() {
        let (tx, _rx) = oneshot::channel();
        assert!(is_read_only(&Request::List(tx)));
        let (tx, _rx) = oneshot::channel();
        assert!(is_read_only(&Request::Describe("a".into(), tx)));
        let (tx, _rx) = oneshot::channel();
        assert!(!is_read_only(&Request::Flush("a".into(), tx)));
        let (tx, _rx) = oneshot::channel();
        assert!(!is_read_only(&Request::Apps(AppsOp::Stop("a".into()), tx)));
        let (tx, mut rx) = oneshot::channel();
        Request::Save(tx).refuse(Error::Failed("shutting down".into()));
        assert!(matches!(rx.try_recv(), Ok(Err(Error::Failed(m))) if m == "shutting down"));
    }

    #[test]
    fn command_errors_map_to_bus_errors() {
        assert!(matches!(
            api_error(CommandError::NotFound("x".into())),
            Error::NotFound(m) if m.contains("no app matches 'x'")
        ));
        assert!(matches!(
            api_error(CommandError::Duplicate("x".into())),
            Error::InvalidArgument(_)
        ));
        assert!(matches!(
            api_error(CommandError::NotReady("late".into())),
            Error::Failed(m) if m == "late"
        ));
    }
}
