//! The `coordinator` command line: `serve`, the all-in-one `run`, and the client commands
//! (`submit`, `watch`, `status`, `leaderboard`, `export`, `trial`, `pause`, `resume`, `stop`).

mod out;
mod watch;

use out::{Allow, OutDir};
use watch::watch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sweep_proto::conn::{AuthChannel, ClientOptions, Secret};
use sweep_proto::pb;
use sweep_proto::pb::sweeps_client::SweepsClient;

use crate::config::SweepSpec;
use crate::engine::{Engine, EngineOptions};
use crate::export;
use crate::report::TOP_CURVES;
use crate::{server, service};

/// `coordinator`: holds sweeps and hands their trials to workers.
#[derive(Debug, Parser)]
#[command(
    name = "coordinator",
    version,
    about = "sweep coordinator: runs W&B-style sweeps across worker processes"
)]
pub struct Cli {
    /// Log format: text or json
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where client commands find the coordinator.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// Coordinator URL
    #[arg(
        long,
        env = "SWEEP_COORDINATOR",
        hide_env_values = true,
        default_value = "http://127.0.0.1:50051"
    )]
    pub coordinator: String,
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
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA (or self-signed certificate) to trust; needs an https:// URL
    #[arg(long, env = "SWEEP_TLS_CA", hide_env_values = true)]
    pub tls_ca: Option<PathBuf>,
}

impl Conn {
    /// A connection to `url` with no token and no TLS (the all-in-one `run`).
    fn local(url: &str) -> Conn {
        Conn {
            coordinator: url.to_string(),
            token: None,
            token_file: None,
            tls_ca: None,
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve sweeps to workers and clients
    Serve {
        /// Address to listen on
        #[arg(long, default_value = DEFAULT_LISTEN)]
        listen: String,
        /// SQLite file holding every sweep (created on first run)
        #[arg(long, default_value = "sweeps.db")]
        store: PathBuf,
        /// Seconds a trial's lease lasts without a report or heartbeat
        #[arg(long, default_value_t = 30.0)]
        lease_ttl: f64,
        /// Token every client and worker must send (all calls but health); prefer SWEEP_TOKEN
        /// or --token-file, which other users of the machine cannot read in `ps`
        #[arg(long, env = "SWEEP_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// A file whose first line is the token
        #[arg(
            long,
            env = "SWEEP_TOKEN_FILE",
            hide_env_values = true,
            value_name = "FILE",
            conflicts_with = "token"
        )]
        token_file: Option<PathBuf>,
        /// PEM certificate chain to serve TLS with (with --tls-key)
        #[arg(
            long,
            env = "SWEEP_TLS_CERT",
            hide_env_values = true,
            requires = "tls_key"
        )]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert
        #[arg(
            long,
            env = "SWEEP_TLS_KEY",
            hide_env_values = true,
            requires = "tls_cert"
        )]
        tls_key: Option<PathBuf>,
        /// Serve Prometheus metrics at http://ADDR/metrics
        #[arg(
            long,
            env = "SWEEP_METRICS_LISTEN",
            hide_env_values = true,
            value_name = "ADDR"
        )]
        metrics_listen: Option<String>,
        /// Serve the web dashboard (/), the HTTP JSON API (/api/v1/...) and /metrics at http://ADDR
        #[arg(
            long,
            env = "SWEEP_HTTP_LISTEN",
            hide_env_values = true,
            value_name = "ADDR"
        )]
        http_listen: Option<String>,
        /// A host name browsers use for the dashboard (repeatable); without a token, only IP
        /// addresses, localhost, this machine's name and these are answered (DNS rebinding)
        #[arg(long, value_name = "NAME")]
        http_allow_host: Vec<String>,
    },
    /// Run a sweep on this machine: a coordinator, local workers, progress, leaderboard, export
    Run {
        /// Sweep config (W&B YAML or JSON)
        file: PathBuf,
        /// Local worker processes' worth of trials to train at once (a sweep that asks for
        /// GPUs: as many as this machine's GPUs hold)
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// SQLite file [default: runs/sweeps.db]
        #[arg(long)]
        store: Option<PathBuf>,
        /// Where to write the export [default: runs/<sweep name>/<sweep id>/, each sweep its own]
        #[arg(long)]
        out: Option<PathBuf>,
        /// Directory holding mnist/ and fashion-mnist/ [default: the repository's data/]
        #[arg(long, env = "SWEEP_DATA_DIR", hide_env_values = true)]
        data_dir: Option<PathBuf>,
        /// Seconds a trial's lease lasts without a report or heartbeat
        #[arg(long, default_value_t = 30.0)]
        lease_ttl: f64,
        /// Serve the web dashboard at http://ADDR/ while the sweep runs
        #[arg(long, value_name = "ADDR")]
        http_listen: Option<String>,
        /// Run the config on this trainer whatever it names (as `trainer:` in the file):
        /// `mlp` runs someone's own sweep config on the built-in MLP
        #[arg(long, value_parser = ["mlp", "synthetic", "program", "agent"])]
        trainer: Option<String>,
        /// Go on with the sweep of this config that an interrupted `run` left in the store
        /// (paused by Ctrl-C), writing into its folder, instead of starting a new one
        #[arg(long)]
        resume: bool,
    },
    /// Submit a sweep config; prints the new sweep's id
    Submit {
        /// Sweep config (W&B YAML or JSON)
        file: PathBuf,
        /// Name (overrides the config's `name`)
        #[arg(long)]
        name: Option<String>,
        /// Run the config on this trainer whatever it names (as `trainer:` in the file)
        #[arg(long, value_parser = ["mlp", "synthetic", "program", "agent"])]
        trainer: Option<String>,
        /// Where the coordinator is.
        #[command(flatten)]
        conn: Conn,
    },
    /// Show live progress of a sweep until it ends
    Watch {
        /// Sweep id
        sweep: String,
        /// Where the coordinator is.
        #[command(flatten)]
        conn: Conn,
    },
    /// The workers the coordinator knows: host, cores, slots, GPUs, when last heard from
    Workers {
        /// Print JSON
        #[arg(long)]
        json: bool,
        /// Where the coordinator is.
        #[command(flatten)]
        conn: Conn,
    },
    /// One sweep's state, or every sweep's
    Status {
        /// Sweep id (all sweeps when absent)
        sweep: Option<String>,
        /// Print JSON
        #[arg(long)]
        json: bool,
        /// Where the coordinator is.
        #[command(flatten)]
        conn: Conn,
    },
    /// The ranked trials of a sweep
    Leaderboard {
        /// Sweep id
        sweep: String,
        /// Print the leaderboard JSON
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV
        #[arg(long)]
        csv: bool,
        /// Only the best K ranked trials
        #[arg(long)]
        top: Option<u32>,
        /// Where the coordinator is.
        #[command(flatten)]
        conn: Conn,
    },
    /// Write leaderboard.json, leaderboard.csv and confusion_best.{json,csv}
    Export {
        /// Sweep id
        sweep: String,
        /// Output directory
        #[arg(long)]
        out: PathBuf,
        /// Replace files already in the directory (never a symlink)
        #[arg(long)]
        force: bool,
        /// Where the coordinator is.
        #[command(flatten)]
        conn: Conn,
    },
    /// Pictures and a one-file HTML report: confusion matrix, curves, parallel view, importance
    Report {
        /// Sweep id
        sweep: String,
        /// Output directory
        #[arg(long)]
        out: PathBuf,
        /// Replace files already in the directory (never a symlink)
        #[arg(long)]
        force: bool,
        /// Where the coordinator is.
        #[command(flatten)]
        conn: Conn,
    },
    /// One trial: params, curve, state, error or stop reason, confusion matrix
    Trial {
        /// Sweep id
        sweep: String,
        /// Trial number
        trial: u64,
        /// Print JSON
        #[arg(long)]
        json: bool,
        /// Where the coordinator is.
        #[command(flatten)]
        conn: Conn,
    },
    /// Download a kept model (model.json + model.safetensors; docs/MODELS.md): the best
    /// trial's, or TRIAL's
    Model {
        /// Sweep id
        sweep: String,
        /// Trial number [default: the best-ranked trial with a kept model]
        trial: Option<u64>,
        /// Directory to write the two files into (created if needed)
        #[arg(long)]
        out: PathBuf,
        /// Replace files already in the directory (never a symlink)
        #[arg(long)]
        force: bool,
        /// Where the coordinator is.
        #[command(flatten)]
        conn: Conn,
    },
    /// Download the files a program trial handed back (docs/PROGRAMS.md): the best trial's,
    /// or TRIAL's
    Files {
        /// Sweep id
        sweep: String,
        /// Trial number [default: the best-ranked trial with kept files]
        trial: Option<u64>,
        /// Directory to write them into, their folders kept (created if needed)
        #[arg(long)]
        out: PathBuf,
        /// Only this file (its path as `coordinator trial` lists it)
        #[arg(long)]
        path: Option<String>,
        /// Replace files already in the directory (never a symlink)
        #[arg(long)]
        force: bool,
        /// Also write paths under a name that starts with a dot (`.git/`, `.envrc`, …), which
        /// tools may run code from
        #[arg(long)]
        dotfiles: bool,
        /// Where the coordinator is.
        #[command(flatten)]
        conn: Conn,
    },
    /// Stop handing out new trials (running ones go on, unless --hand-back)
    Pause {
        /// Sweep id
        sweep: String,
        /// Hand running trials back too, the built-in trainer's after a checkpoint: they go on
        /// from it when the sweep resumes (within one heartbeat, a few seconds)
        #[arg(long)]
        hand_back: bool,
        /// Where the coordinator is.
        #[command(flatten)]
        conn: Conn,
    },
    /// Hand out trials again
    Resume {
        /// Sweep id
        sweep: String,
        /// Where the coordinator is.
        #[command(flatten)]
        conn: Conn,
    },
    /// Stop the sweep: no new trials, running ones are told to stop
    Stop {
        /// Sweep id
        sweep: String,
        /// Where the coordinator is.
        #[command(flatten)]
        conn: Conn,
    },
}

