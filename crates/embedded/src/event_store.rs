//! The embedded event store: one row per event, primary key (cart, version).
//! The version check and the inserts run in one transaction, and the primary
//! key would refuse a second event at a taken version even without it.

use crate::sqlite::{in_savepoint, Db};
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use salestrack_core::event::{misnumbered, RecordedEvent};
use salestrack_core::ids::CartId;
use salestrack_core::ports::{
    AppendError, BackendError, EventStore, Snapshot, StreamAppend, StreamHead,
};
use salestrack_core::wire;
use std::ops::RangeInclusive;
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    cart_id     TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    event_id    TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    command_id  TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL,
    envelope    BLOB    NOT NULL,
    PRIMARY KEY (cart_id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    cart_id     TEXT    NOT NULL PRIMARY KEY,
    version     INTEGER NOT NULL,
    format      INTEGER NOT NULL,
    state       BLOB    NOT NULL
) WITHOUT ROWID;
";

const NAME: &str = "embedded event store";

#[derive(Clone)]
pub struct EmbeddedEventStore {
    db: Db,
}

impl EmbeddedEventStore {
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        Ok(EmbeddedEventStore {
            db: Db::open(NAME, path, SCHEMA)?,
        })
    }

    /// Appends events as stored bytes, kept verbatim (a restore, a
    /// migration from another store, old releases' events): each envelope
    /// must decode (upcast from any earlier version) and they must continue
    /// `cart_id`'s stream after `expected_version`, like an append.
    pub async fn import(
        &self,
        cart_id: CartId,
        expected_version: u64,
        envelopes: Vec<Vec<u8>>,
    ) -> Result<(), AppendError> {
        let events = envelopes
            .iter()
            .map(|bytes| wire::decode_event(bytes))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BackendError::refused(NAME, format!("an envelope to import: {e}")))?;
        let mut rows = Rows::of(&StreamAppend {
            cart_id,
            expected_version,
            events: &events,
        })?;
        for (row, bytes) in rows.rows.iter_mut().zip(envelopes) {
            row.5 = bytes;
        }
        let err = self.db.err();
        self.db
            .write(move |c| Ok(rows.append(c, err)))
            .await
            .map_err(AppendError::from)?
    }
}

/// SQLite integers are signed: versions beyond `i64::MAX` cannot exist, so
/// an open upper bound is clamped.
fn sql_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

#[async_trait]
impl EventStore for EmbeddedEventStore {
    async fn read_range(
        &self,
        cart_id: CartId,
        versions: RangeInclusive<u64>,
    ) -> Result<Vec<RecordedEvent>, BackendError> {
        let err = self.db.err();
        let (first, last) = (sql_version(*versions.start()), sql_version(*versions.end()));
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT envelope FROM events WHERE cart_id = ?1 \
                         AND version BETWEEN ?2 AND ?3 ORDER BY version",
                    )
                    .map_err(err)?;
                let rows = stmt
                    .query_map(params![cart_id.to_string(), first, last], |r| {
                        r.get::<_, Vec<u8>>(0)
                    })
                    .map_err(err)?;
                rows.map(|row| {
                    let bytes = row.map_err(err)?;
                    wire::decode_event(&bytes).map_err(|e| {
                        BackendError::new(NAME, format!("corrupt event in cart {cart_id}: {e}"))
                    })
                })
                .collect()
            })
            .await
    }

    async fn load_snapshot(&self, cart_id: CartId) -> Result<Option<Snapshot>, BackendError> {
        let err = self.db.err();
        self.db
            .read(move |c| {
                c.prepare_cached("SELECT version, format, state FROM snapshots WHERE cart_id = ?1")
                    .map_err(err)?
                    .query_row([cart_id.to_string()], |r| {
                        Ok(Snapshot {
                            cart_id,
                            version: r.get::<_, i64>(0)?.unsigned_abs(),
                            format: r.get(1)?,
                            state: r.get(2)?,
                        })
                    })
                    .optional()
                    .map_err(err)
            })
            .await
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), BackendError> {
        let err = self.db.err();
        let Snapshot {
            cart_id,
            version,
            format,
            state,
        } = snapshot.clone();
        self.db
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO snapshots (cart_id, version, format, state) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (cart_id) DO UPDATE SET \
                     version = excluded.version, format = excluded.format, state = excluded.state",
                )
                .map_err(err)?
                .execute(params![cart_id.to_string(), sql_version(version), format, state])
                .map_err(err)?;
                Ok(())
            })
            .await
    }

    async fn list_streams(
        &self,
        after: Option<CartId>,
        limit: u32,
    ) -> Result<Vec<StreamHead>, BackendError> {
        let err = self.db.err();
        // The primary key's order: one index walk, no sort.
        let after = after.map(|c| c.to_string()).unwrap_or_default();
        self.db
            .read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT cart_id, MAX(version) FROM events WHERE cart_id > ?1 \
                         GROUP BY cart_id ORDER BY cart_id LIMIT ?2",
                    )
                    .map_err(err)?;
                let rows = stmt
                    .query_map(params![after, limit], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                    })
                    .map_err(err)?;
                rows.map(|row| {
                    let (cart, version) = row.map_err(err)?;
                    Ok(StreamHead {
                        cart_id: cart.parse().map_err(|e| {
                            BackendError::new(NAME, format!("cart id {cart:?}: {e}"))
                        })?,
                        version: version.unsigned_abs(),
                    })
                })
                .collect()
            })
            .await
    }

    async fn append(
        &self,
        cart_id: CartId,
        expected_version: u64,
        events: &[RecordedEvent],
    ) -> Result<(), AppendError> {
        let mut answers = self
            .append_many(&[StreamAppend {
                cart_id,
                expected_version,
                events,
            }])
            .await;
        answers
            .pop()
            .unwrap_or_else(|| Err(BackendError::new(NAME, "no append answer").into()))
    }

    /// One job of the writer's group transaction: one commit for them all,
    /// each stream's append in a savepoint of its own.
    async fn append_many(&self, appends: &[StreamAppend<'_>]) -> Vec<Result<(), AppendError>> {
        let rows: Vec<Result<Rows, AppendError>> = appends.iter().map(Rows::of).collect();
        let err = self.db.err();
        let count = appends.len();
        let answers = self
            .db
            .write(move |c| {
                Ok(rows
                    .into_iter()
                    .map(|rows| rows.and_then(|rows| rows.append(c, err)))
                    .collect::<Vec<_>>())
            })
            .await;
        match answers {
            Ok(answers) => answers,
            // The commit failed: none of them is stored.
            Err(e) => (0..count)
                .map(|_| Err(BackendError::new(NAME, &e).into()))
                .collect(),
        }
    }
}

