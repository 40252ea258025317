//! The coordinator's state machine: sweeps, trials, leases and workers.
//!
//! All state lives in memory behind one mutex and is mirrored to the [`Store`]. Every change
//! is queued to the store while the lock is held (so the store sees changes in the order they
//! happened) and the caller awaits the commit before it replies. Reads (leaderboards, sweep
//! info) come from memory. A reaper re-queues trials whose lease expired.
//!
//! A failed commit takes the engine down: every call is refused with the store's cause until
//! the reaper has read the store back and replaced memory with it, so memory that ran ahead
//! of the disk is rolled back before anything else is acknowledged, and the engine carries on
//! by itself once writes succeed again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::{broadcast, Notify};

use crate::config::{Goal, SweepSpec, Trainer};
use crate::search;
use crate::store::{self, Store, StoreError, SweepRow, TrialRow};

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An engine failure, mapped to a gRPC status at the service boundary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No such sweep.
    #[error("no sweep with id {0:?}")]
    UnknownSweep(String),
    /// No such trial.
    #[error("sweep {0} has no trial {1}")]
    UnknownTrial(String, u64),
    /// Bad input from a client.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value cannot be read back.
    #[error("{0}")]
    Corrupt(String),
}

/// Sweep states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepState {
    /// Handing out trials.
    Running,
    /// Not handing out trials; running ones go on.
    Paused,
    /// Stopped by a person; running trials are told to stop.
    Stopped,
    /// Every trial is done.
    Finished,
}

impl SweepState {
    /// Stored name.
    pub fn name(self) -> &'static str {
        match self {
            SweepState::Running => "running",
            SweepState::Paused => "paused",
            SweepState::Stopped => "stopped",
            SweepState::Finished => "finished",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "paused" => SweepState::Paused,
            "stopped" => SweepState::Stopped,
            "finished" => SweepState::Finished,
            _ => SweepState::Running,
        }
    }
    /// Whether the sweep will hand out no more work.
    pub fn is_terminal(self) -> bool {
        matches!(self, SweepState::Stopped | SweepState::Finished)
    }
}

/// Trial states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialState {
    /// Waiting for a worker (re-queued after a lost or released attempt).
    Queued,
    /// Leased to a worker.
    Running,
    /// Trained every epoch.
    Finished,
    /// Stopped early (early termination or the sweep was stopped); metrics are valid.
    Stopped,
    /// Diverged, errored, or ran out of attempts; `error` says why.
    Failed,
}

impl TrialState {
    /// Stored name.
    pub fn name(self) -> &'static str {
        match self {
            TrialState::Queued => "queued",
            TrialState::Running => "running",
            TrialState::Finished => "finished",
            TrialState::Stopped => "stopped",
            TrialState::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "queued" => TrialState::Queued,
            "running" => TrialState::Running,
            "finished" => TrialState::Finished,
            "stopped" => TrialState::Stopped,
            _ => TrialState::Failed,
        }
    }
    /// Whether the trial is done.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TrialState::Finished | TrialState::Stopped | TrialState::Failed
        )
    }
}

/// One trial in memory.
#[derive(Debug, Clone)]
pub struct Trial {
    /// 1-based number within the sweep; never reused.
    pub number: u64,
    /// Parameters.
    pub params: Value,
    /// State.
    pub state: TrialState,
    /// Current attempt, 1-based.
    pub attempt: u32,
    /// The attempt whose Complete was accepted (for idempotent Complete).
    pub completed_attempt: Option<u32>,
    /// Fencing token of the current attempt.
    pub lease_id: Option<String>,
    /// When the current lease expires (Unix seconds).
    pub lease_expires: f64,
    /// Worker of the current or last attempt.
    pub worker: Option<String>,
    /// When the current attempt started.
    pub started_at: Option<f64>,
    /// When the trial ended.
    pub ended_at: Option<f64>,
    /// Seconds of the accepted attempt.
    pub duration: f64,
    /// Per-epoch metrics: step → name → value.
    pub curve: BTreeMap<u32, BTreeMap<String, f64>>,
    /// Final metrics (last epoch's values overlaid with the Complete message's).
    pub metrics: BTreeMap<String, f64>,
    /// Class names and row-major counts.
    pub confusion: Option<(Vec<String>, Vec<u64>)>,
    /// Why it failed, or why it was stopped; for a finished program trial, a note such as
    /// the metric it never logged.
    pub error: Option<String>,
    /// The tail of a program trial's output.
    pub output: Option<String>,
}

impl Trial {
    fn row(&self, sweep: &str) -> TrialRow {
        TrialRow {
            sweep_id: sweep.to_string(),
            trial: self.number,
            params: self.params.to_string(),
            state: self.state.name().into(),
            attempt: self.attempt,
            completed_attempt: self.completed_attempt,
            lease_id: self.lease_id.clone(),
            worker: self.worker.clone(),
            started_at: self.started_at,
            ended_at: self.ended_at,
            duration: self.duration,
            metrics: serde_json::to_string(&self.metrics).unwrap_or_else(|_| "{}".into()),
            confusion: self
                .confusion
                .as_ref()
                .map(|(l, c)| json!({"labels": l, "counts": c}).to_string()),
            error: self.error.clone(),
            output: self.output.clone(),
        }
    }

    /// Best value of `metric` over the epochs, and its step.
    pub fn best(&self, metric: &str, goal: Goal) -> Option<(f64, u32)> {
        let mut best: Option<(f64, u32)> = None;
        for (step, m) in &self.curve {
            if let Some(&v) = m.get(metric) {
                if v.is_finite() && best.is_none_or(|(b, _)| goal.better(v, b)) {
                    best = Some((v, *step));
                }
            }
        }
        if best.is_none() {
            if let Some(&v) = self.metrics.get(metric) {
                if v.is_finite() {
                    best = Some((v, self.curve.keys().last().copied().unwrap_or(0)));
                }
            }
        }
        best
    }

    /// The value the leaderboard ranks by: the final value of the metric (W&B's summary).
    pub fn final_value(&self, metric: &str) -> Option<f64> {
        self.metrics.get(metric).copied().filter(|v| v.is_finite())
    }
}

