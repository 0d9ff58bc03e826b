//! The event store on Apache Cassandra 4/5, ScyllaDB or Amazon Keyspaces,
//! through the `scylla` driver.
//!
//! - Appends are lightweight transactions only: `INSERT ... IF NOT EXISTS` on
//!   (cart, version) for one event, a LOGGED BATCH of them (one partition)
//!   for several. `[applied] = false` is the port's `Conflict`.
//! - A conditional write that fails without an answer (a write timeout, a
//!   client timeout, a broken connection) may still have applied. It is
//!   never retried blindly: the adapter reads the versions it wrote at
//!   SERIAL consistency, which settles any Paxos round in flight (tried
//!   again for up to the request timeout: the first reads after a
//!   coordinator died may be routed to it again), and answers from what is
//!   there: our events (applied), another writer's (conflict) or none (not
//!   applied: a retryable error). A read that never succeeds leaves the
//!   append unsettled: an error that says it may have applied.
//! - Reads are prepared, paged and idempotent (the driver may retry them);
//!   snapshots are plain upserts in their own table.
//!
//! Schema: `infra/cassandra/*.cql` (see [`schema`]).

pub mod config;
pub mod schema;
#[cfg(feature = "test-server")]
pub mod test_server;

pub mod key_store;
pub mod payment_ledger;

pub use config::{parse_consistency, parse_serial_consistency, CassandraConfig};
pub use key_store::CassandraKeyStore;
pub use payment_ledger::CassandraPaymentLedger;

use async_trait::async_trait;
use futures::TryStreamExt;
use salestrack_core::event::{misnumbered, RecordedEvent};
use salestrack_core::ids::CartId;
use salestrack_core::ports::{AppendError, BackendError, EventStore, Snapshot, StreamHead};
use salestrack_core::wire;
use scylla::client::session::Session;
use scylla::response::query_result::QueryResult;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlTimestamp, CqlValue, Row};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use uuid::Uuid;

const NAME: &str = "cassandra event store";

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CassandraError {
    #[error("cassandra configuration: {0}")]
    Config(String),
    #[error("cannot connect to cassandra: {0}")]
    Connect(String),
    #[error("cassandra schema: {0}")]
    Schema(String),
}

impl From<CassandraError> for BackendError {
    fn from(e: CassandraError) -> Self {
        BackendError::caused_by(NAME, e)
    }
}

fn backend(e: impl std::fmt::Display) -> BackendError {
    BackendError::new(NAME, e)
}

/// A driver's error as a backend error that keeps it as its source.
fn driver<E: std::error::Error + Send + Sync + 'static>(e: E) -> BackendError {
    BackendError::caused_by(NAME, e)
}

struct Statements {
    insert: PreparedStatement,
    read_all: PreparedStatement,
    read_range: PreparedStatement,
    /// `read_range` at SERIAL consistency: settles a conditional write.
    read_range_serial: PreparedStatement,
    load_snapshot: PreparedStatement,
    save_snapshot: PreparedStatement,
    /// Prepared on first use: only a rebuild lists streams.
    list: OnceCell<ListStatements>,
}

struct ListStatements {
    first: PreparedStatement,
    after: PreparedStatement,
    head: PreparedStatement,
}

#[derive(Clone)]
pub struct CassandraEventStore {
    session: Arc<Session>,
    statements: Arc<Statements>,
    keyspace: String,
    serial_consistency: SerialConsistency,
    /// How long an idempotent read is tried again for (the request
    /// timeout): a failed append's serial read, the key store's reads.
    settle_within: Duration,
}

impl CassandraEventStore {
    /// Connects, applies the schema when configured to, and prepares every
    /// statement (a schema mismatch fails here, not on the first command).
    pub async fn connect(config: CassandraConfig) -> Result<CassandraEventStore, CassandraError> {
        schema::check_keyspace(&config.keyspace)?;
        let session = config::connect(&config).await?;
        if config.create_schema {
            for statement in schema::statements(&config.keyspace, &config.replication)? {
                session
                    .query_unpaged(statement.as_str(), &[])
                    .await
                    .map_err(|e| CassandraError::Schema(format!("{statement}: {e}")))?;
            }
        }
        let statements = prepare(&session, &config).await?;
        Ok(CassandraEventStore {
            session: Arc::new(session),
            statements: Arc::new(statements),
            keyspace: config.keyspace,
            serial_consistency: config.serial_consistency,
            settle_within: config.request_timeout,
        })
    }

