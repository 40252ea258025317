//! One trial interrupted again and again — its worker SIGKILLed mid-epoch twice (the
//! coordinator SIGKILLed and restarted in between), a worker's SIGTERM, a pause with hand-back —
//! goes on each time from its last checkpoint on a new worker, re-does at most the epoch it was
//! in, and ends with exactly the weights and metrics of a run that was never interrupted
//! (`worker train` with the trial's own command line).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use sweep_tests::{
    free_port, json_out, run, run_ok, sample, scrape, serve_at, submit, tempdir, worker_logged,
    Proc,
};

const YAML: &str = "name: resume
method: grid
metric: {name: val_accuracy, goal: maximize}
max_attempts: 20
keep_models: 1
mlp: {train_samples: 20000}
parameters:
  epochs: {value: 10}
  num_layers: {value: 2}
  hidden_size: {value: 256}
  dropout: {value: 0.2}
  batch_norm: {value: true}
  lr_schedule: {value: cosine}
  seed: {value: 5}
";

fn trial(url: &str, id: &str) -> Value {
    json_out(&run(
        "coordinator",
        &["trial", id, "1", "--json", "--coordinator", url],
    ))
}

/// Polls the trial until `pred` holds; panics after a generous deadline.
fn wait_trial(url: &str, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + Duration::from_secs(600);
    loop {
        let out = run(
            "coordinator",
            &["trial", id, "1", "--json", "--coordinator", url],
        );
        if out.status.success() {
            let t: Value = serde_json::from_slice(&out.stdout).unwrap();
            if pred(&t) {
                return t;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}: {t}");
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where the trial's checkpoint stands: (epochs done, batches of the next); (0, 0) without one.
fn at(t: &Value) -> (u64, u64) {
    let c = &t["checkpoint"];
    (
        c["epoch"].as_u64().unwrap_or(0),
        c["batch"].as_u64().unwrap_or(0),
    )
}

fn sha(model: &Path) -> String {
    let card: Value =
        serde_json::from_slice(&std::fs::read(model.join("model.json")).unwrap()).unwrap();
    card["weights"]["sha256"].as_str().unwrap().to_string()
}

#[test]
fn a_trial_interrupted_five_times_ends_bit_identical_to_an_uninterrupted_run() {
    let dir = tempdir("resume");
    let store = dir.join("sweeps.db");
    let listen = format!("127.0.0.1:{}", free_port());
    let ttl = ["--lease-ttl", "2"];
    let (mut coord, url) = serve_at(&listen, &store, &ttl);
    let id = submit(&dir, &url, YAML);
    let running_past = |done: (u64, u64)| move |t: &Value| t["state"] == "running" && at(t) > done;
    // Each interruption waits for a checkpoint past the last one, so that every attempt made
    // progress; `floors` is where each next attempt must resume from at least.
    let mut floors = Vec::new();
    let mut done = (0, 0);

    // 1–2. SIGKILL, mid-epoch, twice; the coordinator killed and restarted after the first.
    let log = |k: usize| dir.join(format!("worker-{k}.log"));
    // Each worker serves its metrics: the epochs it trained and reported.
    let metrics: Vec<String> = (0..4)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let start = |k: usize| worker_logged(&url, 1, &log(k), &["--metrics-listen", &metrics[k]]);
    let epochs = |k: usize| sample(&scrape(&metrics[k]), "sweep_worker_epochs_total");
    let mut reported = 0.0;
    for round in 0..2 {
        let mut w = start(round);
        done = at(&wait_trial(
            &url,
            &id,
            "a new checkpoint",
            running_past(done),
        ));
        w.kill9();
        floors.push(done);
        if round == 0 {
            // Once the coordinator has re-queued the trial (the checkpoint it showed is
            // committed long before: it shows a save as soon as it is queued for the store).
            wait_trial(&url, &id, "the re-queue", |t| t["state"] == "queued");
            coord.kill9();
            coord = serve_at(&listen, &store, &ttl).0;
        }
    }

    // 3. SIGTERM: the worker saves where it is (mid-epoch: batches into the next epoch) and
    // hands the trial back at once.
    let mut w = start(2);
    done = at(&wait_trial(
        &url,
        &id,
        "a new checkpoint",
        running_past(done),
    ));
    reported += epochs(2);
    assert_eq!(w.terminate(Duration::from_secs(60)), Some(0));
    let t = trial(&url, &id);
    assert_eq!(t["state"], "queued", "handed back at SIGTERM: {t}");
    assert!(at(&t) > done, "a checkpoint past {done:?} at SIGTERM: {t}");
    done = at(&t);
    floors.push(done);

    // 4. A pause with hand-back: the trial is handed back with a checkpoint and waits; the
    // worker stays and takes it again after the resume.
    let w: Proc = start(3);
    done = at(&wait_trial(
        &url,
        &id,
        "a new checkpoint",
        running_past(done),
    ));
    run_ok(
        "coordinator",
        &["pause", &id, "--hand-back", "--coordinator", &url],
    );
    let t = wait_trial(&url, &id, "the hand-back", |t| t["state"] == "queued");
    assert!(
        at(&t) > done,
        "a checkpoint past {done:?} at the hand-back: {t}"
    );
    floors.push(at(&t));
    run_ok("coordinator", &["resume", &id, "--coordinator", &url]);
    let t = wait_trial(&url, &id, "the end", |t| t["state"] == "finished");
    reported += epochs(3);
    drop(w);
    // Ten epochs, and at most one trained twice per interruption (the one a SIGKILL cut short
    // of its checkpoint); training from the start each time would report about twenty. (A
    // killed worker's count is read just before the kill, so it may miss its last epoch.)
    assert!(
        reported <= 14.0,
        "{reported} epochs reported for a trial of 10"
    );

    // Each attempt after the first resumed from the checkpoint its predecessor left (or later),
    // and its worker says it went on from there (the last worker ran two attempts).
    let attempts = t["attempt_history"].as_array().unwrap();
    assert_eq!(attempts.len(), 5, "{t}");
    let said: String = (1..4)
        .map(|k| std::fs::read_to_string(log(k)).unwrap())
        .collect();
    for (a, floor) in attempts[1..].iter().zip(&floors) {
        let r = &a["resumed_from"];
        let from = (r["epoch"].as_u64().unwrap(), r["batch"].as_u64().unwrap());
        assert!(
            from >= *floor,
            "attempt {a} resumed from {from:?}, before {floor:?}"
        );
        let line = format!(
            "resuming from the trial's checkpoint epoch={} batch={}",
            from.0, from.1
        );
        assert!(said.contains(&line), "no worker said {line:?}:\n{said}");
    }
    assert_eq!(attempts[4]["ending"], "finished");

    // The same run, never interrupted, from the trial's own command line.
    let plain = dir.join("plain");
    let mut args: Vec<String> = t["command"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect();
    args.extend(["--save-model".into(), plain.display().to_string()]);
    args.push("--json".into());
    let out = run_ok(
        "worker",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = lines.last().unwrap();

    let kept = dir.join("kept");
    run_ok(
        "coordinator",
        &[
            "model",
            &id,
            "--out",
            kept.to_str().unwrap(),
            "--coordinator",
            &url,
        ],
    );
    assert_eq!(sha(&kept), sha(&plain), "the same weights, bit for bit");
    let m = &t["metrics"];
    for k in ["test_accuracy", "test_loss"] {
        assert_eq!(m[k], summary[k], "{k}");
    }
    // Every epoch's validation loss, as reported across the five attempts.
    let reported: Vec<f64> = t["curve"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "val_loss")
        .map(|p| p["value"].as_f64().unwrap())
        .collect();
    let uninterrupted: Vec<f64> = lines
        .iter()
        .filter_map(|l| l.get("val_loss").filter(|_| l.get("epoch").is_some()))
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(reported.len(), 10);
    assert_eq!(reported, uninterrupted);
}
