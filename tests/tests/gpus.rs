//! Workers and their GPUs, on a machine without any: the inventory comes from a fake
//! `nvidia-smi` (`SWEEP_NVIDIA_SMI`), and what each worker registered is read back through
//! `coordinator workers`, the HTTP API and `/metrics` — also after a restart of the
//! coordinator, which reads the registrations from its store. Trials that ask for GPUs
//! (`program_options.gpus`) are checked through the environment their program sees.

use std::process::Stdio;
use std::time::{Duration, Instant};

use sweep_tests::*;

/// Two GPUs, the second split into two MIG devices.
const FAKE_SMI: &str = r#"#!/bin/sh
case "$1" in
  -L) printf 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa)\nGPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbb)\n  MIG 3g.20gb     Device  0: (UUID: MIG-b001)\n  MIG 3g.20gb     Device  1: (UUID: MIG-b002)\n' ;;
  *) printf '0, GPU-aaaa, NVIDIA H100 80GB HBM3, 81559\n1, GPU-bbbb, NVIDIA A100-SXM4-40GB, 40960\n' ;;
esac
"#;

fn fake_smi(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("nvidia-smi");
    std::fs::write(&p, FAKE_SMI).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A worker against `url` whose GPUs are those of the fake `smi` (narrowed by `cuda`, a
/// `CUDA_VISIBLE_DEVICES` of its own), with nothing of this process's GPU environment.
fn gpu_worker_cmd(url: &str, smi: &std::path::Path, cuda: Option<&str>) -> std::process::Command {
    let mut c = cmd("worker");
    c.args(["--coordinator", url])
        .env("SWEEP_NVIDIA_SMI", smi)
        .env_remove("CUDA_VISIBLE_DEVICES")
        .env_remove("NVIDIA_VISIBLE_DEVICES")
        .env_remove("SWEEP_GPUS")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(v) = cuda {
        c.env("CUDA_VISIBLE_DEVICES", v);
    }
    c
}

fn gpu_worker(url: &str, smi: &std::path::Path, cuda: Option<&str>, extra: &[&str]) -> Proc {
    let mut c = gpu_worker_cmd(url, smi, cuda);
    c.args(["--slots", "1"]).args(extra);
    Proc(c.spawn().expect("worker starts"))
}

/// `coordinator workers --json`, once `pred` holds of it.
fn workers_when(
    url: &str,
    what: &str,
    pred: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let out = run("coordinator", &["workers", "--json", "--coordinator", url]);
        if out.status.success() {
            let v = json_out(&out);
            let list = v.as_array().cloned().unwrap_or_default();
            if pred(&list) {
                return list;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}: {v}");
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ids(w: &serde_json::Value) -> Vec<String> {
    w["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn workers_register_their_gpus_mig_devices_and_cuda_visible_devices_included() {
    let dir = tempdir("gpus");
    let smi = fake_smi(&dir);
    let web = format!("127.0.0.1:{}", free_port());
    let store = dir.join("sweeps.db");
    let (coord, url) = serve(&store, &["--http-listen", &web]);
    // All the driver has (GPU 1 as its two MIG devices); what Slurm left visible (by UUID);
    // none asked for.
    let _a = gpu_worker(&url, &smi, None, &[]);
    let _b = gpu_worker(&url, &smi, Some("GPU-aaaa"), &[]);
    let _c = gpu_worker(&url, &smi, None, &["--gpus", "none"]);
    let list = workers_when(&url, "three workers", |l| l.len() == 3);
    let mut seen: Vec<Vec<String>> = list.iter().map(ids).collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            vec![],
            vec!["0".to_string(), "MIG-b001".into(), "MIG-b002".into()],
            vec!["GPU-aaaa".to_string()],
        ]
    );
    let all = list.iter().find(|w| ids(w).len() == 3).unwrap();
    assert_eq!(all["gpus"][0]["name"], "NVIDIA H100 80GB HBM3");
    assert_eq!(all["gpus"][0]["memory_mb"], 81559);
    assert_eq!(all["gpus"][1]["name"], "NVIDIA A100-SXM4-40GB MIG 3g.20gb");
    assert_eq!(all["gpus"][1]["index"], 1);
    let slurm = list.iter().find(|w| ids(w).len() == 1).unwrap();
    assert_eq!(slurm["gpus"][0]["index"], 0);
    assert_eq!(slurm["gpus"][0]["uuid"], "GPU-aaaa");
    // The table says it in words.
    let out = run_ok("coordinator", &["workers", "--coordinator", &url]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("1 × NVIDIA H100 80GB HBM3 (80 GiB): 0; 2 × NVIDIA A100-SXM4-40GB MIG 3g.20gb: MIG-b001, MIG-b002"),
        "{table}"
    );
    // The HTTP API and the metrics endpoint.
    let (code, head, body) = request(&web, "GET", "/api/v1/workers", None);
    assert_eq!(code, 200, "{head}");
    let api: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(api.as_array().unwrap().len(), 3);
    assert_eq!(sample(&scrape(&web), "sweep_gpus_connected"), 4.0);
    // The dashboard's workers page (drawn from that API in the browser).
    let (code, _, page) = request(&web, "GET", "/workers", None);
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&page).contains("/static/app.js"));

    // A restarted coordinator knows them from its store before they call again.
    drop(coord);
    let (_coord, url) = serve(&store, &[]);
    let list = workers_when(&url, "the stored workers", |l| l.len() == 3);
    let mut seen: Vec<usize> = list.iter().map(|w| ids(w).len()).collect();
    seen.sort();
    assert_eq!(seen, [0, 1, 3]);
}

#[test]
fn a_gpu_the_driver_does_not_have_is_refused_by_name() {
    let dir = tempdir("gpus-bad");
    let smi = fake_smi(&dir);
    let out = cmd("worker")
        .args(["--coordinator", "http://127.0.0.1:9", "--gpus", "0,7"])
        .env("SWEEP_NVIDIA_SMI", &smi)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no GPU \"7\"") && err.contains("0, MIG-b001, MIG-b002"),
        "{err}"
    );
    let out = cmd("worker").args(["--gpus", "0;1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("auto, none, or GPU indices"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two plain GPUs that report utilisation and memory when sampled.
const FAKE_SMI_TWO: &str = r#"#!/bin/sh
case "$1" in
  -L) printf 'GPU 0: Fake GPU (UUID: GPU-aaaa)\nGPU 1: Fake GPU (UUID: GPU-bbbb)\n' ;;
  --query-gpu=index,uuid,utilization.gpu,memory.used) printf '0, GPU-aaaa, 37, 1111\n1, GPU-bbbb, 73, 2222\n' ;;
  *) printf '0, GPU-aaaa, Fake GPU, 16384\n1, GPU-bbbb, Fake GPU, 16384\n' ;;
