//! The gRPC services: `Coordinator` (workers) and `Sweeps` (people), plus grpc.health.v1 and
//! server reflection. Wire types are converted to domain types here, and engine errors become
//! `tonic::Status` exactly once, here.

pub mod convert;
pub mod watch;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sweep_proto::pb;
use sweep_proto::pb::coordinator_server::{Coordinator, CoordinatorServer};
use sweep_proto::pb::sweeps_server::{Sweeps, SweepsServer};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::config::SweepSpec;
use crate::engine::{Action, Attempt, Complete, Engine, EngineError, Outcome, Report, SweepState};
use crate::metrics::CoordinatorMetrics;
use convert::{sweep_info, trial_detail, trial_summary};

/// Largest message either side accepts (a confusion matrix of 1,024 classes fits).
pub use sweep_proto::conn::MAX_MESSAGE_BYTES;

/// Most concurrent calls (HTTP/2 streams) one connection may have open.
pub const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// How `serve` guards its door: the token every call but health must carry, and TLS.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// The shared token (`--token` / `SWEEP_TOKEN`); `None` lets every client in.
    pub token: Option<sweep_proto::conn::Secret>,
    /// PEM certificate chain and private key files (`--tls-cert`, `--tls-key`).
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Where to serve Prometheus metrics (`--metrics-listen`): `http://ADDR/metrics`.
    pub metrics_listen: Option<String>,
    /// Where to serve the dashboard, the HTTP JSON API and `/metrics` (`--http-listen`); HTTPS
    /// with `tls` when that is set.
    pub http_listen: Option<String>,
    /// Host names the dashboard port answers to besides IP addresses, `localhost` and this
    /// machine's name (`--http-allow-host`; checked only without a token).
    pub http_allow_hosts: Vec<String>,
}

/// Why `serve` could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A TLS file cannot be read or used.
    #[error("{flag} {path}: {reason}")]
    Tls {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The metrics listener cannot be bound.
    #[error("{0}")]
    Metrics(String),
    /// The server failed.
    #[error("server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// What a stream's last message says when the coordinator shuts down (clients reconnect).
pub const SHUTTING_DOWN: &str = "the coordinator is shutting down";

/// How long open streams and calls get to end after a shutdown signal before they are cut.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
}

/// The people-facing service.
#[derive(Debug, Clone)]
pub struct SweepsService {
    engine: Engine,
    metrics: Arc<CoordinatorMetrics>,
    hubs: watch::Hubs,
}

