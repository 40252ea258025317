//! Durable state in SQLite (WAL): sweeps, trials, metric points and workers.
//!
//! One writer thread owns the connection. Callers send it closures; it runs every closure that
//! is waiting in one transaction (group commit, each closure in its own savepoint so one
//! failure does not undo the others), commits, and only then answers each caller. A reply that
//! depends on a state change is therefore sent after that change is on disk, and the async
//! runtime never blocks on disk. State is read once, at startup ([`Store::open`]); after that
//! the engine serves reads from memory.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::oneshot;

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused an operation.
    #[error("store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
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

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[r#"
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
"#];

type Done = Box<dyn FnOnce(bool) + Send>;
type Job = Box<dyn FnOnce(&mut Transaction<'_>) -> Done + Send>;

/// Handle to the writer thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    /// Jobs for the writer thread.
    tx: mpsc::Sender<Job>,
    /// The database file, for messages.
    path: String,
}

/// A sweep row as stored.
#[derive(Debug, Clone)]
pub struct SweepRow {
    /// Sweep id.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// The config as JSON.
    pub config: String,
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
}

/// Everything in the store, read at startup.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every sweep.
    pub sweeps: Vec<SweepRow>,
    /// Every trial.
    pub trials: Vec<TrialRow>,
    /// Every metric point: (sweep, trial, step, name, value).
    pub points: Vec<(String, u64, u32, String, f64)>,
}

fn sql(path: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_string(),
        source,
    }
}

impl Store {
    /// Opens (creating if needed) the database, migrates it, reads it, and starts the writer.
    pub fn open(path: &Path) -> Result<(Store, Snapshot), StoreError> {
        let p = path.display().to_string();
        let mut conn = Connection::open(path).map_err(sql(&p))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
        )
        .map_err(sql(&p))?;
        migrate(&mut conn, &p)?;
        let snap = read_all(&conn).map_err(sql(&p))?;
        let (tx, rx) = mpsc::channel::<Job>();
        let thread_path = p.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer(conn, rx, thread_path))
            .map_err(|e| StoreError::Sqlite {
                path: p.clone(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        Ok((Store { tx, path: p }, snap))
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
    /// committed result.
    pub fn submit<R, F>(
        &self,
        f: F,
    ) -> impl std::future::Future<Output = Result<R, StoreError>> + Send + 'static
    where
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (otx, orx) = oneshot::channel::<Result<R, StoreError>>();
        let path = self.path.clone();
        let job: Job = Box::new(move |tx: &mut Transaction<'_>| {
            let res = match tx.savepoint() {
                Ok(mut sp) => {
                    let r = f(&sp);
                    match r {
                        Ok(v) => sp.commit().map(|()| v),
                        Err(e) => {
                            let _ = sp.rollback();
                            Err(e)
                        }
                    }
                }
                Err(e) => Err(e),
            };
            Box::new(move |committed: bool| {
                let out = match res {
                    Ok(v) if committed => Ok(v),
                    Ok(_) => Err(StoreError::Closed),
                    Err(source) => Err(StoreError::Sqlite { path, source }),
                };
                let _ = otx.send(out);
            })
        });
        let sent = self.tx.send(job).is_ok();
        async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            orx.await.unwrap_or(Err(StoreError::Closed))
        }
    }
}

fn writer(mut conn: Connection, rx: mpsc::Receiver<Job>, path: String) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < 1024 {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut tx = match conn.transaction() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(store = %path, error = %e, "cannot begin a transaction");
                continue;
            }
        };
        let done: Vec<Done> = jobs.into_iter().map(|j| j(&mut tx)).collect();
        let committed = match tx.commit() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(store = %path, error = %e, "commit failed");
                false
            }
        };
        for d in done {
            d(committed);
        }
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

fn read_all(conn: &Connection) -> rusqlite::Result<Snapshot> {
    let mut s = Snapshot::default();
    let mut q = conn.prepare("SELECT id, name, config, state, created_at, updated_at, next_trial FROM sweeps ORDER BY created_at, id")?;
    s.sweeps = q
        .query_map([], |r| {
            Ok(SweepRow {
                id: r.get(0)?,
                name: r.get(1)?,
                config: r.get(2)?,
                state: r.get(3)?,
                created_at: r.get(4)?,
                updated_at: r.get(5)?,
                next_trial: r.get::<_, i64>(6)? as u64,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut q = conn.prepare(
        "SELECT sweep_id, trial, params, state, attempt, completed_attempt, lease_id, worker, started_at, ended_at, duration, metrics, confusion, error FROM trials ORDER BY sweep_id, trial",
    )?;
    s.trials = q
        .query_map([], |r| {
            Ok(TrialRow {
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
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut q = conn.prepare("SELECT sweep_id, trial, step, name, value FROM metric_points ORDER BY sweep_id, trial, step, name")?;
    s.points = q
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u32,
                r.get(3)?,
                r.get(4)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(s)
}

/// Inserts a new sweep.
pub fn insert_sweep(tx: &Connection, s: &SweepRow) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO sweeps (id, name, config, state, created_at, updated_at, next_trial) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![s.id, s.name, s.config, s.state, s.created_at, s.updated_at, s.next_trial as i64],
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
    tx.execute(
        "UPDATE sweeps SET state = ?2, next_trial = ?3, updated_at = ?4 WHERE id = ?1",
        params![id, state, next_trial as i64, updated_at],
    )?;
    Ok(())
}

/// Inserts or replaces a trial row.
pub fn upsert_trial(tx: &Connection, t: &TrialRow) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO trials (sweep_id, trial, params, state, attempt, completed_attempt, lease_id, worker, started_at, ended_at, duration, metrics, confusion, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
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
            t.error
        ],
    )?;
    Ok(())
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

/// Records a worker's registration.
pub fn upsert_worker(
    tx: &Connection,
    id: &str,
    host: &str,
    cores: u32,
    slots: u32,
    version: &str,
    at: f64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO workers (id, host, cores, slots, version, registered_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id, host, cores, slots, version, at],
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

    #[tokio::test]
    async fn writes_survive_reopen_and_failures_are_isolated() {
        let p = temp("reopen");
        {
            let (store, snap) = Store::open(&p).unwrap();
            assert!(snap.sweeps.is_empty());
            let row = SweepRow {
                id: "s1".into(),
                name: Some("n".into()),
                config: "{}".into(),
                state: "running".into(),
                created_at: 1.0,
                updated_at: 1.0,
                next_trial: 1,
            };
            let r2 = row.clone();
            // A failing job (duplicate key) queued between two good ones only fails itself.
            let a = store.submit(move |tx| insert_sweep(tx, &row));
            let b = store.submit(move |tx| insert_sweep(tx, &r2));
            let c = store.submit(|tx| insert_points(tx, "s1", 1, 1, &[("loss".into(), 0.5)]));
            assert!(a.await.is_ok());
            assert!(b.await.is_err());
            assert!(c.await.is_ok());
        }
        let (_store, snap) = Store::open(&p).unwrap();
        assert_eq!(snap.sweeps.len(), 1);
        assert_eq!(
            snap.points,
            vec![("s1".to_string(), 1, 1, "loss".to_string(), 0.5)]
        );
    }
}
