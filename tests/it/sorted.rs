//! Sorted tables: `INSERT INTO` writes each file sorted and records the
//! order; a scan declares the order only where footer min/max prove it for
//! every output partition, so `ORDER BY`, `ORDER BY … LIMIT` and windows plan
//! without a `SortExec` and return exactly what ListingTable returns.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::prelude::{SessionConfig, SessionContext};
use lakefusion::{PartitionedTable, SortKey};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::*;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Int64, true),
        Field::new("v", DataType::Utf8, true),
    ]))
}

fn session(target_partitions: usize) -> SessionContext {
    SessionContext::new_with_config(SessionConfig::new().with_target_partitions(target_partitions))
}

/// `(ts, v)` files partitioned by `k`, sorted by `sort` (none: unsorted).
async fn table(
    ctx: &SessionContext,
    root: &Path,
    sort: &[&str],
    bucket: Option<usize>,
) -> PartitionedTable {
    std::fs::create_dir_all(root).unwrap();
    let mut builder = PartitionedTable::builder(file_url(root))
        .partition_column("k", DataType::Utf8)
        .schema(schema())
        .sort_order(sort.iter().copied());
    if let Some(n) = bucket {
        builder = builder.bucket_by("ts", n);
    }
    builder.build(&ctx.state()).await.unwrap()
}

/// Inserts `ts` from `from` to `to` (inclusive), descending, so that the
/// writer has to sort them, spread over partitions `p0`..`p{parts-1}`.
async fn insert(ctx: &SessionContext, from: i64, to: i64, parts: i64) {
    exec(
        ctx,
        &format!(
            "INSERT INTO t SELECT {to} + {from} - value AS ts, 'v' || value AS v, \
             'p' || (value % {parts}) AS k FROM generate_series({from}, {to}) ORDER BY value"
        ),
    )
    .await;
}

/// The `ts` column of every data file under `root`, file by file.
fn ts_of_files(root: &Path) -> Vec<(String, Vec<Option<i64>>)> {
    all_files(root)
        .into_iter()
        .filter(|f| f.ends_with(".parquet") && !f.contains("/."))
        .map(|name| {
            let file = std::fs::File::open(root.join(&name)).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap();
            let mut ts = Vec::new();
            for batch in reader {
                let batch: RecordBatch = batch.unwrap();
                let column = batch.column(0).as_primitive::<Int64Type>();
                ts.extend((0..column.len()).map(|i| column.is_valid(i).then(|| column.value(i))));
            }
            (name, ts)
        })
        .collect()
}

/// Registers our table as `t` and ListingTable over the same files as `lt`.
async fn register(ctx: &SessionContext, root: &Path, sort: &[&str], bucket: Option<usize>) {
    ctx.register_table("t", Arc::new(table(ctx, root, sort, bucket).await))
        .unwrap();
    let listing = listing_table(ctx, root, &[("k", DataType::Utf8)]).await;
    ctx.register_table("lt", Arc::new(listing)).unwrap();
}

/// The same rows from our table and ListingTable, in the query's order.
async fn assert_same_rows(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let ours = rows(ctx, &sql.replace("{}", "t")).await.unwrap();
    let theirs = rows(ctx, &sql.replace("{}", "lt")).await.unwrap();
    assert_eq!(ours, theirs, "{sql}");
    assert!(!ours.is_empty(), "{sql}");
    ours
}

#[tokio::test]
async fn ordered_queries_plan_without_a_sort_and_match_listing_table() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(2);
    ctx.register_table("t", Arc::new(table(&ctx, dir.path(), &["ts"], None).await))
        .unwrap();
    // Three writes of disjoint ranges, each into two partitions: 6 files.
    for (from, to) in [(2_000, 2_999), (0, 999), (1_000, 1_999)] {
        insert(&ctx, from, to, 2).await;
    }
    // The writer sorted every file (its input arrived descending).
    let files = ts_of_files(dir.path());
    assert_eq!(files.len(), 6, "{files:?}");
    for (name, ts) in &files {
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{name} is not sorted");
    }

    // A fresh session and table (statistics from footers).
    let ctx = session(2);
    register(&ctx, dir.path(), &["ts"], None).await;
    let plan = physical_plan_text(&ctx, "SELECT ts, v FROM t ORDER BY ts").await;
    assert!(!plan.contains("SortExec"), "{plan}");
    assert!(plan.contains("SortPreservingMergeExec"), "{plan}");
    assert!(
        scan_line(&plan).contains("output_ordering=[ts@0 ASC NULLS LAST]"),
        "{plan}"
    );
    let ordered = assert_same_rows(&ctx, "SELECT ts, v, k FROM {} ORDER BY ts").await;
    assert_eq!(ordered.len(), 3_000);

    let top = "SELECT ts, v FROM {} ORDER BY ts LIMIT 5";
    let plan = physical_plan_text(&ctx, &top.replace("{}", "t")).await;
    assert!(!plan.contains("SortExec"), "{plan}");
    assert_same_rows(&ctx, top).await;

    let window = "SELECT ts, row_number() OVER (ORDER BY ts) AS n FROM {} ORDER BY ts";
    let plan = physical_plan_text(&ctx, &window.replace("{}", "t")).await;
    assert!(!plan.contains("SortExec"), "{plan}");
    assert!(plan.contains("BoundedWindowAggExec"), "{plan}");
    assert_same_rows(&ctx, window).await;

    // The same query on ListingTable (no declared order) needs the sort.
    let plan = physical_plan_text(&ctx, "SELECT ts, v FROM lt ORDER BY ts").await;
    assert!(plan.contains("SortExec"), "{plan}");
}

