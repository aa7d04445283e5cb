//! The D-Bus adapter: `org.turboprocess.Turbo1.Manager`, one `org.turboprocess.Turbo1.App`
//! object per app, and the standard ObjectManager at the root.
//!
//! It is thin on purpose: methods turn their arguments into a runtime [`Request`] and await its
//! typed answer; app objects are caches refreshed from runtime [`Notice`]s, never read back by
//! the runtime, and `ListApps` answers from one list shared while the runtime's state version
//! stays ([`snapshot`]). It must not hold or decide supervision state.
//!
//! It is also the edge where callers' input arrives, so every argument is checked here before
//! it goes anywhere (`config::input`: sizes, names, paths, targets), mutating calls are
//! authorised ([`auth`]), and start calls are validated into specs here, with the caller's
//! powers and file access rights, on a blocking thread: the runtime's single loop never waits
//! for a config file, a user lookup or a credentials switch.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use tokio::sync::{mpsc, oneshot};
use turbo_api::{
    AppChange, AppConfigInfo, AppInsight, AppRow, AppStatus, CrashRecord, CrashStats, DaemonInfo,
    Error, MANAGER_PATH, instance_path,
};
use zbus::{interface, message::Header, object_server::SignalEmitter, zvariant::OwnedValue};

use crate::{
    access::Caller,
    config::{self, ConfigError, Document, StartCall, input},
    runtime::{AppsOp, LIST_MAX_AGE, Notice, Reply, Request, StateVersion, apply::ApplyRequest},
    spec::AppSpec,
};

mod app;
pub use app::{AppIface, publish};
pub mod auth;
pub mod snapshot;
pub mod wire;

/// What validating a start call needs besides its arguments.
#[derive(Debug, Clone)]
pub struct Validation {
    /// The `PATH` commands are looked up in.
    pub path_env: String,
    /// Where an app without a `cwd` option runs (the daemon's home).
    pub home: PathBuf,
}

/// The manager object.
pub struct ManagerIface {
    requests: mpsc::UnboundedSender<Request>,
    policy: auth::Policy,
    validation: Validation,
    exporter: crate::metrics::Exporter,
    /// `ListApps`'s answer, shared by the calls it stands for.
    statuses: Arc<snapshot::StatusCache>,
}

impl ManagerIface {
    /// An adapter that forwards to the runtime through `requests`; `version` is the runtime's
    /// (see [`crate::runtime::Runtime::count_changes_in`]).
    #[must_use]
    pub fn new(
        requests: mpsc::UnboundedSender<Request>,
        policy: auth::Policy,
        validation: Validation,
        exporter: crate::metrics::Exporter,
        version: StateVersion,
    ) -> Self {
        Self {
            requests,
            policy,
            validation,
            exporter,
            statuses: Arc::new(snapshot::StatusCache::new(version)),
        }
    }

    /// Sends the request `make` builds around a reply channel and awaits the answer.
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, Error> {
        ask(&self.requests, make).await
    }

