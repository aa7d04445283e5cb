//! Spawn preparation: everything an app's process needs besides its spec, turned into a
//! [`Plan`] that [`crate::os::spawn`] executes. The environment (the daemon's allowed
//! variables, the user's identity, `env_file`/`env`, instance numbers, `NOTIFY_SOCKET`), the
//! identity and limits, the `listen:` sockets the daemon holds, the app's cgroup (a memory
//! limit with `memory_enforce: cgroup`, and containment of every descendant when the daemon
//! runs without eBPF), and the file watcher of watch mode, which follows each spawn.
//!
//! It owns those resources per app (sockets by app name, cgroups and watchers by app id) and
//! decides nothing about when to spawn.

use std::{
    collections::HashMap,
    ffi::OsString,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
    sync::OnceLock,
};

use tokio::{io::unix::AsyncFd, sync::mpsc::UnboundedSender};

use super::{Internal, listen::Listeners, marks, watch};
use crate::{
    os::{
        cgroup::{AppCgroup, CgroupLimits, CgroupRequest, Hierarchies},
        net,
        spawn::{self, Child, Limits, Plan, RunAs},
        users,
    },
    spec::{
        AppSpec, MemoryEnforce,
        environment::{self, Identity},
    },
    supervisor::{App, AppId},
};

/// The variables the daemon sets for each process of an app (besides `LISTEN_*`), not part of
/// its spec.
pub const SET_PER_PROCESS: [&str; 6] = [
    "TURBO_INSTANCE",
    "TURBO_INSTANCES",
    "NODE_APP_INSTANCE",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    marks::VAR,
];

/// The plan of one process of `spec`: its environment from `daemon_env` (filtered, see
/// [`environment::child_env`]) with `extra_env` set last, its identity and limits, and the
/// sockets and cgroup it gets.
#[must_use]
pub fn plan<'a>(
    spec: &AppSpec,
    daemon_env: impl IntoIterator<Item = (OsString, OsString)>,
    extra_env: &[(String, String)],
    listen: Vec<BorrowedFd<'a>>,
    cgroup_procs: Vec<BorrowedFd<'a>>,
) -> Plan<'a> {
    let own = own_user();
    let identity = match (&spec.privileges.run_as, own) {
        (Some(r), _) => Some(Identity {
            user: &r.user,
            home: &r.home,
            shell: &r.shell,
        }),
        (None, Some(u)) => Some(Identity {
            user: &u.name,
            home: &u.home,
            shell: &u.shell,
        }),
        (None, None) => None,
    };
    let mut env = environment::child_env(daemon_env, identity, &spec.cwd, &spec.env);
    // the daemon's own variables are the only ones of their names (an app's `env` may not
    // set its mark or instance number)
    env.retain(|(k, _)| !extra_env.iter().any(|(e, _)| k == e.as_str()));
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    );
    let limits = &spec.privileges.limits;
    let pair = |l: Option<crate::spec::Rlimit>| l.map(|l| (l.soft, l.hard));
    Plan {
        argv: spec.argv.clone(),
        env,
        cwd: spec.cwd.clone(),
        limits: Limits {
            nofile: pair(limits.nofile),
            nproc: pair(limits.nproc),
            core: pair(limits.core),
            nice: limits.nice,
            oom_score_adj: limits.oom_score_adj,
            umask: limits.umask,
        },
        run_as: spec.privileges.run_as.as_ref().map(|r| RunAs {
            user: r.user.clone(),
            uid: r.uid,
            gid: r.gid,
            groups: r.groups.iter().map(|(_, gid)| *gid).collect(),
        }),
        listen,
        listen_name: spec.name.clone(),
        cgroup_procs,
        stdin: None,
    }
}

/// Starts `argv` as a process of `spec` would run (its user, limits, cwd and environment) with
/// `extra_env` set last and `stdin` as its stdin: hooks, health-check and notification
/// commands.
///
/// # Errors
/// The spawn error, naming the program.
pub fn spawn_aside(
    spec: &AppSpec,
    argv: &[String],
    extra_env: &[(String, String)],
    stdin: Option<std::os::fd::OwnedFd>,
) -> std::io::Result<Child> {
    let mut plan = plan(spec, std::env::vars_os(), extra_env, Vec::new(), Vec::new());
    plan.argv = argv.to_vec();
    plan.stdin = stdin;
    spawn::spawn(&plan)
}

