//! Discovery, NULL partitions, statistics and refresh.

use std::sync::Arc;

use datafusion::arrow::array::{Int32Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::stats::Precision;
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use lakefusion::PartitionedTable;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use url::Url;

use crate::common::*;

/// `shop` is Int32 with a Hive NULL partition; ListingTable cannot read this
/// (DESIGN.md), so the reference is a MemTable of the same rows.
#[tokio::test]
async fn hive_null_partitions_read_as_null() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    let mut reference = Vec::new();
    let shops = [Some(1), Some(2), None];
    for day in 1..=4 {
        for shop in shops {
            let dirname = shop.map_or("__HIVE_DEFAULT_PARTITION__".to_string(), |s| s.to_string());
            for f in 0..2 {
                let v: Vec<i64> = (0..5)
                    .map(|i| day * 100 + shop.unwrap_or(9) as i64 * 10 + f * 5 + i)
                    .collect();
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(Int64Array::from(v.clone()))],
                )
                .unwrap();
                write_parquet(
                    &dir.path()
                        .join(format!("day={day}/shop={dirname}/f{f}.parquet")),
                    &batch,
                );
                reference.push(
                    RecordBatch::try_new(
                        Arc::new(Schema::new(vec![
                            Field::new("v", DataType::Int64, false),
                            Field::new("day", DataType::Int32, true),
                            Field::new("shop", DataType::Int32, true),
                        ])),
                        vec![
                            Arc::new(Int64Array::from(v)),
                            Arc::new(Int32Array::from(vec![day as i32; 5])),
                            Arc::new(Int32Array::from(vec![shop; 5])),
                        ],
                    )
                    .unwrap(),
                );
            }
        }
    }
    let ours = SessionContext::new();
    let table = PartitionedTable::builder(file_url(dir.path()))
        .partition_column("day", DataType::Int32)
        .partition_column("shop", DataType::Int32)
        .build(&ours.state())
        .await
        .unwrap();
    assert_eq!(table.index().partitions().len(), 12);
    ours.register_table("t", Arc::new(table)).unwrap();
    let mem = SessionContext::new();
    let mem_table = MemTable::try_new(reference[0].schema(), vec![reference]).unwrap();
    mem.register_table("t", Arc::new(mem_table)).unwrap();
    for sql in [
        "SELECT count(*) FROM t WHERE shop IS NULL",
        "SELECT count(*) FROM t WHERE shop IS NOT NULL",
        "SELECT count(*) FROM t WHERE shop = 1",
        "SELECT count(*) FROM t WHERE shop != 1",
        "SELECT shop, count(*), sum(v) FROM t GROUP BY shop ORDER BY shop",
        "SELECT day, shop, v FROM t WHERE day = 2 AND (shop IS NULL OR shop = 2) ORDER BY v",
        "SELECT count(*) FROM t WHERE NOT (shop = 2)",
    ] {
        assert_eq!(
            rows(&ours, sql).await.unwrap(),
            rows(&mem, sql).await.unwrap(),
            "{sql}"
        );
    }
    let plan = physical_plan_text(&ours, "SELECT v FROM t WHERE shop IS NULL").await;
    assert!(plan.contains("partitions=4/12"), "{plan}");
}

#[tokio::test]
async fn inferred_partition_columns_are_utf8() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionContext::new();
    let table = PartitionedTable::builder(file_url(dir.path()))
        .build(&ctx.state())
        .await
        .unwrap();
    let schema = table.schema();
    assert_eq!(
        schema.field_with_name("date").unwrap().data_type(),
        &DataType::Utf8
    );
    assert_eq!(
        schema.field_with_name("region").unwrap().data_type(),
        &DataType::Utf8
    );
    ctx.register_table("events", Arc::new(table)).unwrap();
    let plan = physical_plan_text(
        &ctx,
        "SELECT count(*) FROM events WHERE date = '2026-03-02'",
    )
    .await;
    assert!(plan.contains("partitions=3/15"), "{plan}");
}

#[tokio::test]
async fn works_on_an_in_memory_store() {
    let store = Arc::new(InMemory::new());
    let mut buf = Vec::new();
    let batch = events_batch(0, 10);
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    for region in ["eu", "us"] {
        store
            .put(
                &ObjectPath::from(format!("lake/events/region={region}/part-0.parquet")),
                buf.clone().into(),
            )
            .await
            .unwrap();
    }
    // A sibling directory whose name starts like the root must not be read.
    store
        .put(
            &ObjectPath::from("lake/events_old/region=eu/part-0.parquet"),
            buf.clone().into(),
        )
        .await
        .unwrap();
    let ctx = SessionContext::new();
    ctx.register_object_store(&Url::parse("memory://").unwrap(), store);
    let table = PartitionedTable::builder("memory:///lake/events")
        .partition_column("region", DataType::Utf8)
        .build(&ctx.state())
        .await
        .unwrap();
    ctx.register_table("events", Arc::new(table)).unwrap();
    assert_eq!(
        rows(&ctx, "SELECT count(*) FROM events").await.unwrap(),
        vec!["| 20       |"]
    );
    assert_eq!(
        rows(&ctx, "SELECT count(*) FROM events WHERE region = 'us'")
            .await
            .unwrap(),
        vec!["| 10       |"]
    );
}

