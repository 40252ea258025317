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

use tokio::sync::{broadcast, Notify};

use crate::config::SweepSpec;
use crate::store::{self, Store, StoreError, TrialRow};

mod checkpoints;
mod gang;
mod held;
mod lease;
mod load;
mod messages;
mod program_files;
mod results;
mod suggest;
mod sweep;
mod trial;
mod workers;

use held::Held;
use suggest::Suggesters;

pub use messages::{
    Action, Attempt, Beat, Complete, GangPlace, GpuInfo, Lease, Outcome, Rendezvous, Report,
    WorkerInfo,
};
pub use results::{MAX_CLASSES, MAX_LABEL_CHARS, MAX_OUTPUT_BYTES, MAX_RUN_NAME_CHARS};
pub use sweep::{Counts, Sweep, SweepState};
pub use trial::{
    Curve, Metrics, Param, Params, Point, Trial, TrialState, MAX_TRIAL_METRICS, MAX_TRIAL_POINTS,
    MEMORY_POINTS,
};
pub use workers::{
    EngineCounters, FORGET_AFTER, MAX_GPUS, MAX_GPU_TEXT, MAX_HOST_BYTES, MAX_VERSION_BYTES,
    MAX_WORKERS,
};

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
    /// The leases held and the GPUs they hold.
    leases: Held,
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
    /// The leases held (lease id → sweep and trial) and the GPUs they hold.
    leases: Mutex<Held>,
    workers: Mutex<HashMap<String, WorkerInfo>>,
    /// When this engine started: a stored worker not heard from since is counted as last seen
    /// then (`workers::FORGET_AFTER`).
    started: f64,
    /// The last time a registration at the cap looked for workers to forget.
    crowded_at: Mutex<f64>,
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