    /// A mutating call on `target`: checks it, authorises `verb` on it for the caller of
    /// `hdr`, then asks.
    async fn on_target<T>(
        &self,
        call: (&zbus::Connection, &Header<'_>),
        verb: &str,
        target: String,
        make: impl FnOnce(String, Reply<T>) -> Request,
    ) -> Result<T, Error> {
        target_ok(&target)?;
        self.policy.authorize(call.0, call.1, verb, &target).await?;
        self.ask(|reply| make(target, reply)).await
    }

    /// Runs a validation (which takes the caller's powers itself) on a blocking thread (see
    /// the module docs); its message becomes `error`.
    async fn validated(
        &self,
        check: impl FnOnce(&Validation) -> Result<Vec<AppSpec>, ConfigError> + Send + 'static,
        error: fn(String) -> Error,
    ) -> Result<Vec<AppSpec>, Error> {
        let validation = self.validation.clone();
        // the typed problems become the one text a bus error carries here, at the boundary
        tokio::task::spawn_blocking(move || check(&validation).map_err(|e| error(e.to_string())))
            .await
            .unwrap_or_else(|_| {
                Err(Error::Failed(
                    "internal error: the config check panicked".into(),
                ))
            })
    }
}

/// Sends the request `make` builds around a reply channel on `requests` and awaits the answer
/// (the metrics exporter asks this way too).
///
/// # Errors
/// The runtime's answer, or `Failed` when it is shutting down.
pub async fn ask<T>(
    requests: &mpsc::UnboundedSender<Request>,
    make: impl FnOnce(Reply<T>) -> Request,
) -> Result<T, Error> {
    let (reply, rx) = oneshot::channel();
    requests
        .send(make(reply))
        .map_err(|_| Error::Failed("the daemon is shutting down".into()))?;
    rx.await
        .map_err(|_| Error::Failed("the daemon dropped the request while shutting down".into()))?
}

/// An `InvalidArgument` reply for a check of `config::input` that failed.
fn invalid(result: Result<(), String>) -> Result<(), Error> {
    result.map_err(Error::InvalidArgument)
}

/// The longest `WaitReady` timeout: a day (a caller cannot park a request for ever).
const MAX_WAIT_MS: u64 = 86_400_000;

/// Checks a target argument (stop, restart, delete, reset, flush, describe, crashes).
fn target_ok(target: &str) -> Result<(), Error> {
    invalid(input::check_target(target))
}

/// The validation of a config call (`StartConfig`, `ApplyConfig`): `content` read as the file
/// `origin` in `base_dir`, on behalf of `caller` ([`config::file_specs_as`]).
fn file_check(
    content: String,
    origin: String,
    base_dir: String,
    caller: Caller,
    empty_ok: bool,
    vars: config::Vars,
) -> impl FnOnce(&Validation) -> Result<Vec<AppSpec>, ConfigError> + Send + 'static {
    move |v| {
        let doc = Document {
            content: &content,
            origin: &origin,
            base_dir: std::path::Path::new(&base_dir),
            path_env: &v.path_env,
            vars: &vars,
        };
        config::file_specs_as(&doc, caller, empty_ok)
    }
}

/// `ApplyConfig`'s options: `(dry_run, prune, only, vars)`.
fn apply_options(
    options: &HashMap<String, OwnedValue>,
) -> Result<(bool, bool, Vec<String>, config::Vars), Error> {
    use turbo_api::apply_option::{CALLER_ENV, DRY_RUN, ENV_PROFILE, ONLY, PRUNE};
    let (mut dry_run, mut prune, mut only) = (false, false, Vec::new());
    let mut vars = config::Vars::default();
    let wrong =
        |key: &str, what: &str| Error::InvalidArgument(format!("option {key} must be {what}"));
    for (key, value) in options {
        match key.as_str() {
            DRY_RUN => dry_run = bool::try_from(value).map_err(|_| wrong(key, "a boolean (b)"))?,
            PRUNE => prune = bool::try_from(value).map_err(|_| wrong(key, "a boolean (b)"))?,
            ONLY => {
                only = Vec::<String>::try_from(
                    value
                        .try_clone()
                        .map_err(|_| wrong(key, "a list of app names (as)"))?,
                )
                .map_err(|_| wrong(key, "a list of app names (as)"))?;
                for name in &only {
                    invalid(turbo_api::validate_app_name(name))?;
                }
            }
            ENV_PROFILE => {
                let name = String::try_from(
                    value
                        .try_clone()
                        .map_err(|_| wrong(key, "a profile name (s)"))?,
                )
                .map_err(|_| wrong(key, "a profile name (s)"))?;
                invalid(turbo_api::validate_app_name(&name).map_err(|e| format!("profile: {e}")))?;
                vars.profile = Some(name);
            }
            CALLER_ENV => {
                let env = HashMap::<String, String>::try_from(
                    value
                        .try_clone()
                        .map_err(|_| wrong(key, "a map of variables (a{ss})"))?,
                )
                .map_err(|_| wrong(key, "a map of variables (a{ss})"))?;
                invalid(input::check_env(
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                ))?;
                vars.env = env.into_iter().collect();
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown option '{}': known are {DRY_RUN}, {PRUNE}, {ONLY}, {ENV_PROFILE}, {CALLER_ENV}",
                    input::shorten(other)
                )));
            }
        }
    }
    Ok((dry_run, prune, only, vars))
}

impl ManagerIface {
    /// The body of `StartConfig` and `StartConfigWith`: `file` is `(content, origin, base_dir)`.
    async fn start_file(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
        (content, origin, base_dir): (String, String, String),
        vars: config::Vars,
    ) -> Result<Vec<AppStatus>, Error> {
        input::check_config_call(&content, &origin, &base_dir).map_err(Error::InvalidConfig)?;
        let caller = self.policy.authorize(conn, hdr, "start", "config").await?;
        let check = file_check(content, origin, base_dir, caller, false, vars);
        let specs = self.validated(check, Error::InvalidConfig).await?;
        let op = AppsOp::Start {
            specs,
            exclusive: false,
            caller,
        };
        self.ask(|reply| Request::Apps(op, reply)).await
    }

