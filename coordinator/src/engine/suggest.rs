//! Bayes suggestions, computed under no lock on threads of their own.
//!
//! A lease that finds a bayes sweep's next trial wanting parameters takes an [`Ask`] (the
//! sweep's trials as they are, copied under its lock) and leaves every lock; the suggestion
//! runs on one of the [`Suggesters`]' threads, which the scheduler ranks below the threads
//! that answer calls, so a long suggestion takes the CPU they leave idle. One suggestion at a
//! time per sweep (its `suggesting` flag): each sees the trials suggested before it; leases
//! that find one in flight wait for it ([`InFlight`] wakes them).

use serde_json::Value;
use tokio::sync::Notify;

use super::{lock, Cell, Hook, Params};
use crate::config::SweepSpec;
use crate::search;

/// Niceness of the suggestion threads (0 is the default, 19 the lowest priority).
const NICE: i32 = 10;

/// A bayes suggestion to compute: trial `n` of the sweep in `cell`, from its trials as they
/// were when it was asked (parameters, and the goal-signed loss of each objective the model
/// sees, `None` for a pending trial).
pub(super) struct Ask {
    pub(super) cell: Cell,
    pub(super) n: u64,
    pub(super) spec: SweepSpec,
    pub(super) history: Vec<(Params, Option<Vec<f64>>)>,
}

/// A suggestion in flight: when it is dropped, the leases that waited for it are woken, and
/// the sweep's `suggesting` is cleared unless [`InFlight::landed`] said it has been.
pub(super) struct InFlight<'a> {
    cell: Cell,
    work: &'a Notify,
    landed: bool,
}

impl<'a> InFlight<'a> {
    pub(super) fn new(cell: Cell, work: &'a Notify) -> InFlight<'a> {
        InFlight {
            cell,
            work,
            landed: false,
        }
    }

    /// The sweep's `suggesting` was cleared by the caller (with the trial added, under the
    /// same lock).
    pub(super) fn landed(&mut self) {
        self.landed = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // Abandoned: its Lease call was dropped midway, or it failed.
        if !self.landed {
            lock(&self.cell).suggesting = false;
        }
        self.work.notify_waiters();
    }
}

/// The threads suggestions run on.
#[derive(Debug)]
pub(super) struct Suggesters {
    /// `None` if the threads could not be started: suggestions then run on tokio's blocking
    /// threads.
    pool: Option<rayon::ThreadPool>,
    before: Option<Hook>,
}

impl Suggesters {
    /// As many threads as cores; `before` is called before each suggestion (tests hold one in
    /// flight with it).
    pub(super) fn new(before: Option<Hook>) -> Suggesters {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("suggest-{i}"))
            .start_handler(|_| lower_priority())
            .build()
            .map_err(|e| tracing::warn!(error = %e, "no suggestion threads: suggestions run on the blocking threads"))
            .ok();
        Suggesters { pool, before }
    }

    /// Parameters for trial `n` of a sweep of `spec` with `history` (see [`Ask`]), or `None`
    /// (the sweep has handed out all it will, or the suggestion failed).
    pub(super) async fn suggest(
        &self,
        spec: SweepSpec,
        n: u64,
        history: Vec<(Params, Option<Vec<f64>>)>,
    ) -> Option<Value> {
        let before = self.before.clone();
        let job = move || {
            if let Some(Hook(f)) = before {
                f();
            }
            let (params, losses): (Vec<Value>, Vec<Option<Vec<f64>>>) =
                history.into_iter().map(|(p, l)| (p.to_value(), l)).unzip();
            search::suggest_objectives(&spec, n, &params, &losses)
        };
        let out = match &self.pool {
            Some(pool) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                pool.spawn(move || {
                    let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)));
                });
                rx.await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|_| "the suggestion panicked".to_string()))
            }
            None => tokio::task::spawn_blocking(job)
                .await
                .map_err(|e| e.to_string()),
        };
        out.unwrap_or_else(|e| {
            tracing::error!(error = %e, trial = n, "a bayes suggestion failed");
            None
        })
    }
}

/// Lowers the calling thread's scheduling priority (Linux: niceness is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its arguments; `who` 0 is the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, NICE);
    }
}
