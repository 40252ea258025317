//! What the Bayesian model learns from each trial: its final value, or — with an early
//! termination rule that judges at rungs (hyperband's bands, ASHA's rungs) — its value at the
//! highest rung enough trials reached, so trials the rule cut short count too.
//!
//! Without rungs a trial is one loss: the goal-signed final value of a finished or stopped
//! trial, the `impute` value of a failed one, `None` (pending) for one still to end
//! ([`final_losses`]). That mixes budgets: a trial stopped at epoch 2 and one trained for 10
//! are compared by values at different epochs, and until several trials have finished (under
//! hyperband, few do) the model knows little.
//!
//! With rungs (`bayes.learn_from_rungs`), as BOHB does (Falkner et al., 2018: a model per
//! budget, built on the largest budget with enough observations), [`losses`] picks the highest
//! *level* — the trials' final values, else the highest rung — that at least `min_count`
//! trials have a value at. At the final level the losses are the final ones; at a rung every
//! trial's loss is its value there; the constant liar's worst there if it was stopped or
//! failed before reaching it (the rule judged it worse than the others, which is what the
//! model should learn); its final value if it finished before the rung (a shorter run, not a
//! cut one); pending if it is still running. A [`Rungs`] keeps each trial's values at the
//! rule's rungs, so a trial whose curve has left memory (trimmed) still counts.
//!
//! It is off by default: on the seed's space (the tabulated Fashion-MNIST surrogate,
//! `sweep-bench search`, 200 seeds) it did not reach a target in fewer epochs than final
//! values do — the epoch-2 values it models on early favour configurations that learn fast,
//! not those that end best (docs/BENCHMARKS.md). Stopped trials as the worst at the final
//! level too made no difference there.

use crate::config::{Impute, Rule};

/// How a trial ended, as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Running or queued: not yet an observation.
    Pending,
    /// Trained every epoch.
    Finished,
    /// Stopped early (by the rule, or with the sweep).
    Stopped,
    /// Failed.
    Failed,
}

/// One trial of the sweep: how it ended and its goal-signed final value (smaller is better).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ended {
    /// How it ended.
    pub outcome: Outcome,
    /// Its final value, goal-signed, if it has one.
    pub value: Option<f64>,
}

/// Each trial's loss from its final value: a finished or stopped trial's value (the worst
/// seen when it has none); a failed one's by `impute` (the worst or best value of the ended
/// trials, or its own latest value); `None` for a pending trial, or when no trial has a value.
pub fn final_losses(trials: &[Ended], impute: Impute) -> Vec<Option<f64>> {
    let observed = trials
        .iter()
        .filter(|t| matches!(t.outcome, Outcome::Finished | Outcome::Stopped))
        .filter_map(|t| t.value);
    let (best, worst) = observed.fold((f64::INFINITY, f64::NEG_INFINITY), |(b, w), v| {
        (b.min(v), w.max(v))
    });
    let worst = worst.is_finite().then_some(worst);
    let best = best.is_finite().then_some(best);
    trials
        .iter()
        .map(|t| match t.outcome {
            Outcome::Pending => None,
            Outcome::Finished | Outcome::Stopped => t.value.or(worst),
            Outcome::Failed => match impute {
                Impute::Worst => worst,
                Impute::Best => best,
                Impute::Latest => t.value.or(worst),
            },
        })
        .collect()
}

/// The level [`losses`] modelled at: the trials' final values, or a rung's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Final values ([`final_losses`]).
    Final,
    /// The values at this step (1-based epoch) of the rule.
    Rung(u64),
}

