//! `sweep-bench search`: search quality and suggestion speed of `method: bayes` (TPE and GP)
//! on the synthetic test functions, beside Optuna's samplers on the same tasks when `python3`
//! can import optuna (python/optuna_search.py).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{anyhow, Result};
use clap::Args;

use crate::common::*;

/// Search quality and suggestion speed of `method: bayes` (TPE), beside Optuna's samplers.
#[derive(Debug, Args)]
pub(crate) struct SearchBenchArgs {
    /// Trials per sweep
    #[arg(long, default_value_t = 50)]
    pub(crate) trials: usize,
    /// Seeds per function
    #[arg(long, default_value_t = 10)]
    pub(crate) seeds: u64,
    /// Skip the Optuna comparison
    #[arg(long)]
    pub(crate) no_reference: bool,
    /// Trials per sweep of the multi-objective comparison (0 skips it)
    #[arg(long, default_value_t = 100)]
    pub(crate) pareto_trials: usize,
    /// Only the multi-objective comparison
    #[arg(long)]
    pub(crate) pareto_only: bool,
    /// Leave out our GP (its suggestions cost the most time)
    #[arg(long)]
    pub(crate) no_gp: bool,
    /// Only these functions of the suites (comma-separated, e.g. `fashion,branin`)
    #[arg(long, value_delimiter = ',')]
    pub(crate) functions: Vec<String>,
    /// Validation accuracy the early-termination comparison counts epochs to (0 skips it)
    #[arg(long, default_value_t = 0.885)]
    pub(crate) budget_target: f64,
    /// Only the early-termination comparison
    #[arg(long)]
    pub(crate) budget_only: bool,
    /// Seeds of the early-termination comparison (its sweeps end at the target, and take
    /// more seeds to tell apart)
    #[arg(long, default_value_t = 100)]
    pub(crate) budget_seeds: u64,
}

/// The suite: (function, dimensions, bounds of every dimension but branin's); the same in
/// python/optuna_search.py.
pub(crate) const SUITE: [(&str, usize, f64, f64); 7] = [
    ("branin", 2, 0.0, 0.0),
    ("hartmann3", 3, 0.0, 1.0),
    ("hartmann6", 6, 0.0, 1.0),
    ("rosenbrock", 4, -5.0, 10.0),
    ("levy", 6, -10.0, 10.0),
    ("ackley", 5, -32.768, 32.768),
    ("styblinski_tang", 8, -5.0, 5.0),
];

/// The mixed integer/categorical function of the suite: the seed's space on the tabulated
/// Fashion-MNIST surrogate (surrogate.rs), minimising the final validation error.
pub(crate) const SURROGATE: &str = "fashion";

fn space(function: &str) -> coordinator::config::SweepSpec {
    if function == SURROGATE {
        let s = crate::surrogate::Surrogate::load().expect("bench/data/fashion-surrogate.json");
        let text = format!(
            "method: bayes\nmetric: {{name: loss, goal: minimize}}\nparameters:\n{}",
            s.parameters_yaml()
        );
        return coordinator::config::SweepSpec::parse(&text).expect("built-in benchmark space");
    }
    let mut text = format!(
        "method: bayes\ntrainer: synthetic\nsynthetic: {{function: {function}}}\n\
         metric: {{name: loss, goal: minimize}}\nparameters:\n"
    );
    let &(_, dims, lo, hi) = SUITE
        .iter()
        .find(|s| s.0 == function)
        .expect("a function of the suite");
    if function == "branin" {
        text.push_str("  x1: {min: -5.0, max: 10.0}\n  x2: {min: 0.0, max: 15.0}\n");
    } else {
        for i in 1..=dims {
            text.push_str(&format!("  x{i}: {{min: {lo:?}, max: {hi:?}}}\n"));
        }
    }
    coordinator::config::SweepSpec::parse(&text).expect("built-in benchmark space")
}

/// The best value of one sequential sweep: `method` random or bayes with `engine`.
fn sweep_best(
    spec: &coordinator::config::SweepSpec,
    function: &str,
    engine: Option<coordinator::config::BayesEngine>,
    seed: u64,
    trials: usize,
) -> f64 {
    let mut spec = spec.clone();
    spec.seed = seed;
    match engine {
        Some(e) => spec.bayes.engine = e,
        None => spec.method = coordinator::config::Method::Random,
    }
    if function == SURROGATE {
        let s = crate::surrogate::Surrogate::load().expect("bench/data/fashion-surrogate.json");
        return coordinator::search::sequential_best(&spec, trials as u64, |p| s.error(p));
    }
    coordinator::search::sequential_best(
        &spec,
        trials as u64,
        worker::synthetic::objective(function),
    )
}