/// One event's row: version, event id, type, command id, recorded at, envelope.
type Row = (i64, String, &'static str, String, String, Vec<u8>);

/// One append, encoded for the writer thread.
struct Rows {
    cart_id: CartId,
    expected_version: u64,
    rows: Vec<Row>,
}

impl Rows {
    fn of(a: &StreamAppend<'_>) -> Result<Rows, AppendError> {
        if let Some(why) = misnumbered(a.cart_id, a.expected_version, a.events) {
            return Err(BackendError::new(NAME, why).into());
        }
        let rows = a
            .events
            .iter()
            .map(|e| {
                Ok((
                    i64::try_from(e.version).map_err(|e| BackendError::new(NAME, e))?,
                    e.event_id.to_string(),
                    e.event.kind().as_str(),
                    e.command_id.to_string(),
                    e.recorded_at.to_rfc3339(),
                    wire::encode_event(e),
                ))
            })
            .collect::<Result<_, BackendError>>()?;
        Ok(Rows {
            cart_id: a.cart_id,
            expected_version: a.expected_version,
            rows,
        })
    }

    /// Inside the writer's transaction (IMMEDIATE: the version check and
    /// the inserts hold the write lock together, also against another
    /// process on the file), in a savepoint of its own that a conflict or
    /// failure rolls back.
    fn append(
        self,
        c: &rusqlite::Connection,
        err: impl Fn(rusqlite::Error) -> BackendError + Copy,
    ) -> Result<(), AppendError> {
        let cart = self.cart_id.to_string();
        in_savepoint(NAME, c, |c| {
            let actual: i64 = c
                .prepare_cached("SELECT COALESCE(MAX(version), 0) FROM events WHERE cart_id = ?1")
                .and_then(|mut s| s.query_row([&cart], |r| r.get(0)))
                .map_err(err)?;
            let actual = actual.unsigned_abs();
            if actual != self.expected_version {
                return Err(AppendError::Conflict {
                    expected: self.expected_version,
                    actual,
                });
            }
            for (version, event_id, kind, command_id, recorded_at, envelope) in self.rows {
                c.prepare_cached(
                    "INSERT INTO events (cart_id, version, event_id, event_type, command_id, recorded_at, envelope) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .and_then(|mut s| s.execute(params![cart, version, event_id, kind, command_id, recorded_at, envelope]))
                .map_err(err)?;
            }
            Ok(())
        })
    }
}
