//! A saved model, from `worker train --save-model` to `worker evaluate`, `worker predict` (an
//! IDX file and a PNG) and the Python loader (NumPy, and PyTorch when it can be imported): the
//! same accuracy and the same probabilities everywhere; a damaged model is a clear error. And a
//! sweep's models: the best `keep_models` trials' kept in the coordinator's store (across a
//! restart), downloaded with `coordinator model`.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sweep_tests::{have_numpy, json_out, leaderboard, run, serve, submit, tempdir, worker};

fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/fashion-mnist")
        .join(file)
}

fn lines(o: &std::process::Output) -> Vec<Value> {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn probs(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() < tol, "{what}: class {i}: {x} vs {y}");
    }
}

#[test]
fn a_saved_model_gives_the_same_predictions_in_the_worker_and_in_python() {
    let dir = tempdir("model");
    let model = dir.join("model");
    let m = model.to_str().unwrap();
    let trained = lines(&run(
        "worker",
        &[
            "train",
            "--epochs",
            "1",
            "--train-samples",
            "4000",
            "--num-layers",
            "2",
            "--hidden-size",
            "48,32",
            "--activation",
            "gelu",
            "--batch-norm",
            "--dropout",
            "0.2",
            "--save-model",
            m,
            "--json",
        ],
    ));
    let summary = trained.last().unwrap();
    let test_accuracy = summary["test_accuracy"].as_f64().unwrap();

    // evaluate: the same test accuracy as training measured, bit for bit.
    let ev = json_out(&run("worker", &["evaluate", "--model", m, "--json"]));
    assert_eq!(ev["test_accuracy"].as_f64().unwrap(), test_accuracy);
    assert_eq!(ev["confusion_matrix"], summary["confusion_matrix"]);
    assert_eq!(ev["trained_on_this_dataset"], true);

    // predict on the test file: one line per image.
    let images = data("t10k-images-idx3-ubyte.gz");
    let predicted = lines(&run(
        "worker",
        &["predict", "--model", m, "--json", images.to_str().unwrap()],
    ));
    assert_eq!(predicted.len(), 10_000);

    if have_numpy() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("programs/model_check.py");
        let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/python");
        let o = std::process::Command::new("python3")
            .arg(&script)
            .args([
                m,
                images.to_str().unwrap(),
                data("t10k-labels-idx1-ubyte.gz").to_str().unwrap(),
                "200",
            ])
            .env("PYTHONPATH", &py)
            .output()
            .unwrap();
        let out = json_out(&o);
        // NumPy in f64 against our f32: the same accuracy (at most one image of 10,000 on
        // the other side of a near tie) and the same probabilities to 1e-4.
        let acc = out["accuracy"].as_f64().unwrap();
        assert!(
            (acc - test_accuracy).abs() <= 1e-4,
            "{acc} vs {test_accuracy}"
        );
        for (i, p) in out["probabilities"].as_array().unwrap().iter().enumerate() {
            close(
                &probs(p),
                &probs(&predicted[i]["probabilities"]),
                1e-4,
                "numpy",
            );
        }
        if let Some(tp) = out.get("torch_probabilities") {
            let acc = out["torch_accuracy"].as_f64().unwrap();
            assert!(
                (acc - test_accuracy).abs() <= 1e-4,
                "torch {acc} vs {test_accuracy}"
            );
            for (i, p) in tp.as_array().unwrap().iter().enumerate() {
                close(
                    &probs(p),
                    &probs(&predicted[i]["probabilities"]),
                    1e-4,
                    "torch",
                );
            }
        } else {
            sweep_tests::skip(
                "SWEEP_REQUIRE_TORCH",
                "a_saved_model_gives_the_same_predictions_in_the_worker_and_in_python (its PyTorch comparison)",
                "python3 cannot import torch",
            );
        }

        // The first test image as a PNG: the same prediction as from the IDX file.
        let pixels: Vec<u8> = out["first_image"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u8)
            .collect();
        let png = dir.join("first.png");
        image::GrayImage::from_raw(28, 28, pixels)
            .unwrap()
            .save(&png)
            .unwrap();
        let one = lines(&run(
            "worker",
            &["predict", "--model", m, "--json", png.to_str().unwrap()],
        ));
        assert_eq!(one.len(), 1);
        // One image is one row through the GEMM instead of one of a thousand: the same
        // class, the probabilities to float rounding.
        assert_eq!(one[0]["class"], predicted[0]["class"]);
        let (a, b) = (&one[0]["probabilities"], &predicted[0]["probabilities"]);
        close(&probs(a), &probs(b), 1e-6, "png");
        // The same image dark-on-light (a photo of a drawing): predicted, with a warning.
        let quiet = run("worker", &["predict", "--model", m, png.to_str().unwrap()]);
        assert!(!String::from_utf8_lossy(&quiet.stderr).contains("warning"));
        let mut img = image::open(&png).unwrap().to_luma8();
        image::imageops::invert(&mut img);
        let inverted = dir.join("inverted.png");
        img.save(&inverted).unwrap();
        let o = run(
            "worker",
            &["predict", "--model", m, inverted.to_str().unwrap()],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(
            err.contains("1 of 1 images have a light background") && err.contains("invert"),
            "{err}"
        );
    }

    // A truncated weights file: exit 2 and a message naming it.
    let weights = model.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let o = run("worker", &["evaluate", "--model", m]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("model.safetensors") && err.contains("truncated"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sweep_keeps_the_models_of_its_best_trials_and_serves_them_after_a_restart() {
    let dir = tempdir("sweep-models");
    let store = dir.join("sweeps.db");
    let (coord, url) = serve(&store, &[]);
    let _w1 = worker(&url, 1);
    let _w2 = worker(&url, 1);
    let id = submit(
        &dir,
        &url,
        "method: grid\nmetric: {name: val_accuracy, goal: maximize}\nmlp: {train_samples: 2000}\n\
         keep_models: 2\nparameters:\n  epochs: {value: 1}\n  num_layers: {value: 1}\n  \
         hidden_size: {values: [8, 16, 32, 64]}\n",
    );
    let watched = run("coordinator", &["watch", &id, "--coordinator", &url]);
    assert!(
        watched.status.success(),
        "{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    let lb = leaderboard(&url, &id);
    let rows = lb["trials"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    let trial = |rank: usize| rows[rank]["trial"].as_u64().unwrap().to_string();

    // Restarted on its store: the models are still there.
    drop(coord);
    let (_coord, url) = serve(&store, &[]);
    // `coordinator model` of trial `n` (None: the best) into `out`.
    let download = |n: Option<&str>, out: &Path| {
        let mut args = vec!["model", id.as_str()];
        args.extend(n);
        args.extend([
            "--out",
            out.to_str().unwrap(),
            "--coordinator",
            url.as_str(),
        ]);
        run("coordinator", &args)
    };
    let best = dir.join("best");
    let got = download(None, &best);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(
        String::from_utf8_lossy(&got.stdout).contains(&format!("trial {}'s model", trial(0))),
        "{}",
        String::from_utf8_lossy(&got.stdout)
    );
    // The downloaded model is the best trial's: evaluated, its test accuracy is the one the
    // worker reported.
    let ev = json_out(&run(
        "worker",
        &["evaluate", "--model", best.to_str().unwrap(), "--json"],
    ));
    assert_eq!(ev["test_accuracy"], rows[0]["metrics"]["test_accuracy"]);
    // Downloaded again into the same directory: refused, naming the file, unless --force; a
    // symlink there is never written through, even with --force.
    let again = download(None, &best);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success(), "{err}");
    assert!(
        err.contains("model.safetensors: is already there") && err.contains("--force"),
        "{err}"
    );
    let card = std::fs::read(best.join("model.json")).unwrap();
    let force = || {
        run(
            "coordinator",
            &[
                "model",
                &id,
                "--force",
                "--out",
                best.to_str().unwrap(),
                "--coordinator",
                &url,
            ],
        )
    };
    let elsewhere = dir.join("elsewhere.json");
    std::fs::write(&elsewhere, b"mine").unwrap();
    std::fs::remove_file(best.join("model.json")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, best.join("model.json")).unwrap();
    let forced = force();
    let err = String::from_utf8_lossy(&forced.stderr);
    assert!(!forced.status.success(), "{err}");
    assert!(err.contains("model.json: is a symlink"), "{err}");
    assert_eq!(std::fs::read(&elsewhere).unwrap(), b"mine");
    std::fs::remove_file(best.join("model.json")).unwrap();
    let forced = force();
    assert!(forced.status.success());
    assert_eq!(std::fs::read(best.join("model.json")).unwrap(), card);
    // The second best is kept; the third was pushed out (or never kept).
    let got = download(Some(&trial(1)), &dir.join("second"));
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let got = download(Some(&trial(2)), &dir.join("third"));
    assert!(!got.status.success());
    let err = String::from_utf8_lossy(&got.stderr);
    assert!(
        err.contains("keeps no model of trial") && err.contains("best 2"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
