//! One trial in memory, kept small: a sweep of a million trials holds a million of these.
//!
//! Names (parameters, metrics, workers) are shared per sweep ([`Names`]); a trial's curve is a
//! flat list of points, *thinned* past [`MEMORY_POINTS`] (every other point of each metric but
//! the sweep's goes) and bounded in the store by [`MAX_TRIAL_POINTS`] and [`MAX_TRIAL_METRICS`]
//! ([`Trial::take_report`]). Once a trial has ended and is no longer among the sweep's most
//! recent ended trials, it is *trimmed*: its curve leaves memory but for its best point (a
//! stopping rule keeps what it reads of it), and so do its output and confusion matrix. The
//! store keeps everything; a thinned curve and a trimmed trial's detail are read from there.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};

use crate::config::Goal;
use crate::store::{AttemptRow, CheckpointMark, TrialRow};

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

/// Most names one sweep shares; past it a name is still kept, only not shared (a client that
/// invents metric names cannot grow the table without bound).
const MAX_SHARED_NAMES: usize = 65_536;

/// The names a sweep's trials use, each held once, and the last list of parameter names (the
/// trials of a sweep mostly share one).
#[derive(Debug, Default)]
pub struct Names {
    names: HashSet<Arc<str>>,
    keys: Arc<[Arc<str>]>,
}

impl Names {
    /// The shared copy of `name`.
    pub fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        if self.names.len() < MAX_SHARED_NAMES {
            self.names.insert(n.clone());
        }
        n
    }

    /// The shared copy of a list of parameter names.
    fn keys(&mut self, keys: Vec<&str>) -> Arc<[Arc<str>]> {
        if self.keys.len() != keys.len() || self.keys.iter().zip(&keys).any(|(a, b)| **a != **b) {
            self.keys = keys.into_iter().map(|k| self.get(k)).collect();
        }
        self.keys.clone()
    }
}

/// One parameter's value, in 24 bytes (text shared per sweep).
#[derive(Debug, Clone, PartialEq)]
enum ParamValue {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Text(Arc<str>),
    /// Lists and mappings.
    Other(Box<Value>),
}

impl ParamValue {
    fn new(v: Value, names: &mut Names) -> ParamValue {
        match v {
            Value::Null => ParamValue::Null,
            Value::Bool(b) => ParamValue::Bool(b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => ParamValue::Int(i),
                (_, Some(u), _) => ParamValue::UInt(u),
                (_, _, Some(f)) => ParamValue::Float(f),
                _ => ParamValue::Other(Box::new(Value::Number(n))),
            },
            Value::String(s) => ParamValue::Text(names.get(&s)),
            other => ParamValue::Other(Box::new(other)),
        }
    }

    fn view(&self) -> Param<'_> {
        match self {
            ParamValue::Null => Param::Null,
            ParamValue::Bool(b) => Param::Bool(*b),
            ParamValue::Int(i) => Param::Int(*i),
            ParamValue::UInt(u) => Param::UInt(*u),
            ParamValue::Float(f) => Param::Float(*f),
            ParamValue::Text(t) => Param::Text(t),
            ParamValue::Other(v) => Param::Other(v),
        }
    }
}

/// One parameter's value as the engine holds it, typed: what the wire and the store are
/// written from directly (one conversion each, no JSON value in between).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param<'a> {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// An integer above `i64::MAX`.
    UInt(u64),
    /// A float.
    Float(f64),
    /// A string.
    Text(&'a str),
    /// A list or a mapping.
    Other(&'a Value),
}

impl Param<'_> {
    /// As JSON.
    pub fn to_value(self) -> Value {
        match self {
            Param::Null => Value::Null,
            Param::Bool(b) => Value::Bool(b),
            Param::Int(i) => Value::from(i),
            Param::UInt(u) => Value::from(u),
            Param::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            Param::Text(t) => Value::String(t.to_string()),
            Param::Other(v) => v.clone(),
        }
    }
}

