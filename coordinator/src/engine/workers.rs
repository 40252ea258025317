//! The workers the engine knows: registration, when each was last heard from, and the
//! counters of leases granted and expired.

use super::{lock, now, random_id, Engine, EngineError, WorkerInfo};
use crate::store;

/// Leases granted and expired, counted by the engine.
#[derive(Debug, Clone, Default)]
pub struct EngineCounters {
    /// Leases handed to workers.
    pub leases_granted: prometheus_client::metrics::counter::Counter,
    /// Leases that expired (the trial re-queued or failed).
    pub leases_expired: prometheus_client::metrics::counter::Counter,
}

/// Longest host name a worker may register with (a DNS name is at most 253).
pub const MAX_HOST_BYTES: usize = 255;

/// Longest version a worker may register with.
pub const MAX_VERSION_BYTES: usize = 64;

/// Most GPUs a worker may register.
pub const MAX_GPUS: usize = 64;

/// Longest id, UUID or name of a GPU a worker may register.
pub const MAX_GPU_TEXT: usize = 128;

/// Most workers the coordinator knows at once. A registration at the cap first forgets the
/// workers not heard from for [`CROWDED_FORGET_AFTER`] (at most once a minute), and is refused
/// if that frees no place.
pub const MAX_WORKERS: usize = 100_000;

/// A worker not heard from for this long is forgotten (its registration leaves memory and the
/// store; the trials it ran keep its name).
pub const FORGET_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Seconds unheard after which a worker is forgotten to make room at [`MAX_WORKERS`].
const CROWDED_FORGET_AFTER: f64 = 600.0;

