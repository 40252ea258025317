//! The `worker` binary: parse, set up logging, call the library, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A trial's program runs under this binary as its supervisor (never returns then).
    worker::program::supervise::run_if_asked();
    let cli = worker::cli::Cli::parse();
    // The agent (no subcommand) serves metrics and holds streams: it keeps SIGPIPE ignored.
    if cli.command.is_some() {
        worker::cli::restore_sigpipe();
    }
    let default = if cli.command.is_none() {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: logs written to files (Slurm, CI, systemd) stay plain text.
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cli.agent.log_format == "json" {
        fmt.json().init();
    } else {
        fmt.init();
    }
    match worker::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: {}",
                sweep_trainer::text::terminal_lines(&e.to_string())
            );
            ExitCode::from(e.exit_code())
        }
    }
}
