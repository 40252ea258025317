//! W&B's own sweep-engine test suite (`wandb/sweeps`, tests/), as data: every config its tests
//! validate, every grid they search, every hyperband decision and the value types of random
//! draws, with the answers W&B's engine gives (`tests/wandb_sweeps/cases.json`, made by
//! `tests/wandb_sweeps/harvest.py`). Each must agree with ours, except where a difference is
//! listed below with its reason.

use std::collections::BTreeSet;
use std::path::PathBuf;

use coordinator::config::SweepSpec;
use coordinator::search::{grid, sample};
use coordinator::stopping::TrialView;
use rand::SeedableRng;
use serde_json::Value;

fn cases() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/wandb_sweeps/cases.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str::<Value>(&text).expect("cases.json")["cases"].clone()
}

/// Configs W&B's validation refuses. Some of its tests run such configs with validation turned
/// off (`validate=False`); we always validate, so those cases are not compared.
fn wandb_refuses(cases: &Value) -> BTreeSet<String> {
    let mut refused: BTreeSet<String> = cases["validate"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["valid"] == false)
        .map(|c| c["config"].to_string())
        .collect();
    // W&B's test_validation.py runs invalid configs (`goal: minimise`, unknown keys) with its
    // validation turned off, to show its engine copes; we validate every config.
    for kind in ["grid", "hyperband", "types"] {
        for c in cases[kind].as_array().unwrap() {
            if c["test"]
                .as_str()
                .unwrap_or("")
                .starts_with("tests/test_validation.py")
            {
                refused.insert(c["config"].to_string());
            }
        }
    }
    refused
}

/// The cases of `kind` to compare: not those of configs W&B refuses, nor a Python tuple beside
/// an equal list (two values to W&B; JSON and YAML have no tuples).
fn compared<'a>(cases: &'a Value, kind: &str) -> Vec<&'a Value> {
    let refused = wandb_refuses(cases);
    cases[kind]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !refused.contains(&c["config"].to_string()))
        .filter(|c| {
            !c["test"]
                .as_str()
                .unwrap_or("")
                .ends_with("keeps_list_and_tuple_values_distinct")
        })
        .collect()
}

/// Where we knowingly differ from W&B's engine, and why.
fn known_difference(
    case: &Value,
    ours: &Result<SweepSpec, coordinator::config::ConfigError>,
) -> Option<&'static str> {
    let c = &case["config"];
    match (case["valid"].as_bool(), ours) {
        // W&B lets a scheduler's own search space stand in for `parameters`; we do not run
        // W&B's scheduler engines, so a sweep needs its parameters.
        (Some(true), Err(e)) if e.path == "parameters" && c.get("scheduler").is_some() => {
            Some("parameters defined by a W&B scheduler engine, which we do not run")
        }
        // W&B's schema lets these pass and its search raises later; we refuse at submit.
        (Some(true), Err(e)) if c["method"] == "grid" && e.message.contains("no grid") => {
            Some("a continuous distribution under grid: W&B's grid search raises later, we refuse at submit")
        }
        (Some(true), Err(e)) if c["method"] == "bayes" && e.path == "metric" => {
            Some("bayes without a metric: W&B's bayes search raises later, we refuse at submit")
        }
        (Some(true), Err(e)) if e.path.ends_with(".probabilities") && c["method"] == "grid" => {
            Some("probabilities under grid: W&B's grid search raises later, we refuse at submit")
        }
        _ => None,
    }
}

