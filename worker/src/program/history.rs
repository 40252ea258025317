//! What a user's program tells its worker, one JSON object per line (docs/PROGRAMS.md), and
//! the trial's history built from it: the steps the coordinator's stopping rules count and
//! the final values W&B's summary rules give.
//!
//! A line is one object with one of these keys:
//! - `{"log": {"loss": 0.3, "val/accuracy": 0.9}, "step": 4}`: one history row (W&B's
//!   `wandb.log` commit) at W&B's `_step` 4, or without `step` at the step after the last
//!   (rows keep their steps: W&B's step model, which our `wandb` module follows);
//! - `{"summary": {"val_accuracy": 0.91}}`: final values set by the program;
//! - `{"define_metric": {"name": "val_acc", "summary": "max"}}`: how a key's final value is
//!   made from its history (`min`, `max`, `mean`, `first`, `last`, `none`);
//! - `{"confusion": {"labels": ["cat", "dog"], "counts": [[5, 1], [0, 6]]}}`;
//! - `{"name": "lr_0.01_bs_32"}`: the run's name (W&B's run name), shown with the trial;
//! - `{"notice": "text"}` and `{"config": {…}}`, kept in the trial's output.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde_json::{Map, Value};
use sweep_proto::conn::{MAX_REPORT_ROWS, MAX_STEP};

/// Longest line a program may write; a longer one is skipped with a notice.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Most distinct metric names one trial may log; later names are ignored with a notice.
pub const MAX_KEYS: usize = 1024;
/// Longest run name kept, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Most labels a confusion matrix may have.
pub const MAX_LABELS: usize = 256;

/// Reads report lines from `r` until its end, giving each to `each` (`Err` with a notice for a
/// line over [`MAX_LINE_BYTES`], which is skipped); stops early when `each` returns false.
pub fn read_lines(r: impl std::io::Read, mut each: impl FnMut(Result<String, String>) -> bool) {
    use std::io::{BufRead, Read};
    let mut r = std::io::BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let line = match r
            .by_ref()
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) | Err(_) => return,
            Ok(n) if n > MAX_LINE_BYTES => {
                skip_line(&mut r);
                Err(format!(
                    "skipped a report line longer than {MAX_LINE_BYTES} bytes"
                ))
            }
            Ok(_) => Ok(String::from_utf8_lossy(&buf).into_owned()),
        };
        if !each(line) {
            return;
        }
    }
}

/// Reads past the rest of an over-long line in bounded pieces (a program that never writes a
/// line break cannot make the worker hold more than one piece).
fn skip_line(r: &mut impl std::io::BufRead) {
    use std::io::{BufRead, Read};
    let mut piece = Vec::new();
    loop {
        piece.clear();
        match r.by_ref().take(64 * 1024).read_until(b'\n', &mut piece) {
            Ok(0) | Err(_) => return,
            Ok(_) if piece.ends_with(b"\n") => return,
            Ok(_) => {}
        }
    }
}

/// How a key's final value is made from its logged values (`define_metric(summary=…)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryRule {
    /// The last value (W&B's default).
    Last,
    /// The first value.
    First,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The mean of all values.
    Mean,
    /// No final value.
    None,
}

impl SummaryRule {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "last" | "copy" => SummaryRule::Last,
            "first" => SummaryRule::First,
            "min" => SummaryRule::Min,
            "max" => SummaryRule::Max,
            "mean" => SummaryRule::Mean,
            "none" => SummaryRule::None,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    first: f64,
    last: f64,
    min: f64,
    max: f64,
    sum: f64,
    count: u64,
}

