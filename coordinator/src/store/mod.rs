//! Durable state in SQLite (WAL): sweeps, trials, metric points and workers.
//!
//! One writer thread owns the connection. Callers send it closures; it runs every closure that
//! is waiting in one transaction (group commit), commits, and only then answers each caller. A
//! reply that depends on a state change is therefore sent after that change is on disk, and
//! the async runtime never blocks on disk. State is read at startup ([`Store::open`]) and again
//! after a failed write ([`Store::reload`]); otherwise the engine serves reads from memory,
//! except what it no longer holds of ended trials (their curves, outputs and confusion
//! matrices), which [`Store::read`] reads on a second, read-only connection.
//!
//! The store is fail-stop. When a write fails (a full disk, a read-only file, an I/O error)
//! the whole transaction is rolled back, every caller in it is told why, and every later write
//! is refused with the same cause until the engine has read the store back
//! ([`Store::reload`]): memory that ran ahead of the disk is replaced by what the disk holds
//! before anything else is acknowledged. A store file deleted, replaced or truncated under the
//! coordinator ([`guard::FileWatch`]) is lost for good: every write is refused until restart.
//! One coordinator at a time: [`Store::open`] takes an exclusive lock ([`guard::StoreLock`]).

pub mod guard;

use std::any::Any;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{oneshot, watch};

/// A store failure.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused an operation (while opening or reading).
    #[error("store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// SQLite's error.
        source: Arc<rusqlite::Error>,
    },
    /// A write failed, or writes are refused since one failed: nothing of it was kept.
    #[error("store {path} cannot be written: {cause}; nothing of this request was kept (the coordinator retries by itself; try again later)")]
    Write {
        /// The database file.
        path: String,
        /// What SQLite or the file system said.
        cause: String,
    },
    /// The file is no longer the store (deleted, replaced, truncated): nothing more is kept.
    #[error("store {path} {cause}; the coordinator acknowledges no more work: restore the store and restart it")]
    Lost {
        /// The database file.
        path: String,
        /// What happened to it.
        cause: String,
    },
    /// Another coordinator holds the store.
    #[error("store {path} is in use by another {holder}; stop it first or give this one another --store")]
    Locked {
        /// The database file.
        path: String,
        /// Who holds it, as it wrote in the lock file.
        holder: String,
    },
    /// The database file could not be opened or locked.
    #[error("store {path}: cannot open and lock it: {reason}")]
    Lock {
        /// The database file.
        path: String,
        /// The system's error.
        reason: String,
    },
    /// The database file has hard links.
    #[error("store {path} has {links} hard links; SQLite keeps its write-ahead log beside the name it is opened by, so a second name can lose or corrupt committed work: remove the other names (find / -samefile {path}) and start again")]
    Links {
        /// The database file.
        path: String,
        /// Its link count.
        links: u64,
    },
    /// The writer thread is gone (the process is shutting down).
    #[error("the store's writer thread has stopped")]
    Closed,
    /// The file was written by a newer version.
    #[error("store {path}: schema version {found} is newer than this build's {supported}; upgrade the coordinator")]
    TooNew {
        /// The database file.
        path: String,
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
}

/// Whether the store accepts writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Writes are committed.
    Ok,
    /// A write failed; writes are refused until the engine reloads (then tried again).
    Failing(String),
    /// The file is no longer the store; writes are refused until restart.
    Lost(String),
}

impl Health {
    /// `None` when writes are accepted, else why not.
    pub fn problem(&self) -> Option<&str> {
        match self {
            Health::Ok => None,
            Health::Failing(c) | Health::Lost(c) => Some(c),
        }
    }
}

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE sweeps (
    id TEXT PRIMARY KEY,
    name TEXT,
    config TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    next_trial INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE trials (
    sweep_id TEXT NOT NULL REFERENCES sweeps(id),
    trial INTEGER NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    completed_attempt INTEGER,
    lease_id TEXT,
    worker TEXT,
    started_at REAL,
    ended_at REAL,
    duration REAL NOT NULL DEFAULT 0,
    metrics TEXT NOT NULL DEFAULT '{}',
    confusion TEXT,
    error TEXT,
    PRIMARY KEY (sweep_id, trial)
);
CREATE TABLE metric_points (
    sweep_id TEXT NOT NULL,
    trial INTEGER NOT NULL,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (sweep_id, trial, step, name)
);
CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    cores INTEGER NOT NULL,
    slots INTEGER NOT NULL,
    version TEXT NOT NULL,
    registered_at REAL NOT NULL
);
"#,
    r#"
ALTER TABLE trials ADD COLUMN output TEXT;
"#,
    // The best value of the sweep's metric and its step, so that a restart need not read an
    // ended trial's points (a row written before has best_step NULL).
    r#"
ALTER TABLE trials ADD COLUMN best REAL;
ALTER TABLE trials ADD COLUMN best_step INTEGER;
"#,
    // The validated spec, so that a restart does not validate a stored config again (a
    // stricter rule in a later version must not stop a restart); NULL in rows written before.
    r#"
ALTER TABLE sweeps ADD COLUMN spec TEXT;
"#,
    // The trained models of the best trials (docs/MODELS.md): a card's text and its weights.
    r#"
CREATE TABLE models (
    sweep_id TEXT NOT NULL,
    trial INTEGER NOT NULL,
    card TEXT NOT NULL,
    weights BLOB NOT NULL,
    PRIMARY KEY (sweep_id, trial)
);
"#,
    // A running trial's last checkpoint (docs/CHECKPOINTS.md), and the attempts of trials that
    // took more than one (a trial with one attempt is described by its row alone).
    r#"
CREATE TABLE checkpoints (
    sweep_id TEXT NOT NULL,
    trial INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    batch INTEGER NOT NULL,
    data BLOB NOT NULL,
    saved_at REAL NOT NULL,
    PRIMARY KEY (sweep_id, trial)
);
CREATE TABLE attempts (
    sweep_id TEXT NOT NULL,
    trial INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    worker TEXT,
    started_at REAL,
    ended_at REAL,
    resumed_epoch INTEGER,
    resumed_batch INTEGER,
    resumed_attempt INTEGER,
    resumed_bytes INTEGER,
    ending TEXT,
    PRIMARY KEY (sweep_id, trial, attempt)
);
"#,
    // The files programs handed back (docs/PROGRAMS.md), one row per file, kept like models
    // while their trial ranks among the sweep's best `keep_models`.
    r#"
CREATE TABLE program_files (
    sweep_id TEXT NOT NULL,
    trial INTEGER NOT NULL,
    path TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (sweep_id, trial, path)
);
"#,
    // The name a program gave its run (W&B's run name).
    r#"
ALTER TABLE trials ADD COLUMN name TEXT;
"#,
    // The GPUs a worker registered (JSON; NULL: none).
    r#"
ALTER TABLE workers ADD COLUMN gpus TEXT;
"#,
    // The GPUs a trial's current or last attempt runs with (JSON list of ids; NULL: none).
    r#"
