//! Watching a sweep: one look at the sweep shared by every stream that watches it.
//!
//! A [`Hub`] per watched sweep follows the engine's change events and, at most ten times a
//! second, looks at the sweep once: its summary and every trial that changed since the last
//! look, with the metric points each reported. The look goes to every stream of that sweep (the
//! `Watch` RPC, the dashboard's event stream), so the work of a change is done once however many
//! watch it, and it is O(changes), never O(sweep). A stream sends its own first event (the
//! summary with the config, taken when it opens), then the shared looks; a stream that falls
//! behind is sent a fresh summary. The hub ends with the sweep (finished or stopped, nothing
//! running), or when nobody watches any more.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sweep_proto::pb;
use tokio::sync::broadcast;
use tonic::Status;

use super::convert::{sweep_info, trial_summary};
use crate::engine::{Engine, Event};

/// The shortest time between two looks at a sweep: a burst of changes (thousands of trials a
/// second) becomes ten looks a second.
const INTERVAL: Duration = Duration::from_millis(100);

/// A look even when nothing changed (the count of connected workers moves on its own).
const QUIET: Duration = Duration::from_secs(5);

/// Most engine events merged into one look.
const MAX_MERGED_EVENTS: usize = 16_384;

/// Looks kept for a stream that has not sent the last ones yet (a few seconds' worth); one
/// further behind is sent a fresh summary instead.
const LOOK_BACKLOG: usize = 64;

/// One look at a sweep, shared by its streams.
#[derive(Debug)]
pub struct Look {
    /// The sweep's summary, without its config (it never changes).
    pub info: pb::SweepInfo,
    /// Every trial that changed since the last look, by number, with its new points.
    pub changes: Vec<pb::TrialChange>,
    /// The ended trials among them, as a log of results needs them (made on first use).
    ended: OnceLock<Vec<pb::TrialChange>>,
    /// The look as a client's text (the dashboard's JSON), made once by the first to ask.
    pub text: OnceLock<String>,
}

impl Look {
    /// This look as a Watch event at the detail a stream asked for.
    pub fn event(&self, detail: pb::WatchDetail) -> pb::WatchEvent {
        let changes = match detail {
            pb::WatchDetail::All => self.changes.clone(),
            pb::WatchDetail::Ended => self
                .ended
                .get_or_init(|| {
                    self.changes
                        .iter()
                        .filter_map(|c| c.trial.as_ref())
                        .filter(|t| matches!(t.state.as_str(), "finished" | "stopped" | "failed"))
                        .map(|t| pb::TrialChange {
                            trial: Some(pb::TrialSummary {
                                params: HashMap::new(),
                                best: None,
                                best_step: 0,
                                ..t.clone()
                            }),
                            points: Vec::new(),
                        })
                        .collect()
                })
                .clone(),
        };
        pb::WatchEvent {
            sweep: Some(self.info.clone()),
            changes,
        }
    }
}

/// What changed in one sweep since the last look.
#[derive(Debug, Default)]
struct Changes {
    /// The sweep itself (or events were missed): a look is due.
    sweep: bool,
    /// Changed trials and the steps they reported.
    trials: BTreeMap<u64, BTreeSet<u32>>,
}

impl Changes {
    fn add(&mut self, id: &str, ev: Event) {
        if *ev.sweep_id != *id {
            return;
        }
        match ev.trial {
            Some(n) => self.trials.entry(n).or_default().extend(ev.step),
            None => self.sweep = true,
        }
    }

    fn is_empty(&self) -> bool {
        !self.sweep && self.trials.is_empty()
    }
}

/// The hubs of the watched sweeps.
#[derive(Debug, Clone, Default)]
pub struct Hubs {
    live: Arc<Mutex<HashMap<String, broadcast::Sender<Arc<Look>>>>>,
}

impl Hubs {
    /// The looks at sweep `id` from now on (starting its hub if none runs). The channel closes
    /// when the sweep is over.
    pub fn subscribe(&self, engine: &Engine, id: &str) -> broadcast::Receiver<Arc<Look>> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = live.get(id) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(LOOK_BACKLOG);
        live.insert(id.to_string(), tx.clone());
        tokio::spawn(hub(engine.clone(), id.to_string(), tx, self.clone()));
        rx
    }

    /// Called by a hub about to end: ends it unless someone subscribed meanwhile.
    fn leave(&self, id: &str, tx: &broadcast::Sender<Arc<Look>>, over: bool) -> bool {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if !over && tx.receiver_count() > 0 {
            return false;
        }
        live.remove(id);
        true
    }
}

