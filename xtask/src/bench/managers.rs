//! The three process managers behind one small interface, so that a metric runs the same
//! workload under each: TurboProcess (the release binaries), PM2 and supervisord (the private
//! installs under `target/bench-tools/`). Each gets a private home in the run's temporary
//! directory, talks only over local sockets, and is shut down (then killed, if it will not go)
//! when dropped, whatever happened before.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::bench::json::{Json, obj};
use crate::bench::process::{exec, exec_any, file_tail, wait_bounded};
use crate::bench::sys;
use crate::bench::tools::Tools;
use crate::util::display;

/// Bound on one CLI call (`pm2` is a Node.js program and slow to start on a busy machine).
pub const CLI_LIMIT: Duration = Duration::from_secs(60);
/// Bound on a daemon coming up or going away.
const DAEMON_LIMIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Turbo,
    Pm2,
    Supervisord,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Turbo, Kind::Pm2, Kind::Supervisord];

    /// The name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Turbo => "TurboProcess",
            Kind::Pm2 => "PM2",
            Kind::Supervisord => "supervisord",
        }
    }

    /// The name in paths and JSON keys.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Turbo => "turbo",
            Kind::Pm2 => "pm2",
            Kind::Supervisord => "supervisord",
        }
    }
}

/// What to do when the app exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Restart on every exit, with no delay.
    Immediately,
    /// Never restart.
    Never,
}

/// One app, as the metric wants it run; each manager writes it in its own config language.
#[derive(Clone, Debug)]
pub struct App {
    pub name: String,
    /// Absolute program path and its arguments (no shell, no interpreter).
    pub argv: Vec<String>,
    pub restart: Restart,
    /// A resident-memory limit in the manager's size syntax (e.g. `1gb`), if any: TurboProcess
    /// `max_memory`, PM2 `max_memory_restart`; supervisord has none.
    pub max_memory: Option<String>,
    /// TurboProcess only: the app's `log:` settings instead of the default one file that never
    /// rotates (the other managers have no matching rotation with compression).
    pub turbo_log: Option<String>,
}

impl App {
    /// An app without a memory limit.
    pub fn new(name: &str, argv: Vec<String>, restart: Restart) -> Self {
        Self {
            name: name.to_owned(),
            argv,
            restart,
            max_memory: None,
            turbo_log: None,
        }
    }
}