impl Serialize for Param<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Param::Null => s.serialize_unit(),
            Param::Bool(b) => s.serialize_bool(b),
            Param::Int(i) => s.serialize_i64(i),
            Param::UInt(u) => s.serialize_u64(u),
            // As a JSON value has it: a non-finite float is `null`.
            Param::Float(f) if !f.is_finite() => s.serialize_unit(),
            Param::Float(f) => s.serialize_f64(f),
            Param::Text(t) => s.serialize_str(t),
            Param::Other(v) => v.serialize(s),
        }
    }
}

/// A trial's parameters, in the order the search made them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    keys: Arc<[Arc<str>]>,
    values: Box<[ParamValue]>,
}

impl Params {
    /// From a JSON object (anything else: no parameters).
    pub fn new(v: Value, names: &mut Names) -> Params {
        let Value::Object(m) = v else {
            return Params::default();
        };
        let keys = names.keys(m.keys().map(String::as_str).collect());
        let values = m
            .into_iter()
            .map(|(_, v)| ParamValue::new(v, names))
            .collect();
        Params { keys, values }
    }

    /// Every parameter, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Param<'_>)> + '_ {
        self.keys
            .iter()
            .zip(self.values.iter())
            .map(|(k, v)| (&**k, v.view()))
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// As a JSON object.
    pub fn to_value(&self) -> Value {
        Value::Object(self.to_map())
    }

    /// As a JSON map.
    pub fn to_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_value()))
            .collect()
    }
}

/// Written as a JSON object directly (the store's text of them).
impl Serialize for Params {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// One metric value at one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The epoch (1-based).
    pub step: u32,
    /// The metric.
    pub name: Arc<str>,
    /// Its value.
    pub value: f64,
}

/// Points of a running or recently ended trial's curve held in memory. Past this, the curve
/// is *thinned*: every other point of each metric but the sweep's goes (each metric's last
/// point stays), and new points go on being added; the store keeps every point, and a
/// thinned curve is served from there ([`crate::curve`]).
pub const MEMORY_POINTS: usize = 20_000;

/// Points the store keeps of one trial (docs/API.md, "Curves"). Past this, a report keeps
/// only the sweep metric's point; its other values still become the trial's final metrics.
pub const MAX_TRIAL_POINTS: u64 = 4_000_000;

/// Metric names one trial may report; a report's further names are dropped.
pub const MAX_TRIAL_METRICS: usize = 1_024;

/// Per-epoch metrics, ordered by step, then name (one pointer wide when empty, as a trimmed
/// trial's mostly is).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curve(Option<Box<CurveData>>);

#[derive(Debug, Clone, Default, PartialEq)]
struct CurveData {
    points: Vec<Point>,
    /// Whether points were dropped from memory (see [`MEMORY_POINTS`]).
    thinned: bool,
    /// Points the store keeps of the trial, and the highest step among them: a later attempt
    /// reporting a step again replaces its points and adds none.
    stored: u64,
    top: u32,
    /// Points above which the curve is thinned again besides the limit: the kept metric's
    /// points at the last thinning and half the limit (so that a curve long in the kept
    /// metric alone is not thinned at every point).
    thin_at: usize,
}

impl Curve {
    fn data(&mut self) -> &mut CurveData {
        self.0.get_or_insert_with(Box::default)
    }

    /// Sets `name` at `step` (replacing a value reported before for the same step).
    pub fn set(&mut self, step: u32, name: Arc<str>, value: f64) {
        let v = &mut self.data().points;
        let key = (step, &*name);
        match v.binary_search_by(|p| (p.step, &*p.name).cmp(&key)) {
            Ok(i) => v[i].value = value,
            Err(i) => v.insert(i, Point { step, name, value }),
        }
    }

    /// Every point held in memory, by step then name (of a thinned curve, not all of them).
    pub fn points(&self) -> &[Point] {
        self.0.as_deref().map_or(&[], |d| d.points.as_slice())
    }

    /// Whether memory holds only some of the points (the store has them all).
    pub fn is_thinned(&self) -> bool {
        self.0.as_deref().is_some_and(|d| d.thinned)
    }

