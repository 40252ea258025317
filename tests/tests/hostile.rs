//! Hostile input with real processes: an oversized config, names that carry terminal escape
//! sequences, and a page of another site that tries to change a sweep (CSRF) or to read the
//! dashboard through a host name that resolves here (DNS rebinding).

use std::io::{Read, Write};
use std::time::Duration;

use sweep_tests::{connect, free_port, run, serve, submit, synthetic_grid, tempdir, wait_for};

/// One HTTP/1.0 request with extra header lines; the status code and the body.
fn request(addr: &str, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let mut s = connect(addr);
    let mut head = format!("{method} {path} HTTP/1.0\r\nContent-Length: 0\r\n");
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("host:"))
    {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |b| b.1).to_string();
    (code, body)
}

#[test]
fn an_oversized_config_is_refused_with_the_documented_limit() {
    let dir = tempdir("bigconfig");
    let (_coord, url) = serve(&dir.join("s.db"), &[]);
    let cfg = dir.join("big.yaml");
    let mut text = synthetic_grid(2, 1, 1);
    text.push_str(&format!("# {}\n", "x".repeat(17 << 20)));
    std::fs::write(&cfg, text).unwrap();
    let out = run(
        "coordinator",
        &["submit", cfg.to_str().unwrap(), "--coordinator", &url],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("big.yaml"), "{err}");
    assert!(err.contains("at most 1048576 bytes (1 MiB)"), "{err}");
}

#[test]
fn names_with_escape_sequences_are_printed_escaped() {
    let dir = tempdir("escapes");
    let (_coord, url) = serve(&dir.join("s.db"), &[]);
    let cfg = dir.join("s.yaml");
    std::fs::write(&cfg, synthetic_grid(2, 1, 1)).unwrap();
    let name = "evil\u{1b}]0;pwned\u{7}\u{1b}[2J\nrow";
    let out = run(
        "coordinator",
        &[
            "submit",
            cfg.to_str().unwrap(),
            "--name",
            name,
            "--coordinator",
            &url,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    for args in [
        vec!["status", "--coordinator", url.as_str()],
        vec!["leaderboard", id.as_str(), "--coordinator", url.as_str()],
    ] {
        let out = run("coordinator", &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(
            text.contains(r"evil\u{1b}]0;pwned\u{7}\u{1b}[2J\nrow"),
            "{text}"
        );
        // The name's line break did not split a row: every line but the header is a row.
        assert!(!text.lines().any(|l| l.starts_with("row")), "{text}");
    }
}

#[test]
fn another_site_can_neither_change_a_sweep_nor_read_it_through_a_rebound_name() {
    let dir = tempdir("csrf");
    let web = format!("127.0.0.1:{}", free_port());
    let (_coord, url) = serve(
        &dir.join("s.db"),
        &[
            "--http-listen",
            web.as_str(),
            "--http-allow-host",
            "sweeps.example.org",
        ],
    );
    let id = submit(&dir, &url, &synthetic_grid(3, 200, 200));
    let pause = format!("/api/v1/sweeps/{id}/pause");
    // A form or fetch from another site's page: refused, and the sweep runs on.
    let (code, body) = request(&web, "POST", &pause, &["Origin: http://evil.example.com"]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("another origin"), "{body}");
    let (code, body) = request(&web, "POST", &pause, &["Sec-Fetch-Site: cross-site"]);
    assert_eq!(code, 403, "{body}");
    // DNS rebinding: another site's name resolved to this machine; reads are refused too.
    let host = format!("Host: evil.example.com:{}", web.rsplit(':').next().unwrap());
    let (code, body) = request(&web, "GET", "/api/v1/sweeps", &[host.as_str()]);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("--http-allow-host evil.example.com"),
        "{body}"
    );
    let (code, _) = request(
        &web,
        "GET",
        "/api/v1/sweeps",
        &["Host: sweeps.example.org:8080"],
    );
    assert_eq!(code, 200);
    wait_for(&url, &id, Duration::from_secs(30), "still running", |v| {
        v["state"] == "running"
    });
    // The dashboard's own page (same origin) and scripts (no Origin) may.
    let origin = format!("Origin: http://{web}");
    let (code, body) = request(&web, "POST", &pause, &[origin.as_str()]);
    assert_eq!(code, 200, "{body}");
    let (code, body) = request(&web, "POST", &format!("/api/v1/sweeps/{id}/resume"), &[]);
    assert_eq!(code, 200, "{body}");
}

/// Connections that send a byte a second, `n` to each address, until the server closes them
/// or `limit` passes; returns how many are still open at the end.
fn slowloris(addrs: &[&str], n: usize, limit: Duration) -> usize {
    let mut conns: Vec<std::net::TcpStream> = Vec::new();
    for a in addrs {
        for _ in 0..n {
            let s = connect(a);
            s.set_nonblocking(true).unwrap();
            conns.push(s);
        }
    }
    let end = std::time::Instant::now() + limit;
    let mut open = vec![true; conns.len()];
    while std::time::Instant::now() < end && open.iter().any(|o| *o) {
        for (s, o) in conns.iter_mut().zip(open.iter_mut()) {
            if !*o {
                continue;
            }
            let mut b = [0u8; 256];
            match s.read(&mut b) {
                Ok(0) => *o = false,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => *o = false,
            }
            if *o && s.write(b"G").is_err() {
                *o = false;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    open.iter().filter(|o| **o).count()
}

#[test]
fn clients_that_send_a_byte_at_a_time_are_cut_and_others_are_served_meanwhile() {
    let dir = tempdir("slowloris");
    let web = format!("127.0.0.1:{}", free_port());
    let (_coord, url) = serve(&dir.join("s.db"), &["--http-listen", web.as_str()]);
    let id = submit(&dir, &url, &synthetic_grid(2, 1, 1));
    let grpc = url.trim_start_matches("http://").to_string();
    let (g, w) = (grpc.clone(), web.clone());
    let attack = std::thread::spawn(move || slowloris(&[&g, &w], 250, Duration::from_secs(120)));
    // While 500 slow connections are open, real clients are answered on both ports.
    std::thread::sleep(Duration::from_secs(2));
    wait_for(&url, &id, Duration::from_secs(60), "status answered", |v| {
        v["id"] == id.as_str()
    });
    let (code, body) = request(&web, "GET", "/api/v1/sweeps", &[]);
    assert_eq!(code, 200, "{body}");
    // The slow ones are cut by the server (first bytes within 10 s, headers within 10 s).
    let still_open = attack.join().unwrap();
    assert_eq!(still_open, 0, "slow connections the server never closed");
}
