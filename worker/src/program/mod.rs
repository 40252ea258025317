//! Trials that run a user's own program (a sweep's W&B `program` / `command`).
//!
//! The worker starts the command as W&B's agent would ([`command`]) in its own process group,
//! in the worker's working directory, with W&B's variables and ours, and a pipe on which the
//! program (or our `wandb` module on its `PYTHONPATH`) writes one JSON object per line
//! ([`history`]). Each logged value of the sweep metric becomes a Report; a stop, the worker's
//! shutdown or the time limit end the process group with SIGTERM, then SIGKILL after a grace
//! period; the child dies with the worker (parent-death signal). A non-zero exit fails the
//! trial with the tail of its output.

mod allow;
pub mod command;
pub mod files;
pub mod function;
pub mod history;
pub mod shim;
pub mod supervise;

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use history::{Confusion, History, Step};

use crate::train::{Cancel, Control};
use allow::refusal;

/// Bytes of a trial's output (stdout and stderr, interleaved) kept for the coordinator.
pub const OUTPUT_TAIL_BYTES: usize = 16 * 1024;

/// Variables that size a program's thread pools; set to the worker's cores per slot unless
/// the worker's own environment sets them.
pub const THREAD_VARS: [&str; 6] = [
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "RAYON_NUM_THREADS",
];

/// What a worker allows and how it runs programs.
#[derive(Debug, Clone)]
pub struct ProgramOptions {
    /// Whether this worker runs programs at all (`--allow-programs`).
    pub allow: bool,
    /// Only programs inside this directory (`--allow-programs=DIR`).
    pub only_under: Option<PathBuf>,
    /// Where programs run (`--workdir`).
    pub workdir: PathBuf,
    /// Between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Threads per program (cores / slots), for `OMP_NUM_THREADS` and friends.
    pub threads: usize,
    /// Forward each line of a program's output to the worker's stderr.
    pub echo: bool,
    /// Put our `wandb` module first on programs' `PYTHONPATH` (`--no-wandb-shim` turns it off
    /// for every sweep; `program_options.wandb_shim: false` for one).
    pub wandb_shim: bool,
}

impl Default for ProgramOptions {
    fn default() -> Self {
        ProgramOptions {
            allow: false,
            only_under: None,
            workdir: PathBuf::from("."),
            kill_grace: Duration::from_secs(10),
            threads: 1,
            echo: true,
            wandb_shim: true,
        }
    }
}

/// One trial of a program sweep, as the coordinator hands it out.
#[derive(Debug, Clone)]
pub struct ProgramTrial {
    /// Sweep id.
    pub sweep_id: String,
    /// Trial number.
    pub trial: u64,
    /// Attempt number.
    pub attempt: u32,
    /// The sweep metric.
    pub metric: String,
    /// Parameters in the order `${args}` lists them.
    pub params: Vec<(String, Value)>,
    /// The sweep's `program`.
    pub program: Option<String>,
    /// The sweep's `command`.
    pub command: Option<Vec<String>>,
    /// Per-trial time limit.
    pub time_limit: Option<Duration>,
    /// Put our `wandb` module first on `PYTHONPATH` (default true).
    pub shim: bool,
    /// Bytes of files the program may hand back (0: none are kept).
    pub max_files_bytes: u64,
    /// MiB of logged media (part of its files) our `wandb` module writes at most
    /// (`SWEEP_MAX_MEDIA_MB`); `None`: its default.
    pub max_media_mb: Option<f64>,
    /// The GPUs the program may see (`CUDA_VISIBLE_DEVICES`, `NVIDIA_VISIBLE_DEVICES`): those
    /// leased to the trial, none (a worker with GPUs running a trial that asked for none), or
    /// `None` to leave the worker's environment as it is (a worker without GPUs).
    pub visible_gpus: Option<Vec<String>>,
    /// A trial across several workers: this one's place in the gang.
    pub gang: Option<Gang>,
}