fn suggestion_ms(finished: usize, gp: bool) -> f64 {
    let mut spec = space("hartmann6");
    if gp {
        spec.bayes.engine = coordinator::config::BayesEngine::Gp;
    }
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let hist: Vec<(serde_json::Value, f64)> = (0..finished)
        .map(|_| {
            let p = coordinator::search::sample::draw(&spec.parameters, &mut rng);
            let map: std::collections::BTreeMap<String, serde_json::Value> = p
                .as_object()
                .map(|m| m.clone().into_iter().collect())
                .unwrap_or_default();
            let y = worker::synthetic::evaluate("hartmann6", &map).unwrap_or(0.0);
            (p, y)
        })
        .collect();
    let times: Vec<f64> = (0..21)
        .map(|i| {
            let t = Instant::now();
            let obs: Vec<coordinator::search::Observation<'_>> = hist
                .iter()
                .map(|(p, y)| coordinator::search::Observation {
                    params: p,
                    loss: Some(*y),
                })
                .collect();
            let _ = coordinator::search::suggest_with_history(&spec, finished as u64 + 1 + i, &obs);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(times)
}

/// Runs `sweep-bench search`.
pub(crate) fn run_search(a: &SearchBenchArgs) -> Result<()> {
    if a.trials == 0 || a.seeds == 0 {
        return Err(anyhow!("--trials and --seeds must be ≥ 1"));
    }
    if !a.pareto_only && !a.budget_only {
        run_single(a);
    }
    if a.pareto_trials > 0 && !a.budget_only {
        crate::pareto::run(a.pareto_trials, a.seeds, &a.functions, !a.no_reference)?;
    }
    if a.budget_target > 0.0 && !a.pareto_only {
        crate::budget::run(a.budget_seeds, a.budget_target, !a.no_gp, !a.no_reference)?;
    }
    Ok(())
}

/// The single-objective suite and the suggestion times.
fn run_single(a: &SearchBenchArgs) {
    println!(
        "median best value (minimisation) over {} seeds, {} trials each:",
        a.seeds, a.trials
    );
    let mut ours = std::collections::BTreeMap::new();
    for f in SUITE
        .iter()
        .map(|s| s.0)
        .chain([SURROGATE])
        .filter(|f| a.functions.is_empty() || a.functions.iter().any(|g| g == f))
    {
        let spec = space(f);
        let rnd = median(
            (0..a.seeds)
                .map(|s| sweep_best(&spec, f, None, s, a.trials))
                .collect(),
        );
        let tpe = median(
            (0..a.seeds)
                .map(|s| {
                    sweep_best(
                        &spec,
                        f,
                        Some(coordinator::config::BayesEngine::Tpe),
                        s,
                        a.trials,
                    )
                })
                .collect(),
        );
        let gp = if a.no_gp {
            f64::NAN
        } else {
            median(
                (0..a.seeds)
                    .map(|s| {
                        sweep_best(
                            &spec,
                            f,
                            Some(coordinator::config::BayesEngine::Gp),
                            s,
                            a.trials,
                        )
                    })
                    .collect(),
            )
        };
        println!("  {f:<15} random {rnd:>10.4}   ours TPE {tpe:>10.4}   ours GP {gp:>10.4}");
        ours.insert((f, "tpe"), tpe);
        ours.insert((f, "gp"), gp);
    }
    if !a.no_reference && python_imports("optuna") {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/optuna_search.py");
        let out = Command::new("python3")
            .arg(&script)
            .args([
                "--trials",
                &a.trials.to_string(),
                "--seeds",
                &a.seeds.to_string(),
                "--functions",
                &a.functions.join(","),
            ])
            .output();
        if let Ok(o) = out {
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                let best: Vec<f64> = serde_json::from_value(v["best"].clone()).unwrap_or_default();
                let f = v["function"].as_str().unwrap_or("");
                let m = median(best);
                let sampler = v["sampler"].as_str().unwrap_or("?");
                let mine = ours.get(&(f, sampler)).copied().unwrap_or(f64::NAN);
                println!(
                    "  {f:<15} Optuna {} {sampler} {m:>10.4}   ours {} {} it",
                    v["version"].as_str().unwrap_or("?"),
                    sampler.to_uppercase(),
                    if mine <= m {
                        "matches or beats"
                    } else {
                        "is behind"
                    }
                );
            }
        }
    }
    for n in [1_000, 10_000] {
        println!(
            "suggestion time with {n} finished trials (6 dimensions): TPE {:.2} ms, GP {:.2} ms (median of 21)",
            suggestion_ms(n, false),
            suggestion_ms(n, true)
        );
    }
}