/// A running process manager with a private home.
pub trait Manager {
    fn kind(&self) -> Kind;
    /// Writes one configuration file named after `file` with all `apps` and returns the
    /// command that starts them, not yet run.
    fn start_all_command(&mut self, file: &str, apps: &[App]) -> Result<Command>;
    /// Writes the app's configuration and returns the command that starts it, not yet run
    /// (a metric may want to watch something while it runs).
    fn start_command(&mut self, app: &App) -> Result<Command> {
        let file = app.name.clone();
        self.start_all_command(&file, std::slice::from_ref(app))
    }
    /// Starts the app and waits for the manager's answer.
    fn start(&mut self, app: &App) -> Result<()> {
        let mut cmd = self.start_command(app)?;
        exec(&mut cmd, CLI_LIMIT)?;
        Ok(())
    }
    /// Starts all `apps` from one configuration file and waits for the manager's answer.
    fn start_all(&mut self, file: &str, apps: &[App]) -> Result<()> {
        let mut cmd = self.start_all_command(file, apps)?;
        exec(&mut cmd, CLI_LIMIT)?;
        Ok(())
    }
    /// The pids of the apps the manager reports running.
    fn app_pids(&mut self) -> Result<Vec<u32>>;
    /// The manager's own processes (the daemon, and helpers such as TurboProcess's private
    /// bus), as (what, pid); empty when they are gone.
    fn processes(&self) -> Vec<(String, u32)>;
    /// Stops the app and forgets it.
    fn remove(&mut self, name: &str) -> Result<()>;
    /// The manager's commands that list every app with its state, as (what to call it, the
    /// command, not yet run), for timing them.
    fn status_commands(&mut self) -> Vec<(String, Command)>;
    /// The CLI doing one trivial call to the daemon (its floor: process start, connecting,
    /// one round trip), when the manager has one.
    fn floor_command(&mut self) -> Option<(String, Command)> {
        None
    }
    /// The pid the manager reports for the app (`None` when not running).
    fn pid(&mut self, name: &str) -> Result<Option<u32>>;
    /// Where the app's stdout ends up; known before the app starts.
    fn out_log(&self, name: &str) -> PathBuf {
        self.base().out_log(name)
    }
    /// The daemon's own log file.
    fn daemon_log(&self) -> PathBuf;
    /// Facts worth reporting (e.g. TurboProcess's event source).
    fn facts(&mut self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Every command and config file used so far, in order, without repeats.
    fn transcript(&self) -> &[String] {
        &self.base().transcript.lines
    }
    /// What every driver keeps.
    fn base(&self) -> &Base;
    fn base_mut(&mut self) -> &mut Base;
    /// The manager's own way to stop its daemon and apps (`turbo kill`, ...), once.
    fn stop(&mut self) -> Result<()>;
    /// Stops the daemon and its apps, then waits for our daemon child (killing it if it will
    /// not go); idempotent. Drop calls it too.
    fn shutdown(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.base_mut().down, true) {
            return Ok(());
        }
        let result = self.stop();
        let what = self.kind().label();
        reap(&mut self.base_mut().daemon, what);
        result
    }
}

/// Starts `kind`'s daemon with its home in `home` (created).
/// `env` is set for the TurboProcess daemon (e.g. `TURBO_EBPF=off`); the others take none.
pub fn launch(
    kind: Kind,
    tools: &Tools,
    home: &Path,
    subst: &Subst,
    env: &[(&str, &str)],
) -> Result<Box<dyn Manager>> {
    fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    if kind != Kind::Turbo && !env.is_empty() {
        bail!("only the TurboProcess daemon takes environment settings here");
    }
    let home = home.to_path_buf();
    let started = Instant::now();
    let m: Box<dyn Manager> = match kind {
        Kind::Turbo => Box::new(Turbo::launch(tools, home, subst.clone(), env)?),
        Kind::Pm2 => Box::new(Pm2::launch(tools, home, subst.clone())?),
        Kind::Supervisord => Box::new(Supervisord::launch(tools, home, subst.clone())?),
    };
    println!(
        "  {} daemon up in {:.2}s",
        kind.label(),
        started.elapsed().as_secs_f64()
    );
    Ok(m)
}

/// Replaces machine-specific path prefixes in transcripts (`$WORK` for the run's temporary
/// directory, repository-relative paths for the rest), so the report shows reproducible
/// commands.
#[derive(Clone, Debug, Default)]
pub struct Subst(pub Vec<(String, String)>);

impl Subst {
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (from, to) in &self.0 {
            out = out.replace(from.as_str(), to);
        }
        out
    }
}

/// Commands and files used, in order, deduplicated.
#[derive(Debug, Default)]
struct Transcript {
    subst: Subst,
    lines: Vec<String>,
}

impl Transcript {
    fn new(subst: Subst) -> Self {
        Self {
            subst,
            lines: Vec::new(),
        }
    }

    /// Records a command, prefixed with the environment variables that matter to it.
    fn cmd(&mut self, env: &str, cmd: &Command) {
        let line = if env.is_empty() {
            display(cmd)
        } else {
            format!("{env} {}", display(cmd))
        };
        self.push(line);
    }

    /// Writes a config file and records it as a here-document.
    fn file(&mut self, path: &Path, content: &str) -> Result<()> {
        fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
        self.push(format!("cat > {} <<'EOF'\n{}EOF", path.display(), content));
        Ok(())
    }

