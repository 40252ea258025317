//! Leasing and fencing: which trial a worker gets (a re-queued one, the next grid point or
//! draw, or a bayes suggestion computed outside the sweep's lock), the lease that fences its
//! reports (attempt and lease id), heartbeats that renew it, and the reaper that re-queues a
//! trial whose lease expired.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use tokio::sync::oneshot;

use super::gang::Joiner;
use super::suggest::{Ask, InFlight};
use super::trial::Member;
use super::{
    lock, now, random_id, Attempt, Beat, Cell, Engine, EngineError, GangPlace, Lease, Params,
    Pending, Rendezvous, Sweep, SweepState, Trial, TrialState,
};
use crate::config::{Goal, Trainer};
use crate::search;
use crate::store::{self, AttemptRow, TrialRow};

/// A sweep row change to persist: (id, state, next trial, updated at).
type SweepUpdate = (String, String, u64, f64);

/// The rows a lease writes: the trial's, its attempt's (a trial's second attempt or later), the
/// sweep's.
struct LeaseRows {
    trial: TrialRow,
    attempt: Option<AttemptRow>,
    sweep: SweepUpdate,
}

/// What a sweep has for a worker that asks for work.
// One at a time, on the stack for the moment of a lease: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Take {
    /// A lease, the rows to write, and (a gang) the other members' leases to hand them once
    /// the rows are committed.
    Lease(Lease, LeaseRows, Vec<(oneshot::Sender<Lease>, Lease)>),
    /// Its next trial needs a bayes suggestion first (the seats it will be leased to).
    Suggest(Ask, Vec<Seat>),
    /// Another lease is computing its next trial's suggestion.
    Busy,
    /// A gang is forming in this sweep: wait for it (the key leaves it when the wait ends).
    Join(Cell, String, oneshot::Receiver<Lease>),
}

/// What a poll found, handled once the sweep's lock is let go.
#[allow(clippy::large_enum_variant)]
enum Found {
    Lease(Lease, Pending, Vec<(oneshot::Sender<Lease>, Lease)>),
    Suggest(Ask, Vec<Seat>),
    Join(Cell, String, oneshot::Receiver<Lease>),
}

/// One worker a trial is about to be leased to: alone, or one rank of a gang (in rank order,
/// the worker that asked last at the end).
pub(super) struct Seat {
    worker: String,
    at: Option<Rendezvous>,
    claim: Option<Claim>,
    /// Where a parked member's lease goes (`None`: the worker asking now).
    tx: Option<oneshot::Sender<Lease>>,
}

/// GPUs of one worker set aside for a lease being made (its trial chosen, its suggestion
/// computed); freed when dropped unless the lease took them over.
pub(super) struct Claim {
    engine: Engine,
    key: String,
    gpus: Vec<Box<str>>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.engine.inner.leases).remove(&self.key);
    }
}

/// Whether a worker that lists `trainers` runs `trainer` (an empty list: mlp and synthetic).
fn runs(trainers: &[String], trainer: &str) -> bool {
    if trainers.is_empty() {
        return matches!(trainer, "mlp" | "synthetic");
    }
    trainers.iter().any(|t| t == trainer)
}

