//! Trials run by a function in the process that started this worker: W&B's
//! `wandb.agent(sweep_id, function=train)`. Our `wandb` module starts `worker --sweep ID
//! --function-fd N` with one end of a socket pair; the worker leases the trials as usual and
//! hands each to the Python process over the socket, which runs the function and writes back
//! the same report lines a program writes ([`super::history`]), then `{"done": …}`.
//!
//! Worker → Python: `{"trial": {sweep_id, trial, attempt, run_id, metric, params}}` and, when
//! the coordinator stops the trial or the worker shuts down, `{"stop": "reason"}`.
//! Python → worker: report lines, then `{"done": {"error": "traceback…" | null}}`.
//! When the Python process goes away (its end closes), the worker hands back what it holds and
//! exits.

use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::history::{self, History, Step};
use super::{files, Ending, Outcome, ProgramTrial};
use crate::train::{Cancel, Control};

/// The socket to the Python process, shared by the agent's one slot.
#[derive(Debug)]
pub struct FunctionConn {
    writer: Mutex<UnixStream>,
    lines: Mutex<mpsc::Receiver<String>>,
    /// Raised when the Python process has closed its end.
    pub gone: Cancel,
}

impl FunctionConn {
    /// Takes the socket at descriptor `fd` (inherited from the Python process).
    ///
    /// # Safety
    /// `fd` must be an open Unix stream socket that nothing else in this process owns.
    pub unsafe fn from_fd(fd: i32) -> std::io::Result<Self> {
        // SAFETY: the caller guarantees `fd` is an open socket we now own.
        let sock = unsafe { UnixStream::from_raw_fd(fd) };
        // Not inherited by the programs this worker might start.
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        let reader = sock.try_clone()?;
        let (tx, rx) = mpsc::sync_channel(256);
        let gone = Cancel::new();
        let gone2 = gone.clone();
        std::thread::Builder::new()
            .name("function-reader".into())
            .spawn(move || {
                // Over-long lines are dropped; the Python side never writes one.
                history::read_lines(reader, |line| match line {
                    Ok(l) => tx.send(l).is_ok(),
                    Err(_) => true,
                });
                gone2.cancel();
            })?;
        Ok(FunctionConn {
            writer: Mutex::new(sock),
            lines: Mutex::new(rx),
            gone,
        })
    }

    fn send(&self, v: &Value) -> bool {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writeln!(w, "{v}").and_then(|()| w.flush()).is_ok()
    }
}

/// Hands one trial to the function and relays its reports until it is done.
pub fn run(
    conn: &FunctionConn,
    t: &ProgramTrial,
    workdir: &std::path::Path,
    cancel: &Cancel,
    mut report: impl FnMut(&Step) -> Control,
) -> Outcome {
    let started = Instant::now();
    let mut hist = History::new(&t.metric);
    let released = |hist: &History| Outcome {
        ending: Ending::Released,
        metrics: hist.summary(),
        confusion: None,
        output: String::new(),
        missing_metric: None,
        files: Vec::new(),
        name: None,
    };
    let params: serde_json::Map<String, Value> = t.params.iter().cloned().collect();
    let files_dir = match t.files_dir(workdir).map(|d| files::prepare(&d)).transpose() {
        Ok(d) => d,
        Err(e) => {
            hist.notices.push(format!(
                "files: cannot make the trial's files directory under {}: {e}",
                workdir.display()
            ));
            None
        }
    };
    if !conn.send(&json!({"trial": {
        "sweep_id": t.sweep_id, "trial": t.trial, "attempt": t.attempt,
        "run_id": t.run_id(), "metric": t.metric, "params": params,
        "files_dir": files_dir,
        "max_media_mb": t.max_media_mb,
    }})) {
        conn.gone.cancel();
        if let Some(d) = &files_dir {
            files::discard(d);
        }
        return released(&hist);
    }
    let rx = conn.lines.lock().unwrap_or_else(|p| p.into_inner());
    let mut stop: Option<(String, bool)> = None; // (reason, hand back)
    let done = loop {
        if stop.is_none() {
            let why = if cancel.is_cancelled() || conn.gone.is_cancelled() {
                Some(("the worker is shutting down".to_string(), true))
            } else {
                t.time_limit.filter(|l| started.elapsed() >= *l).map(|l| {
                    (
                        format!("ran past the time limit of {} s", l.as_secs_f64()),
                        false,
                    )
                })
            };
            if let Some((reason, back)) = why {
                conn.send(&json!({"stop": reason}));
                stop = Some((reason, back));
            }
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(line.trim()) {
                    if let Some(d) = o.get("done") {
                        break Some(d.clone());
                    }
                }
                if let Some(step) = hist.line(&line) {
                    if stop.is_none() && report(&step) == Control::Stop {
                        let back = cancel.is_cancelled();
                        let reason = "stopped by the coordinator".to_string();
                        conn.send(&json!({"stop": reason}));
                        stop = Some((reason, back));
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(step) = hist.flush_due() {
                    if stop.is_none() {
                        let _ = report(&step);
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
        }
    };
    // The rows logged after the last report (a trial handed back reports nothing more).
    if let Some(step) = hist.flush() {
        if !matches!(stop, Some((_, true))) {
            let _ = report(&step);
        }
    }
    let Some(done) = done else {
        conn.gone.cancel();
        if let Some(d) = &files_dir {
            files::discard(d);
        }
        return released(&hist);
    };
    let error = done
        .get("error")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.chars()
                .rev()
                .take(4000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<String>()
        });
    let ending = match (stop, error) {
        (Some((_, true)), _) => Ending::Released,
        (Some((reason, false)), _) => Ending::Stopped(reason),
        (None, Some(e)) => Ending::Failed(format!("the function raised: {e}")),
        (None, None) => Ending::Finished,
    };
    let mut metrics = hist.summary();
    metrics.insert("runtime_seconds".into(), started.elapsed().as_secs_f64());
    let handed = files::take(
        files_dir.as_deref(),
        matches!(ending, Ending::Finished | Ending::Stopped(_)),
        t.max_files_bytes,
    );
    hist.notices.extend(handed.notices);
    Outcome {
        ending,
        metrics,
        confusion: hist.confusion.take(),
        output: hist.notices.join("\n"),
        missing_metric: hist.missing_metric(),
        files: handed.files,
        name: hist.name.take(),
    }
}
