//! The observers of `sweep-bench coordinator --watchers N --pages M`: `watch` streams and dashboard
//! pages, so that the cost of looking at a sweep is measured against the same sweep unwatched.
//!
//! A watcher is what `coordinator watch` is to the server: its own connection and one Watch
//! stream, read to its end. A page is what the dashboard's sweep page (dashboard/app.js) asks
//! of the HTTP API, simulated without a browser: the sweep list, the leaderboard and the
//! figures once, then the event stream; on each event, what app.js does with it — the
//! leaderboard again when the count of ended trials changed (at most once per
//! max(1 s, 10 × its last duration); the best 500 and the running trials once the sweep has
//! more than 2,000), the importance figure (max(5 s, 20 × duration)), and the curve of a
//! running trial when it is drawn and the page did not see it start (points come with the
//! events).

use anyhow::{anyhow, Result};
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sweep_proto::pb;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Running trials whose curves a page draws (app.js MAX_RUNNING_CURVES).
const RUNNING_CURVES: usize = 8;
/// Rows a page shows (app.js MAX_ROWS) and the sweep size from which it asks for no more
/// (FULL_BOARD).
const MAX_ROWS: u64 = 500;
const FULL_BOARD: u64 = 2000;

/// What a page reads of one event: the fields app.js uses to decide what to fetch. The rest
/// (parameters, metrics, points) is skipped without being built, as a lean client would: the
/// pages share the coordinator's cores, and their own parsing is not the coordinator's cost.
#[derive(serde::Deserialize)]
struct PageEvent {
    #[serde(default)]
    sweep: Option<PageSweep>,
    #[serde(default)]
    changes: Vec<PageChange>,
}

#[derive(serde::Deserialize)]
struct PageSweep {
    state: String,
    queued: u64,
    running: u64,
    finished: u64,
    stopped: u64,
    failed: u64,
}

#[derive(serde::Deserialize)]
struct PageChange {
    trial: Option<PageTrial>,
}

#[derive(serde::Deserialize)]
struct PageTrial {
    trial: u64,
    state: String,
    attempts: u32,
}

/// The observers of one run.
pub(super) struct Observers {
    tasks: Vec<JoinHandle<Result<(), String>>>,
    events: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    stop: Arc<Notify>,
}

