//! The command line grammar (clap derive), per DESIGN §6.
//!
//! Only the shape of the arguments lives here; what they mean (defaults that need the current
//! directory, `K=V` parsing, yml detection) is decided by the commands, where it is unit-tested.

use clap::{Args, Parser, Subcommand};

/// TurboProcess: keeps your apps running and tells you why they died.
#[derive(Debug, Parser)]
#[command(
    name = "turbo",
    version,
    propagate_version = true,
    long_about = "TurboProcess: keeps your apps running and tells you why they died.\n\n\
        `turbo` is the command line client of turbo-daemon, a process manager for Linux servers \
        (a PM2 / supervisord alternative). It starts apps, restarts them when they die, records \
        how they died and keeps their logs. Every command talks to the daemon over D-Bus; a \
        command that needs a daemon starts one in user mode when none answers."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// Where the command runs: this machine, another host over SSH, or several (docs/fleet.md).
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Run the command on another host's daemon over SSH, or on several (comma-separated);
    /// `TURBO_HOST` when not given.
    #[arg(
        short = 'H',
        long = "host",
        global = true,
        value_name = "[USER@]HOST[:PORT],..."
    )]
    pub host: Option<String>,
    /// Run the command on the hosts of FILE (one per line: [USER@]HOST[:PORT] then group
    /// names; `#` comments); FILE@GROUP keeps the hosts of one group.
    #[arg(
        long,
        global = true,
        value_name = "FILE[@GROUP]",
        value_hint = clap::ValueHint::FilePath
    )]
    pub hosts: Option<String>,
    /// With several hosts: how many to work on at once (default 16; 1 for the rollouts of
    /// apply, restart and reload).
    #[arg(long, global = true, value_name = "N")]
    pub parallel: Option<std::num::NonZeroUsize>,
    /// With several hosts: go on with the next hosts after one fails a rollout.
    #[arg(long, global = true)]
    pub continue_on_error: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Start a script, a command, or every app of a turbo.yml.
    Start(StartArgs),
    /// Make the daemon's apps match a turbo.yml: show the difference, then add, update,
    /// restart or reload apps (and remove those the file dropped, with --prune).
    Apply(ApplyArgs),
    /// Check a turbo.yml, or show the configuration an app runs with.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Stop apps (they stay listed).
    Stop(TargetArg),
    /// Restart apps (or start them, if stopped).
    Restart(RestartArgs),
    /// Stop apps and forget them.
    Delete(TargetArg),
    /// Replace running instances one at a time, each once its replacement is ready (no downtime
    /// when the app serves from a `listen:` socket).
    Reload(TargetArg),
    /// Run N instances of an app: new ones start, the highest-numbered stop.
    Scale(ScaleArgs),
    /// Send a signal to the main process of running apps (authorised like a restart).
    Signal(SignalArgs),
    /// Show the apps and their state.
    #[command(visible_alias = "ls", alias = "list")]
    Status(StatusArgs),
    /// Show the daemon: version, mode, event source, bus address, paths.
    Info(JsonArg),
    /// Print the last lines of the apps' logs, and optionally follow them.
    Logs(LogsArgs),
    /// Empty the apps' log files (current and rotated).
    Flush(FlushArg),
    /// Clear restart counters and crash-loop state; an errored app starts again.
    Reset(TargetArg),
    /// Show an app's crash timeline: when, how, and its last stderr lines.
    Crashes(NameJson),
    /// Show what the kernel saw an app do lately: execs, signals, exits, OOM kills, TCP events.
    Events(EventsArgs),
    /// Show everything about one app: state, command, restart policy, logs, last crash.
    Describe(DescribeArgs),
    /// Write the app list to a dump file (`turbo resurrect` reads it back).
    Save,
    /// Start the apps of the dump file that are not running.
    Resurrect,
    /// Check that the daemon answers.
    Ping,
    /// Stop every app, then the daemon.
    Kill,
    /// The daemon itself: `turbo daemon upgrade`.
    #[command(subcommand)]
    Daemon(DaemonCmd),
    /// Install the systemd unit of system mode (with its bus and polkit policy) and enable it.
    Startup(StartupArgs),
    /// Disable the systemd unit and remove what `turbo startup` installed.
    Unstartup(UnstartupArgs),
    /// Live dashboard: state, CPU and memory over time, logs and crashes of the selected app.
    Monit,
    /// Print a completion script for a shell (app names are completed from the daemon).
    Completions(CompletionsArgs),
    /// Print the man page, or write one page per command into a directory.
    Man(ManArgs),
    /// Convert another process manager's configuration into a turbo.yml.
    #[command(subcommand)]
    Import(ImportFrom),
    /// Wait until the apps are ready (a fleet rollout runs it on each host).
    #[command(name = "__wait-ready", hide = true)]
    WaitReady(WaitReadyArgs),
    /// Print the names of the apps, one per line, for completion scripts; never starts a daemon.
    #[command(name = "__complete-apps", hide = true)]
    CompleteApps,
}

