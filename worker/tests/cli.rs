//! `worker train` as a user runs it: a real process, its stdout, stderr and exit code.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn worker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(args)
        .env_remove("SWEEP_DATA_DIR")
        .output()
        .expect("worker runs")
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sweep-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

const QUICK: [&str; 4] = ["--epochs", "2", "--train-samples", "1500"];

#[test]
fn json_lines_and_nothing_else() {
    let mut args = vec![
        "train",
        "--json",
        "--hidden-size",
        "32",
        "--num-layers",
        "2",
    ];
    args.extend(QUICK);
    let out = worker(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    for (i, e) in lines[..2].iter().enumerate() {
        assert_eq!(e["epoch"], i + 1);
        for k in [
            "loss",
            "accuracy",
            "val_loss",
            "val_accuracy",
            "epoch_seconds",
            "samples_per_second",
        ] {
            assert!(e[k].is_f64(), "{k} in {e}");
        }
    }
    let last = &lines[2];
    assert_eq!(last["status"], "finished");
    assert!(last["test_accuracy"].as_f64().unwrap() > 0.5);
    assert!(last["test_loss"].is_f64());
    let m = last["confusion_matrix"].as_array().unwrap();
    assert_eq!(m.len(), 10);
    assert!(m.iter().all(|r| r.as_array().unwrap().len() == 10));
    let total: u64 = m
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 10_000);
    assert_eq!(last["labels"][0], "T-shirt/top");
    assert_eq!(last["config"]["hidden_size"], 32);
    assert_eq!(last["config"]["num_layers"], 2);
    assert_eq!(last["config"]["optimizer"], "adam");
}

