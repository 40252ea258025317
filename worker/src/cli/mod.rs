//! The `worker` command line: argument types and the code behind each subcommand. The binary
//! (`src/main.rs`) only parses and maps [`CliError`] to an exit code.

pub mod model;
pub mod train;

use clap::{Parser, Subcommand};

/// `worker`: trains MLPs for sweep. Without a subcommand it runs as an agent of a coordinator.
#[derive(Debug, Parser)]
#[command(
    name = "worker",
    version,
    about = "sweep worker: trains MLPs on MNIST-style data",
    long_about = "sweep worker: trains MLPs on MNIST-style data.\n\nWithout a subcommand it runs as an agent: it connects to a coordinator, trains the trials it leases (one per slot) and reports their metrics, until SIGTERM or Ctrl-C, when it hands its running trials back and exits."
)]
pub struct Cli {
    /// What to do (default: run as an agent of a coordinator).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Agent options.
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// Options of the agent (the default mode).
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Coordinator to take trials from
    #[arg(
        long,
        env = "SWEEP_COORDINATOR",
        hide_env_values = true,
        default_value = "http://127.0.0.1:50051"
    )]
    pub coordinator: String,
    /// Trials to train at once [default: one per GPU on a worker with GPUs, else one per core]
    #[arg(long)]
    pub slots: Option<usize>,
    /// GPUs to hand to trials: auto (what nvidia-smi lists, narrowed by CUDA_VISIBLE_DEVICES
    /// when it is set), none, or indices/UUIDs such as 0,1,3
    #[arg(
        long,
        env = "SWEEP_GPUS",
        default_value = "auto",
        value_name = "auto|none|LIST"
    )]
    pub gpus: crate::gpus::Choice,
    /// The host other workers reach this one at, for trials across several workers
    /// (program_options.nodes) [default: the address the coordinator sees it call from]
    #[arg(long, env = "SWEEP_ADVERTISE", value_name = "HOST")]
    pub advertise: Option<String>,
    /// Directory holding mnist/ and fashion-mnist/ [default: the repository's data/]
    #[arg(
        long,
        env = "SWEEP_DATA_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub data_dir: Option<std::path::PathBuf>,
    /// Log format: text or json
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// The coordinator's token (sent with every call); prefer SWEEP_TOKEN or --token-file,
    /// which other users of the machine cannot read in `ps`
    #[arg(long, env = "SWEEP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file whose first line is the token
    #[arg(
        long,
        env = "SWEEP_TOKEN_FILE",
        hide_env_values = true,
        value_name = "FILE",
        conflicts_with = "token"
    )]
    pub token_file: Option<std::path::PathBuf>,
    /// PEM file of the CA (or self-signed certificate) to trust; needs an https:// URL
    #[arg(long, env = "SWEEP_TLS_CA", hide_env_values = true, value_name = "PEM")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics
    #[arg(
        long,
        env = "SWEEP_METRICS_LISTEN",
        hide_env_values = true,
        value_name = "ADDR"
    )]
    pub metrics_listen: Option<String>,
    /// Run the programs sweep configs name (W&B program/command): anyone who can submit a
    /// sweep can then run commands on this machine. With DIR, only programs inside DIR
    #[arg(long, value_name = "DIR", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    pub allow_programs: Option<String>,
    /// Where programs run (their working directory) [default: where the worker was started]
    #[arg(
        long,
        env = "SWEEP_WORKDIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub workdir: Option<std::path::PathBuf>,
    /// Seconds between SIGTERM and SIGKILL when a program is stopped
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub kill_grace: f64,
    /// Do not copy programs' output to this worker's stderr (the coordinator keeps its tail)
    #[arg(long)]
    pub quiet_programs: bool,
    /// Leave programs' PYTHONPATH alone: `import wandb` gets whatever is installed
    #[arg(long)]
    pub no_wandb_shim: bool,
    /// Take trials of this sweep only, and exit when it is over (W&B's `wandb agent SWEEP_ID`)
    #[arg(long, value_name = "SWEEP_ID")]
    pub sweep: Option<String>,
    /// Exit after this many trials (W&B's `--count`)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Run the trials of sweeps that name no program (sweeps for agents) with this program,
    /// e.g. `--sweep ID --program train.py`; needs no --allow-programs (you chose it)
    #[arg(long, value_name = "FILE")]
    pub program: Option<String>,
    /// Hand each trial to the process that started this worker over this socket (what
    /// `wandb.agent` in our Python module uses; docs/PROGRAMS.md)
    #[arg(long, value_name = "FD", hide = true, conflicts_with = "program")]
    pub function_fd: Option<i32>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train one MLP and report its metrics and confusion matrix
    Train(Box<train::TrainArgs>),
    /// Draw one sample image per class in a labelled grid (PNG or SVG)
    Samples(SamplesArgs),
    /// Accuracy, loss and confusion matrix of a saved model on a data set's test images
    Evaluate(model::EvaluateArgs),
    /// Classes and probabilities a saved model gives images (IDX files or PNGs)
    Predict(model::PredictArgs),
}