/// The daemon's own passwd entry, looked up once: `HOME`, `USER`, `LOGNAME`, `SHELL` of apps
/// without `user:`. `None` when the daemon's uid has no entry (then the daemon's own variables
/// are passed on).
fn own_user() -> Option<&'static users::User> {
    static OWN: OnceLock<Option<users::User>> = OnceLock::new();
    OWN.get_or_init(|| {
        users::user_by_uid(crate::os::process::euid())
            .ok()
            .flatten()
    })
    .as_ref()
}

/// What the daemon holds for its apps' processes. See the module docs.
#[derive(Debug)]
pub struct Spawner {
    home: PathBuf,
    log_dir: PathBuf,
    /// Listening sockets of apps with `listen:`.
    listeners: Listeners,
    /// File watchers of the apps with `watch:`.
    watchers: HashMap<AppId, watch::AppWatcher>,
    /// Watchers being set up on their own thread, by the spec they were asked for: a watcher
    /// that arrives for another spec (the app changed meanwhile) is dropped.
    pending_watchers: HashMap<AppId, crate::spec::WatchSpec>,
    /// The `NOTIFY_SOCKET` of apps with `ready: notify` or `watchdog` (`@name`), bound when
    /// the first such app starts.
    notify_socket: Option<String>,
    /// Cgroups of apps, and the OOM kills counted in each when last looked at.
    cgroups: HashMap<AppId, (AppCgroup, u64)>,
    /// Whether every app gets a cgroup that contains its processes (the procfs fallback,
    /// where nothing else follows a descendant that left the process group).
    contain: bool,
    /// Why containment is off although asked for (said once).
    contain_failed: bool,
}

impl Spawner {
    /// Nothing held yet; `home` gets the notify socket and names the cgroup directory, `home`
    /// and `log_dir` are never watched.
    #[must_use]
    pub fn new(home: &Path, log_dir: &Path) -> Self {
        Self {
            contain: false,
            contain_failed: false,
            home: home.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            listeners: Listeners::default(),
            watchers: HashMap::new(),
            pending_watchers: HashMap::new(),
            notify_socket: None,
            cgroups: HashMap::new(),
        }
    }

