//! One SQLite database file behind a mutex, used from async code through
//! `spawn_blocking` so a slow fsync never stalls the runtime.

use rusqlite::Connection;
use salestrack_core::ports::BackendError;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// How hard a database syncs: the bus and the event store promise durability
/// (`Full`); the read store can always be rebuilt (`Normal`).
#[derive(Debug, Clone, Copy)]
pub enum Durability {
    Full,
    Normal,
}

#[derive(Clone)]
pub struct Db {
    name: &'static str,
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    pub fn open(
        name: &'static str,
        path: &Path,
        durability: Durability,
        schema: &str,
    ) -> Result<Db, BackendError> {
        let err = |e: rusqlite::Error| BackendError::new(name, format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| BackendError::new(name, format!("{}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(err)?;
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;"
        ))
        .map_err(err)?;
        conn.execute_batch(schema).map_err(err)?;
        Ok(Db {
            name,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<R, F>(&self, f: F) -> Result<R, BackendError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, BackendError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let name = self.name;
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| BackendError::new(name, "connection poisoned by an earlier panic"))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| BackendError::new(name, e))?
    }

    /// Maps a SQLite error into this database's backend error.
    pub fn err(&self) -> impl Fn(rusqlite::Error) -> BackendError + Copy + Send + 'static {
        let name = self.name;
        move |e| BackendError::new(name, e)
    }
}
