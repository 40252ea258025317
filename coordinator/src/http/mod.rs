//! The JSON API over HTTP (`coordinator serve --http-listen ADDR`), for dashboards and scripts.
//! Every handler calls the same `Sweeps` service the gRPC clients use, so the answers are the
//! same, as JSON (the shapes of `status --json`, `leaderboard --json` and `trial --json`):
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /api/v1/sweeps` | every sweep's summary, oldest first |
//! | `GET /api/v1/sweeps/{id}` | the leaderboard: `{schema_version, sweep, metric, trials}`; `?top=N` the best N only, `&running=true` and the running trials |
//! | `GET /api/v1/sweeps/{id}/trials/{n}` | one trial: params, metrics, curve, confusion; a curve of more than `?points=N` (10,000 unless said, at most 200,000) is sampled, keeping each metric's first, last, lowest and highest points (`curve_points` says how many there are, `curve_sampled` whether these are a sample) |
//! | `GET /api/v1/sweeps/{id}/trials/{n}/curve` | every point of its curve, a page at a time: `?name=M` one metric, `&after=S` after step S, `&limit=N` about N points (at most 100,000); `next_after` asks for the next page, null after the last |
//! | `GET /api/v1/sweeps/{id}/trials/{n}/model.json` (`model.safetensors`) | a kept model's card (weights), docs/MODELS.md; trial `best`: the best-ranked trial's |
//! | `GET /api/v1/sweeps/{id}/trials/{n}/files/{path}` | one file a program trial handed back (the trial's `files` list them), docs/PROGRAMS.md; trial `best`: the best-ranked trial with kept files; bytes to save, but what it logged (`media/`) inline: images as such, HTML in a sandbox |
//! | `POST /api/v1/sweeps/{id}/pause` (`resume`, `stop`) | the sweep's summary after the change |
//! | `GET /api/v1/sweeps/{id}/events` | server-sent events: `update` with `{sweep, changes: [{trial, points}]}` at once and on every change (at most about ten a second: changes close together come together); the stream ends with the sweep |
//! | `GET /metrics` | the Prometheus metrics (as `--metrics-listen`) |
//!
//! With a token, every `/api/v1` call and `/metrics` need `Authorization: Bearer TOKEN` (401
//! otherwise); the pages and their two assets carry no data and need none.
//! Errors are `{"error": "..."}` with 400, 401, 404 or 503.

pub mod guard;

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use sweep_proto::conn::ServerAuth;
use sweep_proto::pb;
use sweep_proto::pb::sweeps_server::Sweeps;
use tonic::Request;

use crate::metrics::CoordinatorMetrics;
use crate::service::SweepsService;
use crate::{export, report};

#[derive(Clone)]
struct App {
    sweeps: SweepsService,
    auth: ServerAuth,
    metrics: Arc<CoordinatorMetrics>,
    engine: crate::engine::Engine,
    figures: Arc<std::sync::Mutex<Figures>>,
}

/// The figures of many trials (`parallel.svg`, `importance.*`) as they were last made, shared
/// by every page that asks: each dashboard page asks every few seconds while a sweep runs.
#[derive(Debug, Default)]
struct Figures {
    made: std::collections::HashMap<(String, String), Figure>,
}

#[derive(Debug)]
struct Figure {
    /// Trials ended (and the sweep's state) when it was made: the same means the same figure.
    ended: (u64, i32),
    at: std::time::Instant,
    bytes: Vec<u8>,
}

/// How long a figure of a sweep that has changed since is still served.
const FIGURE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(5);

impl Figures {
    fn get(&self, key: &(String, String), ended: (u64, i32)) -> Option<Vec<u8>> {
        self.made
            .get(key)
            .filter(|f| f.ended == ended || f.at.elapsed() < FIGURE_MAX_AGE)
            .map(|f| f.bytes.clone())
    }

    fn put(&mut self, key: (String, String), ended: (u64, i32), bytes: Vec<u8>) {
        // Bounded: figures not asked for in a minute go.
        self.made
            .retain(|_, f| f.at.elapsed() < std::time::Duration::from_secs(60));
        self.made.insert(
            key,
            Figure {
                ended,
                at: std::time::Instant::now(),
                bytes,
            },
        );
    }
}

/// The API router.
pub fn router(
    sweeps: SweepsService,
    auth: ServerAuth,
    metrics: Arc<CoordinatorMetrics>,
    engine: crate::engine::Engine,
    guard: guard::Guard,
) -> Router {
    Router::new()
        .route("/api/v1/sweeps", get(list))
        .route("/api/v1/workers", get(workers))
        .route("/api/v1/sweeps/{id}", get(leaderboard))
        .route("/api/v1/sweeps/{id}/trials/{n}", get(trial))
        .route("/api/v1/sweeps/{id}/trials/{n}/curve", get(curve))
        .route("/api/v1/sweeps/{id}/events", get(events))
        .route("/api/v1/sweeps/{id}/{action}", post(control))
        .route("/api/v1/sweeps/{id}/files/{name}", get(sweep_file))
        .route("/api/v1/sweeps/{id}/trials/{n}/{name}", get(trial_file))
        .route(
            "/api/v1/sweeps/{id}/trials/{n}/files/{*path}",
            get(program_file),
        )
        .route("/metrics", get(render_metrics))
        .merge(crate::dashboard::router())
        .with_state(App {
            sweeps,
            auth,
            metrics,
            engine,
            figures: Arc::default(),
        })
        .layer(axum::middleware::from_fn_with_state(guard, guard::check))
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
    let r = app
        .sweeps
        .list_sweeps(Request::new(pb::ListSweepsRequest {}))
        .await;
    json_list(r.map(|r| r.into_inner().sweeps), export::info_json)
}

/// `GET /api/v1/workers`: the known workers and their GPUs.
async fn workers(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(r) = reject(&app, &headers) {
        return r;
    }
    let r = app
        .sweeps
        .list_workers(Request::new(pb::ListWorkersRequest {}))
        .await;
    json_list(r.map(|r| r.into_inner().workers), export::worker_json)
}

/// A list the Sweeps service answered, as a JSON array of `item`s (or its error).
fn json_list<T>(r: Result<Vec<T>, tonic::Status>, item: fn(&T) -> Value) -> Response {
    match r {
        Ok(list) => Json(Value::Array(list.iter().map(item).collect())).into_response(),
        Err(s) => from_status(s),
    }
}

/// `?top=N&running=true` of the leaderboard: the best N and the running trials only.
#[derive(Debug, Default, serde::Deserialize)]
struct BoardQuery {
    #[serde(default)]
    top: u32,
    #[serde(default)]
    running: bool,
}

async fn leaderboard(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<BoardQuery>, QueryRejection>,
) -> Response {
    if let Some(r) = reject(&app, &headers) {
        return r;
    }
    let q = match read_query(
        query,
        "expected ?top=N with N ≥ 0 and running=true or false",
    ) {
        Ok(q) => q,
        Err(m) => return err(StatusCode::BAD_REQUEST, m),
    };
    match app
        .sweeps
        .leaderboard(Request::new(pb::LeaderboardRequest {
            sweep_id: id,
            top: q.top,
            running: q.running,
            sample: 0,
        }))
        .await
    {
        Ok(r) => Json(export::Leaderboard(&r.into_inner())).into_response(),
        Err(s) => from_status(s),
    }
}

/// A query string read, or why not with what was expected (the message of a 400).
fn read_query<T>(query: Result<Query<T>, QueryRejection>, expected: &str) -> Result<T, String> {
    query
        .map(|Query(q)| q)
        .map_err(|e| format!("{} ({expected})", e.body_text()))
}

/// `?points=N` of a trial: about how many curve points (sampled beyond; `crate::curve`).
#[derive(Debug, Default, serde::Deserialize)]
struct TrialQuery {
    #[serde(default)]
    points: u32,
}

async fn trial(
    State(app): State<App>,
    headers: HeaderMap,
    Path((id, n)): Path<(String, String)>,
    query: Result<Query<TrialQuery>, QueryRejection>,
) -> Response {
    if let Some(r) = reject(&app, &headers) {
        return r;
    }
    let n = match trial_number(&n) {
        Ok(n) => n,
        Err(m) => return err(StatusCode::BAD_REQUEST, m),
    };
    let q = match read_query(
        query,
        &format!(
            "expected ?points=N, about how many curve points, at most {}",
            crate::curve::MAX_POINTS
        ),
    ) {
        Ok(q) => q,
        Err(m) => return err(StatusCode::BAD_REQUEST, m),
    };
    match app
        .sweeps
        .get_trial(Request::new(pb::GetTrialRequest {
            sweep_id: id,
            trial: n,
            max_points: q.points,
        }))
        .await
    {
        Ok(r) => Json(export::trial_json(&r.into_inner())).into_response(),
        Err(s) => from_status(s),
    }
}

/// `?name=M&after=S&limit=N` of a curve page.
#[derive(Debug, Default, serde::Deserialize)]
struct CurveQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    after: u32,
    #[serde(default)]
    limit: u32,
}

/// `GET /api/v1/sweeps/{id}/trials/{n}/curve`: every point of a trial's curve, a page at a
/// time (`next_after` asks for the next; null after the last).
async fn curve(
    State(app): State<App>,
    headers: HeaderMap,
    Path((id, n)): Path<(String, String)>,
    query: Result<Query<CurveQuery>, QueryRejection>,
) -> Response {
    if let Some(r) = reject(&app, &headers) {
        return r;
    }
    let n = match trial_number(&n) {
        Ok(n) => n,
        Err(m) => return err(StatusCode::BAD_REQUEST, m),
    };
    let q = match read_query(
        query,
        "expected ?name=METRIC&after=STEP&limit=N, each optional",
    ) {
        Ok(q) => q,
        Err(m) => return err(StatusCode::BAD_REQUEST, m),
    };
    match app
        .sweeps
        .get_curve(Request::new(pb::GetCurveRequest {
            sweep_id: id,
            trial: n,
            name: q.name,
            after_step: q.after,
            limit: q.limit,
        }))
        .await
    {
        Ok(r) => {
            let page = r.into_inner();
            Json(json!({
                "points": page.points.iter().map(|p| json!({"step": p.step, "name": p.name, "value": p.value})).collect::<Vec<_>>(),
                "next_after": (page.next_after_step > 0).then_some(page.next_after_step),
            }))
            .into_response()
        }
        Err(s) => from_status(s),
    }
}

/// `?hand_back=true` of a pause: running trials are handed back after a checkpoint.
#[derive(Debug, Default, serde::Deserialize)]
struct ControlQuery {
    #[serde(default)]
    hand_back: bool,
}

async fn control(
    State(app): State<App>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    query: Result<Query<ControlQuery>, QueryRejection>,
) -> Response {
    if let Some(r) = reject(&app, &headers) {
        return r;
    }
    let q = match read_query(query, "expected ?hand_back=true or false") {
        Ok(q) => q,
        Err(m) => return err(StatusCode::BAD_REQUEST, m),
    };
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
            hand_back: q.hand_back,
        }))
        .await
    {
        Ok(r) => Json(export::info_json(&r.into_inner())).into_response(),
        Err(s) => from_status(s),
    }
}

/// Live updates as server-sent events, from the same stream as the Watch RPC: one `update`
/// event per look (at most about ten a second) with the sweep's summary (its config in the
/// first event only) and `changes`: each trial that changed and its new metric points as
/// `[step, name, value]`.
async fn events(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    use crate::service::watch::{forward, Item};
    use axum::response::sse::{Event, KeepAlive, Sse};
    if let Some(r) = reject(&app, &headers) {
        return r;
    }
    let (first, follower) = match app.sweeps.follow(&id) {
        Ok(f) => f,
        Err(s) => return from_status(s),
    };
    let stream = forward(first, follower, |item| {
        let data = match item {
            Item::First(info) | Item::Behind(info) => event_json(info, &[]),
            // Made once per look, for every page that follows the sweep.
            Item::Look(look) => look
                .text
                .get_or_init(|| event_json(&look.info, &look.changes))
                .clone(),
            Item::Closing => json!({"error": crate::service::SHUTTING_DOWN}).to_string(),
        };
        Ok::<_, std::convert::Infallible>(Event::default().event("update").data(data))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// One event of the dashboard's stream: `{sweep, changes: [{trial, points}]}`, written
/// directly (made once per look for every page, so it is on the path of every change).
fn event_json(info: &pb::SweepInfo, changes: &[pb::TrialChange]) -> String {
    use serde::ser::{SerializeMap, Serializer};
    struct Change<'a>(&'a pb::TrialChange);
    impl serde::Serialize for Change<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(2))?;
            let points: Vec<(u32, &str, Option<f64>)> = self
                .0
                .points
                .iter()
                .map(|p| {
                    (
                        p.step,
                        p.name.as_str(),
                        p.value.is_finite().then_some(p.value),
                    )
                })
                .collect();
            m.serialize_entry("points", &points)?;
            m.serialize_entry("trial", &self.0.trial.as_ref().map(export::Row))?;
            m.end()
        }
    }
    #[derive(serde::Serialize)]
    struct EventJson<'a> {
        changes: Vec<Change<'a>>,
        sweep: Value,
    }
    serde_json::to_string(&EventJson {
        changes: changes.iter().map(Change).collect(),
        sweep: export::info_json(info),
    })
    .unwrap_or_default()
}

/// A trial number from the path, or why it is not one (a 400 answer).
fn trial_number(n: &str) -> Result<u64, String> {
    n.parse::<u64>()
        .map_err(|_| format!("trial number: expected an integer ≥ 1, got {n:?}"))
}

/// Runs a drawing (CPU work) off the async threads; its failure is a 500 answer.
async fn drawn<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(err(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(e) => Err(err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// The content type of a file by its extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("json") => "application/json",
        Some("csv") => "text/csv; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A file download: its bytes with the content type and a file name.
fn download(name: &str, bytes: Vec<u8>) -> Response {
    use axum::http::header;
    (
        [
            (header::CONTENT_TYPE, content_type(name).to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            // A report or SVG opened from here runs nothing and loads nothing.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:".to_string(),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// `GET /api/v1/sweeps/{id}/trials/{n}/files/{path}`: one file a program trial handed back,
/// as opaque bytes (whatever its name says, a browser saves it and runs nothing of it).
async fn program_file(
    State(app): State<App>,
    headers: HeaderMap,
    Path((id, n, path)): Path<(String, String, String)>,
) -> Response {
    use axum::http::header;
    if let Some(r) = reject(&app, &headers) {
        return r;
    }
    let trial = if n == "best" {
        0
    } else {
        match trial_number(&n) {
            Ok(n) => n,
            Err(m) => return err(StatusCode::BAD_REQUEST, m),
        }
    };
    let (path, bytes) = match kept_file(&app, &id, trial, path).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let base = path.rsplit('/').next().unwrap_or("file");
    let plain: String = base
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    let encoded: String = base
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (kind, disposition, policy) = media_type(&path);
    (
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("{disposition}; filename=\"{plain}\"; filename*=UTF-8''{encoded}"),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::CONTENT_SECURITY_POLICY, policy.to_string()),
        ],
        bytes,
    )
        .into_response()
}

/// How a trial's file is served: (content type, disposition, content security policy). What
/// its program logged (`media/`: wandb.Image as PNG, JPEG or GIF, wandb.Html) is shown inline
/// — the HTML in a sandbox, an origin of its own that reaches nothing of the dashboard's —
/// and everything else is opaque bytes to save.
fn media_type(path: &str) -> (&'static str, &'static str, &'static str) {
    const OPAQUE: (&str, &str, &str) = (
        "application/octet-stream",
        "attachment",
        "default-src 'none'",
    );
    let Some(name) = path.strip_prefix(crate::store::MEDIA_PREFIX) else {
        return OPAQUE;
    };
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => ("image/png", "inline", "default-src 'none'"),
        Some("jpg" | "jpeg") => ("image/jpeg", "inline", "default-src 'none'"),
        Some("gif") => ("image/gif", "inline", "default-src 'none'"),
        Some("html") => (
            "text/html; charset=utf-8",
            "inline",
            "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:",
        ),
        _ => OPAQUE,
    }
}

/// The leaderboard (all of it, or an even sample of `sample` ranked trials) and, when
/// `details` > 0, the top trials with curves (best first).
async fn fetch(
    app: &App,
    id: &str,
    details: usize,
    sample: u32,
) -> Result<report::ReportData, Response> {
    let leaderboard = app
        .sweeps
        .leaderboard(Request::new(pb::LeaderboardRequest {
            sweep_id: id.to_string(),
            top: 0,
            sample,
            ..Default::default()
        }))
        .await
        .map_err(from_status)?
        .into_inner();
    report::gather(
        leaderboard,
        details,
        |trial| async move {
            app.sweeps
                .get_trial(Request::new(pb::GetTrialRequest {
                    sweep_id: id.to_string(),
                    trial,
                    max_points: 0,
                }))
                .await
                .map(tonic::Response::into_inner)
                .map_err(from_status)
        },
        |trial, path| async move {
            kept_file(app, id, trial, path)
                .await
                .map(|(_, bytes)| bytes)
        },
    )
    .await
}

/// One kept file of a trial (0: of the best-ranked trial with kept files): its path and bytes.
async fn kept_file(
    app: &App,
    id: &str,
    trial: u64,
    path: String,
) -> Result<(String, Vec<u8>), Response> {
    let stream = app
        .sweeps
        .get_files(Request::new(pb::GetFilesRequest {
            sweep_id: id.to_string(),
            trial,
            path,
        }))
        .await
        .map_err(from_status)?
        .into_inner();
    let (h, data) = async {
        sweep_proto::transfer::Incoming::start(
            stream,
            sweep_proto::files::MAX_FILES_BYTES,
            std::time::Duration::from_secs(60),
        )
        .await?
        .finish()
        .await
    }
    .await
    .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let name = h.files.first().map(|f| f.path.clone()).unwrap_or_default();
    Ok((name, data))
}

/// `GET /api/v1/sweeps/{id}/files/{name}`: one file of `export` or `report`, made now.
async fn sweep_file(
    State(app): State<App>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    if let Some(r) = reject(&app, &headers) {
        return r;
    }
    // The files of `coordinator export` and `coordinator report`, by name.
    let known: Vec<&str> = export::FILES
        .iter()
        .chain(&report::FILES)
        .copied()
        .collect();
    if !known.contains(&name.as_str()) {
        return err(
            StatusCode::NOT_FOUND,
            format!("no file {name:?}; expected one of {}", known.join(", ")),
        );
    }
    let details = match name.as_str() {
        "leaderboard.json" | "leaderboard.csv" | "parallel.svg" | "importance.json"
        | "importance.svg" => 0,
        n if n.starts_with("confusion_best") => 1,
        _ => report::TOP_CURVES,
    };
    // The figures of many trials use an even sample of the ranked ones (report::sample): asked
    // for as such, a sweep of a million trials is not copied for them; and they are shared.
    let many = matches!(
        name.as_str(),
        "parallel.svg" | "importance.json" | "importance.svg"
    );
    let sample = if many {
        report::MAX_FIGURE_TRIALS as u32
    } else {
        0
    };
    let key = (id.clone(), name.clone());
    // What a cached figure is valid for; only the shared figures need it.
    let ended = if many {
        app.engine
            .with_sweep(&id, |s| {
                let c = s.counts();
                (c.finished + c.stopped + c.failed, s.state as i32)
            })
            .unwrap_or_default()
    } else {
        (0, 0)
    };
    if many {
        let cached = app
            .figures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key, ended);
        if let Some(bytes) = cached {
            return download(&name, bytes);
        }
    }
    let data = match fetch(&app, &id, details, sample).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let no_matrix = || {
        err(
            StatusCode::NOT_FOUND,
            "the sweep has no ranked trial with a confusion matrix yet",
        )
    };
    let bytes = if report::FILES.contains(&name.as_str()) {
        let n = name.clone();
        match drawn(move || report::file(&data, &n)).await {
            Ok(Some(b)) => b,
            Ok(None) => return no_matrix(),
            Err(r) => return r,
        }
    } else {
        match export::files(&data.leaderboard, data.top.first())
            .into_iter()
            .find(|(n, _)| *n == name)
        {
            Some((_, b)) => b,
            None => return no_matrix(),
        }
    };
    if many {
        app.figures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(key, ended, bytes.clone());
    }
    download(&name, bytes)
}

/// `GET /api/v1/sweeps/{id}/trials/{n}/confusion.{json,csv,png,svg}`: one trial's matrix;
/// `…/model.json`, `…/model.safetensors`: its kept model's files (`n` = `best`: the best-ranked
/// trial's).
async fn trial_file(
    State(app): State<App>,
    headers: HeaderMap,
    Path((id, n, name)): Path<(String, String, String)>,
) -> Response {
    if let Some(r) = reject(&app, &headers) {
        return r;
    }
    if name == sweep_trainer::MODEL_CARD || name == sweep_trainer::MODEL_WEIGHTS {
        let trial = if n == "best" {
            0
        } else {
            match trial_number(&n) {
                Ok(n) => n,
                Err(m) => return err(StatusCode::BAD_REQUEST, m),
            }
        };
        let m = match app
            .sweeps
            .get_model(Request::new(pb::GetModelRequest {
                sweep_id: id,
                trial,
            }))
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => return from_status(s),
        };
        // Saved under their own names, the two files make a model directory.
        return if name == sweep_trainer::MODEL_CARD {
            download(&name, m.card.into_bytes())
        } else {
            download(&name, m.weights)
        };
    }
    let ext = name
        .strip_prefix("confusion.")
        .filter(|e| ["json", "csv", "png", "svg"].contains(e));
    let Some(ext) = ext else {
        return err(
            StatusCode::NOT_FOUND,
            format!("no file {name:?}; expected confusion.json, .csv, .png or .svg, model.json or model.safetensors"),
        );
    };
    let n = match trial_number(&n) {
        Ok(n) => n,
        Err(m) => return err(StatusCode::BAD_REQUEST, m),
    };
    let d = match app
        .sweeps
        .get_trial(Request::new(pb::GetTrialRequest {
            sweep_id: id.clone(),
            trial: n,
            max_points: 1,
        }))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return from_status(s),
    };
    let Some(c) = d.confusion else {
        return err(
            StatusCode::NOT_FOUND,
            format!("trial {n} has no confusion matrix (it has not finished, or its trainer makes none)"),
        );
    };
    let file = format!("confusion_trial{n}.{ext}");
    let bytes = match ext {
        "json" => serde_json::to_vec_pretty(&export::confusion_json(n, &c)).unwrap_or_default(),
        "csv" => export::confusion_csv(&c).into_bytes(),
        _ => {
            let sweep = match app
                .sweeps
                .leaderboard(Request::new(pb::LeaderboardRequest {
                    sweep_id: id.clone(),
                    top: 1,
                    ..Default::default()
                }))
                .await
            {
                Ok(r) => r.into_inner().sweep.unwrap_or_default(),
                Err(s) => return from_status(s),
            };
            let title = report::confusion_title(&sweep, n, false, &c);
            let png = ext == "png";
            let made = drawn(move || {
                if png {
                    report::confusion_png(&title, &c)
                } else {
                    report::confusion_svg(&title, &c).map(String::into_bytes)
                }
            })
            .await;
            match made {
                Ok(b) => b,
                Err(r) => return r,
            }
        }
    };
    download(&file, bytes)
}

/// `/metrics` on this port carries sweep ids and names: behind the token like the API (the
/// `--metrics-listen` port is the one for scrapers without it).
async fn render_metrics(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(r) = reject(&app, &headers) {
        return r;
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            worker::metrics::CONTENT_TYPE,
        )],
        app.metrics.render(&app.engine),
    )
        .into_response()
}

/// A TLS acceptor for the HTTP listener from PEM bytes (the `--tls-cert` chain and `--tls-key`).
pub fn tls_acceptor(cert_pem: &[u8], key_pem: &[u8]) -> Result<tokio_rustls::TlsAcceptor, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate chain: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the file".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("--tls-key: not a PEM private key: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` (over TLS with `acceptor`) until `shutdown`: at most
/// [`crate::net::HTTP`]'s connections (in all and per address; idle ones cut), each of which must send its first bytes
/// within 10 s, complete its TLS handshake within 10 s and its request headers within 10 s;
/// each connection in a task of its own, so a slow or failed one holds back only itself.
/// On shutdown it stops accepting (the event streams end with the engine's shutdown).
pub async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    const WITHIN: std::time::Duration = std::time::Duration::from_secs(10);
    let mut conns = crate::net::incoming(listener, crate::net::HTTP);
    tokio::pin!(shutdown);
    // Open connections drain at shutdown: each is asked to finish its response (event streams
    // end with the coordinator's shutdown message) and is awaited, up to WITHIN.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut open = tokio::task::JoinSet::new();
    loop {
        while open.try_join_next().is_some() {}
        let conn = tokio::select! {
            c = conns.recv() => match c {
                Some(Ok(c)) => c,
                Some(Err(_)) => continue,
                None => break,
            },
            () = &mut shutdown => break,
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        let mut stopped = stopped.clone();
        open.spawn(async move {
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(WITHIN);
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let io: Box<dyn Io> = match acceptor {
                Some(acceptor) => {
                    let peer = conn.peer();
                    match tokio::time::timeout(WITHIN, acceptor.accept(conn)).await {
                        Ok(Ok(t)) => Box::new(t),
                        Ok(Err(e)) => {
                            tracing::debug!(?peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                None => Box::new(conn),
            };
            let served = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
            tokio::pin!(served);
            let stop = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            tokio::select! {
                _ = served.as_mut() => {}
                () = stop => {
                    served.as_mut().graceful_shutdown();
                    let _ = served.await;
                }
            }
        });
    }
    let _ = stop.send(true);
    let _ = tokio::time::timeout(WITHIN, async { while open.join_next().await.is_some() {} }).await;
}

/// A connection's byte stream, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_event_written_directly_is_the_text_of_its_json_value() {
        let summary = pb::TrialSummary {
            trial: 7,
            state: "running".into(),
            params: sweep_proto::json::object_to_pb(&json!({"lr": 0.001, "opt": {"name": "adam"}})),
            metrics: [("loss".to_string(), 0.5)].into(),
            best: Some(0.5),
            best_step: 2,
            attempts: 1,
            ..Default::default()
        };
        let changes = vec![
            pb::TrialChange {
                trial: Some(summary),
                points: vec![
                    pb::MetricPoint {
                        step: 2,
                        name: "loss".into(),
                        value: 0.5,
                    },
                    pb::MetricPoint {
                        step: 2,
                        name: "odd".into(),
                        value: f64::NAN,
                    },
                ],
            },
            pb::TrialChange {
                trial: None,
                points: vec![],
            },
        ];
        let info = pb::SweepInfo {
            id: "s1".into(),
            running: 1,
            ..Default::default()
        };
        let through_value = json!({
            "sweep": export::info_json(&info),
            "changes": changes.iter().map(|c| json!({
                "trial": c.trial.as_ref().map(export::Row).map(|r| serde_json::to_value(r).unwrap()),
                "points": c.points.iter().map(|p| json!([p.step, p.name, p.value])).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
        .to_string();
        assert_eq!(event_json(&info, &changes), through_value);
    }
}