    /// Thins the curve once it holds more than `limit` points: every other point of each
    /// metric but `keep` goes, but for each metric's last.
    pub fn thin_over(&mut self, limit: usize, keep: &str) {
        let Some(d) = self.0.as_deref_mut() else {
            return;
        };
        if d.points.len() <= limit.max(d.thin_at) {
            return;
        }
        let mut left: std::collections::HashMap<Arc<str>, usize> = Default::default();
        for p in &d.points {
            *left.entry(p.name.clone()).or_default() += 1;
        }
        let mut seen: std::collections::HashMap<Arc<str>, usize> = Default::default();
        d.points.retain(|p| {
            if *p.name == *keep {
                return true;
            }
            let i = seen.entry(p.name.clone()).or_default();
            *i += 1;
            *i % 2 == 1 || *i == left[&p.name]
        });
        d.thinned = true;
        d.thin_at = d.points.iter().filter(|p| *p.name == *keep).count() + limit / 2;
    }

    /// Counts a report of `points` points at `step` toward what the store keeps; false when
    /// they would take the trial past `limit` (a step reported before adds nothing).
    pub fn admit(&mut self, step: u32, points: usize, limit: u64) -> bool {
        let d = self.data();
        if step <= d.top {
            return true;
        }
        if d.stored + points as u64 > limit {
            return false;
        }
        d.stored += points as u64;
        d.top = step;
        true
    }

    /// Counts points the store already kept (read back at a restart) toward its bound.
    pub fn note_stored(&mut self, points: u64, top: u32) {
        let d = self.data();
        d.stored += points;
        d.top = d.top.max(top);
    }

    /// The points of `step`.
    pub fn at(&self, step: u32) -> impl Iterator<Item = &Point> + '_ {
        let points = self.points();
        let from = points.partition_point(|p| p.step < step);
        points[from..].iter().take_while(move |p| p.step == step)
    }

    /// The last step with a point.
    pub fn last_step(&self) -> Option<u32> {
        self.points().last().map(|p| p.step)
    }

    /// The finite values of `metric`, by step.
    pub fn history<'a>(&'a self, metric: &'a str) -> impl Iterator<Item = f64> + 'a {
        self.points()
            .iter()
            .filter(move |p| *p.name == *metric && p.value.is_finite())
            .map(|p| p.value)
    }
}

/// Final metrics by name (exactly as long as it holds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics(Box<[(Arc<str>, f64)]>);

impl Metrics {
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.find(name).ok().map(|i| self.0[i].1)
    }

    /// Sets `name`.
    pub fn insert(&mut self, name: Arc<str>, value: f64) {
        match self.find(&name) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => {
                let mut v = std::mem::take(&mut self.0).into_vec();
                v.insert(i, (name, value));
                self.0 = v.into_boxed_slice();
            }
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.find(name) {
            let mut v = std::mem::take(&mut self.0).into_vec();
            v.remove(i);
            self.0 = v.into_boxed_slice();
        }
    }

    /// How many metrics.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every metric, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.0.iter().map(|(k, v)| (&**k, *v))
    }

    /// As a JSON object.
    pub fn to_json(&self) -> String {
        let m: Map<String, Value> = self
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        Value::Object(m).to_string()
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(name))
    }
}

/// What only a running or recently ended trial holds.
#[derive(Debug, Clone, Default)]
struct Live {
    lease_id: Option<Box<str>>,
    lease_expires: f64,
    confusion: Option<(Vec<String>, Vec<u64>)>,
    output: Option<Box<str>>,
    /// The last checkpoint a queued or running trial's attempts saved (its bytes are in the
    /// store).
    checkpoint: Option<CheckpointMark>,
    /// The epoch the running attempt was leased to go on from, until a report shows it
    /// started over instead (its worker could not use the checkpoint).
    resumed_epoch: Option<u32>,
    /// The GPUs of the current or last attempt (their ids on its worker).
    gpus: Box<[Box<str>]>,
    /// A gang's members past rank 0 (rank 1 first), while its attempt runs.
    gang: Vec<Member>,
}

