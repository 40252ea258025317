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

use crate::config::{Goal, Rule};

mod judge;

pub use judge::{Judge, Seen};

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

impl Rule {
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
