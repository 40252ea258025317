//! A sweep end to end with real binaries on loopback: `serve` + 2 `worker` processes +
//! `submit`, then `watch`, `leaderboard`, `trial` and `export`; the all-in-one `run`; and bad
//! configs refused by `submit` with nothing stored.

use std::time::Duration;

use serde_json::Value;
use sweep_tests::{json_out, run, serve, tempdir, worker};

const GRID: &str = r#"
name: e2e-grid
method: grid
metric: {name: val_accuracy, goal: maximize}
mlp: {train_samples: 2000}
parameters:
  epochs: {value: 2}
  num_layers: {value: 1}
  hidden_size: {values: [16, 64]}
  optimizer: {values: [adam, sgd]}
  learning_rate: {value: 0.003}
"#;

#[test]
fn serve_two_workers_submit_grid_and_export() {
    let dir = tempdir("grid");
    let (_coord, url) = serve(&dir.join("sweeps.db"), &[]);
    let mut w1 = worker(&url, 1);
    let mut w2 = worker(&url, 1);
    let cfg = dir.join("grid.yaml");
    std::fs::write(&cfg, GRID).unwrap();

    let out = run(
        "coordinator",
        &["submit", cfg.to_str().unwrap(), "--coordinator", &url],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        !id.is_empty() && !id.contains(char::is_whitespace),
        "submit prints only the id: {id:?}"
    );

    let out = run("coordinator", &["watch", &id, "--coordinator", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("finished"));

    let lb = json_out(&run(
        "coordinator",
        &["leaderboard", &id, "--json", "--coordinator", &url],
    ));
    assert_eq!(lb["schema_version"], 1);
    assert_eq!(lb["sweep"]["id"], id.as_str());
    assert_eq!(lb["sweep"]["state"], "finished");
    assert_eq!(lb["metric"]["name"], "val_accuracy");
    let trials = lb["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4);
    let values: Vec<f64> = trials
        .iter()
        .map(|t| t["metrics"]["val_accuracy"].as_f64().unwrap())
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] >= w[1]),
        "sorted best first: {values:?}"
    );
    for (i, t) in trials.iter().enumerate() {
        assert_eq!(t["rank"], i + 1);
        assert_eq!(t["state"], "finished");
        assert_eq!(t["attempts"], 1);
        assert!(t["best"]["step"].as_u64().unwrap() >= 1);
        assert!(t["worker"].as_str().unwrap().starts_with("w-"));
        let n = t["trial"].as_u64().unwrap().to_string();
        let d = json_out(&run(
            "coordinator",
            &["trial", &id, &n, "--json", "--coordinator", &url],
        ));
        let m = d["confusion"]["matrix"].as_array().unwrap();
        let total: u64 = m
            .iter()
            .flat_map(|r| r.as_array().unwrap())
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(
            total, 10_000,
            "trial {n}'s confusion matrix covers the test set"
        );
        assert_eq!(
            d["curve"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["name"] == "val_accuracy")
                .count(),
            2
        );
    }
    // Every grid point ran exactly once.
    let mut points: Vec<String> = trials.iter().map(|t| t["params"].to_string()).collect();
    points.sort();
    points.dedup();
    assert_eq!(points.len(), 4);

    let csv = run(
        "coordinator",
        &["leaderboard", &id, "--csv", "--coordinator", &url],
    );
    let csv = String::from_utf8(csv.stdout).unwrap();
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.lines().next().unwrap().contains("param.optimizer"));

    let out_dir = dir.join("export");
    let out = run(
        "coordinator",
        &[
            "export",
            &id,
            "--out",
            out_dir.to_str().unwrap(),
            "--coordinator",
            &url,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lbj: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("leaderboard.json")).unwrap())
            .unwrap();
    assert_eq!(lbj["trials"].as_array().unwrap().len(), 4);
    let cb: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("confusion_best.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cb["trial"], trials[0]["trial"]);
    assert_eq!(cb["labels"][0], "T-shirt/top");
    let ccsv = std::fs::read_to_string(out_dir.join("confusion_best.csv")).unwrap();
    assert_eq!(ccsv.lines().count(), 11);
    assert!(
        std::fs::read_to_string(out_dir.join("leaderboard.csv"))
            .unwrap()
            .lines()
            .count()
            == 5
    );

    let st = json_out(&run(
        "coordinator",
        &["status", "--json", "--coordinator", &url],
    ));
    assert_eq!(st[0]["finished"], 4);

    // SIGTERM: idle workers exit 0.
    assert_eq!(w1.terminate(Duration::from_secs(10)), Some(0));
    assert_eq!(w2.terminate(Duration::from_secs(10)), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn run_all_in_one() {
    let dir = tempdir("run");
    let cfg = dir.join("tiny.yaml");
    std::fs::write(
        &cfg,
        "name: tiny\nmethod: random\nrun_cap: 3\nseed: 7\nmlp: {train_samples: 1000}\nparameters:\n  epochs: {value: 1}\n  hidden_size: {values: [16, 32]}\n  learning_rate: {distribution: log_uniform_values, min: 0.0005, max: 0.005}\n",
    )
    .unwrap();
    let out_dir = dir.join("out");
    let out = run(
        "coordinator",
        &[
            "run",
            cfg.to_str().unwrap(),
            "--workers",
            "2",
            "--store",
            dir.join("s.db").to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("rank") && stdout.contains("val_accuracy"),
        "{stdout}"
    );
    let lb: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("leaderboard.json")).unwrap())
            .unwrap();
    assert_eq!(lb["trials"].as_array().unwrap().len(), 3);
    assert!(out_dir.join("confusion_best.csv").is_file());
    check_report(&out_dir, &lb);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn run_refuses_an_out_it_cannot_write_before_anything_trains() {
    let dir = tempdir("run-out");
    let cfg = dir.join("tiny.yaml");
    std::fs::write(
        &cfg,
        "name: tiny\nmethod: grid\ntrainer: synthetic\nsynthetic: {epochs: 2}\nparameters:\n  x: {values: [1, 2]}\n",
    )
    .unwrap();
    // A file where a directory must go (root may write anywhere, but not under a file).
    std::fs::write(dir.join("taken"), "").unwrap();
    let out_dir = dir.join("taken").join("out");
    let store = dir.join("s.db");
    let out = run(
        "coordinator",
        &[
            "run",
            cfg.to_str().unwrap(),
            "--workers",
            "1",
            "--store",
            store.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--out")
            && stderr.contains("cannot write there")
            && stderr.contains("nothing was run"),
        "{stderr}"
    );
    assert!(!store.exists(), "no sweep was stored");
    let _ = std::fs::remove_dir_all(dir);
}

/// The report files `run` (and `coordinator report`) write: every file there, the PNG decodes
/// at its size, the HTML has every leaderboard row and fetches nothing, the importances name
/// every parameter and sum to 1.
fn check_report(out: &std::path::Path, lb: &Value) {
    for f in [
        "confusion_best.png",
        "confusion_best.svg",
        "curves.svg",
        "parallel.svg",
        "importance.svg",
        "importance.json",
        "report.html",
    ] {
        let p = out.join(f);
        assert!(
            std::fs::metadata(&p).is_ok_and(|m| m.len() > 200),
            "{} missing or empty",
            p.display()
        );
    }
    let img = image::open(out.join("confusion_best.png")).expect("the PNG decodes");
    // 10 classes: 230 + 58·10 + 110 wide, 110 + 58·10 + 150 high.
    assert_eq!((img.width(), img.height()), (920, 840));
    for f in [
        "confusion_best.svg",
        "curves.svg",
        "parallel.svg",
        "importance.svg",
    ] {
        let s = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(
            s.contains("<svg") && s.trim_end().ends_with("</svg>"),
            "{f}"
        );
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for t in lb["trials"].as_array().unwrap() {
        let row = format!("<td class=\"num\">{}</td>", t["trial"]);
        assert!(html.contains(&row), "trial {} is in the report", t["trial"]);
    }
    for external in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "@import",
        "<script src",
        "<link",
    ] {
        assert!(!html.contains(external), "the report fetches {external}");
    }
    assert!(
        html.contains("T-shirt/top"),
        "class names in the confusion matrix"
    );
    let imp: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("importance.json")).unwrap())
            .unwrap();
    let names: Vec<&str> = imp["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for n in ["epochs", "hidden_size", "learning_rate"] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let sum: f64 = imp["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["importance"].as_f64().unwrap())
        .sum();
    assert!(
        (sum - 1.0).abs() < 1e-9 || sum == 0.0,
        "importances sum to {sum}"
    );
}

#[test]
fn bad_configs_are_refused_with_the_field_path_and_nothing_is_stored() {
    let dir = tempdir("bad");
    let (_coord, url) = serve(&dir.join("sweeps.db"), &[]);
    let cases = [
        ("method: grid\nparameters: {a: [\n", "not valid YAML"),
        (
            "method: annealing\nparameters:\n  epochs: {value: 1}\n",
            "method",
        ),
        (
            "method: random\nparameters:\n  learning_rate: {min: 1, max: 0.5}\n",
            "parameters.learning_rate.min",
        ),
        (
            "method: random\nparameters:\n  epochs: {values: 3}\n",
            "parameters.epochs.values",
        ),
        (
            "method: grid\nparameters:\n  optimizer: {values: [adam, lbfgs]}\n",
            "parameters.optimizer.values[1]",
        ),
        (
            "method: grid\nrun_cap: zero\nparameters:\n  epochs: {value: 1}\n",
            "run_cap",
        ),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let f = dir.join(format!("bad{i}.yaml"));
        std::fs::write(&f, text).unwrap();
        let out = run(
            "coordinator",
            &["submit", f.to_str().unwrap(), "--coordinator", &url],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(needle), "{text}: expected {needle:?} in {err}");
        assert!(out.stdout.is_empty());
    }
    let st = json_out(&run(
        "coordinator",
        &["status", "--json", "--coordinator", &url],
    ));
    assert_eq!(st, serde_json::json!([]), "nothing was stored");
    // An unknown sweep id is a clear error, not a crash.
    let out = run(
        "coordinator",
        &["leaderboard", "nope", "--coordinator", &url],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    let _ = std::fs::remove_dir_all(dir);
}

/// A newcomer's mistakes end with an answer that says what to do.
#[test]
fn mistakes_are_answered_with_what_to_do() {
    let dir = tempdir("mistakes");
    let port = sweep_tests::free_port();
    let nobody = format!("http://127.0.0.1:{port}");
    // No coordinator at the address.
    let out = run("coordinator", &["status", "--coordinator", &nobody]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("is `coordinator serve` running there?") && err.contains("SWEEP_COORDINATOR"),
        "{err}"
    );
    // An empty file, and a file indented with a tab.
    let empty = dir.join("empty.yaml");
    std::fs::write(&empty, "# nothing yet\n").unwrap();
    let out = run(
        "coordinator",
        &["submit", empty.to_str().unwrap(), "--coordinator", &nobody],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("empty.yaml: config: the file is empty"),
        "{err}"
    );
    let tabs = dir.join("tabs.yaml");
    std::fs::write(&tabs, "method: grid\nparameters:\n\tx: {values: [1]}\n").unwrap();
    let out = run(
        "coordinator",
        &["submit", tabs.to_str().unwrap(), "--coordinator", &nobody],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3 is indented with a tab; YAML indents with spaces only"),
        "{err}"
    );
    // A misspelt MLP parameter in `run`: refused at once with the fix, instead of waiting
    // for agents that never come.
    let typo = dir.join("typo.yaml");
    std::fs::write(
        &typo,
        "method: grid\nmetric: {name: val_accuracy, goal: maximize}\nparameters:\n  hiden_size: {values: [32, 64]}\n  epochs: {value: 1}\n",
    )
    .unwrap();
    let out = run(
        "coordinator",
        &[
            "run",
            typo.to_str().unwrap(),
            "--store",
            dir.join("run.db").to_str().unwrap(),
            "--out",
            dir.join("out").to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("hiden_size (did you mean hidden_size?)"),
        "{err}"
    );
    assert!(!dir.join("run.db").exists(), "nothing was stored");
    // Help does not show a variable as set to nothing.
    let out = run("coordinator", &["status", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("[env: SWEEP_COORDINATOR]") && !help.contains("=]"),
        "{help}"
    );
    // A dashboard port in use is refused before anything is said to listen.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    let out = run(
        "coordinator",
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            dir.join("s.db").to_str().unwrap(),
            "--http-listen",
            &busy,
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("--http-listen {busy}")), "{err}");
    assert!(!err.contains("listening on"), "{err}");
    // A store in use says since when, as a date.
    let (_c, _) = serve(&dir.join("held.db"), &[]);
    let out = run(
        "coordinator",
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            dir.join("held.db").to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(" UTC") && !err.contains("unix time"), "{err}");
}

#[test]
fn watch_follows_running_trials_in_a_log_file() {
    // No terminal: a running trial gets a line with its last step and metric value.
    let dir = tempdir("watch-running");
    let (_coord, url) = serve(&dir.join("sweeps.db"), &[]);
    let yaml = sweep_tests::synthetic_grid(1, 20, 300).replace(
        "name: faults",
        "name: watch-running\nmetric: {name: loss, goal: minimize}",
    );
    let id = sweep_tests::submit(&dir, &url, &yaml);
    // Paused until watch is following it (it says so), so that the trial runs while watched
    // however slowly watch starts.
    let ok = |args: &[&str]| assert!(run("coordinator", args).status.success(), "{args:?}");
    ok(&["pause", &id, "--coordinator", &url]);
    let mut watch = sweep_tests::cmd("coordinator")
        .args(["watch", &id, "--coordinator", &url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = std::io::BufRead::lines(std::io::BufReader::new(watch.stderr.take().unwrap()));
    assert!(
        said.by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("is paused")),
        "watch said it follows the paused sweep"
    );
    std::thread::spawn(move || for _ in said {});
    ok(&["resume", &id, "--coordinator", &url]);
    let _w = worker(&url, 1);
    let out = watch.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let running = text
        .lines()
        .find(|l| l.starts_with("trial    1 running  step "))
        .unwrap_or_else(|| panic!("no running line: {text}"));
    assert!(running.contains(" loss "), "{running}");
    assert!(text.contains("trial    1 finished"), "{text}");
}
