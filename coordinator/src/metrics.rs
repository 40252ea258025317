//! The coordinator's Prometheus metrics (`coordinator serve --metrics-listen ADDR`, then
//! `GET http://ADDR/metrics`): calls and their latency per RPC method, leases granted and
//! expired, trials by state, sweeps by state, each sweep's progress, workers and their GPUs connected.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::engine::Engine;

/// The RPC method label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    /// e.g. `Lease`.
    pub method: String,
}

/// A state label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// queued, running, finished, failed, stopped (trials) or the sweep states.
    pub state: String,
}

/// One sweep.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SweepLabel {
    /// Sweep id.
    pub sweep: String,
    /// Its name.
    pub name: String,
}

type Hist = Family<MethodLabel, Histogram, fn() -> Histogram>;

fn rpc_histogram() -> Histogram {
    // 50 µs … ~3 s.
    Histogram::new(exponential_buckets(0.00005, 3.0, 11))
}

/// Everything `/metrics` shows.
#[derive(Debug)]
pub struct CoordinatorMetrics {
    registry: Registry,
    rpc_calls: Family<MethodLabel, Counter>,
    rpc_seconds: Hist,
    trials: Family<StateLabel, Gauge>,
    sweeps: Family<StateLabel, Gauge>,
    progress: Family<SweepLabel, Gauge<f64, AtomicU64>>,
    workers: Gauge,
    gpus: Gauge,
    gpus_leased: Gauge,
    store_up: Gauge,
}

/// Times one RPC: counts it and observes its duration when dropped.
#[derive(Debug)]
pub struct RpcTimer {
    hist: Histogram,
    start: Instant,
}

impl Drop for RpcTimer {
    fn drop(&mut self) {
        self.hist.observe(self.start.elapsed().as_secs_f64());
    }
}

impl CoordinatorMetrics {
    /// The metrics of `engine` (its lease counters are registered as they are).
    pub fn new(engine: &Engine) -> Arc<CoordinatorMetrics> {
        let mut r = Registry::with_prefix("sweep");
        let m = CoordinatorMetrics {
            registry: Registry::default(),
            rpc_calls: Family::default(),
            rpc_seconds: Family::new_with_constructor(rpc_histogram as fn() -> Histogram),
            trials: Family::default(),
            sweeps: Family::default(),
            progress: Family::default(),
            workers: Gauge::default(),
            gpus: Gauge::default(),
            gpus_leased: Gauge::default(),
            store_up: Gauge::default(),
        };
        r.register(
            "rpc_calls",
            "gRPC calls received, by method",
            m.rpc_calls.clone(),
        );
        r.register(
            "rpc_duration_seconds",
            "Time to answer a gRPC call (to the first response for streams), by method",
            m.rpc_seconds.clone(),
        );
        let c = engine.counters();
        r.register(
            "leases_granted",
            "Leases handed to workers",
            c.leases_granted.clone(),
        );
        r.register(
            "leases_expired",
            "Leases that expired without a report (trial re-queued or failed)",
            c.leases_expired.clone(),
        );
        r.register(
            "trials",
            "Trials by state, over every sweep",
            m.trials.clone(),
        );
        r.register("sweeps", "Sweeps by state", m.sweeps.clone());
        r.register(
            "sweep_progress_ratio",
            "Ended trials (finished, stopped, failed) over the sweep's total (grid size or run_cap)",
            m.progress.clone(),
        );
        r.register(
            "workers_connected",
            "Workers seen within two lease lifetimes",
            m.workers.clone(),
        );
        r.register(
            "gpus_connected",
            "GPUs the connected workers registered (worker --gpus)",
            m.gpus.clone(),
        );
        r.register(
            "gpus_leased",
            "GPUs that running trials hold (program_options.gpus)",
            m.gpus_leased.clone(),
        );
        r.register(
            "store_up",
            "1 while the store accepts writes; 0 while it refuses them (a failed write not yet read back, or the store file deleted, replaced or truncated)",
            m.store_up.clone(),
        );
        Arc::new(CoordinatorMetrics { registry: r, ..m })
    }

    /// Counts a call of `method` and times it until the returned guard is dropped.
    pub fn rpc(&self, method: &str) -> RpcTimer {
        let label = MethodLabel {
            method: method.to_string(),
        };
        self.rpc_calls.get_or_create(&label).inc();
        RpcTimer {
            hist: self.rpc_seconds.get_or_create(&label).clone(),
            start: Instant::now(),
        }
    }

    /// Reads the engine's state into the gauges and renders the OpenMetrics text.
    pub fn render(&self, engine: &Engine) -> String {
        let mut trials = [0i64; 5];
        let mut sweeps: std::collections::BTreeMap<&'static str, i64> = Default::default();
        self.progress.clear();
        for id in engine.sweep_ids() {
            let _ = engine.with_sweep(&id, |s| {
                let c = s.counts();
                let (f, fail, st) = (c.finished, c.failed, c.stopped);
                for (k, v) in [c.queued, c.running, f, fail, st].into_iter().enumerate() {
                    trials[k] += v as i64;
                }
                *sweeps.entry(s.state.name()).or_default() += 1;
                let ended = (f + fail + st) as f64;
                let total = s.spec.total().map_or(ended.max(1.0), |t| t as f64);
                self.progress
                    .get_or_create(&SweepLabel {
                        sweep: s.id.clone(),
                        name: s.spec.name.clone().unwrap_or_default(),
                    })
                    .set(if total > 0.0 { ended / total } else { 0.0 });
            });
        }
        for (k, name) in ["queued", "running", "finished", "failed", "stopped"]
            .iter()
            .enumerate()
        {
            self.trials
                .get_or_create(&StateLabel {
                    state: (*name).to_string(),
                })
                .set(trials[k]);
        }
        self.sweeps.clear();
        for (state, n) in sweeps {
            self.sweeps
                .get_or_create(&StateLabel {
                    state: state.to_string(),
                })
                .set(n);
        }
        self.workers.set(i64::from(engine.live_workers()));
        self.gpus.set(i64::from(engine.live_gpus()));
        self.gpus_leased.set(engine.gpus_leased() as i64);
        self.store_up.set(i64::from(
            engine.store_health().borrow().problem().is_none(),
        ));
        worker::metrics::encode(&self.registry)
    }
}
