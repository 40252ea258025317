//! Optimizers: sgd, momentum, nag, rmsprop, adam, nadam, adamw, adagrad, with weight decay.
//!
//! Exact update rules, for gradient `g` (after weight decay, `g ← g + λ w` on weights only —
//! except adamw, whose decay is decoupled from the gradient), learning rate `η`, step `t`
//! starting at 1, all state starting at zero:
//!
//! | name | update | reference |
//! |---|---|---|
//! | sgd | `w ← w − η g` | Robbins & Monro (1951) |
//! | momentum | `v ← μ v + η g`; `w ← w − v` | Qian (1999); Rumelhart et al. (1986) |
//! | nag | `v ← μ v + η g`; `w ← w − (μ v + η g)` | Nesterov (1983) in the form of Bengio, Boulanger-Lewandowski & Pascanu (2013), eq. 7; equal to PyTorch's `SGD(nesterov=True)` at constant η |
//! | rmsprop | `s ← β s + (1 − β) g²`; `w ← w − η g / (√s + ε)` | Tieleman & Hinton (2012), lecture 6e; ε outside the root as in PyTorch |
//! | adam | `m ← β₁ m + (1 − β₁) g`; `v ← β₂ v + (1 − β₂) g²`; `m̂ = m / (1 − β₁ᵗ)`; `v̂ = v / (1 − β₂ᵗ)`; `w ← w − η m̂ / (√v̂ + ε)` | Kingma & Ba (2015), Algorithm 1 |
//! | nadam | `m`, `v`, `m̂`, `v̂` as adam; `w ← w − η / (√v̂ + ε) · (β₁ m̂ + (1 − β₁) g / (1 − β₁ᵗ))` | Dozat (2016), "Incorporating Nesterov Momentum into Adam", with a constant momentum schedule `μₜ = β₁` |
//! | adamw | `w ← w (1 − η λ)` (weights only), then adam with the gradient without decay | Loshchilov & Hutter (2019), "Decoupled Weight Decay Regularization"; PyTorch's `AdamW` |
//! | adagrad | `s ← s + g²`; `w ← w − η g / (√s + ε)` | Duchi, Hazan & Singer (2011); PyTorch's `Adagrad` (no learning-rate decay, accumulator from 0) |
//!
//! `momentum` is μ (momentum, nag), `beta` is β (rmsprop), `beta1`/`beta2` are β₁/β₂ (adam,
//! nadam, adamw); a parameter that an optimizer does not use is ignored. ε is `epsilon` for
//! every optimizer (default 1e-8; PyTorch's Adagrad defaults to 1e-10).

pub mod schedule;

use std::ops::Range;

use crate::nn::kernels::{self, dispatch};
use crate::nn::Real;

pub use sweep_trainer::config::Hyper;
pub use sweep_trainer::names::OptimizerKind;

/// An optimizer with its state for one parameter buffer.
#[derive(Debug, Clone)]
pub struct Optimizer<T: Real> {
    /// Which update rule.
    kind: OptimizerKind,
    /// Its hyperparameters.
    hp: Hyper,
    /// First state vector (velocity, or first moment), one per parameter.
    s1: Vec<T>,
    /// Second state vector (squared-gradient average), one per parameter.
    s2: Vec<T>,
    /// Steps taken.
    t: u64,
    /// Parameter ranges that take weight decay (the weight matrices).
    decayed: Vec<Range<usize>>,
}

