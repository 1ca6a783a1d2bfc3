//! What a failed `INSERT` leaves, and what an `INSERT` holds in memory, on
//! a store without rename (`memory://`, as S3): a write that fails during
//! its commit names every file it could not take back, and its record lets
//! `remove_abandoned_writes` remove them later; staged bytes are reserved
//! from the session's memory pool.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::DataType;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use lakefusion::store::faults::{Fault, FaultRule, FaultyStore, RequestKind};
use lakefusion::{PartitionedTable, SessionBuilder};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use url::Url;

use crate::common::*;

const ROWS: usize = 10;

/// `lake/p=0..10/part-0.parquet`, `ROWS` rows each.
async fn lake() -> Arc<dyn ObjectStore> {
    let lake: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    for p in 0..10 {
        let batch = events_batch(p * ROWS as i64, ROWS);
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        lake.put(
            &Path::from(format!("lake/p={p}/part-0.parquet")),
            PutPayload::from(bytes),
        )
        .await
        .unwrap();
    }
    lake
}

/// A session over a counting view of `lake`, with `config`, `pool` if
/// given, and the lake registered as `t`.
async fn session(
    lake: &Arc<dyn ObjectStore>,
    config: SessionConfig,
    pool: Option<Arc<dyn MemoryPool>>,
) -> (SessionContext, Arc<FaultyStore>, Arc<PartitionedTable>) {
    let store = FaultyStore::new(Arc::clone(lake));
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(pool) = pool {
        runtime = runtime.with_memory_pool(pool);
    }
    let ctx = SessionBuilder::new()
        .with_config(config)
        .with_runtime(runtime.build_arc().unwrap())
        .with_object_store(
            Url::parse("memory://").unwrap(),
            store.clone() as Arc<dyn ObjectStore>,
        )
        .build_context();
    let table = Arc::new(
        PartitionedTable::builder("memory:///lake/")
            .partition_column("p", DataType::Int32)
            .build(&ctx.state())
            .await
            .unwrap(),
    );
    ctx.register_table("t", Arc::clone(&table) as _).unwrap();
    (ctx, store, table)
}

/// Commit of p=5 fails; the delete that should take back p=3's committed
/// file fails too. The error names p=3's file as left visible, the write's
/// record names it, and `remove_abandoned_writes` removes it and the
/// record: the lake is as it was before the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_insert_names_what_it_left_visible_and_its_record_removes_it() {
    let lake = lake().await;
    let before = keys(&lake).await;
    let (ctx, store, table) = session(&lake, SessionConfig::new(), None).await;
    store.inject(
        FaultRule::new(Fault::SlowFailure(Duration::from_millis(200)))
            .on(RequestKind::Write)
            .path_contains("p=5/part-"),
    );
    // The commit PUT passes, the delete that takes it back fails.
    store.inject(
        FaultRule::new(Fault::Permanent)
            .on(RequestKind::Write)
            .path_contains("p=3/part-")
            .every(2),
    );
    let error = execution_error(
        &ctx,
        "INSERT INTO t VALUES (1, 'u', 1.0, 1, 3), (2, 'u', 1.0, 1, 5)",
    )
    .await;
    let left: Vec<String> = keys(&lake)
        .await
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();
    let visible: Vec<&String> = left.iter().filter(|k| k.contains("p=3/part-")).collect();
    assert_eq!(visible.len(), 1, "{left:?}");
    assert!(error.contains(visible[0].as_str()), "{error}");
    let records: Vec<&String> = left
        .iter()
        .filter(|k| k.contains("/_lakefusion/"))
        .collect();
    assert_eq!(records.len(), 1, "the write's record stays: {left:?}");
    assert!(error.contains(records[0].as_str()), "{error}");
    // The table the INSERT went through shows none of it.
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM t").await,
        (10 * ROWS) as i64
    );

    // Too young to be abandoned: a running write looks the same.
    store.clear();
    let removed = table
        .remove_abandoned_writes(&ctx.state(), Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(removed.is_empty(), "{removed:?}");
    let removed = table
        .remove_abandoned_writes(&ctx.state(), Duration::ZERO)
        .await
        .unwrap();
    let removed: Vec<String> = removed.iter().map(|p| p.to_string()).collect();
    assert!(removed.contains(visible[0]), "{removed:?}");
    assert_eq!(keys(&lake).await, before, "nothing of the write is left");
}

/// The first failed commit stops the commits not yet started, and each
/// staged file that is not committed is dropped (an upload aborted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_starts_no_further_commit() {
    let lake = lake().await;
    let before = keys(&lake).await;
    // The first commit fails: no commit starts after it, and any that
    // were already under way are taken back.
    let (ctx, store, _) = session(&lake, SessionConfig::new(), None).await;
    store.inject(
        FaultRule::new(Fault::Permanent)
            .on(RequestKind::Write)
            .path_contains("/part-")
            .times(1),
    );
    let values: Vec<String> = (0..40)
        .map(|p| format!("({p}, 'u', 1.0, 1, {})", 100 + p))
        .collect();
    store.reset_counts();
    let error = execution_error(&ctx, &format!("INSERT INTO t VALUES {}", values.join(", "))).await;
    assert!(error.contains("/part-"), "{error}");
    // Some commits were under way when the first failed; the rest never started.
    let writes = store.requests_of(RequestKind::Write);
    assert!(writes < 40, "{writes} writes for 40 files");
    assert_eq!(keys(&lake).await, before);
}

/// An INSERT into many partitions of a store without rename stages every
/// file in memory until the commit: those bytes are reserved from the
/// session's pool (the peak covers them, and all of it goes back), and a
/// pool too small for them fails the write with an error that says so,
/// leaving nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_bytes_are_reserved_from_the_memory_pool() {
    // 50 partitions of ~4,000 rows of hard-to-compress strings.
    let insert = "INSERT INTO t SELECT value, md5(CAST(value AS VARCHAR)) || md5(CAST(value * 7 AS VARCHAR)), 1.0, 1, CAST(100 + value % 50 AS INT) FROM generate_series(1, 200000)";
    let config = || SessionConfig::new().with_target_partitions(1);

    let lake = lake().await;
    let pool = Arc::new(PeakPool::new(1 << 30));
    let (ctx, _, _) = session(&lake, config(), Some(pool.clone() as _)).await;
    let before = keys(&lake).await;
    exec(&ctx, insert).await;
    let mut written = 0u64;
    for key in keys(&lake)
        .await
        .iter()
        .filter(|k| !before.contains(k) && k.ends_with(".parquet"))
    {
        written += lake.head(&Path::from(key.as_str())).await.unwrap().size;
    }
    assert!(written > 4 << 20, "{written} bytes written");
    assert!(
        pool.peak() as u64 >= written,
        "peak {} < {written} bytes staged",
        pool.peak()
    );
    assert_eq!(pool.reserved(), 0, "every staged byte went back");

    let lake = self::lake().await;
    let before = keys(&lake).await;
    let pool = Arc::new(PeakPool::new(2 << 20));
    let (ctx, _, _) = session(&lake, config(), Some(pool.clone() as _)).await;
    let error = execution_error(&ctx, insert).await;
    assert!(
        error.contains("memory:///lake/") && error.contains("staged"),
        "{error}"
    );
    assert!(pool.peak() <= 2 << 20);
    assert_eq!(pool.reserved(), 0);
    assert_eq!(keys(&lake).await, before, "nothing of the write is left");
}
