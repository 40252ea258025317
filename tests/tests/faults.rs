//! DESIGN.md §7 with real processes: a worker killed mid-trial, the coordinator killed again and
//! again mid-sweep, a worker whose data files are corrupt. (SIGTERM drain is in `e2e.rs`, the
//! network partition in `partition.rs`.)

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use sweep_tests::{
    free_port, json_out, leaderboard, n, run, sample, scrape, serve, serve_at, submit,
    synthetic_grid, tempdir, trials, wait_for, worker, worker_with, Proc,
};

#[test]
fn a_worker_killed_mid_trial_has_its_trial_rerun_elsewhere() {
    let dir = tempdir("kill-worker");
    // A lease of 3 s (heartbeats every second): a slow runner's heartbeats still keep the
    // living worker's leases; only the killed worker's trial is taken as lost.
    let (_coord, url) = serve(&dir.join("sweeps.db"), &["--lease-ttl", "3"]);
    let id = submit(&dir, &url, &synthetic_grid(4, 5, 200));
    let mut a = worker(&url, 1);
    wait_for(&url, &id, Duration::from_secs(30), "a running trial", |s| {
        n(s, "running") == 1
    });
    let killed: u64 = trials(&leaderboard(&url, &id))
        .into_iter()
        .find(|(_, v)| v.0 == "running")
        .map(|(k, _)| k)
        .expect("the running trial on the leaderboard");
    a.kill9();
    let _b = worker(&url, 2);
    let out = run("coordinator", &["watch", &id, "--coordinator", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = trials(&leaderboard(&url, &id));
    assert_eq!(
        t.keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 3, 4],
        "every trial once: {t:?}"
    );
    assert!(t.values().all(|v| v.0 == "finished"), "{t:?}");
    assert!(
        t[&killed].1 >= 2,
        "the killed worker's trial ran again: {t:?}"
    );
    let d = json_out(&run(
        "coordinator",
        &[
            "trial",
            &id,
            &killed.to_string(),
            "--json",
            "--coordinator",
            &url,
        ],
    ));
    assert!(d["attempts"].as_u64().unwrap() >= 2, "{d}");
    assert_eq!(
        d["curve"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == "loss")
            .count(),
        5,
        "the second attempt's curve replaces the first: {d}"
    );
}

#[test]
fn the_coordinator_killed_again_and_again_loses_nothing() {
    let dir = tempdir("kill-coordinator");
    let store = dir.join("sweeps.db");
    let addr = format!("127.0.0.1:{}", free_port());
    let (mut coord, url) = serve_at(&addr, &store, &["--lease-ttl", "2"]);
    let id = submit(&dir, &url, &synthetic_grid(20, 4, 200));
    let _w1 = worker(&url, 2);
    let _w2 = worker(&url, 2);
    // Kill at moments drawn from the clock (printed, so a failure can be replayed by hand).
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut acknowledged: BTreeMap<u64, Option<f64>> = BTreeMap::new();
    // Whether some kill came while trials were still to finish (20 trials of 0.8 s on four
    // slots take at least 4 s; the first kill comes at most 1.2 s after the first result).
    let mut mid_sweep = false;
    // At least one result is acknowledged before the first kill: the test is about those.
    wait_for(
        &url,
        &id,
        Duration::from_secs(60),
        "a finished trial",
        |s| n(s, "finished") >= 1,
    );
    for round in 0..3 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let after = Duration::from_millis(300 + (seed >> 33) % 900);
        eprintln!("round {round}: killing the coordinator after {after:?}");
        std::thread::sleep(after);
        // What the coordinator has acknowledged just before the kill.
        for (k, v) in trials(&leaderboard(&url, &id)) {
            if v.0 == "finished" {
                acknowledged.insert(k, v.2);
            }
        }
        assert!(
            !acknowledged.is_empty(),
            "nothing was acknowledged before the kill"
        );
        mid_sweep |= acknowledged.len() < 20;
        coord.kill9();
        std::thread::sleep(Duration::from_millis(200));
        let (c, u) = serve_at(&addr, &store, &["--lease-ttl", "2"]);
        assert_eq!(u, url);
        coord = c;
        // Everything acknowledged before the kill is there after the restart.
        let now = trials(&leaderboard(&url, &id));
        for (k, v) in &acknowledged {
            let got = now
                .get(k)
                .unwrap_or_else(|| panic!("trial {k} lost: {now:?}"));
            assert_eq!(got.0, "finished", "trial {k}: {now:?}");
            assert_eq!(&got.2, v, "trial {k} changed its value");
        }
    }
    // The workers find the restarted coordinator on their own and the sweep completes.
    wait_for(
        &url,
        &id,
        Duration::from_secs(60),
        "the sweep to finish",
        |s| s["state"] == "finished",
    );
    let t = trials(&leaderboard(&url, &id));
    assert_eq!(
        t.keys().copied().collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>(),
        "trial numbers 1..=20, none reused or skipped: {t:?}"
    );
    assert!(t.values().all(|v| v.0 == "finished"), "{t:?}");
    assert!(mid_sweep, "the kills all came after the sweep ended");
    drop(coord);
}

