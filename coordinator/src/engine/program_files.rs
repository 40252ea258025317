//! The files programs hand back (docs/PROGRAMS.md): kept in the store for the attempt that
//! holds the trial's lease, sent before its completion; the completion keeps them while the
//! trial ranks among the sweep's best `keep_models` ([`super::results`]). Memory holds none of
//! them: lists and bytes are read from the store.

use super::{lock, Attempt, Engine, EngineError, Pending, Sweep};
use crate::store::{self, ProgramFile};

impl Engine {
    /// Keeps the files `list` (their bytes one after another in `data`, already checked
    /// against the list) as attempt `a`'s, replacing any an earlier attempt of the trial sent.
    /// Returns whether they were kept (false, with the reason: the attempt no longer holds the
    /// trial). More than the sweep keeps per trial is refused.
    pub async fn save_program_files(
        &self,
        a: Attempt<'_>,
        list: Vec<ProgramFile>,
        data: Vec<u8>,
    ) -> Result<(bool, String), EngineError> {
        self.touch(a.worker);
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
            if let Some(why) = over_limit(&sw, data.len() as u64) {
                return Err(EngineError::Invalid(why));
            }
            if let Err(reason) = Self::check_lease(&sw, a.trial, a.attempt, a.lease_id) {
                break 'locked refuse(reason);
            }
            let (sweep, trial, attempt) = (a.sweep.to_string(), a.trial, a.attempt);
            let fut = self.inner.store.submit(move |tx| {
                store::put_program_files(tx, &sweep, trial, attempt, &list, &data)
            });
            ((true, String::new()), Box::pin(fut))
        };
        self.commit(fut).await?;
        Ok(answer)
    }

    /// Refuses `bytes` of a trial's files that sweep `sweep` would not keep (checked before
    /// an upload is received as well as when it is kept).
    pub fn check_files_size(&self, sweep: &str, bytes: u64) -> Result<(), EngineError> {
        match self.with_sweep(sweep, |sw| over_limit(sw, bytes))? {
            Some(why) => Err(EngineError::Invalid(why)),
            None => Ok(()),
        }
    }

    /// The kept files of trial `trial` (`None`: of the best-ranked trial that has some): its
    /// number and their list, or `None` when it keeps none.
    pub async fn program_files(
        &self,
        sweep: &str,
        trial: Option<u64>,
    ) -> Result<Option<(u64, Vec<ProgramFile>)>, EngineError> {
        let trial = match trial {
            Some(n) => {
                self.with_sweep(sweep, |_| ())?;
                n
            }
            None => match self.best_kept(sweep, store::program_file_trials).await? {
                Some(n) => n,
                None => return Ok(None),
            },
        };
        let id = sweep.to_string();
        let list = self
            .inner
            .store
            .read(move |c| store::program_files(c, &id, trial))
            .await?;
        Ok((!list.is_empty()).then_some((trial, list)))
    }

    /// The bytes of trial `trial`'s kept file `path`.
    pub async fn program_file(
        &self,
        sweep: &str,
        trial: u64,
        path: &str,
    ) -> Result<Option<Vec<u8>>, EngineError> {
        self.with_sweep(sweep, |_| ())?;
        let (id, path) = (sweep.to_string(), path.to_string());
        Ok(self
            .inner
            .store
            .read(move |c| store::program_file(c, &id, trial, &path))
            .await?)
    }
}

/// Why `bytes` of a trial's files are more than sweep `sw` keeps, if they are.
fn over_limit(sw: &Sweep, bytes: u64) -> Option<String> {
    let max_mb = sw.spec.max_files_mb();
    (bytes > u64::from(max_mb) << 20).then(|| {
        format!(
            "files: {bytes} bytes; sweep {} keeps at most {max_mb} MiB of a trial's files (program_options.max_files_mb{})",
            sw.id,
            if sw.spec.keep_models == 0 { "; keep_models is 0" } else { "" }
        )
    })
}