ALTER TABLE trials ADD COLUMN gpus TEXT;
"#,
    // A running gang's members past rank 0 (JSON list of {lease_id, worker, done}; NULL: none).
    r#"
ALTER TABLE trials ADD COLUMN gang TEXT;
"#,
];

type Output = Box<dyn Any + Send>;
type Run = Box<dyn FnOnce(&Connection) -> rusqlite::Result<Output> + Send>;

/// One caller's work for the writer's next transaction.
struct Job {
    run: Run,
    reply: oneshot::Sender<Result<Output, StoreError>>,
}

enum Msg {
    Job(Job),
    /// Read everything back (with the closure) and accept writes again (unless the file is
    /// lost).
    Reload(Run, oneshot::Sender<Result<Output, StoreError>>),
    /// Fail writes as on a full disk once the file grows by more than this many pages (`None`:
    /// no limit).
    Limit(Option<u32>, oneshot::Sender<()>),
    /// Copy the write-ahead log into the database file and empty it.
    Checkpoint(oneshot::Sender<Result<(), StoreError>>),
}

/// Handle to the writer thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    /// Work for the writer thread.
    tx: mpsc::Sender<Msg>,
    /// The database file, for messages.
    path: String,
    /// Whether writes are accepted; set by the writer thread.
    health: watch::Receiver<Health>,
    /// The read-only connection of [`Store::read`].
    reader: Arc<std::sync::Mutex<Connection>>,
    /// Joins the writer thread when the last handle goes (after `tx`, so that it ends).
    _writer: Arc<Joiner>,
    /// Held while any handle lives (released after the writer has closed the file).
    _lock: Arc<guard::StoreLock>,
}

/// The writer thread, joined when the last [`Store`] handle is dropped: a dropped store is
/// closed (SQLite folds its log into the file and removes it) before its lock is released, so
/// the file alone holds everything once the handle is gone.
#[derive(Debug)]
struct Joiner(Option<std::thread::JoinHandle<()>>);

impl Drop for Joiner {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}
/// A sweep row as stored.
#[derive(Debug, Clone)]
pub struct SweepRow {
    /// Sweep id.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// The config as JSON, as the user gave it (with its seed).
    pub config: String,
    /// The validated spec (`SweepSpec`) as JSON, read back at a restart instead of validating
    /// the config again; `None` in rows written before it was kept.
    pub spec: Option<String>,
    /// State name.
    pub state: String,
    /// Unix seconds.
    pub created_at: f64,
    /// Unix seconds.
    pub updated_at: f64,
    /// Next trial number to hand out.
    pub next_trial: u64,
}

/// A trial row as stored.
#[derive(Debug, Clone)]
pub struct TrialRow {
    /// Owning sweep.
    pub sweep_id: String,
    /// Trial number (1-based).
    pub trial: u64,
    /// Parameters, JSON.
    pub params: String,
    /// State name.
    pub state: String,
    /// Current attempt (1-based).
    pub attempt: u32,
    /// The attempt whose Complete was accepted.
    pub completed_attempt: Option<u32>,
    /// Fencing token of the current attempt.
    pub lease_id: Option<String>,
    /// Worker of the current/last attempt.
    pub worker: Option<String>,
    /// Unix seconds.
    pub started_at: Option<f64>,
    /// Unix seconds.
    pub ended_at: Option<f64>,
    /// Seconds of the accepted attempt.
    pub duration: f64,
    /// Final metrics, JSON object.
    pub metrics: String,
    /// Confusion matrix, JSON.
    pub confusion: Option<String>,
    /// Why it failed or stopped.
    pub error: Option<String>,
    /// The tail of a program's output.
    pub output: Option<String>,
    /// The best value of the sweep's metric over the epochs, and its step (step 0: none).
    /// Read back as `None` from rows written before it was kept.
    pub best: Option<(Option<f64>, u32)>,
    /// Whether the stored confusion matrix and output stay as they are (the trial's memory
    /// no longer holds them; `confusion` and `output` are then ignored).
    pub keep_files: bool,
    /// The name its program gave the run.
    pub name: Option<String>,
    /// The GPUs of its current or last attempt, a JSON list of ids (ignored with
    /// `keep_files`, as `output` is).
    pub gpus: Option<String>,
    /// A running gang's members past rank 0, JSON.
    pub gang: Option<String>,
}

/// What a reader of the whole store needs of a trial's metric points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// None.
    Nothing,
    /// Those of one metric.
    Metric(String),
    /// Every one.
    All,
}

/// Takes the store's rows as they are read back, one at a time (a store of a million trials is
/// never held twice in memory): every sweep, then every trial by sweep and number with the
/// points it asks for, then every worker. Ended trials are read without their confusion
/// matrix and output ([`trial_files`] reads them).
pub trait Load {
    /// A sweep.
    fn sweep(&mut self, s: SweepRow);
    /// Which of the points of trial `t` to read.
    fn need(&mut self, t: &TrialRow) -> Need;
    /// A trial, with the points asked for: (step, name, value), by step then name.
    fn trial(&mut self, t: TrialRow, points: Vec<(u32, String, f64)>);
    /// A registered worker.
    fn worker(&mut self, w: WorkerRow);
    /// The last checkpoint of a trial read before (without its bytes).
    fn checkpoint(&mut self, _sweep: &str, _trial: u64, _mark: CheckpointMark) {}
}

/// Where a trial's last checkpoint stands, and what it is (its bytes stay in the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointMark {
    /// Epochs done.
    pub epoch: u32,
    /// Batches done of the next epoch.
    pub batch: u32,
    /// Its length.
    pub bytes: u64,
    /// The attempt that saved it.
    pub attempt: u32,
}

/// One attempt of a trial that took more than one.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    /// Owning sweep.
    pub sweep_id: String,
    /// Trial number.
    pub trial: u64,
    /// Attempt number.
    pub attempt: u32,
    /// Its worker.
    pub worker: Option<String>,
    /// Unix seconds.
    pub started_at: Option<f64>,
    /// Unix seconds; `None` while it runs.
    pub ended_at: Option<f64>,
    /// The checkpoint it went on from.
    pub resumed_from: Option<CheckpointMark>,
    /// How it ended ("lease expired", "handed back", or the trial's end state); empty while it
    /// runs.
    pub ending: String,
}

/// Everything in the store, in memory at once (for tests and small tools; the engine loads
/// row by row).
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every sweep.
    pub sweeps: Vec<SweepRow>,
    /// Every trial.
    pub trials: Vec<TrialRow>,
    /// Every metric point: (sweep, trial, step, name, value).
    pub points: Vec<(String, u64, u32, String, f64)>,
    /// Every registered worker.
    pub workers: Vec<WorkerRow>,
}

impl Load for Snapshot {
    fn sweep(&mut self, s: SweepRow) {
        self.sweeps.push(s);
    }
    fn need(&mut self, _: &TrialRow) -> Need {
        Need::All
    }
    fn trial(&mut self, t: TrialRow, points: Vec<(u32, String, f64)>) {
        self.points.extend(
            points
                .into_iter()
                .map(|(step, name, v)| (t.sweep_id.clone(), t.trial, step, name, v)),
        );
        self.trials.push(t);
    }
    fn worker(&mut self, w: WorkerRow) {
        self.workers.push(w);
    }
}