/// One member's place in a gang, for the program's environment as torchrun sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gang {
    /// `RANK` and `NODE_RANK`.
    pub rank: u32,
    /// `WORLD_SIZE`.
    pub size: u32,
    /// `MASTER_ADDR`.
    pub master_addr: String,
    /// `MASTER_PORT`.
    pub master_port: u32,
}

impl ProgramTrial {
    /// Reads the trial from a lease's parameters and trainer options (`program`, `command`,
    /// `time_limit_s`, `wandb_shim`; an agent sweep's trials have neither program nor command).
    pub fn from_lease(
        sweep_id: &str,
        trial: u64,
        attempt: u32,
        metric: &str,
        params: serde_json::Map<String, Value>,
        opts: &serde_json::Map<String, Value>,
    ) -> Result<Self, String> {
        let program = opts
            .get("program")
            .and_then(Value::as_str)
            .map(str::to_string);
        let command = match opts.get("command") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|w| match w {
                        Value::String(s) => s.clone(),
                        other => command::py_str(other),
                    })
                    .collect(),
            ),
            Some(_) => return Err("command: expected a list of words".into()),
        };
        Ok(ProgramTrial {
            sweep_id: sweep_id.to_string(),
            trial,
            attempt,
            metric: metric.to_string(),
            params: params.into_iter().collect(),
            program,
            command,
            time_limit: opts
                .get("time_limit_s")
                .and_then(Value::as_f64)
                .filter(|s| *s > 0.0)
                .map(Duration::from_secs_f64),
            shim: opts
                .get("wandb_shim")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            max_files_bytes: opts
                .get("max_files_mb")
                .and_then(Value::as_f64)
                .map_or(files::DEFAULT_MAX_BYTES, |mb| {
                    (mb.max(0.0) * 1024.0 * 1024.0) as u64
                })
                .min(sweep_proto::files::MAX_FILES_BYTES),
            max_media_mb: opts
                .get("max_media_mb")
                .and_then(Value::as_f64)
                .map(|mb| mb.max(0.0)),
            visible_gpus: None,
            gang: None,
        })
    }

    /// The directory this trial's files go to, under the worker's working directory (as
    /// W&B's agent puts a run's files under `wandb/`); `None` when the sweep keeps none.
    pub fn files_dir(&self, workdir: &Path) -> Option<PathBuf> {
        (self.max_files_bytes > 0).then(|| {
            workdir
                .join("wandb")
                .join(format!("sweep-{}", self.sweep_id))
                .join(format!("run-{}", self.run_id()))
                .join("files")
        })
    }

    /// The run id W&B's variables carry: unique per trial across sweeps.
    pub fn run_id(&self) -> String {
        format!("{}-{}", self.sweep_id, self.trial)
    }
}

/// How a program trial ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Exit status 0.
    Finished,
    /// Ended on the coordinator's request (early termination, the sweep stopped) or by the
    /// time limit; the reason says which.
    Stopped(String),
    /// It could not start, or exited non-zero or by a signal we did not send.
    Failed(String),
    /// The worker is shutting down or lost the lease: hand the trial back.
    Released,
    /// A fault of this worker's own (the program file, the interpreter, disk space or this
    /// worker's rules): hand the trial back, for another worker or a later try, saying why.
    Fault(String),
}

/// A finished program trial.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How it ended.
    pub ending: Ending,
    /// Final values (W&B's summary rules).
    pub metrics: HashMap<String, f64>,
    /// The confusion matrix it sent, if any.
    pub confusion: Option<Confusion>,
    /// The last [`OUTPUT_TAIL_BYTES`] of its output, then our notices.
    pub output: String,
    /// When the metric was never logged: what was.
    pub missing_metric: Option<String>,
    /// The files it handed back (none when it was handed back itself).
    pub files: Vec<(String, Vec<u8>)>,
    /// The name it gave its run.
    pub name: Option<String>,
}

