//! One sweep in memory: its trials and what is kept up to date as they change — the counts
//! by state, the ranking, the trials that ended without the metric, the running ones — so
//! that a sweep's summary, its best trial and the top of its leaderboard cost the same at a
//! million trials as at ten. Every change to a trial goes through [`Sweep::edit`], which takes
//! the trial out of those indexes and puts it back as it is after the change; a trial that has
//! just ended joins the most recent ended ones, and the oldest of those is trimmed.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::OnceLock;

use crate::config::{Goal, Method, SweepSpec, Trainer};
use crate::search::budget::Rungs;
use crate::stopping::{Judge, Seen};
use crate::store::{SweepRow, TrialRow};

use super::now;
use super::trial::{Names, Trial, TrialState};

/// Ended trials kept whole (curve, output, confusion matrix) in memory, the most recent ones:
/// watchers are sent the last points of a trial that just ended from memory. Older ended
/// trials are trimmed (see [`Trial::trim`]).
const RECENT_WHOLE: usize = 1024;

/// Points the recent ended trials kept whole may hold together (about 64 MiB); past this the
/// oldest of them are trimmed even when there are fewer than [`RECENT_WHOLE`].
const RECENT_POINTS: usize = 2_000_000;

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
#[derive(Clone, Copy)]
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

/// The leaderboard of a sweep with several objectives: Pareto fronts are a property of the
/// whole ranked set, so it is computed when first asked for after a ranked trial changed
/// ([`crate::pareto::order`]: front, then crowding distance, then the first objective, then
/// number).
#[derive(Debug, Default)]
struct Pareto {
    /// Trial numbers, best first.
    order: Vec<u64>,
    /// Each ranked trial's (rank, front), both 1-based.
    at: HashMap<u64, (u32, u32)>,
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
    /// Trials by number (trial `n` at `n - 1`).
    trials: Vec<Option<Trial>>,
    /// How many of `trials` are there.
    len: usize,
    /// The names the trials use.
    pub(super) names: Names,
    /// Ended trials still whole, oldest first, with the points each holds.
    recent: VecDeque<(u64, usize)>,
    /// Points the recent trials hold together.
    recent_points: usize,
    /// Re-queued trials, oldest first.
    pub(super) queue: VecDeque<u64>,
    /// Last time a worker asked for work that it could not take from this sweep (it does not
    /// run the sweep's trainer), Unix seconds.
    pub refused_at: Option<f64>,
    /// Last time a worker that runs this sweep's trainer asked for work, Unix seconds.
    pub polled_at: Option<f64>,
    /// Last time a worker that runs its trainer asked for work without the GPUs a trial
    /// needs free, and the most GPUs such a worker registered since the 30 s before.
    gpus_short: Option<(f64, u32)>,
    /// A lease is computing the next trial's bayes suggestion (outside the lock).
    pub(super) suggesting: bool,
    /// Workers waiting for a gang to form (`program_options.nodes`), in the order they came.
    pub(super) forming: Vec<super::gang::Joiner>,
    /// Paused with hand-back: running trials are asked to hand themselves back (after a
    /// checkpoint) at their next heartbeat. Memory only: a restart in between leaves the rest
    /// running, paused as a plain pause.
    pub(super) hand_back: bool,
    /// Attempts that failed, or that a worker handed back for its own fault, since the last
    /// trial that ran to its end (`pause_after_failures`).
    pub(super) failures_in_a_row: u32,
    /// Why the sweep paused itself, with the last failure's output. Memory only: after a
    /// restart the sweep is still paused, and its trials still say why they failed.
    pub(super) paused_because: Option<String>,
    /// The first time a trial reported more than one trial keeps (memory only).
    cut: Option<String>,
    index: Index,
    /// The stopping rule and the values it judges by, kept up to date by every change.
    judge: Option<Judge>,
    /// With several objectives: the Pareto leaderboard, emptied by a change to a ranked trial.
    pareto: OnceLock<Pareto>,
    /// A bayes sweep with `learn_from_rungs` whose rule judges at rungs: each trial's values
    /// there, which the model learns from (`search::budget`).
    rungs: Option<Rungs>,
}

