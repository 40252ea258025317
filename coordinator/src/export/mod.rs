//! Exports: the leaderboard as JSON (schema_version 1) and CSV, confusion matrices as JSON and
//! CSV, and the text table `leaderboard` and `run` print. The schema is documented in
//! docs/EXPORTS.md.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Value};
use sweep_proto::json::MapAsJson;
use sweep_proto::pb;

/// Version of the leaderboard JSON layout.
pub const SCHEMA_VERSION: u32 = 1;

/// The wire state as a name.
pub fn state_name(s: i32) -> &'static str {
    match pb::SweepState::try_from(s) {
        Ok(pb::SweepState::Running) => "running",
        Ok(pb::SweepState::Paused) => "paused",
        Ok(pb::SweepState::Stopped) => "stopped",
        Ok(pb::SweepState::Finished) => "finished",
        _ => "unknown",
    }
}

fn params_json(t: &pb::TrialSummary) -> Value {
    Value::Object(sweep_proto::json::map_to_json(&t.params))
}

/// One leaderboard row, written as JSON directly (also the `trial` of the HTTP API's live
/// events): the same text as building it as a `serde_json::Value` first, keys in order, at a
/// fraction of the cost — every page's leaderboard and every live event is made of rows.
#[derive(Debug)]
pub struct Row<'a>(pub &'a pb::TrialSummary);

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        /// A float as JSON writes it from a `Value`: non-finite is `null`.
        fn num(v: f64) -> Option<f64> {
            v.is_finite().then_some(v)
        }
        struct Metrics<'a>(&'a std::collections::HashMap<String, f64>);
        impl Serialize for Metrics<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut keys: Vec<&String> = self.0.keys().collect();
                keys.sort();
                let mut m = s.serialize_map(Some(keys.len()))?;
                for k in keys {
                    m.serialize_entry(k, &num(self.0[k]))?;
                }
                m.end()
            }
        }
        #[derive(serde::Serialize)]
        struct Best {
            step: u32,
            value: Option<f64>,
        }
        let t = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("attempts", &t.attempts)?;
        m.serialize_entry(
            "best",
            &t.best.map(|v| Best {
                step: t.best_step,
                value: num(v),
            }),
        )?;
        m.serialize_entry("duration_seconds", &num(t.duration_seconds))?;
        m.serialize_entry("error", &(!t.error.is_empty()).then_some(&t.error))?;
        if t.front > 0 {
            m.serialize_entry("front", &t.front)?;
        }
        m.serialize_entry("metrics", &Metrics(&t.metrics))?;
        m.serialize_entry("name", &(!t.name.is_empty()).then_some(&t.name))?;
        m.serialize_entry("params", &MapAsJson(&t.params))?;
        m.serialize_entry("rank", &(t.rank > 0).then_some(t.rank))?;
        m.serialize_entry("state", &t.state)?;
        m.serialize_entry("trial", &t.trial)?;
        m.serialize_entry("worker", &t.worker)?;
        m.end()
    }
}

/// The leaderboard as JSON, written directly (see [`Row`]).
#[derive(Debug)]
pub struct Leaderboard<'a>(pub &'a pb::LeaderboardResponse);

impl Serialize for Leaderboard<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let lb = self.0;
        let info = lb.sweep.clone().unwrap_or_default();
        let config: Value = serde_json::from_str(&info.config_json).unwrap_or(Value::Null);
        struct Rows<'a>(&'a [pb::TrialSummary]);
        impl Serialize for Rows<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(Row))
            }
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("metric", &json!({"name": info.metric, "goal": info.goal}))?;
        if !info.objectives.is_empty() {
            m.serialize_entry("objectives", &objectives_json(&info))?;
            // The trials on the Pareto front, in leaderboard order.
            let front: Vec<u64> = lb
                .trials
                .iter()
                .filter(|t| t.front == 1)
                .map(|t| t.trial)
                .collect();
            m.serialize_entry("pareto_front", &front)?;
        }
        m.serialize_entry("schema_version", &SCHEMA_VERSION)?;
        m.serialize_entry(
            "sweep",
            &json!({"id": info.id, "name": info.name, "method": info.method, "state": state_name(info.state), "config": config}),
        )?;
        m.serialize_entry("trials", &Rows(&lb.trials))?;
        m.end()
    }
}