    /// Starts a process of app `app` (instance `instance`) running `spec`.
    ///
    /// # Errors
    /// One line: what could not be prepared (socket, cgroup, notify socket) or the spawn error.
    pub fn spawn(
        &mut self,
        app: AppId,
        instance: u32,
        spec: &AppSpec,
        tx: &UnboundedSender<Internal>,
    ) -> Result<Child, String> {
        let mut extra_env: Vec<(String, String)> = [
            ("TURBO_INSTANCE", instance),
            ("TURBO_INSTANCES", spec.instances),
            // what PM2 sets, so apps written for it find their number
            ("NODE_APP_INSTANCE", instance),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_string()))
        .collect();
        // so that a daemon whose state file is behind finds this process (runtime::marks)
        extra_env.push((
            marks::VAR.into(),
            marks::value(&spec.name, instance, app, &self.home),
        ));
        if spec.readiness.wants_socket() {
            // the systemd protocol: where to send READY=1 / WATCHDOG=1, and how often to ping
            let socket = self.notify_socket(tx)?;
            extra_env.push(("NOTIFY_SOCKET".into(), socket));
            if let Some(period) = spec.readiness.watchdog() {
                extra_env.push(("WATCHDOG_USEC".into(), period.as_micros().to_string()));
            }
        }
        let cgroup = self.app_cgroup(app, instance, spec)?;
        let listen = self.listeners.sockets(&spec.name, &spec.listen)?;
        let plan = plan(
            spec,
            std::env::vars_os(),
            &extra_env,
            listen,
            cgroup.iter().map(AsFd::as_fd).collect(),
        );
        spawn::spawn(&plan).map_err(|e| e.to_string())
    }

    /// The apps' `NOTIFY_SOCKET` (`@turbo-notify-<home hash>`), binding it (and starting its
    /// reader, which sends every datagram to the loop) first.
    ///
    /// An abstract socket, because a socket file in the 0700 home is out of reach of apps that
    /// run as another user (issue 15: they never got READY=1 through and looped in restarts).
    /// Its name follows from the home, so a daemon restarted on the same home binds the name its
    /// adopted apps know. Anyone may bind an abstract name first: then the daemon takes
    /// `<name>-<pid>` (apps adopted with the old name lose their notifications, and a watchdog
    /// restarts them onto the new one), and what is received is attributed by the kernel's pid
    /// of the sender either way.
    ///
    /// # Errors
    /// When the socket cannot be bound.
    pub fn notify_socket(&mut self, tx: &UnboundedSender<Internal>) -> Result<String, String> {
        if let Some(p) = &self.notify_socket {
            return Ok(p.clone());
        }
        let name = notify_name(&self.home);
        let (name, sock) = match net::bind_notify_abstract(&name) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                tracing::warn!("the NOTIFY_SOCKET name @{name} is taken by another process");
                let other = format!("{name}-{}", std::process::id());
                let sock = net::bind_notify_abstract(&other);
                (other, sock)
            }
            other => (name, other),
        };
        let sock = sock.map_err(|e| format!("cannot bind the NOTIFY_SOCKET @{name}: {e}"))?;
        // SAFETY: the AsyncFd owns the socket, so the fd stays open and the same while registered.
        let afd = unsafe { AsyncFd::register(sock) }.map_err(|e| e.to_string())?;
        tokio::spawn(read_notifications(afd, tx.clone()));
        let value = format!("@{name}");
        tracing::info!("apps' NOTIFY_SOCKET at {value}");
        self.notify_socket = Some(value.clone());
        Ok(value)
    }

    /// Gives every app a cgroup that contains its processes from now on (see
    /// [`crate::os::cgroup`]): with the procfs fallback, the only way to find a descendant
    /// that left the process group and was not caught by a scan.
    pub fn contain_apps(&mut self) {
        self.contain = true;
    }

    /// The cgroup of `app` (instance `instance`): the limits `spec` asks for (`cpu_max`,
    /// `cpu_weight`, `io_weight`, `pids_max`, `memory_high`, and `max_memory` with
    /// `memory_enforce: cgroup`), containment when [`Spawner::contain_apps`] was called;
    /// created on first use below the daemon's own, its settings applied on every start (the
    /// spec may have changed). Returns the `cgroup.procs` files the child enters; empty when
    /// it needs none. A cgroup that cannot be made only for containment is not an error
    /// (the app runs without; said once).
    ///
    /// # Errors
    /// Why the cgroup with the limits cannot be made, with what to do instead: a limit is
    /// never silently left out.
    pub fn app_cgroup(
        &mut self,
        app: AppId,
        instance: u32,
        spec: &AppSpec,
    ) -> Result<Vec<OwnedFd>, String> {
        let limits = cgroup_limits(spec);
        let request = CgroupRequest {
            contain: self.contain && !self.contain_failed,
            limits,
            best_effort: spec.resources.best_effort,
        };
        if request == CgroupRequest::default() {
            // the limits were taken out: the old cgroup no longer describes the app
            self.retire_cgroup(app, None);
            return Ok(Vec::new());
        }
        // one directory per daemon home: daemons of other users or homes never share one
        let group = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.home.hash(&mut h);
            format!("turbo-{:016x}", h.finish())
        };
        // one cgroup per instance: the limit is per process, as max_memory is
        let name = format!("{}.{instance}", spec.name);
        let made = Hierarchies::read()
            .and_then(|h| AppCgroup::create(&h, &group, &name, &request))
            .and_then(|c| Ok((c.procs()?, c)));
        let (procs, cgroup) = match made {
            Ok(made) => made,
            Err(e) if limits.memory_max.is_some() && limits == memory_only(limits.memory_max) => {
                return Err(format!(
                    "memory_enforce: cgroup: cannot put the app in a memory cgroup ({e}); use \
                     `memory_enforce: restart` (the default) where the daemon may not create \
                     cgroups"
                ));
            }
            Err(e) if limits != CgroupLimits::default() => {
                return Err(format!(
                    "cannot put the app in a cgroup with its limits ({e}); remove the limit \
                     this host cannot enforce, or run the daemon where it may create cgroups"
                ));
            }
            Err(e) => {
                tracing::warn!(
                    "apps run without a cgroup of their own ({e}): `stop` reaches only the \
                     descendants the /proc scans saw"
                );
                self.contain_failed = true;
                return Ok(Vec::new());
            }
        };
        for why in cgroup.unenforced() {
            tracing::warn!(
                app = spec.name,
                instance,
                "limit unenforced (limits_required: false): {why}"
            );
        }
        self.retire_cgroup(app, Some(&cgroup));
        let seen = cgroup.oom_kills().unwrap_or(0);
        self.cgroups.insert(app, (cgroup, seen));
        Ok(procs)
    }

    /// Forgets the cgroup `app` had, removing its directories that `kept` does not reuse.
    fn retire_cgroup(&mut self, app: AppId, kept: Option<&AppCgroup>) {
        if let Some((old, _)) = self.cgroups.remove(&app)
            && let Err(e) = old.remove_beyond(kept)
        {
            tracing::debug!(app, "an old cgroup directory stays: {e}");
        }
    }

    /// Rewrites the limits of the running `app`'s cgroup from `spec` (a live change of
    /// `turbo apply`); nothing when it has none.
    ///
    /// # Errors
    /// What could not be written (the app keeps its old limits for that controller).
    pub fn set_limits(&self, app: AppId, spec: &AppSpec) -> Result<(), String> {
        match self.cgroup(app) {
            Some(cgroup) => cgroup.set(&cgroup_limits(spec)).map_err(|e| e.to_string()),
            None if spec.resources.is_empty() => Ok(()),
            None => Err("the running process has no cgroup: restart it to apply the limits".into()),
        }
    }

    /// Whether the memory cgroup of `app` counted a new OOM kill since last asked.
    pub fn cgroup_oom_kill(&mut self, app: AppId) -> bool {
        let Some((cgroup, seen)) = self.cgroups.get_mut(&app) else {
            return false;
        };
        let now = cgroup.oom_kills().unwrap_or(*seen);
        std::mem::replace(seen, now) < now
    }

    /// The `listen:` sockets held for app `name`, with their accept-queue drops.
    #[must_use]
    pub fn listen_drops(&self, name: &str) -> Vec<(String, u64)> {
        self.listeners.drops(name)
    }

    /// The cgroup of `app`, if it has one.
    #[must_use]
    pub fn cgroup(&self, app: AppId) -> Option<&AppCgroup> {
        self.cgroups.get(&app).map(|(c, _)| c)
    }

    /// The processes in the cgroup of `app` (empty without a containing cgroup).
    #[must_use]
    pub fn members(&self, app: AppId) -> Vec<u32> {
        self.cgroup(app).map(AppCgroup::members).unwrap_or_default()
    }

    /// Takes back the `listen:` sockets of an adopted process (see [`Listeners::adopt`]).
    pub fn adopt_sockets(&mut self, spec: &AppSpec, pid: u32) {
        if spec.listen.is_empty() {
            return;
        }
        let taken = self.listeners.adopt(&spec.name, &spec.listen, pid);
        if !taken.is_empty() {
            tracing::info!(app = %spec.name, "took back the sockets of {}", taken.join(", "));
        }
    }

    /// Starts, replaces or drops the file watcher of app `id` (`None`: gone) to match its spec.
    ///
    /// The tree is walked on a thread of its own (a large tree would stall the loop), with the
    /// file-system credentials of the user the app runs as when that is not the daemon's (so
    /// watch mode sees only what the app's user may read); the watcher comes back to the loop
    /// as [`Internal::WatcherReady`], for [`Self::watcher_ready`].
    pub fn sync_watcher(&mut self, id: AppId, app: Option<&App>, tx: &UnboundedSender<Internal>) {
        let Some(app) = app.filter(|a| a.spec.watch.is_some()) else {
            self.watchers.remove(&id);
            self.pending_watchers.remove(&id);
            return;
        };
        let Some(spec) = app.spec.watch.clone() else {
            return;
        };
        if self.watchers.get(&id).is_some_and(|w| w.spec() == &spec)
            || self.pending_watchers.get(&id) == Some(&spec)
        {
            return;
        }
        self.watchers.remove(&id);
        self.pending_watchers.insert(id, spec.clone());
        // the daemon's own files change all the time: never a reason to restart
        let skip = vec![self.home.clone(), self.log_dir.clone()];
        let events = tx.clone();
        let name = app.spec.name.clone();
        let user = app
            .spec
            .privileges
            .run_as
            .as_ref()
            .filter(|r| r.uid != crate::os::creds::effective_uid())
            .map(|r| {
                (
                    r.uid,
                    r.gid,
                    r.groups.iter().map(|(_, g)| *g).collect::<Vec<_>>(),
                )
            });
        let walk = move || {
            if let Some((uid, gid, groups)) = &user {
                // this thread only, and the notify thread it starts inherits them
                crate::os::creds::switch_thread_fs_credentials(*uid, *gid, groups)
                    .map_err(|e| format!("cannot take the file rights of uid {uid}: {e}"))?;
            }
            watch::AppWatcher::start(&spec, skip, move |change| {
                let _ = events.send(Internal::FilesChanged(id, change));
            })
            .map_err(|e| e.to_string())
        };
        let spawned = std::thread::Builder::new()
            .name("turbo-watch-walk".into())
            .spawn({
                let tx = tx.clone();
                move || {
                    let result = walk();
                    let _ = tx.send(Internal::WatcherReady {
                        app: id,
                        name,
                        result,
                    });
                }
            });
        if let Err(e) = spawned {
            self.pending_watchers.remove(&id);
            tracing::warn!(app = %app.spec.name, "watch mode is off: cannot start its thread: {e}");
        }
    }

    /// The watcher of `app` (named `name`) set up by [`Self::sync_watcher`]'s thread, kept if
    /// the app still wants exactly what it watches.
    pub fn watcher_ready(
        &mut self,
        app: AppId,
        name: &str,
        result: Result<watch::AppWatcher, String>,
    ) {
        match result {
            Ok(w) if self.pending_watchers.get(&app) == Some(w.spec()) => {
                self.pending_watchers.remove(&app);
                tracing::info!(app = %name, "watching {} directories for changes", w.watched());
                self.watchers.insert(app, w);
            }
            Ok(_) => {} // asked for something else since: that watcher is on its way
            Err(e) => {
                self.pending_watchers.remove(&app);
                tracing::warn!(app = %name, "watch mode is off: cannot watch files: {e}");
            }
        }
    }

    /// Watches the directories created under the watched ones of `app`.
    pub fn watch_new_dirs(&mut self, app: AppId, dirs: Vec<PathBuf>) {
        if let Some(w) = self.watchers.get_mut(&app) {
            for dir in dirs {
                if let Err(e) = w.add_tree(&dir) {
                    tracing::warn!(app, "cannot watch {}: {e}", dir.display());
                }
            }
        }
    }

    /// App `app` (named `name`) is gone; `last`: no instance of that name is left, so its
    /// sockets close too.
    pub fn removed(&mut self, app: AppId, name: &str, last: bool) {
        if last {
            self.listeners.close(name);
        }
        self.watchers.remove(&app);
        if let Some((cgroup, _)) = self.cgroups.remove(&app)
            && let Err(e) = cgroup.remove()
        {
            tracing::warn!(app = %name, "cannot remove its cgroup: {e}");
        }
    }
}

