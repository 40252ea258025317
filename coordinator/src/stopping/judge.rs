//! A sweep's stopping rule with what it judges by kept up to date as trials report.
//!
//! [`Rule::should_stop`] reads every trial on every decision: O(trials) a report, so a sweep
//! slows down as it grows. A [`Judge`] keeps, for each step the rule judges at (hyperband's
//! bands, ASHA's rungs, every step for the median rule), the sorted goal-signed values the
//! counted trials had there (the step-th finite value of each history; hyperband and ASHA
//! count every trial, the median rule the finished ones). A change to one trial changes only
//! its own values ([`Judge::update`]: a binary search and an insert or removal per value
//! that differs), and a decision reads one sorted list by index. [`Rule::should_stop`] is the
//! same decision over a judge built from scratch; a test checks that a judge kept up to date
//! through random changes always decides as that one does, to the message.

use std::collections::BTreeMap;

use crate::config::{Goal, Rule};

/// What a judge counts of one trial.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    /// The sweep metric per epoch, in order, finite values only, not goal-signed.
    pub history: Vec<f64>,
    /// Whether the trial finished (the median rule's reference set).
    pub finished: bool,
}

/// A stopping rule and the values it judges by.
#[derive(Debug, Clone)]
pub struct Judge {
    rule: Rule,
    goal: Goal,
    /// Judged step → the counted trials' goal-signed values there, sorted (`total_cmp`).
    at: BTreeMap<u64, Vec<f64>>,
    /// Finished trials (the median rule waits for its startup trials).
    finished: usize,
}

impl Judge {
    /// A judge of no trials yet.
    pub fn new(rule: Rule, goal: Goal) -> Judge {
        Judge {
            rule,
            goal,
            at: BTreeMap::new(),
            finished: 0,
        }
    }

    fn sign(&self, x: f64) -> f64 {
        if self.goal == Goal::Maximize {
            -x
        } else {
            x
        }
    }

    /// Whether the rule reads values at `step`.
    fn judged(&self, step: u64) -> bool {
        match &self.rule {
            Rule::Hyperband { bands, .. } => bands.contains(&step),
            Rule::Asha { rungs, .. } => rungs.contains(&step),
            Rule::Median { .. } => true,
        }
    }

    /// Whether a trial's values count (the median rule counts finished trials only).
    fn counts(&self, s: &Seen) -> bool {
        !matches!(self.rule, Rule::Median { .. }) || s.finished
    }

    /// One trial changed from `old` to `new` (a trial that is new: `old` is the default).
    pub fn update(&mut self, old: &Seen, new: &Seen) {
        self.finished = self.finished + usize::from(new.finished) - usize::from(old.finished);
        let (oc, nc) = (self.counts(old), self.counts(new));
        if !oc && !nc {
            return;
        }
        let (o, n) = (&old.history, &new.history);
        // Values before the first difference are unchanged (when counted both times).
        let from = if oc == nc {
            o.iter()
                .zip(n)
                .take_while(|(a, b)| a.to_bits() == b.to_bits())
                .count()
        } else {
            0
        };
        for i in from..o.len().max(n.len()) {
            let step = i as u64 + 1;
            if !self.judged(step) {
                continue;
            }
            let was = o.get(i).filter(|_| oc).map(|&x| self.sign(x));
            let now = n.get(i).filter(|_| nc).map(|&x| self.sign(x));
            if was.map(f64::to_bits) == now.map(f64::to_bits) {
                continue;
            }
            let vals = self.at.entry(step).or_default();
            if let Some(x) = was {
                if let Ok(k) = vals.binary_search_by(|v| v.total_cmp(&x)) {
                    vals.remove(k);
                }
            }
            if let Some(x) = now {
                let k = vals.partition_point(|v| v.total_cmp(&x).is_lt());
                vals.insert(k, x);
            }
        }
    }

