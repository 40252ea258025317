//! One sweep in memory: its trials and what is kept up to date as they change — the counts
//! by state, the ranking, the trials that ended without the metric, the running ones — so
//! that a sweep's summary, its best trial and the top of its leaderboard cost the same at a
//! million trials as at ten. Every change to a trial goes through [`Sweep::edit`], which takes
//! the trial out of those indexes and puts it back as it is after the change.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{json, Value};

use crate::config::{Goal, SweepSpec, Trainer};
use crate::store::{SweepRow, TrialRow};

use super::now;

/// Sweep states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepState {
    /// Handing out trials.
    Running,
    /// Not handing out trials; running ones go on.
    Paused,
    /// Stopped by a person; running trials are told to stop.
    Stopped,
    /// Every trial is done.
    Finished,
}

impl SweepState {
    /// Stored name.
    pub fn name(self) -> &'static str {
        match self {
            SweepState::Running => "running",
            SweepState::Paused => "paused",
            SweepState::Stopped => "stopped",
            SweepState::Finished => "finished",
        }
    }
    pub(super) fn parse(s: &str) -> Self {
        match s {
            "paused" => SweepState::Paused,
            "stopped" => SweepState::Stopped,
            "finished" => SweepState::Finished,
            _ => SweepState::Running,
        }
    }
    /// Whether the sweep will hand out no more work.
    pub fn is_terminal(self) -> bool {
        matches!(self, SweepState::Stopped | SweepState::Finished)
    }
}

/// Trial states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialState {
    /// Waiting for a worker (re-queued after a lost or released attempt).
    Queued,
    /// Leased to a worker.
    Running,
    /// Trained every epoch.
    Finished,
    /// Stopped early (early termination or the sweep was stopped); metrics are valid.
    Stopped,
    /// Diverged, errored, or ran out of attempts; `error` says why.
    Failed,
}

impl TrialState {
    /// Stored name.
    pub fn name(self) -> &'static str {
        match self {
            TrialState::Queued => "queued",
            TrialState::Running => "running",
            TrialState::Finished => "finished",
            TrialState::Stopped => "stopped",
            TrialState::Failed => "failed",
        }
    }
    pub(super) fn parse(s: &str) -> Self {
        match s {
            "queued" => TrialState::Queued,
            "running" => TrialState::Running,
            "finished" => TrialState::Finished,
            "stopped" => TrialState::Stopped,
            _ => TrialState::Failed,
        }
    }
    /// Whether the trial is done.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TrialState::Finished | TrialState::Stopped | TrialState::Failed
        )
    }
}

/// One trial in memory.
#[derive(Debug, Clone)]
pub struct Trial {
    /// 1-based number within the sweep; never reused.
    pub number: u64,
    /// Parameters.
    pub params: Value,
    /// State.
    pub state: TrialState,
    /// Current attempt, 1-based.
    pub attempt: u32,
    /// The attempt whose Complete was accepted (for idempotent Complete).
    pub completed_attempt: Option<u32>,
    /// Fencing token of the current attempt.
    pub lease_id: Option<String>,
    /// When the current lease expires (Unix seconds).
    pub lease_expires: f64,
    /// Worker of the current or last attempt.
    pub worker: Option<String>,
    /// When the current attempt started.
    pub started_at: Option<f64>,
    /// When the trial ended.
    pub ended_at: Option<f64>,
    /// Seconds of the accepted attempt.
    pub duration: f64,
    /// Per-epoch metrics: step → name → value.
    pub curve: BTreeMap<u32, BTreeMap<String, f64>>,
    /// Final metrics (last epoch's values overlaid with the Complete message's).
    pub metrics: BTreeMap<String, f64>,
    /// Class names and row-major counts.
    pub confusion: Option<(Vec<String>, Vec<u64>)>,
    /// Why it failed, or why it was stopped; for a finished program trial, a note such as
    /// the metric it never logged.
    pub error: Option<String>,
    /// The tail of a program trial's output.
    pub output: Option<String>,
}

