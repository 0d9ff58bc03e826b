//! One SQLite database file: a single writer thread that group-commits, and
//! a few reader threads, used from async code without ever blocking a
//! runtime worker on a lock or an fsync.
//!
//! # Group commit
//! Every write is a job for the writer thread. The writer takes the first
//! job waiting, then every job queued behind it (at most [`MAX_GROUP`]),
//! runs them one after the other inside one `BEGIN IMMEDIATE` transaction,
//! each in its own savepoint, and commits once: one fsync for the group.
//! A job that fails is rolled back to its savepoint and only its caller
//! sees the error; a failed `COMMIT` fails every job of the group (none of
//! them is stored). There is no timer: a lone write starts at once and
//! pays nothing extra, and under load the group grows by itself with the
//! number of writers waiting during the previous fsync.
//!
//! Callers wait for their job's answer, which comes only after the group's
//! `COMMIT` returned: a write that answered `Ok` is as durable as the
//! database's `synchronous = FULL` makes it: synced to disk.
//!
//! # Back-pressure
//! The writer's queue is bounded ([`QUEUE`]): when it is full, writers wait
//! (asynchronously) for room instead of piling up work in memory.
//!
//! # Reads
//! Reads run on [`READERS`] reader threads, each with a connection of its
//! own (WAL mode: readers never block the writer nor each other), fed from
//! one bounded queue; they see only committed data. A fixed set of threads
//! rather than the runtime's blocking pool, which grew to a hundred threads
//! (and as many malloc arenas) under load.

use rusqlite::config::DbConfig;
use rusqlite::Connection;
use salestrack_core::ports::BackendError;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Most jobs committed together.
pub const MAX_GROUP: usize = 512;

/// Writes that may wait for the writer before callers are held back.
pub const QUEUE: usize = 4096;

/// Reader connections per database.
pub const READERS: usize = 4;

/// Runs once the group's `COMMIT` answered: hands the caller its result.
type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A write: runs inside the group's transaction (or not at all when there
/// is none: `None`), returns its completion.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Completion + Send>;

/// A read: runs on a reader thread's connection.
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

#[derive(Clone)]
pub struct Db {
    name: &'static str,
    writer: mpsc::Sender<Job>,
    readers: mpsc::Sender<ReadJob>,
    /// Transactions the writer committed (each write belongs to one).
    commits: Arc<AtomicU64>,
}

/// Opens a connection. Every embedded store syncs each commit
/// (`synchronous = FULL`): the bus and the event store promise durability,
/// and the read store holds what no rebuild gives back (command statuses:
/// a rejection leaves no event), behind consumer offsets that are
/// committed with `FULL` too, so an OS crash must not lose a projected row
/// whose offset was committed.
fn connect(name: &'static str, path: &Path) -> Result<Connection, BackendError> {
    let err = |e: rusqlite::Error| BackendError::context(name, path.display(), e);
    let conn = Connection::open(path).map_err(err)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
    )
    .map_err(err)?;
    // Plans that never depend on a bound value. Without the guarantee,
    // SQLite expires a cached statement whenever a parameter its plan
    // looked at is bound again (`LIMIT ?` is one) and compiles it anew on
    // the next step: the bus poll was recompiled on every poll, 36 % of
    // the runner's instructions under load (BENCHMARKS.md).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(err)?;
    Ok(conn)
}