#[tokio::test]
async fn a_table_adopts_the_order_its_files_record() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(2);
    ctx.register_table(
        "t",
        Arc::new(table(&ctx, dir.path(), &["ts", "v"], None).await),
    )
    .unwrap();
    insert(&ctx, 0, 999, 2).await;
    insert(&ctx, 1_000, 1_999, 2).await;

    // No declaration, but statistics: the recorded order is adopted.
    let adopted = |ctx: SessionContext| {
        let root = dir.path().to_path_buf();
        async move {
            PartitionedTable::builder(file_url(&root))
                .partition_column("k", DataType::Utf8)
                .collect_statistics(true)
                .build(&ctx.state())
                .await
                .unwrap()
        }
    };
    let ctx = session(2);
    let t = adopted(ctx.clone()).await;
    assert_eq!(t.sort_order(), &[SortKey::asc("ts"), SortKey::asc("v")]);
    ctx.register_table("t", Arc::new(t)).unwrap();
    let plan = physical_plan_text(&ctx, "SELECT ts, v FROM t ORDER BY ts, v").await;
    assert!(!plan.contains("SortExec"), "{plan}");

    // Without statistics nothing is read, so nothing is adopted.
    let plain = PartitionedTable::builder(file_url(dir.path()))
        .partition_column("k", DataType::Utf8)
        .build(&ctx.state())
        .await
        .unwrap();
    assert!(plain.sort_order().is_empty());

    // A (sorted) file another tool wrote, recording no order, joins the
    // table: an adopted order does not vouch for it, so nothing is declared.
    write_parquet(
        &dir.path().join("k=p0/other-tool.parquet"),
        &RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![4_000, 5_000])),
                Arc::new(StringArray::from(vec!["a", "b"])),
            ],
        )
        .unwrap(),
    );
    let ctx = session(2);
    let t = adopted(ctx.clone()).await;
    assert!(t.sort_order().is_empty(), "files disagree: nothing adopted");
    ctx.register_table("t", Arc::new(t)).unwrap();
    let plan = physical_plan_text(&ctx, "SELECT ts FROM t ORDER BY ts").await;
    assert!(plan.contains("SortExec"), "{plan}");
    // Declared, the order is the user's word for files that record none
    // (as ListingTable's file_sort_order is), and here it is true.
    let ctx = session(2);
    register(&ctx, dir.path(), &["ts"], None).await;
    let plan = physical_plan_text(&ctx, "SELECT ts FROM t ORDER BY ts").await;
    assert!(!plan.contains("SortExec"), "{plan}");
    let ordered = assert_same_rows(&ctx, "SELECT ts, v, k FROM {} ORDER BY ts").await;
    assert_eq!(ordered.len(), 2_002);
}

#[tokio::test]
async fn files_recorded_as_unsorted_withhold_a_declared_order() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(2);
    ctx.register_table("t", Arc::new(table(&ctx, dir.path(), &[], None).await))
        .unwrap();
    insert(&ctx, 0, 999, 2).await;
    // The unsorted write recorded "no order", and the files are not sorted.
    let files = ts_of_files(dir.path());
    assert!(
        files
            .iter()
            .all(|(_, ts)| !ts.windows(2).all(|w| w[0] <= w[1])),
        "{files:?}"
    );
    let ctx = session(2);
    register(&ctx, dir.path(), &["ts"], None).await;
    let plan = physical_plan_text(&ctx, "SELECT ts FROM t ORDER BY ts").await;
    assert!(plan.contains("SortExec"), "{plan}");
    assert!(!scan_line(&plan).contains("output_ordering"), "{plan}");
    assert_same_rows(&ctx, "SELECT ts, v FROM {} ORDER BY ts").await;
}