    fn push(&mut self, line: String) {
        let line = self.subst.apply(&line);
        if !self.lines.contains(&line) {
            self.lines.push(line);
        }
    }
}

fn quoted(s: &str) -> String {
    Json::from(s).pretty()
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `limit`.
fn poll<T>(limit: Duration, mut f: impl FnMut() -> Result<Option<T>>) -> Result<Option<T>> {
    let deadline = Instant::now() + limit;
    loop {
        sys::check_interrupted()?;
        if let Some(v) = f()? {
            return Ok(Some(v));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Stops our own daemon child: waits for it after the polite request, then kills it.
fn reap(child: &mut Option<Child>, what: &str) {
    if let Some(mut c) = child.take()
        && let Err(e) = wait_bounded(&mut c, DAEMON_LIMIT)
    {
        eprintln!("warning: {what} did not exit after shutdown ({e:#})");
    }
}

/// Spawns a daemon as our child in its own process group (so a Ctrl-C reaches only us, and
/// we stop it in order), with its output in `log`.
fn spawn_daemon(cmd: &mut Command, log: &Path) -> Result<Child> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("could not start `{}`", display(cmd)))
}

/// Waits until `ready` says the daemon `child` answers; fails when it exits first or does not
/// answer within [`DAEMON_LIMIT`], with the end of its output `log`.
fn wait_up(
    child: &mut Child,
    log: &Path,
    what: &str,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let up = poll(DAEMON_LIMIT, || {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{what} exited at start-up ({status}): {}",
                file_tail(log, 5)
            );
        }
        Ok(ready()?.then_some(()))
    })?;
    if up.is_none() {
        bail!(
            "{what} did not answer within {DAEMON_LIMIT:?}: {}",
            file_tail(log, 5)
        );
    }
    Ok(())
}

/// What every driver keeps: the manager's private home, the transcript, its daemon when that
/// is our child (PM2's daemonizes itself), and whether it was shut down.
#[derive(Debug)]
pub struct Base {
    home: PathBuf,
    transcript: Transcript,
    daemon: Option<Child>,
    down: bool,
}

impl Base {
    fn new(home: PathBuf, subst: Subst) -> Self {
        Self {
            home,
            transcript: Transcript::new(subst),
            daemon: None,
            down: false,
        }
    }

    /// `<home>/logs/<name>-out.log`: where each manager is told (or by default puts) an app's
    /// stdout.
    fn out_log(&self, name: &str) -> PathBuf {
        self.home.join("logs").join(format!("{name}-out.log"))
    }

    fn err_log(&self, name: &str) -> PathBuf {
        self.home.join("logs").join(format!("{name}-err.log"))
    }
}

/// A manager's command-line tool: the program and the environment that points it at the
/// private home (`shown`: the part of it the transcript shows).
#[derive(Debug)]
struct Cli {
    program: PathBuf,
    env: Vec<(&'static str, String)>,
    shown: String,
}

impl Cli {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("NO_COLOR", "1");
        cmd
    }
}

impl Base {
    /// `cli args`, recorded in the transcript; not yet run.
    fn command<S: AsRef<OsStr>>(&mut self, cli: &Cli, args: &[S]) -> Command {
        let mut cmd = cli.command();
        cmd.args(args);
        self.transcript.cmd(&cli.shown, &cmd);
        cmd
    }

    /// Writes the config file `<home>/<name>` and returns `cli start <it>`, not yet run.
    fn start_file(&mut self, cli: &Cli, name: &str, content: &str) -> Result<Command> {
        let path = self.home.join(name);
        self.transcript.file(&path, content)?;
        Ok(self.command(cli, &[OsStr::new("start"), path.as_os_str()]))
    }
}

/// The `Manager::base` and `base_mut` of a driver with a `base` field.
macro_rules! base_access {
    () => {
        fn base(&self) -> &Base {
            &self.base
        }

        fn base_mut(&mut self) -> &mut Base {
            &mut self.base
        }
    };
}