impl Engine {
    /// What sweep `sw` (locked from `cell`) has for `worker` (which runs `trainers`): a queued
    /// trial, a new one, or a bayes suggestion to compute first; `None` if nothing now.
    #[allow(clippy::too_many_arguments)]
    fn take(
        &self,
        cell: &Cell,
        sw: &mut Sweep,
        worker: &str,
        trainers: &[String],
        at: Option<&Rendezvous>,
        t_poll: f64,
    ) -> Option<Take> {
        if sw.state != SweepState::Running {
            // Workers waiting for a gang here go back to asking.
            sw.forming.clear();
            return None;
        }
        if !runs(trainers, sw.spec.trainer.name()) {
            sw.refused_at = Some(t_poll);
            return None;
        }
        let need = sw.spec.gpus_per_trial();
        let claim = if need == 0 {
            None
        } else {
            match self.claim_gpus(worker, need) {
                Ok(c) => Some(c),
                Err(has) => {
                    sw.short_of_gpus(t_poll, has);
                    return None;
                }
            }
        };
        let nodes = sw.spec.nodes_per_trial() as usize;
        let mut seats = Vec::with_capacity(nodes);
        if nodes > 1 {
            // Only workers that can be reached by the others take part, each once.
            let at = at?;
            if sw.queue.is_empty() && !sw.can_create() {
                return None;
            }
            sw.forming.retain(|j| !j.tx.is_closed());
            if sw.forming.iter().any(|j| j.worker == worker) {
                return None;
            }
            sw.polled_at = Some(t_poll);
            if sw.forming.len() + 1 < nodes {
                let (tx, rx) = oneshot::channel();
                let key = random_id(8);
                sw.forming.push(Joiner {
                    key: key.clone(),
                    worker: worker.to_string(),
                    at: at.clone(),
                    claim,
                    tx,
                });
                return Some(Take::Join(Arc::clone(cell), key, rx));
            }
            seats.extend(sw.forming.drain(..).map(|j| Seat {
                worker: j.worker,
                at: Some(j.at),
                claim: j.claim,
                tx: Some(j.tx),
            }));
        }
        seats.push(Seat {
            worker: worker.to_string(),
            at: at.cloned(),
            claim,
            tx: None,
        });
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
            return Some(Take::Suggest(
                Ask {
                    cell: Arc::clone(cell),
                    n: sw.next_trial,
                    spec: sw.spec.clone(),
                    history,
                },
                seats,
            ));
        } else {
            let n = sw.next_trial;
            let params = search::suggest(&sw.spec, n)?;
            sw.next_trial += 1;
            let params = Params::new(params, &mut sw.names);
            sw.insert(Trial::new(n, params));
            n
        };
        let (lease, rows, others) = self.lease_trial(sw, number, seats)?;
        Some(Take::Lease(lease, rows, others))
    }

    /// Claims `n` of `worker`'s GPUs that no lease holds; `Err(how many it registered)` when
    /// fewer than `n` are free.
    fn claim_gpus(&self, worker: &str, n: u32) -> Result<Claim, u32> {
        let registered = lock(&self.inner.workers)
            .get(worker)
            .map(|w| w.gpus.clone())
            .unwrap_or_default();
        let key = format!("claim-{}", random_id(8));
        let gpus = lock(&self.inner.leases)
            .claim(&key, worker, &registered, n)
            .ok_or(registered.len() as u32)?;
        Ok(Claim {
            engine: self.clone(),
            key,
            gpus,
        })
    }

    /// Leases trial `number` of `sw` to `seats` (one worker, or a gang in rank order; the last
    /// is the worker asking now): its lease, the rows to write, and the other members' leases
    /// with where each goes.
    #[allow(clippy::type_complexity)]
    fn lease_trial(
        &self,
        sw: &mut Sweep,
        number: u64,
        seats: Vec<Seat>,
    ) -> Option<(Lease, LeaseRows, Vec<(oneshot::Sender<Lease>, Lease)>)> {
        let ttl = self.inner.opts.lease_ttl.as_secs_f64();
        let t = now();
        let seed = search::trial_seed(sw.spec.seed, number);
        let trainer = match &sw.spec.trainer {
            Trainer::Program(p) => ("program".to_string(), p.options(sw.spec.max_files_mb())),
            Trainer::Agent => (
                "agent".to_string(),
                json!({
                    "seed": seed,
                    "max_files_mb": sw.spec.max_files_mb(),
                    "max_media_mb": crate::config::program::DEFAULT_MAX_MEDIA_MB.min(sw.spec.max_files_mb()),
                }),
            ),
            Trainer::Mlp {
                train_samples,
                checkpoints,
            } => (
                "mlp".to_string(),
                json!({"seed": seed, "train_samples": train_samples, "checkpoints": checkpoints}),
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
        let ids: Vec<String> = seats.iter().map(|_| random_id(8)).collect();
        let gpus: Vec<Vec<Box<str>>> = seats
            .iter()
            .map(|s| s.claim.as_ref().map(|c| c.gpus.clone()).unwrap_or_default())
            .collect();
        let size = seats.len() as u32;
        let master = seats[0]
            .at
            .clone()
            .filter(|_| size > 1)
            .map(|at| (at.addr, at.port));
        let members: Vec<Member> = seats
            .iter()
            .zip(&ids)
            .skip(1)
            .map(|(s, id)| Member {
                lease_id: id.as_str().into(),
                worker: sw.names.get(&s.worker),
                expires: t + ttl,
                done: false,
                output: None,
            })
            .collect();
        let worker_name = sw.names.get(&seats[0].worker);
        let sweep_id = sw.id.clone();
        let (attempt, params, resume, attempt_row) = sw.edit(number, |trial| {
            trial.state = TrialState::Running;
            trial.attempt += 1;
            trial.lease(Some(&ids[0]), t + ttl);
            trial.worker = Some(worker_name);
            trial.set_gpus(gpus[0].clone());
            trial.set_gang(members);
            trial.started_at = Some(t);
            // A reason from an earlier attempt (an expired lease) does not describe this one.
            trial.error = None;
            // A trial's first attempt is its row; later ones are recorded one by one.
            let row = (trial.attempt > 1).then(|| AttemptRow {
                resumed_from: trial.checkpoint(),
                ..trial.attempt_row(&sweep_id, None, "")
            });
            trial.set_resumed(trial.checkpoint().map(|c| c.epoch));
            (trial.attempt, trial.params.clone(), trial.checkpoint(), row)
        })?;
        let trial = sw.trial_row(number)?;
        let mut leases: Vec<(Option<oneshot::Sender<Lease>>, Lease)> = Vec::new();
        // Dropped once the table is let go (a claim frees itself through the table).
        let mut claims = Vec::new();
        {
            // The claims' GPUs pass to the leases under one hold of the table.
            let mut held = lock(&self.inner.leases);
            for (rank, (seat, (id, gpus))) in
                seats.into_iter().zip(ids.into_iter().zip(gpus)).enumerate()
            {
                if let Some(c) = seat.claim {
                    held.remove(&c.key);
                    claims.push(c);
                }
                held.insert(
                    id.clone(),
                    sw.id.clone(),
                    number,
                    &seat.worker,
                    gpus.clone(),
                );
                leases.push((
                    seat.tx,
                    Lease {
                        sweep_id: sw.id.clone(),
                        trial: number,
                        attempt,
                        lease_id: id,
                        params: params.clone(),
                        trainer: trainer.clone(),
                        metric: metric.clone(),
                        resume,
                        gpus: gpus.iter().map(|g| g.to_string()).collect(),
                        gang: master.as_ref().map(|(addr, port)| GangPlace {
                            rank: rank as u32,
                            size,
                            master_addr: addr.clone(),
                            master_port: *port,
                        }),
                    },
                ));
            }
        }
        drop(claims);
        let (_, mine) = leases.pop()?;
        let others = leases
            .into_iter()
            .filter_map(|(tx, l)| tx.map(|tx| (tx, l)))
            .collect();
        let rows = LeaseRows {
            trial,
            attempt: attempt_row,
            sweep: sweep_update,
        };
        Some((mine, rows, others))
    }

    /// Queues a lease's writes.
    fn write_lease(&self, rows: LeaseRows) -> Pending {
        Box::pin(self.inner.store.submit(move |tx| {
            let (id, state, next, t) = &rows.sweep;
            store::update_sweep(tx, id, state, *next, *t)?;
            if let Some(a) = &rows.attempt {
                store::start_attempt(tx, a)?;
            }
            store::upsert_trial(tx, &rows.trial)
        }))
    }

    /// Computes a bayes suggestion under no lock (on the suggestion threads), then adds it to
    /// its sweep as a new trial leased to `worker` — unless the sweep moved on meanwhile.
    #[allow(clippy::type_complexity)]
    async fn suggest(
        &self,
        ask: Ask,
        seats: Vec<Seat>,
    ) -> Result<Option<(Lease, Pending, Vec<(oneshot::Sender<Lease>, Lease)>)>, EngineError> {
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
            .lease_trial(&mut sw, n, seats)
            .map(|(lease, rows, others)| (lease, self.write_lease(rows), others)))
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
        self.lease_at(worker, trainers, only, wait, None).await
    }

    /// [`Engine::lease`] for a worker that can take part in gangs, reached at `at`.
    pub async fn lease_at(
        &self,
        worker: &str,
        trainers: &[String],
        only: Option<&str>,
        wait: Duration,
        at: Option<&Rendezvous>,
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
                    match self.take(cell, &mut sw, worker, trainers, at, t_poll) {
                        Some(Take::Lease(lease, rows, others)) => {
                            found = Some(Found::Lease(lease, self.write_lease(rows), others));
                            break;
                        }
                        Some(Take::Suggest(ask, seats)) => {
                            found = Some(Found::Suggest(ask, seats));
                            break;
                        }
                        Some(Take::Join(cell, key, rx)) => {
                            found = Some(Found::Join(cell, key, rx));
                            break;
                        }
                        Some(Take::Busy) => busy = true,
                        None => {}
                    }
                }
                found
            };
            let found = match found {
                Some(Found::Lease(l, fut, others)) => Some((l, fut, others)),
                Some(Found::Suggest(ask, seats)) => self.suggest(ask, seats).await?,
                Some(Found::Join(cell, key, rx)) => {
                    return Ok(self.wait_for_gang(cell, key, rx, deadline).await);
                }
                None => None,
            };
            if let Some((lease, fut, others)) = found {
                self.commit(fut).await?;
                // The whole gang's leases are committed: each member gets its own.
                for (tx, l) in others {
                    self.inner.counters.leases_granted.inc();
                    let _ = tx.send(l);
                }
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

    /// Waits, parked in a forming gang, until the gang's leases are committed (this worker's
    /// comes), `deadline` or the shutdown; then leaves the gang, unless it formed meanwhile.
    async fn wait_for_gang(
        &self,
        cell: Cell,
        key: String,
        mut rx: oneshot::Receiver<Lease>,
        deadline: tokio::time::Instant,
    ) -> Option<Lease> {
        let waited = tokio::select! {
            r = tokio::time::timeout_at(deadline, &mut rx) => r.ok(),
            () = self.closing() => None,
        };
        match waited {
            Some(got) => got.ok(),
            None => {
                let left = {
                    let mut sw = lock(&cell);
                    let before = sw.forming.len();
                    sw.forming.retain(|j| j.key != key);
                    sw.forming.len() < before
                };
                if left {
                    None
                } else {
                    // The gang formed as the wait ran out: its lease comes once committed.
                    rx.await.ok()
                }
            }
        }
    }

    /// Whether the attempt `a` holds its trial's lease now; why not otherwise (an unknown
    /// sweep included). Uploads are checked by it before any memory is set aside for them.
    pub fn holds_lease(&self, a: &Attempt<'_>) -> Result<(), String> {
        let cell = self
            .cell(a.sweep)
            .ok_or_else(|| format!("no sweep {:?}", a.sweep))?;
        let sw = lock(&cell);
        Self::check_lease(&sw, a.trial, a.attempt, a.lease_id)
    }

    /// Whether `lease_id` holds the current attempt of `trial`; why not otherwise.
    pub(super) fn check_lease(
        sw: &Sweep,
        trial: u64,
        attempt: u32,
        lease_id: &str,
    ) -> Result<(), String> {
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

    /// What the Bayesian model sees of each trial, in trial order: per objective, the
    /// goal-signed final value (finished or stopped), an imputed one (failed); `None` for a
    /// pending trial (running or queued) or one with an objective the model cannot fill yet.
    /// With one objective, `bayes.learn_from_rungs` and a rule that judges at rungs, the values
    /// at the highest rung enough trials reached (`search::budget`).
    fn model_losses(sw: &Sweep) -> Vec<Option<Vec<f64>>> {
        let columns: Vec<Vec<Option<f64>>> = sw
            .spec
            .objectives()
            .iter()
            .map(|m| Self::model_column(sw, m))
            .collect();
        (0..sw.len())
            .map(|i| {
                columns
                    .iter()
                    .map(|c| c.get(i).copied().flatten())
                    .collect()
            })
            .collect()
    }

    /// One objective's column of [`Self::model_losses`].
    fn model_column(sw: &Sweep, m: &crate::config::Metric) -> Vec<Option<f64>> {
        use search::budget::{self, Ended, Outcome};
        let sign = if m.goal == Goal::Maximize { -1.0 } else { 1.0 };
        let ended: Vec<Ended> = sw
            .trials()
            .map(|t| Ended {
                outcome: match t.state {
                    TrialState::Finished => Outcome::Finished,
                    TrialState::Stopped => Outcome::Stopped,
                    TrialState::Failed => Outcome::Failed,
                    TrialState::Running | TrialState::Queued => Outcome::Pending,
                },
                value: t.final_value(&m.name).map(|v| sign * v),
            })
            .collect();
        let finals = budget::final_losses(&ended, m.impute);
        let Some(rungs) = sw.rungs().filter(|_| !sw.spec.multi_objective()) else {
            return finals;
        };
        let signed: Vec<Vec<f64>> = sw
            .trials()
            .map(|t| rungs.at(t.number).iter().map(|v| sign * v).collect())
            .collect();
        let at: Vec<&[f64]> = signed.iter().map(Vec::as_slice).collect();
        let min_count = sw.spec.bayes.startup_trials.max(1) as usize;
        budget::losses(&ended, &finals, rungs.steps(), &at, min_count).0
    }

    /// Extends the given leases; says which the worker must drop or hand back.
    /// `leaving`: the worker is exiting cleanly; it is no longer counted as connected.
    pub fn heartbeat(&self, worker: &str, lease_ids: &[String], leaving: bool) -> Beat {
        let ttl = self.inner.opts.lease_ttl.as_secs_f64();
        self.touch(worker);
        if leaving {
            if let Some(w) = lock(&self.inner.workers).get_mut(worker) {
                w.last_seen = 0.0;
            }
        }
        let held: Vec<Option<(String, u64)>> = {
            let leases = lock(&self.inner.leases);
            lease_ids.iter().map(|l| leases.get(l)).collect()
        };
        let mut beat = Beat::default();
        for (l, at) in lease_ids.iter().zip(held) {
            let Some(cell) = at.as_ref().and_then(|(s, _)| self.cell(s)) else {
                beat.drop.push(l.clone());
                continue;
            };
            let n = at.map_or(0, |(_, n)| n);
            let mut sw = lock(&cell);
            let hand_back = sw.hand_back;
            let held = sw.edit(n, |t| {
                if t.state != TrialState::Running {
                    return false;
                }
                if t.lease_id() == Some(l) {
                    t.lease(None, now() + ttl);
                    return true;
                }
                // A gang's member renews its own lease.
                match t.member_mut(l) {
                    Some((_, m)) if !m.done => {
                        m.expires = now() + ttl;
                        true
                    }
                    _ => false,
                }
            });
            if held != Some(true) {
                beat.drop.push(l.clone());
            } else if hand_back {
                beat.hand_back.push(l.clone());
            }
        }
        beat
    }

    /// Re-queues (or fails, after `max_attempts`) every trial whose lease has expired.
    pub async fn reap(&self) -> Result<usize, EngineError> {
        let t_now = now();
        let ttl = self.inner.opts.lease_ttl.as_secs_f64();
        let mut writes = Vec::new();
        let mut changed = Vec::new();
        // A sweep at a time: the others go on meanwhile.
        for cell in self.cells() {
            let Ok(_up) = self.up() else { break };
            let mut sw = lock(&cell);
            let mut rows = Vec::new();
            let mut ended = Vec::new();
            let mut dropped = Vec::new();
            let max = sw.spec.max_attempts;
            let mut requeued = Vec::new();
            let expired: Vec<u64> = sw
                .running()
                .filter(|n| sw.trial(*n).is_some_and(|t| t.first_expiry() <= t_now))
                .collect();
            for n in expired {
                let id = sw.id.clone();
                let row = sw.edit(n, |t| {
                    // A gang's member whose lease ran out first, else the (rank 0) worker.
                    let w = t
                        .gang()
                        .iter()
                        .enumerate()
                        .find(|(_, m)| !m.done && m.expires <= t_now)
                        .map(|(i, m)| format!("{}, rank {} of the gang", m.worker, i + 1))
                        .unwrap_or_else(|| t.worker.as_deref().unwrap_or_default().to_string());
                    let lease = t.take_lease();
                    let in_a_row = t.attempts_without_progress();
                    if in_a_row >= max {
                        t.state = TrialState::Failed;
                        t.ended_at = Some(t_now);
                        t.error = Some(if in_a_row == t.attempt {
                            format!(
                                "lease expired on attempt {} of {max} (last worker {w})",
                                t.attempt
                            )
                            .into()
                        } else {
                            format!(
                                "lease expired on attempt {} ({in_a_row} of {max} in a row without a new checkpoint; last worker {w})",
                                t.attempt
                            )
                            .into()
                        });
                    } else {
                        t.state = TrialState::Queued;
                        t.error = Some(
                            format!("lease of attempt {} expired (worker {w})", t.attempt).into(),
                        );
                    }
                    tracing::warn!(sweep = %id, trial = t.number, attempt = t.attempt, worker = %w, state = t.state.name(), "lease expired");
                    // It ended at its last sign of life (report or heartbeat), not the expiry.
                    let last_seen = (t.lease_expires() - ttl)
                        .max(t.started_at.unwrap_or(0.0))
                        .min(t_now);
                    let attempt = t.attempt_row(&id, Some(last_seen), "lease expired");
                    (lease, t.state == TrialState::Queued, attempt)
                });
                let (Some((lease, queued, attempt)), Some(row)) = (row, sw.trial_row(n)) else {
                    continue;
                };
                ended.push(attempt);
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
                    leases.remove(&l);
                }
            }
            writes.push(self.inner.store.submit(move |tx| {
                for row in &rows {
                    store::upsert_trial(tx, row)?;
                }
                for a in &ended {
                    store::end_attempt(tx, a)?;
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
            let mut forgot = std::time::Instant::now();
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
                if forgot.elapsed() >= Duration::from_secs(60) {
                    forgot = std::time::Instant::now();
                    let horizon = super::now() - super::workers::FORGET_AFTER.as_secs_f64();
                    match e.forget_workers(horizon).await {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!(workers = n, "forgot workers not heard from for a day")
                        }
                        Err(err) => tracing::error!(error = %err, "forgetting workers"),
                    }
                }
            }
        })
    }
}
