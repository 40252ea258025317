//! The agent's side of checkpoints (docs/CHECKPOINTS.md): a trial's uploader, which sends the
//! newest checkpoint to the coordinator while training goes on (an older one not yet sent is
//! skipped), and the fetch of the checkpoint a resumed attempt goes on from.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sweep_proto::conn::{AuthChannel, MAX_CHECKPOINT_BYTES};
use sweep_proto::pb;
use sweep_proto::pb::coordinator_client::CoordinatorClient;
use sweep_proto::transfer::{chunks, Chunks, Incoming};
use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::train::Checkpoint;

/// How long a chunk of a fetched checkpoint may take.
const CHUNK_WAIT: Duration = Duration::from_secs(60);

/// Tries per checkpoint while the coordinator cannot be reached (a newer one replaces it).
const TRIES: u32 = 3;

/// What the uploader and the trial share.
#[derive(Debug, Default)]
struct Slot {
    /// The newest checkpoint not yet taken for sending.
    next: Mutex<Option<Checkpoint>>,
    /// Told when `next` is filled or the trial is over.
    wake: Notify,
    /// No more checkpoints will come.
    closed: AtomicBool,
}

/// Sends a trial's checkpoints, newest first, on the agent's runtime.
#[derive(Debug)]
pub(super) struct Uploader {
    slot: Arc<Slot>,
    task: tokio::task::JoinHandle<Option<(u32, u32)>>,
}

impl Uploader {
    /// An uploader for the attempt `trial` (its sweep, number, attempt, lease) of `worker`.
    pub(super) fn start(
        client: CoordinatorClient<AuthChannel>,
        handle: &Handle,
        worker: &str,
        trial: &pb::Trial,
    ) -> Uploader {
        let slot = Arc::new(Slot::default());
        let header = pb::CheckpointHeader {
            worker_id: worker.to_string(),
            lease_id: trial.lease_id.clone(),
            sweep_id: trial.sweep_id.clone(),
            trial: trial.trial,
            attempt: trial.attempt,
            ..Default::default()
        };
        let task = handle.spawn(send_loop(client, header, slot.clone()));
        Uploader { slot, task }
    }

    /// Hands over the trial's newest checkpoint (replacing one not yet sent).
    pub(super) fn offer(&self, ck: Checkpoint) {
        *self.slot.next.lock().unwrap_or_else(|p| p.into_inner()) = Some(ck);
        self.slot.wake.notify_one();
    }

    /// Sends what is waiting, within `within`; the position of the last checkpoint the
    /// coordinator kept (epoch, batch), if any.
    pub(super) fn finish(self, handle: &Handle, within: Duration) -> Option<(u32, u32)> {
        self.slot.closed.store(true, Ordering::SeqCst);
        self.slot.wake.notify_one();
        let task = self.task;
        handle.block_on(async move {
            let abort = task.abort_handle();
            match tokio::time::timeout(within, task).await {
                Ok(Ok(kept)) => kept,
                _ => {
                    abort.abort();
                    tracing::warn!(
                        within_s = within.as_secs(),
                        "the last checkpoint was not sent in time"
                    );
                    None
                }
            }
        })
    }

    /// Drops what is waiting (the trial is over; its checkpoints are of no use).
    pub(super) fn abandon(self) {
        self.task.abort();
    }
}

async fn send_loop(
    client: CoordinatorClient<AuthChannel>,
    header: pb::CheckpointHeader,
    slot: Arc<Slot>,
) -> Option<(u32, u32)> {
    let mut kept = None;
    loop {
        let next = slot.next.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(ck) = next else {
            if slot.closed.load(Ordering::SeqCst) {
                return kept;
            }
            slot.wake.notified().await;
            continue;
        };
        let at = (ck.at.epoch as u32, ck.at.batch as u32);
        let t0 = Instant::now();
        let Ok(bytes) = tokio::task::spawn_blocking(move || ck.encode()).await else {
            continue;
        };
        let encoded_ms = t0.elapsed().as_secs_f64() * 1e3;
        let h = pb::CheckpointHeader {
            epoch: at.0,
            batch: at.1,
            ..header.clone()
        };
        let bytes = Arc::new(bytes);
        let pieces: Chunks<pb::CheckpointChunk> = chunks(h, bytes.clone());
        for attempt in 1..=TRIES {
            let mut c = client.clone();
            let stream = tokio_stream::iter(pieces.clone());
            match c.save_checkpoint(stream).await {
                Ok(r) => {
                    let r = r.into_inner();
                    if r.accepted {
                        kept = Some(at);
                        tracing::debug!(
                            epoch = at.0,
                            batch = at.1,
                            bytes = bytes.len(),
                            encoded_ms,
                            sent_ms = t0.elapsed().as_secs_f64() * 1e3 - encoded_ms,
                            "checkpoint kept"
                        );
                    } else {
                        tracing::warn!(reason = %r.reason, "checkpoint refused");
                    }
                    break;
                }
                Err(s) => {
                    tracing::warn!(error = %s.message(), attempt, "checkpoint not sent");
                    let newer = slot
                        .next
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_some();
                    if newer || s.code() == tonic::Code::InvalidArgument {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
            }
        }
    }
}

/// The checkpoint the attempt `trial` goes on from, checked (length, digest, decoding); why
/// not, otherwise.
pub(super) fn fetch(
    client: &CoordinatorClient<AuthChannel>,
    handle: &Handle,
    worker: &str,
    trial: &pb::Trial,
) -> Result<Checkpoint, String> {
    let mut c = client.clone();
    let req = pb::GetCheckpointRequest {
        worker_id: worker.to_string(),
        lease_id: trial.lease_id.clone(),
        sweep_id: trial.sweep_id.clone(),
        trial: trial.trial,
        attempt: trial.attempt,
    };
    let (_, bytes) = handle.block_on(async move {
        let stream = c
            .get_checkpoint(req)
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        Incoming::start(stream, MAX_CHECKPOINT_BYTES, CHUNK_WAIT)
            .await?
            .finish()
            .await
    })?;
    Checkpoint::decode(&bytes)
}