/// A driver's `Drop`: shut the manager down if the metric has not, and say so when that fails
/// (dropping must not fail).
macro_rules! shut_down_on_drop {
    ($driver:ty, $stop:literal) => {
        impl Drop for $driver {
            fn drop(&mut self) {
                if let Err(e) = self.shutdown() {
                    eprintln!(concat!("warning: ", $stop, ": {:#}"), e);
                }
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------

/// TurboProcess: `turbo-daemon --home H`, driven with the `turbo` CLI over its private bus.
struct Turbo {
    cli: Cli,
    base: Base,
}

impl Turbo {
    fn launch(tools: &Tools, home: PathBuf, subst: Subst, env: &[(&str, &str)]) -> Result<Self> {
        let mut base = Base::new(home.clone(), subst);
        let mut cmd = Command::new(&tools.turbo_daemon);
        cmd.arg("--home")
            .arg(&home)
            .env("TURBO_HOME", &home)
            .env_remove("TURBO_BUS_ADDRESS")
            .env_remove("TURBO_EBPF");
        let mut shown = Vec::new();
        for (k, v) in env {
            cmd.env(k, v);
            shown.push(format!("{k}={v}"));
        }
        base.transcript.cmd(&shown.join(" "), &cmd);
        let log = home.join("daemon.log");
        let mut child = spawn_daemon(&mut cmd, &log)?;
        let bus = format!("unix:path={}", home.join("bus.sock").display());
        let mut me = Self {
            cli: Cli {
                program: tools.turbo.clone(),
                shown: format!("TURBO_BUS_ADDRESS={bus}"),
                env: vec![
                    ("TURBO_BUS_ADDRESS", bus),
                    ("TURBO_HOME", home.display().to_string()),
                ],
            },
            base,
        };
        let up = wait_up(&mut child, &log, "turbo-daemon", || {
            Ok(home.join("bus.sock").exists()
                && exec_any(me.cli.command().arg("ping"), CLI_LIMIT)?
                    .status
                    .success())
        });
        // kept before failing, so that dropping `me` stops it
        me.base.daemon = Some(child);
        up.map(|()| me)
    }

    fn run(&mut self, args: &[&str]) -> Result<String> {
        exec(&mut self.base.command(&self.cli, args), CLI_LIMIT)
    }

    /// `turbo status --json`: one object per app instance.
    fn statuses(&mut self) -> Result<Vec<Json>> {
        let text = self.run(&["status", "--json"])?;
        let all = Json::parse(&text).context("`turbo status --json` printed invalid JSON")?;
        Ok(all
            .as_array()
            .context("`turbo status --json` did not print an array")?
            .to_vec())
    }

    fn status(&mut self, name: &str) -> Result<Option<Json>> {
        Ok(self
            .statuses()?
            .into_iter()
            .find(|a| a.get("name").and_then(Json::as_str) == Some(name)))
    }
}

impl Manager for Turbo {
    fn kind(&self) -> Kind {
        Kind::Turbo
    }

    fn start_all_command(&mut self, file: &str, apps: &[App]) -> Result<Command> {
        let mut yml = String::from("apps:\n");
        for app in apps {
            let argv: Vec<String> = app.argv.iter().map(|a| quoted(a)).collect();
            let _ = writeln!(yml, "  - name: {}", app.name);
            let _ = writeln!(yml, "    cmd: [{}]", argv.join(", "));
            match app.restart {
                Restart::Immediately => {
                    yml.push_str("    autorestart: always\n");
                    // no delay, no growth, no crash-loop stop: every kill -9 is restarted at once
                    yml.push_str("    restart: { delay: 0, factor: 1, crash_loop: { max: 0 } }\n");
                }
                Restart::Never => {
                    yml.push_str("    autorestart: never\n");
                    // by default one file for the whole run: no rotation while the bench reads it
                    let log = app.turbo_log.as_deref();
                    let _ = writeln!(
                        yml,
                        "    log: {}",
                        log.unwrap_or("{ format: text, max_size: 4gb }")
                    );
                }
            }
            if let Some(limit) = &app.max_memory {
                let _ = writeln!(yml, "    max_memory: {limit}");
            }
        }
        self.base
            .start_file(&self.cli, &format!("{file}.yml"), &yml)
    }

    fn remove(&mut self, name: &str) -> Result<()> {
        self.run(&["delete", name]).map(drop)
    }

    fn status_commands(&mut self) -> Vec<(String, Command)> {
        [&["status"][..], &["status", "--json"]]
            .into_iter()
            .map(|args| {
                let cmd = self.base.command(&self.cli, args);
                (format!("turbo {}", args.join(" ")), cmd)
            })
            .collect()
    }

    fn floor_command(&mut self) -> Option<(String, Command)> {
        Some((
            "turbo ping".to_owned(),
            self.base.command(&self.cli, &["ping"]),
        ))
    }

    fn pid(&mut self, name: &str) -> Result<Option<u32>> {
        Ok(self
            .status(name)?
            .and_then(|a| a.get("pid").and_then(Json::as_u32))
            .filter(|&p| p != 0))
    }

    fn daemon_log(&self) -> PathBuf {
        self.base.home.join("daemon.log")
    }

    fn app_pids(&mut self) -> Result<Vec<u32>> {
        Ok(self
            .statuses()?
            .iter()
            .filter_map(|a| a.get("pid").and_then(Json::as_u32))
            .filter(|&p| p != 0)
            .collect())
    }

    fn processes(&self) -> Vec<(String, u32)> {
        let Some(daemon) = self.base.daemon.as_ref().map(Child::id) else {
            return Vec::new();
        };
        if sys::cmdline(daemon).is_none() {
            return Vec::new();
        }
        let mut all = vec![("turbo-daemon".to_owned(), daemon)];
        all.extend(sys::children(daemon).into_iter().filter_map(|pid| {
            match sys::comm(pid).as_deref() {
                Some("dbus-daemon") => Some(("dbus-daemon (its private bus)".to_owned(), pid)),
                // the log keeper: the same binary in `--log-keeper` mode (docs/log-keeper.md)
                Some("turbo-daemon") => Some(("turbo-daemon --log-keeper".to_owned(), pid)),
                _ => None,
            }
        }));
        all
    }

    fn facts(&mut self) -> Vec<(String, String)> {
        let Ok(text) = self.run(&["info", "--json"]) else {
            return Vec::new();
        };
        let Ok(info) = Json::parse(&text) else {
            return Vec::new();
        };
        let get = |k: &str| info.get(k).and_then(Json::as_str).unwrap_or("?").to_owned();
        vec![
            ("TurboProcess event source".to_owned(), get("event_source")),
            (
                "TurboProcess event source reason".to_owned(),
                get("event_source_reason"),
            ),
        ]
    }

    base_access!();

    fn stop(&mut self) -> Result<()> {
        self.run(&["kill"]).map(drop)
    }
}

shut_down_on_drop!(Turbo, "turbo kill");

// ---------------------------------------------------------------------------------------------

/// PM2: its God daemon (it daemonizes itself) under a private `PM2_HOME`.
struct Pm2 {
    cli: Cli,
    base: Base,
}

impl Pm2 {
    fn launch(tools: &Tools, home: PathBuf, subst: Subst) -> Result<Self> {
        let pm2_home = home.display().to_string();
        let mut me = Self {
            cli: Cli {
                program: tools.pm2.clone(),
                shown: format!("PM2_HOME={pm2_home}"),
                env: vec![("PM2_HOME", pm2_home)],
            },
            base: Base::new(home, subst),
        };
        fs::create_dir_all(me.base.home.join("logs"))?;
        // `pm2 ping` starts the daemon when none runs
        me.run(&["ping"])?;
        Ok(me)
    }

    fn run(&mut self, args: &[&str]) -> Result<String> {
        exec(&mut self.base.command(&self.cli, args), CLI_LIMIT)
    }

    /// One app of an ecosystem file.
    fn app_json(&self, app: &App) -> Result<Json> {
        let (program, args) = app.argv.split_first().context("empty argv")?;
        let mut fields = vec![
            ("name", Json::from(app.name.as_str())),
            ("script", Json::from(program.as_str())),
            ("args", Json::from(args.to_vec())),
            // run the program itself, not through node or a shell
            ("interpreter", "none".into()),
            ("exec_mode", "fork".into()),
            // one instance, log files without the "-<id>" suffix
            ("merge_logs", true.into()),
            // no git metadata collection for the app's directory
            ("vizion", false.into()),
            // PM2's default paths, spelled out so the bench knows them before the start
            (
                "out_file",
                self.base.out_log(&app.name).display().to_string().into(),
            ),
            (
                "error_file",
                self.base.err_log(&app.name).display().to_string().into(),
            ),
        ];
        match app.restart {
            Restart::Immediately => {
                fields.push(("autorestart", true.into()));
                fields.push(("restart_delay", 0_usize.into()));
                // quick deaths count as "unstable restarts"; PM2 gives up after max_restarts
                fields.push(("max_restarts", 1_000_000_usize.into()));
            }
            Restart::Never => fields.push(("autorestart", false.into())),
        }
        if let Some(limit) = &app.max_memory {
            fields.push(("max_memory_restart", limit.as_str().into()));
        }
        Ok(obj(fields))
    }

    fn jlist(&mut self) -> Result<Vec<Json>> {
        let text = self.run(&["jlist"])?;
        let all = Json::parse(text.trim()).context("`pm2 jlist` printed invalid JSON")?;
        Ok(all
            .as_array()
            .context("`pm2 jlist` did not print an array")?
            .to_vec())
    }

    /// The daemon's pid from `$PM2_HOME/pm2.pid`, if that process is still PM2's.
    fn daemon_pid(&self) -> Option<u32> {
        let pid: u32 = fs::read_to_string(self.base.home.join("pm2.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let argv = sys::cmdline(pid)?;
        argv.iter()
            .any(|a| a.contains("PM2") || a.contains("God"))
            .then_some(pid)
    }
}

impl Manager for Pm2 {
    fn kind(&self) -> Kind {
        Kind::Pm2
    }

    fn start_all_command(&mut self, file: &str, apps: &[App]) -> Result<Command> {
        let entries = apps
            .iter()
            .map(|app| self.app_json(app))
            .collect::<Result<Vec<_>>>()?;
        let eco = obj([("apps", Json::Arr(entries))]);
        let eco = format!("{}\n", eco.pretty());
        self.base
            .start_file(&self.cli, &format!("{file}.json"), &eco)
    }

    fn remove(&mut self, name: &str) -> Result<()> {
        self.run(&["delete", name]).map(drop)
    }

    fn status_commands(&mut self) -> Vec<(String, Command)> {
        ["jlist", "ls"]
            .into_iter()
            .map(|arg| (format!("pm2 {arg}"), self.base.command(&self.cli, &[arg])))
            .collect()
    }

    fn pid(&mut self, name: &str) -> Result<Option<u32>> {
        Ok(self
            .jlist()?
            .iter()
            .find(|a| a.get("name").and_then(Json::as_str) == Some(name))
            .and_then(|a| a.get("pid").and_then(Json::as_u32))
            .filter(|&p| p != 0))
    }

    fn app_pids(&mut self) -> Result<Vec<u32>> {
        Ok(self
            .jlist()?
            .iter()
            .filter_map(|a| a.get("pid").and_then(Json::as_u32))
            .filter(|&p| p != 0)
            .collect())
    }

    fn processes(&self) -> Vec<(String, u32)> {
        self.daemon_pid()
            .map(|pid| vec![("PM2 God daemon (node)".to_owned(), pid)])
            .unwrap_or_default()
    }

    fn daemon_log(&self) -> PathBuf {
        self.base.home.join("pm2.log")
    }

    base_access!();

    fn stop(&mut self) -> Result<()> {
        let daemon = self.daemon_pid();
        let result = self.run(&["kill"]).map(drop);
        if let Some(pid) = daemon {
            // `pm2 kill` waits for the daemon; if it is still there, it is stuck
            let gone = poll(Duration::from_secs(5), || {
                Ok(sys::cmdline(pid).is_none().then_some(()))
            });
            if !matches!(gone, Ok(Some(()))) && self.daemon_pid() == Some(pid) {
                eprintln!("warning: the PM2 daemon (pid {pid}) survived `pm2 kill`; killing it");
                let _ = sys::send_signal(pid, sys::SIGKILL);
            }
        }
        result
    }
}

shut_down_on_drop!(Pm2, "pm2 kill");

// ---------------------------------------------------------------------------------------------

/// supervisord in the foreground (`-n`) as our child; programs are added with `[include]`d
/// files and `supervisorctl update`.
struct Supervisord {
    ctl: PathBuf,
    conf: PathBuf,
    base: Base,
}

impl Supervisord {
    fn launch(tools: &Tools, home: PathBuf, subst: Subst) -> Result<Self> {
        let conf = home.join("supervisord.conf");
        let mut base = Base::new(home.clone(), subst);
        let h = home.display();
        fs::create_dir_all(home.join("conf.d"))?;
        fs::create_dir_all(home.join("logs"))?;
        base.transcript.file(
            &conf,
            &format!(
                "[unix_http_server]\n\
                 file={h}/supervisor.sock\n\
                 \n\
                 [supervisord]\n\
                 logfile={h}/supervisord.log\n\
                 pidfile={h}/supervisord.pid\n\
                 childlogdir={h}/logs\n\
                 \n\
                 [rpcinterface:supervisor]\n\
                 supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\
                 \n\
                 [supervisorctl]\n\
                 serverurl=unix://{h}/supervisor.sock\n\
                 \n\
                 [include]\n\
                 files = {h}/conf.d/*.ini\n"
            ),
        )?;
        let mut cmd = Command::new(&tools.supervisord);
        cmd.arg("-n").arg("-c").arg(&conf);
        base.transcript.cmd("", &cmd);
        let log = home.join("supervisord.out");
        let mut child = spawn_daemon(&mut cmd, &log)?;
        let mut me = Self {
            ctl: tools.supervisorctl.clone(),
            conf,
            base,
        };
        let up = wait_up(&mut child, &log, "supervisord", || {
            let out = exec_any(me.ctl().arg("pid"), CLI_LIMIT)?;
            Ok(out.stdout.trim().parse::<u32>().is_ok())
        });
        // kept before failing, so that dropping `me` stops it
        me.base.daemon = Some(child);
        up.map(|()| me)
    }

    fn ctl(&self) -> Command {
        let mut cmd = Command::new(&self.ctl);
        cmd.arg("-c").arg(&self.conf);
        cmd
    }

    /// Runs supervisorctl; its exit status is not trusted (it is non-zero for e.g. a pid of a
    /// stopped program), so failures show up as `ERROR` in its output.
    fn run(&mut self, args: &[&str]) -> Result<String> {
        let mut cmd = self.ctl();
        cmd.args(args);
        self.base.transcript.cmd("", &cmd);
        let out = exec_any(&mut cmd, CLI_LIMIT)?;
        if out.stdout.contains("ERROR") || out.stderr.contains("ERROR") {
            bail!(
                "`{}` failed: {} {}",
                display(&cmd),
                out.stdout.trim(),
                out.stderr.trim()
            );
        }
        Ok(out.stdout)
    }

    /// The `[program:x]` section of one app.
    fn program_ini(&self, app: &App) -> Result<String> {
        if app.argv.iter().any(|a| a.contains([' ', '%', '"', '\''])) {
            bail!("supervisord command lines are space-separated: keep argv plain");
        }
        if app.max_memory.is_some() {
            bail!("supervisord has no memory limit");
        }
        let autorestart = match app.restart {
            Restart::Immediately => "true",
            Restart::Never => "false",
        };
        Ok(format!(
            "[program:{name}]\n\
             command={command}\n\
             autostart=true\n\
             autorestart={autorestart}\n\
             startsecs=0\n\
             stdout_logfile={out}\n\
             stdout_logfile_maxbytes=0\n\
             stderr_logfile={err}\n\
             stderr_logfile_maxbytes=0\n",
            name = app.name,
            command = app.argv.join(" "),
            out = self.base.out_log(&app.name).display(),
            err = self.base.err_log(&app.name).display(),
        ))
    }

    fn program_file(&self, name: &str) -> PathBuf {
        self.base.home.join("conf.d").join(format!("{name}.ini"))
    }
}

impl Manager for Supervisord {
    fn kind(&self) -> Kind {
        Kind::Supervisord
    }

    fn start_all_command(&mut self, file: &str, apps: &[App]) -> Result<Command> {
        let mut ini = String::new();
        for app in apps {
            if !ini.is_empty() {
                ini.push('\n');
            }
            ini.push_str(&self.program_ini(app)?);
        }
        let path = self.program_file(file);
        self.base.transcript.file(&path, &ini)?;
        let mut cmd = self.ctl();
        cmd.arg("update");
        self.base.transcript.cmd("", &cmd);
        Ok(cmd)
    }

    fn remove(&mut self, name: &str) -> Result<()> {
        let path = self.program_file(name);
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        self.base.transcript.push(format!("rm {}", path.display()));
        self.run(&["update"]).map(drop)
    }

    fn status_commands(&mut self) -> Vec<(String, Command)> {
        let mut cmd = self.ctl();
        cmd.arg("status");
        self.base.transcript.cmd("", &cmd);
        vec![("supervisorctl status".to_owned(), cmd)]
    }

    fn pid(&mut self, name: &str) -> Result<Option<u32>> {
        let mut cmd = self.ctl();
        cmd.args(["pid", name]);
        self.base.transcript.cmd("", &cmd);
        let out = exec_any(&mut cmd, CLI_LIMIT)?;
        Ok(out.stdout.trim().parse::<u32>().ok().filter(|&p| p != 0))
    }

    fn daemon_log(&self) -> PathBuf {
        self.base.home.join("supervisord.log")
    }

    fn app_pids(&mut self) -> Result<Vec<u32>> {
        let mut cmd = self.ctl();
        cmd.arg("status");
        self.base.transcript.cmd("", &cmd);
        // non-zero when any program is not running: read the lines instead
        // (`name  RUNNING   pid 1234, uptime 0:00:05`)
        let out = exec_any(&mut cmd, CLI_LIMIT)?;
        Ok(out
            .stdout
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("RUNNING"))
            .filter_map(|l| {
                let rest = l.split_once(" pid ")?.1;
                rest.split(',').next()?.trim().parse().ok()
            })
            .collect())
    }

    fn processes(&self) -> Vec<(String, u32)> {
        self.base
            .daemon
            .as_ref()
            .map(Child::id)
            .filter(|&pid| sys::cmdline(pid).is_some())
            .map(|pid| vec![("supervisord (python)".to_owned(), pid)])
            .unwrap_or_default()
    }

    base_access!();

    fn stop(&mut self) -> Result<()> {
        self.run(&["shutdown"]).map(drop)
    }
}

shut_down_on_drop!(Supervisord, "supervisorctl shutdown");