/// Options of `worker samples`.
#[derive(Debug, clap::Args)]
pub struct SamplesArgs {
    /// mnist, fashion_mnist, or a directory with the four IDX files
    #[arg(long, default_value = "fashion_mnist")]
    pub dataset: String,
    /// Output file: .png or .svg
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// Screen pixels per image pixel
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub scale: u32,
    /// Directory holding mnist/ and fashion-mnist/ [default: the repository's data/]
    #[arg(
        long,
        env = "SWEEP_DATA_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub data_dir: Option<std::path::PathBuf>,
}

fn run_samples(a: &SamplesArgs) -> Result<(), CliError> {
    let spec: crate::data::DatasetSpec = a
        .dataset
        .parse()
        .map_err(|e| CliError::Usage(format!("--dataset: {e}")))?;
    let dir = a
        .data_dir
        .clone()
        .unwrap_or_else(crate::data::default_data_dir);
    let ds = crate::data::load(&spec, &dir).map_err(|e| CliError::Data(e.to_string()))?;
    crate::plot::samples_picture(&ds, &a.out, a.scale)
        .map_err(|e| CliError::Other(format!("{}: {e}", a.out.display())))?;
    println!("wrote {}", a.out.display());
    Ok(())
}

fn program_options(
    a: &AgentArgs,
    slots: usize,
) -> Result<crate::program::ProgramOptions, CliError> {
    if !(a.kill_grace.is_finite() && (0.0..=3600.0).contains(&a.kill_grace)) {
        return Err(CliError::Usage(format!(
            "invalid value for --kill-grace: expected seconds from 0 to 3600, got {}",
            a.kill_grace
        )));
    }
    let workdir = match &a.workdir {
        Some(d) => d.clone(),
        None => std::env::current_dir()
            .map_err(|e| CliError::Other(format!("the current directory: {e}")))?,
    };
    if a.workdir.is_some() && !workdir.is_dir() {
        return Err(CliError::Usage(format!(
            "--workdir {}: not a directory",
            workdir.display()
        )));
    }
    let only_under = a
        .allow_programs
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from);
    if let Some(d) = &only_under {
        if !d.is_dir() {
            return Err(CliError::Usage(format!(
                "--allow-programs {}: not a directory",
                d.display()
            )));
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(crate::program::ProgramOptions {
        allow: a.allow_programs.is_some(),
        only_under,
        workdir,
        kill_grace: std::time::Duration::from_secs_f64(a.kill_grace),
        threads: (cores / slots.max(1)).max(1),
        echo: !a.quiet_programs,
        wandb_shim: !a.no_wandb_shim,
    })
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
        Some(Command::Train(a)) => train::run(&a),
        Some(Command::Samples(a)) => run_samples(&a),
        Some(Command::Evaluate(a)) => model::evaluate(&a),
        Some(Command::Predict(a)) => model::predict(&a),
        None => run_agent(&cli.agent),
    }
}

