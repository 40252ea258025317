//! Hosts of their own on one machine for the tests that need a network: network namespaces,
//! one for the coordinator and one per worker, joined by veth pairs. Needs `ip` (iproute2) and
//! the right to make namespaces (root or CAP_NET_ADMIN).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::{bin_dir, Proc};
use serde_json::Value;

/// Network namespaces deleted when dropped (deleting one removes its veth ends).
#[derive(Debug)]
pub struct Namespaces(pub Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Runs `ip ARGS`; its error output when it fails.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One of the workspace's binaries, to run inside namespace `ns`.
pub fn in_ns(ns: &str, bin: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .arg(bin_dir().join(bin))
        .env_remove("SWEEP_COORDINATOR")
        .env("RUST_LOG", "warn,worker=info,coordinator=info");
    c
}

/// A client command of `coordinator` run inside `ns` against `url`.
pub fn client(ns: &str, url: &str, args: &[&str]) -> Output {
    in_ns(ns, "coordinator")
        .args(args)
        .args(["--coordinator", url])
        .output()
        .expect("coordinator client runs")
}

/// A successful command's output as JSON.
pub fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("JSON")
}

/// Makes the namespaces: `c` (the coordinator, 10.77.k.1) and one per worker (10.77.k.2).
/// `routed`: `c` forwards between the workers' links, so workers reach each other too.
pub fn topology(tag: &str, workers: usize, routed: bool) -> Result<Namespaces, String> {
    let c = format!("swc-{tag}");
    let mut ns = Namespaces(vec![c.clone()]);
    ip(&["netns", "add", &c])?;
    ip(&["-n", &c, "link", "set", "lo", "up"])?;
    for k in 1..=workers {
        let w = format!("sww{k}-{tag}");
        ns.0.push(w.clone());
        ip(&["netns", "add", &w])?;
        ip(&["-n", &w, "link", "set", "lo", "up"])?;
        let (a, b) = (format!("vc{k}{tag}"), format!("vw{k}{tag}"));
        ip(&[
            "link", "add", &a, "netns", &c, "type", "veth", "peer", "name", &b, "netns", &w,
        ])?;
        ip(&[
            "-n",
            &c,
            "addr",
            "add",
            &format!("10.77.{k}.1/24"),
            "dev",
            &a,
        ])?;
        ip(&[
            "-n",
            &w,
            "addr",
            "add",
            &format!("10.77.{k}.2/24"),
            "dev",
            &b,
        ])?;
        ip(&["-n", &c, "link", "set", &a, "up"])?;
        ip(&["-n", &w, "link", "set", &b, "up"])?;
        if routed {
            ip(&[
                "-n",
                &w,
                "route",
                "add",
                "default",
                "via",
                &format!("10.77.{k}.1"),
            ])?;
        }
    }
    if routed {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &c,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ])
            .output()
            .map_err(|e| format!("sysctl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "sysctl net.ipv4.ip_forward=1 in {c}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(ns)
}

/// Polls `f` until it holds (panics after `timeout`, naming `what`).
pub fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The worker id from an agent's JSON log.
pub fn worker_id(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "registered")
        .and_then(|v| v["fields"]["worker"].as_str().map(str::to_string))
}

/// A coordinator serving on port 50051 of namespace `ns` (its workers reach it at
/// `http://10.77.K.1:50051`) with lease lifetime `ttl_s` and the store `store`, once it answers;
/// the URL clients inside `ns` use.
pub fn serve_in(ns: &str, store: &Path, ttl_s: u32) -> (Proc, &'static str) {
    let local = "http://127.0.0.1:50051";
    let p = Proc(
        in_ns(ns, "coordinator")
            .args([
                "serve",
                "--listen",
                "0.0.0.0:50051",
                "--lease-ttl",
                &ttl_s.to_string(),
            ])
            .arg("--store")
            .arg(store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("coordinator starts"),
    );
    until("the coordinator", Duration::from_secs(20), || {
        client(ns, local, &["status"]).status.success()
    });
    (p, local)
}

/// [`topology`], or `None` (the test said on stderr why it does not run, or fails under
/// `SWEEP_REQUIRE_ROOT`) where namespaces cannot be made here.
pub fn topology_or_skip(tag: &str, workers: usize, routed: bool, test: &str) -> Option<Namespaces> {
    match topology(tag, workers, routed) {
        Ok(ns) => Some(ns),
        Err(e) => {
            crate::skip(
                "SWEEP_REQUIRE_ROOT",
                test,
                &format!("cannot make network namespaces here ({e})"),
            );
            None
        }
    }
}
