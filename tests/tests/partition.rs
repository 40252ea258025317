//! A worker cut off by a network partition, with the coordinator and two workers as separate
//! hosts: each in its own network namespace, the workers joined to the coordinator's namespace
//! by veth pairs. One worker's link goes down while it trains, its lease expires and the trial
//! is re-run by the other worker; when the link comes back, its late Report is answered
//! "abandon" (stale attempt), it drops the trial, takes new work, and no result is counted twice.
//!
//! Needs `ip` (iproute2) and the right to make namespaces (root or CAP_NET_ADMIN); where they
//! cannot be made the test says so on stderr and passes without running.

use std::process::Stdio;
use std::time::Duration;

use sweep_tests::netns::{
    client, in_ns, ip, json, serve_in, topology_or_skip, until as wait_for, worker_id,
};
use sweep_tests::{tempdir, Proc};

#[test]
fn a_partitioned_worker_is_fenced_when_it_comes_back() {
    let tag = format!("{}", std::process::id() % 100_000);
    let Some(ns) = topology_or_skip(
        &tag,
        2,
        false,
        "a_partitioned_worker_is_fenced_when_it_comes_back",
    ) else {
        return;
    };
    let (c, w1, w2) = (ns.0[0].clone(), ns.0[1].clone(), ns.0[2].clone());
    let dir = tempdir("partition");
    let (_coord, local) = serve_in(&c, &dir.join("sweeps.db"), 1);
    let cfg = dir.join("sweep.yaml");
    std::fs::write(
        &cfg,
        "name: partition\nmethod: grid\ntrainer: synthetic\nmax_attempts: 5\n\
         synthetic: {function: quadratic, epochs: 8, epoch_ms: 250}\n\
         parameters:\n  x: {values: [1, 2, 3, 4, 5, 6]}\n",
    )
    .unwrap();
    let out = client(&c, local, &["submit", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let status = || {
        let v = json(&client(&c, local, &["status", &id, "--json"]));
        v.get(0).cloned().unwrap_or(v)
    };

    // Worker A, on its own host, takes the first trial.
    let log_a = dir.join("a.log");
    let mut a = Proc(
        in_ns(&w1, "worker")
            .args(["--coordinator", "http://10.77.1.1:50051", "--slots", "1"])
            .args(["--log-format", "json"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_a).unwrap())
            .spawn()
            .expect("worker A starts"),
    );
    wait_for("worker A's first trial", Duration::from_secs(20), || {
        status()["running"] == 1
    });
    std::thread::sleep(Duration::from_millis(400));
    let a_id = worker_id(&log_a).expect("worker A registered");

    // Cut A off; B (another host) joins; A's lease expires and its trial is re-run by B.
    ip(&["-n", &c, "link", "set", &format!("vc1{tag}"), "down"]).unwrap();
    let _b = Proc(
        in_ns(&w2, "worker")
            .args(["--coordinator", "http://10.77.2.1:50051", "--slots", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("worker B starts"),
    );
    let trial1 = || json(&client(&c, local, &["trial", &id, "1", "--json"]));
    wait_for("trial 1's second attempt", Duration::from_secs(30), || {
        trial1()["attempts"].as_u64() >= Some(2)
    });

    // Bring A back while the sweep still has work.
    ip(&["-n", &c, "link", "set", &format!("vc1{tag}"), "up"]).unwrap();
    wait_for("the sweep to finish", Duration::from_secs(90), || {
        status()["state"] == "finished"
    });
    let log = std::fs::read_to_string(&log_a).unwrap();
    assert!(
        log.contains("attempt is stale; dropping it"),
        "A's late Report was answered 'abandon':\n{log}"
    );
    assert!(a.alive(), "A stays up after being fenced");

    let lb = json(&client(&c, local, &["leaderboard", &id, "--json"]));
    let rows = lb["trials"].as_array().unwrap();
    let mut numbers: Vec<u64> = rows.iter().map(|t| t["trial"].as_u64().unwrap()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, vec![1, 2, 3, 4, 5, 6], "each trial once: {lb}");
    assert!(rows.iter().all(|t| t["state"] == "finished"), "{lb}");
    let t1 = rows.iter().find(|t| t["trial"] == 1).unwrap();
    assert_ne!(
        t1["worker"],
        a_id.as_str(),
        "trial 1 counted from B's attempt"
    );
    assert!(t1["attempts"].as_u64() >= Some(2));
    let curve = trial1()["curve"].clone();
    let losses = curve
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "loss")
        .count();
    assert_eq!(
        losses, 8,
        "one attempt's curve, not A's and B's mixed: {curve}"
    );
    assert!(
        rows.iter().any(|t| t["worker"] == a_id.as_str()),
        "A took new work after coming back: {lb}"
    );
}
