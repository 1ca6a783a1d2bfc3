//! Storage faults (injected by `FaultyStore`): transient errors retried,
//! permanent errors and hangs ending the query with an error naming the file
//! within a bounded time, short reads caught — and never a wrong row.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;
use lakefusion::store::faults::{Fault, FaultRule, FaultyStore, RequestKind};
use lakefusion::store::RetryPolicy;
use lakefusion::PartitionedTable;
use object_store::local::LocalFileSystem;
use url::Url;

use crate::common::*;

const QUERY: &str = "SELECT date, region, id, user, amount, qty FROM events ORDER BY id";
/// One file of the events table.
const FILE: &str = "date=2026-03-02/region=eu/part-00001.parquet";

fn fast_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(10),
        request_timeout: Duration::from_millis(500),
    }
}

/// A session reading `file://` through a fault injector.
fn faulty_session() -> (SessionContext, Arc<FaultyStore>) {
    let ctx = SessionContext::new();
    let store = FaultyStore::new(Arc::new(LocalFileSystem::new()));
    ctx.register_object_store(&Url::parse("file://").unwrap(), store.clone());
    (ctx, store)
}

async fn build(
    ctx: &SessionContext,
    root: &Path,
    retry: Option<RetryPolicy>,
) -> lakefusion::Result<PartitionedTable> {
    let mut builder = PartitionedTable::builder(file_url(root))
        .partition_column("date", DataType::Date32)
        .partition_column("region", DataType::Utf8);
    if let Some(retry) = retry {
        builder = builder.retry(retry);
    }
    builder.build(&ctx.state()).await
}

/// The events table under faults (`retry`: the table's retries), and the
/// rows the query returns without faults.
async fn setup(
    root: &Path,
    retry: Option<RetryPolicy>,
) -> (SessionContext, Arc<FaultyStore>, Vec<String>) {
    let clean = SessionContext::new();
    clean
        .register_table("events", Arc::new(events_table(&clean, root).await))
        .unwrap();
    let expected = rows(&clean, QUERY).await.unwrap();
    assert_eq!(expected.len(), 9_000);
    let (ctx, store) = faulty_session();
    let table = build(&ctx, root, retry).await.unwrap();
    ctx.register_table("events", Arc::new(table)).unwrap();
    (ctx, store, expected)
}

/// Runs the query, never for more than 20 s (a hang is a test failure, not
/// a stuck test run).
async fn run(ctx: &SessionContext) -> (Duration, datafusion::error::Result<Vec<String>>) {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(20), rows(ctx, QUERY))
        .await
        .expect("the query hung");
    (started.elapsed(), result)
}

#[tokio::test]
async fn transient_read_errors_are_retried_and_the_rows_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let (ctx, store, expected) = setup(dir.path(), Some(fast_retries(3))).await;
    // The first two reads of every file fail: with 3 retries every read
    // succeeds, however the concurrent reads interleave.
    let files = all_files(dir.path());
    for file in &files {
        store.inject(
            FaultRule::new(Fault::Transient)
                .on(RequestKind::Read)
                .path_contains(file.as_str())
                .times(2),
        );
    }
    let (_, result) = run(&ctx).await;
    assert_eq!(result.unwrap(), expected);
    println!(
        "transient: first 2 reads of each of {} files: {} faults injected, rows exact",
        files.len(),
        store.injected()
    );
    assert_eq!(store.injected(), 2 * files.len());

    // The same faults without retries fail the query.
    let (ctx, store, _) = setup(dir.path(), None).await;
    store.inject(
        FaultRule::new(Fault::Transient)
            .on(RequestKind::Read)
            .every(2),
    );
    let (_, result) = run(&ctx).await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("injected transient fault"), "{err}");
}

#[tokio::test]
async fn a_permanent_error_fails_at_once_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let (ctx, store, _) = setup(dir.path(), Some(fast_retries(3))).await;
    store.inject(
        FaultRule::new(Fault::Permanent)
            .on(RequestKind::Read)
            .path_contains(FILE),
    );
    let (elapsed, result) = run(&ctx).await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains(FILE), "{err}");
    assert!(err.contains("injected permanent fault"), "{err}");
    // Not retried: one attempt, well within the bound.
    assert_eq!(store.injected(), 1);
    println!("permanent error: failed after {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn a_hanging_read_times_out_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let retry = RetryPolicy {
        max_retries: 1,
        request_timeout: Duration::from_millis(200),
        ..fast_retries(1)
    };
    let (ctx, store, _) = setup(dir.path(), Some(retry)).await;
    store.inject(
        FaultRule::new(Fault::Hang)
            .on(RequestKind::Read)
            .path_contains(FILE),
    );
    let (elapsed, result) = run(&ctx).await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("timed out after 200ms"), "{err}");
    assert!(err.contains(FILE), "{err}");
    // 2 attempts x 200 ms, plus the rest of the query.
    println!("hanging read: failed after {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(store.injected(), 2, "first attempt and one retry");
}