/// Each trial's loss at the highest level at least `min_count` trials reached (see the module
/// docs), and that level. `trials[i]` ended as it says with final losses `finals[i]` (from
/// [`final_losses`]) and goal-signed values `at_rungs[i]` at the first rungs of `steps`.
/// At the final level (`min_count` trials finished), or with no level that full, the final
/// losses as they are.
pub fn losses(
    trials: &[Ended],
    finals: &[Option<f64>],
    steps: &[u64],
    at_rungs: &[&[f64]],
    min_count: usize,
) -> (Vec<Option<f64>>, Level) {
    let min_count = min_count.max(1);
    let finished = || {
        trials
            .iter()
            .zip(finals)
            .filter(|(t, f)| t.outcome == Outcome::Finished && f.is_some())
    };
    if finished().count() >= min_count {
        return (finals.to_vec(), Level::Final);
    }
    let highest = (0..steps.len())
        .rev()
        .find(|&k| at_rungs.iter().filter(|v| v.len() > k).count() >= min_count);
    let Some(k) = highest else {
        return (finals.to_vec(), Level::Final);
    };
    let worst = at_rungs
        .iter()
        .filter_map(|v| v.get(k).copied())
        .fold(f64::NEG_INFINITY, f64::max);
    let out = trials
        .iter()
        .zip(finals)
        .zip(at_rungs)
        .map(|((t, f), v)| match (v.get(k), t.outcome) {
            (Some(&x), _) => Some(x),
            (None, Outcome::Pending) => None,
            (None, Outcome::Finished) => f.or(Some(worst)),
            (None, Outcome::Stopped | Outcome::Failed) => Some(worst),
        })
        .collect();
    (out, Level::Rung(steps[k]))
}

/// Each trial's values of the sweep's metric at the rule's rungs (not goal-signed), kept as
/// the trials report.
#[derive(Debug, Clone, Default)]
pub struct Rungs {
    steps: Vec<u64>,
    /// By trial number − 1: the values at the first rungs it reached.
    values: Vec<Box<[f64]>>,
}

impl Rungs {
    /// Rungs at the steps `rule` judges at (`None` for the median rule, which judges every
    /// step: it has no budgets to model at).
    pub fn of(rule: &Rule) -> Option<Rungs> {
        let steps = match rule {
            Rule::Hyperband { bands, .. } => bands,
            Rule::Asha { rungs, .. } => rungs,
            Rule::Median { .. } => return None,
        };
        let mut steps: Vec<u64> = steps.iter().copied().filter(|&s| s > 0).collect();
        steps.sort_unstable();
        steps.dedup();
        Some(Rungs {
            steps,
            values: Vec::new(),
        })
    }

    /// The rungs' steps, ascending.
    pub fn steps(&self) -> &[u64] {
        &self.steps
    }

    /// Trial `n` (1-based) has reported `history`: the metric per epoch, finite values only
    /// (the step-th value is the one at step).
    pub fn set(&mut self, n: u64, history: &[f64]) {
        let Some(i) = n.checked_sub(1).and_then(|i| usize::try_from(i).ok()) else {
            return;
        };
        let at: Box<[f64]> = self
            .steps
            .iter()
            .map_while(|&s| usize::try_from(s - 1).ok().and_then(|j| history.get(j)))
            .copied()
            .collect();
        if self.values.len() <= i {
            if at.is_empty() {
                return;
            }
            self.values.resize_with(i + 1, Box::default);
        }
        self.values[i] = at;
    }