impl<T: Real> Optimizer<T> {
    /// An optimizer for `n` parameters; weight decay applies to the `decayed` ranges.
    pub fn new(kind: OptimizerKind, hp: Hyper, n: usize, decayed: Vec<Range<usize>>) -> Self {
        let needs1 = !matches!(kind, OptimizerKind::Sgd | OptimizerKind::Adagrad);
        let needs2 = matches!(
            kind,
            OptimizerKind::Rmsprop
                | OptimizerKind::Adam
                | OptimizerKind::Nadam
                | OptimizerKind::AdamW
                | OptimizerKind::Adagrad
        );
        Optimizer {
            kind,
            hp,
            s1: vec![T::zero(); if needs1 { n } else { 0 }],
            s2: vec![T::zero(); if needs2 { n } else { 0 }],
            t: 0,
            decayed,
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// The state a resumed run needs: steps taken and the two state vectors (empty when the
    /// rule keeps none).
    pub fn state(&self) -> (u64, &[T], &[T]) {
        (self.t, &self.s1, &self.s2)
    }

    /// Puts back a state taken with [`Optimizer::state`] from an optimizer of the same rule
    /// and size; says what does not fit otherwise.
    pub fn restore(&mut self, steps: u64, s1: &[T], s2: &[T]) -> Result<(), String> {
        for (name, have, want) in [
            ("s1", s1.len(), self.s1.len()),
            ("s2", s2.len(), self.s2.len()),
        ] {
            if have != want {
                return Err(format!(
                    "optimizer state {name}: {have} values, expected {want} for {}",
                    self.kind.name()
                ));
            }
        }
        self.t = steps;
        self.s1.copy_from_slice(s1);
        self.s2.copy_from_slice(s2);
        Ok(())
    }

    /// Sets the learning rate of the next steps (a schedule's rate; adamw's decay uses it too).
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.hp.learning_rate = lr;
    }

    /// Applies one update. `grads` is consumed as scratch (weight decay is added into it).
    pub fn step(&mut self, params: &mut [T], grads: &mut [T]) {
        assert_eq!(params.len(), grads.len());
        self.t += 1;
        let hp = self.hp;
        if hp.clip_norm > 0.0 {
            clip(grads, hp.clip_norm);
        }
        if hp.weight_decay != 0.0 {
            let wd = T::c(hp.weight_decay);
            for r in &self.decayed {
                if self.kind == OptimizerKind::AdamW {
                    // Decoupled: the weights shrink, the gradient stays as it is.
                    scale(
                        &mut params[r.clone()],
                        T::one() - T::c(hp.learning_rate) * wd,
                    );
                } else {
                    kernels::add_decay(&mut grads[r.clone()], &params[r.clone()], wd);
                }
            }
        }
        let lr = T::c(hp.learning_rate);
        let eps = T::c(hp.epsilon);
        match self.kind {
            OptimizerKind::Sgd => sgd(params, grads, lr),
            OptimizerKind::Momentum => {
                momentum(params, grads, &mut self.s1, lr, T::c(hp.momentum), false)
            }
            OptimizerKind::Nag => {
                momentum(params, grads, &mut self.s1, lr, T::c(hp.momentum), true)
            }
            OptimizerKind::Rmsprop => rmsprop(params, grads, &mut self.s2, lr, T::c(hp.beta), eps),
            OptimizerKind::Adagrad => adagrad(params, grads, &mut self.s2, lr, eps),
            OptimizerKind::Adam | OptimizerKind::Nadam | OptimizerKind::AdamW => {
                let t = self.t as i32;
                let c1 = 1.0 / (1.0 - hp.beta1.powi(t));
                let c2 = 1.0 / (1.0 - hp.beta2.powi(t));
                let k = AdamConsts {
                    lr,
                    b1: T::c(hp.beta1),
                    b2: T::c(hp.beta2),
                    eps,
                    c1: T::c(c1),
                    c2: T::c(c2),
                    // nadam's weights on m̂ and on the bias-corrected current gradient.
                    nesterov: matches!(self.kind, OptimizerKind::Nadam),
                };
                adam(params, grads, &mut self.s1, &mut self.s2, k);
            }
        }
    }
}

fn sgd<T: Real>(w: &mut [T], g: &[T], lr: T) {
    dispatch!(sgd, fn(w: &mut [T], g: &[T], lr: T) {
        for (w, &g) in w.iter_mut().zip(g) {
            *w -= lr * g;
        }
    })
}

fn momentum<T: Real>(w: &mut [T], g: &[T], v: &mut [T], lr: T, mu: T, nesterov: bool) {
    dispatch!(momentum, fn(w: &mut [T], g: &[T], v: &mut [T], lr: T, mu: T, nesterov: bool) {
        if nesterov {
            for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
                *v = mu * *v + lr * g;
                *w -= mu * *v + lr * g;
            }
        } else {
            for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
                *v = mu * *v + lr * g;
                *w -= *v;
            }
        }
    })
}

