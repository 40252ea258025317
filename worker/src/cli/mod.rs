//! The `worker` command line: argument types and the code behind each subcommand. The binary
//! (`src/main.rs`) only parses and maps [`CliError`] to an exit code.

pub mod bench;
pub mod train;

use clap::{Parser, Subcommand};

/// `worker`: trains MLPs for sweep.
#[derive(Debug, Parser)]
#[command(
    name = "worker",
    version,
    about = "sweep worker: trains MLPs on MNIST-style data"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train one MLP and report its metrics and confusion matrix
    Train(Box<train::TrainArgs>),
    /// Measure training speed (and PyTorch's/NumPy's on the same model, when installed)
    Bench(bench::BenchArgs),
}

/// A failed command, sorted by exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad options or configuration (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// Missing, corrupt or unreadable data (exit code 2).
    #[error("{0}")]
    Data(String),
    /// Anything else (exit code 1).
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Data(_) => 2,
            CliError::Other(_) => 1,
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Train(a) => train::run(&a),
        Command::Bench(a) => bench::run(&a),
    }
}
