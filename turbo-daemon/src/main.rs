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
    let opts = turbo_daemon::Options {
        home: args.home.unwrap_or_else(turbo_daemon::default_home),
        ebpf: args.ebpf,
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
