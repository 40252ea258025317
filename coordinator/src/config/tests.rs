//! Config parsing against W&B's own engine (golden vectors) and our own error messages.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::*;

/// The directory of W&B's golden vectors: `SWEEP_GOLDEN_DIR`, else `../shared/golden/wandb`
/// beside the repository.
pub(crate) fn golden_dir() -> PathBuf {
    std::env::var_os("SWEEP_GOLDEN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/golden/wandb")
        })
}

/// One golden file, parsed.
pub(crate) fn golden(name: &str) -> Vec<Value> {
    let p = golden_dir().join(name);
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("golden file {} ({e}); set SWEEP_GOLDEN_DIR", p.display()));
    serde_json::from_str(&text).expect("golden JSON")
}

#[test]
fn validation_agrees_with_wandb_wherever_it_refuses() {
    for case in golden("validate.json") {
        let cfg = &case["config"];
        let ours = SweepSpec::from_value(cfg.clone());
        if case["valid"] == false {
            // W&B's schema refuses an unknown top-level key, but its CLI warns and goes on:
            // so do we (a notice), a choice docs/CONFIG.md states.
            if let Ok(s) = &ours {
                let unknown = s
                    .notices
                    .iter()
                    .any(|n| n.contains("unknown top-level key"));
                let only_that = cfg
                    .as_object()
                    .is_some_and(|m| m.keys().any(|k| !WANDB_KEYS.contains(&k.as_str())));
                assert!(unknown && only_that, "W&B refuses {cfg}, so must we: {s:?}");
                continue;
            }
            let e = ours.expect_err(&format!("W&B refuses {cfg}, so must we"));
            assert!(!e.path.is_empty() && !e.message.is_empty());
        } else if let Err(e) = ours {
            // We refuse more only where the method does: a continuous distribution has no grid,
            // and W&B's bayes search raises without a metric (its schema alone lets it pass).
            let allowed = (cfg["method"] == "grid" && e.message.contains("no grid"))
                || (cfg["method"] == "bayes" && e.path == "metric");
            assert!(allowed, "W&B accepts {cfg} but we refuse: {e}");
        }
    }
}

fn err(v: Value) -> ConfigError {
    SweepSpec::from_value(v.clone()).expect_err(&v.to_string())
}

#[test]
fn errors_name_the_path() {
    let e = err(json!({"method": "random", "parameters": {"lr": {"min": 1, "max": 0.5}}}));
    assert_eq!(e.path, "parameters.lr.min");
    assert!(e.message.contains("not less than max"));
    let e = err(
        json!({"method": "grid", "parameters": {"a": {"parameters": {"b": {"distribution": "uniform", "min": 0, "max": 1}}}}}),
    );
    assert_eq!(e.path, "parameters.a.b");
    let e = err(json!({"method": "random", "parameters": {"a": {"distribution": "lognormal"}}}));
    assert_eq!(e.path, "parameters.a.distribution");
    let e = err(json!({"method": "random", "parameters": {"a": {"value": 1, "vlaues": [2]}}}));
    assert_eq!(e.path, "parameters.a.vlaues");
    let gp = SweepSpec::from_value(
        json!({"method": "bayes", "metric": {"name": "loss"}, "bayes": {"engine": "gp", "startup_trials": 4}, "parameters": {"a": {"value": 1}}}),
    )
    .unwrap();
    assert_eq!(gp.bayes.engine, crate::config::BayesEngine::Gp);
    assert_eq!(gp.bayes.startup_trials, 4);
    let e = err(
        json!({"method": "bayes", "metric": {"name": "loss"}, "bayes": {"engine": "smac"}, "parameters": {"a": {"value": 1}}}),
    );
    assert_eq!(e.path, "bayes.engine");
    let e = err(
        json!({"method": "random", "metric": {"name": "loss", "impute": "mean"}, "parameters": {"a": {"value": 1}}}),
    );
    assert_eq!(e.path, "metric.impute");
    let e = err(json!({"method": "random", "parameters": {"a": {"value": 1}}, "run_cap": -3}));
    assert_eq!(e.path, "run_cap");
    let e = err(json!({"method": "random", "parameters": {"a": {"value": 1}}, "keep_models": -1}));
    assert_eq!(e.path, "keep_models");
    let kept = SweepSpec::from_value(
        json!({"method": "random", "parameters": {"a": {"value": 1}}, "keep_models": 0}),
    )
    .unwrap();
    assert_eq!(kept.keep_models, 0);
    let default =
        SweepSpec::from_value(json!({"method": "random", "parameters": {"a": {"value": 1}}}))
            .unwrap();
    assert_eq!(default.keep_models, crate::config::DEFAULT_KEEP_MODELS);
    let e = err(json!({"parameters": {"a": {"value": 1}}}));
    assert_eq!(e.path, "method");
    let e = err(json!({"method": "grid"}));
    assert_eq!(e.path, "parameters");
    assert_eq!(SweepSpec::parse("method: [").unwrap_err().path, "config");
}

