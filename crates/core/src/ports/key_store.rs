//! The key store port: every user's data keys, the only copy of what opens
//! their personal fields (see [`crate::personal`]).

use crate::ids::KeyId;
use crate::personal::DataKey;
use crate::ports::error::BackendError;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::HashMap;

/// Keeps each user's data key, and destroys it on erasure.
///
/// The contract every adapter keeps (`salestrack-port-tests` checks it):
/// - A user has at most one live key. [`KeyStore::sealing_key`] answers it,
///   creating it on first use; concurrent first uses agree on one key. A key
///   is durable before it is answered: a value sealed under a key the store
///   then lost would be erased without anyone asking.
/// - [`KeyStore::destroy`] removes every key of the user, durably, and
///   answers their ids; again, it answers none. A later
///   [`KeyStore::sealing_key`] creates a new key with a new id: what is
///   sealed after an erasure is a new relationship, and the erased values
///   stay unreadable.
/// - [`KeyStore::key`] answers a key by id, `None` once destroyed. A value
///   sealed under a key that [`KeyStore::key`] does not know is erased.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The user's live key; created (durably) when the user has none.
    async fn sealing_key(&self, user_id: &str) -> Result<DataKey, BackendError>;
    /// The key `id`; `None` when it was destroyed (or never was).
    async fn key(&self, id: KeyId) -> Result<Option<DataKey>, BackendError>;
    /// Destroys every key of the user; the ids destroyed, none the second time.
    async fn destroy(&self, user_id: &str) -> Result<Vec<KeyId>, BackendError>;
    async fn ping(&self) -> Result<(), BackendError>;
}

/// The keys among `ids` that still exist (a destroyed one is left out).
pub async fn keys_of(
    store: &dyn KeyStore,
    ids: impl IntoIterator<Item = KeyId>,
) -> Result<HashMap<KeyId, DataKey>, BackendError> {
    let mut keys = HashMap::new();
    for id in ids {
        if let Some(key) = store.key(id).await? {
            keys.insert(id, key);
        }
    }
    Ok(keys)
}

/// `doc` with every sealed value opened, or erased (see
/// [`crate::personal::open_document`]).
pub async fn open_sealed(doc: &mut Value, store: &dyn KeyStore) -> Result<(), BackendError> {
    let ids = crate::personal::sealed_keys(doc);
    if ids.is_empty() {
        return Ok(());
    }
    let keys = keys_of(store, ids).await?;
    crate::personal::open_document(doc, &keys);
    Ok(())
}
