//! Domain → wire: sweep info, trial summaries and details.

use sweep_proto::pb;

use crate::engine::{Sweep, SweepState, Trial};

/// The wire state of a sweep.
pub fn state(s: SweepState) -> pb::SweepState {
    match s {
        SweepState::Running => pb::SweepState::Running,
        SweepState::Paused => pb::SweepState::Paused,
        SweepState::Stopped => pb::SweepState::Stopped,
        SweepState::Finished => pb::SweepState::Finished,
    }
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
    }
}

/// One leaderboard row.
pub fn trial_summary(s: &Sweep, t: &Trial, rank: u32) -> pb::TrialSummary {
    let m = &s.spec.metric;
    let best = t.best(&m.name, m.goal);
    pb::TrialSummary {
        trial: t.number,
        state: t.state.name().into(),
        params: sweep_proto::json::object_to_pb(&t.params),
        metrics: t.metrics.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        best: best.map(|b| b.0),
        best_step: best.map_or(0, |b| b.1),
        attempts: t.attempt,
        duration_seconds: t.duration,
        worker: t.worker.clone().unwrap_or_default(),
        error: t.error.clone().unwrap_or_default(),
        rank,
    }
}

/// One trial with its curve and confusion matrix.
pub fn trial_detail(s: &Sweep, t: &Trial, rank: u32) -> pb::TrialDetail {
    pb::TrialDetail {
        summary: Some(trial_summary(s, t, rank)),
        curve: t
            .curve
            .iter()
            .flat_map(|(step, m)| {
                m.iter().map(move |(name, value)| pb::MetricPoint {
                    step: *step,
                    name: name.clone(),
                    value: *value,
                })
            })
            .collect(),
        confusion: t
            .confusion
            .as_ref()
            .map(|(labels, counts)| pb::ConfusionMatrix {
                labels: labels.clone(),
                counts: counts.clone(),
            }),
        output: t.output.clone().unwrap_or_default(),
    }
}