impl Db {
    pub fn open(name: &'static str, path: &Path, schema: &str) -> Result<Db, BackendError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| BackendError::new(name, format!("{}: {e}", dir.display())))?;
        }
        let writer = connect(name, path)?;
        writer
            .execute_batch(schema)
            .map_err(|e| BackendError::new(name, format!("{}: {e}", path.display())))?;
        let (readers, read_jobs) = mpsc::channel::<ReadJob>(QUEUE);
        let read_jobs = Arc::new(Mutex::new(read_jobs));
        for n in 0..READERS {
            let conn = connect(name, path)?;
            let jobs = Arc::clone(&read_jobs);
            std::thread::Builder::new()
                .name(format!("sqlite-reader-{n}"))
                .spawn(move || read_loop(&conn, &jobs))
                .map_err(|e| BackendError::new(name, format!("reader thread: {e}")))?;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&commits);
        std::thread::Builder::new()
            .name(format!("sqlite-writer-{}", path.display()))
            .spawn(move || write_loop(name, writer, rx, &counted))
            .map_err(|e| BackendError::new(name, format!("writer thread: {e}")))?;
        Ok(Db {
            name,
            writer: tx,
            readers,
            commits,
        })
    }

    /// How many transactions the writer has committed so far: fewer than
    /// the writes when group commit shares them.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs the read `f` on one of the reader threads' connections.
    pub async fn read<R, F>(&self, f: F) -> Result<R, BackendError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, BackendError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: ReadJob = Box::new(move |c: &Connection| {
            let _ = reply.send(f(c));
        });
        let stopped = || BackendError::new(self.name, "the reader threads stopped");
        self.readers.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs the write `f` in the writer's next group transaction and answers
    /// once that group is committed. `f` must not begin or end transactions;
    /// an `Err` from it undoes its own changes only.
    pub async fn write<R, F>(&self, f: F) -> Result<R, BackendError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, BackendError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let name = self.name;
        let job: Job = Box::new(move |c: Option<&Connection>| {
            let result = match c {
                Some(c) => in_savepoint(name, c, f),
                None => Err(BackendError::new(name, "no transaction; nothing written")),
            };
            Box::new(move |commit: Result<(), String>| {
                let result = match (result, commit) {
                    (Ok(r), Ok(())) => Ok(r),
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(why)) => Err(BackendError::new(name, why)),
                };
                let _ = reply.send(result);
            })
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| BackendError::new(name, "the writer thread stopped"))?;
        answer
            .await
            .map_err(|_| BackendError::new(name, "the writer thread stopped"))?
    }

    /// Maps a SQLite error into this database's backend error.
    pub fn err(&self) -> impl Fn(rusqlite::Error) -> BackendError + Copy + Send + 'static {
        let name = self.name;
        move |e| BackendError::caused_by(name, e)
    }
}

/// Runs `f` in a savepoint of the open transaction: its changes are kept
/// when it answers `Ok`, undone when it answers `Err`. Savepoints nest, so a
/// write job may run several of them (one per stream of an `append_many`).
pub(crate) fn in_savepoint<R, E: From<BackendError>>(
    name: &'static str,
    c: &Connection,
    f: impl FnOnce(&Connection) -> Result<R, E>,
) -> Result<R, E> {
    let sql = |c: &Connection, statement: &str| {
        c.execute_batch(statement)
            .map_err(|e| BackendError::caused_by(name, e))
    };
    sql(c, "SAVEPOINT job")?;
    match f(c) {
        Ok(r) => {
            sql(c, "RELEASE job")?;
            Ok(r)
        }
        Err(e) => {
            sql(c, "ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

/// A reader thread: takes the next read job from the shared queue and
/// runs it on its own connection. Ends when every [`Db`] handle is gone.
fn read_loop(conn: &Connection, jobs: &Mutex<mpsc::Receiver<ReadJob>>) {
    loop {
        // The lock is held only while waiting for a job, not while running it.
        let job = match jobs.lock() {
            Ok(mut jobs) => jobs.blocking_recv(),
            Err(_) => None,
        };
        match job {
            Some(job) => job(conn),
            None => return,
        }
    }
}

/// The writer thread: one transaction and one commit per group of jobs.
/// Ends when every [`Db`] handle is gone.
fn write_loop(
    name: &'static str,
    conn: Connection,
    mut jobs: mpsc::Receiver<Job>,
    commits: &AtomicU64,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = jobs.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let size = group.len();
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let why = format!("could not begin a transaction: {e}");
            for job in group.drain(..) {
                // Nothing runs: every caller gets the error.
                job(None)(Err(why.clone()));
            }
            continue;
        }
        let completions: Vec<Completion> = group.drain(..).map(|job| job(Some(&conn))).collect();
        let commit = conn.execute_batch("COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            format!("commit failed, nothing of this write was stored: {e}")
        });
        commits.fetch_add(1, Ordering::Relaxed);
        metrics::histogram!("salestrack_embedded_group_commit_writes", "db" => name)
            .record(size as f64);
        for complete in completions {
            complete(commit.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{params, StatementStatus};

    #[test]
    fn binding_a_limit_again_does_not_recompile_the_statement(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let conn = connect("test", &dir.path().join("t.db"))?;
        conn.execute_batch(
            "CREATE TABLE t (topic TEXT, k INTEGER, PRIMARY KEY (topic, k));
             INSERT INTO t VALUES ('a', 1), ('a', 2), ('a', 3);",
        )?;
        let mut poll = conn
            .prepare_cached("SELECT k FROM t WHERE topic = ?1 AND k >= ?2 ORDER BY k LIMIT ?3")?;
        let mut seen = Vec::new();
        for (from, limit) in [(1, 1), (1, 2), (2, 5), (3, 1)] {
            let rows = poll
                .query_map(params!["a", from, limit], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            seen.push(rows);
        }
        assert_eq!(seen, [vec![1], vec![1, 2], vec![2, 3], vec![3]]);
        assert_eq!(poll.get_status(StatementStatus::RePrepare), 0);
        Ok(())
    }
}
