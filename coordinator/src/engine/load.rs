//! Memory rebuilt from the store, row by row, at startup and after a failed write.
//!
//! An ended trial is read without its points, confusion matrix or output: its row holds its
//! final metrics and its best point, and it joins its sweep trimmed (a sweep with a stopping
//! rule reads the metric's points first, for the rule to count). Queued and running trials are
//! read whole. Running attempts get a fresh lease: their workers may still be training and
//! reconnect; if not, the lease expires and the trial is re-queued.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{now, EngineError, State, Sweep, SweepState, Trial, TrialState, WorkerInfo};
use crate::config::SweepSpec;
use crate::engine::trial::Params;
use crate::store::{self, Load, Need, SweepRow, TrialRow, WorkerRow};

/// Builds the engine's [`State`] from the rows the store reads back.
pub(super) struct Loader {
    st: State,
    path: String,
    ttl: f64,
    /// The first row that could not be read back; the rest is skipped.
    err: Option<EngineError>,
}

fn corrupt(
    path: &str,
    sweep: &str,
    trial: u64,
    column: &str,
    e: impl std::fmt::Display,
) -> EngineError {
    EngineError::Corrupt(format!(
        "store {path}: sweep {sweep} trial {trial}: the stored {column} is not valid JSON ({e}); \
         fix or delete that row (sqlite3 {path} \"SELECT {column} FROM trials WHERE sweep_id = '{sweep}' AND trial = {trial}\")"
    ))
}

impl Loader {
    pub(super) fn new(path: &str, ttl: f64) -> Loader {
        Loader {
            st: State::default(),
            path: path.to_string(),
            ttl,
            err: None,
        }
    }

    /// The state read, or the first row that could not be read back.
    pub(super) fn finish(self) -> Result<State, EngineError> {
        match self.err {
            Some(e) => Err(e),
            None => Ok(self.st),
        }
    }

    fn add_sweep(&mut self, s: SweepRow) -> Result<(), EngineError> {
        let spec = restore_spec(&self.path, &s)?;
        self.st.order.push(s.id.clone());
        let mut sw = Sweep::new(
            s.id.clone(),
            s.name,
            spec,
            SweepState::parse(&s.state),
            s.created_at,
            s.next_trial,
        );
        sw.updated_at = s.updated_at;
        self.st.sweeps.insert(s.id, sw);
        Ok(())
    }

    fn add_trial(
        &mut self,
        t: TrialRow,
        points: Vec<(u32, String, f64)>,
    ) -> Result<(), EngineError> {
        let path = self.path.as_str();
        let Some(sw) = self.st.sweeps.get_mut(&t.sweep_id) else {
            return Ok(());
        };
        let sweep = t.sweep_id.as_str();
        if t.trial == 0 || t.trial >= sw.next_trial {
            return Err(EngineError::Corrupt(format!(
                "store {path}: sweep {sweep} has a trial {} but hands out trials 1 to {} only; fix or delete that row",
                t.trial,
                sw.next_trial.saturating_sub(1)
            )));
        }
        let state = TrialState::parse(&t.state);
        let confusion = t
            .confusion
            .as_deref()
            .map(store::parse_confusion)
            .transpose()
            .map_err(|e| corrupt(path, sweep, t.trial, "confusion", e))?;
        let params: Value = serde_json::from_str(&t.params)
            .map_err(|e| corrupt(path, sweep, t.trial, "params", e))?;
        let stored: BTreeMap<String, f64> = serde_json::from_str(&t.metrics)
            .map_err(|e| corrupt(path, sweep, t.trial, "metrics", e))?;
        let mut trial = Trial::new(t.trial, Params::new(params, &mut sw.names));
        trial.state = state;
        trial.attempt = t.attempt;
        trial.completed_attempt = t.completed_attempt;
        if state == TrialState::Running {
            trial.lease(t.lease_id.as_deref(), now() + self.ttl);
        }
        trial.worker = t.worker.as_deref().map(|w| sw.names.get(w));
        trial.started_at = t.started_at;
        trial.ended_at = t.ended_at;
        trial.duration = t.duration;
        let (count, top) = (points.len() as u64, points.last().map_or(0, |p| p.0));
        let metric = sw.spec.metric.name.clone();
        for (step, name, value) in points {
            trial.curve.set(step, sw.names.get(&name), value);
            trial.curve.thin_over(super::trial::MEMORY_POINTS, &metric);
        }
        trial.curve.note_stored(count, top);
        if !state.is_terminal() {
            // A running trial's row is not written on every report: its metrics are its last
            // reported values (from its points) overlaid with those of its row.
            for p in trial.curve.points() {
                trial.metrics.insert(p.name.clone(), p.value);
            }
        }
        for (k, v) in stored {
            trial.metrics.insert(sw.names.get(&k), v);
        }
        trial.error = t.error.map(String::into_boxed_str);
        trial.name = t.name.map(String::into_boxed_str);
        if confusion.is_some() || t.output.is_some() {
            trial.set_files(confusion, t.output.map(String::into_boxed_str));
        }
        let gpus: Vec<Box<str>> = t
            .gpus
            .as_deref()
            .and_then(|g| serde_json::from_str::<Vec<String>>(g).ok())
            .unwrap_or_default()
            .into_iter()
            .map(String::into_boxed_str)
            .collect();
        trial.set_gpus(gpus.clone());
        let mut restored = None;
        if state.is_terminal() {
            // What the stopping rule reads of it, before the trial lets its curve go.
            if sw.judges() {
                restored = Some(super::sweep::seen(&trial, &metric));
            }
            match t.best {
                Some((v, step)) => trial.trim_to(v.map(|v| (v, step))),
                // A row written before the best point was kept: from the metric's points.
                None => trial.trim(&metric, sw.spec.metric.goal),
            }
        }
        if state == TrialState::Running {
            // A gang's other members, each with its lease (renewed from now, as rank 0's).
            let members: Vec<(String, String, bool)> = t
                .gang
                .as_deref()
                .and_then(|g| serde_json::from_str::<Vec<serde_json::Value>>(g).ok())
                .unwrap_or_default()
                .iter()
                .filter_map(|m| {
                    Some((
                        m["lease_id"].as_str()?.to_string(),
                        m["worker"].as_str()?.to_string(),
                        m["done"].as_bool().unwrap_or(false),
                    ))
                })
                .collect();
            for (l, w, done) in &members {
                if !done {
                    self.st
                        .leases
                        .insert(l.clone(), t.sweep_id.clone(), t.trial, w, Vec::new());
                }
            }
            let expires = now() + self.ttl;
            trial.set_gang(
                members
                    .into_iter()
                    .map(|(l, w, done)| super::trial::Member {
                        lease_id: l.into_boxed_str(),
                        worker: sw.names.get(&w),
                        expires,
                        done,
                        output: None,
                    })
                    .collect(),
            );
            if let Some(l) = &t.lease_id {
                self.st.leases.insert(
                    l.clone(),
                    t.sweep_id.clone(),
                    t.trial,
                    t.worker.as_deref().unwrap_or_default(),
                    gpus,
                );
            }
        }
        if state == TrialState::Queued {
            sw.queue.push_back(t.trial);
        }
        sw.insert(trial);
        if let Some(seen) = restored {
            sw.count_restored(t.trial, &seen);
        }
        Ok(())
    }
}

