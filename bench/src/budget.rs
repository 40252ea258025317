//! `sweep-bench search`, early termination: how many epochs a sweep of the seed's space
//! trains before its best validation accuracy reaches a target, with W&B's hyperband
//! (`min_iter: 2, eta: 2`: bands at epochs 2, 4, 8) and two workers, on the tabulated
//! Fashion-MNIST surrogate (surrogate.rs) — our bayes search as it is by default (final
//! values), the same learning from rungs (`bayes.learn_from_rungs`, `search::budget`), and
//! random search — beside Optuna's TPE with its HyperbandPruner (python/optuna_budget.py) on
//! the same table.
//!
//! Two workers train in lockstep, an epoch each per step (worker 1 first); a worker that is
//! free takes the next trial, suggested from every trial so far (the other one pending), and
//! every reported value is judged by the engine's own rule ([`coordinator::stopping::Judge`]).

use std::path::Path;
use std::process::Command;

use coordinator::config::{BayesEngine, Method, SweepSpec};
use coordinator::search::budget::{self, Ended, Outcome, Rungs};
use coordinator::stopping::{Judge, Seen};
use serde_json::Value;

use crate::common::*;
use crate::surrogate::Surrogate;

/// Epochs at which a sweep that has not reached the target is cut off.
pub(crate) const MAX_EPOCHS: usize = 2_000;

/// Which of our searches.
#[derive(Debug, Clone, Copy)]
enum Ours {
    Random,
    /// Bayes with this engine; `true`: learning from rungs.
    Bayes(BayesEngine, bool),
}

/// The rules compared: W&B's hyperband as users write it, and ASHA with the settings of the
/// Optuna pruner it is compared with (python/optuna_budget.py).
const RULES: [&str; 2] = [
    "{type: hyperband, min_iter: 2, eta: 2}",
    "{type: asha, min_iter: 2, eta: 2, max_iter: 10}",
];

fn spec(surrogate: &Surrogate, rule: &str, ours: Ours, seed: u64) -> SweepSpec {
    let text = format!(
        "method: bayes\nmetric: {{name: val_accuracy, goal: maximize}}\nseed: {seed}\n\
         early_terminate: {rule}\nparameters:\n{}",
        surrogate.parameters_yaml()
    );
    let mut spec = SweepSpec::parse(&text).expect("built-in benchmark space");
    match ours {
        Ours::Random => spec.method = Method::Random,
        Ours::Bayes(engine, rungs) => {
            spec.bayes.engine = engine;
            spec.bayes.learn_from_rungs = rungs;
        }
    }
    spec
}

struct Run {
    params: Value,
    seen: Seen,
    outcome: Outcome,
}

/// Epochs trained until a reported validation accuracy reached `target` (`None`: not within
/// [`MAX_EPOCHS`]).
fn epochs_to_target(
    surrogate: &Surrogate,
    rule: &str,
    ours: Ours,
    seed: u64,
    target: f64,
) -> Option<usize> {
    let spec = spec(surrogate, rule, ours, seed);
    let rule = spec.stopping.clone().expect("hyperband");
    let mut judge = Judge::new(rule.clone(), spec.metric.goal);
    let mut rungs = Rungs::of(&rule).filter(|_| spec.bayes.learn_from_rungs);
    let mut runs: Vec<Run> = Vec::new();
    let mut slots: [Option<usize>; 2] = [None, None];
    let mut epochs = 0;
    while epochs < MAX_EPOCHS {
        for slot in &mut slots {
            if slot.is_none() {
                let params = next(&spec, &runs, rungs.as_ref())?;
                runs.push(Run {
                    params,
                    seen: Seen::default(),
                    outcome: Outcome::Pending,
                });
                *slot = Some(runs.len() - 1);
            }
            let i = slot.expect("a trial in every slot");
            let r = &mut runs[i];
            let curve = surrogate.curve(&r.params);
            let y = curve[r.seen.history.len()];
            let before = r.seen.clone();
            r.seen.history.push(y);
            epochs += 1;
            if y >= target {
                return Some(epochs);
            }
            let stop = {
                judge.update(&before, &r.seen);
                judge.should_stop(&r.seen.history).is_some()
            };
            if stop || r.seen.history.len() == curve.len() {
                let before = r.seen.clone();
                r.outcome = if stop {
                    Outcome::Stopped
                } else {
                    r.seen.finished = true;
                    Outcome::Finished
                };
                judge.update(&before, &r.seen);
                *slot = None;
            }
            if let Some(rg) = &mut rungs {
                rg.set(i as u64 + 1, &r.seen.history);
            }
        }
    }
    None
}

