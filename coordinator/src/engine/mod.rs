//! The coordinator's state machine: sweeps, trials, leases and workers.
//!
//! All state lives in memory and is mirrored to the [`Store`]. Each sweep is under a lock of
//! its own, so sweeps do not wait for each other: a bayes suggestion is computed under no lock
//! at all, a stopping decision under its sweep's alone. Every change is queued to the store
//! while its sweep's lock is held (so the store sees a sweep's changes in the order they
//! happened) and the caller awaits the commit before it replies. Reads (leaderboards, sweep
//! info) come from memory, except what an ended trial no longer holds there once trimmed (its
//! curve, output and confusion matrix: [`Engine::trial_files`]). A reaper re-queues trials
//! whose lease expired.
//!
//! A failed commit takes the engine down: every call is refused with the store's cause until
//! the reaper has read the store back and replaced memory with it, so memory that ran ahead
//! of the disk is rolled back before anything else is acknowledged, and the engine carries on
//! by itself once writes succeed again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::{broadcast, Notify};

use crate::config::{Goal, SweepSpec, Trainer};
use crate::search;
use crate::store::{self, Store, StoreError, TrialRow};

mod load;
mod suggest;
mod sweep;
mod trial;

use suggest::{Ask, InFlight, Suggesters};

pub use sweep::{Counts, Sweep, SweepState};
pub use trial::{Curve, Metrics, Params, Point, Trial, TrialState};

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

/// Changes kept for watchers that have not looked yet; one that falls further behind is told
/// it lagged (and looks at the whole sweep again).
const EVENT_BACKLOG: usize = 16_384;

/// A change, for watchers.
#[derive(Debug, Clone)]
pub struct Event {
    /// The sweep that changed.
    pub sweep_id: Arc<str>,
    /// The trial that changed, if one did.
    pub trial: Option<u64>,
    /// The step it reported, when the change was a report.
    pub step: Option<u32>,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How long a lease lasts without a Report or Heartbeat.
    pub lease_ttl: Duration,
    /// Longest a Lease call is held open.
    pub max_lease_wait: Duration,
    /// Called where a bayes suggestion is computed, before it is (tests hold a suggestion
    /// in flight with it).
    #[doc(hidden)]
    pub before_suggestion: Option<Hook>,
}

/// A function the engine calls at a point tests want to hold.
#[derive(Clone)]
pub struct Hook(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lease_ttl: Duration::from_secs(30),
            max_lease_wait: Duration::from_secs(20),
            before_suggestion: None,
        }
    }
}

/// What the store reads back: the engine's memory before it is shared.
#[derive(Debug, Default)]
struct State {
    sweeps: BTreeMap<String, Sweep>,
    /// Creation order of sweeps (leases go to the oldest running sweep first).
    order: Vec<String>,
    /// lease id → (sweep, trial).
    leases: HashMap<String, (String, u64)>,
    workers: HashMap<String, WorkerInfo>,
}

/// One sweep under its own lock.
type Cell = Arc<Mutex<Sweep>>;

/// The sweeps by id, and their creation order (leases go to the oldest running sweep first).
#[derive(Debug, Default)]
struct Sweeps {
    by_id: HashMap<String, Cell>,
    order: Vec<String>,
}

/// What a sweep has for a worker that asks for work.
enum Take {
    /// A lease (with the trial's row and, for a new trial, the sweep's row to write).
    Lease(Lease, TrialRow, Option<SweepUpdate>),
    /// Its next trial needs a bayes suggestion first.
    Suggest(Ask),
    /// Another lease is computing its next trial's suggestion.
    Busy,
}

