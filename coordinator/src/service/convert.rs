//! Domain → wire: sweep info, trial summaries and details.

use sweep_proto::pb;

use std::collections::HashMap;

use crate::engine::{Param, Params, Sweep, SweepState, Trial};

/// The wire state of a sweep.
pub fn state(s: SweepState) -> pb::SweepState {
    match s {
        SweepState::Running => pb::SweepState::Running,
        SweepState::Paused => pb::SweepState::Paused,
        SweepState::Stopped => pb::SweepState::Stopped,
        SweepState::Finished => pb::SweepState::Finished,
    }
}

/// A trial's parameters on the wire, converted from the engine's typed form directly.
pub fn params(p: &Params) -> HashMap<String, pb::Value> {
    use pb::value::Kind;
    p.iter()
        .map(|(k, v)| {
            let kind = match v {
                Param::Null => None,
                Param::Bool(b) => Some(Kind::Bool(b)),
                Param::Int(i) => Some(Kind::Int(i)),
                // Above i64: the wire's integers are i64, so it travels as a float (as JSON
                // numbers do).
                Param::UInt(u) => Some(Kind::Float(u as f64)),
                Param::Float(f) => Some(Kind::Float(f)),
                Param::Text(t) => Some(Kind::Str(t.to_string())),
                Param::Other(v) => return (k.to_string(), sweep_proto::json::to_pb(v)),
            };
            (k.to_string(), pb::Value { kind })
        })
        .collect()
}

