//! Planning and `execute()` make no object-store request; the first poll does.

use lakefusion::store::faults::FaultyStore;
use std::sync::Arc;

use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use lakefusion::PartitionedScanExec;
use object_store::local::LocalFileSystem;
use url::Url;

use crate::common::*;

fn find_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    if plan.is::<PartitionedScanExec>() {
        return Some(Arc::clone(plan));
    }
    plan.children().into_iter().find_map(find_scan)
}

#[tokio::test]
async fn no_io_until_first_poll() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let store = FaultyStore::new(Arc::new(LocalFileSystem::new()));
    let ctx = SessionContext::new();
    ctx.register_object_store(&Url::parse("file://").unwrap(), store.clone());

    let table = events_table(&ctx, dir.path()).await;
    assert!(
        store.requests() > 0,
        "build() lists the root and reads one footer"
    );
    ctx.register_table("events", Arc::new(table)).unwrap();
    store.reset_counts();

    let sql =
        "SELECT id, amount, region FROM events WHERE date = DATE '2026-03-02' AND amount > 50";
    let df = ctx.sql(sql).await.unwrap();
    let plan = df.create_physical_plan().await.unwrap();
    let scan = find_scan(&plan).expect("plan has a PartitionedScanExec");
    let mut streams = (0..plan.output_partitioning().partition_count())
        .map(|p| plan.execute(p, ctx.task_ctx()).unwrap())
        .collect::<Vec<_>>();
    let scan_streams = (0..scan.output_partitioning().partition_count())
        .map(|p| scan.execute(p, ctx.task_ctx()).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(
        store.requests(),
        0,
        "sql + create_physical_plan + execute made requests"
    );

    let mut rows = 0;
    for stream in streams.iter_mut() {
        while let Some(batch) = stream.next().await {
            rows += batch.unwrap().num_rows();
        }
    }
    assert!(store.requests() > 0, "the first poll reads files");
    assert!(rows > 0);
    drop(scan_streams);
}

#[tokio::test]
async fn planning_many_queries_makes_no_requests() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let store = FaultyStore::new(Arc::new(LocalFileSystem::new()));
    let ctx = SessionContext::new();
    ctx.register_object_store(&Url::parse("file://").unwrap(), store.clone());
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    store.reset_counts();
    for sql in [
        "SELECT * FROM events",
        "SELECT count(*) FROM events WHERE region = 'eu'",
        "SELECT id FROM events WHERE id > 100 ORDER BY id LIMIT 3",
        "EXPLAIN SELECT * FROM events WHERE date = DATE '2026-03-01'",
    ] {
        physical_plan(&ctx, sql).await;
    }
    assert_eq!(store.requests(), 0);
}

#[tokio::test]
async fn dropping_a_stream_stops_its_io() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let store = FaultyStore::new(Arc::new(LocalFileSystem::new()));
    let ctx = SessionContext::new_with_config(
        datafusion::prelude::SessionConfig::new().with_batch_size(50),
    );
    ctx.register_object_store(&Url::parse("file://").unwrap(), store.clone());
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    let plan = physical_plan(&ctx, "SELECT * FROM events").await;
    let scan = find_scan(&plan).unwrap();
    let mut stream = scan.execute(0, ctx.task_ctx()).unwrap();
    store.reset_counts();
    stream.next().await.unwrap().unwrap();
    let after_first = store.requests();
    assert!(after_first > 0);
    drop(stream);
    // Nothing was spawned: with the stream gone, no further request can start.
    tokio::task::yield_now().await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(store.requests(), after_first);
}

#[tokio::test]
async fn reading_stops_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionContext::new_with_config(
        datafusion::prelude::SessionConfig::new().with_target_partitions(1),
    );
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    let analyzed = crate::common::rows(&ctx, "EXPLAIN ANALYZE SELECT * FROM events LIMIT 5")
        .await
        .unwrap()
        .join("\n");
    assert!(analyzed.contains("limit=5"), "{analyzed}");
    let opened: usize = analyzed
        .split("files_opened=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{analyzed}"));
    // 45 files in one group: the first one has the 5 rows (one more may have
    // been opened ahead), the rest are never touched.
    assert!(
        opened <= 2,
        "opened {opened} files for LIMIT 5:\n{analyzed}"
    );
}

#[tokio::test]
async fn repartitioned_scans_return_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionContext::new_with_config(
        datafusion::prelude::SessionConfig::new().with_target_partitions(1),
    );
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    let plan = physical_plan(&ctx, "SELECT id, region FROM events").await;
    let scan = find_scan(&plan).unwrap();
    assert_eq!(scan.output_partitioning().partition_count(), 1);
    let mut options = datafusion::config::ConfigOptions::new();
    options.optimizer.repartition_file_min_size = 0;
    let split = scan
        .repartitioned(6, &options)
        .unwrap()
        .expect("45 files split into 6 groups");
    assert_eq!(split.output_partitioning().partition_count(), 6);
    let count = |plan: Arc<dyn ExecutionPlan>| {
        let ctx = ctx.task_ctx();
        async move {
            datafusion::physical_plan::collect(plan, ctx)
                .await
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>()
        }
    };
    assert_eq!(count(scan).await, 9000);
    assert_eq!(count(split).await, 9000);
}
