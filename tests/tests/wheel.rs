//! The Python wheels (`clients/python/build_wheels.py`), built from the binaries the tests
//! already use and installed into a fresh virtual environment with nothing of the build on
//! `PATH`: a W&B user's `wandb.sweep` + `wandb.agent` script and a `program:` sweep run from
//! what `pip install` put there, and the `wandb` package says when a real wandb is beside it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sweep_tests::{bin_dir, skip, tempdir, Proc};

/// A command of the venv with the environment a fresh shell would give it: nothing of this
/// build (no target dir on PATH, no SWEEP_*_BIN, no PYTHONPATH).
fn clean(program: &Path, path: &str) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("SWEEP_")
            || k.starts_with("CARGO")
            || k == "PYTHONPATH"
            || k == "VIRTUAL_ENV"
        {
            c.env_remove(&k);
        }
    }
    c.env("PATH", path);
    c
}

fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Builds both wheels and installs `sweep-hpo[wandb]` into a new venv; its folder, or None
/// (skipped) where Python cannot make one.
fn installed(dir: &Path) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = dir.join("venv");
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output();
    if !made.as_ref().is_ok_and(|o| o.status.success()) {
        skip(
            "SWEEP_REQUIRE_VENV",
            "wheel",
            "python3 -m venv cannot make an environment (Debian: apt install python3-venv)",
        );
        return None;
    }
    let dist = dir.join("dist");
    let built = ok(
        Command::new("python3")
            .arg(root.join("clients/python/build_wheels.py"))
            .arg("--bin-dir")
            .arg(bin_dir())
            .arg("--out")
            .arg(&dist)
            .output()
            .unwrap(),
        "build_wheels.py",
    );
    assert_eq!(built.lines().count(), 2, "two wheels: {built}");
    // Offline, from the folder: pip resolves the extra to the second wheel.
    ok(
        clean(&venv.join("bin/pip"), "/usr/bin:/bin")
            .args(["install", "--quiet", "--no-index", "--find-links"])
            .arg(&dist)
            .arg("sweep-hpo[wandb]")
            .output()
            .unwrap(),
        "pip install sweep-hpo[wandb]",
    );
    Some(venv)
}

/// `coordinator serve` from the venv; its URL.
fn serve(venv: &Path, store: &Path) -> (Proc, String) {
    let mut c = clean(&venv.join("bin/coordinator"), "/usr/bin:/bin");
    c.args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(store);
    sweep_tests::serve_command(c)
}

const DRIVER: &str = r#"
import wandb

config = {
    "method": "grid",
    "metric": {"name": "val_loss", "goal": "minimize"},
    "parameters": {"lr": {"values": [0.1, 0.01, 0.001]}, "layers": {"value": 2}},
}

def train():
    with wandb.init(project="from-pip") as run:
        run.name = "lr_%s" % wandb.config.lr
        for epoch in range(3):
            wandb.log({"epoch": epoch, "val_loss": wandb.config.lr * (3 - epoch)})

sweep_id = wandb.sweep(config, project="from-pip")
wandb.agent(sweep_id, function=train, count=3)
print(sweep_id)
"#;

const PROGRAM: &str = r#"
import argparse, sys
import wandb

p = argparse.ArgumentParser()
p.add_argument("--rate", type=float)
p.add_argument("--epochs", type=int)
a = p.parse_args()
# The venv's python runs this, though the venv is not on PATH.
if sys.prefix == sys.base_prefix:
    sys.exit("not the venv's python: " + sys.executable)
run = wandb.init()
for e in range(a.epochs):
    wandb.log({"epoch": e, "score": a.rate * (e + 1)})
"#;