/// A failed command, sorted by exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// Anything else (exit code 1).
    #[error("{0}")]
    Other(String),
    /// Ended by a signal after a clean shutdown (exit code 128 + the signal's number).
    #[error("interrupted by signal {0}")]
    Interrupted(i32),
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Other(_) => 1,
            CliError::Interrupted(n) => u8::try_from(128 + n).unwrap_or(1),
        }
    }
}

/// A second Ctrl-C or SIGTERM during a clean shutdown ends the process at once.
fn quit_on_second_signal() {
    tokio::spawn(async {
        let n = worker::cli::shutdown_signal_number().await;
        eprintln!("second signal: quitting without waiting");
        std::process::exit(128 + n);
    });
}

/// `coordinator workers`: a table (or JSON) of the known workers and their GPUs.
fn print_workers(workers: &[pb::WorkerSummary], json: bool) {
    if json {
        let v: Vec<serde_json::Value> = workers.iter().map(export::worker_json).collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    if workers.is_empty() {
        println!("no workers");
        return;
    }
    let t = crate::engine::now();
    let rows: Vec<[String; 7]> = workers
        .iter()
        .map(|w| {
            let seen = if w.last_seen > 0.0 {
                format!("{:.0} s ago", (t - w.last_seen).max(0.0))
            } else {
                "not since the start".into()
            };
            [
                export::terminal_safe(&w.id).into_owned(),
                export::terminal_safe(&w.host).into_owned(),
                w.cores.to_string(),
                w.slots.to_string(),
                if w.connected { "connected" } else { "gone" }.into(),
                seen,
                export::terminal_safe(&export::gpus_text(&w.gpus)).into_owned(),
            ]
        })
        .collect();
    let head = ["id", "host", "cores", "slots", "state", "last seen", "GPUs"].map(String::from);
    let w = widths(&[&[head.clone()][..], &rows].concat());
    // Counts right-aligned, the last column unpadded.
    let line = |cells: &[String; 7]| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| match i {
                2 | 3 => format!("{c:>0$}", w[i]),
                6 => c.clone(),
                _ => format!("{c:<0$}", w[i]),
            })
            .collect();
        padded.join("  ")
    };
    println!("{}", line(&head));
    for r in &rows {
        println!("{}", line(r));
    }
}

