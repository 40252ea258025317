//! Checkpoints (docs/CHECKPOINTS.md): a running attempt's state, kept in the store so that
//! whichever worker takes the trial next goes on from it; and the attempts of trials that took
//! more than one.
//!
//! Only the attempt that holds a trial's lease saves or fetches its checkpoint. A trial keeps
//! its last checkpoint only: a save replaces it, and the change that ends the trial deletes it
//! ([`store::upsert_trial`]). Memory holds where it stands ([`CheckpointMark`]), never its
//! bytes, and only once the store has committed it.

use super::{lock, now, Attempt, Engine, EngineError, Pending};
use crate::store::{self, AttemptRow, CheckpointMark};

impl Engine {
    /// Keeps `data` as the checkpoint of the attempt `a` at (`epoch`, `batch`), replacing the
    /// trial's last one. Returns whether it was kept (false, with the reason: the attempt no
    /// longer holds the trial).
    pub async fn save_checkpoint(
        &self,
        a: Attempt<'_>,
        epoch: u32,
        batch: u32,
        data: Vec<u8>,
    ) -> Result<(bool, String), EngineError> {
        if epoch > 1_000_000 || batch > 100_000_000 {
            return Err(EngineError::Invalid(format!(
                "checkpoint at epoch {epoch} batch {batch} is out of range"
            )));
        }
        if data.len() as u64 > sweep_proto::conn::MAX_CHECKPOINT_BYTES {
            return Err(EngineError::Invalid(format!(
                "checkpoint: {} bytes; at most {} are kept",
                data.len(),
                sweep_proto::conn::MAX_CHECKPOINT_BYTES
            )));
        }
        self.touch(a.worker);
        let mark = CheckpointMark {
            epoch,
            batch,
            bytes: data.len() as u64,
            attempt: a.attempt,
        };
        let (answer, fut): ((bool, String), Pending) = 'locked: {
            let _up = self.up()?;
            let refuse = |reason: String| {
                (
                    (false, reason),
                    Box::pin(self.inner.store.barrier()) as Pending,
                )
            };
            let Some(cell) = self.cell(a.sweep) else {
                break 'locked refuse(format!("no sweep {:?}", a.sweep));
            };
            let sw = lock(&cell);
            if let Err(reason) = Self::check_lease(&sw, a.trial, a.attempt, a.lease_id) {
                break 'locked refuse(reason);
            }
            let (sweep, trial, at) = (a.sweep.to_string(), a.trial, now());
            let fut = self
                .inner
                .store
                .submit(move |tx| store::put_checkpoint(tx, &sweep, trial, mark, &data, at));
            ((true, String::new()), Box::pin(fut))
        };
        self.commit(fut).await?;
        if answer.0 {
            // Shown only once it is committed: no one is told of a checkpoint that a crash
            // could still lose. Saves of a trial only go forward (a later attempt, or further
            // on in the same one), so an older one finishing late changes nothing.
            if let Some(cell) = self.cell(a.sweep) {
                let key = |m: &CheckpointMark| (m.attempt, m.epoch, m.batch);
                lock(&cell).edit(a.trial, |t| {
                    if !t.state.is_terminal() && t.checkpoint().is_none_or(|m| key(&m) < key(&mark))
                    {
                        t.set_checkpoint(Some(mark));
                    }
                });
            }
            self.emit(a.sweep, Some(a.trial));
        }
        Ok(answer)
    }

    /// The checkpoint the attempt `a` goes on from: where it stands and its bytes; `None` when
    /// the trial has none. Refused unless `a` holds the trial's lease.
    pub async fn trial_checkpoint(
        &self,
        a: Attempt<'_>,
    ) -> Result<Option<(CheckpointMark, Vec<u8>)>, EngineError> {
        self.touch(a.worker);
        let cell = self
            .cell(a.sweep)
            .ok_or_else(|| EngineError::UnknownSweep(a.sweep.into()))?;
        Self::check_lease(&lock(&cell), a.trial, a.attempt, a.lease_id)
            .map_err(EngineError::Invalid)?;
        let (sweep, trial) = (a.sweep.to_string(), a.trial);
        Ok(self
            .inner
            .store
            .read(move |c| store::checkpoint(c, &sweep, trial))
            .await?)
    }

    /// The recorded attempts of trial `trial` (of a trial that took more than one), oldest first.
    /// Read after the changes queued before the call are committed, so that it agrees with
    /// the trial as memory shows it (memory changes before its commit is acknowledged).
    pub async fn attempts(&self, sweep: &str, trial: u64) -> Result<Vec<AttemptRow>, EngineError> {
        self.inner.store.barrier().await?;
        let sweep = sweep.to_string();
        Ok(self
            .inner
            .store
            .read(move |c| store::attempts(c, &sweep, trial))
            .await?)
    }
}
