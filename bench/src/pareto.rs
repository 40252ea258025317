//! `sweep-bench search`, several objectives: the hypervolume our bayes search (TPE and GP with
//! several objectives, docs/CONFIG.md "Several objectives") and random search reach on ZDT1–3
//! and DTLZ2, beside Optuna's NSGA-II and multi-objective TPE on the same functions when
//! `python3` can import optuna (python/optuna_pareto.py). Every side's trials are measured by
//! the same hypervolume code (coordinator::pareto).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::surrogate::Surrogate;

/// The suite: (function, variables, reference point of the hypervolume); the same in
/// python/optuna_pareto.py. The reference points lie beyond what random points reach, so that
/// every sampler's early trials count.
pub(crate) const SUITE: [(&str, usize, &[f64]); 4] = [
    ("zdt1", 30, &[1.1, 11.0]),
    ("zdt2", 30, &[1.1, 11.0]),
    ("zdt3", 30, &[1.1, 11.0]),
    ("dtlz2", 12, &[2.5, 2.5, 2.5]),
];

fn space(function: &str, dims: usize, objectives: usize) -> coordinator::config::SweepSpec {
    let mut text = format!(
        "method: bayes\ntrainer: synthetic\nsynthetic: {{function: {function}}}\nmetric:\n"
    );
    for k in 1..=objectives {
        text.push_str(&format!("  - {{name: f{k}, goal: minimize}}\n"));
    }
    text.push_str("parameters:\n");
    for i in 1..=dims {
        text.push_str(&format!("  x{i:02}: {{min: 0.0, max: 1.0}}\n"));
    }
    coordinator::config::SweepSpec::parse(&text).expect("built-in benchmark space")
}

/// Accuracy against size: the seed's space on the Fashion-MNIST surrogate (surrogate.rs),
/// minimising the final validation error and the parameter count in units of 10⁵ (10
/// parameters; the largest network has 1.68). The same in python/optuna_pareto.py.
pub(crate) const SURROGATE: (&str, usize, &[f64]) = ("fashion", 10, &[1.0, 2.0]);

fn surrogate_space(s: &Surrogate) -> coordinator::config::SweepSpec {
    let text = format!(
        "method: bayes\nmetric:\n  - {{name: error, goal: minimize}}\n  - {{name: size, goal: minimize}}\nparameters:\n{}",
        s.parameters_yaml()
    );
    coordinator::config::SweepSpec::parse(&text).expect("built-in benchmark space")
}

/// Hypervolume of one sequential sweep: random, or bayes with `engine`.
fn sweep_hv(
    function: &str,
    dims: usize,
    reference: &[f64],
    engine: Option<coordinator::config::BayesEngine>,
    seed: u64,
    trials: usize,
    surrogate: &Surrogate,
) -> f64 {
    let mut spec = if function == SURROGATE.0 {
        surrogate_space(surrogate)
    } else {
        space(function, dims, reference.len())
    };
    spec.seed = seed;
    match engine {
        Some(e) => spec.bayes.engine = e,
        None => spec.method = coordinator::config::Method::Random,
    }
    let points = if function == SURROGATE.0 {
        coordinator::search::sequential_front(&spec, trials as u64, |p| surrogate.error_and_size(p))
    } else {
        coordinator::search::sequential_front(
            &spec,
            trials as u64,
            worker::synthetic::objectives(function),
        )
    };
    coordinator::pareto::hypervolume(&points, reference)
}

/// Prints the multi-objective comparison: median hypervolume (larger is better) over `seeds`
/// seeds of `trials` trials each.
pub(crate) fn run(
    trials: usize,
    seeds: u64,
    functions: &[String],
    reference: bool,
) -> anyhow::Result<()> {
    use coordinator::config::BayesEngine;
    let surrogate = Surrogate::load()?;
    println!(
        "several objectives: median hypervolume (larger is better) over {seeds} seeds, {trials} trials each:"
    );
    let mut ours: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    let chosen = |f: &str| functions.is_empty() || functions.iter().any(|g| g == f);
    for &(f, dims, r) in SUITE.iter().chain([&SURROGATE]).filter(|s| chosen(s.0)) {
        let med = |e: Option<BayesEngine>| {
            median(
                (0..seeds)
                    .map(|s| sweep_hv(f, dims, r, e, s, trials, &surrogate))
                    .collect(),
            )
        };
        let (rnd, tpe, gp) = (
            med(None),
            med(Some(BayesEngine::Tpe)),
            med(Some(BayesEngine::Gp)),
        );
        println!(
            "  {f:<6} ({dims} variables, reference {r:?})  random {rnd:>8.4}   ours TPE {tpe:>8.4}   ours GP (ParEGO) {gp:>8.4}"
        );
        ours.insert((f, "tpe"), tpe);
        ours.insert((f, "gp"), gp);
    }
    if !reference || !python_imports("optuna") {
        return Ok(());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/optuna_pareto.py");
    let Ok(out) = Command::new("python3")
        .arg(&script)
        .args([
            "--trials",
            &trials.to_string(),
            "--seeds",
            &seeds.to_string(),
            "--functions",
            &functions.join(","),
        ])
        .output()
    else {
        return Ok(());
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let f = v["function"].as_str().unwrap_or("");
        let Some(&(_, _, r)) = SUITE.iter().chain([&SURROGATE]).find(|s| s.0 == f) else {
            continue;
        };
        let runs: Vec<Vec<Vec<f64>>> =
            serde_json::from_value(v["runs"].clone()).unwrap_or_default();
        let hv = median(
            runs.iter()
                .map(|pts| coordinator::pareto::hypervolume(pts, r))
                .collect(),
        );
        let sampler = v["sampler"].as_str().unwrap_or("?");
        let best_ours = ours
            .get(&(f, "tpe"))
            .copied()
            .unwrap_or(f64::NAN)
            .max(ours.get(&(f, "gp")).copied().unwrap_or(f64::NAN));
        let tpe = ours.get(&(f, "tpe")).copied().unwrap_or(f64::NAN);
        println!(
            "  {f:<6} Optuna {} {:<5} {hv:>8.4}   ours TPE {} it, our best {} it",
            v["version"].as_str().unwrap_or("?"),
            if sampler == "nsga2" { "NSGA-II" } else { "TPE" },
            if tpe >= hv {
                "matches or beats"
            } else {
                "is behind"
            },
            if best_ours >= hv {
                "matches or beats"
            } else {
                "is behind"
            },
        );
    }
    Ok(())
}
