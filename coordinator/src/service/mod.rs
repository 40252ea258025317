//! The gRPC services: `Coordinator` (workers) and `Sweeps` (people), plus grpc.health.v1 and
//! server reflection. Wire types are converted to domain types here, and engine errors become
//! `tonic::Status` exactly once, here.

pub mod convert;
pub mod watch;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sweep_proto::pb;
use sweep_proto::pb::coordinator_server::Coordinator;
use sweep_proto::pb::sweeps_server::Sweeps;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use sweep_proto::conn::MAX_CHECKPOINT_BYTES;
use sweep_proto::files::MAX_FILES_BYTES;
use sweep_proto::transfer::{Chunk, Incoming};

use crate::config::SweepSpec;
use crate::engine::{Action, Attempt, Complete, Engine, EngineError, Outcome, SweepState};
use crate::metrics::CoordinatorMetrics;
use convert::{sweep_info, trial_detail, trial_summary};

/// Most workers one `ListWorkers` reply lists (the most recently heard from): a reply stays
/// well under the message size limit however many workers registered.
pub const MAX_LISTED_WORKERS: usize = 10_000;

/// Largest message either side accepts (a confusion matrix of 1,024 classes fits).
pub use sweep_proto::conn::MAX_MESSAGE_BYTES;

/// What a stream's last message says when the coordinator shuts down (clients reconnect).
pub const SHUTTING_DOWN: &str = "the coordinator is shutting down";

/// How an UNAVAILABLE caused by the coordinator's store begins (clients tell it apart from an
/// unreachable coordinator by it).
pub const STORE_UNAVAILABLE: &str = "the coordinator cannot keep work now";

impl From<EngineError> for Status {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::UnknownSweep(_) | EngineError::UnknownTrial(..) => {
                Status::not_found(e.to_string())
            }
            EngineError::Invalid(m) => Status::invalid_argument(m),
            EngineError::Store(s) => Status::unavailable(format!("{STORE_UNAVAILABLE}: {s}")),
            EngineError::Corrupt(m) => Status::data_loss(m),
        }
    }
}