/// The coordinator's state machine. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Locks are taken in this order, and never the other way: `down` (read), then `sweeps`
/// (briefly, to find a sweep), then one sweep, then `leases` or `workers`.
#[derive(Debug)]
struct Inner {
    /// Set when a commit failed: changes are refused with it until memory is read back. Every
    /// change holds it for reading from its check until its write is queued, so a read-back
    /// queued under it for writing sees every change acknowledged before.
    down: RwLock<Option<StoreError>>,
    sweeps: RwLock<Sweeps>,
    /// lease id → (sweep, trial).
    leases: Mutex<HashMap<String, (String, u64)>>,
    workers: Mutex<HashMap<String, WorkerInfo>>,
    suggesters: Suggesters,
    store: Store,
    opts: EngineOptions,
    work: Notify,
    events: broadcast::Sender<Event>,
    counters: EngineCounters,
    /// Wait before the next read-back after a failed write; doubles while writes keep failing.
    recovery: Mutex<(std::time::Instant, Duration)>,
    /// Set once the coordinator is shutting down: long polls, streams and the reaper end.
    closing: tokio::sync::watch::Sender<bool>,
}

/// Leases granted and expired, counted by the engine.
#[derive(Debug, Clone, Default)]
pub struct EngineCounters {
    /// Leases handed to workers.
    pub leases_granted: prometheus_client::metrics::counter::Counter,
    /// Leases that expired (the trial re-queued or failed).
    pub leases_expired: prometheus_client::metrics::counter::Counter,
}

/// Most classes a confusion matrix may have (its picture stays about 2,300 pixels square).
pub const MAX_CLASSES: usize = 256;
/// Longest class label, in characters.
pub const MAX_LABEL_CHARS: usize = 64;

/// The first wait before reading the store back after a failed write, and the longest.
const RECOVERY_WAIT: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

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