impl Trial {
    /// A new trial with `params`, waiting for its first attempt.
    pub(super) fn new(number: u64, params: Value) -> Trial {
        Trial {
            number,
            params,
            state: TrialState::Queued,
            attempt: 0,
            completed_attempt: None,
            lease_id: None,
            lease_expires: 0.0,
            worker: None,
            started_at: None,
            ended_at: None,
            duration: 0.0,
            curve: BTreeMap::new(),
            metrics: BTreeMap::new(),
            confusion: None,
            error: None,
            output: None,
        }
    }

    pub(super) fn row(&self, sweep: &str) -> TrialRow {
        TrialRow {
            sweep_id: sweep.to_string(),
            trial: self.number,
            params: self.params.to_string(),
            state: self.state.name().into(),
            attempt: self.attempt,
            completed_attempt: self.completed_attempt,
            lease_id: self.lease_id.clone(),
            worker: self.worker.clone(),
            started_at: self.started_at,
            ended_at: self.ended_at,
            duration: self.duration,
            metrics: serde_json::to_string(&self.metrics).unwrap_or_else(|_| "{}".into()),
            confusion: self
                .confusion
                .as_ref()
                .map(|(l, c)| json!({"labels": l, "counts": c}).to_string()),
            error: self.error.clone(),
            output: self.output.clone(),
        }
    }

    /// Best value of `metric` over the epochs, and its step.
    pub fn best(&self, metric: &str, goal: Goal) -> Option<(f64, u32)> {
        let mut best: Option<(f64, u32)> = None;
        for (step, m) in &self.curve {
            if let Some(&v) = m.get(metric) {
                if v.is_finite() && best.is_none_or(|(b, _)| goal.better(v, b)) {
                    best = Some((v, *step));
                }
            }
        }
        if best.is_none() {
            if let Some(&v) = self.metrics.get(metric) {
                if v.is_finite() {
                    best = Some((v, self.curve.keys().last().copied().unwrap_or(0)));
                }
            }
        }
        best
    }

    /// The value the leaderboard ranks by: the final value of the metric (W&B's summary).
    pub fn final_value(&self, metric: &str) -> Option<f64> {
        self.metrics.get(metric).copied().filter(|v| v.is_finite())
    }
}

/// Trials of a sweep by state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Waiting for a worker.
    pub queued: u64,
    /// Leased.
    pub running: u64,
    /// Trained every epoch.
    pub finished: u64,
    /// Failed.
    pub failed: u64,
    /// Stopped early.
    pub stopped: u64,
}

impl Counts {
    fn slot(&mut self, s: TrialState) -> &mut u64 {
        match s {
            TrialState::Queued => &mut self.queued,
            TrialState::Running => &mut self.running,
            TrialState::Finished => &mut self.finished,
            TrialState::Failed => &mut self.failed,
            TrialState::Stopped => &mut self.stopped,
        }
    }
}

/// A ranked trial's place: its final value signed so that lower is better, then its number.
#[derive(Debug, Clone, Copy)]
struct RankKey(f64, u64);

impl PartialEq for RankKey {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o).is_eq()
    }
}
impl Eq for RankKey {}
impl PartialOrd for RankKey {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for RankKey {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

/// Where a trial stands in the sweep's indexes.
enum Place {
    /// Ended with the metric: on the leaderboard.
    Ranked(RankKey),
    /// Finished or stopped without the metric.
    Unranked,
    /// Queued, running or failed.
    Elsewhere,
}

/// What is derived from the trials, kept as they change.
#[derive(Debug, Default)]
struct Index {
    counts: Counts,
    ranking: BTreeSet<RankKey>,
    unranked: BTreeSet<u64>,
    running: BTreeSet<u64>,
}

/// One sweep in memory.
#[derive(Debug)]
pub struct Sweep {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// Validated config.
    pub spec: SweepSpec,
    /// The config as JSON text, written once.
    pub config_json: String,
    /// State.
    pub state: SweepState,
    /// Unix seconds.
    pub created_at: f64,
    /// Unix seconds.
    pub updated_at: f64,
    /// Next trial number to create.
    pub next_trial: u64,
    /// Trials by number.
    trials: BTreeMap<u64, Trial>,
    /// Re-queued trials, oldest first.
    pub(super) queue: VecDeque<u64>,
    /// Last time a worker asked for work that it could not take from this sweep (it does not
    /// run the sweep's trainer), Unix seconds.
    pub refused_at: Option<f64>,
    /// Last time a worker that runs this sweep's trainer asked for work, Unix seconds.
    pub polled_at: Option<f64>,
    index: Index,
}

impl Sweep {
    /// A sweep with no trials.
    pub(super) fn new(
        id: String,
        name: Option<String>,
        spec: SweepSpec,
        state: SweepState,
        created_at: f64,
        next_trial: u64,
    ) -> Sweep {
        Sweep {
            id,
            name,
            config_json: spec.raw.to_string(),
            spec,
            state,
            created_at,
            updated_at: created_at,
            next_trial,
            trials: BTreeMap::new(),
            queue: VecDeque::new(),
            refused_at: None,
            polled_at: None,
            index: Index::default(),
        }
    }