/// How recent a worker's call must be (seconds) to say why the sweep waits: idle workers poll
/// at least every `max_lease_wait` (10 s by default).
const WAITING_NOTICE_S: f64 = 30.0;

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
        let judge = spec
            .stopping
            .clone()
            .map(|rule| Judge::new(rule, spec.metric.goal));
        let rungs = spec
            .stopping
            .as_ref()
            .filter(|_| spec.method == Method::Bayes && spec.bayes.learn_from_rungs)
            .and_then(Rungs::of);
        Sweep {
            id,
            name,
            config_json: spec.raw.to_string(),
            spec,
            state,
            created_at,
            updated_at: created_at,
            next_trial,
            trials: Vec::new(),
            len: 0,
            names: Names::default(),
            recent: VecDeque::new(),
            recent_points: 0,
            queue: VecDeque::new(),
            refused_at: None,
            polled_at: None,
            gpus_short: None,
            suggesting: false,
            forming: Vec::new(),
            hand_back: false,
            failures_in_a_row: 0,
            paused_because: None,
            cut: None,
            index: Index::default(),
            judge,
            pareto: OnceLock::new(),
            rungs,
        }
    }

    pub(super) fn row(&self) -> SweepRow {
        SweepRow {
            id: self.id.clone(),
            name: self.name.clone(),
            config: self.config_json.clone(),
            spec: serde_json::to_string(&self.spec).ok(),
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
    pub fn trials(&self) -> impl DoubleEndedIterator<Item = &Trial> + '_ {
        self.trials.iter().flatten()
    }

    /// How many trials the sweep has.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the sweep has no trial yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Trial `n`.
    pub fn trial(&self, n: u64) -> Option<&Trial> {
        let i = usize::try_from(n.checked_sub(1)?).ok()?;
        self.trials.get(i)?.as_ref()
    }

    /// The store's row of `t`, a trial of this sweep.
    pub(super) fn row_of(&self, t: &Trial) -> TrialRow {
        t.row(&self.id, &self.spec.metric.name, self.spec.metric.goal)
    }

    /// The store's row of trial `n`.
    pub(super) fn trial_row(&self, n: u64) -> Option<TrialRow> {
        self.trial(n).map(|t| self.row_of(t))
    }

    fn place(&self, t: &Trial) -> Place {
        place(&self.spec, t)
    }

    /// Adds a trial (a new one, or one read back from the store).
    pub(super) fn insert(&mut self, t: Trial) {
        let Some(i) = t
            .number
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return;
        };
        if self.trials.len() <= i {
            self.trials.resize_with(i + 1, || None);
        }
        let old = self.trials[i].take();
        if let Some(j) = &mut self.judge {
            let metric = &self.spec.metric.name;
            let now = seen(&t, metric);
            j.update(
                &old.as_ref().map(|o| seen(o, metric)).unwrap_or_default(),
                &now,
            );
            if let Some(r) = &mut self.rungs {
                r.set(t.number, &now.history);
            }
        }
        let before = old.as_ref().map(|o| place(&self.spec, o));
        match (&old, before) {
            (Some(old), Some(place)) => self.index.remove(old, place),
            _ => self.len += 1,
        }
        let after = place(&self.spec, &t);
        self.index.add(&t, after);
        if self.spec.multi_objective() && (ranked(before) || ranked(Some(after))) {
            self.pareto = OnceLock::new();
        }
        let ended = t.state.is_terminal() && t.is_whole();
        let n = t.number;
        self.trials[i] = Some(t);
        if ended {
            self.ended(n);
        }
    }

    /// Changes trial `n` with `f`, keeping the indexes true; `None` if there is no such trial.
    pub(super) fn edit<R>(&mut self, n: u64, f: impl FnOnce(&mut Trial) -> R) -> Option<R> {
        let spec = &self.spec;
        let index = &mut self.index;
        let i = usize::try_from(n.checked_sub(1)?).ok()?;
        let t = self.trials.get_mut(i)?.as_mut()?;
        let was_ended = t.state.is_terminal();
        let place_before = place(spec, t);
        index.remove(t, place_before);
        let before = self.judge.as_ref().map(|_| seen(t, &spec.metric.name));
        let r = f(t);
        let place_after = place(spec, t);
        index.add(t, place_after);
        if spec.multi_objective() && (ranked(Some(place_before)) || ranked(Some(place_after))) {
            self.pareto = OnceLock::new();
        }
        if let (Some(j), Some(before)) = (&mut self.judge, before) {
            let after = seen(t, &spec.metric.name);
            if after != before {
                j.update(&before, &after);
                if let Some(r) = &mut self.rungs {
                    r.set(n, &after.history);
                }
            }
        }
        if !was_ended && t.state.is_terminal() {
            self.ended(n);
        }
        Some(r)
    }

    /// Trial `n` has just ended: it joins the recent ones, and the oldest of those are
    /// trimmed while there are too many or they hold too many points.
    fn ended(&mut self, n: u64) {
        let points = self.trial(n).map_or(0, |t| t.curve.points().len());
        self.recent.push_back((n, points));
        self.recent_points += points;
        let m = &self.spec.metric;
        while self.recent.len() > RECENT_WHOLE
            || (self.recent_points > RECENT_POINTS && self.recent.len() > 1)
        {
            let Some((old, points)) = self.recent.pop_front() else {
                break;
            };
            self.recent_points -= points;
            let slot = old
                .checked_sub(1)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| self.trials.get_mut(i));
            if let Some(Some(t)) = slot {
                if t.state.is_terminal() {
                    t.trim(&m.name, m.goal);
                }
            }
        }
    }

    /// Says that a trial reported more than one trial keeps (see
    /// [`super::trial::MAX_TRIAL_POINTS`]): the first time is a notice.
    pub(super) fn note_cut(&mut self, why: String) {
        if self.cut.is_none() {
            tracing::warn!(sweep = %self.id, "{why}");
            self.cut = Some(why);
        }
    }

    /// Whether the sweep has a stopping rule, which reads its trials' histories of the metric.
    pub(super) fn judges(&self) -> bool {
        self.judge.is_some()
    }

    /// Counts the metric's history `seen` of trial `n`, read back from the store and inserted
    /// already trimmed (the rule has counted its state, not its history; the model's rungs
    /// nothing).
    pub(super) fn count_restored(&mut self, n: u64, seen: &Seen) {
        if let Some(j) = &mut self.judge {
            let before = Seen {
                history: Vec::new(),
                finished: seen.finished,
            };
            j.update(&before, seen);
        }
        if let Some(r) = &mut self.rungs {
            r.set(n, &seen.history);
        }
    }

    /// Each trial's values at the rungs the model learns from (a bayes sweep whose rule
    /// judges at rungs).
    pub(super) fn rungs(&self) -> Option<&Rungs> {
        self.rungs.as_ref()
    }

    /// Whether trial `n` (running, its latest report applied) should stop under the sweep's
    /// rule, and why.
    pub(super) fn should_stop(&self, n: u64) -> Option<String> {
        let history: Vec<f64> = self
            .trial(n)?
            .curve
            .history(&self.spec.metric.name)
            .collect();
        self.judge.as_ref()?.should_stop(&history)
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
        let order: Box<dyn Iterator<Item = u64> + '_> = if self.spec.multi_objective() {
            Box::new(self.pareto().order.iter().copied())
        } else {
            Box::new(self.index.ranking.iter().map(|k| k.1))
        };
        let ranked = order
            .enumerate()
            .filter_map(|(i, n)| self.trial(n).map(|t| (i as u32 + 1, t)));
        let rest = self
            .trials()
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
        if self.spec.multi_objective() {
            return self.pareto().at.get(&n).map_or(0, |a| a.0);
        }
        match self.trial(n).map(|t| self.place(t)) {
            Some(Place::Ranked(k)) => self.index.ranking.range(..k).count() as u32 + 1,
            _ => 0,
        }
    }

    /// The best ranked trial (with several objectives, the first of the leaderboard: on the
    /// Pareto front, at one of its ends, the better on the first objective).
    pub fn best(&self) -> Option<&Trial> {
        if self.spec.multi_objective() {
            return self.pareto().order.first().and_then(|n| self.trial(*n));
        }
        self.index.ranking.first().and_then(|k| self.trial(k.1))
    }

    /// Trial `n`'s Pareto front (1 is the non-dominated set) in a sweep with several
    /// objectives; 0 if it is not ranked or the sweep has one objective.
    pub fn front_of(&self, n: u64) -> u32 {
        if !self.spec.multi_objective() {
            return 0;
        }
        self.pareto().at.get(&n).map_or(0, |a| a.1)
    }

    /// The Pareto leaderboard, computed from the ranked trials when first asked for after a
    /// change (O(m·n²) at worst for n ranked trials and m objectives; far less in practice).
    fn pareto(&self) -> &Pareto {
        self.pareto.get_or_init(|| {
            // In the first objective's order, which breaks ties of front and crowding.
            let numbers: Vec<u64> = self.index.ranking.iter().map(|k| k.1).collect();
            let points: Vec<Vec<f64>> = numbers
                .iter()
                .map(|&n| {
                    let t = self.trial(n);
                    self.spec
                        .objectives()
                        .iter()
                        .map(|m| {
                            let v = t.and_then(|t| t.final_value(&m.name)).unwrap_or(f64::NAN);
                            if m.goal == Goal::Maximize {
                                -v
                            } else {
                                v
                            }
                        })
                        .collect()
                })
                .collect();
            let mut p = Pareto::default();
            for (rank, (i, front)) in crate::pareto::order(&points).into_iter().enumerate() {
                p.order.push(numbers[i]);
                p.at.insert(numbers[i], (rank as u32 + 1, front));
            }
            p
        })
    }

    /// What a person should know: the config's notices, trials that never logged the metric,
    /// and work that no connected worker can take.
    pub fn notices(&self) -> Vec<String> {
        let mut out = self.spec.notices.clone();
        if let Some(why) = self
            .paused_because
            .as_ref()
            .filter(|_| self.state == SweepState::Paused)
        {
            out.push(why.clone());
        }
        out.extend(self.cut.clone());
        let metric = self
            .spec
            .objectives()
            .iter()
            .map(|m| format!("{:?}", m.name))
            .collect::<Vec<_>>()
            .join(" and ");
        if !self.spec.metric.name.is_empty() {
            if let Some(first) = self.index.unranked.first().and_then(|n| self.trial(*n)) {
                let n = self.index.unranked.len();
                let missing: Vec<String> = self
                    .spec
                    .objectives()
                    .iter()
                    .filter(|m| first.final_value(&m.name).is_none())
                    .map(|m| format!("{:?}", m.name))
                    .collect();
                let why = first.error.as_deref().map_or_else(
                    || format!("{} was never reported", missing.join(" and ")),
                    str::to_string,
                );
                out.push(format!(
                    "{n} trial{} ended without {} {metric} and {} not ranked (trial {}: {why})",
                    if n == 1 { "" } else { "s" },
                    if self.spec.multi_objective() {
                        "every objective of"
                    } else {
                        "the metric"
                    },
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
        let recent = |at: Option<f64>| at.is_some_and(|a| t - a <= WAITING_NOTICE_S);
        if waiting && recent(self.refused_at) && !recent(self.polled_at) {
            out.push(match self.spec.trainer {
                Trainer::Program(_) => "waiting: no connected worker runs programs; start workers with --allow-programs (see docs/PROGRAMS.md)".to_string(),
                Trainer::Agent => format!("waiting for an agent: wandb.agent(\"{}\", function=…) in Python, or worker --sweep {} --program FILE (see docs/PROGRAMS.md)", self.id, self.id),
                ref t => format!("waiting: no connected worker runs the {} trainer", t.name()),
            });
        }
        let nodes = self.spec.nodes_per_trial();
        if waiting && !self.forming.is_empty() {
            out.push(format!(
                "waiting: each trial runs on {nodes} workers at once (program_options.nodes); {} of {nodes} are waiting for the others",
                self.forming.len()
            ));
        }
        let need = self.spec.gpus_per_trial();
        if let Some((at, most)) = self.gpus_short.filter(|_| waiting && need > 0) {
            if recent(Some(at)) && !recent(self.polled_at) {
                out.push(if most < need {
                    format!(
                        "waiting: no worker has {need} GPUs (program_options.gpus: {need}; the workers asking for work have at most {most}); start workers on machines with {need} or more (see docs/DEPLOY.md, GPUs), or ask for fewer"
                    )
                } else {
                    format!(
                        "waiting: no worker has {need} free GPUs (those with {need} or more run other trials on them)"
                    )
                });
            }
        }
        out
    }

    /// Notes a worker that asked for work at `t` with fewer GPUs free than a trial needs; it
    /// registered `has`.
    pub(super) fn short_of_gpus(&mut self, t: f64, has: u32) {
        let most = match self.gpus_short {
            Some((at, most)) if t - at <= WAITING_NOTICE_S => most.max(has),
            _ => has,
        };
        self.gpus_short = Some((t, most));
    }

    /// Counts a failed attempt (or one a worker handed back for its own fault) of `trial`;
    /// pauses the sweep when `pause_after_failures` of them come in a row.
    pub(super) fn note_failure(&mut self, trial: u64, why: &str, output: &str) {
        self.failures_in_a_row += 1;
        let limit = self.spec.pause_after_failures;
        if limit == 0 || self.failures_in_a_row < limit || self.state != SweepState::Running {
            return;
        }
        self.state = SweepState::Paused;
        let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(5)..].join("\n");
        let why: String = why.chars().take(2000).collect();
        self.paused_because = Some(format!(
            "paused: {} trials in a row failed or could not run (pause_after_failures: {limit}); the last, trial {trial}: {why}{}; fix it and `coordinator resume {}`",
            self.failures_in_a_row,
            if tail.is_empty() {
                String::new()
            } else {
                format!("\nits output ended:\n{tail}")
            },
            self.id
        ));
        tracing::warn!(sweep = %self.id, trial, failures = self.failures_in_a_row, "the sweep paused itself after failures in a row");
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

/// What a stopping rule counts of `t`.
pub(super) fn seen(t: &Trial, metric: &str) -> Seen {
    Seen {
        history: t.curve.history(metric).collect(),
        finished: t.state == TrialState::Finished,
    }
}

fn ranked(p: Option<Place>) -> bool {
    matches!(p, Some(Place::Ranked(_)))
}

/// A trial is ranked once it ended (finished or stopped) with every objective's final value;
/// its key is the first objective's.
fn place(spec: &SweepSpec, t: &Trial) -> Place {
    if !matches!(t.state, TrialState::Finished | TrialState::Stopped) {
        return Place::Elsewhere;
    }
    if spec.objectives()[1..]
        .iter()
        .any(|m| t.final_value(&m.name).is_none())
    {
        return Place::Unranked;
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
    use super::super::trial::Params;
    use super::*;
    use rand::{Rng, SeedableRng};

    fn sweep(goal: &str) -> Sweep {
        let spec = SweepSpec::parse(&format!(
            "method: random\nmetric: {{name: loss, goal: {goal}}}\ntrainer: synthetic\nparameters:\n  x: {{min: 0.0, max: 1.0}}\n"
        ))
        .unwrap();
        Sweep::new("s".into(), None, spec, SweepState::Running, 0.0, 1)
    }

    fn trial(s: &mut Sweep, n: u64) -> Trial {
        Trial::new(n, Params::new(serde_json::json!({"x": n}), &mut s.names))
    }

    /// The ranking as the leaderboard defined it before it was kept incrementally: a sort of
    /// every ended trial with the metric, best first, ties by number; then the rest by number.
    fn ranked_by_sorting(s: &Sweep) -> Vec<(u32, u64)> {
        let m = &s.spec.metric;
        let mut ranked: Vec<(&Trial, f64)> = s
            .trials()
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
                .map(|t| t.number)
                .filter(|n| !ids.contains(n))
                .map(|n| (0, n)),
        );
        out
    }

    #[test]
    fn several_objectives_rank_by_front_then_crowding_and_follow_changes() {
        let spec = SweepSpec::parse(
            "method: random\nmetric:\n  - {name: acc, goal: maximize}\n  - {name: size, goal: minimize}\ntrainer: synthetic\nparameters:\n  x: {min: 0.0, max: 1.0}\n",
        )
        .unwrap();
        let mut s = Sweep::new("s".into(), None, spec, SweepState::Running, 0.0, 1);
        let (acc, size) = (s.names.get("acc"), s.names.get("size"));
        // (acc, size) per trial: 1, 2, 4 on the front (2 between the ends), 3 dominated by 2,
        // 5 dominated by 3; 6 never logs size.
        let values = [
            (0.80, 10.0),
            (0.85, 20.0),
            (0.84, 25.0),
            (0.90, 100.0),
            (0.70, 30.0),
        ];
        for (i, (a, z)) in values.iter().enumerate() {
            let n = i as u64 + 1;
            let t = trial(&mut s, n);
            s.insert(t);
            s.edit(n, |t| {
                t.metrics.insert(acc.clone(), *a);
                t.metrics.insert(size.clone(), *z);
                t.state = TrialState::Finished;
            });
        }
        let t = trial(&mut s, 6);
        s.insert(t);
        s.edit(6, |t| {
            t.metrics.insert(acc.clone(), 0.99);
            t.state = TrialState::Finished;
        });
        let order: Vec<(u32, u64, u32)> = s
            .ranked()
            .map(|(r, t)| (r, t.number, s.front_of(t.number)))
            .collect();
        // Front 1: the ends (4, then 1: by the first objective) before the middle (2);
        // front 2: 3; front 3: 5; 6 unranked.
        assert_eq!(
            order,
            [
                (1, 4, 1),
                (2, 1, 1),
                (3, 2, 1),
                (4, 3, 2),
                (5, 5, 3),
                (0, 6, 0)
            ]
        );
        assert_eq!(s.best().map(|t| t.number), Some(4));
        assert_eq!((s.rank_of(3), s.rank_of(6), s.ranked_len()), (4, 0, 5));
        assert!(s.notices().iter().any(|n| n.contains(
            "1 trial ended without every objective of \"acc\" and \"size\" and is not ranked (trial 6: \"size\" was never reported)"
        )), "{:?}", s.notices());
        // A change to a ranked trial is seen: trial 5 now dominates all but trial 4.
        s.edit(5, |t| {
            t.metrics.insert(acc.clone(), 0.89);
            t.metrics.insert(size.clone(), 1.0);
        });
        let fronts: Vec<u32> = (1..=5).map(|n| s.front_of(n)).collect();
        assert_eq!(fronts, [2, 2, 3, 1, 1]);
        assert_eq!(s.best().map(|t| t.number), Some(4));
    }

    #[test]
    fn trimmed_trials_leave_their_curve_but_the_stopping_rule_still_counts_them() {
        let spec = SweepSpec::parse(
            "method: random\nmetric: {name: loss, goal: minimize}\ntrainer: synthetic\nearly_terminate: {type: asha, min_iter: 1, eta: 2}\nparameters:\n  x: {min: 0.0, max: 1.0}\n",
        )
        .unwrap();
        let mut s = Sweep::new("s".into(), None, spec, SweepState::Running, 0.0, 1);
        let loss = s.names.get("loss");
        let ended = RECENT_WHOLE as u64 + 100;
        // Trials 1… end with loss n at step 1; the oldest 100 are trimmed.
        for n in 1..=ended {
            let t = trial(&mut s, n);
            s.insert(t);
            s.edit(n, |t| {
                t.state = TrialState::Running;
                t.curve.set(1, loss.clone(), n as f64);
            });
            s.edit(n, |t| t.state = TrialState::Finished);
        }
        assert!(s.trial(1).unwrap().curve.points().is_empty());
        assert!(s.trial(ended).unwrap().is_whole());
        // A new trial at rung 1 between trial 1 and the rest: judged against all of them.
        let n = ended + 1;
        let t = trial(&mut s, n);
        s.insert(t);
        s.edit(n, |t| {
            t.state = TrialState::Running;
            t.curve.set(1, loss.clone(), 1.5);
        });
        // ASHA keeps the best ⌊n/η⌋ of the n trials at the rung.
        let at_rung = ended + 1;
        let k = at_rung / 2;
        assert_eq!(s.should_stop(n), None, "1.5 is among the best half");
        s.edit(n, |t| t.curve.set(1, loss.clone(), (k + 1) as f64));
        let why = s.should_stop(n).expect("worse than the best half");
        assert!(
            why.contains(&format!("keeps the best {k} of {}", ended + 1)),
            "{why}"
        );
    }

    #[test]
    fn the_kept_indexes_agree_with_counting_and_sorting_after_any_changes() {
        for goal in ["minimize", "maximize"] {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let mut s = sweep(goal);
            for n in 1..=60 {
                let t = trial(&mut s, n);
                s.insert(t);
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
                for t in s.trials() {
                    *c.slot(t.state) += 1;
                }
                assert_eq!(s.counts(), c);
                let running: Vec<u64> = s
                    .trials()
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
        for n in [1, 2] {
            let t = trial(&mut s, n);
            s.insert(t);
        }
        s.edit(1, |t| t.state = TrialState::Finished);
        assert!(!s.maybe_finish(), "trial 2 is queued");
        s.edit(2, |t| t.state = TrialState::Running);
        assert!(!s.maybe_finish(), "trial 2 runs");
        s.edit(2, |t| t.state = TrialState::Failed);
        assert!(s.maybe_finish());
        assert_eq!(s.state, SweepState::Finished);
    }
}
