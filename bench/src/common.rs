//! What the benchmarks share: starting the programs they measure (the `coordinator` and
//! `worker` binaries beside this one), reading a process's CPU and memory from /proc, and
//! percentiles.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{anyhow, Result};

pub(crate) struct Kill(pub(crate) Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `python3` can import `module` (the reference runs are optional).
pub(crate) fn python_imports(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub(crate) fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

pub(crate) fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| anyhow!(e.to_string()))?;
    let p = exe.with_file_name(name);
    if !p.is_file() {
        return Err(anyhow!(format!(
            "{} not found: build the workspace first (cargo build --release)",
            p.display()
        )));
    }
    Ok(p)
}

pub(crate) fn start_server(store: &Path, extra: &[String]) -> Result<(Kill, String)> {
    let mut child = Command::new(sibling("coordinator")?)
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(store)
        .args(extra)
        .env("RUST_LOG", "error")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| anyhow!(format!("cannot start the coordinator: {e}")))?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let mut lines = BufReader::new(stderr).lines();
    let mut url = None;
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("coordinator listening on ") {
            url = rest
                .split_whitespace()
                .next()
                .map(|a| format!("http://{a}"));
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let url = url.ok_or_else(|| anyhow!("the coordinator did not start"))?;
    Ok((Kill(child), url))
}
/// CPU seconds (user + system) a process has used, from /proc.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // sysconf(_SC_CLK_TCK) is 100 on Linux.
    Some(ticks / 100.0)
}

/// Resident set size of a process in MiB, from /proc.
pub(crate) fn rss_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmRSS:")
}

/// The most a process has had resident, in MiB, from /proc.
pub(crate) fn peak_rss_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmHWM:")
}

pub(crate) fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