#[test]
fn the_mlp_trainer_checks_names_and_listed_values() {
    let ok = SweepSpec::parse("method: grid\nparameters:\n  optimizer: {values: [adam, NAG]}\n  hidden_size: {values: [32, 64]}\n").unwrap();
    ok.check_trainer().unwrap();
    let e = SweepSpec::parse("method: grid\nparameters:\n  optimizer: {values: [adam, lbfgs]}\n")
        .unwrap_err();
    assert_eq!(e.path, "parameters.optimizer.values[1]");
    let e = SweepSpec::parse(
        "method: grid\ntrainer: mlp\nparameters:\n  temperature: {values: [0.1]}\n",
    )
    .unwrap_err();
    assert!(e.message.contains("no parameter \"temperature\""), "{e}");
    // Without `trainer: mlp`, someone's own names make a sweep for agents, as in W&B.
    let agents = SweepSpec::parse(
        "method: grid\nparameters:\n  lr: {values: [0.1]}\n  hidden_layer_size: {value: 32}\n",
    )
    .unwrap();
    assert_eq!(agents.trainer, Trainer::Agent);
    agents.check_trainer().unwrap();
    assert!(
        agents.notices[0]
            .contains("parameters the mlp trainer does not have (hidden_layer_size, lr)"),
        "{:?}",
        agents.notices
    );
    // Someone's own names are theirs: `run` refuses the sweep (its workers would wait for
    // agents) without guessing.
    let why = agents.local_refusal().unwrap();
    assert!(
        why.contains("parameters hidden_layer_size, lr are not") && why.contains("nothing was run"),
        "{why}"
    );
    // A misspelt MLP name makes a sweep for agents too: the notice and `run` name the fix.
    let typo = SweepSpec::parse(
        "method: grid\nparameters:\n  hiden_size: {values: [32, 64]}\n  learningrate: {value: 0.01}\n  epochs: {value: 1}\n",
    )
    .unwrap();
    assert_eq!(typo.trainer, Trainer::Agent);
    assert!(
        typo.notices[0].contains(
            "hiden_size (did you mean hidden_size?), learningrate (did you mean learning_rate?)"
        ),
        "{:?}",
        typo.notices
    );
    let why = typo.local_refusal().unwrap();
    assert!(
        why.contains("hiden_size (did you mean hidden_size?)"),
        "{why}"
    );
    // The MLP's own sweeps and program sweeps are served locally.
    let mlp =
        SweepSpec::parse("method: grid\nparameters:\n  hidden_size: {values: [32]}\n").unwrap();
    assert_eq!(mlp.local_refusal(), None);
}

