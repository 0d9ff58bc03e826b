//! The `KeyStore` contract: one live key per user, agreed on by concurrent
//! first uses; destroyed keys gone for good, only the user's, and a new
//! key, never the old one, for what is sealed afterwards.

use salestrack_core::ids::KeyId;
use salestrack_core::personal::{DataKey, PersonalField};
use salestrack_core::ports::KeyStore;
use std::sync::Arc;
use uuid::Uuid;

/// A user id no other check uses.
fn new_user() -> String {
    format!("user-{}", Uuid::new_v4())
}

fn same(a: &DataKey, b: &DataKey) -> bool {
    a.id == b.id && a.secret() == b.secret()
}

pub async fn a_users_key_is_created_once_and_found_by_id(store: Arc<dyn KeyStore>) {
    let user = new_user();
    let first = store.sealing_key(&user).await.expect("create");
    let again = store.sealing_key(&user).await.expect("again");
    assert!(same(&first, &again), "{first:?} then {again:?}");
    let found = store.key(first.id).await.expect("by id").expect("known");
    assert!(same(&first, &found));
    let sealed = first.seal(PersonalField::ShippingAddress, "9 Elm Row");
    assert_eq!(
        found
            .open(PersonalField::ShippingAddress, &sealed)
            .as_deref(),
        Ok("9 Elm Row")
    );
    let other = store.sealing_key(&new_user()).await.expect("another user");
    assert_ne!(other.id, first.id);
    assert_ne!(other.secret(), first.secret(), "keys are random");
    assert!(store
        .key(KeyId(Uuid::new_v4()))
        .await
        .expect("unknown id")
        .is_none());
}

pub async fn concurrent_first_uses_agree_on_one_key(store: Arc<dyn KeyStore>) {
    let user = new_user();
    let tries = (0..8).map(|_| {
        let (store, user) = (Arc::clone(&store), user.clone());
        async move { store.sealing_key(&user).await }
    });
    let keys: Vec<DataKey> = futures::future::join_all(tries)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("keys");
    assert!(
        keys.iter().all(|k| same(k, &keys[0])),
        "one key per user: {keys:?}"
    );
}

pub async fn destroying_a_users_keys_erases_them_and_only_them(store: Arc<dyn KeyStore>) {
    let (erased, kept) = (new_user(), new_user());
    let old = store.sealing_key(&erased).await.expect("erased's key");
    let other = store.sealing_key(&kept).await.expect("kept's key");
    assert_eq!(store.destroy(&erased).await.expect("destroy"), vec![old.id]);
    assert!(
        store.key(old.id).await.expect("by id").is_none(),
        "destroyed"
    );
    assert!(same(
        &store.key(other.id).await.expect("by id").expect("kept"),
        &other
    ));
    assert_eq!(
        store.destroy(&erased).await.expect("again"),
        vec![],
        "idempotent"
    );
    let new = store.sealing_key(&erased).await.expect("after erasure");
    assert_ne!(new.id, old.id, "a new key, never the destroyed one");
    assert_ne!(new.secret(), old.secret());
    assert!(store.key(old.id).await.expect("by id").is_none());
    assert_eq!(
        store.destroy(&erased).await.expect("the new one"),
        vec![new.id]
    );
    assert_eq!(store.destroy(&new_user()).await.expect("unknown"), vec![]);
}

#[macro_export]
macro_rules! every_key_store_check {
    () => {
        $crate::every_key_store_check!(
            a_users_key_is_created_once_and_found_by_id,
            concurrent_first_uses_agree_on_one_key,
            destroying_a_users_keys_erases_them_and_only_them,
        );
    };
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let Some((_guard, store)) = key_store().await else { return };
            $crate::key_store::$check(store).await;
        }
    )*};
}