/// One member of a running gang past rank 0: its own lease (the trial's lease id is rank 0's),
/// renewed by its own heartbeats.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its lease id.
    pub lease_id: Box<str>,
    /// Its worker.
    pub worker: Arc<str>,
    /// When its lease expires (Unix seconds).
    pub expires: f64,
    /// Its program ended well before rank 0's: it holds nothing more.
    pub done: bool,
    /// The tail of its program's output.
    pub output: Option<Box<str>>,
}

/// One trial in memory.
#[derive(Debug, Clone)]
pub struct Trial {
    /// 1-based number within the sweep; never reused.
    pub number: u64,
    /// Parameters.
    pub params: Params,
    /// State.
    pub state: TrialState,
    /// Current attempt, 1-based.
    pub attempt: u32,
    /// The attempt whose Complete was accepted (for idempotent Complete).
    pub completed_attempt: Option<u32>,
    /// Worker of the current or last attempt.
    pub worker: Option<Arc<str>>,
    /// When the current attempt started.
    pub started_at: Option<f64>,
    /// When the trial ended.
    pub ended_at: Option<f64>,
    /// Seconds of the accepted attempt.
    pub duration: f64,
    /// Per-epoch metrics (of a trimmed trial: only what the sweep still needs).
    pub curve: Curve,
    /// Final metrics (last epoch's values overlaid with the Complete message's).
    pub metrics: Metrics,
    /// Why it failed, or why it was stopped; for a finished program trial, a note such as
    /// the metric it never logged.
    pub error: Option<Box<str>>,
    /// The name its program gave the run (W&B's run name).
    pub name: Option<Box<str>>,
    /// What only a running or recently ended trial holds (its lease, its output and
    /// confusion matrix): one pointer in each of the many trimmed trials.
    live: Option<Box<Live>>,
    /// The best value of the sweep's metric and its step, kept when the trial was trimmed.
    kept_best: Option<(f64, u32)>,
    /// Whether the curve, output and confusion matrix are partly in the store only.
    trimmed: bool,
}

impl Trial {
    /// A new trial with `params`, waiting for its first attempt.
    pub(super) fn new(number: u64, params: Params) -> Trial {
        Trial {
            number,
            params,
            state: TrialState::Queued,
            attempt: 0,
            completed_attempt: None,
            worker: None,
            started_at: None,
            ended_at: None,
            duration: 0.0,
            curve: Curve::default(),
            metrics: Metrics::default(),
            error: None,
            name: None,
            live: None,
            kept_best: None,
            trimmed: false,
        }
    }

    fn live(&mut self) -> &mut Live {
        self.live.get_or_insert_with(Box::default)
    }

    /// The fencing token of the current attempt.
    pub fn lease_id(&self) -> Option<&str> {
        self.live.as_ref()?.lease_id.as_deref()
    }

    /// When the current lease expires (Unix seconds; 0 without one).
    pub fn lease_expires(&self) -> f64 {
        self.live.as_ref().map_or(0.0, |l| l.lease_expires)
    }

    /// Gives the trial a lease, or extends the one it has (`id` `None`: keeps the token).
    pub fn lease(&mut self, id: Option<&str>, expires: f64) {
        let l = self.live();
        if let Some(id) = id {
            l.lease_id = Some(id.into());
        }
        l.lease_expires = expires;
    }

    /// Ends the current lease: its token and those of a gang's members (all to drop).
    pub fn take_lease(&mut self) -> Vec<Box<str>> {
        let Some(l) = self.live.as_mut() else {
            return Vec::new();
        };
        let mut out: Vec<Box<str>> = l.lease_id.take().into_iter().collect();
        out.extend(std::mem::take(&mut l.gang).into_iter().map(|m| m.lease_id));
        out
    }

    /// A running gang's members past rank 0.
    pub fn gang(&self) -> &[Member] {
        self.live.as_ref().map_or(&[], |l| &l.gang)
    }

