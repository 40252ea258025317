//! What trials send back: reports (a step's metrics, and the stopping rule's decision on them)
//! and completions (the outcome, final metrics, confusion matrix and output), each checked
//! against the trial's lease before anything is kept.

use std::sync::Arc;

use super::{
    lock, now, Action, Attempt, Complete, Engine, EngineError, Outcome, Pending, Report,
    SweepState, TrialState,
};
use crate::store;
use sweep_proto::conn::{MAX_REPORT_ROWS, MAX_STEP};

/// Most classes a confusion matrix may have (its picture stays about 2,300 pixels square).
pub const MAX_CLASSES: usize = 256;

/// Longest class label, in characters.
pub const MAX_LABEL_CHARS: usize = 64;

/// Longest run name kept, in characters.
pub const MAX_RUN_NAME_CHARS: usize = 128;

/// Bytes of a program's output kept per trial.
pub const MAX_OUTPUT_BYTES: usize = 16 * 1024;

/// The last `max` bytes of `s`, cut at a character boundary.
pub(super) fn truncate_tail(s: &str, max: usize) -> String {
    let mut from = s.len().saturating_sub(max);
    while !s.is_char_boundary(from) {
        from += 1;
    }
    s[from..].to_string()
}

impl Engine {
    /// Records one epoch's metrics of a leased attempt and says whether to go on.
    pub async fn report(&self, r: Report<'_>) -> Result<Action, EngineError> {
        self.report_rows(r.attempt, vec![(r.epoch, r.metrics)])
            .await
    }