/// The names a sweep ranks by: its metric, or every objective.
pub fn objective_names(s: &pb::SweepInfo) -> Vec<String> {
    if s.objectives.is_empty() {
        vec![s.metric.clone()]
    } else {
        s.objectives.iter().map(|o| o.name.clone()).collect()
    }
}

/// A sweep's objectives as JSON: `[{name, goal}]` (empty with one).
fn objectives_json(s: &pb::SweepInfo) -> Value {
    s.objectives
        .iter()
        .map(|o| json!({"name": o.name, "goal": o.goal}))
        .collect()
}

/// The leaderboard as a JSON value.
pub fn leaderboard_json(lb: &pb::LeaderboardResponse) -> Value {
    serde_json::to_value(Leaderboard(lb)).unwrap_or(Value::Null)
}

/// A trial's params flattened to dotted names (`optimizer.name`), in key order.
pub fn flat_params(t: &pb::TrialSummary) -> Vec<(String, Value)> {
    let mut flat = Vec::new();
    flatten("", &params_json(t), &mut flat);
    flat
}

/// Flattens nested params to dotted names.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The leaderboard as CSV: rank, trial, state, (the Pareto front with several objectives),
/// best, then one column per parameter and per metric, then attempts, duration, worker, error.
pub fn leaderboard_csv(lb: &pb::LeaderboardResponse) -> String {
    let mut pnames = BTreeSet::new();
    let mut mnames = BTreeSet::new();
    let rows: Vec<Vec<(String, Value)>> = lb
        .trials
        .iter()
        .map(|t| {
            let flat = flat_params(t);
            for (k, _) in &flat {
                pnames.insert(k.clone());
            }
            for k in t.metrics.keys() {
                mnames.insert(k.clone());
            }
            flat
        })
        .collect();
    let mut out = String::new();
    // A column of run names when a program named its runs.
    let named = lb.trials.iter().any(|t| !t.name.is_empty());
    let fronts = lb.trials.iter().any(|t| t.front > 0);
    let mut header = vec!["rank".to_string(), "trial".into(), "state".into()];
    if fronts {
        header.push("front".into());
    }
    if named {
        header.push("name".into());
    }
    header.extend(["best".into(), "best_step".into()]);
    header.extend(pnames.iter().map(|p| format!("param.{p}")));
    header.extend(mnames.iter().map(|m| format!("metric.{m}")));
    header.extend([
        "attempts".into(),
        "duration_seconds".into(),
        "worker".into(),
        "error".into(),
    ]);
    out.push_str(
        &header
            .iter()
            .map(|h| csv_field(h))
            .collect::<Vec<_>>()
            .join(","),
    );
    out.push('\n');
    for (t, flat) in lb.trials.iter().zip(rows) {
        let mut r = vec![
            if t.rank > 0 {
                t.rank.to_string()
            } else {
                String::new()
            },
            t.trial.to_string(),
            t.state.clone(),
        ];
        if fronts {
            r.push(if t.front > 0 {
                t.front.to_string()
            } else {
                String::new()
            });
        }
        if named {
            r.push(t.name.clone());
        }
        r.extend([
            t.best.map_or(String::new(), |v| v.to_string()),
            if t.best.is_some() {
                t.best_step.to_string()
            } else {
                String::new()
            },
        ]);
        for p in &pnames {
            r.push(
                flat.iter()
                    .find(|(k, _)| k == p)
                    .map_or(String::new(), |(_, v)| cell(v)),
            );
        }
        for m in &mnames {
            r.push(t.metrics.get(m).map_or(String::new(), |v| v.to_string()));
        }
        r.extend([
            t.attempts.to_string(),
            format!("{:.3}", t.duration_seconds),
            t.worker.clone(),
            t.error.clone(),
        ]);
        out.push_str(&r.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// A confusion matrix as JSON: `{trial, labels, matrix}` (rows = true class).
pub fn confusion_json(trial: u64, c: &pb::ConfusionMatrix) -> Value {
    let k = c.labels.len().max(1);
    let matrix: Vec<&[u64]> = c.counts.chunks(k).collect();
    json!({"trial": trial, "labels": c.labels, "matrix": matrix, "rows": "true class", "columns": "predicted class"})
}

/// A confusion matrix as CSV with class names on both axes.
pub fn confusion_csv(c: &pb::ConfusionMatrix) -> String {
    let k = c.labels.len().max(1);
    let mut s = String::from("true\\predicted");
    for l in &c.labels {
        s.push(',');
        s.push_str(&csv_field(l));
    }
    s.push('\n');
    for (l, row) in c.labels.iter().zip(c.counts.chunks(k)) {
        s.push_str(&csv_field(l));
        for v in row {
            let _ = write!(s, ",{v}");
        }
        s.push('\n');
    }
    s
}

/// The names of the export files (`files`), in the order they are written.
pub const FILES: [&str; 4] = [
    "leaderboard.json",
    "leaderboard.csv",
    "confusion_best.json",
    "confusion_best.csv",
];

/// The export files in memory, as `(name, bytes)`: leaderboard.json, leaderboard.csv and, when
/// the best trial has one, confusion_best.json and confusion_best.csv.
pub fn files(
    lb: &pb::LeaderboardResponse,
    best: Option<&pb::TrialDetail>,
) -> Vec<(&'static str, Vec<u8>)> {
    let pretty =
        |v: &Value| (serde_json::to_string_pretty(v).unwrap_or_default() + "\n").into_bytes();
    let mut out = vec![
        ("leaderboard.json", pretty(&leaderboard_json(lb))),
        ("leaderboard.csv", leaderboard_csv(lb).into_bytes()),
    ];
    if let Some(d) = best {
        if let (Some(c), Some(s)) = (&d.confusion, &d.summary) {
            out.push(("confusion_best.json", pretty(&confusion_json(s.trial, c))));
            out.push(("confusion_best.csv", confusion_csv(c).into_bytes()));
        }
    }
    out
}

/// `f` with `digits` significant digits, trailing zeros dropped: `0.000968`, `0.1235`, `1.5e-7`.
fn significant(f: f64, digits: usize) -> String {
    if f == 0.0 || !f.is_finite() {
        return f.to_string();
    }
    let exp = f.abs().log10().floor() as i32;
    let trim = |t: String| -> String {
        if t.contains('.') {
            t.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            t
        }
    };
    if !(-5..6).contains(&exp) {
        let t = format!("{:.*e}", digits.saturating_sub(1), f);
        match t.split_once('e') {
            Some((m, e)) => format!("{}e{e}", trim(m.to_string())),
            None => t,
        }
    } else {
        let decimals = (digits as i32 - 1 - exp).max(0) as usize;
        trim(format!("{f:.decimals$}"))
    }
}

/// A parameter's value in a text table; floats with `digits` significant digits.
fn short(v: &Value, digits: usize) -> String {
    match v {
        Value::Number(n) if n.is_f64() => significant(n.as_f64().unwrap_or(0.0), digits),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// How the parameters of a table's trials are shown: those that vary, each with the fewest
/// significant digits (at least 3) that tell its values apart, and those every trial shares.
struct ParamColumns {
    varying: Vec<(String, usize)>,
    same: Vec<(String, Value)>,
}

fn param_columns(rows: &[Vec<(String, Value)>]) -> ParamColumns {
    let mut keys: Vec<String> = Vec::new();
    for r in rows {
        for (k, _) in r {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    let mut cols = ParamColumns {
        varying: Vec::new(),
        same: Vec::new(),
    };
    for k in keys {
        let values: Vec<Option<&Value>> = rows
            .iter()
            .map(|r| r.iter().find(|(n, _)| *n == k).map(|(_, v)| v))
            .collect();
        let first = values[0];
        if rows.len() > 1 && first.is_some() && values.iter().all(|v| *v == first) {
            cols.same.push((k, first.cloned().unwrap_or(Value::Null)));
            continue;
        }
        let mut distinct: Vec<&Value> = values.iter().flatten().copied().collect();
        distinct.sort_by_key(|v| v.to_string());
        distinct.dedup();
        let digits = (3..=17)
            .find(|&d| {
                let mut shown: Vec<String> = distinct.iter().map(|v| short(v, d)).collect();
                shown.sort();
                shown.dedup();
                shown.len() == distinct.len()
            })
            .unwrap_or(17);
        cols.varying.push((k, digits));
    }
    cols
}

pub use sweep_trainer::text::{terminal_lines, terminal_safe};

/// An objective's value in a table column: four decimals, or a whole number as it is (a count
/// such as `param_count`).
pub fn short_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

/// The leaderboard as a text table, best first; client text made [`terminal_safe`].
pub fn leaderboard_table(lb: &pb::LeaderboardResponse) -> String {
    let mut s = lb.sweep.clone().unwrap_or_default();
    for f in [
        &mut s.id,
        &mut s.name,
        &mut s.method,
        &mut s.metric,
        &mut s.goal,
    ] {
        *f = terminal_safe(f).into_owned();
    }
    let seed = serde_json::from_str::<Value>(&s.config_json)
        .ok()
        .and_then(|c| c["seed"].as_u64())
        .map_or(String::new(), |n| format!(", seed {n}"));
    // The columns of values: the metric, or every objective.
    let shown: Vec<(String, String)> = if s.objectives.is_empty() {
        vec![(s.metric.clone(), s.goal.clone())]
    } else {
        s.objectives
            .iter()
            .map(|o| {
                (
                    terminal_safe(&o.name).into_owned(),
                    terminal_safe(&o.goal).into_owned(),
                )
            })
            .collect()
    };
    let ranked_by = shown
        .iter()
        .map(|(n, g)| format!("{n} ({g})"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "sweep {}{} ({}, {}{seed}): {} finished, {} stopped, {} failed, {} running, {} queued; {} {}{}\n",
        s.id,
        if s.name.is_empty() { String::new() } else { format!(" \"{}\"", s.name) },
        s.method,
        state_name(s.state),
        s.finished,
        s.stopped,
        s.failed,
        s.running,
        s.queued,
        if shown.len() > 1 { "objectives" } else { "metric" },
        ranked_by,
        if shown.len() > 1 {
            "; ranked by Pareto front, then crowding"
        } else {
            ""
        }
    );
    let has_test = lb
        .trials
        .iter()
        .any(|t| t.metrics.contains_key("test_accuracy"));
    let flat: Vec<Vec<(String, Value)>> = lb.trials.iter().map(flat_params).collect();
    let cols = param_columns(&flat);
    if !cols.same.is_empty() {
        let same: Vec<String> = cols
            .same
            .iter()
            .map(|(k, v)| terminal_safe(&format!("{k}={}", short(v, 6))).into_owned())
            .collect();
        let _ = writeln!(out, "the same in every trial: {}", same.join(" "));
    }
    // A column of run names when a program named its runs (cut to 24 characters).
    let names: Vec<String> = lb
        .trials
        .iter()
        .map(|t| {
            let n = terminal_safe(&t.name);
            if n.chars().count() > 24 {
                n.chars().take(23).chain(['…']).collect()
            } else {
                n.into_owned()
            }
        })
        .collect();
    let name_w = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let multi = shown.len() > 1;
    let _ = write!(out, "{:>4}  {:>5}", "rank", "trial");
    if multi {
        let _ = write!(out, "  {:>5}", "front");
    }
    if name_w > 0 {
        let _ = write!(out, "  {:<name_w$}", "name");
    }
    for (name, _) in &shown {
        let _ = write!(out, "  {:>12}", name);
    }
    if has_test {
        let _ = write!(out, "  {:>8}", "test_acc");
    }
    let _ = writeln!(out, "  {:<9} {:>7}  params", "state", "seconds");
    for ((t, flat), name) in lb.trials.iter().zip(&flat).zip(&names) {
        let rank = if t.rank > 0 {
            t.rank.to_string()
        } else {
            "-".into()
        };
        let _ = write!(out, "{rank:>4}  {:>5}", t.trial);
        if multi {
            let front = if t.front > 0 {
                t.front.to_string()
            } else {
                "-".into()
            };
            let _ = write!(out, "  {front:>5}");
        }
        if name_w > 0 {
            let _ = write!(out, "  {name:<name_w$}");
        }
        for (metric, _) in &shown {
            let value = t.metrics.get(metric).map_or("-".to_string(), |v| {
                if multi {
                    short_value(*v)
                } else {
                    format!("{v:.4}")
                }
            });
            let _ = write!(out, "  {value:>12}");
        }
        if has_test {
            let ta = t
                .metrics
                .get("test_accuracy")
                .map_or("-".to_string(), |v| format!("{v:.4}"));
            let _ = write!(out, "  {ta:>8}");
        }
        let params: Vec<String> = cols
            .varying
            .iter()
            .filter_map(|(k, digits)| {
                let (_, v) = flat.iter().find(|(n, _)| n == k)?;
                Some(terminal_safe(&format!("{k}={}", short(v, *digits))).into_owned())
            })
            .collect();
        let _ = write!(
            out,
            "  {:<9} {:>7.1}  {}",
            terminal_safe(&t.state),
            t.duration_seconds,
            params.join(" ")
        );
        if !t.error.is_empty() && t.state == "failed" {
            let _ = write!(out, "  ({})", terminal_safe(&t.error));
        }
        out.push('\n');
    }
    out
}

/// A known worker as `coordinator workers --json` and `GET /api/v1/workers` show it.
pub fn worker_json(w: &pb::WorkerSummary) -> serde_json::Value {
    serde_json::json!({
        "id": w.id,
        "host": w.host,
        "cores": w.cores,
        "slots": w.slots,
        "version": w.version,
        "last_seen": w.last_seen,
        "connected": w.connected,
        "gpus": w.gpus.iter().map(|g| serde_json::json!({
            "id": g.id,
            "index": g.index,
            "uuid": g.uuid,
            "name": g.name,
            "memory_mb": g.memory_mb,
        })).collect::<Vec<_>>(),
    })
}

/// A worker's GPUs in a few words: `2 × NVIDIA H100 80GB HBM3 (80 GiB): 0, 1`, kinds apart.
pub fn gpus_text(gpus: &[pb::Gpu]) -> String {
    if gpus.is_empty() {
        return "-".into();
    }
    let mut kinds: Vec<(String, Vec<&str>)> = Vec::new();
    for g in gpus {
        let kind = match (g.name.as_str(), g.memory_mb) {
            ("", _) => "GPU".to_string(),
            (n, 0) => n.to_string(),
            (n, mb) => format!("{n} ({:.0} GiB)", mb as f64 / 1024.0),
        };
        match kinds.iter_mut().find(|k| k.0 == kind) {
            Some(k) => k.1.push(&g.id),
            None => kinds.push((kind, vec![&g.id])),
        }
    }
    kinds
        .iter()
        .map(|(kind, ids)| format!("{} × {kind}: {}", ids.len(), ids.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A sweep's summary as JSON (`status --json`, the HTTP API).
pub fn info_json(s: &pb::SweepInfo) -> serde_json::Value {
    serde_json::json!({
        "id": s.id, "name": s.name, "method": s.method, "state": state_name(s.state),
        "metric": s.metric, "goal": s.goal, "total": if s.total > 0 { Some(s.total) } else { None },
        "queued": s.queued, "running": s.running, "finished": s.finished, "failed": s.failed,
        "stopped": s.stopped, "ranked": s.ranked, "best": s.best, "best_trial": s.best_trial, "workers": s.workers,
        "created_at": s.created_at, "updated_at": s.updated_at, "notices": s.notices,
        "objectives": objectives_json(s),
    })
}

/// One trial as JSON (`trial --json`, the HTTP API).
pub fn trial_json(d: &pb::TrialDetail) -> serde_json::Value {
    let s = d.summary.clone().unwrap_or_default();
    let curve: Vec<serde_json::Value> = d
        .curve
        .iter()
        .map(|p| serde_json::json!({"step": p.step, "name": p.name, "value": p.value}))
        .collect();
    serde_json::json!({
        "trial": s.trial, "name": (!s.name.is_empty()).then_some(&s.name), "state": s.state, "rank": s.rank, "front": (s.front > 0).then_some(s.front), "attempts": s.attempts,
        "params": serde_json::Value::Object(sweep_proto::json::map_to_json(&s.params)),
        "metrics": s.metrics, "best": s.best, "best_step": s.best_step,
        "worker": s.worker, "gpus": d.gpus, "gang": d.gang, "error": s.error, "duration_seconds": s.duration_seconds,
        "curve": curve,
        "curve_points": d.curve_points, "curve_sampled": d.curve_sampled,
        "confusion": d.confusion.as_ref().map(|c| confusion_json(s.trial, c)),
        "output": d.output,
        "seed": d.seed,
        "command": d.command,
        "attempt_history": d.attempts.iter().map(|a| serde_json::json!({
            "attempt": a.attempt, "worker": a.worker, "started_at": a.started_at,
            "ended_at": (a.ended_at > 0.0).then_some(a.ended_at),
            "resumed_from": a.resumed_from.as_ref().map(mark_json), "ending": a.ending,
        })).collect::<Vec<_>>(),
        "checkpoint": d.checkpoint.as_ref().map(mark_json),
        "files": d.files.iter().map(|f| serde_json::json!({
            "path": f.path, "bytes": f.bytes, "sha256": f.sha256,
        })).collect::<Vec<_>>(),
    })
}

fn mark_json(m: &pb::CheckpointMark) -> serde_json::Value {
    serde_json::json!({"epoch": m.epoch, "batch": m.batch, "bytes": m.bytes, "attempt": m.attempt})
}

/// Where a checkpoint stands, in words: "epoch 3", or "epoch 3 + 11 batches".
pub fn position(m: &pb::CheckpointMark) -> String {
    match m.batch {
        0 => format!("epoch {}", m.epoch),
        1 => format!("epoch {} + 1 batch", m.epoch),
        b => format!("epoch {} + {b} batches", m.epoch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_values_have_the_digits_that_tell_them_apart() {
        assert_eq!(significant(9.68e-4, 3), "0.000968");
        assert_eq!(significant(0.1, 3), "0.1");
        assert_eq!(significant(123.456, 3), "123");
        assert_eq!(significant(1.5e-7, 3), "1.5e-7");
        assert_eq!(significant(2.5e7, 3), "2.5e7");
        let rows = |vals: &[f64]| -> Vec<Vec<(String, Value)>> {
            vals.iter()
                .map(|v| {
                    vec![
                        ("lr".to_string(), json!(v)),
                        ("epochs".to_string(), json!(5)),
                    ]
                })
                .collect()
        };
        // The learning rates a table once showed as 1e-3, 2e-4, 2e-4.
        let cols = param_columns(&rows(&[9.68e-4, 2.21e-4, 1.72e-4]));
        assert_eq!(cols.varying, vec![("lr".to_string(), 3)]);
        assert_eq!(cols.same, vec![("epochs".to_string(), json!(5))]);
        let cols = param_columns(&rows(&[0.1, 0.1000001]));
        assert_eq!(cols.varying, vec![("lr".to_string(), 7)]);
        assert_eq!(short(&json!(0.1000001), 7), "0.1000001");
        // One trial: nothing is "the same in every trial".
        let cols = param_columns(&rows(&[0.5]));
        assert_eq!(cols.varying.len(), 2);
    }

    fn lb() -> pb::LeaderboardResponse {
        let p =
            sweep_proto::json::object_to_pb(&json!({"lr": 0.001, "opt": {"name": "adam, fast"}}));
        pb::LeaderboardResponse {
            sweep: Some(pb::SweepInfo {
                id: "abc".into(),
                method: "grid".into(),
                metric: "val_accuracy".into(),
                goal: "maximize".into(),
                config_json: "{\"method\":\"grid\"}".into(),
                state: pb::SweepState::Finished as i32,
                ..Default::default()
            }),
            trials: vec![pb::TrialSummary {
                trial: 2,
                rank: 1,
                state: "finished".into(),
                params: p,
                metrics: [("val_accuracy".to_string(), 0.9)].into(),
                best: Some(0.91),
                best_step: 3,
                attempts: 1,
                ..Default::default()
            }],
        }
    }

    #[test]
    fn files_are_the_named_ones_in_order() {
        let best = pb::TrialDetail {
            summary: lb().trials.first().cloned(),
            curve: vec![],
            confusion: Some(pb::ConfusionMatrix {
                labels: vec!["a".into(), "b".into()],
                counts: vec![3, 1, 0, 4],
            }),
            ..Default::default()
        };
        let names: Vec<&str> = files(&lb(), Some(&best)).iter().map(|f| f.0).collect();
        assert_eq!(names, FILES);
        let names: Vec<&str> = files(&lb(), None).iter().map(|f| f.0).collect();
        assert_eq!(names, FILES[..2]);
    }

    #[test]
    fn rows_written_directly_are_the_text_of_their_json_value() {
        // The row as it was built before (a `serde_json::Value`), keys sorted by the map.
        fn through_value(t: &pb::TrialSummary) -> String {
            let metrics: serde_json::Map<String, Value> = t
                .metrics
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            json!({
                "rank": if t.rank > 0 { json!(t.rank) } else { Value::Null },
                "trial": t.trial,
                "params": Value::Object(sweep_proto::json::map_to_json(&t.params)),
                "metrics": metrics,
                "best": t.best.map(|v| json!({"value": v, "step": t.best_step})),
                "state": t.state,
                "attempts": t.attempts,
                "duration_seconds": t.duration_seconds,
                "worker": t.worker,
                "error": if t.error.is_empty() { Value::Null } else { json!(t.error) },
                "name": if t.name.is_empty() { Value::Null } else { json!(t.name) },
            })
            .to_string()
        }
        let mut rows = lb().trials;
        let mut odd = rows[0].clone();
        odd.rank = 0;
        odd.name = "hl_3 \"bs\" 16".into();
        odd.best = Some(f64::NAN);
        odd.error = "killed \"x\"".into();
        odd.duration_seconds = f64::INFINITY;
        odd.metrics.insert("nan".into(), f64::NAN);
        rows.push(odd);
        for t in &rows {
            assert_eq!(serde_json::to_string(&Row(t)).unwrap(), through_value(t));
        }
    }

    #[test]
    fn json_has_the_documented_shape() {
        let v = leaderboard_json(&lb());
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["sweep"]["state"], "finished");
        assert_eq!(v["metric"]["goal"], "maximize");
        assert_eq!(v["trials"][0]["best"]["step"], 3);
        assert_eq!(v["trials"][0]["params"]["opt"]["name"], "adam, fast");
    }

    #[test]
    fn csv_flattens_params_and_quotes_commas() {
        let c = leaderboard_csv(&lb());
        let mut lines = c.lines();
        let header = lines.next().unwrap();
        assert!(
            header.starts_with(
                "rank,trial,state,best,best_step,param.lr,param.opt.name,metric.val_accuracy"
            ),
            "{header}"
        );
        let row = lines.next().unwrap();
        assert!(
            row.starts_with("1,2,finished,0.91,3,0.001,\"adam, fast\",0.9"),
            "{row}"
        );
    }

    #[test]
    fn confusion_exports() {
        let c = pb::ConfusionMatrix {
            labels: vec!["a".into(), "b,c".into()],
            counts: vec![1, 2, 3, 4],
        };
        assert_eq!(confusion_json(5, &c)["matrix"], json!([[1, 2], [3, 4]]));
        assert_eq!(
            confusion_csv(&c),
            "true\\predicted,a,\"b,c\"\na,1,2\n\"b,c\",3,4\n"
        );
    }
}

#[cfg(test)]
mod terminal_tests {
    #[test]
    fn escapes_and_line_breaks_are_shown_not_obeyed() {
        assert_eq!(super::terminal_safe("plain name"), "plain name");
        assert_eq!(
            super::terminal_safe("a\u{1b}[2Jb\nc\u{9b}d\u{202e}e"),
            "a\\u{1b}[2Jb\\nc\\u{9b}d\\u{202e}e"
        );
    }
}
