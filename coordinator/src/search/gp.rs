//! Gaussian-process search (`bayes: {engine: gp}`): a GP with a Matérn-5/2 ARD kernel on the
//! normalised space (continuous dimensions scaled to [0, 1], categorical ones one-hot), fitted
//! by maximising the log marginal likelihood over per-coordinate length scales, the signal
//! amplitude and the noise level (coordinate search in log space), and expected improvement
//! maximised over 600 random and local candidates, the best five then hill-climbed with
//! shrinking steps. Running trials are pending at the worst value seen (constant liar), and a
//! configuration already run or running is skipped unless the space is exhausted. The model
//! keeps at most the 20 best and the 44 most recent other observations (W&B caps at 100; 64
//! keeps a suggestion under 5 ms), so a suggestion costs about the same at 1,000 or 10,000
//! trials.

use std::collections::{BTreeMap, HashSet};

use rand::Rng;
use serde_json::Value;

use super::space::{phi, random_fresh, Dim, Observation, Seen, Space};
use crate::config::params::ParamSpec;

/// Most observations the model keeps.
pub const MAX_POINTS: usize = 64;

/// Of those, the best ones kept whatever their age.
const KEEP_BEST: usize = 20;

/// Random and local candidates scored per suggestion.
const CANDIDATES: usize = 600;
/// Candidates refined by local search on expected improvement.
const REFINE_STARTS: usize = 5;
/// Steps per step size in that search.
const REFINE_STEPS: usize = 20;

fn features(space: &Space, x: &[f64]) -> Vec<f64> {
    let mut f = Vec::new();
    for (d, &xi) in space.dims.iter().zip(x) {
        match d {
            Dim::Cont { lo, hi, .. } => f.push(if hi > lo { (xi - lo) / (hi - lo) } else { 0.5 }),
            Dim::Cat { values } => {
                for k in 0..values.len() {
                    f.push(if (xi.round() as usize) == k { 1.0 } else { 0.0 });
                }
            }
        }
    }
    f
}

fn matern52(a: &[f64], b: &[f64], ls: &[f64]) -> f64 {
    let r2: f64 = a
        .iter()
        .zip(b)
        .zip(ls)
        .map(|((x, y), l)| ((x - y) / l).powi(2))
        .sum();
    matern52_r2(r2)
}

/// Matérn-5/2 of a squared scaled distance.
fn matern52_r2(r2: f64) -> f64 {
    let r = (5.0 * r2).sqrt();
    (1.0 + r + r * r / 3.0) * (-r).exp()
}

/// Per-dimension squared differences of every pair of points (lower triangle), computed once
/// per suggestion and reused by every fit of the hyperparameter search.
struct SqDiffs {
    d: usize,
    v: Vec<f64>,
}

impl SqDiffs {
    fn new(xs: &[Vec<f64>]) -> SqDiffs {
        let d = xs.first().map_or(0, Vec::len);
        let mut v = Vec::with_capacity(xs.len() * xs.len().saturating_sub(1) / 2 * d);
        for i in 0..xs.len() {
            for j in 0..i {
                v.extend(xs[i].iter().zip(&xs[j]).map(|(a, b)| (a - b) * (a - b)));
            }
        }
        SqDiffs { d, v }
    }

    fn pair(&self, i: usize, j: usize) -> &[f64] {
        let at = (i * (i - 1) / 2 + j) * self.d;
        &self.v[at..at + self.d]
    }
}

/// Dot product with four independent accumulators (so the compiler can vectorise it).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    acc[0] + acc[1] + acc[2] + acc[3] + tail
}

/// Lower-triangular Cholesky factor of a symmetric positive-definite matrix (row-major n×n).
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s = a[i * n + j] - dot(&l[i * n..i * n + j], &l[j * n..j * n + j]);
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Some(l)
}

fn solve_lower(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut x = b.to_vec();
    for i in 0..n {
        x[i] = (x[i] - dot(&l[i * n..i * n + i], &x[..i])) / l[i * n + i];
    }
    x
}

fn solve_upper_t(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut x = b.to_vec();
    for i in (0..n).rev() {
        for k in i + 1..n {
            x[i] -= l[k * n + i] * x[k];
        }
        x[i] /= l[i * n + i];
    }
    x
}

struct Gp<'a> {
    xs: &'a [Vec<f64>],
    ls: Vec<f64>,
    amp: f64,
    l: Vec<f64>,
    alpha: Vec<f64>,
    n: usize,
}

