//! Grid points and random draws of parsed configs: W&B's grid order (golden vectors), its
//! duplicate merging and value types, every distribution's range.

use serde_json::{json, Value};

use super::{grid, sample, suggest};
use crate::config::tests::golden;
use crate::config::SweepSpec;

#[test]
fn grid_order_equals_wandb_on_every_golden_case() {
    let cases = golden("grid.json");
    assert!(cases.len() >= 10);
    for case in cases {
        let spec = SweepSpec::from_value(case["config"].clone())
            .unwrap_or_else(|e| panic!("{}: {e}", case["config"]));
        let want = case["grid"].as_array().unwrap();
        assert_eq!(spec.total(), Some(want.len() as u64), "{}", case["config"]);
        for (i, w) in want.iter().enumerate() {
            let got = grid::point(&spec.parameters, i as u64).unwrap();
            assert_eq!(&got, w, "{}: point {i}", case["config"]);
        }
        assert!(grid::point(&spec.parameters, want.len() as u64).is_none());
    }
}

#[test]
fn random_draws_respect_every_distribution() {
    use rand::SeedableRng;
    let spec = SweepSpec::parse(
        r#"
method: random
parameters:
  u: {distribution: uniform, min: -1, max: 1}
  i: {distribution: int_uniform, min: 3, max: 5}
  q: {distribution: q_uniform, min: 0, max: 1, q: 0.25}
  lv: {distribution: log_uniform_values, min: 0.0001, max: 0.1}
  ql: {distribution: q_log_uniform_values, min: 16, max: 256, q: 16}
  l: {distribution: log_uniform, min: -2, max: 0}
  n: {distribution: normal, mu: 5, sigma: 0.1}
  ln: {distribution: log_normal, mu: 0, sigma: 0.5}
  b: {distribution: beta, a: 2, b: 2}
  c: {values: [x, y], probabilities: [0.9, 0.1]}
  nest: {parameters: {k: {value: 7}}}
"#,
    )
    .unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut xs = 0;
    for _ in 0..500 {
        let p = sample::draw(&spec.parameters, &mut rng);
        let f = |k: &str| p[k].as_f64().unwrap();
        assert!((-1.0..1.0).contains(&f("u")));
        assert!(p["i"].is_i64() && (3..=5).contains(&p["i"].as_i64().unwrap()));
        assert!([0.0, 0.25, 0.5, 0.75, 1.0].contains(&f("q")));
        assert!((0.0001..=0.1).contains(&f("lv")));
        assert!(
            p["ql"].is_i64() && p["ql"].as_i64().unwrap() % 16 == 0,
            "{}",
            p["ql"]
        );
        assert!((0.13..=1.0).contains(&f("l")));
        assert!((4.0..6.0).contains(&f("n")));
        assert!(f("ln") > 0.0);
        assert!((0.0..=1.0).contains(&f("b")));
        assert_eq!(p["nest"]["k"], 7);
        xs += usize::from(p["c"] == "x");
    }
    assert!(
        (400..490).contains(&xs),
        "{xs} of 500 draws were x at p = 0.9"
    );
}