/// A registered worker as stored.
#[derive(Debug, Clone)]
pub struct WorkerRow {
    /// Its id.
    pub id: String,
    /// Host name it reported.
    pub host: String,
    /// Its cores.
    pub cores: u32,
    /// Trials it runs at once.
    pub slots: u32,
    /// Its version.
    pub version: String,
    /// The GPUs it hands to trials.
    pub gpus: Vec<crate::engine::GpuInfo>,
}

fn sql(path: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_string(),
        source: Arc::new(source),
    }
}

/// How often the writer looks at the store file when it has nothing to write.
const WATCH_PERIOD: Duration = Duration::from_secs(1);

impl Store {
    /// Locks the database (one coordinator per store), opens it (creating it if needed),
    /// migrates it, reads it into `into`, and starts the writer.
    pub fn open(path: &Path, into: &mut impl Load) -> Result<Store, StoreError> {
        let p = path.display().to_string();
        let lock = guard::StoreLock::acquire(path).map_err(|e| match e {
            guard::LockError::Held(holder) => StoreError::Locked {
                path: p.clone(),
                holder,
            },
            guard::LockError::Links(links) => StoreError::Links {
                path: p.clone(),
                links,
            },
            guard::LockError::Io(e) => StoreError::Lock {
                path: p.clone(),
                reason: e.to_string(),
            },
        })?;
        // SQLite is given the one real name, so the write-ahead log is always the same file
        // whichever path (a symlink, a relative one) the coordinator was started with.
        let real = lock.real.clone();
        let mut conn = Connection::open(&real).map_err(sql(&p))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
        )
        .map_err(sql(&p))?;
        migrate(&mut conn, &p)?;
        read_all(&conn, into).map_err(sql(&p))?;
        let reader = Connection::open_with_flags(
            &real,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| c.execute_batch("PRAGMA busy_timeout = 5000;").map(|()| c))
        .map_err(sql(&p))?;
        let watch = guard::FileWatch::new(path).map_err(|e| StoreError::Lost {
            path: p.clone(),
            cause: format!("cannot be watched: {e}"),
        })?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let (health_tx, health) = watch::channel(Health::Ok);
        let mut w = Writer {
            conn,
            path: p.clone(),
            health: health_tx,
            watch,
        };
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || w.run(rx))
            .map_err(|e| StoreError::Write {
                path: p.clone(),
                cause: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Store {
            tx,
            path: p,
            health,
            reader: Arc::new(std::sync::Mutex::new(reader)),
            _writer: Arc::new(Joiner(Some(writer))),
            _lock: Arc::new(lock),
        })
    }

    /// The database file, as given.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether writes are accepted now; follows every change.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.health.clone()
    }

    /// Runs `f` in the writer's next transaction; resolves once it is committed.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.submit(f).await
    }

    /// Queues `f` now (so that jobs are applied in call order) and returns a future of its
    /// committed result. If `f` or the commit fails, the whole transaction is rolled back and
    /// every write after it is refused until [`Store::reload`].
    pub fn submit<R, F>(
        &self,
        f: F,
    ) -> impl std::future::Future<Output = Result<R, StoreError>> + Send + 'static
    where
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, orx) = oneshot::channel();
        let job = Job {
            run: Box::new(move |c: &Connection| f(c).map(|v| Box::new(v) as Output)),
            reply,
        };
        let sent = self.tx.send(Msg::Job(job)).is_ok();
        async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            let out = orx.await.unwrap_or(Err(StoreError::Closed))?;
            Ok(*out
                .downcast::<R>()
                .expect("a job's output has the type its caller asked for"))
        }
    }

    /// Runs `f` on the read-only connection, off the async runtime. It sees every committed
    /// write.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let reader = self.reader.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn).map_err(sql(&path))
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Resolves once every write queued before it is committed (or fails as they did).
    pub fn barrier(&self) -> impl std::future::Future<Output = Result<(), StoreError>> + Send {
        self.submit(|_| Ok(()))
    }

    /// Reads the whole store back into `into` after a failed write and, if the file is still
    /// the store, accepts writes again. Every write queued before this call has been refused
    /// by then.
    pub async fn reload<L: Load + Send + 'static>(&self, mut into: L) -> Result<L, StoreError> {
        let (otx, orx) = oneshot::channel();
        let run: Run = Box::new(move |c: &Connection| {
            read_all(c, &mut into)?;
            Ok(Box::new(into) as Output)
        });
        self.tx
            .send(Msg::Reload(run, otx))
            .map_err(|_| StoreError::Closed)?;
        let out = orx.await.unwrap_or(Err(StoreError::Closed))?;
        Ok(*out
            .downcast::<L>()
            .expect("a reload's output is the loader it was given"))
    }

    /// Copies the write-ahead log into the database file and truncates it, so the file alone
    /// holds everything (for a clean exit: a copy of it then misses nothing).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        let (otx, orx) = oneshot::channel();
        self.tx
            .send(Msg::Checkpoint(otx))
            .map_err(|_| StoreError::Closed)?;
        orx.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Makes writes fail as on a full disk once the database would grow by more than `extra`
    /// pages (SQLite's `max_page_count`, so the failure comes through SQLite's own error path);
    /// `None` lifts the limit. For tests of the disk-full path where no small file system can
    /// be mounted.
    #[doc(hidden)]
    pub async fn limit_growth(&self, extra: Option<u32>) {
        let (otx, orx) = oneshot::channel();
        if self.tx.send(Msg::Limit(extra, otx)).is_ok() {
            let _ = orx.await;
        }
    }
}

