//! The key store on Cassandra: the `data_keys_by_id` and `data_keys`
//! tables of `infra/cassandra/tables.cql`.
//!
//! - A new key is written by id first, then claimed for its user with
//!   `INSERT ... IF NOT EXISTS` on the user's pointer: whoever loses the
//!   race deletes the key it wrote and takes the winner's, so concurrent
//!   first orders agree on one key, and no pointer ever names a key not
//!   written yet.
//! - A destroy deletes the key, then the pointer (`IF key_id = ?`). A
//!   pointer whose key is gone (a destroy cut short) is finished by the
//!   next call that meets it, destroy or sealing alike.
//! - Pointers are read at SERIAL consistency (they are written by Paxos);
//!   keys at the configured consistency. Every idempotent statement is
//!   tried again for up to the request timeout (`crate::retried`): a node
//!   just killed must not refuse orders while the others answer.

use crate::{applied, backend, driver, retried, CassandraError};
use async_trait::async_trait;
use salestrack_core::ids::KeyId;
use salestrack_core::personal::DataKey;
use salestrack_core::ports::{BackendError, KeyStore};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Pointer races a call settles before it gives up: each lost one means
/// another writer changed the user's key in between.
const ROUNDS: usize = 8;

#[derive(Clone)]
pub struct CassandraKeyStore {
    session: Arc<Session>,
    write_key: PreparedStatement,
    read_key: PreparedStatement,
    delete_key: PreparedStatement,
    claim: PreparedStatement,
    /// At SERIAL consistency: sees every claim a conditional write settled.
    pointer: PreparedStatement,
    /// The pointer and the key at consistency ONE: how an order finds its
    /// user's key while the cluster has no quorum (see `sealing_key`).
    pointer_one: PreparedStatement,
    read_key_one: PreparedStatement,
    release: PreparedStatement,
    /// How long an idempotent statement is tried again for.
    within: Duration,
}

impl CassandraKeyStore {
    pub(crate) async fn prepare(
        session: Arc<Session>,
        keyspace: &str,
        serial: SerialConsistency,
        within: Duration,
    ) -> Result<CassandraKeyStore, CassandraError> {
        let prepare = |cql: String, idempotent: bool| {
            let session = Arc::clone(&session);
            async move {
                let mut statement = session
                    .prepare(cql.as_str())
                    .await
                    .map_err(|e| CassandraError::Schema(format!("preparing {cql}: {e}")))?;
                statement.set_is_idempotent(idempotent);
                statement.set_serial_consistency(Some(serial));
                Ok::<_, CassandraError>(statement)
            }
        };
        let write_key = prepare(
            format!(
                "INSERT INTO {keyspace}.data_keys_by_id (key_id, user_id, secret) VALUES (?, ?, ?)"
            ),
            true,
        )
        .await?;
        let read_key = prepare(
            format!("SELECT secret FROM {keyspace}.data_keys_by_id WHERE key_id = ?"),
            true,
        )
        .await?;
        let delete_key = prepare(
            format!("DELETE FROM {keyspace}.data_keys_by_id WHERE key_id = ?"),
            true,
        )
        .await?;
        let claim = prepare(
            format!(
                "INSERT INTO {keyspace}.data_keys (user_id, key_id) VALUES (?, ?) IF NOT EXISTS"
            ),
            false,
        )
        .await?;
        let mut pointer = prepare(
            format!("SELECT key_id FROM {keyspace}.data_keys WHERE user_id = ?"),
            true,
        )
        .await?;
        pointer.set_consistency(match serial {
            SerialConsistency::Serial => Consistency::Serial,
            SerialConsistency::LocalSerial => Consistency::LocalSerial,
        });
        let mut pointer_one = pointer.clone();
        pointer_one.set_consistency(Consistency::One);
        let mut read_key_one = read_key.clone();
        read_key_one.set_consistency(Consistency::One);
        let release = prepare(
            format!("DELETE FROM {keyspace}.data_keys WHERE user_id = ? IF key_id = ?"),
            false,
        )
        .await?;
        Ok(CassandraKeyStore {
            session,
            write_key,
            read_key,
            delete_key,
            claim,
            pointer,
            pointer_one,
            read_key_one,
            release,
            within,
        })
    }

    /// The key the user's pointer names, if any.
    async fn pointer(&self, user_id: &str) -> Result<Option<KeyId>, BackendError> {
        retried(self.within, "reading a data key's pointer", || {
            self.pointer_with(&self.pointer, user_id)
        })
        .await
    }

    /// The pointer as `statement` (at its consistency) reads it.
    async fn pointer_with(
        &self,
        statement: &PreparedStatement,
        user_id: &str,
    ) -> Result<Option<KeyId>, BackendError> {
        let rows = self
            .session
            .execute_unpaged(statement, (user_id,))
            .await
            .map_err(driver)?
            .into_rows_result()
            .map_err(driver)?;
        Ok(rows
            .maybe_first_row::<(Uuid,)>()
            .map_err(driver)?
            .map(|(id,)| KeyId(id)))
    }