impl Stats {
    fn new(v: f64) -> Self {
        Stats {
            first: v,
            last: v,
            min: v,
            max: v,
            sum: v,
            count: 1,
        }
    }
    fn add(&mut self, v: f64) {
        self.last = v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
        self.count += 1;
    }
    fn apply(&self, rule: SummaryRule) -> Option<f64> {
        match rule {
            SummaryRule::Last => Some(self.last),
            SummaryRule::First => Some(self.first),
            SummaryRule::Min => Some(self.min),
            SummaryRule::Max => Some(self.max),
            SummaryRule::Mean => Some(self.sum / self.count as f64),
            SummaryRule::None => None,
        }
    }
}

/// One history row: the values of one committed `wandb.log` (one `{"log": …}` line), at
/// W&B's `_step` + 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based: W&B's `_step` + 1.
    pub step: u32,
    /// Values by name.
    pub metrics: HashMap<String, f64>,
}

/// One report for the coordinator: the rows logged since the last one, steps ascending. A
/// row with the sweep metric ends a report at once (the stopping rules judge each of its
/// values); other rows wait for one, for [`REPORT_ROWS`] rows, or for [`REPORT_AFTER`].
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The rows, at least one.
    pub rows: Vec<Row>,
    /// The run's name, once the program gave one.
    pub name: Option<String>,
}

/// Most rows a report holds (within the coordinator's limit, [`MAX_REPORT_ROWS`]).
pub const REPORT_ROWS: usize = 1000;
/// Rows without the sweep metric wait at most this long for a report (the dashboard's curves
/// of a program that logs per batch move while it runs).
pub const REPORT_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// A confusion matrix sent by the program.
#[derive(Debug, Clone, PartialEq)]
pub struct Confusion {
    /// Class names.
    pub labels: Vec<String>,
    /// Row-major counts, rows = true class.
    pub counts: Vec<u64>,
}

/// The history of one trial, fed line by line.
#[derive(Debug)]
pub struct History {
    metric: String,
    stats: BTreeMap<String, Stats>,
    rules: HashMap<String, SummaryRule>,
    summary: BTreeMap<String, f64>,
    /// Rows not reported yet, and when the first of them came.
    pending: Vec<Row>,
    pending_since: Option<Instant>,
    /// The step of the last row taken (0: none yet).
    last_step: u32,
    rows: u64,
    /// The last confusion matrix sent.
    pub confusion: Option<Confusion>,
    /// Notices for the trial's output (bad lines, ignored keys), each said once.
    pub notices: Vec<String>,
    /// The run's name (`{"name": …}`: W&B's `wandb.init(name=…)`, `run.name = …`).
    pub name: Option<String>,
}

impl History {
    /// An empty history for a sweep whose metric is `metric`.
    pub fn new(metric: &str) -> Self {
        History {
            metric: metric.to_string(),
            stats: BTreeMap::new(),
            rules: HashMap::new(),
            summary: BTreeMap::new(),
            pending: Vec::new(),
            pending_since: None,
            last_step: 0,
            rows: 0,
            confusion: None,
            notices: Vec::new(),
            name: None,
        }
    }

    fn notice(&mut self, text: String) {
        if self.notices.len() < 100 && !self.notices.contains(&text) {
            self.notices.push(text);
        }
    }