/// The writer thread's state.
struct Writer {
    conn: Connection,
    path: String,
    health: watch::Sender<Health>,
    watch: guard::FileWatch,
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Msg>) {
        let mut next: Option<Msg> = None;
        loop {
            let first = match next.take() {
                Some(m) => m,
                None => match rx.recv_timeout(WATCH_PERIOD) {
                    Ok(m) => m,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.look_at_the_file();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                },
            };
            let mut jobs = match first {
                Msg::Job(j) => vec![j],
                Msg::Reload(run, reply) => {
                    let _ = reply.send(self.reload(run));
                    continue;
                }
                Msg::Checkpoint(reply) => {
                    let r = self
                        .conn
                        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                            r.get::<_, i64>(0)
                        })
                        .map_err(|e| StoreError::Write {
                            path: self.path.clone(),
                            cause: format!("checkpoint: {e}"),
                        })
                        .and_then(|busy| {
                            if busy == 0 {
                                Ok(())
                            } else {
                                Err(StoreError::Write {
                                    path: self.path.clone(),
                                    cause: "checkpoint: another reader kept the log busy".into(),
                                })
                            }
                        });
                    let _ = reply.send(r);
                    continue;
                }
                Msg::Limit(extra, done) => {
                    let pages = match extra {
                        Some(extra) => self
                            .conn
                            .query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
                            .map_or(i64::from(u32::MAX), |n| n + i64::from(extra)),
                        None => 1_073_741_823,
                    };
                    let _ = self
                        .conn
                        .execute_batch(&format!("PRAGMA max_page_count = {pages}"));
                    let _ = done.send(());
                    continue;
                }
            };
            while jobs.len() < 1024 {
                match rx.try_recv() {
                    Ok(Msg::Job(j)) => jobs.push(j),
                    Ok(other) => {
                        next = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.look_at_the_file();
            self.commit(jobs);
        }
    }

    /// Marks the store lost if its file is no longer the one opened.
    fn look_at_the_file(&mut self) {
        if matches!(*self.health.borrow(), Health::Lost(_)) {
            return;
        }
        if let Some(what) = self.watch.check() {
            tracing::error!(store = %self.path, "the store file {what}: no more work is acknowledged; restore the store and restart the coordinator");
            self.health.send_replace(Health::Lost(what));
        }
    }

    fn refusal(&self) -> Option<StoreError> {
        match &*self.health.borrow() {
            Health::Ok => None,
            Health::Failing(cause) => Some(StoreError::Write {
                path: self.path.clone(),
                cause: cause.clone(),
            }),
            Health::Lost(cause) => Some(StoreError::Lost {
                path: self.path.clone(),
                cause: cause.clone(),
            }),
        }
    }

    /// Runs `jobs` in one transaction; all of them are kept, or none and writes stop.
    fn commit(&mut self, jobs: Vec<Job>) {
        if let Some(err) = self.refusal() {
            for j in jobs {
                let _ = j.reply.send(Err(err.clone()));
            }
            return;
        }
        let (runs, replies): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.run, j.reply)).unzip();
        let conn = &mut self.conn;
        let result = (move || {
            let tx = conn.transaction()?;
            let mut outputs = Vec::with_capacity(runs.len());
            for run in runs {
                outputs.push(run(&tx)?);
            }
            tx.commit()?;
            Ok::<_, rusqlite::Error>(outputs)
        })();
        match result {
            Ok(outputs) => {
                for (r, o) in replies.into_iter().zip(outputs) {
                    let _ = r.send(Ok(o));
                }
            }
            Err(e) => {
                // The transaction is rolled back (dropped); nothing of this batch is kept.
                let cause = e.to_string();
                tracing::error!(store = %self.path, error = %cause, "a write failed: rolled back, and writes are refused until the engine has read the store back");
                self.health.send_replace(Health::Failing(cause.clone()));
                let err = StoreError::Write {
                    path: self.path.clone(),
                    cause,
                };
                for r in replies {
                    let _ = r.send(Err(err.clone()));
                }
            }
        }
    }

    fn reload(&mut self, run: Run) -> Result<Output, StoreError> {
        self.look_at_the_file();
        if let Some(err @ StoreError::Lost { .. }) = self.refusal() {
            return Err(err);
        }
        let snap = run(&self.conn).map_err(|e| StoreError::Write {
            path: self.path.clone(),
            cause: format!("cannot be read back: {e}"),
        })?;
        if self.health.borrow().problem().is_some() {
            tracing::info!(store = %self.path, "store read back: writes accepted again");
        }
        self.health.send_replace(Health::Ok);
        Ok(snap)
    }
}

fn migrate(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql(path))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::TooNew {
            path: path.to_string(),
            found: version,
            supported,
        });
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(sql(path))?;
        tx.execute_batch(m).map_err(sql(path))?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
            .map_err(sql(path))?;
        tx.commit().map_err(sql(path))?;
    }
    Ok(())
}

fn read_all(conn: &Connection, into: &mut impl Load) -> rusqlite::Result<()> {
    let mut q = conn.prepare("SELECT id, name, config, state, created_at, updated_at, next_trial, spec FROM sweeps ORDER BY created_at, id")?;
    let mut rows = q.query([])?;
    while let Some(r) = rows.next()? {
        into.sweep(SweepRow {
            id: r.get(0)?,
            name: r.get(1)?,
            config: r.get(2)?,
            state: r.get(3)?,
            created_at: r.get(4)?,
            updated_at: r.get(5)?,
            next_trial: r.get::<_, i64>(6)? as u64,
            spec: r.get(7)?,
        });
    }
    let mut q = conn.prepare(
        "SELECT sweep_id, trial, params, state, attempt, completed_attempt, lease_id, worker, started_at, ended_at, duration, metrics,
           CASE WHEN state IN ('queued', 'running') THEN confusion END,
           error,
           CASE WHEN state IN ('queued', 'running') THEN output END,
           best, best_step, name,
           CASE WHEN state IN ('queued', 'running') THEN gpus END,
           CASE WHEN state = 'running' THEN gang END
         FROM trials ORDER BY sweep_id, trial",
    )?;
    let mut one = conn.prepare(
        "SELECT step, name, value FROM metric_points WHERE sweep_id = ?1 AND trial = ?2 AND name = ?3 ORDER BY step",
    )?;
    let point = |r: &rusqlite::Row<'_>| Ok((r.get::<_, i64>(0)? as u32, r.get(1)?, r.get(2)?));
    let mut rows = q.query([])?;
    while let Some(r) = rows.next()? {
        let t = TrialRow {
            sweep_id: r.get(0)?,
            trial: r.get::<_, i64>(1)? as u64,
            params: r.get(2)?,
            state: r.get(3)?,
            attempt: r.get::<_, i64>(4)? as u32,
            completed_attempt: r.get::<_, Option<i64>>(5)?.map(|a| a as u32),
            lease_id: r.get(6)?,
            worker: r.get(7)?,
            started_at: r.get(8)?,
            ended_at: r.get(9)?,
            duration: r.get(10)?,
            metrics: r.get(11)?,
            confusion: r.get(12)?,
            error: r.get(13)?,
            output: r.get(14)?,
            best: r
                .get::<_, Option<i64>>(16)?
                .map(|step| Ok::<_, rusqlite::Error>((r.get(15)?, step as u32)))
                .transpose()?,
            keep_files: false,
            name: r.get(17)?,
            gpus: r.get(18)?,
            gang: r.get(19)?,
        };
        let points = match into.need(&t) {
            Need::Nothing => Vec::new(),
            Need::All => trial_points(conn, &t.sweep_id, t.trial)?,
            Need::Metric(m) => one
                .query_map(params![t.sweep_id, t.trial as i64, m], point)?
                .collect::<rusqlite::Result<_>>()?,
        };
        into.trial(t, points);
    }
    let mut q = conn.prepare(
        "SELECT sweep_id, trial, epoch, batch, length(data), attempt FROM checkpoints ORDER BY sweep_id, trial",
    )?;
    let mut rows = q.query([])?;
    while let Some(r) = rows.next()? {
        let sweep: String = r.get(0)?;
        let mark = CheckpointMark {
            epoch: r.get::<_, i64>(2)? as u32,
            batch: r.get::<_, i64>(3)? as u32,
            bytes: r.get::<_, i64>(4)? as u64,
            attempt: r.get::<_, i64>(5)? as u32,
        };
        into.checkpoint(&sweep, r.get::<_, i64>(1)? as u64, mark);
    }
    let mut q =
        conn.prepare("SELECT id, host, cores, slots, version, gpus FROM workers ORDER BY id")?;
    let mut rows = q.query([])?;
    while let Some(r) = rows.next()? {
        // A registration is a worker's own word and is sent again when it reconnects: GPUs
        // that do not read back are left out rather than stopping a restart.
        let gpus = r
            .get::<_, Option<String>>(5)?
            .and_then(|g| serde_json::from_str(&g).ok())
            .unwrap_or_default();
        into.worker(WorkerRow {
            id: r.get(0)?,
            host: r.get(1)?,
            cores: r.get::<_, i64>(2)? as u32,
            slots: r.get::<_, i64>(3)? as u32,
            version: r.get(4)?,
            gpus,
        });
    }
    Ok(())
}

