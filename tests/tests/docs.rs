//! The figures the docs quote come from a real run: the README's main job
//! (`coordinator run examples/quickstart.yaml --workers 2`, seed 0) is run here and its best
//! trial compared with docs/EXPORTS.md's example, which shows it. The trial, its parameters and
//! its epoch must be the same; values may differ by 0.005 (the GEMM kernels a CPU picks —
//! AVX-512 or AVX2 — sum in different orders). When the engine's results change, the failure
//! prints the new figures to put in the docs.

use std::path::Path;

use serde_json::Value;
use sweep_tests::{json_out, run, tempdir};

/// The first number after `"key": ` in `text`.
fn quoted(text: &str, key: &str) -> f64 {
    let at = text
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("docs/EXPORTS.md quotes no {key:?}"));
    let rest = &text[at + key.len() + 4..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().unwrap()
}

/// The first string after `"key": ` in `text`.
fn quoted_str<'a>(text: &'a str, key: &str) -> &'a str {
    let at = text
        .find(&format!("\"{key}\": \""))
        .unwrap_or_else(|| panic!("docs/EXPORTS.md quotes no {key:?}"));
    let rest = &text[at + key.len() + 5..];
    &rest[..rest.find('"').unwrap()]
}

#[test]
fn the_quickstart_figures_in_the_docs_are_a_real_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempdir("docs-quickstart");
    let ran = run(
        "coordinator",
        &[
            "run",
            root.join("examples/quickstart.yaml").to_str().unwrap(),
            "--workers",
            "2",
            "--out",
            out.join("results").to_str().unwrap(),
            "--store",
            out.join("sweeps.db").to_str().unwrap(),
            "--data-dir",
            root.join("data").to_str().unwrap(),
        ],
    );
    let lb: Value = json_out(&std::process::Output {
        stdout: std::fs::read(out.join("results/leaderboard.json")).unwrap_or_default(),
        ..ran
    });
    let best = &lb["trials"][0];
    let docs = std::fs::read_to_string(root.join("docs/EXPORTS.md")).unwrap();
    let example = &docs[docs.find("```json").expect("the leaderboard.json example")..];
    let now = format!(
        "this run: trial {} {} val_accuracy {:.4} test_accuracy {:.4} accuracy {:.4} best step {}",
        best["trial"],
        best["params"],
        best["metrics"]["val_accuracy"].as_f64().unwrap(),
        best["metrics"]["test_accuracy"].as_f64().unwrap(),
        best["metrics"]["accuracy"].as_f64().unwrap(),
        best["best"]["step"]
    );
    assert_eq!(
        best["trial"].as_f64(),
        Some(quoted(example, "trial")),
        "{now}"
    );
    assert_eq!(
        best["best"]["step"].as_f64(),
        Some(quoted(example, "step")),
        "{now}"
    );
    for p in ["activation", "optimizer"] {
        assert_eq!(best["params"][p], quoted_str(example, p), "{now}");
    }
    assert_eq!(
        best["params"]["num_layers"].as_f64(),
        Some(quoted(example, "num_layers")),
        "{now}"
    );
    for m in ["val_accuracy", "test_accuracy", "accuracy"] {
        let got = best["metrics"][m].as_f64().unwrap();
        let said = quoted(example, m);
        assert!((got - said).abs() <= 0.005, "{m}: docs say {said}; {now}");
    }
    let said = quoted(example, "value");
    let got = best["best"]["value"].as_f64().unwrap();
    assert!((got - said).abs() <= 0.005, "best: docs say {said}; {now}");
}
