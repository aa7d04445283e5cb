//! The three process managers behind one small interface, so that a metric runs the same
//! workload under each: TurboProcess (the release binaries), PM2 and supervisord (the private
//! installs under `target/bench-tools/`). Each gets a private home in the run's temporary
//! directory, talks only over local sockets, and is shut down (then killed, if it will not go)
//! when dropped, whatever happened before.

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
}

impl App {
    /// An app without a memory limit.
    pub fn new(name: &str, argv: Vec<String>, restart: Restart) -> Self {
        Self {
            name: name.to_owned(),
            argv,
            restart,
            max_memory: None,
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
    /// The pid the manager reports for the app (`None` when not running).
    fn pid(&mut self, name: &str) -> Result<Option<u32>>;
    /// Where the app's stdout ends up; known before the app starts.
    fn out_log(&self, name: &str) -> PathBuf;
    /// The daemon's own log file.
    fn daemon_log(&self) -> PathBuf;
    /// Facts worth reporting (e.g. TurboProcess's event source).
    fn facts(&mut self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Every command and config file used so far, in order, without repeats.
    fn transcript(&self) -> &[String];
    /// Stops the daemon and its apps; idempotent. Drop calls it too.
    fn shutdown(&mut self) -> Result<()>;
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

// ---------------------------------------------------------------------------------------------

/// TurboProcess: `turbo-daemon --home H`, driven with the `turbo` CLI over its private bus.
struct Turbo {
    turbo: PathBuf,
    home: PathBuf,
    daemon: Option<Child>,
    transcript: Transcript,
    down: bool,
}

impl Turbo {
    fn launch(tools: &Tools, home: PathBuf, subst: Subst, env: &[(&str, &str)]) -> Result<Self> {
        let mut transcript = Transcript::new(subst);
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
        transcript.cmd(&shown.join(" "), &cmd);
        let log = home.join("daemon.log");
        let child = spawn_daemon(&mut cmd, &log)?;
        let mut me = Self {
            turbo: tools.turbo.clone(),
            home,
            daemon: Some(child),
            transcript,
            down: false,
        };
        let up = poll(DAEMON_LIMIT, || {
            if let Some(c) = me.daemon.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!(
                    "turbo-daemon exited at start-up ({status}): {}",
                    file_tail(&log, 5)
                );
            }
            let ok = me.home.join("bus.sock").exists()
                && exec_any(me.cli().arg("ping"), CLI_LIMIT)?.status.success();
            Ok(ok.then_some(()))
        })?;
        if up.is_none() {
            bail!(
                "turbo-daemon did not answer within {DAEMON_LIMIT:?}: {}",
                file_tail(&log, 5)
            );
        }
        Ok(me)
    }

    fn env_line(&self) -> String {
        format!(
            "TURBO_BUS_ADDRESS=unix:path={}/bus.sock",
            self.home.display()
        )
    }

    fn cli(&self) -> Command {
        let mut cmd = Command::new(&self.turbo);
        cmd.env(
            "TURBO_BUS_ADDRESS",
            format!("unix:path={}", self.home.join("bus.sock").display()),
        )
        .env("TURBO_HOME", &self.home)
        .env("NO_COLOR", "1");
        cmd
    }

    fn run(&mut self, args: &[&str]) -> Result<String> {
        let mut cmd = self.cli();
        cmd.args(args);
        let env = self.env_line();
        self.transcript.cmd(&env, &cmd);
        exec(&mut cmd, CLI_LIMIT)
    }

    fn status(&mut self, name: &str) -> Result<Option<Json>> {
        let text = self.run(&["status", "--json"])?;
        let all = Json::parse(&text).context("`turbo status --json` printed invalid JSON")?;
        Ok(all
            .as_array()
            .context("`turbo status --json` did not print an array")?
            .iter()
            .find(|a| a.get("name").and_then(Json::as_str) == Some(name))
            .cloned())
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
                    // one file for the whole run: no rotation while the bench reads it
                    yml.push_str("    log: { format: text, max_size: 4gb }\n");
                }
            }
            if let Some(limit) = &app.max_memory {
                let _ = writeln!(yml, "    max_memory: {limit}");
            }
        }
        let path = self.home.join(format!("{file}.yml"));
        self.transcript.file(&path, &yml)?;
        let mut cmd = self.cli();
        cmd.arg("start").arg(&path);
        let env = self.env_line();
        self.transcript.cmd(&env, &cmd);
        Ok(cmd)
    }

