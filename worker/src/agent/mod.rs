//! The worker agent: registers with a coordinator, leases one trial per free slot, trains each
//! on its own thread, reports every epoch, stops when told, completes with test metrics and the
//! confusion matrix, and reconnects with bounded backoff and jitter. On shutdown it stops
//! leasing, hands back the trials it holds (they are re-queued at once) and exits.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use sweep_proto::conn::{AuthChannel, ClientOptions};
use sweep_proto::pb;
use sweep_proto::pb::coordinator_client::CoordinatorClient;
use tokio::runtime::Handle;

mod checkpoints;
mod files;
mod gpus;
mod port;

use crate::data;
use crate::train::{
    self, Cancel, Checkpoint, Control, EpochMetrics, Observer, Status, TrainConfig, TrainError,
    TrialOptions,
};
use checkpoints::Uploader;

/// First pause after a trial failed on this worker's own fault (its data), doubled each time.
const FAULT_PAUSE_MIN: Duration = Duration::from_secs(5);
/// Longest such pause.
const FAULT_PAUSE_MAX: Duration = Duration::from_secs(300);

/// How long a trial handed back (shutdown, a pause with hand-back) may take to send its last
/// checkpoint: within the 30 s that Slurm and Kubernetes leave between SIGTERM and SIGKILL by
/// default, with time left to hand the trial back.
const HAND_BACK_WAIT: Duration = Duration::from_secs(20);

/// Largest message the agent sends or accepts.
pub use sweep_proto::conn::MAX_MESSAGE_BYTES;

/// Agent settings.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Coordinator URL, e.g. `http://127.0.0.1:50051`.
    pub coordinator: String,
    /// Trials trained at once.
    pub slots: usize,
    /// Where the data sets live.
    pub data_dir: PathBuf,
    /// Host name reported at registration.
    pub host: String,
    /// How long one Lease long poll may wait.
    pub lease_wait: Duration,
    /// Longest pause between reconnection attempts.
    pub max_backoff: Duration,
    /// The coordinator's token.
    pub token: Option<sweep_proto::conn::Secret>,
    /// CA file to trust for an https:// coordinator.
    pub tls_ca: Option<PathBuf>,
    /// The agent's Prometheus metrics (served by `worker --metrics-listen`).
    pub metrics: Arc<crate::metrics::AgentMetrics>,
    /// Whether and how this worker runs users' programs.
    pub programs: crate::program::ProgramOptions,
    /// Take trials of this sweep only (`--sweep`); the agent ends when the sweep does.
    pub sweep: Option<String>,
    /// End after this many trials (`--count`, W&B's `count`).
    pub max_trials: Option<u64>,
    /// Run the trials of agent sweeps (configs without a program) with this program
    /// (`--program`): this worker's operator chose it, so it needs no `--allow-programs`.
    pub agent_program: Option<String>,
    /// Hand each trial to a function of the process that started this worker
    /// (`--function-fd`, used by `wandb.agent`).
    pub function: Option<Arc<crate::program::function::FunctionConn>>,
    /// The GPUs it registers (`--gpus`; none by default here, `auto` on the command line).
    pub gpus: Vec<crate::gpus::Gpu>,
    /// The host a gang's other members reach this worker at (`--advertise`; `None`: the
    /// address the coordinator sees it call from).
    pub advertise: Option<String>,
}

