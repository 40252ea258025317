//! `sweep-bench curves`: one trial that logs a very long curve (per batch, many metrics), then
//! everything a person does with it — `GetTrial`, the HTTP API (three at once), every page of
//! `GetCurve`, `coordinator trial` and `report` — with the coordinator's memory before, at its
//! peak and after, beside the bounds docs/API.md documents for curves.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use clap::Args;
use sweep_proto::pb;

use crate::common::*;

/// A trial of a very long curve: memory and time of everything that reads it.
#[derive(Debug, Args)]
pub(crate) struct CurveArgs {
    /// Steps the trial reports
    #[arg(long, default_value_t = 10_000)]
    pub(crate) steps: u32,
    /// Metrics each step carries (the sweep's metric among them)
    #[arg(long, default_value_t = 1_000)]
    pub(crate) metrics: usize,
}

/// One HTTP/1.0 GET: its status and the body's length.
fn http_get(addr: &str, path: &str) -> Result<(u16, usize)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let code = String::from_utf8_lossy(&out[..out.len().min(16)])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| out.len() - i - 4);
    Ok((code, body))
}

pub(crate) async fn run_curves(a: &CurveArgs) -> Result<()> {
    if a.metrics == 0 || a.metrics > 1024 || a.steps == 0 || a.steps > 1_000_000 {
        return Err(anyhow!("--metrics is 1 to 1024 and --steps 1 to 1000000"));
    }
    let dir = std::env::temp_dir().join(format!("sweep-curves-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let web = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.to_string()
    };
    let (server, url) = start_server(
        &dir.join("curves.db"),
        &["--http-listen".into(), web.clone()],
    )?;
    let pid = server.0.id();
    let ch = tonic::transport::Endpoint::from_shared(url.clone())?
        .connect()
        .await?;
    let mut sweeps = pb::sweeps_client::SweepsClient::new(ch.clone())
        .max_decoding_message_size(sweep_proto::conn::MAX_MESSAGE_BYTES);
    let id = sweeps
        .create_sweep(pb::CreateSweepRequest {
            config: "method: grid\ntrainer: synthetic\nmetric: {name: m0000, goal: minimize}\nparameters:\n  x: {value: 1}\n".into(),
            name: String::new(),
        })
        .await?
        .into_inner()
        .sweep_id;
    let mut w = pb::coordinator_client::CoordinatorClient::new(ch);
    let me = w
        .register(pb::RegisterRequest {
            host: "bench".into(),
            cores: 2,
            slots: 1,
            version: "bench".into(),
            worker_id: String::new(),
            gpus: Vec::new(),
        })
        .await?
        .into_inner()
        .worker_id;
    let t = w
        .lease(pb::LeaseRequest {
            worker_id: me.clone(),
            wait_ms: 1000,
            trainers: vec!["synthetic".into()],
            sweep_id: String::new(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .trial
        .ok_or_else(|| anyhow!("no trial to lease"))?;
    let names: Vec<String> = (0..a.metrics).map(|m| format!("m{m:04}")).collect();
    let base = rss_mib(pid).unwrap_or(f64::NAN);
    let started = Instant::now();
    for step in 1..=a.steps {
        let metrics = names
            .iter()
            .enumerate()
            .map(|(m, n)| (n.clone(), (m as f64 + 1.0) / f64::from(step)))
            .collect();
        let r = w
            .report(pb::ReportRequest {
                worker_id: me.clone(),
                sweep_id: t.sweep_id.clone(),
                trial: t.trial,
                attempt: t.attempt,
                lease_id: t.lease_id.clone(),
                epoch: step,
                metrics,
                run_name: String::new(),
                rows: Vec::new(),
            })
            .await?
            .into_inner();
        if r.action == pb::Action::Abandon as i32 {
            return Err(anyhow!("the report was refused: {}", r.reason));
        }
        if step % 1000 == 0 {
            // Keep the lease (a report extends it too).
            let _ = w
                .heartbeat(pb::HeartbeatRequest {
                    worker_id: me.clone(),
                    ..Default::default()
                })
                .await;
        }
    }
    let logged = u64::from(a.steps) * a.metrics as u64;
    let ingest = started.elapsed().as_secs_f64();
    let after_ingest = rss_mib(pid).unwrap_or(f64::NAN);
    println!(
        "one trial reported {} steps × {} metrics = {logged} points in {ingest:.1} s ({:.0} points/s)",
        a.steps,
        a.metrics,
        logged as f64 / ingest
    );
    // Read while it runs (memory holds a thinned curve; the store every point kept).
    let time = Instant::now();
    let d = sweeps
        .get_trial(pb::GetTrialRequest {
            sweep_id: id.clone(),
            trial: t.trial,
            max_points: 0,
        })
        .await?
        .into_inner();
    println!(
        "GetTrial: {} of {} stored points (sampled: {}) in {:.2} s",
        d.curve.len(),
        d.curve_points,
        d.curve_sampled,
        time.elapsed().as_secs_f64()
    );
    let notices = sweeps
        .get_sweep(pb::GetSweepRequest {
            sweep_id: id.clone(),
        })
        .await?
        .into_inner()
        .notices;
    for n in notices {
        println!("notice: {n}");
    }
    let before = rss_mib(pid).unwrap_or(f64::NAN);
    let time = Instant::now();
    let path = format!("/api/v1/sweeps/{id}/trials/{}", t.trial);
    let three: Vec<_> = (0..3)
        .map(|_| {
            let (web, path) = (web.clone(), path.clone());
            std::thread::spawn(move || http_get(&web, &path))
        })
        .collect();
    let mut peak = before;
    while !three.iter().all(|h| h.is_finished()) {
        peak = peak.max(rss_mib(pid).unwrap_or(0.0));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut sizes = Vec::new();
    for h in three {
        let (code, bytes) = h.join().map_err(|_| anyhow!("a request panicked"))??;
        if code != 200 {
            return Err(anyhow!("GET {path}: HTTP {code}"));
        }
        sizes.push(bytes);
    }
    println!(
        "3 × GET {path} at once: {:.2} s, {} bytes each; RSS {before:.0} → peak {peak:.0} MiB",
        time.elapsed().as_secs_f64(),
        sizes[0]
    );
    let time = Instant::now();
    let (mut pages, mut points, mut after) = (0, 0usize, 0u32);
    loop {
        let p = sweeps
            .get_curve(pb::GetCurveRequest {
                sweep_id: id.clone(),
                trial: t.trial,
                name: String::new(),
                after_step: after,
                limit: 0,
            })
            .await?
            .into_inner();
        pages += 1;
        points += p.points.len();
        if p.next_after_step == 0 {
            break;
        }
        after = p.next_after_step;
    }
    println!(
        "GetCurve: every stored point ({points}) in {pages} pages, {:.1} s",
        time.elapsed().as_secs_f64()
    );
    w.complete(pb::CompleteRequest {
        worker_id: me.clone(),
        sweep_id: t.sweep_id.clone(),
        trial: t.trial,
        attempt: t.attempt,
        lease_id: t.lease_id.clone(),
        outcome: pb::TrialOutcome::Finished as i32,
        ..Default::default()
    })
    .await?;
    let cli = sibling("coordinator")?;
    for (what, args) in [
        ("trial", vec!["trial".to_string(), id.clone(), "1".into()]),
        (
            "report",
            vec![
                "report".into(),
                id.clone(),
                "--out".into(),
                dir.join("report").display().to_string(),
            ],
        ),
    ] {
        let time = Instant::now();
        let out = std::process::Command::new(&cli)
            .args(&args)
            .args(["--coordinator", &url])
            .output()?;
        if !out.status.success() {
            return Err(anyhow!(
                "coordinator {what}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        println!(
            "coordinator {what}: ok in {:.2} s",
            time.elapsed().as_secs_f64()
        );
    }
    let hwm = peak_rss_mib(pid).unwrap_or(f64::NAN);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end = rss_mib(pid).unwrap_or(f64::NAN);
    println!(
        "coordinator RSS: start {base:.0} MiB, after reports {after_ingest:.0} MiB, VmHWM {hwm:.0} MiB, end {end:.0} MiB"
    );
    let bytes = std::fs::metadata(dir.join("curves.db")).map_or(0, |m| m.len());
    println!("store: {:.0} MiB", bytes as f64 / (1 << 20) as f64);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
