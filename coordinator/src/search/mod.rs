//! Search: which parameters trial `n` of a sweep gets.
//!
//! Suggestions are a pure function of (config, seed, trial number), so a restarted coordinator
//! hands out exactly what it would have: grid point `n − 1` in W&B's order, or the `n`-th
//! random draw from an RNG seeded by (sweep seed, n).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

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

#[cfg(test)]
mod tests;