    /// The member holding `lease_id` (rank 1 and up), to renew or end.
    pub(super) fn member_mut(&mut self, lease_id: &str) -> Option<(u32, &mut Member)> {
        let l = self.live.as_mut()?;
        l.gang
            .iter_mut()
            .enumerate()
            .find(|(_, m)| &*m.lease_id == lease_id)
            .map(|(i, m)| (i as u32 + 1, m))
    }

    /// Sets the members of the attempt just leased (ranks 1 and up).
    pub(super) fn set_gang(&mut self, gang: Vec<Member>) {
        if gang.is_empty() && self.live.is_none() {
            return;
        }
        self.live().gang = gang;
    }

    /// When the first lease of the attempt expires: rank 0's, or a member's still running.
    pub fn first_expiry(&self) -> f64 {
        self.gang()
            .iter()
            .filter(|m| !m.done)
            .map(|m| m.expires)
            .fold(self.lease_expires(), f64::min)
    }

    /// The last checkpoint of a queued or running trial.
    pub fn checkpoint(&self) -> Option<CheckpointMark> {
        self.live
            .as_ref()?
            .checkpoint
            .filter(|_| !self.state.is_terminal())
    }

    /// Attempts since the last one that saved a checkpoint (all of them without one): what
    /// `max_attempts` counts, so that a trial interrupted again and again but going on each
    /// time from further on is never failed for it.
    pub fn attempts_without_progress(&self) -> u32 {
        self.attempt - self.checkpoint().map_or(0, |c| c.attempt.min(self.attempt))
    }

    /// Notes the epoch the attempt just leased goes on from (`None`: from the start).
    pub(super) fn set_resumed(&mut self, epoch: Option<u32>) {
        self.live().resumed_epoch = epoch;
    }

    /// Whether a report of `epoch` shows that an attempt leased to go on from a checkpoint
    /// started over (a resumed attempt reports only epochs after the checkpoint's); says so
    /// once.
    pub(super) fn started_over(&mut self, epoch: u32) -> bool {
        let Some(l) = self.live.as_mut() else {
            return false;
        };
        match l.resumed_epoch {
            Some(e) if e >= 1 && epoch <= e => {
                l.resumed_epoch = None;
                true
            }
            _ => false,
        }
    }

    /// The GPUs of the current or last attempt (a trimmed trial's are in the store only).
    pub fn gpus(&self) -> &[Box<str>] {
        self.live.as_ref().map_or(&[], |l| &l.gpus)
    }

    /// Sets the GPUs the attempt just leased runs with.
    pub(super) fn set_gpus(&mut self, gpus: Vec<Box<str>>) {
        if gpus.is_empty() && self.live.is_none() {
            return;
        }
        self.live().gpus = gpus.into_boxed_slice();
    }

    /// Sets the trial's last checkpoint.
    pub fn set_checkpoint(&mut self, mark: Option<CheckpointMark>) {
        self.live().checkpoint = mark;
    }

    /// The class names and row-major counts of its confusion matrix (a trimmed trial's are in
    /// the store only).
    pub fn confusion(&self) -> Option<(&[String], &[u64])> {
        let (l, c) = self.live.as_ref()?.confusion.as_ref()?;
        Some((l, c))
    }

    /// The tail of a program trial's output (a trimmed trial's is in the store only).
    pub fn output(&self) -> Option<&str> {
        self.live.as_ref()?.output.as_deref()
    }

    /// Sets what the trial's last attempt handed in besides metrics.
    pub fn set_files(
        &mut self,
        confusion: Option<(Vec<String>, Vec<u64>)>,
        output: Option<Box<str>>,
    ) {
        let l = self.live();
        l.confusion = confusion;
        l.output = output;
    }

    /// Whether the curve, output and confusion matrix are whole in memory (a trimmed trial's
    /// are read from the store).
    pub fn is_whole(&self) -> bool {
        !self.trimmed
    }

    /// Leaves in memory only what the sweep needs of an ended trial: the best point of
    /// `metric`, and no curve, output or confusion matrix (a stopping rule keeps what it
    /// reads of the curve itself: `stopping::Judge`).
    pub(super) fn trim(&mut self, metric: &str, goal: Goal) {
        if !self.trimmed {
            let best = self.best(metric, goal);
            self.trim_to(best);
        }
    }