impl Load for Loader {
    fn sweep(&mut self, s: SweepRow) {
        if self.err.is_none() {
            self.err = self.add_sweep(s).err();
        }
    }

    fn need(&mut self, t: &TrialRow) -> Need {
        let Some(sw) = self.st.sweeps.get(&t.sweep_id) else {
            return Need::Nothing;
        };
        if self.err.is_some() {
            return Need::Nothing;
        }
        let metric = &sw.spec.metric.name;
        if !TrialState::parse(&t.state).is_terminal() {
            Need::All
        } else if (t.best.is_none() || sw.spec.stopping.is_some()) && !metric.is_empty() {
            Need::Metric(metric.clone())
        } else {
            Need::Nothing
        }
    }

    fn trial(&mut self, t: TrialRow, points: Vec<(u32, String, f64)>) {
        if self.err.is_none() {
            self.err = self.add_trial(t, points).err();
        }
    }

    fn checkpoint(&mut self, sweep: &str, trial: u64, mark: store::CheckpointMark) {
        if let Some(sw) = self.st.sweeps.get_mut(sweep) {
            sw.edit(trial, |t| t.set_checkpoint(Some(mark)));
        }
    }

    fn worker(&mut self, w: WorkerRow) {
        self.st.workers.insert(
            w.id,
            WorkerInfo {
                host: w.host,
                cores: w.cores,
                slots: w.slots,
                version: w.version,
                last_seen: 0.0,
                gpus: w.gpus,
            },
        );
    }
}

/// A stored sweep's spec: the validated spec as it was stored, not validated again (a rule a
/// later version made stricter must not stop a restart); the config validated as at submit only
/// where no spec was stored (rows written before it was kept) or it cannot be read back.
fn restore_spec(path: &str, s: &SweepRow) -> Result<SweepSpec, EngineError> {
    let stored = s.spec.as_deref().map(serde_json::from_str::<SweepSpec>);
    let corrupt = |what: String| {
        let also = match &stored {
            Some(Err(e)) => format!(" (its stored spec cannot be read either: {e})"),
            _ => String::new(),
        };
        EngineError::Corrupt(format!(
            "store {path}: stored config of sweep {}: {what}{also}",
            s.id
        ))
    };
    let raw: Value = serde_json::from_str(&s.config).map_err(|e| corrupt(e.to_string()))?;
    match stored {
        Some(Ok(spec)) => Ok(SweepSpec { raw, ..spec }),
        _ => SweepSpec::from_value(raw).map_err(|e| corrupt(e.to_string())),
    }
}