    /// Takes one line; returns the step to report when the line logged the sweep metric.
    pub fn line(&mut self, line: &str) -> Option<Step> {
        let line = line.trim();
        if line.is_empty() {
            return None;
        }
        let obj = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(o)) => o,
            Ok(_) | Err(_) => {
                let shown: String = line.chars().take(80).collect();
                self.notice(format!(
                    "skipped a report line that is not a JSON object: {shown}"
                ));
                return None;
            }
        };
        let mut step = None;
        for (k, v) in &obj {
            match (k.as_str(), v) {
                ("log", Value::Object(m)) => step = self.log(m, obj.get("step")),
                ("summary", Value::Object(m)) => {
                    for (name, v) in m {
                        if let Some(x) = number(v) {
                            if self.known(name) {
                                self.summary.insert(name.clone(), x);
                            }
                        }
                    }
                }
                ("define_metric", Value::Object(m)) => self.define_metric(m),
                ("confusion", Value::Object(m)) => self.confusion(m),
                ("notice", Value::String(s)) => {
                    let s: String = s.chars().take(500).collect();
                    self.notice(s)
                }
                ("name", Value::String(n)) => {
                    let n: String = n.chars().take(MAX_NAME_CHARS).collect();
                    self.name = (!n.is_empty()).then_some(n);
                }
                ("config" | "step", _) => {}
                (other, _) => {
                    let other: String = other.chars().take(40).collect();
                    self.notice(format!(
                        "ignored a report line with key {other:?}; expected log, summary, define_metric, confusion, name, notice or config"
                    ))
                }
            }
        }
        step
    }

    /// Whether `name` may be kept (a new name beyond [`MAX_KEYS`] is not).
    fn known(&mut self, name: &str) -> bool {
        if self.stats.contains_key(name) || self.summary.contains_key(name) {
            return true;
        }
        if name.is_empty() || name.len() > 128 {
            self.notice(format!(
                "ignored a metric name of {} bytes; names have 1 to 128",
                name.len()
            ));
            return false;
        }
        if self.stats.len() + self.summary.len() >= MAX_KEYS {
            self.notice(format!("ignored metrics beyond the first {MAX_KEYS} names"));
            return false;
        }
        true
    }

    /// Takes one row, at `at` (W&B's `_step`, as our `wandb` module sends it) or else the
    /// step after the last; a step not after the last is dropped, as W&B drops it.
    fn log(&mut self, row: &Map<String, Value>, at: Option<&Value>) -> Option<Step> {
        self.rows += 1;
        let step = match at.and_then(Value::as_u64) {
            Some(s) if s.saturating_add(1) <= u64::from(self.last_step) => {
                self.notice(format!(
                    "dropped a row logged at step {s}, not after step {} (as W&B drops it)",
                    self.last_step.saturating_sub(1)
                ));
                return None;
            }
            Some(s) => s.saturating_add(1),
            None => u64::from(self.last_step) + 1,
        };
        if step > u64::from(MAX_STEP) {
            self.notice(format!(
                "rows past step {} are not kept (the most one trial has); their values still count for its final values",
                MAX_STEP - 1
            ));
            self.take_values(row);
            return None;
        }
        let step = step as u32;
        self.last_step = step;
        let metrics = self.take_values(row);
        if metrics.is_empty() {
            return None;
        }
        // Without a sweep metric every row is reported as it comes (the curves still show).
        let ends = self.metric.is_empty() || metrics.contains_key(&self.metric);
        self.pending.push(Row { step, metrics });
        self.pending_since.get_or_insert_with(Instant::now);
        if ends || self.pending.len() >= REPORT_ROWS.min(MAX_REPORT_ROWS) {
            return self.flush();
        }
        self.flush_due()
    }

    /// A row's numbers, counted into the final values.
    fn take_values(&mut self, row: &Map<String, Value>) -> HashMap<String, f64> {
        let mut out = HashMap::new();
        for (name, v) in row {
            let Some(x) = number(v) else { continue };
            if !self.known(name) {
                continue;
            }
            match self.stats.get_mut(name) {
                Some(s) => s.add(x),
                None => {
                    self.stats.insert(name.clone(), Stats::new(x));
                }
            }
            out.insert(name.clone(), x);
        }
        out
    }

    /// The rows not reported yet, as one report (None: there are none).
    pub fn flush(&mut self) -> Option<Step> {
        self.pending_since = None;
        if self.pending.is_empty() {
            return None;
        }
        Some(Step {
            rows: std::mem::take(&mut self.pending),
            name: self.name.clone(),
        })
    }

    /// The rows not reported yet once the first of them has waited [`REPORT_AFTER`].
    pub fn flush_due(&mut self) -> Option<Step> {
        if self.pending_since?.elapsed() >= REPORT_AFTER {
            return self.flush();
        }
        None
    }

    fn define_metric(&mut self, m: &Map<String, Value>) {
        let Some(name) = m.get("name").and_then(Value::as_str) else {
            return;
        };
        let Some(rule) = m.get("summary").and_then(Value::as_str) else {
            return;
        };
        // W&B's `summary="best"` follows `goal`; several comma-separated rules keep the first.
        let rule = rule.split(',').next().unwrap_or("").trim();
        let rule = match (rule, m.get("goal").and_then(Value::as_str)) {
            ("best", Some("maximize")) => Some(SummaryRule::Max),
            ("best", _) => Some(SummaryRule::Min),
            (r, _) => SummaryRule::parse(r),
        };
        match rule {
            Some(r) if self.rules.len() < MAX_KEYS => {
                self.rules.insert(name.to_string(), r);
            }
            Some(_) => {}
            None => self.notice(format!(
                "define_metric({name:?}): unknown summary {rule:?}; expected min, max, mean, best, first, last or none"
            )),
        }
    }

    fn confusion(&mut self, m: &Map<String, Value>) {
        let labels: Vec<String> = match m.get("labels") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.chars().take(64).collect(),
                    v => v.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        };
        let n = labels.len();
        let rows: Vec<Vec<u64>> = match m.get("counts") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|r| match r {
                    Value::Array(r) => r.iter().map(|x| x.as_u64().unwrap_or(u64::MAX)).collect(),
                    _ => Vec::new(),
                })
                .collect(),
            _ => Vec::new(),
        };
        if n == 0
            || n > MAX_LABELS
            || rows.len() != n
            || rows.iter().any(|r| r.len() != n || r.contains(&u64::MAX))
        {
            self.notice(format!(
                "ignored a confusion matrix: expected 1 to {MAX_LABELS} labels and as many rows of as many counts (integers ≥ 0)"
            ));
            return;
        }
        self.confusion = Some(Confusion {
            labels,
            counts: rows.into_iter().flatten().collect(),
        });
    }

    /// History rows logged so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Final values: each logged key by its summary rule (default: the last value), then the
    /// values the program set itself.
    pub fn summary(&self) -> HashMap<String, f64> {
        let mut out: HashMap<String, f64> = self
            .stats
            .iter()
            .filter_map(|(k, s)| {
                let rule = self.rules.get(k).copied().unwrap_or(SummaryRule::Last);
                s.apply(rule).map(|v| (k.clone(), v))
            })
            .collect();
        out.extend(self.summary.iter().map(|(k, v)| (k.clone(), *v)));
        out
    }

    /// When the sweep metric never appeared: the message naming the keys that did.
    pub fn missing_metric(&self) -> Option<String> {
        if self.metric.is_empty()
            || self.stats.contains_key(&self.metric)
            || self.summary.contains_key(&self.metric)
        {
            return None;
        }
        let mut keys: Vec<&str> = self
            .stats
            .keys()
            .chain(self.summary.keys())
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let shown = if keys.is_empty() {
            "nothing".to_string()
        } else if keys.len() > 20 {
            format!("{}, … ({} names)", keys[..20].join(", "), keys.len())
        } else {
            keys.join(", ")
        };
        Some(format!(
            "metric {:?} was never logged; logged: {shown}",
            self.metric
        ))
    }
}