/// Follows sweep `id` and sends a look to `tx` after changes, until the sweep is over or
/// nobody listens.
async fn hub(engine: Engine, id: String, tx: broadcast::Sender<Arc<Look>>, hubs: Hubs) {
    let mut rx = engine.subscribe();
    let closing = engine.closing();
    tokio::pin!(closing);
    let mut last = tokio::time::Instant::now();
    let mut over = false;
    loop {
        if (over || tx.receiver_count() == 0) && hubs.leave(&id, &tx, over) {
            return;
        }
        let mut changed = Changes::default();
        tokio::select! {
            r = tokio::time::timeout(QUIET, rx.recv()) => match r {
                Ok(Ok(ev)) => changed.add(&id, ev),
                Ok(Err(broadcast::error::RecvError::Lagged(_))) | Err(_) => changed.sweep = true,
                Ok(Err(broadcast::error::RecvError::Closed)) => over = true,
            },
            () = &mut closing => {
                hubs.leave(&id, &tx, true);
                return;
            }
        }
        if changed.is_empty() && !over {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep_until(last + INTERVAL) => {}
            () = &mut closing => {
                hubs.leave(&id, &tx, true);
                return;
            }
        }
        last = tokio::time::Instant::now();
        for _ in 0..MAX_MERGED_EVENTS {
            match rx.try_recv() {
                Ok(ev) => changed.add(&id, ev),
                Err(broadcast::error::TryRecvError::Lagged(_)) => changed.sweep = true,
                Err(_) => break,
            }
        }
        let workers = engine.live_workers();
        let Ok(look) = engine.with_sweep(&id, |s| {
            let changes = changed
                .trials
                .iter()
                .filter_map(|(n, steps)| {
                    let t = s.trial(*n)?;
                    let points = steps
                        .iter()
                        .flat_map(|step| t.curve.at(*step))
                        .map(|p| pb::MetricPoint {
                            step: p.step,
                            name: p.name.to_string(),
                            value: p.value,
                        })
                        .collect();
                    Some(pb::TrialChange {
                        trial: Some(trial_summary(s, t, 0)),
                        points,
                    })
                })
                .collect();
            let mut info = sweep_info(s, workers);
            info.config_json.clear();
            Look {
                info,
                changes,
                ended: OnceLock::new(),
                text: OnceLock::new(),
            }
        }) else {
            hubs.leave(&id, &tx, true);
            return;
        };
        over = look.info.is_over();
        // No receiver: the next turn ends the hub.
        let _ = tx.send(Arc::new(look));
    }
}

/// What a stream sends next.
#[derive(Debug)]
pub enum Next {
    /// A shared look.
    Look(Arc<Look>),
    /// The stream fell behind: a fresh summary instead of the looks it missed.
    Behind(Box<pb::SweepInfo>),
    /// The sweep is over (or gone): the stream ends.
    End,
    /// The coordinator is shutting down: the stream ends and says so.
    Closing,
}

/// One stream's view of the hub: the looks, or a fresh summary when it fell behind.
#[derive(Debug)]
pub struct Follower {
    rx: broadcast::Receiver<Arc<Look>>,
    engine: Engine,
    id: String,
}

impl Follower {
    /// Starts following sweep `id`; returns the stream's first event (the summary with its
    /// config) and the follower, or why not (no such sweep).
    pub fn start(
        hubs: &Hubs,
        engine: &Engine,
        id: &str,
    ) -> Result<(pb::SweepInfo, Follower), Status> {
        // Subscribed first: nothing that happens after the first summary is missed.
        let rx = hubs.subscribe(engine, id);
        let workers = engine.live_workers();
        let first = engine
            .with_sweep(id, |s| sweep_info(s, workers))
            .map_err(Status::from)?;
        Ok((
            first,
            Follower {
                rx,
                engine: engine.clone(),
                id: id.to_string(),
            },
        ))
    }

    /// The next thing to send.
    pub async fn next(&mut self) -> Next {
        match self.rx.recv().await {
            Ok(look) => Next::Look(look),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let workers = self.engine.live_workers();
                match self.engine.with_sweep(&self.id, |s| {
                    let mut info = sweep_info(s, workers);
                    info.config_json.clear();
                    info
                }) {
                    Ok(info) => Next::Behind(Box::new(info)),
                    Err(_) => Next::End,
                }
            }
            // The hub ends at shutdown only once the engine says it is closing, so this reads
            // the reason without racing the shutdown signal.
            Err(broadcast::error::RecvError::Closed) if self.engine.is_closing() => Next::Closing,
            Err(broadcast::error::RecvError::Closed) => Next::End,
        }
    }
}

/// What a stream sends, before it is put in the client's form.
#[derive(Debug)]
pub enum Item<'a> {
    /// The sweep's summary when the stream starts, with its config.
    First(&'a pb::SweepInfo),
    /// A shared look.
    Look(&'a Look),
    /// A fresh summary after the stream fell behind.
    Behind(&'a pb::SweepInfo),
    /// The coordinator is shutting down (the stream's last item).
    Closing,
}

/// The stream for `follower`, from its `first` summary: each item put in the client's form by
/// `encode`, until the sweep is over, it is gone, or the coordinator shuts down (after
/// [`Item::Closing`]). One stream for the Watch RPC and the dashboard's event stream. It runs in
/// the task that sends it to the client and takes the next look only when the client is ready
/// for it (one that falls behind is sent a fresh summary): no task or channel of its own, so a
/// look wakes one task per stream, and a client that leaves ends its stream at once.
pub fn forward<T: Send + 'static>(
    first: pb::SweepInfo,
    follower: Follower,
    encode: impl Fn(Item<'_>) -> T + Send + 'static,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    enum At {
        First(Box<pb::SweepInfo>, Follower),
        Following(Follower),
        Done,
    }
    let start = (At::First(Box::new(first), follower), encode);
    futures_util::stream::unfold(start, |(at, encode)| async move {
        let (item, next) = match at {
            At::Done => return None,
            At::First(first, follower) => {
                let item = encode(Item::First(&first));
                (item, (!first.is_over()).then_some(follower))
            }
            At::Following(mut follower) => {
                let (item, over) = match follower.next().await {
                    Next::Look(look) => (encode(Item::Look(&look)), look.info.is_over()),
                    Next::Behind(info) => (encode(Item::Behind(&info)), info.is_over()),
                    Next::End => return None,
                    Next::Closing => (encode(Item::Closing), true),
                };
                (item, (!over).then_some(follower))
            }
        };
        let at = next.map_or(At::Done, At::Following);
        Some((item, (at, encode)))
    })
}