impl<'a> Gp<'a> {
    /// Fits with length scales `ls` and noise `noise`; returns the GP and its log marginal
    /// likelihood (y standardised, unit signal variance).
    fn fit(
        xs: &'a [Vec<f64>],
        d2: &SqDiffs,
        y: &[f64],
        ls: &[f64],
        amp: f64,
        noise: f64,
    ) -> Option<(Gp<'a>, f64)> {
        let n = xs.len();
        let inv: Vec<f64> = ls.iter().map(|l| 1.0 / (l * l)).collect();
        let mut k = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..i {
                let r2: f64 = d2.pair(i, j).iter().zip(&inv).map(|(a, b)| a * b).sum();
                let v = amp * matern52_r2(r2);
                k[i * n + j] = v;
                k[j * n + i] = v;
            }
            k[i * n + i] = amp + noise + 1e-9;
        }
        let l = cholesky(&k, n)?;
        let z = solve_lower(&l, n, y);
        let alpha = solve_upper_t(&l, n, &z);
        let logdet: f64 = (0..n).map(|i| l[i * n + i].ln()).sum();
        let lml = -0.5 * y.iter().zip(&alpha).map(|(a, b)| a * b).sum::<f64>()
            - logdet
            - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
        Some((
            Gp {
                xs,
                ls: ls.to_vec(),
                amp,
                l,
                alpha,
                n,
            },
            lml,
        ))
    }

    /// Predictions for many points at once: the triangular solve runs over all of them
    /// together, row by row, so its inner loop is contiguous.
    fn predict_many(&self, xs: &[Vec<f64>]) -> Vec<(f64, f64)> {
        let (n, m) = (self.n, xs.len());
        // ks[i * m + c] = k(x_i, candidate c)
        let mut ks = vec![0.0; n * m];
        for (i, xi) in self.xs.iter().enumerate() {
            for (c, x) in xs.iter().enumerate() {
                ks[i * m + c] = self.amp * matern52(x, xi, &self.ls);
            }
        }
        let mut mean = vec![0.0; m];
        for i in 0..n {
            let a = self.alpha[i];
            for (mu, k) in mean.iter_mut().zip(&ks[i * m..(i + 1) * m]) {
                *mu += a * k;
            }
        }
        // Forward substitution L V = Ks, in place.
        for i in 0..n {
            let (done, rest) = ks.split_at_mut(i * m);
            let row = &mut rest[..m];
            for k in 0..i {
                let lik = self.l[i * n + k];
                for (r, v) in row.iter_mut().zip(&done[k * m..(k + 1) * m]) {
                    *r -= lik * v;
                }
            }
            let d = self.l[i * n + i];
            row.iter_mut().for_each(|r| *r /= d);
        }
        let mut ss = vec![0.0; m];
        for i in 0..n {
            for (s, v) in ss.iter_mut().zip(&ks[i * m..(i + 1) * m]) {
                *s += v * v;
            }
        }
        mean.into_iter()
            .zip(ss)
            .map(|(mu, s)| (mu, (self.amp - s).max(1e-12).sqrt()))
            .collect()
    }

    #[cfg(test)]
    fn predict(&self, x: &[f64]) -> (f64, f64) {
        let ks: Vec<f64> = self
            .xs
            .iter()
            .map(|xi| self.amp * matern52(x, xi, &self.ls))
            .collect();
        let mean = ks.iter().zip(&self.alpha).map(|(a, b)| a * b).sum();
        let v = solve_lower(&self.l, self.n, &ks);
        let var = (self.amp - v.iter().map(|a| a * a).sum::<f64>()).max(1e-12);
        (mean, var.sqrt())
    }
}

fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

fn expected_improvement(mean: f64, sd: f64, best: f64) -> f64 {
    let z = (best - mean) / sd;
    (best - mean) * phi(z) + sd * normal_pdf(z)
}

