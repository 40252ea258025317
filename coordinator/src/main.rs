//! The `coordinator` binary: parse, set up logging, call the library, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `run`'s local workers start their programs' supervisors from this binary.
    worker::program::supervise::run_if_asked();
    let cli = coordinator::cli::Cli::parse();
    if cli.command.prints_and_exits() {
        worker::cli::restore_sigpipe();
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,coordinator=info"));
    // Colours only on a terminal: logs written to files (Slurm, CI, systemd) stay plain text.
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        fmt.json().init();
    } else {
        fmt.init();
    }
    match coordinator::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !matches!(e, coordinator::cli::CliError::Interrupted(_)) {
                eprintln!(
                    "error: {}",
                    sweep_trainer::text::terminal_lines(&e.to_string())
                );
            }
            ExitCode::from(e.exit_code())
        }
    }
}
