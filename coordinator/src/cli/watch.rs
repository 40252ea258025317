//! `coordinator watch` (and `run`'s progress): a sweep's live progress from its Watch stream,
//! carried across coordinator restarts. When the stream breaks after it was up, the client says
//! it is reconnecting, retries with backoff (0.2 s doubling to 5 s) and resumes: the new stream
//! starts with a snapshot, and trials that ended while it was away are printed from the
//! leaderboard, so none is missed or printed twice (so are any whose own event was merged into
//! a later one under load, when the sweep ends). A refusal (unknown sweep, wrong token) or ten
//! minutes without the coordinator end it with the error. Running trials are followed too: on
//! a terminal the bar names the first few with their last step and metric value; in a log file
//! each gets a line at most every ten seconds.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use sweep_proto::conn::AuthChannel;
use sweep_proto::pb;
use sweep_proto::pb::sweeps_client::SweepsClient;

use super::{status_err, CliError};
use crate::export;

/// How long `watch` keeps trying to get the coordinator back.
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

/// Running trials named beside the bar on a terminal.
const RUNNING_SHOWN: usize = 3;

/// How often a running trial gets a line of its own where there is no terminal (a log file).
const RUNNING_LINE_EVERY: Duration = Duration::from_secs(10);

/// What `watch` knows of a running trial: its last step, its metric's last value, and when a
/// line last said so.
#[derive(Debug, Default)]
struct Live {
    step: u32,
    value: Option<f64>,
    said: Option<Instant>,
}

fn progress_bar(total: u64) -> ProgressBar {
    let pb = if total > 0 {
        ProgressBar::new(total)
    } else {
        ProgressBar::new_spinner()
    };
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} trials  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

fn progress_msg(s: &pb::SweepInfo) -> String {
    let best = s.best.map_or("-".into(), |b| {
        format!("{b:.4} (trial {})", s.best_trial.unwrap_or(0))
    });
    format!(
        "{} running, {} failed, best {} {}",
        s.running,
        s.failed,
        export::terminal_safe(&s.metric),
        best
    )
}

/// Whether a broken stream may come back: the coordinator restarting, shutting down, or the
/// connection cut. Refusals are final.
fn transient(s: &tonic::Status) -> bool {
    !matches!(
        s.code(),
        tonic::Code::NotFound
            | tonic::Code::InvalidArgument
            | tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
            | tonic::Code::FailedPrecondition
    )
}

struct Printer {
    bar: Option<ProgressBar>,
    printed: HashSet<u64>,
    /// Running trials, by number.
    running: BTreeMap<u64, Live>,
    /// The sweep's notices already printed (a pause's reason, work no worker takes).
    noticed: HashSet<String>,
    last: Option<pb::SweepInfo>,
}

impl Printer {
    /// The bar, where it is drawn (on a terminal); elsewhere lines are printed as they are.
    fn drawn(&self) -> Option<&ProgressBar> {
        self.bar.as_ref().filter(|b| !b.is_hidden())
    }