#[tokio::test]
async fn overlapping_files_never_share_an_output_partition() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(1);
    ctx.register_table("t", Arc::new(table(&ctx, dir.path(), &["ts"], None).await))
        .unwrap();
    // One partition, three files: the second overlaps the first.
    insert(&ctx, 0, 999, 1).await;
    insert(&ctx, 500, 1_499, 1).await;
    insert(&ctx, 2_000, 2_999, 1).await;
    let ctx = session(1);
    register(&ctx, dir.path(), &["ts"], None).await;
    let plan = physical_plan_text(&ctx, "SELECT ts FROM t ORDER BY ts").await;
    // One target partition, but the overlap needs a second group: the order
    // is declared per group, and DataFusion merges the two.
    let scan = scan_line(&plan);
    assert!(scan.contains("file_groups={2 groups"), "{plan}");
    assert!(
        scan.contains("output_ordering=[ts@0 ASC NULLS LAST]"),
        "{plan}"
    );
    assert!(!plan.contains("SortExec"), "{plan}");
    let ordered = assert_same_rows(&ctx, "SELECT ts, v FROM {} ORDER BY ts, v").await;
    assert_eq!(ordered.len(), 3_000);
}

#[tokio::test]
async fn overlapping_files_in_one_bucket_withhold_the_order_but_not_the_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(2);
    ctx.register_table(
        "t",
        Arc::new(table(&ctx, dir.path(), &["ts"], Some(2)).await),
    )
    .unwrap();
    insert(&ctx, 0, 999, 1).await;
    insert(&ctx, 2_000, 2_999, 1).await;
    let ctx = session(2);
    register(&ctx, dir.path(), &["ts"], Some(2)).await;
    // Disjoint writes: each bucket's two files follow each other.
    let plan = physical_plan_text(&ctx, "SELECT ts FROM t ORDER BY ts").await;
    let scan = scan_line(&plan);
    assert!(scan.contains("partitioning=Hash([ts@0], 2)"), "{plan}");
    assert!(scan.contains("output_ordering"), "{plan}");
    assert!(!plan.contains("SortExec"), "{plan}");

    // An overlapping write: buckets are fixed groups, so the overlap cannot
    // be split off, and the order is withheld while the buckets stay.
    let ctx = session(2);
    ctx.register_table(
        "t",
        Arc::new(table(&ctx, dir.path(), &["ts"], Some(2)).await),
    )
    .unwrap();
    insert(&ctx, 500, 1_499, 1).await;
    let ctx = session(2);
    register(&ctx, dir.path(), &["ts"], Some(2)).await;
    let plan = physical_plan_text(&ctx, "SELECT ts FROM t ORDER BY ts").await;
    let scan = scan_line(&plan);
    assert!(scan.contains("partitioning=Hash([ts@0], 2)"), "{plan}");
    assert!(!scan.contains("output_ordering"), "{plan}");
    assert!(plan.contains("SortExec"), "{plan}");
    assert_same_rows(&ctx, "SELECT ts, v FROM {} ORDER BY ts, v").await;
}

#[tokio::test]
async fn nulls_in_the_sort_column_withhold_the_order_of_a_multi_file_partition() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(1);
    ctx.register_table("t", Arc::new(table(&ctx, dir.path(), &["ts"], None).await))
        .unwrap();
    // NULLS LAST puts the NULL at the end of the first file, before 1000.
    exec(
        &ctx,
        "INSERT INTO t VALUES (NULL, 'null', 'p'), (1, 'a', 'p'), (2, 'b', 'p')",
    )
    .await;
    exec(
        &ctx,
        "INSERT INTO t VALUES (1000, 'c', 'p'), (1001, 'd', 'p')",
    )
    .await;
    let files = ts_of_files(dir.path());
    assert!(
        files.iter().any(|(_, ts)| ts == &[Some(1), Some(2), None]),
        "{files:?}"
    );
    let ctx = session(1);
    register(&ctx, dir.path(), &["ts"], None).await;
    let plan = physical_plan_text(&ctx, "SELECT ts FROM t ORDER BY ts").await;
    assert!(plan.contains("SortExec"), "{plan}");
    let ordered = assert_same_rows(&ctx, "SELECT ts, v FROM {} ORDER BY ts").await;
    assert!(ordered.last().unwrap().contains("null"), "{ordered:?}");
}

#[tokio::test]
async fn sort_orders_that_cannot_hold_are_refused_at_build() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(2);
    for (sort, problem) in [
        (vec!["nope"], "'nope': no such column inside the files"),
        (vec!["k"], "'k': no such column inside the files"),
        (vec!["ts", "ts"], "'ts': the column appears twice"),
    ] {
        let err = PartitionedTable::builder(file_url(dir.path()))
            .partition_column("k", DataType::Utf8)
            .schema(schema())
            .sort_order(sort)
            .build(&ctx.state())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(problem), "{err}");
        assert!(err.contains(&file_url(dir.path())), "{err}");
    }
}