    /// Trims the trial (see [`Trial::trim`]) knowing its best point (read back from the store).
    pub(super) fn trim_to(&mut self, best: Option<(f64, u32)>) {
        self.kept_best = best;
        self.curve = Curve::default();
        self.live = None;
        self.trimmed = true;
    }

    /// The row the store keeps, with the best point of the sweep's `metric`. A trimmed
    /// trial's row leaves the stored output and confusion matrix as they are.
    pub(super) fn row(&self, sweep: &str, metric: &str, goal: Goal) -> TrialRow {
        TrialRow {
            sweep_id: sweep.to_string(),
            trial: self.number,
            params: serde_json::to_string(&self.params).unwrap_or_else(|_| "{}".into()),
            state: self.state.name().into(),
            attempt: self.attempt,
            completed_attempt: self.completed_attempt,
            lease_id: self.lease_id().map(str::to_string),
            worker: self.worker.as_deref().map(str::to_string),
            started_at: self.started_at,
            ended_at: self.ended_at,
            duration: self.duration,
            metrics: self.metrics.to_json(),
            confusion: self
                .confusion()
                .map(|(labels, counts)| crate::store::confusion_json(labels, counts)),
            error: self.error.as_deref().map(str::to_string),
            output: self.output().map(str::to_string),
            best: Some(match self.best(metric, goal) {
                Some((v, step)) => (Some(v), step),
                None => (None, 0),
            }),
            keep_files: self.trimmed,
            name: self.name.as_deref().map(str::to_string),
            gpus: (!self.gpus().is_empty())
                .then(|| serde_json::to_string(self.gpus()).unwrap_or_else(|_| "[]".into())),
            gang: (!self.gang().is_empty()).then(|| {
                serde_json::Value::Array(
                    self.gang()
                        .iter()
                        .map(|m| json!({"lease_id": &*m.lease_id, "worker": &*m.worker, "done": m.done}))
                        .collect(),
                )
                .to_string()
            }),
        }
    }

    /// The record of its current attempt (worker, start): ended at `ended_at` as `ending`, or
    /// (`None`, "") still running.
    pub(super) fn attempt_row(
        &self,
        sweep: &str,
        ended_at: Option<f64>,
        ending: &str,
    ) -> AttemptRow {
        AttemptRow {
            sweep_id: sweep.to_string(),
            trial: self.number,
            attempt: self.attempt,
            worker: self.worker.as_deref().map(str::to_string),
            started_at: self.started_at,
            ended_at,
            resumed_from: None,
            ending: ending.into(),
        }
    }

    /// Best value of `metric` over the epochs, and its step (of a trimmed trial: for the
    /// sweep's metric only).
    pub fn best(&self, metric: &str, goal: Goal) -> Option<(f64, u32)> {
        if self.trimmed {
            return self.kept_best;
        }
        let mut best: Option<(f64, u32)> = None;
        for p in self.curve.points() {
            if *p.name == *metric
                && p.value.is_finite()
                && best.is_none_or(|(b, _)| goal.better(p.value, b))
            {
                best = Some((p.value, p.step));
            }
        }
        if best.is_none() {
            if let Some(v) = self.metrics.get(metric) {
                if v.is_finite() {
                    best = Some((v, self.curve.last_step().unwrap_or(0)));
                }
            }
        }
        best
    }