fn run_agent(a: &AgentArgs) -> Result<(), CliError> {
    if a.slots == Some(0) {
        return Err(CliError::Usage(
            "invalid value for --slots: expected an integer ≥ 1, got 0".into(),
        ));
    }
    let mut opts = crate::agent::AgentOptions::new(a.coordinator.clone());
    if let Some(s) = a.slots {
        opts.slots = s;
    }
    if let Some(d) = &a.data_dir {
        opts.data_dir = d.clone();
    }
    opts.token = sweep_proto::conn::token_from(a.token.clone(), a.token_file.as_deref())
        .map_err(CliError::Usage)?
        .and_then(sweep_proto::conn::Secret::new);
    opts.tls_ca = a.tls_ca.clone();
    let inventory = match a.gpus {
        crate::gpus::Choice::None => Ok(Vec::new()),
        _ => crate::gpus::inventory(),
    };
    let cuda_visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    opts.gpus = crate::gpus::resolve(&a.gpus, inventory, cuda_visible.as_deref())
        .map_err(CliError::Usage)?;
    if !opts.gpus.is_empty() {
        let ids: Vec<&str> = opts.gpus.iter().map(|g| g.id.as_str()).collect();
        eprintln!("worker GPUs: {}", ids.join(", "));
        // A trial per GPU, unless --slots says otherwise.
        if a.slots.is_none() {
            opts.slots = opts.gpus.len();
        }
    }
    opts.programs = program_options(a, opts.slots)?;
    opts.advertise = a.advertise.clone().filter(|h| !h.is_empty());
    opts.sweep = a.sweep.clone();
    opts.max_trials = a.count;
    opts.agent_program = a.program.clone();
    if let Some(fd) = a.function_fd {
        if fd < 3 {
            return Err(CliError::Usage(format!(
                "invalid value for --function-fd: expected an inherited socket (3 or more), got {fd}"
            )));
        }
        // SAFETY: the descriptor was passed to us for this purpose and nothing else uses it.
        let conn = unsafe { crate::program::function::FunctionConn::from_fd(fd) }
            .map_err(|e| CliError::Usage(format!("--function-fd {fd}: {e}")))?;
        opts.function = Some(std::sync::Arc::new(conn));
        opts.slots = 1;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        if let Some(addr) = &a.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| CliError::Usage(format!("--metrics-listen {addr}: {e}")))?;
            if let Ok(local) = listener.local_addr() {
                eprintln!("worker metrics on http://{local}/metrics");
            }
            let m = opts.metrics.clone();
            tokio::spawn(crate::metrics::serve(
                listener,
                std::sync::Arc::new(move || m.render()),
                shutdown_signal(),
            ));
        }
        crate::agent::run(opts, shutdown_signal())
            .await
            .map_err(|e| CliError::Usage(e.to_string()))
    })
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    shutdown_signal_number().await;
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT) with the signal's number (15 or 2), so a command
/// can exit with 128 + it.
pub async fn shutdown_signal_number() -> i32 {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = term.recv() => 15,
                _ = tokio::signal::ctrl_c() => 2,
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    2
}

/// Restores the default action of SIGPIPE, so `worker … | head` (or `coordinator leaderboard |
/// head`) ends quietly when the reader goes away instead of panicking in `println!`: the Rust
/// runtime ignores SIGPIPE, which turns a closed pipe into an error every print unwraps.
///
/// Only for commands that print and exit, never for one that serves: the disposition is the
/// whole process's, and a socket write (`writev`, which cannot ask for no signal) to a client
/// that has gone would then kill the process instead of failing that one connection.
pub fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any thread exists; `signal` with SIG_DFL
    // only resets a disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
