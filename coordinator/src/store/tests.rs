//! What only the sled store must do; the contract every store meets is checked in
//! `tests/store_contract.rs`.

use super::{Creation, SagaLog, SagaReads, SledStore};
use crate::engine::fixtures::one_step as created;

async fn create(store: &SledStore, id: &str, key: Option<&str>) -> Creation {
    store.create(&created(id, key), key).await.unwrap()
}

/// The sled-specific parts of the store's contract; the rest runs against every store in
/// `tests/store_contract.rs`.
#[tokio::test]
async fn a_key_claim_lost_in_a_crash_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    // A crash kept the claim of "ghost" but not its first event: the submission was never
    // acknowledged, so the next one with the key owns it.
    store.claim_without_saga("k2", "ghost");
    assert_eq!(create(&store, "s3", Some("k2")).await, Creation::Created);
    assert_eq!(
        store.saga_for_key("k2").await.unwrap().as_deref(),
        Some("s3")
    );
    assert!(store.load("s3").await.unwrap().is_some());
}