/// Suggests parameters from the history with a GP and expected improvement.
pub fn suggest<R: Rng + ?Sized>(
    params: &BTreeMap<String, ParamSpec>,
    history: &[Observation<'_>],
    startup_trials: u64,
    rng: &mut R,
) -> Value {
    let space = Space::new(params);
    let enc: Vec<Option<Vec<f64>>> = history.iter().map(|o| space.encode(o.params)).collect();
    let seen = Seen::new(&space, &enc);
    let fresh = |v: &Value| seen.fresh(v);
    let done: Vec<(Vec<f64>, f64)> = history
        .iter()
        .zip(&enc)
        .filter_map(|(o, x)| Some((x.clone()?, o.loss?)))
        .filter(|o| o.1.is_finite())
        .collect();
    if (done.len() as u64) < startup_trials.max(2) {
        return random_fresh(&space, rng, &fresh);
    }
    let worst = done.iter().map(|o| o.1).fold(f64::NEG_INFINITY, f64::max);
    let mut pts: Vec<(Vec<f64>, f64)> = done;
    for (o, x) in history.iter().zip(&enc) {
        if let (None, Some(x)) = (o.loss, x) {
            pts.push((x.clone(), worst));
        }
    }
    // Keep the KEEP_BEST best and the most recent others.
    if pts.len() > MAX_POINTS {
        let mut order: Vec<usize> = (0..pts.len()).collect();
        order.sort_by(|&a, &b| pts[a].1.total_cmp(&pts[b].1));
        let mut keep: HashSet<usize> = order[..KEEP_BEST].iter().copied().collect();
        for i in (0..pts.len()).rev() {
            if keep.len() >= MAX_POINTS {
                break;
            }
            keep.insert(i);
        }
        let mut idx: Vec<usize> = keep.into_iter().collect();
        idx.sort_unstable();
        pts = idx.into_iter().map(|i| pts[i].clone()).collect();
    }
    let xs: Vec<Vec<f64>> = pts.iter().map(|p| features(&space, &p.0)).collect();
    let raw: Vec<f64> = pts.iter().map(|p| p.1).collect();
    let mean = raw.iter().sum::<f64>() / raw.len() as f64;
    let sd = (raw.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / raw.len() as f64)
        .sqrt()
        .max(1e-12);
    let y: Vec<f64> = raw.iter().map(|v| (v - mean) / sd).collect();
    // Fit length scales and noise by coordinate search on the log marginal likelihood.
    let d = xs[0].len();
    let d2 = SqDiffs::new(&xs);
    let mut ls = vec![0.3; d];
    let (mut amp, mut noise) = (1.0, 1e-3);
    let Some((mut gp, mut best_lml)) =
        Gp::fit(&xs, &d2, &y, &ls, amp, noise).or_else(|| Gp::fit(&xs, &d2, &y, &ls, amp, 1e-1))
    else {
        return random_fresh(&space, rng, &fresh);
    };
    // A coordinate none of whose steps helped is skipped in the next sweep (its neighbours
    // rarely move it), and a step the bounds turn into no change is not refitted.
    let mut stuck = vec![false; d + 2];
    for _sweep in 0..3 {
        let before = best_lml;
        for c in 0..d + 2 {
            if stuck[c] {
                stuck[c] = false;
                continue;
            }
            stuck[c] = true;
            for factor in [0.5, 2.0, 0.25, 4.0] {
                let (mut ls2, mut amp2, mut noise2) = (ls.clone(), amp, noise);
                if c < d {
                    ls2[c] = (ls2[c] * factor).clamp(0.01, 20.0);
                } else if c == d {
                    amp2 = (amp2 * factor).clamp(0.05, 20.0);
                } else {
                    noise2 = (noise2 * factor * factor).clamp(1e-6, 1.0);
                }
                if ls2 == ls && amp2 == amp && noise2 == noise {
                    continue;
                }
                if let Some((g, lml)) = Gp::fit(&xs, &d2, &y, &ls2, amp2, noise2) {
                    if lml > best_lml + 1e-9 {
                        (gp, best_lml, ls, amp, noise) = (g, lml, ls2, amp2, noise2);
                        stuck[c] = false;
                        break;
                    }
                }
            }
        }
        if best_lml <= before + 1e-6 {
            break;
        }
    }
    let incumbent = y.iter().copied().fold(f64::INFINITY, f64::min);
    // Candidates: random points and perturbations of the best observations.
    let mut best_order: Vec<usize> = (0..pts.len()).collect();
    best_order.sort_by(|&a, &b| y[a].total_cmp(&y[b]));
    let xs0: Vec<Vec<f64>> = (0..CANDIDATES)
        .map(|i| {
            if i % 2 == 0 {
                space.sample_prior(rng)
            } else {
                let base = &pts[best_order[(i / 2) % best_order.len().min(5)]].0;
                space.perturb(base, 0.1, rng)
            }
        })
        .collect();
    let ei = |xs: &[Vec<f64>]| -> Vec<f64> {
        let f: Vec<Vec<f64>> = xs.iter().map(|x| features(&space, x)).collect();
        gp.predict_many(&f)
            .into_iter()
            .map(|(m, s)| expected_improvement(m, s, incumbent))
            .collect()
    };
    let mut cands: Vec<(f64, Vec<f64>)> = ei(&xs0).into_iter().zip(xs0).collect();
    cands.sort_by(|a, b| b.0.total_cmp(&a.0));
    // Local refinement: hill-climb EI from the best few candidates with shrinking steps, all
    // starts in one batch per step.
    let starts = cands.len().min(REFINE_STARTS);
    for scale in [0.05, 0.02, 0.005, 0.001] {
        for _ in 0..REFINE_STEPS {
            let moves: Vec<Vec<f64>> = cands[..starts]
                .iter()
                .map(|c| space.perturb(&c.1, scale, rng))
                .collect();
            for ((c, e), x) in cands.iter_mut().zip(ei(&moves)).zip(moves) {
                if e > c.0 {
                    *c = (e, x);
                }
            }
        }
    }
    cands.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, x) in cands {
        let v = space.decode(&x);
        if fresh(&v) {
            return v;
        }
    }
    random_fresh(&space, rng, &fresh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SweepSpec;

    #[test]
    fn cholesky_solves() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let l = cholesky(&a, 2).unwrap();
        let z = solve_lower(&l, 2, &[2.0, 1.0]);
        let x = solve_upper_t(&l, 2, &z);
        assert!((4.0 * x[0] + 2.0 * x[1] - 2.0).abs() < 1e-12);
        assert!((2.0 * x[0] + 3.0 * x[1] - 1.0).abs() < 1e-12);
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }

    #[test]
    fn batched_prediction_equals_one_at_a_time_and_interpolates() {
        let xs: Vec<Vec<f64>> = (0..9)
            .map(|i| vec![i as f64 / 8.0, ((i * 5) % 9) as f64 / 8.0])
            .collect();
        let y: Vec<f64> = xs
            .iter()
            .map(|x| (3.0 * x[0]).sin() + x[1] * x[1])
            .collect();
        let d2 = SqDiffs::new(&xs);
        let (gp, _) = Gp::fit(&xs, &d2, &y, &[0.4, 0.7], 1.7, 1e-6).unwrap();
        let probe: Vec<Vec<f64>> = vec![vec![0.3, 0.9], xs[4].clone(), vec![1.0, 0.0]];
        for (x, (m, s)) in probe.iter().zip(gp.predict_many(&probe)) {
            let (m1, s1) = gp.predict(x);
            assert!(
                (m - m1).abs() < 1e-9 && (s - s1).abs() < 1e-9,
                "{m} {m1} {s} {s1}"
            );
        }
        // At a training point with tiny noise the mean is the observation, the sd near 0.
        let (m, s) = gp.predict_many(&[xs[4].clone()])[0];
        assert!(
            (m - y[4]).abs() < 1e-3 && s < 1e-2,
            "{m} vs {} (sd {s})",
            y[4]
        );
    }

    fn best(spec: &SweepSpec, gp: bool, seed: u64, n: usize) -> f64 {
        let mut spec = spec.clone();
        spec.seed = seed;
        if gp {
            spec.method = crate::config::Method::Bayes;
            spec.bayes.engine = crate::config::BayesEngine::Gp;
        } else {
            spec.method = crate::config::Method::Random;
        }
        crate::search::sequential_best(&spec, n as u64, worker::synthetic::objective("branin"))
    }

    #[test]
    fn gp_beats_random_on_branin_over_seeds() {
        let spec = SweepSpec::parse("method: bayes\nmetric: {name: loss}\nparameters:\n  x1: {min: -5.0, max: 10.0}\n  x2: {min: 0.0, max: 15.0}\n").unwrap();
        let mut g: Vec<f64> = (0..8).map(|s| best(&spec, true, s, 30)).collect();
        let mut r: Vec<f64> = (0..8).map(|s| best(&spec, false, s, 30)).collect();
        g.sort_by(f64::total_cmp);
        r.sort_by(f64::total_cmp);
        assert!(
            g[4] < r[4] * 0.8,
            "median best: GP {}, random {}",
            g[4],
            r[4]
        );
    }
}