/// The first wait before reading the store back after a failed write, and the longest.
const RECOVERY_WAIT: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

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
                started: now(),
                crowded_at: Mutex::new(0.0),
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
            self.inner
                .store
                .submit(move |tx| store::insert_sweep(tx, &row))
        };
        // Shown only once kept: a submit refused because the store failed leaves nothing
        // behind in memory (a read-back after the commit may have brought it already).
        self.commit(fut).await?;
        {
            let mut sweeps = self.inner.sweeps.write().unwrap_or_else(|p| p.into_inner());
            if !sweeps.by_id.contains_key(&id) {
                sweeps.order.push(id.clone());
                sweeps.by_id.insert(id.clone(), Arc::new(Mutex::new(sweep)));
            }
        }
        self.inner.work.notify_waiters();
        self.emit(&id, None);
        Ok(id)
    }

    /// Pauses, resumes or stops a sweep. `hand_back` (with a pause): its running trials are
    /// asked, at their workers' next heartbeat, to hand themselves back after a checkpoint; they
    /// go on from it when the sweep resumes.
    pub async fn control(
        &self,
        sweep: &str,
        action: SweepState,
        hand_back: bool,
    ) -> Result<(), EngineError> {
        let mut stopped_now = Vec::new();
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
            sw.hand_back = hand_back && action == SweepState::Paused;
            // A resume starts the count of failures in a row again.
            sw.failures_in_a_row = 0;
            sw.paused_because = None;
            sw.updated_at = now();
            let mut ended = Vec::new();
            if action == SweepState::Stopped {
                // Running trials end now, `stopped`; their leases go, so their workers' next
                // heartbeat tells them to drop them (a program gets SIGTERM, then SIGKILL
                // after the worker's grace), within a heartbeat, not at their next report.
                let t_now = now();
                let running: Vec<u64> = sw.running().collect();
                stopped_now.clone_from(&running);
                let mut dropped = Vec::new();
                for n in running {
                    let id = sw.id.clone();
                    let attempt = sw.edit(n, |t| {
                        dropped.extend(t.take_lease());
                        t.state = TrialState::Stopped;
                        t.ended_at = Some(t_now);
                        t.duration = t.started_at.map_or(0.0, |s| (t_now - s).max(0.0));
                        t.error = Some(
                            format!(
                                "the sweep was stopped while this trial ran (attempt {})",
                                t.attempt
                            )
                            .into(),
                        );
                        (t.attempt > 1).then(|| t.attempt_row(&id, Some(t_now), "stopped"))
                    });
                    ended.extend(attempt.flatten());
                }
                let mut leases = lock(&self.inner.leases);
                for l in dropped {
                    leases.remove(&l);
                }
                drop(leases);
                // Queued trials will not run.
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
                for a in &ended {
                    store::end_attempt(tx, a)?;
                }
                store::update_sweep(tx, &r.0, &r.1, r.2, r.3)
            })
        };
        self.commit(fut).await?;
        self.inner.work.notify_waiters();
        self.emit(sweep, None);
        for n in stopped_now {
            self.emit(sweep, Some(n));
        }
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
    /// [`Trial::is_whole`]): its curve (sampled to about `points`: [`crate::curve`]),
    /// confusion matrix and output.
    pub async fn trial_files(
        &self,
        sweep: &str,
        trial: u64,
        points: u32,
    ) -> Result<store::TrialFiles, EngineError> {
        let sweep = sweep.to_string();
        Ok(self
            .inner
            .store
            .read(move |c| store::trial_files(c, &sweep, trial, points))
            .await?)
    }

    /// Trial `trial`'s curve from the store, sampled to about `points`: (points, how many
    /// the store keeps, whether sampled).
    pub async fn sampled_curve(
        &self,
        sweep: &str,
        trial: u64,
        points: u32,
    ) -> Result<crate::curve::Served, EngineError> {
        let sweep = sweep.to_string();
        Ok(self
            .inner
            .store
            .read(move |c| store::sampled_points(c, &sweep, trial, points))
            .await?)
    }

    /// One page of trial `trial`'s curve, every point as stored ([`store::curve_page`]).
    pub async fn curve_page(
        &self,
        sweep: &str,
        trial: u64,
        name: &str,
        after: u32,
        limit: u32,
    ) -> Result<(Vec<crate::curve::CurvePoint>, Option<u32>), EngineError> {
        let (sweep, name) = (sweep.to_string(), name.to_string());
        Ok(self
            .inner
            .store
            .read(move |c| store::curve_page(c, &sweep, trial, &name, after, limit))
            .await?)
    }

    /// A kept model of sweep `sweep`: trial `trial`'s, or (`None`) the best-ranked trial's that
    /// has one, as (trial, card text, weights); `None` when there is none.
    pub async fn model(
        &self,
        sweep: &str,
        trial: Option<u64>,
    ) -> Result<Option<(u64, String, Vec<u8>)>, EngineError> {
        let trial = match trial {
            Some(n) => n,
            None => match self.best_kept(sweep, store::model_trials).await? {
                Some(n) => n,
                None => return Ok(None),
            },
        };
        let id = sweep.to_string();
        let files = self
            .inner
            .store
            .read(move |c| store::model(c, &id, trial))
            .await?;
        Ok(files.map(|(card, weights)| (trial, card, weights)))
    }

    /// The best-ranked trial of sweep `sweep` among those `kept` lists from the store (the
    /// trials with a kept model, or with kept files).
    pub(crate) async fn best_kept(
        &self,
        sweep: &str,
        kept: fn(&rusqlite::Connection, &str) -> rusqlite::Result<Vec<u64>>,
    ) -> Result<Option<u64>, EngineError> {
        let id = sweep.to_string();
        let kept = self.inner.store.read(move |c| kept(c, &id)).await?;
        self.with_sweep(sweep, |s| {
            s.ranked().map(|(_, t)| t.number).find(|n| kept.contains(n))
        })
    }

    /// Ids of every sweep, oldest first.
    pub fn sweep_ids(&self) -> Vec<String> {
        read(&self.inner.sweeps).order.clone()
    }
}