/// `turbo __wait-ready`.
#[derive(Debug, Args)]
pub struct WaitReadyArgs {
    /// How long to wait for all of them.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub timeout: String,
    /// The apps (names, ids, `@group`, `all`).
    #[arg(required = true)]
    pub targets: Vec<String>,
}

/// `turbo completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// The shells `turbo completions` writes scripts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    /// Bash (with the bash-completion package).
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

/// `turbo man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write turbo.1 and one turbo-<command>.1 per command into DIR instead of printing turbo.1.
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub out_dir: Option<std::path::PathBuf>,
}

/// `turbo import <from>`.
#[derive(Debug, Subcommand)]
pub enum ImportFrom {
    /// A PM2 ecosystem file (JavaScript, JSON or YAML) or a PM2 dump (`pm2 save`'s dump.pm2).
    ///
    /// A JavaScript file (ecosystem.config.js, .cjs, .mjs) is evaluated by `node` from PATH,
    /// which prints its export as JSON, as `pm2 start` would evaluate it.
    ///
    /// Every option with an equivalent in turbo.yml is converted; those without one are listed
    /// on stderr. The result goes to stdout unless -o names a file.
    Pm2(ImportPm2Args),
}

/// `turbo import pm2`.
#[derive(Debug, Args)]
pub struct ImportPm2Args {
    /// ecosystem.config.js, ecosystem.json, ecosystem.yml, or ~/.pm2/dump.pm2.
    #[arg(value_name = "ECOSYSTEM|dump.pm2", value_hint = clap::ValueHint::FilePath)]
    pub file: std::path::PathBuf,
    /// Write the turbo.yml here instead of stdout.
    #[arg(short, long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub output: Option<std::path::PathBuf>,
    /// Also apply the ecosystem's `env_<NAME>` blocks, like `pm2 start --env NAME`.
    #[arg(long = "env", value_name = "NAME")]
    pub env_name: Option<String>,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `turbo daemon ...`.
#[derive(Debug, Subcommand)]
pub enum DaemonCmd {
    /// Re-execute the daemon binary from its install path in place (after replacing it): apps
    /// keep running with the same pids, no log line is lost, the new daemon adopts everything.
    Upgrade,
}

/// `turbo startup`.
#[derive(Debug, Args)]
pub struct StartupArgs {
    /// Print the unit that would be installed, and do nothing else.
    #[arg(long)]
    pub print: bool,
    /// Write under DIR instead of / and do not run systemctl (packaging, tests).
    #[arg(long, value_name = "DIR", env = "TURBO_STARTUP_ROOT")]
    pub root: Option<std::path::PathBuf>,
}

/// `turbo unstartup`.
#[derive(Debug, Args)]
pub struct UnstartupArgs {
    /// Also stop the service now (the daemon stops its apps first).
    #[arg(long)]
    pub now: bool,
    /// Remove from under DIR instead of / and do not run systemctl.
    #[arg(long, value_name = "DIR", env = "TURBO_STARTUP_ROOT")]
    pub root: Option<std::path::PathBuf>,
}

/// `turbo start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// A script (`app.py`), a command (`/bin/sleep`, or `"python3 -m http.server"`, split into
    /// words like a shell would when no file has that name), or a config file (`*.yml`).
    /// Without it, the first word after `--` is the command.
    #[arg(value_name = "SCRIPT|CMD|FILE.yml", required_unless_present = "args")]
    pub target: Option<String>,
    /// App name (default: the script's file name without extension).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Working directory (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Extra environment variable; repeatable. With a config file: NAME, the profile whose
    /// `env_NAME:` blocks are merged over `env:`.
    #[arg(long = "env", value_name = "KEY=VALUE|NAME")]
    pub env: Vec<String>,
    /// Do not restart the app when it exits.
    #[arg(long)]
    pub no_autorestart: bool,
    /// Restart the app when its resident memory reaches this size (e.g. 512mb).
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<String>,
    /// Run this many instances (`max`: one per online CPU); each gets TURBO_INSTANCE.
    #[arg(long, value_name = "N|max")]
    pub instances: Option<String>,
    /// Restart the app when files under its working directory change (watch mode).
    #[arg(long)]
    pub watch: bool,
    /// Wait this long before the first restart after an exit (e.g. 100ms, 5s; default 1s);
    /// later restarts back off from there, like `restart.delay` in turbo.yml.
    #[arg(long, value_name = "DURATION")]
    pub restart_delay: Option<String>,
    /// With the name of an app the daemon has: start it without starting the dependencies it
    /// waits for (`depends_on`); it waits in `waiting` until they are met or `depends_timeout`.
    #[arg(long)]
    pub no_deps: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
    /// Arguments passed to the script or command.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// `turbo signal`.
#[derive(Debug, Args)]
pub struct SignalArgs {
    /// The signal: a name with or without SIG, in any case (SIGHUP, hup, USR1), or a number.
    #[arg(value_name = "SIGNAL")]
    pub signal: String,
    /// App name (every instance), `NAME:N` (instance N), app id, `@group`, or `all`.
    #[arg(value_name = "NAME|NAME:N|ID|@GROUP|all")]
    pub target: String,
}

/// `turbo status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// App name (every instance), `NAME:N` (instance N), app id, `@group`, or `all`: show only
    /// these apps.
    #[arg(value_name = "NAME|NAME:N|ID|@GROUP|all")]
    pub target: Option<String>,
    /// Order the rows by this column (ties by id).
    #[arg(long, value_enum, default_value_t = StatusSort::Id)]
    pub sort: StatusSort,
    /// Print JSON instead of a human view.
    #[arg(long)]
    pub json: bool,
}

