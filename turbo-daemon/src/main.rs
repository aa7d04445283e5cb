//! `turbo-daemon`: tunes the allocator, parses flags, sets up logging, runs
//! [`turbo_daemon::run`] (or the log keeper). Nothing else.

#![warn(clippy::undocumented_unsafe_blocks)]

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use tracing::Level;
use tracing_subscriber::{
    filter::Targets, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};
use turbo_daemon::events::EbpfSetting;

/// The TurboProcess daemon. Usually started by the `turbo` CLI or by systemd.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Home directory (state, logs, bus socket) [default: $TURBO_HOME or ~/.turbo]
    #[arg(long)]
    home: Option<PathBuf>,
    /// Event source: eBPF when it loads (auto), eBPF or fail (require), procfs only (off)
    #[arg(long, env = "TURBO_EBPF", value_enum, default_value_t = EbpfSetting::Auto)]
    ebpf: EbpfSetting,
    /// System mode on the system bus (state in /var/lib/turbo, logs in /var/log/turbo unless
    /// --home is given); callers are authorised per call
    #[arg(long, conflicts_with = "bus_address")]
    system: bool,
    /// System mode on the bus at this D-Bus address (a system-like bus)
    #[arg(long, value_name = "ADDRESS")]
    bus_address: Option<String>,
    /// The daemon's own turbo.yml: applied at start (apps added and updated) and on SIGHUP
    /// (`systemctl reload`; also removes the apps it no longer has) [default with --system:
    /// /etc/turbo/turbo.yml; otherwise none]
    #[arg(long, env = "TURBO_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Members of this group may manage apps over the bus, besides root and the daemon's user
    #[arg(long, env = "TURBO_ADMIN_GROUP", default_value = "turbo")]
    admin_group: String,
    /// Prometheus exporter address (`GET /metrics`), or `off`. Loopback by default: anything
    /// else exposes app names and figures to the network [default: 127.0.0.1:9464 for root,
    /// else 127.0.0.1:<10000 + uid mod 22768>, so each user's daemon has its own]
    #[arg(long, env = "TURBO_METRICS_LISTEN", value_name = "ADDR|off", value_parser = parse_listen)]
    metrics_listen: Option<Listen>,
    /// TLS and basic auth of the exporter, from a web config file in the format Prometheus
    /// exporters share (`tls_server_config`, `basic_auth_users` with bcrypt hashes; see
    /// docs/metrics.md). Checked at start: a bad file stops the daemon, it never serves the
    /// metrics unprotected instead
    #[arg(long, env = "TURBO_METRICS_WEB_CONFIG", value_name = "FILE")]
    metrics_web_config: Option<PathBuf>,
    /// Export every app's run-queue delay buckets (24 series per app, half a scrape's size):
    /// without it, each app has its mean delay (the histogram's sum and count) and the buckets
    /// are the host's, all apps summed (`turbo_runqueue_delay_seconds`)
    #[arg(long, env = "TURBO_METRICS_APP_HISTOGRAMS")]
    metrics_app_histograms: bool,
    /// Interval of the resource sampler (CPU window and leak detection; e.g. 5s, 500ms)
    /// [default: 5s with the procfs fallback; with eBPF, which only needs it for leak
    /// detection, the leak window / 48 (75s)]
    #[arg(long, env = "TURBO_SAMPLE_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    sample_interval: Option<Duration>,
    /// CPU percent is averaged over this window
    #[arg(long, env = "TURBO_CPU_WINDOW", value_name = "DURATION", default_value = "10s",
          value_parser = parse_duration)]
    cpu_window: Duration,
    /// Leak detection looks at this much memory history; a verdict needs a quarter of it
    #[arg(long, env = "TURBO_LEAK_WINDOW", value_name = "DURATION", default_value = "1h",
          value_parser = parse_duration)]
    leak_window: Duration,
    /// Run as the log keeper of --home (started by the daemon itself; see docs/log-keeper.md)
    #[arg(long, hide = true, requires = "home")]
    log_keeper: bool,
    /// The app log directory (with --log-keeper) [default: <home>/logs]
    #[arg(long, hide = true, requires = "log_keeper")]
    log_dir: Option<PathBuf>,
    /// The keeper's socket, a file name in --home (with --log-keeper; the daemon starts more
    /// than one keeper when one has too few file descriptors for the apps) [default: keeper.sock]
    #[arg(long, hide = true, requires = "log_keeper")]
    keeper_socket: Option<String>,
}

/// `--metrics-listen`: an address, or off.
#[derive(Clone, Copy, Debug)]
struct Listen(Option<SocketAddr>);

fn parse_listen(s: &str) -> Result<Listen, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Listen(None));
    }
    s.parse()
        .map(|a| Listen(Some(a)))
        .map_err(|_| format!("'{s}' is not an address like 127.0.0.1:9464 or [::1]:9464, or `off`"))
}