impl Engine {
    /// Registers (or re-registers) a worker.
    pub async fn register(
        &self,
        id: Option<String>,
        host: String,
        cores: u32,
        slots: u32,
        version: String,
        gpus: Vec<super::GpuInfo>,
    ) -> Result<String, EngineError> {
        if gpus.len() > MAX_GPUS {
            return Err(EngineError::Invalid(format!(
                "gpus: {} GPUs; a worker registers at most {MAX_GPUS}",
                gpus.len()
            )));
        }
        for (i, g) in gpus.iter().enumerate() {
            for (field, text) in [("id", &g.id), ("uuid", &g.uuid), ("name", &g.name)] {
                if text.len() > MAX_GPU_TEXT {
                    return Err(EngineError::Invalid(format!(
                        "gpus[{i}].{field}: {} bytes; at most {MAX_GPU_TEXT}",
                        text.len()
                    )));
                }
            }
            if g.id.is_empty() {
                return Err(EngineError::Invalid(format!(
                    "gpus[{i}].id: empty; expected what CUDA_VISIBLE_DEVICES names it by"
                )));
            }
            // One GPU under two entries would go to two trials at once.
            if gpus[..i].iter().any(|o| o.id == g.id) {
                return Err(EngineError::Invalid(format!(
                    "gpus[{i}].id: {:?} is registered twice",
                    g.id
                )));
            }
        }
        if host.len() > MAX_HOST_BYTES {
            return Err(EngineError::Invalid(format!(
                "host: {} bytes; a host name is at most {MAX_HOST_BYTES}",
                host.len()
            )));
        }
        if version.len() > MAX_VERSION_BYTES {
            return Err(EngineError::Invalid(format!(
                "version: {} bytes; at most {MAX_VERSION_BYTES}",
                version.len()
            )));
        }
        let id = id
            .filter(|s| !s.is_empty() && s.len() <= 64)
            .unwrap_or_else(|| format!("w-{}", random_id(4)));
        let known = lock(&self.inner.workers).contains_key(&id);
        if !known && lock(&self.inner.workers).len() >= MAX_WORKERS {
            let t = now();
            let look = {
                let mut at = lock(&self.inner.crowded_at);
                let look = t - *at >= 60.0;
                if look {
                    *at = t;
                }
                look
            };
            if look {
                self.forget_workers(t - CROWDED_FORGET_AFTER).await?;
            }
            if lock(&self.inner.workers).len() >= MAX_WORKERS {
                return Err(EngineError::Invalid(format!(
                    "the coordinator knows {MAX_WORKERS} workers, the most it keeps; workers not heard from for {} minutes make room (at most once a minute)",
                    CROWDED_FORGET_AFTER / 60.0
                )));
            }
        }
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
                    gpus: gpus.clone(),
                },
            );
            let wid = id.clone();
            let row = store::WorkerRow {
                id: wid,
                host,
                cores,
                slots,
                version,
                gpus,
            };
            self.inner
                .store
                .submit(move |tx| store::upsert_worker(tx, &row, t))
        };
        self.commit(fut).await?;
        Ok(id)
    }

    /// Forgets the workers last heard from before `horizon` (Unix seconds; a stored worker not
    /// heard from since the start counts as heard from at the start): from the store first,
    /// then from memory, unless one registered again meanwhile. Returns how many.
    pub async fn forget_workers(&self, horizon: f64) -> Result<usize, EngineError> {
        let started = self.inner.started;
        let gone: Vec<String> = lock(&self.inner.workers)
            .iter()
            .filter(|(_, w)| w.last_seen.max(started) < horizon)
            .map(|(k, _)| k.clone())
            .collect();
        if gone.is_empty() {
            return Ok(0);
        }
        let fut = {
            let _up = self.up()?;
            let ids = gone.clone();
            self.inner
                .store
                .submit(move |tx| store::delete_workers(tx, &ids, horizon))
        };
        self.commit(fut).await?;
        let mut workers = lock(&self.inner.workers);
        let mut n = 0;
        for id in &gone {
            if workers
                .get(id)
                .is_some_and(|w| w.last_seen.max(started) < horizon)
            {
                workers.remove(id);
                n += 1;
            }
        }
        Ok(n)
    }

    /// How many workers the coordinator knows (registered, not yet forgotten).
    pub fn known_workers(&self) -> usize {
        lock(&self.inner.workers).len()
    }

    /// Notes a call from a registered worker (made-up ids are not kept: only a registration
    /// adds a worker, and registrations are stored, so a restart still knows them).
    pub(super) fn touch(&self, worker: &str) {
        if let Some(w) = lock(&self.inner.workers).get_mut(worker) {
            w.last_seen = now();
        }
    }

    /// Leases granted and expired since this process started (for `/metrics`).
    pub fn counters(&self) -> &EngineCounters {
        &self.inner.counters
    }

    /// The workers the coordinator knows (id and registration), most recently heard from
    /// first, and whether each is connected (heard from within two lease TTLs).
    pub fn workers(&self) -> Vec<(String, WorkerInfo, bool)> {
        let horizon = now() - 2.0 * self.inner.opts.lease_ttl.as_secs_f64();
        let mut out: Vec<(String, WorkerInfo, bool)> = lock(&self.inner.workers)
            .iter()
            .map(|(id, w)| (id.clone(), w.clone(), w.last_seen >= horizon))
            .collect();
        out.sort_by(|a, b| b.1.last_seen.total_cmp(&a.1.last_seen).then(a.0.cmp(&b.0)));
        out
    }

    /// GPUs of the connected workers.
    pub fn live_gpus(&self) -> u32 {
        let horizon = now() - 2.0 * self.inner.opts.lease_ttl.as_secs_f64();
        lock(&self.inner.workers)
            .values()
            .filter(|w| w.last_seen >= horizon)
            .map(|w| w.gpus.len() as u32)
            .sum()
    }

    /// GPUs that leases hold now (or set aside for a lease being made).
    pub fn gpus_leased(&self) -> usize {
        lock(&self.inner.leases).gpus_in_use()
    }

    /// Workers seen within two lease lifetimes.
    pub fn live_workers(&self) -> u32 {
        let horizon = now() - 2.0 * self.inner.opts.lease_ttl.as_secs_f64();
        lock(&self.inner.workers)
            .values()
            .filter(|w| w.last_seen >= horizon)
            .count() as u32
    }
}
