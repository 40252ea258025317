//! The web dashboard in a real browser: Debian's chromium, headless, driven by playwright-core
//! (tests/browser/dashboard.mjs) against a coordinator with a token, a real MLP sweep and a
//! worker. The browser enters the token, opens the sweep, resumes it, sees rows appear and
//! curves grow, sees the connection lost while this test kills the coordinator and live again
//! when it is back, downloads the leaderboard, pauses the sweep and opens a trial.
//!
//! Needs `node`, `chromium` and `npm ci --prefix tests/browser` (.ci/run does all three). Where
//! one is missing the test prints SKIPPED and passes, unless SWEEP_REQUIRE_BROWSER=1 (set by
//! .ci/run), which makes it fail instead. SWEEP_DASHBOARD_SHOTS=DIR keeps screenshots.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sweep_tests::{free_port, json_out, run, serve_at, tempdir, worker_with};

/// What the browser test needs, or why it cannot run.
fn browser_tools() -> Result<(PathBuf, PathBuf), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Err(format!(
            "{} not found (apt-get install chromium)",
            chromium.display()
        ));
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err("node not found (apt-get install nodejs npm)".into());
    }
    if !root.join("node_modules/playwright-core").exists() {
        return Err(format!(
            "{}/node_modules/playwright-core missing (npm ci --prefix tests/browser)",
            root.display()
        ));
    }
    Ok((root.join("dashboard.mjs"), chromium))
}

#[test]
fn the_dashboard_follows_a_live_sweep_in_a_browser() {
    let (script, chromium) = match browser_tools() {
        Ok(t) => t,
        Err(why) => {
            sweep_tests::skip(
                "SWEEP_REQUIRE_BROWSER",
                "the_dashboard_follows_a_live_sweep_in_a_browser",
                &why,
            );
            return;
        }
    };
    let dir = tempdir("dashboard");
    let store = dir.join("sweeps.db");
    let listen = format!("127.0.0.1:{}", free_port());
    let web = format!("127.0.0.1:{}", free_port());
    let token = "dash-token-5521";
    let args = ["--http-listen", web.as_str(), "--token", token];
    let (mut coord, url) = serve_at(&listen, &store, &args);

    // A real sweep, far longer than the test: it is paused before any worker comes, the
    // browser resumes it and pauses it again.
    let cfg = dir.join("s.yaml");
    std::fs::write(
        &cfg,
        "name: browser\nmethod: random\nrun_cap: 300\nseed: 11\nmlp: {train_samples: 30000}\n\
         parameters:\n  epochs: {value: 30}\n  hidden_size: {values: [16, 32]}\n  \
         optimizer: {values: [adam, nadam]}\n  \
         learning_rate: {distribution: log_uniform_values, min: 0.0005, max: 0.005}\n",
    )
    .unwrap();
    let auth = ["--coordinator", url.as_str(), "--token", token];
    let out = run(
        "coordinator",
        &[&["submit", cfg.to_str().unwrap()][..], &auth].concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = run(
        "coordinator",
        &[&["pause", id.as_str()][..], &auth].concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _w = worker_with(&url, 2, &["--token", token]);

    let steps = dir.join("steps");
    std::fs::create_dir_all(&steps).unwrap();
    let log = dir.join("browser.log");
    let mut node = Command::new("node");
    node.arg(&script)
        .args([format!("http://{web}"), id.clone(), token.to_string()])
        .arg(&steps)
        .env("CHROMIUM", &chromium)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            std::fs::File::options().append(true).open(&log).unwrap(),
        ));
    if let Some(shots) = std::env::var_os("SWEEP_DASHBOARD_SHOTS") {
        std::fs::create_dir_all(&shots).unwrap();
        node.arg(shots);
    }
    let mut child = node.spawn().expect("node starts");

    // Serve the browser's requests to kill and restart the coordinator, until it is done.
    let end = Instant::now() + Duration::from_secs(600);
    let mut killed = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!(
                "the browser test ran over 600 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if !killed && steps.join("kill").exists() {
            killed = true;
            coord.kill9();
            // Long enough for the page to see the loss and retry at least once.
            std::thread::sleep(Duration::from_millis(1500));
            coord = serve_at(&listen, &store, &args).0;
            std::fs::write(steps.join("restarted"), "").unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let printed = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("{printed}");
    assert!(status.success(), "the browser test failed:\n{printed}");
    assert!(
        killed,
        "the browser never asked for the coordinator restart"
    );
    assert!(printed.contains("every step passed"), "{printed}");

    // The click on Pause reached the coordinator.
    let s = json_out(&run(
        "coordinator",
        &[&["status", id.as_str(), "--json"][..], &auth].concat(),
    ));
    let s = if s.is_array() { s[0].clone() } else { s };
    assert_eq!(s["state"], "paused", "{s}");
    assert!(
        s["finished"].as_u64().unwrap() + s["running"].as_u64().unwrap() >= 2,
        "{s}"
    );
}