/// Reads the apps' notify datagrams and sends each, with the sender's pid, to the loop.
/// The abstract name of the apps' `NOTIFY_SOCKET` for the daemon of `home`: stable across
/// daemon restarts and builds (FNV-1a of the path, not the standard library's hasher, whose
/// algorithm may change), distinct for every home.
fn notify_name(home: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let hash = home
        .as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("turbo-notify-{hash:016x}")
}

async fn read_notifications(
    afd: AsyncFd<std::os::unix::net::UnixDatagram>,
    tx: UnboundedSender<Internal>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok(mut guard) = afd.readable().await else {
            return;
        };
        match net::recv_with_pid(afd.get_ref(), &mut buf) {
            Ok((n, Some(pid))) => {
                let _ = tx.send(Internal::Notified {
                    pid,
                    datagram: buf[..n].to_vec(),
                    retried: false,
                });
            }
            Ok((_, None)) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => guard.clear_ready(),
            Err(e) => {
                tracing::error!("NOTIFY_SOCKET: {e}; readiness notifications stop");
                return;
            }
        }
    }
}

/// The cgroup limits `spec` asks for.
fn cgroup_limits(spec: &AppSpec) -> CgroupLimits {
    let r = &spec.resources;
    CgroupLimits {
        memory_high: r.memory_high,
        cpu_max_percent: r.cpu_max,
        cpu_weight: r.cpu_weight,
        io_weight: r.io_weight,
        pids_max: r.pids_max,
        ..memory_only(match (spec.memory.enforce, spec.memory.max) {
            (MemoryEnforce::Cgroup, Some(max)) => Some(max),
            _ => None,
        })
    }
}

