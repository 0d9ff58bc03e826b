//! The embedded key store: each user's data key in its own SQLite file,
//! apart from the stores whose values the keys seal (its backups are kept
//! apart too: see README's *Personal data*).
//!
//! Destroying a key must leave no copy of it in the file: the connection
//! runs with `secure_delete` (SQLite overwrites a deleted row's bytes with
//! zeros), and a destroy checkpoints the write-ahead log into the database
//! and truncates it, so neither the log's frames nor the database's old
//! page keep the secret. What the file system does with the blocks freed
//! by the truncation is beyond SQLite: an encrypted file system covers it.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use salestrack_core::ids::KeyId;
use salestrack_core::personal::DataKey;
use salestrack_core::ports::{BackendError, KeyStore};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS data_keys (
    key_id TEXT PRIMARY KEY, user_id TEXT NOT NULL UNIQUE, secret BLOB NOT NULL
) WITHOUT ROWID;
";

const NAME: &str = "embedded key store";

/// One connection: keys are read rarely (handlers cache nothing yet, and
/// each read is one indexed row) and written once per user.
#[derive(Clone)]
pub struct EmbeddedKeyStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

fn err(e: rusqlite::Error) -> BackendError {
    BackendError::caused_by(NAME, e)
}

impl EmbeddedKeyStore {
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| BackendError::new(NAME, format!("{}: {e}", dir.display())))?;
        }
        let conn =
            Connection::open(path).map_err(|e| BackendError::context(NAME, path.display(), e))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; \
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(EmbeddedKeyStore {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    /// The file the keys are kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, BackendError> + Send + 'static,
    ) -> Result<R, BackendError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| BackendError::new(NAME, "a key store call panicked"))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| BackendError::new(NAME, format!("key store task: {e}")))?
    }
}

fn key_of(id: &str, secret: &[u8]) -> Result<DataKey, BackendError> {
    let id =
        Uuid::try_parse(id).map_err(|e| BackendError::new(NAME, format!("key id {id}: {e}")))?;
    let secret: [u8; 32] = secret
        .try_into()
        .map_err(|_| BackendError::new(NAME, format!("key {id}: not 32 bytes")))?;
    Ok(DataKey::new(KeyId(id), secret))
}

/// 32 bytes from the operating system's random source.
pub(crate) fn new_secret() -> Result<[u8; 32], BackendError> {
    let mut secret = [0; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| BackendError::new(NAME, format!("random source: {e}")))?;
    Ok(secret)
}

#[async_trait]
impl KeyStore for EmbeddedKeyStore {
    async fn sealing_key(&self, user_id: &str) -> Result<DataKey, BackendError> {
        let user = user_id.to_owned();
        self.with(move |c| {
            // Immediate: a second process creating the same user's key waits
            // here and then finds this one.
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            let live: Option<(String, Vec<u8>)> = tx
                .query_row(
                    "SELECT key_id, secret FROM data_keys WHERE user_id = ?1",
                    params![user],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(err)?;
            let key = match live {
                Some((id, secret)) => key_of(&id, &secret)?,
                None => {
                    let key = DataKey::new(KeyId(Uuid::new_v4()), new_secret()?);
                    tx.execute(
                        "INSERT INTO data_keys (key_id, user_id, secret) VALUES (?1, ?2, ?3)",
                        params![key.id.to_string(), user, key.secret().as_slice()],
                    )
                    .map_err(err)?;
                    key
                }
            };
            tx.commit().map_err(err)?;
            Ok(key)
        })
        .await
    }

    async fn key(&self, id: KeyId) -> Result<Option<DataKey>, BackendError> {
        self.with(move |c| {
            let secret: Option<Vec<u8>> = c
                .query_row(
                    "SELECT secret FROM data_keys WHERE key_id = ?1",
                    params![id.to_string()],
                    |row| row.get(0),
                )
                .optional()
                .map_err(err)?;
            secret
                .map(|secret| key_of(&id.to_string(), &secret))
                .transpose()
        })
        .await
    }

    async fn destroy(&self, user_id: &str) -> Result<Vec<KeyId>, BackendError> {
        let user = user_id.to_owned();
        self.with(move |c| {
            let ids: Vec<String> = {
                let mut statement = c
                    .prepare("DELETE FROM data_keys WHERE user_id = ?1 RETURNING key_id")
                    .map_err(err)?;
                let rows = statement
                    .query_map(params![user], |row| row.get(0))
                    .map_err(err)?;
                rows.collect::<Result<_, _>>().map_err(err)?
            };
            // The deleted row's page, zeroed, into the database file; the
            // log, which held the row as written, emptied.
            let (busy, _, _): (i64, i64, i64) = c
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .map_err(err)?;
            if busy != 0 {
                return Err(BackendError::new(
                    NAME,
                    "the keys were deleted but the write-ahead log could not be emptied \
                     (another connection reads it); destroying again retries",
                ));
            }
            ids.iter()
                .map(|id| {
                    Uuid::try_parse(id)
                        .map(KeyId)
                        .map_err(|e| BackendError::new(NAME, format!("key id {id}: {e}")))
                })
                .collect()
        })
        .await
    }

    async fn ping(&self) -> Result<(), BackendError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(err))
            .await
    }
}