/// The worker-facing service.
#[derive(Debug, Clone)]
pub struct CoordinatorService {
    engine: Engine,
    metrics: Arc<CoordinatorMetrics>,
    /// MiB of memory that uploads being received may hold at once, across all of them.
    uploads: Arc<tokio::sync::Semaphore>,
    /// The uploads in flight, one per lease and kind.
    in_flight: Arc<std::sync::Mutex<std::collections::HashSet<(&'static str, String)>>>,
    /// Within each such window an upload must make progress, or it is cut.
    stall: Duration,
}

/// Memory for uploads being received and stored, in MiB: more uploads wait for their turn.
/// Each holds [`UPLOAD_MEMORY_FACTOR`] times its size, so that this bounds the memory they
/// take; the largest (256 MiB) fits alone.
pub const UPLOAD_BUDGET_MIB: usize = 768;

/// The memory an upload takes while it is received and stored, per byte of it, as measured
/// (`sweep-bench uploads`: one 250 MiB checkpoint takes the coordinator 756 MiB above its
/// start at the peak): the bytes received, and SQLite's copies while it writes the blob.
const UPLOAD_MEMORY_FACTOR: u64 = 3;

/// The stall window of uploads: a sender that delivers less than
/// [`sweep_proto::transfer::MIN_PROGRESS_BYTES`] within it is cut and its memory freed.
pub const UPLOAD_STALL: Duration = Duration::from_secs(20);

/// What an upload came to.
enum Received<H> {
    /// The attempt does not hold its lease: why (nothing past the header was read).
    Refused(String),
    /// Its header and bytes, and the memory they hold until dropped.
    Got(UploadHold, H, Vec<u8>),
}

/// An upload's memory and its place among the uploads in flight, both given back on drop.
struct UploadHold {
    _memory: tokio::sync::OwnedSemaphorePermit,
    _slot: InFlight,
}

/// One lease's upload of one kind in flight; removed from the set when dropped.
struct InFlight {
    set: Arc<std::sync::Mutex<std::collections::HashSet<(&'static str, String)>>>,
    key: (&'static str, String),
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// The people-facing service.
#[derive(Debug, Clone)]
pub struct SweepsService {
    engine: Engine,
    metrics: Arc<CoordinatorMetrics>,
    hubs: watch::Hubs,
}

impl CoordinatorService {
    /// The worker-facing service over `engine`.
    pub fn new(engine: Engine, metrics: Arc<CoordinatorMetrics>, stall: Duration) -> Self {
        CoordinatorService {
            engine,
            metrics,
            uploads: Arc::new(tokio::sync::Semaphore::new(UPLOAD_BUDGET_MIB)),
            in_flight: Arc::default(),
            stall,
        }
    }
}

impl CoordinatorService {
    /// An upload (`what` names it in errors): its header, checked by `check` and then against
    /// the lease it names (`attempt`) before any more is read; one upload of each kind per
    /// lease at a time; then its bytes, received within the memory budget and held there
    /// until the caller has handed them to the engine — bounded memory whatever the number of
    /// senders — from a sender that keeps making progress (a stalled one is cut, its memory
    /// freed).
    async fn receive<C: Chunk>(
        &self,
        stream: tonic::Streaming<C>,
        what: &'static str,
        max: u64,
        check: impl FnOnce(&C::Header) -> Result<(), Status>,
        attempt: impl for<'h> Fn(&'h C::Header) -> Attempt<'h>,
    ) -> Result<Received<C::Header>, Status> {
        let bad = |e: String| Status::invalid_argument(format!("{what}: {e}"));
        let incoming = Incoming::start(stream, max, self.stall)
            .await
            .map_err(bad)?;
        check(&incoming.header)?;
        let a = attempt(&incoming.header);
        id_ok("sweep_id", a.sweep)?;
        id_ok("lease_id", a.lease_id)?;
        // Before any memory is set aside: only the holder of a live lease may upload.
        if let Err(reason) = self.engine.holds_lease(&a) {
            return Ok(Received::Refused(reason));
        }
        let key = (what, format!("{}/{}/{}", a.sweep, a.trial, a.lease_id));
        if !self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.clone())
        {
            return Err(Status::resource_exhausted(format!(
                "{what}: an upload for this attempt is already being received; one at a time"
            )));
        }
        let slot = InFlight {
            set: self.in_flight.clone(),
            key,
        };
        let bytes = C::totals(&incoming.header).0 * UPLOAD_MEMORY_FACTOR;
        let mib = bytes.div_ceil(1 << 20).clamp(1, UPLOAD_BUDGET_MIB as u64) as u32;
        // A waiting upload's unread chunks hold its connection's flow-control window, so it
        // waits one stall window at most, then its sender is told to retry.
        let memory = tokio::time::timeout(
            self.stall,
            self.uploads.clone().acquire_many_owned(mib),
        )
        .await
        .map_err(|_| {
            Status::resource_exhausted(format!(
                "{what}: the coordinator is receiving other uploads ({UPLOAD_BUDGET_MIB} MiB of memory for them); retry"
            ))
        })?
        .map_err(|_| Status::unavailable(SHUTTING_DOWN))?;
        let (h, data) = incoming.finish().await.map_err(bad)?;
        let hold = UploadHold {
            _memory: memory,
            _slot: slot,
        };
        Ok(Received::Got(hold, h, data))
    }
}

impl SweepsService {
    /// The people-facing service over `engine`, with its own watch hubs.
    pub fn new(engine: Engine, metrics: Arc<CoordinatorMetrics>) -> Self {
        SweepsService {
            engine,
            metrics,
            hubs: watch::Hubs::default(),
        }
    }

