//! Search: which parameters trial `n` of a sweep gets.
//!
//! Suggestions are a pure function of (config, seed, trial number), so a restarted coordinator
//! hands out exactly what it would have: grid point `n − 1` in W&B's order, or the `n`-th
//! random draw from an RNG seeded by (sweep seed, n).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

pub mod budget;
pub mod gp;
pub mod grid;
pub mod sample;
pub mod space;
pub mod tpe;

pub use space::Observation;

use crate::config::{BayesEngine, Method, SweepSpec};

/// SplitMix64 of (seed, n): decorrelated seeds for trial `n`'s draw and training run.
pub fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed trial `n` trains with (unless its parameters set `seed`).
pub fn trial_seed(sweep_seed: u64, n: u64) -> u64 {
    mix(sweep_seed ^ 0x7472_6169_6c00, n) >> 1
}

/// Parameters of trial `n` (1-based) given the sweep's other trials (used by bayes), or `None`
/// when the sweep has handed out all it will. A pure function of (config, seed, n, history).
pub fn suggest_with_history(
    spec: &SweepSpec,
    n: u64,
    history: &[space::Observation<'_>],
) -> Option<Value> {
    if spec.method != Method::Bayes {
        return suggest(spec, n);
    }
    if n == 0 || spec.total().is_some_and(|t| n > t) {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(mix(spec.seed, n));
    Some(match spec.bayes.engine {
        // Tree-structured: each parameter modelled where it was active.
        BayesEngine::Tpe => tpe::suggest(
            &spec.parameters,
            &spec.conditions,
            history,
            &spec.bayes,
            &mut rng,
        ),
        // The GP sees every trial with its inactive parameters at a fixed stand-in (the first
        // value, or the low end); its suggestion keeps the active ones.
        BayesEngine::Gp if spec.conditions.is_empty() => gp::suggest(
            &spec.parameters,
            history,
            spec.bayes.startup_trials,
            &mut rng,
        ),
        BayesEngine::Gp => {
            let filled: Vec<Value> = history
                .iter()
                .map(|o| spec.conditions.fill(&spec.parameters, o.params))
                .collect();
            let seen: Vec<space::Observation<'_>> = filled
                .iter()
                .zip(history)
                .map(|(p, o)| space::Observation {
                    params: p,
                    loss: o.loss,
                })
                .collect();
            let x = gp::suggest(&spec.parameters, &seen, spec.bayes.startup_trials, &mut rng);
            spec.conditions.prune(x)
        }
    })
}

/// Parameters of trial `n` (1-based) given the sweep's trials' `params` and, for each, the
/// goal-signed loss of every objective (smaller is better; `None`: pending). One objective is
/// [`suggest_with_history`]'s loss. Several are made one loss the models can rank: for TPE the
/// trial's place in [`crate::pareto::model_order`] (front, then hypervolume contribution: the
/// multi-objective TPE of Ozaki et al. 2020), for the GP a random augmented Chebyshev
/// scalarization drawn per trial (ParEGO, Knowles 2006), so successive trials aim at different
/// parts of the front.
pub fn suggest_objectives(
    spec: &SweepSpec,
    n: u64,
    params: &[Value],
    losses: &[Option<Vec<f64>>],
) -> Option<Value> {
    let scalar: Vec<Option<f64>> = if !spec.multi_objective() {
        losses
            .iter()
            .map(|l| l.as_ref().and_then(|v| v.first().copied()))
            .collect()
    } else {
        let done: Vec<(usize, &Vec<f64>)> = losses
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                l.as_ref()
                    .filter(|v| v.iter().all(|x| x.is_finite()))
                    .map(|v| (i, v))
            })
            .collect();
        let points: Vec<Vec<f64>> = done.iter().map(|(_, v)| (*v).clone()).collect();
        let keys = match spec.bayes.engine {
            BayesEngine::Tpe => crate::pareto::model_order(&points),
            BayesEngine::Gp => {
                let mut rng = ChaCha8Rng::seed_from_u64(mix(spec.seed ^ 0x7061_7265_676f, n));
                parego(&points, &mut rng)
            }
        };
        let mut out = vec![None; losses.len()];
        for ((i, _), k) in done.iter().zip(keys) {
            out[*i] = Some(k);
        }
        out
    };
    let observed: Vec<Observation<'_>> = params
        .iter()
        .zip(scalar)
        .map(|(params, loss)| Observation { params, loss })
        .collect();
    suggest_with_history(spec, n, &observed)
}