    pub(super) fn row(&self) -> SweepRow {
        SweepRow {
            id: self.id.clone(),
            name: self.name.clone(),
            config: self.config_json.clone(),
            state: self.state.name().into(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            next_trial: self.next_trial,
        }
    }

    pub(super) fn can_create(&self) -> bool {
        self.spec.total().is_none_or(|t| self.next_trial <= t)
    }

    /// Every trial, by number.
    pub fn trials(&self) -> &BTreeMap<u64, Trial> {
        &self.trials
    }

    /// Trial `n`.
    pub fn trial(&self, n: u64) -> Option<&Trial> {
        self.trials.get(&n)
    }

    fn place(&self, t: &Trial) -> Place {
        place(&self.spec, t)
    }

    /// Adds a trial (a new one, or one read back from the store).
    pub(super) fn insert(&mut self, t: Trial) {
        if let Some(old) = self.trials.remove(&t.number) {
            self.index.remove(&old, self.place(&old));
        }
        self.index.add(&t, self.place(&t));
        self.trials.insert(t.number, t);
    }

    /// Changes trial `n` with `f`, keeping the indexes true; `None` if there is no such trial.
    pub(super) fn edit<R>(&mut self, n: u64, f: impl FnOnce(&mut Trial) -> R) -> Option<R> {
        let t = self.trials.get_mut(&n)?;
        self.index.remove(t, place(&self.spec, t));
        let r = f(t);
        self.index.add(t, place(&self.spec, t));
        Some(r)
    }

    /// Counts of trials by state.
    pub fn counts(&self) -> Counts {
        self.index.counts
    }

    /// Numbers of the running trials, ascending.
    pub fn running(&self) -> impl Iterator<Item = u64> + '_ {
        self.index.running.iter().copied()
    }

    /// Ranked trials (finished or stopped with the metric) best first with their rank, then
    /// the rest by number with rank 0.
    pub fn ranked(&self) -> impl Iterator<Item = (u32, &Trial)> + '_ {
        let ranked = self
            .index
            .ranking
            .iter()
            .enumerate()
            .filter_map(|(i, k)| self.trials.get(&k.1).map(|t| (i as u32 + 1, t)));
        let rest = self
            .trials
            .values()
            .filter(|t| !matches!(self.place(t), Place::Ranked(_)))
            .map(|t| (0, t));
        ranked.chain(rest)
    }

    /// How many trials are ranked.
    pub fn ranked_len(&self) -> usize {
        self.index.ranking.len()
    }

    /// Trial `n`'s rank (1 is the best), 0 if it is not ranked. Walks the ranking down to it.
    pub fn rank_of(&self, n: u64) -> u32 {
        match self.trials.get(&n).map(|t| self.place(t)) {
            Some(Place::Ranked(k)) => self.index.ranking.range(..k).count() as u32 + 1,
            _ => 0,
        }
    }

    /// The best ranked trial.
    pub fn best(&self) -> Option<&Trial> {
        self.index
            .ranking
            .first()
            .and_then(|k| self.trials.get(&k.1))
    }