#[tokio::test]
async fn statistics_are_honest() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionContext::new();
    let total_rows = DATES.len() * REGIONS.len() * FILES_PER_PARTITION * ROWS_PER_FILE;

    // Without footers: row count unknown, byte size inexact from the listing.
    let lazy = events_table(&ctx, dir.path()).await;
    let stats = lazy.statistics().unwrap();
    assert_eq!(stats.num_rows, Precision::Absent);
    assert!(
        matches!(stats.total_byte_size, Precision::Inexact(n) if n as u64 == lazy.index().total_bytes())
    );

    // With footers: exact row counts, exact min/max of data columns.
    let eager = events_table_with(&ctx, dir.path(), true).await;
    let stats = eager.statistics().unwrap();
    assert_eq!(stats.num_rows, Precision::Exact(total_rows));
    assert_eq!(
        stats.column_statistics[0].min_value,
        Precision::Exact(0i64.into())
    );
    assert_eq!(
        stats.column_statistics[0].max_value,
        Precision::Exact((total_rows as i64 - 1).into())
    );

    // A scan's statistics: exact under a partition-only filter, inexact under a data filter.
    ctx.register_table("events", Arc::new(eager)).unwrap();
    let exact = scan_rows(&ctx, "SELECT id FROM events WHERE region = 'eu'").await;
    assert_eq!(exact, Precision::Exact(total_rows / REGIONS.len()));
    let inexact = scan_rows(&ctx, "SELECT id FROM events WHERE id > 5").await;
    assert!(matches!(inexact, Precision::Inexact(_)), "{inexact:?}");
    // And the exact count is the count that executes.
    let counted = rows(&ctx, "SELECT count(id) FROM events WHERE region = 'eu'")
        .await
        .unwrap();
    assert_eq!(
        counted,
        vec![format!("| {:<16} |", total_rows / REGIONS.len())]
    );
}

async fn scan_rows(ctx: &SessionContext, sql: &str) -> Precision<usize> {
    let plan = physical_plan(ctx, sql).await;
    let mut node: Arc<dyn ExecutionPlan> = plan;
    while !node.is::<lakefusion::PartitionedScanExec>() {
        node = Arc::clone(node.children()[0]);
    }
    #[allow(deprecated)]
    let stats = node.partition_statistics(None).unwrap();
    stats.num_rows
}

#[tokio::test]
async fn refresh_swaps_in_a_new_listing() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionContext::new();
    let table = Arc::new(events_table(&ctx, dir.path()).await);
    ctx.register_table("events", table.clone()).unwrap();
    let before = rows(
        &ctx,
        "SELECT count(*) FROM events WHERE date = DATE '2026-03-09'",
    )
    .await
    .unwrap();
    assert_eq!(before, vec!["| 0        |"]);

    write_parquet(
        &dir.path()
            .join("date=2026-03-09/region=eu/part-00000.parquet"),
        &events_batch(1_000_000, 11),
    );
    // Not visible until refresh: the table plans from its index.
    assert_eq!(
        rows(
            &ctx,
            "SELECT count(*) FROM events WHERE date = DATE '2026-03-09'"
        )
        .await
        .unwrap(),
        before
    );
    table.refresh(&ctx.state()).await.unwrap();
    assert_eq!(table.index().partitions().len(), 16);
    assert_eq!(
        rows(
            &ctx,
            "SELECT count(*) FROM events WHERE date = DATE '2026-03-09'"
        )
        .await
        .unwrap(),
        vec!["| 11       |"]
    );
}

#[tokio::test]
async fn filters_simplified_after_pushdown_still_apply() {
    // Found by the pruning property: DataFusion accepts `NOT region IN ('eu',
    // NULL)` as an exact partition filter, then simplifies it and hands the
    // scan `region != 'eu'` and a bare `NULL`. The NULL must still exclude
    // every row (x NOT IN (.., NULL) is never true).
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let ctx = SessionContext::new();
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    for sql in [
        "SELECT count(*) FROM events WHERE NOT region IN ('eu', NULL)",
        "SELECT count(*) FROM events WHERE region NOT IN ('eu', NULL)",
        "SELECT count(*) FROM events WHERE region = 'us' AND NULL",
    ] {
        assert_eq!(count(&ctx, sql).await, 0, "{sql}");
    }
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM events WHERE region = 'us' OR NULL"
        )
        .await,
        (DATES.len() * FILES_PER_PARTITION * ROWS_PER_FILE) as i64
    );
}