    /// Records history rows of a leased attempt — (1-based step, metrics), steps ascending:
    /// one epoch of the built-in trainer, or the rows a program logged since its last report
    /// (W&B's `_step` + 1 each) — and says whether to go on, judged once after the last row.
    pub async fn report_rows(
        &self,
        a: Attempt<'_>,
        rows: Vec<(u32, Vec<(String, f64)>)>,
    ) -> Result<Action, EngineError> {
        let Attempt {
            worker,
            sweep,
            trial,
            attempt,
            lease_id,
        } = a;
        let Some(&(first, _)) = rows.first() else {
            return Err(EngineError::Invalid(
                "a report needs at least one row".into(),
            ));
        };
        if rows.len() > MAX_REPORT_ROWS {
            return Err(EngineError::Invalid(format!(
                "{} rows in one report; at most {MAX_REPORT_ROWS}",
                rows.len()
            )));
        }
        let mut last = 0;
        for (step, metrics) in &rows {
            if *step == 0 || *step > MAX_STEP {
                return Err(EngineError::Invalid(format!(
                    "step {step} is out of range (1-based, at most {MAX_STEP})"
                )));
            }
            if *step <= last {
                return Err(EngineError::Invalid(format!(
                    "step {step} after step {last}: a report's rows go up in step"
                )));
            }
            last = *step;
            if metrics.iter().any(|(n, _)| n.is_empty() || n.len() > 128) {
                return Err(EngineError::Invalid(
                    "metric names must be 1 to 128 characters".into(),
                ));
            }
        }
        let epoch = last;
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
            let metric = sw.spec.metric.name.clone();
            let Some(started_over) = sw.edit(trial, |t| {
                t.lease(None, now() + ttl);
                t.started_over(first)
            }) else {
                break 'locked abandon("unknown trial".into());
            };
            let mut stored: Vec<(u32, Vec<(String, f64)>)> = Vec::with_capacity(rows.len());
            for (step, metrics) in rows {
                let named: Vec<(Arc<str>, f64)> = metrics
                    .into_iter()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(n, v)| (sw.names.get(&n), v))
                    .collect();
                let Some((kept, cut)) = sw.edit(trial, |t| t.take_report(step, named, &metric))
                else {
                    break;
                };
                if let Some(cut) = cut {
                    sw.note_cut(cut);
                }
                stored.push((
                    step,
                    kept.into_iter().map(|(n, v)| (n.to_string(), v)).collect(),
                ));
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
            let fut = self.inner.store.submit(move |tx| {
                if started_over {
                    // Its worker could not use the checkpoint and trained from the start.
                    store::clear_resumed(tx, &s, trial, attempt)?;
                }
                for (step, points) in &stored {
                    store::insert_points(tx, &s, trial, *step, points)?;
                }
                Ok(())
            });
            (action, Box::pin(fut))
        };
        self.commit(fut).await?;
        if !matches!(action, Action::Abandon(_)) {
            self.emit_step(sweep, Some(trial), Some(epoch));
        }
        Ok(action)
    }

    /// Names a leased attempt's run as its program did (W&B's run name; at most
    /// [`MAX_RUN_NAME_CHARS`] characters kept); a name it had already changes nothing.
    pub async fn name_run(&self, a: Attempt<'_>, name: &str) -> Result<(), EngineError> {
        let name: String = name.chars().take(MAX_RUN_NAME_CHARS).collect();
        if name.is_empty() {
            return Ok(());
        }
        let fut: Pending = {
            let _up = self.up()?;
            let Some(cell) = self.cell(a.sweep) else {
                return Ok(());
            };
            let mut sw = lock(&cell);
            if Self::check_lease(&sw, a.trial, a.attempt, a.lease_id).is_err()
                || sw.trial(a.trial).and_then(|t| t.name.as_deref()) == Some(name.as_str())
            {
                return Ok(());
            }
            sw.edit(a.trial, |t| t.name = Some(name.clone().into_boxed_str()));
            let (s, trial) = (a.sweep.to_string(), a.trial);
            Box::pin(
                self.inner
                    .store
                    .submit(move |tx| store::name_trial(tx, &s, trial, &name)),
            )
        };
        self.commit(fut).await?;
        Ok(())
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
            model,
        } = c;
        if let Some((card, weights)) = &model {
            if card.len() + weights.len() > sweep_proto::conn::MAX_MODEL_BYTES {
                return Err(EngineError::Invalid(format!(
                    "model: {} bytes; at most {} are kept",
                    card.len() + weights.len(),
                    sweep_proto::conn::MAX_MODEL_BYTES
                )));
            }
        }
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
        // A gang's member past rank 0 ends its part, or (failing) the whole attempt.
        if let Some(r) = self
            .member_complete(sweep, trial, attempt, lease_id, outcome, &error, &output)
            .await
        {
            return r;
        }
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
            // The objectives with a target (usually none).
            let targets: Vec<crate::config::Metric> = sw
                .spec
                .objectives()
                .iter()
                .filter(|m| m.target.is_some())
                .cloned()
                .collect();
            let named: Vec<(Arc<str>, f64)> = metrics
                .into_iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(n, v)| (sw.names.get(&n), v))
                .collect();
            let edited = sw.edit(trial, |t| {
                // A gang's other members' output, after rank 0's.
                let output = gang_output(t, output.clone());
                let old_lease = t.take_lease();
                // A trial's first attempt is its row, unless it was handed back.
                let attempt_row = match outcome {
                    Outcome::Released => Some(t.attempt_row(sweep, Some(t_now), "handed back")),
                    Outcome::WorkerFault => {
                        Some(t.attempt_row(sweep, Some(t_now), &format!("handed back: {error}")))
                    }
                    _ if attempt > 1 => Some(t.attempt_row(
                        sweep,
                        Some(t_now),
                        match outcome {
                            Outcome::Finished => "finished",
                            Outcome::Stopped => "stopped",
                            Outcome::Diverged => "diverged",
                            _ => "failed",
                        },
                    )),
                    _ => None,
                };
                match outcome {
                    Outcome::Released | Outcome::WorkerFault => {
                        t.state = TrialState::Queued;
                        t.worker = None;
                        t.error = Some(if outcome == Outcome::WorkerFault {
                            format!("attempt {attempt} handed back by its worker: {error}").into()
                        } else {
                            format!("attempt {attempt} handed back by its worker").into()
                        });
                        if t.attempts_without_progress() >= max_attempts.saturating_mul(4) {
                            t.state = TrialState::Failed;
                            t.error = Some(if outcome == Outcome::WorkerFault {
                                format!("handed back {} times; the last: {error}", t.attempt).into()
                            } else {
                                format!("handed back {} times", t.attempt).into()
                            });
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
                    && crate::config::targets_reached(&targets, |name| t.final_value(name));
                (
                    old_lease,
                    t.state == TrialState::Queued,
                    reached,
                    attempt_row,
                )
            });
            let (Some((old_lease, requeue, reached, attempt_row)), Some(row)) =
                (edited, sw.trial_row(trial))
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
            // Trials failing one after another (a program that cannot run, workers that cannot
            // run it) pause the sweep with the last one's reason, instead of failing them all.
            match outcome {
                Outcome::Failed | Outcome::WorkerFault => {
                    let why = if error.is_empty() {
                        "failed"
                    } else {
                        error.as_str()
                    };
                    sw.note_failure(trial, why, &output);
                }
                Outcome::Finished | Outcome::Stopped | Outcome::Diverged => {
                    sw.failures_in_a_row = 0
                }
                Outcome::Released => {}
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
            {
                let mut held = lock(&self.inner.leases);
                for l in &old_lease {
                    held.remove(l);
                }
            }
            // A trial's outputs (the built-in trainer's model, a program's files) are kept
            // while it ranks among the best `keep_models`; the ones it pushes out of them are
            // dropped in the same transaction, and so are the files of a trial that ended
            // outside them — all but what its program logged (`media/`), kept for every trial.
            let ended = !requeue && matches!(outcome, Outcome::Finished | Outcome::Stopped);
            let top: Option<Vec<u64>> = ended
                .then(|| {
                    let k = sw.spec.keep_models as usize;
                    sw.ranked()
                        .take(k)
                        .map(|(_, t)| t.number)
                        .collect::<Vec<_>>()
                })
                .filter(|top| top.contains(&trial));
            let outputs = match (&top, model) {
                (Some(top), model) if model.is_some() || sw.spec.max_files_mb() > 0 => {
                    Outputs::Keep(model, top.clone())
                }
                (None, _) if !requeue && sw.spec.max_files_mb() > 0 => Outputs::DropFiles,
                _ => Outputs::Nothing,
            };
            let sweep_id = sw.id.clone();
            let fut = self.inner.store.submit(move |tx| {
                store::upsert_trial(tx, &row)?;
                if let Some(a) = &attempt_row {
                    store::end_attempt(tx, a)?;
                }
                for r in &extra_rows {
                    store::upsert_trial(tx, r)?;
                }
                match &outputs {
                    Outputs::Keep(model, top) => {
                        if let Some((card, weights)) = model {
                            store::put_model(tx, &sweep_id, trial, card, weights)?;
                        }
                        store::keep_models(tx, &sweep_id, top)?;
                    }
                    Outputs::DropFiles => {
                        store::drop_program_files_but_media(tx, &sweep_id, trial)?
                    }
                    Outputs::Nothing => {}
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
}

/// `output` (rank 0's) followed by the tails of a gang's other members that ended before it.
fn gang_output(t: &super::Trial, output: String) -> String {
    let mut out = output;
    for (i, m) in t.gang().iter().enumerate() {
        if let Some(o) = &m.output {
            out.push_str(&format!(
                "\n--- rank {} (worker {}) ---\n{o}",
                i + 1,
                m.worker
            ));
        }
    }
    out
}

/// What a completion does with the trial's outputs.
enum Outputs {
    /// It ranks among the best `keep_models` (these): its model, if it sent one, is kept, and
    /// those of trials outside them are dropped.
    Keep(Option<(String, Vec<u8>)>, Vec<u64>),
    /// It ended outside them (or failed): its files but its media are dropped.
    DropFiles,
    /// It goes on (re-queued), or its sweep keeps no outputs.
    Nothing,
}
