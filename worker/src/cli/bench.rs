//! `worker bench`: training speed of the reference MLP.

use clap::Args;

use super::CliError;

/// Measure seconds per epoch and samples/s of the reference MLP (784-128-128-128-10).
#[derive(Debug, Args)]
pub struct BenchArgs {}

/// Runs `worker bench`.
pub fn run(_args: &BenchArgs) -> Result<(), CliError> {
    Err(CliError::Other("not yet".into()))
}