/// Locks `m`, also after a panic elsewhere while it was held.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads `l`, also after a panic elsewhere while it was held.
fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
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
        let mut load = load::Loader::new(&path.display().to_string(), opts.lease_ttl.as_secs_f64());
        let store = Store::open(path, &mut load)?;
        let st = load.finish()?;
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        Ok(Engine {
            inner: Arc::new(Inner {
                down: RwLock::new(None),
                sweeps: RwLock::new(Sweeps {
                    by_id: st
                        .sweeps
                        .into_iter()
                        .map(|(id, sw)| (id, Arc::new(Mutex::new(sw))))
                        .collect(),
                    order: st.order,
                }),
                leases: Mutex::new(st.leases),
                workers: Mutex::new(st.workers),
                suggesters: Suggesters::new(opts.before_suggestion.clone()),
                store,
                opts,
                work: Notify::new(),
                events,
                counters: EngineCounters::default(),
                recovery: Mutex::new((std::time::Instant::now(), RECOVERY_WAIT.0)),
                closing: tokio::sync::watch::channel(false).0,
            }),
        })
    }

    /// Admits a change: refused while the engine is down (a commit failed; memory is not read
    /// back yet). Hold the guard until the change's write is queued.
    fn up(&self) -> Result<RwLockReadGuard<'_, Option<StoreError>>, EngineError> {
        let g = self.inner.down.read().unwrap_or_else(|p| p.into_inner());
        match &*g {
            Some(e) => Err(EngineError::Store(e.clone())),
            None => Ok(g),
        }
    }

    /// Sweep `id`'s cell.
    fn cell(&self, id: &str) -> Option<Cell> {
        read(&self.inner.sweeps).by_id.get(id).cloned()
    }

    /// Every sweep's cell, oldest first.
    fn cells(&self) -> Vec<Cell> {
        let sweeps = read(&self.inner.sweeps);
        sweeps
            .order
            .iter()
            .filter_map(|id| sweeps.by_id.get(id).cloned())
            .collect()
    }

    /// Awaits a queued write. A failure takes the engine down until memory is read back.
    async fn commit<R>(
        &self,
        fut: impl std::future::Future<Output = Result<R, StoreError>>,
    ) -> Result<R, EngineError> {
        fut.await.map_err(|e| {
            if !matches!(e, StoreError::Closed) {
                self.take_down(&e);
            }
            EngineError::Store(e)
        })
    }

    fn take_down(&self, e: &StoreError) {
        let mut down = self.inner.down.write().unwrap_or_else(|p| p.into_inner());
        if down.is_none() {
            tracing::warn!(error = %e, "the engine refuses calls until it has read the store back");
            *down = Some(e.clone());
        }
    }

    /// Whether the engine refuses calls now, and why.
    pub fn down(&self) -> Option<StoreError> {
        read(&self.inner.down).clone()
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
        if self.down().is_none() {
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
        let load = load::Loader::new(
            self.inner.store.path(),
            self.inner.opts.lease_ttl.as_secs_f64(),
        );
        // Queued with no change between its check and its write (none is admitted while down),
        // so the read-back sees every write queued before it.
        let reload = {
            let _none_admitted = self.inner.down.write().unwrap_or_else(|p| p.into_inner());
            self.inner.store.reload(load)
        };
        let fresh = match reload.await {
            Ok(l) => l.finish()?,
            Err(e) => {
                *self.inner.down.write().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                return Err(e.into());
            }
        };
        let ids = {
            let mut down = self.inner.down.write().unwrap_or_else(|p| p.into_inner());
            let mut sweeps = self.inner.sweeps.write().unwrap_or_else(|p| p.into_inner());
            let mut by_id = HashMap::with_capacity(fresh.sweeps.len());
            for (id, sw) in fresh.sweeps {
                // A sweep keeps its cell (a lease computing a suggestion holds it).
                let cell = match sweeps.by_id.remove(&id) {
                    Some(c) => {
                        *lock(&c) = sw;
                        c
                    }
                    None => Arc::new(Mutex::new(sw)),
                };
                by_id.insert(id, cell);
            }
            *sweeps = Sweeps {
                by_id,
                order: fresh.order,
            };
            *lock(&self.inner.leases) = fresh.leases;
            let mut workers = lock(&self.inner.workers);
            let seen: Vec<(String, f64)> = workers
                .iter()
                .map(|(k, w)| (k.clone(), w.last_seen))
                .collect();
            *workers = fresh.workers;
            for (k, t) in seen {
                if let Some(w) = workers.get_mut(&k) {
                    w.last_seen = t;
                }
            }
            *down = None;
            sweeps.order.clone()
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

    /// Whether [`Engine::begin_shutdown`] has been called.
    pub fn is_closing(&self) -> bool {
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
        self.emit_step(sweep_id, trial, None);
    }

    fn emit_step(&self, sweep_id: &str, trial: Option<u64>, step: Option<u32>) {
        let _ = self.inner.events.send(Event {
            sweep_id: Arc::from(sweep_id),
            trial,
            step,
        });
    }

    /// Stores a new sweep (its spec validated at the edge, by `SweepSpec::parse`); returns its id.
    pub async fn create_sweep(
        &self,
        spec: SweepSpec,
        name: Option<String>,
    ) -> Result<String, EngineError> {
        let spec = spec.with_seed_if_unset(u64::from(rand::random::<u32>()));
        let id = random_id(4);
        let t = now();
        let name = name.or_else(|| spec.name.clone());
        let sweep = Sweep::new(id.clone(), name, spec, SweepState::Running, t, 1);
        let row = sweep.row();
        let fut = {
            let _up = self.up()?;
            let mut sweeps = self.inner.sweeps.write().unwrap_or_else(|p| p.into_inner());
            sweeps.order.push(id.clone());
            sweeps.by_id.insert(id.clone(), Arc::new(Mutex::new(sweep)));
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
            let _up = self.up()?;
            lock(&self.inner.workers).insert(
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
    fn touch(&self, worker: &str) {
        if let Some(w) = lock(&self.inner.workers).get_mut(worker) {
            w.last_seen = now();
        }
    }

    /// Leases granted and expired since this process started (for `/metrics`).
    pub fn counters(&self) -> &EngineCounters {
        &self.inner.counters
    }

    /// Workers seen within two lease lifetimes.
    pub fn live_workers(&self) -> u32 {
        let horizon = now() - 2.0 * self.inner.opts.lease_ttl.as_secs_f64();
        lock(&self.inner.workers)
            .values()
            .filter(|w| w.last_seen >= horizon)
            .count() as u32
    }

    /// What sweep `sw` (locked from `cell`) has for `worker` (which runs `trainers`): a queued
    /// trial, a new one, or a bayes suggestion to compute first; `None` if nothing now.
    fn take(
        &self,
        cell: &Cell,
        sw: &mut Sweep,
        worker: &str,
        trainers: &[String],
        t_poll: f64,
    ) -> Option<Take> {
        if sw.state != SweepState::Running {
            return None;
        }
        if !runs(trainers, sw.spec.trainer.name()) {
            sw.refused_at = Some(t_poll);
            return None;
        }
        sw.polled_at = Some(t_poll);
        let number = if let Some(n) = sw.queue.pop_front() {
            n
        } else if !sw.can_create() {
            return None;
        } else if sw.spec.method == crate::config::Method::Bayes {
            // One suggestion at a time per sweep: it sees the trials suggested before it.
            if sw.suggesting {
                return Some(Take::Busy);
            }
            sw.suggesting = true;
            let losses = Self::model_losses(sw);
            let history = sw
                .trials()
                .zip(losses)
                .map(|(t, l)| (t.params.clone(), l))
                .collect();
            return Some(Take::Suggest(Ask {
                cell: Arc::clone(cell),
                n: sw.next_trial,
                spec: sw.spec.clone(),
                history,
            }));
        } else {
            let n = sw.next_trial;
            let params = search::suggest(&sw.spec, n)?;
            sw.next_trial += 1;
            let params = Params::new(params, &mut sw.names);
            sw.insert(Trial::new(n, params));
            n
        };
        let (lease, row, sweep) = self.lease_trial(sw, number, worker)?;
        Some(Take::Lease(lease, row, Some(sweep)))
    }

    /// Leases trial `number` of `sw` to `worker`.
    fn lease_trial(
        &self,
        sw: &mut Sweep,
        number: u64,
        worker: &str,
    ) -> Option<(Lease, TrialRow, SweepUpdate)> {
        let ttl = self.inner.opts.lease_ttl.as_secs_f64();
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
        let worker_name = sw.names.get(worker);
        let (attempt, params) = sw.edit(number, |trial| {
            trial.state = TrialState::Running;
            trial.attempt += 1;
            trial.lease(Some(&lease_id), t + ttl);
            trial.worker = Some(worker_name);
            trial.started_at = Some(t);
            // A reason from an earlier attempt (an expired lease) does not describe this one.
            trial.error = None;
            (trial.attempt, trial.params.to_value())
        })?;
        let row = sw.trial_row(number)?;
        let lease = Lease {
            sweep_id: sw.id.clone(),
            trial: number,
            attempt,
            lease_id: lease_id.clone(),
            params,
            trainer,
            metric,
        };
        lock(&self.inner.leases).insert(lease_id, (sw.id.clone(), number));
        Some((lease, row, sweep_update))
    }

    /// Queues a lease's writes.
    fn write_lease(&self, row: TrialRow, sweep: Option<SweepUpdate>) -> Pending {
        Box::pin(self.inner.store.submit(move |tx| {
            if let Some((id, state, next, t)) = &sweep {
                store::update_sweep(tx, id, state, *next, *t)?;
            }
            store::upsert_trial(tx, &row)
        }))
    }

    /// Computes a bayes suggestion under no lock (on the suggestion threads), then adds it to
    /// its sweep as a new trial leased to `worker` — unless the sweep moved on meanwhile.
    async fn suggest(
        &self,
        ask: Ask,
        worker: &str,
    ) -> Result<Option<(Lease, Pending)>, EngineError> {
        let Ask {
            cell,
            n,
            spec,
            history,
        } = ask;
        let mut in_flight = InFlight::new(Arc::clone(&cell), &self.inner.work);
        let params = self.inner.suggesters.suggest(spec, n, history).await;
        let up = self.up();
        // Cleared with the trial added, under one lock: a lease that waited for this one
        // suggests the next trial, not this one again.
        let mut sw = lock(&cell);
        sw.suggesting = false;
        in_flight.landed();
        let _up = up?;
        let Some(params) = params else {
            return Ok(None);
        };
        if sw.next_trial != n || !sw.can_create() || sw.state != SweepState::Running {
            return Ok(None);
        }
        sw.next_trial += 1;
        let params = Params::new(params, &mut sw.names);
        sw.insert(Trial::new(n, params));
        Ok(self
            .lease_trial(&mut sw, n, worker)
            .map(|(lease, row, sweep)| (lease, self.write_lease(row, Some(sweep)))))
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
            self.touch(worker);
            // A sweep had work but was computing a suggestion: wait for it, whatever `wait`.
            let mut busy = false;
            let found = {
                let _up = self.up()?;
                let cells = match only {
                    Some(o) => match self.cell(o) {
                        Some(c) if !lock(&c).state.is_terminal() => vec![c],
                        _ => return Ok(None),
                    },
                    None => self.cells(),
                };
                let t_poll = now();
                let mut found = None;
                for cell in &cells {
                    let mut sw = lock(cell);
                    match self.take(cell, &mut sw, worker, trainers, t_poll) {
                        Some(Take::Lease(lease, row, sweep)) => {
                            found = Some(Ok((lease, self.write_lease(row, sweep))));
                            break;
                        }
                        Some(Take::Suggest(ask)) => {
                            found = Some(Err(ask));
                            break;
                        }
                        Some(Take::Busy) => busy = true,
                        None => {}
                    }
                }
                found
            };
            let found = match found {
                Some(Ok(f)) => Some(f),
                Some(Err(ask)) => self.suggest(ask, worker).await?,
                None => None,
            };
            if let Some((lease, fut)) = found {
                self.commit(fut).await?;
                self.inner.counters.leases_granted.inc();
                self.emit(&lease.sweep_id, Some(lease.trial));
                return Ok(Some(lease));
            }
            let until = if busy {
                deadline.max(tokio::time::Instant::now() + self.inner.opts.max_lease_wait)
            } else {
                deadline
            };
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    /// Whether `lease_id` holds the current attempt of `trial`; why not otherwise.
    fn check_lease(sw: &Sweep, trial: u64, attempt: u32, lease_id: &str) -> Result<(), String> {
        let t = sw
            .trial(trial)
            .ok_or_else(|| format!("sweep {} has no trial {trial}", sw.id))?;
        if t.state != TrialState::Running || t.attempt != attempt || t.lease_id() != Some(lease_id)
        {
            return Err(format!(
                "stale attempt: trial {trial} is {} at attempt {}, this is attempt {attempt}",
                t.state.name(),
                t.attempt
            ));
        }
        Ok(())
    }

    /// Records one epoch's metrics of a leased attempt and says whether to go on.
    pub async fn report(&self, r: Report<'_>) -> Result<Action, EngineError> {
        let Report {
            attempt:
                Attempt {
                    worker,
                    sweep,
                    trial,
                    attempt,
                    lease_id,
                },
            epoch,
            metrics,
        } = r;
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
        self.touch(worker);
        let (action, fut): (Action, Pending) = 'locked: {
            let _up = self.up()?;
            // Said only once what it rests on is committed.
            let abandon = |reason| {
                (
                    Action::Abandon(reason),
                    Box::pin(self.inner.store.barrier()) as Pending,
                )
            };
            let Some(cell) = self.cell(sweep) else {
                break 'locked abandon(format!("no sweep {sweep:?}"));
            };
            let mut guard = lock(&cell);
            let sw = &mut *guard;
            if let Err(reason) = Self::check_lease(sw, trial, attempt, lease_id) {
                break 'locked abandon(reason);
            }
            let stopped = sw.state.is_terminal();
            let finite: Vec<(String, f64)> =
                metrics.into_iter().filter(|(_, v)| v.is_finite()).collect();
            let named: Vec<(Arc<str>, f64)> =
                finite.iter().map(|(n, v)| (sw.names.get(n), *v)).collect();
            let known = sw.edit(trial, |t| {
                t.lease(None, now() + ttl);
                for (n, v) in &named {
                    t.curve.set(epoch, n.clone(), *v);
                    t.metrics.insert(n.clone(), *v);
                }
            });
            if known.is_none() {
                break 'locked abandon("unknown trial".into());
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
                if let Some(reason) = sw.should_stop(trial) {
                    tracing::info!(sweep = %sw.id, trial, epoch, %reason, "early termination");
                    sw.edit(trial, |t| t.error = Some(reason.as_str().into()));
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
            self.emit_step(sweep, Some(trial), Some(epoch));
        }
        Ok(action)
    }

    /// What the Bayesian model sees of each trial, in trial order: the goal-signed final value
    /// (finished or stopped), an imputed one (failed), or `None` (running or queued: pending).
    fn model_losses(sw: &Sweep) -> Vec<Option<f64>> {
        let m = &sw.spec.metric;
        let sign = if m.goal == Goal::Maximize { -1.0 } else { 1.0 };
        let observed: Vec<f64> = sw
            .trials()
            .filter(|t| matches!(t.state, TrialState::Finished | TrialState::Stopped))
            .filter_map(|t| t.final_value(&m.name))
            .map(|v| sign * v)
            .collect();
        let worst = observed.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let best = observed.iter().copied().fold(f64::INFINITY, f64::min);
        sw.trials()
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

    /// Ends a leased attempt. Returns whether the result was accepted (false: stale attempt).
    pub async fn complete(&self, c: Complete<'_>) -> Result<(bool, String), EngineError> {
        let Complete {
            attempt:
                Attempt {
                    worker,
                    sweep,
                    trial,
                    attempt,
                    lease_id,
                },
            outcome,
            metrics,
            confusion,
            error,
            output,
        } = c;
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
        self.touch(worker);
        let (answer, wake, fut) = 'locked: {
            let _up = self.up()?;
            let Some(cell) = self.cell(sweep) else {
                break 'locked settled((false, format!("no sweep {sweep:?}")));
            };
            let mut guard = lock(&cell);
            let sw = &mut *guard;
            // Idempotence: the same attempt completing again is accepted and changes nothing.
            if let Some(t) = sw.trial(trial) {
                if t.completed_attempt == Some(attempt) && t.state.is_terminal() {
                    break 'locked settled((true, "already completed".into()));
                }
            }
            if let Err(reason) = Self::check_lease(sw, trial, attempt, lease_id) {
                break 'locked settled((false, reason));
            }
            let t_now = now();
            let max_attempts = sw.spec.max_attempts;
            let (metric, goal, target) = (
                sw.spec.metric.name.clone(),
                sw.spec.metric.goal,
                sw.spec.metric.target,
            );
            let named: Vec<(Arc<str>, f64)> = metrics
                .into_iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(n, v)| (sw.names.get(&n), v))
                .collect();
            let edited = sw.edit(trial, |t| {
                let old_lease = t.take_lease();
                match outcome {
                    Outcome::Released => {
                        t.state = TrialState::Queued;
                        t.worker = None;
                        t.error =
                            Some(format!("attempt {attempt} handed back by its worker").into());
                        if t.attempt >= max_attempts.saturating_mul(4) {
                            t.state = TrialState::Failed;
                            t.error = Some(format!("handed back {} times", t.attempt).into());
                            t.ended_at = Some(t_now);
                        }
                    }
                    _ => {
                        for (n, v) in named {
                            t.metrics.insert(n, v);
                        }
                        t.set_files(
                            confusion,
                            (!output.is_empty())
                                .then(|| truncate_tail(&output, MAX_OUTPUT_BYTES).into_boxed_str()),
                        );
                        t.completed_attempt = Some(attempt);
                        t.ended_at = Some(t_now);
                        t.duration = t.started_at.map_or(0.0, |s| (t_now - s).max(0.0));
                        t.state = match outcome {
                            Outcome::Finished => TrialState::Finished,
                            Outcome::Stopped => TrialState::Stopped,
                            _ => TrialState::Failed,
                        };
                        let said = |or: &str| {
                            if error.is_empty() {
                                or.into()
                            } else {
                                error.clone().into_boxed_str()
                            }
                        };
                        t.error = match outcome {
                            Outcome::Diverged => Some(if error.is_empty() {
                                "diverged".into()
                            } else {
                                format!("diverged: {error}").into()
                            }),
                            Outcome::Failed => Some(said("failed")),
                            // Keep the coordinator's own reason (rule, band, threshold, value).
                            Outcome::Stopped => t.error.take().or_else(|| Some(said("stopped"))),
                            // A finished trial's note (a program that never logged the metric).
                            _ => (!error.is_empty()).then(|| said("")),
                        };
                    }
                }
                let reached = matches!(t.state, TrialState::Finished | TrialState::Stopped)
                    && match (target, t.final_value(&metric)) {
                        (Some(target), Some(v)) => v == target || goal.better(v, target),
                        _ => false,
                    };
                (old_lease, t.state == TrialState::Queued, reached)
            });
            let (Some((old_lease, requeue, reached)), Some(row)) = (edited, sw.trial_row(trial))
            else {
                break 'locked settled((false, "unknown trial".into()));
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
                    sw.edit(n, |q| {
                        q.state = TrialState::Stopped;
                        q.error = Some(
                            "the sweep reached its metric target before this trial ran".into(),
                        );
                    });
                    extra_rows.extend(sw.trial_row(n));
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
                lock(&self.inner.leases).remove(&*l);
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
    /// `leaving`: the worker is exiting cleanly; it is no longer counted as connected.
    pub fn heartbeat(&self, worker: &str, lease_ids: &[String], leaving: bool) -> Vec<String> {
        let ttl = self.inner.opts.lease_ttl.as_secs_f64();
        self.touch(worker);
        if leaving {
            if let Some(w) = lock(&self.inner.workers).get_mut(worker) {
                w.last_seen = 0.0;
            }
        }
        let held: Vec<Option<(String, u64)>> = {
            let leases = lock(&self.inner.leases);
            lease_ids.iter().map(|l| leases.get(l).cloned()).collect()
        };
        let mut drop = Vec::new();
        for (l, at) in lease_ids.iter().zip(held) {
            let Some(cell) = at.as_ref().and_then(|(s, _)| self.cell(s)) else {
                drop.push(l.clone());
                continue;
            };
            let n = at.map_or(0, |(_, n)| n);
            let held = lock(&cell).edit(n, |t| {
                let held = t.state == TrialState::Running && t.lease_id() == Some(l);
                if held {
                    t.lease(None, now() + ttl);
                }
                held
            });
            if held != Some(true) {
                drop.push(l.clone());
            }
        }
        drop
    }

    /// Re-queues (or fails, after `max_attempts`) every trial whose lease has expired.
    pub async fn reap(&self) -> Result<usize, EngineError> {
        let t_now = now();
        let mut writes = Vec::new();
        let mut changed = Vec::new();
        // A sweep at a time: the others go on meanwhile.
        for cell in self.cells() {
            let Ok(_up) = self.up() else { break };
            let mut sw = lock(&cell);
            let mut rows = Vec::new();
            let mut dropped = Vec::new();
            let max = sw.spec.max_attempts;
            let mut requeued = Vec::new();
            let expired: Vec<u64> = sw
                .running()
                .filter(|n| sw.trial(*n).is_some_and(|t| t.lease_expires() <= t_now))
                .collect();
            for n in expired {
                let id = sw.id.clone();
                let row = sw.edit(n, |t| {
                    let lease = t.take_lease();
                    let w = t.worker.clone().unwrap_or_default();
                    if t.attempt >= max {
                        t.state = TrialState::Failed;
                        t.ended_at = Some(t_now);
                        t.error = Some(
                            format!(
                                "lease expired on attempt {} of {max} (last worker {w})",
                                t.attempt
                            )
                            .into(),
                        );
                    } else {
                        t.state = TrialState::Queued;
                        t.error = Some(
                            format!("lease of attempt {} expired (worker {w})", t.attempt).into(),
                        );
                    }
                    tracing::warn!(sweep = %id, trial = t.number, attempt = t.attempt, worker = %w, state = t.state.name(), "lease expired");
                    (lease, t.state == TrialState::Queued)
                });
                let (Some((lease, queued)), Some(row)) = (row, sw.trial_row(n)) else {
                    continue;
                };
                dropped.extend(lease);
                if queued {
                    requeued.push(n);
                }
                self.inner.counters.leases_expired.inc();
                rows.push(row);
                changed.push((id, n));
            }
            if rows.is_empty() {
                continue;
            }
            sw.queue.extend(requeued);
            sw.maybe_finish();
            let r = (
                sw.id.clone(),
                sw.state.name().to_string(),
                sw.next_trial,
                t_now,
            );
            {
                let mut leases = lock(&self.inner.leases);
                for l in dropped {
                    leases.remove(&*l);
                }
            }
            writes.push(self.inner.store.submit(move |tx| {
                for row in &rows {
                    store::upsert_trial(tx, row)?;
                }
                store::update_sweep(tx, &r.0, &r.1, r.2, r.3)
            }));
        }
        for fut in writes {
            self.commit(fut).await?;
        }
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
            let _up = self.up()?;
            let cell = self
                .cell(sweep)
                .ok_or_else(|| EngineError::UnknownSweep(sweep.into()))?;
            let mut guard = lock(&cell);
            let sw = &mut *guard;
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
                    sw.edit(n, |t| {
                        t.state = TrialState::Stopped;
                        t.error = Some(if t.attempt == 0 {
                            "the sweep was stopped before this trial ran".into()
                        } else {
                            format!(
                                "the sweep was stopped while this trial waited to be run again (attempt {} was handed back)",
                                t.attempt
                            )
                            .into()
                        });
                    });
                }
            }
            if action == SweepState::Running {
                sw.maybe_finish();
            }
            let rows: Vec<TrialRow> = sw
                .trials()
                .filter(|t| t.state == TrialState::Stopped && t.completed_attempt.is_none())
                .map(|t| sw.row_of(t))
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

    /// Runs `f` on a sweep under its lock.
    pub fn with_sweep<R>(&self, id: &str, f: impl FnOnce(&Sweep) -> R) -> Result<R, EngineError> {
        let cell = self
            .cell(id)
            .ok_or_else(|| EngineError::UnknownSweep(id.into()))?;
        let sw = lock(&cell);
        Ok(f(&sw))
    }

    /// What the store keeps of trial `trial` beyond what memory holds of it once trimmed (see
    /// [`Trial::is_whole`]): its curve, confusion matrix and output.
    pub async fn trial_files(
        &self,
        sweep: &str,
        trial: u64,
    ) -> Result<store::TrialFiles, EngineError> {
        let sweep = sweep.to_string();
        Ok(self
            .inner
            .store
            .read(move |c| store::trial_files(c, &sweep, trial))
            .await?)
    }

    /// Ids of every sweep, oldest first.
    pub fn sweep_ids(&self) -> Vec<String> {
        read(&self.inner.sweeps).order.clone()
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
