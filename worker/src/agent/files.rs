//! The agent's side of a program trial's files (docs/PROGRAMS.md): sent to the coordinator in
//! chunks, before the trial's completion, while the attempt still holds the lease.

use std::time::Duration;

use sweep_proto::conn::AuthChannel;
use sweep_proto::pb;
use sweep_proto::pb::coordinator_client::CoordinatorClient;
use sweep_proto::transfer::{chunks, Chunks};

use super::Backoff;

/// How long the files are retried while the coordinator cannot be reached (as a completion).
const SEND_FOR: Duration = Duration::from_secs(600);

/// Sends `files` as the attempt `trial`'s; `Err` says why they were not kept.
pub(super) async fn send(
    client: &CoordinatorClient<AuthChannel>,
    max_backoff: Duration,
    worker: &str,
    trial: &pb::Trial,
    files: Vec<(String, Vec<u8>)>,
) -> Result<(), String> {
    let count = files.len();
    let (list, data) = sweep_proto::files::join(files);
    let bytes = data.len();
    let header = pb::FilesHeader {
        worker_id: worker.to_string(),
        lease_id: trial.lease_id.clone(),
        sweep_id: trial.sweep_id.clone(),
        trial: trial.trial,
        attempt: trial.attempt,
        files: list,
        ..Default::default()
    };
    // One copy of the bytes, shared by every try; each chunk is made as it is sent.
    let pieces: Chunks<pb::FilesChunk> = chunks(header, std::sync::Arc::new(data));
    let deadline = tokio::time::Instant::now() + SEND_FOR;
    let mut backoff = Backoff::new(max_backoff);
    loop {
        let mut c = client.clone();
        match c.save_files(tokio_stream::iter(pieces.clone())).await {
            Ok(r) => {
                let r = r.into_inner();
                return if r.accepted {
                    tracing::info!(files = count, bytes, "files kept");
                    Ok(())
                } else {
                    Err(r.reason)
                };
            }
            Err(s)
                if s.code() == tonic::Code::InvalidArgument
                    || s.code() == tonic::Code::NotFound
                    || tokio::time::Instant::now() >= deadline =>
            {
                return Err(s.message().to_string());
            }
            Err(s) => {
                let pause = backoff.step();
                tracing::warn!(error = %s.message(), retry_in_ms = pause.as_millis() as u64, "files not sent; retrying");
                tokio::time::sleep(pause).await;
            }
        }
    }
}