#[test]
fn configs_are_accepted_and_refused_as_wandb_does() {
    let cases = cases();
    let list = cases["validate"].as_array().unwrap();
    assert!(list.len() >= 80, "{} cases", list.len());
    let mut wrong = Vec::new();
    let mut known = 0;
    for case in list {
        let ours = SweepSpec::from_value(case["config"].clone());
        let want = case["valid"].as_bool().unwrap();
        if ours.is_ok() == want {
            continue;
        }
        if known_difference(case, &ours).is_some() {
            known += 1;
            continue;
        }
        wrong.push(format!(
            "{}: W&B {} {}, we {}",
            case["test"],
            if want { "accepts" } else { "refuses" },
            case["config"],
            match &ours {
                Ok(_) => "accept".to_string(),
                Err(e) => format!("refuse: {e}"),
            }
        ));
    }
    eprintln!(
        "{} validation cases, {} agree, {known} known differences",
        list.len(),
        list.len() - known - wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "{} disagree:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn grids_are_searched_in_wandbs_order() {
    let cases = cases();
    let list = cases["grid"].as_array().unwrap();
    assert!(list.len() >= 30);
    let mut wrong = Vec::new();
    for case in compared(&cases, "grid") {
        let ours = SweepSpec::from_value(case["config"].clone());
        let Some(want) = case["grid"].as_array() else {
            // W&B's grid search raised: we must refuse the config.
            if ours.is_ok() {
                wrong.push(format!(
                    "{}: W&B raises on {}, we accept",
                    case["test"], case["config"]
                ));
            }
            continue;
        };
        let spec = match ours {
            Ok(s) => s,
            Err(e) => {
                wrong.push(format!(
                    "{}: we refuse {}: {e}",
                    case["test"], case["config"]
                ));
                continue;
            }
        };
        let got: Vec<Value> = (0..)
            .map_while(|i| grid::point(&spec.parameters, i))
            .take(want.len() + 1)
            .collect();
        if &got != want {
            wrong.push(format!(
                "{}: {}\n  want {want:?}\n  got  {got:?}",
                case["test"], case["config"]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} grids differ:\n{}",
        wrong.len(),
        list.len(),
        wrong.join("\n")
    );
}

#[test]
fn hyperband_stops_what_wandbs_tests_stop() {
    let cases = cases();
    let list = cases["hyperband"].as_array().unwrap();
    assert!(list.len() >= 20);
    let mut wrong = Vec::new();
    for case in compared(&cases, "hyperband") {
        let spec = SweepSpec::from_value(case["config"].clone())
            .unwrap_or_else(|e| panic!("{}: {e}", case["test"]));
        let rule = spec.stopping.clone().unwrap();
        let runs: Vec<(String, bool, Vec<f64>)> = case["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let h = r["history"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_f64)
                    .filter(|x| x.is_finite())
                    .collect();
                // Some of W&B's test runs have no name (null): names compare as JSON text.
                (r["name"].to_string(), r["state"] == "running", h)
            })
            .collect();
        let views: Vec<TrialView<'_>> = runs
            .iter()
            .map(|(_, running, h)| TrialView {
                running: *running,
                finished: !running,
                history: h,
            })
            .collect();
        let mut stopped: Vec<String> = runs
            .iter()
            .zip(&views)
            .filter(|((_, running, _), _)| *running)
            .filter(|(_, v)| rule.should_stop(spec.metric.goal, v, &views).is_some())
            .map(|((n, _, _), _)| n.clone())
            .collect();
        stopped.sort();
        let mut want: Vec<String> = case["stop"]
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
        want.sort();
        if stopped != want {
            wrong.push(format!("{}: want {want:?}, got {stopped:?}", case["test"]));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} differ:\n{}",
        wrong.len(),
        list.len(),
        wrong.join("\n")
    );
}

#[test]
fn random_draws_have_wandbs_value_types() {
    let cases = cases();
    let list = cases["types"].as_array().unwrap();
    assert!(list.len() >= 25);
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    };
    let mut wrong = Vec::new();
    for case in compared(&cases, "types") {
        let spec = match SweepSpec::from_value(case["config"].clone()) {
            Ok(s) => s,
            Err(e) => {
                wrong.push(format!(
                    "{}: we refuse {}: {e}",
                    case["test"], case["config"]
                ));
                continue;
            }
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let want = case["types"].as_object().unwrap();
        for _ in 0..50 {
            let draw = sample::draw(&spec.parameters, &mut rng);
            for (name, allowed) in want {
                let allowed: BTreeSet<&str> = allowed
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                // Nested parameters come back as mappings in both.
                let got = kind(&draw[name.as_str()]);
                if !allowed.contains(got) {
                    wrong.push(format!(
                        "{}: {name} drew a {got}, W&B draws {allowed:?} ({})",
                        case["test"],
                        case["config"]["parameters"][name.as_str()]
                    ));
                    break;
                }
            }
        }
    }
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "{} differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