/// What this worker lacks to run the command (`exe` and then `args`): the program the
/// command names, or the command itself (through `env`: the first word that is neither an
/// option nor an assignment) on this worker's `PATH`.
fn missing_here(
    t: &ProgramTrial,
    o: &ProgramOptions,
    exe: &str,
    args: &[String],
) -> Option<String> {
    if let Some(p) = &t.program {
        let named = exe == p || args.iter().any(|a| a == p);
        let path = o.workdir.join(p);
        if named && !path.exists() {
            return Some(format!(
                "program {p} is not in {} on this worker (a typo in `program`, or a checkout this worker lacks?)",
                o.workdir.display()
            ));
        }
    }
    let is_env = Path::new(exe).file_name().is_some_and(|n| n == "env");
    let run = if is_env {
        args.iter()
            .find(|a| !a.starts_with('-') && !a.contains('='))
            .map_or(exe, String::as_str)
    } else {
        exe
    };
    let found = if run.contains('/') {
        o.workdir.join(run).exists()
    } else {
        program_path().is_some_and(|paths| {
            std::env::split_paths(&paths).any(|d| {
                std::fs::metadata(d.join(run))
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
        })
    };
    (!found).then(|| format!("cannot find {run:?} on this worker (its PATH, or its --workdir)"))
}

/// The `PATH` programs run with: this worker's, with the folder of the running program (the
/// worker, or the coordinator of `coordinator run`) in front when that folder is a Python
/// environment's `bin/` — holds a `python` — and is not on `PATH` yet. Programs installed by
/// `pip install sweep-hpo` into a virtual environment thus run the `python` of that
/// environment (its packages) without it being activated, as `wandb agent` started from it
/// would.
fn program_path() -> Option<&'static std::ffi::OsStr> {
    static PATH: std::sync::OnceLock<Option<std::ffi::OsString>> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let current = std::env::var_os("PATH");
        let own = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
            .filter(|d| d.join("python").is_file());
        let Some(own) = own else { return current };
        let mut dirs: Vec<PathBuf> = current
            .as_deref()
            .map(|p| std::env::split_paths(p).collect())
            .unwrap_or_default();
        if dirs.contains(&own) {
            return current;
        }
        dirs.insert(0, own);
        std::env::join_paths(dirs).ok().or(current)
    })
    .as_deref()
}

/// Output of the child, interleaved, with only the tail kept.
#[derive(Debug, Default)]
struct Tail(VecDeque<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend(bytes);
        let over = self.0.len().saturating_sub(OUTPUT_TAIL_BYTES);
        self.0.drain(..over);
    }
    fn text(&self) -> String {
        let (a, b) = self.0.as_slices();
        let mut v = a.to_vec();
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).into_owned()
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array, which we then own.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn signal_group(pgid: u32, sig: libc::c_int) {
    // SAFETY: kill with a negative pid signals the process group the child leads.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), sig);
    }
}

/// Where the shim lives, if the trial wants it and the worker has it.
fn python_path(shim_dir: Option<&Path>) -> Option<String> {
    let dir = shim_dir?;
    let mut p = dir.display().to_string();
    if let Ok(old) = std::env::var("PYTHONPATH") {
        if !old.is_empty() {
            p.push(':');
            p.push_str(&old);
        }
    }
    Some(p)
}

/// The files W&B's agent writes before a run: the parameter YAML and, when the command uses
/// it, the JSON of `${args_json_file}`. Returns (param path, json path).
fn write_param_files(t: &ProgramTrial, o: &ProgramOptions) -> std::io::Result<(PathBuf, PathBuf)> {
    let dir = o
        .workdir
        .join("wandb")
        .join(format!("sweep-{}", t.sweep_id));
    std::fs::create_dir_all(&dir)?;
    let run = t.run_id();
    let yaml = dir.join(format!("config-{run}.yaml"));
    std::fs::write(&yaml, command::param_file_yaml(&t.params))?;
    let json = dir.join(format!("config-{run}.json"));
    if t.command
        .as_deref()
        .is_some_and(command::uses_args_json_file)
    {
        std::fs::write(&json, command::args_json(&t.params))?;
    }
    Ok((yaml, json))
}