/// Scales `g` down so that its L2 norm is at most `max` (PyTorch's `clip_grad_norm_`: by
/// `max / (norm + 1e-6)` when that is below 1). The norm is summed in `f64`, in order, so it is
/// the same on every machine and thread count.
fn clip<T: Real>(g: &mut [T], max: f64) {
    let norm = g.iter().map(|&x| x.f64() * x.f64()).sum::<f64>().sqrt();
    let by = max / (norm + 1e-6);
    if by < 1.0 {
        scale(g, T::c(by));
    }
}

fn scale<T: Real>(w: &mut [T], by: T) {
    dispatch!(scale, fn(w: &mut [T], by: T) {
        for w in w.iter_mut() {
            *w *= by;
        }
    })
}

fn adagrad<T: Real>(w: &mut [T], g: &[T], s: &mut [T], lr: T, eps: T) {
    dispatch!(adagrad, fn(w: &mut [T], g: &[T], s: &mut [T], lr: T, eps: T) {
        for ((w, &g), s) in w.iter_mut().zip(g).zip(s.iter_mut()) {
            *s += g * g;
            *w -= lr * g / (s.sqrt() + eps);
        }
    })
}

fn rmsprop<T: Real>(w: &mut [T], g: &[T], s: &mut [T], lr: T, beta: T, eps: T) {
    dispatch!(rmsprop, fn(w: &mut [T], g: &[T], s: &mut [T], lr: T, beta: T, eps: T) {
        let one_b = T::one() - beta;
        for ((w, &g), s) in w.iter_mut().zip(g).zip(s.iter_mut()) {
            *s = beta * *s + one_b * g * g;
            *w -= lr * g / (s.sqrt() + eps);
        }
    })
}

#[derive(Debug, Clone, Copy)]
struct AdamConsts<T> {
    lr: T,
    b1: T,
    b2: T,
    eps: T,
    /// 1 / (1 − β₁ᵗ)
    c1: T,
    /// 1 / (1 − β₂ᵗ)
    c2: T,
    nesterov: bool,
}