    /// Prints a notice (its text may hold a program's output: made safe for a terminal).
    fn say(&self, line: String) {
        let line = export::terminal_lines(&line).into_owned();
        match self.drawn() {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// A running trial's new points: its last step and metric value, in the bar's message on
    /// a terminal, else a line at most every [`RUNNING_LINE_EVERY`].
    fn progress(&mut self, metric: &str, t: &pb::TrialSummary, points: &[pb::MetricPoint]) {
        if t.state != "running" {
            self.running.remove(&t.trial);
            return;
        }
        let live = self.running.entry(t.trial).or_default();
        for p in points {
            live.step = live.step.max(p.step);
            if p.name == metric {
                live.value = Some(p.value);
            }
        }
        if self.bar.as_ref().is_some_and(|b| !b.is_hidden()) || live.step == 0 {
            return;
        }
        if live
            .said
            .is_some_and(|at| at.elapsed() < RUNNING_LINE_EVERY)
        {
            return;
        }
        live.said = Some(Instant::now());
        println!(
            "trial {:>4} running  step {} {} {}",
            t.trial,
            live.step,
            export::terminal_safe(metric),
            live.value.map_or("-".into(), |v| format!("{v:.4}"))
        );
    }

    /// The running trials for the bar's message: "#3 step 12 val_acc 0.8100, …".
    fn running_msg(&self, metric: &str) -> String {
        let mut parts: Vec<String> = self
            .running
            .iter()
            .filter(|(_, l)| l.step > 0)
            .take(RUNNING_SHOWN)
            .map(|(n, l)| {
                format!(
                    "#{n} step {}{}",
                    l.step,
                    l.value.map_or(String::new(), |v| format!(
                        " {} {v:.4}",
                        export::terminal_safe(metric)
                    ))
                )
            })
            .collect();
        let more = self.running.len().saturating_sub(RUNNING_SHOWN);
        if more > 0 {
            parts.push(format!("+{more}"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" | {}", parts.join(", "))
        }
    }

    fn trial(&mut self, s: &pb::SweepInfo, t: &pb::TrialSummary) {
        if t.state != "running" {
            self.running.remove(&t.trial);
        }
        if matches!(
            t.state.as_str(),
            "finished" | "stopped" | "failed" | "diverged"
        ) && self.printed.insert(t.trial)
        {
            let names = export::objective_names(s);
            let values: Vec<String> = names
                .iter()
                .map(|m| {
                    let v = t.metrics.get(m).map_or("-".into(), |v| {
                        if names.len() > 1 {
                            export::short_value(*v)
                        } else {
                            format!("{v:.4}")
                        }
                    });
                    format!("{} {v}", export::terminal_safe(m))
                })
                .collect();
            let line = format!("trial {:>4} {:<8} {}", t.trial, t.state, values.join(" "));
            match self.drawn() {
                Some(b) => b.println(line),
                None => println!("{line}"),
            }
        }
    }

    fn sweep(&mut self, s: pb::SweepInfo) {
        // A pause (by a person or by failures in a row), a resume or a stop is said as it
        // comes, and a sweep found paused says so at once: nothing else would move.
        let was = self.last.as_ref().map(|l| l.state);
        if was != Some(s.state) {
            let state = export::state_name(s.state);
            match (was, state) {
                (None, "paused") => self.say(format!(
                    "sweep {} is paused: nothing runs until `coordinator resume {}`",
                    s.id, s.id
                )),
                (Some(_), "paused") => self.say(format!("sweep {} paused", s.id)),
                (Some(_), "running") => self.say(format!("sweep {} running again", s.id)),
                (Some(_), "stopped") => self.say(format!("sweep {} stopped", s.id)),
                _ => {}
            }
        }
        for n in &s.notices {
            if self.noticed.insert(n.clone()) {
                self.say(format!("notice: {}", crate::export::terminal_safe(n)));
            }
        }
        let running = self.running_msg(&s.metric);
        let b = self.bar.get_or_insert_with(|| progress_bar(s.total));
        b.set_position(s.finished + s.stopped + s.failed);
        b.set_message(format!("{}{running}", progress_msg(&s)));
        self.last = Some(s);
    }
}

/// Prints the ended trials not printed yet, from the leaderboard, in trial order.
async fn catch_up(c: &mut SweepsClient<AuthChannel>, sweep: &str, p: &mut Printer) {
    let Ok(lb) = c
        .leaderboard(pb::LeaderboardRequest {
            sweep_id: sweep.to_string(),
            top: 0,
            ..Default::default()
        })
        .await
    else {
        return;
    };
    let lb = lb.into_inner();
    let info = lb.sweep.clone().unwrap_or_default();
    let mut ended: Vec<&pb::TrialSummary> = lb.trials.iter().collect();
    ended.sort_by_key(|t| t.trial);
    for t in ended {
        p.trial(&info, t);
    }
}

/// Follows `sweep` until it ends; see the module documentation.
pub(super) async fn watch(
    c: &mut SweepsClient<AuthChannel>,
    url: &str,
    sweep: &str,
) -> Result<(), CliError> {
    let mut p = Printer {
        bar: None,
        printed: HashSet::new(),
        running: BTreeMap::new(),
        noticed: HashSet::new(),
        last: None,
    };
    let mut connected_once = false;
    let mut lost_since: Option<Instant> = None;
    let mut pause = Duration::from_millis(200);
    loop {
        let opened = c
            .watch(pb::WatchRequest {
                sweep_id: sweep.to_string(),
                // Every change, with its points: running trials' steps and values too.
                detail: pb::WatchDetail::All as i32,
            })
            .await;
        let mut stream = match opened {
            Ok(s) => s.into_inner(),
            Err(s) if connected_once && transient(&s) => {
                if lost_since.is_some_and(|t| t.elapsed() > GIVE_UP_AFTER) {
                    return Err(status_err(url, s));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(s) => return Err(status_err(url, s)),
        };
        if lost_since.take().is_some() {
            p.say(format!("reconnected to {url}"));
            // Trials that ended while the stream was down.
            catch_up(c, sweep, &mut p).await;
        }
        connected_once = true;
        pause = Duration::from_millis(200);
        let broke = loop {
            match stream.message().await {
                Ok(Some(ev)) => {
                    let Some(s) = ev.sweep else { continue };
                    for c in &ev.changes {
                        if let Some(t) = &c.trial {
                            p.progress(&s.metric, t, &c.points);
                            p.trial(&s, t);
                        }
                    }
                    p.sweep(s);
                }
                Ok(None) => break None,
                Err(s) => break Some(s),
            }
        };
        // A stream ends by itself only once the sweep is over; one that ends before (a proxy,
        // a shutdown cut short) was lost like a broken one.
        let broke = match broke {
            None if !p.last.as_ref().is_some_and(pb::SweepInfo::is_over) => Some(
                tonic::Status::unavailable("the stream ended while the sweep runs"),
            ),
            b => b,
        };
        match broke {
            None => {
                // Events may be merged under load (the stream carries the newest state): the
                // trials whose own event did not come are printed from the leaderboard.
                catch_up(c, sweep, &mut p).await;
                break;
            }
            Some(s) if transient(&s) => {
                p.say(format!(
                    "lost the coordinator at {url} ({}); reconnecting…",
                    s.message()
                ));
                lost_since = Some(Instant::now());
            }
            Some(s) => return Err(status_err(url, s)),
        }
    }
    if let Some(b) = p.bar.take() {
        b.finish_and_clear();
    }
    if let Some(s) = p.last {
        println!(
            "sweep {} {}: {}",
            s.id,
            export::state_name(s.state),
            progress_msg(&s)
        );
    }
    Ok(())
}