/// Inserts a new sweep.
pub fn insert_sweep(tx: &Connection, s: &SweepRow) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO sweeps (id, name, config, state, created_at, updated_at, next_trial, spec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![s.id, s.name, s.config, s.state, s.created_at, s.updated_at, s.next_trial as i64, s.spec],
    )?;
    Ok(())
}

/// Updates a sweep's state and next trial number.
pub fn update_sweep(
    tx: &Connection,
    id: &str,
    state: &str,
    next_trial: u64,
    updated_at: f64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE sweeps SET state = ?2, next_trial = ?3, updated_at = ?4 WHERE id = ?1",
    )?
    .execute(params![id, state, next_trial as i64, updated_at])?;
    Ok(())
}

/// Inserts or replaces a trial row.
pub fn upsert_trial(tx: &Connection, t: &TrialRow) -> rusqlite::Result<()> {
    let mut q = tx.prepare_cached(
        "INSERT INTO trials (sweep_id, trial, params, state, attempt, completed_attempt, lease_id, worker, started_at, ended_at, duration, metrics, confusion, error, output, best, best_step, name, gpus, gang)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?17, ?18, ?19, ?20, ?21)
         ON CONFLICT (sweep_id, trial) DO UPDATE SET params = excluded.params, state = excluded.state,
           attempt = excluded.attempt, completed_attempt = excluded.completed_attempt,
           lease_id = excluded.lease_id, worker = excluded.worker, started_at = excluded.started_at,
           ended_at = excluded.ended_at, duration = excluded.duration, metrics = excluded.metrics,
           confusion = CASE WHEN ?16 THEN trials.confusion ELSE excluded.confusion END,
           error = excluded.error,
           output = CASE WHEN ?16 THEN trials.output ELSE excluded.output END,
           best = excluded.best, best_step = excluded.best_step, name = excluded.name,
           gpus = CASE WHEN ?16 THEN trials.gpus ELSE excluded.gpus END, gang = excluded.gang",
    )?;
    q.execute(params![
        t.sweep_id,
        t.trial as i64,
        t.params,
        t.state,
        t.attempt,
        t.completed_attempt,
        t.lease_id,
        t.worker,
        t.started_at,
        t.ended_at,
        t.duration,
        t.metrics,
        t.confusion,
        t.error,
        t.output,
        t.keep_files,
        t.best.and_then(|b| b.0),
        t.best.map(|b| b.1),
        t.name,
        t.gpus,
        t.gang
    ])?;
    // An ended trial will not resume: its checkpoint goes with the change that ended it, and
    // so do files an attempt sent that did not complete it (it died before its Complete).
    if !matches!(t.state.as_str(), "queued" | "running") {
        tx.prepare_cached("DELETE FROM checkpoints WHERE sweep_id = ?1 AND trial = ?2")?
            .execute(params![t.sweep_id, t.trial as i64])?;
        tx.prepare_cached(
            "DELETE FROM program_files WHERE sweep_id = ?1 AND trial = ?2 AND attempt IS NOT ?3",
        )?
        .execute(params![t.sweep_id, t.trial as i64, t.completed_attempt])?;
    }
    Ok(())
}

/// Keeps `data` as trial `trial`'s checkpoint, replacing the one before.
pub fn put_checkpoint(
    tx: &Connection,
    sweep: &str,
    trial: u64,
    mark: CheckpointMark,
    data: &[u8],
    at: f64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO checkpoints (sweep_id, trial, attempt, epoch, batch, data, saved_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![sweep, trial as i64, mark.attempt, mark.epoch, mark.batch, data, at])?;
    Ok(())
}

/// Trial `trial`'s checkpoint: where it stands and its bytes.
pub fn checkpoint(
    conn: &Connection,
    sweep: &str,
    trial: u64,
) -> rusqlite::Result<Option<(CheckpointMark, Vec<u8>)>> {
    conn.prepare_cached(
        "SELECT epoch, batch, attempt, data FROM checkpoints WHERE sweep_id = ?1 AND trial = ?2",
    )?
    .query_row(params![sweep, trial as i64], |r| {
        let data: Vec<u8> = r.get(3)?;
        Ok((
            CheckpointMark {
                epoch: r.get::<_, i64>(0)? as u32,
                batch: r.get::<_, i64>(1)? as u32,
                bytes: data.len() as u64,
                attempt: r.get::<_, i64>(2)? as u32,
            },
            data,
        ))
    })
    .optional()
}

/// Records an attempt as it starts (replacing a row of the same attempt).
pub fn start_attempt(tx: &Connection, a: &AttemptRow) -> rusqlite::Result<()> {
    let r = a.resumed_from;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO attempts (sweep_id, trial, attempt, worker, started_at, ended_at, resumed_epoch, resumed_batch, resumed_attempt, resumed_bytes, ending)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        a.sweep_id,
        a.trial as i64,
        a.attempt,
        a.worker,
        a.started_at,
        a.ended_at,
        r.map(|m| m.epoch),
        r.map(|m| m.batch),
        r.map(|m| m.attempt),
        r.map(|m| m.bytes as i64),
        a.ending
    ])?;
    Ok(())
}

/// Names trial `trial`'s run.
pub fn name_trial(tx: &Connection, sweep: &str, trial: u64, name: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE trials SET name = ?3 WHERE sweep_id = ?1 AND trial = ?2")?
        .execute(params![sweep, trial as i64, name])?;
    Ok(())
}

/// Records that an attempt went on from no checkpoint after all (it started over).
pub fn clear_resumed(
    tx: &Connection,
    sweep: &str,
    trial: u64,
    attempt: u32,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE attempts SET resumed_epoch = NULL, resumed_batch = NULL, resumed_attempt = NULL, resumed_bytes = NULL WHERE sweep_id = ?1 AND trial = ?2 AND attempt = ?3",
    )?
    .execute(params![sweep, trial as i64, attempt])?;
    Ok(())
}

