//! Gaussian-process search (`bayes: {engine: gp}`): a GP with a Matérn-5/2 ARD kernel on the
//! normalised space (continuous dimensions scaled to [0, 1], categorical ones one-hot), fitted
//! by maximising the log marginal likelihood over per-coordinate length scales and the noise
//! level (coordinate search in log space), and expected improvement maximised over random and
//! local candidates. Running trials are pending at the worst value seen (constant liar), and a
//! configuration already run or running is skipped unless the space is exhausted. The model
//! keeps at most the 30 best and the 70 most recent observations (W&B caps at 100), so a
//! suggestion costs the same at 1,000 or 10,000 trials.

use std::collections::{BTreeMap, HashSet};

use rand::Rng;
use serde_json::Value;

use super::tpe::{canonical, Dim, Observation, Space};
use crate::config::params::ParamSpec;

/// Most observations the model keeps.
pub const MAX_POINTS: usize = 100;

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
    let r = (5.0 * r2).sqrt();
    (1.0 + r + r * r / 3.0) * (-r).exp()
}

/// Lower-triangular Cholesky factor of a symmetric positive-definite matrix (row-major n×n).
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
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
        for k in 0..i {
            x[i] -= l[i * n + k] * x[k];
        }
        x[i] /= l[i * n + i];
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

struct Gp {
    xs: Vec<Vec<f64>>,
    ls: Vec<f64>,
    l: Vec<f64>,
    alpha: Vec<f64>,
    n: usize,
}

impl Gp {
    /// Fits with length scales `ls` and noise `noise`; returns the GP and its log marginal
    /// likelihood (y standardised, unit signal variance).
    fn fit(xs: &[Vec<f64>], y: &[f64], ls: &[f64], noise: f64) -> Option<(Gp, f64)> {
        let n = xs.len();
        let mut k = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let v = matern52(&xs[i], &xs[j], ls);
                k[i * n + j] = v;
                k[j * n + i] = v;
            }
            k[i * n + i] += noise + 1e-9;
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
                xs: xs.to_vec(),
                ls: ls.to_vec(),
                l,
                alpha,
                n,
            },
            lml,
        ))
    }

    fn predict(&self, x: &[f64]) -> (f64, f64) {
        let ks: Vec<f64> = self.xs.iter().map(|xi| matern52(x, xi, &self.ls)).collect();
        let mean = ks.iter().zip(&self.alpha).map(|(a, b)| a * b).sum();
        let v = solve_lower(&self.l, self.n, &ks);
        let var = (1.0 - v.iter().map(|a| a * a).sum::<f64>()).max(1e-12);
        (mean, var.sqrt())
    }
}

fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

fn expected_improvement(mean: f64, sd: f64, best: f64) -> f64 {
    let z = (best - mean) / sd;
    (best - mean) * super::tpe::phi(z) + sd * normal_pdf(z)
}

/// Suggests parameters from the history with a GP and expected improvement.
pub fn suggest<R: Rng + ?Sized>(
    params: &BTreeMap<String, ParamSpec>,
    history: &[Observation<'_>],
    startup_trials: u64,
    rng: &mut R,
) -> Value {
    let space = Space::new(params);
    let seen: HashSet<String> = history.iter().map(|o| canonical(o.params)).collect();
    let exhausted = space.finite_size().is_some_and(|n| seen.len() as u64 >= n);
    let fresh = |v: &Value| exhausted || !seen.contains(&canonical(v));
    let done: Vec<(Vec<f64>, f64)> = history
        .iter()
        .filter_map(|o| Some((space.encode(o.params)?, o.loss?)))
        .filter(|o| o.1.is_finite())
        .collect();
    if (done.len() as u64) < startup_trials.max(2) {
        return super::tpe::random_fresh(&space, rng, &fresh);
    }
    let worst = done.iter().map(|o| o.1).fold(f64::NEG_INFINITY, f64::max);
    let mut pts: Vec<(Vec<f64>, f64)> = done;
    for o in history.iter().filter(|o| o.loss.is_none()) {
        if let Some(x) = space.encode(o.params) {
            pts.push((x, worst));
        }
    }
    // Keep the 30 best and the 70 most recent.
    if pts.len() > MAX_POINTS {
        let mut order: Vec<usize> = (0..pts.len()).collect();
        order.sort_by(|&a, &b| pts[a].1.total_cmp(&pts[b].1));
        let mut keep: HashSet<usize> = order[..30].iter().copied().collect();
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
    let mut ls = vec![0.3; d];
    let mut noise = 1e-3;
    let Some((mut gp, mut best_lml)) =
        Gp::fit(&xs, &y, &ls, noise).or_else(|| Gp::fit(&xs, &y, &ls, 1e-1))
    else {
        return super::tpe::random_fresh(&space, rng, &fresh);
    };
    for _sweep in 0..3 {
        for c in 0..=d {
            for factor in [0.5, 2.0, 0.25, 4.0] {
                let (mut ls2, mut noise2) = (ls.clone(), noise);
                if c < d {
                    ls2[c] = (ls2[c] * factor).clamp(0.01, 20.0);
                } else {
                    noise2 = (noise2 * factor * factor).clamp(1e-6, 1.0);
                }
                if let Some((g, lml)) = Gp::fit(&xs, &y, &ls2, noise2) {
                    if lml > best_lml + 1e-9 {
                        (gp, best_lml, ls, noise) = (g, lml, ls2, noise2);
                        break;
                    }
                }
            }
        }
    }
    let incumbent = y.iter().copied().fold(f64::INFINITY, f64::min);
    // Candidates: random points and perturbations of the best observations.
    let mut best_order: Vec<usize> = (0..pts.len()).collect();
    best_order.sort_by(|&a, &b| y[a].total_cmp(&y[b]));
    let mut cands: Vec<(f64, Vec<f64>)> = Vec::with_capacity(600);
    for i in 0..600 {
        let x = if i % 2 == 0 {
            space.sample_prior(rng)
        } else {
            let base = &pts[best_order[(i / 2) % best_order.len().min(5)]].0;
            space.perturb(base, 0.1, rng)
        };
        let (m, s) = gp.predict(&features(&space, &x));
        cands.push((expected_improvement(m, s, incumbent), x));
    }
    cands.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, x) in cands {
        let v = space.decode(&x);
        if fresh(&v) {
            return v;
        }
    }
    super::tpe::random_fresh(&space, rng, &fresh)
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

    fn best(spec: &SweepSpec, gp: bool, seed: u64, n: usize) -> f64 {
        let mut spec = spec.clone();
        spec.seed = seed;
        if gp {
            spec.method = crate::config::Method::Bayes;
            spec.tpe.engine = crate::search::tpe::BayesEngine::Gp;
        } else {
            spec.method = crate::config::Method::Random;
        }
        crate::search::sequential_best(&spec, "branin", n as u64)
    }

    #[test]
    fn gp_beats_random_on_branin_over_seeds() {
        let spec = SweepSpec::parse("method: bayes\nparameters:\n  x1: {min: -5.0, max: 10.0}\n  x2: {min: 0.0, max: 15.0}\n").unwrap();
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