    fn remove(&mut self, name: &str) -> Result<()> {
        self.run(&["delete", name]).map(drop)
    }

    fn status_commands(&mut self) -> Vec<(String, Command)> {
        let env = self.env_line();
        [&["status"][..], &["status", "--json"]]
            .into_iter()
            .map(|args| {
                let mut cmd = self.cli();
                cmd.args(args);
                self.transcript.cmd(&env, &cmd);
                (format!("turbo {}", args.join(" ")), cmd)
            })
            .collect()
    }

    fn pid(&mut self, name: &str) -> Result<Option<u32>> {
        Ok(self
            .status(name)?
            .and_then(|a| a.get("pid").and_then(Json::as_u32))
            .filter(|&p| p != 0))
    }

    fn out_log(&self, name: &str) -> PathBuf {
        self.home.join("logs").join(format!("{name}-out.log"))
    }

    fn daemon_log(&self) -> PathBuf {
        self.home.join("daemon.log")
    }

    fn app_pids(&mut self) -> Result<Vec<u32>> {
        let text = self.run(&["status", "--json"])?;
        let all = Json::parse(&text).context("`turbo status --json` printed invalid JSON")?;
        Ok(all
            .as_array()
            .context("`turbo status --json` did not print an array")?
            .iter()
            .filter_map(|a| a.get("pid").and_then(Json::as_u32))
            .filter(|&p| p != 0)
            .collect())
    }

    fn processes(&self) -> Vec<(String, u32)> {
        let Some(daemon) = self.daemon.as_ref().map(Child::id) else {
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

    fn transcript(&self) -> &[String] {
        &self.transcript.lines
    }

    fn shutdown(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.down, true) {
            return Ok(());
        }
        let result = self.run(&["kill"]).map(drop);
        reap(&mut self.daemon, "turbo-daemon");
        result
    }
}

impl Drop for Turbo {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("warning: turbo kill: {e:#}");
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// PM2: its God daemon (it daemonizes itself) under a private `PM2_HOME`.
struct Pm2 {
    pm2: PathBuf,
    home: PathBuf,
    transcript: Transcript,
    down: bool,
}

impl Pm2 {
    fn launch(tools: &Tools, home: PathBuf, subst: Subst) -> Result<Self> {
        let mut me = Self {
            pm2: tools.pm2.clone(),
            home,
            transcript: Transcript::new(subst),
            down: false,
        };
        fs::create_dir_all(me.home.join("logs"))?;
        // `pm2 ping` starts the daemon when none runs
        me.run(&["ping"])?;
        Ok(me)
    }

    fn cli(&self) -> Command {
        let mut cmd = Command::new(&self.pm2);
        cmd.env("PM2_HOME", &self.home).env("NO_COLOR", "1");
        cmd
    }

    fn run(&mut self, args: &[&str]) -> Result<String> {
        let mut cmd = self.cli();
        cmd.args(args);
        let env = format!("PM2_HOME={}", self.home.display());
        self.transcript.cmd(&env, &cmd);
        exec(&mut cmd, CLI_LIMIT)
    }

    /// One app of an ecosystem file.
    fn app_json(&self, app: &App) -> Result<Json> {
        let (program, args) = app.argv.split_first().context("empty argv")?;
        let logs = self.home.join("logs");
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
                logs.join(format!("{}-out.log", app.name))
                    .display()
                    .to_string()
                    .into(),
            ),
            (
                "error_file",
                logs.join(format!("{}-err.log", app.name))
                    .display()
                    .to_string()
                    .into(),
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
        let pid: u32 = fs::read_to_string(self.home.join("pm2.pid"))
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
        let path = self.home.join(format!("{file}.json"));
        self.transcript
            .file(&path, &format!("{}\n", eco.pretty()))?;
        let mut cmd = self.cli();
        cmd.arg("start").arg(&path);
        let env = format!("PM2_HOME={}", self.home.display());
        self.transcript.cmd(&env, &cmd);
        Ok(cmd)
    }

    fn remove(&mut self, name: &str) -> Result<()> {
        self.run(&["delete", name]).map(drop)
    }

