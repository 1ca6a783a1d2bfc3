//! Cancellation: a query dropped or aborted mid-scan ends every task it
//! spawned and closes every Parquet reader it opened, within 1 s.
//!
//! Proven with counters, not sleeps: Tokio's count of live tasks on a runtime
//! of the test's own, and the scan's `open_readers` gauge. Storage is slowed
//! (`ThrottledStore`, 5 ms per read) so files are open when the query is cut.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::{collect, execute_stream, ExecutionPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use lakefusion::PartitionedScanExec;
use object_store::local::LocalFileSystem;
use object_store::throttle::{ThrottleConfig, ThrottledStore};
use url::Url;

use crate::common::*;

/// A runtime of the test's own, so its live-task count is this test's alone.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The events table on slowed storage, 4 target partitions.
async fn slow_events(root: &std::path::Path) -> SessionContext {
    write_events(root);
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(4));
    let store = ThrottledStore::new(
        LocalFileSystem::new(),
        ThrottleConfig {
            wait_get_per_call: Duration::from_millis(5),
            ..ThrottleConfig::default()
        },
    );
    ctx.register_object_store(&Url::parse("file://").unwrap(), Arc::new(store));
    ctx.register_table("events", Arc::new(events_table(&ctx, root).await))
        .unwrap();
    ctx
}

/// The plan of a query whose scan partitions run in spawned tasks (the
/// repartition above the scan spawns one per input partition), and its scan.
///
/// Tests keep only the scan (for its metrics) and give the plan away with the
/// query: DataFusion's `RepartitionExec` aborts its tasks when the plan is
/// dropped, but while someone holds the plan they run on until their next
/// send fails (measured: ~340 ms here, the rest of the scan).
async fn spawning_plan(ctx: &SessionContext) -> (Arc<dyn ExecutionPlan>, Arc<dyn ExecutionPlan>) {
    fn scan(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
        if plan.is::<PartitionedScanExec>() {
            return Some(Arc::clone(plan));
        }
        plan.children().into_iter().find_map(scan)
    }
    let plan = physical_plan(
        ctx,
        "SELECT user, sum(amount) FROM events WHERE qty IS NOT NULL GROUP BY user",
    )
    .await;
    let scan = scan(&plan).expect("a PartitionedScanExec");
    (plan, scan)
}

/// Parquet readers open now, summed over the scan's partitions.
fn open_readers(scan: &Arc<dyn ExecutionPlan>) -> usize {
    scan.metrics()
        .and_then(|m| m.sum_by_name("open_readers"))
        .map_or(0, |v| v.as_usize())
}

/// Waits until `done` holds, polling; panics after `limit`. Returns how long
/// it took.
async fn within(limit: Duration, what: &str, done: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    start.elapsed()
}

/// Asserts that tasks and readers drain to 0 within 1 s; returns the time.
async fn drains(scan: &Arc<dyn ExecutionPlan>) -> Duration {
    let handle = tokio::runtime::Handle::current();
    // This future runs inside `block_on`, not as a task: 0 means none left.
    let tasks = within(Duration::from_secs(1), "live tasks", || {
        handle.metrics().num_alive_tasks() == 0
    })
    .await;
    let readers = within(Duration::from_secs(1), "open readers", || {
        open_readers(scan) == 0
    })
    .await;
    println!("  live tasks at 0 after {tasks:?}, then readers after {readers:?} more");
    tasks + readers
}

#[test]
fn dropping_the_stream_mid_scan_ends_tasks_and_closes_readers() {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ctx = slow_events(dir.path()).await;
        let (plan, scan) = spawning_plan(&ctx).await;
        let mut stream: SendableRecordBatchStream = execute_stream(plan, ctx.task_ctx()).unwrap();
        // Poll until files are open (the aggregation emits only at the end,
        // so the stream has produced nothing yet).
        let poll = tokio::time::timeout(Duration::from_millis(40), stream.next()).await;
        assert!(poll.is_err(), "the query finished before it was cut");
        assert!(
            open_readers(&scan) > 0,
            "no file open when the stream was dropped"
        );
        assert!(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
                > 0
        );
        drop(stream);
        let took = drains(&scan).await;
        println!("dropped stream: tasks and readers at 0 after {took:?}");
    });
}

