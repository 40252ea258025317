//! `sweep-bench load`: many simulated workers, each on its own connection, against one
//! coordinator for a fixed time: errors, call latency, memory, and the CPU of the coordinator
//! and of the simulated workers; optionally beside a bayes sweep whose every lease is a
//! suggestion (`--beside-bayes`).

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use clap::Args;
use rand::{Rng, SeedableRng};
use sweep_proto::pb;

use crate::common::*;

/// Many simulated workers against one coordinator for a fixed time (a load benchmark).
#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// Simulated workers, each with its own connection
    #[arg(long, default_value_t = 200)]
    pub(crate) workers: usize,
    /// How long to run, in seconds
    #[arg(long, default_value_t = 60)]
    pub(crate) seconds: u64,
    /// Epochs (reports) per trial
    #[arg(long, default_value_t = 5)]
    pub(crate) epochs: u32,
    /// Simulated training time per epoch, in milliseconds
    #[arg(long, default_value_t = 50)]
    pub(crate) epoch_ms: u64,
    /// Vary each epoch's time by up to this many percent either way (each worker its own
    /// seeded draws), as real trials vary; 0 keeps every worker in step with the others
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub(crate) jitter: u32,
    /// Run it a second time beside a bayes sweep (GP) that this many more simulated workers
    /// serve, each finishing its trial at once (a suggestion on every lease, with thousands of
    /// finished trials), and compare the first sweep's latency with and without it
    #[arg(long, default_value_t = 0)]
    pub(crate) beside_bayes: usize,
}

#[derive(Debug, Default)]
struct LoadStats {
    /// Each worker's first lease (every worker asks at the start, all at once).
    first_lease_ms: Vec<f64>,
    /// The leases after it.
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
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(k as u64);
    let spread = f64::from(a.jitter) / 100.0;
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
            gpus: Vec::new(),
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
                ..Default::default()
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
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if st.first_lease_ms.is_empty() {
            st.first_lease_ms.push(ms);
        } else {
            st.lease_ms.push(ms);
        }
        for e in 1..=a.epochs {
            let f = 1.0 + spread * (2.0 * rng.random::<f64>() - 1.0);
            tokio::time::sleep(Duration::from_secs_f64(a.epoch_ms as f64 * f / 1e3)).await;
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
                    run_name: String::new(),
                    rows: Vec::new(),
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
    jitter: u32,
}

/// One timed run of `sweep-bench load`: a fresh coordinator, its sweep, the load.
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

async fn load_run(a: &LoadArgs, beside_bayes: usize) -> Result<LoadRun> {
    let dir = std::env::temp_dir().join(format!("sweep-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| anyhow!(e.to_string()))?;
    let (server, url) = start_server(&dir.join("load.db"), &[])?;
    let pid = server.0.id();
    let ch = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| anyhow!(e.to_string()))?
        .connect()
        .await
        .map_err(|e| anyhow!(e.to_string()))?;
    let mut sweeps = pb::sweeps_client::SweepsClient::new(ch);
    let mut create = async |config: String| {
        sweeps
            .create_sweep(pb::CreateSweepRequest {
                config,
                name: String::new(),
            })
            .await
            .map(|r| r.into_inner().sweep_id)
            .map_err(|s| anyhow!(s.to_string()))
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
        jitter: a.jitter,
    };
    let tasks: Vec<_> = (0..a.workers)
        .map(|k| tokio::spawn(simulated_worker(url.clone(), k, copy, id.clone(), end)))
        .collect();
    let at_once = LoadArgsCopy {
        epochs: 1,
        epoch_ms: 0,
        jitter: 0,
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
        let s = t.await.map_err(|e| anyhow!(e.to_string()))?;
        run.stats.first_lease_ms.extend(s.first_lease_ms);
        run.stats.lease_ms.extend(s.lease_ms);
        run.stats.report_ms.extend(s.report_ms);
        run.stats.trials += s.trials;
        run.stats.errors.extend(s.errors);
    }
    if beside_bayes > 0 {
        let mut lease_ms = Vec::new();
        let mut trials = 0;
        for t in bayes_tasks {
            let s = t.await.map_err(|e| anyhow!(e.to_string()))?;
            lease_ms.extend(s.first_lease_ms);
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
        .map_err(|s| anyhow!(s.to_string()))?
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
        "{} simulated workers, {:.0} s, {} epochs × {} ms (± {}%) per trial, SQLite store:",
        a.workers, secs, a.epochs, a.epoch_ms, a.jitter
    );
    println!(
        "  {} trials completed ({:.0}/s), {} in the store as finished; {} Lease and {} Report calls",
        stats.trials,
        stats.trials as f64 / secs,
        run.finished,
        stats.lease_ms.len() + stats.first_lease_ms.len(),
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
        (
            "first Lease of each worker, all at the start",
            &mut stats.first_lease_ms,
        ),
    ] {
        println!(
            "    {name:<7} {:.3} / {:.3} / {:.3}",
            pct(v, 0.5),
            pct(v, 0.9),
            pct(v, 0.99)
        );
    }
}

/// Runs `sweep-bench load`.
pub(crate) async fn run_load(a: &LoadArgs) -> Result<()> {
    if a.workers == 0 || a.seconds == 0 || a.epochs == 0 {
        return Err(anyhow!("--workers, --seconds and --epochs must be ≥ 1",));
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
        Err(anyhow!(format!("{errors} errors under load")))
    }
}