/// A logged value as a number: numbers, and booleans as 0/1 (W&B charts them so); anything
/// else (text, images, tables) is not a metric.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        // W&B logs NaN/inf from Python; our shim sends them as strings.
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(s: &Step) -> Vec<u32> {
        s.rows.iter().map(|r| r.step).collect()
    }

    #[test]
    fn every_row_keeps_its_step_and_a_metric_row_ends_a_report() {
        let mut h = History::new("val/acc");
        assert_eq!(h.line(r#"{"log": {"loss": 1.0, "epoch": 0}}"#), None);
        let s = h.line(r#"{"log": {"val/acc": 0.5, "epoch": 1}}"#).unwrap();
        assert_eq!(steps(&s), [1, 2]);
        assert_eq!(s.rows[0].metrics["loss"], 1.0);
        assert_eq!(s.rows[1].metrics["val/acc"], 0.5);
        assert!(!s.rows[1].metrics.contains_key("loss"));
        let s = h.line(r#"{"log": {"val/acc": 0.7}}"#).unwrap();
        assert_eq!((steps(&s), s.rows[0].metrics.len()), (vec![3], 1));
        assert_eq!(h.rows(), 3);
        assert_eq!(h.summary()["val/acc"], 0.7);
        assert_eq!(h.flush(), None);
    }

    #[test]
    fn two_logs_per_epoch_and_per_batch_rows_stay_where_the_script_put_them() {
        // log({"epoch": e, "acc": a}); log({"epoch": e, "loss": l}) with the metric acc: the
        // loss is a row of its own after its epoch's acc, not moved into the next report's.
        let mut h = History::new("acc");
        let mut reported = Vec::new();
        for e in 0..3 {
            for (k, v) in [
                ("acc", 0.5 + f64::from(e) / 10.0),
                ("loss", 1.0 - f64::from(e) / 10.0),
            ] {
                let line = format!(
                    r#"{{"log": {{"epoch": {e}, "{k}": {v}}}, "step": {}}}"#,
                    2 * e + u32::from(k == "loss")
                );
                reported.extend(h.line(&line).into_iter().flat_map(|s| s.rows));
            }
        }
        reported.extend(h.flush().into_iter().flat_map(|s| s.rows));
        let got: Vec<(u32, f64, Option<f64>, Option<f64>)> = reported
            .iter()
            .map(|r| {
                (
                    r.step,
                    r.metrics["epoch"],
                    r.metrics.get("acc").copied(),
                    r.metrics.get("loss").copied(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, 0.0, Some(0.5), None),
                (2, 0.0, None, Some(1.0)),
                (3, 1.0, Some(0.6), None),
                (4, 1.0, None, Some(0.9)),
                (5, 2.0, Some(0.7), None),
                (6, 2.0, None, Some(0.8)),
            ]
        );
        // Per-batch rows: every value kept, in reports of at most REPORT_ROWS rows.
        let mut h = History::new("val_acc");
        let mut reports = Vec::new();
        for b in 0..2500u32 {
            reports.extend(h.line(&format!(r#"{{"log": {{"batch_loss": {b}}}, "step": {b}}}"#)));
        }
        reports.extend(h.line(r#"{"log": {"val_acc": 0.9}, "step": 2500}"#));
        let sizes: Vec<usize> = reports.iter().map(|s| s.rows.len()).collect();
        assert_eq!(sizes, [1000, 1000, 501]);
        let all: Vec<u32> = reports.iter().flat_map(steps).collect();
        assert_eq!(all, (1..=2501).collect::<Vec<_>>());
    }

    #[test]
    fn explicit_steps_jump_and_an_earlier_step_is_dropped() {
        let mut h = History::new("m");
        assert_eq!(h.line(r#"{"log": {"a": 1}, "step": 10}"#), None);
        assert_eq!(h.line(r#"{"log": {"b": 2}, "step": 3}"#), None);
        assert!(
            h.notices[0].contains("not after step 10"),
            "{:?}",
            h.notices
        );
        // Without a step, the line is the step after the last.
        let s = h.line(r#"{"log": {"m": 0.5}}"#).unwrap();
        assert_eq!(steps(&s), [11, 12]);
        assert_eq!(h.summary().get("b"), None);
        // Past the most steps a trial has: not a row, still a final value.
        assert_eq!(
            h.line(&format!(r#"{{"log": {{"m": 0.9}}, "step": {MAX_STEP}}}"#)),
            None
        );
        assert_eq!(h.summary()["m"], 0.9);
    }

    #[test]
    fn rows_without_the_metric_wait_a_while_then_go() {
        let mut h = History::new("m");
        assert_eq!(h.line(r#"{"log": {"loss": 1}}"#), None);
        assert_eq!(h.flush_due(), None);
        h.pending_since = Some(Instant::now() - REPORT_AFTER);
        assert_eq!(steps(&h.flush_due().unwrap()), [1]);
        assert_eq!(h.flush_due(), None);
    }

    #[test]
    fn summary_rules_and_explicit_values() {
        let mut h = History::new("acc");
        h.line(r#"{"define_metric": {"name": "acc", "summary": "max"}}"#);
        h.line(r#"{"define_metric": {"name": "loss", "summary": "best", "goal": "minimize"}}"#);
        for (a, l) in [(0.5, 3.0), (0.9, 1.0), (0.7, 2.0)] {
            h.line(&format!(
                r#"{{"log": {{"acc": {a}, "loss": {l}, "m": {a}}}}}"#
            ));
        }
        h.line(r#"{"define_metric": {"name": "m", "summary": "mean"}}"#);
        let s = h.summary();
        assert_eq!((s["acc"], s["loss"]), (0.9, 1.0));
        assert!((s["m"] - 0.7).abs() < 1e-12);
        h.line(r#"{"summary": {"acc": 0.1}}"#);
        assert_eq!(h.summary()["acc"], 0.1);
    }

    #[test]
    fn a_missing_metric_names_what_was_logged() {
        let mut h = History::new("val_acc");
        h.line(r#"{"log": {"val_accuracy": 0.5, "val_loss": 1, "epoch": 1, "img": {"_type": "image"}}}"#);
        assert_eq!(
            h.missing_metric().unwrap(),
            r#"metric "val_acc" was never logged; logged: epoch, val_accuracy, val_loss"#
        );
        h.line(r#"{"summary": {"val_acc": 1}}"#);
        assert_eq!(h.missing_metric(), None);
    }

    #[test]
    fn without_a_sweep_metric_every_row_is_reported() {
        let mut h = History::new("");
        assert_eq!(steps(&h.line(r#"{"log": {"loss": 1.0}}"#).unwrap()), [1]);
        assert_eq!(steps(&h.line(r#"{"log": {"acc": 0.5}}"#).unwrap()), [2]);
        assert_eq!(h.missing_metric(), None);
    }

    #[test]
    fn bad_lines_are_notices_not_errors() {
        let mut h = History::new("m");
        assert_eq!(h.line("not json"), None);
        assert_eq!(h.line("[1, 2]"), None);
        h.line(r#"{"confusion": {"labels": ["a", "b"], "counts": [[1, 2]]}}"#);
        h.line(r#"{"bogus": 1}"#);
        assert_eq!(h.notices.len(), 4, "{:?}", h.notices);
        assert!(h.confusion.is_none());
        h.line(r#"{"confusion": {"labels": ["a", "b"], "counts": [[1, 2], [0, 3]]}}"#);
        assert_eq!(h.confusion.as_ref().unwrap().counts, vec![1, 2, 0, 3]);
    }

    #[test]
    fn an_over_long_line_is_skipped_in_pieces() {
        let mut long = vec![b'x'; 3 * 1024 * 1024];
        long.extend_from_slice(b"\nnext\n");
        let mut r = std::io::BufReader::new(&long[..]);
        skip_line(&mut r);
        let mut rest = String::new();
        std::io::BufRead::read_line(&mut r, &mut rest).unwrap();
        assert_eq!(rest, "next\n");
    }

    #[test]
    fn names_are_bounded() {
        let mut h = History::new("m");
        for i in 0..(MAX_KEYS + 10) {
            h.line(&format!(r#"{{"log": {{"k{i}": 1}}}}"#));
        }
        assert_eq!(h.summary().len(), MAX_KEYS);
        assert_eq!(h.notices.len(), 1);
    }
}