    fn status_commands(&mut self) -> Vec<(String, Command)> {
        let env = format!("PM2_HOME={}", self.home.display());
        ["jlist", "ls"]
            .into_iter()
            .map(|arg| {
                let mut cmd = self.cli();
                cmd.arg(arg);
                self.transcript.cmd(&env, &cmd);
                (format!("pm2 {arg}"), cmd)
            })
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
    fn out_log(&self, name: &str) -> PathBuf {
        self.home.join("logs").join(format!("{name}-out.log"))
    }

    fn daemon_log(&self) -> PathBuf {
        self.home.join("pm2.log")
    }

    fn transcript(&self) -> &[String] {
        &self.transcript.lines
    }

    fn shutdown(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.down, true) {
            return Ok(());
        }
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

impl Drop for Pm2 {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("warning: pm2 kill: {e:#}");
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// supervisord in the foreground (`-n`) as our child; programs are added with `[include]`d
/// files and `supervisorctl update`.
struct Supervisord {
    ctl: PathBuf,
    home: PathBuf,
    conf: PathBuf,
    daemon: Option<Child>,
    transcript: Transcript,
    down: bool,
}

impl Supervisord {
    fn launch(tools: &Tools, home: PathBuf, subst: Subst) -> Result<Self> {
        let mut transcript = Transcript::new(subst);
        let h = home.display();
        let conf = home.join("supervisord.conf");
        fs::create_dir_all(home.join("conf.d"))?;
        fs::create_dir_all(home.join("logs"))?;
        transcript.file(
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
        transcript.cmd("", &cmd);
        let log = home.join("supervisord.out");
        let child = spawn_daemon(&mut cmd, &log)?;
        let mut me = Self {
            ctl: tools.supervisorctl.clone(),
            home,
            conf,
            daemon: Some(child),
            transcript,
            down: false,
        };
        let up = poll(DAEMON_LIMIT, || {
            if let Some(c) = me.daemon.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!(
                    "supervisord exited at start-up ({status}): {}",
                    file_tail(&log, 5)
                );
            }
            let out = exec_any(me.ctl().arg("pid"), CLI_LIMIT)?;
            Ok(out.stdout.trim().parse::<u32>().ok().map(drop))
        })?;
        if up.is_none() {
            bail!(
                "supervisord did not answer within {DAEMON_LIMIT:?}: {}",
                file_tail(&log, 5)
            );
        }
        Ok(me)
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
        self.transcript.cmd("", &cmd);
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
        let logs = self.home.join("logs");
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
            out = logs.join(format!("{}-out.log", app.name)).display(),
            err = logs.join(format!("{}-err.log", app.name)).display(),
        ))
    }

    fn program_file(&self, name: &str) -> PathBuf {
        self.home.join("conf.d").join(format!("{name}.ini"))
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
        self.transcript.file(&path, &ini)?;
        let mut cmd = self.ctl();
        cmd.arg("update");
        self.transcript.cmd("", &cmd);
        Ok(cmd)
    }

    fn remove(&mut self, name: &str) -> Result<()> {
        let path = self.program_file(name);
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        self.transcript.push(format!("rm {}", path.display()));
        self.run(&["update"]).map(drop)
    }

    fn status_commands(&mut self) -> Vec<(String, Command)> {
        let mut cmd = self.ctl();
        cmd.arg("status");
        self.transcript.cmd("", &cmd);
        vec![("supervisorctl status".to_owned(), cmd)]
    }

    fn pid(&mut self, name: &str) -> Result<Option<u32>> {
        let mut cmd = self.ctl();
        cmd.args(["pid", name]);
        self.transcript.cmd("", &cmd);
        let out = exec_any(&mut cmd, CLI_LIMIT)?;
        Ok(out.stdout.trim().parse::<u32>().ok().filter(|&p| p != 0))
    }

    fn out_log(&self, name: &str) -> PathBuf {
        self.home.join("logs").join(format!("{name}-out.log"))
    }

    fn daemon_log(&self) -> PathBuf {
        self.home.join("supervisord.log")
    }

    fn app_pids(&mut self) -> Result<Vec<u32>> {
        let mut cmd = self.ctl();
        cmd.arg("status");
        self.transcript.cmd("", &cmd);
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
        self.daemon
            .as_ref()
            .map(Child::id)
            .filter(|&pid| sys::cmdline(pid).is_some())
            .map(|pid| vec![("supervisord (python)".to_owned(), pid)])
            .unwrap_or_default()
    }

    fn transcript(&self) -> &[String] {
        &self.transcript.lines
    }

    fn shutdown(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.down, true) {
            return Ok(());
        }
        let result = self.run(&["shutdown"]).map(drop);
        reap(&mut self.daemon, "supervisord");
        result
    }
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("warning: supervisorctl shutdown: {e:#}");
        }
    }
}