/// A duration in the one syntax of turbo.yml and the CLI (`500ms`, `5s`, `2m`, `1h`; a bare number
/// is seconds), at least 10 ms.
fn parse_duration(s: &str) -> Result<Duration, String> {
    use turbo_daemon::spec::units::{self, Bounds, Written};
    units::duration(
        Written::Text(s),
        Bounds::at_least(Duration::from_millis(10)),
    )
    .map_err(|e| format!("'{s}' {e}: {}", e.hint()))
}

fn main() -> ExitCode {
    turbo_daemon::os::alloc::settle_allocator();
    let args = Args::parse();
    // set by the previous image of this process on `turbo daemon upgrade`; read and removed
    // while the process has one thread (changing the environment is not thread-safe)
    let reexec_bus = std::env::var(turbo_daemon::host::bus::REEXEC_ENV).ok();
    // SAFETY: single-threaded here: no runtime, no other thread has started yet.
    unsafe { std::env::remove_var(turbo_daemon::host::bus::REEXEC_ENV) };
    // TURBO_LOG: `debug`, or per target like `info,turbo_daemon=debug`. Parsed as plain
    // `Targets`, not `EnvFilter`, whose regular expressions would be a few hundred KiB of code
    // in a daemon that is resident on every host.
    let (filter, bad) = match std::env::var("TURBO_LOG") {
        Ok(text) if !text.trim().is_empty() => match text.parse::<Targets>() {
            Ok(t) => (t, None),
            Err(e) => (Targets::new().with_default(Level::INFO), Some((text, e))),
        },
        _ => (Targets::new().with_default(Level::INFO), None),
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
    if let Some((text, e)) = bad {
        tracing::warn!(
            "TURBO_LOG '{text}' is not a level or a list like `info,turbo_daemon=debug` ({e}); \
             logging at info"
        );
    }
    if args.log_keeper {
        // four descriptors per app (docs/architecture.md, "File descriptors"), and no children
        // that would inherit the raised limit (the daemon raises its own when it needs to)
        if let Err(e) = turbo_daemon::os::creds::raise_nofile() {
            tracing::warn!("log keeper: cannot raise its file descriptor limit: {e}");
        }
        // no tokio runtime: the keeper is a small synchronous loop (turbo_daemon::keeper)
        let home = args.home.unwrap_or_default();
        let log_dir = args.log_dir.unwrap_or_else(|| home.join("logs"));
        let socket = args
            .keeper_socket
            .unwrap_or_else(|| turbo_daemon::keeper::SOCKET.to_owned());
        return match turbo_daemon::keeper::server::serve(&home, &log_dir, &socket) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("turbo-daemon --log-keeper: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let metrics_web = match args
        .metrics_web_config
        .as_deref()
        .map(turbo_daemon::metrics::WebConfig::load)
    {
        None => None,
        Some(Ok(web)) => Some(std::sync::Arc::new(web)),
        Some(Err(e)) => {
            // before anything started: one line, and the exporter is never up unprotected
            eprintln!("turbo-daemon: {e}");
            return ExitCode::FAILURE;
        }
    };
    let system = args.system || args.bus_address.is_some();
    let (home, log_dir) = match args.home {
        Some(home) => (home, None),
        None if system => (
            PathBuf::from("/var/lib/turbo"),
            Some(PathBuf::from("/var/log/turbo")),
        ),
        None => (turbo_daemon::default_home(), None),
    };
    let config_file = args
        .config
        .or_else(|| args.system.then(|| PathBuf::from("/etc/turbo/turbo.yml")))
        // its relative paths resolve against its directory, which must not depend on the cwd
        .map(|p| std::path::absolute(&p).unwrap_or(p));
    let bus = match (args.system, args.bus_address) {
        (true, _) => turbo_daemon::BusMode::System,
        (false, Some(a)) => turbo_daemon::BusMode::Address(a),
        (false, None) => turbo_daemon::BusMode::Private,
    };
    let opts = turbo_daemon::Options {
        home,
        ebpf: args.ebpf,
        bus,
        log_dir,
        admin_group: args.admin_group,
        metrics_listen: args.metrics_listen.map_or_else(
            || {
                Some(turbo_daemon::metrics::default_listen(
                    rustix::process::geteuid().as_raw(),
                ))
            },
            |l| l.0,
        ),
        metrics_web,
        metrics_detail: turbo_daemon::metrics::Detail {
            app_histograms: args.metrics_app_histograms,
        },
        monitor: turbo_daemon::runtime::MonitorSettings {
            cpu_window: args.cpu_window,
            sample_interval: args.sample_interval,
            leak: turbo_daemon::supervisor::leak::LeakPolicy {
                window: args.leak_window,
                ..turbo_daemon::supervisor::leak::LeakPolicy::default()
            },
        },
        config_file,
        reexec_bus,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("turbo-daemon: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(turbo_daemon::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("turbo-daemon: {e}");
            ExitCode::FAILURE
        }
    }
}