#[test]
fn huge_grids_are_refused_and_large_ones_are_never_listed() {
    // 10¹² integers: refused with the limit and the parameter that makes it so large.
    let e = SweepSpec::parse(
        "method: grid\ntrainer: synthetic\nparameters:\n  x: {distribution: int_uniform, min: 0, max: 1000000000000}\n",
    )
    .unwrap_err();
    assert_eq!(e.path, "parameters");
    assert!(e.message.contains("1000000000001 points"), "{}", e.message);
    assert!(e.message.contains("parameters.x alone"), "{}", e.message);
    let e = SweepSpec::parse(
        "method: grid\ntrainer: synthetic\nparameters:\n  x: {distribution: q_uniform, min: 0, max: 1, q: 1.0e-15}\n",
    )
    .unwrap_err();
    assert!(
        e.message.contains("more than the 100000000 allowed"),
        "{}",
        e.message
    );
    // 10⁸ points (two parameters of 10⁴): accepted, and its last point is computed at once.
    let spec = SweepSpec::parse(
        "method: grid\ntrainer: synthetic\nparameters:\n  a: {distribution: int_uniform, min: 1, max: 10000}\n  \
         b: {distribution: q_uniform, min: 0, max: 1, q: 0.0001}\n",
    )
    .unwrap();
    assert_eq!(spec.total(), Some(100_000_000));
    let t = std::time::Instant::now();
    for _ in 0..1000 {
        let last = grid::point(&spec.parameters, 99_999_999).unwrap();
        assert_eq!(last["a"], 10000);
        assert!((last["b"].as_f64().unwrap() - 0.9999).abs() < 1e-9);
    }
    assert!(grid::point(&spec.parameters, 100_000_000).is_none());
    // A listed grid would take seconds per point; computed, a thousand take microseconds each.
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn wandb_parity_grid_duplicates_order_and_types() {
    // [a, b, c, a] is three points; equal values keep the place of the first and the last value.
    let s = SweepSpec::from_value(json!({"method": "grid", "parameters": {
        "x": {"values": ["a", "b", "c", "a"]},
        "n": {"values": [3000000, 7, 3000000.0]},
        "d": {"values": [{"p": 1, "q": 2}, {"q": 2, "p": 1}]},
    }}))
    .unwrap();
    // x: 3 distinct, n: 2 distinct, d: 1 distinct.
    assert_eq!(s.total(), Some(6));
    let n: Vec<Value> = (0..6)
        .map(|i| grid::point(&s.parameters, i).unwrap()["n"].clone())
        .collect();
    assert_eq!(n[0], json!(3000000.0), "the last of equal values");
    // A group `a` sorts before `a-x` at its level, as W&B walks each level sorted.
    let s = SweepSpec::from_value(json!({"method": "grid", "parameters": {
        "a-x": {"values": [1, 2]},
        "a": {"parameters": {"b": {"values": [3, 4]}}},
    }}))
    .unwrap();
    let p1 = grid::point(&s.parameters, 1).unwrap();
    assert_eq!(p1, json!({"a": {"b": 3}, "a-x": 2}), "a-x varies fastest");
    // Quantized draws are integers exactly when q is written as one.
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let s = SweepSpec::from_value(json!({"method": "random", "parameters": {
        "qi": {"distribution": "q_log_uniform_values", "min": 1.5, "max": 300.5, "q": 2},
        "qf": {"distribution": "q_uniform", "min": 0, "max": 10, "q": 1.0},
        "qb": {"distribution": "q_beta", "a": 2, "b": 2},
    }}))
    .unwrap();
    for _ in 0..20 {
        let v = sample::draw(&s.parameters, &mut rng);
        assert!(v["qi"].is_i64(), "{v}");
        assert!(v["qf"].is_f64(), "{v}");
        assert!(v["qb"].is_f64(), "{v}");
    }
}

#[test]
fn suggestions_are_pure_and_bounded() {
    let spec =
        SweepSpec::parse("method: random\nrun_cap: 3\nparameters:\n  x: {min: 0.0, max: 1.0}\n")
            .unwrap();
    let a: Vec<_> = (1..=3).map(|n| suggest(&spec, n).unwrap()).collect();
    let b: Vec<_> = (1..=3).map(|n| suggest(&spec, n).unwrap()).collect();
    assert_eq!(a, b);
    assert_ne!(a[0], a[1]);
    assert!(suggest(&spec, 4).is_none());
    let grid = SweepSpec::parse("method: grid\nparameters:\n  x: {values: [1, 2]}\n").unwrap();
    assert_eq!(suggest(&grid, 2).unwrap()["x"], 2);
    assert!(suggest(&grid, 3).is_none());
}

/// The conditional space of docs/CONFIG.md's example: momentum only with sgd-momentum/nag,
/// betas only with adam/nadam, a third layer's size only with three layers.
const CONDITIONAL: &str = r#"
method: METHOD
metric: {name: loss, goal: minimize}
trainer: synthetic
parameters:
  optimizer: {values: [sgd, momentum, nag, adam, nadam]}
  momentum: {values: [0.8, 0.9], when: {optimizer: [momentum, nag]}}
  beta1: {values: [0.9, 0.95], when: {optimizer: [adam, nadam]}}
  beta2: {value: 0.999, when: {optimizer: [adam, nadam]}}
  num_layers: {values: [1, 2, 3]}
  size_3: {values: [32, 64], when: {num_layers: {min: 3}}}
  lr: {values: [0.01, 0.001]}
"#;

/// Whether `p` holds exactly the parameters active under its own values.
fn only_active(p: &Value) -> bool {
    let opt = p["optimizer"].as_str().unwrap();
    let m = matches!(opt, "momentum" | "nag");
    let a = matches!(opt, "adam" | "nadam");
    let deep = p["num_layers"].as_i64().unwrap() >= 3;
    p.get("momentum").is_some() == m
        && p.get("beta1").is_some() == a
        && p.get("beta2").is_some() == a
        && p.get("size_3").is_some() == deep
        && p.get("lr").is_some()
}

#[test]
fn a_conditional_grid_enumerates_each_valid_combination_once() {
    let spec = SweepSpec::parse(&CONDITIONAL.replace("METHOD", "grid")).unwrap();
    // By hand: optimizers — sgd 1, momentum 2, nag 2, adam 2 (beta2 fixed), nadam 2 = 9;
    // layers — 1, 2, 3×2 sizes = 4; lr 2: 9 × 4 × 2 = 72 (the full product is 480).
    assert_eq!(spec.total(), Some(72));
    let points: Vec<Value> = (1..=72).map(|n| suggest(&spec, n).unwrap()).collect();
    assert!(suggest(&spec, 73).is_none());
    assert!(
        points.iter().all(only_active),
        "an inactive parameter in a point"
    );
    let distinct: std::collections::HashSet<String> = points.iter().map(Value::to_string).collect();
    assert_eq!(distinct.len(), 72, "each combination once");
    // W&B's order among the valid ones: names sorted, the last (size_3) varying fastest, then
    // optimizer; a combination differing only in inactive parameters is left out.
    assert_eq!(
        points[0],
        json!({"lr": 0.01, "num_layers": 1, "optimizer": "sgd"})
    );
    assert_eq!(
        points[1],
        json!({"lr": 0.01, "momentum": 0.8, "num_layers": 1, "optimizer": "momentum"})
    );
    assert_eq!(
        points[3],
        json!({"beta1": 0.9, "beta2": 0.999, "lr": 0.01, "num_layers": 1, "optimizer": "adam"})
    );
}

#[test]
fn random_and_bayes_never_yield_an_inactive_parameter() {
    for method in ["random", "bayes"] {
        let spec = SweepSpec::parse(&CONDITIONAL.replace("METHOD", method)).unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut hist: Vec<(Value, f64)> = Vec::new();
        for n in 1..=60u64 {
            let obs: Vec<super::Observation<'_>> = hist
                .iter()
                .map(|(p, y)| super::Observation {
                    params: p,
                    loss: Some(*y),
                })
                .collect();
            let p = super::suggest_with_history(&spec, n, &obs).unwrap();
            assert!(only_active(&p), "{method} trial {n}: {p}");
            seen.insert(p["optimizer"].as_str().unwrap().to_string());
            // A loss that likes adam with a third layer: bayes learns from every trial.
            let y = if p["optimizer"] == "adam" { 0.0 } else { 1.0 } + p["lr"].as_f64().unwrap();
            hist.push((p, y));
        }
        assert_eq!(seen.len(), 5, "{method}: every optimizer drawn");
    }
}

#[test]
fn tree_structured_tpe_finds_a_conditional_optimum_better_than_random() {
    // The best is adam with beta1 near 0.93 and a small lr; momentum's value matters less.
    let yaml = r#"
method: METHOD
metric: {name: loss, goal: minimize}
trainer: synthetic
parameters:
  optimizer: {values: [sgd, momentum, adam]}
  momentum: {min: 0.0, max: 1.0, when: {optimizer: momentum}}
  beta1: {min: 0.5, max: 1.0, when: {optimizer: adam}}
  lr: {min: 0.0, max: 1.0}
"#;
    let objective = |p: &Value| {
        let lr = p["lr"].as_f64().unwrap();
        lr * lr
            + match p["optimizer"].as_str().unwrap() {
                "adam" => 20.0 * (p["beta1"].as_f64().unwrap() - 0.93).powi(2),
                "momentum" => 0.3 + 0.1 * (p["momentum"].as_f64().unwrap() - 0.5).abs(),
                _ => 1.0,
            }
    };
    let median = |method: &str| {
        let mut best: Vec<f64> = (0..11)
            .map(|seed| {
                let mut spec = SweepSpec::parse(&yaml.replace("METHOD", method)).unwrap();
                spec.seed = seed;
                super::sequential_best(&spec, 40, objective)
            })
            .collect();
        best.sort_by(f64::total_cmp);
        best[5]
    };
    let (tpe, random) = (median("bayes"), median("random"));
    assert!(
        tpe < random * 0.7,
        "median best of 40: TPE {tpe}, random {random}"
    );
}

#[test]
fn multi_objective_search_covers_more_of_the_front_than_random() {
    // ZDT1 in 6 dimensions; hypervolume against (1.1, 11) of 60 trials, median of 7 seeds.
    let mut yaml = String::from(
        "method: METHOD\nbayes: {engine: ENGINE}\nmetric:\n  - {name: f1, goal: minimize}\n  - {name: f2, goal: minimize}\ntrainer: synthetic\nsynthetic: {function: zdt1}\nparameters:\n",
    );
    for i in 1..=6 {
        yaml.push_str(&format!("  x{i}: {{min: 0.0, max: 1.0}}\n"));
    }
    let median = |method: &str, engine: &str| {
        let mut hv: Vec<f64> = (0..7)
            .map(|seed| {
                let text = yaml.replace("METHOD", method).replace("ENGINE", engine);
                let mut spec = SweepSpec::parse(&text).unwrap();
                assert!(spec.multi_objective());
                spec.seed = seed;
                let front =
                    super::sequential_front(&spec, 60, worker::synthetic::objectives("zdt1"));
                assert_eq!(front.len(), 60);
                crate::pareto::hypervolume(&front, &[1.1, 11.0])
            })
            .collect();
        hv.sort_by(f64::total_cmp);
        hv[3]
    };
    let random = median("random", "tpe");
    let tpe = median("bayes", "tpe");
    let gp = median("bayes", "gp");
    assert!(
        tpe > random * 1.1 && gp > random * 1.1,
        "median hypervolume of 60 trials: TPE {tpe}, GP (ParEGO) {gp}, random {random}"
    );
}

#[test]
fn from_eight_dimensions_tpe_is_univariate_and_combines_good_trials() {
    // A separable function of 20 dimensions: what each good trial got right in one dimension
    // adds up. Median best of 60 trials over 7 seeds: random 1.23, the multivariate model 0.68,
    // the univariate one 0.48.
    let mut yaml = String::from(
        "method: METHOD\nmetric: {name: loss, goal: minimize}\ntrainer: synthetic\nparameters:\n",
    );
    for i in 0..20 {
        yaml.push_str(&format!("  x{i}: {{min: 0.0, max: 1.0}}\n"));
    }
    let objective = |p: &Value| {
        (0..20)
            .map(|i| (p[format!("x{i}")].as_f64().unwrap() - 0.3).powi(2))
            .sum::<f64>()
    };
    let median = |method: &str| {
        let mut best: Vec<f64> = (0..7)
            .map(|seed| {
                let mut spec = SweepSpec::parse(&yaml.replace("METHOD", method)).unwrap();
                spec.seed = seed;
                super::sequential_best(&spec, 60, objective)
            })
            .collect();
        best.sort_by(f64::total_cmp);
        best[3]
    };
    const { assert!(super::tpe::UNIVARIATE_FROM <= 20) };
    let (tpe, random) = (median("bayes"), median("random"));
    assert!(
        tpe < random * 0.45,
        "median best of 60: TPE {tpe}, random {random}"
    );
}
