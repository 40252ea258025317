//! `sweep-bench`: the project's benchmarks, kept out of the product binaries. Each measures
//! the `coordinator` and `worker` binaries built beside it (`cargo build --release`) or the
//! libraries, and prints our figure beside the same run's PyTorch/NumPy/Optuna figure where
//! `python3` can import them (the scripts in `bench/python/`). docs/BENCHMARKS.md has the
//! commands and the figures.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod budget;
mod common;
mod coordinator;
mod curves;
mod load;
mod observers;
mod pareto;
mod search;
mod surrogate;
mod train;
mod uploads;

/// The project's benchmarks (docs/BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "sweep-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Training speed of the reference MLP, beside PyTorch and NumPy when installed
    Train(train::BenchArgs),
    /// End-to-end trials/s and call latency of a coordinator with worker processes, beside Optuna
    Coordinator(coordinator::BenchArgs),
    /// Many simulated workers against one coordinator for a fixed time: errors, memory, latency
    Load(load::LoadArgs),
    /// Bayesian search quality and suggestion speed, beside Optuna
    Search(search::SearchBenchArgs),
    /// Large checkpoint uploads at once: the coordinator's memory beside its upload budget
    Uploads(uploads::UploadArgs),
    /// One trial of a very long curve: memory and time of everything that reads it
    Curves(curves::CurveArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => train::run(&a),
        Command::Search(a) => search::run_search(&a),
        Command::Coordinator(a) => runtime().and_then(|rt| rt.block_on(coordinator::run(&a))),
        Command::Load(a) => runtime().and_then(|rt| rt.block_on(load::run_load(&a))),
        Command::Uploads(a) => runtime().and_then(|rt| rt.block_on(uploads::run_uploads(&a))),
        Command::Curves(a) => runtime().and_then(|rt| rt.block_on(curves::run_curves(&a))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