/// The orders of `turbo status --sort`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusSort {
    /// By app id (the order apps were added in).
    Id,
    /// By name, then instance.
    Name,
    /// By group (apps in none last), then name.
    Group,
    /// By state.
    State,
    /// By resident memory, largest first.
    Memory,
    /// By restarts, most first.
    Restarts,
}

/// `turbo scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// App name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// How many instances to run (at least 1).
    #[arg(value_name = "N")]
    pub count: u32,
}

/// `--wait` and `--wait-timeout` of start and restart.
#[derive(Debug, Args, Default, Clone)]
pub struct WaitArgs {
    /// Return once the apps are ready (online and, with a health check, healthy); fail with
    /// the last health-check error if they are not in time or crash.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits (e.g. 90s, 2m).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "60s",
        requires = "wait"
    )]
    pub wait_timeout: String,
}

/// `turbo restart`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// App name (every instance), `NAME:N` (instance N), app id, `@group`, or `all`.
    #[arg(value_name = "NAME|NAME:N|ID|@GROUP|all")]
    pub target: String,
    /// Read the app's turbo.yml again (`describe` shows which) with this shell's environment
    /// for `${VAR}` and its `env_file` again, apply the app's new definition, then restart it.
    #[arg(long)]
    pub update_env: bool,
    /// Merge each app's `env_NAME:` block over its `env:` (with --update-env).
    #[arg(long = "env", value_name = "NAME", requires = "update_env")]
    pub profile: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// An app selector for stop/restart/delete.