/// The next trial's parameters, from every trial so far, as the engine computes them
/// (engine/lease.rs `model_column`).
fn next(spec: &SweepSpec, runs: &[Run], rungs: Option<&Rungs>) -> Option<Value> {
    let n = runs.len() as u64 + 1;
    let params: Vec<Value> = runs.iter().map(|r| r.params.clone()).collect();
    let ended: Vec<Ended> = runs
        .iter()
        .map(|r| Ended {
            outcome: r.outcome,
            value: r.seen.history.last().map(|v| -v),
        })
        .collect();
    let finals = budget::final_losses(&ended, spec.metric.impute);
    let losses = match rungs {
        Some(rg) => {
            let at: Vec<Vec<f64>> = (1..n)
                .map(|k| rg.at(k).iter().map(|v| -v).collect())
                .collect();
            let at: Vec<&[f64]> = at.iter().map(Vec::as_slice).collect();
            let min_count = spec.bayes.startup_trials.max(1) as usize;
            budget::losses(&ended, &finals, rg.steps(), &at, min_count).0
        }
        None => finals,
    };
    let losses: Vec<Option<Vec<f64>>> = losses.into_iter().map(|l| l.map(|v| vec![v])).collect();
    coordinator::search::suggest_objectives(spec, n, &params, &losses)
}

fn show(epochs: f64) -> String {
    if epochs.is_nan() {
        "     —".into()
    } else if epochs.is_finite() {
        format!("{epochs:>6.0}")
    } else {
        format!(">{MAX_EPOCHS}")
    }
}

/// Prints the comparison: median epochs to `target` over `seeds` seeds.
pub(crate) fn run(seeds: u64, target: f64, gp: bool, reference: bool) -> anyhow::Result<()> {
    let surrogate = Surrogate::load()?;
    println!(
        "early termination, 2 workers, Fashion-MNIST surrogate: median epochs trained until \
         val_accuracy ≥ {target} over {seeds} seeds (fewer is better; cut off at {MAX_EPOCHS}):"
    );
    let mut best = f64::INFINITY;
    for rule in RULES {
        let med = |ours: Ours| {
            median(
                (0..seeds)
                    .map(|s| {
                        epochs_to_target(&surrogate, rule, ours, s, target)
                            .map_or(f64::INFINITY, |e| e as f64)
                    })
                    .collect(),
            )
        };
        let each = |ours: Ours| -> Vec<f64> {
            (0..seeds)
                .map(|s| {
                    epochs_to_target(&surrogate, rule, ours, s, target)
                        .map_or(f64::INFINITY, |e| e as f64)
                })
                .collect()
        };
        let (finals, rungs) = (
            each(Ours::Bayes(BayesEngine::Tpe, false)),
            each(Ours::Bayes(BayesEngine::Tpe, true)),
        );
        let fewer = finals.iter().zip(&rungs).filter(|(f, r)| r < f).count();
        let more = finals.iter().zip(&rungs).filter(|(f, r)| r > f).count();
        let tpe = median(finals.clone());
        best = best.min(tpe);
        println!(
            "  ours {rule}: random {}   TPE {}   TPE learning from rungs {} \
             (fewer epochs on {fewer} seeds, more on {more})   GP {}",
            show(med(Ours::Random)),
            show(tpe),
            show(median(rungs)),
            show(if gp {
                med(Ours::Bayes(BayesEngine::Gp, false))
            } else {
                f64::NAN
            }),
        );
    }
    if !reference || !python_imports("optuna") {
        return Ok(());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/optuna_budget.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([
            "--seeds",
            &seeds.to_string(),
            "--target",
            &target.to_string(),
        ])
        .args(["--max-epochs", &MAX_EPOCHS.to_string()])
        .output()?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let epochs: Vec<f64> = v["epochs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e.as_f64().unwrap_or(f64::INFINITY))
                    .collect()
            })
            .unwrap_or_default();
        let m = median(epochs);
        println!(
            "  Optuna {} {}: {}   our best TPE {} it",
            v["version"].as_str().unwrap_or("?"),
            v["sampler"].as_str().unwrap_or("?"),
            show(m),
            if best <= m {
                "matches or beats"
            } else {
                "is behind"
            }
        );
    }
    if !out.status.success() {
        println!(
            "  (the Optuna run failed: {})",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    Ok(())
}
