//! object_store's own conformance suite (its `integration` module), run
//! against the crate's store wrappers: whatever a table reads through must
//! behave as an object store, faults or not.

use std::sync::Arc;
use std::time::Duration;

use lakefusion::store::faults::{Fault, FaultRule, FaultyStore, RequestKind};
use lakefusion::store::{ResilientStore, RetryPolicy};
use object_store::integration::*;
use object_store::memory::InMemory;
use object_store::ObjectStore;

async fn conformance(store: &dyn ObjectStore) {
    put_get_delete_list(store).await;
    list_with_offset_exclusivity(store).await;
    get_opts(store).await;
    list_uses_directories_correctly(store).await;
    list_with_delimiter(store).await;
    rename_and_copy(store).await;
    copy_if_not_exists(store).await;
    stream_get(store).await;
    put_opts(store, true).await;
    put_get_attributes(store).await;
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        request_timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn resilient_store_passes_object_stores_conformance_suite() {
    conformance(&ResilientStore::new(
        Arc::new(InMemory::new()),
        quick_retries(),
    ))
    .await;
}

#[tokio::test]
async fn faulty_store_without_faults_passes_object_stores_conformance_suite() {
    let store = FaultyStore::new(Arc::new(InMemory::new()));
    conformance(store.as_ref()).await;
    assert!(store.requests_of(RequestKind::Read) > 0);
    assert!(store.requests_of(RequestKind::List) > 0);
    assert!(store.requests_of(RequestKind::Write) > 0);
    assert_eq!(store.injected(), 0);
}

/// Transient read faults and short reads, retried by a `ResilientStore`
/// above: the suite still passes, and faults were injected.
#[tokio::test]
async fn resilient_store_over_failing_reads_passes_the_suite() {
    let faulty = FaultyStore::new(Arc::new(InMemory::new()));
    faulty.inject(
        FaultRule::new(Fault::Transient)
            .on(RequestKind::Read)
            .every(3),
    );
    faulty.inject(
        FaultRule::new(Fault::ShortRead)
            .on(RequestKind::Read)
            .every(5),
    );
    conformance(&ResilientStore::new(faulty.clone(), quick_retries())).await;
    assert!(faulty.injected() > 0, "no fault was injected");
}

/// The wrappers forward `rename`: on the local disk it stays one atomic
/// `rename(2)` (the file keeps its inode), not object_store's default copy
/// and delete — the commit of a table with `.retry(..)` renames every file.
#[tokio::test]
async fn the_wrappers_forward_rename() {
    use object_store::local::LocalFileSystem;
    use object_store::path::Path;
    use object_store::{ObjectStoreExt, PutPayload};
    use std::os::unix::fs::MetadataExt;

    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let faulty = FaultyStore::new(local);
    let store = ResilientStore::new(faulty.clone(), quick_retries());
    let (from, to) = (Path::from("a/.x.inprogress"), Path::from("a/x"));
    store
        .put(&from, PutPayload::from_static(b"data"))
        .await
        .unwrap();
    let inode = std::fs::metadata(dir.path().join("a/.x.inprogress"))
        .unwrap()
        .ino();
    faulty.reset_counts();
    store.rename_if_not_exists(&from, &to).await.unwrap();
    assert_eq!(
        faulty.requests_of(RequestKind::Write),
        1,
        "one rename, not a copy and a delete"
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("a/x")).unwrap().ino(),
        inode
    );
    assert!(!dir.path().join("a/.x.inprogress").exists());
}
