//! One server for every listener: gRPC (the `Coordinator` and `Sweeps` services, health,
//! reflection), HTTP (the dashboard and the JSON API), Prometheus metrics and the engine's
//! reaper, started together and stopped by one shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sweep_proto::pb::coordinator_server::CoordinatorServer;
use sweep_proto::pb::sweeps_server::SweepsServer;

use crate::engine::Engine;
use crate::metrics::CoordinatorMetrics;
use crate::service::{CoordinatorService, SweepsService, MAX_MESSAGE_BYTES};
use crate::{http, net};

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
    /// The uploads' stall window (`None`: [`crate::service::UPLOAD_STALL`]); tests shorten it.
    pub upload_stall: Option<Duration>,
    /// A line written to stderr once every listener is bound (`serve`'s "listening on …", which
    /// scripts wait for before they connect to any port).
    pub announce: Option<String>,
}

/// HTTP/2 flow-control windows of the gRPC port: a stream's, and a connection's (32 streams').
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 32 * STREAM_WINDOW;

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

/// How long open streams and calls get to end after a shutdown signal before they are cut.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
    let coord = CoordinatorServer::new(CoordinatorService::new(
        engine.clone(),
        metrics.clone(),
        opts.upload_stall.unwrap_or(crate::service::UPLOAD_STALL),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let sweeps_svc = SweepsService::new(engine.clone(), metrics.clone());
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
                (Some((cert, key)), Some((cert_path, _))) => Some(
                    http::tls_acceptor(cert, key).map_err(|reason| ServeError::Tls {
                        flag: "--tls-cert",
                        path: cert_path.clone(),
                        reason,
                    })?,
                ),
                _ => None,
            };
            let scheme = if acceptor.is_some() { "https" } else { "http" };
            if let Ok(local) = listener.local_addr() {
                tracing::info!(%local, scheme, "dashboard at /, HTTP API at /api/v1");
                eprintln!("coordinator dashboard on {scheme}://{local}/ (HTTP API at /api/v1)");
            }
            let app = http::router(
                sweeps_svc.clone(),
                auth.clone(),
                metrics.clone(),
                engine.clone(),
                http::guard::Guard::new(&opts.http_allow_hosts, opts.token.is_some()),
            );
            Some(tokio::spawn(http::serve(
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
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        // An upload waiting for memory leaves up to a stream window unread, which also holds
        // the connection's window: room for many, so that they never stop the one being read.
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW));
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
    if let Some(line) = &opts.announce {
        eprintln!("{line}");
    }
    let reaper = engine.spawn_reaper();
    net::raise_fd_limit();
    let incoming = tokio_stream::wrappers::ReceiverStream::new(net::incoming(listener, net::GRPC));
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
