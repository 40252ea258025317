//! The lease state machine: fencing of stale attempts, idempotent Complete, expiry and
//! re-queue up to max_attempts, no grid point handed out twice under concurrency, and state
//! that survives a reopen of the store.

use std::collections::HashSet;
use std::time::Duration;

use coordinator::config::SweepSpec;
use coordinator::engine::{
    Action, Attempt, Complete, Engine, EngineOptions, Hook, Outcome, Report, TrialState,
};

fn db(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("sweep-engine-{name}-{}.db", std::process::id()));
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
    }
    p
}

fn opts(ttl_ms: u64) -> EngineOptions {
    EngineOptions {
        lease_ttl: Duration::from_millis(ttl_ms),
        max_lease_wait: Duration::from_millis(200),
        ..EngineOptions::default()
    }
}

fn synthetic(grid: &str) -> SweepSpec {
    SweepSpec::parse(&format!("method: grid\ntrainer: synthetic\nmax_attempts: 2\nparameters:\n  x: {{values: [{grid}]}}\n")).unwrap()
}

#[tokio::test]
async fn stale_attempts_are_fenced_and_complete_is_idempotent() {
    let e = Engine::open(&db("fence"), opts(100)).unwrap();
    let id = e.create_sweep(synthetic("1"), None).await.unwrap();
    let l1 = e
        .lease("w1", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((l1.trial, l1.attempt), (1, 1));
    let a = e
        .report(Report {
            attempt: Attempt {
                worker: "w1",
                sweep: &id,
                trial: 1,
                attempt: 1,
                lease_id: &l1.lease_id,
            },
            epoch: 1,
            metrics: vec![("loss".into(), 3.0)],
        })
        .await
        .unwrap();
    assert_eq!(a, Action::Continue);
    // The lease expires: the trial is re-queued and leased again as attempt 2.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(e.reap().await.unwrap(), 1);
    let l2 = e
        .lease("w2", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((l2.trial, l2.attempt), (1, 2));
    // The partitioned worker comes back: its report and completion are refused.
    let a = e
        .report(Report {
            attempt: Attempt {
                worker: "w1",
                sweep: &id,
                trial: 1,
                attempt: 1,
                lease_id: &l1.lease_id,
            },
            epoch: 2,
            metrics: vec![("loss".into(), 2.0)],
        })
        .await
        .unwrap();
    assert!(matches!(a, Action::Abandon(_)), "{a:?}");
    let (ok, why) = e
        .complete(Complete {
            attempt: Attempt {
                worker: "w1",
                sweep: &id,
                trial: 1,
                attempt: 1,
                lease_id: &l1.lease_id,
            },
            outcome: Outcome::Finished,
            metrics: vec![("loss".into(), 1.0)],
            confusion: None,
            error: String::new(),
            output: String::new(),
            model: None,
        })
        .await
        .unwrap();
    assert!(!ok && why.contains("stale"), "{why}");
    // The current attempt completes, twice (a retry): accepted both times, counted once.
    for _ in 0..2 {
        let (ok, _) = e
            .complete(Complete {
                attempt: Attempt {
                    worker: "w2",
                    sweep: &id,
                    trial: 1,
                    attempt: 2,
                    lease_id: &l2.lease_id,
                },
                outcome: Outcome::Finished,
                metrics: vec![("loss".into(), 0.5)],
                confusion: None,
                error: String::new(),
                output: String::new(),
                model: None,
            })
            .await
            .unwrap();
        assert!(ok);
    }
    e.with_sweep(&id, |s| {
        let t = &s.trial(1).unwrap();
        assert_eq!(t.state, TrialState::Finished);
        assert_eq!(t.metrics.get("loss").unwrap(), 0.5);
        assert_eq!(s.counts().finished, 1);
        assert_eq!(s.state.name(), "finished");
    })
    .unwrap();
}

#[tokio::test]
async fn a_trial_fails_after_max_attempts_and_the_sweep_goes_on() {
    let e = Engine::open(&db("attempts"), opts(50)).unwrap();
    let id = e.create_sweep(synthetic("1, 2"), None).await.unwrap();
    for attempt in 1..=2 {
        let l = e
            .lease("w", &[], None, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((l.trial, l.attempt), (1, attempt));
        tokio::time::sleep(Duration::from_millis(80)).await;
        e.reap().await.unwrap();
    }
    let l = e
        .lease("w", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l.trial, 2, "trial 1 is failed, trial 2 runs");
    e.with_sweep(&id, |s| {
        assert_eq!(s.trial(1).unwrap().state, TrialState::Failed);
        assert!(s
            .trial(1)
            .unwrap()
            .error
            .as_deref()
            .unwrap_or("")
            .contains("expired"));
    })
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_leases_never_hand_out_a_point_twice() {
    let e = Engine::open(&db("concurrent"), opts(30_000)).unwrap();
    let values: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    let id = e
        .create_sweep(synthetic(&values.join(", ")), None)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(l) = e
                .lease(&format!("w{w}"), &[], None, Duration::from_millis(50))
                .await
                .unwrap()
            {
                got.push((l.trial, l.params.to_value()["x"].as_i64().unwrap()));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), 200);
    let trials: HashSet<u64> = all.iter().map(|a| a.0).collect();
    let points: HashSet<i64> = all.iter().map(|a| a.1).collect();
    assert_eq!(trials.len(), 200);
    assert_eq!(points.len(), 200);
    assert!(e
        .lease("late", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .is_none());
    e.with_sweep(&id, |s| assert_eq!(s.next_trial, 201))
        .unwrap();
}

#[tokio::test]
async fn state_survives_reopening_the_store() {
    let p = db("reopen");
    let (id, lease_id) = {
        let e = Engine::open(&p, opts(30_000)).unwrap();
        let id = e
            .create_sweep(synthetic("1, 2, 3"), Some("kept".into()))
            .await
            .unwrap();
        let l1 = e
            .lease("w", &[], None, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        e.report(Report {
            attempt: Attempt {
                worker: "w",
                sweep: &id,
                trial: 1,
                attempt: 1,
                lease_id: &l1.lease_id,
            },
            epoch: 1,
            metrics: vec![("loss".into(), 0.25)],
        })
        .await
        .unwrap();
        e.complete(Complete {
            attempt: Attempt {
                worker: "w",
                sweep: &id,
                trial: 1,
                attempt: 1,
                lease_id: &l1.lease_id,
            },
            outcome: Outcome::Finished,
            metrics: vec![],
            confusion: None,
            error: String::new(),
            output: String::new(),
            model: None,
        })
        .await
        .unwrap();
        let l2 = e
            .lease("w", &[], None, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        (id, l2.lease_id)
    };
    let e = Engine::open(&p, opts(30_000)).unwrap();
    e.with_sweep(&id, |s| {
        assert_eq!(s.name.as_deref(), Some("kept"));
        assert_eq!(s.trial(1).unwrap().state, TrialState::Finished);
        assert_eq!(s.trial(2).unwrap().state, TrialState::Running);
        assert_eq!(s.next_trial, 3);
    })
    .unwrap();
    // An ended trial's curve is read from the store.
    let f = e.trial_files(&id, 1, 0).await.unwrap();
    assert!(
        f.curve.points.contains(&(1, "loss".to_string(), 0.25)),
        "{f:?}"
    );
    // The running attempt's worker can carry on after the restart.
    let a = e
        .report(Report {
            attempt: Attempt {
                worker: "w",
                sweep: &id,
                trial: 2,
                attempt: 1,
                lease_id: &lease_id,
            },
            epoch: 1,
            metrics: vec![("loss".into(), 0.1)],
        })
        .await
        .unwrap();
    assert_eq!(a, Action::Continue);
    // And the next trial number is never reused.
    let l = e
        .lease("w", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l.trial, 3);
}

#[tokio::test]
async fn early_termination_is_decided_on_report_and_its_reason_is_kept() {
    let e = Engine::open(&db("early"), opts(30_000)).unwrap();
    let spec = SweepSpec::parse(
        "method: grid\ntrainer: synthetic\nmetric: {name: loss, goal: minimize}\nearly_terminate: {type: asha, min_iter: 1, eta: 2}\nparameters:\n  x: {values: [1, 2]}\n",
    )
    .unwrap();
    let id = e.create_sweep(spec, None).await.unwrap();
    let l1 = e
        .lease("w", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let l2 = e
        .lease("w", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let a = e
        .report(Report {
            attempt: Attempt {
                worker: "w",
                sweep: &id,
                trial: 1,
                attempt: 1,
                lease_id: &l1.lease_id,
            },
            epoch: 1,
            metrics: vec![("loss".into(), 1.0)],
        })
        .await
        .unwrap();
    assert_eq!(a, Action::Continue, "alone at the rung");
    let a = e
        .report(Report {
            attempt: Attempt {
                worker: "w",
                sweep: &id,
                trial: 2,
                attempt: 1,
                lease_id: &l2.lease_id,
            },
            epoch: 1,
            metrics: vec![("loss".into(), 5.0)],
        })
        .await
        .unwrap();
    let Action::Stop(why) = a else {
        panic!("{a:?}")
    };
    assert!(
        why.contains("asha: rung 1") && why.contains("value 5"),
        "{why}"
    );
    e.complete(Complete {
        attempt: Attempt {
            worker: "w",
            sweep: &id,
            trial: 2,
            attempt: 1,
            lease_id: &l2.lease_id,
        },
        outcome: Outcome::Stopped,
        metrics: vec![],
        confusion: None,
        error: "stopped by the coordinator".into(),
        output: String::new(),
        model: None,
    })
    .await
    .unwrap();
    e.with_sweep(&id, |s| {
        assert_eq!(s.trial(2).unwrap().state, TrialState::Stopped);
        assert_eq!(s.trial(2).unwrap().error.as_deref(), Some(why.as_str()));
    })
    .unwrap();
}

#[tokio::test]
async fn stopping_decisions_after_a_restart_count_the_trials_from_before_it() {
    let p = db("early-restart");
    let spec = SweepSpec::parse(
        "method: grid\ntrainer: synthetic\nmetric: {name: loss, goal: minimize}\nearly_terminate: {type: asha, min_iter: 1, eta: 2}\nparameters:\n  x: {values: [1, 2]}\n",
    )
    .unwrap();
    let id = {
        let e = Engine::open(&p, opts(30_000)).unwrap();
        let id = e.create_sweep(spec, None).await.unwrap();
        let l = e
            .lease("w", &[], None, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        let a = Attempt {
            worker: "w",
            sweep: &id,
            trial: l.trial,
            attempt: l.attempt,
            lease_id: &l.lease_id,
        };
        let r = e.report(Report {
            attempt: a,
            epoch: 1,
            metrics: vec![("loss".into(), 1.0)],
        });
        assert_eq!(r.await.unwrap(), Action::Continue, "alone at the rung");
        let c = e.complete(Complete {
            attempt: a,
            outcome: Outcome::Finished,
            metrics: vec![("loss".into(), 1.0)],
            confusion: None,
            error: String::new(),
            output: String::new(),
            model: None,
        });
        assert!(c.await.unwrap().0);
        id
    };
    // Restarted: the rung still holds trial 1's value, so trial 2's worse one is stopped.
    let e = Engine::open(&p, opts(30_000)).unwrap();
    let l = e
        .lease("w", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l.trial, 2);
    let r = e.report(Report {
        attempt: Attempt {
            worker: "w",
            sweep: &id,
            trial: 2,
            attempt: l.attempt,
            lease_id: &l.lease_id,
        },
        epoch: 1,
        metrics: vec![("loss".into(), 5.0)],
    });
    let Action::Stop(why) = r.await.unwrap() else {
        panic!("trial 2 was not stopped: the rung forgot trial 1")
    };
    assert!(why.contains("keeps the best 1 of 2"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suggestion_in_flight_holds_back_no_other_sweep() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    // Each suggestion waits for a go from the test: one in flight for as long as it likes.
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let wait = Mutex::new(wait);
    let entered = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&entered);
    let hook = Hook(Arc::new(move || {
        seen.fetch_add(1, Ordering::SeqCst);
        let _ = wait.lock().unwrap().recv();
    }));
    let e = Engine::open(
        &db("in-flight"),
        EngineOptions {
            lease_ttl: Duration::from_secs(60),
            max_lease_wait: Duration::from_secs(60),
            before_suggestion: Some(hook),
        },
    )
    .unwrap();
    let other = e.create_sweep(synthetic("1, 2"), None).await.unwrap();
    let by = e.create_sweep(bayes(), None).await.unwrap();
    let lease_of = |w: &'static str, sweep: String| {
        let e = e.clone();
        tokio::spawn(async move {
            e.lease(w, &[], Some(&sweep), Duration::ZERO)
                .await
                .unwrap()
                .unwrap()
        })
    };
    let first = lease_of("b1", by.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while entered.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "no suggestion began");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The other sweep leases, reports and completes while the suggestion is held.
    const WITHIN: Duration = Duration::from_secs(60);
    let l = tokio::time::timeout(WITHIN, e.lease("o", &[], Some(&other), Duration::ZERO))
        .await
        .expect("a lease of another sweep waited for a suggestion")
        .unwrap()
        .unwrap();
    let a = Attempt {
        worker: "o",
        sweep: &other,
        trial: l.trial,
        attempt: l.attempt,
        lease_id: &l.lease_id,
    };
    let report = e.report(Report {
        attempt: a,
        epoch: 1,
        metrics: vec![("loss".into(), 1.0)],
    });
    assert_eq!(
        tokio::time::timeout(WITHIN, report)
            .await
            .expect("a report waited")
            .unwrap(),
        Action::Continue
    );
    let complete = e.complete(Complete {
        attempt: a,
        outcome: Outcome::Finished,
        metrics: vec![("loss".into(), 1.0)],
        confusion: None,
        error: String::new(),
        output: String::new(),
        model: None,
    });
    assert!(
        tokio::time::timeout(WITHIN, complete)
            .await
            .expect("a complete waited")
            .unwrap()
            .0
    );
    // A second lease of the bayes sweep waits for the suggestion in flight, then makes its own.
    let second = lease_of("b2", by.clone());
    go.send(()).unwrap();
    go.send(()).unwrap();
    let (a, b) = (first.await.unwrap(), second.await.unwrap());
    let mut trials = [a.trial, b.trial];
    trials.sort_unstable();
    assert_eq!(trials, [1, 2]);
    assert_ne!(a.params, b.params);
    assert_eq!(entered.load(Ordering::SeqCst), 2);
}

fn bayes() -> SweepSpec {
    SweepSpec::parse(
        "method: bayes\ntrainer: synthetic\nrun_cap: 12\nbayes: {startup_trials: 3}\nparameters:\n  a: {values: [1, 2, 3]}\n  b: {values: [x, y, z, w]}\n",
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bayes_never_hands_out_a_config_twice_to_concurrent_workers() {
    let e = Engine::open(&db("bayes-dup"), opts(30_000)).unwrap();
    let id = e.create_sweep(bayes(), None).await.unwrap();
    // 8 workers lease at once, twice over, finishing the first round in between.
    let mut seen = HashSet::new();
    for round in 0..2 {
        let mut tasks = Vec::new();
        for w in 0..8 {
            let e = e.clone();
            tasks.push(tokio::spawn(async move {
                e.lease(&format!("w{w}"), &[], None, Duration::ZERO)
                    .await
                    .unwrap()
            }));
        }
        let mut leases = Vec::new();
        for t in tasks {
            if let Some(l) = t.await.unwrap() {
                assert!(
                    seen.insert(l.params.to_value().to_string()),
                    "duplicate config {}",
                    l.params.to_value()
                );
                leases.push(l);
            }
        }
        if round == 0 {
            assert_eq!(leases.len(), 8);
            for l in leases {
                let loss = l.params.to_value()["a"].as_f64().unwrap();
                e.complete(Complete {
                    attempt: Attempt {
                        worker: "w",
                        sweep: &id,
                        trial: l.trial,
                        attempt: l.attempt,
                        lease_id: &l.lease_id,
                    },
                    outcome: Outcome::Finished,
                    metrics: vec![("loss".into(), loss)],
                    confusion: None,
                    error: String::new(),
                    output: String::new(),
                    model: None,
                })
                .await
                .unwrap();
            }
        } else {
            assert_eq!(leases.len(), 4, "run_cap 12 leaves 4");
        }
    }
    assert_eq!(seen.len(), 12, "12 distinct configs of the 12 in the space");
}

#[tokio::test]
async fn a_restarted_coordinator_makes_the_same_next_suggestion() {
    let p = db("bayes-restart");
    let spec = SweepSpec::parse(
        "method: bayes\ntrainer: synthetic\nseed: 3\nbayes: {startup_trials: 2}\nparameters:\n  x1: {min: -5.0, max: 10.0}\n  x2: {min: 0.0, max: 15.0}\n",
    )
    .unwrap();
    let (id, next) = {
        let e = Engine::open(&p, opts(30_000)).unwrap();
        let id = e.create_sweep(spec, None).await.unwrap();
        for _ in 0..4 {
            let l = e
                .lease("w", &[], None, Duration::ZERO)
                .await
                .unwrap()
                .unwrap();
            let y = worker::synthetic::branin(
                l.params.to_value()["x1"].as_f64().unwrap(),
                l.params.to_value()["x2"].as_f64().unwrap(),
            );
            e.report(Report {
                attempt: Attempt {
                    worker: "w",
                    sweep: &id,
                    trial: l.trial,
                    attempt: l.attempt,
                    lease_id: &l.lease_id,
                },
                epoch: 1,
                metrics: vec![("loss".into(), y)],
            })
            .await
            .unwrap();
            e.complete(Complete {
                attempt: Attempt {
                    worker: "w",
                    sweep: &id,
                    trial: l.trial,
                    attempt: l.attempt,
                    lease_id: &l.lease_id,
                },
                outcome: Outcome::Finished,
                metrics: vec![],
                confusion: None,
                error: String::new(),
                output: String::new(),
                model: None,
            })
            .await
            .unwrap();
        }
        assert_eq!(e.with_sweep(&id, |s| s.len()).unwrap(), 4);
        // Trial 5 is handed out and still running when the coordinator dies.
        let l = e
            .lease("w", &[], None, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        (id, l.params.to_value())
    };
    // Two coordinators restarted from identical copies of the store (one kept running, one
    // a fresh process) suggest the same trial 6: the suggestion depends only on the stored
    // config, seed and history (trial 5 pending), never on process state.
    let e1 = Engine::open(&p, opts(30_000)).unwrap();
    let snapshot = p.with_extension("copy.db");
    let _ = std::fs::remove_file(&snapshot);
    e1.with_sweep(&id, |s| {
        assert_eq!(s.trial(5).unwrap().params.to_value(), next)
    })
    .unwrap();
    drop(e1);
    for ext in ["", "-wal", "-shm"] {
        let from = format!("{}{ext}", p.display());
        if std::path::Path::new(&from).exists() {
            std::fs::copy(&from, format!("{}{ext}", snapshot.display())).unwrap();
        }
    }
    let a = Engine::open(&p, opts(30_000))
        .unwrap()
        .lease("w", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let b = Engine::open(&snapshot, opts(30_000))
        .unwrap()
        .lease("w", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.trial, 6);
    assert_eq!(
        (b.trial, &b.params),
        (6, &a.params),
        "the same history gives the same suggestion after a restart"
    );
}

#[tokio::test]
async fn reaching_the_metric_target_finishes_the_sweep_and_stops_running_trials() {
    let e = Engine::open(&db("target"), opts(30_000)).unwrap();
    let spec = SweepSpec::parse(
        "method: random\nrun_cap: 10\ntrainer: synthetic\nmetric: {name: loss, goal: minimize, target: 0.5}\nparameters:\n  x: {min: 0.0, max: 1.0}\n",
    )
    .unwrap();
    let id = e.create_sweep(spec, None).await.unwrap();
    let a = e
        .lease("w", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let b = e
        .lease("w", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    e.complete(Complete {
        attempt: Attempt {
            worker: "w",
            sweep: &id,
            trial: a.trial,
            attempt: 1,
            lease_id: &a.lease_id,
        },
        outcome: Outcome::Finished,
        metrics: vec![("loss".into(), 0.4)],
        confusion: None,
        error: String::new(),
        output: String::new(),
        model: None,
    })
    .await
    .unwrap();
    let act = e
        .report(Report {
            attempt: Attempt {
                worker: "w",
                sweep: &id,
                trial: b.trial,
                attempt: 1,
                lease_id: &b.lease_id,
            },
            epoch: 1,
            metrics: vec![("loss".into(), 0.9)],
        })
        .await
        .unwrap();
    assert!(
        matches!(act, Action::Stop(ref why) if why.contains("target")),
        "{act:?}"
    );
    assert!(
        e.lease("w", &[], None, Duration::ZERO)
            .await
            .unwrap()
            .is_none(),
        "no new trials after the target"
    );
    e.with_sweep(&id, |s| assert_eq!(s.state.name(), "finished"))
        .unwrap();
}

/// A Complete whose commit fails (the store is full) changes nothing that lasts: its retry is
/// not answered "already completed" from memory, memory is read back to what the store holds,
/// and once space returns the same Complete is kept.
#[tokio::test]
async fn a_failed_commit_is_rolled_back_and_its_retry_is_not_trusted() {
    let p = db("diskfull");
    let e = Engine::open(&p, opts(30_000)).unwrap();
    let id = e.create_sweep(synthetic("1, 2"), None).await.unwrap();
    let l = e
        .lease("w1", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    e.report(Report {
        attempt: Attempt {
            worker: "w1",
            sweep: &id,
            trial: l.trial,
            attempt: 1,
            lease_id: &l.lease_id,
        },
        epoch: 1,
        metrics: vec![("loss".into(), 3.0)],
    })
    .await
    .unwrap();
    // A confusion matrix large enough to need new pages in the file.
    let labels: Vec<String> = (0..60).map(|i| format!("class number {i:04}")).collect();
    let counts = vec![7u64; 60 * 60];
    let complete = || {
        e.complete(Complete {
            attempt: Attempt {
                worker: "w1",
                sweep: &id,
                trial: l.trial,
                attempt: 1,
                lease_id: &l.lease_id,
            },
            outcome: Outcome::Finished,
            metrics: vec![("loss".into(), 0.25)],
            confusion: Some((labels.clone(), counts.clone())),
            error: String::new(),
            output: String::new(),
            model: None,
        })
    };
    e.limit_store_growth(Some(0)).await;
    let err = complete().await.unwrap_err().to_string();
    assert!(err.contains("database or disk is full"), "{err}");
    // The retry is refused with the same cause, not accepted from memory.
    let err = complete().await.unwrap_err().to_string();
    assert!(err.contains("database or disk is full"), "{err}");
    assert!(e.down().is_some());
    // Read back (the disk still full): the trial is running again, as the store has it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !e.recover().await.unwrap() {
        assert!(std::time::Instant::now() < deadline, "never read back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    e.with_sweep(&id, |s| {
        let t = &s.trial(l.trial).unwrap();
        assert_eq!(t.state, TrialState::Running);
        assert_eq!(t.metrics.get("loss"), Some(3.0));
        assert!(t.confusion().is_none());
    })
    .unwrap();
    // Space returns: the worker's next retry is kept, and a repeat is idempotent.
    e.limit_store_growth(None).await;
    assert_eq!(complete().await.unwrap(), (true, String::new()));
    assert_eq!(complete().await.unwrap().1, "already completed");
    drop(e);
    let e = Engine::open(&p, opts(30_000)).unwrap();
    e.with_sweep(&id, |s| {
        let t = &s.trial(l.trial).unwrap();
        assert_eq!(t.state, TrialState::Finished);
        assert_eq!(t.metrics.get("loss").unwrap(), 0.25);
    })
    .unwrap();
    let f = e.trial_files(&id, l.trial, 0).await.unwrap();
    let m: serde_json::Value = serde_json::from_str(&f.confusion.unwrap()).unwrap();
    assert_eq!(m["labels"].as_array().unwrap().len(), 60);
}

/// Class labels are bounded at the edge (count and length), before anything is kept.
#[tokio::test]
async fn a_confusion_matrix_with_too_many_or_too_long_labels_is_refused() {
    let e = Engine::open(&db("labels"), opts(30_000)).unwrap();
    let id = e.create_sweep(synthetic("1"), None).await.unwrap();
    let l = e
        .lease("w1", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let try_labels = |labels: Vec<String>| {
        let k = labels.len();
        e.complete(Complete {
            attempt: Attempt {
                worker: "w1",
                sweep: &id,
                trial: l.trial,
                attempt: 1,
                lease_id: &l.lease_id,
            },
            outcome: Outcome::Finished,
            metrics: vec![("loss".into(), 0.5)],
            confusion: Some((labels, vec![1; k * k])),
            error: String::new(),
            output: String::new(),
            model: None,
        })
    };
    let many: Vec<String> = (0..1024).map(|i| format!("c{i}")).collect();
    let err = try_labels(many).await.unwrap_err().to_string();
    assert!(err.contains("1 to 256 class labels, got 1024"), "{err}");
    let long = vec!["x".repeat(10_000), "y".into()];
    let err = try_labels(long).await.unwrap_err().to_string();
    assert!(err.contains("1 to 64 characters, got 10000"), "{err}");
    // Nothing was kept: the trial is still running and completes normally.
    let ok = try_labels(vec!["a".into(), "b".into()]).await.unwrap();
    assert_eq!(ok, (true, String::new()));
}

/// Calls with made-up worker ids add nobody: only a registration does.
#[tokio::test]
async fn heartbeats_from_unknown_workers_are_not_counted_or_kept() {
    let e = Engine::open(&db("ghosts"), opts(30_000)).unwrap();
    for i in 0..10_000 {
        let beat = e.heartbeat(&format!("ghost-{i}"), &[format!("lease-{i}")], false);
        assert_eq!(beat.drop.len(), 1);
    }
    assert_eq!(e.live_workers(), 0);
    let id = e
        .register(None, "host".into(), 2, 1, "test".into(), vec![])
        .await
        .unwrap();
    e.heartbeat(&id, &[], false);
    assert_eq!(e.live_workers(), 1);
}

/// A sweep submitted while the store cannot grow is refused and leaves no ghost behind once
/// memory is read back; the next submit, with space, is kept.
#[tokio::test]
async fn a_submit_on_a_full_store_leaves_no_ghost_sweep() {
    let e = Engine::open(&db("ghostsweep"), opts(30_000)).unwrap();
    let values: Vec<String> = (0..3000).map(|i| i.to_string()).collect();
    let big = || {
        SweepSpec::parse(&format!(
            "method: grid\ntrainer: synthetic\nparameters:\n  x: {{values: [{}]}}\n",
            values.join(", ")
        ))
        .unwrap()
    };
    e.limit_store_growth(Some(0)).await;
    let err = e.create_sweep(big(), None).await.unwrap_err().to_string();
    assert!(err.contains("database or disk is full"), "{err}");
    // Not even before memory is read back (a store deleted for good is never read back).
    assert!(e.sweep_ids().is_empty(), "{:?}", e.sweep_ids());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !e.recover().await.unwrap() {
        assert!(std::time::Instant::now() < deadline, "never read back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(e.sweep_ids().is_empty(), "{:?}", e.sweep_ids());
    assert!(e
        .lease("w1", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .is_none());
    e.limit_store_growth(None).await;
    let id = e.create_sweep(big(), None).await.unwrap();
    assert_eq!(e.sweep_ids(), [id]);
}

/// A stored cell that is not JSON stops the start with the sweep, trial and column named,
/// instead of turning into an empty value.
#[tokio::test]
async fn corrupt_json_in_the_store_is_an_error_naming_the_cell() {
    let p = db("corrupt");
    let id = {
        let e = Engine::open(&p, opts(30_000)).unwrap();
        let id = e.create_sweep(synthetic("1"), None).await.unwrap();
        let l = e
            .lease("w1", &[], None, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        e.complete(Complete {
            attempt: Attempt {
                worker: "w1",
                sweep: &id,
                trial: 1,
                attempt: 1,
                lease_id: &l.lease_id,
            },
            outcome: Outcome::Finished,
            metrics: vec![("loss".into(), 0.5)],
            confusion: None,
            error: String::new(),
            output: String::new(),
            model: None,
        })
        .await
        .unwrap();
        id
    };
    let c = rusqlite::Connection::open(&p).unwrap();
    c.execute(
        "UPDATE trials SET metrics = '{\"loss\": 0.' WHERE trial = 1",
        [],
    )
    .unwrap();
    drop(c);
    let err = Engine::open(&p, opts(30_000)).unwrap_err().to_string();
    assert!(err.contains(&format!("sweep {id} trial 1")), "{err}");
    assert!(err.contains("stored metrics is not valid JSON"), "{err}");
}

/// A restart reads each sweep's validated spec as it was stored: a config that a later
/// version would refuse (here: its text replaced by one the validator refuses) does not stop
/// the coordinator, and the sweep goes on with the spec it was submitted with. A store written
/// before the spec was kept (spec NULL) still opens, from its config.
#[tokio::test]
async fn a_restart_does_not_validate_a_stored_config_again() {
    let p = db("stored-spec");
    let spec = SweepSpec::parse(
        "method: grid\ntrainer: synthetic\nmetric: {name: loss, goal: minimize}\nparameters:\n  x: {values: [1, 2, 3]}\n",
    )
    .unwrap();
    let id = {
        let e = Engine::open(&p, opts(30_000)).unwrap();
        e.create_sweep(spec, None).await.unwrap()
    };
    // What today's validator refuses: a grid over a continuous distribution.
    let refused = r#"{"method": "grid", "trainer": "synthetic", "parameters": {"x": {"min": 0.0, "max": 1.0}}}"#;
    assert!(SweepSpec::from_value(serde_json::from_str(refused).unwrap()).is_err());
    let c = rusqlite::Connection::open(&p).unwrap();
    c.execute("UPDATE sweeps SET config = ?1", [refused])
        .unwrap();
    drop(c);
    let e = Engine::open(&p, opts(30_000)).expect("the stored spec is not validated again");
    let total = e.with_sweep(&id, |s| s.spec.total()).unwrap();
    assert_eq!(total, Some(3), "the spec as submitted");
    let l = e
        .lease("w", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l.params.to_value()["x"], 1);
    drop(e);
    // A row without a spec (an older store) is read from its config, validated as before.
    let c = rusqlite::Connection::open(&p).unwrap();
    c.execute("UPDATE sweeps SET spec = NULL", []).unwrap();
    drop(c);
    let err = Engine::open(&p, opts(30_000)).unwrap_err().to_string();
    assert!(
        err.contains(&format!("stored config of sweep {id}")),
        "{err}"
    );
    let c = rusqlite::Connection::open(&p).unwrap();
    c.execute(
        "UPDATE sweeps SET config = ?1",
        [r#"{"method": "grid", "trainer": "synthetic", "metric": {"name": "loss", "goal": "minimize"}, "parameters": {"x": {"values": [1, 2, 3]}}}"#],
    )
    .unwrap();
    drop(c);
    let e = Engine::open(&p, opts(30_000)).unwrap();
    assert_eq!(e.with_sweep(&id, |s| s.spec.total()).unwrap(), Some(3));
}

#[tokio::test]
async fn an_ended_trials_curve_output_and_matrix_leave_memory_and_are_read_from_the_store() {
    let p = db("trimmed");
    let e = Engine::open(&p, opts(60_000)).unwrap();
    let values: Vec<String> = (1..=1100).map(|v| v.to_string()).collect();
    let spec = SweepSpec::parse(&format!(
        "method: grid\ntrainer: synthetic\nmetric: {{name: loss, goal: minimize}}\nparameters:\n  x: {{values: [{}]}}\n",
        values.join(", ")
    ))
    .unwrap();
    let id = e.create_sweep(spec, None).await.unwrap();
    while let Some(l) = e.lease("w", &[], None, Duration::ZERO).await.unwrap() {
        let attempt = Attempt {
            worker: "w",
            sweep: &id,
            trial: l.trial,
            attempt: l.attempt,
            lease_id: &l.lease_id,
        };
        for (epoch, loss) in [(1, 0.9), (2, 0.2), (3, 0.4)] {
            let metrics = vec![("loss".into(), loss), ("acc".into(), 1.0 - loss)];
            e.report(Report {
                attempt,
                epoch,
                metrics,
            })
            .await
            .unwrap();
        }
        let (ok, _) = e
            .complete(Complete {
                attempt,
                outcome: Outcome::Finished,
                metrics: vec![("test_acc".into(), 0.5)],
                confusion: Some((vec!["a".into(), "b".into()], vec![3, 1, 0, 4])),
                error: String::new(),
                output: format!("trial {} says hello", l.trial),
                model: None,
            })
            .await
            .unwrap();
        assert!(ok);
    }
    // The first trials are trimmed, the last ones still whole; both rank and summarise alike.
    e.with_sweep(&id, |s| {
        assert_eq!(s.counts().finished, 1100);
        let (old, new) = (s.trial(1).unwrap(), s.trial(1100).unwrap());
        assert!(!old.is_whole() && new.is_whole());
        assert!(old.output().is_none() && old.confusion().is_none());
        assert_eq!(old.curve.points().len(), 0, "no stopping rule reads it");
        let goal = coordinator::config::Goal::Minimize;
        assert_eq!(old.best("loss", goal), Some((0.2, 2)));
        assert_eq!(old.best("loss", goal), new.best("loss", goal));
        assert_eq!(old.metrics.get("test_acc"), Some(0.5));
        assert_eq!(old.metrics.get("acc"), Some(0.6));
    })
    .unwrap();
    let f = e.trial_files(&id, 1, 0).await.unwrap();
    let got: Vec<(u32, &str, f64)> = f
        .curve
        .points
        .iter()
        .map(|p| (p.0, p.1.as_str(), p.2))
        .collect();
    assert_eq!(
        got,
        [
            (1, "acc", 0.09999999999999998),
            (1, "loss", 0.9),
            (2, "acc", 0.8),
            (2, "loss", 0.2),
            (3, "acc", 0.6),
            (3, "loss", 0.4)
        ]
    );
    assert_eq!(f.output.as_deref(), Some("trial 1 says hello"));
    assert!(f.confusion.unwrap().contains("[3,1,0,4]"));
    // A restart reads ended trials without their points: each row keeps its best point. A row
    // written before it did (trial 2 here) has it worked out from the metric's points.
    drop(e);
    let c = rusqlite::Connection::open(&p).unwrap();
    c.execute(
        "UPDATE trials SET best = NULL, best_step = NULL WHERE trial = 2",
        [],
    )
    .unwrap();
    drop(c);
    let e = Engine::open(&p, opts(60_000)).unwrap();
    e.with_sweep(&id, |s| {
        let goal = coordinator::config::Goal::Minimize;
        for n in [1, 2, 1100] {
            let t = s.trial(n).unwrap();
            assert!(!t.is_whole());
            assert_eq!(t.best("loss", goal), Some((0.2, 2)), "trial {n}");
            assert_eq!(t.metrics.get("acc"), Some(0.6), "trial {n}");
        }
        assert_eq!(s.ranked_len(), 1100);
    })
    .unwrap();
    assert_eq!(
        e.trial_files(&id, 1100, 0)
            .await
            .unwrap()
            .curve
            .points
            .len(),
        6
    );
}

/// A checkpoint is kept for the attempt that holds the lease only, survives a restart, is what
/// the next attempt goes on from, and goes when the trial ends; each attempt of the trial is
/// recorded with the checkpoint it went on from and how it ended; a pause with hand-back asks
/// the worker at its heartbeat.
#[tokio::test]
async fn checkpoints_carry_a_trial_across_attempts_and_restarts() {
    let path = db("checkpoints");
    let e = Engine::open(&path, opts(100)).unwrap();
    let id = e.create_sweep(synthetic("1"), None).await.unwrap();
    let l1 = e
        .lease("w1", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l1.resume, None);
    fn who<'a>(l: &'a coordinator::engine::Lease, worker: &'a str) -> Attempt<'a> {
        Attempt {
            worker,
            sweep: &l.sweep_id,
            trial: l.trial,
            attempt: l.attempt,
            lease_id: &l.lease_id,
        }
    }
    // A pause with hand-back is told at the next heartbeat.
    e.control(&id, coordinator::engine::SweepState::Paused, true)
        .await
        .unwrap();
    let beat = e.heartbeat("w1", std::slice::from_ref(&l1.lease_id), false);
    assert_eq!(
        (beat.drop.len(), beat.hand_back),
        (0, vec![l1.lease_id.clone()])
    );
    e.control(&id, coordinator::engine::SweepState::Running, false)
        .await
        .unwrap();
    assert!(e
        .heartbeat("w1", std::slice::from_ref(&l1.lease_id), false)
        .hand_back
        .is_empty());

    let (ok, _) = e
        .save_checkpoint(who(&l1, "w1"), 2, 0, vec![1, 2, 3])
        .await
        .unwrap();
    assert!(ok);
    let (ok, _) = e
        .save_checkpoint(who(&l1, "w1"), 2, 7, vec![4; 1000])
        .await
        .unwrap();
    assert!(ok);
    let (mark, data) = e.trial_checkpoint(who(&l1, "w1")).await.unwrap().unwrap();
    assert_eq!(
        (mark.epoch, mark.batch, mark.bytes, mark.attempt),
        (2, 7, 1000, 1)
    );
    assert_eq!(data, vec![4; 1000]);

    // The worker dies; the coordinator restarts; the lease expires.
    drop(e);
    let e = Engine::open(&path, opts(100)).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(e.reap().await.unwrap(), 1);
    let l2 = e
        .lease("w2", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l2.attempt, 2);
    assert_eq!(
        l2.resume.map(|m| (m.epoch, m.batch, m.bytes)),
        Some((2, 7, 1000))
    );
    // The old attempt can neither fetch nor replace it.
    assert!(e.trial_checkpoint(who(&l1, "w1")).await.is_err());
    let (ok, why) = e
        .save_checkpoint(who(&l1, "w1"), 3, 0, vec![9])
        .await
        .unwrap();
    assert!(!ok && why.contains("stale"), "{why}");
    let (_, data) = e.trial_checkpoint(who(&l2, "w2")).await.unwrap().unwrap();
    assert_eq!(data, vec![4; 1000]);

    // Attempt 2 dies too, without a checkpoint of its own: with max_attempts 2 the trial would
    // fail, but attempt 1 made progress, so it is one in a row without, and the trial goes on.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(e.reap().await.unwrap(), 1);
    let l3 = e
        .lease("w3", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l3.attempt, 3);
    assert_eq!(
        l3.resume.map(|m| (m.epoch, m.batch, m.attempt)),
        Some((2, 7, 1))
    );

    // Attempt 3's worker cannot use the checkpoint (corrupt) and trains from the start: its
    // first report, of epoch 1, shows it, and its record no longer says it went on from one.
    e.report(coordinator::engine::Report {
        attempt: who(&l3, "w3"),
        epoch: 1,
        metrics: vec![("loss".into(), 2.0)],
    })
    .await
    .unwrap();
    // Attempt 3 finishes: the checkpoint goes, every attempt is recorded.
    let (ok, _) = e
        .complete(Complete {
            attempt: who(&l3, "w3"),
            outcome: Outcome::Finished,
            metrics: vec![("loss".into(), 1.0)],
            confusion: None,
            error: String::new(),
            output: String::new(),
            model: None,
        })
        .await
        .unwrap();
    assert!(ok);
    let attempts = e.attempts(&id, 1).await.unwrap();
    let seen: Vec<String> = attempts
        .iter()
        .map(|a| {
            format!(
                "{} {:?} {:?} {}",
                a.attempt,
                a.worker,
                a.resumed_from.map(|m| (m.epoch, m.batch)),
                a.ending
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            "1 Some(\"w1\") None lease expired",
            "2 Some(\"w2\") Some((2, 7)) lease expired",
            "3 Some(\"w3\") None finished"
        ]
    );
    assert!(attempts.iter().all(|a| a.ended_at.is_some()));
    // An expired attempt ended at its last sign of life (here the restart renewed its lease),
    // not when the reaper saw it gone (the test slept 150 ms in between).
    let gap = attempts[1].started_at.unwrap() - attempts[0].ended_at.unwrap();
    assert!(gap >= 0.1, "attempt 1 ended {gap} s before attempt 2 began");
    drop(e);
    let e = Engine::open(&path, opts(100)).unwrap();
    let left = e
        .with_sweep(&id, |s| s.trial(1).unwrap().checkpoint())
        .unwrap();
    assert_eq!(left, None);
    let rows: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM checkpoints", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0, "an ended trial's checkpoint is deleted");
}

#[tokio::test]
async fn a_programs_files_are_fenced_replaced_and_kept_only_for_the_best_trials() {
    use coordinator::store::ProgramFile;
    let path = db("program-files");
    let e = Engine::open(&path, opts(100)).unwrap();
    let spec = SweepSpec::parse(
        "program: t.py\nmethod: grid\nmax_attempts: 3\nkeep_models: 2\n\
         metric: {name: acc, goal: maximize}\nprogram_options: {max_files_mb: 1}\n\
         parameters:\n  x: {values: [1, 2, 3, 4]}\n",
    )
    .unwrap();
    let id = e.create_sweep(spec, None).await.unwrap();
    let program = ["program".to_string()];
    let program = &program;
    let lease = |w: &'static str| {
        let e = e.clone();
        async move {
            e.lease(w, program, None, Duration::ZERO)
                .await
                .unwrap()
                .unwrap()
        }
    };
    fn who<'a>(l: &'a coordinator::engine::Lease, worker: &'a str) -> Attempt<'a> {
        Attempt {
            worker,
            sweep: &l.sweep_id,
            trial: l.trial,
            attempt: l.attempt,
            lease_id: &l.lease_id,
        }
    }
    fn one(name: &str, bytes: usize) -> (Vec<ProgramFile>, Vec<u8>) {
        let data = vec![7u8; bytes];
        let f = ProgramFile {
            path: name.into(),
            bytes: bytes as u64,
            sha256: sweep_proto::transfer::digest(&data),
        };
        (vec![f], data)
    }
    // Sends one file of `bytes` bytes as the attempt `l`'s.
    let send = |l: &coordinator::engine::Lease, name: &str, bytes: usize| {
        let (e, l, (list, data)) = (e.clone(), l.clone(), one(name, bytes));
        async move { e.save_program_files(who(&l, "w"), list, data).await }
    };
    // The trial whose files are kept (`None`: the best with some) and their names.
    let kept = |trial: Option<u64>| {
        let (e, id) = (e.clone(), id.clone());
        async move {
            e.program_files(&id, trial)
                .await
                .unwrap()
                .map(|(n, l)| (n, l.into_iter().map(|f| f.path).collect::<Vec<_>>()))
        }
    };
    let finish = |l: coordinator::engine::Lease, acc: f64| {
        let e = e.clone();
        async move {
            let (ok, why) = e
                .complete(Complete {
                    attempt: who(&l, "w"),
                    outcome: Outcome::Finished,
                    metrics: vec![("acc".into(), acc)],
                    confusion: None,
                    error: String::new(),
                    output: String::new(),
                    model: None,
                })
                .await
                .unwrap();
            assert!(ok, "{why}");
        }
    };

    // Trial 1, attempt 1 sends its files, then its lease runs out.
    let l1 = lease("w").await;
    assert!(send(&l1, "a.txt", 10).await.unwrap().0);
    // More than the sweep keeps per trial is refused with the limit's name.
    let (list, data) = one("huge.bin", (1 << 20) + 1);
    let err = e
        .save_program_files(who(&l1, "w"), list, data)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_files_mb"), "{err}");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(e.reap().await.unwrap(), 1);
    let l1b = lease("w").await;
    assert_eq!((l1b.trial, l1b.attempt), (1, 2));
    // The stale attempt can no longer send any; the new one's replace attempt 1's.
    let (list, data) = one("stale.txt", 3);
    let (ok, why) = e
        .save_program_files(who(&l1, "w"), list, data)
        .await
        .unwrap();
    assert!(!ok && why.contains("stale"), "{why}");
    assert!(send(&l1b, "b.txt", 20).await.unwrap().0);
    assert_eq!(kept(Some(1)).await, Some((1, vec!["b.txt".to_string()])));
    finish(l1b, 0.5).await;
    assert_eq!(kept(None).await, Some((1, vec!["b.txt".to_string()])));

    // Trial 2 ends best and keeps its files beside trial 1's (keep_models: 2).
    let l2 = lease("w").await;
    assert!(send(&l2, "c.txt", 5).await.unwrap().0);
    finish(l2, 0.9).await;
    assert_eq!(kept(None).await, Some((2, vec!["c.txt".to_string()])));

    // Trial 3 ends below both: its files are dropped at once, all but what its program
    // logged (media/), which every trial keeps.
    let l3 = lease("w").await;
    let (mut list, mut data) = one("d.txt", 5);
    let (media, media_data) = one("media/images/d_0_1.png", 4);
    list.extend(media);
    data.extend(media_data);
    assert!(
        e.save_program_files(who(&l3, "w"), list, data)
            .await
            .unwrap()
            .0
    );
    finish(l3, 0.1).await;
    let media = vec!["media/images/d_0_1.png".to_string()];
    assert_eq!(kept(Some(3)).await, Some((3, media.clone())));

    // Trial 4's first attempt sends files and dies; its second ends best without sending any:
    // the first attempt's files are not taken for the second's, and trial 1 is pushed out.
    let l4 = lease("w").await;
    assert!(send(&l4, "e.txt", 5).await.unwrap().0);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(e.reap().await.unwrap(), 1);
    let l4b = lease("w").await;
    assert_eq!((l4b.trial, l4b.attempt), (4, 2));
    finish(l4b, 1.0).await;
    assert_eq!(kept(Some(4)).await, None);
    assert_eq!(kept(Some(1)).await, None);

    // What is kept survives a restart: the best trial with files is trial 2.
    drop(e);
    let e = Engine::open(&path, opts(100)).unwrap();
    let (n, list) = e.program_files(&id, None).await.unwrap().unwrap();
    assert_eq!((n, list.len(), list[0].path.as_str()), (2, 1, "c.txt"));
    assert_eq!(
        e.program_file(&id, 2, "c.txt").await.unwrap(),
        Some(vec![7u8; 5])
    );
    assert_eq!(e.program_file(&id, 4, "e.txt").await.unwrap(), None);
    assert_eq!(
        e.program_files(&id, Some(3))
            .await
            .unwrap()
            .map(|(_, l)| l.into_iter().map(|f| f.path).collect::<Vec<_>>()),
        Some(media)
    );
}

#[tokio::test]
async fn a_checkpoint_is_shown_only_once_the_store_has_it() {
    let e = Engine::open(&db("checkpoint-shown"), opts(30_000)).unwrap();
    let id = e.create_sweep(synthetic("1"), None).await.unwrap();
    let l = e
        .lease("w", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let who = Attempt {
        worker: "w",
        sweep: &l.sweep_id,
        trial: l.trial,
        attempt: l.attempt,
        lease_id: &l.lease_id,
    };
    let shown = |e: &Engine| {
        e.with_sweep(&id, |s| s.trial(1).and_then(|t| t.checkpoint()))
            .unwrap()
    };
    // A save the store cannot commit (a full disk) is never shown, nor counted as progress.
    e.limit_store_growth(Some(0)).await;
    assert!(e
        .save_checkpoint(who, 1, 0, vec![5; 1 << 20])
        .await
        .is_err());
    assert_eq!(shown(&e), None);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !e.recover().await.unwrap() {
        assert!(std::time::Instant::now() < deadline, "never read back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(shown(&e), None);
    e.limit_store_growth(None).await;
    // A committed one is.
    assert!(e.save_checkpoint(who, 1, 3, vec![6; 10]).await.unwrap().0);
    assert_eq!(shown(&e).map(|m| (m.epoch, m.batch)), Some((1, 3)));
}

#[tokio::test]
async fn stopping_a_sweep_ends_its_running_trials_now_and_their_next_heartbeat_drops_them() {
    let path = db("stop-now");
    let e = Engine::open(&path, opts(60_000)).unwrap();
    let id = e.create_sweep(synthetic("1, 2, 3"), None).await.unwrap();
    let l1 = e
        .lease("w1", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let l2 = e
        .lease("w1", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    e.control(&id, coordinator::engine::SweepState::Stopped, false)
        .await
        .unwrap();
    // At once, not at the trials' next report: both running trials are stopped with the
    // reason, and the third never runs.
    e.with_sweep(&id, |s| {
        for n in [l1.trial, l2.trial] {
            let t = s.trial(n).unwrap();
            assert_eq!(t.state, TrialState::Stopped);
            assert_eq!(
                t.error.as_deref(),
                Some("the sweep was stopped while this trial ran (attempt 1)")
            );
        }
        assert!(s.trial(3).is_none_or(|t| t.state == TrialState::Stopped));
        assert_eq!(s.running().count(), 0);
    })
    .unwrap();
    // The worker's next heartbeat tells it to drop both.
    let beat = e.heartbeat("w1", &[l1.lease_id.clone(), l2.lease_id.clone()], false);
    assert_eq!(beat.drop, vec![l1.lease_id.clone(), l2.lease_id.clone()]);
    // A late report is told to abandon; the stop is what the store keeps.
    let a = e
        .report(Report {
            attempt: Attempt {
                worker: "w1",
                sweep: &id,
                trial: l1.trial,
                attempt: 1,
                lease_id: &l1.lease_id,
            },
            epoch: 1,
            metrics: vec![("loss".into(), 1.0)],
        })
        .await
        .unwrap();
    assert!(matches!(a, Action::Abandon(_)), "{a:?}");
    drop(e);
    let e = Engine::open(&path, opts(60_000)).unwrap();
    e.with_sweep(&id, |s| {
        assert_eq!(s.trial(l1.trial).unwrap().state, TrialState::Stopped);
        assert_eq!(s.running().count(), 0);
    })
    .unwrap();
}

#[tokio::test]
async fn registrations_are_bounded_and_workers_gone_a_day_are_forgotten() {
    let p = db("forget");
    {
        let e = Engine::open(&p, opts(30_000)).unwrap();
        // Fields of any length are refused, naming the field (before: 7 MiB each were kept).
        let host = "h".repeat(coordinator::engine::MAX_HOST_BYTES + 1);
        let err = e
            .register(None, host, 2, 1, "v".into(), vec![])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("host: 256 bytes"), "{err}");
        let err = e
            .register(None, "h".into(), 2, 1, "v".repeat(7 << 20), vec![])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("version: 7340032 bytes"), "{err}");
        // So are GPU lists and texts a client makes large.
        use coordinator::engine::{GpuInfo, MAX_GPUS, MAX_GPU_TEXT};
        let gpu = |id: &str| GpuInfo {
            id: id.into(),
            ..GpuInfo::default()
        };
        let refused = |gpus: Vec<GpuInfo>| {
            let e = &e;
            async move {
                e.register(None, "h".into(), 2, 1, "v".into(), gpus)
                    .await
                    .unwrap_err()
                    .to_string()
            }
        };
        let many: Vec<GpuInfo> = (0..=MAX_GPUS).map(|i| gpu(&i.to_string())).collect();
        let err = refused(many).await;
        assert!(err.starts_with("gpus: 65 GPUs"), "{err}");
        let long = GpuInfo {
            name: "n".repeat(MAX_GPU_TEXT + 1),
            ..gpu("0")
        };
        let err = refused(vec![gpu("0"), long]).await;
        assert!(err.starts_with("gpus[1].name: 129 bytes"), "{err}");
        let err = refused(vec![gpu("")]).await;
        assert!(err.starts_with("gpus[0].id: empty"), "{err}");
        let err = refused(vec![gpu("0"), gpu("1"), gpu("0")]).await;
        assert!(
            err.starts_with("gpus[2].id: \"0\" is registered twice"),
            "{err}"
        );
        assert_eq!(e.known_workers(), 0, "nothing refused was kept");
        for i in 0..50 {
            e.register(
                Some(format!("gone-{i}")),
                "h".into(),
                2,
                1,
                "v".into(),
                vec![],
            )
            .await
            .unwrap();
        }
        assert_eq!(e.known_workers(), 50);
        // A day later (the horizon moved instead of the clock), one of them is still heard from.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let later = now_secs();
        e.register(Some("alive".into()), "h".into(), 2, 1, "v".into(), vec![])
            .await
            .unwrap();
        assert_eq!(e.forget_workers(later).await.unwrap(), 50);
        assert_eq!(e.known_workers(), 1);
    }
    // Forgotten in the store too: a restart knows only the one heard from.
    let e = Engine::open(&p, opts(30_000)).unwrap();
    assert_eq!(e.known_workers(), 1);
    // A stored worker not heard from since the restart counts as heard from at the start.
    assert_eq!(e.forget_workers(now_secs() - 60.0).await.unwrap(), 0);
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn a_programs_rows_keep_their_steps_and_the_rungs_count_metric_values() {
    let path = db("rows");
    let e = Engine::open(&path, opts(30_000)).unwrap();
    let spec = SweepSpec::parse(
        "method: grid\ntrainer: synthetic\nmetric: {name: loss, goal: minimize}\nearly_terminate: {type: asha, min_iter: 1, eta: 2}\nparameters:\n  x: {values: [1, 2]}\n",
    )
    .unwrap();
    let id = e.create_sweep(spec, None).await.unwrap();
    let l1 = e
        .lease("w", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let l2 = e
        .lease("w", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    fn at<'a>(sweep: &'a str, trial: u64, lease_id: &'a str) -> Attempt<'a> {
        Attempt {
            worker: "w",
            sweep,
            trial,
            attempt: 1,
            lease_id,
        }
    }
    let (lease1, lease2) = (l1.lease_id.as_str(), l2.lease_id.as_str());
    let row = |step, kv: &[(&str, f64)]| {
        (
            step,
            kv.iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<Vec<_>>(),
        )
    };
    // Trial 1: three per-batch rows, then its first loss at step 4 (W&B's _step 3): one rung.
    let a = e
        .report_rows(
            at(&id, 1, lease1),
            vec![
                row(1, &[("batch_loss", 2.0)]),
                row(2, &[("batch_loss", 1.5)]),
                row(3, &[("batch_loss", 1.2), ("epoch", 0.0)]),
                row(4, &[("loss", 1.0), ("epoch", 0.0)]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(a, Action::Continue);
    // Trial 2's first loss, at step 9, is judged at rung 1 beside trial 1's.
    let a = e
        .report_rows(at(&id, 2, lease2), vec![row(9, &[("loss", 5.0)])])
        .await
        .unwrap();
    assert!(
        matches!(&a, Action::Stop(why) if why.contains("asha: rung 1")),
        "{a:?}"
    );
    // Rows must go up in step, be there, and be at most MAX_REPORT_ROWS.
    for bad in [
        vec![row(6, &[("loss", 1.0)]), row(5, &[("loss", 1.0)])],
        vec![],
        vec![row(0, &[("loss", 1.0)])],
        (1..=4097).map(|s| row(s, &[("l", 1.0)])).collect(),
    ] {
        let err = e.report_rows(at(&id, 1, lease1), bad).await.unwrap_err();
        assert!(
            matches!(err, coordinator::engine::EngineError::Invalid(_)),
            "{err}"
        );
    }
    let points = |e: &Engine| {
        e.with_sweep(&id, |s| {
            s.trial(1)
                .unwrap()
                .curve
                .points()
                .iter()
                .map(|p| (p.step, p.name.to_string(), p.value))
                .collect::<Vec<_>>()
        })
        .unwrap()
    };
    let want: Vec<(u32, String, f64)> = [
        (1, "batch_loss", 2.0),
        (2, "batch_loss", 1.5),
        (3, "batch_loss", 1.2),
        (3, "epoch", 0.0),
        (4, "epoch", 0.0),
        (4, "loss", 1.0),
    ]
    .into_iter()
    .map(|(s, n, v)| (s, n.to_string(), v))
    .collect();
    assert_eq!(points(&e), want);
    // The store has every row at its step: a restart reads the same curve back.
    drop(e);
    let e = Engine::open(&path, opts(30_000)).unwrap();
    assert_eq!(points(&e), want);
}

/// Trains one leased trial of `id` by hand: reports `losses` epoch by epoch until the rule
/// stops it (then completes it as stopped) or they run out (finished); says which.
async fn train_by_hand(
    e: &Engine,
    id: &str,
    l: &coordinator::engine::Lease,
    losses: &[f64],
) -> Outcome {
    let a = Attempt {
        worker: "w",
        sweep: id,
        trial: l.trial,
        attempt: l.attempt,
        lease_id: &l.lease_id,
    };
    let mut outcome = Outcome::Finished;
    for (i, &y) in losses.iter().enumerate() {
        let r = e.report(Report {
            attempt: a,
            epoch: i as u32 + 1,
            metrics: vec![("loss".into(), y)],
        });
        if let Action::Stop(_) = r.await.unwrap() {
            outcome = Outcome::Stopped;
            break;
        }
    }
    let c = e.complete(Complete {
        attempt: a,
        outcome,
        metrics: vec![],
        confusion: None,
        error: String::new(),
        output: String::new(),
        model: None,
    });
    assert!(c.await.unwrap().0);
    outcome
}

/// With ASHA (rungs 1, 2, 4), a GP needing 3 trials and `learn_from_rungs`, four trials
/// hand-trained: only two finish, three reach rung 2 — so the model learns from the values at
/// rung 2 (trial 2, cut at rung 1, counts as the worst there), not from final values (as it
/// does by default, checked last). The engine's next
/// suggestions equal those computed from exactly those losses, before and after a restart
/// (which reads the trimmed trials' rung values back from the store), and differ from the
/// final-values suggestion, so the test sees which the engine used.
#[tokio::test]
async fn bayes_with_asha_learns_from_the_highest_rung_enough_trials_reached() {
    let p = db("bayes-rungs");
    let yaml = "method: bayes\ntrainer: synthetic\nseed: 5\nmetric: {name: loss, goal: minimize}\nbayes: {engine: gp, startup_trials: 3, learn_from_rungs: true}\nearly_terminate: {type: asha, min_iter: 1, eta: 2, max_iter: 4}\nparameters:\n  x1: {min: -5.0, max: 10.0}\n  x2: {min: 0.0, max: 15.0}\n";
    let spec = SweepSpec::parse(yaml).unwrap();
    // Per trial: its losses per epoch, how it ends under ASHA, its loss at rung 2 (the worst
    // there, 9, for trial 2) and its final loss.
    let plan: [(&[f64], Outcome, f64, f64); 4] = [
        (&[10.0, 9.0, 8.0, 7.0], Outcome::Finished, 9.0, 7.0),
        (&[20.0, 1.0, 1.0, 1.0], Outcome::Stopped, 9.0, 20.0),
        (&[5.0, 4.0, 3.5, 3.0], Outcome::Finished, 4.0, 3.0),
        (&[6.0, 8.0, 1.0, 1.0], Outcome::Stopped, 8.0, 8.0),
    ];
    let mut params = Vec::new();
    let id = {
        let e = Engine::open(&p, opts(30_000)).unwrap();
        let id = e.create_sweep(spec.clone(), None).await.unwrap();
        for (losses, ends, _, _) in &plan {
            let l = e
                .lease("w", &[], None, Duration::ZERO)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(train_by_hand(&e, &id, &l, losses).await, *ends);
            params.push(l.params.to_value());
        }
        let at_rung: Vec<Option<Vec<f64>>> = plan.iter().map(|t| Some(vec![t.2])).collect();
        let finals: Vec<Option<Vec<f64>>> = plan.iter().map(|t| Some(vec![t.3])).collect();
        let want = coordinator::search::suggest_objectives(&spec, 5, &params, &at_rung).unwrap();
        let not = coordinator::search::suggest_objectives(&spec, 5, &params, &finals).unwrap();
        assert_ne!(want, not, "the test must tell the two apart");
        let l = e
            .lease("w", &[], None, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((l.trial, l.params.to_value()), (5, want));
        params.push(l.params.to_value());
        id
    };
    // Restarted (every ended trial read back trimmed; trial 5 still running): trial 6.
    let e = Engine::open(&p, opts(30_000)).unwrap();
    let mut at_rung: Vec<Option<Vec<f64>>> = plan.iter().map(|t| Some(vec![t.2])).collect();
    at_rung.push(None);
    let want = coordinator::search::suggest_objectives(&spec, 6, &params, &at_rung).unwrap();
    let l = e
        .lease("w", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((l.trial, l.params.to_value()), (6, want));
    let _ = id;

    // By default the model learns from final values: the same plan, trial 5 from those.
    let spec = SweepSpec::parse(&yaml.replace(", learn_from_rungs: true", "")).unwrap();
    assert!(!spec.bayes.learn_from_rungs);
    let e = Engine::open(&db("bayes-finals"), opts(30_000)).unwrap();
    let id = e.create_sweep(spec.clone(), None).await.unwrap();
    let mut params = Vec::new();
    for (losses, ends, _, _) in &plan {
        let l = e
            .lease("w", &[], None, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(l.sweep_id, id);
        assert_eq!(train_by_hand(&e, &id, &l, losses).await, *ends);
        params.push(l.params.to_value());
    }
    let finals: Vec<Option<Vec<f64>>> = plan.iter().map(|t| Some(vec![t.3])).collect();
    let want = coordinator::search::suggest_objectives(&spec, 5, &params, &finals).unwrap();
    let l = e
        .lease("w", &[], None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((l.trial, l.params.to_value()), (5, want));
}

#[tokio::test]
async fn trials_get_free_gpus_of_a_worker_that_has_enough_and_hold_them_until_their_lease_ends() {
    use coordinator::engine::GpuInfo;
    let path = db("gpus");
    let e = Engine::open(&path, opts(200)).unwrap();
    let gpus = |ids: &[&str]| -> Vec<GpuInfo> {
        ids.iter()
            .map(|id| GpuInfo {
                id: id.to_string(),
                ..GpuInfo::default()
            })
            .collect()
    };
    let register = |id: &str, g: Vec<GpuInfo>| {
        let e = e.clone();
        let id = id.to_string();
        async move {
            e.register(Some(id), "h".into(), 8, 4, "v".into(), g)
                .await
                .unwrap()
        }
    };
    register("one", gpus(&["0"])).await;
    register("three", gpus(&["0", "1", "GPU-c"])).await;
    register("none", vec![]).await;
    let spec = SweepSpec::parse(
        "program: t.py\nmethod: grid\nmax_attempts: 5\nmetric: {name: acc, goal: maximize}\n\
         program_options: {gpus: 2}\nparameters:\n  x: {values: [1, 2, 3]}\n",
    )
    .unwrap();
    let id = e.create_sweep(spec, None).await.unwrap();
    let program = vec!["program".to_string()];
    let lease = |w: &'static str| {
        let (e, program) = (e.clone(), program.clone());
        async move { e.lease(w, &program, None, Duration::ZERO).await.unwrap() }
    };
    let notices = || e.with_sweep(&id, |s| s.notices()).unwrap();
    // Workers with fewer than two GPUs get nothing, and the sweep says why.
    assert!(lease("one").await.is_none());
    assert!(lease("none").await.is_none());
    assert!(
        notices()
            .iter()
            .any(|n| n.starts_with("waiting: no worker has 2 GPUs") && n.contains("at most 1")),
        "{:?}",
        notices()
    );
    // The worker with three gets a trial on its first two; its third is not enough for another.
    let l1 = lease("three").await.unwrap();
    assert_eq!(l1.gpus, ["0", "1"]);
    assert!(lease("three").await.is_none());
    let detail = |n: u64| {
        e.with_sweep(&id, |s| {
            s.trial(n)
                .unwrap()
                .gpus()
                .iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
        })
        .unwrap()
    };
    assert_eq!(detail(1), ["0", "1"]);
    // Its lease ends (a completion): the GPUs are free for the next trial.
    let done = |l: &coordinator::engine::Lease, worker: &'static str| {
        let (e, l) = (e.clone(), l.clone());
        async move { end_lease(&e, &l, worker, Outcome::Finished, 0.5, "", "").await }
    };
    done(&l1, "three").await;
    let l2 = lease("three").await.unwrap();
    assert_eq!(
        (l2.trial, l2.gpus.clone()),
        (2, vec!["0".into(), "1".into()])
    );
    // An expired lease frees them too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(e.reap().await.unwrap(), 1);
    let l3 = lease("three").await.unwrap();
    assert_eq!((l3.trial, l3.attempt), (2, 2));
    assert_eq!(detail(2), ["0", "1"]);
    // After a restart the running attempt still holds its GPUs (and says which).
    drop(e);
    let e = Engine::open(&path, opts(60_000)).unwrap();
    assert!(e
        .lease("three", &program, None, Duration::ZERO)
        .await
        .unwrap()
        .is_none());
    assert_eq!(e.gpus_leased(), 2);
    let kept = e
        .with_sweep(&id, |s| {
            s.trial(2)
                .unwrap()
                .gpus()
                .iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
        })
        .unwrap();
    assert_eq!(kept, ["0", "1"]);
    // Sweeps that ask for none go on leasing to the same worker meanwhile.
    let cpu =
        SweepSpec::parse("method: grid\ntrainer: synthetic\nparameters:\n  x: {values: [1]}\n")
            .unwrap();
    e.create_sweep(cpu, None).await.unwrap();
    let both = ["program".to_string(), "synthetic".into()];
    let l = e
        .lease("three", &both, None, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert!(l.gpus.is_empty());
    assert_eq!(e.gpus_leased(), 2);
}

#[tokio::test]
async fn a_gang_is_leased_to_all_its_workers_at_once_and_ends_together() {
    use coordinator::engine::Rendezvous;
    let path = db("gang");
    let e = Engine::open(&path, opts(300)).unwrap();
    for w in ["a", "b", "c"] {
        e.register(Some(w.into()), w.into(), 8, 2, "v".into(), vec![])
            .await
            .unwrap();
    }
    let spec = SweepSpec::parse(
        "program: t.py\nmethod: grid\nmax_attempts: 3\nmetric: {name: acc, goal: maximize}\n\
         program_options: {nodes: 2}\nparameters:\n  x: {values: [1, 2]}\n",
    )
    .unwrap();
    let id = e.create_sweep(spec, None).await.unwrap();
    let program = vec!["program".to_string()];
    let at = |w: &str| Rendezvous {
        addr: format!("10.0.0.{}", w.as_bytes()[0] - b'a' + 1),
        port: 29500,
    };
    let ask = |w: &'static str, wait_ms: u64| {
        let (e, program, at) = (e.clone(), program.clone(), at(w));
        tokio::spawn(async move {
            e.lease_at(w, &program, None, Duration::from_millis(wait_ms), Some(&at))
                .await
                .unwrap()
        })
    };
    // Alone, a worker waits for the gang (the sweep says so) and leaves it when its wait runs
    // out: neither leased.
    let alone = ask("a", 400);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let notices = e.with_sweep(&id, |s| s.notices()).unwrap();
    assert!(
        notices
            .iter()
            .any(|n| n.contains("runs on 2 workers at once") && n.contains("1 of 2 are waiting")),
        "{notices:?}"
    );
    assert!(alone.await.unwrap().is_none());
    assert!(e.with_sweep(&id, |s| s.notices()).unwrap().is_empty());
    // A worker that cannot be reached by others (no rendezvous) takes no part.
    assert!(e
        .lease("b", &program, None, Duration::ZERO)
        .await
        .unwrap()
        .is_none());
    // Two slots of one worker are not two members.
    let (a1, a2) = (ask("a", 300), ask("a", 300));
    assert!(a1.await.unwrap().is_none() && a2.await.unwrap().is_none());
    // Two workers: both leased, the one that came first as rank 0, hosting the rendezvous.
    let first = ask("a", 5_000);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = ask("b", 5_000).await.unwrap().unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!((first.trial, second.trial), (1, 1));
    assert_eq!((first.attempt, second.attempt), (1, 1));
    assert_ne!(first.lease_id, second.lease_id);
    let place = |l: &coordinator::engine::Lease| {
        let g = l.gang.clone().unwrap();
        (g.rank, g.size, g.master_addr, g.master_port)
    };
    assert_eq!(place(&first), (0, 2, "10.0.0.1".to_string(), 29500));
    assert_eq!(place(&second), (1, 2, "10.0.0.1".to_string(), 29500));
    // Each renews its own lease. b's worker dies (no more heartbeats): a's renewals do not keep
    // the attempt alive; it ends when b's lease expires, and a's lease goes with it.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(e
            .heartbeat("a", std::slice::from_ref(&first.lease_id), false)
            .drop
            .is_empty());
    }
    assert_eq!(e.reap().await.unwrap(), 1);
    let why = e
        .with_sweep(&id, |s| {
            s.trial(1)
                .unwrap()
                .error
                .as_deref()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap();
    assert_eq!(
        why,
        "lease of attempt 1 expired (worker b, rank 1 of the gang)"
    );
    assert_eq!(
        e.heartbeat("a", std::slice::from_ref(&first.lease_id), false)
            .drop,
        std::slice::from_ref(&first.lease_id)
    );
    // Retried on a fresh gang (c and a), as attempt 2.
    let first = ask("c", 5_000);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = ask("a", 5_000).await.unwrap().unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!((first.trial, first.attempt, second.attempt), (1, 2, 2));
    assert_eq!(place(&first).2, "10.0.0.3");
    // The member's program ends well first (its output is kept), then rank 0 completes: the
    // trial is done and the member's lease is gone.
    let complete =
        |l: coordinator::engine::Lease, worker: &'static str, outcome: Outcome, output: &str| {
            let (e, output) = (e.clone(), output.to_string());
            let error = if outcome == Outcome::Failed {
                "exit 1"
            } else {
                ""
            };
            async move { end_lease(&e, &l, worker, outcome, 0.9, error, &output).await }
        };
    assert!(
        complete(second.clone(), "a", Outcome::Finished, "rank one says hi")
            .await
            .0
    );
    let state = |n: u64| e.with_sweep(&id, |s| s.trial(n).unwrap().state).unwrap();
    assert_eq!(state(1), TrialState::Running);
    assert!(
        complete(first.clone(), "c", Outcome::Finished, "rank zero")
            .await
            .0
    );
    assert_eq!(state(1), TrialState::Finished);
    let output = e
        .with_sweep(&id, |s| s.trial(1).unwrap().output().map(str::to_string))
        .unwrap()
        .unwrap();
    assert!(
        output.starts_with("rank zero") && output.contains("rank one says hi"),
        "{output}"
    );
    // Trial 2: a member's program fails, so the trial fails; rank 0 learns at its heartbeat.
    let first = ask("b", 5_000);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = ask("c", 5_000).await.unwrap().unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.trial, 2);
    // The coordinator restarts meanwhile: the gang's leases are still held.
    drop(e);
    let e = Engine::open(&path, opts(60_000)).unwrap();
    assert!(e
        .heartbeat("c", std::slice::from_ref(&second.lease_id), false)
        .drop
        .is_empty());
    assert!(e
        .heartbeat("b", std::slice::from_ref(&first.lease_id), false)
        .drop
        .is_empty());
    let (ok, _) = end_lease(&e, &second, "c", Outcome::Failed, 0.9, "exit 1", "").await;
    assert!(ok);
    let (state, error) = e
        .with_sweep(&id, |s| {
            let t = s.trial(2).unwrap();
            (t.state, t.error.as_deref().unwrap_or_default().to_string())
        })
        .unwrap();
    assert_eq!(state, TrialState::Failed);
    assert!(
        error.starts_with("rank 1 of the gang (worker c) failed: exit 1"),
        "{error}"
    );
    assert_eq!(
        e.heartbeat("b", std::slice::from_ref(&first.lease_id), false)
            .drop,
        std::slice::from_ref(&first.lease_id)
    );
}

#[tokio::test]
async fn two_gangs_waiting_for_the_same_workers_never_split_them() {
    use coordinator::engine::Rendezvous;
    let e = Engine::open(&db("gangs-compete"), opts(60_000)).unwrap();
    let gang = |name: &str| {
        SweepSpec::parse(&format!(
            "name: {name}\nprogram: t.py\nmethod: grid\nmetric: {{name: acc, goal: maximize}}\n\
             program_options: {{nodes: 2}}\nparameters:\n  x: {{value: 1}}\n"
        ))
        .unwrap()
    };
    let a = e.create_sweep(gang("a"), None).await.unwrap();
    let b = e.create_sweep(gang("b"), None).await.unwrap();
    let program = vec!["program".to_string()];
    let ask = |w: String| {
        let (e, program) = (e.clone(), program.clone());
        tokio::spawn(async move {
            let at = Rendezvous {
                addr: w.clone(),
                port: 29500,
            };
            e.lease_at(&w, &program, None, Duration::from_secs(5), Some(&at))
                .await
                .unwrap()
        })
    };
    let gang_of = |asks: Vec<tokio::task::JoinHandle<Option<coordinator::engine::Lease>>>| async move {
        let mut got = Vec::new();
        for a in asks {
            let l = a.await.unwrap().expect("every worker gets a rank");
            got.push((l.sweep_id.clone(), l.gang.unwrap().rank));
        }
        got.sort();
        got
    };
    // Two workers ask at once, enough for one gang: both join the older sweep's (neither waits
    // in the other's, which would leave both gangs short for ever).
    let first = gang_of((0..2).map(|i| ask(format!("w{i}"))).collect()).await;
    assert_eq!(first, [(a.clone(), 0), (a.clone(), 1)]);
    // Two more: the other sweep's gang.
    let second = gang_of((2..4).map(|i| ask(format!("w{i}"))).collect()).await;
    assert_eq!(second, [(b.clone(), 0), (b.clone(), 1)]);
}

/// Completes the attempt of lease `l` as `worker` would: `outcome`, `acc` = `acc`, `error` and
/// `output`.
async fn end_lease(
    e: &Engine,
    l: &coordinator::engine::Lease,
    worker: &str,
    outcome: Outcome,
    acc: f64,
    error: &str,
    output: &str,
) -> (bool, String) {
    e.complete(Complete {
        attempt: Attempt {
            worker,
            sweep: &l.sweep_id,
            trial: l.trial,
            attempt: l.attempt,
            lease_id: &l.lease_id,
        },
        outcome,
        metrics: vec![("acc".into(), acc)],
        confusion: None,
        error: error.into(),
        output: output.into(),
        model: None,
    })
    .await
    .unwrap()
}