#[derive(Debug, Args)]
pub struct TargetArg {
    /// App name (every instance), `NAME:N` (instance N), app id, `@group`, or `all`.
    #[arg(value_name = "NAME|NAME:N|ID|@GROUP|all")]
    pub target: String,
}

/// One app, and `--json`.
#[derive(Debug, Args)]
pub struct NameJson {
    /// App name or id.
    #[arg(value_name = "NAME|ID")]
    pub name: String,
    /// Print JSON instead of a human view.
    #[arg(long)]
    pub json: bool,
}

/// `turbo events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// App name or id.
    #[arg(value_name = "NAME|ID")]
    pub name: String,
    /// Keep printing events as they happen.
    #[arg(short, long)]
    pub follow: bool,
    /// Print JSON (with --follow, one object per line).
    #[arg(long)]
    pub json: bool,
}

/// `turbo describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// App name or id.
    #[arg(value_name = "NAME|ID")]
    pub name: String,
    /// Print JSON instead of a human view.
    #[arg(long)]
    pub json: bool,
    /// Also show the values of the app's environment variables (root only: they are secrets).
    #[arg(long)]
    pub show_env: bool,
}

/// A `--json` switch.
#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON instead of a human view.
    #[arg(long)]
    pub json: bool,
}

/// `turbo logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// App name or id, or `name:N` for one instance (default: every app).
    pub name: Option<String>,
    /// How many of the last lines to print from each log.
    #[arg(long, short = 'n', default_value_t = 15, value_name = "N")]
    pub lines: usize,
    /// Only stderr.
    #[arg(long, conflicts_with = "out")]
    pub err: bool,
    /// Only stdout.
    #[arg(long)]
    pub out: bool,
    /// Keep printing new lines until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// One JSON object per line: {"app","instance","pid","stream","at","line"} (+ "line_b64" for
    /// non-UTF-8 bytes; no "instance" and "pid" in records older than instance tags).
    #[arg(long)]
    pub json: bool,
    /// Print the lines as the apps wrote them, control characters included (by default they
    /// are shown escaped, e.g. `\x1b[2J`, so an app cannot drive your terminal).
    #[arg(long, conflicts_with = "json")]
    pub raw: bool,
    /// Only lines stamped at or after this: a duration back from now (30s, 10m, 2h, 1d) or a
    /// time (2026-01-02, 2026-01-02T03:04:05Z, 2026-01-02T04:04:05+01:00).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only lines stamped at or before this (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only lines that contain TEXT (a plain, case-sensitive substring). With --since, --until,
    /// --grep or name:N, --lines counts the lines shown, searched through the rotated files too.
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,
    /// Only the lines of instance N (of each app shown), like `name:N`.
    #[arg(long, value_name = "N")]
    pub instance: Option<u32>,
    /// One timeline: the lines of every log shown (every app's, unless a name is given), stdout
    /// and stderr, merged in time order; --lines counts lines of the whole timeline.
    #[arg(long)]
    pub all: bool,
    /// The clock stamps are shown on: utc (default, as stored), local (TZ or /etc/localtime) or
    /// an offset such as +05:30; RFC 3339 either way (--json keeps "at" in UTC).
    #[arg(long, value_name = "ZONE")]
    pub time: Option<String>,
}

