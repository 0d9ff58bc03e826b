//! The embedded read store: one SQLite table per read model, the document as
//! JSON beside the columns that filters and sorts need. Upserts are guarded by
//! version in SQL (`... WHERE excluded.version > version`).

use crate::sqlite::Db;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, OptionalExtension};
use rust_decimal::Decimal;
use salestrack_core::ids::{CartId, CommandId};
use salestrack_core::money::display_sum;
use salestrack_core::ports::{BackendError, DueCheckout, ReadDocument, ReadStore, Reader, Upsert};
use salestrack_core::read_model::{CartDetail, CartSummary, LineStatus, SalesLine};
use salestrack_core::search::{CartPage, CartSearch, SalesBucket, SalesReportQuery};
use salestrack_core::wire::Outcome;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cart_detail (
    cart_id TEXT PRIMARY KEY, version INTEGER NOT NULL, doc TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cart_summary (
    cart_id TEXT PRIMARY KEY, version INTEGER NOT NULL, user_id TEXT NOT NULL,
    created_at_micros INTEGER NOT NULL, products_lower TEXT NOT NULL, doc TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cart_summary_by_user ON cart_summary (user_id, created_at_micros DESC, cart_id DESC);
CREATE INDEX IF NOT EXISTS cart_summary_by_time ON cart_summary (created_at_micros DESC, cart_id DESC);
CREATE TABLE IF NOT EXISTS sales_lines (
    id TEXT PRIMARY KEY, version INTEGER NOT NULL, day TEXT NOT NULL, product_name TEXT NOT NULL,
    seller_info TEXT NOT NULL, currency TEXT NOT NULL, payment_method TEXT NOT NULL, status TEXT NOT NULL,
    quantity INTEGER NOT NULL, subtotal TEXT NOT NULL, tax_amount TEXT NOT NULL, doc TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sales_lines_by_day ON sales_lines (day);
CREATE TABLE IF NOT EXISTS command_status (
    command_id TEXT PRIMARY KEY, version INTEGER NOT NULL, doc TEXT NOT NULL
) WITHOUT ROWID;
-- The carts checking out, by deadline: what the saga's timer looks for.
-- Kept by triggers from the summaries actually written (the version guard
-- skips older ones), so it never disagrees with them.
CREATE TABLE IF NOT EXISTS checkouts_due (
    cart_id TEXT PRIMARY KEY, checkout INTEGER NOT NULL, expires_at TEXT NOT NULL,
    expires_at_jd REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS checkouts_due_by_deadline ON checkouts_due (expires_at_jd);
CREATE INDEX IF NOT EXISTS checkouts_due_by_deadline_and_cart ON checkouts_due (expires_at_jd, cart_id);
CREATE TRIGGER IF NOT EXISTS cart_summary_due_insert AFTER INSERT ON cart_summary BEGIN
    DELETE FROM checkouts_due WHERE cart_id = NEW.cart_id;
    INSERT INTO checkouts_due
        SELECT NEW.cart_id, json_extract(NEW.doc, '$.checkout_version'),
               json_extract(NEW.doc, '$.checkout_expires_at'),
               julianday(json_extract(NEW.doc, '$.checkout_expires_at'))
        WHERE json_extract(NEW.doc, '$.checkout_version') IS NOT NULL;
END;
CREATE TRIGGER IF NOT EXISTS cart_summary_due_update AFTER UPDATE ON cart_summary BEGIN
    DELETE FROM checkouts_due WHERE cart_id = NEW.cart_id;
    INSERT INTO checkouts_due
        SELECT NEW.cart_id, json_extract(NEW.doc, '$.checkout_version'),
               json_extract(NEW.doc, '$.checkout_expires_at'),
               julianday(json_extract(NEW.doc, '$.checkout_expires_at'))
        WHERE json_extract(NEW.doc, '$.checkout_version') IS NOT NULL;
END;
";

const NAME: &str = "embedded read store";

#[derive(Clone)]
pub struct EmbeddedReadStore {
    db: Db,
}

impl EmbeddedReadStore {
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        Ok(EmbeddedReadStore {
            db: Db::open(NAME, path, SCHEMA)?,
        })
    }

    async fn get<T: DeserializeOwned + Send + 'static>(
        &self,
        sql: &'static str,
        id: String,
    ) -> Result<Option<T>, BackendError> {
        self.get_where(sql, vec![id]).await
    }

    /// The one document `sql` selects with `values` bound in order.
    async fn get_where<T: DeserializeOwned + Send + 'static>(
        &self,
        sql: &'static str,
        values: Vec<String>,
    ) -> Result<Option<T>, BackendError> {
        let err = self.db.err();
        self.db
            .read(move |c| {
                let doc: Option<String> = c
                    .query_row(sql, rusqlite::params_from_iter(values), |r| r.get(0))
                    .optional()
                    .map_err(err)?;
                doc.map(|d| decode(&d)).transpose()
            })
            .await
    }
}

fn decode<T: DeserializeOwned>(doc: &str) -> Result<T, BackendError> {
    serde_json::from_str(doc).map_err(|e| BackendError::new(NAME, format!("corrupt document: {e}")))
}

fn encode<T: serde::Serialize>(doc: &T) -> Result<String, BackendError> {
    serde_json::to_string(doc).map_err(|e| BackendError::new(NAME, e))
}

fn version(v: u64) -> Result<i64, BackendError> {
    i64::try_from(v).map_err(|e| BackendError::new(NAME, e))
}

fn status(s: LineStatus) -> &'static str {
    match s {
        LineStatus::Active => "active",
        LineStatus::Cancelled => "cancelled",
    }
}

