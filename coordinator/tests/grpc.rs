//! The server as a gRPC client sees it: reflection lists every service (what grpcurl uses),
//! health answers SERVING, and garbage requests get a status, never a crash.

use std::time::Duration;

use coordinator::engine::{Engine, EngineOptions};
use sweep_proto::pb;
use tokio_stream::StreamExt;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

async fn start(name: &str) -> (String, tokio::sync::oneshot::Sender<()>) {
    let p = std::env::temp_dir().join(format!("sweep-grpc-{name}-{}.db", std::process::id()));
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
    }
    let engine = Engine::open(&p, EngineOptions::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(coordinator::service::serve(engine, listener, async {
        let _ = rx.await;
    }));
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
            metrics: Default::default(),
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