    /// Takes one report of a running attempt at `epoch`: sets its points and final values,
    /// within the bounds on what one trial keeps (see [`MAX_TRIAL_METRICS`],
    /// [`MAX_TRIAL_POINTS`] and [`MEMORY_POINTS`]; `metric` is the sweep's, which is always
    /// kept). Returns the points the store is to keep, and what was cut, if anything.
    pub(super) fn take_report(
        &mut self,
        epoch: u32,
        mut named: Vec<(Arc<str>, f64)>,
        metric: &str,
    ) -> (Vec<(Arc<str>, f64)>, Option<String>) {
        let mut cut = None;
        let room = MAX_TRIAL_METRICS.saturating_sub(self.metrics.len());
        let new: Vec<usize> = (0..named.len())
            .filter(|&i| self.metrics.get(&named[i].0).is_none() && *named[i].0 != *metric)
            .collect();
        if new.len() > room {
            let dropped: HashSet<usize> = new[room..].iter().copied().collect();
            let first = named[new[room]].0.clone();
            let mut i = 0;
            named.retain(|_| {
                i += 1;
                !dropped.contains(&(i - 1))
            });
            cut = Some(format!(
                "trial {} reported more than {MAX_TRIAL_METRICS} metric names; {first:?} and later new names are not kept",
                self.number
            ));
        }
        for (n, v) in &named {
            self.metrics.insert(n.clone(), *v);
        }
        if !self.curve.admit(epoch, named.len(), MAX_TRIAL_POINTS) {
            named.retain(|(n, _)| **n == *metric);
            cut = Some(format!(
                "trial {} reached {MAX_TRIAL_POINTS} stored points (the most one trial keeps); from step {epoch} only {metric:?} is kept per step, the other metrics as final values",
                self.number
            ));
            self.curve.admit(epoch, 0, MAX_TRIAL_POINTS);
        }
        for (n, v) in &named {
            self.curve.set(epoch, n.clone(), *v);
        }
        self.curve.thin_over(MEMORY_POINTS, metric);
        (named, cut)
    }