    /// Follows sweep `id` (the Watch RPC and the dashboard's event stream): its summary now,
    /// with the config, and the shared looks from then on.
    pub fn follow(&self, id: &str) -> Result<(pb::SweepInfo, watch::Follower), Status> {
        id_ok("sweep_id", id)?;
        watch::Follower::start(&self.hubs, &self.engine, id)
    }
}

/// `fn $name(&$header) -> Attempt`: the attempt an upload's header names (both kinds of
/// header name it with the same fields).
macro_rules! attempt_of {
    ($name:ident, $header:ty) => {
        fn $name(h: &$header) -> Attempt<'_> {
            Attempt {
                worker: &h.worker_id,
                sweep: &h.sweep_id,
                trial: h.trial,
                attempt: h.attempt,
                lease_id: &h.lease_id,
            }
        }
    };
}
attempt_of!(checkpoint_attempt, pb::CheckpointHeader);
attempt_of!(files_attempt, pb::FilesHeader);

fn id_ok(what: &str, id: &str) -> Result<(), Status> {
    if id.is_empty() || id.len() > 128 {
        return Err(Status::invalid_argument(format!(
            "{what}: expected a non-empty id of at most 128 bytes"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let _t = self.metrics.rpc("Register");
        let r = req.into_inner();
        let id = self
            .engine
            .register(
                Some(r.worker_id),
                r.host,
                r.cores,
                r.slots.max(1),
                r.version,
                r.gpus.into_iter().map(convert::gpu_info).collect(),
            )
            .await?;
        let ttl = self.engine.options().lease_ttl;
        Ok(Response::new(pb::RegisterResponse {
            worker_id: id,
            lease_ttl_ms: ttl.as_millis() as u64,
            heartbeat_interval_ms: (ttl / 3).as_millis() as u64,
        }))
    }

    async fn lease(
        &self,
        req: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        let _t = self.metrics.rpc("Lease");
        let peer = req.remote_addr();
        let r = req.into_inner();
        id_ok("worker_id", &r.worker_id)?;
        if r.trainers.len() > 16 || r.trainers.iter().any(|t| t.len() > 32) {
            return Err(Status::invalid_argument(
                "trainers: at most 16 names of at most 32 bytes",
            ));
        }
        let only = (!r.sweep_id.is_empty()).then_some(r.sweep_id.as_str());
        // An agent of one sweep learns that it is over instead of polling forever.
        let ended = |engine: &Engine| -> Result<bool, Status> {
            match only {
                None => Ok(false),
                Some(id) => Ok(engine.with_sweep(id, |s| s.state.is_terminal())?),
            }
        };
        if ended(&self.engine)? {
            return Ok(Response::new(pb::LeaseResponse {
                trial: None,
                sweep_ended: true,
            }));
        }
        if r.advertise.len() > 255 || r.rendezvous_port > u32::from(u16::MAX) {
            return Err(Status::invalid_argument(
                "advertise: a host name of at most 255 bytes; rendezvous_port: a port (at most 65535)",
            ));
        }
        // Where a gang's other members reach this worker: the host it says, else the address
        // its call came from.
        let at = (r.rendezvous_port > 0)
            .then(|| {
                let addr = if r.advertise.is_empty() {
                    peer?.ip().to_canonical().to_string()
                } else {
                    r.advertise.clone()
                };
                Some(crate::engine::Rendezvous {
                    addr,
                    port: r.rendezvous_port,
                })
            })
            .flatten();
        let lease = self
            .engine
            .lease_at(
                &r.worker_id,
                &r.trainers,
                only,
                Duration::from_millis(r.wait_ms),
                at.as_ref(),
            )
            .await?;
        let sweep_ended = lease.is_none() && ended(&self.engine)?;
        Ok(Response::new(pb::LeaseResponse {
            sweep_ended,
            trial: lease.map(|l| pb::Trial {
                sweep_id: l.sweep_id,
                trial: l.trial,
                attempt: l.attempt,
                lease_id: l.lease_id,
                params: convert::params(&l.params),
                trainer: l.trainer.0,
                trainer_options: sweep_proto::json::object_to_pb(&l.trainer.1),
                metric: l.metric,
                resume: l.resume.map(convert::mark),
                gpus: l.gpus,
                gang: l.gang.map(|g| pb::GangPlace {
                    rank: g.rank,
                    size: g.size,
                    master_addr: g.master_addr,
                    master_port: g.master_port,
                }),
            }),
        }))
    }

    async fn report(
        &self,
        req: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let _t = self.metrics.rpc("Report");
        let r = req.into_inner();
        id_ok("sweep_id", &r.sweep_id)?;
        let metrics: Vec<(String, f64)> = r.metrics.into_iter().collect();
        let attempt = Attempt {
            worker: &r.worker_id,
            sweep: &r.sweep_id,
            trial: r.trial,
            attempt: r.attempt,
            lease_id: &r.lease_id,
        };
        self.engine.name_run(attempt, &r.run_name).await?;
        let rows = if r.rows.is_empty() {
            vec![(r.epoch, metrics)]
        } else {
            r.rows
                .into_iter()
                .map(|row| (row.step, row.metrics.into_iter().collect()))
                .collect()
        };
        let action = self.engine.report_rows(attempt, rows).await?;
        let (action, reason) = match action {
            Action::Continue => (pb::Action::Continue, String::new()),
            Action::Stop(why) => (pb::Action::Stop, why),
            Action::Abandon(why) => (pb::Action::Abandon, why),
        };
        Ok(Response::new(pb::ReportResponse {
            action: action as i32,
            reason,
        }))
    }

    async fn complete(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let _t = self.metrics.rpc("Complete");
        let r = req.into_inner();
        id_ok("sweep_id", &r.sweep_id)?;
        let outcome = match pb::TrialOutcome::try_from(r.outcome) {
            Ok(pb::TrialOutcome::Finished) => Outcome::Finished,
            Ok(pb::TrialOutcome::Stopped) => Outcome::Stopped,
            Ok(pb::TrialOutcome::Diverged) => Outcome::Diverged,
            Ok(pb::TrialOutcome::Failed) => Outcome::Failed,
            Ok(pb::TrialOutcome::Released) => Outcome::Released,
            Ok(pb::TrialOutcome::WorkerFault) => Outcome::WorkerFault,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "outcome: unknown value {}",
                    r.outcome
                )))
            }
        };
        let confusion = r.confusion.map(|c| (c.labels, c.counts));
        let attempt = Attempt {
            worker: &r.worker_id,
            sweep: &r.sweep_id,
            trial: r.trial,
            attempt: r.attempt,
            lease_id: &r.lease_id,
        };
        // Named before it ends (a name given after the last report).
        self.engine.name_run(attempt, &r.run_name).await?;
        let (accepted, reason) = self
            .engine
            .complete(Complete {
                attempt,
                outcome,
                metrics: r.metrics.into_iter().collect(),
                confusion,
                error: r.error,
                output: r.output,
                model: r.model.map(|m| (m.card, m.weights)),
            })
            .await?;
        Ok(Response::new(pb::CompleteResponse { accepted, reason }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let _t = self.metrics.rpc("Heartbeat");
        let r = req.into_inner();
        let beat = self.engine.heartbeat(&r.worker_id, &r.lease_ids, r.leaving);
        Ok(Response::new(pb::HeartbeatResponse {
            drop_lease_ids: beat.drop,
            hand_back_lease_ids: beat.hand_back,
        }))
    }

    async fn save_checkpoint(
        &self,
        req: Request<tonic::Streaming<pb::CheckpointChunk>>,
    ) -> Result<Response<pb::SaveCheckpointResponse>, Status> {
        let _t = self.metrics.rpc("SaveCheckpoint");
        let received = self
            .receive(
                req.into_inner(),
                "checkpoint",
                MAX_CHECKPOINT_BYTES,
                |_| Ok(()),
                checkpoint_attempt,
            )
            .await?;
        let (_hold, h, data) = match received {
            Received::Got(hold, h, data) => (hold, h, data),
            Received::Refused(reason) => {
                return Ok(Response::new(pb::SaveCheckpointResponse {
                    accepted: false,
                    reason,
                }))
            }
        };
        let (accepted, reason) = self
            .engine
            .save_checkpoint(checkpoint_attempt(&h), h.epoch, h.batch, data)
            .await?;
        Ok(Response::new(pb::SaveCheckpointResponse {
            accepted,
            reason,
        }))
    }

    async fn save_files(
        &self,
        req: Request<tonic::Streaming<pb::FilesChunk>>,
    ) -> Result<Response<pb::SaveFilesResponse>, Status> {
        let _t = self.metrics.rpc("SaveFiles");
        let received = self
            .receive(
                req.into_inner(),
                "files",
                MAX_FILES_BYTES,
                |h| {
                    id_ok("sweep_id", &h.sweep_id)?;
                    Ok(self.engine.check_files_size(&h.sweep_id, h.bytes)?)
                },
                files_attempt,
            )
            .await?;
        let (_hold, h, data) = match received {
            Received::Got(hold, h, data) => (hold, h, data),
            Received::Refused(reason) => {
                return Ok(Response::new(pb::SaveFilesResponse {
                    accepted: false,
                    reason,
                }))
            }
        };
        let list = sweep_proto::files::split(&h.files, &data)
            .map_err(|e| Status::invalid_argument(format!("files: {e}")))?
            .into_iter()
            .map(|(f, _)| crate::store::ProgramFile {
                path: f.path.clone(),
                bytes: f.bytes,
                sha256: f.sha256.clone(),
            })
            .collect();
        let (accepted, reason) = self
            .engine
            .save_program_files(files_attempt(&h), list, data)
            .await?;
        Ok(Response::new(pb::SaveFilesResponse { accepted, reason }))
    }

    type GetCheckpointStream = ChunkStream;

    async fn get_checkpoint(
        &self,
        req: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let _t = self.metrics.rpc("GetCheckpoint");
        let r = req.into_inner();
        id_ok("sweep_id", &r.sweep_id)?;
        let found = self
            .engine
            .trial_checkpoint(Attempt {
                worker: &r.worker_id,
                sweep: &r.sweep_id,
                trial: r.trial,
                attempt: r.attempt,
                lease_id: &r.lease_id,
            })
            .await?;
        let Some((mark, data)) = found else {
            return Err(Status::not_found(format!(
                "trial {} of sweep {} has no checkpoint",
                r.trial, r.sweep_id
            )));
        };
        let header = pb::CheckpointHeader {
            sweep_id: r.sweep_id,
            trial: r.trial,
            attempt: mark.attempt,
            epoch: mark.epoch,
            batch: mark.batch,
            ..Default::default()
        };
        let chunks = sweep_proto::transfer::chunks(header, Arc::new(data));
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks.map(Ok)))))
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::CheckpointChunk, Status>> + Send>>;