/// Records how an attempt ended; an attempt recorded when it started keeps its start and the
/// checkpoint it went on from.
pub fn end_attempt(tx: &Connection, a: &AttemptRow) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO attempts (sweep_id, trial, attempt, worker, started_at, ended_at, ending) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (sweep_id, trial, attempt) DO UPDATE SET ended_at = excluded.ended_at, ending = excluded.ending",
    )?
    .execute(params![a.sweep_id, a.trial as i64, a.attempt, a.worker, a.started_at, a.ended_at, a.ending])?;
    Ok(())
}

/// The recorded attempts of trial `trial`, oldest first.
pub fn attempts(conn: &Connection, sweep: &str, trial: u64) -> rusqlite::Result<Vec<AttemptRow>> {
    conn.prepare_cached(
        "SELECT attempt, worker, started_at, ended_at, resumed_epoch, resumed_batch, resumed_attempt, resumed_bytes, ending
         FROM attempts WHERE sweep_id = ?1 AND trial = ?2 ORDER BY attempt",
    )?
    .query_map(params![sweep, trial as i64], |r| {
        let resumed_from = match r.get::<_, Option<i64>>(4)? {
            Some(epoch) => Some(CheckpointMark {
                epoch: epoch as u32,
                batch: r.get::<_, Option<i64>>(5)?.unwrap_or(0) as u32,
                attempt: r.get::<_, Option<i64>>(6)?.unwrap_or(0) as u32,
                bytes: r.get::<_, Option<i64>>(7)?.unwrap_or(0) as u64,
            }),
            None => None,
        };
        Ok(AttemptRow {
            sweep_id: sweep.to_string(),
            trial,
            attempt: r.get::<_, i64>(0)? as u32,
            worker: r.get(1)?,
            started_at: r.get(2)?,
            ended_at: r.get(3)?,
            resumed_from,
            ending: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
        })
    })?
    .collect()
}

/// Records one epoch's metrics of a trial (a later attempt overwrites the same step).
pub fn insert_points(
    tx: &Connection,
    sweep: &str,
    trial: u64,
    step: u32,
    metrics: &[(String, f64)],
) -> rusqlite::Result<()> {
    let mut q = tx.prepare_cached("INSERT OR REPLACE INTO metric_points (sweep_id, trial, step, name, value) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for (name, value) in metrics {
        q.execute(params![sweep, trial as i64, step, name, value])?;
    }
    Ok(())
}

/// A confusion matrix as the store keeps it: `{"labels": [...], "counts": [...]}`, counts
/// row-major.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredConfusion<L, C> {
    labels: L,
    counts: C,
}

/// The stored text of a confusion matrix.
pub fn confusion_json(labels: &[String], counts: &[u64]) -> String {
    serde_json::to_string(&StoredConfusion { labels, counts }).unwrap_or_default()
}

/// A confusion matrix read back from its stored text: (labels, counts).
pub fn parse_confusion(text: &str) -> Result<(Vec<String>, Vec<u64>), serde_json::Error> {
    let c: StoredConfusion<Vec<String>, Vec<u64>> = serde_json::from_str(text)?;
    Ok((c.labels, c.counts))
}

/// What the store keeps of an ended trial beyond its row in memory.
#[derive(Debug, Default)]
pub struct TrialFiles {
    /// Its curve as served ([`sampled_points`]).
    pub curve: crate::curve::Served,
    /// Confusion matrix, JSON.
    pub confusion: Option<String>,
    /// The tail of a program's output.
    pub output: Option<String>,
    /// The GPUs of its last attempt, a JSON list of ids.
    pub gpus: Option<String>,
}

/// Every metric point of a trial: (step, name, value), by step then name.
fn trial_points(
    conn: &Connection,
    sweep: &str,
    trial: u64,
) -> rusqlite::Result<Vec<(u32, String, f64)>> {
    conn.prepare_cached(
        "SELECT step, name, value FROM metric_points WHERE sweep_id = ?1 AND trial = ?2 ORDER BY step, name",
    )?
    .query_map(params![sweep, trial as i64], |r| {
        Ok((r.get::<_, i64>(0)? as u32, r.get(1)?, r.get(2)?))
    })?
    .collect()
}

/// A trial's curve sampled to about `points` ([`crate::curve`]), read once in order and never
/// held whole: (points, how many the store keeps, whether sampled).
pub fn sampled_points(
    conn: &Connection,
    sweep: &str,
    trial: u64,
    points: u32,
) -> rusqlite::Result<crate::curve::Served> {
    let tx = conn.unchecked_transaction()?;
    let counts: Vec<(String, u64)> = tx
        .prepare_cached(
            "SELECT name, COUNT(*) FROM metric_points WHERE sweep_id = ?1 AND trial = ?2 GROUP BY name",
        )?
        .query_map(params![sweep, trial as i64], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let total = counts.iter().map(|c| c.1).sum();
    let mut sampler = crate::curve::Sampler::new(counts, points);
    {
        let mut q = tx.prepare_cached(
            "SELECT step, name, value FROM metric_points WHERE sweep_id = ?1 AND trial = ?2 ORDER BY step, name",
        )?;
        let mut rows = q.query(params![sweep, trial as i64])?;
        while let Some(r) = rows.next()? {
            let name = r.get_ref(1)?.as_str().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into())
            })?;
            sampler.push(r.get::<_, i64>(0)? as u32, name, r.get(2)?);
        }
    }
    let (points, sampled) = sampler.finish();
    Ok(crate::curve::Served {
        points,
        total,
        sampled,
    })
}

/// One page of a trial's curve: every point after step `after` (of metric `name`, or of every
/// metric when empty), whole steps only, about `limit` of them (0: the most,
/// [`crate::curve::MAX_PAGE_POINTS`]); and the last step it holds when more may follow.
pub fn curve_page(
    conn: &Connection,
    sweep: &str,
    trial: u64,
    name: &str,
    after: u32,
    limit: u32,
) -> rusqlite::Result<(Vec<crate::curve::CurvePoint>, Option<u32>)> {
    let limit = match limit {
        0 => crate::curve::MAX_PAGE_POINTS,
        n => n.min(crate::curve::MAX_PAGE_POINTS),
    } as usize;
    let mut out: Vec<(u32, String, f64)> = Vec::new();
    let mut q = conn.prepare_cached(
        "SELECT step, name, value FROM metric_points WHERE sweep_id = ?1 AND trial = ?2 AND step > ?3 AND (?4 = '' OR name = ?4) ORDER BY step, name",
    )?;
    let mut rows = q.query(params![sweep, trial as i64, after, name])?;
    while let Some(r) = rows.next()? {
        let step = r.get::<_, i64>(0)? as u32;
        if let Some(last) = out
            .last()
            .map(|p| p.0)
            .filter(|&l| l != step && out.len() >= limit)
        {
            return Ok((out, Some(last)));
        }
        out.push((step, r.get(1)?, r.get(2)?));
    }
    Ok((out, None))
}

