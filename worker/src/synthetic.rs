//! The synthetic trainer: a trial whose metric is a known test function of its parameters,
//! with a learning curve over epochs and an optional sleep per epoch. For benchmarks of the
//! search, search-quality tests and fault tests, where training a network would only cost
//! time.
//!
//! At epoch `e` of `E`, `loss = val_loss = f(x) + (1 + |f(x)|)·(1/e − 1/E)`: a curve that
//! improves every epoch and ends at `f(x)` exactly (also reported as `objective`). The
//! multi-objective functions ([`MULTI`]: ZDT1–3, DTLZ2 with three objectives) report each
//! objective as `f1`, `f2`, … at every epoch, and `f1` as the curve above.

use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::time::Duration;

use serde_json::Value;

use crate::train::{Cancel, Control};

pub use sweep_trainer::SYNTHETIC_FUNCTIONS as FUNCTIONS;

/// A parameter the function needs is missing or not a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SyntheticError(pub String);

fn get(params: &BTreeMap<String, Value>, k: &str) -> Result<f64, SyntheticError> {
    params
        .get(k)
        .and_then(Value::as_f64)
        .ok_or_else(|| SyntheticError(format!("parameter {k}: the function needs a number")))
}

fn numeric(params: &BTreeMap<String, Value>) -> Vec<f64> {
    params.values().filter_map(Value::as_f64).collect()
}

/// The multi-objective test functions (every parameter in [0, 1], taken in name order).
pub const MULTI: [&str; 4] = ["zdt1", "zdt2", "zdt3", "dtlz2"];

/// ZDT1, ZDT2 or ZDT3 (`which` 1–3; Zitzler, Deb & Thiele 2000) of `x` (at least two
/// coordinates in [0, 1]): two objectives, both minimised.
pub fn zdt(which: u8, x: &[f64]) -> [f64; 2] {
    let f1 = x[0];
    let g = 1.0 + 9.0 * x[1..].iter().sum::<f64>() / (x.len() - 1).max(1) as f64;
    let r = f1 / g;
    let h = match which {
        1 => 1.0 - r.sqrt(),
        2 => 1.0 - r * r,
        _ => 1.0 - r.sqrt() - r * (10.0 * PI * f1).sin(),
    };
    [f1, g * h]
}

/// DTLZ2 (Deb, Thiele, Laumanns & Zitzler 2002) of `x` (coordinates in [0, 1], more than
/// `m`) with `m` objectives, all minimised; its front is the unit sphere's positive part.
pub fn dtlz2(x: &[f64], m: usize) -> Vec<f64> {
    let g: f64 = x[m - 1..].iter().map(|v| (v - 0.5).powi(2)).sum();
    (0..m)
        .map(|i| {
            let mut f = 1.0 + g;
            for v in &x[..m - 1 - i] {
                f *= (v * PI / 2.0).cos();
            }
            if i > 0 {
                f *= (x[m - 1 - i] * PI / 2.0).sin();
            }
            f
        })
        .collect()
}

/// The objectives of a [`MULTI`] function at `params` (every numeric parameter in name
/// order, each in [0, 1]).
pub fn evaluate_many(
    function: &str,
    params: &BTreeMap<String, Value>,
) -> Result<Vec<f64>, SyntheticError> {
    let x = numeric(params);
    if x.len() < 4 {
        return Err(SyntheticError(format!(
            "{function} needs at least four numeric parameters"
        )));
    }
    match function {
        "zdt1" => Ok(zdt(1, &x).to_vec()),
        "zdt2" => Ok(zdt(2, &x).to_vec()),
        "zdt3" => Ok(zdt(3, &x).to_vec()),
        "dtlz2" => Ok(dtlz2(&x, 3)),
        other => Err(SyntheticError(format!(
            "{other:?} is not a multi-objective function; expected one of {}",
            MULTI.join(", ")
        ))),
    }
}

/// A [`MULTI`] function as a search objective over a parameter object: its objectives, or
/// infinities where it is not defined.
pub fn objectives(function: &str) -> impl Fn(&Value) -> Vec<f64> + '_ {
    move |params| {
        let map = params
            .as_object()
            .map(|m| m.clone().into_iter().collect())
            .unwrap_or_default();
        evaluate_many(function, &map).unwrap_or_else(|_| vec![f64::INFINITY; 3])
    }
}