/// One sweep in memory.
#[derive(Debug)]
pub struct Sweep {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// Validated config.
    pub spec: SweepSpec,
    /// State.
    pub state: SweepState,
    /// Unix seconds.
    pub created_at: f64,
    /// Unix seconds.
    pub updated_at: f64,
    /// Next trial number to create.
    pub next_trial: u64,
    /// Trials by number.
    pub trials: BTreeMap<u64, Trial>,
    /// Re-queued trials, oldest first.
    queue: VecDeque<u64>,
    /// Last time a worker asked for work that it could not take from this sweep (it does not
    /// run the sweep's trainer), Unix seconds.
    pub refused_at: Option<f64>,
    /// Last time a worker that runs this sweep's trainer asked for work, Unix seconds.
    pub polled_at: Option<f64>,
}

impl Sweep {
    fn row(&self) -> SweepRow {
        SweepRow {
            id: self.id.clone(),
            name: self.name.clone(),
            config: self.spec.raw.to_string(),
            state: self.state.name().into(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            next_trial: self.next_trial,
        }
    }

    fn can_create(&self) -> bool {
        self.spec.total().is_none_or(|t| self.next_trial <= t)
    }

    /// Counts of trials by state: (queued, running, finished, failed, stopped).
    pub fn counts(&self) -> (u64, u64, u64, u64, u64) {
        let mut c = (0, 0, 0, 0, 0);
        for t in self.trials.values() {
            match t.state {
                TrialState::Queued => c.0 += 1,
                TrialState::Running => c.1 += 1,
                TrialState::Finished => c.2 += 1,
                TrialState::Failed => c.3 += 1,
                TrialState::Stopped => c.4 += 1,
            }
        }
        c
    }

    /// Ranked trials (finished or stopped with the metric) best first, then the rest by number.
    pub fn ranked(&self) -> Vec<(u32, &Trial)> {
        let m = &self.spec.metric;
        let mut ranked: Vec<(&Trial, f64)> = self
            .trials
            .values()
            .filter(|t| matches!(t.state, TrialState::Finished | TrialState::Stopped))
            .filter_map(|t| t.final_value(&m.name).map(|v| (t, v)))
            .collect();
        ranked.sort_by(|a, b| {
            let ord = a.1.total_cmp(&b.1);
            let ord = if m.goal == Goal::Maximize {
                ord.reverse()
            } else {
                ord
            };
            ord.then(a.0.number.cmp(&b.0.number))
        });
        let mut out: Vec<(u32, &Trial)> = ranked
            .iter()
            .enumerate()
            .map(|(i, (t, _))| (i as u32 + 1, *t))
            .collect();
        let ranked_ids: std::collections::HashSet<u64> =
            ranked.iter().map(|(t, _)| t.number).collect();
        out.extend(
            self.trials
                .values()
                .filter(|t| !ranked_ids.contains(&t.number))
                .map(|t| (0, t)),
        );
        out
    }

    /// The best ranked trial.
    pub fn best(&self) -> Option<&Trial> {
        self.ranked()
            .into_iter()
            .find(|(r, _)| *r == 1)
            .map(|(_, t)| t)
    }

    /// What a person should know: the config's notices, trials that never logged the metric,
    /// and work that no connected worker can take.
    pub fn notices(&self) -> Vec<String> {
        let mut out = self.spec.notices.clone();
        let metric = &self.spec.metric.name;
        if !metric.is_empty() {
            let mut unranked = self.trials.values().filter(|t| {
                matches!(t.state, TrialState::Finished | TrialState::Stopped)
                    && t.final_value(metric).is_none()
            });
            if let Some(first) = unranked.next() {
                let n = 1 + unranked.count();
                let why = first
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("metric {metric:?} was never reported"));
                out.push(format!(
                    "{n} trial{} ended without the metric {metric:?} and {} not ranked (trial {}: {why})",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "is" } else { "are" },
                    first.number
                ));
            }
        }
        let waiting = self.state == SweepState::Running
            && (self.can_create() || !self.queue.is_empty())
            && !self.trials.values().any(|t| t.state == TrialState::Running);
        let t = now();
        // Idle workers poll at least every max_lease_wait (10 s by default).
        let recent = |at: Option<f64>| at.is_some_and(|a| t - a <= 30.0);
        if waiting && recent(self.refused_at) && !recent(self.polled_at) {
            out.push(match self.spec.trainer {
                Trainer::Program(_) => "waiting: no connected worker runs programs; start workers with --allow-programs (see docs/PROGRAMS.md)".to_string(),
                Trainer::Agent => format!("waiting for an agent: wandb.agent(\"{}\", function=…) in Python, or worker --sweep {} --program FILE (see docs/PROGRAMS.md)", self.id, self.id),
                ref t => format!("waiting: no connected worker runs the {} trainer", t.name()),
            });
        }
        out
    }

    fn maybe_finish(&mut self) -> bool {
        if self.state == SweepState::Running
            && !self.can_create()
            && self.queue.is_empty()
            && self.trials.values().all(|t| t.state.is_terminal())
        {
            self.state = SweepState::Finished;
            self.updated_at = now();
            return true;
        }
        false
    }
}

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
    pub params: Value,
    /// Trainer name and options.
    pub trainer: (String, Value),
    /// The sweep metric's name.
    pub metric: String,
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
}

/// A sweep row change to persist: (id, state, next trial, updated at).
type SweepUpdate = (String, String, u64, f64);

/// A queued write whose commit a reply waits for.
type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>>;

/// A change, for watchers.
#[derive(Debug, Clone)]
pub struct Event {
    /// The sweep that changed.
    pub sweep_id: String,
    /// The trial that changed, if one did.
    pub trial: Option<u64>,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How long a lease lasts without a Report or Heartbeat.
    pub lease_ttl: Duration,
    /// Longest a Lease call is held open.
    pub max_lease_wait: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lease_ttl: Duration::from_secs(30),
            max_lease_wait: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    sweeps: BTreeMap<String, Sweep>,
    /// Creation order of sweeps (leases go to the oldest running sweep first).
    order: Vec<String>,
    /// lease id → (sweep, trial).
    leases: HashMap<String, (String, u64)>,
    workers: HashMap<String, WorkerInfo>,
    /// Set when a commit failed: calls are refused with it until memory is read back.
    down: Option<StoreError>,
}