impl AgentOptions {
    /// Options for `coordinator` with defaults: one slot per core, the default data directory.
    pub fn new(coordinator: impl Into<String>) -> Self {
        AgentOptions {
            coordinator: coordinator.into(),
            slots: std::thread::available_parallelism().map_or(1, |n| n.get()),
            data_dir: data::default_data_dir(),
            host: hostname(),
            lease_wait: Duration::from_secs(10),
            max_backoff: Duration::from_secs(5),
            token: None,
            tls_ca: None,
            metrics: Arc::default(),
            programs: crate::program::ProgramOptions::default(),
            sweep: None,
            max_trials: None,
            agent_program: None,
            function: None,
            gpus: Vec::new(),
            advertise: None,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The coordinator URL, token or CA file cannot be used.
    #[error("{0}")]
    Conn(#[from] sweep_proto::conn::ConnError),
    /// The coordinator refused this worker's token.
    #[error("{url} refused this worker: {reason}")]
    Refused {
        /// The coordinator.
        url: String,
        /// Its message.
        reason: String,
    },
}

/// Exponential backoff with full jitter, capped.
#[derive(Debug, Clone)]
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Backoff {
            next: Duration::from_millis(50),
            max,
        }
    }
    fn reset(&mut self) {
        self.next = Duration::from_millis(50);
    }
    fn step(&mut self) -> Duration {
        let cur = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = rand::rng().random_range(0.5..1.0);
        cur.mul_f64(jitter)
    }
}

/// Shared by the slots of one agent.
#[derive(Debug)]
struct Shared {
    client: CoordinatorClient<AuthChannel>,
    worker_id: String,
    opts: AgentOptions,
    /// Raised on shutdown: lease nothing more, hand back running trials.
    draining: AtomicBool,
    /// Running attempts by lease id.
    running: Mutex<HashMap<String, Running>>,
    /// What this worker runs (sent with each Lease).
    trainers: Vec<String>,
    /// Where our `wandb` module was written for programs' `PYTHONPATH`.
    shim_dir: Option<PathBuf>,
    /// Trials leased so far (for `max_trials`).
    leased: std::sync::atomic::AtomicU64,
    /// Slot loops that ended on their own (count reached, sweep over).
    ended: std::sync::atomic::AtomicUsize,
    /// Told when every slot loop has ended on its own.
    all_ended: tokio::sync::Notify,
    /// This worker's GPUs that running trials hold.
    gpus_busy: gpus::Busy,
}

#[derive(Debug, Clone)]
struct Running {
    cancel: Cancel,
    /// Set when the coordinator says the attempt is stale.
    abandoned: Arc<AtomicBool>,
}

fn connect(opts: &AgentOptions) -> Result<CoordinatorClient<AuthChannel>, AgentError> {
    let ch = sweep_proto::conn::channel(&ClientOptions {
        url: opts.coordinator.clone(),
        token: opts.token.clone(),
        tls_ca: opts.tls_ca.clone(),
    })?;
    Ok(CoordinatorClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// Runs the agent until `shutdown` resolves; then hands back running trials and returns.
pub async fn run(
    opts: AgentOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let mut client = connect(&opts)?;
    let mut backoff = Backoff::new(opts.max_backoff);
    tokio::pin!(shutdown);
    let reg = loop {
        let req = pb::RegisterRequest {
            host: opts.host.clone(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as u32,
            slots: opts.slots as u32,
            version: env!("CARGO_PKG_VERSION").into(),
            worker_id: String::new(),
            gpus: opts
                .gpus
                .iter()
                .map(|g| pb::Gpu {
                    id: g.id.clone(),
                    index: g.index,
                    uuid: g.uuid.clone(),
                    name: g.name.clone(),
                    memory_mb: g.memory_mb,
                })
                .collect(),
        };
        tokio::select! {
            r = client.register(req) => match r {
                Ok(r) => break r.into_inner(),
                // A refused token will not become right by retrying: say so and stop.
                Err(s) if s.code() == tonic::Code::Unauthenticated => {
                    return Err(AgentError::Refused {
                        url: opts.coordinator.clone(),
                        reason: s.message().to_string(),
                    });
                }
                Err(s) => {
                    tracing::warn!(coordinator = %opts.coordinator, error = %s.message(), "register failed; retrying");
                    tokio::time::sleep(backoff.step()).await;
                }
            },
            () = &mut shutdown => return Ok(()),
        }
    };
    tracing::info!(worker = %reg.worker_id, slots = opts.slots, "registered");
    let trainers: Vec<String> = if opts.function.is_some() {
        // wandb.agent: the function runs whatever the sweep is (W&B ignores its program then).
        vec!["agent".into(), "program".into()]
    } else {
        let mut t = vec!["mlp".to_string(), "synthetic".to_string()];
        if opts.programs.allow {
            t.push("program".into());
        }
        if opts.agent_program.is_some() {
            t.push("agent".into());
        }
        t
    };
    let runs_programs =
        opts.function.is_none() && (opts.programs.allow || opts.agent_program.is_some());
    let shim_dir = if runs_programs {
        tracing::info!(workdir = %opts.programs.workdir.display(), only_under = ?opts.programs.only_under, agent_program = ?opts.agent_program, "this worker runs programs");
        crate::program::shim::install(&std::env::temp_dir())
            .inspect_err(|e| tracing::warn!(error = %e, dir = %std::env::temp_dir().display(), "cannot write the wandb module for programs; they run with the PYTHONPATH they have"))
            .ok()
    } else {
        None
    };
    let shared = Arc::new(Shared {
        client,
        worker_id: reg.worker_id,
        opts: opts.clone(),
        draining: AtomicBool::new(false),
        running: Mutex::new(HashMap::new()),
        trainers,
        shim_dir,
        leased: Default::default(),
        ended: Default::default(),
        all_ended: tokio::sync::Notify::new(),
        gpus_busy: gpus::Busy::default(),
    });
    let hb_every = Duration::from_millis(reg.heartbeat_interval_ms.clamp(100, 60_000));
    let hb = tokio::spawn(heartbeat(shared.clone(), hb_every));
    let mut slots = Vec::new();
    let n_slots = opts.slots.max(1);
    for slot in 0..n_slots {
        let sh = shared.clone();
        slots.push(tokio::spawn(async move {
            let on_its_own = slot_loop(sh.clone(), slot).await;
            if on_its_own && sh.ended.fetch_add(1, Ordering::SeqCst) + 1 == n_slots {
                sh.all_ended.notify_one();
            }
        }));
    }
    let gone = async {
        match &opts.function {
            Some(f) => {
                while !f.gone.is_cancelled() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = shutdown => {}
        () = shared.all_ended.notified() => tracing::info!("no more trials for this agent"),
        () = gone => tracing::info!("the process that started this worker is gone"),
    }
    tracing::info!("shutting down: handing back running trials (after a checkpoint)");
    shared.draining.store(true, Ordering::SeqCst);
    for r in shared
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
    {
        r.cancel.hand_back();
    }
    for s in slots {
        let _ = s.await;
    }
    hb.abort();
    // Said once the trials are handed back: the coordinator stops counting this worker at
    // once instead of two lease lifetimes later. Best effort: it may be gone too.
    let mut client = shared.client.clone();
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        client.heartbeat(pb::HeartbeatRequest {
            worker_id: shared.worker_id.clone(),
            lease_ids: Vec::new(),
            leaving: true,
        }),
    )
    .await;
    Ok(())
}

async fn heartbeat(shared: Arc<Shared>, every: Duration) {
    let mut client = shared.client.clone();
    loop {
        tokio::time::sleep(every).await;
        let ids: Vec<String> = shared
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        if ids.is_empty() {
            continue;
        }
        if let Ok(r) = client
            .heartbeat(pb::HeartbeatRequest {
                worker_id: shared.worker_id.clone(),
                lease_ids: ids,
                leaving: false,
            })
            .await
        {
            let r = r.into_inner();
            let map = shared.running.lock().unwrap_or_else(|p| p.into_inner());
            for id in r.drop_lease_ids {
                if let Some(run) = map.get(&id) {
                    tracing::warn!(lease = %id, "coordinator says the lease is gone; dropping the trial");
                    run.abandoned.store(true, Ordering::SeqCst);
                    run.cancel.cancel();
                }
            }
            for id in r.hand_back_lease_ids {
                if let Some(run) = map.get(&id) {
                    tracing::info!(lease = %id, "the sweep was paused with hand-back; handing the trial back after a checkpoint");
                    run.cancel.hand_back();
                }
            }
        }
    }
}

/// Leases and runs trials until the agent drains (false) or has nothing more to do: its count
/// is reached or its sweep is over (true).
async fn slot_loop(shared: Arc<Shared>, slot: usize) -> bool {
    let mut client = shared.client.clone();
    let mut backoff = Backoff::new(shared.opts.max_backoff);
    // After a trial failed on this worker's own fault (unreadable data), wait before the next
    // lease, longer each time, so a broken worker does not drain the queue by failing it.
    let mut fault_pause = FAULT_PAUSE_MIN;
    // A port kept free for a gang's rank 0 (a worker that runs programs takes part in gangs):
    // held (never listening) while asking for work, let go just before a rank-0 program
    // starts, which binds it.
    let gangs = shared.trainers.iter().any(|t| t == "program") && shared.opts.function.is_none();
    let mut rendezvous: Option<port::KeptPort> = None;
    while !shared.draining.load(Ordering::SeqCst) {
        // wandb.agent's process is gone: nothing is left to run trials for.
        if let Some(f) = &shared.opts.function {
            if f.gone.is_cancelled() {
                return true;
            }
        }
        if let Some(max) = shared.opts.max_trials {
            if shared.leased.load(Ordering::SeqCst) >= max {
                return true;
            }
        }
        if gangs && rendezvous.is_none() {
            rendezvous = port::KeptPort::keep()
                .inspect_err(|e| tracing::warn!(error = %e, "cannot keep a port for gangs"))
                .ok();
        }
        let req = pb::LeaseRequest {
            worker_id: shared.worker_id.clone(),
            wait_ms: shared.opts.lease_wait.as_millis() as u64,
            trainers: shared.trainers.clone(),
            sweep_id: shared.opts.sweep.clone().unwrap_or_default(),
            advertise: shared.opts.advertise.clone().unwrap_or_default(),
            rendezvous_port: rendezvous.as_ref().map_or(0, |k| u32::from(k.port)),
        };
        let resp = tokio::select! {
            r = client.lease(req) => r,
            () = wait_draining(&shared) => break,
        };
        match resp {
            Err(s) if s.code() == tonic::Code::NotFound => {
                tracing::error!(error = %s.message(), "the sweep this agent serves does not exist");
                return true;
            }
            Ok(r) => {
                backoff.reset();
                let r = r.into_inner();
                if r.sweep_ended {
                    tracing::info!(sweep = ?shared.opts.sweep, "the sweep is over");
                    return true;
                }
                if let Some(trial) = r.trial {
                    shared.leased.fetch_add(1, Ordering::SeqCst);
                    if trial.gang.as_ref().is_some_and(|g| g.rank == 0) {
                        // Its program hosts the gang's rendezvous on this port.
                        rendezvous = None;
                    }
                    if run_trial(shared.clone(), trial, slot).await {
                        tracing::error!(
                            slot,
                            pause_s = fault_pause.as_secs(),
                            data_dir = %shared.opts.data_dir.display(),
                            "this worker could not run its trial (its data, program, interpreter or disk); pausing before the next trial"
                        );
                        tokio::select! {
                            () = tokio::time::sleep(fault_pause) => {}
                            () = wait_draining(&shared) => break,
                        }
                        fault_pause = (fault_pause * 2).min(FAULT_PAUSE_MAX);
                    } else {
                        fault_pause = FAULT_PAUSE_MIN;
                    }
                }
            }
            Err(s) => {
                let pause = backoff.step();
                tracing::warn!(slot, error = %s.message(), retry_in_ms = pause.as_millis() as u64, "lease failed");
                tokio::time::sleep(pause).await;
            }
        }
    }
    false
}

async fn wait_draining(shared: &Shared) {
    while !shared.draining.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Decrements the trials-running gauge when dropped (also if the task is cancelled).
struct TrainingGauge<'a>(&'a crate::metrics::AgentMetrics);

impl Drop for TrainingGauge<'_> {
    fn drop(&mut self) {
        self.0.trials_running.dec();
    }
}

/// What a trial thread produced.
#[derive(Debug)]
struct Finished {
    outcome: pb::TrialOutcome,
    metrics: HashMap<String, f64>,
    confusion: Option<pb::ConfusionMatrix>,
    error: String,
    /// The failure is this worker's (its data files), not the trial's: pause before leasing.
    local_fault: bool,
    /// The tail of a program's output.
    output: String,
    /// The built-in trainer's trained network, for a finished or stopped trial.
    model: Option<pb::ModelFiles>,
    /// The files a program handed back (path, bytes), sent before the completion.
    files: Vec<(String, Vec<u8>)>,
    /// The name a program gave its run.
    run_name: String,
}

async fn run_trial(shared: Arc<Shared>, trial: pb::Trial, slot: usize) -> bool {
    use tracing::Instrument;
    let span = tracing::info_span!("trial", sweep = %trial.sweep_id, trial = trial.trial, attempt = trial.attempt, worker = %shared.worker_id);
    run_trial_in_span(shared, trial, slot)
        .instrument(span)
        .await
}

/// Runs one trial and completes it; true when it failed for a reason local to this worker.
async fn run_trial_in_span(shared: Arc<Shared>, trial: pb::Trial, slot: usize) -> bool {
    run_trial_counted(&shared, trial, slot).await
}

async fn run_trial_counted(shared: &Arc<Shared>, trial: pb::Trial, slot: usize) -> bool {
    let shared = shared.clone();
    // Training now: from the lease until the training thread is done (not while completing).
    shared.opts.metrics.trials_running.inc();
    let training = TrainingGauge(&shared.opts.metrics);
    let run = Running {
        cancel: Cancel::new(),
        abandoned: Arc::new(AtomicBool::new(false)),
    };
    shared
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(trial.lease_id.clone(), run.clone());
    let handle = Handle::current();
    let span = tracing::Span::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sh = shared.clone();
    let tr = trial.clone();
    let r2 = run.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("trial-slot-{slot}"))
        .spawn(move || {
            let _g = span.enter();
            let out = train_blocking(&sh, &tr, &r2, &handle);
            let _ = tx.send(out);
        });
    let done = match spawned {
        Ok(_) => rx.await.unwrap_or_else(|_| Finished {
            outcome: pb::TrialOutcome::Failed,
            metrics: HashMap::new(),
            confusion: None,
            error: "the training thread panicked".into(),
            local_fault: false,
            output: String::new(),
            model: None,
            files: Vec::new(),
            run_name: String::new(),
        }),
        Err(e) => Finished {
            outcome: pb::TrialOutcome::Released,
            metrics: HashMap::new(),
            confusion: None,
            error: format!("cannot start a training thread: {e}"),
            local_fault: false,
            output: String::new(),
            model: None,
            files: Vec::new(),
            run_name: String::new(),
        },
    };
    shared
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&trial.lease_id);
    drop(training);
    if run.abandoned.load(Ordering::SeqCst) {
        tracing::warn!("attempt abandoned (stale lease); not completing");
        return false;
    }
    let local_fault = done.local_fault;
    let outcome = match done.outcome {
        pb::TrialOutcome::Finished => "finished",
        pb::TrialOutcome::Stopped => "stopped",
        pb::TrialOutcome::Released => "released",
        pb::TrialOutcome::WorkerFault => "worker_fault",
        _ => "failed",
    };
    shared
        .opts
        .metrics
        .trials_completed
        .get_or_create(&crate::metrics::OutcomeLabel {
            outcome: outcome.into(),
        })
        .inc();
    complete(&shared, &trial, done).await;
    local_fault
}

async fn complete(shared: &Shared, trial: &pb::Trial, mut done: Finished) {
    // A finished or stopped program's files (the only ones it reads), while the attempt holds
    // the trial (docs/PROGRAMS.md).
    if !done.files.is_empty() {
        let files = std::mem::take(&mut done.files);
        if let Err(why) = files::send(
            &shared.client,
            shared.opts.max_backoff,
            &shared.worker_id,
            trial,
            files,
        )
        .await
        {
            tracing::warn!(reason = %why, "the trial's files were not kept");
            done.output
                .push_str(&format!("\n[sweep] files: not kept: {why}"));
        }
    }
    let mut client = shared.client.clone();
    let mut backoff = Backoff::new(shared.opts.max_backoff);
    let req = pb::CompleteRequest {
        worker_id: shared.worker_id.clone(),
        lease_id: trial.lease_id.clone(),
        sweep_id: trial.sweep_id.clone(),
        trial: trial.trial,
        attempt: trial.attempt,
        outcome: done.outcome as i32,
        metrics: done.metrics,
        confusion: done.confusion,
        error: done.error,
        output: done.output,
        model: done.model,
        run_name: done.run_name,
    };
    // A finished result is retried until the coordinator answers (it may be restarting);
    // a hand-back during shutdown is tried for a few seconds only.
    let deadline = tokio::time::Instant::now()
        + if done.outcome == pb::TrialOutcome::Released {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(600)
        };
    loop {
        match client.complete(req.clone()).await {
            Ok(r) => {
                let r = r.into_inner();
                if r.accepted {
                    tracing::info!(outcome = ?done.outcome, "trial completed");
                } else {
                    tracing::warn!(reason = %r.reason, "completion refused");
                }
                return;
            }
            Err(s) if tokio::time::Instant::now() < deadline => {
                let pause = backoff.step();
                tracing::warn!(error = %s.message(), retry_in_ms = pause.as_millis() as u64, "complete failed; retrying");
                tokio::time::sleep(pause).await;
            }
            Err(s) => {
                tracing::error!(error = %s.message(), "giving up on completing the trial");
                return;
            }
        }
    }
}

/// Sends one Report, retrying while the coordinator is unreachable. Returns the action.
fn report_blocking(
    shared: &Shared,
    trial: &pb::Trial,
    run: &Running,
    handle: &Handle,
    epoch: usize,
    metrics: HashMap<String, f64>,
    run_name: &str,
) -> Control {
    shared.opts.metrics.epochs.inc();
    if let Some(&sps) = metrics.get("samples_per_second") {
        shared.opts.metrics.samples_per_second.set(sps);
    }
    send_report(
        shared,
        run,
        handle,
        pb::ReportRequest {
            epoch: epoch as u32,
            metrics,
            ..report_of(shared, trial, run_name)
        },
    )
}

/// A report of `trial` by this worker, naming the run `run_name`, with nothing in it yet.
fn report_of(shared: &Shared, trial: &pb::Trial, run_name: &str) -> pb::ReportRequest {
    pb::ReportRequest {
        worker_id: shared.worker_id.clone(),
        lease_id: trial.lease_id.clone(),
        sweep_id: trial.sweep_id.clone(),
        trial: trial.trial,
        attempt: trial.attempt,
        run_name: run_name.to_string(),
        ..Default::default()
    }
}

/// Reports a program's history rows (W&B's steps) since its last report.
fn report_rows_blocking(
    shared: &Shared,
    trial: &pb::Trial,
    run: &Running,
    handle: &Handle,
    rows: Vec<pb::HistoryRow>,
    run_name: &str,
) -> Control {
    send_report(
        shared,
        run,
        handle,
        pb::ReportRequest {
            epoch: rows.last().map_or(0, |r| r.step),
            rows,
            ..report_of(shared, trial, run_name)
        },
    )
}

/// Sends one report (retrying what may pass later) and says what the coordinator answered.
fn send_report(shared: &Shared, run: &Running, handle: &Handle, req: pb::ReportRequest) -> Control {
    let mut client = shared.client.clone();
    let mut backoff = Backoff::new(shared.opts.max_backoff);
    loop {
        if run.cancel.is_cancelled() {
            return Control::Stop;
        }
        match handle.block_on(client.report(req.clone())) {
            Ok(r) => {
                let r = r.into_inner();
                return match pb::Action::try_from(r.action) {
                    Ok(pb::Action::Stop) => {
                        tracing::info!(reason = %r.reason, "told to stop");
                        Control::Stop
                    }
                    Ok(pb::Action::Abandon) => {
                        tracing::warn!(reason = %r.reason, "attempt is stale; dropping it");
                        run.abandoned.store(true, Ordering::SeqCst);
                        run.cancel.cancel();
                        Control::Stop
                    }
                    _ => Control::Continue,
                };
            }
            Err(s)
                if s.code() == tonic::Code::InvalidArgument
                    || s.code() == tonic::Code::NotFound =>
            {
                tracing::error!(error = %s.message(), "report refused; dropping the trial");
                run.abandoned.store(true, Ordering::SeqCst);
                run.cancel.cancel();
                return Control::Stop;
            }
            Err(s) => {
                let pause = backoff.step();
                tracing::warn!(error = %s.message(), retry_in_ms = pause.as_millis() as u64, "report failed; retrying");
                std::thread::sleep(pause);
            }
        }
    }
}

struct ReportingObserver<'a> {
    shared: &'a Shared,
    trial: &'a pb::Trial,
    run: &'a Running,
    handle: &'a Handle,
    /// Where checkpoints go (none when the sweep turned them off).
    uploader: Option<&'a Uploader>,
}

impl Observer for ReportingObserver<'_> {
    fn on_epoch(&mut self, m: &EpochMetrics) -> Control {
        let metrics: HashMap<String, f64> = [
            ("loss", m.loss),
            ("accuracy", m.accuracy),
            ("val_loss", m.val_loss),
            ("val_accuracy", m.val_accuracy),
            ("epoch_seconds", m.epoch_seconds),
            ("samples_per_second", m.samples_per_second),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        report_blocking(
            self.shared,
            self.trial,
            self.run,
            self.handle,
            m.epoch,
            metrics,
            "",
        )
    }

    fn on_checkpoint(&mut self, ck: Checkpoint) {
        if let Some(u) = self.uploader {
            u.offer(ck);
        }
    }
}

fn failed(error: String) -> Finished {
    Finished {
        outcome: pb::TrialOutcome::Failed,
        metrics: HashMap::new(),
        confusion: None,
        error,
        local_fault: false,
        output: String::new(),
        model: None,
        files: Vec::new(),
        run_name: String::new(),
    }
}

/// A program trial: the user's command as a child process, its reports forwarded.
fn program_blocking(
    shared: &Shared,
    trial: &pb::Trial,
    run: &Running,
    handle: &Handle,
    params: serde_json::Map<String, Value>,
    opts: &serde_json::Map<String, Value>,
) -> Finished {
    use crate::program::{self, Ending, ProgramTrial};
    let mut t = match ProgramTrial::from_lease(
        &trial.sweep_id,
        trial.trial,
        trial.attempt,
        &trial.metric,
        params,
        opts,
    ) {
        Ok(t) => t,
        Err(e) => return failed(e),
    };
    // The GPUs leased to it, and only those, are the program's; a worker with GPUs hides
    // them from a program sweep's trial that asked for none. (An agent sweep's program, and
    // a function of wandb.agent's process, run with the GPUs the worker was given.)
    let hold = match shared.gpus_busy.hold(&shared.opts.gpus, &trial.gpus) {
        Ok(h) => h,
        Err(why) => {
            tracing::warn!(reason = %why, "cannot give the trial its GPUs; handing it back");
            return Finished {
                outcome: pb::TrialOutcome::WorkerFault,
                error: why,
                local_fault: true,
                ..released()
            };
        }
    };
    if !shared.opts.gpus.is_empty() && trial.trainer == "program" {
        t.visible_gpus = Some(trial.gpus.clone());
    }
    t.gang = trial.gang.clone().map(|g| program::Gang {
        rank: g.rank,
        size: g.size,
        master_addr: g.master_addr,
        master_port: g.master_port,
    });
    // A gang's metrics are rank 0's: the others report nothing (their output is kept).
    let reports = trial.gang.as_ref().is_none_or(|g| g.rank == 0);
    let sampler = crate::gpus::Sampler::start(&hold.gpus, crate::gpus::SAMPLE_EVERY);
    let report = |step: &program::Step| {
        if !reports {
            return Control::Continue;
        }
        let mut rows: Vec<pb::HistoryRow> = step
            .rows
            .iter()
            .map(|r| pb::HistoryRow {
                step: r.step,
                metrics: r.metrics.clone(),
            })
            .collect();
        // The GPUs' last sample goes with the report's last row (W&B's system metrics).
        if let (Some(s), Some(last)) = (&sampler, rows.last_mut()) {
            last.metrics.extend(s.latest());
        }
        report_rows_blocking(
            shared,
            trial,
            run,
            handle,
            rows,
            step.name.as_deref().unwrap_or_default(),
        )
    };
    let out = if let Some(f) = &shared.opts.function {
        program::function::run(f, &t, &shared.opts.programs.workdir, &run.cancel, report)
    } else if trial.trainer == "agent" {
        let Some(p) = &shared.opts.agent_program else {
            return Finished {
                local_fault: true,
                ..released()
            };
        };
        // The operator's own program: allowed without --allow-programs, run W&B's default way.
        let t = ProgramTrial {
            program: Some(p.clone()),
            command: None,
            ..t
        };
        let o = program::ProgramOptions {
            allow: true,
            only_under: None,
            ..shared.opts.programs.clone()
        };
        program::run(&t, &o, shared.shim_dir.as_deref(), &run.cancel, report)
    } else if !shared.opts.programs.allow {
        // A coordinator that does not know this worker's trainers handed it a program.
        return Finished {
            local_fault: true,
            ..released()
        };
    } else {
        program::run(
            &t,
            &shared.opts.programs,
            shared.shim_dir.as_deref(),
            &run.cancel,
            report,
        )
    };
    let confusion = out.confusion.map(|c| pb::ConfusionMatrix {
        labels: c.labels,
        counts: c.counts,
    });
    let (outcome, error) = match out.ending {
        Ending::Released => return released(),
        // This worker's own fault: the trial goes back, and this slot pauses before its next
        // lease (5 s doubling to 5 min), as after missing data.
        Ending::Fault(why) => {
            tracing::warn!(reason = %why, "cannot run the trial's program here; handing it back");
            return Finished {
                outcome: pb::TrialOutcome::WorkerFault,
                error: why,
                local_fault: true,
                output: out.output,
                ..released()
            };
        }
        Ending::Finished => (
            pb::TrialOutcome::Finished,
            out.missing_metric.unwrap_or_default(),
        ),
        Ending::Stopped(why) => (pb::TrialOutcome::Stopped, why),
        Ending::Failed(why) => (pb::TrialOutcome::Failed, why),
    };
    Finished {
        outcome,
        metrics: out.metrics,
        confusion,
        error,
        local_fault: false,
        output: out.output,
        model: None,
        // The trial's files are rank 0's.
        files: if reports { out.files } else { Vec::new() },
        run_name: out.name.unwrap_or_default(),
    }
}

fn train_blocking(shared: &Shared, trial: &pb::Trial, run: &Running, handle: &Handle) -> Finished {
    let params = Value::Object(sweep_proto::json::map_to_json(&trial.params));
    let opts = sweep_proto::json::map_to_json(&trial.trainer_options);
    let seed = opts.get("seed").and_then(Value::as_u64).unwrap_or(0);
    match trial.trainer.as_str() {
        "program" | "agent" => {
            let Value::Object(p) = params else {
                return failed("params must be a mapping".into());
            };
            program_blocking(shared, trial, run, handle, p, &opts)
        }
        "synthetic" => {
            let Value::Object(p) = params else {
                return failed("params must be a mapping".into());
            };
            let p: BTreeMap<String, Value> = p.into_iter().collect();
            let function = opts
                .get("function")
                .and_then(Value::as_str)
                .unwrap_or("quadratic")
                .to_string();
            let epochs = opts.get("epochs").and_then(Value::as_u64).unwrap_or(5) as usize;
            let epoch_ms = opts.get("epoch_ms").and_then(Value::as_u64).unwrap_or(0);
            let mut stopped = false;
            let res = crate::synthetic::run(
                &function,
                &p,
                epochs,
                epoch_ms,
                Some(&run.cancel),
                |e, m| {
                    let metrics = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
                    let c = report_blocking(shared, trial, run, handle, e, metrics, "");
                    if c == Control::Stop && !run.cancel.is_cancelled() {
                        stopped = true;
                    }
                    c
                },
            );
            match res {
                Err(e) => failed(e.to_string()),
                Ok(r) if r.cancelled || (run.cancel.is_cancelled() && !stopped) => released(),
                Ok(r) => Finished {
                    outcome: if r.stopped {
                        pb::TrialOutcome::Stopped
                    } else {
                        pb::TrialOutcome::Finished
                    },
                    metrics: r.metrics.into_iter().collect(),
                    confusion: None,
                    error: String::new(),
                    local_fault: false,
                    output: String::new(),
                    model: None,
                    files: Vec::new(),
                    run_name: String::new(),
                },
            }
        }
        "mlp" | "" => {
            let Value::Object(mut p) = params else {
                return failed("params must be a mapping".into());
            };
            if !p.contains_key("seed") {
                p.insert("seed".into(), Value::from(seed));
            }
            let cfg = match TrainConfig::from_map(&p) {
                Ok(c) => c,
                Err(e) => return failed(format!("bad parameters: {e}")),
            };
            let ds = match data::load(&cfg.dataset, &shared.opts.data_dir) {
                Ok(d) => d,
                Err(e) => {
                    return Finished {
                        local_fault: true,
                        ..failed(format!("data: {e}"))
                    }
                }
            };
            let checkpoints = opts
                .get("checkpoints")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let resume = trial.resume.as_ref().and_then(|m| {
                match checkpoints::fetch(&shared.client, handle, &shared.worker_id, trial) {
                    Ok(ck) => {
                        tracing::info!(epoch = m.epoch, batch = m.batch, from_attempt = m.attempt, "resuming from the trial's checkpoint");
                        Some(ck)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot fetch the trial's checkpoint; training from the start");
                        None
                    }
                }
            });
            let mut topts = TrialOptions {
                train_samples: opts
                    .get("train_samples")
                    .and_then(Value::as_u64)
                    .map(|n| n as usize),
                cancel: Some(run.cancel.clone()),
                checkpoints,
                resume,
            };
            let uploader = checkpoints
                .then(|| Uploader::start(shared.client.clone(), handle, &shared.worker_id, trial));
            let mut obs = ReportingObserver {
                shared,
                trial,
                run,
                handle,
                uploader: uploader.as_ref(),
            };
            let res = match train::run_trial(&cfg, &ds, &topts, &mut obs) {
                Err(TrainError::Checkpoint(e)) => {
                    tracing::warn!(error = %e, "the trial's checkpoint does not fit it; training from the start");
                    topts.resume = None;
                    train::run_trial(&cfg, &ds, &topts, &mut obs)
                }
                other => other,
            };
            if let Some(u) = uploader {
                if run.cancel.wants_checkpoint() {
                    match u.finish(handle, HAND_BACK_WAIT) {
                        Some((epoch, batch)) => tracing::info!(epoch, batch, "checkpoint kept; handing the trial back"),
                        None => tracing::warn!("this attempt's last checkpoint was not kept; the next goes on from the trial's last kept one, if any"),
                    }
                } else {
                    u.abandon();
                }
            }
            let res = match res {
                Ok(r) => r,
                Err(e) => return failed(e.to_string()),
            };
            // A cancel that came too late to end the run leaves its result to complete; one that
            // ended it (status cancelled) hands the trial back below.
            let mut metrics: HashMap<String, f64> = HashMap::new();
            if let Some(last) = res.epochs.last() {
                for (k, v) in [
                    ("loss", last.loss),
                    ("accuracy", last.accuracy),
                    ("val_loss", last.val_loss),
                    ("val_accuracy", last.val_accuracy),
                    ("epoch_seconds", last.epoch_seconds),
                    ("samples_per_second", last.samples_per_second),
                ] {
                    metrics.insert(k.into(), v);
                }
            }
            metrics.insert("epochs".into(), res.epochs.len() as f64);
            if let Some(net) = &res.net {
                // The model's size: an objective to trade against accuracy.
                metrics.insert("param_count".into(), net.num_params() as f64);
            }
            let confusion = res.test.as_ref().map(|t| pb::ConfusionMatrix {
                labels: res.classes.clone(),
                counts: t.confusion.iter().flatten().copied().collect(),
            });
            if let Some(t) = &res.test {
                metrics.insert("test_loss".into(), t.loss);
                metrics.insert("test_accuracy".into(), t.accuracy);
            }
            let (outcome, error) = match res.status {
                Status::Finished => (pb::TrialOutcome::Finished, String::new()),
                Status::Stopped => (
                    pb::TrialOutcome::Stopped,
                    "stopped by the coordinator".into(),
                ),
                Status::Diverged => {
                    let (e, b) = res.diverged_at.unwrap_or((0, 0));
                    (
                        pb::TrialOutcome::Diverged,
                        format!("loss became NaN or infinite at epoch {e}, batch {b}"),
                    )
                }
                Status::Cancelled => return released(),
            };
            Finished {
                outcome,
                metrics,
                confusion,
                error,
                local_fault: false,
                output: String::new(),
                model: res.net.as_ref().and_then(|net| model_files(&cfg, &ds, &res, net)),
                files: Vec::new(),
                run_name: String::new(),
            }
        }
        other => failed(format!(
            "unknown trainer {other:?}; this worker runs mlp, synthetic and (with --allow-programs) program"
        )),
    }
}

/// A trained network's files for the coordinator, unless they are too large for one message.
fn model_files(
    cfg: &train::TrainConfig,
    ds: &crate::data::Dataset,
    res: &train::TrialResult,
    net: &crate::nn::Mlp<f32>,
) -> Option<pb::ModelFiles> {
    let (card, weights) = crate::model::encode(net, crate::model::card(cfg, ds, res, net));
    let size = card.len() + weights.len();
    if size > sweep_proto::conn::MAX_MODEL_BYTES {
        tracing::warn!(
            bytes = size,
            limit = sweep_proto::conn::MAX_MODEL_BYTES,
            "the trained model is too large to send; the coordinator will not keep it"
        );
        return None;
    }
    Some(pb::ModelFiles {
        trial: 0,
        card,
        weights,
    })
}

fn released() -> Finished {
    Finished {
        outcome: pb::TrialOutcome::Released,
        metrics: HashMap::new(),
        confusion: None,
        error: "the worker shut down".into(),
        local_fault: false,
        output: String::new(),
        model: None,
        files: Vec::new(),
        run_name: String::new(),
    }
}