#[test]
fn programs_and_their_options_are_checked() {
    let p =
        SweepSpec::parse("program: train.py\nmethod: random\nparameters:\n  lr: {values: [0.1]}\n")
            .unwrap();
    let Trainer::Program(spec) = &p.trainer else {
        panic!("{:?}", p.trainer)
    };
    assert_eq!(spec.program.as_deref(), Some("train.py"));
    assert_eq!(spec.command, None);
    assert_eq!(p.metric.name, "", "no metric: nothing ranked");
    let e = err(
        json!({"method": "grid", "command": ["python", "${program}"], "parameters": {"a": {"value": 1}}}),
    );
    assert_eq!(e.path, "program");
    let e = err(
        json!({"method": "grid", "program": "t.py", "command": "python t.py", "parameters": {"a": {"value": 1}}}),
    );
    assert_eq!(e.path, "command");
    let e = err(
        json!({"method": "grid", "program": "t.py", "program_options": {"time_limit": -1}, "parameters": {"a": {"value": 1}}}),
    );
    assert_eq!(e.path, "program_options.time_limit");
    for bad in [json!(-1), json!(257), json!(1.5), json!("64")] {
        let e = err(
            json!({"method": "grid", "program": "t.py", "program_options": {"max_files_mb": bad}, "parameters": {"a": {"value": 1}}}),
        );
        assert_eq!(e.path, "program_options.max_files_mb");
        assert!(
            e.message.contains("from 0 (keep no files) to 256"),
            "{}",
            e.message
        );
    }
    // What a trial may hand back: the sweep's, the default, none without kept outputs.
    let files = |c: Value| SweepSpec::from_value(c).unwrap().max_files_mb();
    assert_eq!(
        files(
            json!({"method": "grid", "program": "t.py", "program_options": {"max_files_mb": 3}, "parameters": {"a": {"value": 1}}})
        ),
        3
    );
    assert_eq!(
        files(json!({"method": "grid", "program": "t.py", "parameters": {"a": {"value": 1}}})),
        64
    );
    assert_eq!(
        files(
            json!({"method": "grid", "program": "t.py", "keep_models": 0, "parameters": {"a": {"value": 1}}})
        ),
        0
    );
    assert_eq!(
        files(json!({"method": "grid", "parameters": {"epochs": {"value": 1}}})),
        0
    );
    let e = err(
        json!({"method": "grid", "program_options": {"time_limit": 5}, "parameters": {"a": {"value": 1}}}),
    );
    assert_eq!(e.path, "program_options");
    // GPUs per trial: none unless the sweep says; a whole number up to one worker's GPUs.
    let gpus = |c: Value| SweepSpec::from_value(c).unwrap().gpus_per_trial();
    assert_eq!(
        gpus(json!({"method": "grid", "program": "t.py", "parameters": {"a": {"value": 1}}})),
        0
    );
    assert_eq!(
        gpus(
            json!({"method": "grid", "program": "t.py", "program_options": {"gpus": 2}, "parameters": {"a": {"value": 1}}})
        ),
        2
    );
    assert_eq!(
        gpus(json!({"method": "grid", "parameters": {"epochs": {"value": 1}}})),
        0
    );
    for bad in [json!(-1), json!(65), json!(0.5), json!("1"), json!(true)] {
        let e = err(
            json!({"method": "grid", "program": "t.py", "program_options": {"gpus": bad}, "parameters": {"a": {"value": 1}}}),
        );
        assert_eq!(e.path, "program_options.gpus");
        assert!(e.message.contains("from 0 to 64"), "{}", e.message);
    }
    // Workers per trial: one unless the sweep says.
    let nodes = |c: Value| SweepSpec::from_value(c).unwrap().nodes_per_trial();
    assert_eq!(
        nodes(json!({"method": "grid", "program": "t.py", "parameters": {"a": {"value": 1}}})),
        1
    );
    assert_eq!(
        nodes(
            json!({"method": "grid", "program": "t.py", "program_options": {"nodes": 2, "gpus": 8}, "parameters": {"a": {"value": 1}}})
        ),
        2
    );
    for bad in [json!(0), json!(65), json!(1.5), json!("2")] {
        let e = err(
            json!({"method": "grid", "program": "t.py", "program_options": {"nodes": bad}, "parameters": {"a": {"value": 1}}}),
        );
        assert_eq!(e.path, "program_options.nodes");
        assert!(e.message.contains("from 1 to 64"), "{}", e.message);
    }
    let e = err(
        json!({"method": "random", "program": "t.py", "early_terminate": {"type": "hyperband", "min_iter": 1}, "parameters": {"a": {"value": 1}}}),
    );
    assert_eq!(e.path, "metric");
    // A command without ${program} needs no program.
    SweepSpec::from_value(json!({"method": "grid", "command": ["bash", "run.sh", "${args}"], "parameters": {"a": {"value": 1}}})).unwrap();
    // trainer: mlp keeps the built-in trainer and says the program is not run.
    let m = SweepSpec::parse(
        "program: train.py\ntrainer: mlp\nmethod: grid\nparameters:\n  epochs: {value: 1}\n",
    )
    .unwrap();
    assert_eq!(m.trainer.name(), "mlp");
    assert!(
        m.notices[0].contains("program train.py is not run"),
        "{:?}",
        m.notices
    );
}