#[test]
fn a_worker_with_corrupt_data_fails_its_trial_and_does_not_crash_loop() {
    let dir = tempdir("bad-data");
    let repo_data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
    let bad = dir.join("data/fashion-mnist");
    std::fs::create_dir_all(&bad).unwrap();
    for f in std::fs::read_dir(repo_data.join("fashion-mnist")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), bad.join(f.file_name())).unwrap();
    }
    // Truncate the training images to a few hundred bytes.
    let imgs = bad.join("train-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&imgs).unwrap();
    std::fs::write(&imgs, &bytes[..300]).unwrap();

    let (_coord, url) = serve(&dir.join("sweeps.db"), &[]);
    let id = submit(
        &dir,
        &url,
        "name: bad-data\nmethod: grid\nmlp: {train_samples: 500}\n\
         parameters:\n  epochs: {value: 1}\n  hidden_size: {values: [8, 16, 32]}\n",
    );
    let mut broken = worker_with(&url, 1, &["--data-dir", dir.join("data").to_str().unwrap()]);
    wait_for(&url, &id, Duration::from_secs(60), "a failed trial", |s| {
        n(s, "failed") == 1
    });
    let mut good: Proc = worker(&url, 2);
    let out = run("coordinator", &["watch", &id, "--coordinator", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lb = leaderboard(&url, &id);
    let t = trials(&lb);
    assert_eq!(t.len(), 3, "{t:?}");
    let failed: Vec<&Value> = lb["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "failed")
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "only the broken worker's first trial fails: {lb}"
    );
    let err = failed[0]["error"].as_str().unwrap();
    assert!(
        err.contains("data") && err.contains("train-images-idx3-ubyte.gz"),
        "the reason names the file: {err}"
    );
    assert_eq!(
        t.values().filter(|v| v.0 == "finished").count(),
        2,
        "the sweep goes on: {t:?}"
    );
    assert!(broken.alive(), "the broken worker is still up, pausing");
    assert!(good.alive());
    assert_eq!(broken.terminate(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_token_guards_clients_and_workers_and_is_never_logged() {
    let dir = tempdir("token");
    let token = "tok-5f2a9c71e0";
    let (_coord, url) = serve(&dir.join("sweeps.db"), &["--token", token]);
    let cfg = dir.join("sweep.yaml");
    std::fs::write(&cfg, synthetic_grid(3, 2, 0)).unwrap();
    // Without the token (or with a wrong one): refused, exit 2, the reason says why.
    for extra in [&[][..], &["--token", "nope"][..]] {
        let mut args = vec!["submit", cfg.to_str().unwrap(), "--coordinator", &url];
        args.extend_from_slice(extra);
        let out = run("coordinator", &args);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("token"), "{err}");
        assert!(!err.contains(token));
    }
    let out = sweep_tests::cmd("coordinator")
        .args(["submit", cfg.to_str().unwrap(), "--coordinator", &url])
        .env("SWEEP_TOKEN", token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
    // From a file (its first line), with no warning; typed on the command line, a warning
    // that others can read it in `ps`.
    let file = dir.join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let out = run(
        "coordinator",
        &[
            "status",
            &id,
            "--coordinator",
            &url,
            "--token-file",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
    let out = run(
        "coordinator",
        &["status", &id, "--coordinator", &url, "--token", token],
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: --token on the command line is visible") && !err.contains(token),
        "{err}"
    );
    // A worker with a wrong token stops at once with the reason (retrying cannot help).
    let bad = sweep_tests::cmd("worker")
        .args(["--coordinator", &url, "--token", "wrong"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("refused this worker") && err.contains("token"),
        "{err}"
    );
    // A worker with the token (from the environment, debug logging on) finishes the sweep.
    let log = dir.join("worker.log");
    let _w = Proc(
        sweep_tests::cmd("worker")
            .args(["--coordinator", &url, "--slots", "2"])
            .env("SWEEP_TOKEN", token)
            .env("RUST_LOG", "debug")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let out = sweep_tests::cmd("coordinator")
        .args(["watch", &id, "--coordinator", &url, "--token", token])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("registered"), "{text}");
    assert!(
        !text.contains(token),
        "the token leaked into the worker's debug log"
    );
}

#[test]
fn sigterm_mid_trial_hands_the_trial_back_and_exits_0() {
    let dir = tempdir("sigterm");
    let (_coord, url) = serve(&dir.join("sweeps.db"), &[]);
    let id = submit(&dir, &url, &synthetic_grid(2, 10, 300));
    let mut a = worker(&url, 1);
    wait_for(&url, &id, Duration::from_secs(30), "a running trial", |s| {
        n(s, "running") == 1
    });
    std::thread::sleep(Duration::from_millis(400));
    let t = Instant::now();
    assert_eq!(
        a.terminate(Duration::from_secs(10)),
        Some(0),
        "drained and exited 0"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "it did not wait for the trial's 3 s"
    );
    // The trial is back in the queue at once (no lease expiry: the default TTL is 30 s).
    wait_for(
        &url,
        &id,
        Duration::from_secs(3),
        "the trial handed back",
        |s| n(s, "running") == 0 && n(s, "queued") == 1,
    );
    let _b = worker(&url, 2);
    let out = run("coordinator", &["watch", &id, "--coordinator", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = trials(&leaderboard(&url, &id));
    assert_eq!(t.len(), 2);
    assert!(t.values().all(|v| v.0 == "finished"), "{t:?}");
}

#[test]
fn metrics_are_scraped_and_move_as_a_sweep_runs() {
    let dir = tempdir("metrics");
    let (cm, wm) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let (_coord, url) = serve(&dir.join("sweeps.db"), &["--metrics-listen", &cm]);
    let before = scrape(&cm);
    assert!(
        before.contains("# TYPE sweep_leases_granted counter"),
        "{before}"
    );
    assert_eq!(sample(&before, "sweep_leases_granted_total"), 0.0);
    let id = submit(&dir, &url, &synthetic_grid(4, 3, 50));
    let _w = worker_with(&url, 2, &["--metrics-listen", &wm]);
    let out = run("coordinator", &["watch", &id, "--coordinator", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = scrape(&cm);
    assert_eq!(sample(&after, "sweep_leases_granted_total"), 4.0, "{after}");
    assert_eq!(sample(&after, "sweep_trials{state=\"finished\"}"), 4.0);
    assert_eq!(
        sample(&after, "sweep_rpc_calls_total{method=\"Report\"}"),
        12.0
    );
    assert!(sample(&after, "sweep_rpc_calls_total{method=\"Lease\"}") >= 4.0);
    assert!(
        sample(
            &after,
            "sweep_rpc_duration_seconds_count{method=\"Complete\"}"
        ) >= 4.0
    );
    assert_eq!(
        sample(
            &after,
            &format!("sweep_sweep_progress_ratio{{sweep=\"{id}\",name=\"faults\"}}")
        ),
        1.0
    );
    assert_eq!(sample(&after, "sweep_workers_connected"), 1.0);
    // The sweep ends when the last Complete is committed; the worker's counters follow a moment
    // later, when that Complete's reply is back.
    let end = Instant::now() + Duration::from_secs(10);
    let w = loop {
        let w = scrape(&wm);
        let done = sample(
            &w,
            "sweep_worker_trials_completed_total{outcome=\"finished\"}",
        );
        if (done == 4.0 && sample(&w, "sweep_worker_trials_running") == 0.0) || Instant::now() > end
        {
            break w;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(sample(&w, "sweep_worker_epochs_total"), 12.0, "{w}");
    assert_eq!(
        sample(
            &w,
            "sweep_worker_trials_completed_total{outcome=\"finished\"}"
        ),
        4.0
    );
    assert_eq!(sample(&w, "sweep_worker_trials_running"), 0.0);
}

#[test]
fn watch_carries_on_across_a_coordinator_restart() {
    let dir = tempdir("watch-restart");
    let store = dir.join("sweeps.db");
    let addr = format!("127.0.0.1:{}", free_port());
    let (mut coord, url) = serve_at(&addr, &store, &["--lease-ttl", "2"]);
    let id = submit(&dir, &url, &synthetic_grid(8, 4, 150));
    let watcher = sweep_tests::cmd("coordinator")
        .args(["watch", &id, "--coordinator", &url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _w = worker(&url, 2);
    wait_for(&url, &id, Duration::from_secs(60), "two trials done", |s| {
        n(s, "finished") >= 2
    });
    coord.kill9();
    std::thread::sleep(Duration::from_millis(300));
    let (_c, u) = serve_at(&addr, &store, &["--lease-ttl", "2"]);
    assert_eq!(u, url);
    let out = watcher.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "watch failed:\n{stderr}");
    assert!(stderr.contains("reconnecting"), "{stderr}");
    assert!(stdout.contains(&format!("sweep {id} finished")), "{stdout}");
    // Every trial's end is printed once, those that ended while it was away included (a
    // running trial's lines say "running").
    for t in 1..=8 {
        let lines = stdout
            .lines()
            .filter(|l| l.starts_with(&format!("trial {t:>4} ")) && !l.contains(" running "))
            .count();
        assert_eq!(lines, 1, "trial {t}:\n{stdout}");
    }
}
