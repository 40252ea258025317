//! `coordinator bench`: end-to-end throughput of the coordinator with its durable store.
//!
//! Starts `coordinator serve` on a loopback port with a fresh SQLite store, N `worker`
//! processes with S slots of the synthetic trainer, submits a random sweep of T trials (E
//! epochs each, no sleep), and measures trials/s from submit to the sweep's end. Beside it a
//! probe client in this process runs the same lease → report × E → complete loop and records
//! each call's latency under that load. With `python3 -c "import optuna"` working, it also runs
//! Optuna with SQLite storage and 2 processes on the same task (worker/bench's
//! optuna_throughput.py) and prints the ratio.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use sweep_proto::pb;

use super::CliError;

mod observers;

/// Measure trials/s and Lease/Report/Complete latency of a coordinator under load.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Trials in the sweep
    #[arg(long, default_value_t = 4000)]
    pub trials: u64,
    /// Worker processes
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Slots per worker
    #[arg(long, default_value_t = 8)]
    pub slots: usize,
    /// Epochs (reports) per trial
    #[arg(long, default_value_t = 5)]
    pub epochs: u64,
    /// Also run the sweep with this many `watch` streams open and compare
    #[arg(long, default_value_t = 0)]
    pub watchers: usize,
    /// Runs (pairs of runs, with observers) to take the median of
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Also run the sweep with this many dashboard pages open (simulated: the page's event
    /// stream and the requests it makes) and compare
    #[arg(long, default_value_t = 0)]
    pub pages: usize,
    /// Skip the Optuna comparison
    #[arg(long)]
    pub no_reference: bool,
    /// After the first run, kill the coordinator and start it again on the sweep's store:
    /// time until it serves, its memory, and the leaderboard's and the dashboard's answers
    #[arg(long)]
    pub restart: bool,
    /// Leave the stores in place (their directory is printed) to look at them afterwards,
    /// e.g. with `coordinator serve --store … --http-listen …`
    #[arg(long)]
    pub keep: bool,
    /// Give the sweep this stopping rule (hyperband, asha or median), decided on every report
    #[arg(long, value_name = "TYPE", value_parser = ["hyperband", "asha", "median"])]
    pub early_terminate: Option<String>,
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `python3` can import `module` (the reference runs are optional).
fn python_imports(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn sibling(name: &str) -> Result<PathBuf, CliError> {
    let exe = std::env::current_exe().map_err(|e| CliError::Other(e.to_string()))?;
    let p = exe.with_file_name(name);
    if !p.is_file() {
        return Err(CliError::Other(format!(
            "{} not found: build it first (cargo build --release -p worker)",
            p.display()
        )));
    }
    Ok(p)
}

fn start_server(store: &Path, extra: &[String]) -> Result<(Kill, String), CliError> {
    let exe = std::env::current_exe().map_err(|e| CliError::Other(e.to_string()))?;
    let mut child = Command::new(exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(store)
        .args(extra)
        .env("RUST_LOG", "error")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| CliError::Other(format!("cannot start the coordinator: {e}")))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| CliError::Other("no stderr".into()))?;
    let mut lines = BufReader::new(stderr).lines();
    let mut url = None;
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("coordinator listening on ") {
            url = rest
                .split_whitespace()
                .next()
                .map(|a| format!("http://{a}"));
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let url = url.ok_or_else(|| CliError::Other("the coordinator did not start".into()))?;
    Ok((Kill(child), url))
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
fn free_port() -> Result<u16, CliError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| CliError::Other(e.to_string()))
}

/// Starts a coordinator (with an HTTP listener when pages watch), the worker processes and
/// the observers, runs one sweep to its end and measures it.
async fn one_run(
    a: &BenchArgs,
    dir: &Path,
    watchers: usize,
    pages: usize,
) -> Result<Throughput, CliError> {
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
            .map_err(|e| CliError::Other(format!("cannot start a worker: {e}")))?;
        workers.push(Kill(c));
    }
    let ch = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| CliError::Other(e.to_string()))?
        .connect()
        .await
        .map_err(|e| CliError::Other(e.to_string()))?;
    let mut sweeps = pb::sweeps_client::SweepsClient::new(ch.clone());
    let mut probe = pb::coordinator_client::CoordinatorClient::new(ch);
    let reg = probe
        .register(pb::RegisterRequest {
            host: "bench-probe".into(),
            cores: 1,
            slots: 1,
            version: "bench".into(),
            worker_id: String::new(),
        })
        .await
        .map_err(|s| CliError::Other(s.to_string()))?
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
        .map_err(|s| CliError::Other(s.to_string()))?
        .into_inner()
        .sweep_id;
    let observers = observers::start(&url, http.as_deref(), &id, watchers, pages).await?;
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
            })
            .await
            .map_err(|s| CliError::Other(s.to_string()))?
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
                })
                .await
                .map_err(|s| CliError::Other(s.to_string()))?;
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
            .map_err(|s| CliError::Other(s.to_string()))?;
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
            .map_err(|s| CliError::Other(s.to_string()))?
            .into_inner();
        if s.state == pb::SweepState::Finished as i32 {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(3600) {
            return Err(CliError::Other(
                "the sweep did not finish within an hour".into(),
            ));
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
async fn http_get(addr: &str, path: &str) -> Result<usize, CliError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fail = |e: String| CliError::Other(format!("GET {path}: {e}"));
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
async fn restart(store: &Path, id: &str) -> Result<(), CliError> {
    let web = format!("127.0.0.1:{}", free_port()?);
    let t0 = Instant::now();
    let (server, url) = start_server(store, &["--http-listen".to_string(), web.clone()])?;
    let ch = tonic::transport::Endpoint::from_shared(url)
        .map_err(|e| CliError::Other(e.to_string()))?
        .connect()
        .await
        .map_err(|e| CliError::Other(e.to_string()))?;
    let mut sweeps = pb::sweeps_client::SweepsClient::new(ch);
    let info = sweeps
        .get_sweep(pb::GetSweepRequest {
            sweep_id: id.to_string(),
        })
        .await
        .map_err(|s| CliError::Other(s.to_string()))?
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
            .map_err(|s| CliError::Other(s.to_string()))?
            .into_inner();
        top.push(t.elapsed().as_secs_f64() * 1e3);
        if lb.trials.len() != 100.min(info.finished as usize) {
            return Err(CliError::Other(format!(
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

/// Runs `coordinator bench`.
pub async fn run(a: &BenchArgs) -> Result<(), CliError> {
    if a.trials == 0 || a.workers == 0 || a.slots == 0 || a.epochs == 0 {
        return Err(CliError::Usage(
            "--trials, --workers, --slots and --epochs must be ≥ 1".into(),
        ));
    }
    let dir = std::env::temp_dir().join(format!("sweep-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| CliError::Other(e.to_string()))?;
    // With observers, runs without and with them alternate, so that drift in the machine
    // falls on both; the medians are compared.
    let observed = a.watchers > 0 || a.pages > 0;
    let (mut alone_rates, mut watched_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.repeat.max(1) {
        let mut alone = one_run(a, &dir, 0, 0).await?;
        print_run(a, &mut alone, "");
        if a.restart && alone_rates.is_empty() {
            restart(&alone.store, &alone.id).await?;
        }
        alone_rates.push(alone.rate);
        if observed {
            let mut watched = one_run(a, &dir, a.watchers, a.pages).await?;
            print_run(
                a,
                &mut watched,
                &format!(
                    ", {} watch streams and {} dashboard pages",
                    a.watchers, a.pages
                ),
            );
            println!(
                "  observers received {} watch events and made {} page requests; throughput {:.1}% of the run without observers",
                watched.observed.0,
                watched.observed.1,
                100.0 * watched.rate / alone.rate
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
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/optuna_throughput.py");
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

/// Search quality and suggestion speed of `method: bayes` (TPE), beside Optuna's samplers.
#[derive(Debug, Args)]
pub struct SearchBenchArgs {
    /// Trials per sweep
    #[arg(long, default_value_t = 50)]
    pub trials: usize,
    /// Seeds per function
    #[arg(long, default_value_t = 10)]
    pub seeds: u64,
    /// Skip the Optuna comparison
    #[arg(long)]
    pub no_reference: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn space(function: &str) -> crate::config::SweepSpec {
    let text = if function == "branin" {
        "method: bayes\nparameters:\n  x1: {min: -5.0, max: 10.0}\n  x2: {min: 0.0, max: 15.0}\n"
            .to_string()
    } else {
        let mut t = "method: bayes\nparameters:\n".to_string();
        for i in 1..=6 {
            t.push_str(&format!("  x{i}: {{min: 0.0, max: 1.0}}\n"));
        }
        t
    };
    crate::config::SweepSpec::parse(&text).expect("built-in benchmark space")
}

/// The best value of one sequential sweep: `method` random or bayes with `engine`.
fn sweep_best(
    spec: &crate::config::SweepSpec,
    function: &str,
    engine: Option<crate::config::BayesEngine>,
    seed: u64,
    trials: usize,
) -> f64 {
    let mut spec = spec.clone();
    spec.seed = seed;
    match engine {
        Some(e) => spec.bayes.engine = e,
        None => spec.method = crate::config::Method::Random,
    }
    crate::search::sequential_best(&spec, function, trials as u64)
}

fn suggestion_ms(finished: usize, gp: bool) -> f64 {
    let mut spec = space("hartmann6");
    if gp {
        spec.bayes.engine = crate::config::BayesEngine::Gp;
    }
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let hist: Vec<(serde_json::Value, f64)> = (0..finished)
        .map(|_| {
            let p = crate::search::sample::draw(&spec.parameters, &mut rng);
            let map: std::collections::BTreeMap<String, serde_json::Value> = p
                .as_object()
                .map(|m| m.clone().into_iter().collect())
                .unwrap_or_default();
            let y = worker::synthetic::evaluate("hartmann6", &map).unwrap_or(0.0);
            (p, y)
        })
        .collect();
    let times: Vec<f64> = (0..21)
        .map(|i| {
            let t = Instant::now();
            let obs: Vec<crate::search::Observation<'_>> = hist
                .iter()
                .map(|(p, y)| crate::search::Observation {
                    params: p,
                    loss: Some(*y),
                })
                .collect();
            let _ = crate::search::suggest_with_history(&spec, finished as u64 + 1 + i, &obs);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(times)
}

/// Runs `coordinator bench-search`.
pub fn run_search(a: &SearchBenchArgs) -> Result<(), CliError> {
    if a.trials == 0 || a.seeds == 0 {
        return Err(CliError::Usage("--trials and --seeds must be ≥ 1".into()));
    }
    println!(
        "median best value (minimisation) over {} seeds, {} trials each:",
        a.seeds, a.trials
    );
    let mut ours = std::collections::BTreeMap::new();
    for f in ["branin", "hartmann6"] {
        let spec = space(f);
        let rnd = median(
            (0..a.seeds)
                .map(|s| sweep_best(&spec, f, None, s, a.trials))
                .collect(),
        );
        let tpe = median(
            (0..a.seeds)
                .map(|s| sweep_best(&spec, f, Some(crate::config::BayesEngine::Tpe), s, a.trials))
                .collect(),
        );
        let gp = median(
            (0..a.seeds)
                .map(|s| sweep_best(&spec, f, Some(crate::config::BayesEngine::Gp), s, a.trials))
                .collect(),
        );
        println!("  {f:<10} random {rnd:>9.4}   ours TPE {tpe:>9.4}   ours GP {gp:>9.4}");
        ours.insert((f, "tpe"), tpe);
        ours.insert((f, "gp"), gp);
    }
    if !a.no_reference && python_imports("optuna") {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/optuna_search.py");
        let out = Command::new("python3")
            .arg(&script)
            .args([
                "--trials",
                &a.trials.to_string(),
                "--seeds",
                &a.seeds.to_string(),
            ])
            .output();
        if let Ok(o) = out {
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                let best: Vec<f64> = serde_json::from_value(v["best"].clone()).unwrap_or_default();
                let f = v["function"].as_str().unwrap_or("");
                let m = median(best);
                let sampler = v["sampler"].as_str().unwrap_or("?");
                let mine = ours.get(&(f, sampler)).copied().unwrap_or(f64::NAN);
                println!(
                    "  {f:<10} Optuna {} {sampler} {m:>9.4}   ours {} {} it",
                    v["version"].as_str().unwrap_or("?"),
                    sampler.to_uppercase(),
                    if mine <= m {
                        "matches or beats"
                    } else {
                        "is behind"
                    }
                );
            }
        }
    }
    for n in [1_000, 10_000] {
        println!(
            "suggestion time with {n} finished trials (6 dimensions): TPE {:.2} ms, GP {:.2} ms (median of 21)",
            suggestion_ms(n, false),
            suggestion_ms(n, true)
        );
    }
    Ok(())
}

/// Many simulated workers against one coordinator for a fixed time (a load benchmark).
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Simulated workers, each with its own connection
    #[arg(long, default_value_t = 200)]
    pub workers: usize,
    /// How long to run, in seconds
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Epochs (reports) per trial
    #[arg(long, default_value_t = 5)]
    pub epochs: u32,
    /// Simulated training time per epoch, in milliseconds
    #[arg(long, default_value_t = 50)]
    pub epoch_ms: u64,
    /// Run it a second time beside a bayes sweep (GP) that this many more simulated workers
    /// serve, each finishing its trial at once (a suggestion on every lease, with thousands of
    /// finished trials), and compare the first sweep's latency with and without it
    #[arg(long, default_value_t = 0)]
    pub beside_bayes: usize,
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // sysconf(_SC_CLK_TCK) is 100 on Linux.
    Some(ticks / 100.0)
}

/// Resident set size of a process in MiB, from /proc.
fn rss_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmRSS:")
}

/// The most a process has had resident, in MiB, from /proc.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmHWM:")
}

fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[derive(Debug, Default)]
struct LoadStats {
    lease_ms: Vec<f64>,
    report_ms: Vec<f64>,
    trials: u64,
    errors: Vec<String>,
}

/// One simulated worker: register, then lease → report × epochs (with a pause per epoch) →
/// complete, until `end`.
/// `only`: the sweep it works for.
async fn simulated_worker(
    url: String,
    k: usize,
    a: LoadArgsCopy,
    only: String,
    end: Instant,
) -> LoadStats {
    let mut st = LoadStats::default();
    let ch = match tonic::transport::Endpoint::from_shared(url) {
        Ok(ep) => ep.connect_lazy(),
        Err(e) => {
            st.errors.push(e.to_string());
            return st;
        }
    };
    let mut c = pb::coordinator_client::CoordinatorClient::new(ch);
    let worker_id = match c
        .register(pb::RegisterRequest {
            host: format!("sim-{k}"),
            cores: 1,
            slots: 1,
            version: "bench-load".into(),
            worker_id: String::new(),
        })
        .await
    {
        Ok(r) => r.into_inner().worker_id,
        Err(s) => {
            st.errors.push(format!("register: {s}"));
            return st;
        }
    };
    while Instant::now() < end {
        let t = Instant::now();
        let trial = match c
            .lease(pb::LeaseRequest {
                worker_id: worker_id.clone(),
                wait_ms: 1000,
                trainers: Vec::new(),
                sweep_id: only.clone(),
            })
            .await
        {
            Ok(r) => r.into_inner().trial,
            Err(s) => {
                st.errors.push(format!("lease: {s}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(trial) = trial else { continue };
        st.lease_ms.push(t.elapsed().as_secs_f64() * 1e3);
        for e in 1..=a.epochs {
            tokio::time::sleep(Duration::from_millis(a.epoch_ms)).await;
            let t = Instant::now();
            let r = c
                .report(pb::ReportRequest {
                    worker_id: worker_id.clone(),
                    lease_id: trial.lease_id.clone(),
                    sweep_id: trial.sweep_id.clone(),
                    trial: trial.trial,
                    attempt: trial.attempt,
                    epoch: e,
                    metrics: [("loss".to_string(), 1.0 / f64::from(e) + k as f64 * 1e-6)].into(),
                })
                .await;
            st.report_ms.push(t.elapsed().as_secs_f64() * 1e3);
            match r {
                Ok(r) if r.get_ref().action == pb::Action::Continue as i32 => {}
                Ok(_) => break,
                Err(s) => {
                    st.errors.push(format!("report: {s}"));
                    break;
                }
            }
        }
        match c
            .complete(pb::CompleteRequest {
                worker_id: worker_id.clone(),
                lease_id: trial.lease_id.clone(),
                sweep_id: trial.sweep_id.clone(),
                trial: trial.trial,
                attempt: trial.attempt,
                outcome: pb::TrialOutcome::Finished as i32,
                // Varied, so that a bayes sweep's model has something to fit.
                metrics: [("loss".to_string(), (trial.trial as f64 * 0.618_034).fract())].into(),
                ..Default::default()
            })
            .await
        {
            Ok(r) if r.get_ref().accepted => st.trials += 1,
            Ok(r) => st
                .errors
                .push(format!("complete refused: {}", r.get_ref().reason)),
            Err(s) => st.errors.push(format!("complete: {s}")),
        }
    }
    st
}

#[derive(Debug, Clone, Copy)]
struct LoadArgsCopy {
    epochs: u32,
    epoch_ms: u64,
}

/// One timed run of `coordinator bench-load`: a fresh coordinator, its sweep, the load.
#[derive(Debug, Default)]
struct LoadRun {
    stats: LoadStats,
    secs: f64,
    finished: u64,
    rss: [f64; 4],
    /// CPU seconds of the coordinator and of this process (the simulated workers) meanwhile.
    cpu: (f64, f64),
    /// Trials the bayes sweep beside it finished, and the latency of its Lease calls.
    bayes: Option<(u64, Vec<f64>)>,
}

async fn load_run(a: &LoadArgs, beside_bayes: usize) -> Result<LoadRun, CliError> {
    let dir = std::env::temp_dir().join(format!("sweep-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| CliError::Other(e.to_string()))?;
    let (server, url) = start_server(&dir.join("load.db"), &[])?;
    let pid = server.0.id();
    let ch = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| CliError::Other(e.to_string()))?
        .connect()
        .await
        .map_err(|e| CliError::Other(e.to_string()))?;
    let mut sweeps = pb::sweeps_client::SweepsClient::new(ch);
    let mut create = async |config: String| {
        sweeps
            .create_sweep(pb::CreateSweepRequest {
                config,
                name: String::new(),
            })
            .await
            .map(|r| r.into_inner().sweep_id)
            .map_err(|s| CliError::Other(s.to_string()))
    };
    // A random sweep with no run cap: work never runs out.
    let id = create(format!(
        "name: load\nmethod: random\ntrainer: synthetic\nsynthetic: {{function: quadratic, epochs: {}}}\nparameters:\n  x1: {{min: 0.0, max: 1.0}}\n  x2: {{min: 0.0, max: 1.0}}\n",
        a.epochs
    ))
    .await?;
    let bayes_id = if beside_bayes > 0 {
        create(
            "name: beside\nmethod: bayes\nbayes: {engine: gp}\ntrainer: synthetic\nsynthetic: {function: quadratic, epochs: 1}\nmetric: {name: loss, goal: minimize}\nparameters:\n  x1: {min: 0.0, max: 1.0}\n  x2: {min: 0.0, max: 1.0}\n  x3: {min: 0.0, max: 1.0}\n  x4: {min: 0.0, max: 1.0}\n".into(),
        )
        .await?
    } else {
        String::new()
    };
    let rss_start = rss_mib(pid).unwrap_or(f64::NAN);
    let cpu0 = (
        cpu_seconds(pid).unwrap_or(f64::NAN),
        cpu_seconds(std::process::id()).unwrap_or(f64::NAN),
    );
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(a.seconds);
    let copy = LoadArgsCopy {
        epochs: a.epochs,
        epoch_ms: a.epoch_ms,
    };
    let tasks: Vec<_> = (0..a.workers)
        .map(|k| tokio::spawn(simulated_worker(url.clone(), k, copy, id.clone(), end)))
        .collect();
    let at_once = LoadArgsCopy {
        epochs: 1,
        epoch_ms: 0,
    };
    let bayes_tasks: Vec<_> = (0..beside_bayes)
        .map(|k| {
            let (url, only) = (url.clone(), bayes_id.clone());
            tokio::spawn(simulated_worker(url, a.workers + k, at_once, only, end))
        })
        .collect();
    // Sample the coordinator's memory while the load runs.
    let mut rss_max = rss_start;
    let mut rss_mid = f64::NAN;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(r) = rss_mib(pid) {
            rss_max = rss_max.max(r);
            if rss_mid.is_nan() && t0.elapsed() >= Duration::from_secs(a.seconds / 2) {
                rss_mid = r;
            }
        }
    }
    let mut run = LoadRun::default();
    for t in tasks {
        let s = t.await.map_err(|e| CliError::Other(e.to_string()))?;
        run.stats.lease_ms.extend(s.lease_ms);
        run.stats.report_ms.extend(s.report_ms);
        run.stats.trials += s.trials;
        run.stats.errors.extend(s.errors);
    }
    if beside_bayes > 0 {
        let mut lease_ms = Vec::new();
        let mut trials = 0;
        for t in bayes_tasks {
            let s = t.await.map_err(|e| CliError::Other(e.to_string()))?;
            lease_ms.extend(s.lease_ms);
            trials += s.trials;
            run.stats.errors.extend(s.errors);
        }
        run.bayes = Some((trials, lease_ms));
    }
    run.secs = t0.elapsed().as_secs_f64();
    run.cpu = (
        cpu_seconds(pid).unwrap_or(f64::NAN) - cpu0.0,
        cpu_seconds(std::process::id()).unwrap_or(f64::NAN) - cpu0.1,
    );
    let rss_end = rss_mib(pid).unwrap_or(f64::NAN);
    run.rss = [rss_start, rss_mid, rss_end, rss_max];
    run.finished = sweeps
        .get_sweep(pb::GetSweepRequest { sweep_id: id })
        .await
        .map_err(|s| CliError::Other(s.to_string()))?
        .into_inner()
        .finished;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(run)
}

/// Prints one run's figures.
fn print_load(a: &LoadArgs, run: &mut LoadRun) {
    let (stats, secs) = (&mut run.stats, run.secs);
    println!(
        "{} simulated workers, {:.0} s, {} epochs × {} ms per trial, SQLite store:",
        a.workers, secs, a.epochs, a.epoch_ms
    );
    println!(
        "  {} trials completed ({:.0}/s), {} in the store as finished; {} Lease and {} Report calls",
        stats.trials,
        stats.trials as f64 / secs,
        run.finished,
        stats.lease_ms.len(),
        stats.report_ms.len()
    );
    if let Some((trials, lease_ms)) = &mut run.bayes {
        println!(
            "  beside it, a bayes (GP) sweep: {trials} trials finished by {} workers, its Lease (a suggestion each) p50 / p99 {:.3} / {:.3} ms",
            a.beside_bayes,
            pct(lease_ms, 0.5),
            pct(lease_ms, 0.99)
        );
    }
    println!(
        "  CPU: coordinator {:.1} s ({:.0} µs per trial), simulated workers {:.1} s, of {:.0} s × {} cores",
        run.cpu.0,
        run.cpu.0 * 1e6 / (stats.trials.max(1)) as f64,
        run.cpu.1,
        secs,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!("  errors: {}", stats.errors.len());
    for e in stats.errors.iter().take(5) {
        println!("    {e}");
    }
    let [rss_start, rss_mid, rss_end, rss_max] = run.rss;
    println!(
        "  coordinator RSS: start {rss_start:.1} MiB, middle {rss_mid:.1} MiB, end {rss_end:.1} MiB, max {rss_max:.1} MiB ({:.2} KiB per stored trial)",
        (rss_end - rss_start) * 1024.0 / (run.finished.max(1)) as f64
    );
    println!("  latency in ms (p50 / p90 / p99):");
    for (name, v) in [
        ("Lease", &mut stats.lease_ms),
        ("Report", &mut stats.report_ms),
    ] {
        println!(
            "    {name:<7} {:.3} / {:.3} / {:.3}",
            pct(v, 0.5),
            pct(v, 0.9),
            pct(v, 0.99)
        );
    }
}

/// Runs `coordinator bench-load`.
pub async fn run_load(a: &LoadArgs) -> Result<(), CliError> {
    if a.workers == 0 || a.seconds == 0 || a.epochs == 0 {
        return Err(CliError::Usage(
            "--workers, --seconds and --epochs must be ≥ 1".into(),
        ));
    }
    let mut alone = load_run(a, 0).await?;
    print_load(a, &mut alone);
    let mut errors = alone.stats.errors.len();
    if a.beside_bayes > 0 {
        let mut beside = load_run(a, a.beside_bayes).await?;
        print_load(a, &mut beside);
        errors += beside.stats.errors.len();
        let (p_alone, p_beside) = (
            pct(&mut alone.stats.report_ms, 0.99),
            pct(&mut beside.stats.report_ms, 0.99),
        );
        println!(
            "Report p99 beside the bayes sweep / alone: {p_beside:.3} / {p_alone:.3} ms = {:.2}× (target ≤ 2×)",
            p_beside / p_alone
        );
    }
    if errors == 0 {
        Ok(())
    } else {
        Err(CliError::Other(format!("{errors} errors under load")))
    }
}
