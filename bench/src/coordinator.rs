//! `sweep-bench coordinator`: end-to-end throughput of the coordinator with its durable store.
//!
//! Starts `coordinator serve` on a loopback port with a fresh SQLite store, N `worker`
//! processes with S slots of the synthetic trainer, submits a random sweep of T trials (E
//! epochs each, no sleep), and measures trials/s from submit to the sweep's end. Beside it a
//! probe client in this process runs the same lease → report × E → complete loop and records
//! each call's latency under that load. With `python3 -c "import optuna"` working, it also runs
//! Optuna with SQLite storage and 2 processes on the same task (python/
//! optuna_throughput.py) and prints the ratio.

use anyhow::{anyhow, Result};

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use sweep_proto::pb;

/// Measure trials/s and Lease/Report/Complete latency of a coordinator under load.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Trials in the sweep
    #[arg(long, default_value_t = 4000)]
    pub(crate) trials: u64,
    /// Worker processes
    #[arg(long, default_value_t = 2)]
    pub(crate) workers: usize,
    /// Slots per worker
    #[arg(long, default_value_t = 8)]
    pub(crate) slots: usize,
    /// Epochs (reports) per trial
    #[arg(long, default_value_t = 5)]
    pub(crate) epochs: u64,
    /// Also run the sweep with this many `watch` streams open and compare
    #[arg(long, default_value_t = 0)]
    pub(crate) watchers: usize,
    /// Runs (pairs of runs, with observers) to take the median of
    #[arg(long, default_value_t = 1)]
    pub(crate) repeat: usize,
    /// Also run the sweep with this many dashboard pages open (simulated: the page's event
    /// stream and the requests it makes) and compare
    #[arg(long, default_value_t = 0)]
    pub(crate) pages: usize,
    /// Skip the Optuna comparison
    #[arg(long)]
    pub(crate) no_reference: bool,
    /// After the first run, kill the coordinator and start it again on the sweep's store:
    /// time until it serves, its memory, and the leaderboard's and the dashboard's answers
    #[arg(long)]
    pub(crate) restart: bool,
    /// Leave the stores in place (their directory is printed) to look at them afterwards,
    /// e.g. with `coordinator serve --store … --http-listen …`
    #[arg(long)]
    pub(crate) keep: bool,
    /// Give the sweep this stopping rule (hyperband, asha or median), decided on every report
    #[arg(long, value_name = "TYPE", value_parser = ["hyperband", "asha", "median"])]
    pub(crate) early_terminate: Option<String>,
}

/// One run's figures.
struct Throughput {
    secs: f64,
    rate: f64,
    info: pb::SweepInfo,
    probe_trials: u64,
    lease_ms: Vec<f64>,
    report_ms: Vec<f64>,
    complete_ms: Vec<f64>,
    /// Watch events received by all watchers, page requests made by all pages.
    observed: (u64, u64),
    /// CPU seconds the coordinator spent from submit to the sweep's end.
    cpu: f64,
    /// CPU seconds this process (the probe and the observers' clients) spent meanwhile.
    own: f64,
    /// The coordinator's resident memory at the end and at its peak, MiB.
    rss: (f64, f64),
    /// The store and the sweep.
    store: PathBuf,
    id: String,
}

/// A free loopback port (for the HTTP listener of the pages).
fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| anyhow!(e.to_string()))
}

