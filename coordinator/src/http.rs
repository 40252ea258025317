//! The JSON API over HTTP (`coordinator serve --http-listen ADDR`), for dashboards and scripts.
//! Every handler calls the same `Sweeps` service the gRPC clients use, so the answers are the
//! same, as JSON (the shapes of `status --json`, `leaderboard --json` and `trial --json`):
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /api/v1/sweeps` | every sweep's summary, oldest first |
//! | `GET /api/v1/sweeps/{id}` | the leaderboard: `{schema_version, sweep, metric, trials}` |
//! | `GET /api/v1/sweeps/{id}/trials/{n}` | one trial: params, metrics, curve, confusion |
//! | `POST /api/v1/sweeps/{id}/pause` (`resume`, `stop`) | the sweep's summary after the change |
//! | `GET /api/v1/sweeps/{id}/events` | server-sent events: `update` with `{sweep, trial}` at once and on every change; the stream ends with the sweep |
//! | `GET /metrics` | the Prometheus metrics (as `--metrics-listen`) |
//!
//! With a token, every `/api/v1` call needs `Authorization: Bearer TOKEN` (401 otherwise).
//! Errors are `{"error": "..."}` with 400, 401, 404 or 503.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use sweep_proto::conn::ServerAuth;
use sweep_proto::pb;
use sweep_proto::pb::sweeps_server::Sweeps;
use tonic::Request;

use crate::export;
use crate::metrics::CoordinatorMetrics;
use crate::service::SweepsService;

#[derive(Clone)]
struct App {
    sweeps: SweepsService,
    auth: ServerAuth,
    metrics: Arc<CoordinatorMetrics>,
    engine: crate::engine::Engine,
}

/// The API router.
pub fn router(
    sweeps: SweepsService,
    auth: ServerAuth,
    metrics: Arc<CoordinatorMetrics>,
    engine: crate::engine::Engine,
) -> Router {
    Router::new()
        .route("/api/v1/sweeps", get(list))
        .route("/api/v1/sweeps/{id}", get(leaderboard))
        .route("/api/v1/sweeps/{id}/trials/{n}", get(trial))
        .route("/api/v1/sweeps/{id}/events", get(events))
        .route("/api/v1/sweeps/{id}/{action}", post(control))
        .route("/metrics", get(render_metrics))
        .with_state(App {
            sweeps,
            auth,
            metrics,
            engine,
        })
}

fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({"error": msg.into()}))).into_response()
}

fn from_status(s: tonic::Status) -> Response {
    let code = match s.code() {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    err(code, s.message())
}

/// The 401 answer when the call lacks the token, else `None`.
fn reject(app: &App, headers: &HeaderMap) -> Option<Response> {
    let h = headers.get("authorization").map(|v| v.as_bytes());
    (!app.auth.accepts(h)).then(|| {
        err(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send Authorization: Bearer TOKEN",
        )
    })
}

async fn list(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(r) = reject(&app, &headers) {
        return r;
    }
    match app
        .sweeps
        .list_sweeps(Request::new(pb::ListSweepsRequest {}))
        .await
    {
        Ok(r) => Json(Value::Array(
            r.into_inner()
                .sweeps
                .iter()
                .map(export::info_json)
                .collect(),
        ))
        .into_response(),
        Err(s) => from_status(s),
    }
}

async fn leaderboard(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = reject(&app, &headers) {
        return r;
    }
    match app
        .sweeps
        .leaderboard(Request::new(pb::LeaderboardRequest {
            sweep_id: id,
            top: 0,
        }))
        .await
    {
        Ok(r) => Json(export::leaderboard_json(&r.into_inner())).into_response(),
        Err(s) => from_status(s),
    }
}

async fn trial(
    State(app): State<App>,
    headers: HeaderMap,
    Path((id, n)): Path<(String, String)>,
) -> Response {
    if let Some(r) = reject(&app, &headers) {
        return r;
    }
    let Ok(n) = n.parse::<u64>() else {
        return err(
            StatusCode::BAD_REQUEST,
            format!("trial number: expected an integer ≥ 1, got {n:?}"),
        );
    };
    match app
        .sweeps
        .get_trial(Request::new(pb::GetTrialRequest {
            sweep_id: id,
            trial: n,
        }))
        .await
    {
        Ok(r) => Json(export::trial_json(&r.into_inner())).into_response(),
        Err(s) => from_status(s),
    }
}

async fn control(
    State(app): State<App>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    if let Some(r) = reject(&app, &headers) {
        return r;
    }
    let action = match action.as_str() {
        "pause" => pb::Control::Pause,
        "resume" => pb::Control::Resume,
        "stop" => pb::Control::Stop,
        other => {
            return err(
                StatusCode::NOT_FOUND,
                format!("unknown action {other:?}: expected pause, resume or stop"),
            )
        }
    };
    match app
        .sweeps
        .control_sweep(Request::new(pb::ControlSweepRequest {
            sweep_id: id,
            action: action as i32,
        }))
        .await
    {
        Ok(r) => Json(export::info_json(&r.into_inner())).into_response(),
        Err(s) => from_status(s),
    }
}

/// Live updates as server-sent events, from the same stream as the Watch RPC: one `update`
/// event per change with the sweep's summary and the trial that changed (or null).
async fn events(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio_stream::StreamExt;
    if let Some(r) = reject(&app, &headers) {
        return r;
    }
    let stream = match app
        .sweeps
        .watch(Request::new(pb::WatchRequest { sweep_id: id }))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return from_status(s),
    };
    let sse = stream.map(|ev| {
        let data = match ev {
            Ok(ev) => json!({
                "sweep": ev.sweep.as_ref().map(export::info_json),
                "trial": ev.trial.as_ref().map(export::summary_json),
            }),
            Err(s) => json!({"error": s.message()}),
        };
        Ok::<_, std::convert::Infallible>(Event::default().event("update").data(data.to_string()))
    });
    Sse::new(sse)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn render_metrics(State(app): State<App>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            worker::metrics::CONTENT_TYPE,
        )],
        app.metrics.render(&app.engine),
    )
        .into_response()
}
