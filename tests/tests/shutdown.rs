//! Stopping cleanly, with real processes: Ctrl-C in `coordinator run` hands the running trials
//! back before the coordinator stops, exits 130 and leaves a store file that holds everything;
//! SIGTERM to `coordinator serve` with streams open ends them, frees every port and exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sweep_tests::{
    cmd, connect, free_port, json_out, n, run, sample, scrape, serve_at, submit, synthetic_grid,
    tempdir, wait_for, worker, Proc,
};

/// Waits up to `timeout` for the process to exit; its exit code.
fn exit_code(p: &mut Proc, timeout: Duration) -> Option<i32> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Ok(Some(st)) = p.0.try_wait() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn signal(p: &Proc, sig: &str) {
    Command::new("kill")
        .args([sig, &p.0.id().to_string()])
        .status()
        .unwrap();
}

#[test]
fn ctrl_c_in_run_hands_trials_back_pauses_the_sweep_and_run_resume_finishes_it() {
    let dir = tempdir("ctrlc");
    let cfg = dir.join("s.yaml");
    // 8 trials of 3 s each: two are running when Ctrl-C comes.
    std::fs::write(&cfg, synthetic_grid(8, 30, 100)).unwrap();
    let store = dir.join("runs").join("sweeps.db");
    let mut child = cmd("coordinator")
        .current_dir(&dir)
        .args(["run", "s.yaml", "--workers", "2", "--store"])
        .arg(&store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut err = child.stderr.take().unwrap();
    let mut p = Proc(child);
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    // "sweep ID on URL with 2 local workers (store …)"
    let words: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"sweep"), "{first}");
    let (id, url) = (words[1].to_string(), words[3].to_string());
    wait_for(&url, &id, Duration::from_secs(120), "2 running", |v| {
        n(v, "running") == 2
    });
    signal(&p, "-INT");
    let code = exit_code(&mut p, Duration::from_secs(120));
    let mut printed = String::new();
    out.read_to_string(&mut printed).unwrap();
    let mut said = String::new();
    err.read_to_string(&mut said).unwrap();
    assert_eq!(code, Some(130), "{said}");
    assert!(printed.contains("(grid, paused, seed "), "{printed}");
    assert!(
        said.contains(&format!("sweep {id} is paused")) && said.contains("run s.yaml --resume"),
        "{said}"
    );
    assert!(!said.contains("complete failed"), "{said}");
    // Its files are in a folder of its own.
    let own = dir.join("runs").join("faults").join(&id);
    assert!(own.join("leaderboard.json").is_file(), "{printed}");
    // The store file alone (no -wal beside it) holds the sweep, paused, nothing running.
    let copy = dir.join("copy.db");
    std::fs::copy(&store, &copy).unwrap();
    {
        let (_c, url) = serve_at("127.0.0.1:0", &copy, &[]);
        let s = json_out(&run(
            "coordinator",
            &[
                "status",
                id.as_str(),
                "--json",
                "--coordinator",
                url.as_str(),
            ],
        ));
        let s = s.get(0).cloned().unwrap_or(s);
        assert_eq!(s["state"], "paused", "{s}");
        assert_eq!((n(&s, "running"), n(&s, "stopped")), (0, 0), "{s}");
        assert!(n(&s, "finished") < 8, "{s}");
    }
    // `run --resume` goes on with it to the end, into the same folder.
    let resumed = cmd("coordinator")
        .current_dir(&dir)
        .args(["run", "s.yaml", "--resume", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&resumed.stdout);
    assert!(
        resumed.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(
        text.contains(&format!("sweep {id} on ")) && text.contains(", resumed"),
        "{text}"
    );
    assert!(
        text.contains("(grid, finished, seed ") && text.contains("8 finished"),
        "{text}"
    );
    let lb: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(own.join("leaderboard.json")).unwrap())
            .unwrap();
    assert_eq!(
        (
            lb["sweep"]["id"].as_str(),
            lb["trials"].as_array().map(Vec::len)
        ),
        (Some(id.as_str()), Some(8))
    );
    // Nothing left to resume; a new run is a new sweep with its own folder, and --out into
    // another sweep's results is refused before anything runs.
    let again = cmd("coordinator")
        .current_dir(&dir)
        .args(["run", "s.yaml", "--resume", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{e}");
    assert!(
        e.contains("holds no sweep of s.yaml that is not over"),
        "{e}"
    );
    let into = cmd("coordinator")
        .current_dir(&dir)
        .args(["run", "s.yaml", "--store"])
        .arg(&store)
        .arg("--out")
        .arg(&own)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&into.stderr);
    assert_eq!(into.status.code(), Some(2), "{e}");
    assert!(
        e.contains(&format!("holds the results of sweep {id}")),
        "{e}"
    );
}

#[test]
fn sigterm_to_serve_with_streams_open_ends_them_frees_every_port_and_exits_0() {
    let dir = tempdir("sigterm");
    let store = dir.join("s.db");
    let listen = format!("127.0.0.1:{}", free_port());
    let web = format!("127.0.0.1:{}", free_port());
    let args = ["--http-listen", web.as_str()];
    let (mut coord, url) = serve_at(&listen, &store, &args);
    let id = submit(&dir, &url, &synthetic_grid(4, 400, 100));
    let _w = worker(&url, 2);
    wait_for(&url, &id, Duration::from_secs(120), "running", |v| {
        n(v, "running") >= 1
    });
    // A `watch` and a browser's event stream, open when the signal comes.
    let mut watcher = Proc(
        cmd("coordinator")
            .args(["watch", id.as_str(), "--coordinator", url.as_str()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut sse = connect(&web);
    write!(
        sse,
        "GET /api/v1/sweeps/{id}/events HTTP/1.1\r\nHost: {web}\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 64];
    let _ = sse.read(&mut head).unwrap();
    // The signal comes once `watch`'s stream is open (its call answered, its first event sent).
    let deadline = Instant::now() + Duration::from_secs(60);
    while sample(&scrape(&web), "sweep_rpc_calls_total{method=\"Watch\"}") < 1.0 {
        assert!(Instant::now() < deadline, "watch never opened its stream");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(coord.terminate(Duration::from_secs(60)), Some(0));
    // The streams were ended, with the reason, not left hanging.
    sse.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut rest = String::new();
    let _ = sse.read_to_string(&mut rest);
    assert!(rest.contains("the coordinator is shutting down"), "{rest}");
    // `watch` says why its stream ended and waits for the coordinator to come back.
    let stderr = watcher.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let said = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|e| {
            let code = exit_code(&mut watcher, Duration::from_secs(1));
            let mut out = String::new();
            if let Some(mut o) = watcher.0.stdout.take() {
                let _ = o.read_to_string(&mut out);
            }
            panic!("watch said nothing on stderr ({e}); exit {code:?}, stdout: {out}")
        });
    assert!(
        said.contains("shutting down") && said.contains("reconnecting"),
        "{said}"
    );
    assert!(
        watcher.alive(),
        "watch waits for the coordinator to come back"
    );
    // Both ports are free: a new coordinator starts on them and on the same store.
    let (_again, url) = serve_at(&listen, &store, &args);
    let (code, _) = {
        let mut s = connect(&web);
        write!(s, "GET /api/v1/sweeps HTTP/1.0\r\nHost: {web}\r\n\r\n").unwrap();
        let mut t = String::new();
        s.read_to_string(&mut t).unwrap();
        (t.split_whitespace().nth(1).map(str::to_string), t)
    };
    assert_eq!(code.as_deref(), Some("200"));
    wait_for(&url, &id, Duration::from_secs(30), "the sweep", |v| {
        v["state"] == "running"
    });
}

#[test]
fn a_worker_that_exits_cleanly_is_no_longer_counted() {
    let dir = tempdir("leaving");
    let (_coord, url) = serve_at("127.0.0.1:0", &dir.join("sweeps.db"), &[]);
    // Long trials: the worker is busy when it is told to stop, and hands its trial back.
    let id = submit(&dir, &url, &synthetic_grid(4, 1000, 200));
    let mut w = worker(&url, 1);
    wait_for(&url, &id, Duration::from_secs(120), "1 running", |v| {
        n(v, "running") == 1 && n(v, "workers") == 1
    });
    signal(&w, "-TERM");
    assert_eq!(exit_code(&mut w, Duration::from_secs(120)), Some(0));
    // Without the worker saying it leaves, it would be counted for two lease lifetimes (60 s).
    wait_for(
        &url,
        &id,
        Duration::from_secs(20),
        "no worker counted",
        |v| n(v, "workers") == 0,
    );
}