/// Starts a coordinator (with an HTTP listener when pages watch), the worker processes and
/// the observers, runs one sweep to its end and measures it.
async fn one_run(a: &BenchArgs, dir: &Path, watchers: usize, pages: usize) -> Result<Throughput> {
    let http = if pages > 0 {
        Some(format!("127.0.0.1:{}", free_port()?))
    } else {
        None
    };
    let store = dir.join(format!("bench-{watchers}-{pages}.db"));
    let extra: Vec<String> = http
        .iter()
        .flat_map(|h| ["--http-listen".to_string(), h.clone()])
        .collect();
    let (server, url) = start_server(&store, &extra)?;
    let cpu0 = cpu_seconds(server.0.id()).unwrap_or(f64::NAN);
    let own0 = cpu_seconds(std::process::id()).unwrap_or(f64::NAN);
    let worker_bin = sibling("worker")?;
    let mut workers = Vec::new();
    for _ in 0..a.workers {
        let c = Command::new(&worker_bin)
            .args(["--coordinator", &url, "--slots", &a.slots.to_string()])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow!(format!("cannot start a worker: {e}")))?;
        workers.push(Kill(c));
    }
    let ch = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| anyhow!(e.to_string()))?
        .connect()
        .await
        .map_err(|e| anyhow!(e.to_string()))?;
    let mut sweeps = pb::sweeps_client::SweepsClient::new(ch.clone());
    let mut probe = pb::coordinator_client::CoordinatorClient::new(ch);
    let reg = probe
        .register(pb::RegisterRequest {
            host: "bench-probe".into(),
            cores: 1,
            slots: 1,
            version: "bench".into(),
            worker_id: String::new(),
            gpus: Vec::new(),
        })
        .await
        .map_err(|s| anyhow!(s.to_string()))?
        .into_inner();
    // Let the workers register and start polling before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut config = format!(
        "name: bench\nmethod: random\nrun_cap: {}\ntrainer: synthetic\nsynthetic: {{function: quadratic, epochs: {}, epoch_ms: 0}}\nparameters:\n  x1: {{min: 0.0, max: 1.0}}\n  x2: {{min: 0.0, max: 1.0}}\n",
        a.trials, a.epochs
    );
    if let Some(rule) = &a.early_terminate {
        config.push_str(&format!("early_terminate: {{type: {rule}, min_iter: 1}}\n"));
    }
    // The clock starts before the sweep exists: opening the observers counts against them.
    let t0 = Instant::now();
    let id = sweeps
        .create_sweep(pb::CreateSweepRequest {
            config,
            name: String::new(),
        })
        .await
        .map_err(|s| anyhow!(s.to_string()))?
        .into_inner()
        .sweep_id;
    let observers = crate::observers::start(&url, http.as_deref(), &id, watchers, pages).await?;
    let (mut lease_ms, mut report_ms, mut complete_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut probe_trials = 0u64;
    loop {
        let t = Instant::now();
        let l = probe
            .lease(pb::LeaseRequest {
                worker_id: reg.worker_id.clone(),
                wait_ms: 0,
                trainers: Vec::new(),
                sweep_id: String::new(),
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow!(s.to_string()))?
            .into_inner();
        let Some(trial) = l.trial else { break };
        lease_ms.push(t.elapsed().as_secs_f64() * 1e3);
        for e in 1..=a.epochs {
            let t = Instant::now();
            probe
                .report(pb::ReportRequest {
                    worker_id: reg.worker_id.clone(),
                    lease_id: trial.lease_id.clone(),
                    sweep_id: trial.sweep_id.clone(),
                    trial: trial.trial,
                    attempt: trial.attempt,
                    epoch: e as u32,
                    metrics: [("loss".to_string(), 1.0 / e as f64)].into(),
                    run_name: String::new(),
                    rows: Vec::new(),
                })
                .await
                .map_err(|s| anyhow!(s.to_string()))?;
            report_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let t = Instant::now();
        probe
            .complete(pb::CompleteRequest {
                worker_id: reg.worker_id.clone(),
                lease_id: trial.lease_id.clone(),
                sweep_id: trial.sweep_id.clone(),
                trial: trial.trial,
                attempt: trial.attempt,
                outcome: pb::TrialOutcome::Finished as i32,
                metrics: [("loss".to_string(), 0.0)].into(),
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow!(s.to_string()))?;
        complete_ms.push(t.elapsed().as_secs_f64() * 1e3);
        probe_trials += 1;
    }
    // Wait for the workers' last trials.
    let info = loop {
        let s = sweeps
            .get_sweep(pb::GetSweepRequest {
                sweep_id: id.clone(),
            })
            .await
            .map_err(|s| anyhow!(s.to_string()))?
            .into_inner();
        if s.state == pb::SweepState::Finished as i32 {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(3600) {
            return Err(anyhow!("the sweep did not finish within an hour",));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(server.0.id()).unwrap_or(f64::NAN) - cpu0;
    let own = cpu_seconds(std::process::id()).unwrap_or(f64::NAN) - own0;
    let rss = (
        rss_mib(server.0.id()).unwrap_or(f64::NAN),
        peak_rss_mib(server.0.id()).unwrap_or(f64::NAN),
    );
    let observed = observers.finish().await?;
    drop(workers);
    Ok(Throughput {
        secs,
        rate: a.trials as f64 / secs,
        info,
        probe_trials,
        lease_ms,
        report_ms,
        complete_ms,
        observed,
        cpu,
        own,
        rss,
        store,
        id,
    })
}

/// One GET over its own connection (HTTP/1.0): the body's length, or why not.
async fn http_get(addr: &str, path: &str) -> Result<usize> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fail = |e: String| anyhow!(format!("GET {path}: {e}"));
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| fail(e.to_string()))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !body.starts_with(b"HTTP/1.0 200") && !body.starts_with(b"HTTP/1.1 200") {
        return Err(fail(
            String::from_utf8_lossy(&body[..body.len().min(200)]).to_string(),
        ));
    }
    Ok(body.len())
}

/// The coordinator started again on a finished run's store: how long until it serves, its
/// memory, and how fast the leaderboard and the dashboard's first requests answer.
async fn restart(store: &Path, id: &str) -> Result<()> {
    let web = format!("127.0.0.1:{}", free_port()?);
    let t0 = Instant::now();
    let (server, url) = start_server(store, &["--http-listen".to_string(), web.clone()])?;
    let ch = tonic::transport::Endpoint::from_shared(url)
        .map_err(|e| anyhow!(e.to_string()))?
        .connect()
        .await
        .map_err(|e| anyhow!(e.to_string()))?;
    let mut sweeps = pb::sweeps_client::SweepsClient::new(ch);
    let info = sweeps
        .get_sweep(pb::GetSweepRequest {
            sweep_id: id.to_string(),
        })
        .await
        .map_err(|s| anyhow!(s.to_string()))?
        .into_inner();
    let serving = t0.elapsed().as_secs_f64();
    let rss = rss_mib(server.0.id()).unwrap_or(f64::NAN);
    let mut top = Vec::new();
    for _ in 0..11 {
        let t = Instant::now();
        let lb = sweeps
            .leaderboard(pb::LeaderboardRequest {
                sweep_id: id.to_string(),
                top: 100,
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow!(s.to_string()))?
            .into_inner();
        top.push(t.elapsed().as_secs_f64() * 1e3);
        if lb.trials.len() != 100.min(info.finished as usize) {
            return Err(anyhow!(format!(
                "the top 100 has {} trials",
                lb.trials.len()
            )));
        }
    }
    println!(
        "  restarted on its store ({} trials): serving after {serving:.2} s, {rss:.0} MiB resident; top 100 of the leaderboard in {:.1} ms (median of 11, max {:.1})",
        info.finished + info.stopped + info.failed,
        median(top.clone()),
        top.iter().copied().fold(0.0, f64::max)
    );
    // What the dashboard asks for when it opens the sweep, in the order it asks (a synthetic
    // sweep has no confusion matrix).
    let base = format!("/api/v1/sweeps/{id}");
    let t = Instant::now();
    let mut parts = Vec::new();
    for path in [
        "/".to_string(),
        "/static/app.js".to_string(),
        format!("{base}?top=500&running=true"),
        format!("{base}/files/importance.svg"),
        format!("{base}/files/parallel.svg"),
    ] {
        let s = Instant::now();
        let bytes = http_get(&web, &path).await?;
        parts.push(format!(
            "{path} {:.0} ms ({:.0} KiB)",
            s.elapsed().as_secs_f64() * 1e3,
            bytes as f64 / 1024.0
        ));
    }
    println!(
        "  the dashboard's requests for that sweep: {:.2} s in all: {}",
        t.elapsed().as_secs_f64(),
        parts.join(", ")
    );
    println!(
        "  coordinator memory after them: {:.0} MiB resident",
        rss_mib(server.0.id()).unwrap_or(f64::NAN)
    );
    Ok(())
}

fn print_run(a: &BenchArgs, r: &mut Throughput, observers: &str) {
    println!(
        "{} trials × {} reports, {} workers × {} slots (+1 probe), SQLite store{observers}: {:.2} s, {:.0} trials/s ({} finished, {} failed)",
        a.trials, a.epochs, a.workers, a.slots, r.secs, r.rate, r.info.finished, r.info.failed
    );
    println!(
        "  CPU: coordinator {:.2} s ({:.0} µs per trial), bench process (probe, observers' clients) {:.2} s; the probe ran {} trials under that load; latency in ms (p50 / p90 / p99):",
        r.cpu,
        r.cpu * 1e6 / a.trials as f64,
        r.own,
        r.probe_trials
    );
    println!(
        "  coordinator memory: {:.0} MiB resident at the end, {:.0} MiB at most ({:.2} KiB per trial)",
        r.rss.0,
        r.rss.1,
        r.rss.1 * 1024.0 / a.trials as f64
    );
    for (name, v) in [
        ("Lease", &mut r.lease_ms),
        ("Report", &mut r.report_ms),
        ("Complete", &mut r.complete_ms),
    ] {
        println!(
            "    {name:<8} {:.3} / {:.3} / {:.3}  ({} calls)",
            pct(v, 0.5),
            pct(v, 0.9),
            pct(v, 0.99),
            v.len()
        );
    }
}

/// One run with the observers `a` asks for, printed.
async fn watched_run(a: &BenchArgs, dir: &Path) -> Result<Throughput> {
    let mut watched = one_run(a, dir, a.watchers, a.pages).await?;
    print_run(
        a,
        &mut watched,
        &format!(
            ", {} watch streams and {} dashboard pages",
            a.watchers, a.pages
        ),
    );
    Ok(watched)
}

/// Runs `sweep-bench coordinator`.
pub(crate) async fn run(a: &BenchArgs) -> Result<()> {
    if a.trials == 0 || a.workers == 0 || a.slots == 0 || a.epochs == 0 {
        return Err(anyhow!(
            "--trials, --workers, --slots and --epochs must be ≥ 1",
        ));
    }
    let dir = std::env::temp_dir().join(format!("sweep-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| anyhow!(e.to_string()))?;
    // With observers, runs without and with them alternate, in the order ABBA ABBA …, so that
    // drift in the machine (and whatever favours the first or the second run of a pair) falls
    // on both; the medians are compared.
    let observed = a.watchers > 0 || a.pages > 0;
    let (mut alone_rates, mut watched_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..a.repeat.max(1) {
        let watched_first = observed && pair % 2 == 1;
        let mut watched = None;
        if watched_first {
            watched = Some(watched_run(a, &dir).await?);
        }
        let mut alone = one_run(a, &dir, 0, 0).await?;
        print_run(a, &mut alone, "");
        if a.restart && alone_rates.is_empty() {
            restart(&alone.store, &alone.id).await?;
        }
        alone_rates.push(alone.rate);
        if observed && !watched_first {
            watched = Some(watched_run(a, &dir).await?);
        }
        if let Some(watched) = watched {
            println!(
                "  observers received {} watch events and made {} page requests; throughput {:.1}% of the run without observers{}",
                watched.observed.0,
                watched.observed.1,
                100.0 * watched.rate / alone.rate,
                if watched_first { " (run before it)" } else { "" }
            );
            watched_rates.push(watched.rate);
            ratios.push(watched.rate / alone.rate);
        }
    }
    let rate = median(alone_rates);
    if observed && a.repeat > 1 {
        println!(
            "median of {} pairs: {:.0} trials/s without observers, {:.0} with; {:.1}% (median of the pairs' ratios)",
            ratios.len(),
            rate,
            median(watched_rates),
            100.0 * median(ratios)
        );
    }
    if !a.no_reference && python_imports("optuna") {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/optuna_throughput.py");
        let n = a.trials.min(1000);
        let out = Command::new("python3")
            .arg(&script)
            .args([
                "--trials",
                &n.to_string(),
                "--epochs",
                &a.epochs.to_string(),
                "--processes",
                "2",
                "--dir",
            ])
            .arg(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                for line in text.lines() {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                        let r = v["trials_per_second"].as_f64().unwrap_or(f64::NAN);
                        println!(
                            "Optuna {} ({} storage, 2 processes, {} trials): {:.1} trials/s — ours is {:.1}× that",
                            v["version"].as_str().unwrap_or("?"),
                            v["storage"].as_str().unwrap_or("?"),
                            v["trials"],
                            r,
                            rate / r
                        );
                    }
                }
            }
            Ok(o) => eprintln!(
                "optuna reference failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("optuna reference failed: {e}"),
        }
    }
    if a.keep {
        println!("stores kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