/// The statement and its parameters for one upsert.
fn upsert_statement(doc: &ReadDocument) -> Result<(&'static str, Vec<SqlValue>), BackendError> {
    use SqlValue::{Integer, Text};
    Ok(match doc {
        ReadDocument::CartDetail(d) => (
            "INSERT INTO cart_detail (cart_id, version, doc) VALUES (?1, ?2, ?3) \
             ON CONFLICT (cart_id) DO UPDATE SET version = excluded.version, doc = excluded.doc \
             WHERE excluded.version > cart_detail.version",
            vec![Text(d.cart_id.to_string()), Integer(version(d.version)?), Text(encode(d)?)],
        ),
        ReadDocument::CartSummary(d) => (
            "INSERT INTO cart_summary (cart_id, version, user_id, created_at_micros, products_lower, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (cart_id) DO UPDATE SET version = excluded.version, user_id = excluded.user_id, \
             created_at_micros = excluded.created_at_micros, products_lower = excluded.products_lower, doc = excluded.doc \
             WHERE excluded.version > cart_summary.version",
            vec![
                Text(d.cart_id.to_string()),
                Integer(version(d.version)?),
                Text(d.user_id.clone()),
                Integer(d.created_at.timestamp_micros()),
                Text(d.products.to_lowercase()),
                Text(encode(d)?),
            ],
        ),
        ReadDocument::SalesLine(d) => (
            "INSERT INTO sales_lines (id, version, day, product_name, seller_info, currency, payment_method, status, quantity, subtotal, tax_amount, doc) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, day = excluded.day, product_name = excluded.product_name, \
             seller_info = excluded.seller_info, currency = excluded.currency, payment_method = excluded.payment_method, \
             status = excluded.status, quantity = excluded.quantity, subtotal = excluded.subtotal, tax_amount = excluded.tax_amount, doc = excluded.doc \
             WHERE excluded.version > sales_lines.version",
            vec![
                Text(d.doc_id()),
                Integer(version(d.version)?),
                Text(d.day.to_string()),
                Text(d.product_name.clone()),
                Text(d.seller_info.clone()),
                Text(d.currency.clone()),
                Text(d.payment_method.clone()),
                Text(status(d.status).into()),
                Integer(i64::from(d.quantity)),
                Text(d.subtotal.to_string()),
                Text(d.tax_amount.to_string()),
                Text(encode(d)?),
            ],
        ),
        ReadDocument::CommandStatus(d) => (
            "INSERT INTO command_status (command_id, version, doc) VALUES (?1, ?2, ?3) \
             ON CONFLICT (command_id) DO UPDATE SET version = excluded.version, doc = excluded.doc \
             WHERE excluded.version > command_status.version",
            vec![Text(d.command_id.to_string()), Integer(version(d.version)?), Text(encode(d)?)],
        ),
    })
}

