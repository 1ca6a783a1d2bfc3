//! `INSERT INTO`: new files only, visible whole and at once, readable by a
//! fresh listing; values that cannot be directories refused with nothing left
//! behind; bucketed tables whose declared hash partitioning is true.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use lakefusion::store::faults::FaultyStore;
use lakefusion::PartitionedTable;

use object_store::local::LocalFileSystem;
use url::Url;

use crate::common::*;

#[tokio::test]
async fn insert_appends_files_the_next_query_and_a_fresh_listing_see() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let before = all_files(dir.path());
    let ctx = SessionContext::new();
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    let inserted = rows(
        &ctx,
        "INSERT INTO events SELECT id + 100000, user, amount, qty, date, region FROM events WHERE region = 'eu'",
    )
    .await
    .unwrap();
    assert!(inserted[0].contains(" 3000 "), "{inserted:?}");
    // The same table object sees the new rows at once.
    assert_eq!(count(&ctx, "SELECT count(*) FROM events").await, 12_000);
    assert_eq!(
        count(
            &ctx,
            "SELECT count(*) FROM events WHERE id >= 100000 AND region = 'eu'"
        )
        .await,
        3_000
    );
    // New files only: every old file is unchanged, one new file per partition.
    let after = all_files(dir.path());
    assert!(after.is_superset(&before));
    let new: Vec<_> = after.difference(&before).collect();
    assert_eq!(new.len(), 5, "{new:?}");
    assert!(new
        .iter()
        .all(|f| f.contains("region=eu/part-") && f.ends_with(".parquet")));

    // A fresh listing, ours and DataFusion's, reads the same rows.
    let fresh = SessionContext::new();
    fresh
        .register_table("ours", Arc::new(events_table(&fresh, dir.path()).await))
        .unwrap();
    let listing = listing_table(
        &fresh,
        dir.path(),
        &[("date", DataType::Date32), ("region", DataType::Utf8)],
    )
    .await;
    fresh.register_table("theirs", Arc::new(listing)).unwrap();
    let q = "SELECT date, region, count(*) AS n, sum(id) AS ids, sum(qty) AS qty FROM {} GROUP BY date, region ORDER BY date, region";
    assert_eq!(
        rows(&fresh, &q.replace("{}", "ours")).await.unwrap(),
        rows(&fresh, &q.replace("{}", "theirs")).await.unwrap()
    );
    assert_eq!(count(&fresh, "SELECT count(*) FROM ours").await, 12_000);
}

fn keyed_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
    ]))
}

/// A table with file columns `(id, v)` under `root`, partitioned by `k: Utf8`.
async fn keyed_table(ctx: &SessionContext, root: &Path, bucket: Option<usize>) -> PartitionedTable {
    std::fs::create_dir_all(root).unwrap();
    let mut builder = PartitionedTable::builder(file_url(root))
        .partition_column("k", DataType::Utf8)
        .schema(keyed_schema());
    if let Some(n) = bucket {
        builder = builder.bucket_by("id", n);
    }
    builder.build(&ctx.state()).await.unwrap()
}

#[tokio::test]
async fn new_partitions_null_and_reserved_characters_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    ctx.register_table("t", Arc::new(keyed_table(&ctx, dir.path(), None).await))
        .unwrap();
    exec(
        &ctx,
        "INSERT INTO t VALUES (1, 'a', 'plain'), (2, 'b', NULL), (3, 'c', '50%#?x=y ü'), (4, 'd', 'plain')",
    )
    .await;
    let files = all_files(dir.path());
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("k=__HIVE_DEFAULT_PARTITION__/")),
        "{files:?}"
    );
    assert_eq!(files.len(), 3, "one file per partition: {files:?}");
    let expected = rows(&ctx, "SELECT id, v, k FROM t ORDER BY id")
        .await
        .unwrap();
    assert!(expected[2].contains("50%#?x=y ü"), "{expected:?}");
    assert_eq!(
        count(&ctx, "SELECT sum(id) FROM t WHERE k IS NULL").await,
        2
    );
    // A fresh build parses the directories back into the same values.
    let fresh = SessionContext::new();
    fresh
        .register_table("t", Arc::new(keyed_table(&fresh, dir.path(), None).await))
        .unwrap();
    assert_eq!(
        rows(&fresh, "SELECT id, v, k FROM t ORDER BY id")
            .await
            .unwrap(),
        expected
    );
}