const fn memory_only(memory_max: Option<u64>) -> CgroupLimits {
    CgroupLimits {
        memory_max,
        memory_high: None,
        cpu_max_percent: None,
        cpu_weight: None,
        io_weight: None,
        pids_max: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Rlimit, RunAs as SpecRunAs};

    #[test]
    fn the_plan_has_the_apps_environment_identity_and_limits() {
        let mut spec = AppSpec::new(
            "web",
            vec!["node".into(), "server.js".into()],
            "/srv".into(),
        );
        spec.env = vec![
            ("APP_VAR".into(), "1".into()),
            ("TURBO_INSTANCE".into(), "x".into()),
        ];
        let l = &mut spec.privileges.limits;
        l.nofile = Some(Rlimit {
            soft: 64,
            hard: 128,
        });
        l.umask = Some(0o027);
        l.nice = Some(5);
        spec.privileges.run_as = Some(SpecRunAs {
            user: "www".into(),
            uid: 33,
            group: "www".into(),
            gid: 33,
            groups: vec![("www".into(), 33), ("ssl".into(), 110)],
            home: "/var/www".into(),
            shell: "/bin/false".into(),
        });
        let daemon_env = [
            ("PATH", "/usr/bin"),
            ("CARGO_PKG_NAME", "turbo"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let extra = [("TURBO_INSTANCE".to_owned(), "2".to_owned())];
        let p = plan(&spec, daemon_env, &extra, Vec::new(), Vec::new());
        let env: HashMap<String, String> = p
            .env
            .iter()
            .map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into()))
            .collect();
        assert_eq!(env.get("APP_VAR").map(String::as_str), Some("1"));
        assert_eq!(env.get("PATH").map(String::as_str), Some("/usr/bin"));
        assert_eq!(env.get("PWD").map(String::as_str), Some("/srv"));
        assert_eq!(env.get("HOME").map(String::as_str), Some("/var/www"));
        assert_eq!(env.get("USER").map(String::as_str), Some("www"));
        assert!(!env.contains_key("CARGO_PKG_NAME") && !env.contains_key("NOTIFY_SOCKET"));
        // the instance variables win over `env:`: they are set last
        let last = p
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "TURBO_INSTANCE")
            .unwrap();
        assert_eq!(last.1, "2");
        assert_eq!(p.argv, ["node", "server.js"]);
        assert_eq!(p.cwd, Path::new("/srv"));
        assert_eq!(p.limits.nofile, Some((64, 128)));
        assert_eq!(
            (p.limits.umask, p.limits.nice, p.limits.core),
            (Some(0o027), Some(5), None)
        );
        let run_as = p.run_as.expect("runs as www");
        assert_eq!(
            (run_as.uid, run_as.gid, run_as.groups),
            (33, 33, vec![33, 110])
        );
        assert_eq!(p.listen_name, "web");
        assert!(p.listen.is_empty() && p.cgroup_procs.is_empty());
    }
}