#[test]
fn pip_install_gives_the_programs_and_wandb_a_w_and_b_script_and_a_program_sweep_run() {
    let dir = tempdir("wheel");
    let Some(venv) = installed(&dir) else { return };
    for program in ["coordinator", "worker"] {
        let path = venv.join("bin").join(program);
        let version = ok(
            clean(&path, "/usr/bin:/bin")
                .arg("--version")
                .output()
                .unwrap(),
            program,
        );
        assert!(version.starts_with(program), "{version}");
    }

    // wandb.sweep + wandb.agent, run by the venv's python with the venv not even on PATH: the
    // programs are found beside the interpreter.
    let (mut server, url) = serve(&venv, &dir.join("sweeps.db"));
    std::fs::write(dir.join("driver.py"), DRIVER).unwrap();
    let out = clean(&venv.join("bin/python"), "/usr/bin:/bin")
        .arg(dir.join("driver.py"))
        .current_dir(&dir)
        .env("SWEEP_COORDINATOR", &url)
        .output()
        .unwrap();
    let id = ok(out, "driver.py")
        .trim()
        .lines()
        .last()
        .unwrap()
        .to_string();
    let lb = ok(
        clean(&venv.join("bin/coordinator"), "/usr/bin:/bin")
            .args(["leaderboard", &id, "--json", "--coordinator", &url])
            .output()
            .unwrap(),
        "leaderboard",
    );
    let lb: serde_json::Value = serde_json::from_str(&lb).unwrap();
    let rows = lb["trials"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{lb}");
    assert!(rows.iter().all(|r| r["state"] == "finished"), "{lb}");
    assert_eq!(rows[0]["params"]["lr"], 0.001, "{lb}");
    assert_eq!(rows[0]["name"], "lr_0.001", "{lb}");
    server.terminate(std::time::Duration::from_secs(30));

    // A program sweep with the venv's `coordinator run`: the script imports wandb and runs
    // with the venv's python.
    let work = dir.join("project");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("train.py"), PROGRAM).unwrap();
    std::fs::write(
        work.join("sweep.yaml"),
        "name: from-pip-program\nprogram: train.py\nmethod: grid\n\
         metric: {name: score, goal: maximize}\n\
         parameters:\n  rate: {values: [1, 2]}\n  epochs: {value: 3}\n",
    )
    .unwrap();
    let out = clean(&venv.join("bin/coordinator"), "/usr/bin:/bin")
        .args(["run", "sweep.yaml", "--workers", "1"])
        .current_dir(&work)
        .output()
        .unwrap();
    let board = ok(out, "coordinator run");
    assert!(board.contains("rate"), "{board}");
    let results = std::fs::read_dir(work.join("runs/from-pip-program"))
        .unwrap()
        .next()
        .expect("the run's folder")
        .unwrap()
        .path();
    let lb: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join("leaderboard.json")).unwrap()).unwrap();
    let rows = lb["trials"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{lb}");
    assert_eq!(rows[0]["params"]["rate"], 2, "{lb}");
    assert_eq!(rows[0]["metrics"]["score"], 6.0, "{lb}");

    // W&B's own wandb beside ours: importing says so (its metadata is enough to tell).
    let site = std::fs::read_dir(venv.join("lib"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("site-packages");
    let quiet = clean(&venv.join("bin/python"), "/usr/bin:/bin")
        .args(["-c", "import wandb"])
        .output()
        .unwrap();
    assert!(
        quiet.status.success() && quiet.stderr.is_empty(),
        "{quiet:?}"
    );
    // sweep_model is installed; it names what it lacks in a venv without numpy.
    let model = clean(&venv.join("bin/python"), "/usr/bin:/bin")
        .args(["-c", "import sweep_model"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&model.stderr)
            .contains("sweep_model needs numpy: pip install numpy"),
        "{model:?}"
    );
    let real = site.join("wandb-0.19.1.dist-info");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::write(
        real.join("METADATA"),
        "Metadata-Version: 2.1\nName: wandb\nVersion: 0.19.1\n",
    )
    .unwrap();
    let out = clean(&venv.join("bin/python"), "/usr/bin:/bin")
        .args(["-c", "import wandb"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("W&B's own wandb 0.19.1 is installed in the same environment")
            && err.contains("pip uninstall sweep-hpo-wandb"),
        "{err}"
    );
}