type FilesStream = Pin<Box<dyn Stream<Item = Result<pb::FilesChunk, Status>> + Send>>;

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Sweeps for SweepsService {
    async fn create_sweep(
        &self,
        req: Request<pb::CreateSweepRequest>,
    ) -> Result<Response<pb::CreateSweepResponse>, Status> {
        let _t = self.metrics.rpc("CreateSweep");
        let r = req.into_inner();
        let spec =
            SweepSpec::parse(&r.config).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let name = Some(r.name).filter(|n| !n.is_empty());
        let id = self.engine.create_sweep(spec, name).await?;
        Ok(Response::new(pb::CreateSweepResponse { sweep_id: id }))
    }

    async fn get_sweep(
        &self,
        req: Request<pb::GetSweepRequest>,
    ) -> Result<Response<pb::SweepInfo>, Status> {
        let _t = self.metrics.rpc("GetSweep");
        let id = req.into_inner().sweep_id;
        let workers = self.engine.live_workers();
        Ok(Response::new(
            self.engine.with_sweep(&id, |s| sweep_info(s, workers))?,
        ))
    }

    async fn list_sweeps(
        &self,
        _req: Request<pb::ListSweepsRequest>,
    ) -> Result<Response<pb::ListSweepsResponse>, Status> {
        let _t = self.metrics.rpc("ListSweeps");
        let workers = self.engine.live_workers();
        let sweeps = self
            .engine
            .sweep_ids()
            .iter()
            .filter_map(|id| self.engine.with_sweep(id, |s| sweep_info(s, workers)).ok())
            .collect();
        Ok(Response::new(pb::ListSweepsResponse { sweeps }))
    }

    async fn list_workers(
        &self,
        _req: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let _t = self.metrics.rpc("ListWorkers");
        let workers = self
            .engine
            .workers()
            .into_iter()
            .take(MAX_LISTED_WORKERS)
            .map(|(id, w, connected)| convert::worker_summary(id, &w, connected))
            .collect();
        Ok(Response::new(pb::ListWorkersResponse { workers }))
    }

    async fn control_sweep(
        &self,
        req: Request<pb::ControlSweepRequest>,
    ) -> Result<Response<pb::SweepInfo>, Status> {
        let _t = self.metrics.rpc("ControlSweep");
        let r = req.into_inner();
        let action = match pb::Control::try_from(r.action) {
            Ok(pb::Control::Pause) => SweepState::Paused,
            Ok(pb::Control::Resume) => SweepState::Running,
            Ok(pb::Control::Stop) => SweepState::Stopped,
            _ => {
                return Err(Status::invalid_argument(
                    "action: expected pause, resume or stop",
                ))
            }
        };
        self.engine
            .control(&r.sweep_id, action, r.hand_back)
            .await?;
        let workers = self.engine.live_workers();
        Ok(Response::new(
            self.engine
                .with_sweep(&r.sweep_id, |s| sweep_info(s, workers))?,
        ))
    }

    async fn leaderboard(
        &self,
        req: Request<pb::LeaderboardRequest>,
    ) -> Result<Response<pb::LeaderboardResponse>, Status> {
        let _t = self.metrics.rpc("Leaderboard");
        let r = req.into_inner();
        let workers = self.engine.live_workers();
        let resp = self.engine.with_sweep(&r.sweep_id, |s| {
            let trials: Vec<pb::TrialSummary> = if r.top == 0 && r.sample > 0 {
                let keep = crate::report::sample(s.ranked_len(), r.sample as usize);
                s.ranked()
                    .take_while(|(rank, _)| *rank >= 1)
                    .enumerate()
                    .filter(|(i, _)| keep.contains(i))
                    .map(|(_, (rank, t))| trial_summary(s, t, rank))
                    .collect()
            } else if r.top > 0 {
                let mut top: Vec<pb::TrialSummary> = s
                    .ranked()
                    .take_while(|(rank, _)| *rank >= 1 && *rank <= r.top)
                    .map(|(rank, t)| trial_summary(s, t, rank))
                    .collect();
                if r.running {
                    top.extend(
                        s.running()
                            .filter_map(|n| s.trial(n))
                            .map(|t| trial_summary(s, t, 0)),
                    );
                }
                top
            } else {
                s.ranked()
                    .map(|(rank, t)| trial_summary(s, t, rank))
                    .collect()
            };
            pb::LeaderboardResponse {
                sweep: Some(sweep_info(s, workers)),
                trials,
            }
        })?;
        Ok(Response::new(resp))
    }

    async fn get_trial(
        &self,
        req: Request<pb::GetTrialRequest>,
    ) -> Result<Response<pb::TrialDetail>, Status> {
        let _t = self.metrics.rpc("GetTrial");
        let r = req.into_inner();
        let points = crate::curve::asked(r.max_points);
        let detail = self.engine.with_sweep(&r.sweep_id, |s| {
            s.trial(r.trial).map(|t| {
                let d = trial_detail(s, t, s.rank_of(r.trial), points);
                (d, t.is_whole(), t.curve.is_thinned())
            })
        })?;
        let Some((mut detail, whole, thinned)) = detail else {
            return Err(Status::not_found(format!(
                "sweep {} has no trial {}",
                r.sweep_id, r.trial
            )));
        };
        if !whole {
            // An ended trial's curve, confusion matrix and output are in the store only.
            let files = self
                .engine
                .trial_files(&r.sweep_id, r.trial, points)
                .await?;
            convert::add_files(&mut detail, files).map_err(Status::internal)?;
        } else if thinned {
            // Memory holds only some of a long curve's points; the store has them all.
            let curve = self
                .engine
                .sampled_curve(&r.sweep_id, r.trial, points)
                .await?;
            convert::add_curve(&mut detail, curve);
        }
        let keeps_files = self
            .engine
            .with_sweep(&r.sweep_id, |s| s.spec.max_files_mb() > 0)?;
        if let Some((_, list)) = match keeps_files {
            true => {
                self.engine
                    .program_files(&r.sweep_id, Some(r.trial))
                    .await?
            }
            false => None,
        } {
            detail.files = list.into_iter().map(convert::file_info).collect();
        }
        // Attempts are recorded once there is more than one, or the first ended without
        // completing (expired or handed back: the trial waits for its second).
        if detail
            .summary
            .as_ref()
            .is_some_and(|s| s.attempts > 1 || (s.attempts == 1 && s.state == "queued"))
        {
            detail.attempts = self
                .engine
                .attempts(&r.sweep_id, r.trial)
                .await?
                .into_iter()
                .map(convert::attempt)
                .collect();
        }
        Ok(Response::new(detail))
    }

    async fn get_curve(
        &self,
        req: Request<pb::GetCurveRequest>,
    ) -> Result<Response<pb::CurvePage>, Status> {
        let _t = self.metrics.rpc("GetCurve");
        let r = req.into_inner();
        id_ok("sweep_id", &r.sweep_id)?;
        if r.name.len() > 128 {
            return Err(Status::invalid_argument(
                "name: a metric name is 1 to 128 characters",
            ));
        }
        let known = self
            .engine
            .with_sweep(&r.sweep_id, |s| s.trial(r.trial).is_some())?;
        if !known {
            return Err(Status::not_found(format!(
                "sweep {} has no trial {}",
                r.sweep_id, r.trial
            )));
        }
        let (points, next) = self
            .engine
            .curve_page(&r.sweep_id, r.trial, &r.name, r.after_step, r.limit)
            .await?;
        Ok(Response::new(pb::CurvePage {
            points: points
                .into_iter()
                .map(|(step, name, value)| pb::MetricPoint { step, name, value })
                .collect(),
            next_after_step: next.unwrap_or(0),
        }))
    }

    type GetFilesStream = FilesStream;

    async fn get_files(
        &self,
        req: Request<pb::GetFilesRequest>,
    ) -> Result<Response<FilesStream>, Status> {
        let _t = self.metrics.rpc("GetFiles");
        let r = req.into_inner();
        id_ok("sweep_id", &r.sweep_id)?;
        let asked = (r.trial != 0).then_some(r.trial);
        let Some((trial, mut list)) = self.engine.program_files(&r.sweep_id, asked).await? else {
            let keep = self
                .engine
                .with_sweep(&r.sweep_id, |s| s.spec.keep_models)?;
            let which = asked.map_or("any trial".to_string(), |n| format!("trial {n}"));
            return Err(Status::not_found(format!(
                "sweep {} keeps no files of {which}: a program's files (what it writes into wandb.run.dir or SWEEP_FILES_DIR, or saves with wandb.save) are kept for finished or stopped trials while they rank among the best {keep} (keep_models)",
                r.sweep_id
            )));
        };
        if !r.path.is_empty() {
            list.retain(|f| f.path == r.path);
            if list.is_empty() {
                return Err(Status::not_found(format!(
                    "trial {trial} of sweep {} keeps no file {:?}",
                    r.sweep_id, r.path
                )));
            }
        }
        // One file at a time from the store, so that a download holds one file in memory.
        let mut pieces = Vec::new();
        let mut data = Vec::new();
        for f in &list {
            let bytes = self
                .engine
                .program_file(&r.sweep_id, trial, &f.path)
                .await?
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "trial {trial}'s file {:?} was dropped while it was read (the trial left the best keep_models); ask again",
                        f.path
                    ))
                })?;
            data.extend_from_slice(&bytes);
            pieces.push(pb::FileInfo {
                path: f.path.clone(),
                bytes: f.bytes,
                sha256: f.sha256.clone(),
            });
        }
        let header = pb::FilesHeader {
            sweep_id: r.sweep_id,
            trial,
            files: pieces,
            ..Default::default()
        };
        let chunks = sweep_proto::transfer::chunks::<pb::FilesChunk>(header, Arc::new(data));
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks.map(Ok)))))
    }

    async fn get_model(
        &self,
        req: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::ModelFiles>, Status> {
        let _t = self.metrics.rpc("GetModel");
        let r = req.into_inner();
        let trial = (r.trial != 0).then_some(r.trial);
        let Some((trial, card, weights)) = self.engine.model(&r.sweep_id, trial).await? else {
            let (keep, files) = self.engine.with_sweep(&r.sweep_id, |s| {
                (s.spec.keep_models, s.spec.max_files_mb() > 0)
            })?;
            let which = trial.map_or("any trial".to_string(), |n| format!("trial {n}"));
            let instead = if files {
                "; its trials run a program: what they hand back downloads with `coordinator files`"
            } else {
                ""
            };
            return Err(Status::not_found(format!(
                "sweep {} keeps no model of {which}: models are kept for the built-in trainer's finished or stopped trials while they rank among the best {keep} (keep_models){instead}",
                r.sweep_id
            )));
        };
        Ok(Response::new(pb::ModelFiles {
            trial,
            card,
            weights,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let _t = self.metrics.rpc("Watch");
        let req = req.into_inner();
        let detail = req.detail();
        let (first, follower) = self.follow(&req.sweep_id)?;
        let stream = watch::forward(first, follower, move |item| match item {
            watch::Item::First(info) | watch::Item::Behind(info) => Ok(pb::WatchEvent {
                sweep: Some(info.clone()),
                changes: Vec::new(),
            }),
            watch::Item::Look(look) => Ok(look.event(detail)),
            watch::Item::Closing => Err(Status::unavailable(SHUTTING_DOWN)),
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