#[test]
fn metric_names_the_mlp_never_reports_make_a_sweep_for_agents_with_a_hint() {
    // As W&B takes it: a config with no program whose metric the script names is for agents;
    // the notice (and `run`'s refusal) says what it looks like.
    let s = SweepSpec::from_value(json!({"method": "grid", "metric": {"name": "val_acc", "goal": "maximize"}, "parameters": {"epochs": {"value": 1}}})).unwrap();
    assert_eq!(s.trainer, Trainer::Agent);
    assert!(
        s.notices[0].contains(
            "metric val_acc (did you mean val_accuracy?) is not one the mlp trainer reports"
        ),
        "{:?}",
        s.notices
    );
    let why = s.local_refusal().unwrap();
    assert!(
        why.contains("its metric val_acc (did you mean val_accuracy?)"),
        "{why}"
    );
    let s = SweepSpec::from_value(json!({"method": "grid", "metric": {"name": "validation_acuracy"}, "parameters": {"epochs": {"value": 1}}})).unwrap();
    assert!(
        !s.notices[0].contains("did you mean"),
        "no near name: {:?}",
        s.notices
    );
    // With trainer: mlp it is the MLP's sweep, and the name is refused with the hint.
    let e = err(
        json!({"method": "grid", "trainer": "mlp", "metric": {"name": "val_acc", "goal": "maximize"}, "parameters": {"epochs": {"value": 1}}}),
    );
    assert_eq!(e.path, "metric.name");
    assert!(e.message.contains("did you mean val_accuracy?"), "{e}");
    let s = SweepSpec::from_value(json!({"method": "grid", "metric": {"name": "val_accuracy"}, "parameters": {"epochs": {"value": 1}}})).unwrap();
    assert!(
        s.notices[0].contains("has no goal, so it is minimized"),
        "{:?}",
        s.notices
    );
    let s = SweepSpec::from_value(json!({"method": "grid", "metric": {"name": "val_loss"}, "parameters": {"epochs": {"value": 1}}})).unwrap();
    assert!(s.notices.is_empty(), "{:?}", s.notices);
}

/// Seeded mutations of `seed`: flipped bytes, inserted YAML/JSON tokens, deleted runs,
/// truncation, and splices of the input into itself.
fn mutate<R: rand::Rng>(rng: &mut R, seed: &[u8]) -> Vec<u8> {
    const TOKENS: &[&str] = &[
        ":",
        "{",
        "}",
        "[",
        "]",
        "-",
        "\n",
        " ",
        ",",
        "values",
        "min",
        "max",
        "distribution",
        "1e308",
        "-1",
        "NaN",
        ".nan",
        ".inf",
        "&a",
        "*a",
        "!!binary",
        "~",
        "\"",
        "'",
        "#",
        "0x",
        "parameters",
        "method",
        "run_cap",
        "early_terminate",
        "q",
        "mu",
        "sigma",
        "\t",
        "\u{0}",
        "🦀",
        "18446744073709551616",
        "-0",
        "null",
        "true",
    ];
    let mut v = seed.to_vec();
    for _ in 0..rng.random_range(1..6) {
        let at = rng.random_range(0..=v.len());
        match rng.random_range(0..5) {
            0 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                v.splice(at..at, t.bytes());
            }
            2 => {
                let end = (at + rng.random_range(0..16)).min(v.len());
                v.drain(at..end);
            }
            3 => v.truncate(at),
            _ => {
                let from = rng.random_range(0..=v.len());
                let end = (from + rng.random_range(0..64)).min(v.len());
                let piece = v[from..end].to_vec();
                v.splice(at..at, piece);
            }
        }
    }
    v
}