/// Trial `trial` of sweep `sweep`'s curve (sampled to about `points`), confusion matrix,
/// output and GPUs.
pub fn trial_files(
    conn: &Connection,
    sweep: &str,
    trial: u64,
    points: u32,
) -> rusqlite::Result<TrialFiles> {
    let curve = sampled_points(conn, sweep, trial, points)?;
    let (confusion, output, gpus) = conn
        .prepare_cached(
            "SELECT confusion, output, gpus FROM trials WHERE sweep_id = ?1 AND trial = ?2",
        )?
        .query_row(params![sweep, trial as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?
        .unwrap_or((None, None, None));
    Ok(TrialFiles {
        curve,
        confusion,
        output,
        gpus,
    })
}

/// Keeps trial `trial`'s model (replacing an earlier attempt's).
pub fn put_model(
    tx: &Connection,
    sweep: &str,
    trial: u64,
    card: &str,
    weights: &[u8],
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO models (sweep_id, trial, card, weights) VALUES (?1, ?2, ?3, ?4)",
        params![sweep, trial as i64, card, weights],
    )?;
    Ok(())
}

/// The folder of a trial's files that holds what its program logged (`wandb.Image`, `Table`,
/// `Html`): kept for every trial, where its other files are kept for the best only.
pub const MEDIA_PREFIX: &str = "media/";

/// Drops the models and program files of sweep `sweep` except those of the trials in `keep`
/// (and every trial's [`MEDIA_PREFIX`] files).
pub fn keep_models(tx: &Connection, sweep: &str, keep: &[u64]) -> rusqlite::Result<()> {
    let keep = serde_json::to_string(keep).expect("numbers serialize");
    tx.prepare_cached(
        "DELETE FROM models WHERE sweep_id = ?1 AND trial NOT IN (SELECT value FROM json_each(?2))",
    )?
    .execute(params![sweep, keep])?;
    tx.prepare_cached(
        "DELETE FROM program_files WHERE sweep_id = ?1 AND trial NOT IN (SELECT value FROM json_each(?2)) AND substr(path, 1, length(?3)) <> ?3",
    )?
    .execute(params![sweep, keep, MEDIA_PREFIX])?;
    Ok(())
}

/// Drops trial `trial`'s program files but its logged media ([`MEDIA_PREFIX`]).
pub fn drop_program_files_but_media(
    tx: &Connection,
    sweep: &str,
    trial: u64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "DELETE FROM program_files WHERE sweep_id = ?1 AND trial = ?2 AND substr(path, 1, length(?3)) <> ?3",
    )?
    .execute(params![sweep, trial as i64, MEDIA_PREFIX])?;
    Ok(())
}

/// A file a program handed back, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramFile {
    /// Relative, '/'-separated.
    pub path: String,
    /// Its length.
    pub bytes: u64,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
}

/// Keeps the files attempt `attempt` of trial `trial` handed back (`list` names them; `data`
/// holds their bytes one after another, as checked by `sweep_proto::files::split`), replacing
/// any an earlier attempt sent.
pub fn put_program_files(
    tx: &Connection,
    sweep: &str,
    trial: u64,
    attempt: u32,
    list: &[ProgramFile],
    data: &[u8],
) -> rusqlite::Result<()> {
    drop_program_files(tx, sweep, trial)?;
    let mut q = tx.prepare_cached(
        "INSERT INTO program_files (sweep_id, trial, path, attempt, bytes, sha256, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut at = 0usize;
    for f in list {
        let end = at + f.bytes as usize;
        q.execute(params![
            sweep,
            trial as i64,
            f.path,
            attempt,
            f.bytes as i64,
            f.sha256,
            &data[at..end]
        ])?;
        at = end;
    }
    Ok(())
}

/// Drops trial `trial`'s program files.
pub fn drop_program_files(tx: &Connection, sweep: &str, trial: u64) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM program_files WHERE sweep_id = ?1 AND trial = ?2")?
        .execute(params![sweep, trial as i64])?;
    Ok(())
}

/// The trials of sweep `sweep` that have kept program files.
pub fn program_file_trials(conn: &Connection, sweep: &str) -> rusqlite::Result<Vec<u64>> {
    conn.prepare_cached(
        "SELECT DISTINCT trial FROM program_files WHERE sweep_id = ?1 ORDER BY trial",
    )?
    .query_map(params![sweep], |r| Ok(r.get::<_, i64>(0)? as u64))?
    .collect()
}

/// Trial `trial`'s kept program files, in path order (without their bytes).
pub fn program_files(
    conn: &Connection,
    sweep: &str,
    trial: u64,
) -> rusqlite::Result<Vec<ProgramFile>> {
    conn.prepare_cached(
        "SELECT path, bytes, sha256 FROM program_files WHERE sweep_id = ?1 AND trial = ?2 ORDER BY path",
    )?
    .query_map(params![sweep, trial as i64], |r| {
        Ok(ProgramFile {
            path: r.get(0)?,
            bytes: r.get::<_, i64>(1)? as u64,
            sha256: r.get(2)?,
        })
    })?
    .collect()
}

/// The bytes of trial `trial`'s kept file `path`.
pub fn program_file(
    conn: &Connection,
    sweep: &str,
    trial: u64,
    path: &str,
) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached(
        "SELECT data FROM program_files WHERE sweep_id = ?1 AND trial = ?2 AND path = ?3",
    )?
    .query_row(params![sweep, trial as i64, path], |r| r.get(0))
    .optional()
}

/// The trials of sweep `sweep` that have a kept model.
pub fn model_trials(conn: &Connection, sweep: &str) -> rusqlite::Result<Vec<u64>> {
    conn.prepare_cached("SELECT trial FROM models WHERE sweep_id = ?1 ORDER BY trial")?
        .query_map(params![sweep], |r| Ok(r.get::<_, i64>(0)? as u64))?
        .collect()
}