impl SweepsService {
    /// Follows sweep `id` (the Watch RPC and the dashboard's event stream): its summary now,
    /// with the config, and the shared looks from then on.
    pub fn follow(&self, id: &str) -> Result<(pb::SweepInfo, watch::Follower), Status> {
        id_ok("sweep_id", id)?;
        watch::Follower::start(&self.hubs, &self.engine, id)
    }
}

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
        let lease = self
            .engine
            .lease(
                &r.worker_id,
                &r.trainers,
                only,
                Duration::from_millis(r.wait_ms),
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
                params: sweep_proto::json::object_to_pb(&l.params),
                trainer: l.trainer.0,
                trainer_options: sweep_proto::json::object_to_pb(&l.trainer.1),
                metric: l.metric,
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
        let action = self
            .engine
            .report(Report {
                attempt: Attempt {
                    worker: &r.worker_id,
                    sweep: &r.sweep_id,
                    trial: r.trial,
                    attempt: r.attempt,
                    lease_id: &r.lease_id,
                },
                epoch: r.epoch,
                metrics,
            })
            .await?;
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
            _ => {
                return Err(Status::invalid_argument(format!(
                    "outcome: unknown value {}",
                    r.outcome
                )))
            }
        };
        let confusion = r.confusion.map(|c| (c.labels, c.counts));
        let (accepted, reason) = self
            .engine
            .complete(Complete {
                attempt: Attempt {
                    worker: &r.worker_id,
                    sweep: &r.sweep_id,
                    trial: r.trial,
                    attempt: r.attempt,
                    lease_id: &r.lease_id,
                },
                outcome,
                metrics: r.metrics.into_iter().collect(),
                confusion,
                error: r.error,
                output: r.output,
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
        Ok(Response::new(pb::HeartbeatResponse {
            drop_lease_ids: self.engine.heartbeat(&r.worker_id, &r.lease_ids, r.leaving),
        }))
    }
}

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
        self.engine.control(&r.sweep_id, action).await?;
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
        let detail = self.engine.with_sweep(&r.sweep_id, |s| {
            s.trial(r.trial)
                .map(|t| (trial_detail(s, t, s.rank_of(r.trial)), t.is_whole()))
        })?;
        let Some((mut detail, whole)) = detail else {
            return Err(Status::not_found(format!(
                "sweep {} has no trial {}",
                r.sweep_id, r.trial
            )));
        };
        if !whole {
            // An ended trial's curve, confusion matrix and output are in the store only.
            let files = self.engine.trial_files(&r.sweep_id, r.trial).await?;
            convert::add_files(&mut detail, files).map_err(Status::internal)?;
        }
        Ok(Response::new(detail))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let _t = self.metrics.rpc("Watch");
        let req = req.into_inner();
        let detail = req.detail();
        let (first, mut follower) = self.follow(&req.sweep_id)?;
        let stream = async_stream(move |tx| async move {
            let over = first.is_over();
            let first = pb::WatchEvent {
                sweep: Some(first),
                changes: Vec::new(),
            };
            if tx.send(Ok(first)).await.is_err() || over {
                return;
            }
            loop {
                let next = follower.next().await;
                let ev = match next {
                    watch::Next::Look(look) => look.event(detail),
                    watch::Next::Behind(info) => pb::WatchEvent {
                        sweep: Some(*info),
                        changes: Vec::new(),
                    },
                    watch::Next::End => return,
                    watch::Next::Closing => {
                        let _ = tx.send(Err(Status::unavailable(SHUTTING_DOWN))).await;
                        return;
                    }
                };
                let over = ev.sweep.as_ref().is_some_and(pb::SweepInfo::is_over);
                if tx.send(Ok(ev)).await.is_err() || over {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// A stream fed by a task through a bounded channel.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<pb::WatchEvent, Status>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::WatchEvent, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Serves both services, health and reflection on `listener` until `shutdown` resolves. Every
/// service but health requires `opts.token` when one is set.
pub async fn serve(
    engine: Engine,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    opts: &ServeOptions,
) -> Result<(), ServeError> {
    use tonic::service::interceptor::InterceptedService;
    let auth = sweep_proto::conn::ServerAuth::new(opts.token.as_ref());
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<CoordinatorServer<CoordinatorService>>()
        .await;
    health_reporter
        .set_serving::<SweepsServer<SweepsService>>()
        .await;
    // Health follows the store: NOT_SERVING while it refuses writes (a failed write not yet
    // read back, or a store file deleted, replaced or truncated under the coordinator).
    let health_task = {
        let mut store_health = engine.store_health();
        let reporter = health_reporter.clone();
        tokio::spawn(async move {
            loop {
                let status = match store_health.borrow_and_update().problem() {
                    None => tonic_health::ServingStatus::Serving,
                    Some(_) => tonic_health::ServingStatus::NotServing,
                };
                for name in [
                    "",
                    <CoordinatorServer<CoordinatorService> as tonic::server::NamedService>::NAME,
                    <SweepsServer<SweepsService> as tonic::server::NamedService>::NAME,
                ] {
                    reporter.set_service_status(name, status).await;
                }
                if store_health.changed().await.is_err() {
                    return;
                }
            }
        })
    };
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sweep_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .ok();
    let metrics = CoordinatorMetrics::new(&engine);
    let coord = CoordinatorServer::new(CoordinatorService {
        engine: engine.clone(),
        metrics: metrics.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let sweeps_svc = SweepsService {
        engine: engine.clone(),
        metrics: metrics.clone(),
        hubs: watch::Hubs::default(),
    };
    // The certificate and key, read once: gRPC and the HTTP listener serve the same identity.
    let tls_pem = match &opts.tls {
        Some((cert, key)) => {
            let read = |flag: &'static str, path: &std::path::PathBuf| {
                std::fs::read(path).map_err(|e| ServeError::Tls {
                    flag,
                    path: path.clone(),
                    reason: e.to_string(),
                })
            };
            Some((read("--tls-cert", cert)?, read("--tls-key", key)?))
        }
        None => None,
    };
    let http_server = match &opts.http_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| ServeError::Metrics(format!("--http-listen {addr}: {e}")))?;
            let acceptor = match (&tls_pem, &opts.tls) {
                (Some((cert, key)), Some((cert_path, _))) => {
                    Some(crate::http::tls_acceptor(cert, key).map_err(|reason| {
                        ServeError::Tls {
                            flag: "--tls-cert",
                            path: cert_path.clone(),
                            reason,
                        }
                    })?)
                }
                _ => None,
            };
            let scheme = if acceptor.is_some() { "https" } else { "http" };
            if let Ok(local) = listener.local_addr() {
                tracing::info!(%local, scheme, "dashboard at /, HTTP API at /api/v1");
                eprintln!("coordinator dashboard on {scheme}://{local}/ (HTTP API at /api/v1)");
            }
            let app = crate::http::router(
                sweeps_svc.clone(),
                auth.clone(),
                metrics.clone(),
                engine.clone(),
                crate::http::guard::Guard::new(&opts.http_allow_hosts, opts.token.is_some()),
            );
            Some(tokio::spawn(crate::http::serve(
                listener,
                acceptor,
                app,
                engine.closing(),
            )))
        }
        None => None,
    };
    let sweeps = SweepsServer::new(sweeps_svc)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut builder = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(256)
        .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS))
        .http2_keepalive_interval(Some(Duration::from_secs(20)));
    if let (Some((cert_pem, key_pem)), Some((cert, _))) = (&tls_pem, &opts.tls) {
        let identity = tonic::transport::Identity::from_pem(cert_pem, key_pem);
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .map_err(|e| ServeError::Tls {
                flag: "--tls-cert",
                path: cert.clone(),
                reason: e.to_string(),
            })?;
    }
    let metrics_server = match &opts.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| ServeError::Metrics(format!("--metrics-listen {addr}: {e}")))?;
            if let Ok(local) = listener.local_addr() {
                tracing::info!(%local, "metrics at /metrics");
                eprintln!("coordinator metrics on http://{local}/metrics");
            }
            let (m, e) = (metrics.clone(), engine.clone());
            let closing = engine.closing();
            Some(tokio::spawn(async move {
                if let Err(err) =
                    worker::metrics::serve(listener, Arc::new(move || m.render(&e)), closing).await
                {
                    tracing::warn!(error = %err, "metrics listener");
                }
            }))
        }
        None => None,
    };
    let reaper = engine.spawn_reaper();
    crate::net::raise_fd_limit();
    let incoming = tokio_stream::wrappers::ReceiverStream::new(crate::net::incoming(
        listener,
        crate::net::MAX_GRPC_CONNECTIONS,
    ));
    let router = builder
        .add_service(health)
        .add_service(InterceptedService::new(coord, auth.clone()))
        .add_service(InterceptedService::new(sweeps, auth.clone()));
    let router = match reflection {
        Some(r) => router.add_service(InterceptedService::new(r, auth)),
        None => router,
    };
    // One shutdown for every listener: the signal starts the engine's shutdown (long polls
    // return, Watch and event streams end with SHUTTING_DOWN, the reaper stops), gRPC, HTTP
    // and metrics stop accepting and drain; whatever is still open after SHUTDOWN_GRACE is
    // cut. Then the store is checkpointed, so its file alone holds everything.
    let signal = {
        let engine = engine.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down");
            engine.begin_shutdown();
        }
    };
    let server = router.serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(server);
    let grace = async {
        engine.closing().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let res = tokio::select! {
        r = &mut server => r,
        () = grace => {
            tracing::warn!("gRPC calls still open {SHUTDOWN_GRACE:?} after the shutdown began: cut");
            Ok(())
        }
    };
    engine.begin_shutdown();
    for (what, h) in [("HTTP", http_server), ("metrics", metrics_server)] {
        let Some(mut h) = h else { continue };
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut h).await.is_err() {
            tracing::warn!("{what} connections still open after the shutdown grace: cut");
            h.abort();
        }
    }
    let _ = reaper.await;
    health_task.abort();
    if let Err(e) = engine.checkpoint().await {
        tracing::warn!(error = %e, "the store's log was not folded into its file");
    }
    Ok(res?)
}

/// The address a listener is bound to, as a client URL.
pub fn url_of(addr: SocketAddr) -> String {
    format!("http://{addr}")
}