/// The coordinator's state machine. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    store: Store,
    opts: EngineOptions,
    work: Notify,
    events: broadcast::Sender<Event>,
    counters: crate::metrics::EngineCounters,
    /// Wait before the next read-back after a failed write; doubles while writes keep failing.
    recovery: Mutex<(std::time::Instant, Duration)>,
    /// Set once the coordinator is shutting down: long polls, streams and the reaper end.
    closing: tokio::sync::watch::Sender<bool>,
}

/// Most classes a confusion matrix may have (its picture stays about 2,300 pixels square).
pub const MAX_CLASSES: usize = 256;
/// Longest class label, in characters.
pub const MAX_LABEL_CHARS: usize = 64;

/// The first wait before reading the store back after a failed write, and the longest.
const RECOVERY_WAIT: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

fn corrupt(
    path: &str,
    sweep: &str,
    trial: u64,
    column: &str,
    e: impl std::fmt::Display,
) -> EngineError {
    EngineError::Corrupt(format!(
        "store {path}: sweep {sweep} trial {trial}: the stored {column} is not valid JSON ({e}); \
         fix or delete that row (sqlite3 {path} \"SELECT {column} FROM trials WHERE sweep_id = '{sweep}' AND trial = {trial}\")"
    ))
}

/// Memory rebuilt from what the store holds. Running attempts get a fresh lease: their workers
/// may still be training and reconnect; if not, the lease expires and the trial is re-queued.
fn restore(snap: store::Snapshot, path: &str, ttl: f64) -> Result<State, EngineError> {
    let mut st = State::default();
    for s in snap.sweeps {
        let raw: Value = serde_json::from_str(&s.config).map_err(|e| {
            EngineError::Corrupt(format!(
                "store {path}: stored config of sweep {}: {e}",
                s.id
            ))
        })?;
        let spec = SweepSpec::from_value(raw).map_err(|e| {
            EngineError::Corrupt(format!(
                "store {path}: stored config of sweep {}: {e}",
                s.id
            ))
        })?;
        st.order.push(s.id.clone());
        st.sweeps.insert(
            s.id.clone(),
            Sweep {
                id: s.id,
                name: s.name,
                spec,
                state: SweepState::parse(&s.state),
                created_at: s.created_at,
                updated_at: s.updated_at,
                next_trial: s.next_trial,
                trials: BTreeMap::new(),
                queue: VecDeque::new(),
                refused_at: None,
                polled_at: None,
            },
        );
    }
    for t in snap.trials {
        let Some(sw) = st.sweeps.get_mut(&t.sweep_id) else {
            continue;
        };
        let state = TrialState::parse(&t.state);
        let confusion = match t.confusion.as_deref() {
            None => None,
            Some(c) => {
                let v: Value = serde_json::from_str(c)
                    .map_err(|e| corrupt(path, &sw.id, t.trial, "confusion", e))?;
                let labels: Vec<String> = serde_json::from_value(v["labels"].clone())
                    .map_err(|e| corrupt(path, &sw.id, t.trial, "confusion", e))?;
                let counts: Vec<u64> = serde_json::from_value(v["counts"].clone())
                    .map_err(|e| corrupt(path, &sw.id, t.trial, "confusion", e))?;
                Some((labels, counts))
            }
        };
        let params: Value = serde_json::from_str(&t.params)
            .map_err(|e| corrupt(path, &sw.id, t.trial, "params", e))?;
        let metrics: BTreeMap<String, f64> = serde_json::from_str(&t.metrics)
            .map_err(|e| corrupt(path, &sw.id, t.trial, "metrics", e))?;
        let trial = Trial {
            number: t.trial,
            params,
            state,
            attempt: t.attempt,
            completed_attempt: t.completed_attempt,
            lease_id: t.lease_id.clone(),
            lease_expires: now() + ttl,
            worker: t.worker,
            started_at: t.started_at,
            ended_at: t.ended_at,
            duration: t.duration,
            curve: BTreeMap::new(),
            metrics,
            confusion,
            error: t.error,
            output: t.output,
        };
        if state == TrialState::Queued {
            sw.queue.push_back(t.trial);
        }
        if state == TrialState::Running {
            if let Some(l) = &t.lease_id {
                st.leases.insert(l.clone(), (sw.id.clone(), t.trial));
            }
        }
        sw.trials.insert(t.trial, trial);
    }
    for (sweep, trial, step, name, value) in snap.points {
        if let Some(t) = st
            .sweeps
            .get_mut(&sweep)
            .and_then(|s| s.trials.get_mut(&trial))
        {
            t.curve.entry(step).or_default().insert(name, value);
        }
    }
    // A trial's metrics are its last reported values overlaid with its Complete's (only the
    // latter are stored in its row): rebuild the former from its curve.
    for sw in st.sweeps.values_mut() {
        for t in sw.trials.values_mut() {
            let mut m: BTreeMap<String, f64> = BTreeMap::new();
            for point in t.curve.values() {
                m.extend(point.iter().map(|(k, v)| (k.clone(), *v)));
            }
            m.extend(std::mem::take(&mut t.metrics));
            t.metrics = m;
        }
    }
    for w in snap.workers {
        st.workers.insert(
            w.id,
            WorkerInfo {
                host: w.host,
                cores: w.cores,
                slots: w.slots,
                version: w.version,
                last_seen: 0.0,
            },
        );
    }
    Ok(st)
}

/// Bytes of a program's output kept per trial.
pub const MAX_OUTPUT_BYTES: usize = 16 * 1024;

/// The last `max` bytes of `s`, cut at a character boundary.
fn truncate_tail(s: &str, max: usize) -> String {
    let mut from = s.len().saturating_sub(max);
    while !s.is_char_boundary(from) {
        from += 1;
    }
    s[from..].to_string()
}

/// Whether a worker that lists `trainers` runs `trainer` (an empty list: mlp and synthetic).
fn runs(trainers: &[String], trainer: &str) -> bool {
    if trainers.is_empty() {
        return matches!(trainer, "mlp" | "synthetic");
    }
    trainers.iter().any(|t| t == trainer)
}

