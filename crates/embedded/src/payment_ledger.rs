//! The embedded payment ledger: one SQLite row per checkout, primary key
//! `(cart_id, checkout)`, so a second charge of the same checkout cannot be
//! written. Synced like the event store: a charge is money.

use crate::sqlite::Db;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use salestrack_core::ids::CartId;
use salestrack_core::ports::{BackendError, Charge, PaymentLedger};
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS charges (
    cart_id TEXT NOT NULL, checkout INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (cart_id, checkout)
) WITHOUT ROWID;
";

const NAME: &str = "embedded payment ledger";

#[derive(Clone)]
pub struct EmbeddedPaymentLedger {
    db: Db,
}

impl EmbeddedPaymentLedger {
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        Ok(EmbeddedPaymentLedger {
            db: Db::open(NAME, path, SCHEMA)?,
        })
    }
}

fn decode(doc: &str) -> Result<Charge, BackendError> {
    serde_json::from_str(doc).map_err(|e| BackendError::new(NAME, format!("stored charge: {e}")))
}

fn encode(charge: &Charge) -> Result<String, BackendError> {
    serde_json::to_string(charge).map_err(|e| BackendError::new(NAME, e))
}

fn checkout(version: u64) -> Result<i64, BackendError> {
    i64::try_from(version).map_err(|_| BackendError::new(NAME, "checkout version out of range"))
}

#[async_trait]
impl PaymentLedger for EmbeddedPaymentLedger {
    async fn charge_once(&self, charge: &Charge) -> Result<Charge, BackendError> {
        let (cart_id, version, doc) = (
            charge.cart_id.to_string(),
            checkout(charge.checkout)?,
            encode(charge)?,
        );
        let err = self.db.err();
        let stored: String = self
            .db
            .write(move |c| {
                c.execute(
                    "INSERT INTO charges (cart_id, checkout, doc) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (cart_id, checkout) DO NOTHING",
                    params![cart_id, version, doc],
                )
                .map_err(err)?;
                c.query_row(
                    "SELECT doc FROM charges WHERE cart_id = ?1 AND checkout = ?2",
                    params![cart_id, version],
                    |row| row.get(0),
                )
                .map_err(err)
            })
            .await?;
        decode(&stored)
    }

    async fn refund(
        &self,
        cart_id: CartId,
        version: u64,
        at: DateTime<Utc>,
    ) -> Result<Option<Charge>, BackendError> {
        let (key, version) = (cart_id.to_string(), checkout(version)?);
        let err = self.db.err();
        self.db
            .write(move |c| {
                let stored: Option<String> = c
                    .query_row(
                        "SELECT doc FROM charges WHERE cart_id = ?1 AND checkout = ?2",
                        params![key, version],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(err)?;
                let Some(mut charge) = stored.as_deref().map(decode).transpose()? else {
                    return Ok(None);
                };
                if charge.refunded_at.is_none() {
                    charge.refunded_at = Some(at);
                    c.execute(
                        "UPDATE charges SET doc = ?3 WHERE cart_id = ?1 AND checkout = ?2",
                        params![key, version, encode(&charge)?],
                    )
                    .map_err(err)?;
                }
                Ok(Some(charge))
            })
            .await
    }

    async fn charges(&self, cart_id: CartId) -> Result<Vec<Charge>, BackendError> {
        let key = cart_id.to_string();
        let err = self.db.err();
        let docs: Vec<String> = self
            .db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached("SELECT doc FROM charges WHERE cart_id = ?1 ORDER BY checkout")
                    .map_err(err)?;
                let rows = stmt
                    .query_map(params![key], |row| row.get(0))
                    .map_err(err)?;
                rows.collect::<Result<_, _>>().map_err(err)
            })
            .await?;
        docs.iter().map(|d| decode(d)).collect()
    }

    async fn ping(&self) -> Result<(), BackendError> {
        let err = self.db.err();
        self.db
            .read(move |c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(err))
            .await
    }
}
