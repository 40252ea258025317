//! A trial across two workers (a gang, `program_options.nodes: 2`), each worker a host of its
//! own: network namespaces joined through the coordinator's, which routes between them. The
//! two ranks of `tests/programs/gang.py` meet at rank 0's MASTER_ADDR:MASTER_PORT and exchange
//! a message; a member killed mid-trial ends the whole attempt, and the trial runs again on a
//! fresh gang.
//!
//! Needs `ip` (iproute2) and the right to make namespaces (root or CAP_NET_ADMIN); where they
//! cannot be made the test says so on stderr and passes without running.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use sweep_tests::netns::{client, in_ns, json, serve_in, topology_or_skip, until, worker_id};
use sweep_tests::{tempdir, Proc};

/// A worker on host `ns` (link `k`) that runs programs in `dir`, logging JSON to `log`.
fn gang_worker(ns: &str, k: usize, dir: &Path, log: &Path) -> Proc {
    Proc(
        in_ns(ns, "worker")
            .args(["--coordinator", &format!("http://10.77.{k}.1:50051")])
            .args(["--slots", "1", "--gpus", "none", "--log-format", "json"])
            .args(["--allow-programs", "--quiet-programs", "--workdir"])
            .arg(dir)
            .env("SWEEP_TEST_MARKS", dir.join("marks"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("worker starts"),
    )
}

#[test]
fn a_trial_runs_on_two_hosts_that_meet_at_rank_0_and_runs_again_when_a_member_dies() {
    let tag = format!("g{}", std::process::id() % 100_000);
    let Some(ns) = topology_or_skip(
        &tag,
        3,
        true,
        "a_trial_runs_on_two_hosts_that_meet_at_rank_0_and_runs_again_when_a_member_dies",
    ) else {
        return;
    };
    let c = ns.0[0].clone();
    let dir = tempdir("gangs");
    std::fs::create_dir_all(dir.join("marks")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("programs/gang.py"),
        dir.join("gang.py"),
    )
    .unwrap();
    let (_coord, local) = serve_in(&c, &dir.join("sweeps.db"), 2);
    let cfg = dir.join("sweep.yaml");
    std::fs::write(
        &cfg,
        "program: gang.py\nmethod: grid\nmetric: {name: acc, goal: maximize}\nmax_attempts: 3\n\
         program_options: {nodes: 2}\nparameters:\n  x: {value: 1}\n  hold: {value: 600}\n",
    )
    .unwrap();
    let out = client(&c, local, &["submit", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let trial = || json(&client(&c, local, &["trial", &id, "1", "--json"]));

    // Two workers on two hosts: the trial's two ranks, which find each other.
    let logs: Vec<_> = (1..=3).map(|k| dir.join(format!("w{k}.log"))).collect();
    let mut workers: Vec<Option<Proc>> = (1..=2)
        .map(|k| Some(gang_worker(&ns.0[k], k, &dir, &logs[k - 1])))
        .collect();
    let marks = dir.join("marks");
    until(
        "the two ranks of attempt 1 to meet",
        Duration::from_secs(90),
        || marks.join("a1-r0").exists() && marks.join("a1-r1").exists(),
    );
    let read = |name: &str| std::fs::read_to_string(marks.join(name)).unwrap();
    assert_eq!(read("a1-r0"), "rank 1 of 2");
    assert_eq!(read("a1-r1"), "hello from rank 0");
    let t = trial();
    assert_eq!(t["state"], "running", "{t}");
    let rank0 = t["worker"].as_str().unwrap().to_string();
    let rank1 = t["gang"][0].as_str().unwrap().to_string();
    assert_ne!(rank0, rank1);
    let ids: Vec<Option<String>> = logs[..2].iter().map(|l| worker_id(l)).collect();
    let member = ids
        .iter()
        .position(|i| i.as_deref() == Some(rank1.as_str()))
        .expect("rank 1 is one of the two workers");

    // Rank 1's worker dies (its program with it); a third host joins.
    workers[member] = None;
    let _third = gang_worker(&ns.0[3], 3, &dir, &logs[2]);
    until("the sweep to finish", Duration::from_secs(120), || {
        let v = json(&client(&c, local, &["status", &id, "--json"]));
        let v = v.get(0).cloned().unwrap_or(v);
        v["state"] == "finished"
    });
    let t = trial();
    assert_eq!(t["state"], "finished", "{t}");
    assert_eq!(t["attempts"], 2, "{t}");
    assert_eq!(t["metrics"]["ranks_heard"], 1.0, "{t}");
    assert_eq!(read("a2-r0"), "rank 1 of 2");
    assert_eq!(read("a2-r1"), "hello from rank 0");
    // Attempt 1 ended for the whole gang, named by the member whose lease expired; the
    // fresh gang did not include the dead worker.
    let history: Vec<Value> = t["attempt_history"].as_array().cloned().unwrap_or_default();
    assert_eq!(history.len(), 2, "{t}");
    assert!(
        history[0]["ending"]
            .as_str()
            .unwrap_or("")
            .contains("lease expired"),
        "{t}"
    );
    assert_ne!(t["worker"].as_str().unwrap(), rank1, "{t}");
    drop(workers);
}

#[test]
fn run_on_one_machine_makes_gangs_of_its_local_workers() {
    let dir = tempdir("gangs-run");
    std::fs::create_dir_all(dir.join("marks")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("programs/gang.py"),
        dir.join("gang.py"),
    )
    .unwrap();
    std::fs::write(
        dir.join("sweep.yaml"),
        "program: gang.py\nmethod: grid\nmetric: {name: acc, goal: maximize}\n\
         program_options: {nodes: 2}\nparameters:\n  x: {values: [1, 2]}\n",
    )
    .unwrap();
    let run_here = |workers: &str| {
        sweep_tests::cmd("coordinator")
            .args([
                "run",
                "sweep.yaml",
                "--store",
                "sweeps.db",
                "--workers",
                workers,
            ])
            .current_dir(&dir)
            .env("SWEEP_TEST_MARKS", dir.join("marks"))
            .output()
            .unwrap()
    };
    let out = run_here("1");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("each trial runs on 2 workers at once, and run starts 1 local worker"),
        "{err}"
    );
    let out = run_here("2");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 finished"), "{stdout}");
    let read = |name: &str| std::fs::read_to_string(dir.join("marks").join(name)).unwrap();
    assert_eq!(read("a1-r0"), "rank 1 of 2");
    assert_eq!(read("a1-r1"), "hello from rank 0");
}