/// A sweep's summary.
pub fn sweep_info(s: &Sweep, workers: u32) -> pb::SweepInfo {
    let c = s.counts();
    let best = s.best();
    pb::SweepInfo {
        id: s.id.clone(),
        name: s.name.clone().unwrap_or_default(),
        method: s.spec.method.name().into(),
        state: state(s.state) as i32,
        config_json: s.config_json.clone(),
        metric: s.spec.metric.name.clone(),
        goal: s.spec.metric.goal.name().into(),
        total: s.spec.total().unwrap_or(0),
        queued: c.queued,
        running: c.running,
        finished: c.finished,
        failed: c.failed,
        stopped: c.stopped,
        best: best.and_then(|t| t.final_value(&s.spec.metric.name)),
        best_trial: best.map(|t| t.number),
        created_at: s.created_at,
        updated_at: s.updated_at,
        workers,
        notices: s.notices(),
        ranked: s.ranked_len() as u64,
        objectives: if s.spec.multi_objective() {
            s.spec
                .objectives()
                .iter()
                .map(|m| pb::Objective {
                    name: m.name.clone(),
                    goal: m.goal.name().into(),
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// One leaderboard row.
pub fn trial_summary(s: &Sweep, t: &Trial, rank: u32) -> pb::TrialSummary {
    let m = &s.spec.metric;
    let best = t.best(&m.name, m.goal);
    pb::TrialSummary {
        trial: t.number,
        state: t.state.name().into(),
        params: params(&t.params),
        metrics: t.metrics.iter().map(|(k, v)| (k.to_string(), v)).collect(),
        best: best.map(|b| b.0),
        best_step: best.map_or(0, |b| b.1),
        attempts: t.attempt,
        duration_seconds: t.duration,
        worker: t.worker.as_deref().unwrap_or_default().to_string(),
        error: t.error.as_deref().unwrap_or_default().to_string(),
        rank,
        name: t.name.as_deref().unwrap_or_default().to_string(),
        front: if rank > 0 { s.front_of(t.number) } else { 0 },
    }
}

/// One trial with its curve (sampled to about `points`: [`crate::curve`]) and confusion
/// matrix. A thinned curve is left empty, to be read from the store ([`add_curve`]).
pub fn trial_detail(s: &Sweep, t: &Trial, rank: u32, points: u32) -> pb::TrialDetail {
    let drawn = crate::search::trial_seed(s.spec.seed, t.number);
    let params = t.params.to_map();
    let (seed, command) = match &s.spec.trainer {
        crate::config::Trainer::Mlp { train_samples, .. } => (
            params.get("seed").and_then(|v| v.as_u64()).unwrap_or(drawn),
            sweep_trainer::command::command_line(&params, drawn, *train_samples),
        ),
        crate::config::Trainer::Program(p) => (drawn, program_command(p, t)),
        _ => (drawn, String::new()),
    };
    let mut d = pb::TrialDetail {
        summary: Some(trial_summary(s, t, rank)),
        curve: Vec::new(),
        confusion: t.confusion().map(|(labels, counts)| pb::ConfusionMatrix {
            labels: labels.to_vec(),
            counts: counts.to_vec(),
        }),
        output: t.output().unwrap_or_default().to_string(),
        seed,
        command,
        attempts: Vec::new(),
        checkpoint: t.checkpoint().map(mark),
        files: Vec::new(),
        curve_points: 0,
        curve_sampled: false,
        gpus: t.gpus().iter().map(|g| g.to_string()).collect(),
        gang: t.gang().iter().map(|m| m.worker.to_string()).collect(),
    };
    if !t.curve.is_thinned() {
        let all = t.curve.points();
        let (kept, sampled) =
            crate::curve::sample(all.iter().map(|p| (p.step, &*p.name, p.value)), points);
        add_curve(
            &mut d,
            crate::curve::Served {
                points: kept,
                total: all.len() as u64,
                sampled,
            },
        );
    }
    d
}

/// The command line a worker runs for a program trial, as W&B's agent builds it (the worker
/// makes the same from the same rules: `worker::program::command`); `${envvar:NAME}` is shown
/// as `$NAME`, the worker's own value, and `${args_json_file}` as `ARGS.json`.
fn program_command(p: &crate::config::ProgramSpec, t: &Trial) -> String {
    use worker::program::command;
    let params: Vec<(String, serde_json::Value)> = t.params.to_map().into_iter().collect();
    let env = |name: &str| Some(format!("${name}"));
    let argv = command::argv(
        p.command.as_deref(),
        &params,
        &command::Context {
            program: p.program.as_deref(),
            interpreter: "python",
            args_json_file: "ARGS.json",
            env: &env,
        },
    );
    argv.iter()
        .map(|w| sweep_trainer::command::shell_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sets a trial's curve as served.
pub fn add_curve(d: &mut pb::TrialDetail, c: crate::curve::Served) {
    d.curve = c
        .points
        .into_iter()
        .map(|(step, name, value)| pb::MetricPoint { step, name, value })
        .collect();
    d.curve_points = c.total;
    d.curve_sampled = c.sampled;
}

/// A kept program file's listing, on the wire.
pub fn file_info(f: crate::store::ProgramFile) -> pb::FileInfo {
    pb::FileInfo {
        path: f.path,
        bytes: f.bytes,
        sha256: f.sha256,
    }
}

/// Where a checkpoint stands, on the wire.
pub fn mark(m: crate::store::CheckpointMark) -> pb::CheckpointMark {
    pb::CheckpointMark {
        epoch: m.epoch,
        batch: m.batch,
        bytes: m.bytes,
        attempt: m.attempt,
    }
}

/// One recorded attempt, on the wire.
pub fn attempt(a: crate::store::AttemptRow) -> pb::AttemptInfo {
    pb::AttemptInfo {
        attempt: a.attempt,
        worker: a.worker.unwrap_or_default(),
        started_at: a.started_at.unwrap_or(0.0),
        ended_at: a.ended_at.unwrap_or(0.0),
        resumed_from: a.resumed_from.map(mark),
        ending: a.ending,
    }
}

/// Fills a trial's detail with what the store keeps of it: its curve, confusion matrix and
/// output.
pub fn add_files(d: &mut pb::TrialDetail, f: crate::store::TrialFiles) -> Result<(), String> {
    add_curve(d, f.curve);
    d.confusion = match f.confusion {
        None => None,
        Some(text) => {
            let (labels, counts) = crate::store::parse_confusion(&text)
                .map_err(|e| format!("the stored confusion matrix cannot be read: {e}"))?;
            Some(pb::ConfusionMatrix { labels, counts })
        }
    };
    d.output = f.output.unwrap_or_default();
    d.gpus = match f.gpus {
        None => Vec::new(),
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| format!("the stored GPUs of the trial cannot be read: {e}"))?,
    };
    Ok(())
}

/// A GPU as the wire carries it, and back.
pub fn gpu(g: &crate::engine::GpuInfo) -> pb::Gpu {
    pb::Gpu {
        id: g.id.clone(),
        index: g.index,
        uuid: g.uuid.clone(),
        name: g.name.clone(),
        memory_mb: g.memory_mb,
    }
}

/// A registered GPU from the wire.
pub fn gpu_info(g: pb::Gpu) -> crate::engine::GpuInfo {
    crate::engine::GpuInfo {
        id: g.id,
        index: g.index,
        uuid: g.uuid,
        name: g.name,
        memory_mb: g.memory_mb,
    }
}

/// A known worker as `ListWorkers` shows it.
pub fn worker_summary(
    id: String,
    w: &crate::engine::WorkerInfo,
    connected: bool,
) -> pb::WorkerSummary {
    pb::WorkerSummary {
        id,
        host: w.host.clone(),
        cores: w.cores,
        slots: w.slots,
        version: w.version.clone(),
        last_seen: w.last_seen,
        connected,
        gpus: w.gpus.iter().map(gpu).collect(),
    }
}
