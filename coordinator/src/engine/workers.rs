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

impl Engine {
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
    pub(super) fn touch(&self, worker: &str) {
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
}