/// Report buckets by (period, key, currency).
type Buckets = BTreeMap<(Option<DateTime<Utc>>, Option<String>, String), SalesBucket>;

/// Adds `line` to its bucket when it lies in the report's time range.
fn add_to_report(buckets: &mut Buckets, query: &SalesReportQuery, line: &SalesLine) {
    let in_range = query.from.is_none_or(|from| line.created_at >= from)
        && query.to.is_none_or(|to| line.created_at < to)
        && query.status.counts(line.cart_status);
    if !in_range {
        return;
    }
    let period = query.interval.map(|i| i.bucket_start(line.created_at));
    let key = query.group_by.map(|d| d.of(line).to_owned());
    let bucket = buckets
        .entry((period, key.clone(), line.currency.clone()))
        .or_insert_with(|| SalesBucket {
            period,
            key,
            currency: line.currency.clone(),
            revenue: Decimal::ZERO,
            tax: Decimal::ZERO,
            units: 0,
            orders: 0,
        });
    bucket.revenue += line.subtotal;
    bucket.tax += line.tax_amount;
    bucket.units += u64::from(line.quantity);
    bucket.orders += 1;
}

/// `%`, `_` and the escape character itself are literal in a search word.
fn like_pattern(word: &str) -> String {
    let mut escaped = String::with_capacity(word.len() + 2);
    escaped.push('%');
    for ch in word.to_lowercase().chars() {
        if matches!(ch, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(ch);
    }
    escaped.push('%');
    escaped
}

#[async_trait]
impl ReadStore for EmbeddedReadStore {
    async fn upsert(&self, doc: ReadDocument) -> Result<Upsert, BackendError> {
        let mut written = self.upsert_all(vec![doc]).await?;
        written
            .pop()
            .ok_or_else(|| BackendError::new(NAME, "no upsert result"))
    }

    /// One job of the writer's group transaction for all of them.
    async fn upsert_all(&self, docs: Vec<ReadDocument>) -> Result<Vec<Upsert>, BackendError> {
        let statements = docs
            .iter()
            .map(upsert_statement)
            .collect::<Result<Vec<_>, _>>()?;
        let err = self.db.err();
        self.db
            .write(move |c| {
                statements
                    .into_iter()
                    .map(|(sql, values)| {
                        let changed = c
                            .prepare_cached(sql)
                            .and_then(|mut s| s.execute(params_from_iter(values)))
                            .map_err(err)?;
                        Ok(if changed == 0 {
                            Upsert::Stale
                        } else {
                            Upsert::Written
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn cart_detail(
        &self,
        cart_id: CartId,
        reader: Reader<'_>,
    ) -> Result<Option<CartDetail>, BackendError> {
        match reader {
            Reader::Any => {
                self.get(
                    "SELECT doc FROM cart_detail WHERE cart_id = ?1",
                    cart_id.to_string(),
                )
                .await
            }
            Reader::Owner(owner) => self.get_where(
                "SELECT doc FROM cart_detail WHERE cart_id = ?1 AND json_extract(doc, '$.user_id') = ?2",
                vec![cart_id.to_string(), owner.to_owned()],
            )
            .await,
        }
    }

    /// One read job for all of them.
    async fn cart_details(
        &self,
        cart_ids: &[CartId],
    ) -> Result<Vec<Option<CartDetail>>, BackendError> {
        let ids: Vec<String> = cart_ids.iter().map(ToString::to_string).collect();
        let err = self.db.err();
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached("SELECT doc FROM cart_detail WHERE cart_id = ?1")
                    .map_err(err)?;
                ids.iter()
                    .map(|id| {
                        let doc: Option<String> =
                            stmt.query_row([id], |r| r.get(0)).optional().map_err(err)?;
                        doc.map(|d| decode(&d)).transpose()
                    })
                    .collect()
            })
            .await
    }

    async fn cart_summary(
        &self,
        cart_id: CartId,
        reader: Reader<'_>,
    ) -> Result<Option<CartSummary>, BackendError> {
        match reader {
            Reader::Any => {
                self.get(
                    "SELECT doc FROM cart_summary WHERE cart_id = ?1",
                    cart_id.to_string(),
                )
                .await
            }
            Reader::Owner(owner) => {
                self.get_where(
                    "SELECT doc FROM cart_summary WHERE cart_id = ?1 AND user_id = ?2",
                    vec![cart_id.to_string(), owner.to_owned()],
                )
                .await
            }
        }
    }

    async fn command_status(
        &self,
        command_id: CommandId,
        reader: Reader<'_>,
    ) -> Result<Option<Outcome>, BackendError> {
        match reader {
            Reader::Any => {
                self.get(
                    "SELECT doc FROM command_status WHERE command_id = ?1",
                    command_id.to_string(),
                )
                .await
            }
            Reader::Owner(owner) => self.get_where(
                "SELECT doc FROM command_status WHERE command_id = ?1 AND json_extract(doc, '$.user_id') = ?2",
                vec![command_id.to_string(), owner.to_owned()],
            )
            .await,
        }
    }

    async fn search_carts(&self, search: &CartSearch) -> Result<CartPage, BackendError> {
        let mut sql = String::from("SELECT doc FROM cart_summary WHERE 1 = 1");
        let mut values: Vec<SqlValue> = Vec::new();
        // Appends `clause`, numbering each `?` in it after the values bound so far.
        let mut bind = |sql: &mut String, clause: &str, bound: Vec<SqlValue>| {
            for (i, part) in clause.split('?').enumerate() {
                if i > 0 {
                    sql.push_str(&format!("?{}", values.len() + i));
                }
                sql.push_str(part);
            }
            values.extend(bound);
        };
        if let Some(user) = &search.user_id {
            bind(
                &mut sql,
                " AND user_id = ?",
                vec![SqlValue::Text(user.clone())],
            );
        }
        if let Some(currency) = &search.currency {
            bind(
                &mut sql,
                " AND json_extract(doc, '$.currency') = ?",
                vec![SqlValue::Text(currency.clone())],
            );
        }
        if let Some(from) = search.from {
            bind(
                &mut sql,
                " AND created_at_micros >= ?",
                vec![SqlValue::Integer(from.timestamp_micros())],
            );
        }
        if let Some(to) = search.to {
            bind(
                &mut sql,
                " AND created_at_micros < ?",
                vec![SqlValue::Integer(to.timestamp_micros())],
            );
        }
        for word in search.q.iter().flat_map(|q| q.split_whitespace()) {
            bind(
                &mut sql,
                " AND products_lower LIKE ? ESCAPE '\\'",
                vec![SqlValue::Text(like_pattern(word))],
            );
        }
        if let Some(after) = &search.after {
            // Strictly after the cursor in (created_at desc, cart_id desc) order.
            bind(
                &mut sql,
                " AND (created_at_micros, cart_id) < (?, ?)",
                vec![
                    SqlValue::Integer(after.created_at.timestamp_micros()),
                    SqlValue::Text(after.cart_id.to_string()),
                ],
            );
        }
        let limit = search.limit.clamp(1, 1000);
        bind(
            &mut sql,
            " ORDER BY created_at_micros DESC, cart_id DESC LIMIT ?",
            vec![SqlValue::Integer(i64::from(limit) + 1)],
        );
        let err = self.db.err();
        let carts: Vec<CartSummary> = self
            .db
            .read(move |c| {
                let mut stmt = c.prepare(&sql).map_err(err)?;
                let rows = stmt
                    .query_map(params_from_iter(values), |r| r.get::<_, String>(0))
                    .map_err(err)?;
                rows.map(|row| decode(&row.map_err(err)?)).collect()
            })
            .await?;
        Ok(CartPage::from_overfetch(carts, limit))
    }

    async fn sales_report(
        &self,
        query: &SalesReportQuery,
    ) -> Result<Vec<SalesBucket>, BackendError> {
        // `day` is indexed: it narrows the scan, the exact bounds apply below.
        let from_day = query.from.map(|t| t.date_naive().to_string());
        let to_day = query.to.map(|t| t.date_naive().to_string());
        let query = query.clone();
        let err = self.db.err();
        // Folded row by row as SQLite hands them over: memory grows with the
        // buckets, never with the lines (collecting every document first
        // held the whole table in memory per report). Decimal sums happen
        // here, not in SQLite (which would add floats).
        let buckets = self
            .db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT doc FROM sales_lines WHERE status = 'active' \
                         AND (?1 IS NULL OR day >= ?1) AND (?2 IS NULL OR day <= ?2)",
                    )
                    .map_err(err)?;
                let mut rows = stmt.query(params![from_day, to_day]).map_err(err)?;
                let mut buckets = BTreeMap::new();
                while let Some(row) = rows.next().map_err(err)? {
                    let line: SalesLine = decode(
                        row.get_ref(0)
                            .map_err(err)?
                            .as_str()
                            .map_err(|e| BackendError::new(NAME, e))?,
                    )?;
                    add_to_report(&mut buckets, &query, &line);
                }
                Ok(buckets)
            })
            .await?;
        Ok(buckets
            .into_values()
            .map(|mut b| {
                b.revenue = display_sum(b.revenue);
                b.tax = display_sum(b.tax);
                b
            })
            .collect())
    }

    async fn due_checkouts(
        &self,
        now: DateTime<Utc>,
        after: Option<&DueCheckout>,
        limit: u32,
    ) -> Result<Vec<DueCheckout>, BackendError> {
        let err = self.db.err();
        // julianday() keeps whole milliseconds: the cursor's instant gives
        // the same value as the row it came from.
        let after_at = after.map(|a| a.expires_at.to_rfc3339());
        let after_cart = after.map(|a| a.cart_id.to_string());
        let rows: Vec<(String, i64, String)> = self
            .db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT cart_id, checkout, expires_at FROM checkouts_due \
                         WHERE expires_at_jd <= julianday(?1) \
                         AND (?3 IS NULL OR expires_at_jd > julianday(?3) \
                              OR (expires_at_jd = julianday(?3) AND cart_id > ?4)) \
                         ORDER BY expires_at_jd, cart_id LIMIT ?2",
                    )
                    .map_err(err)?;
                let rows = stmt
                    .query_map(
                        params![now.to_rfc3339(), limit, after_at, after_cart],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                    )
                    .map_err(err)?;
                rows.collect::<Result<_, _>>().map_err(err)
            })
            .await?;
        rows.into_iter()
            .map(|(cart_id, checkout, expires_at)| {
                let corrupt = |e: &dyn std::fmt::Display| {
                    BackendError::new(NAME, format!("checkouts_due: {e}"))
                };
                Ok(DueCheckout {
                    cart_id: cart_id.parse().map_err(|e| corrupt(&e))?,
                    checkout: u64::try_from(checkout).map_err(|e| corrupt(&e))?,
                    expires_at: DateTime::parse_from_rfc3339(&expires_at)
                        .map_err(|e| corrupt(&e))?
                        .with_timezone(&Utc),
                })
            })
            .collect()
    }

    async fn ping(&self) -> Result<(), BackendError> {
        let err = self.db.err();
        self.db
            .read(move |c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(err))
            .await
    }
}