#[tokio::test]
async fn values_that_cannot_be_directories_fail_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    ctx.register_table("t", Arc::new(keyed_table(&ctx, dir.path(), None).await))
        .unwrap();
    exec(&ctx, "INSERT INTO t VALUES (1, 'a', 'ok')").await;
    let before = all_files(dir.path());
    let long = "x".repeat(300);
    for bad in ["a/b", "..", &long] {
        // A good row first, so a file is already being written when the bad
        // value arrives.
        let sql = format!("INSERT INTO t VALUES (2, 'b', 'fine'), (3, 'c', '{bad}')");
        let err = execution_error(&ctx, &sql).await;
        assert!(
            err.contains("table 't'") || err.contains(&file_url(dir.path())),
            "{err}"
        );
        assert!(err.contains("partition column 'k'"), "{err}");
        assert_eq!(all_files(dir.path()), before, "{bad}: files left behind");
    }
    assert_eq!(count(&ctx, "SELECT count(*) FROM t").await, 1);
}

#[tokio::test]
async fn a_failure_mid_stream_leaves_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    write_events(dir.path());
    let before = all_files(dir.path());
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_batch_size(100));
    ctx.register_table("events", Arc::new(events_table(&ctx, dir.path()).await))
        .unwrap();
    // Integer division by zero fails at row id = 4000, batches after the first.
    let err = execution_error(
        &ctx,
        "INSERT INTO events SELECT id, user, amount, CAST(100 / (id - 4000) AS INT), date, region FROM events",
    )
    .await;
    assert!(err.to_lowercase().contains("divide by zero"), "{err}");
    assert_eq!(all_files(dir.path()), before);
    assert_eq!(count(&ctx, "SELECT count(*) FROM events").await, 9_000);
}

/// `n` rows with ids `0..n` in partitions `k = 'p0'..'p2'`.
fn keyed_rows(n: i64) -> MemTable {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Utf8, true),
        Field::new("k", DataType::Utf8, false),
    ]));
    let ids: Vec<i64> = (0..n).collect();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from(
                ids.iter()
                    .map(|i| format!("v{}", i % 13))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                ids.iter()
                    .map(|i| format!("p{}", i % 3))
                    .collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    MemTable::try_new(schema, vec![vec![batch]]).unwrap()
}

const BUCKETS: usize = 4;

/// Writes a bucketed table `name` of 3,000 rows under `root` through INSERT.
async fn write_bucketed(root: &Path) {
    let ctx = partitioned_join_session(BUCKETS);
    ctx.register_table("t", Arc::new(keyed_table(&ctx, root, Some(BUCKETS)).await))
        .unwrap();
    ctx.register_table("src", Arc::new(keyed_rows(3_000)))
        .unwrap();
    exec(&ctx, "INSERT INTO t SELECT id, v, k FROM src").await;
}

#[tokio::test]
async fn bucketed_tables_group_and_join_without_repartitioning() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    write_bucketed(&a).await;
    write_bucketed(&b).await;
    // One file per (partition, bucket), named by bucket.
    let files = all_files(&a);
    assert_eq!(files.len(), 3 * BUCKETS, "{files:?}");
    assert!(files.iter().all(|f| f.contains("/bucket-")), "{files:?}");

    let ctx = partitioned_join_session(BUCKETS);
    ctx.register_table("a", Arc::new(keyed_table(&ctx, &a, Some(BUCKETS)).await))
        .unwrap();
    ctx.register_table("b", Arc::new(keyed_table(&ctx, &b, Some(BUCKETS)).await))
        .unwrap();
    let listing = |root: &Path| {
        let ctx = ctx.clone();
        let root = root.to_path_buf();
        async move { listing_table(&ctx, &root, &[("k", DataType::Utf8)]).await }
    };
    ctx.register_table("la", Arc::new(listing(&a).await))
        .unwrap();
    ctx.register_table("lb", Arc::new(listing(&b).await))
        .unwrap();
    ctx.register_table("other", Arc::new(keyed_rows(3_000)))
        .unwrap();

    let group = "SELECT id, count(*) AS n, min(v) AS v FROM {a} GROUP BY id ORDER BY id";
    let join = "SELECT x.id, x.v, y.k FROM {a} x JOIN {b} y ON x.id = y.id ORDER BY x.id, y.k";
    for sql in [group, join] {
        let ours = sql.replace("{a}", "a").replace("{b}", "b");
        let plan = physical_plan_text(&ctx, &ours).await;
        assert!(!plan.contains("RepartitionExec"), "{ours}\n{plan}");
        assert!(
            scan_line(&plan).contains("partitioning=Hash([id@0], 4)"),
            "{plan}"
        );
        let theirs = sql.replace("{a}", "la").replace("{b}", "lb");
        let expected = rows(&ctx, &theirs).await.unwrap();
        assert!(!expected.is_empty());
        assert_eq!(rows(&ctx, &ours).await.unwrap(), expected, "{ours}");
    }
    // The #25279 shape: the other side is repartitioned by DataFusion; every
    // row must still meet its partner.
    let mixed = "SELECT count(*) AS n, sum(x.id) AS s FROM a x JOIN other o ON x.id = o.id";
    let plan = physical_plan_text(&ctx, mixed).await;
    assert!(plan.contains("RepartitionExec"), "{plan}");
    assert_eq!(
        rows(&ctx, mixed).await.unwrap(),
        rows(&ctx, &mixed.replace("FROM a x", "FROM la x"))
            .await
            .unwrap()
    );
    assert_eq!(
        count(&ctx, "SELECT count(*) FROM a x JOIN other o ON x.id = o.id").await,
        3_000
    );

    // Another partition count: nothing is declared.
    let other = partitioned_join_session(3);
    other
        .register_table("a", Arc::new(keyed_table(&other, &a, Some(BUCKETS)).await))
        .unwrap();
    let plan = physical_plan_text(&other, "SELECT id, count(*) FROM a GROUP BY id").await;
    assert!(!scan_line(&plan).contains("partitioning=Hash"), "{plan}");
    assert!(plan.contains("RepartitionExec"), "{plan}");
}

