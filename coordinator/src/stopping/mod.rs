//! Early termination: which running trials to stop, decided on every Report.
//!
//! - `hyperband`: W&B's rule exactly (sweeps 0.3.0, `hyperband_stop_runs`; checked against its
//!   golden vectors). Bands are `max_iter/ηⁱ` (i = 1…s, floored, sorted) or `min_iter·ηⁱ`;
//!   at each band the threshold is the `⌊len/η⌋`-th smallest value (goal-signed) at that step
//!   over every trial that reached it; a running trial past a band is stopped when its value
//!   at that band (`strict`, W&B's default) or its best value so far (`strict: false`) is worse
//!   than the threshold of the last band it passed.
//! - `asha` (ours): asynchronous successive halving. Rungs at `min_iter·ηᵏ` (≤ `max_iter`);
//!   a trial reaching a rung goes on only if its value there is among the best `⌊n/η⌋` (at
//!   least 1) of the `n` trials that reached that rung so far.
//! - `median` (ours): Optuna's median stopping rule with its defaults (5 startup trials, 0
//!   warm-up steps): once 5 trials have finished, a trial whose best value so far is worse
//!   than the median of the finished trials' values at the same step is stopped.
//!
//! Values are "goal-signed": negated for `maximize`, so smaller is always better here. The
//! engine decides with a [`Judge`] (judge.rs), which keeps the values each rule reads up to
//! date as trials report instead of reading every trial on every report.

use serde_json::Value;

use crate::config::{ConfigError, Goal};

mod judge;

pub use judge::{Judge, Seen};

/// A validated early-termination rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// W&B's hyperband.
    Hyperband {
        /// Steps (1-based epochs) at which runs are judged.
        bands: Vec<u64>,
        /// η.
        eta: f64,
        /// Judge the value at the band (true, W&B's default) or the best so far.
        strict: bool,
    },
    /// Asynchronous successive halving.
    Asha {
        /// Rung steps.
        rungs: Vec<u64>,
        /// η.
        eta: f64,
    },
    /// Median stopping.
    Median {
        /// Finished trials needed before anything is stopped.
        startup_trials: usize,
        /// Steps before anything is stopped.
        warmup_steps: u64,
    },
}

/// One trial as the rules see it.
#[derive(Debug, Clone)]
pub struct TrialView<'a> {
    /// Whether the trial is still running (only running trials are stopped).
    pub running: bool,
    /// Whether it finished (the median rule's reference set).
    pub finished: bool,
    /// The metric per epoch, in order, finite values only, not yet goal-signed.
    pub history: &'a [f64],
}

fn num(m: &serde_json::Map<String, Value>, k: &str) -> Option<f64> {
    m.get(k).and_then(Value::as_f64)
}

impl Rule {
    /// Builds the rule from a validated `early_terminate` block.
    pub fn from_config(v: &Value) -> Result<Rule, ConfigError> {
        let m = v
            .as_object()
            .ok_or_else(|| ConfigError::new("early_terminate", "expected a mapping"))?;
        let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
        let eta = num(m, "eta").unwrap_or(3.0);
        match ty {
            "hyperband" => {
                let strict = m.get("strict").and_then(Value::as_bool).unwrap_or(true);
                let bands = if let Some(min_iter) = num(m, "min_iter") {
                    let mut bands = Vec::new();
                    let mut band = min_iter;
                    // W&B makes 100 bands; past 2⁵³ no history is long enough to matter.
                    for _ in 0..100 {
                        if band > 9.0e15 {
                            break;
                        }
                        bands.push(band as u64);
                        band *= eta;
                    }
                    bands
                } else {
                    let max_iter = num(m, "max_iter").unwrap_or(0.0);
                    let s = num(m, "s").unwrap_or(0.0) as u64;
                    let mut band = max_iter;
                    let mut bands = Vec::new();
                    for _ in 0..s {
                        band /= eta;
                        if band < 1.0 {
                            break;
                        }
                        bands.push(band as u64);
                    }
                    bands.sort_unstable();
                    bands
                };
                if bands.is_empty() {
                    return Err(ConfigError::new(
                        "early_terminate",
                        "hyperband has no bands: increase s, decrease eta, or increase max_iter",
                    ));
                }
                Ok(Rule::Hyperband { bands, eta, strict })
            }
            "asha" => {
                let min_iter = num(m, "min_iter").unwrap_or(1.0).max(1.0);
                let max_iter = num(m, "max_iter").unwrap_or(f64::INFINITY);
                let mut rungs = Vec::new();
                let mut r = min_iter;
                while r <= max_iter && r < 9.0e15 && rungs.len() < 64 {
                    rungs.push(r as u64);
                    r *= eta;
                }
                if rungs.is_empty() {
                    return Err(ConfigError::new(
                        "early_terminate.max_iter",
                        "asha needs max_iter ≥ min_iter",
                    ));
                }
                Ok(Rule::Asha { rungs, eta })
            }
            "median" => Ok(Rule::Median {
                startup_trials: num(m, "min_trials")
                    .or(num(m, "startup_trials"))
                    .unwrap_or(5.0) as usize,
                warmup_steps: num(m, "warmup_steps").unwrap_or(0.0) as u64,
            }),
            other => Err(ConfigError::new(
                "early_terminate.type",
                format!("expected hyperband, asha or median, got {other:?}"),
            )),
        }
    }

    /// Whether `me` (a running trial, one of `all` or not) should stop now, and why, decided
    /// over `all` from scratch: the definition (checked against W&B's golden vectors) that the
    /// engine's [`Judge`], kept up to date as trials change, is tested against.
    pub fn should_stop(
        &self,
        goal: Goal,
        me: &TrialView<'_>,
        all: &[TrialView<'_>],
    ) -> Option<String> {
        let seen = |t: &TrialView<'_>| Seen {
            history: t.history.to_vec(),
            finished: t.finished,
        };
        let mut judge = Judge::new(self.clone(), goal);
        for t in all {
            judge.update(&Seen::default(), &seen(t));
        }
        // ASHA ranks `me` among the trials at its rung, itself included.
        if matches!(self, Rule::Asha { .. })
            && !all.iter().any(|t| std::ptr::eq(t.history, me.history))
        {
            judge.update(&Seen::default(), &seen(me));
        }
        judge.should_stop(me.history)
    }
}

#[cfg(test)]
mod tests;