fn random_id(bytes: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

impl Engine {
    /// Opens the store at `path` and restores every sweep from it.
    pub fn open(path: &std::path::Path, opts: EngineOptions) -> Result<Engine, EngineError> {
        let (store, snap) = Store::open(path)?;
        let st = restore(snap, store.path(), opts.lease_ttl.as_secs_f64())?;
        let (events, _) = broadcast::channel(1024);
        Ok(Engine {
            inner: Arc::new(Inner {
                state: Mutex::new(st),
                store,
                opts,
                work: Notify::new(),
                events,
                counters: crate::metrics::EngineCounters::default(),
                recovery: Mutex::new((std::time::Instant::now(), RECOVERY_WAIT.0)),
                closing: tokio::sync::watch::channel(false).0,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses a call while the engine is down (a commit failed; memory is not read back yet).
    fn up(st: &State) -> Result<(), EngineError> {
        match &st.down {
            Some(e) => Err(EngineError::Store(e.clone())),
            None => Ok(()),
        }
    }

    /// Awaits a queued write. A failure takes the engine down until memory is read back.
    async fn commit<R>(
        &self,
        fut: impl std::future::Future<Output = Result<R, StoreError>>,
    ) -> Result<R, EngineError> {
        fut.await.map_err(|e| {
            if !matches!(e, StoreError::Closed) {
                let mut st = self.lock();
                if st.down.is_none() {
                    tracing::warn!(error = %e, "the engine refuses calls until it has read the store back");
                    st.down = Some(e.clone());
                }
            }
            EngineError::Store(e)
        })
    }

    /// Whether the engine refuses calls now, and why.
    pub fn down(&self) -> Option<StoreError> {
        self.lock().down.clone()
    }

    /// Writes fail as on a full disk once the store grows by more than `extra` pages (`None`
    /// lifts it); see [`Store::limit_growth`]. For tests.
    #[doc(hidden)]
    pub async fn limit_store_growth(&self, extra: Option<u32>) {
        self.inner.store.limit_growth(extra).await;
    }

    /// Whether the store accepts writes; follows every change (for health and metrics).
    pub fn store_health(&self) -> tokio::sync::watch::Receiver<store::Health> {
        self.inner.store.health()
    }

    /// After a failed commit: reads the store back, replaces memory with it and serves again.
    /// Returns whether it did; waits between tries (doubling while writes keep failing).
    pub async fn recover(&self) -> Result<bool, EngineError> {
        if self.lock().down.is_none() {
            return Ok(false);
        }
        {
            let mut r = self
                .inner
                .recovery
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let (last, wait) = *r;
            if last.elapsed() < wait {
                return Ok(false);
            }
            // Writes that kept failing for a while back off; a long good spell resets the wait.
            let next = if last.elapsed() > RECOVERY_WAIT.1 * 2 {
                RECOVERY_WAIT.0
            } else {
                (wait * 2).min(RECOVERY_WAIT.1)
            };
            *r = (std::time::Instant::now(), next);
        }
        let snap = match self.inner.store.reload().await {
            Ok(s) => s,
            Err(e) => {
                self.lock().down = Some(e.clone());
                return Err(e.into());
            }
        };
        let fresh = restore(
            snap,
            self.inner.store.path(),
            self.inner.opts.lease_ttl.as_secs_f64(),
        )?;
        let ids = {
            let mut st = self.lock();
            let seen: Vec<(String, f64)> = st
                .workers
                .iter()
                .map(|(k, w)| (k.clone(), w.last_seen))
                .collect();
            *st = fresh;
            for (k, t) in seen {
                if let Some(w) = st.workers.get_mut(&k) {
                    w.last_seen = t;
                }
            }
            st.order.clone()
        };
        tracing::info!("memory read back from the store: serving again");
        self.inner.work.notify_waiters();
        for id in ids {
            self.emit(&id, None);
        }
        Ok(true)
    }

    /// Starts the shutdown: waiting Lease calls return empty, Watch streams end, the reaper
    /// stops. Calls already in progress complete as usual.
    pub fn begin_shutdown(&self) {
        self.inner.closing.send_replace(true);
        self.inner.work.notify_waiters();
    }

    /// Resolves once [`Engine::begin_shutdown`] has been called.
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.closing.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    fn is_closing(&self) -> bool {
        *self.inner.closing.borrow()
    }

    /// Leaves the store file self-contained (the write-ahead log copied in and emptied).
    pub async fn checkpoint(&self) -> Result<(), EngineError> {
        Ok(self.inner.store.checkpoint().await?)
    }

    /// Engine settings.
    pub fn options(&self) -> &EngineOptions {
        &self.inner.opts
    }

    /// Subscribes to change events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    fn emit(&self, sweep_id: &str, trial: Option<u64>) {
        let _ = self.inner.events.send(Event {
            sweep_id: sweep_id.to_string(),
            trial,
        });
    }

    /// Validates and stores a new sweep; returns its id.
    pub async fn create_sweep(
        &self,
        spec: SweepSpec,
        name: Option<String>,
    ) -> Result<String, EngineError> {
        spec.check_trainer()
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let id = random_id(4);
        let t = now();
        let sweep = Sweep {
            id: id.clone(),
            name: name.or_else(|| spec.name.clone()),
            spec,
            state: SweepState::Running,
            created_at: t,
            updated_at: t,
            next_trial: 1,
            trials: BTreeMap::new(),
            queue: VecDeque::new(),
            refused_at: None,
            polled_at: None,
        };
        let row = sweep.row();
        let fut = {
            let mut st = self.lock();
            Self::up(&st)?;
            st.order.push(id.clone());
            st.sweeps.insert(id.clone(), sweep);
            self.inner
                .store
                .submit(move |tx| store::insert_sweep(tx, &row))
        };
        self.commit(fut).await?;
        self.inner.work.notify_waiters();
        self.emit(&id, None);
        Ok(id)
    }

    /// Registers (or re-registers) a worker.
    pub async fn register(
        &self,
        id: Option<String>,
        host: String,
        cores: u32,
        slots: u32,
        version: String,
    ) -> Result<String, EngineError> {
        let id = id
            .filter(|s| !s.is_empty() && s.len() <= 64)
            .unwrap_or_else(|| format!("w-{}", random_id(4)));
        let t = now();
        let fut = {
            let mut st = self.lock();
            Self::up(&st)?;
            st.workers.insert(
                id.clone(),
                WorkerInfo {
                    host: host.clone(),
                    cores,
                    slots,
                    version: version.clone(),
                    last_seen: t,
                },
            );
            let wid = id.clone();
            self.inner
                .store
                .submit(move |tx| store::upsert_worker(tx, &wid, &host, cores, slots, &version, t))
        };
        self.commit(fut).await?;
        Ok(id)
    }

    /// Notes a call from a registered worker (made-up ids are not kept: only a registration
    /// adds a worker, and registrations are stored, so a restart still knows them).
    fn touch(st: &mut State, worker: &str) {
        if let Some(w) = st.workers.get_mut(worker) {
            w.last_seen = now();
        }
    }

    /// Leases granted and expired since this process started (for `/metrics`).
    pub fn counters(&self) -> &crate::metrics::EngineCounters {
        &self.inner.counters
    }

    /// Workers seen within two lease lifetimes.
    pub fn live_workers(&self) -> u32 {
        let horizon = now() - 2.0 * self.inner.opts.lease_ttl.as_secs_f64();
        self.lock()
            .workers
            .values()
            .filter(|w| w.last_seen >= horizon)
            .count() as u32
    }

    fn try_lease(
        &self,
        st: &mut State,
        worker: &str,
        trainers: &[String],
        only: Option<&str>,
    ) -> Option<(Lease, TrialRow, Option<SweepUpdate>)> {
        let ttl = self.inner.opts.lease_ttl.as_secs_f64();
        let order = st.order.clone();
        let t_poll = now();
        for sid in order {
            let Some(sw) = st.sweeps.get_mut(&sid) else {
                continue;
            };
            if sw.state != SweepState::Running || only.is_some_and(|o| o != sid) {
                continue;
            }
            if !runs(trainers, sw.spec.trainer.name()) {
                sw.refused_at = Some(t_poll);
                continue;
            }
            sw.polled_at = Some(t_poll);
            let number = if let Some(n) = sw.queue.pop_front() {
                n
            } else if sw.can_create() {
                let n = sw.next_trial;
                let suggestion = if sw.spec.method == crate::config::Method::Bayes {
                    let losses = Self::model_losses(sw);
                    let hist: Vec<search::tpe::Observation<'_>> = sw
                        .trials
                        .values()
                        .zip(&losses)
                        .map(|(t, l)| search::tpe::Observation {
                            params: &t.params,
                            loss: *l,
                        })
                        .collect();
                    search::suggest_with_history(&sw.spec, n, &hist)
                } else {
                    search::suggest(&sw.spec, n)
                };
                let Some(params) = suggestion else {
                    continue;
                };
                sw.next_trial += 1;
                sw.trials.insert(
                    n,
                    Trial {
                        number: n,
                        params,
                        state: TrialState::Queued,
                        attempt: 0,
                        completed_attempt: None,
                        lease_id: None,
                        lease_expires: 0.0,
                        worker: None,
                        started_at: None,
                        ended_at: None,
                        duration: 0.0,
                        curve: BTreeMap::new(),
                        metrics: BTreeMap::new(),
                        confusion: None,
                        error: None,
                        output: None,
                    },
                );
                n
            } else {
                continue;
            };
            let lease_id = random_id(8);
            let t = now();
            let seed = search::trial_seed(sw.spec.seed, number);
            let trainer = match &sw.spec.trainer {
                Trainer::Program(p) => ("program".to_string(), p.options()),
                Trainer::Agent => ("agent".to_string(), json!({"seed": seed})),
                Trainer::Mlp { train_samples } => (
                    "mlp".to_string(),
                    json!({"seed": seed, "train_samples": train_samples}),
                ),
                Trainer::Synthetic {
                    function,
                    epochs,
                    epoch_ms,
                } => (
                    "synthetic".to_string(),
                    json!({"seed": seed, "function": function, "epochs": epochs, "epoch_ms": epoch_ms}),
                ),
            };
            let metric = sw.spec.metric.name.clone();
            let sweep_update = (sw.id.clone(), sw.state.name().to_string(), sw.next_trial, t);
            let trial = sw.trials.get_mut(&number)?;
            trial.state = TrialState::Running;
            trial.attempt += 1;
            trial.lease_id = Some(lease_id.clone());
            trial.lease_expires = t + ttl;
            trial.worker = Some(worker.to_string());
            trial.started_at = Some(t);
            // A reason from an earlier attempt (an expired lease) does not describe this one.
            trial.error = None;
            let row = trial.row(&sid);
            let lease = Lease {
                sweep_id: sid.clone(),
                trial: number,
                attempt: trial.attempt,
                lease_id: lease_id.clone(),
                params: trial.params.clone(),
                trainer,
                metric,
            };
            st.leases.insert(lease_id, (sid, number));
            return Some((lease, row, Some(sweep_update)));
        }
        None
    }

    /// Long poll for work: a lease at once if any sweep has work, else waits up to `wait`.
    /// `trainers`: what the worker runs (empty: mlp and synthetic, as workers before programs);
    /// `only`: take work from this sweep alone (an agent of one sweep).
    pub async fn lease(
        &self,
        worker: &str,
        trainers: &[String],
        only: Option<&str>,
        wait: Duration,
    ) -> Result<Option<Lease>, EngineError> {
        let deadline = tokio::time::Instant::now() + wait.min(self.inner.opts.max_lease_wait);
        loop {
            let notified = self.inner.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closing() {
                return Ok(None);
            }
            let found = {
                let mut st = self.lock();
                Self::up(&st)?;
                Self::touch(&mut st, worker);
                if let Some(o) = only {
                    if st.sweeps.get(o).is_none_or(|s| s.state.is_terminal()) {
                        return Ok(None);
                    }
                }
                self.try_lease(&mut st, worker, trainers, only)
                    .map(|(lease, row, sweep)| {
                        let fut = self.inner.store.submit(move |tx| {
                            if let Some((id, state, next, t)) = &sweep {
                                store::update_sweep(tx, id, state, *next, *t)?;
                            }
                            store::upsert_trial(tx, &row)
                        });
                        (lease, fut)
                    })
            };
            if let Some((lease, fut)) = found {
                self.commit(fut).await?;
                self.inner.counters.leases_granted.inc();
                self.emit(&lease.sweep_id, Some(lease.trial));
                return Ok(Some(lease));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    fn check_lease<'a>(
        st: &'a mut State,
        sweep: &str,
        trial: u64,
        attempt: u32,
        lease_id: &str,
    ) -> Result<&'a mut Sweep, String> {
        let sw = st
            .sweeps
            .get_mut(sweep)
            .ok_or_else(|| format!("no sweep {sweep:?}"))?;
        let t = sw
            .trials
            .get(&trial)
            .ok_or_else(|| format!("sweep {sweep} has no trial {trial}"))?;
        if t.state != TrialState::Running
            || t.attempt != attempt
            || t.lease_id.as_deref() != Some(lease_id)
        {
            return Err(format!(
                "stale attempt: trial {trial} is {} at attempt {}, this is attempt {attempt}",
                t.state.name(),
                t.attempt
            ));
        }
        Ok(sw)
    }

    /// Records one epoch's metrics of a leased attempt and says whether to go on.
    #[allow(clippy::too_many_arguments)]
    pub async fn report(
        &self,
        worker: &str,
        sweep: &str,
        trial: u64,
        attempt: u32,
        lease_id: &str,
        epoch: u32,
        metrics: Vec<(String, f64)>,
    ) -> Result<Action, EngineError> {
        if epoch == 0 || epoch > 1_000_000 {
            return Err(EngineError::Invalid(format!(
                "epoch {epoch} is out of range (1-based, at most 1000000)"
            )));
        }
        if metrics.iter().any(|(n, _)| n.is_empty() || n.len() > 128) {
            return Err(EngineError::Invalid(
                "metric names must be 1 to 128 characters".into(),
            ));
        }
        let ttl = self.inner.opts.lease_ttl.as_secs_f64();
        let (action, fut): (Action, Pending) = 'locked: {
            let mut st = self.lock();
            Self::up(&st)?;
            Self::touch(&mut st, worker);
            let sw = match Self::check_lease(&mut st, sweep, trial, attempt, lease_id) {
                Ok(sw) => sw,
                // Said only once what it rests on is committed.
                Err(reason) => {
                    break 'locked (
                        Action::Abandon(reason),
                        Box::pin(self.inner.store.barrier()),
                    )
                }
            };
            let stopped = sw.state.is_terminal();
            let Some(t) = sw.trials.get_mut(&trial) else {
                break 'locked (
                    Action::Abandon("unknown trial".into()),
                    Box::pin(self.inner.store.barrier()),
                );
            };
            t.lease_expires = now() + ttl;
            let finite: Vec<(String, f64)> =
                metrics.into_iter().filter(|(_, v)| v.is_finite()).collect();
            let point = t.curve.entry(epoch).or_default();
            for (n, v) in &finite {
                point.insert(n.clone(), *v);
                t.metrics.insert(n.clone(), *v);
            }
            let mut action = if stopped {
                Action::Stop(if sw.state == SweepState::Finished {
                    "the sweep reached its metric target".into()
                } else {
                    "the sweep was stopped".into()
                })
            } else {
                Action::Continue
            };
            if action == Action::Continue {
                if let Some(reason) = Self::early_stop(sw, trial) {
                    tracing::info!(sweep = %sw.id, trial, epoch, %reason, "early termination");
                    if let Some(t) = sw.trials.get_mut(&trial) {
                        t.error = Some(reason.clone());
                    }
                    action = Action::Stop(reason);
                }
            }
            let s = sweep.to_string();
            let fut = self
                .inner
                .store
                .submit(move |tx| store::insert_points(tx, &s, trial, epoch, &finite));
            (action, Box::pin(fut))
        };
        self.commit(fut).await?;
        if !matches!(action, Action::Abandon(_)) {
            self.emit(sweep, Some(trial));
        }
        Ok(action)
    }

    /// What the Bayesian model sees of each trial, in trial order: the goal-signed final value
    /// (finished or stopped), an imputed one (failed), or `None` (running or queued: pending).
    fn model_losses(sw: &Sweep) -> Vec<Option<f64>> {
        let m = &sw.spec.metric;
        let sign = if m.goal == Goal::Maximize { -1.0 } else { 1.0 };
        let observed: Vec<f64> = sw
            .trials
            .values()
            .filter(|t| matches!(t.state, TrialState::Finished | TrialState::Stopped))
            .filter_map(|t| t.final_value(&m.name))
            .map(|v| sign * v)
            .collect();
        let worst = observed.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let best = observed.iter().copied().fold(f64::INFINITY, f64::min);
        sw.trials
            .values()
            .map(|t| match t.state {
                TrialState::Finished | TrialState::Stopped => t
                    .final_value(&m.name)
                    .map(|v| sign * v)
                    .or(worst.is_finite().then_some(worst)),
                TrialState::Failed => match m.impute {
                    crate::config::Impute::Worst => worst.is_finite().then_some(worst),
                    crate::config::Impute::Best => best.is_finite().then_some(best),
                    crate::config::Impute::Latest => t
                        .final_value(&m.name)
                        .map(|v| sign * v)
                        .or(worst.is_finite().then_some(worst)),
                },
                TrialState::Running | TrialState::Queued => None,
            })
            .collect()
    }

    /// The sweep's early-termination rule applied to `trial` after its latest report.
    fn early_stop(sw: &Sweep, trial: u64) -> Option<String> {
        let rule = sw.spec.stopping.as_ref()?;
        let metric = &sw.spec.metric.name;
        let hist = |t: &Trial| -> Vec<f64> {
            t.curve
                .values()
                .filter_map(|m| m.get(metric))
                .copied()
                .filter(|v| v.is_finite())
                .collect()
        };
        let numbers: Vec<u64> = sw.trials.keys().copied().collect();
        let histories: Vec<Vec<f64>> = sw.trials.values().map(hist).collect();
        let views: Vec<crate::stopping::TrialView<'_>> = sw
            .trials
            .values()
            .zip(&histories)
            .map(|(t, h)| crate::stopping::TrialView {
                running: t.state == TrialState::Running,
                finished: t.state == TrialState::Finished,
                history: h,
            })
            .collect();
        let i = numbers.iter().position(|&n| n == trial)?;
        rule.should_stop(sw.spec.metric.goal, &views[i], &views)
    }

    /// Ends a leased attempt. Returns whether the result was accepted (false: stale attempt).
    #[allow(clippy::too_many_arguments)]
    pub async fn complete(
        &self,
        worker: &str,
        sweep: &str,
        trial: u64,
        attempt: u32,
        lease_id: &str,
        outcome: Outcome,
        metrics: Vec<(String, f64)>,
        confusion: Option<(Vec<String>, Vec<u64>)>,
        error: String,
        output: String,
    ) -> Result<(bool, String), EngineError> {
        if let Some((l, c)) = &confusion {
            if l.is_empty() || l.len() > MAX_CLASSES {
                return Err(EngineError::Invalid(format!(
                    "confusion matrix: expected 1 to {MAX_CLASSES} class labels, got {}",
                    l.len()
                )));
            }
            if let Some(bad) = l
                .iter()
                .find(|s| s.is_empty() || s.chars().count() > MAX_LABEL_CHARS)
            {
                return Err(EngineError::Invalid(format!(
                    "confusion matrix: a class label must be 1 to {MAX_LABEL_CHARS} characters, got {} ({:?}…)",
                    bad.chars().count(),
                    bad.chars().take(20).collect::<String>()
                )));
            }
            if c.len() != l.len() * l.len() {
                return Err(EngineError::Invalid(format!(
                    "confusion matrix: {} labels need {} counts, got {}",
                    l.len(),
                    l.len() * l.len(),
                    c.len()
                )));
            }
        }
        // What is said without a change is said only once what it rests on is committed.
        let settled = |answer: (bool, String)| {
            (
                answer,
                None,
                Box::pin(self.inner.store.barrier()) as Pending,
            )
        };
        let (answer, wake, fut) = 'locked: {
            let mut st = self.lock();
            Self::up(&st)?;
            Self::touch(&mut st, worker);
            // Idempotence: the same attempt completing again is accepted and changes nothing.
            if let Some(t) = st.sweeps.get(sweep).and_then(|s| s.trials.get(&trial)) {
                if t.completed_attempt == Some(attempt) && t.state.is_terminal() {
                    break 'locked settled((true, "already completed".into()));
                }
            }
            let sw = match Self::check_lease(&mut st, sweep, trial, attempt, lease_id) {
                Ok(sw) => sw,
                Err(reason) => break 'locked settled((false, reason)),
            };
            let t_now = now();
            let max_attempts = sw.spec.max_attempts;
            let Some(t) = sw.trials.get_mut(&trial) else {
                break 'locked settled((false, "unknown trial".into()));
            };
            let old_lease = t.lease_id.take();
            match outcome {
                Outcome::Released => {
                    t.state = TrialState::Queued;
                    t.worker = None;
                    t.error = Some(format!("attempt {attempt} handed back by its worker"));
                    if t.attempt >= max_attempts.saturating_mul(4) {
                        t.state = TrialState::Failed;
                        t.error = Some(format!("handed back {} times", t.attempt));
                        t.ended_at = Some(t_now);
                    }
                }
                _ => {
                    for (n, v) in metrics.into_iter().filter(|(_, v)| v.is_finite()) {
                        t.metrics.insert(n, v);
                    }
                    t.confusion = confusion;
                    t.output =
                        (!output.is_empty()).then(|| truncate_tail(&output, MAX_OUTPUT_BYTES));
                    t.completed_attempt = Some(attempt);
                    t.ended_at = Some(t_now);
                    t.duration = t.started_at.map_or(0.0, |s| (t_now - s).max(0.0));
                    t.state = match outcome {
                        Outcome::Finished => TrialState::Finished,
                        Outcome::Stopped => TrialState::Stopped,
                        _ => TrialState::Failed,
                    };
                    t.error = match outcome {
                        Outcome::Diverged => Some(if error.is_empty() {
                            "diverged".into()
                        } else {
                            format!("diverged: {error}")
                        }),
                        Outcome::Failed => Some(if error.is_empty() {
                            "failed".into()
                        } else {
                            error
                        }),
                        // Keep the coordinator's own reason (rule, band, threshold, value).
                        Outcome::Stopped => t.error.clone().or(Some(if error.is_empty() {
                            "stopped".into()
                        } else {
                            error
                        })),
                        // A finished trial's note (a program that never logged the metric).
                        _ => (!error.is_empty()).then_some(error),
                    };
                }
            }
            let requeue = t.state == TrialState::Queued;
            let row = t.row(sweep);
            let reached = matches!(t.state, TrialState::Finished | TrialState::Stopped)
                && match (sw.spec.metric.target, t.final_value(&sw.spec.metric.name)) {
                    (Some(target), Some(v)) => v == target || sw.spec.metric.goal.better(v, target),
                    _ => false,
                };
            if requeue {
                sw.queue.push_back(trial);
            }
            sw.updated_at = t_now;
            let mut extra_rows = Vec::new();
            if reached && sw.state == SweepState::Running {
                tracing::info!(sweep = %sw.id, trial, "metric target reached: the sweep is finished");
                sw.state = SweepState::Finished;
                for n in sw.queue.drain(..).collect::<Vec<_>>() {
                    if let Some(q) = sw.trials.get_mut(&n) {
                        q.state = TrialState::Stopped;
                        q.error = Some(
                            "the sweep reached its metric target before this trial ran".into(),
                        );
                        extra_rows.push(q.row(sweep));
                    }
                }
            }
            sw.maybe_finish();
            // Lease waiters look again: a trial to take, or (agents of one sweep) its end.
            let wake = requeue || sw.state.is_terminal();
            let srow = (
                sw.id.clone(),
                sw.state.name().to_string(),
                sw.next_trial,
                sw.updated_at,
            );
            if let Some(l) = old_lease {
                st.leases.remove(&l);
            }
            let fut = self.inner.store.submit(move |tx| {
                store::upsert_trial(tx, &row)?;
                for r in &extra_rows {
                    store::upsert_trial(tx, r)?;
                }
                store::update_sweep(tx, &srow.0, &srow.1, srow.2, srow.3)
            });
            ((true, String::new()), Some(wake), Box::pin(fut) as Pending)
        };
        self.commit(fut).await?;
        let Some(wake) = wake else {
            return Ok(answer);
        };
        if wake {
            self.inner.work.notify_waiters();
        }
        self.emit(sweep, Some(trial));
        Ok(answer)
    }

    /// Extends the given leases; returns those the worker must drop.
    pub fn heartbeat(&self, worker: &str, lease_ids: &[String]) -> Vec<String> {
        let ttl = self.inner.opts.lease_ttl.as_secs_f64();
        let mut st = self.lock();
        Self::touch(&mut st, worker);
        let mut drop = Vec::new();
        for l in lease_ids {
            let Some((s, n)) = st.leases.get(l).cloned() else {
                drop.push(l.clone());
                continue;
            };
            let Some(sw) = st.sweeps.get_mut(&s) else {
                drop.push(l.clone());
                continue;
            };
            match sw.trials.get_mut(&n) {
                Some(t) if t.state == TrialState::Running && t.lease_id.as_deref() == Some(l) => {
                    t.lease_expires = now() + ttl;
                }
                _ => drop.push(l.clone()),
            }
        }
        drop
    }

    /// Re-queues (or fails, after `max_attempts`) every trial whose lease has expired.
    pub async fn reap(&self) -> Result<usize, EngineError> {
        let t_now = now();
        let (fut, changed) = {
            let mut st = self.lock();
            if st.down.is_some() {
                return Ok(0);
            }
            let mut rows = Vec::new();
            let mut sweeps = Vec::new();
            let mut changed = Vec::new();
            let mut dropped = Vec::new();
            for sw in st.sweeps.values_mut() {
                let mut any = false;
                let max = sw.spec.max_attempts;
                let mut requeued = Vec::new();
                for t in sw.trials.values_mut() {
                    if t.state != TrialState::Running || t.lease_expires > t_now {
                        continue;
                    }
                    if let Some(l) = t.lease_id.take() {
                        dropped.push(l);
                    }
                    let w = t.worker.clone().unwrap_or_default();
                    if t.attempt >= max {
                        t.state = TrialState::Failed;
                        t.ended_at = Some(t_now);
                        t.error = Some(format!(
                            "lease expired on attempt {} of {max} (last worker {w})",
                            t.attempt
                        ));
                    } else {
                        t.state = TrialState::Queued;
                        t.error = Some(format!(
                            "lease of attempt {} expired (worker {w})",
                            t.attempt
                        ));
                        requeued.push(t.number);
                    }
                    tracing::warn!(sweep = %sw.id, trial = t.number, attempt = t.attempt, worker = %w, state = t.state.name(), "lease expired");
                    self.inner.counters.leases_expired.inc();
                    rows.push(t.row(&sw.id));
                    changed.push((sw.id.clone(), t.number));
                    any = true;
                }
                sw.queue.extend(requeued);
                if any {
                    sw.maybe_finish();
                    sweeps.push((
                        sw.id.clone(),
                        sw.state.name().to_string(),
                        sw.next_trial,
                        t_now,
                    ));
                }
            }
            for l in dropped {
                st.leases.remove(&l);
            }
            if changed.is_empty() {
                return Ok(0);
            }
            let fut = self.inner.store.submit(move |tx| {
                for row in &rows {
                    store::upsert_trial(tx, row)?;
                }
                for r in &sweeps {
                    store::update_sweep(tx, &r.0, &r.1, r.2, r.3)?;
                }
                Ok(())
            });
            (fut, changed)
        };
        self.commit(fut).await?;
        if !changed.is_empty() {
            self.inner.work.notify_waiters();
        }
        for (s, n) in &changed {
            self.emit(s, Some(*n));
        }
        Ok(changed.len())
    }

    /// Pauses, resumes or stops a sweep.
    pub async fn control(&self, sweep: &str, action: SweepState) -> Result<(), EngineError> {
        let fut = {
            let mut st = self.lock();
            Self::up(&st)?;
            let sw = st
                .sweeps
                .get_mut(sweep)
                .ok_or_else(|| EngineError::UnknownSweep(sweep.into()))?;
            if sw.state.is_terminal() {
                if sw.state == action {
                    return Ok(());
                }
                return Err(EngineError::Invalid(format!(
                    "sweep {sweep} is {}; it cannot change any more",
                    sw.state.name()
                )));
            }
            sw.state = action;
            sw.updated_at = now();
            if action == SweepState::Stopped {
                // Queued trials will not run; running ones are told to stop on their next Report.
                let queued: Vec<u64> = sw.queue.drain(..).collect();
                for n in queued {
                    if let Some(t) = sw.trials.get_mut(&n) {
                        t.state = TrialState::Stopped;
                        t.error = Some(if t.attempt == 0 {
                            "the sweep was stopped before this trial ran".into()
                        } else {
                            format!(
                                "the sweep was stopped while this trial waited to be run again (attempt {} was handed back)",
                                t.attempt
                            )
                        });
                    }
                }
            }
            if action == SweepState::Running {
                sw.maybe_finish();
            }
            let rows: Vec<TrialRow> = sw
                .trials
                .values()
                .filter(|t| t.state == TrialState::Stopped && t.completed_attempt.is_none())
                .map(|t| t.row(&sw.id))
                .collect();
            let r = (
                sw.id.clone(),
                sw.state.name().to_string(),
                sw.next_trial,
                sw.updated_at,
            );
            self.inner.store.submit(move |tx| {
                for row in &rows {
                    store::upsert_trial(tx, row)?;
                }
                store::update_sweep(tx, &r.0, &r.1, r.2, r.3)
            })
        };
        self.commit(fut).await?;
        self.inner.work.notify_waiters();
        self.emit(sweep, None);
        Ok(())
    }

    /// Runs `f` on a sweep under the lock.
    pub fn with_sweep<R>(&self, id: &str, f: impl FnOnce(&Sweep) -> R) -> Result<R, EngineError> {
        let st = self.lock();
        st.sweeps
            .get(id)
            .map(f)
            .ok_or_else(|| EngineError::UnknownSweep(id.into()))
    }

    /// Ids of every sweep, oldest first.
    pub fn sweep_ids(&self) -> Vec<String> {
        self.lock().order.clone()
    }

    /// Starts the lease reaper; it runs until the shutdown begins or the engine is dropped
    /// everywhere else.
    pub fn spawn_reaper(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let period = (self.inner.opts.lease_ttl / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let closing = self.closing();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tokio::pin!(closing);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = &mut closing => return,
                }
                let Some(inner) = weak.upgrade() else { return };
                let e = Engine { inner };
                if let Err(err) = e.recover().await {
                    tracing::error!(error = %err, "reading the store back");
                }
                if let Err(err) = e.reap().await {
                    tracing::error!(error = %err, "lease reaper");
                }
            }
        })
    }
}
