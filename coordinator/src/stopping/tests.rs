//! Hyperband against W&B's golden vectors; ASHA and median on hand-made histories.

use serde_json::{json, Value};

use super::*;
use crate::config::tests::golden;
use crate::config::SweepSpec;

#[test]
fn hyperband_stops_exactly_the_runs_wandb_stops() {
    let cases = golden("hyperband.json");
    assert!(cases.len() >= 40);
    for case in cases {
        let spec = SweepSpec::from_value(case["config"].clone())
            .unwrap_or_else(|e| panic!("{}: {e}", case["config"]));
        let rule = spec.stopping.clone().unwrap();
        let metric = &spec.metric.name;
        let runs: Vec<(String, bool, Vec<f64>)> = case["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let hist = r["history"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|h| h.get(metric.as_str()).and_then(Value::as_f64))
                    .filter(|x| x.is_finite())
                    .collect();
                (
                    r["name"].as_str().unwrap().to_string(),
                    r["state"] == "running",
                    hist,
                )
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
        let want: Vec<String> = serde_json::from_value(case["stop"].clone()).unwrap();
        assert_eq!(stopped, want, "{}", case["config"]["early_terminate"]);
    }
}

fn views(h: &[Vec<f64>], finished: usize) -> Vec<TrialView<'_>> {
    h.iter()
        .enumerate()
        .map(|(i, h)| TrialView {
            running: i >= finished,
            finished: i < finished,
            history: h,
        })
        .collect()
}

#[test]
fn asha_keeps_the_top_third_at_each_rung() {
    let rule = Rule::from_config(&json!({"type": "asha", "min_iter": 1, "eta": 3, "max_iter": 9}))
        .unwrap();
    assert_eq!(
        rule,
        Rule::Asha {
            rungs: vec![1, 3, 9],
            eta: 3.0
        }
    );
    // Minimise: at rung 1 three trials have 0.5, 0.6, 0.7 → keep the best 1.
    let hist = vec![vec![0.5], vec![0.6], vec![0.7]];
    let all = views(&hist, 0);
    assert!(rule.should_stop(Goal::Minimize, &all[0], &all).is_none());
    assert!(rule
        .should_stop(Goal::Minimize, &all[1], &all)
        .unwrap()
        .contains("rung 1"));
    assert!(rule.should_stop(Goal::Minimize, &all[2], &all).is_some());
    // Maximise flips it.
    assert!(rule.should_stop(Goal::Maximize, &all[2], &all).is_none());
    // Between rungs nothing is decided.
    let h2 = vec![vec![0.9, 0.9], vec![0.1, 0.1]];
    let all = views(&h2, 0);
    assert!(rule.should_stop(Goal::Minimize, &all[0], &all).is_none());
    // Alone at a rung, a trial goes on.
    let h3 = vec![vec![5.0]];
    let all = views(&h3, 0);
    assert!(rule.should_stop(Goal::Minimize, &all[0], &all).is_none());
}

#[test]
fn median_waits_for_five_finished_trials_then_compares_with_their_median() {
    let rule = Rule::from_config(&json!({"type": "median"})).unwrap();
    let mut hist: Vec<Vec<f64>> = (0..4)
        .map(|i| vec![1.0 + i as f64, 0.5 + i as f64])
        .collect();
    hist.push(vec![10.0]);
    // Four finished: too few.
    let all = views(&hist, 4);
    assert!(rule.should_stop(Goal::Minimize, &all[4], &all).is_none());
    hist.insert(4, vec![5.0, 4.5]);
    // Five finished, values at step 1: 1,2,3,4,5 → median 3; the running trial has 10.
    let all = views(&hist, 5);
    let why = rule.should_stop(Goal::Minimize, &all[5], &all).unwrap();
    assert!(why.contains("median of 5 finished trials 3"), "{why}");
    // A good trial goes on.
    let mut hist2 = hist.clone();
    hist2[5] = vec![2.0];
    let all = views(&hist2, 5);
    assert!(rule.should_stop(Goal::Minimize, &all[5], &all).is_none());
}