    /// What a person should know: the config's notices, trials that never logged the metric,
    /// and work that no connected worker can take.
    pub fn notices(&self) -> Vec<String> {
        let mut out = self.spec.notices.clone();
        let metric = &self.spec.metric.name;
        if !metric.is_empty() {
            if let Some(first) = self.index.unranked.first().and_then(|n| self.trials.get(n)) {
                let n = self.index.unranked.len();
                let why = first
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("metric {metric:?} was never reported"));
                out.push(format!(
                    "{n} trial{} ended without the metric {metric:?} and {} not ranked (trial {}: {why})",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "is" } else { "are" },
                    first.number
                ));
            }
        }
        let waiting = self.state == SweepState::Running
            && (self.can_create() || !self.queue.is_empty())
            && self.index.counts.running == 0;
        let t = now();
        // Idle workers poll at least every max_lease_wait (10 s by default).
        let recent = |at: Option<f64>| at.is_some_and(|a| t - a <= 30.0);
        if waiting && recent(self.refused_at) && !recent(self.polled_at) {
            out.push(match self.spec.trainer {
                Trainer::Program(_) => "waiting: no connected worker runs programs; start workers with --allow-programs (see docs/PROGRAMS.md)".to_string(),
                Trainer::Agent => format!("waiting for an agent: wandb.agent(\"{}\", function=…) in Python, or worker --sweep {} --program FILE (see docs/PROGRAMS.md)", self.id, self.id),
                ref t => format!("waiting: no connected worker runs the {} trainer", t.name()),
            });
        }
        out
    }

    /// Marks the sweep finished when nothing is left to create, queued or running.
    pub(super) fn maybe_finish(&mut self) -> bool {
        let c = self.index.counts;
        if self.state == SweepState::Running
            && !self.can_create()
            && self.queue.is_empty()
            && c.queued == 0
            && c.running == 0
        {
            self.state = SweepState::Finished;
            self.updated_at = now();
            return true;
        }
        false
    }
}

fn place(spec: &SweepSpec, t: &Trial) -> Place {
    if !matches!(t.state, TrialState::Finished | TrialState::Stopped) {
        return Place::Elsewhere;
    }
    match t.final_value(&spec.metric.name) {
        Some(v) => Place::Ranked(RankKey(
            if spec.metric.goal == Goal::Maximize {
                -v
            } else {
                v
            },
            t.number,
        )),
        None => Place::Unranked,
    }
}

impl Index {
    fn add(&mut self, t: &Trial, p: Place) {
        *self.counts.slot(t.state) += 1;
        if t.state == TrialState::Running {
            self.running.insert(t.number);
        }
        match p {
            Place::Ranked(k) => {
                self.ranking.insert(k);
            }
            Place::Unranked => {
                self.unranked.insert(t.number);
            }
            Place::Elsewhere => {}
        }
    }

