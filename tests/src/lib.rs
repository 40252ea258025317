//! Helpers for the end-to-end tests: the freshly built `coordinator` and `worker` binaries,
//! child processes that are killed when dropped, temporary directories, and a coordinator
//! started on a free loopback port.

pub mod netns;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Directory holding the workspace's binaries, built once per test process.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // target/<profile>/deps/<test> → target/<profile>
        let exe = std::env::current_exe().expect("test executable path");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_path_buf();
        let profile = dir
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("debug")
            .to_string();
        let profile = if profile == "debug" {
            "test".to_string()
        } else {
            profile
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--profile",
                &profile,
                "-p",
                "coordinator",
                "-p",
                "worker",
                "--bins",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build runs");
        assert!(status.success(), "building the binaries failed");
        dir
    })
}

/// A command for one of the binaries (`coordinator` or `worker`).
pub fn cmd(bin: &str) -> Command {
    let mut c = Command::new(bin_dir().join(bin));
    c.env_remove("SWEEP_COORDINATOR")
        .env("RUST_LOG", "warn,worker=info,coordinator=info");
    c
}

/// Runs a binary to completion.
pub fn run(bin: &str, args: &[&str]) -> Output {
    cmd(bin).args(args).output().expect("binary runs")
}

/// Runs a binary to completion and checks that it succeeded (its stderr in the panic message).
pub fn run_ok(bin: &str, args: &[&str]) -> Output {
    let out = run(bin, args);
    assert!(
        out.status.success(),
        "{bin} {args:?}: exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A child process killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// SIGKILL, and wait for it to be gone.
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.0.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// A fresh temporary directory for one test.
pub fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sweep-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A loopback port that was free a moment ago (for a coordinator restarted on the same address).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Connects to `addr`, retrying for up to 10 s (an HTTP listener comes up just after the
/// coordinator prints its gRPC address).
pub fn connect(addr: &str) -> std::net::TcpStream {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match std::net::TcpStream::connect(addr) {
            Ok(s) => return s,
            Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("{addr}: {e}"),
        }
    }
}

/// Starts `coordinator serve` on a free loopback port; returns it and its URL.
pub fn serve(store: &Path, extra: &[&str]) -> (Proc, String) {
    serve_at("127.0.0.1:0", store, extra)
}

/// Starts `coordinator serve` on `listen`; returns it and its URL once it is listening.
pub fn serve_at(listen: &str, store: &Path, extra: &[&str]) -> (Proc, String) {
    let mut c = cmd("coordinator");
    c.args(["serve", "--listen", listen, "--store"])
        .arg(store)
        .args(extra);
    serve_command(c)
}

/// Starts a `coordinator serve` command (of any coordinator program: this build's, or one a
/// wheel installed); returns it and its URL once it is listening.
pub fn serve_command(mut c: Command) -> (Proc, String) {
    let mut child = c
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("coordinator starts");
    let stderr = child.stderr.take().expect("stderr piped");
    let mut lines = BufReader::new(stderr).lines();
    let mut url = None;
    for line in lines.by_ref() {
        let line = line.expect("stderr line");
        if let Some(rest) = line.strip_prefix("coordinator listening on ") {
            let addr = rest.split_whitespace().next().expect("address");
            url = Some(format!("http://{addr}"));
            break;
        }
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), url.expect("coordinator printed its address"))
}

/// Starts a worker agent.
pub fn worker(url: &str, slots: usize) -> Proc {
    worker_with(url, slots, &[])
}

/// Starts a worker agent with extra arguments.
pub fn worker_with(url: &str, slots: usize, extra: &[&str]) -> Proc {
    let child = cmd("worker")
        .args(["--coordinator", url, "--slots", &slots.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("worker starts");
    Proc(child)
}

/// Starts a worker agent with extra arguments, its log (stderr) going to the file `log`.
pub fn worker_logged(url: &str, slots: usize, log: &Path, extra: &[&str]) -> Proc {
    let file = std::fs::File::create(log).expect("log file");
    let child = cmd("worker")
        .args(["--coordinator", url, "--slots", &slots.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("worker starts");
    Proc(child)
}

/// Parses stdout as JSON, with the process's stderr in the panic message.
pub fn json_out(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

/// Submits `yaml` and returns the sweep id.
pub fn submit(dir: &Path, url: &str, yaml: &str) -> String {
    let cfg = dir.join("sweep.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let out = run(
        "coordinator",
        &["submit", cfg.to_str().unwrap(), "--coordinator", url],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `leaderboard --json` of a sweep.
pub fn leaderboard(url: &str, id: &str) -> serde_json::Value {
    json_out(&run(
        "coordinator",
        &["leaderboard", id, "--json", "--coordinator", url],
    ))
}

/// Polls `status` until `pred` holds (panics after `timeout`).
pub fn wait_for(
    url: &str,
    id: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) {
    let end = Instant::now() + timeout;
    loop {
        let out = run(
            "coordinator",
            &["status", id, "--json", "--coordinator", url],
        );
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            // `status ID --json` prints a list of one.
            let v = v.get(0).cloned().unwrap_or(v);
            if pred(&v) {
                return;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}: {v}");
        } else {
            assert!(Instant::now() < end, "timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A count from `status --json` (0 when absent).
pub fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// trial number → (state, attempts, value of `loss`).
pub fn trials(
    lb: &serde_json::Value,
) -> std::collections::BTreeMap<u64, (String, u64, Option<f64>)> {
    lb["trials"]
        .as_array()
        .expect("trials")
        .iter()
        .map(|t| {
            (
                t["trial"].as_u64().unwrap(),
                (
                    t["state"].as_str().unwrap().to_string(),
                    t["attempts"].as_u64().unwrap(),
                    t["metrics"]["loss"].as_f64(),
                ),
            )
        })
        .collect()
}

/// A grid sweep of the synthetic trainer with `points` values of x.
pub fn synthetic_grid(points: usize, epochs: u64, epoch_ms: u64) -> String {
    let values: Vec<String> = (1..=points).map(|i| i.to_string()).collect();
    format!(
        "name: faults\nmethod: grid\ntrainer: synthetic\nmax_attempts: 5\n\
         synthetic: {{function: quadratic, epochs: {epochs}, epoch_ms: {epoch_ms}}}\n\
         parameters:\n  x: {{values: [{}]}}\n",
        values.join(", ")
    )
}

/// `GET /metrics` over a plain TCP socket (HTTP/1.0, so the server closes when done).
pub fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = connect(addr);
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
        "{out}"
    );
    out
}

/// The value of the sample `name` (with its labels, exactly as printed), or 0.
pub fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Whether `python3 -c "import numpy"` works; CI sets SWEEP_REQUIRE_NUMPY=1 so that a missing
/// numpy fails there instead of skipping.
pub fn have_numpy() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip(
            "SWEEP_REQUIRE_NUMPY",
            "a test that runs a NumPy program",
            "python3 cannot import numpy",
        );
    }
    ok
}

/// One HTTP/1.0 request; returns the status code, the head (lower-cased) and the body bytes.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String, Vec<u8>) {
    let mut s = connect(addr);
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&out[..split]).to_lowercase();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, head, out[split + 4..].to_vec())
}

/// Says that `test` skips because `why`, unless the variable `require` is set (CI sets each
/// one whose requirement it installs), where it fails instead. A skip is printed and appended
/// to `target/sweep-test-skips.log`, which `.ci/run` prints at the end: cargo hides a passing
/// test's output, and a skip must reach the log.
pub fn skip(require: &str, test: &str, why: &str) {
    assert!(
        std::env::var_os(require).is_none(),
        "{test} cannot run although {require} is set: {why}"
    );
    let line = format!("SKIPPED {test}: {why} (set {require}=1 to make this a failure)");
    eprintln!("{line}");
    let log = bin_dir()
        .parent()
        .unwrap_or(bin_dir())
        .join("sweep-test-skips.log");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Whether this process runs as root (mounts, loop devices, network namespaces); if not, the
/// test skips (or fails under SWEEP_REQUIRE_ROOT).
pub fn root_or_skip(test: &str, what: &str) -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        skip("SWEEP_REQUIRE_ROOT", test, &format!("{what} needs root"));
    }
    root
}
