//! The server as a gRPC client sees it: reflection lists every service (what grpcurl uses),
//! health answers SERVING, and garbage requests get a status, never a crash.

use std::time::Duration;

use coordinator::engine::{Engine, EngineOptions};
use coordinator::server::ServeOptions;
use sweep_proto::conn::{channel, ClientOptions, Secret};
use sweep_proto::pb;
use tokio_stream::StreamExt;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

async fn start(name: &str) -> (String, tokio::sync::oneshot::Sender<()>) {
    start_with(name, ServeOptions::default(), "http").await
}

async fn start_with(
    name: &str,
    opts: ServeOptions,
    scheme: &str,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let p = std::env::temp_dir().join(format!("sweep-grpc-{name}-{}.db", std::process::id()));
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
    }
    let engine = Engine::open(&p, EngineOptions::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = if scheme == "https" {
        format!("https://localhost:{port}")
    } else {
        format!("http://127.0.0.1:{port}")
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        coordinator::server::serve(
            engine,
            listener,
            async {
                let _ = rx.await;
            },
            &opts,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    (url, tx)
}

#[tokio::test]
async fn reflection_lists_every_service_and_health_serves() {
    let (url, _stop) = start("reflect").await;
    let ch = tonic::transport::Endpoint::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = ServerReflectionClient::new(ch.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = c
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = resp.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer {msg:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "sweep.v1.Coordinator",
        "sweep.v1.Sweeps",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
    let r = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: "sweep.v1.Coordinator".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        r.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test]
async fn garbage_requests_get_a_status() {
    let (url, _stop) = start("garbage").await;
    let mut w = pb::coordinator_client::CoordinatorClient::connect(url.clone())
        .await
        .unwrap();
    let mut s = pb::sweeps_client::SweepsClient::connect(url).await.unwrap();
    let e = s
        .get_sweep(pb::GetSweepRequest {
            sweep_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = s
        .create_sweep(pb::CreateSweepRequest {
            config: "method: [".into(),
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // A Report for a trial the worker does not hold: told to abandon it.
    let r = w
        .report(pb::ReportRequest {
            worker_id: "w".into(),
            lease_id: "x".into(),
            sweep_id: "nope".into(),
            trial: 1,
            attempt: 1,
            epoch: 1,
            metrics: [("loss".to_string(), f64::NAN)].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.action, pb::Action::Abandon as i32);
    let e = w
        .report(pb::ReportRequest {
            worker_id: "w".into(),
            lease_id: "x".into(),
            sweep_id: "s".into(),
            trial: 1,
            attempt: 1,
            epoch: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        tonic::Code::InvalidArgument,
        "epoch 0 is out of range"
    );
    let c = w
        .complete(pb::CompleteRequest {
            worker_id: "w".into(),
            lease_id: "x".into(),
            sweep_id: "nope".into(),
            trial: 9,
            attempt: 3,
            outcome: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!c.accepted);
    let e = w
        .complete(pb::CompleteRequest {
            worker_id: "w".into(),
            sweep_id: "s".into(),
            outcome: 99,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // The server still serves.
    assert!(s.list_sweeps(pb::ListSweepsRequest {}).await.is_ok());
}

const SMALL: &str = "method: grid\ntrainer: synthetic\nparameters:\n  x: {values: [1, 2]}\n";

fn sweeps(
    url: &str,
    token: Option<&str>,
) -> pb::sweeps_client::SweepsClient<sweep_proto::conn::AuthChannel> {
    pb::sweeps_client::SweepsClient::new(
        channel(&ClientOptions {
            url: url.into(),
            token: token.and_then(Secret::new),
            tls_ca: None,
        })
        .unwrap(),
    )
}

#[tokio::test]
async fn every_call_but_health_needs_the_token() {
    let opts = ServeOptions {
        token: Secret::new("s3cret-token"),
        tls: None,
        ..Default::default()
    };
    let (url, _stop) = start_with("token", opts, "http").await;
    for token in [None, Some("wrong"), Some("s3cret-token-and-more")] {
        let e = sweeps(&url, token)
            .create_sweep(pb::CreateSweepRequest {
                config: SMALL.into(),
                name: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{token:?}");
        assert!(!e.message().contains("s3cret"), "the token is not echoed");
        let e = sweeps(&url, token)
            .list_sweeps(pb::ListSweepsRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let mut w = pb::coordinator_client::CoordinatorClient::new(
            channel(&ClientOptions {
                url: url.clone(),
                token: token.and_then(Secret::new),
                tls_ca: None,
            })
            .unwrap(),
        );
        let e = w
            .lease(pb::LeaseRequest {
                worker_id: "w".into(),
                wait_ms: 0,
                trainers: Vec::new(),
                sweep_id: String::new(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }
    // Reflection is behind the token too; health is not.
    let ch = tonic::transport::Endpoint::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut r = ServerReflectionClient::new(ch.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let e = r
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .err()
        .map(|e| e.code());
    assert_eq!(e, Some(tonic::Code::Unauthenticated));
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
    let st = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.status, 1, "SERVING");
    // Nothing changed, and the right token works.
    let mut ok = sweeps(&url, Some("s3cret-token"));
    assert!(ok
        .list_sweeps(pb::ListSweepsRequest {})
        .await
        .unwrap()
        .into_inner()
        .sweeps
        .is_empty());
    ok.create_sweep(pb::CreateSweepRequest {
        config: SMALL.into(),
        name: String::new(),
    })
    .await
    .unwrap();
    assert_eq!(
        ok.list_sweeps(pb::ListSweepsRequest {})
            .await
            .unwrap()
            .into_inner()
            .sweeps
            .len(),
        1
    );
}

#[tokio::test]
async fn tls_with_a_self_signed_certificate() {
    let dir = std::env::temp_dir().join(format!("sweep-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let web = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let opts = ServeOptions {
        token: Secret::new("t"),
        tls: Some((cert.clone(), key.clone())),
        http_listen: Some(web.clone()),
        ..Default::default()
    };
    let (url, _stop) = start_with("tls", opts, "https").await;
    let mut c = pb::sweeps_client::SweepsClient::new(
        channel(&ClientOptions {
            url: url.clone(),
            token: Secret::new("t"),
            tls_ca: Some(cert.clone()),
        })
        .unwrap(),
    );
    c.create_sweep(pb::CreateSweepRequest {
        config: SMALL.into(),
        name: String::new(),
    })
    .await
    .unwrap();
    // Plain text to a TLS port fails; so does trusting another certificate.
    let plain = url.replace("https://", "http://");
    assert!(sweeps(&plain, Some("t"))
        .list_sweeps(pb::ListSweepsRequest {})
        .await
        .is_err());
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let other_pem = dir.join("other.pem");
    std::fs::write(&other_pem, other.cert.pem()).unwrap();
    let mut c2 = pb::sweeps_client::SweepsClient::new(
        channel(&ClientOptions {
            url,
            token: Secret::new("t"),
            tls_ca: Some(other_pem),
        })
        .unwrap(),
    );
    let e = c2.list_sweeps(pb::ListSweepsRequest {}).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");

    // The dashboard's port speaks HTTPS with the same certificate, behind the same token.
    let ca = std::fs::read(&cert).unwrap();
    let ok = https_get(&web, &ca, "/api/v1/sweeps", Some("t"))
        .await
        .unwrap();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("\"method\""), "{ok}");
    let page = https_get(&web, &ca, "/", None).await.unwrap();
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("<!DOCTYPE html>"),
        "{page}"
    );
    let no = https_get(&web, &ca, "/api/v1/sweeps", None).await.unwrap();
    assert!(no.starts_with("HTTP/1.1 401"), "{no}");
    // Another CA: the handshake fails. Plain HTTP: no HTTP answer.
    let other_ca = other.cert.pem().into_bytes();
    assert!(https_get(&web, &other_ca, "/", None).await.is_err());
    let mut plain = tokio::net::TcpStream::connect(&web).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut got)).await;
    assert!(
        !got.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

/// One HTTPS/1.1 GET to `addr` as `localhost`, trusting only `ca_pem`; the whole response.
async fn https_get(
    addr: &str,
    ca_pem: &[u8],
    path: &str,
    token: Option<&str>,
) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn oversized_messages_and_configs_are_refused_and_the_server_goes_on() {
    let (url, _stop) = start("limits").await;
    let mut s = sweeps(&url, None).max_encoding_message_size(64 * 1024 * 1024);
    let huge = format!("# {}\n{SMALL}", "x".repeat(17 * 1024 * 1024));
    let e = s
        .create_sweep(pb::CreateSweepRequest {
            config: huge,
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::OutOfRange, "{e}");
    let many: String = (0..300)
        .map(|i| format!("  p{i}: {{value: 1}}\n"))
        .collect();
    let e = s
        .create_sweep(pb::CreateSweepRequest {
            config: format!("method: grid\ntrainer: synthetic\nparameters:\n{many}"),
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("parameters") && e.message().contains("256"),
        "{e}"
    );
    let e = s
        .create_sweep(pb::CreateSweepRequest {
            config: "method: grid\nparameters:\n  hidden_size: {values: [64, 16384]}\n  num_layers: {value: 5}\n".into(),
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("parameters.hidden_size") && e.message().contains("GiB"),
        "{e}"
    );
    assert!(s
        .list_sweeps(pb::ListSweepsRequest {})
        .await
        .unwrap()
        .into_inner()
        .sweeps
        .is_empty());
}

fn worker_client(
    url: &str,
) -> pb::coordinator_client::CoordinatorClient<sweep_proto::conn::AuthChannel> {
    pb::coordinator_client::CoordinatorClient::new(
        channel(&ClientOptions {
            url: url.into(),
            token: None,
            tls_ca: None,
        })
        .unwrap(),
    )
}

/// A checkpoint header for `trial` announcing `bytes` (and a digest no payload will match).
fn checkpoint_header(worker: &str, trial: &pb::Trial, bytes: u64) -> pb::CheckpointHeader {
    pb::CheckpointHeader {
        worker_id: worker.into(),
        lease_id: trial.lease_id.clone(),
        sweep_id: trial.sweep_id.clone(),
        trial: trial.trial,
        attempt: trial.attempt,
        epoch: 1,
        bytes,
        sha256: "0".repeat(64),
        ..Default::default()
    }
}

/// A whole small checkpoint upload for `trial`.
async fn small_checkpoint(
    w: &mut pb::coordinator_client::CoordinatorClient<sweep_proto::conn::AuthChannel>,
    worker: &str,
    trial: &pb::Trial,
) -> Result<pb::SaveCheckpointResponse, tonic::Status> {
    let pieces = sweep_proto::transfer::chunks::<pb::CheckpointChunk>(
        checkpoint_header(worker, trial, 0),
        std::sync::Arc::new(vec![9u8; 1000]),
    );
    w.save_checkpoint(tokio_stream::iter(pieces))
        .await
        .map(tonic::Response::into_inner)
}

/// An upload that announces the largest checkpoint and then sends a byte every 100 ms, for as
/// long as the stream lives: the call's answer.
fn trickle(
    mut w: pb::coordinator_client::CoordinatorClient<sweep_proto::conn::AuthChannel>,
    header: pb::CheckpointHeader,
) -> tokio::task::JoinHandle<Result<pb::SaveCheckpointResponse, tonic::Status>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let _ = tx
            .send(pb::CheckpointChunk {
                header: Some(header),
                data: Vec::new(),
            })
            .await;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let byte = pb::CheckpointChunk {
                header: None,
                data: vec![1],
            };
            if tx.send(byte).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        w.save_checkpoint(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map(tonic::Response::into_inner)
    })
}

#[tokio::test]
async fn uploads_are_checked_against_their_lease_first_and_a_stalled_one_is_cut() {
    let opts = ServeOptions {
        upload_stall: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let (url, _stop) = start_with("uploads", opts, "http").await;
    sweeps(&url, None)
        .create_sweep(pb::CreateSweepRequest {
            config: SMALL.into(),
            name: String::new(),
        })
        .await
        .unwrap();
    let mut w = worker_client(&url);
    let me = w
        .register(pb::RegisterRequest {
            host: "h".into(),
            cores: 2,
            slots: 2,
            version: "test".into(),
            worker_id: String::new(),
            gpus: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    let lease = || {
        let mut w = w.clone();
        let me = me.clone();
        async move {
            w.lease(pb::LeaseRequest {
                worker_id: me,
                wait_ms: 0,
                trainers: vec!["synthetic".into()],
                sweep_id: String::new(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .trial
            .expect("a trial to lease")
        }
    };
    let (a, b) = (lease().await, lease().await);
    let max = sweep_proto::conn::MAX_CHECKPOINT_BYTES;

    // A lease that does not exist is refused from the header alone, while its sender still
    // holds the stream open: no memory is set aside, nothing more is read.
    let fake = pb::Trial {
        lease_id: "not-a-lease".into(),
        ..a.clone()
    };
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        trickle(w.clone(), checkpoint_header(&me, &fake, max)),
    )
    .await
    .expect("a made-up lease is answered at once")
    .unwrap()
    .expect("a refusal, not an error");
    assert!(
        !refused.accepted && refused.reason.contains("stale attempt"),
        "{refused:?}"
    );

    // The holder of lease a trickles the largest checkpoint: it takes the whole memory
    // budget, and a second upload for the same lease is refused while it is in flight.
    let mut trickler = trickle(w.clone(), checkpoint_header(&me, &a, max));
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match small_checkpoint(&mut w, &me, &a).await {
            Err(s) if s.code() == tonic::Code::ResourceExhausted => break,
            // The trickler's header had not arrived yet (the small one went first, or made the
            // trickler's own start collide): start it again.
            Ok(_) | Err(_) => {
                if trickler.is_finished() {
                    trickler = trickle(w.clone(), checkpoint_header(&me, &a, max));
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < end,
            "the trickling upload never got in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Lease b's small checkpoint waits for memory, which the trickler gives back when it is
    // cut for making no progress (a byte every 100 ms is under 64 KiB a second).
    // (A sender told to retry while memory is taken retries, as the worker does.)
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    let kept = loop {
        match small_checkpoint(&mut w, &me, &b).await {
            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                assert!(
                    tokio::time::Instant::now() < end,
                    "the stalled upload was never cut"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => break other.unwrap(),
        }
    };
    assert!(kept.accepted, "{kept:?}");
    let cut = tokio::time::timeout(Duration::from_secs(60), trickler)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(cut.code(), tonic::Code::InvalidArgument, "{cut:?}");
    assert!(cut.message().contains("stalled"), "{cut:?}");
    // Lease a's slot is free again.
    assert!(small_checkpoint(&mut w, &me, &a).await.unwrap().accepted);
}
