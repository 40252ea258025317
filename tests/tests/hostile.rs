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
fn watch_trial_and_errors_print_names_escaped() {
    let dir = tempdir("escapes-watch");
    let (_coord, url) = serve(&dir.join("s.db"), &[]);
    // A metric name with an OSC title code (a parameter name cannot hold one: see below).
    let cfg = dir.join("s.yaml");
    let yaml = "name: evil\nmethod: grid\ntrainer: synthetic\n\
         metric: {name: \"acc\\e]0;pwned\\a\", goal: maximize}\n\
         synthetic: {function: quadratic, epochs: 1, epoch_ms: 1}\n\
         parameters:\n  x: {values: [1, 2]}\n";
    std::fs::write(&cfg, yaml).unwrap();
    let out = run(
        "coordinator",
        &["submit", cfg.to_str().unwrap(), "--coordinator", &url],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let _w = sweep_tests::worker(&url, 1);
    let clean = |text: &str| {
        !text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\u{202e}')
    };
    let watch = run("coordinator", &["watch", &id, "--coordinator", &url]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&watch.stdout),
        String::from_utf8_lossy(&watch.stderr)
    );
    assert!(watch.status.success() && clean(&text), "{text:?}");
    assert!(text.contains(r"acc\u{1b}]0;pwned\u{7}"), "{text}");
    let trial = run("coordinator", &["trial", &id, "1", "--coordinator", &url]);
    let text = String::from_utf8_lossy(&trial.stdout);
    assert!(trial.status.success() && clean(&text), "{text:?}");
    // An error naming a parameter from the config: refused, the name shown escaped.
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "method: grid\ntrainer: synthetic\nparameters:\n  \"q\\e[2J\\u202Ez\": {min: 2, max: 1}\n",
    )
    .unwrap();
    let out = run(
        "coordinator",
        &["submit", bad.to_str().unwrap(), "--coordinator", &url],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && clean(&err), "{err:?}");
    assert!(err.contains(r"q\u{1b}[2J\u{202e}z"), "{err}");
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
    // From another address than the real clients (127.0.0.2), as from another host: one
    // address may hold only its share of either port.
    for a in addrs {
        for _ in 0..n {
            let s = connect_from(std::net::Ipv4Addr::new(127, 0, 0, 2), a.parse().unwrap())
                .expect("connect");
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

/// Raises this test process's open-file limit to 16,384 where it can (root may raise the hard
/// limit), else to its hard limit (the attack below holds thousands of sockets); the limit now.
fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit on this process with valid, owned structs.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return 0;
        }
        let want = l.rlim_max.max(16_384);
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            l.rlim_cur = l.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return 0;
        }
        l.rlim_cur
    }
}

/// A TCP connection to `to` from the loopback address `from` (bound before connecting).
fn connect_from(from: std::net::Ipv4Addr, to: std::net::SocketAddr) -> Option<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    let std::net::SocketAddr::V4(to) = to else {
        return None;
    };
    let sin = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a socket this function owns (closed on failure), bound and connected with
    // valid sockaddr_in structs of the length given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let stream = std::net::TcpStream::from_raw_fd(fd);
        let me = sin(from, 0);
        let them = sin(*to.ip(), to.port());
        if libc::bind(fd, (&me as *const libc::sockaddr_in).cast(), len) != 0
            || libc::connect(fd, (&them as *const libc::sockaddr_in).cast(), len) != 0
        {
            return None;
        }
        Some(stream)
    }
}

/// What an idle HTTP/2 client sends and then never anything more: the preface and an empty
/// SETTINGS frame.
const PREFACE_AND_SETTINGS: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Opens `n` connections from `from` to `to`, each sending [`PREFACE_AND_SETTINGS`].
fn idle_h2(from: std::net::Ipv4Addr, to: &str, n: usize) -> Vec<std::net::TcpStream> {
    let to: std::net::SocketAddr = to.parse().unwrap();
    (0..n)
        .filter_map(|_| {
            let mut s = connect_from(from, to)?;
            let _ = s.write_all(PREFACE_AND_SETTINGS);
            s.set_nonblocking(true).ok()?;
            Some(s)
        })
        .collect()
}

/// How many of `conns` the server has not closed.
fn still_open(conns: &mut [std::net::TcpStream]) -> usize {
    conns
        .iter_mut()
        .filter(|s| {
            let mut s: &std::net::TcpStream = s;
            let mut b = [0u8; 4096];
            loop {
                match s.read(&mut b) {
                    Ok(0) => return false,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                    Err(_) => return false,
                }
            }
        })
        .count()
}

#[test]
fn idle_http2_connections_from_one_address_do_not_lock_others_out() {
    let limit = raise_fd_limit();
    if limit < 8192 {
        sweep_tests::skip(
            "SWEEP_REQUIRE_ROOT",
            "idle_http2_connections_from_one_address_do_not_lock_others_out",
            &format!("the open-file limit is {limit}; the attack needs 8,192"),
        );
        return;
    }
    let dir = tempdir("idle-h2");
    let web = format!("127.0.0.1:{}", free_port());
    let (_coord, url) = serve(&dir.join("s.db"), &["--http-listen", web.as_str()]);
    let id = submit(&dir, &url, &synthetic_grid(2, 1, 1));
    let grpc = url.trim_start_matches("http://").to_string();
    // More idle connections than either port holds, from one address (127.0.0.2), as a
    // user's attack did: 4,200 on gRPC (a cap of 4,096), 1,100 on the dashboard (1,024).
    let attacker = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let mut on_grpc = idle_h2(attacker, &grpc, 4200);
    let mut on_web = idle_h2(attacker, &web, 1100);
    assert!(
        on_grpc.len() > 4096 && on_web.len() > 1024,
        "the attack could not connect"
    );
    // Others are answered at once on both ports (before: status timed out for 60 s).
    let started = std::time::Instant::now();
    let out = run(
        "coordinator",
        &["status", &id, "--json", "--coordinator", &url],
    );
    assert!(
        out.status.success(),
        "status under the attack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status_s = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let (code, body) = request(&web, "GET", "/api/v1/sweeps", &[]);
    assert_eq!(code, 200, "{body}");
    eprintln!(
        "under 4,200 + 1,100 idle HTTP/2 connections: status answered in {status_s:.2} s, the API in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    // The attacker keeps at most its per-address share: the rest were closed.
    let end = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (g, w) = (still_open(&mut on_grpc), still_open(&mut on_web));
        if g <= 256 && w <= 128 {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "one address still holds {g} gRPC and {w} dashboard connections"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "the attacker's share left open after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // (The idle ones it kept are cut within the idle limit: `net.rs` unit tests.)
    wait_for(&url, &id, Duration::from_secs(30), "status answered", |v| {
        v["id"] == id.as_str()
    });
}

#[test]
fn a_client_pointed_at_the_dashboard_port_is_told_which_port_is_grpc() {
    let dir = tempdir("wrong-port");
    let web = format!("127.0.0.1:{}", free_port());
    let (_coord, _url) = serve(&dir.join("s.db"), &["--http-listen", web.as_str()]);
    let out = run(
        "coordinator",
        &["status", "--coordinator", &format!("http://{web}")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("answered as a web server") && err.contains("--http-listen"),
        "{err}"
    );
}
