//! Planning and `execute()` make no object-store request; the first poll does.

use std::sync::Arc;

use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use lakefusion::PartitionedScanExec;
use object_store::local::LocalFileSystem;
use url::Url;

use crate::common::*;
use crate::counting_store::CountingStore;

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
    let store = CountingStore::new(Arc::new(LocalFileSystem::new()));
    let ctx = SessionContext::new();
    ctx.register_object_store(&Url::parse("file://").unwrap(), store.clone());

    let table = events_table(&ctx, dir.path()).await;
    assert!(
        store.requests() > 0,
        "build() lists the root and reads one footer"
    );
    ctx.register_table("events", Arc::new(table)).unwrap();
    store.reset();

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
    let store = CountingStore::new(Arc::new(LocalFileSystem::new()));
    let ctx = SessionContext::new();
    ctx.register_object_store(&Url::parse("file://").unwrap(), store.clone());
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    store.reset();
    for sql in [
        "SELECT * FROM events",
        "SELECT count(*) FROM events WHERE region = 'eu'",
        "SELECT id FROM events WHERE id > 100 ORDER BY id LIMIT 3",
        "EXPLAIN SELECT * FROM events WHERE date = DATE '2026-03-01'",
    ] {
        ctx.sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
    }
    assert_eq!(store.requests(), 0);
}