/// Opens `watchers` Watch streams and `pages` pages on sweep `id`.
pub(super) async fn start(
    url: &str,
    http: Option<&str>,
    id: &str,
    watchers: usize,
    pages: usize,
) -> Result<Observers> {
    let o = Observers {
        tasks: Vec::new(),
        events: Arc::new(AtomicU64::new(0)),
        requests: Arc::new(AtomicU64::new(0)),
        stop: Arc::new(Notify::new()),
    };
    let mut o = o;
    for _ in 0..watchers {
        let ch = tonic::transport::Endpoint::from_shared(url.to_string())
            .map_err(|e| anyhow!(e.to_string()))?
            .connect()
            .await
            .map_err(|e| anyhow!(e.to_string()))?;
        let mut c = pb::sweeps_client::SweepsClient::new(ch);
        let mut stream = c
            .watch(pb::WatchRequest {
                sweep_id: id.to_string(),
                detail: pb::WatchDetail::Ended as i32,
            })
            .await
            .map_err(|s| anyhow!(format!("watch: {s}")))?
            .into_inner();
        let events = o.events.clone();
        o.tasks.push(tokio::spawn(async move {
            while let Some(ev) = stream.message().await.map_err(|s| s.to_string())? {
                std::hint::black_box(&ev);
                events.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    if pages > 0 {
        let http = http.ok_or_else(|| anyhow!("pages need an HTTP listener"))?;
        for _ in 0..pages {
            let page = Page {
                addr: http.to_string(),
                base: format!("/api/v1/sweeps/{id}"),
                requests: o.requests.clone(),
            };
            let events = o.events.clone();
            let stop = o.stop.clone();
            o.tasks.push(tokio::spawn(async move {
                tokio::select! {
                    r = page.run(events) => r,
                    () = stop.notified() => Ok(()),
                }
            }));
        }
    }
    Ok(o)
}

impl Observers {
    /// Waits for the watch streams to end (they do when the sweep has), closes the pages and
    /// returns (watch and page events received, page requests made).
    pub(super) async fn finish(self) -> Result<(u64, u64)> {
        self.stop.notify_waiters();
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .map_err(|_| anyhow!("an observer did not end with the sweep"))?
                .map_err(|e| anyhow!(e.to_string()))?
                .map_err(|e| anyhow!(format!("an observer failed: {e}")))?;
        }
        Ok((
            self.events.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
        ))
    }
}

/// One simulated dashboard page.
#[derive(Clone)]
struct Page {
    addr: String,
    base: String,
    requests: Arc<AtomicU64>,
}

/// Runs `f` when asked, at most once per `gap(last duration)` counted from the end of the
/// last run, and once more after the last ask (app.js `throttle`).
fn throttled<F, Fut>(gap: fn(Duration) -> Duration, f: F) -> Arc<Notify>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let ask = Arc::new(Notify::new());
    let wait = ask.clone();
    tokio::spawn(async move {
        let mut took = Duration::ZERO;
        let mut last = Instant::now() - Duration::from_secs(3600);
        loop {
            wait.notified().await;
            tokio::time::sleep_until((last + gap(took)).into()).await;
            let t = Instant::now();
            f().await;
            took = t.elapsed();
            last = Instant::now();
        }
    });
    ask
}

impl Page {
    /// One GET over its own connection; the body's length.
    async fn get(&self, path: &str) -> Result<usize, String> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut s = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let mut body = Vec::new();
        s.read_to_end(&mut body)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        if !body.starts_with(b"HTTP/1.0 200") && !body.starts_with(b"HTTP/1.1 200") {
            let head = String::from_utf8_lossy(&body[..body.len().min(200)]).to_string();
            return Err(format!("GET {path}: {head}"));
        }
        Ok(body.len())
    }

    async fn run(self, events: Arc<AtomicU64>) -> Result<(), String> {
        self.get("/api/v1/sweeps").await?;
        self.get(&self.base).await?;
        let (p1, p2, p3) = (self.clone(), self.clone(), self.clone());
        let total = Arc::new(AtomicU64::new(0));
        let size = total.clone();
        let board = throttled(
            |took| (10 * took).max(Duration::from_secs(1)),
            move || {
                let p = p1.clone();
                let partial = size.load(Ordering::Relaxed) > FULL_BOARD;
                async move {
                    let path = if partial {
                        format!("{}?top={MAX_ROWS}&running=true", p.base)
                    } else {
                        p.base.clone()
                    };
                    let _ = p.get(&path).await;
                }
            },
        );
        let figures = throttled(
            |took| (20 * took).max(Duration::from_secs(5)),
            move || {
                let p = p2.clone();
                async move {
                    let _ = p.get(&format!("{}/files/importance.svg", p.base)).await;
                }
            },
        );
        figures.notify_one();
        // The event stream.
        let mut s = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("events: {e}"))?;
        let req = format!(
            "GET {}/events HTTP/1.0\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            self.base, self.addr
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("events: {e}"))?;
        let mut lines = BufReader::new(s).lines();
        let mut done = u64::MAX;
        let mut running: BTreeSet<u64> = BTreeSet::new();
        // Trials whose curve the page has, and every trial it has seen.
        let mut curves: HashSet<u64> = HashSet::new();
        let mut seen: HashSet<u64> = HashSet::new();
        while let Some(line) = lines
            .next_line()
            .await
            .map_err(|e| format!("events: {e}"))?
        {
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            events.fetch_add(1, Ordering::Relaxed);
            let Ok(ev) = serde_json::from_str::<PageEvent>(data.trim()) else {
                continue;
            };
            if let Some(sw) = &ev.sweep {
                total.store(
                    sw.queued + sw.running + sw.finished + sw.stopped + sw.failed,
                    Ordering::Relaxed,
                );
                let ended = sw.finished + sw.stopped + sw.failed;
                if ended != done {
                    done = ended;
                    board.notify_one();
                    figures.notify_one();
                }
            }
            for t in ev.changes.iter().filter_map(|c| c.trial.as_ref()) {
                let n = t.trial;
                let first_sight = seen.insert(n);
                if t.state == "running" {
                    running.insert(n);
                    if first_sight && t.attempts == 1 {
                        // Its whole curve comes with the events.
                        curves.insert(n);
                    }
                } else {
                    running.remove(&n);
                }
                let drawn = running.iter().take(RUNNING_CURVES).any(|&r| r == n);
                if drawn && curves.insert(n) {
                    let p = p3.clone();
                    tokio::spawn(async move {
                        let _ = p.get(&format!("{}/trials/{n}", p.base)).await;
                    });
                }
                if !running.contains(&n) {
                    curves.remove(&n);
                }
            }
            if ev
                .sweep
                .as_ref()
                .is_some_and(|sw| sw.state == "finished" && sw.running == 0)
            {
                break;
            }
        }
        Ok(())
    }
}
