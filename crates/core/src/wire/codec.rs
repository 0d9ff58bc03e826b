//! What every wire format shares: the envelope schema version, the decode
//! error, and JSON in and out.

use crate::command::ValidationErrors;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const SCHEMA_VERSION: u32 = 1;

/// Why bytes could not be turned into a record. A decode error is permanent:
/// the record is poison and goes to the dead-letter topic.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not valid JSON for a {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported schema_version {0}")]
    SchemaVersion(u32),
    #[error("unknown {what} type {kind:?}")]
    UnknownType { what: &'static str, kind: String },
    #[error("invalid command: {0}")]
    InvalidCommand(#[from] ValidationErrors),
    #[error("{kind} version {from} cannot be upcast: {why}")]
    Upcast {
        kind: &'static str,
        from: u32,
        why: String,
    },
    #[error("{kind}: {why}")]
    Inconsistent { kind: &'static str, why: String },
}

pub(crate) fn json<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    serde_json::from_slice(bytes).map_err(|source| DecodeError::Json { what, source })
}

pub(crate) fn from_value<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    value: Value,
) -> Result<T, DecodeError> {
    serde_json::from_value(value).map_err(|source| DecodeError::Json { what, source })
}

pub(crate) fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs (string keys, no maps of non-string keys) cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

pub(crate) fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

pub(crate) fn check_schema(version: u32) -> Result<(), DecodeError> {
    if version == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(DecodeError::SchemaVersion(version))
    }
}