/// Runs one program trial to its end on the calling thread (which must live until then: the
/// child's parent-death signal is tied to it). `report` sends one step and says whether to go
/// on; `cancel` is raised when the worker shuts down or the lease is gone.
pub fn run(
    t: &ProgramTrial,
    o: &ProgramOptions,
    shim_dir: Option<&Path>,
    cancel: &Cancel,
    mut report: impl FnMut(&Step) -> Control,
) -> Outcome {
    let mut hist = History::new(&t.metric);
    let fail = |why: String, hist: &History| Outcome {
        ending: Ending::Failed(why),
        metrics: HashMap::new(),
        confusion: None,
        output: hist.notices.join("\n"),
        missing_metric: None,
        files: Vec::new(),
        name: None,
    };
    if t.program.is_none() && t.command.is_none() {
        return fail(
            "the sweep names neither a program nor a command".into(),
            &hist,
        );
    }
    let fault = |why: String, hist: &History| Outcome {
        ending: Ending::Fault(why),
        ..fail(String::new(), hist)
    };
    if let Some(why) = refusal(t, o) {
        return fault(why, &hist);
    }
    let (param_path, json_path) = match write_param_files(t, o) {
        Ok(p) => p,
        Err(e) => {
            return fault(
                format!(
                    "cannot write the parameter files under {}: {e}",
                    o.workdir.display()
                ),
                &hist,
            )
        }
    };
    let env_lookup = |name: &str| std::env::var(name).ok();
    let json_arg = json_path.display().to_string();
    let argv = command::argv(
        t.command.as_deref(),
        &t.params,
        &command::Context {
            program: t.program.as_deref(),
            interpreter: "python",
            args_json_file: &json_arg,
            env: &env_lookup,
        },
    );
    let Some((exe, args)) = argv.split_first() else {
        return fail("the command expands to nothing".into(), &hist);
    };
    if let Some(why) = missing_here(t, o, exe, args) {
        return fault(why, &hist);
    }
    let files_dir = match t
        .files_dir(&o.workdir)
        .map(|d| files::prepare(&d))
        .transpose()
    {
        Ok(d) => d,
        Err(e) => {
            return fault(
                format!(
                    "cannot make the trial's files directory under {}: {e}",
                    o.workdir.display()
                ),
                &hist,
            )
        }
    };
    let (report_r, report_w) = match pipe() {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot make a pipe: {e}"), &hist),
    };
    let report_fd = report_w.as_raw_fd();
    // The program runs under a supervisor (supervise.rs), this worker's own binary, which
    // ends its whole process tree with it; the lifeline tells it to, and its end of file says
    // that this worker is gone.
    let (life_r, life_w) = match pipe() {
        Ok(p) => p,
        Err(e) => return fault(format!("cannot make a pipe: {e}"), &hist),
    };
    let life_fd = life_r.as_raw_fd();
    let supervisor = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fault(format!("cannot find this worker's own program: {e}"), &hist),
    };
    let mut cmd = Command::new(supervisor);
    cmd.arg(supervise::FLAG)
        .arg(life_fd.to_string())
        .arg(exe)
        .args(args)
        .current_dir(&o.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .env("WANDB_SWEEP_ID", &t.sweep_id)
        .env("WANDB_RUN_ID", t.run_id())
        .env("WANDB_SWEEP_PARAM_PATH", &param_path)
        .env("SWEEP_REPORT_FD", report_fd.to_string())
        .env("SWEEP_SWEEP_ID", &t.sweep_id)
        .env("SWEEP_TRIAL", t.trial.to_string())
        .env("SWEEP_ATTEMPT", t.attempt.to_string())
        .env("SWEEP_METRIC", &t.metric)
        .env(
            "SWEEP_PARAMS",
            Value::Object(t.params.iter().cloned().collect()).to_string(),
        );
    if let Some(d) = &files_dir {
        cmd.env("SWEEP_FILES_DIR", d);
    }
    if let Some(mb) = t.max_media_mb {
        cmd.env("SWEEP_MAX_MEDIA_MB", mb.to_string());
    }
    if let Some(path) = program_path() {
        cmd.env("PATH", path);
    }
    if let Some(g) = &t.gang {
        cmd.env("MASTER_ADDR", &g.master_addr)
            .env("MASTER_PORT", g.master_port.to_string())
            .env("RANK", g.rank.to_string())
            .env("NODE_RANK", g.rank.to_string())
            .env("LOCAL_RANK", "0")
            .env("WORLD_SIZE", g.size.to_string());
    }
    if let Some(gpus) = &t.visible_gpus {
        let list = gpus.join(",");
        cmd.env("CUDA_VISIBLE_DEVICES", &list).env(
            "NVIDIA_VISIBLE_DEVICES",
            if list.is_empty() { "none" } else { &list },
        );
    }
    for var in THREAD_VARS {
        if std::env::var_os(var).is_none() {
            cmd.env(var, o.threads.max(1).to_string());
        }
    }
    if t.shim && o.wandb_shim {
        if let Some(p) = python_path(shim_dir) {
            cmd.env("PYTHONPATH", p);
        }
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // The report pipe and the lifeline stay open across exec (the supervisor closes
            // the lifeline before it starts the program).
            for fd in [report_fd, life_fd] {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child: Child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            if let Some(d) = &files_dir {
                files::discard(d);
            }
            return fail(
                format!("cannot start {exe:?} in {}: {e}", o.workdir.display()),
                &hist,
            );
        }
    };
    drop(report_w);
    drop(life_r);
    let mut life = std::fs::File::from(life_w);
    let mut tell = |what: &[u8]| {
        let _ = life.write_all(what);
    };
    let pgid = child.id();
    let tail = Arc::new(Mutex::new(Tail::default()));
    let prefix = format!("[{} #{}] ", t.sweep_id, t.trial);
    // Each reader thread holds a clone of `done_tx` until it ends; see the wait below.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tail = tail.clone();
        let prefix = prefix.clone();
        let echo = o.echo;
        let done = done_tx.clone();
        std::thread::spawn(move || {
            let _done = done;
            let mut r = BufReader::new(stream);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.by_ref().take(64 * 1024).read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        tail.lock().unwrap_or_else(|p| p.into_inner()).push(&line);
                        if echo {
                            let mut e = std::io::stderr().lock();
                            let _ = e.write_all(prefix.as_bytes());
                            let _ = e.write_all(&line);
                            if !line.ends_with(b"\n") {
                                let _ = e.write_all(b"\n");
                            }
                        }
                    }
                }
            }
        });
    }
    // Lines from the report pipe, bounded: a program that logs faster than the coordinator
    // takes reports waits on its pipe instead of growing our memory.
    let (tx, rx) = mpsc::sync_channel::<Result<String, String>>(256);
    let done = done_tx.clone();
    std::thread::spawn(move || {
        let _done = done;
        history::read_lines(std::fs::File::from(report_r), |line| tx.send(line).is_ok());
    });

    let started = Instant::now();
    let mut term_sent: Option<Instant> = None;
    let mut kill_sent = false;
    let mut stop_reason: Option<String> = None;
    let mut released = false;
    let mut extra_notices: Vec<String> = Vec::new();
    let status = loop {
        // Take what the program reported.
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(line)) => {
                if let Some(step) = hist.line(&line) {
                    if stop_reason.is_none() && !released && report(&step) == Control::Stop {
                        if cancel.is_cancelled() {
                            released = true;
                        } else {
                            stop_reason = Some("stopped by the coordinator".into());
                        }
                    }
                }
                continue;
            }
            Ok(Err(notice)) => {
                extra_notices.push(notice);
                continue;
            }
            Err(_) => {
                if let Some(step) = hist.flush_due() {
                    if stop_reason.is_none() && !released {
                        let _ = report(&step);
                    }
                }
            }
        }
        if !released && stop_reason.is_none() {
            if cancel.is_cancelled() {
                released = true;
            } else if let Some(limit) = t.time_limit.filter(|l| started.elapsed() >= *l) {
                stop_reason = Some(format!(
                    "ran past the time limit of {} s",
                    limit.as_secs_f64()
                ));
            }
        }
        if (released || stop_reason.is_some()) && term_sent.is_none() {
            tell(b"T");
            term_sent = Some(Instant::now());
        }
        if !kill_sent && term_sent.is_some_and(|at| at.elapsed() >= o.kill_grace) {
            tell(b"K");
            kill_sent = true;
        }
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
    };
    // The supervisor has ended the program's tree; anything of its group still here (the
    // supervisor killed from outside) goes too.
    signal_group(pgid, libc::SIGKILL);
    drop(life);
    // The last lines it wrote before exiting.
    let drain_until = Instant::now() + Duration::from_secs(2);
    loop {
        match rx.recv_timeout(drain_until.saturating_duration_since(Instant::now())) {
            Ok(Ok(line)) => {
                if let Some(step) = hist.line(&line) {
                    if stop_reason.is_none() && !released {
                        let _ = report(&step);
                    }
                }
            }
            Ok(Err(n)) => extra_notices.push(n),
            Err(_) => break,
        }
    }
    drop(rx);
    // The rows logged after the last report (a trial handed back reports nothing more).
    if let Some(step) = hist.flush() {
        if !released {
            let _ = report(&step);
        }
    }
    // The readers end at end of file, which a process the program started in a session of its
    // own (still holding the pipes) can put off forever: wait for them a little, not for it.
    drop(done_tx);
    let _ = done_rx.recv_timeout(Duration::from_secs(2));
    hist.notices.extend(extra_notices);
    let mut output = tail.lock().unwrap_or_else(|p| p.into_inner()).text();
    for n in &hist.notices {
        output.push_str(&format!("\n[sweep] {n}"));
    }
    let last_lines = || {
        let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
        let from = lines.len().saturating_sub(5);
        lines[from..].join("\n")
    };
    let ending = match status {
        _ if released => Ending::Released,
        _ if stop_reason.is_some() => Ending::Stopped(stop_reason.unwrap_or_default()),
        Err(e) => Ending::Failed(format!("cannot wait for {exe:?}: {e}")),
        Ok(s) if s.success() => Ending::Finished,
        Ok(s) => {
            let how = match (s.code(), s.signal()) {
                (Some(c), _) => format!("exited with status {c}"),
                (None, Some(sig)) => format!("was killed by signal {sig}"),
                _ => "ended abnormally".to_string(),
            };
            let tail = last_lines();
            let who = t.program.as_deref().unwrap_or(exe);
            Ending::Failed(if tail.is_empty() {
                format!("{who} {how}")
            } else {
                format!("{who} {how}; its last output:\n{tail}")
            })
        }
    };
    let handed = files::take(
        files_dir.as_deref(),
        matches!(ending, Ending::Finished | Ending::Stopped(_)),
        t.max_files_bytes,
    );
    for n in &handed.notices {
        output.push_str(&format!("\n[sweep] {n}"));
    }
    let mut metrics = hist.summary();
    metrics.insert("runtime_seconds".into(), started.elapsed().as_secs_f64());
    Outcome {
        missing_metric: hist.missing_metric(),
        confusion: hist.confusion.take(),
        ending,
        metrics,
        output,
        files: handed.files,
        name: hist.name.take(),
    }
}