/// ParEGO's scalarization of `points` (each coordinate scaled to [0, 1] over the points):
/// `max_k λ_k f_k + 0.05 Σ_k λ_k f_k` with weights λ drawn uniformly from the simplex.
fn parego<R: rand::Rng>(points: &[Vec<f64>], rng: &mut R) -> Vec<f64> {
    let Some(m) = points.first().map(Vec::len) else {
        return Vec::new();
    };
    let raw: Vec<f64> = (0..m).map(|_| -(1.0 - rng.random::<f64>()).ln()).collect();
    let sum: f64 = raw.iter().sum();
    let lambda: Vec<f64> = raw.iter().map(|w| w / sum).collect();
    crate::pareto::scaled(points)
        .iter()
        .map(|p| {
            let f: Vec<f64> = p.iter().zip(&lambda).map(|(x, l)| l * x).collect();
            f.iter().copied().fold(0.0, f64::max) + 0.05 * f.iter().sum::<f64>()
        })
        .collect()
}

/// Parameters of trial `n` (1-based) for grid and random sweeps, or `None` when the sweep has
/// handed out all it will.
pub fn suggest(spec: &SweepSpec, n: u64) -> Option<Value> {
    if n == 0 || spec.total().is_some_and(|t| n > t) {
        return None;
    }
    match spec.method {
        Method::Grid if spec.conditions.is_empty() => grid::point(&spec.parameters, n - 1),
        Method::Grid => spec.conditions.grid_point(&spec.parameters, n - 1),
        Method::Random | Method::Bayes => {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(spec.seed, n));
            Some(
                spec.conditions
                    .prune(sample::draw(&spec.parameters, &mut rng)),
            )
        }
    }
}

/// Runs `trials` trials of `spec` one at a time on `objective` (a test function of the
/// parameters; smaller is better), through the same suggestion path the engine uses
/// (`spec.method`, `spec.bayes.engine`, `spec.seed` decide), and returns the best value found.
/// For search-quality benchmarks and tests.
pub fn sequential_best(spec: &SweepSpec, trials: u64, objective: impl Fn(&Value) -> f64) -> f64 {
    let mut hist: Vec<(Value, f64)> = Vec::new();
    for n in 1..=trials {
        let obs: Vec<Observation<'_>> = hist
            .iter()
            .map(|(p, y)| Observation {
                params: p,
                loss: Some(*y),
            })
            .collect();
        let Some(params) = suggest_with_history(spec, n, &obs) else {
            break;
        };
        let y = objective(&params);
        hist.push((params, y));
    }
    hist.iter().map(|h| h.1).fold(f64::INFINITY, f64::min)
}

/// Runs `trials` trials of a sweep with several objectives one at a time on `objectives` (a
/// test function giving every objective, each to be minimised) through the engine's path
/// ([`suggest_objectives`]), and returns every trial's objectives. For search-quality
/// benchmarks and tests.
pub fn sequential_front(
    spec: &SweepSpec,
    trials: u64,
    objectives: impl Fn(&Value) -> Vec<f64>,
) -> Vec<Vec<f64>> {
    let mut params: Vec<Value> = Vec::new();
    let mut losses: Vec<Option<Vec<f64>>> = Vec::new();
    for n in 1..=trials {
        let Some(p) = suggest_objectives(spec, n, &params, &losses) else {
            break;
        };
        losses.push(Some(objectives(&p)));
        params.push(p);
    }
    losses.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests;