/// The committed fuzz corpus (`fuzz/corpus/sweep_config`) and 300 seeded mutations of each
/// entry: the parser never panics and every error names a field path. (`cargo fuzz run
/// sweep_config` explores further; docs/RELIABILITY.md records those runs.)
#[test]
fn the_parser_never_panics_on_the_corpus_or_its_mutations() {
    use rand::SeedableRng;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/sweep_config");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|f| std::fs::read(f.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 10, "corpus seeds in {}", dir.display());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut inputs = 0;
    for seed in &seeds {
        for k in 0..=300 {
            let bytes = if k == 0 {
                seed.clone()
            } else {
                mutate(&mut rng, seed)
            };
            let text = String::from_utf8_lossy(&bytes);
            let r = std::panic::catch_unwind(|| SweepSpec::parse(&text));
            match r {
                Err(_) => panic!("the parser panicked on:\n{text}"),
                Ok(Err(e)) => assert!(!e.path.is_empty(), "no field path: {e} for\n{text}"),
                Ok(Ok(_)) => {}
            }
            inputs += 1;
        }
    }
    assert!(inputs > 3000);
}

/// YAML aliases cannot blow up memory ("billion laughs").
#[test]
fn alias_bombs_are_refused() {
    let mut y = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        y.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    y.push_str("method: grid\nparameters: {x: {value: 1}}\n");
    let t = std::time::Instant::now();
    let r = SweepSpec::parse(&y);
    assert!(r.is_err(), "an alias bomb parses?");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn hyperband_brackets_are_bounded() {
    let e = err(
        json!({"method": "random", "parameters": {"x": {"values": [1]}},
        "early_terminate": {"type": "hyperband", "max_iter": 27, "s": 50000000}}),
    );
    assert_eq!(e.path, "early_terminate.s");
    assert!(e.message.contains("1 to 100"), "{}", e.message);
}

/// Where W&B's own engine (`wandb/sweeps`) and its test suite disagreed with us before.
#[test]
fn wandb_parity_what_it_refuses_and_what_it_accepts() {
    let e = err(
        json!({"method": "grid", "parameters": {"x": {"values": [1, 2], "probabilities": [0.5, 0.5]}}}),
    );
    assert_eq!(e.path, "parameters.x.probabilities");
    let e = err(
        json!({"method": "random", "controller": {"type": "remote"}, "parameters": {"x": {"value": 1}}}),
    );
    assert_eq!(e.path, "controller.type");
    let s = SweepSpec::from_value(json!({"method": "random", "controller": {"type": "local"}, "parameters": {"x": {"value": 1}}})).unwrap();
    assert!(
        s.notices.iter().any(|n| n.contains("controller")),
        "{:?}",
        s.notices
    );
    // W&B's custom method with several metrics and a scheduler: accepted, said plainly.
    let s = SweepSpec::from_value(json!({"method": "custom",
        "metrics": [{"name": "loss", "goal": "minimize"}, {"name": "latency", "goal": "minimize"}],
        "scheduler": {"engine": "optuna"},
        "parameters": {"x": {"min": 0.0, "max": 1.0}}}))
    .unwrap();
    assert_eq!(s.method, Method::Bayes);
    assert_eq!(s.metric.name, "loss");
    let all = s.notices.join("\n");
    for want in [
        "the first (\"loss\")",
        "optuna engine is not run",
        "method custom: runs as method bayes",
    ] {
        assert!(all.contains(want), "{want}: {all}");
    }
    // W&B's engine takes a scheduler beside any method (its test suite says so); so do we.
    let s = SweepSpec::from_value(
        json!({"method": "random", "scheduler": {"engine": "optuna"}, "parameters": {"x": {"value": 1}}}),
    )
    .unwrap();
    assert!(
        s.notices[0].contains("method random chooses the trials"),
        "{:?}",
        s.notices
    );
    let e = err(
        json!({"method": "random", "scheduler": {"engine": "optuna"}, "metric": {"name": "l"},
               "early_terminate": {"type": "hyperband", "min_iter": 1}, "parameters": {"x": {"value": 1}}}),
    );
    assert_eq!(e.path, "scheduler");
    // Exponent-bound distributions run as written, with W&B's own note.
    let s = SweepSpec::from_value(json!({"method": "random", "metric": {"name": "loss"}, "parameters": {"lr": {"distribution": "log_uniform", "min": -9, "max": -2}}})).unwrap();
    assert!(
        s.notices.iter().any(|n| n == "parameters.lr uses log_uniform, where min/max specify base-e exponents. Use log_uniform_values to specify limit values."),
        "{:?}",
        s.notices
    );
}

#[test]
fn an_unknown_top_level_key_alone_is_a_notice() {
    let s = SweepSpec::from_value(
        json!({"method": "grid", "descripton": "typo", "parameters": {"epochs": {"value": 1}}}),
    )
    .unwrap();
    assert!(
        s.notices
            .iter()
            .any(|n| n.starts_with("descripton: unknown top-level key, ignored; expected one of")),
        "{:?}",
        s.notices
    );
}

#[test]
fn every_independent_error_comes_at_once() {
    let e = err(json!({
        "methd": "grid",
        "method": "gird",
        "parameters": {
            "lr": {"min": 0.1},
            "layers": {"values": [1, 2]},
            "act": {"distribution": "normal_ish", "values": ["relu"]},
        },
    }));
    let paths: Vec<&str> = std::iter::once(e.path.as_str())
        .chain(e.more.iter().map(|m| m.path.as_str()))
        .collect();
    assert_eq!(e.count(), 4, "{e}");
    assert_eq!(paths[0], "methd");
    assert_eq!(paths[1], "method");
    assert!(paths.iter().any(|p| p.starts_with("parameters.lr")), "{e}");
    assert!(paths.iter().any(|p| p.starts_with("parameters.act")), "{e}");
    // A count, then one error per line, each with its path.
    let text = e.to_string();
    assert!(
        text.starts_with("4 problems:\n  methd: unknown top-level key"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 5, "{text}");
}

/// The stored spec is the validated one (read back at a restart without validating again): every
/// config W&B's golden vectors accept, and ours with every extension, come back equal.
#[test]
fn a_validated_spec_round_trips_through_its_stored_json() {
    let mut configs: Vec<Value> = ["validate.json", "grid.json", "hyperband.json"]
        .iter()
        .flat_map(|f| golden(f))
        .map(|case| case["config"].clone())
        .collect();
    configs.extend([
        json!({"method": "bayes", "metric": {"name": "val_loss", "goal": "minimize", "target": 0.1, "impute": "best"},
               "bayes": {"engine": "gp", "startup_trials": 4}, "seed": 7, "max_attempts": 2, "run_cap": 9,
               "early_terminate": {"type": "asha", "min_iter": 1, "eta": 2},
               "parameters": {"learning_rate": {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.1},
                              "batch_size": {"distribution": "q_log_uniform_values", "min": 16, "max": 256, "q": 16},
                              "optimizer": {"values": ["adam", "sgd"], "probabilities": [0.7, 0.3]}}}),
        json!({"method": "random", "program": "train.py", "command": ["${env}", "python3", "${program}", "${args}"],
               "program_options": {"time_limit": 60, "wandb_shim": false, "max_files_mb": 3, "gpus": 2, "nodes": 2},
               "early_terminate": {"type": "median"}, "metric": {"name": "acc", "goal": "maximize"},
               "parameters": {"g": {"parameters": {"a": {"distribution": "normal", "mu": 1, "sigma": 2}}}}}),
        json!({"method": "grid", "trainer": "synthetic", "synthetic": {"function": "branin", "epochs": 3},
               "parameters": {"x1": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25}, "x2": {"value": 1}}}),
    ]);
    let mut n = 0;
    for config in configs {
        let Ok(spec) = SweepSpec::from_value(config.clone()) else {
            continue;
        };
        let text = serde_json::to_string(&spec).unwrap();
        let back: SweepSpec =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{config}: {e}\n{text}"));
        // The config itself is stored beside the spec, in a column of its own.
        assert_eq!(back.raw, Value::Null);
        assert_eq!(
            SweepSpec {
                raw: spec.raw.clone(),
                ..back
            },
            spec,
            "{config}"
        );
        n += 1;
    }
    assert!(n >= 50, "only {n} valid configs");
}

#[test]
fn metric_as_a_list_is_several_objectives() {
    let spec = SweepSpec::parse(
        "method: bayes\nmetric:\n  - {name: val_accuracy, goal: maximize, target: 0.9}\n  - {name: param_count, goal: minimize}\nearly_terminate: {type: hyperband, min_iter: 1}\nparameters:\n  learning_rate: {min: 0.0001, max: 0.1}\n",
    )
    .unwrap();
    assert!(spec.multi_objective());
    assert_eq!(spec.metric.name, "val_accuracy");
    let names: Vec<(&str, Goal)> = spec
        .objectives()
        .iter()
        .map(|m| (m.name.as_str(), m.goal))
        .collect();
    assert_eq!(
        names,
        [
            ("val_accuracy", Goal::Maximize),
            ("param_count", Goal::Minimize)
        ]
    );
    assert!(
        spec.notices
            .iter()
            .any(|n| n
                .contains("early_terminate judges trials by the first objective, val_accuracy")),
        "{:?}",
        spec.notices
    );
    // The stored spec reads back the same; one stored before objectives existed has one.
    let back: SweepSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
    assert_eq!(back.objectives(), spec.objectives());
    let mut old = serde_json::to_value(&spec).unwrap();
    old.as_object_mut().unwrap().remove("objectives");
    let old: SweepSpec = serde_json::from_value(old).unwrap();
    assert!(!old.multi_objective() && old.objectives().len() == 1);
    // Targets: every objective that has one must be reached.
    let values = |acc: f64| move |n: &str| (n == "val_accuracy").then_some(acc).or(Some(5.0));
    assert!(crate::config::targets_reached(
        spec.objectives(),
        values(0.91)
    ));
    assert!(!crate::config::targets_reached(
        spec.objectives(),
        values(0.89)
    ));
    // A list of one is a single metric.
    let one = SweepSpec::parse(
        "method: random\nmetric: [{name: val_loss}]\nparameters:\n  learning_rate: {min: 0.0001, max: 0.1}\n",
    )
    .unwrap();
    assert!(!one.multi_objective() && one.metric.name == "val_loss");
}

#[test]
fn bad_objective_lists_name_the_entry() {
    let base = |metric: Value| json!({"method": "random", "metric": metric, "parameters": {"learning_rate": {"min": 0.001, "max": 0.1}}});
    let e = err(base(json!([])));
    assert_eq!(e.path, "metric");
    assert!(e.message.contains("expected 1 to 8 objectives"), "{e}");
    let e = err(base(
        json!([{"name": "val_loss"}, {"name": "val_loss", "goal": "maximize"}]),
    ));
    assert_eq!(e.path, "metric[1].name");
    assert!(e.message.contains("already objective 0"), "{e}");
    let e = err(base(
        json!([{"name": "val_loss"}, {"name": "loss", "goal": "up"}]),
    ));
    assert_eq!(e.path, "metric[1].goal");
    let e = err(base(json!([{"name": "val_loss"}, {"goal": "maximize"}])));
    assert_eq!(e.path, "metric[1].name");
    // The MLP's names are checked in each entry, with a suggestion.
    let e = err(base(
        json!([{"name": "val_accuracy", "goal": "maximize"}, {"name": "param_cnt"}]),
    ));
    assert_eq!(e.path, "metric[1].name");
    assert!(e.message.contains("did you mean param_count"), "{e}");
    let e = err(base(json!([{"name": "val_loss"}, "loss"])));
    assert_eq!(e.path, "metric[1]");
}