/// Branin–Hoo on x1 ∈ [−5, 10], x2 ∈ [0, 15]; minimum 0.397887 at three points.
pub fn branin(x1: f64, x2: f64) -> f64 {
    let (a, b, c, r, s, t) = (
        1.0,
        5.1 / (4.0 * PI * PI),
        5.0 / PI,
        6.0,
        10.0,
        1.0 / (8.0 * PI),
    );
    a * (x2 - b * x1 * x1 + c * x1 - r).powi(2) + s * (1.0 - t) * x1.cos() + s
}

/// Hartmann-6 on [0, 1]⁶; minimum −3.32237.
pub fn hartmann6(x: &[f64; 6]) -> f64 {
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
        [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
        [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
        [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
    ];
    -(0..4)
        .map(|i| {
            let inner: f64 = (0..6).map(|j| A[i][j] * (x[j] - P[i][j]).powi(2)).sum();
            ALPHA[i] * (-inner).exp()
        })
        .sum::<f64>()
}

/// Hartmann-3 on [0, 1]³; minimum −3.86278 at (0.114614, 0.555649, 0.852547).
pub fn hartmann3(x: &[f64; 3]) -> f64 {
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    const A: [[f64; 3]; 4] = [
        [3.0, 10.0, 30.0],
        [0.1, 10.0, 35.0],
        [3.0, 10.0, 30.0],
        [0.1, 10.0, 35.0],
    ];
    const P: [[f64; 3]; 4] = [
        [0.3689, 0.1170, 0.2673],
        [0.4699, 0.4387, 0.7470],
        [0.1091, 0.8732, 0.5547],
        [0.0381, 0.5743, 0.8828],
    ];
    -(0..4)
        .map(|i| {
            let inner: f64 = (0..3).map(|j| A[i][j] * (x[j] - P[i][j]).powi(2)).sum();
            ALPHA[i] * (-inner).exp()
        })
        .sum::<f64>()
}

/// Levy (any dimension; usually on [−10, 10]ᵈ); minimum 0 at (1, …, 1).
pub fn levy(x: &[f64]) -> f64 {
    let w: Vec<f64> = x.iter().map(|v| 1.0 + (v - 1.0) / 4.0).collect();
    let (first, last) = (w[0], w[w.len() - 1]);
    let middle: f64 = w[..w.len() - 1]
        .iter()
        .map(|wi| (wi - 1.0).powi(2) * (1.0 + 10.0 * (PI * wi + 1.0).sin().powi(2)))
        .sum();
    (PI * first).sin().powi(2)
        + middle
        + (last - 1.0).powi(2) * (1.0 + (2.0 * PI * last).sin().powi(2))
}

/// Ackley (any dimension; usually on [−32.768, 32.768]ᵈ); minimum 0 at the origin.
pub fn ackley(x: &[f64]) -> f64 {
    let d = x.len() as f64;
    let sq = x.iter().map(|v| v * v).sum::<f64>() / d;
    let cos = x.iter().map(|v| (2.0 * PI * v).cos()).sum::<f64>() / d;
    -20.0 * (-0.2 * sq.sqrt()).exp() - cos.exp() + 20.0 + std::f64::consts::E
}

/// Styblinski–Tang (any dimension; on [−5, 5]ᵈ); minimum −39.16617·d at −2.903534 each.
pub fn styblinski_tang(x: &[f64]) -> f64 {
    x.iter()
        .map(|v| v.powi(4) - 16.0 * v * v + 5.0 * v)
        .sum::<f64>()
        / 2.0
}

/// `function` as a search objective over a parameter object (a trial's parameters as JSON):
/// its value, or infinity where it is not defined (a missing or non-numeric parameter).
pub fn objective(function: &str) -> impl Fn(&Value) -> f64 + '_ {
    move |params| {
        let map = params
            .as_object()
            .map(|m| m.clone().into_iter().collect())
            .unwrap_or_default();
        evaluate(function, &map).unwrap_or(f64::INFINITY)
    }
}

/// The value of `function` at `params`: branin takes x1, x2; hartmann3 x1…x3; hartmann6
/// x1…x6; rosenbrock, levy, ackley, styblinski_tang and quadratic (Σ (xᵢ − 0.5)²) every
/// numeric parameter in name order; a [`MULTI`] function gives its first objective.
pub fn evaluate(function: &str, params: &BTreeMap<String, Value>) -> Result<f64, SyntheticError> {
    match function {
        "branin" => Ok(branin(get(params, "x1")?, get(params, "x2")?)),
        "hartmann6" => {
            let mut x = [0.0; 6];
            for (i, xi) in x.iter_mut().enumerate() {
                *xi = get(params, &format!("x{}", i + 1))?;
            }
            Ok(hartmann6(&x))
        }
        "hartmann3" => Ok(hartmann3(&[
            get(params, "x1")?,
            get(params, "x2")?,
            get(params, "x3")?,
        ])),
        "levy" | "ackley" | "styblinski_tang" => {
            let x = numeric(params);
            if x.is_empty() {
                return Err(SyntheticError(format!(
                    "{function} needs at least one numeric parameter"
                )));
            }
            Ok(match function {
                "levy" => levy(&x),
                "ackley" => ackley(&x),
                _ => styblinski_tang(&x),
            })
        }
        "rosenbrock" => {
            let x = numeric(params);
            if x.len() < 2 {
                return Err(SyntheticError(
                    "rosenbrock needs at least two numeric parameters".into(),
                ));
            }
            Ok(x.windows(2)
                .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (1.0 - w[0]).powi(2))
                .sum())
        }
        "quadratic" => Ok(numeric(params).iter().map(|v| (v - 0.5).powi(2)).sum()),
        m if MULTI.contains(&m) => Ok(evaluate_many(m, params)?[0]),
        other => Err(SyntheticError(format!(
            "unknown synthetic function {other:?}; expected one of {}",
            FUNCTIONS.join(", ")
        ))),
    }
}