fn status_err(url: &str, s: tonic::Status) -> CliError {
    // A web server answered (no gRPC status): most likely the dashboard's port.
    if s.message().contains("grpc-status header missing") {
        return CliError::Usage(format!(
            "{url} answered as a web server, not as a coordinator's gRPC port ({}): is it the dashboard's port (--http-listen)? --coordinator takes the port of `coordinator serve --listen` (50051 by default)",
            s.message()
        ));
    }
    match s.code() {
        tonic::Code::InvalidArgument | tonic::Code::NotFound | tonic::Code::FailedPrecondition => {
            CliError::Usage(s.message().to_string())
        }
        tonic::Code::Unauthenticated => {
            CliError::Usage(format!("{url} refused the call: {}", s.message()))
        }
        tonic::Code::Unavailable if s.message().starts_with(service::STORE_UNAVAILABLE) => {
            CliError::Other(format!("{url}: {}", s.message()))
        }
        tonic::Code::Unavailable => CliError::Other(format!(
            "cannot reach the coordinator at {url}: {}{}",
            s.message(),
            if s.message().contains("connect") {
                format!(" — is `coordinator serve` running there? Give its address with --coordinator or SWEEP_COORDINATOR (serve listens on {} unless --listen says otherwise)", DEFAULT_LISTEN)
            } else {
                String::new()
            }
        )),
        _ => CliError::Other(format!("{}: {}", url, s.message())),
    }
}

async fn client(conn: &Conn) -> Result<SweepsClient<AuthChannel>, CliError> {
    let token = sweep_proto::conn::token_from(conn.token.clone(), conn.token_file.as_deref())
        .map_err(CliError::Usage)?;
    let ch = sweep_proto::conn::channel(&ClientOptions {
        url: conn.coordinator.clone(),
        token: token.and_then(Secret::new),
        tls_ca: conn.tls_ca.clone(),
    })
    .map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(SweepsClient::new(ch)
        .max_decoding_message_size(service::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(service::MAX_MESSAGE_BYTES))
}

/// Reads and validates a sweep config file, so a bad one is refused before anything is sent.
/// `trainer` sets (or replaces) its `trainer` key; the text sent is then JSON.
pub fn read_config(file: &Path, trainer: Option<&str>) -> Result<(String, SweepSpec), CliError> {
    let size = std::fs::metadata(file)
        .map_err(|e| CliError::Usage(format!("{}: cannot read: {e}", file.display())))?
        .len();
    if size > crate::config::MAX_CONFIG_BYTES as u64 {
        return Err(CliError::Usage(format!(
            "{}: {size} bytes; a sweep config may have at most {} bytes (1 MiB)",
            file.display(),
            crate::config::MAX_CONFIG_BYTES
        )));
    }
    let mut text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Usage(format!("{}: cannot read: {e}", file.display())))?;
    if let Some(t) = trainer {
        let mut v = crate::config::parse_text(&text)
            .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
        if let Some(m) = v.as_object_mut() {
            m.insert("trainer".into(), serde_json::Value::from(t));
        }
        text = v.to_string();
    }
    let spec =
        SweepSpec::parse(&text).map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
    for n in &spec.notices {
        eprintln!("note: {}: {n}", file.display());
    }
    Ok((text, spec))
}

