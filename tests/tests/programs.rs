//! Sweeps of a user's own program (W&B `program` / `command`), with real processes: the `wandb`
//! module's calls against a real worker, a crash, a metric never logged, a program that ignores
//! SIGTERM, hyperband stopping a program, a worker SIGKILLed mid-trial (no orphan), the
//! coordinator restarted mid-trial, a worker without `--allow-programs`, and a program in
//! another language on the line protocol. The programs are in `tests/programs/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use sweep_tests::{
    free_port, have_numpy, json_out, leaderboard, n, run, serve, serve_at, submit, tempdir,
    wait_for, worker_with, Proc,
};

/// A working directory holding the test programs (as a user's checkout would).
fn workdir(name: &str) -> PathBuf {
    let dir = tempdir(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("programs");
    for f in std::fs::read_dir(&src).expect("tests/programs") {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
    }
    dir
}

fn program_worker(url: &str, dir: &Path, slots: usize, extra: &[&str]) -> Proc {
    program_worker_env(url, dir, slots, extra, &[])
}

/// A worker that runs programs in `dir`, with extra arguments and environment variables.
fn program_worker_env(
    url: &str,
    dir: &Path,
    slots: usize,
    extra: &[&str],
    env: &[(&str, &Path)],
) -> Proc {
    let mut c = sweep_tests::cmd("worker");
    c.args(["--coordinator", url, "--slots", &slots.to_string()])
        .args(["--allow-programs", "--quiet-programs", "--workdir"])
        .arg(dir)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    Proc(c.spawn().expect("worker starts"))
}

fn trial(url: &str, id: &str, t: u64) -> Value {
    json_out(&run(
        "coordinator",
        &["trial", id, &t.to_string(), "--json", "--coordinator", url],
    ))
}

/// The trial's steps of `name` so far (0 while the trial does not exist yet).
fn steps(url: &str, id: &str, t: u64, name: &str) -> usize {
    let out = run(
        "coordinator",
        &["trial", id, &t.to_string(), "--json", "--coordinator", url],
    );
    if !out.status.success() {
        return 0;
    }
    let d: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    d["curve"]
        .as_array()
        .map_or(0, |c| c.iter().filter(|p| p["name"] == name).count())
}

fn done(s: &Value) -> bool {
    s["state"] == "finished" || s["state"] == "stopped"
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; only its entry is left until it is reaped.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.split(") ").nth(1).unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_script_using_the_wandb_api_reports_to_the_worker() {
    let dir = workdir("prog-api");
    let web = format!("127.0.0.1:{}", sweep_tests::free_port());
    let (_c, url) = serve(&dir.join("sweeps.db"), &["--http-listen", &web]);
    // W&B's default command: /usr/bin/env python api.py --act=… --hidden=… --layers=… --lr=…
    let id = submit(
        &dir,
        &url,
        "program: api.py\nmethod: grid\nmetric: {name: val_accuracy, goal: maximize}\nkeep_models: 1\n\
         parameters:\n  lr: {values: [0.5, 1.0]}\n  layers: {value: 2}\n  act: {value: ReLU}\n  \
         hidden: {value: [64, 32]}\n",
    );
    let _w = program_worker(&url, &dir, 2, &[]);
    wait_for(
        &url,
        &id,
        Duration::from_secs(120),
        "the sweep to finish",
        done,
    );
    let lb = leaderboard(&url, &id);
    for t in lb["trials"].as_array().unwrap() {
        let d = trial(&url, &id, t["trial"].as_u64().unwrap());
        assert_eq!(d["state"], "finished", "{d}");
        let lr = d["params"]["lr"].as_f64().unwrap();
        let m = &d["metrics"];
        // define_metric(summary="max") over 0.2, 0.9, 0.5 (× lr) and a final 0.0.
        assert_eq!(m["val_accuracy"].as_f64(), Some(0.9 * lr), "{d}");
        assert_eq!(m["chosen"].as_f64(), Some(0.25));
        assert_eq!(m["also"].as_f64(), Some(1.0));
        assert_eq!(m["extra_metric"].as_f64(), Some(2.0));
        assert_eq!(m["nested.x"].as_f64(), Some(2.0));
        // Four values of the metric, each at W&B's _step + 1: three plain logs, then one at
        // step=11.
        let steps: Vec<u64> = d["curve"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == "val_accuracy")
            .map(|p| p["step"].as_u64().unwrap())
            .collect();
        assert_eq!(steps, vec![1, 2, 3, 12], "{d}");
        assert_eq!(
            d["confusion"]["labels"],
            serde_json::json!(["cat", "dog", "emu"])
        );
        // lr 1.0 through wandb.sklearn (a→cat, b→dog, c→emu), the other through wandb.plot.
        let want = if lr == 1.0 {
            serde_json::json!([[0, 1, 0], [0, 2, 0], [0, 0, 1]])
        } else {
            serde_json::json!([[1, 0, 0], [0, 0, 1], [0, 0, 2]])
        };
        assert_eq!(d["confusion"]["matrix"], want, "{d}");
        let out = d["output"].as_str().unwrap();
        assert!(out.contains("api-ok renamed"), "{out}");
        assert!(
            out.contains("wandb.Histogram is accepted and not kept"),
            "{out}"
        );
        // The image of each step, the table and the page are files of the trial (media/),
        // listed in media/_index.jsonl, and kept although not every trial keeps its files.
        let files: Vec<&str> = d["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        assert!(files.contains(&"media/_index.jsonl"), "{files:?}");
        for kind in [
            "images/img_0_",
            "images/img_1_",
            "images/img_2_",
            "table/table_12_",
            "html/page_12_",
        ] {
            assert!(
                files
                    .iter()
                    .any(|f| f.starts_with(&format!("media/{kind}"))),
                "{kind}: {files:?}"
            );
        }
        // Served inline as what they are: the image a 2×2 grey PNG, the page in a sandbox.
        let n = d["trial"].as_u64().unwrap();
        let get = |prefix: &str| {
            let path = files.iter().find(|f| f.starts_with(prefix)).unwrap();
            sweep_tests::request(
                &web,
                "GET",
                &format!("/api/v1/sweeps/{id}/trials/{n}/files/{path}"),
                None,
            )
        };
        let (code, head, png) = get("media/images/img_2_");
        assert_eq!(code, 200, "{head}");
        assert!(
            head.contains("content-type: image/png") && head.contains("inline"),
            "{head}"
        );
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(
            &png[16..26],
            &[0, 0, 0, 2, 0, 0, 0, 2, 8, 0],
            "2×2, 8-bit grey"
        );
        let (_, head, html) = get("media/html/page_12_");
        assert!(
            head.contains("content-security-policy: sandbox allow-scripts"),
            "{head}"
        );
        assert_eq!(html, b"<p>hi</p>");
        let (_, _, table) = get("media/table/table_12_");
        let table: Value = serde_json::from_slice(&table).unwrap();
        assert_eq!(table["columns"], serde_json::json!(["a", "b"]));
        assert_eq!(table["data"], serde_json::json!([[1, "x"]]));
    }
    let best = &lb["trials"][0];
    assert_eq!(best["params"]["lr"].as_f64(), Some(1.0), "{lb}");
}

#[test]
fn logged_rows_keep_w_and_b_steps_from_the_script_to_the_stored_curve() {
    // Our `wandb` module's rows are those W&B's own client writes for the same calls
    // (tests/programs/wandb_steps/cases.json, made by make.py with W&B's client).
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let check = std::process::Command::new("python3")
        .arg(here.join("programs/wandb_steps/check.py"))
        .env("PYTHONPATH", here.join("../clients/python"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && said.starts_with("ok "), "{said}");

    // A program that logs per batch and twice per epoch: each value at its step in the store.
    let dir = workdir("prog-steps");
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    let id = submit(
        &dir,
        &url,
        "program: behave.py\nmethod: grid\nmetric: {name: acc, goal: maximize}\n\
         parameters:\n  mode: {value: steps}\n  steps: {value: 3}\n  x: {value: 0.5}\n",
    );
    let _w = program_worker(&url, &dir, 1, &[]);
    wait_for(
        &url,
        &id,
        Duration::from_secs(120),
        "the sweep to finish",
        done,
    );
    let d = trial(&url, &id, 1);
    assert_eq!(d["state"], "finished", "{d}");
    let at = |name: &str| -> Vec<(u64, f64)> {
        d["curve"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == name)
            .map(|p| (p["step"].as_u64().unwrap(), p["value"].as_f64().unwrap()))
            .collect()
    };
    // Six rows an epoch: four batches, the acc row, the loss row (step = W&B's _step + 1).
    let batches: Vec<(u64, f64)> = (0..3u64)
        .flat_map(|e| (0..4u64).map(move |b| (6 * e + b + 1, (10 * e + b) as f64)))
        .collect();
    assert_eq!(at("batch_loss"), batches, "{d}");
    assert_eq!(at("acc"), [(5, 0.5), (11, 1.0), (17, 1.5)], "{d}");
    assert_eq!(at("loss"), [(6, 1.0), (12, 0.5), (18, 1.0 / 3.0)], "{d}");
    assert_eq!(
        at("epoch"),
        [
            (5, 0.0),
            (6, 0.0),
            (11, 1.0),
            (12, 1.0),
            (17, 2.0),
            (18, 2.0)
        ],
        "{d}"
    );
    assert_eq!(d["metrics"]["loss"].as_f64(), Some(1.0 / 3.0), "{d}");
}

#[test]
fn crashes_and_a_metric_never_logged_are_said_plainly() {
    let dir = workdir("prog-fail");
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    let id = submit(
        &dir,
        &url,
        "program: behave.py\ncommand: [python3, \"${program}\", \"${args}\"]\nmethod: grid\n\
         metric: {name: val_acc, goal: maximize}\nmax_attempts: 1\n\
         parameters:\n  mode: {values: [crash, silent]}\n",
    );
    let _w = program_worker(&url, &dir, 2, &[]);
    wait_for(
        &url,
        &id,
        Duration::from_secs(120),
        "the sweep to finish",
        done,
    );
    let crash = trial(&url, &id, 1);
    assert_eq!(crash["state"], "failed", "{crash}");
    let why = crash["error"].as_str().unwrap();
    assert!(why.contains("exited with status 1"), "{why}");
    assert!(why.contains("ZeroDivisionError"), "{why}");
    assert!(crash["output"]
        .as_str()
        .unwrap()
        .contains("about to divide"));
    let silent = trial(&url, &id, 2);
    assert_eq!(silent["state"], "finished", "{silent}");
    assert_eq!(
        silent["error"],
        "metric \"val_acc\" was never logged; logged: epoch, val_accuracy, val_loss"
    );
    let st = json_out(&run(
        "coordinator",
        &["status", &id, "--json", "--coordinator", &url],
    ));
    let notices = st[0]["notices"].to_string();
    assert!(
        notices.contains("1 trial ended without the metric \\\"val_acc\\\""),
        "{notices}"
    );
}

#[test]
fn stopping_ends_a_program_that_ignores_sigterm_and_time_limits_hold() {
    let dir = workdir("prog-stop");
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    std::fs::create_dir_all(dir.join("pids")).unwrap();
    // Trial 1 ignores SIGTERM and would run ~10 minutes; trial 2 has a 1 s time limit.
    let id = submit(
        &dir,
        &url,
        "program: behave.py\ncommand: [python3, \"${program}\", \"${args}\"]\nmethod: grid\n\
         metric: {name: loss}\nparameters:\n  mode: {value: stubborn}\n  steps: {value: 6000}\n  \
         pause: {value: 0.1}\n",
    );
    let pids = dir.join("pids");
    let mut w = cmd_worker(&url, &dir, &pids);
    wait_until("trial 1 to start", Duration::from_secs(60), || {
        pids.join("1-1.pid").exists()
    });
    wait_for(&url, &id, Duration::from_secs(60), "two steps", |_| {
        steps(&url, &id, 1, "loss") >= 2
    });
    let pid: u32 = std::fs::read_to_string(pids.join("1-1.pid"))
        .unwrap()
        .parse()
        .unwrap();
    let out = run("coordinator", &["stop", &id, "--coordinator", &url]);
    assert!(out.status.success());
    let t0 = Instant::now();
    // The program ignores SIGTERM: it is killed after the 1 s grace.
    wait_until(
        "the stubborn program to be killed",
        Duration::from_secs(60),
        || !alive(pid),
    );
    wait_for(&url, &id, Duration::from_secs(60), "nothing running", |s| {
        n(s, "running") == 0
    });
    let d = trial(&url, &id, 1);
    assert_eq!(d["state"], "stopped", "{d}");
    eprintln!("stubborn program gone {:?} after stop", t0.elapsed());
    w.terminate(Duration::from_secs(30));

    let id = submit(
        &dir,
        &url,
        "program: behave.py\ncommand: [python3, \"${program}\", \"${args}\"]\nmethod: grid\n\
         metric: {name: loss}\nprogram_options: {time_limit: 1}\n\
         parameters:\n  steps: {value: 6000}\n  pause: {value: 0.1}\n",
    );
    let _w = cmd_worker(&url, &dir, &pids);
    wait_for(
        &url,
        &id,
        Duration::from_secs(120),
        "the sweep to finish",
        done,
    );
    let d = trial(&url, &id, 1);
    assert_eq!(d["state"], "stopped", "{d}");
    assert_eq!(d["error"], "ran past the time limit of 1 s", "{d}");
}

/// One slot, a 1 s kill grace, and `PIDFILE_DIR` for the programs that write their pid.
fn cmd_worker(url: &str, dir: &Path, pids: &Path) -> Proc {
    program_worker_env(
        url,
        dir,
        1,
        &["--kill-grace", "1"],
        &[("PIDFILE_DIR", pids)],
    )
}

#[test]
fn hyperband_stops_programs_by_the_values_they_log() {
    let dir = workdir("prog-hyperband");
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    // One slot: trial 1 (the best) runs first; the others are worse at every step.
    let id = submit(
        &dir,
        &url,
        "program: behave.py\ncommand: [python3, \"${program}\", \"${args}\"]\nmethod: grid\n\
         metric: {name: loss, goal: minimize}\n\
         early_terminate: {type: hyperband, min_iter: 2, eta: 2}\n\
         parameters:\n  x: {values: [1, 2, 3, 4]}\n  steps: {value: 12}\n",
    );
    let _w = program_worker(&url, &dir, 1, &[]);
    wait_for(
        &url,
        &id,
        Duration::from_secs(120),
        "the sweep to finish",
        done,
    );
    let first = trial(&url, &id, 1);
    assert_eq!(first["state"], "finished", "{first}");
    let stopped: Vec<Value> = (2..=4)
        .map(|t| trial(&url, &id, t))
        .filter(|d| d["state"] == "stopped")
        .collect();
    assert!(!stopped.is_empty(), "hyperband stopped no program");
    for d in &stopped {
        assert!(d["error"].as_str().unwrap().contains("hyperband"), "{d}");
        let steps = d["curve"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == "loss")
            .count();
        assert!(steps < 12, "a stopped program ran every step: {d}");
    }
}

#[test]
fn a_killed_worker_leaves_no_orphan_and_the_program_reruns() {
    let dir = workdir("prog-kill");
    let (_c, url) = serve(&dir.join("sweeps.db"), &["--lease-ttl", "2"]);
    let pids = dir.join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    let id = submit(
        &dir,
        &url,
        "program: behave.py\ncommand: [python3, \"${program}\", \"${args}\"]\nmethod: grid\n\
         metric: {name: loss}\nparameters:\n  mode: {value: hang}\n  steps: {value: 3}\n  \
         pause: {value: 600}\n",
    );
    let mut w = cmd_worker(&url, &dir, &pids);
    wait_until("the program to start", Duration::from_secs(60), || {
        pids.join("1-1.pid").exists()
    });
    let pid: u32 = std::fs::read_to_string(pids.join("1-1.pid"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(alive(pid));
    w.kill9();
    wait_until(
        "the orphaned program to die",
        Duration::from_secs(10),
        || !alive(pid),
    );
    let _w2 = cmd_worker(&url, &dir, &pids);
    wait_for(
        &url,
        &id,
        Duration::from_secs(120),
        "the sweep to finish",
        done,
    );
    let d = trial(&url, &id, 1);
    assert_eq!(d["state"], "finished", "{d}");
    assert_eq!(d["attempts"], 2, "{d}");
}

#[test]
fn a_restarted_coordinator_gets_the_running_programs_reports() {
    let dir = workdir("prog-restart");
    let listen = format!("127.0.0.1:{}", free_port());
    let store = dir.join("sweeps.db");
    let (mut c, url) = serve_at(&listen, &store, &[]);
    let pids = dir.join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    let id = submit(
        &dir,
        &url,
        "program: behave.py\ncommand: [python3, \"${program}\", \"${args}\"]\nmethod: grid\n\
         metric: {name: loss}\nparameters:\n  steps: {value: 15}\n  pause: {value: 0.2}\n",
    );
    let _w = cmd_worker(&url, &dir, &pids);
    wait_for(&url, &id, Duration::from_secs(60), "three steps", |_| {
        steps(&url, &id, 1, "loss") >= 3
    });
    c.kill9();
    std::thread::sleep(Duration::from_millis(500));
    let (_c2, url) = serve_at(&listen, &store, &[]);
    wait_for(
        &url,
        &id,
        Duration::from_secs(120),
        "the sweep to finish",
        done,
    );
    let d = trial(&url, &id, 1);
    assert_eq!(d["state"], "finished", "{d}");
    assert_eq!(d["attempts"], 1, "the program ran once: {d}");
    let steps = d["curve"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "loss")
        .count();
    assert_eq!(steps, 15, "every step landed: {d}");
}

#[test]
fn a_worker_without_the_opt_in_runs_no_program() {
    let dir = workdir("prog-optin");
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    let marker = dir.join("ran");
    std::fs::write(
        dir.join("touch.py"),
        format!("open({:?}, 'w').write('x')\n", marker.display().to_string()),
    )
    .unwrap();
    let id = submit(
        &dir,
        &url,
        "program: touch.py\ncommand: [python3, \"${program}\"]\nmethod: grid\n\
         parameters:\n  x: {value: 1}\n",
    );
    let mut plain = worker_with(&url, 1, &[]);
    wait_for(&url, &id, Duration::from_secs(60), "the notice", |s| {
        s["notices"]
            .to_string()
            .contains("no connected worker runs programs")
    });
    assert!(
        !marker.exists(),
        "a worker without --allow-programs ran the program"
    );
    assert_eq!(
        n(
            &json_out(&run(
                "coordinator",
                &["status", &id, "--json", "--coordinator", &url]
            ))[0],
            "queued"
        ),
        0
    );
    plain.terminate(Duration::from_secs(30));
    let _w = program_worker(&url, &dir, 1, &[]);
    wait_for(
        &url,
        &id,
        Duration::from_secs(60),
        "the sweep to finish",
        done,
    );
    assert!(marker.exists());
}

#[test]
fn a_shell_program_reports_on_the_line_protocol() {
    let dir = workdir("prog-shell");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(
        root.join("examples/programs/train.sh"),
        dir.join("train.sh"),
    )
    .unwrap();
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    let id = submit(
        &dir,
        &url,
        "program: train.sh\ncommand: [bash, \"${program}\", \"${args_no_equals}\"]\nmethod: grid\n\
         metric: {name: score, goal: maximize}\n\
         parameters:\n  rate: {values: [1, 3]}\n  epochs: {value: 4}\n",
    );
    let _w = program_worker(&url, &dir, 2, &[]);
    wait_for(
        &url,
        &id,
        Duration::from_secs(60),
        "the sweep to finish",
        done,
    );
    let lb = leaderboard(&url, &id);
    let best = &lb["trials"][0];
    assert_eq!(best["params"]["rate"], 3, "{lb}");
    assert_eq!(best["metrics"]["score"].as_f64(), Some(12.0), "{lb}");
    let d = trial(&url, &id, 2);
    assert_eq!(
        d["curve"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == "score")
            .count(),
        4
    );
    assert_eq!(d["confusion"]["labels"], serde_json::json!(["no", "yes"]));
}

#[test]
fn the_numpy_assignment_script_runs_unchanged_in_a_sweep() {
    if !have_numpy() {
        return;
    }
    let dir = tempdir("prog-numpy");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.canonicalize().unwrap();
    // A checkout of the example (the worker writes W&B's parameter files under its workdir).
    std::fs::create_dir_all(dir.join("examples/programs")).unwrap();
    std::fs::copy(
        root.join("examples/programs/train.py"),
        dir.join("examples/programs/train.py"),
    )
    .unwrap();
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    // The example's own config, with a smaller space.
    let id = submit(
        &dir,
        &url,
        "program: examples/programs/train.py\nmethod: grid\n\
         metric: {name: val_accuracy, goal: maximize}\nparameters:\n  epochs: {value: 1}\n  \
         optimizer: {values: [sgd, adam]}\n  num_layers: {value: 1}\n  hidden_size: {value: 32}\n  \
         train_samples: {value: 3000}\n",
    );
    let data = root.join("data");
    let _w = program_worker_env(&url, &dir, 2, &[], &[("SWEEP_DATA_DIR", &data)]);
    wait_for(
        &url,
        &id,
        Duration::from_secs(300),
        "the sweep to finish",
        done,
    );
    let lb = leaderboard(&url, &id);
    let best = &lb["trials"][0];
    assert_eq!(best["state"], "finished", "{lb}");
    assert_eq!(best["params"]["optimizer"], "adam", "{lb}");
    assert!(
        best["metrics"]["val_accuracy"].as_f64().unwrap() > 0.6,
        "{lb}"
    );
    let d = trial(&url, &id, best["trial"].as_u64().unwrap());
    assert_eq!(d["confusion"]["labels"][9], "Ankle boot", "{d}");
    let total: u64 = d["confusion"]["matrix"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|c| c.as_u64().unwrap()))
        .sum();
    assert_eq!(total, 10_000, "the test set");
    // The weights the script wrote into wandb.run.dir came back with the best trial, and give
    // its test accuracy when loaded into NumPy again.
    let out = dir.join("best-model");
    download_files(&url, &id, &[], &out);
    let check = format!(
        "import sys, numpy as np\n\
         sys.path.insert(0, {programs:?})\n\
         import train\n\
         m = np.load({model:?})\n\
         net = train.MLP([784, 32, 10], str(m['activation']), 'random', np.random.default_rng(0))\n\
         net.W = [m['W0'], m['W1']]\n\
         net.b = [m['b0'], m['b1']]\n\
         x, y, xt, yt = train.load('fashion_mnist', {data:?})\n\
         print(repr(train.evaluate(net, xt, yt, 'cross_entropy')[1]))\n",
        programs = dir.join("examples/programs").display().to_string(),
        model = out.join("model.npz").display().to_string(),
        data = data.display().to_string(),
    );
    let py = std::process::Command::new("python3")
        .args(["-c", &check])
        .env("PYTHONPATH", root.join("clients/python"))
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let acc: f64 = String::from_utf8_lossy(&py.stdout).trim().parse().unwrap();
    assert_eq!(Some(acc), d["metrics"]["test_accuracy"].as_f64(), "{d}");
}

/// `python3 tests/programs/driven.py ARGS` with our `wandb` module and binaries.
fn driven(url: &str, args: &[&str]) -> std::process::Command {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut c = std::process::Command::new("python3");
    // Where the worker it starts names the trials' files directories: one per process.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let cwd = tempdir(&format!("driven-cwd-{n}"));
    c.current_dir(cwd)
        .arg(here.join("programs/driven.py"))
        .args(args)
        .env("PYTHONPATH", here.join("../clients/python"))
        .env("SWEEP_COORDINATOR", url)
        .env("SWEEP_WORKER_BIN", sweep_tests::bin_dir().join("worker"))
        .env(
            "SWEEP_COORDINATOR_BIN",
            sweep_tests::bin_dir().join("coordinator"),
        );
    c
}

/// `driven.py create`: a new sweep made by wandb.sweep; its id.
fn create_driven(url: &str) -> String {
    let out = driven(url, &["create"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn wandb_sweep_and_agents_on_two_processes_share_one_sweep() {
    let dir = tempdir("prog-driven");
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    let id = create_driven(&url);
    // The first agent takes one trial and returns (count=1); two more share the rest.
    let one = driven(&url, &["agent", &id, "1"]).output().unwrap();
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let a = driven(&url, &["agent", &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = driven(&url, &["agent", &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "agents exit 0 when the sweep is over"
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
    let lb = leaderboard(&url, &id);
    let t = lb["trials"].as_array().unwrap();
    assert_eq!(t.len(), 6, "{lb}");
    assert_eq!(t[0]["params"]["lr"].as_f64(), Some(0.01), "{lb}");
    assert_eq!(t[0]["params"]["hidden_layer_size"], 32, "{lb}");
    assert!(
        t.iter().all(|t| t["attempts"] == 1),
        "each trial once: {lb}"
    );
    let stopped: Vec<&Value> = t.iter().filter(|t| t["state"] == "stopped").collect();
    let finished = t.iter().filter(|t| t["state"] == "finished").count();
    assert_eq!(stopped.len() + finished, 6, "{lb}");
    // Hyperband stopped some functions mid-run: they saw wandb's stop, not a crash.
    assert!(!stopped.is_empty(), "{lb}");
    assert!(said.contains("SweepStop"), "{said}");
    for s in stopped {
        assert!(s["error"].as_str().unwrap().contains("hyperband"), "{s}");
    }
    // The function's file went with its trial: the best one's downloads.
    let out = dir.join("best-files");
    download_files(&url, &id, &[], &out);
    assert_eq!(
        std::fs::read_to_string(out.join("model.txt")).unwrap(),
        "lr=0.01 hidden=32"
    );
    // And the image the function logged, with its index line.
    let index = std::fs::read_to_string(out.join("media/_index.jsonl")).unwrap();
    assert!(
        index.contains("\"key\": \"sample\"") && index.contains("\"caption\": \"checker\""),
        "{index}"
    );
    let png = std::fs::read_dir(out.join("media/images")).unwrap().count();
    assert_eq!(png, 1);
}

#[test]
fn a_sweep_for_agents_is_accepted_and_served_by_a_worker_told_its_program() {
    let dir = workdir("prog-agentsweep");
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    // No program, and names that are not the MLP's: W&B's sweep for agents.
    let cfg = dir.join("agents.yaml");
    std::fs::write(
        &cfg,
        "method: grid\nmetric: {name: loss, goal: minimize}\n\
         parameters:\n  x: {values: [3, 1, 2]}\n  steps: {value: 2}\n",
    )
    .unwrap();
    let out = run(
        "coordinator",
        &["submit", cfg.to_str().unwrap(), "--coordinator", &url],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("this is a sweep for agents"), "{said}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // A worker for everything else does not take it, and the sweep says what it waits for.
    let _plain = worker_with(&url, 1, &["--allow-programs"]);
    wait_for(&url, &id, Duration::from_secs(60), "the notice", |s| {
        s["notices"].to_string().contains("waiting for an agent")
    });
    // `worker --sweep ID --program FILE` runs it with the worker's program, then exits.
    let out = sweep_tests::cmd("worker")
        .args([
            "--coordinator",
            &url,
            "--sweep",
            &id,
            "--program",
            "behave.py",
        ])
        .args(["--quiet-programs", "--workdir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lb = leaderboard(&url, &id);
    assert_eq!(lb["sweep"]["state"], "finished", "{lb}");
    assert_eq!(lb["trials"][0]["params"]["x"], 1, "{lb}");
    assert_eq!(
        lb["trials"][0]["metrics"]["loss"].as_f64(),
        Some(1.5),
        "{lb}"
    );
}

#[test]
fn sigterm_to_a_worker_ends_its_program_and_hands_the_trial_back() {
    let dir = workdir("prog-sigterm");
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    let pids = dir.join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    let id = submit(
        &dir,
        &url,
        "program: behave.py\ncommand: [python3, \"${program}\", \"${args}\"]\nmethod: grid\n\
         metric: {name: loss}\nparameters:\n  steps: {value: 30}\n  pause: {value: 0.2}\n",
    );
    let mut w = cmd_worker(&url, &dir, &pids);
    wait_until("the program to start", Duration::from_secs(60), || {
        pids.join("1-1.pid").exists()
    });
    let pid: u32 = std::fs::read_to_string(pids.join("1-1.pid"))
        .unwrap()
        .parse()
        .unwrap();
    // As Slurm or Kubernetes do before they take a node.
    assert_eq!(
        w.terminate(Duration::from_secs(30)),
        Some(0),
        "the worker exits 0"
    );
    assert!(!alive(pid), "the program ended with its worker");
    let d = trial(&url, &id, 1);
    assert_eq!(d["state"], "queued", "handed back, queued at once: {d}");
    let _w2 = cmd_worker(&url, &dir, &pids);
    wait_for(
        &url,
        &id,
        Duration::from_secs(120),
        "the sweep to finish",
        done,
    );
    let d = trial(&url, &id, 1);
    assert_eq!(
        (d["state"].as_str(), d["attempts"].as_u64()),
        (Some("finished"), Some(2)),
        "{d}"
    );
}

#[test]
fn an_agent_process_that_dies_takes_its_worker_with_it_and_the_trial_is_handed_back() {
    let dir = tempdir("prog-agentdies");
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    let id = create_driven(&url);
    let mut agent = Proc(
        driven(&url, &["agent", &id])
            .env("DRIVEN_PAUSE", "5")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&url, &id, Duration::from_secs(60), "a running trial", |s| {
        n(s, "running") == 1
    });
    // The worker wandb.agent started is the Python process's child.
    let python = agent.0.id();
    let worker = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(") ")
                        .next()?
                        .split(' ')
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(python)
        })
        .expect("the agent's worker");
    agent.kill9();
    wait_until("the worker to exit", Duration::from_secs(30), || {
        !alive(worker)
    });
    let d = trial(&url, &id, 1);
    assert_eq!(
        d["state"], "queued",
        "handed back at once, not after its lease: {d}"
    );
    assert_eq!(d["attempts"], 1, "{d}");
}

#[test]
fn the_python_driven_example_makes_and_runs_its_sweep() {
    if !have_numpy() {
        return;
    }
    let dir = tempdir("prog-example-agent");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    for f in ["train.py", "sweep_agent.py"] {
        std::fs::copy(root.join("examples/programs").join(f), dir.join(f)).unwrap();
    }
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    let out = std::process::Command::new("python3")
        .arg(dir.join("sweep_agent.py"))
        .current_dir(&dir)
        .env("PYTHONPATH", root.join("clients/python"))
        .env("SWEEP_DATA_DIR", root.join("data"))
        .env("SWEEP_COORDINATOR", &url)
        .env("SWEEP_WORKER_BIN", sweep_tests::bin_dir().join("worker"))
        .env(
            "SWEEP_COORDINATOR_BIN",
            sweep_tests::bin_dir().join("coordinator"),
        )
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = said
        .lines()
        .find_map(|l| l.strip_prefix("sweep ")?.strip_suffix(" done"))
        .expect("the sweep id")
        .to_string();
    let lb = leaderboard(&url, &id);
    assert_eq!(lb["sweep"]["state"], "finished", "{lb}");
    let t = lb["trials"].as_array().unwrap();
    assert_eq!(t.len(), 6, "{lb}");
    assert!(t.iter().all(|t| t["state"] == "finished"), "{lb}");
    let d = trial(&url, &id, t[0]["trial"].as_u64().unwrap());
    assert_eq!(d["confusion"]["labels"][0], "T-shirt/top", "{d}");
}

#[test]
fn a_process_left_holding_the_pipes_does_not_hold_up_the_trial() {
    let dir = tempdir("prog-setsid");
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    let marker = format!("sweep-setsid-{}", std::process::id());
    // The program starts a process in a session of its own that keeps its stdout, stderr and
    // report pipe open for ten minutes, logs once and exits.
    let id = submit(
        &dir,
        &url,
        &format!(
            "command: [bash, -c, \"setsid bash -c 'sleep 600; true {marker}' & echo '{{\\\"log\\\": {{\\\"m\\\": 1}}}}' >&$SWEEP_REPORT_FD\"]\n\
             method: grid\nmetric: {{name: m}}\nparameters:\n  x: {{value: 1}}\n"
        ),
    );
    let _w = program_worker(&url, &dir, 1, &[]);
    wait_for(
        &url,
        &id,
        Duration::from_secs(120),
        "the sweep to finish",
        done,
    );
    // The leftover ends with the trial: the supervisor finds it in its tree, session or not.
    wait_until(
        "the leftover in a session of its own to end with the trial",
        Duration::from_secs(30),
        || {
            !std::process::Command::new("pgrep")
                .args(["-f", &marker])
                .output()
                .unwrap()
                .status
                .success()
        },
    );
    let d = trial(&url, &id, 1);
    assert_eq!(d["state"], "finished", "{d}");
    assert_eq!(d["metrics"]["m"].as_f64(), Some(1.0), "{d}");
}

/// `coordinator files ID MORE… --out OUT`, which must succeed; its stdout.
fn download_files(url: &str, id: &str, more: &[&str], out: &Path) -> String {
    let out = out.to_str().unwrap();
    let mut args = vec!["files", id];
    args.extend_from_slice(more);
    args.extend_from_slice(&["--out", out, "--coordinator", url]);
    String::from_utf8_lossy(&sweep_tests::run_ok("coordinator", &args).stdout).into_owned()
}

/// The `cmp` of two files' bytes, with a short message.
fn same_bytes(a: &[u8], b: &[u8], what: &str) {
    assert!(
        a == b,
        "{what}: {} bytes vs {} bytes differ",
        a.len(),
        b.len()
    );
}

#[test]
fn a_programs_files_are_kept_with_its_trial_and_download_as_written() {
    let dir = workdir("prog-files");
    let web = format!("127.0.0.1:{}", free_port());
    let (_c, url) = serve(&dir.join("sweeps.db"), &["--http-listen", &web]);
    // Three trials, the best two keep their files; at most 1 MiB each, which a 2 MB file
    // would pass.
    let id = submit(
        &dir,
        &url,
        "program: files.py\ncommand: [python3, \"${program}\", \"${args}\"]\nmethod: grid\n\
         metric: {name: val_accuracy, goal: maximize}\nkeep_models: 2\n\
         program_options: {max_files_mb: 1}\nparameters:\n  x: {values: [0.5, 1.0, 2.0]}\n  \
         big: {value: 2000000}\n",
    );
    let _w = program_worker(&url, &dir, 2, &[]);
    wait_for(
        &url,
        &id,
        Duration::from_secs(120),
        "the sweep to finish",
        done,
    );
    let expected_model = |x: f64| -> Vec<u8> {
        (0..3000u32)
            .map(|i| ((i * (x * 10.0) as u32) % 251) as u8)
            .collect()
    };
    // The best trial (x = 2) lists what it handed back: written into wandb.run.dir, linked by
    // wandb.save below its base_path, copied by policy="now"; not the file over the limit.
    let d = trial(&url, &id, 3);
    let files: Vec<(&str, u64)> = d["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["bytes"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        files,
        vec![
            ("ckpt/last.txt", 11),
            ("model.bin", 3000),
            ("notes-3.txt", 3)
        ],
        "{d}"
    );
    let output = d["output"].as_str().unwrap();
    assert!(
        output.contains(
            "zz-big.bin is not kept: 2000000 bytes would take the trial's files past 1 MiB"
        ),
        "{output}"
    );
    assert!(
        output.contains("wandb.save('never-written-3.txt') matched no file"),
        "{output}"
    );
    // `coordinator files` (best trial by default) writes them with their folders.
    let out = dir.join("best");
    let got = download_files(&url, &id, &[], &out);
    assert!(got.contains("trial 3's files: 3 (3014 bytes)"), "{got}");
    same_bytes(
        &std::fs::read(out.join("model.bin")).unwrap(),
        &expected_model(2.0),
        "model.bin",
    );
    // A live link: the file's content at the end; "now": its content when saved.
    assert_eq!(
        std::fs::read_to_string(out.join("ckpt/last.txt")).unwrap(),
        "final x=2.0"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("notes-3.txt")).unwrap(),
        "now"
    );
    // The second best keeps its files too; the third's were dropped (keep_models: 2).
    let two = dir.join("two");
    download_files(&url, &id, &["2", "--path", "model.bin"], &two);
    same_bytes(
        &std::fs::read(two.join("model.bin")).unwrap(),
        &expected_model(1.0),
        "trial 2",
    );
    assert!(!two.join("ckpt").exists(), "--path downloads one file");
    let none = run(
        "coordinator",
        &[
            "files",
            &id,
            "1",
            "--out",
            dir.join("one").to_str().unwrap(),
            "--coordinator",
            &url,
        ],
    );
    assert!(!none.status.success());
    let said = String::from_utf8_lossy(&none.stderr);
    assert!(
        said.contains("keeps no files of trial 1") && said.contains("keep_models"),
        "{said}"
    );
    assert!(trial(&url, &id, 1)["files"].as_array().unwrap().is_empty());
    // Over HTTP: the same bytes, as an opaque download.
    let (code, head, body) = sweep_tests::request(
        &web,
        "GET",
        &format!("/api/v1/sweeps/{id}/trials/best/files/ckpt/last.txt"),
        None,
    );
    assert_eq!(code, 200, "{head}");
    assert!(
        head.contains("content-type: application/octet-stream"),
        "{head}"
    );
    assert!(head.contains("filename=\"last.txt\""), "{head}");
    assert_eq!(body, b"final x=2.0");
    let (code, _, body) = sweep_tests::request(
        &web,
        "GET",
        &format!("/api/v1/sweeps/{id}/trials/2/files/nothing.bin"),
        None,
    );
    assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
    // The worker leaves no files directory behind.
    let left: Vec<_> = std::fs::read_dir(dir.join("wandb").join(format!("sweep-{id}")))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("run-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `coordinator ARGS… --coordinator URL`, which must fail; its stderr.
fn refused(url: &str, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--coordinator", url]);
    let out = run("coordinator", &all);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded: {err}");
    err
}

#[test]
fn downloads_never_write_outside_out_never_overwrite_silently_and_skip_dot_paths() {
    let dir = workdir("prog-hostile-files");
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    let id = submit(
        &dir,
        &url,
        "program: hostile_files.py\ncommand: [python3, \"${program}\", \"${args}\"]\n\
         method: grid\nmetric: {name: score, goal: maximize}\nparameters:\n  x: {value: 1}\n",
    );
    let _w = program_worker(&url, &dir, 1, &[]);
    wait_for(
        &url,
        &id,
        Duration::from_secs(120),
        "the sweep to finish",
        done,
    );
    // A directory where notes.txt is a symlink to a file outside it.
    let out = dir.join("dl");
    std::fs::create_dir_all(&out).unwrap();
    let outside = dir.join("outside.txt");
    std::fs::write(&outside, "precious").unwrap();
    std::os::unix::fs::symlink(&outside, out.join("notes.txt")).unwrap();
    let o = out.to_str().unwrap();
    let err = refused(&url, &["files", &id, "--out", o, "--force"]);
    assert!(err.contains("nothing was written to"), "{err}");
    assert!(
        err.contains(".git/config: not written: '.git' starts with a dot")
            && err.contains("--dotfiles"),
        "{err}"
    );
    assert!(err.contains("notes.txt: is a symlink"), "{err}");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
    assert!(!out.join("sub").exists() && !out.join(".git").exists());
    // Without the symlink: one file, then again (refused without --force, replaced with it).
    std::fs::remove_file(out.join("notes.txt")).unwrap();
    download_files(&url, &id, &["--path", "notes.txt"], &out);
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "from the trial"
    );
    let err = refused(&url, &["files", &id, "--path", "notes.txt", "--out", o]);
    assert!(
        err.contains("notes.txt: is already there; not replaced (--force replaces it)"),
        "{err}"
    );
    download_files(&url, &id, &["--path", "notes.txt", "--force"], &out);
    // Asked for, the dot-directory is written too.
    download_files(&url, &id, &["--force", "--dotfiles"], &out);
    assert!(out.join(".git/config").is_file() && out.join("sub/a.txt").is_file());
    // A folder on the way that is a symlink is not followed.
    let away = dir.join("away");
    std::fs::create_dir_all(&away).unwrap();
    let o2 = dir.join("dl2");
    std::fs::create_dir_all(&o2).unwrap();
    std::os::unix::fs::symlink(&away, o2.join("sub")).unwrap();
    let err = refused(
        &url,
        &["files", &id, "--out", o2.to_str().unwrap(), "--force"],
    );
    assert!(err.contains("sub is a symlink"), "{err}");
    assert_eq!(std::fs::read_dir(&away).unwrap().count(), 0);

    // export and report: the same rules for their fixed names, and --out itself.
    let e = dir.join("export");
    let eo = e.to_str().unwrap();
    run_ok_coordinator(&url, &["export", &id, "--out", eo]);
    let err = refused(&url, &["export", &id, "--out", eo]);
    assert!(err.contains("leaderboard.json: is already there"), "{err}");
    std::fs::remove_file(e.join("leaderboard.csv")).unwrap();
    std::os::unix::fs::symlink(&outside, e.join("leaderboard.csv")).unwrap();
    let err = refused(&url, &["export", &id, "--out", eo, "--force"]);
    assert!(err.contains("leaderboard.csv: is a symlink"), "{err}");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
    let link = dir.join("report-link");
    std::os::unix::fs::symlink(&away, &link).unwrap();
    let err = refused(&url, &["report", &id, "--out", link.to_str().unwrap()]);
    assert!(
        err.contains("is a symlink") && err.contains("give the directory itself"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&away).unwrap().count(), 0);
    run_ok_coordinator(
        &url,
        &["report", &id, "--out", dir.join("r").to_str().unwrap()],
    );
}

fn run_ok_coordinator(url: &str, args: &[&str]) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--coordinator", url]);
    sweep_tests::run_ok("coordinator", &all);
}

#[test]
fn allow_programs_dir_runs_only_programs_inside_it_with_nothing_before_them() {
    let dir = workdir("prog-allow-dir");
    let progs = dir.join("progs");
    let elsewhere = dir.join("elsewhere");
    let evil = dir.join("evil");
    for d in [&progs, &elsewhere, &evil] {
        std::fs::create_dir_all(d).unwrap();
    }
    let marker = |what: &str| dir.join(format!("ran-{what}"));
    let touch = |what: &str| format!("open('{}', 'w').write('x')\n", marker(what).display());

    std::fs::copy(dir.join("behave.py"), progs.join("train.py")).unwrap();
    std::fs::write(elsewhere.join("train.py"), touch("elsewhere")).unwrap();
    let fake_python = evil.join("python");
    std::fs::write(
        &fake_python,
        format!("#!/bin/sh\ntouch {}\n", marker("path").display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &fake_python,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    let allow = format!("--allow-programs={}", progs.display());
    // A slot per escape: each refusal is this worker's own fault, after which that slot
    // waits before its next lease.
    let _w = worker_with(
        &url,
        6,
        &[
            &allow,
            "--quiet-programs",
            "--workdir",
            progs.to_str().unwrap(),
        ],
    );
    // Each escape a user found: the worker refuses it with the rule (its own refusal, so the
    // trial is handed back, not failed, and the sweep pauses saying why), and its payload
    // never runs.
    let c_code = format!("-c{}", touch("c").trim());
    let escapes: Vec<(String, &str)> = vec![
        (format!("[python, \"{c_code}\"]"), "no ${program}"),
        (
            format!("[\"${{env}}\", \"-Spython3 {c_code}\", \"${{program}}\"]"),
            "before ${program}",
        ),
        (
            format!("[\"${{env}}\", \"--split-string=python3 {c_code}\", \"${{program}}\"]"),
            "before ${program}",
        ),
        (
            format!(
                "[\"${{env}}\", \"-C{}\", \"${{interpreter}}\", \"${{program}}\"]",
                elsewhere.display()
            ),
            "before ${program}",
        ),
        (
            "[\"${env}\", \"${args_no_hyphens}\", python, \"${program}\"]".into(),
            "before ${program}",
        ),
    ];
    for (command, said) in &escapes {
        let id = submit(
            &dir,
            &url,
            &format!(
                "program: train.py\ncommand: {command}\nmethod: grid\npause_after_failures: 1\n\
                 metric: {{name: val_accuracy, goal: maximize}}\n\
                 parameters:\n  PATH: {{value: {}}}\n",
                evil.display()
            ),
        );
        wait_for(
            &url,
            &id,
            Duration::from_secs(60),
            "the sweep to pause",
            |s| s["state"] == "paused",
        );
        let t = trial(&url, &id, 1);
        assert_eq!(t["state"], "queued", "{command}: {t}");
        let why = t["error"].as_str().unwrap();
        assert!(
            why.contains(said) && why.contains("runs only programs inside"),
            "{command}: {why}"
        );
        run_ok_coordinator(&url, &["stop", &id]);
    }
    for what in ["c", "elsewhere", "path"] {
        assert!(!marker(what).exists(), "the {what} escape ran");
    }
    // The program itself, started as W&B starts it, runs.
    let id = submit(
        &dir,
        &url,
        "program: train.py\nmethod: grid\nmetric: {name: val_accuracy, goal: maximize}\n\
         parameters:\n  x: {value: 1}\n",
    );
    wait_for(
        &url,
        &id,
        Duration::from_secs(60),
        "the sweep to finish",
        done,
    );
    assert_eq!(trial(&url, &id, 1)["state"], "finished");
}

/// The pids tree.sh recorded for attempt `attempt` of trial `trial`, once all are written.
fn tree_pids(pids: &Path, trial: u64, attempt: u32) -> Vec<u32> {
    let d = pids.join(format!("{trial}-{attempt}"));
    let names = ["bg", "nested", "bash", "setsid", "py", "mp"];
    wait_until(
        "the program's tree to start",
        Duration::from_secs(60),
        || names.iter().all(|n| d.join(n).exists()),
    );
    let found: Vec<u32> = names
        .iter()
        .flat_map(|n| {
            std::fs::read_to_string(d.join(n))
                .unwrap()
                .split_whitespace()
                .map(|p| p.parse::<u32>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(found.len(), 7, "{found:?}");
    found
}

#[test]
fn a_programs_whole_process_tree_dies_with_its_worker_and_with_its_trial() {
    let dir = workdir("prog-tree");
    let (_c, url) = serve(&dir.join("sweeps.db"), &["--lease-ttl", "2"]);
    let pids = dir.join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    // Trial 1: its worker is SIGKILLed. Trial 2: its time limit ends it.
    let id = submit(
        &dir,
        &url,
        "program: tree.sh\ncommand: [bash, \"${program}\"]\nmethod: grid\nmax_attempts: 5\n\
         metric: {name: loss}\nprogram_options: {time_limit: 8}\n\
         parameters:\n  x: {values: [1, 2]}\n",
    );
    let mut w = cmd_worker(&url, &dir, &pids);
    let tree = tree_pids(&pids, 1, 1);
    assert!(tree.iter().all(|p| alive(*p)), "{tree:?}");
    w.kill9();
    wait_until(
        "every process of the tree to die with its worker",
        Duration::from_secs(30),
        || tree.iter().all(|p| !alive(*p)),
    );
    // The next attempts end by the time limit: each one's whole tree with it.
    let _w2 = cmd_worker(&url, &dir, &pids);
    let again = tree_pids(&pids, 1, 2);
    wait_for(
        &url,
        &id,
        Duration::from_secs(120),
        "the sweep to finish",
        done,
    );
    let last = tree_pids(&pids, 2, 1);
    for t in [&again, &last] {
        wait_until(
            "every process of a timed-out trial's tree to die",
            Duration::from_secs(30),
            || t.iter().all(|p| !alive(*p)),
        );
    }
    let d = trial(&url, &id, 2);
    assert_eq!(d["state"], "stopped", "{d}");
    assert!(d["error"].as_str().unwrap().contains("time limit"), "{d}");
}

#[test]
fn stop_reaches_a_running_program_within_a_heartbeat() {
    let dir = workdir("prog-stop-now");
    let (_c, url) = serve(&dir.join("sweeps.db"), &["--lease-ttl", "3"]);
    let pids = dir.join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    // Logs once, then is quiet for ten minutes: no report would carry the stop before then.
    let id = submit(
        &dir,
        &url,
        "program: behave.py\ncommand: [python3, \"${program}\", \"${args}\"]\nmethod: grid\n\
         metric: {name: loss}\nparameters:\n  steps: {value: 3}\n  pause: {value: 600}\n",
    );
    let _w = cmd_worker(&url, &dir, &pids);
    wait_for(&url, &id, Duration::from_secs(60), "the first step", |_| {
        steps(&url, &id, 1, "loss") >= 1
    });
    let pid: u32 = std::fs::read_to_string(pids.join("1-1.pid"))
        .unwrap()
        .parse()
        .unwrap();
    let out = run("coordinator", &["stop", &id, "--coordinator", &url]);
    assert!(out.status.success());
    let t0 = Instant::now();
    // The trial is stopped with the reason at once, and the program ends within a heartbeat
    // (1 s here) and the grace, not at its next report ten minutes on.
    let d = trial(&url, &id, 1);
    assert_eq!(d["state"], "stopped", "{d}");
    assert_eq!(
        d["error"], "the sweep was stopped while this trial ran (attempt 1)",
        "{d}"
    );
    wait_until(
        "the program to end after the stop",
        Duration::from_secs(60),
        || !alive(pid),
    );
    eprintln!("the program ended {:?} after the stop", t0.elapsed());
    assert!(d["curve"].as_array().is_some_and(|c| !c.is_empty()), "{d}");
}

/// The sweep's status as JSON.
fn status(url: &str, id: &str) -> Value {
    json_out(&run(
        "coordinator",
        &["status", id, "--json", "--coordinator", url],
    ))[0]
        .clone()
}

#[test]
fn failures_in_a_row_pause_the_sweep_instead_of_failing_it() {
    let dir = workdir("prog-typo");
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    // A typo in `program`: the file is on no worker. Each worker hands the trial back (its
    // own fault, not the trial's) and pauses; after five in a row the sweep pauses itself.
    let id = submit(
        &dir,
        &url,
        "program: trian.py\ncommand: [python3, \"${program}\", \"${args}\"]\nmethod: grid\n\
         metric: {name: loss}\nparameters:\n  x: {values: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}\n  \
         steps: {value: 2}\n",
    );
    let _w = program_worker(&url, &dir, 5, &[]);
    wait_for(
        &url,
        &id,
        Duration::from_secs(180),
        "the sweep to pause",
        |s| s["state"] == "paused",
    );
    let s = status(&url, &id);
    let notices = s["notices"].to_string();
    assert!(
        notices.contains("paused: 5 trials in a row failed or could not run")
            && notices.contains("program trian.py is not in")
            && notices.contains("coordinator resume"),
        "{notices}"
    );
    assert_eq!(n(&s, "failed"), 0, "{s}");
    assert_eq!(n(&s, "finished"), 0, "{s}");
    // `watch` says so too.
    let mut watch = Proc(
        sweep_tests::cmd("coordinator")
            .args(["watch", &id, "--coordinator", &url])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = watch.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let said = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("watch prints the pause's reason");
        lines.push(line.clone());
        if line.contains("notice: paused:") {
            break line;
        }
    };
    assert!(said.contains("program trian.py is not in"), "{said}");
    // And that the sweep is paused, before anything else.
    assert!(
        lines[0].contains(&format!(
            "sweep {id} is paused: nothing runs until `coordinator resume {id}`"
        )),
        "{lines:?}"
    );
    drop(watch);
    // Fixed and resumed: the same trials run, every one once.
    std::fs::copy(dir.join("behave.py"), dir.join("trian.py")).unwrap();
    let out = run("coordinator", &["resume", &id, "--coordinator", &url]);
    assert!(out.status.success());
    wait_for(
        &url,
        &id,
        Duration::from_secs(300),
        "the sweep to finish",
        done,
    );
    let s = status(&url, &id);
    assert_eq!(n(&s, "finished"), 10, "{s}");
    assert!(!s["notices"].to_string().contains("paused:"), "{s}");

    // A program that crashes: five failed trials, then the pause, with the traceback's end.
    let id = submit(
        &dir,
        &url,
        "program: behave.py\ncommand: [python3, \"${program}\", \"${args}\"]\nmethod: grid\n\
         metric: {name: loss}\nmax_attempts: 1\n\
         parameters:\n  mode: {value: crash}\n  x: {values: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}\n",
    );
    wait_for(
        &url,
        &id,
        Duration::from_secs(180),
        "the sweep to pause",
        |s| s["state"] == "paused",
    );
    let s = status(&url, &id);
    let notices = s["notices"].to_string();
    assert!(
        notices.contains("5 trials in a row") && notices.contains("ZeroDivisionError"),
        "{notices}"
    );
    assert!(n(&s, "failed") >= 5 && n(&s, "failed") < 10, "{s}");
}

/// Resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn a_long_curve_is_served_sampled_and_paged_everywhere_and_memory_falls_back() {
    let dir = workdir("prog-long-curve");
    let web = format!("127.0.0.1:{}", free_port());
    let (c, url) = serve(&dir.join("sweeps.db"), &["--http-listen", web.as_str()]);
    // 2,000 steps × 101 metrics: 202,000 points, twenty times what a trial is served with.
    let id = submit(
        &dir,
        &url,
        "program: behave.py\ncommand: [python3, \"${program}\", \"${args}\"]\nmethod: grid\n\
         metric: {name: loss, goal: minimize}\nparameters:\n  mode: {value: long}\n  steps: {value: 2000}\n",
    );
    let _w = program_worker(&url, &dir, 1, &[]);
    wait_for(&url, &id, Duration::from_secs(300), "the trial", done);
    let path = format!("/api/v1/sweeps/{id}/trials/1");
    let get = |p: &str| {
        let (code, _, body) = sweep_tests::request(&web, "GET", p, None);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(code, 200, "{v}");
        v
    };
    let d = get(&path);
    assert_eq!(d["curve_points"], 202_000, "{}", d["curve_points"]);
    assert_eq!(d["curve_sampled"], true);
    let curve = d["curve"].as_array().unwrap();
    assert!(
        (9_000..=12_000).contains(&curve.len()),
        "{} points served",
        curve.len()
    );
    // The spike survives sampling; each metric keeps its first and last step.
    assert!(curve
        .iter()
        .any(|p| p["name"] == "m007" && p["step"] == 1235 && p["value"] == 99.0));
    for m in ["m000", "m099", "loss"] {
        let steps: Vec<u64> = curve
            .iter()
            .filter(|p| p["name"] == m)
            .map(|p| p["step"].as_u64().unwrap())
            .collect();
        assert_eq!(steps.first(), Some(&1), "{m}");
        assert_eq!(steps.last(), Some(&2000), "{m}");
    }
    // Asked for fewer, and for more than the most: bounded.
    let few = get(&format!("{path}?points=500"));
    assert!(few["curve"].as_array().unwrap().len() <= 1_000);
    let (code, _, _) = sweep_tests::request(&web, "GET", &format!("{path}?points=x"), None);
    assert_eq!(code, 400);
    // Every point, a page at a time, each as reported.
    let mut all = 0usize;
    let mut after = 0u64;
    let mut pages = 0;
    loop {
        let page = get(&format!("{path}/curve?after={after}&limit=50000"));
        let points = page["points"].as_array().unwrap();
        assert!(points.len() <= 50_000 + 101, "{}", points.len());
        assert!(points.iter().all(|p| p["step"].as_u64().unwrap() > after));
        all += points.len();
        pages += 1;
        match page["next_after"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!((all, pages), (202_000, 5));
    let m7 = get(&format!("{path}/curve?name=m007&after=1234&limit=1"));
    assert_eq!(m7["points"][0]["value"], 99.0, "{m7}");
    // Three at once leave the coordinator's memory about where it was.
    let pid = c.0.id();
    let before = rss(pid);
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (web, path) = (web.clone(), path.clone());
            std::thread::spawn(move || sweep_tests::request(&web, "GET", &path, None).0)
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    let after_rss = rss(pid);
    assert!(
        after_rss < before + (64 << 20),
        "resident {} MiB before, {} MiB after",
        before >> 20,
        after_rss >> 20
    );
    // The terminal's table, the JSON and the report all work on it.
    let out = run("coordinator", &["trial", &id, "1", "--coordinator", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("the curve has 202000 points"), "{text}");
    assert!(text.contains("93 more metrics not shown"), "{text}");
    assert!(text.lines().count() < 200, "{text}");
    let d = trial(&url, &id, 1);
    assert_eq!(d["curve_sampled"], true);
    let out = run(
        "coordinator",
        &[
            "report",
            &id,
            "--out",
            dir.join("report").to_str().unwrap(),
            "--coordinator",
            &url,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_name_a_program_gives_its_run_is_kept_and_shown() {
    let dir = workdir("prog-names");
    let store = dir.join("sweeps.db");
    let listen = format!("127.0.0.1:{}", free_port());
    let (c, url) = serve_at(&listen, &store, &[]);
    // Trial 1 names its run in wandb.init, trial 2 sets wandb.run.name after it.
    let id = submit(
        &dir,
        &url,
        "program: behave.py\ncommand: [python3, \"${program}\", \"${args}\"]\nmethod: grid\n\
         metric: {name: loss, goal: minimize}\nparameters:\n  steps: {value: 2}\n  \
         x: {value: 1}\n  name: {value: hl_3_bs_16_ac_tanh}\n  rename: {values: [\"\", lr_0.01]}\n",
    );
    let _w = program_worker(&url, &dir, 2, &[]);
    wait_for(&url, &id, Duration::from_secs(120), "both trials", done);
    let names = |url: &str| -> Vec<(u64, String)> {
        let lb = leaderboard(url, &id);
        let mut v: Vec<(u64, String)> = lb["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (n(t, "trial"), t["name"].as_str().unwrap_or("").to_string()))
            .collect();
        v.sort();
        v
    };
    let want = vec![
        (1, "hl_3_bs_16_ac_tanh".to_string()),
        (2, "lr_0.01".to_string()),
    ];
    assert_eq!(names(&url), want);
    let table = run("coordinator", &["leaderboard", &id, "--coordinator", &url]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("name") && text.contains("hl_3_bs_16_ac_tanh"),
        "{text}"
    );
    let t = run("coordinator", &["trial", &id, "2", "--coordinator", &url]);
    let text = String::from_utf8_lossy(&t.stdout);
    assert!(text.starts_with("trial 2 (lr_0.01): finished"), "{text}");
    // The exact command line it ran, as W&B's agent builds it.
    let d = trial(&url, &id, 2);
    let command = d["command"].as_str().unwrap();
    assert!(
        command.starts_with("python3 behave.py ") && command.contains("--rename=lr_0.01"),
        "{command}"
    );
    assert!(text.contains(&format!("command: {command}")), "{text}");
    let out = dir.join("export");
    let e = run(
        "coordinator",
        &[
            "export",
            &id,
            "--out",
            out.to_str().unwrap(),
            "--coordinator",
            &url,
        ],
    );
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let csv = std::fs::read_to_string(out.join("leaderboard.csv")).unwrap();
    assert!(csv.starts_with("rank,trial,state,name,"), "{csv}");
    // Kept in the store: a restart shows them.
    drop(c);
    let (_c, url) = serve_at(&listen, &store, &[]);
    assert_eq!(names(&url), want);
}

#[test]
fn the_wandb_calls_course_repositories_make_import_and_run() {
    let dir = workdir("prog-course-calls");
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    let id = submit(
        &dir,
        &url,
        "program: course_calls.py\nmethod: grid\nmetric: {name: val_accuracy, goal: maximize}\n\
         parameters:\n  x: {values: [1, 2]}\n",
    );
    let _w = program_worker(&url, &dir, 2, &[]);
    wait_for(&url, &id, Duration::from_secs(120), "both trials", done);
    let s = status(&url, &id);
    assert_eq!((n(&s, "finished"), n(&s, "failed")), (2, 0), "{s}");
    let d = trial(&url, &id, 1);
    // The Keras callback logged every epoch; the run is named; the figure and the API query
    // were answered, not fatal.
    assert_eq!(d["name"], "x_1.0", "{d}");
    let steps = d["curve"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "val_accuracy")
        .count();
    assert_eq!(steps, 3, "{d}");
    let output = d["output"].as_str().unwrap();
    // The figure, logged after three epochs, is kept as the PNG of its step.
    let files: Vec<&str> = d["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("media/images/confusion_3_") && f.ends_with(".png")),
        "{files:?}"
    );
    assert!(
        output.contains("wandb.Api().runs is not available in a sweep run"),
        "{output}"
    );
}

#[test]
fn a_conditional_sweep_gives_a_program_only_its_active_parameters() {
    // conditional.py fails its trial if its argv or wandb.config holds a parameter its
    // optimizer does not use, or lacks one it does.
    let dir = workdir("prog-conditional");
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    let id = submit(
        &dir,
        &url,
        "program: conditional.py\nmethod: grid\nmetric: {name: loss, goal: minimize}\n\
         parameters:\n  optimizer: {values: [sgd, momentum, adam]}\n  \
         momentum: {values: [0.5, 0.9], when: {optimizer: momentum}}\n  \
         beta1: {values: [0.8, 0.9], when: {optimizer: adam}}\n  lr: {values: [0.1, 0.2]}\n",
    );
    let _w = program_worker(&url, &dir, 2, &[]);
    wait_for(
        &url,
        &id,
        Duration::from_secs(120),
        "the sweep to finish",
        done,
    );
    let lb = leaderboard(&url, &id);
    let rows = lb["trials"].as_array().unwrap();
    // sgd 1 + momentum 2 + adam 2, times 2 rates: 10 (of 3 × 2 × 2 × 2 = 24 combinations).
    assert_eq!(rows.len(), 10, "{lb}");
    for r in rows {
        assert_eq!(r["state"], "finished", "{r}");
        let p = r["params"].as_object().unwrap();
        let want: &[&str] = match p["optimizer"].as_str().unwrap() {
            "sgd" => &["lr", "optimizer"],
            "momentum" => &["lr", "momentum", "optimizer"],
            _ => &["beta1", "lr", "optimizer"],
        };
        assert_eq!(
            p.keys().map(String::as_str).collect::<Vec<_>>(),
            want,
            "{r}"
        );
        let d = trial(&url, &id, r["trial"].as_u64().unwrap());
        let cmd = d["command"].as_str().unwrap();
        assert_eq!(
            cmd.contains("--momentum"),
            p.contains_key("momentum"),
            "{cmd}"
        );
        assert_eq!(cmd.contains("--beta1"), p.contains_key("beta1"), "{cmd}");
    }
}

/// The trials on the Pareto front of `rows` (maximize `accuracy`, minimize `cost`), by hand.
fn non_dominated(rows: &[Value]) -> Vec<u64> {
    let v = |r: &Value, k: &str| r["metrics"][k].as_f64().unwrap();
    let mut out: Vec<u64> = rows
        .iter()
        .filter(|r| {
            !rows.iter().any(|o| {
                let (ao, co, ar, cr) = (
                    v(o, "accuracy"),
                    v(o, "cost"),
                    v(r, "accuracy"),
                    v(r, "cost"),
                );
                ao >= ar && co <= cr && (ao > ar || co < cr)
            })
        })
        .map(|r| r["trial"].as_u64().unwrap())
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn a_conditional_sweep_with_two_objectives_ranks_a_programs_trials_by_pareto_front() {
    // pareto.py fails its trial on any inactive parameter, and logs accuracy and cost.
    let dir = workdir("prog-pareto");
    let (_c, url) = serve(&dir.join("sweeps.db"), &[]);
    let id = submit(
        &dir,
        &url,
        "program: pareto.py\nmethod: bayes\nrun_cap: 16\nbayes: {startup_trials: 6}\n\
         metric:\n  - {name: accuracy, goal: maximize}\n  - {name: cost, goal: minimize}\n\
         parameters:\n  optimizer: {values: [sgd, momentum]}\n  \
         momentum: {min: 0.5, max: 0.99, when: {optimizer: momentum}}\n  \
         width: {values: [8, 16, 32, 64, 128, 256]}\n  \
         lr: {distribution: log_uniform_values, min: 0.0001, max: 0.1}\n",
    );
    let _w = program_worker(&url, &dir, 2, &[]);
    wait_for(
        &url,
        &id,
        Duration::from_secs(180),
        "the sweep to finish",
        done,
    );
    let lb = leaderboard(&url, &id);
    let rows = lb["trials"].as_array().unwrap();
    assert_eq!(rows.len(), 16, "{lb}");
    assert_eq!(
        lb["objectives"],
        serde_json::json!([{"name": "accuracy", "goal": "maximize"}, {"name": "cost", "goal": "minimize"}])
    );
    for r in rows {
        assert_eq!(r["state"], "finished", "{r}");
        let p = r["params"].as_object().unwrap();
        assert_eq!(
            p.contains_key("momentum"),
            p["optimizer"] == "momentum",
            "only active parameters: {r}"
        );
    }
    // Ranks follow the fronts; front 1 is exactly the non-dominated set, and the export lists it.
    let fronts: Vec<u64> = rows.iter().map(|r| r["front"].as_u64().unwrap()).collect();
    assert!(fronts.windows(2).all(|w| w[0] <= w[1]), "{fronts:?}");
    let ranks: Vec<u64> = rows.iter().map(|r| r["rank"].as_u64().unwrap()).collect();
    assert_eq!(ranks, (1..=16).collect::<Vec<u64>>());
    let mut on_front: Vec<u64> = rows
        .iter()
        .filter(|r| r["front"] == 1)
        .map(|r| r["trial"].as_u64().unwrap())
        .collect();
    on_front.sort_unstable();
    assert_eq!(on_front, non_dominated(rows), "{lb}");
    let mut listed: Vec<u64> = serde_json::from_value(lb["pareto_front"].clone()).unwrap();
    listed.sort_unstable();
    assert_eq!(listed, on_front);
    // Front 2 is the non-dominated set of the rest.
    let rest: Vec<Value> = rows.iter().filter(|r| r["front"] != 1).cloned().collect();
    let second: Vec<u64> = {
        let mut s: Vec<u64> = rest
            .iter()
            .filter(|r| r["front"] == 2)
            .map(|r| r["trial"].as_u64().unwrap())
            .collect();
        s.sort_unstable();
        s
    };
    assert_eq!(second, non_dominated(&rest));
    // The bayes model spread along the front: after its 6 random trials, more than one width.
    let widths: std::collections::BTreeSet<u64> = rows
        .iter()
        .filter(|r| r["trial"].as_u64().unwrap() > 6)
        .map(|r| r["params"]["width"].as_u64().unwrap())
        .collect();
    assert!(widths.len() > 1, "{widths:?}");
    // The table, the CSV and the report carry the front.
    let table = run("coordinator", &["leaderboard", &id, "--coordinator", &url]);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        table.contains("objectives accuracy (maximize), cost (minimize); ranked by Pareto front"),
        "{table}"
    );
    let head = table.lines().nth(1).unwrap_or_default();
    let cols: Vec<&str> = head.split_whitespace().collect();
    assert_eq!(
        &cols[..5],
        ["rank", "trial", "front", "accuracy", "cost"],
        "{table}"
    );
    let out = dir.join("report");
    run_ok_coordinator(&url, &["report", &id, "--out", out.to_str().unwrap()]);
    let svg = std::fs::read_to_string(out.join("pareto.svg")).expect("pareto.svg");
    assert!(
        svg.contains("Pareto front: ") && svg.contains("cost (lower is better)"),
        "{svg}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<th>front</th>") && html.contains("Ranked by Pareto front"));
    let e = dir.join("export");
    run_ok_coordinator(&url, &["export", &id, "--out", e.to_str().unwrap()]);
    let csv = std::fs::read_to_string(e.join("leaderboard.csv")).unwrap();
    assert!(csv.starts_with("rank,trial,state,front,"), "{csv}");
}