#[tokio::test]
async fn files_bucketed_another_way_are_not_declared() {
    let dir = tempfile::tempdir().unwrap();
    // Written with 4 buckets; read back declaring 4 buckets of another column,
    // and 8 buckets of the same one.
    write_bucketed(dir.path()).await;
    let ctx = partitioned_join_session(BUCKETS);
    let by_v = PartitionedTable::builder(file_url(dir.path()))
        .partition_column("k", DataType::Utf8)
        .bucket_by("v", BUCKETS)
        .build(&ctx.state())
        .await
        .unwrap();
    ctx.register_table("by_v", Arc::new(by_v)).unwrap();
    let plan = physical_plan_text(&ctx, "SELECT v, count(*) FROM by_v GROUP BY v").await;
    assert!(!scan_line(&plan).contains("partitioning=Hash"), "{plan}");
    // Files another tool wrote (no bucket metadata) next to ours.
    write_parquet(
        &dir.path().join("k=p0/other-tool.parquet"),
        &RecordBatch::try_new(
            keyed_schema(),
            vec![
                Arc::new(Int64Array::from(vec![7_000])),
                Arc::new(StringArray::from(vec!["x"])),
            ],
        )
        .unwrap(),
    );
    let ctx = partitioned_join_session(BUCKETS);
    ctx.register_table(
        "t",
        Arc::new(keyed_table(&ctx, dir.path(), Some(BUCKETS)).await),
    )
    .unwrap();
    let plan = physical_plan_text(&ctx, "SELECT id, count(*) FROM t GROUP BY id").await;
    assert!(!scan_line(&plan).contains("partitioning=Hash"), "{plan}");
    assert_eq!(count(&ctx, "SELECT count(*) FROM t").await, 3_001);
}

/// Reading the bucket metadata at `build()` shares the footer reads of
/// `collect_statistics`: one footer read per file, not two.
#[tokio::test]
async fn bucket_metadata_and_statistics_read_each_footer_once() {
    let dir = tempfile::tempdir().unwrap();
    write_bucketed(dir.path()).await;
    let requests = |bucketed: bool| {
        let root = dir.path().to_path_buf();
        async move {
            let store = FaultyStore::new(Arc::new(LocalFileSystem::new()));
            let ctx = SessionContext::new();
            ctx.register_object_store(&Url::parse("file://").unwrap(), store.clone());
            let mut builder = PartitionedTable::builder(file_url(&root))
                .partition_column("k", DataType::Utf8)
                .collect_statistics(true);
            if bucketed {
                builder = builder.bucket_by("id", BUCKETS);
            }
            let table = builder.build(&ctx.state()).await.unwrap();
            assert_eq!(table.index().file_count(), 3 * BUCKETS);
            store.requests()
        }
    };
    assert_eq!(requests(true).await, requests(false).await);
}