    /// Whether a running trial whose metric history is `mine` (counted by this judge, as
    /// [`Judge::update`] last saw it) should stop now, and why.
    pub fn should_stop(&self, mine: &[f64]) -> Option<String> {
        let mine: Vec<f64> = mine.iter().map(|&x| self.sign(x)).collect();
        let show = |x: f64| self.sign(x); // back to the metric's own sign for messages
        let empty = Vec::new();
        let at = |step: u64| self.at.get(&step).unwrap_or(&empty);
        match &self.rule {
            Rule::Hyperband { bands, eta, strict } => {
                let r = 1.0 / eta;
                let band = bands
                    .iter()
                    .take_while(|&&b| b != 0 && b as usize <= mine.len())
                    .last()
                    .copied()?;
                let vals = at(band);
                let threshold = if vals.is_empty() {
                    f64::INFINITY
                } else {
                    vals[((r * vals.len() as f64) as usize).min(vals.len() - 1)]
                };
                let value = if *strict {
                    mine[band as usize - 1]
                } else {
                    mine.iter().copied().fold(f64::INFINITY, f64::min)
                };
                (value > threshold).then(|| {
                    format!(
                        "hyperband: band {band} (eta {eta}), threshold {:.6}, value {:.6}{}",
                        show(threshold),
                        show(value),
                        if *strict {
                            " at the band"
                        } else {
                            " (best so far)"
                        }
                    )
                })
            }
            Rule::Asha { rungs, eta } => {
                let step = mine.len() as u64;
                if !rungs.contains(&step) {
                    return None;
                }
                let value = *mine.last()?;
                let vals = at(step);
                let n = vals.len();
                let k = ((n as f64 / eta) as usize).max(1);
                let cutoff = *vals.get(k - 1)?;
                (value > cutoff).then(|| {
                    format!("asha: rung {step} (eta {eta}), keeps the best {k} of {n}; cutoff {:.6}, value {:.6}", show(cutoff), show(value))
                })
            }
            Rule::Median {
                startup_trials,
                warmup_steps,
            } => {
                let step = mine.len() as u64;
                if step <= *warmup_steps || step == 0 || self.finished < *startup_trials {
                    return None;
                }
                let vals = at(step);
                if vals.is_empty() {
                    return None;
                }
                let n = vals.len();
                let median = if n % 2 == 1 {
                    vals[n / 2]
                } else {
                    0.5 * (vals[n / 2 - 1] + vals[n / 2])
                };
                let best = mine.iter().copied().fold(f64::INFINITY, f64::min);
                (best > median).then(|| {
                    format!("median: step {step}, median of {n} finished trials {:.6}, best so far {:.6}", show(median), show(best))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::stopping::TrialView;

    fn rules() -> Vec<Rule> {
        let rule = |v: serde_json::Value| Rule::from_config(&v).unwrap();
        vec![
            rule(serde_json::json!({"type": "hyperband", "min_iter": 2, "eta": 2})),
            rule(serde_json::json!({"type": "hyperband", "max_iter": 27, "s": 3, "strict": false})),
            rule(serde_json::json!({"type": "asha", "min_iter": 1, "eta": 3, "max_iter": 9})),
            rule(serde_json::json!({"type": "median", "min_trials": 3, "warmup_steps": 1})),
        ]
    }

    /// Trials report, re-report earlier steps (a later attempt), finish, and are judged after
    /// every change: the judge and the rule that reads every trial always agree.
    #[test]
    fn the_judge_decides_what_the_rule_over_every_trial_decides() {
        for (r, rule) in rules().into_iter().enumerate() {
            for goal in [Goal::Minimize, Goal::Maximize] {
                let mut rng = ChaCha8Rng::seed_from_u64(r as u64);
                let mut judge = Judge::new(rule.clone(), goal);
                let mut trials: Vec<Seen> = vec![Seen::default(); 40];
                let mut decisions = 0;
                for _ in 0..4000 {
                    let i = rng.random_range(0..trials.len());
                    let old = trials[i].clone();
                    let mut new = old.clone();
                    if new.finished {
                        continue;
                    }
                    match rng.random_range(0..10) {
                        0 => new.finished = true,
                        1 if !new.history.is_empty() => {
                            // A later attempt overwrites a step with another value.
                            let k = rng.random_range(0..new.history.len());
                            new.history[k] = f64::from(rng.random_range(0..20u8));
                        }
                        2 if new.history.len() > 2 => new.history.truncate(1),
                        // Ties are common: values from a small set.
                        _ if new.history.len() < 30 => {
                            new.history.push(f64::from(rng.random_range(0..20u8)) / 4.0);
                        }
                        _ => continue,
                    }
                    judge.update(&old, &new);
                    trials[i] = new;
                    let views: Vec<TrialView<'_>> = trials
                        .iter()
                        .map(|t| TrialView {
                            running: !t.finished,
                            finished: t.finished,
                            history: &t.history,
                        })
                        .collect();
                    for (t, view) in trials.iter().zip(&views) {
                        let want = rule.should_stop(goal, view, &views);
                        assert_eq!(judge.should_stop(&t.history), want, "{rule:?} {goal:?}");
                        decisions += usize::from(want.is_some());
                    }
                }
                assert!(decisions > 100, "{rule:?}: only {decisions} stops");
            }
        }
    }
}