fn adam<T: Real>(w: &mut [T], g: &[T], m: &mut [T], v: &mut [T], k: AdamConsts<T>) {
    dispatch!(adam, fn(w: &mut [T], g: &[T], m: &mut [T], v: &mut [T], k: AdamConsts<T>) {
        let (one_b1, one_b2) = (T::one() - k.b1, T::one() - k.b2);
        let it = w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut());
        if k.nesterov {
            let (a, b) = (k.b1 * k.c1, one_b1 * k.c1);
            for (((w, &g), m), v) in it {
                *m = k.b1 * *m + one_b1 * g;
                *v = k.b2 * *v + one_b2 * g * g;
                let denom = (*v * k.c2).sqrt() + k.eps;
                *w -= k.lr * (a * *m + b * g) / denom;
            }
        } else {
            let a = k.lr * k.c1;
            for (((w, &g), m), v) in it {
                *m = k.b1 * *m + one_b1 * g;
                *v = k.b2 * *v + one_b2 * g * g;
                *w -= a * *m / ((*v * k.c2).sqrt() + k.eps);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two steps on one parameter `w = 1` with gradients 0.5 then −0.2, η = 0.1.
    fn two_steps(kind: OptimizerKind, hp: Hyper) -> (f64, f64) {
        let mut opt = Optimizer::<f64>::new(kind, hp, 1, std::iter::once(0..1).collect());
        let mut w = [1.0];
        opt.step(&mut w, &mut [0.5]);
        let w1 = w[0];
        opt.step(&mut w, &mut [-0.2]);
        (w1, w[0])
    }

    fn hp() -> Hyper {
        Hyper {
            learning_rate: 0.1,
            ..Hyper::default()
        }
    }

    fn close(got: (f64, f64), want: (f64, f64)) {
        assert!(
            (got.0 - want.0).abs() < 1e-9 && (got.1 - want.1).abs() < 1e-9,
            "got {got:?}, want {want:?}"
        );
    }

    #[test]
    fn sgd_by_hand() {
        // w1 = 1 − 0.1·0.5 = 0.95; w2 = 0.95 + 0.1·0.2 = 0.97.
        close(two_steps(OptimizerKind::Sgd, hp()), (0.95, 0.97));
    }

    #[test]
    fn weight_decay_by_hand() {
        // λ = 0.1: g1 = 0.5 + 0.1·1 = 0.6, w1 = 0.94; g2 = −0.2 + 0.094 = −0.106, w2 = 0.9506.
        let h = Hyper {
            weight_decay: 0.1,
            ..hp()
        };
        close(two_steps(OptimizerKind::Sgd, h), (0.94, 0.9506));
        // Ranges outside `decayed` (biases) get no decay.
        let mut opt =
            Optimizer::<f64>::new(OptimizerKind::Sgd, h, 2, std::iter::once(0..1).collect());
        let mut w = [1.0, 1.0];
        opt.step(&mut w, &mut [0.5, 0.5]);
        assert_eq!(w, [0.94, 0.95]);
    }

    #[test]
    fn momentum_by_hand() {
        // v1 = 0.05, w1 = 0.95; v2 = 0.9·0.05 − 0.02 = 0.025, w2 = 0.925.
        close(two_steps(OptimizerKind::Momentum, hp()), (0.95, 0.925));
    }

    #[test]
    fn nag_by_hand() {
        // v1 = 0.05, w1 = 1 − (0.045 + 0.05) = 0.905;
        // v2 = 0.025, w2 = 0.905 − (0.0225 − 0.02) = 0.9025.
        close(two_steps(OptimizerKind::Nag, hp()), (0.905, 0.9025));
    }

    #[test]
    fn rmsprop_by_hand() {
        // s1 = 0.1·0.25 = 0.025, w1 = 1 − 0.05/(√0.025 + 1e-8) = 0.68377225398…;
        // s2 = 0.0225 + 0.004 = 0.0265, w2 = w1 + 0.02/(√0.0265 + 1e-8) = 0.80663126980…
        close(
            two_steps(OptimizerKind::Rmsprop, hp()),
            (0.683_772_253_983_160_8, 0.806_631_269_802_781_7),
        );
    }

    #[test]
    fn adam_by_hand() {
        // t1: m = 0.05, v = 2.5e-4, m̂ = 0.5, v̂ = 0.25, w1 = 1 − 0.1·0.5/(0.5 + 1e-8);
        // t2: m = 0.025, v = 2.8975e-4, m̂ = 0.025/0.19, v̂ = 2.8975e-4/0.001999,
        //     w2 = w1 − 0.1·m̂/(√v̂ + 1e-8) = 0.86543941811…
        close(
            two_steps(OptimizerKind::Adam, hp()),
            (0.900_000_002, 0.865_439_418_116_510_8),
        );
    }

    #[test]
    fn nadam_by_hand() {
        // t1: w1 = 1 − 0.1/(0.5 + 1e-8)·(0.9·0.5 + 0.1·0.5/0.1) = 1 − 0.2·0.95 ≈ 0.81;
        // t2: w2 = w1 − 0.1/(√v̂ + 1e-8)·(0.9·m̂ + 0.1·(−0.2)/0.19) = 0.80654394541…
        close(
            two_steps(OptimizerKind::Nadam, hp()),
            (0.810_000_003_8, 0.806_543_945_411_651),
        );
    }

    #[test]
    fn adagrad_by_hand() {
        // s1 = 0.25, w1 = 1 − 0.1·0.5/(0.5 + 1e-8) = 0.900000002;
        // s2 = 0.29, w2 = w1 + 0.1·0.2/(√0.29 + 1e-8) = 0.93713906894…
        close(
            two_steps(OptimizerKind::Adagrad, hp()),
            (0.900_000_002, 0.937_139_068_945_755_2),
        );
    }

    #[test]
    fn adamw_by_hand() {
        // λ = 0.1: each step first w ← w·(1 − 0.1·0.1), then adam's step on the bare gradient:
        // w1 = 0.99 − 0.1·0.5/(0.5 + 1e-8) = 0.890000002;
        // w2 = 0.99·w1 − 0.1·m̂/(√v̂ + 1e-8) (m̂, v̂ as adam's) = 0.84653941809…
        let h = Hyper {
            weight_decay: 0.1,
            ..hp()
        };
        close(
            two_steps(OptimizerKind::AdamW, h),
            (0.890_000_002, 0.846_539_418_096_510_8),
        );
        // Without decay it is adam; with it, not adam with L2 (the decay is decoupled).
        assert_eq!(
            two_steps(OptimizerKind::AdamW, hp()),
            two_steps(OptimizerKind::Adam, hp())
        );
        assert_ne!(
            two_steps(OptimizerKind::AdamW, h),
            two_steps(OptimizerKind::Adam, h)
        );
        // Biases (outside `decayed`) do not shrink.
        let mut opt =
            Optimizer::<f64>::new(OptimizerKind::AdamW, h, 2, std::iter::once(0..1).collect());
        let mut w = [1.0, 1.0];
        opt.step(&mut w, &mut [0.0, 0.0]);
        assert_eq!(w, [0.99, 1.0]);
    }

    #[test]
    fn clipping_by_hand() {
        // Gradient (3, 4): norm 5. clip_norm 1: scaled by 1/(5 + 1e-6), so sgd with η = 0.1
        // moves w = (1, 1) by 0.1·(0.6, 0.8)·(5/(5 + 1e-6)).
        let h = Hyper {
            clip_norm: 1.0,
            ..hp()
        };
        let mut opt = Optimizer::<f64>::new(OptimizerKind::Sgd, h, 2, Vec::new());
        let mut w = [1.0, 1.0];
        opt.step(&mut w, &mut [3.0, 4.0]);
        let k = 0.1 / (5.0 + 1e-6);
        assert!((w[0] - (1.0 - 3.0 * k)).abs() < 1e-15 && (w[1] - (1.0 - 4.0 * k)).abs() < 1e-15);
        // A gradient already shorter than clip_norm is left as it is.
        let mut w = [1.0, 1.0];
        let h = Hyper {
            clip_norm: 10.0,
            ..hp()
        };
        Optimizer::<f64>::new(OptimizerKind::Sgd, h, 2, Vec::new()).step(&mut w, &mut [3.0, 4.0]);
        assert_eq!(w, [1.0 - 0.1 * 3.0, 1.0 - 0.1 * 4.0]);
        // Clipping comes before weight decay (as clip_grad_norm_ before optimizer.step).
        let h = Hyper {
            clip_norm: 1.0,
            weight_decay: 0.5,
            ..hp()
        };
        let mut w = [1.0, 1.0];
        Optimizer::<f64>::new(OptimizerKind::Sgd, h, 2, std::iter::once(0..2).collect())
            .step(&mut w, &mut [3.0, 4.0]);
        let k = 1.0 / (5.0 + 1e-6);
        assert!((w[0] - (1.0 - 0.1 * (3.0 * k + 0.5))).abs() < 1e-15);
    }

    #[test]
    fn names_parse() {
        assert_eq!("NAG".parse::<OptimizerKind>().unwrap(), OptimizerKind::Nag);
        assert_eq!(
            "nesterov".parse::<OptimizerKind>().unwrap(),
            OptimizerKind::Nag
        );
        assert_eq!(
            "AdamW".parse::<OptimizerKind>().unwrap(),
            OptimizerKind::AdamW
        );
        assert_eq!(
            "Adagrad".parse::<OptimizerKind>().unwrap(),
            OptimizerKind::Adagrad
        );
        let e = "lbfgs".parse::<OptimizerKind>().unwrap_err();
        assert!(
            e.contains("sgd, momentum, nag, rmsprop, adam, nadam, adamw, adagrad"),
            "{e}"
        );
    }
}