#[test]
fn human_output_has_epochs_test_accuracy_and_class_names() {
    let mut args = vec![
        "train",
        "--activation",
        "ReLU",
        "--weight_init",
        "Xavier",
        "--dataset",
        "fashion_mnist",
        "--loss",
        "mean_squared_error",
    ];
    args.extend(QUICK);
    let out = worker(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(
        s.contains("epoch   1/2") && s.contains("epoch   2/2"),
        "{s}"
    );
    assert!(s.contains("val_accuracy"), "{s}");
    assert!(s.contains("test_accuracy"), "{s}");
    assert!(s.contains("Ankle boot") && s.contains("T-shirt/top"), "{s}");
    assert!(s.contains("loss=mean_squared_error"), "{s}");
}

#[test]
fn same_metrics_whatever_the_thread_count() {
    let run = |threads: &str| {
        let mut args = vec!["train", "--json", "--threads", threads, "--seed", "5"];
        args.extend(QUICK);
        let out = worker(&args);
        assert!(out.status.success());
        json_lines(&out)
            .into_iter()
            .map(|mut v| {
                let o = v.as_object_mut().unwrap();
                for k in [
                    "epoch_seconds",
                    "samples_per_second",
                    "seconds",
                    "peak_rss_bytes",
                ] {
                    o.remove(k);
                }
                v
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run("1"), run("2"));
}

#[test]
fn config_files_in_yaml_and_json_with_flags_on_top() {
    let d = tempdir("config");
    let yaml = d.join("c.yaml");
    std::fs::write(
        &yaml,
        "optimizer: NAG\nlearning_rate: 0.01\nhidden_size: [48, 24]\nactivation: tanh\nepochs: 1\n",
    )
    .unwrap();
    let out = worker(&[
        "train",
        "--json",
        "--train-samples",
        "1000",
        "--config",
        yaml.to_str().unwrap(),
        "--learning-rate",
        "0.02",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = &json_lines(&out)[1]["config"];
    assert_eq!(c["optimizer"], "nag");
    assert_eq!(c["learning_rate"], 0.02);
    assert_eq!(c["hidden_size"], serde_json::json!([48, 24]));
    let json = d.join("c.json");
    std::fs::write(
        &json,
        r#"{"epochs": 1, "weight_init": "he", "batch_size": 128}"#,
    )
    .unwrap();
    let out = worker(&[
        "train",
        "--json",
        "--train-samples",
        "1000",
        "--config",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let c = &json_lines(&out)[1]["config"];
    assert_eq!(c["weight_init"], "he");
    assert_eq!(c["batch_size"], 128);
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn confusion_matrix_files() {
    let d = tempdir("confusion");
    for ext in ["json", "csv"] {
        let p = d.join(format!("cm.{ext}"));
        let out = worker(&[
            "train",
            "--epochs",
            "1",
            "--train-samples",
            "1000",
            "--confusion-out",
            p.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&p).unwrap();
        if ext == "json" {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["labels"][6], "Shirt");
            assert_eq!(v["matrix"].as_array().unwrap().len(), 10);
        } else {
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 11);
            assert!(
                lines[0].starts_with("true\\predicted,T-shirt/top,Trouser"),
                "{}",
                lines[0]
            );
            let row: u64 = lines[1]
                .split(',')
                .skip(1)
                .map(|v| v.parse::<u64>().unwrap())
                .sum();
            assert_eq!(row, 1000, "T-shirt/top has 1,000 test images");
        }
    }
    let _ = std::fs::remove_dir_all(d);
}

fn assert_usage_error(args: &[&str], needle: &str) {
    let out = worker(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err}"
    );
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

#[test]
fn bad_input_exits_2_naming_the_option_or_file() {
    assert_usage_error(&["train", "--optimizer", "lbfgs"], "--optimizer");
    assert_usage_error(
        &["train", "--optimizer", "lbfgs"],
        "sgd, momentum, nag, rmsprop, adam, nadam",
    );
    assert_usage_error(&["train", "--hidden-size", "0"], "--hidden-size");
    assert_usage_error(&["train", "--learning-rate", "-0.1"], "--learning-rate");
    assert_usage_error(&["train", "--momentum", "1.5"], "--momentum");
    assert_usage_error(&["train", "--activation", "softmax"], "--activation");
    assert_usage_error(&["train", "--epochs", "ten"], "--epochs");
    assert_usage_error(
        &["train", "--data-dir", "/nonexistent/sweep-data"],
        "/nonexistent/sweep-data",
    );
    assert_usage_error(&["train", "--dataset", "cifar10"], "--dataset");
    assert_usage_error(&["train", "--confusion-out", "cm.txt"], "--confusion-out");
    assert_usage_error(&["train", "--threads", "0"], "--threads");
    assert_usage_error(&["train", "--no-such-flag"], "--no-such-flag");
    assert_usage_error(
        &["train", "--config", "/nonexistent/c.yaml"],
        "/nonexistent/c.yaml",
    );

    let d = tempdir("bad");
    let bad_yaml = d.join("bad.yaml");
    std::fs::write(&bad_yaml, "hidden_size: 0\n").unwrap();
    assert_usage_error(
        &["train", "--config", bad_yaml.to_str().unwrap()],
        "bad.yaml",
    );
    assert_usage_error(
        &["train", "--config", bad_yaml.to_str().unwrap()],
        "hidden_size",
    );
    std::fs::write(&bad_yaml, "learning_rte: 0.1\n").unwrap();
    assert_usage_error(
        &["train", "--config", bad_yaml.to_str().unwrap()],
        "learning_rte",
    );

    // A truncated .gz in a data set directory names the file.
    let ds = d.join("truncated");
    std::fs::create_dir_all(&ds).unwrap();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), ds.join(e.file_name())).unwrap();
    }
    let f = ds.join("train-labels-idx1-ubyte.gz");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    assert_usage_error(
        &["train", "--dataset", ds.to_str().unwrap()],
        "train-labels-idx1-ubyte.gz",
    );
    // The same truncation inside the built-in data directory fails its checksum.
    let root = d.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::rename(&ds, root.join("mnist")).unwrap();
    let out = worker(&[
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        root.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SHA-256") && err.contains("train-labels-idx1-ubyte.gz"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn divergence_is_reported_not_crashed() {
    let out = worker(&[
        "train",
        "--json",
        "--epochs",
        "2",
        "--train-samples",
        "1000",
        "--optimizer",
        "sgd",
        "--learning-rate",
        "1e6",
        "--activation",
        "identity",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    let last = lines.last().unwrap();
    assert_eq!(last["status"], "diverged");
    assert!(last["test_accuracy"].is_null());
}
