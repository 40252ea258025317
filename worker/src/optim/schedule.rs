//! The learning rate of each step: a linear warm-up, then a constant, step or cosine schedule
//! (docs/TRAINING.md has the formulas). A pure function of the step number, so a trial resumed
//! at any step continues with the same rates.

use sweep_trainer::config::LrSchedule;
use sweep_trainer::names::Schedule;

/// The learning rates of one trial.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    /// The configured learning rate η.
    base: f64,
    schedule: LrSchedule,
    /// Gradient steps per epoch.
    per_epoch: u64,
    /// Steps of the whole trial.
    total: u64,
    /// Steps of the warm-up.
    warmup: u64,
}

impl Rates {
    /// The rates of a trial of `epochs` epochs of `per_epoch` steps at learning rate `base`.
    pub fn new(base: f64, schedule: LrSchedule, per_epoch: usize, epochs: usize) -> Self {
        let per_epoch = per_epoch.max(1) as u64;
        let total = per_epoch * epochs as u64;
        let warmup = (schedule.warmup_epochs * per_epoch as f64).round() as u64;
        Rates {
            base,
            schedule,
            per_epoch,
            total,
            warmup: warmup.min(total),
        }
    }

    /// The rate of step `s` (0-based: the first step of the trial is 0).
    pub fn at(&self, s: u64) -> f64 {
        let sc = &self.schedule;
        let after = match sc.kind {
            Schedule::Constant => self.base,
            Schedule::Step => {
                let decays = (s / self.per_epoch) / sc.step_epochs.max(1) as u64;
                self.base * sc.gamma.powi(i32::try_from(decays).unwrap_or(i32::MAX))
            }
            Schedule::Cosine => {
                let span = self.total.saturating_sub(self.warmup).max(1);
                let t = s.saturating_sub(self.warmup).min(span) as f64 / span as f64;
                sc.min_lr + (self.base - sc.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        };
        if s < self.warmup {
            after * (s + 1) as f64 / self.warmup as f64
        } else {
            after
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(kind: Schedule, warmup_epochs: f64) -> Rates {
        let schedule = LrSchedule {
            kind,
            step_epochs: 2,
            gamma: 0.5,
            min_lr: 0.01,
            warmup_epochs,
        };
        // 4 epochs of 10 steps at η = 0.1.
        Rates::new(0.1, schedule, 10, 4)
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-15, "{a} vs {b}");
    }

    #[test]
    fn each_schedule_by_hand() {
        let c = rates(Schedule::Constant, 0.0);
        close(c.at(0), 0.1);
        close(c.at(39), 0.1);
        // Step: halved every 2 epochs (20 steps).
        let s = rates(Schedule::Step, 0.0);
        close(s.at(19), 0.1);
        close(s.at(20), 0.05);
        close(s.at(39), 0.05);
        close(s.at(40), 0.025);
        // Cosine from 0.1 to 0.01 over 40 steps: the middle is halfway.
        let k = rates(Schedule::Cosine, 0.0);
        close(k.at(0), 0.1);
        close(k.at(20), 0.055);
        close(
            k.at(10),
            0.01 + 0.09 * 0.5 * (1.0 + std::f64::consts::FRAC_1_SQRT_2),
        );
        close(k.at(40), 0.01);
    }

    #[test]
    fn warm_up_rises_linearly_then_the_schedule_runs_on_the_rest() {
        // Half an epoch: 5 steps at 0.02, 0.04, …, 0.1.
        let c = rates(Schedule::Constant, 0.5);
        for s in 0..5 {
            close(c.at(s), 0.1 * (s + 1) as f64 / 5.0);
        }
        close(c.at(5), 0.1);
        // Cosine starts after the warm-up and spans the 35 steps left.
        let k = rates(Schedule::Cosine, 0.5);
        close(k.at(4), 0.1);
        close(k.at(5), 0.1);
        close(k.at(5 + 35), 0.01);
        // A warm-up longer than the trial ends with it.
        let long = rates(Schedule::Constant, 10.0);
        close(long.at(39), 0.1);
    }
}