    /// The shared status list (see `snapshot`), built by the loop when none stands.
    async fn status_list(&self) -> Result<snapshot::SharedList, Error> {
        let (apps, built) = self
            .statuses
            .get_or_build(self.ask(Request::List))
            .await
            .map_err(wire::on_wire)?;
        if let Some(built) = built {
            // held while it may serve, not while the daemon idles
            let statuses = Arc::clone(&self.statuses);
            tokio::spawn(async move {
                tokio::time::sleep(LIST_MAX_AGE).await;
                statuses.expire(built);
            });
        }
        Ok(apps)
    }
}

/// `Request::Apps` with `op` built from the target.
fn apps(op: fn(String) -> AppsOp) -> impl FnOnce(String, Reply<Vec<AppStatus>>) -> Request {
    move |target, reply| Request::Apps(op(target), reply)
}

#[interface(name = "org.turboprocess.Turbo1.Manager")]
impl ManagerIface {
    /// Returns the daemon version.
    #[zbus(out_args("version"))]
    async fn ping(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    /// Where the Prometheus exporter listens (`127.0.0.1:9464`), empty when it is off.
    #[zbus(property)]
    fn metrics_address(&self) -> String {
        self.exporter.address().unwrap_or_default()
    }

    /// The URL the exporter serves (`http://127.0.0.1:9464/metrics`, `https://` when it speaks
    /// TLS only), empty when it is off.
    #[zbus(property)]
    fn metrics_url(&self) -> String {
        self.exporter.url().unwrap_or_default()
    }

    /// Why the exporter is off (`--metrics-listen off`, or why it could not listen), empty
    /// while it serves.
    #[zbus(property)]
    fn metrics_off_reason(&self) -> String {
        self.exporter.off_reason().unwrap_or_default()
    }

    /// Describes the daemon.
    #[zbus(out_args("info"))]
    async fn info(&self) -> Result<DaemonInfo, Error> {
        wire::answer(async { self.ask(Request::Info).await }.await)
    }

    /// Starts one app.
    #[zbus(out_args("app"))]
    async fn start_app(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
        argv: Vec<String>,
        options: HashMap<String, OwnedValue>,
    ) -> Result<AppStatus, Error> {
        wire::answer(
            async move {
                // checked before polkit sees the name as a detail
                invalid(turbo_api::validate_app_name(&name))?;
                invalid(input::check_argv(&argv))?;
                let caller = self.policy.authorize(conn, &hdr, "start", &name).await?;
                let check = move |v: &Validation| {
                    crate::access::as_caller(caller, |powers| {
                        let call = StartCall {
                            name: &name,
                            argv: &argv,
                            options: &options,
                            path_env: &v.path_env,
                            default_cwd: &v.home,
                        };
                        config::from_start_options(&call, powers)
                    })
                    .map(|spec| vec![spec])
                };
                let specs = self.validated(check, Error::InvalidArgument).await?;
                let op = AppsOp::Start {
                    specs,
                    exclusive: true,
                    caller,
                };
                let mut apps = self.ask(|reply| Request::Apps(op, reply)).await?;
                apps.pop()
                    .ok_or_else(|| Error::Failed("internal error: start returned no app".into()))
            }
            .await,
        )
    }

    /// Starts every app of a `turbo.yml` document.
    #[zbus(out_args("apps"))]
    async fn start_config(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        content: String,
        origin: String,
        base_dir: String,
    ) -> Result<Vec<AppStatus>, Error> {
        let file = (content, origin, base_dir);
        wire::answer(
            self.start_file(conn, &hdr, file, config::Vars::default())
                .await,
        )
    }

    /// `StartConfig` with the variable options of `ApplyConfig` (`caller_env`, `env_profile`):
    /// a new method rather than a changed signature, so that busctl scripts and older clients
    /// calling `StartConfig` keep working.
    #[zbus(out_args("apps"))]
    async fn start_config_with(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        content: String,
        origin: String,
        base_dir: String,
        options: HashMap<String, OwnedValue>,
    ) -> Result<Vec<AppStatus>, Error> {
        let answer = async {
            let (dry_run, prune, only, vars) = apply_options(&options)?;
            if dry_run || prune || !only.is_empty() {
                return Err(Error::InvalidArgument(
                    "StartConfigWith takes only the options caller_env and env_profile: use ApplyConfig to plan, prune or pick apps".into(),
                ));
            }
            self.start_file(conn, &hdr, (content, origin, base_dir), vars)
                .await
        };
        wire::answer(answer.await)
    }

    /// Makes the apps match a `turbo.yml` document (`turbo apply`): validated whole first,
    /// then planned against the apps now and carried out; answers the plan.
    #[zbus(out_args("changes"))]
    async fn apply_config(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        content: String,
        origin: String,
        base_dir: String,
        options: HashMap<String, OwnedValue>,
    ) -> Result<Vec<AppChange>, Error> {
        wire::answer(
            async move {
                input::check_config_call(&content, &origin, &base_dir)
                    .map_err(Error::InvalidConfig)?;
                let (dry_run, prune, only, vars) = apply_options(&options)?;
                let caller = self.policy.authorize(conn, &hdr, "start", "config").await?;
                if prune && !dry_run {
                    self.policy
                        .authorize(conn, &hdr, "delete", "config")
                        .await?;
                }
                let check = file_check(content, origin, base_dir, caller, true, vars);
                let specs = self.validated(check, Error::InvalidConfig).await?;
                let req = ApplyRequest {
                    specs,
                    prune,
                    only,
                    dry_run,
                    caller,
                };
                self.ask(|reply| Request::Apply(req, reply)).await
            }
            .await,
        )
    }

    /// Stops apps (name, id or `all`) and returns once they have exited.
    #[zbus(out_args("apps"))]
    async fn stop_app(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        target: String,
    ) -> Result<Vec<AppStatus>, Error> {
        wire::answer(
            async move {
                self.on_target((conn, &hdr), "stop", target, apps(AppsOp::Stop))
                    .await
            }
            .await,
        )
    }

    /// Restarts apps (name, id or `all`).
    #[zbus(out_args("apps"))]
    async fn restart_app(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        target: String,
    ) -> Result<Vec<AppStatus>, Error> {
        wire::answer(
            async move {
                self.on_target((conn, &hdr), "restart", target, apps(AppsOp::Restart))
                    .await
            }
            .await,
        )
    }

    /// Starts the existing apps of `target` (name, `name:N`, id or `all`) that are not running,
    /// and the dependencies they wait for unless `no_deps` (`turbo start NAME [--no-deps]`).
    /// Authorised as a restart.
    #[zbus(out_args("apps"))]
    async fn start_named(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        target: String,
        no_deps: bool,
    ) -> Result<Vec<AppStatus>, Error> {
        wire::answer(
            async move {
                self.on_target((conn, &hdr), "restart", target, |target, reply| {
                    Request::Apps(AppsOp::StartNamed { target, no_deps }, reply)
                })
                .await
            }
            .await,
        )
    }

    /// Replaces the running instances of apps (name, `name:N`, id or `all`) one at a time,
    /// each once its replacement is ready; returns the replacements when all are done, or fails
    /// with the old instances still running. Authorised as a restart.
    #[zbus(out_args("apps"))]
    async fn reload_app(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        target: String,
    ) -> Result<Vec<AppStatus>, Error> {
        wire::answer(
            async move {
                self.on_target((conn, &hdr), "restart", target, apps(AppsOp::Reload))
                    .await
            }
            .await,
        )
    }

    /// Sends `signal` (a name with or without `SIG`, any case, or a number 1-64) to the main
    /// process of every running app of `target` (name, `name:N`, id, `all` or `@group`);
    /// returns the apps signalled. Authorised as a restart.
    #[zbus(out_args("apps"))]
    async fn signal_app(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        target: String,
        signal: String,
    ) -> Result<Vec<AppStatus>, Error> {
        wire::answer(
            async move {
                let signal = input::parse_signal(&signal).map_err(Error::InvalidArgument)?;
                self.on_target((conn, &hdr), "restart", target, |target, reply| {
                    Request::Apps(AppsOp::Signal(target, signal), reply)
                })
                .await
            }
            .await,
        )
    }

    /// Runs `count` instances of app `name`: new ones start, the highest-numbered stop
    /// gracefully; returns the instances once they have started or stopped.
    #[zbus(out_args("apps"))]
    async fn scale_app(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
        count: u32,
    ) -> Result<Vec<AppStatus>, Error> {
        wire::answer(
            async move {
                invalid(turbo_api::validate_app_name(&name))?;
                invalid(input::check_instances(count))?;
                self.policy.authorize(conn, &hdr, "scale", &name).await?;
                self.ask(|reply| Request::Apps(AppsOp::Scale(name, count), reply))
                    .await
            }
            .await,
        )
    }

    /// Stops and forgets apps (name, id or `all`).
    #[zbus(out_args("deleted"))]
    async fn delete_app(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        target: String,
    ) -> Result<Vec<String>, Error> {
        wire::answer(
            async move {
                self.on_target((conn, &hdr), "delete", target, Request::Delete)
                    .await
            }
            .await,
        )
    }

    /// Every app. State, pid, restarts and every other field an event changes are current;
    /// CPU, memory and uptime may be up to 1 s old (a reading up to 500 ms old, in a list that
    /// answers the calls of the next 500 ms while nothing changes).
    #[zbus(out_args("apps"))]
    async fn list_apps(&self) -> Result<snapshot::SharedList, Error> {
        self.status_list().await
    }

    /// Every app, with only the fields of the `turbo status` table (`ListApps`'s freshness).
    #[zbus(out_args("rows"))]
    async fn list_app_rows(&self) -> Result<Vec<AppRow>, Error> {
        Ok(self.status_list().await?.iter().map(AppRow::from).collect())
    }

    /// Stops every app, then the daemon.
    async fn shutdown(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), Error> {
        wire::answer(
            async move {
                self.policy
                    .authorize(conn, &hdr, "shutdown", "the daemon")
                    .await?;
                self.ask(Request::Shutdown).await
            }
            .await,
        )
    }

    /// Re-executes the daemon binary in place; apps and their logs carry on.
    async fn upgrade(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), Error> {
        wire::answer(
            async move {
                self.policy
                    .authorize(conn, &hdr, "upgrade", "the daemon")
                    .await?;
                self.ask(Request::Upgrade).await
            }
            .await,
        )
    }

    /// Clears restart counters and crash-loop state (name, id or `all`); `errored` apps start.
    #[zbus(out_args("apps"))]
    async fn reset_app(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        target: String,
    ) -> Result<Vec<AppStatus>, Error> {
        wire::answer(
            async move {
                self.on_target((conn, &hdr), "reset", target, apps(AppsOp::Reset))
                    .await
            }
            .await,
        )
    }

    /// Status, configuration (environment names only) and crash records of one app; its
    /// health-check output and crash stderr only for root, the daemon's user and the app's
    /// own user (those who may read its logs).
    #[zbus(out_args("status", "config", "crashes"))]
    async fn describe_app(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        target: String,
    ) -> Result<(AppStatus, AppConfigInfo, Vec<CrashRecord>), Error> {
        wire::answer(
            async move {
                target_ok(&target)?;
                let (status, mut config, mut crashes) =
                    self.ask(|reply| Request::Describe(target, reply)).await?;
                let uid = self.policy.caller_uid(conn, &hdr).await?;
                if !self.policy.may_read_output(uid, config.uid) {
                    if !config.health_last_error.is_empty() {
                        config.health_last_error = wire::HIDDEN_OUTPUT.to_owned();
                    }
                    crashes.iter_mut().for_each(wire::hide_output);
                }
                Ok((status, config, crashes))
            }
            .await,
        )
    }

    /// The environment variables of one app (`env:` and `env_file:`) with their values: secrets,
    /// so for root (and the daemon's own user) only, whatever the admin group or polkit say.
    #[zbus(out_args("env"))]
    async fn describe_env(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        target: String,
    ) -> Result<Vec<(String, String)>, Error> {
        wire::answer(
            async move {
                target_ok(&target)?;
                self.policy
                    .authorize_owner(conn, &hdr, "read the environment values of apps")
                    .await?;
                self.ask(|reply| Request::DescribeEnv(target, reply)).await
            }
            .await,
        )
    }

    /// Crash statistics and the kept records, newest first (stderr lines and health output
    /// only for those who may read the app's logs).
    #[zbus(out_args("stats", "crashes"))]
    async fn get_crashes(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        target: String,
    ) -> Result<(CrashStats, Vec<CrashRecord>), Error> {
        wire::answer(
            async move {
                target_ok(&target)?;
                let (_, config, _) = self
                    .ask(|reply| Request::Describe(target.clone(), reply))
                    .await?;
                let (stats, mut crashes) =
                    self.ask(|reply| Request::Crashes(target, reply)).await?;
                let uid = self.policy.caller_uid(conn, &hdr).await?;
                if !self.policy.may_read_output(uid, config.uid) {
                    crashes.iter_mut().for_each(wire::hide_output);
                }
                Ok((stats, crashes))
            }
            .await,
        )
    }

    /// What the kernel saw the matching apps (name, id or `all`) do: run-queue delay,
    /// involuntary switches, execs. eBPF only: otherwise each app says why not.
    #[zbus(out_args("insight"))]
    async fn get_insight(&self, target: String) -> Result<Vec<AppInsight>, Error> {
        wire::answer(
            async move {
                target_ok(&target)?;
                self.ask(|reply| Request::Insight(target, reply)).await
            }
            .await,
        )
    }

    /// Empties the log files of the matching apps (name, id or `all`).
    #[zbus(out_args("flushed"))]
    async fn flush_logs(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        target: String,
    ) -> Result<Vec<String>, Error> {
        wire::answer(
            async move {
                self.on_target((conn, &hdr), "flush", target, Request::Flush)
                    .await
            }
            .await,
        )
    }

    /// Writes the app list to the dump file; returns its path.
    #[zbus(out_args("path"))]
    async fn save(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, Error> {
        wire::answer(
            async move {
                self.policy.authorize(conn, &hdr, "save", "all").await?;
                self.ask(Request::Save).await
            }
            .await,
        )
    }

    /// Starts the apps of the dump file that are not managed now.
    #[zbus(out_args("apps"))]
    async fn resurrect(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<Vec<AppStatus>, Error> {
        wire::answer(
            async move {
                let caller = self
                    .policy
                    .authorize(conn, &hdr, "start", "saved apps")
                    .await?;
                self.ask(|reply| Request::Apps(AppsOp::Resurrect(caller), reply))
                    .await
            }
            .await,
        )
    }

    /// Returns once every matching app is ready (online and, with a health check, healthy since
    /// its start); fails with the reason (the last health-check error) when one crashes, errors
    /// or stops first, or after `timeout_ms` (at most a day). Read-only: no authorisation; the
    /// health-check output in the reason only for root and the daemon's own user (the target
    /// may name apps of several users).
    #[zbus(out_args("apps"))]
    async fn wait_ready(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        target: String,
        timeout_ms: u64,
    ) -> Result<Vec<AppStatus>, Error> {
        wire::answer(
            async move {
                target_ok(&target)?;
                if timeout_ms > MAX_WAIT_MS {
                    return Err(Error::InvalidArgument(format!(
                        "timeout_ms {timeout_ms} is more than a day: use at most {MAX_WAIT_MS}"
                    )));
                }
                let op = AppsOp::WaitReady {
                    target,
                    timeout: std::time::Duration::from_millis(timeout_ms),
                };
                let answer = self.ask(|reply| Request::Apps(op, reply)).await;
                match answer {
                    Err(mut e) => {
                        let uid = self.policy.caller_uid(conn, &hdr).await?;
                        if !self.policy.may_read_output(uid, self.policy.owner_uid) {
                            wire::hide_health_output(&mut e);
                        }
                        Err(e)
                    }
                    ok => ok,
                }
            }
            .await,
        )
    }

    /// Emitted when an app's resident memory crosses its warning level (once per crossing).
    #[zbus(signal)]
    async fn memory_warning(
        emitter: &SignalEmitter<'_>,
        name: &str,
        rss_bytes: u64,
        max_memory_bytes: u64,
    ) -> zbus::Result<()>;

    /// Emitted for every exec inside an app's process tree (eBPF only); `allowed` is false when
    /// the app's `exec_allow` list does not allow the program.
    #[zbus(signal)]
    async fn app_exec(
        emitter: &SignalEmitter<'_>,
        name: &str,
        pid: u32,
        filename: &str,
        allowed: bool,
    ) -> zbus::Result<()>;

    /// Emitted for every event `turbo events` lists (an exec, a signal, an exit, an OOM kill, a
    /// TCP listen or a connection with a new peer).
    #[zbus(signal)]
    async fn app_event(
        emitter: &SignalEmitter<'_>,
        name: &str,
        event: turbo_api::KernelEvent,
    ) -> zbus::Result<()>;

    /// Emitted for every crash, once its record is complete.
    #[zbus(signal)]
    async fn app_crashed(
        emitter: &SignalEmitter<'_>,
        name: &str,
        crash: CrashRecord,
    ) -> zbus::Result<()>;

    /// Emitted on every state change of an app.
    #[zbus(signal)]
    async fn app_state_changed(
        emitter: &SignalEmitter<'_>,
        name: &str,
        state: &str,
        pid: u32,
    ) -> zbus::Result<()>;
}
