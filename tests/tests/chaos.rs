//! The chaos soak: workers and the coordinator SIGKILLed at random while sweeps run and a
//! `watch` follows them; then every trial must be finished exactly once and every Complete a
//! worker saw acknowledged must be in the store.
//!
//! `cargo test` runs it for 20 s. The soak (docs/RELIABILITY.md has a 10-minute run):
//!
//! ```sh
//! SWEEP_CHAOS_SECONDS=600 cargo test --release -p sweep-tests --test chaos -- --nocapture
//! ```
//!
//! `SWEEP_CHAOS_SEED` replays a run's choices (its seed is printed).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use sweep_tests::{
    cmd, free_port, leaderboard, run, serve_at, synthetic_grid, tempdir, trials, wait_for, Proc,
};

const WORKERS: usize = 3;
const POINTS: usize = 200;

/// xorshift64*: enough randomness for choosing victims, and replayable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn start_worker(url: &str, log: &std::path::Path) -> Proc {
    let file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Proc(
        cmd("worker")
            .args(["--coordinator", url, "--slots", "2", "--log-format", "json"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap(),
    )
}

fn start_watch(url: &str, id: &str) -> Proc {
    Proc(
        cmd("coordinator")
            .args(["watch", id, "--coordinator", url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Submits the next sweep; `None` while the coordinator is down.
fn try_submit(dir: &std::path::Path, url: &str, k: usize) -> Option<String> {
    let cfg = dir.join(format!("sweep-{k}.yaml"));
    std::fs::write(&cfg, synthetic_grid(POINTS, 3, 20)).unwrap();
    let out = run(
        "coordinator",
        &["submit", cfg.to_str().unwrap(), "--coordinator", url],
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The sweep's state from `status`, or `None` while the coordinator is down.
fn state(url: &str, id: &str) -> Option<String> {
    let out = run(
        "coordinator",
        &["status", id, "--json", "--coordinator", url],
    );
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let v = v.get(0).cloned().unwrap_or(v);
    v["state"].as_str().map(str::to_string)
}

/// Every (sweep, trial) → attempts whose Finished completion a worker saw accepted.
fn acknowledged(logs: &[std::path::PathBuf]) -> BTreeMap<(String, u64), BTreeSet<u64>> {
    let mut acks: BTreeMap<(String, u64), BTreeSet<u64>> = BTreeMap::new();
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        // A worker killed mid-line leaves a partial last line: it does not parse and is skipped.
        for line in text.lines().filter(|l| l.contains("trial completed")) {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if v["fields"]["outcome"] != "Finished" {
                continue;
            }
            let span = &v["span"];
            if let (Some(s), Some(t), Some(a)) = (
                span["sweep"].as_str(),
                span["trial"].as_u64(),
                span["attempt"].as_u64(),
            ) {
                acks.entry((s.to_string(), t)).or_default().insert(a);
            }
        }
    }
    acks
}

#[test]
fn random_kills_of_workers_and_the_coordinator_lose_nothing_acknowledged() {
    let seconds: u64 = std::env::var("SWEEP_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("SWEEP_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("chaos: {seconds} s, seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempdir("chaos");
    let store = dir.join("s.db");
    let listen = format!("127.0.0.1:{}", free_port());
    let args = ["--lease-ttl", "2"];
    let (mut coord, url) = serve_at(&listen, &store, &args);
    let logs: Vec<_> = (0..WORKERS)
        .map(|i| dir.join(format!("worker-{i}.log")))
        .collect();
    let mut workers: Vec<Proc> = logs.iter().map(|l| start_worker(&url, l)).collect();
    let mut sweeps = vec![try_submit(&dir, &url, 0).expect("the first submit")];
    let mut watcher = start_watch(&url, &sweeps[0]);
    let (mut worker_kills, mut coord_kills, mut watch_restarts) = (0, 0, 0);
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(300 + rng.below(1700)));
        if rng.below(4) == 0 {
            coord.kill9();
            coord = serve_at(&listen, &store, &args).0;
            coord_kills += 1;
        } else {
            let i = rng.below(WORKERS as u64) as usize;
            workers[i].kill9();
            workers[i] = start_worker(&url, &logs[i]);
            worker_kills += 1;
        }
        let last = sweeps.last().unwrap().clone();
        if state(&url, &last).as_deref() == Some("finished") {
            if let Some(id) = try_submit(&dir, &url, sweeps.len()) {
                sweeps.push(id);
            }
        }
        // `watch` ends with its sweep (it rides out the coordinator's kills): follow the newest.
        if !watcher.alive() {
            watcher = start_watch(&url, sweeps.last().unwrap());
            watch_restarts += 1;
        }
    }
    // The chaos stops; everything submitted must finish.
    for id in &sweeps {
        wait_for(
            &url,
            id,
            Duration::from_secs(600),
            "the sweep to finish",
            |v| v["state"] == "finished",
        );
    }
    for w in &mut workers {
        w.terminate(Duration::from_secs(30));
    }
    drop(watcher);
    let acks = acknowledged(&logs);
    let mut finished = 0;
    for id in &sweeps {
        let t = trials(&leaderboard(&url, id));
        assert_eq!(t.len(), POINTS, "sweep {id}: {t:?}");
        for (n, (state, attempts, _)) in &t {
            assert_eq!(state, "finished", "sweep {id} trial {n}");
            if let Some(acked) = acks.get(&(id.clone(), *n)) {
                // Finished once: no two attempts were both acknowledged, and the one that was
                // is the one the store holds.
                assert_eq!(
                    acked.len(),
                    1,
                    "sweep {id} trial {n} acknowledged twice: {acked:?}"
                );
                assert!(
                    acked.contains(attempts),
                    "sweep {id} trial {n}: store has attempt {attempts}, acknowledged {acked:?}"
                );
            }
            finished += 1;
        }
    }
    let acked: usize = acks.keys().filter(|(s, _)| sweeps.contains(s)).count();
    eprintln!(
        "chaos: {coord_kills} coordinator and {worker_kills} worker SIGKILLs, {watch_restarts} watch restarts; {} sweeps, {finished} trials finished once each, {acked} acknowledged completions all in the store",
        sweeps.len()
    );
    assert!(acked > 0, "no completion was acknowledged");
}
