//! Trials across several workers at once (`program_options.nodes`), gangs: one forms as workers
//! ask for work — each waits, parked in the sweep, until enough distinct workers have come —
//! and is leased all at once, both or neither (a parked worker whose wait runs out leaves it).
//! Workers join the oldest sweep's gang first, so two gangs never split the workers they both
//! wait for while either could form. Rank 0 holds the trial's lease and reports; every member
//! renews its own lease; a member's failure, hand-back or expired lease ends the whole
//! attempt, and the others learn it at their next heartbeat (their leases are gone).

use tokio::sync::oneshot;

use super::lease::Claim;
use super::{lock, now, Engine, EngineError, Lease, Outcome, Pending, Rendezvous, TrialState};
use crate::store;

/// A worker waiting in a sweep for a gang to form.
pub(super) struct Joiner {
    /// Names it among the waiting (to leave when its wait runs out).
    pub key: String,
    pub worker: String,
    pub at: Rendezvous,
    /// The GPUs it set aside for the trial.
    pub claim: Option<Claim>,
    /// Where its lease goes once the whole gang's is committed.
    pub tx: oneshot::Sender<Lease>,
}

impl std::fmt::Debug for Joiner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joiner")
            .field("worker", &self.worker)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A completion from a gang member past rank 0, if `lease_id` is one of trial `trial`'s:
    /// its program ended well (it holds nothing more, its output is kept for rank 0's
    /// completion), or not (the whole attempt ends: failed when its program failed, re-queued
    /// when it was handed back). `None`: not a member's lease.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn member_complete(
        &self,
        sweep: &str,
        trial: u64,
        attempt: u32,
        lease_id: &str,
        outcome: Outcome,
        error: &str,
        output: &str,
    ) -> Option<Result<(bool, String), EngineError>> {
        let cell = self.cell(sweep)?;
        let fut: Pending = {
            let _up = match self.up() {
                Ok(u) => u,
                Err(e) => return Some(Err(e)),
            };
            let mut sw = lock(&cell);
            let is_member = sw.trial(trial).is_some_and(|t| {
                t.state == TrialState::Running
                    && t.attempt == attempt
                    && t.gang().iter().any(|m| &*m.lease_id == lease_id)
            });
            if !is_member {
                return None;
            }
            let t_now = now();
            let sweep_id = sw.id.clone();
            let max = sw.spec.max_attempts;
            let tail = super::results::truncate_tail(output, super::MAX_OUTPUT_BYTES / 4);
            let ended = sw.edit(trial, |t| {
                let (rank, m) = t.member_mut(lease_id)?;
                let worker = m.worker.clone();
                if matches!(outcome, Outcome::Finished | Outcome::Stopped) {
                    m.done = true;
                    m.output = (!tail.is_empty()).then(|| tail.clone().into_boxed_str());
                    return Some((vec![m.lease_id.clone()], None, false));
                }
                let what = match outcome {
                    Outcome::Released => "was handed back".to_string(),
                    Outcome::WorkerFault => format!("was handed back: {error}"),
                    _ if error.is_empty() => "failed".to_string(),
                    _ => format!("failed: {error}"),
                };
                let why = format!("rank {rank} of the gang (worker {worker}) {what}");
                let dropped = t.take_lease();
                let requeue = matches!(outcome, Outcome::Released | Outcome::WorkerFault)
                    && t.attempts_without_progress() < max.saturating_mul(4);
                t.state = if requeue {
                    TrialState::Queued
                } else {
                    TrialState::Failed
                };
                if !requeue {
                    t.ended_at = Some(t_now);
                    t.set_files(
                        None,
                        (!tail.is_empty()).then(|| tail.clone().into_boxed_str()),
                    );
                }
                t.error = Some(why.clone().into_boxed_str());
                let row = t.attempt_row(&sweep_id, Some(t_now), &why);
                Some((dropped, Some(row), requeue))
            })??;
            let (dropped, attempt_row, requeue) = ended;
            {
                let mut held = lock(&self.inner.leases);
                for l in &dropped {
                    held.remove(l);
                }
            }
            if requeue {
                sw.queue.push_back(trial);
            }
            if attempt_row.is_some() {
                sw.updated_at = t_now;
                sw.maybe_finish();
            }
            let row = sw.trial_row(trial)?;
            let srow = (
                sw.id.clone(),
                sw.state.name().to_string(),
                sw.next_trial,
                sw.updated_at,
            );
            Box::pin(self.inner.store.submit(move |tx| {
                store::upsert_trial(tx, &row)?;
                if let Some(a) = &attempt_row {
                    store::end_attempt(tx, a)?;
                }
                store::update_sweep(tx, &srow.0, &srow.1, srow.2, srow.3)
            }))
        };
        if let Err(e) = self.commit(fut).await {
            return Some(Err(e));
        }
        self.inner.work.notify_waiters();
        self.emit(sweep, Some(trial));
        Some(Ok((true, String::new())))
    }
}