impl Command {
    /// Whether the command only makes a few calls, prints and exits — the ones for which a
    /// closed stdout may end the process by SIGPIPE (`worker::cli::restore_sigpipe`). Not the
    /// ones that serve (`serve`, `run`) or hold a stream (`watch`).
    pub fn prints_and_exits(&self) -> bool {
        match self {
            Command::Submit { .. }
            | Command::Workers { .. }
            | Command::Status { .. }
            | Command::Leaderboard { .. }
            | Command::Export { .. }
            | Command::Report { .. }
            | Command::Trial { .. }
            | Command::Model { .. }
            | Command::Files { .. }
            | Command::Pause { .. }
            | Command::Resume { .. }
            | Command::Stop { .. } => true,
            Command::Serve { .. } | Command::Run { .. } | Command::Watch { .. } => false,
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(dispatch(cli.command))
}

/// Where `serve` listens unless `--listen` says otherwise.
const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// Checks that `addr` (of `flag`) can be listened on, before anything is said to be
/// listening: a port in use is an error at once, naming the flag. Returns the address as
/// bound (a port 0 made concrete).
async fn free_address(flag: &str, addr: Option<String>) -> Result<Option<String>, CliError> {
    let Some(a) = addr else {
        return Ok(None);
    };
    let l = tokio::net::TcpListener::bind(&a)
        .await
        .map_err(|e| CliError::Usage(format!("{flag} {a}: {e}")))?;
    let local = l.local_addr().map_err(|e| CliError::Other(e.to_string()))?;
    drop(l);
    Ok(Some(local.to_string()))
}

fn engine_options(lease_ttl: f64) -> Result<EngineOptions, CliError> {
    if !(lease_ttl.is_finite() && (0.05..=86_400.0).contains(&lease_ttl)) {
        return Err(CliError::Usage(format!(
            "invalid value for --lease-ttl: expected seconds from 0.05 to 86400, got {lease_ttl}"
        )));
    }
    Ok(EngineOptions {
        lease_ttl: Duration::from_secs_f64(lease_ttl),
        ..EngineOptions::default()
    })
}

async fn dispatch(cmd: Command) -> Result<(), CliError> {
    match cmd {
        Command::Serve {
            listen,
            store,
            lease_ttl,
            token,
            token_file,
            tls_cert,
            tls_key,
            metrics_listen,
            http_listen,
            http_allow_host,
        } => {
            let token = sweep_proto::conn::token_from(token, token_file.as_deref())
                .map_err(CliError::Usage)?;
            // Every port is checked before "listening" is said.
            let http_listen = free_address("--http-listen", http_listen).await?;
            let metrics_listen = free_address("--metrics-listen", metrics_listen).await?;
            let opts = server::ServeOptions {
                token: token.and_then(Secret::new),
                tls: tls_cert.zip(tls_key),
                metrics_listen,
                http_listen,
                http_allow_hosts: http_allow_host,
                ..Default::default()
            };
            let engine = Engine::open(&store, engine_options(lease_ttl)?)
                .map_err(|e| CliError::Other(e.to_string()))?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .map_err(|e| CliError::Usage(format!("--listen {listen}: {e}")))?;
            let addr = listener
                .local_addr()
                .map_err(|e| CliError::Other(e.to_string()))?;
            tracing::info!(%addr, store = %store.display(), "serving");
            // Said once every port is bound, so that whoever waits for it can connect to any.
            let opts = server::ServeOptions {
                announce: Some(format!(
                    "coordinator listening on {addr} (store {})",
                    store.display()
                )),
                ..opts
            };
            let (sig_tx, mut sig_rx) = tokio::sync::oneshot::channel();
            let signal = async move {
                let n = worker::cli::shutdown_signal_number().await;
                eprintln!("coordinator: shutting down (signal {n}); again to quit at once");
                quit_on_second_signal();
                let _ = sig_tx.send(n);
            };
            server::serve(engine, listener, signal, &opts)
                .await
                .map_err(|e| CliError::Other(e.to_string()))?;
            // SIGTERM is how service managers stop a daemon: a clean stop exits 0 (what
            // systemd and Kubernetes count as success); Ctrl-C exits 130 as shells expect.
            match sig_rx.try_recv() {
                Ok(2) => Err(CliError::Interrupted(2)),
                _ => Ok(()),
            }
        }
        Command::Run {
            file,
            workers,
            store,
            out,
            data_dir,
            lease_ttl,
            http_listen,
            trainer,
            resume,
        } => {
            run_local(
                &file,
                trainer.as_deref(),
                workers,
                store,
                out,
                data_dir,
                lease_ttl,
                http_listen,
                resume,
            )
            .await
        }
        Command::Submit {
            file,
            name,
            trainer,
            conn,
        } => {
            let (text, spec) = read_config(&file, trainer.as_deref())?;
            if let crate::config::Trainer::Program(p) = &spec.trainer {
                eprintln!(
                    "note: trials run {} on workers started with --allow-programs, in their --workdir",
                    p.program.as_deref().map_or("the config's command".to_string(), |p| format!("program {p}"))
                );
            }
            let mut c = client(&conn).await?;
            let r = c
                .create_sweep(pb::CreateSweepRequest {
                    config: text,
                    name: name.unwrap_or_default(),
                })
                .await
                .map_err(|s| status_err(&conn.coordinator, s))?;
            println!("{}", r.into_inner().sweep_id);
            Ok(())
        }
        Command::Watch { sweep, conn } => {
            let mut c = client(&conn).await?;
            watch(&mut c, &conn.coordinator, &sweep).await
        }
        Command::Workers { json, conn } => {
            let mut c = client(&conn).await?;
            let workers = c
                .list_workers(pb::ListWorkersRequest {})
                .await
                .map_err(|s| status_err(&conn.coordinator, s))?
                .into_inner()
                .workers;
            print_workers(&workers, json);
            Ok(())
        }
        Command::Status { sweep, json, conn } => {
            let mut c = client(&conn).await?;
            let sweeps = match sweep {
                Some(id) => vec![c
                    .get_sweep(pb::GetSweepRequest { sweep_id: id })
                    .await
                    .map_err(|s| status_err(&conn.coordinator, s))?
                    .into_inner()],
                None => {
                    c.list_sweeps(pb::ListSweepsRequest {})
                        .await
                        .map_err(|s| status_err(&conn.coordinator, s))?
                        .into_inner()
                        .sweeps
                }
            };
            if json {
                let v: Vec<serde_json::Value> = sweeps.iter().map(export::info_json).collect();
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else if sweeps.is_empty() {
                println!("no sweeps");
            } else {
                // Columns as wide as their longest entry (names of any length line up).
                let rows: Vec<[String; 10]> = sweeps
                    .iter()
                    .map(|s| {
                        let done = s.finished + s.stopped + s.failed;
                        let total = if s.total > 0 {
                            s.total.to_string()
                        } else {
                            "∞".into()
                        };
                        let best = s.best.map_or("-".into(), |b| {
                            format!("{b:.4} (trial {})", s.best_trial.unwrap_or(0))
                        });
                        [
                            export::terminal_safe(&s.id).into_owned(),
                            export::terminal_safe(&s.name).into_owned(),
                            export::terminal_safe(&s.method).into_owned(),
                            export::state_name(s.state).to_string(),
                            format!("{done}/{total}"),
                            s.running.to_string(),
                            s.failed.to_string(),
                            s.workers.to_string(),
                            export::terminal_safe(&export::objective_names(s).join(", "))
                                .into_owned(),
                            best,
                        ]
                    })
                    .collect();
                let head = [
                    "id",
                    "name",
                    "method",
                    "state",
                    "done/total",
                    "running",
                    "failed",
                    "workers",
                    "metric",
                    "best",
                ]
                .map(String::from);
                let w = widths(&[&[head.clone()][..], &rows].concat());
                println!("{}", table_line(&head, &w));
                for r in &rows {
                    println!("{}", table_line(r, &w));
                }
                for s in &sweeps {
                    for n in &s.notices {
                        println!(
                            "{}: {}",
                            export::terminal_safe(&s.id),
                            export::terminal_safe(n)
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Leaderboard {
            sweep,
            json,
            csv,
            top,
            conn,
        } => {
            let mut c = client(&conn).await?;
            let lb = c
                .leaderboard(pb::LeaderboardRequest {
                    sweep_id: sweep,
                    top: top.unwrap_or(0),
                    ..Default::default()
                })
                .await
                .map_err(|s| status_err(&conn.coordinator, s))?
                .into_inner();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&export::leaderboard_json(&lb))
                        .unwrap_or_default()
                );
            } else if csv {
                print!("{}", export::leaderboard_csv(&lb));
            } else {
                print!("{}", export::leaderboard_table(&lb));
            }
            Ok(())
        }
        Command::Export {
            sweep,
            out,
            force,
            conn,
        } => {
            let out = out_dir(&out, force, false)?;
            let mut c = client(&conn).await?;
            let data = fetch_sweep(&mut c, &conn.coordinator, &sweep, 1).await?;
            let files = write_all(&out, export_files(&data))?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(())
        }
        Command::Report {
            sweep,
            out,
            force,
            conn,
        } => {
            let out = out_dir(&out, force, false)?;
            let mut c = client(&conn).await?;
            let data = fetch_sweep(&mut c, &conn.coordinator, &sweep, TOP_CURVES).await?;
            let files = write_all(&out, report_files(&data)?)?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(())
        }
        Command::Trial {
            sweep,
            trial,
            json,
            conn,
        } => {
            let mut c = client(&conn).await?;
            let d = c
                .get_trial(pb::GetTrialRequest {
                    sweep_id: sweep.clone(),
                    trial,
                    // A terminal's table needs a few hundred rows at most; JSON gets the
                    // API's default.
                    max_points: if json { 0 } else { 2_000 },
                })
                .await
                .map_err(|s| status_err(&conn.coordinator, s))?
                .into_inner();
            print_trial(&sweep, &d, json);
            Ok(())
        }
        Command::Model {
            sweep,
            trial,
            out,
            force,
            conn,
        } => {
            // The directory is checked before the download, not after.
            let dir = out_dir(&out, force, false)?;
            let names = [sweep_trainer::MODEL_WEIGHTS, sweep_trainer::MODEL_CARD];
            dir.check_all(names).map_err(CliError::Other)?;
            let mut c = client(&conn).await?;
            let m = c
                .get_model(pb::GetModelRequest {
                    sweep_id: sweep,
                    trial: trial.unwrap_or(0),
                })
                .await
                .map_err(|s| status_err(&conn.coordinator, s))?
                .into_inner();
            write_all(
                &dir,
                vec![
                    (names[0], m.weights.clone()),
                    (names[1], m.card.clone().into_bytes()),
                ],
            )?;
            println!(
                "trial {}'s model: {} ({} bytes of weights); try `worker evaluate --model {}`",
                m.trial,
                out.display(),
                m.weights.len(),
                out.display()
            );
            Ok(())
        }
        Command::Files {
            sweep,
            trial,
            out,
            path,
            force,
            dotfiles,
            conn,
        } => {
            let dir = out_dir(&out, force, dotfiles)?;
            download_files(&conn, sweep, trial, &dir, path).await
        }
        Command::Pause {
            sweep,
            hand_back,
            conn,
        } => control(&conn, &sweep, pb::Control::Pause, hand_back).await,
        Command::Resume { sweep, conn } => control(&conn, &sweep, pb::Control::Resume, false).await,
        Command::Stop { sweep, conn } => control(&conn, &sweep, pb::Control::Stop, false).await,
    }
}

/// `coordinator files`: the kept files of a trial, checked (the list, each file's SHA-256,
/// paths that stay inside `out`) before any is written.
async fn download_files(
    conn: &Conn,
    sweep: String,
    trial: Option<u64>,
    out: &OutDir,
    path: Option<String>,
) -> Result<(), CliError> {
    use sweep_proto::files::split;
    if let Some(p) = &path {
        out.check(p).map_err(CliError::Other)?;
    }
    let mut c = client(conn).await?;
    let (h, data) = fetch_files(
        &mut c,
        &conn.coordinator,
        pb::GetFilesRequest {
            sweep_id: sweep,
            trial: trial.unwrap_or(0),
            path: path.unwrap_or_default(),
        },
    )
    .await?;
    let files = split(&h.files, &data)
        .map_err(|e| CliError::Other(format!("the files sent are damaged: {e}")))?;
    out.check_all(files.iter().map(|(f, _)| f.path.as_str()))
        .map_err(CliError::Other)?;
    for (f, bytes) in &files {
        let p = out.write(&f.path, bytes).map_err(CliError::Other)?;
        println!(
            "{} ({} bytes)",
            export::terminal_safe(&p.display().to_string()),
            f.bytes
        );
    }
    println!(
        "trial {}'s files: {} ({} bytes) in {}",
        h.trial,
        files.len(),
        data.len(),
        out.path_of("").display()
    );
    Ok(())
}

async fn control(
    conn: &Conn,
    sweep: &str,
    action: pb::Control,
    hand_back: bool,
) -> Result<(), CliError> {
    let mut c = client(conn).await?;
    let s = c
        .control_sweep(pb::ControlSweepRequest {
            sweep_id: sweep.to_string(),
            action: action as i32,
            hand_back,
        })
        .await
        .map_err(|s| status_err(&conn.coordinator, s))?
        .into_inner();
    println!("sweep {} is {}", s.id, export::state_name(s.state));
    Ok(())
}

fn print_trial(sweep: &str, d: &pb::TrialDetail, json: bool) {
    let s = d.summary.clone().unwrap_or_default();
    if json {
        let v = export::trial_json(d);
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    let name = if s.name.is_empty() {
        String::new()
    } else {
        format!(" ({})", export::terminal_safe(&s.name))
    };
    println!(
        "trial {}{name}: {} (attempts {}, worker {}, {:.1}s)",
        s.trial,
        s.state,
        s.attempts,
        export::terminal_safe(&s.worker),
        s.duration_seconds
    );
    if !s.error.is_empty() {
        println!("reason: {}", export::terminal_safe(&s.error));
    }
    if !d.gpus.is_empty() {
        println!("GPUs: {}", export::terminal_safe(&d.gpus.join(", ")));
    }
    if !d.gang.is_empty() {
        println!(
            "gang: rank 0 on {}, then {}",
            export::terminal_safe(&s.worker),
            export::terminal_safe(&d.gang.join(", "))
        );
    }
    if let Some(m) = &d.checkpoint {
        println!(
            "checkpoint: {} ({} bytes, saved by attempt {})",
            export::position(m),
            m.bytes,
            m.attempt
        );
    }
    if !d.files.is_empty() {
        let total: u64 = d.files.iter().map(|f| f.bytes).sum();
        println!(
            "files: {} ({total} bytes; `coordinator files {} {} --out DIR` downloads them)",
            d.files.len(),
            export::terminal_safe(sweep),
            s.trial
        );
        for f in &d.files {
            println!("  {} ({} bytes)", export::terminal_safe(&f.path), f.bytes);
        }
    }
    for a in &d.attempts {
        let ran = if a.ended_at > 0.0 {
            format!("ran {:.1}s", (a.ended_at - a.started_at).max(0.0))
        } else {
            "running".into()
        };
        let from = a
            .resumed_from
            .as_ref()
            .map_or("from the start".into(), |m| {
                format!("resumed from {}", export::position(m))
            });
        let ending = if a.ending.is_empty() {
            String::new()
        } else {
            format!(", {}", a.ending)
        };
        println!(
            "  attempt {} on {}: {from}, {ran}{ending}",
            a.attempt,
            export::terminal_safe(&a.worker)
        );
    }
    let params = serde_json::Value::Object(sweep_proto::json::map_to_json(&s.params)).to_string();
    println!("params: {}", export::terminal_safe(&params));
    println!("seed: {}", d.seed);
    if d.command.starts_with("worker train") {
        println!("train it again: {}", export::terminal_safe(&d.command));
    } else if !d.command.is_empty() {
        println!("command: {}", export::terminal_safe(&d.command));
    }
    print_curve(d);
    let mut keys: Vec<&String> = s.metrics.keys().collect();
    keys.sort();
    for k in keys {
        println!("{} = {}", export::terminal_safe(k), s.metrics[k]);
    }
    if let Some(c) = &d.confusion {
        let k = c.labels.len().max(1);
        let m: Vec<Vec<u64>> = c.counts.chunks(k).map(<[u64]>::to_vec).collect();
        print!("{}", sweep_trainer::confusion::format(&c.labels, &m));
    }
    if !d.output.is_empty() {
        let lines: Vec<&str> = d.output.lines().collect();
        let from = lines.len().saturating_sub(40);
        println!("output (last {} lines):", lines.len() - from);
        for l in &lines[from..] {
            println!("  {}", export::terminal_safe(l));
        }
    }
}

/// Rows and metric columns of a trial's curve a terminal is shown at most (rows evenly
/// spread, the last always).
const CURVE_ROWS: usize = 60;
const CURVE_COLUMNS: usize = 8;

/// A trial's curve as a table: a row per step, a column per metric.
fn print_curve(d: &pb::TrialDetail) {
    let mut table: std::collections::BTreeMap<u32, std::collections::BTreeMap<&str, f64>> =
        Default::default();
    for p in &d.curve {
        table.entry(p.step).or_default().insert(&p.name, p.value);
    }
    let mut names: Vec<&str> = d.curve.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return;
    }
    let more = names.len().saturating_sub(CURVE_COLUMNS);
    names.truncate(CURVE_COLUMNS);
    print!("{:>7}", "step");
    for n in &names {
        print!(" {:>14}", export::terminal_safe(n));
    }
    println!();
    let rows: Vec<(&u32, &std::collections::BTreeMap<&str, f64>)> = table.iter().collect();
    let shown: Vec<usize> = if rows.len() <= CURVE_ROWS {
        (0..rows.len()).collect()
    } else {
        let mut v: Vec<usize> = (0..CURVE_ROWS)
            .map(|i| i * (rows.len() - 1) / (CURVE_ROWS - 1))
            .collect();
        v.dedup();
        v
    };
    for i in &shown {
        let (step, values) = rows[*i];
        print!("{step:>7}");
        for n in &names {
            let v = values.get(n).map_or("-".into(), |v| format!("{v:.4}"));
            print!(" {v:>14}");
        }
        println!();
    }
    if more > 0 {
        println!("({more} more metrics not shown)");
    }
    if shown.len() < rows.len() || d.curve_sampled {
        let trial = d.summary.as_ref().map_or(0, |s| s.trial);
        println!(
            "({} of {} steps shown; the curve has {} points: `trial --json` gives up to 10,000 of them, the API's /trials/{trial}/curve every one)",
            shown.len(),
            if d.curve_sampled { "the sampled".to_string() } else { rows.len().to_string() },
            d.curve_points,
        );
    }
}

/// The leaderboard and the details of its first `details` ranked trials (best first): what the
/// export (the best one) and the report (the top curves) are made from, fetched once.
async fn fetch_sweep(
    c: &mut SweepsClient<AuthChannel>,
    url: &str,
    sweep: &str,
    details: usize,
) -> Result<crate::report::ReportData, CliError> {
    let leaderboard = c
        .leaderboard(pb::LeaderboardRequest {
            sweep_id: sweep.to_string(),
            top: 0,
            ..Default::default()
        })
        .await
        .map_err(|s| status_err(url, s))?
        .into_inner();
    crate::report::gather(
        leaderboard,
        details,
        |trial| {
            let mut c = c.clone();
            async move {
                c.get_trial(pb::GetTrialRequest {
                    sweep_id: sweep.to_string(),
                    trial,
                    max_points: 0,
                })
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| status_err(url, s))
            }
        },
        |trial, path| {
            let mut c = c.clone();
            async move {
                let request = pb::GetFilesRequest {
                    sweep_id: sweep.to_string(),
                    trial,
                    path,
                };
                Ok(fetch_files(&mut c, url, request).await?.1)
            }
        },
    )
    .await
}

/// A trial's kept files as GetFiles sends them: the header (their list) and their bytes.
async fn fetch_files(
    c: &mut SweepsClient<AuthChannel>,
    url: &str,
    request: pb::GetFilesRequest,
) -> Result<(pb::FilesHeader, Vec<u8>), CliError> {
    let stream = c
        .get_files(request)
        .await
        .map_err(|s| status_err(url, s))?
        .into_inner();
    let bad = |e: String| CliError::Other(format!("the files sent are damaged: {e}"));
    sweep_proto::transfer::Incoming::start(
        stream,
        sweep_proto::files::MAX_FILES_BYTES,
        Duration::from_secs(60),
    )
    .await
    .map_err(bad)?
    .finish()
    .await
    .map_err(bad)
}

/// Opens `--out` for a download (cli/out.rs: no symlink followed, nothing replaced without
/// `--force`, no dot-path without `--dotfiles`).
fn out_dir(out: &Path, overwrite: bool, dotfiles: bool) -> Result<OutDir, CliError> {
    OutDir::open(
        out,
        Allow {
            overwrite,
            dotfiles,
        },
    )
    .map_err(CliError::Usage)
}

/// The export files (leaderboard, the best trial's confusion matrix).
fn export_files(data: &crate::report::ReportData) -> Vec<(&'static str, Vec<u8>)> {
    export::files(&data.leaderboard, data.top.first())
}

/// The report files.
fn report_files(
    data: &crate::report::ReportData,
) -> Result<Vec<(&'static str, Vec<u8>)>, CliError> {
    crate::report::render(data).map_err(CliError::Other)
}

/// Writes `files` into `out`, all checked before the first is written; their paths.
fn write_all(out: &OutDir, files: Vec<(&str, Vec<u8>)>) -> Result<Vec<PathBuf>, CliError> {
    out.check_all(files.iter().map(|(n, _)| *n))
        .map_err(CliError::Other)?;
    files
        .iter()
        .map(|(name, bytes)| out.write(name, bytes).map_err(CliError::Other))
        .collect()
}

/// The local workers of `run` and the GPUs of each: `workers` without any when trials ask
/// for none, else one per `need` of this machine's GPUs (an error when it has fewer).
fn local_gpus(
    file: &Path,
    need: u32,
    workers: usize,
) -> Result<(usize, Vec<Vec<worker::gpus::Gpu>>), CliError> {
    if need == 0 {
        return Ok((workers, Vec::new()));
    }
    let cuda_visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let inventory = worker::gpus::inventory();
    let why = inventory.as_ref().err().cloned();
    let mine = worker::gpus::resolve(
        &worker::gpus::Choice::Auto,
        inventory,
        cuda_visible.as_deref(),
    )
    .map_err(CliError::Usage)?;
    if mine.len() < need as usize {
        return Err(CliError::Usage(format!(
            "{}: program_options.gpus: each trial asks for {need} GPU{}, and this machine has {}{}; nothing was run (on a cluster: coordinator submit, and workers where the GPUs are; docs/DEPLOY.md)",
            file.display(),
            if need == 1 { "" } else { "s" },
            mine.len(),
            why.map(|w| format!(" ({w})")).unwrap_or_default()
        )));
    }
    let chunks: Vec<Vec<worker::gpus::Gpu>> = mine
        .chunks_exact(need as usize)
        .map(<[_]>::to_vec)
        .collect();
    Ok((chunks.len(), chunks))
}

#[allow(clippy::too_many_arguments)]
async fn run_local(
    file: &Path,
    trainer: Option<&str>,
    workers: usize,
    store: Option<PathBuf>,
    out: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    lease_ttl: f64,
    http_listen: Option<String>,
    resume: bool,
) -> Result<(), CliError> {
    if workers == 0 {
        return Err(CliError::Usage(
            "invalid value for --workers: expected an integer ≥ 1, got 0".into(),
        ));
    }
    let (_, spec) = read_config(file, trainer)?;
    // A sweep the local workers cannot serve would wait for agents forever.
    if let Some(why) = spec.local_refusal() {
        return Err(CliError::Usage(format!("{}: {why}", file.display())));
    }
    // A sweep that asks for GPUs runs a local worker per trial that this machine's GPUs hold,
    // each with GPUs of its own.
    let (workers, gpus) = local_gpus(file, spec.gpus_per_trial(), workers)?;
    let nodes = spec.nodes_per_trial() as usize;
    if nodes > workers {
        return Err(CliError::Usage(format!(
            "{}: program_options.nodes: each trial runs on {nodes} workers at once, and run starts {workers} local worker{} ({}); nothing was run",
            file.display(),
            if workers == 1 { "" } else { "s" },
            if gpus.is_empty() {
                format!("--workers {nodes} or more")
            } else {
                "one per program_options.gpus of this machine's GPUs".to_string()
            }
        )));
    }
    // Where the files go is checked before anything trains, not found unwritable at the end.
    let target = out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(spec.name.as_deref().unwrap_or("sweep")));
    writable(&target).map_err(|e| {
        let what = if out.is_some() {
            "--out"
        } else {
            "output directory"
        };
        CliError::Usage(format!(
            "{what} {}: cannot write there ({e}); nothing was run",
            target.display()
        ))
    })?;
    let store = store.unwrap_or_else(|| PathBuf::from("runs/sweeps.db"));
    if let Some(dir) = store.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Other(format!("{}: {e}", dir.display())))?;
    }
    let engine = Engine::open(&store, engine_options(lease_ttl)?)
        .map_err(|e| CliError::Other(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::Other(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Other(e.to_string()))?;
    let url = server::url_of(addr);
    // The dashboard's address is checked here, so a port in use is an error before any work.
    let http_listen = free_address("--http-listen", http_listen).await?;
    let dashboard_at = http_listen.clone();
    let serve_opts = server::ServeOptions {
        http_listen,
        ..Default::default()
    };
    // The local workers stop first (handing back what they hold while the coordinator still
    // answers), then the coordinator.
    let (stop_tx, mut srx) = tokio::sync::watch::channel(false);
    let (agents_stop, agents_rx) = tokio::sync::watch::channel(false);
    let engine2 = engine.clone();
    let server = tokio::spawn(async move {
        server::serve(
            engine2,
            listener,
            async move {
                let _ = srx.wait_for(|v| *v).await;
            },
            &serve_opts,
        )
        .await
    });
    let spec_trainer = spec.trainer.clone();
    // A new sweep never writes into another's results (checked before it is made).
    if let Some(other) = out
        .as_deref()
        .filter(|_| !resume)
        .and_then(|o| results_of_another(o, ""))
    {
        return Err(CliError::Usage(format!(
            "--out {}: holds the results of sweep {other} (its leaderboard.json); give another --out or remove them (or --resume to go on with that sweep); nothing was run",
            out.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_default()
        )));
    }
    let id = if resume {
        let id = interrupted(&engine, &spec).ok_or_else(|| {
            CliError::Usage(format!(
                "--resume: {} holds no sweep of {} that is not over; run it without --resume to start one",
                store.display(),
                file.display()
            ))
        })?;
        engine
            .control(&id, crate::engine::SweepState::Running, false)
            .await
            .map_err(|e| CliError::Other(e.to_string()))?;
        id
    } else {
        engine
            .create_sweep(spec, None)
            .await
            .map_err(|e| CliError::Usage(e.to_string()))?
    };
    // Each sweep's files have a folder of their own: `--out`, or runs/<name>/<id>/.
    let out = out.unwrap_or_else(|| target.join(&id));
    if let Some(other) = results_of_another(&out, &id) {
        return Err(CliError::Usage(format!(
            "--out {}: holds the results of sweep {other} (its leaderboard.json); give another --out or remove them; sweep {id} is in {} (`coordinator run {} --resume` goes on with it)",
            out.display(),
            store.display(),
            file.display()
        )));
    }
    println!(
        "sweep {id} on {url} with {workers} local workers (store {}){}",
        store.display(),
        if resume { ", resumed" } else { "" }
    );
    let mut agents = Vec::new();
    // The person who runs `run` on their own config runs its program: the local workers may.
    let programs = worker::program::ProgramOptions {
        allow: true,
        workdir: std::env::current_dir()
            .map_err(|e| CliError::Other(format!("the current directory: {e}")))?,
        threads: (std::thread::available_parallelism().map_or(1, |n| n.get()) / workers).max(1),
        ..Default::default()
    };
    let runs_program = matches!(spec_trainer, crate::config::Trainer::Program(_));
    for i in 0..workers {
        let mut opts = worker::agent::AgentOptions::new(url.clone());
        opts.slots = 1;
        if let Some(mine) = gpus.get(i) {
            opts.gpus = mine.clone();
        }
        if runs_program {
            opts.programs = programs.clone();
        }
        opts.lease_wait = Duration::from_millis(500);
        if let Some(d) = &data_dir {
            opts.data_dir = d.clone();
        }
        let mut rx = agents_rx.clone();
        agents.push(tokio::spawn(worker::agent::run(opts, async move {
            let _ = rx.wait_for(|v| *v).await;
        })));
    }
    let mut c = client(&Conn::local(&url)).await?;
    let (watched, signal) = tokio::select! {
        r = watch(&mut c, &url, &id) => (r, None),
        n = worker::cli::shutdown_signal_number() => (Ok(()), Some(n)),
    };
    if signal.is_some() {
        eprintln!("interrupted: handing the running trials back, then pausing the sweep (again to quit at once)");
        quit_on_second_signal();
    }
    // The sweep is over or interrupted: the local workers hand back what they still hold.
    let _ = agents_stop.send(true);
    for a in agents {
        let _ = a.await;
    }
    if signal.is_some() {
        // Paused, not stopped: `run --resume` goes on with it (handed-back trials from their
        // checkpoints).
        engine
            .control(&id, crate::engine::SweepState::Paused, false)
            .await
            .map_err(|e| CliError::Other(e.to_string()))?;
        eprintln!(
            "sweep {id} is paused in {}; `coordinator run {} --resume` goes on with it",
            store.display(),
            file.display()
        );
    }
    let lb = c
        .leaderboard(pb::LeaderboardRequest {
            sweep_id: id.clone(),
            top: 0,
            ..Default::default()
        })
        .await
        .map_err(|s| status_err(&url, s))?
        .into_inner();
    println!();
    print!("{}", export::leaderboard_table(&lb));
    let data = fetch_sweep(&mut c, &url, &id, TOP_CURVES).await?;
    // `run` owns its sweep's folder: a resumed run replaces its files (never through a
    // symlink), and one it makes no more (a matrix not there yet) goes.
    let dir = out_dir(&out, true, false)?;
    let mut all = export_files(&data);
    all.extend(report_files(&data)?);
    for old in export::FILES.iter().chain(crate::report::FILES.iter()) {
        if !all.iter().any(|(n, _)| n == old) {
            let _ = std::fs::remove_file(out.join(old));
        }
    }
    let files = write_all(&dir, all)?;
    println!(
        "\nwrote {}",
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(a) = &dashboard_at {
        // The dashboard ends with `run`; the store keeps everything it showed.
        println!(
            "the dashboard closes with this run; to look at the sweep again: coordinator serve --store {} --http-listen {a}",
            store.display()
        );
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    watched?;
    match signal {
        Some(n) => Err(CliError::Interrupted(n)),
        None => Ok(()),
    }
}

/// The newest sweep in `engine` made from the same config as `spec` that is not over (paused
/// by an interrupted `run`, or still running).
fn interrupted(engine: &Engine, spec: &crate::config::SweepSpec) -> Option<String> {
    let mut best: Option<(f64, String)> = None;
    for id in engine.sweep_ids() {
        let Ok(Some((created, seed, config))) = engine.with_sweep(&id, |s| {
            (!s.state.is_terminal()).then_some((s.created_at, s.spec.seed, s.config_json.clone()))
        }) else {
            continue;
        };
        // The stored config has the seed drawn for it when the file gave none.
        let mut want = spec.raw.clone();
        if let serde_json::Value::Object(m) = &mut want {
            m.entry("seed").or_insert(seed.into());
        }
        let same = serde_json::from_str::<serde_json::Value>(&config).is_ok_and(|c| c == want);
        if same && best.as_ref().is_none_or(|(t, _)| created > *t) {
            best = Some((created, id));
        }
    }
    best.map(|(_, id)| id)
}

/// The id of another sweep than `id` whose results `dir` holds (its leaderboard.json says).
fn results_of_another(dir: &Path, id: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("leaderboard.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let other = v["sweep"]["id"].as_str()?;
    (other != id).then(|| other.to_string())
}

/// The width of each column of `status`'s table: its widest entry, in characters.
fn widths<const N: usize>(rows: &[[String; N]]) -> [usize; N] {
    let mut w = [0; N];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    w
}

/// One line of `status`'s table: the counts right-aligned, the rest left-aligned, the last
/// column unpadded.
fn table_line(cells: &[String; 10], widths: &[usize; 10]) -> String {
    let mut line = String::new();
    for (i, c) in cells.iter().enumerate() {
        let pad = " ".repeat(widths[i].saturating_sub(c.chars().count()));
        if i > 0 {
            line.push_str(if i == 8 { "  " } else { " " });
        }
        match i {
            4..=7 => {
                line.push_str(&pad);
                line.push_str(c);
            }
            9 => line.push_str(c),
            _ => {
                line.push_str(c);
                line.push_str(&pad);
            }
        }
    }
    line.trim_end().to_string()
}

/// Whether files can be written in `dir` (made if missing): a file is made there and removed.
fn writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".sweep-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}