/// `turbo apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The turbo.yml to apply.
    #[arg(value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub file: std::path::PathBuf,
    /// Show the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also stop and forget the apps the daemon runs and the file does not have.
    #[arg(long)]
    pub prune: bool,
    /// Only these apps (comma-separated names); the others are left alone.
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Print the plan as JSON: [{"name", "action", "fields": [{"field", "how"}]}].
    #[arg(long)]
    pub json: bool,
    /// Merge each app's `env_NAME:` block over its `env:` (PM2's `--env production`).
    #[arg(long = "env", value_name = "NAME")]
    pub profile: Option<String>,
}

/// `turbo config <what>`.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate a turbo.yml without changing anything; exit status 0 when it is valid (for CI).
    Check(ConfigCheckArgs),
    /// Print the configuration an app runs with (defaults filled in), as JSON.
    Show(ConfigShowArgs),
}

/// `turbo config check`.
#[derive(Debug, Args)]
pub struct ConfigCheckArgs {
    /// The turbo.yml to check.
    #[arg(value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub file: std::path::PathBuf,
    /// Merge each app's `env_NAME:` block over its `env:` (PM2's `--env production`).
    #[arg(long = "env", value_name = "NAME")]
    pub profile: Option<String>,
}

/// `turbo config show`.
#[derive(Debug, Args)]
pub struct ConfigShowArgs {
    /// App name, app id, or `name:N`.
    #[arg(value_name = "NAME|ID")]
    pub name: String,
}

/// `turbo flush`.
#[derive(Debug, Args)]
pub struct FlushArg {
    /// App name, app id, `@group`, or `all`.
    #[arg(value_name = "NAME|ID|@GROUP|all", default_value = "all")]
    pub target: String,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("turbo").chain(args.iter().copied()))
    }

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn start_with_options_and_trailing_args() {
        let cli = parse(&[
            "start",
            "/bin/sleep",
            "--name",
            "s",
            "--env",
            "A=1",
            "--env",
            "B=2",
            "--",
            "100",
            "--not-ours",
        ])
        .unwrap();
        let Cmd::Start(start) = cli.command else {
            panic!("not start: {cli:?}");
        };
        assert_eq!(start.target.as_deref(), Some("/bin/sleep"));
        assert_eq!(start.name.as_deref(), Some("s"));
        assert_eq!(start.env, ["A=1", "B=2"]);
        assert_eq!(start.args, ["100", "--not-ours"]);
        assert!(!start.no_autorestart);
    }

    #[test]
    fn aliases_and_conflicts() {
        for alias in ["status", "ls", "list"] {
            assert!(matches!(
                parse(&[alias, "--json"]).unwrap().command,
                Cmd::Status(StatusArgs {
                    json: true,
                    target: None,
                    sort: StatusSort::Id
                })
            ));
        }
        let Cmd::Status(st) = parse(&["ls", "@web", "--sort", "group"]).unwrap().command else {
            panic!("not status");
        };
        assert_eq!(
            (st.target.as_deref(), st.sort),
            (Some("@web"), StatusSort::Group)
        );
        let Cmd::Signal(sig) = parse(&["signal", "HUP", "web:1"]).unwrap().command else {
            panic!("not signal");
        };
        assert_eq!((sig.signal.as_str(), sig.target.as_str()), ("HUP", "web:1"));
        assert!(parse(&["logs", "--err", "--out"]).is_err());
        let Cmd::Logs(logs) = parse(&["logs", "api"]).unwrap().command else {
            panic!("not logs");
        };
        assert_eq!((logs.lines, logs.name.as_deref()), (15, Some("api")));
        assert!(parse(&["stop"]).is_err(), "a target is required");
        let Cmd::Logs(logs) = parse(&["logs", "--json", "-f"]).unwrap().command else {
            panic!("not logs");
        };
        assert!(logs.json && logs.follow && logs.name.is_none());
        for (args, target) in [(&["flush"][..], "all"), (&["flush", "api"], "api")] {
            let Cmd::Flush(flush) = parse(args).unwrap().command else {
                panic!("not flush");
            };
            assert_eq!(flush.target, target);
        }
    }
}