    /// The payment ledger in the same keyspace, on the same session.
    pub async fn payment_ledger(&self) -> Result<CassandraPaymentLedger, CassandraError> {
        CassandraPaymentLedger::prepare(
            Arc::clone(&self.session),
            &self.keyspace,
            self.serial_consistency,
        )
        .await
    }

    /// The key store in the same keyspace, on the same session.
    pub async fn key_store(&self) -> Result<CassandraKeyStore, CassandraError> {
        CassandraKeyStore::prepare(
            Arc::clone(&self.session),
            &self.keyspace,
            self.serial_consistency,
            self.settle_within,
        )
        .await
    }

    async fn list_statements(&self) -> Result<&ListStatements, BackendError> {
        let ks = &self.keyspace;
        self.statements
            .list
            .get_or_try_init(|| async {
                let prepare = |cql: String| async move {
                    let mut p = self
                        .session
                        .prepare(cql.as_str())
                        .await
                        .map_err(|e| backend(format!("preparing {cql}: {e}")))?;
                    p.set_is_idempotent(true);
                    Ok::<_, BackendError>(p)
                };
                Ok(ListStatements {
                    first: prepare(format!("SELECT DISTINCT cart_id FROM {ks}.events LIMIT ?"))
                        .await?,
                    after: prepare(format!(
                        "SELECT DISTINCT cart_id FROM {ks}.events \
                         WHERE token(cart_id) > token(?) LIMIT ?"
                    ))
                    .await?,
                    head: prepare(format!(
                        "SELECT version FROM {ks}.events WHERE cart_id = ? \
                         ORDER BY version DESC LIMIT 1"
                    ))
                    .await?,
                })
            })
            .await
    }

    async fn read(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
        cart_id: CartId,
    ) -> Result<Vec<RecordedEvent>, BackendError> {
        let mut rows = self
            .session
            .execute_iter(statement.clone(), values)
            .await
            .map_err(driver)?
            .rows_stream::<(i64, Vec<u8>)>()
            .map_err(driver)?;
        let mut events = Vec::new();
        while let Some((version, envelope)) = rows.try_next().await.map_err(driver)? {
            let event = wire::decode_event(&envelope)
                .map_err(|e| backend(format!("corrupt event {version} in cart {cart_id}: {e}")))?;
            if event.version != version.unsigned_abs() || event.cart_id != cart_id {
                return Err(backend(format!(
                    "row ({cart_id}, {version}) holds event {} of cart {}",
                    event.version, event.cart_id
                )));
            }
            events.push(event);
        }
        Ok(events)
    }

    /// The stream's events from `first` on, read at SERIAL consistency.
    async fn read_settled(
        &self,
        cart_id: CartId,
        first: u64,
    ) -> Result<Vec<RecordedEvent>, BackendError> {
        self.read(
            &self.statements.read_range_serial,
            (cart_id.0, cql_version(first), i64::MAX),
            cart_id,
        )
        .await
    }

    /// [`Self::read_settled`] tried again (see [`retried`]): one failed read
    /// would leave an append unsettled that a moment later could be.
    async fn read_settled_retrying(
        &self,
        cart_id: CartId,
        first: u64,
    ) -> Result<Vec<RecordedEvent>, BackendError> {
        retried(self.settle_within, "a settling serial read", || {
            self.read_settled(cart_id, first)
        })
        .await
    }

    /// After a conditional write answered `[applied] = false`.
    async fn conflict(&self, cart_id: CartId, expected: u64) -> AppendError {
        match self.read_settled(cart_id, expected + 1).await {
            Ok(after) => AppendError::Conflict {
                expected,
                actual: after.last().map_or(expected, |e| e.version),
            },
            Err(e) => e.into(),
        }
    }

    /// After a conditional write failed without an answer: what is stored
    /// at its versions says whether it applied.
    async fn settle(
        &self,
        cart_id: CartId,
        expected: u64,
        events: &[RecordedEvent],
        failure: String,
    ) -> Result<(), AppendError> {
        let stored = match self.read_settled_retrying(cart_id, expected + 1).await {
            Ok(stored) => stored,
            Err(e) => {
                metrics::counter!("salestrack_cassandra_ambiguous_appends_total", "outcome" => "unsettled")
                    .increment(1);
                tracing::warn!(%cart_id, expected, %failure, error = %e, outcome = "unsettled", "conditional append failed without an answer, and so did the serial read that settles it");
                return Err(backend(format!(
                    "append to cart {cart_id} failed ({failure}) and reading back failed too ({e}); \
                     the append may or may not have applied"
                ))
                .into());
            }
        };
        let outcome = if stored.is_empty() {
            "not_applied"
        } else if stored.starts_with(events) {
            "applied"
        } else {
            "conflict"
        };
        metrics::counter!("salestrack_cassandra_ambiguous_appends_total", "outcome" => outcome)
            .increment(1);
        tracing::warn!(%cart_id, expected, %failure, outcome, "conditional append failed without an answer; settled by a serial read");
        match outcome {
            "applied" => Ok(()),
            "conflict" => Err(AppendError::Conflict {
                expected,
                actual: stored.last().map_or(expected, |e| e.version),
            }),
            _ => Err(backend(format!(
                "append to cart {cart_id} failed and did not apply: {failure}"
            ))
            .into()),
        }
    }
}