#[test]
fn aborting_the_query_task_ends_tasks_and_closes_readers() {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ctx = slow_events(dir.path()).await;
        let (plan, scan) = spawning_plan(&ctx).await;
        let query = tokio::spawn(collect(plan, ctx.task_ctx()));
        within(Duration::from_secs(5), "a file opened", || {
            open_readers(&scan) > 0
        })
        .await;
        query.abort();
        assert!(query.await.unwrap_err().is_cancelled());
        let took = drains(&scan).await;
        println!("aborted task: tasks and readers at 0 after {took:?}");
    });
}

#[test]
fn a_query_timeout_ends_tasks_and_closes_readers() {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ctx = slow_events(dir.path()).await;
        let (plan, scan) = spawning_plan(&ctx).await;
        let result =
            tokio::time::timeout(Duration::from_millis(30), collect(plan, ctx.task_ctx())).await;
        assert!(result.is_err(), "the query finished within its timeout");
        let took = drains(&scan).await;
        println!("timed out: tasks and readers at 0 after {took:?}");
        // The query runs to the end afterwards: nothing was left locked.
        // (A fresh plan: DataFusion's repartition runs once per instance.)
        let (again, scan) = spawning_plan(&ctx).await;
        let batches = collect(again, ctx.task_ctx()).await.unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 17);
        assert_eq!(open_readers(&scan), 0);
    });
}

#[test]
fn aborting_an_insert_ends_its_tasks_and_leaves_no_visible_file() {
    use object_store::memory::InMemory;
    use object_store::ObjectStore;

    let rt = runtime();
    rt.block_on(async {
        let source = tempfile::tempdir().unwrap();
        let ctx = slow_events(source.path()).await;
        // The copy goes to memory (the slowed store cannot rename files).
        let target = Arc::new(InMemory::new());
        ctx.register_object_store(&Url::parse("memory://").unwrap(), target.clone());
        let copy_table = |ctx: SessionContext| async move {
            lakefusion::PartitionedTable::builder("memory:///copy")
                .partition_column("region", datafusion::arrow::datatypes::DataType::Utf8)
                .schema(events_schema())
                .build(&ctx.state())
                .await
                .unwrap()
        };
        ctx.register_table("copy", Arc::new(copy_table(ctx.clone()).await))
            .unwrap();
        let objects = || async {
            let listed: Vec<_> = futures::TryStreamExt::try_collect(target.list(None))
                .await
                .unwrap();
            listed
                .into_iter()
                .map(|m| m.location.to_string())
                .collect::<Vec<_>>()
        };
        let insert = ctx
            .sql("INSERT INTO copy SELECT id, user, amount, qty, region FROM events")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let query = tokio::spawn(collect(insert, ctx.task_ctx()));
        // Cut it once the first object appears. On `memory://` (no rename)
        // files are staged in memory, so that is the write's record, put
        // as its commit begins: the cut lands during the commit.
        let start = Instant::now();
        while objects().await.is_empty() {
            assert!(start.elapsed() < Duration::from_secs(5), "no file opened");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        query.abort();
        let _ = query.await;
        let handle = tokio::runtime::Handle::current();
        let took = within(Duration::from_secs(1), "live tasks", || {
            handle.metrics().num_alive_tasks() == 0
        })
        .await;
        let left = objects().await;
        println!("aborted INSERT: tasks at 0 after {took:?}; left behind: {left:?}");
        // All or nothing: cut before the commit, every object left is hidden
        // and a fresh listing finds no row; cut during it, the commit runs
        // to its end and every row is there.
        ctx.register_table("fresh", Arc::new(copy_table(ctx.clone()).await))
            .unwrap();
        let visible = count(&ctx, "SELECT count(*) FROM fresh").await;
        let total = count(&ctx, "SELECT count(*) FROM events").await;
        assert!(
            visible == 0 || visible == total,
            "{visible} of {total} rows visible"
        );
        if visible == 0 {
            assert!(left
                .iter()
                .all(|f| f.split('/').any(|part| part.starts_with('.'))));
        }
    });
}