    /// Trial `n`'s values at the rungs it reached, in order.
    pub fn at(&self, n: u64) -> &[f64] {
        n.checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.values.get(i))
            .map_or(&[], |v| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(outcome: Outcome, value: Option<f64>) -> Ended {
        Ended { outcome, value }
    }

    #[test]
    fn final_losses_follow_impute_and_leave_pending_trials_out() {
        let trials = [
            ended(Outcome::Finished, Some(0.2)),
            ended(Outcome::Stopped, Some(0.9)),
            ended(Outcome::Failed, Some(0.1)),
            ended(Outcome::Pending, Some(0.0)),
            ended(Outcome::Finished, None),
        ];
        let l = |impute| final_losses(&trials, impute);
        assert_eq!(
            l(Impute::Worst),
            [Some(0.2), Some(0.9), Some(0.9), None, Some(0.9)]
        );
        assert_eq!(l(Impute::Best)[2], Some(0.2));
        assert_eq!(l(Impute::Latest)[2], Some(0.1));
        assert_eq!(
            final_losses(&[ended(Outcome::Failed, None)], Impute::Worst),
            [None]
        );
    }

    /// Hand-worked: rungs at 2 and 4; three trials reached 4, five reached 2.
    #[test]
    fn losses_are_taken_at_the_highest_rung_enough_trials_reached() {
        use Outcome::*;
        let trials = [
            ended(Stopped, Some(0.5)), // cut at 2
            ended(Finished, Some(0.1)),
            ended(Pending, None),        // at 4 already
            ended(Stopped, Some(0.3)),   // cut at 4
            ended(Pending, None),        // not at 2 yet
            ended(Failed, None),         // failed before 2
            ended(Finished, Some(0.45)), // epochs: 1, finished before rung 2
            ended(Stopped, Some(0.6)),   // cut at 2
        ];
        let finals = final_losses(&trials, Impute::Worst);
        let at: Vec<&[f64]> = vec![
            &[0.5],
            &[0.4, 0.2],
            &[0.35, 0.25],
            &[0.45, 0.3],
            &[],
            &[],
            &[],
            &[0.6],
        ];
        let (l, level) = losses(&trials, &finals, &[2, 4], &at, 3);
        assert_eq!(level, Level::Rung(4));
        // Worst at rung 4 is 0.3; the short finished trial keeps its final value.
        assert_eq!(
            l,
            [
                Some(0.3),
                Some(0.2),
                Some(0.25),
                Some(0.3),
                None,
                Some(0.3),
                Some(0.45),
                Some(0.3)
            ]
        );
        // Four at rung 4 needed: rung 2 (five reached it), worst there 0.6.
        let (l, level) = losses(&trials, &finals, &[2, 4], &at, 4);
        assert_eq!(level, Level::Rung(2));
        assert_eq!(
            l,
            [
                Some(0.5),
                Some(0.4),
                Some(0.35),
                Some(0.45),
                None,
                Some(0.6),
                Some(0.45),
                Some(0.6)
            ]
        );
        // Six: no level has enough; the final losses as they are.
        let (l, level) = losses(&trials, &finals, &[2, 4], &at, 6);
        assert_eq!((l, level), (finals.clone(), Level::Final));
        // Two finished trials: the final level, the final losses as they are.
        let (l, level) = losses(&trials, &finals, &[2, 4], &at, 2);
        assert_eq!((l, level), (finals.clone(), Level::Final));
    }

    #[test]
    fn rungs_keep_the_values_at_the_steps_each_trial_reached() {
        let rule =
            Rule::from_config(&serde_json::json!({"type": "hyperband", "min_iter": 2, "eta": 2}))
                .unwrap();
        let mut r = Rungs::of(&rule).unwrap();
        assert_eq!(&r.steps()[..4], [2, 4, 8, 16]);
        r.set(3, &[0.1, 0.2, 0.3, 0.4, 0.5]);
        r.set(1, &[0.9]);
        assert_eq!(r.at(3), [0.2, 0.4]);
        assert_eq!(r.at(1), [] as [f64; 0]);
        assert_eq!(r.at(2), [] as [f64; 0]);
        assert_eq!(r.at(99), [] as [f64; 0]);
        // A later attempt reported less (its history restarts): the values follow.
        r.set(3, &[0.7, 0.6]);
        assert_eq!(r.at(3), [0.6]);
        r.set(0, &[1.0, 2.0]); // no trial 0: ignored
        let median = Rule::from_config(&serde_json::json!({"type": "median"})).unwrap();
        assert!(Rungs::of(&median).is_none());
    }
}
