//! The HTTP JSON API (`coordinator serve --http-listen`) against a running coordinator with a
//! real sweep: listing, leaderboard, one trial, pause/resume, the token, errors.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;
use sweep_tests::{free_port, request, run, serve, tempdir, worker_with};

/// One HTTP/1.0 request; returns the status code and the parsed JSON body.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let (code, _, body) = request(addr, method, path, token);
    let body = String::from_utf8_lossy(&body);
    (
        code,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}")),
    )
}

/// One GET; returns the status code, the head (lower-cased) and the body bytes.
fn get_raw(addr: &str, path: &str, token: Option<&str>) -> (u16, String, Vec<u8>) {
    request(addr, "GET", path, token)
}

#[test]
fn the_json_api_serves_sweeps_trials_and_control_behind_the_token() {
    let dir = tempdir("api");
    let web = format!("127.0.0.1:{}", free_port());
    let token = "api-token-0912";
    let (_coord, url) = serve(
        &dir.join("sweeps.db"),
        &["--http-listen", &web, "--token", token],
    );
    let cfg = dir.join("s.yaml");
    std::fs::write(
        &cfg,
        "name: api\nmethod: grid\ntrainer: synthetic\nsynthetic: {epochs: 3, epoch_ms: 150}\nparameters:\n  x: {values: [1, 2, 3, 4, 5, 6]}\n",
    )
    .unwrap();
    let out = run(
        "coordinator",
        &[
            "submit",
            cfg.to_str().unwrap(),
            "--coordinator",
            &url,
            "--token",
            token,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();

    // No token, or a wrong one: 401 and nothing changes.
    for t in [None, Some("nope")] {
        let (code, body) = http(&web, "GET", "/api/v1/sweeps", t);
        assert_eq!(code, 401, "{body}");
        assert!(body["error"].as_str().unwrap().contains("token"));
        let (code, _) = http(&web, "POST", &format!("/api/v1/sweeps/{id}/stop"), t);
        assert_eq!(code, 401);
        // The metrics name the sweeps: behind the token on this port too.
        assert_eq!(get_raw(&web, "/metrics", t).0, 401);
    }
    let (code, _, body) = get_raw(&web, "/metrics", Some(token));
    assert_eq!(code, 200);
    assert!(
        String::from_utf8_lossy(&body).contains(&id),
        "the sweep's progress is there"
    );

    // Pause before any worker comes: the sweep hands out nothing.
    let t = Some(token);
    let (code, s) = http(&web, "POST", &format!("/api/v1/sweeps/{id}/pause"), t);
    assert_eq!((code, s["state"].as_str()), (200, Some("paused")), "{s}");
    let _w = worker_with(&url, 2, &["--token", token]);
    std::thread::sleep(Duration::from_millis(800));
    let (_, list) = http(&web, "GET", "/api/v1/sweeps", t);
    let mine = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .expect("the sweep is listed")
        .clone();
    assert_eq!(mine["state"], "paused");
    assert_eq!(mine["running"], 0, "paused: no trial leased");
    let (code, s) = http(&web, "POST", &format!("/api/v1/sweeps/{id}/resume"), t);
    assert_eq!((code, s["state"].as_str()), (200, Some("running")));

    // Wait for the end through the API.
    let end = Instant::now() + Duration::from_secs(60);
    let lb = loop {
        let (code, lb) = http(&web, "GET", &format!("/api/v1/sweeps/{id}"), t);
        assert_eq!(code, 200);
        if lb["sweep"]["state"] == "finished" {
            break lb;
        }
        assert!(Instant::now() < end, "sweep did not finish: {lb}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(lb["schema_version"], 1);
    let trials = lb["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 6);
    assert_eq!(trials[0]["rank"], 1);
    // The API's leaderboard is the CLI's.
    let cli = run(
        "coordinator",
        &[
            "leaderboard",
            &id,
            "--json",
            "--coordinator",
            &url,
            "--token",
            token,
        ],
    );
    let cli: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(cli["trials"], lb["trials"]);

    let best = trials[0]["trial"].as_u64().unwrap();
    let (code, tr) = http(
        &web,
        "GET",
        &format!("/api/v1/sweeps/{id}/trials/{best}"),
        t,
    );
    assert_eq!(code, 200);
    assert_eq!(tr["trial"], best);
    assert_eq!(tr["state"], "finished");
    assert_eq!(
        tr["curve"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == "loss")
            .count(),
        3
    );

    // Errors: a status and a message, never a crash.
    assert_eq!(http(&web, "GET", "/api/v1/sweeps/nope", t).0, 404);
    assert_eq!(
        http(&web, "GET", &format!("/api/v1/sweeps/{id}/trials/99"), t).0,
        404
    );
    assert_eq!(
        http(&web, "GET", &format!("/api/v1/sweeps/{id}/trials/x"), t).0,
        400
    );
    assert_eq!(
        http(&web, "POST", &format!("/api/v1/sweeps/{id}/explode"), t).0,
        404
    );
    let (code, body) = http(&web, "POST", &format!("/api/v1/sweeps/{id}/pause"), t);
    assert_eq!(code, 400, "a finished sweep cannot change: {body}");
    assert_eq!(http(&web, "GET", "/api/v1/sweeps", t).0, 200);
}

#[test]
fn live_updates_arrive_as_server_sent_events_until_the_sweep_ends() {
    let dir = tempdir("sse");
    let web = format!("127.0.0.1:{}", free_port());
    let (_coord, url) = serve(&dir.join("sweeps.db"), &["--http-listen", &web]);
    let cfg = dir.join("s.yaml");
    std::fs::write(
        &cfg,
        "name: sse\nmethod: grid\ntrainer: synthetic\nsynthetic: {epochs: 4, epoch_ms: 100}\nparameters:\n  x: {values: [1, 2, 3]}\n",
    )
    .unwrap();
    let out = run(
        "coordinator",
        &["submit", cfg.to_str().unwrap(), "--coordinator", &url],
    );
    assert!(out.status.success());
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut s = sweep_tests::connect(&web);
    write!(
        s,
        "GET /api/v1/sweeps/{id}/events HTTP/1.0\r\nHost: {web}\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let _w = sweep_tests::worker(&url, 2);
    // The stream ends (the server closes) when the sweep is finished.
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.contains("content-type: text/event-stream"), "{text}");
    let updates: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(updates.len() >= 6, "{updates:?}");
    assert_eq!(updates[0]["sweep"]["id"], id.as_str());
    assert!(
        updates.iter().any(|u| u["changes"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["trial"]["state"] == "running"))),
        "a trial seen while it runs"
    );
    let last = updates.last().unwrap();
    assert_eq!(last["sweep"]["state"], "finished", "{last}");
    assert_eq!(last["sweep"]["finished"], 3);
}

#[test]
fn downloads_are_the_cli_files_and_pages_hold_no_data_without_the_token() {
    let dir = tempdir("api-files");
    let web = format!("127.0.0.1:{}", free_port());
    let token = "files-token-77";
    let (_coord, url) = serve(
        &dir.join("sweeps.db"),
        &["--http-listen", &web, "--token", token],
    );
    let cfg = dir.join("s.yaml");
    std::fs::write(
        &cfg,
        "name: secret-sweep-name\nmethod: grid\nmlp: {train_samples: 1000}\nparameters:\n  epochs: {value: 2}\n  hidden_size: {values: [16, 32]}\n",
    )
    .unwrap();
    let auth = ["--coordinator", url.as_str(), "--token", token];
    let out = run(
        "coordinator",
        &[&["submit", cfg.to_str().unwrap()][..], &auth].concat(),
    );
    assert!(out.status.success());
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let _w = worker_with(&url, 2, &["--token", token]);
    let end = Instant::now() + Duration::from_secs(120);
    while http(&web, "GET", &format!("/api/v1/sweeps/{id}"), Some(token)).1["sweep"]["state"]
        != "finished"
    {
        assert!(Instant::now() < end, "the sweep did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The pages come without the token and carry nothing of the sweep.
    for page in [
        "/".to_string(),
        format!("/sweeps/{id}"),
        format!("/sweeps/{id}/trials/1"),
        "/static/app.js".into(),
        "/static/app.css".into(),
    ] {
        let (code, head, body) = get_raw(&web, &page, None);
        assert_eq!(code, 200, "{page}");
        assert!(head.contains("content-security-policy: default-src 'none'; script-src 'self'"));
        let body = String::from_utf8(body).unwrap();
        assert!(
            !body.contains("secret-sweep-name") && !body.contains(&id),
            "{page}"
        );
    }
    let (_, head, _) = get_raw(&web, "/", None);
    assert!(head.contains("content-type: text/html"), "{head}");

    // Every download is the CLI's file, byte for byte.
    let cli = dir.join("cli");
    let cli_s = cli.to_str().unwrap();
    for c in ["export", "report"] {
        let o = run(
            "coordinator",
            &[&[c, id.as_str(), "--out", cli_s][..], &auth].concat(),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for name in [
        "leaderboard.json",
        "leaderboard.csv",
        "confusion_best.json",
        "confusion_best.csv",
        "confusion_best.png",
        "confusion_best.svg",
        "curves.svg",
        "parallel.svg",
        "importance.json",
        "importance.svg",
        "report.html",
    ] {
        let path = format!("/api/v1/sweeps/{id}/files/{name}");
        assert_eq!(
            get_raw(&web, &path, None).0,
            401,
            "{name} without the token"
        );
        let (code, head, body) = get_raw(&web, &path, Some(token));
        assert_eq!(code, 200, "{name}: {}", String::from_utf8_lossy(&body));
        assert!(
            head.contains(&format!(
                "content-disposition: attachment; filename=\"{name}\""
            )),
            "{head}"
        );
        let want = std::fs::read(cli.join(name)).unwrap();
        assert!(body == want, "{name} differs from the CLI's");
    }
    let (_, head, _) = get_raw(
        &web,
        &format!("/api/v1/sweeps/{id}/files/confusion_best.png"),
        Some(token),
    );
    assert!(head.contains("content-type: image/png"), "{head}");

    // One trial's matrix in each format; the best trial's is the export's.
    let best = http(&web, "GET", &format!("/api/v1/sweeps/{id}"), Some(token)).1["trials"][0]
        ["trial"]
        .as_u64()
        .unwrap();
    let base = format!("/api/v1/sweeps/{id}/trials/{best}");
    let (code, _, csv) = get_raw(&web, &format!("{base}/confusion.csv"), Some(token));
    assert_eq!(code, 200);
    assert_eq!(csv, std::fs::read(cli.join("confusion_best.csv")).unwrap());
    let (code, _, png) = get_raw(&web, &format!("{base}/confusion.png"), Some(token));
    assert_eq!(code, 200);
    let img = image::load_from_memory(&png).expect("the PNG decodes");
    assert_eq!((img.width(), img.height()), (920, 840));
    let (code, _, json) = get_raw(&web, &format!("{base}/confusion.json"), Some(token));
    assert_eq!(code, 200);
    let json: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json["labels"].as_array().unwrap().len(), 10);
    assert_eq!(
        get_raw(&web, &format!("{base}/confusion.svg"), Some(token)).0,
        200
    );

    // Errors name what was expected.
    let (code, _, body) = get_raw(
        &web,
        &format!("/api/v1/sweeps/{id}/files/x.txt"),
        Some(token),
    );
    assert_eq!(code, 404);
    assert!(String::from_utf8_lossy(&body).contains("leaderboard.csv"));
    assert_eq!(
        get_raw(&web, &format!("{base}/confusion.gif"), Some(token)).0,
        404
    );
    assert_eq!(
        get_raw(
            &web,
            &format!("/api/v1/sweeps/{id}/trials/99/confusion.csv"),
            Some(token)
        )
        .0,
        404
    );
    assert_eq!(
        get_raw(&web, "/api/v1/sweeps/nope/files/report.html", Some(token)).0,
        404
    );
}

/// Clients that vanish mid-stream (a closed browser tab) must not take the coordinator down:
/// a write to their closed socket is an error for that connection only, never a SIGPIPE for
/// the process.
#[test]
fn clients_that_vanish_from_the_event_stream_do_not_kill_the_coordinator() {
    let dir = tempdir("sse-vanish");
    let web = format!("127.0.0.1:{}", free_port());
    let (mut coord, url) = serve(&dir.join("sweeps.db"), &["--http-listen", &web]);
    let cfg = dir.join("s.yaml");
    // Many short trials: a steady stream of events to write to the vanished clients.
    std::fs::write(
        &cfg,
        "name: vanish\nmethod: random\nrun_cap: 100000\ntrainer: synthetic\nsynthetic: {epochs: 20, epoch_ms: 2}\nparameters:\n  x: {min: 0.0, max: 1.0}\n",
    )
    .unwrap();
    let out = run(
        "coordinator",
        &["submit", cfg.to_str().unwrap(), "--coordinator", &url],
    );
    assert!(out.status.success());
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let _w = sweep_tests::worker(&url, 4);
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..150 {
        let mut s = sweep_tests::connect(&web);
        write!(
            s,
            "GET /api/v1/sweeps/{id}/events HTTP/1.1\r\nHost: {web}\r\n\r\n"
        )
        .unwrap();
        // Read what came, then close with nothing unread (a FIN, as a closed tab sends): the
        // server's next write meets a closed socket.
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        let until = Instant::now() + Duration::from_millis(10 + (i % 7) * 5);
        let mut buf = [0u8; 65536];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) && Instant::now() < until {}
        drop(s);
        assert!(
            coord.alive(),
            "the coordinator died after {} vanished clients",
            i + 1
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        coord.alive(),
        "the coordinator died after the vanished clients"
    );
    let (code, list) = http(&web, "GET", "/api/v1/sweeps", None);
    assert_eq!(code, 200, "{list}");
}