/// How a synthetic trial ended.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticResult {
    /// Epochs run.
    pub epochs: usize,
    /// Whether the callback stopped it early.
    pub stopped: bool,
    /// Whether the cancel flag ended it.
    pub cancelled: bool,
    /// Final metrics (`loss`, `val_loss`, `objective`).
    pub metrics: BTreeMap<String, f64>,
}

/// Runs a synthetic trial, calling `on_epoch` with each epoch's metrics.
pub fn run(
    function: &str,
    params: &BTreeMap<String, Value>,
    epochs: usize,
    epoch_ms: u64,
    cancel: Option<&Cancel>,
    mut on_epoch: impl FnMut(usize, &BTreeMap<String, f64>) -> Control,
) -> Result<SyntheticResult, SyntheticError> {
    let f = evaluate(function, params)?;
    let many = if MULTI.contains(&function) {
        evaluate_many(function, params)?
    } else {
        Vec::new()
    };
    let mut metrics = BTreeMap::new();
    let big_e = epochs.max(1) as f64;
    for e in 1..=epochs {
        if epoch_ms > 0 {
            std::thread::sleep(Duration::from_millis(epoch_ms));
        }
        if cancel.is_some_and(Cancel::is_cancelled) {
            return Ok(SyntheticResult {
                epochs: e - 1,
                stopped: false,
                cancelled: true,
                metrics,
            });
        }
        let v = f + (1.0 + f.abs()) * (1.0 / e as f64 - 1.0 / big_e);
        metrics.insert("loss".to_string(), v);
        metrics.insert("val_loss".to_string(), v);
        metrics.insert("objective".to_string(), f);
        for (i, v) in many.iter().enumerate() {
            metrics.insert(format!("f{}", i + 1), *v);
        }
        if on_epoch(e, &metrics) == Control::Stop {
            return Ok(SyntheticResult {
                epochs: e,
                stopped: true,
                cancelled: false,
                metrics,
            });
        }
    }
    Ok(SyntheticResult {
        epochs,
        stopped: false,
        cancelled: false,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_objective_functions_are_on_their_known_fronts() {
        // ZDT: with x2..xn = 0, g = 1 and the point is on the front f2 = h(f1).
        let mut x = [0.0; 30];
        x[0] = 0.25;
        assert_eq!(zdt(1, &x), [0.25, 0.5]);
        assert_eq!(zdt(2, &x), [0.25, 0.9375]);
        let z3 = zdt(3, &x);
        assert!((z3[1] - (0.5 - 0.25 * (2.5 * PI).sin())).abs() < 1e-12);
        // Off the front: g = 1 + 9 · mean(rest).
        x[1..].fill(1.0);
        assert!((zdt(1, &x)[1] - 10.0 * (1.0 - (0.025f64).sqrt())).abs() < 1e-12);
        // DTLZ2: with the distance variables at 0.5, the objectives lie on the unit sphere.
        let mut y = [0.5; 12];
        y[0] = 0.3;
        y[1] = 0.8;
        let f = dtlz2(&y, 3);
        assert!(
            (f.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-12,
            "{f:?}"
        );
        assert!(f.iter().all(|v| *v >= 0.0));
        // The trainer's view: every numeric parameter in name order.
        let p: BTreeMap<String, Value> = (1..=12)
            .map(|i| (format!("x{i:02}"), Value::from(y[i - 1])))
            .collect();
        assert_eq!(evaluate_many("dtlz2", &p).unwrap(), f);
        assert_eq!(evaluate("dtlz2", &p).unwrap(), f[0]);
    }

    #[test]
    fn known_minima() {
        assert!((branin(-PI, 12.275) - 0.397_887).abs() < 1e-5);
        assert!((branin(PI, 2.275) - 0.397_887).abs() < 1e-5);
        let x = [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573];
        assert!((hartmann6(&x) + 3.32237).abs() < 1e-4);
        let p: BTreeMap<String, Value> = [
            ("a".to_string(), Value::from(1.0)),
            ("b".to_string(), Value::from(1.0)),
        ]
        .into();
        assert_eq!(evaluate("rosenbrock", &p).unwrap(), 0.0);
        assert_eq!(evaluate("quadratic", &p).unwrap(), 0.5);
        assert!(evaluate("branin", &p).unwrap_err().0.contains("x1"));
        // The suite of `sweep-bench search`, at their known minima (and off them).
        assert!((hartmann3(&[0.114614, 0.555649, 0.852547]) + 3.86278).abs() < 1e-4);
        assert!(levy(&[1.0; 6]).abs() < 1e-12 && levy(&[0.0; 6]) > 0.1);
        assert!(ackley(&[0.0; 5]).abs() < 1e-12 && ackley(&[1.0; 5]) > 1.0);
        let st = styblinski_tang(&[-2.903534; 8]);
        assert!((st + 39.16617 * 8.0).abs() < 1e-3, "{st}");
        assert!(evaluate("levy", &p).unwrap().abs() < 1e-12);
        assert!(evaluate("hartmann3", &p).unwrap_err().0.contains("x1"));
        // The same values as bench/python/optuna_search.py's (the Optuna side of the benchmark).
        let x = [0.3, -1.2, 2.5, 0.7, -0.4, 1.9, 3.1, -2.2];
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.abs().max(1.0);
        assert!(close(hartmann3(&[0.3, 0.2, 0.9]), -1.073978313634011));
        let four: BTreeMap<String, Value> = (0..4)
            .map(|i| (format!("x{}", i + 1), Value::from(x[i])))
            .collect();
        assert!(close(evaluate("rosenbrock", &four).unwrap(), 3366.6));
        assert!(close(levy(&x[..6]), 3.359120509812435));
        assert!(close(ackley(&x[..5]), 6.6378203841940895));
        assert!(close(styblinski_tang(&x), -115.06015));
    }

    #[test]
    fn the_curve_improves_and_ends_at_the_value() {
        let p: BTreeMap<String, Value> = [("x".to_string(), Value::from(0.0))].into();
        let mut seen = Vec::new();
        let r = run("quadratic", &p, 4, 0, None, |_, m| {
            seen.push(m["loss"]);
            Control::Continue
        })
        .unwrap();
        assert!(seen.windows(2).all(|w| w[1] < w[0]), "{seen:?}");
        assert_eq!(r.metrics["loss"], 0.25);
        let r = run("quadratic", &p, 4, 0, None, |e, _| {
            if e == 2 {
                Control::Stop
            } else {
                Control::Continue
            }
        })
        .unwrap();
        assert!(r.stopped && r.epochs == 2);
    }
}