    fn remove(&mut self, t: &Trial, p: Place) {
        let c = self.counts.slot(t.state);
        *c = c.saturating_sub(1);
        self.running.remove(&t.number);
        match p {
            Place::Ranked(k) => {
                self.ranking.remove(&k);
            }
            Place::Unranked => {
                self.unranked.remove(&t.number);
            }
            Place::Elsewhere => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn sweep(goal: &str) -> Sweep {
        let spec = SweepSpec::parse(&format!(
            "method: random\nmetric: {{name: loss, goal: {goal}}}\ntrainer: synthetic\nparameters:\n  x: {{min: 0.0, max: 1.0}}\n"
        ))
        .unwrap();
        Sweep::new("s".into(), None, spec, SweepState::Running, 0.0, 1)
    }

    fn trial(n: u64) -> Trial {
        Trial::new(n, json!({"x": n}))
    }

    /// The ranking as the leaderboard defined it before it was kept incrementally: a sort of
    /// every ended trial with the metric, best first, ties by number; then the rest by number.
    fn ranked_by_sorting(s: &Sweep) -> Vec<(u32, u64)> {
        let m = &s.spec.metric;
        let mut ranked: Vec<(&Trial, f64)> = s
            .trials()
            .values()
            .filter(|t| matches!(t.state, TrialState::Finished | TrialState::Stopped))
            .filter_map(|t| t.final_value(&m.name).map(|v| (t, v)))
            .collect();
        ranked.sort_by(|a, b| {
            let o = a.1.total_cmp(&b.1);
            let o = if m.goal == Goal::Maximize {
                o.reverse()
            } else {
                o
            };
            o.then(a.0.number.cmp(&b.0.number))
        });
        let mut out: Vec<(u32, u64)> = ranked
            .iter()
            .enumerate()
            .map(|(i, (t, _))| (i as u32 + 1, t.number))
            .collect();
        let ids: BTreeSet<u64> = out.iter().map(|x| x.1).collect();
        out.extend(
            s.trials()
                .keys()
                .filter(|n| !ids.contains(n))
                .map(|n| (0, *n)),
        );
        out
    }

    #[test]
    fn the_kept_indexes_agree_with_counting_and_sorting_after_any_changes() {
        for goal in ["minimize", "maximize"] {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let mut s = sweep(goal);
            for n in 1..=60 {
                s.insert(trial(n));
            }
            let states = [
                TrialState::Queued,
                TrialState::Running,
                TrialState::Finished,
                TrialState::Stopped,
                TrialState::Failed,
            ];
            for step in 0..3000 {
                let n = rng.random_range(1..=60u64);
                let state = states[rng.random_range(0..states.len())];
                // Few distinct values, so that ties (and -0.0 against 0.0) occur.
                let v = [0.0, -0.0, 0.5, 1.0, 2.5, f64::NAN][rng.random_range(0..6)];
                let drop = rng.random_range(0..5) == 0;
                s.edit(n, |t| {
                    t.state = state;
                    if drop {
                        t.metrics.remove("loss");
                    } else {
                        t.metrics.insert("loss".into(), v);
                    }
                })
                .unwrap();
                if step % 50 == 0 {
                    // Replacing a trial keeps the indexes too.
                    let mut t = s.trial(n).unwrap().clone();
                    t.metrics.insert("loss".into(), 0.25);
                    s.insert(t);
                }
                let got: Vec<(u32, u64)> = s.ranked().map(|(r, t)| (r, t.number)).collect();
                assert_eq!(got, ranked_by_sorting(&s), "{goal}, step {step}");
                let mut c = Counts::default();
                for t in s.trials().values() {
                    *c.slot(t.state) += 1;
                }
                assert_eq!(s.counts(), c);
                let running: Vec<u64> = s
                    .trials()
                    .values()
                    .filter(|t| t.state == TrialState::Running)
                    .map(|t| t.number)
                    .collect();
                assert_eq!(s.running().collect::<Vec<_>>(), running);
                let best = got.first().filter(|x| x.0 == 1).map(|x| x.1);
                assert_eq!(s.best().map(|t| t.number), best);
                for (rank, n) in got.iter().take(5) {
                    assert_eq!(s.rank_of(*n), *rank);
                }
                let unranked = s
                    .trials()
                    .values()
                    .filter(|t| {
                        matches!(t.state, TrialState::Finished | TrialState::Stopped)
                            && t.final_value("loss").is_none()
                    })
                    .count();
                assert_eq!(s.index.unranked.len(), unranked);
            }
        }
    }

    #[test]
    fn a_sweep_finishes_when_nothing_is_left_to_create_queued_or_running() {
        let mut s = sweep("minimize");
        s.next_trial = 3;
        s.spec.run_cap = Some(2);
        s.insert(trial(1));
        s.insert(trial(2));
        s.edit(1, |t| t.state = TrialState::Finished);
        assert!(!s.maybe_finish(), "trial 2 is queued");
        s.edit(2, |t| t.state = TrialState::Running);
        assert!(!s.maybe_finish(), "trial 2 runs");
        s.edit(2, |t| t.state = TrialState::Failed);
        assert!(s.maybe_finish());
        assert_eq!(s.state, SweepState::Finished);
    }
}