esac
"#;

/// A worker that runs `tests/programs/gpus.py` with the GPUs of `smi`; no `--slots`, so it
/// runs a trial per GPU.
fn gpu_program_worker(
    url: &str,
    dir: &std::path::Path,
    smi: &std::path::Path,
    cuda: Option<&str>,
) -> Proc {
    let mut c = gpu_worker_cmd(url, smi, cuda);
    c.args(["--allow-programs", "--quiet-programs", "--workdir"])
        .arg(dir)
        .env("SWEEP_TEST_MARKS", dir.join("marks"));
    Proc(c.spawn().expect("worker starts"))
}

/// Readies `dir` for `tests/programs/gpus.py`: the program, its marks folder and a fake
/// `nvidia-smi` with two GPUs (returned).
fn program_dir(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir.join("marks")).unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("programs/gpus.py"),
        dir.join("gpus.py"),
    )
    .unwrap();
    let smi = dir.join("nvidia-smi");
    std::fs::write(&smi, FAKE_SMI_TWO).unwrap();
    std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
    smi
}

/// What trial `t` of sweep `id` saw: (CUDA_VISIBLE_DEVICES, NVIDIA_VISIBLE_DEVICES).
fn seen(dir: &std::path::Path, id: &str, t: u64) -> (String, String) {
    let text = std::fs::read_to_string(dir.join("marks").join(format!("{id}-{t}.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    (
        v["cuda"].as_str().unwrap().into(),
        v["nvidia"].as_str().unwrap().into(),
    )
}

fn trial_json(url: &str, id: &str, t: u64) -> serde_json::Value {
    json_out(&run(
        "coordinator",
        &["trial", id, &t.to_string(), "--json", "--coordinator", url],
    ))
}

#[test]
fn each_trial_runs_with_the_gpus_leased_to_it_and_only_those() {
    let dir = tempdir("gpu-trials");
    let smi = program_dir(&dir);
    let web = format!("127.0.0.1:{}", free_port());
    let (_coord, url) = serve(&dir.join("sweeps.db"), &["--http-listen", &web]);

    // A sweep of two-GPU trials, and a worker with one GPU (Slurm gave it GPU-bbbb): it never
    // gets one, and the sweep says why.
    let two = submit(
        &dir,
        &url,
        "program: gpus.py\nmethod: grid\nmetric: {name: acc, goal: maximize}\n\
         program_options: {gpus: 2}\nparameters:\n  x: {value: 1}\n",
    );
    let one = gpu_program_worker(&url, &dir, &smi, Some("GPU-bbbb"));
    wait_for(&url, &two, Duration::from_secs(60), "the GPU notice", |v| {
        n(v, "running") == 0
            && v["notices"].as_array().is_some_and(|n| {
                n.iter().any(|n| {
                    n.as_str().is_some_and(|n| {
                        n.starts_with("waiting: no worker has 2 GPUs") && n.contains("at most 1")
                    })
                })
            })
    });
    drop(one);

    // A worker with both runs it on both.
    let both = gpu_program_worker(&url, &dir, &smi, None);
    wait_for(
        &url,
        &two,
        Duration::from_secs(120),
        "the two-GPU trial",
        |v| v["state"] == "finished",
    );
    assert_eq!(seen(&dir, &two, 1), ("0,1".to_string(), "0,1".to_string()));
    let t = trial_json(&url, &two, 1);
    assert_eq!(t["state"], "finished", "{t}");
    assert_eq!(t["gpus"], serde_json::json!(["0", "1"]));
    assert_eq!(t["metrics"]["gpu.0.util"], 37.0, "{t}");
    assert_eq!(t["metrics"]["gpu.1.memory_mb"], 2222.0, "{t}");

    // One-GPU trials: the same worker (no --slots: a slot per GPU) runs two at once, one on
    // each GPU.
    let per_gpu = submit(
        &dir,
        &url,
        "program: gpus.py\nmethod: grid\nmetric: {name: acc, goal: maximize}\n\
         program_options: {gpus: 1}\nparameters:\n  x: {values: [1, 2]}\n  together: {value: 2}\n",
    );
    wait_for(
        &url,
        &per_gpu,
        Duration::from_secs(180),
        "two one-GPU trials",
        |v| v["state"] == "finished",
    );
    let mut given = Vec::new();
    for t in 1..=2 {
        let (cuda, nvidia) = seen(&dir, &per_gpu, t);
        assert_eq!(cuda, nvidia);
        let j = trial_json(&url, &per_gpu, t);
        assert_eq!(j["gpus"], serde_json::json!([cuda.clone()]), "{j}");
        assert_eq!(
            j["metrics"]["together"], 1.0,
            "the two trials ran at once: {j}"
        );
        // Its own GPU's utilisation, numbered 0 as the program sees it.
        let util = if cuda == "0" { 37.0 } else { 73.0 };
        assert_eq!(j["metrics"]["gpu.0.util"], util, "{j}");
        given.push(cuda);
    }
    given.sort();
    assert_eq!(given, ["0", "1"]);

    // A trial that asks for none sees none of the worker's.
    let none = submit(
        &dir,
        &url,
        "program: gpus.py\nmethod: grid\nmetric: {name: acc, goal: maximize}\n\
         parameters:\n  x: {value: 1}\n",
    );
    wait_for(
        &url,
        &none,
        Duration::from_secs(120),
        "a trial without GPUs",
        |v| v["state"] == "finished",
    );
    assert_eq!(seen(&dir, &none, 1), (String::new(), "none".to_string()));
    assert!(trial_json(&url, &none, 1)["gpus"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(sample(&scrape(&web), "sweep_gpus_leased"), 0.0);
    drop(both);
}

#[test]
fn run_gives_each_local_worker_gpus_of_its_own_or_says_the_machine_has_too_few() {
    let dir = tempdir("gpu-run");
    let smi = program_dir(&dir);
    std::fs::write(
        dir.join("sweep.yaml"),
        "program: gpus.py\nmethod: grid\nmetric: {name: acc, goal: maximize}\n\
         program_options: {gpus: 1}\nparameters:\n  x: {values: [1, 2]}\n  together: {value: 2}\n",
    )
    .unwrap();
    let run_here = |smi: &std::path::Path| {
        cmd("coordinator")
            .args(["run", "sweep.yaml", "--store", "sweeps.db"])
            .current_dir(&dir)
            .env("SWEEP_NVIDIA_SMI", smi)
            .env("SWEEP_TEST_MARKS", dir.join("marks"))
            .env_remove("CUDA_VISIBLE_DEVICES")
            .output()
            .unwrap()
    };
    // No driver: nothing runs, and the error says why.
    let out = run_here(&dir.join("no-such-nvidia-smi"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("program_options.gpus: each trial asks for 1 GPU, and this machine has 0"),
        "{err}"
    );
    // Two GPUs: two local workers, a GPU each, their trials at the same time.
    let out = run_here(&smi);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("with 2 local workers"), "{stdout}");
    let mut given: Vec<String> = std::fs::read_dir(dir.join("marks"))
        .unwrap()
        .map(|m| {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(m.unwrap().path()).unwrap()).unwrap();
            v["cuda"].as_str().unwrap().to_string()
        })
        .collect();
    given.sort();
    assert_eq!(given, ["0", "1"]);
    let lb: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::fs::read_dir(dir.join("runs/sweep"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path()
                .join("leaderboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for t in lb["trials"].as_array().unwrap() {
        assert_eq!(t["metrics"]["together"], 1.0, "{t}");
    }
}