/// `attempt` (an idempotent statement) tried again, with growing pauses
/// from 50 ms to 1 s, for up to `within`. A node that died broke its
/// connections, and the driver may route the first statements that follow
/// to it again before it has noticed: their failure says nothing about the
/// cluster, which a moment later answers.
pub(crate) async fn retried<T, F, Fut>(
    within: Duration,
    what: &str,
    mut attempt: F,
) -> Result<T, BackendError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match attempt().await {
            Ok(answer) => return Ok(answer),
            Err(e) if started.elapsed() + pause >= within => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "{what} failed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// CQL `bigint` is signed; an open upper bound is clamped.
fn cql_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

async fn prepare(
    session: &Session,
    config: &CassandraConfig,
) -> Result<Statements, CassandraError> {
    let ks = &config.keyspace;
    let prepare = |cql: String| async move {
        session
            .prepare(cql.as_str())
            .await
            .map_err(|e| CassandraError::Schema(format!("preparing {cql}: {e}")))
    };
    let mut insert = prepare(format!(
        "INSERT INTO {ks}.events (cart_id, version, event_id, event_type, command_id, \
         recorded_at, schema_version, envelope) VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
    ))
    .await?;
    // Never retried by the driver: a second attempt of a write that applied
    // would answer `[applied] = false` and pass for a conflict.
    insert.set_is_idempotent(false);
    insert.set_serial_consistency(Some(config.serial_consistency));

    let columns = "version, envelope";
    let mut read_all = prepare(format!(
        "SELECT {columns} FROM {ks}.events WHERE cart_id = ?"
    ))
    .await?;
    let mut read_range = prepare(format!(
        "SELECT {columns} FROM {ks}.events WHERE cart_id = ? AND version >= ? AND version <= ?"
    ))
    .await?;
    for read in [&mut read_all, &mut read_range] {
        read.set_is_idempotent(true);
        read.set_page_size(config.page_size);
    }
    let mut read_range_serial = read_range.clone();
    read_range_serial.set_consistency(match config.serial_consistency {
        SerialConsistency::Serial => Consistency::Serial,
        SerialConsistency::LocalSerial => Consistency::LocalSerial,
    });

    let mut load_snapshot = prepare(format!(
        "SELECT version, format, state FROM {ks}.snapshots WHERE cart_id = ?"
    ))
    .await?;
    load_snapshot.set_is_idempotent(true);
    let mut save_snapshot = prepare(format!(
        "INSERT INTO {ks}.snapshots (cart_id, version, format, state) VALUES (?, ?, ?, ?)"
    ))
    .await?;
    save_snapshot.set_is_idempotent(true);

    Ok(Statements {
        insert,
        read_all,
        read_range,
        read_range_serial,
        load_snapshot,
        save_snapshot,
        list: OnceCell::new(),
    })
}

type EventRow = (
    Uuid,
    i64,
    Uuid,
    &'static str,
    Uuid,
    CqlTimestamp,
    i32,
    Vec<u8>,
);

fn event_row(e: &RecordedEvent) -> EventRow {
    (
        e.cart_id.0,
        cql_version(e.version),
        e.event_id.0,
        e.event.kind().as_str(),
        e.command_id.0,
        CqlTimestamp(e.recorded_at.timestamp_millis()),
        e.event.kind().schema_version() as i32,
        wire::encode_event(e),
    )
}

/// The `[applied]` column of a conditional write's answer.
fn applied(result: QueryResult) -> Result<bool, String> {
    let rows = result
        .into_rows_result()
        .map_err(|e| format!("the answer to a conditional write has no rows: {e}"))?;
    let named_applied = rows
        .column_specs()
        .iter()
        .next()
        .is_some_and(|c| c.name() == "[applied]");
    if !named_applied {
        return Err("the answer to a conditional write has no [applied] column".into());
    }
    let row: Row = rows
        .first_row()
        .map_err(|e| format!("the answer to a conditional write: {e}"))?;
    match row.columns.first() {
        Some(Some(CqlValue::Boolean(applied))) => Ok(*applied),
        other => Err(format!("[applied] is {other:?}, not a boolean")),
    }
}

#[async_trait]
impl EventStore for CassandraEventStore {
    async fn read_range(
        &self,
        cart_id: CartId,
        versions: RangeInclusive<u64>,
    ) -> Result<Vec<RecordedEvent>, BackendError> {
        let (first, last) = (*versions.start(), *versions.end());
        if first > last {
            return Ok(Vec::new());
        }
        if first <= 1 && cql_version(last) == i64::MAX {
            return self
                .read(&self.statements.read_all, (cart_id.0,), cart_id)
                .await;
        }
        self.read(
            &self.statements.read_range,
            (cart_id.0, cql_version(first), cql_version(last)),
            cart_id,
        )
        .await
    }

    async fn load_snapshot(&self, cart_id: CartId) -> Result<Option<Snapshot>, BackendError> {
        let rows = self
            .session
            .execute_unpaged(&self.statements.load_snapshot, (cart_id.0,))
            .await
            .map_err(driver)?
            .into_rows_result()
            .map_err(driver)?;
        let row = rows
            .maybe_first_row::<(i64, i32, Vec<u8>)>()
            .map_err(driver)?;
        Ok(row.map(|(version, format, state)| Snapshot {
            cart_id,
            version: version.unsigned_abs(),
            format: format.unsigned_abs(),
            state,
        }))
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), BackendError> {
        let format = i32::try_from(snapshot.format).map_err(driver)?;
        self.session
            .execute_unpaged(
                &self.statements.save_snapshot,
                (
                    snapshot.cart_id.0,
                    cql_version(snapshot.version),
                    format,
                    snapshot.state.as_slice(),
                ),
            )
            .await
            .map_err(driver)?;
        Ok(())
    }

    async fn list_streams(
        &self,
        after: Option<CartId>,
        limit: u32,
    ) -> Result<Vec<StreamHead>, BackendError> {
        let list = self.list_statements().await?;
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let result = match after {
            None => self.session.execute_unpaged(&list.first, (limit,)).await,
            Some(after) => {
                self.session
                    .execute_unpaged(&list.after, (after.0, limit))
                    .await
            }
        }
        .map_err(driver)?
        .into_rows_result()
        .map_err(driver)?;
        let carts: Vec<Uuid> = result
            .rows::<(Uuid,)>()
            .map_err(driver)?
            .map(|row| row.map(|(cart,)| cart))
            .collect::<Result<_, _>>()
            .map_err(driver)?;
        let mut heads = Vec::with_capacity(carts.len());
        for cart in carts {
            let version = self
                .session
                .execute_unpaged(&list.head, (cart,))
                .await
                .map_err(driver)?
                .into_rows_result()
                .map_err(driver)?
                .maybe_first_row::<(i64,)>()
                .map_err(driver)?;
            if let Some((version,)) = version {
                heads.push(StreamHead {
                    cart_id: CartId(cart),
                    version: version.unsigned_abs(),
                });
            }
        }
        Ok(heads)
    }

    async fn ping(&self) -> Result<(), BackendError> {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", &[])
            .await
            .map(drop)
            .map_err(driver)
    }

    async fn append(
        &self,
        cart_id: CartId,
        expected_version: u64,
        events: &[RecordedEvent],
    ) -> Result<(), AppendError> {
        if let Some(why) = misnumbered(cart_id, expected_version, events) {
            return Err(backend(why).into());
        }
        let rows: Vec<EventRow> = events.iter().map(event_row).collect();
        let answer = match rows.as_slice() {
            [] => return Ok(()),
            [row] => {
                self.session
                    .execute_unpaged(&self.statements.insert, row)
                    .await
            }
            _ => {
                let mut batch = Batch::new(BatchType::Logged);
                for _ in &rows {
                    batch.append_statement(self.statements.insert.clone());
                }
                batch.set_is_idempotent(false);
                batch.set_serial_consistency(self.statements.insert.get_serial_consistency());
                self.session.batch(&batch, &rows).await
            }
        };
        match answer {
            Ok(result) => match applied(result) {
                Ok(true) => Ok(()),
                Ok(false) => Err(self.conflict(cart_id, expected_version).await),
                // A server that does not do LWT would have written
                // unconditionally: say so loudly rather than guess.
                Err(e) => Err(backend(format!("append to cart {cart_id}: {e}")).into()),
            },
            Err(e) => {
                self.settle(cart_id, expected_version, events, e.to_string())
                    .await
            }
        }
    }
}
