//! The payment ledger on Cassandra: the `payments` table of
//! `infra/cassandra/tables.cql`, one row per checkout. A charge is a
//! lightweight transaction (`INSERT ... IF NOT EXISTS`): whoever loses the
//! race, or retries a write that landed, reads the charge that won at
//! SERIAL consistency instead. A refund is `UPDATE ... IF refunded_at =
//! null` on a row read first, so the first refund's time stays.

use crate::{applied, backend, cql_version, driver, CassandraError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use salestrack_core::ids::CartId;
use salestrack_core::ports::{BackendError, Charge, PaymentLedger};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::CqlTimestamp;
use std::sync::Arc;

#[derive(Clone)]
pub struct CassandraPaymentLedger {
    session: Arc<Session>,
    insert: PreparedStatement,
    /// At SERIAL consistency: sees every charge a conditional write settled.
    read: PreparedStatement,
    read_cart: PreparedStatement,
    refund: PreparedStatement,
}

impl CassandraPaymentLedger {
    pub(crate) async fn prepare(
        session: Arc<Session>,
        keyspace: &str,
        serial: SerialConsistency,
    ) -> Result<CassandraPaymentLedger, CassandraError> {
        let prepare = |cql: String| {
            let session = Arc::clone(&session);
            async move {
                session
                    .prepare(cql.as_str())
                    .await
                    .map_err(|e| CassandraError::Schema(format!("preparing {cql}: {e}")))
            }
        };
        let mut insert = prepare(format!(
            "INSERT INTO {keyspace}.payments (cart_id, checkout, charge) VALUES (?, ?, ?) IF NOT EXISTS"
        ))
        .await?;
        // A retry of a write that landed would answer "not applied": the
        // caller then reads what is stored, which is the same charge.
        insert.set_serial_consistency(Some(serial));
        let mut read = prepare(format!(
            "SELECT charge, refunded_at FROM {keyspace}.payments WHERE cart_id = ? AND checkout = ?"
        ))
        .await?;
        read.set_is_idempotent(true);
        read.set_consistency(match serial {
            SerialConsistency::Serial => Consistency::Serial,
            SerialConsistency::LocalSerial => Consistency::LocalSerial,
        });
        let mut read_cart = prepare(format!(
            "SELECT charge, refunded_at FROM {keyspace}.payments WHERE cart_id = ?"
        ))
        .await?;
        read_cart.set_is_idempotent(true);
        let mut refund = prepare(format!(
            "UPDATE {keyspace}.payments SET refunded_at = ? WHERE cart_id = ? AND checkout = ? \
             IF refunded_at = null"
        ))
        .await?;
        refund.set_serial_consistency(Some(serial));
        Ok(CassandraPaymentLedger {
            session,
            insert,
            read,
            read_cart,
            refund,
        })
    }

    async fn stored(&self, cart_id: CartId, checkout: u64) -> Result<Option<Charge>, BackendError> {
        let rows = self
            .session
            .execute_unpaged(&self.read, (cart_id.0, cql_version(checkout)))
            .await
            .map_err(driver)?
            .into_rows_result()
            .map_err(driver)?;
        rows.maybe_first_row::<(Vec<u8>, Option<CqlTimestamp>)>()
            .map_err(driver)?
            .map(charge)
            .transpose()
    }
}

/// The charge of a row: the stored JSON, with the refund column's time.
fn charge((json, refunded_at): (Vec<u8>, Option<CqlTimestamp>)) -> Result<Charge, BackendError> {
    let mut charge: Charge =
        serde_json::from_slice(&json).map_err(|e| backend(format!("stored charge: {e}")))?;
    charge.refunded_at = refunded_at.and_then(|t| DateTime::from_timestamp_millis(t.0));
    Ok(charge)
}

#[async_trait]
impl PaymentLedger for CassandraPaymentLedger {
    async fn charge_once(&self, charge: &Charge) -> Result<Charge, BackendError> {
        let json = serde_json::to_vec(&Charge {
            refunded_at: None,
            ..charge.clone()
        })
        .map_err(driver)?;
        let answer = self
            .session
            .execute_unpaged(
                &self.insert,
                (charge.cart_id.0, cql_version(charge.checkout), json),
            )
            .await
            .map_err(driver)?;
        if applied(answer).map_err(backend)? {
            return Ok(Charge {
                refunded_at: None,
                ..charge.clone()
            });
        }
        self.stored(charge.cart_id, charge.checkout)
            .await?
            .ok_or_else(|| backend("a charge refused as present is not there"))
    }

    async fn refund(
        &self,
        cart_id: CartId,
        checkout: u64,
        at: DateTime<Utc>,
    ) -> Result<Option<Charge>, BackendError> {
        let Some(charge) = self.stored(cart_id, checkout).await? else {
            return Ok(None);
        };
        if charge.refunded_at.is_some() {
            return Ok(Some(charge));
        }
        self.session
            .execute_unpaged(
                &self.refund,
                (
                    CqlTimestamp(at.timestamp_millis()),
                    cart_id.0,
                    cql_version(checkout),
                ),
            )
            .await
            .map_err(driver)?;
        // Applied or not, the stored time is the first refund's.
        self.stored(cart_id, checkout).await
    }

    async fn charges(&self, cart_id: CartId) -> Result<Vec<Charge>, BackendError> {
        let rows = self
            .session
            .execute_unpaged(&self.read_cart, (cart_id.0,))
            .await
            .map_err(driver)?
            .into_rows_result()
            .map_err(driver)?;
        rows.rows::<(Vec<u8>, Option<CqlTimestamp>)>()
            .map_err(driver)?
            .map(|row| row.map_err(driver).and_then(charge))
            .collect()
    }

    async fn ping(&self) -> Result<(), BackendError> {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", &[])
            .await
            .map(drop)
            .map_err(driver)
    }
}