    /// The value the leaderboard ranks by: the final value of the metric (W&B's summary).
    pub fn final_value(&self, metric: &str) -> Option<f64> {
        self.metrics.get(metric).filter(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_curve_keeps_its_points_ordered_and_one_per_step_and_name() {
        let mut names = Names::default();
        let mut c = Curve::default();
        for (step, name, v) in [
            (2, "loss", 0.5),
            (1, "val", 0.9),
            (1, "loss", 1.0),
            (2, "loss", 0.4),
        ] {
            c.set(step, names.get(name), v);
        }
        let got: Vec<(u32, &str, f64)> = c
            .points()
            .iter()
            .map(|p| (p.step, &*p.name, p.value))
            .collect();
        assert_eq!(got, [(1, "loss", 1.0), (1, "val", 0.9), (2, "loss", 0.4)]);
        assert_eq!(c.at(1).count(), 2);
        assert_eq!(c.at(3).count(), 0);
        assert_eq!(c.history("loss").collect::<Vec<_>>(), [1.0, 0.4]);
        assert!(Arc::ptr_eq(&names.get("loss"), &c.points()[0].name));
    }

    #[test]
    fn a_trimmed_trial_keeps_its_best_and_no_curve() {
        let mut names = Names::default();
        let mut t = Trial::new(1, Params::new(json!({"x": 1}), &mut names));
        for (step, loss) in [(1, 0.9), (2, 0.3), (3, 0.5)] {
            t.curve.set(step, names.get("loss"), loss);
            t.curve.set(step, names.get("acc"), 1.0 - loss);
        }
        t.metrics.insert(names.get("loss"), 0.5);
        t.set_files(None, Some("hello".into()));
        t.state = TrialState::Finished;
        let whole = t.clone();
        t.trim("loss", Goal::Minimize);
        assert_eq!(t.best("loss", Goal::Minimize), Some((0.3, 2)));
        assert!(t.curve.points().is_empty());
        assert!(t.output().is_none() && !t.is_whole());
        let row = t.row("s", "loss", Goal::Minimize);
        assert!(row.keep_files && !whole.row("s", "loss", Goal::Minimize).keep_files);
        assert_eq!(row.best, Some((Some(0.3), 2)));
        assert_eq!(t.params.to_value(), json!({"x": 1}));
        let all = json!({"a": 1, "b": -2, "c": 0.5, "d": "adam", "e": true, "f": null, "g": [1, 2], "h": {"k": 1}, "i": u64::MAX});
        let p = Params::new(all.clone(), &mut names);
        assert_eq!(p.to_value(), all);
        // The store's text, written directly, is that of the JSON value.
        assert_eq!(serde_json::to_string(&p).unwrap(), all.to_string());
        let q = Params::new(
            json!({"a": 2, "b": 3, "c": 0.1, "d": "adam", "e": false, "f": 1, "g": [], "h": {}, "i": 0}),
            &mut names,
        );
        assert!(
            Arc::ptr_eq(&p.keys, &q.keys),
            "trials of a sweep share their parameter names"
        );
    }

    #[test]
    fn a_trial_keeps_bounded_points_in_memory_and_in_the_store_and_always_its_metric() {
        let mut names = Names::default();
        let mut t = Trial::new(1, Params::new(json!({}), &mut names));
        let others: Vec<Arc<str>> = (0..999).map(|m| names.get(&format!("m{m:03}"))).collect();
        let loss = names.get("loss");
        let mut stored = 0u64;
        let mut first_cut = None;
        let steps = (MAX_TRIAL_POINTS / 1000) as u32 + 5;
        for step in 1..=steps {
            let mut row: Vec<(Arc<str>, f64)> = others
                .iter()
                .map(|n| (n.clone(), f64::from(step)))
                .collect();
            row.push((loss.clone(), 1.0 / f64::from(step)));
            let (kept, cut) = t.take_report(step, row, "loss");
            stored += kept.len() as u64;
            if let (Some(why), None) = (cut, &first_cut) {
                first_cut = Some((step, why));
            }
            let metric = t.curve.history("loss").count();
            assert!(
                t.curve.points().len() <= MEMORY_POINTS + metric + 1000,
                "{} points, {metric} of the metric, at step {step}",
                t.curve.points().len()
            );
        }
        let (at, why) = first_cut.expect("the bound was reached");
        assert_eq!(at, (MAX_TRIAL_POINTS / 1000) as u32 + 1);
        assert!(why.contains("4000000 stored points"), "{why}");
        // Past the bound each step keeps the metric only; final values go on.
        assert_eq!(stored, MAX_TRIAL_POINTS + 5);
        assert_eq!(t.metrics.get("m005"), Some(f64::from(steps)));
        assert!(t.curve.is_thinned());
        // The sweep's metric is never thinned: the stopping rule and best read it whole.
        assert_eq!(t.curve.history("loss").count(), steps as usize);
        assert_eq!(t.best("loss", Goal::Minimize).map(|b| b.1), Some(steps));
        // The latest step is whole in memory, for watchers.
        assert_eq!(t.curve.at(steps).count(), 1);
        assert_eq!(t.curve.at(steps - 5).count(), 1000);
        // A later attempt reporting a step again adds nothing toward the bound.
        let (kept, cut) = t.take_report(3, vec![(others[0].clone(), 1.0)], "loss");
        assert_eq!((kept.len(), cut), (1, None));
    }

    #[test]
    fn a_trial_keeps_a_bounded_number_of_metric_names() {
        let mut names = Names::default();
        let mut t = Trial::new(4, Params::new(json!({}), &mut names));
        let row = |from: usize, n: usize, names: &mut Names| -> Vec<(Arc<str>, f64)> {
            (from..from + n)
                .map(|m| (names.get(&format!("k{m:05}")), 1.0))
                .collect()
        };
        let (kept, cut) = t.take_report(1, row(0, 1000, &mut names), "acc");
        assert_eq!((kept.len(), cut), (1000, None));
        let mut r = row(1000, 100, &mut names);
        r.push((names.get("acc"), 0.5));
        let (kept, cut) = t.take_report(2, r, "acc");
        // 24 more names fit; the sweep's metric always does.
        assert_eq!(kept.len(), 25);
        assert!(kept.iter().any(|(n, _)| &**n == "acc"));
        let why = cut.unwrap();
        assert!(
            why.contains("more than 1024 metric names") && why.contains("k01024"),
            "{why}"
        );
        assert_eq!(t.metrics.len(), 1025);
        // Names it has go on being kept.
        let (kept, cut) = t.take_report(3, row(0, 10, &mut names), "acc");
        assert_eq!((kept.len(), cut), (10, None));
    }
}