#[tokio::test]
async fn short_reads_are_caught_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let (ctx, store, expected) = setup(dir.path(), Some(fast_retries(3))).await;
    store.inject(
        FaultRule::new(Fault::ShortRead)
            .on(RequestKind::Read)
            .path_contains(FILE)
            .times(2),
    );
    let (_, result) = run(&ctx).await;
    assert_eq!(result.unwrap(), expected);
    assert_eq!(store.injected(), 2);

    // With no retries left, a short read is an error naming the file and
    // the byte counts — never rows decoded from half a range.
    let (ctx, store, _) = setup(dir.path(), Some(fast_retries(0))).await;
    store.inject(
        FaultRule::new(Fault::ShortRead)
            .on(RequestKind::Read)
            .path_contains(FILE),
    );
    let (_, result) = run(&ctx).await;
    let err = result.unwrap_err().to_string();
    assert!(err.contains("a short read"), "{err}");
    assert!(err.contains(FILE), "{err}");
}

#[tokio::test]
async fn latency_only_slows_the_query() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let (ctx, store, expected) = setup(dir.path(), Some(fast_retries(0))).await;
    store.inject(FaultRule::new(Fault::Latency(Duration::from_millis(5))).on(RequestKind::Read));
    let (_, result) = run(&ctx).await;
    assert_eq!(result.unwrap(), expected);
    assert!(store.injected() >= 45);
}

/// One fault at each of many points of the scan (the n-th read, for n up
/// past the last read): every run either returns exactly the right rows or
/// fails — never a partial or duplicated result.
#[tokio::test]
async fn a_failed_read_never_yields_partial_or_duplicated_rows() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let (mut exact, mut failed) = (0, 0);
    // How many reads a clean run makes.
    let (ctx, store, expected) = setup(dir.path(), None).await;
    store.inject(FaultRule::new(Fault::Latency(Duration::ZERO)).on(RequestKind::Read));
    assert_eq!(run(&ctx).await.1.unwrap(), expected);
    let reads = store.injected();
    let points: Vec<usize> = (1..=reads + reads / 10).step_by(reads / 30 + 1).collect();
    for &n in &points {
        let (ctx, store, expected) = setup(dir.path(), None).await;
        store.inject(
            FaultRule::new(Fault::Transient)
                .on(RequestKind::Read)
                .every(n)
                .times(1),
        );
        match run(&ctx).await.1 {
            Ok(rows) => {
                assert_eq!(rows, expected, "read {n} failing");
                exact += 1;
            }
            Err(_) => failed += 1,
        }
    }
    println!("fault sweep over {reads} reads: {exact} runs exact, {failed} failed, 0 wrong");
    assert!(failed > 0 && exact > 0, "faults inside and past the scan");
    assert_eq!(exact + failed, points.len());
}

#[tokio::test]
async fn listing_faults_are_retried_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    // A listing that fails half-way is retried whole: no file twice.
    let (ctx, store) = faulty_session();
    store.inject(
        FaultRule::new(Fault::Transient)
            .on(RequestKind::List)
            .times(2),
    );
    let table = build(&ctx, dir.path(), Some(fast_retries(3)))
        .await
        .unwrap();
    assert_eq!(table.index().file_count(), 45);
    assert_eq!(store.injected(), 2);

    let (ctx, store) = faulty_session();
    store.inject(
        FaultRule::new(Fault::Transient)
            .on(RequestKind::List)
            .times(1),
    );
    let err = build(&ctx, dir.path(), None).await.unwrap_err().to_string();
    assert!(err.contains("injected transient fault"), "{err}");

    // A hanging listing ends in the timeout.
    let (ctx, store) = faulty_session();
    store.inject(FaultRule::new(Fault::Hang).on(RequestKind::List));
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        build(&ctx, dir.path(), Some(fast_retries(1))),
    )
    .await
    .expect("build hung")
    .unwrap_err()
    .to_string();
    assert!(err.contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The request timeout bounds each page of a listing, not the whole of it:
/// a root that takes longer than `request_timeout` to list entry by entry
/// (2,000 objects at 1 ms each, a 1 s timeout) is built, through one
/// listing (`memory://`) and through the splitting listing (`s3://`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_longer_than_the_request_timeout_completes() {
    use object_store::memory::InMemory;
    use object_store::throttle::{ThrottleConfig, ThrottledStore};
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

    let inner = Arc::new(InMemory::new());
    let batch = events_batch(0, 10);
    let mut bytes = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let data = object_store::path::Path::from("lake/p=0/part-0.parquet");
    inner.put(&data, PutPayload::from(bytes)).await.unwrap();
    for i in 1..2_000 {
        let note = object_store::path::Path::from(format!("lake/p={}/notes-{i}.txt", i % 20));
        inner
            .put(&note, PutPayload::from_static(b"x"))
            .await
            .unwrap();
    }
    let throttled: Arc<dyn ObjectStore> = Arc::new(ThrottledStore::new(
        inner,
        ThrottleConfig {
            wait_list_per_entry: Duration::from_millis(1),
            ..ThrottleConfig::default()
        },
    ));
    let policy = RetryPolicy {
        max_retries: 0,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(1),
        request_timeout: Duration::from_secs(1),
    };
    for url in ["memory://", "s3://bucket"] {
        let ctx = SessionContext::new();
        ctx.register_object_store(&Url::parse(url).unwrap(), Arc::clone(&throttled));
        let root = format!("{}/lake/", url.trim_end_matches('/'));
        let started = Instant::now();
        let table = PartitionedTable::builder(&root)
            .partition_column("p", DataType::Int32)
            .retry(policy)
            .build(&ctx.state())
            .await
            .unwrap_or_else(|e| panic!("{root}: {e}"));
        assert_eq!(table.index().file_count(), 1, "{root}");
        assert!(
            started.elapsed() > policy.request_timeout,
            "{root}: the listing took longer than one request may"
        );
    }
}
