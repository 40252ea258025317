//! What callers hand the engine and get back: typed messages instead of positional arguments.

use serde_json::Value;

/// A registered worker.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    /// Host name it reported.
    pub host: String,
    /// Its cores.
    pub cores: u32,
    /// Trials it runs at once.
    pub slots: u32,
    /// Its version.
    pub version: String,
    /// Last call seen (Unix seconds).
    pub last_seen: f64,
    /// The GPUs it hands to trials.
    pub gpus: Vec<GpuInfo>,
}

/// One GPU (or MIG device) a worker registered (`worker --gpus`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GpuInfo {
    /// What `CUDA_VISIBLE_DEVICES` gets for it.
    pub id: String,
    /// The driver's index.
    pub index: u32,
    /// `GPU-…` or `MIG-…`; empty when unknown.
    pub uuid: String,
    /// Product name; empty when unknown.
    pub name: String,
    /// Total memory in MiB; 0 when unknown.
    pub memory_mb: u64,
}

/// What a worker is told to do after a Report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Keep training.
    Continue,
    /// Stop now and Complete (reason given).
    Stop(String),
    /// The attempt is stale: drop it without completing.
    Abandon(String),
}

/// A leased attempt, as handed to a worker.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Sweep id.
    pub sweep_id: String,
    /// Trial number.
    pub trial: u64,
    /// Attempt number.
    pub attempt: u32,
    /// Fencing token.
    pub lease_id: String,
    /// Parameters.
    pub params: super::Params,
    /// Trainer name and options.
    pub trainer: (String, Value),
    /// The sweep metric's name.
    pub metric: String,
    /// The checkpoint this attempt goes on from.
    pub resume: Option<crate::store::CheckpointMark>,
    /// The worker's GPUs it runs with (their ids).
    pub gpus: Vec<String>,
    /// A trial across several workers: this worker's place in it.
    pub gang: Option<GangPlace>,
}

/// One member's place in a gang (torchrun's environment: RANK, WORLD_SIZE, MASTER_ADDR,
/// MASTER_PORT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GangPlace {
    /// 0 for the member that reports the metrics and hosts the rendezvous.
    pub rank: u32,
    /// Members in all.
    pub size: u32,
    /// Where rank 0 is reached.
    pub master_addr: String,
    /// The port rank 0 keeps for the rendezvous.
    pub master_port: u32,
}

/// Where a worker that asks for work can be reached by a gang's other members: its host and a
/// port it keeps free for a gang's rank 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    /// Host name or address.
    pub addr: String,
    /// The free port.
    pub port: u32,
}

/// What a worker's heartbeat is told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Beat {
    /// Leases to drop (expired, re-leased, or their sweep stopped).
    pub drop: Vec<String>,
    /// Leases whose trials to hand back (their sweep was paused with hand-back).
    pub hand_back: Vec<String>,
}

/// Which attempt a worker speaks for: the attempt of `trial` in `sweep` it holds `lease_id` for.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The worker's id.
    pub worker: &'a str,
    /// Sweep id.
    pub sweep: &'a str,
    /// Trial number.
    pub trial: u64,
    /// Attempt number.
    pub attempt: u32,
    /// Fencing token of the attempt.
    pub lease_id: &'a str,
}

/// One epoch's metrics of a leased attempt.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// Whose.
    pub attempt: Attempt<'a>,
    /// 1-based epoch (step).
    pub epoch: u32,
    /// Metric name and value; non-finite values are dropped.
    pub metrics: Vec<(String, f64)>,
}

/// The end of a leased attempt.
#[derive(Debug, Clone)]
pub struct Complete<'a> {
    /// Whose.
    pub attempt: Attempt<'a>,
    /// How it ended.
    pub outcome: Outcome,
    /// Final metrics (overlaid on the last report's).
    pub metrics: Vec<(String, f64)>,
    /// Class names and row-major counts.
    pub confusion: Option<(Vec<String>, Vec<u64>)>,
    /// Why it failed or stopped (empty: none).
    pub error: String,
    /// The tail of a program's output (empty: none).
    pub output: String,
    /// The built-in trainer's saved model: its card's text and its weights (docs/MODELS.md).
    pub model: Option<(String, Vec<u8>)>,
}

/// How a worker ended an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Trained every epoch.
    Finished,
    /// Stopped on request.
    Stopped,
    /// Diverged.
    Diverged,
    /// Could not run.
    Failed,
    /// Handed back unfinished.
    Released,
    /// Handed back because of the worker's own fault (the error says which).
    WorkerFault,
}
