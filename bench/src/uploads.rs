//! `sweep-bench uploads`: large checkpoint uploads at once against one coordinator, each from
//! the holder of a real lease: how much memory the coordinator takes while it receives and
//! stores them, beside the memory budget it documents for uploads (docs/PROTOCOL.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use clap::Args;
use sweep_proto::pb;

use crate::common::*;

/// Large checkpoint uploads at once: the coordinator's memory beside its upload budget.
#[derive(Debug, Args)]
pub(crate) struct UploadArgs {
    /// Uploads sent at once, each for a trial of its own
    #[arg(long, default_value_t = 3)]
    pub(crate) uploads: usize,
    /// MiB of each upload (at most 256, the largest checkpoint)
    #[arg(long, default_value_t = 250)]
    pub(crate) mib: usize,
}

pub(crate) async fn run_uploads(a: &UploadArgs) -> Result<()> {
    if a.mib == 0 || a.mib > 256 || a.uploads == 0 || a.uploads > 64 {
        return Err(anyhow!("--mib is 1 to 256 and --uploads 1 to 64"));
    }
    let dir = std::env::temp_dir().join(format!("sweep-uploads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| anyhow!(e.to_string()))?;
    let (server, url) = start_server(&dir.join("uploads.db"), &[])?;
    let pid = server.0.id();
    let ch = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| anyhow!(e.to_string()))?
        .connect()
        .await
        .map_err(|e| anyhow!(e.to_string()))?;
    let values: Vec<String> = (0..a.uploads).map(|i| i.to_string()).collect();
    pb::sweeps_client::SweepsClient::new(ch.clone())
        .create_sweep(pb::CreateSweepRequest {
            config: format!(
                "method: grid\ntrainer: synthetic\nparameters:\n  x: {{values: [{}]}}\n",
                values.join(", ")
            ),
            name: String::new(),
        })
        .await
        .map_err(|s| anyhow!(s.to_string()))?;
    let mut w = pb::coordinator_client::CoordinatorClient::new(ch)
        .max_encoding_message_size(sweep_proto::conn::MAX_MESSAGE_BYTES)
        .max_decoding_message_size(sweep_proto::conn::MAX_MESSAGE_BYTES);
    let me = w
        .register(pb::RegisterRequest {
            host: "bench".into(),
            cores: 2,
            slots: a.uploads as u32,
            version: "bench".into(),
            worker_id: String::new(),
            gpus: Vec::new(),
        })
        .await
        .map_err(|s| anyhow!(s.to_string()))?
        .into_inner()
        .worker_id;
    let mut trials = Vec::new();
    for _ in 0..a.uploads {
        let t = w
            .lease(pb::LeaseRequest {
                worker_id: me.clone(),
                wait_ms: 1000,
                trainers: vec!["synthetic".into()],
                sweep_id: String::new(),
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow!(s.to_string()))?
            .into_inner()
            .trial
            .ok_or_else(|| anyhow!("no trial to lease"))?;
        trials.push(t);
    }
    // The payloads are made before the clock starts (and are the bench's own memory).
    let payloads: Vec<Arc<Vec<u8>>> = (0..a.uploads)
        .map(|k| {
            Arc::new(
                (0..a.mib << 20)
                    .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ k as u8)
                    .collect(),
            )
        })
        .collect();
    let base = rss_mib(pid).unwrap_or(f64::NAN);
    let started = Instant::now();
    let sends = trials.into_iter().zip(payloads).map(|(t, data)| {
        let mut w = w.clone();
        let me = me.clone();
        tokio::spawn(async move {
            let header = pb::CheckpointHeader {
                worker_id: me,
                lease_id: t.lease_id.clone(),
                sweep_id: t.sweep_id.clone(),
                trial: t.trial,
                attempt: t.attempt,
                epoch: 1,
                ..Default::default()
            };
            let pieces = sweep_proto::transfer::chunks::<pb::CheckpointChunk>(header, data);
            let r = w.save_checkpoint(tokio_stream::iter(pieces)).await;
            (r.map(|r| r.into_inner()), started.elapsed())
        })
    });
    let handles: Vec<_> = sends.collect();
    let mut peak = base;
    while !handles.iter().all(|h| h.is_finished()) {
        peak = peak.max(rss_mib(pid).unwrap_or(0.0));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut done = Vec::new();
    for h in handles {
        let (r, at) = h.await.map_err(|e| anyhow!(e.to_string()))?;
        let r = r.map_err(|s| anyhow!(s.to_string()))?;
        if !r.accepted {
            return Err(anyhow!(format!("an upload was refused: {}", r.reason)));
        }
        done.push(at.as_secs_f64());
    }
    let hwm = peak_rss_mib(pid).unwrap_or(f64::NAN);
    let after = rss_mib(pid).unwrap_or(f64::NAN);
    println!(
        "{} uploads of {} MiB at once, each from a lease holder; coordinator memory budget for uploads: {} MiB",
        a.uploads,
        a.mib,
        coordinator::service::UPLOAD_BUDGET_MIB
    );
    println!("coordinator RSS before: {base:.0} MiB; peak sampled: {peak:.0} MiB; VmHWM: {hwm:.0} MiB; after: {after:.0} MiB");
    println!(
        "peak above the start: {:.0} MiB ({:.2} of the budget)",
        hwm - base,
        (hwm - base) / coordinator::service::UPLOAD_BUDGET_MIB as f64
    );
    let total = (a.uploads * a.mib) as f64;
    let last = done.iter().copied().fold(0.0, f64::max);
    println!(
        "all kept in {last:.1} s ({:.0} MiB/s end to end); each upload done at {:?} s",
        total / last,
        done.iter().map(|s| format!("{s:.1}")).collect::<Vec<_>>()
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