/// Trial `trial`'s kept model: its card's text and its weights.
pub fn model(
    conn: &Connection,
    sweep: &str,
    trial: u64,
) -> rusqlite::Result<Option<(String, Vec<u8>)>> {
    conn.prepare_cached("SELECT card, weights FROM models WHERE sweep_id = ?1 AND trial = ?2")?
        .query_row(params![sweep, trial as i64], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
}

/// Forgets workers `ids`, unless one registered again at or after `horizon`.
pub fn delete_workers(tx: &Connection, ids: &[String], horizon: f64) -> rusqlite::Result<()> {
    let mut q = tx.prepare_cached("DELETE FROM workers WHERE id = ?1 AND registered_at < ?2")?;
    for id in ids {
        q.execute(params![id, horizon])?;
    }
    Ok(())
}

/// Records a worker's registration.
pub fn upsert_worker(tx: &Connection, w: &WorkerRow, at: f64) -> rusqlite::Result<()> {
    // NULL without GPUs (as rows written before the column).
    let gpus = (!w.gpus.is_empty())
        .then(|| serde_json::to_string(&w.gpus).unwrap_or_else(|_| "[]".into()));
    tx.execute(
        "INSERT OR REPLACE INTO workers (id, host, cores, slots, version, registered_at, gpus) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![w.id, w.host, w.cores, w.slots, w.version, at, gpus],
    )?;
    Ok(())
}

/// Whether a sweep id exists (used by tests and tools reading a store file).
pub fn sweep_exists(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    conn.query_row("SELECT 1 FROM sweeps WHERE id = ?1", [id], |_| Ok(()))
        .optional()
        .map(|o| o.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("sweep-store-{name}-{}.db", std::process::id()));
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
        }
        p
    }

    fn sweep_row(id: &str) -> SweepRow {
        SweepRow {
            id: id.into(),
            name: Some("n".into()),
            config: "{}".into(),
            spec: None,
            state: "running".into(),
            created_at: 1.0,
            updated_at: 1.0,
            next_trial: 1,
        }
    }

    #[tokio::test]
    async fn a_failed_write_rolls_back_its_batch_and_stops_writes_until_reload() {
        let p = temp("failstop");
        let kept_a;
        {
            let mut snap = Snapshot::default();
            let store = Store::open(&p, &mut snap).unwrap();
            assert!(snap.sweeps.is_empty());
            store
                .write(|tx| insert_sweep(tx, &sweep_row("s0")))
                .await
                .unwrap();
            // A failing job (duplicate key) between two good ones: the one after it is not
            // kept (in its batch, or refused after it); the one before only if the writer had
            // already committed it in an earlier batch.
            let a = store.submit(|tx| insert_sweep(tx, &sweep_row("s1")));
            let b = store.submit(|tx| insert_sweep(tx, &sweep_row("s0")));
            let c = store.submit(|tx| insert_points(tx, "s1", 1, 1, &[("loss".into(), 0.5)]));
            let (a, b, c) = (a.await, b.await, c.await);
            for r in [&b, &c] {
                let e = r.as_ref().unwrap_err().to_string();
                assert!(e.contains("UNIQUE constraint failed"), "{e}");
            }
            if let Err(e) = &a {
                assert!(e.to_string().contains("UNIQUE constraint failed"), "{e}");
            }
            kept_a = a.is_ok();
            assert!(store.health().borrow().problem().is_some());
            // Refused, not run, until the store has been read back.
            let d = store.write(|tx| insert_sweep(tx, &sweep_row("s2"))).await;
            assert!(matches!(d, Err(StoreError::Write { .. })), "{d:?}");
            let snap = store.reload(Snapshot::default()).await.unwrap();
            assert_eq!(snap.sweeps.len(), 1 + usize::from(kept_a));
            assert!(snap.points.is_empty());
            assert_eq!(*store.health().borrow(), Health::Ok);
            store
                .write(|tx| insert_sweep(tx, &sweep_row("s3")))
                .await
                .unwrap();
        }
        let mut snap = Snapshot::default();
        let _store = Store::open(&p, &mut snap).unwrap();
        let ids: Vec<&str> = snap.sweeps.iter().map(|s| s.id.as_str()).collect();
        if kept_a {
            assert_eq!(ids, ["s0", "s1", "s3"]);
        } else {
            assert_eq!(ids, ["s0", "s3"]);
        }
    }

    #[tokio::test]
    async fn a_curve_is_read_in_whole_step_pages_and_sampled_without_holding_it() {
        let p = temp("pages");
        let store = Store::open(&p, &mut Snapshot::default()).unwrap();
        store
            .write(|tx| {
                insert_sweep(tx, &sweep_row("s0"))?;
                for step in 1..=3000u32 {
                    let row: Vec<(String, f64)> = ["a", "b", "c"]
                        .iter()
                        .map(|n| (n.to_string(), f64::from(step)))
                        .collect();
                    insert_points(tx, "s0", 1, step, &row)?;
                }
                insert_points(tx, "s0", 2, 1, &[("a".into(), 1.0)])
            })
            .await
            .unwrap();
        let mut after = 0;
        let mut seen = Vec::new();
        loop {
            let (page, next) = store
                .read(move |c| curve_page(c, "s0", 1, "", after, 1000))
                .await
                .unwrap();
            // Whole steps only: a page ends where a step ends.
            assert_eq!(page.len() % 3, 0);
            assert!(page.len() <= 1002);
            seen.extend(page.into_iter().map(|p| (p.0, p.1)));
            match next {
                Some(n) => after = n,
                None => break,
            }
        }
        assert_eq!(seen.len(), 9000);
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order, none twice");
        let (one, next) = store
            .read(|c| curve_page(c, "s0", 1, "b", 2990, 0))
            .await
            .unwrap();
        assert_eq!((one.len(), next), (10, None));
        assert!(one.iter().all(|p| p.1 == "b"));
        let s = store
            .read(|c| sampled_points(c, "s0", 1, 300))
            .await
            .unwrap();
        assert_eq!((s.total, s.sampled), (9000, true));
        assert!(
            s.points.len() <= 300 && s.points.len() >= 290,
            "{}",
            s.points.len()
        );
        let s = store
            .read(|c| sampled_points(c, "s0", 2, 300))
            .await
            .unwrap();
        assert_eq!(
            (s.points, s.total, s.sampled),
            (vec![(1, "a".into(), 1.0)], 1, false)
        );
    }

    #[tokio::test]
    async fn a_full_database_is_a_clear_write_error() {
        let p = temp("full");
        let store = Store::open(&p, &mut Snapshot::default()).unwrap();
        store
            .write(|tx| insert_sweep(tx, &sweep_row("s0")))
            .await
            .unwrap();
        store.limit_growth(Some(0)).await;
        let big = "x".repeat(64 * 1024);
        let e = store
            .write(move |tx| {
                let mut r = sweep_row("s1");
                r.config = big;
                insert_sweep(tx, &r)
            })
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("database or disk is full"), "{e}");
        assert!(e.contains(&p.display().to_string()), "{e}");
    }

    #[test]
    fn a_second_open_is_refused_naming_the_holder() {
        let p = temp("twice");
        let _a = Store::open(&p, &mut Snapshot::default()).unwrap();
        let e = Store::open(&p, &mut Snapshot::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("in use by another coordinator pid"), "{e}");
        assert!(e.contains(&p.display().to_string()), "{e}");
    }

    #[tokio::test]
    async fn a_deleted_store_file_stops_writes_for_good() {
        let p = temp("deleted");
        let store = Store::open(&p, &mut Snapshot::default()).unwrap();
        std::fs::remove_file(&p).unwrap();
        let mut health = store.health();
        tokio::time::timeout(
            Duration::from_secs(30),
            health.wait_for(|h| matches!(h, Health::Lost(_))),
        )
        .await
        .expect("the deletion is seen within the watch period")
        .unwrap();
        let e = store.write(|tx| insert_sweep(tx, &sweep_row("s0"))).await;
        assert!(matches!(e, Err(StoreError::Lost { .. })), "{e:?}");
        assert!(matches!(
            store.reload(Snapshot::default()).await,
            Err(StoreError::Lost { .. })
        ));
    }
}