    async fn delete_key(&self, id: KeyId) -> Result<(), BackendError> {
        retried(self.within, "deleting a data key", || async {
            self.session
                .execute_unpaged(&self.delete_key, (id.0,))
                .await
                .map_err(driver)
        })
        .await?;
        Ok(())
    }

    /// The key as `statement` (at its consistency) reads it.
    async fn key_with(
        &self,
        statement: &PreparedStatement,
        id: KeyId,
    ) -> Result<Option<DataKey>, BackendError> {
        let rows = self
            .session
            .execute_unpaged(statement, (id.0,))
            .await
            .map_err(driver)?
            .into_rows_result()
            .map_err(driver)?;
        rows.maybe_first_row::<(Vec<u8>,)>()
            .map_err(driver)?
            .map(|(secret,)| {
                let secret: [u8; 32] = secret
                    .try_into()
                    .map_err(|_| backend(format!("data key {id}: not 32 bytes")))?;
                Ok(DataKey::new(id, secret))
            })
            .transpose()
    }

    /// Deletes `id`, then the user's pointer to it.
    async fn destroy_key(&self, user_id: &str, id: KeyId) -> Result<(), BackendError> {
        self.delete_key(id).await?;
        // Not applied: another call already released it.
        self.session
            .execute_unpaged(&self.release, (user_id, id.0))
            .await
            .map_err(driver)?;
        Ok(())
    }
}

impl CassandraKeyStore {
    /// The user's key as any one replica holds it, if one answers. It may
    /// be stale: a key destroyed a moment ago (what it seals is then
    /// erased with it, never readable), or none where a claim has just
    /// landed (the SERIAL path below then finds it). Never used to open.
    async fn sealing_key_at_one(&self, user_id: &str) -> Option<DataKey> {
        let id = self.pointer_with(&self.pointer_one, user_id).await.ok()??;
        self.key_with(&self.read_key_one, id).await.ok()?
    }
}

#[async_trait]
impl KeyStore for CassandraKeyStore {
    /// An order must be accepted while the bus is up, even with most of
    /// the cluster down: a user who has a key gets it from any replica
    /// first. Only a user without one needs the quorum that claims a new
    /// key.
    async fn sealing_key(&self, user_id: &str) -> Result<DataKey, BackendError> {
        if let Some(key) = self.sealing_key_at_one(user_id).await {
            return Ok(key);
        }
        for _ in 0..ROUNDS {
            if let Some(id) = self.pointer(user_id).await? {
                match self.key(id).await? {
                    Some(key) => return Ok(key),
                    // A destroy was cut short between its two deletes.
                    None => {
                        self.destroy_key(user_id, id).await?;
                        continue;
                    }
                }
            }
            let key = DataKey::new(KeyId(Uuid::new_v4()), new_secret()?);
            retried(self.within, "writing a data key", || async {
                self.session
                    .execute_unpaged(
                        &self.write_key,
                        (key.id.0, user_id, key.secret().as_slice()),
                    )
                    .await
                    .map_err(driver)
            })
            .await?;
            let claimed = match self
                .session
                .execute_unpaged(&self.claim, (user_id, key.id.0))
                .await
            {
                Ok(answer) => applied(answer).map_err(backend)?,
                // Whether the claim landed, the pointer read at SERIAL
                // settles: ours, or another's.
                Err(e) => {
                    tracing::warn!(error = %e, "claiming a data key failed without an answer; settled by a serial read");
                    self.pointer(user_id).await? == Some(key.id)
                }
            };
            if claimed {
                return Ok(key);
            }
            self.delete_key(key.id).await?;
        }
        Err(backend(format!(
            "the data key of a user changed {ROUNDS} times while it was being read"
        )))
    }

    async fn key(&self, id: KeyId) -> Result<Option<DataKey>, BackendError> {
        retried(self.within, "reading a data key", || {
            self.key_with(&self.read_key, id)
        })
        .await
    }

    async fn destroy(&self, user_id: &str) -> Result<Vec<KeyId>, BackendError> {
        let mut destroyed = Vec::new();
        for _ in 0..ROUNDS {
            let Some(id) = self.pointer(user_id).await? else {
                return Ok(destroyed);
            };
            // A pointer whose key is already gone was destroyed before,
            // by a call cut short: finished, not counted again.
            if self.key(id).await?.is_some() {
                destroyed.push(id);
            }
            self.destroy_key(user_id, id).await?;
        }
        Err(backend(format!(
            "the data key of a user changed {ROUNDS} times while it was being destroyed"
        )))
    }

    async fn ping(&self) -> Result<(), BackendError> {
        // Once: readiness wants the answer of now.
        self.key_with(&self.read_key, KeyId(Uuid::nil()))
            .await
            .map(|_| ())
    }
}

/// 32 bytes from the operating system's random source.
fn new_secret() -> Result<[u8; 32], BackendError> {
    let mut secret = [0; 32];
    getrandom::fill(&mut secret).map_err(|e| backend(format!("random source: {e}")))?;
    Ok(secret)
}
