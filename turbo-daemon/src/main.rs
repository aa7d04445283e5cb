//! `turbo-daemon`: parses flags, sets up logging, runs [`turbo_daemon::run`]. Nothing else.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
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
    /// Members of this group may manage apps over the bus, besides root and the daemon's user
    #[arg(long, env = "TURBO_ADMIN_GROUP", default_value = "turbo")]
    admin_group: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TURBO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let system = args.system || args.bus_address.is_some();
    let (home, log_dir) = match args.home {
        Some(home) => (home, None),
        None if system => (
            PathBuf::from("/var/lib/turbo"),
            Some(PathBuf::from("/var/log/turbo")),
        ),
        None => (turbo_daemon::default_home(), None),
    };
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
